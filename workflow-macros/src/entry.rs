//! The macros' entry points on `proc_macro2` tokens: parse → validate → expand, with
//! every error reported at once and the user's item always emitted.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

use crate::{expand, parse, validate};

/// `#[workflow(...)]` on an impl block.
pub(crate) fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut acc = darling::Error::accumulator();
    let input = match parse::parse(args, item.clone(), &mut acc) {
        Ok(input) => input,
        Err(not_an_impl) => {
            let mut out = not_an_impl.to_compile_error();
            for e in acc.into_inner() {
                out.extend(e.write_errors());
            }
            out.extend(item);
            return out;
        }
    };
    let plan = validate::validate(&input, &mut acc);
    let mut out = input.item.to_token_stream();
    match acc.finish() {
        Ok(()) => {
            let generated = expand::expand(&plan);
            debug_print(&plan.name.value(), &generated);
            out.extend(generated);
        }
        Err(errors) => {
            out.extend(expand::placeholder(&plan));
            out.extend(errors.write_errors());
        }
    }
    out
}

/// `#[step]`, `#[graft]` or `#[subworkflow]` where no `#[workflow]` consumed it.
pub(crate) fn stray(name: &str, item: TokenStream) -> TokenStream {
    let message = format!(
        "`#[{name}]` must be on a method of an impl block marked `#[workflow(name = \"...\")]`; \
         `#[workflow]` reads and removes it"
    );
    let mut out = syn::Error::new(Span::call_site(), message).to_compile_error();
    out.extend(item);
    out
}

/// Prints the generated code when `SAGAFLOW_MACROS_DEBUG` is `1` (every workflow) or
/// the name of this workflow; formatted with `rustfmt` when it is on the `PATH`.
fn debug_print(name: &str, generated: &TokenStream) {
    if let Ok(wanted) = std::env::var("SAGAFLOW_MACROS_DEBUG")
        && (wanted == "1" || wanted == name)
    {
        let code = generated.to_string();
        eprintln!("// #[workflow(name = {name:?})] expands to:\n{}", rustfmt(&code).unwrap_or(code));
    }
}

fn rustfmt(code: &str) -> Option<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2024"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(code.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status.success().then(|| String::from_utf8(out.stdout).ok()).flatten()
}
