//! A deliberately naive reference evaluator of every primitive over `f64` values.
//!
//! Each rule is written from the semantics in the doc comments of `ir::prim`, with NumPy and
//! PyTorch settling what those leave open, and from nothing else: no device code is reused.
//! The loops walk output (or input) indices one at a time in C order, so that each rule can
//! be checked by reading it against its definition.
//!
//! Values are kept as `f64`. Floating-point results are computed in `f64` and then rounded
//! once to the output dtype, so an `f32` result is the correctly rounded value of the exact
//! function of the (widened) `f32` inputs, up to the accuracy of the `f64` computation.
//! Integer arithmetic is done in `i64` with wrapping and then narrowed, which gives the
//! two's-complement wrapping result of every width; integer operands must therefore be
//! exact in `f64` (magnitude at most 2^53), which the generators guarantee.
//!
//! Random numbers have no value oracle: [`eval`] answers [`RefError::NoOracle`] with the
//! type the result must have, and the RNG is tested by its laws instead.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use ir::{
    ArgOp, BinaryOp, CmpOp, Conv2dParams, DType, Op, Pool2dParams, PoolOp, ReduceOp, SliceDim,
    UnaryOp,
};

/// A dense tensor of `f64` values in C order, tagged with the dtype it stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct RefTensor {
    /// The dtype whose values `data` holds (integers and bools as exact `f64`).
    pub dtype: DType,
    /// Dims, outermost first.
    pub dims: Vec<usize>,
    /// The elements in C order.
    pub data: Vec<f64>,
}

impl RefTensor {
    /// A tensor from its elements; panics when they do not fill the dims.
    pub fn new(dtype: DType, dims: &[usize], data: Vec<f64>) -> RefTensor {
        assert_eq!(
            data.len(),
            numel(dims),
            "{} elements do not fill the dims {dims:?}",
            data.len()
        );
        RefTensor {
            dtype,
            dims: dims.to_vec(),
            data,
        }
    }

    /// A tensor whose every element is `v`.
    pub fn filled(dtype: DType, dims: &[usize], v: f64) -> RefTensor {
        RefTensor::new(dtype, dims, vec![v; numel(dims)])
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Position of the element at multi-index `idx` in `data`.
    pub fn offset(&self, idx: &[usize]) -> usize {
        debug_assert_eq!(idx.len(), self.dims.len());
        idx.iter()
            .zip(&self.dims)
            .fold(0, |acc, (&i, &d)| acc * d + i)
    }

    /// The element at multi-index `idx`.
    pub fn at(&self, idx: &[usize]) -> f64 {
        self.data[self.offset(idx)]
    }

    /// The same tensor with every element replaced by its absolute value.
    pub fn abs(&self) -> RefTensor {
        RefTensor {
            dtype: self.dtype,
            dims: self.dims.clone(),
            data: self.data.iter().map(|v| v.abs()).collect(),
        }
    }
}

/// Why the reference gives no value.
#[derive(Clone, Debug, PartialEq)]
pub enum RefError {
    /// The primitive is random: there is no value to compare with, only the type.
    NoOracle {
        /// The dtype the result must have.
        dtype: DType,
        /// The dims the result must have.
        dims: Vec<usize>,
    },
    /// The operands are well typed but their values are invalid (an index out of range,
    /// an integer division by zero, ...) or the result is undefined (the maximum of
    /// nothing); a device must report an error or, for undefined results, may do anything
    /// but panic.
    Invalid(String),
}

/// Number of elements of a shape.
pub fn numel(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// The multi-index of the `flat`-th element of a C-order tensor with these dims.
pub fn unravel(mut flat: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for (i, &d) in dims.iter().enumerate().rev() {
        idx[i] = flat % d;
        flat /= d;
    }
    idx
}

/// NumPy's broadcast of two shapes. Panics if they do not broadcast (the cases are valid).
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Vec<usize> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let da = if i + a.len() >= rank {
                a[i + a.len() - rank]
            } else {
                1
            };
            let db = if i + b.len() >= rank {
                b[i + b.len() - rank]
            } else {
                1
            };
            match (da, db) {
                (1, d) | (d, 1) => d,
                (x, y) if x == y => x,
                _ => panic!("{a:?} and {b:?} do not broadcast"),
            }
        })
        .collect()
}

/// The element of `t` that position `out_idx` of a broadcast result reads: leading axes
/// that `t` lacks are dropped, and its size-1 axes read index 0.
fn broadcast_read(t: &RefTensor, out_idx: &[usize]) -> f64 {
    let skip = out_idx.len() - t.rank();
    let idx: Vec<usize> = out_idx[skip..]
        .iter()
        .zip(&t.dims)
        .map(|(&i, &d)| if d == 1 { 0 } else { i })
        .collect();
    t.at(&idx)
}

/// Rounds a real result of floating-point arithmetic to the output dtype.
fn round_float(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::F32 => v as f32 as f64,
        DType::F64 => v,
        other => panic!("round_float on {other}"),
    }
}

/// Narrows a wrapped `i64` result to an integer dtype (two's complement wrapping), or maps
/// it to 0/1 for `bool`.
fn wrap_int(dtype: DType, v: i64) -> f64 {
    match dtype {
        DType::I32 => v as i32 as f64,
        DType::I64 => v as f64,
        DType::Bool => f64::from(u8::from(v != 0)),
        other => panic!("wrap_int on {other}"),
    }
}

