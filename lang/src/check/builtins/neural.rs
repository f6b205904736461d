//! Linear algebra, neural network functions and losses.

use ir::{Conv2dParams, DType, Dim, Op, Pool2dParams, PoolOp, Shape};

use super::{Args, float_of, ir_ty, join_dtype, tensor};
use crate::ast::BinOp;
use crate::check::ops::{self, BinCtx, Elementwise, RuleResult, promote, quote};
use crate::check::ty::{TensorTy, Ty};
use crate::diagnostics::Diagnostic;

/// `matmul(a, b)`: `a @ b`.
pub(super) fn matmul(a: &Args<'_>) -> RuleResult<Ty> {
    let (x, y) = (a.tensor(0)?, a.tensor(1)?);
    ops::matmul(a.src, x, a.span(0), y, a.span(1)).map(Ty::Tensor)
}

/// `dot(a, b)`: the inner product of two vectors, otherwise `matmul`.
pub(super) fn dot(a: &Args<'_>) -> RuleResult<Ty> {
    matmul(a)
}

/// `outer(a, b)`: `[numel(a), numel(b)]`.
pub(super) fn outer(a: &Args<'_>) -> RuleResult<Ty> {
    let (x, y) = (a.tensor(0)?, a.tensor(1)?);
    let dtype = mix(a, x, 0, y, 1)?;
    let n = |t: &TensorTy| match t.shape.as_ref().map(|s| (s.numel(), s.dims())) {
        Some((Some(n), _)) => Dim::Known(n),
        Some((None, [one])) => one.clone(),
        _ => Dim::unknown(),
    };
    Ok(tensor(dtype, Some(Shape(vec![n(x), n(y)]))))
}

/// The promoted dtype of two operands, or E0201.
fn mix(a: &Args<'_>, x: &TensorTy, i: usize, y: &TensorTy, j: usize) -> RuleResult<DType> {
    promote(x, y).map(|(d, _)| d).map_err(|(p, q)| {
        Diagnostic::error(
            "E0201",
            format!("dtypes do not mix in `{}`: {x} and {y}", a.b.name),
            a.span(i),
        )
        .with_primary_label(format!("is {x}"))
        .with_label(a.span(j), format!("is {y}"))
        .with_hint(format!(
            "cast one side: `{}({})` or `{}({})`",
            q.name(),
            quote(a.src, a.span(i)),
            p.name(),
            quote(a.src, a.span(j))
        ))
        .into()
    })
}

/// A float tensor argument (integers compute in `f32`).
fn float_tensor<'a>(a: &Args<'a>, i: usize) -> RuleResult<TensorTy> {
    let t = a.tensor(i)?;
    if t.dtype == DType::Bool {
        return Err(Diagnostic::error(
            "E0202",
            format!("`{}` needs numbers, found {t}", a.b.name),
            a.span(i),
        )
        .with_primary_label(format!("is {t}"))
        .with_hint(format!("convert it: `f32({})`", quote(a.src, a.span(i))))
        .into());
    }
    Ok(TensorTy {
        dtype: float_of(t.dtype),
        shape: t.shape.clone(),
        weak: false,
        value: None,
    })
}

/// `softmax(x, axis: -1)`, `log_softmax`.
pub(super) fn softmax(a: &Args<'_>) -> RuleResult<Ty> {
    let x = float_tensor(a, 0)?;
    if let Some(r) = x.rank() {
        if r == 0 {
            return Err(Diagnostic::error(
                "E0306",
                format!(
                    "`{}` needs at least one axis, found the scalar {x}",
                    a.b.name
                ),
                a.span(0),
            )
            .with_primary_label(format!("is {x}"))
            .into());
        }
        a.axis(1, &x, r)?;
    }
    Ok(Ty::Tensor(x))
}

