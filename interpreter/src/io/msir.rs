//! The MindScript model file, `.msir` (`ms export --mir`, `load_model`; `docs/export.md`):
//! a staged function's optimized graph in the IR's text form and its parameters, in one
//! file, so that `ms` runs the function without its source.
//!
//! ```text
//! offset      size  field
//! 0           4     magic: the bytes `MSIR`
//! 4           4     major version, u32 little-endian (1)
//! 8           4     minor version, u32 little-endian (0)
//! 12          8     H: the header's length in bytes, u64 little-endian
//! 20          H     the header: UTF-8 JSON (the signature, below)
//! 20+H        8     T: the IR text's length, u64 little-endian
//! 28+H        T     the graph in the IR's text form (`ir::graph::print`, no spans), UTF-8
//! 28+H+T      8     P: the parameters' length, u64 little-endian
//! 36+H+T      P     the parameters: a safetensors file, one tensor per parameter input
//! 36+H+T+P          the end of the file (nothing may follow)
//! ```
//!
//! **Versions.** A loader reads the files of its own major version and refuses a newer
//! (or unknown) one; minor versions only add header keys, which an older loader ignores.
//!
//! **The header** is a JSON object: `"function"` (the exported function's name),
//! `"inputs"` (one entry per graph input, in order: `["token"]`, `["key"]` — the random
//! key, `i64[2]` — `["input", NAME]` for an argument's tensor, `["param", NAME]` for a
//! parameter, whose tensor is the safetensors entry `NAME`), `"args"` (the arguments a
//! caller passes: `[NAME, TREE]` each) and `"result"` (a `TREE`). A `TREE` is the
//! structure of a value: `{"tensor": DTYPE, "weak": BOOL}` (a tensor; its type is the
//! graph's, symbolic dims included), `{"static": DTYPE, "value": INT}` (an integer or bool
//! scalar that was a constant of the graph, which a caller must pass again),
//! `{"tuple": [TREE, ...]}`, `{"record": [[FIELD, TREE], ...]}` (fields sorted) or
//! `{"unit": null}`. The graph's tensor outputs are the result's tensors and then the new
//! random key.
//!
//! **Reading validates everything and runs nothing**: the magic, the version, every length
//! against the bytes that remain (so a huge length allocates nothing), the header's form,
//! the IR text's nesting (at most [`MAX_NESTING`] levels of braces, so that a hostile file
//! cannot exhaust the stack of the recursive parser), its parse and `ir::verify`, the
//! signature against the graph (roles against input types, the key's type, dtypes of
//! arguments and results, parameters of known shapes), and the parameters (the safetensors
//! reader's own checks, then exactly the names the header lists, with the graph's dtypes
//! and shapes). Errors are data ([`MsirError`]); the builtin renders them.

use std::collections::{BTreeMap, HashSet};

use devices::Tensor;
use ir::DType;
use ir::graph::{PrintOptions, Type};
use serde_json::{Value as Json, json};

use super::{Array, Room};

/// The file's first four bytes.
pub(crate) const MAGIC: &[u8; 4] = b"MSIR";
/// The major version written and the only one read.
pub(crate) const MAJOR: u32 = 1;
/// The minor version written.
pub(crate) const MINOR: u32 = 0;
/// The deepest nesting of braces the IR text may have (regions inside regions, plus one
/// level for attributes).
pub(crate) const MAX_NESTING: usize = 256;

/// What a graph input is to a caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The effect token (the executor threads it).
    Token,
    /// The random key `i64[2]` (seed, offset), from the session's stream.
    Key,
    /// A tensor of the arguments, named by parameter and path (`x`, `batch.0`).
    Input(String),
    /// A parameter stored in the file under this name.
    Param(String),
}

/// The structure of an argument or of the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tree {
    /// A tensor of logical dtype `dtype`; `weak` for a literal's (stored wide).
    Tensor {
        dtype: DType,
        weak: bool,
    },
    /// An integer or bool scalar that the graph was staged with as a constant.
    Static {
        dtype: DType,
        value: i64,
    },
    Tuple(Vec<Tree>),
    /// Fields in sorted order.
    Record(Vec<(String, Tree)>),
    Unit,
}