/// Converts a value of dtype `from` to dtype `to` like `cast`: floats round to the nearest
/// `f32`; floats to integers truncate toward zero, saturate at the integer range and give 0
/// for NaN (Rust's `as`, the documented CPU semantics); integers narrow by wrapping; bools
/// are 0 and 1; anything to `bool` is "non-zero" (so NaN is true).
pub fn convert(v: f64, from: DType, to: DType) -> f64 {
    match to {
        DType::F32 => v as f32 as f64,
        DType::F64 => v,
        DType::I32 if from.is_int() => (v as i64) as i32 as f64,
        DType::I32 => (v as i32) as f64,
        DType::I64 => (v as i64) as f64,
        DType::Bool => f64::from(u8::from(v != 0.0)),
        DType::BF16 | DType::F16 => panic!("the reference has no {to} arithmetic"),
    }
}

/// Evaluates `op` on `inputs`. The operands are assumed well typed (the cases are built
/// valid); value-dependent failures are [`RefError::Invalid`].
pub fn eval(op: &Op, inputs: &[&RefTensor]) -> Result<RefTensor, RefError> {
    let x = |i: usize| inputs[i];
    match op {
        Op::Unary { op } => Ok(unary(*op, x(0))),
        Op::Binary { op } => binary(*op, x(0), x(1)),
        Op::Compare { op } => Ok(compare(*op, x(0), x(1))),
        Op::Select {} => Ok(select(x(0), x(1), x(2))),
        Op::Reduce { op, axes, keepdims } => reduce(*op, x(0), axes, *keepdims),
        Op::ArgReduce { op, axis, keepdims } => Ok(arg_reduce(*op, x(0), *axis, *keepdims)),
        Op::MatMul {} => Ok(matmul(x(0), x(1))),
        Op::Reshape { shape } => {
            let dims = shape.to_known().expect("a known shape");
            Ok(RefTensor::new(x(0).dtype, &dims, x(0).data.clone()))
        }
        Op::Transpose { perm } => Ok(transpose(x(0), perm)),
        Op::Broadcast { shape } => {
            let dims = shape.to_known().expect("a known shape");
            let data = (0..numel(&dims))
                .map(|f| broadcast_read(x(0), &unravel(f, &dims)))
                .collect();
            Ok(RefTensor::new(x(0).dtype, &dims, data))
        }
        Op::Slice { dims } => Ok(slice(x(0), dims)),
        Op::Concat { axis } => Ok(concat(inputs, *axis)),
        Op::Pad { pads, value } => Ok(pad(x(0), pads, *value)),
        Op::Gather { axis } => gather(x(0), x(1), *axis),
        Op::ScatterAdd { axis } => scatter_add(x(0), x(1), x(2), *axis),
        Op::Conv2d { params } => Ok(conv2d(x(0), x(1), params)),
        Op::Conv2dBackwardInput { params, input_hw } => {
            Ok(conv2d_backward_input(x(0), x(1), params, *input_hw))
        }
        Op::Conv2dBackwardFilter { params, kernel_hw } => {
            Ok(conv2d_backward_filter(x(0), x(1), params, *kernel_hw))
        }
        Op::Pool2d { op, params } => Ok(pool2d(*op, x(0), params)),
        Op::Pool2dBackward { op, params } => Ok(pool2d_backward(*op, x(0), x(1), params)),
        Op::Cast { dtype } => {
            let from = x(0).dtype;
            let data = x(0)
                .data
                .iter()
                .map(|&v| convert(v, from, *dtype))
                .collect();
            Ok(RefTensor::new(*dtype, &x(0).dims, data))
        }
        Op::Random { shape, dtype, .. } => Err(RefError::NoOracle {
            dtype: *dtype,
            dims: shape.to_known().expect("a known shape"),
        }),
        Op::Iota { shape, axis, dtype } => {
            let dims = shape.to_known().expect("a known shape");
            let data = (0..numel(&dims))
                .map(|f| convert(unravel(f, &dims)[*axis] as f64, DType::F64, *dtype))
                .collect();
            Ok(RefTensor::new(*dtype, &dims, data))
        }
        Op::Full {
            shape,
            dtype,
            value,
        } => {
            let dims = shape.to_known().expect("a known shape");
            Ok(RefTensor::filled(
                *dtype,
                &dims,
                convert(*value, DType::F64, *dtype),
            ))
        }
        Op::Print {} | Op::StopGradient {} => Ok(x(0).clone()),
    }
}

/// How rounding errors may accumulate in one output element of `op`, for choosing a
/// tolerance: `terms` is the largest number of products or addends summed into one output
/// element, and the result is linear (with non-negative coefficients) in the operands listed
/// in `abs_operands`, so evaluating the op on their absolute values gives `Σ|terms|`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accumulation {
    /// Most terms summed (or multiplied) into one output element.
    pub terms: usize,
    /// Operands to replace by their absolute values to get `Σ|terms|` per output element.
    pub abs_operands: Vec<usize>,
}

