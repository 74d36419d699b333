use sagaflow::prelude::*;
use sagaflow::ExecutionState;

struct NotJson;

struct Status;

#[workflow(name = "status")]
impl Status {
    #[step]
    fn only() -> StepResult {
        Ok(Outcome::Done)
    }

    #[query]
    async fn slow(&self, state: &ExecutionState) -> u32 {
        state.attempt
    }

    #[query]
    fn nothing(&self) -> u32 {
        0
    }

    #[query]
    fn owned(&self, state: ExecutionState) -> u32 {
        state.attempt
    }

    #[query]
    fn two(&self, state: &ExecutionState, extra: u32) -> u32 {
        state.attempt + extra
    }

    #[query]
    fn silent(&self, state: &ExecutionState) {
        let _ = state;
    }

    #[query(name = "renamed")]
    fn named(&self, state: &ExecutionState) -> u32 {
        state.attempt
    }
}

struct Opaque;

#[workflow(name = "opaque")]
impl Opaque {
    #[step]
    fn only() -> StepResult {
        Ok(Outcome::Done)
    }

    #[query]
    fn blob(state: &ExecutionState) -> NotJson {
        let _ = state;
        NotJson
    }

    #[query]
    fn wrong_state(state: &u32) -> u32 {
        *state
    }
}

#[sagaflow::query]
fn stray(state: &ExecutionState) -> u32 {
    state.attempt
}

fn main() {}
