//! Batched matrix products.
//!
//! Floats go to the `gemm` crate, which takes arbitrary row and column strides: transposed
//! and broadcast operands are multiplied in place, never copied. Large `f32` products on
//! AVX2 + FMA CPUs without AVX-512 go to our own blocked GEMM instead (`super::gemm`), which
//! packs its operands from any strides. Integer matrices (rare: index arithmetic, counting)
//! use a plain loop.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::elementwise::Num;
use crate::{DeviceError, Elem, Tensor};

/// Below this many multiply-adds per matrix, one matrix is not worth splitting over threads.
/// A product this size takes about 60 µs on one core; waking a sleeping worker and joining
/// it costs tens of µs on a shared VM, so the MLP-sized products of eager training (64 × 128
/// by 128 × 128, 1M multiply-adds) ran slower on two threads than on one at 48³ here, and
/// 128 × 256 by 256 × 128 (4M) ran 1.2–1.5× faster on two.
const PAR_MIN_MACS: usize = 128 * 128 * 128;

/// A matrix product larger than this many multiply-adds is given to the `gemm` crate in
/// row blocks of about this size, with a look at the cancellation flag between blocks, so
/// that Ctrl-C stops it within a fraction of a second (`crate::cancel`). A block this large
/// still runs at full speed: packing B again per block costs under one part in a hundred.
const CANCEL_MACS: usize = 1 << 30;

