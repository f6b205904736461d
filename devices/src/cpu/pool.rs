//! 2-D max and average pooling over NCHW input and their backward kernels.
//!
//! Each `[H, W]` plane is pooled independently, so the kernels are plain loops over windows,
//! split over the `N·C` planes with rayon when the work is large. Window bounds are clipped
//! to the image once per output row and column, so the inner loops never test for padding:
//! max pooling treats padding as `-inf` (the minimum for integers), which can never win
//! over an element of the image, and average pooling treats it as zero but still counts it
//! in the divisor (PyTorch's `count_include_pad=True`).

use ir::{DType, Pool2dParams, PoolOp};
use rayon::prelude::*;

use super::PAR_MIN_ELEMS;
use crate::{DeviceError, DeviceId, Elem, Tensor};

/// Element types max pooling runs on.
trait MaxElem: Elem {
    /// What padding counts as: below every value of the type.
    const LOWEST: Self;
    const ZERO: Self;
    /// Gradient accumulation. Integers wrap rather than panic on overflow.
    fn acc(self, other: Self) -> Self;
    /// True when `self` replaces `best` as the window's maximum: strictly greater (so the
    /// first of equal maxima wins), or a NaN over a number (so NaN propagates, as in
    /// PyTorch).
    #[inline(always)]
    fn beats(self, best: Self) -> bool {
        #[allow(clippy::eq_op)]
        let nan = |v: Self| v != v;
        // `|` and `&`, not `||` and `&&`: the same truth value, computed without branches
        // (short-circuits become jumps that random data mispredicts).
        (self > best) | (nan(self) & !nan(best))
    }
}

macro_rules! max_float {
    ($t:ty) => {
        impl MaxElem for $t {
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const ZERO: Self = 0.0;
            #[inline(always)]
            fn acc(self, other: Self) -> Self {
                self + other
            }
        }
    };
}

macro_rules! max_int {
    ($t:ty) => {
        impl MaxElem for $t {
            const LOWEST: Self = <$t>::MIN;
            const ZERO: Self = 0;
            #[inline(always)]
            fn acc(self, other: Self) -> Self {
                self.wrapping_add(other)
            }
        }
    };
}

max_float!(f32);
max_float!(f64);
max_int!(i32);
max_int!(i64);

/// Float types average pooling runs on.
trait AvgElem: MaxElem + std::ops::Div<Output = Self> {}
impl AvgElem for f32 {}
impl AvgElem for f64 {}

/// Pooling of NCHW `x` into shape `out`.
pub(crate) fn pool2d(
    op: PoolOp,
    x: &Tensor,
    p: &Pool2dParams,
    out: &[usize],
) -> Result<Tensor, DeviceError> {
    const NAME: &str = "pool2d";
    let g = Geom::new(x.shape(), out, p);
    if op == PoolOp::Max && is_2x2(p) {
        return match x.dtype() {
            DType::F32 => forward::<f32>(x, out, &g, max2x2_window, NAME),
            DType::F64 => forward::<f64>(x, out, &g, max2x2_window, NAME),
            DType::I32 => forward::<i32>(x, out, &g, max2x2_window, NAME),
            DType::I64 => forward::<i64>(x, out, &g, max2x2_window, NAME),
            dt => Err(unsupported(NAME, dt)),
        };
    }
    match (op, x.dtype()) {
        (PoolOp::Max, DType::F32) => forward::<f32>(x, out, &g, max_window, NAME),
        (PoolOp::Max, DType::F64) => forward::<f64>(x, out, &g, max_window, NAME),
        (PoolOp::Max, DType::I32) => forward::<i32>(x, out, &g, max_window, NAME),
        (PoolOp::Max, DType::I64) => forward::<i64>(x, out, &g, max_window, NAME),
        (PoolOp::Avg, DType::F32) => forward::<f32>(x, out, &g, avg_window, NAME),
        (PoolOp::Avg, DType::F64) => forward::<f64>(x, out, &g, avg_window, NAME),
        (_, dt) => Err(unsupported(NAME, dt)),
    }
}

