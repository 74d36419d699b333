//! Schedules: each `schedule(..)`'s trigger (cron patterns, intervals, instants) and
//! its window.

use darling::error::Accumulator;
use syn::LitStr;

use super::Checker;
use crate::parse::{ScheduleAttr, Trigger};
use crate::plan::{Arg, Call};
use crate::values::error;

impl Checker<'_> {
    pub(super) fn schedule(&self, s: &ScheduleAttr, acc: &mut Accumulator) -> Option<Arg> {
        let trigger = s.trigger.as_ref()?;
        let mut ok = true;
        let trigger_call = match &trigger.value {
            Trigger::Cron(patterns) => {
                let parser = croner::parser::CronParser::builder().seconds(croner::parser::Seconds::Optional).build();
                for p in patterns {
                    if let Err(e) = parser.parse(&p.value()) {
                        acc.push(error(p.span(), format!("invalid cron expression `{}`: {e}", p.value())));
                        ok = false;
                    }
                }
                Call { method: "cron", args: vec![Arg::StrSlice(patterns.clone())] }
            }
            Trigger::Every(d) => {
                if d.value().is_some_and(|d| d.is_zero()) {
                    acc.push(error(d.span(), "invalid `every`: the interval must be greater than zero"));
                    ok = false;
                }
                Call { method: "every", args: vec![Arg::Duration(d.clone())] }
            }
            Trigger::At(t) => {
                ok &= acc.handle(instant(t, "at")).is_some();
                Call { method: "at", args: vec![Arg::LitStr(t.clone())] }
            }
            Trigger::In(d) => Call { method: "in_", args: vec![Arg::Duration(d.clone())] },
        };
        let mut modifiers = Vec::new();
        let start = s.start_at.as_ref().and_then(|t| {
            modifiers.push(Call { method: "start_at", args: vec![Arg::LitStr(t.value.clone())] });
            acc.handle(instant(&t.value, "start_at"))
        });
        if let Some(end_at) = &s.end_at {
            modifiers.push(Call { method: "end_at", args: vec![Arg::LitStr(end_at.value.clone())] });
            match acc.handle(instant(&end_at.value, "end_at")) {
                Some(end) if start.is_some_and(|start| end <= start) => {
                    acc.push(error(end_at.value.span(), "invalid window: `end_at` is not after `start_at`"));
                    ok = false;
                }
                Some(_) => {}
                None => ok = false,
            }
        }
        if let Some(tz) = &s.timezone {
            modifiers.push(Call { method: "timezone", args: vec![Arg::LitStr(tz.value.clone())] });
        }
        if let Some(m) = &s.misfire {
            modifiers.push(Call { method: "misfire", args: vec![Arg::Variant("Misfire", m.value)] });
        }
        ok.then(|| Arg::Schedule { workflow: self.workflow.clone(), trigger: Box::new(trigger_call), modifiers })
    }
}

fn instant(lit: &LitStr, field: &str) -> darling::Result<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(&lit.value()).map_err(|e| {
        error(
            lit.span(),
            format!(
                "invalid `{field}` instant `{}`: {e} (expected RFC 3339, such as `2025-12-25T00:00:00Z`)",
                lit.value()
            ),
        )
    })
}
