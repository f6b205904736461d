//! ONNX export: a staged graph mapped primitive by primitive to ONNX operators, encoded as
//! a `ModelProto` (`docs/export.md` is the user's description).
//!
//! Pure: a graph and an [`ExportSpec`] (what each graph input and output is: the effect
//! token, the random key, a model input, a baked-in parameter) in, the model's bytes out,
//! with errors as data. The session (`Session::export_onnx`) stages the function and
//! decides the spec; `ms export` writes the bytes with `io::write_atomic`.
//!
//! The mapping keeps MindScript's meaning: every primitive is one ONNX operator where
//! ONNX has it (`exp` → `Exp`, `matmul` → `MatMul`, `conv2d` → `Conv`) and a short
//! composition where it does not (`log1p` → `Log(1 + x)`, floored `rem` on floats,
//! `scatter_add` → `ScatterND` with `reduction="add"` on the indexed axis moved first).
//! Shape attributes become `int64` initializers; a symbolic dim of the function's
//! signature is a `dim_param` of the model's inputs and, where a shape needs its size, is
//! read at run time from the first input that has it (`Shape` then `Gather`). `fused`
//! regions are emitted node by node, `if` becomes `If`, `for` and `while` become `Loop`.
//! What ONNX cannot express (random draws, gradient primitives, collectives) is
//! [`ExportError::Unmappable`] naming the primitive.

use std::collections::{HashMap, HashSet};
use std::fmt;

use ir::graph::{BlockId, Graph, NodeKind, Type, ValueId};
use ir::{BinaryOp, CmpOp, DType, Dim, Op, PoolOp, ReduceOp, Shape, TensorType, UnaryOp};
use onnx_proto::onnx as pb;
use onnx_proto::prost::Message;

/// The opset written when none is asked for.
pub const DEFAULT_OPSET: i64 = 17;
/// The opsets of the default ONNX domain that the mapping supports.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// A protobuf message cannot exceed 2 GiB; a model whose parameters come near it keeps
/// them in an external data file ([`External`]).
const MAX_MODEL_BYTES: usize = (1 << 31) - (1 << 20);

/// Offsets of tensors in an external data file are multiples of this, so that a runtime
/// that maps the file finds each tensor aligned for any element type and vector width.
const EXTERNAL_ALIGN: usize = 64;

/// When the initializers go to an external data file instead of into the model (ONNX's
/// "external data": the tensor keeps its name, dtype and dims, and points at a byte range
/// of a file beside the model).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct External {
    /// Whether it is done.
    pub mode: ExternalMode,
    /// The file's name, relative to the model's folder (`cnn.onnx.data`). It must be a
    /// plain file name: no folder separators, not `.` or `..`, so that a model written here
    /// never points a runtime outside its own folder.
    pub location: String,
    /// Initializers of fewer bytes than this stay in the model.
    pub threshold: usize,
}

/// When [`External`] data is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalMode {
    /// Never: a model over 2 GiB is an error ([`export`]).
    Never,
    /// Only when the model would be over 2 GiB with its initializers inside.
    Auto,
    /// Always (`ms export --external-data`).
    Always,
}

impl Default for External {
    fn default() -> External {
        External {
            mode: ExternalMode::Auto,
            location: "model.onnx.data".into(),
            threshold: 1024,
        }
    }
}

/// An exported model: its bytes, and the external data file's when one is needed.
#[derive(Clone, Debug, PartialEq)]
pub struct Exported {
    /// The `ModelProto`, encoded.
    pub model: Vec<u8>,
    /// The bytes of the file [`External::location`] names, if initializers went there.
    pub external: Option<Vec<u8>>,
}

/// Whether `name` is a plain file name that an external data location may be: not empty,
/// no `/` or `\`, not `.` or `..`, no NUL or other control character.
pub fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// A tensor to bake into the model: dtype, dims, elements in C order as little-endian
/// bytes (one byte per `bool`).
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Element type.
    pub dtype: DType,
    /// Dims.
    pub dims: Vec<usize>,
    /// `dims`' product of elements, little-endian.
    pub data: Vec<u8>,
}

/// What one input of the staged graph is in the model.
#[derive(Clone, Debug, PartialEq)]
pub enum InputRole {
    /// The effect token (no tensor; dropped).
    Token,
    /// The random key `(seed, offset)`; dropped (a function that draws is refused).
    Key,
    /// An input of the model, by name.
    Input(String),
    /// A tensor baked into the model as an initializer of this name.
    Initializer(String, Array),
}

/// What one output of the staged graph is in the model.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputRole {
    /// The effect token; dropped.
    Token,
    /// The new random key; dropped.
    Key,
    /// An output of the model, by name.
    Output(String),
}

/// How to export a graph: the opset and the role of each graph input and output, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportSpec {
    /// Version of the default ONNX operator set (one of [`OPSETS`]).
    pub opset: i64,
    /// One role per graph input.
    pub inputs: Vec<InputRole>,
    /// One role per graph output.
    pub outputs: Vec<OutputRole>,
    /// The model's description (`doc_string`).
    pub doc: String,
}

/// Why a graph cannot be exported.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// A primitive (or node) that ONNX cannot express.
    #[error("the primitive `{prim}` cannot be exported to ONNX: {why}")]
    Unmappable {
        /// The primitive's name (`random_normal`, `conv2d_backward_input`).
        prim: String,
        /// Why.
        why: String,
    },
    /// The mapping of a primitive needs a later opset.
    #[error("the primitive `{prim}` needs ONNX opset {min} or later (asked for {opset})")]
    NeedsOpset {
        /// The primitive's name.
        prim: String,
        /// The first opset that has what it needs.
        min: i64,
        /// The opset asked for.
        opset: i64,
    },
    /// An opset outside [`OPSETS`].
    #[error("ONNX opset {0} is not supported: use 13 to 21 (17 by default)")]
    Opset(i64),
    /// A dim that no model input carries, so its size cannot be known at run time.
    #[error(
        "the symbolic dim `{0}` is needed by a shape but no input of the model has it (an \
         unknown dim `?` cannot be exported)"
    )]
    UnboundDim(String),
    /// The spec does not fit the graph.
    #[error("the export does not fit the graph: {0}")]
    Spec(String),
    /// The model would exceed protobuf's 2 GiB.
    #[error(
        "the model would be {0} bytes, over the 2 GiB a protobuf can hold (its parameters \
         need an external data file)"
    )]
    TooLarge(usize),
    /// An external data location that is not a plain file name.
    #[error(
        "the external data file `{0}` must be a plain file name beside the model (no folders, \
         not `.` or `..`)"
    )]
    Location(String),
}

type R<T> = Result<T, ExportError>;

/// The ONNX IR version that goes with an opset (onnx.helper's table).
pub fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=13 => 7,
        14..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// The model's bytes, with every initializer inside (a model over 2 GiB is an error).
pub fn export(graph: &Graph, spec: &ExportSpec) -> R<Vec<u8>> {
    let never = External {
        mode: ExternalMode::Never,
        ..External::default()
    };
    Ok(export_with(graph, spec, &never)?.model)
}

