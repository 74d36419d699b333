//! Crash-proof on the embedded default, one finding at a time: nothing starts
//! before the event that caused it is committed (the execution's creation
//! included), recovery finishes whatever prefix of a journal survived a crash, no
//! duration a user can write panics the engine, a failing driver still ends its
//! execution, and one engine at a time holds an SQLite file.
//!
//! Crashes are made by [`FaultStore`]: it commits up to a chosen write and then
//! commits nothing more, as a process killed at that instant leaves its file. The
//! real `kill -9` of processes is in `chaos.rs` and `kill.rs`.
//!
//! These tests use the real clock: the SQLite store works on a thread of its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::store::{SqliteStore, Store, StoreError, Write};
use sagaflow::{BuildError, EngineError, StartAt, StepStatus, WorkflowDef, kinds};

use crate::faults::{FaultStore, event_is};

/// Runs of steps: `(generation, step, attempt)`; the generation tells the engine
/// before a crash (1) from the one after it (2).
#[derive(Default)]
struct Runs {
    generation: AtomicU32,
    runs: Mutex<Vec<(u32, String, u32)>>,
}

impl Runs {
    fn new() -> Arc<Self> {
        Arc::new(Runs { generation: AtomicU32::new(1), ..Default::default() })
    }

    fn record(&self, what: &str, ctx: &Context) {
        let generation = self.generation.load(Ordering::SeqCst);
        self.runs.lock().unwrap().push((generation, what.to_owned(), ctx.attempt()));
    }

    /// Attempts of `what` that ran in `generation`.
    fn of(&self, generation: u32, what: &str) -> Vec<u32> {
        let runs = self.runs.lock().unwrap();
        runs.iter().filter(|(g, w, _)| *g == generation && w == what).map(|(_, _, a)| *a).collect()
    }
}

fn file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("crash.db")
}

async fn faulty(dir: &tempfile::TempDir, delay: Duration) -> Arc<FaultStore> {
    FaultStore::new(SqliteStore::open(file(dir)).await.expect("the file opens"), delay)
}

/// A new engine on the file, after the crash of the one before.
async fn restart(dir: &tempfile::TempDir, def: WorkflowDef, runs: &Runs) -> Engine {
    runs.generation.store(2, Ordering::SeqCst);
    let url = format!("sqlite://{}", file(dir).display());
    Engine::builder().store_url(url).register(def).build().await.expect("the engine restarts on the file")
}

/// Waits for `cond` (real time, at most 10 s).
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// `wait` with a deadline: a hung execution fails the test instead of hanging it.
async fn wait(engine: &Engine, id: ExecutionId) -> sagaflow::ExecutionState {
    tokio::time::timeout(Duration::from_secs(20), engine.wait(id))
        .await
        .expect("the execution ends: `wait` answers")
        .expect("wait")
}

