use sagaflow::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Signup {
    email: String,
    plan: Option<String>,
}

struct Onboarding;

#[workflow(name = "onboarding", input = Signup)]
impl Onboarding {
    #[step]
    fn create_account(#[input] email: u64, #[input] emial: &str, #[input(plan)] tier: &str) -> Result<u64, StepError> {
        let _ = (emial, tier);
        Ok(email)
    }
}

fn main() {}
