//! Running an example program to its end: its flags, its SQLite file, the awaits
//! the program resumes itself, and the closing report and Mermaid diagram.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use sagaflow::prelude::*;
use sagaflow::{DiagramOptions, ExecutionState};
use serde_json::Value;

use super::live::Printer;

/// The flags a program accepts, each with what it does.
#[derive(Debug)]
pub(crate) struct Flags {
    given: Vec<String>,
}

impl Flags {
    /// Reads the command line; `--help` prints the flags and exits, an unknown flag
    /// is an error that lists them.
    pub(crate) fn parse(program: &str, about: &str, known: &[(&str, &str)]) -> Result<Flags, String> {
        let usage = || {
            let mut text = format!("{about}\n\nusage: cargo run --example {program} -- [flags]\n\nflags:\n");
            for (flag, what) in known {
                let _ = writeln!(text, "  {flag:<22} {what}");
            }
            text
        };
        let mut given = Vec::new();
        for arg in std::env::args().skip(1) {
            if arg == "--help" || arg == "-h" {
                print!("{}", usage());
                std::process::exit(0);
            }
            if !known.iter().any(|(flag, _)| *flag == arg) {
                return Err(format!("unknown flag `{arg}`\n\n{}", usage()));
            }
            given.push(arg);
        }
        Ok(Flags { given })
    }

    /// Whether the flag was given.
    pub(crate) fn has(&self, flag: &str) -> bool {
        self.given.iter().any(|g| g == flag)
    }
}

/// The program's SQLite file, in a temporary directory removed when the program
/// ends (set `SAGAFLOW_EXAMPLE_DB=path/to/file.db` to keep it).
#[derive(Debug)]
pub(crate) struct Database {
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Database {
    /// A fresh file named after the program.
    pub(crate) fn for_program(program: &str) -> std::io::Result<Database> {
        if let Some(path) = std::env::var_os("SAGAFLOW_EXAMPLE_DB") {
            return Ok(Database { path: path.into(), _dir: None });
        }
        let dir = tempfile::Builder::new().prefix(&format!("sagaflow-{program}-")).tempdir()?;
        Ok(Database { path: dir.path().join(format!("{program}.db")), _dir: Some(dir) })
    }

    /// Its store URL.
    pub(crate) fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
}

/// Resumes execution `id` with `context` once it awaits and has waited `after`,
/// printing `who` did it: the program plays the human (or system) in the loop.
pub(crate) fn resume_when_awaiting(
    engine: &Engine,
    id: ExecutionId,
    after: Duration,
    printer: Printer,
    who: &'static str,
    context: Value,
) -> tokio::task::JoinHandle<()> {
    let engine = engine.clone();
    tokio::spawn(async move {
        loop {
            match engine.get_state(id).await {
                Ok(state) if state.status == Status::Awaiting => break,
                Ok(state) if state.status.is_terminal() => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(_) => return,
            }
        }
        tokio::time::sleep(after).await;
        printer.line(format!("      sim · {who} resumes the execution with {context}"));
        if let Err(e) = engine.resume(id, context).await {
            printer.line(format!("      resume failed: {e}"));
        }
    })
}

fn ms(d: Duration) -> String {
    if d < Duration::from_secs(1) { format!("{} ms", d.as_millis()) } else { format!("{:.2} s", d.as_secs_f64()) }
}

/// The closing report of an ended execution, as text: its status, every step
/// with its attempts and error, the failure and what the rollback did, the
/// workflow's execution order and critical path.
pub(crate) fn report_text(engine: &Engine, state: &ExecutionState) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n── report: {} {} ─ {} in {}", state.workflow, state.id, state.status, ms(state.duration));
    let _ = writeln!(out, "{:<30} {:<20} {:>8} {:>10}  error", "step", "status", "attempts", "duration");
    for step in &state.steps {
        let duration = match (step.started_at, step.ended_at) {
            (Some(a), Some(b)) => ms((b - a).to_std().unwrap_or_default()),
            _ => "–".into(),
        };
        let error = step.error.as_ref().map(|e| e.to_string()).or_else(|| step.skip_reason.clone()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<30} {:<20} {:>8} {:>10}  {error}",
            step.name.to_string(),
            step.status.to_string(),
            step.attempts,
            duration
        );
    }
    if let Some(failure) = &state.failure {
        let at = failure.step.as_deref().unwrap_or("(the workflow)");
        let _ = writeln!(out, "failure: {at} after {} attempt(s): {}", failure.attempts, failure.error);
    }
    if let Some(rollback) = &state.rollback {
        let _ = writeln!(out, "rollback: compensated {:?}", rollback.compensated);
        for (step, error) in &rollback.failed {
            let _ = writeln!(out, "rollback: compensation of {step} failed: {error}");
        }
    }
    for error in &state.handler_errors {
        let _ = writeln!(out, "handler error: {error}");
    }
    for key in ["__error__", "__error_step__", "__attempts__"] {
        if let Some(v) = state.context.get(key) {
            let _ = writeln!(out, "context {key} = {v}");
        }
    }
    if let Ok(report) = engine.report(&state.workflow) {
        let layers: Vec<String> = report.execution_order.iter().map(|l| l.join(" | ")).collect();
        let _ = writeln!(out, "execution order: {}", layers.join("  →  "));
        let _ = writeln!(out, "critical path:   {}", report.critical_path.join(" → "));
        if !report.rollbacks.is_empty() {
            let pairs: Vec<String> = report.rollbacks.iter().map(|(s, r)| format!("{s} ↩ {r}")).collect();
            let _ = writeln!(out, "rollbacks:       {}", pairs.join(", "));
        }
    }
    out
}

/// Prints the report and the Mermaid diagram coloured by the execution's states.
pub(crate) async fn print_outcome(engine: &Engine, state: &ExecutionState) -> Result<(), sagaflow::EngineError> {
    print!("{}", report_text(engine, state));
    let chart = engine.to_mermaid(&state.workflow, DiagramOptions::new().execution(state.id)).await?;
    println!("\n── Mermaid diagram (paste into any Mermaid renderer):\n{chart}");
    Ok(())
}
