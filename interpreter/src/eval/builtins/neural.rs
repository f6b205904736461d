//! Convolution and pooling (`conv2d max_pool2d avg_pool2d`), on the device's primitives.
//!
//! The arguments follow the checker's rules (`lang::check::builtins::neural`): NCHW input,
//! OIHW filters, and `stride`, `padding`, `dilation`, `window` each one size or an
//! `(h, w)` pair. The checker needs these sizes to be known, so they are checked there;
//! here they are checked again only so that a value the checker could not see gives a
//! clear error instead of a wrong result. The primitive's own shape rule (`ir::infer`,
//! which the device runs before every kernel) is the one the checker used, so the result
//! has the shape the checker predicted.

use ir::{BinaryOp, Conv2dParams, DType, Op, Pool2dParams, PoolOp};
use lang::check::ops::promote_dtypes;

use super::{Call, int_list};
use crate::eval::Eval;
use crate::eval::errors::{self, R};
use crate::eval::ops::float_of;
use crate::value::{TensorVal, Value};

/// A size argument that is one size or an `(h, w)` pair, each at least `min`; `default`
/// when absent.
fn pair(ev: &Eval<'_>, c: &Call, i: usize, default: usize, min: usize) -> R<[usize; 2]> {
    let Some(v) = c.get(i) else {
        return Ok([default, default]);
    };
    let span = c.span(i);
    let ints = int_list(ev, v, span)?;
    let pname = lang::check::builtins::signature(c.name)
        .and_then(|s| s.params.get(i).copied())
        .unwrap_or("argument");
    let bad = || {
        errors::bad_value(
            format!(
                "`{}` needs `{pname}` as one size ≥ {min} or a pair of them, found {ints:?}",
                c.name
            ),
            span,
        )
    };
    let conv = |n: i64| {
        usize::try_from(n)
            .ok()
            .filter(|&n| n >= min)
            .ok_or_else(bad)
    };
    match ints.as_slice() {
        [n] => {
            let n = conv(*n)?;
            Ok([n, n])
        }
        [h, w] => Ok([conv(*h)?, conv(*w)?]),
        _ => Err(bad()),
    }
}

/// `conv2d(x, w, bias?, stride: 1, padding: 0, dilation: 1, groups: 1)`: the
/// cross-correlation of NCHW `x` with OIHW `w`, plus `bias` (one value per output channel).
/// Integer operands compute in `f32`.
pub(super) fn conv2d(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let (x, w) = (c.tensor(0)?, c.tensor(1)?);
    let (dtype, _) = promote_dtypes((float_of(x.dtype), false), (float_of(w.dtype), false))
        .map_err(|(p, q)| {
            errors::mismatch(
                format!("dtypes do not mix in `conv2d`: {p} and {q}"),
                c.span,
            )
        })?;
    let params = Conv2dParams {
        stride: pair(ev, c, 3, 1, 1)?,
        padding: pair(ev, c, 4, 0, 0)?,
        dilation: pair(ev, c, 5, 1, 1)?,
        groups: match c.opt_int(ev, 6)? {
            None => 1,
            Some(g) => usize::try_from(g).ok().filter(|&g| g >= 1).ok_or_else(|| {
                errors::bad_value(format!("`conv2d` needs `groups` ≥ 1, found {g}"), c.span(6))
            })?,
        },
    };
    let xt = ev.cast(&x.t, dtype, c.span(0))?;
    let wt = ev.cast(&w.t, dtype, c.span(1))?;
    let mut y = ev.exec(&Op::Conv2d { params }, &[&xt, &wt], c.span)?;
    if c.get(2).is_some() {
        let b = c.tensor(2)?;
        let out_c = y.shape().get(1).copied().unwrap_or(0);
        if b.shape() != [out_c] {
            return Err(errors::mismatch(
                format!(
                    "`conv2d` with {out_c} output channels needs a bias of shape [{out_c}], found one of shape {:?}",
                    b.shape()
                ),
                c.span(2),
            ));
        }
        // The checker's rule: the bias promotes into the result's dtype, but two different
        // floats never mix silently.
        promote_dtypes((dtype, false), (b.dtype, b.weak)).map_err(|(p, q)| {
            errors::mismatch(
                format!("dtypes do not mix in `conv2d`: {p} and a bias of {q}"),
                c.span(2),
            )
        })?;
        let bt = ev.cast(&b.t, dtype, c.span(2))?;
        let bt = ev.reshape(&bt, &[1, out_c, 1, 1], c.span(2))?;
        y = ev.exec(&Op::Binary { op: BinaryOp::Add }, &[&y, &bt], c.span)?;
    }
    Ok(Value::Tensor(TensorVal {
        t: y,
        dtype,
        weak: false,
    }))
}

/// `max_pool2d(x, window, stride: window, padding: 0)` and `avg_pool2d`: pooling of NCHW
/// `x`. Max pooling keeps `x`'s dtype (padding never wins); average pooling computes in a
/// float dtype and counts padding in the divisor (PyTorch's `count_include_pad`).
pub(super) fn pool2d(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    let (op, dtype) = if c.name == "avg_pool2d" {
        (PoolOp::Avg, float_of(x.dtype))
    } else {
        (PoolOp::Max, x.dtype)
    };
    let window = pair(ev, c, 1, 1, 1)?;
    let stride = if c.get(2).is_some() {
        pair(ev, c, 2, 1, 1)?
    } else {
        window
    };
    let padding = pair(ev, c, 3, 0, 0)?;
    let params = Pool2dParams {
        window,
        stride,
        padding,
    };
    if dtype == DType::Bool {
        return Err(errors::mismatch(
            format!("`{}` needs numbers, found a bool tensor", c.name),
            c.span(0),
        ));
    }
    let xt = ev.cast(&x.t, dtype, c.span(0))?;
    let y = ev.exec(&Op::Pool2d { op, params }, &[&xt], c.span)?;
    Ok(Value::Tensor(TensorVal {
        t: y,
        dtype,
        weak: false,
    }))
}
