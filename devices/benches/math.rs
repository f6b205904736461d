//! Throughput of the elementwise math kernels: every f32 op on 10M elements, one thread
//! (one call of `unary_f32` over the whole slice, so no rayon), plus the main f64 ops.
//!
//! Run with `cargo bench -p devices --bench math`; criterion prints the median time per call.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use devices::cpu::math::{unary_f32, unary_f64};
use ir::UnaryOp;

const N: usize = 10_000_000;

/// Deterministic inputs uniform in `[lo, hi)` (a 64-bit LCG, so runs are comparable).
fn inputs(lo: f64, hi: f64) -> Vec<f64> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..N)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

/// The ops, each with the input range it is measured on: positive inputs for the
/// logarithms and roots, `[-10, 10)` otherwise (the range NumPy comparisons used).
const OPS: [(UnaryOp, f64, f64); 21] = [
    (UnaryOp::Neg, -10.0, 10.0),
    (UnaryOp::Abs, -10.0, 10.0),
    (UnaryOp::Sign, -10.0, 10.0),
    (UnaryOp::Floor, -10.0, 10.0),
    (UnaryOp::Ceil, -10.0, 10.0),
    (UnaryOp::Round, -10.0, 10.0),
    (UnaryOp::Relu, -10.0, 10.0),
    (UnaryOp::Exp, -10.0, 10.0),
    (UnaryOp::Log, 0.01, 10.0),
    (UnaryOp::Log1p, 0.01, 10.0),
    (UnaryOp::Expm1, -10.0, 10.0),
    (UnaryOp::Sqrt, 0.01, 10.0),
    (UnaryOp::Rsqrt, 0.01, 10.0),
    (UnaryOp::Sin, -10.0, 10.0),
    (UnaryOp::Cos, -10.0, 10.0),
    (UnaryOp::Tanh, -10.0, 10.0),
    (UnaryOp::Sigmoid, -10.0, 10.0),
    (UnaryOp::Gelu, -10.0, 10.0),
    (UnaryOp::Silu, -10.0, 10.0),
    (UnaryOp::Softplus, -10.0, 10.0),
    (UnaryOp::Erf, -10.0, 10.0),
];

fn config() -> Criterion {
    // Each call takes milliseconds, so a few samples give a stable median without making
    // the whole run long.
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

fn bench_f32(c: &mut Criterion) {
    let mut group = c.benchmark_group("f32_10M");
    group.throughput(Throughput::Elements(N as u64));
    let mut out = vec![0.0f32; N];
    for (op, lo, hi) in OPS {
        let x: Vec<f32> = inputs(lo, hi).into_iter().map(|v| v as f32).collect();
        group.bench_function(op.name(), |b| {
            b.iter(|| unary_f32(op, black_box(&x), black_box(&mut out)))
        });
    }
    group.finish();
}

/// The same ops on one 32768-element chunk (what `elementwise.rs` hands each rayon task),
/// which stays in L2: this measures the arithmetic, without the memory traffic that bounds
/// the simplest ops at 10M.
fn bench_f32_chunk(c: &mut Criterion) {
    const CHUNK: usize = 32_768;
    let mut group = c.benchmark_group("f32_32K");
    group.throughput(Throughput::Elements(CHUNK as u64));
    let mut out = vec![0.0f32; CHUNK];
    for (op, lo, hi) in OPS {
        let x: Vec<f32> = inputs(lo, hi)[..CHUNK].iter().map(|&v| v as f32).collect();
        group.bench_function(op.name(), |b| {
            b.iter(|| unary_f32(op, black_box(&x), black_box(&mut out)))
        });
    }
    group.finish();
}

fn bench_f64(c: &mut Criterion) {
    let mut group = c.benchmark_group("f64_10M");
    group.throughput(Throughput::Elements(N as u64));
    let mut out = vec![0.0f64; N];
    for (op, lo, hi) in OPS {
        if !matches!(
            op,
            UnaryOp::Exp | UnaryOp::Log | UnaryOp::Tanh | UnaryOp::Sigmoid | UnaryOp::Gelu
        ) {
            continue;
        }
        let x = inputs(lo, hi);
        group.bench_function(op.name(), |b| {
            b.iter(|| unary_f64(op, black_box(&x), black_box(&mut out)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_f32, bench_f32_chunk, bench_f64
}
criterion_main!(benches);
