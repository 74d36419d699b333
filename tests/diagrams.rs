//! The diagrams read by the real tools: Mermaid output parsed by mermaid.js (run
//! by Node, `tests/mermaid/parse.mjs`), DOT output rendered by Graphviz
//! (`dot -Tsvg`, and `dot -Tjson` to read back what Graphviz understood).
//!
//! Each test also feeds the tool a broken diagram, to show that it does reject
//! what it cannot read.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use sagaflow::introspect::{self, DiagramOptions, Direction, StateClass, humanize};
use sagaflow::prelude::*;
use sagaflow::{ExecutionState, WorkflowDef};
use serde_json::Value;

use crate::introspection::{international, order_processing, rolled_back_state, running_state, signup, signup_engine};
use crate::tools;

async fn noop(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}

/// Names that are keywords, or hold quotes, markup, entities, backslashes and
/// other scripts, in Mermaid's or DOT's eyes; groups named like keywords too.
fn awkward() -> WorkflowDef {
    Workflow::new("node")
        .step("end", noop)
        .step_with("graph", noop, Step::opts().after("end").group("end"))
        .step_with("class", noop, Step::opts().after("end").group("end"))
        .step_with("x-ray", noop, Step::opts().after_group("end"))
        .step_with("o_ring", noop, Step::opts().after("x-ray").group("node"))
        .step_with("say \"hi\"", noop, Step::opts().after("o_ring").group("node"))
        .step_with("a<b>&c", noop, Step::opts().after_any(["o_ring", "say \"hi\""]))
        .step_with("hash#tag #quot;", noop, Step::opts().after("a<b>&c"))
        .step_with("back\\slash\\", noop, Step::opts().after("hash#tag #quot;"))
        .step_with("1st step", noop, Step::opts().after("back\\slash\\"))
        .step_with("default", noop, Step::opts().after("1st step"))
        .step_with("`tick`", noop, Step::opts().after("default"))
        .build()
        .unwrap()
}

/// One diagram to check: the definition, the options, and the expected nodes
/// (label → state class) and edges (label → label, dotted).
struct Case {
    name: String,
    def: WorkflowDef,
    opts: DiagramOptions,
}

impl Case {
    fn new(name: &str, def: WorkflowDef, opts: DiagramOptions) -> Self {
        Case { name: name.to_owned(), def, opts }
    }

    fn labels(&self) -> BTreeMap<String, Option<&'static str>> {
        let state: Option<&ExecutionState> = self.opts.execution_state();
        let mut out: BTreeMap<String, Option<&'static str>> = self
            .def
            .steps()
            .iter()
            .map(|s| {
                let class = state
                    .map(|st| st.step(s.name()).map_or(StateClass::Pending, |x| StateClass::of(x.status)).as_str());
                (humanize(s.name()), class)
            })
            .collect();
        if let Some(st) = state {
            for s in &st.steps {
                out.entry(humanize(&s.name)).or_insert(Some(StateClass::of(s.status).as_str()));
            }
        }
        out
    }

    fn edges(&self) -> BTreeSet<(String, String, bool)> {
        let mut out = BTreeSet::new();
        for s in self.def.steps() {
            let d = s.declared();
            for dep in self.def.dependencies(s.name()) {
                out.insert((humanize(dep), humanize(s.name()), d.after_any.iter().any(|a| a == dep)));
            }
        }
        if let Some(st) = self.opts.execution_state() {
            for s in &st.steps {
                if let Some(g) = &s.graft {
                    out.insert((humanize(g), humanize(&s.name), false));
                    for d in self.def.steps().iter().filter(|d| d.declared().after_graft.contains(g)) {
                        out.insert((humanize(&s.name), humanize(d.name()), false));
                    }
                }
            }
        }
        out
    }

    fn groups(&self) -> BTreeMap<String, BTreeSet<String>> {
        if !self.opts.groups_shown() {
            return BTreeMap::new();
        }
        self.def.groups().map(|(g, steps)| (humanize(g), steps.iter().map(|s| humanize(s)).collect())).collect()
    }
}

