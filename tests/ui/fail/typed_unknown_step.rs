use sagaflow::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Account {
    id: u64,
}

struct Onboarding;

#[workflow(name = "onboarding")]
impl Onboarding {
    #[step]
    fn create_account() -> Result<Account, StepError> {
        Ok(Account { id: 1 })
    }

    #[step(after = create_account)]
    fn send_welcome(#[from(creat_account)] account: &Account) -> Result<u64, StepError> {
        Ok(account.id)
    }

    #[step(after = send_welcome)]
    fn track(#[from(analytics)] events: Vec<String>) -> Result<usize, StepError> {
        Ok(events.len())
    }
}

fn main() {}
