//! Options of the diagrams, and the colours of step states.

use crate::model::ExecutionId;
use crate::model::execution::ExecutionState;
use crate::model::status::StepStatus;

/// Which way a diagram flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Direction {
    /// Top to bottom (the default): Mermaid `TD`, DOT `rankdir=TB`.
    #[default]
    TopDown,
    /// Bottom to top: `BT`.
    BottomUp,
    /// Left to right: `LR`.
    LeftRight,
    /// Right to left: `RL`.
    RightLeft,
}

impl Direction {
    pub(crate) fn mermaid(self) -> &'static str {
        match self {
            Direction::TopDown => "TD",
            Direction::BottomUp => "BT",
            Direction::LeftRight => "LR",
            Direction::RightLeft => "RL",
        }
    }

    pub(crate) fn dot(self) -> &'static str {
        match self {
            Direction::TopDown => "TB",
            Direction::BottomUp => "BT",
            Direction::LeftRight => "LR",
            Direction::RightLeft => "RL",
        }
    }
}

/// Options of [`to_mermaid`](super::to_mermaid) and [`to_dot`](super::to_dot) (and of
/// the engine's methods of the same names).
///
/// ```
/// use sagaflow_runtime::introspect::{DiagramOptions, Direction};
///
/// let opts = DiagramOptions::new().show_groups(true).direction(Direction::LeftRight);
/// assert!(opts.groups_shown());
/// ```
#[derive(Clone, Debug, Default)]
pub struct DiagramOptions {
    pub(crate) show_groups: bool,
    pub(crate) direction: Direction,
    pub(crate) execution: Option<ExecutionId>,
    pub(crate) state: Option<Box<ExecutionState>>,
}

impl DiagramOptions {
    /// The defaults: no group boxes, top to bottom, no execution.
    pub fn new() -> Self {
        Self::default()
    }

    /// Draws each parallel group as a box around its steps (a Mermaid `subgraph`, a
    /// DOT `cluster`).
    pub fn show_groups(mut self, yes: bool) -> Self {
        self.show_groups = yes;
        self
    }

    /// Which way the diagram flows.
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Colours the steps by the state of this execution. The engine's methods look
    /// the execution up; the pure functions of [`introspect`](super) need
    /// [`state`](Self::state) instead, and ignore an id alone.
    pub fn execution(mut self, id: ExecutionId) -> Self {
        self.execution = Some(id);
        self
    }

    /// Colours the steps by this execution state. Steps that grafts added at run
    /// time are drawn too, after the graft that added them.
    pub fn state(mut self, state: ExecutionState) -> Self {
        self.execution = Some(state.id);
        self.state = Some(Box::new(state));
        self
    }

    /// Whether groups are drawn as boxes.
    pub fn groups_shown(&self) -> bool {
        self.show_groups
    }

    /// The execution whose state colours the diagram, if any.
    pub fn execution_id(&self) -> Option<ExecutionId> {
        self.execution
    }

    /// The state that colours the diagram, once known.
    pub fn execution_state(&self) -> Option<&ExecutionState> {
        self.state.as_deref()
    }
}

/// The class of a step in a coloured diagram: step statuses grouped as a reader
/// tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StateClass {
    /// Has not run yet (`pending`, `ready`).
    Pending,
    /// Running or about to run again (`running`, `retrying`, `snoozed`, and a graft
    /// whose added steps run: `expanded`).
    Running,
    /// Waiting for `resume`.
    Awaiting,
    /// Completed.
    Completed,
    /// Skipped.
    Skipped,
    /// Failed for good, or its compensation failed.
    Failed,
    /// Completed, then compensated by its rollback.
    Compensated,
    /// Stopped by cancellation or by a failure elsewhere.
    Cancelled,
}

impl StateClass {
    /// Every class, in the order diagrams define them.
    pub const ALL: [StateClass; 8] = [
        StateClass::Completed,
        StateClass::Running,
        StateClass::Pending,
        StateClass::Failed,
        StateClass::Skipped,
        StateClass::Awaiting,
        StateClass::Compensated,
        StateClass::Cancelled,
    ];

    /// The class of a step status.
    pub fn of(status: StepStatus) -> Self {
        match status {
            StepStatus::Pending | StepStatus::Ready => StateClass::Pending,
            StepStatus::Running | StepStatus::Retrying | StepStatus::Snoozed | StepStatus::Expanded => {
                StateClass::Running
            }
            StepStatus::Awaiting => StateClass::Awaiting,
            StepStatus::Completed => StateClass::Completed,
            StepStatus::Skipped => StateClass::Skipped,
            StepStatus::Failed | StepStatus::CompensationFailed => StateClass::Failed,
            StepStatus::Compensated => StateClass::Compensated,
            StepStatus::Cancelled => StateClass::Cancelled,
        }
    }

    /// The class name used in diagrams (`completed`, `running`...).
    pub fn as_str(self) -> &'static str {
        match self {
            StateClass::Pending => "pending",
            StateClass::Running => "running",
            StateClass::Awaiting => "awaiting",
            StateClass::Completed => "completed",
            StateClass::Skipped => "skipped",
            StateClass::Failed => "failed",
            StateClass::Compensated => "compensated",
            StateClass::Cancelled => "cancelled",
        }
    }

    /// The fill colour (`#90EE90` for completed, `#FFD700` for running, `#D3D3D3`
    /// for pending, as in the reference).
    pub fn fill(self) -> &'static str {
        match self {
            StateClass::Completed => "#90EE90",
            StateClass::Running => "#FFD700",
            StateClass::Pending => "#D3D3D3",
            StateClass::Failed => "#FF6B6B",
            StateClass::Skipped => "#F5F5F5",
            StateClass::Awaiting => "#87CEEB",
            StateClass::Compensated => "#DDA0DD",
            StateClass::Cancelled => "#A9A9A9",
        }
    }

    /// The text colour, where it is not the default black: grey for skipped steps.
    pub fn color(self) -> Option<&'static str> {
        match self {
            StateClass::Skipped => Some("#808080"),
            _ => None,
        }
    }
}
