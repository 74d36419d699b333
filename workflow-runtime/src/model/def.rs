//! [`WorkflowDef`]: a validated workflow, as `build()` and `#[workflow]` produce it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::duration::format_duration;
use super::ids::StepId;
use super::options::StepPolicy;
use super::policy::WorkflowPolicy;
use super::retry::OnError;
use super::schedule::Schedule;
use super::step::{Named, StepBody};

/// What a step runs.
#[derive(Clone)]
pub(crate) enum StepKind {
    /// A function, closure or worker.
    Task(StepBody),
    /// A function whose outcome adds steps at run time.
    Graft(StepBody),
    /// Another registered workflow, run as a child execution. `input` computes the
    /// additions to the parent's context that the child starts with.
    Workflow { workflow: Arc<str>, input: Option<StepBody> },
}

/// The kind of a step, as introspection shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKindName {
    /// A function, closure or worker.
    Task,
    /// A graft: adds steps at run time.
    Graft,
    /// A nested workflow.
    Workflow,
}

/// One step of a definition.
#[derive(Clone)]
pub struct StepDef {
    pub(crate) name: Arc<str>,
    pub(crate) kind: StepKind,
    pub(crate) policy: Arc<StepPolicy>,
    /// Steps that must all have ended (from `after` and `after_group`, and
    /// `after_graft`).
    pub(crate) all: Vec<StepId>,
    /// Steps of which the first to complete starts this one.
    pub(crate) any: Vec<StepId>,
    pub(crate) declared: Declared,
}

/// Dependencies as the user declared them, for introspection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declared {
    /// `after`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// `after_any`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_any: Vec<String>,
    /// `after_group`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_group: Vec<String>,
    /// `after_graft`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_graft: Vec<String>,
}

impl StepDef {
    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What kind of step it is.
    pub fn kind(&self) -> StepKindName {
        match self.kind {
            StepKind::Task(_) => StepKindName::Task,
            StepKind::Graft(_) => StepKindName::Graft,
            StepKind::Workflow { .. } => StepKindName::Workflow,
        }
    }

    /// For a nested-workflow step, the child workflow's name.
    pub fn child_workflow(&self) -> Option<&str> {
        match &self.kind {
            StepKind::Workflow { workflow, .. } => Some(workflow),
            _ => None,
        }
    }

    /// The resolved options.
    pub fn policy(&self) -> &StepPolicy {
        &self.policy
    }

    /// The dependencies as declared.
    pub fn declared(&self) -> &Declared {
        &self.declared
    }
}

impl fmt::Debug for StepDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepDef")
            .field("name", &self.name)
            .field("kind", &self.kind())
            .field("declared", &self.declared)
            .field("policy", &self.policy)
            .finish()
    }
}

/// How executions of a workflow get started, besides `engine.start`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Triggers {
    /// Time-based schedules.
    pub schedules: Vec<Schedule>,
    /// Names of events that start the workflow (see `Engine::emit`).
    pub events: Vec<String>,
}

/// A query of a workflow (`Workflow::query`, `#[query]`): a function of an
/// execution's state, its answer serialized.
pub(crate) type QueryFn =
    Arc<dyn Fn(&super::execution::ExecutionState) -> Result<Value, super::error::StepError> + Send + Sync + 'static>;

#[derive(Clone)]
pub(crate) struct DefInner {
    pub(crate) name: Arc<str>,
    pub(crate) policy: WorkflowPolicy,
    pub(crate) steps: Vec<StepDef>,
    pub(crate) by_name: HashMap<Arc<str>, StepId>,
    pub(crate) groups: BTreeMap<String, Vec<StepId>>,
    /// For each step, the steps that wait on it: `(dependent, is_any_edge)`.
    pub(crate) dependents: Vec<Vec<(StepId, bool)>>,
    pub(crate) roots: Vec<StepId>,
    pub(crate) triggers: Triggers,
    pub(crate) version: String,
    /// Queries by name (they do not drive execution: not part of the version).
    pub(crate) queries: BTreeMap<Arc<str>, QueryFn>,
}

