//! Shape functions (`reshape transpose expand_dims squeeze concat stack split flatten
//! broadcast_to pad`), selection (`one_hot take gather`) and linear algebra (`matmul dot
//! outer`; `einsum` is in [`super::einsum`]).
//!
//! Shape functions keep a weak tensor weak: they move elements, they do not compute.

use devices::Tensor;
use ir::{DType, Op, Shape, SliceDim};
use lang::Span;
use lang::check::ops::promote_dtypes;

use super::{Call, int_list, norm_axis};
use crate::eval::Eval;
use crate::eval::errors::{self, R};
use crate::eval::ops::wide;
use crate::value::{TensorVal, Value};

/// The same tensor value with new elements.
fn with(x: &TensorVal, t: Tensor) -> Value {
    Value::Tensor(TensorVal { t, ..x.clone() })
}

/// `reshape(x, shape)`: one size may be -1, inferred from the others.
pub(super) fn reshape(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    let raw = int_list(ev, c.req(1)?, c.span(1))?;
    let numel = x.t.numel();
    let mut dims = Vec::with_capacity(raw.len());
    let mut infer = None;
    for (i, &d) in raw.iter().enumerate() {
        if d == -1 && infer.is_none() {
            infer = Some(i);
            dims.push(1);
        } else {
            dims.push(usize::try_from(d).map_err(|_| {
                errors::bad_value(format!("a shape cannot hold the size {d}"), c.span(1))
            })?);
        }
    }
    // A product that overflows cannot equal the element count of a tensor that exists.
    let Some(known) = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) else {
        return Err(count_error(numel, &raw, c.span(1)));
    };
    if let Some(i) = infer {
        if known == 0 || numel % known != 0 {
            return Err(count_error(numel, &raw, c.span(1)));
        }
        if let Some(d) = dims.get_mut(i) {
            *d = numel / known;
        }
    } else if known != numel {
        return Err(count_error(numel, &raw, c.span(1)));
    }
    Ok(with(x, ev.reshape(&x.t, &dims, c.span)?))
}

fn count_error(numel: usize, shape: &[i64], span: Span) -> crate::eval::errors::Flow {
    errors::bad_value(
        format!("cannot reshape {numel} elements into the shape {shape:?}"),
        span,
    )
}

/// `transpose(x, perm?)`: reverses the axes without `perm`.
pub(super) fn transpose(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    let r = x.rank();
    let perm: Vec<usize> = match c.get(1) {
        None => (0..r).rev().collect(),
        Some(v) => int_list(ev, v, c.span(1))?
            .into_iter()
            .map(|a| norm_axis(a, r, c.span(1)))
            .collect::<R<_>>()?,
    };
    Ok(with(x, ev.exec(&Op::Transpose { perm }, &[&x.t], c.span)?))
}

/// `expand_dims(x, axis)`: a new axis of size 1.
pub(super) fn expand_dims(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    let a = c.opt_int(ev, 1)?.unwrap_or(0);
    let ax = norm_axis(a, x.rank() + 1, c.span(1))?;
    let mut dims = x.shape().to_vec();
    dims.insert(ax.min(dims.len()), 1);
    Ok(with(x, ev.reshape(&x.t, &dims, c.span)?))
}

/// `squeeze(x, axis?)`: drops the given axis (which must be 1) or every axis of size 1.
pub(super) fn squeeze(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    let mut dims = x.shape().to_vec();
    match c.opt_int(ev, 1)? {
        None => dims.retain(|&d| d != 1),
        Some(a) => {
            let ax = norm_axis(a, x.rank(), c.span(1))?;
            if dims.get(ax) != Some(&1) {
                return Err(errors::bad_value(
                    format!("cannot squeeze axis {ax}: its size is not 1"),
                    c.span(1),
                ));
            }
            dims.remove(ax);
        }
    }
    Ok(with(x, ev.reshape(&x.t, &dims, c.span)?))
}