/// Gradient of pooling: `(x, dy) -> dx` with the shape of `x`.
pub(crate) fn pool2d_backward(
    op: PoolOp,
    x: &Tensor,
    dy: &Tensor,
    p: &Pool2dParams,
) -> Result<Tensor, DeviceError> {
    const NAME: &str = "pool2d_backward";
    let g = Geom::new(x.shape(), dy.shape(), p);
    if op == PoolOp::Max && is_2x2(p) {
        return match x.dtype() {
            DType::F32 => backward::<f32>(x, dy, &g, max2x2_grad, NAME),
            DType::F64 => backward::<f64>(x, dy, &g, max2x2_grad, NAME),
            DType::I32 => backward::<i32>(x, dy, &g, max2x2_grad, NAME),
            DType::I64 => backward::<i64>(x, dy, &g, max2x2_grad, NAME),
            dt => Err(unsupported(NAME, dt)),
        };
    }
    match (op, x.dtype()) {
        (PoolOp::Max, DType::F32) => backward::<f32>(x, dy, &g, max_grad, NAME),
        (PoolOp::Max, DType::F64) => backward::<f64>(x, dy, &g, max_grad, NAME),
        (PoolOp::Max, DType::I32) => backward::<i32>(x, dy, &g, max_grad, NAME),
        (PoolOp::Max, DType::I64) => backward::<i64>(x, dy, &g, max_grad, NAME),
        (PoolOp::Avg, DType::F32) => backward::<f32>(x, dy, &g, avg_grad, NAME),
        (PoolOp::Avg, DType::F64) => backward::<f64>(x, dy, &g, avg_grad, NAME),
        (_, dt) => Err(unsupported(NAME, dt)),
    }
}

/// The pooling of nearly every CNN: 2x2 windows, stride 2, no padding. Every window then
/// lies whole inside the image (the output drops a last odd row or column) and no two
/// overlap, so a window is four loads at fixed offsets: the general loop, which clips each
/// window to the image and walks it element by element, spent about 2 ns per input element
/// on this case, ten times the memory's cost.
fn is_2x2(p: &Pool2dParams) -> bool {
    p.window == [2, 2] && p.stride == [2, 2] && p.padding == [0, 0]
}

/// The first maximum of a whole 2x2 window whose top-left corner is at row `y0`, column
/// `x0` (2x2/stride-2 pooling: see `is_2x2`): its position in the plane and its value, by
/// the same rule, `beats`, as `argmax`, so both give the same value and position.
#[inline(always)]
fn max2x2_at<T: MaxElem>(plane: &[T], w: usize, y0: usize, x0: usize) -> (usize, T) {
    let top = y0 * w + x0;
    let (mut at, mut best) = (top, plane[top]);
    // Selects rather than branches: on real activations which of the four wins is a coin
    // toss, and a mispredicted branch per window cost more than the loads.
    for i in [top + 1, top + w, top + w + 1] {
        let v = plane[i];
        let wins = v.beats(best);
        at = if wins { i } else { at };
        best = if wins { v } else { best };
    }
    (at, best)
}

fn unsupported(op: &'static str, dtype: DType) -> DeviceError {
    DeviceError::UnsupportedDType {
        op,
        dtype,
        device: DeviceId::Cpu,
    }
}

/// Sizes of a pooling, and each output row's and column's window clipped to the image.
#[derive(Debug)]
struct Geom {
    /// `N·C`: the number of independent planes.
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    /// Window area, padding included: the average's divisor.
    area: usize,
    /// For each output row, the input rows `y0 .. y1` of its window that are in the image.
    rows: Vec<(usize, usize)>,
    /// For each output column, likewise the input columns.
    cols: Vec<(usize, usize)>,
}

