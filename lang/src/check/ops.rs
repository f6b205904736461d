//! Typing rules of the operators, literals, indexing and tensor properties.
//!
//! Each rule takes the abstract values of the operands with the spans they came from and
//! returns the result's abstract value or one diagnostic that labels those spans. `src` is
//! the text those spans index, so that hints can quote the user's own expressions
//! (`` `x @ w1.T` fits ``).
//!
//! # What the rules assume about unknowns
//!
//! - [`Ty::Unknown`] (after an error, or from unchecked code) makes the result unknown and
//!   never raises an error, so one mistake gives one message. [`Ty::Never`] (the type of
//!   `return`) makes the result `Never`.
//! - A `?` dim (known only at run time) fits any other dim and flows through; the value
//!   is checked when it arrives.
//! - A symbolic dim (`n`, from an annotation) flows through unchanged. Where two dims must be
//!   equal, `n` fits `n`, but `n` does not fit `m` (two names are independent sizes) nor
//!   `3`: the checker cannot prove that they are equal, so it reports an error rather than
//!   let a wrong program through. Broadcasting `n` against a known `1` is fine.
//!
//! # Dtypes
//!
//! Literals are *weak* ([`TensorTy::weak`]): a weak operand adopts the other operand's dtype
//! when that one is of the same kind or a higher one (bool < integer < float), so `x * 2`
//! keeps `x`'s dtype and `arange(5) * 0.5` is `f32`. Two strong operands of the same kind
//! and different dtypes: `i32` with `i64` gives `i64`, but two different float dtypes are an
//! error (E0201) with a hint that casts one of them. `/` on integers gives `f32`; `%` and
//! `floor_div` keep integers; comparisons give `bool`; `&&`, `||` and `!` need `bool`.
//!
//! Small integer and float scalars keep their values through arithmetic (`2 * 64`, `-1`),
//! because axes, indices and shapes are often computed.

use std::fmt::Write as _;

use ir::{DType, Dim, Shape, SliceDim};

use crate::ast::{BinOp, Ident, UnaryOp};
use crate::check::ty::{Const, IntVal, TensorTy, Ty};
use crate::diagnostics::Diagnostic;
use crate::span::Span;

/// An operand: its abstract value and the span of the expression that produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct Typed {
    /// What is known about the value.
    pub ty: Ty,
    /// The expression it came from.
    pub span: Span,
}

/// One checked index item (see [`crate::ast::IndexItem`]).
#[derive(Clone, Debug, PartialEq)]
pub enum TypedIndex {
    /// An integer or an integer tensor.
    Expr(Typed),
    /// `start:end:step` with the parts that were given.
    Slice {
        /// First index.
        start: Option<Typed>,
        /// One past the last index.
        end: Option<Typed>,
        /// Step.
        step: Option<Typed>,
        /// The whole slice.
        span: Span,
    },
    /// `...`.
    Ellipsis(Span),
}

/// The result of a rule: a value, or one diagnostic.
pub(crate) type RuleResult<T> = Result<T, Box<Diagnostic>>;

