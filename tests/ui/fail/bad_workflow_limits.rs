use sagaflow::prelude::*;

struct Imports;

#[workflow(name = "imports", concurrency = 0, concurrency_key = "tenant_id", rate_limit_key = "account")]
impl Imports {
    #[step]
    async fn load(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

struct Exports;

#[workflow(name = "exports", concurrency_key = "tenant_id", rate_limit = "10 per second")]
impl Exports {
    #[step]
    async fn dump(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
