//! Run-time values of MindScript (LANGUAGE.md §3).
//!
//! Every value is cheap to clone: tensors share their device buffer, structures and
//! functions sit behind `Arc`. Values are immutable; rebinding a variable replaces the
//! value it names and never changes one that something else holds. `Arc` rather than `Rc`
//! because a session evaluates on a thread with a large stack and its state moves there.
//!
//! # Weak literals
//!
//! A literal (`2`, `0.5`, `[1.0, 2.0]`) is *weak*: in arithmetic with a strong operand it
//! takes that operand's dtype (`x * 2` keeps `x`'s dtype). A weak tensor keeps its
//! elements in the widest dtype of its kind (`f64` for floats, `i64` for integers) while
//! its *logical* dtype is the one the checker sees (`f32` for a float literal), so that
//! `x64 * 0.1` multiplies by the `f64` value 0.1 and not by 0.1 rounded to `f32`. Anything
//! that needs a plain tensor calls [`TensorVal::strong`], which casts to the logical dtype.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use devices::Tensor;
use ir::DType;
use lang::ast::{Expr, FnDecl, Name, Param};
use lang::check::Ty;
use lang::check::ty::TensorTy;

/// A run-time value.
#[derive(Clone, Debug)]
pub enum Value {
    /// A tensor (scalars are rank-0 tensors).
    Tensor(TensorVal),
    /// A tuple of at least one element (the empty tuple is [`Value::Unit`]).
    Tuple(Arc<[Value]>),
    /// A record; its fields are sorted by name, the order in which leaves show.
    Record(Arc<BTreeMap<Name, Value>>),
    /// A named function or a closure.
    Fn(Arc<FnValue>),
    /// A builtin of LANGUAGE.md §10, by name.
    Builtin(&'static str),
    /// A string.
    Str(Arc<str>),
    /// The unit value `()`, the value of statements and of `print`.
    Unit,
    /// The integer range `start..end` (iterated by `for`).
    Range(i64, i64),
    /// What `batches(...)` returns: slices of axis 0 of every leaf, in order.
    Batches(Arc<Batches>),
    /// What `progress(it)` returns: the items of `it` (a range, a tensor, batches), which a
    /// `for` loop shows a progress bar for.
    Progress(Arc<Value>),
    /// An imported module.
    Module(Arc<Module>),
    /// A function made by `grad`, `value_and_grad`, `hessian`, or the pullback of `vjp`.
    Derived(Arc<crate::eval::builtins::grad::Derived>),
    /// A staged function: `jit(f)` or a function declared `@jit`.
    Jit(Arc<crate::stage::jit::Jitted>),
    /// A model loaded from a `.msir` file by `load_model`, called like a function.
    Model(Arc<crate::stage::model::Model>),
}

/// A tensor with its logical dtype and weak flag (see the module documentation).
#[derive(Clone, Debug)]
pub struct TensorVal {
    /// The elements. For a weak tensor they may be stored in a wider dtype of the same kind
    /// than `dtype`.
    pub t: Tensor,
    /// The dtype the program sees.
    pub dtype: DType,
    /// True for literals and values computed only from literals.
    pub weak: bool,
}

impl TensorVal {
    /// A strong tensor: its dtype is its storage's.
    pub fn strong_of(t: Tensor) -> TensorVal {
        TensorVal {
            dtype: t.dtype(),
            t,
            weak: false,
        }
    }

    /// The dims.
    pub fn shape(&self) -> &[usize] {
        self.t.shape()
    }

