//! The file builtins of LANGUAGE.md §10: `load_npy`, `save_npy`, `load_idx`, and the
//! checkpoints `save` and `load` (safetensors), the model files `export_onnx`, `export_mir`
//! and `load_model` (`docs/export.md`). The formats are parsed by `crate::io`;
//! this module reads and writes the files and turns what goes wrong into diagnostics.
//!
//! - A file that cannot be read, parsed or written is E0912 at the call, naming the file
//!   and what is wrong with it; an array larger than the device allows is E0905, found
//!   before it is allocated.
//! - Writes are atomic (`io::write_atomic`): a reader never sees a half-written file, and a
//!   failed write leaves the old one.
//! - Loaded values have the types the file gives them; an annotation
//!   (`let p: {w: f32[2, 3]} = load("p.safetensors")`) is checked where the value arrives,
//!   like any value the checker could not know.
//! - In a staged function a load runs once, when the function is staged, and its tensors
//!   are constants of the graph; a save would run only then too, so it is E0913 there.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;

use devices::Tensor;
use ir::DType;
use lang::{Diagnostic, Span};

use super::{Call, strong};
use crate::eval::Eval;
use crate::eval::errors::{self, Flow, R};
use crate::io::safetensors::Tree;
use crate::io::{self, Array};
use crate::value::Value;

/// E0912: a data file that cannot be read, parsed or written.
fn file_error(message: String, span: Span) -> Flow {
    Flow::error(
        Diagnostic::error("E0912", message, span).with_primary_label("reading this file failed"),
    )
}

