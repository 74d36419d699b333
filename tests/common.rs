//! Helpers shared by the integration tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow::{Context, StepResult, json};
use tokio::time::Instant;

/// One step run: name, start and end (on tokio's clock, which tests pause).
#[derive(Clone, Debug)]
pub struct Run {
    pub name: String,
    pub start: Instant,
    pub end: Instant,
}

/// A shared log of step runs, to assert order and overlap.
#[derive(Default, Debug)]
pub struct Recorder {
    runs: Mutex<Vec<Run>>,
}

/// The boxed future type of test steps.
pub type StepFuture = Pin<Box<dyn Future<Output = StepResult> + Send>>;

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn record(&self, run: Run) {
        self.runs.lock().unwrap().push(run);
    }

    pub fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    pub fn run(&self, name: &str) -> Run {
        self.runs().into_iter().find(|r| r.name == name).unwrap_or_else(|| panic!("step `{name}` did not run"))
    }

    /// Names in the order the steps started.
    pub fn names(&self) -> Vec<String> {
        let mut runs = self.runs();
        runs.sort_by_key(|r| r.start);
        runs.into_iter().map(|r| r.name).collect()
    }

    pub fn count(&self, name: &str) -> usize {
        self.runs().iter().filter(|r| r.name == name).count()
    }

    /// `a` ended before `b` started.
    pub fn before(&self, a: &str, b: &str) -> bool {
        self.run(a).end <= self.run(b).start
    }

    /// `a` and `b` ran at the same time for a while.
    pub fn overlapped(&self, a: &str, b: &str) -> bool {
        let (x, y) = (self.run(a), self.run(b));
        x.start < y.end && y.start < x.end
    }

    /// Sleeps `ms` on tokio's clock and records a run of `name` (for step bodies
    /// written as methods).
    pub async fn track(&self, name: &str, ms: u64) {
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.record(Run { name: name.to_owned(), start, end: Instant::now() });
    }

    /// A step that sleeps `ms`, records its run and outputs `output`.
    pub fn emitter(
        self: &Arc<Self>,
        name: &'static str,
        ms: u64,
        output: serde_json::Value,
    ) -> impl Fn(Context) -> StepFuture + Send + Sync + 'static {
        let rec = Arc::clone(self);
        move |_ctx| {
            let (rec, output) = (Arc::clone(&rec), output.clone());
            Box::pin(async move {
                rec.track(name, ms).await;
                Ok(output.into())
            })
        }
    }

    /// A step that sleeps `ms`, records its run and outputs `{name: true}`.
    pub fn sleeper(
        self: &Arc<Self>,
        name: &'static str,
        ms: u64,
    ) -> impl Fn(Context) -> StepFuture + Send + Sync + 'static {
        let rec = Arc::clone(self);
        move |_ctx| {
            let rec = Arc::clone(&rec);
            Box::pin(async move {
                let start = Instant::now();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                rec.record(Run { name: name.to_owned(), start, end: Instant::now() });
                Ok(json!({ name: true }).into())
            })
        }
    }
}

/// Waits (at most 10 s) until the execution waits for an approval.
pub async fn until_awaiting(engine: &sagaflow::Engine, id: sagaflow::ExecutionId) {
    for _ in 0..1000 {
        if engine.get_state(id).await.expect("its state").status == sagaflow::Status::Awaiting {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("execution {id} did not wait for its approval within 10 s");
}
