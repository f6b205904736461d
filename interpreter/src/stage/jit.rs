//! Staged functions: signatures, the cache, staging one call and running its graph.
//!
//! A call of a staged function (`@jit`, `jit(f)`, or any named function called from the
//! top level in graph mode) computes the call's [`Signature`]: per argument, the dtype,
//! weakness and shape of every tensor leaf, the value of integer and bool scalars (which
//! are *static*: they decide sizes, ranges and branches, as Python scalars do in
//! MindSpore's graph mode, so they are constants of the graph and a new value re-stages),
//! and the identity of everything else (a function argument is specialized). The cache
//! keeps, per function, the graphs staged so far; a call whose signature and globals match
//! one runs it without staging again ([`Cache::stagings`] counts stagings, and
//! `--explain-restage` says why each one after the first happened).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use devices::Tensor;
use devices::schedule::{Effects, Plan, RunError};
use ir::DType;
use ir::graph::{NodeId, Span as IrSpan};
use lang::Span;
use lang::ast::{DimExprKind, Name, TypeExpr, TypeExprKind};

use super::{PrintLine, Stager, build_error, same_value, staging_error, substitute, tensor_leaves};
use crate::eval::Eval;
use crate::eval::errors::{self, Flow, R};
use crate::value::{TensorVal, Value};

/// A function value made by `jit(f)` or `@jit`: calling it stages and runs `f`.
#[derive(Debug)]
pub struct Jitted {
    /// The function staged.
    pub f: Value,
    /// Its name, for graphs and messages.
    pub name: Name,
    /// How it runs on a mesh (`@jit(parallel: ...)`), if it does.
    pub parallel: Option<super::parallel::Spec>,
}

/// What a call's arguments look like to the cache.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ArgSig {
    /// A tensor passed as a graph input: its storage dtype, dtype, weakness and dims.
    Tensor {
        storage: DType,
        dtype: DType,
        weak: bool,
        shape: Vec<usize>,
    },
    /// A static scalar (integer or bool): its value.
    Static(String),
    Tuple(Vec<ArgSig>),
    Record(Vec<(Name, ArgSig)>),
    /// Anything else, by identity (the value is kept by the cache entry).
    Other(String),
}

/// A call's signature: positional arguments, then named ones.
pub(crate) type Signature = Vec<(Option<Name>, ArgSig)>;

/// One staged graph of a function and what running it needs.
pub(crate) struct StagedFn {
    /// The graph as staged (`ms ir --stage raw`).
    pub raw: ir::Graph,
    /// The graph that runs: `raw` after the session's pipeline of passes
    /// (`ir::passes::PIPELINE` unless `Session::set_passes` chose others).
    pub graph: ir::Graph,
    /// `graph` analysed for the executor, made on the first run and kept, since a staged
    /// function runs many times; emptied whenever `graph` is replaced.
    prepared: std::sync::OnceLock<devices::schedule::Prepared>,
    /// How many graph inputs after the random key are the arguments' tensors (the rest are
    /// captured tensors).
    pub n_args: usize,
    sig: Signature,
    /// The arguments it was staged with (kept alive so that identities in `sig` stay
    /// unique; `ms export` reads the parameters baked into a model from them).
    pub(super) args: Vec<Value>,
    /// The result, its tensor leaves standing for the graph's outputs after the key.
    pub(super) out: Value,
    pub(super) captures: Vec<Tensor>,
    prints: HashMap<IrSpan, PrintLine>,
    pub(super) globals_read: Vec<(Name, Value)>,
    /// The signature with the sizes of symbolic dims (those the parameters' annotations
    /// name) left out.
    abs: Signature,
    /// The sizes the symbolic dims had when this graph was staged.
    sizes: Vec<(Name, usize)>,
    /// Whether the graph holds for every size of its symbolic dims (found by
    /// [`ir::graph::generalize`] from two stagings), so that it serves every call whose
    /// signature matches `abs`.
    pub general: bool,
    /// For a general graph, the concrete raw one it was generalized from (at `sizes`).
    pub staged: Option<ir::Graph>,
    /// For a parallel function, the graphs of the devices of its mesh, made on the first
    /// run (`stage::parallel`).
    pub(super) mesh_plan: std::sync::OnceLock<Arc<super::parallel::MeshPlan>>,
    /// The `shard` hints staged in its body: values of `raw`, their strategies and spans.
    pub(super) hints: Vec<(ir::graph::ValueId, Vec<usize>, Span)>,
}

impl StagedFn {
    /// The graphs of the devices of its mesh, once a parallel call has made them.
    pub(crate) fn mesh_plan(&self) -> Option<Arc<super::parallel::MeshPlan>> {
        self.mesh_plan.get().cloned()
    }

    /// Whether this graph, general in its symbolic dims, serves the calls `other` was
    /// staged for.
    pub(crate) fn covers(&self, other: &StagedFn) -> bool {
        self.general && self.abs == other.abs && self.globals_read.len() == other.globals_read.len()
    }

