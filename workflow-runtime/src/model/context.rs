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

/// The steps each graft added, by graft name, in the order it added them.
pub(crate) type Grafts = CowMap<Arc<str>, Arc<[Arc<str>]>>;

/// What a step knows about the execution it runs in.
pub(crate) struct ExecMeta {
    pub(crate) id: ExecutionId,
    pub(crate) workflow: Arc<str>,
    pub(crate) cancel: CancelSignal,
    pub(crate) parent: Option<ExecutionId>,
    /// Where `ctx.signal` reads signals (set by the engine when a step first runs,
    /// or by `Context::with_signal` for a context built by hand).
    pub(crate) signals: OnceLock<Arc<dyn super::signal_port::SignalPort>>,
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
/// merged into, each step's own output (`output("step")`), the execution's input as
/// it was started (`input_as`), and facts about the running attempt: execution id,
/// workflow, step, attempt number, cancellation, and an idempotency key for side
/// effects.
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
///
/// # Typed data between steps
///
/// Besides the merged keys, a step can read what one step before it returned, as
/// that step's own type, and the execution's input as a type of its own. These are
/// the accessors for builder closures; with the macros, a step declares them as
/// parameters (`#[from(step)] account: &Account`, `#[input] email: &str`) and the
/// macro checks at compile time that the step runs after the one it reads and that
/// the types agree.
///
/// ```
/// use sagaflow_runtime::{Context, Outcome, StepError, StepResult, Workflow, json};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct Signup { email: String }
///
/// #[derive(Serialize, Deserialize)]
/// struct Account { id: u64, email: String }
///
/// async fn create_account(ctx: Context) -> Result<Account, StepError> {
///     let signup: Signup = ctx.input_as()?;
///     Ok(Account { id: 7, email: signup.email })
/// }
///
/// async fn send_welcome(ctx: Context) -> StepResult {
///     let account: Account = ctx.output_as("create_account")?;
///     // A step that may not have run (skipped, or failed with `on_error = continue`)
///     // is read as an `Option`.
///     let coupon: Option<String> = ctx.output_as("issue_coupon")?;
///     Ok(json!({ "welcomed": account.id, "coupon": coupon }).into())
/// }
///
/// let def = Workflow::new("signup")
///     .step("create_account", create_account)
///     .step_with("send_welcome", send_welcome, sagaflow_runtime::Step::opts().after("create_account"))
///     .build()
///     .expect("a valid workflow");
/// # let _ = def;
///
/// // A step function is tested with a context built by hand:
/// let ctx = Context::from_json(json!({ "email": "ada@example.com" }))?
///     .with_output("create_account", json!({ "id": 7, "email": "ada@example.com" }));
/// let account: Account = ctx.output_as("create_account")?;
/// assert_eq!(account.email, "ada@example.com");
/// let signup: Signup = ctx.input_as()?;
/// assert_eq!(signup.email, "ada@example.com");
/// assert_eq!(ctx.output_as::<Option<u32>>("issue_coupon")?, None);
/// assert_eq!(ctx.output_as::<u32>("issue_coupon").unwrap_err().kind(), "missing_key");
/// # let _ = Outcome::Done;
/// # Ok::<(), StepError>(())
/// ```
#[derive(Clone, Default)]
pub struct Context {
    pub(crate) data: Data,
    pub(crate) outputs: Outputs,
    /// The execution's input, as it was started (before any step's output).
    pub(crate) input: Data,
    /// The steps each graft added.
    pub(crate) grafts: Grafts,
    pub(crate) meta: Option<Arc<ExecMeta>>,
    pub(crate) step: Option<Arc<str>>,
    pub(crate) attempt: u32,
}

impl Context {
    /// An empty context, not attached to any execution (for tests of step functions).
    pub fn new() -> Self {
        Self::default()
    }

    /// A context holding the keys of a JSON object, as the first step of an execution
    /// started with that input sees it (so [`input_as`](Self::input_as) reads it too).
    ///
    /// Fails with kind `"invalid_type"` if `value` is not an object (or `null`,
    /// which gives an empty context).
    pub fn from_json(value: Value) -> Result<Self, StepError> {
        let data = object_to_data(value)?;
        Ok(Context { input: data.clone(), data, ..Default::default() })
    }

    /// Returns the context with `key` set to `value` (builder style, for tests).
    pub fn with(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        self.insert(key, value);
        self
    }

