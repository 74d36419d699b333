//! Integration tests of the `sagaflow` facade, as users see it. One crate, one
//! module per topic.

// Helpers are `pub` for the sibling modules; nothing here is a public API.
#![allow(unreachable_pub, missing_docs)]

mod common;
mod patterns;
mod scheduling;
