//! ONNX export (`docs/export.md`): every mappable primitive, control flow, symbolic dims and
//! the samples' models exported and run by ONNX Runtime, whose outputs must equal
//! MindScript's (rtol 1e-3, atol 1e-5) after `onnx.checker.check_model(full_check=True)`.
//!
//! The ONNX Runtime half needs a Python with `numpy`, `onnx` and `onnxruntime`, named by
//! `MS_PYTHON` (`.ci/run` makes one in `.venv-ci`); without it those tests say that they
//! were skipped and check only the Rust side (the models are made and decoded, their
//! operators are the expected ones). The tests that need no Python check the decoded
//! protobuf, the names and the errors.
//!
//! Each case is a folder with `model.onnx`, its inputs `in0.npy`, ... in the model's input
//! order and MindScript's outputs `out0.npy`, ...; one Python run checks every folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use devices::{CpuDevice, HostBuffer, Tensor};
use interpreter::onnx::{self, ExportError, ExportSpec, InputRole, OutputRole};
use interpreter::{OnnxOptions, Options, Session};

mod support;
use ir::graph::Type;
use ir::{DType, Dim, Prim};
use onnx_proto::onnx as pb;
use onnx_proto::prost::Message;

/// The Python named by `MS_PYTHON`, or `None` (after saying so) when it is not set.
fn python() -> Option<PathBuf> {
    match std::env::var_os("MS_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            eprintln!(
                "skipped: MS_PYTHON is not set; point it at a Python with numpy, onnx and \
                 onnxruntime (`.ci/run` makes one in .venv-ci) to run the models with ONNX \
                 Runtime"
            );
            None
        }
    }
}

/// Checks and runs every case folder under the root given as argv[1]; prints `ok NAME` or
/// `FAIL NAME: why` per case and exits 1 if any failed.
const PY_CHECK: &str = r#"
import os, sys, traceback
import numpy as np
import onnx
import onnxruntime as ort

root = sys.argv[1]
failed = 0
for name in sorted(os.listdir(root)):
    d = os.path.join(root, name)
    try:
        model = onnx.load(os.path.join(d, "model.onnx"))
        onnx.checker.check_model(model, full_check=True)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        feed = {}
        for k, i in enumerate(sess.get_inputs()):
            feed[i.name] = np.load(os.path.join(d, "in%d.npy" % k))
        got = sess.run(None, feed)
        want = [np.load(os.path.join(d, "out%d.npy" % k)) for k in range(len(got))]
        assert not os.path.exists(os.path.join(d, "out%d.npy" % len(got))), "fewer outputs than MindScript's"
        for k, (g, w) in enumerate(zip(got, want)):
            g = np.asarray(g)
            assert g.dtype == w.dtype, "output %d: dtype %s, MindScript's %s" % (k, g.dtype, w.dtype)
            assert g.shape == w.shape, "output %d: shape %s, MindScript's %s" % (k, g.shape, w.shape)
            if w.dtype.kind == "f":
                ok = np.allclose(g, w, rtol=1e-3, atol=1e-5, equal_nan=True)
            else:
                ok = np.array_equal(g, w)
            assert ok, "output %d differs: max |diff| %s\nonnx %s\nms   %s" % (
                k, np.max(np.abs(g.astype(np.float64) - w.astype(np.float64))) if g.size else 0, g, w)
        print("ok", name)
    except Exception as e:
        failed += 1
        print("FAIL", name + ":", "".join(traceback.format_exception_only(type(e), e)).strip())
print("checked", len(os.listdir(root)), "models,", failed, "failed")
sys.exit(1 if failed else 0)
"#;

/// Runs the check over `root`, failing the test with what Python printed.
fn run_python(python: &Path, root: &Path) {
    let out = Command::new(python)
        .arg("-c")
        .arg(PY_CHECK)
        .arg(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ONNX Runtime disagrees:\n{}\n{}",
        stdout
            .lines()
            .filter(|l| !l.starts_with("ok "))
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", stdout.lines().last().unwrap_or(""));
    let cases = std::fs::read_dir(root).map(|d| d.count()).unwrap_or(0);
    let oks = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(oks, cases, "{stdout}");
}

/// A fresh folder for a test's cases.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ms-onnx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// A `.npy` file (version 1.0, C order, little-endian) of a host tensor.
fn npy(t: &Tensor) -> Vec<u8> {
    let (descr, data): (&str, Vec<u8>) = match t.dtype() {
        DType::F32 => (
            "<f4",
            bytes(t.to_vec::<f32>(), |x| x.to_le_bytes().to_vec()),
        ),
        DType::F64 => (
            "<f8",
            bytes(t.to_vec::<f64>(), |x| x.to_le_bytes().to_vec()),
        ),
        DType::I32 => (
            "<i4",
            bytes(t.to_vec::<i32>(), |x| x.to_le_bytes().to_vec()),
        ),
        DType::I64 => (
            "<i8",
            bytes(t.to_vec::<i64>(), |x| x.to_le_bytes().to_vec()),
        ),
        DType::Bool => ("|b1", bytes(t.to_vec::<bool>(), |x| vec![u8::from(x)])),
        other => panic!("no .npy for {other}"),
    };
    let shape: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    let shape = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

fn bytes<T>(v: Option<Vec<T>>, f: impl Fn(T) -> Vec<u8>) -> Vec<u8> {
    v.expect("a host tensor").into_iter().flat_map(f).collect()
}

/// Deterministic test data: floats in [-2, 2), integers in [-3, 3], random bools.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn tensor(&mut self, dtype: DType, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let data = match dtype {
            DType::F32 => {
                HostBuffer::F32((0..n).map(|_| (self.next() * 4.0 - 2.0) as f32).collect())
            }
            DType::F64 => HostBuffer::F64((0..n).map(|_| self.next() * 4.0 - 2.0).collect()),
            DType::I32 => HostBuffer::I32((0..n).map(|_| (self.next() * 7.0) as i32 - 3).collect()),
            DType::I64 => HostBuffer::I64((0..n).map(|_| (self.next() * 7.0) as i64 - 3).collect()),
            DType::Bool => HostBuffer::Bool((0..n).map(|_| self.next() < 0.5).collect()),
            other => panic!("no test data of {other}"),
        };
        Tensor::from_host(data, shape).expect("a tensor")
    }
}

/// Every op type in a graph and its subgraphs.
fn op_types(g: &pb::GraphProto, out: &mut BTreeSet<String>) {
    for n in &g.node {
        out.insert(n.op_type().to_string());
        for a in &n.attribute {
            if let Some(sub) = &a.g {
                op_types(sub, out);
            }
        }
    }
}

/// One graph written in the IR's text form, run by MindScript's executor and exported.
struct IrCase {
    name: &'static str,
    ir: String,
    /// Opsets to export at.
    opsets: &'static [i64],
    /// ONNX operators the model must use.
    ops: &'static [&'static str],
}

