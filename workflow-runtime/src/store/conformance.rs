//! The conformance suite: what every [`Store`] must do. Each store's tests call
//! [`run_all`] with a function that makes a fresh, empty store.
//!
//! Every check panics with a message naming the rule that was broken.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};

use super::{DeadLetter, ExecutionQuery, JournalEntry, NewExecution, ParentRef, Store, StoreError, Upgrade, Write};
use crate::model::execution::{ExecutionState, Progress, Trigger};
use crate::model::status::Status;
use crate::model::{DefinitionSnapshot, ExecutionId, StepError};

/// Runs every check, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    journal_round_trip(&make().await).await;
    finish_moves_to_history(&make().await).await;
    pruning_ended_executions(&make().await).await;
    delayed_starts(&make().await).await;
    reschedules(&make().await).await;
    ended_unique_keys(&make().await).await;
    dead_letters(&make().await).await;
    definitions(&make().await).await;
    batches_are_atomic(&make().await).await;
    concurrent_writers_keep_order(&make().await).await;
    values_round_trip(&make().await).await;
    schedule_ticks(&make().await).await;
    upgrades(&make().await).await;
    large_batches(&make().await).await;
    schedule_records_round_trip(&make().await).await;
    retried_batches_are_idempotent(&make().await).await;
}

/// A batch written again (its first commit's outcome was unknown to the writer)
/// leaves the store as if it was written once.
async fn retried_batches_are_idempotent(store: &impl Store) {
    let n = new_execution("retried", t(0));
    let batch = vec![Write::Create(Box::new(n.clone())), Write::Event(entry(n.id, 1)), Write::Event(entry(n.id, 2))];
    store.write(&batch).await.expect("the first try");
    store.write(&batch).await.expect("the second try");
    store.write(&[Write::Event(entry(n.id, 2)), Write::Event(entry(n.id, 3))]).await.expect("an overlapping try");
    let live = store.unfinished().await.expect("reads");
    assert_eq!(live.len(), 1, "one execution");
    let seqs: Vec<u64> = live[0].events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3], "each entry once");
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).single().expect("valid time")
}

/// A new execution record for tests.
pub fn new_execution(workflow: &str, at: DateTime<Utc>) -> NewExecution {
    let mut input = Map::new();
    input.insert("email".into(), json!("alice@example.com"));
    NewExecution {
        id: ExecutionId::new(),
        workflow: workflow.to_owned(),
        version: "0123456789abcdef".into(),
        input,
        parent: None,
        trigger: Trigger::Manual,
        created_at: at,
        start_at: None,
        unique_key: None,
        debounce_key: None,
        kept: Vec::new(),
        priority: 0,
        trace: None,
    }
}

/// A final state for tests.
pub fn final_state(n: &NewExecution, status: Status, ended: DateTime<Utc>) -> ExecutionState {
    ExecutionState {
        id: n.id,
        workflow: n.workflow.clone(),
        version: n.version.clone(),
        status,
        running: Vec::new(),
        current_step: None,
        progress: Progress { done: 1, total: 1 },
        context: n.input.clone(),
        started_at: n.created_at,
        ended_at: Some(ended),
        duration: (ended - n.created_at).to_std().unwrap_or_default(),
        attempt: 1,
        steps: Vec::new(),
        awaiting: Vec::new(),
        failure: None,
        rollback: None,
        cancel_reason: None,
        handler_errors: Vec::new(),
        parent: n.parent.as_ref().map(|p| p.execution),
        trigger: n.trigger.clone(),
        parked: None,
        signals: Vec::new(),
        input: n.input.clone(),
        outputs: Map::new(),
    }
}

fn entry(id: ExecutionId, seq: u64) -> JournalEntry {
    JournalEntry { execution: id, seq, event: format!("{{\"event\":\"paused\",\"seq\":{seq}}}") }
}

