//! Stored views of unfinished executions, as their rows and journals show them.

use std::collections::HashMap;
use std::sync::Arc;

use sagaflow::introspect::StoredView;
use sagaflow::store::{Store, StoreError, StoredExecution};
use sagaflow::{DefinitionSnapshot, ExecutionId};

use crate::CliError;

/// Definition snapshots by (workflow, version), each read once.
struct Snapshots {
    store: Arc<dyn Store>,
    seen: HashMap<(String, String), Option<DefinitionSnapshot>>,
}

impl Snapshots {
    fn new(store: &Arc<dyn Store>) -> Self {
        Snapshots { store: Arc::clone(store), seen: HashMap::new() }
    }

    async fn view(
        &mut self,
        stored: &StoredExecution,
        holder: Option<sagaflow::store::NodeId>,
    ) -> Result<StoredView, StoreError> {
        let key = (stored.execution.workflow.clone(), stored.execution.version.clone());
        if !self.seen.contains_key(&key) {
            let snap = self.store.definition_version(&key.0, &key.1).await?;
            self.seen.insert(key.clone(), snap);
        }
        Ok(StoredView::of(stored, holder, self.seen[&key].as_ref()))
    }
}

/// Every unfinished execution, as its row and journal show it.
pub(super) async fn live_views(store: &Arc<dyn Store>) -> Result<Vec<StoredView>, CliError> {
    let mut snapshots = Snapshots::new(store);
    let mut out = Vec::new();
    for stored in store.unfinished().await? {
        out.push(snapshots.view(&stored, None).await?);
    }
    out.sort_by_key(|v| std::cmp::Reverse((v.started_at(), v.id)));
    Ok(out)
}

/// The stored view of an unfinished execution, with its holder on a cluster.
pub(super) async fn live_view(store: &Arc<dyn Store>, id: ExecutionId) -> Result<Option<StoredView>, CliError> {
    let mut snapshots = Snapshots::new(store);
    if let Some(cluster) = store.cluster() {
        return match cluster.load(id).await? {
            Some(shared) => Ok(Some(snapshots.view(&shared.stored, shared.holder).await?)),
            None => Ok(None),
        };
    }
    for stored in store.unfinished().await? {
        if stored.execution.id == id {
            return Ok(Some(snapshots.view(&stored, None).await?));
        }
    }
    Ok(None)
}