/// The model's bytes, and its external data file's when `external` says initializers go
/// there: with [`ExternalMode::Always`], or with [`ExternalMode::Auto`] when the model
/// would be over 2 GiB otherwise. Each initializer of the main graph of at least
/// `external.threshold` bytes is moved, in order, to the next offset that is a multiple of
/// 64 bytes; its `TensorProto` says `data_location: EXTERNAL` with `location`, `offset`
/// and `length` entries (the constants inside `If`/`Loop` bodies are scalars and stay).
pub fn export_with(graph: &Graph, spec: &ExportSpec, external: &External) -> R<Exported> {
    let mut m = model(graph, spec)?;
    let len = m.encoded_len();
    let move_out = match external.mode {
        ExternalMode::Never => false,
        ExternalMode::Auto => len > MAX_MODEL_BYTES,
        ExternalMode::Always => true,
    };
    if !move_out {
        if len > MAX_MODEL_BYTES {
            return Err(ExportError::TooLarge(len));
        }
        return Ok(Exported {
            model: m.encode_to_vec(),
            external: None,
        });
    }
    if !plain_file_name(&external.location) {
        return Err(ExportError::Location(external.location.clone()));
    }
    let mut data: Vec<u8> = Vec::new();
    if let Some(g) = m.graph.as_mut() {
        for t in &mut g.initializer {
            let Some(raw) = t.raw_data.take_if(|r| r.len() >= external.threshold) else {
                continue;
            };
            let offset = data.len().next_multiple_of(EXTERNAL_ALIGN);
            data.resize(offset, 0);
            data.extend_from_slice(&raw);
            let entry = |key: &str, value: String| pb::StringStringEntryProto {
                key: Some(key.to_string()),
                value: Some(value),
            };
            t.external_data = vec![
                entry("location", external.location.clone()),
                entry("offset", offset.to_string()),
                entry("length", raw.len().to_string()),
            ];
            t.data_location = Some(pb::tensor_proto::DataLocation::External as i32);
        }
    }
    let len = m.encoded_len();
    if len > MAX_MODEL_BYTES {
        return Err(ExportError::TooLarge(len));
    }
    // No initializer was large enough to move: there is no data file to write.
    Ok(Exported {
        model: m.encode_to_vec(),
        external: (!data.is_empty()).then_some(data),
    })
}

/// The model as a message (what [`export`] encodes).
pub fn model(graph: &Graph, spec: &ExportSpec) -> R<pb::ModelProto> {
    if !OPSETS.contains(&spec.opset) {
        return Err(ExportError::Opset(spec.opset));
    }
    refuse_unexportable(graph, graph.body())?;
    let inputs = graph.inputs();
    let outputs = graph.outputs();
    if inputs.len() != spec.inputs.len() {
        return Err(ExportError::Spec(format!(
            "the graph has {} inputs, the spec names {}",
            inputs.len(),
            spec.inputs.len()
        )));
    }
    if outputs.len() != spec.outputs.len() {
        return Err(ExportError::Spec(format!(
            "the graph has {} outputs, the spec names {}",
            outputs.len(),
            spec.outputs.len()
        )));
    }
    let mut cx = Cx::new(graph, spec.opset);
    // Names the user chose are reserved before any generated name is made.
    for role in &spec.inputs {
        if let InputRole::Input(n) | InputRole::Initializer(n, _) = role
            && !cx.used.insert(n.clone())
        {
            return Err(ExportError::Spec(format!("two inputs are named `{n}`")));
        }
    }
    let mut main = Sink::new(true);
    let mut model_inputs = Vec::new();
    for (&v, role) in inputs.iter().zip(&spec.inputs) {
        let ty = graph.ty(v);
        match (role, ty) {
            (InputRole::Token, Type::Token) => {}
            (InputRole::Key, Type::Tensor(t)) => {
                // No draw reads the key (they are refused), but control flow may carry it:
                // then it is a constant, whose value nothing uses.
                let read = graph
                    .block(graph.body())
                    .nodes
                    .iter()
                    .any(|&n| graph.reads(n).contains(&v));
                if read {
                    let name = cx.fresh_named("rng_key");
                    let a = Array {
                        dtype: t.dtype,
                        dims: t.shape.to_known().unwrap_or_default(),
                        data: vec![0; t.shape.numel().unwrap_or(0) * elem_size(t.dtype)],
                    };
                    main.inits.push(tensor_proto(&name, &a));
                    cx.names.insert(v, name);
                }
            }
            (InputRole::Input(name), Type::Tensor(t)) => {
                for (axis, d) in t.shape.dims().iter().enumerate() {
                    if let Dim::Sym(s) = d
                        && !d.is_unknown()
                    {
                        cx.syms
                            .entry(s.to_string())
                            .or_insert_with(|| (name.clone(), axis));
                    }
                }
                model_inputs.push(value_info(name, t));
                cx.names.insert(v, name.clone());
            }
            (InputRole::Initializer(name, a), Type::Tensor(t)) => {
                check_array(name, a, t)?;
                main.inits.push(tensor_proto(name, a));
                cx.names.insert(v, name.clone());
            }
            (role, ty) => {
                return Err(ExportError::Spec(format!(
                    "input {} is {ty}, which cannot be {role}",
                    v.index()
                )));
            }
        }
    }
    // A model input that nothing reads still keeps its place in the signature.
    cx.emit_block(graph.body(), &mut main)?;
    let mut model_outputs = Vec::new();
    let mut out_names = HashSet::new();
    for (&v, role) in outputs.iter().zip(&spec.outputs) {
        match (role, graph.ty(v)) {
            (OutputRole::Token, Type::Token) | (OutputRole::Key, Type::Tensor(_)) => {}
            (OutputRole::Output(name), Type::Tensor(t)) => {
                let src = cx.name(v)?;
                let name = if out_names.contains(name) || cx.used.contains(name) {
                    cx.fresh_named(name)
                } else {
                    cx.used.insert(name.clone());
                    name.clone()
                };
                out_names.insert(name.clone());
                main.nodes.push(node_proto(
                    "Identity",
                    vec![src],
                    vec![name.clone()],
                    vec![],
                ));
                model_outputs.push(value_info(&name, t));
            }
            (role, ty) => {
                return Err(ExportError::Spec(format!(
                    "output {} is {ty}, which cannot be {role}",
                    v.index()
                )));
            }
        }
    }
    let g = pb::GraphProto {
        name: Some(graph.name().to_string()),
        node: main.nodes,
        initializer: main.inits,
        input: model_inputs,
        output: model_outputs,
        doc_string: (!spec.doc.is_empty()).then(|| spec.doc.clone()),
        ..Default::default()
    };
    Ok(pb::ModelProto {
        ir_version: Some(ir_version(spec.opset)),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(spec.opset),
        }],
        producer_name: Some("MindScript".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        model_version: Some(1),
        graph: Some(g),
        ..Default::default()
    })
}

