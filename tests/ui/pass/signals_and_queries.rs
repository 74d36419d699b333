//! Signal parameters and queries compile without a single warning, borrowed or
//! owned, with and without `&self`, and their types are checked.
#![deny(warnings, missing_docs, unused_qualifications, unreachable_pub)]

use sagaflow::prelude::*;
use sagaflow::ExecutionState;
use serde::Deserialize;

/// A reviewer's answer.
#[derive(Debug, Deserialize)]
pub struct Decision {
    /// Yes or no.
    pub approved: bool,
}

/// An approval.
pub struct Approval {
    /// Who is told.
    pub notify: String,
}

#[workflow(name = "approval")]
impl Approval {
    #[step(await_approval = true)]
    fn ask(&self, ctx: &Context, #[signal("decision", timeout = "48h")] decision: &Decision) -> StepResult {
        let _ = (ctx, &self.notify);
        Ok(json!({ "approved": decision.approved }).into())
    }

    #[step(after = ask)]
    async fn record(#[signal(decision)] again: Decision, #[signal("note")] note: Option<String>) -> Result<(), StepError> {
        let _ = (again, note);
        Ok(())
    }

    #[query]
    fn approved(&self, state: &ExecutionState) -> Option<bool> {
        state.get("approved")
    }

    #[query]
    fn steps(state: &ExecutionState) -> usize {
        state.steps.len()
    }
}

fn main() {
    let def = Approval { notify: "finance".into() }.into_definition().unwrap();
    assert_eq!(def.queries().collect::<Vec<_>>(), ["approved", "steps"]);
}
