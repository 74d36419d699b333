use sagaflow::prelude::*;

struct Race;

#[workflow(name = "race")]
impl Race {
    #[step]
    async fn start(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = start, circuit_breaker_opts(failure_threshold = 3))]
    async fn call_api(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = [start, call_api], after_any = [call_api], on_timeout = expired)]
    async fn finish(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    async fn expired(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
