//! The dependency graph: step names (unique), dependencies (`after`, `after_any`,
//! `after_group`, `after_graft`: each name known) and cycles; and the data flow of a
//! graph without errors.

use std::collections::{BTreeMap, VecDeque};

use darling::error::Accumulator;
use proc_macro2::Span;

use crate::flow::{Absence, Flow, Node};
use crate::parse::{Input, StepKind};
use crate::suggest;
use crate::values::{Name, error, ident_text};

/// The steps' names and dependencies, checked; and their data flow when the
/// dependencies have no errors.
pub(super) struct Graph {
    pub(super) names: Vec<Name>,
    pub(super) flow: Option<Flow>,
}

impl Graph {
    pub(super) fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.value == name)
    }

    pub(super) fn name(&self, i: usize) -> &str {
        &self.names[i].value
    }

    /// Names (a duplicate is reported at its second occurrence), dependencies (each
    /// unknown name at its token) and cycles.
    pub(super) fn of(input: &Input, acc: &mut Accumulator) -> Graph {
        if input.steps.is_empty() {
            if input.item.trait_.is_none() {
                acc.push(error(
                    input.call_site,
                    "this workflow has no steps: mark methods with `#[step]`, `#[graft]` or `#[subworkflow(..)]`",
                ));
            }
            // Otherwise already reported: the attribute is on a trait impl.
            return Graph { names: Vec::new(), flow: None };
        }
        let mut names: Vec<Name> = Vec::new();
        for decl in &input.steps {
            let method = &input.methods[decl.method];
            let name = match &decl.attr.name {
                Some(n) => n.value.clone(),
                None => Name { value: ident_text(&method.ident), span: method.ident.span() },
            };
            if names.iter().any(|n| n.value == name.value) {
                acc.push(error(name.span, format!("duplicate step `{}`: step names must be unique", name.value)));
            }
            names.push(name);
        }
        let errors = std::cell::Cell::new(false);
        let index = |name: &str| names.iter().position(|n| n.value == name);
        let all_names: Vec<&str> = names.iter().map(|n| n.value.as_str()).collect();
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, decl) in input.steps.iter().enumerate() {
            if let Some(g) = &decl.attr.group {
                groups.entry(g.value.value.as_str()).or_default().push(i);
            }
        }

        // Dependencies, with the token that declared each edge.
        let mut deps: Vec<Vec<(usize, Span)>> = vec![Vec::new(); names.len()];
        let mut nodes: Vec<Node> = vec![Node::default(); names.len()];
        for (i, decl) in input.steps.iter().enumerate() {
            let a = &decl.attr;
            let lookup = |option: &str, n: &Name, acc: &mut Accumulator| -> Option<usize> {
                let found = index(&n.value);
                if found.is_none() {
                    errors.set(true);
                    acc.push(error(
                        n.span,
                        format!(
                            "unknown step `{}` in `{option}`{}",
                            n.value,
                            suggest::did_you_mean(&n.value, all_names.iter().copied())
                        ),
                    ));
                }
                found
            };
            for n in a.after.iter().flat_map(|o| &o.value) {
                if let Some(d) = lookup("after", n, acc) {
                    deps[i].push((d, n.span));
                    nodes[i].all.push(d);
                }
            }
            for n in a.after_any.iter().flat_map(|o| &o.value) {
                if a.after.iter().flat_map(|o| &o.value).any(|x| x.value == n.value) {
                    acc.push(error(n.span, format!("`{}` is in both `after` and `after_any`", n.value)));
                    continue;
                }
                if let Some(d) = lookup("after_any", n, acc) {
                    deps[i].push((d, n.span));
                    nodes[i].any.push(d);
                }
            }
            for g in a.after_group.iter().flat_map(|o| &o.value) {
                match groups.get(g.value.as_str()) {
                    Some(members) => {
                        deps[i].extend(members.iter().map(|&m| (m, g.span)));
                        nodes[i].all.extend(members);
                    }
                    None => {
                        errors.set(true);
                        let hint = if groups.is_empty() {
                            "\nno step of this workflow has a `group`".to_owned()
                        } else {
                            suggest::did_you_mean(&g.value, groups.keys().copied())
                        };
                        acc.push(error(g.span, format!("unknown group `{}` in `after_group`{hint}", g.value)));
                    }
                }
            }
            for n in a.after_graft.iter().flat_map(|o| &o.value) {
                if let Some(d) = lookup("after_graft", n, acc) {
                    if matches!(input.steps[d].attr.kind, StepKind::Graft) {
                        deps[i].push((d, n.span));
                        nodes[i].all.push(d);
                    } else {
                        errors.set(true);
                        acc.push(error(
                            n.span,
                            format!("step `{}` in `after_graft` is not a graft: mark it `#[graft]`", n.value),
                        ));
                    }
                }
            }
            nodes[i].own_absence = match (&a.when, a.on_error.as_ref().map(|o| o.value)) {
                (Some(w), _) => Some(Absence::When(ident_text(&w.value))),
                (None, Some("Skip")) => Some(Absence::OnErrorSkip),
                (None, Some("Continue")) => Some(Absence::OnErrorContinue),
                _ => None,
            };
        }
        let cycles = check_cycles(&names, &deps, acc);
        // With a mistake in the dependencies, data-flow errors would only repeat it.
        let flow = if cycles || errors.get() { None } else { Flow::new(nodes) };
        Graph { names, flow }
    }
}

/// Finds cycles by adding dependency edges in declaration order: the edge whose
/// addition closes a loop is reported, at the token that declared it, with the loop
/// `a -> b -> c -> a` (each step runs after the one before it), starting at the
/// earliest-declared step of the loop.
fn check_cycles(names: &[Name], deps: &[Vec<(usize, Span)>], acc: &mut Accumulator) -> bool {
    let mut found = false;
    // `next[x]`: steps that run after `x`.
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for (step, list) in deps.iter().enumerate() {
        for &(dep, span) in list {
            if let Some(mut path) = path_between(&next, step, dep) {
                // `path` runs step -> ... -> dep; the new edge dep -> step closes it.
                let start = path.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i);
                path.rotate_left(start);
                path.push(path[0]);
                let text: Vec<&str> = path.iter().map(|&n| names[n].value.as_str()).collect();
                acc.push(error(span, format!("cycle: {} (each step runs after the one before it)", text.join(" -> "))));
                found = true;
                continue;
            }
            if !next[dep].contains(&step) {
                next[dep].push(step);
            }
        }
    }
    found
}

/// A path `from -> ... -> to` along `next`, if there is one (`[from]` when equal).
fn path_between(next: &[Vec<usize>], from: usize, to: usize) -> Option<Vec<usize>> {
    let mut parent: Vec<Option<usize>> = vec![None; next.len()];
    let mut seen = vec![false; next.len()];
    let mut queue = VecDeque::from([from]);
    seen[from] = true;
    while let Some(n) = queue.pop_front() {
        if n == to {
            let mut path = vec![n];
            let mut cur = n;
            while let Some(p) = parent[cur] {
                path.push(p);
                cur = p;
            }
            path.reverse();
            return Some(path);
        }
        for &m in &next[n] {
            if !seen[m] {
                seen[m] = true;
                parent[m] = Some(n);
                queue.push_back(m);
            }
        }
    }
    None
}
