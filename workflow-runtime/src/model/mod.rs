//! Pure data: context, outcomes, errors, durations, options and definitions.
//! Nothing here runs anything.

pub(crate) mod context;
pub(crate) mod cowmap;
pub(crate) mod def;
pub(crate) mod duration;
pub(crate) mod error;
pub(crate) mod execution;
pub(crate) mod guard;
pub(crate) mod ids;
pub(crate) mod limits;
pub(crate) mod name;
pub(crate) mod options;
pub(crate) mod outcome;
pub(crate) mod policy;
pub(crate) mod restart;
pub(crate) mod schedule;
pub(crate) mod serde_duration;
pub(crate) mod signal;
pub(crate) mod signal_port;
pub(crate) mod status;
pub(crate) mod step;
pub(crate) mod task;
pub(crate) mod trace;

pub use context::Context;
pub use def::{Declared, DefinitionSnapshot, StepDef, StepKindName, StepSnapshot, Triggers, WorkflowDef};
pub use duration::{
    DurationArg, DurationError, DynamicTimeout, INFINITY, MAX_DURATION, Timeout, format_duration, parse_duration,
};
pub use error::{StepError, StepResultExt, kinds};
pub use ids::{ExecutionId, ParseExecutionIdError};
pub use limits::{ConcurrencyLimit, RateLimit, RateLimitError, StepLimits, parse_rate_limit};
pub use name::StepName;
pub use options::{Backoff, BreakerOptions, IntoNames, OnError, RetryPolicy, Step, StepOptions, StepPolicy, defaults};
pub use outcome::{AwaitRequest, IntoOutcome, IntoStepResult, Outcome, StepResult};
pub use policy::WorkflowPolicy;
pub use sagaflow_rules::duration::GrammarError;
pub use schedule::{CronExpr, MIN_INTERVAL, Misfire, Schedule, ScheduleError, ScheduleKind};
pub use signal::SignalWait;
pub use step::{
    AsyncFnMarker, BoxHandlerFuture, BoxStepFuture, CancelHandler, Condition, IntoCancelHandler, IntoStepErrorHandler,
    IntoStepFn, StepBody, StepErrorHandler, SyncFnMarker, Worker, WorkerMarker,
};
pub use task::Task;
pub use trace::TraceContext;
