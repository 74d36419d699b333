use sagaflow::prelude::*;

struct Report;

#[workflow(
    name = "daily_report",
    schedule(cron = ["0 6 * * *", "61 * * * *"]),
    schedule(cron = "every day"),
    schedule(every = "1h", start_at = "2025-02-01T00:00:00Z", end_at = "2025-01-01T00:00:00Z")
)]
impl Report {
    #[step]
    async fn generate(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
