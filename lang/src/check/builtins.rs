//! The first-order builtins of LANGUAGE.md §10 with their typing rules.
//!
//! Builtins that take or return functions (`grad`, `value_and_grad`, `vjp`, `jvp`,
//! `hessian`, `jit`, `map`, `map2`) need to check calls of user functions and live in the
//! walker; [`HIGHER_ORDER`] lists them. Every other builtin is typed here, primitives
//! through `ir::infer`.
//!
//! Each builtin has a signature (its parameter names in order; the first few required)
//! and a rule. A call binds positional arguments in order and named arguments by name
//! (any parameter may be named), then applies the rule. An unknown argument
//! ([`Ty::Unknown`]) makes the result unknown without an error, except for builtins that
//! always return unit. The rules live in submodules by family: [`creation`], [`math`]
//! (elementwise and reductions), [`shape`], [`neural`] (linear algebra, neural network
//! functions and losses) and [`misc`] (data, summaries and the rest).
//!
//! Choices where LANGUAGE.md leaves room (written here so users and the interpreter agree):
//! - Float functions (`exp`, `tanh`, `softmax`, `mean`, ...) of integer or bool tensors
//!   compute in `f32`, as `/` does.
//! - `take(x, idx)` without `axis` indexes the flattened `x` (NumPy); `gather(x, idx,
//!   axis: 0)` is `take` along an axis (default 0), the `gather` primitive.
//! - `dot` of two vectors is their inner product; otherwise it is `matmul`. `outer`
//!   flattens its operands.
//! - `squeeze(x)` without `axis` drops the axes known to be 1 (a `?` axis is kept).
//! - `embedding(ids, table)` takes the integer ids and the float table in either order.
//! - Pooling takes `window`, `stride` (default: the window) and `padding`; convolution
//!   takes `stride`, `padding`, `dilation`, `groups` (each an int or a pair).

mod creation;
mod math;
mod misc;
mod neural;
mod shape;

use ir::{DType, Dim, InferError, Shape};

use crate::ast::Ident;
use crate::check::ops::{RuleResult, Typed, not_a_tensor};
use crate::check::ty::{Const, IntVal, TensorTy, Ty};
use crate::diagnostics::Diagnostic;
use crate::span::Span;

/// Builtins typed by the walker because they call functions.
pub const HIGHER_ORDER: &[&str] = &[
    "grad",
    "value_and_grad",
    "vjp",
    "jvp",
    "hessian",
    "jit",
    "map",
    "map2",
];

/// Every builtin name, first-order or not (for name resolution, "did you mean" and
/// completion).
pub fn names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut v: Vec<&'static str> = TABLE.iter().map(|b| b.name).collect();
        v.extend_from_slice(HIGHER_ORDER);
        v.sort_unstable();
        v
    })
}

/// Types the call `name(args, named)` (`src` is the text the spans index); `None` when `name` is not a first-order builtin.
pub fn call(
    src: &str,
    name: &str,
    args: &[Typed],
    named: &[(Ident, Typed)],
    call_span: Span,
) -> Option<Result<Ty, Box<Diagnostic>>> {
    let b = TABLE
        .binary_search_by(|b| b.name.cmp(name))
        .ok()
        .and_then(|i| TABLE.get(i))?;
    Some(apply(b, src, args, named, call_span))
}

/// The parameters of a first-order builtin, as calls bind them: names in order, how many
/// leading ones are required, and whether extra positional arguments are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Parameter names in order (any of them may be given by name).
    pub params: &'static [&'static str],
    /// How many leading parameters are required.
    pub required: usize,
    /// Whether positional arguments beyond `params` are accepted.
    pub variadic: bool,
}

/// The signature of the first-order builtin `name` (the evaluator binds arguments with
/// it, so that a call accepts exactly what the checker accepts); `None` for other names.
pub fn signature(name: &str) -> Option<Signature> {
    let b = TABLE
        .binary_search_by(|b| b.name.cmp(name))
        .ok()
        .and_then(|i| TABLE.get(i))?;
    Some(Signature {
        params: b.params,
        required: b.required,
        variadic: b.variadic,
    })
}

/// The most parameters any builtin has.
const MAX_PARAMS: usize = 8;

/// One builtin: its name, parameters and rule.
pub(crate) struct Builtin {
    /// The name users call.
    pub name: &'static str,
    /// Parameter names in order.
    pub params: &'static [&'static str],
    /// How many leading parameters are required.
    pub required: usize,
    /// Whether positional arguments beyond `params` are accepted (they go to `rest`).
    pub variadic: bool,
    /// The result when an argument is unknown: unit for effects, unknown otherwise.
    pub unit: bool,
    /// The typing rule.
    pub rule: fn(&Args<'_>) -> RuleResult<Ty>,
}

