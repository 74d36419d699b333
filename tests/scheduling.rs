//! Scheduling and triggers: cron (the reference's common patterns, several
//! patterns, seconds, time zones across daylight-saving changes), intervals,
//! one-off times, windows, durability across restarts with each misfire policy,
//! single firing on a shared store, and `emit`.
//!
//! Every test runs on tokio's paused clock with the engine's clock pinned to a
//! date, so fire times and start times are exact.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use sagaflow::prelude::*;
use sagaflow::store::{ExecutionQuery, MemoryStore, Store};
use sagaflow::{Clock, Event, Misfire, ScheduleError, ScheduleInfo, Trigger, WorkflowDef};

/// Wednesday 2025-06-04 12:34:56 UTC.
fn t0() -> DateTime<Utc> {
    utc(2025, 6, 4, 12, 34, 56)
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

async fn noop(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}

fn scheduled(name: &str, schedules: impl IntoIterator<Item = Schedule>) -> WorkflowDef {
    let mut wf = Workflow::new(name).step("run", noop);
    for s in schedules {
        wf = wf.schedule(s);
    }
    wf.build().unwrap()
}

/// One scheduled execution: its tick, when it started, and the schedule it names.
#[derive(Clone, Debug, PartialEq)]
struct Fired {
    fire_time: DateTime<Utc>,
    started_at: DateTime<Utc>,
    schedule: String,
}

/// The scheduled executions of `workflow` that ended, by tick.
async fn fired(store: &dyn Store, workflow: &str) -> Vec<Fired> {
    let query = ExecutionQuery { workflow: Some(workflow.to_owned()), limit: 0 };
    let mut out: Vec<Fired> = store
        .list_finished(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            assert_eq!(s.status, Status::Completed);
            match s.trigger {
                Trigger::Scheduled { schedule, fire_time } => Fired { fire_time, started_at: s.started_at, schedule },
                other => panic!("not a scheduled execution: {other:?}"),
            }
        })
        .collect();
    out.sort_by_key(|f| (f.fire_time, f.started_at));
    out
}

fn ticks(f: &[Fired]) -> Vec<DateTime<Utc>> {
    f.iter().map(|f| f.fire_time).collect()
}

/// Runs one engine from `start` for `span` on the paused clock; returns what fired.
async fn run_for(def: WorkflowDef, start: DateTime<Utc>, span: Duration) -> Vec<Fired> {
    run_and_peek(def, start, span).await.0
}

/// Like [`run_for`], and also returns the next tick the engine had planned.
async fn run_and_peek(def: WorkflowDef, start: DateTime<Utc>, span: Duration) -> (Vec<Fired>, Option<DateTime<Utc>>) {
    let name = def.name().to_owned();
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder()
        .clock(Clock::starting_at(start))
        .store_arc(store.clone())
        .register(def)
        .build()
        .await
        .unwrap();
    tokio::time::sleep(span).await;
    engine.shutdown().await;
    let next = engine.schedules()[0].next_fire;
    (fired(&*store, &name).await, next)
}