/// Checks that an optional per-feature parameter (`weight`, `bias`) broadcasts into `x`.
fn fits_into(a: &Args<'_>, x: &TensorTy, i: usize) -> RuleResult<()> {
    let Some(arg) = a.get(i) else { return Ok(()) };
    let p = a.tensor(i)?;
    // Named after the builtin, like `batch_norm`'s, rather than after the `*` inside.
    mix(a, p, i, x, 0)?;
    let ctx = BinCtx {
        src: a.src,
        op: Elementwise::Op(BinOp::Mul),
        lhs_span: a.span(0),
        rhs_span: arg.span,
    };
    let r = ctx.tensors(x, p)?;
    if r.shape != x.shape && x.shape.is_some() && r.shape.is_some() {
        return Err(Diagnostic::error(
            "E0307",
            format!(
                "`{}` of {x} cannot take a `{}` of {p}: it would change the shape to {}",
                a.b.name,
                a.pname_pub(i),
                r
            ),
            arg.span,
        )
        .with_primary_label(format!("is {p}"))
        .with_label(a.span(0), format!("is {x}"))
        .into());
    }
    Ok(())
}

impl Args<'_> {
    fn pname_pub(&self, i: usize) -> &'static str {
        self.b.params.get(i).copied().unwrap_or("argument")
    }
}

/// `layer_norm(x, weight?, bias?, eps:)`: `x`'s type; weight and bias broadcast into it.
pub(super) fn layer_norm(a: &Args<'_>) -> RuleResult<Ty> {
    let x = float_tensor(a, 0)?;
    fits_into(a, &x, 1)?;
    fits_into(a, &x, 2)?;
    a.number(3)?;
    Ok(Ty::Tensor(x))
}

/// `batch_norm(x, weight?, bias?, eps:)`: normalises over every axis but 1 (channels);
/// weight and bias have one entry per channel.
pub(super) fn batch_norm(a: &Args<'_>) -> RuleResult<Ty> {
    let x = float_tensor(a, 0)?;
    a.number(3)?;
    let Some(shape) = &x.shape else {
        return Ok(Ty::Tensor(x));
    };
    if shape.rank() < 2 {
        return Err(Diagnostic::error(
            "E0306",
            format!("`batch_norm` needs a batch axis and a channel axis, found {x}"),
            a.span(0),
        )
        .with_primary_label(format!("is {x}"))
        .into());
    }
    let c = shape.dims().get(1).cloned().unwrap_or_else(Dim::unknown);
    for i in [1, 2] {
        let Some(arg) = a.get(i) else { continue };
        let p = a.tensor(i)?;
        // The parameters multiply and add into `x`, where an `f64` one would meet an `f32`
        // `x` at run time: refused here, as for `*` (LANGUAGE.md §3).
        mix(a, p, i, &x, 0)?;
        let fits = match p.shape.as_ref().map(|s| s.dims()) {
            Some([d]) => d.may_equal(&c),
            None => true,
            _ => false,
        };
        if !fits {
            return Err(Diagnostic::error(
                "E0307",
                format!(
                    "`batch_norm` of {x} needs a `{}` of shape [{c}], found {p}",
                    a.pname_pub(i)
                ),
                arg.span,
            )
            .with_primary_label(format!("is {p}"))
            .with_label(a.span(0), format!("has {c} channels (axis 1)"))
            .into());
        }
    }
    Ok(Ty::Tensor(x))
}

/// `dropout(x, p, training:)`: `x`'s type.
pub(super) fn dropout(a: &Args<'_>) -> RuleResult<Ty> {
    let x = float_tensor(a, 0)?;
    a.number(1)?;
    a.flag(2)?;
    Ok(Ty::Tensor(x))
}

