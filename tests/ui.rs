//! Compile-time behaviour of the macros (trybuild): programs that must compile
//! (`ui/pass`, under `#![deny(warnings)]`) and mistakes that must be reported at the
//! token to fix (`ui/fail`, each with its reviewed `.stderr`).
//!
//! The expected output follows the installed compiler's wording; regenerate with
//! `TRYBUILD=overwrite cargo test --test integration ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
