//! The f32 kernels.
//!
//! Each function is branch-free so that it vectorises: every path is computed and the result
//! picked with a select, and clamps are written as comparisons that let NaN through. The
//! polynomial coefficients are minimax fits (Remez exchange against 40-digit references) on
//! the reduced ranges stated beside them; their approximation errors are a few hundredths
//! of an ulp, so the bounds below are dominated by the final roundings.
//!
//! Each kernel's doc states its error bound (the one the tests assert) and the maximum
//! measured by `exhaustive_f32_sweep` (every f32 with `2^-8 <= |x| < 2^8`, every 61st one
//! elsewhere, on the FMA and the non-FMA path), in ulps of the f64 reference rounded to f32.
//! The measure is taken from the unrounded reference, so it includes the half ulp of that
//! rounding: a correctly rounded kernel would measure 0.5.

use super::Arch;

/// `1.5 * 2^23`: adding it to a value below `2^22` in magnitude rounds that value to an
/// integer (ties to even) and leaves the integer in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;
/// `2^23`: every f32 at least this large is an integer.
const TWO_23: f32 = 8_388_608.0;

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `n * LN2_HI` is exact for `|n| < 2^15`: `LN2_HI` has 9 significant
/// bits, and `LN2_HI + LN2_LO` is `ln 2` to about 2^-33 relative.
const LN2_HI: f32 = 0.6933594;
const LN2_LO: f32 = -2.1219444e-4;
/// The bits of `sqrt(1/2)`, the bottom of the mantissa range `[sqrt(1/2), sqrt(2))` that the
/// logarithms reduce to.
const SQRT_HALF_BITS: u32 = 0x3f35_04f3;

/// `e^r = 1 + r + r^2 E(r)` on `|r| <= 1.01 ln(2)/2`, relative error 3.3e-9.
const EXP_E: [f32; 5] = [
    0.49999994,
    0.16666515,
    0.041668456,
    0.008369419,
    0.0013813145,
];
/// `e^r - 1 = r + r^2/2 + r^3 Q(r)` on `|r| <= 1.01 ln(2)/2`, relative error 4.2e-10.
const EXPM1_Q: [f32; 5] = [
    0.16666666,
    0.041666474,
    0.008333423,
    0.0013934136,
    1.9823787e-4,
];
/// `ln(1 + f) = f - f^2/2 + f^3 L(f)` on `f` in `[sqrt(1/2) - 1, sqrt(2) - 1]`, relative
/// error 5.9e-9.
const LOG_L: [f32; 8] = [
    0.3333333,
    -0.25000826,
    0.20001236,
    -0.16623144,
    0.14201368,
    -0.13162003,
    0.12765428,
    -0.07634389,
];
/// `sin r = r + r^3 S(r^2)` on `|r| <= 1.01 pi/4`, relative error 4.1e-9.
const SIN_S: [f32; 3] = [-0.16666654, 0.008332113, -1.9508741e-4];
/// `cos r = 1 - r^2/2 + r^4 C(r^2)` on `|r| <= 1.01 pi/4`, relative error 1.3e-10.
const COS_C: [f32; 3] = [0.041666646, -0.0013887251, 2.442568e-5];
/// `erf x = x + x P1(x^2)` on `|x| <= 0.93`, relative error 4.6e-10 (`P1` is the fitted
/// `P` of `erf x = x P(x^2)` less one).
const ERF_P1: [f32; 7] = [
    0.12837923,
    -0.37612632,
    0.112836875,
    -0.02685894,
    0.005199907,
    -8.130013e-4,
    8.316776e-5,
];
/// `erfc z = t exp(-z^2 + P(t))` with `t = 2 / (2 + z)`, on `z` in `[0.49, 11.5]`; the error
/// of `P` is 2.2e-9 absolute, so 2.2e-9 relative in `erfc`.
const ERFC_P: [f32; 10] = [
    -1.2655318, 1.0006026, 0.36701912, 0.14342113, -0.3697779, 0.7285485, -1.826837, 2.1369717,
    -1.1606449, 0.24625163,
];

