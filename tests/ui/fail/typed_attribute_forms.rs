use sagaflow::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Signup {
    email: String,
}

struct Onboarding;

#[workflow(name = "onboarding", input = 3)]
impl Onboarding {
    #[step]
    fn create_account(#[input] email: &str, #[from(a, b)] other: u64) -> Result<String, StepError> {
        let _ = other;
        Ok(email.to_owned())
    }
}

struct Verification;

#[workflow(name = "verification", input = Signup)]
impl Verification {
    #[step]
    fn send(#[input = "email"] email: &str, #[input("e-mail")] address: &str) -> Result<String, StepError> {
        Ok(format!("{email} {address}"))
    }

    #[step(after = send, await_approval, on_timeout = expire)]
    fn confirm(#[input] (user, domain): (String, String)) -> StepResult {
        let _ = (user, domain);
        Ok(Outcome::await_for("24h"))
    }

    fn expire(#[from(confirm)] confirmed: bool) -> StepResult {
        let _ = confirmed;
        Ok(Outcome::Done)
    }

    #[step(after = confirm)]
    fn finish(#[from(send)] &self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {
    let _ = Signup { email: String::new() }.email;
}
