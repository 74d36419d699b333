use sagaflow::prelude::*;

struct Mirrors;

#[workflow(name = "mirrors")]
impl Mirrors {
    #[step]
    fn resolve() -> Result<String, StepError> {
        Ok("eu".into())
    }

    #[step(after = resolve)]
    fn checksum_a() -> Result<String, StepError> {
        Ok("a1".into())
    }

    #[step(after = checksum_a)]
    fn mirror_a() -> Result<String, StepError> {
        Ok("https://a.example.com".into())
    }

    #[step(after = resolve)]
    fn mirror_b() -> Result<String, StepError> {
        Ok("https://b.example.com".into())
    }

    // Starts as soon as one mirror answers: the other may not have run.
    #[step(after_any = [mirror_a, mirror_b])]
    fn download(#[from(mirror_a)] url: String, #[from(resolve)] region: String) -> Result<String, StepError> {
        Ok(format!("{url} in {region}"))
    }

    // `checksum_a` is before `download` only on the path through `mirror_a`.
    #[step(after = download)]
    fn verify(#[from(checksum_a)] checksum: String, #[from(download)] file: String) -> Result<bool, StepError> {
        Ok(file.contains(&checksum))
    }
}

fn main() {}
