//! 2-D convolution (PyTorch's cross-correlation: stride, symmetric zero padding, dilation,
//! groups) and its two backward kernels, for `f32` and `f64`.
//!
//! Two implementations:
//!
//! * **Direct `f32` kernels** (module `direct`, x86-64 with AVX2 and FMA): when the kernel
//!   moves one column at a time, each tap of a row segment of outputs reads consecutive
//!   inputs, so the products run straight from zero-padded copies of the input planes with
//!   register-blocked FMA tiles, with no im2col matrix and no packing. This is the common
//!   case (3×3, 5×5, 1×1 with unit stride along the width) and is about three times faster
//!   than the general path on small-channel layers.
//! * **im2col + `gemm`** for everything else (`f64`, strided columns, long reductions,
//!   other CPUs): for one image and one channel group, row `r = (c, i, j)` of the im2col
//!   matrix holds input channel `c` shifted by kernel tap `(i, j)` and sampled at every
//!   output position (zero where the tap falls into the padding). With `col` of shape
//!   `[C/g·KH·KW, OH·OW]`: forward `y[o, :] = W[o, :] · col`; input gradient `dcol = Wᵀ ·
//!   dy`, then *col2im* adds each row of `dcol` back where its row of `col` was read from;
//!   filter gradient `dW += dy · colᵀ`, summed over the batch. The columns are built in
//!   blocks of output positions, so the scratch matrix stays cache-sized and bounded no
//!   matter how large the image or the kernel. A 1×1 kernel with unit stride and no padding
//!   needs no im2col at all: the input planes are the matrix.
//!
//! Both split the work over the batch with rayon (one image per task, each task with its own
//! scratch) and run the products inside single-threaded, so there is no nested parallelism.
//! A single large image is split over output channels (direct) or lets `gemm` use the
//! threads. The filter gradient sums per-task partial gradients in a fixed order, so results
//! do not depend on scheduling.

use std::mem::MaybeUninit;
use std::ops::{Add, AddAssign, Mul};

use gemm::Parallelism;
use ir::{Conv2dParams, DType};
use rayon::prelude::*;

use crate::{DeviceError, DeviceId, Elem, Tensor};

/// Below this many multiply-adds a convolution runs on the calling thread: a fork-join and
/// the extra scratch buffers cost more than they save.
const PAR_MIN_MACS: usize = 1 << 18;

/// Target size, in elements, of one block of the im2col scratch matrix. Large enough that an
/// ordinary image (say 27 rows × 1024 positions) is one block, small enough to stay in L2.
const COL_BLOCK_ELEMS: usize = 1 << 16;

/// The float types the convolution kernels run on: exactly those `gemm` multiplies.
trait Float: Elem + Add<Output = Self> + Mul<Output = Self> + AddAssign {
    const ZERO: Self;
    const ONE: Self;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// `conv2d(x, w)`: NCHW input, OIHW weights.
pub(crate) fn conv2d(
    x: &Tensor,
    w: &Tensor,
    p: &Conv2dParams,
    out: &[usize],
) -> Result<Tensor, DeviceError> {
    let geom = Geom::new(shape4(x.shape()), shape4(w.shape()), out_hw(out), p);
    match x.dtype() {
        DType::F32 => direct::forward(x, w, &geom).unwrap_or_else(|| forward::<f32>(x, w, &geom)),
        DType::F64 => forward::<f64>(x, w, &geom),
        dt => Err(unsupported("conv2d", dt)),
    }
}

/// Gradient with respect to the input: `(dy, w) -> dx` of shape `out`.
pub(crate) fn conv2d_backward_input(
    dy: &Tensor,
    w: &Tensor,
    p: &Conv2dParams,
    out: &[usize],
) -> Result<Tensor, DeviceError> {
    let geom = Geom::new(shape4(out), shape4(w.shape()), out_hw(dy.shape()), p);
    match dy.dtype() {
        DType::F32 => direct::backward_input(dy, w, &geom)
            .unwrap_or_else(|| backward_input::<f32>(dy, w, &geom)),
        DType::F64 => backward_input::<f64>(dy, w, &geom),
        dt => Err(unsupported("conv2d_backward_input", dt)),
    }
}

/// Gradient with respect to the weights: `(x, dy) -> dw` of shape `out`.
pub(crate) fn conv2d_backward_filter(
    x: &Tensor,
    dy: &Tensor,
    p: &Conv2dParams,
    out: &[usize],
) -> Result<Tensor, DeviceError> {
    let geom = Geom::new(shape4(x.shape()), shape4(out), out_hw(dy.shape()), p);
    match x.dtype() {
        DType::F32 => direct::backward_filter(x, dy, &geom)
            .unwrap_or_else(|| backward_filter::<f32>(x, dy, &geom)),
        DType::F64 => backward_filter::<f64>(x, dy, &geom),
        dt => Err(unsupported("conv2d_backward_filter", dt)),
    }
}

fn unsupported(op: &'static str, dtype: DType) -> DeviceError {
    DeviceError::UnsupportedDType {
        op,
        dtype,
        device: DeviceId::Cpu,
    }
}

/// The first four dims of a shape; missing dims read as zero, which makes every loop below
/// empty instead of out of bounds (the dispatcher has checked the ranks, so this is only a
/// guard).
fn shape4(s: &[usize]) -> [usize; 4] {
    std::array::from_fn(|i| s.get(i).copied().unwrap_or(0))
}

fn out_hw(s: &[usize]) -> [usize; 2] {
    let s = shape4(s);
    [s[2], s[3]]
}

/// Every size a convolution kernel needs, in one place.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    groups: usize,
    /// Input channels per group.
    cg: usize,
    /// Output channels per group.
    og: usize,
    /// Rows of the im2col matrix (the reduction length of the forward product): `cg·kh·kw`.
    kg: usize,
    /// Output positions per channel: `oh·ow`.
    p: usize,
}

impl Geom {
    /// From the input shape `[N, C, H, W]`, the weight shape `[O, C/g, KH, KW]` and the
    /// output's spatial size.
    fn new(x: [usize; 4], w: [usize; 4], out_hw: [usize; 2], p: &Conv2dParams) -> Geom {
        // The dispatcher guarantees `groups >= 1` and that it divides both channel counts;
        // `max(1)` only keeps a division by zero impossible.
        let groups = p.groups.max(1);
        let (cg, kh, kw) = (w[1], w[2], w[3]);
        Geom {
            n: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            o: w[0],
            kh,
            kw,
            oh: out_hw[0],
            ow: out_hw[1],
            stride: p.stride.map(|s| s.max(1)),
            pad: p.padding,
            dil: p.dilation,
            groups,
            cg,
            og: w[0] / groups,
            kg: cg * kh * kw,
            p: out_hw[0] * out_hw[1],
        }
    }

    /// Output positions per im2col block: whole images when they fit the block budget, and
    /// never zero.
    fn block(&self) -> usize {
        (COL_BLOCK_ELEMS / self.kg.max(1)).clamp(1, self.p.max(1))
    }

    /// True when the im2col matrix of an image group is just its input planes: a 1×1 kernel
    /// with unit stride and no padding reads every input position exactly once, in order.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.pad == [0, 0]
    }

    /// Multiply-adds of one of the three products over the whole batch.
    fn macs(&self) -> usize {
        self.n
            .saturating_mul(self.o)
            .saturating_mul(self.p)
            .saturating_mul(self.kg)
    }

    /// For each kernel tap along the height, the output rows whose input row is inside the
    /// image (the others read padding); likewise along the width.
    fn tap_ranges(&self) -> (Vec<Span>, Vec<Span>) {
        let rows = (0..self.kh)
            .map(|i| {
                tap_range(
                    self.h,
                    self.oh,
                    self.stride[0],
                    self.pad[0],
                    i * self.dil[0],
                )
            })
            .collect();
        let cols = (0..self.kw)
            .map(|j| {
                tap_range(
                    self.w,
                    self.ow,
                    self.stride[1],
                    self.pad[1],
                    j * self.dil[1],
                )
            })
            .collect();
        (rows, cols)
    }
}

/// A half-open range `lo..hi` of output indices.
type Span = (usize, usize);

/// The range `lo..hi` of output indices `q < out` whose input index `q·stride + off - pad`
/// lies in `0..len`, for a tap at offset `off` (kernel index times dilation).
fn tap_range(len: usize, out: usize, stride: usize, pad: usize, off: usize) -> (usize, usize) {
    // `q·stride + off >= pad`.
    let lo = pad.saturating_sub(off).div_ceil(stride).min(out);
    // `q·stride + off - pad <= len - 1`, i.e. `q·stride <= len + pad - off - 1`.
    let hi = match (len + pad).checked_sub(off + 1) {
        Some(top) => (top / stride + 1).min(out),
        None => 0,
    };
    (lo, hi.max(lo))
}

/// A read-only strided NCHW view of a host tensor: element `[n, c, y, x]` is at
/// `offset + n·s0 + c·s1 + y·s2 + x·s3` of `buf`. Reading through strides lets transposed or
/// sliced inputs feed im2col without a copy.
struct View<'a, T> {
    buf: &'a [T],
    offset: isize,
    strides: [isize; 4],
}