/// `a @ b` with NumPy batching; `shape` is the inferred output shape `[..batch, m, n]`.
pub(crate) fn matmul(a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Tensor, DeviceError> {
    match a.dtype() {
        ir::DType::F32 => Ok(f32_matmul(a, b, shape)),
        ir::DType::F64 => Ok(float_matmul::<f64>(a, b, shape)),
        ir::DType::I32 => Ok(int_matmul::<i32>(a, b, shape)),
        ir::DType::I64 => Ok(int_matmul::<i64>(a, b, shape)),
        dt => Err(DeviceError::UnsupportedDType {
            op: "matmul",
            dtype: dt,
            device: crate::DeviceId::Cpu,
        }),
    }
}

/// The operands broadcast over the output's batch dims, with per-matrix offsets.
struct Batched {
    m: usize,
    n: usize,
    k: usize,
    a_offsets: Vec<usize>,
    b_offsets: Vec<usize>,
    a_rs: isize,
    a_cs: isize,
    b_rs: isize,
    b_cs: isize,
}

impl Batched {
    fn new(a: &Tensor, b: &Tensor, shape: &[usize]) -> (Batched, Tensor, Tensor) {
        let r = shape.len();
        let (m, n) = (shape[r - 2], shape[r - 1]);
        let k = a.shape()[a.rank() - 1];
        let batch = &shape[..r - 2];
        let mut a_full = batch.to_vec();
        a_full.extend([m, k]);
        let mut b_full = batch.to_vec();
        b_full.extend([k, n]);
        let (av, bv) = (a.broadcast_view(&a_full), b.broadcast_view(&b_full));
        let offsets = |t: &Tensor| {
            let l = t.layout();
            let mut offs = vec![l.offset as isize];
            for (ax, &d) in batch.iter().enumerate() {
                let st = l.strides[ax];
                offs = offs
                    .iter()
                    .flat_map(|&o| (0..d).map(move |i| o + i as isize * st))
                    .collect();
            }
            offs.into_iter().map(|o| o as usize).collect::<Vec<_>>()
        };
        let (al, bl) = (av.layout(), bv.layout());
        let plan = Batched {
            m,
            n,
            k,
            a_offsets: offsets(&av),
            b_offsets: offsets(&bv),
            a_rs: al.strides[r - 2],
            a_cs: al.strides[r - 1],
            b_rs: bl.strides[r - 2],
            b_cs: bl.strides[r - 1],
        };
        (plan, av, bv)
    }
}

/// `f32` products: our blocked GEMM where it is the faster one, else the `gemm` crate.
fn f32_matmul(a: &Tensor, b: &Tensor, shape: &[usize]) -> Tensor {
    #[cfg(target_arch = "x86_64")]
    {
        let r = shape.len();
        let (m, n, k) = (shape[r - 2], shape[r - 1], a.shape()[a.rank() - 1]);
        // Whether an operand's rows are contiguous; a vector operand counts as contiguous.
        let rows = |t: &Tensor| t.rank() < 2 || t.layout().strides[t.rank() - 1] == 1;
        if let Some(isa) = super::gemm::choose(m, n, k, rows(a), rows(b)) {
            return blocked_matmul(isa, a, b, shape);
        }
    }
    float_matmul::<f32>(a, b, shape)
}

/// Batched `f32` matmul on our blocked GEMM. Every matrix that reaches it is large enough to
/// be split over all threads on its own, so the batch runs one matrix after another.
#[cfg(target_arch = "x86_64")]
fn blocked_matmul(isa: super::gemm::Isa, a: &Tensor, b: &Tensor, shape: &[usize]) -> Tensor {
    use super::gemm::{MatRef, Product, sgemm};
    let (p, av, bv) = Batched::new(a, b, shape);
    let (abuf, bbuf) = (
        av.buffer::<f32>().unwrap_or(&[]),
        bv.buffer::<f32>().unwrap_or(&[]),
    );
    let mut out = crate::buffer::zeroed::<f32>(shape.iter().product());
    let mn = p.m * p.n;
    if mn > 0 {
        for (i, dst) in out.chunks_mut(mn).enumerate() {
            // After Ctrl-C the matrices left stay zero; `CpuDevice::exec` discards them.
            if crate::cancel::requested() {
                break;
            }
            let a = MatRef {
                data: abuf,
                offset: p.a_offsets[i],
                rs: p.a_rs,
                cs: p.a_cs,
            };
            let b = MatRef {
                data: bbuf,
                offset: p.b_offsets[i],
                rs: p.b_rs,
                cs: p.b_cs,
            };
            let prod = Product {
                m: p.m,
                n: p.n,
                k: p.k,
                a,
                b,
            };
            sgemm(isa, isa.blocking(), &prod, dst, true);
        }
    }
    Tensor::from_host_unchecked(f32::into_buffer(out), shape)
}

fn float_matmul<T: Elem + Num>(a: &Tensor, b: &Tensor, shape: &[usize]) -> Tensor {
    let (p, av, bv) = Batched::new(a, b, shape);
    let (abuf, bbuf) = (
        av.buffer::<T>().unwrap_or(&[]),
        bv.buffer::<T>().unwrap_or(&[]),
    );
    let mn = p.m * p.n;
    let total: usize = shape.iter().product();
    if mn == 0 || p.k == 0 {
        let out = crate::buffer::zeroed::<T>(total);
        return Tensor::from_host_unchecked(T::into_buffer(out), shape);
    }
    let macs = mn * p.k;
    let one = T::from_f64(1.0);
    // Rows `rows` of matrix `i` of the batch into `dst`, their contiguous part of C. The
    // `gemm` crate writes every element of `dst` without reading it (`read_dst` is false).
    let run_rows = |i: usize, rows: std::ops::Range<usize>, dst: &mut [MaybeUninit<T>], par| {
        // SAFETY: the offsets and strides come from layouts validated against these buffers
        // (every element of each [m, k] / [k, n] view lies inside its buffer, so row
        // `rows.start` of A does too), `dst` is an exclusive, contiguous block of
        // `rows.len()` rows of n, and the inputs are immutable while we read them.
        unsafe {
            gemm::gemm(
                rows.len(),
                p.n,
                p.k,
                dst.as_mut_ptr().cast::<T>(),
                1,
                p.n as isize,
                false,
                abuf.as_ptr()
                    .add(p.a_offsets[i])
                    .offset(rows.start as isize * p.a_rs),
                p.a_cs,
                p.a_rs,
                bbuf.as_ptr().add(p.b_offsets[i]),
                p.b_cs,
                p.b_rs,
                T::default(),
                one,
                false,
                false,
                false,
                par,
            )
        }
    };
    let run = |i: usize, dst: &mut [MaybeUninit<T>], par: gemm::Parallelism| {
        run_rows(i, 0..p.m, dst, par)
    };
    let batches = p.a_offsets.len();
    if batches * macs < PAR_MIN_MACS {
        // Small products run to the end (no Ctrl-C check), so every element is written and
        // the result needs no clearing first: at 64³ clearing it was a tenth of the call.
        let mut out = crate::buffer::unfilled::<T>(total);
        for (i, dst) in out.spare_capacity_mut()[..total].chunks_mut(mn).enumerate() {
            run(i, dst, gemm::Parallelism::None);
        }
        // SAFETY: the loop above wrote all `total` elements: `batches` matrices of `mn`.
        unsafe { out.set_len(total) };
        return Tensor::from_host_unchecked(T::into_buffer(out), shape);
    }
    let mut out = crate::buffer::zeroed::<T>(total);
    let uninit = |dst: &mut [T]| -> &mut [MaybeUninit<T>] {
        // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the kernel only writes `T`s.
        unsafe { &mut *(std::ptr::from_mut(dst) as *mut [MaybeUninit<T>]) }
    };
    if macs >= PAR_MIN_MACS && (batches == 1 || macs >= 4 * PAR_MIN_MACS) {
        let threads = gemm::Parallelism::Rayon(rayon::current_num_threads());
        let block_rows = (CANCEL_MACS / (p.n * p.k)).max(16).min(p.m);
        // After Ctrl-C the blocks left stay zero; `CpuDevice::exec` discards the result.
        'batch: for (i, dst) in out.chunks_mut(mn).enumerate() {
            for (b, rows) in dst.chunks_mut(block_rows * p.n).enumerate() {
                if crate::cancel::requested() {
                    break 'batch;
                }
                let start = b * block_rows;
                run_rows(i, start..start + rows.len() / p.n, uninit(rows), threads);
            }
        }
    } else {
        out.par_chunks_mut(mn).enumerate().for_each(|(i, dst)| {
            if !crate::cancel::requested() {
                run(i, uninit(dst), gemm::Parallelism::None);
            }
        });
    }
    Tensor::from_host_unchecked(T::into_buffer(out), shape)
}

