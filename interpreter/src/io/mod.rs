//! File formats for data and checkpoints: NumPy `.npy` ([`npy`]), MNIST-style IDX
//! ([`idx`]) and safetensors ([`safetensors`]), documented for users in `docs/data.md`; and
//! the on-disk store of compiled CUDA kernels ([`kernels`]).
//!
//! The parsers are pure functions over byte slices, so that every hostile file can be a
//! unit test; the evaluator's builtins (`eval/builtins/files.rs`) read and write the files
//! and turn the errors into diagnostics. No parser trusts what a file claims: every size is
//! computed with overflow checks and compared with the bytes actually present before
//! anything is allocated from it, and the caller's `room` is asked before an array of that
//! many elements is made, so that a file cannot make the process allocate more than the
//! device's tensor cap or more than a small multiple of its own length.

pub(crate) mod idx;
pub(crate) mod kernels;
pub(crate) mod msir;
pub(crate) mod npy;
pub mod onnx;
pub(crate) mod safetensors;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use devices::{HostBuffer, Tensor};
use ir::DType;

/// An array read from a file: its dims and its elements in C order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Array {
    /// The dims.
    pub shape: Vec<usize>,
    /// The elements, `shape`'s product of them.
    pub data: HostBuffer,
}

impl Array {
    /// The array as a host tensor.
    pub(crate) fn into_tensor(self) -> Result<Tensor, devices::DeviceError> {
        Tensor::from_host(self.data, &self.shape)
    }
}

/// Asked before an array of `numel` elements of a dtype is allocated; `false` refuses it.
pub(crate) type Room<'a> = &'a mut dyn FnMut(DType, usize) -> bool;

/// The number of elements of `shape`, or `None` when the product overflows.
pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Decodes `bytes` (whole elements of `size` bytes each) into `T`s with `f`, which reads
/// one element from exactly `size` bytes.
fn decode<T, const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

/// The elements of a host tensor in C order as little-endian bytes, handed to `out` in
/// pieces of at most 64 KiB of elements (so that writing a large tensor needs no second
/// copy of it in memory).
pub(crate) fn le_bytes(
    t: &Tensor,
    out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 14;
    let host = t
        .to_host()
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .contiguous();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 8);
    macro_rules! put {
        ($ty:ty, $conv:expr) => {{
            let Some(s) = host.as_slice::<$ty>() else {
                return Err(std::io::Error::other(
                    "the tensor's elements cannot be read",
                ));
            };
            for piece in s.chunks(CHUNK) {
                buf.clear();
                for &x in piece {
                    buf.extend_from_slice(&$conv(x));
                }
                out(&buf)?;
            }
        }};
    }
    match host.dtype() {
        DType::F32 => put!(f32, f32::to_le_bytes),
        DType::F64 => put!(f64, f64::to_le_bytes),
        DType::I32 => put!(i32, i32::to_le_bytes),
        DType::I64 => put!(i64, i64::to_le_bytes),
        DType::Bool => put!(bool, |b: bool| [u8::from(b)]),
        other => {
            return Err(std::io::Error::other(format!(
                "{other} tensors cannot be written"
            )));
        }
    }
    Ok(())
}

/// Distinguishes the temporary files of concurrent writes from one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes a file atomically: `write` fills a temporary file in the same folder, which is
/// flushed to disk and then renamed over `path`. A reader sees the old file or the new
/// one, never a half-written one, and a failed write leaves `path` as it was.
pub(crate) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = folder.join(temp_name);
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
        write(&mut w)?;
        let file = w
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
        return result;
    }
    // The rename is durable once the folder's entry is; a folder that cannot be opened or
    // synced (some file systems refuse) leaves the file written all the same.
    if let Ok(dir) = std::fs::File::open(&folder) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_the_file_and_leave_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("ms-io-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("f.bin");
        write_atomic(&path, |w: &mut dyn Write| w.write_all(b"one")).expect("writes");
        write_atomic(&path, |w: &mut dyn Write| w.write_all(b"two")).expect("writes");
        assert_eq!(std::fs::read(&path).expect("reads"), b"two");
        // A write that fails keeps the old file and removes its temporary file.
        let r = write_atomic(&path, |w: &mut dyn Write| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("stop"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&path).expect("reads"), b"two");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("lists")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("f.bin")]);
        // A folder that does not exist is an error, not a panic.
        assert!(write_atomic(&dir.join("no/such/f.bin"), |_| Ok(())).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tensors_become_little_endian_bytes() {
        let t = Tensor::from_vec(vec![1.0f32, -2.0], &[2]).expect("tensor");
        let mut got = Vec::new();
        le_bytes(&t, &mut |b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .expect("bytes");
        assert_eq!(got, [0, 0, 128, 63, 0, 0, 0, 192]);
        let b = Tensor::from_vec(vec![true, false], &[2]).expect("tensor");
        let mut got = Vec::new();
        le_bytes(&b, &mut |x| {
            got.extend_from_slice(x);
            Ok(())
        })
        .expect("bytes");
        assert_eq!(got, [1, 0]);
    }
}
