//! Registration: workflow types, inventory, and the engine's table of definitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::EngineError;
use crate::builder::BuildError;
use crate::model::WorkflowDef;

/// A type whose `impl` block carries `#[workflow]`: it produces its definition, with
/// steps bound to the value (so steps reach its pools and clients through `&self`).
pub trait WorkflowType: Send + Sync + Sized + 'static {
    /// The workflow's name.
    const NAME: &'static str;

    /// The definition, with step functions bound to `this`.
    fn definition(this: Arc<Self>) -> Result<WorkflowDef, BuildError>;

    /// The definition of this value: what `Engine::builder().workflow(value)`
    /// registers (useful to inspect or compare definitions).
    fn into_definition(self) -> Result<WorkflowDef, BuildError> {
        Self::definition(Arc::new(self))
    }
}

/// A workflow that registered itself with `inventory`: every `#[workflow]` impl block
/// submits one. `Engine::builder().register_all()` runs those whose type implements
/// `Default` (a workflow without resources); the others need their value, given with
/// `.workflow(value)`.
///
/// # Linking
///
/// Registrations are collected when the program starts, from every crate that is
/// linked into it. A crate that the final binary never references may not be linked
/// at all (see [dtolnay/inventory#50](https://github.com/dtolnay/inventory/issues/50)),
/// and then its registrations are absent. Registering with
/// `.workflow(MyWorkflow::default())` both forces linking and works where inventory
/// does not (for example on targets without static constructors).
#[derive(Debug)]
pub struct Registration {
    /// The workflow's name.
    pub name: &'static str,
    /// Where it was declared (`module_path!()`).
    pub module: &'static str,
    /// Builds the definition with a default value of the type, or returns `None` when
    /// the type does not implement `Default` (its value must be registered explicitly).
    pub build: fn() -> Option<Result<WorkflowDef, BuildError>>,
}

impl Registration {
    /// A registration record (what `#[workflow]` submits).
    pub const fn new(
        name: &'static str,
        module: &'static str,
        build: fn() -> Option<Result<WorkflowDef, BuildError>>,
    ) -> Self {
        Registration { name, module, build }
    }
}

inventory::collect!(Registration);

/// Every inventory registration, sorted by name then module.
pub fn registrations() -> Vec<&'static Registration> {
    let mut all: Vec<&'static Registration> = inventory::iter::<Registration>.into_iter().collect();
    all.sort_by_key(|r| (r.name, r.module));
    all
}

/// The definitions `register_all` adds: one per registration whose type has a default
/// value, skipping names registered explicitly. Two registrations of one name (from
/// two modules or crates) are an error naming both places.
pub(crate) fn registered_defs(
    regs: &[&Registration],
    explicit: &[WorkflowDef],
) -> Result<Vec<WorkflowDef>, EngineError> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for r in regs {
        if let Some(first) = seen.insert(r.name, r.module) {
            return Err(EngineError::DuplicateRegistration {
                name: r.name.to_owned(),
                first: first.to_owned(),
                second: r.module.to_owned(),
            });
        }
    }
    let mut defs = Vec::new();
    for r in regs {
        if explicit.iter().any(|d| d.name() == r.name) {
            continue;
        }
        if let Some(def) = (r.build)() {
            defs.push(def?);
        }
    }
    Ok(defs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Workflow;
    use crate::model::{Context, Outcome, StepResult};

    async fn noop(_ctx: Context) -> StepResult {
        Ok(Outcome::Done)
    }

    fn alpha() -> Option<Result<WorkflowDef, BuildError>> {
        Some(Workflow::new("alpha").step("a", noop).build())
    }

    fn needs_value() -> Option<Result<WorkflowDef, BuildError>> {
        None
    }

    fn broken() -> Option<Result<WorkflowDef, BuildError>> {
        Some(Workflow::new("broken").build())
    }

    static ALPHA: Registration = Registration::new("alpha", "app::flows", alpha);
    static ALPHA_AGAIN: Registration = Registration::new("alpha", "other_crate::flows", alpha);
    static BETA: Registration = Registration::new("beta", "app::flows", needs_value);
    static BROKEN: Registration = Registration::new("broken", "app::flows", broken);

    #[test]
    fn default_types_are_built_and_value_types_skipped() {
        let defs = registered_defs(&[&ALPHA, &BETA], &[]).unwrap();
        assert_eq!(defs.iter().map(WorkflowDef::name).collect::<Vec<_>>(), ["alpha"]);
    }

    #[test]
    fn explicit_registrations_take_precedence() {
        let explicit = Workflow::new("alpha").step("other", noop).build().unwrap();
        assert!(registered_defs(&[&ALPHA], &[explicit]).unwrap().is_empty());
    }

    #[test]
    fn duplicate_names_across_crates_name_both_places() {
        let err = registered_defs(&[&ALPHA, &ALPHA_AGAIN], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "workflow `alpha` is registered twice: in `app::flows` and in `other_crate::flows`"
        );
    }

    #[test]
    fn invalid_definitions_are_reported() {
        let err = registered_defs(&[&BROKEN], &[]).unwrap_err();
        assert!(matches!(err, EngineError::Build(BuildError::EmptyWorkflow { .. })), "{err}");
    }
}
