use sagaflow::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Settings {
    theme: String,
}

struct Onboarding;

#[workflow(name = "onboarding", on_failure = cleanup)]
impl Onboarding {
    #[step]
    fn create_account() -> Result<u64, StepError> {
        Ok(1)
    }

    #[step(after = create_account, when = verified)]
    fn create_settings() -> Result<Settings, StepError> {
        Ok(Settings { theme: "dark".into() })
    }

    #[step(after = create_account, on_error = skip)]
    fn create_workspace() -> Result<u64, StepError> {
        Ok(2)
    }

    #[step(after = create_account, on_error = continue)]
    fn provision_storage() -> Result<String, StepError> {
        Ok("s3://bucket".into())
    }

    #[step(after_any = [create_settings, create_workspace])]
    fn first_ready() -> Result<u64, StepError> {
        Ok(3)
    }

    #[step(after = [create_settings, create_workspace, provision_storage, first_ready])]
    fn welcome(
        #[from(create_settings)] settings: &Settings,
        #[from(create_workspace)] workspace: u64,
        #[from(provision_storage)] bucket: &str,
        #[from(first_ready)] first: u64,
        #[from(create_account)] account: Option<u64>,
    ) -> Result<String, StepError> {
        Ok(format!("{} {workspace} {bucket} {first} {account:?}", settings.theme))
    }

    #[graft(after = create_account, on_error = continue)]
    fn import_contacts() -> StepResult {
        Ok(Outcome::expand([]))
    }

    #[step(after_graft = import_contacts)]
    fn count_contacts(#[from(import_contacts)] contacts: Vec<String>) -> Result<usize, StepError> {
        Ok(contacts.len())
    }

    fn verified(ctx: &Context) -> bool {
        ctx.get_or("verified", false)
    }

    fn cleanup(#[from(create_account)] account: u64) -> Result<(), StepError> {
        let _ = account;
        Ok(())
    }
}

fn main() {}
