//! Reductions over any set of axes, and arg-reductions along one axis.
//!
//! After coalescing adjacent axes, a reduction of a contiguous tensor is one of two shapes:
//! "rows" (the reduced axes are innermost: each output is the fold of a contiguous run) or
//! "columns" (kept axes are innermost: each output element folds a strided column, which
//! is done by accumulating whole rows into a vector so the loop vectorises). Any other
//! pattern is permuted into rows first. Results are independent of the thread count:
//! work is split at fixed boundaries and partial results are combined in a fixed order.

use ir::{ArgOp, DType, ReduceOp};
use rayon::prelude::*;

use super::PAR_MIN_ELEMS;
use super::cast::cast;
use super::elementwise::Num;
use crate::{DeviceError, Elem, Tensor};

/// Elements folded per block before partial results are combined. Blocking keeps float
/// sums accurate (partials are small sums) and fixes the split points for parallelism.
const BLOCK: usize = 4096;

/// How one reduction folds elements.
trait Fold<T>: Copy + Send + Sync {
    fn identity(self) -> T;
    fn combine(self, a: T, b: T) -> T;
    /// Folds a contiguous run (see [`fold_run`]); `max` and `min` have a faster loop.
    #[inline(always)]
    fn fold_run(self, run: &[T]) -> T
    where
        T: Num,
    {
        fold_run(self, run)
    }
}

#[derive(Clone, Copy)]
struct Sum;
#[derive(Clone, Copy)]
struct Prod;
#[derive(Clone, Copy)]
struct Max;
#[derive(Clone, Copy)]
struct Min;

/// Extreme values of an element type, the identities of `max` and `min`.
pub(crate) trait Bounded {
    fn lowest() -> Self;
    fn highest() -> Self;
}
impl Bounded for f32 {
    fn lowest() -> Self {
        f32::NEG_INFINITY
    }
    fn highest() -> Self {
        f32::INFINITY
    }
}
impl Bounded for f64 {
    fn lowest() -> Self {
        f64::NEG_INFINITY
    }
    fn highest() -> Self {
        f64::INFINITY
    }
}
impl Bounded for i32 {
    fn lowest() -> Self {
        i32::MIN
    }
    fn highest() -> Self {
        i32::MAX
    }
}
impl Bounded for i64 {
    fn lowest() -> Self {
        i64::MIN
    }
    fn highest() -> Self {
        i64::MAX
    }
}

impl<T: Num> Fold<T> for Sum {
    #[inline(always)]
    fn identity(self) -> T {
        T::from_f64(0.0)
    }
    #[inline(always)]
    fn combine(self, a: T, b: T) -> T {
        a.add(b)
    }
}
impl<T: Num> Fold<T> for Prod {
    #[inline(always)]
    fn identity(self) -> T {
        T::from_f64(1.0)
    }
    #[inline(always)]
    fn combine(self, a: T, b: T) -> T {
        a.mul(b)
    }
}
impl<T: Num + Bounded> Fold<T> for Max {
    #[inline(always)]
    fn identity(self) -> T {
        T::lowest()
    }
    #[inline(always)]
    fn combine(self, a: T, b: T) -> T {
        a.maximum(b)
    }
    #[inline(always)]
    fn fold_run(self, run: &[T]) -> T {
        fold_run_extreme::<T, Self, true>(self, run)
    }
}
impl<T: Num + Bounded> Fold<T> for Min {
    #[inline(always)]
    fn identity(self) -> T {
        T::highest()
    }
    #[inline(always)]
    fn combine(self, a: T, b: T) -> T {
        a.minimum(b)
    }
    #[inline(always)]
    fn fold_run(self, run: &[T]) -> T {
        fold_run_extreme::<T, Self, false>(self, run)
    }
}

