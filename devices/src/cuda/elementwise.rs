//! Elementwise primitives: unary, binary and comparison ops with NumPy broadcasting read
//! through strides, `select`, and casts.

use ir::{BinaryOp, CmpOp, DType, UnaryOp};

use super::kernels::Family;
use super::{Arg, CudaDevice, Geo};
use crate::{DeviceError, Elem, Tensor};

/// Which kernel an elementwise primitive runs: its module (family and operand dtype), its
/// name, and the primitive's name for messages.
struct Kernel<'a> {
    fam: Family,
    dt: DType,
    name: &'a str,
    op: &'static str,
}

/// Runs an elementwise kernel over `shape` with broadcast operands, into a new contiguous
/// tensor of `out_dt`.
fn map(
    dev: &CudaDevice,
    k: Kernel<'_>,
    operands: &[&Tensor],
    shape: &[usize],
    out_dt: DType,
) -> Result<Tensor, DeviceError> {
    let Kernel { fam, dt, name, op } = k;
    let views: Vec<Tensor> = operands.iter().map(|t| t.broadcast_view(shape)).collect();
    let out = dev.alloc(op, out_dt, shape, false)?;
    let n: u64 = shape.iter().product::<usize>() as u64;
    if n > 0 {
        let layouts: Vec<(&[isize], usize)> = views
            .iter()
            .map(|v| (&v.layout().strides[..], v.layout().offset))
            .collect();
        let g = Geo::new(shape, &layouts).map_err(|m| dev.err(op, m))?;
        let f = dev.function(fam, dt, name)?;
        let mut args: Vec<Arg> = Vec::with_capacity(operands.len() + 2);
        for t in operands {
            args.push(Arg::U64(dev.buf(t)?.ptr()));
        }
        args.push(Arg::U64(out.ptr()));
        args.push(Arg::Geo(g));
        dev.launch(&f, op, n, &args)?;
    }
    Ok(Tensor::from_cuda(out, out_dt, shape))
}

/// A unary op; `out_dt` is the inferred result dtype.
pub(super) fn unary(
    dev: &CudaDevice,
    op: UnaryOp,
    x: &Tensor,
    out_dt: DType,
) -> Result<Tensor, DeviceError> {
    map(
        dev,
        Kernel {
            fam: Family::Unary,
            dt: x.dtype(),
            name: &format!("unary_{}", op.name()),
            op: op.name(),
        },
        &[x],
        x.shape(),
        out_dt,
    )
}

/// Binary arithmetic. Integer `rem`, `floor_div` and `pow` first check the divisor or
/// exponent on the host, so a zero divisor or a negative exponent is the CPU's error.
pub(super) fn binary(
    dev: &CudaDevice,
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    let dt = a.dtype();
    let checked = matches!(op, BinaryOp::Rem | BinaryOp::FloorDiv | BinaryOp::Pow);
    if dt.is_int() && checked && shape.iter().product::<usize>() > 0 {
        let rhs: Vec<i64> = match dt {
            DType::I32 => b
                .to_vec::<i32>()
                .unwrap_or_default()
                .into_iter()
                .map(i64::from)
                .collect(),
            _ => b.to_vec::<i64>().unwrap_or_default(),
        };
        match op {
            BinaryOp::Rem | BinaryOp::FloorDiv if rhs.contains(&0) => {
                return Err(DeviceError::DivisionByZero { op: op.name() });
            }
            BinaryOp::Pow => {
                if let Some(&e) = rhs.iter().find(|&&v| v < 0) {
                    return Err(DeviceError::NegativeIntPower {
                        op: op.name(),
                        exponent: e,
                    });
                }
            }
            _ => {}
        }
    }
    map(
        dev,
        Kernel {
            fam: Family::Binary,
            dt,
            name: &format!("binary_{}", op.name()),
            op: op.name(),
        },
        &[a, b],
        shape,
        dt,
    )
}

/// A comparison, giving `bool`.
pub(super) fn compare(
    dev: &CudaDevice,
    op: CmpOp,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    map(
        dev,
        Kernel {
            fam: Family::Binary,
            dt: a.dtype(),
            name: &format!("compare_{}", op.name()),
            op: op.name(),
        },
        &[a, b],
        shape,
        DType::Bool,
    )
}

/// `select(c, a, b)`.
pub(super) fn select(
    dev: &CudaDevice,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    map(
        dev,
        Kernel {
            fam: Family::Movement,
            dt: a.dtype(),
            name: "select",
            op: "select",
        },
        &[c, a, b],
        shape,
        a.dtype(),
    )
}

/// Converts `x` to `dtype` (`x` itself when it already has it).
pub(super) fn cast(dev: &CudaDevice, x: &Tensor, dtype: DType) -> Result<Tensor, DeviceError> {
    if x.dtype() == dtype {
        return Ok(x.clone());
    }
    map(
        dev,
        Kernel {
            fam: Family::Cast,
            dt: x.dtype(),
            name: &format!("cast_to_{}", dtype.name()),
            op: "cast",
        },
        &[x],
        x.shape(),
        dtype,
    )
}

/// The elements of a small device tensor as `i64` (for indices and keys read on the host).
pub(super) fn read_i64(t: &Tensor) -> Vec<i64> {
    match t.dtype() {
        DType::I32 => t
            .to_vec::<i32>()
            .unwrap_or_default()
            .into_iter()
            .map(i64::from)
            .collect(),
        DType::I64 => t.to_vec::<i64>().unwrap_or_default(),
        _ => t
            .to_f64_vec()
            .unwrap_or_default()
            .into_iter()
            .map(i64::from_f64)
            .collect(),
    }
}
