//! `ir` — the spine of MindScript: the closed table of primitives, the types they work on,
//! and the rules every other crate shares.
//!
//! Everything that runs a MindScript program — the eager interpreter, the staged graph, the
//! automatic differentiation, the sharding planner and every device backend — agrees on what
//! a primitive means because it is defined here once:
//!
//! - [`Prim`] names every primitive (generated from one declarative table in [`prim`]); [`Op`]
//!   is a primitive together with its attributes (axes, shapes, strides...).
//! - [`DType`], [`Dim`], [`Shape`] and [`TensorType`] are the abstract values.
//! - [`infer()`] is the shape/dtype rule of every primitive (NumPy broadcasting included), with
//!   errors as data ([`InferError`]).
//! - [`cost()`] estimates the floating-point work and memory traffic of every primitive.
//! - [`Emit`] is the algebra the differentiation rules are written in, implemented by the
//!   eager interpreter (on tensors) and by the staged mode (on graph nodes).
//! - [`graph`] is the staged IR: typed SSA with structured control flow and an effect
//!   token, its builder (an `Emit`), its text form and [`verify()`].
//!
//! This crate depends on no other workspace crate and does no IO.

pub mod cost;
pub mod dtype;
pub mod emit;
pub mod error;
pub mod graph;
pub mod infer;
pub mod parallel;
pub mod passes;
pub mod prim;
pub mod shape;

pub use cost::{Cost, cost};
pub use dtype::DType;
pub use emit::Emit;
pub use error::InferError;
pub use graph::{Graph, GraphBuilder, verify};
pub use infer::{broadcast_shapes, elementwise_dtype, infer};
pub use prim::{
    ArgOp, Arity, BinaryOp, Category, CmpOp, Conv2dParams, Op, Pool2dParams, PoolOp, Prim,
    PrimInfo, RandomOp, ReduceOp, SliceDim, UnaryKind, UnaryOp,
};
pub use shape::{Dim, Shape, TensorType};
