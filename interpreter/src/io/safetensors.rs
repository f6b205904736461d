//! Checkpoints in the safetensors format (<https://github.com/huggingface/safetensors>),
//! written and validated here rather than through the `safetensors` crate, so that every
//! rule below is ours to state and test.
//!
//! A file is an 8-byte little-endian header length `N`, `N` bytes of JSON, then the data.
//! The JSON object maps each tensor's name to `{"dtype", "shape", "data_offsets": [begin,
//! end]}` (offsets relative to the data), plus an optional `"__metadata__"` object of
//! strings.
//!
//! **Names.** A value's tensor leaves are stored under dotted paths: record fields by name,
//! tuple items by position (`{l1: {w, b}, opt: (m, v)}` gives `l1.b`, `l1.w`, `opt.0`,
//! `opt.1`); a bare tensor is stored as `tensor`. **Structure.** The metadata key
//! `mindscript.structure` holds the value's shape as JSON — `null` for a tensor, an array
//! for a tuple, an object for a record (`{"l1":{"b":null,"w":null},"opt":[null,null]}`) —
//! so tuples and records come back as they were saved. A file without it (written by other
//! tools) is read by splitting names at dots: a level whose parts are exactly `0`, `1`, ...
//! is a tuple, any other a record.
//!
//! **Validation.** Nothing in a file is trusted: the header length must fit the file and
//! a 100 MB cap (the reference implementation's), the JSON must parse (serde_json's depth
//! limit bounds nesting), names must be non-empty and distinct, dtypes must be ones
//! MindScript has (`F32 F64 I32 I64 BOOL`), each size is the shape's product times the
//! dtype's size with overflow checks, each tensor's offsets must match its size, and the
//! tensors sorted by offset must cover the data exactly, without gaps or overlaps. Only then
//! is anything allocated, and the caller's cap is asked first; the total allocated is never
//! more than the file's own length.

use std::collections::BTreeMap;
use std::fmt;

use devices::{HostBuffer, Tensor};
use ir::DType;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value as Json;

use super::{Array, Room, decode, numel};

/// The largest header read, as in the reference implementation.
const MAX_HEADER: u64 = 100_000_000;

/// The metadata key that holds a saved value's structure.
pub(crate) const STRUCTURE_KEY: &str = "mindscript.structure";

/// The name of a bare tensor's one leaf.
const ROOT_LEAF: &str = "tensor";

/// A value's structure with its leaves: tensors, tuples and records of them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tree<T> {
    Leaf(T),
    Tuple(Vec<Tree<T>>),
    Record(BTreeMap<String, Tree<T>>),
}

impl<T> Tree<T> {
    /// Every leaf with its dotted name, in order (tuple items by position, record fields
    /// by name).
    fn leaves<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a T)>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match self {
            Tree::Leaf(t) => out.push((
                if prefix.is_empty() {
                    ROOT_LEAF.to_string()
                } else {
                    prefix.to_string()
                },
                t,
            )),
            Tree::Tuple(items) => {
                for (i, x) in items.iter().enumerate() {
                    x.leaves(&join(&i.to_string()), out);
                }
            }
            Tree::Record(fields) => {
                for (k, x) in fields {
                    x.leaves(&join(k), out);
                }
            }
        }
    }

    /// Every leaf with its dotted name, in order, taken out of the tree.
    pub(crate) fn into_leaves(self) -> Vec<(String, T)> {
        fn walk<T>(t: Tree<T>, prefix: &str, out: &mut Vec<(String, T)>) {
            let join = |k: &str| {
                if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                }
            };
            match t {
                Tree::Leaf(x) => out.push((
                    if prefix.is_empty() {
                        ROOT_LEAF.to_string()
                    } else {
                        prefix.to_string()
                    },
                    x,
                )),
                Tree::Tuple(items) => {
                    for (i, x) in items.into_iter().enumerate() {
                        walk(x, &join(&i.to_string()), out);
                    }
                }
                Tree::Record(fields) => {
                    for (k, x) in fields {
                        walk(x, &join(&k), out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self, "", &mut out);
        out
    }

    /// The structure as JSON (`null`, arrays, objects).
    fn structure(&self) -> Json {
        match self {
            Tree::Leaf(_) => Json::Null,
            Tree::Tuple(items) => Json::Array(items.iter().map(Tree::structure).collect()),
            Tree::Record(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.structure()))
                    .collect(),
            ),
        }
    }
}

