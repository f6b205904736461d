//! TensorBoard event files as bytes: the protobuf messages `Event`, `Summary` and
//! `HistogramProto`, and the TFRecord framing that holds them. Pure functions over byte
//! buffers, both ways, so that every detail is unit-tested without files.
//!
//! The messages are TensorFlow's (`tensorflow/core/util/event.proto`,
//! `tensorflow/core/framework/summary.proto`, `tensor.proto`); only the fields MindScript
//! writes are encoded, by hand, in the protobuf wire format (varints, length-delimited
//! fields, little-endian fixed 32- and 64-bit numbers). The decoder skips every field it
//! does not know, as protobuf readers must, so it also reads the scalars and histograms of
//! files other tools wrote.
//!
//! A TFRecord is `length: u64 LE`, `masked_crc32c(length bytes): u32 LE`, `data`,
//! `masked_crc32c(data): u32 LE`. CRC32C (Castagnoli) is computed here with a 256-entry
//! table made at compile time: event files are small and written once per log call, so
//! the table is fast enough, and it spares a dependency.

use std::fmt;

/// The CRC32C polynomial, bit-reversed (Castagnoli).
const CASTAGNOLI: u32 = 0x82F6_3B78;

/// The byte-at-a-time CRC32C table.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ CASTAGNOLI
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC32C of `data` (iSCSI, RFC 3720 appendix B.4).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// TFRecord's masked CRC: rotated and offset so that a CRC stored inside the data it
/// covers does not make the CRC of the whole degenerate.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// Appends one TFRecord holding `data` to `out`.
pub fn frame_record(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// Appends `v` as a protobuf varint (7 bits a byte, low first).
pub fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Wire types of the protobuf encoding.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const BYTES: u64 = 2;
const FIXED32: u64 = 5;

/// A protobuf message being encoded.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn key(&mut self, field: u64, wire: u64) {
        put_varint(field << 3 | wire, &mut self.0);
    }

    fn varint(mut self, field: u64, v: u64) -> Msg {
        self.key(field, VARINT);
        put_varint(v, &mut self.0);
        self
    }

    fn double(mut self, field: u64, v: f64) -> Msg {
        self.key(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn float(mut self, field: u64, v: f32) -> Msg {
        self.key(field, FIXED32);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn bytes(mut self, field: u64, b: &[u8]) -> Msg {
        self.key(field, BYTES);
        put_varint(b.len() as u64, &mut self.0);
        self.0.extend_from_slice(b);
        self
    }

    fn msg(self, field: u64, m: Msg) -> Msg {
        self.bytes(field, &m.0)
    }

    /// A packed `repeated double`.
    fn doubles(self, field: u64, vs: &[f64]) -> Msg {
        let packed: Vec<u8> = vs.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &packed)
    }
}

/// A histogram in TensorBoard's `HistogramProto` form: bucket `i` counts the values from
/// `bucket_limit[i - 1]` (or `min` for the first) up to `bucket_limit[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub min: f64,
    pub max: f64,
    pub num: f64,
    pub sum: f64,
    pub sum_squares: f64,
    /// The right edge of each bucket, increasing; the last is `max`.
    pub bucket_limit: Vec<f64>,
    /// The count of each bucket.
    pub bucket: Vec<f64>,
}

/// How many equal-width buckets a histogram has (TensorBoard's own `tf.summary.histogram`
/// uses 30 by default).
pub const BUCKETS: usize = 30;