impl Tree {
    /// The tensor leaves, in order.
    pub(crate) fn tensors(&self, out: &mut Vec<(DType, bool)>) {
        match self {
            Tree::Tensor { dtype, weak } => out.push((*dtype, *weak)),
            Tree::Static { .. } | Tree::Unit => {}
            Tree::Tuple(items) => items.iter().for_each(|x| x.tensors(out)),
            Tree::Record(fields) => fields.iter().for_each(|(_, x)| x.tensors(out)),
        }
    }

    fn to_json(&self) -> Json {
        match self {
            Tree::Tensor { dtype, weak } => json!({"tensor": dtype.name(), "weak": weak}),
            Tree::Static { dtype, value } => json!({"static": dtype.name(), "value": value}),
            Tree::Tuple(items) => {
                json!({"tuple": items.iter().map(Tree::to_json).collect::<Vec<_>>()})
            }
            Tree::Record(fields) => json!({
                "record": fields.iter().map(|(k, x)| json!([k, x.to_json()])).collect::<Vec<_>>()
            }),
            Tree::Unit => json!({"unit": null}),
        }
    }

    fn from_json(j: &Json, at: &str) -> Result<Tree, MsirError> {
        let bad = |what: &str| MsirError::Header(format!("{at}: {what}"));
        let Json::Object(o) = j else {
            return Err(bad("is not an object"));
        };
        let dtype = |v: &Json| -> Result<DType, MsirError> {
            v.as_str()
                .and_then(DType::from_name)
                .ok_or_else(|| bad(&format!("names no dtype: {v}")))
        };
        let only = |keys: &[&str]| -> Result<(), MsirError> {
            match o.keys().find(|k| !keys.contains(&k.as_str())) {
                Some(k) => Err(bad(&format!("has the unexpected key {k:?}"))),
                None => Ok(()),
            }
        };
        if let Some(d) = o.get("tensor") {
            only(&["tensor", "weak"])?;
            let weak = match o.get("weak") {
                None => false,
                Some(w) => w.as_bool().ok_or_else(|| bad("`weak` is not a bool"))?,
            };
            return Ok(Tree::Tensor {
                dtype: dtype(d)?,
                weak,
            });
        }
        if let Some(d) = o.get("static") {
            only(&["static", "value"])?;
            let dtype = dtype(d)?;
            if !(dtype.is_int() || dtype == DType::Bool) {
                return Err(bad("a static scalar must be an integer or a bool"));
            }
            let value = o
                .get("value")
                .and_then(Json::as_i64)
                .ok_or_else(|| bad("a static scalar needs an integer `value`"))?;
            return Ok(Tree::Static { dtype, value });
        }
        if let Some(items) = o.get("tuple") {
            only(&["tuple"])?;
            let Json::Array(items) = items else {
                return Err(bad("`tuple` is not a list"));
            };
            return Ok(Tree::Tuple(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Tree::from_json(x, &format!("{at}.{i}")))
                    .collect::<Result<_, _>>()?,
            ));
        }
        if let Some(fields) = o.get("record") {
            only(&["record"])?;
            let Json::Array(fields) = fields else {
                return Err(bad("`record` is not a list"));
            };
            let mut out: Vec<(String, Tree)> = Vec::with_capacity(fields.len());
            for f in fields {
                let (Some(name), Some(x)) = (
                    f.get(0).and_then(Json::as_str),
                    f.as_array().filter(|a| a.len() == 2).and_then(|a| a.get(1)),
                ) else {
                    return Err(bad("a record field is not [NAME, TREE]"));
                };
                if out.last().is_some_and(|(prev, _)| prev.as_str() >= name) {
                    return Err(bad(&format!(
                        "the field `{name}` is out of order or given twice"
                    )));
                }
                out.push((
                    name.to_string(),
                    Tree::from_json(x, &format!("{at}.{name}"))?,
                ));
            }
            return Ok(Tree::Record(out));
        }
        if o.contains_key("unit") {
            only(&["unit"])?;
            return Ok(Tree::Unit);
        }
        Err(bad("is not a tensor, static, tuple, record or unit"))
    }
}