const fn b(
    name: &'static str,
    params: &'static [&'static str],
    required: usize,
    rule: fn(&Args<'_>) -> RuleResult<Ty>,
) -> Builtin {
    Builtin {
        name,
        params,
        required,
        variadic: false,
        unit: false,
        rule,
    }
}

const fn unit(mut x: Builtin) -> Builtin {
    x.unit = true;
    x
}

const fn variadic(mut x: Builtin) -> Builtin {
    x.variadic = true;
    x
}

const X: &[&str] = &["x"];
const X_AXIS: &[&str] = &["x", "axis"];
const REDUCE: &[&str] = &["x", "axis", "keepdims"];
const XY: &[&str] = &["x", "y"];
const SHAPE_DTYPE: &[&str] = &["shape", "dtype"];
const CAST: &[&str] = &["x"];

/// Every first-order builtin, sorted by name (a test checks the order).
pub(crate) static TABLE: &[Builtin] = &[
    b("abs", X, 1, math::unary),
    b("all", REDUCE, 1, math::reduce),
    b("allclose", &["a", "b", "rtol", "atol"], 2, misc::allclose),
    b("any", REDUCE, 1, math::reduce),
    b(
        "arange",
        &["start", "stop", "step", "dtype"],
        1,
        creation::arange,
    ),
    b("arg", &["name", "default"], 2, misc::arg),
    b("argmax", REDUCE, 1, math::arg_reduce),
    b("argmin", REDUCE, 1, math::arg_reduce),
    unit(b("assert", &["cond", "message"], 1, misc::assert)),
    b("attention", &["q", "k", "v", "mask"], 3, neural::attention),
    b(
        "avg_pool2d",
        &["x", "window", "stride", "padding"],
        2,
        neural::pool2d,
    ),
    b(
        "batch_norm",
        &["x", "weight", "bias", "eps"],
        1,
        neural::batch_norm,
    ),
    b(
        "batches",
        &["data", "size", "shuffle", "drop_last"],
        2,
        misc::batches,
    ),
    b(
        "binary_cross_entropy_with_logits",
        &["logits", "targets"],
        2,
        neural::bce_logits,
    ),
    b("bool", CAST, 1, math::cast),
    b("broadcast_to", &["x", "shape"], 2, shape::broadcast_to),
    b("ceil", X, 1, math::unary),
    b("chr", &["codes"], 1, misc::chr),
    b("clip", &["x", "lo", "hi"], 3, math::clip),
    b("concat", &["xs", "axis"], 1, shape::concat),
    b(
        "conv2d",
        &["x", "w", "bias", "stride", "padding", "dilation", "groups"],
        2,
        neural::conv2d,
    ),
    b("cos", X, 1, math::unary),
    b(
        "cross_entropy",
        &["logits", "labels"],
        2,
        neural::cross_entropy,
    ),
    b("device", X, 1, misc::device),
    b("devices", &[], 0, misc::devices),
    b("dot", XY, 2, neural::dot),
    b("dropout", &["x", "p", "training"], 1, neural::dropout),
    b("dtype", X, 1, misc::dtype),
    variadic(b("einsum", &["spec"], 1, neural::einsum)),
    b("embedding", &["ids", "table"], 2, neural::embedding),
    b("erf", X, 1, math::unary),
    b("exp", X, 1, math::unary),
    b("expand_dims", X_AXIS, 2, shape::expand_dims),
    b("expm1", X, 1, math::unary),
    unit(b(
        "export_mir",
        &["f", "example_args", "path"],
        3,
        misc::export_onnx,
    )),
    unit(b(
        "export_onnx",
        &["f", "example_args", "path", "opset"],
        3,
        misc::export_onnx,
    )),
    b("eye", &["n", "m", "dtype"], 1, creation::eye),
    b("f32", CAST, 1, math::cast),
    b("f64", CAST, 1, math::cast),
    b("flatten", X, 1, shape::flatten),
    b("floor", X, 1, math::unary),
    b("floor_div", XY, 2, math::binary),
    b("full", &["shape", "value", "dtype"], 2, creation::full),
    b("gather", &["x", "idx", "axis"], 2, shape::gather),
    b("gelu", X, 1, math::unary),
    b("i32", CAST, 1, math::cast),
    b("i64", CAST, 1, math::cast),
    b("isfinite", X, 1, math::unary),
    b("isnan", X, 1, math::unary),
    b(
        "layer_norm",
        &["x", "weight", "bias", "eps"],
        1,
        neural::layer_norm,
    ),
    b("leaves", X, 1, misc::leaves),
    b("len", X, 1, misc::len),
    b(
        "linspace",
        &["start", "stop", "num", "dtype"],
        3,
        creation::linspace,
    ),
    b("load", &["path"], 1, misc::load),
    b(
        "load_csv",
        &["path", "header", "delimiter", "dtype", "columns"],
        1,
        misc::load_csv,
    ),
    b("load_idx", &["path", "dtype"], 1, misc::load_idx),
    b("load_model", &["path"], 1, misc::load),
    b("load_npy", &["path"], 1, misc::load),
    b("load_text", &["path"], 1, misc::load_text),
    b("log", X, 1, math::unary),
    b("log1p", X, 1, math::unary),
    unit(b(
        "log_histogram",
        &["tag", "step", "x"],
        3,
        misc::log_summary,
    )),
    unit(b(
        "log_scalar",
        &["tag", "step", "value"],
        3,
        misc::log_summary,
    )),
    b("log_softmax", X_AXIS, 1, neural::softmax),
    unit(b(
        "log_text",
        &["tag", "step", "text"],
        3,
        misc::log_summary,
    )),
    b("logical_and", XY, 2, math::binary),
    b("logical_not", X, 1, math::unary),
    b("logical_or", XY, 2, math::binary),
    b("logsumexp", REDUCE, 1, math::reduce),
    b("matmul", XY, 2, neural::matmul),
    b("max", REDUCE, 1, math::reduce),
    b(
        "max_pool2d",
        &["x", "window", "stride", "padding"],
        2,
        neural::pool2d,
    ),
    b("maximum", XY, 2, math::binary),
    b("mean", REDUCE, 1, math::reduce),
    b("min", REDUCE, 1, math::reduce),
    b("minimum", XY, 2, math::binary),
    b("mse", &["pred", "target"], 2, neural::mse),
    b("neg", X, 1, math::unary),
    b("nll", &["log_probs", "labels"], 2, neural::cross_entropy),
    b("one_hot", &["labels", "n", "dtype"], 2, shape::one_hot),
    b("ones", SHAPE_DTYPE, 1, creation::filled),
    b("ones_like", &["x", "dtype"], 1, creation::like),
    b("ord", &["s"], 1, misc::ord),
    b("outer", XY, 2, neural::outer),
    b("pad", &["x", "pads", "value"], 2, shape::pad),
    unit(variadic(b("print", &[], 0, misc::print))),
    b("prod", REDUCE, 1, math::reduce),
    b("progress", &["iterable"], 1, misc::progress),
    b("rand", SHAPE_DTYPE, 1, creation::random),
    b(
        "randint",
        &["low", "high", "shape", "dtype"],
        3,
        creation::randint,
    ),
    b("randn", SHAPE_DTYPE, 1, creation::random),
    b("relu", X, 1, math::unary),
    b("reshape", &["x", "shape"], 2, shape::reshape),
    b("round", X, 1, math::unary),
    b("rsqrt", X, 1, math::unary),
    unit(b("save", &["value", "path"], 2, misc::save)),
    unit(b("save_npy", &["x", "path"], 2, misc::save)),
    unit(b("seed", &["n"], 1, misc::seed)),
    b("shape", X, 1, misc::shape),
    b("shard", &["x", "layout"], 2, misc::shard),
    b("shuffle", &["data"], 1, misc::shuffle),
    b("sigmoid", X, 1, math::unary),
    b("sign", X, 1, math::unary),
    b("silu", X, 1, math::unary),
    b("sin", X, 1, math::unary),
    b("softmax", X_AXIS, 1, neural::softmax),
    b("softplus", X, 1, math::unary),
    b("split", &["x", "n", "axis"], 2, shape::split),
    b(
        "split_train_test",
        &["data", "test", "shuffle"],
        2,
        misc::split_train_test,
    ),
    b("sqrt", X, 1, math::unary),
    b("squeeze", X_AXIS, 1, shape::squeeze),
    b("stack", &["xs", "axis"], 1, shape::stack),
    b("std", REDUCE, 1, math::reduce),
    b("stop_gradient", X, 1, misc::identity),
    b("sum", REDUCE, 1, math::reduce),
    b("take", &["x", "idx", "axis"], 2, shape::take),
    b("tanh", X, 1, math::unary),
    b("time", &[], 0, misc::time),
    b("to", &["x", "device"], 2, misc::to),
    b("transpose", &["x", "perm"], 1, shape::transpose),
    b("var", REDUCE, 1, math::reduce),
    b("where", &["cond", "x", "y"], 3, math::where_),
    b("zeros", SHAPE_DTYPE, 1, creation::filled),
    b("zeros_like", &["x", "dtype"], 1, creation::like),
];

