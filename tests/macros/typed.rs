//! Typed inputs: steps that take the output of an earlier step (`#[from(step)]`) and
//! the workflow's input (`#[input]`) as parameters of their own types. Values arrive
//! along a chain, from a fan-in of several steps, from a graft's added steps (as a
//! `Vec`), as `Option`s from steps that may be skipped, under `context_key`, in
//! rollbacks and handlers, and after a restart on SQLite; a value that no longer reads
//! as the parameter's type fails the step with an error naming it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{ExecutionState, StepStatus};
use serde::{Deserialize, Serialize};

async fn run(engine: &Engine, name: &str, input: serde_json::Value) -> ExecutionState {
    let id = engine.start(name, input).await.unwrap();
    engine.wait(id).await.unwrap()
}

/// What the steps saw, in order.
#[derive(Default)]
pub struct Seen(Mutex<Vec<String>>);

impl Seen {
    fn push(&self, line: impl Into<String>) {
        self.0.lock().unwrap().push(line.into());
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

// ----- a chain -----

#[derive(Debug, Deserialize)]
pub struct Signup {
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub referrer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: u64,
    pub login: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Profile {
    pub account_id: u64,
    pub display_name: String,
}

#[derive(Default)]
pub struct Chain {
    seen: Seen,
}

#[workflow(name = "typed_chain", input = Signup)]
impl Chain {
    #[step]
    async fn create_account(
        &self,
        #[input] email: &str,
        #[input] referrer: Option<&str>,
    ) -> Result<Account, StepError> {
        self.seen.push(format!("create_account: {email} via {}", referrer.unwrap_or("nobody")));
        Ok(Account { id: 7, login: email.split('@').next().unwrap_or_default().to_owned() })
    }

    // The output is also stored under a context key: the typed input still reads it.
    #[step(after = create_account, context_key = profile)]
    fn setup_profile(#[from(create_account)] account: &Account, #[input] name: String) -> Result<Profile, StepError> {
        Ok(Profile { account_id: account.id, display_name: format!("{name} ({})", account.login) })
    }

    #[step(after = setup_profile)]
    async fn send_welcome(
        &self,
        ctx: &Context,
        #[from(create_account)] account: Account,
        #[from(setup_profile)] profile: &Profile,
        #[input] signup: &Signup,
    ) -> Result<serde_json::Value, StepError> {
        self.seen.push(format!("send_welcome: {} to {} at step {:?}", profile.display_name, signup.email, ctx.step()));
        Ok(json!({ "welcomed": account.id, "profile_key": ctx.get::<Profile>("profile")?.account_id }))
    }
}

#[tokio::test(start_paused = true)]
async fn typed_inputs_arrive_along_a_chain() {
    let chain = Arc::new(Chain::default());
    let engine = Engine::builder().register(Chain::definition(chain.clone()).unwrap()).build().await.unwrap();
    let state =
        run(&engine, "typed_chain", json!({ "email": "ada@example.com", "name": "Ada", "referrer": "bob" })).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    assert_eq!(
        chain.seen.lines(),
        [
            "create_account: ada@example.com via bob",
            "send_welcome: Ada (ada) to ada@example.com at step Some(\"send_welcome\")",
        ]
    );
    assert_eq!(state.get::<u64>("welcomed"), Some(7));
    assert_eq!(state.get::<u64>("profile_key"), Some(7));
    // The account's fields were merged at the top level; the profile went under its key.
    assert_eq!(state.get::<String>("login").as_deref(), Some("ada"));
    assert!(state.get::<String>("display_name").is_none());
}

#[tokio::test(start_paused = true)]
async fn an_input_that_does_not_read_as_the_input_type_fails_the_step_that_reads_it() {
    let engine = Engine::builder().workflow(Chain::default()).build().await.unwrap();
    let state = run(&engine, "typed_chain", json!({ "email": "ada@example.com" })).await;
    assert_eq!(state.status, Status::Failed);
    let failure = state.failure.unwrap();
    assert_eq!(failure.step.as_deref(), Some("create_account"));
    assert_eq!(failure.error.kind(), "invalid_type");
    assert!(!failure.error.is_retryable(), "a value that cannot be read is not retried");
    assert_eq!(failure.attempts, 1);
    let message = failure.error.message();
    assert!(
        message.starts_with("step `create_account` cannot read the input of workflow `typed_chain` as `")
            && message.ends_with("Signup`: missing field `name`"),
        "{message}"
    );
    assert_eq!(failure.error.details(), Some(&json!({ "step": "create_account", "input": "typed_chain" })));
}

// ----- a fan-in of several outputs -----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub cents: u64,
    pub currency: String,
}

#[derive(Default)]
pub struct Quote;

#[workflow(name = "typed_fan_in")]
impl Quote {
    #[step]
    fn start() -> Result<u32, StepError> {
        Ok(3)
    }

    #[step(after = start, group = fetch)]
    async fn fetch_stock(#[from(start)] quantity: u32) -> Result<u64, StepError> {
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok(u64::from(quantity) * 10)
    }

    #[step(after = start, group = fetch)]
    async fn fetch_tags() -> Result<Vec<String>, StepError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(vec!["red".into(), "sale".into()])
    }

    #[step(after = start, group = fetch)]
    async fn fetch_price() -> Result<Price, StepError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(Price { cents: 1999, currency: "EUR".into() })
    }

