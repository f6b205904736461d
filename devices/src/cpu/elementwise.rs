//! Elementwise kernels: unary functions, binary arithmetic with broadcasting, comparisons
//! and `select`.

use ir::{BinaryOp, CmpOp, UnaryKind, UnaryOp};
use rayon::prelude::*;

use super::strided::{map2, map3};
use super::{PAR_MIN_ELEMS, math};
use crate::{DeviceError, Elem, Tensor, with_elem};

/// Arithmetic of one numeric element type, with the language's integer semantics:
/// wrapping overflow, floored remainder and division, errors for division by zero.
pub(crate) trait Num: Elem {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    fn rem(self, o: Self) -> Self;
    fn floor_div(self, o: Self) -> Self;
    fn pow(self, o: Self) -> Self;
    fn maximum(self, o: Self) -> Self;
    fn minimum(self, o: Self) -> Self;
    fn is_zero(self) -> bool;
    fn is_negative(self) -> bool;
    const IS_INT: bool;
}

macro_rules! num_float {
    ($t:ty) => {
        impl Num for $t {
            #[inline(always)]
            fn add(self, o: Self) -> Self {
                self + o
            }
            #[inline(always)]
            fn sub(self, o: Self) -> Self {
                self - o
            }
            #[inline(always)]
            fn mul(self, o: Self) -> Self {
                self * o
            }
            #[inline(always)]
            fn div(self, o: Self) -> Self {
                self / o
            }
            #[inline(always)]
            fn rem(self, o: Self) -> Self {
                // Python's `%`: the result takes the sign of the divisor.
                let r = self % o;
                if r != 0.0 && (r < 0.0) != (o < 0.0) {
                    r + o
                } else {
                    r
                }
            }
            #[inline(always)]
            fn floor_div(self, o: Self) -> Self {
                // Consistent with `rem`: a == floor_div(a, b) * b + rem(a, b).
                let r = self % o;
                let q = (self - r) / o;
                if r != 0.0 && (r < 0.0) != (o < 0.0) {
                    (q - 1.0).round()
                } else if o == 0.0 {
                    self / o
                } else {
                    q.round()
                }
            }
            #[inline(always)]
            fn pow(self, o: Self) -> Self {
                self.powf(o)
            }
            #[inline(always)]
            fn maximum(self, o: Self) -> Self {
                if self.is_nan() || o.is_nan() {
                    <$t>::NAN
                } else if self >= o {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            fn minimum(self, o: Self) -> Self {
                if self.is_nan() || o.is_nan() {
                    <$t>::NAN
                } else if self <= o {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            fn is_zero(self) -> bool {
                self == 0.0
            }
            #[inline(always)]
            fn is_negative(self) -> bool {
                self < 0.0
            }
            const IS_INT: bool = false;
        }
    };
}
num_float!(f32);
num_float!(f64);

macro_rules! num_int {
    ($t:ty) => {
        impl Num for $t {
            #[inline(always)]
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            #[inline(always)]
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            #[inline(always)]
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            // Integer `div` is refused by `ir::infer`; this truncating form is never reached
            // through a device but keeps the trait total.
            #[inline(always)]
            fn div(self, o: Self) -> Self {
                if o == 0 { 0 } else { self.wrapping_div(o) }
            }
            #[inline(always)]
            fn rem(self, o: Self) -> Self {
                if o == 0 {
                    return 0;
                }
                let r = self.wrapping_rem(o);
                if r != 0 && ((r < 0) != (o < 0)) {
                    r + o
                } else {
                    r
                }
            }
            #[inline(always)]
            fn floor_div(self, o: Self) -> Self {
                if o == 0 {
                    return 0;
                }
                let q = self.wrapping_div(o);
                let r = self.wrapping_rem(o);
                if r != 0 && ((r < 0) != (o < 0)) {
                    q - 1
                } else {
                    q
                }
            }
            #[inline(always)]
            fn pow(self, o: Self) -> Self {
                if o < 0 {
                    0
                } else {
                    // Clamp through i64 so the bound is right for both i32 and i64;
                    // exponents past u32::MAX only matter for |self| <= 1 anyway.
                    self.wrapping_pow((o as i64).min(u32::MAX as i64) as u32)
                }
            }
            #[inline(always)]
            fn maximum(self, o: Self) -> Self {
                self.max(o)
            }
            #[inline(always)]
            fn minimum(self, o: Self) -> Self {
                self.min(o)
            }
            #[inline(always)]
            fn is_zero(self) -> bool {
                self == 0
            }
            #[inline(always)]
            fn is_negative(self) -> bool {
                self < 0
            }
            const IS_INT: bool = true;
        }
    };
}
num_int!(i32);
num_int!(i64);

/// Maps a contiguous slice through `f` into a new vector, in parallel when large.
///
/// The result is allocated unfilled (every element gets written; clearing it first would be
/// an extra pass over memory). A chunk that starts after Ctrl-C is skipped, and the result
/// is then zeros, which `CpuDevice::exec` discards.
pub(crate) fn map_slice<A: Elem, O: Elem>(src: &[A], f: impl Fn(A) -> O + Sync + Send) -> Vec<O> {
    let n = src.len();
    let mut out = crate::buffer::unfilled::<O>(n);
    let run = |o: &mut [std::mem::MaybeUninit<O>], s: &[A]| {
        for (d, &v) in o.iter_mut().zip(s) {
            d.write(f(v));
        }
    };
    let dst = &mut out.spare_capacity_mut()[..n];
    let complete = if n >= PAR_MIN_ELEMS {
        dst.par_chunks_mut(PAR_MIN_ELEMS)
            .zip(src.par_chunks(PAR_MIN_ELEMS))
            .map(|(o, s)| {
                let go = !crate::cancel::requested();
                if go {
                    run(o, s);
                }
                go
            })
            .reduce(|| true, |a, b| a && b)
    } else {
        run(dst, src);
        true
    };
    if !complete {
        return crate::buffer::zeroed(n);
    }
    // SAFETY: the capacity is at least `n`, and no chunk was skipped: the chunks of `dst`
    // and `src` pair up exactly, and `run` wrote every element of each.
    unsafe { out.set_len(n) };
    out
}

/// Runs a slice-to-slice kernel over a contiguous input, in parallel chunks when large.
fn chunked<T: Elem>(src: &[T], kernel: impl Fn(&[T], &mut [T]) + Sync + Send) -> Vec<T> {
    let mut out = crate::buffer::zeroed::<T>(src.len());
    if src.len() >= PAR_MIN_ELEMS {
        out.par_chunks_mut(PAR_MIN_ELEMS)
            .zip(src.par_chunks(PAR_MIN_ELEMS))
            .for_each(|(o, s)| {
                if !crate::cancel::requested() {
                    kernel(s, o);
                }
            });
    } else {
        kernel(src, &mut out);
    }
    out
}

/// Elementwise function of one tensor.
pub(crate) fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor, DeviceError> {
    let x = x.contiguous();
    let shape = x.shape().to_vec();
    let wrap = |b| Ok(Tensor::from_host_unchecked(b, &shape));
    match op.kind() {
        UnaryKind::Logical => wrap(bool::into_buffer(map_slice(
            slice::<bool>(&x),
            |v: bool| !v,
        ))),
        UnaryKind::Predicate => with_elem!(x.dtype(), T => {
            let s = slice::<T>(&x);
            let out: Vec<bool> = match op {
                UnaryOp::IsNan => map_slice(s, |v: T| v.to_f64().is_nan()),
                _ => map_slice(s, |v: T| v.to_f64().is_finite()),
            };
            wrap(bool::into_buffer(out))
        }, else unreachable_dtype(op.name())),
        UnaryKind::Numeric | UnaryKind::Float => match x.dtype() {
            ir::DType::F32 => wrap(f32::into_buffer(chunked(slice::<f32>(&x), |s, o| {
                math::unary_f32(op, s, o)
            }))),
            ir::DType::F64 => wrap(f64::into_buffer(chunked(slice::<f64>(&x), |s, o| {
                math::unary_f64(op, s, o)
            }))),
            ir::DType::I32 => wrap(i32::into_buffer(int_unary(op, slice::<i32>(&x)))),
            ir::DType::I64 => wrap(i64::into_buffer(int_unary(op, slice::<i64>(&x)))),
            _ => unreachable_dtype(op.name()),
        },
    }
}

fn int_unary<T: Num + IntOps>(op: UnaryOp, s: &[T]) -> Vec<T> {
    match op {
        UnaryOp::Neg => map_slice(s, int_neg),
        UnaryOp::Abs => map_slice(s, int_abs),
        UnaryOp::Sign => map_slice(s, int_sign),
        UnaryOp::Relu => map_slice(s, int_relu),
        // Rounding an integer is the identity.
        UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => s.to_vec(),
        // `ir::infer` admits only floats for these, and bools for the logical and predicate
        // ops, so integer tensors never reach them; the identity keeps the match total.
        UnaryOp::Exp
        | UnaryOp::Log
        | UnaryOp::Log1p
        | UnaryOp::Expm1
        | UnaryOp::Sqrt
        | UnaryOp::Rsqrt
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Tanh
        | UnaryOp::Sigmoid
        | UnaryOp::Gelu
        | UnaryOp::Silu
        | UnaryOp::Softplus
        | UnaryOp::Erf
        | UnaryOp::Not
        | UnaryOp::IsNan
        | UnaryOp::IsFinite => s.to_vec(),
    }
}

/// Integer negation (wrapping).
#[inline(always)]
pub(crate) fn int_neg<T: Num>(v: T) -> T {
    T::from_f64(0.0).sub(v)
}

/// Integer absolute value (wrapping at the minimum).
#[inline(always)]
pub(crate) fn int_abs<T: Num>(v: T) -> T {
    if v.is_negative() {
        T::from_f64(0.0).sub(v)
    } else {
        v
    }
}

/// Integer sign: -1, 0 or 1.
#[inline(always)]
pub(crate) fn int_sign<T: Num>(v: T) -> T {
    T::from_f64(v.sign_f64())
}

/// Integer `relu`.
#[inline(always)]
pub(crate) fn int_relu<T: Num>(v: T) -> T {
    if v.is_negative() { T::from_f64(0.0) } else { v }
}

/// Helpers on integer elements.
pub(crate) trait IntOps {
    fn sign_f64(self) -> f64;
}
impl<T: Num> IntOps for T {
    fn sign_f64(self) -> f64 {
        if self.is_negative() {
            -1.0
        } else if self.is_zero() {
            0.0
        } else {
            1.0
        }
    }
}

/// The contiguous elements of a tensor that `exec` has already type-checked.
pub(crate) fn slice<T: Elem>(t: &Tensor) -> &[T] {
    t.as_slice::<T>().unwrap_or(&[])
}

fn unreachable_dtype(op: &'static str) -> Result<Tensor, DeviceError> {
    Err(DeviceError::Unavailable(format!(
        "{op}: dtype not handled by the CPU kernels"
    )))
}

/// Binary arithmetic with broadcasting.
pub(crate) fn binary(
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    if op.is_logical() {
        let out: Vec<bool> = match op {
            BinaryOp::And => map2(a, b, shape, |x: bool, y: bool| x && y),
            _ => map2(a, b, shape, |x: bool, y: bool| x || y),
        };
        return Ok(Tensor::from_host_unchecked(bool::into_buffer(out), shape));
    }
    match a.dtype() {
        ir::DType::F32 => binary_typed::<f32>(op, a, b, shape),
        ir::DType::F64 => binary_typed::<f64>(op, a, b, shape),
        ir::DType::I32 => binary_typed::<i32>(op, a, b, shape),
        ir::DType::I64 => binary_typed::<i64>(op, a, b, shape),
        _ => unreachable_dtype(op.name()),
    }
}

fn binary_typed<T: Num>(
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    if shape.iter().product::<usize>() > 0 && needs_divisor_check::<T>(op) {
        check_divisor::<T>(op, &b.to_vec::<T>().unwrap_or_default())?;
    }
    let out: Vec<T> = match op {
        BinaryOp::Add => map2(a, b, shape, T::add),
        BinaryOp::Sub => map2(a, b, shape, T::sub),
        BinaryOp::Mul => map2(a, b, shape, T::mul),
        BinaryOp::Div => map2(a, b, shape, T::div),
        BinaryOp::Rem => map2(a, b, shape, T::rem),
        BinaryOp::FloorDiv => map2(a, b, shape, T::floor_div),
        BinaryOp::Pow => map2(a, b, shape, T::pow),
        BinaryOp::Maximum => map2(a, b, shape, T::maximum),
        BinaryOp::Minimum => map2(a, b, shape, T::minimum),
        BinaryOp::And | BinaryOp::Or => return unreachable_dtype(op.name()),
    };
    Ok(Tensor::from_host_unchecked(T::into_buffer(out), shape))
}

/// Whether integer `op` must look at its right operand before running: `rem` and
/// `floor_div` by zero and negative integer powers are errors.
pub(crate) fn needs_divisor_check<T: Num>(op: BinaryOp) -> bool {
    T::IS_INT && matches!(op, BinaryOp::Rem | BinaryOp::FloorDiv | BinaryOp::Pow)
}

/// The error of integer `op` on the right operand's elements `rhs`, if any.
pub(crate) fn check_divisor<T: Num>(op: BinaryOp, rhs: &[T]) -> Result<(), DeviceError> {
    match op {
        BinaryOp::Rem | BinaryOp::FloorDiv if rhs.iter().any(|v| v.is_zero()) => {
            Err(DeviceError::DivisionByZero { op: op.name() })
        }
        BinaryOp::Pow => match rhs.iter().find(|v| v.is_negative()) {
            Some(e) => Err(DeviceError::NegativeIntPower {
                op: op.name(),
                exponent: e.to_f64() as i64,
            }),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Comparison with broadcasting, giving `bool`.
// The body is generic over every element type; its bool instance orders false < true like
// NumPy, which the lint would have us rewrite with bit operators.
#[allow(clippy::bool_comparison)]
pub(crate) fn compare(
    op: CmpOp,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    with_elem!(a.dtype(), T => {
        let out: Vec<bool> = match op {
            CmpOp::Eq => map2(a, b, shape, |x: T, y: T| x == y),
            CmpOp::Ne => map2(a, b, shape, |x: T, y: T| x != y),
            CmpOp::Lt => map2(a, b, shape, |x: T, y: T| x < y),
            CmpOp::Le => map2(a, b, shape, |x: T, y: T| x <= y),
            CmpOp::Gt => map2(a, b, shape, |x: T, y: T| x > y),
            CmpOp::Ge => map2(a, b, shape, |x: T, y: T| x >= y),
        };
        Ok(Tensor::from_host_unchecked(bool::into_buffer(out), shape))
    }, else unreachable_dtype(op.name()))
}

/// `select(c, a, b)` with broadcasting of all three.
pub(crate) fn select(
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    with_elem!(a.dtype(), T => {
        let out: Vec<T> = map3(c, a, b, shape, |k: bool, x: T, y: T| if k { x } else { y });
        Ok(Tensor::from_host_unchecked(T::into_buffer(out), shape))
    }, else unreachable_dtype("select"))
}
