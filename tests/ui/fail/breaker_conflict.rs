use sagaflow::prelude::*;

struct Payments;

#[workflow(name = "payments")]
impl Payments {
    #[step(circuit_breaker = stripe, circuit_breaker_opts(failure_threshold = 5, reset_timeout = "30s"))]
    async fn charge(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = charge, circuit_breaker = stripe, circuit_breaker_opts(failure_threshold = 0))]
    async fn refund(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
