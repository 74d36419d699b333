//! Every `build()` error names its culprit.

use sagaflow::prelude::*;
use sagaflow::{BreakerOptions, BuildError, StepOptions};

async fn noop(_ctx: Context) -> StepResult {
    Ok(Outcome::Done)
}

fn err(wf: Workflow) -> (BuildError, String) {
    let e = wf.build().expect_err("the definition is invalid");
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn empty_name_and_empty_workflow() {
    let (e, msg) = err(Workflow::new(" ").step("a", noop));
    assert_eq!(e, BuildError::EmptyName);
    assert_eq!(msg, "a workflow name cannot be empty");
    let (_, msg) = err(Workflow::new("nothing"));
    assert_eq!(msg, "workflow `nothing` has no steps");
}

#[test]
fn duplicate_step() {
    let (e, msg) = err(Workflow::new("w").step("charge", noop).step("charge", noop));
    assert!(matches!(e, BuildError::DuplicateStep { ref step, .. } if step == "charge"));
    assert_eq!(msg, "duplicate step `charge` in workflow `w`");
}

#[test]
fn unknown_dependency_with_suggestion() {
    let (_, msg) = err(Workflow::new("w").step("fetch_users", noop).step_with(
        "transform",
        noop,
        Step::opts().after("fetch_user"),
    ));
    assert_eq!(msg, "unknown step `fetch_user` in `after` of step `transform`; did you mean `fetch_users`?");
    let (_, msg) =
        err(Workflow::new("w").step("a", noop).step_with("b", noop, Step::opts().after_any(["a", "zzz_unrelated"])));
    assert_eq!(msg, "unknown step `zzz_unrelated` in `after_any` of step `b`");
}

#[test]
fn unknown_group_with_suggestion() {
    let (e, msg) = err(Workflow::new("w").step_with("s3", noop, Step::opts().group("uploads")).step_with(
        "notify",
        noop,
        Step::opts().after_group("upload"),
    ));
    assert!(matches!(e, BuildError::UnknownGroup { ref group, ref step, .. } if group == "upload" && step == "notify"));
    assert_eq!(msg, "unknown group `upload` in `after_group` of step `notify`; did you mean `uploads`?");
}

#[test]
fn after_graft_must_name_a_graft() {
    let (_, msg) =
        err(Workflow::new("w").step("fetch", noop).step_with("sum", noop, Step::opts().after_graft("fetch")));
    assert_eq!(msg, "step `fetch` in `after_graft` of step `sum` is not a graft");
    let (_, msg) = err(Workflow::new("w").step("fetch", noop).step_with("sum", noop, Step::opts().after_graft("nope")));
    assert_eq!(msg, "unknown step `nope` in `after_graft` of step `sum`");
}

#[test]
fn cycle_lists_its_path() {
    let (e, msg) = err(Workflow::new("loop")
        .step("start", noop)
        .step_with("a", noop, Step::opts().after(["start", "c"]))
        .step_with("b", noop, Step::opts().after("a"))
        .step_with("c", noop, Step::opts().after("b")));
    let BuildError::Cycle { path, workflow } = e else { panic!("{msg}") };
    assert_eq!(workflow, "loop");
    assert_eq!(path.first(), path.last());
    let mut names = path[..3].to_vec();
    names.sort();
    assert_eq!(names, ["a", "b", "c"], "the cycle, and only it: {msg}");
    assert!(msg.starts_with("cycle in workflow `loop`: "), "{msg}");
    // Consecutive names are real edges: each runs after the one before it.
    for pair in path.windows(2) {
        let deps = [("a", "c"), ("b", "a"), ("c", "b")];
        assert!(deps.contains(&(pair[1].as_str(), pair[0].as_str())), "{} -> {} is not an edge", pair[0], pair[1]);
    }
}

#[test]
fn invalid_durations_name_step_and_option() {
    let (e, msg) = err(Workflow::new("w").step_with("slow", noop, Step::opts().timeout("30x")));
    assert!(
        matches!(e, BuildError::InvalidOption { option: "timeout", ref step, .. } if step.as_deref() == Some("slow"))
    );
    assert_eq!(
        msg,
        "invalid `timeout` on step `slow`: invalid duration `30x`: unknown unit `x` (expected ms, s, m, h, d or w)"
    );
    let (_, msg) = err(Workflow::new("w").step_with("s", noop, Step::opts().retry_delay("infinity")));
    assert_eq!(msg, "invalid `retry_delay` on step `s`: `infinity` is not allowed here: a finite duration is required");
    let (_, msg) = err(Workflow::new("w").timeout("soon").step("s", noop));
    assert!(msg.starts_with("invalid `timeout` on workflow `w`: "), "{msg}");
    let (_, msg) = err(Workflow::new("w").step_concurrency(0).step("s", noop));
    assert_eq!(msg, "invalid `step_concurrency` on workflow `w`: must be at least 1");
}

#[test]
fn contradictory_options() {
    let cases: Vec<(StepOptions, &str)> = vec![
        (Step::opts().after("a").after_any("a"), "`a` is in both `after` and `after_any`"),
        (Step::opts().retry_on("timeout").no_retry_on("timeout"), "`timeout` is in both `retry_on` and `no_retry_on`"),
        (
            Step::opts().circuit_breaker_opts(BreakerOptions::default()),
            "`circuit_breaker_opts` is set without `circuit_breaker`",
        ),
        (Step::opts().on_timeout(noop), "`on_timeout` is set but `await_approval` is off"),
        (Step::opts().max_retries(0).retry_delay("1s"), "retry options are set but `max_retries` is 0"),
        (Step::opts().retry_delay("10s").retry_max_delay("1s"), "`retry_max_delay` is shorter than `retry_delay`"),
    ];
    for (opts, reason) in cases {
        let (e, msg) = err(Workflow::new("w").step("a", noop).step_with("b", noop, opts));
        assert!(matches!(e, BuildError::ConflictingOptions { ref step, .. } if step.as_deref() == Some("b")), "{msg}");
        assert_eq!(msg, format!("conflicting options on step `b`: {reason}"));
    }
    let (_, msg) = err(Workflow::new("w").dead_letter_ttl("7d").step("a", noop));
    assert_eq!(msg, "conflicting options on workflow `w`: `dead_letter_ttl` is set but `dead_letter` is off");
    let (_, msg) = err(Workflow::new("w").step_with("a", noop, Step::opts().circuit_breaker("api")).step_with(
        "b",
        noop,
        Step::opts().circuit_breaker("api").circuit_breaker_opts(BreakerOptions::default().failure_threshold(2)),
    ));
    assert_eq!(msg, "conflicting options on step `b`: circuit breaker `api` is given different options by two steps");
}

#[tokio::test]
async fn engine_rejects_unknown_workflows_and_children() {
    let child_ref = Workflow::new("signup").step("create", noop).add_workflow(
        "notify",
        "send_notificaton",
        Step::opts().after("create"),
    );
    let notifications = Workflow::new("send_notification").step("send", noop).build().unwrap();
    let err = Engine::builder().register(notifications).register(child_ref.build().unwrap()).build().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "step `notify` of workflow `signup` runs workflow `send_notificaton`, which is not registered (did you mean `send_notification`?)"
    );
    let engine = Engine::builder()
        .register(Workflow::new("user_onboarding").step("a", noop).build().unwrap())
        .build()
        .await
        .unwrap();
    let err = engine.start("user_onbaording", json!({})).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown workflow `user_onbaording` (did you mean `user_onboarding`?); registered workflows: `user_onboarding`"
    );
    let err = engine.start("user_onboarding", json!([1, 2])).await.unwrap_err();
    assert!(err.to_string().starts_with("invalid input for workflow `user_onboarding`"), "{err}");
}