/// The tensors of a `concat`/`stack` argument (a tuple, or the rows of a tensor), cast to
/// their common dtype.
fn pieces(ev: &Eval<'_>, c: &Call) -> R<(Vec<Tensor>, TensorVal)> {
    let arg = c.req(0)?;
    let span = c.span(0);
    let vals: Vec<TensorVal> = match arg {
        Value::Tuple(items) => items
            .iter()
            .map(|v| match v {
                Value::Tensor(t) => Ok(t.clone()),
                other => Err(errors::mismatch(
                    format!(
                        "`{}` needs a tuple of tensors, found {}",
                        c.name,
                        other.describe()
                    ),
                    span,
                )),
            })
            .collect::<R<_>>()?,
        Value::Tensor(t) if t.rank() >= 1 => {
            let n = t.shape().first().copied().unwrap_or(0);
            let mut rows = Vec::with_capacity(n);
            for i in 0..n {
                let row = ev.index(
                    arg,
                    span,
                    &[crate::eval::index::Item::Value(
                        Value::tensor(Tensor::scalar(i64::try_from(i).unwrap_or(0))),
                        span,
                    )],
                    span,
                )?;
                if let Value::Tensor(r) = row {
                    rows.push(r);
                }
            }
            rows
        }
        other => {
            return Err(errors::mismatch(
                format!(
                    "`{}` needs a tuple of tensors, found {}",
                    c.name,
                    other.describe()
                ),
                span,
            ));
        }
    };
    let Some(first) = vals.first() else {
        return Err(errors::bad_value(
            format!("`{}` needs at least one tensor", c.name),
            span,
        ));
    };
    let mut acc = (first.dtype, first.weak);
    for v in vals.iter().skip(1) {
        acc = promote_dtypes(acc, (v.dtype, v.weak)).map_err(|(a, b)| {
            errors::mismatch(
                format!("dtypes do not mix in `{}`: {a} and {b}", c.name),
                span,
            )
        })?;
    }
    let (dtype, weak) = acc;
    let store = if weak { wide(dtype) } else { dtype };
    let ts = vals
        .iter()
        .map(|v| ev.cast(&v.t, store, span))
        .collect::<R<Vec<_>>>()?;
    let proto = TensorVal {
        t: ts
            .first()
            .cloned()
            .unwrap_or_else(|| Tensor::scalar(0.0f32)),
        dtype,
        weak,
    };
    Ok((ts, proto))
}

/// `concat((a, b), axis: 0)`.
pub(super) fn concat(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let (ts, proto) = pieces(ev, c)?;
    let rank = proto.t.rank();
    let axis = norm_axis(c.opt_int(ev, 1)?.unwrap_or(0), rank, c.span(1))?;
    let refs: Vec<&Tensor> = ts.iter().collect();
    Ok(with(&proto, ev.exec(&Op::Concat { axis }, &refs, c.span)?))
}

/// `stack((a, b), axis: 0)`: equal shapes, joined along a new axis.
pub(super) fn stack(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let (ts, proto) = pieces(ev, c)?;
    let rank = proto.t.rank();
    let axis = norm_axis(c.opt_int(ev, 1)?.unwrap_or(0), rank + 1, c.span(1))?;
    let mut grown = Vec::with_capacity(ts.len());
    for t in &ts {
        let mut dims = t.shape().to_vec();
        dims.insert(axis.min(dims.len()), 1);
        grown.push(ev.reshape(t, &dims, c.span)?);
    }
    let refs: Vec<&Tensor> = grown.iter().collect();
    Ok(with(&proto, ev.exec(&Op::Concat { axis }, &refs, c.span)?))
}

/// `split(x, n, axis: 0)`: a tuple of `n` equal pieces (NumPy).
pub(super) fn split(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    let n = c.opt_int(ev, 1)?.unwrap_or(0);
    let axis = norm_axis(c.opt_int(ev, 2)?.unwrap_or(0), x.rank(), c.span(2))?;
    let size = x.shape().get(axis).copied().unwrap_or(0);
    let pieces = usize::try_from(n)
        .ok()
        .filter(|&p| p > 0 && size % p == 0)
        .ok_or_else(|| {
            errors::bad_value(
                format!("cannot split axis {axis} (size {size}) into {n} equal pieces"),
                c.span(1),
            )
        })?;
    let len = size / pieces;
    let mut out = Vec::with_capacity(pieces);
    for k in 0..pieces {
        let dims: Vec<SliceDim> = x
            .shape()
            .iter()
            .enumerate()
            .map(|(a, &d)| {
                if a == axis {
                    SliceDim {
                        start: k * len,
                        len,
                        step: 1,
                    }
                } else {
                    SliceDim::full(d)
                }
            })
            .collect();
        out.push(with(x, ev.exec(&Op::Slice { dims }, &[&x.t], c.span)?));
    }
    Ok(Value::Tuple(out.into()))
}

/// `flatten(x)`: one axis with every element.
pub(super) fn flatten(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    Ok(with(x, ev.reshape(&x.t, &[x.t.numel()], c.span)?))
}

/// `broadcast_to(x, shape)`.
pub(super) fn broadcast_to(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    let shape = c.shape(ev, 1)?;
    let t = ev.exec(
        &Op::Broadcast {
            shape: Shape::known(&shape),
        },
        &[&x.t],
        c.span,
    )?;
    Ok(with(x, t))
}

