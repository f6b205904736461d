//! `autodiff` — automatic differentiation for MindScript.
//!
//! [`rules`] holds one VJP and one JVP rule per differentiable `ir::Prim`, written once
//! against the `ir::Emit` trait so that the eager tape and the IR transform share them. The
//! reverse and forward transforms over `ir` graphs build on them. The crate never depends on
//! `devices`: the interpreter supplies an `Emit` that computes on device tensors. [`tape`]
//! is the eager reverse-mode tape that the interpreter's `grad` records on; [`graph`] is
//! reverse mode on the IR, with the same rules.

pub mod forward;
pub mod graph;
pub mod rules;
pub mod tape;

pub use ir::Prim;
pub use rules::{Differentiability, differentiability, jvp, vjp};
