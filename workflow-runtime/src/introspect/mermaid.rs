//! Mermaid flowcharts.

use std::collections::HashSet;
use std::fmt::Write;

use super::diagram::{Diagram, Shape};
use super::graph::EdgeKind;
use super::humanize;
use super::options::{DiagramOptions, StateClass};
use crate::model::DefinitionSnapshot;

/// Words Mermaid's flowchart grammar reads as keywords where a node id may stand.
const RESERVED: &[&str] = &[
    "end",
    "graph",
    "flowchart",
    "flowchart-elk",
    "subgraph",
    "style",
    "linkstyle",
    "classdef",
    "class",
    "click",
    "call",
    "href",
    "direction",
    "default",
    "interpolate",
    "accTitle",
    "accDescr",
];

fn plain_id(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Gives every name an id Mermaid accepts: the name itself when it is a plain
/// identifier and no keyword, otherwise `step_N` (`group_N` for groups), never
/// used twice.
struct Ids {
    used: HashSet<String>,
}

impl Ids {
    fn id(&mut self, name: &str, fallback: &str, n: usize) -> String {
        let mut candidate = if plain_id(name) { name.to_owned() } else { format!("{fallback}_{n}") };
        let mut k = 1;
        while self.used.contains(&candidate) {
            candidate = format!("{fallback}_{n}_{k}");
            k += 1;
        }
        self.used.insert(candidate.clone());
        candidate
    }
}

/// Text inside a quoted Mermaid label: quotes, markup and entity starts are
/// written as Mermaid entity codes, line breaks as spaces.
fn label(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '`' => out.push_str("#96;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders a definition as a Mermaid flowchart.
///
/// Each step is a node labelled with its humanized name (`validate_order` →
/// "Validate Order"): a box for a function, `[[...]]` for a nested workflow,
/// `{{...}}` for a graft. `after` dependencies are solid arrows, `after_any` ones
/// dotted. With [`show_groups`](DiagramOptions::show_groups) each parallel group is
/// a `subgraph`; with a [`state`](DiagramOptions::state) each node gets a class
/// (`:::completed`, `:::running`, ...) and the classes are defined with their
/// colours (see [`StateClass`]).
///
/// ```
/// use sagaflow_runtime::{Context, Outcome, Step, StepResult, Workflow, introspect};
///
/// async fn noop(_ctx: Context) -> StepResult { Ok(Outcome::Done) }
///
/// let def = Workflow::new("orders")
///     .step("validate", noop)
///     .step_with("ship_order", noop, Step::opts().after("validate"))
///     .build()?;
/// let chart = introspect::to_mermaid(&def.snapshot(), &Default::default());
/// assert_eq!(chart, "graph TD\n  validate[\"Validate\"]\n  ship_order[\"Ship Order\"]\n  validate --> ship_order\n");
/// # Ok::<(), sagaflow_runtime::BuildError>(())
/// ```
pub fn to_mermaid(def: &DefinitionSnapshot, opts: &DiagramOptions) -> String {
    let d = Diagram::new(def, opts);
    let mut ids = Ids { used: HashSet::new() };
    let node_ids: Vec<String> = d.nodes.iter().enumerate().map(|(i, n)| ids.id(&n.name, "step", i)).collect();
    let group_ids: Vec<String> = d.groups.iter().enumerate().map(|(i, (g, _))| ids.id(g, "group", i)).collect();
    let group_of = d.group_of();

    let mut out = String::new();
    let _ = writeln!(out, "graph {}", opts.direction.mermaid());
    let node_line = |out: &mut String, i: usize, indent: &str| {
        let n = &d.nodes[i];
        let text = label(&n.label);
        let shape = match n.shape {
            Shape::Task => format!("[{text}]"),
            Shape::Graft => format!("{{{{{text}}}}}"),
            Shape::Workflow => format!("[[{text}]]"),
        };
        let class = n.class.map(|c| format!(":::{}", c.as_str())).unwrap_or_default();
        let _ = writeln!(out, "{indent}{}{shape}{class}", node_ids[i]);
    };
    for (i, g) in group_of.iter().enumerate() {
        if g.is_none() {
            node_line(&mut out, i, "  ");
        }
    }
    for (g, (name, members)) in d.groups.iter().enumerate() {
        let _ = writeln!(out, "  subgraph {}[{}]", group_ids[g], label(&humanize(name)));
        for &m in members {
            if group_of[m] == Some(g) {
                node_line(&mut out, m, "    ");
            }
        }
        out.push_str("  end\n");
    }
    for &(from, to, kind) in &d.edges {
        let arrow = match kind {
            EdgeKind::All => "-->",
            EdgeKind::Any => "-.->",
        };
        let _ = writeln!(out, "  {} {arrow} {}", node_ids[from], node_ids[to]);
    }
    if d.colored {
        for c in StateClass::ALL {
            let color = c.color().map(|c| format!(",color:{c}")).unwrap_or_default();
            let _ = writeln!(out, "  classDef {} fill:{}{color}", c.as_str(), c.fill());
        }
    }
    out
}
