//! Our own `f32` GEMM for large products on x86-64 CPUs with AVX2 + FMA or AVX-512.
//!
//! The design is the one of Goto's and the BLIS papers: pack B into `kc × nc` blocks that
//! live in L3 and A into `mc × kc` blocks that live in L2, both in the order the micro-kernel
//! reads them (`pack.rs`), and run a register-blocked micro-kernel over them inside the five
//! cache-blocking loops (`driver.rs`). There are two micro-kernels, `6 × 16` on AVX2 + FMA
//! (`kernel.rs`) and `12 × 32` on AVX-512 (`avx512.rs`); the driver and packing are generic
//! over the tile. The `gemm` crate stays in charge of everything else — `f64`, small
//! products and other architectures — because its blocking fell short of OpenBLAS at 1024²
//! and 2048² on both the AVX2 (Zen 3) and the AVX-512 (Zen 5) machines we measured.
//!
//! Only the micro-kernels use `unsafe` (their loads and stores); packing and the driver are
//! safe code over slices.

mod avx512;
mod driver;
mod kernel;
mod pack;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

pub(crate) use avx512::Avx512;
pub(crate) use driver::{BLOCKING_AVX2, BLOCKING_AVX512, Blocking, Product};
pub(crate) use kernel::Avx2Fma;
pub(crate) use pack::MatRef;

/// A register-blocked micro-kernel with `MR × NR` tiles, implemented by zero-sized tokens
/// that exist only on CPUs with the kernel's instructions.
pub(crate) trait MicroKernel<const MR: usize, const NR: usize>: Copy + Send + Sync {
    /// The kernel's loop over `kc` steps on raw pointers.
    ///
    /// # Safety
    /// `a` must be valid for `kc * MR` reads, `b` for `kc * NR` reads, and `c` for reads and
    /// writes of `NR` elements at each of `c + i * ldc`, `i < MR`, with C borrowed
    /// exclusively.
    unsafe fn tile_raw(
        self,
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    );

    /// `C[0..MR, 0..NR] = A·B` (or `+=` when `accumulate`), where `a` and `b` are packed
    /// micro-panels of the same number of steps (`a.len() / MR`) and `c` starts at the
    /// tile's first element, with row stride `ldc`.
    #[inline(always)]
    fn tile(self, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, accumulate: bool) {
        let kc = a.len() / MR;
        // The driver slices every argument to fit; checking once per tile (hundreds of FMAs)
        // is free, and makes the kernel's pointer arithmetic sound for any caller.
        assert!(
            b.len() >= kc * NR && ldc >= NR && c.len() >= (MR - 1) * ldc + NR,
            "gemm micro-kernel: operand slices do not cover the tile"
        );
        // SAFETY: the assertion above shows that the `kc` steps of A and B and the `MR` rows
        // of `NR` elements of C (row stride `ldc`) lie inside the slices, and `c` is a
        // unique borrow.
        unsafe { self.tile_raw(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, accumulate) }
    }
}

/// Implements [`MicroKernel`] for a CPU-feature token with one register-blocked loop, given
/// the instruction set's vector intrinsics. Each kernel keeps `MR` rows of two vectors of
/// C in registers for the whole reduction; per step it loads two vectors of B's row,
/// broadcasts `MR` elements of A's column and issues `2 · MR` independent FMAs. Rust's
/// `target_feature` lets LLVM allocate the accumulators to registers and schedule the FMAs;
/// the code only fixes the data flow. `a_lines` is how many cache lines of A's panel are
/// prefetched per four steps.
macro_rules! micro_kernel {
    (
        $token:ty, feature: $feature:literal, tile: ($mr:expr, $nr:expr), lanes: $lanes:expr,
        zero: $zero:path, load: $load:path, store: $store:path, add: $add:path,
        fma: $fma:path, splat: $splat:path, a_lines: $a_lines:expr $(,)?
    ) => {
        impl super::MicroKernel<$mr, $nr> for $token {
            #[target_feature(enable = $feature)]
            unsafe fn tile_raw(
                self,
                kc: usize,
                a: *const f32,
                b: *const f32,
                c: *mut f32,
                ldc: usize,
                accumulate: bool,
            ) {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                const ROWS: usize = $mr;
                const COLS: usize = $nr;
                // C's tile is read and written once, after the loop; asking for its lines
                // now lets the misses (C is far larger than any cache level the blocking
                // reserves for it) overlap with the FMAs instead of stalling the stores.
                for i in 0..ROWS {
                    let row = c.wrapping_add(i * ldc).cast::<i8>();
                    _mm_prefetch::<_MM_HINT_T0>(row);
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(COLS * 4 - 1));
                }
                let mut acc = [[$zero(); 2]; ROWS];
                // One reduction step. (A macro rather than a closure, so that it is certainly
                // compiled with this function's target features.)
                macro_rules! step {
                    ($p:expr) => {{
                        let p: usize = $p;
                        // SAFETY: `p < kc`, so step `p` of A's panel (`ROWS` elements) and
                        // of B's (`COLS`) lie inside the ranges the caller guarantees.
                        unsafe {
                            let pb = b.add(p * COLS);
                            let (b0, b1) = ($load(pb), $load(pb.add($lanes)));
                            for (i, row) in acc.iter_mut().enumerate() {
                                let x = $splat(*a.add(p * ROWS + i));
                                row[0] = $fma(x, b0, row[0]);
                                row[1] = $fma(x, b1, row[1]);
                            }
                        }
                    }};
                }
                // Four steps per iteration, with a prefetch of A's panel a few lines ahead:
                // A streams from L2 and, unlike B, is not reused from L1.
                let mut p = 0;
                while p + 4 <= kc {
                    let ahead = a.wrapping_add((p + 16) * ROWS).cast::<i8>();
                    for line in 0..$a_lines {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line));
                    }
                    step!(p);
                    step!(p + 1);
                    step!(p + 2);
                    step!(p + 3);
                    p += 4;
                }
                while p < kc {
                    step!(p);
                    p += 1;
                }
                for (i, row) in acc.iter().enumerate() {
                    // SAFETY: row `i < ROWS` of the tile is `c[i*ldc .. i*ldc + COLS]`, which
                    // the caller guarantees is valid for reads and writes.
                    unsafe {
                        let p = c.add(i * ldc);
                        let (mut v0, mut v1) = (row[0], row[1]);
                        if accumulate {
                            v0 = $add(v0, $load(p));
                            v1 = $add(v1, $load(p.add($lanes)));
                        }
                        $store(p, v0);
                        $store(p.add($lanes), v1);
                    }
                }
            }
        }
    };
}
use micro_kernel;

