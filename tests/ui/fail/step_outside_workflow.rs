use sagaflow::prelude::*;

struct NotAWorkflow;

impl NotAWorkflow {
    #[step(after = other)]
    async fn lonely(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

#[graft]
async fn free_function(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}

fn main() {}
