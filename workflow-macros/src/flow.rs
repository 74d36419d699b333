//! Data flow between steps: which steps have certainly ended when a step starts (so
//! their outputs can be read), and which steps may end without an output. `validate`
//! uses it to check typed inputs (`#[from(step)]`) and to explain, when a step reads
//! what may not be there, why not.
//!
//! The rules are the engine's: a step starts once every step of `after`,
//! `after_group` and `after_graft` has ended (a skipped or `on_error = continue` step
//! counts as ended) and, with `after_any`, once the first of those completes; a step
//! whose `after_any` steps all end without completing is skipped.

use std::collections::{BTreeSet, VecDeque};

/// Why a step may end without an output while the steps after it still run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Absence {
    /// `when = condition`.
    When(String),
    /// `on_error = skip`.
    OnErrorSkip,
    /// `on_error = continue`.
    OnErrorContinue,
    /// Every `after_any` alternative may end without completing.
    NoAlternative,
}

impl Absence {
    /// The reason, to follow "it may have no output: ".
    pub(crate) fn explain(&self) -> String {
        match self {
            Absence::When(c) => format!("it has `when = {c}` and is skipped when that is false"),
            Absence::OnErrorSkip => "it has `on_error = skip`, so it is skipped if it fails".to_owned(),
            Absence::OnErrorContinue => {
                "it has `on_error = continue`, so the steps after it run without its output if it fails".to_owned()
            }
            Absence::NoAlternative => "it is skipped when none of its `after_any` steps completes".to_owned(),
        }
    }
}

/// One step as the flow sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Node {
    /// Steps that must all have ended (`after`, `after_group`, `after_graft`).
    pub(crate) all: Vec<usize>,
    /// `after_any` alternatives: the first to complete starts the step.
    pub(crate) any: Vec<usize>,
    /// Why the step itself may end without an output (its own options).
    pub(crate) own_absence: Option<Absence>,
}

/// How a step `p` is ordered with respect to a step `s` that reads its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// `p` has ended whenever `s` starts.
    Before,
    /// `p` is `s`.
    Same,
    /// `p` runs after `s`: the path `s -> ... -> p`.
    After(Vec<usize>),
    /// `p` comes before `s` only on the path through `alternative`, an `after_any`
    /// step of `join`; `join` (which is `s` or runs before it) may start as soon as
    /// another alternative completes.
    ThroughAny { join: usize, alternative: usize },
    /// Nothing orders the two steps.
    Unordered,
}

/// The data flow of an acyclic workflow.
#[derive(Debug)]
pub(crate) struct Flow {
    nodes: Vec<Node>,
    /// `before[s]`: the steps that have certainly ended when `s` starts.
    before: Vec<BTreeSet<usize>>,
    /// `upstream[s]`: the steps on some path into `s`.
    upstream: Vec<BTreeSet<usize>>,
    /// `next[s]`: the steps that depend on `s`.
    next: Vec<Vec<usize>>,
    absence: Vec<Option<Absence>>,
}

impl Flow {
    /// The flow of `nodes`, or `None` when the dependencies have a cycle (reported
    /// elsewhere).
    pub(crate) fn new(nodes: Vec<Node>) -> Option<Flow> {
        let n = nodes.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut waiting: Vec<usize> = vec![0; n];
        for (s, node) in nodes.iter().enumerate() {
            let deps: BTreeSet<usize> = node.all.iter().chain(&node.any).copied().collect();
            waiting[s] = deps.len();
            for d in deps {
                next[d].push(s);
            }
        }
        // Kahn's algorithm, in declaration order among ready steps.
        let mut order = Vec::with_capacity(n);
        let mut ready: VecDeque<usize> = (0..n).filter(|&s| waiting[s] == 0).collect();
        while let Some(s) = ready.pop_front() {
            order.push(s);
            for &m in &next[s] {
                waiting[m] -= 1;
                if waiting[m] == 0 {
                    ready.push_back(m);
                }
            }
        }
        if order.len() != n {
            return None;
        }
        let mut before: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        let mut upstream: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        let mut absence: Vec<Option<Absence>> = vec![None; n];
        for &s in &order {
            let node = &nodes[s];
            let with = |sets: &[BTreeSet<usize>], d: usize| {
                let mut set = sets[d].clone();
                set.insert(d);
                set
            };
            let mut certain = BTreeSet::new();
            for &d in &node.all {
                certain.extend(with(&before, d));
            }
            let mut alternatives = node.any.iter().map(|&a| with(&before, a));
            if let Some(first) = alternatives.next() {
                let common = alternatives.fold(first, |acc, set| acc.intersection(&set).copied().collect());
                certain.extend(common);
            }
            let mut reach = BTreeSet::new();
            for &d in node.all.iter().chain(&node.any) {
                reach.extend(with(&upstream, d));
            }
            before[s] = certain;
            upstream[s] = reach;
            absence[s] = node.own_absence.clone().or_else(|| {
                (!node.any.is_empty() && node.any.iter().all(|&a| absence[a].is_some()))
                    .then_some(Absence::NoAlternative)
            });
        }
        Some(Flow { nodes, before, upstream, next, absence })
    }

