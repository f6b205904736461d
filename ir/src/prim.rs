//! The closed primitive table.
//!
//! One declarative table (the `prims!` invocation below) generates [`Prim`] (what a primitive
//! is), [`Op`] (a primitive applied with its attributes) and [`Prim::info`]. Every rule family
//! elsewhere — `infer`, `cost`, the VJP/JVP rules, sharding rules and the kernels — is a `match`
//! over every variant with no catch-all arm, so adding a primitive is one line here and the
//! compiler then lists every rule that is still missing.
//!
//! Elementwise, reduction, random and pooling primitives are *families*: one table entry
//! with an op enum ([`UnaryOp`], [`BinaryOp`], ...). A family shares its broadcasting, dtype
//! and sharding rules; each op still has its own name (`exp`, `add`), kernel and gradient.

use std::fmt;
use std::sync::OnceLock;

use crate::{DType, Shape};

/// Declares a family's op enum with a name per op and `ALL`.
macro_rules! op_family {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident { $( $(#[doc = $doc:literal])* $var:ident = $sname:literal ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $( $(#[doc = $doc])* $var ),* }

        impl $name {
            /// Every op of the family.
            pub const ALL: &'static [$name] = &[$($name::$var),*];

            /// The op's name everywhere: builtin, IR text, kernel (`exp`, `add`, ...).
            pub const fn name(self) -> &'static str {
                match self { $( $name::$var => $sname ),* }
            }

            /// Looks an op up by its name.
            pub fn from_name(name: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|o| o.name() == name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

op_family! {
    /// Elementwise functions of one tensor. [`UnaryOp::kind`] decides which dtypes they take.
    pub enum UnaryOp {
        /// `-x`.
        Neg = "neg",
        /// `|x|`.
        Abs = "abs",
        /// `-1`, `0` or `1` by the sign of `x` (`0` for zero; NaN stays NaN).
        Sign = "sign",
        /// Largest integer not above `x`.
        Floor = "floor",
        /// Smallest integer not below `x`.
        Ceil = "ceil",
        /// Nearest integer, ties to even (NumPy's `round`).
        Round = "round",
        /// `max(x, 0)`.
        Relu = "relu",
        /// `e^x`.
        Exp = "exp",
        /// Natural logarithm.
        Log = "log",
        /// `ln(1 + x)`, accurate near zero.
        Log1p = "log1p",
        /// `e^x - 1`, accurate near zero.
        Expm1 = "expm1",
        /// Square root.
        Sqrt = "sqrt",
        /// `1 / sqrt(x)`.
        Rsqrt = "rsqrt",
        /// Sine (radians).
        Sin = "sin",
        /// Cosine (radians).
        Cos = "cos",
        /// Hyperbolic tangent.
        Tanh = "tanh",
        /// `1 / (1 + e^-x)`.
        Sigmoid = "sigmoid",
        /// Exact GELU: `x * Φ(x) = x/2 * (1 + erf(x/√2))`.
        Gelu = "gelu",
        /// `x * sigmoid(x)`.
        Silu = "silu",
        /// `ln(1 + e^x)`, computed without overflow.
        Softplus = "softplus",
        /// The error function.
        Erf = "erf",
        /// Logical negation of a bool tensor.
        Not = "logical_not",
        /// True where `x` is NaN.
        IsNan = "isnan",
        /// True where `x` is neither infinite nor NaN.
        IsFinite = "isfinite",
    }
}

/// Which dtypes a unary op accepts and what it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryKind {
    /// Any numeric dtype in, the same dtype out (`neg`, `abs`, `sign`, `relu`; on integers
    /// `floor`, `ceil`, `round` are the identity).
    Numeric,
    /// A float dtype in, the same dtype out (`exp`, `tanh`, ...).
    Float,
    /// `bool` in, `bool` out.
    Logical,
    /// Any numeric dtype in, `bool` out (`isnan`, `isfinite`).
    Predicate,
}

impl UnaryOp {
    /// The dtype rule of the op.
    pub const fn kind(self) -> UnaryKind {
        use UnaryOp::*;
        match self {
            Neg | Abs | Sign | Floor | Ceil | Round | Relu => UnaryKind::Numeric,
            Exp | Log | Log1p | Expm1 | Sqrt | Rsqrt | Sin | Cos | Tanh | Sigmoid | Gelu | Silu
            | Softplus | Erf => UnaryKind::Float,
            Not => UnaryKind::Logical,
            IsNan | IsFinite => UnaryKind::Predicate,
        }
    }
}

op_family! {
    /// Elementwise functions of two tensors of one dtype, broadcast NumPy-style.
    pub enum BinaryOp {
        /// `a + b`.
        Add = "add",
        /// `a - b`.
        Sub = "sub",
        /// `a * b`.
        Mul = "mul",
        /// `a / b` (floats only; the language casts integers first).
        Div = "div",
        /// Floored remainder like Python and NumPy: the result has the sign of `b`.
        Rem = "rem",
        /// Floored division: `floor(a / b)`.
        FloorDiv = "floor_div",
        /// `a ** b`. On integers a negative exponent is an error.
        Pow = "pow",
        /// Elementwise maximum (NaN wins, as NumPy's `maximum`).
        Maximum = "maximum",
        /// Elementwise minimum (NaN wins, as NumPy's `minimum`).
        Minimum = "minimum",
        /// Logical and of two bool tensors.
        And = "logical_and",
        /// Logical or of two bool tensors.
        Or = "logical_or",
    }
}

impl BinaryOp {
    /// True for the ops on `bool` tensors.
    pub const fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or)
    }
}

op_family! {
    /// Elementwise comparisons, giving `bool`.
    pub enum CmpOp {
        /// `a == b`.
        Eq = "eq",
        /// `a != b`.
        Ne = "ne",
        /// `a < b`.
        Lt = "lt",
        /// `a <= b`.
        Le = "le",
        /// `a > b`.
        Gt = "gt",
        /// `a >= b`.
        Ge = "ge",
    }
}

op_family! {
    /// Reductions over a set of axes.
    pub enum ReduceOp {
        /// Sum (of `bool`: the count of `true`, as `i64`).
        Sum = "sum",
        /// Product.
        Prod = "prod",
        /// Maximum (NaN propagates).
        Max = "max",
        /// Minimum (NaN propagates).
        Min = "min",
    }
}

op_family! {
    /// Index of the extreme value along one axis (the first one on ties), as `i64`.
    pub enum ArgOp {
        /// Index of the maximum.
        ArgMax = "argmax",
        /// Index of the minimum.
        ArgMin = "argmin",
    }
}

op_family! {
    /// Distributions of the counter-based random generator.
    pub enum RandomOp {
        /// Uniform on `[0, 1)`.
        Uniform = "random_uniform",
        /// Standard normal.
        Normal = "random_normal",
    }
}

op_family! {
    /// 2-D pooling over NCHW windows.
    pub enum PoolOp {
        /// Maximum of the window; padding counts as `-inf`.
        Max = "max_pool2d",
        /// Mean of the window; padding counts as zero and is included in the divisor
        /// (PyTorch's `count_include_pad=True`).
        Avg = "avg_pool2d",
    }
}

impl PoolOp {
    /// The name of the pooling's gradient primitive (`max_pool2d_backward`).
    pub const fn backward_name(self) -> &'static str {
        match self {
            PoolOp::Max => "max_pool2d_backward",
            PoolOp::Avg => "avg_pool2d_backward",
        }
    }
}

/// One axis of a [`Op::Slice`], fully resolved: element `k` of the result (for `k < len`)
/// is element `start + k * step` of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SliceDim {
    /// Index of the first element taken.
    pub start: usize,
    /// Number of elements taken.
    pub len: usize,
    /// Distance between taken elements; never zero, negative to walk backwards.
    pub step: isize,
}

