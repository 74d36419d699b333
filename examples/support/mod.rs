//! What the real-world example programs share: the building blocks of their
//! simulated services ([`sim`]), the live view of a running execution ([`live`]),
//! and running a program to its end ([`run`]: flags, the SQLite file, resuming
//! awaits, the closing report and diagram).
//!
//! Included by each program with `#[path = "support/mod.rs"] mod support;`, and by
//! the integration tests (`tests/real_world.rs`), which drive the same workflows.

// Each program uses part of this module; what one leaves unused another needs.
#![allow(dead_code)]

pub(crate) mod live;
pub(crate) mod run;
pub(crate) mod sim;
