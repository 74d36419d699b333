use sagaflow::prelude::*;

struct Sync;

#[workflow(name = "sync")]
impl Sync {
    #[step(name = "fetch")]
    async fn fetch_orders(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(name = "fetch")]
    async fn fetch_customers(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
