use sagaflow::prelude::*;

struct Loop;

#[workflow(name = "loop")]
impl Loop {
    #[step(after = c)]
    async fn a(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = a)]
    async fn b(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after = b)]
    async fn c(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
