//! Registration: workflow types, inventory, and the engine's table of definitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::builder::BuildError;
use crate::model::WorkflowDef;

/// A type whose `impl` block carries `#[workflow]`: it produces its definition, with
/// steps bound to the value (so steps reach its pools and clients through `&self`).
pub trait WorkflowType: Send + Sync + Sized + 'static {
    /// The workflow's name.
    const NAME: &'static str;

    /// The definition, with step functions bound to `this`.
    fn definition(this: Arc<Self>) -> Result<WorkflowDef, BuildError>;
}

/// A workflow that registered itself with `inventory` (a `#[workflow]` type that
/// implements `Default`). `Engine::builder().register_all()` runs them all.
///
/// A crate that the final binary never references may not be linked, and then its
/// registrations are absent; registering with `.workflow(MyWorkflow::default())`
/// both forces linking and works where inventory does not.
#[derive(Debug)]
pub struct Registration {
    /// The workflow's name.
    pub name: &'static str,
    /// Where it was declared (`module_path!()`).
    pub module: &'static str,
    /// Builds the definition.
    pub build: fn() -> Result<WorkflowDef, BuildError>,
}

inventory::collect!(Registration);

/// Every inventory registration, sorted by name then module.
pub fn registrations() -> Vec<&'static Registration> {
    let mut all: Vec<&'static Registration> = inventory::iter::<Registration>.into_iter().collect();
    all.sort_by_key(|r| (r.name, r.module));
    all
}

/// The engine's definitions, by name.
#[derive(Debug, Default, Clone)]
pub(crate) struct Registry {
    pub(crate) defs: BTreeMap<Arc<str>, WorkflowDef>,
}

impl Registry {
    pub(crate) fn get(&self, name: &str) -> Option<&WorkflowDef> {
        self.defs.get(name)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.defs.keys().map(|k| k.to_string()).collect()
    }
}
