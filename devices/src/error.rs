//! Errors of devices and kernels, as data.

use ir::{DType, InferError, Shape};
use thiserror::Error;

use crate::DeviceId;

/// Why a device could not do what was asked. None of these is a panic: the caller reports
/// it and the process goes on.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum DeviceError {
    /// The operands do not fit the primitive (shape or dtype).
    #[error(transparent)]
    Infer(#[from] InferError),
    /// A result would be larger than the configured cap or than memory can give.
    #[error("{op}: cannot allocate {dtype}{shape} ({bytes} bytes): {reason}")]
    Alloc {
        /// The operation that needed the memory.
        op: &'static str,
        /// Shape of the tensor.
        shape: Shape,
        /// Its dtype.
        dtype: DType,
        /// Bytes requested (saturating at `u64::MAX`).
        bytes: u64,
        /// Why it was refused (over the cap, or out of memory).
        reason: String,
    },
    /// The device has no kernels for this dtype.
    #[error("{op}: {dtype} is not supported on {device}")]
    UnsupportedDType {
        /// The operation.
        op: &'static str,
        /// The dtype.
        dtype: DType,
        /// The device.
        device: DeviceId,
    },
    /// An operand lives on another device.
    #[error("{op}: operand {operand} is on {found}, but the operation runs on {expected}")]
    WrongDevice {
        /// The operation.
        op: &'static str,
        /// Which operand.
        operand: usize,
        /// Where it had to be.
        expected: DeviceId,
        /// Where it is.
        found: DeviceId,
    },
    /// An index tensor holds an index outside the axis it indexes.
    #[error("{op}: index {index} is out of range for axis {axis} of size {size}")]
    IndexOutOfRange {
        /// The operation.
        op: &'static str,
        /// The offending index.
        index: i64,
        /// The axis indexed.
        axis: usize,
        /// That axis's size.
        size: usize,
    },
    /// Integer division or remainder by zero.
    #[error("{op}: integer division by zero")]
    DivisionByZero {
        /// The operation.
        op: &'static str,
    },
    /// An integer raised to a negative integer power.
    #[error("{op}: integers cannot be raised to a negative integer power ({exponent})")]
    NegativeIntPower {
        /// The operation.
        op: &'static str,
        /// The exponent found.
        exponent: i64,
    },
    /// Host data given to `upload` does not fill the shape.
    #[error("{len} elements do not fill the shape {shape}")]
    DataLength {
        /// Elements given.
        len: usize,
        /// The shape asked for.
        shape: Shape,
    },
    /// The computation was asked to stop (Ctrl-C, see [`crate::cancel`]) before it finished;
    /// what it had made is discarded.
    #[error("interrupted")]
    Interrupted,
    /// A staged value (one that exists only when the staged graph runs) was read.
    #[error("the value is known only when the staged function runs")]
    Staged,
    /// The requested device backend is not available.
    #[error("{0}")]
    Unavailable(String),
    /// A collective over a mesh ([`crate::mesh`]) could not run: the parts do not fit
    /// together (count, shape, dtype, axis), the members of a group called different
    /// collectives, or a rank stopped (aborted or finished) before joining. Every member of
    /// the group gets the same error, so none of them waits for a result that cannot come.
    #[error("{op}: {message}")]
    Collective {
        /// The collective (`all_reduce`, `all_gather`, ...).
        op: &'static str,
        /// What went wrong, naming the ranks or parts involved.
        message: String,
    },
    /// A device's runtime failed (a driver, compiler or library error, or a primitive the
    /// backend does not run yet); the message says which and why.
    #[error("{op} on {device}: {message}")]
    Backend {
        /// The operation.
        op: &'static str,
        /// The device.
        device: DeviceId,
        /// What went wrong.
        message: String,
    },
}
