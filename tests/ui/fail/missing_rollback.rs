use sagaflow::prelude::*;

struct Payment;

#[workflow(name = "payment")]
impl Payment {
    #[step(rollback = undo_chage)]
    async fn charge(&self, _ctx: &Context) -> StepResult {
        Ok(Outcome::Done)
    }

    async fn undo_charge(&self, _ctx: &Context) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
