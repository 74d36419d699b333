use sagaflow::prelude::*;

struct Billing;

#[workflow(name = "billing")]
impl Billing {
    #[step(concurrency = 0, concurrency_key = "tenant_id")]
    async fn reserve(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = reserve, concurrency_key = "tenant_id")]
    async fn charge(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = charge, rate_limit = "10 per second")]
    async fn notify(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = notify, rate_limit = "0/1s")]
    async fn audit(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = audit, rate_limit = "5/0s")]
    async fn archive(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = archive, rate_limit_key = "account")]
    async fn report(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
