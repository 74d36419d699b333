use sagaflow::prelude::*;

struct Batch;

#[workflow(name = "batch")]
impl Batch {
    // `StepResult` carries an `Outcome`: no type to read.
    #[step]
    async fn fetch(&self) -> StepResult {
        Ok(json!({ "ids": [1, 2, 3] }).into())
    }

    #[graft(after = fetch)]
    async fn process(&self) -> StepResult {
        Ok(Outcome::expand([]))
    }

    #[step(after_graft = process)]
    fn summarize(#[from(fetch)] ids: Vec<u32>, #[from(process)] results: u32) -> Result<usize, StepError> {
        Ok(ids.len() + results as usize)
    }
}

fn main() {}