    /// How `p` is ordered with respect to `s`.
    pub(crate) fn order(&self, p: usize, s: usize) -> Order {
        if p == s {
            return Order::Same;
        }
        if self.before[s].contains(&p) {
            return Order::Before;
        }
        if self.upstream[p].contains(&s) {
            return Order::After(self.path(s, p));
        }
        if self.upstream[s].contains(&p) {
            // The last `after_any` edge on a path from `p` joins into `s` or into a
            // step that certainly runs before it.
            let joins = std::iter::once(s).chain(self.before[s].iter().copied());
            for join in joins {
                for &alternative in &self.nodes[join].any {
                    if alternative == p || self.upstream[alternative].contains(&p) {
                        return Order::ThroughAny { join, alternative };
                    }
                }
            }
        }
        Order::Unordered
    }

    /// Why `p` may end without an output, if it may.
    pub(crate) fn absence(&self, p: usize) -> Option<&Absence> {
        self.absence[p].as_ref()
    }

    /// The `after_any` alternatives of `s`.
    pub(crate) fn alternatives(&self, s: usize) -> &[usize] {
        &self.nodes[s].any
    }

    /// A path `from -> ... -> to` along the dependents.
    fn path(&self, from: usize, to: usize) -> Vec<usize> {
        let mut parent: Vec<Option<usize>> = vec![None; self.next.len()];
        let mut queue = VecDeque::from([from]);
        while let Some(x) = queue.pop_front() {
            if x == to {
                break;
            }
            for &m in &self.next[x] {
                if parent[m].is_none() && m != from {
                    parent[m] = Some(x);
                    queue.push_back(m);
                }
            }
        }
        let mut path = vec![to];
        let mut cur = to;
        while let Some(p) = parent[cur] {
            path.push(p);
            cur = p;
        }
        path.reverse();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(all: &[usize], any: &[usize], own_absence: Option<Absence>) -> Node {
        Node { all: all.to_vec(), any: any.to_vec(), own_absence }
    }

    #[test]
    fn ancestors_through_after_are_certain() {
        // 0 -> 1 -> 2, 0 -> 3
        let flow =
            Flow::new(vec![node(&[], &[], None), node(&[0], &[], None), node(&[1], &[], None), node(&[0], &[], None)])
                .unwrap();
        assert_eq!(flow.order(0, 2), Order::Before);
        assert_eq!(flow.order(1, 2), Order::Before);
        assert_eq!(flow.order(2, 2), Order::Same);
        assert_eq!(flow.order(2, 0), Order::After(vec![0, 1, 2]));
        assert_eq!(flow.order(3, 2), Order::Unordered, "siblings");
    }

    #[test]
    fn after_any_keeps_only_what_every_alternative_has_seen() {
        // 0 -> 1, 0 -> 2, 3 after_any [1, 2], 4 after 3
        let flow = Flow::new(vec![
            node(&[], &[], None),
            node(&[0], &[], None),
            node(&[0], &[], None),
            node(&[], &[1, 2], None),
            node(&[3], &[], None),
        ])
        .unwrap();
        assert_eq!(flow.order(0, 3), Order::Before, "before every alternative");
        assert_eq!(flow.order(1, 3), Order::ThroughAny { join: 3, alternative: 1 });
        assert_eq!(flow.order(2, 4), Order::ThroughAny { join: 3, alternative: 2 });
        assert_eq!(flow.order(3, 4), Order::Before);
    }

    #[test]
    fn a_branch_on_one_path_only_is_not_certain() {
        // 0 -> 1 -> 3, 2 -> 4, 5 after_any [3, 4]: 1 is on the path through 3 only.
        let flow = Flow::new(vec![
            node(&[], &[], None),
            node(&[0], &[], None),
            node(&[], &[], None),
            node(&[1], &[], None),
            node(&[2], &[], None),
            node(&[], &[3, 4], None),
        ])
        .unwrap();
        assert_eq!(flow.order(1, 5), Order::ThroughAny { join: 5, alternative: 3 });
    }

    #[test]
    fn absence_follows_conditions_errors_and_alternatives() {
        let flow = Flow::new(vec![
            node(&[], &[], Some(Absence::When("ready".into()))),
            node(&[], &[], Some(Absence::OnErrorSkip)),
            node(&[], &[0, 1], None),
            node(&[0], &[], None),
            node(&[], &[0, 3], None),
        ])
        .unwrap();
        assert_eq!(flow.absence(0), Some(&Absence::When("ready".into())));
        assert_eq!(flow.absence(2), Some(&Absence::NoAlternative), "both alternatives may be skipped");
        assert_eq!(flow.absence(3), None, "a skipped dependency counts as ended");
        assert_eq!(flow.absence(4), None, "one alternative always completes");
    }

    #[test]
    fn cycles_have_no_flow() {
        assert!(Flow::new(vec![node(&[1], &[], None), node(&[0], &[], None)]).is_none());
    }
}