/// Reduction of `x` over `axes` (sorted, distinct, checked by `ir::infer`).
pub(crate) fn reduce(
    op: ReduceOp,
    x: &Tensor,
    axes: &[usize],
    keepdims: bool,
    out_dtype: DType,
) -> Result<Tensor, DeviceError> {
    // `sum`/`prod` of bool count in i64; `max`/`min` of bool are `any`/`all`, computed on
    // i64 too and cast back.
    if x.dtype() == DType::Bool {
        let wide = cast(x, DType::I64);
        let r = reduce(op, &wide, axes, keepdims, DType::I64)?;
        return Ok(if out_dtype == DType::Bool {
            cast(&r, DType::Bool)
        } else {
            r
        });
    }
    let out_shape: Vec<usize> = x
        .shape()
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    let data = match x.dtype() {
        DType::F32 => f32::into_buffer(reduce_typed::<f32>(op, x, axes)),
        DType::F64 => f64::into_buffer(reduce_typed::<f64>(op, x, axes)),
        DType::I32 => i32::into_buffer(reduce_typed::<i32>(op, x, axes)),
        DType::I64 => i64::into_buffer(reduce_typed::<i64>(op, x, axes)),
        dt => {
            return Err(DeviceError::UnsupportedDType {
                op: op.name(),
                dtype: dt,
                device: crate::DeviceId::Cpu,
            });
        }
    };
    Ok(Tensor::from_host_unchecked(data, &out_shape))
}

fn reduce_typed<T: Num + Bounded>(op: ReduceOp, x: &Tensor, axes: &[usize]) -> Vec<T> {
    match op {
        ReduceOp::Sum => reduce_with::<T, _>(Sum, x, axes),
        ReduceOp::Prod => reduce_with::<T, _>(Prod, x, axes),
        ReduceOp::Max => reduce_with::<T, _>(Max, x, axes),
        ReduceOp::Min => reduce_with::<T, _>(Min, x, axes),
    }
}

/// One row of a reduction over trailing axes, folded as [`reduce`] folds it: the fused
/// executor evaluates a group's rows into scratch and calls this on each, so that a fused
/// reduction gives the eager kernel's bits. For a contiguous operand whose reduced axes are
/// the trailing ones, `reduce_with` copies when they hold one element (all of size 1, so no
/// run is reduced) and otherwise folds each row with [`fold_blocked`]; an empty row gives
/// the identity either way.
pub(crate) fn fold_row<T: Num + Bounded>(op: ReduceOp, row: &[T]) -> T {
    if let [x] = row {
        return *x;
    }
    match op {
        ReduceOp::Sum => fold_blocked(Sum, row),
        ReduceOp::Prod => fold_blocked(Prod, row),
        ReduceOp::Max => fold_blocked(Max, row),
        ReduceOp::Min => fold_blocked(Min, row),
    }
}

/// Coalesced runs of axes: `(size, reduced)`.
fn runs(shape: &[usize], axes: &[usize]) -> Vec<(usize, bool)> {
    let mut out: Vec<(usize, bool)> = Vec::new();
    for (i, &d) in shape.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let red = axes.contains(&i);
        match out.last_mut() {
            Some((n, r)) if *r == red => *n *= d,
            _ => out.push((d, red)),
        }
    }
    out
}

fn reduce_with<T: Num, F: Fold<T>>(f: F, x: &Tensor, axes: &[usize]) -> Vec<T> {
    if x.numel() == 0 {
        // Reducing an empty axis gives the identity (0 for sum, 1 for prod); an empty kept
        // axis gives an empty result. `ir::infer` refuses max/min over an empty axis.
        let kept: usize = x
            .shape()
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .product();
        return vec![f.identity(); kept];
    }
    let xc = x.contiguous();
    let data = xc.as_slice::<T>().unwrap_or(&[]);
    let runs = runs(x.shape(), axes);
    let kept: usize = runs.iter().filter(|r| !r.1).map(|r| r.0).product();
    match runs.as_slice() {
        // Nothing is reduced (or only size-1 axes): a copy.
        _ if runs.iter().all(|r| !r.1) => data.to_vec(),
        // Reduced axes innermost: rows.
        [.., (_, true)] if runs.iter().filter(|r| r.1).count() == 1 => {
            let len = runs.last().map_or(1, |r| r.0);
            fold_rows(f, data, kept, len)
        }
        // Kept axes innermost, reduced in the middle: columns.
        [.., (red, true), (inner, false)] if runs.iter().filter(|r| r.1).count() == 1 => {
            let outer = kept / inner;
            fold_columns(f, data, outer, *red, *inner)
        }
        // Anything else: permute the reduced axes innermost, then rows.
        _ => {
            let rank = x.rank();
            let mut perm: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).collect();
            perm.extend(axes.iter().copied());
            let moved = x.transpose_view(&perm).contiguous();
            let len: usize = axes.iter().map(|&a| x.shape()[a]).product();
            fold_rows(f, moved.as_slice::<T>().unwrap_or(&[]), kept, len)
        }
    }
}

