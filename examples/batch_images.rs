//! SPEC's batch image processing: a graft adds one step per image at run time, ten
//! run at a time; run against a simulated image store and processor on a SQLite
//! file, with a live view of every image's step and retry.
//!
//! ```sh
//! cargo run --example batch_images                    # 24 images, all uploaded
//! cargo run --example batch_images -- --flaky-upload  # some uploads drop once (retried)
//! cargo run --example batch_images -- --corrupt       # two corrupt files, counted as failed
//! cargo run --example batch_images -- --upload-down   # uploads never succeed: the batch fails
//! ```

#[path = "scenarios/batch_images.rs"]
mod batch_images;
#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::Ordering;

use sagaflow::prelude::*;

use batch_images::{ImageFaults, ImageProcessing, ImageService};
use support::live::LiveView;
use support::run::{Database, Flags, print_outcome};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags = Flags::parse(
        "batch_images",
        "Processes batch-2025-06 (24 images) against a simulated image store.",
        &[
            ("--flaky-upload", "every fifth image's first upload drops (the engine retries it)"),
            ("--corrupt", "img07 and img19 are corrupt (reported as failed, the batch goes on)"),
            ("--upload-down", "the upload service is down: retries run out and the batch fails"),
        ],
    )?;
    let ids = |list: &[u32]| list.iter().map(|i| format!("img{i:02}")).collect();
    let images = ImageService::new(ImageFaults {
        corrupt: if flags.has("--corrupt") { ids(&[7, 19]) } else { Default::default() },
        flaky_uploads: if flags.has("--flaky-upload") { ids(&[5, 10, 15, 20]) } else { Default::default() },
        upload_down: flags.has("--upload-down"),
    });

    let db = Database::for_program("batch_images")?;
    println!("store: {} (simulated image store and processor)\n", db.url());
    let engine =
        Engine::builder().store_url(db.url()).workflow(ImageProcessing { images: images.clone() }).build().await?;

    let view = LiveView::watch(&engine);
    let printer = view.printer();
    images.ledger.observe(move |entry| printer.service(entry));
    let id = engine.start("batch_image_processing", json!({ "batch_id": "batch-2025-06", "batch_size": 24 })).await?;
    let state = engine.wait(id).await?;
    view.finish().await;

    print_outcome(&engine, &state).await?;
    println!("images processed at once, at most: {}", images.peak_in_flight.load(Ordering::SeqCst));
    engine.shutdown().await;
    Ok(())
}
