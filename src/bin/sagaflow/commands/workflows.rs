//! `workflows list` and `workflows show`: registered definitions, as a table or a diagram.

use sagaflow::DiagramOptions;
use sagaflow::introspect;
use serde_json::{Value, json};

use super::Ctx;
use crate::output::{Paint, Table, painted, plain};
use crate::{CliError, Format};

pub(super) async fn workflows(ctx: &Ctx) -> Result<(), CliError> {
    let store = ctx.reads().await?;
    let defs = store.definitions().await?;
    let infos: Vec<_> = defs.iter().map(|d| introspect::workflow_info(d, 0)).collect();
    if ctx.json {
        let rows: Vec<Value> = infos
            .iter()
            .map(|i| {
                json!({
                    "name": i.name, "version": i.version, "label": i.label, "steps": i.steps,
                    "trigger": i.trigger_type.as_str(), "schedules": i.schedules, "events": i.events, "tags": i.tags,
                })
            })
            .collect();
        return ctx.print_json(&rows);
    }
    let mut table = Table::new(&["WORKFLOW", "VERSION", "STEPS", "TRIGGER", "SCHEDULES", "EVENTS", "TAGS"]);
    for i in &infos {
        let version = match &i.label {
            Some(l) => format!("{l} ({})", i.version),
            None => i.version.clone(),
        };
        table.row(vec![
            painted(&i.name, Paint::Bold),
            plain(version),
            plain(i.steps.to_string()),
            plain(i.trigger_type.as_str()),
            plain(i.schedules.join("; ")),
            plain(i.events.join(", ")),
            plain(i.tags.join(", ")),
        ]);
    }
    ctx.table(&table, "no workflows: no engine has registered one on this store")
}

pub(super) async fn workflow(ctx: &Ctx, name: &str, format: Format) -> Result<(), CliError> {
    let store = ctx.reads().await?;
    let defs = store.definitions().await?;
    let Some(def) = defs.iter().find(|d| d.name == name) else {
        let known: Vec<String> = defs.iter().map(|d| format!("`{}`", d.name)).collect();
        let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
        return Err(CliError::NotFound(format!("unknown workflow `{name}`; workflows in the store: {known}")));
    };
    if ctx.json {
        return ctx.print_json(&json!({ "definition": def, "summary": introspect::summary(def) }));
    }
    let text = match format {
        Format::Table => {
            let s = introspect::summary(def);
            let head = format!(
                "{} {} (version {}): {} steps, {} parallel groups, {} grafts, trigger {}",
                ctx.style.paint("workflow", Paint::Bold),
                def.name,
                def.version,
                s.steps,
                s.parallel_groups,
                s.grafts,
                s.trigger
            );
            format!("{head}\n\n{}", introspect::to_table(def))
        }
        Format::Mermaid => introspect::to_mermaid(def, &DiagramOptions::new()),
        Format::Dot => introspect::to_dot(def, &DiagramOptions::new()),
    };
    ctx.line(text.trim_end())
}
