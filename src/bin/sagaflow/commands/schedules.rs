//! `schedules list`: each workflow's schedules with their last and next fire times.

use chrono::Utc;
use sagaflow::DefinitionSnapshot;

use super::Ctx;
use crate::CliError;
use crate::output::{Table, plain, time, time_opt};

pub(super) async fn schedules(ctx: &Ctx, workflow: Option<String>, next: usize) -> Result<(), CliError> {
    let store = ctx.reads().await?;
    let defs: Vec<DefinitionSnapshot> =
        store.definitions().await?.into_iter().filter(|d| workflow.as_deref().is_none_or(|w| w == d.name)).collect();
    if let Some(w) = &workflow
        && defs.is_empty()
    {
        return Err(CliError::NotFound(format!("unknown workflow `{w}`")));
    }
    let ticks = store.last_ticks().await?;
    let now = Utc::now();
    let rows = sagaflow::stored_schedules(&defs, &ticks, now, next.max(1));
    if ctx.json {
        return ctx.print_json(&rows);
    }
    let mut table = Table::new(&["WORKFLOW", "#", "SCHEDULE", "MISFIRE", "LAST FIRE", "NEXT FIRE"]);
    for r in &rows {
        let next = match (&r.problem, r.next.first()) {
            (Some(p), _) => p.clone(),
            (None, None) => "none (fired, or its window closed)".into(),
            (None, Some(_)) => r
                .next
                .iter()
                .take(next.max(1))
                .map(|t| if *t < now { format!("{} (due)", time(*t)) } else { time(*t) })
                .collect::<Vec<_>>()
                .join(", "),
        };
        table.row(vec![
            plain(&r.workflow),
            plain(r.index.to_string()),
            plain(&r.schedule),
            plain(r.misfire.map(|m| format!("{m:?}").to_lowercase()).unwrap_or_default()),
            plain(time_opt(r.last_fire)),
            plain(next),
        ]);
    }
    ctx.table(&table, "no schedules")
}
