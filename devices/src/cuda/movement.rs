//! Movement and creation: strided copies (contiguous, reshape, concat, pad), gather and
//! scatter-add, iota, full, and the counter-based random numbers.
//!
//! Transpose, broadcast and slice are views (no kernel); every copy is the one strided
//! `copy` kernel, reading and writing through two geometries.

use ir::{DType, RandomOp};

use super::elementwise::read_i64;
use super::kernels::Family;
use super::{Arg, CudaBuffer, CudaDevice, Geo, scalar_arg};
use crate::tensor::{Layout, contiguous_strides};
use crate::{DeviceError, Tensor};

/// Copies the elements of `src` (any layout) to `dst` at `dst_layout` (same shape).
fn copy_into(
    dev: &CudaDevice,
    src: &Tensor,
    dst: &CudaBuffer,
    dst_layout: &Layout,
) -> Result<(), DeviceError> {
    let n = src.numel() as u64;
    if n == 0 {
        return Ok(());
    }
    let l = src.layout();
    let g = Geo::new(
        &l.shape,
        &[
            (&l.strides, l.offset),
            (&dst_layout.strides, dst_layout.offset),
        ],
    )
    .map_err(|m| dev.err("copy", m))?;
    let f = dev.function(Family::Movement, src.dtype(), "copy")?;
    dev.launch(
        &f,
        "copy",
        n,
        &[
            Arg::U64(dev.buf(src)?.ptr()),
            Arg::U64(dst.ptr()),
            Arg::Geo(g),
        ],
    )
}

/// A contiguous copy of `t`.
pub(super) fn copy(dev: &CudaDevice, t: &Tensor) -> Result<Tensor, DeviceError> {
    let out = dev.alloc("copy", t.dtype(), t.shape(), false)?;
    copy_into(dev, t, &out, &Layout::contiguous(t.shape()))?;
    Ok(Tensor::from_cuda(out, t.dtype(), t.shape()))
}

/// Reshape: a view of a contiguous tensor, else of a contiguous copy.
pub(super) fn reshape(
    dev: &CudaDevice,
    x: &Tensor,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    let base = if x.is_contiguous() {
        x.clone()
    } else {
        copy(dev, x)?
    };
    let offset = base.layout().offset;
    Ok(base.with_layout(Layout {
        shape: shape.iter().copied().collect(),
        strides: contiguous_strides(shape),
        offset,
    }))
}

/// Fills a buffer of `n` elements with `value` (converted to `dt`).
fn fill(
    dev: &CudaDevice,
    buf: &CudaBuffer,
    dt: DType,
    n: usize,
    value: f64,
) -> Result<(), DeviceError> {
    if n == 0 {
        return Ok(());
    }
    let f = dev.function(Family::Movement, dt, "fill")?;
    dev.launch(
        &f,
        "fill",
        n as u64,
        &[
            Arg::U64(buf.ptr()),
            Arg::U64(n as u64),
            scalar_arg(dt, value),
        ],
    )
}

/// Joins `inputs` along `axis`: each part is copied into its slab of the result.
pub(super) fn concat(
    dev: &CudaDevice,
    inputs: &[&Tensor],
    axis: usize,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    let dt = inputs[0].dtype();
    let out = dev.alloc("concat", dt, shape, false)?;
    let strides = contiguous_strides(shape);
    let mut at = 0usize;
    for p in inputs {
        let dst = Layout {
            shape: p.shape().iter().copied().collect(),
            strides: strides.clone(),
            offset: at * strides[axis] as usize,
        };
        copy_into(dev, p, &out, &dst)?;
        at += p.shape()[axis];
    }
    Ok(Tensor::from_cuda(out, dt, shape))
}

/// Pads every axis with `value`: a fill, then the input copied into the interior.
pub(super) fn pad(
    dev: &CudaDevice,
    x: &Tensor,
    pads: &[(usize, usize)],
    value: f64,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    let dt = x.dtype();
    let out = dev.alloc("pad", dt, shape, false)?;
    fill(dev, &out, dt, shape.iter().product(), value)?;
    let strides = contiguous_strides(shape);
    let offset = pads
        .iter()
        .zip(&strides)
        .map(|(&(before, _), &s)| before * s as usize)
        .sum();
    let dst = Layout {
        shape: x.shape().iter().copied().collect(),
        strides,
        offset,
    };
    copy_into(dev, x, &out, &dst)?;
    Ok(Tensor::from_cuda(out, dt, shape))
}