async fn cases() -> Vec<Case> {
    let engine = Engine::builder().register(order_processing()).build().await.unwrap();
    let running = running_state(&engine).await;
    let rolled_back = rolled_back_state(&engine).await;
    let groups = DiagramOptions::new().show_groups(true);
    let engine = signup_engine().await;
    let id = engine.start("signup", serde_json::json!({})).await.unwrap();
    let grafted = engine.wait(id).await.unwrap();
    vec![
        Case::new("signup_grafted", signup(), DiagramOptions::new().state(grafted)),
        Case::new("order", order_processing(), DiagramOptions::new()),
        Case::new("order_groups", order_processing(), groups.clone()),
        Case::new("order_lr", order_processing(), DiagramOptions::new().direction(Direction::LeftRight)),
        Case::new("order_running", order_processing(), groups.clone().state(running)),
        Case::new("order_rolled_back", order_processing(), DiagramOptions::new().state(rolled_back)),
        Case::new("awkward", awkward(), groups.clone()),
        Case::new("international", international(), groups),
    ]
}

#[tokio::test(start_paused = true)]
async fn mermaid_output_is_parsed_by_mermaid_js() {
    if !tools::have_mermaid() {
        return;
    }
    let cases = cases().await;
    let dir = tools::scratch("mermaid");
    let mut files = Vec::new();
    for case in &cases {
        let path = dir.join(format!("{}.mmd", case.name));
        std::fs::write(&path, introspect::to_mermaid(&case.def.snapshot(), &case.opts)).unwrap();
        files.push(path);
    }
    let broken = dir.join("broken.mmd");
    std::fs::write(&broken, "graph TD\n  a[\"A\"] --> end\n  b[\"unclosed\n").unwrap();
    files.push(broken);

    let out = Command::new("node").arg(tools::mermaid_dir().join("parse.mjs")).args(&files).output().unwrap();
    assert!(out.status.success(), "the mermaid.js checker failed: {}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), cases.len() + 1);
    assert!(results[cases.len()]["error"].is_string(), "mermaid.js rejects a broken chart: {}", results[cases.len()]);

    for (case, r) in cases.iter().zip(&results) {
        let name = &case.name;
        assert!(r["error"].is_null(), "{name}: mermaid.js rejected the chart: {}", r["error"]);
        assert_eq!(r["type"], "flowchart-v2", "{name}");
        // mermaid.js reads `TD` as its synonym `TB`.
        let direction = if name == "order_lr" { "LR" } else { "TB" };
        assert_eq!(r["direction"], direction, "{name}");

        let mut text_of = BTreeMap::new();
        let mut labels = BTreeMap::new();
        for v in r["vertices"].as_array().unwrap() {
            let text = v["text"].as_str().unwrap().to_owned();
            text_of.insert(v["id"].as_str().unwrap().to_owned(), text.clone());
            let classes: Vec<&str> = v["classes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
            assert!(classes.len() <= 1, "{name}: {v}");
            labels.insert(text, classes.first().map(|c| c.to_string()));
        }
        let expected: BTreeMap<String, Option<String>> =
            case.labels().into_iter().map(|(k, v)| (k, v.map(str::to_owned))).collect();
        assert_eq!(labels, expected, "{name}: the nodes mermaid.js read (label → class)");

        let edges: BTreeSet<(String, String, bool)> = r["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let end = |k: &str| text_of[e[k].as_str().unwrap()].clone();
                (end("start"), end("end"), e["stroke"] == "dotted")
            })
            .collect();
        assert_eq!(edges, case.edges(), "{name}: the edges mermaid.js read");

        let groups: BTreeMap<String, BTreeSet<String>> = r["subgraphs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let nodes = s["nodes"].as_array().unwrap().iter().map(|n| text_of[n.as_str().unwrap()].clone());
                (s["title"].as_str().unwrap().to_owned(), nodes.collect())
            })
            .collect();
        assert_eq!(groups, case.groups(), "{name}: the subgraphs mermaid.js read");

        let classes = r["classes"].as_object().unwrap();
        if case.opts.execution_state().is_some() {
            for c in StateClass::ALL {
                let styles = classes[c.as_str()].as_array().unwrap();
                assert_eq!(styles[0], format!("fill:{}", c.fill()), "{name}");
            }
        } else {
            assert!(classes.is_empty(), "{name}");
        }
    }
}

