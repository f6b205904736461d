//! The builtins of LANGUAGE.md §10, implemented by composing primitives.
//!
//! A call binds its arguments with the checker's own signature for the builtin
//! ([`lang::check::builtins::signature`]): positional arguments in order, named ones by the
//! same parameter names, so a call accepts exactly what the checker accepts. Defaults are
//! the implementations' (they follow LANGUAGE.md §10 and NumPy). The table maps each name
//! to a Rust function; the compositions (`softmax`, the losses, `layer_norm`, ...) are
//! MindScript functions of the prelude instead ([`prelude`]). A builtin the checker knows
//! but neither implements is a clear runtime error (E0906), never a panic. The Rust
//! families live in submodules: [`creation`], [`math`] (elementwise, casts, reductions),
//! [`shape`] (shape functions, selection and linear algebra), [`einsum`], [`neural`]
//! (convolution and pooling), [`device`] (`device devices to`), [`data`] (CSV,
//! shuffling, script arguments), [`files`] (NumPy, IDX and checkpoint files), [`summary`]
//! (`log_*` and `progress`) and [`misc`] (printing, asserts, iteration and the rest).

mod creation;
pub(crate) mod data;
mod device;
mod einsum;
mod files;
pub(crate) mod grad;
mod math;
mod misc;
mod neural;
pub(crate) mod prelude;
mod shape;
mod summary;

use devices::Tensor;
use ir::DType;
use lang::Span;
use lang::ast::Name;

use super::Eval;
use super::errors::{self, R};
use crate::value::{TensorVal, Value};

pub(crate) use misc::{iter_item, iter_len};
pub(crate) use summary::{write as write_summary, write_error as summary_write_error};

/// A builtin's implementation.
type Imp = fn(&mut Eval<'_>, &Call) -> R<Value>;

/// Every builtin implemented, sorted by name (a test checks the order).
static TABLE: &[(&str, Imp)] = &[
    ("abs", math::unary),
    ("all", math::reduce),
    ("allclose", misc::allclose),
    ("any", math::reduce),
    ("arange", creation::arange),
    ("arg", data::arg),
    ("argmax", math::arg_reduce),
    ("argmin", math::arg_reduce),
    ("assert", misc::assert),
    ("avg_pool2d", neural::pool2d),
    ("batches", misc::batches),
    ("bool", math::cast),
    ("broadcast_to", shape::broadcast_to),
    ("ceil", math::unary),
    ("chr", misc::chr),
    ("clip", math::clip),
    ("concat", shape::concat),
    ("conv2d", neural::conv2d),
    ("cos", math::unary),
    ("device", device::device),
    ("devices", device::devices),
    ("dot", shape::matmul),
    ("dtype", misc::dtype),
    ("einsum", einsum::einsum),
    ("erf", math::unary),
    ("exp", math::unary),
    ("expand_dims", shape::expand_dims),
    ("expm1", math::unary),
    ("export_mir", files::export_mir),
    ("export_onnx", files::export_onnx),
    ("eye", creation::eye),
    ("f32", math::cast),
    ("f64", math::cast),
    ("flatten", shape::flatten),
    ("floor", math::unary),
    ("floor_div", math::binary),
    ("full", creation::full),
    ("gather", shape::gather),
    ("gelu", math::unary),
    ("i32", math::cast),
    ("i64", math::cast),
    ("isfinite", math::unary),
    ("isnan", math::unary),
    ("leaves", misc::leaves),
    ("len", misc::len),
    ("linspace", creation::linspace),
    ("load", files::load),
    ("load_csv", data::load_csv),
    ("load_idx", files::load_idx),
    ("load_model", files::load_model),
    ("load_npy", files::load_npy),
    ("load_text", files::load_text),
    ("log", math::unary),
    ("log1p", math::unary),
    ("log_histogram", summary::log),
    ("log_scalar", summary::log),
    ("log_text", summary::log),
    ("logical_and", math::binary),
    ("logical_not", math::unary),
    ("logical_or", math::binary),
    ("logsumexp", math::reduce),
    ("matmul", shape::matmul),
    ("max", math::reduce),
    ("max_pool2d", neural::pool2d),
    ("maximum", math::binary),
    ("mean", math::reduce),
    ("min", math::reduce),
    ("minimum", math::binary),
    ("neg", math::unary),
    ("one_hot", shape::one_hot),
    ("ones", creation::filled),
    ("ones_like", creation::like),
    ("ord", misc::ord),
    ("outer", shape::outer),
    ("pad", shape::pad),
    ("print", misc::print),
    ("prod", math::reduce),
    ("progress", summary::progress),
    ("rand", creation::random),
    ("randint", creation::randint),
    ("randn", creation::random),
    ("relu", math::unary),
    ("reshape", shape::reshape),
    ("round", math::unary),
    ("rsqrt", math::unary),
    ("save", files::save),
    ("save_npy", files::save_npy),
    ("seed", creation::seed),
    ("shape", misc::shape),
    ("shard", device::shard),
    ("shuffle", data::shuffle),
    ("sigmoid", math::unary),
    ("sign", math::unary),
    ("silu", math::unary),
    ("sin", math::unary),
    ("softplus", math::unary),
    ("split", shape::split),
    ("split_train_test", data::split_train_test),
    ("sqrt", math::unary),
    ("squeeze", shape::squeeze),
    ("stack", shape::stack),
    ("std", math::reduce),
    ("stop_gradient", grad::stop_gradient),
    ("sum", math::reduce),
    ("take", shape::take),
    ("tanh", math::unary),
    ("time", misc::time),
    ("to", device::to),
    ("transpose", shape::transpose),
    ("var", math::reduce),
    ("where", math::where_),
    ("zeros", creation::filled),
    ("zeros_like", creation::like),
];

/// The builtin called `name` (any the checker knows, implemented or not), as the
/// `&'static str` a [`Value::Builtin`] holds.
pub(crate) fn builtin_name(name: &str) -> Option<&'static str> {
    lang::check::builtins::names()
        .iter()
        .find(|n| **n == name)
        .copied()
}

