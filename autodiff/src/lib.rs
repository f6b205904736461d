//! `autodiff` — automatic differentiation for MindScript.
//!
//! It will hold one VJP and one JVP rule per differentiable `ir::Prim`, written once against
//! an `Emit` trait so that the eager tape and the IR transform share them, and the reverse and
//! forward transforms over `ir` graphs. It never depends on `devices`: the interpreter supplies
//! an `Emit` that computes on device tensors. The rules arrive with the autodiff issue; today
//! the crate only names the primitive table it will cover.

pub use ir::Prim;
pub mod rules;
pub mod tape;
