//! SPEC's Quick Start, Parallel Groups, Conditional Execution and Diamond examples,
//! each written twice (with the macros, and with the builder). Both versions run
//! through the engine under the same assertions, and their definitions are equal.

use std::sync::Arc;

use sagaflow::prelude::*;
use sagaflow::{ExecutionState, StepStatus, WorkflowDef};

use crate::common::Recorder;

async fn run(def: WorkflowDef, input: serde_json::Value) -> ExecutionState {
    let name = def.name().to_owned();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let id = engine.start(&name, input).await.unwrap();
    engine.wait(id).await.unwrap()
}

// ----- Quick Start -----

pub struct UserOnboarding {
    pub rec: Arc<Recorder>,
}

#[workflow(name = "quick_start_onboarding")]
impl UserOnboarding {
    #[step]
    async fn create_account(&self, ctx: &Context) -> StepResult {
        let _email: String = ctx.get("email")?;
        self.rec.track("create_account", 10).await;
        Ok(json!({ "user_id": 123 }).into())
    }

    #[step(after = create_account)]
    async fn setup_profile(&self, ctx: &Context) -> StepResult {
        let _user_id: u64 = ctx.get("user_id")?;
        self.rec.track("setup_profile", 20).await;
        Ok(json!({ "profile_id": 456 }).into())
    }

    #[step(after = setup_profile)]
    async fn send_welcome_email(&self, ctx: &Context) -> StepResult {
        let _user_id: u64 = ctx.get("user_id")?;
        self.rec.track("send_welcome_email", 5).await;
        Ok(Outcome::Done)
    }
}

fn user_onboarding_builder(rec: &Arc<Recorder>) -> WorkflowDef {
    Workflow::new("quick_start_onboarding")
        .step("create_account", rec.emitter("create_account", 10, json!({ "user_id": 123 })))
        .step_with(
            "setup_profile",
            rec.emitter("setup_profile", 20, json!({ "profile_id": 456 })),
            Step::opts().after("create_account"),
        )
        .step_with(
            "send_welcome_email",
            rec.emitter("send_welcome_email", 5, json!(null)),
            Step::opts().after("setup_profile"),
        )
        .build()
        .unwrap()
}

async fn check_user_onboarding(def: WorkflowDef, rec: &Recorder) {
    let state = run(def, json!({ "email": "alice@example.com", "name": "Alice" })).await;
    assert_eq!(state.status, Status::Completed);
    assert_eq!(rec.names(), ["create_account", "setup_profile", "send_welcome_email"]);
    assert!(rec.before("create_account", "setup_profile") && rec.before("setup_profile", "send_welcome_email"));
    assert_eq!(state.get::<u64>("user_id"), Some(123));
    assert_eq!(state.get::<u64>("profile_id"), Some(456));
    assert_eq!(state.get::<String>("email").as_deref(), Some("alice@example.com"));
    assert_eq!(state.duration.as_millis(), 35);
}

#[tokio::test(start_paused = true)]
async fn quick_start_with_the_builder() {
    let rec = Recorder::new();
    check_user_onboarding(user_onboarding_builder(&rec), &rec).await;
}

#[tokio::test(start_paused = true)]
async fn quick_start_with_the_macros() {
    let rec = Recorder::new();
    let def = UserOnboarding { rec: rec.clone() }.into_definition().unwrap();
    check_user_onboarding(def, &rec).await;
}

#[test]
fn quick_start_definitions_are_equal() {
    let rec = Recorder::new();
    let with_macros = UserOnboarding { rec: rec.clone() }.into_definition().unwrap();
    assert_eq!(with_macros, user_onboarding_builder(&rec));
    assert_eq!(with_macros.version(), user_onboarding_builder(&rec).version());
}

// ----- Parallel Groups -----

pub struct MultiUpload {
    pub rec: Arc<Recorder>,
}

#[workflow(name = "multi_upload")]
impl MultiUpload {
    #[step]
    async fn prepare(&self, ctx: &Context) -> StepResult {
        let input: String = ctx.get("input")?;
        self.rec.track("prepare", 5).await;
        Ok(json!({ "data": input.to_uppercase() }).into())
    }

    // Fan-out: all steps in the same group run in parallel.
    #[step(after = prepare, group = uploads)]
    async fn upload_s3(&self, ctx: &Context) -> StepResult {
        let data: String = ctx.get("data")?;
        self.rec.track("upload_s3", 40).await;
        Ok(json!({ "s3_url": format!("s3://bucket/{data}") }).into())
    }

