//! The CUDA entry point of a build without the `cuda` feature: asking for a CUDA device is
//! an error that says so plainly, never a panic and never a silent fall back to the CPU.

use std::sync::Arc;

use crate::{Device, DeviceError, DeviceId};

/// Opens CUDA device `ordinal`: always an error in this build.
pub fn open(ordinal: u32) -> Result<Arc<dyn Device>, DeviceError> {
    Err(DeviceError::Unavailable(format!(
        "cuda:{ordinal} is not available: CUDA support was not compiled in (build with the `cuda` feature); use --device cpu"
    )))
}

/// The CUDA devices of this machine: none in this build.
pub fn devices() -> Vec<DeviceId> {
    Vec::new()
}

/// Waits for the CUDA devices this process opened: there are none in this build.
pub fn synchronize_all() -> Result<(), DeviceError> {
    Ok(())
}

/// Lets f32 products use TF32 on CUDA devices: there are none in this build, so it has no
/// effect.
pub fn set_tf32(_allowed: bool) {}

/// Whether f32 products may use TF32: never in this build.
pub fn tf32() -> bool {
    false
}

/// A place that keeps compiled kernels between processes (see the CUDA build's
/// `KernelStore`); nothing is compiled in this build, so nothing is ever asked of it.
pub trait KernelStore: Send + Sync {
    /// The PTX stored under `key`, if any.
    fn load(&self, key: &str) -> Option<String>;
    /// Keeps `ptx` under `key`.
    fn store(&self, key: &str, ptx: &str);
}

/// Sets the kernel store: without CUDA it is never used.
pub fn set_kernel_store(_store: Option<Arc<dyn KernelStore>>) {}