/// `lhs op rhs` for every binary operator (`..` is the walker's: it makes a range).
/// `&&` and `||` take scalar bools (the walker evaluates them short-circuit; on tensors the
/// hint is `logical_and`/`logical_or`). Arithmetic lifts over tuples and records of the same
/// structure; a tensor broadcasts into every leaf of a structure.
pub fn binary(
    src: &str,
    op: BinOp,
    lhs: &Typed,
    rhs: &Typed,
    op_span: Span,
) -> Result<Ty, Box<Diagnostic>> {
    // Labels go on the operands; the operator itself needs none.
    let _ = op_span;
    // Strings are values (LANGUAGE.md §3) and compare for equality, as in Python; they have
    // no order and no arithmetic, so every other operator on them falls through to the
    // tensor rule's error.
    if let (Ty::Str(x), Ty::Str(y), BinOp::Eq | BinOp::Ne) = (&lhs.ty, &rhs.ty, op) {
        let value = match (x, y) {
            (Some(x), Some(y)) => Some(Const::Bool((x == y) == (op == BinOp::Eq))),
            _ => None,
        };
        return Ok(Ty::Tensor(TensorTy {
            dtype: DType::Bool,
            shape: Some(Shape::scalar()),
            weak: false,
            value,
        }));
    }
    let ctx = BinCtx {
        src,
        op: Elementwise::from_binop(op),
        lhs_span: lhs.span,
        rhs_span: rhs.span,
    };
    let mut path = Vec::new();
    ctx.lift(&lhs.ty, &rhs.ty, &mut path).map_err(|mut d| {
        if matches!((&lhs.ty, &rhs.ty), (Ty::Str(_), Ty::Str(_)))
            && matches!(op, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
        {
            d.notes.push(
                "strings compare only for equality (`==`, `!=`); they have no order".to_string(),
            );
        }
        d
    })
}

/// `-x` and `!c` (lifted over structures like [`binary`]).
pub fn unary(
    src: &str,
    op: UnaryOp,
    operand: &Typed,
    op_span: Span,
) -> Result<Ty, Box<Diagnostic>> {
    let mut path = Vec::new();
    unary_lift(src, op, &operand.ty, operand.span, op_span, &mut path)
}

/// A list literal `[a, b, ...]`: a tensor whose rows must have equal shapes (the error
/// points at the odd row); weak when every element is weak.
pub fn list_literal(src: &str, elems: &[Typed], span: Span) -> Result<Ty, Box<Diagnostic>> {
    let mut rows: Vec<&TensorTy> = Vec::with_capacity(elems.len());
    for e in elems {
        match &e.ty {
            Ty::Tensor(t) => rows.push(t),
            Ty::Unknown => return Ok(Ty::Unknown),
            Ty::Never => return Ok(Ty::Never),
            other => {
                return Err(not_a_tensor(
                    format!("a list literal holds numbers or tensors, found {other}"),
                    e.span,
                    other,
                )
                .with_label(span, "in this list")
                .into());
            }
        }
    }
    let Some((first, first_elem)) = rows.first().zip(elems.first()) else {
        // `[]` is an empty weak float vector; as a shape it is the scalar shape.
        let mut t = TensorTy::new(DType::F32, Some(Shape::known(&[0])));
        t.weak = true;
        return Ok(Ty::Tensor(t));
    };
    let mut dtype = first.dtype;
    let mut weak = first.weak;
    let mut row_shape: Option<Shape> = first.shape.clone();
    let mut row_from = 0usize;
    for (i, (t, e)) in rows.iter().zip(elems).enumerate().skip(1) {
        let acc = TensorTy {
            dtype,
            shape: None,
            weak,
            value: None,
        };
        match promote(&acc, t) {
            Ok((d, w)) => {
                dtype = d;
                weak = w;
            }
            Err((a, b)) => {
                return Err(Diagnostic::error(
                    "E0201",
                    format!("dtypes do not mix in a list literal: {a} and {b}"),
                    e.span,
                )
                .with_primary_label(format!("is {t}"))
                .with_label(first_elem.span, format!("is {first}"))
                .with_hint(format!(
                    "cast the odd element: `{}({})`",
                    a.name(),
                    quote(src, e.span)
                ))
                .into());
            }
        }
        match (&mut row_shape, &t.shape) {
            (Some(acc), Some(s)) => {
                let fits = acc.rank() == s.rank()
                    && acc.dims().iter().zip(s.dims()).all(|(a, b)| a.may_equal(b));
                if !fits {
                    let (odd, odd_span) = (t, e.span);
                    let (base, base_span) = match (rows.get(row_from), elems.get(row_from)) {
                        (Some(b), Some(be)) => (*b, be.span),
                        _ => (*first, first_elem.span),
                    };
                    return Err(Diagnostic::error(
                        "E0303",
                        format!(
                            "rows of a list literal differ in shape: {} and {}",
                            shape_text(base.shape.as_ref()),
                            shape_text(odd.shape.as_ref())
                        ),
                        odd_span,
                    )
                    .with_primary_label(format!(
                        "row {i} has shape {}",
                        shape_text(odd.shape.as_ref())
                    ))
                    .with_label(
                        base_span,
                        format!(
                            "row {row_from} has shape {}",
                            shape_text(base.shape.as_ref())
                        ),
                    )
                    .with_note("every row of a tensor literal must have the same shape")
                    .into());
                }
                // Prefer what is known: a `?` in one row and `3` in another make `3`.
                for (a, b) in acc.0.iter_mut().zip(s.dims()) {
                    if a.is_unknown() && !b.is_unknown() {
                        *a = b.clone();
                    }
                }
            }
            (None, Some(s)) => {
                row_shape = Some(s.clone());
                row_from = i;
            }
            (_, None) => {}
        }
    }
    let shape = row_shape.map(|s| {
        let mut dims = Vec::with_capacity(s.rank() + 1);
        dims.push(Dim::Known(rows.len()));
        dims.extend(s.0);
        Shape(dims)
    });
    // A list of integer scalars keeps its values: it is often a shape or an axis list.
    let value = if dtype.is_int() && shape.as_ref().is_some_and(|s| s.rank() == 1) {
        rows.iter()
            .map(|t| match &t.value {
                Some(Const::Ints(v)) if t.is_scalar() && v.len() == 1 => v.first().cloned(),
                _ => None,
            })
            .collect::<Option<Vec<IntVal>>>()
            .map(Const::Ints)
    } else {
        None
    };
    Ok(Ty::Tensor(TensorTy {
        dtype,
        shape,
        weak,
        value,
    }))
}

/// `base[items]`: integer indices drop axes, slices keep them, `...` fills, an integer
/// tensor gathers. Known out-of-range integer indices are errors.
///
/// Integer tensor indices follow NumPy's advanced indexing: their shapes broadcast
/// together (with any integer scalars beside them) and the result's dims take the place
/// of the indexed axes when those are adjacent, or come first otherwise.
pub fn index(
    src: &str,
    base: &Typed,
    items: &[TypedIndex],
    span: Span,
) -> Result<Ty, Box<Diagnostic>> {
    let _ = span;
    let t = match &base.ty {
        Ty::Tensor(t) => t,
        Ty::Unknown => return Ok(Ty::Unknown),
        Ty::Never => return Ok(Ty::Never),
        other => {
            let mut d = not_a_tensor(format!("cannot index {other}"), base.span, other);
            if let Ty::Tuple(_) = other {
                d = d.with_hint(format!(
                    "take an element of a tuple with a field: `{}.0`",
                    quote(src, base.span)
                ));
            }
            return Err(d.into());
        }
    };
    // Classify the items and check their types.
    let mut kinds: Vec<Item> = Vec::with_capacity(items.len());
    let mut consuming = 0usize;
    let mut ellipsis: Option<Span> = None;
    let mut has_tensor = false;
    for item in items {
        let k = match item {
            TypedIndex::Ellipsis(s) => {
                if ellipsis.is_some() {
                    return Err(
                        Diagnostic::error("E0305", "an index can hold only one `...`", *s)
                            .with_primary_label("second `...`")
                            .into(),
                    );
                }
                ellipsis = Some(*s);
                Item::Ellipsis
            }
            TypedIndex::Expr(e) => match &e.ty {
                Ty::Unknown => return Ok(Ty::Unknown),
                Ty::Never => return Ok(Ty::Never),
                Ty::Tensor(it) if it.dtype.is_int() => {
                    consuming += 1;
                    if it.is_scalar() {
                        Item::Int(scalar_int(it), e.span)
                    } else {
                        has_tensor = true;
                        Item::Tensor(it.shape.as_ref(), e.span)
                    }
                }
                Ty::Tensor(it) => {
                    let mut d = Diagnostic::error(
                        "E0202",
                        format!("an index must be an integer, found {it}"),
                        e.span,
                    )
                    .with_primary_label(format!("is {it}"));
                    d = if it.dtype == DType::Bool {
                        d.with_hint("select elementwise with `where(mask, x, 0.0)`")
                    } else {
                        d.with_hint(format!("convert it: `i64({})`", quote(src, e.span)))
                    };
                    return Err(d.into());
                }
                other => {
                    return Err(not_a_tensor(
                        format!("an index must be an integer, found {other}"),
                        e.span,
                        other,
                    )
                    .into());
                }
            },
            TypedIndex::Slice {
                start, end, step, ..
            } => {
                let mut parts = [None; 3];
                for (slot, part) in parts.iter_mut().zip([start, end, step]) {
                    let Some(p) = part else { continue };
                    match &p.ty {
                        Ty::Unknown => return Ok(Ty::Unknown),
                        Ty::Never => return Ok(Ty::Never),
                        Ty::Tensor(pt) if pt.dtype.is_int() && pt.is_scalar() => {
                            *slot = Some(scalar_int(pt));
                        }
                        other => {
                            return Err(Diagnostic::error(
                                "E0202",
                                format!("a slice bound must be an integer scalar, found {other}"),
                                p.span,
                            )
                            .with_primary_label(format!("is {other}"))
                            .into());
                        }
                    }
                }
                if let (Some(Some(0)), Some(st)) = (parts[2], step) {
                    return Err(
                        Diagnostic::error("E0309", "a slice step cannot be zero", st.span)
                            .with_primary_label("step 0")
                            .with_hint("a step of 1 takes every element; -1 walks backwards")
                            .into(),
                    );
                }
                consuming += 1;
                Item::Slice(parts)
            }
        };
        kinds.push(k);
    }
    let Some(shape) = &t.shape else {
        return Ok(Ty::Tensor(TensorTy::new(t.dtype, None)));
    };
    let rank = shape.rank();
    if consuming > rank {
        // Point at the first item that has no axis left.
        let extra = items
            .iter()
            .filter(|i| !matches!(i, TypedIndex::Ellipsis(_)))
            .nth(rank)
            .map_or(base.span, index_item_span);
        return Err(Diagnostic::error(
            "E0305",
            format!(
                "too many indices: {t} has {rank} {}, indexed with {consuming}",
                if rank == 1 { "axis" } else { "axes" }
            ),
            extra,
        )
        .with_primary_label("no axis left for this index")
        .with_label(base.span, format!("is {t}"))
        .into());
    }
    // Assign axes: items before `...` from the left, the rest aligned to the right.
    let fill = rank - consuming;
    let mut axis = 0usize;
    let mut out: Vec<Dim> = Vec::with_capacity(rank);
    let mut adv = Advanced {
        shape: Shape::scalar(),
        at: None,
        adjacent: true,
        last_item: None,
    };
    for (pos, k) in kinds.iter().enumerate() {
        match k {
            Item::Ellipsis => {
                for d in shape.dims().iter().skip(axis).take(fill) {
                    out.push(d.clone());
                }
                axis += fill;
            }
            Item::Int(v, s) => {
                let dim = shape.dims().get(axis).cloned().unwrap_or(Dim::unknown());
                if let Some(i) = v {
                    check_int_index(*i, &dim, axis, t, base.span, *s)?;
                }
                // Beside a tensor index, an integer is an advanced index too (NumPy).
                if has_tensor {
                    adv.add(&Shape::scalar(), pos, out.len(), *s)?;
                }
                axis += 1;
            }
            Item::Tensor(sh, s) => {
                let unknown = Shape(vec![Dim::unknown()]);
                adv.add(sh.unwrap_or(&unknown), pos, out.len(), *s)?;
                axis += 1;
            }
            Item::Slice(parts) => {
                let dim = shape.dims().get(axis).cloned().unwrap_or(Dim::unknown());
                out.push(slice_len(&dim, *parts));
                axis += 1;
            }
        }
    }
    // Axes no item reached are kept whole.
    out.extend(shape.dims().iter().skip(axis).cloned());
    if let Some(p) = adv.at {
        let at = if adv.adjacent { p } else { 0 };
        let tail = out.split_off(at.min(out.len()));
        out.extend(adv.shape.0);
        out.extend(tail);
    }
    Ok(Ty::Tensor(TensorTy::new(t.dtype, Some(Shape(out)))))
}

/// A property of a tensor, `x.T`, `x.shape`, `x.dtype`; `None` when `name` is not one
/// (the walker then tries method sugar or reports an unknown field).
pub fn property(src: &str, base: &Typed, name: &Ident) -> Option<Result<Ty, Box<Diagnostic>>> {
    let prop = match &*name.name {
        "T" => Prop::T,
        "shape" => Prop::Shape,
        "dtype" => Prop::DType,
        _ => return None,
    };
    let t = match &base.ty {
        Ty::Tensor(t) => t,
        Ty::Unknown => {
            return Some(Ok(match prop {
                Prop::DType => Ty::Str(None),
                _ => Ty::Unknown,
            }));
        }
        Ty::Never => return Some(Ok(Ty::Never)),
        _ => return None,
    };
    Some(match prop {
        Prop::T => transpose_last_two(src, t, base.span, name.span),
        Prop::Shape => Ok(shape_tuple(t)),
        Prop::DType => Ok(Ty::Str(Some(t.dtype.name().into()))),
    })
}

/// The value of `x.shape`: a tuple of `i64` scalars whose values are the dims (unit for a
/// scalar, unknown when the rank is).
pub(crate) fn shape_tuple(t: &TensorTy) -> Ty {
    let Some(shape) = &t.shape else {
        return Ty::Unknown;
    };
    if shape.rank() == 0 {
        return Ty::Unit;
    }
    Ty::Tuple(shape.dims().iter().map(dim_scalar).collect())
}

/// An `i64` scalar holding the size `d` (its value is known unless `d` is `?`).
pub(crate) fn dim_scalar(d: &Dim) -> Ty {
    let mut s = TensorTy::new(DType::I64, Some(Shape::scalar()));
    s.value = match d {
        Dim::Known(n) => i64::try_from(*n)
            .ok()
            .map(|n| Const::Ints(vec![IntVal::Lit(n)])),
        Dim::Sym(_) if d.is_unknown() => None,
        Dim::Sym(name) => Some(Const::Ints(vec![IntVal::Sym(name.clone())])),
    };
    Ty::Tensor(s)
}

/// The advanced (tensor) indices of an index expression, gathered as they are met.
struct Advanced {
    /// Their broadcast shape so far.
    shape: Shape,
    /// Where in the result their dims go, if they are adjacent.
    at: Option<usize>,
    /// Whether every advanced index so far followed the previous one directly.
    adjacent: bool,
    /// The position of the last advanced index among the items.
    last_item: Option<usize>,
}

impl Advanced {
    fn add(&mut self, idx: &Shape, pos: usize, out_len: usize, span: Span) -> RuleResult<()> {
        self.shape = ir::broadcast_shapes(&self.shape, idx).map_err(|(_, a, b)| {
            Diagnostic::error(
                "E0302",
                format!(
                    "tensor indices do not broadcast together: {} and {idx} ({a} vs {b})",
                    self.shape
                ),
                span,
            )
            .with_primary_label(format!("has shape {idx}"))
        })?;
        if self.last_item.is_some_and(|prev| prev + 1 != pos) {
            self.adjacent = false;
        }
        self.last_item = Some(pos);
        self.at.get_or_insert(out_len);
        Ok(())
    }
}

enum Prop {
    T,
    Shape,
    DType,
}

/// `x.T`: the transpose of the last two axes.
fn transpose_last_two(src: &str, t: &TensorTy, base: Span, at: Span) -> RuleResult<Ty> {
    let Some(shape) = &t.shape else {
        return Ok(Ty::Tensor(TensorTy::new(t.dtype, None)));
    };
    let r = shape.rank();
    if r < 2 {
        let mut d = Diagnostic::error(
            "E0306",
            format!("`.T` swaps the last two axes, but {t} has {r}"),
            at,
        )
        .with_primary_label("needs at least 2 axes")
        .with_label(base, format!("is {t}"));
        if r == 1 {
            d = d.with_hint(format!(
                "make it a row first: `expand_dims({}, 0).T` is a column",
                quote(src, base)
            ));
        }
        return Err(d.into());
    }
    let mut dims = shape.0.clone();
    dims.swap(r - 2, r - 1);
    Ok(Ty::Tensor(TensorTy::new(t.dtype, Some(Shape(dims)))))
}

/// One classified index item.
enum Item<'a> {
    /// An integer scalar, with its value when known.
    Int(Option<i64>, Span),
    /// An integer tensor (gathers), with its shape when known.
    Tensor(Option<&'a Shape>, Span),
    /// A slice: start, end, step; `Some(None)` is a part given with an unknown value.
    Slice([Option<Option<i64>>; 3]),
    /// `...`.
    Ellipsis,
}

fn index_item_span(i: &TypedIndex) -> Span {
    match i {
        TypedIndex::Expr(e) => e.span,
        TypedIndex::Slice { span, .. } | TypedIndex::Ellipsis(span) => *span,
    }
}

fn check_int_index(
    i: i64,
    dim: &Dim,
    axis: usize,
    t: &TensorTy,
    base: Span,
    at: Span,
) -> RuleResult<()> {
    let Some(n) = dim.known() else { return Ok(()) };
    let n_i = i64::try_from(n).unwrap_or(i64::MAX);
    if (-n_i..n_i).contains(&i) {
        return Ok(());
    }
    let mut d = Diagnostic::error(
        "E0304",
        format!("index {i} is out of range for axis {axis} of size {n}"),
        at,
    )
    .with_primary_label(format!("index {i}"))
    .with_label(base, format!("is {t}"));
    d = if n == 0 {
        d.with_note(format!("axis {axis} is empty: no index is valid"))
    } else {
        d.with_note(format!(
            "valid indices for axis {axis} are 0 to {} (or -{n} to -1 from the end)",
            n - 1
        ))
    };
    Err(d.into())
}

/// The length of a slice of an axis of size `dim`, NumPy-style (clamped).
fn slice_len(dim: &Dim, parts: [Option<Option<i64>>; 3]) -> Dim {
    let [start, end, step] = parts;
    if let Some(n) = dim.known() {
        let known = |p: Option<Option<i64>>| match p {
            None => Some(None),
            Some(Some(v)) => Some(Some(v)),
            Some(None) => None,
        };
        if let (Some(a), Some(b), Some(s)) = (known(start), known(end), known(step)) {
            return SliceDim::resolve(a, b, s, n).map_or(Dim::unknown(), |sd| Dim::Known(sd.len));
        }
        return Dim::unknown();
    }
    // A symbolic or unknown axis keeps its size only under a full slice.
    let full = start.is_none() && end.is_none() && matches!(step, None | Some(Some(1 | -1)));
    if full { dim.clone() } else { Dim::unknown() }
}

// ---------------------------------------------------------------------------------------
// Elementwise binary rules, shared with the builtins.

/// The elementwise binary operations: operators and the builtins that behave like them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elementwise {
    /// An infix operator.
    Op(BinOp),
    /// `floor_div(a, b)`.
    FloorDiv,
    /// `maximum(a, b)` / `minimum(a, b)`.
    MinMax(&'static str),
    /// `logical_and(a, b)` / `logical_or(a, b)`.
    Logical(&'static str),
}

impl Elementwise {
    fn from_binop(op: BinOp) -> Elementwise {
        Elementwise::Op(op)
    }

    /// True for the operations that lift over tuples and records.
    fn lifts(self) -> bool {
        matches!(
            self,
            Elementwise::Op(
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem | BinOp::Pow
            )
        )
    }

    /// `a + b` or `maximum(a, b)`, with `a` and `b` already written.
    fn show(self, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display) -> String {
        match self {
            Elementwise::Op(op) => format!("{a} {} {b}", op.symbol()),
            Elementwise::FloorDiv => format!("floor_div({a}, {b})"),
            Elementwise::MinMax(name) | Elementwise::Logical(name) => {
                format!("{name}({a}, {b})")
            }
        }
    }

    /// How the operation is named in a message (`` `+` ``, `` `maximum` ``).
    fn name(self) -> String {
        match self {
            Elementwise::Op(op) => format!("`{}`", op.symbol()),
            Elementwise::FloorDiv => "`floor_div`".to_string(),
            Elementwise::MinMax(n) | Elementwise::Logical(n) => format!("`{n}`"),
        }
    }
}

/// One step into a structure, for messages about a leaf.
#[derive(Clone, Debug)]
enum PathSeg {
    Field(crate::ast::Name),
    Index(usize),
}

fn path_text(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Field(n) => {
                let _ = write!(s, ".{n}");
            }
            PathSeg::Index(i) => {
                let _ = write!(s, ".{i}");
            }
        }
    }
    s
}

