use sagaflow::prelude::*;

trait Runs {}

struct Flow;

#[workflow(name = "flow")]
impl Runs for Flow {}

struct Generic<T>(T);

#[workflow(name = "generic")]
impl<T: Send + Sync + 'static> Generic<T> {
    #[step]
    async fn only(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

#[workflow(name = "on_a_struct")]
struct NotAnImpl;

fn main() {}
