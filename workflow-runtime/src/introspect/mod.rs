//! Introspection: a workflow described as data ([`summary`], [`report`],
//! [`workflow_info`]) and drawn ([`to_mermaid`], [`to_dot`], [`to_table`]).
//!
//! Every function here works on a [`DefinitionSnapshot`], the code-free description
//! of a definition (`def.snapshot()`, or what a store keeps), so tools can show a
//! workflow without its code. The [`Engine`](crate::Engine) has methods of the same
//! names that take a registered workflow's name, and that look up an execution to
//! colour a diagram by its state.
//!
//! How dependencies count:
//! - `after` and `after_group` (every step of the group) and `after_graft` (the
//!   graft step itself; the steps it adds are known only at run time) make a step
//!   wait for all of them.
//! - `after_any` makes a step wait for the first of them: in the execution order it
//!   sits one layer after the earliest, and on the critical path it starts when the
//!   first of them can have ended.
//! - The critical path adds each step's timeout once (one attempt; retries and
//!   their delays are not counted). A step whose timeout is `infinity` or a
//!   function of the context makes the total unbounded (`None`).
//!
//! ```
//! use sagaflow_runtime::introspect::DiagramOptions;
//! use sagaflow_runtime::{Context, Outcome, Step, StepResult, Workflow, introspect};
//!
//! async fn noop(_ctx: Context) -> StepResult { Ok(Outcome::Done) }
//!
//! let def = Workflow::new("data_export")
//!     .step("fetch_data", noop)
//!     .step_with("upload_s3", noop, Step::opts().after("fetch_data").group("uploads"))
//!     .step_with("upload_gcs", noop, Step::opts().after("fetch_data").group("uploads"))
//!     .step_with("notify", noop, Step::opts().after_group("uploads"))
//!     .build()?;
//! let snapshot = def.snapshot();
//! assert_eq!(introspect::report(&snapshot).execution_order.len(), 3);
//! let chart = introspect::to_mermaid(&snapshot, &DiagramOptions::new().show_groups(true));
//! assert!(chart.contains("  subgraph uploads[\"Uploads\"]\n"));
//! # Ok::<(), sagaflow_runtime::BuildError>(())
//! ```

mod diagram;
mod dot;
pub(crate) mod graph;
mod journal;
mod mermaid;
mod options;
mod summary;
mod table;

pub use self::dot::to_dot;
pub use self::journal::{JournalStep, StoredView, TimelineEntry};
pub use self::mermaid::to_mermaid;
pub use self::options::{DiagramOptions, Direction, StateClass};
pub use self::summary::{Report, Summary, TriggerType, WorkflowInfo, report, summary, workflow_info};
pub use self::table::to_table;
pub use crate::model::DefinitionSnapshot;

/// A step or group name as people read it: words split at `_`, `-` and spaces,
/// each capitalized (`validate_order` → "Validate Order"). Works for any script;
/// a name with no letters to split stays as it is.
///
/// ```
/// use sagaflow_runtime::introspect::humanize;
///
/// assert_eq!(humanize("validate_order"), "Validate Order");
/// assert_eq!(humanize("send-sms"), "Send Sms");
/// assert_eq!(humanize("überprüfen_bestellung"), "Überprüfen Bestellung");
/// assert_eq!(humanize("__"), "__");
/// ```
pub fn humanize(name: &str) -> String {
    let words: Vec<String> = name
        .split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect();
    if words.is_empty() { name.to_owned() } else { words.join(" ") }
}

#[cfg(test)]
mod tests;