    // Skipped unless the input asks for it: read as an `Option`.
    #[step(after = start, group = fetch, when = wants_discount)]
    fn fetch_discount() -> Result<u8, StepError> {
        Ok(15)
    }

    #[step(after_group = fetch)]
    fn aggregate(
        #[from(start)] quantity: u32,
        #[from(fetch_stock)] stock: u64,
        #[from(fetch_tags)] tags: &[String],
        #[from(fetch_price)] price: Option<&Price>,
        #[from(fetch_discount)] discount: Option<u8>,
    ) -> Result<serde_json::Value, StepError> {
        Ok(json!({
            "offer": format!(
                "{quantity} of {stock} at {} {} [{}] discount {:?}",
                price.map_or(0, |p| p.cents),
                price.map_or("", |p| &p.currency),
                tags.join(","),
                discount
            )
        }))
    }

    fn wants_discount(ctx: &Context) -> bool {
        ctx.get_or("discount", false)
    }
}

#[tokio::test(start_paused = true)]
async fn typed_inputs_arrive_from_a_fan_in_and_skipped_steps_read_as_none() {
    let engine = Engine::builder().workflow(Quote).build().await.unwrap();
    let state = run(&engine, "typed_fan_in", json!({})).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    assert_eq!(state.step("fetch_discount").unwrap().status, StepStatus::Skipped);
    assert_eq!(state.get::<String>("offer").as_deref(), Some("3 of 30 at 1999 EUR [red,sale] discount None"));

    let state = run(&engine, "typed_fan_in", json!({ "discount": true })).await;
    assert_eq!(state.get::<String>("offer").as_deref(), Some("3 of 30 at 1999 EUR [red,sale] discount Some(15)"));
}

// ----- a graft's outputs -----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thumbnail {
    pub image: u32,
    pub url: String,
}

#[derive(Default)]
pub struct Thumbnails;

#[workflow(name = "typed_graft", input = Batch)]
impl Thumbnails {
    #[step]
    fn list_images(#[input] batch: &Batch) -> Result<Vec<u32>, StepError> {
        Ok((1..=batch.count).rev().collect())
    }

    #[graft(after = list_images)]
    fn resize_all(#[from(list_images)] images: &[u32]) -> StepResult {
        Ok(Outcome::expand(images.iter().map(|&image| {
            Task::new(format!("resize_{image}"), move |_ctx: Context| async move {
                // Later images finish first: the order is still the graft's.
                tokio::time::sleep(Duration::from_millis(u64::from(10 - image))).await;
                Ok::<_, StepError>(Thumbnail { image, url: format!("https://cdn.example.com/{image}.webp") })
            })
        })))
    }

    #[step(after_graft = resize_all)]
    fn publish(
        #[from(resize_all)] thumbnails: Vec<Thumbnail>,
        #[from(list_images)] images: Vec<u32>,
    ) -> Result<serde_json::Value, StepError> {
        let order: Vec<u32> = thumbnails.iter().map(|t| t.image).collect();
        assert_eq!(order, images, "the outputs come in the order the graft added its steps");
        Ok(json!({ "published": thumbnails.into_iter().map(|t| t.url).collect::<Vec<_>>() }))
    }
}

#[derive(Debug, Deserialize)]
pub struct Batch {
    pub count: u32,
}

#[tokio::test(start_paused = true)]
async fn a_graft_s_outputs_arrive_as_a_vec_in_the_order_it_added_its_steps() {
    let engine = Engine::builder().workflow(Thumbnails).build().await.unwrap();
    let state = run(&engine, "typed_graft", json!({ "count": 3 })).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    assert_eq!(
        state.get::<Vec<String>>("published").unwrap(),
        ["https://cdn.example.com/3.webp", "https://cdn.example.com/2.webp", "https://cdn.example.com/1.webp"]
    );
}

// ----- surviving a restart on SQLite -----

