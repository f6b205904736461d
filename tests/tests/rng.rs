//! The counter-based random generator (`Op::Random`): its guarantees and its statistics.
//!
//! The key is an `i64[2]` holding `(seed, offset)`; element `i` of a draw depends only on
//! the seed and `offset + i`. So the same key gives the same numbers, a draw may be cut into
//! chunks at any point, and the thread count does not matter.

use devices::{CpuDevice, Device, Tensor};
use ir::{DType, Op, RandomOp, Shape};

/// Draws `shape` numbers of `dtype` from `op` with key `(seed, offset)`.
fn draw(op: RandomOp, dtype: DType, shape: &[usize], seed: i64, offset: i64) -> Vec<f64> {
    let key = Tensor::from_vec(vec![seed, offset], &[2]).expect("a key");
    let t = CpuDevice::new()
        .exec(
            &Op::Random {
                op,
                shape: Shape::known(shape),
                dtype,
            },
            &[&key],
        )
        .unwrap_or_else(|e| panic!("{op} {dtype}{shape:?} key ({seed}, {offset}): {e}"));
    assert_eq!(t.dtype(), dtype);
    assert_eq!(t.shape(), shape);
    t.to_f64_vec().expect("a host tensor")
}

/// Bit patterns, so that equality is exact.
fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every distribution and float dtype.
fn each(mut f: impl FnMut(RandomOp, DType)) {
    for &op in RandomOp::ALL {
        for dt in [DType::F32, DType::F64] {
            f(op, dt);
        }
    }
}

#[test]
fn same_key_same_numbers() {
    each(|op, dt| {
        let a = draw(op, dt, &[4, 25], 1234, 99);
        let b = draw(op, dt, &[4, 25], 1234, 99);
        assert_eq!(bits(&a), bits(&b), "{op} {dt}");
    });
}

/// A draw of `n` at offset 0 equals a draw of `k` at offset 0 followed by a draw of `n - k`
/// at offset `k`, for cuts at odd and even places (a generator that makes numbers in pairs,
/// like Box-Muller, must still cut anywhere).
#[test]
fn chunking_independence() {
    let n = 1000;
    each(|op, dt| {
        let whole = draw(op, dt, &[n], 77, 0);
        for k in [0, 1, 2, 3, 7, 64, 333, 500, 999, 1000] {
            let mut parts = draw(op, dt, &[k], 77, 0);
            parts.extend(draw(op, dt, &[n - k], 77, k as i64));
            assert_eq!(bits(&parts), bits(&whole), "{op} {dt}: cut at {k}");
        }
        // A shaped draw is the flat draw in C order.
        let shaped = draw(op, dt, &[10, 4, 25], 77, 0);
        assert_eq!(bits(&shaped), bits(&whole), "{op} {dt}: shape [10, 4, 25]");
        // Element i at offset o is element o + i at offset 0.
        let shifted = draw(op, dt, &[100], 77, 450);
        assert_eq!(
            bits(&shifted),
            bits(&whole[450..550]),
            "{op} {dt}: offset 450"
        );
    });
}

/// One thread and two threads give the same numbers, for draws large enough to be split.
#[test]
fn thread_count_independence() {
    let n = 100_000;
    each(|op, dt| {
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool")
                .install(|| draw(op, dt, &[n], 5, 11))
        };
        assert_eq!(bits(&run(1)), bits(&run(2)), "{op} {dt}");
    });
}

#[test]
fn different_seeds_differ() {
    each(|op, dt| {
        let a = draw(op, dt, &[1000], 1, 0);
        let b = draw(op, dt, &[1000], 2, 0);
        let c = draw(op, dt, &[1000], -1, 0);
        let same = |x: &[f64], y: &[f64]| x.iter().zip(y).filter(|(p, q)| p == q).count();
        // Equal elements at the same position are possible (f32 has 2^24 uniform values)
        // but must be rare.
        assert!(
            same(&a, &b) < 10,
            "{op} {dt}: seeds 1 and 2 agree too often"
        );
        assert!(
            same(&a, &c) < 10,
            "{op} {dt}: seeds 1 and -1 agree too often"
        );
        // Neighbouring offsets are not the same stream shifted by a little.
        let d = draw(op, dt, &[1000], 1, 1);
        assert!(
            same(&a, &d) < 10,
            "{op} {dt}: offsets 0 and 1 agree too often"
        );
    });
}