/// The accumulation of `op` on operands of these dims, or `None` for the primitives whose
/// every output element is one rounding of an exact function of its inputs (elementwise,
/// movement, max/min, creation).
pub fn accumulation(op: &Op, dims: &[&[usize]]) -> Option<Accumulation> {
    let acc = |terms: usize, abs_operands: &[usize]| {
        Some(Accumulation {
            terms: terms.max(1),
            abs_operands: abs_operands.to_vec(),
        })
    };
    match op {
        Op::Reduce {
            op: ReduceOp::Sum | ReduceOp::Prod,
            axes,
            ..
        } => acc(axes.iter().map(|&a| dims[0][a]).product(), &[0]),
        Op::MatMul {} => acc(dims[0][dims[0].len() - 1], &[0, 1]),
        Op::ScatterAdd { .. } => acc(numel(dims[1]) + 1, &[0, 2]),
        Op::Conv2d { .. } => acc(dims[1][1] * dims[1][2] * dims[1][3], &[0, 1]),
        Op::Conv2dBackwardInput { params, .. } => acc(
            dims[1][0] / params.groups * dims[1][2] * dims[1][3],
            &[0, 1],
        ),
        Op::Conv2dBackwardFilter { .. } => acc(dims[1][0] * dims[1][2] * dims[1][3], &[0, 1]),
        Op::Pool2d {
            op: PoolOp::Avg,
            params,
        } => acc(params.window[0] * params.window[1] + 1, &[0]),
        Op::Pool2dBackward { params, .. } => {
            let overlap = |i: usize| params.window[i].div_ceil(params.stride[i]);
            acc(overlap(0) * overlap(1) + 1, &[1])
        }
        Op::Unary { .. }
        | Op::Binary { .. }
        | Op::Compare { .. }
        | Op::Select {}
        | Op::Reduce { .. }
        | Op::ArgReduce { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Pad { .. }
        | Op::Gather { .. }
        | Op::Pool2d { .. }
        | Op::Cast { .. }
        | Op::Random { .. }
        | Op::Iota { .. }
        | Op::Full { .. }
        | Op::Print {}
        | Op::StopGradient {} => None,
    }
}

// ---------------------------------------------------------------------------------------
// Elementwise.

fn unary(op: UnaryOp, x: &RefTensor) -> RefTensor {
    let out_dtype = match op.kind() {
        ir::UnaryKind::Predicate => DType::Bool,
        _ => x.dtype,
    };
    let data = x
        .data
        .iter()
        .map(|&v| unary_scalar(op, v, x.dtype))
        .collect();
    RefTensor::new(out_dtype, &x.dims, data)
}

fn bool_f64(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// One element of a unary op on a value of dtype `dt`.
pub fn unary_scalar(op: UnaryOp, v: f64, dt: DType) -> f64 {
    use UnaryOp::*;
    if dt == DType::Bool {
        return match op {
            Not => bool_f64(v == 0.0),
            _ => panic!("{op} does not take bool"),
        };
    }
    if dt.is_int() {
        let i = v as i64;
        return match op {
            Neg => wrap_int(dt, i.wrapping_neg()),
            Abs => wrap_int(dt, i.wrapping_abs()),
            Sign => i.signum() as f64,
            // Rounding an integer leaves it as it is.
            Floor | Ceil | Round => v,
            Relu => i.max(0) as f64,
            IsNan => 0.0,
            IsFinite => 1.0,
            _ => panic!("{op} does not take integers"),
        };
    }
    let r = match op {
        Neg => -v,
        Abs => v.abs(),
        Sign => {
            if v.is_nan() {
                f64::NAN
            } else if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        Floor => v.floor(),
        Ceil => v.ceil(),
        Round => round_half_even(v),
        // `max(x, 0)` with NaN winning, as NumPy's `maximum` and PyTorch's `relu`.
        Relu => {
            if v.is_nan() {
                f64::NAN
            } else if v > 0.0 {
                v
            } else {
                0.0
            }
        }
        Exp => v.exp(),
        Log => v.ln(),
        Log1p => v.ln_1p(),
        Expm1 => v.exp_m1(),
        Sqrt => v.sqrt(),
        Rsqrt => 1.0 / v.sqrt(),
        Sin => v.sin(),
        Cos => v.cos(),
        Tanh => v.tanh(),
        Sigmoid => 1.0 / (1.0 + (-v).exp()),
        // x Φ(x) = x/2 (1 + erf(x/√2)) = x/2 erfc(-x/√2); the erfc form keeps its relative
        // accuracy for large negative x, where 1 + erf cancels.
        Gelu => 0.5 * v * erfc(-v * FRAC_1_SQRT_2),
        Silu => v / (1.0 + (-v).exp()),
        // ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|), which never overflows.
        Softplus => {
            if v > 0.0 {
                v + (-v).exp().ln_1p()
            } else {
                v.exp().ln_1p()
            }
        }
        Erf => erf(v),
        Not => panic!("logical_not takes bool"),
        IsNan => return bool_f64(v.is_nan()),
        IsFinite => return bool_f64(v.is_finite()),
    };
    round_float(dt, r)
}

/// Rounds to the nearest integer, ties to the even one (NumPy's `round`).
pub fn round_half_even(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let f = x.floor();
    // `x - floor(x)` is exact: both lie in the same binade or `f` is zero.
    let frac = x - f;
    let f_is_even = (f / 2.0).floor() * 2.0 == f;
    if frac < 0.5 || (frac == 0.5 && f_is_even) {
        f
    } else {
        f + 1.0
    }
}

/// The error function, to about 1e-15 relative accuracy.
///
/// For `|x| < 2.5` it sums the series `erf(x) = 2/√π e^{-x²} Σ 2^n x^{2n+1} / (1·3·…·(2n+1))`,
/// whose terms are all positive (no cancellation). Beyond that it uses `1 - erfc(|x|)` with
/// the continued fraction of `erfc`.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let a = x.abs();
    let r = if a < 2.5 {
        erf_series(a)
    } else {
        1.0 - erfc_fraction(a)
    };
    r.copysign(x)
}

/// The complementary error function `1 - erf(x)`, accurate in relative terms for large `x`.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        f64::NAN
    } else if x < 2.5 {
        1.0 - erf(x)
    } else {
        erfc_fraction(x)
    }
}

