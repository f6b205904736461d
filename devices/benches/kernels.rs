//! Kernel micro-benchmarks of the CPU device, through the public API only.
//!
//! Each case has a twin in `bench/peers.py` (NumPy and PyTorch) with the same sizes, dtypes
//! and input values: both sides fill their inputs with the counter-based generator in
//! [`uniform_f32`] / [`uniform_f64`] (SplitMix64 of `seed + (i + 1) * GOLDEN`), so the
//! transcendental kernels see the same arguments. `bench/compare.sh` runs both and joins
//! the medians criterion writes into `BENCHMARKS.md`.
//!
//! Benchmark ids are `<group>/<case>`, e.g. `matmul/f32/1024`, `unary/exp`; the report keys
//! on them, so keep them in step with `bench/peers.py`.
//!
//! Every operation `expect`s success, and each case's result is checked once (outside the
//! timed loop) at a spread of elements against an `f64` reference: a kernel that is
//! missing, failing or still a placeholder stops the run loudly instead of being timed.
//!
//! Defaults keep a full run under about three minutes on two cores (with every kernel near
//! its peer's speed: a case at seconds per call takes ~10 calls of them); the command line
//! (`--warm-up-time`, `--measurement-time`, `--sample-size`) overrides them, which is how
//! `QUICK=1 bench/compare.sh` makes a smoke run.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main,
};
use devices::{CpuDevice, Device, Tensor};
use ir::{BinaryOp, Conv2dParams, Op, ReduceOp, UnaryOp};

/// Elements of the elementwise, reduction and unary inputs.
const N_ELEMS: usize = 10_000_000;
/// Shape of the reduction input: 10M elements, so "sum over the last axis" has work per row.
const REDUCE_SHAPE: [usize; 2] = [10_000, 1_000];
/// Matrix sizes (square `n × n @ n × n`).
const MATMUL_SIZES: [usize; 5] = [64, 256, 512, 1024, 2048];

/// The SplitMix64 increment (2^64 / golden ratio).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective mix of one 64-bit counter.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` floats uniform on `[lo, hi)`: the top 24 bits of each draw give `u` in `[0, 1)`
/// exactly, then `lo + (hi - lo) * u` in `f32` (the same operations `peers.py` does).
fn uniform_f32(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let u = (mix(seed.wrapping_add((i + 1).wrapping_mul(GOLDEN))) >> 40) as f32
                * (1.0 / (1u64 << 24) as f32);
            lo + (hi - lo) * u
        })
        .collect()
}

/// `n` doubles uniform on `[lo, hi)`, from the top 53 bits of each draw.
fn uniform_f64(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n as u64)
        .map(|i| {
            let u = (mix(seed.wrapping_add((i + 1).wrapping_mul(GOLDEN))) >> 11) as f64
                * (1.0 / (1u64 << 53) as f64);
            lo + (hi - lo) * u
        })
        .collect()
}

fn tensor_f32(seed: u64, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(uniform_f32(seed, n, lo, hi), shape).expect("input tensor")
}

fn tensor_f64(seed: u64, shape: &[usize], lo: f64, hi: f64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(uniform_f64(seed, n, lo, hi), shape).expect("input tensor")
}

/// Runs one op and panics with the op's name and the device's error if it fails, so a
/// pending kernel is reported instead of benchmarked.
fn run(dev: &CpuDevice, op: &Op, inputs: &[&Tensor]) -> Tensor {
    match dev.exec(op, inputs) {
        Ok(t) => t,
        Err(e) => panic!("{op:?} failed on the CPU device: {e}"),
    }
}

/// Benchmarks `routine` as `id` in `g`, after checking one of its results with `check`.
/// The check runs only when the case is selected (criterion calls the closure only then)
/// and only once, since criterion calls the closure again for every sample.
fn bench_case<R>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    check: impl FnOnce(R),
    mut routine: impl FnMut() -> R,
) {
    let mut check = Some(check);
    g.bench_function(id, |b| {
        if let Some(check) = check.take() {
            check(routine());
        }
        b.iter(&mut routine)
    });
}