    /// The number of dims.
    pub fn rank(&self) -> usize {
        self.t.rank()
    }
}

/// A named function or a closure, with what it needs to run later.
#[derive(Debug)]
pub struct FnValue {
    /// The function's name (`closure` for a closure), for call stacks and printing.
    pub name: Name,
    /// The parameters (names, annotations, defaults).
    pub params: Arc<[Param]>,
    /// The body.
    pub body: FnBody,
    /// The values a closure captured when it was created, or the variables a function
    /// declared inside a block sees (those of the block's start). `None` for top-level
    /// functions, which read top-level variables when they are called.
    pub captured: Option<Arc<Vec<(Name, Value)>>>,
    /// Functions declared in the same block as this one (which may call each other).
    pub siblings: Option<Arc<[Arc<FnDecl>]>>,
    /// Which source text the spans of the body index.
    pub src: usize,
}

/// The code of a function value.
#[derive(Debug)]
pub enum FnBody {
    /// A named function's declaration (its body is a block).
    Decl(Arc<FnDecl>),
    /// A closure's body expression.
    Closure(Arc<Expr>),
}

impl FnValue {
    /// True for closures.
    pub fn is_closure(&self) -> bool {
        matches!(self.body, FnBody::Closure(_))
    }
}

/// The iterable that `batches(data, size)` returns.
#[derive(Debug)]
pub struct Batches {
    /// The data: a tensor, or a tuple or record of tensors with equal axis 0.
    pub data: Value,
    /// Rows per batch.
    pub size: usize,
    /// The number of rows.
    pub rows: usize,
    /// Whether a smaller last batch is left out.
    pub drop_last: bool,
    /// The row order when shuffled (an `i64` index per row).
    pub order: Option<Tensor>,
}

/// An imported module: its members by name.
#[derive(Debug, Default)]
pub struct Module {
    /// The module's name as imported.
    pub name: Name,
    /// Its top-level values.
    pub members: BTreeMap<Name, Value>,
}

impl Value {
    /// A strong tensor value.
    pub fn tensor(t: Tensor) -> Value {
        Value::Tensor(TensorVal::strong_of(t))
    }

    /// The same structure with `f` applied to every leaf that is not a tuple or a record
    /// (tensors, usually; `f` decides what other leaves mean). Operators and builtins that
    /// lift over structures (`-p`, `f32(p)`, `shuffle(p)`) are written with this.
    pub(crate) fn map_leaves<E>(
        &self,
        f: &mut impl FnMut(&Value) -> Result<Value, E>,
    ) -> Result<Value, E> {
        match self {
            Value::Tuple(items) => {
                let out = items
                    .iter()
                    .map(|x| x.map_leaves(f))
                    .collect::<Result<Vec<_>, E>>()?;
                Ok(Value::Tuple(out.into()))
            }
            Value::Record(fields) => {
                let mut out = BTreeMap::new();
                for (k, x) in fields.iter() {
                    out.insert(k.clone(), x.map_leaves(f)?);
                }
                Ok(Value::Record(Arc::new(out)))
            }
            leaf => f(leaf),
        }
    }

    /// A short description of the kind of value, for messages (`f32[2, 3]`, `a tuple`).
    pub fn describe(&self) -> String {
        match self {
            Value::Tensor(t) => tensor_type_text(t.dtype, t.shape()),
            Value::Tuple(items) => format!("a tuple of {} elements", items.len()),
            Value::Record(_) => "a record".to_string(),
            Value::Fn(f) if f.is_closure() => "a closure".to_string(),
            Value::Fn(f) => format!("the function `{}`", f.name),
            Value::Builtin(n) => format!("the builtin `{n}`"),
            Value::Str(_) => "a string".to_string(),
            Value::Unit => "()".to_string(),
            Value::Range(..) => "a range".to_string(),
            Value::Batches(_) => "batches".to_string(),
            Value::Progress(it) => format!("progress over {}", it.describe()),
            Value::Module(m) => format!("the module `{}`", m.name),
            Value::Derived(_) => "a derived function".to_string(),
            Value::Jit(j) => format!("the staged function `{}`", j.name),
            Value::Model(m) => format!("the model `{}` loaded from `{}`", m.name(), m.path),
        }
    }