#[derive(Debug, Deserialize)]
pub struct OrderInput {
    pub order_id: u64,
    pub customer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub lines: Vec<String>,
    pub total_cents: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reservation {
    pub order: u64,
    pub warehouse: String,
}

/// The order workflow on one engine; `seen` records each step's attempt and the
/// typed values it received.
#[derive(Default)]
pub struct Durable {
    seen: Seen,
}

#[workflow(name = "typed_restart", input = OrderInput)]
impl Durable {
    #[step]
    fn create_order(&self, #[input] order_id: u64) -> Result<Order, StepError> {
        self.seen.push("create_order");
        Ok(Order { id: order_id, lines: vec!["book".into(), "pen".into()], total_cents: 2_450 })
    }

    // The first attempt never ends: the engine stops while it runs.
    #[step(after = create_order, timeout = infinity)]
    async fn reserve(&self, ctx: &Context, #[from(create_order)] order: &Order) -> Result<Reservation, StepError> {
        self.seen.push(format!(
            "reserve attempt {}: order {} with {} lines",
            ctx.attempt(),
            order.id,
            order.lines.len()
        ));
        if ctx.attempt() == 1 {
            std::future::pending::<()>().await;
        }
        Ok(Reservation { order: order.id, warehouse: "east".into() })
    }

    #[step(after = reserve)]
    fn confirm(
        &self,
        #[from(create_order)] order: Order,
        #[from(reserve)] reservation: &Reservation,
        #[input] customer: &str,
    ) -> Result<serde_json::Value, StepError> {
        self.seen.push(format!("confirm: {customer} {} from {}", order.total_cents, reservation.warehouse));
        Ok(
            json!({ "confirmed": format!("order {} for {customer}: {} cents from {}", order.id, order.total_cents, reservation.warehouse) }),
        )
    }
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("typed.db").display())
}

