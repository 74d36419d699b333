//! A text table of the steps, drawn with box-drawing characters.

use unicode_width::UnicodeWidthStr;

use crate::model::{DefinitionSnapshot, StepSnapshot};

const HEADERS: [&str; 5] = ["Step", "Depends On", "Timeout", "Retries", "Rollback"];

/// What a step waits for, as declared: `a, b`, `any(c, d)`, `group(g)`,
/// `graft(x)`, or `-` for none.
fn depends_on(s: &StepSnapshot) -> String {
    let d = &s.declared;
    let mut parts: Vec<String> = d.after.clone();
    if !d.after_any.is_empty() {
        parts.push(format!("any({})", d.after_any.join(", ")));
    }
    parts.extend(d.after_group.iter().map(|g| format!("group({g})")));
    parts.extend(d.after_graft.iter().map(|g| format!("graft({g})")));
    if parts.is_empty() { "-".to_owned() } else { parts.join(", ") }
}

/// Control characters would break the lines; they are shown escaped.
fn cell(text: &str) -> String {
    if text.chars().any(char::is_control) {
        text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
    } else {
        text.to_owned()
    }
}

fn rule(out: &mut String, widths: &[usize], left: char, mid: char, right: char) {
    out.push(left);
    for (i, w) in widths.iter().enumerate() {
        if i > 0 {
            out.push(mid);
        }
        out.push_str(&"─".repeat(w + 2));
    }
    out.push(right);
    out.push('\n');
}

fn row(out: &mut String, widths: &[usize], cells: &[String]) {
    out.push('│');
    for (w, c) in widths.iter().zip(cells) {
        out.push(' ');
        out.push_str(c);
        out.push_str(&" ".repeat(w - c.width() + 1));
        out.push('│');
    }
    out.push('\n');
}

/// Renders the steps as a table with the reference's columns: step, depends on,
/// timeout, retries and rollback (`✓`/`✗`), in declaration order.
///
/// Columns are as wide as their widest cell, measured in terminal columns, so the
/// table stays aligned for long names and for names in any script (a CJK
/// character takes two columns, a combining accent none).
///
/// ```
/// use sagaflow_runtime::{Context, Outcome, Step, StepResult, Workflow, introspect};
///
/// async fn noop(_ctx: Context) -> StepResult { Ok(Outcome::Done) }
///
/// let def = Workflow::new("orders")
///     .step_with("validate", noop, Step::opts().timeout("10s"))
///     .step_with("ship_order", noop,
///         Step::opts().after("validate").rollback(noop))
///     .build()?;
/// assert_eq!(introspect::to_table(&def.snapshot()), "\
/// ┌────────────┬────────────┬─────────┬─────────┬──────────┐
/// │ Step       │ Depends On │ Timeout │ Retries │ Rollback │
/// ├────────────┼────────────┼─────────┼─────────┼──────────┤
/// │ validate   │ -          │ 10s     │ 3       │ ✗        │
/// │ ship_order │ validate   │ 5m      │ 3       │ ✓        │
/// └────────────┴────────────┴─────────┴─────────┴──────────┘
/// ");
/// # Ok::<(), sagaflow_runtime::BuildError>(())
/// ```
pub fn to_table(def: &DefinitionSnapshot) -> String {
    let header: Vec<String> = HEADERS.iter().map(|h| (*h).to_owned()).collect();
    let rows: Vec<Vec<String>> = def
        .steps
        .iter()
        .map(|s| {
            vec![
                cell(&s.name),
                cell(&depends_on(s)),
                cell(&s.timeout),
                s.max_retries.to_string(),
                if s.rollback.is_some() { "✓" } else { "✗" }.to_owned(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.width()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.width());
        }
    }
    let mut out = String::new();
    rule(&mut out, &widths, '┌', '┬', '┐');
    row(&mut out, &widths, &header);
    rule(&mut out, &widths, '├', '┼', '┤');
    for r in &rows {
        row(&mut out, &widths, r);
    }
    rule(&mut out, &widths, '└', '┴', '┘');
    out
}
