//! Batched matrix products: cuBLAS strided-batched GEMM for `f32`/`f64`, a plain kernel for
//! integers.
//!
//! cuBLAS is column-major; a row-major `C = A·B` is computed as `Cᵀ = Bᵀ·Aᵀ`, which reads
//! the row-major buffers as they are. Each operand is given to cuBLAS in place when its
//! matrices are row- or column-major (a transposed view becomes a transpose flag) and its
//! batch dims fold into one stride (zero for a broadcast operand); otherwise it is copied
//! into a contiguous batch first.

use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use ir::DType;

use super::kernels::Family;
use super::{Arg, CudaData, CudaDevice};
use crate::{DeviceError, Tensor};

/// How cuBLAS reads one operand: its transpose flag, leading dimension, batch stride and
/// first element.
#[derive(Clone, Copy, Debug)]
struct Operand {
    /// The column-major reading of the row-major matrix is its transpose: no flag needed.
    row_major: bool,
    ld: i64,
    batch_stride: i64,
    offset: usize,
}

/// How a `rows × cols` matrix with these strides can be read, if it can in place.
fn blas_layout(rs: isize, cs: isize, rows: usize, cols: usize) -> Option<(bool, i64)> {
    if (cs == 1 || cols <= 1) && (rows <= 1 || rs >= cols.max(1) as isize) {
        return Some((
            true,
            if rows <= 1 {
                cols.max(1) as i64
            } else {
                rs as i64
            },
        ));
    }
    if (rs == 1 || rows <= 1) && (cols <= 1 || cs >= rows.max(1) as isize) {
        return Some((
            false,
            if cols <= 1 {
                rows.max(1) as i64
            } else {
                cs as i64
            },
        ));
    }
    None
}

/// One stride that walks every batch dim of a view, if there is one.
fn batch_stride(shape: &[usize], strides: &[isize]) -> Option<i64> {
    let dims: Vec<(usize, isize)> = shape
        .iter()
        .zip(strides)
        .filter(|(d, _)| **d > 1)
        .map(|(&d, &s)| (d, s))
        .collect();
    let Some(&(_, inner)) = dims.last() else {
        return Some(0);
    };
    if inner < 0 {
        return None;
    }
    for w in dims.windows(2) {
        if w[0].1 != w[1].1 * w[1].0 as isize {
            return None;
        }
    }
    Some(inner as i64)
}

fn operand(t: &Tensor) -> Option<Operand> {
    let l = t.layout();
    let r = l.shape.len();
    let (row_major, ld) = blas_layout(
        l.strides[r - 2],
        l.strides[r - 1],
        l.shape[r - 2],
        l.shape[r - 1],
    )?;
    let batch_stride = batch_stride(&l.shape[..r - 2], &l.strides[..r - 2])?;
    Some(Operand {
        row_major,
        ld,
        batch_stride,
        offset: l.offset,
    })
}

