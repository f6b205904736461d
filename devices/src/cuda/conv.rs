//! Convolution (forward and both gradients) and pooling (forward and gradient) as direct
//! kernels: one thread per output element, operands made contiguous first. Correctness
//! first: these are simple loops, not implicit GEMM.

use ir::{Conv2dParams, Pool2dParams, PoolOp};

use super::kernels::Family;
use super::{Arg, CudaDevice};
use crate::{DeviceError, Tensor};

/// Which of the three convolution primitives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Which {
    /// `conv2d(x, w) -> y`.
    Forward,
    /// `(dy, w) -> dx`.
    BackwardInput,
    /// `(x, dy) -> dw`.
    BackwardFilter,
}

fn dims4(s: &[usize]) -> [i64; 4] {
    std::array::from_fn(|i| s.get(i).copied().unwrap_or(0) as i64)
}

/// One of the convolution primitives; `shape` is the result's.
pub(super) fn conv2d(
    dev: &CudaDevice,
    which: Which,
    p0: &Tensor,
    p1: &Tensor,
    p: &Conv2dParams,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    // The input, weight and output shapes, whichever of them are operands.
    let (x, w, y) = match which {
        Which::Forward => (dims4(p0.shape()), dims4(p1.shape()), dims4(shape)),
        Which::BackwardInput => (dims4(shape), dims4(p1.shape()), dims4(p0.shape())),
        Which::BackwardFilter => (dims4(p0.shape()), dims4(shape), dims4(p1.shape())),
    };
    let groups = p.groups.max(1) as i64;
    let sizes: [i64; 18] = [
        x[0],
        x[1],
        x[2],
        x[3],
        w[0],
        w[2],
        w[3],
        y[2],
        y[3],
        p.stride[0].max(1) as i64,
        p.stride[1].max(1) as i64,
        p.padding[0] as i64,
        p.padding[1] as i64,
        p.dilation[0] as i64,
        p.dilation[1] as i64,
        groups,
        w[1],
        w[0] / groups,
    ];
    let name = match which {
        Which::Forward => "conv2d",
        Which::BackwardInput => "conv2d_backward_input",
        Which::BackwardFilter => "conv2d_backward_filter",
    };
    let dt = p0.dtype();
    let (a, b) = (dev.dense(p0)?, dev.dense(p1)?);
    let out = dev.alloc(name, dt, shape, false)?;
    let n = shape.iter().product::<usize>() as u64;
    if n > 0 {
        let f = dev.function(Family::Conv, dt, name)?;
        dev.launch(
            &f,
            name,
            n,
            &[
                Arg::U64(dev.buf(&a)?.ptr()),
                Arg::U64(dev.buf(&b)?.ptr()),
                Arg::U64(out.ptr()),
                Arg::Sizes(sizes),
            ],
        )?;
    }
    Ok(Tensor::from_cuda(out, dt, shape))
}

/// The kernel's `PoolP` (11 sizes; the rest of the array is unread padding).
fn pool_sizes(x: &[usize], y: &[usize], p: &Pool2dParams) -> [i64; 18] {
    let (x, y) = (dims4(x), dims4(y));
    let mut s = [0i64; 18];
    s[..11].copy_from_slice(&[
        x[0] * x[1],
        x[2],
        x[3],
        y[2],
        y[3],
        p.window[0] as i64,
        p.window[1] as i64,
        p.stride[0].max(1) as i64,
        p.stride[1].max(1) as i64,
        p.padding[0] as i64,
        p.padding[1] as i64,
    ]);
    s
}

/// Pooling of NCHW `x` into `shape`.
pub(super) fn pool2d(
    dev: &CudaDevice,
    op: PoolOp,
    x: &Tensor,
    p: &Pool2dParams,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    let name = match op {
        PoolOp::Max => "pool_max",
        PoolOp::Avg => "pool_avg",
    };
    let dt = x.dtype();
    let xc = dev.dense(x)?;
    let out = dev.alloc(op.name(), dt, shape, false)?;
    let n = shape.iter().product::<usize>() as u64;
    if n > 0 {
        let f = dev.function(Family::Pool, dt, name)?;
        dev.launch(
            &f,
            op.name(),
            n,
            &[
                Arg::U64(dev.buf(&xc)?.ptr()),
                Arg::U64(out.ptr()),
                Arg::Sizes(pool_sizes(x.shape(), shape, p)),
            ],
        )?;
    }
    Ok(Tensor::from_cuda(out, dt, shape))
}

/// Gradient of pooling: `(x, dy) -> dx`, each output's gradient added (atomically) where
/// its window took its value from.
pub(super) fn pool2d_backward(
    dev: &CudaDevice,
    op: PoolOp,
    x: &Tensor,
    dy: &Tensor,
    p: &Pool2dParams,
) -> Result<Tensor, DeviceError> {
    let name = match op {
        PoolOp::Max => "pool_max_backward",
        PoolOp::Avg => "pool_avg_backward",
    };
    let dt = x.dtype();
    let (xc, dyc) = (dev.dense(x)?, dev.dense(dy)?);
    let out = dev.alloc(op.backward_name(), dt, x.shape(), true)?;
    let n = dy.numel() as u64;
    if n > 0 && x.numel() > 0 {
        let f = dev.function(Family::Pool, dt, name)?;
        dev.launch(
            &f,
            op.backward_name(),
            n,
            &[
                Arg::U64(dev.buf(&xc)?.ptr()),
                Arg::U64(dev.buf(&dyc)?.ptr()),
                Arg::U64(out.ptr()),
                Arg::Sizes(pool_sizes(x.shape(), dy.shape(), p)),
            ],
        )?;
    }
    Ok(Tensor::from_cuda(out, dt, x.shape()))
}
