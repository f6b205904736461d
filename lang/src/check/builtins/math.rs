//! Elementwise builtins, casts and reductions.

use ir::{DType, Dim, Op, Shape, UnaryKind, UnaryOp};

use super::{Args, float_of, tensor};
use crate::check::ops::{BinCtx, Elementwise, RuleResult};
use crate::check::ty::{Const, IntVal, TensorTy, Ty};
use crate::diagnostics::Diagnostic;

/// `exp(x)`, `relu(x)`, `isnan(x)`, ...: the `unary` primitive of the same name. Float
/// functions of integers compute in `f32`.
pub(super) fn unary(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let Some(op) = UnaryOp::from_name(a.b.name) else {
        return Ok(Ty::Unknown);
    };
    let dtype = match op.kind() {
        UnaryKind::Float => float_of(x.dtype),
        _ => x.dtype,
    };
    let Some(shape) = &x.shape else {
        let out = match op.kind() {
            UnaryKind::Predicate => DType::Bool,
            _ => dtype,
        };
        return Ok(tensor(out, None));
    };
    let input = ir::TensorType::new(dtype, shape.clone());
    match ir::infer(&Op::Unary { op }, std::slice::from_ref(&input)) {
        Ok(t) => Ok(Ty::Tensor(TensorTy {
            dtype: t.dtype,
            shape: Some(t.shape),
            weak: x.weak,
            value: None,
        })),
        Err(e) => {
            let mut d = a.infer_err(e, &[a.span(0)]);
            if x.dtype == DType::Bool {
                d.hints
                    .push(format!("convert it first: `i64({})`", quote0(a)));
            } else if op.kind() == UnaryKind::Logical {
                d.hints.push(format!("compare first: `{} != 0`", quote0(a)));
            }
            Err(d)
        }
    }
}

fn quote0<'s>(a: &Args<'s>) -> &'s str {
    crate::check::ops::quote(a.src, a.span(0))
}

/// `floor_div`, `maximum`, `minimum`, `logical_and`, `logical_or`: like the operators.
pub(super) fn binary(a: &Args<'_>) -> RuleResult<Ty> {
    let (x, y) = (a.tensor(0)?, a.tensor(1)?);
    let op = match a.b.name {
        "floor_div" => Elementwise::FloorDiv,
        "maximum" => Elementwise::MinMax("maximum"),
        "minimum" => Elementwise::MinMax("minimum"),
        "logical_and" => Elementwise::Logical("logical_and"),
        _ => Elementwise::Logical("logical_or"),
    };
    let ctx = BinCtx {
        src: a.src,
        op,
        lhs_span: a.span(0),
        rhs_span: a.span(1),
    };
    ctx.tensors(x, y).map(Ty::Tensor)
}

/// `f32(x)`, `i64(x)`, ...: the same shape in another dtype (over structures too).
pub(super) fn cast(a: &Args<'_>) -> RuleResult<Ty> {
    let dtype = DType::from_name(a.b.name).unwrap_or(DType::F32);
    let x = a.req(0)?;
    cast_ty(a, &x.ty, dtype)
}

fn cast_ty(a: &Args<'_>, t: &Ty, dtype: DType) -> RuleResult<Ty> {
    Ok(match t {
        Ty::Tensor(t) => {
            // Integer values survive casts between integers and to floats.
            let value = match (&t.value, dtype) {
                (Some(Const::Ints(v)), d) if d.is_int() && t.dtype.is_int() => {
                    Some(Const::Ints(v.clone()))
                }
                (Some(Const::Ints(v)), d) if d.is_float() && t.is_scalar() => match v.first() {
                    Some(IntVal::Lit(n)) => Some(Const::Float(*n as f64)),
                    _ => None,
                },
                (Some(Const::Float(f)), d) if d.is_float() => Some(Const::Float(*f)),
                (Some(Const::Bool(b)), DType::Bool) => Some(Const::Bool(*b)),
                _ => None,
            };
            Ty::Tensor(TensorTy {
                dtype,
                shape: t.shape.clone(),
                weak: false,
                value,
            })
        }
        Ty::Tuple(items) => Ty::Tuple(
            items
                .iter()
                .map(|i| cast_ty(a, i, dtype))
                .collect::<RuleResult<_>>()?,
        ),
        Ty::Record(fields) => Ty::Record(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), cast_ty(a, v, dtype)?)))
                .collect::<RuleResult<_>>()?,
        ),
        Ty::Unknown => Ty::Unknown,
        _ => {
            let x = a.req(0)?;
            return Err(a.wrong_kind(0, x, "a tensor"));
        }
    })
}

/// `where(cond, x, y)`: `cond` is bool; `x` and `y` promote like `+`; all three broadcast.
pub(super) fn where_(a: &Args<'_>) -> RuleResult<Ty> {
    let (c, x, y) = (a.tensor(0)?, a.tensor(1)?, a.tensor(2)?);
    if c.dtype != DType::Bool {
        return Err(Diagnostic::error(
            "E0202",
            format!("`where` needs a bool condition, found {c}"),
            a.span(0),
        )
        .with_primary_label(format!("is {c}"))
        .with_hint(format!(
            "compare first: `{} != 0`",
            crate::check::ops::quote(a.src, a.span(0))
        ))
        .into());
    }
    // The values combine like `x + y` (promotion, broadcasting), minus the arithmetic.
    let ctx = BinCtx {
        src: a.src,
        op: Elementwise::MinMax("where"),
        lhs_span: a.span(1),
        rhs_span: a.span(2),
    };
    let mut xy = ctx.tensors(x, y)?;
    xy.value = None;
    let cond_ctx = BinCtx {
        src: a.src,
        op: Elementwise::Logical("where"),
        lhs_span: a.span(0),
        rhs_span: a.span(1),
    };
    // Broadcast the condition's shape against the values' through a bool stand-in.
    let stand_in = TensorTy::new(DType::Bool, xy.shape.clone());
    let shape = cond_ctx.tensors(c, &stand_in)?.shape;
    Ok(Ty::Tensor(TensorTy {
        shape,
        weak: xy.weak && c.weak,
        ..xy
    }))
}

