//! [`Task`]'s constructors: a named step function with its options, for the
//! builder's `parallel`, `fan_out` and `branch`, and for the steps a graft adds at run
//! time.

use std::fmt;

use super::context::Context;
use super::step::{StepOptions, Task};
use super::step_fn::IntoStepFn;

impl Task {
    /// A step named `name` running `f`.
    pub fn new<M>(name: impl Into<String>, f: impl IntoStepFn<M>) -> Self {
        Task { name: name.into(), body: f.into_step_fn(), options: StepOptions::default() }
    }

    /// Replaces the options.
    pub fn with(mut self, options: StepOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds a condition (for `branch`).
    pub fn when<F>(mut self, condition: F) -> Self
    where
        F: Fn(&Context) -> bool + Send + Sync + 'static,
    {
        self.options = self.options.when(condition);
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("name", &self.name).field("options", &self.options).finish_non_exhaustive()
    }
}
