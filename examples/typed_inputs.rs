//! SPEC's "User Onboarding with Verification" and "E-Commerce Order Processing"
//! workflows, written with typed inputs: each step takes the outputs of the steps
//! before it (`#[from(step)]`) and fields of the workflow's input (`#[input]`) as
//! parameters of their own types, instead of reading string keys from the context.
//!
//! The macro checks at compile time that every step read runs before the step that
//! reads it, that steps which may be skipped (`when`, `on_error = continue`) are read
//! as `Option`s, and that each parameter has the type its step returns. Try it: make
//! `create_trial_subscription` read `#[from(create_default_settings)] settings:
//! &Settings` (a step with `when`), or `send_sms_notification` read
//! `#[from(complete_order)]`, and build again.
//!
//! The onboarding pauses for the email verification, which `main` gives as the user
//! clicking the link would; the second order fails at shipping and is rolled back,
//! each compensation reading the output of the step it undoes.
//!
//! Run with `cargo run --example typed_inputs` (in-memory store; a second or so).

use std::sync::Mutex;
use std::time::Duration;

use sagaflow::prelude::*;
use serde::{Deserialize, Serialize};

/// Prints one line per step, indented under the workflow's name.
fn say(step: &str, what: impl std::fmt::Display) {
    println!("  {step:<28} {what}");
}

// ─────────────────────────────────────────────────────────────────────────────
// User onboarding
// ─────────────────────────────────────────────────────────────────────────────

