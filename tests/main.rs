//! Integration tests of the `sagaflow` facade, as users see it. One crate, one
//! module per topic.

// Helpers are `pub` for the sibling modules; nothing here is a public API.
#![allow(unreachable_pub, missing_docs)]

mod acknowledged;
mod build_errors;
mod chaos;
mod cli;
mod cluster;
mod cluster_faults;
mod common;
mod control;
mod crash;
mod dashboard;
mod debounce;
mod diagrams;
mod durability;
mod failures;
mod faults;
mod introspection;
mod kill;
mod limits;
mod macros;
mod patterns;
mod properties;
mod proxy;
mod real_world;
mod restart;
mod retention;
mod scheduling;
mod semantics;
mod signals;
mod telemetry;
mod testing_kit;
mod tools;
mod traces;
mod ui;
mod unique;
mod workflow_limits;