/// [`ERFC_P`] unrounded, for gelu's f64 evaluation.
#[allow(clippy::excessive_precision)]
const ERFC_P64: [f64; 10] = [
    -1.265_531_804_777_135_8,
    1.000_602_645_668_020_4,
    0.367_019_117_708_659_5,
    0.143_421_130_198_483_9,
    -0.369_777_886_802_969_36,
    0.728_548_500_099_070_6,
    -1.826_837_009_203_127_4,
    2.136_971_617_953_977_7,
    -1.160_644_883_144_258_6,
    0.246_251_629_209_712_3,
];

/// `pi/2` in three parts: `PIO2_1` is `pi/2` rounded to f32, the others the successive
/// remainders, together `pi/2` to about 1e-23.
const PIO2_1: f32 = 1.5707964;
const PIO2_2: f32 = -4.371139e-8;
const PIO2_3: f32 = -1.7151245e-15;
/// The fast sine and cosine handle `|x| <= 2^17`: there the first reduction step is exact
/// and the rest keep the reduced argument to a relative error near 2^-24 (even next to a
/// multiple of pi/2, where f32 inputs come no closer than about 2^-29). Larger inputs are
/// reduced in f64 by the standard library (infinities included).
const SIN_COS_FAST_MAX: f32 = 1.31072e05;

/// Below this `|x|` erf uses its odd polynomial, above it `1 - erfc`.
const ERF_SMALL_MAX: f32 = 0.921875;
/// Below this `|x|` (that is, `|x|/sqrt(2) < 0.5`) gelu uses the erf polynomial, above it erfc.
const GELU_SMALL_MAX: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Evaluates the polynomial with coefficients `c` (lowest degree first) at `x`.
#[inline(always)]
fn horner<A: Arch, const N: usize>(x: f32, c: [f32; N]) -> f32 {
    let mut acc = c[N - 1];
    for &ci in c[..N - 1].iter().rev() {
        acc = A::mad32(acc, x, ci);
    }
    acc
}

/// `-1`, `0` or `1` by the sign of `x`; NaN stays NaN and both zeros give `+0` (as NumPy).
///
/// Exact.
#[inline(always)]
pub(super) fn sign(x: f32) -> f32 {
    // `x + 0.0` turns -0 into +0 and keeps NaN.
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x + 0.0
    }
}

/// `max(x, 0)`, keeping NaN; `-0` gives `+0`. Exact.
#[inline(always)]
pub(super) fn relu(x: f32) -> f32 {
    (if x < 0.0 { 0.0 } else { x }) + 0.0
}

/// Nearest integer, ties to even (NumPy's `round`). Exact; keeps the sign of zero.
#[inline(always)]
pub(super) fn round(x: f32) -> f32 {
    let a = x.abs();
    // Adding and removing 2^23 rounds a smaller value to an integer in the default rounding
    // mode, which is ties-to-even; larger values (and inf) are integers already. This needs
    // no SSE4.1 `roundps`, so the baseline path vectorises too.
    let r = (a + TWO_23) - TWO_23;
    let r = if a < TWO_23 { r } else { a };
    r.copysign(x)
}

/// Largest integer not above `x`. Exact.
#[inline(always)]
pub(super) fn floor(x: f32) -> f32 {
    let r = round(x);
    // An integer result always has the sign of `x` (or is a zero of that sign).
    (if r > x { r - 1.0 } else { r }).copysign(x)
}

/// Smallest integer not below `x`. Exact.
#[inline(always)]
pub(super) fn ceil(x: f32) -> f32 {
    let r = round(x);
    (if r < x { r + 1.0 } else { r }).copysign(x)
}

/// Splits `e^(x + dx)` (with `dx` a small correction to the argument) into `(p, n)` with
/// `e^(x + dx) = p 2^n`, `p` in about `[0.7, 1.42]`, for [`scale`] to finish.
///
/// The argument is clamped to `[-150, 89]`, beyond which the result is 0 or inf in f32
/// even after a further factor up to 150 (as `silu` applies); NaN passes through.
#[inline(always)]
fn exp_parts<A: Arch>(x: f32, dx: f32) -> (f32, i32) {
    let x = if x < -150.0 { -150.0 } else { x };
    let x = if x > 89.0 { 89.0 } else { x };
    let t = A::mad32(x, LOG2_E, MAGIC);
    let n = t - MAGIC;
    let ni = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    // `n * LN2_HI` is exact and `x - n * LN2_HI` is representable, so the first step is
    // exact with or without FMA; the second rounds once, to a relative 2^-24 of `r`.
    let r = A::mad32(n, -LN2_HI, x);
    let r = A::mad32(n, -LN2_LO, r) + dx;
    let p = A::mad32(horner::<A, 5>(r, EXP_E), r * r, r) + 1.0;
    (p, ni)
}

