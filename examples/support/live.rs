//! The live view of running executions, driven by the engine's telemetry events
//! (`engine.subscribe()`): a progress bar per execution and a line per step that
//! follows it through its attempts, retries, waits, snoozes and compensation.
//!
//! On a terminal the lines are `indicatif` progress bars redrawn in place; when the
//! output is not a terminal (a pipe, a CI log) every change is printed as one line
//! instead, so nothing is lost.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sagaflow::prelude::*;
use sagaflow::{Event, StepStatus, Subscription};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::sim::Entry;

/// Where the view writes: bars on a terminal, plain lines elsewhere.
#[derive(Clone, Debug)]
pub(crate) struct Printer {
    multi: Option<MultiProgress>,
}

impl Printer {
    fn new() -> Printer {
        let multi = std::io::stdout()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(15)));
        Printer { multi }
    }

    /// Prints a line above the bars.
    pub(crate) fn line(&self, text: impl AsRef<str>) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text.as_ref());
            }
            None => println!("{}", text.as_ref()),
        }
    }

    /// Prints what a simulated service did.
    pub(crate) fn service(&self, entry: &Entry) {
        self.line(format!("      sim · {:<10} {}", entry.service, entry.action));
    }
}

/// Watches every execution of an engine until [`finish`](Self::finish).
#[derive(Debug)]
pub(crate) struct LiveView {
    printer: Printer,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl LiveView {
    /// Subscribes to `engine`'s events now, so a `start` that follows is seen from
    /// its first event.
    pub(crate) fn watch(engine: &Engine) -> LiveView {
        let printer = Printer::new();
        let (stop, stopped) = oneshot::channel();
        let board = Board::new(engine.clone(), printer.clone());
        let task = tokio::spawn(board.run(engine.subscribe(), stopped));
        LiveView { printer, stop: Some(stop), task }
    }

    /// Where to print lines that belong with the view (the simulated services'
    /// side effects, the program's own narration).
    pub(crate) fn printer(&self) -> Printer {
        self.printer.clone()
    }

    /// Shows the events still in flight, then stops.
    pub(crate) async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// What the view shows of one execution.
struct Run {
    bar: Option<ProgressBar>,
    /// The execution's bottom line so far.
    last: Option<ProgressBar>,
    workflow: Arc<str>,
}

/// What the view shows of one step.
struct StepLine {
    bar: Option<ProgressBar>,
    /// The latest failed attempt, shown when the step is retried.
    last_error: Option<String>,
    /// Whether it waits for `resume`.
    awaiting: bool,
}

struct Board {
    engine: Engine,
    printer: Printer,
    runs: HashMap<ExecutionId, Run>,
    steps: HashMap<(ExecutionId, Arc<str>), StepLine>,
}

fn running_style() -> ProgressStyle {
    ProgressStyle::with_template("  {spinner:.yellow} {prefix:<30} {msg}")
        .expect("a valid template")
        .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "·"])
}

fn still_style() -> ProgressStyle {
    ProgressStyle::with_template("    {prefix:<30} {msg}").expect("a valid template")
}

fn run_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} [{bar:24.cyan/blue}] {pos}/{len} steps  {msg}")
        .expect("a valid template")
        .progress_chars("=> ")
}

fn short(id: ExecutionId) -> String {
    id.to_string().chars().take(8).collect()
}

fn ms(d: Duration) -> String {
    if d < Duration::from_secs(1) { format!("{} ms", d.as_millis()) } else { format!("{:.2} s", d.as_secs_f64()) }
}

impl Board {
    fn new(engine: Engine, printer: Printer) -> Board {
        Board { engine, printer, runs: HashMap::new(), steps: HashMap::new() }
    }

