//! Data, summaries, script arguments, devices and the rest.

use ir::{DType, Dim, Shape};

use super::{Args, tensor};
use crate::ast::BinOp;
use crate::check::ops::{self, RuleResult, Typed, dim_scalar, shape_tuple};
use crate::check::ty::{IntVal, TensorTy, Ty};
use crate::diagnostics::Diagnostic;

/// `print(a, b, ...)`: anything, unit.
pub(super) fn print(_: &Args<'_>) -> RuleResult<Ty> {
    Ok(Ty::Unit)
}

/// `assert(cond, "message")`: a scalar bool.
pub(super) fn assert(a: &Args<'_>) -> RuleResult<Ty> {
    let c = a.tensor(0)?;
    if c.dtype != DType::Bool || c.rank().is_some_and(|r| r > 0) {
        let mut d = Diagnostic::error(
            "E0202",
            format!("`assert` needs a scalar bool, found {c}"),
            a.span(0),
        )
        .with_primary_label(format!("is {c}"));
        if c.dtype == DType::Bool {
            d = d.with_hint(format!(
                "`all({})` is true when every element is",
                ops::quote(a.src, a.span(0))
            ));
        }
        return Err(d.into());
    }
    a.string(1)?;
    Ok(Ty::Unit)
}

/// `allclose(a, b, rtol:, atol:)`: `a` and `b` of the same structure; a bool scalar.
pub(super) fn allclose(a: &Args<'_>) -> RuleResult<Ty> {
    let (x, y) = (a.req(0)?, a.req(1)?);
    // The two must combine like `a - b` (same structure, broadcastable leaves).
    ops::binary(a.src, BinOp::Sub, x, y, a.call)?;
    a.number(2)?;
    a.number(3)?;
    Ok(tensor(DType::Bool, Some(Shape::scalar())))
}

/// `arg("epochs", 30)`: the default's type (its value is known only at run time).
pub(super) fn arg(a: &Args<'_>) -> RuleResult<Ty> {
    a.string(0)?;
    let d = a.req(1)?;
    Ok(match &d.ty {
        Ty::Tensor(t) if t.is_scalar() => Ty::Tensor(TensorTy {
            value: None,
            ..t.clone()
        }),
        Ty::Str(_) => Ty::Str(None),
        _ => return Err(a.wrong_kind(1, d, "a number, a bool or a string")),
    })
}

/// `shape(x)`: `x.shape`.
pub(super) fn shape(a: &Args<'_>) -> RuleResult<Ty> {
    Ok(shape_tuple(a.tensor(0)?))
}

