//! `dead-letters list` and `dead-letters purge`.

use sagaflow::store::Request;
use serde_json::{Value, json};

use super::Ctx;
use super::control::control;
use super::parse::parse_id;
use crate::output::{Paint, Table, clip, painted, plain, time};
use crate::{CliError, Wait};

pub(super) async fn letters(ctx: &Ctx, workflow: Option<String>) -> Result<(), CliError> {
    let store = ctx.reads().await?;
    let mut letters = store.dead_letters(workflow.as_deref()).await?;
    letters.reverse();
    if ctx.json {
        let rows: Vec<Value> = letters
            .iter()
            .map(|d| {
                json!({
                    "id": d.id, "workflow": d.workflow, "error_step": d.error_step,
                    "error": d.error.as_ref().map(ToString::to_string), "failed_at": d.failed_at,
                    "expires_at": d.expires_at, "input": d.input,
                })
            })
            .collect();
        return ctx.print_json(&rows);
    }
    let mut table = Table::new(&["EXECUTION", "WORKFLOW", "FAILED STEP", "ERROR", "FAILED AT", "EXPIRES"]);
    for d in &letters {
        table.row(vec![
            plain(d.id.to_string()),
            plain(&d.workflow),
            plain(d.error_step.clone().unwrap_or_default()),
            painted(d.error.as_ref().map(|e| clip(&e.to_string(), 60)).unwrap_or_default(), Paint::Red),
            plain(time(d.failed_at)),
            plain(time(d.expires_at)),
        ]);
    }
    ctx.table(&table, "no dead letters")
}

pub(super) async fn purge(ctx: &Ctx, ids: Vec<String>, expired: bool, wait: &Wait) -> Result<(), CliError> {
    if ids.is_empty() && !expired {
        return Err(CliError::Usage("name the dead letters to remove, or pass `--expired`".into()));
    }
    for id in &ids {
        control(ctx, Request::RemoveDeadLetter { id: parse_id(id)? }, wait).await?;
    }
    if expired {
        control(ctx, Request::PurgeExpiredDeadLetters, wait).await?;
    }
    Ok(())
}
