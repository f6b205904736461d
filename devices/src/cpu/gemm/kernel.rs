//! The AVX2 + FMA micro-kernel: one `MR × NR` tile of C from one packed micro-panel of A and
//! one of B.
//!
//! A 6 × 16 tile is 12 vectors of 8 lanes, held in 12 of the 16 `ymm` registers for the
//! whole reduction; each step loads two vectors of B, broadcasts six elements of A and issues
//! 12 independent FMAs. Twelve independent accumulators cover the FMA latency (4 cycles) times
//! the two FMA pipes of current x86 cores, and the 8 loads per 12 FMAs stay within two loads
//! per cycle, so the loop is bound by FMA throughput alone while its operands come from L1
//! (B's micro-panel) and L2 (A's).

use std::arch::x86_64::{
    __m256, _MM_HINT_T0, _mm_prefetch, _mm256_add_ps, _mm256_broadcast_ss, _mm256_fmadd_ps,
    _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps,
};

use super::MicroKernel;

/// Rows of a micro-tile (elements of A broadcast per step).
pub(crate) const MR: usize = 6;
/// Columns of a micro-tile (two 8-lane vectors of B per step).
pub(crate) const NR: usize = 16;

/// Proof that the running CPU has AVX2 and FMA: the only way to reach the kernel, so that its
/// `target_feature` code never runs where those instructions do not exist.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Fma(());

impl Avx2Fma {
    /// The token, if the CPU has both features.
    pub(crate) fn detect() -> Option<Avx2Fma> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2Fma(()))
    }
}

impl MicroKernel<MR, NR> for Avx2Fma {
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
        // SAFETY: `self` exists only where AVX2 and FMA were detected; the caller
        // guarantees the pointer ranges.
        unsafe { tile_avx2(kc, a, b, c, ldc, accumulate) }
    }
}

/// The register-blocked loop. Rust's `target_feature` lets LLVM allocate the 12 accumulators
/// to `ymm` registers and schedule the FMAs; the code only fixes the data flow.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `a` must be valid for `kc * MR` reads, `b` for `kc * NR`
/// reads, and `c` for reads and writes of `NR` elements at each of `c + i * ldc`, `i < MR`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // C's tile is read and written once, after the loop; asking for its lines now lets the
    // misses (C is far larger than any cache level the blocking reserves for it) overlap with
    // the FMAs instead of stalling the stores.
    for i in 0..MR {
        let row = c.wrapping_add(i * ldc).cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(NR * 4 - 1));
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    // One reduction step: two vectors of B's row `p`, six broadcasts of A's column `p`. (A
    // macro rather than a closure, so that it is certainly compiled with this function's
    // target features.)
    macro_rules! step {
        ($p:expr) => {{
            let p: usize = $p;
            // SAFETY: `p < kc`, so `a[p*MR..(p+1)*MR]` and `b[p*NR..(p+1)*NR]` lie inside
            // the ranges the caller guarantees.
            unsafe {
                let pb = b.add(p * NR);
                let (b0, b1) = (_mm256_loadu_ps(pb), _mm256_loadu_ps(pb.add(8)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*a.add(p * MR + i));
                    row[0] = _mm256_fmadd_ps(x, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(x, b1, row[1]);
                }
            }
        }};
    }
    // Four steps per iteration, with one prefetch of A's panel (96 bytes per four steps)
    // a few lines ahead: A streams from L2 and, unlike B, is not reused from L1.
    let mut p = 0;
    while p + 4 <= kc {
        _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add((p + 16) * MR).cast::<i8>());
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
            let (mut v0, mut v1): (__m256, __m256) = (row[0], row[1]);
            if accumulate {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(p));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(p.add(8)));
            }
            _mm256_storeu_ps(p, v0);
            _mm256_storeu_ps(p.add(8), v1);
        }
    }
}
