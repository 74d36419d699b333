//! [`Summary`], [`Report`] and [`WorkflowInfo`]: a definition described as data.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::graph::Graph;
use crate::model::{DefinitionSnapshot, StepKindName, StepSnapshot, parse_duration};

/// How executions of a workflow usually start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TriggerType {
    /// Only by `engine.start` (or as a nested workflow).
    Manual,
    /// By a schedule (cron, interval, one-time).
    Scheduled,
    /// By `engine.emit` of an event it subscribes to.
    Event,
}

impl TriggerType {
    /// Of a definition: `scheduled` if it has a schedule, else `event` if it
    /// subscribes to events, else `manual`.
    pub fn of(def: &DefinitionSnapshot) -> Self {
        if !def.schedules.is_empty() {
            TriggerType::Scheduled
        } else if !def.events.is_empty() {
            TriggerType::Event
        } else {
            TriggerType::Manual
        }
    }

    /// `manual`, `scheduled` or `event`.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerType::Manual => "manual",
            TriggerType::Scheduled => "scheduled",
            TriggerType::Event => "event",
        }
    }
}

impl fmt::Display for TriggerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for TriggerType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Serde for `Option<Duration>` as milliseconds or `null`.
mod opt_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// A workflow at a glance, as `summary` returns it. Durations serialize as
/// milliseconds.
///
/// ```
/// use sagaflow_runtime::{Context, Outcome, Step, StepResult, Workflow, introspect};
///
/// async fn noop(_ctx: Context) -> StepResult { Ok(Outcome::Done) }
///
/// let def = Workflow::new("orders")
///     .step_with("validate", noop, Step::opts().timeout("10s"))
///     .step_with("charge", noop,
///         Step::opts().after("validate").timeout("30s").rollback(noop))
///     .tags(["shop"])
///     .build()?;
/// let summary = introspect::summary(&def.snapshot());
/// assert_eq!(summary.steps, 2);
/// assert!(summary.has_rollback);
/// assert_eq!(summary.estimated_timeout, Some(std::time::Duration::from_secs(40)));
/// assert_eq!(serde_json::to_value(&summary)?["estimated_timeout"], 40_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Summary {
    /// Name.
    pub name: String,
    /// The definition's shape hash.
    pub version: String,
    /// The user's version label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Number of steps.
    pub steps: usize,
    /// Number of parallel groups.
    pub parallel_groups: usize,
    /// Number of graft steps.
    pub grafts: usize,
    /// Number of nested-workflow steps.
    pub nested_workflows: usize,
    /// Whether any step has a rollback.
    pub has_rollback: bool,
    /// The longest an execution can run before timeouts stop it: the critical
    /// path's total timeout, capped by the workflow's own timeout. `None` when
    /// neither bounds it (a step without a fixed timeout on the critical path and
    /// no workflow timeout).
    #[serde(with = "opt_ms")]
    pub estimated_timeout: Option<Duration>,
    /// How executions usually start.
    pub trigger: TriggerType,
    /// Schedules, described.
    pub schedules: Vec<String>,
    /// Events that start it.
    pub events: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
}

/// A workflow in detail, as `report` returns it. Durations serialize as
/// milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// Name.
    pub name: String,
    /// The definition's shape hash.
    pub version: String,
    /// The user's version label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Every step with its options, in declaration order.
    pub steps: Vec<StepSnapshot>,
    /// The execution order as parallel layers: the steps of one layer can run at
    /// the same time, each once every layer before it is done (see
    /// [`introspect`](super) for `after_any`).
    pub execution_order: Vec<Vec<String>>,
    /// Parallel groups and their steps.
    pub parallel_groups: BTreeMap<String, Vec<String>>,
    /// Graft steps (they add steps at run time).
    pub grafts: Vec<String>,
    /// Nested-workflow steps and the workflow each runs.
    pub nested_workflows: BTreeMap<String, String>,
    /// Steps with a rollback, and its name.
    pub rollbacks: BTreeMap<String, String>,
    /// The chain of steps whose timeouts add up to the longest run, first step
    /// first (one attempt each; retries not counted).
    pub critical_path: Vec<String>,
    /// The sum of the timeouts on the critical path; `None` when a step on it has
    /// no fixed timeout (`infinity` or a function of the context).
    #[serde(with = "opt_ms")]
    pub total_timeout: Option<Duration>,
    /// The workflow's own timeout, if any.
    #[serde(with = "opt_ms")]
    pub workflow_timeout: Option<Duration>,
    /// `total_timeout` capped by `workflow_timeout` (see [`Summary::estimated_timeout`]).
    #[serde(with = "opt_ms")]
    pub estimated_timeout: Option<Duration>,
    /// Workflow-level retries.
    pub max_retries: u32,
    /// Handlers that are set (`on_failure`, ...) and their names.
    pub handlers: BTreeMap<String, String>,
    /// Whether failed executions are kept as dead letters.
    pub dead_letter: bool,
    /// How executions usually start.
    pub trigger: TriggerType,
    /// Schedules, described.
    pub schedules: Vec<String>,
    /// Events that start it.
    pub events: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub metadata: Map<String, Value>,
}

