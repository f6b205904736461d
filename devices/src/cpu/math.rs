//! Vectorised elementwise math for `f32` and `f64`.
//!
//! Every kernel is a branch-free scalar function (range reduction, a minimax polynomial, bit
//! tricks for `2^n`, and selects instead of branches) marked `#[inline(always)]`, so that the
//! plain loop in `map!` that applies it is vectorised by LLVM. The same generic body is
//! compiled three times on x86-64 — for AVX-512, for AVX2 with FMA, and for the SSE2 baseline
//! — and the widest one the CPU supports is chosen at run time (the choice is cached). Other
//! architectures compile the body once for their baseline.
//!
//! The f32 kernels and their measured error bounds live in [`single`], the f64 ones in
//! [`double`]. Bounds are in ulps of the correctly rounded result; they hold on every path
//! (with and without FMA), because the tests run each path this machine can run.

use std::sync::atomic::{AtomicU8, Ordering};

use ir::UnaryOp;

/// Applies the kernel `$f` to every element of `$x`, writing `$out`. The loop is written
/// plainly so LLVM's loop vectoriser turns it into full-width vector code; the remainder runs
/// the same scalar code, so an element's result does not depend on its position.
///
/// It is a macro rather than a function taking `impl Fn` so that the kernel (an
/// `#[inline(always)]` function) is called directly: behind a fn-item or closure shim, LLVM
/// may decline to inline a large kernel into the target-feature function, which then calls
/// it once per element, unvectorised and without the target's features (FMA becoming a libm
/// call).
macro_rules! map {
    ($x:expr, $out:expr, $f:expr) => {
        for (o, &v) in $out.iter_mut().zip($x.iter()) {
            *o = $f(v);
        }
    };
}

mod double;
mod single;
#[cfg(test)]
mod tests;

/// Applies `op` (any op whose kind is `Numeric` or `Float`) to `x`, writing `out`.
///
/// `Not`, `IsNan` and `IsFinite` never reach this function (the caller handles their
/// dtypes); they copy `x` so that the match stays total.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn unary_f32(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    assert_eq!(
        x.len(),
        out.len(),
        "unary_f32: input and output lengths differ"
    );
    dispatch_f32(level(), op, x, out);
}

/// Applies `op` (any op whose kind is `Numeric` or `Float`) to `x`, writing `out`.
///
/// `Not`, `IsNan` and `IsFinite` never reach this function (the caller handles their
/// dtypes); they copy `x` so that the match stays total.
///
/// # Panics
/// If `x` and `out` differ in length.
pub fn unary_f64(op: UnaryOp, x: &[f64], out: &mut [f64]) {
    assert_eq!(
        x.len(),
        out.len(),
        "unary_f64: input and output lengths differ"
    );
    dispatch_f64(level(), op, x, out);
}

/// The instruction-set level a kernel body is compiled for.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    /// The target's baseline: SSE2 on x86-64, where `mul_add` would be a slow libm call, so
    /// the kernels use separate multiplies and adds.
    Baseline,
    /// AVX2 with FMA (x86-64 only).
    Avx2,
    /// AVX-512 F/DQ/VL on top of AVX2 and FMA (x86-64 only).
    Avx512,
}

