//! Reductions (placeholder: being written).
use crate::{DeviceError, Tensor};
use ir::{ArgOp, DType, ReduceOp};
pub(crate) fn reduce(
    _op: ReduceOp,
    _x: &Tensor,
    _axes: &[usize],
    _k: bool,
    _dt: DType,
) -> Result<Tensor, DeviceError> {
    Err(DeviceError::Unavailable("pending".into()))
}
pub(crate) fn arg_reduce(
    _op: ArgOp,
    _x: &Tensor,
    _axis: usize,
    _k: bool,
) -> Result<Tensor, DeviceError> {
    Err(DeviceError::Unavailable("pending".into()))
}