    #[step(after = prepare, group = uploads)]
    async fn upload_gcs(&self, ctx: &Context) -> StepResult {
        let data: String = ctx.get("data")?;
        self.rec.track("upload_gcs", 20).await;
        Ok(json!({ "gcs_url": format!("gs://bucket/{data}") }).into())
    }

    #[step(after = prepare, group = uploads)]
    async fn upload_azure(&self, ctx: &Context) -> StepResult {
        let data: String = ctx.get("data")?;
        self.rec.track("upload_azure", 30).await;
        Ok(json!({ "azure_url": format!("az://bucket/{data}") }).into())
    }

    // Fan-in: waits for the entire group.
    #[step(after_group = uploads)]
    async fn notify_complete(&self, ctx: &Context) -> StepResult {
        let urls: Vec<String> =
            ["s3_url", "gcs_url", "azure_url"].iter().map(|k| ctx.get(k)).collect::<Result<_, _>>()?;
        self.rec.track("notify_complete", 5).await;
        Ok(json!({ "notified": format!("Uploaded to: {}", urls.join(", ")) }).into())
    }
}

fn multi_upload_builder(rec: &Arc<Recorder>) -> WorkflowDef {
    let upload = |name: &'static str, ms: u64, key: &'static str, scheme: &'static str| {
        let rec = rec.clone();
        move |ctx: Context| {
            let rec = rec.clone();
            async move {
                let data: String = ctx.get("data")?;
                rec.track(name, ms).await;
                Ok::<_, StepError>(json!({ key: format!("{scheme}://bucket/{data}") }))
            }
        }
    };
    let prepare = {
        let rec = rec.clone();
        move |ctx: Context| {
            let rec = rec.clone();
            async move {
                let input: String = ctx.get("input")?;
                rec.track("prepare", 5).await;
                Ok::<_, StepError>(json!({ "data": input.to_uppercase() }))
            }
        }
    };
    let notify = {
        let rec = rec.clone();
        move |ctx: Context| {
            let rec = rec.clone();
            async move {
                let urls: Vec<String> =
                    ["s3_url", "gcs_url", "azure_url"].iter().map(|k| ctx.get(k)).collect::<Result<_, _>>()?;
                rec.track("notify_complete", 5).await;
                Ok::<_, StepError>(json!({ "notified": format!("Uploaded to: {}", urls.join(", ")) }))
            }
        }
    };
    Workflow::new("multi_upload")
        .step("prepare", prepare)
        .step_with("upload_s3", upload("upload_s3", 40, "s3_url", "s3"), Step::opts().after("prepare").group("uploads"))
        .step_with(
            "upload_gcs",
            upload("upload_gcs", 20, "gcs_url", "gs"),
            Step::opts().after("prepare").group("uploads"),
        )
        .step_with(
            "upload_azure",
            upload("upload_azure", 30, "azure_url", "az"),
            Step::opts().after("prepare").group("uploads"),
        )
        .step_with("notify_complete", notify, Step::opts().after_group("uploads"))
        .build()
        .unwrap()
}

async fn check_multi_upload(def: WorkflowDef, rec: &Recorder) {
    let state = run(def, json!({ "input": "report" })).await;
    assert_eq!(state.status, Status::Completed);
    for upload in ["upload_s3", "upload_gcs", "upload_azure"] {
        assert!(rec.before("prepare", upload), "{upload} waits for prepare");
        assert!(rec.before(upload, "notify_complete"), "notify_complete waits for {upload}");
    }
    assert!(rec.overlapped("upload_s3", "upload_gcs") && rec.overlapped("upload_s3", "upload_azure"));
    assert_eq!(
        state.get::<String>("notified").as_deref(),
        Some("Uploaded to: s3://bucket/REPORT, gs://bucket/REPORT, az://bucket/REPORT")
    );
    assert_eq!(state.duration.as_millis(), 50, "prepare 5 + slowest upload 40 + notify 5");
}

#[tokio::test(start_paused = true)]
async fn parallel_groups_with_the_builder() {
    let rec = Recorder::new();
    check_multi_upload(multi_upload_builder(&rec), &rec).await;
}

#[tokio::test(start_paused = true)]
async fn parallel_groups_with_the_macros() {
    let rec = Recorder::new();
    check_multi_upload(MultiUpload { rec: rec.clone() }.into_definition().unwrap(), &rec).await;
}