async fn journal_round_trip(store: &dyn Store) {
    let a = new_execution("alpha", t(0));
    let b = new_execution("beta", t(1));
    store
        .write(&[Write::Create(Box::new(a.clone())), Write::Create(Box::new(b.clone()))])
        .await
        .expect("creating executions succeeds");
    store
        .write(&(1..=3).map(|s| Write::Event(entry(a.id, s))).collect::<Vec<_>>())
        .await
        .expect("appending events succeeds");
    store.write(&[Write::Event(entry(b.id, 1)), Write::Event(entry(a.id, 4))]).await.expect("append");
    let live = store.unfinished().await.expect("unfinished");
    assert_eq!(live.len(), 2, "unfinished() returns every execution that has not ended");
    assert_eq!(live[0].execution, a, "unfinished() returns executions oldest first, as written");
    assert!(live[0].started, "an execution without start_at counts as started");
    let seqs: Vec<u64> = live[0].events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "journal entries come back in seq order");
    assert_eq!(live[0].events[2], entry(a.id, 3), "journal entries round-trip unchanged");
    assert_eq!(live[1].events, vec![entry(b.id, 1)], "journals of executions are kept apart");
}

async fn finish_moves_to_history(store: &dyn Store) {
    let mut ids = Vec::new();
    for (i, wf) in ["alpha", "beta", "alpha"].iter().enumerate() {
        let n = new_execution(wf, t(i as i64 * 10));
        store.write(&[Write::Create(Box::new(n.clone())), Write::Event(entry(n.id, 1))]).await.expect("create");
        let state = final_state(&n, Status::Completed, t(i as i64 * 10 + 5));
        store.write(&[Write::Finish(Arc::new(state.clone()))]).await.expect("finish");
        assert_eq!(store.finished(n.id).await.expect("finished"), Some(state), "finished() returns the final state");
        ids.push(n.id);
    }
    assert!(store.unfinished().await.expect("unfinished").is_empty(), "finished executions leave unfinished()");
    assert_eq!(store.finished(ExecutionId::new()).await.expect("finished"), None, "unknown ids are None");
    let all = store.list_finished(&ExecutionQuery::default()).await.expect("list");
    assert_eq!(all.iter().map(|s| s.id).collect::<Vec<_>>(), [ids[2], ids[1], ids[0]], "newest first");
    let alpha = store.list_finished(&ExecutionQuery { workflow: Some("alpha".into()), limit: 1 }).await.expect("list");
    assert_eq!(alpha.len(), 1, "limit is honoured");
    assert_eq!(alpha[0].id, ids[2], "the workflow filter applies before the limit");
}

/// `prune_finished` deletes the oldest ended executions of one workflow that
/// ended before the cut-off, at most `limit` a call, and nothing else.
async fn pruning_ended_executions(store: &dyn Store) {
    let mut old = Vec::new();
    for (i, wf) in ["alpha", "alpha", "beta", "alpha", "alpha"].iter().enumerate() {
        let n = new_execution(wf, t(i as i64 * 10));
        store.write(&[Write::Create(Box::new(n.clone()))]).await.expect("create");
        let state = final_state(&n, Status::Failed, t(i as i64 * 10 + 5));
        store.write(&[Write::Finish(Arc::new(state))]).await.expect("finish");
        old.push(n.id);
    }
    let live = new_execution("alpha", t(0));
    store.write(&[Write::Create(Box::new(live.clone()))]).await.expect("create");
    // Ended at 5, 15, (beta 25), 35, 45: three alpha executions ended before 40.
    assert_eq!(store.prune_finished("alpha", t(40), 2).await.expect("prune"), 2, "at most `limit` a call");
    assert_eq!(store.prune_finished("alpha", t(40), 2).await.expect("prune"), 1, "then the rest before the cut-off");
    assert_eq!(store.prune_finished("alpha", t(40), 2).await.expect("prune"), 0, "then none");
    let left: Vec<ExecutionId> =
        store.list_finished(&ExecutionQuery::default()).await.expect("list").iter().map(|s| s.id).collect();
    assert_eq!(left, [old[4], old[2]], "the oldest went first; later ones and other workflows stay");
    assert_eq!(store.finished(old[0]).await.expect("finished"), None, "a pruned execution is gone");
    assert_eq!(store.unfinished().await.expect("unfinished").len(), 1, "live executions are never pruned");
    assert_eq!(
        store.prune_finished("gamma", t(1000), 10).await.expect("prune"),
        0,
        "an unknown workflow prunes nothing"
    );
}