/// `clip(x, lo, hi)`: `x`'s type; the bounds broadcast into it.
pub(super) fn clip(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let mut out = x.clone();
    out.value = None;
    for i in [1, 2] {
        let bound = a.tensor(i)?;
        let ctx = BinCtx {
            src: a.src,
            op: Elementwise::MinMax("clip"),
            lhs_span: a.span(0),
            rhs_span: a.span(i),
        };
        let r = ctx.tensors(&out, bound)?;
        out = TensorTy { value: None, ..r };
    }
    Ok(Ty::Tensor(out))
}

/// The axes named by a reduction's `axis:` argument (sorted), or `None` for all of them.
/// Without `axis:`, `logsumexp` reduces the last axis (LANGUAGE.md §10, like `softmax`; JAX
/// would reduce all of them), and nothing for a scalar, which is its own logsumexp.
fn reduce_axes(a: &Args<'_>, x: &TensorTy, rank: usize) -> RuleResult<Option<Vec<usize>>> {
    let Some(arg) = a.get(1) else {
        if a.b.name == "logsumexp" {
            return Ok(Some(rank.checked_sub(1).into_iter().collect()));
        }
        return Ok(None);
    };
    let list = match &arg.ty {
        Ty::Tensor(t) if t.is_scalar() => vec![a.known_int(1)?.unwrap_or(0)],
        Ty::Tensor(_) | Ty::Tuple(_) | Ty::Unit => a.int_list(1)?.unwrap_or_default(),
        _ => return Err(a.wrong_kind(1, arg, "an integer or a tuple of integers")),
    };
    let mut axes = Vec::with_capacity(list.len());
    for v in list {
        let ax = a.norm_axis(1, v, rank, x)?;
        if axes.contains(&ax) {
            return Err(Diagnostic::error(
                "E0810",
                format!("axis {ax} is named twice in `{}`", a.b.name),
                arg.span,
            )
            .with_primary_label("repeated axis")
            .into());
        }
        axes.push(ax);
    }
    axes.sort_unstable();
    Ok(Some(axes))
}

fn reduce_shape(shape: &Shape, axes: Option<&[usize]>, keepdims: bool) -> Shape {
    Shape(
        shape
            .dims()
            .iter()
            .enumerate()
            .filter_map(
                |(i, d)| match (axes.is_none_or(|ax| ax.contains(&i)), keepdims) {
                    (false, _) => Some(d.clone()),
                    (true, true) => Some(Dim::Known(1)),
                    (true, false) => None,
                },
            )
            .collect(),
    )
}

/// `sum mean prod max min var std logsumexp all any` with `axis:` (an int or a tuple of
/// them, negatives from the end; all axes when absent, but the last one for `logsumexp`)
/// and `keepdims:`.
pub(super) fn reduce(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let keepdims = a.flag(2)?.unwrap_or(false);
    let dtype = match a.b.name {
        "sum" | "prod" if x.dtype == DType::Bool => DType::I64,
        "mean" | "var" | "std" | "logsumexp" => float_of(x.dtype),
        "all" | "any" => DType::Bool,
        _ => x.dtype,
    };
    let Some(shape) = &x.shape else {
        // Without `axis` and `keepdims` the result is a scalar whatever the rank, except for
        // `logsumexp`, which then reduces only the last axis of a rank not known here.
        let s = (a.get(1).is_none() && !keepdims && a.b.name != "logsumexp").then(Shape::scalar);
        return Ok(tensor(dtype, s));
    };
    let axes = reduce_axes(a, x, shape.rank())?;
    if matches!(a.b.name, "max" | "min")
        && let Some(ax) =
            shape.dims().iter().enumerate().position(|(i, d)| {
                *d == Dim::Known(0) && axes.as_ref().is_none_or(|v| v.contains(&i))
            })
    {
        return Err(Diagnostic::error(
            "E0307",
            format!(
                "`{}` of an empty axis: axis {ax} of {x} has size 0",
                a.b.name
            ),
            a.span(0),
        )
        .with_primary_label(format!("is {x}"))
        .into());
    }
    Ok(tensor(
        dtype,
        Some(reduce_shape(shape, axes.as_deref(), keepdims)),
    ))
}

/// `argmax(x, axis:)`, `argmin`: `i64` indices; without `axis`, of the flattened tensor.
pub(super) fn arg_reduce(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let keepdims = a.flag(2)?.unwrap_or(false);
    let Some(shape) = &x.shape else {
        return Ok(tensor(
            DType::I64,
            (a.get(1).is_none() && !keepdims).then(Shape::scalar),
        ));
    };
    let axis = a.axis(1, x, shape.rank())?;
    if let Some(ax) = axis
        && shape.dims().get(ax) == Some(&Dim::Known(0))
    {
        return Err(Diagnostic::error(
            "E0307",
            format!(
                "`{}` of an empty axis: axis {ax} of {x} has size 0",
                a.b.name
            ),
            a.span(0),
        )
        .with_primary_label(format!("is {x}"))
        .into());
    }
    let axes = axis.map(|ax| vec![ax]);
    Ok(tensor(
        DType::I64,
        Some(reduce_shape(shape, axes.as_deref(), keepdims)),
    ))
}