impl<'a, T: Elem> View<'a, T> {
    fn new(t: &'a Tensor, op: &'static str) -> Result<View<'a, T>, DeviceError> {
        let buf = t.buffer::<T>().ok_or_else(|| unsupported(op, t.dtype()))?;
        let l = t.layout();
        Ok(View {
            buf,
            offset: l.offset as isize,
            strides: std::array::from_fn(|i| l.strides.get(i).copied().unwrap_or(0)),
        })
    }

    /// Position in `buf` of `[n, c, 0, 0]`.
    fn plane(&self, n: usize, c: usize) -> isize {
        self.offset + n as isize * self.strides[0] + c as isize * self.strides[1]
    }

    /// True when every `[y, x]` plane is one C-order run, so a plane is a matrix row of
    /// `h·w` elements with unit stride.
    fn planes_contiguous(&self, h: usize, w: usize) -> bool {
        (w <= 1 || self.strides[3] == 1) && (h <= 1 || self.strides[2] == w as isize)
    }
}

/// Contiguous elements of a tensor of type `T`, copying only when its layout is not already
/// a C-order run.
fn dense<T: Elem>(t: &Tensor, op: &'static str) -> Result<Tensor, DeviceError> {
    let c = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()
    };
    if c.as_slice::<T>().is_none() {
        return Err(unsupported(op, t.dtype()));
    }
    Ok(c)
}

/// Fills `col` (row-major `[kg, p1 - p0]`) with the im2col matrix of image `n`, channels
/// `c0 .. c0 + cg`, for output positions `p0 .. p1`.
#[allow(clippy::too_many_arguments)]
fn im2col<T: Float>(
    col: &mut [T],
    x: &View<'_, T>,
    g: &Geom,
    n: usize,
    c0: usize,
    (p0, p1): (usize, usize),
    (rows, cols): (&[Span], &[Span]),
) {
    let pb = p1 - p0;
    let [_, _, sy, sx] = x.strides;
    let unit = g.stride[1] == 1 && sx == 1;
    for c in 0..g.cg {
        let plane = x.plane(n, c0 + c);
        for (i, &(ylo, yhi)) in rows.iter().enumerate() {
            for (j, &(xlo, xhi)) in cols.iter().enumerate() {
                let r = (c * g.kh + i) * g.kw + j;
                let dst = &mut col[r * pb..(r + 1) * pb];
                let mut q = p0;
                while q < p1 {
                    // One output row's worth of this block: `oy` fixed, `ox` in `a0..a1`.
                    let (oy, a0) = (q / g.ow, q % g.ow);
                    let a1 = g.ow.min(a0 + (p1 - q));
                    let seg = &mut dst[q - p0..q - p0 + (a1 - a0)];
                    q += a1 - a0;
                    if oy < ylo || oy >= yhi {
                        seg.fill(T::ZERO);
                        continue;
                    }
                    let iy = oy * g.stride[0] + i * g.dil[0] - g.pad[0];
                    let row = plane + iy as isize * sy;
                    let a = xlo.clamp(a0, a1);
                    let b = xhi.clamp(a, a1);
                    seg[..a - a0].fill(T::ZERO);
                    seg[b - a0..].fill(T::ZERO);
                    if a == b {
                        // No tap of this segment lands inside the row (and `ix` below
                        // would be meaningless).
                        continue;
                    }
                    let ix = a * g.stride[1] + j * g.dil[1] - g.pad[1];
                    let inside = &mut seg[a - a0..b - a0];
                    if unit {
                        let s = (row + ix as isize) as usize;
                        inside.copy_from_slice(&x.buf[s..s + inside.len()]);
                    } else {
                        let step = g.stride[1] as isize * sx;
                        let mut s = row + ix as isize * sx;
                        for d in inside {
                            *d = x.buf[s as usize];
                            s += step;
                        }
                    }
                }
            }
        }
    }
}

