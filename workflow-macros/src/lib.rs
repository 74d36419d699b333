#![doc = include_str!("../docs/crate.md")]

use proc_macro::TokenStream;

mod duration;
mod entry;
mod expand;
mod flow;
mod parse;
mod plan;
mod suggest;
mod types;
mod validate;
mod values;

#[doc = include_str!("../docs/workflow.md")]
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::workflow(args.into(), item.into()).into()
}

#[doc = include_str!("../docs/step.md")]
#[proc_macro_attribute]
pub fn step(_args: TokenStream, item: TokenStream) -> TokenStream {
    entry::stray("step", item.into()).into()
}

#[doc = include_str!("../docs/graft.md")]
#[proc_macro_attribute]
pub fn graft(_args: TokenStream, item: TokenStream) -> TokenStream {
    entry::stray("graft", item.into()).into()
}

#[doc = include_str!("../docs/subworkflow.md")]
#[proc_macro_attribute]
pub fn subworkflow(_args: TokenStream, item: TokenStream) -> TokenStream {
    entry::stray("subworkflow", item.into()).into()
}

#[doc = include_str!("../docs/query.md")]
#[proc_macro_attribute]
pub fn query(_args: TokenStream, item: TokenStream) -> TokenStream {
    entry::stray("query", item.into()).into()
}