impl Geom {
    /// From the input shape, the output (or `dy`) shape, and the parameters. Missing dims
    /// read as zero, which only empties the loops (the dispatcher has checked the ranks).
    fn new(x: &[usize], out: &[usize], p: &Pool2dParams) -> Geom {
        let dim = |s: &[usize], i: usize| s.get(i).copied().unwrap_or(0);
        let (h, w, oh, ow) = (dim(x, 2), dim(x, 3), dim(out, 2), dim(out, 3));
        let clip = |len: usize, out: usize, k: usize, s: usize, pad: usize| -> Vec<_> {
            (0..out)
                .map(|q| {
                    let start = q * s;
                    let lo = start.saturating_sub(pad).min(len);
                    let hi = (start + k).saturating_sub(pad).min(len);
                    (lo, hi.max(lo))
                })
                .collect()
        };
        Geom {
            planes: dim(x, 0) * dim(x, 1),
            h,
            w,
            oh,
            ow,
            area: p.window[0] * p.window[1],
            rows: clip(h, oh, p.window[0], p.stride[0], p.padding[0]),
            cols: clip(w, ow, p.window[1], p.stride[1], p.padding[1]),
        }
    }

    /// True when the work is worth a fork-join.
    fn parallel(&self) -> bool {
        self.planes > 1 && self.planes * self.oh * self.ow * self.area >= PAR_MIN_ELEMS
    }
}

/// The elements of a tensor of type `T` in C order, copying only when it is not a C-order
/// run already.
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

/// Position (in the plane) and value of the window's first maximum in row-major order, or
/// `None` for a window with no element inside the image.
#[inline]
fn argmax<T: MaxElem>(
    plane: &[T],
    g: &Geom,
    (y0, y1, x0, x1): (usize, usize, usize, usize),
) -> Option<(usize, T)> {
    let mut best: Option<(usize, T)> = None;
    for y in y0..y1 {
        let row = &plane[y * g.w..(y + 1) * g.w];
        for (x, &v) in row[x0..x1].iter().enumerate() {
            match best {
                Some((_, b)) if !v.beats(b) => {}
                _ => best = Some((y * g.w + x0 + x, v)),
            }
        }
    }
    best
}

fn max_window<T: MaxElem>(plane: &[T], g: &Geom, win: (usize, usize, usize, usize)) -> T {
    argmax(plane, g, win).map_or(T::LOWEST, |(_, v)| v)
}

/// `max_window` for a whole 2x2 window (see `is_2x2`): four loads at fixed offsets.
fn max2x2_window<T: MaxElem>(
    plane: &[T],
    g: &Geom,
    (y0, _, x0, _): (usize, usize, usize, usize),
) -> T {
    max2x2_at(plane, g.w, y0, x0).1
}

/// `max_grad` for a whole 2x2 window (see `is_2x2`).
fn max2x2_grad<T: MaxElem>(
    dx: &mut [T],
    plane: &[T],
    g: &Geom,
    (y0, _, x0, _): (usize, usize, usize, usize),
    d: T,
) {
    let (at, _) = max2x2_at(plane, g.w, y0, x0);
    dx[at] = dx[at].acc(d);
}

fn avg_window<T: AvgElem>(
    plane: &[T],
    g: &Geom,
    (y0, y1, x0, x1): (usize, usize, usize, usize),
) -> T {
    let mut sum = T::ZERO;
    for y in y0..y1 {
        for &v in &plane[y * g.w + x0..y * g.w + x1] {
            sum = sum.acc(v);
        }
    }
    sum / T::from_f64(g.area as f64)
}

fn max_grad<T: MaxElem>(
    dx: &mut [T],
    plane: &[T],
    g: &Geom,
    win: (usize, usize, usize, usize),
    d: T,
) {
    if let Some((at, _)) = argmax(plane, g, win) {
        dx[at] = dx[at].acc(d);
    }
}

fn avg_grad<T: AvgElem>(
    dx: &mut [T],
    _plane: &[T],
    g: &Geom,
    (y0, y1, x0, x1): (usize, usize, usize, usize),
    d: T,
) {
    let share = d / T::from_f64(g.area as f64);
    for y in y0..y1 {
        for v in &mut dx[y * g.w + x0..y * g.w + x1] {
            *v = v.acc(share);
        }
    }
}