impl Builtin {
    /// `sum(x, axis?, keepdims?)`, for hints.
    fn usage(&self) -> String {
        let mut s = format!("{}(", self.name);
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(p);
            if i >= self.required {
                s.push('?');
            }
        }
        if self.variadic {
            if !self.params.is_empty() {
                s.push_str(", ");
            }
            s.push_str("...");
        }
        s.push(')');
        s
    }
}

/// The bound arguments of one call.
pub(crate) struct Args<'a> {
    /// The source the spans index.
    pub src: &'a str,
    /// The builtin called.
    pub b: &'static Builtin,
    /// The whole call.
    pub call: Span,
    /// One slot per parameter.
    slots: [Option<&'a Typed>; MAX_PARAMS],
    /// Positional arguments beyond the parameters (variadic builtins).
    pub rest: &'a [Typed],
}

fn apply(
    b: &'static Builtin,
    src: &str,
    args: &[Typed],
    named: &[(Ident, Typed)],
    call: Span,
) -> RuleResult<Ty> {
    let mut slots: [Option<&Typed>; MAX_PARAMS] = [None; MAX_PARAMS];
    let npos = args.len().min(b.params.len());
    if args.len() > b.params.len() && !b.variadic {
        let extra = args.get(b.params.len()).map_or(call, |a| a.span);
        return Err(Diagnostic::error(
            "E0805",
            format!(
                "`{}` takes at most {} argument{}, found {}",
                b.name,
                b.params.len(),
                if b.params.len() == 1 { "" } else { "s" },
                args.len()
            ),
            extra,
        )
        .with_primary_label("one argument too many")
        .with_hint(format!("call it as `{}`", b.usage()))
        .into());
    }
    for (slot, a) in slots.iter_mut().zip(args.iter().take(npos)) {
        *slot = Some(a);
    }
    for (id, val) in named {
        let Some(i) = b.params.iter().position(|p| **p == *id.name) else {
            let mut d = Diagnostic::error(
                "E0802",
                format!("`{}` has no argument named `{}`", b.name, id.name),
                id.span,
            )
            .with_primary_label("unknown name")
            .with_note(format!(
                "accepted names: {}",
                if b.params.is_empty() {
                    "none".to_string()
                } else {
                    b.params.join(", ")
                }
            ));
            if let Some(near) = nearest(&id.name, b.params) {
                d = d.with_hint(format!("did you mean `{near}`?"));
            }
            return Err(d.into());
        };
        let Some(slot) = slots.get_mut(i) else {
            continue;
        };
        if let Some(prev) = slot {
            return Err(Diagnostic::error(
                "E0809",
                format!("the argument `{}` of `{}` is given twice", id.name, b.name),
                id.span,
            )
            .with_primary_label("given again here")
            .with_label(prev.span, "first given here")
            .into());
        }
        *slot = Some(val);
    }
    if let Some(missing) = (0..b.required).find(|&i| slots.get(i).is_none_or(Option::is_none)) {
        let pname = b.params.get(missing).copied().unwrap_or("?");
        return Err(Diagnostic::error(
            "E0803",
            format!("`{}` needs the argument `{pname}`", b.name),
            call,
        )
        .with_primary_label(format!("`{pname}` is missing"))
        .with_hint(format!("call it as `{}`", b.usage()))
        .into());
    }
    let rest = if b.variadic {
        args.get(b.params.len()..).unwrap_or(&[])
    } else {
        &[]
    };
    let bound = slots.iter().flatten().copied().chain(rest.iter());
    let mut never = false;
    for a in bound {
        match a.ty {
            Ty::Unknown => return Ok(if b.unit { Ty::Unit } else { Ty::Unknown }),
            Ty::Never => never = true,
            _ => {}
        }
    }
    if never {
        return Ok(Ty::Never);
    }
    (b.rule)(&Args {
        src,
        b,
        call,
        slots,
        rest,
    })
}

