//! SPEC's "E-Commerce Order Processing": validate the order, check it for fraud
//! (a review parks the execution until the fraud team answers), reserve the stock
//! and authorize the card in parallel, capture the payment, ship, notify the
//! customer three ways (failures there do not fail the order), complete. A failure
//! after money or stock moved undoes it (release, void, refund, cancel the
//! shipment), then `handle_order_failure` marks the order failed and mails the
//! customer; the execution stays as a dead letter.
//!
//! The shop's services are simulations (see [`Shop`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sagaflow::AwaitRequest;
use sagaflow::prelude::*;
use serde::{Deserialize, Serialize};

use super::support::sim::{Faults, Ledger, latency};

/// What the fraud service answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing suspicious.
    #[default]
    Clear,
    /// A human must look at it.
    Review,
    /// Refused outright.
    Reject,
}

/// Failures the simulated services are told to produce.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ShopFaults {
    /// The fraud service's answer.
    pub(crate) fraud: Verdict,
    /// The bank declines the card.
    pub(crate) decline_card: bool,
    /// The payment gateway times out on this many calls before answering.
    pub(crate) gateway_timeouts: u32,
    /// The warehouse has none of the items left.
    pub(crate) out_of_stock: bool,
    /// The carrier's API refuses every shipment.
    pub(crate) carrier_down: bool,
    /// The SMS provider rejects the customer's number.
    pub(crate) sms_down: bool,
}

/// One line of an order.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Item {
    /// Stock-keeping unit.
    pub(crate) sku: String,
    /// How many.
    pub(crate) quantity: u32,
    /// Price of one, in cents.
    pub(crate) unit_cents: u64,
}

/// An order as the shop's database holds it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Order {
    /// Order id.
    pub(crate) id: String,
    /// Customer id.
    pub(crate) customer_id: String,
    /// Customer's e-mail address.
    pub(crate) customer_email: String,
    /// Customer's phone number.
    pub(crate) customer_phone: String,
    /// Card token.
    pub(crate) payment_method: String,
    /// The lines.
    pub(crate) items: Vec<Item>,
    /// Sum of the lines, in cents.
    pub(crate) total: u64,
}

/// The shop's simulated services: orders, fraud check, inventory, payments,
/// shipping, mail, SMS and analytics. Each call sleeps as long as its real
/// counterpart typically takes and records its effect in the ledger.
#[derive(Debug)]
pub(crate) struct Shop {
    /// What the services did.
    pub(crate) ledger: Arc<Ledger>,
    /// The failures to produce, per order.
    pub(crate) faults: Faults<ShopFaults>,
    orders: Mutex<HashMap<String, Order>>,
}

impl Shop {
    /// A shop with one order, `ord-1001`, and these faults for every order.
    pub(crate) fn new(faults: ShopFaults) -> Arc<Shop> {
        let shop = Arc::new(Shop { ledger: Ledger::new(), faults: Faults::new(faults), orders: Mutex::default() });
        shop.add_order(Shop::sample_order("ord-1001"));
        shop
    }

    /// Puts an order in the shop's database.
    pub(crate) fn add_order(&self, order: Order) {
        self.orders.lock().unwrap().insert(order.id.clone(), order);
    }

    /// An order of two mugs and a box of tea.
    pub(crate) fn sample_order(id: &str) -> Order {
        let items = vec![
            Item { sku: "mug-blue".into(), quantity: 2, unit_cents: 1_250 },
            Item { sku: "tea-sencha-100g".into(), quantity: 1, unit_cents: 890 },
        ];
        let total = items.iter().map(|i| u64::from(i.quantity) * i.unit_cents).sum();
        Order {
            id: id.into(),
            customer_id: "cus-42".into(),
            customer_email: "ada@example.com".into(),
            customer_phone: "+44 20 7946 0001".into(),
            payment_method: "card_tok_visa_4242".into(),
            items,
            total,
        }
    }

    async fn get_order(&self, id: &str) -> Result<Order, StepError> {
        latency(40).await;
        let order = self.orders.lock().unwrap().get(id).cloned();
        order.ok_or_else(|| StepError::new("order_not_found", format!("no order `{id}`")).permanent())
    }

    fn validate(order: &Order) -> Result<(), StepError> {
        if order.items.is_empty() || order.total == 0 {
            return Err(StepError::new("invalid_order", format!("order {} has nothing to pay", order.id)).permanent());
        }
        Ok(())
    }

    async fn fraud_check(&self, order: &str, customer: &str, total: u64) -> Verdict {
        latency(350).await;
        let verdict = self.faults.of(order).fraud;
        self.ledger.record("fraud", format!("scored {customer} for {}: {verdict:?}", money(total)));
        verdict
    }

