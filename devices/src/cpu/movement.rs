//! Movement (placeholder: being written).
use crate::{DeviceError, Tensor};
pub(crate) fn concat(_x: &[&Tensor], _axis: usize, _s: &[usize]) -> Result<Tensor, DeviceError> {
    Err(DeviceError::Unavailable("pending".into()))
}
pub(crate) fn pad(
    _x: &Tensor,
    _p: &[(usize, usize)],
    _v: f64,
    _s: &[usize],
) -> Result<Tensor, DeviceError> {
    Err(DeviceError::Unavailable("pending".into()))
}
pub(crate) fn gather(
    _x: &Tensor,
    _i: &Tensor,
    _axis: usize,
    _s: &[usize],
) -> Result<Tensor, DeviceError> {
    Err(DeviceError::Unavailable("pending".into()))
}
pub(crate) fn scatter_add(
    _x: &Tensor,
    _i: &Tensor,
    _u: &Tensor,
    _axis: usize,
) -> Result<Tensor, DeviceError> {
    Err(DeviceError::Unavailable("pending".into()))
}
