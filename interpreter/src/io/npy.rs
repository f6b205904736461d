//! NumPy's `.npy` format, versions 1.0, 2.0 and 3.0
//! (<https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>).
//!
//! A file is the magic `\x93NUMPY`, a major and minor version byte, the header's length
//! (2 bytes little-endian in version 1, 4 bytes after), the header — a Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with spaces and
//! ended by a newline — and the elements. The reader takes the dtypes MindScript has
//! (`f4 f8 i4 i8 b1`) in either byte order (big-endian data is converted), in C order; it
//! refuses object (pickled) arrays, structured dtypes, Fortran order and other dtypes with
//! a message that says so. The writer writes version 1.0 (2.0 when the header does not fit
//! 65,535 bytes), little-endian, C order, the header padded to 64 bytes as NumPy does.

use devices::{HostBuffer, Tensor};
use ir::DType;

use super::{Array, Room, decode, numel};

/// The first bytes of every `.npy` file.
const MAGIC: &[u8] = b"\x93NUMPY";

/// Why a `.npy` file cannot be read.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum NpyError {
    #[error("it does not start with the .npy magic bytes (`\\x93NUMPY`)")]
    NotNpy,
    #[error("it ends inside its header")]
    TruncatedHeader,
    #[error(".npy format version {0}.{1} is not one this reader knows (1.0, 2.0, 3.0)")]
    Version(u8, u8),
    #[error("its header is not valid text")]
    HeaderEncoding,
    #[error("its header is malformed: {0}")]
    Header(String),
    #[error(
        "it holds Python objects (a pickled array), which MindScript never reads; save a numeric array instead"
    )]
    Object,
    #[error("it holds a structured array (fields), which MindScript does not read")]
    Structured,
    #[error(
        "it is stored in Fortran (column-major) order; save it in C order (`np.ascontiguousarray(x)`)"
    )]
    Fortran,
    #[error(
        "its dtype `{0}` is not one MindScript has (f32, f64, i32, i64, bool); convert it first, e.g. `x.astype(np.float32)`"
    )]
    Dtype(String),
    #[error("its shape {0:?} has more elements than memory can address")]
    Overflow(Vec<u64>),
    #[error("its data is {found} bytes, but a {dtype} array of shape {shape:?} needs {want}")]
    DataLength {
        dtype: DType,
        shape: Vec<usize>,
        want: usize,
        found: usize,
    },
    #[error("a bool element holds the byte {0}, not 0 or 1")]
    BadBool(u8),
    #[error("its {numel} {dtype} elements are more than one tensor may hold")]
    Refused { dtype: DType, numel: usize },
}

/// A Python literal of the header dict.
#[derive(Debug, PartialEq)]
enum Lit {
    Str(String),
    Bool(bool),
    Ints(Vec<u64>),
    /// A list: NumPy writes one for structured dtypes only.
    List,
}

/// A tiny reader of the Python literals NumPy writes into headers.
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn bad(&self, what: &str) -> NpyError {
        NpyError::Header(format!("{what} at byte {}", self.pos))
    }

    fn ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn string(&mut self) -> Result<String, NpyError> {
        let Some(q @ (b'\'' | b'"')) = self.peek() else {
            return Err(self.bad("expected a quoted string"));
        };
        self.pos += 1;
        let start = self.pos;
        while let Some(&b) = self.s.get(self.pos) {
            if b == q {
                let text = self.s.get(start..self.pos).unwrap_or(&[]);
                self.pos += 1;
                return String::from_utf8(text.to_vec()).map_err(|_| NpyError::HeaderEncoding);
            }
            if b == b'\\' {
                return Err(self.bad("an escape in a string"));
            }
            self.pos += 1;
        }
        Err(self.bad("an unterminated string"))
    }

    fn int(&mut self) -> Result<u64, NpyError> {
        self.ws();
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        let digits = std::str::from_utf8(self.s.get(start..self.pos).unwrap_or(&[]))
            .map_err(|_| NpyError::HeaderEncoding)?;
        let n = digits
            .parse::<u64>()
            .map_err(|_| self.bad("expected a size (a non-negative integer)"))?;
        // Python 2 wrote long integers with an `L` suffix.
        if self.s.get(self.pos) == Some(&b'L') {
            self.pos += 1;
        }
        Ok(n)
    }

    fn value(&mut self) -> Result<Lit, NpyError> {
        match self.peek() {
            Some(b'\'' | b'"') => Ok(Lit::Str(self.string()?)),
            Some(b'(') => {
                self.pos += 1;
                let mut v = Vec::new();
                loop {
                    if self.eat(b')') {
                        return Ok(Lit::Ints(v));
                    }
                    v.push(self.int()?);
                    if !self.eat(b',') {
                        if self.eat(b')') {
                            return Ok(Lit::Ints(v));
                        }
                        return Err(self.bad("expected `,` or `)` in the shape"));
                    }
                }
            }
            Some(b'[') => Ok(Lit::List),
            _ => {
                let rest = self.s.get(self.pos..).unwrap_or(&[]);
                if rest.starts_with(b"True") {
                    self.pos += 4;
                    Ok(Lit::Bool(true))
                } else if rest.starts_with(b"False") {
                    self.pos += 5;
                    Ok(Lit::Bool(false))
                } else {
                    Err(self.bad("expected a string, a bool or a shape"))
                }
            }
        }
    }

    /// The dict: its entries in order.
    fn dict(&mut self) -> Result<Vec<(String, Lit)>, NpyError> {
        if !self.eat(b'{') {
            return Err(self.bad("expected `{`"));
        }
        let mut entries = Vec::new();
        loop {
            if self.eat(b'}') {
                break;
            }
            let key = self.string()?;
            if !self.eat(b':') {
                return Err(self.bad("expected `:`"));
            }
            let value = self.value()?;
            // A list value (a structured dtype) is refused before its contents matter.
            if value == Lit::List {
                return Err(NpyError::Structured);
            }
            entries.push((key, value));
            if !self.eat(b',') {
                if self.eat(b'}') {
                    break;
                }
                return Err(self.bad("expected `,` or `}`"));
            }
        }
        if self.peek().is_some() {
            return Err(self.bad("text after the dict"));
        }
        Ok(entries)
    }
}