/// `embedding(ids, table)`: rows of the table, `[..ids, d]`; the integer argument is the
/// ids whichever order they come in.
pub(super) fn embedding(a: &Args<'_>) -> RuleResult<Ty> {
    let (p, q) = (a.tensor(0)?, a.tensor(1)?);
    let (ids, ids_i, table, table_i) = if p.dtype.is_int() {
        (p, 0, q, 1)
    } else {
        (q, 1, p, 0)
    };
    if !ids.dtype.is_int() {
        return Err(super::shape::int_labels(a, ids_i, ids));
    }
    let (Some(is), Some(ts)) = (&ids.shape, &table.shape) else {
        return Ok(tensor(table.dtype, None));
    };
    if ts.rank() != 2 {
        return Err(Diagnostic::error(
            "E0306",
            format!("`embedding` needs a table of rank 2 (rows × features), found {table}"),
            a.span(table_i),
        )
        .with_primary_label(format!("is {table}"))
        .into());
    }
    let mut dims = is.0.clone();
    dims.extend(ts.0.get(1).cloned());
    Ok(tensor(table.dtype, Some(Shape(dims))))
}

/// `attention(q, k, v, mask?)`: scaled dot-product attention, `[..., Lq, d] × [..., Lk, d]
/// × [..., Lk, dv] → [..., Lq, dv]`.
pub(super) fn attention(a: &Args<'_>) -> RuleResult<Ty> {
    let q = float_tensor(a, 0)?;
    let k = float_tensor(a, 1)?;
    let v = float_tensor(a, 2)?;
    mix(a, &q, 0, &k, 1)?;
    mix(a, &q, 0, &v, 2)?;
    for (t, i) in [(&q, 0), (&k, 1), (&v, 2)] {
        if t.rank().is_some_and(|r| r < 2) {
            return Err(Diagnostic::error(
                "E0306",
                format!(
                    "`attention` needs `{}` of rank ≥ 2 (positions × features), found {t}",
                    a.pname_pub(i)
                ),
                a.span(i),
            )
            .with_primary_label(format!("is {t}"))
            .into());
        }
    }
    // Scores: q @ k.T, then the weights times v; both are matmuls.
    let kt = match &k.shape {
        Some(s) => {
            let mut d = s.0.clone();
            let r = d.len();
            d.swap(r - 2, r - 1);
            TensorTy::new(k.dtype, Some(Shape(d)))
        }
        None => TensorTy::new(k.dtype, None),
    };
    let scores = ops::matmul(a.src, &q, a.span(0), &kt, a.span(1))?;
    if a.get(3).is_some() {
        mask_fits(a, a.tensor(3)?, &scores)?;
    }
    ops::matmul(a.src, &scores, a.span(0), &v, a.span(2)).map(Ty::Tensor)
}

/// Checks `attention`'s mask (argument 3) against the scores `[..., Lq, Lk]`. The mask
/// may be bool (true attends) or numeric (non-zero attends): it is only tested, never
/// added, so its dtype never mixes with the scores'. It must broadcast *to* the scores'
/// shape: a mask that would enlarge them (more axes, or a size where the scores have 1)
/// would change the result's shape, so it is refused rather than broadcast both ways.
fn mask_fits(a: &Args<'_>, mask: &TensorTy, scores: &TensorTy) -> RuleResult<()> {
    let (Some(ms), Some(ss)) = (&mask.shape, &scores.shape) else {
        return Ok(());
    };
    let fits = ms.rank() <= ss.rank()
        && ms
            .dims()
            .iter()
            .rev()
            .zip(ss.dims().iter().rev())
            .all(|(m, s)| *m == Dim::Known(1) || m.may_equal(s));
    if fits {
        return Ok(());
    }
    Err(Diagnostic::error(
        "E0307",
        format!("`attention`'s mask {mask} does not broadcast to the scores {scores}"),
        a.span(3),
    )
    .with_primary_label(format!("is {mask}"))
    .with_label(
        a.span(0),
        format!("the scores q @ k.T are {}", ops::shape_text(Some(ss))),
    )
    .with_note(
        "the mask says which keys each query may attend to: its shape must broadcast to [..., Lq, Lk] without enlarging it",
    )
    .into())
}