/// `a @ b` with NumPy batching; `shape` is `[..batch, m, n]`.
pub(super) fn matmul(
    dev: &CudaDevice,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Result<Tensor, DeviceError> {
    let r = shape.len();
    let (m, n) = (shape[r - 2], shape[r - 1]);
    let k = a.shape()[a.rank() - 1];
    let batch: usize = shape[..r - 2].iter().product();
    let mut a_full = shape[..r - 2].to_vec();
    a_full.extend([m, k]);
    let mut b_full = shape[..r - 2].to_vec();
    b_full.extend([k, n]);
    let (av, bv) = (a.broadcast_view(&a_full), b.broadcast_view(&b_full));
    let dt = a.dtype();
    let zeroed = k == 0;
    let mut out = dev.alloc("matmul", dt, shape, zeroed)?;
    if m * n * batch == 0 || k == 0 {
        return Ok(Tensor::from_cuda(out, dt, shape));
    }
    if !matches!(dt, DType::F32 | DType::F64) {
        let (ac, bc) = (dev.dense(&av)?, dev.dense(&bv)?);
        let f = dev.function(Family::Movement, dt, "matmul_naive")?;
        dev.launch(
            &f,
            "matmul",
            (batch * m * n) as u64,
            &[
                Arg::U64(dev.buf(&ac)?.ptr()),
                Arg::U64(dev.buf(&bc)?.ptr()),
                Arg::U64(out.ptr()),
                Arg::U64(batch as u64),
                Arg::U64(m as u64),
                Arg::U64(n as u64),
                Arg::U64(k as u64),
            ],
        )?;
        return Ok(Tensor::from_cuda(out, dt, shape));
    }
    // In place where cuBLAS can read the operand, else a contiguous copy (always readable).
    let place = |v: &Tensor| -> Result<(Tensor, Operand), DeviceError> {
        if let Some(o) = operand(v) {
            return Ok((v.clone(), o));
        }
        let c = dev.dense(v)?;
        let o = operand(&c)
            .ok_or_else(|| dev.err("matmul", "a contiguous operand is not BLAS-readable"))?;
        Ok((c, o))
    };
    let (at, ao) = place(&av)?;
    let (bt, bo) = place(&bv)?;
    let fits = |v: i64| {
        i32::try_from(v)
            .map_err(|_| dev.err("matmul", format!("{v} is over cuBLAS's 32-bit sizes")))
    };
    // Cᵀ (n × m, ld n) = op(B-buffer) (n × k) · op(A-buffer) (k × m).
    let op = |row_major: bool| {
        if row_major {
            cublasOperation_t::CUBLAS_OP_N
        } else {
            cublasOperation_t::CUBLAS_OP_T
        }
    };
    let blas = blas(dev)?;
    // The math mode is a field of the handle, read at each call: setting it here makes a
    // change of `set_tf32` take effect at the next product. f64 products ignore it.
    let mode = if dt == DType::F32 && super::tf32() {
        cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
    } else {
        cublasMath_t::CUBLAS_DEFAULT_MATH
    };
    // SAFETY: the handle is alive (held by `blas`) and the mode is a valid enumerator.
    unsafe { cudarc::cublas::sys::cublasSetMathMode(*blas.handle(), mode) }
        .result()
        .map_err(|e| dev.err("matmul", format!("cuBLAS refused the math mode: {e:?}")))?;
    macro_rules! gemm {
        ($t:ty, $v:ident) => {{
            let (CudaData::$v(abuf), CudaData::$v(bbuf), CudaData::$v(cbuf)) =
                (&dev.buf(&at)?.data, &dev.buf(&bt)?.data, &mut out.data)
            else {
                return Err(dev.err("matmul", "operand buffers of another dtype"));
            };
            let cfg = StridedBatchedConfig::<$t> {
                gemm: GemmConfig {
                    transa: op(bo.row_major),
                    transb: op(ao.row_major),
                    m: fits(n as i64)?,
                    n: fits(m as i64)?,
                    k: fits(k as i64)?,
                    alpha: 1.0,
                    lda: fits(bo.ld)?,
                    ldb: fits(ao.ld)?,
                    beta: 0.0,
                    ldc: fits(n as i64)?,
                },
                batch_size: fits(batch as i64)?,
                stride_a: bo.batch_stride,
                stride_b: ao.batch_stride,
                stride_c: (m * n) as i64,
            };
            let a_view = abuf
                .try_slice(ao.offset..)
                .ok_or_else(|| dev.err("matmul", "operand offset outside its buffer"))?;
            let b_view = bbuf
                .try_slice(bo.offset..)
                .ok_or_else(|| dev.err("matmul", "operand offset outside its buffer"))?;
            // SAFETY: the sizes, leading dimensions and batch strides describe matrices that
            // lie inside the operand views (checked by `operand`), and C has batch·m·n
            // elements.
            unsafe { blas.gemm_strided_batched(cfg, &b_view, &a_view, cbuf) }
                .map_err(|e| dev.err("matmul", format!("cuBLAS failed: {e:?}")))?;
        }};
    }
    match dt {
        DType::F32 => gemm!(f32, F32),
        _ => gemm!(f64, F64),
    }
    Ok(Tensor::from_cuda(out, dt, shape))
}

/// The device's cuBLAS handle, made on first use.
fn blas(dev: &CudaDevice) -> Result<std::sync::Arc<CudaBlas>, DeviceError> {
    let mut slot = dev.blas.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(b) = slot.as_ref() {
        return Ok(b.clone());
    }
    let b = std::sync::Arc::new(
        CudaBlas::new(dev.stream.clone())
            .map_err(|e| dev.err("matmul", format!("cuBLAS could not start: {e:?}")))?,
    );
    *slot = Some(b.clone());
    Ok(b)
}
