//! Convolution kernels on the shape of the baseline `micro_conv.py`: x 32×3×32×32, w
//! 16×3×3×3, stride 1, padding 1, f32. Reports the forward pass, each backward kernel, and
//! forward plus both backward kernels (what one training step of the layer costs).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use devices::{CpuDevice, Device, Tensor};
use ir::{Conv2dParams, Op};

fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn conv(c: &mut Criterion) {
    let (n, ci, h, w, co, k) = (32, 3, 32, 32, 16, 3);
    let tensor = |shape: &[usize], seed| {
        Tensor::from_vec(values(shape.iter().product(), seed), shape).expect("fills the shape")
    };
    let x = tensor(&[n, ci, h, w], 1);
    let wt = tensor(&[co, ci, k, k], 2);
    let dy = tensor(&[n, co, h, w], 3);
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
    let dev = CpuDevice::new();
    let run = |op: &Op, a: &Tensor, b: &Tensor| dev.exec(op, &[a, b]).expect("conv runs");

    let mut g = c.benchmark_group("conv2d_32x3x32x32_16x3x3x3_f32");
    g.bench_function("fwd", |bch| bch.iter(|| black_box(run(&fwd, &x, &wt))));
    g.bench_function("bwd_input", |bch| {
        bch.iter(|| black_box(run(&bwd_input, &dy, &wt)))
    });
    g.bench_function("bwd_filter", |bch| {
        bch.iter(|| black_box(run(&bwd_filter, &x, &dy)))
    });
    g.bench_function("fwd_bwd", |bch| {
        bch.iter(|| {
            let y = run(&fwd, &x, &wt);
            let dx = run(&bwd_input, &dy, &wt);
            let dw = run(&bwd_filter, &x, &dy);
            black_box((y, dx, dw))
        })
    });
    g.finish();
}

criterion_group!(benches, conv);
criterion_main!(benches);