/// `leaves(x)`: the tensors of a structure as one flat tuple, in the order `map` visits
/// them (tuple elements in order, record fields sorted by name, depth first), like JAX's
/// `tree_leaves`. A tensor alone is a tuple of one; `()` holds none. It lets a function
/// reduce over every leaf of a record of any shape (`stack(map(f, leaves(grads)))`).
pub(super) fn leaves(a: &Args<'_>) -> RuleResult<Ty> {
    /// Appends the leaves of `t`; `Ok(false)` when part of it is unknown (so is the
    /// result's length), `Err(t)` for a part that is no tensor.
    fn walk<'t>(t: &'t Ty, out: &mut Vec<Ty>) -> Result<bool, &'t Ty> {
        match t {
            Ty::Tensor(_) => {
                out.push(t.clone());
                Ok(true)
            }
            Ty::Tuple(items) => {
                for i in items {
                    if !walk(i, out)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Ty::Record(fields) => {
                for i in fields.values() {
                    if !walk(i, out)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Ty::Unit => Ok(true),
            Ty::Unknown | Ty::Never => Ok(false),
            other => Err(other),
        }
    }
    let x = a.req(0)?;
    let mut out = Vec::new();
    match walk(&x.ty, &mut out) {
        Ok(true) => Ok(Ty::Tuple(out)),
        Ok(false) => Ok(Ty::Unknown),
        Err(bad) => Err(a.wrong_kind(
            0,
            x,
            &format!("tensors and tuples or records of them (not {bad})"),
        )),
    }
}

/// `len(x)`: the size of axis 0 (or a tuple's length), an `i64` scalar.
pub(super) fn len(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.req(0)?;
    Ok(match &x.ty {
        Ty::Tensor(t) => match t.shape.as_ref().map(|s| s.dims().first()) {
            Some(Some(d)) => dim_scalar(d),
            Some(None) => {
                return Err(Diagnostic::error(
                    "E0306",
                    format!("`len` needs at least one axis, found the scalar {t}"),
                    x.span,
                )
                .with_primary_label(format!("is {t}"))
                .into());
            }
            None => dim_scalar(&Dim::unknown()),
        },
        Ty::Tuple(items) => dim_scalar(&Dim::Known(items.len())),
        Ty::Unit => dim_scalar(&Dim::Known(0)),
        Ty::Str(_) | Ty::Range | Ty::Iter(_) => dim_scalar(&Dim::unknown()),
        _ => return Err(a.wrong_kind(0, x, "a tensor, tuple or string")),
    })
}

/// `dtype(x)`: `x.dtype`.
pub(super) fn dtype(a: &Args<'_>) -> RuleResult<Ty> {
    Ok(Ty::Str(Some(a.tensor(0)?.dtype.name().into())))
}

/// `time()`: wall-clock seconds.
pub(super) fn time(_: &Args<'_>) -> RuleResult<Ty> {
    Ok(tensor(DType::F64, Some(Shape::scalar())))
}

/// `seed(n)`.
pub(super) fn seed(a: &Args<'_>) -> RuleResult<Ty> {
    a.int(0)?;
    Ok(Ty::Unit)
}

/// `log_scalar(tag, step, value)`, `log_histogram(tag, step, x)`, `log_text(tag, step, s)`.
pub(super) fn log_summary(a: &Args<'_>) -> RuleResult<Ty> {
    a.string(0)?;
    a.int(1)?;
    match a.b.name {
        "log_text" => {
            a.string(2)?;
        }
        "log_scalar" => {
            a.number(2)?;
        }
        _ => {
            a.tensor(2)?;
        }
    }
    Ok(Ty::Unit)
}

/// `progress(iterable)`: what `for` iterates, with a progress bar: a range stays a range,
/// a tensor becomes an iterable of its rows (axis 0), so that it is not mistaken for the
/// tensor itself.
pub(super) fn progress(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.req(0)?;
    match &x.ty {
        Ty::Range | Ty::Iter(_) => Ok(x.ty.clone()),
        Ty::Tensor(t) if t.rank().is_none_or(|r| r > 0) => {
            let rows = t
                .shape
                .as_ref()
                .map(|s| Shape(s.dims().get(1..).unwrap_or_default().to_vec()));
            Ok(Ty::Iter(Box::new(Ty::Tensor(TensorTy::new(t.dtype, rows)))))
        }
        _ => Err(a.wrong_kind(0, x, "a range, a tensor or `batches(...)`")),
    }
}

/// `stop_gradient(x)`: the identity.
pub(super) fn identity(a: &Args<'_>) -> RuleResult<Ty> {
    Ok(a.req(0)?.ty.clone())
}

/// `to(x, "cuda:0")`: the same value elsewhere.
pub(super) fn to(a: &Args<'_>) -> RuleResult<Ty> {
    a.string(1)?;
    identity(a)
}

/// `shard(x, [2, 2])`: a sharding hint, the identity.
pub(super) fn shard(a: &Args<'_>) -> RuleResult<Ty> {
    a.tensor(0)?;
    a.int_list(1)?;
    identity(a)
}

/// `device(x)`: a device name.
pub(super) fn device(a: &Args<'_>) -> RuleResult<Ty> {
    a.req(0)?;
    Ok(Ty::Str(None))
}

/// `devices()`: the device names, iterable.
pub(super) fn devices(_: &Args<'_>) -> RuleResult<Ty> {
    Ok(Ty::Iter(Box::new(Ty::Str(None))))
}

/// `load_npy(path)`, `load(path)`: checked when the data arrives; `load_model(path)`: a model
/// whose signature is in the file, so its calls are checked when they run.
pub(super) fn load(a: &Args<'_>) -> RuleResult<Ty> {
    a.string(0)?;
    Ok(Ty::Unknown)
}

/// `load_text(path)`: the text of a UTF-8 file, a string (its contents are known only at
/// run time).
pub(super) fn load_text(a: &Args<'_>) -> RuleResult<Ty> {
    a.string(0)?;
    Ok(Ty::Str(None))
}

/// `ord(s)`: the Unicode code points of a string, `i64[n]`; `n` is known when `s` is a
/// literal.
pub(super) fn ord(a: &Args<'_>) -> RuleResult<Ty> {
    let n = match a.string(0)? {
        Some(Some(s)) => Dim::Known(s.chars().count()),
        _ => Dim::unknown(),
    };
    Ok(tensor(DType::I64, Some(Shape(vec![n]))))
}

/// `chr(codes)`: the string of the code points `codes`, an integer scalar (one character)
/// or vector.
pub(super) fn chr(a: &Args<'_>) -> RuleResult<Ty> {
    let x = a.req(0)?;
    match &x.ty {
        Ty::Tensor(t) if t.dtype.is_int() && t.rank().is_none_or(|r| r <= 1) => Ok(Ty::Str(None)),
        _ => Err(a.wrong_kind(0, x, "an integer scalar or vector of code points")),
    }
}

/// `load_idx(path, dtype:)`: checked when the data arrives; with `dtype:` the dtype is
/// known (the values are cast to it), the shape is not.
pub(super) fn load_idx(a: &Args<'_>) -> RuleResult<Ty> {
    a.string(0)?;
    if a.get(1).is_none() {
        return Ok(Ty::Unknown);
    }
    Ok(tensor(a.dtype(1, DType::F32)?, None))
}

/// `load_csv(path, header:, delimiter:, dtype:, columns:)`: a matrix of unknown size; with
/// `columns: "name"` the named column as a vector, with `columns: ("a", "b")` a record of
/// those columns (the names must be known when checking: they are the record's fields).
pub(super) fn load_csv(a: &Args<'_>) -> RuleResult<Ty> {
    a.string(0)?;
    a.flag(1)?;
    a.string(2)?;
    let dtype = a.dtype(3, DType::F32)?;
    let column = || tensor(dtype, Some(Shape(vec![Dim::unknown()])));
    let Some(cols) = a.get(4) else {
        return Ok(tensor(
            dtype,
            Some(Shape(vec![Dim::unknown(), Dim::unknown()])),
        ));
    };
    match &cols.ty {
        Ty::Str(_) => Ok(column()),
        Ty::Tuple(items) => {
            let mut fields = std::collections::BTreeMap::new();
            for item in items {
                let Ty::Str(name) = item else {
                    return Err(a.wrong_kind(4, cols, "a column name or a tuple of column names"));
                };
                let Some(name) = name else {
                    return Err(Diagnostic::error(
                        "E0808",
                        "`load_csv` needs the names in `columns` to be known when checking: they become the fields of a record".to_string(),
                        cols.span,
                    )
                    .with_primary_label("a name computed at run time")
                    .with_hint("write the names as string literals, or read one column at a time with `columns: name`")
                    .into());
                };
                if fields.insert(name.clone(), column()).is_some() {
                    return Err(Diagnostic::error(
                        "E0807",
                        format!("the column `{name}` is named twice in `columns`"),
                        cols.span,
                    )
                    .with_primary_label("a record cannot have the same field twice")
                    .into());
                }
            }
            Ok(Ty::Record(fields))
        }
        Ty::Unknown => Ok(Ty::Unknown),
        _ => Err(a.wrong_kind(4, cols, "a column name or a tuple of column names")),
    }
}

/// `save(value, path)`, `save_npy(x, path)`.
/// `export_onnx(f, example_args, path, opset: 17)`, `export_mir(f, example_args, path)`: `f`
/// a function, its example arguments (a tuple, or one value), a path; staging `f` at them
/// is checked when it runs.
pub(super) fn export_onnx(a: &Args<'_>) -> RuleResult<Ty> {
    if let Some(f) = a.get(0)
        && !matches!(f.ty, Ty::Fn(_) | Ty::Unknown)
    {
        return Err(Diagnostic::error(
            "E0205",
            format!("`{}` needs a function for `f`, found {}", a.b.name, f.ty),
            f.span,
        )
        .with_primary_label(format!("is {}", f.ty))
        .into());
    }
    a.string(2)?;
    if a.get(3).is_some() {
        a.int(3)?;
    }
    Ok(Ty::Unit)
}

pub(super) fn save(a: &Args<'_>) -> RuleResult<Ty> {
    if a.b.name == "save_npy" {
        a.tensor(0)?;
    }
    a.string(1)?;
    Ok(Ty::Unit)
}

/// Every tensor leaf of `data` with axis 0 replaced by `dim`; the leaves' axis 0 must
/// agree (E0307 otherwise). `first` remembers the first leaf's length.
fn rows(
    a: &Args<'_>,
    data: &Typed,
    t: &Ty,
    dim: &Dim,
    first: &mut Option<(Dim, Ty)>,
) -> RuleResult<Ty> {
    Ok(match t {
        Ty::Tensor(x) => {
            let Some(s) = &x.shape else {
                return Ok(tensor(x.dtype, None));
            };
            let Some(d0) = s.dims().first() else {
                return Err(Diagnostic::error(
                    "E0306",
                    format!("`{}` slices along axis 0, but {x} is a scalar", a.b.name),
                    data.span,
                )
                .with_primary_label(format!("is {}", data.ty))
                .into());
            };
            match first {
                Some((f, ft)) if !f.may_equal(d0) => {
                    return Err(Diagnostic::error(
                        "E0307",
                        format!(
                            "`{}` needs every leaf to have the same length: {ft} has {f} rows, {x} has {d0}",
                            a.b.name
                        ),
                        data.span,
                    )
                    .with_primary_label(format!("is {}", data.ty))
                    .into());
                }
                Some(_) => {}
                None => *first = Some((d0.clone(), t.clone())),
            }
            let mut dims = s.0.clone();
            if let Some(slot) = dims.first_mut() {
                *slot = dim.clone();
            }
            tensor(x.dtype, Some(Shape(dims)))
        }
        Ty::Tuple(items) => Ty::Tuple(
            items
                .iter()
                .map(|i| rows(a, data, i, dim, first))
                .collect::<RuleResult<_>>()?,
        ),
        Ty::Record(fields) => Ty::Record(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), rows(a, data, v, dim, first)?)))
                .collect::<RuleResult<_>>()?,
        ),
        Ty::Unknown => Ty::Unknown,
        _ => return Err(a.wrong_kind(0, data, "tensors (or a tuple or record of them)")),
    })
}

