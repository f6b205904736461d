//! The abstract values of the checker: what is known about a value before it exists.
//!
//! A tensor is known by its dtype and shape (each dim a number, a symbolic name, or `?`),
//! whether it is a *weak* literal (which adopts the other operand's dtype, LANGUAGE.md §3)
//! and, for small integer values such as shape lists and axes, its value. Structures,
//! functions, strings and modules have abstract values too. [`Ty::Unknown`] stands for a
//! value nothing is known about (after an error, or from a module not checked yet); it is
//! accepted everywhere and never causes a further error, so one mistake gives one message.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use ir::{DType, Dim, Shape};

use crate::ast::Name;
use crate::span::Span;

/// The abstract value of an expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
    /// A tensor (scalars are rank-0 tensors).
    Tensor(TensorTy),
    /// A tuple; `Tuple(vec![])` is never built, the empty tuple is [`Ty::Unit`].
    Tuple(Vec<Ty>),
    /// A record; fields are kept sorted by name (the order in which leaves show).
    Record(BTreeMap<Name, Ty>),
    /// A function value.
    Fn(Arc<FnTy>),
    /// A string, with its text when it is a literal (einsum specs, dtype names, modes).
    Str(Option<Arc<str>>),
    /// The unit value `()`.
    Unit,
    /// An integer range `a..b` (iterated by `for`; yields `i64` scalars).
    Range,
    /// Something else `for` can iterate (`batches(...)`, `progress(...)`), yielding values
    /// of the inner type.
    Iter(Box<Ty>),
    /// An imported module, by name.
    Module(Name),
    /// Nothing is known (after an error, or from unchecked code): accepted everywhere.
    Unknown,
    /// The type of `return`, `break` and `continue`: control never comes back.
    Never,
}

/// What is known about a tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorTy {
    /// Its element type.
    pub dtype: DType,
    /// Its shape; `None` when even the rank is unknown (`f32[..., d]` parameters).
    pub shape: Option<Shape>,
    /// True for a literal without a fixed dtype (`2`, `0.5`, `[1.0, 2.0]`): in arithmetic
    /// with a non-weak operand it takes that operand's dtype.
    pub weak: bool,
    /// The value, where it is known and small (integer scalars and shape lists, bools,
    /// float scalars).
    pub value: Option<Const>,
}

/// A value known to the checker.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    /// An integer scalar (one element, rank 0) or vector (rank 1): each element a literal
    /// or the size of a symbolic dimension (`x.shape.0` when dim 0 is `batch`).
    Ints(Vec<IntVal>),
    /// A float scalar.
    Float(f64),
    /// A bool scalar.
    Bool(bool),
}

/// One integer known to the checker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntVal {
    /// A number.
    Lit(i64),
    /// The size of a symbolic dimension.
    Sym(Arc<str>),
}

impl IntVal {
    /// This integer as a dimension, when it can be one (not negative).
    pub fn to_dim(&self) -> Option<Dim> {
        match self {
            IntVal::Lit(n) => usize::try_from(*n).ok().map(Dim::Known),
            IntVal::Sym(s) => Some(Dim::Sym(s.clone())),
        }
    }
}

/// A function value. Functions are checked at each call with the caller's argument types
/// (unannotated parameters are generic, like templates), so the value says where the code
/// is rather than giving one fixed signature.
#[derive(Clone, Debug, PartialEq)]
pub enum FnTy {
    /// A builtin of LANGUAGE.md §10, by name.
    Builtin(Name),
    /// A named `fn` declared at the top level or in a module, by name and declaration
    /// index in the checker's table.
    User {
        /// The function's name (for messages).
        name: Name,
        /// Index into the checker's declaration table.
        decl: usize,
    },
    /// A closure, by index into the checker's closure table (which holds the captured
    /// variables' types at creation).
    Closure(usize),
    /// A function known only by its signature (an annotated parameter `f: fn(f32) -> f32`).
    Sig {
        /// Parameter types.
        params: Vec<Ty>,
        /// Result type.
        ret: Ty,
    },
    /// `grad(f, wrt: ..)`, `value_and_grad(f, ..)` or `hessian(f)`: takes `f`'s arguments.
    Derived {
        /// Which derivative.
        kind: Deriv,
        /// The function differentiated.
        f: Ty,
        /// The arguments differentiated with respect to.
        wrt: Wrt,
        /// The span of the `grad(...)` call (a label when its result is misused).
        at: Span,
        /// Which of the checker's texts `at` indexes.
        at_src: usize,
    },
    /// The pullback returned by `vjp(f, x..)`: takes a cotangent of `out`'s type and
    /// returns `cot` (the cotangent of the inputs).
    Pullback {
        /// The type of `f`'s result.
        out: Ty,
        /// What the pullback returns.
        cot: Ty,
    },
}

/// Which derivative a [`FnTy::Derived`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deriv {
    /// `grad`: the gradient.
    Grad,
    /// `value_and_grad`: `(value, gradient)`.
    ValueAndGrad,
    /// `hessian`: the second derivative.
    Hessian,
}

