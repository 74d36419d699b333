//! Unit tests of the graph analysis and the renderers on hand-made snapshots,
//! including ones `build()` would reject (cycles, unknown names): tools may read
//! snapshots from anywhere.

use std::time::Duration;

use serde_json::json;

use super::graph::Graph;
use super::*;

/// A snapshot from `(name, after, timeout)` triples, everything else default.
fn snapshot(steps: &[(&str, &[&str], &str)]) -> DefinitionSnapshot {
    let steps: Vec<_> = steps
        .iter()
        .map(|(name, after, timeout)| {
            json!({
                "name": name, "kind": "task", "after": after, "timeout": timeout, "max_retries": 3,
                "retry_delay": "1s", "retry_backoff": "exponential", "retry_max_delay": "5m",
                "retry_jitter": false, "on_error": "fail", "await_approval": false, "cancellable": true
            })
        })
        .collect();
    serde_json::from_value(json!({
        "name": "w", "version": "0", "steps": steps, "groups": {}, "max_retries": 0, "handlers": {},
        "dead_letter": false, "tags": [], "metadata": {}, "schedules": [], "events": []
    }))
    .unwrap()
}

fn names(g: &Graph<'_>, ids: &[usize]) -> Vec<String> {
    ids.iter().map(|&i| g.name(i).to_owned()).collect()
}

#[test]
fn a_cycle_or_unknown_names_do_not_hang_or_panic() {
    let snap = snapshot(&[("a", &["c", "ghost"], "1s"), ("b", &["a"], "1s"), ("c", &["b"], "1s"), ("d", &[], "2s")]);
    let g = Graph::new(&snap);
    let layers: Vec<Vec<String>> = g.layers().iter().map(|l| names(&g, l)).collect();
    assert_eq!(layers.concat().len(), 4, "every step appears once: {layers:?}");
    assert!(layers[0].contains(&"d".to_owned()));
    let (path, total) = g.critical_path();
    assert!(!path.is_empty() && path.len() <= 4);
    assert!(total.bound().is_some());
    // Renderers cope as well.
    assert!(to_mermaid(&snap, &DiagramOptions::new()).contains("  c --> a\n"));
    assert!(!to_dot(&snap, &DiagramOptions::new()).contains("ghost"));
}

#[test]
fn unparsable_timeouts_count_as_unbounded() {
    let snap = snapshot(&[("a", &[], "dynamic"), ("b", &["a"], "1s")]);
    let r = report(&snap);
    assert_eq!(r.critical_path, ["a", "b"]);
    assert_eq!(r.total_timeout, None);
    assert_eq!(r.estimated_timeout, None);
    let empty = snapshot(&[]);
    let r = report(&empty);
    assert!(r.critical_path.is_empty() && r.execution_order.is_empty());
    assert_eq!(r.total_timeout, Some(Duration::ZERO));
}

#[test]
fn mermaid_ids_avoid_keywords_and_collisions() {
    let snap =
        snapshot(&[("end", &[], "1s"), ("step_0", &["end"], "1s"), ("a b", &["step_0"], "1s"), ("Graph", &[], "1s")]);
    assert_eq!(
        to_mermaid(&snap, &DiagramOptions::new()),
        "graph TD\n  step_0[\"End\"]\n  step_1_1[\"Step 0\"]\n  step_2[\"A B\"]\n  step_3[\"Graph\"]\n  \
         step_0 --> step_1_1\n  step_1_1 --> step_2\n"
    );
}

#[test]
fn mermaid_labels_escape_what_mermaid_would_read() {
    let snap = snapshot(&[("say \"hi\" <b>&#x`\n", &[], "1s")]);
    let chart = to_mermaid(&snap, &DiagramOptions::new());
    assert_eq!(chart, "graph TD\n  step_0[\"Say #quot;hi#quot; #lt;b#gt;#amp;#35;x#96; \"]\n");
}

#[test]
fn dot_quotes_keywords_quotes_and_backslashes() {
    let snap = snapshot(&[("node", &[], "1s"), ("a\"b\\", &["node"], "1s"), ("ünï", &["a\"b\\"], "1s")]);
    let dot = to_dot(&snap, &DiagramOptions::new());
    assert_eq!(
        dot,
        "digraph w {\n  rankdir=TB;\n  node [shape=box, style=rounded];\n  \"node\" [label=\"Node\"];\n  \
         \"a\\\"b\\\\\" [label=\"A\\\"b\\\\\"];\n  \"ünï\" [label=\"Ünï\"];\n  \"node\" -> \"a\\\"b\\\\\";\n  \
         \"a\\\"b\\\\\" -> \"ünï\";\n}\n"
    );
}

#[test]
fn table_escapes_control_characters_and_counts_display_width() {
    let snap = snapshot(&[("tab\there", &[], "1s"), ("漢字", &["tab\there"], "1s")]);
    let table = to_table(&snap);
    assert!(table.contains("│ tab\\there │"), "{table}");
    assert!(table.contains("│ 漢字      │"), "{table}");
}

#[test]
fn state_classes_cover_every_status() {
    use crate::model::status::StepStatus::*;
    let all = [
        Pending,
        Ready,
        Running,
        Retrying,
        Snoozed,
        Awaiting,
        Expanded,
        Completed,
        Skipped,
        Failed,
        Cancelled,
        Compensated,
        CompensationFailed,
    ];
    let classes: std::collections::BTreeSet<&str> = all.iter().map(|&s| StateClass::of(s).as_str()).collect();
    let defined: std::collections::BTreeSet<&str> = StateClass::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(classes, defined, "every class is used by some status, and every status has a defined class");
    assert_eq!(StateClass::of(Retrying), StateClass::Running);
    assert_eq!(StateClass::of(CompensationFailed), StateClass::Failed);
}