/// `p * 2^n` for `|n| <= 300`: the power is applied in two exact halves, so that `n = 128`
/// does not overflow the exponent field and a subnormal result is rounded only once.
#[inline(always)]
fn scale(p: f32, n: i32) -> f32 {
    let n1 = n >> 1;
    let n2 = n.wrapping_sub(n1);
    let s1 = f32::from_bits((n1.wrapping_add(127) as u32) << 23);
    let s2 = f32::from_bits((n2.wrapping_add(127) as u32) << 23);
    p * s1 * s2
}

/// `e^x`. Error bound 1.5 ulp (measured 1.01); subnormal results are
/// rounded once. `exp(-inf) = 0`, `exp(inf) = inf`, overflow to inf above 88.72.
#[inline(always)]
pub(super) fn exp<A: Arch>(x: f32) -> f32 {
    let (p, n) = exp_parts::<A>(x, 0.0);
    scale(p, n)
}

/// `e^x - 1`, accurate near zero. Error bound 2 ulp (measured 1.45).
#[inline(always)]
pub(super) fn expm1<A: Arch>(x: f32) -> f32 {
    // Below -17.4 the result rounds to -1; above 88.73 it overflows. The clamps keep the
    // powers of two below finite (and let NaN through).
    let xc = if x < -30.0 { -30.0 } else { x };
    let xc = if xc > 89.0 { 89.0 } else { xc };
    let t = A::mad32(xc, LOG2_E, MAGIC);
    let n = t - MAGIC;
    let ni = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let r = A::mad32(n, -LN2_HI, xc);
    let r = A::mad32(n, -LN2_LO, r);
    let em = A::mad32(r * r, A::mad32(r, horner::<A, 5>(r, EXPM1_Q), 0.5), r);
    // e^x - 1 = 2^n (em + 1) - 1 = 2 (h em + (h - 1/2)) with h = 2^(n-1): the half scale
    // keeps n = 128 finite until the final, exact doubling. For n = 0 it is em itself.
    let h = f32::from_bits((ni.wrapping_add(126) as u32) << 23);
    let y = 2.0 * A::mad32(h, em, h - 0.5);
    // Halving a subnormal `em` would lose its last bit, and for |x| < 2^-24 the result is
    // x itself anyway.
    if x.abs() < 5.960_464_5e-8 { x } else { y }
}

/// `ln(1 + f) + k ln 2` for `f` in `[sqrt(1/2) - 1, sqrt(2) - 1]` and integer `k`, summing the
/// small terms first so the two large ones are added last.
#[inline(always)]
fn log_reduced<A: Arch>(f: f32, k: f32) -> f32 {
    let z = f * f;
    let y = A::mad32(
        f * z,
        horner::<A, 8>(f, LOG_L),
        A::mad32(k, LN2_LO, -0.5 * z),
    );
    A::mad32(k, LN2_HI, f + y)
}

/// Natural logarithm. Error bound 1 ulp (measured 0.89). `log(0) = -inf`, `log(x < 0) = NaN`, `log(inf) =
/// inf`; subnormal inputs are exact-scaled first.
#[inline(always)]
pub(super) fn log<A: Arch>(x: f32) -> f32 {
    let sub = x < f32::MIN_POSITIVE;
    let xs = if sub { x * TWO_23 } else { x };
    // Writing x = 2^e m with m in [sqrt(1/2), sqrt(2)) keeps |ln m| <= ln(2)/2, so the sum
    // with e ln 2 never cancels badly.
    let ix = xs.to_bits().wrapping_sub(SQRT_HALF_BITS);
    let e = (ix as i32) >> 23;
    let m = f32::from_bits((ix & 0x007f_ffff).wrapping_add(SQRT_HALF_BITS));
    let k = e as f32 - if sub { 23.0 } else { 0.0 };
    let r = log_reduced::<A>(m - 1.0, k);
    let r = if x == f32::INFINITY { x } else { r };
    let r = if x == 0.0 { f32::NEG_INFINITY } else { r };
    if x >= 0.0 { r } else { f32::NAN }
}