/// Adds the rows of `dcol` (row-major `[kg, p1 - p0]`, output positions `p0 .. p1`) back
/// into `dx` (one image group, contiguous `[cg, h, w]`) at the positions im2col read them
/// from: the adjoint of [`im2col`].
fn col2im<T: Float>(
    dx: &mut [T],
    dcol: &[T],
    g: &Geom,
    (p0, p1): (usize, usize),
    (rows, cols): (&[Span], &[Span]),
) {
    let pb = p1 - p0;
    for c in 0..g.cg {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for (i, &(ylo, yhi)) in rows.iter().enumerate() {
            for (j, &(xlo, xhi)) in cols.iter().enumerate() {
                let r = (c * g.kh + i) * g.kw + j;
                let src = &dcol[r * pb..(r + 1) * pb];
                let mut q = p0;
                while q < p1 {
                    let (oy, a0) = (q / g.ow, q % g.ow);
                    let a1 = g.ow.min(a0 + (p1 - q));
                    let seg = &src[q - p0..q - p0 + (a1 - a0)];
                    q += a1 - a0;
                    if oy < ylo || oy >= yhi {
                        continue;
                    }
                    let iy = oy * g.stride[0] + i * g.dil[0] - g.pad[0];
                    let a = xlo.clamp(a0, a1);
                    let b = xhi.clamp(a, a1);
                    if a == b {
                        continue;
                    }
                    let ix = a * g.stride[1] + j * g.dil[1] - g.pad[1];
                    let inside = &seg[a - a0..b - a0];
                    let row = &mut plane[iy * g.w..(iy + 1) * g.w];
                    if g.stride[1] == 1 {
                        for (d, &s) in row[ix..ix + inside.len()].iter_mut().zip(inside) {
                            *d += s;
                        }
                    } else {
                        for (d, &s) in row[ix..].iter_mut().step_by(g.stride[1]).zip(inside) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}

/// One `gemm` call, `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`), with every
/// matrix given by a pointer and its row and column strides in elements.
///
/// # Safety
///
/// Every element `dst + i·dst.1 + j·dst.2` (`i < m`, `j < n`) must be valid for writes (and
/// initialised when `accumulate`), every element of `lhs` (`m × k`) and `rhs` (`k × n`)
/// valid for reads, and `dst` must not overlap either operand. When `accumulate` is false
/// `dst` is only written, never read, so it may be uninitialised.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul<T: Float>(
    (m, n, k): (usize, usize, usize),
    dst: (*mut T, isize, isize),
    lhs: (*const T, isize, isize),
    rhs: (*const T, isize, isize),
    accumulate: bool,
    par: Parallelism,
) {
    // SAFETY: forwarded from the caller's contract; `T` is `f32` or `f64`, both of which
    // `gemm` supports (it panics on any other type). With `read_dst == false` gemm sets its
    // `alpha` to zero and stores `beta·lhs·rhs` without loading `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2,
            dst.1,
            accumulate,
            lhs.0,
            lhs.2,
            lhs.1,
            rhs.0,
            rhs.2,
            rhs.1,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        );
    }
}

/// How a kernel spreads its batch: over rayon tasks (with single-threaded products), or on
/// the calling thread with `gemm` free to use the threads for one large image.
fn plan(g: &Geom) -> (bool, Parallelism) {
    let threads = rayon::current_num_threads();
    if threads <= 1 || g.macs() < PAR_MIN_MACS {
        (false, Parallelism::None)
    } else if g.n >= 2 {
        (true, Parallelism::None)
    } else {
        (false, Parallelism::Rayon(threads))
    }
}

fn forward<T: Float>(x: &Tensor, w: &Tensor, g: &Geom) -> Result<Tensor, DeviceError> {
    const OP: &str = "conv2d";
    let shape = [g.n, g.o, g.oh, g.ow];
    let total = g.n * g.o * g.p;
    if total == 0 || g.kg == 0 {
        // No output, or a sum over nothing (no input channels): zeros.
        return Ok(Tensor::from_host_unchecked(
            T::into_buffer(vec![T::ZERO; total]),
            &shape,
        ));
    }
    let wd = dense::<T>(w, OP)?;
    let wbuf = wd.as_slice::<T>().unwrap_or_default();
    let xv = View::<T>::new(x, OP)?;
    let ranges = g.tap_ranges();
    let (rows, cols) = (&ranges.0[..], &ranges.1[..]);
    let direct = g.is_pointwise() && xv.planes_contiguous(g.h, g.w);
    let block = g.block();
    let (batch_par, gemm_par) = plan(g);

    // Every element of the output is stored by exactly one product below (with
    // `accumulate == false`), so it is allocated without being zeroed first.
    let mut y: Vec<T> = Vec::with_capacity(total);
    let image = |n: usize, out: &mut [MaybeUninit<T>], col: &mut Vec<T>| {
        let out = out.as_mut_ptr().cast::<T>();
        for gi in 0..g.groups {
            let lhs = wbuf[gi * g.og * g.kg..].as_ptr();
            let dst = out.wrapping_add(gi * g.og * g.p);
            if direct {
                let rhs = xv.buf.as_ptr().wrapping_offset(xv.plane(n, gi * g.cg));
                // SAFETY: `dst` is this group's `og × p` slab of the image's output slice,
                // `lhs` the group's `og × kg` weights inside `wbuf`, and `rhs` the group's
                // `cg` input planes, each a C-order run of `p` elements (checked by
                // `planes_contiguous`) inside `xv.buf`. Output and inputs are separate
                // allocations.
                unsafe {
                    matmul(
                        (g.og, g.p, g.kg),
                        (dst, g.p as isize, 1),
                        (lhs, g.kg as isize, 1),
                        (rhs, xv.strides[1], 1),
                        false,
                        gemm_par,
                    );
                }
                continue;
            }
            let mut p0 = 0;
            while p0 < g.p {
                let p1 = g.p.min(p0 + block);
                let pb = p1 - p0;
                let col = &mut col[..g.kg * pb];
                im2col(col, &xv, g, n, gi * g.cg, (p0, p1), (rows, cols));
                // SAFETY: `dst + p0` addresses columns `p0 .. p1` of the group's `og × p`
                // output slab (row stride `p`) inside this image's slice; `lhs` is the
                // group's `og × kg` weights and `col` the `kg × pb` matrix just filled.
                unsafe {
                    matmul(
                        (g.og, pb, g.kg),
                        (dst.wrapping_add(p0), g.p as isize, 1),
                        (lhs, g.kg as isize, 1),
                        (col.as_ptr(), pb as isize, 1),
                        false,
                        gemm_par,
                    );
                }
                p0 = p1;
            }
        }
    };
    let scratch = || {
        if direct {
            Vec::new()
        } else {
            vec![T::ZERO; g.kg * block]
        }
    };
    // An image reached after Ctrl-C (`crate::cancel`) is stored as zeros instead of
    // computed, which keeps every element initialised; `CpuDevice::exec` then discards the
    // result.
    let image_or_zeros = |n: usize, out: &mut [MaybeUninit<T>], col: &mut Vec<T>| {
        if crate::cancel::requested() {
            out.fill(MaybeUninit::new(T::ZERO));
        } else {
            image(n, out, col);
        }
    };
    let slabs = &mut y.spare_capacity_mut()[..total];
    if batch_par {
        slabs
            .par_chunks_mut(g.o * g.p)
            .enumerate()
            .for_each_init(scratch, |col, (n, out)| image_or_zeros(n, out, col));
    } else {
        let mut col = scratch();
        for (n, out) in slabs.chunks_mut(g.o * g.p).enumerate() {
            image_or_zeros(n, out, &mut col);
        }
    }
    // SAFETY: the loops above ran every image and group (or stored zeros for an image
    // skipped after Ctrl-C), and their products stored every one of the first `total`
    // elements (see the comment at the allocation).
    unsafe { y.set_len(total) };
    Ok(Tensor::from_host_unchecked(T::into_buffer(y), &shape))
}

fn backward_input<T: Float>(dy: &Tensor, w: &Tensor, g: &Geom) -> Result<Tensor, DeviceError> {
    const OP: &str = "conv2d_backward_input";
    let shape = [g.n, g.c, g.h, g.w];
    let total = g.n * g.c * g.h * g.w;
    // col2im accumulates, so the gradient starts at zero (and stays zero when there are no
    // output channels to pull from).
    let mut dx = vec![T::ZERO; total];
    if total == 0 || g.og == 0 || g.kg == 0 {
        return Ok(Tensor::from_host_unchecked(T::into_buffer(dx), &shape));
    }
    let wd = dense::<T>(w, OP)?;
    let wbuf = wd.as_slice::<T>().unwrap_or_default();
    let dyd = dense::<T>(dy, OP)?;
    let dybuf = dyd.as_slice::<T>().unwrap_or_default();
    let ranges = g.tap_ranges();
    let (rows, cols) = (&ranges.0[..], &ranges.1[..]);
    let direct = g.is_pointwise();
    let block = g.block();
    let (batch_par, gemm_par) = plan(g);
    let plane = g.h * g.w;

    let image = |n: usize, dxn: &mut [T], dcol: &mut Vec<T>| {
        for gi in 0..g.groups {
            // `Wᵀ` of the group: row `r` of it is column `r` of the `og × kg` weights.
            let lhs = wbuf[gi * g.og * g.kg..].as_ptr();
            let rhs = dybuf[(n * g.o + gi * g.og) * g.p..].as_ptr();
            let dxg = &mut dxn[gi * g.cg * plane..(gi + 1) * g.cg * plane];
            if direct {
                // SAFETY: `dxg` is the group's `cg × (h·w)` slab, with `h·w == p` for a
                // pointwise kernel; `lhs` spans the group's `og × kg` weights (read
                // transposed) and `rhs` the group's `og × p` rows of `dy`.
                unsafe {
                    matmul(
                        (g.kg, g.p, g.og),
                        (dxg.as_mut_ptr(), g.p as isize, 1),
                        (lhs, 1, g.kg as isize),
                        (rhs, g.p as isize, 1),
                        false,
                        gemm_par,
                    );
                }
                continue;
            }
            let mut p0 = 0;
            while p0 < g.p {
                let p1 = g.p.min(p0 + block);
                let pb = p1 - p0;
                let dcol = &mut dcol[..g.kg * pb];
                // SAFETY: `dcol` is a `kg × pb` scratch matrix; `lhs` the transposed
                // group weights (`kg × og`), `rhs + p0` columns `p0 .. p1` of the group's
                // `og × p` rows of `dy` (row stride `p`).
                unsafe {
                    matmul(
                        (g.kg, pb, g.og),
                        (dcol.as_mut_ptr(), pb as isize, 1),
                        (lhs, 1, g.kg as isize),
                        (rhs.wrapping_add(p0), g.p as isize, 1),
                        false,
                        gemm_par,
                    );
                }
                col2im(dxg, dcol, g, (p0, p1), (rows, cols));
                p0 = p1;
            }
        }
    };
    let scratch = || {
        if direct {
            Vec::new()
        } else {
            vec![T::ZERO; g.kg * block]
        }
    };
    if batch_par {
        dx.par_chunks_mut(g.c * plane)
            .enumerate()
            .for_each_init(scratch, |dcol, (n, dxn)| {
                // After Ctrl-C the images left stay zero; `CpuDevice::exec` discards them.
                if !crate::cancel::requested() {
                    image(n, dxn, dcol);
                }
            });
    } else {
        let mut dcol = scratch();
        for (n, dxn) in dx.chunks_mut(g.c * plane).enumerate() {
            if crate::cancel::requested() {
                break;
            }
            image(n, dxn, &mut dcol);
        }
    }
    Ok(Tensor::from_host_unchecked(T::into_buffer(dx), &shape))
}

fn backward_filter<T: Float>(x: &Tensor, dy: &Tensor, g: &Geom) -> Result<Tensor, DeviceError> {
    const OP: &str = "conv2d_backward_filter";
    let shape = [g.o, g.cg, g.kh, g.kw];
    let total = g.o * g.kg;
    if total == 0 || g.n == 0 {
        return Ok(Tensor::from_host_unchecked(
            T::into_buffer(vec![T::ZERO; total]),
            &shape,
        ));
    }
    let xv = View::<T>::new(x, OP)?;
    let dyd = dense::<T>(dy, OP)?;
    let dybuf = dyd.as_slice::<T>().unwrap_or_default();
    let ranges = g.tap_ranges();
    let (rows, cols) = (&ranges.0[..], &ranges.1[..]);
    let direct = g.is_pointwise() && xv.planes_contiguous(g.h, g.w);
    let block = g.block();
    let (batch_par, gemm_par) = plan(g);

    // Adds images `range` into `dw` (row-major `[o, kg]`).
    let images = |range: std::ops::Range<usize>, dw: &mut [T], col: &mut Vec<T>| {
        for n in range {
            // After Ctrl-C the images left are not added; `CpuDevice::exec` discards `dw`.
            if crate::cancel::requested() {
                break;
            }
            for gi in 0..g.groups {
                let dst = dw[gi * g.og * g.kg..].as_mut_ptr();
                let lhs = dybuf[(n * g.o + gi * g.og) * g.p..].as_ptr();
                if direct {
                    let rhs = xv.buf.as_ptr().wrapping_offset(xv.plane(n, gi * g.cg));
                    // SAFETY: `dst` is the group's `og × kg` block of `dw`; `lhs` the
                    // group's `og × p` rows of `dy`; `rhs` reads the group's `cg` input
                    // planes (contiguous runs of `p`, checked) transposed, as `p × cg`.
                    unsafe {
                        matmul(
                            (g.og, g.kg, g.p),
                            (dst, g.kg as isize, 1),
                            (lhs, g.p as isize, 1),
                            (rhs, 1, xv.strides[1]),
                            true,
                            gemm_par,
                        );
                    }
                    continue;
                }
                let mut p0 = 0;
                while p0 < g.p {
                    let p1 = g.p.min(p0 + block);
                    let pb = p1 - p0;
                    let col = &mut col[..g.kg * pb];
                    im2col(col, &xv, g, n, gi * g.cg, (p0, p1), (rows, cols));
                    // SAFETY: `dst` is the group's initialised `og × kg` block of `dw`,
                    // `lhs + p0` columns `p0 .. p1` of the group's rows of `dy` (row stride
                    // `p`), and `col` the `kg × pb` matrix just filled, read transposed.
                    unsafe {
                        matmul(
                            (g.og, g.kg, pb),
                            (dst, g.kg as isize, 1),
                            (lhs.wrapping_add(p0), g.p as isize, 1),
                            (col.as_ptr(), 1, pb as isize),
                            true,
                            gemm_par,
                        );
                    }
                    p0 = p1;
                }
            }
        }
    };
    let scratch = || {
        if direct {
            Vec::new()
        } else {
            vec![T::ZERO; g.kg * block]
        }
    };
    let mut dw = vec![T::ZERO; total];
    if batch_par {
        // A fixed split of the batch, summed in order, keeps the result independent of
        // which thread ran what. A few parts per thread let idle threads steal work.
        let parts = g.n.min(4 * rayon::current_num_threads());
        let partials: Vec<Vec<T>> = (0..parts)
            .into_par_iter()
            .map_init(scratch, |col, part| {
                let mut acc = vec![T::ZERO; total];
                images(part * g.n / parts..(part + 1) * g.n / parts, &mut acc, col);
                acc
            })
            .collect();
        for part in &partials {
            for (d, &s) in dw.iter_mut().zip(part) {
                *d += s;
            }
        }
    } else {
        let mut col = scratch();
        images(0..g.n, &mut dw, &mut col);
    }
    Ok(Tensor::from_host_unchecked(T::into_buffer(dw), &shape))
}

/// Direct `f32` kernels for x86-64 with AVX2 and FMA, used instead of im2col + `gemm` when
/// the kernel's column stride is 1 (and, for the input gradient, the row stride too).
///
/// They read *padded planes*: a zero-bordered copy of each input plane, so that every
/// kernel tap at every output position is a plain load and the inner loops have no bounds
/// logic. With unit column stride the 16 outputs of a row segment read 16 consecutive
/// elements for each tap, so the forward pass is a register-blocked product with no im2col
/// matrix and no packing: up to 6 output channels × 16 pixels of accumulators, one
/// broadcast weight and two vector loads per tap. The input gradient with unit stride is
/// the same correlation over `dy` (padded by the kernel span minus the padding) with the
/// weights flipped and their channel axes swapped. The filter gradient reduces over pixels
/// instead: 4 output channels × 3 taps of vector accumulators streamed over the image.
#[cfg(target_arch = "x86_64")]
mod direct {
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    use super::{Geom, PAR_MIN_MACS, View, dense};
    use crate::{DeviceError, Elem, Tensor};

    /// `f32` lanes of a vector.
    const LANES: usize = 8;
    /// Output channels per forward tile (see [`max_nv`] for its width).
    const MAX_NO: usize = 6;
    /// Output channels and taps per filter-gradient tile (12 accumulators).
    const FILT_NO: usize = 4;
    const FILT_NK: usize = 3;
    /// Zeros after the padded planes, so the last tile of the last row can load whole
    /// vectors (the lanes past the row are computed but never stored).
    const SLACK: usize = 2 * LANES;
    /// Above this many taps per output channel the weights of a tile no longer stay in L1
    /// and `gemm`, which blocks the reduction, is the better choice.
    const MAX_KG: usize = 1024;

    fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// A pointer that rayon tasks share. Each task writes a disjoint set of elements.
    #[derive(Clone, Copy)]
    struct SharedMut(*mut f32);
    // SAFETY: the tasks that share it write disjoint elements (each its own images or its
    // own output channels) and nothing reads them until all tasks have joined.
    unsafe impl Send for SharedMut {}
    // SAFETY: as above.
    unsafe impl Sync for SharedMut {}

    impl SharedMut {
        /// The pointer. (A method, so that closures capture the `Send` wrapper rather
        /// than its field.)
        fn get(self) -> *mut f32 {
            self.0
        }
    }

    /// Where the padded planes sit relative to the source planes: padded element `[r, q]`
    /// is source element `[r - top, q - left]`, or zero outside the source (a negative
    /// `top`/`left` crops instead).
    #[derive(Clone, Copy, Debug)]
    struct Pad {
        top: isize,
        left: isize,
        hp: usize,
        wp: usize,
    }

    impl Pad {
        /// False when the padded planes would be far larger than the data they pad (huge
        /// padding or dilation): then the bounded im2col path is used instead.
        fn reasonable(&self, src_hw: usize, out_hw: usize) -> bool {
            self.hp.saturating_mul(self.wp) <= 4 * (src_hw + out_hw) + 4096
        }
    }

    /// Fills `dst` with channels `c0 .. c0 + cn` of image `n` of `src` (planes of `h × w`)
    /// as zero-padded `[cn, hp, wp]` planes, followed by [`SLACK`] zeros.
    #[allow(clippy::too_many_arguments)]
    fn pad_planes(
        dst: &mut Vec<f32>,
        src: &View<'_, f32>,
        n: usize,
        (c0, cn): (usize, usize),
        (h, w): (usize, usize),
        pad: &Pad,
    ) {
        let (hp, wp) = (pad.hp, pad.wp);
        dst.clear();
        dst.resize(cn * hp * wp + SLACK, 0.0);
        let [_, _, sy, sx] = src.strides;
        // The padded columns that hold source columns, and the first source column.
        let q0 = pad.left.clamp(0, wp as isize) as usize;
        let q1 = (pad.left + w as isize).clamp(q0 as isize, wp as isize) as usize;
        let x0 = (q0 as isize - pad.left) as usize;
        for c in 0..cn {
            let plane = src.plane(n, c0 + c);
            for r in 0..hp {
                let y = r as isize - pad.top;
                if y < 0 || y >= h as isize || q0 == q1 {
                    continue;
                }
                let row = &mut dst[(c * hp + r) * wp + q0..(c * hp + r) * wp + q1];
                let start = plane + y * sy + x0 as isize * sx;
                if sx == 1 {
                    let s = start as usize;
                    row.copy_from_slice(&src.buf[s..s + row.len()]);
                } else {
                    for (k, d) in row.iter_mut().enumerate() {
                        *d = src.buf[(start + k as isize * sx) as usize];
                    }
                }
            }
        }
    }

    /// Output channel blocks of at most `max` channels covering `0..count`.
    fn blocks(count: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
        (0..count)
            .step_by(max)
            .map(move |o0| (o0, max.min(count - o0)))
    }

    /// A correlation with unit column stride over padded planes: the shape of both the
    /// forward pass and the input gradient.
    struct Corr {
        groups: usize,
        /// Source channels per group.
        cin: usize,
        /// Output channels per group.
        cout: usize,
        pad: Pad,
        oh: usize,
        ow: usize,
        /// Distance in the padded planes between consecutive output rows (row stride × wp).
        row_step: usize,
        /// For each tap `k = (c, i, j)` of a group, its offset in the group's padded planes.
        taps: Vec<usize>,
        /// Weights per group and block of [`MAX_NO`] output channels, each block laid out
        /// `[tap][channel]` so that a tile reads them in order.
        wpack: Vec<f32>,
    }

    impl Corr {
        #[allow(clippy::too_many_arguments)]
        fn new(
            groups: usize,
            (cin, cout): (usize, usize),
            (kh, kw): (usize, usize),
            dil: [usize; 2],
            pad: Pad,
            (oh, ow): (usize, usize),
            row_stride: usize,
            weight: impl Fn(usize, usize, usize) -> f32,
        ) -> Corr {
            let kg = cin * kh * kw;
            let mut taps = Vec::with_capacity(kg);
            for c in 0..cin {
                for i in 0..kh {
                    for j in 0..kw {
                        taps.push((c * pad.hp + i * dil[0]) * pad.wp + j * dil[1]);
                    }
                }
            }
            let mut wpack = Vec::with_capacity(groups * cout * kg);
            for g in 0..groups {
                for (o0, no) in blocks(cout, MAX_NO) {
                    for k in 0..kg {
                        wpack.extend((o0..o0 + no).map(|o| weight(g, o, k)));
                    }
                }
            }
            Corr {
                groups,
                cin,
                cout,
                pad,
                oh,
                ow,
                row_step: row_stride * pad.wp,
                taps,
                wpack,
            }
        }

        /// Every `(group, first channel, channel count)` block of the output.
        fn all_blocks(&self) -> Vec<(usize, usize, usize)> {
            (0..self.groups)
                .flat_map(|g| blocks(self.cout, MAX_NO).map(move |(o0, no)| (g, o0, no)))
                .collect()
        }

        /// Writes output channels `o0 .. o0 + no` of group `g` of one image.
        ///
        /// # Safety
        ///
        /// AVX2 and FMA must be available; `src` must be the image's padded planes
        /// (`groups · cin` of them plus [`SLACK`]) and `dst` must point to the image's
        /// output, `groups · cout` planes of `oh · ow`, valid for writes.
        unsafe fn run_block(&self, src: &[f32], (g, o0, no): (usize, usize, usize), dst: *mut f32) {
            let kg = self.taps.len();
            let plane = self.oh * self.ow;
            let src = src[g * self.cin * self.pad.hp * self.pad.wp..].as_ptr();
            let w = self.wpack[(g * self.cout + o0) * kg..].as_ptr();
            let dst = dst.wrapping_add((g * self.cout + o0) * plane);
            for oy in 0..self.oh {
                let mut ox = 0;
                while ox < self.ow {
                    // As many vectors as the block's accumulators allow, fewer at the end
                    // of the row so that little is computed only to be dropped.
                    let nv = max_nv(no).min((self.ow - ox).div_ceil(LANES));
                    let valid = (nv * LANES).min(self.ow - ox);
                    let s = src.wrapping_add(oy * self.row_step + ox);
                    let d = dst.wrapping_add(oy * self.ow + ox);
                    ox += valid;
                    // SAFETY: tap `k` of this tile reads `s + taps[k] .. + nv·LANES`: at
                    // most channel `cin - 1`, padded row `(oh - 1)·stride + (kh - 1)·dil <
                    // hp`, column `ow - 1 + LANES - 1 + (kw - 1)·dil < wp + SLACK`, so
                    // within the group's planes plus the slack. The weights are the
                    // block's `kg × no` entries of `wpack`; `d` addresses `valid`
                    // elements of each of the block's `no` output planes.
                    unsafe {
                        macro_rules! go {
                            ($no:literal, $nv:literal) => {
                                tile::<$no, $nv>(s, &self.taps, w, d, plane, valid)
                            };
                        }
                        match (no, nv) {
                            (1, 1) => go!(1, 1),
                            (1, 2) => go!(1, 2),
                            (1, 3) => go!(1, 3),
                            (1, _) => go!(1, 4),
                            (2, 1) => go!(2, 1),
                            (2, 2) => go!(2, 2),
                            (2, 3) => go!(2, 3),
                            (2, _) => go!(2, 4),
                            (3, 1) => go!(3, 1),
                            (3, 2) => go!(3, 2),
                            (3, 3) => go!(3, 3),
                            (3, _) => go!(3, 4),
                            (4, 1) => go!(4, 1),
                            (4, _) => go!(4, 2),
                            (5, 1) => go!(5, 1),
                            (5, _) => go!(5, 2),
                            (_, 1) => go!(6, 1),
                            (_, _) => go!(6, 2),
                        }
                    }
                }
            }
        }

        /// Runs the correlation over a batch: `src_of(n, buf)` fills `buf` with image `n`'s
        /// padded planes. The result has `n · groups · cout` planes of `oh · ow`.
        fn run(
            &self,
            n: usize,
            parallel: bool,
            src_of: impl Fn(usize, &mut Vec<f32>) + Sync,
        ) -> Vec<f32> {
            let image = self.groups * self.cout * self.oh * self.ow;
            let total = n * image;
            let mut out: Vec<f32> = Vec::with_capacity(total);
            let dst = SharedMut(out.spare_capacity_mut().as_mut_ptr().cast::<f32>());
            let blocks = self.all_blocks();
            let one = |ni: usize, buf: &mut Vec<f32>| {
                let d = dst;
                if crate::cancel::requested() {
                    // An image reached after Ctrl-C is stored as zeros, which keeps every
                    // element initialised for `set_len` below; `CpuDevice::exec` then
                    // discards the result.
                    // SAFETY: `d + ni·image` is this image's slab of `image` elements
                    // within the allocation of `total`, written by no other task, and all
                    // zero bits are the `f32` 0.0.
                    unsafe { std::ptr::write_bytes(d.get().wrapping_add(ni * image), 0, image) };
                    return;
                }
                src_of(ni, buf);
                for &b in &blocks {
                    // SAFETY: `available()` was checked before building the plan; `buf`
                    // holds the image's padded planes and `d + ni·image` its output slab
                    // within the allocation of `total` elements.
                    unsafe { self.run_block(buf, b, d.get().wrapping_add(ni * image)) };
                }
            };
            if parallel && n > 1 {
                (0..n)
                    .into_par_iter()
                    .for_each_init(Vec::new, |buf, ni| one(ni, buf));
            } else if parallel && n == 1 {
                let mut buf = Vec::new();
                src_of(0, &mut buf);
                let d = dst;
                blocks.par_iter().for_each(|&b| {
                    // SAFETY: as above; the blocks write disjoint output channels.
                    unsafe { self.run_block(&buf, b, d.get()) };
                });
            } else {
                let mut buf = Vec::new();
                for ni in 0..n {
                    one(ni, &mut buf);
                }
            }
            // SAFETY: every image ran every block, and the blocks cover every output
            // channel, row and column, each tile storing its `valid` columns.
            unsafe { out.set_len(total) };
            out
        }
    }

    /// Vectors per forward tile for a block of `no` output channels: up to 12
    /// accumulators, leaving registers for the loaded inputs and the broadcast weight.
    fn max_nv(no: usize) -> usize {
        match no {
            0..=3 => 4,
            _ => 2,
        }
    }

    /// `NO` output channels × `NV` vectors of output pixels: the forward inner kernel.
    ///
    /// # Safety
    ///
    /// AVX2 and FMA must be available. For every tap `k`, `src + taps[k]` must be valid
    /// for reading `NV·LANES` elements; `w` for reading `taps.len() · NO`; and
    /// `dst + o·plane` for writing `valid <= NV·LANES` elements for each `o < NO`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const NO: usize, const NV: usize>(
        src: *const f32,
        taps: &[usize],
        w: *const f32,
        dst: *mut f32,
        plane: usize,
        valid: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); NV]; NO];
        let mut wk = w;
        for &off in taps {
            // SAFETY: within the ranges the caller guarantees.
            unsafe {
                // Whichever of the weights and the inputs are fewer are held in registers
                // while the others are taken one at a time: with 12 accumulators only
                // that order fits the 16 registers without spilling.
                let p = src.add(off);
                if NO <= NV {
                    let b: [__m256; NO] = std::array::from_fn(|o| _mm256_set1_ps(*wk.add(o)));
                    for v in 0..NV {
                        let a = _mm256_loadu_ps(p.add(v * LANES));
                        for (acc, &b) in acc.iter_mut().zip(&b) {
                            acc[v] = _mm256_fmadd_ps(b, a, acc[v]);
                        }
                    }
                } else {
                    let a: [__m256; NV] =
                        std::array::from_fn(|v| _mm256_loadu_ps(p.add(v * LANES)));
                    for (o, acc) in acc.iter_mut().enumerate() {
                        let b = _mm256_set1_ps(*wk.add(o));
                        for (acc, &a) in acc.iter_mut().zip(&a) {
                            *acc = _mm256_fmadd_ps(b, a, *acc);
                        }
                    }
                }
                wk = wk.add(NO);
            }
        }
        for (o, acc) in acc.iter().enumerate() {
            // SAFETY: `dst + o·plane` is valid for `valid` writes; a partial tile goes
            // through a stack buffer so that nothing past `valid` is touched.
            unsafe {
                let d = dst.add(o * plane);
                if valid == NV * LANES {
                    for (v, &a) in acc.iter().enumerate() {
                        _mm256_storeu_ps(d.add(v * LANES), a);
                    }
                } else {
                    let mut tmp = [0.0f32; 4 * LANES];
                    for (v, &a) in acc.iter().enumerate() {
                        _mm256_storeu_ps(tmp.as_mut_ptr().add(v * LANES), a);
                    }
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), d, valid);
                }
            }
        }
    }

    /// Sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    /// Geometry of one filter-gradient tile.
    #[derive(Clone, Copy)]
    struct FiltTile {
        /// `dy` channel planes: distance between channels and the plane's rows and columns.
        plane: usize,
        oh: usize,
        ow: usize,
        /// Distance in the padded planes between consecutive output rows.
        row_step: usize,
        /// Row length of the gradient, `cg·kh·kw`.
        kg: usize,
    }

    /// `dw[o][t] += Σ_pixels dy[o] · x[tap t]` for `NO` output channels and `NK` taps.
    ///
    /// # Safety
    ///
    /// AVX2 and FMA must be available; `dy + o·plane` must be valid for reading `oh·ow`
    /// elements for each `o < NO`; `x + taps[t] + oy·row_step` for reading `ow` elements
    /// for every `oy < oh` and `t < NK`; and `dw + o·kg + t` for reading and writing.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn filt_tile<const NO: usize, const NK: usize>(
        dy: *const f32,
        x: *const f32,
        taps: [usize; NK],
        t: FiltTile,
        dw: *mut f32,
    ) {
        let mut acc = [[_mm256_setzero_ps(); NK]; NO];
        let rem = t.ow % 8;
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(rem as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        for oy in 0..t.oh {
            let xr = x.wrapping_add(oy * t.row_step);
            let dr = dy.wrapping_add(oy * t.ow);
            let mut ox = 0;
            while ox + 8 <= t.ow {
                // SAFETY: columns `ox .. ox + 8` are inside the row of each plane.
                unsafe {
                    let xv: [__m256; NK] =
                        std::array::from_fn(|k| _mm256_loadu_ps(xr.add(taps[k] + ox)));
                    for (o, acc) in acc.iter_mut().enumerate() {
                        let d = _mm256_loadu_ps(dr.add(o * t.plane + ox));
                        for (a, &xv) in acc.iter_mut().zip(&xv) {
                            *a = _mm256_fmadd_ps(d, xv, *a);
                        }
                    }
                }
                ox += 8;
            }
            if rem > 0 {
                // SAFETY: the masked loads touch only columns `ox .. ow` of each row.
                unsafe {
                    let xv: [__m256; NK] =
                        std::array::from_fn(|k| _mm256_maskload_ps(xr.add(taps[k] + ox), mask));
                    for (o, acc) in acc.iter_mut().enumerate() {
                        let d = _mm256_maskload_ps(dr.add(o * t.plane + ox), mask);
                        for (a, &xv) in acc.iter_mut().zip(&xv) {
                            *a = _mm256_fmadd_ps(d, xv, *a);
                        }
                    }
                }
            }
        }
        for (o, acc) in acc.iter().enumerate() {
            for (k, &a) in acc.iter().enumerate() {
                // SAFETY: the caller guarantees `dw + o·kg + k` for `o < NO`, `k < NK`.
                unsafe { *dw.add(o * t.kg + k) += hsum(a) };
            }
        }
    }

    /// The padding of the forward pass's source planes, if the direct kernels apply.
    fn forward_pad(g: &Geom) -> Option<Pad> {
        if g.stride[1] != 1 || g.kg > MAX_KG || g.kg == 0 || g.p == 0 || !available() {
            return None;
        }
        let pad = Pad {
            top: g.pad[0] as isize,
            left: g.pad[1] as isize,
            hp: (g.oh - 1) * g.stride[0] + (g.kh - 1) * g.dil[0] + 1,
            wp: g.ow + (g.kw - 1) * g.dil[1],
        };
        pad.reasonable(g.h * g.w, g.p).then_some(pad)
    }

    fn parallel(g: &Geom) -> bool {
        rayon::current_num_threads() > 1 && g.macs() >= PAR_MIN_MACS
    }

    /// The forward pass, or `None` when the direct kernels do not apply.
    pub(super) fn forward(x: &Tensor, w: &Tensor, g: &Geom) -> Option<Result<Tensor, DeviceError>> {
        if g.n * g.o * g.p == 0 {
            return None;
        }
        let pad = forward_pad(g)?;
        Some((|| {
            let wd = dense::<f32>(w, "conv2d")?;
            let wb = wd.as_slice::<f32>().unwrap_or_default();
            let xv = View::<f32>::new(x, "conv2d")?;
            let corr = Corr::new(
                g.groups,
                (g.cg, g.og),
                (g.kh, g.kw),
                g.dil,
                pad,
                (g.oh, g.ow),
                g.stride[0],
                |gi, o, k| wb[(gi * g.og + o) * g.kg + k],
            );
            let y = corr.run(g.n, parallel(g), |n, buf| {
                pad_planes(buf, &xv, n, (0, g.c), (g.h, g.w), &pad)
            });
            Ok(Tensor::from_host_unchecked(
                f32::into_buffer(y),
                &[g.n, g.o, g.oh, g.ow],
            ))
        })())
    }

    /// The input gradient, or `None` when the direct kernels do not apply (they need unit
    /// strides, under which it is a correlation of `dy` with the flipped weights).
    pub(super) fn backward_input(
        dy: &Tensor,
        w: &Tensor,
        g: &Geom,
    ) -> Option<Result<Tensor, DeviceError>> {
        let kg = g.og * g.kh * g.kw;
        if g.n * g.c * g.h * g.w == 0
            || g.stride != [1, 1]
            || kg == 0
            || kg > MAX_KG
            || !available()
        {
            return None;
        }
        let span = |k: usize, d: usize| ((k - 1) * d) as isize;
        let pad = Pad {
            top: span(g.kh, g.dil[0]) - g.pad[0] as isize,
            left: span(g.kw, g.dil[1]) - g.pad[1] as isize,
            hp: g.h + (g.kh - 1) * g.dil[0],
            wp: g.w + (g.kw - 1) * g.dil[1],
        };
        if !pad.reasonable(g.p, g.h * g.w) {
            return None;
        }
        Some((|| {
            let wd = dense::<f32>(w, "conv2d_backward_input")?;
            let wb = wd.as_slice::<f32>().unwrap_or_default();
            let dyv = View::<f32>::new(dy, "conv2d_backward_input")?;
            let (kh, kw) = (g.kh, g.kw);
            // Tap `(o, i, j)` of output channel `c` is weight `[o, c, kh-1-i, kw-1-j]`.
            let weight = |gi: usize, c: usize, k: usize| {
                let (o, ij) = (k / (kh * kw), k % (kh * kw));
                let (i, j) = (ij / kw, ij % kw);
                wb[(((gi * g.og + o) * g.cg + c) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)]
            };
            let corr = Corr::new(
                g.groups,
                (g.og, g.cg),
                (kh, kw),
                g.dil,
                pad,
                (g.h, g.w),
                1,
                weight,
            );
            let dx = corr.run(g.n, parallel(g), |n, buf| {
                pad_planes(buf, &dyv, n, (0, g.o), (g.oh, g.ow), &pad)
            });
            Ok(Tensor::from_host_unchecked(
                f32::into_buffer(dx),
                &[g.n, g.c, g.h, g.w],
            ))
        })())
    }

    /// The filter gradient, or `None` when the direct kernels do not apply.
    pub(super) fn backward_filter(
        x: &Tensor,
        dy: &Tensor,
        g: &Geom,
    ) -> Option<Result<Tensor, DeviceError>> {
        if g.n * g.o * g.kg == 0 {
            return None;
        }
        let pad = forward_pad(g)?;
        Some((|| {
            const OP: &str = "conv2d_backward_filter";
            let xv = View::<f32>::new(x, OP)?;
            let dyd = dense::<f32>(dy, OP)?;
            let dyb = dyd.as_slice::<f32>().unwrap_or_default();
            let kg = g.kg;
            let mut taps = Vec::with_capacity(kg);
            for c in 0..g.cg {
                for i in 0..g.kh {
                    for j in 0..g.kw {
                        taps.push((c * pad.hp + i * g.dil[0]) * pad.wp + j * g.dil[1]);
                    }
                }
            }
            let tile = FiltTile {
                plane: g.p,
                oh: g.oh,
                ow: g.ow,
                row_step: g.stride[0] * pad.wp,
                kg,
            };
            let group_planes = g.cg * pad.hp * pad.wp;
            // Every (group, channel block, tap block) of the gradient.
            let work: Vec<(usize, usize, usize, usize, usize)> = (0..g.groups)
                .flat_map(|gi| {
                    blocks(g.og, FILT_NO).flat_map(move |(o0, no)| {
                        blocks(kg, FILT_NK).map(move |(k0, nk)| (gi, o0, no, k0, nk))
                    })
                })
                .collect();
            // Adds image `n`'s contribution to the blocks `work` of `dw`.
            let add = |n: usize,
                       xp: &[f32],
                       work: &[(usize, usize, usize, usize, usize)],
                       dw: SharedMut| {
                for &(gi, o0, no, k0, nk) in work {
                    let o = gi * g.og + o0;
                    let d = dyb[(n * g.o + o) * g.p..].as_ptr();
                    let xs = xp[gi * group_planes..].as_ptr();
                    let out = dw.get().wrapping_add(o * kg + k0);
                    let tp = |k: usize| taps[k0 + k.min(nk - 1)];
                    // SAFETY: `available()` held when the padding was planned; `d` is
                    // channel `o` of image `n` of the dense `dy`, followed by `no - 1`
                    // more planes of the group; each tap reads rows `oy·stride + i·dil <
                    // hp` and columns `< ow + (kw - 1)·dil = wp` of the group's padded
                    // planes; `out` addresses rows `o .. o + no`, columns `k0 .. k0 + nk`
                    // of the `o × kg` gradient, which this task alone touches.
                    unsafe {
                        macro_rules! go {
                            ($no:literal, $nk:literal) => {
                                filt_tile::<$no, $nk>(d, xs, std::array::from_fn(tp), tile, out)
                            };
                        }
                        match (no, nk) {
                            (1, 1) => go!(1, 1),
                            (1, 2) => go!(1, 2),
                            (1, _) => go!(1, 3),
                            (2, 1) => go!(2, 1),
                            (2, 2) => go!(2, 2),
                            (2, _) => go!(2, 3),
                            (3, 1) => go!(3, 1),
                            (3, 2) => go!(3, 2),
                            (3, _) => go!(3, 3),
                            (_, 1) => go!(4, 1),
                            (_, 2) => go!(4, 2),
                            (_, _) => go!(4, 3),
                        }
                    }
                }
            };
            let fill =
                |n: usize, buf: &mut Vec<f32>| pad_planes(buf, &xv, n, (0, g.c), (g.h, g.w), &pad);
            let total = g.o * kg;
            let mut dw = vec![0.0f32; total];
            let par = parallel(g);
            if par && g.n > 1 {
                // A fixed split of the batch, summed in order, keeps the result independent
                // of which thread ran what. A few parts per thread let idle threads steal.
                let parts = g.n.min(4 * rayon::current_num_threads());
                let partials: Vec<Vec<f32>> = (0..parts)
                    .into_par_iter()
                    .map_init(Vec::new, |buf, part| {
                        let mut acc = vec![0.0f32; total];
                        for n in part * g.n / parts..(part + 1) * g.n / parts {
                            // After Ctrl-C the images left are not added; the result is
                            // discarded by `CpuDevice::exec`.
                            if crate::cancel::requested() {
                                break;
                            }
                            fill(n, buf);
                            add(n, buf, &work, SharedMut(acc.as_mut_ptr()));
                        }
                        acc
                    })
                    .collect();
                for part in &partials {
                    for (d, &s) in dw.iter_mut().zip(part) {
                        *d += s;
                    }
                }
            } else if par {
                let mut buf = Vec::new();
                fill(0, &mut buf);
                let out = SharedMut(dw.as_mut_ptr());
                work.par_iter()
                    .for_each(|w| add(0, &buf, std::slice::from_ref(w), out));
            } else {
                let mut buf = Vec::new();
                let out = SharedMut(dw.as_mut_ptr());
                for n in 0..g.n {
                    fill(n, &mut buf);
                    add(n, &buf, &work, out);
                }
            }
            Ok(Tensor::from_host_unchecked(
                f32::into_buffer(dw),
                &[g.o, g.cg, g.kh, g.kw],
            ))
        })())
    }
}

