use sagaflow::prelude::*;

struct Batch;

#[workflow(name = "batch")]
impl Batch {
    #[step]
    async fn process_items(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after_graft = process_items)]
    async fn summarize(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
