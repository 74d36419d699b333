use sagaflow::prelude::*;

struct Orders;

#[workflow(name = "orders")]
impl Orders {
    #[step(when = in_stock)]
    async fn reserve(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(when = has_budget)]
    async fn purchase(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    async fn in_stock(ctx: &Context) -> bool {
        ctx.get_or("in_stock", false)
    }

    fn has_budget(&self, ctx: &Context, limit: u64) -> bool {
        ctx.get_or("budget", 0) > limit
    }
}

fn main() {}
