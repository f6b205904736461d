//! Elementwise functions, casts, `where`, `clip` and reductions (`softmax` and
//! `log_softmax` are MindScript, in the prelude).
//!
//! Float functions of integer or bool tensors compute in `f32` (the checker's rule). A
//! unary function of a weak literal stays weak, as in the checker; reductions give strong
//! results.

use devices::Tensor;
use ir::{ArgOp, BinaryOp, CmpOp, DType, Op, ReduceOp, UnaryKind, UnaryOp};
use lang::Span;
use lang::check::ops::promote_dtypes;

use super::{Call, norm_axis, strong};
use crate::eval::Eval;
use crate::eval::errors::{self, R};
use crate::eval::ops::{Bin, float_of, wide};
use crate::value::{TensorVal, Value};

/// `exp(x)`, `relu(x)`, `isnan(x)`, ...: the `unary` primitive of the same name.
pub(super) fn unary(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    let Some(op) = UnaryOp::from_name(c.name) else {
        return Err(errors::not_available(c.name, c.span));
    };
    Ok(Value::Tensor(unary_val(ev, op, x, c.span)?))
}

/// A unary primitive on a tensor value.
pub(crate) fn unary_val(ev: &Eval<'_>, op: UnaryOp, x: &TensorVal, span: Span) -> R<TensorVal> {
    let (logical, store) = match op.kind() {
        UnaryKind::Float => {
            let d = float_of(x.dtype);
            (d, if x.weak { wide(d) } else { d })
        }
        UnaryKind::Predicate => (DType::Bool, x.t.dtype()),
        UnaryKind::Numeric | UnaryKind::Logical => (x.dtype, x.t.dtype()),
    };
    let input = ev.cast(&x.t, store, span)?;
    let t = ev.exec(&Op::Unary { op }, &[&input], span)?;
    Ok(TensorVal {
        t,
        dtype: logical,
        weak: x.weak,
    })
}

/// `floor_div`, `maximum`, `minimum`, `logical_and`, `logical_or`: like the operators.
pub(super) fn binary(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let op = match c.name {
        "floor_div" => BinaryOp::FloorDiv,
        "maximum" => BinaryOp::Maximum,
        "minimum" => BinaryOp::Minimum,
        "logical_and" => BinaryOp::And,
        _ => BinaryOp::Or,
    };
    let (x, y) = (c.tensor(0)?, c.tensor(1)?);
    Ok(Value::Tensor(ev.tensor_binary(
        Bin::Arith(op),
        x,
        y,
        c.span,
    )?))
}

/// `f32(x)`, `i64(x)`, ...: a strong tensor of that dtype (over structures too).
pub(super) fn cast(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let dtype = DType::from_name(c.name).unwrap_or(DType::F32);
    cast_value(ev, c.req(0)?, dtype, c.span)
}

fn cast_value(ev: &Eval<'_>, v: &Value, dtype: DType, span: Span) -> R<Value> {
    v.map_leaves(&mut |leaf| match leaf {
        Value::Tensor(t) => Ok(strong(ev.cast(&t.t, dtype, span)?)),
        other => Err(errors::mismatch(
            format!("a cast needs a tensor, found {}", other.describe()),
            span,
        )),
    })
}

/// `where(cond, x, y)`: `x` where `cond` holds, else `y`; the three broadcast.
pub(super) fn where_(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let cond = c.tensor(0)?;
    let (x, y) = (c.tensor(1)?, c.tensor(2)?);
    let (dtype, weak) =
        promote_dtypes((x.dtype, x.weak), (y.dtype, y.weak)).map_err(|(a, b)| {
            errors::mismatch(format!("dtypes do not mix in `where`: {a} and {b}"), c.span)
        })?;
    let store = if weak { wide(dtype) } else { dtype };
    let cb = ev.cast(&cond.t, DType::Bool, c.span(0))?;
    let xs = ev.cast(&x.t, store, c.span(1))?;
    let ys = ev.cast(&y.t, store, c.span(2))?;
    let t = ev.exec(&Op::Select {}, &[&cb, &xs, &ys], c.span)?;
    Ok(Value::Tensor(TensorVal {
        t,
        dtype,
        weak: weak && cond.weak,
    }))
}

/// `clip(x, lo, hi)`: `minimum(maximum(x, lo), hi)`.
pub(super) fn clip(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    let lo = ev.tensor_binary(Bin::Arith(BinaryOp::Maximum), x, c.tensor(1)?, c.span)?;
    let hi = ev.tensor_binary(Bin::Arith(BinaryOp::Minimum), &lo, c.tensor(2)?, c.span)?;
    Ok(Value::Tensor(hi))
}

