//! Statistics of a workflow's ended executions.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::execution::ExecutionState;
use crate::model::status::Status;

/// What the ended executions of one workflow add up to.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Stats {
    /// Ended executions counted (the newest, up to the query's limit).
    pub(crate) ended: usize,
    pub(crate) completed: usize,
    pub(crate) failed: usize,
    pub(crate) cancelled: usize,
    /// Completed among the ended, in percent; `None` with nothing ended.
    pub(crate) success_rate: Option<f64>,
    /// Average and 95th percentile of durations, in milliseconds.
    pub(crate) avg_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    /// Failures by error kind.
    pub(crate) errors: BTreeMap<String, usize>,
}

impl Stats {
    pub(crate) fn of(history: &[ExecutionState]) -> Stats {
        let mut stats = Stats { ended: history.len(), ..Stats::default() };
        let mut durations: Vec<f64> = Vec::with_capacity(history.len());
        for s in history {
            match s.status {
                Status::Completed => stats.completed += 1,
                Status::Cancelled => stats.cancelled += 1,
                status if status.is_failure() => stats.failed += 1,
                _ => {}
            }
            if let Some(f) = &s.failure {
                *stats.errors.entry(f.error.kind().to_owned()).or_default() += 1;
            }
            durations.push(s.duration.as_secs_f64() * 1000.0);
        }
        if !history.is_empty() {
            stats.success_rate = Some(stats.completed as f64 * 100.0 / history.len() as f64);
            stats.avg_ms = Some(durations.iter().sum::<f64>() / durations.len() as f64);
            durations.sort_by(f64::total_cmp);
            let i = ((durations.len() as f64 - 1.0) * 0.95).round() as usize;
            stats.p95_ms = durations.get(i).copied();
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::StepError;
    use crate::model::execution::FailureInfo;
    use crate::store::conformance::{final_state, new_execution};

    fn ended(status: Status, ms: u64, kind: Option<&str>) -> ExecutionState {
        let n = new_execution("w", chrono::Utc::now());
        let mut s = final_state(&n, status, n.created_at);
        s.duration = Duration::from_millis(ms);
        s.failure =
            kind.map(|k| FailureInfo { step: Some("s".into()), error: StepError::new(k.to_owned(), "x"), attempts: 1 });
        s
    }

    #[test]
    fn rates_durations_and_error_kinds() {
        let mut history: Vec<ExecutionState> = (1..=18).map(|i| ended(Status::Completed, i * 10, None)).collect();
        history.push(ended(Status::Failed, 1000, Some("timeout")));
        history.push(ended(Status::Cancelled, 5, None));
        let s = Stats::of(&history);
        assert_eq!((s.ended, s.completed, s.failed, s.cancelled), (20, 18, 1, 1));
        assert_eq!(s.success_rate, Some(90.0));
        assert_eq!(s.errors.get("timeout"), Some(&1));
        assert_eq!(s.p95_ms, Some(180.0), "the 95th percentile of 20 durations is the 19th smallest");
        let avg = s.avg_ms.expect("an average");
        assert!((avg - (1710.0 + 1005.0) / 20.0).abs() < 1e-9, "average {avg}");
        assert_eq!(Stats::of(&[]).success_rate, None, "nothing ended: no rate");
    }
}