/// Graphviz's escapes in a label as written: `\\` is one backslash.
fn dot_label(raw: &str) -> String {
    raw.replace("\\\\", "\\")
}

#[tokio::test(start_paused = true)]
async fn dot_output_is_rendered_by_graphviz() {
    if !tools::have_dot() {
        return;
    }
    let broken = tools::run(Command::new("dot").arg("-Tsvg"), "digraph x { a -> ; }");
    assert!(!broken.status.success(), "dot rejects a broken graph");

    for case in cases().await {
        let name = &case.name;
        let dot = introspect::to_dot(&case.def.snapshot(), &case.opts);

        let svg = tools::run(Command::new("dot").arg("-Tsvg"), &dot);
        let stderr = String::from_utf8_lossy(&svg.stderr);
        assert!(svg.status.success() && stderr.is_empty(), "{name}: dot -Tsvg failed: {stderr}\n{dot}");
        let svg = String::from_utf8(svg.stdout).unwrap();
        assert!(svg.contains("<svg"), "{name}");
        assert_eq!(svg.matches("class=\"node\"").count(), case.labels().len(), "{name}: nodes drawn");
        assert_eq!(svg.matches("class=\"edge\"").count(), case.edges().len(), "{name}: edges drawn");
        assert_eq!(svg.matches("class=\"cluster\"").count(), case.groups().len(), "{name}: clusters drawn");

        let json = tools::run(Command::new("dot").arg("-Tjson"), &dot);
        assert!(json.status.success(), "{name}: dot -Tjson failed: {}", String::from_utf8_lossy(&json.stderr));
        let graph: Value = serde_json::from_slice(&json.stdout).unwrap();
        let objects = graph["objects"].as_array().unwrap();
        let is_cluster = |o: &Value| o["name"].as_str().unwrap().starts_with("cluster");
        let mut labels = BTreeMap::new();
        for o in objects.iter().filter(|o| !is_cluster(o)) {
            let fill = o["fillcolor"].as_str().map(str::to_owned);
            labels.insert(dot_label(o["label"].as_str().unwrap()), fill);
        }
        let fill_of = |class: &str| StateClass::ALL.iter().find(|c| c.as_str() == class).unwrap().fill().to_owned();
        let expected: BTreeMap<String, Option<String>> =
            case.labels().into_iter().map(|(k, v)| (k, v.map(fill_of))).collect();
        assert_eq!(labels, expected, "{name}: the nodes Graphviz read (label → fill)");

        let label_of = |i: &Value| dot_label(objects[i.as_u64().unwrap() as usize]["label"].as_str().unwrap());
        let edges: BTreeSet<(String, String, bool)> = graph["edges"]
            .as_array()
            .map(|es| {
                es.iter()
                    .map(|e| (label_of(&e["tail"]), label_of(&e["head"]), e["style"].as_str() == Some("dashed")))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(edges, case.edges(), "{name}: the edges Graphviz read");

        let groups: BTreeMap<String, BTreeSet<String>> = objects
            .iter()
            .filter(|o| is_cluster(o))
            .map(|c| {
                let nodes = c["nodes"].as_array().unwrap().iter().map(label_of).collect();
                (dot_label(c["label"].as_str().unwrap()), nodes)
            })
            .collect();
        assert_eq!(groups, case.groups(), "{name}: the clusters Graphviz read");
    }
}
