//! Which steps a restart from a step keeps: pure planning over a definition's
//! snapshot and the ended execution's final state, shared by the engine
//! ([`Engine::restart_from`](crate::Engine::restart_from)) and the tools that
//! write a restart to a shared store.
//!
//! The steps that run again are the named step and every step that depends on
//! it, directly or not; grafts, and the steps after them, always run again (the
//! steps a graft adds are known only once it ran). Every other declared step that
//! completed in the ended execution is kept, with the output it recorded.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::execution::ExecutionState;
use crate::model::status::StepStatus;
use crate::model::{DefinitionSnapshot, StepKindName};

/// A step that an execution restarted from a step of another begins with
/// completed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeptStep {
    /// The step's name.
    pub step: String,
    /// What it returned (`None`: nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// The workflow declares no step named `from`; the names it declares.
#[derive(Debug)]
pub(crate) struct NoSuchStep {
    pub(crate) known: Vec<String>,
}

/// The steps of `ended` a restart from `from` on `current` keeps.
pub(crate) fn kept_steps(
    current: &DefinitionSnapshot,
    from: &str,
    ended: &ExecutionState,
) -> Result<Vec<KeptStep>, NoSuchStep> {
    let names: Vec<&str> = current.steps.iter().map(|s| s.name.as_str()).collect();
    if !names.contains(&from) {
        return Err(NoSuchStep { known: names.iter().map(|n| n.to_string()).collect() });
    }
    // Who waits on whom, from the dependencies as declared.
    let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in &current.steps {
        let d = &s.declared;
        let groups = d.after_group.iter().flat_map(|g| current.groups.get(g).into_iter().flatten());
        for on in d.after.iter().chain(&d.after_any).chain(&d.after_graft).chain(groups) {
            dependents.entry(on.as_str()).or_default().push(s.name.as_str());
        }
    }
    let mut again = BTreeSet::new();
    let mut work: Vec<&str> = std::iter::once(from)
        .chain(current.steps.iter().filter(|s| s.kind == StepKindName::Graft).map(|s| s.name.as_str()))
        .collect();
    while let Some(s) = work.pop() {
        if again.insert(s) {
            work.extend(dependents.get(s).into_iter().flatten().copied());
        }
    }
    Ok(current
        .steps
        .iter()
        .filter(|s| !again.contains(s.name.as_str()))
        .filter(|s| ended.step(&s.name).is_some_and(|o| o.status == StepStatus::Completed && o.graft.is_none()))
        .map(|s| KeptStep { step: s.name.clone(), output: ended.outputs.get(&s.name).cloned() })
        .collect())
}
