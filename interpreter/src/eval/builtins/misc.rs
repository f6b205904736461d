//! `print assert allclose len shape dtype time batches`, iteration for
//! `for`, and the higher-order builtins (`map`, `map2`, `jit`; the differentiation ones are
//! routed to `grad`).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use devices::Tensor;
use ir::{DType, Op, Shape};
use lang::Span;
use lang::ast::Name;

use super::{Call, strong};
use crate::eval::Eval;
use crate::eval::errors::{self, R};
use crate::value::{Batches, TensorVal, Value, display};

/// `print(a, b, ...)`: the values separated by spaces, then a newline.
pub(super) fn print(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    if ev.staging() {
        // Staged code prints when the graph runs, on every call.
        let args: Vec<Value> = c.rest.iter().map(|(v, _)| v.clone()).collect();
        ev.stage_print(&args, c.span)?;
        return Ok(Value::Unit);
    }
    let parts: Vec<String> = c.rest.iter().map(|(v, _)| display(v)).collect();
    let line = parts.join(" ");
    let out = &mut ev.st.out;
    // A progress bar on the terminal steps aside while the line is written.
    crate::insight::progress::suspend(&ev.st.bar, || {
        writeln!(out, "{line}").and_then(|()| out.flush())
    })
    .map_err(|e| errors::bad_value(format!("cannot write the output: {e}"), c.span))?;
    Ok(Value::Unit)
}

/// `assert(cond, "message")`: an error at the call when `cond` is false.
pub(super) fn assert(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    if let Some(Value::Tensor(t)) = c.get(0)
        && t.t.staged_id().is_some()
    {
        let cond = ev.condition_tensor(&Value::Tensor(t.clone()), c.span(0))?;
        ev.stage_assert(&cond, c.string(1)?, c.span)?;
        return Ok(Value::Unit);
    }
    let cond = ev.scalar_bool(c.req(0)?, c.span(0))?;
    if cond {
        return Ok(Value::Unit);
    }
    let message = c.string(1)?;
    Err(errors::assertion(message, c.span))
}

/// `allclose(a, b, rtol: 1e-5, atol: 1e-8)`: NumPy's `|a - b| <= atol + rtol * |b|` on
/// every element (NaN is never close), over structures too.
pub(super) fn allclose(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let rtol = c.opt_float(ev, 2)?.unwrap_or(1e-5);
    let atol = c.opt_float(ev, 3)?.unwrap_or(1e-8);
    let (a, b) = (c.req(0)?, c.req(1)?);
    if crate::stage::has_staged(a) || crate::stage::has_staged(b) {
        return Ok(strong(close_staged(ev, a, b, rtol, atol, c.span)?));
    }
    let ok = close(ev, a, b, rtol, atol, c.span)?;
    Ok(strong(Tensor::scalar(ok)))
}

/// [`close`] on values known only when a staged graph runs: the same test, in primitives,
/// giving a `bool` scalar.
fn close_staged(
    ev: &Eval<'_>,
    a: &Value,
    b: &Value,
    rtol: f64,
    atol: f64,
    span: Span,
) -> R<Tensor> {
    use ir::{BinaryOp, CmpOp, ReduceOp, UnaryOp};
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    crate::stage::tensor_leaves(a, &mut xs);
    crate::stage::tensor_leaves(b, &mut ys);
    if xs.len() != ys.len() {
        return Ok(Tensor::scalar(false));
    }
    let bin = |op, p: &Tensor, q: &Tensor| ev.exec(&Op::Binary { op }, &[p, q], span);
    let mut all = Tensor::scalar(true);
    for (x, y) in xs.iter().zip(&ys) {
        let p = ev.cast(&x.t, DType::F64, span)?;
        let q = ev.cast(&y.t, DType::F64, span)?;
        let d = ev.exec(
            &Op::Unary { op: UnaryOp::Abs },
            &[&bin(BinaryOp::Sub, &p, &q)?],
            span,
        )?;
        let aq = ev.exec(&Op::Unary { op: UnaryOp::Abs }, &[&q], span)?;
        let tol = bin(BinaryOp::Mul, &aq, &Tensor::scalar(rtol))?;
        let tol = bin(BinaryOp::Add, &tol, &Tensor::scalar(atol))?;
        let within = ev.exec(&Op::Compare { op: CmpOp::Le }, &[&d, &tol], span)?;
        let equal = ev.exec(&Op::Compare { op: CmpOp::Eq }, &[&p, &q], span)?;
        let ok = bin(BinaryOp::Or, &within, &equal)?;
        let axes: Vec<usize> = (0..ok.rank()).collect();
        let ok = if axes.is_empty() || ok.numel() == 0 {
            ok
        } else {
            ev.exec(
                &Op::Reduce {
                    op: ReduceOp::Min,
                    axes,
                    keepdims: false,
                },
                &[&ok],
                span,
            )?
        };
        all = bin(BinaryOp::And, &all, &ok)?;
    }
    Ok(all)
}