/// Why a safetensors file cannot be read.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum SafetensorsError {
    #[error("it is {0} bytes long, shorter than the 8-byte header length")]
    NoHeaderLength(usize),
    #[error("its header length {len} runs past the end of the file ({file} bytes)")]
    HeaderPastEnd { len: u64, file: usize },
    #[error("its header length {0} is over the 100 MB limit")]
    HeaderTooLarge(u64),
    #[error("its header is not valid JSON: {0}")]
    Json(String),
    #[error("the tensor name `{0}` appears twice")]
    Duplicate(String),
    #[error("a tensor has an empty name")]
    EmptyName,
    #[error("tensor `{name}`: {what}")]
    Entry { name: String, what: String },
    #[error(
        "tensor `{name}` has the dtype `{dtype}`, not one MindScript reads (F32, F64, I32, I64, BOOL)"
    )]
    Dtype { name: String, dtype: String },
    #[error("tensor `{name}`: its shape {shape:?} has more bytes than memory can address")]
    Overflow { name: String, shape: Vec<u64> },
    #[error(
        "tensor `{name}`: its offsets [{begin}, {end}] hold {} bytes, but a {dtype} tensor of shape {shape:?} has {want}",
        end.saturating_sub(*begin)
    )]
    Size {
        name: String,
        dtype: DType,
        shape: Vec<usize>,
        begin: u64,
        end: u64,
        want: usize,
    },
    #[error("tensor `{name}`: its offsets [{begin}, {end}] run past the data's {len} bytes")]
    OutOfRange {
        name: String,
        begin: u64,
        end: u64,
        len: usize,
    },
    #[error("tensors `{0}` and `{1}` overlap")]
    Overlap(String, String),
    #[error("the data has {0} bytes that no tensor uses")]
    Gap(u64),
    #[error("tensor `{name}` holds the byte {byte} in a bool, not 0 or 1")]
    BadBool { name: String, byte: u8 },
    #[error("its metadata {0}")]
    Metadata(String),
    #[error("its structure {0}")]
    Structure(String),
    #[error("tensor `{name}`: its {numel} {dtype} elements are more than one tensor may hold")]
    Refused {
        name: String,
        dtype: DType,
        numel: usize,
    },
}

type Error = SafetensorsError;

/// The safetensors name of a dtype.
fn dtype_name(d: DType) -> Option<&'static str> {
    Some(match d {
        DType::F32 => "F32",
        DType::F64 => "F64",
        DType::I32 => "I32",
        DType::I64 => "I64",
        DType::Bool => "BOOL",
        _ => return None,
    })
}

fn dtype_of(name: &str) -> Option<DType> {
    Some(match name {
        "F32" => DType::F32,
        "F64" => DType::F64,
        "I32" => DType::I32,
        "I64" => DType::I64,
        "BOOL" => DType::Bool,
        _ => return None,
    })
}

/// Writes `tree` (tensors on the host or anywhere, contiguous or not) as a safetensors file.
pub(crate) fn write(tree: &Tree<Tensor>, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut leaves = Vec::new();
    tree.leaves("", &mut leaves);
    let leaves: Vec<(String, &Tensor)> = leaves;
    write_leaves(&leaves, Some(tree.structure()), w)
}

