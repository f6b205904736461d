//! Convolution (forward and both gradients) and pooling (forward and gradient).
//!
//! A float convolution runs as matrix products on cuBLAS: the input is unfolded into a
//! column matrix (`conv_im2col`: one row per channel and kernel tap, one column per image
//! and output position), and each of the three primitives is one batched product over the
//! groups, with the gradient of the input folded back by `conv_col2im` (a gather per pixel,
//! so no atomics). Where the column matrix would be too large, the direct kernels run
//! instead: one thread per output element, simple loops, correct for every case but slow
//! for the weight gradient, whose few threads each sum over the whole batch. Pooling is
//! direct kernels.

use ir::{Conv2dParams, Pool2dParams, PoolOp};

use super::kernels::Family;
use super::matmul::matmul;
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
    if let Some(t) = by_gemm(dev, which, p0, p1, &sizes, shape)? {
        return Ok(t);
    }
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

/// The most elements the column matrix of the GEMM path may have (256 MiB of f32). A larger
/// convolution runs the direct kernels rather than ask for that much scratch memory.
const MAX_COLS: usize = 1 << 26;

/// One of the convolution primitives as products on cuBLAS (see the module's
/// documentation), or `None` where the column matrix would be empty or too large.
fn by_gemm(
    dev: &CudaDevice,
    which: Which,
    p0: &Tensor,
    p1: &Tensor,
    sizes: &[i64; 18],
    shape: &[usize],
) -> Result<Option<Tensor>, DeviceError> {
    let u = |i: usize| usize::try_from(sizes[i]).unwrap_or(0);
    let (n, c, o, kh, kw, oh, ow) = (u(0), u(1), u(4), u(5), u(6), u(7), u(8));
    let (groups, cg, og) = (u(15), u(16), u(17));
    let (k, np) = (cg * kh * kw, n * oh * ow);
    let fits = (c * kh * kw)
        .checked_mul(np)
        .is_some_and(|e| e > 0 && e <= MAX_COLS);
    if !fits || groups == 0 || og == 0 {
        return Ok(None);
    }
    let dt = p0.dtype();
    // The columns of `x` as `[groups, K, N·P]`.
    let im2col = |x: &Tensor| -> Result<Tensor, DeviceError> {
        let x = dev.dense(x)?;
        let cols_shape = [groups, k, np];
        let cols = dev.alloc("conv2d", dt, &cols_shape, false)?;
        let f = dev.function(Family::Conv, dt, "conv_im2col")?;
        dev.launch(
            &f,
            "conv2d",
            (groups * k * np) as u64,
            &[
                Arg::U64(dev.buf(&x)?.ptr()),
                Arg::U64(cols.ptr()),
                Arg::Sizes(*sizes),
            ],
        )?;
        Ok(Tensor::from_cuda(cols, dt, &cols_shape))
    };
    // `dy` with the batch moved inside the channels: `[groups, og, N·P]`.
    let dy_by_channel = |dy: &Tensor| -> Result<Tensor, DeviceError> {
        let dy = dev.dense(dy)?.reshape_view(&[n, o, oh * ow]);
        Ok(dev
            .dense(&dy.transpose_view(&[1, 0, 2]))?
            .reshape_view(&[groups, og, np]))
    };
    let weights = |w: &Tensor| -> Result<Tensor, DeviceError> {
        Ok(dev.dense(w)?.reshape_view(&[groups, og, k]))
    };
    let out = match which {
        Which::Forward => {
            // y as [O, N, P] = W (per group og × K) · cols (K × N·P), then [N, O, P].
            let y = matmul(dev, &weights(p1)?, &im2col(p0)?, &[groups, og, np])?;
            let y = y.reshape_view(&[o, n, oh * ow]).transpose_view(&[1, 0, 2]);
            dev.dense(&y)?.reshape_view(shape)
        }
        Which::BackwardInput => {
            // dcols = Wᵀ (K × og) · dy (og × N·P), folded back onto the input's pixels.
            let wt = weights(p1)?.transpose_view(&[0, 2, 1]);
            let dcols = matmul(dev, &wt, &dy_by_channel(p0)?, &[groups, k, np])?;
            let dx = dev.alloc("conv2d_backward_input", dt, shape, false)?;
            let f = dev.function(Family::Conv, dt, "conv_col2im")?;
            dev.launch(
                &f,
                "conv2d_backward_input",
                shape.iter().product::<usize>() as u64,
                &[
                    Arg::U64(dev.buf(&dcols)?.ptr()),
                    Arg::U64(dx.ptr()),
                    Arg::Sizes(*sizes),
                ],
            )?;
            Tensor::from_cuda(dx, dt, shape)
        }
        Which::BackwardFilter => {
            // dW (og × K per group) = dy (og × N·P) · colsᵀ (N·P × K).
            let cols_t = im2col(p0)?.transpose_view(&[0, 2, 1]);
            matmul(dev, &dy_by_channel(p1)?, &cols_t, &[groups, og, k])?.reshape_view(shape)
        }
    };
    Ok(Some(out))
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
