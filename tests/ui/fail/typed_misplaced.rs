use sagaflow::prelude::*;

struct Onboarding;

#[workflow(name = "onboarding")]
impl Onboarding {
    #[step]
    fn create_account() -> Result<u64, StepError> {
        Ok(1)
    }

    #[step(after = create_account, when = has_account)]
    fn send_welcome(ctx: &Context, other: &Context, #[from] account: u64) -> Result<u64, StepError> {
        let _ = (ctx, other);
        Ok(account)
    }

    #[step(after = create_account)]
    fn track(#[from(create_account)] #[from(send_welcome)] account: u64) -> Result<u64, StepError> {
        Ok(account)
    }

    fn has_account(#[from(create_account)] account: u64) -> bool {
        account > 0
    }

    fn helper(#[from(create_account)] account: u64) -> u64 {
        account
    }
}

fn main() {}