/// Compares about 1000 elements of `got` (spread over it, the last included) with
/// `want(i) = (value, tolerance)` computed in `f64`.
fn check_elems(case: &str, got: &Tensor, want: impl Fn(usize) -> (f64, f64)) {
    let v = got.to_f64_vec().expect("a numeric result");
    let n = v.len();
    for i in (0..n).step_by((n / 1000).max(1)).chain([n - 1]) {
        let (w, tol) = want(i);
        assert!(
            (v[i] - w).abs() <= tol,
            "{case}: element {i} is {} but should be {w} (± {tol:e}): is the kernel a \
             placeholder? Not timing it.",
            v[i]
        );
    }
}

/// The elements of a host tensor, in `f64`, for the reference computations.
fn host(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().expect("a numeric tensor")
}

/// The error function, from Numerical Recipes' Chebyshev fit of `erfc` (relative error below
/// 1.2e-7, far inside the GELU check's tolerance); std has no `erf`.
fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 { 1.0 - erfc } else { erfc - 1.0 }
}

/// Tolerance of a float sum of terms whose magnitudes add up to `abs_sum`: relative error
/// `rel` of that sum. A wrong result is off by about the value itself, which for these
/// random inputs is much larger.
fn sum_tol(rel: f64, abs_sum: f64) -> f64 {
    rel * abs_sum + 1e-30
}

fn matmul(c: &mut Criterion) {
    let dev = CpuDevice::new();
    let op = Op::MatMul {};
    let mut g = group(c, "matmul");
    // A 2048² product takes a large fraction of a second: the minimum sample count keeps
    // those cases to a few seconds each.
    g.sample_size(10);
    for n in MATMUL_SIZES {
        g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        // n·u·Σ|a||b| bounds any summation order's error; f64 gets the same bound in its
        // own unit roundoff.
        for (dtype, rel) in [
            ("f32", n as f64 * 2f64.powi(-24)),
            ("f64", n as f64 * 2f64.powi(-53)),
        ] {
            let (a, b) = if dtype == "f32" {
                (
                    tensor_f32(1, &[n, n], -1.0, 1.0),
                    tensor_f32(2, &[n, n], -1.0, 1.0),
                )
            } else {
                (
                    tensor_f64(1, &[n, n], -1.0, 1.0),
                    tensor_f64(2, &[n, n], -1.0, 1.0),
                )
            };
            let (ha, hb) = (host(&a), host(&b));
            let case = format!("matmul/{dtype}/{n}");
            let check = |y: Tensor| {
                check_elems(&case, &y, |idx| {
                    let (i, j) = (idx / n, idx % n);
                    let terms = (0..n).map(|k| ha[i * n + k] * hb[k * n + j]);
                    let abs: f64 = terms.clone().map(f64::abs).sum();
                    (terms.sum(), sum_tol(rel, abs))
                })
            };
            bench_case(&mut g, BenchmarkId::new(dtype, n), check, || {
                run(&dev, &op, &[black_box(&a), black_box(&b)])
            });
        }
    }
    g.finish();
}

fn elementwise(c: &mut Criterion) {
    let dev = CpuDevice::new();
    let a = tensor_f32(3, &[N_ELEMS], -1.0, 1.0);
    let b = tensor_f32(4, &[N_ELEMS], -1.0, 1.0);
    let (ha, hb) = (host(&a), host(&b));
    let mut g = group(c, "elementwise");
    g.throughput(Throughput::Elements(N_ELEMS as u64));
    for op in [BinaryOp::Add, BinaryOp::Mul] {
        let o = Op::Binary { op };
        let case = format!("elementwise/{}", op.name());
        // One rounding of the exact f64 result to f32: exactly what the kernel must give.
        let f = |x: f64, y: f64| if op == BinaryOp::Add { x + y } else { x * y };
        let check = |y: Tensor| check_elems(&case, &y, |i| (f(ha[i], hb[i]) as f32 as f64, 0.0));
        bench_case(
            &mut g,
            BenchmarkId::from_parameter(op.name()),
            check,
            || run(&dev, &o, &[black_box(&a), black_box(&b)]),
        );
    }
    g.finish();
}