fn case(name: &'static str, ir: &str, ops: &'static [&'static str]) -> IrCase {
    IrCase {
        name,
        ir: ir.to_string(),
        opsets: &[17],
        ops,
    }
}

/// The size a symbolic dim gets in the test data.
const SYM_SIZE: usize = 3;

/// Writes a case folder: the model at `opset`, inputs and MindScript's outputs. Gives the
/// primitives the graph uses.
fn write_ir_case(root: &Path, c: &IrCase, opset: i64, seed: u64) -> BTreeSet<Prim> {
    let g = ir::graph::parse(&c.ir).unwrap_or_else(|e| panic!("{}: {e}\n{}", c.name, c.ir));
    ir::verify(&g).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let mut rng = Lcg(seed);
    let mut inputs = Vec::new();
    let mut roles = Vec::new();
    for &v in g.inputs() {
        match g.ty(v) {
            Type::Token => roles.push(InputRole::Token),
            Type::Tensor(t) => {
                let dims: Vec<usize> = t
                    .shape
                    .dims()
                    .iter()
                    .map(|d| d.known().unwrap_or(SYM_SIZE))
                    .collect();
                roles.push(InputRole::Input(format!("in{}", inputs.len())));
                inputs.push(rng.tensor(t.dtype, &dims));
            }
        }
    }
    let outputs: Vec<OutputRole> = g
        .outputs()
        .iter()
        .enumerate()
        .map(|(k, &v)| match g.ty(v) {
            Type::Token => OutputRole::Token,
            Type::Tensor(_) => OutputRole::Output(format!("out{k}")),
        })
        .collect();
    let mut printed: Vec<(Tensor, ir::graph::Span)> = Vec::new();
    let results = devices::schedule::run(&g, &CpuDevice::new(), &inputs, &mut printed)
        .unwrap_or_else(|e| panic!("{}: MindScript cannot run it: {e:?}", c.name));
    let spec = ExportSpec {
        opset,
        inputs: roles,
        outputs,
        doc: String::new(),
    };
    let bytes = onnx::export(&g, &spec).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let model = pb::ModelProto::decode(&bytes[..]).expect("the model decodes");
    let mut ops = BTreeSet::new();
    op_types(model.graph.as_ref().expect("a graph"), &mut ops);
    for want in c.ops {
        assert!(ops.contains(*want), "{}: no {want} in {ops:?}", c.name);
    }
    let dir = root.join(format!("{}_opset{opset}", c.name));
    std::fs::create_dir_all(&dir).expect("a case folder");
    std::fs::write(dir.join("model.onnx"), &bytes).expect("written");
    for (k, t) in inputs.iter().enumerate() {
        std::fs::write(dir.join(format!("in{k}.npy")), npy(t)).expect("written");
    }
    for (k, t) in results.iter().enumerate() {
        let host = t.to_host().expect("a host tensor");
        std::fs::write(dir.join(format!("out{k}.npy")), npy(&host)).expect("written");
    }
    g.walk(g.body())
        .into_iter()
        .filter_map(|n| match &g.node(n).kind {
            ir::graph::NodeKind::Prim(op) => Some(op.prim()),
            _ => None,
        })
        .collect()
}

/// A graph of one unary op on `dt[3, 4]` (an argument kept in the op's domain).
fn unary_case(op: ir::UnaryOp, dt: DType) -> String {
    use ir::UnaryOp::*;
    let out = match op.kind() {
        ir::UnaryKind::Predicate => DType::Bool,
        _ => dt,
    };
    let domain = if matches!(op, Log | Log1p | Sqrt | Rsqrt) {
        format!(
            "  %a: {dt}[3, 4] = abs %x\n  %h: {dt}[] = full {{shape: [], dtype: {dt}, value: 0.5}}\n  \
             %d: {dt}[3, 4] = add %a, %h\n"
        )
    } else {
        format!("  %d: {dt}[3, 4] = stop_gradient %x\n")
    };
    format!(
        "graph @u(%x: {dt}[3, 4]) -> ({out}[3, 4]) {{\n{domain}  %y: {out}[3, 4] = {} %d\n  \
         yield %y\n}}\n",
        op.name()
    )
}

/// A graph of one binary op on `dt[3, 4]` and `dt[4]` (a divisor kept from zero).
fn binary_case(op: ir::BinaryOp, dt: DType) -> String {
    use ir::BinaryOp::*;
    let pre = match op {
        Div | Rem | FloorDiv => format!(
            "  %z: {dt}[] = full {{shape: [], dtype: {dt}, value: 0.0}}\n  \
             %one: {dt}[] = full {{shape: [], dtype: {dt}, value: 1.0}}\n  \
             %neg: bool[4] = lt %b, %z\n  %bm: {dt}[4] = sub %b, %one\n  \
             %bp: {dt}[4] = add %b, %one\n  %e: {dt}[4] = select %neg, %bm, %bp\n  \
             %c: {dt}[3, 4] = stop_gradient %a\n"
        ),
        Pow => format!(
            "  %h: {dt}[] = full {{shape: [], dtype: {dt}, value: 1.0}}\n  \
             %aa: {dt}[3, 4] = abs %a\n  %c: {dt}[3, 4] = add %aa, %h\n  %e: {dt}[4] = abs %b\n"
        ),
        _ => "  %c: DT[3, 4] = stop_gradient %a\n  %e: DT[4] = stop_gradient %b\n"
            .replace("DT", dt.name()),
    };
    format!(
        "graph @b(%a: {dt}[3, 4], %b: {dt}[4]) -> ({dt}[3, 4]) {{\n{pre}  %y: {dt}[3, 4] = {} \
         %c, %e\n  yield %y\n}}\n",
        op.name()
    )
}

fn ir_cases() -> Vec<IrCase> {
    let mut cases = Vec::new();
    for &op in ir::UnaryOp::ALL {
        let dts: &[DType] = match op.kind() {
            ir::UnaryKind::Float => &[DType::F32, DType::F64],
            ir::UnaryKind::Numeric => &[DType::F32, DType::I64, DType::I32],
            ir::UnaryKind::Logical => &[DType::Bool],
            ir::UnaryKind::Predicate => &[DType::F32, DType::I64],
        };
        for &dt in dts {
            let name: &'static str =
                Box::leak(format!("unary_{}_{dt}", op.name()).into_boxed_str());
            let opsets: &'static [i64] = if op == ir::UnaryOp::Gelu {
                &[17, 20]
            } else {
                &[17]
            };
            cases.push(IrCase {
                name,
                ir: unary_case(op, dt),
                opsets,
                ops: &[],
            });
        }
    }
    for &op in ir::BinaryOp::ALL {
        let dts: &[DType] = match op {
            ir::BinaryOp::And | ir::BinaryOp::Or => &[DType::Bool],
            ir::BinaryOp::Div => &[DType::F32, DType::F64],
            ir::BinaryOp::Rem | ir::BinaryOp::FloorDiv => &[DType::F32, DType::I64, DType::I32],
            _ => &[DType::F32, DType::I64],
        };
        for &dt in dts {
            let name: &'static str =
                Box::leak(format!("binary_{}_{dt}", op.name()).into_boxed_str());
            let mut ir = binary_case(op, dt);
            if dt == DType::Bool {
                ir = format!(
                    "graph @b(%a: bool[3, 4], %b: bool[4]) -> (bool[3, 4]) {{\n  %y: bool[3, 4] = \
                     {} %a, %b\n  yield %y\n}}\n",
                    op.name()
                );
            }
            cases.push(IrCase {
                name,
                ir,
                opsets: &[17],
                ops: &[],
            });
        }
    }
    for &op in ir::CmpOp::ALL {
        for dt in [DType::F32, DType::I64, DType::Bool] {
            let name: &'static str =
                Box::leak(format!("compare_{}_{dt}", op.name()).into_boxed_str());
            cases.push(IrCase {
                name,
                ir: format!(
                    "graph @c(%a: {dt}[3, 4], %b: {dt}[4]) -> (bool[3, 4]) {{\n  %y: bool[3, 4] = \
                     {} %a, %b\n  yield %y\n}}\n",
                    op.name()
                ),
                opsets: &[17],
                ops: &[],
            });
        }
    }
    for &op in ir::ReduceOp::ALL {
        for (dt, odt) in [
            (DType::F32, DType::F32),
            (DType::I64, DType::I64),
            (
                DType::Bool,
                if matches!(op, ir::ReduceOp::Sum | ir::ReduceOp::Prod) {
                    DType::I64
                } else {
                    DType::Bool
                },
            ),
        ] {
            let name: &'static str =
                Box::leak(format!("reduce_{}_{dt}", op.name()).into_boxed_str());
            cases.push(IrCase {
                name,
                ir: format!(
                    "graph @r(%x: {dt}[2, 3, 4]) -> ({odt}[2, 4], {odt}[1, 3, 1], {odt}[]) {{\n  \
                     %a: {odt}[2, 4] = {op} %x {{axes: [1], keepdims: false}}\n  \
                     %b: {odt}[1, 3, 1] = {op} %x {{axes: [0, 2], keepdims: true}}\n  \
                     %c: {odt}[] = {op} %x {{axes: [0, 1, 2], keepdims: false}}\n  \
                     yield %a, %b, %c\n}}\n",
                    op = op.name()
                ),
                opsets: &[13, 17, 18],
                ops: &[],
            });
        }
    }
    for &op in ir::ArgOp::ALL {
        for dt in [DType::F32, DType::I32, DType::Bool] {
            let name: &'static str = Box::leak(format!("arg_{}_{dt}", op.name()).into_boxed_str());
            cases.push(IrCase {
                name,
                ir: format!(
                    "graph @a(%x: {dt}[3, 4]) -> (i64[3], i64[1, 4]) {{\n  \
                     %a: i64[3] = {op} %x {{axis: 1, keepdims: false}}\n  \
                     %b: i64[1, 4] = {op} %x {{axis: 0, keepdims: true}}\n  yield %a, %b\n}}\n",
                    op = op.name()
                ),
                opsets: &[17],
                ops: &[],
            });
        }
    }
    cases.extend([
        case(
            "select",
            "graph @s(%c: bool[3, 4], %a: f32[3, 4], %b: f32[4], %i: i64[3, 4], %j: i64[], \
             %p: bool[3, 4], %q: bool[3, 4]) -> (f32[3, 4], i64[3, 4], bool[3, 4]) {
  %x: f32[3, 4] = select %c, %a, %b
  %y: i64[3, 4] = select %c, %i, %j
  %z: bool[3, 4] = select %c, %p, %q
  yield %x, %y, %z
}",
            &["Where"],
        ),
        case(
            "matmul",
            "graph @m(%a: f32[3, 4], %b: f32[4, 5], %c: f32[2, 3, 4], %d: f64[2, 3], %e: f64[3, 2], \
             %f: f32[2, 1, 3, 4], %g: f32[3, 4, 2]) -> (f32[3, 5], f32[2, 3, 5], f64[2, 2], f32[2, 3, 3, 2]) {
  %x: f32[3, 5] = matmul %a, %b
  %y: f32[2, 3, 5] = matmul %c, %b
  %z: f64[2, 2] = matmul %d, %e
  %w: f32[2, 3, 3, 2] = matmul %f, %g
  yield %x, %y, %z, %w
}",
            &["MatMul"],
        ),
        case(
            "matmul_i64",
            "graph @m(%a: i64[3, 4], %b: i64[4, 2]) -> (i64[3, 2]) {
  %x: i64[3, 2] = matmul %a, %b
  yield %x
}",
            &["MatMul"],
        ),
        case(
            "reshape_transpose_broadcast",
            "graph @r(%x: f32[3, 4], %v: f32[4], %c: i64[3, 1], %t: f32[2, 3, 4]) -> (f32[2, 6], f32[12], \
             f32[2, 2, 3], f32[3, 4], i64[2, 3, 5], f32[4, 2, 3], f32[]) {
  %a: f32[2, 6] = reshape %x {shape: [2, 6]}
  %b: f32[12] = reshape %x {shape: [12]}
  %c2: f32[2, 2, 3] = reshape %b {shape: [2, 2, 3]}
  %d: f32[3, 4] = broadcast %v {shape: [3, 4]}
  %e: i64[2, 3, 5] = broadcast %c {shape: [2, 3, 5]}
  %f: f32[4, 2, 3] = transpose %t {perm: [2, 0, 1]}
  %one: f32[1, 1] = slice %x {dims: [(1, 1, 1), (2, 1, 1)]}
  %g: f32[] = reshape %one {shape: []}
  yield %a, %b, %c2, %d, %e, %f, %g
}",
            &["Reshape", "Expand", "Transpose"],
        ),
        case(
            "slice",
            "graph @s(%x: f32[5, 6], %y: i64[7]) -> (f32[2, 3], f32[5, 6], f32[3, 2], i64[3], i64[2], f32[0, 6]) {
  %a: f32[2, 3] = slice %x {dims: [(1, 2, 1), (5, 3, -2)]}
  %b: f32[5, 6] = slice %x {dims: [(4, 5, -1), (0, 6, 1)]}
  %c: f32[3, 2] = slice %x {dims: [(0, 3, 2), (1, 2, 3)]}
  %d: i64[3] = slice %y {dims: [(6, 3, -3)]}
  %e: i64[2] = slice %y {dims: [(2, 2, -2)]}
  %f: f32[0, 6] = slice %x {dims: [(3, 0, 1), (0, 6, 1)]}
  yield %a, %b, %c, %d, %e, %f
}",
            &["Slice"],
        ),
        case(
            "concat",
            "graph @c(%a: f32[2, 3], %b: f32[1, 3], %c: f32[2, 2], %i: i64[2], %j: i64[3]) -> (f32[5, 3], f32[2, 8], i64[5]) {
  %x: f32[5, 3] = concat %a, %b, %a {axis: 0}
  %y: f32[2, 8] = concat %a, %c, %a {axis: 1}
  %z: i64[5] = concat %i, %j {axis: 0}
  yield %x, %y, %z
}",
            &["Concat"],
        ),
        case(
            "pad",
            "graph @p(%x: f32[2, 3], %i: i64[4], %n: f32[1, 2, 2, 2]) -> (f32[3, 5], i64[7], f32[1, 2, 4, 4]) {
  %a: f32[3, 5] = pad %x {pads: [(1, 0), (0, 2)], value: -1.5}
  %b: i64[7] = pad %i {pads: [(2, 1)], value: 7.0}
  %c: f32[1, 2, 4, 4] = pad %n {pads: [(0, 0), (0, 0), (1, 1), (1, 1)], value: 0.0}
  yield %a, %b, %c
}",
            &["Pad"],
        ),
        case(
            "gather",
            "graph @g(%x: f32[5, 3], %i: i64[2, 2], %y: f32[3, 5], %j: i32[4], %k: i64[]) -> (f32[2, 2, 3], f32[3, 4], f32[3]) {
  %a: f32[2, 2, 3] = gather %x, %i {axis: 0}
  %b: f32[3, 4] = gather %y, %j {axis: 1}
  %c: f32[3] = gather %x, %k {axis: 0}
  yield %a, %b, %c
}",
            &["Gather"],
        ),
        IrCase {
            name: "scatter_add",
            ir: "graph @s(%x: f32[5, 3], %i: i64[4], %u: f32[4, 3], %y: f32[3, 5], %j: i64[2, 2], %v: f32[3, 2, 2]) -> (f32[5, 3], f32[3, 5]) {
  %a: f32[5, 3] = scatter_add %x, %i, %u {axis: 0}
  %b: f32[3, 5] = scatter_add %y, %j, %v {axis: 1}
  yield %a, %b
}"
            .into(),
            opsets: &[16, 17, 21],
            ops: &["ScatterND"],
        },
        case(
            "conv2d",
            "graph @c(%x: f32[2, 3, 7, 7], %w: f32[4, 3, 3, 3], %g: f32[1, 4, 6, 6], %v: f32[6, 2, 3, 3]) -> (f32[2, 4, 7, 7], f32[2, 4, 2, 2], f32[1, 6, 4, 4]) {
  %a: f32[2, 4, 7, 7] = conv2d %x, %w {stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1}
  %b: f32[2, 4, 2, 2] = conv2d %x, %w {stride: [2, 2], padding: [0, 0], dilation: [2, 2], groups: 1}
  %c: f32[1, 6, 4, 4] = conv2d %g, %v {stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 2}
  yield %a, %b, %c
}",
            &["Conv"],
        ),
        case(
            "pool2d",
            "graph @p(%x: f32[2, 3, 6, 6]) -> (f32[2, 3, 3, 3], f32[2, 3, 6, 6], f32[2, 3, 3, 3]) {
  %a: f32[2, 3, 3, 3] = max_pool2d %x {window: [2, 2], stride: [2, 2], padding: [0, 0]}
  %b: f32[2, 3, 6, 6] = max_pool2d %x {window: [3, 3], stride: [1, 1], padding: [1, 1]}
  %c: f32[2, 3, 3, 3] = avg_pool2d %x {window: [3, 3], stride: [2, 2], padding: [1, 1]}
  yield %a, %b, %c
}",
            &["MaxPool", "AveragePool"],
        ),
        case(
            "cast",
            "graph @c(%x: f32[3, 4], %i: i64[3, 4], %b: bool[3, 4]) -> (i64[3, 4], i32[3, 4], bool[3, 4], f64[3, 4], f32[3, 4], f32[3, 4], f32[3, 4]) {
  %a: i64[3, 4] = cast %x {dtype: i64}
  %c: i32[3, 4] = cast %x {dtype: i32}
  %d: bool[3, 4] = cast %i {dtype: bool}
  %e: f64[3, 4] = cast %x {dtype: f64}
  %f: f32[3, 4] = cast %i {dtype: f32}
  %g: f32[3, 4] = cast %b {dtype: f32}
  %h: f32[3, 4] = cast %x {dtype: f32}
  yield %a, %c, %d, %e, %f, %g, %h
}",
            &["Cast"],
        ),
        case(
            "iota_full",
            "graph @i(%x: f32[B, 3]) -> (i64[3, 4], f32[2, 3], i32[5], f32[B, 3], f32[3, 4], f32[], bool[2], i64[B, 2]) {
  %a: i64[3, 4] = iota {shape: [3, 4], axis: 1, dtype: i64}
  %b: f32[2, 3] = iota {shape: [2, 3], axis: 0, dtype: f32}
  %c: i32[5] = iota {shape: [5], axis: 0, dtype: i32}
  %d: f32[B, 3] = iota {shape: [B, 3], axis: 0, dtype: f32}
  %e: f32[B, 3] = add %d, %x
  %f: f32[3, 4] = full {shape: [3, 4], dtype: f32, value: 2.5}
  %g: f32[] = full {shape: [], dtype: f32, value: -1.0}
  %h: bool[2] = full {shape: [2], dtype: bool, value: 1.0}
  %k: i64[B, 2] = full {shape: [B, 2], dtype: i64, value: 7.0}
  yield %a, %b, %c, %e, %f, %g, %h, %k
}",
            &["Range", "ConstantOfShape", "Shape"],
        ),
        case(
            "symbolic_dims",
            "graph @s(%x: f32[B, 2, 3], %v: f32[4], %y: f32[N, B]) -> (f32[B, 6], f32[B, 4], f32[B, N], f32[3, B, 2]) {
  %a: f32[B, 6] = reshape %x {shape: [B, 6]}
  %b: f32[B, 4] = broadcast %v {shape: [B, 4]}
  %c: f32[B, N] = transpose %y {perm: [1, 0]}
  %d: f32[3, B, 2] = transpose %x {perm: [2, 0, 1]}
  yield %a, %b, %c, %d
}",
            &["Shape", "Gather", "Concat", "Reshape", "Expand"],
        ),
        case(
            "print_stop_gradient_assert",
            "graph @p(%t: token, %x: f32[3]) -> (token, f32[3], f32[3]) {
  %t1: token, %y: f32[3] = print %t, %x
  %z: f32[3] = stop_gradient %y
  %e: f32[3] = exp %z
  %zero: f32[] = full {shape: [], dtype: f32, value: 0.0}
  %s: f32[] = sum %e {axes: [0], keepdims: false}
  %ok: bool[] = gt %s, %zero
  %t2: token = assert %t1, %ok {message: \"positive\"}
  yield %t2, %y, %e
}",
            &["Identity", "Exp"],
        ),
        case(
            "fused",
            "graph @f(%x: f32[2, 3], %b: f32[3]) -> (f32[2, 3], f32[2]) {
  %y: f32[2, 3], %s: f32[2] = fused %x, %b body(%p: f32[2, 3], %q: f32[3]) {
    %a: f32[2, 3] = add %p, %q
    %r: f32[2, 3] = relu %a
    %m: f32[2] = sum %r {axes: [1], keepdims: false}
    yield %r, %m
  }
  yield %y, %s
}",
            &["Relu", "ReduceSum"],
        ),
        case(
            "if",
            "graph @i(%t: token, %x: f32[3], %y: f32[3]) -> (token, f32[3], f32[]) {
  %s: f32[] = sum %x {axes: [0], keepdims: false}
  %zero: f32[] = full {shape: [], dtype: f32, value: 0.0}
  %c: bool[] = gt %s, %zero
  %t1: token, %r: f32[3], %q: f32[] = if %c, %t, %x then(%tt: token, %a: f32[3]) {
    %t2: token, %pa: f32[3] = print %tt, %a
    %two: f32[] = full {shape: [], dtype: f32, value: 2.0}
    %m: f32[3] = mul %pa, %two
    yield %t2, %m, %two
  } else(%te: token, %b: f32[3]) {
    %n: f32[3] = sub %b, %y
    yield %te, %n, %s
  }
  yield %t1, %r, %q
}",
            &["If"],
        ),
        case(
            "for",
            "graph @f(%x: f32[3]) -> (f32[3], i32[], f32[3]) {
  %lo: i64[] = full {shape: [], dtype: i64, value: 1.0}
  %hi: i64[] = full {shape: [], dtype: i64, value: 8.0}
  %st: i64[] = full {shape: [], dtype: i64, value: 3.0}
  %acc: f32[3] = for %lo, %hi, %st, %x body(%i: i64[], %a: f32[3]) {
    %fi: f32[] = cast %i {dtype: f32}
    %n: f32[3] = add %a, %fi
    yield %n
  }
  %l2: i32[] = full {shape: [], dtype: i32, value: 10.0}
  %h2: i32[] = full {shape: [], dtype: i32, value: 0.0}
  %s2: i32[] = full {shape: [], dtype: i32, value: -3.0}
  %k: i32[] = full {shape: [], dtype: i32, value: 0.0}
  %tot: i32[] = for %l2, %h2, %s2, %k body(%j: i32[], %b: i32[]) {
    %m: i32[] = add %b, %j
    yield %m
  }
  %h3: i64[] = full {shape: [], dtype: i64, value: 0.0}
  %none: f32[3] = for %lo, %h3, %st, %x body(%i3: i64[], %c: f32[3]) {
    %d: f32[3] = neg %c
    yield %d
  }
  yield %acc, %tot, %none
}",
            &["Loop"],
        ),
        case(
            "while",
            "graph @w(%x: f32[3]) -> (f32[3], i64[]) {
  %a: f32[3] = abs %x
  %h: f32[] = full {shape: [], dtype: f32, value: 0.5}
  %p: f32[3] = add %a, %h
  %k: i64[] = full {shape: [], dtype: i64, value: 0.0}
  %r: f32[3], %n: i64[] = while %p, %k cond(%c: f32[3], %ci: i64[]) {
    %s: f32[] = sum %c {axes: [0], keepdims: false}
    %lim: f32[] = full {shape: [], dtype: f32, value: 100.0}
    %go: bool[] = lt %s, %lim
    yield %go, %c, %ci
  } body(%b: f32[3], %bi: i64[]) {
    %two: f32[] = full {shape: [], dtype: f32, value: 2.0}
    %m: f32[3] = mul %b, %two
    %one: i64[] = full {shape: [], dtype: i64, value: 1.0}
    %nx: i64[] = add %bi, %one
    yield %m, %nx
  }
  yield %r, %n
}",
            &["Loop"],
        ),
    ]);
    cases
}

