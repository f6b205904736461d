//! Accounting of the host memory that tensors hold: live bytes, their peak, and how many
//! buffers were made.
//!
//! Every host tensor buffer is counted when its storage is made and uncounted when the last
//! tensor sharing it is dropped (`tensor::Storage`), so [`stats`] tells how much tensor
//! memory is alive now and at most since the process started (or since [`reset_peak`]).
//! The counters are three process-wide relaxed atomics, a few nanoseconds per tensor made:
//! cheap enough to stay on in eager code, which makes a tensor per operation. A result
//! written into its operand's buffer (in place) counts nothing, since no buffer is made.
//!
//! Only the buffers of tensors count: a kernel's scratch, an allocator's own caches and
//! buffers downloaded out of a tensor are not tensor memory. Device memory (CUDA) is not
//! counted here.

use std::sync::atomic::{AtomicU64, Ordering};

static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
static BUFFERS: AtomicU64 = AtomicU64::new(0);

/// What the counters say at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    /// Bytes of host tensor buffers alive now.
    pub live_bytes: u64,
    /// The most `live_bytes` has been since the process started or [`reset_peak`].
    pub peak_bytes: u64,
    /// Host tensor buffers made since the process started.
    pub buffers: u64,
}

/// The counters now.
pub fn stats() -> MemStats {
    MemStats {
        live_bytes: LIVE.load(Ordering::Relaxed),
        peak_bytes: PEAK.load(Ordering::Relaxed),
        buffers: BUFFERS.load(Ordering::Relaxed),
    }
}

/// Starts a new peak from the live bytes of now, so that the next [`stats`] gives the peak
/// of what runs in between.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Counts a buffer of `bytes` made.
pub(crate) fn made(bytes: u64) {
    BUFFERS.fetch_add(1, Ordering::Relaxed);
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

/// Counts a buffer of `bytes` freed.
pub(crate) fn freed(bytes: u64) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}
