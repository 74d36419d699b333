//! Typed inputs of every form compile without warnings.
#![deny(warnings)]

use sagaflow::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Signup {
    pub email: String,
    pub tags: Vec<String>,
    pub referrer: Option<String>,
    pub r#type: String,
}

#[derive(Serialize, Deserialize)]
pub struct Account {
    pub id: u64,
}

pub struct Onboarding;

#[workflow(name = "typed_pass", input = Signup, on_failure = cleanup, on_success = done)]
impl Onboarding {
    #[step(rollback = undo)]
    async fn create_account(&self, #[input] email: &str, #[input] tags: &[String]) -> Result<Account, StepError> {
        Ok(Account { id: (email.len() + tags.len()) as u64 })
    }

    #[step(after = create_account, when = wanted)]
    fn settings(#[from(create_account)] mut account: Account) -> Result<u64, StepError> {
        account.id += 1;
        Ok(account.id)
    }

    #[graft(after = create_account)]
    fn fan(#[from(create_account)] account: Option<&Account>) -> StepResult {
        let n = account.map_or(0, |a| a.id);
        Ok(Outcome::expand((0..n).map(|i| {
            Task::new(format!("item_{i}"), move |_ctx: Context| async move { Ok::<_, StepError>(i) })
        })))
    }

    #[step(after = [settings, fan])]
    async fn summary(
        ctx: Context,
        #[from(settings)] settings: Option<u64>,
        #[from(fan)] items: Vec<u64>,
        #[input(referrer)] from: Option<&str>,
        #[input] signup: &Signup,
        #[input(r#type)] kind: &str,
        #[from(create_account)] account: &mut Account,
    ) -> Result<String, StepError> {
        account.id += 1;
        Ok(format!("{:?} {settings:?} {} {from:?} {} {} {kind}", ctx.step(), items.len(), signup.email, account.id))
    }

    fn wanted(ctx: &Context) -> bool {
        ctx.get_or("wanted", true)
    }

    async fn undo(&self, #[from(create_account)] account: Account) -> Result<(), StepError> {
        let _ = account.id;
        Ok(())
    }

    fn cleanup(#[from(create_account)] account: Option<Account>) -> Result<(), StepError> {
        let _ = account;
        Ok(())
    }

    fn done(#[from(summary)] summary: String, #[from(settings)] settings: Option<u64>) -> Result<(), StepError> {
        let _ = (summary, settings);
        Ok(())
    }
}

fn main() {
    let def = Onboarding.into_definition().unwrap();
    assert_eq!(def.steps().len(), 4);
}