    async fn run(mut self, mut events: Subscription, mut stopped: oneshot::Receiver<()>) {
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.show(event).await,
                    None => break,
                },
                _ = &mut stopped => {
                    // Events emitted just before the stop may still be queued.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    while let Some(event) = events.try_recv() {
                        self.show(event).await;
                    }
                    break;
                }
            }
        }
        for (_, line) in self.steps.drain() {
            if let Some(bar) = line.bar
                && !bar.is_finished()
            {
                bar.abandon();
            }
        }
        for (_, run) in self.runs.drain() {
            if let Some(bar) = run.bar
                && !bar.is_finished()
            {
                bar.abandon();
            }
        }
    }

    /// Updates the execution's progress bar from its state.
    async fn progress(&mut self, id: ExecutionId) {
        let Some(bar) = self.runs.get(&id).and_then(|r| r.bar.clone()) else { return };
        if let Ok(state) = self.engine.get_state(id).await {
            bar.set_length(u64::from(state.progress.total));
            bar.set_position(u64::from(state.progress.done));
        }
    }

    fn step(&mut self, id: ExecutionId, name: &Arc<str>) -> &mut StepLine {
        let key = (id, Arc::clone(name));
        if !self.steps.contains_key(&key) {
            let bar = self.printer.multi.as_ref().map(|multi| {
                let bar = ProgressBar::new_spinner().with_style(running_style()).with_prefix(name.to_string());
                // A step's line goes below its execution's other lines, in the order
                // the steps first showed up.
                match self.runs.get_mut(&id) {
                    Some(run) => {
                        let bar = match &run.last {
                            Some(last) => multi.insert_after(last, bar),
                            None => multi.add(bar),
                        };
                        run.last = Some(bar.clone());
                        bar
                    }
                    None => multi.add(bar),
                }
            });
            self.steps.insert(key.clone(), StepLine { bar, last_error: None, awaiting: false });
        }
        self.steps.get_mut(&key).expect("inserted above")
    }

    /// Sets a step's line: spinning while it runs, still otherwise.
    fn set(&mut self, id: ExecutionId, name: &Arc<str>, spinning: bool, text: String) {
        let workflow = self.runs.get(&id).map(|r| Arc::clone(&r.workflow));
        let printer = self.printer.clone();
        let line = self.step(id, name);
        match &line.bar {
            Some(bar) => {
                if spinning {
                    bar.set_style(running_style());
                    bar.enable_steady_tick(Duration::from_millis(90));
                } else {
                    bar.disable_steady_tick();
                    bar.set_style(still_style());
                }
                bar.set_message(text);
                bar.tick();
            }
            None => {
                let who = workflow.map(|w| format!("{w}/")).unwrap_or_default();
                printer.line(format!("    {who}{name:<28} {text}"));
            }
        }
    }

    async fn show(&mut self, event: Event) {
        match event {
            Event::WorkflowStart { workflow_name, execution_id, trigger_type } => {
                let bar = self.printer.multi.as_ref().map(|multi| {
                    let bar = multi.add(ProgressBar::new(0).with_style(run_style()));
                    bar.set_prefix(format!("{workflow_name} {}", short(execution_id)));
                    bar.set_message(format!("started ({trigger_type})"));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                if bar.is_none() {
                    self.printer.line(format!("▶ {workflow_name} {execution_id} started ({trigger_type})"));
                }
                self.runs.insert(execution_id, Run { last: bar.clone(), bar, workflow: workflow_name });
                self.progress(execution_id).await;
            }
            Event::StepStart { execution_id, step_name, attempt, .. } => {
                let line = self.step(execution_id, &step_name);
                let text = match (attempt, line.last_error.take()) {
                    (1, _) => "running".to_owned(),
                    (n, Some(error)) => format!("↻ retry, attempt {n} (after {error})"),
                    (n, None) => format!("running, attempt {n}"),
                };
                self.set(execution_id, &step_name, true, text);
            }
            Event::StepStop { execution_id, step_name, duration, result, .. } => {
                let (spinning, text) = match result {
                    "await" => (false, "⏸ awaiting approval".to_owned()),
                    "snooze" => (false, format!("💤 snoozed after {} — runs again later", ms(duration))),
                    "expand" => (false, format!("⊕ expanded ({})", ms(duration))),
                    "skip" => (false, "⤼ skipped".to_owned()),
                    _ => (false, format!("✔ done in {}", ms(duration))),
                };
                self.set(execution_id, &step_name, spinning, text);
                self.step(execution_id, &step_name).awaiting = result == "await";
                self.progress(execution_id).await;
            }
            Event::StepException { execution_id, step_name, duration, kind, reason, .. } => {
                let error = format!("{kind}: {reason}");
                self.set(execution_id, &step_name, false, format!("✖ {error} ({})", ms(duration)));
                self.step(execution_id, &step_name).last_error = Some(kind);
                self.progress(execution_id).await;
            }
            Event::StepSkip { execution_id, step_name, reason, .. } => {
                self.set(execution_id, &step_name, false, format!("⤼ skipped: {reason}"));
                self.progress(execution_id).await;
            }
            Event::WorkflowPause { execution_id, .. } => self.run_message(execution_id, "paused".into()),
            Event::WorkflowResume { execution_id, .. } => {
                self.run_message(execution_id, "resumed".into());
                // The awaiting step completes with the resumed context.
                let waiting: Vec<Arc<str>> = self
                    .steps
                    .iter()
                    .filter(|((id, _), line)| *id == execution_id && line.awaiting)
                    .map(|((_, name), _)| Arc::clone(name))
                    .collect();
                if let Ok(state) = self.engine.get_state(execution_id).await {
                    for name in waiting {
                        let done = state.steps.iter().any(|s| *s.name == *name && s.status == StepStatus::Completed);
                        if done {
                            self.step(execution_id, &name).awaiting = false;
                            self.set(execution_id, &name, false, "✔ approved (resumed)".into());
                        }
                    }
                }
                self.progress(execution_id).await;
            }
            Event::WorkflowFail { execution_id, error, error_step, .. } => {
                let at = error_step.map(|s| format!(" at `{s}`")).unwrap_or_default();
                self.run_message(execution_id, format!("✖ failed{at}: {error}"));
            }
            Event::WorkflowCancel { execution_id, reason, .. } => {
                self.run_message(execution_id, format!("cancelled: {reason}"));
            }
            Event::RollbackStart { execution_id, steps, .. } => {
                let list = steps.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ");
                self.run_message(execution_id, format!("↩ rolling back: {list}"));
                for step in &steps {
                    self.set(execution_id, step, true, "↩ compensating".into());
                }
            }
            Event::RollbackStop { execution_id, steps, failed, duration, .. } => {
                for step in &steps {
                    self.set(execution_id, step, false, "↩ compensated".into());
                }
                for step in &failed {
                    self.set(execution_id, step, false, "⚠ compensation failed".into());
                }
                self.run_message(execution_id, format!("↩ rollback done in {}", ms(duration)));
            }
            Event::WorkflowStop { execution_id, state, duration, .. } => {
                self.progress(execution_id).await;
                let text = format!("■ {state} in {}", ms(duration));
                match self.runs.get(&execution_id).and_then(|r| r.bar.clone()) {
                    Some(bar) => bar.finish_with_message(text),
                    None => self.printer.line(format!("■ {} {execution_id} {text}", self.workflow(execution_id))),
                }
            }
            // New kinds of event are shown by name.
            other => self.printer.line(format!("  · {} {}", other.name(), short(other.execution_id()))),
        }
    }

    fn workflow(&self, id: ExecutionId) -> String {
        self.runs.get(&id).map(|r| r.workflow.to_string()).unwrap_or_default()
    }

    fn run_message(&self, id: ExecutionId, text: String) {
        match self.runs.get(&id).and_then(|r| r.bar.clone()) {
            Some(bar) => bar.set_message(text),
            None => self.printer.line(format!("  {} {}: {text}", self.workflow(id), short(id))),
        }
    }
}