/// The axes named by a reduction's `axis:` argument (an int or a list of them), sorted;
/// every axis when it is absent, except for `logsumexp`, which then reduces the last axis
/// (LANGUAGE.md §10, like `softmax`) and nothing of a scalar.
fn axes(ev: &Eval<'_>, c: &Call, rank: usize) -> R<Vec<usize>> {
    let Some(v) = c.get(1) else {
        if c.name == "logsumexp" {
            return Ok(rank.checked_sub(1).into_iter().collect());
        }
        return Ok((0..rank).collect());
    };
    let list = super::int_list(ev, v, c.span(1))?;
    let mut out = Vec::with_capacity(list.len());
    for a in list {
        let ax = norm_axis(a, rank, c.span(1))?;
        if out.contains(&ax) {
            return Err(errors::bad_value(
                format!("axis {ax} is named twice"),
                c.span(1),
            ));
        }
        out.push(ax);
    }
    out.sort_unstable();
    Ok(out)
}

/// One reduction primitive.
pub(crate) fn reduce_prim(
    ev: &Eval<'_>,
    op: ReduceOp,
    t: &Tensor,
    axes: &[usize],
    keepdims: bool,
    span: Span,
) -> R<Tensor> {
    ev.exec(
        &Op::Reduce {
            op,
            axes: axes.to_vec(),
            keepdims,
        },
        &[t],
        span,
    )
}

/// The number of elements folded by a reduction over `axes`.
fn count(shape: &[usize], axes: &[usize]) -> usize {
    axes.iter()
        .map(|&a| shape.get(a).copied().unwrap_or(1))
        .product()
}

/// `sum mean prod max min var std logsumexp all any` with `axis:` and `keepdims:`.
pub(super) fn reduce(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let xv = c.tensor(0)?;
    let x = ev.strong(xv, c.span(0))?;
    let keepdims = c.flag(ev, 2)?.unwrap_or(false);
    let ax = axes(ev, c, x.rank())?;
    let span = c.span;
    if matches!(c.name, "max" | "min")
        && let Some(&a) = ax.iter().find(|&&a| x.shape().get(a) == Some(&0))
    {
        return Err(errors::bad_value(
            format!("`{}` of an empty axis: axis {a} has size 0", c.name),
            c.span(0),
        ));
    }
    let out = match c.name {
        "sum" => reduce_prim(ev, ReduceOp::Sum, &x, &ax, keepdims, span)?,
        "prod" => reduce_prim(ev, ReduceOp::Prod, &x, &ax, keepdims, span)?,
        "max" => reduce_prim(ev, ReduceOp::Max, &x, &ax, keepdims, span)?,
        "min" => reduce_prim(ev, ReduceOp::Min, &x, &ax, keepdims, span)?,
        "all" | "any" => all_any(ev, c.name == "all", &x, &ax, keepdims, span)?,
        "mean" => mean(ev, &x, &ax, keepdims, span)?,
        "var" | "std" => {
            let v = var(ev, &x, &ax, keepdims, span)?;
            if c.name == "std" {
                ev.exec(&Op::Unary { op: UnaryOp::Sqrt }, &[&v], span)?
            } else {
                v
            }
        }
        _ => logsumexp(ev, &x, &ax, keepdims, span)?,
    };
    Ok(strong(out))
}

/// `all` (`is_all`) or `any` over `axes`. On bools these are the minimum and the maximum,
/// but those have no value over an empty axis, where `all` is true and `any` false (NumPy:
/// the empty conjunction and disjunction). So an empty reduction counts instead: the sum
/// of no terms is 0, and `all` is "the count is 0", `any` "the count is not 0".
fn all_any(
    ev: &Eval<'_>,
    is_all: bool,
    x: &Tensor,
    axes: &[usize],
    keepdims: bool,
    span: Span,
) -> R<Tensor> {
    let b = ev.cast(x, DType::Bool, span)?;
    if count(x.shape(), axes) != 0 {
        let op = if is_all { ReduceOp::Min } else { ReduceOp::Max };
        return reduce_prim(ev, op, &b, axes, keepdims, span);
    }
    let n = ev.cast(&b, DType::I64, span)?;
    let zeros = reduce_prim(ev, ReduceOp::Sum, &n, axes, keepdims, span)?;
    let op = if is_all { CmpOp::Eq } else { CmpOp::Ne };
    ev.exec(&Op::Compare { op }, &[&zeros, &Tensor::scalar(0i64)], span)
}

/// `x` in the float dtype float functions compute in.
fn to_float(ev: &Eval<'_>, x: &Tensor, span: Span) -> R<Tensor> {
    ev.cast(x, float_of(x.dtype()), span)
}

fn scalar_like(t: &Tensor, v: f64) -> Tensor {
    if t.dtype() == DType::F64 {
        Tensor::scalar(v)
    } else {
        Tensor::scalar(v as f32)
    }
}