/// Pooling of every plane: `window` gives the value of one window from the input plane and
/// the window's part inside it, `(y0, y1, x0, x1)`. It is a type parameter rather than a
/// function pointer so that it is inlined into the loop over windows: called through a
/// pointer, the call and the bounds checks it hides took most of a CNN step's pooling time.
fn forward<T: MaxElem>(
    x: &Tensor,
    shape: &[usize],
    g: &Geom,
    window: impl Fn(&[T], &Geom, (usize, usize, usize, usize)) -> T + Sync,
    op: &'static str,
) -> Result<Tensor, DeviceError> {
    let total = g.planes * g.oh * g.ow;
    let mut y = vec![T::ZERO; total];
    if total == 0 {
        return Ok(Tensor::from_host_unchecked(T::into_buffer(y), shape));
    }
    let xd = dense::<T>(x, op)?;
    let xs = xd.as_slice::<T>().unwrap_or_default();
    let hw = g.h * g.w;
    let one = |(k, out): (usize, &mut [T])| {
        // After Ctrl-C the planes left stay zero; `CpuDevice::exec` discards the result.
        if crate::cancel::requested() {
            return;
        }
        let plane = &xs[k * hw..(k + 1) * hw];
        for (oy, &(y0, y1)) in g.rows.iter().enumerate() {
            for (ox, &(x0, x1)) in g.cols.iter().enumerate() {
                out[oy * g.ow + ox] = window(plane, g, (y0, y1, x0, x1));
            }
        }
    };
    if g.parallel() {
        y.par_chunks_mut(g.oh * g.ow).enumerate().for_each(one);
    } else {
        y.chunks_mut(g.oh * g.ow).enumerate().for_each(one);
    }
    Ok(Tensor::from_host_unchecked(T::into_buffer(y), shape))
}

/// The gradient of pooling: `grad` adds the gradient `d` of one window's output into the
/// input plane's gradient (inlined for the same reason as `forward`'s `window`).
fn backward<T: MaxElem>(
    x: &Tensor,
    dy: &Tensor,
    g: &Geom,
    grad: impl Fn(&mut [T], &[T], &Geom, (usize, usize, usize, usize), T) + Sync,
    op: &'static str,
) -> Result<Tensor, DeviceError> {
    let shape = x.shape();
    let hw = g.h * g.w;
    let mut dx = vec![T::ZERO; g.planes * hw];
    if dx.is_empty() || g.oh * g.ow == 0 {
        return Ok(Tensor::from_host_unchecked(T::into_buffer(dx), shape));
    }
    let xd = dense::<T>(x, op)?;
    let xs = xd.as_slice::<T>().unwrap_or_default();
    let dyd = dense::<T>(dy, op)?;
    let dys = dyd.as_slice::<T>().unwrap_or_default();
    let ohw = g.oh * g.ow;
    let one = |(k, dxp): (usize, &mut [T])| {
        if crate::cancel::requested() {
            return;
        }
        let plane = &xs[k * hw..(k + 1) * hw];
        let dyp = &dys[k * ohw..(k + 1) * ohw];
        for (oy, &(y0, y1)) in g.rows.iter().enumerate() {
            for (ox, &(x0, x1)) in g.cols.iter().enumerate() {
                grad(dxp, plane, g, (y0, y1, x0, x1), dyp[oy * g.ow + ox]);
            }
        }
    };
    if g.parallel() {
        dx.par_chunks_mut(hw).enumerate().for_each(one);
    } else {
        dx.chunks_mut(hw).enumerate().for_each(one);
    }
    Ok(Tensor::from_host_unchecked(T::into_buffer(dx), shape))
}

#[cfg(test)]
mod tests {
    use ir::{Op, Pool2dParams, PoolOp};

    use crate::{CpuDevice, Device, Elem, Tensor};

