//! [`Context`]: the JSON object that flows through an execution.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

use super::cowmap::CowMap;
use super::error::{StepError, kinds};
use super::ids::ExecutionId;

/// The context's key/value data: a step's snapshot costs a reference count, and
/// merging an output copies only what it must (see [`CowMap`]).
pub(crate) type Data = CowMap<String, Value>;

/// Per-step outputs, by step name.
pub(crate) type Outputs = CowMap<Arc<str>, Value>;

/// What a step knows about the execution it runs in.
pub(crate) struct ExecMeta {
    pub(crate) id: ExecutionId,
    pub(crate) workflow: Arc<str>,
    pub(crate) cancel: CancelSignal,
    pub(crate) parent: Option<ExecutionId>,
}

/// The execution's cancellation flag. Waiting on it allocates nothing until a step
/// actually waits, so parked executions stay small.
#[derive(Default)]
pub(crate) struct CancelSignal {
    flag: AtomicBool,
    waiters: OnceLock<Box<Notify>>,
}

impl CancelSignal {
    pub(crate) fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(n) = self.waiters.get() {
            n.notify_waiters();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    pub(crate) async fn cancelled(&self) {
        let notify = self.waiters.get_or_init(Default::default);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// The context of an execution as one step sees it.
///
/// It holds the JSON object that the input started and every step's output was
/// merged into, each step's own output (`output("step")`), and facts about the
/// running attempt: execution id, workflow, step, attempt number, cancellation, and
/// an idempotency key for side effects.
///
/// ```
/// use sagaflow_runtime::{Context, json};
///
/// let ctx = Context::from_json(json!({ "email": "alice@example.com", "retries": 2 })).unwrap();
/// let email: String = ctx.get("email")?;
/// assert_eq!(email, "alice@example.com");
/// assert_eq!(ctx.get_or("verified", false), false);
/// assert_eq!(ctx.get_opt::<u32>("retries")?, Some(2));
/// assert_eq!(ctx.get::<String>("missing").unwrap_err().kind(), "missing_key");
/// # Ok::<(), sagaflow_runtime::StepError>(())
/// ```
#[derive(Clone, Default)]
pub struct Context {
    pub(crate) data: Data,
    pub(crate) outputs: Outputs,
    pub(crate) meta: Option<Arc<ExecMeta>>,
    pub(crate) step: Option<Arc<str>>,
    pub(crate) attempt: u32,
}

impl Context {
    /// An empty context, not attached to any execution (for tests of step functions).
    pub fn new() -> Self {
        Self::default()
    }

    /// A context holding the keys of a JSON object.
    ///
    /// Fails with kind `"invalid_type"` if `value` is not an object (or `null`,
    /// which gives an empty context).
    pub fn from_json(value: Value) -> Result<Self, StepError> {
        Ok(Context { data: object_to_data(value)?, ..Default::default() })
    }

    /// Returns the context with `key` set to `value` (builder style, for tests).
    pub fn with(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key` to `value` in this copy of the context. Steps return their changes
    /// instead; this is for building contexts by hand.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Serialize) {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.data.insert(key.into(), value);
    }

    /// The value under `key`, deserialized.
    ///
    /// Errors are permanent (never retried): kind `"missing_key"` when absent,
    /// `"invalid_type"` when the value has another shape.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, StepError> {
        match self.data.get(key) {
            Some(v) => decode(key, v),
            None => Err(StepError::new(kinds::MISSING_KEY, format!("context has no key `{key}`{}", self.location()))
                .permanent()),
        }
    }

    /// The value under `key`, or `default` when it is absent or has another type.
    pub fn get_or<T: DeserializeOwned>(&self, key: &str, default: T) -> T {
        self.data.get(key).and_then(|v| T::deserialize(v).ok()).unwrap_or(default)
    }

    /// The value under `key` if present (`null` counts as absent).
    pub fn get_opt<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StepError> {
        match self.data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => decode(key, v).map(Some),
        }
    }

    /// The raw JSON value under `key`.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.data.get(key)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.data.contains_key(key)
    }

    /// The keys, in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.data.keys().map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the context has no keys.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// What the step `step` returned, as stored for it (independent of `context_key`).
    pub fn output(&self, step: &str) -> Option<&Value> {
        self.outputs.get(step)
    }

    /// The output of `step`, deserialized.
    pub fn output_as<T: DeserializeOwned>(&self, step: &str) -> Result<T, StepError> {
        match self.outputs.get(step) {
            Some(v) => decode(step, v),
            None => Err(StepError::new(kinds::MISSING_KEY, format!("step `{step}` has no output")).permanent()),
        }
    }

    /// The names of the steps that have an output so far.
    pub fn output_steps(&self) -> impl Iterator<Item = &str> {
        self.outputs.keys().map(|k| &**k)
    }

    /// The whole context as a JSON object.
    pub fn to_json(&self) -> Value {
        Value::Object(self.to_map())
    }

    /// The whole context as a JSON map.
    pub fn to_map(&self) -> Map<String, Value> {
        self.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The execution this context belongs to (a nil id for a detached context).
    pub fn execution_id(&self) -> ExecutionId {
        self.meta.as_ref().map(|m| m.id).unwrap_or_else(|| ExecutionId::from_uuid(uuid::Uuid::nil()))
    }

    /// The parent execution, when this execution runs as a nested workflow.
    pub fn parent_execution_id(&self) -> Option<ExecutionId> {
        self.meta.as_ref().and_then(|m| m.parent)
    }

    /// The workflow's name (empty for a detached context).
    pub fn workflow(&self) -> &str {
        self.meta.as_ref().map(|m| &*m.workflow).unwrap_or("")
    }

    /// The step that is running, if any.
    pub fn step(&self) -> Option<&str> {
        self.step.as_deref()
    }

    /// The attempt number of the running step, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// `"{execution_id}:{step}"`: the same for every attempt of this step in this
    /// execution, so a payment API or a database can drop the duplicates of an
    /// at-least-once delivery.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.execution_id(), self.step().unwrap_or(""))
    }

    /// Whether the execution has been cancelled. Long steps check this between units
    /// of work and stop early.
    pub fn is_cancelled(&self) -> bool {
        self.meta.as_ref().is_some_and(|m| m.cancel.is_cancelled())
    }

    /// Resolves when the execution is cancelled (never, for a detached context).
    pub async fn cancelled(&self) {
        match &self.meta {
            Some(m) => m.cancel.cancelled().await,
            None => std::future::pending().await,
        }
    }

    fn location(&self) -> String {
        match (&self.meta, &self.step) {
            (Some(m), Some(s)) => format!(" (step `{s}` of `{}`)", m.workflow),
            (None, Some(s)) => format!(" (step `{s}`)"),
            _ => String::new(),
        }
    }
}

fn decode<T: DeserializeOwned>(key: &str, v: &Value) -> Result<T, StepError> {
    T::deserialize(v).map_err(|e| {
        StepError::new(kinds::INVALID_TYPE, format!("context value `{key}` has an unexpected type: {e}")).permanent()
    })
}

pub(crate) fn object_to_data(value: Value) -> Result<Data, StepError> {
    match value {
        Value::Object(map) => Ok(map.into_iter().collect()),
        Value::Null => Ok(Data::new()),
        other => {
            Err(StepError::new(kinds::INVALID_TYPE, format!("a context must be a JSON object, got `{other}`"))
                .permanent())
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Context");
        if let Some(m) = &self.meta {
            d.field("execution_id", &m.id).field("workflow", &m.workflow);
        }
        if let Some(s) = &self.step {
            d.field("step", s).field("attempt", &self.attempt);
        }
        d.field("data", &self.to_json()).finish()
    }
}

impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data && self.outputs == other.outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_accessors() {
        let ctx = Context::from_json(json!({"n": 3, "s": "x", "nil": null})).unwrap();
        assert_eq!(ctx.get::<u32>("n").unwrap(), 3);
        assert_eq!(ctx.get::<String>("n").unwrap_err().kind(), kinds::INVALID_TYPE);
        assert!(!ctx.get::<String>("n").unwrap_err().is_retryable());
        assert_eq!(ctx.get_opt::<u32>("nil").unwrap(), None);
        assert_eq!(ctx.get_or("s", String::new()), "x");
        assert_eq!(ctx.get_or("n", "fallback".to_owned()), "fallback");
        assert_eq!(ctx.keys().collect::<Vec<_>>(), ["n", "nil", "s"]);
    }

    #[test]
    fn non_objects_are_rejected() {
        assert!(Context::from_json(json!(null)).unwrap().is_empty());
        assert_eq!(Context::from_json(json!([1])).unwrap_err().kind(), kinds::INVALID_TYPE);
    }

    #[test]
    fn snapshots_are_independent() {
        let a = Context::new().with("k", 1);
        let mut b = a.clone();
        b.insert("k", 2);
        assert_eq!(a.get::<i32>("k").unwrap(), 1);
        assert_eq!(b.get::<i32>("k").unwrap(), 2);
    }
}
