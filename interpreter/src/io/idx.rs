//! MNIST-style IDX files (<http://yann.lecun.com/exdb/mnist/>), raw or gzipped.
//!
//! A file is a magic number — two zero bytes, a type byte and the number of dims — the
//! dims as big-endian `u32`s and the elements, big-endian, in C order. A file starting with
//! gzip's magic bytes (`1f 8b`) is decompressed first, as a stream: the header is read, the
//! size it claims is checked against what the compressed bytes could possibly hold
//! (deflate never expands data more than 1032 times) and against the caller's cap, and the
//! elements are converted as they are inflated.
//!
//! MindScript has no 8- or 16-bit dtypes, so the elements are converted (LANGUAGE.md leaves
//! this to the implementation; `docs/data.md` states it for users):
//!
//! | IDX type | 1 dim (labels) | 2 or more dims (images) |
//! |---|---|---|
//! | `u8` (0x08), `i8` (0x09), `i16` (0x0B) | `i64` | `f32`, values unchanged (0–255 for pixels) |
//! | `i32` (0x0C) | `i64` | `i32` |
//! | `f32` (0x0D), `f64` (0x0E) | `f32`, `f64` | `f32`, `f64` |
//!
//! A 1-dim file of integers is labels, and `i64` is what `cross_entropy`, `nll` and
//! `one_hot` take; a file of 2 or more dims is samples, and `f32` is what a model computes
//! with (every `u8`, `i8` and `i16` value is exact in `f32`).

use std::io::Read;

use devices::HostBuffer;
use flate2::read::MultiGzDecoder;
use ir::DType;

use super::{Array, Room, numel};

/// The most deflate expands data: a compressed stream of `n` bytes inflates to at most
/// about `1032 * n` bytes, which bounds what a gzipped file can honestly claim.
const MAX_INFLATE_RATIO: usize = 1032;

/// Elements are converted this many bytes at a time.
const CHUNK: usize = 1 << 16;

/// Why an IDX file cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdxError {
    #[error(
        "it does not start with an IDX magic number (two zero bytes, a type, the number of dims)"
    )]
    NotIdx,
    #[error("its type byte 0x{0:02X} is not an IDX type (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)")]
    Type(u8),
    #[error("it declares 0 dims")]
    NoDims,
    #[error("it ends inside its header")]
    TruncatedHeader,
    #[error("its dims {0:?} have more elements than memory can address")]
    Overflow(Vec<usize>),
    #[error(
        "its dims {dims:?} need {want} bytes of data, more than the {have} bytes{} can hold",
        if *.gzip { " of compressed data" } else { " after the header" }
    )]
    TooShort {
        dims: Vec<usize>,
        want: usize,
        have: usize,
        gzip: bool,
    },
    #[error("it ends before its data does ({want} bytes of data for dims {dims:?})")]
    Truncated { dims: Vec<usize>, want: usize },
    #[error("it has data after the {want} bytes its dims {dims:?} need")]
    Trailing { dims: Vec<usize>, want: usize },
    #[error("its gzip stream is corrupt: {0}")]
    Gzip(std::io::Error),
    #[error("its {numel} {dtype} elements are more than one tensor may hold")]
    Refused { dtype: DType, numel: usize },
}

/// An IDX element type.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Elem {
    U8,
    I8,
    I16,
    I32,
    F32,
    F64,
}

impl Elem {
    fn from_byte(b: u8) -> Option<Elem> {
        Some(match b {
            0x08 => Elem::U8,
            0x09 => Elem::I8,
            0x0B => Elem::I16,
            0x0C => Elem::I32,
            0x0D => Elem::F32,
            0x0E => Elem::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Elem::U8 | Elem::I8 => 1,
            Elem::I16 => 2,
            Elem::I32 | Elem::F32 => 4,
            Elem::F64 => 8,
        }
    }

    /// The dtype elements of this type become in an array of `rank` dims (the module
    /// documentation's table).
    fn dtype(self, rank: usize) -> DType {
        match (self, rank) {
            (Elem::U8 | Elem::I8 | Elem::I16 | Elem::I32, 1) => DType::I64,
            (Elem::U8 | Elem::I8 | Elem::I16 | Elem::F32, _) => DType::F32,
            (Elem::I32, _) => DType::I32,
            (Elem::F64, _) => DType::F64,
        }
    }
}

/// Reads an IDX file held in `bytes`, gzipped or raw; `room` is asked before the elements
/// are allocated.
pub(crate) fn read(bytes: &[u8], room: Room<'_>) -> Result<Array, IdxError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let limit = bytes.len().saturating_mul(MAX_INFLATE_RATIO);
        read_stream(MultiGzDecoder::new(bytes), limit, true, room)
    } else {
        read_stream(bytes, bytes.len(), false, room)
    }
}

