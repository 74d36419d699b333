//! SPEC's user onboarding with e-mail verification, run against simulated account
//! services on a SQLite file. The program plays the user: it clicks the
//! verification link a moment after it is sent (it resumes the awaiting execution).
//!
//! ```sh
//! cargo run --example user_onboarding                    # verified, set up, welcomed
//! cargo run --example user_onboarding -- --ignore-link   # the link expires: the account is deleted
//! cargo run --example user_onboarding -- --storage-full  # setup fails: the account is deleted
//! cargo run --example user_onboarding -- --mail-down     # the welcome mail fails; the signup stands
//! ```

#[path = "support/mod.rs"]
mod support;
#[path = "scenarios/user_onboarding.rs"]
mod user_onboarding;

use std::time::Duration;

use sagaflow::prelude::*;

use support::live::LiveView;
use support::run::{Database, Flags, print_outcome, resume_when_awaiting};
use user_onboarding::{AccountFaults, Accounts, UserOnboarding};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags = Flags::parse(
        "user_onboarding",
        "Signs up alice@example.com against simulated account services.",
        &[
            ("--ignore-link", "nobody clicks the link; it expires after 3 s (instead of SPEC's 24 h)"),
            ("--storage-full", "provisioning storage fails after verification"),
            ("--mail-down", "the welcome mail fails (on_error = continue)"),
        ],
    )?;
    let accounts = Accounts::new(AccountFaults {
        storage_full: flags.has("--storage-full"),
        welcome_mail_down: flags.has("--mail-down"),
    });
    let mut onboarding = UserOnboarding::new(accounts.clone());
    if flags.has("--ignore-link") {
        onboarding.verification_window = Duration::from_secs(3);
    }

    let db = Database::for_program("user_onboarding")?;
    println!("store: {} (simulated account services)\n", db.url());
    let engine = Engine::builder().store_url(db.url()).workflow(onboarding).build().await?;

    let view = LiveView::watch(&engine);
    let printer = view.printer();
    accounts.ledger.observe(move |entry| printer.service(entry));
    let input = json!({
        "email": "alice@example.com",
        "name": "Alice",
        "password": "correct horse battery staple",
        "source": "newsletter",
    });
    let id = engine.start("user_onboarding", input).await?;
    let user = (!flags.has("--ignore-link")).then(|| {
        resume_when_awaiting(
            &engine,
            id,
            Duration::from_millis(1500),
            view.printer(),
            "alice (clicking the link)",
            json!({ "email_verified": true }),
        )
    });
    let state = engine.wait(id).await?;
    if let Some(user) = user {
        user.abort();
    }
    view.finish().await;

    print_outcome(&engine, &state).await?;
    engine.shutdown().await;
    Ok(())
}