/// The header: how a caller's values map onto the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Signature {
    /// The exported function's name.
    pub function: String,
    /// One role per graph input, in order.
    pub inputs: Vec<Role>,
    /// The arguments a caller passes, named.
    pub args: Vec<(String, Tree)>,
    /// The result's structure.
    pub result: Tree,
}

impl Signature {
    fn to_json(&self) -> Json {
        let inputs: Vec<Json> = self
            .inputs
            .iter()
            .map(|r| match r {
                Role::Token => json!(["token"]),
                Role::Key => json!(["key"]),
                Role::Input(n) => json!(["input", n]),
                Role::Param(n) => json!(["param", n]),
            })
            .collect();
        let args: Vec<Json> = self
            .args
            .iter()
            .map(|(n, t)| json!([n, t.to_json()]))
            .collect();
        json!({
            "format": "MindScript model",
            "function": self.function,
            "inputs": inputs,
            "args": args,
            "result": self.result.to_json(),
        })
    }

    fn from_json(j: &Json) -> Result<Signature, MsirError> {
        let bad = |m: &str| MsirError::Header(m.to_string());
        let Json::Object(o) = j else {
            return Err(bad("it is not a JSON object"));
        };
        let function = o
            .get("function")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("`function` is missing or not a string"))?
            .to_string();
        let inputs = o
            .get("inputs")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("`inputs` is missing or not a list"))?
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let parts: Option<Vec<&str>> = r
                    .as_array()
                    .and_then(|a| a.iter().map(Json::as_str).collect());
                match parts.as_deref() {
                    Some(["token"]) => Ok(Role::Token),
                    Some(["key"]) => Ok(Role::Key),
                    Some(["input", n]) => Ok(Role::Input((*n).to_string())),
                    Some(["param", n]) if !n.is_empty() => Ok(Role::Param((*n).to_string())),
                    _ => Err(bad(&format!(
                        "input {i} is {r}, not [\"token\"], [\"key\"], [\"input\", NAME] or \
                         [\"param\", NAME]"
                    ))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let args = o
            .get("args")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("`args` is missing or not a list"))?
            .iter()
            .map(|a| {
                let (Some(name), Some(tree)) = (
                    a.get(0).and_then(Json::as_str),
                    a.as_array().filter(|x| x.len() == 2).and_then(|x| x.get(1)),
                ) else {
                    return Err(bad(&format!("the argument {a} is not [NAME, TREE]")));
                };
                Ok((name.to_string(), Tree::from_json(tree, name)?))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let result = Tree::from_json(
            o.get("result").ok_or_else(|| bad("`result` is missing"))?,
            "result",
        )?;
        Ok(Signature {
            function,
            inputs,
            args,
            result,
        })
    }
}

/// Why a `.msir` file cannot be written or read.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub(crate) enum MsirError {
    #[error("it does not start with the bytes `MSIR`: it is not a MindScript model file")]
    Magic,
    #[error(
        "it is version {major}.{minor} of the model format; this MindScript reads version {MAJOR}.x (a newer MindScript wrote it)"
    )]
    Version { major: u32, minor: u32 },
    #[error("it ends at byte {len} inside {what}, which needs {need} bytes from byte {at}")]
    Truncated {
        what: &'static str,
        at: u64,
        need: u64,
        len: usize,
    },
    #[error("it has {0} bytes after the parameters")]
    Trailing(usize),
    #[error("its header is not valid: {0}")]
    Header(String),
    #[error("its graph is not valid IR: {0}")]
    Ir(String),
    #[error("its graph does not fit its signature: {0}")]
    Graph(String),
    #[error("its parameters are not valid: {0}")]
    Params(String),
}

/// The whole file for `graph` with `sig` and the parameter tensors `params` (in the order
/// of the `Param` roles, by name).
pub(crate) fn write(
    sig: &Signature,
    graph: &ir::Graph,
    params: &[(String, Tensor)],
    w: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let header = sig.to_json().to_string().into_bytes();
    let text = ir::graph::print(graph, PrintOptions::default()).into_bytes();
    let mut tensors = Vec::new();
    super::safetensors::write_flat(params, &mut tensors)?;
    w.write_all(MAGIC)?;
    w.write_all(&MAJOR.to_le_bytes())?;
    w.write_all(&MINOR.to_le_bytes())?;
    for section in [&header, &text, &tensors] {
        w.write_all(&(section.len() as u64).to_le_bytes())?;
        w.write_all(section)?;
    }
    Ok(())
}