/// What a binary rule needs besides the operand types.
pub(crate) struct BinCtx<'a> {
    /// The source the spans index.
    pub src: &'a str,
    /// The operation.
    pub op: Elementwise,
    /// The left operand's span.
    pub lhs_span: Span,
    /// The right operand's span.
    pub rhs_span: Span,
}

impl BinCtx<'_> {
    fn lift(&self, l: &Ty, r: &Ty, path: &mut Vec<PathSeg>) -> RuleResult<Ty> {
        match (l, r) {
            (Ty::Unknown, _) | (_, Ty::Unknown) => Ok(Ty::Unknown),
            (Ty::Never, _) | (_, Ty::Never) => Ok(Ty::Never),
            (Ty::Tensor(a), Ty::Tensor(b)) => self
                .tensors(a, b)
                .map(Ty::Tensor)
                .map_err(|d| with_path(d, path)),
            (Ty::Tuple(a), Ty::Tuple(b)) if self.op.lifts() => {
                if a.len() != b.len() {
                    return Err(self.structure_mismatch(
                        l,
                        r,
                        path,
                        format!("tuples of {} and {} elements", a.len(), b.len()),
                    ));
                }
                let mut out = Vec::with_capacity(a.len());
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    path.push(PathSeg::Index(i));
                    out.push(self.lift(x, y, path)?);
                    path.pop();
                }
                Ok(Ty::Tuple(out))
            }
            (Ty::Record(a), Ty::Record(b)) if self.op.lifts() => {
                if let Some(missing) = a.keys().find(|k| !b.contains_key(*k)) {
                    return Err(self.structure_mismatch(
                        l,
                        r,
                        path,
                        format!("field `{missing}` is missing on the right"),
                    ));
                }
                if let Some(extra) = b.keys().find(|k| !a.contains_key(*k)) {
                    return Err(self.structure_mismatch(
                        l,
                        r,
                        path,
                        format!("field `{extra}` is missing on the left"),
                    ));
                }
                let mut out = std::collections::BTreeMap::new();
                for ((name, x), y) in a.iter().zip(b.values()) {
                    path.push(PathSeg::Field(name.clone()));
                    out.insert(name.clone(), self.lift(x, y, path)?);
                    path.pop();
                }
                Ok(Ty::Record(out))
            }
            (Ty::Tuple(a), Ty::Tensor(_)) if self.op.lifts() => {
                let mut out = Vec::with_capacity(a.len());
                for (i, x) in a.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    out.push(self.lift(x, r, path)?);
                    path.pop();
                }
                Ok(Ty::Tuple(out))
            }
            (Ty::Tensor(_), Ty::Tuple(b)) if self.op.lifts() => {
                let mut out = Vec::with_capacity(b.len());
                for (i, y) in b.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    out.push(self.lift(l, y, path)?);
                    path.pop();
                }
                Ok(Ty::Tuple(out))
            }
            (Ty::Record(a), Ty::Tensor(_)) if self.op.lifts() => {
                let mut out = std::collections::BTreeMap::new();
                for (name, x) in a {
                    path.push(PathSeg::Field(name.clone()));
                    out.insert(name.clone(), self.lift(x, r, path)?);
                    path.pop();
                }
                Ok(Ty::Record(out))
            }
            (Ty::Tensor(_), Ty::Record(b)) if self.op.lifts() => {
                let mut out = std::collections::BTreeMap::new();
                for (name, y) in b {
                    path.push(PathSeg::Field(name.clone()));
                    out.insert(name.clone(), self.lift(l, y, path)?);
                    path.pop();
                }
                Ok(Ty::Record(out))
            }
            (Ty::Tuple(_) | Ty::Record(_), Ty::Tuple(_) | Ty::Record(_)) if self.op.lifts() => {
                Err(self.structure_mismatch(l, r, path, "a tuple and a record".to_string()))
            }
            _ => {
                let (bad, span) = if matches!(l, Ty::Tensor(_)) {
                    (r, self.rhs_span)
                } else {
                    (l, self.lhs_span)
                };
                let mut d = not_a_tensor(
                    format!(
                        "{} needs numbers or tensors, found {}",
                        self.op.name(),
                        self.op.show(l, r)
                    ),
                    span,
                    bad,
                );
                if matches!(bad, Ty::Tuple(_) | Ty::Record(_)) {
                    d = d.with_note(format!(
                        "{} does not lift over tuples and records; `map` applies a function to every leaf",
                        self.op.name()
                    ));
                }
                Err(with_path(d.into(), path))
            }
        }
    }

    fn structure_mismatch(
        &self,
        l: &Ty,
        r: &Ty,
        path: &[PathSeg],
        what: String,
    ) -> Box<Diagnostic> {
        let d = Diagnostic::error(
            "E0640",
            format!("structures do not match for {}: {what}", self.op.name()),
            self.lhs_span,
        )
        .with_primary_label(format!("is {l}"))
        .with_label(self.rhs_span, format!("is {r}"))
        .with_note(
            "arithmetic on tuples and records needs the same elements or fields on both sides",
        );
        with_path(d.into(), path)
    }

    /// The rule on two tensors.
    pub(crate) fn tensors(&self, a: &TensorTy, b: &TensorTy) -> RuleResult<TensorTy> {
        if let Elementwise::Op(op @ (BinOp::And | BinOp::Or)) = self.op {
            return self.short_circuit(op, a, b);
        }
        if let Elementwise::Op(BinOp::MatMul) = self.op {
            return matmul(self.src, a, self.lhs_span, b, self.rhs_span);
        }
        let (dtype, weak) = promote(a, b).map_err(|(x, y)| self.dtype_mix(a, b, x, y))?;
        let result_dtype = self.result_dtype(a, b, dtype)?;
        if let Elementwise::Op(BinOp::Pow) = self.op
            && dtype.is_int()
            && let Some(e) = scalar_int(b)
            && e < 0
        {
            return Err(Diagnostic::error(
                "E0203",
                format!("an integer cannot be raised to the negative power {e}"),
                self.rhs_span,
            )
            .with_primary_label(format!("exponent {e}"))
            .with_label(self.lhs_span, format!("is {a}"))
            .with_hint(format!(
                "use a float base: `f32({}) ** {}`",
                quote(self.src, self.lhs_span),
                quote(self.src, self.rhs_span)
            ))
            .into());
        }
        let shape = match (&a.shape, &b.shape) {
            (Some(x), Some(y)) => Some(self.broadcast(a, x, b, y)?),
            _ => None,
        };
        let value = fold(self.op, a, b, result_dtype);
        Ok(TensorTy {
            dtype: result_dtype,
            shape,
            weak,
            value,
        })
    }

    fn result_dtype(&self, a: &TensorTy, b: &TensorTy, dtype: DType) -> RuleResult<DType> {
        let bool_arith = || {
            let culprit = if a.dtype == DType::Bool {
                self.lhs_span
            } else {
                self.rhs_span
            };
            Box::new(
                Diagnostic::error(
                    "E0202",
                    format!(
                        "{} needs numbers, found {}",
                        self.op.name(),
                        self.op.show(a, b)
                    ),
                    culprit,
                )
                .with_primary_label("is bool")
                .with_hint(format!(
                    "count with integers: `i64({})`",
                    quote(self.src, culprit)
                )),
            )
        };
        Ok(match self.op {
            Elementwise::Op(BinOp::Eq | BinOp::Ne) => DType::Bool,
            Elementwise::Op(BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge) => {
                if dtype == DType::Bool {
                    return Err(bool_arith());
                }
                DType::Bool
            }
            Elementwise::Op(BinOp::Div) => match dtype {
                DType::Bool => return Err(bool_arith()),
                d if d.is_int() => DType::F32,
                d => d,
            },
            Elementwise::Logical(name) => {
                if dtype != DType::Bool {
                    let culprit = if a.dtype == DType::Bool {
                        self.rhs_span
                    } else {
                        self.lhs_span
                    };
                    return Err(Diagnostic::error(
                        "E0202",
                        format!("`{name}` needs bool tensors, found {}", self.op.show(a, b)),
                        culprit,
                    )
                    .with_primary_label("is not bool")
                    .with_hint(format!(
                        "compare first: `{} != 0`",
                        quote(self.src, culprit)
                    ))
                    .into());
                }
                DType::Bool
            }
            _ => {
                if dtype == DType::Bool {
                    return Err(bool_arith());
                }
                dtype
            }
        })
    }

    fn dtype_mix(&self, a: &TensorTy, b: &TensorTy, x: DType, y: DType) -> Box<Diagnostic> {
        let (ls, rs) = (
            quote(self.src, self.lhs_span),
            quote(self.src, self.rhs_span),
        );
        let up = self.op.show(&format!("{}({ls})", y.name()), &rs);
        let down = self.op.show(&ls, &format!("{}({rs})", x.name()));
        Diagnostic::error(
            "E0201",
            format!("dtypes do not mix: {}", self.op.show(a, b)),
            self.lhs_span,
        )
        .with_primary_label(format!("is {a}"))
        .with_label(self.rhs_span, format!("is {b}"))
        .with_hint(format!("cast one side: `{up}` or `{down}`"))
        .with_note(format!(
            "{x} and {y} never mix silently, to keep precision explicit"
        ))
        .into()
    }

    fn short_circuit(&self, op: BinOp, a: &TensorTy, b: &TensorTy) -> RuleResult<TensorTy> {
        let name = if op == BinOp::And {
            "logical_and"
        } else {
            "logical_or"
        };
        for (t, span) in [(a, self.lhs_span), (b, self.rhs_span)] {
            if t.dtype != DType::Bool {
                return Err(Diagnostic::error(
                    "E0202",
                    format!("`{}` needs bool operands, found {t}", op.symbol()),
                    span,
                )
                .with_primary_label(format!("is {t}"))
                .with_hint(format!("compare first: `{} != 0`", quote(self.src, span)))
                .into());
            }
        }
        for (t, span) in [(a, self.lhs_span), (b, self.rhs_span)] {
            if t.rank().is_some_and(|r| r > 0) {
                return Err(Diagnostic::error(
                    "E0204",
                    format!(
                        "`{}` works on scalar bools, found {}",
                        op.symbol(),
                        self.op.show(a, b)
                    ),
                    span,
                )
                .with_primary_label(format!("is {t}"))
                .with_hint(format!(
                    "`{name}({}, {})` works elementwise on tensors",
                    quote(self.src, self.lhs_span),
                    quote(self.src, self.rhs_span)
                ))
                .into());
            }
        }
        let value = match (&a.value, &b.value) {
            (Some(Const::Bool(x)), Some(Const::Bool(y))) => {
                Some(Const::Bool(if op == BinOp::And {
                    *x && *y
                } else {
                    *x || *y
                }))
            }
            _ => None,
        };
        Ok(TensorTy {
            dtype: DType::Bool,
            shape: Some(Shape::scalar()),
            weak: a.weak && b.weak,
            value,
        })
    }

    fn broadcast(&self, a: &TensorTy, x: &Shape, b: &TensorTy, y: &Shape) -> RuleResult<Shape> {
        // Equal shapes (the common case) need no work beyond the copy.
        if x == y && !x.dims().iter().any(Dim::is_unknown) {
            return Ok(x.clone());
        }
        ir::broadcast_shapes(x, y).map_err(|(from_right, da, db)| {
            let ax = x.rank().saturating_sub(from_right + 1);
            let bx = y.rank().saturating_sub(from_right + 1);
            let neg = from_right + 1;
            let mut d = Diagnostic::error(
                "E0302",
                format!(
                    "shapes do not broadcast: {} ({da} vs {db} at axis -{neg})",
                    self.op.show(a, b)
                ),
                self.lhs_span,
            )
            .with_primary_label(format!("has {da} at axis {ax}"))
            .with_label(self.rhs_span, format!("has {db} at axis {bx}"));
            if let Some(n) = sym_note(&da, &db) {
                d = d.with_note(n);
            }
            d = d.with_note(
                "broadcasting aligns shapes from the right; each pair of dims must be equal or one of them 1",
            );
            // A vector against the second-to-last axis of a matrix: make it a column.
            if y.rank() == 1 && x.rank() >= 2 && y.dims().first().is_some_and(|d0| {
                x.dims().get(x.rank() - 2).is_some_and(|m| m.may_equal(d0))
            }) {
                let col = format!("expand_dims({}, -1)", quote(self.src, self.rhs_span));
                d = d.with_hint(format!(
                    "`{}` broadcasts: {col} is {}[{}, 1]",
                    self.op.show(&quote(self.src, self.lhs_span), &col),
                    b.dtype,
                    y.dims().first().map_or(String::new(), ToString::to_string)
                ));
            }
            Box::new(d)
        })
    }
}

