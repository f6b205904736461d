//! The f64 kernels.
//!
//! `exp`, `expm1`, `log`, `tanh`, `sigmoid`, `silu` and the rounding ops are branch-free and
//! vectorise like the f32 ones; their polynomials are truncated Taylor series, taken far
//! enough that truncation costs under 0.01 ulp. `erf` and `gelu` (which the standard library
//! lacks) are scalar, piecewise minimax fits; `log1p`, `sin`, `cos` and `softplus`'s
//! logarithm use the standard library.
//!
//! Error bounds are the ones the tests assert, in ulps of the reference: the standard
//! library (whose own error is up to about 1 ulp) or, for erf and gelu, correctly rounded
//! 50-digit values. Ops not listed here are the standard library's, or exact.

use super::Arch;

/// `1.5 * 2^52`: adding it rounds a value below `2^51` to an integer in the low mantissa
/// bits.
const MAGIC: f64 = 6_755_399_441_055_744.0;
/// `2^52`: every f64 at least this large is an integer.
const TWO_52: f64 = 4_503_599_627_370_496.0;
const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// `ln 2` split so that `n * LN2_HI` is exact for `|n| < 2^11`: `LN2_HI` has 42 significant
/// bits and `LN2_HI + LN2_LO` is `ln 2` to about 2^-95 relative.
const LN2_HI: f64 = 0.693_147_180_559_890_3;
const LN2_LO: f64 = 5.497_923_018_708_371e-14;
/// The bits of `sqrt(1/2)`, the bottom of the mantissa range the logarithm reduces to.
const SQRT_HALF_BITS: u64 = 0x3fe6_a09e_667f_3bcd;
const ONE_BITS: u64 = 0x3ff0_0000_0000_0000;
const MANTISSA: u64 = 0x000f_ffff_ffff_ffff;

/// `e^r = 1 + r + r^2 E(r)`: the Taylor coefficients `1/k!`, `k = 2..13`; on `|r| <= 0.35`
/// the truncation error is 4e-18 relative.
const EXP_E: [f64; 12] = [
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5_040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];

/// `e^r - 1 = r + r^2/2 + r^3 Q(r)`: [`EXP_E`] without its first term.
const EXPM1_Q: [f64; 11] = [
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5_040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];

/// `ln(1 + f) = 2 atanh(s)` with `s = f / (2 + f)`, `|s| <= 0.1716`: the series
/// `R(s^2) = sum 2 s^2k / (2k + 1)`, `k = 1..11`; truncation error 1e-19 relative.
const LOG_R: [f64; 11] = [
    2.0 / 3.0,
    2.0 / 5.0,
    2.0 / 7.0,
    2.0 / 9.0,
    2.0 / 11.0,
    2.0 / 13.0,
    2.0 / 15.0,
    2.0 / 17.0,
    2.0 / 19.0,
    2.0 / 21.0,
    2.0 / 23.0,
];

/// `erf x = x P(x^2)` on `|x| <= 0.85`, relative error 1.5e-19 (a Chebyshev fit).
#[allow(clippy::excessive_precision)]
const ERF_P: [f64; 12] = [
    std::f64::consts::FRAC_2_SQRT_PI,
    -0.3761263890318375,
    0.11283791670954685,
    -0.02686617064501726,
    0.005223977623916789,
    -0.0008548326902886471,
    0.00012055326932054655,
    -1.4925450090912942e-05,
    1.6457676496214065e-06,
    -1.6300495998065118e-07,
    1.4189584294135369e-08,
    -8.837207342835496e-10,
];

/// One piece of `G(z) = erfc(z) e^(z^2)` on `z >= lo` (up to the next piece): a polynomial
/// in `z - center`, or, where `G` behaves like `1/z`, `G(z) = K(1/z) / z` with `K` a
/// polynomial in `1/z - center` (`K` is nearly constant, so its value is well conditioned).
/// The constant term carries an extra `c0_lo` so that its rounding does not count.
struct Piece {
    lo: f64,
    reciprocal: bool,
    center: f64,
    c0_lo: f64,
    c: [f64; 16],
}

