//! Validating a [`Workflow`] into a [`WorkflowDef`]: names, groups,
//! dependencies, cycles, then each step's options against its workflow's
//! defaults, each problem a [`BuildError`] naming its step and option.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};
use sagaflow_rules::breaker::BreakerUses;

use super::{BuildError, PendingKind, Workflow, suggest};
use crate::model::def::{Declared, DefInner, QueryFn, StepKind, version_hash};
use crate::model::defaults;
use crate::model::duration::{DurationArg, Timeout};
use crate::model::ids::StepId;
use crate::model::options::StepPolicy;
use crate::model::policy::{PolicyError, resolve_limit_options, resolve_step_policy};
use crate::model::retry::RetryPolicy;
use crate::model::step::StepOptions;
use crate::model::{StepDef, WorkflowDef, WorkflowPolicy};

/// A step's dependencies: the steps it runs after all of, and after any of.
type Deps = (Vec<StepId>, Vec<StepId>);

pub(super) struct Validator {
    wf: Workflow,
}

impl Validator {
    pub(super) fn new(wf: Workflow) -> Self {
        Validator { wf }
    }

    fn invalid(&self, step: Option<&str>, option: &'static str, reason: impl fmt::Display) -> BuildError {
        BuildError::InvalidOption {
            workflow: self.wf.name.clone(),
            step: step.map(str::to_owned),
            option,
            reason: reason.to_string(),
        }
    }

    fn conflict(&self, step: Option<&str>, reason: impl Into<String>) -> BuildError {
        BuildError::ConflictingOptions {
            workflow: self.wf.name.clone(),
            step: step.map(str::to_owned),
            reason: reason.into(),
        }
    }

    pub(super) fn run(self) -> Result<WorkflowDef, BuildError> {
        let workflow = self.wf.name.clone();
        if workflow.trim().is_empty() {
            return Err(BuildError::EmptyName);
        }
        if self.wf.steps.is_empty() {
            return Err(BuildError::EmptyWorkflow { workflow });
        }
        let policy = self.workflow_policy()?;
        if self.wf.triggers.events.iter().any(|e| e.trim().is_empty()) {
            return Err(self.invalid(None, "on_event", "an event name cannot be empty"));
        }
        let by_name = self.names()?;
        let groups = self.groups();
        let deps = self.dependencies(&by_name, &groups)?;
        self.check_acyclic(&deps)?;
        let steps = self.steps(&policy, deps)?;
        let (dependents, roots) = dependents(&steps);
        let queries = self.queries()?;
        let mut inner = DefInner {
            name: Arc::from(workflow.as_str()),
            policy,
            steps,
            by_name,
            groups,
            dependents,
            roots,
            triggers: self.wf.triggers.clone(),
            version: String::new(),
            queries,
        };
        inner.version = version_hash(&inner);
        Ok(WorkflowDef { inner: Arc::new(inner) })
    }

    /// The step names: none empty, none twice.
    fn names(&self) -> Result<HashMap<Arc<str>, StepId>, BuildError> {
        let mut by_name: HashMap<Arc<str>, StepId> = HashMap::new();
        for (i, s) in self.wf.steps.iter().enumerate() {
            if s.name.trim().is_empty() {
                return Err(BuildError::EmptyStepName { workflow: self.wf.name.clone() });
            }
            if by_name.insert(Arc::from(s.name.as_str()), i as StepId).is_some() {
                return Err(BuildError::DuplicateStep { workflow: self.wf.name.clone(), step: s.name.clone() });
            }
        }
        Ok(by_name)
    }

    /// The members of each group, in declaration order.
    fn groups(&self) -> BTreeMap<String, Vec<StepId>> {
        let mut groups: BTreeMap<String, Vec<StepId>> = BTreeMap::new();
        for (i, s) in self.wf.steps.iter().enumerate() {
            if let Some(g) = &s.options.group {
                groups.entry(g.clone()).or_default().push(i as StepId);
            }
        }
        groups
    }

