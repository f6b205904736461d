//! Errors of shape and dtype inference, as data.
//!
//! Each variant names the primitive, which operand (0-based), which axis and what was
//! expected and found, so that the checker can put labels on the right spans and the
//! devices can report a failed kernel call precisely. Rendering is the caller's business;
//! `Display` gives a plain one-line message.

use thiserror::Error;

use crate::{Arity, DType, Dim, Shape};

/// Why a primitive cannot be applied to the given operand types and attributes.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum InferError {
    /// Wrong number of operands.
    #[error("{prim} takes {expected} operand(s), found {found}")]
    Arity {
        /// Primitive name.
        prim: &'static str,
        /// What the table says.
        expected: Arity,
        /// How many were given.
        found: usize,
    },
    /// An operand's dtype is not accepted.
    #[error("{prim} operand {operand}: expected {expected}, found {found}")]
    DType {
        /// Primitive name.
        prim: &'static str,
        /// Which operand.
        operand: usize,
        /// What is accepted, in words (`a float dtype`).
        expected: &'static str,
        /// The operand's dtype.
        found: DType,
    },
    /// Two operands that must share a dtype do not.
    #[error(
        "{prim}: operands {lhs} and {rhs} have different dtypes {lhs_dtype} and {rhs_dtype}; cast one of them"
    )]
    DTypeMismatch {
        /// Primitive name.
        prim: &'static str,
        /// First operand.
        lhs: usize,
        /// Second operand.
        rhs: usize,
        /// First operand's dtype.
        lhs_dtype: DType,
        /// Second operand's dtype.
        rhs_dtype: DType,
    },
    /// Two shapes do not broadcast.
    #[error(
        "{prim}: shapes {lhs_shape} and {rhs_shape} do not broadcast: axis {axis} (from the right) is {lhs_dim} vs {rhs_dim}"
    )]
    Broadcast {
        /// Primitive name.
        prim: &'static str,
        /// First operand.
        lhs: usize,
        /// Second operand.
        rhs: usize,
        /// Axis counted from the right (0 is the last).
        axis: usize,
        /// First operand's dim there.
        lhs_dim: Dim,
        /// Second operand's dim there.
        rhs_dim: Dim,
        /// First operand's shape.
        lhs_shape: Shape,
        /// Second operand's shape.
        rhs_shape: Shape,
    },
    /// An operand has the wrong rank.
    #[error(
        "{prim} operand {operand}: expected rank {expected}, found rank {found} (shape {shape})"
    )]
    Rank {
        /// Primitive name.
        prim: &'static str,
        /// Which operand.
        operand: usize,
        /// What is accepted, in words (`≥ 2`, `4`).
        expected: String,
        /// The operand's rank.
        found: usize,
        /// The operand's shape.
        shape: Shape,
    },
    /// An axis attribute is out of range.
    #[error("{prim}: axis {axis} is out of range for rank {rank}")]
    Axis {
        /// Primitive name.
        prim: &'static str,
        /// The offending axis.
        axis: usize,
        /// Rank of the operand.
        rank: usize,
    },
    /// A dim of an operand does not match what it must equal.
    #[error("{prim} operand {operand}, axis {axis}: expected {expected}, found {found}")]
    Dim {
        /// Primitive name.
        prim: &'static str,
        /// Which operand.
        operand: usize,
        /// Which axis of it.
        axis: usize,
        /// The size it must have.
        expected: Dim,
        /// The size it has.
        found: Dim,
    },
    /// An attribute is invalid for these operands (e.g. a reshape that changes the count).
    #[error("{prim}: {message}")]
    Attr {
        /// Primitive name.
        prim: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The result would have more elements than fit in memory addresses.
    #[error("{prim}: the shape {shape} has more elements than can be addressed")]
    Overflow {
        /// Primitive name.
        prim: &'static str,
        /// The shape whose element count overflows.
        shape: Shape,
    },
}