/// Folds a contiguous run with several independent accumulators so the loop vectorises.
#[inline(always)]
fn fold_run<T: Num, F: Fold<T>>(f: F, run: &[T]) -> T {
    const LANES: usize = 16;
    // A row shorter than the lanes (softmax over 10 classes) folds in order: setting up and
    // combining the lanes would cost more than the row itself.
    if run.len() < LANES {
        return run.iter().fold(f.identity(), |a, &v| f.combine(a, v));
    }
    let mut acc = [f.identity(); LANES];
    let mut chunks = run.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = f.combine(*a, v);
        }
    }
    finish_lanes(f, acc, chunks.remainder())
}

/// The end of a lane-wise fold: the elements past the last whole chunk folded in order, the
/// lanes combined pairwise (which keeps float sums balanced), then the two together.
#[inline(always)]
fn finish_lanes<T: Num, F: Fold<T>, const LANES: usize>(
    f: F,
    mut acc: [T; LANES],
    remainder: &[T],
) -> T {
    let total = remainder.iter().fold(f.identity(), |t, &v| f.combine(t, v));
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] = f.combine(acc[i], acc[i + width]);
        }
    }
    f.combine(acc[0], total)
}

/// [`fold_run`] for `max` (`MAX`) and `min`, with the same lanes and the same result to the
/// bit, in a loop that compiles to one `maxps`/`minps` per vector instead of the
/// NaN-propagating select of `combine`. Among non-NaN values `combine(a, v)` keeps `a` unless
/// `v` is strictly greater (less), which is exactly `if v > a { v } else { a }`, the operand
/// order of x86's `maxps(v, a)`; zeros of both signs therefore resolve as `combine` resolves
/// them. NaNs are only noted per lane (`v != v`), and a run that holds one is folded again by
/// [`fold_run`], so NaN results keep `combine`'s bits.
#[inline(always)]
fn fold_run_extreme<T: Num, F: Fold<T>, const MAX: bool>(f: F, run: &[T]) -> T {
    const LANES: usize = 16;
    if run.len() < LANES {
        return fold_run(f, run);
    }
    let mut acc = [f.identity(); LANES];
    let mut nan = [false; LANES];
    let mut chunks = run.chunks_exact(LANES);
    for c in &mut chunks {
        for ((a, n), &v) in acc.iter_mut().zip(&mut nan).zip(c) {
            let better = if MAX { v > *a } else { v < *a };
            *a = if better { v } else { *a };
            // `v != v` is true exactly for NaN, and never for integers.
            #[allow(clippy::eq_op)]
            let is_nan = v != v;
            *n |= is_nan;
        }
    }
    #[allow(clippy::eq_op)]
    let remainder_nan = chunks.remainder().iter().any(|&v| v != v);
    if nan.contains(&true) || remainder_nan {
        return fold_run(f, run);
    }
    finish_lanes(f, acc, chunks.remainder())
}

/// Folds a run block by block and combines the block results pairwise.
///
/// Never inlined, so that the eager kernel and the fused executor ([`fold_row`]) run one
/// compiled body. The values would agree anyway, but not always the bits of a NaN: x86
/// gives the first operand's NaN when both are NaN (say the default NaN that `inf - inf`
/// made and an input's), and LLVM may order a commutative operation's operands
/// differently in each place a loop is inlined into.
#[inline(never)]
fn fold_blocked<T: Num, F: Fold<T>>(f: F, run: &[T]) -> T {
    if run.len() <= BLOCK {
        return f.fold_run(run);
    }
    let partials: Vec<T> = if run.len() >= PAR_MIN_ELEMS {
        // Blocks that start after Ctrl-C fold nothing; `CpuDevice::exec` discards the result.
        run.par_chunks(BLOCK)
            .map(|c| {
                if crate::cancel::requested() {
                    f.identity()
                } else {
                    f.fold_run(c)
                }
            })
            .collect()
    } else {
        run.chunks(BLOCK).map(|c| f.fold_run(c)).collect()
    };
    pairwise(f, &partials)
}