    /// Returns the context with `value` as the output of step `step` (builder style, for
    /// tests of step functions that read it with [`output_as`](Self::output_as)). The
    /// context's keys are left as they are.
    pub fn with_output(mut self, step: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.outputs.insert(Arc::from(step), value);
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

    /// The output of `step`, deserialized: what that step returned, as its own type
    /// (independent of `context_key`), kept in the journal so that it survives a
    /// restart.
    ///
    /// A step that has no output (it has not run, was skipped, failed with
    /// `on_error = continue`, or returned nothing) reads as `null`: ask for an
    /// `Option<T>` to get `None`. Errors are permanent: kind `"missing_key"` when the
    /// output is absent and `T` is not an `Option`, `"invalid_type"` when the output
    /// has another shape (such as one stored by an older version of the step).
    pub fn output_as<T: DeserializeOwned>(&self, step: &str) -> Result<T, StepError> {
        self.read_output(step, None)
    }

    /// The outputs of the steps that the graft `graft` added, in the order it added
    /// them. Empty when the graft was skipped, added nothing, or has not run yet; an
    /// added step without an output (skipped, failed with `on_error = continue`) reads
    /// as `null`, so ask for `Vec<Option<T>>` when that can happen.
    ///
    /// ```
    /// # use sagaflow_runtime::{Context, Outcome, StepResult, Task, Workflow, Step, StepError, json};
    /// async fn fan_out(ctx: Context) -> StepResult {
    ///     let ids: Vec<u32> = ctx.get("ids")?;
    ///     Ok(Outcome::expand(ids.into_iter().map(|id| {
    ///         Task::new(format!("square_{id}"), move |_ctx: Context| async move { Ok::<_, StepError>(id * id) })
    ///     })))
    /// }
    ///
    /// async fn total(ctx: Context) -> StepResult {
    ///     let squares: Vec<u32> = ctx.graft_outputs_as("squares")?;
    ///     Ok(json!({ "total": squares.iter().sum::<u32>() }).into())
    /// }
    ///
    /// let def = Workflow::new("squares")
    ///     .graft("squares", fan_out, Step::opts())
    ///     .step_with("total", total, Step::opts().after_graft("squares"))
    ///     .build()?;
    /// # let _ = def;
    /// # Ok::<(), sagaflow_runtime::BuildError>(())
    /// ```
    pub fn graft_outputs_as<T: DeserializeOwned>(&self, graft: &str) -> Result<Vec<T>, StepError> {
        self.read_graft(graft, None)
    }

    /// The names of the steps that the graft `graft` added, in the order it added them
    /// (empty when it added none or has not run yet).
    pub fn graft_steps(&self, graft: &str) -> impl Iterator<Item = &str> {
        self.grafts.get(graft).into_iter().flat_map(|names| names.iter().map(|n| &**n))
    }

    /// The execution's input, deserialized: the JSON object the execution was started
    /// with, as it was then (keys that steps merged into the context later do not
    /// change it). Errors are permanent, of kind `"invalid_type"`.
    pub fn input_as<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        self.read_input()
    }

    /// The output of `step` as `T`, for the parameter `param` when a typed input
    /// reads it; the error names the step that reads, the parameter and the step read.
    pub(crate) fn read_output<T: DeserializeOwned>(&self, step: &str, param: Option<&str>) -> Result<T, StepError> {
        let stored = self.outputs.get(step);
        T::deserialize(stored.unwrap_or(&Value::Null)).map_err(|e| {
            let source = format!("the output of step `{step}`");
            match stored {
                None => self.typed_error::<T>(
                    kinds::MISSING_KEY,
                    param,
                    &source,
                    "the step has no output (it has not run, was skipped, or failed); read it as an `Option` \
                     where that can happen"
                        .to_owned(),
                ),
                Some(_) => self.typed_error::<T>(kinds::INVALID_TYPE, param, &source, e.to_string()),
            }
            .with_details(self.typed_details(param, "from", step))
        })
    }

    /// The outputs of the steps `graft` added, as `T` (a sequence type).
    pub(crate) fn read_graft<T: DeserializeOwned>(&self, graft: &str, param: Option<&str>) -> Result<T, StepError> {
        let outputs = self.graft_steps(graft).map(|s| self.outputs.get(s).cloned().unwrap_or(Value::Null)).collect();
        T::deserialize(Value::Array(outputs)).map_err(|e| {
            let source = format!("the outputs of graft `{graft}`");
            self.typed_error::<T>(kinds::INVALID_TYPE, param, &source, e.to_string())
                .with_details(self.typed_details(param, "graft", graft))
        })
    }

