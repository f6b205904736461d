//! The type-and-shape checker (LANGUAGE.md §6, DESIGN.md §4).

pub mod ty;

pub use ty::{Const, FnTy, IntVal, TensorTy, Ty};