/// A stride/padding/dilation argument: an int or a pair.
fn pair(a: &Args<'_>, i: usize, default: usize) -> RuleResult<[usize; 2]> {
    let Some(arg) = a.get(i) else {
        return Ok([default, default]);
    };
    let v = match &arg.ty {
        Ty::Tensor(t) if t.is_scalar() => vec![a.known_int(i)?.unwrap_or(0)],
        _ => a.int_list(i)?.unwrap_or_default(),
    };
    let bad = || -> Box<Diagnostic> {
        Diagnostic::error(
            "E0807",
            format!(
                "`{}` needs `{}` as one size ≥ 0 or a pair of them",
                a.b.name,
                a.pname_pub(i)
            ),
            arg.span,
        )
        .with_primary_label(format!("is {}", arg.ty))
        .into()
    };
    let conv = |n: i64| usize::try_from(n).map_err(|_| bad());
    match v.as_slice() {
        [n] => {
            let n = conv(*n)?;
            Ok([n, n])
        }
        [h, w] => Ok([conv(*h)?, conv(*w)?]),
        _ => Err(bad()),
    }
}

/// `conv2d(x, w, bias?, stride:, padding:, dilation:, groups:)`: NCHW input, OIHW filter.
pub(super) fn conv2d(a: &Args<'_>) -> RuleResult<Ty> {
    let x = float_tensor(a, 0)?;
    let w = float_tensor(a, 1)?;
    let dtype = mix(a, &x, 0, &w, 1)?;
    let params = Conv2dParams {
        stride: pair(a, 3, 1)?,
        padding: pair(a, 4, 0)?,
        dilation: pair(a, 5, 1)?,
        groups: a.size(6)?.unwrap_or(1),
    };
    let (Some(xs), Some(ws)) = (&x.shape, &w.shape) else {
        return Ok(tensor(dtype, None));
    };
    let inputs = [
        ir::TensorType::new(dtype, xs.clone()),
        ir::TensorType::new(dtype, ws.clone()),
    ];
    let out = ir::infer(&Op::Conv2d { params }, &inputs).map_err(|e| {
        let mut d = a.infer_err(e, &[a.span(0), a.span(1)]);
        d.notes
            .push("conv2d takes NCHW input and OIHW filters".to_string());
        d
    })?;
    if a.get(2).is_some() {
        let bias = a.tensor(2)?;
        // The bias is added to the result, which has `x`'s (float) dtype: an `f64` bias on
        // an `f32` convolution would mix two floats silently (LANGUAGE.md §3).
        mix(a, bias, 2, &x, 0)?;
        let o = out
            .shape
            .dims()
            .get(1)
            .cloned()
            .unwrap_or_else(Dim::unknown);
        let fits = match bias.shape.as_ref().map(|s| s.dims()) {
            Some([d]) => d.may_equal(&o),
            None => true,
            _ => false,
        };
        if !fits {
            return Err(Diagnostic::error(
                "E0307",
                format!(
                    "`conv2d` with {o} output channels needs a bias of shape [{o}], found {bias}"
                ),
                a.span(2),
            )
            .with_primary_label(format!("is {bias}"))
            .with_label(a.span(1), format!("is {w}"))
            .into());
        }
    }
    Ok(tensor(dtype, Some(out.shape)))
}

/// `max_pool2d(x, window, stride: window, padding: 0)`, `avg_pool2d`.
pub(super) fn pool2d(a: &Args<'_>) -> RuleResult<Ty> {
    let x = if a.b.name == "avg_pool2d" {
        float_tensor(a, 0)?
    } else {
        a.tensor(0)?.clone()
    };
    let window = pair(a, 1, 1)?;
    let params = Pool2dParams {
        window,
        stride: if a.get(2).is_some() {
            pair(a, 2, 1)?
        } else {
            window
        },
        padding: pair(a, 3, 0)?,
    };
    let Some(input) = ir_ty(&x) else {
        return Ok(tensor(x.dtype, None));
    };
    let op = if a.b.name == "avg_pool2d" {
        PoolOp::Avg
    } else {
        PoolOp::Max
    };
    ir::infer(&Op::Pool2d { op, params }, &[input])
        .map(|t| tensor(t.dtype, Some(t.shape)))
        .map_err(|e| a.infer_err(e, &[a.span(0)]))
}