    /// The execution's input as `T`.
    pub(crate) fn read_input<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        let input = Value::Object(self.input.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        T::deserialize(input).map_err(|e| {
            let source = match self.workflow() {
                "" => "the input".to_owned(),
                w => format!("the input of workflow `{w}`"),
            };
            self.typed_error::<T>(kinds::INVALID_TYPE, None, &source, e.to_string()).with_details(self.typed_details(
                None,
                "input",
                self.workflow(),
            ))
        })
    }

    /// `step `x` cannot read its parameter `p` from <source> as `T`: <reason>`.
    fn typed_error<T>(&self, kind: &'static str, param: Option<&str>, source: &str, reason: String) -> StepError {
        let reader = match (self.step(), param) {
            (Some(step), Some(p)) => format!("step `{step}` cannot read its parameter `{p}` from"),
            (None, Some(p)) => format!("cannot read parameter `{p}` from"),
            (Some(step), None) => format!("step `{step}` cannot read"),
            (None, None) => "cannot read".to_owned(),
        };
        let ty = std::any::type_name::<T>();
        StepError::new(kind, format!("{reader} {source} as `{ty}`: {reason}")).permanent()
    }

    /// `{"step": reader, "parameter": p, <what>: name}`.
    fn typed_details(&self, param: Option<&str>, what: &str, name: &str) -> Value {
        let mut details = Map::new();
        if let Some(step) = self.step() {
            details.insert("step".to_owned(), Value::from(step));
        }
        if let Some(p) = param {
            details.insert("parameter".to_owned(), Value::from(p));
        }
        details.insert(what.to_owned(), Value::from(name));
        Value::Object(details)
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
    fn typed_reads_name_the_reader_the_parameter_and_the_source() {
        let mut ctx = Context::from_json(json!({"email": "a@example.com"}))
            .unwrap()
            .with_output("create", json!({"id": "x"}))
            .with("email", "changed@example.com");
        ctx.step = Some(Arc::from("send"));
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)] // only deserialized
        struct Account {
            id: u64,
        }
        let e = ctx.read_output::<Account>("create", Some("account")).unwrap_err();
        assert_eq!(e.kind(), kinds::INVALID_TYPE);
        assert!(!e.is_retryable());
        assert!(
            e.message()
                .starts_with("step `send` cannot read its parameter `account` from the output of step `create` as `")
                && e.message().ends_with("Account`: invalid type: string \"x\", expected u64"),
            "{}",
            e.message()
        );
        assert_eq!(e.details(), Some(&json!({"step": "send", "parameter": "account", "from": "create"})));
        let e = ctx.output_as::<u64>("missing").unwrap_err();
        assert_eq!(e.kind(), kinds::MISSING_KEY);
        assert!(
            e.message()
                .starts_with("step `send` cannot read the output of step `missing` as `u64`: the step has no output")
        );
        assert_eq!(ctx.output_as::<Option<u64>>("missing").unwrap(), None);
        // The input is what the execution started with, whatever steps merged since.
        #[derive(serde::Deserialize)]
        struct Signup {
            email: String,
        }
        assert_eq!(ctx.input_as::<Signup>().unwrap().email, "a@example.com");
        assert_eq!(ctx.get::<String>("email").unwrap(), "changed@example.com");
        let e = ctx.input_as::<u64>().unwrap_err();
        assert_eq!(e.details(), Some(&json!({"step": "send", "input": ""})));
    }

    #[test]
    fn a_graft_s_outputs_come_in_the_order_it_added_its_steps() {
        let mut ctx = Context::new().with_output("resize_2", 20).with_output("resize_1", 10);
        ctx.grafts.insert(
            Arc::from("resize"),
            Arc::from([Arc::from("resize_2"), Arc::from("resize_1"), Arc::from("resize_3")]),
        );
        assert_eq!(ctx.graft_steps("resize").collect::<Vec<_>>(), ["resize_2", "resize_1", "resize_3"]);
        assert_eq!(ctx.graft_outputs_as::<Option<u32>>("resize").unwrap(), [Some(20), Some(10), None]);
        let e = ctx.graft_outputs_as::<u32>("resize").unwrap_err();
        assert_eq!(e.kind(), kinds::INVALID_TYPE);
        assert_eq!(e.details(), Some(&json!({"graft": "resize"})));
        assert!(ctx.graft_outputs_as::<u32>("not_run").unwrap().is_empty());
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
