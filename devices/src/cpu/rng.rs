//! RNG (placeholder: being written).
use crate::{DeviceError, Tensor};
use ir::{DType, RandomOp};
pub(crate) fn random(
    _op: RandomOp,
    _k: &Tensor,
    _s: &[usize],
    _d: DType,
) -> Result<Tensor, DeviceError> {
    Err(DeviceError::Unavailable("pending".into()))
}
