//! Shape builtins: `reshape transpose expand_dims squeeze concat stack split flatten
//! broadcast_to pad one_hot take gather`.

use ir::{DType, Dim, Op, Shape};

use super::{Args, ir_ty, join_dtype, tensor};
use crate::check::ops::{RuleResult, quote};
use crate::check::ty::{TensorTy, Ty};
use crate::diagnostics::Diagnostic;

/// `reshape(x, shape)`: one `-1` is resolved when the other sizes are known.
pub(super) fn reshape(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let arg = a.req(1)?;
    // The shape may hold one -1, which `Args::shape` refuses: read the raw integers.
    let raw: Option<Vec<Option<i64>>> = match &arg.ty {
        Ty::Tensor(t) if t.dtype.is_int() => match &t.value {
            Some(crate::check::ty::Const::Ints(v)) => Some(
                v.iter()
                    .map(|i| match i {
                        crate::check::ty::IntVal::Lit(n) => Some(*n),
                        crate::check::ty::IntVal::Sym(_) => None,
                    })
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    };
    let has_minus_one = raw.as_ref().is_some_and(|v| v.contains(&Some(-1)));
    let target = if has_minus_one {
        let v = raw.unwrap_or_default();
        if v.iter().filter(|d| **d == Some(-1)).count() > 1 {
            return Err(Diagnostic::error(
                "E0807",
                "`reshape` can infer only one size: the shape holds more than one -1",
                arg.span,
            )
            .with_primary_label("more than one -1")
            .into());
        }
        let syms = match &arg.ty {
            Ty::Tensor(TensorTy {
                value: Some(crate::check::ty::Const::Ints(iv)),
                ..
            }) => iv.clone(),
            _ => Vec::new(),
        };
        let mut dims = Vec::with_capacity(v.len());
        for (d, iv) in v.iter().zip(
            syms.iter()
                .chain(std::iter::repeat(&crate::check::ty::IntVal::Lit(0))),
        ) {
            dims.push(match d {
                Some(-1) => Dim::unknown(),
                _ => iv.to_dim().ok_or_else(|| {
                    Box::new(
                        Diagnostic::error(
                            "E0807",
                            "a shape cannot hold a negative size other than -1",
                            arg.span,
                        )
                        .with_primary_label(format!("is {}", arg.ty)),
                    )
                })?,
            });
        }
        // Resolve the -1 when every other size and the element count are known.
        let total = x.shape.as_ref().and_then(Shape::numel);
        let others: Option<usize> = dims
            .iter()
            .filter(|d| !d.is_unknown())
            .map(Dim::known)
            .try_fold(1usize, |acc, d| d.and_then(|d| acc.checked_mul(d)));
        if let (Some(total), Some(others)) = (total, others) {
            if others == 0 || total % others != 0 {
                return Err(count_err(a, x, &Shape(dims), arg.span));
            }
            if let Some(d) = dims.iter_mut().find(|d| d.is_unknown()) {
                *d = Dim::Known(total / others);
            }
        }
        Some(Shape(dims))
    } else {
        a.shape(1)?
    };
    let (Some(target), Some(input)) = (target, ir_ty(x)) else {
        return Ok(tensor(x.dtype, None));
    };
    match ir::infer(
        &Op::Reshape {
            shape: target.clone(),
        },
        &[input],
    ) {
        Ok(t) => Ok(tensor(t.dtype, Some(t.shape))),
        Err(_) => Err(count_err(a, x, &target, arg.span)),
    }
}

fn count_err(a: &Args<'_>, x: &TensorTy, target: &Shape, at: crate::span::Span) -> Box<Diagnostic> {
    let count = |s: &Shape| {
        s.numel()
            .map_or_else(|| "a different number of".to_string(), |n| n.to_string())
    };
    let from = x.shape.as_ref().map_or_else(String::new, count);
    Diagnostic::error(
        "E0308",
        format!(
            "cannot reshape {x} ({from} elements) into {target} ({} elements)",
            count(target)
        ),
        at,
    )
    .with_primary_label(format!("has {} elements", count(target)))
    .with_label(a.span(0), format!("has {from} elements"))
    .with_hint("a reshape keeps the number of elements; one size may be -1 to infer it")
    .into()
}

/// `transpose(x, perm?)`: reverses the axes without `perm`.
pub(super) fn transpose(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let Some(shape) = &x.shape else {
        return Ok(tensor(x.dtype, None));
    };
    let r = shape.rank();
    let perm: Vec<usize> = match a.int_list(1)? {
        None => (0..r).rev().collect(),
        Some(p) => {
            let mut out = Vec::with_capacity(p.len());
            for v in p {
                out.push(a.norm_axis(1, v, r, x)?);
            }
            out
        }
    };
    let input = ir::TensorType::new(x.dtype, shape.clone());
    match ir::infer(&Op::Transpose { perm: perm.clone() }, &[input]) {
        Ok(t) => Ok(tensor(t.dtype, Some(t.shape))),
        Err(_) => Err(Diagnostic::error(
            "E0807",
            format!("{perm:?} is not a permutation of the {r} axes of {x}"),
            a.span(1),
        )
        .with_primary_label("not a permutation")
        .with_label(a.span(0), format!("is {x}"))
        .into()),
    }
}

/// `expand_dims(x, axis)`: a new axis of size 1 (axis may be the rank: a new last axis).
pub(super) fn expand_dims(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let Some(shape) = &x.shape else {
        return Ok(tensor(x.dtype, None));
    };
    let Some(v) = a.known_int(1)? else {
        return Ok(tensor(x.dtype, None));
    };
    let ax = a.norm_axis(1, v, shape.rank() + 1, x)?;
    let mut dims = shape.0.clone();
    dims.insert(ax.min(dims.len()), Dim::Known(1));
    Ok(tensor(x.dtype, Some(Shape(dims))))
}

/// `squeeze(x, axis?)`: drops the given axis (which must be 1) or every axis known to be 1.
pub(super) fn squeeze(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let Some(shape) = &x.shape else {
        return Ok(tensor(x.dtype, None));
    };
    let dims = match a.axis(1, x, shape.rank())? {
        None => shape
            .dims()
            .iter()
            .filter(|d| **d != Dim::Known(1))
            .cloned()
            .collect(),
        Some(ax) => {
            if let Some(d) = shape.dims().get(ax)
                && !d.may_equal(&Dim::Known(1))
            {
                return Err(Diagnostic::error(
                    "E0307",
                    format!("cannot squeeze axis {ax} of {x}: its size is {d}, not 1"),
                    a.span(1),
                )
                .with_primary_label(format!("axis {ax}"))
                .with_label(a.span(0), format!("is {x}"))
                .into());
            }
            let mut d = shape.0.clone();
            d.remove(ax);
            d
        }
    };
    Ok(tensor(x.dtype, Some(Shape(dims))))
}

/// The tensors of a `concat`/`stack` argument: a tuple, or the rows of a tensor. `None`
/// when one of them is unknown.
fn pieces(a: &Args<'_>) -> RuleResult<Option<Vec<TensorTy>>> {
    let arg = a.req(0)?;
    match &arg.ty {
        Ty::Tuple(items) => {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                match it {
                    Ty::Tensor(t) => out.push(t.clone()),
                    Ty::Unknown | Ty::Never => return Ok(None),
                    _ => return Err(a.wrong_kind(0, arg, "a tuple of tensors")),
                }
            }
            Ok(Some(out))
        }
        Ty::Tensor(t) => match &t.shape {
            Some(s) if s.rank() >= 1 => match s.dims().first().and_then(Dim::known) {
                Some(n) => {
                    let row = TensorTy::new(t.dtype, Some(Shape(s.0[1..].to_vec())));
                    Ok(Some(vec![row; n]))
                }
                None => Ok(None),
            },
            _ => Err(a.wrong_kind(0, arg, "a tuple of tensors")),
        },
        _ => Err(a.wrong_kind(0, arg, "a tuple of tensors")),
    }
}

/// The common dtype of the pieces, or E0201.
fn pieces_dtype(a: &Args<'_>, ps: &[TensorTy]) -> RuleResult<DType> {
    let mut acc: Option<TensorTy> = None;
    for p in ps {
        acc = Some(match join_dtype(acc, p) {
            Ok(joined) => joined,
            Err((x, y)) => {
                return Err(Diagnostic::error(
                    "E0201",
                    format!("dtypes do not mix in `{}`: {x} and {y}", a.b.name),
                    a.span(0),
                )
                .with_primary_label(format!("is {}", a.req(0)?.ty))
                .with_hint(format!("cast the pieces to one dtype: `{}(...)`", x.name()))
                .into());
            }
        });
    }
    Ok(acc.map_or(DType::F32, |t| t.dtype))
}

/// `concat((a, b), axis: 0)`.
pub(super) fn concat(a: &Args<'_>) -> RuleResult<Ty> {
    let Some(ps) = pieces(a)? else {
        return Ok(Ty::Unknown);
    };
    let dtype = pieces_dtype(a, &ps)?;
    let Some(first) = ps.first() else {
        return Err(empty(a));
    };
    let Some(rank) = first.rank() else {
        return Ok(tensor(dtype, None));
    };
    let axis = a.axis(1, first, rank)?.unwrap_or(0);
    if rank == 0 {
        return Err(Diagnostic::error(
            "E0306",
            "`concat` joins tensors with at least one axis, found scalars",
            a.span(0),
        )
        .with_primary_label(format!("is {}", a.req(0)?.ty))
        .with_hint("`stack` makes a vector of scalars")
        .into());
    }
    let mut inputs = Vec::with_capacity(ps.len());
    for p in &ps {
        match &p.shape {
            Some(s) => inputs.push(ir::TensorType::new(dtype, s.clone())),
            None => return Ok(tensor(dtype, None)),
        }
    }
    match ir::infer(&Op::Concat { axis }, &inputs) {
        Ok(t) => Ok(tensor(dtype, Some(t.shape))),
        Err(ir::InferError::Dim { operand, axis: ax, expected, found, .. }) => Err(Diagnostic::error(
            "E0307",
            format!(
                "shapes do not fit `concat` along axis {axis}: piece {operand} has {found} at axis {ax}, piece 0 has {expected}"
            ),
            a.span(0),
        )
        .with_primary_label(format!("is {}", a.req(0)?.ty))
        .with_note(format!("the pieces must agree on every axis but axis {axis}"))
        .into()),
        Err(ir::InferError::Rank { operand, found, .. }) => Err(Diagnostic::error(
            "E0306",
            format!("`concat` pieces differ in rank: piece 0 has {rank} axes, piece {operand} has {found}"),
            a.span(0),
        )
        .with_primary_label(format!("is {}", a.req(0)?.ty))
        .into()),
        Err(e) => Err(a.infer_err(e, &[])),
    }
}

fn empty(a: &Args<'_>) -> Box<Diagnostic> {
    Diagnostic::error(
        "E0807",
        format!("`{}` needs at least one tensor", a.b.name),
        a.span(0),
    )
    .with_primary_label("empty")
    .into()
}

/// `stack((a, b), axis: 0)`: equal shapes, a new axis.
pub(super) fn stack(a: &Args<'_>) -> RuleResult<Ty> {
    let Some(ps) = pieces(a)? else {
        return Ok(Ty::Unknown);
    };
    let dtype = pieces_dtype(a, &ps)?;
    let Some(first) = ps.first() else {
        return Err(empty(a));
    };
    let Some(base) = &first.shape else {
        return Ok(tensor(dtype, None));
    };
    let mut dims = base.0.clone();
    for (i, p) in ps.iter().enumerate().skip(1) {
        let Some(s) = &p.shape else { continue };
        let fits =
            s.rank() == dims.len() && s.dims().iter().zip(&dims).all(|(x, y)| x.may_equal(y));
        if !fits {
            return Err(Diagnostic::error(
                "E0307",
                format!("`stack` needs equal shapes: piece 0 is {first}, piece {i} is {p}"),
                a.span(0),
            )
            .with_primary_label(format!("is {}", a.req(0)?.ty))
            .into());
        }
        for (d, x) in dims.iter_mut().zip(s.dims()) {
            if d.is_unknown() {
                *d = x.clone();
            }
        }
    }
    let probe = TensorTy::new(dtype, Some(Shape(dims.clone())));
    let axis = match a.known_int(1)? {
        None => 0,
        Some(v) => a.norm_axis(1, v, dims.len() + 1, &probe)?,
    };
    dims.insert(axis.min(dims.len()), Dim::Known(ps.len()));
    Ok(tensor(dtype, Some(Shape(dims))))
}

/// `split(x, n, axis: 0)`: a tuple of `n` equal pieces.
pub(super) fn split(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let n = a.size(1)?.unwrap_or(0);
    if n == 0 {
        return Err(
            Diagnostic::error("E0807", "`split` needs at least one piece", a.span(1))
                .with_primary_label("0 pieces")
                .into(),
        );
    }
    let Some(shape) = &x.shape else {
        return Ok(Ty::Tuple(vec![tensor(x.dtype, None); n]));
    };
    let axis = a.axis(2, x, shape.rank())?.unwrap_or(0);
    let Some(d) = shape.dims().get(axis) else {
        return Err(a.norm_axis(2, 0, 0, x).err().unwrap_or_else(|| empty(a)));
    };
    let piece = match d.known() {
        Some(size) if size % n != 0 => {
            return Err(Diagnostic::error(
                "E0307",
                format!("cannot split axis {axis} of {x} (size {size}) into {n} equal pieces"),
                a.span(1),
            )
            .with_primary_label(format!("{n} pieces"))
            .with_label(a.span(0), format!("is {x}"))
            .into());
        }
        Some(size) => Dim::Known(size / n),
        None if n == 1 => d.clone(),
        None => Dim::unknown(),
    };
    let mut dims = shape.0.clone();
    if let Some(slot) = dims.get_mut(axis) {
        *slot = piece;
    }
    Ok(Ty::Tuple(vec![tensor(x.dtype, Some(Shape(dims))); n]))
}

/// `flatten(x)`: one axis with every element.
pub(super) fn flatten(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let d = match x.shape.as_ref().map(Shape::checked_numel) {
        Some(Ok(Some(n))) => Dim::Known(n),
        Some(Ok(None)) => match x.shape.as_ref().map(|s| s.dims()) {
            Some([one]) => one.clone(),
            _ => Dim::unknown(),
        },
        _ => Dim::unknown(),
    };
    Ok(tensor(x.dtype, Some(Shape(vec![d]))))
}

/// `broadcast_to(x, shape)`.
pub(super) fn broadcast_to(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let target = a.shape(1)?;
    let (Some(target), Some(input)) = (target, ir_ty(x)) else {
        return Ok(tensor(x.dtype, None));
    };
    match ir::infer(
        &Op::Broadcast {
            shape: target.clone(),
        },
        &[input],
    ) {
        Ok(t) => Ok(tensor(t.dtype, Some(t.shape))),
        Err(_) => Err(Diagnostic::error(
            "E0302",
            format!("cannot broadcast {x} to {target}"),
            a.span(0),
        )
        .with_primary_label(format!("is {x}"))
        .with_label(a.span(1), format!("is {target}"))
        .with_note(
            "broadcasting aligns shapes from the right; each dim must equal the target's or be 1",
        )
        .into()),
    }
}

/// `pad(x, pads, value: 0)`: `pads` is one `(before, after)` pair for every axis, or a pair
/// per axis (`((0, 0), (1, 1))`, or flat `[0, 0, 1, 1]`).
pub(super) fn pad(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    a.number(2)?;
    let Some(shape) = &x.shape else {
        return Ok(tensor(x.dtype, None));
    };
    let r = shape.rank();
    let arg = a.req(1)?;
    // A tuple of pairs (each a tuple or a list of two ints), or a flat list of ints.
    let flat: Option<Vec<i64>> = match &arg.ty {
        Ty::Tuple(items)
            if items
                .iter()
                .any(|i| !i.as_tensor().is_some_and(TensorTy::is_scalar)) =>
        {
            let mut v = Vec::with_capacity(items.len() * 2);
            let mut known = true;
            for it in items {
                let pair = match it {
                    Ty::Tuple(_) => Args::tuple_ints(it),
                    Ty::Tensor(t) if t.dtype.is_int() && t.rank() == Some(1) => lit_ints(t),
                    _ => return Err(a.wrong_kind(1, arg, "(before, after) pairs of ints")),
                };
                match pair {
                    Some(p) => v.extend(p),
                    None => known = false,
                }
            }
            known.then_some(v)
        }
        // A nested list literal keeps no values: the padded sizes are unknown.
        Ty::Tensor(t) if t.dtype.is_int() && t.rank() == Some(2) => None,
        _ => a.int_list(1)?,
    };
    let Some(flat) = flat else {
        return Ok(tensor(x.dtype, Some(Shape(vec![Dim::unknown(); r]))));
    };
    let pairs: Vec<(i64, i64)> = match flat.as_slice() {
        [b, e] => vec![(*b, *e); r],
        v if v.len() == 2 * r => v
            .chunks(2)
            .map(|c| {
                (
                    c.first().copied().unwrap_or(0),
                    c.get(1).copied().unwrap_or(0),
                )
            })
            .collect(),
        v => {
            return Err(Diagnostic::error(
                "E0807",
                format!(
                    "`pad` needs one (before, after) pair or {r} of them for {x}, found {} numbers",
                    v.len()
                ),
                arg.span,
            )
            .with_primary_label(format!("is {}", arg.ty))
            .into());
        }
    };
    let mut pads = Vec::with_capacity(r);
    for (b, e) in pairs {
        match (usize::try_from(b), usize::try_from(e)) {
            (Ok(b), Ok(e)) => pads.push((b, e)),
            _ => {
                return Err(Diagnostic::error(
                    "E0807",
                    "`pad` cannot take negative padding",
                    arg.span,
                )
                .with_primary_label(format!("is {}", arg.ty))
                .into());
            }
        }
    }
    let input = ir::TensorType::new(x.dtype, shape.clone());
    ir::infer(&Op::Pad { pads, value: 0.0 }, &[input])
        .map(|t| tensor(t.dtype, Some(t.shape)))
        .map_err(|e| a.infer_err(e, &[a.span(0)]))
}

/// The known integers of an integer vector.
fn lit_ints(t: &TensorTy) -> Option<Vec<i64>> {
    match &t.value {
        Some(crate::check::ty::Const::Ints(v)) => v
            .iter()
            .map(|i| match i {
                crate::check::ty::IntVal::Lit(n) => Some(*n),
                crate::check::ty::IntVal::Sym(_) => None,
            })
            .collect(),
        _ => None,
    }
}

impl Args<'_> {
    /// The known integers of a tuple of integer scalars.
    fn tuple_ints(t: &Ty) -> Option<Vec<i64>> {
        match t {
            Ty::Tuple(items) => items
                .iter()
                .map(|i| i.as_tensor().and_then(crate::check::ops::scalar_int))
                .collect(),
            _ => None,
        }
    }
}

