//! Rules that must hold for every DAG, checked on random ones.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use sagaflow::prelude::*;
use tokio::time::Instant;

/// A random DAG: for each step, its delay in ms and the earlier steps it waits for.
#[derive(Debug, Clone)]
struct Dag {
    steps: Vec<(u64, Vec<usize>)>,
    concurrency: Option<u32>,
}

fn dag() -> impl Strategy<Value = Dag> {
    (1usize..=50)
        .prop_flat_map(|n| {
            let steps =
                (0..n).map(|i| (0u64..5, proptest::collection::vec(0..i.max(1), 0..=i.min(4)))).collect::<Vec<_>>();
            (steps, proptest::option::of(1u32..8))
        })
        .prop_map(|(steps, concurrency)| Dag {
            steps: steps
                .into_iter()
                .enumerate()
                .map(|(i, (ms, mut deps))| {
                    deps.retain(|&d| d < i);
                    deps.sort_unstable();
                    deps.dedup();
                    (ms, deps)
                })
                .collect(),
            concurrency,
        })
}

type Log = Arc<Mutex<Vec<(usize, Instant, Instant)>>>;

fn build(dag: &Dag, log: &Log) -> sagaflow::WorkflowDef {
    let mut wf = Workflow::new("random").step_max_retries(0);
    if let Some(c) = dag.concurrency {
        wf = wf.step_concurrency(c);
    }
    for (i, (ms, deps)) in dag.steps.iter().enumerate() {
        let (ms, log) = (*ms, Arc::clone(log));
        let step = move |_ctx: Context| {
            let log = Arc::clone(&log);
            async move {
                let start = Instant::now();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                log.lock().unwrap().push((i, start, Instant::now()));
                Ok::<_, StepError>(json!({ format!("out_{i}"): i }))
            }
        };
        let after: Vec<String> = deps.iter().map(|d| format!("s{d}")).collect();
        wf = wf.step_with(format!("s{i}"), step, Step::opts().after(after));
    }
    wf.build().expect("random DAGs are valid")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_step_runs_once_after_its_dependencies(dag in dag()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let log: Log = Arc::default();
        let def = build(&dag, &log);
        let state = rt.block_on(async {
            let engine = Engine::builder().register(def).build().await.unwrap();
            let id = engine.start("random", json!({})).await.unwrap();
            engine.wait(id).await.unwrap()
        });
        prop_assert_eq!(state.status, Status::Completed);
        let runs = log.lock().unwrap().clone();
        for i in 0..dag.steps.len() {
            let mine: Vec<_> = runs.iter().filter(|r| r.0 == i).collect();
            prop_assert_eq!(mine.len(), 1, "step s{} ran {} times", i, mine.len());
            let start = mine[0].1;
            for &d in &dag.steps[i].1 {
                let dep_end = runs.iter().find(|r| r.0 == d).unwrap().2;
                prop_assert!(dep_end <= start, "s{} started before its dependency s{} ended", i, d);
            }
            prop_assert_eq!(state.context.get(&format!("out_{i}")), Some(&json!(i)));
        }
        if let Some(limit) = dag.concurrency {
            for r in &runs {
                let overlapping = runs.iter().filter(|o| o.1 <= r.1 && r.1 < o.2).count();
                prop_assert!(overlapping <= limit as usize, "more than {} steps ran at once", limit);
            }
        }
    }
}

/// A random DAG where some steps have a compensation and one step fails for good.
#[derive(Debug, Clone)]
struct Saga {
    dag: Dag,
    rollback: Vec<bool>,
    failing: usize,
}

fn saga() -> impl Strategy<Value = Saga> {
    dag().prop_flat_map(|dag| {
        let n = dag.steps.len();
        (Just(dag), proptest::collection::vec(any::<bool>(), n), 0..n).prop_map(|(dag, rollback, failing)| Saga {
            dag,
            rollback,
            failing,
        })
    })
}

type Ends = Arc<Mutex<Vec<(usize, Instant)>>>;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn compensations_run_for_completed_steps_in_reverse_completion_order(saga in saga()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let completed: Ends = Arc::default();
        let compensated: Arc<Mutex<Vec<usize>>> = Arc::default();
        let mut wf = Workflow::new("saga").step_max_retries(0);
        for (i, (ms, deps)) in saga.dag.steps.iter().enumerate() {
            let (ms, fails, done) = (*ms + 1, i == saga.failing, Arc::clone(&completed));
            let step = move |_ctx: Context| {
                let done = Arc::clone(&done);
                async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    if fails {
                        return Err(StepError::msg("planned failure"));
                    }
                    done.lock().unwrap().push((i, Instant::now()));
                    Ok(())
                }
            };
            let after: Vec<String> = deps.iter().map(|d| format!("s{d}")).collect();
            let mut opts = Step::opts().after(after);
            if saga.rollback[i] {
                let comp = Arc::clone(&compensated);
                opts = opts.rollback(move |_ctx: Context| {
                    comp.lock().unwrap().push(i);
                    std::future::ready(Ok::<(), StepError>(()))
                });
            }
            wf = wf.step_with(format!("s{i}"), step, opts);
        }
        let def = wf.build().unwrap();
        let state = rt.block_on(async {
            let engine = Engine::builder().register(def).build().await.unwrap();
            let id = engine.start("saga", json!({})).await.unwrap();
            engine.wait(id).await.unwrap()
        });
        prop_assert!(state.status.is_failure());
        let completed = completed.lock().unwrap().clone();
        let compensated = compensated.lock().unwrap().clone();
        let mut expected: Vec<usize> = completed.iter().map(|c| c.0).filter(|&i| saga.rollback[i]).collect();
        let mut got = compensated.clone();
        expected.sort_unstable();
        got.sort_unstable();
        prop_assert_eq!(got, expected, "exactly the completed steps with a compensation are compensated");
        let end = |i: usize| completed.iter().find(|c| c.0 == i).unwrap().1;
        for pair in compensated.windows(2) {
            prop_assert!(end(pair[0]) >= end(pair[1]), "s{} was compensated before s{}, which completed later", pair[0], pair[1]);
        }
    }
}
