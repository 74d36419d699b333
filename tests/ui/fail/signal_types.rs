use sagaflow::prelude::*;

struct NotJson;

#[derive(serde::Deserialize)]
struct Decision {
    approved: bool,
}

struct Approval;

#[workflow(name = "approval")]
impl Approval {
    #[step]
    fn ask(#[signal("decision")] decision: Decision) -> Result<bool, StepError> {
        Ok(decision.approved)
    }

    #[step(after = ask)]
    fn again(#[signal("decision")] decision: bool) -> Result<bool, StepError> {
        Ok(decision)
    }

    #[step(after = ask)]
    fn opaque(#[signal("blob")] blob: NotJson) -> StepResult {
        let _ = blob;
        Ok(Outcome::Done)
    }
}

fn main() {}