impl Histogram {
    /// The histogram of the finite numbers of `values` in [`BUCKETS`] equal-width buckets
    /// over `[min, max]`: a value `x` falls in bucket `floor((x - min) / width)`, the
    /// maximum in the last one. NaN and infinities are left out (they have no place on an
    /// axis), so `num` counts the finite values. With every value equal, there is one
    /// bucket of zero width; with none, one empty bucket at 0.
    pub fn of(values: &[f64]) -> Histogram {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let (Some(min), Some(max)) = (
            finite.iter().copied().reduce(f64::min),
            finite.iter().copied().reduce(f64::max),
        ) else {
            return Histogram {
                min: 0.0,
                max: 0.0,
                num: 0.0,
                sum: 0.0,
                sum_squares: 0.0,
                bucket_limit: vec![0.0],
                bucket: vec![0.0],
            };
        };
        let sum = finite.iter().sum();
        let sum_squares = finite.iter().map(|v| v * v).sum();
        let width = (max - min) / BUCKETS as f64;
        let (bucket_limit, bucket) = if width > 0.0 && width.is_finite() {
            let mut counts = vec![0.0; BUCKETS];
            for v in &finite {
                let k = ((v - min) / width).floor();
                // A value at the maximum (or rounded past it) belongs to the last bucket.
                let k = if k >= (BUCKETS - 1) as f64 {
                    BUCKETS - 1
                } else {
                    k.max(0.0) as usize
                };
                if let Some(c) = counts.get_mut(k) {
                    *c += 1.0;
                }
            }
            let mut limits: Vec<f64> = (1..BUCKETS).map(|k| min + k as f64 * width).collect();
            limits.push(max);
            (limits, counts)
        } else {
            (vec![max], vec![finite.len() as f64])
        };
        Histogram {
            min,
            max,
            num: finite.len() as f64,
            sum,
            sum_squares,
            bucket_limit,
            bucket,
        }
    }

    fn encode(&self) -> Msg {
        Msg::default()
            .double(1, self.min)
            .double(2, self.max)
            .double(3, self.num)
            .double(4, self.sum)
            .double(5, self.sum_squares)
            .doubles(6, &self.bucket_limit)
            .doubles(7, &self.bucket)
    }
}

/// What one summary value holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `simple_value`: a scalar (TensorBoard's scalars dashboard).
    Scalar(f32),
    /// `histo` (the histograms and distributions dashboards).
    Histogram(Histogram),
    /// A string tensor with the `text` plugin's metadata (the text dashboard, which reads
    /// Markdown).
    Text(String),
}

/// One event of a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    pub step: i64,
    pub what: What,
}

/// What an event carries.
#[derive(Clone, Debug, PartialEq)]
pub enum What {
    /// `file_version`, the first event of every file (`brain.Event:2`).
    FileVersion(String),
    /// A summary of tagged values.
    Summary(Vec<(String, Value)>),
    /// Anything else (graphs, session logs, ...), which MindScript neither writes nor shows.
    Other,
}

/// The `file_version` every event file starts with.
pub const FILE_VERSION: &str = "brain.Event:2";

/// TensorFlow's `DT_STRING`.
const DT_STRING: u64 = 7;

impl Event {
    /// The event's protobuf bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Msg::default().double(1, self.wall_time);
        if self.step != 0 {
            // int64 is encoded as the two's complement varint.
            m = m.varint(2, self.step as u64);
        }
        match &self.what {
            What::FileVersion(v) => m = m.bytes(3, v.as_bytes()),
            What::Summary(values) => {
                let mut s = Msg::default();
                for (tag, v) in values {
                    s = s.msg(1, encode_value(tag, v));
                }
                m = m.msg(5, s);
            }
            What::Other => {}
        }
        m.0
    }
}

/// One `Summary.Value`.
fn encode_value(tag: &str, v: &Value) -> Msg {
    let m = Msg::default().bytes(1, tag.as_bytes());
    match v {
        Value::Scalar(x) => m.float(2, *x),
        Value::Histogram(h) => m.msg(5, h.encode()),
        Value::Text(s) => {
            // The text plugin's `PluginData.content` is its `TextPluginData` message,
            // empty at version 0; data class 2 is `DATA_CLASS_TENSOR`.
            let plugin = Msg::default().bytes(1, b"text");
            let metadata = Msg::default().msg(1, plugin).varint(4, 2);
            // A scalar string tensor: no dims, one `string_val`.
            let tensor = Msg::default()
                .varint(1, DT_STRING)
                .msg(2, Msg::default())
                .bytes(8, s.as_bytes());
            m.msg(9, metadata).msg(8, tensor)
        }
    }
}