/// One registered workflow, as `list_all` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkflowInfo {
    /// Name.
    pub name: String,
    /// Number of steps.
    pub steps: usize,
    /// How executions usually start.
    pub trigger_type: TriggerType,
    /// Schedules, described.
    pub schedules: Vec<String>,
    /// Events that start it.
    pub events: Vec<String>,
    /// The definition's shape hash.
    pub version: String,
    /// The user's version label, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Executions of it that have not ended, on this engine.
    pub running: usize,
}

fn workflow_timeout(def: &DefinitionSnapshot) -> Option<Duration> {
    def.timeout.as_deref().and_then(|t| parse_duration(t).ok().flatten())
}

fn estimated(total: Option<Duration>, workflow: Option<Duration>) -> Option<Duration> {
    match (total, workflow) {
        (Some(t), Some(w)) => Some(t.min(w)),
        (t, w) => t.or(w),
    }
}

fn count_kind(def: &DefinitionSnapshot, kind: StepKindName) -> usize {
    def.steps.iter().filter(|s| s.kind == kind).count()
}

/// Describes a definition at a glance (see [`Summary`]).
pub fn summary(def: &DefinitionSnapshot) -> Summary {
    let (_, total) = Graph::new(def).critical_path();
    Summary {
        name: def.name.clone(),
        version: def.version.clone(),
        label: def.label.clone(),
        steps: def.steps.len(),
        parallel_groups: def.groups.len(),
        grafts: count_kind(def, StepKindName::Graft),
        nested_workflows: count_kind(def, StepKindName::Workflow),
        has_rollback: def.steps.iter().any(|s| s.rollback.is_some()),
        estimated_timeout: estimated(total.bound(), workflow_timeout(def)),
        trigger: TriggerType::of(def),
        schedules: def.schedules.clone(),
        events: def.events.clone(),
        tags: def.tags.clone(),
    }
}

/// Describes a definition in detail: execution order, critical path, timeouts
/// (see [`Report`]).
///
/// ```
/// use std::time::Duration;
/// use sagaflow_runtime::{Context, Outcome, Step, StepResult, Workflow, introspect};
///
/// async fn noop(_ctx: Context) -> StepResult { Ok(Outcome::Done) }
///
/// let def = Workflow::new("diamond")
///     .step_with("a", noop, Step::opts().timeout("1s"))
///     .step_with("b", noop, Step::opts().after("a").timeout("10s"))
///     .step_with("c", noop, Step::opts().after("a").timeout("3s"))
///     .step_with("d", noop, Step::opts().after(["b", "c"]).timeout("2s"))
///     .build()?;
/// let report = introspect::report(&def.snapshot());
/// assert_eq!(report.execution_order, [vec!["a"], vec!["b", "c"], vec!["d"]]);
/// assert_eq!(report.critical_path, ["a", "b", "d"]);
/// assert_eq!(report.total_timeout, Some(Duration::from_secs(13)));
/// # Ok::<(), sagaflow_runtime::BuildError>(())
/// ```
pub fn report(def: &DefinitionSnapshot) -> Report {
    let graph = Graph::new(def);
    let (path, total) = graph.critical_path();
    let names = |ids: &[usize]| ids.iter().map(|&i| graph.name(i).to_owned()).collect::<Vec<_>>();
    let workflow = workflow_timeout(def);
    Report {
        name: def.name.clone(),
        version: def.version.clone(),
        label: def.label.clone(),
        steps: def.steps.clone(),
        execution_order: graph.layers().iter().map(|l| names(l)).collect(),
        parallel_groups: def.groups.clone(),
        grafts: def.steps.iter().filter(|s| s.kind == StepKindName::Graft).map(|s| s.name.clone()).collect(),
        nested_workflows: def
            .steps
            .iter()
            .filter_map(|s| s.workflow.as_ref().map(|w| (s.name.clone(), w.clone())))
            .collect(),
        rollbacks: def.steps.iter().filter_map(|s| s.rollback.as_ref().map(|r| (s.name.clone(), r.clone()))).collect(),
        critical_path: names(&path),
        total_timeout: total.bound(),
        workflow_timeout: workflow,
        estimated_timeout: estimated(total.bound(), workflow),
        max_retries: def.max_retries,
        handlers: def.handlers.clone(),
        dead_letter: def.dead_letter,
        trigger: TriggerType::of(def),
        schedules: def.schedules.clone(),
        events: def.events.clone(),
        tags: def.tags.clone(),
        metadata: def.metadata.clone(),
    }
}

/// The [`WorkflowInfo`] of a definition with `running` live executions.
pub fn workflow_info(def: &DefinitionSnapshot, running: usize) -> WorkflowInfo {
    WorkflowInfo {
        name: def.name.clone(),
        steps: def.steps.len(),
        trigger_type: TriggerType::of(def),
        schedules: def.schedules.clone(),
        events: def.events.clone(),
        version: def.version.clone(),
        label: def.label.clone(),
        tags: def.tags.clone(),
        running,
    }
}
