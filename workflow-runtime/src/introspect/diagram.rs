//! What Mermaid and DOT output share: the nodes to draw (the definition's steps,
//! plus steps that grafts added in the execution being shown), their labels,
//! shapes, groups and state classes, and the edges.

use std::collections::HashMap;

use super::graph::{EdgeKind, Graph};
use super::humanize;
use super::options::{DiagramOptions, StateClass};
use crate::model::{DefinitionSnapshot, StepKindName};

/// How a node is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A function step: a (rounded) box.
    Task,
    /// A graft: a hexagon.
    Graft,
    /// A nested workflow: a box with double sides.
    Workflow,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) label: String,
    pub(crate) shape: Shape,
    pub(crate) class: Option<StateClass>,
}

#[derive(Debug)]
pub(crate) struct Diagram {
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Vec<(usize, usize, EdgeKind)>,
    /// Groups and their nodes, by group name.
    pub(crate) groups: Vec<(String, Vec<usize>)>,
    /// Whether nodes carry state classes.
    pub(crate) colored: bool,
}

impl Diagram {
    pub(crate) fn new(def: &DefinitionSnapshot, opts: &DiagramOptions) -> Self {
        let graph = Graph::new(def);
        let state = opts.state.as_deref();
        let status: HashMap<&str, StateClass> = state
            .map(|s| s.steps.iter().map(|st| (st.name.as_str(), StateClass::of(st.status))).collect())
            .unwrap_or_default();
        let mut nodes: Vec<Node> = graph
            .steps()
            .iter()
            .map(|s| Node {
                name: s.name.clone(),
                label: humanize(&s.name),
                shape: match s.kind {
                    StepKindName::Task => Shape::Task,
                    StepKindName::Graft => Shape::Graft,
                    StepKindName::Workflow => Shape::Workflow,
                },
                class: state.map(|_| status.get(s.name.as_str()).copied().unwrap_or(StateClass::Pending)),
            })
            .collect();
        let mut edges: Vec<(usize, usize, EdgeKind)> = graph.edges().collect();
        if let Some(state) = state {
            let mut index: HashMap<String, usize> =
                nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
            // Steps the definition does not have: added by grafts at run time.
            for st in &state.steps {
                if index.contains_key(st.name.as_str()) {
                    continue;
                }
                let i = nodes.len();
                nodes.push(Node {
                    name: st.name.to_string(),
                    label: humanize(&st.name),
                    shape: Shape::Task,
                    class: Some(StateClass::of(st.status)),
                });
                index.insert(st.name.to_string(), i);
                if let Some(graft) = &st.graft
                    && let Some(&g) = index.get(graft)
                {
                    edges.push((g, i, EdgeKind::All));
                    // Steps that wait for the graft wait for what it added.
                    for (d, s) in def.steps.iter().enumerate() {
                        if s.declared.after_graft.contains(graft) {
                            edges.push((i, d, EdgeKind::All));
                        }
                    }
                }
            }
        }
        let groups = if opts.show_groups {
            let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
            let mut groups: Vec<(String, Vec<usize>)> = def
                .groups
                .iter()
                .map(|(g, members)| {
                    (g.clone(), members.iter().filter_map(|m| index.get(m.as_str()).copied()).collect())
                })
                .collect();
            // In the order the definition first mentions them.
            groups.sort_by_key(|(_, members)| members.iter().min().copied().unwrap_or(usize::MAX));
            groups
        } else {
            Vec::new()
        };
        Diagram { nodes, edges, groups, colored: state.is_some() }
    }

    /// The group each node is drawn in, if groups are shown.
    pub(crate) fn group_of(&self) -> Vec<Option<usize>> {
        let mut out = vec![None; self.nodes.len()];
        for (g, (_, members)) in self.groups.iter().enumerate() {
            for &m in members {
                out[m].get_or_insert(g);
            }
        }
        out
    }
}