/// Why bytes are not an event file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end inside a record.
    #[error("the file ends inside a record (its header says {need} more bytes, {have} remain)")]
    Truncated { need: u64, have: u64 },
    /// A record's length or data does not match its CRC.
    #[error(
        "the {what} of a record does not match its CRC32C (stored {stored:#010x}, computed {computed:#010x})"
    )]
    Crc {
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    /// A record's data is not a protobuf `Event`.
    #[error("a record is not a valid event: {0}")]
    Proto(&'static str),
}

/// A decoding error and where it is: the offset of the record in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtOffset {
    pub offset: u64,
    pub error: DecodeError,
}

impl fmt::Display for AtOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.error)
    }
}

/// The data of every record of a TFRecord file, each with its offset, checking both CRCs.
pub fn read_records(bytes: &[u8]) -> Result<Vec<(u64, &[u8])>, AtOffset> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let offset = pos as u64;
        let fail = |error| AtOffset { offset, error };
        let rest = &bytes[pos..];
        let have = rest.len() as u64;
        let Some((head, after)) = rest.split_at_checked(12) else {
            return Err(fail(DecodeError::Truncated { need: 12, have }));
        };
        let (len_bytes, len_crc) = head.split_at(8);
        let stored = u32::from_le_bytes(len_crc.try_into().unwrap_or_default());
        let computed = masked_crc32c(len_bytes);
        if stored != computed {
            return Err(fail(DecodeError::Crc {
                what: "length",
                stored,
                computed,
            }));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default());
        let need = len.saturating_add(4);
        let Some((data, after)) = usize::try_from(len)
            .ok()
            .and_then(|n| after.split_at_checked(n))
        else {
            return Err(fail(DecodeError::Truncated {
                need,
                have: have - 12,
            }));
        };
        let Some((crc, _)) = after.split_at_checked(4) else {
            return Err(fail(DecodeError::Truncated {
                need,
                have: have - 12,
            }));
        };
        let stored = u32::from_le_bytes(crc.try_into().unwrap_or_default());
        let computed = masked_crc32c(data);
        if stored != computed {
            return Err(fail(DecodeError::Crc {
                what: "data",
                stored,
                computed,
            }));
        }
        out.push((offset, data));
        pos += 12 + data.len() + 4;
    }
    Ok(out)
}

/// Every event of an event file, in order.
pub fn read_events(bytes: &[u8]) -> Result<Vec<Event>, AtOffset> {
    read_records(bytes)?
        .into_iter()
        .map(|(offset, data)| Event::decode(data).map_err(|error| AtOffset { offset, error }))
        .collect()
}

/// A field read from a protobuf message.
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
}

/// Reads the fields of one protobuf message in order.
struct Fields<'a> {
    rest: &'a [u8],
}

fn get_varint(rest: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let Some((&b, tail)) = rest.split_first() else {
            return Err(DecodeError::Proto("a varint runs past the end"));
        };
        *rest = tail;
        if shift == 63 && b > 1 {
            return Err(DecodeError::Proto("a varint is longer than 64 bits"));
        }
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError::Proto("a varint is longer than 10 bytes"))
}

fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], DecodeError> {
    let Some((head, tail)) = rest.split_at_checked(N) else {
        return Err(DecodeError::Proto("a fixed-size field runs past the end"));
    };
    *rest = tail;
    head.try_into()
        .map_err(|_| DecodeError::Proto("a fixed-size field runs past the end"))
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Field<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        Some(self.field())
    }
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields { rest: bytes }
    }

    fn field(&mut self) -> Result<(u64, Field<'a>), DecodeError> {
        let key = get_varint(&mut self.rest)?;
        let number = key >> 3;
        let f = match key & 7 {
            VARINT => Field::Varint(get_varint(&mut self.rest)?),
            FIXED64 => Field::Fixed64(take::<8>(&mut self.rest)?),
            BYTES => {
                let n = get_varint(&mut self.rest)?;
                let Some((b, tail)) = usize::try_from(n)
                    .ok()
                    .and_then(|n| self.rest.split_at_checked(n))
                else {
                    return Err(DecodeError::Proto(
                        "a length-delimited field runs past the end",
                    ));
                };
                self.rest = tail;
                Field::Bytes(b)
            }
            FIXED32 => Field::Fixed32(take::<4>(&mut self.rest)?),
            _ => return Err(DecodeError::Proto("a field has an unknown wire type")),
        };
        Ok((number, f))
    }
}