/// A model read from a file, validated.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub sig: Signature,
    pub graph: ir::Graph,
    /// The parameters, in the order of the `Param` roles.
    pub params: Vec<Array>,
}

/// Reads the bytes of a `.msir` file; `room` is asked before each parameter is allocated.
pub(crate) fn read(bytes: &[u8], room: Room<'_>) -> Result<Loaded, MsirError> {
    let mut at = 0usize;
    let mut take = |n: u64, what: &'static str| -> Result<&[u8], MsirError> {
        let rest = bytes.get(at..).unwrap_or_default();
        let short = MsirError::Truncated {
            what,
            at: at as u64,
            need: n,
            len: bytes.len(),
        };
        let n = usize::try_from(n).map_err(|_| short.clone())?;
        let piece = rest.get(..n).ok_or(short)?;
        at += n;
        Ok(piece)
    };
    // A file that is not a prefix of the magic bytes is not a model file at all; one that
    // is (a file cut short) is truncated.
    if !bytes.starts_with(MAGIC) && !MAGIC.starts_with(bytes) {
        return Err(MsirError::Magic);
    }
    take(4, "the magic bytes")?;
    let u32_at = |b: &[u8]| b.try_into().map(u32::from_le_bytes).unwrap_or(0);
    let u64_at = |b: &[u8]| b.try_into().map(u64::from_le_bytes).unwrap_or(u64::MAX);
    let major = u32_at(take(4, "the major version")?);
    let minor = u32_at(take(4, "the minor version")?);
    if major != MAJOR {
        return Err(MsirError::Version { major, minor });
    }
    let len = u64_at(take(8, "the header's length")?);
    let header = take(len, "the header")?;
    let len = u64_at(take(8, "the IR text's length")?);
    let text = take(len, "the IR text")?;
    let len = u64_at(take(8, "the parameters' length")?);
    let tensors = take(len, "the parameters")?;
    if at != bytes.len() {
        return Err(MsirError::Trailing(bytes.len() - at));
    }
    let header: Json = serde_json::from_slice(header)
        .map_err(|e| MsirError::Header(format!("it is not JSON: {e}")))?;
    let sig = Signature::from_json(&header)?;
    let text = std::str::from_utf8(text)
        .map_err(|e| MsirError::Ir(format!("it is not UTF-8 text: {e}")))?;
    check_nesting(text)?;
    let graph = ir::graph::parse(text).map_err(|e| MsirError::Ir(e.to_string()))?;
    ir::verify(&graph).map_err(|e| MsirError::Ir(format!("it does not verify: {e}")))?;
    check_signature(&sig, &graph)?;
    check_runnable(&sig, &graph)?;
    let params = read_params(&sig, &graph, tensors, room)?;
    Ok(Loaded { sig, graph, params })
}

/// Refuses IR text nested deeper than [`MAX_NESTING`] braces (strings and comments do not
/// count), before the recursive parser sees it.
fn check_nesting(text: &str) -> Result<(), MsirError> {
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(MsirError::Ir(format!(
                        "it nests deeper than {MAX_NESTING} levels of braces"
                    )));
                }
            }
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Whether a tensor of logical dtype `logical` (weak or not) is stored as `stored`: its
/// own dtype, or for a weak one any dtype of its kind (literals keep the widest).
pub(crate) fn stored_as(logical: DType, weak: bool, stored: DType) -> bool {
    let kind = |d: DType| {
        if d.is_float() {
            0
        } else if d.is_int() {
            1
        } else {
            2
        }
    };
    stored == logical || (weak && kind(stored) == kind(logical))
}

