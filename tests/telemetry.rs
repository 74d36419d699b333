//! Telemetry: the events of SPEC's table with their measurements and metadata,
//! delivered to subscribers in order; subscribers that fall behind or go away
//! never hold the engine up; `tracing` spans per execution and per step attempt.
//! Under tokio's paused clock every duration is exact.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{Event, ExecutionState, Subscription, WorkflowDef};
use serde_json::Value;

use crate::common::StepFuture;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A step that sleeps, then fails with `kind` on the attempts listed in `fail_on`
/// and outputs `{name: true}` on the others.
fn sleeper(
    name: &'static str,
    sleep: u64,
    fail_on: &'static [u32],
    kind: &'static str,
) -> impl Fn(Context) -> StepFuture {
    move |ctx: Context| {
        Box::pin(async move {
            tokio::time::sleep(ms(sleep)).await;
            if fail_on.contains(&ctx.attempt()) {
                let err = StepError::new(kind, format!("{name} attempt {} failed", ctx.attempt()));
                return Err(if kind == "validation_error" { err.permanent() } else { err });
            }
            Ok(json!({ name: true }).into())
        })
    }
}

fn compensation(ms_: u64) -> impl Fn(Context) -> StepFuture {
    move |_ctx| {
        Box::pin(async move {
            tokio::time::sleep(ms(ms_)).await;
            Ok(Outcome::Done)
        })
    }
}

/// `reserve` → `charge` (fails once, retried after 1s) → `gift_wrap` (its
/// condition is false: skipped) → `ship` (fails for good) → rollback of `charge`,
/// then `reserve`.
fn checkout() -> WorkflowDef {
    Workflow::new("checkout")
        .step_with("reserve", sleeper("reserve", 10, &[], ""), Step::opts().rollback_named("release", compensation(3)))
        .step_with(
            "charge",
            sleeper("charge", 5, &[1], "connection_error"),
            Step::opts()
                .after("reserve")
                .max_retries(2)
                .retry_delay("1s")
                .retry_backoff(Backoff::Fixed)
                .retry_jitter(false)
                .rollback_named("refund", compensation(4)),
        )
        .step_with(
            "gift_wrap",
            sleeper("gift_wrap", 1, &[], ""),
            Step::opts().after("charge").when(|ctx: &Context| ctx.get_or("gift", false)),
        )
        .step_with("ship", sleeper("ship", 20, &[1], "validation_error"), Step::opts().after("gift_wrap"))
        .build()
        .unwrap()
}

/// Every event the subscription has received so far.
fn drain(sub: &mut Subscription) -> Vec<Event> {
    std::iter::from_fn(|| sub.try_recv()).collect()
}