/// The argument(s) a derivative is taken with respect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wrt {
    /// One argument (`wrt: 1`, or the default 0): the gradient has its structure.
    One(usize),
    /// Several (`wrt: (0, 2)`): the gradient is a tuple.
    Many(Vec<usize>),
}

impl Ty {
    /// A tensor of `dtype` and known `dims`.
    pub fn tensor(dtype: DType, dims: &[usize]) -> Ty {
        Ty::Tensor(TensorTy::new(dtype, Some(Shape::known(dims))))
    }

    /// A scalar of `dtype`.
    pub fn scalar(dtype: DType) -> Ty {
        Ty::tensor(dtype, &[])
    }

    /// The tensor inside, if this is one.
    pub fn as_tensor(&self) -> Option<&TensorTy> {
        match self {
            Ty::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// True for [`Ty::Unknown`].
    pub fn is_unknown(&self) -> bool {
        matches!(self, Ty::Unknown)
    }
}

impl TensorTy {
    /// A non-weak tensor with no known value.
    pub fn new(dtype: DType, shape: Option<Shape>) -> TensorTy {
        TensorTy {
            dtype,
            shape,
            weak: false,
            value: None,
        }
    }

    /// The rank, when known.
    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Shape::rank)
    }

    /// True for a rank-0 tensor.
    pub fn is_scalar(&self) -> bool {
        self.rank() == Some(0)
    }
}

/// Writes `items` separated by `, `. Types and annotations print their tuples and
/// function parameters alike, and through these helpers they cannot drift apart.
pub(crate) fn write_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, t) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{t}")?;
    }
    Ok(())
}

/// Writes a tuple: `(a, b)`, and `(a,)` for one item so that it does not read as a
/// parenthesized `a`.
pub(crate) fn write_tuple<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    f.write_str("(")?;
    write_list(f, items)?;
    if items.len() == 1 {
        f.write_str(",")?;
    }
    f.write_str(")")
}

/// Writes a record: `{name: t, ...}` in the map's (sorted) order.
pub(crate) fn write_record<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    fields: &BTreeMap<Name, T>,
) -> fmt::Result {
    f.write_str("{")?;
    for (i, (name, t)) in fields.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{name}: {t}")?;
    }
    f.write_str("}")
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Tensor(t) => write!(f, "{t}"),
            Ty::Tuple(items) => write_tuple(f, items),
            Ty::Record(fields) => write_record(f, fields),
            Ty::Fn(func) => match &**func {
                FnTy::Builtin(name) => write!(f, "fn {name}"),
                FnTy::User { name, .. } => write!(f, "fn {name}"),
                FnTy::Closure(_) => f.write_str("closure"),
                FnTy::Sig { params, ret } => {
                    f.write_str("fn(")?;
                    write_list(f, params)?;
                    write!(f, ") -> {ret}")
                }
                FnTy::Derived { kind, f: inner, .. } => {
                    let what = match kind {
                        Deriv::Grad => "grad",
                        Deriv::ValueAndGrad => "value_and_grad",
                        Deriv::Hessian => "hessian",
                    };
                    write!(f, "{what}({inner})")
                }
                FnTy::Pullback { out, .. } => write!(f, "pullback of {out}"),
            },
            Ty::Str(_) => f.write_str("str"),
            Ty::Unit => f.write_str("()"),
            Ty::Range => f.write_str("range"),
            Ty::Iter(item) => write!(f, "iter[{item}]"),
            Ty::Module(name) => write!(f, "module {name}"),
            Ty::Unknown => f.write_str("?"),
            Ty::Never => f.write_str("!"),
        }
    }
}

impl fmt::Display for TensorTy {
    /// `f32[2, n]`; a scalar prints as `f32`, an unknown rank as `f32[...]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dtype)?;
        match &self.shape {
            None => f.write_str("[...]"),
            Some(s) if s.rank() == 0 => Ok(()),
            Some(s) => {
                f.write_str("[")?;
                for (i, d) in s.dims().iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{d}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_print_as_written_in_annotations() {
        assert_eq!(Ty::tensor(DType::F32, &[2, 3]).to_string(), "f32[2, 3]");
        assert_eq!(Ty::scalar(DType::I64).to_string(), "i64");
        let t = Ty::Tuple(vec![Ty::scalar(DType::F32)]);
        assert_eq!(t.to_string(), "(f32,)");
        let mut fields = BTreeMap::new();
        fields.insert(Name::from("w"), Ty::tensor(DType::F32, &[2]));
        fields.insert(Name::from("b"), Ty::scalar(DType::F32));
        assert_eq!(Ty::Record(fields).to_string(), "{b: f32, w: f32[2]}");
        let sym = TensorTy::new(DType::F64, Some(Shape(vec![Dim::sym("n"), Dim::Known(4)])));
        assert_eq!(sym.to_string(), "f64[n, 4]");
    }
}