/// 1e5 uniform draws lie in `[0, 1)` with mean 1/2 and variance 1/12. The bounds are five
/// standard errors: `σ/√n` for the mean (σ² = 1/12) and about `sqrt(1/180)/√n` for the
/// variance; a correct generator fails one of them with probability below 1e-5.
#[test]
fn uniform_statistics() {
    let n = 100_000;
    for dt in [DType::F32, DType::F64] {
        let v = draw(RandomOp::Uniform, dt, &[n], 2024, 0);
        assert!(
            v.iter().all(|x| (0.0..1.0).contains(x)),
            "{dt}: a number outside [0, 1)"
        );
        let nf = n as f64;
        let mean = v.iter().sum::<f64>() / nf;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nf - 1.0);
        let se_mean = (1.0f64 / 12.0).sqrt() / nf.sqrt();
        let se_var = (1.0f64 / 180.0).sqrt() / nf.sqrt();
        assert!((mean - 0.5).abs() < 5.0 * se_mean, "{dt}: mean {mean}");
        assert!(
            (var - 1.0 / 12.0).abs() < 5.0 * se_var,
            "{dt}: variance {var}"
        );
        // Each tenth of [0, 1) holds a tenth of the draws (binomial, five standard errors).
        let mut bins = [0usize; 10];
        for x in &v {
            bins[((x * 10.0) as usize).min(9)] += 1;
        }
        let se_bin = (nf * 0.1 * 0.9).sqrt();
        for (i, &b) in bins.iter().enumerate() {
            assert!(
                (b as f64 - nf / 10.0).abs() < 5.0 * se_bin,
                "{dt}: bin {i} holds {b} of {n}"
            );
        }
    }
}

/// 1e5 normal draws have mean 0 (standard error 1/√n), standard deviation 1 (standard
/// error about 1/√(2n)), about 68.27% of the mass within one standard deviation, and
/// symmetric tails; all bounds are five standard errors.
#[test]
fn normal_statistics() {
    let n = 100_000;
    for dt in [DType::F32, DType::F64] {
        let v = draw(RandomOp::Normal, dt, &[n], 2024, 0);
        assert!(v.iter().all(|x| x.is_finite()), "{dt}: a non-finite number");
        let nf = n as f64;
        let mean = v.iter().sum::<f64>() / nf;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nf - 1.0)).sqrt();
        assert!(mean.abs() < 5.0 / nf.sqrt(), "{dt}: mean {mean}");
        assert!(
            (std - 1.0).abs() < 5.0 / (2.0 * nf).sqrt(),
            "{dt}: std {std}"
        );
        let p = 0.682_689_492_137_086;
        let within = v.iter().filter(|x| x.abs() < 1.0).count() as f64 / nf;
        assert!(
            (within - p).abs() < 5.0 * (p * (1.0 - p) / nf).sqrt(),
            "{dt}: {within} of the mass within one standard deviation"
        );
        let q = 0.022_750_131_948_179_2; // P(X > 2)
        let se_tail = 5.0 * (q * (1.0 - q) / nf).sqrt();
        let upper = v.iter().filter(|&&x| x > 2.0).count() as f64 / nf;
        let lower = v.iter().filter(|&&x| x < -2.0).count() as f64 / nf;
        assert!((upper - q).abs() < se_tail, "{dt}: P(X > 2) = {upper}");
        assert!((lower - q).abs() < se_tail, "{dt}: P(X < -2) = {lower}");
    }
}

/// The key is checked: it must be `i64[2]`.
#[test]
fn key_must_be_i64_pair() {
    let dev = CpuDevice::new();
    let op = Op::Random {
        op: RandomOp::Uniform,
        shape: Shape::known(&[3]),
        dtype: DType::F32,
    };
    let bad_keys = [
        Tensor::from_vec(vec![1i32, 2], &[2]).expect("a tensor"),
        Tensor::from_vec(vec![1i64, 2, 3], &[3]).expect("a tensor"),
        Tensor::scalar(1i64),
    ];
    for key in &bad_keys {
        assert!(
            matches!(dev.exec(&op, &[key]), Err(devices::DeviceError::Infer(_))),
            "key {key:?} was accepted"
        );
    }
    let int_random = Op::Random {
        op: RandomOp::Normal,
        shape: Shape::known(&[3]),
        dtype: DType::I32,
    };
    let key = Tensor::from_vec(vec![1i64, 0], &[2]).expect("a key");
    assert!(dev.exec(&int_random, &[&key]).is_err());
}