/// What a step saw of the store when it started, for the write-ahead test.
#[derive(Default)]
struct Seen {
    violations: Mutex<Vec<String>>,
    starts: AtomicU32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_starts_only_once_its_execution_and_the_results_it_follows_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    // Slow commits leave a wide window between a result and its commit.
    let store = faulty(&dir, Duration::from_millis(25)).await;
    let seen = Arc::new(Seen::default());
    // a → (b, c) → d: step indexes 0, 1, 2, 3.
    let deps: [(&str, &[u64]); 4] = [("a", &[]), ("b", &[0]), ("c", &[0]), ("d", &[1, 2])];
    let mut wf = Workflow::new("diamond");
    for (name, after) in deps {
        let (store, seen) = (Arc::clone(&store), Arc::clone(&seen));
        let body = move |ctx: Context| {
            seen.starts.fetch_add(1, Ordering::SeqCst);
            let id = ctx.execution_id();
            let mut wrong = Vec::new();
            if !store.created(id) {
                wrong.push(format!("{id}/{name} started before its execution's creation was committed"));
            }
            for &dep in after {
                if !store.has_event(id, |e| event_is(e, "step_finished", Some(dep))) {
                    wrong.push(format!("{id}/{name} started before step {dep}'s completion was committed"));
                }
            }
            seen.violations.lock().unwrap().extend(wrong);
            async { Ok::<_, StepError>(()) }
        };
        let names: Vec<String> = after.iter().map(|&i| deps[i as usize].0.to_owned()).collect();
        wf = wf.step_with(name, body, Step::opts().after(names));
    }
    let engine = Engine::builder().store_arc(store.clone()).register(wf.build().unwrap()).build().await.unwrap();
    let ids = futures::future::join_all((0..8).map(|_| engine.start("diamond", json!({})))).await;
    for id in ids {
        assert_eq!(wait(&engine, id.unwrap()).await.status, Status::Completed);
    }
    assert_eq!(seen.starts.load(Ordering::SeqCst), 32, "every step ran once");
    let violations = seen.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "the write-ahead rule was broken:\n{}", violations.join("\n"));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_that_was_decided_but_not_committed_is_recorded_after_the_crash() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Runs::new();
    let chain = |runs: &Arc<Runs>| {
        let mut wf = Workflow::new("chain");
        for (i, name) in ["s1", "s2", "s3"].into_iter().enumerate() {
            let runs = Arc::clone(runs);
            let body = move |ctx: Context| {
                runs.record(name, &ctx);
                async { Ok::<_, StepError>(()) }
            };
            wf = if i == 0 {
                wf.step(name, body)
            } else {
                wf.step_with(name, body, Step::opts().after(format!("s{i}")))
            };
        }
        wf.build().unwrap()
    };
    let store = faulty(&dir, Duration::ZERO).await;
    // The process dies right after the last step's completion is committed, before
    // the final state is.
    store.crash_after(|w| matches!(w, Write::Event(e) if e.event.contains(r#""event":"step_finished","step":2"#)));
    let engine = Engine::builder().store_arc(store.clone()).register(chain(&runs)).build().await.unwrap();
    let id = engine.start("chain", json!({})).await.unwrap();
    until("the crash", || store.crashed()).await;
    drop(engine);

    let engine = restart(&dir, chain(&runs), &runs).await;
    let state = wait(&engine, id).await;
    assert_eq!(state.status, Status::Completed);
    assert!(state.steps.iter().all(|s| s.status == StepStatus::Completed));
    for step in ["s1", "s2", "s3"] {
        assert_eq!(runs.of(1, step), [1], "{step} ran once before the crash");
        assert!(runs.of(2, step).is_empty(), "{step} did not run again");
    }
    let history = engine.history(&Default::default()).await.unwrap();
    assert_eq!(history.iter().map(|s| s.id).collect::<Vec<_>>(), [id], "the end is in the store");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_await_timeout_handler_in_flight_at_the_crash_runs_again_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Runs::new();
    let def = |runs: &Arc<Runs>| {
        let (body, handler) = (Arc::clone(runs), Arc::clone(runs));
        Workflow::new("deadline")
            .step_with(
                "approve",
                move |ctx: Context| {
                    body.record("body", &ctx);
                    async { Ok::<Outcome, StepError>(Outcome::await_for("200ms")) }
                },
                Step::opts().await_approval(true).on_timeout(move |ctx: Context| {
                    handler.record("on_timeout", &ctx);
                    async { Ok::<_, StepError>(json!({ "timed_out": true })) }
                }),
            )
            .build()
            .unwrap()
    };
    let store = faulty(&dir, Duration::ZERO).await;
    // The await times out; the process dies as its handler would start.
    store.crash_after(|w| matches!(w, Write::Event(e) if e.event.contains(r#""event":"timer_fired""#)));
    let engine = Engine::builder().store_arc(store.clone()).register(def(&runs)).build().await.unwrap();
    let id = engine.start("deadline", json!({})).await.unwrap();
    until("the crash", || store.crashed()).await;
    drop(engine);
    assert_eq!(runs.of(1, "body"), [1]);
    assert!(runs.of(1, "on_timeout").is_empty(), "nothing started after the uncommitted timer");

    let engine = restart(&dir, def(&runs), &runs).await;
    let state = wait(&engine, id).await;
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.context["timed_out"], true);
    assert!(runs.of(2, "body").is_empty(), "the step's body did not run again");
    assert_eq!(runs.of(2, "on_timeout").len(), 1, "its timeout handler ran, once");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_waiting_for_its_retry_at_the_crash_runs_once_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Runs::new();
    let def = |runs: &Arc<Runs>| {
        let (reserve, release) = (Arc::clone(runs), Arc::clone(runs));
        Workflow::new("saga")
            .step_with(
                "reserve",
                move |ctx: Context| {
                    reserve.record("reserve", &ctx);
                    async { Ok::<_, StepError>(()) }
                },
                Step::opts().max_retries(2).retry_delay("300ms").rollback(move |ctx: Context| {
                    release.record("release", &ctx);
                    let attempt = ctx.attempt();
                    async move {
                        if attempt == 1 { Err(StepError::new("busy", "try again")) } else { Ok(Outcome::Done) }
                    }
                }),
            )
            .step_with(
                "charge",
                |_ctx: Context| async { Err::<(), _>(StepError::new("declined", "card declined").permanent()) },
                Step::opts().after("reserve"),
            )
            .build()
            .unwrap()
    };
    let store = faulty(&dir, Duration::ZERO).await;
    // The first compensation attempt fails and its retry is armed; then the crash.
    store.crash_after(|w| {
        matches!(w, Write::Event(e) if e.event.contains(r#""event":"compensation_finished""#)
            && e.event.contains("busy"))
    });
    let engine = Engine::builder().store_arc(store.clone()).register(def(&runs)).build().await.unwrap();
    let id = engine.start("saga", json!({})).await.unwrap();
    until("the crash", || store.crashed()).await;
    drop(engine);
    assert_eq!(runs.of(1, "release"), [1]);

    let engine = restart(&dir, def(&runs), &runs).await;
    let state = wait(&engine, id).await;
    assert_eq!(state.status, Status::RolledBack);
    assert_eq!(runs.of(2, "release"), [2], "only the retry ran, once, with the next attempt number");
    assert!(runs.of(2, "reserve").is_empty(), "the completed step did not run again");
    engine.shutdown().await;
}

#[test]
fn durations_past_the_longest_supported_are_build_errors_naming_step_and_option() {
    let noop = |_ctx: Context| async { Ok::<_, StepError>(()) };
    let err = Workflow::new("w").timeout(Duration::MAX).step("s", noop).build().unwrap_err();
    assert!(matches!(err, BuildError::InvalidOption { option: "timeout", step: None, .. }), "{err:?}");
    assert!(err.to_string().contains("longer than the longest supported"), "{err}");
    for (option, opts) in [
        ("timeout", Step::opts().timeout(Duration::MAX)),
        ("retry_delay", Step::opts().retry_delay(u64::MAX)),
        ("retry_max_delay", Step::opts().retry_max_delay("40000d")),
    ] {
        let err = Workflow::new("w").step_with("slow", noop, opts).build().unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidOption { option: o, step: Some(s), .. } if *o == option && s == "slow"),
            "{option}: {err:?}"
        );
    }
    let err = Workflow::new("w").dead_letter(true).dead_letter_ttl(Duration::MAX).step("s", noop).build().unwrap_err();
    assert!(matches!(err, BuildError::InvalidOption { option: "dead_letter_ttl", .. }), "{err:?}");
    assert!(Schedule::every(Duration::MAX).is_err());
    assert!(
        Workflow::new("w").timeout(sagaflow::MAX_DURATION).step("s", noop).build().is_ok(),
        "the limit itself is fine"
    );
}

#[tokio::test(start_paused = true)]
async fn out_of_range_durations_at_run_time_fail_the_step_not_the_engine() {
    let fails = |outcome: fn() -> Outcome| move |_ctx: Context| std::future::ready(Ok::<Outcome, StepError>(outcome()));
    let def = Workflow::new("durations")
        .step_with("snooze", fails(|| Outcome::snooze(Duration::MAX)), Step::opts().on_error(OnError::Continue))
        .step_with(
            "await",
            fails(|| Outcome::await_for(Duration::MAX)),
            Step::opts().await_approval(true).on_error(OnError::Continue),
        )
        .step_with(
            "timeout_fn",
            |_ctx: Context| async { Ok::<_, StepError>(()) },
            Step::opts().timeout_fn(|_ctx| Some(Duration::MAX)).on_error(OnError::Continue),
        )
        .step_with(
            "backoff",
            |_ctx: Context| async { Err::<(), _>(StepError::new("flaky", "try again")) },
            Step::opts()
                .max_retries(3)
                .retry_backoff_fn(|_n, _base| panic!("the backoff function broke"))
                .on_error(OnError::Continue),
        )
        .build()
        .unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let id = engine.start("durations", json!({})).await.unwrap();
    let state = tokio::time::timeout(Duration::from_secs(60), engine.wait(id)).await.expect("`wait` answers").unwrap();
    assert_eq!(state.status, Status::Completed, "`on_error: continue` lets the execution end");
    for step in ["snooze", "await", "timeout_fn"] {
        let s = state.step(step).unwrap();
        assert_eq!(s.status, StepStatus::Failed, "{step}");
        let error = s.error.as_ref().unwrap();
        assert_eq!(error.kind(), kinds::INVALID_DURATION, "{step}: {error}");
        assert!(error.message().contains(step.trim_end_matches("_fn")), "{step}: the error names it: {error}");
    }
    let backoff = state.step("backoff").unwrap();
    assert_eq!(backoff.attempts, 1, "no retry was scheduled with a broken delay");
    let error = backoff.error.as_ref().unwrap();
    assert_eq!(error.kind(), kinds::PANIC);
    assert_eq!(error.message(), "the backoff function of step `backoff` panicked: the backoff function broke");
    let err = engine.schedule_execution("durations", json!({}), StartAt::delay(Duration::MAX)).await.unwrap_err();
    assert!(matches!(err, EngineError::InvalidInput { .. }), "{err:?}");
}

/// A tracing layer that panics when the span of the step named `boom` opens: a
/// fault inside the engine's driver, outside any user code it guards.
struct PanicOnStep;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PanicOnStep {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct StepName(bool);
        impl tracing::field::Visit for StepName {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "step_name" && format!("{value:?}") == "boom" {
                    self.0 = true;
                }
            }
        }
        let mut visitor = StepName(false);
        attrs.record(&mut visitor);
        if attrs.metadata().name() == "sagaflow.step" && visitor.0 {
            panic!("a subscriber failed");
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_driver_that_panics_ends_its_execution_failed_and_the_engine_carries_on() {
    use tracing_subscriber::layer::SubscriberExt;
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(PanicOnStep));
    let dir = tempfile::tempdir().unwrap();
    let noop = |_ctx: Context| async { Ok::<_, StepError>(()) };
    let broken = Workflow::new("broken").step("fine", noop).step_with("boom", noop, Step::opts().after("fine"));
    let calm = Workflow::new("calm").step("fine", noop);
    let url = format!("sqlite://{}", file(&dir).display());
    let engine = Engine::builder()
        .store_url(url)
        .register(broken.build().unwrap())
        .register(calm.build().unwrap())
        .build()
        .await
        .unwrap();
    // Other tests' threads may have cached "never enabled" for the span sites:
    // one run registers them all, and rebuilding the cache asks this subscriber.
    let warm_up = engine.start("calm", json!({})).await.unwrap();
    wait(&engine, warm_up).await;
    tracing::callsite::rebuild_interest_cache();

    let id = engine.start("broken", json!({})).await.unwrap();
    let state = wait(&engine, id).await;
    assert_eq!(state.status, Status::Failed);
    let failure = state.failure.clone().unwrap();
    assert_eq!(failure.error.kind(), kinds::ENGINE_PANIC);
    assert!(failure.error.message().contains("a subscriber failed"), "{}", failure.error);
    assert_eq!(state.step("fine").unwrap().status, StepStatus::Completed);
    let err = engine.cancel(id, CancelOptions::default()).await.unwrap_err();
    assert!(matches!(err, EngineError::InvalidState { .. }), "cancel answers: {err:?}");
    let stored = engine.history(&Default::default()).await.unwrap();
    assert_eq!(stored.iter().find(|s| s.id == id).map(|s| s.status), Some(Status::Failed), "the end is journaled");
    let ok = engine.start("calm", json!({})).await.unwrap();
    assert_eq!(wait(&engine, ok).await.status, Status::Completed, "the engine carries on");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_engine_at_a_time_holds_an_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", file(&dir).display());
    let noop = |_ctx: Context| async { Ok::<_, StepError>(()) };
    let def = || Workflow::new("w").step("s", noop).build().unwrap();
    let first = Engine::builder().store_url(&url).register(def()).build().await.unwrap();
    let err = Engine::builder().store_url(&url).register(def()).build().await.unwrap_err();
    let EngineError::Store(StoreError::Locked { path, holder }) = &err else { panic!("expected Locked: {err:?}") };
    assert_eq!(path, &file(&dir).display().to_string(), "the error names the file");
    assert!(holder.contains(&format!("process {}", std::process::id())), "and the holder: {holder}");

    // Tools read the live file without taking it over.
    let id = first.start("w", json!({})).await.unwrap();
    first.wait(id).await.unwrap();
    let reader = SqliteStore::open_read_only(file(&dir)).await.unwrap();
    assert_eq!(reader.finished(id).await.unwrap().map(|s| s.status), Some(Status::Completed));
    let err = Engine::builder().store_url(format!("{url}?mode=ro")).build().await.unwrap_err();
    assert!(matches!(err, EngineError::ReadOnlyStore { .. }), "no engine runs on a read-only store: {err:?}");

    first.shutdown().await;
    let second = Engine::builder().store_url(&url).register(def()).build().await.expect("after shutdown it opens");
    assert_eq!(second.get_state(id).await.unwrap().status, Status::Completed);
    second.shutdown().await;
}
