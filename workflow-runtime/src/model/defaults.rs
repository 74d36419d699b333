//! Defaults that apply where neither the step nor the workflow sets a value.

use std::time::Duration;

/// Step timeout: 5 minutes.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// Retries after the first attempt: 3.
pub const MAX_RETRIES: u32 = 3;
/// First retry delay: 1 second.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Cap on retry delays: 5 minutes.
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(300);
/// How long dead letters are kept: 30 days.
pub const DEAD_LETTER_TTL: Duration = Duration::from_secs(30 * 86_400);
/// How long a cancellable step may take to return after its execution is
/// cancelled, before it is interrupted: 5 seconds.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);
