//! Applying events to the machine and journaling them (`Journaling`), and
//! delivering outside events to an execution.

use std::sync::Arc;

use crate::engine::EngineInner;
use crate::engine::journal::Ack;
use crate::machine::TransitionError;
use crate::machine::command::Command;
use crate::machine::event::ExecutionEvent;
use crate::store::{JournalEntry, Write};

use super::execution::{Core, Execution};

/// How an event is journaled.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Journaling {
    /// Queued for the next group commit; drivers wait on its ticket.
    Plain,
    /// The same, and the caller learns what became of it (an acknowledged call).
    Acknowledged,
    /// The effect of this queued command: the command is marked carried out in
    /// the same transaction.
    Command(i64),
}

impl EngineInner {
    /// Applies an event under the lock, journaling it first when the store is
    /// durable. Returns the journal ticket.
    pub(crate) fn apply_locked(
        &self,
        exec: &Execution,
        core: &mut Core,
        event: ExecutionEvent,
        out: &mut Vec<Command>,
    ) -> Result<Option<u64>, TransitionError> {
        Ok(self.apply_journaled(exec, core, event, out, Journaling::Plain)?.map(|(ticket, _)| ticket))
    }

    /// Applies an event under the lock and journals it as `how` says; returns the
    /// journal ticket, and the acknowledgement if one was asked for.
    pub(crate) fn apply_journaled(
        &self,
        exec: &Execution,
        core: &mut Core,
        event: ExecutionEvent,
        out: &mut Vec<Command>,
        how: Journaling,
    ) -> Result<Option<(u64, Option<Ack>)>, TransitionError> {
        let json = if self.durable { serde_json::to_string(&event).ok() } else { None };
        core.machine.apply(event, out)?;
        Ok(json.map(|event| {
            core.seq += 1;
            let entry = JournalEntry { execution: exec.id, seq: core.seq, event };
            let (ticket, ack) = match how {
                Journaling::Plain => (self.journal.append(Write::Event(entry)), None),
                Journaling::Acknowledged => {
                    let (t, ack) = self.journal.submit(Write::Event(entry));
                    (t, Some(ack))
                }
                Journaling::Command(command) => {
                    let (t, ack) = self.journal.submit(Write::CommandEvent { entry, command });
                    (t, Some(ack))
                }
            };
            core.ticket = ticket;
            (ticket, ack)
        }))
    }

    /// Delivers an outside event (timer, resume, pause, cancel, child start) and
    /// makes sure a driver carries out what follows.
    pub(crate) fn deliver(
        self: &Arc<Self>,
        exec: &Arc<Execution>,
        event: ExecutionEvent,
    ) -> Result<Option<u64>, TransitionError> {
        Ok(self.deliver_journaled(exec, event, Journaling::Plain)?.map(|(ticket, _)| ticket))
    }

    /// [`deliver`](Self::deliver), journaling the event as `how` says. `Err(None)`:
    /// the execution is no longer driven here (another node holds it now).
    pub(crate) fn deliver_journaled(
        self: &Arc<Self>,
        exec: &Arc<Execution>,
        event: ExecutionEvent,
        how: Journaling,
    ) -> Result<Option<(u64, Option<Ack>)>, TransitionError> {
        let mut core = exec.core.lock();
        let mut cmds = Vec::new();
        let ticket = self.apply_journaled(exec, &mut core, event, &mut cmds, how)?;
        core.commands.append(&mut cmds);
        self.ensure_driver(exec, &mut core);
        Ok(ticket)
    }
}