/// Adds where in a structure a leaf's error happened.
fn with_path(mut d: Box<Diagnostic>, path: &[PathSeg]) -> Box<Diagnostic> {
    if !path.is_empty() {
        d.notes.insert(
            0,
            format!("in the leaf `{}` of the structures", path_text(path)),
        );
    }
    d
}

/// Explains why two different symbolic dims (or a name and a number) do not fit.
pub(crate) fn sym_note(a: &Dim, b: &Dim) -> Option<String> {
    match (a, b) {
        (Dim::Sym(x), Dim::Sym(y)) if !a.is_unknown() && !b.is_unknown() => Some(format!(
            "`{x}` and `{y}` are different names for sizes: the checker cannot prove they are equal"
        )),
        (Dim::Sym(x), Dim::Known(n)) | (Dim::Known(n), Dim::Sym(x)) if &**x != "?" => {
            Some(format!(
                "the size `{x}` is not known to be {n}: the checker cannot prove they are equal"
            ))
        }
        _ => None,
    }
}

/// The dtype of `a op b` before the operator's own rule, and whether it is weak; on
/// failure, the two float dtypes that do not mix.
pub(crate) fn promote(a: &TensorTy, b: &TensorTy) -> Result<(DType, bool), (DType, DType)> {
    promote_dtypes((a.dtype, a.weak), (b.dtype, b.weak))
}

