use sagaflow::prelude::*;

struct Render;

#[workflow(name = "render")]
impl Render {
    #[step(cancel_grace = "10s")]
    async fn render_frames(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