async fn delayed_starts(store: &dyn Store) {
    let mut n = new_execution("later", t(0));
    n.start_at = Some(t(3600));
    n.trigger = Trigger::Delayed { at: t(3600) };
    store.write(&[Write::Create(Box::new(n.clone()))]).await.expect("create");
    let live = store.unfinished().await.expect("unfinished");
    assert_eq!(live.len(), 1);
    assert!(!live[0].started, "a delayed execution is not started before `Started`");
    assert_eq!(live[0].execution.start_at, Some(t(3600)), "start_at is kept");
    store.write(&[Write::Started { id: n.id, at: t(3600) }]).await.expect("started");
    assert!(store.unfinished().await.expect("unfinished")[0].started, "`Started` marks it started");
}

/// `Reschedule` replaces a delayed execution's record until it has started.
async fn reschedules(store: &dyn Store) {
    let mut n = new_execution("later", t(0));
    n.start_at = Some(t(3600));
    n.debounce_key = Some("docs".into());
    store.write(&[Write::Create(Box::new(n.clone()))]).await.expect("create");
    let mut moved = n.clone();
    moved.start_at = Some(t(7200));
    moved.input.insert("rev".into(), 2.into());
    store.write(&[Write::Reschedule(Box::new(moved.clone()))]).await.expect("reschedule");
    let live = store.unfinished().await.expect("unfinished");
    assert_eq!(live[0].execution.start_at, Some(t(7200)), "the new start time is kept");
    assert_eq!(live[0].execution.input, moved.input, "the new input is kept");
    assert_eq!(live[0].execution.debounce_key.as_deref(), Some("docs"), "the debounce key is kept");
    store.write(&[Write::Started { id: n.id, at: t(7200) }]).await.expect("started");
    let mut late = moved.clone();
    late.input.insert("rev".into(), 3.into());
    store.write(&[Write::Reschedule(Box::new(late))]).await.expect("reschedule");
    assert_eq!(store.unfinished().await.expect("unfinished")[0].execution.input, moved.input, "once started, kept");
}

/// An ended execution's unique key is found by `ended_with_key` while its final
/// state is kept, the one that ended last first.
async fn ended_unique_keys(store: &dyn Store) {
    let mut ended = Vec::new();
    for i in 1..=2 {
        let mut n = new_execution("alpha", t(0));
        n.unique_key = Some("k".into());
        store.write(&[Write::Create(Box::new(n.clone()))]).await.expect("create");
        store.write(&[Write::Finish(Arc::new(final_state(&n, Status::Completed, t(i * 10))))]).await.expect("finish");
        ended.push(n.id);
    }
    let plain = new_execution("alpha", t(0));
    store.write(&[Write::Create(Box::new(plain.clone()))]).await.expect("create");
    store.write(&[Write::Finish(Arc::new(final_state(&plain, Status::Completed, t(30))))]).await.expect("finish");
    let found = |workflow: &'static str, key: &'static str, since| store.ended_with_key(workflow, key, since);
    assert_eq!(found("alpha", "k", t(5)).await.expect("read"), Some(ended[1]), "the one that ended last");
    assert_eq!(found("alpha", "k", t(20)).await.expect("read"), Some(ended[1]), "ended at `since` counts");
    assert_eq!(found("alpha", "k", t(21)).await.expect("read"), None, "ended before `since`");
    assert_eq!(found("beta", "k", t(0)).await.expect("read"), None, "keys are per workflow");
    assert_eq!(found("alpha", "other", t(0)).await.expect("read"), None, "an unknown key");
    store.prune_finished("alpha", t(100), 10).await.expect("prune");
    assert_eq!(found("alpha", "k", t(0)).await.expect("read"), None, "a pruned execution holds no key");
}