/// Writes named tensors as a safetensors file without a saved structure (the `.msir`
/// model file's parameters, whose names are dotted paths of several values). Reading it
/// back and taking [`Tree::into_leaves`] gives the same names, provided no name is both a
/// tensor and a prefix of another's path, which the value paths written never are.
pub(crate) fn write_flat(
    tensors: &[(String, Tensor)],
    w: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let leaves: Vec<(String, &Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t)).collect();
    write_leaves(&leaves, None, w)
}

fn write_leaves(
    leaves: &[(String, &Tensor)],
    structure: Option<Json>,
    w: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    if let Some(structure) = structure {
        let mut meta = serde_json::Map::new();
        meta.insert(
            STRUCTURE_KEY.to_string(),
            Json::String(structure.to_string()),
        );
        header.insert("__metadata__".to_string(), Json::Object(meta));
    }
    let mut offset: u64 = 0;
    for (name, t) in leaves {
        let dtype = dtype_name(t.dtype()).ok_or_else(|| {
            std::io::Error::other(format!("`{name}` is {}, which cannot be saved", t.dtype()))
        })?;
        let bytes = (t.numel() as u64).saturating_mul(t.dtype().size_of() as u64);
        let mut info = serde_json::Map::new();
        info.insert("dtype".into(), Json::from(dtype));
        info.insert("shape".into(), Json::from(t.shape().to_vec()));
        info.insert(
            "data_offsets".into(),
            Json::from(vec![offset, offset + bytes]),
        );
        header.insert(name.clone(), Json::Object(info));
        offset += bytes;
    }
    let mut text = Json::Object(header).to_string().into_bytes();
    // The data starts 8-byte aligned, as the reference implementation writes it.
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(b' ');
    }
    w.write_all(&(text.len() as u64).to_le_bytes())?;
    w.write_all(&text)?;
    for (_, t) in leaves {
        super::le_bytes(t, &mut |b| w.write_all(b))?;
    }
    Ok(())
}