fn reduce(c: &mut Criterion) {
    let dev = CpuDevice::new();
    let x = tensor_f32(5, &REDUCE_SHAPE, -1.0, 1.0);
    let hx = host(&x);
    let cols = REDUCE_SHAPE[1];
    let cases = [
        ("sum_all", ReduceOp::Sum, vec![0, 1]),
        ("sum_last", ReduceOp::Sum, vec![1]),
        ("max_all", ReduceOp::Max, vec![0, 1]),
    ];
    let mut g = group(c, "reduce");
    g.throughput(Throughput::Elements(N_ELEMS as u64));
    for (name, op, axes) in cases {
        // The elements each output folds: all of them, or row `i`.
        let span = |i: usize| {
            if name == "sum_last" {
                &hx[i * cols..(i + 1) * cols]
            } else {
                &hx[..]
            }
        };
        let case = format!("reduce/{name}");
        let check = |y: Tensor| {
            check_elems(&case, &y, |i| {
                let xs = span(i);
                if op == ReduceOp::Max {
                    (xs.iter().copied().fold(f64::NEG_INFINITY, f64::max), 0.0)
                } else {
                    // Far looser than n·u (useless at 10M terms), far tighter than the
                    // sum itself: any sane f32 summation order passes.
                    let abs: f64 = xs.iter().map(|v| v.abs()).sum();
                    (xs.iter().sum(), sum_tol(1e-5, abs))
                }
            })
        };
        let o = Op::Reduce {
            op,
            axes,
            keepdims: false,
        };
        bench_case(&mut g, BenchmarkId::from_parameter(name), check, || {
            run(&dev, &o, &[black_box(&x)])
        });
    }
    g.finish();
}

/// The `f64` reference of the unary ops benchmarked.
fn unary_ref(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        _ => unreachable!("no reference for {op:?}"),
    }
}

fn unary(c: &mut Criterion) {
    let dev = CpuDevice::new();
    // Arguments span the range where these functions do their interesting work; `log`
    // gets positive ones.
    let x = tensor_f32(6, &[N_ELEMS], -4.0, 4.0);
    let pos = tensor_f32(6, &[N_ELEMS], 0.01, 10.0);
    let (hx, hpos) = (host(&x), host(&pos));
    let ops = [
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Gelu,
        UnaryOp::Sin,
        UnaryOp::Cos,
    ];
    let mut g = group(c, "unary");
    g.throughput(Throughput::Elements(N_ELEMS as u64));
    for op in ops {
        let (input, hin) = if op == UnaryOp::Log {
            (&pos, &hpos)
        } else {
            (&x, &hx)
        };
        let case = format!("unary/{}", op.name());
        // About 100 ulp of f32 relative (absolute below 1): room for fast polynomial
        // kernels, none for a wrong function.
        let check = |y: Tensor| {
            check_elems(&case, &y, |i| {
                let w = unary_ref(op, hin[i]);
                (w, 1e-5 * w.abs().max(1.0))
            })
        };
        let o = Op::Unary { op };
        bench_case(
            &mut g,
            BenchmarkId::from_parameter(op.name()),
            check,
            || run(&dev, &o, &[black_box(input)]),
        );
    }
    g.finish();
}

