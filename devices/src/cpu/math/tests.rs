//! Accuracy and special-value tests for every kernel, on every dispatch level this machine
//! can run (the baseline one always, the AVX2 or AVX-512 ones where detected).
//!
//! f32 kernels are measured against f64 references over dense sweeps; the error is in ulps of
//! the reference rounded to f32, computed from the unrounded reference, so it includes the
//! half ulp of that rounding. Run with `--nocapture` to see the measured maxima.

use super::{Level, available_levels, dispatch_f32, dispatch_f64};
use ir::UnaryOp;

include!("erf_table.rs");

/// Every op these kernels handle.
const OPS: [UnaryOp; 21] = [
    UnaryOp::Neg,
    UnaryOp::Abs,
    UnaryOp::Sign,
    UnaryOp::Floor,
    UnaryOp::Ceil,
    UnaryOp::Round,
    UnaryOp::Relu,
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Log1p,
    UnaryOp::Expm1,
    UnaryOp::Sqrt,
    UnaryOp::Rsqrt,
    UnaryOp::Sin,
    UnaryOp::Cos,
    UnaryOp::Tanh,
    UnaryOp::Sigmoid,
    UnaryOp::Gelu,
    UnaryOp::Silu,
    UnaryOp::Softplus,
    UnaryOp::Erf,
];

/// The documented bound of each f32 kernel, in ulps (0 for exact ops).
fn f32_bound(op: UnaryOp) -> f64 {
    match op {
        UnaryOp::Neg
        | UnaryOp::Abs
        | UnaryOp::Sign
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::Relu => 0.0,
        // Correctly rounded by the hardware (rsqrt rounds twice).
        UnaryOp::Sqrt => 0.5,
        UnaryOp::Log => 1.0,
        UnaryOp::Exp => 1.5,
        UnaryOp::Log1p | UnaryOp::Expm1 | UnaryOp::Rsqrt | UnaryOp::Sin | UnaryOp::Cos => 2.0,
        UnaryOp::Softplus => 2.0,
        UnaryOp::Erf => 2.5,
        UnaryOp::Tanh | UnaryOp::Sigmoid | UnaryOp::Gelu => 3.0,
        UnaryOp::Silu => 3.5,
        UnaryOp::Not | UnaryOp::IsNan | UnaryOp::IsFinite => 0.0,
    }
}

/// The absolute tolerance that replaces the ulp bound where the result is near zero and the
/// ulp of the result is meaningless: sine and cosine next to their zeros, where the reduced
/// argument carries an absolute error of the order of 2^-24 times the result's natural scale
/// of 1. Other ops need none.
fn f32_abs_tol(op: UnaryOp) -> f64 {
    match op {
        UnaryOp::Sin | UnaryOp::Cos => 2f64.powi(-27),
        _ => 0.0,
    }
}

/// The error function in f64, independent of the kernels: the everywhere-positive series
/// `erf a = 2a/sqrt(pi) e^(-a^2) sum (2a^2)^n / (1 3 ... (2n+1))` below 2.5, the continued
/// fraction for erfc above.
fn erf_ref(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 2.5 {
        erf_series(a)
    } else if a < 7.0 {
        1.0 - erfc_cf(a)
    } else {
        1.0
    };
    r.copysign(x)
}

/// `erfc z` for `z >= 0` (relative accuracy about 1e-15: the continued fraction has
/// converged to that from 0.7 on, and below, erfc is at least 0.32).
fn erfc_ref(z: f64) -> f64 {
    if z < 0.7 {
        1.0 - erf_series(z)
    } else {
        erfc_cf(z)
    }
}

fn erf_series(a: f64) -> f64 {
    let a2 = a * a;
    let mut term = a;
    let mut sum = a;
    let mut n = 0.0;
    while term > sum * 1e-18 {
        n += 1.0;
        term *= 2.0 * a2 / (2.0 * n + 1.0);
        sum += term;
    }
    2.0 / std::f64::consts::PI.sqrt() * (-a2).exp() * sum
}

fn erfc_cf(z: f64) -> f64 {
    // erfc z = e^(-z^2) / sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))), evaluated
    // backwards from a depth where it has converged to double precision for z >= 0.7.
    let mut f = z;
    for n in (1..=400).rev() {
        f = z + f64::from(n) * 0.5 / f;
    }
    (-z * z).exp() / std::f64::consts::PI.sqrt() / f
}