impl SliceDim {
    /// The whole axis of size `n`.
    pub fn full(n: usize) -> SliceDim {
        SliceDim {
            start: 0,
            len: n,
            step: 1,
        }
    }

    /// Resolves a Python/NumPy slice `start:stop:step` (each optional, negatives count from
    /// the end) on an axis of size `n`, clamping like NumPy. `step` must not be zero.
    pub fn resolve(
        start: Option<i64>,
        stop: Option<i64>,
        step: Option<i64>,
        n: usize,
    ) -> Option<SliceDim> {
        let step = step.unwrap_or(1);
        if step == 0 {
            return None;
        }
        let n = n as i64;
        let norm = |v: i64, lo: i64, hi: i64| {
            let v = if v < 0 { v + n } else { v };
            v.clamp(lo, hi)
        };
        let (start, stop) = if step > 0 {
            (
                norm(start.unwrap_or(0), 0, n),
                norm(stop.unwrap_or(n), 0, n),
            )
        } else {
            (
                start.map_or(n - 1, |s| norm(s, -1, n - 1)),
                stop.map_or(-1, |s| norm(s, -1, n - 1)),
            )
        };
        let len = if step > 0 {
            if stop > start {
                (stop - start + step - 1) / step
            } else {
                0
            }
        } else if start > stop {
            (start - stop + (-step) - 1) / (-step)
        } else {
            0
        };
        Some(SliceDim {
            start: start.max(0) as usize,
            len: len as usize,
            step: step as isize,
        })
    }
}

