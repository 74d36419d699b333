//! A workflow's DAG as an SVG picture: one column per parallel layer, steps
//! coloured by their state in an execution.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::introspect::StateClass;
use crate::introspect::graph::{EdgeKind, Graph};
use crate::model::DefinitionSnapshot;
use crate::model::execution::ExecutionState;

const BOX_W: usize = 170;
const BOX_H: usize = 34;
const GAP_X: usize = 56;
const GAP_Y: usize = 14;
const PAD: usize = 10;

/// Escapes text for HTML and XML.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The picture of `def`, with the step states of `state` when given. Every step
/// is a `<g class="step {state}" data-step="{name}">`.
pub(crate) fn dag(def: &DefinitionSnapshot, state: Option<&ExecutionState>) -> String {
    let graph = Graph::new(def);
    let layers = graph.layers();
    let mut at: HashMap<usize, (usize, usize)> = HashMap::new();
    for (col, layer) in layers.iter().enumerate() {
        for (row, &i) in layer.iter().enumerate() {
            at.insert(i, (PAD + col * (BOX_W + GAP_X), PAD + row * (BOX_H + GAP_Y)));
        }
    }
    let rows = layers.iter().map(Vec::len).max().unwrap_or(0);
    let width = PAD * 2 + layers.len() * (BOX_W + GAP_X) - GAP_X.min(layers.len() * GAP_X);
    let height = PAD * 2 + rows * (BOX_H + GAP_Y) - GAP_Y.min(rows * GAP_Y);
    let states: HashMap<&str, StateClass> =
        state.map(|s| s.steps.iter().map(|st| (&*st.name, StateClass::of(st.status))).collect()).unwrap_or_default();

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        escape(&def.name)
    );
    for (from, to, kind) in graph.edges() {
        let (Some(&(x1, y1)), Some(&(x2, y2))) = (at.get(&from), at.get(&to)) else { continue };
        let dash = if kind == EdgeKind::Any { r#" stroke-dasharray="4 3""# } else { "" };
        let _ = write!(
            svg,
            r##"<line x1="{}" y1="{}" x2="{x2}" y2="{}" stroke="#888" stroke-width="1.5"{dash}/>"##,
            x1 + BOX_W,
            y1 + BOX_H / 2,
            y2 + BOX_H / 2
        );
    }
    for (i, step) in def.steps.iter().enumerate() {
        let Some(&(x, y)) = at.get(&i) else { continue };
        let class = states.get(step.name.as_str()).copied().unwrap_or(StateClass::Pending);
        let label = if step.name.chars().count() > 22 {
            format!("{}…", step.name.chars().take(21).collect::<String>())
        } else {
            step.name.clone()
        };
        let text_color = class.color().unwrap_or("#111");
        let _ = write!(
            svg,
            r##"<g class="step {cls}" data-step="{name}"><title>{name}: {cls}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="#555"/><text x="{tx}" y="{ty}" font-family="sans-serif" font-size="13" text-anchor="middle" fill="{text_color}">{label}</text></g>"##,
            cls = class.as_str(),
            name = escape(&step.name),
            fill = class.fill(),
            tx = x + BOX_W / 2,
            ty = y + BOX_H / 2 + 5,
            label = escape(&label),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Workflow;
    use crate::model::{Outcome, Step, StepResult};

    async fn noop(_ctx: crate::model::Context) -> StepResult {
        Ok(Outcome::Done)
    }

    #[test]
    fn every_step_is_drawn_once_with_its_edges() {
        let def = Workflow::new("diamond")
            .step("a", noop)
            .step_with("b", noop, Step::opts().after("a"))
            .step_with("c", noop, Step::opts().after("a"))
            .step_with("d<&>", noop, Step::opts().after(["b", "c"]))
            .build()
            .expect("valid");
        let svg = dag(&def.snapshot(), None);
        assert_eq!(svg.matches("<g class=\"step pending\"").count(), 4, "four pending steps: {svg}");
        assert_eq!(svg.matches("<line ").count(), 4, "four edges");
        assert!(svg.contains("data-step=\"d&lt;&amp;&gt;\""), "names are escaped");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