    /// Each step's dependencies, every name they give resolved.
    fn dependencies(
        &self,
        by_name: &HashMap<Arc<str>, StepId>,
        groups: &BTreeMap<String, Vec<StepId>>,
    ) -> Result<Vec<Deps>, BuildError> {
        let workflow = &self.wf.name;
        let names: Vec<&str> = self.wf.steps.iter().map(|s| s.name.as_str()).collect();
        let mut deps: Vec<Deps> = Vec::with_capacity(names.len());
        for s in &self.wf.steps {
            let o = &s.options;
            let lookup = |option: &'static str, name: &String| -> Result<StepId, BuildError> {
                by_name.get(name.as_str()).copied().ok_or_else(|| BuildError::UnknownStep {
                    workflow: workflow.clone(),
                    step: s.name.clone(),
                    option,
                    name: name.clone(),
                    suggestion: suggest(name, names.iter().copied()),
                })
            };
            let mut all = Vec::new();
            for n in &o.after {
                all.push(lookup("after", n)?);
            }
            for g in &o.after_group {
                let members = groups.get(g).ok_or_else(|| BuildError::UnknownGroup {
                    workflow: workflow.clone(),
                    step: s.name.clone(),
                    group: g.clone(),
                    suggestion: suggest(g, groups.keys().map(String::as_str)),
                })?;
                all.extend(members.iter().copied());
            }
            for n in &o.after_graft {
                let id = lookup("after_graft", n)?;
                if !matches!(self.wf.steps[id as usize].kind, PendingKind::Graft(_)) {
                    return Err(BuildError::NotAGraft {
                        workflow: workflow.clone(),
                        step: s.name.clone(),
                        name: n.clone(),
                    });
                }
                all.push(id);
            }
            let mut any = Vec::new();
            for n in &o.after_any {
                any.push(lookup("after_any", n)?);
            }
            dedup(&mut all);
            dedup(&mut any);
            if let Some(both) = o.after.iter().find(|n| o.after_any.contains(n)) {
                return Err(self.conflict(Some(&s.name), format!("`{both}` is in both `after` and `after_any`")));
            }
            deps.push((all, any));
        }
        Ok(deps)
    }

    /// No step depends on itself, however indirectly.
    fn check_acyclic(&self, deps: &[Deps]) -> Result<(), BuildError> {
        let names: Vec<&str> = self.wf.steps.iter().map(|s| s.name.as_str()).collect();
        let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(names.len(), names.len());
        let nodes: Vec<NodeIndex> = (0..names.len()).map(|_| graph.add_node(())).collect();
        for (i, (all, any)) in deps.iter().enumerate() {
            for &d in all.iter().chain(any) {
                graph.add_edge(nodes[d as usize], nodes[i], ());
            }
        }
        if let Err(cycle) = petgraph::algo::toposort(&graph, None) {
            let path = cycle_path(&graph, cycle.node_id()).into_iter().map(|n| names[n.index()].to_owned()).collect();
            return Err(BuildError::Cycle { workflow: self.wf.name.clone(), path });
        }
        Ok(())
    }

    /// Each step with its resolved policy: steps that share a circuit breaker
    /// give it the same options.
    fn steps(&self, policy: &WorkflowPolicy, deps: Vec<Deps>) -> Result<Vec<StepDef>, BuildError> {
        let mut steps = Vec::with_capacity(deps.len());
        let mut breakers: BreakerUses<crate::model::BreakerOptions, ()> = BreakerUses::new();
        for (s, (all, any)) in self.wf.steps.iter().zip(deps) {
            let step_policy = self.step_policy(&s.name, &s.options, policy)?;
            if let Some((name, opts)) = &step_policy.circuit_breaker
                && breakers.give(name, opts.clone(), ()).is_err()
            {
                return Err(self.conflict(
                    Some(&s.name),
                    format!("circuit breaker `{name}` is given different options by two steps"),
                ));
            }
            let kind = match &s.kind {
                PendingKind::Task(b) => StepKind::Task(b.clone()),
                PendingKind::Graft(b) => StepKind::Graft(b.clone()),
                PendingKind::Workflow { workflow: child, input } => {
                    if child.trim().is_empty() {
                        return Err(self.invalid(Some(&s.name), "workflow", "the nested workflow name is empty"));
                    }
                    StepKind::Workflow { workflow: Arc::from(child.as_str()), input: input.clone() }
                }
            };
            steps.push(StepDef {
                name: Arc::from(s.name.as_str()),
                kind,
                policy: Arc::new(step_policy),
                all,
                any,
                declared: Declared {
                    after: s.options.after.clone(),
                    after_any: s.options.after_any.clone(),
                    after_group: s.options.after_group.clone(),
                    after_graft: s.options.after_graft.clone(),
                },
            });
        }
        Ok(steps)
    }

    /// The queries by name: none empty, none twice.
    fn queries(&self) -> Result<BTreeMap<Arc<str>, QueryFn>, BuildError> {
        let mut queries = BTreeMap::new();
        for (name, query) in &self.wf.queries {
            if name.trim().is_empty() {
                return Err(self.invalid(None, "query", "a query name cannot be empty"));
            }
            if queries.insert(Arc::from(name.as_str()), Arc::clone(query)).is_some() {
                return Err(BuildError::DuplicateQuery { workflow: self.wf.name.clone(), query: name.clone() });
            }
        }
        Ok(queries)
    }

    fn workflow_policy(&self) -> Result<WorkflowPolicy, BuildError> {
        let wf = &self.wf;
        let dur =
            |option: &'static str, arg: &Option<DurationArg>| -> Result<Option<std::time::Duration>, BuildError> {
                arg.as_ref().map(|a| a.to_duration().map_err(|e| self.invalid(None, option, e))).transpose()
            };
        let timeout = match &wf.timeout {
            None => None,
            Some(a) => match a.to_timeout().map_err(|e| self.invalid(None, "timeout", e))? {
                Timeout::After(d) => Some(d),
                Timeout::Infinity => None,
                Timeout::Dynamic(_) => {
                    return Err(self.invalid(None, "timeout", "a workflow timeout cannot be a function"));
                }
            },
        };
        let step_timeout = match &wf.step_timeout {
            None => Timeout::After(defaults::STEP_TIMEOUT),
            Some(a) => a.to_timeout().map_err(|e| self.invalid(None, "step_timeout", e))?,
        };
        if wf.step_concurrency == Some(0) {
            return Err(self.invalid(None, "step_concurrency", "must be at least 1"));
        }
        if wf.dead_letter_ttl.is_some() && !wf.dead_letter {
            return Err(self.conflict(None, "`dead_letter_ttl` is set but `dead_letter` is off"));
        }
        let retention = dur("retention", &wf.retention)?;
        if retention == Some(std::time::Duration::ZERO) {
            return Err(self.invalid(
                None,
                "retention",
                "must be longer than zero (leave it unset to keep executions)",
            ));
        }
        let limits = resolve_limit_options(wf.concurrency, &wf.concurrency_key, &wf.rate_limit, &wf.rate_limit_key)
            .map_err(|e| match e {
                PolicyError::Invalid(option, reason) => self.invalid(None, option, reason),
                PolicyError::Conflict(reason) => self.conflict(None, reason),
            })?;
        if wf.max_retries.unwrap_or(0) == 0
            && (wf.retry_delay.is_some() || wf.retry_backoff.is_some() || wf.retry_max_delay.is_some())
        {
            return Err(self.conflict(None, "`retry_delay`/`retry_backoff` are set but `max_retries` is 0"));
        }
        Ok(WorkflowPolicy {
            timeout,
            retry: RetryPolicy {
                max_retries: wf.max_retries.unwrap_or(0),
                delay: dur("retry_delay", &wf.retry_delay)?.unwrap_or(defaults::RETRY_DELAY),
                backoff: wf.retry_backoff.clone().unwrap_or_default(),
                max_delay: dur("retry_max_delay", &wf.retry_max_delay)?.unwrap_or(defaults::RETRY_MAX_DELAY),
                jitter: false,
                retry_on: Vec::new(),
                no_retry_on: Vec::new(),
            },
            step_timeout,
            step_max_retries: wf.step_max_retries.unwrap_or(defaults::MAX_RETRIES),
            step_retry_delay: dur("step_retry_delay", &wf.step_retry_delay)?.unwrap_or(defaults::RETRY_DELAY),
            on_failure: wf.on_failure.clone(),
            on_success: wf.on_success.clone(),
            on_cancel: wf.on_cancel.clone(),
            on_step_error: wf.on_step_error.clone(),
            dead_letter: wf.dead_letter,
            dead_letter_ttl: dur("dead_letter_ttl", &wf.dead_letter_ttl)?.unwrap_or(defaults::DEAD_LETTER_TTL),
            retention,
            tags: wf.tags.clone(),
            metadata: wf.metadata.clone(),
            step_concurrency: wf.step_concurrency,
            limits,
            description: wf.description.clone(),
            version: wf.version.clone(),
        })
    }

    fn step_policy(&self, step: &str, o: &StepOptions, wf: &WorkflowPolicy) -> Result<StepPolicy, BuildError> {
        resolve_step_policy(o, wf).map_err(|e| match e {
            PolicyError::Invalid(option, reason) => self.invalid(Some(step), option, reason),
            PolicyError::Conflict(reason) => self.conflict(Some(step), reason),
        })
    }
}