/// Stride, padding, dilation and groups of a 2-D convolution over NCHW input with OIHW
/// weights (PyTorch's convention). Padding is symmetric per spatial axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    /// Step of the window, `[h, w]`.
    pub stride: [usize; 2],
    /// Zeros added on both sides, `[h, w]`.
    pub padding: [usize; 2],
    /// Spacing between kernel taps, `[h, w]`.
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels are split into this many independent parts.
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

/// Window, stride and padding of a 2-D pooling over NCHW input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dParams {
    /// Window size, `[h, w]`.
    pub window: [usize; 2],
    /// Step of the window, `[h, w]`.
    pub stride: [usize; 2],
    /// Padding on both sides, `[h, w]`.
    pub padding: [usize; 2],
}

/// How many operands a primitive takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arity {
    /// Exactly this many.
    Exact(usize),
    /// One or more (concat).
    Variadic,
}

impl Arity {
    /// Whether `n` operands are acceptable.
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exact(k) => n == k,
            Arity::Variadic => n >= 1,
        }
    }
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arity::Exact(k) => write!(f, "{k}"),
            Arity::Variadic => f.write_str("one or more"),
        }
    }
}

/// The broad kind of a primitive; fusion, sharding and the cost model key on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// Pointwise over (broadcast) operands.
    Elementwise,
    /// Folds axes away.
    Reduction,
    /// Matrix products.
    Contraction,
    /// Moves or selects elements without arithmetic.
    Movement,
    /// Convolutions and their gradients.
    Convolution,
    /// Pooling and its gradient.
    Pooling,
    /// Makes a tensor from attributes alone (constants, iota, random numbers).
    Creation,
    /// Has an effect beyond its value (printing).
    Effect,
}

/// What the table says about one primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimInfo {
    /// The primitive's name everywhere (`exp`, `matmul`, `conv2d`).
    pub name: &'static str,
    /// The table entry (family) it belongs to (`unary`, `matmul`).
    pub family: &'static str,
    /// Number of operands.
    pub arity: Arity,
    /// Broad kind.
    pub category: Category,
    /// Names of its attributes, in declaration order.
    pub attrs: &'static [&'static str],
}