/// Which of our micro-kernels runs a product.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Isa {
    Avx2Fma(Avx2Fma),
    Avx512(Avx512),
}

impl Isa {
    /// The fastest kernel this CPU has, if any.
    fn detect() -> Option<Isa> {
        Avx512::detect()
            .map(Isa::Avx512)
            .or_else(|| Avx2Fma::detect().map(Isa::Avx2Fma))
    }

    /// Every kernel this CPU can run (the tests check each one).
    #[cfg(test)]
    pub(crate) fn all() -> Vec<Isa> {
        let avx512 = Avx512::detect().map(Isa::Avx512);
        let avx2 = Avx2Fma::detect().map(Isa::Avx2Fma);
        avx512.into_iter().chain(avx2).collect()
    }

    /// The cache blocking this kernel was tuned with.
    pub(crate) fn blocking(self) -> Blocking {
        match self {
            Isa::Avx2Fma(_) => BLOCKING_AVX2,
            Isa::Avx512(_) => BLOCKING_AVX512,
        }
    }

    /// Below this many multiply-adds per matrix the `gemm` crate stays in charge, given
    /// whether A's and B's rows are contiguous (a row-major operand, not a transposed view).
    /// On the AVX2 machine the crate was level with or ahead of ours up to 512³. On the
    /// AVX-512 machine (2 threads, GFLOP/s, crate / ours) it is ahead on row-major operands up
    /// to 1024³ (470 / 451) and behind from 1536³ (439 / 454; 2048³: 410 / 457), but our
    /// packing copes far better with transposed views: `x @ w.T` at 256 × 512 × 512 ran at
    /// 260 / 360 and at 512 × 1024 × 1024 at 300 / 396, and `x.T @ y` at 1024 × 512 × 1024
    /// at 372 / 450 (at 512 × 256 × 512 the crate was still ahead, 405 / 364).
    fn min_macs(self, a_rows_contiguous: bool, b_rows_contiguous: bool) -> usize {
        match self {
            Isa::Avx2Fma(_) => 2 * 512 * 512 * 512,
            Isa::Avx512(_) if !b_rows_contiguous => 256 * 256 * 256,
            Isa::Avx512(_) if !a_rows_contiguous => 640 * 640 * 640,
            Isa::Avx512(_) => 1280 * 1280 * 1280,
        }
    }
}

/// Computes `prod` into `c` (see [`driver::sgemm`]) on `isa`'s kernel.
pub(crate) fn sgemm(isa: Isa, blocking: Blocking, prod: &Product, c: &mut [f32], parallel: bool) {
    match isa {
        Isa::Avx2Fma(k) => driver::sgemm(k, blocking, prod, c, parallel),
        Isa::Avx512(k) => driver::sgemm(k, blocking, prod, c, parallel),
    }
}

/// Products this thin in M or N waste most of a tile; the `gemm` crate has matrix-vector
/// paths for them.
const MIN_SIDE: usize = 32;

/// The kernel when our GEMM should compute an `m × k` by `k × n` `f32` product on this CPU,
/// `None` when the `gemm` crate should. `a_rows` and `b_rows` say whether the operands'
/// rows are contiguous (unit column stride).
pub(crate) fn choose(m: usize, n: usize, k: usize, a_rows: bool, b_rows: bool) -> Option<Isa> {
    static ISA: OnceLock<Option<Isa>> = OnceLock::new();
    let isa = *ISA.get_or_init(Isa::detect);
    let macs = m.saturating_mul(n).saturating_mul(k);
    isa.filter(|isa| macs >= isa.min_macs(a_rows, b_rows) && m.min(n) >= MIN_SIDE)
}
