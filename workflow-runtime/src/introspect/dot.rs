//! Graphviz DOT graphs.

use std::fmt::Write;

use super::diagram::{Diagram, Shape};
use super::graph::EdgeKind;
use super::humanize;
use super::options::DiagramOptions;
use crate::model::DefinitionSnapshot;

const KEYWORDS: &[&str] = &["node", "edge", "graph", "digraph", "subgraph", "strict"];

/// A DOT id: bare when it is a plain ASCII identifier and no keyword, quoted
/// otherwise (quotes and backslashes escaped, so any name round-trips).
fn id(name: &str) -> String {
    let mut chars = name.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(name));
    if plain { name.to_owned() } else { quoted(name) }
}

/// A quoted DOT string. Backslashes are doubled so that Graphviz's label escapes
/// (`\n`, `\N`, ...) never fire on user text; line breaks become spaces.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders a definition as a Graphviz `digraph`, for `dot -Tsvg` and friends.
///
/// Nodes are rounded boxes labelled with the humanized step name; nested
/// workflows have a double border, grafts are hexagons. `after_any` edges are
/// dashed. With [`show_groups`](DiagramOptions::show_groups) each parallel group is
/// a dashed `cluster`; with a [`state`](DiagramOptions::state) nodes are filled with
/// their state's colour (see [`StateClass`](super::StateClass)).
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
/// let dot = introspect::to_dot(&def.snapshot(), &Default::default());
/// assert!(dot.starts_with("digraph orders {\n  rankdir=TB;\n"));
/// assert!(dot.contains("  ship_order [label=\"Ship Order\"];\n"));
/// assert!(dot.contains("  validate -> ship_order;\n"));
/// # Ok::<(), sagaflow_runtime::BuildError>(())
/// ```
pub fn to_dot(def: &DefinitionSnapshot, opts: &DiagramOptions) -> String {
    let d = Diagram::new(def, opts);
    let group_of = d.group_of();
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", id(&def.name));
    let _ = writeln!(out, "  rankdir={};", opts.direction.dot());
    out.push_str("  node [shape=box, style=rounded];\n");
    let node_line = |out: &mut String, i: usize, indent: &str| {
        let n = &d.nodes[i];
        let mut attrs = vec![format!("label={}", quoted(&n.label))];
        match n.shape {
            Shape::Task => {}
            Shape::Graft => attrs.push("shape=hexagon".into()),
            Shape::Workflow => attrs.push("peripheries=2".into()),
        }
        if let Some(c) = n.class {
            attrs.push("style=\"rounded,filled\"".into());
            attrs.push(format!("fillcolor=\"{}\"", c.fill()));
            if let Some(color) = c.color() {
                attrs.push(format!("fontcolor=\"{color}\""));
            }
        }
        let _ = writeln!(out, "{indent}{} [{}];", id(&n.name), attrs.join(", "));
    };
    for (i, g) in group_of.iter().enumerate() {
        if g.is_none() {
            node_line(&mut out, i, "  ");
        }
    }
    for (g, (name, members)) in d.groups.iter().enumerate() {
        let _ = writeln!(out, "  subgraph {} {{", id(&format!("cluster_{name}")));
        let _ = writeln!(out, "    label={};", quoted(&humanize(name)));
        out.push_str("    style=dashed;\n");
        for &m in members {
            if group_of[m] == Some(g) {
                node_line(&mut out, m, "    ");
            }
        }
        out.push_str("  }\n");
    }
    for &(from, to, kind) in &d.edges {
        let style = match kind {
            EdgeKind::All => "",
            EdgeKind::Any => " [style=dashed]",
        };
        let _ = writeln!(out, "  {} -> {}{style};", id(&d.nodes[from].name), id(&d.nodes[to].name));
    }
    out.push_str("}\n");
    out
}