/// Each step's dependents (`true`: it runs after any of its dependencies), and
/// the steps that depend on none.
fn dependents(steps: &[StepDef]) -> (Vec<Vec<(StepId, bool)>>, Vec<StepId>) {
    let mut dependents: Vec<Vec<(StepId, bool)>> = vec![Vec::new(); steps.len()];
    let mut roots = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        for &d in &s.all {
            dependents[d as usize].push((i as StepId, false));
        }
        for &d in &s.any {
            dependents[d as usize].push((i as StepId, true));
        }
        if s.all.is_empty() && s.any.is_empty() {
            roots.push(i as StepId);
        }
    }
    (dependents, roots)
}

fn dedup(v: &mut Vec<StepId>) {
    let mut seen = HashSet::new();
    v.retain(|x| seen.insert(*x));
}

/// A cycle through `start`: the path from `start` back to itself, `start` repeated
/// at the end.
fn cycle_path(graph: &DiGraph<(), ()>, start: NodeIndex) -> Vec<NodeIndex> {
    let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for next in graph.neighbors(n) {
            if next == start {
                let mut path = vec![start];
                let mut cur = n;
                while cur != start {
                    path.push(cur);
                    cur = parent[&cur];
                }
                path.push(start);
                let last = path.len() - 1;
                path[1..last].reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = parent.entry(next) {
                e.insert(n);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
mod tests {
    use crate::builder::{BuildError, Workflow};
    use crate::model::{Context, Outcome, Step, StepResult};

    async fn noop(_ctx: Context) -> StepResult {
        Ok(Outcome::Done)
    }

    #[test]
    fn cycle_path_lists_the_loop() {
        let err = Workflow::new("w")
            .step_with("a", noop, Step::opts().after("c"))
            .step_with("b", noop, Step::opts().after("a"))
            .step_with("c", noop, Step::opts().after("b"))
            .build()
            .unwrap_err();
        let BuildError::Cycle { path, .. } = &err else { panic!("{err}") };
        assert_eq!(path.len(), 4);
        assert_eq!(path.first(), path.last());
        assert!(err.to_string().starts_with("cycle in workflow `w`: "), "{err}");
        // Each consecutive pair is an edge `x -> y` meaning y runs after x.
        let msg = err.to_string();
        assert!(["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"].iter().any(|p| msg.ends_with(p)), "{msg}");
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let err = Workflow::new("w").step_with("a", noop, Step::opts().after("a")).build().unwrap_err();
        assert_eq!(err.to_string(), "cycle in workflow `w`: a -> a");
    }
}
