//! Square `f32` matmul throughput through `CpuDevice::exec`, one line per size:
//! `<n> <GFLOP/s>` (the median of 9 timed batches of calls, each batch about 2 GFLOP).
//!
//! `bench/matmul_ab.sh` alternates it with the same measurement in NumPy, round after round,
//! which on a shared machine compares the two under the same load far better than two
//! separate runs do.
//!
//! Usage: `cargo run --release -p devices --example matmul_gflops -- 1024 2048`

use std::hint::black_box;
use std::time::Instant;

use devices::{CpuDevice, Device, Tensor};
use ir::Op;

fn main() {
    let dev = CpuDevice::new();
    for arg in std::env::args().skip(1) {
        let Ok(n) = arg.parse::<usize>() else {
            eprintln!("matmul_gflops: '{arg}' is not a size");
            std::process::exit(2);
        };
        let fill = |mul: usize| -> Tensor {
            let v = (0..n * n)
                .map(|i| (i.wrapping_mul(mul) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            Tensor::from_vec(v, &[n, n]).expect("input")
        };
        let (a, b) = (fill(7919), fill(104_729));
        let flop = 2.0 * (n as f64).powi(3);
        let reps = ((2e9 / flop) as usize).clamp(1, 2000);
        let call = || black_box(dev.exec(&Op::MatMul {}, &[&a, &b]).expect("matmul"));
        call();
        let mut secs: Vec<f64> = (0..9)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..reps {
                    call();
                }
                t.elapsed().as_secs_f64() / reps as f64
            })
            .collect();
        secs.sort_by(f64::total_cmp);
        println!("{n} {:.1}", flop / secs[4] / 1e9);
    }
}