/// Random draws, collectives and gradient primitives anywhere in `block` are refused
/// before anything is emitted, so that the error names the first one.
fn refuse_unexportable(g: &Graph, block: BlockId) -> R<()> {
    for n in g.walk(block) {
        match &g.node(n).kind {
            NodeKind::Prim(Op::Random { op, .. }) => {
                return Err(ExportError::Unmappable {
                    prim: op.name().into(),
                    why: "the function draws random numbers, which depend on MindScript's \
                          generator and key; pass the noise in as an argument instead"
                        .into(),
                });
            }
            NodeKind::Collective(c) => {
                return Err(ExportError::Unmappable {
                    prim: c.name().into(),
                    why: "collectives belong to partitioned graphs; export the function \
                          without `parallel:`"
                        .into(),
                });
            }
            NodeKind::Prim(op) if is_gradient(op) => {
                return Err(ExportError::Unmappable {
                    prim: op.name().into(),
                    why: "it is a gradient primitive; export a forward function (ONNX \
                          models here are for inference)"
                        .into(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_gradient(op: &Op) -> bool {
    matches!(
        op,
        Op::Conv2dBackwardInput { .. }
            | Op::Conv2dBackwardFilter { .. }
            | Op::Pool2dBackward { .. }
    )
}

fn check_array(name: &str, a: &Array, t: &TensorType) -> R<()> {
    let dims_ok = t.shape.rank() == a.dims.len()
        && t.shape
            .dims()
            .iter()
            .zip(&a.dims)
            .all(|(d, &n)| d.known() == Some(n));
    let numel = a.dims.iter().try_fold(1usize, |x, &d| x.checked_mul(d));
    let bytes = numel.and_then(|n| n.checked_mul(elem_size(a.dtype)));
    if a.dtype != t.dtype || !dims_ok || bytes != Some(a.data.len()) {
        return Err(ExportError::Spec(format!(
            "the parameter `{name}` is {}{:?} ({} bytes) where the graph takes {t}",
            a.dtype,
            a.dims,
            a.data.len()
        )));
    }
    Ok(())
}

fn elem_size(d: DType) -> usize {
    match d {
        DType::Bool => 1,
        DType::F16 | DType::BF16 => 2,
        DType::F32 | DType::I32 => 4,
        DType::F64 | DType::I64 => 8,
    }
}

/// ONNX's `TensorProto.DataType` of a dtype.
pub fn onnx_dtype(d: DType) -> i32 {
    use pb::tensor_proto::DataType as D;
    (match d {
        DType::F32 => D::Float,
        DType::F64 => D::Double,
        DType::I32 => D::Int32,
        DType::I64 => D::Int64,
        DType::Bool => D::Bool,
        DType::F16 => D::Float16,
        DType::BF16 => D::Bfloat16,
    }) as i32
}

fn tensor_proto(name: &str, a: &Array) -> pb::TensorProto {
    pb::TensorProto {
        name: Some(name.to_string()),
        data_type: Some(onnx_dtype(a.dtype)),
        dims: a.dims.iter().map(|&d| d as i64).collect(),
        raw_data: Some(a.data.clone()),
        ..Default::default()
    }
}

fn value_info(name: &str, t: &TensorType) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value as DV};
    let dim = |d: &Dim| Dimension {
        value: match d {
            Dim::Known(n) => Some(DV::DimValue(*n as i64)),
            Dim::Sym(_) if d.is_unknown() => None,
            Dim::Sym(s) => Some(DV::DimParam(s.to_string())),
        },
        ..Default::default()
    };
    pb::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(onnx_dtype(t.dtype)),
                shape: Some(pb::TensorShapeProto {
                    dim: t.shape.dims().iter().map(dim).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node_proto(
    op: &str,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attrs: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: Some(op.to_string()),
        input: inputs,
        output: outputs,
        attribute: attrs,
        ..Default::default()
    }
}

/// Attribute constructors.
mod attr {
    use super::pb;
    use pb::attribute_proto::AttributeType as T;

    fn base(name: &str, ty: T) -> pb::AttributeProto {
        pb::AttributeProto {
            name: Some(name.to_string()),
            r#type: Some(ty as i32),
            ..Default::default()
        }
    }

    pub fn int(name: &str, v: i64) -> pb::AttributeProto {
        pb::AttributeProto {
            i: Some(v),
            ..base(name, T::Int)
        }
    }

    pub fn ints(name: &str, v: &[i64]) -> pb::AttributeProto {
        pb::AttributeProto {
            ints: v.to_vec(),
            ..base(name, T::Ints)
        }
    }

    pub fn string(name: &str, v: &str) -> pb::AttributeProto {
        pb::AttributeProto {
            s: Some(v.as_bytes().to_vec()),
            ..base(name, T::String)
        }
    }

    pub fn tensor(name: &str, t: pb::TensorProto) -> pb::AttributeProto {
        pb::AttributeProto {
            t: Some(t),
            ..base(name, T::Tensor)
        }
    }

    pub fn graph(name: &str, g: pb::GraphProto) -> pb::AttributeProto {
        pb::AttributeProto {
            g: Some(g),
            ..base(name, T::Graph)
        }
    }
}

/// The nodes (and, in the main graph, the initializers) of one ONNX graph being built.
struct Sink {
    main: bool,
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
}

impl Sink {
    fn new(main: bool) -> Sink {
        Sink {
            main,
            nodes: Vec::new(),
            inits: Vec::new(),
        }
    }
}

/// The mapping's state: the ONNX name of every graph value emitted so far, the names in
/// use, and where each symbolic dim can be read.
struct Cx<'g> {
    g: &'g Graph,
    opset: i64,
    names: HashMap<ValueId, String>,
    used: HashSet<String>,
    next: usize,
    /// A symbolic dim's name → the model input and axis that carry its size.
    syms: HashMap<String, (String, usize)>,
}

impl<'g> Cx<'g> {
    fn new(g: &'g Graph, opset: i64) -> Cx<'g> {
        Cx {
            g,
            opset,
            names: HashMap::new(),
            used: HashSet::new(),
            next: 0,
            syms: HashMap::new(),
        }
    }

    /// A name used nowhere else in the model (subgraphs included).
    fn fresh(&mut self) -> String {
        loop {
            let n = format!("t{}", self.next);
            self.next += 1;
            if self.used.insert(n.clone()) {
                return n;
            }
        }
    }

    /// `base`, or `base_2`, `base_3`, ... if taken.
    fn fresh_named(&mut self, base: &str) -> String {
        let mut k = 2;
        loop {
            let n = format!("{base}_{k}");
            if self.used.insert(n.clone()) {
                return n;
            }
            k += 1;
        }
    }

    fn name(&self, v: ValueId) -> R<String> {
        self.names.get(&v).cloned().ok_or_else(|| {
            ExportError::Spec(format!(
                "value {} is read before it is defined (a bug in the export)",
                v.index()
            ))
        })
    }

    fn tensor_ty(&self, v: ValueId) -> R<TensorType> {
        self.g.ty(v).tensor().cloned().ok_or_else(|| {
            ExportError::Spec(format!("value {} is the token, not a tensor", v.index()))
        })
    }

    /// Appends `op` with one fresh output.
    fn op(
        &mut self,
        s: &mut Sink,
        op: &str,
        inputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
    ) -> String {
        let out = self.fresh();
        s.nodes.push(node_proto(
            op,
            inputs.iter().map(|x| x.to_string()).collect(),
            vec![out.clone()],
            attrs,
        ));
        out
    }

    /// A constant: an initializer in the main graph, a `Constant` node in a subgraph.
    fn constant(&mut self, s: &mut Sink, a: Array) -> String {
        let name = self.fresh();
        let t = tensor_proto(&name, &a);
        if s.main {
            s.inits.push(t);
        } else {
            s.nodes.push(node_proto(
                "Constant",
                vec![],
                vec![name.clone()],
                vec![attr::tensor("value", t)],
            ));
        }
        name
    }

    fn i64s(&mut self, s: &mut Sink, v: &[i64]) -> String {
        self.constant(
            s,
            Array {
                dtype: DType::I64,
                dims: vec![v.len()],
                data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            },
        )
    }

    fn scalar(&mut self, s: &mut Sink, dtype: DType, value: f64, prim: &str) -> R<String> {
        let data = scalar_bytes(dtype, value, prim)?;
        Ok(self.constant(
            s,
            Array {
                dtype,
                dims: vec![],
                data,
            },
        ))
    }

    /// The size of `d` as a 1-D `int64` tensor of one element.
    fn dim_1d(&mut self, s: &mut Sink, d: &Dim) -> R<String> {
        match d {
            Dim::Known(n) => Ok(self.i64s(s, &[*n as i64])),
            Dim::Sym(name) => {
                let (input, axis) = self
                    .syms
                    .get(&**name)
                    .cloned()
                    .ok_or_else(|| ExportError::UnboundDim(name.to_string()))?;
                let shape = self.op(s, "Shape", &[&input], vec![]);
                let idx = self.i64s(s, &[axis as i64]);
                Ok(self.op(s, "Gather", &[&shape, &idx], vec![attr::int("axis", 0)]))
            }
        }
    }

    /// A shape as a 1-D `int64` tensor: a constant when every dim is known.
    fn shape_tensor(&mut self, s: &mut Sink, shape: &Shape) -> R<String> {
        if let Some(known) = shape.to_known() {
            let v: Vec<i64> = known.iter().map(|&d| d as i64).collect();
            return Ok(self.i64s(s, &v));
        }
        let mut parts = Vec::new();
        let mut run: Vec<i64> = Vec::new();
        for d in shape.dims() {
            match d {
                Dim::Known(n) => run.push(*n as i64),
                Dim::Sym(_) => {
                    if !run.is_empty() {
                        parts.push(self.i64s(s, &run));
                        run.clear();
                    }
                    parts.push(self.dim_1d(s, d)?);
                }
            }
        }
        if !run.is_empty() {
            parts.push(self.i64s(s, &run));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(self.op(s, "Concat", &refs, vec![attr::int("axis", 0)]))
    }

    fn need_opset(&self, prim: &str, min: i64) -> R<()> {
        if self.opset < min {
            return Err(ExportError::NeedsOpset {
                prim: prim.into(),
                min,
                opset: self.opset,
            });
        }
        Ok(())
    }

    /// Emits the nodes of `block` into `s`.
    fn emit_block(&mut self, block: BlockId, s: &mut Sink) -> R<()> {
        let g = self.g;
        for &n in &g.block(block).nodes {
            let node = g.node(n);
            match &node.kind {
                NodeKind::Prim(op) => {
                    let tensors: Vec<ValueId> = node
                        .operands
                        .iter()
                        .copied()
                        .filter(|&v| !g.ty(v).is_token())
                        .collect();
                    let results: Vec<ValueId> = node
                        .results
                        .iter()
                        .copied()
                        .filter(|&v| !g.ty(v).is_token())
                        .collect();
                    let [result] = results[..] else {
                        return Err(ExportError::Spec(format!(
                            "`{}` has {} tensor results",
                            op.name(),
                            results.len()
                        )));
                    };
                    let name = self.prim(s, op, &tensors, result)?;
                    self.names.insert(result, name);
                }
                // ONNX has no assertion: a model checks nothing at run time.
                NodeKind::Assert { .. } => {}
                // A fused group or a call is its region's nodes, in place.
                NodeKind::Fused { body } | NodeKind::Call { body, .. } => {
                    self.bind(*body, &node.operands)?;
                    self.emit_block(*body, s)?;
                    let yields = g.block(*body).yields.clone();
                    self.bind_results(&node.results, &yields)?;
                }
                NodeKind::If {
                    then_block,
                    else_block,
                } => self.emit_if(s, n, *then_block, *else_block)?,
                NodeKind::For { body } => self.emit_for(s, n, *body)?,
                NodeKind::While { cond, body } => self.emit_while(s, n, *cond, *body)?,
                NodeKind::Collective(c) => {
                    return Err(ExportError::Unmappable {
                        prim: c.name().into(),
                        why: "collectives belong to partitioned graphs".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Binds a region's arguments to the names of `values` (tokens skipped on both sides).
    fn bind(&mut self, region: BlockId, values: &[ValueId]) -> R<()> {
        let args = self.g.block(region).args.clone();
        self.bind_results(&args, values)
    }

    /// Binds each tensor of `to` to the name of the matching tensor of `from`.
    fn bind_results(&mut self, to: &[ValueId], from: &[ValueId]) -> R<()> {
        let g = self.g;
        let to: Vec<ValueId> = to
            .iter()
            .copied()
            .filter(|&v| !g.ty(v).is_token())
            .collect();
        let from: Vec<ValueId> = from
            .iter()
            .copied()
            .filter(|&v| !g.ty(v).is_token())
            .collect();
        if to.len() != from.len() {
            return Err(ExportError::Spec(
                "a region's values do not match its node's".into(),
            ));
        }
        for (t, f) in to.into_iter().zip(from) {
            let name = self.name(f)?;
            self.names.insert(t, name);
        }
        Ok(())
    }

    /// The tensor values of `vs`.
    fn tensors(&self, vs: &[ValueId]) -> Vec<ValueId> {
        vs.iter()
            .copied()
            .filter(|&v| !self.g.ty(v).is_token())
            .collect()
    }

    /// A subgraph whose outputs are the (tensor) yields of `block`, copied under fresh
    /// names with the types `types`.
    fn subgraph(
        &mut self,
        name: &str,
        sink: Sink,
        inputs: Vec<pb::ValueInfoProto>,
        outputs: &[(String, TensorType)],
    ) -> pb::GraphProto {
        let mut sink = sink;
        let mut out_infos = Vec::new();
        for (src, t) in outputs {
            let o = self.fresh();
            sink.nodes.push(node_proto(
                "Identity",
                vec![src.clone()],
                vec![o.clone()],
                vec![],
            ));
            out_infos.push(value_info(&o, t));
        }
        pb::GraphProto {
            name: Some(name.to_string()),
            node: sink.nodes,
            initializer: sink.inits,
            input: inputs,
            output: out_infos,
            ..Default::default()
        }
    }

    fn yields_typed(&self, block: BlockId) -> R<Vec<(String, TensorType)>> {
        self.tensors(&self.g.block(block).yields)
            .into_iter()
            .map(|v| Ok((self.name(v)?, self.tensor_ty(v)?)))
            .collect()
    }

    fn emit_if(
        &mut self,
        s: &mut Sink,
        n: ir::graph::NodeId,
        then_b: BlockId,
        else_b: BlockId,
    ) -> R<()> {
        let g = self.g;
        let node = g.node(n);
        let Some((&cond, passed)) = node.operands.split_first() else {
            return Err(ExportError::Spec("an `if` without a condition".into()));
        };
        let cond = self.name(cond)?;
        let mut branches = Vec::new();
        for (label, b) in [("then", then_b), ("else", else_b)] {
            self.bind(b, passed)?;
            let mut sub = Sink::new(false);
            self.emit_block(b, &mut sub)?;
            let outs = self.yields_typed(b)?;
            let gname = format!("{}_{label}", self.fresh());
            branches.push(self.subgraph(&gname, sub, vec![], &outs));
        }
        let results = self.tensors(&node.results);
        let outs: Vec<String> = results.iter().map(|_| self.fresh()).collect();
        let else_g = branches.pop();
        let then_g = branches.pop();
        let (Some(then_g), Some(else_g)) = (then_g, else_g) else {
            return Err(ExportError::Spec("an `if` lost a branch".into()));
        };
        s.nodes.push(node_proto(
            "If",
            vec![cond],
            outs.clone(),
            vec![
                attr::graph("then_branch", then_g),
                attr::graph("else_branch", else_g),
            ],
        ));
        for (v, o) in results.into_iter().zip(outs) {
            self.names.insert(v, o);
        }
        Ok(())
    }

    /// Fresh loop-carried inputs of a `Loop` body for `vals`: their names and infos.
    fn carried_inputs(&mut self, vals: &[ValueId]) -> R<(Vec<String>, Vec<pb::ValueInfoProto>)> {
        let mut names = Vec::new();
        let mut infos = Vec::new();
        for &v in vals {
            let t = self.tensor_ty(v)?;
            let name = self.fresh();
            infos.push(value_info(&name, &t));
            names.push(name);
        }
        Ok((names, infos))
    }

    /// The `iter` and `cond` inputs every `Loop` body takes.
    fn loop_header(&mut self) -> (String, String, Vec<pb::ValueInfoProto>) {
        let iter = self.fresh();
        let cond = self.fresh();
        let infos = vec![
            value_info(&iter, &TensorType::new(DType::I64, Shape::scalar())),
            value_info(&cond, &TensorType::new(DType::Bool, Shape::scalar())),
        ];
        (iter, cond, infos)
    }

    fn emit_for(&mut self, s: &mut Sink, n: ir::graph::NodeId, body: BlockId) -> R<()> {
        let g = self.g;
        let node = g.node(n);
        let [start, stop, step, carried @ ..] = &node.operands[..] else {
            return Err(ExportError::Spec("a `for` without its bounds".into()));
        };
        let dtype = self.tensor_ty(*start)?.dtype;
        let (start, stop, step) = (self.name(*start)?, self.name(*stop)?, self.name(*step)?);
        // The trip count: max(0, (stop - start + step - sign(step)) / step), truncating.
        let d = self.op(s, "Sub", &[&stop, &start], vec![]);
        let sign = self.op(s, "Sign", &[&step], vec![]);
        let adj = self.op(s, "Sub", &[&step, &sign], vec![]);
        let num = self.op(s, "Add", &[&d, &adj], vec![]);
        let q = self.op(s, "Div", &[&num, &step], vec![]);
        let zero = self.scalar(s, dtype, 0.0, "for")?;
        let mut trips = self.op(s, "Max", &[&q, &zero], vec![]);
        if dtype != DType::I64 {
            trips = self.op(
                s,
                "Cast",
                &[&trips],
                vec![attr::int("to", onnx_dtype(DType::I64) as i64)],
            );
        }
        let carried = self.tensors(carried);
        let (iter, cond_in, mut infos) = self.loop_header();
        let (names, carried_infos) = self.carried_inputs(&carried)?;
        infos.extend(carried_infos);
        let mut sub = Sink::new(false);
        let it = if dtype == DType::I64 {
            iter.clone()
        } else {
            self.op(
                &mut sub,
                "Cast",
                &[&iter],
                vec![attr::int("to", onnx_dtype(dtype) as i64)],
            )
        };
        let scaled = self.op(&mut sub, "Mul", &[&it, &step], vec![]);
        let i = self.op(&mut sub, "Add", &[&start, &scaled], vec![]);
        let args = self.tensors(&g.block(body).args);
        let Some((&iv, rest)) = args.split_first() else {
            return Err(ExportError::Spec("a `for` body without its index".into()));
        };
        self.names.insert(iv, i);
        if rest.len() != names.len() {
            return Err(ExportError::Spec(
                "a `for` carries other values than its body".into(),
            ));
        }
        for (&a, nm) in rest.iter().zip(&names) {
            self.names.insert(a, nm.clone());
        }
        self.emit_block(body, &mut sub)?;
        let mut outs = vec![(
            cond_in.clone(),
            TensorType::new(DType::Bool, Shape::scalar()),
        )];
        outs.extend(self.yields_typed(body)?);
        let gname = format!("{}_for", self.fresh());
        let body_g = self.subgraph(&gname, sub, infos, &outs);
        let mut inputs = vec![trips, String::new()];
        for &v in &carried {
            inputs.push(self.name(v)?);
        }
        self.finish_loop(s, n, inputs, body_g)
    }

    fn emit_while(
        &mut self,
        s: &mut Sink,
        n: ir::graph::NodeId,
        cond: BlockId,
        body: BlockId,
    ) -> R<()> {
        let g = self.g;
        let node = g.node(n);
        // The condition runs once before the loop on the initial values ...
        self.bind(cond, &node.operands)?;
        self.emit_block(cond, s)?;
        let first = self.tensors(&g.block(cond).yields);
        let Some((&flag, passed)) = first.split_first() else {
            return Err(ExportError::Spec(
                "a `while` condition without its flag".into(),
            ));
        };
        let mut inputs = vec![String::new(), self.name(flag)?];
        for &v in passed {
            inputs.push(self.name(v)?);
        }
        // ... and then after each body, inside the Loop's body.
        let (_iter, _cond_in, mut infos) = self.loop_header();
        let (names, carried_infos) = self.carried_inputs(passed)?;
        infos.extend(carried_infos);
        let args = self.tensors(&g.block(body).args);
        if args.len() != names.len() {
            return Err(ExportError::Spec(
                "a `while` passes other values than its body takes".into(),
            ));
        }
        for (&a, nm) in args.iter().zip(&names) {
            self.names.insert(a, nm.clone());
        }
        let mut sub = Sink::new(false);
        self.emit_block(body, &mut sub)?;
        let next = self.g.block(body).yields.clone();
        self.bind(cond, &next)?;
        self.emit_block(cond, &mut sub)?;
        let outs = self.yields_typed(cond)?;
        let gname = format!("{}_while", self.fresh());
        let body_g = self.subgraph(&gname, sub, infos, &outs);
        self.finish_loop(s, n, inputs, body_g)
    }

    fn finish_loop(
        &mut self,
        s: &mut Sink,
        n: ir::graph::NodeId,
        inputs: Vec<String>,
        body: pb::GraphProto,
    ) -> R<()> {
        let results = self.tensors(&self.g.node(n).results);
        let outs: Vec<String> = results.iter().map(|_| self.fresh()).collect();
        s.nodes.push(node_proto(
            "Loop",
            inputs,
            outs.clone(),
            vec![attr::graph("body", body)],
        ));
        for (v, o) in results.into_iter().zip(outs) {
            self.names.insert(v, o);
        }
        Ok(())
    }

    /// Emits one primitive; gives the name of its result.
    fn prim(&mut self, s: &mut Sink, op: &Op, args: &[ValueId], result: ValueId) -> R<String> {
        let prim = op.name();
        let names: Vec<String> = args.iter().map(|&v| self.name(v)).collect::<R<_>>()?;
        let arg = |k: usize| -> R<&str> {
            names
                .get(k)
                .map(String::as_str)
                .ok_or_else(|| ExportError::Spec(format!("`{prim}` is missing operand {k}")))
        };
        // Every branch below gives a value of the result's type (`ir::infer`'s rule).
        let _ = result;
        let tys: Vec<TensorType> = args.iter().map(|&v| self.tensor_ty(v)).collect::<R<_>>()?;
        let in_ty = |k: usize| -> R<TensorType> {
            tys.get(k)
                .cloned()
                .ok_or_else(|| ExportError::Spec(format!("`{prim}` is missing operand {k}")))
        };
        Ok(match op {
            Op::Unary { op } => {
                let x = arg(0)?.to_string();
                let dt = in_ty(0)?.dtype;
                self.unary(s, *op, &x, dt)?
            }
            Op::Binary { op } => {
                let (a, b) = (arg(0)?.to_string(), arg(1)?.to_string());
                let dt = in_ty(0)?.dtype;
                self.binary(s, *op, &a, &b, dt)?
            }
            Op::Compare { op } => {
                let (mut a, mut b) = (arg(0)?.to_string(), arg(1)?.to_string());
                let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
                if ordering && in_ty(0)?.dtype == DType::Bool {
                    a = self.cast(s, &a, DType::I32);
                    b = self.cast(s, &b, DType::I32);
                }
                match op {
                    CmpOp::Eq => self.op(s, "Equal", &[&a, &b], vec![]),
                    CmpOp::Ne => {
                        let e = self.op(s, "Equal", &[&a, &b], vec![]);
                        self.op(s, "Not", &[&e], vec![])
                    }
                    CmpOp::Lt => self.op(s, "Less", &[&a, &b], vec![]),
                    CmpOp::Le => self.op(s, "LessOrEqual", &[&a, &b], vec![]),
                    CmpOp::Gt => self.op(s, "Greater", &[&a, &b], vec![]),
                    CmpOp::Ge => self.op(s, "GreaterOrEqual", &[&a, &b], vec![]),
                }
            }
            Op::Select {} => {
                let (c, a, b) = (
                    arg(0)?.to_string(),
                    arg(1)?.to_string(),
                    arg(2)?.to_string(),
                );
                if in_ty(1)?.dtype == DType::Bool {
                    // ONNX Runtime has no bool `Where`: (c and a) or (not c and b).
                    let ca = self.op(s, "And", &[&c, &a], vec![]);
                    let nc = self.op(s, "Not", &[&c], vec![]);
                    let ncb = self.op(s, "And", &[&nc, &b], vec![]);
                    self.op(s, "Or", &[&ca, &ncb], vec![])
                } else {
                    self.op(s, "Where", &[&c, &a, &b], vec![])
                }
            }
            Op::Reduce { op, axes, keepdims } => {
                let x = arg(0)?.to_string();
                let dt = in_ty(0)?.dtype;
                self.reduce(s, *op, &x, dt, axes, *keepdims)?
            }
            Op::ArgReduce { op, axis, keepdims } => {
                let mut x = arg(0)?.to_string();
                if in_ty(0)?.dtype == DType::Bool {
                    x = self.cast(s, &x, DType::I32);
                }
                let name = match op {
                    ir::ArgOp::ArgMax => "ArgMax",
                    ir::ArgOp::ArgMin => "ArgMin",
                };
                self.op(
                    s,
                    name,
                    &[&x],
                    vec![
                        attr::int("axis", *axis as i64),
                        attr::int("keepdims", i64::from(*keepdims)),
                        attr::int("select_last_index", 0),
                    ],
                )
            }
            Op::MatMul {} => {
                let (a, b) = (arg(0)?.to_string(), arg(1)?.to_string());
                self.op(s, "MatMul", &[&a, &b], vec![])
            }
            Op::Reshape { shape } => {
                let x = arg(0)?.to_string();
                let target = self.shape_tensor(s, shape)?;
                let mut attrs = vec![];
                if shape.dims().iter().any(|d| d.known() == Some(0)) {
                    // Without `allowzero`, a 0 in the shape means "copy the input's dim".
                    self.need_opset("reshape to an empty shape", 14)?;
                    attrs.push(attr::int("allowzero", 1));
                }
                self.op(s, "Reshape", &[&x, &target], attrs)
            }
            Op::Transpose { perm } => {
                let x = arg(0)?.to_string();
                let perm: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
                self.op(s, "Transpose", &[&x], vec![attr::ints("perm", &perm)])
            }
            Op::Broadcast { shape } => {
                let x = arg(0)?.to_string();
                let target = self.shape_tensor(s, shape)?;
                self.op(s, "Expand", &[&x, &target], vec![])
            }
            Op::Slice { dims } => {
                let x = arg(0)?.to_string();
                let t = in_ty(0)?;
                let (mut starts, mut ends, mut axes, mut steps) = (vec![], vec![], vec![], vec![]);
                for (k, (sd, d)) in dims.iter().zip(t.shape.dims()).enumerate() {
                    if sd.step == 1 && sd.start == 0 && d.known() == Some(sd.len) {
                        continue;
                    }
                    let (start, len, step) = (sd.start as i64, sd.len as i64, sd.step as i64);
                    let end = if len == 0 {
                        start
                    } else if step > 0 {
                        start + (len - 1) * step + 1
                    } else {
                        // Past the first element walking backwards: ONNX reads a negative
                        // end as counted from the back, so "before 0" is i64::MIN.
                        let e = start + (len - 1) * step - 1;
                        if e < 0 { i64::MIN } else { e }
                    };
                    starts.push(start);
                    ends.push(end);
                    axes.push(k as i64);
                    steps.push(step);
                }
                if axes.is_empty() {
                    self.op(s, "Identity", &[&x], vec![])
                } else {
                    let st = self.i64s(s, &starts);
                    let en = self.i64s(s, &ends);
                    let ax = self.i64s(s, &axes);
                    let sp = self.i64s(s, &steps);
                    self.op(s, "Slice", &[&x, &st, &en, &ax, &sp], vec![])
                }
            }
            Op::Concat { axis } => {
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                self.op(s, "Concat", &refs, vec![attr::int("axis", *axis as i64)])
            }
            Op::Pad { pads, value } => {
                let x = arg(0)?.to_string();
                if pads.iter().all(|&(a, b)| a == 0 && b == 0) {
                    self.op(s, "Identity", &[&x], vec![])
                } else {
                    let mut p: Vec<i64> = pads.iter().map(|&(a, _)| a as i64).collect();
                    p.extend(pads.iter().map(|&(_, b)| b as i64));
                    let p = self.i64s(s, &p);
                    let v = self.scalar(s, in_ty(0)?.dtype, *value, prim)?;
                    self.op(
                        s,
                        "Pad",
                        &[&x, &p, &v],
                        vec![attr::string("mode", "constant")],
                    )
                }
            }
            Op::Gather { axis } => {
                let (x, i) = (arg(0)?.to_string(), arg(1)?.to_string());
                self.op(
                    s,
                    "Gather",
                    &[&x, &i],
                    vec![attr::int("axis", *axis as i64)],
                )
            }
            Op::ScatterAdd { axis } => {
                self.need_opset(prim, 16)?;
                let (x, idx, upd) = (
                    arg(0)?.to_string(),
                    arg(1)?.to_string(),
                    arg(2)?.to_string(),
                );
                let (xt, it) = (in_ty(0)?, in_ty(1)?);
                self.scatter_add(s, &x, &idx, &upd, *axis, &xt, &it)?
            }
            Op::Conv2d { params } => {
                let (x, w) = (arg(0)?.to_string(), arg(1)?.to_string());
                let wt = in_ty(1)?;
                let kernel: Option<Vec<i64>> = wt.shape.dims()[2..]
                    .iter()
                    .map(|d| d.known().map(|k| k as i64))
                    .collect();
                let Some(kernel) = kernel else {
                    return Err(ExportError::Unmappable {
                        prim: prim.into(),
                        why: "its kernel's size is symbolic".into(),
                    });
                };
                let p = params;
                self.op(
                    s,
                    "Conv",
                    &[&x, &w],
                    vec![
                        attr::ints("kernel_shape", &kernel),
                        attr::ints("strides", &[p.stride[0] as i64, p.stride[1] as i64]),
                        attr::ints(
                            "pads",
                            &[
                                p.padding[0] as i64,
                                p.padding[1] as i64,
                                p.padding[0] as i64,
                                p.padding[1] as i64,
                            ],
                        ),
                        attr::ints("dilations", &[p.dilation[0] as i64, p.dilation[1] as i64]),
                        attr::int("group", p.groups as i64),
                    ],
                )
            }
            Op::Pool2d { op, params } => {
                let x = arg(0)?.to_string();
                let p = params;
                let mut attrs = vec![
                    attr::ints("kernel_shape", &[p.window[0] as i64, p.window[1] as i64]),
                    attr::ints("strides", &[p.stride[0] as i64, p.stride[1] as i64]),
                    attr::ints(
                        "pads",
                        &[
                            p.padding[0] as i64,
                            p.padding[1] as i64,
                            p.padding[0] as i64,
                            p.padding[1] as i64,
                        ],
                    ),
                ];
                let name = match op {
                    PoolOp::Max => "MaxPool",
                    PoolOp::Avg => {
                        attrs.push(attr::int("count_include_pad", 1));
                        "AveragePool"
                    }
                };
                self.op(s, name, &[&x], attrs)
            }
            Op::Cast { dtype } => {
                let x = arg(0)?.to_string();
                if in_ty(0)?.dtype == *dtype {
                    self.op(s, "Identity", &[&x], vec![])
                } else {
                    self.cast(s, &x, *dtype)
                }
            }
            Op::Iota { shape, axis, dtype } => self.iota(s, shape, *axis, *dtype)?,
            Op::Full {
                shape,
                dtype,
                value,
            } => {
                if shape.rank() == 0 {
                    self.scalar(s, *dtype, *value, prim)?
                } else {
                    let target = self.shape_tensor(s, shape)?;
                    let data = scalar_bytes(*dtype, *value, prim)?;
                    let v = tensor_proto(
                        "value",
                        &Array {
                            dtype: *dtype,
                            dims: vec![1],
                            data,
                        },
                    );
                    self.op(
                        s,
                        "ConstantOfShape",
                        &[&target],
                        vec![attr::tensor("value", v)],
                    )
                }
            }
            // `print` shows its operand when MindScript runs the graph; a model does not.
            Op::Print {} => arg(0)?.to_string(),
            Op::StopGradient {} => {
                let x = arg(0)?.to_string();
                self.op(s, "Identity", &[&x], vec![])
            }
            Op::Random { op, .. } => {
                return Err(ExportError::Unmappable {
                    prim: op.name().into(),
                    why: "random draws are not exportable".into(),
                });
            }
            Op::Conv2dBackwardInput { .. }
            | Op::Conv2dBackwardFilter { .. }
            | Op::Pool2dBackward { .. } => {
                return Err(ExportError::Unmappable {
                    prim: prim.into(),
                    why: "it is a gradient primitive".into(),
                });
            }
        })
    }

    fn cast(&mut self, s: &mut Sink, x: &str, to: DType) -> String {
        self.op(
            s,
            "Cast",
            &[x],
            vec![attr::int("to", onnx_dtype(to) as i64)],
        )
    }

    fn unary(&mut self, s: &mut Sink, op: UnaryOp, x: &str, dt: DType) -> R<String> {
        use UnaryOp::*;
        let float = dt.is_float();
        let one = |cx: &mut Self, s: &mut Sink| cx.scalar(s, dt, 1.0, op.name());
        Ok(match op {
            Neg => self.op(s, "Neg", &[x], vec![]),
            Abs => self.op(s, "Abs", &[x], vec![]),
            Sign => self.op(s, "Sign", &[x], vec![]),
            Floor | Ceil | Round if !float => self.op(s, "Identity", &[x], vec![]),
            Floor => self.op(s, "Floor", &[x], vec![]),
            Ceil => self.op(s, "Ceil", &[x], vec![]),
            Round => self.op(s, "Round", &[x], vec![]),
            Relu if float => self.op(s, "Relu", &[x], vec![]),
            Relu => {
                let z = self.scalar(s, dt, 0.0, op.name())?;
                self.op(s, "Max", &[x, &z], vec![])
            }
            Exp => self.op(s, "Exp", &[x], vec![]),
            Log => self.op(s, "Log", &[x], vec![]),
            Log1p => {
                let o = one(self, s)?;
                let y = self.op(s, "Add", &[x, &o], vec![]);
                self.op(s, "Log", &[&y], vec![])
            }
            Expm1 => {
                let o = one(self, s)?;
                let y = self.op(s, "Exp", &[x], vec![]);
                self.op(s, "Sub", &[&y, &o], vec![])
            }
            Sqrt => self.op(s, "Sqrt", &[x], vec![]),
            Rsqrt => {
                let y = self.op(s, "Sqrt", &[x], vec![]);
                self.op(s, "Reciprocal", &[&y], vec![])
            }
            Sin => self.op(s, "Sin", &[x], vec![]),
            // ONNX Runtime's CPU provider has no f64 Cos, Erf or Softplus, and fuses
            // x * sigmoid(x) in f64 into a kernel it has only for f32: those get other forms.
            Cos if dt == DType::F64 => {
                let h = self.scalar(s, dt, std::f64::consts::FRAC_PI_2, op.name())?;
                let y = self.op(s, "Sub", &[&h, x], vec![]);
                self.op(s, "Sin", &[&y], vec![])
            }
            Cos => self.op(s, "Cos", &[x], vec![]),
            Tanh => self.op(s, "Tanh", &[x], vec![]),
            Sigmoid => self.op(s, "Sigmoid", &[x], vec![]),
            Gelu if self.opset >= 20 && dt != DType::F64 => self.op(s, "Gelu", &[x], vec![]),
            Gelu => {
                // x/2 * (1 + erf(x / sqrt 2))
                let r = self.scalar(s, dt, std::f64::consts::FRAC_1_SQRT_2, op.name())?;
                let h = self.scalar(s, dt, 0.5, op.name())?;
                let o = one(self, s)?;
                let xs = self.op(s, "Mul", &[x, &r], vec![]);
                let e = self.erf(s, &xs, dt);
                let e1 = self.op(s, "Add", &[&e, &o], vec![]);
                let xh = self.op(s, "Mul", &[x, &h], vec![]);
                self.op(s, "Mul", &[&xh, &e1], vec![])
            }
            Silu if dt == DType::F64 => {
                // x / (1 + e^-x)
                let o = one(self, s)?;
                let n = self.op(s, "Neg", &[x], vec![]);
                let e = self.op(s, "Exp", &[&n], vec![]);
                let d = self.op(s, "Add", &[&e, &o], vec![]);
                self.op(s, "Div", &[x, &d], vec![])
            }
            Silu => {
                let y = self.op(s, "Sigmoid", &[x], vec![]);
                self.op(s, "Mul", &[x, &y], vec![])
            }
            Softplus if dt == DType::F64 => {
                // max(x, 0) + ln(1 + e^-|x|), which neither overflows nor cancels.
                let o = one(self, s)?;
                let z = self.scalar(s, dt, 0.0, op.name())?;
                let m = self.op(s, "Max", &[x, &z], vec![]);
                let a = self.op(s, "Abs", &[x], vec![]);
                let n = self.op(s, "Neg", &[&a], vec![]);
                let e = self.op(s, "Exp", &[&n], vec![]);
                let e1 = self.op(s, "Add", &[&e, &o], vec![]);
                let l = self.op(s, "Log", &[&e1], vec![]);
                self.op(s, "Add", &[&m, &l], vec![])
            }
            Softplus => self.op(s, "Softplus", &[x], vec![]),
            Erf => self.erf(s, x, dt),
            Not => self.op(s, "Not", &[x], vec![]),
            IsNan if float => self.op(s, "IsNaN", &[x], vec![]),
            IsNan => {
                let e = self.op(s, "Equal", &[x, x], vec![]);
                self.op(s, "Not", &[&e], vec![])
            }
            IsFinite if float => {
                let i = self.op(s, "IsInf", &[x], vec![]);
                let n = self.op(s, "IsNaN", &[x], vec![]);
                let o = self.op(s, "Or", &[&i, &n], vec![]);
                self.op(s, "Not", &[&o], vec![])
            }
            IsFinite => self.op(s, "Equal", &[x, x], vec![]),
        })
    }

    /// `Erf`; in f64 through f32, the only float ONNX Runtime's CPU provider has it for.
    fn erf(&mut self, s: &mut Sink, x: &str, dt: DType) -> String {
        if dt == DType::F64 {
            let x32 = self.cast(s, x, DType::F32);
            let e = self.op(s, "Erf", &[&x32], vec![]);
            self.cast(s, &e, DType::F64)
        } else {
            self.op(s, "Erf", &[x], vec![])
        }
    }

    fn binary(&mut self, s: &mut Sink, op: BinaryOp, a: &str, b: &str, dt: DType) -> R<String> {
        use BinaryOp::*;
        let float = dt.is_float();
        Ok(match op {
            Add => self.op(s, "Add", &[a, b], vec![]),
            Sub => self.op(s, "Sub", &[a, b], vec![]),
            Mul => self.op(s, "Mul", &[a, b], vec![]),
            Div => self.op(s, "Div", &[a, b], vec![]),
            Pow => self.op(s, "Pow", &[a, b], vec![]),
            Maximum => self.op(s, "Max", &[a, b], vec![]),
            Minimum => self.op(s, "Min", &[a, b], vec![]),
            And => self.op(s, "And", &[a, b], vec![]),
            Or => self.op(s, "Or", &[a, b], vec![]),
            // Integer `Mod` with fmod=0 is Python's floored remainder.
            Rem if !float => self.op(s, "Mod", &[a, b], vec![attr::int("fmod", 0)]),
            Rem => self.float_rem(s, a, b, dt)?,
            FloorDiv if !float => {
                // (a - a mod b) / b is exact, and the truncating Div is then floored.
                let m = self.op(s, "Mod", &[a, b], vec![attr::int("fmod", 0)]);
                let d = self.op(s, "Sub", &[a, &m], vec![]);
                self.op(s, "Div", &[&d, b], vec![])
            }
            FloorDiv => {
                let d = self.op(s, "Div", &[a, b], vec![]);
                self.op(s, "Floor", &[&d], vec![])
            }
        })
    }

    /// NumPy's float remainder: C's `fmod`, moved into `b`'s sign when the signs differ.
    fn float_rem(&mut self, s: &mut Sink, a: &str, b: &str, dt: DType) -> R<String> {
        let r = self.op(s, "Mod", &[a, b], vec![attr::int("fmod", 1)]);
        let z = self.scalar(s, dt, 0.0, "rem")?;
        let nz = self.op(s, "Equal", &[&r, &z], vec![]);
        let nz = self.op(s, "Not", &[&nz], vec![]);
        let rn = self.op(s, "Less", &[&r, &z], vec![]);
        let bn = self.op(s, "Less", &[b, &z], vec![]);
        let differ = self.op(s, "Xor", &[&rn, &bn], vec![]);
        let fix = self.op(s, "And", &[&nz, &differ], vec![]);
        let moved = self.op(s, "Add", &[&r, b], vec![]);
        Ok(self.op(s, "Where", &[&fix, &moved, &r], vec![]))
    }

    fn reduce(
        &mut self,
        s: &mut Sink,
        op: ReduceOp,
        x: &str,
        dt: DType,
        axes: &[usize],
        keepdims: bool,
    ) -> R<String> {
        if axes.is_empty() {
            return Ok(self.op(s, "Identity", &[x], vec![]));
        }
        let (name, input_axes) = match op {
            ReduceOp::Sum => ("ReduceSum", true),
            ReduceOp::Prod => ("ReduceProd", self.opset >= 18),
            ReduceOp::Max => ("ReduceMax", self.opset >= 18),
            ReduceOp::Min => ("ReduceMin", self.opset >= 18),
        };
        // A sum or product of bools is an i64; a max or min of bools runs on integers.
        let (x, back) = match (dt, op) {
            (DType::Bool, ReduceOp::Sum | ReduceOp::Prod) => (self.cast(s, x, DType::I64), None),
            (DType::Bool, _) => (self.cast(s, x, DType::I32), Some(DType::Bool)),
            _ => (x.to_string(), None),
        };
        let axes: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
        let keep = attr::int("keepdims", i64::from(keepdims));
        let y = if input_axes {
            let ax = self.i64s(s, &axes);
            self.op(s, name, &[&x, &ax], vec![keep])
        } else {
            self.op(s, name, &[&x], vec![attr::ints("axes", &axes), keep])
        };
        Ok(match back {
            Some(d) => self.cast(s, &y, d),
            None => y,
        })
    }

    /// `scatter_add` along `axis` as `ScatterND(reduction="add")` with the indexed axis
    /// moved to the front of the base and the index dims to the front of the updates.
    #[allow(clippy::too_many_arguments)]
    fn scatter_add(
        &mut self,
        s: &mut Sink,
        x: &str,
        idx: &str,
        upd: &str,
        axis: usize,
        xt: &TensorType,
        it: &TensorType,
    ) -> R<String> {
        let r = xt.shape.rank();
        let ri = it.shape.rank();
        let to_front: Vec<i64> = std::iter::once(axis)
            .chain((0..r).filter(|&k| k != axis))
            .map(|k| k as i64)
            .collect();
        let mut back = vec![0i64; r];
        for (i, &p) in to_front.iter().enumerate() {
            back[p as usize] = i as i64;
        }
        let xf = self.op(s, "Transpose", &[x], vec![attr::ints("perm", &to_front)]);
        // Updates are x.shape[..axis] ++ idx.shape ++ x.shape[axis+1..].
        let uperm: Vec<i64> = (axis..axis + ri)
            .chain(0..axis)
            .chain(axis + ri..r - 1 + ri)
            .map(|k| k as i64)
            .collect();
        let uf = self.op(s, "Transpose", &[upd], vec![attr::ints("perm", &uperm)]);
        // Negative indices count from the end, as in `gather`.
        let mut i = idx.to_string();
        if it.dtype != DType::I64 {
            i = self.cast(s, &i, DType::I64);
        }
        let n = self.dim_1d(s, &xt.shape.dims()[axis])?;
        let z = self.scalar(s, DType::I64, 0.0, "scatter_add")?;
        let neg = self.op(s, "Less", &[&i, &z], vec![]);
        let wrapped = self.op(s, "Add", &[&i, &n], vec![]);
        let i = self.op(s, "Where", &[&neg, &wrapped, &i], vec![]);
        let last = self.i64s(s, &[-1]);
        let i = self.op(s, "Unsqueeze", &[&i, &last], vec![]);
        let y = self.op(
            s,
            "ScatterND",
            &[&xf, &i, &uf],
            vec![attr::string("reduction", "add")],
        );
        Ok(self.op(s, "Transpose", &[&y], vec![attr::ints("perm", &back)]))
    }

    /// `iota`: `Range` along the axis, reshaped to broadcast and expanded to the shape.
    fn iota(&mut self, s: &mut Sink, shape: &Shape, axis: usize, dtype: DType) -> R<String> {
        let rdt = match dtype {
            DType::F32 | DType::F64 | DType::I32 | DType::I64 => dtype,
            _ => DType::F32,
        };
        let d = shape.dims().get(axis).cloned().ok_or_else(|| {
            ExportError::Spec(format!(
                "`iota` on axis {axis} of a rank-{} shape",
                shape.rank()
            ))
        })?;
        let n1 = self.dim_1d(s, &d)?;
        let zero_axes = self.i64s(s, &[0]);
        let n = self.op(s, "Squeeze", &[&n1, &zero_axes], vec![]);
        let n = if rdt == DType::I64 {
            n
        } else {
            self.cast(s, &n, rdt)
        };
        let start = self.scalar(s, rdt, 0.0, "iota")?;
        let step = self.scalar(s, rdt, 1.0, "iota")?;
        let mut y = self.op(s, "Range", &[&start, &n, &step], vec![]);
        if rdt != dtype {
            y = self.cast(s, &y, dtype);
        }
        if shape.rank() == 1 {
            return Ok(y);
        }
        let mut col = vec![1i64; shape.rank()];
        col[axis] = -1;
        let col = self.i64s(s, &col);
        let y = self.op(s, "Reshape", &[&y, &col], vec![]);
        let target = self.shape_tensor(s, shape)?;
        Ok(self.op(s, "Expand", &[&y, &target], vec![]))
    }
}

/// One element of `dtype` holding `value`, little-endian.
fn scalar_bytes(dtype: DType, value: f64, prim: &str) -> R<Vec<u8>> {
    Ok(match dtype {
        DType::F32 => (value as f32).to_le_bytes().to_vec(),
        DType::F64 => value.to_le_bytes().to_vec(),
        DType::I32 => (value as i32).to_le_bytes().to_vec(),
        DType::I64 => (value as i64).to_le_bytes().to_vec(),
        DType::Bool => vec![u8::from(value != 0.0)],
        DType::F16 | DType::BF16 => {
            return Err(ExportError::Unmappable {
                prim: prim.into(),
                why: format!(
                    "constants of {dtype} are not written: no device of MindScript holds \
                     {dtype} tensors yet, so there is nothing to check them against"
                ),
            });
        }
    })
}

impl fmt::Display for OutputRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputRole::Token => f.write_str("the token"),
            OutputRole::Key => f.write_str("the random key"),
            OutputRole::Output(n) => write!(f, "output `{n}`"),
        }
    }
}

impl fmt::Display for InputRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputRole::Token => f.write_str("the token"),
            InputRole::Key => f.write_str("the random key"),
            InputRole::Input(n) => write!(f, "input `{n}`"),
            InputRole::Initializer(n, _) => write!(f, "parameter `{n}`"),
        }
    }
}