async fn dead_letters(store: &dyn Store) {
    let mut letters = Vec::new();
    for (i, wf) in ["alpha", "beta", "alpha"].iter().enumerate() {
        let n = new_execution(wf, t(i as i64));
        let mut state = final_state(&n, Status::Failed, t(i as i64 + 1));
        state.context.insert("__error__".into(), json!({"kind": "timeout"}));
        letters.push(DeadLetter {
            id: n.id,
            workflow: n.workflow.clone(),
            input: n.input.clone(),
            error: Some(StepError::timeout("too slow")),
            error_step: Some("charge".into()),
            failed_at: t(i as i64 + 1),
            expires_at: t(i as i64 + 1) + Duration::from_secs(100),
            state,
        });
    }
    store
        .write(&letters.iter().map(|d| Write::DeadLetter(Box::new(d.clone()))).collect::<Vec<_>>())
        .await
        .expect("dead letters");
    assert_eq!(store.dead_letters(None).await.expect("list"), letters, "all dead letters, oldest first");
    let alpha = store.dead_letters(Some("alpha")).await.expect("list");
    assert_eq!(alpha, vec![letters[0].clone(), letters[2].clone()], "filtered by workflow");
    store.write(&[Write::RemoveDeadLetter(letters[0].id)]).await.expect("remove");
    assert_eq!(store.dead_letters(None).await.expect("list").len(), 2, "a removed dead letter is gone");
    let purged = store.purge_dead_letters(t(102)).await.expect("purge");
    assert_eq!(purged, 1, "only entries whose expires_at passed are purged");
    assert_eq!(store.dead_letters(None).await.expect("list"), vec![letters[2].clone()]);
    store.write(&[Write::DeadLetter(Box::new(letters[2].clone()))]).await.expect("again");
    assert_eq!(store.dead_letters(None).await.expect("list").len(), 1, "writing a dead letter twice keeps one");
}

async fn definitions(store: &dyn Store) {
    let mut snap = DefinitionSnapshot {
        name: "alpha".into(),
        version: "1".into(),
        steps: Vec::new(),
        groups: Default::default(),
        timeout: Some("1h".into()),
        max_retries: 0,
        handlers: Default::default(),
        dead_letter: false,
        tags: vec!["etl".into()],
        metadata: Map::new(),
        step_concurrency: None,
        schedules: vec!["cron 0 6 * * *".into()],
        events: Vec::new(),
        label: None,
    };
    store.write(&[Write::Definition(Box::new(snap.clone()))]).await.expect("definition");
    let first = snap.clone();
    snap.version = "2".into();
    snap.tags.push("v2".into());
    store.write(&[Write::Definition(Box::new(snap.clone()))]).await.expect("definition");
    let mut other = first.clone();
    other.name = "beta".into();
    store.write(&[Write::Definition(Box::new(other.clone()))]).await.expect("definition");
    assert_eq!(
        store.definitions().await.expect("definitions"),
        vec![snap.clone(), other],
        "definitions() returns the snapshot written last for each name, by name"
    );
    let v1 = store.definition_version("alpha", "1").await.expect("version 1");
    assert_eq!(v1, Some(first.clone()), "every version of a definition is kept");
    let v2 = store.definition_version("alpha", "2").await.expect("version 2");
    assert_eq!(v2, Some(snap), "the latest version is kept too");
    assert_eq!(store.definition_version("alpha", "3").await.expect("version 3"), None, "unknown versions are None");
    assert_eq!(store.definition_version("gamma", "1").await.expect("gamma"), None, "unknown names are None");
    store.write(&[Write::Definition(Box::new(first.clone()))]).await.expect("definition again");
    let latest = store.definitions().await.expect("definitions");
    assert_eq!(latest[0], first, "registering an older version again makes it the latest");
}

async fn batches_are_atomic(store: &dyn Store) {
    let n = new_execution("atomic", t(0));
    let orphan = ExecutionId::new();
    let result = store.write(&[Write::Create(Box::new(n.clone())), Write::Event(entry(orphan, 1))]).await;
    assert!(
        matches!(result, Err(StoreError::UnknownExecution(id)) if id == orphan),
        "a journal entry for an unknown execution is rejected with `UnknownExecution`, got {result:?}"
    );
    assert!(store.unfinished().await.expect("unfinished").is_empty(), "a rejected batch leaves nothing behind");
    store.write(&[Write::Create(Box::new(n.clone())), Write::Event(entry(n.id, 1))]).await.expect("create");
    let done = final_state(&n, Status::Completed, t(5));
    let result = store.write(&[Write::Finish(Arc::new(done.clone())), Write::Event(entry(n.id, 2))]).await;
    assert!(result.is_err(), "a journal entry after the execution's `Finish` is rejected");
    let live = store.unfinished().await.expect("unfinished");
    assert_eq!(live.len(), 1, "the rejected batch did not finish the execution");
    assert_eq!(live[0].events, vec![entry(n.id, 1)], "the rejected batch appended nothing");
    assert_eq!(store.finished(n.id).await.expect("finished"), None, "the rejected batch left no final state");
    store.write(&[Write::Finish(Arc::new(done))]).await.expect("finish");
    let result = store.write(&[Write::Event(entry(n.id, 2))]).await;
    assert!(result.is_err(), "a journal entry for an execution that has ended is rejected");
}

