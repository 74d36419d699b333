//! Why an execution is parked: kept in the store untouched, shown by
//! `get_state` with the reason, run by nobody, instead of being rebuilt from its
//! journal (see `engine::recovery`).

use super::EngineError;
use crate::machine::TransitionError;
use crate::store::StoreError;

/// Why an execution's journal cannot be replayed onto a definition.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ParkReason {
    /// No definition of its workflow is registered.
    #[error("workflow `{workflow}` is not registered; register it and restart to resume this execution")]
    NotRegistered { workflow: String },
    /// The snapshot of the version it started with could not be read.
    #[error("the definition it started with cannot be read: {0}")]
    SnapshotUnreadable(StoreError),
    /// Its workflow changed, and the store has no snapshot of the old version.
    #[error(
        "workflow `{workflow}` changed since this execution started (version {then} then, {now} now), and the store \
         has no snapshot of version {then} to compare with; register that version again to resume it"
    )]
    NoSnapshot { workflow: String, then: String, now: String },
    /// Its workflow changed in ways the execution cannot continue on.
    #[error(
        "workflow `{workflow}` changed since this execution started (version {then} then, {now} now) and the \
         execution cannot continue on the new definition: {}; register a definition in which every step of \
         version {then} is unchanged to resume it",
        problems.join("; ")
    )]
    Incompatible { workflow: String, then: String, now: String, problems: Vec<String> },
    /// This node cannot look its workflow up (a remote view).
    #[error("{0}")]
    Definition(Box<EngineError>),
    /// A node holds a version of the workflow this one does not (a remote view).
    #[error("it runs version {then} of `{workflow}`, this node has {now}")]
    OtherVersion { workflow: String, then: String, now: String },
    /// A journal entry is not an event.
    #[error("journal entry {seq} cannot be read: {reason}")]
    Unreadable { seq: u64, reason: serde_json::Error },
    /// A journal entry names a step the new definition lacks.
    #[error("journal entry {seq}: step {step} has no counterpart in the new definition")]
    NoCounterpart { seq: u64, step: u32 },
    /// A journal entry could not be written back after its steps were renumbered.
    #[error("journal entry {seq} cannot be rewritten: {reason}")]
    Unwritable { seq: u64, reason: serde_json::Error },
    /// A journal entry contradicts the state its predecessors built.
    #[error("journal entry {seq} does not apply: {reason}")]
    DoesNotApply { seq: u64, reason: TransitionError },
    /// The rebuilt machine refused to recover.
    #[error("cannot resume: {0}")]
    CannotResume(TransitionError),
    /// A journal says a step expanded that is not a graft.
    #[error("step {step} expanded but is not a graft")]
    NotAGraft { step: u32 },
    /// A graft function gave something else than steps when run again.
    #[error("graft `{graft}` did not expand again during recovery: {got}")]
    GraftDidNotExpand { graft: String, got: String },
    /// A graft function panicked when run again.
    #[error("graft `{graft}` panicked while expanding again during recovery: {message}")]
    GraftPanicked { graft: String, message: String },
    /// A graft function's steps, run again, are not valid steps.
    #[error("graft `{graft}` produced invalid steps during recovery")]
    GraftInvalid { graft: String },
    /// A graft function, run again, no longer adds a step it added before.
    #[error("graft `{graft}` no longer adds step `{step}`")]
    GraftLostStep { graft: String, step: String },
}