    fn params(window: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Pool2dParams {
        Pool2dParams {
            window,
            stride,
            padding,
        }
    }

    fn run(op: PoolOp, x: &Tensor, dy: Option<&Tensor>, p: Pool2dParams) -> Tensor {
        let dev = CpuDevice::new();
        match dy {
            None => dev.exec(&Op::Pool2d { op, params: p }, &[x]),
            Some(dy) => dev.exec(&Op::Pool2dBackward { op, params: p }, &[x, dy]),
        }
        .expect("pooling runs")
    }

    /// The naive pooling of `x` (`[n, c, h, w]`) in f64 and its gradient for `dy`, written
    /// straight from the definition: every window position checked against the image.
    fn naive(
        op: PoolOp,
        x: &[f64],
        s: [usize; 4],
        dy: &[f64],
        p: &Pool2dParams,
    ) -> (Vec<f64>, Vec<f64>) {
        let [n, c, h, w] = s;
        let oh = (h + 2 * p.padding[0] - p.window[0]) / p.stride[0] + 1;
        let ow = (w + 2 * p.padding[1] - p.window[1]) / p.stride[1] + 1;
        let area = (p.window[0] * p.window[1]) as f64;
        let mut y = vec![0.0; n * c * oh * ow];
        let mut dx = vec![0.0; x.len()];
        for a in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = (a * oh + oy) * ow + ox;
                    let mut best: Option<(usize, f64)> = None;
                    let mut sum = 0.0;
                    let mut inside = Vec::new();
                    for i in 0..p.window[0] {
                        for j in 0..p.window[1] {
                            let iy = (oy * p.stride[0] + i) as isize - p.padding[0] as isize;
                            let ix = (ox * p.stride[1] + j) as isize - p.padding[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let xi = (a * h + iy as usize) * w + ix as usize;
                            inside.push(xi);
                            sum += x[xi];
                            if best.is_none_or(|(_, b)| x[xi] > b) {
                                best = Some((xi, x[xi]));
                            }
                        }
                    }
                    match op {
                        PoolOp::Max => {
                            y[yi] = best.map_or(f64::NEG_INFINITY, |(_, v)| v);
                            if let Some((xi, _)) = best {
                                dx[xi] += dy[yi];
                            }
                        }
                        PoolOp::Avg => {
                            y[yi] = sum / area;
                            for xi in inside {
                                dx[xi] += dy[yi] / area;
                            }
                        }
                    }
                }
            }
        }
        (y, dx)
    }

    /// Values with many ties: small integers.
    fn values(len: usize, seed: u64, levels: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % levels) as f64 - (levels / 2) as f64
            })
            .collect()
    }

    fn typed<T: Elem>(v: &[f64], s: &[usize]) -> Tensor {
        Tensor::from_vec(v.iter().map(|&a| T::from_f64(a)).collect::<Vec<T>>(), s).expect("fills")
    }

    fn check_typed<T: Elem>(op: PoolOp, s: [usize; 4], p: Pool2dParams, transposed: bool) {
        let x = values(s.iter().product(), 7, 5);
        let [n, c, h, w] = s;
        let oh = (h + 2 * p.padding[0] - p.window[0]) / p.stride[0] + 1;
        let ow = (w + 2 * p.padding[1] - p.window[1]) / p.stride[1] + 1;
        // Gradients are exact small multiples of 1/4 so that sums are exact in any order.
        let dy: Vec<f64> = values(n * c * oh * ow, 11, 9)
            .iter()
            .map(|v| v * 0.25)
            .collect();
        let (want_y, want_dx) = naive(op, &x, s, &dy, &p);
        let xt = if transposed {
            let mut t = vec![0.0; x.len()];
            for a in 0..n * c {
                for yy in 0..h {
                    for xx in 0..w {
                        t[(a * w + xx) * h + yy] = x[(a * h + yy) * w + xx];
                    }
                }
            }
            let base = typed::<T>(&t, &[n, c, w, h]);
            CpuDevice::new()
                .exec(
                    &Op::Transpose {
                        perm: vec![0, 1, 3, 2],
                    },
                    &[&base],
                )
                .expect("transpose")
        } else {
            typed::<T>(&x, &s)
        };
        let dyt = typed::<T>(&dy, &[n, c, oh, ow]);
        let y = run(op, &xt, None, p);
        let dx = run(op, &xt, Some(&dyt), p);
        assert_eq!(y.shape(), &[n, c, oh, ow]);
        assert_eq!(dx.shape(), &s);
        let tol = if T::DTYPE == ir::DType::F32 {
            1e-6
        } else {
            1e-12
        };
        let what = format!("{op:?} {s:?} {p:?} {:?}", T::DTYPE);
        for (k, (g, w)) in y
            .to_f64_vec()
            .unwrap_or_default()
            .iter()
            .zip(&want_y)
            .enumerate()
        {
            assert!(
                g == w || (g - w).abs() <= tol,
                "y[{k}] of {what}: {g} vs {w}"
            );
        }
        if T::DTYPE.is_int() {
            // Integer gradients truncate: compare with the naive routing of truncated dy.
            let dyi: Vec<f64> = dy.iter().map(|&v| T::from_f64(v).to_f64()).collect();
            let (_, want) = naive(op, &x, s, &dyi, &p);
            assert_eq!(dx.to_f64_vec().unwrap_or_default(), want, "dx of {what}");
        } else {
            for (k, (g, w)) in dx
                .to_f64_vec()
                .unwrap_or_default()
                .iter()
                .zip(&want_dx)
                .enumerate()
            {
                assert!((g - w).abs() <= tol, "dx[{k}] of {what}: {g} vs {w}");
            }
        }
    }

    fn check(op: PoolOp, s: [usize; 4], p: Pool2dParams) {
        for transposed in [false, true] {
            check_typed::<f64>(op, s, p, transposed);
            check_typed::<f32>(op, s, p, transposed);
            if op == PoolOp::Max {
                check_typed::<i32>(op, s, p, transposed);
                check_typed::<i64>(op, s, p, transposed);
            }
        }
    }

    #[test]
    fn max_first_of_ties_wins() {
        // Window 2×2, stride 1 over [[1, 3, 3], [2, 0, 3]]: both windows peak at 3, and the
        // first 3 in row-major order, at (0, 1), takes both gradients.
        let x =
            Tensor::from_vec(vec![1.0f64, 3.0, 3.0, 2.0, 0.0, 3.0], &[1, 1, 2, 3]).expect("fills");
        let dy = Tensor::from_vec(vec![10.0f64, 100.0], &[1, 1, 1, 2]).expect("fills");
        let p = params([2, 2], [1, 1], [0, 0]);
        assert_eq!(
            run(PoolOp::Max, &x, None, p).to_f64_vec(),
            Some(vec![3.0, 3.0])
        );
        assert_eq!(
            run(PoolOp::Max, &x, Some(&dy), p).to_f64_vec(),
            Some(vec![0.0, 110.0, 0.0, 0.0, 0.0, 0.0])
        );
        // A constant plane: every window's first element takes its gradient.
        let ones = Tensor::from_vec(vec![1i32; 9], &[1, 1, 3, 3]).expect("fills");
        let g = Tensor::from_vec(vec![1i32; 4], &[1, 1, 2, 2]).expect("fills");
        assert_eq!(
            run(PoolOp::Max, &ones, Some(&g), p).to_f64_vec(),
            Some(vec![1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
        );
    }

    /// The 2x2/stride-2 path (`max2x2_*`) keeps the general rules: the first of equal maxima
    /// in row-major order takes the gradient, and a NaN beats every number and takes it too.
    #[test]
    fn max_2x2_ties_and_nans() {
        let p = params([2, 2], [2, 2], [0, 0]);
        // Two windows side by side: [[5, 5], [5, 1]] and [[2, NaN], [NaN, 9]].
        let x = Tensor::from_vec(
            vec![5.0f32, 5.0, 2.0, f32::NAN, 5.0, 1.0, f32::NAN, 9.0],
            &[1, 1, 2, 4],
        )
        .expect("fills");
        let dy = Tensor::from_vec(vec![10.0f32, 100.0], &[1, 1, 1, 2]).expect("fills");
        let y = run(PoolOp::Max, &x, None, p).to_f64_vec().expect("host");
        assert_eq!(y[0], 5.0);
        assert!(y[1].is_nan());
        assert_eq!(
            run(PoolOp::Max, &x, Some(&dy), p).to_f64_vec(),
            Some(vec![10.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 0.0])
        );
    }

    #[test]
    fn max_padding_never_wins() {
        // All-negative input: padding (-inf, or the minimum integer) must not be the max.
        let x = Tensor::from_vec(vec![-5i64, -7, -6, -8], &[1, 1, 2, 2]).expect("fills");
        let p = params([2, 2], [1, 1], [1, 1]);
        assert_eq!(
            run(PoolOp::Max, &x, None, p).to_f64_vec(),
            Some(vec![-5.0, -5.0, -7.0, -5.0, -5.0, -7.0, -6.0, -6.0, -8.0])
        );
    }

    #[test]
    fn max_nan_propagates() {
        let x = Tensor::from_vec(vec![1.0f32, f32::NAN, 2.0, 0.0], &[1, 1, 2, 2]).expect("fills");
        let y = run(PoolOp::Max, &x, None, params([2, 2], [2, 2], [0, 0]));
        assert!(y.to_f64_vec().is_some_and(|v| v[0].is_nan()));
    }

    #[test]
    fn avg_counts_padding() {
        // 2×2 ones, window 3 padded by 1: every window holds four ones out of nine.
        let x = Tensor::from_vec(vec![1.0f64; 4], &[1, 1, 2, 2]).expect("fills");
        let p = params([3, 3], [1, 1], [1, 1]);
        assert_eq!(
            run(PoolOp::Avg, &x, None, p).to_f64_vec(),
            Some(vec![4.0 / 9.0; 4])
        );
        let dy = Tensor::from_vec(vec![9.0f64; 4], &[1, 1, 2, 2]).expect("fills");
        assert_eq!(
            run(PoolOp::Avg, &x, Some(&dy), p).to_f64_vec(),
            Some(vec![4.0; 4])
        );
    }

    #[test]
    fn overlapping_padded_strided() {
        for op in [PoolOp::Max, PoolOp::Avg] {
            check(op, [2, 3, 7, 6], params([3, 3], [1, 1], [1, 1]));
            check(op, [2, 3, 7, 6], params([3, 2], [2, 1], [1, 0]));
            check(op, [1, 2, 9, 8], params([2, 2], [2, 2], [0, 0]));
            check(op, [1, 2, 9, 8], params([4, 3], [3, 2], [2, 1]));
            check(op, [2, 1, 5, 13], params([1, 5], [1, 3], [0, 2]));
        }
    }

    #[test]
    fn large_enough_to_run_in_parallel() {
        for op in [PoolOp::Max, PoolOp::Avg] {
            check(op, [4, 8, 32, 32], params([3, 3], [2, 2], [1, 1]));
            check(op, [4, 8, 32, 31], params([2, 2], [2, 2], [0, 0]));
        }
    }

    #[test]
    fn empty_operands() {
        for op in [PoolOp::Max, PoolOp::Avg] {
            check(op, [0, 3, 5, 5], params([2, 2], [2, 2], [0, 0]));
            check(op, [2, 0, 5, 5], params([2, 2], [1, 1], [1, 1]));
        }
        // An empty image axis with padding: windows with nothing inside.
        let x = Tensor::from_vec(Vec::<f64>::new(), &[1, 1, 0, 3]).expect("fills");
        let p = params([2, 2], [1, 1], [1, 1]);
        let y = run(PoolOp::Max, &x, None, p);
        assert_eq!(y.shape(), &[1, 1, 1, 4]);
        assert_eq!(y.to_f64_vec(), Some(vec![f64::NEG_INFINITY; 4]));
        assert_eq!(
            run(PoolOp::Avg, &x, None, p).to_f64_vec(),
            Some(vec![0.0; 4])
        );
        let dy = Tensor::from_vec(vec![1.0f64; 4], &[1, 1, 1, 4]).expect("fills");
        assert_eq!(run(PoolOp::Max, &x, Some(&dy), p).shape(), &[1, 1, 0, 3]);
    }
}
