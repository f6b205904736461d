//! The blocked driver: the loops around the micro-kernel that keep its operands in cache.
//!
//! For each block of `nc` columns of C and each block of `kc` reduction steps, B's
//! `kc × nc` block is packed once (in L3, shared by all threads); then every thread takes
//! its own rows of C, packs `mc × kc` blocks of A into a buffer of its own (sized for its
//! L2), and sweeps the micro-kernel over them: the outer sweep walks B's micro-panels (each
//! `kc × NR`, sized for L1) and the inner one A's micro-panels, so a B micro-panel is
//! reused from L1 for every row tile of the A block. The first reduction block stores into
//! C; later ones add to it, so C is written, never first cleared and accumulated.

use std::cell::Cell;

use rayon::prelude::*;

use super::MicroKernel;
use super::pack::{MatRef, PackBuf, pack_a_panel, pack_b};

/// Cache blocking, in elements: rows of A per packed block (`mc`), reduction steps per block
/// (`kc`) and columns of B per packed block (`nc`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocking {
    pub(crate) mc: usize,
    pub(crate) kc: usize,
    pub(crate) nc: usize,
}

/// For the AVX2 kernel (6 × 16 tiles), sized for the 2-core AMD EPYC (Zen 3) machine it was
/// tuned on, 32 KiB L1d and 512 KiB L2 per core, 32 MiB L3: a B micro-panel (`kc × NR`,
/// 16 KiB) takes half of L1 and leaves room for the A micro-panel streaming past it, an A
/// block (`mc × kc`, 144 KiB) stays in L2 together with the B micro-panels passing through,
/// and a B block (up to 4 MiB) stays in L3. Other choices tried there (mc 72–240, kc
/// 192–384) measured the same within the machine's noise.
pub(crate) const BLOCKING_AVX2: Blocking = Blocking {
    mc: 144,
    kc: 256,
    nc: 4096,
};

/// For the AVX-512 kernel (12 × 32 tiles), measured on a 2-core Zen 5 EPYC (48 KiB L1d and
/// 1 MiB L2 per core, 32 MiB L3). Long reductions pay most there: every reduction block reads
/// and writes all of C once more, and with `kc` 256 those passes cost a tenth of the 2048²
/// product, while the kernel keeps its FMA rate with B's micro-panel (`kc × NR`, 128 KiB)
/// streaming from L2 and L3 instead of sitting in L1. One A micro-panel per block (`mc` = 12,
/// 48 KiB, the size of L1) measured as fast as two or four; `kc` 512 and 768 were 2–6% slower at
/// 1024² and 2048², and 1536 the same as 1024.
pub(crate) const BLOCKING_AVX512: Blocking = Blocking {
    mc: 12,
    kc: 1024,
    nc: 4096,
};

/// Micro-panels of B per packing task: 128 columns with the AVX2 kernel and 256 with the
/// AVX-512 one, long enough rows for the row-wise copy.
const B_GROUP: usize = 8;

thread_local! {
    /// Each thread's packed-A buffer, kept between calls so that packing does not pay for
    /// fresh pages every time. Taken out while in use, so a nested call on the same thread
    /// simply allocates its own.
    static A_BUF: Cell<PackBuf> = Cell::new(PackBuf::default());
    /// The calling thread's packed-B buffer, for the same reason.
    static B_BUF: Cell<PackBuf> = Cell::new(PackBuf::default());
}

/// One product `C = A · B`: an `m × k` A and a `k × n` B, with any strides.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Product<'a> {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) a: MatRef<'a>,
    pub(crate) b: MatRef<'a>,
}