#[test]
fn parallel_groups_definitions_are_equal() {
    let rec = Recorder::new();
    let def = MultiUpload { rec: rec.clone() }.into_definition().unwrap();
    assert_eq!(def, multi_upload_builder(&rec));
    assert_eq!(def.groups().collect::<Vec<_>>(), [("uploads", vec!["upload_s3", "upload_gcs", "upload_azure"])]);
}

// ----- Conditional Execution -----

pub struct OrderFulfillment {
    pub rec: Arc<Recorder>,
}

#[workflow(name = "order_fulfillment")]
impl OrderFulfillment {
    #[step]
    async fn validate_order(&self, ctx: &Context) -> StepResult {
        let order_id: u64 = ctx.get("order_id")?;
        self.rec.track("validate_order", 5).await;
        Ok(json!({ "order": { "id": order_id, "items": ["book"] }, "amount": 42 }).into())
    }

    #[step(after = validate_order)]
    async fn check_inventory(&self, ctx: &Context) -> StepResult {
        let available: bool = ctx.get("available")?;
        self.rec.track("check_inventory", 5).await;
        Ok(json!({ "in_stock": available }).into())
    }

    // Only runs if in_stock is true.
    #[step(after = check_inventory, when = in_stock)]
    async fn reserve_inventory(&self, _ctx: &Context) -> StepResult {
        self.rec.track("reserve_inventory", 10).await;
        Ok(json!({ "reservation_id": 7 }).into())
    }

    // Only runs if in_stock is false.
    #[step(after = check_inventory, when = out_of_stock)]
    async fn create_backorder(&self, _ctx: &Context) -> StepResult {
        self.rec.track("create_backorder", 30).await;
        Ok(json!({ "backorder_id": 9 }).into())
    }

    // Runs after either branch completes.
    #[step(after_any = [reserve_inventory, create_backorder])]
    async fn send_confirmation(&self, _ctx: &Context) -> StepResult {
        self.rec.track("send_confirmation", 5).await;
        Ok(json!({ "confirmed": true }).into())
    }

    fn in_stock(ctx: &Context) -> bool {
        ctx.get_or("in_stock", false)
    }

    fn out_of_stock(ctx: &Context) -> bool {
        !ctx.get_or("in_stock", false)
    }
}

fn in_stock(ctx: &Context) -> bool {
    ctx.get_or("in_stock", false)
}

fn out_of_stock(ctx: &Context) -> bool {
    !ctx.get_or("in_stock", false)
}

fn order_fulfillment_builder(rec: &Arc<Recorder>) -> WorkflowDef {
    let validate = {
        let rec = rec.clone();
        move |ctx: Context| {
            let rec = rec.clone();
            async move {
                let order_id: u64 = ctx.get("order_id")?;
                rec.track("validate_order", 5).await;
                Ok::<_, StepError>(json!({ "order": { "id": order_id, "items": ["book"] }, "amount": 42 }))
            }
        }
    };
    let check = {
        let rec = rec.clone();
        move |ctx: Context| {
            let rec = rec.clone();
            async move {
                let available: bool = ctx.get("available")?;
                rec.track("check_inventory", 5).await;
                Ok::<_, StepError>(json!({ "in_stock": available }))
            }
        }
    };
    Workflow::new("order_fulfillment")
        .step("validate_order", validate)
        .step_with("check_inventory", check, Step::opts().after("validate_order"))
        .step_with(
            "reserve_inventory",
            rec.emitter("reserve_inventory", 10, json!({ "reservation_id": 7 })),
            Step::opts().after("check_inventory").when(in_stock),
        )
        .step_with(
            "create_backorder",
            rec.emitter("create_backorder", 30, json!({ "backorder_id": 9 })),
            Step::opts().after("check_inventory").when(out_of_stock),
        )
        .step_with(
            "send_confirmation",
            rec.emitter("send_confirmation", 5, json!({ "confirmed": true })),
            Step::opts().after_any(["reserve_inventory", "create_backorder"]),
        )
        .build()
        .unwrap()
}