/// `matmul(a, b)` and `dot(a, b)`: `a @ b` (the inner product for two vectors).
pub(super) fn matmul(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let (x, y) = (c.tensor(0)?, c.tensor(1)?);
    Ok(Value::Tensor(ev.matmul(x, y, c.span)?))
}

/// `outer(a, b)`: `[numel(a), numel(b)]` products of the flattened operands.
pub(super) fn outer(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let (x, y) = (c.tensor(0)?, c.tensor(1)?);
    let col = TensorVal {
        t: ev.reshape(&x.t, &[x.t.numel(), 1], c.span)?,
        ..x.clone()
    };
    let row = TensorVal {
        t: ev.reshape(&y.t, &[1, y.t.numel()], c.span)?,
        ..y.clone()
    };
    let out = ev.tensor_binary(
        crate::eval::ops::Bin::Arith(ir::BinaryOp::Mul),
        &col,
        &row,
        c.span,
    )?;
    Ok(Value::Tensor(out))
}

/// Every integer of a `pads` argument in order: nested tuples and integer tensors of any
/// rank are flattened, so `((0, 0), (1, 1))`, `[[0, 0], [1, 1]]` and `[0, 0, 1, 1]` agree.
fn flat_ints(ev: &Eval<'_>, v: &Value, span: Span, out: &mut Vec<i64>) -> R<()> {
    match v {
        Value::Tuple(items) => {
            for it in items.iter() {
                flat_ints(ev, it, span, out)?;
            }
            Ok(())
        }
        Value::Tensor(t) if t.dtype.is_int() => {
            let c = ev.cast(&t.t, DType::I64, span)?;
            out.extend(
                c.to_vec::<i64>()
                    .ok_or_else(|| errors::internal("padding could not be read", span))?,
            );
            Ok(())
        }
        other => Err(errors::mismatch(
            format!(
                "`pad` needs (before, after) pairs of integers, found {}",
                other.describe()
            ),
            span,
        )),
    }
}

/// `pad(x, pads, value: 0)`: `pads` is one `(before, after)` pair for every axis or one
/// pair per axis (nested or flat), as the checker reads it.
pub(super) fn pad(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    let span = c.span(1);
    let mut flat = Vec::new();
    flat_ints(ev, c.req(1)?, span, &mut flat)?;
    let r = x.rank();
    let pairs: Vec<(i64, i64)> = match flat.as_slice() {
        [b, e] => vec![(*b, *e); r],
        v if v.len() == 2 * r => v
            .chunks(2)
            .map(|p| {
                (
                    p.first().copied().unwrap_or(0),
                    p.get(1).copied().unwrap_or(0),
                )
            })
            .collect(),
        v => {
            return Err(errors::bad_value(
                format!(
                    "`pad` needs one (before, after) pair or {r} of them for a tensor of rank {r}, found {} numbers",
                    v.len()
                ),
                span,
            ));
        }
    };
    let pads = pairs
        .into_iter()
        .map(|(b, e)| match (usize::try_from(b), usize::try_from(e)) {
            (Ok(b), Ok(e)) => Ok((b, e)),
            _ => Err(errors::bad_value(
                format!("`pad` cannot take negative padding, found ({b}, {e})"),
                span,
            )),
        })
        .collect::<R<Vec<_>>>()?;
    let value = c.opt_float(ev, 2)?.unwrap_or(0.0);
    Ok(with(x, ev.exec(&Op::Pad { pads, value }, &[&x.t], c.span)?))
}