async fn concurrent_writers_keep_order(store: &dyn Store) {
    let execs: Vec<NewExecution> = (0..8).map(|i| new_execution("many", t(i))).collect();
    store.write(&execs.iter().map(|n| Write::Create(Box::new(n.clone()))).collect::<Vec<_>>()).await.expect("create");
    let writes = execs.iter().map(|n| async move {
        for seq in 1..=25 {
            store.write(&[Write::Event(entry(n.id, seq))]).await.expect("append");
        }
    });
    futures::future::join_all(writes).await;
    for e in store.unfinished().await.expect("unfinished") {
        let seqs: Vec<u64> = e.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=25).collect::<Vec<_>>(), "each execution's journal is complete and ordered");
    }
}

async fn values_round_trip(store: &dyn Store) {
    let mut n = new_execution("unicode", t(0));
    n.input.insert("name".into(), json!("Zoë 🚀 — \"quoted\" \\ back"));
    n.input.insert("nested".into(), json!({"list": [1, 2.5, null, {"deep": true}], "big": u64::MAX}));
    n.parent = Some(ParentRef { execution: ExecutionId::new(), step: 3, attempt: 2 });
    n.trigger = Trigger::Scheduled { schedule: "cron 0 6 * * *".into(), fire_time: t(60) };
    let event = JournalEntry { execution: n.id, seq: 1, event: json!({"event": "x", "v": "é\u{0}"}).to_string() };
    store.write(&[Write::Create(Box::new(n.clone())), Write::Event(event.clone())]).await.expect("write");
    let live = store.unfinished().await.expect("unfinished");
    assert_eq!(live[0].execution, n, "inputs, parents and triggers round-trip unchanged");
    assert_eq!(live[0].events, vec![event], "event text round-trips byte for byte");
    let state = final_state(&n, Status::RolledBack, t(9));
    store.write(&[Write::Finish(Arc::new(state.clone()))]).await.expect("finish");
    let back = store.finished(n.id).await.expect("finished").expect("present");
    assert_eq!(back, state, "final states round-trip unchanged");
    assert_eq!(back.context.get("name"), Some(&Value::from("Zoë 🚀 — \"quoted\" \\ back")));
}

async fn schedule_ticks(store: &dyn Store) {
    assert!(store.last_ticks().await.expect("ticks").is_empty(), "a new store has no ticks");
    assert!(store.claim_tick("daily#0", t(60)).await.expect("claim"), "the first claim of a tick wins");
    assert!(!store.claim_tick("daily#0", t(60)).await.expect("claim"), "a tick is claimed once");
    assert!(!store.claim_tick("daily#0", t(0)).await.expect("claim"), "an older tick cannot be claimed");
    assert!(store.claim_tick("daily#1", t(0)).await.expect("claim"), "schedules are independent");
    assert!(store.claim_tick("daily#0", t(120)).await.expect("claim"), "the next tick wins");
    let claims = futures::future::join_all((0..8).map(|_| store.claim_tick("race#0", t(180)))).await;
    let winners = claims.into_iter().filter(|c| *c.as_ref().expect("claim")).count();
    assert_eq!(winners, 1, "concurrent claims of one tick have exactly one winner");
    let mut ticks = store.last_ticks().await.expect("ticks");
    ticks.sort();
    assert_eq!(
        ticks,
        vec![("daily#0".to_owned(), t(120)), ("daily#1".to_owned(), t(0)), ("race#0".to_owned(), t(180))],
        "last_ticks returns the latest claimed tick per schedule"
    );
}

