use sagaflow::prelude::*;

struct Api;

#[workflow(name = "api", retry_delay = "5s")]
impl Api {
    #[step(retry_on = [timeout, connection_error], no_retry_on = [validation_error, timeout])]
    async fn call(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = call, max_retries = 0, retry_backoff = linear)]
    async fn record(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = record, retry_delay = "1m", retry_max_delay = "30s")]
    async fn notify(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