    /// The checker's view of this value, for top-level values the checker did not see
    /// being made (the REPL's `_`). Functions and other values without a useful abstract
    /// value are [`Ty::Unknown`], which the checker accepts everywhere; the evaluator checks
    /// what it is given anyway.
    pub fn ty(&self) -> Ty {
        match self {
            Value::Tensor(t) => {
                let mut tt = TensorTy::new(t.dtype, Some(ir::Shape::known(t.shape())));
                tt.weak = t.weak;
                Ty::Tensor(tt)
            }
            Value::Tuple(items) => Ty::Tuple(items.iter().map(Value::ty).collect()),
            Value::Record(fields) => {
                Ty::Record(fields.iter().map(|(k, v)| (k.clone(), v.ty())).collect())
            }
            Value::Str(_) => Ty::Str(None),
            Value::Unit => Ty::Unit,
            Value::Range(..) => Ty::Range,
            Value::Fn(_)
            | Value::Builtin(_)
            | Value::Batches(_)
            | Value::Progress(_)
            | Value::Module(_)
            | Value::Derived(_)
            | Value::Jit(_)
            | Value::Model(_) => Ty::Unknown,
        }
    }
}

/// `f32[2, 3]`, or `f32` for a scalar.
pub fn tensor_type_text(dtype: DType, shape: &[usize]) -> String {
    if shape.is_empty() {
        return dtype.name().to_string();
    }
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("{}[{}]", dtype.name(), dims.join(", "))
}

/// How the REPL echoes a value: tensors with their type header (`f32[2, 3]` and then the
/// values, like NumPy's `repr`), everything else as `print` shows it.
pub fn repr(v: &Value) -> String {
    match v {
        Value::Tensor(t) => {
            let shown = crate::eval::cast_storage(&t.t, t.dtype).unwrap_or_else(|_| t.t.clone());
            crate::print::format_tensor(&shown)
        }
        other => display(other),
    }
}

/// How `print` shows a value: strings without quotes, tensors by the tensor printer,
/// structures with their elements (record fields in sorted order).
pub fn display(v: &Value) -> String {
    let mut s = String::new();
    write_value(&mut s, v, true);
    s
}

fn write_value(out: &mut String, v: &Value, top: bool) {
    match v {
        Value::Tensor(t) => out.push_str(&format_tensor_value(t)),
        Value::Str(s) if top => out.push_str(s),
        Value::Str(s) => {
            let _ = write!(out, "{s:?}");
        }
        Value::Tuple(items) => {
            out.push('(');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, x, false);
            }
            if items.len() == 1 {
                out.push(',');
            }
            out.push(')');
        }
        Value::Record(fields) => {
            out.push('{');
            for (i, (k, x)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{k}: ");
                write_value(out, x, false);
            }
            out.push('}');
        }
        Value::Fn(f) if f.is_closure() => out.push_str("<closure>"),
        Value::Fn(f) => {
            let _ = write!(out, "<fn {}>", f.name);
        }
        Value::Builtin(n) => {
            let _ = write!(out, "<builtin {n}>");
        }
        Value::Unit => out.push_str("()"),
        Value::Range(a, b) => {
            let _ = write!(out, "{a}..{b}");
        }
        Value::Batches(b) => {
            let _ = write!(out, "<batches of {}>", b.size);
        }
        Value::Progress(it) => {
            out.push_str("<progress over ");
            write_value(out, it, false);
            out.push('>');
        }
        Value::Module(m) => {
            let _ = write!(out, "<module {}>", m.name);
        }
        Value::Derived(_) => out.push_str("<derived fn>"),
        Value::Jit(j) => {
            let _ = write!(out, "<jit fn {}>", j.name);
        }
        Value::Model(m) => {
            let _ = write!(out, "<model {} from {}>", m.name(), m.path);
        }
    }
}

/// A tensor as `print` shows it: the values laid out by the NumPy-style printer
/// (`print.rs`) without its dtype-and-shape header, as NumPy's `print` (its `str`) shows
/// arrays without `array(..., dtype=...)`: `print("loss", l, w)` stays one readable line
/// per row. The header is for echoing a value (the REPL), where the type is the point.
fn format_tensor_value(t: &TensorVal) -> String {
    let shown = crate::eval::cast_storage(&t.t, t.dtype).unwrap_or_else(|_| t.t.clone());
    let text = crate::print::format_tensor(&shown);
    let separator = if shown.shape().is_empty() { ' ' } else { '\n' };
    match text.split_once(separator) {
        Some((_, values)) => values.to_string(),
        None => text,
    }
}
