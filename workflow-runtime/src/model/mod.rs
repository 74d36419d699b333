//! Pure data: context, outcomes, errors, durations, options and definitions.
//! Nothing here runs anything.

pub(crate) mod await_request;
pub(crate) mod context;
pub(crate) mod cowmap;
pub(crate) mod def;
pub mod defaults;
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
pub(crate) mod retry;
pub(crate) mod schedule;
pub(crate) mod serde_duration;
pub(crate) mod signal;
pub(crate) mod signal_port;
pub(crate) mod status;
pub(crate) mod step;
pub(crate) mod step_fn;
pub(crate) mod task;
pub(crate) mod timestamp;
pub(crate) mod trace;

pub use await_request::AwaitRequest;
pub use context::Context;
pub use def::{Declared, DefinitionSnapshot, StepDef, StepKindName, StepSnapshot, Triggers, WorkflowDef};
pub use duration::{
    DurationArg, DurationError, DynamicTimeout, INFINITY, MAX_DURATION, Timeout, format_duration, parse_duration,
};
pub use error::{StepError, StepResultExt, kinds};
pub use ids::{ExecutionId, ParseExecutionIdError};
pub use limits::{ConcurrencyLimit, RateLimit, RateLimitError, StepLimits, parse_rate_limit};
pub use name::StepName;
pub use options::{IntoNames, Step, StepPolicy};
pub use outcome::{IntoOutcome, IntoStepResult};
pub use policy::WorkflowPolicy;
pub use retry::{Backoff, BreakerOptions, OnError, RetryPolicy};
pub use sagaflow_rules::duration::GrammarError;
pub use schedule::{CronExpr, MIN_INTERVAL, Misfire, Schedule, ScheduleError, ScheduleKind};
pub use signal::SignalWait;
pub use step::{BoxStepFuture, Condition, Outcome, StepBody, StepOptions, StepResult, Task};
pub use step_fn::{
    AsyncFnMarker, BoxHandlerFuture, CancelHandler, IntoCancelHandler, IntoStepErrorHandler, IntoStepFn,
    StepErrorHandler, SyncFnMarker, Worker, WorkerMarker,
};
pub use trace::TraceContext;
