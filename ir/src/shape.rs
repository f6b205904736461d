//! Dimensions, shapes and the abstract value of a tensor.

use std::fmt;
use std::sync::Arc;

use crate::DType;

/// One dimension of a shape.
///
/// A dimension is either a number known now, or a name (`n`, `batch`) that stands for a size
/// fixed at run time and must be the same wherever the same name appears in one signature.
/// The name `?` is reserved for a dimension nothing is known about (data loaded from a file);
/// two `?` dimensions are never assumed equal.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A size known now.
    Known(usize),
    /// A symbolic size, by name.
    Sym(Arc<str>),
}

impl Dim {
    /// A symbolic dimension named `name`.
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(Arc::from(name))
    }

    /// The dimension nothing is known about (`?`).
    pub fn unknown() -> Dim {
        Dim::Sym(Arc::from("?"))
    }

    /// The size, if it is known.
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }

    /// True for `?`, the dimension nothing is known about.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Dim::Sym(s) if &**s == "?")
    }

    /// Whether two dims may denote the same size: equal known sizes, equal names, or either
    /// side unknown (`?`).
    pub fn may_equal(&self, other: &Dim) -> bool {
        self.is_unknown() || other.is_unknown() || self == other
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Known(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The dimensions of a tensor, outermost first (C order). Rank 0 is a scalar.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// The shape of a scalar.
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    /// A shape whose dims are all known.
    pub fn known(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dims.
    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// All dims as numbers, if every one is known.
    pub fn to_known(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::known).collect()
    }

    /// The number of elements if every dim is known, or `None`. Overflow of `usize` also
    /// gives `None`; use [`Shape::checked_numel`] to tell the two apart.
    pub fn numel(&self) -> Option<usize> {
        self.checked_numel().ok().flatten()
    }

    /// `Ok(Some(n))` when every dim is known, `Ok(None)` when some dim is symbolic, and
    /// `Err(())` when the product of the known dims overflows `usize`.
    #[allow(clippy::result_unit_err)]
    pub fn checked_numel(&self) -> Result<Option<usize>, ()> {
        let mut n: usize = 1;
        let mut all_known = true;
        for d in &self.0 {
            match d {
                Dim::Known(k) => n = n.checked_mul(*k).ok_or(())?,
                Dim::Sym(_) => all_known = false,
            }
        }
        Ok(all_known.then_some(n))
    }

    /// Product of the known dims, treating symbolic dims as 1 (used by the cost model).
    pub fn numel_lower_bound(&self) -> u64 {
        self.0
            .iter()
            .map(|d| d.known().unwrap_or(1) as u64)
            .fold(1u64, u64::saturating_mul)
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(v: Vec<Dim>) -> Shape {
        Shape(v)
    }
}

impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Shape {
        Shape::known(v)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The abstract value of a tensor: what the checker, the IR and `infer` know about it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Shape,
}

impl TensorType {
    /// A tensor type.
    pub fn new(dtype: DType, shape: Shape) -> TensorType {
        TensorType { dtype, shape }
    }

    /// A tensor type whose dims are all known.
    pub fn known(dtype: DType, dims: &[usize]) -> TensorType {
        TensorType::new(dtype, Shape::known(dims))
    }

    /// Rank of the shape.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

impl fmt::Debug for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
