use sagaflow::prelude::*;

struct Export;

#[workflow(name = "data_export")]
impl Export {
    #[step]
    async fn fetch_users(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = fetch_user)]
    async fn transform(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after_any = [transform, uplod])]
    async fn upload(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
