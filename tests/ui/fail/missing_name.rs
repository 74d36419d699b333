use sagaflow::prelude::*;

struct Nameless;

#[workflow(timeout = "1h")]
impl Nameless {
    #[step]
    async fn only(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

struct Empty;

#[workflow(name = "empty")]
impl Empty {
    fn helper(&self) {}
}

fn main() {}
