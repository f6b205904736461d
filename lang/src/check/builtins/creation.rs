//! Creation builtins: `zeros ones full arange linspace eye rand randn randint zeros_like
//! ones_like`.

use ir::{DType, Dim, Shape};

use super::{Args, IntArg, tensor};
use crate::check::ops::{RuleResult, scalar_float};
use crate::check::ty::{Const, IntVal, TensorTy, Ty};
use crate::diagnostics::Diagnostic;

/// `zeros(shape, dtype: "f32")`, `ones(...)`.
pub(super) fn filled(a: &Args<'_>) -> RuleResult<Ty> {
    let shape = a.shape(0)?;
    Ok(tensor(a.dtype(1, DType::F32)?, shape))
}

/// `full(shape, value, dtype:)`: the value's dtype unless one is named.
pub(super) fn full(a: &Args<'_>) -> RuleResult<Ty> {
    let shape = a.shape(0)?;
    let value = a.number(1)?.or_else(|| {
        a.get(1)
            .and_then(|v| v.ty.as_tensor())
            .filter(|t| t.dtype == DType::Bool && t.is_scalar())
    });
    let Some(v) = value else {
        let arg = a.req(1)?;
        return Err(a.wrong_kind(1, arg, "a scalar"));
    };
    Ok(tensor(a.dtype(2, v.dtype)?, shape))
}

/// `rand(shape)`, `randn(shape)`: floats.
pub(super) fn random(a: &Args<'_>) -> RuleResult<Ty> {
    let shape = a.shape(0)?;
    let dtype = a.dtype(1, DType::F32)?;
    if !dtype.is_float() {
        return Err(Diagnostic::error(
            "E0807",
            format!("`{}` draws floats, not {dtype}", a.b.name),
            a.span(1),
        )
        .with_primary_label(format!("is {dtype}"))
        .with_hint("draw integers with `randint(low, high, shape)`")
        .into());
    }
    Ok(tensor(dtype, shape))
}

/// `randint(low, high, shape)`: `i64` by default.
pub(super) fn randint(a: &Args<'_>) -> RuleResult<Ty> {
    a.int(0)?;
    a.int(1)?;
    let shape = a.shape(2)?;
    let dtype = a.dtype(3, DType::I64)?;
    if !dtype.is_int() {
        return Err(Diagnostic::error(
            "E0807",
            format!("`randint` draws integers, not {dtype}"),
            a.span(3),
        )
        .with_primary_label(format!("is {dtype}"))
        .into());
    }
    Ok(tensor(dtype, shape))
}

/// `zeros_like(x)`, `ones_like(x)`: the same type (over structures too), strong.
pub(super) fn like(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.req(0)?;
    let dtype = match a.get(1) {
        Some(_) => Some(a.dtype(1, DType::F32)?),
        None => None,
    };
    like_ty(a, &x.ty, dtype)
}

fn like_ty(a: &Args<'_>, t: &Ty, dtype: Option<DType>) -> RuleResult<Ty> {
    Ok(match t {
        Ty::Tensor(t) => tensor(dtype.unwrap_or(t.dtype), t.shape.clone()),
        Ty::Tuple(items) => Ty::Tuple(
            items
                .iter()
                .map(|i| like_ty(a, i, dtype))
                .collect::<RuleResult<_>>()?,
        ),
        Ty::Record(fields) => Ty::Record(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), like_ty(a, v, dtype)?)))
                .collect::<RuleResult<_>>()?,
        ),
        Ty::Unknown => Ty::Unknown,
        _ => {
            let x = a.req(0)?;
            return Err(a.wrong_kind(0, x, "a tensor, tuple or record"));
        }
    })
}

/// `arange(stop)` or `arange(start, stop, step)`: integers unless a bound is a float;
/// the length is known when the bounds are.
pub(super) fn arange(a: &Args<'_>) -> RuleResult<Ty> {
    // With one argument, it is the stop.
    let (start_i, stop_i) = if a.get(1).is_some() {
        (Some(0), 1)
    } else {
        (None, 0)
    };
    let mut float = false;
    let mut vals: [Option<f64>; 3] = [Some(0.0), None, Some(1.0)];
    let mut sym: Option<IntVal> = None;
    for (slot, i) in [(0usize, start_i), (1, Some(stop_i)), (2, Some(2))] {
        let Some(i) = i else { continue };
        let Some(t) = a.number(i)? else { continue };
        if t.dtype.is_float() {
            float = true;
        }
        let v = scalar_float(t);
        if slot == 1
            && v.is_none()
            && let Some(Const::Ints(iv)) = &t.value
        {
            sym = iv.first().cloned();
        }
        if let Some(s) = vals.get_mut(slot) {
            *s = v;
        }
    }
    if let [_, _, Some(step)] = vals
        && step == 0.0
    {
        return Err(
            Diagnostic::error("E0807", "`arange` cannot step by 0", a.span(2))
                .with_primary_label("step 0")
                .into(),
        );
    }
    let len = match vals {
        [Some(start), Some(stop), Some(step)] => {
            let n = ((stop - start) / step).ceil().max(0.0);
            if n.is_finite() && n < 1e15 {
                Dim::Known(n as usize)
            } else {
                Dim::unknown()
            }
        }
        // `arange(n)` with `n` a symbolic size (`x.shape.0`) has that size.
        [Some(start), None, Some(step)] if start == 0.0 && step == 1.0 => {
            sym.and_then(|s| s.to_dim()).unwrap_or_else(Dim::unknown)
        }
        _ => Dim::unknown(),
    };
    let default = if float { DType::F32 } else { DType::I64 };
    Ok(tensor(a.dtype(3, default)?, Some(Shape(vec![len]))))
}

/// `linspace(start, stop, num)`: `f32[num]`.
pub(super) fn linspace(a: &Args<'_>) -> RuleResult<Ty> {
    a.number(0)?;
    a.number(1)?;
    let len = match a.int(2)? {
        IntArg::Known(v) => v.to_dim().ok_or_else(|| {
            Box::new(
                Diagnostic::error("E0807", "`linspace` needs `num` ≥ 0", a.span(2))
                    .with_primary_label("negative"),
            )
        })?,
        _ => Dim::unknown(),
    };
    Ok(tensor(a.dtype(3, DType::F32)?, Some(Shape(vec![len]))))
}

/// `eye(n, m?)`: `f32[n, m]`.
pub(super) fn eye(a: &Args<'_>) -> RuleResult<Ty> {
    let dim = |i: usize| -> RuleResult<Option<Dim>> {
        Ok(match a.int(i)? {
            IntArg::Absent => None,
            IntArg::Unknown => Some(Dim::unknown()),
            IntArg::Known(v) => Some(v.to_dim().ok_or_else(|| {
                Box::new(
                    Diagnostic::error("E0807", "`eye` needs a size ≥ 0", a.span(i))
                        .with_primary_label("negative"),
                )
            })?),
        })
    };
    let n = dim(0)?.unwrap_or_else(Dim::unknown);
    let m = dim(1)?.unwrap_or_else(|| n.clone());
    let t = TensorTy::new(a.dtype(2, DType::F32)?, Some(Shape(vec![n, m])));
    Ok(Ty::Tensor(t))
}