async fn check_order_fulfillment(def: impl Fn(&Arc<Recorder>) -> WorkflowDef) {
    for available in [true, false] {
        let rec = Recorder::new();
        let state = run(def(&rec), json!({ "order_id": 1, "available": available })).await;
        assert_eq!(state.status, Status::Completed);
        let (ran, skipped, reason) = if available {
            ("reserve_inventory", "create_backorder", "condition `out_of_stock` is false")
        } else {
            ("create_backorder", "reserve_inventory", "condition `in_stock` is false")
        };
        assert_eq!(rec.names(), ["validate_order", "check_inventory", ran, "send_confirmation"]);
        assert!(rec.before(ran, "send_confirmation"));
        assert_eq!(rec.count("send_confirmation"), 1);
        let skipped = state.step(skipped).unwrap();
        assert_eq!(skipped.status, StepStatus::Skipped);
        assert_eq!(skipped.skip_reason.as_deref(), Some(reason));
        assert_eq!(state.get::<bool>("confirmed"), Some(true));
        assert_eq!(state.get::<u64>("amount"), Some(42));
        assert_eq!(state.context.contains_key("reservation_id"), available);
        assert_eq!(state.context.contains_key("backorder_id"), !available);
    }
}

#[tokio::test(start_paused = true)]
async fn conditional_execution_with_the_builder() {
    check_order_fulfillment(order_fulfillment_builder).await;
}

#[tokio::test(start_paused = true)]
async fn conditional_execution_with_the_macros() {
    check_order_fulfillment(|rec| OrderFulfillment { rec: rec.clone() }.into_definition().unwrap()).await;
}

#[test]
fn conditional_execution_definitions_are_equal() {
    let rec = Recorder::new();
    let def = OrderFulfillment { rec: rec.clone() }.into_definition().unwrap();
    assert_eq!(def, order_fulfillment_builder(&rec));
    assert_eq!(def.step("reserve_inventory").unwrap().policy().when_name(), Some("in_stock"));
    assert_eq!(def.step("send_confirmation").unwrap().declared().after_any, ["reserve_inventory", "create_backorder"]);
}

// ----- Diamond -----

pub struct Diamond {
    pub rec: Arc<Recorder>,
}

#[workflow(name = "diamond")]
impl Diamond {
    #[step]
    async fn step_a(&self) -> StepResult {
        self.rec.track("step_a", 10).await;
        Ok(json!({ "step_a": true }).into())
    }

    #[step(after = step_a)]
    async fn step_b(&self) -> StepResult {
        self.rec.track("step_b", 50).await;
        Ok(json!({ "step_b": true }).into())
    }

    #[step(after = step_a)]
    async fn step_c(&self) -> StepResult {
        self.rec.track("step_c", 20).await;
        Ok(json!({ "step_c": true }).into())
    }

    #[step(after = [step_b, step_c])]
    async fn step_d(&self) -> StepResult {
        self.rec.track("step_d", 10).await;
        Ok(json!({ "step_d": true }).into())
    }
}

fn diamond_builder(rec: &Arc<Recorder>) -> WorkflowDef {
    Workflow::new("diamond")
        .step("step_a", rec.sleeper("step_a", 10))
        .step_with("step_b", rec.sleeper("step_b", 50), Step::opts().after("step_a"))
        .step_with("step_c", rec.sleeper("step_c", 20), Step::opts().after("step_a"))
        .step_with("step_d", rec.sleeper("step_d", 10), Step::opts().after(["step_b", "step_c"]))
        .build()
        .unwrap()
}

async fn check_diamond(def: WorkflowDef, rec: &Recorder) {
    let state = run(def, json!({})).await;
    assert_eq!(state.status, Status::Completed);
    assert_eq!(rec.names()[0], "step_a");
    assert_eq!(rec.names()[3], "step_d");
    assert!(rec.overlapped("step_b", "step_c"));
    assert!(rec.before("step_b", "step_d") && rec.before("step_c", "step_d"));
    assert_eq!(state.duration.as_millis(), 70, "a(10) + max(b 50, c 20) + d(10)");
    for s in ["step_a", "step_b", "step_c", "step_d"] {
        assert_eq!(state.get::<bool>(s), Some(true));
    }
}

#[tokio::test(start_paused = true)]
async fn diamond_with_the_builder() {
    let rec = Recorder::new();
    check_diamond(diamond_builder(&rec), &rec).await;
}

#[tokio::test(start_paused = true)]
async fn diamond_with_the_macros() {
    let rec = Recorder::new();
    check_diamond(Diamond { rec: rec.clone() }.into_definition().unwrap(), &rec).await;
}

#[test]
fn diamond_definitions_are_equal() {
    let rec = Recorder::new();
    let def = Diamond { rec: rec.clone() }.into_definition().unwrap();
    assert_eq!(def, diamond_builder(&rec));
    assert_eq!(def.dependencies("step_d"), ["step_b", "step_c"]);
}
