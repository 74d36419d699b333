//! Three mistakes, three errors: all are reported in one compile.
use sagaflow::prelude::*;

struct Onboarding;

#[workflow(name = "onboarding")]
impl Onboarding {
    #[step(timeout = "5 minuts")]
    async fn create_account(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = create_acount)]
    async fn setup_profile(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = setup_profile, rollback = undo)]
    async fn send_welcome_email(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {
    // The placeholder impl keeps uses of the type free of errors of their own.
    let _ = Onboarding::NAME;
}
