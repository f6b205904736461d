//! Creation: `zeros ones full arange linspace eye rand randn randint zeros_like ones_like
//! seed`.
//!
//! Random draws come from the `random` primitive with the key `(seed, offset)`; each draw
//! advances the offset by the number of elements drawn, so the stream after `seed(n)` is
//! the same whatever the tensors' shapes are split into.

use std::collections::BTreeMap;
use std::sync::Arc;

use devices::Tensor;
use ir::{BinaryOp, CmpOp, DType, Op, RandomOp, Shape};
use lang::Span;

use super::{Call, strong};
use crate::eval::Eval;
use crate::eval::errors::{self, R};
use crate::value::Value;

/// A tensor of `shape` filled with `value` in `dtype`.
fn fill(ev: &Eval<'_>, shape: &[usize], dtype: DType, value: f64, span: Span) -> R<Tensor> {
    ev.exec(
        &Op::Full {
            shape: Shape::known(shape),
            dtype,
            value,
        },
        &[],
        span,
    )
}

/// `zeros(shape, dtype: "f32")`, `ones(...)`.
pub(super) fn filled(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let shape = c.shape(ev, 0)?;
    let dtype = c.dtype(1, DType::F32)?;
    let value = if c.name == "ones" { 1.0 } else { 0.0 };
    Ok(strong(fill(ev, &shape, dtype, value, c.span)?))
}

/// `full(shape, value, dtype:)`: the value's dtype unless one is named. The value is
/// broadcast rather than converted through `f64`, so large `i64` values stay exact.
pub(super) fn full(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let shape = c.shape(ev, 0)?;
    let v = c.tensor(1)?;
    let dtype = c.dtype(2, v.dtype)?;
    let scalar = ev.cast(&v.t, dtype, c.span(1))?;
    let t = ev.exec(
        &Op::Broadcast {
            shape: Shape::known(&shape),
        },
        &[&scalar],
        c.span,
    )?;
    // A broadcast is a view of one element; give the result its own storage so that
    // later kernels see an ordinary tensor (and the size limit applies).
    let t = ev.exec(
        &Op::Reshape {
            shape: Shape::known(&shape),
        },
        &[&t],
        c.span,
    )?;
    Ok(strong(t))
}

/// `zeros_like(x, dtype?)`, `ones_like`: over structures too.
pub(super) fn like(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let dtype = match c.get(1) {
        Some(_) => Some(c.dtype(1, DType::F32)?),
        None => None,
    };
    let value = if c.name == "ones_like" { 1.0 } else { 0.0 };
    like_value(ev, c.req(0)?, dtype, value, c.span)
}

fn like_value(ev: &Eval<'_>, v: &Value, dtype: Option<DType>, value: f64, span: Span) -> R<Value> {
    match v {
        Value::Tensor(t) => Ok(strong(fill(
            ev,
            t.shape(),
            dtype.unwrap_or(t.dtype),
            value,
            span,
        )?)),
        Value::Tuple(items) => {
            let mut out = Vec::with_capacity(items.len());
            for x in items.iter() {
                out.push(like_value(ev, x, dtype, value, span)?);
            }
            Ok(Value::Tuple(out.into()))
        }
        Value::Record(fields) => {
            let mut out = BTreeMap::new();
            for (k, x) in fields.iter() {
                out.insert(k.clone(), like_value(ev, x, dtype, value, span)?);
            }
            Ok(Value::Record(Arc::new(out)))
        }
        other => Err(errors::mismatch(
            format!(
                "expected a tensor, tuple or record, found {}",
                other.describe()
            ),
            span,
        )),
    }
}