/// `batches(data, size, shuffle:, drop_last:)`: iterates slices of axis 0; with
/// `drop_last: true` and a known size every batch has that size.
pub(super) fn batches(a: &Args<'_>) -> RuleResult<Ty> {
    let data = a.req(0)?;
    let size = match a.int(1)? {
        super::IntArg::Known(IntVal::Lit(n)) if n <= 0 => {
            return Err(Diagnostic::error(
                "E0807",
                format!("`batches` needs a batch size ≥ 1, found {n}"),
                a.span(1),
            )
            .with_primary_label(format!("is {n}"))
            .into());
        }
        super::IntArg::Known(v) => v.to_dim(),
        _ => None,
    };
    a.flag(2)?;
    let drop_last = a.flag(3)?.unwrap_or(false);
    let dim = match (drop_last, size) {
        (true, Some(d)) => d,
        _ => Dim::unknown(),
    };
    let mut first = None;
    Ok(Ty::Iter(Box::new(rows(
        a, data, &data.ty, &dim, &mut first,
    )?)))
}

/// `shuffle(data)`: the same structure (rows permuted).
pub(super) fn shuffle(a: &Args<'_>) -> RuleResult<Ty> {
    let data = a.req(0)?;
    let mut first = None;
    rows(a, data, &data.ty, &Dim::unknown(), &mut first)?;
    Ok(data.ty.clone())
}

/// `split_train_test(data, test)`: `(train, test)`, each of `data`'s structure with an
/// unknown number of rows.
pub(super) fn split_train_test(a: &Args<'_>) -> RuleResult<Ty> {
    let data = a.req(0)?;
    a.number(1)?;
    a.flag(2)?;
    let mut first = None;
    let part = rows(a, data, &data.ty, &Dim::unknown(), &mut first)?;
    Ok(Ty::Tuple(vec![part.clone(), part]))
}
