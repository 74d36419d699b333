//! `sagaflow`: the command line over a sagaflow store. It needs none of the
//! application's code: it reads the store (an SQLite file read-only, beside the
//! engine that holds it; a PostgreSQL database), shows workflows from the
//! definition snapshots the engines wrote, and sends control calls through the
//! store to whichever engine holds the execution.

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sagaflow::store::{ControlError, StoreError, redact_secrets};

/// Operate sagaflow workflows from the store: list and inspect executions,
/// cancel, pause and resume them, replay dead letters, show workflows and
/// schedules, serve the dashboard.
#[derive(Debug, Parser)]
#[command(name = "sagaflow", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    /// The store: `sqlite://path/to/file.db` or
    /// `postgres://user@host:5432/db?schema=name`.
    #[arg(long, env = "SAGAFLOW_STORE", global = true, value_name = "URL", hide_env_values = true)]
    store: Option<String>,
    /// Machine-readable output: JSON on stdout (and errors as JSON on stderr).
    #[arg(long, global = true)]
    json: bool,
    /// When to colour the output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    color: ColorChoice,
    #[command(subcommand)]
    command: Top,
}

const EXIT_CODES: &str = "Exit codes: 0 done; 1 other failure; 2 bad usage or input; 3 the store cannot be \
                          opened or read; 4 no such execution, dead letter or workflow; 5 the request does not \
                          apply (the execution ended, or the engine did not apply it).";

/// When to colour the output.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Executions: list, show, cancel, pause, resume, signal, restart, purge.
    #[command(subcommand)]
    Executions(Executions),
    /// Dead letters: executions that failed for good in workflows that keep them.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLetters),
    /// Workflows, from the definition snapshots in the store.
    #[command(subcommand)]
    Workflows(Workflows),
    /// Schedules and their next fire times.
    #[command(subcommand)]
    Schedules(Schedules),
    /// Serves the dashboard over the store.
    Serve(Serve),
}