/// The closest name by edit distance, when it is close enough to be a likely typo.
fn nearest<'n>(name: &str, candidates: &[&'n str]) -> Option<&'n str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            if let Some(c) = cur.get_mut(j + 1) {
                *c = sub.min(del).min(ins);
            }
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// An integer argument as far as it is known: absent, present with an unknown value,
/// or a known integer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum IntArg {
    Absent,
    Unknown,
    Known(IntVal),
}

impl<'a> Args<'a> {
    /// The argument bound to parameter `i`, if given.
    pub fn get(&self, i: usize) -> Option<&'a Typed> {
        self.slots.get(i).copied().flatten()
    }

    /// The name of parameter `i`.
    fn pname(&self, i: usize) -> &'static str {
        self.b.params.get(i).copied().unwrap_or("argument")
    }

    /// The argument bound to a required parameter.
    pub fn req(&self, i: usize) -> RuleResult<&'a Typed> {
        self.get(i).ok_or_else(|| {
            Diagnostic::error(
                "E0803",
                format!("`{}` needs the argument `{}`", self.b.name, self.pname(i)),
                self.call,
            )
            .with_primary_label(format!("`{}` is missing", self.pname(i)))
            .into()
        })
    }

    /// E0804: the argument `a` (parameter `i`) is not of the kind needed.
    pub fn wrong_kind(&self, i: usize, a: &Typed, want: &str) -> Box<Diagnostic> {
        Diagnostic::error(
            "E0804",
            format!(
                "`{}` needs {want} for `{}`, found {}",
                self.b.name,
                self.pname(i),
                a.ty
            ),
            a.span,
        )
        .with_primary_label(format!("is {}", a.ty))
        .into()
    }

    /// The tensor bound to required parameter `i`.
    pub fn tensor(&self, i: usize) -> RuleResult<&'a TensorTy> {
        let a = self.req(i)?;
        match &a.ty {
            Ty::Tensor(t) => Ok(t),
            other => Err(not_a_tensor(
                format!(
                    "`{}` needs a tensor for `{}`, found {other}",
                    self.b.name,
                    self.pname(i)
                ),
                a.span,
                other,
            )
            .into()),
        }
    }

    /// The span of parameter `i`'s argument (the call's when absent).
    pub fn span(&self, i: usize) -> Span {
        self.get(i).map_or(self.call, |a| a.span)
    }

    /// An integer scalar argument.
    pub fn int(&self, i: usize) -> RuleResult<IntArg> {
        let Some(a) = self.get(i) else {
            return Ok(IntArg::Absent);
        };
        match &a.ty {
            Ty::Tensor(t) if t.dtype.is_int() && t.rank().is_none_or(|r| r == 0) => {
                Ok(match &t.value {
                    Some(Const::Ints(v)) if v.len() == 1 => {
                        v.first().cloned().map_or(IntArg::Unknown, IntArg::Known)
                    }
                    _ => IntArg::Unknown,
                })
            }
            _ => Err(self.wrong_kind(i, a, "an integer")),
        }
    }

    /// An integer argument whose value must be known when checking (window sizes,
    /// counts); `None` when absent.
    pub fn known_int(&self, i: usize) -> RuleResult<Option<i64>> {
        match self.int(i)? {
            IntArg::Absent => Ok(None),
            IntArg::Known(IntVal::Lit(n)) => Ok(Some(n)),
            IntArg::Known(IntVal::Sym(_)) | IntArg::Unknown => {
                let a = self.req(i)?;
                Err(Diagnostic::error(
                    "E0808",
                    format!(
                        "`{}` needs `{}` to be known when checking, but it is computed at run time",
                        self.b.name,
                        self.pname(i)
                    ),
                    a.span,
                )
                .with_primary_label("not a known integer")
                .with_hint("write the number itself, or a `let` of a literal")
                .into())
            }
        }
    }

    /// A known non-negative size argument (counts, windows).
    pub fn size(&self, i: usize) -> RuleResult<Option<usize>> {
        match self.known_int(i)? {
            None => Ok(None),
            Some(n) => usize::try_from(n).map(Some).map_err(|_| {
                let a = self.get(i).map_or(self.call, |a| a.span);
                Diagnostic::error(
                    "E0807",
                    format!("`{}` needs `{}` ≥ 0, found {n}", self.b.name, self.pname(i)),
                    a,
                )
                .with_primary_label(format!("is {n}"))
                .into()
            }),
        }
    }

    /// A bool flag, when its value is known (`keepdims: true`).
    pub fn flag(&self, i: usize) -> RuleResult<Option<bool>> {
        let Some(a) = self.get(i) else {
            return Ok(None);
        };
        match &a.ty {
            Ty::Tensor(t) if t.dtype == DType::Bool && t.rank().is_none_or(|r| r == 0) => {
                Ok(match t.value {
                    Some(Const::Bool(v)) => Some(v),
                    _ => None,
                })
            }
            _ => Err(self.wrong_kind(i, a, "`true` or `false`")),
        }
    }

    /// A numeric scalar argument (checked, value not needed).
    pub fn number(&self, i: usize) -> RuleResult<Option<&'a TensorTy>> {
        let Some(a) = self.get(i) else {
            return Ok(None);
        };
        match &a.ty {
            Ty::Tensor(t) if t.rank().is_none_or(|r| r == 0) && t.dtype.is_numeric() => Ok(Some(t)),
            _ => Err(self.wrong_kind(i, a, "a number")),
        }
    }

    /// A string argument (its text when it is a literal).
    pub fn string(&self, i: usize) -> RuleResult<Option<Option<&'a str>>> {
        let Some(a) = self.get(i) else {
            return Ok(None);
        };
        match &a.ty {
            Ty::Str(s) => Ok(Some(s.as_deref())),
            _ => Err(self.wrong_kind(i, a, "a string")),
        }
    }

    /// The `dtype:` argument (a dtype name), or `default`.
    pub fn dtype(&self, i: usize, default: DType) -> RuleResult<DType> {
        let Some(a) = self.get(i) else {
            return Ok(default);
        };
        match self.string(i)? {
            Some(Some(name)) => DType::from_name(name).ok_or_else(|| {
                Diagnostic::error("E0807", format!("`{name}` is not a dtype"), a.span)
                    .with_primary_label("unknown dtype")
                    .with_note("the dtypes are f32, f64, i32, i64, bool, bf16 and f16")
                    .into()
            }),
            _ => Ok(default),
        }
    }

    /// A shape argument: a list or tuple of sizes (an int for one axis, `[]` or `()` for a
    /// scalar). `None` when its length is not known.
    pub fn shape(&self, i: usize) -> RuleResult<Option<Shape>> {
        let a = self.req(i)?;
        let dim = |v: &IntVal| -> RuleResult<Dim> {
            v.to_dim().ok_or_else(|| {
                Diagnostic::error(
                    "E0807",
                    format!("a shape cannot hold the negative size {}", int_text(v)),
                    a.span,
                )
                .with_primary_label(format!("is {}", a.ty))
                .into()
            })
        };
        match &a.ty {
            Ty::Unit => Ok(Some(Shape::scalar())),
            Ty::Tensor(t) if t.dtype.is_int() => match (t.rank(), &t.value) {
                (Some(0 | 1), Some(Const::Ints(v))) => v
                    .iter()
                    .map(dim)
                    .collect::<RuleResult<Vec<Dim>>>()
                    .map(|d| Some(Shape(d))),
                (Some(0), _) => Ok(Some(Shape(vec![Dim::unknown()]))),
                (Some(1), _) => Ok(t
                    .shape
                    .as_ref()
                    .and_then(|s| s.dims().first())
                    .and_then(Dim::known)
                    .map(|n| Shape(vec![Dim::unknown(); n]))),
                (None, _) => Ok(None),
                _ => Err(self.wrong_kind(i, a, "a shape (a list or tuple of ints)")),
            },
            // `[]` is an empty float vector; as a shape it is the scalar's.
            Ty::Tensor(t) if t.shape.as_ref().is_some_and(|s| *s == Shape::known(&[0])) => {
                Ok(Some(Shape::scalar()))
            }
            Ty::Tuple(items) => {
                let mut dims = Vec::with_capacity(items.len());
                for it in items {
                    match it {
                        Ty::Tensor(t) if t.dtype.is_int() && t.is_scalar() => {
                            dims.push(match &t.value {
                                Some(Const::Ints(v)) if v.len() == 1 => match v.first() {
                                    Some(iv) => dim(iv)?,
                                    None => Dim::unknown(),
                                },
                                _ => Dim::unknown(),
                            });
                        }
                        Ty::Unknown => dims.push(Dim::unknown()),
                        _ => {
                            return Err(self.wrong_kind(i, a, "a shape (a list or tuple of ints)"));
                        }
                    }
                }
                Ok(Some(Shape(dims)))
            }
            _ => Err(self.wrong_kind(i, a, "a shape (a list or tuple of ints)")),
        }
    }

    /// A list or tuple of known integers (permutations, axes, strides).
    pub fn int_list(&self, i: usize) -> RuleResult<Option<Vec<i64>>> {
        let Some(a) = self.get(i) else {
            return Ok(None);
        };
        let lits = |v: &[IntVal]| -> Option<Vec<i64>> {
            v.iter()
                .map(|x| match x {
                    IntVal::Lit(n) => Some(*n),
                    IntVal::Sym(_) => None,
                })
                .collect()
        };
        let not_known = || -> Box<Diagnostic> {
            Diagnostic::error(
                "E0808",
                format!(
                    "`{}` needs `{}` to be known when checking, but it is computed at run time",
                    self.b.name,
                    self.pname(i)
                ),
                a.span,
            )
            .with_primary_label("not a list of known integers")
            .into()
        };
        match &a.ty {
            Ty::Tensor(t) if t.dtype.is_int() && t.rank().is_some_and(|r| r <= 1) => {
                match &t.value {
                    Some(Const::Ints(v)) => lits(v).map(Some).ok_or_else(not_known),
                    _ => Err(not_known()),
                }
            }
            Ty::Tuple(items) => {
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    match it {
                        Ty::Tensor(t) if t.dtype.is_int() && t.is_scalar() => {
                            match crate::check::ops::scalar_int(t) {
                                Some(n) => out.push(n),
                                None => return Err(not_known()),
                            }
                        }
                        _ => return Err(self.wrong_kind(i, a, "a list of integers")),
                    }
                }
                Ok(Some(out))
            }
            Ty::Unit => Ok(Some(Vec::new())),
            _ => Err(self.wrong_kind(i, a, "a list of integers")),
        }
    }

    /// Normalises a known axis for `rank` axes (negative counts from the end); E0801 when it
    /// is out of range. `x` names the tensor in the message.
    pub fn norm_axis(&self, i: usize, axis: i64, rank: usize, x: &TensorTy) -> RuleResult<usize> {
        let r = i64::try_from(rank).unwrap_or(i64::MAX);
        let a = if axis < 0 { axis + r } else { axis };
        if (0..r).contains(&a) {
            return Ok(usize::try_from(a).unwrap_or(0));
        }
        let span = self.span(i);
        let mut d = Diagnostic::error(
            "E0801",
            format!("axis {axis} is out of range for {x} (rank {rank})"),
            span,
        )
        .with_primary_label(format!("axis {axis}"));
        if let Some(x_arg) = self.get(0).filter(|a| a.span != span) {
            d = d.with_label(x_arg.span, format!("is {x}"));
        }
        d = if rank == 0 {
            d.with_note("a scalar has no axes")
        } else {
            d.with_note(format!(
                "valid axes are 0 to {} (or -{rank} to -1)",
                rank - 1
            ))
        };
        Err(d.into())
    }

    /// The optional single `axis` argument of parameter `i`, normalised for `x`.
    pub fn axis(&self, i: usize, x: &TensorTy, rank: usize) -> RuleResult<Option<usize>> {
        match self.known_int(i)? {
            None => Ok(None),
            Some(a) => self.norm_axis(i, a, rank, x).map(Some),
        }
    }

    /// Maps an `ir::infer` error to a diagnostic; `spans[k]` is operand `k`'s span.
    pub fn infer_err(&self, e: InferError, spans: &[Span]) -> Box<Diagnostic> {
        let at = |k: usize| spans.get(k).copied().unwrap_or(self.call);
        let name = self.b.name;
        let d = match e {
            InferError::DType {
                operand,
                expected,
                found,
                ..
            } => Diagnostic::error(
                "E0202",
                format!("`{name}` needs {expected}, found {found}"),
                at(operand),
            )
            .with_primary_label(format!("is {found}")),
            InferError::DTypeMismatch {
                lhs,
                rhs,
                lhs_dtype,
                rhs_dtype,
                ..
            } => Diagnostic::error(
                "E0201",
                format!("dtypes do not mix in `{name}`: {lhs_dtype} and {rhs_dtype}"),
                at(lhs),
            )
            .with_primary_label(format!("is {lhs_dtype}"))
            .with_label(at(rhs), format!("is {rhs_dtype}"))
            .with_hint(format!("cast one of them: `{}(...)`", lhs_dtype.name())),
            InferError::Broadcast {
                lhs,
                rhs,
                lhs_dim,
                rhs_dim,
                lhs_shape,
                rhs_shape,
                ..
            } => Diagnostic::error(
                "E0302",
                format!(
                    "shapes do not broadcast in `{name}`: {lhs_shape} and {rhs_shape} ({lhs_dim} vs {rhs_dim})"
                ),
                at(lhs),
            )
            .with_primary_label(format!("has shape {lhs_shape}"))
            .with_label(at(rhs), format!("has shape {rhs_shape}")),
            InferError::Rank {
                operand,
                expected,
                found,
                shape,
                ..
            } => Diagnostic::error(
                "E0306",
                format!("`{name}` needs rank {expected}, found rank {found} ({shape})"),
                at(operand),
            )
            .with_primary_label(format!("has shape {shape}")),
            InferError::Axis { axis, rank, .. } => Diagnostic::error(
                "E0801",
                format!("axis {axis} is out of range for rank {rank} in `{name}`"),
                at(0),
            )
            .with_primary_label(format!("has rank {rank}")),
            InferError::Dim {
                operand,
                axis,
                expected,
                found,
                ..
            } => {
                let mut d = Diagnostic::error(
                    "E0307",
                    format!(
                        "shapes do not fit `{name}`: axis {axis} is {found}, expected {expected}"
                    ),
                    at(operand),
                )
                .with_primary_label(format!("has {found} at axis {axis}"));
                if let Some(n) = crate::check::ops::sym_note(&expected, &found) {
                    d = d.with_note(n);
                }
                d
            }
            InferError::Attr { message, .. } => {
                Diagnostic::error("E0307", format!("`{name}`: {message}"), at(0))
                    .with_primary_label("here")
            }
            InferError::Overflow { shape, .. } => Diagnostic::error(
                "E0307",
                format!("`{name}`: the shape {shape} has more elements than can be addressed"),
                self.call,
            ),
            InferError::Arity {
                expected, found, ..
            } => Diagnostic::error(
                "E0805",
                format!("`{name}` takes {expected} operands, found {found}"),
                self.call,
            ),
        };
        Box::new(d)
    }
}

