//! Walking several broadcast, strided operands in lockstep with a C-order output.
//!
//! Elementwise kernels see their operands as views broadcast to the output shape (stride 0
//! on stretched axes). [`RowPlan`] merges adjacent axes that are contiguous for every
//! operand at once (so `[1000, 1000]` + `[1000, 1000]` is one row of a million), then hands
//! out rows: for each row, the offset of its first element in every operand, its length and
//! each operand's stride along it. Kernels specialise the common inner strides (1 and 0) so
//! the inner loops vectorise.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::PAR_MIN_ELEMS;
use crate::{Elem, Tensor};

/// Rows of an N-operand elementwise walk. Operand layouts are already broadcast to `shape`.
pub(crate) struct RowPlan<const N: usize> {
    outer: Vec<usize>,
    outer_strides: [Vec<isize>; N],
    offsets: [isize; N],
    /// Length of each row (the innermost merged axis).
    pub(crate) inner: usize,
    /// Each operand's stride along a row.
    pub(crate) inner_strides: [isize; N],
}

impl<const N: usize> RowPlan<N> {
    /// Plans a walk over `shape` for operands with the given strides and offsets.
    pub(crate) fn new(shape: &[usize], strides: [&[isize]; N], offsets: [usize; N]) -> RowPlan<N> {
        // Merge axis i into axis i+1 when, for every operand, stepping once along axis i is
        // the same as stepping `shape[i+1]` times along axis i+1.
        let mut dims: Vec<usize> = Vec::new();
        let mut strs: [Vec<isize>; N] = std::array::from_fn(|_| Vec::new());
        for (ax, &d) in shape.iter().enumerate() {
            if d == 1 {
                continue;
            }
            let mergeable = !dims.is_empty()
                && (0..N).all(|k| *strs[k].last().unwrap_or(&0) == strides[k][ax] * d as isize);
            if mergeable {
                let last = dims.len() - 1;
                dims[last] *= d;
                for k in 0..N {
                    strs[k][last] = strides[k][ax];
                }
            } else {
                dims.push(d);
                for k in 0..N {
                    strs[k].push(strides[k][ax]);
                }
            }
        }
        let inner = dims.pop().unwrap_or(1);
        let inner_strides = std::array::from_fn(|k| strs[k].pop().unwrap_or(0));
        RowPlan {
            outer: dims,
            outer_strides: strs,
            offsets: offsets.map(|o| o as isize),
            inner,
            inner_strides,
        }
    }

    /// Offsets of the first element of row `r` in every operand.
    pub(crate) fn row_offsets(&self, mut r: usize) -> [usize; N] {
        let mut off = self.offsets;
        for ax in (0..self.outer.len()).rev() {
            let i = r % self.outer[ax];
            r /= self.outer[ax];
            for (k, o) in off.iter_mut().enumerate() {
                *o += i as isize * self.outer_strides[k][ax];
            }
        }
        off.map(|o| o as usize)
    }
}

/// Applies `f` to two broadcast operands, producing a C-order vector of `shape`.
pub(crate) fn map2<A: Elem, B: Elem, O: Elem>(
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
    f: impl Fn(A, B) -> O + Sync + Send,
) -> Vec<O> {
    if let Some(out) = map2_small(a, b, shape, &f) {
        return out;
    }
    let (av, bv) = (a.broadcast_view(shape), b.broadcast_view(shape));
    let (abuf, bbuf) = (
        av.buffer::<A>().unwrap_or(&[]),
        bv.buffer::<B>().unwrap_or(&[]),
    );
    let plan = RowPlan::new(
        shape,
        [&av.layout().strides, &bv.layout().strides],
        [av.layout().offset, bv.layout().offset],
    );
    let n: usize = shape.iter().product();
    let inner = plan.inner;
    if inner == 0 || n == 0 {
        return Vec::new();
    }
    let [sa, sb] = plan.inner_strides;
    let row = |r: usize, start: usize, dst: &mut [MaybeUninit<O>]| {
        let [oa, ob] = plan.row_offsets(r);
        let len = dst.len();
        let oa = (oa as isize + start as isize * sa) as usize;
        let ob = (ob as isize + start as isize * sb) as usize;
        match (sa, sb) {
            (1, 1) => {
                for ((d, &x), &y) in dst
                    .iter_mut()
                    .zip(&abuf[oa..oa + len])
                    .zip(&bbuf[ob..ob + len])
                {
                    d.write(f(x, y));
                }
            }
            (1, 0) => {
                let y = bbuf[ob];
                for (d, &x) in dst.iter_mut().zip(&abuf[oa..oa + len]) {
                    d.write(f(x, y));
                }
            }
            (0, 1) => {
                let x = abuf[oa];
                for (d, &y) in dst.iter_mut().zip(&bbuf[ob..ob + len]) {
                    d.write(f(x, y));
                }
            }
            _ => {
                for (i, d) in dst.iter_mut().enumerate() {
                    let x = abuf[(oa as isize + i as isize * sa) as usize];
                    let y = bbuf[(ob as isize + i as isize * sb) as usize];
                    d.write(f(x, y));
                }
            }
        }
    };
    filled(n, inner, &row)
}