    async fn reserve(&self, order: &str, items: &[Item]) -> Result<String, StepError> {
        latency(220).await;
        if self.faults.of(order).out_of_stock {
            return Err(
                StepError::new("inventory_unavailable", format!("`{}` is out of stock", items[0].sku)).permanent()
            );
        }
        let id = self.ledger.next_id("res");
        let skus: Vec<&str> = items.iter().map(|i| i.sku.as_str()).collect();
        self.ledger.record("inventory", format!("reserved {} as {id}", skus.join(", ")));
        Ok(id)
    }

    async fn release(&self, reservation: &str) {
        latency(120).await;
        self.ledger.record("inventory", format!("released {reservation}"));
    }

    async fn authorize(&self, order: &str, card: &str, total: u64) -> Result<String, StepError> {
        latency(480).await;
        let timed_out = self.faults.with(order, |f| {
            let left = f.gateway_timeouts > 0;
            f.gateway_timeouts = f.gateway_timeouts.saturating_sub(1);
            left
        });
        if timed_out {
            return Err(StepError::new("timeout", "the payment gateway did not answer within 5 s"));
        }
        if self.faults.of(order).decline_card {
            self.ledger.record("payments", format!("declined {card} for {}", money(total)));
            return Err(StepError::new("payment_failed", "card declined: insufficient funds")
                .with_details(serde_json::json!({ "decline_code": "insufficient_funds", "card": card }))
                .permanent());
        }
        let id = self.ledger.next_id("auth");
        self.ledger.record("payments", format!("authorized {} on {card} as {id}", money(total)));
        Ok(id)
    }

    async fn void(&self, auth: &str) {
        latency(150).await;
        self.ledger.record("payments", format!("voided {auth}"));
    }

    async fn capture(&self, auth: &str) -> Result<String, StepError> {
        latency(300).await;
        let id = self.ledger.next_id("pay");
        self.ledger.record("payments", format!("captured {auth} as {id}"));
        Ok(id)
    }

    async fn refund(&self, payment: &str) {
        latency(260).await;
        self.ledger.record("payments", format!("refunded {payment}"));
    }

    async fn ship(&self, order: &Order, reservation: &str) -> Result<(String, String), StepError> {
        latency(400).await;
        if self.faults.of(&order.id).carrier_down {
            return Err(StepError::new("carrier_unavailable", "the carrier's API answered 503")
                .with_details(serde_json::json!({ "status": 503 }))
                .permanent());
        }
        let id = self.ledger.next_id("shp");
        let tracking = format!("1Z{}", 999_000 + order.total);
        self.ledger.record("shipping", format!("booked {id} for {} from {reservation}, tracking {tracking}", order.id));
        Ok((id, tracking))
    }

    async fn cancel_shipment(&self, shipment: &str) {
        latency(180).await;
        self.ledger.record("shipping", format!("cancelled {shipment}"));
    }

    async fn mail(&self, to: &str, what: &str) {
        latency(160).await;
        self.ledger.record("mailer", format!("sent `{what}` to {to}"));
    }

    async fn sms(&self, order: &str, phone: &str, text: &str) -> Result<(), StepError> {
        latency(140).await;
        if self.faults.of(order).sms_down {
            return Err(StepError::new("sms_rejected", format!("the SMS provider rejected {phone}")).permanent());
        }
        self.ledger.record("sms", format!("sent \"{text}\" to {phone}"));
        Ok(())
    }

    async fn track(&self, event: &str, order: &str) {
        latency(60).await;
        self.ledger.record("analytics", format!("{event} {order}"));
    }

    async fn mark(&self, order: &str, status: &str) {
        latency(50).await;
        self.ledger.record("orders", format!("marked {order} {status}"));
    }
}

fn money(cents: u64) -> String {
    format!("{}.{:02} EUR", cents / 100, cents % 100)
}

/// The workflow, bound to its shop.
#[derive(Debug)]
pub(crate) struct OrderProcessing {
    /// The services the steps call.
    pub(crate) shop: Arc<Shop>,
}

#[workflow(name = "order_processing", timeout = "30m", on_failure = handle_order_failure, dead_letter)]
impl OrderProcessing {
    // Step 1: validate the order.
    #[step]
    async fn validate_order(&self, ctx: &Context) -> StepResult {
        let order = self.shop.get_order(&ctx.get::<String>("order_id")?).await?;
        Shop::validate(&order)?;
        Ok(json!({
            "customer_id": order.customer_id,
            "items": order.items,
            "total": order.total,
            "order": order,
        })
        .into())
    }

