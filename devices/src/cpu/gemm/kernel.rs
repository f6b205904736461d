//! The AVX2 + FMA micro-kernel: one `MR × NR` tile of C from one packed micro-panel of A and
//! one of B (the loop itself is `super::micro_kernel!`).
//!
//! A 6 × 16 tile is 12 vectors of 8 lanes, held in 12 of the 16 `ymm` registers for the
//! whole reduction; each step loads two vectors of B, broadcasts six elements of A and issues
//! 12 independent FMAs. Twelve independent accumulators cover the FMA latency (4 cycles) times
//! the two FMA pipes of current x86 cores, and the 8 loads per 12 FMAs stay within two loads
//! per cycle, so the loop is bound by FMA throughput alone while its operands come from L1
//! (B's micro-panel) and L2 (A's).

use std::arch::x86_64::{
    _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
    _mm256_storeu_ps,
};

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

// One prefetch of A's panel per four steps (96 bytes).
super::micro_kernel!(
    Avx2Fma,
    feature: "avx2,fma",
    tile: (MR, NR),
    lanes: 8,
    zero: _mm256_setzero_ps,
    load: _mm256_loadu_ps,
    store: _mm256_storeu_ps,
    add: _mm256_add_ps,
    fma: _mm256_fmadd_ps,
    splat: _mm256_set1_ps,
    a_lines: 1,
);