/// An integer as written.
pub(crate) fn int_text(v: &IntVal) -> String {
    match v {
        IntVal::Lit(n) => n.to_string(),
        IntVal::Sym(s) => s.to_string(),
    }
}

/// The `ir` view of a tensor whose rank is known.
pub(crate) fn ir_ty(t: &TensorTy) -> Option<ir::TensorType> {
    t.shape
        .as_ref()
        .map(|s| ir::TensorType::new(t.dtype, s.clone()))
}

/// A strong tensor of `dtype` and `shape`.
pub(crate) fn tensor(dtype: DType, shape: Option<Shape>) -> Ty {
    Ty::Tensor(TensorTy::new(dtype, shape))
}

/// The float dtype a float function computes in: the operand's, or `f32` for integers
/// and bools.
pub(crate) fn float_of(d: DType) -> DType {
    if d.is_float() { d } else { DType::F32 }
}

/// Folds one more operand into the common dtype of several (`concat`, `stack`, `einsum`):
/// weak literals adopt the others' dtype, ints promote to floats; `Err` names the two float
/// dtypes that do not mix, for the caller's diagnostic.
pub(super) fn join_dtype(acc: Option<TensorTy>, t: &TensorTy) -> Result<TensorTy, (DType, DType)> {
    match acc {
        None => Ok(t.clone()),
        Some(acc) => crate::check::ops::promote(&acc, t).map(|(dtype, weak)| TensorTy {
            dtype,
            shape: None,
            weak,
            value: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_fits_the_slots() {
        for w in TABLE.windows(2) {
            if let [a, b] = w {
                assert!(a.name < b.name, "{} before {}", a.name, b.name);
            }
        }
        for b in TABLE {
            assert!(b.params.len() <= MAX_PARAMS, "{}", b.name);
            assert!(b.required <= b.params.len(), "{}", b.name);
        }
    }

    #[test]
    fn names_cover_every_builtin_once() {
        let n = names();
        for w in n.windows(2) {
            if let [a, b] = w {
                assert!(a < b, "{a} twice or out of order");
            }
        }
        for name in ["grad", "zeros", "einsum", "print", "load_idx", "floor_div"] {
            assert!(n.contains(&name), "{name}");
        }
        for name in HIGHER_ORDER {
            assert!(call("", name, &[], &[], Span::default()).is_none());
        }
    }

    #[test]
    fn edit_distance_finds_typos() {
        assert_eq!(edit_distance("axes", "axis"), 1);
        assert_eq!(
            nearest("keepdim", &["x", "axis", "keepdims"]),
            Some("keepdims")
        );
        assert_eq!(nearest("zzz", &["x", "axis"]), None);
    }
}
