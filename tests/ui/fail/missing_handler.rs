use sagaflow::prelude::*;

struct Signup;

#[workflow(name = "signup", on_failure = cleanup_failed, on_success = welcome)]
impl Signup {
    #[step]
    async fn create_account(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    async fn cleanup_failed_signup(&self, _ctx: &Context) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