    /// The sizes of the symbolic dims in `other`'s staging and in this one's.
    pub(crate) fn sym_sizes(&self, other: &StagedFn) -> Vec<ir::graph::SymSize> {
        other
            .sizes
            .iter()
            .zip(&self.sizes)
            .map(|((name, a), (_, b))| ir::graph::SymSize {
                name: name.clone(),
                a: *a,
                b: *b,
            })
            .collect()
    }
}

/// The staged graphs of a session, per function.
#[derive(Default)]
pub(crate) struct Cache {
    entries: HashMap<usize, (Value, Vec<Arc<StagedFn>>)>,
    /// How many times a function was staged (a test counts them).
    pub stagings: usize,
}

impl Cache {
    /// Drops every staged graph (the pipeline changed: they were optimized with other
    /// passes). The count of stagings stays.
    pub(crate) fn forget(&mut self) {
        self.entries.clear();
    }

    /// The graphs staged for the function `key`, newest last.
    pub(crate) fn graphs(&self, key: usize) -> Vec<Arc<StagedFn>> {
        self.entries
            .get(&key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// The identity a function value is cached under.
pub(crate) fn fn_key(f: &Value) -> usize {
    match f {
        Value::Fn(x) => Arc::as_ptr(x) as usize,
        Value::Derived(x) => Arc::as_ptr(x) as usize,
        Value::Jit(x) => Arc::as_ptr(x) as usize,
        Value::Model(x) => Arc::as_ptr(x) as usize,
        Value::Builtin(name) => name.as_ptr() as usize,
        _ => 0,
    }
}

/// The name a function value's graphs get.
pub(crate) fn fn_name(f: &Value) -> Name {
    match f {
        Value::Fn(x) => x.name.clone(),
        Value::Jit(x) => x.name.clone(),
        Value::Builtin(n) => Name::from(*n),
        _ => Name::from("derived"),
    }
}

/// The most elements a static integer list may have: shapes, permutations and axis lists
/// are short, and a longer weak vector is more likely data than a shape.
const STATIC_LIST_MAX: usize = 16;

/// Whether a tensor argument is static (a constant of the graph, part of the signature):
/// an integer or bool scalar, or a short list of integers written in the program (a weak
/// integer vector, such as `[d, 3 * d]`). Such lists are shapes, permutations and axes,
/// which the primitives need as numbers while staging, as MindSpore's graph mode takes
/// Python lists of ints as constants; a strong integer vector (labels, indices, anything
/// a primitive computed) stays a graph input.
pub(crate) fn is_static(t: &TensorVal) -> bool {
    let scalar = t.rank() == 0 && (t.dtype.is_int() || t.dtype == DType::Bool);
    let list = t.rank() == 1 && t.weak && t.dtype.is_int() && t.shape()[0] <= STATIC_LIST_MAX;
    scalar || list
}

/// The value of a static scalar or list, as text (every element: two lists differing
/// anywhere are two signatures).
fn static_text(t: &Tensor) -> String {
    let text = |v: Option<Vec<String>>| match v {
        Some(items) if t.rank() == 0 => items.join(""),
        Some(items) => format!("[{}]", items.join(", ")),
        None => "?".into(),
    };
    match t.dtype() {
        DType::Bool => text(t.to_vec::<bool>().map(|v| strings(&v))),
        DType::I32 => text(t.to_vec::<i32>().map(|v| strings(&v))),
        _ => text(t.to_vec::<i64>().map(|v| strings(&v))),
    }
}

fn strings<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

fn arg_sig(v: &Value) -> ArgSig {
    match v {
        Value::Tensor(t) if is_static(t) => {
            ArgSig::Static(format!("{} {}", t.dtype, static_text(&t.t)))
        }
        Value::Tensor(t) => ArgSig::Tensor {
            storage: t.t.dtype(),
            dtype: t.dtype,
            weak: t.weak,
            shape: t.shape().to_vec(),
        },
        Value::Tuple(items) => ArgSig::Tuple(items.iter().map(arg_sig).collect()),
        Value::Record(m) => {
            ArgSig::Record(m.iter().map(|(k, x)| (k.clone(), arg_sig(x))).collect())
        }
        Value::Str(s) => ArgSig::Other(format!("str {s:?}")),
        Value::Unit => ArgSig::Other("()".into()),
        Value::Range(a, b) => ArgSig::Other(format!("{a}..{b}")),
        other => ArgSig::Other(format!("{} @{:x}", other.describe(), fn_key(other))),
    }
}

/// The tensor leaves of `v` that are graph inputs (not static), in order.
pub(super) fn input_leaves(v: &Value, out: &mut Vec<TensorVal>) {
    match v {
        Value::Tensor(t) if !is_static(t) => out.push(t.clone()),
        Value::Tuple(items) => items.iter().for_each(|x| input_leaves(x, out)),
        Value::Record(m) => m.values().for_each(|x| input_leaves(x, out)),
        _ => {}
    }
}

/// [`input_leaves`] with a dotted name for each: `prefix` for a tensor, `prefix.0` for a
/// tuple's item, `prefix.w` for a record's field (no prefix: the path alone).
pub(super) fn named_input_leaves(v: &Value, prefix: &str, out: &mut Vec<(String, TensorVal)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Tensor(t) if !is_static(t) => out.push((prefix.to_string(), t.clone())),
        Value::Tuple(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, x)| named_input_leaves(x, &join(&i.to_string()), out)),
        Value::Record(m) => m
            .iter()
            .for_each(|(k, x)| named_input_leaves(x, &join(k), out)),
        _ => {}
    }
}

/// `v` with its input leaves replaced in order.
fn replace_inputs(v: &Value, leaves: &mut impl Iterator<Item = TensorVal>) -> Value {
    match v {
        Value::Tensor(t) if !is_static(t) => {
            Value::Tensor(leaves.next().unwrap_or_else(|| t.clone()))
        }
        Value::Tuple(items) => {
            Value::Tuple(items.iter().map(|x| replace_inputs(x, leaves)).collect())
        }
        Value::Record(m) => Value::Record(Arc::new(
            m.iter()
                .map(|(k, x)| (k.clone(), replace_inputs(x, leaves)))
                .collect(),
        )),
        other => other.clone(),
    }
}

/// Why a call re-stages: the first difference from the newest graph of the function.
fn explain(old: &StagedFn, sig: &Signature, ev: &Eval<'_>) -> String {
    for (name, v) in &old.globals_read {
        match ev.global_value(name) {
            Some(now) if same_value(&now, v) => {}
            _ => return format!("the global `{name}` has another value"),
        }
    }
    if old.sig.len() != sig.len() {
        return format!(
            "it is called with {} arguments, not {}",
            sig.len(),
            old.sig.len()
        );
    }
    for (i, ((n, a), (_, b))) in sig.iter().zip(&old.sig).enumerate() {
        let which = match n {
            Some(n) => format!("argument `{n}`"),
            None => format!("argument {}", i + 1),
        };
        if let Some(why) = sig_difference(a, b) {
            return format!("{which}: {why}");
        }
    }
    "its signature is new".into()
}

fn sig_difference(now: &ArgSig, before: &ArgSig) -> Option<String> {
    match (now, before) {
        (
            ArgSig::Tensor {
                storage: s1,
                dtype: d1,
                weak: w1,
                shape: a,
            },
            ArgSig::Tensor {
                storage: s2,
                dtype: d2,
                weak: w2,
                shape: b,
            },
        ) => {
            if d1 != d2 || s1 != s2 {
                return Some(format!("dtype {d1}, was {d2}"));
            }
            if w1 != w2 {
                return Some(if *w1 {
                    "a literal, was a tensor".into()
                } else {
                    "a tensor, was a literal".into()
                });
            }
            if a.len() != b.len() {
                return Some(format!("{} axes, was {}", a.len(), b.len()));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find(|(_, (x, y))| x != y)
                .map(|(k, (x, y))| format!("dim {k} is {x}, was {y}"))
        }
        (ArgSig::Tuple(a), ArgSig::Tuple(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| sig_difference(x, y).map(|w| format!("item {i}: {w}"))),
        (ArgSig::Record(a), ArgSig::Record(b)) if a.len() == b.len() => {
            a.iter().zip(b).find_map(|((k, x), (l, y))| {
                if k != l {
                    return Some(format!("field `{k}`, was `{l}`"));
                }
                sig_difference(x, y).map(|w| format!("field `{k}`: {w}"))
            })
        }
        (ArgSig::Static(a), ArgSig::Static(b)) if a != b => {
            Some(format!("the static value {a}, was {b}"))
        }
        (a, b) if a != b => Some("another kind of value".into()),
        _ => None,
    }
}

impl Eval<'_> {
    /// Calls `f` staged: from the cache when a graph matches the call, staging it first
    /// otherwise.
    pub(crate) fn call_staged(
        &mut self,
        f: &Value,
        pos: Vec<(Value, Span)>,
        named: Vec<(Name, Value, Span)>,
        span: Span,
    ) -> R<Value> {
        let key = fn_key(f);
        let pos = self.fit_tensor_params(f, pos)?;
        let parallel = match f {
            Value::Jit(j) => j.parallel.clone(),
            _ => None,
        }
        .or_else(|| {
            self.st.parallel.map(|mode| super::parallel::Spec {
                mode,
                devices: None,
                batch: None,
                span,
                not_literal: None,
            })
        });
        let devices = match &parallel {
            Some(spec) => self.mesh_size(spec, span)?,
            None => 1,
        };
        let sig: Signature = pos
            .iter()
            .map(|(v, _)| (None, arg_sig(v)))
            .chain(named.iter().map(|(n, v, _)| (Some(n.clone()), arg_sig(v))))
            .collect();
        let known = self.st.jit.graphs(key);
        let globals_hold = |g: &StagedFn| {
            g.globals_read
                .iter()
                .all(|(n, v)| self.global_value(n).is_some_and(|now| same_value(&now, v)))
        };
        // The exact signature first: the abstract one (symbolic dims left out) is only
        // worked out when no graph was staged for this one, so a training loop's calls at
        // one batch size pay nothing for it.
        let mut hit = known.iter().rev().find(|g| g.sig == sig && globals_hold(g));
        let mut abstracted = None;
        if hit.is_none() {
            let (abs, sizes) = abstract_sig(&sig, &sym_dims(f, &pos, &named));
            hit = known
                .iter()
                .rev()
                .find(|g| g.general && g.abs == abs && globals_hold(g));
            abstracted = Some((abs, sizes));
        }
        let staged = match hit {
            Some(g) => g.clone(),
            None => {
                if self.st.explain_restage
                    && let Some(old) = known.last()
                {
                    eprintln!(
                        "note: re-staging `{}` ({}): {}",
                        fn_name(f),
                        self.place(span),
                        explain(old, &sig, self)
                    );
                }
                let mut g = self.stage_call(f, &pos, &named, sig, span)?;
                self.st.jit.stagings += 1;
                if let Some((abs, sizes)) = abstracted {
                    g.abs = abs;
                    g.sizes = sizes;
                }
                // A parallel function's graph is partitioned at its concrete sizes (the
                // pieces' sizes follow from them), so it is not generalized.
                if parallel.is_none() {
                    self.generalize(f, &known, &mut g, span);
                }
                let g = Arc::new(g);
                let entry = self
                    .st
                    .jit
                    .entries
                    .entry(key)
                    .or_insert_with(|| (f.clone(), Vec::new()));
                entry.1.push(g.clone());
                g
            }
        };
        let mut leaves = Vec::new();
        pos.iter().for_each(|(v, _)| input_leaves(v, &mut leaves));
        named
            .iter()
            .for_each(|(_, v, _)| input_leaves(v, &mut leaves));
        if self.st.check.is_some() {
            // The check compares one device's staged run with eager evaluation; a parallel
            // function's plan is still made, so that what cannot be partitioned (a hint
            // that does not fit the mesh) is the error it is without the check.
            if let Some(spec) = &parallel
                && devices > 1
            {
                self.mesh_plan(&staged, spec, devices, &pos, &named, span)?;
            }
            return self.run_checked(f, &staged, pos, named, leaves, span);
        }
        if let Some(spec) = &parallel
            && devices > 1
        {
            return self.run_parallel(&staged, spec, devices, &pos, &named, leaves, span);
        }
        self.run_staged(&staged, leaves, span)
    }

    /// The positional arguments with those whose parameter is annotated as a tensor fitted
    /// to the annotation first: a list of ints passed for `i: i64[2]` is then the tensor the
    /// annotation asks for (a graph input), not a static list (`is_static`).
    fn fit_tensor_params(&mut self, f: &Value, pos: Vec<(Value, Span)>) -> R<Vec<(Value, Span)>> {
        let params = match f {
            Value::Fn(x) => x.params.clone(),
            Value::Jit(j) => match &j.f {
                Value::Fn(x) => x.params.clone(),
                _ => return Ok(pos),
            },
            _ => return Ok(pos),
        };
        pos.into_iter()
            .enumerate()
            .map(
                |(i, (v, s))| match (params.get(i).and_then(|p| p.ty.as_ref()), &v) {
                    (Some(te), Value::Tensor(t))
                        if t.rank() > 0
                            && is_static(t)
                            && matches!(te.kind, TypeExprKind::Tensor { .. }) =>
                    {
                        // The fitted value is no longer weak, so no longer static.
                        Ok((self.fit_annotation(v, te, s)?, s))
                    }
                    _ => Ok((v, s)),
                },
            )
            .collect()
    }

    /// Stages `f` at the positional arguments `pos` for `export_onnx`, outside the cache.
    pub(crate) fn stage_for_export(
        &mut self,
        f: &Value,
        pos: &[(Value, Span)],
        span: Span,
    ) -> R<StagedFn> {
        let sig: Signature = pos.iter().map(|(v, _)| (None, arg_sig(v))).collect();
        self.stage_call(f, pos, &[], sig, span)
    }

    /// `line:col` of `span` in the running source, for notes.
    pub(super) fn place(&self, span: Span) -> String {
        let text = self.st.sources.get(self.src).map_or("", |(_, t)| &**t);
        let (l, c) = errors::line_col(text, span.start);
        format!("{l}:{c}")
    }

    /// Stages one call of `f`: a graph whose inputs are the random key, the arguments'
    /// input leaves and then the captured tensors, and whose outputs are the result's
    /// tensor leaves and then the final key (a scalar result comes first, as IR autodiff
    /// wants).
    pub(crate) fn stage_call(
        &mut self,
        f: &Value,
        pos: &[(Value, Span)],
        named: &[(Name, Value, Span)],
        sig: Signature,
        span: Span,
    ) -> R<StagedFn> {
        let name = fn_name(f);
        self.st.stage.borrow_mut().push(Stager::new(&name));
        let r = self.stage_body(f, pos, named, span);
        let Some(s) = self.st.stage.borrow_mut().pop() else {
            return Err(errors::internal("the staged graph was lost", span));
        };
        let (out, leaves) = r?;
        let mut n_args = Vec::new();
        pos.iter().for_each(|(v, _)| input_leaves(v, &mut n_args));
        named
            .iter()
            .for_each(|(_, v, _)| input_leaves(v, &mut n_args));
        let mut s = s;
        let mut outputs = Vec::with_capacity(leaves.len() + 1);
        s.b.set_span(super::ir_span(self.src, span));
        for l in &leaves {
            outputs.push(s.value_of(&l.t, span)?);
        }
        outputs.push(s.rng);
        let graph = s.b.finish(&outputs).map_err(|e| build_error(&e, span))?;
        if cfg!(debug_assertions)
            && let Err(e) = ir::verify(&graph)
        {
            return Err(errors::internal(
                &format!("the staged graph of `{name}` does not verify: {e}"),
                span,
            ));
        }
        let mut args: Vec<Value> = pos.iter().map(|(v, _)| v.clone()).collect();
        args.extend(named.iter().map(|(_, v, _)| v.clone()));
        let optimized = self
            .st
            .passes
            .optimize(&graph, cfg!(debug_assertions))
            .map_err(|e| errors::internal(&format!("optimizing `{name}`: {e}"), span))?;
        Ok(StagedFn {
            raw: graph,
            graph: optimized,
            prepared: std::sync::OnceLock::new(),
            n_args: n_args.len(),
            abs: sig.clone(),
            sig,
            args,
            out,
            captures: s.captures,
            prints: s.prints,
            globals_read: s.globals_read,
            sizes: Vec::new(),
            general: false,
            staged: None,
            mesh_plan: std::sync::OnceLock::new(),
            hints: s.hints,
        })
    }

    /// Makes the new graph `g` general when an earlier graph of the function (`known`)
    /// differs from it only in the sizes of every symbolic dim and the two generalize
    /// (`ir::graph::generalize`): then no later size stages again. With
    /// `--explain-restage`, says why they do not.
    fn generalize(&self, f: &Value, known: &[Arc<StagedFn>], g: &mut StagedFn, span: Span) {
        if g.sizes.is_empty() {
            return;
        }
        let Some(old) = known.iter().rev().find(|o| {
            !o.general
                && o.abs == g.abs
                && o.sizes.len() == g.sizes.len()
                && o.sizes
                    .iter()
                    .zip(&g.sizes)
                    .all(|(a, b)| a.0 == b.0 && a.1 != b.1)
        }) else {
            return;
        };
        let syms = g.sym_sizes(old);
        let r = if same_tensors(&old.captures, &g.captures) {
            ir::graph::generalize(&old.raw, &g.raw, &syms)
                .and_then(|raw| Ok((raw, ir::graph::generalize(&old.graph, &g.graph, &syms)?)))
        } else {
            Err("a tensor it computes while staging differs".into())
        };
        match r {
            Ok((raw, optimized)) => {
                g.staged = Some(std::mem::replace(&mut g.raw, raw));
                g.graph = optimized;
                g.prepared = std::sync::OnceLock::new();
                g.general = true;
            }
            Err(why) if self.st.explain_restage => {
                let names: Vec<&str> = syms.iter().map(|s| &*s.name).collect();
                eprintln!(
                    "note: `{}` ({}) stays specific to the sizes of {}: {why}",
                    fn_name(f),
                    self.place(span),
                    names.join(", ")
                );
            }
            Err(_) => {}
        }
    }

    /// Runs `f` over staged arguments inside the innermost stager: its result and the
    /// result's tensor leaves.
    fn stage_body(
        &mut self,
        f: &Value,
        pos: &[(Value, Span)],
        named: &[(Name, Value, Span)],
        span: Span,
    ) -> R<(Value, Vec<TensorVal>)> {
        let mut leaves = Vec::new();
        pos.iter().for_each(|(v, _)| input_leaves(v, &mut leaves));
        named
            .iter()
            .for_each(|(_, v, _)| input_leaves(v, &mut leaves));
        let staged = self.with_stager(span, |s| Ok(s.inputs_like(&leaves)))?;
        let mut it = staged.into_iter();
        let pos2: Vec<(Value, Span)> = pos
            .iter()
            .map(|(v, s)| (replace_inputs(v, &mut it), *s))
            .collect();
        let named2: Vec<(Name, Value, Span)> = named
            .iter()
            .map(|(n, v, s)| (n.clone(), replace_inputs(v, &mut it), *s))
            .collect();
        let out = self.call_inner(f, pos2, named2, span)?;
        if returns_function(&out) {
            return Err(staging_error(
                format!(
                    "`{}` returns a function; a staged function must return values",
                    fn_name(f)
                ),
                span,
            ));
        }
        let mut leaves = Vec::new();
        tensor_leaves(&out, &mut leaves);
        Ok((out, leaves))
    }

    /// Runs a staged graph on the session's device with the call's input leaves.
    fn run_staged(&mut self, g: &StagedFn, leaves: Vec<TensorVal>, span: Span) -> R<Value> {
        let inputs = self.staged_inputs(g, leaves, span)?;
        let outs = self.run_graph(g, &inputs, span, None)?;
        self.staged_result(g, &outs, span)
    }

    /// The inputs of a run of `g`: the random key, the call's input leaves, the captured
    /// tensors, all on the session's device.
    pub(super) fn staged_inputs(
        &self,
        g: &StagedFn,
        leaves: Vec<TensorVal>,
        span: Span,
    ) -> R<Vec<Tensor>> {
        let key = Tensor::from_vec(vec![self.st.seed, self.st.offset], &[2])
            .map_err(|e| self.device_error(e, span))?;
        let mut inputs = Vec::with_capacity(1 + leaves.len() + g.captures.len());
        inputs.push(key);
        inputs.extend(leaves.into_iter().map(|l| l.t));
        inputs.extend(g.captures.iter().cloned());
        self.on_session_device(&inputs, span)
    }

    /// Runs `g`'s optimized graph on `inputs`, printing what its `print` nodes show as
    /// eager mode would; with `kept`, the printed tensors are also kept there, in order.
    /// Gives the graph's tensor outputs: the result's leaves, then the random key.
    pub(super) fn run_graph(
        &mut self,
        g: &StagedFn,
        inputs: &[Tensor],
        span: Span,
        kept: Option<&mut Vec<Tensor>>,
    ) -> R<Vec<Tensor>> {
        let device = self.st.device.clone();
        let in_place = self.st.in_place;
        let prepared = g.prepared.get_or_init(|| {
            let p = devices::schedule::Prepared::new(&g.graph);
            if in_place { p } else { p.without_in_place() }
        });
        self.run_with_printer(g, span, kept, |printer| {
            Plan::with(&g.graph, prepared).run(&*device, inputs, printer)
        })
    }

    /// Runs `run` with the effects that print `g`'s lines and write its summaries as eager
    /// mode would, and maps its errors to diagnostics at the user's spans.
    pub(super) fn run_with_printer(
        &mut self,
        g: &StagedFn,
        span: Span,
        kept: Option<&mut Vec<Tensor>>,
        run: impl FnOnce(&mut (dyn Effects + Send)) -> Result<Vec<Tensor>, RunError>,
    ) -> R<Vec<Tensor>> {
        let mut printer = Printer {
            out: &mut *self.st.out,
            summaries: &mut self.st.summaries,
            bar: self.st.bar.clone(),
            g,
            pending: Vec::new(),
            failed: None,
            log_failed: None,
            kept,
        };
        let r = run(&mut printer);
        if let Some((d, src)) = printer.log_failed {
            // The summary failed at its own `log_*` call, shown as eager mode shows it.
            let (mut d, src) = (*d, src as usize);
            if src != self.main_src {
                d.file = crate::eval::source_name(self.st, src);
            }
            d.notes
                .push(format!("in the staged call at {}", self.place(span)));
            return Err(Flow::error(d));
        }
        if let Some(e) = printer.failed {
            return Err(errors::bad_value(
                format!("cannot write the output: {e}"),
                span,
            ));
        }
        r.map_err(|e| self.run_error(e, span))
    }

    /// The call's result from a run's outputs; the session's random stream continues from
    /// the key the run gave back.
    pub(super) fn staged_result(&mut self, g: &StagedFn, outs: &[Tensor], span: Span) -> R<Value> {
        let Some((key, rest)) = outs.split_last() else {
            return Err(errors::internal("a staged graph returned nothing", span));
        };
        let key = key
            .to_vec::<i64>()
            .ok_or_else(|| errors::internal("the random key could not be read", span))?;
        if let [seed, offset] = key[..] {
            self.st.seed = seed;
            self.st.offset = offset;
        }
        if let Some(record) = &mut self.st.staged_outputs {
            record.push(rest.to_vec());
        }
        let mut like = Vec::new();
        tensor_leaves(&g.out, &mut like);
        let mut it = rest
            .iter()
            .zip(like)
            .map(|(t, l)| TensorVal { t: t.clone(), ..l });
        Ok(substitute(&g.out, &mut it))
    }

    /// A graph run's error as the diagnostic eager mode gives at the same place.
    fn run_error(&self, e: RunError, call: Span) -> Flow {
        let at = |s: IrSpan| Span::new(s.start as usize, s.end as usize);
        let (flow, src) = match e {
            RunError::Device { error, span } => (
                Flow::error(errors::from_device(*error, at(span))),
                span.src as usize,
            ),
            RunError::Assert { message, span } => (
                errors::assertion((!message.is_empty()).then_some(message.as_str()), at(span)),
                span.src as usize,
            ),
            other => (
                errors::internal(&format!("the staged graph failed: {other}"), call),
                self.src,
            ),
        };
        match flow {
            Flow::Error(mut b) => {
                if src != self.main_src {
                    b.diag.file = crate::eval::source_name(self.st, src);
                }
                let mut d = b.diag;
                d.notes
                    .push(format!("in the staged call at {}", self.place(call)));
                Flow::error(d)
            }
            other => other,
        }
    }
}

/// Per input leaf of a call (in [`input_leaves`] order), per axis: the symbolic dim the
/// parameter's annotation names there (`B` in `x: f32[B, 4]`), if any.
fn sym_dims(
    f: &Value,
    pos: &[(Value, Span)],
    named: &[(Name, Value, Span)],
) -> Vec<Vec<Option<Name>>> {
    // A gradient takes the arguments of the function it differentiates.
    fn params_of(f: &Value) -> Option<Arc<[lang::ast::Param]>> {
        use crate::eval::builtins::grad::Kind;
        match f {
            Value::Fn(x) => Some(x.params.clone()),
            Value::Jit(j) => params_of(&j.f),
            Value::Derived(d)
                if matches!(d.kind, Kind::Grad | Kind::ValueAndGrad | Kind::Hessian) =>
            {
                params_of(&d.f)
            }
            _ => None,
        }
    }
    let params = params_of(f);
    let ty_of = |i: Option<usize>, n: Option<&Name>| {
        let ps = params.as_deref()?;
        let p = match (i, n) {
            (Some(i), _) => ps.get(i),
            (None, Some(n)) => ps.iter().find(|p| p.name.name == *n),
            (None, None) => None,
        }?;
        p.ty.as_ref()
    };
    let mut out = Vec::new();
    for (i, (v, _)) in pos.iter().enumerate() {
        leaf_syms(v, ty_of(Some(i), None), &mut out);
    }
    for (n, v, _) in named {
        leaf_syms(v, ty_of(None, Some(n)), &mut out);
    }
    out
}

/// [`sym_dims`] of one argument and its annotation.
fn leaf_syms(v: &Value, ty: Option<&TypeExpr>, out: &mut Vec<Vec<Option<Name>>>) {
    match v {
        Value::Tensor(t) if !is_static(t) => {
            let mut dims = vec![None; t.rank()];
            if let Some(TypeExprKind::Tensor { dims: Some(ds), .. }) = ty.map(|t| &t.kind) {
                // Dims after a `...` count from the end.
                let from = ds
                    .iter()
                    .position(|d| d.kind == DimExprKind::Ellipsis)
                    .map_or(0, |p| p + 1);
                let tail = ds.get(from..).unwrap_or_default();
                if from > 0 || tail.len() == dims.len() {
                    let start = dims.len().saturating_sub(tail.len());
                    for (slot, d) in dims.iter_mut().skip(start).zip(tail) {
                        if let DimExprKind::Sym(n) = &d.kind {
                            *slot = Some(n.clone());
                        }
                    }
                }
            }
            out.push(dims);
        }
        Value::Tuple(items) => {
            let tys = match ty.map(|t| &t.kind) {
                Some(TypeExprKind::Tuple(ts)) => Some(ts),
                _ => None,
            };
            for (i, x) in items.iter().enumerate() {
                leaf_syms(x, tys.and_then(|ts| ts.get(i)), out);
            }
        }
        Value::Record(m) => {
            let fields = match ty.map(|t| &t.kind) {
                Some(TypeExprKind::Record(fs)) => Some(fs),
                _ => None,
            };
            for (k, x) in m.iter() {
                let fty =
                    fields.and_then(|fs| fs.iter().find(|(n, _)| n.name == *k).map(|(_, t)| t));
                leaf_syms(x, fty, out);
            }
        }
        _ => {}
    }
}

/// `sig` with the sizes of symbolic dims left out, and the size of each symbolic dim (none
/// when one name has two sizes, which the checker rules out).
fn abstract_sig(sig: &Signature, syms: &[Vec<Option<Name>>]) -> (Signature, Vec<(Name, usize)>) {
    let mut it = syms.iter();
    let mut sizes: Vec<(Name, usize)> = Vec::new();
    let mut clash = false;
    let abs = sig
        .iter()
        .map(|(n, a)| (n.clone(), abstract_arg(a, &mut it, &mut sizes, &mut clash)))
        .collect();
    if clash {
        return (sig.clone(), Vec::new());
    }
    sizes.sort();
    (abs, sizes)
}

fn abstract_arg<'s>(
    a: &ArgSig,
    syms: &mut impl Iterator<Item = &'s Vec<Option<Name>>>,
    sizes: &mut Vec<(Name, usize)>,
    clash: &mut bool,
) -> ArgSig {
    match a {
        ArgSig::Tensor {
            storage,
            dtype,
            weak,
            shape,
        } => {
            let names = syms.next();
            let shape = shape
                .iter()
                .enumerate()
                .map(
                    |(k, &n)| match names.and_then(|ns| ns.get(k)).cloned().flatten() {
                        Some(name) => {
                            match sizes.iter().find(|(m, _)| *m == name) {
                                Some((_, s)) if *s != n => *clash = true,
                                Some(_) => {}
                                None => sizes.push((name, n)),
                            }
                            usize::MAX
                        }
                        None => n,
                    },
                )
                .collect();
            ArgSig::Tensor {
                storage: *storage,
                dtype: *dtype,
                weak: *weak,
                shape,
            }
        }
        ArgSig::Tuple(xs) => ArgSig::Tuple(
            xs.iter()
                .map(|x| abstract_arg(x, syms, sizes, clash))
                .collect(),
        ),
        ArgSig::Record(fs) => ArgSig::Record(
            fs.iter()
                .map(|(k, x)| (k.clone(), abstract_arg(x, syms, sizes, clash)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether two lists of captured tensors are the same tensors or hold the same elements.
fn same_tensors(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.id() == y.id()
                || (x.dtype() == y.dtype()
                    && x.shape() == y.shape()
                    && match (x.to_f64_vec(), y.to_f64_vec()) {
                        (Some(p), Some(q)) => {
                            p.iter().zip(&q).all(|(u, v)| u.to_bits() == v.to_bits())
                        }
                        _ => false,
                    })
        })
}

/// Whether a staged function's result holds a function.
fn returns_function(v: &Value) -> bool {
    match v {
        Value::Fn(_) | Value::Derived(_) | Value::Jit(_) | Value::Model(_) => true,
        Value::Tuple(items) => items.iter().any(returns_function),
        Value::Record(m) => m.values().any(returns_function),
        _ => false,
    }
}

/// Prints a staged graph's `print` nodes as eager mode prints the `print` calls they came
/// from: a line is written when its last tensor arrives.
struct Printer<'a> {
    out: &'a mut (dyn Write + Send),
    /// Where the lines of `log_*` calls go.
    summaries: &'a mut crate::insight::Summaries,
    /// The progress bar on the screen, cleared while a line is written.
    bar: Option<indicatif::ProgressBar>,
    g: &'a StagedFn,
    pending: Vec<Tensor>,
    failed: Option<std::io::Error>,
    /// The first summary that could not be written, and the source of its call.
    log_failed: Option<(Box<lang::Diagnostic>, u32)>,
    /// Where the printed tensors are kept, when the caller compares them
    /// (`--check-modes`).
    kept: Option<&'a mut Vec<Tensor>>,
}

impl Effects for Printer<'_> {
    fn print(&mut self, _node: NodeId, value: &Tensor, span: IrSpan) {
        if let Some(kept) = self.kept.as_deref_mut() {
            kept.push(value.clone());
        }
        let Some(pl) = self.g.prints.get(&span) else {
            return;
        };
        // A line's tensors arrive one `print` node at a time, in order (the token orders
        // them); a line without tensors has one node whose value is not shown.
        if pl.leaves > 0 {
            self.pending.push(value.clone());
            if self.pending.len() < pl.leaves {
                return;
            }
        }
        let mut like = Vec::new();
        pl.args.iter().for_each(|a| tensor_leaves(a, &mut like));
        let mut it = std::mem::take(&mut self.pending)
            .into_iter()
            .zip(like)
            .map(|(t, l)| TensorVal { t, ..l });
        let args: Vec<Value> = pl.args.iter().map(|a| substitute(a, &mut it)).collect();
        if let Some(log) = &pl.log {
            if self.log_failed.is_some() {
                return;
            }
            let at = Span::new(span.start as usize, span.end as usize);
            let (Some(step), Some(value)) = (args.first(), args.get(1)) else {
                return;
            };
            let r = crate::eval::builtins::write_summary(
                self.summaries,
                log.kind,
                &log.tag,
                step,
                value,
                at,
            );
            if let Err(Flow::Error(e)) = r {
                self.log_failed = Some((Box::new(e.diag), span.src));
            }
            return;
        }
        let parts: Vec<String> = args.iter().map(crate::value::display).collect();
        let (out, line) = (&mut self.out, parts.join(" "));
        let written = crate::insight::progress::suspend(&self.bar, || {
            writeln!(out, "{line}").and_then(|()| out.flush())
        });
        if let Err(e) = written {
            self.failed.get_or_insert(e);
        }
    }
}