fn pairwise<T: Num, F: Fold<T>>(f: F, v: &[T]) -> T {
    match v.len() {
        0 => f.identity(),
        1 => v[0],
        n => f.combine(pairwise(f, &v[..n / 2]), pairwise(f, &v[n / 2..])),
    }
}

fn fold_rows<T: Num, F: Fold<T>>(f: F, data: &[T], rows: usize, len: usize) -> Vec<T> {
    if len == 0 {
        return vec![f.identity(); rows];
    }
    if rows == 1 {
        return vec![fold_blocked(f, data)];
    }
    if data.len() >= PAR_MIN_ELEMS {
        let per_task = (PAR_MIN_ELEMS / len).max(1);
        let mut out = vec![f.identity(); rows];
        out.par_chunks_mut(per_task).enumerate().for_each(|(t, o)| {
            if crate::cancel::requested() {
                return;
            }
            for (i, d) in o.iter_mut().enumerate() {
                let r = t * per_task + i;
                *d = fold_blocked(f, &data[r * len..(r + 1) * len]);
            }
        });
        out
    } else {
        data.chunks(len).map(|row| fold_blocked(f, row)).collect()
    }
}

fn fold_columns<T: Num, F: Fold<T>>(
    f: F,
    data: &[T],
    outer: usize,
    red: usize,
    inner: usize,
) -> Vec<T> {
    // Fold `rows` consecutive rows of one outer slice into `dst` (a full-width vector).
    let fold_into = |dst: &mut [T], o: usize, rows: std::ops::Range<usize>| {
        for r in rows {
            let row = &data[(o * red + r) * inner..][..inner];
            for (d, &v) in dst.iter_mut().zip(row) {
                *d = f.combine(*d, v);
            }
        }
    };
    let mut out = vec![f.identity(); outer * inner];
    if data.len() < PAR_MIN_ELEMS {
        for (o, dst) in out.chunks_mut(inner).enumerate() {
            fold_into(dst, o, 0..red);
        }
        return out;
    }
    // Split the reduced rows into fixed blocks of about PAR_MIN_ELEMS elements; each block
    // folds into its own partial vector (sequential, cache-friendly reads), and the
    // partials are combined pairwise in block order, independently of the thread count.
    let rows_per_block = PAR_MIN_ELEMS.div_ceil(inner).max(1);
    let blocks = red.div_ceil(rows_per_block);
    for (o, dst) in out.chunks_mut(inner).enumerate() {
        let mut partials = vec![f.identity(); blocks * inner];
        partials
            .par_chunks_mut(inner)
            .enumerate()
            .for_each(|(b, part)| {
                if crate::cancel::requested() {
                    return;
                }
                let start = b * rows_per_block;
                fold_into(part, o, start..(start + rows_per_block).min(red));
            });
        let mut width = blocks;
        while width > 1 {
            let half = width.div_ceil(2);
            let (lo, hi) = partials.split_at_mut(half * inner);
            lo.par_chunks_mut(inner)
                .zip(hi[..(width - half) * inner].par_chunks(inner))
                .for_each(|(a, b)| {
                    for (x, &y) in a.iter_mut().zip(b) {
                        *x = f.combine(*x, y);
                    }
                });
            width = half;
        }
        dst.copy_from_slice(&partials[..inner]);
    }
    out
}