#[derive(Debug, Subcommand)]
enum Executions {
    /// Executions that have not ended (newest first), then ended ones.
    List {
        /// Only this workflow.
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
        /// Only these statuses (`running`, `awaiting`, `paused`, `completed`,
        /// `failed`...; repeat or separate with commas).
        #[arg(long, value_name = "STATUS", value_delimiter = ',')]
        status: Vec<String>,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
    },
    /// One execution: its steps with their attempts, context, error and timeline.
    Show {
        /// The execution id.
        id: String,
    },
    /// Cancels an execution.
    Cancel {
        /// The execution id.
        id: String,
        /// Why (kept on the execution, passed to `on_cancel`).
        #[arg(long, default_value = "cancelled from the command line")]
        reason: String,
        /// Run the compensations of completed steps.
        #[arg(long)]
        rollback: bool,
        /// Run the workflow's `on_cancel` handler.
        #[arg(long)]
        cleanup: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Pauses an execution: running steps finish, no new step starts.
    Pause {
        /// The execution id.
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Sends a signal to an execution: a step waiting for it receives it, or it
    /// is buffered until one asks.
    Signal {
        /// The execution id.
        id: String,
        /// The signal's name.
        name: String,
        /// What to send, as JSON (default `null`).
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Starts a new execution that restarts an ended one from a step: the steps
    /// before it keep their outputs, the step and those after it run again.
    Restart {
        /// The ended execution's id.
        id: String,
        /// The step to restart from.
        #[arg(long, value_name = "STEP")]
        from: String,
        /// A JSON object merged over the ended execution's input.
        #[arg(long, value_name = "JSON")]
        context: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Deletes ended executions (final states with their outputs and context)
    /// that ended longer ago than `--older-than`. Live executions and dead
    /// letters are kept.
    Purge {
        /// How long ago they ended: `30d`, `12h`, `90m`...
        #[arg(long, value_name = "DURATION")]
        older_than: String,
        /// Only this workflow.
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Resumes a paused execution and completes its awaiting steps.
    Resume {
        /// The execution id.
        id: String,
        /// A JSON object merged into the execution's context.
        #[arg(long, value_name = "JSON")]
        context: Option<String>,
        /// Complete only this awaiting step.
        #[arg(long, value_name = "NAME")]
        step: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
}

/// How long to wait for the engine that holds an SQLite file to take a request.
#[derive(Debug, Args)]
struct Wait {
    /// Seconds to wait for the engine to take the request (0: return once it is
    /// queued).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    wait: f64,
}

#[derive(Debug, Subcommand)]
enum DeadLetters {
    /// Dead letters, newest first.
    List {
        /// Only this workflow.
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
    },
    /// Starts a dead letter's workflow again with its input (the letter goes).
    Replay {
        /// The failed execution's id.
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Removes dead letters: those named, or those past their TTL.
    Purge {
        /// The failed executions' ids.
        ids: Vec<String>,
        /// Remove the dead letters past their `dead_letter_ttl`.
        #[arg(long)]
        expired: bool,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(Debug, Subcommand)]
enum Workflows {
    /// Every workflow an engine registered on the store.
    List,
    /// One workflow: its steps, or its DAG.
    Show {
        /// The workflow's name.
        name: String,
        /// How to show it.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// How to show a workflow.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// Its steps as a table.
    Table,
    /// A Mermaid flowchart.
    Mermaid,
    /// A Graphviz DOT graph.
    Dot,
}

#[derive(Debug, Subcommand)]
enum Schedules {
    /// Every schedule with its last and next fire times.
    List {
        /// Only this workflow.
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
        /// Fire times to show per schedule.
        #[arg(long, default_value_t = 3, value_name = "N")]
        next: usize,
    },
}

#[derive(Debug, Args)]
struct Serve {
    /// Where to listen. A non-loopback address needs a token.
    #[arg(long, default_value = "127.0.0.1:3000", value_name = "ADDR")]
    listen: String,
    /// The bearer token every request must carry (browsers log in once).
    #[arg(long, env = "SAGAFLOW_DASHBOARD_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// Serve the dashboard under this path (`/workflows`).
    #[arg(long, default_value = "/", value_name = "PATH")]
    path: String,
}

/// Why a command failed, and its exit code.
#[derive(Debug)]
pub(crate) enum CliError {
    /// Bad usage or input (2).
    Usage(String),
    /// The store cannot be opened or read (3).
    Store(StoreError),
    /// No such thing (4).
    NotFound(String),
    /// The request does not apply (5).
    Conflict(String),
    /// Anything else (1).
    Other(String),
}

impl CliError {
    fn code(&self) -> u8 {
        match self {
            CliError::Other(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Store(_) => 3,
            CliError::NotFound(_) => 4,
            CliError::Conflict(_) => 5,
        }
    }

    fn message(&self) -> String {
        let text = match self {
            CliError::Store(e) => e.to_string(),
            CliError::Usage(m) | CliError::NotFound(m) | CliError::Conflict(m) | CliError::Other(m) => m.clone(),
        };
        redact_secrets(&text)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidUrl { .. } => CliError::Usage(e.to_string()),
            e => CliError::Store(e),
        }
    }
}

impl From<ControlError> for CliError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::UnknownExecution(_)
            | ControlError::UnknownDeadLetter(_)
            | ControlError::UnknownWorkflow(_)
            | ControlError::UnknownStep { .. } => CliError::NotFound(e.to_string()),
            ControlError::Ended { .. } | ControlError::NotStarted { .. } | ControlError::NotEnded(_) => {
                CliError::Conflict(e.to_string())
            }
            ControlError::Store(e) => e.into(),
            other => CliError::Other(other.to_string()),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Other(format!("cannot write the output: {e}"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                eprintln!("{}", serde_json::json!({ "error": e.message(), "code": e.code() }));
            } else {
                eprintln!("error: {}", e.message());
            }
            ExitCode::from(e.code())
        }
    }
}