/// `ln(1 + x)`, accurate near zero. Error bound 2 ulp (measured 1.48). `log1p(-1) = -inf`, NaN below -1.
#[inline(always)]
pub(super) fn log1p<A: Arch>(x: f32) -> f32 {
    let u = 1.0 + x;
    // The rounding error of `u`, recovered exactly (for `u < 2^24`; beyond, it is below half
    // an ulp of the result): ln(1 + x) = ln(u + c).
    let c = x - (u - 1.0);
    let ix = u.to_bits().wrapping_sub(SQRT_HALF_BITS);
    let e = (ix as i32) >> 23;
    let m = f32::from_bits((ix & 0x007f_ffff).wrapping_add(SQRT_HALF_BITS));
    // ln(u + c) = e ln 2 + ln(m + c 2^-e): the correction joins `f` before the polynomial.
    // The exponent is capped so 2^-e stays normal; capped cases have c = 0 or negligible.
    let ec = if e > 100 { 100 } else { e };
    let inv = f32::from_bits((127i32.wrapping_sub(ec) as u32) << 23);
    let f = A::mad32(c, inv, m - 1.0);
    let r = log_reduced::<A>(f, e as f32);
    let r = if x == f32::INFINITY { x } else { r };
    // Zeros keep their sign.
    let r = if x == 0.0 { x } else { r };
    let r = if x == -1.0 { f32::NEG_INFINITY } else { r };
    if x >= -1.0 { r } else { f32::NAN }
}

/// `ln(1 + y)` for `y` in `[0, 1]` (or NaN), as [`log1p`] without its special cases: `1 + y`
/// lies in `[1, 2]`, so the reduction to `[sqrt(1/2), sqrt(2))` is a single halving.
#[inline(always)]
fn log1p_unit<A: Arch>(y: f32) -> f32 {
    let u = 1.0 + y;
    // The rounding error of `u`, exact because `1 >= y`.
    let c = y - (u - 1.0);
    let big = u > std::f32::consts::SQRT_2;
    let s = if big { 0.5 } else { 1.0 };
    let k = if big { 1.0 } else { 0.0 };
    // ln(u + c) = k ln 2 + ln(s u + s c), with s u - 1 exact.
    log_reduced::<A>(A::mad32(c, s, A::mad32(u, s, -1.0)), k)
}

/// Sine (`COS = false`) or cosine (`COS = true`) for `|x| <= SIN_COS_FAST_MAX`; other inputs
/// give garbage that [`sin_cos_slice`] replaces.
#[inline(always)]
fn sin_cos<A: Arch, const COS: bool>(x: f32) -> f32 {
    // Reducing |x| and restoring the sign of sine at the end keeps sin(-0) = -0 (cosine is
    // even).
    let sign = if COS { 0 } else { x.to_bits() & 0x8000_0000 };
    let x = x.abs();
    let t = A::mad32(x, std::f32::consts::FRAC_2_PI, MAGIC);
    let j = t - MAGIC;
    // The quadrant; cos(x) = sin(x + pi/2) is one quadrant on.
    let q = t
        .to_bits()
        .wrapping_sub(MAGIC.to_bits())
        .wrapping_add(u32::from(COS));
    // Cody-Waite reduction: `x - j PIO2_1` is exact (with FMA or its emulation), the second
    // product needs the single rounding, the third is tiny.
    let r = A::fma32(j, -PIO2_1, x);
    let r = A::fma32(j, -PIO2_2, r);
    let r = A::mad32(j, -PIO2_3, r);
    let z = r * r;
    let s = A::mad32(r * z, horner::<A, 3>(z, SIN_S), r);
    let c = A::mad32(z * z, horner::<A, 3>(z, COS_C), A::mad32(-0.5, z, 1.0));
    let v = if q & 1 == 0 { s } else { c };
    // Quadrants 2 and 3 negate.
    f32::from_bits(v.to_bits() ^ ((q & 2) << 30) ^ sign)
}

