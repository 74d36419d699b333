//! What each command does.

mod control;
mod dead_letters;
mod executions;
mod parse;
mod schedules;
mod serve;
mod views;
mod workflows;

use std::io::Write;
use std::sync::Arc;

use chrono::Utc;
use sagaflow::store::{ControlCall, Request, Store, StoreControl, open_for_reading};

use self::control::control;
use self::dead_letters::{letters, purge};
use self::executions::{list, show};
use self::parse::{parse_context, parse_id, parse_payload, signal_name};
use self::schedules::schedules;
use self::serve::serve;
use self::workflows::{workflow, workflows};
use super::output::{Style, Table};
use super::{Cli, CliError, DeadLetters, Executions, Schedules, Top, Workflows};

/// What a command needs: the store URL, the output and its style.
struct Ctx {
    url: String,
    json: bool,
    style: Style,
    out: std::io::Stdout,
}

impl Ctx {
    async fn reads(&self) -> Result<Arc<dyn Store>, CliError> {
        Ok(open_for_reading(&self.url).await?)
    }

    async fn control(&self) -> Result<StoreControl, CliError> {
        Ok(StoreControl::open(&self.url).await?)
    }

    fn print_json(&self, value: &impl serde::Serialize) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Other(e.to_string()))?;
        writeln!(self.out.lock(), "{text}")?;
        Ok(())
    }

    fn line(&self, text: &str) -> Result<(), CliError> {
        writeln!(self.out.lock(), "{text}")?;
        Ok(())
    }

    fn table(&self, table: &Table, empty: &str) -> Result<(), CliError> {
        if table.is_empty() {
            return self.line(empty);
        }
        table.print(&self.style, &mut self.out.lock())?;
        Ok(())
    }
}

pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    let url = cli.store.clone().filter(|u| !u.is_empty()).ok_or_else(|| {
        CliError::Usage("no store: pass `--store sqlite://file.db` (or `postgres://...`) or set SAGAFLOW_STORE".into())
    })?;
    let ctx = Ctx { url, json: cli.json, style: Style::new(cli.color), out: std::io::stdout() };
    match cli.command {
        Top::Executions(Executions::List { workflow, status, limit }) => list(&ctx, workflow, status, limit).await,
        Top::Executions(Executions::Show { id }) => show(&ctx, parse_id(&id)?).await,
        Top::Executions(Executions::Cancel { id, reason, rollback, cleanup, wait }) => {
            let command = ControlCall::Cancel { reason, cleanup, rollback };
            control(&ctx, Request::Control { execution: parse_id(&id)?, command }, &wait).await
        }
        Top::Executions(Executions::Pause { id, wait }) => {
            control(&ctx, Request::Control { execution: parse_id(&id)?, command: ControlCall::Pause }, &wait).await
        }
        Top::Executions(Executions::Resume { id, context, step, wait }) => {
            let context = parse_context(context.as_deref())?;
            let command = ControlCall::Resume { step, context };
            control(&ctx, Request::Control { execution: parse_id(&id)?, command }, &wait).await
        }
        Top::Executions(Executions::Signal { id, name, payload, wait }) => {
            let command =
                ControlCall::Signal { name: signal_name(&name)?, payload: parse_payload(payload.as_deref())? };
            control(&ctx, Request::Control { execution: parse_id(&id)?, command }, &wait).await
        }
        Top::Executions(Executions::Restart { id, from, context, wait }) => {
            let request = Request::RestartFrom {
                execution: parse_id(&id)?,
                step: from,
                context: parse_context(context.as_deref())?,
            };
            control(&ctx, request, &wait).await
        }
        Top::Executions(Executions::Purge { older_than, workflow, wait }) => {
            let age = sagaflow::DurationArg::from(older_than.as_str())
                .to_duration()
                .map_err(|e| CliError::Usage(format!("`--older-than {older_than}`: {e}")))?;
            let age = chrono::Duration::from_std(age)
                .map_err(|_| CliError::Usage(format!("`--older-than {older_than}` is too long")))?;
            let ended_before = Utc::now() - age;
            control(&ctx, Request::PurgeHistory { workflow, ended_before }, &wait).await
        }
        Top::DeadLetters(DeadLetters::List { workflow }) => letters(&ctx, workflow).await,
        Top::DeadLetters(DeadLetters::Replay { id, wait }) => {
            control(&ctx, Request::ReplayDeadLetter { id: parse_id(&id)? }, &wait).await
        }
        Top::DeadLetters(DeadLetters::Purge { ids, expired, wait }) => purge(&ctx, ids, expired, &wait).await,
        Top::Workflows(Workflows::List) => workflows(&ctx).await,
        Top::Workflows(Workflows::Show { name, format }) => workflow(&ctx, &name, format).await,
        Top::Schedules(Schedules::List { workflow, next }) => schedules(&ctx, workflow, next).await,
        Top::Serve(serve_args) => serve(&ctx, serve_args).await,
    }
}