/// `arange(stop)` or `arange(start, stop, step)`: integers unless a bound is a float.
pub(super) fn arange(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    // With one argument, it is the stop.
    let (start_i, stop_i) = if c.get(1).is_some() {
        (Some(0), 1)
    } else {
        (None, 0)
    };
    let mut float = false;
    let mut read = |i: Option<usize>, default: f64| -> R<f64> {
        let Some(i) = i else { return Ok(default) };
        let Some(v) = c.get(i) else {
            return Ok(default);
        };
        if let Value::Tensor(t) = v
            && t.dtype.is_float()
        {
            float = true;
        }
        super::scalar_f64(ev, v, c.span(i))
    };
    let start = read(start_i, 0.0)?;
    let stop = read(Some(stop_i), 0.0)?;
    let step = read(Some(2), 1.0)?;
    if step == 0.0 {
        return Err(errors::bad_value(
            "`arange` cannot step by 0".to_string(),
            c.span(2),
        ));
    }
    let n = ((stop - start) / step).ceil().max(0.0);
    if !n.is_finite() || n > 1e15 {
        return Err(errors::bad_value(
            format!("`arange` would make {n} elements"),
            c.span,
        ));
    }
    let n = n as usize;
    let default = if float { DType::F32 } else { DType::I64 };
    let dtype = c.dtype(3, default)?;
    // Count in the widest dtype of the kind, then scale and shift, then convert once.
    let work = if float || dtype.is_float() {
        DType::F64
    } else {
        DType::I64
    };
    let iota = ev.exec(
        &Op::Iota {
            shape: Shape::known(&[n]),
            axis: 0,
            dtype: work,
        },
        &[],
        c.span,
    )?;
    let scalar = |x: f64| -> Tensor {
        if work == DType::I64 {
            Tensor::scalar(x as i64)
        } else {
            Tensor::scalar(x)
        }
    };
    let scaled = ev.exec(
        &Op::Binary { op: BinaryOp::Mul },
        &[&iota, &scalar(step)],
        c.span,
    )?;
    let shifted = ev.exec(
        &Op::Binary { op: BinaryOp::Add },
        &[&scaled, &scalar(start)],
        c.span,
    )?;
    Ok(strong(ev.cast(&shifted, dtype, c.span)?))
}

/// `linspace(start, stop, num)`: `num` evenly spaced values, both ends included.
pub(super) fn linspace(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let start = c.opt_float(ev, 0)?.unwrap_or(0.0);
    let stop = c.opt_float(ev, 1)?.unwrap_or(0.0);
    let num = c.opt_int(ev, 2)?.unwrap_or(0);
    let n = usize::try_from(num).map_err(|_| {
        errors::bad_value(
            format!("`linspace` needs `num` ≥ 0, found {num}"),
            c.span(2),
        )
    })?;
    let dtype = c.dtype(3, DType::F32)?;
    let step = if n > 1 {
        (stop - start) / (n - 1) as f64
    } else {
        0.0
    };
    let iota = ev.exec(
        &Op::Iota {
            shape: Shape::known(&[n]),
            axis: 0,
            dtype: DType::F64,
        },
        &[],
        c.span,
    )?;
    let scaled = ev.exec(
        &Op::Binary { op: BinaryOp::Mul },
        &[&iota, &Tensor::scalar(step)],
        c.span,
    )?;
    let shifted = ev.exec(
        &Op::Binary { op: BinaryOp::Add },
        &[&scaled, &Tensor::scalar(start)],
        c.span,
    )?;
    Ok(strong(ev.cast(&shifted, dtype, c.span)?))
}

/// `eye(n, m?)`: ones on the diagonal.
pub(super) fn eye(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let size = |i: usize, v: i64| {
        usize::try_from(v)
            .map_err(|_| errors::bad_value(format!("`eye` needs a size ≥ 0, found {v}"), c.span(i)))
    };
    let n = size(0, c.opt_int(ev, 0)?.unwrap_or(0))?;
    let m = match c.opt_int(ev, 1)? {
        Some(v) => size(1, v)?,
        None => n,
    };
    let dtype = c.dtype(2, DType::F32)?;
    let iota = |axis: usize| {
        ev.exec(
            &Op::Iota {
                shape: Shape::known(&[n, m]),
                axis,
                dtype: DType::I64,
            },
            &[],
            c.span,
        )
    };
    let (rows, cols) = (iota(0)?, iota(1)?);
    let diag = ev.exec(&Op::Compare { op: CmpOp::Eq }, &[&rows, &cols], c.span)?;
    Ok(strong(ev.cast(&diag, dtype, c.span)?))
}