/// Sine or cosine of a slice. Error bound 2 ulp (measured 1.57), or where that is smaller,
/// 2^-27 absolute (a quarter ulp of results near 1): next to the zeros the reduced
/// argument's absolute error, of order 2^-24 of the scale 1, dominates.
///
/// The fast kernel runs on blocks that stay in L1; an or-reduction over each block then
/// finds the rare inputs beyond its range (large or infinite), which are redone from
/// the standard library's f64 functions (correctly rounded after the narrowing, to 0.5 ulp).
#[inline(always)]
pub(super) fn sin_cos_slice<A: Arch, const COS: bool>(x: &[f32], out: &mut [f32]) {
    const BLOCK: usize = 1024;
    for (xb, ob) in x.chunks(BLOCK).zip(out.chunks_mut(BLOCK)) {
        map!(xb, ob, sin_cos::<A, COS>);
        // NaN needs no fallback: it propagates through the fast kernel.
        let far = xb
            .iter()
            .fold(false, |acc, v| acc | (v.abs() > SIN_COS_FAST_MAX));
        if far {
            for (o, &v) in ob.iter_mut().zip(xb) {
                if v.abs() > SIN_COS_FAST_MAX {
                    let d = f64::from(v);
                    *o = if COS { d.cos() } else { d.sin() } as f32;
                }
            }
        }
    }
}

/// Hyperbolic tangent, as `t / (t + 2)` with `t = e^(2|x|) - 1`. Error bound 3 ulp (measured
/// 2.42);
/// `tanh(±large) = ±1` exactly.
#[inline(always)]
pub(super) fn tanh<A: Arch>(x: f32) -> f32 {
    // Beyond 9.1 tanh rounds to 1 (and t + 2 rounds to t); the clamp keeps t finite.
    let a = x.abs();
    let a = if a > 9.1 { 9.1 } else { a };
    let t = expm1::<A>(a + a);
    (t / (t + 2.0)).copysign(x)
}

/// `1 / (1 + e^-x)`, as `e^x / (1 + e^x)` for negative `x` so that neither the exponential
/// nor the quotient overflows. Error bound 3 ulp (measured 2.40, subnormal results
/// included); never NaN for
/// non-NaN input.
#[inline(always)]
pub(super) fn sigmoid<A: Arch>(x: f32) -> f32 {
    let e = exp::<A>(-x.abs());
    let num = if x < 0.0 { e } else { 1.0 };
    num / (1.0 + e)
}

/// `x * sigmoid(x)`. Error bound 3.5 ulp (measured 3.39, subnormal results included: three
/// roundings, of `x e^x`, `1 + e^x` and the quotient, can each cost nearly an ulp when the
/// result sits just below a power of two); `silu(-inf) = -0`, the limit.
#[inline(always)]
pub(super) fn silu<A: Arch>(x: f32) -> f32 {
    let (p, n) = exp_parts::<A>(-x.abs(), 0.0);
    let e = scale(p, n);
    // For negative x the numerator x e^x has its power of two applied last, so a subnormal
    // result is rounded once; clamping x makes -inf give the limit -0 instead of NaN.
    let xm = if x < -150.0 { -150.0 } else { x };
    let num = if x < 0.0 { scale(p * xm, n) } else { x };
    num / (1.0 + e)
}

/// `ln(1 + e^x)` as `max(x, 0) + ln(1 + e^-|x|)`, which never overflows: `softplus(x) = x`
/// for large `x` and `e^x` (to the last bit) for very negative `x`. Error bound 2 ulp
/// (measured 1.72).
#[inline(always)]
pub(super) fn softplus<A: Arch>(x: f32) -> f32 {
    let l = log1p_unit::<A>(exp::<A>(-x.abs()));
    let m = if x > 0.0 { x } else { 0.0 };
    m + l
}