/// Reads `buf.len()` bytes, telling a short stream (`Ok(false)`) from a failing one.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> Result<bool, IdxError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(IdxError::Gzip(e)),
    }
}

/// Reads an IDX file from `r`, which holds at most `limit` bytes.
fn read_stream(
    mut r: impl Read,
    limit: usize,
    gzip: bool,
    room: Room<'_>,
) -> Result<Array, IdxError> {
    let mut magic = [0u8; 4];
    if !fill(&mut r, &mut magic)? {
        return Err(IdxError::NotIdx);
    }
    let [0, 0, ty, ndims] = magic else {
        return Err(IdxError::NotIdx);
    };
    let elem = Elem::from_byte(ty).ok_or(IdxError::Type(ty))?;
    if ndims == 0 {
        return Err(IdxError::NoDims);
    }
    let mut dims_raw = vec![0u8; 4 * usize::from(ndims)];
    if !fill(&mut r, &mut dims_raw)? {
        return Err(IdxError::TruncatedHeader);
    }
    let dims: Vec<usize> = dims_raw
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let n = numel(&dims).ok_or_else(|| IdxError::Overflow(dims.clone()))?;
    let want = n
        .checked_mul(elem.size())
        .ok_or_else(|| IdxError::Overflow(dims.clone()))?;
    let have = limit.saturating_sub(4 + dims_raw.len());
    if want > have {
        return Err(IdxError::TooShort {
            dims,
            want,
            have,
            gzip,
        });
    }
    let dtype = elem.dtype(dims.len());
    if !room(dtype, n) {
        return Err(IdxError::Refused { dtype, numel: n });
    }
    let mut reader = Chunks {
        r: &mut r,
        left: want,
        buf: vec![0u8; CHUNK.min(want)],
        dims: &dims,
        want,
    };
    let data = match (elem, dtype) {
        (Elem::U8, DType::I64) => HostBuffer::I64(reader.all(n, |[b]: [u8; 1]| i64::from(b))?),
        (Elem::U8, _) => HostBuffer::F32(reader.all(n, |[b]: [u8; 1]| f32::from(b))?),
        (Elem::I8, DType::I64) => {
            HostBuffer::I64(reader.all(n, |b: [u8; 1]| i64::from(i8::from_be_bytes(b)))?)
        }
        (Elem::I8, _) => {
            HostBuffer::F32(reader.all(n, |b: [u8; 1]| f32::from(i8::from_be_bytes(b)))?)
        }
        (Elem::I16, DType::I64) => {
            HostBuffer::I64(reader.all(n, |b| i64::from(i16::from_be_bytes(b)))?)
        }
        (Elem::I16, _) => HostBuffer::F32(reader.all(n, |b| f32::from(i16::from_be_bytes(b)))?),
        (Elem::I32, DType::I64) => {
            HostBuffer::I64(reader.all(n, |b| i64::from(i32::from_be_bytes(b)))?)
        }
        (Elem::I32, _) => HostBuffer::I32(reader.all(n, i32::from_be_bytes)?),
        (Elem::F32, _) => HostBuffer::F32(reader.all(n, f32::from_be_bytes)?),
        (Elem::F64, _) => HostBuffer::F64(reader.all(n, f64::from_be_bytes)?),
    };
    let mut extra = [0u8; 1];
    loop {
        match r.read(&mut extra) {
            Ok(0) => break,
            Ok(_) => return Err(IdxError::Trailing { dims, want }),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IdxError::Gzip(e)),
        }
    }
    Ok(Array { shape: dims, data })
}

/// The data of a file, read a chunk at a time.
struct Chunks<'a, R> {
    r: &'a mut R,
    left: usize,
    buf: Vec<u8>,
    dims: &'a [usize],
    want: usize,
}