/// The arguments of one builtin call, bound to the builtin's parameters.
pub(crate) struct Call {
    /// The builtin's name.
    pub name: &'static str,
    /// One slot per parameter: the value and its span.
    slots: Vec<Option<(Value, Span)>>,
    /// Positional arguments beyond the parameters (`print`).
    pub rest: Vec<(Value, Span)>,
    /// The whole call.
    pub span: Span,
}

/// Calls the builtin `name`.
pub(crate) fn call(
    ev: &mut Eval<'_>,
    name: &'static str,
    pos: Vec<(Value, Span)>,
    named: Vec<(Name, Value, Span)>,
    span: Span,
) -> R<Value> {
    if let Some(r) = misc::higher_order(ev, name, &pos, &named, span) {
        return r;
    }
    let Some(sig) = lang::check::builtins::signature(name) else {
        return Err(errors::not_available(name, span));
    };
    let imp = TABLE
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .and_then(|i| TABLE.get(i))
        .map(|(_, imp)| *imp);
    if imp.is_none() && !prelude::implements(name) {
        return Err(errors::not_available(name, span));
    }
    let mut slots: Vec<Option<(Value, Span)>> = vec![None; sig.params.len()];
    let mut rest = Vec::new();
    for (k, a) in pos.into_iter().enumerate() {
        match slots.get_mut(k) {
            Some(slot) => *slot = Some(a),
            None if sig.variadic => rest.push(a),
            None => {
                return Err(errors::mismatch(
                    format!("`{name}` takes at most {} arguments", sig.params.len()),
                    a.1,
                ));
            }
        }
    }
    for (n, v, s) in named {
        let Some(k) = sig.params.iter().position(|p| **p == *n) else {
            return Err(errors::mismatch(
                format!("`{name}` has no argument named `{n}`"),
                s,
            ));
        };
        if let Some(slot) = slots.get_mut(k) {
            *slot = Some((v, s));
        }
    }
    if let Some(k) = (0..sig.required).find(|&k| slots.get(k).is_none_or(Option::is_none)) {
        let p = sig.params.get(k).copied().unwrap_or("?");
        return Err(errors::mismatch(
            format!("`{name}` needs the argument `{p}`"),
            span,
        ));
    }
    let c = Call {
        name,
        slots,
        rest,
        span,
    };
    match imp {
        Some(imp) => imp(ev, &c),
        None => prelude::call(ev, c),
    }
}