/// Events as JSON, with the execution id checked and left out.
fn as_json(events: &[Event], id: ExecutionId) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            assert_eq!(e.execution_id(), id);
            let mut v = serde_json::to_value(e).unwrap();
            let obj = v.as_object_mut().unwrap();
            assert_eq!(obj.remove("execution_id").unwrap(), json!(id));
            v
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_run_with_a_retry_a_skip_and_a_rollback_emits_every_event_in_order() {
    let engine = Engine::builder().register(checkout()).build().await.unwrap();
    let mut sub = engine.subscribe();
    let id = engine.start("checkout", json!({})).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::RolledBack);
    tokio::task::yield_now().await;

    let events = drain(&mut sub);
    let names: Vec<&str> = events.iter().map(Event::name).collect();
    assert_eq!(
        names,
        [
            "start",
            "step.start",
            "step.stop",
            "step.start",
            "step.exception",
            "step.start",
            "step.stop",
            "step.skip",
            "step.start",
            "step.exception",
            "fail",
            "rollback.start",
            "rollback.step.start",
            "rollback.step.stop",
            "rollback.step.start",
            "rollback.step.stop",
            "rollback.stop",
            "stop",
        ]
    );
    let w = "checkout";
    let expected = vec![
        json!({ "event": "workflow_start", "workflow_name": w, "trigger_type": "manual" }),
        json!({ "event": "step_start", "workflow_name": w, "step_name": "reserve", "attempt": 1 }),
        json!({ "event": "step_stop", "workflow_name": w, "step_name": "reserve", "duration": 10, "result": "ok" }),
        json!({ "event": "step_start", "workflow_name": w, "step_name": "charge", "attempt": 1 }),
        json!({
            "event": "step_exception", "workflow_name": w, "step_name": "charge", "duration": 5,
            "kind": "connection_error", "reason": "charge attempt 1 failed"
        }),
        json!({ "event": "step_start", "workflow_name": w, "step_name": "charge", "attempt": 2 }),
        json!({ "event": "step_stop", "workflow_name": w, "step_name": "charge", "duration": 5, "result": "ok" }),
        json!({
            "event": "step_skip", "workflow_name": w, "step_name": "gift_wrap",
            "reason": events_skip_reason(&events)
        }),
        json!({ "event": "step_start", "workflow_name": w, "step_name": "ship", "attempt": 1 }),
        json!({
            "event": "step_exception", "workflow_name": w, "step_name": "ship", "duration": 20,
            "kind": "validation_error", "reason": "ship attempt 1 failed"
        }),
        json!({
            "event": "workflow_fail", "workflow_name": w, "error_step": "ship",
            "error": serde_json::to_value(state.failure.as_ref().unwrap().error.clone()).unwrap()
        }),
        json!({ "event": "rollback_start", "workflow_name": w, "steps": ["charge", "reserve"] }),
        json!({ "event": "rollback_step_start", "workflow_name": w, "step_name": "charge", "attempt": 1 }),
        json!({
            "event": "rollback_step_stop", "workflow_name": w, "step_name": "charge", "attempt": 1, "duration": 4
        }),
        json!({ "event": "rollback_step_start", "workflow_name": w, "step_name": "reserve", "attempt": 1 }),
        json!({
            "event": "rollback_step_stop", "workflow_name": w, "step_name": "reserve", "attempt": 1, "duration": 3
        }),
        json!({
            "event": "rollback_stop", "workflow_name": w, "duration": 7,
            "steps": ["charge", "reserve"], "failed": []
        }),
        json!({ "event": "workflow_stop", "workflow_name": w, "state": "rolled_back", "duration": 1047 }),
    ];
    let actual = as_json(&events, id);
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_eq!(a, e, "event {i}");
    }
    assert_eq!(actual.len(), expected.len());

    // The failure and the timings agree with the final state.
    let failure = state.failure.clone().unwrap();
    assert_eq!((failure.step.as_deref(), failure.error.kind()), (Some("ship"), "validation_error"));
    assert_eq!(failure.error.message(), "ship attempt 1 failed");
    // 10 (reserve) + 5 + 1000 (retry delay) + 5 (charge) + 20 (ship) + 4 + 3 (rollback)
    assert_eq!(state.duration, ms(1047));
    assert_eq!(state.step("gift_wrap").unwrap().status, sagaflow::StepStatus::Skipped);
}