fn erf_series(a: f64) -> f64 {
    let x2 = a * a;
    let mut term = a;
    let mut sum = a;
    let mut n = 0.0;
    while term > sum * 1e-17 {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        sum += term;
    }
    2.0 / PI.sqrt() * (-x2).exp() * sum
}

/// `erfc(a)` for `a ≥ 2.5` from the continued fraction
/// `erfc(a) = e^{-a²}/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + …))))`, evaluated from a deep
/// fixed tail inwards (it converges quickly for these `a`).
fn erfc_fraction(a: f64) -> f64 {
    if a.is_infinite() {
        return 0.0;
    }
    let mut t = a;
    for n in (1..=120).rev() {
        t = a + (n as f64 / 2.0) / t;
    }
    (-a * a).exp() / PI.sqrt() / t
}

/// Python's float `%`: the result has the sign of the divisor.
fn py_mod(a: f64, b: f64) -> f64 {
    let m = a % b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        m + b
    } else if m == 0.0 {
        0.0f64.copysign(b)
    } else {
        m
    }
}

/// Python's float `//` (CPython's `float_floor_div`), and NumPy's `a / b` for `b == 0`.
fn py_floor_div(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        return a / b;
    }
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let mut fl = div.floor();
        if div - fl > 0.5 {
            fl += 1.0;
        }
        fl
    } else {
        0.0f64.copysign(a / b)
    }
}

fn binary(op: BinaryOp, a: &RefTensor, b: &RefTensor) -> Result<RefTensor, RefError> {
    let dims = broadcast_dims(&a.dims, &b.dims);
    let dt = a.dtype;
    let mut data = Vec::with_capacity(numel(&dims));
    for f in 0..numel(&dims) {
        let idx = unravel(f, &dims);
        let (x, y) = (broadcast_read(a, &idx), broadcast_read(b, &idx));
        data.push(binary_scalar(op, x, y, dt)?);
    }
    Ok(RefTensor::new(dt, &dims, data))
}

/// One element of a binary op on values of dtype `dt`.
pub fn binary_scalar(op: BinaryOp, x: f64, y: f64, dt: DType) -> Result<f64, RefError> {
    use BinaryOp::*;
    if dt == DType::Bool {
        return Ok(match op {
            And => bool_f64(x != 0.0 && y != 0.0),
            Or => bool_f64(x != 0.0 || y != 0.0),
            _ => panic!("{op} does not take bool"),
        });
    }
    if dt.is_int() {
        let (i, j) = (x as i64, y as i64);
        let r = match op {
            Add => i.wrapping_add(j),
            Sub => i.wrapping_sub(j),
            Mul => i.wrapping_mul(j),
            Rem | FloorDiv if j == 0 => {
                return Err(RefError::Invalid(format!("{op}: integer division by zero")));
            }
            Rem => {
                let r = i.wrapping_rem(j);
                if r != 0 && ((r < 0) != (j < 0)) {
                    r + j
                } else {
                    r
                }
            }
            FloorDiv => {
                let (q, r) = (i.wrapping_div(j), i.wrapping_rem(j));
                if r != 0 && ((r < 0) != (j < 0)) {
                    q - 1
                } else {
                    q
                }
            }
            Pow if j < 0 => {
                return Err(RefError::Invalid(format!(
                    "pow: negative integer exponent {j}"
                )));
            }
            Pow => i.wrapping_pow(j.min(u32::MAX as i64) as u32),
            Maximum => i.max(j),
            Minimum => i.min(j),
            Div | And | Or => panic!("{op} does not take integers"),
        };
        return Ok(wrap_int(dt, r));
    }
    let r = match op {
        Add => x + y,
        Sub => x - y,
        Mul => x * y,
        Div => x / y,
        Rem => py_mod(x, y),
        FloorDiv => py_floor_div(x, y),
        Pow => x.powf(y),
        Maximum | Minimum if x.is_nan() || y.is_nan() => f64::NAN,
        Maximum => x.max(y),
        Minimum => x.min(y),
        And | Or => panic!("{op} takes bool"),
    };
    Ok(round_float(dt, r))
}

fn compare(op: CmpOp, a: &RefTensor, b: &RefTensor) -> RefTensor {
    let dims = broadcast_dims(&a.dims, &b.dims);
    let data = (0..numel(&dims))
        .map(|f| {
            let idx = unravel(f, &dims);
            let (x, y) = (broadcast_read(a, &idx), broadcast_read(b, &idx));
            bool_f64(match op {
                CmpOp::Eq => x == y,
                CmpOp::Ne => x != y,
                CmpOp::Lt => x < y,
                CmpOp::Le => x <= y,
                CmpOp::Gt => x > y,
                CmpOp::Ge => x >= y,
            })
        })
        .collect();
    RefTensor::new(DType::Bool, &dims, data)
}

fn select(c: &RefTensor, a: &RefTensor, b: &RefTensor) -> RefTensor {
    let dims = broadcast_dims(&c.dims, &broadcast_dims(&a.dims, &b.dims));
    let data = (0..numel(&dims))
        .map(|f| {
            let idx = unravel(f, &dims);
            if broadcast_read(c, &idx) != 0.0 {
                broadcast_read(a, &idx)
            } else {
                broadcast_read(b, &idx)
            }
        })
        .collect();
    RefTensor::new(a.dtype, &dims, data)
}

