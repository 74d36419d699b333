//! The dependency graph of a [`DefinitionSnapshot`], resolved once: which steps wait
//! for which, the parallel layers, and the critical path by timeouts.
//!
//! Everything works on the snapshot alone (no code), and tolerates snapshots that
//! did not come from `build()`: unknown names are ignored and a cycle cannot hang it.

use std::collections::HashMap;
use std::time::Duration;

use crate::model::{DefinitionSnapshot, StepSnapshot, parse_duration};

/// A step's upper bound on time: fixed, or unbounded (an `infinity` or dynamic
/// timeout, which introspection cannot bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Cost {
    /// Unbounded steps on the way: any number above zero makes the total unbounded.
    unbounded: u32,
    /// The sum of the fixed timeouts on the way.
    fixed: Duration,
}

impl Cost {
    fn of(step: &StepSnapshot) -> Cost {
        match parse_duration(&step.timeout) {
            Ok(Some(d)) => Cost { unbounded: 0, fixed: d },
            // `infinity`, `dynamic`, or a text that is not a duration.
            _ => Cost { unbounded: 1, fixed: Duration::ZERO },
        }
    }

    fn plus(self, other: Cost) -> Cost {
        Cost { unbounded: self.unbounded + other.unbounded, fixed: self.fixed.saturating_add(other.fixed) }
    }

    /// The bound, if finite.
    pub(crate) fn bound(self) -> Option<Duration> {
        (self.unbounded == 0).then_some(self.fixed)
    }
}

/// How one step depends on another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EdgeKind {
    /// `after`, `after_group` or `after_graft`: waits for it to end.
    All,
    /// `after_any`: the first of these to complete starts the step.
    Any,
}

/// The resolved graph. Step indexes are positions in `snapshot.steps`.
#[derive(Debug)]
pub(crate) struct Graph<'a> {
    pub(crate) snapshot: &'a DefinitionSnapshot,
    /// For each step, the steps it waits for (deduplicated, in declaration order of
    /// the options: `after`, `after_group`, `after_graft`, then `after_any`).
    pub(crate) deps: Vec<Vec<(usize, EdgeKind)>>,
}

impl<'a> Graph<'a> {
    pub(crate) fn new(snapshot: &'a DefinitionSnapshot) -> Self {
        let index: HashMap<&str, usize> =
            snapshot.steps.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        let deps = snapshot
            .steps
            .iter()
            .enumerate()
            .map(|(me, s)| {
                let mut out: Vec<(usize, EdgeKind)> = Vec::new();
                let mut push = |name: &str, kind: EdgeKind| {
                    if let Some(&i) = index.get(name)
                        && i != me
                        && !out.iter().any(|&(j, _)| j == i)
                    {
                        out.push((i, kind));
                    }
                };
                let d = &s.declared;
                for n in &d.after {
                    push(n, EdgeKind::All);
                }
                for g in &d.after_group {
                    for n in snapshot.groups.get(g).into_iter().flatten() {
                        push(n, EdgeKind::All);
                    }
                }
                for n in &d.after_graft {
                    push(n, EdgeKind::All);
                }
                for n in &d.after_any {
                    push(n, EdgeKind::Any);
                }
                out
            })
            .collect();
        Graph { snapshot, deps }
    }

    pub(crate) fn steps(&self) -> &'a [StepSnapshot] {
        &self.snapshot.steps
    }

    pub(crate) fn name(&self, i: usize) -> &'a str {
        &self.snapshot.steps[i].name
    }

    /// Every edge `(from, to, kind)`, ordered by the dependent, then as declared.
    pub(crate) fn edges(&self) -> impl Iterator<Item = (usize, usize, EdgeKind)> + '_ {
        self.deps.iter().enumerate().flat_map(|(to, ds)| ds.iter().map(move |&(from, kind)| (from, to, kind)))
    }

    /// A topological order (Kahn's algorithm, smallest declaration index first).
    /// Steps caught in a cycle, which `build()` rejects, come last in declaration
    /// order.
    fn topological(&self) -> Vec<usize> {
        let n = self.deps.len();
        let mut waiting: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (from, to, _) in self.edges() {
            dependents[from].push(to);
        }
        let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &d in &dependents[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        if order.len() < n {
            let mut seen = vec![false; n];
            for &i in &order {
                seen[i] = true;
            }
            order.extend((0..n).filter(|&i| !seen[i]));
        }
        order
    }

    /// For each step, the latest of its `all` dependencies and the earliest of its
    /// `any` dependencies, by `value`; `None` when it has no dependency (or only
    /// ones not computed yet, inside a cycle). Returns the chosen value and the
    /// dependency that set it.
    fn gate<T: Copy + Ord>(&self, step: usize, value: &[Option<T>]) -> Option<(T, usize)> {
        let mut latest_all: Option<(T, usize)> = None;
        let mut earliest_any: Option<(T, usize)> = None;
        for &(d, kind) in &self.deps[step] {
            let Some(v) = value[d] else { continue };
            match kind {
                EdgeKind::All => {
                    if latest_all.is_none_or(|(best, _)| v > best) {
                        latest_all = Some((v, d));
                    }
                }
                EdgeKind::Any => {
                    if earliest_any.is_none_or(|(best, _)| v < best) {
                        earliest_any = Some((v, d));
                    }
                }
            }
        }
        match (latest_all, earliest_any) {
            (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The execution order as parallel layers: layer 0 holds the steps without
    /// dependencies; a step sits one layer after the latest of its `after`
    /// dependencies (or after the earliest of its `after_any` ones). Steps of one
    /// layer can run at the same time. Within a layer, declaration order.
    pub(crate) fn layers(&self) -> Vec<Vec<usize>> {
        let n = self.deps.len();
        let mut level: Vec<Option<usize>> = vec![None; n];
        for i in self.topological() {
            level[i] = Some(self.gate(i, &level).map_or(0, |(l, _)| l + 1));
        }
        let depth = level.iter().flatten().max().map_or(0, |m| m + 1);
        let mut layers = vec![Vec::new(); depth];
        for (i, l) in level.iter().enumerate() {
            if let Some(l) = l {
                layers[*l].push(i);
            }
        }
        layers
    }

    /// The critical path by timeouts: the chain of steps whose timeouts add up to
    /// the longest time an execution's steps can take (each attempt bounded by its
    /// timeout; retries not counted). A step with an `after_any` dependency starts
    /// when the first of them can have ended. Returns the path (first step first)
    /// and its total. Ties go to the step declared first.
    pub(crate) fn critical_path(&self) -> (Vec<usize>, Cost) {
        let n = self.deps.len();
        let mut finish: Vec<Option<Cost>> = vec![None; n];
        let mut via: Vec<Option<usize>> = vec![None; n];
        for i in self.topological() {
            let start = match self.gate(i, &finish) {
                Some((c, d)) => {
                    via[i] = Some(d);
                    c
                }
                None => Cost::default(),
            };
            finish[i] = Some(start.plus(Cost::of(&self.snapshot.steps[i])));
        }
        let mut end: Option<(Cost, usize)> = None;
        for (i, f) in finish.iter().enumerate() {
            if let Some(f) = *f
                && end.is_none_or(|(best, _)| f > best)
            {
                end = Some((f, i));
            }
        }
        let Some((total, last)) = end else { return (Vec::new(), Cost::default()) };
        let mut path = vec![last];
        let mut at = last;
        while let Some(prev) = via[at] {
            if path.contains(&prev) {
                break;
            }
            path.push(prev);
            at = prev;
        }
        path.reverse();
        (path, total)
    }
}
