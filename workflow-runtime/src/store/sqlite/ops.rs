//! [`Op`]: a write serialized on the caller's thread, and [`prepare`], which turns
//! a batch of [`Write`]s into ops for the database thread.

use chrono::{DateTime, Utc};

use super::convert::{timestamp, to_json};
use crate::model::ExecutionId;
use crate::model::execution::Trigger;
use crate::store::{NewExecution, StoreError, Upgrade, Write};

/// A write, serialized and ready for the database thread.
pub(super) enum Op {
    Event {
        id: ExecutionId,
        seq: i64,
        event: String,
    },
    /// `replay_of`: the dead letter the new execution replays, removed with it.
    Create {
        id: ExecutionId,
        created_at: String,
        started: bool,
        record: String,
        keyed: bool,
        replay_of: Option<ExecutionId>,
    },
    /// Creates the execution only if the tick is later than the last one claimed.
    Tick {
        key: String,
        fire_time: DateTime<Utc>,
        create: Box<Op>,
    },
    Started {
        id: ExecutionId,
    },
    Reschedule {
        id: ExecutionId,
        record: String,
    },
    Finish {
        id: ExecutionId,
        workflow: String,
        started_at: String,
        ended_at: String,
        state: String,
    },
    DeadLetter {
        id: ExecutionId,
        workflow: String,
        failed_at: String,
        expires_at: String,
        record: String,
    },
    RemoveDeadLetter {
        id: ExecutionId,
    },
    Definition {
        name: String,
        version: String,
        snapshot: String,
    },
    Upgrade {
        id: ExecutionId,
        version: String,
        events: Vec<(i64, String)>,
    },
}

fn create_op(n: &NewExecution) -> Result<Op, StoreError> {
    Ok(Op::Create {
        id: n.id,
        created_at: timestamp(&n.created_at),
        started: n.start_at.is_none(),
        record: to_json(n, "execution record")?,
        keyed: n.unique_key.is_some(),
        replay_of: match n.trigger {
            Trigger::Replay { of } => Some(of),
            _ => None,
        },
    })
}

pub(super) fn prepare(batch: &[Write]) -> Result<Vec<Op>, StoreError> {
    let mut ops = Vec::with_capacity(batch.len());
    for w in batch {
        ops.push(match w {
            Write::Event(e) | Write::CommandEvent { entry: e, .. } => {
                Op::Event { id: e.execution, seq: e.seq as i64, event: e.event.clone() }
            }
            Write::Create(n) => create_op(n)?,
            Write::Tick { key, fire_time, execution } => {
                Op::Tick { key: key.clone(), fire_time: *fire_time, create: Box::new(create_op(execution)?) }
            }
            // One engine owns the file: nothing is parked, and commands are
            // applied by that engine.
            Write::CommandDone { .. } | Write::Park { .. } => continue,
            Write::Started { id, .. } => Op::Started { id: *id },
            Write::Reschedule(n) => Op::Reschedule { id: n.id, record: to_json(n, "execution record")? },
            Write::Finish(state) => Op::Finish {
                id: state.id,
                workflow: state.workflow.clone(),
                started_at: timestamp(&state.started_at),
                ended_at: timestamp(&state.ended_at.unwrap_or(state.started_at)),
                state: to_json(&**state, "final state")?,
            },
            Write::DeadLetter(d) => Op::DeadLetter {
                id: d.id,
                workflow: d.workflow.clone(),
                failed_at: timestamp(&d.failed_at),
                expires_at: timestamp(&d.expires_at),
                record: to_json(&**d, "dead letter")?,
            },
            Write::RemoveDeadLetter(id) => Op::RemoveDeadLetter { id: *id },
            Write::Definition(d) => Op::Definition {
                name: d.name.clone(),
                version: d.version.clone(),
                snapshot: to_json(&**d, "definition snapshot")?,
            },
            Write::Upgrade(u) => {
                let Upgrade { id, version, events } = &**u;
                if let Some(e) = events.iter().find(|e| e.execution != *id) {
                    return Err(StoreError::Other(format!(
                        "the upgrade of {id} carries a journal entry of {}",
                        e.execution
                    )));
                }
                let events = events.iter().map(|e| (e.seq as i64, e.event.clone())).collect();
                Op::Upgrade { id: *id, version: version.clone(), events }
            }
        });
    }
    Ok(ops)
}