    // Step 2: check for fraud; a review waits for the fraud team (up to a day).
    #[step(after = validate_order, timeout = "10s")]
    async fn check_fraud(&self, ctx: &Context) -> StepResult {
        let order: String = ctx.get("order_id")?;
        match self.shop.fraud_check(&order, &ctx.get::<String>("customer_id")?, ctx.get("total")?).await {
            Verdict::Clear => Ok(json!({ "fraud_check": "passed" }).into()),
            Verdict::Review => Ok(Outcome::await_with(AwaitRequest::timeout("24h").notify("fraud_team"))),
            Verdict::Reject => {
                Err(StepError::new("fraud_detected", "the fraud service rejected the order").permanent())
            }
        }
    }

    // Step 3: reserve the stock (in parallel with the card authorization).
    #[step(after = check_fraud, group = pre_fulfillment, rollback = release_inventory)]
    async fn reserve_inventory(&self, ctx: &Context) -> StepResult {
        let items: Vec<Item> = ctx.get("items")?;
        let reservation = self.shop.reserve(&ctx.get::<String>("order_id")?, &items).await?;
        Ok(json!({ "reservation_id": reservation }).into())
    }

    // Step 4: authorize the card (in parallel with the reservation).
    #[step(after = check_fraud, group = pre_fulfillment, rollback = void_authorization)]
    async fn authorize_payment(&self, ctx: &Context) -> StepResult {
        let order: Order = ctx.get("order")?;
        let auth = self.shop.authorize(&order.id, &order.payment_method, ctx.get("total")?).await?;
        Ok(json!({ "payment_auth_id": auth }).into())
    }

    // Step 5: capture the payment once both succeeded.
    #[step(after_group = pre_fulfillment, rollback = refund_payment)]
    async fn capture_payment(&self, ctx: &Context) -> StepResult {
        let payment = self.shop.capture(&ctx.get::<String>("payment_auth_id")?).await?;
        Ok(json!({ "payment_id": payment }).into())
    }

    // Step 6: book the shipment.
    #[step(after = capture_payment, rollback = cancel_shipment)]
    async fn create_shipment(&self, ctx: &Context) -> StepResult {
        let order: Order = ctx.get("order")?;
        let (shipment, tracking) = self.shop.ship(&order, &ctx.get::<String>("reservation_id")?).await?;
        Ok(json!({ "shipment_id": shipment, "tracking_number": tracking }).into())
    }

    // Step 7: notify, in parallel; a failure here does not fail the order.
    #[step(after = create_shipment, group = notifications, on_error = continue)]
    async fn send_confirmation_email(&self, ctx: &Context) -> StepResult {
        let order: Order = ctx.get("order")?;
        let tracking: String = ctx.get("tracking_number")?;
        self.shop.mail(&order.customer_email, &format!("order {} shipped, tracking {tracking}", order.id)).await;
        Ok(Outcome::Done)
    }

    #[step(after = create_shipment, group = notifications, on_error = continue)]
    async fn send_sms_notification(&self, ctx: &Context) -> StepResult {
        let order: Order = ctx.get("order")?;
        self.shop.sms(&order.id, &order.customer_phone, &format!("Order {} shipped!", order.id)).await?;
        Ok(Outcome::Done)
    }

    #[step(after = create_shipment, group = notifications, on_error = continue)]
    async fn update_analytics(&self, ctx: &Context) -> StepResult {
        self.shop.track("order_fulfilled", &ctx.get::<String>("order_id")?).await;
        Ok(Outcome::Done)
    }

    // Step 8: complete the order.
    #[step(after_group = notifications)]
    async fn complete_order(&self, ctx: &Context) -> StepResult {
        self.shop.mark(&ctx.get::<String>("order_id")?, "fulfilled").await;
        Ok(json!({ "status": "fulfilled" }).into())
    }

    // Rollbacks.
    async fn release_inventory(&self, ctx: &Context) -> StepResult {
        self.shop.release(&ctx.get::<String>("reservation_id")?).await;
        Ok(Outcome::Done)
    }

    async fn void_authorization(&self, ctx: &Context) -> StepResult {
        self.shop.void(&ctx.get::<String>("payment_auth_id")?).await;
        Ok(Outcome::Done)
    }

    async fn refund_payment(&self, ctx: &Context) -> StepResult {
        self.shop.refund(&ctx.get::<String>("payment_id")?).await;
        Ok(Outcome::Done)
    }

    async fn cancel_shipment(&self, ctx: &Context) -> StepResult {
        self.shop.cancel_shipment(&ctx.get::<String>("shipment_id")?).await;
        Ok(Outcome::Done)
    }

    // Error handler: runs after the rollbacks.
    async fn handle_order_failure(&self, ctx: &Context) -> StepResult {
        let order_id: String = ctx.get("order_id")?;
        let error: StepError = ctx.get("__error__")?;
        self.shop.mark(&order_id, &format!("failed ({})", error.kind())).await;
        if let Some(order) = ctx.get_opt::<Order>("order")? {
            self.shop.mail(&order.customer_email, &format!("order {order_id} could not be completed")).await;
        }
        Ok(Outcome::Done)
    }
}