fn conv2d(c: &mut Criterion) {
    let dev = CpuDevice::new();
    // The shapes of `micro_conv.py` in the shared baselines: NCHW input, OIHW weights.
    let (n, ci, h, w, co, k) = (32, 3, 32, 32, 16, 3);
    let x = tensor_f32(7, &[n, ci, h, w], -1.0, 1.0);
    let wt = tensor_f32(8, &[co, ci, k, k], -0.5, 0.5);
    // A fixed output cotangent, as PyTorch's `autograd.grad(out, (x, w), g)` gets.
    let dy = tensor_f32(9, &[n, co, h, w], -1.0, 1.0);
    let (hx, hw, hdy) = (host(&x), host(&wt), host(&dy));
    let params = Conv2dParams {
        padding: [1, 1],
        ..Conv2dParams::default()
    };
    let fwd = Op::Conv2d { params };
    let bwd_input = Op::Conv2dBackwardInput {
        params,
        input_hw: [h, w],
    };
    let bwd_filter = Op::Conv2dBackwardFilter {
        params,
        kernel_hw: [k, k],
    };

    // References. With padding 1 and stride 1, y[b,o,i,j] = Σ_{c,p,q} x[b,c,i+p-1,j+q-1]
    // w[o,c,p,q]; each helper returns (value, Σ|terms|) for the tolerance.
    let xat = |b: usize, c: usize, i: isize, j: isize| {
        let inside = (0..h as isize).contains(&i) && (0..w as isize).contains(&j);
        if inside {
            hx[((b * ci + c) * h + i as usize) * w + j as usize]
        } else {
            0.0
        }
    };
    let dyat = |b: usize, o: usize, i: isize, j: isize| {
        let inside = (0..h as isize).contains(&i) && (0..w as isize).contains(&j);
        if inside {
            hdy[((b * co + o) * h + i as usize) * w + j as usize]
        } else {
            0.0
        }
    };
    let wat = |o: usize, c: usize, p: usize, q: usize| hw[((o * ci + c) * k + p) * k + q];
    let unflat = |idx: usize, dims: [usize; 4]| {
        let d = idx % dims[3];
        let c2 = idx / dims[3] % dims[2];
        let b2 = idx / (dims[3] * dims[2]) % dims[1];
        (idx / (dims[3] * dims[2] * dims[1]), b2, c2, d)
    };
    let acc = |terms: &mut dyn Iterator<Item = f64>| {
        terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()))
    };
    let y_ref = |idx: usize| {
        let (b, o, i, j) = unflat(idx, [n, co, h, w]);
        let mut terms = (0..ci)
            .flat_map(|c| (0..k).flat_map(move |p| (0..k).map(move |q| (c, p, q))))
            .map(|(c, p, q)| {
                xat(b, c, (i + p) as isize - 1, (j + q) as isize - 1) * wat(o, c, p, q)
            });
        acc(&mut terms)
    };
    // dx[b,c,i,j] = Σ_{o,p,q} dy[b,o,i-p+1,j-q+1] w[o,c,p,q]
    let dx_ref = |idx: usize| {
        let (b, c, i, j) = unflat(idx, [n, ci, h, w]);
        let mut terms = (0..co)
            .flat_map(|o| (0..k).flat_map(move |p| (0..k).map(move |q| (o, p, q))))
            .map(|(o, p, q)| {
                dyat(
                    b,
                    o,
                    i as isize - p as isize + 1,
                    j as isize - q as isize + 1,
                ) * wat(o, c, p, q)
            });
        acc(&mut terms)
    };
    // dw[o,c,p,q] = Σ_{b,i,j} dy[b,o,i,j] x[b,c,i+p-1,j+q-1]
    let dw_ref = |idx: usize| {
        let (o, c, p, q) = unflat(idx, [co, ci, k, k]);
        let mut terms = (0..n)
            .flat_map(|b| (0..h).flat_map(move |i| (0..w).map(move |j| (b, i, j))))
            .map(|(b, i, j)| {
                dyat(b, o, i as isize, j as isize)
                    * xat(b, c, (i + p) as isize - 1, (j + q) as isize - 1)
            });
        acc(&mut terms)
    };
    let with_tol = |(v, abs): (f64, f64)| (v, sum_tol(1e-5, abs));

    let fwd_flops = 2 * n * co * h * w * ci * k * k;
    let mut g = group(c, "conv2d");
    g.throughput(Throughput::Elements(fwd_flops as u64));
    bench_case(
        &mut g,
        BenchmarkId::from_parameter("fwd"),
        |y| check_elems("conv2d/fwd", &y, |i| with_tol(y_ref(i))),
        || run(&dev, &fwd, &[black_box(&x), black_box(&wt)]),
    );
    // Forward, then the gradients with respect to the input and the weights.
    g.throughput(Throughput::Elements(3 * fwd_flops as u64));
    bench_case(
        &mut g,
        BenchmarkId::from_parameter("fwd_bwd"),
        |(y, dx, dw): (Tensor, Tensor, Tensor)| {
            check_elems("conv2d/fwd_bwd (y)", &y, |i| with_tol(y_ref(i)));
            check_elems("conv2d/fwd_bwd (dx)", &dx, |i| with_tol(dx_ref(i)));
            check_elems("conv2d/fwd_bwd (dw)", &dw, |i| with_tol(dw_ref(i)));
        },
        || {
            let y = run(&dev, &fwd, &[black_box(&x), black_box(&wt)]);
            let dx = run(&dev, &bwd_input, &[black_box(&dy), &wt]);
            let dw = run(&dev, &bwd_filter, &[&x, black_box(&dy)]);
            (y, dx, dw)
        },
    );
    g.finish();
}

/// A benchmark group with flat sampling. Most cases here take milliseconds or more per
/// call; criterion's default linear sampling would run at least 1 + 2 + … + sample_size
/// calls (210 at 20 samples), which for a 10M-element op or a large product blows the time
/// budget, while flat sampling needs only sample_size calls.
fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat);
    g
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = kernels;
    config = config();
    targets = matmul, elementwise, reduce, unary, conv2d
}
criterion_main!(kernels);
