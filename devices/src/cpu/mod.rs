//! The CPU backend: the reference implementation of every primitive.
//!
//! Kernels are generic over the element type and dispatched on the dtype here, after
//! `ir::infer` has checked the operands — so each kernel may assume operands of the right
//! rank, dtype and compatible shape. Work larger than [`PAR_MIN_ELEMS`] is split over rayon;
//! smaller work stays on the calling thread, because a fork-join costs microseconds.

use std::sync::OnceLock;

use ir::{DType, Op, TensorType};

use crate::{Device, DeviceError, DeviceId, HostBuffer, Tensor};

mod cast;
mod conv;
mod creation;
mod elementwise;
mod fused;
#[cfg(target_arch = "x86_64")]
mod gemm;
mod inplace;
pub mod math;
mod matmul;
mod movement;
mod pool;
mod reduce;
pub mod rng;
pub(crate) mod strided;

/// Below this many elements a kernel runs on one thread.
pub const PAR_MIN_ELEMS: usize = 1 << 15;

/// Resource limits of a CPU device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest tensor, in bytes, any operation may create. Requests above it are
    /// refused with [`DeviceError::Alloc`] before any memory is touched.
    pub max_tensor_bytes: u64,
}

impl Limits {
    /// The size in bytes of a result of type `ty` with dims `shape`, or the error that
    /// refuses it for being over the cap (an overflowing size counts as over). Each device
    /// adds its own check of the memory it has ([`alloc_error`] builds that refusal).
    pub(crate) fn admit(
        &self,
        op: &'static str,
        ty: &TensorType,
        shape: &[usize],
    ) -> Result<u64, DeviceError> {
        let bytes = shape
            .iter()
            .try_fold(ty.dtype.size_of() as u64, |a, &d| a.checked_mul(d as u64))
            .unwrap_or(u64::MAX);
        if bytes > self.max_tensor_bytes {
            return Err(alloc_error(
                op,
                ty,
                bytes,
                format!("over the device's cap of {} bytes", self.max_tensor_bytes),
            ));
        }
        Ok(bytes)
    }
}

/// The refusal of a result of `bytes` bytes and type `ty` made by `op`, for `reason`.
pub(crate) fn alloc_error(
    op: &'static str,
    ty: &TensorType,
    bytes: u64,
    reason: String,
) -> DeviceError {
    DeviceError::Alloc {
        op,
        shape: ty.shape.clone(),
        dtype: ty.dtype,
        bytes,
        reason,
    }
}

impl Default for Limits {
    /// Half of the machine's physical memory (16 GiB where that cannot be read), so that a
    /// mistaken `zeros([1000000, 1000000])` is an error rather than an out-of-memory kill.
    fn default() -> Self {
        Limits {
            max_tensor_bytes: physical_memory().map_or(16 << 30, |m| m / 2),
        }
    }
}

fn physical_memory() -> Option<u64> {
    static MEM: OnceLock<Option<u64>> = OnceLock::new();
    *MEM.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kb.checked_mul(1024)
    })
}

/// The CPU device.
#[derive(Clone, Debug, Default)]
pub struct CpuDevice {
    limits: Limits,
}

impl CpuDevice {
    /// A CPU device with the default [`Limits`].
    pub fn new() -> CpuDevice {
        CpuDevice::default()
    }

    /// A CPU device with the given limits.
    pub fn with_limits(limits: Limits) -> CpuDevice {
        CpuDevice { limits }
    }

    /// The device's limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Refuses a result that is over the cap or that memory cannot hold.
    /// Elementwise primitives whose operands all have one shape: the result has that shape,
    /// so only the dtype rule applies ([`ir::elementwise_dtype`]), and no [`TensorType`] is
    /// built — the fixed cost that dominates the small operations of eager code. The result
    /// is never larger than an operand, so the allocation cap holds already. `None` when
    /// this is not such an operation; the general path then runs it.
    fn exec_same_shape(&self, op: &Op, inputs: &[&Tensor]) -> Option<Result<Tensor, DeviceError>> {
        let (first, rest) = inputs.split_first()?;
        if rest.iter().any(|t| t.shape() != first.shape()) {
            return None;
        }
        let mut dtypes = [DType::Bool; 2];
        for (d, t) in dtypes.iter_mut().zip(inputs) {
            *d = t.dtype();
        }
        let dtypes = dtypes.get(..inputs.len())?;
        let dtype = match ir::elementwise_dtype(op, dtypes)? {
            Ok(d) => d,
            Err(e) => return Some(Err(e.into())),
        };
        if let Some(&dt) = dtypes.iter().chain([&dtype]).find(|&&d| !self.supports(d)) {
            return Some(Err(DeviceError::UnsupportedDType {
                op: op.name(),
                dtype: dt,
                device: DeviceId::Cpu,
            }));
        }
        let shape = first.shape();
        Some(match (op, rest) {
            (Op::Unary { op }, []) => elementwise::unary(*op, first),
            (Op::Binary { op }, [y]) => elementwise::binary(*op, first, y, shape),
            (Op::Compare { op }, [y]) => elementwise::compare(*op, first, y, shape),
            _ => return None,
        })
    }

