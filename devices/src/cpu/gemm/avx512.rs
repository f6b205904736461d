//! The AVX-512 micro-kernel: one `12 × 32` tile of C from one packed micro-panel of A and one
//! of B (the loop itself is `super::micro_kernel!`).
//!
//! A 12 × 32 tile is 24 vectors of 16 lanes, held in 24 of the 32 `zmm` registers for the
//! whole reduction; each step loads two vectors of B, broadcasts twelve elements of A and
//! issues 24 independent FMAs. That is three times the accumulators needed to cover the FMA
//! latency of both pipes, and 14 loads per 24 FMAs, so the loop is bound by FMA throughput
//! while its operands stream from L1 and L2. The tile is twice as tall as the AVX2 kernel's
//! 6 × 16 for the same reason BLIS's Skylake-X kernel is: per element of C, it reads half as
//! many bytes of A and B.

use std::arch::x86_64::{
    _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
    _mm512_storeu_ps,
};

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

// Four steps read 192 bytes of A's panel, three cache lines: each is prefetched.
super::micro_kernel!(
    Avx512,
    feature: "avx512f",
    tile: (MR, NR),
    lanes: 16,
    zero: _mm512_setzero_ps,
    load: _mm512_loadu_ps,
    store: _mm512_storeu_ps,
    add: _mm512_add_ps,
    fma: _mm512_fmadd_ps,
    splat: _mm512_set1_ps,
    a_lines: 3,
);
