//! Movement kernels that need new memory: concat, pad, gather and scatter-add. (Reshape,
//! transpose, broadcast and slice are views; see `Tensor`.)

use crate::{DeviceError, Elem, HostBuffer, Tensor, with_elem};

use super::elementwise::Num;

/// Splits a shape around `axis` into (outer, size, inner) element counts.
fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// Joins `inputs` along `axis` into `shape`.
pub(crate) fn concat(
    inputs: &[&Tensor],
    axis: usize,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    let dtype = inputs[0].dtype();
    with_elem!(dtype, T => {
        let (outer, _, inner) = around(shape, axis);
        let parts: Vec<Tensor> = inputs.iter().map(|t| t.contiguous()).collect();
        let mut out = crate::buffer::zeroed::<T>(shape.iter().product());
        let mut at = 0;
        for o in 0..outer {
            for p in &parts {
                let run = p.shape()[axis] * inner;
                let part = &p.as_slice::<T>().unwrap_or(&[])[o * run..(o + 1) * run];
                out[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
        }
        Ok(Tensor::from_host_unchecked(T::into_buffer(out), shape))
    }, else Err(unsupported("concat", dtype)))
}

fn unsupported(op: &'static str, dtype: ir::DType) -> DeviceError {
    DeviceError::UnsupportedDType {
        op,
        dtype,
        device: crate::DeviceId::Cpu,
    }
}

/// Pads every axis with `value`.
pub(crate) fn pad(
    x: &Tensor,
    pads: &[(usize, usize)],
    value: f64,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    with_elem!(x.dtype(), T => {
        let xc = x.contiguous();
        let src = xc.as_slice::<T>().unwrap_or(&[]);
        let mut out = crate::buffer::zeroed::<T>(shape.iter().product());
        if T::from_f64(value) != T::default() {
            out.fill(T::from_f64(value));
        }
        if !src.is_empty() {
            let out_strides = crate::tensor::contiguous_strides(shape);
            let rank = shape.len();
            let last = x.shape().last().copied().unwrap_or(1);
            // Copy each innermost row of the input to its place in the output.
            let rows = src.len() / last.max(1);
            let mut idx = vec![0usize; rank.saturating_sub(1)];
            for r in 0..rows {
                let mut off: isize = 0;
                for (ax, &i) in idx.iter().enumerate() {
                    off += (i + pads[ax].0) as isize * out_strides[ax];
                }
                if rank > 0 {
                    off += pads[rank - 1].0 as isize;
                }
                let off = off as usize;
                out[off..off + last].copy_from_slice(&src[r * last..(r + 1) * last]);
                for ax in (0..idx.len()).rev() {
                    idx[ax] += 1;
                    if idx[ax] < x.shape()[ax] {
                        break;
                    }
                    idx[ax] = 0;
                }
            }
        }
        Ok(Tensor::from_host_unchecked(T::into_buffer(out), shape))
    }, else Err(unsupported("pad", x.dtype())))
}

/// The indices of an integer tensor as in-range `usize`s (negatives count from the end).
fn indices(
    op: &'static str,
    idx: &Tensor,
    axis: usize,
    size: usize,
) -> Result<Vec<usize>, DeviceError> {
    let raw: Vec<i64> = match idx.dtype() {
        ir::DType::I32 => idx
            .to_vec::<i32>()
            .unwrap_or_default()
            .into_iter()
            .map(i64::from)
            .collect(),
        _ => idx.to_vec::<i64>().unwrap_or_default(),
    };
    raw.into_iter()
        .map(|i| {
            let j = if i < 0 { i + size as i64 } else { i };
            if (0..size as i64).contains(&j) {
                Ok(j as usize)
            } else {
                Err(DeviceError::IndexOutOfRange {
                    op,
                    index: i,
                    axis,
                    size,
                })
            }
        })
        .collect()
}

/// NumPy's `take(x, idx, axis)`.
pub(crate) fn gather(
    x: &Tensor,
    idx: &Tensor,
    axis: usize,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    let (outer, size, inner) = around(x.shape(), axis);
    let ids = indices("gather", idx, axis, size)?;
    with_elem!(x.dtype(), T => {
        let xc = x.contiguous();
        let src = xc.as_slice::<T>().unwrap_or(&[]);
        let mut out = crate::buffer::zeroed::<T>(shape.iter().product());
        let mut at = 0;
        for o in 0..outer {
            for &j in &ids {
                let start = (o * size + j) * inner;
                let part = &src[start..start + inner];
                out[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
        }
        Ok(Tensor::from_host_unchecked(T::into_buffer(out), shape))
    }, else Err(unsupported("gather", x.dtype())))
}

/// `x` with each slice of `upd` added at its index along `axis`, in index order (so the
/// result is the same on every run).
pub(crate) fn scatter_add(
    x: &Tensor,
    idx: &Tensor,
    upd: &Tensor,
    axis: usize,
) -> Result<Tensor, DeviceError> {
    let (outer, size, inner) = around(x.shape(), axis);
    let ids = indices("scatter_add", idx, axis, size)?;
    match x.dtype() {
        ir::DType::F32 => Ok(scatter_typed::<f32>(x, upd, &ids, outer, size, inner)),
        ir::DType::F64 => Ok(scatter_typed::<f64>(x, upd, &ids, outer, size, inner)),
        ir::DType::I32 => Ok(scatter_typed::<i32>(x, upd, &ids, outer, size, inner)),
        ir::DType::I64 => Ok(scatter_typed::<i64>(x, upd, &ids, outer, size, inner)),
        dt => Err(unsupported("scatter_add", dt)),
    }
}

fn scatter_typed<T: Num>(
    x: &Tensor,
    upd: &Tensor,
    ids: &[usize],
    outer: usize,
    size: usize,
    inner: usize,
) -> Tensor {
    let mut out = x.to_vec::<T>().unwrap_or_default();
    add_updates(&mut out, upd, ids, outer, size, inner);
    Tensor::from_host_unchecked(T::into_buffer(out), x.shape())
}

/// `scatter_add` written into the buffer of `inputs[0]` (the base), which dies at this node
/// and which nobody else holds, instead of into a copy of it: the same additions in the
/// same order, so the same values. `None`, having written nothing, when the base's buffer
/// cannot be had or an index is out of range (the allocating kernel then reports it).
pub(crate) fn scatter_add_in_place(inputs: &mut [Tensor], axis: usize) -> Option<Tensor> {
    let [x, idx, upd] = inputs else {
        return None;
    };
    let (outer, size, inner) = around(x.shape(), axis);
    let ids = indices("scatter_add", idx, axis, size).ok()?;
    let buf = x.unique_host_mut()?;
    match buf {
        HostBuffer::F32(v) => add_updates(v, upd, &ids, outer, size, inner),
        HostBuffer::F64(v) => add_updates(v, upd, &ids, outer, size, inner),
        HostBuffer::I32(v) => add_updates(v, upd, &ids, outer, size, inner),
        HostBuffer::I64(v) => add_updates(v, upd, &ids, outer, size, inner),
        HostBuffer::Bool(_) => return None,
    }
    Some(x.reborn())
}

/// Adds the rows of `upd` into `out` (the base's elements in C order) at the indices `ids`
/// along the axis, in index order.
fn add_updates<T: Num>(
    out: &mut [T],
    upd: &Tensor,
    ids: &[usize],
    outer: usize,
    size: usize,
    inner: usize,
) {
    let u = upd.contiguous();
    let src = u.as_slice::<T>().unwrap_or(&[]);
    for o in 0..outer {
        for (k, &j) in ids.iter().enumerate() {
            let dst = &mut out[(o * size + j) * inner..][..inner];
            let from = &src[(o * ids.len() + k) * inner..][..inner];
            for (d, &v) in dst.iter_mut().zip(from) {
                *d = d.add(v);
            }
        }
    }
}