/// The signature against the graph: one role per input of the right type, the arguments'
/// tensors as the `Input`s, the result's tensors and the key as the outputs.
fn check_signature(sig: &Signature, g: &ir::Graph) -> Result<(), MsirError> {
    let bad = |m: String| MsirError::Graph(m);
    if sig.inputs.len() != g.inputs().len() {
        return Err(bad(format!(
            "the header lists {} inputs, the graph has {}",
            sig.inputs.len(),
            g.inputs().len()
        )));
    }
    let mut args = Vec::new();
    sig.args.iter().for_each(|(_, t)| t.tensors(&mut args));
    let mut args = args.into_iter();
    let (mut keys, mut names) = (0, HashSet::new());
    for (i, (role, &v)) in sig.inputs.iter().zip(g.inputs()).enumerate() {
        let ty = g.ty(v);
        match (role, ty) {
            (Role::Token, Type::Token) => {}
            (Role::Token, _) | (_, Type::Token) => {
                return Err(bad(format!(
                    "input {i} is {role:?} in the header and {ty} in the graph"
                )));
            }
            (Role::Key, Type::Tensor(t)) => {
                keys += 1;
                if *t != ir::TensorType::known(DType::I64, &[2]) {
                    return Err(bad(format!("the random key is {t}, not i64[2]")));
                }
            }
            (Role::Input(name), Type::Tensor(t)) => {
                let Some((dtype, weak)) = args.next() else {
                    return Err(bad(format!(
                        "the input `{name}` is not a tensor of the arguments"
                    )));
                };
                if !stored_as(dtype, weak, t.dtype) {
                    return Err(bad(format!(
                        "the input `{name}` is {dtype} in the header and {t} in the graph"
                    )));
                }
            }
            (Role::Param(name), Type::Tensor(t)) => {
                if !names.insert(name.as_str()) {
                    return Err(bad(format!("the parameter `{name}` is listed twice")));
                }
                if t.shape.to_known().is_none() {
                    return Err(bad(format!(
                        "the parameter `{name}` has the type {t}, whose size is not known"
                    )));
                }
            }
        }
    }
    if keys != 1 {
        return Err(bad(format!("it has {keys} random keys, not one")));
    }
    if args.next().is_some() {
        return Err(bad(
            "the arguments have more tensors than the graph has inputs".into(),
        ));
    }
    let mut results = Vec::new();
    sig.result.tensors(&mut results);
    let outs: Vec<&ir::TensorType> = g
        .outputs()
        .iter()
        .filter_map(|&v| g.ty(v).tensor())
        .collect();
    let Some((key, outs)) = outs.split_last() else {
        return Err(bad("the graph gives no random key".into()));
    };
    if **key != ir::TensorType::known(DType::I64, &[2]) {
        return Err(bad(format!("the last output, the random key, is {key}")));
    }
    if outs.len() != results.len() {
        return Err(bad(format!(
            "the result has {} tensors, the graph gives {}",
            results.len(),
            outs.len()
        )));
    }
    for (k, ((dtype, weak), t)) in results.iter().zip(outs).enumerate() {
        if !stored_as(*dtype, *weak, t.dtype) {
            return Err(bad(format!(
                "result tensor {k} is {dtype} in the header and {t} in the graph"
            )));
        }
    }
    Ok(())
}

/// What the executor would only find out while running: every symbolic dim of the graph
/// (in a value's type or a shape attribute) must be one an argument's input carries, so
/// that a call binds it; and collectives, which only a mesh runs, are refused.
fn check_runnable(sig: &Signature, g: &ir::Graph) -> Result<(), MsirError> {
    let bad = |m: String| MsirError::Graph(m);
    let mut bound = HashSet::new();
    for (role, &v) in sig.inputs.iter().zip(g.inputs()) {
        if let (Role::Input(_), Some(t)) = (role, g.ty(v).tensor()) {
            for d in t.shape.dims() {
                if let ir::Dim::Sym(s) = d {
                    bound.insert(s.clone());
                }
            }
        }
    }
    let unbound = |shape: &ir::Shape| -> Option<String> {
        shape.dims().iter().find_map(|d| match d {
            ir::Dim::Sym(s) if !d.is_unknown() && !bound.contains(s) => Some(s.to_string()),
            _ => None,
        })
    };
    for n in g.walk(g.body()) {
        let node = g.node(n);
        let attr = match &node.kind {
            ir::graph::NodeKind::Collective(c) => {
                return Err(bad(format!(
                    "it holds the collective `{}`, which only a mesh of devices runs",
                    c.name()
                )));
            }
            ir::graph::NodeKind::Prim(op) => op.shape_attr(),
            _ => None,
        };
        let types = node.results.iter().filter_map(|&v| g.ty(v).tensor());
        if let Some(s) = attr
            .and_then(&unbound)
            .or_else(|| types.map(|t| &t.shape).find_map(&unbound))
        {
            return Err(bad(format!(
                "the `{}` node has the dim `{s}`, which no argument carries, so no call could \
                 give its size",
                node.kind.name()
            )));
        }
    }
    Ok(())
}

