use sagaflow::prelude::*;

struct Child;

#[workflow(name = "child")]
impl Child {
    #[step]
    fn only() -> StepResult {
        Ok(Outcome::Done)
    }
}

struct Approval;

#[workflow(name = "approval", on_failure = failed)]
impl Approval {
    #[step(rollback = undo)]
    fn ask(#[signal] decision: bool, #[signal(timeout = "1h")] other: bool) -> Result<bool, StepError> {
        Ok(decision && other)
    }

    #[step(after = ask)]
    fn check(#[signal("decision", timout = "1h")] decision: bool, #[signal("late", timeout = "soon")] late: bool) -> StepResult {
        let _ = (decision, late);
        Ok(Outcome::Done)
    }

    #[subworkflow(child, after = ask)]
    fn start_child(#[signal("go")] go: bool) -> Result<serde_json::Value, StepError> {
        Ok(json!({ "go": go }))
    }

    fn undo(#[signal("decision")] decision: bool) -> StepResult {
        let _ = decision;
        Ok(Outcome::Done)
    }

    fn failed(#[signal("decision")] decision: bool) -> StepResult {
        let _ = decision;
        Ok(Outcome::Done)
    }
}

fn main() {}
