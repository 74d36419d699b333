use sagaflow::prelude::*;

struct Export;

#[workflow(name = "export", timeout = "1h", timeout = "2h")]
impl Export {
    #[step(timeout = "30s", max_retries = 3, timeout = "1m")]
    async fn fetch(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
