//! Our own `f32` GEMM for large products on AVX2 + FMA CPUs without AVX-512.
//!
//! The design is the one of Goto's and the BLIS papers: pack B into `kc × nc` blocks that
//! live in L3 and A into `mc × kc` blocks that live in L2, both in the order the micro-kernel
//! reads them (`pack.rs`), and run a register-blocked `6 × 16` micro-kernel over them
//! (`kernel.rs`) inside the five cache-blocking loops (`driver.rs`). The `gemm` crate stays in
//! charge of everything else — `f64`, small products, CPUs with AVX-512 (where its AVX-512
//! kernels are faster) and other architectures — because on a 2-core AVX2 machine its
//! blocking fell a third short of OpenBLAS at 2048².
//!
//! Only the micro-kernel uses `unsafe` (its loads and stores); packing and the driver are safe
//! code over slices.

mod driver;
mod kernel;
mod pack;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

pub(crate) use driver::{BLOCKING, Product, sgemm};
pub(crate) use kernel::Avx2Fma;
pub(crate) use pack::MatRef;

/// Below this many multiply-adds per matrix the `gemm` crate stays in charge: on the 2-core
/// AVX2 machine it was level with or ahead of ours up to 512³ (its small-matrix paths pack
/// less) and behind from about 640³ on, where its cache blocking stops fitting this CPU.
const MIN_MACS: usize = 2 * 512 * 512 * 512;
/// Products this thin in M or N waste most of a `6 × 16` tile; the `gemm` crate has
/// matrix-vector paths for them.
const MIN_SIDE: usize = 32;

/// The kernel token when our GEMM should compute an `m × k` by `k × n` `f32` product on this
/// CPU, `None` when the `gemm` crate should.
pub(crate) fn choose(m: usize, n: usize, k: usize) -> Option<Avx2Fma> {
    static ISA: OnceLock<Option<Avx2Fma>> = OnceLock::new();
    let isa = *ISA.get_or_init(|| {
        if is_x86_feature_detected!("avx512f") {
            None
        } else {
            Avx2Fma::detect()
        }
    });
    let macs = m.saturating_mul(n).saturating_mul(k);
    isa.filter(|_| macs >= MIN_MACS && m.min(n) >= MIN_SIDE)
}