/// Without x86-64 there are no direct kernels: every case takes the `gemm` path.
#[cfg(not(target_arch = "x86_64"))]
mod direct {
    use super::Geom;
    use crate::{DeviceError, Tensor};

    pub(super) fn forward(_: &Tensor, _: &Tensor, _: &Geom) -> Option<Result<Tensor, DeviceError>> {
        None
    }

    pub(super) fn backward_input(
        _: &Tensor,
        _: &Tensor,
        _: &Geom,
    ) -> Option<Result<Tensor, DeviceError>> {
        None
    }

    pub(super) fn backward_filter(
        _: &Tensor,
        _: &Tensor,
        _: &Geom,
    ) -> Option<Result<Tensor, DeviceError>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use ir::{Conv2dParams, Op};

    use crate::{CpuDevice, Device, Tensor};

    /// A deterministic generator of values in `[-1, 1)`, so failures reproduce.
    fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    fn params(
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> Conv2dParams {
        Conv2dParams {
            stride,
            padding,
            dilation,
            groups,
        }
    }

    fn out_size(len: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
        (len + 2 * p - d * (k - 1) - 1) / s + 1
    }

    /// Calls `f(x index, w index, y index)` for every term of the naive convolution sum.
    fn for_each_term(
        xs: [usize; 4],
        ws: [usize; 4],
        p: &Conv2dParams,
        mut f: impl FnMut(usize, usize, usize),
    ) {
        let [n, c, h, w] = xs;
        let [o, cg, kh, kw] = ws;
        let oh = out_size(h, kh, p.stride[0], p.padding[0], p.dilation[0]);
        let ow = out_size(w, kw, p.stride[1], p.padding[1], p.dilation[1]);
        let og = o / p.groups;
        for ni in 0..n {
            for oi in 0..o {
                let grp = oi / og;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let yi = ((ni * o + oi) * oh + oy) * ow + ox;
                        for ci in 0..cg {
                            let cx = grp * cg + ci;
                            for i in 0..kh {
                                for j in 0..kw {
                                    let iy = (oy * p.stride[0] + i * p.dilation[0]) as isize
                                        - p.padding[0] as isize;
                                    let ix = (ox * p.stride[1] + j * p.dilation[1]) as isize
                                        - p.padding[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let xi = ((ni * c + cx) * h + iy as usize) * w + ix as usize;
                                    let wi = ((oi * cg + ci) * kh + i) * kw + j;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The naive results and, per result element, the sum of the absolute values of its
    /// terms (the scale of its rounding error).
    struct Naive {
        y: Vec<f64>,
        y_abs: Vec<f64>,
        dx: Vec<f64>,
        dx_abs: Vec<f64>,
        dw: Vec<f64>,
        dw_abs: Vec<f64>,
    }

    fn naive(
        x: &[f64],
        xs: [usize; 4],
        w: &[f64],
        ws: [usize; 4],
        dy: &[f64],
        p: &Conv2dParams,
    ) -> Naive {
        let mut r = Naive {
            y: vec![0.0; dy.len()],
            y_abs: vec![0.0; dy.len()],
            dx: vec![0.0; x.len()],
            dx_abs: vec![0.0; x.len()],
            dw: vec![0.0; w.len()],
            dw_abs: vec![0.0; w.len()],
        };
        for_each_term(xs, ws, p, |xi, wi, yi| {
            r.y[yi] += x[xi] * w[wi];
            r.y_abs[yi] += (x[xi] * w[wi]).abs();
            r.dx[xi] += w[wi] * dy[yi];
            r.dx_abs[xi] += (w[wi] * dy[yi]).abs();
            r.dw[wi] += x[xi] * dy[yi];
            r.dw_abs[wi] += (x[xi] * dy[yi]).abs();
        });
        r
    }

    fn close(what: &str, got: &Tensor, want: &[f64], scale: &[f64], shape: &[usize], rel: f64) {
        assert_eq!(got.shape(), shape, "{what}: shape");
        let got = got.to_f64_vec().expect("host tensor");
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (k, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
            assert!(
                (g - w).abs() <= rel * s + 1e-300,
                "{what}[{k}]: got {g}, want {w} (scale {s})"
            );
        }
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// A tensor of `shape` holding `data`, laid out as the transpose of its last two axes
    /// (a non-contiguous view) when `transposed`.
    fn tensor(data: &[f64], shape: [usize; 4], f32: bool, transposed: bool) -> Tensor {
        let make = |v: Vec<f64>, s: &[usize]| {
            if f32 {
                Tensor::from_vec(v.into_iter().map(|a| a as f32).collect(), s).expect("fills")
            } else {
                Tensor::from_vec(v, s).expect("fills")
            }
        };
        if !transposed {
            return make(data.to_vec(), &shape);
        }
        let [n, c, h, w] = shape;
        let mut t = vec![0.0; data.len()];
        for a in 0..n * c {
            for y in 0..h {
                for x in 0..w {
                    t[(a * w + x) * h + y] = data[(a * h + y) * w + x];
                }
            }
        }
        let base = make(t, &[n, c, w, h]);
        let view = CpuDevice::new()
            .exec(
                &Op::Transpose {
                    perm: vec![0, 1, 3, 2],
                },
                &[&base],
            )
            .expect("transpose");
        assert!(h <= 1 || w <= 1 || !view.is_contiguous());
        view
    }

    /// Runs all three kernels through the CPU device on random data and compares them
    /// with the naive sums; in f64 also checks the adjoint identities.
    fn check(xs: [usize; 4], ws: [usize; 4], p: Conv2dParams, f32: bool, transposed: bool) {
        let [n, _, h, w] = xs;
        let oh = out_size(h, ws[2], p.stride[0], p.padding[0], p.dilation[0]);
        let ow = out_size(w, ws[3], p.stride[1], p.padding[1], p.dilation[1]);
        let ys = [n, ws[0], oh, ow];
        let round = |v: Vec<f64>| -> Vec<f64> {
            if f32 {
                v.into_iter().map(|a| a as f32 as f64).collect()
            } else {
                v
            }
        };
        let xd = round(values(xs.iter().product(), 1));
        let wd = round(values(ws.iter().product(), 2));
        let dyd = round(values(ys.iter().product(), 3));
        let r = naive(&xd, xs, &wd, ws, &dyd, &p);
        let (xt, wt, dyt) = (
            tensor(&xd, xs, f32, transposed),
            tensor(&wd, ws, f32, transposed),
            tensor(&dyd, ys, f32, transposed),
        );
        let dev = CpuDevice::new();
        let y = dev
            .exec(&Op::Conv2d { params: p }, &[&xt, &wt])
            .expect("conv2d");
        let dx = dev
            .exec(
                &Op::Conv2dBackwardInput {
                    params: p,
                    input_hw: [h, w],
                },
                &[&dyt, &wt],
            )
            .expect("conv2d_backward_input");
        let dw = dev
            .exec(
                &Op::Conv2dBackwardFilter {
                    params: p,
                    kernel_hw: [ws[2], ws[3]],
                },
                &[&xt, &dyt],
            )
            .expect("conv2d_backward_filter");
        let rel = if f32 { 1e-5 } else { 1e-12 };
        let what = format!("{xs:?} * {ws:?} {p:?} f32={f32} transposed={transposed}");
        close(&format!("y of {what}"), &y, &r.y, &r.y_abs, &ys, rel);
        close(&format!("dx of {what}"), &dx, &r.dx, &r.dx_abs, &xs, rel);
        close(&format!("dw of {what}"), &dw, &r.dw, &r.dw_abs, &ws, rel);
        if !f32 {
            // <conv(x, w), dy> == <x, dx> == <w, dw>: each is the same sum of terms.
            let scale: f64 = r.y_abs.iter().zip(&dyd).map(|(a, b)| a * b.abs()).sum();
            let a = dot(&y.to_f64_vec().unwrap_or_default(), &dyd);
            let b = dot(&xd, &dx.to_f64_vec().unwrap_or_default());
            let c = dot(&wd, &dw.to_f64_vec().unwrap_or_default());
            assert!(
                (a - b).abs() <= 1e-12 * scale + 1e-300,
                "adjoint x: {a} vs {b} ({what})"
            );
            assert!(
                (a - c).abs() <= 1e-12 * scale + 1e-300,
                "adjoint w: {a} vs {c} ({what})"
            );
        }
    }

    fn check_all_layouts(xs: [usize; 4], ws: [usize; 4], p: Conv2dParams) {
        for f32 in [false, true] {
            for transposed in [false, true] {
                check(xs, ws, p, f32, transposed);
            }
        }
    }

    #[test]
    fn plain_and_padded() {
        check_all_layouts(
            [2, 3, 7, 6],
            [4, 3, 3, 3],
            params([1, 1], [0, 0], [1, 1], 1),
        );
        check_all_layouts(
            [2, 3, 7, 6],
            [4, 3, 3, 3],
            params([1, 1], [1, 1], [1, 1], 1),
        );
        check_all_layouts(
            [2, 3, 7, 6],
            [4, 3, 3, 3],
            params([1, 1], [2, 0], [1, 1], 1),
        );
    }

    #[test]
    fn strided() {
        check_all_layouts(
            [2, 3, 9, 8],
            [4, 3, 3, 3],
            params([2, 2], [1, 1], [1, 1], 1),
        );
        check_all_layouts(
            [2, 2, 9, 10],
            [3, 2, 3, 2],
            params([3, 2], [1, 0], [1, 1], 1),
        );
        // A stride larger than the kernel skips input positions entirely.
        check_all_layouts(
            [1, 2, 11, 11],
            [2, 2, 2, 2],
            params([4, 3], [1, 1], [1, 1], 1),
        );
    }

    #[test]
    fn dilated() {
        check_all_layouts(
            [1, 2, 10, 9],
            [3, 2, 3, 2],
            params([1, 1], [2, 1], [2, 2], 1),
        );
        check_all_layouts(
            [2, 2, 12, 12],
            [2, 2, 3, 3],
            params([2, 1], [1, 3], [2, 3], 1),
        );
    }

    #[test]
    fn grouped_and_depthwise() {
        check_all_layouts(
            [2, 4, 6, 7],
            [6, 2, 3, 3],
            params([1, 1], [1, 1], [1, 1], 2),
        );
        check_all_layouts(
            [2, 6, 8, 7],
            [6, 2, 3, 3],
            params([2, 1], [1, 0], [1, 2], 3),
        );
        // Depthwise, plain and with a channel multiplier of two.
        check_all_layouts(
            [2, 5, 6, 6],
            [5, 1, 3, 3],
            params([1, 1], [1, 1], [1, 1], 5),
        );
        check_all_layouts(
            [2, 5, 6, 6],
            [10, 1, 3, 3],
            params([2, 2], [1, 1], [1, 1], 5),
        );
    }

    #[test]
    fn pointwise() {
        // The direct path (no im2col), then 1×1 kernels that still need it.
        check_all_layouts(
            [2, 4, 5, 6],
            [3, 4, 1, 1],
            params([1, 1], [0, 0], [1, 1], 1),
        );
        check_all_layouts(
            [2, 4, 5, 6],
            [4, 2, 1, 1],
            params([1, 1], [0, 0], [3, 3], 2),
        );
        check_all_layouts(
            [2, 4, 5, 6],
            [3, 4, 1, 1],
            params([2, 2], [0, 0], [1, 1], 1),
        );
        check_all_layouts(
            [2, 4, 5, 6],
            [3, 4, 1, 1],
            params([1, 1], [1, 1], [1, 1], 1),
        );
    }

    #[test]
    fn non_square_and_single_image() {
        check_all_layouts(
            [1, 3, 5, 11],
            [2, 3, 2, 4],
            params([1, 1], [0, 1], [1, 1], 1),
        );
        check_all_layouts(
            [1, 1, 13, 3],
            [1, 1, 4, 1],
            params([2, 1], [1, 0], [1, 1], 1),
        );
        // A kernel larger than the image, reaching into the padding on every side.
        check_all_layouts(
            [1, 1, 2, 2],
            [1, 1, 5, 5],
            params([1, 1], [2, 2], [1, 1], 1),
        );
    }

    #[test]
    fn large_enough_to_run_in_parallel() {
        // Batch-parallel, and a single image where gemm takes the threads.
        check(
            [8, 3, 16, 16],
            [8, 3, 3, 3],
            params([1, 1], [1, 1], [1, 1], 1),
            false,
            false,
        );
        check(
            [8, 3, 16, 16],
            [8, 3, 3, 3],
            params([1, 1], [1, 1], [1, 1], 1),
            true,
            true,
        );
        check(
            [1, 8, 40, 40],
            [16, 8, 3, 3],
            params([1, 1], [1, 1], [1, 1], 1),
            false,
            true,
        );
        check(
            [1, 8, 40, 40],
            [16, 8, 3, 3],
            params([1, 1], [1, 1], [1, 1], 1),
            true,
            false,
        );
        check(
            [4, 16, 20, 20],
            [8, 16, 1, 1],
            params([1, 1], [0, 0], [1, 1], 1),
            false,
            false,
        );
    }

    #[test]
    fn im2col_split_into_blocks() {
        // 64·5·5 = 1600 im2col rows leave room for only 40 output positions per block
        // (32·5·5 for 81), so blocks start and end inside output rows.
        check(
            [2, 64, 12, 13],
            [4, 64, 5, 5],
            params([1, 1], [2, 2], [1, 1], 1),
            false,
            false,
        );
        check(
            [2, 64, 12, 13],
            [4, 32, 5, 5],
            params([2, 1], [1, 2], [1, 1], 2),
            true,
            true,
        );
    }

    #[test]
    fn empty_operands() {
        // No images, an empty image axis (all padding), no input or output channels.
        for (xs, ws, p) in [
            (
                [0, 3, 5, 5],
                [4, 3, 3, 3],
                params([1, 1], [1, 1], [1, 1], 1),
            ),
            (
                [1, 2, 0, 3],
                [2, 2, 1, 1],
                params([1, 1], [1, 1], [1, 1], 1),
            ),
            (
                [2, 0, 4, 4],
                [4, 0, 3, 3],
                params([1, 1], [1, 1], [1, 1], 1),
            ),
            (
                [2, 3, 4, 4],
                [0, 3, 3, 3],
                params([1, 1], [1, 1], [1, 1], 1),
            ),
            (
                [0, 4, 5, 5],
                [2, 2, 1, 1],
                params([1, 1], [0, 0], [1, 1], 2),
            ),
        ] {
            check_all_layouts(xs, ws, p);
        }
    }

    #[test]
    fn direct_kernel_shapes() {
        // Output channel counts that use every block size of the direct kernels, and widths
        // that end rows in partial vectors and partial tiles.
        for o in [1, 5, 7, 13, 16] {
            for w in [1, 9, 17, 37] {
                let p = params([1, 1], [1, 1], [1, 1], 1);
                check([2, 3, 5, w], [o, 3, 3, 3], p, true, false);
            }
        }
        let p = params([2, 1], [0, 1], [2, 2], 2);
        check([2, 4, 7, 21], [14, 2, 3, 2], p, true, true);
        // A stride along the width, or a reduction too long for the direct kernels, takes
        // the gemm path in f32 too.
        check(
            [1, 3, 6, 9],
            [4, 3, 3, 3],
            params([1, 2], [1, 1], [1, 1], 1),
            true,
            false,
        );
        check(
            [1, 120, 4, 5],
            [3, 120, 3, 3],
            params([1, 1], [1, 1], [1, 1], 1),
            true,
            false,
        );
    }

    /// The direct kernels must really run where they apply, or the tests above would only
    /// exercise the gemm path.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn direct_path_is_taken() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let p = params([1, 1], [1, 1], [1, 1], 1);
        let g = super::Geom::new([2, 3, 5, 5], [4, 3, 3, 3], [5, 5], &p);
        let zeros = |s: &[usize]| Tensor::from_vec(vec![0.0f32; s.iter().product()], s);
        let (x, w, dy) = (
            zeros(&[2, 3, 5, 5]).expect("fills"),
            zeros(&[4, 3, 3, 3]).expect("fills"),
            zeros(&[2, 4, 5, 5]).expect("fills"),
        );
        assert!(super::direct::forward(&x, &w, &g).is_some());
        assert!(super::direct::backward_input(&dy, &w, &g).is_some());
        assert!(super::direct::backward_filter(&x, &dy, &g).is_some());
    }

    #[test]
    fn float_dtypes_only() {
        let x = Tensor::from_vec(vec![1i32; 9], &[1, 1, 3, 3]).expect("fills");
        let w = Tensor::from_vec(vec![1i32; 1], &[1, 1, 1, 1]).expect("fills");
        let p = Conv2dParams::default();
        assert!(super::conv2d(&x, &w, &p, &[1, 1, 3, 3]).is_err());
        assert!(
            CpuDevice::new()
                .exec(&Op::Conv2d { params: p }, &[&x, &w])
                .is_err()
        );
    }
}
