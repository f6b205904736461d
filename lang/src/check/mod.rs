//! The type-and-shape checker (LANGUAGE.md §6, DESIGN.md §4).

pub mod builtins;
pub mod ops;
pub mod ty;

pub use ops::{Typed, TypedIndex};
pub use ty::{Const, FnTy, IntVal, TensorTy, Ty};