fn as_double(f: &Field<'_>) -> Result<f64, DecodeError> {
    match f {
        Field::Fixed64(b) => Ok(f64::from_le_bytes(*b)),
        _ => Err(DecodeError::Proto("a double field has the wrong wire type")),
    }
}

fn as_bytes<'a>(f: &Field<'a>) -> Result<&'a [u8], DecodeError> {
    match f {
        Field::Bytes(b) => Ok(b),
        _ => Err(DecodeError::Proto(
            "a length-delimited field has the wrong wire type",
        )),
    }
}

fn as_string(f: &Field<'_>) -> Result<String, DecodeError> {
    String::from_utf8(as_bytes(f)?.to_vec())
        .map_err(|_| DecodeError::Proto("a string field is not UTF-8"))
}

/// A `repeated double`, packed or one per field.
fn push_doubles(f: &Field<'_>, out: &mut Vec<f64>) -> Result<(), DecodeError> {
    match f {
        Field::Bytes(b) => {
            if b.len() % 8 != 0 {
                return Err(DecodeError::Proto(
                    "a packed double field is not a multiple of 8 bytes",
                ));
            }
            out.extend(
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default())),
            );
            Ok(())
        }
        other => {
            out.push(as_double(other)?);
            Ok(())
        }
    }
}

impl Event {
    /// Decodes one event's protobuf bytes.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let mut e = Event {
            wall_time: 0.0,
            step: 0,
            what: What::Other,
        };
        for f in Fields::new(bytes) {
            let (number, f) = f?;
            match number {
                1 => e.wall_time = as_double(&f)?,
                2 => match f {
                    Field::Varint(v) => e.step = v as i64,
                    _ => return Err(DecodeError::Proto("the step has the wrong wire type")),
                },
                3 => e.what = What::FileVersion(as_string(&f)?),
                5 => e.what = What::Summary(decode_summary(as_bytes(&f)?)?),
                _ => {}
            }
        }
        Ok(e)
    }
}

fn decode_summary(bytes: &[u8]) -> Result<Vec<(String, Value)>, DecodeError> {
    let mut out = Vec::new();
    for f in Fields::new(bytes) {
        let (number, f) = f?;
        if number == 1
            && let Some(v) = decode_value(as_bytes(&f)?)?
        {
            out.push(v);
        }
    }
    Ok(out)
}

/// One `Summary.Value`, or `None` for kinds MindScript does not show (images, audio,
/// tensors of other plugins).
fn decode_value(bytes: &[u8]) -> Result<Option<(String, Value)>, DecodeError> {
    let mut tag = String::new();
    let mut value = None;
    let mut plugin = String::new();
    let mut tensor = None;
    for f in Fields::new(bytes) {
        let (number, f) = f?;
        match number {
            1 => tag = as_string(&f)?,
            2 => match f {
                Field::Fixed32(b) => value = Some(Value::Scalar(f32::from_le_bytes(b))),
                _ => return Err(DecodeError::Proto("a simple value has the wrong wire type")),
            },
            5 => value = Some(Value::Histogram(decode_histogram(as_bytes(&f)?)?)),
            8 => tensor = Some(as_bytes(&f)?),
            9 => plugin = decode_plugin_name(as_bytes(&f)?)?,
            _ => {}
        }
    }
    if value.is_none()
        && let Some(t) = tensor
    {
        value = decode_tensor(t, &plugin)?;
    }
    Ok(value.map(|v| (tag, v)))
}

fn decode_histogram(bytes: &[u8]) -> Result<Histogram, DecodeError> {
    let mut h = Histogram {
        min: 0.0,
        max: 0.0,
        num: 0.0,
        sum: 0.0,
        sum_squares: 0.0,
        bucket_limit: Vec::new(),
        bucket: Vec::new(),
    };
    for f in Fields::new(bytes) {
        let (number, f) = f?;
        match number {
            1 => h.min = as_double(&f)?,
            2 => h.max = as_double(&f)?,
            3 => h.num = as_double(&f)?,
            4 => h.sum = as_double(&f)?,
            5 => h.sum_squares = as_double(&f)?,
            6 => push_doubles(&f, &mut h.bucket_limit)?,
            7 => push_doubles(&f, &mut h.bucket)?,
            _ => {}
        }
    }
    if h.bucket.len() != h.bucket_limit.len() {
        return Err(DecodeError::Proto(
            "a histogram has more bucket limits than counts, or fewer",
        ));
    }
    Ok(h)
}

