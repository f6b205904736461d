//! Packing: copies of operand blocks in the order the micro-kernel reads them.
//!
//! The micro-kernel (whose tile is `MR × NR`, the const parameters of these functions) walks
//! the reduction dimension one step at a time and at each step reads `MR` elements of a
//! column of A and `NR` elements of a row of B. Packing lays a block of A out as
//! *micro-panels* of `MR` rows (`kc` groups of `MR` consecutive elements) and a block of B as
//! micro-panels of `NR` columns (`kc` groups of `NR`), so that the kernel's loads are
//! unit-stride and the panels stay resident in the cache level they were sized for, whatever
//! the operands' strides. Rows or columns past the matrix edge are packed as zeros: the kernel
//! always computes a whole tile and the driver keeps only its valid part.
//!
//! All of this is safe code over slices; operands are addressed through [`MatRef`], whose
//! strides come from a validated tensor layout.

/// A strided, read-only matrix over a slice: element `(i, j)` is at
/// `offset + i * rs + j * cs`. Strides may be zero (broadcast) or negative (reversed views).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) offset: usize,
    pub(crate) rs: isize,
    pub(crate) cs: isize,
}

impl MatRef<'_> {
    /// The slice index of element `(i, j)`. Every element of the view lies inside `data`
    /// (tensor layouts are checked when views are made), so the sum is a valid index.
    #[inline(always)]
    fn index(&self, i: usize, j: usize) -> usize {
        (self.offset as isize + i as isize * self.rs + j as isize * self.cs) as usize
    }

    /// `len` consecutive elements starting at `(i, j)` when they are contiguous along the
    /// dimension whose stride is 1 (the caller checks which one).
    #[inline(always)]
    fn run(&self, i: usize, j: usize, len: usize) -> &[f32] {
        let start = self.index(i, j);
        &self.data[start..start + len]
    }
}