/// Index of the first maximum (or minimum) along `axis`, as `i64`. NaN counts as the
/// extreme value (NumPy: the first NaN wins).
pub(crate) fn arg_reduce(
    op: ArgOp,
    x: &Tensor,
    axis: usize,
    keepdims: bool,
) -> Result<Tensor, DeviceError> {
    let rank = x.rank();
    let mut perm: Vec<usize> = (0..rank).filter(|&a| a != axis).collect();
    perm.push(axis);
    let moved = x.transpose_view(&perm).contiguous();
    let len = x.shape()[axis];
    let mut out_shape = x.shape().to_vec();
    if keepdims {
        out_shape[axis] = 1;
    } else {
        out_shape.remove(axis);
    }
    let idx: Vec<i64> = crate::with_elem!(x.dtype(), T => {
        let data = moved.as_slice::<T>().unwrap_or(&[]);
        data.chunks(len.max(1)).map(|row| arg_row(op, row)).collect()
    }, else Vec::new());
    Ok(Tensor::from_host_unchecked(
        i64::into_buffer(idx),
        &out_shape,
    ))
}

fn arg_row<T: Elem>(op: ArgOp, row: &[T]) -> i64 {
    // `v != v` is true exactly for NaN, and never for integers or bools.
    #[allow(clippy::eq_op)]
    let is_nan = |v: T| v != v;
    let Some(&first) = row.first() else { return 0 };
    if is_nan(first) {
        return 0;
    }
    let (mut best, mut best_v) = (0usize, first);
    for (i, &v) in row.iter().enumerate().skip(1) {
        if is_nan(v) {
            return i as i64;
        }
        let better = match op {
            ArgOp::ArgMax => v > best_v,
            ArgOp::ArgMin => v < best_v,
        };
        if better {
            best = i;
            best_v = v;
        }
    }
    best as i64
}

#[cfg(test)]
mod tests {
    use super::{Fold, Max, Min, fold_run};

    /// Deterministic rows for lengths on both sides of the 16 lanes: a third with values
    /// ≤ 0 and zeros of both signs (so that the maximum is a zero whose sign depends on which
    /// zero is kept), a third with values ≥ 0 (the same for the minimum), and a third mixing
    /// infinities and, when `with_nan`, NaNs of both signs.
    fn rows(with_nan: bool) -> Vec<Vec<f32>> {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut out = Vec::new();
        for len in [15, 16, 17, 31, 32, 33, 100, 4096] {
            for r in 0..60 {
                let row = (0..len)
                    .map(|_| {
                        let x = next();
                        let v = ((x >> 40) as f32 / (1u64 << 20) as f32 - 8.0).round();
                        let zero = if x % 2 == 0 { 0.0 } else { -0.0 };
                        match (r % 3, (x >> 8) % 6) {
                            (0, 0 | 1) | (1, 0 | 1) => zero,
                            (0, _) => -v.abs(),
                            (1, _) => v.abs(),
                            (_, 0) => f32::INFINITY,
                            (_, 1) => f32::NEG_INFINITY,
                            (_, 2) if with_nan && x % 7 == 0 => f32::NAN,
                            (_, 2) if with_nan && x % 7 == 1 => -f32::NAN,
                            _ => v,
                        }
                    })
                    .collect();
                out.push(row);
            }
        }
        out
    }

    /// The fast `max`/`min` loop gives `fold_run`'s bits on every row: the sign of a zero
    /// maximum, infinities, and the canonical NaN of `combine` when a row holds any NaN.
    #[test]
    fn extreme_folds_match_the_generic_fold_to_the_bit() {
        for with_nan in [false, true] {
            for row in rows(with_nan) {
                let (fast, slow) = (Max.fold_run(&row), fold_run(Max, &row));
                assert_eq!(fast.to_bits(), slow.to_bits(), "max of {row:?}");
                let (fast, slow) = (Min.fold_run(&row), fold_run(Min, &row));
                assert_eq!(fast.to_bits(), slow.to_bits(), "min of {row:?}");
                let wide: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                let (fast, slow) = (Max.fold_run(&wide), fold_run(Max, &wide));
                assert_eq!(fast.to_bits(), slow.to_bits(), "f64 max of {row:?}");
                let ints: Vec<i32> = row.iter().map(|&v| v as i32).collect();
                assert_eq!(Max.fold_run(&ints), fold_run(Max, &ints));
                assert_eq!(Min.fold_run(&ints), fold_run(Min, &ints));
            }
        }
    }
}
