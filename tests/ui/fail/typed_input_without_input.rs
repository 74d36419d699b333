use sagaflow::prelude::*;

struct Onboarding;

#[workflow(name = "onboarding")]
impl Onboarding {
    #[step]
    fn create_account(#[input] email: &str) -> Result<String, StepError> {
        Ok(email.to_owned())
    }
}

fn main() {}