impl Call {
    /// The argument of parameter `i`, if given.
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.slots.get(i).and_then(|s| s.as_ref()).map(|(v, _)| v)
    }

    /// The span of parameter `i`'s argument (the call's when absent).
    pub fn span(&self, i: usize) -> Span {
        self.slots
            .get(i)
            .and_then(|s| s.as_ref())
            .map_or(self.span, |(_, s)| *s)
    }

    /// The argument of a required parameter.
    pub fn req(&self, i: usize) -> R<&Value> {
        self.get(i).ok_or_else(|| {
            errors::mismatch(format!("`{}` is missing an argument", self.name), self.span)
        })
    }

    /// The tensor of parameter `i` (weak flag and all).
    pub fn tensor(&self, i: usize) -> R<&TensorVal> {
        match self.req(i)? {
            Value::Tensor(t) => Ok(t),
            other => Err(errors::mismatch(
                format!("`{}` needs a tensor, found {}", self.name, other.describe()),
                self.span(i),
            )),
        }
    }

    /// An optional integer scalar argument.
    pub fn opt_int(&self, ev: &Eval<'_>, i: usize) -> R<Option<i64>> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => ev.scalar_int(v, self.span(i)).map(Some),
        }
    }

    /// An optional bool flag.
    pub fn flag(&self, ev: &Eval<'_>, i: usize) -> R<Option<bool>> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => ev.scalar_bool(v, self.span(i)).map(Some),
        }
    }

    /// An optional numeric scalar, as `f64`.
    pub fn opt_float(&self, ev: &Eval<'_>, i: usize) -> R<Option<f64>> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => scalar_f64(ev, v, self.span(i)).map(Some),
        }
    }

    /// An optional string.
    pub fn string(&self, i: usize) -> R<Option<&str>> {
        match self.get(i) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(other) => Err(errors::mismatch(
                format!("`{}` needs a string, found {}", self.name, other.describe()),
                self.span(i),
            )),
        }
    }

    /// The `dtype:` argument, or `default`.
    pub fn dtype(&self, i: usize, default: DType) -> R<DType> {
        match self.string(i)? {
            None => Ok(default),
            Some(s) => DType::from_name(s)
                .ok_or_else(|| errors::bad_value(format!("`{s}` is not a dtype"), self.span(i))),
        }
    }

    /// A shape argument: a list or tuple of sizes, an int for one axis, `()` or `[]` for a
    /// scalar.
    pub fn shape(&self, ev: &Eval<'_>, i: usize) -> R<Vec<usize>> {
        let span = self.span(i);
        let ints = int_list(ev, self.req(i)?, span)?;
        ints.into_iter()
            .map(|n| {
                usize::try_from(n).map_err(|_| {
                    errors::bad_value(format!("a shape cannot hold the negative size {n}"), span)
                })
            })
            .collect()
    }
}

/// The integers of a list, a tuple, an integer scalar or unit.
pub(crate) fn int_list(ev: &Eval<'_>, v: &Value, span: Span) -> R<Vec<i64>> {
    match v {
        Value::Unit => Ok(Vec::new()),
        Value::Tuple(items) => items.iter().map(|x| ev.scalar_int(x, span)).collect(),
        Value::Tensor(t) if t.dtype.is_int() && t.rank() <= 1 => {
            let c = ev.cast(&t.t, DType::I64, span)?;
            // Only a value that staging has not computed (a graph input, or what the graph
            // computes from one) has no elements to read here.
            c.to_vec::<i64>().ok_or_else(|| {
                errors::bad_value(
                    "these integers are known only when the staged function runs, but they are needed while it is staged (a shape, axes or a permutation); pass them as a list or tuple of ints, which staging takes as constants".to_string(),
                    span,
                )
            })
        }
        // `[]` is an empty float vector; as a shape it is the scalar's.
        Value::Tensor(t) if t.shape() == [0] => Ok(Vec::new()),
        other => Err(errors::mismatch(
            format!(
                "a list of integers is needed here, found {}",
                other.describe()
            ),
            span,
        )),
    }
}

/// The value of a numeric scalar as `f64`.
pub(crate) fn scalar_f64(ev: &Eval<'_>, v: &Value, span: Span) -> R<f64> {
    match v {
        Value::Tensor(t) if t.rank() == 0 => {
            let c = ev.cast(&t.t, DType::F64, span)?;
            c.to_vec::<f64>()
                .and_then(|v| v.first().copied())
                .ok_or_else(|| errors::internal("a scalar could not be read", span))
        }
        other => Err(errors::mismatch(
            format!("a number is needed here, found {}", other.describe()),
            span,
        )),
    }
}

/// Normalises a possibly negative axis for `rank` axes.
pub(crate) fn norm_axis(axis: i64, rank: usize, span: Span) -> R<usize> {
    let r = i64::try_from(rank).unwrap_or(i64::MAX);
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(usize::try_from(a).unwrap_or(0))
    } else {
        Err(errors::bad_value(
            format!("axis {axis} is out of range for a tensor of rank {rank}"),
            span,
        ))
    }
}

/// A strong tensor value.
pub(crate) fn strong(t: Tensor) -> Value {
    Value::tensor(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_known_to_the_checker() {
        for w in TABLE.windows(2) {
            if let [(a, _), (b, _)] = w {
                assert!(a < b, "{a} before {b}");
            }
        }
        for (name, _) in TABLE {
            assert!(
                lang::check::builtins::signature(name).is_some(),
                "{name} is not a first-order builtin of the checker"
            );
        }
    }
}