fn close(ev: &Eval<'_>, a: &Value, b: &Value, rtol: f64, atol: f64, span: Span) -> R<bool> {
    match (a, b) {
        (Value::Tensor(x), Value::Tensor(y)) => {
            let shape = ir::broadcast_shapes(&Shape::known(x.shape()), &Shape::known(y.shape()))
                .map_err(|_| {
                    errors::mismatch("the shapes do not broadcast together".to_string(), span)
                })?;
            let dims = shape.to_known().unwrap_or_default();
            let read = |t: &Tensor| -> R<Vec<f64>> {
                let f = ev.cast(t, DType::F64, span)?;
                let b = ev.exec(
                    &Op::Broadcast {
                        shape: Shape::known(&dims),
                    },
                    &[&f],
                    span,
                )?;
                b.to_f64_vec()
                    .ok_or_else(|| errors::internal("a tensor could not be read", span))
            };
            let (xs, ys) = (read(&x.t)?, read(&y.t)?);
            Ok(xs.iter().zip(&ys).all(|(p, q)| {
                if p == q {
                    return true;
                }
                (p - q).abs() <= atol + rtol * q.abs()
            }))
        }
        (Value::Tuple(xs), Value::Tuple(ys)) if xs.len() == ys.len() => {
            for (x, y) in xs.iter().zip(ys.iter()) {
                if !close(ev, x, y, rtol, atol, span)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        (Value::Record(xs), Value::Record(ys)) if xs.len() == ys.len() => {
            for (k, x) in xs.iter() {
                let Some(y) = ys.get(k) else { return Ok(false) };
                if !close(ev, x, y, rtol, atol, span)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        (Value::Tuple(xs), Value::Tensor(_)) => {
            for x in xs.iter() {
                if !close(ev, x, b, rtol, atol, span)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        (Value::Record(xs), Value::Tensor(_)) => {
            for x in xs.values() {
                if !close(ev, x, b, rtol, atol, span)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        (Value::Tensor(_), Value::Tuple(_) | Value::Record(_)) => close(ev, b, a, rtol, atol, span),
        _ => Err(errors::mismatch(
            format!(
                "`allclose` compares tensors or structures of them, found {} and {}",
                a.describe(),
                b.describe()
            ),
            span,
        )),
    }
}

/// `len(x)`: the size of axis 0, a tuple's length, a string's characters.
/// `leaves(x)`: the tensors of a structure as one flat tuple, in the order `map` visits
/// them (tuple elements in order, record fields sorted by name). The tensors are the same
/// values, so a derivative or a staged graph sees them pass through unchanged.
pub(super) fn leaves(_: &mut Eval<'_>, c: &Call) -> R<Value> {
    fn walk(v: &Value, out: &mut Vec<Value>, span: Span) -> R<()> {
        match v {
            Value::Tensor(_) => out.push(v.clone()),
            Value::Tuple(items) => {
                for i in items.iter() {
                    walk(i, out, span)?;
                }
            }
            Value::Record(fields) => {
                for i in fields.values() {
                    walk(i, out, span)?;
                }
            }
            Value::Unit => {}
            other => {
                return Err(errors::mismatch(
                    format!(
                        "`leaves` takes tensors and tuples or records of them, found {} inside",
                        other.describe()
                    ),
                    span,
                ));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(c.req(0)?, &mut out, c.span(0))?;
    Ok(Value::Tuple(out.into()))
}

pub(super) fn len(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let n = match c.req(0)? {
        Value::Tensor(t) => match t.shape().first() {
            Some(&n) => n,
            None => {
                return Err(errors::mismatch(
                    "`len` needs at least one axis, found a scalar".to_string(),
                    c.span(0),
                ));
            }
        },
        Value::Tuple(items) => items.len(),
        Value::Unit => 0,
        Value::Str(s) => s.chars().count(),
        v @ (Value::Range(..) | Value::Batches(_) | Value::Progress(_)) => iter_len(v, c.span(0))?,
        other => {
            return Err(errors::mismatch(
                format!(
                    "`len` needs a tensor, tuple or string, found {}",
                    other.describe()
                ),
                c.span(0),
            ));
        }
    };
    let _ = ev;
    Ok(strong(Tensor::scalar(i64::try_from(n).unwrap_or(i64::MAX))))
}

/// `shape(x)`: `x.shape`.
pub(super) fn shape(_: &mut Eval<'_>, c: &Call) -> R<Value> {
    Ok(crate::eval::shape_value(c.tensor(0)?.shape()))
}

/// `ord(s)`: the Unicode code points of the string `s`, as `i64[n]` (n characters).
pub(super) fn ord(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let s = c.string(0)?.unwrap_or_default();
    let codes: Vec<i64> = s.chars().map(|ch| i64::from(u32::from(ch))).collect();
    let n = codes.len();
    Tensor::from_vec(codes, &[n])
        .map(strong)
        .map_err(|e| ev.device_error(e, c.span))
}

/// `chr(codes)`: the string whose characters have the code points `codes` (an integer
/// scalar for one character, or a vector). A value that is not a Unicode scalar value
/// (negative, above 0x10FFFF, or a surrogate) is an error naming its position. The codes
/// must be known: in a staged function only constants are, so `chr` of a computed tensor
/// is E0913 there (call it outside the staged function, on what it returns).
pub(super) fn chr(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let x = c.tensor(0)?;
    if x.t.staged_id().is_some() {
        return Err(crate::stage::staging_error(
            "`chr` makes a string, which must be known when the function is staged, from \
             values that are known only when the graph runs"
                .to_string(),
            c.span,
        ));
    }
    let codes = super::int_list(ev, c.req(0)?, c.span(0))?;
    let mut text = String::with_capacity(codes.len());
    for (i, &code) in codes.iter().enumerate() {
        let ch = u32::try_from(code)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| {
                errors::bad_value(
                    format!("`chr` needs Unicode code points, found {code} at position {i}"),
                    c.span(0),
                )
            })?;
        text.push(ch);
    }
    Ok(Value::Str(Arc::from(text)))
}

/// `dtype(x)`: `x.dtype`.
pub(super) fn dtype(_: &mut Eval<'_>, c: &Call) -> R<Value> {
    Ok(Value::Str(Arc::from(c.tensor(0)?.dtype.name())))
}

/// `time()`: wall-clock seconds since the Unix epoch, as an `f64` scalar, read after the
/// work queued on every device has finished (LANGUAGE.md §10), so that the difference of
/// two readings times finished work on a GPU too.
pub(super) fn time(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    ev.st
        .device
        .synchronize()
        .and_then(|()| devices::cuda::synchronize_all())
        .map_err(|e| ev.device_error(e, c.span))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    Ok(strong(Tensor::scalar(secs)))
}

/// `batches(data, size, shuffle: false, drop_last: false)`: slices of axis 0 of every
/// leaf; the last batch may be smaller. Shuffling draws one random key per row from the
/// session's stream and orders the rows by it.
pub(super) fn batches(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let data = c.req(0)?.clone();
    let size = c.opt_int(ev, 1)?.unwrap_or(0);
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| {
            errors::bad_value(
                format!("`batches` needs a batch size ≥ 1, found {size}"),
                c.span(1),
            )
        })?;
    let shuffle = c.flag(ev, 2)?.unwrap_or(false);
    let drop_last = c.flag(ev, 3)?.unwrap_or(false);
    let rows = super::data::leaf_rows(&data, "batches", c.span(0))?;
    let order = if shuffle {
        Some(super::data::permutation(ev, rows, c.span)?)
    } else {
        None
    };
    Ok(Value::Batches(Arc::new(Batches {
        data,
        size,
        rows,
        drop_last,
        order,
    })))
}

/// How many times `for` runs over `it`.
pub(crate) fn iter_len(it: &Value, span: Span) -> R<usize> {
    match it {
        Value::Progress(inner) => iter_len(inner, span),
        Value::Range(a, b) => Ok(usize::try_from(b.saturating_sub(*a)).unwrap_or(0)),
        Value::Tensor(t) => t
            .shape()
            .first()
            .copied()
            .ok_or_else(|| errors::mismatch("cannot iterate over a scalar".to_string(), span)),
        Value::Batches(b) => Ok(if b.drop_last {
            b.rows / b.size
        } else {
            b.rows.div_ceil(b.size)
        }),
        // Only `devices()` makes a tuple the checker lets `for` iterate (an `iter[str]`).
        Value::Tuple(items) => Ok(items.len()),
        other => Err(errors::mismatch(
            format!("cannot iterate over {}", other.describe()),
            span,
        )),
    }
}

/// The `i`-th item `for` binds when iterating over `it`.
pub(crate) fn iter_item(ev: &Eval<'_>, it: &Value, i: usize, span: Span) -> R<Value> {
    match it {
        Value::Progress(inner) => iter_item(ev, inner, i, span),
        Value::Range(a, _) => {
            let v = a.saturating_add(i64::try_from(i).unwrap_or(i64::MAX));
            Ok(strong(Tensor::scalar(v)))
        }
        Value::Tensor(t) => {
            let idx = crate::eval::index::Item::Value(
                strong(Tensor::scalar(i64::try_from(i).unwrap_or(0))),
                span,
            );
            ev.index(it, span, &[idx], span).map(|v| match v {
                Value::Tensor(row) => Value::Tensor(TensorVal {
                    weak: t.weak,
                    ..row
                }),
                other => other,
            })
        }
        Value::Batches(b) => {
            let start = i * b.size;
            let len = b.size.min(b.rows.saturating_sub(start));
            super::data::take_rows(ev, &b.data, b.order.as_ref(), start, len, span)
        }
        Value::Tuple(items) => items
            .get(i)
            .cloned()
            .ok_or_else(|| errors::internal("a tuple item out of range", span)),
        other => Err(errors::mismatch(
            format!("cannot iterate over {}", other.describe()),
            span,
        )),
    }
}

/// The builtins that take functions: `map(f, t)`, `map2(f, a, b)` and `jit(f)` run here;
/// the differentiation builtins are not available yet. `None` for other builtins.
pub(super) fn higher_order(
    ev: &mut Eval<'_>,
    name: &str,
    pos: &[(Value, Span)],
    named: &[(Name, Value, Span)],
    span: Span,
) -> Option<R<Value>> {
    let arg = |i: usize, key: &str| -> Option<Value> {
        pos.get(i).map(|(v, _)| v.clone()).or_else(|| {
            named
                .iter()
                .find(|(n, _, _)| &**n == key)
                .map(|(_, v, _)| v.clone())
        })
    };
    Some(match name {
        "map" => match (arg(0, "f"), arg(1, "t")) {
            (Some(f), Some(t)) => map_leaves(ev, &f, &[t], span),
            _ => Err(errors::mismatch(
                "`map` needs a function and a value".to_string(),
                span,
            )),
        },
        "map2" => match (arg(0, "f"), arg(1, "a"), arg(2, "b")) {
            (Some(f), Some(a), Some(b)) => map_leaves(ev, &f, &[a, b], span),
            _ => Err(errors::mismatch(
                "`map2` needs a function and two values".to_string(),
                span,
            )),
        },
        "jit" => match arg(0, "f") {
            Some(f @ (Value::Fn(_) | Value::Derived(_) | Value::Builtin(_))) => {
                let name = crate::stage::jit::fn_name(&f);
                Ok(Value::Jit(Arc::new(crate::stage::jit::Jitted {
                    f,
                    name,
                    parallel: None,
                })))
            }
            Some(f @ Value::Jit(_)) => Ok(f),
            _ => Err(errors::mismatch("`jit` needs a function".to_string(), span)),
        },
        "grad" | "value_and_grad" | "vjp" | "jvp" | "hessian" => {
            super::grad::builtin(ev, name, pos, named, span)
        }
        _ => return None,
    })
}

/// Applies `f` to the tensor leaves of `xs` (all of the same structure).
fn map_leaves(ev: &mut Eval<'_>, f: &Value, xs: &[Value], span: Span) -> R<Value> {
    match xs.first() {
        Some(Value::Tuple(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for i in 0..items.len() {
                let parts: Vec<Value> = xs
                    .iter()
                    .map(|x| match x {
                        Value::Tuple(t) => t.get(i).cloned().unwrap_or(Value::Unit),
                        other => other.clone(),
                    })
                    .collect();
                out.push(map_leaves(ev, f, &parts, span)?);
            }
            Ok(Value::Tuple(out.into()))
        }
        Some(Value::Record(fields)) => {
            let mut out = BTreeMap::new();
            for k in fields.keys() {
                let parts: Vec<Value> = xs
                    .iter()
                    .map(|x| match x {
                        Value::Record(r) => r.get(k).cloned().unwrap_or(Value::Unit),
                        other => other.clone(),
                    })
                    .collect();
                out.insert(k.clone(), map_leaves(ev, f, &parts, span)?);
            }
            Ok(Value::Record(Arc::new(out)))
        }
        _ => {
            let args = xs.iter().map(|x| (x.clone(), span)).collect();
            ev.call(f, args, Vec::new(), span)
        }
    }
}