fn int_matmul<T: Elem + Num>(a: &Tensor, b: &Tensor, shape: &[usize]) -> Tensor {
    let (p, av, bv) = Batched::new(a, b, shape);
    let (abuf, bbuf) = (
        av.buffer::<T>().unwrap_or(&[]),
        bv.buffer::<T>().unwrap_or(&[]),
    );
    let mn = p.m * p.n;
    let mut out = crate::buffer::zeroed::<T>(shape.iter().product());
    if mn == 0 {
        return Tensor::from_host_unchecked(T::into_buffer(out), shape);
    }
    let at = |o: usize, i: usize, j: usize, rs: isize, cs: isize| {
        (o as isize + i as isize * rs + j as isize * cs) as usize
    };
    for (bi, dst) in out.chunks_mut(mn).enumerate() {
        let (ao, bo) = (p.a_offsets[bi], p.b_offsets[bi]);
        for i in 0..p.m {
            // After Ctrl-C the rows left stay zero; `CpuDevice::exec` discards the result.
            if crate::cancel::requested() {
                return Tensor::from_host_unchecked(T::into_buffer(out), shape);
            }
            for l in 0..p.k {
                let x = abuf[at(ao, i, l, p.a_rs, p.a_cs)];
                let row = &mut dst[i * p.n..(i + 1) * p.n];
                for (j, d) in row.iter_mut().enumerate() {
                    *d = d.add(x.mul(bbuf[at(bo, l, j, p.b_rs, p.b_cs)]));
                }
            }
        }
    }
    Tensor::from_host_unchecked(T::into_buffer(out), shape)
}