async fn upgrades(store: &dyn Store) {
    let n = new_execution("upgraded", t(0));
    let other = new_execution("upgraded", t(1));
    let mut writes = vec![Write::Create(Box::new(n.clone())), Write::Create(Box::new(other.clone()))];
    writes.extend((1..=3).map(|s| Write::Event(entry(n.id, s))));
    writes.push(Write::Event(entry(other.id, 1)));
    store.write(&writes).await.expect("write");
    let rewritten: Vec<JournalEntry> =
        (1..=3).map(|seq| JournalEntry { execution: n.id, seq, event: format!("{{\"v2\":{seq}}}") }).collect();
    let upgrade = Upgrade { id: n.id, version: "fedcba9876543210".into(), events: rewritten.clone() };
    store.write(&[Write::Upgrade(Box::new(upgrade))]).await.expect("upgrade");
    store.write(&[Write::Event(entry(n.id, 4))]).await.expect("append after the upgrade");
    let live = store.unfinished().await.expect("unfinished");
    assert_eq!(live[0].execution.version, "fedcba9876543210", "`Upgrade` replaces the recorded version");
    let mut expected = rewritten;
    expected.push(entry(n.id, 4));
    assert_eq!(live[0].events, expected, "`Upgrade` replaces the whole journal; later entries follow it");
    assert_eq!(live[0].execution.input, n.input, "`Upgrade` keeps everything else");
    assert_eq!(live[1].execution, other, "`Upgrade` touches only its execution");
    assert_eq!(live[1].events, vec![entry(other.id, 1)], "`Upgrade` touches only its execution's journal");
    let ghost = Upgrade { id: ExecutionId::new(), version: "x".into(), events: Vec::new() };
    let result = store.write(&[Write::Event(entry(n.id, 5)), Write::Upgrade(Box::new(ghost))]).await;
    assert!(result.is_err(), "upgrading an unknown execution is rejected");
    assert_eq!(store.unfinished().await.expect("unfinished")[0].events.len(), 4, "and its batch left nothing");
}

async fn large_batches(store: &dyn Store) {
    let execs: Vec<NewExecution> = (0..100).map(|i| new_execution("bulk", t(i))).collect();
    let mut batch: Vec<Write> = execs.iter().map(|n| Write::Create(Box::new(n.clone()))).collect();
    for seq in 1..=100 {
        batch.extend(execs.iter().map(|n| Write::Event(entry(n.id, seq))));
    }
    store.write(&batch).await.expect("a batch of 10,100 writes");
    let finishes: Vec<Write> =
        execs[..50].iter().map(|n| Write::Finish(Arc::new(final_state(n, Status::Completed, t(500))))).collect();
    store.write(&finishes).await.expect("finish half");
    let live = store.unfinished().await.expect("unfinished");
    assert_eq!(live.len(), 50, "finished executions leave; the others stay");
    for (e, n) in live.iter().zip(&execs[50..]) {
        assert_eq!(e.execution.id, n.id, "the remaining executions, oldest first");
        assert_eq!(e.events.len(), 100, "each keeps its whole journal");
        assert!(e.events.iter().zip(1..).all(|(x, seq)| x.seq == seq && x.execution == n.id));
    }
    let history = store.list_finished(&ExecutionQuery { workflow: Some("bulk".into()), limit: 0 }).await.expect("list");
    assert_eq!(history.len(), 50, "every finished execution is in the history");
}

/// The scheduler keeps two records per schedule through `claim_tick`: the last
/// tick, and when the schedule was first armed, mirrored so that the earliest
/// arming is the largest value (see the scheduler's `durable` module). Both must
/// come back exactly, to the millisecond, for instants up to the year 2200.
async fn schedule_records_round_trip(store: &dyn Store) {
    let tick = Utc.with_ymd_and_hms(2025, 6, 4, 12, 0, 0).single().expect("valid") + chrono::TimeDelta::milliseconds(1);
    let first_armed =
        Utc.with_ymd_and_hms(2144, 7, 29, 11, 59, 59).single().expect("valid") + chrono::TimeDelta::milliseconds(999);
    let later_armed = first_armed - chrono::TimeDelta::milliseconds(1);
    assert!(store.claim_tick("job#0", tick).await.expect("claim"), "a millisecond tick can be claimed");
    assert!(store.claim_tick("job#0:armed", first_armed).await.expect("claim"), "a far-future value can be claimed");
    assert!(
        !store.claim_tick("job#0:armed", later_armed).await.expect("claim"),
        "a value one millisecond smaller loses"
    );
    let mut ticks = store.last_ticks().await.expect("ticks");
    ticks.sort();
    assert_eq!(
        ticks,
        vec![("job#0".to_owned(), tick), ("job#0:armed".to_owned(), first_armed)],
        "ticks round-trip exactly, to the millisecond, up to the year 2200"
    );
}
