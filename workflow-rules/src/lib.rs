//! The rules that [sagaflow](https://docs.rs/sagaflow)'s runtime and its attribute
//! macros both apply, kept once: the duration grammar (the macros check a literal
//! at compile time by the rule the runtime reads it with) and the "did you mean"
//! suggestions of their error messages.
//!
//! Users depend on `sagaflow`; nothing here is needed directly.

pub mod duration;
pub mod suggest;