/// The pieces of `G` on `[0.5, 28]` (Chebyshev fits; with the coefficients as stored, the
/// relative error is below 8e-18).
#[allow(clippy::excessive_precision, clippy::unreadable_literal)]
const PIECES: [Piece; 6] = [
    Piece {
        lo: 0.5,
        reciprocal: false,
        center: 0.75,
        c0_lo: -5.335996477605762e-17,
        c: [
            0.5069376502931449,
            -0.3679726916557954,
            0.2309581315512983,
            -0.1298360619948811,
            0.06679054252756655,
            -0.03189726203968118,
            0.014289198666213443,
            -0.00605153229729106,
            0.0024376373433168705,
            -0.000938512056293829,
            0.0003467512575452147,
            -0.0001233545520026088,
            4.236125943559736e-05,
            -1.408512949400527e-05,
            4.653752310183548e-06,
            -1.4567881256540653e-06,
        ],
    },
    Piece {
        lo: 1.0,
        reciprocal: false,
        center: 1.3,
        c0_lo: -1.6864562160125734e-17,
        c: [
            0.3576426690860903,
            -0.19850822747167773,
            0.09958197337290925,
            -0.046034441391263815,
            0.019868599782131773,
            -0.008082104669795925,
            0.0031206212372539314,
            -0.00115008487475395,
            0.0004063777197092799,
            -0.00013817640572776565,
            4.5349804345956026e-05,
            -1.4404001969320136e-05,
            4.435779971262414e-06,
            -1.328066711780307e-06,
            3.9835198704854105e-07,
            -1.1304490357496097e-07,
        ],
    },
    Piece {
        lo: 1.6,
        reciprocal: true,
        center: 0.5048076923076923,
        c0_lo: -3.477219975197035e-17,
        c: [
            0.5099866199558672,
            -0.1675550526963112,
            -0.03493251281726622,
            0.11688114806131271,
            -0.10771827520301157,
            0.04361877117958917,
            0.037144267693493355,
            -0.09979776830330556,
            0.1188997554900233,
            -0.08342188421493307,
            -6.995673962270021e-05,
            0.1073306128156925,
            -0.20073514565652834,
            0.23639092210081197,
            -0.1604706007353959,
            -0.02483461624164138,
        ],
    },
    Piece {
        lo: 2.6,
        reciprocal: true,
        center: 0.31135531135531136,
        c0_lo: 1.0152768831027045e-17,
        c: [
            0.5400875873447699,
            -0.13760020991126157,
            -0.12856100069702286,
            0.20417411390106632,
            -0.08989479815070384,
            -0.13593764039664694,
            0.31958629270778216,
            -0.27839918297951854,
            -0.09907817025939658,
            0.7172365915250635,
            -1.1664443008135008,
            0.7644858383726602,
            1.1078094272344199,
            -4.288249631632723,
            6.7053486753241245,
            -4.0641402482614,
        ],
    },
    Piece {
        lo: 4.2,
        reciprocal: true,
        center: 0.18571428571428572,
        c0_lo: -5.486121259488525e-17,
        c: [
            0.554924690604716,
            -0.0951490809868697,
            -0.2099866895196931,
            0.2132726728168193,
            0.08491986682526212,
            -0.42591836942837663,
            0.3380508309799001,
            0.5008697136016705,
            -1.5981867253582174,
            1.1902868774135882,
            2.8094336827119317,
            -9.218329348723946,
            8.418791326196523,
            17.063775871838388,
            -70.19515076537132,
            86.2240524754933,
        ],
    },
    Piece {
        lo: 7.5,
        reciprocal: true,
        center: 0.08452380952380953,
        c0_lo: -4.193555325765623e-17,
        c: [
            0.5621954420118969,
            -0.04669188075459485,
            -0.26473047735008065,
            0.1311233951214923,
            0.32183868456793496,
            -0.42739119024489325,
            -0.4689941694068675,
            1.5559840670877003,
            0.13293387339140308,
            -5.806761505759567,
            5.8115792811237865,
            19.05273260295455,
            -52.97464832313787,
            -26.947425024789986,
            325.7068198746166,
            -328.0264894809289,
        ],
    },
];