/// The promotion rule of LANGUAGE.md §3 and §13 on dtypes alone: each operand is its dtype
/// and whether it is a weak literal. Returns the common dtype and whether the result is
/// still weak, or the two float dtypes that do not mix.
///
/// A weak operand adopts the other's dtype when that one is of the same kind or a higher
/// one (bool < integer < float); two strong operands of different kinds promote to the
/// higher kind, two strong integers to `i64`, and two different strong floats are refused.
/// The checker and the evaluator both call this, so they cannot disagree.
pub fn promote_dtypes(a: (DType, bool), b: (DType, bool)) -> Result<(DType, bool), (DType, DType)> {
    match (a.1, b.1) {
        (true, true) => Ok((if kind(b.0) > kind(a.0) { b.0 } else { a.0 }, true)),
        (true, false) => Ok((weak_with_strong(a.0, b.0), false)),
        (false, true) => Ok((weak_with_strong(b.0, a.0), false)),
        (false, false) => strong_pair(a.0, b.0).map(|d| (d, false)),
    }
}

/// bool < integer < float: the order in which operands promote.
fn kind(d: DType) -> u8 {
    if d == DType::Bool {
        0
    } else if d.is_int() {
        1
    } else {
        2
    }
}

fn weak_with_strong(weak: DType, strong: DType) -> DType {
    if kind(weak) <= kind(strong) {
        strong
    } else {
        weak
    }
}

