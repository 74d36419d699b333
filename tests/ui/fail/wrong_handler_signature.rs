use sagaflow::prelude::*;

struct Job;

#[workflow(name = "job", on_cancel = handle_cancel, on_step_error = handle_step_error)]
impl Job {
    #[step]
    async fn work(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    async fn handle_cancel(&self, _ctx: &Context) -> StepResult {
        Ok(Outcome::Done)
    }

    fn handle_step_error(self, _ctx: &Context, _step: &str, _error: &StepError, _attempt: u32) {}
}

fn main() {}