/// The parameters: a valid safetensors file holding exactly the `Param` names, each of
/// its input's dtype and shape.
fn read_params(
    sig: &Signature,
    g: &ir::Graph,
    bytes: &[u8],
    room: Room<'_>,
) -> Result<Vec<Array>, MsirError> {
    let tree = super::safetensors::read(bytes, room)
        .map_err(|e| MsirError::Params(format!("as safetensors, {e}")))?;
    let mut stored: BTreeMap<String, Array> = tree.into_leaves().into_iter().collect();
    let mut out = Vec::new();
    for (role, &v) in sig.inputs.iter().zip(g.inputs()) {
        let Role::Param(name) = role else { continue };
        let a = stored
            .remove(name)
            .ok_or_else(|| MsirError::Params(format!("the parameter `{name}` is missing")))?;
        let want = g.ty(v).tensor().cloned();
        let have = ir::TensorType::known(a.data.dtype(), &a.shape);
        if want.as_ref() != Some(&have) {
            let want = want.map_or_else(|| "a token".to_string(), |t| t.to_string());
            return Err(MsirError::Params(format!(
                "the parameter `{name}` is {have}, but the graph takes {want}"
            )));
        }
        out.push(a);
    }
    if let Some(extra) = stored.keys().next() {
        return Err(MsirError::Params(format!(
            "the tensor `{extra}` is not a parameter of the graph"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (Signature, ir::Graph, Vec<(String, Tensor)>) {
        let g = ir::graph::parse(
            "graph @f(%0: i64[2], %1: f32[B, 3], %2: f32[3]) -> (f32[B, 3], i64[2]) {\n  \
             %3: f32[B, 3] = add %1, %2\n  yield %3, %0\n}\n",
        )
        .expect("parses");
        let sig = Signature {
            function: "f".into(),
            inputs: vec![Role::Key, Role::Input("x".into()), Role::Param("w".into())],
            args: vec![(
                "x".into(),
                Tree::Tensor {
                    dtype: DType::F32,
                    weak: false,
                },
            )],
            result: Tree::Tensor {
                dtype: DType::F32,
                weak: false,
            },
        };
        let w = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]).expect("tensor");
        (sig, g, vec![("w".into(), w)])
    }

    #[test]
    fn a_file_reads_back_as_written() {
        let (sig, g, params) = tiny();
        let mut bytes = Vec::new();
        write(&sig, &g, &params, &mut bytes).expect("writes");
        assert_eq!(&bytes[..4], b"MSIR");
        let got = read(&bytes, &mut |_, _| true).expect("reads");
        assert_eq!(got.sig, sig);
        assert!(got.graph == g);
        assert_eq!(got.params.len(), 1);
        assert_eq!(got.params[0].shape, [3]);
    }

    #[test]
    fn every_prefix_is_an_error() {
        let (sig, g, params) = tiny();
        let mut bytes = Vec::new();
        write(&sig, &g, &params, &mut bytes).expect("writes");
        for n in 0..bytes.len() {
            let e = read(&bytes[..n], &mut |_, _| true).expect_err("a prefix is refused");
            assert!(
                matches!(e, MsirError::Truncated { .. } | MsirError::Magic),
                "{n}: {e}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let text = "{".repeat(MAX_NESTING + 1);
        assert!(check_nesting(&text).is_err());
        assert!(check_nesting(&"{}".repeat(10_000)).is_ok());
        assert!(check_nesting(&format!("\"{}\"", "{".repeat(1000))).is_ok());
    }
}