/// Draws `shape` numbers from the session's stream and advances it.
pub(crate) fn draw(
    ev: &mut Eval<'_>,
    op: RandomOp,
    shape: &[usize],
    dtype: DType,
    span: Span,
) -> R<Tensor> {
    let n = i64::try_from(shape.iter().product::<usize>()).unwrap_or(i64::MAX);
    if ev.staging() {
        // The key comes from the graph's stream, which the run takes from the session's.
        let key = ev.stage_rng_key(n, span)?;
        return ev.exec(
            &Op::Random {
                op,
                shape: Shape::known(shape),
                dtype,
            },
            &[&key],
            span,
        );
    }
    let key = Tensor::from_vec(vec![ev.st.seed, ev.st.offset], &[2])
        .map_err(|e| ev.device_error(e, span))?;
    let t = ev.exec(
        &Op::Random {
            op,
            shape: Shape::known(shape),
            dtype,
        },
        &[&key],
        span,
    )?;
    ev.st.offset = ev.st.offset.wrapping_add(n);
    Ok(t)
}

/// `rand(shape)` (uniform in [0, 1)) and `randn(shape)` (standard normal).
pub(super) fn random(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let shape = c.shape(ev, 0)?;
    let dtype = c.dtype(1, DType::F32)?;
    let op = if c.name == "randn" {
        RandomOp::Normal
    } else {
        RandomOp::Uniform
    };
    Ok(strong(draw(ev, op, &shape, dtype, c.span)?))
}

/// `randint(low, high, shape)`: integers uniform in `[low, high)`.
pub(super) fn randint(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let low = c.opt_int(ev, 0)?.unwrap_or(0);
    let high = c.opt_int(ev, 1)?.unwrap_or(0);
    if high <= low {
        return Err(errors::bad_value(
            format!("`randint` needs `low` < `high`, found {low} and {high}"),
            c.span,
        ));
    }
    let shape = c.shape(ev, 2)?;
    let dtype = c.dtype(3, DType::I64)?;
    let u = draw(ev, RandomOp::Uniform, &shape, DType::F64, c.span)?;
    let width = (high - low) as f64;
    let scaled = ev.exec(
        &Op::Binary { op: BinaryOp::Mul },
        &[&u, &Tensor::scalar(width)],
        c.span,
    )?;
    let floored = ev.exec(
        &Op::Unary {
            op: ir::UnaryOp::Floor,
        },
        &[&scaled],
        c.span,
    )?;
    let ints = ev.cast(&floored, DType::I64, c.span)?;
    // `u` is below 1, but rounding in `u * width` could still reach `width`.
    let capped = ev.exec(
        &Op::Binary {
            op: BinaryOp::Minimum,
        },
        &[&ints, &Tensor::scalar(high - low - 1)],
        c.span,
    )?;
    let shifted = ev.exec(
        &Op::Binary { op: BinaryOp::Add },
        &[&capped, &Tensor::scalar(low)],
        c.span,
    )?;
    Ok(strong(ev.cast(&shifted, dtype, c.span)?))
}

/// `seed(n)`: restarts the random stream.
pub(super) fn seed(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    if ev.staging() {
        let n = c.opt_int(ev, 0)?.unwrap_or(0);
        ev.stage_seed(n, c.span)?;
        return Ok(Value::Unit);
    }
    ev.st.seed = c.opt_int(ev, 0)?.unwrap_or(0);
    ev.st.offset = 0;
    Ok(Value::Unit)
}
