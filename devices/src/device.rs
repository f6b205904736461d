//! The device abstraction.

use std::fmt;

use ir::passes::memory::Donation;
use ir::{DType, InferError, Op, TensorType};

use crate::fused::Kernel;
use crate::{DeviceError, HostBuffer, Tensor};

/// Where a tensor lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceId {
    /// Host memory, computed on by the CPU backend.
    Cpu,
    /// An NVIDIA GPU, by ordinal.
    Cuda(u32),
    /// Nowhere: the value of a graph being staged ([`crate::Tensor::staged`]).
    Staged,
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceId::Cpu => f.write_str("cpu"),
            DeviceId::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceId::Staged => f.write_str("staged"),
        }
    }
}

/// A device that can hold tensors and run every primitive on them.
///
/// The trait does not assume host memory: tensors enter and leave a device only through
/// [`Device::upload`] and [`Device::download`], so a GPU backend keeps its buffers in
/// device memory and the CPU backend's are plain vectors.
pub trait Device: Send + Sync + fmt::Debug {
    /// This device's identity.
    fn id(&self) -> DeviceId;

    /// Whether the device computes on elements of `dtype`.
    fn supports(&self, dtype: DType) -> bool;

    /// Runs one primitive. The operands' types are checked with `ir::infer` first; the result
    /// has exactly the inferred type.
    fn exec(&self, op: &Op, inputs: &[&Tensor]) -> Result<Tensor, DeviceError>;

    /// Runs a fused group ([`Kernel`]) on `inputs` in one pass, giving its outputs (all of
    /// the broadcast shape of the inputs). `Ok(None)` says this device has no kernel for
    /// the group; the executor then runs the group's region node by node, which gives the
    /// same values.
    fn exec_fused(
        &self,
        kernel: &Kernel,
        inputs: &[&Tensor],
    ) -> Result<Option<Vec<Tensor>>, DeviceError> {
        let _ = (kernel, inputs);
        Ok(None)
    }

    /// Runs an elementwise `op` (unary, binary, comparison, `select`) like [`Device::exec`],
    /// on operands the caller lends: `inputs[donor]` dies here, and the device may write the
    /// result into its buffer instead of allocating one, when that buffer can take it (see
    /// `ir::passes::memory`; the CPU checks at run time that nobody else holds it). The
    /// result is the same either way. The caller must not read `inputs[donor]` afterwards:
    /// its elements may have been overwritten. The default runs [`Device::exec`].
    fn exec_donating(
        &self,
        op: &Op,
        inputs: &mut [Tensor],
        donor: usize,
    ) -> Result<Tensor, DeviceError> {
        let _ = donor;
        let refs: Vec<&Tensor> = inputs.iter().collect();
        self.exec(op, &refs)
    }

    /// Runs a fused group like [`Device::exec_fused`], on inputs the caller lends: for each
    /// donation, input `operand` dies here and output `result` may be written into its
    /// buffer. As with [`Device::exec_donating`], the values are the same either way and
    /// the donated inputs must not be read afterwards. The default runs
    /// [`Device::exec_fused`].
    fn exec_fused_donating(
        &self,
        kernel: &Kernel,
        inputs: &mut [Tensor],
        donations: &[Donation],
    ) -> Result<Option<Vec<Tensor>>, DeviceError> {
        let _ = donations;
        let refs: Vec<&Tensor> = inputs.iter().collect();
        self.exec_fused(kernel, &refs)
    }

    /// Copies host data in as a tensor of the given shape (C order).
    fn upload(&self, data: HostBuffer, shape: &[usize]) -> Result<Tensor, DeviceError>;

    /// Copies a tensor out to host memory in C order.
    fn download(&self, t: &Tensor) -> Result<HostBuffer, DeviceError>;

    /// Waits until the work queued on this device has finished: what a timer must do
    /// before reading the clock, since a GPU runs kernels after `exec` has returned. An
    /// error is a kernel that failed. Devices that compute before returning need nothing.
    fn synchronize(&self) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// Refuses an operand that does not live on `device` (each device runs on its own memory).
pub(crate) fn check_placement(
    device: DeviceId,
    op: &Op,
    inputs: &[&Tensor],
) -> Result<(), DeviceError> {
    for (i, t) in inputs.iter().enumerate() {
        if t.device() != device {
            return Err(DeviceError::WrongDevice {
                op: op.name(),
                operand: i,
                expected: device,
                found: t.device(),
            });
        }
    }
    Ok(())
}

/// The checks every device makes before running `op` on `inputs`: the result type by
/// `ir::infer`, every dtype involved supported by `device`, and a result shape known when
/// the operation runs. Gives the result type and its dims.
pub(crate) fn result_of(
    device: &dyn Device,
    op: &Op,
    inputs: &[&Tensor],
) -> Result<(TensorType, Vec<usize>), DeviceError> {
    let name = op.name();
    let types: Vec<TensorType> = inputs.iter().map(|t| t.ttype()).collect();
    let out = ir::infer(op, &types)?;
    for dt in types.iter().map(|t| t.dtype).chain([out.dtype]) {
        if !device.supports(dt) {
            return Err(DeviceError::UnsupportedDType {
                op: name,
                dtype: dt,
                device: device.id(),
            });
        }
    }
    let shape = out.shape.to_known().ok_or_else(|| InferError::Attr {
        prim: name,
        message: format!(
            "the result shape {} must be known when the operation runs",
            out.shape
        ),
    })?;
    Ok((out, shape))
}
