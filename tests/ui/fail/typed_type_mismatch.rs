use sagaflow::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Account {
    id: u64,
}

#[derive(Serialize, Deserialize)]
struct User {
    name: String,
}

struct Onboarding;

#[workflow(name = "onboarding")]
impl Onboarding {
    #[step]
    async fn create_account(&self) -> Result<Account, StepError> {
        Ok(Account { id: 1 })
    }

    #[step]
    fn count_users() -> Result<u64, StepError> {
        Ok(3)
    }

    #[step(after = [create_account, count_users])]
    async fn send_welcome(
        &self,
        #[from(create_account)] user: &User,
        #[from(count_users)] count: Option<&str>,
    ) -> Result<String, StepError> {
        Ok(format!("{} {count:?}", user.name))
    }
}

fn main() {}
