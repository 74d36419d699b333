use sagaflow::prelude::*;

struct Nightly;

#[workflow(name = "nightly", dead_letter_ttl = "30d", retention = 0, step_concurrency = 0, max_retries = 0, retry_backoff = fixed)]
impl Nightly {
    #[step]
    async fn run(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