    /// The dims at which a fused group's elementwise steps run (the inputs' broadcast
    /// shape), each output checked against the allocation cap at its own dims (a
    /// reduction's are smaller); `None` when the inputs do not broadcast.
    fn fused_shape<'t>(
        &self,
        kernel: &crate::fused::Kernel,
        inputs: impl Iterator<Item = &'t Tensor>,
    ) -> Result<Option<Vec<usize>>, DeviceError> {
        let Some(dims) = crate::fused::output_dims(inputs) else {
            return Ok(None);
        };
        for (i, &o) in kernel.outputs.iter().enumerate() {
            if let (Some(t), Some(out)) = (kernel.ty(o), kernel.output_dims(i, &dims)) {
                let ty = TensorType::new(t.dtype, ir::Shape::known(&out));
                self.check_alloc("fused", &ty, &out)?;
            }
        }
        Ok(Some(dims))
    }

    /// The in-place path of [`Device::exec_donating`]: `None` when it does not apply (not
    /// an elementwise primitive, operands `exec` would refuse — it then reports why — a
    /// donor of another type than the result, or operands the in-place kernels do not
    /// take).
    fn exec_in_place(
        &self,
        op: &Op,
        inputs: &mut [Tensor],
        donor: usize,
    ) -> Option<Result<Tensor, DeviceError>> {
        let scatter = matches!(op, Op::ScatterAdd { .. });
        if !scatter
            && !matches!(
                op,
                Op::Unary { .. } | Op::Binary { .. } | Op::Compare { .. } | Op::Select {}
            )
        {
            return None;
        }
        let refs: Vec<&Tensor> = inputs.iter().collect();
        crate::device::check_placement(DeviceId::Cpu, op, &refs).ok()?;
        let (out, shape) = crate::device::result_of(self, op, &refs).ok()?;
        let d = inputs.get(donor)?;
        if d.dtype() != out.dtype || d.shape() != shape.as_slice() {
            return None;
        }
        match op {
            // Only the base of a scatter can take its result.
            Op::ScatterAdd { axis } if donor == 0 => {
                movement::scatter_add_in_place(inputs, *axis).map(Ok)
            }
            Op::ScatterAdd { .. } => None,
            _ => inplace::exec(op, inputs, donor),
        }
    }

    fn check_alloc(
        &self,
        op: &'static str,
        ty: &TensorType,
        shape: &[usize],
    ) -> Result<(), DeviceError> {
        let bytes = self.limits.admit(op, ty, shape)?;
        let refuse = |reason: String| alloc_error(op, ty, bytes, reason);
        // Reserving (without touching) a large block asks the allocator up front whether the
        // memory can be had at all, instead of failing inside a kernel.
        if bytes > 1 << 30 {
            let mut probe: Vec<u8> = Vec::new();
            probe
                .try_reserve_exact(bytes as usize)
                .map_err(|e| refuse(format!("out of memory ({e})")))?;
        }
        Ok(())
    }
}

impl Device for CpuDevice {
    fn id(&self) -> DeviceId {
        DeviceId::Cpu
    }

    fn supports(&self, dtype: DType) -> bool {
        !matches!(dtype, DType::BF16 | DType::F16)
    }