fn strong_pair(a: DType, b: DType) -> Result<DType, (DType, DType)> {
    if a == b {
        return Ok(a);
    }
    match (kind(a), kind(b)) {
        (2, 2) => Err((a, b)),
        (x, y) if x > y => Ok(a),
        (x, y) if x < y => Ok(b),
        // Two integer dtypes: the wider one.
        _ => Ok(DType::I64),
    }
}

/// The value of an integer scalar, when it is a known number.
pub(crate) fn scalar_int(t: &TensorTy) -> Option<i64> {
    match &t.value {
        Some(Const::Ints(v)) if v.len() == 1 && t.rank() != Some(1) => match v.first() {
            Some(IntVal::Lit(n)) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

/// The value of a numeric scalar as a float, when it is known.
pub(crate) fn scalar_float(t: &TensorTy) -> Option<f64> {
    match &t.value {
        Some(Const::Float(f)) => Some(*f),
        Some(Const::Ints(_)) => scalar_int(t).map(|n| n as f64),
        _ => None,
    }
}

fn int_const(n: i64) -> Option<Const> {
    Some(Const::Ints(vec![IntVal::Lit(n)]))
}

/// Folds the value of a scalar operation whose operands' values are known.
fn fold(op: Elementwise, a: &TensorTy, b: &TensorTy, result: DType) -> Option<Const> {
    if a.value.is_none() || b.value.is_none() || !a.is_scalar() || !b.is_scalar() {
        return None;
    }
    let Elementwise::Op(op) = op else {
        return match op {
            Elementwise::FloorDiv if result.is_int() => {
                let (x, y) = (scalar_int(a)?, scalar_int(b)?);
                if y == 0 {
                    return None;
                }
                int_const(x.checked_div(y)? - i64::from((x % y != 0) && ((x < 0) != (y < 0))))
            }
            _ => None,
        };
    };
    if result.is_int() {
        let (x, y) = (scalar_int(a)?, scalar_int(b)?);
        let v = match op {
            BinOp::Add => x.checked_add(y)?,
            BinOp::Sub => x.checked_sub(y)?,
            BinOp::Mul => x.checked_mul(y)?,
            BinOp::Rem if y != 0 => {
                let r = x.checked_rem(y)?;
                if r != 0 && ((r < 0) != (y < 0)) {
                    r + y
                } else {
                    r
                }
            }
            BinOp::Pow => x.checked_pow(u32::try_from(y).ok()?)?,
            _ => return None,
        };
        let fits = result == DType::I64 || i32::try_from(v).is_ok();
        return if fits { int_const(v) } else { None };
    }
    if result.is_float() {
        let (x, y) = (scalar_float(a)?, scalar_float(b)?);
        let v = match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Div => x / y,
            BinOp::Pow => x.powf(y),
            BinOp::Rem => x - y * (x / y).floor(),
            _ => return None,
        };
        return Some(Const::Float(v));
    }
    if result == DType::Bool {
        let ord = match (scalar_int(a), scalar_int(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => match (&a.value, &b.value) {
                (Some(Const::Bool(x)), Some(Const::Bool(y))) => x.partial_cmp(y),
                _ => scalar_float(a)?.partial_cmp(&scalar_float(b)?),
            },
        };
        let ord = ord?;
        use std::cmp::Ordering::*;
        let v = match op {
            BinOp::Eq => ord == Equal,
            BinOp::Ne => ord != Equal,
            BinOp::Lt => ord == Less,
            BinOp::Le => ord != Greater,
            BinOp::Gt => ord == Greater,
            BinOp::Ge => ord != Less,
            _ => return None,
        };
        return Some(Const::Bool(v));
    }
    None
}

// ---------------------------------------------------------------------------------------
// Matrix product.

/// `a @ b` with NumPy `matmul` rules: 1-D operands are a row (left) or a column (right)
/// that is dropped from the result, batch dims broadcast.
pub(crate) fn matmul(
    src: &str,
    a: &TensorTy,
    la: Span,
    b: &TensorTy,
    lb: Span,
) -> RuleResult<TensorTy> {
    let (dtype, weak) = promote(a, b).map_err(|(x, y)| {
        BinCtx {
            src,
            op: Elementwise::Op(BinOp::MatMul),
            lhs_span: la,
            rhs_span: lb,
        }
        .dtype_mix(a, b, x, y)
    })?;
    if dtype == DType::Bool {
        return Err(Diagnostic::error(
            "E0202",
            format!("matmul needs numbers, found {a} @ {b}"),
            la,
        )
        .with_primary_label(format!("is {a}"))
        .with_label(lb, format!("is {b}"))
        .with_hint(format!("convert first: `i64({})`", quote(src, la)))
        .into());
    }
    for (t, s) in [(a, la), (b, lb)] {
        if t.is_scalar() {
            return Err(Diagnostic::error(
                "E0306",
                format!("matmul needs operands with at least one axis, found {a} @ {b}"),
                s,
            )
            .with_primary_label(format!("is the scalar {t}"))
            .with_hint(format!(
                "multiply by a scalar with `*`: `{} * {}`",
                quote(src, la),
                quote(src, lb)
            ))
            .into());
        }
    }
    let (Some(sa), Some(sb)) = (&a.shape, &b.shape) else {
        return Ok(TensorTy {
            dtype,
            shape: None,
            weak,
            value: None,
        });
    };
    let (ra, rb) = (sa.rank(), sb.rank());
    let da = sa.dims();
    let db = sb.dims();
    // The contracted dims: a's last, b's second to last (its only one when 1-D).
    let (Some(ka), Some(kb)) = (da.last(), db.get(rb.saturating_sub(2))) else {
        return Ok(TensorTy::new(dtype, None));
    };
    if !ka.may_equal(kb) {
        let lhs_what = if ra == 1 { "elements" } else { "columns" };
        let rhs_what = if rb == 1 { "elements" } else { "rows" };
        let mut d = Diagnostic::error("E0301", format!("shapes do not fit matmul: {a} @ {b}"), la)
            .with_primary_label(format!("has {ka} {lhs_what}"))
            .with_label(lb, format!("has {kb} {rhs_what}"));
        // Would a transpose of one operand fit?
        if rb >= 2
            && let Some(last_b) = db.last()
            && ka.may_equal(last_b)
        {
            let mut t = sb.0.clone();
            t.swap(rb - 2, rb - 1);
            let bt = format!("{}.T", postfix_quote(src, lb));
            d = d.with_hint(format!(
                "`{} @ {bt}` fits: {bt} is {}",
                quote(src, la),
                TensorTy::new(b.dtype, Some(Shape(t)))
            ));
        } else if ra >= 2
            && let Some(rows_a) = da.get(ra - 2)
            && rows_a.may_equal(kb)
        {
            let mut t = sa.0.clone();
            t.swap(ra - 2, ra - 1);
            let at = format!("{}.T", postfix_quote(src, la));
            d = d.with_hint(format!(
                "`{at} @ {}` fits: {at} is {}",
                quote(src, lb),
                TensorTy::new(a.dtype, Some(Shape(t)))
            ));
        }
        if let Some(n) = sym_note(ka, kb) {
            d = d.with_note(n);
        }
        return Err(d.into());
    }
    let batch_a = Shape(da[..ra.saturating_sub(2)].to_vec());
    let batch_b = Shape(db[..rb.saturating_sub(2)].to_vec());
    let mut dims = ir::broadcast_shapes(&batch_a, &batch_b)
        .map_err(|(_, x, y)| {
            Diagnostic::error(
                "E0301",
                format!("batch dims do not fit matmul: {a} @ {b} ({x} vs {y})"),
                la,
            )
            .with_primary_label(format!("has batch dims {batch_a}"))
            .with_label(lb, format!("has batch dims {batch_b}"))
            .with_note("the dims before the last two broadcast like elementwise operands")
        })?
        .0;
    if ra >= 2
        && let Some(m) = da.get(ra - 2)
    {
        dims.push(m.clone());
    }
    if rb >= 2
        && let Some(n) = db.last()
    {
        dims.push(n.clone());
    }
    Ok(TensorTy {
        dtype,
        shape: Some(Shape(dims)),
        weak,
        value: None,
    })
}

// ---------------------------------------------------------------------------------------
// Unary operators.

fn unary_lift(
    src: &str,
    op: UnaryOp,
    ty: &Ty,
    span: Span,
    op_span: Span,
    path: &mut Vec<PathSeg>,
) -> RuleResult<Ty> {
    match ty {
        Ty::Unknown => Ok(Ty::Unknown),
        Ty::Never => Ok(Ty::Never),
        Ty::Tensor(t) => unary_tensor(src, op, t, span, op_span)
            .map(Ty::Tensor)
            .map_err(|d| with_path(d, path)),
        Ty::Tuple(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, x) in items.iter().enumerate() {
                path.push(PathSeg::Index(i));
                out.push(unary_lift(src, op, x, span, op_span, path)?);
                path.pop();
            }
            Ok(Ty::Tuple(out))
        }
        Ty::Record(fields) => {
            let mut out = std::collections::BTreeMap::new();
            for (name, x) in fields {
                path.push(PathSeg::Field(name.clone()));
                out.insert(name.clone(), unary_lift(src, op, x, span, op_span, path)?);
                path.pop();
            }
            Ok(Ty::Record(out))
        }
        other => Err(with_path(
            not_a_tensor(
                format!(
                    "`{}` needs a number or a tensor, found {other}",
                    op.symbol()
                ),
                span,
                other,
            )
            .into(),
            path,
        )),
    }
}

fn unary_tensor(
    src: &str,
    op: UnaryOp,
    t: &TensorTy,
    span: Span,
    op_span: Span,
) -> RuleResult<TensorTy> {
    match op {
        UnaryOp::Neg => {
            if t.dtype == DType::Bool {
                return Err(Diagnostic::error(
                    "E0202",
                    format!("`-` needs numbers, found {t}"),
                    span,
                )
                .with_primary_label(format!("is {t}"))
                .with_label(op_span, "negation")
                .with_hint(format!("negate a bool with `!{}`", quote(src, span)))
                .into());
            }
            let value = match &t.value {
                Some(Const::Float(f)) => Some(Const::Float(-f)),
                Some(Const::Ints(_)) => scalar_int(t)
                    .and_then(|n| n.checked_neg())
                    .and_then(int_const),
                _ => None,
            };
            Ok(TensorTy { value, ..t.clone() })
        }
        UnaryOp::Not => {
            if t.dtype != DType::Bool {
                return Err(
                    Diagnostic::error("E0202", format!("`!` needs bool, found {t}"), span)
                        .with_primary_label(format!("is {t}"))
                        .with_label(op_span, "logical negation")
                        .with_hint(format!("compare first: `{} == 0`", quote(src, span)))
                        .into(),
                );
            }
            let value = match &t.value {
                Some(Const::Bool(b)) => Some(Const::Bool(!b)),
                _ => None,
            };
            Ok(TensorTy { value, ..t.clone() })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers shared with the builtins.

/// E0205: a value that is not a tensor where a tensor (or a number) is needed.
pub(crate) fn not_a_tensor(message: String, span: Span, ty: &Ty) -> Diagnostic {
    Diagnostic::error("E0205", message, span).with_primary_label(format!("is {ty}"))
}

/// The source text of `span`, or `_` when the span does not index `src`.
pub(crate) fn quote(src: &str, span: Span) -> &str {
    src.get(span.range())
        .filter(|s| !s.is_empty())
        .unwrap_or("_")
}

/// The source text of `span`, parenthesised when a postfix (`.T`) would not apply to all
/// of it (`(a + b).T`).
pub(crate) fn postfix_quote(src: &str, span: Span) -> String {
    let text = quote(src, span);
    let mut depth = 0i32;
    let simple = text.chars().all(|c| match c {
        '(' | '[' | '{' => {
            depth += 1;
            true
        }
        ')' | ']' | '}' => {
            depth -= 1;
            true
        }
        c if depth > 0 => {
            let _ = c;
            true
        }
        c => c.is_alphanumeric() || c == '_' || c == '.',
    });
    if simple {
        text.to_string()
    } else {
        format!("({text})")
    }
}

/// A shape as in messages: `[2, 3]`, or `[...]` when even the rank is unknown.
pub(crate) fn shape_text(s: Option<&Shape>) -> String {
    s.map_or_else(|| "[...]".to_string(), ToString::to_string)
}