fn gelu_ref(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let z = x.abs() * std::f64::consts::FRAC_1_SQRT_2;
    if x < 0.0 {
        if z > 40.0 {
            -0.0
        } else {
            0.5 * x * erfc_ref(z)
        }
    } else if z > 40.0 {
        x
    } else {
        x * (1.0 - 0.5 * erfc_ref(z))
    }
}

fn sigmoid_ref(x: f64) -> f64 {
    let e = (-x.abs()).exp();
    if x < 0.0 {
        e / (1.0 + e)
    } else {
        1.0 / (1.0 + e)
    }
}

/// The f64 reference of each op (also the standard for the f64 kernels).
fn reference(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sign => {
            if x.is_nan() {
                x
            } else if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Round => x.round_ties_even(),
        UnaryOp::Relu => {
            if x.is_nan() {
                x
            } else {
                x.max(0.0)
            }
        }
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Log1p => x.ln_1p(),
        UnaryOp::Expm1 => x.exp_m1(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => sigmoid_ref(x),
        UnaryOp::Gelu => gelu_ref(x),
        UnaryOp::Silu => {
            if x == f64::NEG_INFINITY {
                -0.0
            } else if x < -600.0 {
                // x e^x is subnormal in f64 here: scale it up by e^700 so that it is
                // computed in the normal range and rounded once at the end.
                x * (x + 700.0).exp() / (1.0 + x.exp()) * (-700.0f64).exp()
            } else {
                x * sigmoid_ref(x)
            }
        }
        UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        UnaryOp::Erf => erf_ref(x),
        UnaryOp::Not | UnaryOp::IsNan | UnaryOp::IsFinite => x,
    }
}

/// The spacing of f32 values at `r` rounded to f32 (the subnormal spacing below the normal
/// range).
fn ulp_f32(r: f64) -> f64 {
    let a = (r as f32).abs();
    if a < f32::MIN_POSITIVE {
        2f64.powi(-149)
    } else {
        let e = ((a.to_bits() >> 23) as i32) - 127;
        2f64.powi(e - 23)
    }
}

fn ulp_f64(r: f64) -> f64 {
    // The spacing above |r|'s binade start (the largest finite value has no next value, but
    // its binade's spacing is that below it).
    let a = r.abs();
    if a == f64::MAX {
        a - a.next_down()
    } else {
        a.next_up() - a
    }
    .max(f64::from_bits(1))
}

/// The error of `y` against the reference `r`: `(ulps, absolute)`; infinite where a NaN
/// or an infinity is wrong.
fn error_f32(y: f32, r: f64) -> (f64, f64) {
    let r32 = r as f32;
    if r.is_nan() || y.is_nan() {
        return if r.is_nan() && y.is_nan() {
            (0.0, 0.0)
        } else {
            (f64::INFINITY, f64::INFINITY)
        };
    }
    if r32.is_infinite() || y.is_infinite() {
        return if y == r32 {
            (0.0, 0.0)
        } else {
            (f64::INFINITY, f64::INFINITY)
        };
    }
    let abs = (f64::from(y) - r).abs();
    (abs / ulp_f32(r), abs)
}

fn error_f64(y: f64, r: f64) -> f64 {
    if r.is_nan() || y.is_nan() {
        return if r.is_nan() && y.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    if r.is_infinite() || y.is_infinite() {
        return if y == r { 0.0 } else { f64::INFINITY };
    }
    (y - r).abs() / ulp_f64(r)
}

/// Interesting f32 inputs: a stride through every bit pattern (both signs), dense grids over
/// the ranges where the kernels switch method, and special values.
fn f32_inputs() -> Vec<f32> {
    let mut v = Vec::new();
    let mut bits = 0u32;
    while bits < 0x7f80_0000 {
        let f = f32::from_bits(bits);
        v.push(f);
        v.push(-f);
        bits += 4099;
    }
    for i in -122_880..=122_880 {
        v.push(i as f32 * 2f32.powi(-12)); // [-30, 30]
    }
    for i in -28_672..=28_672 {
        v.push(i as f32 * 2f32.powi(-8)); // [-112, 112]
    }
    for i in 0..4096u32 {
        // Every float just above 1 and just below it, and the first subnormals.
        v.push(f32::from_bits(1.0f32.to_bits() + i));
        v.push(f32::from_bits(1.0f32.to_bits() - i));
        v.push(f32::from_bits(i));
        v.push(-f32::from_bits(i));
    }
    for s in [1.0f32, -1.0] {
        for c in [
            88.722_83,
            88.722_84,
            87.336_55,
            103.972_08,
            104.0,
            150.0,
            9.1,
            3.92,
            4.0,
            16.0,
            0.921_875,
            0.707_106_77,
            17.0,
            30.0,
            89.0,
            131_072.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            f32::EPSILON,
        ] {
            for d in -3i32..=3 {
                v.push(s * f32::from_bits((c.to_bits() as i32 + d) as u32));
            }
        }
    }
    v.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
    v
}

/// The f32 values next to each multiple of pi/2 up to the fast sine's range, where the
/// reduction is hardest.
fn near_pio2_inputs() -> Vec<f32> {
    let mut v = Vec::new();
    for k in 1..=83_443i32 {
        let c = (f64::from(k) * std::f64::consts::FRAC_PI_2) as f32;
        for d in -1i32..=1 {
            let f = f32::from_bits((c.to_bits() as i32 + d) as u32);
            v.push(f);
            v.push(-f);
        }
    }
    v
}

/// Runs `op` at `level` on `x` and returns (max ulps among points outside the absolute
/// tolerance, max absolute error among points inside it, worst input).
fn measure_f32(level: Level, op: UnaryOp, x: &[f32]) -> (f64, f64, f32) {
    let mut out = vec![0.0f32; x.len()];
    dispatch_f32(level, op, x, &mut out);
    let tol = f32_abs_tol(op);
    let (mut max_ulp, mut max_abs, mut worst) = (0.0f64, 0.0f64, 0.0f32);
    for (&xi, &yi) in x.iter().zip(&out) {
        let (ulps, abs) = error_f32(yi, reference(op, f64::from(xi)));
        if abs <= tol {
            max_abs = max_abs.max(abs);
        } else if ulps > max_ulp || ulps.is_nan() {
            max_ulp = ulps;
            worst = xi;
        }
    }
    (max_ulp, max_abs, worst)
}

#[test]
fn f32_kernels_are_within_their_bounds() {
    let inputs = f32_inputs();
    let mut trig = near_pio2_inputs();
    trig.extend_from_slice(&inputs);
    let mut failures = Vec::new();
    for level in available_levels() {
        for op in OPS {
            let x = if matches!(op, UnaryOp::Sin | UnaryOp::Cos) {
                &trig
            } else {
                &inputs
            };
            let (ulps, abs, worst) = measure_f32(level, op, x);
            println!("{level:?} {op}: max {ulps:.3} ulp (at {worst:e}), abs {abs:.2e}");
            if ulps.is_nan() || ulps > f32_bound(op) {
                failures.push(format!("{level:?} {op}: {ulps} ulp at {worst:e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Applies `op` to single values at every level.
fn at_levels_f32(op: UnaryOp, x: f32) -> Vec<f32> {
    available_levels()
        .into_iter()
        .map(|l| {
            let mut o = [0.0];
            dispatch_f32(l, op, &[x], &mut o);
            o[0]
        })
        .collect()
}

fn at_levels_f64(op: UnaryOp, x: f64) -> Vec<f64> {
    available_levels()
        .into_iter()
        .map(|l| {
            let mut o = [0.0];
            dispatch_f64(l, op, &[x], &mut o);
            o[0]
        })
        .collect()
}

/// Checks that `op(x)` is bitwise `want` (any NaN for NaN) in both precisions at every level.
#[track_caller]
fn check(op: UnaryOp, x: f64, want: f64) {
    for y in at_levels_f32(op, x as f32) {
        let ok = if want.is_nan() {
            y.is_nan()
        } else {
            y.to_bits() == (want as f32).to_bits()
        };
        assert!(ok, "f32 {op}({x}) = {y}, want {want}");
    }
    for y in at_levels_f64(op, x) {
        let ok = if want.is_nan() {
            y.is_nan()
        } else {
            y.to_bits() == want.to_bits()
        };
        assert!(ok, "f64 {op}({x}) = {y}, want {want}");
    }
}

#[test]
fn special_values_follow_numpy() {
    use UnaryOp::*;
    let (inf, nan) = (f64::INFINITY, f64::NAN);
    // NaN propagates through every op.
    for op in OPS {
        check(op, nan, nan);
    }
    check(Exp, -inf, 0.0);
    check(Exp, inf, inf);
    check(Exp, 1000.0, inf);
    check(Exp, -1000.0, 0.0);
    check(Exp, 0.0, 1.0);
    check(Log, 0.0, -inf);
    check(Log, -0.0, -inf);
    check(Log, -1.0, nan);
    check(Log, inf, inf);
    check(Log, 1.0, 0.0);
    check(Log1p, -1.0, -inf);
    check(Log1p, -2.0, nan);
    check(Log1p, inf, inf);
    check(Log1p, -0.0, -0.0);
    check(Expm1, -inf, -1.0);
    check(Expm1, inf, inf);
    check(Expm1, -0.0, -0.0);
    check(Sqrt, -1.0, nan);
    check(Sqrt, -0.0, -0.0);
    check(Rsqrt, 0.0, inf);
    check(Rsqrt, 4.0, 0.5);
    check(Sign, -0.0, 0.0);
    check(Sign, 0.0, 0.0);
    check(Sign, -3.5, -1.0);
    check(Sign, inf, 1.0);
    check(Relu, -0.0, 0.0);
    check(Relu, -2.0, 0.0);
    check(Relu, 2.5, 2.5);
    check(Relu, inf, inf);
    check(Round, 0.5, 0.0);
    check(Round, 1.5, 2.0);
    check(Round, 2.5, 2.0);
    check(Round, -2.5, -2.0);
    check(Round, -0.3, -0.0);
    check(Round, 1e30, 1e30);
    check(Floor, -0.5, -1.0);
    check(Floor, -0.0, -0.0);
    check(Floor, 2.0, 2.0);
    check(Ceil, -0.5, -0.0);
    check(Ceil, 0.2, 1.0);
    check(Ceil, -inf, -inf);
    check(Sin, inf, nan);
    check(Cos, -inf, nan);
    check(Sin, -0.0, -0.0);
    check(Cos, 0.0, 1.0);
    check(Tanh, 50.0, 1.0);
    check(Tanh, -1e30, -1.0);
    check(Tanh, inf, 1.0);
    check(Tanh, -0.0, -0.0);
    check(Sigmoid, inf, 1.0);
    check(Sigmoid, -inf, 0.0);
    check(Sigmoid, 0.0, 0.5);
    check(Sigmoid, 1000.0, 1.0);
    check(Sigmoid, -1000.0, 0.0);
    check(Silu, inf, inf);
    check(Silu, -inf, -0.0);
    check(Silu, -1000.0, -0.0);
    check(Softplus, 1e6, 1e6);
    check(Softplus, 1e30, 1e30);
    check(Softplus, inf, inf);
    check(Softplus, -inf, 0.0);
    check(Softplus, -1000.0, 0.0);
    check(Gelu, inf, inf);
    check(Gelu, -inf, -0.0);
    check(Gelu, 0.0, 0.0);
    check(Gelu, 100.0, 100.0);
    check(Erf, inf, 1.0);
    check(Erf, -inf, -1.0);
    check(Erf, -0.0, -0.0);
    check(Erf, 10.0, 1.0);
    // No NaN from finite inputs anywhere.
    for op in OPS {
        for x in [
            -1e30,
            -100.0,
            -20.0,
            -1.0,
            1.0,
            20.0,
            100.0,
            1e30,
            f64::MAX,
            -f64::MAX,
        ] {
            let domain_error = matches!(op, Log | Log1p | Sqrt | Rsqrt) && x < 0.0;
            if !domain_error {
                let xf = (x as f32).clamp(f32::MIN, f32::MAX);
                assert!(
                    at_levels_f32(op, xf).iter().all(|y| !y.is_nan()),
                    "{op}({xf})"
                );
                assert!(
                    at_levels_f64(op, x).iter().all(|y| !y.is_nan()),
                    "{op}({x})"
                );
            }
        }
    }
}

#[test]
fn results_do_not_depend_on_position_or_length() {
    // The remainder loop runs the same code as the vector body, so every element's result
    // is the same whatever the slice length and the element's position.
    let x: Vec<f32> = (0..67).map(|i| (i as f32 - 30.0) * 0.37).collect();
    let xd: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    for level in available_levels() {
        for op in OPS {
            let mut full = vec![0.0; x.len()];
            dispatch_f32(level, op, &x, &mut full);
            let mut fulld = vec![0.0; x.len()];
            dispatch_f64(level, op, &xd, &mut fulld);
            for len in [0, 1, 3, 7, 8, 15, 16, 17, 31, 33] {
                for start in [0, 1, 5] {
                    let mut part = vec![0.0; len];
                    dispatch_f32(level, op, &x[start..start + len], &mut part);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    let bitsd = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&part),
                        bits(&full[start..start + len]),
                        "{level:?} {op} f32"
                    );
                    let mut partd = vec![0.0; len];
                    dispatch_f64(level, op, &xd[start..start + len], &mut partd);
                    assert_eq!(
                        bitsd(&partd),
                        bitsd(&fulld[start..start + len]),
                        "{level:?} {op} f64"
                    );
                }
            }
        }
    }
}

#[test]
fn sin_cos_fall_back_for_huge_inputs_inside_a_block() {
    // A single far input among fast ones must be redone without disturbing its neighbours.
    let mut x: Vec<f32> = (0..3000).map(|i| i as f32 * 0.01).collect();
    x[1500] = 1e20;
    x[2999] = -3e9;
    for level in available_levels() {
        for op in [UnaryOp::Sin, UnaryOp::Cos] {
            let (ulps, _, worst) = measure_f32(level, op, &x);
            assert!(
                ulps <= f32_bound(op),
                "{level:?} {op}: {ulps} ulp at {worst}"
            );
        }
    }
}

/// The f64 kernels that are not the standard library's, with their bounds in ulps against
/// it.
const F64_OWN: [(UnaryOp, f64); 7] = [
    (UnaryOp::Exp, 1.0),
    (UnaryOp::Expm1, 2.0),
    (UnaryOp::Log, 1.0),
    (UnaryOp::Tanh, 3.0),
    (UnaryOp::Sigmoid, 2.0),
    (UnaryOp::Silu, 3.0),
    (UnaryOp::Softplus, 2.0),
];

fn f64_inputs() -> Vec<f64> {
    let mut v = Vec::new();
    let mut bits = 0u64;
    while bits < 0x7ff0_0000_0000_0000 {
        let f = f64::from_bits(bits);
        v.push(f);
        v.push(-f);
        bits += 0x0000_1000_0000_0123;
    }
    for i in -300_000..=300_000 {
        v.push(f64::from(i) * 1e-4); // [-30, 30]
    }
    for i in -80_000..=80_000 {
        v.push(f64::from(i) * 1e-2); // [-800, 800]
    }
    for i in 0..4096u64 {
        v.push(f64::from_bits(1.0f64.to_bits() + i));
        v.push(f64::from_bits(1.0f64.to_bits() - i));
        v.push(f64::from_bits(i));
    }
    for c in [
        709.782_712_893_384f64,
        709.79,
        -745.13,
        -708.4,
        19.1,
        38.0,
        40.0,
    ] {
        for d in -3i64..=3 {
            v.push(f64::from_bits((c.to_bits() as i64 + d) as u64));
        }
    }
    v.extend([0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN]);
    v
}

#[test]
fn f64_kernels_are_within_their_bounds() {
    let x = f64_inputs();
    let mut failures = Vec::new();
    for level in available_levels() {
        for op in OPS {
            let mut out = vec![0.0; x.len()];
            dispatch_f64(level, op, &x, &mut out);
            let bound = F64_OWN.iter().find(|(o, _)| *o == op).map(|(_, b)| *b);
            let (mut max, mut worst) = (0.0f64, 0.0);
            for (&xi, &yi) in x.iter().zip(&out) {
                let e = match op {
                    // The test references are good to about 1e-13 only, enough to catch a
                    // wrong piece or branch anywhere; ulp accuracy is checked against the
                    // table below.
                    UnaryOp::Erf | UnaryOp::Gelu => {
                        let r = reference(op, xi);
                        let off = if r.is_nan() || yi.is_nan() {
                            if r.is_nan() == yi.is_nan() {
                                0.0
                            } else {
                                f64::INFINITY
                            }
                        } else if r == yi {
                            0.0
                        } else {
                            (yi - r).abs() / r.abs().max(1e-290)
                        };
                        assert!(off <= 1e-12, "{level:?} {op}({xi:e}) = {yi:e}, want {r:e}");
                        0.0
                    }
                    _ => error_f64(yi, reference(op, xi)),
                };
                if e > max || e.is_nan() {
                    (max, worst) = (e, xi);
                }
            }
            println!("{level:?} f64 {op}: max {max:.3} ulp (at {worst:e})");
            // Ops without their own kernel must match the standard library exactly.
            if max.is_nan() || max > bound.unwrap_or(0.0) {
                failures.push(format!("{level:?} {op}: {max} ulp at {worst:e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn f64_erf_and_gelu_match_high_precision_values() {
    let x: Vec<f64> = ERF_GELU_TABLE.iter().map(|r| r.0).collect();
    for level in available_levels() {
        let mut erf = vec![0.0; x.len()];
        let mut gelu = vec![0.0; x.len()];
        dispatch_f64(level, UnaryOp::Erf, &x, &mut erf);
        dispatch_f64(level, UnaryOp::Gelu, &x, &mut gelu);
        let (mut max_erf, mut max_gelu) = (0.0f64, 0.0f64);
        for (i, &(xi, e, g)) in ERF_GELU_TABLE.iter().enumerate() {
            // The table holds correctly rounded values; the reported errors are against
            // them (so within half an ulp of the error against the exact values).
            let ee = error_f64(erf[i], e);
            let eg = error_f64(gelu[i], g);
            assert!(
                ee <= 1.0,
                "{level:?} erf({xi:e}) = {:e}, want {e:e}",
                erf[i]
            );
            assert!(
                eg <= 3.0,
                "{level:?} gelu({xi:e}) = {:e}, want {g:e}",
                gelu[i]
            );
            max_erf = max_erf.max(ee);
            max_gelu = max_gelu.max(eg);
        }
        println!("{level:?} f64 erf: max {max_erf:.3} ulp, gelu: max {max_gelu:.3} ulp");
    }
}

#[test]
fn test_references_agree_with_the_table() {
    // The f32 tests rely on erf_ref and gelu_ref; check them against the 50-digit values.
    for &(x, e, g) in ERF_GELU_TABLE {
        let tol = 1e-12;
        assert!(
            (erf_ref(x) - e).abs() <= (tol * e.abs()).max(1e-290),
            "erf_ref({x})"
        );
        assert!(
            (gelu_ref(x) - g).abs() <= (tol * g.abs()).max(1e-290),
            "gelu_ref({x})"
        );
    }
}

/// Every f32 with `2^-8 <= |x| < 2^8` (where the kernels switch methods and most
/// inputs live) and every 61st one elsewhere, for every op and level. It takes minutes, so
/// it is opt-in: `cargo test --release -p devices exhaustive -- --ignored --nocapture`.
#[test]
#[ignore]
fn exhaustive_f32_sweep() {
    use rayon::prelude::*;
    let lo = 2f32.powi(-8).to_bits();
    let hi = 2f32.powi(8).to_bits();
    let bits: Vec<u32> = (0..0x7f80_0000u32)
        .filter(|&b| (lo..hi).contains(&b) || b % 61 == 0)
        .collect();
    let mut failures = Vec::new();
    for level in available_levels() {
        for op in OPS {
            let (max_ulp, worst) = bits
                .par_chunks(1 << 16)
                .map(|chunk| {
                    let x: Vec<f32> = chunk
                        .iter()
                        .flat_map(|&b| [f32::from_bits(b), -f32::from_bits(b)])
                        .collect();
                    let (u, _, w) = measure_f32(level, op, &x);
                    (u, w)
                })
                .reduce(
                    || (0.0, 0.0),
                    |a, b| if b.0 > a.0 || b.0.is_nan() { b } else { a },
                );
            println!("{level:?} {op}: max {max_ulp:.3} ulp (at {worst:e})");
            if max_ulp.is_nan() || max_ulp > f32_bound(op) {
                failures.push(format!("{level:?} {op}: {max_ulp} ulp at {worst:e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