/// `one_hot(labels, n)`: `f32[..labels, n]`.
pub(super) fn one_hot(a: &Args<'_>) -> RuleResult<Ty> {
    let labels = a.tensor(0)?;
    if !labels.dtype.is_int() {
        return Err(int_labels(a, 0, labels));
    }
    let n = match a.int(1)? {
        super::IntArg::Known(v) => v.to_dim().unwrap_or_else(Dim::unknown),
        _ => Dim::unknown(),
    };
    let shape = labels.shape.as_ref().map(|s| {
        let mut d = s.0.clone();
        d.push(n);
        Shape(d)
    });
    Ok(tensor(a.dtype(2, DType::F32)?, shape))
}

/// E0202: class labels must be integers.
pub(super) fn int_labels(a: &Args<'_>, i: usize, t: &TensorTy) -> Box<Diagnostic> {
    Diagnostic::error(
        "E0202",
        format!("`{}` needs integer class labels, found {t}", a.b.name),
        a.span(i),
    )
    .with_primary_label(format!("is {t}"))
    .with_hint(format!("convert them: `i64({})`", quote(a.src, a.span(i))))
    .into()
}

/// `take(x, idx, axis?)`: NumPy's take; without `axis`, of the flattened `x`.
pub(super) fn take(a: &Args<'_>) -> RuleResult<Ty> {
    gather_like(a, None)
}