/// `one_hot(labels, n, dtype: "f32")`: `[..labels, n]`, 1 where the last index equals the
/// label. A label outside `0..n` is an error (E0901) naming it, the class axis and `n`.
pub(super) fn one_hot(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let labels = c.tensor(0)?;
    if !labels.dtype.is_int() {
        return Err(errors::mismatch(
            format!(
                "`one_hot` needs integer class labels, found {}",
                Value::Tensor(labels.clone()).describe()
            ),
            c.span(0),
        ));
    }
    let raw_n = c.opt_int(ev, 1)?.unwrap_or(0);
    let n = usize::try_from(raw_n).map_err(|_| {
        errors::bad_value(
            format!("`one_hot` needs a class count n ≥ 0, found {raw_n}"),
            c.span(1),
        )
    })?;
    let dtype = c.dtype(2, DType::F32)?;
    let ids = ev.cast(&labels.t, DType::I64, c.span(0))?;
    let axis = labels.rank();
    if ids.staged_id().is_some() {
        // Staged, the labels are known only when the graph runs: the graph checks them
        // itself (the count of labels outside 0..n must be 0) and stops with this message.
        one_hot_staged_check(ev, &ids, raw_n, c.span(0))?;
    } else if let Some(&bad) = ids
        .to_vec::<i64>()
        .ok_or_else(|| errors::internal("labels could not be read", c.span(0)))?
        .iter()
        .find(|&&v| !(0..raw_n).contains(&v))
    {
        let d = lang::Diagnostic::error(
            "E0901",
            format!(
                "label {bad} is out of range for axis {axis} of size {n} (the classes of `one_hot`)"
            ),
            c.span(0),
        )
        .with_primary_label(format!("holds the label {bad}"))
        .with_note(if n == 0 {
            "with n = 0 there are no classes: no label is valid".to_string()
        } else {
            format!("valid labels are 0 to {}", n - 1)
        });
        return Err(crate::eval::Flow::error(d));
    }
    // Compare each label with the class indices 0..n: `labels[..., None] == iota(n)`.
    let mut col = labels.shape().to_vec();
    col.push(1);
    let ids = ev.reshape(&ids, &col, c.span)?;
    let classes = ev.exec(
        &Op::Iota {
            shape: Shape::known(&[n]),
            axis: 0,
            dtype: DType::I64,
        },
        &[],
        c.span,
    )?;
    let hit = ev.exec(
        &Op::Compare { op: ir::CmpOp::Eq },
        &[&ids, &classes],
        c.span,
    )?;
    let t = ev.cast(&hit, dtype, c.span)?;
    Ok(Value::Tensor(TensorVal {
        t,
        dtype,
        weak: false,
    }))
}

/// The range check of `one_hot`'s labels `ids` (`i64`, staged) as an assertion of the
/// staged graph: no label below 0 or at or above `n`.
fn one_hot_staged_check(ev: &Eval<'_>, ids: &Tensor, n: i64, span: Span) -> R<()> {
    let cmp = |op: ir::CmpOp, bound: i64| {
        ev.exec(&Op::Compare { op }, &[ids, &Tensor::scalar(bound)], span)
    };
    let below = cmp(ir::CmpOp::Lt, 0)?;
    let above = cmp(ir::CmpOp::Ge, n)?;
    let bad = ev.exec(
        &Op::Binary {
            op: ir::BinaryOp::Or,
        },
        &[&below, &above],
        span,
    )?;
    let all: Vec<usize> = (0..ids.shape().len()).collect();
    let count = ev.exec(
        &Op::Reduce {
            op: ir::ReduceOp::Sum,
            axes: all,
            keepdims: false,
        },
        &[&bad],
        span,
    )?;
    let ok = ev.exec(
        &Op::Compare { op: ir::CmpOp::Eq },
        &[&count, &Tensor::scalar(0i64)],
        span,
    )?;
    let message = if n <= 0 {
        "a label of `one_hot` is out of range: with n = 0 there are no classes".to_string()
    } else {
        format!(
            "a label of `one_hot` is out of range: valid labels are 0 to {}",
            n - 1
        )
    };
    ev.stage_assert(&ok, Some(&message), span)
}

/// `take(x, idx, axis?)`: NumPy's take, of the flattened `x` without `axis`.
pub(super) fn take(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    gather_like(ev, c, None)
}

/// `gather(x, idx, axis: 0)`: `take` along an axis.
pub(super) fn gather(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    gather_like(ev, c, Some(0))
}

/// The `gather` primitive along `axis` (of the flattened `x` when there is none); an index
/// out of range is E0901 with the index, the axis and its size, at the index argument.
fn gather_like(ev: &mut Eval<'_>, c: &Call, default_axis: Option<i64>) -> R<Value> {
    let x = c.tensor(0)?;
    let idx = c.tensor(1)?;
    if !idx.dtype.is_int() {
        return Err(errors::mismatch(
            format!(
                "`{}` needs integer indices, found {}",
                c.name,
                Value::Tensor(idx.clone()).describe()
            ),
            c.span(1),
        ));
    }
    let (base, axis, flattened) = match c.opt_int(ev, 2)?.or(default_axis) {
        Some(a) => (x.t.clone(), norm_axis(a, x.rank(), c.span(2))?, false),
        None => (ev.reshape(&x.t, &[x.t.numel()], c.span(0))?, 0, true),
    };
    let t = ev.exec_or(&Op::Gather { axis }, &[&base, &idx.t], c.span, |e| {
        let mut d = crate::eval::errors::from_device(e, c.span(1));
        if flattened && d.code == "E0901" {
            d.notes.push(format!(
                "`take` without `axis` indexes the {} elements of the flattened tensor",
                x.t.numel()
            ));
        }
        crate::eval::Flow::error(d)
    })?;
    Ok(with(x, t))
}
