use sagaflow::prelude::*;

struct Shapes;

#[workflow(name = "shapes")]
impl Shapes {
    #[step]
    async fn mutates(&mut self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step]
    async fn two_inputs(&self, ctx: &Context, extra: u32) -> StepResult {
        let _ = (ctx, extra);
        Ok(Outcome::Done)
    }

    #[step]
    async fn generic<T: Default>(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