/// Parses the file at `path` with `parse`, asking the device before each array is
/// allocated. `what` names the format in messages.
fn parse_file<T, E: Display>(
    ev: &Eval<'_>,
    path: &str,
    what: &str,
    span: Span,
    parse: impl FnOnce(&[u8], io::Room<'_>) -> Result<T, E>,
) -> R<T> {
    let bytes =
        std::fs::read(path).map_err(|e| file_error(format!("cannot read `{path}`: {e}"), span))?;
    let mut refused = None;
    let result = {
        let mut room = |dtype: DType, n: usize| match super::data::fits(ev, dtype, n, span) {
            Ok(()) => true,
            Err(e) => {
                refused = Some((e, n));
                false
            }
        };
        parse(&bytes, &mut room)
    };
    match (result, refused) {
        (Ok(t), _) => Ok(t),
        (Err(_), Some((Flow::Error(e), n))) => {
            // The device's refusal names its probe; the message names the file instead.
            let mut d = Diagnostic::error(
                "E0905",
                format!("`{path}` holds an array of {n} values, more than one tensor may hold"),
                span,
            )
            .with_primary_label("this file is too large")
            .with_note(e.diag.message);
            for note in e.diag.notes {
                d = d.with_note(note);
            }
            Err(Flow::error(d))
        }
        (Err(_), Some((other, _))) => Err(other),
        (Err(e), None) => Err(file_error(
            format!("`{path}` cannot be read as {what}: {e}"),
            span,
        )),
    }
}

/// Writes `path` atomically with `write`.
fn write_file(
    path: &str,
    span: Span,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> R<()> {
    io::write_atomic(std::path::Path::new(path), write).map_err(|e| {
        Flow::error(
            Diagnostic::error("E0912", format!("cannot write `{path}`: {e}"), span)
                .with_primary_label("writing this file failed"),
        )
    })
}

/// E0913 for a write in a staged function (see the module documentation).
fn no_staged_write(ev: &Eval<'_>, name: &str, span: Span) -> R<()> {
    if ev.staging() {
        return Err(crate::stage::staging_error(
            format!(
                "`{name}` writes a file, which a staged function would do only once, when it is staged"
            ),
            span,
        ));
    }
    Ok(())
}

/// What both export builtins stage: `f` (argument 0) at its example arguments (argument
/// 1: a tuple of them, or one value), with the names of `f`'s parameters.
fn staged_example(
    ev: &mut Eval<'_>,
    c: &Call,
) -> R<(Value, crate::stage::jit::StagedFn, Vec<lang::ast::Name>)> {
    let f = c.req(0)?.clone();
    let args: Vec<Value> = match c.req(1)? {
        Value::Tuple(items) => items.to_vec(),
        other => vec![other.clone()],
    };
    let params: Vec<lang::ast::Name> = match &f {
        Value::Fn(func) => func.params.iter().map(|p| p.name.name.clone()).collect(),
        Value::Jit(j) => match &j.f {
            Value::Fn(func) => func.params.iter().map(|p| p.name.name.clone()).collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let pos: Vec<(Value, Span)> = args.into_iter().map(|a| (a, c.span(1))).collect();
    let staged = ev.stage_for_export(&f, &pos, c.span)?;
    Ok((f, staged, params))
}

/// `export_onnx(f, example_args, path, opset: 17)`: `f` staged at its example arguments
/// (a tuple of them, or one value; their tensors are the model's inputs, the tensors `f`
/// captures its initializers) and written as an ONNX model (`docs/export.md`).
pub(super) fn export_onnx(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    no_staged_write(ev, c.name, c.span)?;
    let path = path_arg(c, 2)?;
    let opset = c.opt_int(ev, 3)?.unwrap_or(io::onnx::DEFAULT_OPSET);
    let bad = |m: String, span: Span| {
        Flow::error(
            Diagnostic::error("E0909", m, span).with_primary_label("cannot be exported to ONNX"),
        )
    };
    if !io::onnx::OPSETS.contains(&opset) {
        return Err(bad(
            format!("ONNX opset {opset} is not supported: use 13 to 21"),
            c.span(3),
        ));
    }
    let (f, staged, params) = staged_example(ev, c)?;
    let doc = format!("MindScript function `{}`", crate::stage::jit::fn_name(&f));
    let (spec, _) = crate::stage::export::onnx_spec(&staged, &params, None, opset, doc)
        .map_err(|m| bad(m, c.span(0)))?;
    // A model over 2 GiB keeps its parameters in `PATH.data` beside it.
    let file_name = std::path::Path::new(&path)
        .file_name()
        .map(|n| format!("{}.data", n.to_string_lossy()))
        .unwrap_or_default();
    let external = io::onnx::External {
        location: file_name,
        ..io::onnx::External::default()
    };
    let model = io::onnx::export_with(&staged.graph, &spec, &external)
        .map_err(|e| bad(e.to_string(), c.span(0)))?;
    if let Some(data) = &model.external {
        let data_path = std::path::Path::new(&path).with_file_name(&external.location);
        write_file(&data_path.to_string_lossy(), c.span, |w| {
            std::io::Write::write_all(w, data)
        })?;
    }
    write_file(&path, c.span, |w| {
        std::io::Write::write_all(w, &model.model)
    })?;
    Ok(Value::Unit)
}

/// `load_model(path)`: the model a `.msir` file holds (`ms export --mir`), a value that is
/// called like the function it was exported from (`stage::model`). The file is validated
/// whole before anything is made (`io::msir::read`); what is wrong with it is E0912.
pub(super) fn load_model(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let path = path_arg(c, 0)?;
    let loaded = parse_file(
        ev,
        &path,
        "a MindScript model (.msir)",
        c.span,
        io::msir::read,
    )?;
    let params = loaded
        .params
        .into_iter()
        .map(|a| a.into_tensor().map_err(|e| ev.device_error(e, c.span)))
        .collect::<R<Vec<_>>>()?;
    Ok(Value::Model(Arc::new(crate::stage::model::Model::new(
        path,
        loaded.sig,
        loaded.graph,
        params,
    ))))
}

/// `export_mir(f, example_args, path)`: `f` staged at its example arguments as
/// `export_onnx` stages it, written as a `.msir` model file (`docs/export.md`), which
/// `load_model` runs; the tensors `f` captures are its parameters.
pub(super) fn export_mir(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    no_staged_write(ev, c.name, c.span)?;
    let path = path_arg(c, 2)?;
    let (f, staged, params) = staged_example(ev, c)?;
    let name = crate::stage::jit::fn_name(&f);
    let (bytes, _) =
        crate::stage::export::mir_file(&staged, &params, None, &name).map_err(|m| {
            Flow::error(
                Diagnostic::error("E0909", m, c.span(0))
                    .with_primary_label("cannot be written as a model file"),
            )
        })?;
    write_file(&path, c.span, |w| std::io::Write::write_all(w, &bytes))?;
    Ok(Value::Unit)
}

/// A host tensor value from an array read from a file.
fn tensor_value(ev: &Eval<'_>, a: Array, span: Span) -> R<Value> {
    Ok(strong(
        a.into_tensor().map_err(|e| ev.device_error(e, span))?,
    ))
}

/// The path argument (parameter `i`).
fn path_arg(c: &Call, i: usize) -> R<String> {
    Ok(c.string(i)?.unwrap_or_default().to_string())
}

/// `load_npy(path)`: the array of a NumPy `.npy` file.
pub(super) fn load_npy(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let path = path_arg(c, 0)?;
    let a = parse_file(ev, &path, "a .npy file", c.span, io::npy::read)?;
    tensor_value(ev, a, c.span)
}

/// `load_text(path)`: the contents of a UTF-8 text file, as a string. In a staged function
/// it reads once, when the function is staged, like the other loads.
pub(super) fn load_text(_: &mut Eval<'_>, c: &Call) -> R<Value> {
    let path = path_arg(c, 0)?;
    let bytes = std::fs::read(&path)
        .map_err(|e| file_error(format!("cannot read `{path}`: {e}"), c.span))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        file_error(
            format!(
                "`{path}` is not UTF-8 text: the bytes at offset {} are not a valid character",
                e.utf8_error().valid_up_to()
            ),
            c.span,
        )
    })?;
    Ok(Value::Str(Arc::from(text)))
}

/// `save_npy(x, path)`: writes a tensor as a NumPy `.npy` file.
pub(super) fn save_npy(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    no_staged_write(ev, c.name, c.span)?;
    let x = c.tensor(0)?;
    let path = path_arg(c, 1)?;
    // A weak literal is stored wide; the file holds its logical dtype.
    let t = ev.cast(&x.t, x.dtype, c.span)?;
    write_file(&path, c.span, |w| io::npy::write(&t, w))?;
    Ok(Value::Unit)
}

/// `load_idx(path, dtype:)`: the array of an IDX file, gzipped or raw (the conversion of
/// its elements is `io::idx`'s table), cast to `dtype` when given.
pub(super) fn load_idx(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let path = path_arg(c, 0)?;
    let dtype = match c.get(1) {
        Some(_) => Some(c.dtype(1, DType::F32)?),
        None => None,
    };
    let a = parse_file(ev, &path, "an IDX file", c.span, io::idx::read)?;
    let t = a.into_tensor().map_err(|e| ev.device_error(e, c.span))?;
    Ok(strong(match dtype {
        Some(d) => ev.cast(&t, d, c.span)?,
        None => t,
    }))
}

/// `save(value, path)`: a tensor, or a tuple or record of them (nested), as a safetensors
/// checkpoint (`io::safetensors` for the names and the metadata).
pub(super) fn save(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    no_staged_write(ev, c.name, c.span)?;
    let tree = to_tree(ev, c.req(0)?, "", c.span(0))?;
    let path = path_arg(c, 1)?;
    write_file(&path, c.span, |w| io::safetensors::write(&tree, w))?;
    Ok(Value::Unit)
}

/// `value` as a tree of tensors in their logical dtypes; `at` is its place in the value
/// saved, for messages.
fn to_tree(ev: &Eval<'_>, value: &Value, at: &str, span: Span) -> R<Tree<Tensor>> {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    Ok(match value {
        Value::Tensor(t) => Tree::Leaf(ev.cast(&t.t, t.dtype, span)?),
        Value::Unit => Tree::Tuple(Vec::new()),
        Value::Tuple(items) => Tree::Tuple(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| to_tree(ev, x, &join(&i.to_string()), span))
                .collect::<R<_>>()?,
        ),
        Value::Record(fields) => Tree::Record(
            fields
                .iter()
                .map(|(k, x)| Ok((k.to_string(), to_tree(ev, x, &join(k), span)?)))
                .collect::<R<_>>()?,
        ),
        other => {
            let place = if at.is_empty() {
                "the value".to_string()
            } else {
                format!("`{at}`")
            };
            return Err(errors::mismatch(
                format!(
                    "`save` stores tensors, and tuples and records of them; {place} is {}",
                    other.describe()
                ),
                span,
            ));
        }
    })
}

/// `load(path)`: the value a safetensors checkpoint holds.
pub(super) fn load(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let path = path_arg(c, 0)?;
    let tree = parse_file(
        ev,
        &path,
        "a safetensors checkpoint",
        c.span,
        io::safetensors::read,
    )?;
    from_tree(ev, tree, c.span)
}

fn from_tree(ev: &Eval<'_>, tree: Tree<Array>, span: Span) -> R<Value> {
    Ok(match tree {
        Tree::Leaf(a) => tensor_value(ev, a, span)?,
        Tree::Tuple(items) if items.is_empty() => Value::Unit,
        Tree::Tuple(items) => Value::Tuple(
            items
                .into_iter()
                .map(|x| from_tree(ev, x, span))
                .collect::<R<Vec<_>>>()?
                .into(),
        ),
        Tree::Record(fields) => {
            let mut out = BTreeMap::new();
            for (k, x) in fields {
                out.insert(lang::ast::Name::from(k.as_str()), from_tree(ev, x, span)?);
            }
            Value::Record(Arc::new(out))
        }
    })
}
