//! Turns what a step returned into the machine's [`StepReport`]: durations are read,
//! graft additions get their policies, and invalid outcomes become errors.

use std::sync::Arc;

use super::event::{AwaitSpec, GraftedStep, StepReport};
use crate::model::policy::{PolicyError, resolve_step_policy};
use crate::model::{Outcome, StepError, StepResult, WorkflowPolicy, kinds};

/// Converts a step result. `jitter` is a sample in `[0, 1)` for retry delays.
pub(crate) fn report_of(step: &str, result: StepResult, wf: &WorkflowPolicy, jitter: f64) -> StepReport {
    let failed = |error: StepError| StepReport::Failed { error, jitter };
    let invalid = |msg: String| failed(StepError::new(kinds::INVALID_OUTCOME, msg).permanent());
    let bad_duration = |msg: String| failed(StepError::new(kinds::INVALID_DURATION, msg).permanent());
    match result {
        Err(error) => failed(error),
        Ok(Outcome::Done) => StepReport::Done,
        Ok(Outcome::Output(value)) => StepReport::Output { value },
        Ok(Outcome::Skip(reason)) => StepReport::Skip { reason },
        Ok(Outcome::Snooze(d)) => match d.to_duration() {
            Ok(delay) => StepReport::Snooze { delay },
            Err(e) => bad_duration(format!("step `{step}` snoozed with an invalid duration: {e}")),
        },
        Ok(Outcome::Await(req)) => {
            let timeout = match &req.timeout {
                None => None,
                Some(t) => match t.to_timeout() {
                    Ok(crate::model::Timeout::After(d)) => Some(d),
                    Ok(crate::model::Timeout::Infinity) => None,
                    Ok(crate::model::Timeout::Dynamic(_)) => {
                        return invalid(format!("step `{step}` awaited with a dynamic timeout"));
                    }
                    Err(e) => {
                        return bad_duration(format!("step `{step}` awaited with an invalid timeout: {e}"));
                    }
                },
            };
            let req = *req;
            let signal = match req.signal {
                Some(name) if name.trim().is_empty() => {
                    return invalid(format!("step `{step}` awaited a signal with an empty name"));
                }
                name => name.map(|n| Arc::from(n.as_str())),
            };
            if req.rerun && signal.is_none() {
                return invalid(format!("step `{step}` asked to run again on a signal without naming one"));
            }
            StepReport::Await {
                spec: Box::new(AwaitSpec {
                    timeout,
                    notify: req.notify,
                    approvers: req.approvers,
                    data: req.data,
                    signal,
                    rerun: req.rerun,
                }),
            }
        }
        Ok(Outcome::Expand(tasks)) => {
            let mut steps = Vec::with_capacity(tasks.len());
            for t in tasks {
                let o = &t.options;
                if !(o.after.is_empty()
                    && o.after_any.is_empty()
                    && o.after_group.is_empty()
                    && o.after_graft.is_empty())
                {
                    return invalid(format!(
                        "step `{}` added by graft `{step}` declares dependencies; added steps run after their graft",
                        t.name
                    ));
                }
                if t.name.trim().is_empty() {
                    return invalid(format!("graft `{step}` added a step with an empty name"));
                }
                let policy = match resolve_step_policy(o, wf) {
                    Ok(p) => p,
                    Err(PolicyError::Invalid(option, reason)) => {
                        return invalid(format!(
                            "invalid `{option}` on step `{}` added by graft `{step}`: {reason}",
                            t.name
                        ));
                    }
                    Err(PolicyError::Conflict(reason)) => {
                        return invalid(format!(
                            "conflicting options on step `{}` added by graft `{step}`: {reason}",
                            t.name
                        ));
                    }
                };
                steps.push(GraftedStep {
                    name: Arc::from(t.name.as_str()),
                    body: Some(t.body),
                    policy: Some(Arc::new(policy)),
                });
            }
            StepReport::Expand { steps }
        }
    }
}
