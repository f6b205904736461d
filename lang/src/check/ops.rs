//! Typing rules of the operators, literals, indexing and tensor properties.
//!
//! Each rule takes the abstract values of the operands with the spans they came from and
//! returns the result's abstract value or one diagnostic that labels those spans. `src` is
//! the text those spans index, so that hints can quote the user's own expressions
//! (`` `x @ w1.T` fits ``).

use crate::ast::{BinOp, Ident, UnaryOp};
use crate::check::ty::Ty;
use crate::diagnostics::Diagnostic;
use crate::span::Span;

/// An operand: its abstract value and the span of the expression that produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct Typed {
    /// What is known about the value.
    pub ty: Ty,
    /// The expression it came from.
    pub span: Span,
}

/// One checked index item (see [`crate::ast::IndexItem`]).
#[derive(Clone, Debug, PartialEq)]
pub enum TypedIndex {
    /// An integer or an integer tensor.
    Expr(Typed),
    /// `start:end:step` with the parts that were given.
    Slice {
        /// First index.
        start: Option<Typed>,
        /// One past the last index.
        end: Option<Typed>,
        /// Step.
        step: Option<Typed>,
        /// The whole slice.
        span: Span,
    },
    /// `...`.
    Ellipsis(Span),
}

/// `lhs op rhs` for every binary operator (`..` is the walker's: it makes a range).
/// `&&` and `||` take scalar bools (the walker evaluates them short-circuit; on tensors the
/// hint is `logical_and`/`logical_or`). Arithmetic lifts over tuples and records of the same
/// structure; a tensor broadcasts into every leaf of a structure.
pub fn binary(
    src: &str,
    op: BinOp,
    lhs: &Typed,
    rhs: &Typed,
    op_span: Span,
) -> Result<Ty, Box<Diagnostic>> {
    let _ = (src, op, lhs, rhs, op_span);
    Ok(Ty::Unknown)
}

/// `-x` and `!c` (lifted over structures like [`binary`]).
pub fn unary(
    src: &str,
    op: UnaryOp,
    operand: &Typed,
    op_span: Span,
) -> Result<Ty, Box<Diagnostic>> {
    let _ = (src, op, operand, op_span);
    Ok(Ty::Unknown)
}

/// A list literal `[a, b, ...]`: a tensor whose rows must have equal shapes (the error
/// points at the odd row); weak when every element is weak.
pub fn list_literal(src: &str, elems: &[Typed], span: Span) -> Result<Ty, Box<Diagnostic>> {
    let _ = (src, elems, span);
    Ok(Ty::Unknown)
}

/// `base[items]`: integer indices drop axes, slices keep them, `...` fills, an integer
/// tensor gathers. Known out-of-range integer indices are errors.
pub fn index(
    src: &str,
    base: &Typed,
    items: &[TypedIndex],
    span: Span,
) -> Result<Ty, Box<Diagnostic>> {
    let _ = (src, base, items, span);
    Ok(Ty::Unknown)
}

/// A property of a tensor, `x.T`, `x.shape`, `x.dtype`; `None` when `name` is not one
/// (the walker then tries method sugar or reports an unknown field).
pub fn property(src: &str, base: &Typed, name: &Ident) -> Option<Result<Ty, Box<Diagnostic>>> {
    let _ = (src, base, name);
    None
}