/// The primitives ONNX cannot express: random draws (MindScript's own generator) and
/// gradient primitives (models are for inference).
fn unexportable(p: Prim) -> bool {
    matches!(
        p,
        Prim::Random(_)
            | Prim::Conv2dBackwardInput
            | Prim::Conv2dBackwardFilter
            | Prim::Pool2dBackward(_)
    )
}

/// Every mappable primitive, at every opset its case names, exported and run by ONNX
/// Runtime; the cases together use every primitive of the table that is not unexportable.
#[test]
fn every_primitive_runs_in_onnx_runtime() {
    let root = fresh_dir("prims");
    let mut used = BTreeSet::new();
    for (k, c) in ir_cases().iter().enumerate() {
        for &opset in c.opsets {
            used.extend(write_ir_case(&root, c, opset, 1000 + k as u64));
        }
    }
    let missing: Vec<&str> = Prim::all()
        .iter()
        .filter(|p| !unexportable(**p) && !used.contains(*p))
        .map(|p| p.name())
        .collect();
    assert!(missing.is_empty(), "no export case uses {missing:?}");
    if let Some(py) = python() {
        run_python(&py, &root);
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// A MindScript case: `src` defines `f` and its inputs `in0`, `in1`, ...; `f` is exported
/// at the types `args` (or its annotations) and its output on the inputs (computed
/// eagerly) is the reference.
struct MsCase {
    name: &'static str,
    src: &'static str,
    inputs: usize,
    args: Option<&'static str>,
    ops: &'static [&'static str],
}

fn write_ms_case(root: &Path, c: &MsCase) -> pb::ModelProto {
    let dir = root.join(c.name);
    std::fs::create_dir_all(&dir).expect("a case folder");
    let mut s = Session::with_options(Options {
        capture_output: true,
        ..Options::default()
    });
    let mut src = c.src.to_string();
    let ins: Vec<String> = (0..c.inputs).map(|k| format!("in{k}")).collect();
    for k in 0..c.inputs {
        src.push_str(&format!(
            "\nsave_npy(in{k}, \"{}/in{k}.npy\")",
            dir.display()
        ));
    }
    src.push_str(&format!(
        "\nsave_npy(f({}), \"{}/out0.npy\")\n",
        ins.join(", "),
        dir.display()
    ));
    let o = s.eval(&src);
    assert!(!o.has_errors(), "{}: {:?}", c.name, o.diagnostics);
    let model = s
        .export_onnx(
            "f",
            &OnnxOptions {
                args: c.args.map(str::to_string),
                ..OnnxOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
    std::fs::write(dir.join("model.onnx"), &model.bytes).expect("written");
    let m = pb::ModelProto::decode(&model.bytes[..]).expect("the model decodes");
    let mut ops = BTreeSet::new();
    op_types(m.graph.as_ref().expect("a graph"), &mut ops);
    for want in c.ops {
        assert!(ops.contains(*want), "{}: no {want} in {ops:?}", c.name);
    }
    m
}

/// Functions written in MindScript, staged by `Session::export_onnx` (control flow
/// staged from the language, symbolic batch dims, captured globals, `print`), exported and
/// run by ONNX Runtime at other sizes than they were staged at.
#[test]
fn staged_functions_run_in_onnx_runtime() {
    let root = fresh_dir("functions");
    let cases = [
        MsCase {
            name: "elementwise_chain",
            src: "seed(1)\nfn f(x: f32[B, 5], y: f32[5]) { tanh(x * y + 1.0) - sigmoid(x) / 2.0 }\n\
                  let in0 = randn([7, 5])\nlet in1 = randn([5])",
            inputs: 2,
            args: None,
            ops: &["Tanh", "Sigmoid"],
        },
        MsCase {
            name: "staged_if",
            src: "seed(2)\nfn f(x) { if sum(x) > 0.0 { x * 2.0 } else { -x } }\n\
                  let in0 = randn([4])",
            inputs: 1,
            args: Some("f32[4]"),
            ops: &["If"],
        },
        MsCase {
            name: "staged_while",
            src: "fn f(x) {\n  let y = abs(x) + 0.5\n  while sum(y) < 50.0 { y = y * 1.5 }\n  y\n}\n\
                  seed(3)\nlet in0 = randn([3])",
            inputs: 1,
            args: Some("f32[3]"),
            ops: &["Loop"],
        },
        MsCase {
            name: "staged_for",
            src: "fn f(x) {\n  let acc = x\n  for i in 0..5 { acc = acc * 0.5 + x }\n  acc\n}\n\
                  seed(4)\nlet in0 = randn([2, 3])",
            inputs: 1,
            args: Some("f32[2, 3]"),
            ops: &[],
        },
        MsCase {
            name: "captured_global_and_print",
            src: "seed(5)\nlet w = randn([4, 3])\n\
                  fn f(x: f32[N, 4]) { let h = x @ w\n print(\"h\", h)\n softmax(h) }\n\
                  let in0 = randn([2, 4])",
            inputs: 1,
            args: Some("f32[2, 4]"),
            ops: &["MatMul", "Exp"],
        },
        MsCase {
            name: "indexing_and_reductions",
            src: "seed(6)\nfn f(x: f32[6, 5], i: i64[3]) {\n  let g = x[i]\n  let s = x[1:5:2, ::-1]\n  \
                  concat((max(g, axis: 0, keepdims: true), s), axis: 0) + f32(argmax(x, axis: 0))\n}\n\
                  let in0 = randn([6, 5])\nlet in1 = [4, -1, 0]",
            inputs: 2,
            args: None,
            ops: &["Gather", "Slice", "ReduceMax", "ArgMax", "Concat"],
        },
    ];
    // The builtin `export_onnx` writes a model of `f` at its example arguments.
    let dir = root.join("builtin_export_onnx");
    std::fs::create_dir_all(&dir).expect("a case folder");
    let mut s = Session::with_options(Options {
        capture_output: true,
        ..Options::default()
    });
    let o = s.eval(&format!(
        "seed(7)\nlet w = randn([5, 2])\nfn f(x, k) {{ relu(x @ w) * f32(k) }}\n\
         let in0 = randn([3, 5])\nexport_onnx(f, (in0, 4), \"{d}/model.onnx\", opset: 18)\n\
         save_npy(in0, \"{d}/in0.npy\")\nsave_npy(f(in0, 4), \"{d}/out0.npy\")",
        d = dir.display()
    ));
    assert!(!o.has_errors(), "{:?}", o.diagnostics);
    let bytes = std::fs::read(dir.join("model.onnx")).expect("written");
    let m = pb::ModelProto::decode(&bytes[..]).expect("decodes");
    assert_eq!(m.opset_import[0].version(), 18);
    let g = m.graph.as_ref().expect("a graph");
    // The static int `k` is a constant of the graph, not an input.
    assert_eq!(g.input.iter().map(|i| i.name()).collect::<Vec<_>>(), ["x"]);
    assert_eq!(input_dims(&g.input[0]), ["3", "5"]);
    // Inside a staged function it would write once, when staged: refused.
    let o = s.eval(&format!(
        "@jit\nfn g(x) {{ export_onnx(f, (x, 1), \"{d}/no.onnx\")\n x }}\ng(in0)",
        d = dir.display()
    ));
    assert!(
        o.diagnostics.iter().any(|d| d.code == "E0913"),
        "{:?}",
        o.diagnostics
    );
    let o = s.eval(&format!(
        "fn noisy(x) {{ x + randn([5]) }}\nexport_onnx(noisy, randn([5]), \"{d}/no.onnx\")",
        d = dir.display()
    ));
    let d = o.diagnostics.first().expect("an error");
    assert!(
        d.code == "E0909" && d.message.contains("random_normal"),
        "{d:?}"
    );
    assert!(!dir.join("no.onnx").exists());
    for c in &cases {
        let m = write_ms_case(&root, c);
        if c.name == "elementwise_chain" {
            // The symbolic dim of the annotation is a dim_param of the model's input.
            let g = m.graph.as_ref().expect("a graph");
            let dims = input_dims(&g.input[0]);
            assert_eq!(dims, ["B", "5"], "{:?}", g.input[0]);
            assert_eq!(
                g.input.iter().map(|i| i.name()).collect::<Vec<_>>(),
                ["x", "y"]
            );
        }
    }
    if let Some(py) = python() {
        run_python(&py, &root);
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// The dims of an input: sizes, or dim_params by name.
fn input_dims(v: &pb::ValueInfoProto) -> Vec<String> {
    use pb::tensor_shape_proto::dimension::Value as DV;
    let Some(pb::type_proto::Value::TensorType(t)) =
        v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        panic!("not a tensor: {v:?}")
    };
    t.shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(DV::DimValue(n)) => n.to_string(),
                    Some(DV::DimParam(p)) => p.clone(),
                    None => "?".into(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a sample with a short configuration, then saves its parameters, computes its
/// model's outputs on `inputs` and exports `name` with the checkpoint baked in.
fn write_sample_case(
    root: &Path,
    case: &str,
    sample: &str,
    script_args: &[&str],
    extra: &str,
    name: &str,
    args: &str,
) -> pb::ModelProto {
    let (mut s, dir) = support::run_sample(root, case, sample, script_args);
    let ckpt = dir.join("params.safetensors");
    let o = s.eval(
        &extra
            .replace("DIR", &dir.display().to_string())
            .replace("CKPT", &ckpt.display().to_string()),
    );
    assert!(!o.has_errors(), "{case}: {:?}", o.diagnostics);
    let model = s
        .export_onnx(
            name,
            &OnnxOptions {
                args: Some(args.into()),
                params: Some(ckpt),
                ..OnnxOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let _ = std::fs::remove_file(dir.join("params.safetensors"));
    let _ = std::fs::remove_dir_all(dir.join("runs"));
    std::fs::write(dir.join("model.onnx"), &model.bytes).expect("written");
    pb::ModelProto::decode(&model.bytes[..]).expect("the model decodes")
}

/// The samples' models (the MNIST MLP and CNN, the autoencoder, the transformer), each
/// with its parameters baked in from a checkpoint, run by ONNX Runtime on a batch of
/// another size than they were staged at.
#[test]
fn sample_models_run_in_onnx_runtime() {
    let root = fresh_dir("samples");
    let mnist = [
        "--images",
        "REPO/samples/data/mnist/train-images.idx3-ubyte.gz",
        "--labels",
        "REPO/samples/data/mnist/train-labels.idx1-ubyte.gz",
        "--test_images",
        "REPO/samples/data/mnist/t10k-images.idx3-ubyte.gz",
        "--test_labels",
        "REPO/samples/data/mnist/t10k-labels.idx1-ubyte.gz",
        "--epochs",
        "0",
        "--train",
        "64",
    ];
    let mlp = write_sample_case(
        &root,
        "mnist_mlp",
        "mnist_mlp.ms",
        &mnist,
        "save(params, \"CKPT\")\nfn forward(p, x) { nn.mlp(p, x) }\nlet in0 = x_test[0:5]\n\
         save_npy(in0, \"DIR/in0.npy\")\nsave_npy(forward(params, in0), \"DIR/out0.npy\")",
        "forward",
        "f32[B, 784]",
    );
    let g = mlp.graph.as_ref().expect("a graph");
    assert_eq!(input_dims(&g.input[0]), ["B", "784"]);
    let names: BTreeSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    let want: BTreeSet<&str> = [
        "input.w", "input.b", "hidden.w", "hidden.b", "output.w", "output.b",
    ]
    .into();
    assert!(want.is_subset(&names), "{names:?}");
    write_sample_case(
        &root,
        "mnist_cnn",
        "mnist_cnn.ms",
        &[&mnist[..], &["--test", "100"]].concat(),
        "save(params, \"CKPT\")\nlet in0 = x_test[0:3]\n\
         save_npy(in0, \"DIR/in0.npy\")\nsave_npy(forward(params, in0), \"DIR/out0.npy\")",
        "forward",
        "f32[B, 1, 28, 28]",
    );
    write_sample_case(
        &root,
        "autoencoder",
        "autoencoder.ms",
        &["--epochs", "1", "--data", "REPO/samples/data/digits.csv"],
        "save(params, \"CKPT\")\nfn reconstruct(p, x) { decode(p, encode(p, x)) }\n\
         let in0 = xte[0:6]\nsave_npy(in0, \"DIR/in0.npy\")\n\
         save_npy(reconstruct(params, in0), \"DIR/out0.npy\")",
        "reconstruct",
        "f32[B, 64]",
    );
    write_sample_case(
        &root,
        "transformer",
        "transformer.ms",
        &[
            "--steps",
            "2",
            "--generate",
            "0",
            "--context",
            "16",
            "--d_model",
            "32",
            "--data",
            "REPO/samples/data/tiny_text.txt",
        ],
        "save(params, \"CKPT\")\nlet in0 = ids[expand_dims(arange(3) * 16, 1) + arange(16)]\n\
         save_npy(in0, \"DIR/in0.npy\")\nsave_npy(forward(params, in0), \"DIR/out0.npy\")",
        "forward",
        "i64[3, 16]",
    );
    if let Some(py) = python() {
        run_python(&py, &root);
    }
    let _ = std::fs::remove_dir_all(&root);
}

fn export_text(ir: &str, opset: i64) -> Result<Vec<u8>, ExportError> {
    let g = ir::graph::parse(ir).expect("the graph parses");
    let inputs = g
        .inputs()
        .iter()
        .enumerate()
        .map(|(k, &v)| match g.ty(v) {
            Type::Token => InputRole::Token,
            Type::Tensor(_) if k == 1 => InputRole::Key,
            Type::Tensor(_) => InputRole::Input(format!("in{k}")),
        })
        .collect();
    let n = g.outputs().len();
    let outputs = g
        .outputs()
        .iter()
        .enumerate()
        .map(|(k, &v)| match g.ty(v) {
            Type::Token => OutputRole::Token,
            Type::Tensor(_) if k == n - 1 => OutputRole::Key,
            Type::Tensor(_) => OutputRole::Output(format!("out{k}")),
        })
        .collect();
    onnx::export(
        &g,
        &ExportSpec {
            opset,
            inputs,
            outputs,
            doc: String::new(),
        },
    )
}

/// What cannot be exported is an error naming the primitive; the opset is checked.
#[test]
fn unmappable_primitives_are_clear_errors() {
    let random = "graph @r(%t: token, %key: i64[2], %x: f32[3]) -> (token, f32[3], i64[2]) {
  %t1: token, %u: f32[3] = random_normal %t, %key {shape: [3], dtype: f32}
  %y: f32[3] = add %x, %u
  yield %t1, %y, %key
}";
    let e = export_text(random, 17).expect_err("a draw is refused");
    assert!(
        matches!(&e, ExportError::Unmappable { prim, .. } if prim == "random_normal"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("`random_normal` cannot be exported"),
        "{e}"
    );
    let grad = "graph @g(%t: token, %key: i64[2], %dy: f32[1, 2, 3, 3], %w: f32[2, 1, 3, 3]) -> (token, f32[1, 1, 5, 5], i64[2]) {
  %dx: f32[1, 1, 5, 5] = conv2d_backward_input %dy, %w {stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1, input_hw: [5, 5]}
  yield %t, %dx, %key
}";
    let e = export_text(grad, 17).expect_err("a gradient primitive is refused");
    assert!(e.to_string().contains("`conv2d_backward_input`"), "{e}");
    let scatter = "graph @s(%t: token, %key: i64[2], %x: f32[5, 3], %i: i64[4], %u: f32[4, 3]) -> (token, f32[5, 3], i64[2]) {
  %a: f32[5, 3] = scatter_add %x, %i, %u {axis: 0}
  yield %t, %a, %key
}";
    let e = export_text(scatter, 13).expect_err("scatter_add needs opset 16");
    assert_eq!(
        e,
        ExportError::NeedsOpset {
            prim: "scatter_add".into(),
            min: 16,
            opset: 13
        }
    );
    assert!(export_text(scatter, 16).is_ok());
    let e = export_text(scatter, 12).expect_err("opset 12 is not supported");
    assert_eq!(e, ExportError::Opset(12));
    // A symbolic dim that no input carries cannot be sized at run time.
    let unbound = "graph @u(%t: token, %key: i64[2]) -> (token, f32[K], i64[2]) {
  %a: f32[K] = full {shape: [K], dtype: f32, value: 1.0}
  yield %t, %a, %key
}";
    let e = export_text(unbound, 17).expect_err("K is unbound");
    assert_eq!(e, ExportError::UnboundDim("K".into()));
}

/// The model decodes with the expected header, names, initializers and operators, with
/// no Python; the staged function's token and random key are gone.
#[test]
fn exported_protobuf_decodes_with_names_and_params() {
    let mut s = Session::with_options(Options {
        capture_output: true,
        ..Options::default()
    });
    let o = s.eval(
        "import nn\nseed(0)\nlet params = {l1: nn.init_linear(4, 3), l2: nn.init_linear(3, 2)}\n\
         fn forward(p, x) { nn.linear(p.l2, relu(nn.linear(p.l1, x))) }\n\
         fn predict(x: f32[B, 4]) { forward(params, x) }\n\
         fn noisy(x: f32[3]) { x + randn([3]) }",
    );
    assert!(!o.has_errors(), "{:?}", o.diagnostics);
    let m = s
        .export_onnx("predict", &OnnxOptions::default())
        .expect("exported");
    assert_eq!(m.summary.inputs, ["x: f32[B, 4]"]);
    assert_eq!(m.summary.outputs, ["output: f32[B, 2]"]);
    assert_eq!((m.summary.initializers, m.summary.parameters), (4, 23));
    let model = pb::ModelProto::decode(&m.bytes[..]).expect("decodes");
    assert_eq!(model.ir_version(), 8);
    assert_eq!(model.producer_name(), "MindScript");
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(model.opset_import[0].version(), 17);
    let g = model.graph.as_ref().expect("a graph");
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name(), "x");
    assert_eq!(input_dims(&g.input[0]), ["B", "4"]);
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name(), "output");
    assert_eq!(input_dims(&g.output[0]), ["B", "2"]);
    let mut inits: Vec<(&str, Vec<i64>)> = g
        .initializer
        .iter()
        .filter(|t| t.name().starts_with("params."))
        .map(|t| (t.name(), t.dims.clone()))
        .collect();
    inits.sort();
    assert_eq!(
        inits,
        [
            ("params.l1.b", vec![3]),
            ("params.l1.w", vec![4, 3]),
            ("params.l2.b", vec![2]),
            ("params.l2.w", vec![3, 2])
        ]
    );
    let w = g
        .initializer
        .iter()
        .find(|t| t.name() == "params.l1.w")
        .expect("l1.w");
    assert_eq!(w.data_type(), pb::tensor_proto::DataType::Float as i32);
    assert_eq!(w.raw_data().len(), 4 * 3 * 4);
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type()).collect();
    assert_eq!(ops, ["MatMul", "Add", "Relu", "MatMul", "Add", "Identity"]);

    // A checkpoint binds to the first argument; its leaves keep their dotted names.
    let dir = fresh_dir("decode");
    let ckpt = dir.join("p.safetensors");
    let o = s.eval(&format!("save(params, \"{}\")", ckpt.display()));
    assert!(!o.has_errors(), "{:?}", o.diagnostics);
    let m = s
        .export_onnx(
            "forward",
            &OnnxOptions {
                args: Some("f32[2, 4]".into()),
                params: Some(ckpt.clone()),
                opset: 21,
            },
        )
        .expect("exported");
    let model = pb::ModelProto::decode(&m.bytes[..]).expect("decodes");
    assert_eq!(model.ir_version(), 10);
    let g = model.graph.as_ref().expect("a graph");
    let mut names: Vec<&str> = g.initializer.iter().map(|t| t.name()).collect();
    names.sort();
    assert_eq!(names, ["l1.b", "l1.w", "l2.b", "l2.w"]);
    assert_eq!(g.input[0].name(), "x");
    assert_eq!(input_dims(&g.input[0]), ["2", "4"]);

    // Errors: a draw, a wrong number of types, a bad type, no such function.
    let e = s
        .export_onnx("noisy", &OnnxOptions::default())
        .expect_err("a draw");
    assert!(
        e.to_string().contains("`random_normal` cannot be exported"),
        "{e}"
    );
    let e = s
        .export_onnx(
            "forward",
            &OnnxOptions {
                args: Some("f32[2, 4], f32[3]".into()),
                params: Some(ckpt),
                ..OnnxOptions::default()
            },
        )
        .expect_err("one type too many");
    assert!(
        e.to_string()
            .contains("takes 1 argument after the checkpoint"),
        "{e}"
    );
    let e = s
        .export_onnx(
            "predict",
            &OnnxOptions {
                args: Some("f32[2, ".into()),
                ..OnnxOptions::default()
            },
        )
        .expect_err("not a type");
    assert!(e.to_string().contains("is not a list of types"), "{e}");
    let e = s
        .export_onnx("nothing", &OnnxOptions::default())
        .expect_err("no function");
    assert!(
        e.to_string().contains("there is no function `nothing`"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A dim name that is not a symbolic dim of the graph leaves the input's dim unnamed.
#[test]
fn unknown_dims_are_left_unnamed() {
    let g = "graph @u(%t: token, %key: i64[2], %x: f32[?, 3]) -> (token, f32[?, 3], i64[2]) {
  %y: f32[?, 3] = exp %x
  yield %t, %y, %key
}";
    let bytes = export_text(g, 17).expect("exported");
    let model = pb::ModelProto::decode(&bytes[..]).expect("decodes");
    let gp = model.graph.as_ref().expect("a graph");
    assert_eq!(input_dims(&gp.input[0]), ["?", "3"]);
    let _ = Dim::unknown();
}

/// The check of a model with external data, from its path: the checker reads the data
/// file beside it, and ONNX Runtime loads the model from its path.
const PY_EXTERNAL: &str = r#"
import os, sys
import numpy as np
import onnx
import onnxruntime as ort

d = sys.argv[1]
path = os.path.join(d, "model.onnx")
onnx.checker.check_model(path, full_check=True)
so = ort.SessionOptions()
so.log_severity_level = 3
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
feed = {i.name: np.load(os.path.join(d, "in%d.npy" % k)) for k, i in enumerate(sess.get_inputs())}
got = sess.run(None, feed)[0]
want = np.load(os.path.join(d, "out0.npy"))
assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.shape)
assert np.allclose(got, want, rtol=1e-3, atol=1e-5), np.max(np.abs(got - want))
print("ok external data")
"#;

/// `External` data: the initializers of 1 KiB or more go to the data file at 64-byte
/// aligned offsets, the model names it by a plain file name, and ONNX Runtime runs the
/// model from its path; a location that is not a plain file name is refused.
#[test]
fn external_data_runs_in_onnx_runtime() {
    let dir = fresh_dir("external");
    let mut s = Session::with_options(Options {
        capture_output: true,
        ..Options::default()
    });
    let src = format!(
        "seed(12)\nlet w1 = randn([6, 50])\nlet b1 = randn([50])\nlet w2 = randn([50, 8])\n\
         fn f(x: f32[B, 6]) {{ tanh(x @ w1 + b1) @ w2 }}\nlet in0 = randn([3, 6])\n\
         save_npy(in0, \"{d}/in0.npy\")\nsave_npy(f(in0), \"{d}/out0.npy\")",
        d = dir.display()
    );
    let o = s.eval(&src);
    assert!(!o.has_errors(), "{:?}", o.diagnostics);
    let external = onnx::External {
        mode: onnx::ExternalMode::Always,
        location: "model.onnx.data".into(),
        ..onnx::External::default()
    };
    let model = s
        .export_models("f", &OnnxOptions::default(), Some(&external), false)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
        .expect("an ONNX model");
    let data = model.external.clone().expect("an external data file");
    std::fs::write(dir.join("model.onnx"), &model.bytes).expect("written");
    std::fs::write(dir.join("model.onnx.data"), &data).expect("written");
    let m = pb::ModelProto::decode(&model.bytes[..]).expect("decodes");
    let g = m.graph.as_ref().expect("a graph");
    let mut moved = Vec::new();
    for t in &g.initializer {
        if t.data_location == Some(pb::tensor_proto::DataLocation::External as i32) {
            let kv: Vec<(&str, &str)> = t
                .external_data
                .iter()
                .map(|e| (e.key(), e.value()))
                .collect();
            let get = |k: &str| kv.iter().find(|(a, _)| *a == k).map(|(_, v)| *v);
            assert_eq!(get("location"), Some("model.onnx.data"));
            let offset: usize = get("offset").and_then(|v| v.parse().ok()).expect("offset");
            let length: usize = get("length").and_then(|v| v.parse().ok()).expect("length");
            assert_eq!(offset % 64, 0);
            assert!(t.raw_data.is_none());
            let n: usize = t.dims.iter().map(|&d| d as usize).product();
            assert_eq!(length, n * 4);
            moved.push((t.name().to_string(), offset, length));
        } else {
            assert!(
                t.raw_data.as_ref().is_some_and(|r| r.len() < 1024),
                "{}",
                t.name()
            );
        }
    }
    moved.sort();
    assert_eq!(
        moved.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        ["w1", "w2"],
        "the 6 x 50 and 50 x 8 weights move, the 50-element bias stays"
    );
    // The bytes in the data file are the parameters'.
    let o = s.eval(&format!("save_npy(w1, \"{}/w1.npy\")", dir.display()));
    assert!(!o.has_errors());
    let w1 = std::fs::read(dir.join("w1.npy")).expect("w1");
    let (_, off, len) = moved[0];
    assert_eq!(&data[off..off + len], &w1[w1.len() - len..]);
    std::fs::remove_file(dir.join("w1.npy")).expect("removed");
    // Without the flag the same model keeps its parameters inside.
    let inside = s
        .export_onnx("f", &OnnxOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(inside.external.is_none());
    // A location that would leave the model's folder is refused.
    for bad in ["../model.data", "sub/model.data", "..", "", "a\\b"] {
        let at = onnx::External {
            location: bad.into(),
            ..external.clone()
        };
        let r = s.export_models("f", &OnnxOptions::default(), Some(&at), false);
        assert!(
            matches!(&r, Err(e) if e.to_string().contains("plain file name")),
            "{bad:?}: {:?}",
            r.map(|m| m.0.map(|m| m.summary))
        );
    }
    if let Some(py) = python() {
        let out = Command::new(py)
            .arg("-c")
            .arg(PY_EXTERNAL)
            .arg(&dir)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok external data"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