/// `SummaryMetadata.plugin_data.plugin_name`.
fn decode_plugin_name(bytes: &[u8]) -> Result<String, DecodeError> {
    let mut name = String::new();
    for f in Fields::new(bytes) {
        let (number, f) = f?;
        if number == 1 {
            for g in Fields::new(as_bytes(&f)?) {
                let (n, g) = g?;
                if n == 1 {
                    name = as_string(&g)?;
                }
            }
        }
    }
    Ok(name)
}

/// A `TensorProto` as a value: the text plugin's string, or the scalars plugin's number
/// (TensorFlow 2 writes scalars that way). Other tensors are not shown.
fn decode_tensor(bytes: &[u8], plugin: &str) -> Result<Option<Value>, DecodeError> {
    let mut dtype = 0;
    let mut strings = Vec::new();
    let mut floats = Vec::new();
    let mut content: &[u8] = &[];
    for f in Fields::new(bytes) {
        let (number, f) = f?;
        match (number, &f) {
            (1, Field::Varint(v)) => dtype = *v,
            (4, _) => content = as_bytes(&f)?,
            (5, Field::Bytes(b)) => floats.extend(
                b.chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or_default()))),
            ),
            (5, Field::Fixed32(b)) => floats.push(f64::from(f32::from_le_bytes(*b))),
            (6, _) => push_doubles(&f, &mut floats)?,
            (8, _) => strings.push(as_string(&f)?),
            _ => {}
        }
    }
    Ok(match plugin {
        "text" => Some(Value::Text(strings.join("\n"))),
        "scalars" => {
            // DT_FLOAT (1) and DT_DOUBLE (2) in `tensor_content`, or the typed fields.
            if floats.is_empty() {
                match (dtype, content.len()) {
                    (1, 4) => floats.push(f64::from(f32::from_le_bytes(
                        content.try_into().unwrap_or_default(),
                    ))),
                    (2, 8) => {
                        floats.push(f64::from_le_bytes(content.try_into().unwrap_or_default()))
                    }
                    _ => {}
                }
            }
            floats.first().map(|&x| Value::Scalar(x as f32))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_vectors() {
        // RFC 3720 B.4 and the common check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
    }

    #[test]
    fn masked_crc_rotates_and_offsets() {
        // The CRC rotated right by 15 bits, plus TFRecord's constant.
        let c = crc32c(b"123456789");
        assert_eq!(
            masked_crc32c(b"123456789"),
            0xE306_9283_u32.rotate_right(15).wrapping_add(0xA282_EAD8)
        );
        assert_eq!(c, 0xE306_9283);
        // The values TensorBoard's own `masked_crc32c` gives.
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
        assert_eq!(masked_crc32c(&0u64.to_le_bytes()), 0x0798_0329);
    }

    #[test]
    fn varints() {
        let enc = |v| {
            let mut out = Vec::new();
            put_varint(v, &mut out);
            out
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(127), [0x7F]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xAC, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
        for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX, (-5i64) as u64] {
            let bytes = enc(v);
            let mut rest = &bytes[..];
            assert_eq!(get_varint(&mut rest), Ok(v));
            assert!(rest.is_empty());
        }
        let mut bad: &[u8] = &[0x80, 0x80];
        assert!(get_varint(&mut bad).is_err());
        let mut long: &[u8] = &[0xFF; 11];
        assert!(get_varint(&mut long).is_err());
    }

    #[test]
    fn a_scalar_event_has_these_bytes() {
        let e = Event {
            wall_time: 1.5,
            step: 3,
            what: What::Summary(vec![("loss".into(), Value::Scalar(0.25))]),
        };
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0x03]);
        // summary (field 5, 13 bytes) { value (field 1, 11 bytes) { tag "loss", simple_value } }
        want.extend_from_slice(&[0x2A, 13, 0x0A, 11, 0x0A, 4, b'l', b'o', b's', b's', 0x15]);
        want.extend_from_slice(&0.25f32.to_le_bytes());
        assert_eq!(e.encode(), want);
        assert_eq!(Event::decode(&want), Ok(e));
    }

    #[test]
    fn the_file_version_record_is_framed() {
        let e = Event {
            wall_time: 0.0,
            step: 0,
            what: What::FileVersion(FILE_VERSION.into()),
        };
        let data = e.encode();
        let mut rec = Vec::new();
        frame_record(&data, &mut rec);
        assert_eq!(rec.len(), 8 + 4 + data.len() + 4);
        assert_eq!(rec[..8], (data.len() as u64).to_le_bytes());
        assert_eq!(rec[8..12], masked_crc32c(&rec[..8]).to_le_bytes());
        assert_eq!(read_events(&rec), Ok(vec![e]));
    }

    #[test]
    fn histograms_have_equal_width_buckets() {
        let values: Vec<f64> = (0..=30).map(f64::from).collect();
        let h = Histogram::of(&values);
        assert_eq!((h.min, h.max, h.num), (0.0, 30.0, 31.0));
        assert_eq!(h.bucket.len(), BUCKETS);
        assert_eq!(h.bucket_limit.first(), Some(&1.0));
        assert_eq!(h.bucket_limit.last(), Some(&30.0));
        assert_eq!(h.bucket.iter().sum::<f64>(), 31.0);
        // 29 and 30 share the last bucket.
        assert_eq!(h.bucket.last(), Some(&2.0));
        assert_eq!(h.sum, 465.0);

        let same = Histogram::of(&[2.0, 2.0, f64::NAN, f64::INFINITY]);
        assert_eq!(
            (same.bucket_limit, same.bucket, same.num),
            (vec![2.0], vec![2.0], 2.0)
        );
        let none = Histogram::of(&[]);
        assert_eq!((none.bucket, none.num), (vec![0.0], 0.0));
    }

    #[test]
    fn histogram_and_text_round_trip() {
        let e = Event {
            wall_time: 2.0,
            step: -7,
            what: What::Summary(vec![
                (
                    "w".into(),
                    Value::Histogram(Histogram::of(&[1.0, -1.0, 0.5])),
                ),
                ("note".into(), Value::Text("hello *world*".into())),
            ]),
        };
        assert_eq!(Event::decode(&e.encode()), Ok(e));
    }

    #[test]
    fn damaged_files_are_errors_with_offsets() {
        let mut file = Vec::new();
        // Steps 1 to 3 make records of one size (a zero step is not written).
        for step in 1..4 {
            let e = Event {
                wall_time: 1.0,
                step,
                what: What::Summary(vec![("x".into(), Value::Scalar(1.0))]),
            };
            frame_record(&e.encode(), &mut file);
        }
        let whole = read_events(&file).map(|v| v.len());
        assert_eq!(whole, Ok(3));
        let one = file.len() / 3;
        // Every truncation fails at the record it cuts, never panics.
        for cut in 1..file.len() {
            if cut % one == 0 {
                continue;
            }
            let e = read_events(&file[..cut]).expect_err("a cut file fails");
            assert_eq!(e.offset, (cut / one * one) as u64, "cut at {cut}");
        }
        // Every flipped bit is caught by a CRC.
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            assert!(read_events(&bad).is_err(), "flip at {i}");
        }
        // A length that claims more than the file holds.
        let mut huge = Vec::new();
        let len = u64::MAX.to_le_bytes();
        huge.extend_from_slice(&len);
        huge.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        assert!(matches!(
            read_records(&huge),
            Err(AtOffset {
                offset: 0,
                error: DecodeError::Truncated { .. }
            })
        ));
        // Garbage with valid framing is a protobuf error, not a panic.
        for garbage in [&[0xFFu8; 7][..], &[0x0A, 0x7F], &[0x0B], &[0x29, 1, 2]] {
            let mut rec = Vec::new();
            frame_record(garbage, &mut rec);
            assert!(read_events(&rec).is_err());
        }
    }
}
