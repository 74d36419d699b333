//! SPEC's "Batch Processing with Dynamic Steps": list a batch's pending images,
//! add one step per image at run time (a graft), process at most ten at a time
//! (resize, optimize, upload), then count what succeeded and report it.
//!
//! As in SPEC, an image that cannot be processed (a corrupt file) is recorded as
//! `status: "error"` and does not fail the batch. A dropped upload connection is
//! different: it is transient, so the image's step fails with `connection_error`
//! and the engine retries it (three times, 300 ms apart); an upload service that
//! stays down fails the batch.
//!
//! The image store and the image processor are simulations (see [`ImageService`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sagaflow::Task;
use sagaflow::prelude::*;
use serde::{Deserialize, Serialize};

use super::support::sim::{Faults, Ledger, latency};

/// Failures the simulated services are told to produce.
#[derive(Clone, Debug, Default)]
pub(crate) struct ImageFaults {
    /// Images whose file is corrupt (processing reports an error for them).
    pub(crate) corrupt: HashSet<String>,
    /// Images whose first upload attempt drops the connection.
    pub(crate) flaky_uploads: HashSet<String>,
    /// The upload service refuses every upload.
    pub(crate) upload_down: bool,
}

/// A pending image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Image {
    pub(crate) id: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) bytes: u64,
}

/// The simulated image store and processor.
#[derive(Debug)]
pub(crate) struct ImageService {
    /// What the services did.
    pub(crate) ledger: Arc<Ledger>,
    /// The failures to produce, per batch.
    pub(crate) faults: Faults<ImageFaults>,
    upload_attempts: Mutex<HashMap<String, u32>>,
    /// Images being processed right now, and the most at once.
    in_flight: AtomicUsize,
    /// The most images processed at the same time.
    pub(crate) peak_in_flight: AtomicUsize,
}

impl ImageService {
    /// Services with these faults.
    pub(crate) fn new(faults: ImageFaults) -> Arc<ImageService> {
        Arc::new(ImageService {
            ledger: Ledger::new(),
            faults: Faults::new(faults),
            upload_attempts: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
        })
    }

    async fn list_pending(&self, batch: &str, count: u32) -> Vec<Image> {
        latency(200).await;
        let images: Vec<Image> = (1..=count)
            .map(|i| Image {
                id: format!("img{i:02}"),
                width: 1600 + 160 * (i % 5),
                height: 1200 + 90 * (i % 3),
                bytes: 2_400_000 + 97_000 * u64::from(i % 7),
            })
            .collect();
        self.ledger.record("image_store", format!("listed {} pending images of {batch}", images.len()));
        images
    }

    async fn resize(&self, batch: &str, image: &Image, width: u32, height: u32) -> Result<u64, String> {
        latency(250 + 20 * u64::from(image.width % 7)).await;
        if self.faults.of(batch).corrupt.contains(&image.id) {
            return Err(format!("{} is not a valid JPEG (truncated at byte 4096)", image.id));
        }
        Ok(image.bytes * u64::from(width * height) / u64::from(image.width * image.height))
    }

    async fn optimize(&self, bytes: u64) -> u64 {
        latency(180).await;
        bytes * 6 / 10
    }

    async fn upload(&self, batch: &str, image: &Image, bytes: u64) -> Result<String, StepError> {
        latency(300).await;
        let attempt = {
            let mut attempts = self.upload_attempts.lock().unwrap();
            let n = attempts.entry(format!("{batch}/{}", image.id)).or_insert(0);
            *n += 1;
            *n
        };
        let faults = self.faults.of(batch);
        if faults.upload_down || (attempt == 1 && faults.flaky_uploads.contains(&image.id)) {
            self.ledger.record("image_store", format!("upload of {} dropped (attempt {attempt})", image.id));
            return Err(StepError::new(
                "connection_error",
                format!("the upload of {} was reset by the peer", image.id),
            ));
        }
        let url = format!("https://cdn.example.com/800x600/{}.jpg", image.id);
        self.ledger.record("image_store", format!("uploaded {} ({} KB) to {url}", image.id, bytes / 1000));
        Ok(url)
    }

    /// Resize, optimize, upload; SPEC's `process_single_image`. A processing error
    /// is part of the result; a dropped upload is an error for the engine to retry.
    async fn process_single_image(&self, batch: &str, image: &Image) -> Result<serde_json::Value, StepError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        let result = async {
            let resized = match self.resize(batch, image, 800, 600).await {
                Ok(bytes) => bytes,
                Err(reason) => {
                    self.ledger.record("processor", format!("gave up on {}: {reason}", image.id));
                    return Ok(json!({ "status": "error", "error": reason }));
                }
            };
            let optimized = self.optimize(resized).await;
            let url = self.upload(batch, image, optimized).await?;
            Ok(json!({ "status": "ok", "url": url }))
        }
        .await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    async fn send_batch_summary(&self, batch: &str, total: usize, processed: usize, failed: usize) {
        latency(100).await;
        self.ledger.record("reports", format!("{batch}: {processed} of {total} processed, {failed} failed"));
    }
}

/// The workflow, bound to its services.
#[derive(Debug)]
pub(crate) struct ImageProcessing {
    /// The services the steps call.
    pub(crate) images: Arc<ImageService>,
}

#[workflow(name = "batch_image_processing", timeout = "1h", step_concurrency = 10)]
impl ImageProcessing {
    #[step]
    async fn fetch_images(&self, ctx: &Context) -> StepResult {
        let batch: String = ctx.get("batch_id")?;
        let images = self.images.list_pending(&batch, ctx.get_or("batch_size", 24)).await;
        Ok(json!({ "total_count": images.len(), "images": images }).into())
    }

    // Dynamic expansion: one step per image.
    #[graft(after = fetch_images)]
    async fn process_images(&self, ctx: &Context) -> StepResult {
        let images: Vec<Image> = ctx.get("images")?;
        let batch: Arc<str> = ctx.get::<String>("batch_id")?.into();
        Ok(Outcome::expand(images.into_iter().map(|image| {
            let service = Arc::clone(&self.images);
            let batch = Arc::clone(&batch);
            let step_name = format!("process_{}", image.id);
            Task::new(step_name, move |_ctx: Context| {
                let (service, image, batch) = (Arc::clone(&service), image.clone(), Arc::clone(&batch));
                async move { service.process_single_image(&batch, &image).await }
            })
            .with(
                Step::opts()
                    .max_retries(3)
                    .retry_delay("300ms")
                    .retry_backoff(Backoff::Fixed)
                    .retry_on("connection_error"),
            )
        })))
    }

    #[step(after_graft = process_images)]
    fn aggregate_results(ctx: &Context) -> StepResult {
        let images: Vec<Image> = ctx.get("images")?;
        let results: Vec<serde_json::Value> = images
            .iter()
            .map(|image| ctx.get::<serde_json::Value>(&format!("process_{}", image.id)))
            .collect::<Result<_, _>>()?;
        let succeeded = results.iter().filter(|r| r["status"] == "ok").count();
        let failed = results.iter().filter(|r| r["status"] == "error").count();
        Ok(json!({ "processed": succeeded, "failed": failed, "results": results }).into())
    }

    #[step(after = aggregate_results)]
    async fn send_report(&self, ctx: &Context) -> StepResult {
        let batch: String = ctx.get("batch_id")?;
        self.images
            .send_batch_summary(&batch, ctx.get("total_count")?, ctx.get("processed")?, ctx.get("failed")?)
            .await;
        Ok(Outcome::Done)
    }
}
