//! `ms export --onnx`, `export_onnx` and `ms export --mir`: what each input and output of a
//! staged function's graph is in an ONNX model (`io::onnx` does the mapping) and in a
//! `.msir` model file (`io::msir`), which bake in and name the same tensors.
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

use ir::DType;

use super::jit::{StagedFn, is_static, named_input_leaves};
use crate::io::msir::{Role, Signature, Tree};
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

/// What one input of a staged function's graph is in an exported model.
pub(crate) enum Input {
    /// The effect token.
    Token,
    /// The random key.
    Key,
    /// A tensor of the arguments, named by parameter and path.
    Arg(String),
    /// A tensor baked into the model (a checkpoint's or a captured one), named.
    Param(String, Tensor),
}

/// What one output of a staged function's graph is in an exported model.
pub(crate) enum Output {
    Token,
    Key,
    /// A tensor of the result, named by path (`output`, `output.0`).
    Result(String),
}

/// The roles of `staged`'s graph inputs and outputs (the module documentation says which):
/// `params` are the function's parameter names (for the arguments after them, `arg2`,
/// ...), `checkpoint` the record that replaces the first argument's leaves as parameters.
/// Shared by ONNX export and the `.msir` model file, so that both name and bake in the same
/// tensors.
pub(crate) fn roles(
    staged: &StagedFn,
    params: &[Name],
    checkpoint: Option<&Value>,
) -> Result<(Vec<Input>, Vec<Output>, ExportSummary), String> {
    let g = &staged.graph;
    // The arguments' leaves, named.
    let mut leaves: Vec<(String, TensorVal, bool)> = Vec::new();
    for (i, a) in staged.args.iter().enumerate() {
        let pname = arg_name(params, i);
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
                inputs.push(Input::Token);
                continue;
            }
            Type::Tensor(t) => t,
        };
        tensors += 1;
        if tensors == 1 {
            inputs.push(Input::Key);
            continue;
        }
        if let Some((name, leaf, baked)) = leaves.next() {
            if baked {
                summary.initializers += 1;
                summary.parameters += leaf.t.numel();
                inputs.push(Input::Param(name, leaf.t));
            } else {
                summary.inputs.push(format!("{name}: {t}"));
                inputs.push(Input::Arg(name));
            }
        } else if let Some((k, c)) = captures.next() {
            let name = global_leaves
                .get(&c.id())
                .cloned()
                .unwrap_or_else(|| format!("captured.{k}"));
            summary.initializers += 1;
            summary.parameters += c.numel();
            inputs.push(Input::Param(name, c.clone()));
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
            Type::Token => outputs.push(Output::Token),
            Type::Tensor(t) => match names.next() {
                Some(n) => {
                    summary.outputs.push(format!("{n}: {t}"));
                    outputs.push(Output::Result(n));
                }
                None => outputs.push(Output::Key),
            },
        }
    }
    Ok((inputs, outputs, summary))
}

/// The name of argument `i`: its parameter's, or `arg{i+1}` past the named ones.
fn arg_name(params: &[Name], i: usize) -> String {
    params
        .get(i)
        .map_or_else(|| format!("arg{}", i + 1), |n| n.to_string())
}

/// The spec of `staged`'s graph as an ONNX model (see [`roles`]).
pub(crate) fn onnx_spec(
    staged: &StagedFn,
    params: &[Name],
    checkpoint: Option<&Value>,
    opset: i64,
    doc: String,
) -> Result<(ExportSpec, ExportSummary), String> {
    let (ins, outs, summary) = roles(staged, params, checkpoint)?;
    let inputs = ins
        .into_iter()
        .map(|r| {
            Ok(match r {
                Input::Token => InputRole::Token,
                Input::Key => InputRole::Key,
                Input::Arg(n) => InputRole::Input(n),
                Input::Param(n, t) => InputRole::Initializer(n, array(&t)?),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let outputs = outs
        .into_iter()
        .map(|r| match r {
            Output::Token => OutputRole::Token,
            Output::Key => OutputRole::Key,
            Output::Result(n) => OutputRole::Output(n),
        })
        .collect();
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

/// `staged`'s graph as a `.msir` model file (`io::msir`), with the same inputs, parameters
/// and outputs as its ONNX model; `function` names it. The arguments after the checkpoint
/// (all of them without one) are what a caller of the loaded model passes.
pub(crate) fn mir_file(
    staged: &StagedFn,
    params: &[Name],
    checkpoint: Option<&Value>,
    function: &str,
) -> Result<(Vec<u8>, ExportSummary), String> {
    // The outputs need no roles in the file: they are the result's tensors, then the key.
    let (ins, _, summary) = roles(staged, params, checkpoint)?;
    let mut inputs = Vec::with_capacity(ins.len());
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for r in ins {
        inputs.push(match r {
            Input::Token => Role::Token,
            Input::Key => Role::Key,
            Input::Arg(n) => Role::Input(n),
            Input::Param(n, t) => {
                if tensors.iter().any(|(m, _)| *m == n) {
                    return Err(format!("two parameters of the model are both named `{n}`"));
                }
                tensors.push((n.clone(), t));
                Role::Param(n)
            }
        });
    }
    let skip = usize::from(checkpoint.is_some());
    let args = staged
        .args
        .iter()
        .enumerate()
        .skip(skip)
        .map(|(i, a)| {
            let name = arg_name(params, i);
            Ok((name.clone(), tree_of(a, &name)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let result = tree_of(&staged.out, "the result")?;
    let sig = Signature {
        function: function.to_string(),
        inputs,
        args,
        result,
    };
    let mut bytes = Vec::new();
    crate::io::msir::write(&sig, &staged.graph, &tensors, &mut bytes)
        .map_err(|e| format!("cannot write the model: {e}"))?;
    Ok((bytes, summary))
}

/// The structure of an argument or result (`io::msir::Tree`); `at` names it in messages.
fn tree_of(v: &Value, at: &str) -> Result<Tree, String> {
    Ok(match v {
        Value::Tensor(t) if is_static(t) && t.rank() > 0 => {
            return Err(format!(
                "{at} is a list of integers, which a staged function takes as a constant; an exported model takes tensors and scalars only"
            ));
        }
        Value::Tensor(t) if is_static(t) => Tree::Static {
            dtype: t.dtype,
            value: static_value(&t.t)
                .ok_or_else(|| format!("the value of the static scalar {at} cannot be read"))?,
        },
        Value::Tensor(t) => Tree::Tensor {
            dtype: t.dtype,
            weak: t.weak,
        },
        Value::Unit => Tree::Unit,
        Value::Tuple(items) => Tree::Tuple(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| tree_of(x, &format!("{at}.{i}")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Record(m) => Tree::Record(
            m.iter()
                .map(|(k, x)| Ok((k.to_string(), tree_of(x, &format!("{at}.{k}"))?)))
                .collect::<Result<_, String>>()?,
        ),
        other => {
            return Err(format!(
                "{at} is {}; a model file holds functions of tensors, tuples and records of \
                 them, and integer and bool scalars",
                other.describe()
            ));
        }
    })
}

/// The value of an integer or bool scalar.
pub(crate) fn static_value(t: &Tensor) -> Option<i64> {
    match t.dtype() {
        DType::Bool => t.to_vec::<bool>()?.first().map(|&b| i64::from(b)),
        DType::I32 => t.to_vec::<i32>()?.first().map(|&x| i64::from(x)),
        DType::I64 => t.to_vec::<i64>()?.first().copied(),
        _ => None,
    }
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
