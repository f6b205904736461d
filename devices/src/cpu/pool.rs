//! 2-D max and average pooling and their backward kernels (placeholder: being written).

use ir::{Pool2dParams, PoolOp};

use crate::{DeviceError, Tensor};

/// Pooling of NCHW `x` into shape `out`.
pub(crate) fn pool2d(
    _op: PoolOp,
    _x: &Tensor,
    _p: &Pool2dParams,
    _out: &[usize],
) -> Result<Tensor, DeviceError> {
    Err(DeviceError::Unavailable("pool2d: kernel pending".into()))
}

/// Gradient of pooling: `(x, dy) -> dx` with the shape of `x`.
pub(crate) fn pool2d_backward(
    _op: PoolOp,
    _x: &Tensor,
    _dy: &Tensor,
    _p: &Pool2dParams,
) -> Result<Tensor, DeviceError> {
    Err(DeviceError::Unavailable(
        "pool2d_backward: kernel pending".into(),
    ))
}
