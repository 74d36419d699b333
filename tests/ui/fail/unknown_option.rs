use sagaflow::prelude::*;

struct Export;

#[workflow(name = "export", on_failur = cleanup)]
impl Export {
    #[step(tmeout = "30s", retries = 3)]
    async fn fetch(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = fetch, on_error = ignore)]
    async fn upload(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    async fn cleanup(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
