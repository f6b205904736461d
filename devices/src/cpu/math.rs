//! Vectorised elementwise math for `f32` and `f64` (placeholder: being written).

use ir::UnaryOp;

/// Applies `op` (any op whose kind is `Numeric` or `Float`) to `x`, writing `out`.
pub fn unary_f32(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = scalar_f64(op, v as f64) as f32;
    }
}

/// Applies `op` (any op whose kind is `Numeric` or `Float`) to `x`, writing `out`.
pub fn unary_f64(op: UnaryOp, x: &[f64], out: &mut [f64]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = scalar_f64(op, v);
    }
}

fn scalar_f64(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Neg => -x,
        _ => x,
    }
}
