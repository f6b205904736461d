//! Device memory: a typed buffer per dtype, and the copies in and out of it.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use ir::DType;

use crate::{DeviceError, DeviceId, HostBuffer};

/// The elements of a CUDA tensor, in the element type of its dtype (`bool` as one byte).
#[derive(Debug)]
pub(crate) enum CudaData {
    /// `f32` elements.
    F32(CudaSlice<f32>),
    /// `f64` elements.
    F64(CudaSlice<f64>),
    /// `i32` elements.
    I32(CudaSlice<i32>),
    /// `i64` elements.
    I64(CudaSlice<i64>),
    /// `bool` elements, 0 or 1.
    Bool(CudaSlice<u8>),
}

/// A buffer in one device's memory and the stream every use of it is ordered on.
///
/// The device runs everything on one stream, so kernels, copies and frees happen in the
/// order they were asked for, and a buffer dropped while a kernel still reads it is freed
/// after that kernel (stream-ordered free).
#[derive(Debug)]
pub struct CudaBuffer {
    pub(crate) data: CudaData,
    pub(crate) stream: Arc<CudaStream>,
    /// The device's ordinal.
    pub(crate) ordinal: u32,
}

fn driver_err(ordinal: u32, op: &'static str, e: impl std::fmt::Debug) -> DeviceError {
    DeviceError::Backend {
        op,
        device: DeviceId::Cuda(ordinal),
        message: format!("{e:?}"),
    }
}

impl CudaBuffer {
    /// Elements allocated.
    pub(crate) fn len(&self) -> usize {
        match &self.data {
            CudaData::F32(s) => s.len(),
            CudaData::F64(s) => s.len(),
            CudaData::I32(s) => s.len(),
            CudaData::I64(s) => s.len(),
            CudaData::Bool(s) => s.len(),
        }
    }

    /// The device address of element 0, for kernel arguments.
    pub(crate) fn ptr(&self) -> u64 {
        // The device runs one stream with event tracking off, so the guard returned with the
        // address has nothing to record and is dropped at once.
        match &self.data {
            CudaData::F32(s) => s.device_ptr(&self.stream).0,
            CudaData::F64(s) => s.device_ptr(&self.stream).0,
            CudaData::I32(s) => s.device_ptr(&self.stream).0,
            CudaData::I64(s) => s.device_ptr(&self.stream).0,
            CudaData::Bool(s) => s.device_ptr(&self.stream).0,
        }
    }

    /// The dtype of the elements.
    pub(crate) fn dtype(&self) -> DType {
        match &self.data {
            CudaData::F32(_) => DType::F32,
            CudaData::F64(_) => DType::F64,
            CudaData::I32(_) => DType::I32,
            CudaData::I64(_) => DType::I64,
            CudaData::Bool(_) => DType::Bool,
        }
    }

    /// Copies elements `lo .. hi` out to host memory (waiting for the work before it).
    pub(crate) fn download_range(&self, lo: usize, hi: usize) -> Result<HostBuffer, DeviceError> {
        let n = self.ordinal;
        if lo >= hi {
            return Ok(match self.dtype() {
                DType::F32 => HostBuffer::F32(Vec::new()),
                DType::F64 => HostBuffer::F64(Vec::new()),
                DType::I32 => HostBuffer::I32(Vec::new()),
                DType::I64 => HostBuffer::I64(Vec::new()),
                _ => HostBuffer::Bool(Vec::new()),
            });
        }
        if hi > self.len() {
            return Err(driver_err(
                n,
                "download",
                format!("elements {lo}..{hi} are outside a buffer of {}", self.len()),
            ));
        }
        macro_rules! get {
            ($s:expr) => {{
                let view = $s
                    .try_slice(lo..hi)
                    .ok_or_else(|| driver_err(n, "download", "bad range"))?;
                let v = self
                    .stream
                    .clone_dtoh(&view)
                    .map_err(|e| driver_err(n, "download", e))?;
                self.stream
                    .synchronize()
                    .map_err(|e| driver_err(n, "download", e))?;
                v
            }};
        }
        Ok(match &self.data {
            CudaData::F32(s) => HostBuffer::F32(get!(s)),
            CudaData::F64(s) => HostBuffer::F64(get!(s)),
            CudaData::I32(s) => HostBuffer::I32(get!(s)),
            CudaData::I64(s) => HostBuffer::I64(get!(s)),
            CudaData::Bool(s) => {
                HostBuffer::Bool(get!(s).into_iter().map(|b: u8| b != 0).collect())
            }
        })
    }

    /// Copies host elements into a new buffer on `stream`.
    pub(crate) fn upload(
        stream: &Arc<CudaStream>,
        ordinal: u32,
        data: &HostBuffer,
    ) -> Result<CudaBuffer, DeviceError> {
        let err = |e| driver_err(ordinal, "upload", e);
        // An empty buffer still gets one element, so that every buffer has an address.
        macro_rules! put {
            ($v:expr, $zero:expr) => {{
                if $v.is_empty() {
                    stream.clone_htod(&[$zero]).map_err(err)?
                } else {
                    stream.clone_htod($v).map_err(err)?
                }
            }};
        }
        let data = match data {
            HostBuffer::F32(v) => CudaData::F32(put!(v, 0.0f32)),
            HostBuffer::F64(v) => CudaData::F64(put!(v, 0.0f64)),
            HostBuffer::I32(v) => CudaData::I32(put!(v, 0i32)),
            HostBuffer::I64(v) => CudaData::I64(put!(v, 0i64)),
            HostBuffer::Bool(v) => {
                let bytes: Vec<u8> = v.iter().map(|&b| u8::from(b)).collect();
                CudaData::Bool(put!(&bytes, 0u8))
            }
        };
        Ok(CudaBuffer {
            data,
            stream: stream.clone(),
            ordinal,
        })
    }
}