/// A validated workflow definition. Cheap to clone.
///
/// Built by [`Workflow::build`](crate::Workflow::build) or by `#[workflow]`; run by
/// registering it with an [`Engine`](crate::Engine).
#[derive(Clone)]
pub struct WorkflowDef {
    pub(crate) inner: Arc<DefInner>,
}

impl WorkflowDef {
    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The steps, in declaration order.
    pub fn steps(&self) -> &[StepDef] {
        &self.inner.steps
    }

    /// A step by name.
    pub fn step(&self, name: &str) -> Option<&StepDef> {
        self.inner.by_name.get(name).map(|&id| &self.inner.steps[id as usize])
    }

    /// Parallel groups and their steps.
    pub fn groups(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.inner
            .groups
            .iter()
            .map(|(g, ids)| (g.as_str(), ids.iter().map(|&i| &*self.inner.steps[i as usize].name).collect()))
    }

    /// Workflow-level options.
    pub fn policy(&self) -> &WorkflowPolicy {
        &self.inner.policy
    }

    /// Schedules and events that start it.
    pub fn triggers(&self) -> &Triggers {
        &self.inner.triggers
    }

    /// A hash of the definition's shape (steps, dependencies, options): executions
    /// record it, so recovery can tell when the code changed.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// Names of the steps that step `name` directly depends on (all kinds of edge).
    pub fn dependencies(&self, name: &str) -> Vec<&str> {
        self.step(name)
            .map(|s| s.all.iter().chain(&s.any).map(|&d| &*self.inner.steps[d as usize].name).collect())
            .unwrap_or_default()
    }

    /// A serializable description of the definition, without code.
    pub fn snapshot(&self) -> DefinitionSnapshot {
        snapshot_of(&self.inner)
    }

    /// The names of its queries ([`Engine::query`](crate::Engine::query)), sorted.
    pub fn queries(&self) -> impl Iterator<Item = &str> {
        self.inner.queries.keys().map(|k| &**k)
    }

    /// The definition with the body of the task step `name` replaced (the test
    /// kit's fakes): everything else, the version included, stays as it is.
    /// `false` if it has no such step.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))] // used by `testing` only
    pub(crate) fn replace_body(&mut self, name: &str, body: super::step::StepBody) -> bool {
        let Some(&id) = self.inner.by_name.get(name) else { return false };
        let mut inner = (*self.inner).clone();
        let step = &mut inner.steps[id as usize];
        step.kind = match &step.kind {
            StepKind::Graft(_) => StepKind::Graft(body),
            StepKind::Task(_) | StepKind::Workflow { .. } => StepKind::Task(body),
        };
        self.inner = Arc::new(inner);
        true
    }
}

impl fmt::Debug for WorkflowDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowDef")
            .field("name", &self.inner.name)
            .field("version", &self.inner.version)
            .field("steps", &self.inner.steps)
            .field("policy", &self.inner.policy)
            .field("triggers", &self.inner.triggers)
            .finish()
    }
}

/// Two definitions are equal when their snapshots are: same steps, dependencies,
/// options, handler names and triggers.
impl PartialEq for WorkflowDef {
    fn eq(&self, other: &Self) -> bool {
        self.snapshot() == other.snapshot()
    }
}