/// What `engine.start("user_onboarding", ..)` is given.
#[derive(Debug, Deserialize)]
struct Signup {
    email: String,
    name: String,
    password: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    referrer: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    email: String,
    name: String,
    password_hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Verification {
    token: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Settings {
    id: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Workspace {
    id: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Subscription {
    id: u64,
    trial_ends_at: String,
}

/// The onboarding's resources: here an in-memory user table standing in for the
/// application's database.
#[derive(Default)]
struct UserOnboarding {
    users: Mutex<Vec<User>>,
}

#[workflow(name = "user_onboarding", input = Signup, timeout = "7d", on_failure = cleanup_failed_signup)]
impl UserOnboarding {
    #[step(rollback = delete_account)]
    async fn create_account(&self, #[input] signup: &Signup) -> Result<User, StepError> {
        let user = User {
            id: 1001,
            email: signup.email.clone(),
            name: signup.name.clone(),
            password_hash: format!("hash:{}", signup.password.len()),
        };
        self.users.lock().unwrap().push(user.clone());
        say("create_account", format!("user {} for {}", user.id, user.email));
        Ok(user)
    }

    #[step(after = create_account)]
    async fn send_verification_email(
        &self,
        #[from(create_account)] user: &User,
        #[input] email: &str,
    ) -> Result<Verification, StepError> {
        let token = format!("verify-{}", user.id);
        say("send_verification_email", format!("link with {token} sent to {email}"));
        Ok(Verification { token })
    }

    /// Pauses until `resume(id, {"email_verified": true})`: the user clicked the link.
    #[step(after = send_verification_email, await_approval, on_timeout = resend_or_expire)]
    async fn await_email_verification(&self, #[from(send_verification_email)] sent: &Verification) -> StepResult {
        say("await_email_verification", format!("waiting for {} to be clicked", sent.token));
        Ok(Outcome::await_for("24h"))
    }

    #[step(after = await_email_verification, when = email_verified, group = setup)]
    async fn create_default_settings(&self, #[from(create_account)] user: &User) -> Result<Settings, StepError> {
        say("create_default_settings", format!("settings for user {}", user.id));
        Ok(Settings { id: 2001 })
    }

    #[step(after = await_email_verification, when = email_verified, group = setup)]
    async fn create_default_workspace(&self, #[from(create_account)] user: &User) -> Result<Workspace, StepError> {
        say("create_default_workspace", format!("personal workspace of {}", user.name));
        Ok(Workspace { id: 3001 })
    }

    #[step(after = await_email_verification, when = email_verified, group = setup)]
    async fn provision_storage(&self, #[from(create_account)] user: &User) -> Result<String, StepError> {
        let bucket = format!("s3://users/{}", user.id);
        say("provision_storage", &bucket);
        Ok(bucket)
    }

    // The setup steps have `when`, so they may be skipped: read as `Option`s.
    #[step(after_group = setup)]
    async fn create_trial_subscription(
        &self,
        #[from(create_account)] user: &User,
        #[from(create_default_workspace)] workspace: Option<&Workspace>,
        #[from(provision_storage)] bucket: Option<&str>,
    ) -> Result<Subscription, StepError> {
        let subscription = Subscription { id: 4001, trial_ends_at: "in 14 days".into() };
        say(
            "create_trial_subscription",
            format!(
                "trial {} for user {} (workspace {:?}, storage {:?})",
                subscription.id,
                user.id,
                workspace.map(|w| w.id),
                bucket.unwrap_or("none")
            ),
        );
        Ok(subscription)
    }

    #[step(after = create_trial_subscription, on_error = continue)]
    async fn send_welcome_email(
        &self,
        #[from(create_account)] user: &User,
        #[from(create_trial_subscription)] subscription: &Subscription,
    ) -> Result<(), StepError> {
        say("send_welcome_email", format!("welcome {}, your trial ends {}", user.name, subscription.trial_ends_at));
        Ok(())
    }

    #[step(after = create_trial_subscription, on_error = continue)]
    async fn schedule_onboarding_emails(&self, #[from(create_account)] user: &User) -> Result<Vec<String>, StepError> {
        let sequence: Vec<String> = ["1d getting_started", "3d first_project", "7d power_features", "12d trial_ending"]
            .map(String::from)
            .into();
        say("schedule_onboarding_emails", format!("{} emails for user {}", sequence.len(), user.id));
        Ok(sequence)
    }

    #[step(after = send_welcome_email, on_error = continue)]
    async fn track_signup(
        &self,
        #[from(create_account)] user: &User,
        #[input] source: Option<&str>,
        #[input] referrer: Option<&str>,
    ) -> Result<(), StepError> {
        say(
            "track_signup",
            format!("user {} from {} (referrer {})", user.id, source.unwrap_or("organic"), referrer.unwrap_or("none")),
        );
        Ok(())
    }

    /// After 24 hours without a click: the signup expires (and is rolled back).
    async fn resend_or_expire(
        &self,
        #[from(create_account)] user: &User,
        #[from(send_verification_email)] sent: &Verification,
    ) -> Result<(), StepError> {
        say("resend_or_expire", format!("{} was not clicked by {}", sent.token, user.email));
        Err(StepError::new("verification_expired", "the email address was not verified within 24 hours").permanent())
    }

    fn email_verified(ctx: &Context) -> bool {
        ctx.get_or("email_verified", false)
    }

    // A compensation reads the output of the step it undoes.
    async fn delete_account(&self, #[from(create_account)] user: User) -> Result<(), StepError> {
        self.users.lock().unwrap().retain(|u| u.id != user.id);
        say("delete_account", format!("user {} deleted", user.id));
        Ok(())
    }

    // `on_failure` runs whatever did not: the account may not exist.
    async fn cleanup_failed_signup(&self, #[from(create_account)] user: Option<User>) -> Result<(), StepError> {
        say("cleanup_failed_signup", format!("signup failed; user {:?}", user.map(|u| u.id)));
        Ok(())
    }
}

// ─────────────────────────────────────────────────────────────────────────────
// Order processing
// ─────────────────────────────────────────────────────────────────────────────

#[derive(Debug, Deserialize)]
struct OrderRequest {
    order_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    sku: String,
    quantity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer_id: u64,
    items: Vec<Item>,
    total_cents: u64,
    payment_method: String,
    customer_phone: String,
    country: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct FraudCheck {
    passed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reservation {
    id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Authorization {
    id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Payment {
    id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Shipment {
    id: String,
    tracking_number: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Completion {
    status: String,
}

/// The order workflow's resources: a catalogue of orders standing in for the shop's
/// database.
struct OrderProcessing {
    orders: Vec<Order>,
}

#[workflow(name = "order_processing", input = OrderRequest, timeout = "30m", on_failure = handle_order_failure, dead_letter)]
impl OrderProcessing {
    #[step]
    async fn validate_order(&self, #[input] order_id: u64) -> Result<Order, StepError> {
        let order = self
            .orders
            .iter()
            .find(|o| o.id == order_id)
            .cloned()
            .ok_or_else(|| StepError::new("validation_error", format!("no order {order_id}")).permanent())?;
        say(
            "validate_order",
            format!("order {} of customer {}: {} cents", order.id, order.customer_id, order.total_cents),
        );
        Ok(order)
    }

    #[step(after = validate_order, timeout = "10s")]
    async fn check_fraud(&self, #[from(validate_order)] order: &Order) -> Result<FraudCheck, StepError> {
        let passed = order.total_cents < 1_000_000;
        say("check_fraud", if passed { "clear" } else { "rejected" });
        if !passed {
            return Err(StepError::new("fraud_detected", "the order was rejected").permanent());
        }
        Ok(FraudCheck { passed })
    }

    #[step(after = check_fraud, group = pre_fulfillment, rollback = release_inventory)]
    async fn reserve_inventory(&self, #[from(validate_order)] order: &Order) -> Result<Reservation, StepError> {
        let units: u32 = order.items.iter().map(|i| i.quantity).sum();
        say("reserve_inventory", format!("{units} units reserved"));
        Ok(Reservation { id: format!("res-{}", order.id) })
    }

    #[step(after = check_fraud, group = pre_fulfillment, rollback = void_authorization)]
    async fn authorize_payment(&self, #[from(validate_order)] order: &Order) -> Result<Authorization, StepError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        say("authorize_payment", format!("{} cents on {}", order.total_cents, order.payment_method));
        Ok(Authorization { id: format!("auth-{}", order.id) })
    }

    #[step(after_group = pre_fulfillment, rollback = refund_payment)]
    async fn capture_payment(
        &self,
        #[from(authorize_payment)] authorization: &Authorization,
    ) -> Result<Payment, StepError> {
        say("capture_payment", format!("captured {}", authorization.id));
        Ok(Payment { id: format!("pay-{}", &authorization.id[5..]) })
    }

    #[step(after = capture_payment, rollback = cancel_shipment)]
    async fn create_shipment(
        &self,
        #[from(validate_order)] order: &Order,
        #[from(reserve_inventory)] reservation: &Reservation,
    ) -> Result<Shipment, StepError> {
        if order.country != "PT" {
            say("create_shipment", format!("cannot ship to {}", order.country));
            return Err(StepError::new("address_unverifiable", format!("no carrier for {}", order.country)).permanent());
        }
        let shipment = Shipment { id: format!("ship-{}", order.id), tracking_number: format!("PT{}XYZ", order.id) };
        say(
            "create_shipment",
            format!("{} from {}, tracking {}", shipment.id, reservation.id, shipment.tracking_number),
        );
        Ok(shipment)
    }

    #[step(after = create_shipment, group = notifications, on_error = continue)]
    async fn send_confirmation_email(
        &self,
        #[from(validate_order)] order: &Order,
        #[from(create_shipment)] shipment: &Shipment,
    ) -> Result<(), StepError> {
        say("send_confirmation_email", format!("order {} shipped, tracking {}", order.id, shipment.tracking_number));
        Ok(())
    }

    #[step(after = create_shipment, group = notifications, on_error = continue)]
    async fn send_sms_notification(&self, #[from(validate_order)] order: &Order) -> Result<(), StepError> {
        say("send_sms_notification", format!("to {}: Order {} shipped!", order.customer_phone, order.id));
        Ok(())
    }

    #[step(after = create_shipment, group = notifications, on_error = continue)]
    async fn update_analytics(&self, #[from(validate_order)] order: &Order) -> Result<(), StepError> {
        say("update_analytics", format!("order_fulfilled {} ({} items)", order.id, order.items.len()));
        Ok(())
    }

    #[step(after_group = notifications)]
    async fn complete_order(&self, #[input] order_id: u64) -> Result<Completion, StepError> {
        say("complete_order", format!("order {order_id} fulfilled"));
        Ok(Completion { status: "fulfilled".into() })
    }

    // Compensations, each reading what its step returned.
    async fn release_inventory(&self, #[from(reserve_inventory)] reservation: Reservation) -> Result<(), StepError> {
        say("release_inventory", format!("released {}", reservation.id));
        Ok(())
    }

    async fn void_authorization(
        &self,
        #[from(authorize_payment)] authorization: Authorization,
    ) -> Result<(), StepError> {
        say("void_authorization", format!("voided {}", authorization.id));
        Ok(())
    }

    async fn refund_payment(&self, #[from(capture_payment)] payment: Payment) -> Result<(), StepError> {
        say("refund_payment", format!("refunded {}", payment.id));
        Ok(())
    }

    async fn cancel_shipment(&self, #[from(create_shipment)] shipment: Shipment) -> Result<(), StepError> {
        say("cancel_shipment", format!("cancelled {}", shipment.id));
        Ok(())
    }

    async fn handle_order_failure(
        &self,
        ctx: &Context,
        #[input] order_id: u64,
        #[from(validate_order)] order: Option<&Order>,
    ) -> Result<(), StepError> {
        let error: StepError = ctx.get("__error__")?;
        let customer = order.map_or_else(|| "unknown".to_owned(), |o| o.customer_id.to_string());
        say("handle_order_failure", format!("order {order_id} of customer {customer} failed: {error}"));
        Ok(())
    }
}

fn sample_orders() -> Vec<Order> {
    let order = |id: u64, country: &str| Order {
        id,
        customer_id: 77,
        items: vec![Item { sku: "book".into(), quantity: 2 }, Item { sku: "pen".into(), quantity: 3 }],
        total_cents: 4_250,
        payment_method: "card ending 4242".into(),
        customer_phone: "+351 900 000 000".into(),
        country: country.into(),
    };
    vec![order(1, "PT"), order(2, "Atlantis")]
}

/// Polls until the execution is awaiting (the engine runs on its own tasks).
async fn until_awaiting(engine: &Engine, id: ExecutionId) -> Result<(), Box<dyn std::error::Error>> {
    while engine.get_state(id).await?.status != Status::Awaiting {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::builder()
        .store_url("memory://")
        .workflow(UserOnboarding::default())
        .workflow(OrderProcessing { orders: sample_orders() })
        .build()
        .await?;

    println!("user_onboarding");
    let signup = json!({
        "email": "alice@example.com",
        "name": "Alice",
        "password": "correct horse battery staple",
        "source": "newsletter"
    });
    let id = engine.start("user_onboarding", signup).await?;
    until_awaiting(&engine, id).await?;
    // The user clicks the verification link.
    engine.resume(id, json!({ "email_verified": true })).await?;
    let state = engine.wait(id).await?;
    println!("  -> {}", state.status);
    assert_eq!(state.status, Status::Completed);

    // Order 2 cannot be shipped: the steps before are compensated, newest first.
    for (order_id, expected) in [(1, Status::Completed), (2, Status::RolledBack)] {
        println!("order_processing (order {order_id})");
        let id = engine.start("order_processing", json!({ "order_id": order_id })).await?;
        let state = engine.wait(id).await?;
        match &state.rollback {
            Some(rollback) => println!("  -> {} (compensated: {})", state.status, rollback.compensated.join(", ")),
            None => println!("  -> {}", state.status),
        }
        assert_eq!(state.status, expected);
    }
    println!("dead letters: {}", engine.dead_letters().list(Some("order_processing")).await?.len());
    engine.shutdown().await;
    Ok(())
}