/// The level chosen for this CPU: detected once, then read from a relaxed atomic, because
/// every thread would detect the same value.
fn level() -> Level {
    static LEVEL: AtomicU8 = AtomicU8::new(0);
    match LEVEL.load(Ordering::Relaxed) {
        1 => Level::Baseline,
        2 => Level::Avx2,
        3 => Level::Avx512,
        _ => {
            let l = detect();
            let code = match l {
                Level::Baseline => 1,
                Level::Avx2 => 2,
                Level::Avx512 => 3,
            };
            LEVEL.store(code, Ordering::Relaxed);
            l
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
    {
        Level::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Level::Avx2
    } else {
        Level::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Baseline
}

/// The levels this machine can run, widest last; the tests check every one of them.
#[cfg(test)]
fn available_levels() -> Vec<Level> {
    let mut v = vec![Level::Baseline];
    match detect() {
        Level::Baseline => {}
        Level::Avx2 => v.push(Level::Avx2),
        Level::Avx512 => v.extend([Level::Avx2, Level::Avx512]),
    }
    v
}

fn dispatch_f32(level: Level, op: UnaryOp, x: &[f32], out: &mut [f32]) {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx512` is only chosen (by `detect`) when the CPU reports every feature
        // that `x86::f32_avx512` is compiled with.
        Level::Avx512 => unsafe { x86::f32_avx512(op, x, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2` is only chosen (by `detect`) when the CPU reports AVX2 and FMA.
        Level::Avx2 => unsafe { x86::f32_avx2(op, x, out) },
        #[cfg(not(target_arch = "x86_64"))]
        Level::Avx512 | Level::Avx2 => body_f32::<Native>(op, x, out),
        Level::Baseline => body_f32::<Native>(op, x, out),
    }
}

fn dispatch_f64(level: Level, op: UnaryOp, x: &[f64], out: &mut [f64]) {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dispatch_f32`.
        Level::Avx512 => unsafe { x86::f64_avx512(op, x, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `dispatch_f32`.
        Level::Avx2 => unsafe { x86::f64_avx2(op, x, out) },
        #[cfg(not(target_arch = "x86_64"))]
        Level::Avx512 | Level::Avx2 => body_f64::<Native>(op, x, out),
        Level::Baseline => body_f64::<Native>(op, x, out),
    }
}

/// The feature-specific copies of the kernel bodies. Each is the generic body, inlined into
/// a function compiled with more target features, so LLVM vectorises it with wider
/// registers and fuses multiply-adds.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Fused, UnaryOp, body_f32, body_f64};

    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
    pub(super) fn f32_avx512(op: UnaryOp, x: &[f32], out: &mut [f32]) {
        body_f32::<Fused>(op, x, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn f32_avx2(op: UnaryOp, x: &[f32], out: &mut [f32]) {
        body_f32::<Fused>(op, x, out)
    }

    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
    pub(super) fn f64_avx512(op: UnaryOp, x: &[f64], out: &mut [f64]) {
        body_f64::<Fused>(op, x, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn f64_avx2(op: UnaryOp, x: &[f64], out: &mut [f64]) {
        body_f64::<Fused>(op, x, out)
    }
}

/// How a kernel body multiplies and adds: the kernels are generic over it so that one source
/// serves targets with and without fused multiply-add.
trait Arch {
    /// `a * b + c`, fused where that is one instruction (either rounding is within the
    /// kernels' error budgets).
    fn mad32(a: f32, b: f32, c: f32) -> f32;
    /// `a * b + c` rounded once, for the few places (range reductions, exact squares) whose
    /// accuracy needs it; emulated through f64 where there is no FMA instruction.
    fn fma32(a: f32, b: f32, c: f32) -> f32;
    /// `a * b + c` in f64, fused where that is one instruction.
    fn mad64(a: f64, b: f64, c: f64) -> f64;
}

/// Targets with a fused multiply-add instruction (x86-64 with FMA, AArch64).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
#[derive(Debug)]
struct Fused;

impl Arch for Fused {
    #[inline(always)]
    fn mad32(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn fma32(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    #[inline(always)]
    fn mad64(a: f64, b: f64, c: f64) -> f64 {
        a.mul_add(b, c)
    }
}

/// The baseline: separate multiplies and adds, because `mul_add` without an FMA instruction
/// is a libm call per element.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
#[derive(Debug)]
struct Baseline;

impl Arch for Baseline {
    #[inline(always)]
    fn mad32(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    fn fma32(a: f32, b: f32, c: f32) -> f32 {
        // The product of two f32 is exact in f64, so the only roundings are the f64 sum and
        // the final narrowing; their combined error is far below an f32 ulp, and when the
        // exact result is an f32 (as in the range reductions) both are exact.
        (f64::from(a) * f64::from(b) + f64::from(c)) as f32
    }
    #[inline(always)]
    fn mad64(a: f64, b: f64, c: f64) -> f64 {
        a * b + c
    }
}

/// The multiply-add flavour of the baseline body: on x86-64 the plain one (the SSE2
/// baseline has no FMA), on AArch64 the fused one (FMA is part of its baseline).
#[cfg(target_arch = "x86_64")]
type Native = Baseline;
#[cfg(target_arch = "aarch64")]
type Native = Fused;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
type Native = Baseline;

/// The f32 kernel body, generic over how it multiplies and adds.
#[inline(always)]
fn body_f32<A: Arch>(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    use single as s;
    match op {
        UnaryOp::Neg => map!(x, out, |v: f32| -v),
        UnaryOp::Abs => map!(x, out, f32::abs),
        UnaryOp::Sign => map!(x, out, s::sign),
        UnaryOp::Floor => map!(x, out, s::floor),
        UnaryOp::Ceil => map!(x, out, s::ceil),
        UnaryOp::Round => map!(x, out, s::round),
        UnaryOp::Relu => map!(x, out, s::relu),
        UnaryOp::Exp => map!(x, out, s::exp::<A>),
        UnaryOp::Log => map!(x, out, s::log::<A>),
        UnaryOp::Log1p => map!(x, out, s::log1p::<A>),
        UnaryOp::Expm1 => map!(x, out, s::expm1::<A>),
        // `sqrtps` is correctly rounded; rsqrt rounds twice (error bound 2 ulp, measured
        // 1.49), as the approximate `rsqrtps` is far too coarse.
        UnaryOp::Sqrt => map!(x, out, f32::sqrt),
        UnaryOp::Rsqrt => map!(x, out, |v: f32| 1.0 / v.sqrt()),
        UnaryOp::Sin => s::sin_cos_slice::<A, false>(x, out),
        UnaryOp::Cos => s::sin_cos_slice::<A, true>(x, out),
        UnaryOp::Tanh => map!(x, out, s::tanh::<A>),
        UnaryOp::Sigmoid => map!(x, out, s::sigmoid::<A>),
        UnaryOp::Gelu => map!(x, out, s::gelu::<A>),
        UnaryOp::Silu => map!(x, out, s::silu::<A>),
        UnaryOp::Softplus => map!(x, out, s::softplus::<A>),
        UnaryOp::Erf => map!(x, out, s::erf::<A>),
        // These take bool inputs or give bool outputs and are handled by the caller.
        UnaryOp::Not | UnaryOp::IsNan | UnaryOp::IsFinite => out.copy_from_slice(x),
    }
}

/// The f64 kernel body, generic over how it multiplies and adds.
#[inline(always)]
fn body_f64<A: Arch>(op: UnaryOp, x: &[f64], out: &mut [f64]) {
    use double as d;
    match op {
        UnaryOp::Neg => map!(x, out, |v: f64| -v),
        UnaryOp::Abs => map!(x, out, f64::abs),
        UnaryOp::Sign => map!(x, out, d::sign),
        UnaryOp::Floor => map!(x, out, d::floor),
        UnaryOp::Ceil => map!(x, out, d::ceil),
        UnaryOp::Round => map!(x, out, d::round),
        UnaryOp::Relu => map!(x, out, d::relu),
        UnaryOp::Exp => map!(x, out, d::exp::<A>),
        UnaryOp::Log => map!(x, out, d::log::<A>),
        UnaryOp::Log1p => map!(x, out, f64::ln_1p),
        UnaryOp::Expm1 => map!(x, out, d::expm1::<A>),
        UnaryOp::Sqrt => map!(x, out, f64::sqrt),
        UnaryOp::Rsqrt => map!(x, out, |v: f64| 1.0 / v.sqrt()),
        UnaryOp::Sin => map!(x, out, f64::sin),
        UnaryOp::Cos => map!(x, out, f64::cos),
        UnaryOp::Tanh => map!(x, out, d::tanh::<A>),
        UnaryOp::Sigmoid => map!(x, out, d::sigmoid::<A>),
        UnaryOp::Gelu => map!(x, out, d::gelu::<A>),
        UnaryOp::Silu => map!(x, out, d::silu::<A>),
        UnaryOp::Softplus => map!(x, out, d::softplus::<A>),
        UnaryOp::Erf => map!(x, out, d::erf::<A>),
        // These take bool inputs or give bool outputs and are handled by the caller.
        UnaryOp::Not | UnaryOp::IsNan | UnaryOp::IsFinite => out.copy_from_slice(x),
    }
}
