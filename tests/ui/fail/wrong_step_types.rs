use sagaflow::prelude::*;

struct Typed;

#[workflow(name = "typed")]
impl Typed {
    #[step]
    async fn returns_a_number(&self) -> u32 {
        7
    }

    #[step]
    async fn wrong_context(&self, ctx: &String) -> StepResult {
        let _ = ctx;
        Ok(Outcome::Done)
    }

    #[step(when = not_a_bool)]
    async fn conditional(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    fn not_a_bool(_ctx: &Context) -> u8 {
        1
    }
}

fn main() {}