/// `m erfc(z)` for `z` in `[0.49, 11.5]`, given `z^2 = z2hi + z2lo` exactly (the caller
/// computes the square with an FMA), so that the large exponent `-z^2` loses nothing.
#[inline(always)]
fn erfc_scaled<A: Arch>(z: f32, z2hi: f32, z2lo: f32, m: f32) -> f32 {
    let t = 2.0 / (2.0 + z);
    let p = horner::<A, 10>(t, ERFC_P);
    // s + ds = p - z2hi exactly (Knuth's two-sum; neither operand dominates everywhere).
    let s = p - z2hi;
    let b = s - p;
    let ds = (p - (s - b)) + (-z2hi - b);
    let (q, n) = exp_parts::<A>(s, ds - z2lo);
    scale(q * (t * m), n)
}

/// `erf x` for `|x| <= 0.93`, as `x + x (P(x^2) - 1)`: the final fused step adds a small
/// correction to `x`, so the polynomial's rounding barely reaches the result.
#[inline(always)]
fn erf_small<A: Arch>(x: f32) -> f32 {
    A::mad32(x, horner::<A, 7>(x * x, ERF_P1), x)
}

/// The error function. Error bound 2.5 ulp (measured 2.20); `erf(±inf) = ±1`.
#[inline(always)]
pub(super) fn erf<A: Arch>(x: f32) -> f32 {
    let a = x.abs();
    let small = erf_small::<A>(x);
    // Beyond 3.92 erf rounds to ±1; the clamp keeps the tail in its fitted range.
    let z = if a > 4.0 { 4.0 } else { a };
    let z2 = z * z;
    let z2lo = A::fma32(z, z, -z2);
    let big = (1.0 - erfc_scaled::<A>(z, z2, z2lo, 1.0)).copysign(x);
    if a < ERF_SMALL_MAX { small } else { big }
}

/// Exact GELU, `x Φ(x) = x/2 (1 + erf(x/sqrt 2))`. Error bound 3 ulp (measured 2.48).
///
/// For `|x| < 1/sqrt 2` it is `x/2 + x/2 erf(x/sqrt 2)` from the erf polynomial. Beyond, it
/// is `x/2 erfc(|x|/sqrt 2)` for negative `x` (which does not cancel, down to the subnormal
/// results near `x = -14`, rounded once) and `x - x/2 erfc(x/sqrt 2)` for positive `x`. The
/// erfc tail evaluates `t` and `P(t)` in f64: in f32 their roundings alone cost up to 3 ulp,
/// because the exponent `-x^2/2 + P(t)` is large. `gelu(-inf) = -0`, the limit.
#[inline(always)]
pub(super) fn gelu<A: Arch>(x: f32) -> f32 {
    let h = 0.5 * x;
    let w = x * std::f32::consts::FRAC_1_SQRT_2;
    let small = A::mad32(h, erf_small::<A>(w), h);
    // Beyond |x| = 16, Φ(x) is 0 or 1 to f32 precision; the clamp keeps erfc in range.
    let xc = if x < -16.0 { -16.0 } else { x };
    let xc = if xc > 16.0 { 16.0 } else { xc };
    let a = f64::from(xc.abs());
    let z = a * std::f64::consts::FRAC_1_SQRT_2;
    let t = 2.0 / (2.0 + z);
    let mut p = ERFC_P64[9];
    for &c in ERFC_P64[..9].iter().rev() {
        p = A::mad64(p, t, c);
    }
    // The exponent -z^2 + P(t), exact to f64 precision (a^2 is exact in f64), split into
    // an f32 pair for the f32 exponential.
    let s = p - 0.5 * a * a;
    let s_hi = s as f32;
    let s_lo = (s - f64::from(s_hi)) as f32;
    // For x < 0 the factor x/2 joins t before the final power of two; for x >= 0 the tail
    // gives -erfc(z)/2 and gelu = x + x (-erfc(z)/2).
    let m = if x < 0.0 { 0.5 * xc } else { -0.5 };
    let tm = (t * f64::from(m)) as f32;
    let (q, n) = exp_parts::<A>(s_hi, s_lo);
    let k = scale(q * tm, n);
    let big = if x < 0.0 { k } else { A::mad32(xc, k, x) };
    if xc.abs() < GELU_SMALL_MAX {
        small
    } else {
        big
    }
}
