//! Housekeeping: ended executions pruned by their workflow's `retention`, and
//! expired dead letters purged, in the background and on demand.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Engine, EngineError, EngineInner};
use crate::builder::suggest;
use crate::store::prune_ended;

/// How often the engine prunes and purges unless told otherwise.
pub(crate) const DEFAULT_HOUSEKEEPING: Duration = Duration::from_secs(60);

/// Runs housekeeping every `every` until the engine shuts down.
pub(crate) fn spawn(inner: &Arc<EngineInner>, every: Duration) {
    let weak = Arc::downgrade(inner);
    let shutdown = inner.shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let Some(engine) = weak.upgrade() else { return };
            if let Err(e) = engine.store.purge_dead_letters(engine.clock.now()).await {
                tracing::warn!(error = %e, "purging expired dead letters");
            }
            let now = engine.clock.now();
            let kept: Vec<(String, Duration)> = engine
                .registry
                .read()
                .defs
                .values()
                .filter_map(|d| d.policy().retention().map(|keep| (d.name().to_owned(), keep)))
                .collect();
            for (workflow, keep) in kept {
                let before = now - chrono::Duration::from_std(keep).unwrap_or(chrono::TimeDelta::MAX);
                let stop = || shutdown.is_cancelled();
                match prune_ended(&*engine.store, &workflow, before, &stop).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::debug!(workflow, pruned, "pruned ended executions past their retention"),
                    Err(e) => tracing::warn!(workflow, error = %e, "pruning ended executions"),
                }
            }
        }
    });
}

impl Engine {
    /// Deletes the ended executions (final states with their outputs, context and
    /// errors) that ended before `ended_before`: of `workflow`, or of every
    /// workflow the store knows with `None`. Returns how many. Live executions and
    /// dead letters are not touched. Workflows with a
    /// [`retention`](crate::Workflow::retention) are pruned this way in the
    /// background (see [`EngineBuilder::housekeeping_every`](crate::EngineBuilder::housekeeping_every)).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnknownWorkflow`] for a workflow neither registered here nor
    /// known to the store; [`EngineError::Store`].
    ///
    /// ```
    /// use sagaflow_runtime::{Engine, Outcome, StepError, Workflow, json};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let def = Workflow::new("report")
    ///     .step("render", |_ctx| async { Ok::<_, StepError>(Outcome::Done) })
    ///     .build()?;
    /// let engine = Engine::builder().register(def).build().await?;
    /// let id = engine.start("report", json!({})).await?;
    /// engine.wait(id).await?;
    /// let pruned = engine.purge_history(Some("report"), chrono::Utc::now()).await?;
    /// assert_eq!(pruned, 1);
    /// assert!(engine.history(&Default::default()).await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn purge_history(
        &self,
        workflow: Option<&str>,
        ended_before: DateTime<Utc>,
    ) -> Result<usize, EngineError> {
        let inner = &self.inner;
        let mut known = inner.registry.read().names();
        for snapshot in inner.store.definitions().await? {
            if !known.contains(&snapshot.name) {
                known.push(snapshot.name);
            }
        }
        known.sort();
        let workflows = match workflow {
            Some(name) if known.iter().any(|k| k == name) => vec![name.to_owned()],
            Some(name) => {
                return Err(EngineError::UnknownWorkflow {
                    name: name.to_owned(),
                    suggestion: suggest(name, known.iter().map(String::as_str)),
                    known,
                });
            }
            None => known,
        };
        let mut total = 0;
        for name in workflows {
            total += prune_ended(&*inner.store, &name, ended_before, &|| inner.shutdown.is_cancelled()).await?;
        }
        Ok(total)
    }
}
