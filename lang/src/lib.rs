//! `lang` — the MindScript front end (see `../shared/LANGUAGE.md`).
//!
//! - [`syntax`]: the lexer and the parser (chumsky). Parsing never fails: it returns a tree
//!   and every syntax error found.
//! - [`ast`]: the tree, every node with its byte span.
//! - [`check`]: the type-and-shape checker, an abstract interpreter whose shape rules for
//!   primitives are `ir::infer`.
//! - [`diagnostics`]: problems as data, and their rendering with ariadne.
//!
//! The crate is pure: it does no IO. Files to import are supplied by the caller.

pub mod ast;
pub mod check;
pub mod diagnostics;
pub mod span;
pub mod syntax;

pub use diagnostics::{Diagnostic, Label, Severity};
pub use ir::{DType, Dim, Shape, TensorType};
pub use span::{Span, Spanned};
