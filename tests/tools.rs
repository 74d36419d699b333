//! External tools some tests run (Graphviz `dot`, Node with mermaid.js), and golden
//! files.
//!
//! A test that needs a missing tool fails under `CI=true` (the CI script installs
//! them) and is skipped with a loud message elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether a tool is there; if not, panics under `CI=true` and otherwise prints
/// why the test is skipped.
pub fn require(tool: &str, available: bool, install: &str) -> bool {
    if available {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "{tool} is required under CI=true but is missing; install it with: {install}");
    // Straight to the process's stderr: the test harness captures `eprintln!` of
    // passing tests, and this must be seen.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n!!! SKIPPED: {tool} is missing; install it with: {install}\n");
    false
}

fn runs(cmd: &str, arg: &str) -> bool {
    Command::new(cmd).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Graphviz's `dot`, if installed.
pub fn have_dot() -> bool {
    require("Graphviz `dot`", runs("dot", "-V"), "apt-get install graphviz (or run .ci/run)")
}

/// The directory of the mermaid.js checker (`tests/mermaid`).
pub fn mermaid_dir() -> PathBuf {
    root().join("tests/mermaid")
}

/// Node and the checker's npm packages, if installed.
pub fn have_mermaid() -> bool {
    let installed = runs("node", "--version") && mermaid_dir().join("node_modules/mermaid/package.json").is_file();
    require("Node with mermaid.js (tests/mermaid)", installed, "cd tests/mermaid && npm ci (or run .ci/run)")
}

/// Runs a command with `input` on stdin.
pub fn run(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sagaflow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compares `actual` with `tests/golden/{name}`. With `SAGAFLOW_BLESS=1` the file
/// is written instead (review the diff before committing it).
pub fn assert_golden(name: &str, actual: &str) {
    let path: PathBuf = root().join("tests/golden").join(name);
    if std::env::var("SAGAFLOW_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read golden file {}: {e} (SAGAFLOW_BLESS=1 writes it)", path.display()));
    if expected != actual {
        panic!(
            "output differs from golden file {}\n--- expected\n{expected}\n--- actual\n{actual}\n\
             (if the change is intended, rerun with SAGAFLOW_BLESS=1 and review the diff)",
            display(&path)
        );
    }
}

fn display(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}
