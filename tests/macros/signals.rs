//! `#[signal("name")]` parameters and `#[query]` methods: a step receives a signal
//! sent before it starts at once, and parks for one that has not arrived (running
//! again when it does, or timing out into its `on_timeout`); two parameters of one
//! step receive two signals; a payload of the wrong type fails the step naming the
//! signal; queries answer from the execution's state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{EngineError, ExecutionState, StepStatus, kinds};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
}

/// The attempts of `review`, with what they received.
#[derive(Default)]
pub struct Expense {
    reviews: Mutex<Vec<(u32, String)>>,
}

#[workflow(name = "expense")]
impl Expense {
    #[step]
    fn submit(ctx: &Context) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "amount": ctx.get::<u64>("amount")? }))
    }

    #[step(after = submit, await_approval = true, on_timeout = expired)]
    fn review(
        &self,
        ctx: &Context,
        #[signal("decision", timeout = "48h")] decision: &Decision,
        #[signal(note)] note: String,
    ) -> Result<serde_json::Value, StepError> {
        self.reviews.lock().unwrap().push((ctx.attempt(), format!("{} by {}: {note}", decision.approved, decision.by)));
        Ok(json!({ "approved": decision.approved, "reviewer": decision.by }))
    }

    #[step(after = review)]
    fn archive(#[signal("decision")] again: Decision) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "archived_by": again.by }))
    }

    fn expired(ctx: &Context) -> Result<serde_json::Value, StepError> {
        Err(StepError::new("expired", format!("{} waited 48h for a decision", ctx.get::<u64>("amount")?)).permanent())
    }

    #[query]
    fn waiting_for(&self, state: &ExecutionState) -> Vec<String> {
        state.awaiting.iter().filter_map(|a| a.signal.clone()).collect()
    }

    #[query]
    fn reviewer(state: &ExecutionState) -> Option<String> {
        state.get("reviewer")
    }
}

async fn engine() -> (Engine, Arc<Expense>) {
    let expense = Arc::new(Expense::default());
    let engine = Engine::builder().register(Expense::definition(expense.clone()).unwrap()).build().await.unwrap();
    (engine, expense)
}

async fn until_awaiting(engine: &Engine, id: ExecutionId) -> ExecutionState {
    for _ in 0..1000 {
        let state = engine.get_state(id).await.unwrap();
        if state.status == Status::Awaiting {
            return state;
        }
        assert!(!state.status.is_terminal(), "{state:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never awaited");
}

fn decision(by: &str) -> serde_json::Value {
    json!({ "approved": true, "by": by })
}

#[tokio::test(start_paused = true)]
async fn signals_sent_before_the_step_starts_are_received_at_once() {
    let (engine, expense) = engine().await;
    let id = engine.start("expense", json!({ "amount": 120 })).await.unwrap();
    engine.signal(id, "decision", decision("ada")).await.unwrap();
    engine.signal(id, "note", "fine").await.unwrap();
    engine.signal(id, "decision", decision("grace")).await.unwrap();
    let done = engine.wait(id).await.unwrap();
    assert_eq!(done.status, Status::Completed, "{done:?}");
    assert_eq!(*expense.reviews.lock().unwrap(), [(1, "true by ada: fine".to_owned())], "one attempt, no wait");
    assert_eq!(done.context["archived_by"], "grace", "the next step received the next signal of that name");
    assert!(done.signals.is_empty());
    assert_eq!(engine.query_as::<Option<String>>(id, "reviewer").await.unwrap().as_deref(), Some("ada"));
}

#[tokio::test(start_paused = true)]
async fn a_step_parks_for_each_signal_it_has_not_received_and_runs_again() {
    let (engine, expense) = engine().await;
    let id = engine.start("expense", json!({ "amount": 120 })).await.unwrap();
    let state = until_awaiting(&engine, id).await;
    assert_eq!(state.awaiting[0].signal.as_deref(), Some("decision"));
    assert!(state.running.is_empty(), "parked, not running");
    assert_eq!(engine.query(id, "waiting_for").await.unwrap(), json!(["decision"]));

    tokio::time::sleep(Duration::from_secs(3600)).await;
    engine.signal(id, "decision", decision("ada")).await.unwrap();
    // It runs again, holds the decision, and parks for the note.
    let state = until_awaiting(&engine, id).await;
    assert_eq!(state.awaiting[0].signal.as_deref(), Some("note"));
    assert_eq!(state.signals.len(), 1);
    assert_eq!(state.signals[0].step.as_deref(), Some("review"), "the decision stays with the step");
    engine.signal(id, "note", "ok").await.unwrap();
    until_awaiting(&engine, id).await;
    assert_eq!(engine.query(id, "waiting_for").await.unwrap(), json!(["decision"]), "`archive` waits now");
    engine.signal(id, "decision", decision("grace")).await.unwrap();
    let done = engine.wait(id).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(*expense.reviews.lock().unwrap(), [(3, "true by ada: ok".to_owned())], "the method ran once, with both");
    assert_eq!(done.step("review").unwrap().attempts, 3);
    assert_eq!(done.context["archived_by"], "grace");
}

#[tokio::test(start_paused = true)]
async fn a_signal_that_does_not_come_in_time_runs_on_timeout() {
    let (engine, expense) = engine().await;
    let id = engine.start("expense", json!({ "amount": 120 })).await.unwrap();
    let done = engine.wait(id).await.unwrap();
    assert_eq!(done.status, Status::Failed);
    let failure = done.failure.clone().unwrap();
    assert_eq!((failure.step.as_deref(), failure.error.kind()), (Some("review"), "expired"));
    assert!(done.duration >= Duration::from_secs(48 * 3600), "{:?}", done.duration);
    assert!(expense.reviews.lock().unwrap().is_empty());
    assert_eq!(done.step("archive").unwrap().status, StepStatus::Pending, "it never started");
}

#[tokio::test(start_paused = true)]
async fn a_payload_that_is_not_the_parameter_s_type_fails_the_step_naming_the_signal() {
    let (engine, _) = engine().await;
    let id = engine.start("expense", json!({ "amount": 120 })).await.unwrap();
    engine.signal(id, "decision", json!({ "approved": "yes" })).await.unwrap();
    let done = engine.wait(id).await.unwrap();
    let error = done.failure.unwrap().error;
    assert_eq!(error.kind(), kinds::INVALID_TYPE);
    assert!(error.message().starts_with("the payload of signal `decision` (step `review`) is not a `"), "{error}");
    assert!(!error.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn the_macro_s_queries_are_those_of_its_definition() {
    let (engine, _) = engine().await;
    let def = engine.definition("expense").unwrap();
    assert_eq!(def.queries().collect::<Vec<_>>(), ["reviewer", "waiting_for"]);
    let id = engine.start("expense", json!({ "amount": 1 })).await.unwrap();
    let unknown = engine.query(id, "reviewers").await.unwrap_err();
    assert!(
        matches!(&unknown, EngineError::UnknownQuery { suggestion: Some(s), known, .. } if s == "reviewer" && known.len() == 2),
        "{unknown:?}"
    );
}