// ---------------------------------------------------------------------------------------
// Reductions and contractions.

/// The output dims of a reduction over `axes`.
fn reduced_dims(dims: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    dims.iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// The output multi-index an input multi-index folds into.
fn reduced_index(idx: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    idx.iter()
        .enumerate()
        .filter_map(|(i, &v)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(v),
            (true, true) => Some(0),
            (true, false) => None,
        })
        .collect()
}

fn reduce(
    op: ReduceOp,
    x: &RefTensor,
    axes: &[usize],
    keepdims: bool,
) -> Result<RefTensor, RefError> {
    let out_dtype = match (op, x.dtype) {
        (ReduceOp::Sum | ReduceOp::Prod, DType::Bool) => DType::I64,
        (_, d) => d,
    };
    let out = RefTensor::filled(out_dtype, &reduced_dims(&x.dims, axes, keepdims), 0.0);
    let mut groups: Vec<Vec<f64>> = vec![Vec::new(); out.numel()];
    for (f, &v) in x.data.iter().enumerate() {
        let o = out.offset(&reduced_index(&unravel(f, &x.dims), axes, keepdims));
        groups[o].push(v);
    }
    let data = groups
        .iter()
        .map(|g| fold(op, g, out_dtype))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RefTensor::new(out_dtype, &out.dims, data))
}

/// Folds the values of one reduction group (in C order).
fn fold(op: ReduceOp, vals: &[f64], dt: DType) -> Result<f64, RefError> {
    if matches!(op, ReduceOp::Max | ReduceOp::Min) && vals.is_empty() {
        return Err(RefError::Invalid(format!(
            "{op} of an empty set has no value"
        )));
    }
    if dt.is_float() {
        let r = match op {
            ReduceOp::Sum => vals.iter().sum(),
            ReduceOp::Prod => vals.iter().product(),
            _ if vals.iter().any(|v| v.is_nan()) => f64::NAN,
            ReduceOp::Max => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ReduceOp::Min => vals.iter().copied().fold(f64::INFINITY, f64::min),
        };
        return Ok(round_float(dt, r));
    }
    let ints = vals.iter().map(|&v| v as i64);
    let r = match op {
        ReduceOp::Sum => ints.fold(0i64, i64::wrapping_add),
        ReduceOp::Prod => ints.fold(1i64, i64::wrapping_mul),
        ReduceOp::Max => ints.max().unwrap_or(0),
        ReduceOp::Min => ints.min().unwrap_or(0),
    };
    Ok(wrap_int(dt, r))
}

fn arg_reduce(op: ArgOp, x: &RefTensor, axis: usize, keepdims: bool) -> RefTensor {
    let out_dims = reduced_dims(&x.dims, &[axis], keepdims);
    let n = x.dims[axis];
    let data = (0..numel(&out_dims))
        .map(|f| {
            let mut idx = unravel(f, &out_dims);
            if !keepdims {
                idx.insert(axis, 0);
            }
            let mut best = 0;
            let mut best_v = f64::NAN;
            for k in 0..n {
                idx[axis] = k;
                let v = x.at(&idx);
                // The first extreme wins; a NaN counts as more extreme than any number, and
                // the first NaN wins (NumPy's `argmax`/`argmin`).
                let better = k == 0
                    || (!best_v.is_nan()
                        && (v.is_nan()
                            || match op {
                                ArgOp::ArgMax => v > best_v,
                                ArgOp::ArgMin => v < best_v,
                            }));
                if better {
                    best = k;
                    best_v = v;
                }
            }
            best as f64
        })
        .collect();
    RefTensor::new(DType::I64, &out_dims, data)
}

fn matmul(a: &RefTensor, b: &RefTensor) -> RefTensor {
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.dims[ra - 2], a.dims[ra - 1], b.dims[rb - 1]);
    let batch = broadcast_dims(&a.dims[..ra - 2], &b.dims[..rb - 2]);
    let mut dims = batch.clone();
    dims.extend([m, n]);
    let dt = a.dtype;
    let mut data = Vec::with_capacity(numel(&dims));
    for bf in 0..numel(&batch) {
        let bidx = unravel(bf, &batch);
        // The batch index each operand reads, after broadcasting.
        let pick = |t: &RefTensor, i: usize, j: usize| {
            let skip = batch.len() - (t.rank() - 2);
            let mut idx: Vec<usize> = bidx[skip..]
                .iter()
                .zip(&t.dims)
                .map(|(&v, &d)| if d == 1 { 0 } else { v })
                .collect();
            idx.extend([i, j]);
            t.at(&idx)
        };
        for i in 0..m {
            for j in 0..n {
                let v = if dt.is_float() {
                    let s: f64 = (0..k).map(|p| pick(a, i, p) * pick(b, p, j)).sum();
                    round_float(dt, s)
                } else {
                    let s = (0..k).fold(0i64, |acc, p| {
                        acc.wrapping_add((pick(a, i, p) as i64).wrapping_mul(pick(b, p, j) as i64))
                    });
                    wrap_int(dt, s)
                };
                data.push(v);
            }
        }
    }
    RefTensor::new(dt, &dims, data)
}

// ---------------------------------------------------------------------------------------
// Movement.

fn transpose(x: &RefTensor, perm: &[usize]) -> RefTensor {
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
    let data = (0..numel(&dims))
        .map(|f| {
            let oidx = unravel(f, &dims);
            let mut idx = vec![0; x.rank()];
            for (i, &p) in perm.iter().enumerate() {
                idx[p] = oidx[i];
            }
            x.at(&idx)
        })
        .collect();
    RefTensor::new(x.dtype, &dims, data)
}

