use sagaflow::prelude::*;

struct Pipeline;

#[workflow(name = "pipeline", timeout = "90 minuts", step_retry_delay = infinity)]
impl Pipeline {
    #[step(timeout = "30x")]
    async fn transform(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = transform, retry_delay = "-5s", retry_max_delay = 1.5)]
    async fn upload(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