impl<R: Read> Chunks<'_, R> {
    /// All `n` elements, each made from its `N` bytes by `f`. The caller has checked that
    /// `n * N` bytes fit what the stream can hold, so the vector's size is bounded by the
    /// file's.
    fn all<T, const N: usize>(
        &mut self,
        n: usize,
        f: impl Fn([u8; N]) -> T,
    ) -> Result<Vec<T>, IdxError> {
        let mut out = Vec::with_capacity(n);
        // A whole number of elements per chunk.
        let per = (self.buf.len() / N).max(1) * N;
        while self.left > 0 {
            let take = per.min(self.left);
            let Some(buf) = self.buf.get_mut(..take) else {
                break;
            };
            if !fill(self.r, buf)? {
                return Err(IdxError::Truncated {
                    dims: self.dims.to_vec(),
                    want: self.want,
                });
            }
            out.extend(buf.chunks_exact(N).map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            }));
            self.left -= take;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn idx(ty: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, ty, u8::try_from(dims.len()).expect("few dims")];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).expect("compresses");
        e.finish().expect("compresses")
    }

    fn read_all(bytes: &[u8]) -> Result<Array, IdxError> {
        read(bytes, &mut |_, _| true)
    }

    #[test]
    fn images_become_f32_and_labels_i64_raw_or_gzipped() {
        let images = idx(0x08, &[2, 2, 2], &[0, 1, 2, 3, 252, 253, 254, 255]);
        let labels = idx(0x08, &[3], &[7, 0, 9]);
        for (bytes, zipped) in [(images.clone(), false), (gz(&images), true)] {
            let a = read_all(&bytes).unwrap_or_else(|e| panic!("gzip {zipped}: {e}"));
            assert_eq!(a.shape, [2, 2, 2]);
            assert_eq!(
                a.data,
                HostBuffer::F32(vec![0.0, 1.0, 2.0, 3.0, 252.0, 253.0, 254.0, 255.0])
            );
        }
        let a = read_all(&gz(&labels)).expect("labels");
        assert_eq!((a.shape, a.data), (vec![3], HostBuffer::I64(vec![7, 0, 9])));
    }

    #[test]
    fn every_type_converts_as_documented() {
        let a = read_all(&idx(0x09, &[2], &[0xFF, 5])).expect("i8");
        assert_eq!(a.data, HostBuffer::I64(vec![-1, 5]));
        let a = read_all(&idx(0x0B, &[1, 2], &[0xFF, 0xFE, 0x01, 0x00])).expect("i16");
        assert_eq!(a.data, HostBuffer::F32(vec![-2.0, 256.0]));
        let a = read_all(&idx(0x0C, &[1, 1], &(-5i32).to_be_bytes())).expect("i32");
        assert_eq!(a.data, HostBuffer::I32(vec![-5]));
        let a = read_all(&idx(0x0D, &[1], &1.5f32.to_be_bytes())).expect("f32");
        assert_eq!(a.data, HostBuffer::F32(vec![1.5]));
        let a = read_all(&idx(0x0E, &[1], &(-0.25f64).to_be_bytes())).expect("f64");
        assert_eq!(a.data, HostBuffer::F64(vec![-0.25]));
        // Large files cross chunk boundaries with whole elements.
        let n = CHUNK + 3;
        let data: Vec<u8> = (0..n * 8).map(|i| (i % 251) as u8).collect();
        let a = read_all(&gz(&idx(0x0E, &[u32::try_from(n).expect("small")], &data)))
            .expect("many f64");
        assert_eq!(a.data.len(), n);
    }

    /// Hostile files: each is an error, never a panic or an allocation from a claimed size.
    #[test]
    fn hostile_files_are_refused() {
        let mut trailing_gz = gz(&idx(0x08, &[1], &[1]));
        trailing_gz.extend_from_slice(b"garbage");
        let mut bad_crc = gz(&idx(0x08, &[4], &[1, 2, 3, 4]));
        let len = bad_crc.len();
        bad_crc[len - 6] ^= 0xFF;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "magic"),
            ("text", b"hello world".to_vec(), "magic"),
            ("bad type", idx(0x07, &[1], &[0]), "0x07"),
            ("no dims", idx(0x08, &[], &[]), "0 dims"),
            (
                "dims cut",
                vec![0, 0, 8, 3, 0, 0, 0, 1],
                "inside its header",
            ),
            ("short data", idx(0x08, &[2, 2], &[1, 2, 3]), "need 4 bytes"),
            ("extra data", idx(0x08, &[2], &[1, 2, 3]), "data after"),
            (
                "huge dims",
                idx(0x0E, &[u32::MAX, u32::MAX, u32::MAX], &[]),
                "more elements than memory",
            ),
            (
                "claims 4 GiB",
                idx(0x08, &[65_536, 65_536], &[0; 16]),
                "more than the 16 bytes",
            ),
            (
                "gzip bomb claim",
                gz(&idx(0x08, &[60_000, 28, 28], &[0; 10])),
                "of compressed data",
            ),
            (
                "gzip truncated data",
                gz(&idx(0x08, &[3], &[1, 2])),
                "ends before its data",
            ),
            (
                "gzip cut",
                gz(&idx(0x08, &[4], &[1, 2, 3, 4]))[..12].to_vec(),
                "",
            ),
            ("gzip trailing garbage", trailing_gz, "gzip"),
            ("gzip bad checksum", bad_crc, "gzip"),
            ("gzip header only", vec![0x1f, 0x8b], "magic"),
        ];
        for (name, bytes, want) in cases {
            match read_all(&bytes) {
                Err(e) => assert!(e.to_string().contains(want), "{name}: {e}"),
                Ok(a) => panic!("{name}: read {a:?}"),
            }
        }
        let r = read(&idx(0x08, &[2, 2], &[1, 2, 3, 4]), &mut |_, n| n < 4);
        assert!(
            matches!(r, Err(IdxError::Refused { numel: 4, .. })),
            "{r:?}"
        );
    }
}