    fn exec(&self, op: &Op, inputs: &[&Tensor]) -> Result<Tensor, DeviceError> {
        crate::cancel::check()?;
        let name = op.name();
        crate::device::check_placement(DeviceId::Cpu, op, inputs)?;
        if let Some(result) = self.exec_same_shape(op, inputs) {
            return result;
        }
        let (out, shape) = crate::device::result_of(self, op, inputs)?;
        self.check_alloc(name, &out, &shape)?;
        let arg = |i: usize| inputs[i];
        let result = match op {
            Op::Unary { op } => elementwise::unary(*op, arg(0)),
            Op::Binary { op } => elementwise::binary(*op, arg(0), arg(1), &shape),
            Op::Compare { op } => elementwise::compare(*op, arg(0), arg(1), &shape),
            Op::Select {} => elementwise::select(arg(0), arg(1), arg(2), &shape),
            Op::Reduce { op, axes, keepdims } => {
                reduce::reduce(*op, arg(0), axes, *keepdims, out.dtype)
            }
            Op::ArgReduce { op, axis, keepdims } => {
                reduce::arg_reduce(*op, arg(0), *axis, *keepdims)
            }
            Op::MatMul {} => matmul::matmul(arg(0), arg(1), &shape),
            Op::Reshape { .. } => Ok(arg(0).reshape_view(&shape)),
            Op::Transpose { perm } => Ok(arg(0).transpose_view(perm)),
            Op::Broadcast { .. } => Ok(arg(0).broadcast_view(&shape)),
            Op::Slice { dims } => Ok(arg(0).slice_view(dims)),
            Op::Concat { axis } => movement::concat(inputs, *axis, &shape),
            Op::Pad { pads, value } => movement::pad(arg(0), pads, *value, &shape),
            Op::Gather { axis } => movement::gather(arg(0), arg(1), *axis, &shape),
            Op::ScatterAdd { axis } => movement::scatter_add(arg(0), arg(1), arg(2), *axis),
            Op::Conv2d { params } => conv::conv2d(arg(0), arg(1), params, &shape),
            Op::Conv2dBackwardInput { params, .. } => {
                conv::conv2d_backward_input(arg(0), arg(1), params, &shape)
            }
            Op::Conv2dBackwardFilter { params, .. } => {
                conv::conv2d_backward_filter(arg(0), arg(1), params, &shape)
            }
            Op::Pool2d { op, params } => pool::pool2d(*op, arg(0), params, &shape),
            Op::Pool2dBackward { op, params } => pool::pool2d_backward(*op, arg(0), arg(1), params),
            Op::Cast { dtype } => Ok(cast::cast(arg(0), *dtype)),
            Op::Random { op, .. } => rng::random(*op, arg(0), &shape, out.dtype),
            Op::Iota { axis, .. } => Ok(creation::iota(&shape, *axis, out.dtype)),
            Op::Full { value, .. } => Ok(creation::full(&shape, out.dtype, *value)),
            // The value passes through; showing it is the executor's effect, since devices do
            // no IO.
            Op::Print {} | Op::StopGradient {} => Ok(arg(0).clone()),
        }?;
        // A kernel that saw Ctrl-C stopped early and left its result unfinished: it is
        // dropped here, so a half-computed tensor never reaches the caller.
        crate::cancel::check()?;
        debug_assert_eq!(result.shape(), &shape[..], "{name} kernel shape");
        debug_assert_eq!(result.dtype(), out.dtype, "{name} kernel dtype");
        Ok(result)
    }

    fn exec_fused(
        &self,
        kernel: &crate::fused::Kernel,
        inputs: &[&Tensor],
    ) -> Result<Option<Vec<Tensor>>, DeviceError> {
        crate::cancel::check()?;
        if inputs.iter().any(|t| t.device() != DeviceId::Cpu) {
            return Ok(None);
        }
        let Some(dims) = self.fused_shape(kernel, inputs.iter().copied())? else {
            return Ok(None);
        };
        let result = match fused::exec(kernel, inputs, &dims) {
            None => return Ok(None),
            Some(r) => r,
        };
        // A run cut short by Ctrl-C fails inside; the interruption is what to report.
        crate::cancel::check()?;
        Ok(Some(result.map_err(DeviceError::Unavailable)?))
    }

    fn exec_donating(
        &self,
        op: &Op,
        inputs: &mut [Tensor],
        donor: usize,
    ) -> Result<Tensor, DeviceError> {
        if let Some(result) = self.exec_in_place(op, inputs, donor) {
            // A kernel that saw Ctrl-C left the donor's buffer half written: the result is
            // dropped, as `exec` drops an unfinished one.
            crate::cancel::check()?;
            return result;
        }
        let refs: Vec<&Tensor> = inputs.iter().collect();
        self.exec(op, &refs)
    }

    fn exec_fused_donating(
        &self,
        kernel: &crate::fused::Kernel,
        inputs: &mut [Tensor],
        donations: &[ir::passes::memory::Donation],
    ) -> Result<Option<Vec<Tensor>>, DeviceError> {
        crate::cancel::check()?;
        if inputs.iter().any(|t| t.device() != DeviceId::Cpu) {
            return Ok(None);
        }
        let Some(dims) = self.fused_shape(kernel, inputs.iter())? else {
            return Ok(None);
        };
        let result = match fused::exec_donating(kernel, inputs, &dims, donations) {
            None => return Ok(None),
            Some(r) => r,
        };
        crate::cancel::check()?;
        Ok(Some(result.map_err(DeviceError::Unavailable)?))
    }

    fn upload(&self, data: HostBuffer, shape: &[usize]) -> Result<Tensor, DeviceError> {
        Tensor::from_host(data, shape)
    }

    fn download(&self, t: &Tensor) -> Result<HostBuffer, DeviceError> {
        let c = t.contiguous();
        c.host().cloned().ok_or_else(|| DeviceError::WrongDevice {
            op: "download",
            operand: 0,
            expected: DeviceId::Cpu,
            found: t.device(),
        })
    }
}
