//! Constant folding: what computes on constants (`full` nodes) is a constant.
//!
//! Folded exactly as the device computes it, so values stay bit for bit: a `broadcast`,
//! `reshape` or negation of a `full`; a cast of a float `full` to another float dtype (or
//! of an integer one to a float dtype); `+ - * /` and comparisons of two float `full`s,
//! computed in their dtype (IEEE arithmetic is exactly rounded, so the result is the
//! kernel's). Transcendental functions and integer arithmetic (wrapping, floored division)
//! are left to the device.

use crate::graph::{BuildError, Graph, GraphBuilder, Rewrite, ValueId, rewrite};
use crate::{BinaryOp, CmpOp, DType, Op, UnaryOp, infer};

use super::full_value;

/// `g` with its constant computations folded.
pub(super) fn run(g: &Graph) -> Result<Graph, BuildError> {
    rewrite(g, &Fold)
}

struct Fold;

impl Rewrite for Fold {
    fn prim(
        &self,
        b: &mut GraphBuilder,
        op: &Op,
        args: &[ValueId],
    ) -> Result<Option<ValueId>, BuildError> {
        let values: Option<Vec<f64>> = args.iter().map(|&a| full_value(b, a)).collect();
        let Some(values) = values.filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let types: Option<Vec<_>> = args.iter().map(|&a| b.ty(a).tensor().cloned()).collect();
        let Some(types) = types else {
            return Ok(None);
        };
        let Ok(out) = infer(op, &types) else {
            return Ok(None);
        };
        let from = types[0].dtype;
        let float = |d: DType| matches!(d, DType::F32 | DType::F64);
        let value = match (op, &values[..]) {
            (Op::Broadcast { .. } | Op::Reshape { .. }, &[v]) => Some(v),
            (Op::Unary { op: UnaryOp::Neg }, &[v]) if float(from) => Some(-v),
            (Op::Cast { dtype }, &[v]) if float(*dtype) && (float(from) || from.is_int()) => {
                Some(round_to(*dtype, v))
            }
            (Op::Binary { op: bop }, &[x, y]) if float(from) && from == types[1].dtype => {
                binary(from, *bop, x, y)
            }
            (Op::Compare { op: cop }, &[x, y]) if float(from) && from == types[1].dtype => {
                Some(f64::from(u8::from(compare(*cop, x, y))))
            }
            _ => None,
        };
        let Some(value) = value else {
            return Ok(None);
        };
        let full = Op::Full {
            shape: out.shape,
            dtype: out.dtype,
            value,
        };
        b.op(&full, &[]).map(Some)
    }
}

/// `v` rounded to `dtype` (f32: to the nearest f32, as a cast does).
fn round_to(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::F32 => f64::from(v as f32),
        _ => v,
    }
}

/// `x op y` computed in `dtype`, for the exactly rounded operations.
fn binary(dtype: DType, op: BinaryOp, x: f64, y: f64) -> Option<f64> {
    if dtype == DType::F32 {
        let (a, b) = (x as f32, y as f32);
        let r = match op {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            _ => return None,
        };
        return Some(f64::from(r));
    }
    Some(match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
        _ => return None,
    })
}

fn compare(op: CmpOp, x: f64, y: f64) -> bool {
    match op {
        CmpOp::Eq => x == y,
        CmpOp::Ne => x != y,
        CmpOp::Lt => x < y,
        CmpOp::Le => x <= y,
        CmpOp::Gt => x > y,
        CmpOp::Ge => x >= y,
    }
}