/// Packs rows `i0 .. i0 + rows` (`rows <= MR`) and reduction steps `p0 .. p0 + kc` of `a`
/// into one micro-panel: `panel[p * MR + i] = a[i0 + i, p0 + p]`, zero for `i >= rows`.
pub(crate) fn pack_a_panel<const MR: usize>(
    a: &MatRef,
    i0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    panel: &mut [f32],
) {
    let panel = &mut panel[..kc * MR];
    if a.cs == 1 {
        // Rows are contiguous (a plain row-major A): read `rows` streams, interleave them.
        let mut src: [&[f32]; MR] = [&[]; MR];
        for (i, s) in src.iter_mut().enumerate().take(rows) {
            *s = a.run(i0 + i, p0, kc);
        }
        if rows == MR {
            for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
                for (d, s) in dst.iter_mut().zip(&src) {
                    *d = s[p];
                }
            }
        } else {
            for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
                for (i, d) in dst.iter_mut().enumerate() {
                    *d = if i < rows { src[i][p] } else { 0.0 };
                }
            }
        }
    } else if a.rs == 1 {
        // Columns are contiguous (A is a transposed view): each step is one short copy.
        for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
            dst[..rows].copy_from_slice(a.run(i0, p0 + p, rows));
            dst[rows..].fill(0.0);
        }
    } else {
        for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = if i < rows {
                    a.data[a.index(i0 + i, p0 + p)]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Packs reduction steps `p0 .. p0 + kc` and columns `j0 .. j0 + cols` of `b` into
/// `cols.div_ceil(NR)` consecutive micro-panels of `kc * NR` elements each (see
/// [`pack_b_panel`]).
pub(crate) fn pack_b<const NR: usize>(
    b: &MatRef,
    p0: usize,
    kc: usize,
    j0: usize,
    cols: usize,
    dst: &mut [f32],
) {
    let panels = dst.chunks_exact_mut(kc * NR).take(cols.div_ceil(NR));
    if b.cs == 1 {
        // A row-major B is read row by row across all the panels: one panel at a time would
        // walk down `kc` rows for 64 bytes each, a new page every row or two of a wide
        // matrix, and spend its time on TLB misses.
        let mut panels: Vec<&mut [f32]> = panels.collect();
        for p in 0..kc {
            let row = b.run(p0 + p, j0, cols);
            for (t, panel) in panels.iter_mut().enumerate() {
                let dst = &mut panel[p * NR..(p + 1) * NR];
                match row.get(t * NR..(t + 1) * NR) {
                    Some(src) => dst.copy_from_slice(src),
                    None => {
                        let src = &row[t * NR..];
                        dst[..src.len()].copy_from_slice(src);
                        dst[src.len()..].fill(0.0);
                    }
                }
            }
        }
    } else {
        for (t, panel) in panels.enumerate() {
            let j = t * NR;
            pack_b_panel::<NR>(b, p0, kc, j0 + j, NR.min(cols - j), panel);
        }
    }
}

/// Packs reduction steps `p0 .. p0 + kc` and columns `j0 .. j0 + cols` (`cols <= NR`) of `b`
/// into one micro-panel: `panel[p * NR + j] = b[p0 + p, j0 + j]`, zero for `j >= cols`.
fn pack_b_panel<const NR: usize>(
    b: &MatRef,
    p0: usize,
    kc: usize,
    j0: usize,
    cols: usize,
    panel: &mut [f32],
) {
    let panel = &mut panel[..kc * NR];
    if b.cs == 1 {
        // Rows are contiguous (a plain row-major B): each step copies one row segment. The
        // full-width case is separate so that its copies have a constant length and compile
        // to two vector moves instead of a call to `memcpy`.
        if cols == NR {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                dst.copy_from_slice(b.run(p0 + p, j0, NR));
            }
        } else {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                dst[..cols].copy_from_slice(b.run(p0 + p, j0, cols));
                dst[cols..].fill(0.0);
            }
        }
    } else if b.rs == 1 {
        // Columns are contiguous (B is a transposed view, as in `x @ w.T`): read `cols`
        // streams and interleave them.
        let mut src: [&[f32]; NR] = [&[]; NR];
        for (j, s) in src.iter_mut().enumerate().take(cols) {
            *s = b.run(p0, j0 + j, kc);
        }
        if cols == NR {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                for (d, s) in dst.iter_mut().zip(&src) {
                    *d = s[p];
                }
            }
        } else {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = if j < cols { src[j][p] } else { 0.0 };
                }
            }
        }
    } else {
        for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
            for (j, d) in dst.iter_mut().enumerate() {
                *d = if j < cols {
                    b.data[b.index(p0 + p, j0 + j)]
                } else {
                    0.0
                };
            }
        }
    }
}

/// A reusable packing buffer whose working slice starts on a cache-line boundary, so that
/// the kernel's vector loads of a micro-panel never straddle two lines.
#[derive(Debug, Default)]
pub(crate) struct PackBuf {
    raw: Vec<f32>,
}

/// Elements per 64-byte cache line.
const LINE: usize = 64 / std::mem::size_of::<f32>();

impl PackBuf {
    /// A slice of `len` elements starting on a 64-byte boundary (where the allocator's
    /// address allows; otherwise merely unaligned, which is slower but still correct). Its
    /// contents are whatever the previous use left: packing overwrites every element it
    /// hands to the kernel.
    pub(crate) fn slice(&mut self, len: usize) -> &mut [f32] {
        let need = len + LINE;
        if self.raw.len() < need {
            // `zeroed` backs large buffers with transparent huge pages, which spares the
            // kernel's sweeps over a multi-megabyte B block most of their TLB misses.
            self.raw = crate::buffer::zeroed(need);
        }
        let off = self.raw.as_ptr().align_offset(64);
        let off = if off < LINE { off } else { 0 };
        &mut self.raw[off..off + len]
    }
}