/// Evaluates the polynomial with coefficients `c` (lowest degree first) at `x`.
#[inline(always)]
fn horner<A: Arch, const N: usize>(x: f64, c: &[f64; N]) -> f64 {
    let mut acc = c[N - 1];
    for &ci in c[..N - 1].iter().rev() {
        acc = A::mad64(acc, x, ci);
    }
    acc
}

/// `-1`, `0` or `1` by the sign of `x`; NaN stays NaN and both zeros give `+0`. Exact.
#[inline(always)]
pub(super) fn sign(x: f64) -> f64 {
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
pub(super) fn relu(x: f64) -> f64 {
    (if x < 0.0 { 0.0 } else { x }) + 0.0
}

/// Nearest integer, ties to even. Exact; keeps the sign of zero.
#[inline(always)]
pub(super) fn round(x: f64) -> f64 {
    let a = x.abs();
    // As in the f32 version: adding and removing 2^52 rounds to an integer, ties to even.
    let r = (a + TWO_52) - TWO_52;
    let r = if a < TWO_52 { r } else { a };
    r.copysign(x)
}

/// Largest integer not above `x`. Exact.
#[inline(always)]
pub(super) fn floor(x: f64) -> f64 {
    let r = round(x);
    (if r > x { r - 1.0 } else { r }).copysign(x)
}

/// Smallest integer not below `x`. Exact.
#[inline(always)]
pub(super) fn ceil(x: f64) -> f64 {
    let r = round(x);
    (if r < x { r + 1.0 } else { r }).copysign(x)
}

/// The integer in the low bits of `t = v + MAGIC`, offset by 2048 so it is never negative
/// for `|v| < 2048` (unsigned shifts vectorise on AVX2, signed 64-bit ones do not).
#[inline(always)]
fn magic_int(t: f64) -> u64 {
    t.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(2048)
}

/// Splits `e^(x + dx)` into `(p, n + 2048)` with `e^(x + dx) = p 2^n`, `p` in about
/// `[0.7, 1.42]`. The argument is clamped to `[-800, 710]`, beyond which the result is 0 or
/// inf even after a further factor up to `2^50`; NaN passes through.
#[inline(always)]
fn exp_parts<A: Arch>(x: f64, dx: f64) -> (f64, u64) {
    let x = if x < -800.0 { -800.0 } else { x };
    let x = if x > 710.0 { 710.0 } else { x };
    let t = A::mad64(x, LOG2_E, MAGIC);
    let n = t - MAGIC;
    // The first step is exact (`n * LN2_HI` has at most 53 bits), the second rounds once.
    let r = A::mad64(n, -LN2_HI, x);
    let r = A::mad64(n, -LN2_LO, r) + dx;
    let p = A::mad64(horner::<A, 12>(r, &EXP_E), r * r, r) + 1.0;
    (p, magic_int(t))
}

/// `p * 2^(nb - 2048)`, applying the power in two exact halves so that `n = 1024` does not
/// overflow the exponent field and a subnormal result is rounded once.
#[inline(always)]
fn scale(p: f64, nb: u64) -> f64 {
    // floor(n / 2) + 1023 = (nb >> 1) - 1024 + 1023.
    let e1 = (nb >> 1).wrapping_sub(1);
    // n - floor(n / 2) + 1023 = nb - 2048 - (nb >> 1) + 1024 + 1023.
    let e2 = nb.wrapping_sub(nb >> 1).wrapping_sub(1);
    p * f64::from_bits(e1 << 52) * f64::from_bits(e2 << 52)
}

/// `e^x`. Max error 1 ulp against the standard library; subnormal results are rounded
/// once.
#[inline(always)]
pub(super) fn exp<A: Arch>(x: f64) -> f64 {
    let (p, n) = exp_parts::<A>(x, 0.0);
    scale(p, n)
}

/// `e^x - 1`, accurate near zero. Max error 2 ulp against the standard library.
#[inline(always)]
pub(super) fn expm1<A: Arch>(x: f64) -> f64 {
    // Below -38 the result rounds to -1; above 709.8 it overflows.
    let xc = if x < -40.0 { -40.0 } else { x };
    let xc = if xc > 710.0 { 710.0 } else { xc };
    let t = A::mad64(xc, LOG2_E, MAGIC);
    let n = t - MAGIC;
    let r = A::mad64(n, -LN2_HI, xc);
    let r = A::mad64(n, -LN2_LO, r);
    // em = e^r - 1 = r + r^2/2 + r^3 Q(r), Q being EXP_E without its first term.
    let q = horner::<A, 11>(r, &EXPM1_Q);
    let em = A::mad64(r * r, A::mad64(r, q, 0.5), r);
    // e^x - 1 = 2 (h em + (h - 1/2)) with h = 2^(n-1), as in the f32 version.
    let h = f64::from_bits(magic_int(t).wrapping_sub(2048 - 1022) << 52);
    let y = 2.0 * A::mad64(h, em, h - 0.5);
    // Halving a subnormal `em` would lose its last bit, and for |x| < 2^-53 the result is
    // x itself anyway.
    if x.abs() < 1.110_223_024_625_156_5e-16 {
        x
    } else {
        y
    }
}

/// Natural logarithm. Max error 1 ulp. `log(0) = -inf`, `log(x < 0) = NaN`.
#[inline(always)]
pub(super) fn log<A: Arch>(x: f64) -> f64 {
    let sub = x < f64::MIN_POSITIVE;
    let xs = if sub { x * 18_014_398_509_481_984.0 } else { x };
    // x = 2^e m with m in [sqrt(1/2), sqrt(2)); the offset by ONE_BITS keeps the subtraction
    // from wrapping, so unsigned shifts (which vectorise) suffice.
    let ix = xs
        .to_bits()
        .wrapping_sub(SQRT_HALF_BITS)
        .wrapping_add(ONE_BITS);
    let m = f64::from_bits((ix & MANTISSA).wrapping_add(SQRT_HALF_BITS));
    // The biased exponent as a float via the 2^52 trick (AVX2 has no i64 -> f64 convert).
    let eb = f64::from_bits(TWO_52.to_bits() | (ix >> 52)) - TWO_52;
    let k = eb - if sub { 1023.0 + 54.0 } else { 1023.0 };
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let rr = z * horner::<A, 11>(z, &LOG_R);
    let hfsq = 0.5 * f * f;
    // ln(1 + f) = f - hfsq + s (hfsq + R): f is exact and the correction small, so the
    // rounding of the last additions dominates.
    let r = A::mad64(s, hfsq + rr, k * LN2_LO);
    let r = A::mad64(k, LN2_HI, f - (hfsq - r));
    let r = if x == f64::INFINITY { x } else { r };
    let r = if x == 0.0 { f64::NEG_INFINITY } else { r };
    if x >= 0.0 { r } else { f64::NAN }
}

/// Hyperbolic tangent as `t / (t + 2)`, `t = e^(2|x|) - 1`. Max error 3 ulp against the
/// standard library.
#[inline(always)]
pub(super) fn tanh<A: Arch>(x: f64) -> f64 {
    // Beyond 19.1 tanh rounds to 1; the clamp keeps t finite.
    let a = x.abs();
    let a = if a > 20.0 { 20.0 } else { a };
    let t = expm1::<A>(a + a);
    (t / (t + 2.0)).copysign(x)
}

/// `1 / (1 + e^-x)`, as `e^x / (1 + e^x)` for negative `x`. Max error 2 ulp.
#[inline(always)]
pub(super) fn sigmoid<A: Arch>(x: f64) -> f64 {
    let e = exp::<A>(-x.abs());
    let num = if x < 0.0 { e } else { 1.0 };
    num / (1.0 + e)
}

/// `x * sigmoid(x)`. Max error 3 ulp; `silu(-inf) = -0`.
#[inline(always)]
pub(super) fn silu<A: Arch>(x: f64) -> f64 {
    let (p, n) = exp_parts::<A>(-x.abs(), 0.0);
    let e = scale(p, n);
    let xm = if x < -800.0 { -800.0 } else { x };
    let num = if x < 0.0 { scale(p * xm, n) } else { x };
    num / (1.0 + e)
}

/// `ln(1 + e^x)` as `max(x, 0) + ln_1p(e^-|x|)`. Max error 2 ulp.
#[inline(always)]
pub(super) fn softplus<A: Arch>(x: f64) -> f64 {
    let l = exp::<A>(-x.abs()).ln_1p();
    let m = if x > 0.0 { x } else { 0.0 };
    m + l
}

/// `(hi, lo)` with `hi + lo = a * a` exactly (Dekker's product, which needs no FMA).
#[inline(always)]
fn exact_square(a: f64) -> (f64, f64) {
    const SPLIT: f64 = 134_217_729.0; // 2^27 + 1
    let hi = a * a;
    let c = SPLIT * a;
    let ah = c - (c - a);
    let al = a - ah;
    let lo = ((ah * ah - hi) + 2.0 * ah * al) + al * al;
    (hi, lo)
}

/// `m erfc(z)` for `z` in `[0.5, 28.3]` given `z^2 = z2hi + z2lo` exactly. Branch-free (the
/// piece is picked by counting comparisons), so random inputs cost no mispredictions.
#[inline(always)]
fn erfc_scaled<A: Arch>(z: f64, z2hi: f64, z2lo: f64, m: f64) -> f64 {
    let i: usize = PIECES[1..].iter().map(|p| usize::from(z >= p.lo)).sum();
    let piece = &PIECES[i];
    let v = if piece.reciprocal { 1.0 / z } else { z } - piece.center;
    let mut tail = piece.c[15];
    for &c in piece.c[1..15].iter().rev() {
        tail = A::mad64(tail, v, c);
    }
    let g = A::mad64(tail, v, piece.c0_lo) + piece.c[0];
    // For the reciprocal pieces the factor 1/z joins m in one division.
    let gm = g * if piece.reciprocal { m / z } else { m };
    let (q, n) = exp_parts::<A>(-z2hi, -z2lo);
    scale(q * gm, n)
}

/// The error function. Max error 1 ulp against correctly rounded values; `erf(±inf) = ±1`.
#[inline(always)]
pub(super) fn erf<A: Arch>(x: f64) -> f64 {
    let a = x.abs();
    let small = x * horner::<A, 12>(x * x, &ERF_P);
    // Beyond 5.93 erf rounds to ±1 (erfc(6) is below a quarter ulp of 1); the clamp keeps
    // the tail in its range and lets NaN through.
    let z = if a > 6.0 { 6.0 } else { a };
    let (hi, lo) = exact_square(z);
    let big = (1.0 - erfc_scaled::<A>(z, hi, lo, 1.0)).copysign(x);
    if a < 0.84 { small } else { big }
}

/// Exact GELU, `x/2 (1 + erf(x/sqrt 2))`, with negative `x` computed as `x/2 erfc(|x|/sqrt
/// 2)` (no cancellation; `z^2 = x^2/2` carried exactly). Max error 3 ulp against 50-digit
/// values; `gelu(-inf) = -0`, the limit.
#[inline(always)]
pub(super) fn gelu<A: Arch>(x: f64) -> f64 {
    let h = 0.5 * x;
    let w = x * std::f64::consts::FRAC_1_SQRT_2;
    let small = A::mad64(h, w * horner::<A, 12>(w * w, &ERF_P), h);
    // Beyond |x| = 40, Φ(x) is 0 or 1 in f64 (it underflows below -38.6); the clamp keeps
    // erfc in range and lets NaN through.
    let xc = if x < -40.0 { -40.0 } else { x };
    let xc = if xc > 40.0 { 40.0 } else { xc };
    let a = xc.abs();
    let (hi, lo) = exact_square(a);
    let z = a * std::f64::consts::FRAC_1_SQRT_2;
    // For x < 0 the factor x/2 is applied inside; for x >= 0 the tail gives -erfc(z)/2 and
    // gelu = x + x (-erfc(z)/2).
    let m = if x < 0.0 { 0.5 * xc } else { -0.5 };
    let k = erfc_scaled::<A>(z, 0.5 * hi, 0.5 * lo, m);
    let big = if x < 0.0 { k } else { A::mad64(xc, k, x) };
    if a < std::f64::consts::FRAC_1_SQRT_2 {
        small
    } else {
        big
    }
}
