//! The rules that [sagaflow](https://docs.rs/sagaflow)'s runtime and its attribute
//! macros both apply, kept once: the duration grammar (the macros check a literal
//! at compile time by the rule the runtime reads it with), the "did you mean"
//! suggestions of their error messages, and circuit breakers' defaults and the
//! rule that their users agree on their options.
//!
//! Users depend on `sagaflow`; nothing here is needed directly.

pub mod breaker;
pub mod duration;
pub mod suggest;