/// The mean over `axes` (ints and bools average as `f32`).
pub(crate) fn mean(
    ev: &Eval<'_>,
    x: &Tensor,
    axes: &[usize],
    keepdims: bool,
    span: Span,
) -> R<Tensor> {
    let xf = to_float(ev, x, span)?;
    let s = reduce_prim(ev, ReduceOp::Sum, &xf, axes, keepdims, span)?;
    let n = if xf.staged_id().is_some() {
        // Staged, the count is computed by the graph (the sum of ones over the axes), so
        // that the graph holds for every size of a symbolic dim (`ir::graph::generalize`)
        // rather than for the size it was staged at. The sum is exact, so the mean is the
        // eager one bit for bit.
        let reduced: Vec<usize> = axes
            .iter()
            .filter_map(|&a| x.shape().get(a))
            .copied()
            .collect();
        let ones = ev.with_stager(span, |s| s.full(1.0, xf.dtype(), &reduced, span))?;
        let all: Vec<usize> = (0..reduced.len()).collect();
        reduce_prim(ev, ReduceOp::Sum, &ones, &all, false, span)?
    } else {
        scalar_like(&xf, count(x.shape(), axes) as f64)
    };
    ev.exec(&Op::Binary { op: BinaryOp::Div }, &[&s, &n], span)
}

/// The variance over `axes`, with `ddof` 0 (NumPy's default).
fn var(ev: &Eval<'_>, x: &Tensor, axes: &[usize], keepdims: bool, span: Span) -> R<Tensor> {
    let xf = to_float(ev, x, span)?;
    let m = mean(ev, &xf, axes, true, span)?;
    let d = ev.exec(&Op::Binary { op: BinaryOp::Sub }, &[&xf, &m], span)?;
    let d2 = ev.exec(&Op::Binary { op: BinaryOp::Mul }, &[&d, &d], span)?;
    mean(ev, &d2, axes, keepdims, span)
}

/// The largest element over `axes` (kept as size 1), replaced by 0 where it is not finite,
/// so that subtracting it is safe for rows of `-inf`.
fn safe_max(ev: &Eval<'_>, xf: &Tensor, axes: &[usize], span: Span) -> R<Tensor> {
    let m = reduce_prim(ev, ReduceOp::Max, xf, axes, true, span)?;
    let finite = ev.exec(
        &Op::Unary {
            op: UnaryOp::IsFinite,
        },
        &[&m],
        span,
    )?;
    ev.exec(&Op::Select {}, &[&finite, &m, &scalar_like(xf, 0.0)], span)
}

/// `log(sum(exp(x)))` over `axes`, computed stably: the maximum is taken out first.
fn logsumexp(ev: &Eval<'_>, x: &Tensor, axes: &[usize], keepdims: bool, span: Span) -> R<Tensor> {
    let xf = to_float(ev, x, span)?;
    if axes.iter().any(|&a| xf.shape().get(a) == Some(&0)) {
        // The sum of no terms is 0, whose log is -inf, as in NumPy.
        let s = reduce_prim(ev, ReduceOp::Sum, &xf, axes, keepdims, span)?;
        return ev.exec(&Op::Unary { op: UnaryOp::Log }, &[&s], span);
    }
    let m = safe_max(ev, &xf, axes, span)?;
    let shifted = ev.exec(&Op::Binary { op: BinaryOp::Sub }, &[&xf, &m], span)?;
    let e = ev.exec(&Op::Unary { op: UnaryOp::Exp }, &[&shifted], span)?;
    let s = reduce_prim(ev, ReduceOp::Sum, &e, axes, true, span)?;
    let l = ev.exec(&Op::Unary { op: UnaryOp::Log }, &[&s], span)?;
    let out = ev.exec(&Op::Binary { op: BinaryOp::Add }, &[&l, &m], span)?;
    if keepdims {
        return Ok(out);
    }
    let dims: Vec<usize> = out
        .shape()
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, d)| *d)
        .collect();
    ev.reshape(&out, &dims, span)
}

/// `argmax(x, axis:, keepdims:)`, `argmin`: without `axis`, of the flattened tensor.
pub(super) fn arg_reduce(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = ev.strong(c.tensor(0)?, c.span(0))?;
    let keepdims = c.flag(ev, 2)?.unwrap_or(false);
    let op = if c.name == "argmax" {
        ArgOp::ArgMax
    } else {
        ArgOp::ArgMin
    };
    let (input, axis) = match c.opt_int(ev, 1)? {
        Some(a) => (x.clone(), norm_axis(a, x.rank(), c.span(1))?),
        None => (ev.reshape(&x, &[x.numel()], c.span)?, 0),
    };
    if input.shape().get(axis) == Some(&0) {
        return Err(errors::bad_value(
            format!("`{}` of an empty axis: axis {axis} has size 0", c.name),
            c.span(0),
        ));
    }
    let t = ev.exec(&Op::ArgReduce { op, axis, keepdims }, &[&input], c.span)?;
    // Without `axis`, `keepdims` keeps every axis of `x` as size 1.
    let t = if c.get(1).is_none() && keepdims {
        ev.reshape(&t, &vec![1; x.rank()], c.span)?
    } else {
        t
    };
    Ok(strong(t))
}
