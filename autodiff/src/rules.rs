//! TEMPORARY: the rules for `add` and `mul` only, so that the tape can be tested before
//! the real `autodiff::rules` (branch `rules`) is merged; the merge replaces this file.

use ir::{BinaryOp, Emit, Op, Prim};

/// Whether a primitive has a derivative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Differentiability {
    /// Gradients flow through it.
    Differentiable,
    /// Its result carries no gradient.
    NonDifferentiable,
}

/// Whether `prim` has a derivative.
pub fn differentiability(prim: Prim) -> Differentiability {
    match prim {
        Prim::Binary(BinaryOp::Add | BinaryOp::Mul) => Differentiability::Differentiable,
        _ => Differentiability::NonDifferentiable,
    }
}

/// The cotangents of `op`'s operands.
pub fn vjp<E: Emit>(
    e: &mut E,
    op: &Op,
    inputs: &[E::Val],
    _output: &E::Val,
    ct: &E::Val,
) -> Result<Vec<Option<E::Val>>, E::Err> {
    let mut out = Vec::new();
    for (i, x) in inputs.iter().enumerate() {
        let g = match op {
            Op::Binary { op: BinaryOp::Mul } => e.mul(ct, &inputs[1 - i])?,
            _ => ct.clone(),
        };
        let dims = e.dims(x);
        out.push(Some(e.sum_to(&g, &dims)?));
    }
    Ok(out)
}

/// The tangent of `op`'s result.
pub fn jvp<E: Emit>(
    e: &mut E,
    op: &Op,
    inputs: &[E::Val],
    output: &E::Val,
    tangents: &[Option<E::Val>],
) -> Result<Option<E::Val>, E::Err> {
    let mut acc: Option<E::Val> = None;
    for (i, t) in tangents.iter().enumerate() {
        let Some(t) = t else { continue };
        let term = match op {
            Op::Binary { op: BinaryOp::Mul } => e.mul(t, &inputs[1 - i])?,
            _ => t.clone(),
        };
        let dims = e.dims(output);
        let term = e.broadcast_to(&term, &dims)?;
        acc = Some(match acc {
            Some(a) => e.add(&a, &term)?,
            None => term,
        });
    }
    Ok(acc)
}
