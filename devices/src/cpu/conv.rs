//! 2-D convolution and its two backward kernels (placeholder: being written).

use ir::Conv2dParams;

use crate::{DeviceError, Tensor};

fn pending(op: &str) -> DeviceError {
    DeviceError::Unavailable(format!("{op}: kernel pending"))
}

/// `conv2d(x, w)`: NCHW input, OIHW weights.
pub(crate) fn conv2d(
    _x: &Tensor,
    _w: &Tensor,
    _p: &Conv2dParams,
    _out: &[usize],
) -> Result<Tensor, DeviceError> {
    Err(pending("conv2d"))
}

/// Gradient with respect to the input: `(dy, w) -> dx` of shape `out`.
pub(crate) fn conv2d_backward_input(
    _dy: &Tensor,
    _w: &Tensor,
    _p: &Conv2dParams,
    _out: &[usize],
) -> Result<Tensor, DeviceError> {
    Err(pending("conv2d_backward_input"))
}

/// Gradient with respect to the weights: `(x, dy) -> dw` of shape `out`.
pub(crate) fn conv2d_backward_filter(
    _x: &Tensor,
    _dy: &Tensor,
    _p: &Conv2dParams,
    _out: &[usize],
) -> Result<Tensor, DeviceError> {
    Err(pending("conv2d_backward_filter"))
}
