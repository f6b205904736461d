//! Cancellation: a process-wide flag that asks running work to stop (Ctrl-C).
//!
//! The `ms` command line sets the flag from its SIGINT handler; the interpreter clears it at
//! the start of each entry and looks at it between statements, loop iterations and calls.
//! Kernels look at it in their outer loops (per row block of a matrix product, per chunk of
//! a large elementwise, reduction or convolution loop): once it is set they skip the work
//! that is left, and [`crate::CpuDevice`] discards what they made and returns
//! [`DeviceError::Interrupted`] — so a half-computed tensor is never seen.
//!
//! The flag is global because a signal is: there is one Ctrl-C per process. Reading it is
//! one relaxed atomic load, cheap enough for every chunk of every kernel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use crate::DeviceError;

/// The flag, shared as an `Arc` so that a signal handler (`signal_hook::flag::register`)
/// can hold it.
static FLAG: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// The flag itself, for a signal handler to set.
pub fn flag() -> Arc<AtomicBool> {
    Arc::clone(&FLAG)
}

/// Asks the running computation to stop.
pub fn request() {
    FLAG.store(true, Ordering::Relaxed);
}

/// Withdraws a request to stop (before new work starts).
pub fn clear() {
    FLAG.store(false, Ordering::Relaxed);
}

/// True when a stop was asked for and not yet cleared.
#[inline]
pub fn requested() -> bool {
    FLAG.load(Ordering::Relaxed)
}

/// [`DeviceError::Interrupted`] when a stop was asked for.
#[inline]
pub fn check() -> Result<(), DeviceError> {
    if requested() {
        Err(DeviceError::Interrupted)
    } else {
        Ok(())
    }
}