/// Asserts that each execution started exactly at its tick.
fn on_time(f: &[Fired]) {
    for x in f {
        assert_eq!(x.started_at, x.fire_time, "{x:?} started late");
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test(start_paused = true)]
async fn the_reference_common_patterns_fire_at_their_ticks() {
    // (pattern, where the clock starts, how long the engine runs, expected ticks,
    // the next tick planned when it stops)
    let cases = [
        (
            "* * * * *",
            t0(),
            3 * MINUTE,
            vec![utc(2025, 6, 4, 12, 35, 0), utc(2025, 6, 4, 12, 36, 0), utc(2025, 6, 4, 12, 37, 0)],
            utc(2025, 6, 4, 12, 38, 0),
        ),
        (
            "0 * * * *",
            t0(),
            3 * HOUR,
            vec![utc(2025, 6, 4, 13, 0, 0), utc(2025, 6, 4, 14, 0, 0), utc(2025, 6, 4, 15, 0, 0)],
            utc(2025, 6, 4, 16, 0, 0),
        ),
        (
            "0 0 * * *",
            t0(),
            3 * DAY,
            vec![utc(2025, 6, 5, 0, 0, 0), utc(2025, 6, 6, 0, 0, 0), utc(2025, 6, 7, 0, 0, 0)],
            utc(2025, 6, 8, 0, 0, 0),
        ),
        (
            "0 6 * * *",
            t0(),
            2 * DAY,
            vec![utc(2025, 6, 5, 6, 0, 0), utc(2025, 6, 6, 6, 0, 0)],
            utc(2025, 6, 7, 6, 0, 0),
        ),
        ("0 6 * * 1", t0(), 5 * DAY, vec![utc(2025, 6, 9, 6, 0, 0)], utc(2025, 6, 16, 6, 0, 0)),
        ("0 0 1 * *", utc(2025, 6, 30, 23, 0, 0), 2 * HOUR, vec![utc(2025, 7, 1, 0, 0, 0)], utc(2025, 8, 1, 0, 0, 0)),
        ("0 0 1 1 *", utc(2025, 12, 31, 23, 0, 0), 2 * HOUR, vec![utc(2026, 1, 1, 0, 0, 0)], utc(2027, 1, 1, 0, 0, 0)),
    ];
    for (pattern, start, span, expected, then) in cases {
        let (got, next) = run_and_peek(scheduled("job", [Schedule::cron(pattern).unwrap()]), start, span).await;
        assert_eq!(ticks(&got), expected, "{pattern}");
        on_time(&got);
        assert!(got.iter().all(|f| f.schedule == format!("cron {pattern}")), "{pattern}: {got:?}");
        assert_eq!(next, Some(then), "{pattern}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_next_yearly_tick_is_a_year_away() {
    let engine = Engine::builder()
        .clock(Clock::starting_at(utc(2025, 12, 31, 23, 0, 0)))
        .register(scheduled("new_year", [Schedule::cron("@yearly").unwrap()]))
        .build()
        .await
        .unwrap();
    assert_eq!(engine.schedules()[0].next_fire, Some(utc(2026, 1, 1, 0, 0, 0)));
    tokio::time::sleep(2 * HOUR).await;
    let info = &engine.schedules()[0];
    assert_eq!(info.last_fire, Some(utc(2026, 1, 1, 0, 0, 0)));
    assert_eq!(info.next_fire, Some(utc(2027, 1, 1, 0, 0, 0)));
}

#[tokio::test(start_paused = true)]
async fn several_patterns_and_schedules_on_one_workflow() {
    let three = Schedule::cron_many(["0 6 * * *", "0 12 * * *", "0 18 * * *"]).unwrap();
    let nightly = Schedule::cron("30 2 * * *").unwrap();
    let got = run_for(scheduled("sync_job", [three, nightly]), utc(2025, 6, 4, 0, 0, 0), 2 * DAY).await;
    on_time(&got);
    let seen: Vec<(DateTime<Utc>, &str)> = got.iter().map(|f| (f.fire_time, f.schedule.as_str())).collect();
    assert_eq!(
        seen,
        [
            (utc(2025, 6, 4, 2, 30, 0), "cron 30 2 * * *"),
            (utc(2025, 6, 4, 6, 0, 0), "cron 0 6 * * *"),
            (utc(2025, 6, 4, 12, 0, 0), "cron 0 12 * * *"),
            (utc(2025, 6, 4, 18, 0, 0), "cron 0 18 * * *"),
            (utc(2025, 6, 5, 2, 30, 0), "cron 30 2 * * *"),
            (utc(2025, 6, 5, 6, 0, 0), "cron 0 6 * * *"),
            (utc(2025, 6, 5, 12, 0, 0), "cron 0 12 * * *"),
            (utc(2025, 6, 5, 18, 0, 0), "cron 0 18 * * *"),
        ],
        "each execution names the pattern that fired"
    );
}

#[tokio::test(start_paused = true)]
async fn a_seconds_field_fires_within_the_minute() {
    let got = run_for(scheduled("poll", [Schedule::cron("*/15 * * * * *").unwrap()]), t0(), MINUTE).await;
    on_time(&got);
    assert_eq!(
        ticks(&got),
        [
            utc(2025, 6, 4, 12, 35, 0),
            utc(2025, 6, 4, 12, 35, 15),
            utc(2025, 6, 4, 12, 35, 30),
            utc(2025, 6, 4, 12, 35, 45)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn time_zones_across_spring_forward_and_fall_back() {
    // New York, 2025-03-09: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist
    // that day: the job runs at 03:00 EDT (07:00 UTC), and at 02:30 on the other days.
    let ny = |p: &str| Schedule::cron(p).unwrap().timezone("America/New_York").unwrap();
    let got = run_for(scheduled("nightly", [ny("30 2 * * *")]), utc(2025, 3, 8, 12, 0, 0), 3 * DAY).await;
    on_time(&got);
    assert_eq!(ticks(&got), [utc(2025, 3, 9, 7, 0, 0), utc(2025, 3, 10, 6, 30, 0), utc(2025, 3, 11, 6, 30, 0)]);
    assert_eq!(got[0].schedule, "cron 30 2 * * * (America/New_York)");

    // 2025-11-02: 02:00 EDT falls back to 01:00 EST, so 01:30 happens twice; the
    // job runs once, at the first (05:30 UTC), and not at 06:30 UTC.
    let got = run_for(scheduled("nightly", [ny("30 1 * * *")]), utc(2025, 11, 1, 12, 0, 0), 3 * DAY).await;
    on_time(&got);
    assert_eq!(ticks(&got), [utc(2025, 11, 2, 5, 30, 0), utc(2025, 11, 3, 6, 30, 0), utc(2025, 11, 4, 6, 30, 0)]);

    // The same local time in Paris is another instant.
    let paris = Schedule::cron("0 6 * * *").unwrap().timezone("Europe/Paris").unwrap();
    let got = run_for(scheduled("paris", [paris]), utc(2025, 6, 4, 0, 0, 0), DAY).await;
    assert_eq!(ticks(&got), [utc(2025, 6, 4, 4, 0, 0)], "06:00 CEST is 04:00 UTC");
}

#[tokio::test(start_paused = true)]
async fn intervals_one_off_times_and_delays() {
    let every = Schedule::every("5m").unwrap();
    let got = run_for(scheduled("health_check", [every]), t0(), 12 * MINUTE).await;
    on_time(&got);
    assert_eq!(ticks(&got), [utc(2025, 6, 4, 12, 35, 0), utc(2025, 6, 4, 12, 40, 0), utc(2025, 6, 4, 12, 45, 0)]);
    assert_eq!(got[0].schedule, "every 5m");

    let at = t0() + TimeDelta::minutes(10);
    let got = run_for(scheduled("launch", [Schedule::at(at)]), t0(), HOUR).await;
    on_time(&got);
    assert_eq!(ticks(&got), [at]);
    assert_eq!(got[0].schedule, format!("at {}", at.to_rfc3339()));

    let got = run_for(scheduled("reminder", [Schedule::in_("30m").unwrap()]), t0(), 3 * HOUR).await;
    on_time(&got);
    assert_eq!(ticks(&got), [t0() + TimeDelta::minutes(30)], "`in` fires once");
    assert_eq!(got[0].schedule, "in 30m");

    // A one-off time already past when the schedule is first armed never fires.
    let got = run_for(scheduled("too_late", [Schedule::at(t0() - TimeDelta::hours(1))]), t0(), HOUR).await;
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test(start_paused = true)]
async fn windows_bound_when_a_schedule_fires() {
    // The reference's combined schedule, over a shorter window.
    let start = utc(2025, 1, 1, 0, 0, 0);
    let end = utc(2025, 1, 1, 4, 59, 59);
    let hourly = Schedule::every("1h").unwrap().start_at(start).unwrap().end_at(end).unwrap();
    let engine_start = utc(2024, 12, 31, 22, 30, 0);
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder()
        .clock(Clock::starting_at(engine_start))
        .store_arc(store.clone())
        .register(scheduled("january", [hourly]))
        .build()
        .await
        .unwrap();
    tokio::time::sleep(DAY).await;
    let got = fired(&*store, "january").await;
    on_time(&got);
    assert_eq!(ticks(&got), (0..5).map(|h| start + TimeDelta::hours(h)).collect::<Vec<_>>());
    let info = &engine.schedules()[0];
    assert_eq!(info.next_fire, None, "the window has closed");
    assert!(info.schedule.starts_with("every 1h from 2025-01-01T00:00:00+00:00 until"), "{}", info.schedule);
}

async fn generate_report(ctx: Context) -> StepResult {
    let region: String = ctx.get("region")?;
    Ok(json!({ "generated_for": region }).into())
}

#[tokio::test(start_paused = true)]
async fn scheduled_executions_record_their_trigger_and_input() {
    let def = Workflow::new("report")
        .step("generate", generate_report)
        .schedule(Schedule::every("1h").unwrap().input(json!({ "region": "eu" })).unwrap())
        .build()
        .unwrap();
    let engine = Engine::builder().clock(Clock::starting_at(t0())).register(def).build().await.unwrap();
    let mut events = engine.subscribe();
    tokio::time::sleep(HOUR).await;
    let Some(Event::WorkflowStart { workflow_name, execution_id, trigger_type }) = events.try_recv() else {
        panic!("the start of the scheduled execution is published")
    };
    assert_eq!((&*workflow_name, trigger_type), ("report", "scheduled"));
    let state = engine.wait(execution_id).await.unwrap();
    assert_eq!(state.trigger, Trigger::Scheduled { schedule: "every 1h".into(), fire_time: utc(2025, 6, 4, 13, 0, 0) });
    assert_eq!(state.context["generated_for"], "eu");
    assert_eq!(engine.list_all()[0].trigger_type, "scheduled");
}

// ----- durability -----

fn minutely(policy: Misfire) -> WorkflowDef {
    scheduled("minutely", [Schedule::cron("* * * * *").unwrap().misfire(policy)])
}

/// Runs a first engine from 12:00:00 (a tick: the first fires at once) for 3½
/// minutes, stops it for 10 minutes, then runs a second engine on the same store
/// for 2 minutes. Returns what fired, by tick, and the schedule as the second
/// engine last showed it.
async fn restart_with(policy: Misfire) -> (Vec<Fired>, ScheduleInfo) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let start = utc(2025, 6, 4, 12, 0, 0);
    let clock = Clock::starting_at(start);
    let first =
        Engine::builder().clock(clock).store_arc(store.clone()).register(minutely(policy)).build().await.unwrap();
    tokio::time::sleep(3 * MINUTE + MINUTE / 2).await;
    first.shutdown().await;
    drop(first);
    tokio::time::sleep(10 * MINUTE).await; // no engine runs: ticks 12:04 .. 12:13 are missed
    let second =
        Engine::builder().clock(clock).store_arc(store.clone()).register(minutely(policy)).build().await.unwrap();
    tokio::time::sleep(2 * MINUTE).await;
    second.shutdown().await;
    (fired(&*store, "minutely").await, second.schedules().remove(0))
}

fn at_minute(m: i64) -> DateTime<Utc> {
    utc(2025, 6, 4, 12, 0, 0) + TimeDelta::minutes(m)
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_missed_ticks_run_once_by_default() {
    let (got, _) = restart_with(Misfire::RunOnce).await;
    let seen: Vec<(DateTime<Utc>, DateTime<Utc>)> = got.iter().map(|f| (f.fire_time, f.started_at)).collect();
    let back = at_minute(13) + TimeDelta::seconds(30);
    assert_eq!(
        seen,
        [
            (at_minute(0), at_minute(0)),
            (at_minute(1), at_minute(1)),
            (at_minute(2), at_minute(2)),
            (at_minute(3), at_minute(3)),
            (at_minute(13), back), // one catch-up run, for the latest missed tick, at once
            (at_minute(14), at_minute(14)),
            (at_minute(15), at_minute(15)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_missed_ticks_can_be_skipped() {
    let (got, info) = restart_with(Misfire::Skip).await;
    assert_eq!(ticks(&got), [at_minute(0), at_minute(1), at_minute(2), at_minute(3), at_minute(14), at_minute(15)]);
    on_time(&got);
    assert_eq!((info.last_fire, info.next_fire), (Some(at_minute(15)), Some(at_minute(16))));
    assert_eq!(info.misfire, Misfire::Skip);
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_missed_ticks_can_all_run() {
    let (got, _) = restart_with(Misfire::RunAll).await;
    let expected: Vec<DateTime<Utc>> = (0..=15).map(at_minute).collect();
    assert_eq!(ticks(&got), expected, "each missed tick runs once");
    let back = at_minute(13) + TimeDelta::seconds(30);
    on_time(&got[..4]);
    for f in &got[4..14] {
        assert_eq!(f.started_at, back, "missed ticks run when the engine is back");
    }
    on_time(&got[14..]);
}

#[tokio::test(start_paused = true)]
async fn a_missed_first_tick_is_caught_up_and_in_keeps_its_anchor() {
    // The first engine arms the schedules and stops before any tick; the store
    // remembers when they were armed.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Clock::starting_at(t0());
    let defs = || {
        [
            scheduled("daily", [Schedule::cron("0 13 * * *").unwrap()]),
            scheduled("later", [Schedule::in_("1h").unwrap()]),
            scheduled("soon", [Schedule::in_("30m").unwrap()]),
        ]
    };
    let build = |store: Arc<dyn Store>| {
        let mut b = Engine::builder().clock(clock).store_arc(store);
        for d in defs() {
            b = b.register(d);
        }
        b.build()
    };
    let first = build(store.clone()).await.unwrap();
    tokio::time::sleep(10 * MINUTE).await;
    first.shutdown().await;
    drop(first);
    tokio::time::sleep(40 * MINUTE).await; // down across 13:00 and across `soon`
    let second = build(store.clone()).await.unwrap();
    let back = t0() + TimeDelta::minutes(50);
    tokio::time::sleep(2 * HOUR).await;
    second.shutdown().await;

    let daily = fired(&*store, "daily").await;
    assert_eq!(
        daily.iter().map(|f| (f.fire_time, f.started_at)).collect::<Vec<_>>(),
        [(utc(2025, 6, 4, 13, 0, 0), back)]
    );
    let soon = fired(&*store, "soon").await;
    assert_eq!(
        soon.iter().map(|f| (f.fire_time, f.started_at)).collect::<Vec<_>>(),
        [(t0() + TimeDelta::minutes(30), back)]
    );
    let later = fired(&*store, "later").await;
    assert_eq!(ticks(&later), [t0() + TimeDelta::hours(1)], "`in` counts from the first arming, not the restart");
    on_time(&later);
}

#[tokio::test(start_paused = true)]
async fn engines_sharing_a_store_start_each_tick_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Clock::starting_at(t0());
    let every_second = || scheduled("tick", [Schedule::every("1s").unwrap()]);
    let mut engines = Vec::new();
    for _ in 0..3 {
        engines.push(
            Engine::builder().clock(clock).store_arc(store.clone()).register(every_second()).build().await.unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    for e in &engines {
        e.shutdown().await;
    }
    let got = fired(&*store, "tick").await;
    // t0 is on the grid of `every 1s`: a tick at the instant of arming fires.
    let expected: Vec<DateTime<Utc>> = (0..=10).map(|s| t0() + TimeDelta::seconds(s)).collect();
    assert_eq!(ticks(&got), expected, "each tick started exactly one execution");
    on_time(&got);
    let armed: Vec<DateTime<Utc>> = engines.iter().map(|e| e.schedules()[0].armed_at).collect();
    assert!(armed.iter().all(|a| *a == t0()), "the engines agree on when the schedule was armed: {armed:?}");
}

#[tokio::test(start_paused = true)]
async fn workflows_registered_later_are_armed() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder().clock(Clock::starting_at(t0())).store_arc(store.clone()).build().await.unwrap();
    assert!(engine.schedules().is_empty());
    engine.register(scheduled("late", [Schedule::every("1m").unwrap()])).unwrap();
    tokio::time::sleep(2 * MINUTE).await;
    let got = fired(&*store, "late").await;
    assert_eq!(ticks(&got), [utc(2025, 6, 4, 12, 35, 0), utc(2025, 6, 4, 12, 36, 0)]);
    assert_eq!(engine.schedules()[0].key, "late#0");
}

// ----- events -----

async fn handle_order(ctx: Context) -> StepResult {
    let order: u64 = ctx.get("order_id")?;
    Ok(json!({ "handled": order }).into())
}

#[tokio::test(start_paused = true)]
async fn emit_starts_every_subscribed_workflow_with_the_payload() {
    let record = |name: &'static str| Workflow::new(name).step("handle", handle_order);
    let engine = Engine::builder()
        .register(record("reserve_stock").on_event("order.created").build().unwrap())
        .register(record("notify").on_event(["order.created", "order.updated"]).build().unwrap())
        .register(record("welcome").on_event("user.created").build().unwrap())
        .register(record("manual").build().unwrap())
        .build()
        .await
        .unwrap();

    let ids = engine.emit("order.created", json!({ "order_id": 42 })).await.unwrap();
    assert_eq!(ids.len(), 2, "two workflows subscribe to `order.created`");
    let mut names = Vec::new();
    for id in ids {
        let state = engine.wait(id).await.unwrap();
        assert_eq!(state.status, Status::Completed);
        assert_eq!(state.trigger, Trigger::Event { name: "order.created".into() });
        assert_eq!(state.context["handled"], 42, "the payload is the input");
        names.push(state.workflow);
    }
    names.sort();
    assert_eq!(names, ["notify", "reserve_stock"]);

    let ids = engine.emit("order.updated", json!({ "order_id": 7 })).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(engine.wait(ids[0]).await.unwrap().workflow, "notify");
    assert!(engine.emit("nobody.listens", json!({})).await.unwrap().is_empty());
    assert!(engine.emit("order.created", json!([1, 2])).await.is_err(), "a payload must be a JSON object");
    assert!(engine.list_running("reserve_stock").await.unwrap().is_empty(), "a bad payload starts nothing");
    let kinds: Vec<(String, &str)> = engine.list_all().into_iter().map(|w| (w.name, w.trigger_type.as_str())).collect();
    assert!(kinds.contains(&("welcome".into(), "event")) && kinds.contains(&("manual".into(), "manual")));
}

// ----- bad input -----

#[test]
fn bad_schedules_are_rejected_naming_the_field() {
    let err = Schedule::cron("0 25 * * *").unwrap_err();
    assert!(err.to_string().starts_with("invalid cron expression `0 25 * * *`"), "{err}");
    assert!(Schedule::cron_many(["0 6 * * *", "nope"]).is_err());
    assert_eq!(Schedule::every(0).unwrap_err().to_string(), "invalid `every`: the interval must be greater than zero");
    assert!(Schedule::every("5 minutes please").unwrap_err().to_string().starts_with("invalid `every`:"));
    let start = utc(2025, 1, 31, 0, 0, 0);
    let err = Schedule::every("1h").unwrap().start_at(start).unwrap().end_at(utc(2025, 1, 1, 0, 0, 0)).unwrap_err();
    assert!(matches!(err, ScheduleError::EmptyWindow { .. }));
    assert!(err.to_string().contains("`end_at`") && err.to_string().contains("`start_at`"), "{err}");
    let err = Schedule::cron("0 6 * * *").unwrap().timezone("Europe/Pariss").unwrap_err();
    assert_eq!(err.to_string(), "invalid `timezone`: unknown time zone `Europe/Pariss`");
    let err = Workflow::new("w").step("s", noop).on_event("").build().unwrap_err();
    assert_eq!(err.to_string(), "invalid `on_event` on workflow `w`: an event name cannot be empty");
}

#[test]
fn triggers_do_not_change_the_definition_version() {
    // Recovery parks executions whose definition version changed; a new schedule
    // or event must not strand the executions already running.
    let daily = scheduled("job", [Schedule::cron("0 6 * * *").unwrap()]);
    let hourly = scheduled("job", [Schedule::every("1h").unwrap().misfire(Misfire::Skip)]);
    let on_event = Workflow::new("job").step("run", noop).on_event("order.created").build().unwrap();
    assert_eq!(daily.version(), hourly.version());
    assert_eq!(daily.version(), on_event.version());
    assert_ne!(daily, hourly, "the definitions still differ");
}

/// Waiting on delayed executions while they start, or while they are cancelled,
/// always answers with their end: never "unknown execution" in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_delayed_executions_as_they_start_or_are_cancelled_answers_with_their_end() {
    let def = Workflow::new("later").step("s", noop).build().unwrap();
    let engine = Engine::builder().register(def).build().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..300u64 {
        ids.push(engine.schedule_execution("later", json!({}), Duration::from_millis(i % 25)).await.unwrap());
    }
    let waits = ids.iter().map(|&id| {
        let engine = engine.clone();
        async move { engine.wait(id).await }
    });
    let cancels = ids.iter().step_by(2).map(|&id| {
        let engine = engine.clone();
        async move {
            // Late cancels find it started or ended: that is fine.
            let _ = engine.cancel(id, "not needed".into()).await;
        }
    });
    let (ended, _) = futures::join!(futures::future::join_all(waits), futures::future::join_all(cancels));
    for (id, state) in ids.iter().zip(ended) {
        let state = state.unwrap_or_else(|e| panic!("waiting on {id}: {e}"));
        assert!(matches!(state.status, Status::Completed | Status::Cancelled), "{id}: {:?}", state.status);
    }
    engine.shutdown().await;
}
