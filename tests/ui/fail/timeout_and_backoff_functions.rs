use std::time::Duration;

use sagaflow::prelude::*;

struct Import;

#[workflow(name = "import", step_timeout = size_limit)]
impl Import {
    #[step(timeout = compute_timout, retry_backoff = backof)]
    async fn download(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after_graft = downlod)]
    async fn parse(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    fn compute_timeout(_ctx: &Context) -> Option<Duration> {
        None
    }

    fn backoff(attempt: u32) -> Duration {
        Duration::from_secs(u64::from(attempt))
    }

    async fn size_limit(&self, _ctx: &Context) -> Duration {
        Duration::from_secs(60)
    }
}

fn main() {}
