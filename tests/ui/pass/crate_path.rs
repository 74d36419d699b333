//! `crate = "..."` points generated code at another path to the crate, for a renamed
//! dependency or a re-export; a shadowing `use` does not confuse generated code.
#![deny(warnings)]

extern crate sagaflow as renamed;

#[allow(unused_imports)]
use std as sagaflow;

mod reexport {
    pub use ::renamed::__private;
}

use renamed::prelude::{Context, StepError, WorkflowType, json, workflow};

#[derive(Default)]
struct ViaRename;

#[workflow(name = "via_rename", crate = "::renamed")]
impl ViaRename {
    #[step]
    fn only(ctx: &Context) -> Result<renamed::prelude::Outcome, StepError> {
        Ok(json!({ "keys": ctx.len() }).into())
    }
}

#[derive(Default)]
struct ViaReexport;

#[workflow(name = "via_reexport", crate = "crate::reexport")]
impl ViaReexport {
    #[step]
    async fn only(&self) -> Result<(), StepError> {
        Ok(())
    }
}

fn main() {
    assert_eq!(ViaRename.into_definition().unwrap().name(), "via_rename");
    assert_eq!(ViaReexport.into_definition().unwrap().name(), "via_reexport");
}