/// The indices of `idx`, checked and made non-negative on the host (the CPU's errors), then
/// uploaded as `i64`.
fn indices(
    dev: &CudaDevice,
    op: &'static str,
    idx: &Tensor,
    axis: usize,
    size: usize,
) -> Result<(CudaBuffer, usize), DeviceError> {
    let raw = read_i64(idx);
    let mut ids = Vec::with_capacity(raw.len());
    for i in raw {
        let j = if i < 0 { i + size as i64 } else { i };
        if !(0..size as i64).contains(&j) {
            return Err(DeviceError::IndexOutOfRange {
                op,
                index: i,
                axis,
                size,
            });
        }
        ids.push(j);
    }
    let n = ids.len();
    let buf = CudaBuffer::upload(&dev.stream, dev.ordinal, &crate::HostBuffer::I64(ids))?;
    Ok((buf, n))
}

fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// NumPy's `take(x, idx, axis)`.
pub(super) fn gather(
    dev: &CudaDevice,
    x: &Tensor,
    idx: &Tensor,
    axis: usize,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    let (outer, size, inner) = around(x.shape(), axis);
    let (ids, nidx) = indices(dev, "gather", idx, axis, size)?;
    let xc = dev.dense(x)?;
    let out = dev.alloc("gather", x.dtype(), shape, false)?;
    let n = (outer * nidx * inner) as u64;
    if n > 0 {
        let f = dev.function(Family::Movement, x.dtype(), "gather")?;
        dev.launch(
            &f,
            "gather",
            n,
            &[
                Arg::U64(dev.buf(&xc)?.ptr()),
                Arg::U64(ids.ptr()),
                Arg::U64(out.ptr()),
                Arg::U64(outer as u64),
                Arg::U64(size as u64),
                Arg::U64(nidx as u64),
                Arg::U64(inner as u64),
            ],
        )?;
    }
    Ok(Tensor::from_cuda(out, x.dtype(), shape))
}

/// `x` with each slice of `upd` added at its index along `axis` (atomic adds).
pub(super) fn scatter_add(
    dev: &CudaDevice,
    x: &Tensor,
    idx: &Tensor,
    upd: &Tensor,
    axis: usize,
) -> Result<Tensor, DeviceError> {
    let (outer, size, inner) = around(x.shape(), axis);
    let (ids, nidx) = indices(dev, "scatter_add", idx, axis, size)?;
    let out = copy(dev, x)?;
    let uc = dev.dense(upd)?;
    let n = (outer * nidx * inner) as u64;
    if n > 0 {
        let f = dev.function(Family::Movement, x.dtype(), "scatter_add")?;
        dev.launch(
            &f,
            "scatter_add",
            n,
            &[
                Arg::U64(dev.buf(&out)?.ptr()),
                Arg::U64(ids.ptr()),
                Arg::U64(dev.buf(&uc)?.ptr()),
                Arg::U64(outer as u64),
                Arg::U64(size as u64),
                Arg::U64(nidx as u64),
                Arg::U64(inner as u64),
            ],
        )?;
    }
    Ok(out)
}

/// Each element is its index along `axis`.
pub(super) fn iota(
    dev: &CudaDevice,
    shape: &[usize],
    axis: usize,
    dt: DType,
) -> Result<Tensor, DeviceError> {
    let out = dev.alloc("iota", dt, shape, false)?;
    let n: usize = shape.iter().product();
    if n > 0 {
        let inner: usize = shape[axis + 1..].iter().product();
        let f = dev.function(Family::Movement, dt, "iota")?;
        dev.launch(
            &f,
            "iota",
            n as u64,
            &[
                Arg::U64(out.ptr()),
                Arg::U64(n as u64),
                Arg::U64(inner.max(1) as u64),
                Arg::U64(shape[axis].max(1) as u64),
            ],
        )?;
    }
    Ok(Tensor::from_cuda(out, dt, shape))
}

/// Every element `value` converted to `dt`.
pub(super) fn full(
    dev: &CudaDevice,
    shape: &[usize],
    dt: DType,
    value: f64,
) -> Result<Tensor, DeviceError> {
    let out = dev.alloc("full", dt, shape, false)?;
    fill(dev, &out, dt, shape.iter().product(), value)?;
    Ok(Tensor::from_cuda(out, dt, shape))
}

/// Random numbers under `key = [seed, offset]` (read from the device: two elements), the
/// same stream as the CPU's (`cpu::rng`).
pub(super) fn random(
    dev: &CudaDevice,
    op: RandomOp,
    key: &Tensor,
    shape: &[usize],
    dt: DType,
) -> Result<Tensor, DeviceError> {
    let k = read_i64(key);
    let (seed, offset) = (
        k.first().copied().unwrap_or(0) as u64,
        k.get(1).copied().unwrap_or(0) as u64,
    );
    let out = dev.alloc(op.name(), dt, shape, false)?;
    let n: usize = shape.iter().product();
    if n > 0 {
        let f = dev.function(Family::Random, dt, op.name())?;
        dev.launch(
            &f,
            op.name(),
            n as u64,
            &[
                Arg::U64(out.ptr()),
                Arg::U64(n as u64),
                Arg::U64(seed),
                Arg::U64(offset),
            ],
        )?;
    }
    Ok(Tensor::from_cuda(out, dt, shape))
}
