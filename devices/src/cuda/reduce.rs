//! Reductions over any axes (one block per output element) and arg-reductions along one
//! axis (one thread per output element, the CPU's tie rule).

use ir::{ArgOp, DType, ReduceOp};

use super::elementwise::cast;
use super::kernels::{BLOCK, Family};
use super::{Arg, CudaDevice, Geo};
use crate::{DeviceError, Tensor};

/// The geometry of `x`'s kept axes and of its reduced axes.
fn split(x: &Tensor, axes: &[usize]) -> Result<(Geo, Geo), String> {
    let l = x.layout();
    let (mut ks, mut kst, mut rs, mut rst) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (d, (&size, &st)) in l.shape.iter().zip(&l.strides).enumerate() {
        if axes.contains(&d) {
            rs.push(size);
            rst.push(st);
        } else {
            ks.push(size);
            kst.push(st);
        }
    }
    Ok((
        Geo::new(&ks, &[(&kst, l.offset)])?,
        Geo::new(&rs, &[(&rst, 0)])?,
    ))
}

/// Reduction of `x` over `axes`; `shape` is the result's (with or without kept dims: the
/// elements are the same).
pub(super) fn reduce(
    dev: &CudaDevice,
    op: ReduceOp,
    x: &Tensor,
    axes: &[usize],
    out_dtype: DType,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    // As on the CPU: bools are counted (sum, prod) or any/all-ed (max, min) in i64.
    if x.dtype() == DType::Bool {
        let wide = cast(dev, x, DType::I64)?;
        let r = reduce(dev, op, &wide, axes, DType::I64, shape)?;
        return if out_dtype == DType::Bool {
            cast(dev, &r, DType::Bool)
        } else {
            Ok(r)
        };
    }
    let (kg, rg) = split(x, axes).map_err(|m| dev.err(op.name(), m))?;
    let out = dev.alloc(op.name(), out_dtype, shape, false)?;
    let n_out = shape.iter().product::<usize>() as u64;
    if n_out > 0 {
        let f = dev.function(Family::Reduce, x.dtype(), &format!("reduce_{}", op.name()))?;
        let blocks = n_out.min(65_535) as u32;
        dev.launch_blocks(
            &f,
            op.name(),
            blocks,
            &[
                Arg::U64(dev.buf(x)?.ptr()),
                Arg::U64(out.ptr()),
                Arg::Geo(kg),
                Arg::Geo(rg),
            ],
        )?;
    }
    debug_assert!(BLOCK.is_power_of_two());
    Ok(Tensor::from_cuda(out, out_dtype, shape))
}

/// Index of the first extreme along `axis`, as `i64`.
pub(super) fn arg_reduce(
    dev: &CudaDevice,
    op: ArgOp,
    x: &Tensor,
    axis: usize,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    let (kg, _) = split(x, &[axis]).map_err(|m| dev.err(op.name(), m))?;
    let l = x.layout();
    let out = dev.alloc(op.name(), DType::I64, shape, false)?;
    let n_out = shape.iter().product::<usize>() as u64;
    if n_out > 0 {
        let f = dev.function(Family::Reduce, x.dtype(), op.name())?;
        dev.launch(
            &f,
            op.name(),
            n_out,
            &[
                Arg::U64(dev.buf(x)?.ptr()),
                Arg::U64(out.ptr()),
                Arg::Geo(kg),
                Arg::I64(l.strides[axis] as i64),
                Arg::U64(l.shape[axis] as u64),
            ],
        )?;
    }
    Ok(Tensor::from_cuda(out, DType::I64, shape))
}
