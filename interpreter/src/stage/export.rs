//! `ms export --onnx` and `export_onnx`: what each input and output of a staged function's
//! graph is in an ONNX model (`io::onnx` does the mapping).
//!
//! A staged graph's inputs are the effect token, the random key, the arguments' tensor
//! leaves and then the captured tensors; its outputs the token, the result's tensor leaves
//! and the new key. In the model the token and the key are dropped, each argument leaf is
//! an input named by its parameter and path (`x`, `batch.0`, `p.l1.w`), a captured tensor
//! is an initializer (named by the global it came from when it is one's leaf:
//! `params.l1.w`), the leaves of the first argument are initializers named by their
//! dotted checkpoint names when a checkpoint is given (`--params`), and the outputs are
//! `output` (one tensor) or `output.0`, `output.w`, ... by the result's structure.

use std::collections::HashMap;

use devices::Tensor;
use ir::graph::Type;
use lang::ast::Name;

use super::jit::{StagedFn, named_input_leaves};
use crate::io::onnx::{Array, ExportSpec, InputRole, OutputRole};
use crate::value::{TensorVal, Value};

/// What was exported, in words, for `ms export` to print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// The model's inputs: name and type (`x: f32[B, 784]`).
    pub inputs: Vec<String>,
    /// The model's outputs: name and type.
    pub outputs: Vec<String>,
    /// The tensors baked in as initializers.
    pub initializers: usize,
    /// Their elements, all together.
    pub parameters: usize,
}

/// The spec of `staged`'s graph: `params` are the function's parameter names (for the
/// arguments after them, `arg2`, ...), `checkpoint` the record that replaces the first
/// argument's leaves as initializers.
pub(crate) fn onnx_spec(
    staged: &StagedFn,
    params: &[Name],
    checkpoint: Option<&Value>,
    opset: i64,
    doc: String,
) -> Result<(ExportSpec, ExportSummary), String> {
    let g = &staged.graph;
    // The arguments' leaves, named.
    let mut leaves: Vec<(String, TensorVal, bool)> = Vec::new();
    for (i, a) in staged.args.iter().enumerate() {
        let pname = params
            .get(i)
            .map_or_else(|| format!("arg{}", i + 1), |n| n.to_string());
        let mut named = Vec::new();
        named_input_leaves(a, &pname, &mut named);
        if i == 0
            && let Some(ckpt) = checkpoint
        {
            let mut from_file = Vec::new();
            named_input_leaves(ckpt, "", &mut from_file);
            let names = |v: &[(String, TensorVal)]| -> Vec<String> {
                v.iter()
                    .map(|(n, t)| format!("{n}: {}{:?}", t.t.dtype(), t.shape()))
                    .collect()
            };
            let (want, have) = (names(&named), names(&from_file));
            let strip = |s: &str| {
                s.strip_prefix(&format!("{pname}."))
                    .or_else(|| s.strip_prefix(pname.as_str()))
                    .unwrap_or(s)
                    .to_string()
            };
            let want: Vec<String> = want.iter().map(|s| strip(s)).collect();
            if want != have {
                return Err(format!(
                    "the checkpoint's tensors do not match the first argument `{pname}` of the \
                     staged function: it has [{}], the function takes [{}]",
                    have.join(", "),
                    want.join(", ")
                ));
            }
            leaves.extend(from_file.into_iter().map(|(n, t)| (n, t, true)));
        } else {
            leaves.extend(named.into_iter().map(|(n, t)| (n, t, false)));
        }
    }
    if leaves.len() != staged.n_args {
        return Err(format!(
            "the staged graph takes {} argument tensors, the call gave {}",
            staged.n_args,
            leaves.len()
        ));
    }
    // Captured tensors, named by the global whose leaf they are.
    let mut global_leaves: HashMap<devices::TensorId, String> = HashMap::new();
    for (gname, v) in &staged.globals_read {
        let mut named = Vec::new();
        named_input_leaves(v, gname, &mut named);
        for (n, t) in named {
            global_leaves.entry(t.t.id()).or_insert(n);
        }
    }
    let mut summary = ExportSummary::default();
    let mut inputs = Vec::new();
    let mut tensors = 0usize;
    let mut leaves = leaves.into_iter();
    let mut captures = staged.captures.iter().enumerate();
    for &v in g.inputs() {
        let t = match g.ty(v) {
            Type::Token => {
                inputs.push(InputRole::Token);
                continue;
            }
            Type::Tensor(t) => t,
        };
        tensors += 1;
        if tensors == 1 {
            inputs.push(InputRole::Key);
            continue;
        }
        if let Some((name, leaf, baked)) = leaves.next() {
            if baked {
                summary.initializers += 1;
                summary.parameters += leaf.t.numel();
                inputs.push(InputRole::Initializer(name, array(&leaf.t)?));
            } else {
                summary.inputs.push(format!("{name}: {t}"));
                inputs.push(InputRole::Input(name));
            }
        } else if let Some((k, c)) = captures.next() {
            let name = global_leaves
                .get(&c.id())
                .cloned()
                .unwrap_or_else(|| format!("captured.{k}"));
            summary.initializers += 1;
            summary.parameters += c.numel();
            inputs.push(InputRole::Initializer(name, array(c)?));
        } else {
            return Err("the staged graph has more inputs than its arguments and captures".into());
        }
    }
    // Outputs: the result's leaves, then the key.
    let mut out_names = Vec::new();
    result_names(&staged.out, "output", &mut out_names);
    let n_tensors = g.outputs().iter().filter(|&&v| !g.ty(v).is_token()).count();
    if n_tensors != out_names.len() + 1 {
        return Err(format!(
            "the staged graph gives {} tensors, the result has {}",
            n_tensors.saturating_sub(1),
            out_names.len()
        ));
    }
    let mut names = out_names.into_iter();
    let mut outputs = Vec::new();
    for &v in g.outputs() {
        match g.ty(v) {
            Type::Token => outputs.push(OutputRole::Token),
            Type::Tensor(t) => match names.next() {
                Some(n) => {
                    summary.outputs.push(format!("{n}: {t}"));
                    outputs.push(OutputRole::Output(n));
                }
                None => outputs.push(OutputRole::Key),
            },
        }
    }
    Ok((
        ExportSpec {
            opset,
            inputs,
            outputs,
            doc,
        },
        summary,
    ))
}

/// The names of a result's tensor leaves, in the graph's output order.
fn result_names(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Tensor(_) => out.push(prefix.to_string()),
        Value::Tuple(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, x)| result_names(x, &format!("{prefix}.{i}"), out)),
        Value::Record(m) => m
            .iter()
            .for_each(|(k, x)| result_names(x, &format!("{prefix}.{k}"), out)),
        _ => {}
    }
}

/// A host copy of a tensor's elements, little-endian in C order.
fn array(t: &Tensor) -> Result<Array, String> {
    let mut data = Vec::with_capacity(t.numel() * t.dtype().size_of());
    crate::io::le_bytes(t, &mut |chunk| {
        data.extend_from_slice(chunk);
        Ok(())
    })
    .map_err(|e| format!("cannot read a parameter's elements: {e}"))?;
    Ok(Array {
        dtype: t.dtype(),
        dims: t.shape().to_vec(),
        data,
    })
}