/// The dtype and byte order of a `descr` string.
fn parse_descr(descr: &str) -> Result<(DType, bool), NpyError> {
    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'>' | b'|' | b'=') => descr.split_at(1),
        _ => ("", descr),
    };
    if code.starts_with('O') {
        return Err(NpyError::Object);
    }
    let big = match order {
        ">" => true,
        "=" | "" => cfg!(target_endian = "big"),
        _ => false,
    };
    let dtype = match code {
        "f4" => DType::F32,
        "f8" => DType::F64,
        "i4" => DType::I32,
        "i8" => DType::I64,
        "b1" | "?" => DType::Bool,
        _ => return Err(NpyError::Dtype(descr.to_string())),
    };
    Ok((dtype, big))
}

/// Reads a `.npy` file held in `bytes`; `room` is asked before the elements are allocated.
pub(crate) fn read(bytes: &[u8], room: Room<'_>) -> Result<Array, NpyError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(NpyError::NotNpy)?;
    let (&major, rest) = rest.split_first().ok_or(NpyError::TruncatedHeader)?;
    let (&minor, rest) = rest.split_first().ok_or(NpyError::TruncatedHeader)?;
    let (len, rest) = match major {
        1 => {
            let (l, r) = rest.split_at_checked(2).ok_or(NpyError::TruncatedHeader)?;
            (usize::from(u16::from_le_bytes([l[0], l[1]])), r)
        }
        2 | 3 => {
            let (l, r) = rest.split_at_checked(4).ok_or(NpyError::TruncatedHeader)?;
            let n = u32::from_le_bytes([l[0], l[1], l[2], l[3]]);
            (
                usize::try_from(n).map_err(|_| NpyError::TruncatedHeader)?,
                r,
            )
        }
        _ => return Err(NpyError::Version(major, minor)),
    };
    let (header, data) = rest
        .split_at_checked(len)
        .ok_or(NpyError::TruncatedHeader)?;
    // Versions 1 and 2 are Latin-1 text, version 3 UTF-8; the keys and values NumPy writes
    // are ASCII either way, and the lexer reads bytes.
    let entries = Lexer { s: header, pos: 0 }.dict()?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value) in entries {
        let slot_taken = match (key.as_str(), value) {
            ("descr", Lit::Str(s)) => descr.replace(s).is_some(),
            ("fortran_order", Lit::Bool(b)) => fortran.replace(b).is_some(),
            ("shape", Lit::Ints(v)) => shape.replace(v).is_some(),
            ("descr" | "fortran_order" | "shape", v) => {
                return Err(NpyError::Header(format!(
                    "`{key}` has the wrong kind of value ({v:?})"
                )));
            }
            _ => {
                return Err(NpyError::Header(format!("an unexpected key `{key}`")));
            }
        };
        if slot_taken {
            return Err(NpyError::Header(format!("the key `{key}` appears twice")));
        }
    }
    let (Some(descr), Some(fortran), Some(shape)) = (descr, fortran, shape) else {
        return Err(NpyError::Header(
            "it needs the keys `descr`, `fortran_order` and `shape`".into(),
        ));
    };
    let (dtype, big) = parse_descr(&descr)?;
    let dims: Vec<usize> = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| NpyError::Overflow(shape.clone()))?;
    // A Fortran-ordered array of rank ≤ 1 is laid out as in C order.
    if fortran && dims.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(NpyError::Fortran);
    }
    let n = numel(&dims).ok_or_else(|| NpyError::Overflow(shape.clone()))?;
    let want = n
        .checked_mul(dtype.size_of())
        .ok_or_else(|| NpyError::Overflow(shape.clone()))?;
    if data.len() != want {
        return Err(NpyError::DataLength {
            dtype,
            shape: dims,
            want,
            found: data.len(),
        });
    }
    if !room(dtype, n) {
        return Err(NpyError::Refused { dtype, numel: n });
    }
    let data = match (dtype, big) {
        (DType::F32, false) => HostBuffer::F32(decode(data, f32::from_le_bytes)),
        (DType::F32, true) => HostBuffer::F32(decode(data, f32::from_be_bytes)),
        (DType::F64, false) => HostBuffer::F64(decode(data, f64::from_le_bytes)),
        (DType::F64, true) => HostBuffer::F64(decode(data, f64::from_be_bytes)),
        (DType::I32, false) => HostBuffer::I32(decode(data, i32::from_le_bytes)),
        (DType::I32, true) => HostBuffer::I32(decode(data, i32::from_be_bytes)),
        (DType::I64, false) => HostBuffer::I64(decode(data, i64::from_le_bytes)),
        (DType::I64, true) => HostBuffer::I64(decode(data, i64::from_be_bytes)),
        (_, _) => HostBuffer::Bool(
            data.iter()
                .map(|&b| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    other => Err(NpyError::BadBool(other)),
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Array { shape: dims, data })
}

/// The `descr` NumPy writes for `dtype`, or `None` for a dtype `.npy` files cannot hold
/// here.
fn descr(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
        _ => return None,
    })
}