/// The scalar loss of `dtype`.
fn loss(dtype: DType) -> Ty {
    tensor(dtype, Some(Shape::scalar()))
}

/// `mse(pred, target)`: shapes broadcast like `pred - target`.
pub(super) fn mse(a: &Args<'_>) -> RuleResult<Ty> {
    let p = float_tensor(a, 0)?;
    let t = a.tensor(1)?;
    let ctx = BinCtx {
        src: a.src,
        op: Elementwise::Op(BinOp::Sub),
        lhs_span: a.span(0),
        rhs_span: a.span(1),
    };
    let d = ctx.tensors(&p, t)?;
    Ok(loss(float_of(d.dtype)))
}

/// `binary_cross_entropy_with_logits(logits, targets)`.
pub(super) fn bce_logits(a: &Args<'_>) -> RuleResult<Ty> {
    mse(a)
}

/// `cross_entropy(logits, labels)`, `nll(log_probs, labels)`: logits `[..., C]`, integer
/// labels `[...]`.
pub(super) fn cross_entropy(a: &Args<'_>) -> RuleResult<Ty> {
    let logits = float_tensor(a, 0)?;
    let labels = a.tensor(1)?;
    if !labels.dtype.is_int() {
        let mut d = super::shape::int_labels(a, 1, labels);
        if labels.dtype.is_float() {
            d.hints.push(format!(
                "for one-hot targets, take the class: `argmax({}, axis: -1)`",
                quote(a.src, a.span(1))
            ));
        }
        return Err(d);
    }
    if let (Some(ls), Some(ys)) = (&logits.shape, &labels.shape) {
        let want = ls.dims().get(..ls.rank().saturating_sub(1)).unwrap_or(&[]);
        let fits = ls.rank() >= 1
            && ys.rank() == want.len()
            && ys.dims().iter().zip(want).all(|(p, q)| p.may_equal(q));
        if !fits {
            return Err(Diagnostic::error(
                "E0307",
                format!(
                    "`{}` needs labels of shape {} for logits {logits}, found {labels}",
                    a.b.name,
                    Shape(want.to_vec())
                ),
                a.span(1),
            )
            .with_primary_label(format!("is {labels}"))
            .with_label(
                a.span(0),
                format!("is {logits}: one row of class scores per label"),
            )
            .into());
        }
    }
    Ok(loss(logits.dtype))
}

