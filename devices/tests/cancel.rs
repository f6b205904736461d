//! Cancellation (`devices::cancel`): a kernel that sees the flag stops early and the device
//! returns `DeviceError::Interrupted` instead of a half-computed tensor.
//!
//! The flag is process-wide, and the tests of one binary run in parallel, so everything
//! here is one test in a binary of its own: no other test can see the flag set.

use std::time::{Duration, Instant};

use devices::{CpuDevice, Device, DeviceError, Tensor, cancel};
use ir::{Op, UnaryOp};

/// Runs `op` on `inputs` while another thread sets the flag after `delay`; returns the
/// result and how long the device took to return after the flag was set.
fn interrupted(
    dev: &CpuDevice,
    op: &Op,
    inputs: &[&Tensor],
    delay: Duration,
) -> (Result<Tensor, DeviceError>, Duration) {
    cancel::clear();
    std::thread::scope(|s| {
        let setter = s.spawn(move || {
            std::thread::sleep(delay);
            cancel::request();
            Instant::now()
        });
        let r = dev.exec(op, inputs);
        let done = Instant::now();
        let set_at = setter.join().expect("the setter thread ends");
        (r, done.saturating_duration_since(set_at))
    })
}

#[test]
fn a_set_flag_stops_kernels_and_a_cleared_one_lets_them_run() {
    let dev = CpuDevice::new();

    // Set before the operation: nothing runs.
    let x = Tensor::from_vec(vec![1.0f32; 1 << 20], &[1 << 20]).expect("a tensor");
    cancel::request();
    assert!(cancel::requested());
    let exp = Op::Unary { op: UnaryOp::Exp };
    assert_eq!(dev.exec(&exp, &[&x]).err(), Some(DeviceError::Interrupted));
    cancel::clear();
    let y = dev
        .exec(&exp, &[&x])
        .expect("exp runs once the flag is cleared");
    assert_eq!(y.as_slice::<f32>().map(|s| s[0]), Some(1.0f32.exp()));

    // Set during long matrix products (f32 on the blocked GEMM or the `gemm` crate, f64 on
    // the `gemm` crate in row blocks): each would take seconds, and stops within 1 s.
    let n = 3072;
    for dtype_f64 in [false, true] {
        let (a, b) = if dtype_f64 {
            (
                Tensor::from_vec(vec![0.5f64; n * n], &[n, n]).expect("a"),
                Tensor::from_vec(vec![0.25f64; n * n], &[n, n]).expect("b"),
            )
        } else {
            (
                Tensor::from_vec(vec![0.5f32; n * n], &[n, n]).expect("a"),
                Tensor::from_vec(vec![0.25f32; n * n], &[n, n]).expect("b"),
            )
        };
        let started = Instant::now();
        let (r, after) = interrupted(&dev, &Op::MatMul {}, &[&a, &b], Duration::from_millis(100));
        assert_eq!(
            r.err(),
            Some(DeviceError::Interrupted),
            "f64: {dtype_f64}, {:?} in all",
            started.elapsed()
        );
        assert!(
            after < Duration::from_secs(1),
            "f64: {dtype_f64}: stopped {after:?} after the flag was set"
        );
    }
    cancel::clear();

    // A cleared flag leaves products whole and right.
    let small = Tensor::from_vec(vec![1.0f32; 64 * 64], &[64, 64]).expect("a small matrix");
    let p = dev
        .exec(&Op::MatMul {}, &[&small, &small])
        .expect("the product runs");
    assert!(
        p.as_slice::<f32>()
            .is_some_and(|s| s.iter().all(|&v| v == 64.0))
    );
}