/// Polls until `pred` holds for the execution (real time, at most 10 s).
async fn eventually(engine: &Engine, id: ExecutionId, what: &str, pred: impl Fn(&ExecutionState) -> bool) {
    for _ in 0..1000 {
        if pred(&engine.get_state(id).await.unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: still {:?}", engine.get_state(id).await.map(|s| s.status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_inputs_survive_a_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(Durable::default());
    let engine1 = Engine::builder()
        .store_url(sqlite_url(&dir))
        .register(Durable::definition(first.clone()).unwrap())
        .build()
        .await
        .unwrap();
    let id = engine1.start("typed_restart", json!({ "order_id": 42, "customer": "Grace" })).await.unwrap();
    eventually(&engine1, id, "`reserve` running", |s| s.running.iter().any(|r| r == "reserve")).await;
    engine1.shutdown().await;
    drop(engine1);

    let second = Arc::new(Durable::default());
    let engine2 = Engine::builder()
        .store_url(sqlite_url(&dir))
        .register(Durable::definition(second.clone()).unwrap())
        .build()
        .await
        .unwrap();
    let state = engine2.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    assert_eq!(first.seen.lines(), ["create_order", "reserve attempt 1: order 42 with 2 lines"]);
    assert_eq!(
        second.seen.lines(),
        ["reserve attempt 2: order 42 with 2 lines", "confirm: Grace 2450 from east"],
        "the output of `create_order` and the input came back from the file; `create_order` did not run again"
    );
    assert_eq!(state.get::<String>("confirmed").as_deref(), Some("order 42 for Grace: 2450 cents from east"));
    engine2.shutdown().await;
}

/// The same workflow as it was before `Order::id` became a number: written with the
/// builder, it stored `{"id": "A-42", ..}` as the output of `create_order`.
fn typed_restart_before_the_change() -> sagaflow::WorkflowDef {
    Workflow::new("typed_restart")
        .step("create_order", |_ctx: Context| async {
            Ok::<_, StepError>(json!({ "id": "A-42", "lines": ["book"], "total_cents": 900 }))
        })
        .step_with(
            "reserve",
            |_ctx: Context| std::future::pending::<StepResult>(),
            Step::opts().after("create_order").timeout("infinity"),
        )
        .step_with("confirm", |_ctx: Context| async { Ok::<_, StepError>(()) }, Step::opts().after("reserve"))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_stored_before_its_type_changed_fails_the_step_that_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine1 = Engine::builder()
        .store_url(sqlite_url(&dir))
        .register(typed_restart_before_the_change())
        .build()
        .await
        .unwrap();
    let id = engine1.start("typed_restart", json!({ "order_id": 42, "customer": "Grace" })).await.unwrap();
    eventually(&engine1, id, "`reserve` running", |s| s.running.iter().any(|r| r == "reserve")).await;
    engine1.shutdown().await;
    drop(engine1);

    let now = Arc::new(Durable::default());
    let engine2 = Engine::builder()
        .store_url(sqlite_url(&dir))
        .register(Durable::definition(now.clone()).unwrap())
        .build()
        .await
        .unwrap();
    let state = engine2.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Failed);
    assert!(now.seen.lines().is_empty(), "no step ran with a value it could not read: {:?}", now.seen.lines());
    let failure = state.failure.unwrap();
    assert_eq!(failure.step.as_deref(), Some("reserve"));
    assert_eq!(failure.error.kind(), "invalid_type");
    assert!(!failure.error.is_retryable());
    let message = failure.error.message();
    assert!(
        message.starts_with(
            "step `reserve` cannot read its parameter `order` from the output of step `create_order` as `"
        ) && message.contains("Order`: invalid type: string \"A-42\", expected u64"),
        "{message}"
    );
    assert_eq!(
        failure.error.details(),
        Some(&json!({ "step": "reserve", "parameter": "order", "from": "create_order" }))
    );
    engine2.shutdown().await;
}

// ----- rollbacks and handlers -----

#[derive(Debug, Deserialize)]
pub struct Trip {
    pub destination: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Flight {
    pub code: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Hotel {
    pub name: String,
}

#[derive(Default)]
pub struct Booking {
    seen: Seen,
}

#[workflow(name = "typed_saga", input = Trip, on_failure = report)]
impl Booking {
    #[step(rollback = cancel_flight)]
    fn book_flight(#[input] destination: &str) -> Result<Flight, StepError> {
        Ok(Flight { code: format!("LH-{destination}") })
    }

    #[step(after = book_flight, max_retries = 0)]
    fn book_hotel(#[from(book_flight)] flight: &Flight) -> Result<Hotel, StepError> {
        Err(StepError::new("sold_out", format!("no room near {}", flight.code)))
    }

    // A rollback reads the output of the step it undoes.
    async fn cancel_flight(&self, #[from(book_flight)] flight: Flight) -> Result<(), StepError> {
        self.seen.push(format!("cancelled {}", flight.code));
        Ok(())
    }

    // `on_failure` runs whichever steps did not complete: it reads `Option`s.
    fn report(
        &self,
        #[from(book_flight)] flight: Option<Flight>,
        #[from(book_hotel)] hotel: Option<&Hotel>,
        #[input] trip: &Trip,
    ) -> Result<(), StepError> {
        self.seen.push(format!(
            "failed trip to {}: flight {:?}, hotel {:?}",
            trip.destination,
            flight.map(|f| f.code),
            hotel.map(|h| &h.name)
        ));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn rollbacks_and_handlers_read_typed_inputs() {
    let booking = Arc::new(Booking::default());
    let engine = Engine::builder().register(Booking::definition(booking.clone()).unwrap()).build().await.unwrap();
    let state = run(&engine, "typed_saga", json!({ "destination": "Lisbon" })).await;
    assert_eq!(state.status, Status::RolledBack, "{:?}", state.failure);
    assert_eq!(
        booking.seen.lines(),
        ["cancelled LH-Lisbon", "failed trip to Lisbon: flight Some(\"LH-Lisbon\"), hotel None"]
    );
}

// ----- nested workflows -----

#[derive(Default)]
pub struct Notify;

#[workflow(name = "typed_notify")]
impl Notify {
    #[step]
    fn format_message(ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "message": format!("your order {} shipped", ctx.get::<u64>("order")?) }))
    }
}

/// What the nested workflow's step outputs: the child's final context.
#[derive(Debug, Deserialize)]
pub struct Notified {
    pub message: String,
    pub order: u64,
}

#[derive(Default)]
pub struct Shop;

#[workflow(name = "typed_shop")]
impl Shop {
    #[step]
    fn create_order() -> Result<Order, StepError> {
        Ok(Order { id: 5, lines: vec!["lamp".into()], total_cents: 3_000 })
    }

    // The child's input is built from typed inputs too.
    #[subworkflow(typed_notify, after = create_order)]
    fn notify(#[from(create_order)] order: &Order) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "order": order.id }))
    }

    #[step(after = notify)]
    fn complete(
        #[from(notify)] notified: Notified,
        #[from(create_order)] order: &Order,
    ) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "completed": format!("{} ({} cents)", notified.message, order.total_cents), "for": notified.order }))
    }
}

#[tokio::test(start_paused = true)]
async fn a_nested_workflow_s_output_is_the_child_s_context() {
    let engine = Engine::builder().workflow(Notify).workflow(Shop).build().await.unwrap();
    let state = run(&engine, "typed_shop", json!({})).await;
    assert_eq!(state.status, Status::Completed, "{:?}", state.failure);
    assert_eq!(state.get::<String>("completed").as_deref(), Some("your order 5 shipped (3000 cents)"));
    assert_eq!(state.get::<u64>("for"), Some(5));
}
