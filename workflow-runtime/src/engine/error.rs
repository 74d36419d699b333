//! [`EngineError`].

use crate::builder::BuildError;
use crate::model::ExecutionId;
use crate::model::status::Status;
use crate::store::StoreError;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No workflow of that name is registered.
    #[error("unknown workflow `{name}`{}; registered workflows: {}", did_you_mean(.suggestion), list(.known))]
    UnknownWorkflow {
        /// The name asked for.
        name: String,
        /// The closest registered name.
        suggestion: Option<String>,
        /// Every registered name.
        known: Vec<String>,
    },
    /// A nested-workflow step refers to a workflow that is not registered.
    #[error("step `{step}` of workflow `{workflow}` runs workflow `{child}`, which is not registered{}", did_you_mean(.suggestion))]
    UnknownChildWorkflow {
        /// The parent workflow.
        workflow: String,
        /// The nested-workflow step.
        step: String,
        /// The missing workflow.
        child: String,
        /// The closest registered name.
        suggestion: Option<String>,
    },
    /// Two workflows share a name.
    #[error("workflow `{0}` is registered twice")]
    DuplicateWorkflow(String),
    /// Two `#[workflow]` types (in two modules or crates) registered the same name with
    /// `inventory`.
    #[error("workflow `{name}` is registered twice: in `{first}` and in `{second}`")]
    DuplicateRegistration {
        /// The name.
        name: String,
        /// Module of one registration.
        first: String,
        /// Module of the other.
        second: String,
    },
    /// Two workflows give a circuit breaker different options.
    #[error("circuit breaker `{breaker}` has different options in workflows `{first}` and `{second}`")]
    ConflictingBreaker {
        /// The breaker.
        breaker: String,
        /// One workflow.
        first: String,
        /// The other.
        second: String,
    },
    /// No execution with that id.
    #[error("unknown execution {0}")]
    UnknownExecution(ExecutionId),
    /// The call does not fit the execution's state (pausing a paused execution...).
    #[error("cannot {action} execution {id}: {reason}")]
    InvalidState {
        /// The execution.
        id: ExecutionId,
        /// What was attempted (`pause`, `resume`, `cancel`).
        action: &'static str,
        /// Its status.
        status: Status,
        /// Why not.
        reason: String,
    },
    /// The input is not a JSON object.
    #[error("invalid input for workflow `{workflow}`: {reason}")]
    InvalidInput {
        /// The workflow.
        workflow: String,
        /// Why.
        reason: String,
    },
    /// A store URL the engine cannot open.
    #[error("unsupported store URL `{url}`: expected one of {supported}")]
    UnsupportedStore {
        /// The URL.
        url: String,
        /// The accepted forms.
        supported: &'static str,
    },
    /// A workflow definition is invalid.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine has been shut down.
    #[error("the engine has been shut down")]
    ShutDown,
    /// An acknowledged call did not complete within the engine's call timeout
    /// (see [`EngineBuilder::call_timeout`](crate::EngineBuilder::call_timeout)):
    /// the store did not commit its write, or the node holding the execution did
    /// not carry it out, in time. What it asked for may still happen.
    #[error("{action} did not complete within {}", crate::model::format_duration(*.after))]
    Timeout {
        /// What was attempted (`start`, `cancel`, ...).
        action: &'static str,
        /// The timeout.
        after: std::time::Duration,
    },
    /// On a shared store: another node holds the execution now (this node's
    /// claim on it lapsed); the call did not take effect here.
    #[error("execution {0} is held by another node now; the call did not take effect")]
    NotHeld(ExecutionId),
    /// A signal that cannot be sent as given.
    #[error("cannot send signal `{name}` to execution {id}: {reason}")]
    InvalidSignal {
        /// The execution.
        id: ExecutionId,
        /// The signal's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The workflow has no query of that name.
    #[error("workflow `{workflow}` has no query `{name}`{}; its queries: {}", did_you_mean(.suggestion), list(.known))]
    UnknownQuery {
        /// The workflow.
        workflow: String,
        /// The name asked for.
        name: String,
        /// The closest query name.
        suggestion: Option<String>,
        /// Every query of the workflow.
        known: Vec<String>,
    },
    /// A query function failed (it panicked, or its answer does not serialize or
    /// does not fit the type asked for).
    #[error("query `{name}` of workflow `{workflow}` failed: {reason}")]
    QueryFailed {
        /// The workflow.
        workflow: String,
        /// The query.
        name: String,
        /// Why.
        reason: String,
    },
    /// The store is open read-only: an engine needs one it can write.
    #[error("the store is open read-only ({store}): an engine needs a store it can write")]
    ReadOnlyStore {
        /// The store.
        store: String,
    },
    /// The workflow declares no step of that name.
    #[error("workflow `{workflow}` has no step `{step}`{}; its steps: {}", did_you_mean(.suggestion), list(.known))]
    UnknownStep {
        /// The workflow.
        workflow: String,
        /// The name asked for.
        step: String,
        /// The closest step name.
        suggestion: Option<String>,
        /// Every step it declares.
        known: Vec<String>,
    },
    /// A start with a unique key under [`OnDuplicate::Reject`](crate::OnDuplicate::Reject)
    /// found a live execution of the workflow holding the key.
    #[error("workflow `{workflow}` has a live execution with key `{key}` already: {existing}")]
    Duplicate {
        /// The workflow.
        workflow: String,
        /// The key.
        key: String,
        /// The live execution that holds it.
        existing: ExecutionId,
    },
    /// An option of [`EngineBuilder`](crate::EngineBuilder) has a value it cannot take.
    #[error("invalid engine option `{option}`: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Why.
        reason: String,
    },
}

impl From<super::journal::Closed> for EngineError {
    fn from(_: super::journal::Closed) -> Self {
        EngineError::ShutDown
    }
}

impl From<super::journal::WriteError> for EngineError {
    fn from(e: super::journal::WriteError) -> Self {
        use super::journal::WriteError;
        match e {
            WriteError::Closed => EngineError::ShutDown,
            WriteError::NotHeld(id) => EngineError::NotHeld(id),
            WriteError::Gone(id) => EngineError::UnknownExecution(id),
            WriteError::Rejected(reason) => EngineError::Store(StoreError::Rejected(reason)),
        }
    }
}

fn did_you_mean(s: &Option<String>) -> String {
    sagaflow_rules::suggest::in_parentheses(s.as_deref())
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    }
}
