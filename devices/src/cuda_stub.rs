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
