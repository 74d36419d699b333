//! Registration: `#[workflow]` types with `Default` register themselves through
//! inventory and `register_all` runs them; types that hold resources are listed but
//! need their value; `crate = "..."` points generated code at another path.

use sagaflow::prelude::*;
use sagaflow::registrations;

/// A workflow without resources: `Default` makes it register itself.
#[derive(Default)]
pub struct NightlyCleanup;

#[workflow(name = "registered_nightly_cleanup", tags = "maintenance")]
impl NightlyCleanup {
    #[step]
    fn purge(ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "purged": ctx.get_or("older_than_days", 30) }))
    }
}

/// A workflow that needs its value: listed, but `register_all` cannot build it.
pub struct NeedsPool {
    pub pool: Vec<String>,
}

#[workflow(name = "registered_needs_pool")]
impl NeedsPool {
    #[step]
    fn query(&self) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "connections": self.pool.len() }))
    }
}

/// A re-export of the `sagaflow` support module, as a crate that renames or wraps
/// `sagaflow` would have.
pub mod shim {
    pub use sagaflow::__private;
}

#[derive(Default)]
pub struct ThroughShim;

#[workflow(name = "registered_through_shim", crate = "crate::macros::registration::shim")]
impl ThroughShim {
    #[step]
    async fn only(&self) -> StepResult {
        Ok(json!({ "via": "shim" }).into())
    }
}

#[test]
fn every_workflow_type_is_listed_with_its_module() {
    let regs = registrations();
    let ours: Vec<(&str, &str, bool)> = regs
        .iter()
        .filter(|r| r.name.starts_with("registered_"))
        .map(|r| (r.name, r.module, (r.build)().is_some()))
        .collect();
    assert_eq!(
        ours,
        [
            ("registered_needs_pool", "integration::macros::registration", false),
            ("registered_nightly_cleanup", "integration::macros::registration", true),
            ("registered_through_shim", "integration::macros::registration", true),
        ]
    );
    let mut names: Vec<&str> = regs.iter().map(|r| r.name).collect();
    names.dedup();
    assert_eq!(names.len(), regs.len(), "names are sorted and unique");
}

#[tokio::test(start_paused = true)]
async fn register_all_runs_the_default_workflows() {
    let engine = Engine::builder().register_all().build().await.unwrap();
    assert!(engine.definition("registered_needs_pool").is_none(), "it needs its value");
    let id = engine.start("registered_nightly_cleanup", json!({ "older_than_days": 7 })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.get::<u64>("purged"), Some(7));
    let id = engine.start("registered_through_shim", json!({})).await.unwrap();
    assert_eq!(engine.wait(id).await.unwrap().get::<String>("via").as_deref(), Some("shim"));

    let err = engine.start("registered_nightly_clean", json!({})).await.unwrap_err();
    assert!(err.to_string().starts_with(
        "unknown workflow `registered_nightly_clean` (did you mean `registered_nightly_cleanup`?); registered workflows: "
    ));
}

#[tokio::test(start_paused = true)]
async fn explicit_values_take_precedence_over_inventory() {
    let engine = Engine::builder()
        .workflow(NeedsPool { pool: vec!["a".into(), "b".into()] })
        .register(
            Workflow::new("registered_nightly_cleanup")
                .step("replacement", |_ctx: Context| async { Ok::<_, StepError>(json!({ "replaced": true })) })
                .build()
                .unwrap(),
        )
        .register_all()
        .build()
        .await
        .unwrap();
    let state = engine.wait(engine.start("registered_needs_pool", json!({})).await.unwrap()).await.unwrap();
    assert_eq!(state.get::<u64>("connections"), Some(2));
    let state = engine.wait(engine.start("registered_nightly_cleanup", json!({})).await.unwrap()).await.unwrap();
    assert_eq!(state.get::<bool>("replaced"), Some(true));
}

#[test]
fn the_name_constant_matches_the_definition() {
    assert_eq!(NightlyCleanup::NAME, "registered_nightly_cleanup");
    let def = NightlyCleanup.into_definition().unwrap();
    assert_eq!(def.name(), NightlyCleanup::NAME);
    assert_eq!(def.policy().tags(), ["maintenance"]);
}
