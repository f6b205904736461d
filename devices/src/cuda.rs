//! The CUDA entry point.
//!
//! The GPU backend (cudarc: NVRTC kernels, cuBLAS, NCCL) arrives with the CUDA issue. Until
//! then, and in builds without the `cuda` feature, asking for a CUDA device is an error
//! that says so plainly — never a panic and never a silent fall back to the CPU.

use crate::DeviceError;

/// Opens CUDA device `ordinal`.
pub fn open(ordinal: u32) -> Result<std::convert::Infallible, DeviceError> {
    let why = if cfg!(feature = "cuda") {
        "this build of MindScript has no CUDA backend yet"
    } else {
        "CUDA support was not compiled in (build with the `cuda` feature)"
    };
    Err(DeviceError::Unavailable(format!(
        "cuda:{ordinal}: {why}; use --device cpu"
    )))
}