fn slice(x: &RefTensor, sl: &[SliceDim]) -> RefTensor {
    let dims: Vec<usize> = sl.iter().map(|s| s.len).collect();
    let data = (0..numel(&dims))
        .map(|f| {
            let idx: Vec<usize> = unravel(f, &dims)
                .iter()
                .zip(sl)
                .map(|(&k, s)| (s.start as isize + k as isize * s.step) as usize)
                .collect();
            x.at(&idx)
        })
        .collect();
    RefTensor::new(x.dtype, &dims, data)
}

fn concat(parts: &[&RefTensor], axis: usize) -> RefTensor {
    let mut dims = parts[0].dims.clone();
    dims[axis] = parts.iter().map(|p| p.dims[axis]).sum();
    let data = (0..numel(&dims))
        .map(|f| {
            let mut idx = unravel(f, &dims);
            for p in parts {
                if idx[axis] < p.dims[axis] {
                    return p.at(&idx);
                }
                idx[axis] -= p.dims[axis];
            }
            unreachable!("the index lies in some part")
        })
        .collect();
    RefTensor::new(parts[0].dtype, &dims, data)
}

fn pad(x: &RefTensor, pads: &[(usize, usize)], value: f64) -> RefTensor {
    let dims: Vec<usize> = x
        .dims
        .iter()
        .zip(pads)
        .map(|(&d, &(lo, hi))| d + lo + hi)
        .collect();
    let fill = convert(value, DType::F64, x.dtype);
    let data = (0..numel(&dims))
        .map(|f| {
            let oidx = unravel(f, &dims);
            let mut idx = Vec::with_capacity(oidx.len());
            for ((&o, &(lo, _)), &d) in oidx.iter().zip(pads).zip(&x.dims) {
                if o < lo || o - lo >= d {
                    return fill;
                }
                idx.push(o - lo);
            }
            x.at(&idx)
        })
        .collect();
    RefTensor::new(x.dtype, &dims, data)
}

/// Resolves a gather/scatter index against an axis of size `n` (negatives count from the end).
fn resolve_index(i: f64, n: usize, axis: usize, op: &str) -> Result<usize, RefError> {
    let i = i as i64;
    let j = if i < 0 { i + n as i64 } else { i };
    if j < 0 || j >= n as i64 {
        Err(RefError::Invalid(format!(
            "{op}: index {i} is out of range for axis {axis} of size {n}"
        )))
    } else {
        Ok(j as usize)
    }
}

/// The dims `gather(x, idx, axis)` gives.
fn gather_dims(x: &[usize], idx: &[usize], axis: usize) -> Vec<usize> {
    let mut dims = x[..axis].to_vec();
    dims.extend(idx);
    dims.extend(&x[axis + 1..]);
    dims
}

/// For an element of a gather result (or of a scatter update), the position in `x` it
/// reads (or adds to).
fn gather_source(
    x: &RefTensor,
    idx: &RefTensor,
    axis: usize,
    oidx: &[usize],
    op: &str,
) -> Result<usize, RefError> {
    let r = idx.rank();
    let j = resolve_index(idx.at(&oidx[axis..axis + r]), x.dims[axis], axis, op)?;
    let mut src = oidx[..axis].to_vec();
    src.push(j);
    src.extend(&oidx[axis + r..]);
    Ok(x.offset(&src))
}

fn gather(x: &RefTensor, idx: &RefTensor, axis: usize) -> Result<RefTensor, RefError> {
    let dims = gather_dims(&x.dims, &idx.dims, axis);
    let data = (0..numel(&dims))
        .map(|f| Ok(x.data[gather_source(x, idx, axis, &unravel(f, &dims), "gather")?]))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RefTensor::new(x.dtype, &dims, data))
}

