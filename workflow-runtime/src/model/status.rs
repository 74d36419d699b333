//! Statuses of executions and steps.

use serde::{Deserialize, Serialize};

/// Where an execution stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// Scheduled for later, not started yet.
    Pending,
    /// Steps are running or ready to run.
    Running,
    /// Paused: running steps finish, no new ones start.
    Paused,
    /// At least one step waits for `resume` (human in the loop).
    Awaiting,
    /// A step failed for good; running steps are finishing before the rollback.
    Failing,
    /// Compensations are running.
    RollingBack,
    /// Cancelled; running steps are finishing.
    Cancelling,
    /// Every step completed (or was skipped, or failed with `on_error: continue`).
    Completed,
    /// Failed, with nothing to compensate.
    Failed,
    /// Failed, and every compensation succeeded.
    RolledBack,
    /// Failed, and at least one compensation failed too (see the rollback report).
    RollbackFailed,
    /// Cancelled.
    Cancelled,
}

impl Status {
    /// Whether the execution has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Failed | Status::RolledBack | Status::RollbackFailed | Status::Cancelled
        )
    }

    /// Whether the execution ended in failure (with or without rollback).
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Failed | Status::RolledBack | Status::RollbackFailed)
    }

    /// The status's spelling (`"running"`, `"rolled_back"`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Awaiting => "awaiting",
            Status::Failing => "failing",
            Status::RollingBack => "rolling_back",
            Status::Cancelling => "cancelling",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::RolledBack => "rolled_back",
            Status::RollbackFailed => "rollback_failed",
            Status::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepStatus {
    /// Waiting for its dependencies.
    Pending,
    /// Dependencies done; waiting for a concurrency slot (or for the pause to end).
    Ready,
    /// Running.
    Running,
    /// Failed; waiting for its retry delay.
    Retrying,
    /// Snoozed; runs again when the snooze ends.
    Snoozed,
    /// Waiting for `resume`.
    Awaiting,
    /// A graft that added steps; ends when they all end.
    Expanded,
    /// Completed.
    Completed,
    /// Skipped (condition false, `after_any` all skipped, or `on_error: skip`).
    Skipped,
    /// Failed for good.
    Failed,
    /// Stopped by cancellation or by the workflow failing elsewhere.
    Cancelled,
    /// Completed, then compensated by its rollback.
    Compensated,
    /// Completed; its rollback failed.
    CompensationFailed,
}

impl StepStatus {
    /// Whether the step has ended as far as its dependents are concerned.
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            StepStatus::Completed
                | StepStatus::Skipped
                | StepStatus::Failed
                | StepStatus::Cancelled
                | StepStatus::Compensated
                | StepStatus::CompensationFailed
        )
    }

    /// The status's spelling (`"running"`, `"compensation_failed"`...).
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Ready => "ready",
            StepStatus::Running => "running",
            StepStatus::Retrying => "retrying",
            StepStatus::Snoozed => "snoozed",
            StepStatus::Awaiting => "awaiting",
            StepStatus::Expanded => "expanded",
            StepStatus::Completed => "completed",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Compensated => "compensated",
            StepStatus::CompensationFailed => "compensation_failed",
        }
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
