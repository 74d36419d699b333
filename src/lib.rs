#![doc = include_str!("../README.md")]
//!
//! ## Crate layout
//!
//! `sagaflow` is a facade: the engine lives in `sagaflow-runtime` and the attribute
//! macros in `sagaflow-macros`; both are re-exported here, so this is the only
//! dependency a program needs.

pub use sagaflow_macros::{graft, query, step, subworkflow, workflow};
pub use sagaflow_runtime::*;

/// The names most programs need: `use sagaflow::prelude::*;`.
pub mod prelude {
    pub use sagaflow_macros::{graft, query, step, subworkflow, workflow};
    pub use sagaflow_runtime::WorkflowType;
    pub use sagaflow_runtime::prelude::*;
}
