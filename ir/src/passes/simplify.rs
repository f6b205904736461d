//! Algebraic simplification: identities that hold bit for bit.
//!
//! - `x * 1`, `1 * x`, `x / 1`, `x - 0` and `x + (-0)` are `x` (`x + 0` is not: `-0 + 0`
//!   is `+0`);
//! - a transpose by the identity, a reshape or a broadcast to the shape it already has, is
//!   its operand;
//! - a transpose of a transpose is one transpose (by the composed permutation); a reshape
//!   of a reshape, one reshape; a broadcast of a broadcast, one broadcast.
//!
//! A replacement is taken only when it has exactly the type of the node it replaces (a
//! scalar `1` that broadcasts `x` to a larger shape does not vanish). What the rewritten
//! nodes no longer read is left to DCE.

use crate::graph::{BuildError, Graph, GraphBuilder, Rewrite, Type, ValueId, rewrite};
use crate::{BinaryOp, Op, infer};

use super::{full_value, producer};

/// `g` with the identities above applied.
pub(super) fn run(g: &Graph) -> Result<Graph, BuildError> {
    rewrite(g, &Simplify)
}

struct Simplify;

impl Rewrite for Simplify {
    fn prim(
        &self,
        b: &mut GraphBuilder,
        op: &Op,
        args: &[ValueId],
    ) -> Result<Option<ValueId>, BuildError> {
        let is = |v: ValueId, x: f64| full_value(b, v).is_some_and(|f| f.to_bits() == x.to_bits());
        let candidate = match (op, args) {
            (Op::Binary { op: BinaryOp::Mul }, &[x, y]) if is(y, 1.0) => Some(x),
            (Op::Binary { op: BinaryOp::Mul }, &[x, y]) if is(x, 1.0) => Some(y),
            (Op::Binary { op: BinaryOp::Div }, &[x, y]) if is(y, 1.0) => Some(x),
            (Op::Binary { op: BinaryOp::Sub }, &[x, y]) if is(y, 0.0) => Some(x),
            (Op::Binary { op: BinaryOp::Add }, &[x, y]) if is(y, -0.0) => Some(x),
            (Op::Binary { op: BinaryOp::Add }, &[x, y]) if is(x, -0.0) => Some(y),
            (Op::Transpose { perm }, &[x]) if perm.iter().enumerate().all(|(i, &p)| i == p) => {
                Some(x)
            }
            (Op::Reshape { shape } | Op::Broadcast { shape }, &[x])
                if b.ty(x).tensor().is_some_and(|t| t.shape == *shape) =>
            {
                Some(x)
            }
            _ => None,
        };
        if let Some(x) = candidate
            && same_type(b, op, args, x)
        {
            return Ok(Some(x));
        }
        // A chain of two movements of one kind is one.
        let Some(&[x]) = Some(args) else {
            return Ok(None);
        };
        let (inner, inner_args) = match producer(b, x) {
            Some((o, a)) => (o.clone(), a),
            None => return Ok(None),
        };
        let Some(&[y]) = Some(&inner_args[..]) else {
            return Ok(None);
        };
        let merged = match (op, &inner) {
            (Op::Transpose { perm }, Op::Transpose { perm: first }) => Op::Transpose {
                perm: perm
                    .iter()
                    .map(|&p| first.get(p).copied().unwrap_or(p))
                    .collect(),
            },
            (Op::Reshape { shape }, Op::Reshape { .. }) => Op::Reshape {
                shape: shape.clone(),
            },
            (Op::Broadcast { shape }, Op::Broadcast { .. }) => Op::Broadcast {
                shape: shape.clone(),
            },
            _ => return Ok(None),
        };
        if let Op::Transpose { perm } = &merged
            && perm.iter().enumerate().all(|(i, &p)| i == p)
            && same_type(b, op, args, y)
        {
            return Ok(Some(y));
        }
        let v = b.op(&merged, &[y])?;
        if same_type(b, op, args, v) {
            Ok(Some(v))
        } else {
            Ok(None)
        }
    }
}

/// Whether `x` has the type `op` gives on `args`.
fn same_type(b: &GraphBuilder, op: &Op, args: &[ValueId], x: ValueId) -> bool {
    let types: Option<Vec<_>> = args.iter().map(|&a| b.ty(a).tensor().cloned()).collect();
    let Some(types) = types else {
        return false;
    };
    match infer(op, &types) {
        Ok(t) => *b.ty(x) == Type::Tensor(t),
        Err(_) => false,
    }
}