fn scatter_add(
    x: &RefTensor,
    idx: &RefTensor,
    upd: &RefTensor,
    axis: usize,
) -> Result<RefTensor, RefError> {
    let mut out = x.clone();
    let float = x.dtype.is_float();
    for (f, &u) in upd.data.iter().enumerate() {
        let o = gather_source(x, idx, axis, &unravel(f, &upd.dims), "scatter_add")?;
        out.data[o] = if float {
            out.data[o] + u
        } else {
            wrap_int(x.dtype, (out.data[o] as i64).wrapping_add(u as i64))
        };
    }
    if float {
        for v in &mut out.data {
            *v = round_float(x.dtype, *v);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Convolution and pooling (NCHW input, OIHW weights).

/// Output size of a window of `k` taps (dilation `d`) sliding with `stride` over `n`
/// elements padded by `pad` on both sides.
pub fn window_out(n: usize, k: usize, stride: usize, pad: usize, dil: usize) -> usize {
    (n + 2 * pad - (dil * (k - 1) + 1)) / stride + 1
}

/// The input coordinate tap `t` of output position `o` reads, or `None` in the padding.
fn tap(o: usize, t: usize, stride: usize, pad: usize, dil: usize, n: usize) -> Option<usize> {
    let p = (o * stride + t * dil) as isize - pad as isize;
    (p >= 0 && (p as usize) < n).then_some(p as usize)
}

/// Calls `f(n, o, oh, ow, c, i, j, h, w)` for every (output position, weight tap) pair of
/// a convolution whose input tap `(h, w)` lies inside the input: `c` is the input channel
/// and `(o, c mod C/g, i, j)` the weight element.
#[allow(clippy::too_many_arguments)]
fn conv_taps(
    xn: usize,
    xc: usize,
    (h, w): (usize, usize),
    (o_ch, cg, kh, kw): (usize, usize, usize, usize),
    p: &Conv2dParams,
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize, usize, usize, usize),
) {
    let oh_n = window_out(h, kh, p.stride[0], p.padding[0], p.dilation[0]);
    let ow_n = window_out(w, kw, p.stride[1], p.padding[1], p.dilation[1]);
    let og = o_ch / p.groups;
    debug_assert_eq!(xc, cg * p.groups);
    for n in 0..xn {
        for o in 0..o_ch {
            let g = o / og;
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    for ci in 0..cg {
                        for i in 0..kh {
                            let Some(y) = tap(oh, i, p.stride[0], p.padding[0], p.dilation[0], h)
                            else {
                                continue;
                            };
                            for j in 0..kw {
                                let Some(x) =
                                    tap(ow, j, p.stride[1], p.padding[1], p.dilation[1], w)
                                else {
                                    continue;
                                };
                                f(n, o, oh, ow, g * cg + ci, i, j, y, x);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn conv2d(x: &RefTensor, w: &RefTensor, p: &Conv2dParams) -> RefTensor {
    let (n, c, h, wd) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    let (o, cg, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
    let oh = window_out(h, kh, p.stride[0], p.padding[0], p.dilation[0]);
    let ow = window_out(wd, kw, p.stride[1], p.padding[1], p.dilation[1]);
    let mut out = RefTensor::filled(x.dtype, &[n, o, oh, ow], 0.0);
    conv_taps(
        n,
        c,
        (h, wd),
        (o, cg, kh, kw),
        p,
        |ni, oi, y, z, ci, i, j, hy, wx| {
            let v = x.at(&[ni, ci, hy, wx]) * w.at(&[oi, ci % cg, i, j]);
            let at = out.offset(&[ni, oi, y, z]);
            out.data[at] += v;
        },
    );
    out.data
        .iter_mut()
        .for_each(|v| *v = round_float(x.dtype, *v));
    out
}

fn conv2d_backward_input(
    dy: &RefTensor,
    w: &RefTensor,
    p: &Conv2dParams,
    input_hw: [usize; 2],
) -> RefTensor {
    let (n, o, cg, kh, kw) = (dy.dims[0], w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
    let c = cg * p.groups;
    let mut dx = RefTensor::filled(dy.dtype, &[n, c, input_hw[0], input_hw[1]], 0.0);
    // dx[n, c, h, w] = Σ dy[n, o, oh, ow] · w[o, c mod C/g, i, j] over the taps that read
    // (h, w): the adjoint of the forward sum.
    conv_taps(
        n,
        c,
        (input_hw[0], input_hw[1]),
        (o, cg, kh, kw),
        p,
        |ni, oi, y, z, ci, i, j, hy, wx| {
            let v = dy.at(&[ni, oi, y, z]) * w.at(&[oi, ci % cg, i, j]);
            let at = dx.offset(&[ni, ci, hy, wx]);
            dx.data[at] += v;
        },
    );
    dx.data
        .iter_mut()
        .for_each(|v| *v = round_float(dy.dtype, *v));
    dx
}

fn conv2d_backward_filter(
    x: &RefTensor,
    dy: &RefTensor,
    p: &Conv2dParams,
    kernel_hw: [usize; 2],
) -> RefTensor {
    let (n, c, h, wd) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    let o = dy.dims[1];
    let cg = c / p.groups;
    let mut dw = RefTensor::filled(x.dtype, &[o, cg, kernel_hw[0], kernel_hw[1]], 0.0);
    // dw[o, c', i, j] = Σ x[n, c, h, w] · dy[n, o, oh, ow] over every output position.
    conv_taps(
        n,
        c,
        (h, wd),
        (o, cg, kernel_hw[0], kernel_hw[1]),
        p,
        |ni, oi, y, z, ci, i, j, hy, wx| {
            let v = x.at(&[ni, ci, hy, wx]) * dy.at(&[ni, oi, y, z]);
            let at = dw.offset(&[oi, ci % cg, i, j]);
            dw.data[at] += v;
        },
    );
    dw.data
        .iter_mut()
        .for_each(|v| *v = round_float(x.dtype, *v));
    dw
}

/// The in-bounds input positions of pooling window `(oh, ow)` in row-major window order.
fn pool_window(
    (oh, ow): (usize, usize),
    (h, w): (usize, usize),
    p: &Pool2dParams,
) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for i in 0..p.window[0] {
        for j in 0..p.window[1] {
            if let (Some(y), Some(x)) = (
                tap(oh, i, p.stride[0], p.padding[0], 1, h),
                tap(ow, j, p.stride[1], p.padding[1], 1, w),
            ) {
                v.push((y, x));
            }
        }
    }
    v
}

/// Calls `f(n, c, oh, ow, window)` for every pooling window.
fn pool_windows(
    x: &RefTensor,
    p: &Pool2dParams,
    mut f: impl FnMut(usize, usize, usize, usize, &[(usize, usize)]),
) {
    let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    let oh = window_out(h, p.window[0], p.stride[0], p.padding[0], 1);
    let ow = window_out(w, p.window[1], p.stride[1], p.padding[1], 1);
    for ni in 0..n {
        for ci in 0..c {
            for y in 0..oh {
                for z in 0..ow {
                    f(ni, ci, y, z, &pool_window((y, z), (h, w), p));
                }
            }
        }
    }
}

/// The first position of the largest value in a window (padding, being -inf, never wins
/// over the real elements a valid window always has).
fn first_max(x: &RefTensor, ni: usize, ci: usize, win: &[(usize, usize)]) -> (usize, usize) {
    let mut best = win[0];
    for &(y, z) in &win[1..] {
        if x.at(&[ni, ci, y, z]) > x.at(&[ni, ci, best.0, best.1]) {
            best = (y, z);
        }
    }
    best
}

fn pool2d(op: PoolOp, x: &RefTensor, p: &Pool2dParams) -> RefTensor {
    let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    let oh = window_out(h, p.window[0], p.stride[0], p.padding[0], 1);
    let ow = window_out(w, p.window[1], p.stride[1], p.padding[1], 1);
    let mut out = RefTensor::filled(x.dtype, &[n, c, oh, ow], 0.0);
    let area = (p.window[0] * p.window[1]) as f64;
    pool_windows(x, p, |ni, ci, y, z, win| {
        let v = match op {
            PoolOp::Max => {
                let (a, b) = first_max(x, ni, ci, win);
                x.at(&[ni, ci, a, b])
            }
            // Padding counts as zero and the divisor is the whole window.
            PoolOp::Avg => {
                let s: f64 = win.iter().map(|&(a, b)| x.at(&[ni, ci, a, b])).sum();
                round_float(x.dtype, s / area)
            }
        };
        let at = out.offset(&[ni, ci, y, z]);
        out.data[at] = v;
    });
    out
}

fn pool2d_backward(op: PoolOp, x: &RefTensor, dy: &RefTensor, p: &Pool2dParams) -> RefTensor {
    let mut dx = RefTensor::filled(x.dtype, &x.dims, 0.0);
    let area = (p.window[0] * p.window[1]) as f64;
    let int = !x.dtype.is_float();
    pool_windows(x, p, |ni, ci, y, z, win| {
        let g = dy.at(&[ni, ci, y, z]);
        match op {
            // Each window's gradient goes to its first maximum.
            PoolOp::Max => {
                let (a, b) = first_max(x, ni, ci, win);
                let at = dx.offset(&[ni, ci, a, b]);
                dx.data[at] = if int {
                    wrap_int(x.dtype, (dx.data[at] as i64).wrapping_add(g as i64))
                } else {
                    dx.data[at] + g
                };
            }
            // Each window spreads its gradient evenly over the whole window; the share of
            // the padding is dropped.
            PoolOp::Avg => {
                for &(a, b) in win {
                    let at = dx.offset(&[ni, ci, a, b]);
                    dx.data[at] += g / area;
                }
            }
        }
    });
    if !int {
        dx.data
            .iter_mut()
            .for_each(|v| *v = round_float(x.dtype, *v));
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Values from the tables of Abramowitz and Stegun and from mpmath at 30 digits.
        let known = [
            (0.0, 0.0),
            (1e-10, 1.1283791670955126e-10),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (2.5, 0.999_593_047_982_555),
            (3.0, 0.9999779095030014),
            (-1.5, -0.9661051464753108),
        ];
        for (x, want) in known {
            let got = erf(x);
            assert!(
                (got - want).abs() <= 4e-16 * want.abs().max(1e-300) + 1e-300,
                "erf({x}) = {got}, want {want}"
            );
        }
        let tails = [
            (3.0, 2.209049699858544e-5),
            (5.0, 1.537_459_794_428_035e-12),
            (10.0, 2.088487583762545e-45),
        ];
        for (x, want) in tails {
            let got = erfc(x);
            assert!(
                ((got - want) / want).abs() < 1e-14,
                "erfc({x}) = {got}, want {want}"
            );
        }
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(erf(f64::NEG_INFINITY), -1.0);
        assert!(erf(f64::NAN).is_nan());
    }

    #[test]
    fn round_half_even_agrees_with_std() {
        for x in [
            -3.5,
            -2.5,
            -1.5,
            -0.5,
            0.5,
            1.5,
            2.5,
            3.5,
            0.49999999999999994,
            -0.7,
            4.3,
            1e300,
        ] {
            assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
        }
    }

    #[test]
    fn python_floored_division() {
        assert_eq!(py_mod(-7.0, 3.0), 2.0);
        assert_eq!(py_mod(7.0, -3.0), -2.0);
        assert_eq!(py_floor_div(-7.0, 3.0), -3.0);
        assert_eq!(py_floor_div(7.0, -3.0), -3.0);
        assert_eq!(py_floor_div(7.5, 2.0), 3.0);
        assert_eq!(binary_scalar(BinaryOp::Rem, -7.0, 3.0, DType::I32), Ok(2.0));
        assert_eq!(
            binary_scalar(BinaryOp::FloorDiv, -7.0, 2.0, DType::I64),
            Ok(-4.0)
        );
    }

    #[test]
    fn conv_is_cross_correlation() {
        // A 1x1x3x3 input and a 1x1x2x2 kernel: out[0,0] = 1*1 + 2*0 + 4*0 + 5*1 = 6.
        let x = RefTensor::new(DType::F64, &[1, 1, 3, 3], (1..=9).map(f64::from).collect());
        let w = RefTensor::new(DType::F64, &[1, 1, 2, 2], vec![1.0, 0.0, 0.0, 1.0]);
        let y = conv2d(&x, &w, &Conv2dParams::default());
        assert_eq!(y.dims, [1, 1, 2, 2]);
        assert_eq!(y.data, [6.0, 8.0, 12.0, 14.0]);
    }
}