/// The header's top level, keeping every entry (serde_json's map would keep only the last
/// of two equal names).
struct Entries(Vec<(String, Json)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry::<String, Json>()? {
                    v.push(e);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// One tensor's entry, validated on its own.
struct Info {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    numel: usize,
    begin: usize,
    end: usize,
}

fn entry_error(name: &str, what: impl Into<String>) -> Error {
    Error::Entry {
        name: name.to_string(),
        what: what.into(),
    }
}

fn info(name: String, v: &Json, data_len: usize) -> Result<Info, Error> {
    let Json::Object(o) = v else {
        return Err(entry_error(&name, "its entry is not an object"));
    };
    let Some(Json::String(dtype)) = o.get("dtype") else {
        return Err(entry_error(&name, "it has no `dtype` string"));
    };
    let Some(d) = dtype_of(dtype) else {
        return Err(Error::Dtype {
            name,
            dtype: dtype.clone(),
        });
    };
    let Some(Json::Array(dims)) = o.get("shape") else {
        return Err(entry_error(&name, "it has no `shape` list"));
    };
    let dims: Vec<u64> = dims
        .iter()
        .map(Json::as_u64)
        .collect::<Option<_>>()
        .ok_or_else(|| entry_error(&name, "its shape is not a list of non-negative integers"))?;
    let offsets = match o.get("data_offsets") {
        Some(Json::Array(v)) => v.iter().map(Json::as_u64).collect::<Option<Vec<u64>>>(),
        _ => None,
    };
    let Some([begin, end]) = offsets
        .as_deref()
        .and_then(|v| <[u64; 2]>::try_from(v).ok())
    else {
        return Err(entry_error(
            &name,
            "its `data_offsets` is not two non-negative integers",
        ));
    };
    let overflow = || Error::Overflow {
        name: name.clone(),
        shape: dims.clone(),
    };
    let shape: Vec<usize> = dims
        .iter()
        .map(|&x| usize::try_from(x))
        .collect::<Result<_, _>>()
        .map_err(|_| overflow())?;
    let n = numel(&shape).ok_or_else(overflow)?;
    let want = n.checked_mul(d.size_of()).ok_or_else(overflow)?;
    let (Ok(b), Ok(e)) = (usize::try_from(begin), usize::try_from(end)) else {
        return Err(Error::OutOfRange {
            name,
            begin,
            end,
            len: data_len,
        });
    };
    if e > data_len || b > e {
        return Err(Error::OutOfRange {
            name,
            begin,
            end,
            len: data_len,
        });
    }
    if e - b != want {
        return Err(Error::Size {
            name,
            dtype: d,
            shape,
            begin,
            end,
            want,
        });
    }
    Ok(Info {
        name,
        dtype: d,
        shape,
        numel: n,
        begin: b,
        end: e,
    })
}

/// Reads a safetensors file held in `bytes`; `room` is asked before each tensor is
/// allocated.
pub(crate) fn read(bytes: &[u8], room: Room<'_>) -> Result<Tree<Array>, Error> {
    let (len, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or(Error::NoHeaderLength(bytes.len()))?;
    let len = u64::from_le_bytes(*len);
    if len > MAX_HEADER {
        return Err(Error::HeaderTooLarge(len));
    }
    let header_len = usize::try_from(len).map_err(|_| Error::HeaderTooLarge(len))?;
    let (header, data) = rest
        .split_at_checked(header_len)
        .ok_or(Error::HeaderPastEnd {
            len,
            file: bytes.len(),
        })?;
    let entries: Entries =
        serde_json::from_slice(header).map_err(|e| Error::Json(e.to_string()))?;
    let mut metadata: Option<BTreeMap<String, String>> = None;
    let mut infos: Vec<Info> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, v) in entries.0 {
        if !seen.insert(name.clone()) {
            return Err(Error::Duplicate(name));
        }
        if name == "__metadata__" {
            let Json::Object(o) = v else {
                return Err(Error::Metadata("is not an object".into()));
            };
            let mut m = BTreeMap::new();
            for (k, v) in o {
                let Json::String(s) = v else {
                    return Err(Error::Metadata(format!("value of `{k}` is not a string")));
                };
                m.insert(k, s);
            }
            metadata = Some(m);
            continue;
        }
        if name.is_empty() {
            return Err(Error::EmptyName);
        }
        infos.push(info(name, &v, data.len())?);
    }
    // The tensors in offset order must tile the data: each starts where the one before
    // ended, and the last ends at the end of the file.
    let mut order: Vec<usize> = (0..infos.len()).collect();
    order.sort_by_key(|&i| infos.get(i).map(|x| (x.begin, x.end)));
    let mut at = 0usize;
    let mut last: Option<&str> = None;
    for &i in &order {
        let Some(x) = infos.get(i) else { continue };
        if x.begin < at {
            return Err(Error::Overlap(
                last.unwrap_or_default().to_string(),
                x.name.clone(),
            ));
        }
        if x.begin > at {
            return Err(Error::Gap((x.begin - at) as u64));
        }
        at = x.end;
        last = Some(&x.name);
    }
    if at != data.len() {
        return Err(Error::Gap((data.len() - at) as u64));
    }
    for x in &infos {
        if !room(x.dtype, x.numel) {
            return Err(Error::Refused {
                name: x.name.clone(),
                dtype: x.dtype,
                numel: x.numel,
            });
        }
    }
    let mut arrays: BTreeMap<String, Array> = BTreeMap::new();
    for x in infos {
        let raw = data.get(x.begin..x.end).unwrap_or(&[]);
        let buffer = match x.dtype {
            DType::F32 => HostBuffer::F32(decode(raw, f32::from_le_bytes)),
            DType::F64 => HostBuffer::F64(decode(raw, f64::from_le_bytes)),
            DType::I32 => HostBuffer::I32(decode(raw, i32::from_le_bytes)),
            DType::I64 => HostBuffer::I64(decode(raw, i64::from_le_bytes)),
            _ => HostBuffer::Bool(
                raw.iter()
                    .map(|&b| match b {
                        0 => Ok(false),
                        1 => Ok(true),
                        byte => Err(Error::BadBool {
                            name: x.name.clone(),
                            byte,
                        }),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        arrays.insert(
            x.name,
            Array {
                shape: x.shape,
                data: buffer,
            },
        );
    }
    match metadata.as_ref().and_then(|m| m.get(STRUCTURE_KEY)) {
        Some(s) => {
            let json: Json = serde_json::from_str(s)
                .map_err(|e| Error::Structure(format!("is not valid JSON: {e}")))?;
            let tree = from_structure(&json, "", &mut arrays)?;
            match arrays.keys().next() {
                Some(extra) => Err(Error::Structure(format!(
                    "does not name the tensor `{extra}`"
                ))),
                None => Ok(tree),
            }
        }
        None => from_names(arrays),
    }
}

/// The tree `json` describes, its leaves taken from `arrays` by name.
fn from_structure(
    json: &Json,
    prefix: &str,
    arrays: &mut BTreeMap<String, Array>,
) -> Result<Tree<Array>, Error> {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    Ok(match json {
        Json::Null => {
            let name = if prefix.is_empty() { ROOT_LEAF } else { prefix };
            Tree::Leaf(arrays.remove(name).ok_or_else(|| {
                Error::Structure(format!("names the tensor `{name}`, which the file lacks"))
            })?)
        }
        Json::Array(items) => Tree::Tuple(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| from_structure(x, &join(&i.to_string()), arrays))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(fields) => {
            let mut out = BTreeMap::new();
            for (k, x) in fields {
                if k.is_empty() || k.contains('.') {
                    return Err(Error::Structure(format!(
                        "has the field name {k:?}, which is empty or holds a dot"
                    )));
                }
                out.insert(k.clone(), from_structure(x, &join(k), arrays)?);
            }
            Tree::Record(out)
        }
        other => {
            return Err(Error::Structure(format!(
                "holds {other}, not null, a list or an object"
            )));
        }
    })
}

/// A level of dotted names being assembled.
enum Node {
    Leaf(Array),
    Inner(BTreeMap<String, Node>),
}

/// The tree that dotted names describe (a file without a saved structure).
fn from_names(arrays: BTreeMap<String, Array>) -> Result<Tree<Array>, Error> {
    let mut root = BTreeMap::new();
    for (name, a) in arrays {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(Error::Structure(format!(
                "cannot be found from the name `{name}`, which has an empty part"
            )));
        }
        let clash = || {
            Error::Structure(format!(
                "cannot hold `{name}` both as a tensor and as a group"
            ))
        };
        let (last, path) = parts.split_last().ok_or_else(clash)?;
        let mut level = &mut root;
        for p in path {
            let node = level
                .entry((*p).to_string())
                .or_insert_with(|| Node::Inner(BTreeMap::new()));
            level = match node {
                Node::Inner(m) => m,
                Node::Leaf(_) => return Err(clash()),
            };
        }
        if level.insert((*last).to_string(), Node::Leaf(a)).is_some() {
            return Err(clash());
        }
    }
    Ok(to_tree(root))
}

fn to_tree(level: BTreeMap<String, Node>) -> Tree<Array> {
    // A level whose names are exactly `0`, `1`, ... is a tuple; the BTreeMap orders them
    // as text, so the positions are looked up one by one. A file of no tensors is the
    // empty tuple, unit.
    let n = level.len();
    let is_tuple = (0..n).all(|i| level.contains_key(&i.to_string()));
    let convert = |node: Node| match node {
        Node::Leaf(a) => Tree::Leaf(a),
        Node::Inner(m) => to_tree(m),
    };
    if is_tuple {
        let mut level = level;
        Tree::Tuple(
            (0..n)
                .filter_map(|i| level.remove(&i.to_string()))
                .map(convert)
                .collect(),
        )
    } else {
        Tree::Record(level.into_iter().map(|(k, v)| (k, convert(v))).collect())
    }
}

#[cfg(test)]
mod tests;
