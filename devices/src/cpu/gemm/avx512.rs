//! The AVX-512 micro-kernel: one `12 × 32` tile of C from one packed micro-panel of A and one
//! of B.
//!
//! A 12 × 32 tile is 24 vectors of 16 lanes, held in 24 of the 32 `zmm` registers for the
//! whole reduction; each step loads two vectors of B, broadcasts twelve elements of A (LLVM
//! folds each broadcast into its FMA as an embedded `{1to16}` operand) and issues 24
//! independent FMAs. That is three times the accumulators needed to cover the FMA latency of
//! both pipes, and 14 loads per 24 FMAs, so the loop is bound by FMA throughput while B's
//! micro-panel sits in L1 and A's streams from L2. The tile is twice as tall as the AVX2
//! kernel's 6 × 16 for the same reason BLIS's Skylake-X kernel is: per element of C, it reads
//! half as many bytes of A and B.

use std::arch::x86_64::{
    __m512, _MM_HINT_T0, _mm_prefetch, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

use super::MicroKernel;

/// Rows of a micro-tile (elements of A broadcast per step).
pub(crate) const MR: usize = 12;
/// Columns of a micro-tile (two 16-lane vectors of B per step).
pub(crate) const NR: usize = 32;

/// Proof that the running CPU has AVX-512F: the only way to reach the kernel, so that its
/// `target_feature` code never runs where those instructions do not exist.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// The token, if the CPU has AVX-512F.
    pub(crate) fn detect() -> Option<Avx512> {
        is_x86_feature_detected!("avx512f").then_some(Avx512(()))
    }
}

impl MicroKernel<MR, NR> for Avx512 {
    #[inline(always)]
    unsafe fn tile_raw(
        self,
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: `self` exists only where AVX-512F was detected; the caller
        // guarantees the pointer ranges.
        unsafe { tile_avx512(kc, a, b, c, ldc, accumulate) }
    }
}

/// The register-blocked loop; as in the AVX2 kernel, the code fixes the data flow and LLVM
/// allocates the accumulators to registers.
///
/// # Safety
/// The CPU must have AVX-512F; `a` must be valid for `kc * MR` reads, `b` for `kc * NR`
/// reads, and `c` for reads and writes of `NR` elements at each of `c + i * ldc`, `i < MR`.
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // C's tile is read and written once, after the loop; asking for its two lines per row
    // now lets the misses overlap with the FMAs instead of stalling the stores.
    for i in 0..MR {
        let row = c.wrapping_add(i * ldc).cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(NR * 4 - 1));
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    macro_rules! step {
        ($p:expr) => {{
            let p: usize = $p;
            // SAFETY: `p < kc`, so `a[p*MR..(p+1)*MR]` and `b[p*NR..(p+1)*NR]` lie inside
            // the ranges the caller guarantees.
            unsafe {
                let pb = b.add(p * NR);
                let (b0, b1) = (_mm512_loadu_ps(pb), _mm512_loadu_ps(pb.add(16)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*a.add(p * MR + i));
                    row[0] = _mm512_fmadd_ps(x, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(x, b1, row[1]);
                }
            }
        }};
    }
    // Four steps per iteration read 192 bytes of A's panel, three cache lines: each is asked
    // for a few iterations ahead, since A streams from L2 and is not reused from L1.
    let mut p = 0;
    while p + 4 <= kc {
        let ahead = a.wrapping_add((p + 16) * MR).cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(ahead);
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128));
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
        // SAFETY: row `i < MR` of the tile is `c[i*ldc .. i*ldc + NR]`, which the caller
        // guarantees is valid for reads and writes.
        unsafe {
            let p = c.add(i * ldc);
            let (mut v0, mut v1): (__m512, __m512) = (row[0], row[1]);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_loadu_ps(p));
                v1 = _mm512_add_ps(v1, _mm512_loadu_ps(p.add(16)));
            }
            _mm512_storeu_ps(p, v0);
            _mm512_storeu_ps(p.add(16), v1);
        }
    }
}
