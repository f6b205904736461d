//! `devices` — tensors and the devices that compute on them.
//!
//! This is the only crate with kernels. A [`Tensor`] is a shared, immutable buffer plus a
//! strided layout, a dtype and the device it lives on; clones are cheap, and transpose,
//! slice and broadcast are views that copy nothing. A [`Device`] runs any `ir::Op` on
//! tensors of its own. [`cpu::CpuDevice`] is the reference implementation of **every**
//! primitive (ndarray for strided views, rayon for parallel loops, the `gemm` crate for
//! matrix products, hand-vectorized polynomial kernels for transcendental functions);
//! every other backend is tested against it. [`cuda`] is the entry point of the GPU
//! backend.
//!
//! [`mesh`] gives collectives (all-reduce, all-gather, reduce-scatter, all-to-all,
//! broadcast) over the parts that the ranks of a mesh hold, written against [`Device`] so
//! that they run on any device, and a communicator ([`mesh::Comm`]) for ranks on threads of
//! one process: the virtual CPU mesh of `--devices cpu:N`.
//!
//! Errors are data ([`DeviceError`]): a kernel never panics on bad operands, and an
//! allocation over the configured cap or over what the machine can give is an error that
//! names the operation, the shape, the dtype and the bytes.

pub mod buffer;
pub mod cancel;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_stub.rs"]
pub mod cuda;
pub mod device;
pub mod error;
pub mod fused;
pub mod memory;
pub mod mesh;
#[cfg(feature = "mpi")]
pub mod mesh_mpi;
pub mod schedule;
pub mod tensor;

pub use buffer::{Elem, HostBuffer};
pub use cpu::CpuDevice;
pub use device::{Device, DeviceId};
pub use error::DeviceError;
pub use tensor::{Layout, Tensor, TensorId};