/// `map2` without views or a row plan, for small contiguous operands that have the
/// result's shape or are a single element: the eager interpreter's usual case (`acc + b`,
/// `x * 0.5`), where those fixed costs would outweigh the arithmetic. `None` otherwise.
fn map2_small<A: Elem, B: Elem, O: Elem>(
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
    f: &impl Fn(A, B) -> O,
) -> Option<Vec<O>> {
    let n = shape.iter().product::<usize>();
    if n >= PAR_MIN_ELEMS {
        return None;
    }
    let (x, y) = (small_operand::<A>(a, shape)?, small_operand::<B>(b, shape)?);
    Some(match (x.len() == n, y.len() == n) {
        (true, true) => x.iter().zip(y).map(|(&x, &y)| f(x, y)).collect(),
        (true, false) => x.iter().map(|&x| f(x, y[0])).collect(),
        (false, true) => y.iter().map(|&y| f(x[0], y)).collect(),
        (false, false) => vec![f(x[0], y[0]); n],
    })
}

/// The elements of a contiguous operand of `map2_small` that has the result's shape or a
/// single element.
fn small_operand<'t, T: Elem>(t: &'t Tensor, shape: &[usize]) -> Option<&'t [T]> {
    if t.shape() == shape || t.numel() == 1 {
        t.as_slice()
    } else {
        None
    }
}

/// Applies `f` to three broadcast operands, producing a C-order vector of `shape`.
pub(crate) fn map3<A: Elem, B: Elem, C: Elem, O: Elem>(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    shape: &[usize],
    f: impl Fn(A, B, C) -> O + Sync + Send,
) -> Vec<O> {
    let (av, bv, cv) = (
        a.broadcast_view(shape),
        b.broadcast_view(shape),
        c.broadcast_view(shape),
    );
    let (abuf, bbuf, cbuf) = (
        av.buffer::<A>().unwrap_or(&[]),
        bv.buffer::<B>().unwrap_or(&[]),
        cv.buffer::<C>().unwrap_or(&[]),
    );
    let plan = RowPlan::new(
        shape,
        [
            &av.layout().strides,
            &bv.layout().strides,
            &cv.layout().strides,
        ],
        [av.layout().offset, bv.layout().offset, cv.layout().offset],
    );
    let n: usize = shape.iter().product();
    let inner = plan.inner;
    if inner == 0 || n == 0 {
        return Vec::new();
    }
    let [sa, sb, sc] = plan.inner_strides;
    let row = |r: usize, start: usize, dst: &mut [MaybeUninit<O>]| {
        let [oa, ob, oc] = plan.row_offsets(r);
        let oa = oa as isize + start as isize * sa;
        let ob = ob as isize + start as isize * sb;
        let oc = oc as isize + start as isize * sc;
        // Pieces of a row, each operand as a unit-stride slice (its buffer, a splat of its
        // one broadcast element, or a gather of its strided elements), so that the loop over
        // the piece vectorises whatever the strides: `where(mask, g, 0.0)` broadcasts its
        // last operand, which the element-by-element index loop ran about 4× slower.
        let (mut ta, mut tb, mut tc) = (
            [A::default(); PIECE],
            [B::default(); PIECE],
            [C::default(); PIECE],
        );
        for (p, dst) in dst.chunks_mut(PIECE).enumerate() {
            let at = (p * PIECE) as isize;
            let x = unit_run(abuf, oa + at * sa, sa, dst.len(), &mut ta);
            let y = unit_run(bbuf, ob + at * sb, sb, dst.len(), &mut tb);
            let z = unit_run(cbuf, oc + at * sc, sc, dst.len(), &mut tc);
            for (((d, &x), &y), &z) in dst.iter_mut().zip(x).zip(y).zip(z) {
                d.write(f(x, y, z));
            }
        }
    };
    filled(n, inner, &row)
}

/// Elements per piece of a row in [`map3`]: small enough for the scratch copies to stay in
/// L1, long enough to amortise setting a piece up.
const PIECE: usize = 256;

/// `len` elements of `buf` from `offset` with `stride`, as a unit-stride slice: the buffer
/// itself when the stride is 1, else a copy into `scratch` (one element repeated when the
/// stride is 0, a broadcast).
fn unit_run<'s, T: Elem>(
    buf: &'s [T],
    offset: isize,
    stride: isize,
    len: usize,
    scratch: &'s mut [T; PIECE],
) -> &'s [T] {
    match stride {
        1 => &buf[offset as usize..offset as usize + len],
        0 => {
            scratch[..len].fill(buf[offset as usize]);
            &scratch[..len]
        }
        _ => {
            for (i, s) in scratch[..len].iter_mut().enumerate() {
                *s = buf[(offset + i as isize * stride) as usize];
            }
            &scratch[..len]
        }
    }
}

