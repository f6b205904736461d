//! `lang` — the MindScript front end (see `../shared/LANGUAGE.md`).
//!
//! It will hold the lexer and parser (chumsky, recovering from errors), the AST, the
//! type-and-shape checker (an abstract interpreter whose shape rules are `ir::infer`), the
//! diagnostics with their codes and ariadne rendering, and the lowering of a function at one
//! signature into the IR. It is pure: no IO. The front end is built by a later issue; this
//! crate re-exports the types it will check against so that its dependants compile today.

pub use ir::{DType, Dim, Shape, TensorType};
