//! Dead letters as the engine offers them: list, inspect, replay, remove, purge.

use super::restart::Extras;
use super::{Engine, EngineError};
use crate::model::ExecutionId;
use crate::model::context::Data;
use crate::model::execution::Trigger;
use crate::store::{DeadLetter, Write};

/// Dead-letter operations: list, inspect, replay, purge.
#[derive(Debug)]
pub struct DeadLetters<'a> {
    engine: &'a Engine,
}

impl DeadLetters<'_> {
    /// Every dead letter (of one workflow, if given), oldest first.
    pub async fn list(&self, workflow: Option<&str>) -> Result<Vec<DeadLetter>, EngineError> {
        Ok(self.engine.inner.store.dead_letters(workflow).await?)
    }

    /// One dead letter.
    pub async fn get(&self, id: ExecutionId) -> Result<Option<DeadLetter>, EngineError> {
        Ok(self.list(None).await?.into_iter().find(|d| d.id == id))
    }

    /// Starts the failed execution's workflow again with the same input; the dead
    /// letter is removed. Returns the new execution.
    ///
    /// Replay is atomic and idempotent: the new execution is created and the dead
    /// letter removed in one transaction, and the new execution's id is derived
    /// from the failed one's ([`ExecutionId::replay_of`]), so replaying the same
    /// letter twice, at once or on two nodes, starts one execution and returns its
    /// id both times.
    pub async fn replay(&self, id: ExecutionId) -> Result<ExecutionId, EngineError> {
        let inner = &self.engine.inner;
        let new = ExecutionId::replay_of(id);
        if inner.exists(new).await? {
            return Ok(new);
        }
        let Some(letter) = self.get(id).await? else {
            // Replayed meanwhile (by another call or node), or never there.
            return if inner.exists(new).await? { Ok(new) } else { Err(EngineError::UnknownExecution(id)) };
        };
        let def = inner.definition(&letter.workflow)?;
        let data: Data = letter.input.clone().into_iter().collect();
        let started = inner.start_with_id(new, def, data, Trigger::Replay { of: id }, None, Extras::default()).await?;
        if !inner.durable {
            // A volatile store records no creation to remove the letter with.
            inner.commit(Write::RemoveDeadLetter(id), "replay a dead letter").await?;
        }
        Ok(started)
    }

    /// Deletes one dead letter.
    pub async fn remove(&self, id: ExecutionId) -> Result<(), EngineError> {
        self.engine.inner.commit(Write::RemoveDeadLetter(id), "remove a dead letter").await
    }

    /// Deletes dead letters older than their workflow's `dead_letter_ttl`; returns
    /// how many. The engine also does this in the background (every minute by
    /// default, see [`EngineBuilder::housekeeping_every`](super::EngineBuilder::housekeeping_every)).
    pub async fn purge_expired(&self) -> Result<usize, EngineError> {
        let inner = &self.engine.inner;
        let last = inner.journal.last_ticket();
        inner.journal.flushed(last).await?;
        Ok(inner.store.purge_dead_letters(inner.clock.now()).await?)
    }
}

impl Engine {
    /// Dead letters: executions that failed for good in workflows with `dead_letter`.
    pub fn dead_letters(&self) -> DeadLetters<'_> {
        DeadLetters { engine: self }
    }
}