/// `gather(x, idx, axis: 0)`: take along an axis.
pub(super) fn gather(a: &Args<'_>) -> RuleResult<Ty> {
    gather_like(a, Some(0))
}

fn gather_like(a: &Args<'_>, default_axis: Option<i64>) -> RuleResult<Ty> {
    let x = a.tensor(0)?;
    let idx = a.tensor(1)?;
    if !idx.dtype.is_int() {
        return Err(Diagnostic::error(
            "E0202",
            format!("`{}` needs integer indices, found {idx}", a.b.name),
            a.span(1),
        )
        .with_primary_label(format!("is {idx}"))
        .into());
    }
    let axis = a.known_int(2)?.or(default_axis);
    let (Some(xs), Some(is)) = (&x.shape, &idx.shape) else {
        return Ok(tensor(x.dtype, None));
    };
    let Some(axis) = axis else {
        return Ok(tensor(x.dtype, Some(is.clone())));
    };
    let ax = a.norm_axis(2, axis, xs.rank(), x)?;
    let inputs = [
        ir::TensorType::new(x.dtype, xs.clone()),
        ir::TensorType::new(idx.dtype, is.clone()),
    ];
    ir::infer(&Op::Gather { axis: ax }, &inputs)
        .map(|t| tensor(t.dtype, Some(t.shape)))
        .map_err(|e| a.infer_err(e, &[a.span(0), a.span(1)]))
}