/// Computes `prod` into `c`, the `m × n` result in row-major order (every element is
/// written; nothing is read from it first). With `parallel`, the work is spread over rayon's
/// threads. After Ctrl-C (`crate::cancel`) the blocks left are skipped and `c` is partly
/// written: the caller's result is then discarded by `CpuDevice::exec`.
pub(crate) fn sgemm<const MR: usize, const NR: usize, K: MicroKernel<MR, NR>>(
    kernel: K,
    blocking: Blocking,
    prod: &Product,
    c: &mut [f32],
    parallel: bool,
) {
    let Product { m, n, k, a, b } = *prod;
    let c = &mut c[..m * n];
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    // Blocks of equal size (`nc` rounded to whole micro-panels) rather than full blocks and
    // a small remainder: a 300-step reduction becomes 2 × 150, not 256 + 44.
    let kc = k.div_ceil(k.div_ceil(blocking.kc.max(1)));
    let nc = n
        .div_ceil(n.div_ceil(blocking.nc.max(NR)))
        .next_multiple_of(NR);
    let mc = blocking.mc.max(MR).next_multiple_of(MR);
    let threads = if parallel {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    // Rows of C per task: about one `mc` block each, in whole micro-panels, with the number
    // of tasks a multiple of the thread count so that no thread idles at the end (and enough
    // tasks that work stealing evens out a core the machine's other processes slow down).
    let rows_per_task = if threads == 1 {
        m
    } else {
        let tasks = m.div_ceil(mc).next_multiple_of(threads);
        m.div_ceil(tasks).next_multiple_of(MR)
    };

    let mut b_buf = B_BUF.take();
    let bpack = b_buf.slice(kc * nc);
    'blocks: for jc in (0..n).step_by(nc) {
        let ncur = nc.min(n - jc);
        for pc in (0..k).step_by(kc) {
            if crate::cancel::requested() {
                break 'blocks;
            }
            let kcur = kc.min(k - pc);
            let bp = &mut bpack[..ncur.div_ceil(NR) * kcur * NR];
            // Threads pack groups of `B_GROUP` micro-panels each.
            let pack = |(t, dst): (usize, &mut [f32])| {
                let j = t * B_GROUP * NR;
                pack_b::<NR>(&b, pc, kcur, jc + j, (B_GROUP * NR).min(ncur - j), dst);
            };
            if parallel {
                bp.par_chunks_mut(B_GROUP * kcur * NR)
                    .enumerate()
                    .for_each(pack);
            } else {
                pack_b::<NR>(&b, pc, kcur, jc, ncur, bp);
            }
            let bp = &*bp;
            let block = Block::<MR, NR, K> {
                kernel,
                mc,
                pc,
                kcur,
                jc,
                ncur,
                ldc: n,
                accumulate: pc > 0,
            };
            let run = |(t, rows): (usize, &mut [f32])| block.rows(&a, t * rows_per_task, bp, rows);
            if parallel {
                c.par_chunks_mut(rows_per_task * n)
                    .enumerate()
                    .for_each(run);
            } else {
                c.chunks_mut(rows_per_task * n).enumerate().for_each(run);
            }
        }
    }
    B_BUF.set(b_buf);
}

/// One (column block, reduction block) step of the driver, shared by all tasks.
#[derive(Clone, Copy)]
struct Block<const MR: usize, const NR: usize, K> {
    kernel: K,
    mc: usize,
    /// First reduction step and number of steps.
    pc: usize,
    kcur: usize,
    /// First column and number of columns.
    jc: usize,
    ncur: usize,
    /// Row stride of C.
    ldc: usize,
    accumulate: bool,
}

impl<const MR: usize, const NR: usize, K: MicroKernel<MR, NR>> Block<MR, NR, K> {
    /// Updates `c`, whole rows of C starting at row `row0`, with the packed B block `bp`.
    fn rows(&self, a: &MatRef, row0: usize, bp: &[f32], c: &mut [f32]) {
        let Block {
            kernel,
            mc,
            pc,
            kcur,
            jc,
            ncur,
            ldc,
            accumulate,
        } = *self;
        let m = c.len() / ldc;
        let mut a_buf = A_BUF.take();
        let apack = a_buf.slice(mc * kcur);
        for ic in (0..m).step_by(mc) {
            if crate::cancel::requested() {
                break;
            }
            let mcur = mc.min(m - ic);
            let ap = &mut apack[..mcur.div_ceil(MR) * kcur * MR];
            for (t, panel) in ap.chunks_mut(kcur * MR).enumerate() {
                let i = ic + t * MR;
                pack_a_panel::<MR>(a, row0 + i, MR.min(mcur - t * MR), pc, kcur, panel);
            }
            let ap = &*ap;
            for (jt, bpanel) in bp.chunks_exact(kcur * NR).enumerate() {
                let j = jt * NR;
                let cols = NR.min(ncur - j);
                for (it, apanel) in ap.chunks_exact(kcur * MR).enumerate() {
                    let i = ic + it * MR;
                    let rows = MR.min(ic + mcur - i);
                    let tile = &mut c[i * ldc + jc + j..];
                    if rows == MR && cols == NR {
                        kernel.tile(apanel, bpanel, tile, ldc, accumulate);
                    } else {
                        partial_tile(kernel, apanel, bpanel, tile, ldc, (rows, cols), accumulate);
                    }
                }
            }
        }
        A_BUF.set(a_buf);
    }
}

/// The tile's top-left `rows × cols` block only, for tiles that cross the matrix edge: the
/// kernel computes the whole tile into a local buffer (the packed panels hold zeros past the
/// edge) and the valid part is copied out.
fn partial_tile<const MR: usize, const NR: usize, K: MicroKernel<MR, NR>>(
    kernel: K,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    (rows, cols): (usize, usize),
    accumulate: bool,
) {
    let mut tmp = [[0.0f32; NR]; MR];
    kernel.tile(a, b, tmp.as_flattened_mut(), NR, false);
    for (i, t) in tmp.iter().take(rows).enumerate() {
        let dst = &mut c[i * ldc..i * ldc + cols];
        if accumulate {
            for (d, &x) in dst.iter_mut().zip(t) {
                *d += x;
            }
        } else {
            dst.copy_from_slice(&t[..cols]);
        }
    }
}
