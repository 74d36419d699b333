use sagaflow::prelude::*;

struct MultiUpload;

#[workflow(name = "multi_upload")]
impl MultiUpload {
    #[step(group = uploads)]
    async fn upload_s3(&self) -> StepResult {
        Ok(Outcome::Done)
    }

    #[step(after_group = upload)]
    async fn notify_complete(&self) -> StepResult {
        Ok(Outcome::Done)
    }
}

fn main() {}