/// `einsum("ij,jk->ik", a, b)`: the spec's terms name the operands' axes; a letter has one
/// size wherever it appears. `...` is not supported.
pub(super) fn einsum(a: &Args<'_>) -> RuleResult<Ty> {
    let spec_arg = a.req(0)?;
    let Some(spec) = a.string(0)?.flatten() else {
        return Ok(Ty::Unknown);
    };
    let bad = |msg: String| -> Box<Diagnostic> {
        Diagnostic::error("E0806", msg, spec_arg.span)
            .with_primary_label(format!("is \"{spec}\""))
            .with_note("an einsum spec is like \"ij,jk->ik\": one term of letters per operand, then the result's letters")
            .into()
    };
    let (lhs, out) = match spec.split_once("->") {
        Some((l, r)) => (l, Some(r.trim())),
        None => (spec, None),
    };
    let terms: Vec<&str> = lhs.split(',').map(str::trim).collect();
    if spec.contains("...") {
        return Err(bad(
            "einsum specs with `...` are not supported; name every axis".to_string(),
        ));
    }
    if terms.len() != a.rest.len() {
        return Err(bad(format!(
            "the einsum spec names {} operand{}, but {} {} given",
            terms.len(),
            if terms.len() == 1 { "" } else { "s" },
            a.rest.len(),
            if a.rest.len() == 1 { "is" } else { "are" }
        )));
    }
    let mut sizes: Vec<(char, Dim, usize)> = Vec::new();
    let mut dtype: Option<TensorTy> = None;
    for (k, (term, op)) in terms.iter().zip(a.rest).enumerate() {
        if let Some(c) = term.chars().find(|c| !c.is_ascii_alphabetic()) {
            return Err(bad(format!("`{c}` is not an axis letter")));
        }
        let t = match &op.ty {
            Ty::Tensor(t) => t,
            Ty::Unknown | Ty::Never => return Ok(Ty::Unknown),
            other => {
                return Err(ops::not_a_tensor(
                    format!("`einsum` needs tensors, found {other}"),
                    op.span,
                    other,
                )
                .into());
            }
        };
        dtype = Some(match join_dtype(dtype, t) {
            Ok(joined) => joined,
            Err((x, y)) => {
                return Err(Diagnostic::error(
                    "E0201",
                    format!("dtypes do not mix in `einsum`: {x} and {y}"),
                    op.span,
                )
                .with_primary_label(format!("is {t}"))
                .into());
            }
        });
        let Some(shape) = &t.shape else { continue };
        if shape.rank() != term.len() {
            return Err(Diagnostic::error(
                "E0806",
                format!(
                    "einsum term `{term}` names {} axes, but operand {k} is {t} with {}",
                    term.len(),
                    shape.rank()
                ),
                op.span,
            )
            .with_primary_label(format!("is {t}"))
            .with_label(spec_arg.span, format!("term `{term}`"))
            .into());
        }
        for (c, d) in term.chars().zip(shape.dims()) {
            match sizes.iter_mut().find(|(l, _, _)| *l == c) {
                Some((_, prev, from)) => {
                    if !prev.may_equal(d) {
                        let mut e = Diagnostic::error(
                            "E0307",
                            format!("einsum axis `{c}` is {prev} in operand {from} but {d} in operand {k}"),
                            op.span,
                        )
                        .with_primary_label(format!("is {t}"));
                        if let Some(first) = a.rest.get(*from) {
                            e = e.with_label(first.span, format!("is {}", first.ty));
                        }
                        if let Some(n) = ops::sym_note(prev, d) {
                            e = e.with_note(n);
                        }
                        return Err(e.into());
                    }
                    if prev.is_unknown() {
                        *prev = d.clone();
                    }
                }
                None => sizes.push((c, d.clone(), k)),
            }
        }
    }
    let out_letters: String = match out {
        Some(o) => o.to_string(),
        // Implicit output: the letters that appear once, in alphabetical order.
        None => {
            let mut once: Vec<char> = lhs
                .chars()
                .filter(|c| c.is_ascii_alphabetic() && lhs.matches(*c).count() == 1)
                .collect();
            once.sort_unstable();
            once.into_iter().collect()
        }
    };
    let mut dims = Vec::with_capacity(out_letters.len());
    for (i, c) in out_letters.chars().enumerate() {
        // Checked before the letters are looked up in the operands, whose terms hold the
        // commas that separate them.
        if !c.is_ascii_alphabetic() {
            return Err(bad(format!(
                "`{c}` is not an axis letter in the result; the result is one term of letters"
            )));
        }
        if out_letters.chars().take(i).any(|p| p == c) {
            return Err(bad(format!("the result names the axis `{c}` twice")));
        }
        if !lhs.contains(c) {
            return Err(bad(format!(
                "the result's axis `{c}` is not an axis of any operand"
            )));
        }
        let d = sizes
            .iter()
            .find(|(l, _, _)| *l == c)
            .map_or_else(Dim::unknown, |(_, d, _)| d.clone());
        dims.push(d);
    }
    let dtype = dtype.map_or(DType::F32, |t| t.dtype);
    Ok(tensor(dtype, Some(Shape(dims))))
}