/// The skip reason the engine gave, checked to name the condition.
fn events_skip_reason(events: &[Event]) -> String {
    let reason = events
        .iter()
        .find_map(|e| match e {
            Event::StepSkip { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("a step.skip event");
    assert!(reason.contains("condition"), "the reason says the condition was false: {reason}");
    reason
}

async fn approve(_ctx: Context) -> StepResult {
    Ok(Outcome::await_for("1h"))
}

#[tokio::test(start_paused = true)]
async fn pause_resume_await_and_cancel_emit_their_events() {
    let def = Workflow::new("approval")
        .step("prepare", sleeper("prepare", 100, &[], ""))
        .step_with("approve", approve, Step::opts().after("prepare"))
        .step_with("publish", sleeper("publish", 10, &[], ""), Step::opts().after("approve"))
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let mut sub = engine.subscribe();
    let w = "approval";

    // Paused while `prepare` runs, resumed, then awaiting approval, then resumed
    // with the approval.
    let id = engine.start(w, json!({})).await.unwrap();
    tokio::time::sleep(ms(50)).await;
    engine.pause(id).await.unwrap();
    tokio::time::sleep(ms(100)).await;
    engine.resume(id, json!({})).await.unwrap();
    tokio::time::sleep(ms(10)).await;
    assert_eq!(engine.get_state(id).await.unwrap().status, Status::Awaiting);
    engine.resume(id, json!({ "approved_by": "alice" })).await.unwrap();
    let state = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Completed);
    tokio::task::yield_now().await;
    let actual = as_json(&drain(&mut sub), id);
    let expected = vec![
        json!({ "event": "workflow_start", "workflow_name": w, "trigger_type": "manual" }),
        json!({ "event": "step_start", "workflow_name": w, "step_name": "prepare", "attempt": 1 }),
        json!({ "event": "workflow_pause", "workflow_name": w, "step_name": "prepare" }),
        json!({ "event": "step_stop", "workflow_name": w, "step_name": "prepare", "duration": 100, "result": "ok" }),
        json!({ "event": "workflow_resume", "workflow_name": w }),
        json!({ "event": "step_start", "workflow_name": w, "step_name": "approve", "attempt": 1 }),
        json!({ "event": "step_stop", "workflow_name": w, "step_name": "approve", "duration": 0, "result": "await" }),
        json!({ "event": "workflow_resume", "workflow_name": w }),
        json!({ "event": "step_start", "workflow_name": w, "step_name": "publish", "attempt": 1 }),
        json!({ "event": "step_stop", "workflow_name": w, "step_name": "publish", "duration": 10, "result": "ok" }),
        json!({ "event": "workflow_stop", "workflow_name": w, "state": "completed", "duration": 170 }),
    ];
    assert_eq!(actual, expected);

    // Cancelled while awaiting.
    let id = engine.start(w, json!({})).await.unwrap();
    tokio::time::sleep(ms(200)).await;
    engine.cancel(id, CancelOptions::reason("customer changed their mind")).await.unwrap();
    let state: ExecutionState = engine.wait(id).await.unwrap();
    assert_eq!(state.status, Status::Cancelled);
    tokio::task::yield_now().await;
    let actual = as_json(&drain(&mut sub), id);
    assert_eq!(
        actual[actual.len() - 2..],
        [
            json!({ "event": "workflow_cancel", "workflow_name": w, "reason": "customer changed their mind" }),
            json!({ "event": "workflow_stop", "workflow_name": w, "state": "cancelled", "duration": 200 }),
        ]
    );
}

/// A chain of `n` steps of 1 ms each.
fn chain(n: usize) -> WorkflowDef {
    let mut wf = Workflow::new("chain");
    let names: Vec<&'static str> = (0..n).map(|i| &*Box::leak(format!("s{i}").into_boxed_str())).collect();
    for (i, name) in names.iter().enumerate() {
        let opts = if i == 0 { Step::opts() } else { Step::opts().after(names[i - 1]) };
        wf = wf.step_with(*name, sleeper(name, 1, &[], ""), opts);
    }
    wf.build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn slow_and_dropped_subscribers_never_hold_the_engine_up() {
    const STEPS: usize = 50;
    const RUNS: usize = 100;
    // 100 runs × (50 × 2 step events + start + stop) = 10,200 events: more than a
    // subscription buffers.
    const { assert!(RUNS * (STEPS * 2 + 2) > sagaflow::telemetry::SUBSCRIPTION_BUFFER) };
    let engine = Engine::builder().register(chain(STEPS)).build().await.unwrap();

    let mut never_reads = engine.subscribe();
    drop(engine.subscribe());
    let mut sleepy = engine.subscribe();
    let seen = Arc::new(Mutex::new(0usize));
    let seen_by_sleepy = Arc::clone(&seen);
    let sleeper_task = tokio::spawn(async move {
        while sleepy.recv().await.is_some() {
            *seen_by_sleepy.lock().unwrap() += 1;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });

    let run_all = async {
        let mut ids = Vec::new();
        for _ in 0..RUNS {
            ids.push(engine.start("chain", json!({})).await.unwrap());
        }
        let mut states = Vec::new();
        for id in ids {
            states.push(engine.wait(id).await.unwrap());
        }
        states
    };
    // Were the engine waiting for a subscriber, the runtime would go idle, the
    // paused clock would jump, and this would time out.
    let states = tokio::time::timeout(Duration::from_secs(60), run_all).await.expect("the engine kept going");
    for s in &states {
        assert_eq!(s.status, Status::Completed);
        assert_eq!(s.duration, ms(STEPS as u64), "every run took exactly its 50 steps of 1 ms");
    }

    // The one that never read lost the oldest events and still gets the newest.
    let kept = drain(&mut never_reads);
    assert!(never_reads.dropped() > 0, "it fell behind and lost events");
    assert_eq!(kept.len() as u64 + never_reads.dropped(), (RUNS * (STEPS * 2 + 2)) as u64);
    assert_eq!(kept.last().map(Event::name), Some("stop"));
    // The sleepy one saw one event per hour of the paused clock.
    assert!(*seen.lock().unwrap() <= 2, "it was asleep the whole time");
    sleeper_task.abort();
}

/// What a tracing layer saw of one span.
#[derive(Clone, Debug, Default)]
struct SpanRecord {
    name: &'static str,
    parent: Option<&'static str>,
    fields: BTreeMap<String, String>,
    closed: bool,
}

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<SpanRecord>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let span = ctx.span(id).unwrap();
        let mut record =
            SpanRecord { name: attrs.metadata().name(), parent: span.parent().map(|p| p.name()), ..Default::default() };
        attrs.record(&mut Fields(&mut record.fields));
        let mut spans = self.0.lock().unwrap();
        span.extensions_mut().insert(spans.len());
        spans.push(record);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let i = *ctx.span(id).unwrap().extensions().get::<usize>().unwrap();
        values.record(&mut Fields(&mut self.0.lock().unwrap()[i].fields));
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let i = *ctx.span(&id).unwrap().extensions().get::<usize>().unwrap();
        self.0.lock().unwrap()[i].closed = true;
    }
}

#[tokio::test(start_paused = true)]
async fn spans_cover_each_execution_and_each_step_attempt() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let engine = Engine::builder().register(checkout()).build().await.unwrap();
    // Other tests run on other threads without this subscriber. A span site first
    // reached there at the same time may have cached "never enabled". One warm-up
    // run registers every site the engine uses; rebuilding the cache afterwards
    // makes each of them ask the live subscribers again.
    let warm_up = engine.start("checkout", json!({})).await.unwrap();
    engine.wait(warm_up).await.unwrap();
    tracing::callsite::rebuild_interest_cache();
    spans.0.lock().unwrap().clear();

    let id = engine.start("checkout", json!({})).await.unwrap();
    assert_eq!(engine.wait(id).await.unwrap().status, Status::RolledBack);
    tokio::task::yield_now().await;

    let spans = spans.0.lock().unwrap().clone();
    let of = |name: &str| spans.iter().filter(|s| s.name == name).cloned().collect::<Vec<_>>();
    let exec = of("sagaflow.execution");
    assert_eq!(exec.len(), 1, "one span for the execution, though it parked during the retry delay");
    let e = &exec[0].fields;
    assert_eq!(e["workflow_name"], "checkout");
    assert_eq!(e["execution_id"], id.to_string());
    assert_eq!(e["trigger_type"], "manual");
    assert_eq!(e["state"], "rolled_back");
    assert!(exec[0].closed, "closed once the execution ended");

    let attempts: Vec<(String, String, String)> = of("sagaflow.step")
        .iter()
        .map(|s| {
            assert_eq!(s.parent, Some("sagaflow.execution"));
            assert_eq!(
                (s.fields["workflow_name"].as_str(), s.fields["execution_id"].clone()),
                ("checkout", id.to_string())
            );
            assert!(s.closed);
            (s.fields["step_name"].clone(), s.fields["attempt"].clone(), s.fields["result"].clone())
        })
        .collect();
    let expected = [("reserve", "1", "ok"), ("charge", "1", "error"), ("charge", "2", "ok"), ("ship", "1", "error")];
    let expected: Vec<(String, String, String)> =
        expected.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(attempts, expected, "one span per attempt, with its result");

    let rollbacks: Vec<(String, String)> = of("sagaflow.rollback")
        .iter()
        .map(|s| {
            assert_eq!(s.parent, Some("sagaflow.execution"));
            (s.fields["step_name"].clone(), s.fields["result"].clone())
        })
        .collect();
    assert_eq!(rollbacks, [("charge".to_owned(), "ok".to_owned()), ("reserve".to_owned(), "ok".to_owned())]);
}
