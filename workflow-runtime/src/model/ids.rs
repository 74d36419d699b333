//! Identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The identity of one execution of a workflow: a UUIDv7, so ids sort by start time
/// and are unique across every node that shares a store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutionId(uuid::Uuid);

/// The hasher of the engine's and stores' maps keyed by execution id: a fast
/// hash, seeded per map (the default SipHash costs more than the lookup).
pub(crate) type IdHasher = foldhash::fast::RandomState;

impl ExecutionId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        ExecutionId(uuid::Uuid::now_v7())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }

    /// Builds an id from a UUID (for ids read back from a store or a URL).
    pub fn from_uuid(id: uuid::Uuid) -> Self {
        ExecutionId(id)
    }

    /// The id of the execution that replays the dead letter of `failed`: the same
    /// for every replay of it, so that replaying twice (at once, on two nodes)
    /// starts one execution. It keeps `failed`'s time, so it sorts beside it.
    pub fn replay_of(failed: ExecutionId) -> Self {
        let hashed = uuid::Uuid::new_v5(&failed.0, b"sagaflow replay").into_bytes();
        let mut bytes = failed.0.into_bytes();
        bytes[6..].copy_from_slice(&hashed[6..]);
        bytes[6] = (bytes[6] & 0x0f) | 0x70;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        ExecutionId(uuid::Uuid::from_bytes(bytes))
    }
}

impl Default for ExecutionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExecutionId({})", self.0.hyphenated())
    }
}

/// The text was not an execution id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an execution id (expected a UUID)")]
pub struct ParseExecutionIdError(pub String);

impl FromStr for ExecutionId {
    type Err = ParseExecutionIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s.trim()).map(ExecutionId).map_err(|_| ParseExecutionIdError(s.to_owned()))
    }
}

/// Index of a step inside one execution: the definition's steps first, then the
/// steps that grafts added, in the order they were added.
pub(crate) type StepId = u32;

#[cfg(test)]
mod tests {
    use super::ExecutionId;

    #[test]
    fn a_replay_id_is_a_time_ordered_uuid_derived_from_the_failed_execution() {
        let failed = ExecutionId::new();
        let replay = ExecutionId::replay_of(failed);
        assert_eq!(replay, ExecutionId::replay_of(failed), "the same every time");
        assert_ne!(replay, failed);
        assert_ne!(ExecutionId::replay_of(replay), replay, "a replay of a replay is another execution");
        assert_eq!(replay.as_uuid().get_version_num(), 7);
        assert_eq!(replay.as_uuid().as_bytes()[..6], failed.as_uuid().as_bytes()[..6], "it keeps the time");
    }
}