/// A vector of `n` elements, rows of length `inner`, each written by `row(r, start, dst)`
/// for every part `dst` of row `r` that begins at element `start` of the row. The result
/// is allocated unfilled, since every element gets written: clearing it first would be a
/// whole extra pass over memory (a `memset` of reused memory, or the kernel zeroing fresh
/// pages). Large outputs run in parallel; a long row is split into pieces so that one huge
/// row still uses every thread. Once Ctrl-C is seen (`crate::cancel`) the pieces left are
/// skipped, and the result is then zeros, which `CpuDevice::exec` discards.
fn filled<O: Elem>(
    n: usize,
    inner: usize,
    row: &(impl Fn(usize, usize, &mut [MaybeUninit<O>]) + Sync),
) -> Vec<O> {
    let mut out = crate::buffer::unfilled::<O>(n);
    let dst = &mut out.spare_capacity_mut()[..n];
    let complete = if n < PAR_MIN_ELEMS {
        for (r, dst) in dst.chunks_mut(inner).enumerate() {
            row(r, 0, dst);
        }
        true
    } else if inner >= PAR_MIN_ELEMS {
        dst.chunks_mut(inner).enumerate().all(|(r, dst)| {
            dst.par_chunks_mut(PAR_MIN_ELEMS)
                .enumerate()
                .map(|(p, piece)| {
                    let go = !crate::cancel::requested();
                    if go {
                        row(r, p * PAR_MIN_ELEMS, piece);
                    }
                    go
                })
                .reduce(|| true, |a, b| a && b)
        })
    } else {
        let rows_per_task = (PAR_MIN_ELEMS / inner).max(1);
        dst.par_chunks_mut(inner * rows_per_task)
            .enumerate()
            .map(|(t, chunk)| {
                let go = !crate::cancel::requested();
                if go {
                    for (i, dst) in chunk.chunks_mut(inner).enumerate() {
                        row(t * rows_per_task + i, 0, dst);
                    }
                }
                go
            })
            .reduce(|| true, |a, b| a && b)
    };
    if !complete {
        return crate::buffer::zeroed(n);
    }
    // SAFETY: the capacity is at least `n` (`unfilled`), and no piece was skipped: the rows
    // cover `0..n` and each call of `row` wrote every element of its `dst`.
    unsafe { out.set_len(n) };
    out
}

#[cfg(test)]
mod tests {
    use super::map3;
    use crate::Tensor;

    /// `map3` against a plain loop over materialised operands, for rows that span several
    /// pieces (1000 elements), with each operand contiguous, broadcast (stride 0) or a
    /// transposed view (stride 3), so that every way `unit_run` builds a piece is used.
    #[test]
    fn map3_pieces_match_a_plain_loop_for_every_stride() {
        let shape = [3usize, 1000];
        let n = 3000;
        let mask: Vec<bool> = (0..n).map(|i| (i * 7) % 5 < 2).collect();
        let vals =
            |seed: usize| -> Vec<f32> { (0..n).map(|i| ((i * seed) % 97) as f32 - 48.0).collect() };
        let cond = [
            Tensor::from_vec(mask.clone(), &shape).unwrap(),
            Tensor::from_vec(vec![true], &[1]).unwrap(),
            Tensor::from_vec(mask, &[1000, 3])
                .unwrap()
                .transpose_view(&[1, 0]),
        ];
        let xs = [
            Tensor::from_vec(vals(3), &shape).unwrap(),
            Tensor::from_vec(vec![2.5f32], &[]).unwrap(),
            Tensor::from_vec(vals(5), &[1000, 3])
                .unwrap()
                .transpose_view(&[1, 0]),
            Tensor::from_vec(vals(11)[..1000].to_vec(), &[1000]).unwrap(),
        ];
        for c in &cond {
            for x in &xs {
                for y in &xs {
                    let got: Vec<f32> = map3(
                        c,
                        x,
                        y,
                        &shape,
                        |k: bool, a: f32, b: f32| {
                            if k { a } else { b - a }
                        },
                    );
                    let flat = |t: &Tensor| t.broadcast_view(&shape).contiguous();
                    let (cv, xv, yv) = (flat(c), flat(x), flat(y));
                    let (cv, xv, yv) = (
                        cv.as_slice::<bool>().unwrap(),
                        xv.as_slice::<f32>().unwrap(),
                        yv.as_slice::<f32>().unwrap(),
                    );
                    for i in 0..n {
                        let want = if cv[i] { xv[i] } else { yv[i] - xv[i] };
                        assert_eq!(got[i].to_bits(), want.to_bits(), "element {i}");
                    }
                }
            }
        }
    }
}
