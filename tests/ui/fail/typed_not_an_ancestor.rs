use sagaflow::prelude::*;

struct Signup;

#[workflow(name = "signup")]
impl Signup {
    #[step]
    fn create_account() -> Result<u64, StepError> {
        Ok(1)
    }

    // Runs beside `send_email`, after `create_account`: nothing orders the two.
    #[step(after = create_account)]
    fn create_settings(#[from(send_email)] sent: bool) -> Result<u64, StepError> {
        Ok(u64::from(sent))
    }

    #[step(after = create_account)]
    fn send_email(#[from(create_trial)] trial_days: u32) -> Result<bool, StepError> {
        Ok(trial_days > 0)
    }

    #[step(after = send_email)]
    fn create_trial(#[from(create_trial)] previous: u32) -> Result<u32, StepError> {
        Ok(previous + 14)
    }
}

fn main() {}