/// The magic, version, length and header of a `.npy` file of a `dtype` array of `shape`.
pub(crate) fn header(dtype: DType, shape: &[usize]) -> Option<Vec<u8>> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {dims}, }}",
        descr(dtype)?
    );
    // The data starts at a multiple of 64 bytes, as NumPy aligns it: the preamble is 10
    // bytes in version 1, 12 after, and the header ends with a newline.
    let mut version = 1u8;
    let mut preamble = 10;
    // Version 1 counts the header in two bytes; with its padding (under 64 bytes) it must
    // fit.
    if dict.len() + 1 + 64 > usize::from(u16::MAX) {
        version = 2;
        preamble = 12;
    }
    let pad = (64 - (preamble + dict.len() + 1) % 64) % 64;
    dict.extend(std::iter::repeat_n(' ', pad));
    dict.push('\n');
    let mut out = Vec::with_capacity(preamble + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&u16::try_from(dict.len()).ok()?.to_le_bytes());
    } else {
        out.extend_from_slice(&u32::try_from(dict.len()).ok()?.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    Some(out)
}

/// Writes `t` as a `.npy` file to `w`.
pub(crate) fn write(t: &Tensor, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let head = header(t.dtype(), t.shape()).ok_or_else(|| {
        std::io::Error::other(format!("{} tensors cannot be saved as .npy", t.dtype()))
    })?;
    w.write_all(&head)?;
    super::le_bytes(t, &mut |b| w.write_all(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[version, 0]);
        let n = dict.len();
        if version == 1 {
            v.extend_from_slice(&u16::try_from(n).expect("short").to_le_bytes());
        } else {
            v.extend_from_slice(&u32::try_from(n).expect("short").to_le_bytes());
        }
        v.extend_from_slice(dict.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn read_all(bytes: &[u8]) -> Result<Array, NpyError> {
        read(bytes, &mut |_, _| true)
    }

    #[test]
    fn round_trips_every_dtype() {
        let cases = [
            Tensor::from_vec(vec![1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0], &[2, 3]),
            Tensor::from_vec(vec![1e300f64, -0.5], &[2]),
            Tensor::from_vec(vec![i32::MIN, 7], &[2, 1]),
            Tensor::from_vec(vec![i64::MAX], &[]),
            Tensor::from_vec(vec![true, false, true], &[3]),
            Tensor::from_vec(Vec::<f32>::new(), &[0, 4]),
        ];
        for t in cases {
            let t = t.expect("tensor");
            let mut bytes = Vec::new();
            write(&t, &mut bytes).expect("writes");
            let head = header(t.dtype(), t.shape()).expect("header");
            assert_eq!(head.len() % 64, 0, "the data is aligned");
            let a = read_all(&bytes).expect("reads back");
            assert_eq!(a.shape, t.shape());
            let back = a.into_tensor().expect("tensor");
            assert_eq!(back.to_f64_vec(), t.to_f64_vec());
            assert_eq!(back.dtype(), t.dtype());
        }
    }

    #[test]
    fn reads_what_numpy_writes_in_every_version_and_byte_order() {
        let dict = "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }\n";
        let a = read_all(&file(1, dict, &[0, 0, 0, 1, 255, 255, 255, 254])).expect("reads");
        assert_eq!(a.data, HostBuffer::I32(vec![1, -2]));
        let dict = "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (1L, 1L)}\n";
        let a = read_all(&file(2, dict, &2.5f64.to_le_bytes())).expect("reads");
        assert_eq!((a.shape, a.data), (vec![1, 1], HostBuffer::F64(vec![2.5])));
        let dict = "{'descr': '|b1', 'fortran_order': True, 'shape': (2,), }\n";
        let a = read_all(&file(3, dict, &[1, 0])).expect("1-d Fortran order is C order");
        assert_eq!(a.data, HostBuffer::Bool(vec![true, false]));
    }

    /// Hostile and unsupported files: each is an error, never a panic or an allocation
    /// from an unchecked size.
    #[test]
    fn hostile_files_are_refused() {
        let ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "magic"),
            ("not npy", b"PK\x03\x04 a zip".to_vec(), "magic"),
            ("magic only", MAGIC.to_vec(), "ends inside its header"),
            ("version 9", file(9, ok, &[0; 8]), "version 9.0"),
            (
                "header length past the end",
                {
                    let mut v = file(1, ok, &[]);
                    v.truncate(20);
                    v
                },
                "ends inside",
            ),
            (
                "object array",
                file(
                    1,
                    "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
                    &[0; 8],
                ),
                "pickled",
            ),
            (
                "structured",
                file(
                    1,
                    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                    &[0; 4],
                ),
                "structured",
            ),
            (
                "fortran",
                file(
                    1,
                    "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                    &[0; 16],
                ),
                "Fortran",
            ),
            (
                "float16",
                file(
                    1,
                    "{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }",
                    &[0; 2],
                ),
                "`<f2` is not one MindScript has",
            ),
            (
                "uint8",
                file(
                    1,
                    "{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }",
                    &[0; 1],
                ),
                "not one MindScript has",
            ),
            ("truncated data", file(1, ok, &[0; 7]), "needs 8"),
            ("extra data", file(1, ok, &[0; 9]), "is 9 bytes"),
            (
                "huge shape",
                file(
                    1,
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
                    &[0; 8],
                ),
                "more elements than memory",
            ),
            (
                "shape beyond u64",
                file(
                    1,
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
                    &[],
                ),
                "expected a size",
            ),
            (
                "negative dim",
                file(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
                    &[],
                ),
                "expected a size",
            ),
            (
                "missing key",
                file(1, "{'descr': '<f4', 'shape': (2,), }", &[0; 8]),
                "needs the keys",
            ),
            (
                "duplicate key",
                file(
                    1,
                    "{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                    &[0; 8],
                ),
                "appears twice",
            ),
            (
                "unknown key",
                file(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': True}",
                    &[0; 8],
                ),
                "unexpected key",
            ),
            (
                "unterminated string",
                file(1, "{'descr': '<f4", &[]),
                "unterminated",
            ),
            ("not a dict", file(1, "[1, 2]", &[]), "expected `{`"),
            (
                "trailing text",
                file(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } junk",
                    &[0; 8],
                ),
                "text after",
            ),
            (
                "bad bool",
                file(
                    1,
                    "{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }",
                    &[7],
                ),
                "byte 7",
            ),
            (
                "wrong value kind",
                file(
                    1,
                    "{'descr': '<f4', 'fortran_order': 'no', 'shape': (2,), }",
                    &[0; 8],
                ),
                "wrong kind",
            ),
        ];
        for (name, bytes, want) in cases {
            match read_all(&bytes) {
                Err(e) => assert!(e.to_string().contains(want), "{name}: {e}"),
                Ok(a) => panic!("{name}: read {a:?}"),
            }
        }
        // The caller's cap refuses an array before it is made.
        let bytes = file(1, ok, &[0; 8]);
        assert_eq!(
            read(&bytes, &mut |_, n| n < 2),
            Err(NpyError::Refused {
                dtype: DType::F32,
                numel: 2
            })
        );
    }
}