/// A definition as data: what stores keep so that tools can show a workflow without
/// its code, and what `version` hashes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DefinitionSnapshot {
    /// Name.
    pub name: String,
    /// Shape hash.
    pub version: String,
    /// Steps in declaration order.
    pub steps: Vec<StepSnapshot>,
    /// Groups and their steps.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Workflow timeout, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Workflow-level retries.
    pub max_retries: u32,
    /// Handlers that are set, by option name.
    pub handlers: BTreeMap<String, String>,
    /// Whether failures are kept as dead letters.
    pub dead_letter: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub metadata: Map<String, Value>,
    /// Step concurrency limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_concurrency: Option<u32>,
    /// Schedules, described.
    pub schedules: Vec<String>,
    /// Event names.
    pub events: Vec<String>,
    /// User-given version label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One step in a [`DefinitionSnapshot`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSnapshot {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: StepKindName,
    /// Child workflow of a nested-workflow step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// Dependencies as declared.
    #[serde(flatten)]
    pub declared: Declared,
    /// Group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Timeout (`"5m"`, `"infinity"`, `"dynamic"`).
    pub timeout: String,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Base retry delay.
    pub retry_delay: String,
    /// Backoff name.
    pub retry_backoff: String,
    /// Retry delay cap.
    pub retry_max_delay: String,
    /// Jitter on.
    pub retry_jitter: bool,
    /// Kinds that are retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
    /// Kinds that are never retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_retry_on: Vec<String>,
    /// `on_error`.
    pub on_error: OnError,
    /// Compensation name (`"<closure>"` when unnamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
    /// Condition name (`"<closure>"` when unnamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Await-timeout handler name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<String>,
    /// Human-in-the-loop step.
    pub await_approval: bool,
    /// Interrupted by cancel.
    pub cancellable: bool,
    /// How long a cancelled step may take to return before it is interrupted,
    /// when it is not the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_grace: Option<String>,
    /// Output key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_key: Option<String>,
    /// Circuit breaker name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn name_of<T>(n: &Option<Named<T>>) -> Option<String> {
    n.as_ref().map(|h| h.name.as_deref().unwrap_or("<closure>").to_owned())
}

pub(crate) fn step_snapshot(s: &StepDef) -> StepSnapshot {
    let p = &s.policy;
    StepSnapshot {
        name: s.name.to_string(),
        kind: s.kind(),
        workflow: s.child_workflow().map(str::to_owned),
        declared: s.declared.clone(),
        group: p.group.as_deref().map(str::to_owned),
        timeout: p.timeout.to_string(),
        max_retries: p.retry.max_retries,
        retry_delay: format_duration(p.retry.delay),
        retry_backoff: p.retry.backoff.as_str().to_owned(),
        retry_max_delay: format_duration(p.retry.max_delay),
        retry_jitter: p.retry.jitter,
        retry_on: p.retry.retry_on.clone(),
        no_retry_on: p.retry.no_retry_on.clone(),
        on_error: p.on_error,
        rollback: name_of(&p.rollback),
        when: name_of(&p.when),
        on_timeout: name_of(&p.on_timeout),
        await_approval: p.await_approval,
        cancellable: p.cancellable,
        cancel_grace: (p.cancel_grace != super::defaults::CANCEL_GRACE).then(|| format_duration(p.cancel_grace)),
        context_key: p.context_key.as_deref().map(str::to_owned),
        circuit_breaker: p.circuit_breaker.as_ref().map(|(n, _)| n.to_string()),
        description: p.description.clone(),
    }
}

fn snapshot_of(d: &DefInner) -> DefinitionSnapshot {
    let p = &d.policy;
    DefinitionSnapshot {
        name: d.name.to_string(),
        version: d.version.clone(),
        steps: d.steps.iter().map(step_snapshot).collect(),
        groups: d
            .groups
            .iter()
            .map(|(g, ids)| (g.clone(), ids.iter().map(|&i| d.steps[i as usize].name.to_string()).collect()))
            .collect(),
        timeout: p.timeout.map(format_duration),
        max_retries: p.retry.max_retries,
        handlers: p.handler_names().into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        dead_letter: p.dead_letter,
        tags: p.tags.clone(),
        metadata: p.metadata.clone(),
        step_concurrency: p.step_concurrency,
        schedules: d.triggers.schedules.iter().map(Schedule::describe).collect(),
        events: d.triggers.events.clone(),
        label: p.version.clone(),
    }
}

/// Computes the shape hash of a definition (FNV-1a over its snapshot's JSON, so the
/// value is stable across builds and platforms).
pub(crate) fn version_hash(d: &DefInner) -> String {
    let mut snap = snapshot_of(d);
    snap.version.clear();
    // Triggers decide when executions start, not how they run: changing a
    // schedule must not strand the executions already running.
    snap.schedules.clear();
    snap.events.clear();
    let json = serde_json::to_vec(&snap).unwrap_or_default();
    let mut h = Fnv1a::default();
    json.hash(&mut h);
    format!("{:016x}", h.finish())
}

struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