macro_rules! prims {
    ($(
        $(#[doc = $doc:literal])*
        $var:ident $(($fld:ident : $fam:ident $(, name $namefn:path)?))? = $family:literal,
            arity $arity:expr, $cat:ident,
            { $( $(#[doc = $adoc:literal])* $attr:ident : $aty:ty ),* $(,)? }
    );* $(;)?) => {
        /// A primitive: the unit of meaning shared by every crate. See the module doc.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Prim {
            $( $(#[doc = $doc])* $var $(($fam))? ),*
        }

        /// A primitive applied with its attributes: what a kernel runs and an IR node holds.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            $( $(#[doc = $doc])* $var { $( $fld: $fam, )? $( $(#[doc = $adoc])* $attr: $aty, )* } ),*
        }

        impl Op {
            /// The primitive this op applies.
            pub fn prim(&self) -> Prim {
                match self {
                    $( Op::$var { $($fld,)? .. } => Prim::$var $( (*$fld) )? ),*
                }
            }
        }

        impl Prim {
            /// The table entry of this primitive.
            pub fn info(self) -> PrimInfo {
                match self {
                    $( Prim::$var $( ($fld) )? => PrimInfo {
                        name: prims!(@name $family $(, $fld $(, $namefn)?)?),
                        family: $family,
                        arity: $arity,
                        category: Category::$cat,
                        attrs: &[$(stringify!($attr)),*],
                    } ),*
                }
            }

            /// Every primitive, each family expanded into its ops.
            pub fn all() -> &'static [Prim] {
                static ALL: OnceLock<Vec<Prim>> = OnceLock::new();
                ALL.get_or_init(|| {
                    let mut v = Vec::new();
                    $( prims!(@push v, $var $(, $fam)?); )*
                    v
                })
            }
        }
    };
    (@name $family:literal) => { $family };
    (@name $family:literal, $fld:ident) => { $fld.name() };
    (@name $family:literal, $fld:ident, $f:path) => { $f($fld) };
    (@push $v:ident, $var:ident) => { $v.push(Prim::$var) };
    (@push $v:ident, $var:ident, $fam:ident) => { $v.extend($fam::ALL.iter().map(|&o| Prim::$var(o))) };
}

prims! {
    /// Elementwise function of one tensor.
    Unary(op: UnaryOp) = "unary", arity Arity::Exact(1), Elementwise, {};
    /// Elementwise function of two tensors of one dtype, broadcast NumPy-style.
    Binary(op: BinaryOp) = "binary", arity Arity::Exact(2), Elementwise, {};
    /// Elementwise comparison of two tensors of one dtype, broadcast; gives `bool`.
    Compare(op: CmpOp) = "compare", arity Arity::Exact(2), Elementwise, {};
    /// `select(c, a, b)`: `a` where the bool `c` is true, else `b`; all three broadcast.
    Select = "select", arity Arity::Exact(3), Elementwise, {};
    /// Reduction over `axes` (sorted, distinct); `keepdims` keeps them as size 1.
    Reduce(op: ReduceOp) = "reduce", arity Arity::Exact(1), Reduction, {
        /// The axes folded away.
        axes: Vec<usize>,
        /// Keep reduced axes with size 1.
        keepdims: bool,
    };
    /// Index of the extreme value along `axis`, as `i64`.
    ArgReduce(op: ArgOp) = "arg_reduce", arity Arity::Exact(1), Reduction, {
        /// The axis searched.
        axis: usize,
        /// Keep the axis with size 1.
        keepdims: bool,
    };
    /// Batched matrix product with NumPy `matmul` batching: `[..., m, k] @ [..., k, n]`,
    /// batch dims broadcast. Both operands have rank ≥ 2 (the language reshapes vectors).
    MatMul = "matmul", arity Arity::Exact(2), Contraction, {};
    /// Same elements in C order, new shape with the same element count.
    Reshape = "reshape", arity Arity::Exact(1), Movement, {
        /// The new shape.
        shape: Shape,
    };
    /// Permutes axes: output axis `i` is input axis `perm[i]`.
    Transpose = "transpose", arity Arity::Exact(1), Movement, {
        /// A permutation of `0..rank`.
        perm: Vec<usize>,
    };
    /// Broadcasts to `shape` with NumPy's rules (trailing alignment, size-1 dims stretch).
    Broadcast = "broadcast", arity Arity::Exact(1), Movement, {
        /// The target shape.
        shape: Shape,
    };
    /// Strided slice, one resolved [`SliceDim`] per axis.
    Slice = "slice", arity Arity::Exact(1), Movement, {
        /// One entry per input axis.
        dims: Vec<SliceDim>,
    };
    /// Joins tensors of one dtype along `axis`; the other dims must agree.
    Concat = "concat", arity Arity::Variadic, Movement, {
        /// The axis joined along.
        axis: usize,
    };
    /// Pads each axis with `value`: `pads[i] = (before, after)`.
    Pad = "pad", arity Arity::Exact(1), Movement, {
        /// Elements added before and after, per axis.
        pads: Vec<(usize, usize)>,
        /// The fill value (converted to the dtype).
        value: f64,
    };
    /// `gather(x, idx)`: NumPy's `take(x, idx, axis)`. The result has shape
    /// `x.shape[..axis] ++ idx.shape ++ x.shape[axis+1..]`; indices are integers, negative
    /// ones count from the end, out-of-range ones are an error.
    Gather = "gather", arity Arity::Exact(2), Movement, {
        /// The axis indexed.
        axis: usize,
    };
    /// `scatter_add(x, idx, upd)`: `x` with each slice of `upd` added at its index along
    /// `axis` (repeated indices accumulate). The transpose of [`Op::Gather`]: `upd` has the
    /// shape gather would give.
    ScatterAdd = "scatter_add", arity Arity::Exact(3), Movement, {
        /// The axis indexed.
        axis: usize,
    };
    /// 2-D cross-correlation of NCHW input with OIHW weights (no bias).
    Conv2d = "conv2d", arity Arity::Exact(2), Convolution, {
        /// Stride, padding, dilation and groups.
        params: Conv2dParams,
    };
    /// Gradient of [`Op::Conv2d`] with respect to its input: `(dy, w) -> dx`.
    Conv2dBackwardInput = "conv2d_backward_input", arity Arity::Exact(2), Convolution, {
        /// The forward convolution's parameters.
        params: Conv2dParams,
        /// Spatial size `[h, w]` of the forward input (not recoverable from `dy` when strided).
        input_hw: [usize; 2],
    };
    /// Gradient of [`Op::Conv2d`] with respect to its weights: `(x, dy) -> dw`.
    Conv2dBackwardFilter = "conv2d_backward_filter", arity Arity::Exact(2), Convolution, {
        /// The forward convolution's parameters.
        params: Conv2dParams,
        /// Spatial size `[kh, kw]` of the kernel.
        kernel_hw: [usize; 2],
    };
    /// 2-D pooling over NCHW input.
    Pool2d(op: PoolOp) = "pool2d", arity Arity::Exact(1), Pooling, {
        /// Window, stride and padding.
        params: Pool2dParams,
    };
    /// Gradient of [`Op::Pool2d`]: `(x, dy) -> dx`. Max pooling routes each gradient to the
    /// first maximum of its window.
    Pool2dBackward(op: PoolOp, name PoolOp::backward_name) = "pool2d_backward", arity Arity::Exact(2), Pooling, {
        /// The forward pooling's parameters.
        params: Pool2dParams,
    };
    /// Converts elements to `dtype` (floats to ints truncate toward zero; to `bool`: non-zero).
    Cast = "cast", arity Arity::Exact(1), Elementwise, {
        /// The target dtype.
        dtype: DType,
    };
    /// Random numbers from the counter-based generator. The operand is the key, an `i64[2]`
    /// holding `(seed, offset)`: element `i` depends only on the seed and `offset + i`, so
    /// streams are the same for any thread count, device or chunking.
    Random(op: RandomOp) = "random", arity Arity::Exact(1), Creation, {
        /// Shape of the result.
        shape: Shape,
        /// A float dtype.
        dtype: DType,
    };
    /// `iota`: each element is its own index along `axis`.
    Iota = "iota", arity Arity::Exact(0), Creation, {
        /// Shape of the result.
        shape: Shape,
        /// The axis counted along.
        axis: usize,
        /// A numeric dtype.
        dtype: DType,
    };
    /// A tensor filled with one value.
    Full = "full", arity Arity::Exact(0), Creation, {
        /// Shape of the result.
        shape: Shape,
        /// Element type.
        dtype: DType,
        /// The value (converted to the dtype).
        value: f64,
    };
    /// Shows its operand (an effect ordered by the executor) and returns it unchanged.
    Print = "print", arity Arity::Exact(1), Effect, {};
    /// Its operand unchanged, with a zero derivative: `stop_gradient` in a staged graph,
    /// where no tensor identity can cut the derivative off as the eager tape does.
    StopGradient = "stop_gradient", arity Arity::Exact(1), Elementwise, {};
}

impl Prim {
    /// The primitive's name (`exp`, `matmul`).
    pub fn name(self) -> &'static str {
        self.info().name
    }
}

impl fmt::Display for Prim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Op {
    /// The name of the primitive this op applies.
    pub fn name(&self) -> &'static str {
        self.prim().name()
    }

    /// The shape attribute that gives the op's result shape (`reshape`, `broadcast`, draws,
    /// `iota`, `full`): the one attribute whose symbolic dims the executor binds at run
    /// time.
    pub fn shape_attr(&self) -> Option<&Shape> {
        match self {
            Op::Reshape { shape }
            | Op::Broadcast { shape }
            | Op::Random { shape, .. }
            | Op::Iota { shape, .. }
            | Op::Full { shape, .. } => Some(shape),
            _ => None,
        }
    }

    /// [`Op::shape_attr`], to change.
    pub fn shape_attr_mut(&mut self) -> Option<&mut Shape> {
        match self {
            Op::Reshape { shape }
            | Op::Broadcast { shape }
            | Op::Random { shape, .. }
            | Op::Iota { shape, .. }
            | Op::Full { shape, .. } => Some(shape),
            _ => None,
        }
    }
}
