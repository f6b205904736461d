//! Differentiation in eager mode: `grad`, `value_and_grad`, `vjp`, `jvp`, `hessian` and
//! `stop_gradient` (LANGUAGE.md §7).
//!
//! Every primitive the evaluator runs goes through [`Eval::exec`]; while a derivative is
//! being taken, `exec` also hands the primitive to [`on_exec`], which shows it to each
//! active trace. The traces form a stack, one level per derivative in progress, outermost
//! first:
//! - a reverse trace (`grad` and its relatives, `vjp`) records the primitive on its
//!   [`Tape`] when one of the operands is a value it traces, and then traces the result;
//! - a forward trace (`jvp`, the outer half of `hessian`) computes the result's tangent from
//!   the operands' tangents with the primitive's JVP rule right away.
//!
//! Traced values are recognised by identity ([`Tensor::id`]): a tensor and its clones (what
//! variables hold) share one, and nothing else has it. The inputs being differentiated are
//! given a new identity ([`Tensor::renewed`]) at each level, so the same tensor passed twice
//! is two inputs, and each level only knows the values computed from its own inputs. That
//! keeps the levels apart (no perturbation confusion): in
//! `grad(|x| x * grad(|y| x * y)(1.0))(2.0)` the inner level traces `y` only, and `x` stays
//! a constant to it, while the outer level sees `x` in everything.
//!
//! The derivative computations (backward sweeps, JVP rules) apply their primitives through
//! the same `exec`, with only the levels outside their own active, so the outer levels
//! record them: that is how `grad(grad(f))` and third derivatives work. `hessian` is
//! forward-over-reverse: one `jvp` of the gradient per input element, each giving a row.
//!
//! What bypasses `exec` loses gradients: moving a value with `to(x, device)` goes through
//! the host, and the result of that (like a value made from host data: literals, `arange`,
//! the results of `len` or `shape`) is a constant to every trace.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use autodiff::rules::{self, Differentiability};
use autodiff::tape::{NodeId, Tape};
use devices::{Tensor, TensorId};
use ir::{DType, Emit, Op, TensorType};
use lang::ast::Name;
use lang::{Diagnostic, Span};

use super::super::Eval;
use super::super::errors::{self, Flow, R};
use crate::value::{TensorVal, Value};

/// One level of differentiation in progress.
enum Trace {
    /// Reverse mode: the tape and the node of each traced value.
    Reverse {
        tape: Tape<Tensor>,
        nodes: HashMap<TensorId, NodeId, foldhash::fast::RandomState>,
    },
    /// Forward mode: the tangent of each traced value.
    Forward {
        tangents: HashMap<TensorId, Tensor, foldhash::fast::RandomState>,
    },
}

/// The stack of traces of a session.
#[derive(Default)]
pub(crate) struct Traces {
    stack: RefCell<Vec<Trace>>,
    /// How many levels (from the outermost) see the primitives run now: all of them,
    /// except while a level's own JVP rule runs, which only the levels outside it see.
    active: Cell<usize>,
}

impl Traces {
    /// True when some level is watching the primitives being run.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.active.get() > 0
    }

    fn push(&self, t: Trace) -> usize {
        let mut s = self.stack.borrow_mut();
        s.push(t);
        self.active.set(s.len());
        s.len() - 1
    }

    /// Removes the innermost level (which must be `level`).
    fn pop(&self, level: usize) -> Option<Trace> {
        let mut s = self.stack.borrow_mut();
        let t = if s.len() == level + 1 { s.pop() } else { None };
        self.active.set(s.len());
        t
    }
}

/// Shows a primitive just run (`op` on `inputs`, giving `output`) to the active traces.
pub(crate) fn on_exec(
    ev: &Eval<'_>,
    op: &Op,
    inputs: &[&Tensor],
    output: &Tensor,
    span: Span,
) -> R<()> {
    if rules::differentiability(op.prim()) == Differentiability::NonDifferentiable {
        return Ok(());
    }
    let traces = &ev.st.traces;
    let n = traces.active.get();
    for level in 0..n {
        let mut stack = traces.stack.borrow_mut();
        let Some(trace) = stack.get_mut(level) else {
            break;
        };
        match trace {
            Trace::Reverse { tape, nodes } => {
                let parents: Vec<Option<NodeId>> =
                    inputs.iter().map(|t| nodes.get(&t.id()).copied()).collect();
                if parents.iter().any(Option::is_some) {
                    let node = tape.record(op, parents, inputs, output, Tensor::ttype);
                    nodes.insert(output.id(), node);
                }
            }
            Trace::Forward { tangents } => {
                let ts: Vec<Option<Tensor>> = inputs
                    .iter()
                    .map(|t| tangents.get(&t.id()).cloned())
                    .collect();
                if ts.iter().all(Option::is_none) {
                    continue;
                }
                drop(stack);
                let owned: Vec<Tensor> = inputs.iter().map(|&t| t.clone()).collect();
                let saved = traces.active.replace(level);
                let r = rules::jvp(&mut ExecEmit { ev, span }, op, &owned, output, &ts);
                traces.active.set(saved);
                if let Some(t) = r? {
                    let mut stack = traces.stack.borrow_mut();
                    if let Some(Trace::Forward { tangents }) = stack.get_mut(level) {
                        tangents.insert(output.id(), t);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether an active level knows `t` (has it on a tape or carries a tangent for it).
pub(crate) fn is_traced(ev: &Eval<'_>, t: &Tensor) -> bool {
    let traces = &ev.st.traces;
    let n = traces.active.get();
    if n == 0 {
        return false;
    }
    let id = t.id();
    traces.stack.borrow().iter().take(n).any(|tr| match tr {
        Trace::Reverse { nodes, .. } => nodes.contains_key(&id),
        Trace::Forward { tangents } => tangents.contains_key(&id),
    })
}

/// Makes `to` (a renewed `from`) known to the active levels exactly as `from` is.
fn alias(ev: &Eval<'_>, from: &Tensor, to: &Tensor) {
    let traces = &ev.st.traces;
    let n = traces.active.get();
    let mut stack = traces.stack.borrow_mut();
    for trace in stack.iter_mut().take(n) {
        match trace {
            Trace::Reverse { nodes, .. } => {
                if let Some(&node) = nodes.get(&from.id()) {
                    nodes.insert(to.id(), node);
                }
            }
            Trace::Forward { tangents } => {
                if let Some(t) = tangents.get(&from.id()).cloned() {
                    tangents.insert(to.id(), t);
                }
            }
        }
    }
}

/// The [`Emit`] of eager mode: each primitive runs through [`Eval::exec`], where the active
/// traces see it.
struct ExecEmit<'a, 's> {
    ev: &'a Eval<'s>,
    span: Span,
}

impl Emit for ExecEmit<'_, '_> {
    type Val = Tensor;
    type Err = Flow;

    fn emit(&mut self, op: &Op, args: &[&Tensor]) -> R<Tensor> {
        self.ev.exec(op, args, self.span)
    }

    fn ttype(&self, v: &Tensor) -> TensorType {
        v.ttype()
    }

    // The rules ask for dtypes and dims far more often than for whole types; the tensor
    // answers both without building a `TensorType`.
    fn dtype(&self, v: &Tensor) -> DType {
        v.dtype()
    }

    fn dims(&self, v: &Tensor) -> Vec<usize> {
        v.shape().to_vec()
    }

    // One stored element seen through zero strides, made without applying (and so without
    // tracing) a primitive: the sweep asks for one per operand of every linear node.
    fn placeholder(&mut self, t: &TensorType) -> R<Tensor> {
        let dims: Vec<usize> = t.shape.0.iter().map(|d| d.known().unwrap_or(0)).collect();
        let value = if t.dtype.is_float() { f64::NAN } else { 0.0 };
        Ok(Tensor::filled(value, t.dtype, &dims))
    }
}

impl<'a, 's> ExecEmit<'a, 's> {
    fn new(ev: &'a Eval<'s>, span: Span) -> Self {
        ExecEmit { ev, span }
    }
}

/// Which derivative a [`Derived`] function computes.
#[derive(Debug)]
pub enum Kind {
    /// `grad(f, wrt)`.
    Grad,
    /// `value_and_grad(f, wrt)`.
    ValueAndGrad,
    /// `hessian(f, wrt)`.
    Hessian,
    /// The pullback that `vjp` returns.
    Pullback(Pullback),
}

/// A function made by a differentiation builtin.
#[derive(Debug)]
pub struct Derived {
    /// What it computes.
    pub kind: Kind,
    /// The function differentiated (unused by a pullback).
    pub f: Value,
    /// The argument positions differentiated, and whether they were given as a tuple.
    pub wrt: (Vec<usize>, bool),
    /// Where the builtin was called.
    pub at: Span,
}

/// What a pullback keeps: the tape of the function's run, its output's node and the inputs'
/// structure to rebuild cotangents in.
pub struct Pullback {
    tape: Tape<Tensor>,
    out: Option<NodeId>,
    out_type: (DType, Vec<usize>),
    inputs: Vec<Value>,
    /// Inside a staged function: the function and the random key it ran with. The tape is
    /// then empty; a call stages the reverse pass on the IR instead, recomputing the
    /// function with the same key (so the same draws) and its prints muted.
    staged: Option<(Value, Tensor)>,
}

impl std::fmt::Debug for Pullback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<pullback of {} nodes>", self.tape.len())
    }
}

/// The named argument `wrt` as positions.
fn wrt_arg(ev: &Eval<'_>, named: &[(Name, Value, Span)]) -> R<(Vec<usize>, bool)> {
    let Some((_, v, s)) = named.iter().find(|(n, _, _)| &**n == "wrt") else {
        return Ok((vec![0], false));
    };
    let one = |v: &Value| -> R<usize> {
        let i = ev.scalar_int(v, *s)?;
        usize::try_from(i).map_err(|_| {
            errors::bad_value(format!("`wrt` must be an argument position, found {i}"), *s)
        })
    };
    match v {
        Value::Tuple(items) => Ok((items.iter().map(one).collect::<R<_>>()?, true)),
        other => Ok((vec![one(other)?], false)),
    }
}

/// `grad`, `value_and_grad`, `hessian`, `vjp`, `jvp` called with their arguments.
pub(crate) fn builtin(
    ev: &mut Eval<'_>,
    name: &str,
    pos: &[(Value, Span)],
    named: &[(Name, Value, Span)],
    span: Span,
) -> R<Value> {
    let f = pos
        .first()
        .map(|(v, _)| v.clone())
        .or_else(|| {
            named
                .iter()
                .find(|(n, _, _)| &**n == "f")
                .map(|(_, v, _)| v.clone())
        })
        .ok_or_else(|| errors::mismatch(format!("`{name}` needs a function"), span))?;
    let kind = match name {
        "grad" => Kind::Grad,
        "value_and_grad" => Kind::ValueAndGrad,
        "hessian" => Kind::Hessian,
        "vjp" => {
            let xs: Vec<(Value, Span)> = pos.iter().skip(1).cloned().collect();
            return vjp(ev, &f, xs, span);
        }
        _ => {
            let (Some((p, ps)), Some((t, _))) = (pos.get(1), pos.get(2)) else {
                return Err(errors::mismatch(
                    "`jvp` takes a function, the primals and the tangents".to_string(),
                    span,
                ));
            };
            return jvp(ev, &f, (p, *ps), t, span);
        }
    };
    let wrt = wrt_arg(ev, named)?;
    Ok(Value::Derived(Arc::new(Derived {
        kind,
        f,
        wrt,
        at: span,
    })))
}

/// Calls a function made by a differentiation builtin.
pub(crate) fn call_derived(
    ev: &mut Eval<'_>,
    d: &Derived,
    pos: Vec<(Value, Span)>,
    named: Vec<(Name, Value, Span)>,
    span: Span,
) -> R<Value> {
    if let Kind::Pullback(p) = &d.kind {
        return pullback(ev, p, pos, span);
    }
    let (idxs, many) = &d.wrt;
    if let Some(&bad) = idxs.iter().find(|&&i| i >= pos.len()) {
        return Err(Flow::error(
            Diagnostic::error(
                "E0702",
                format!(
                    "`wrt: {bad}` is out of range: the function was given {} argument{}",
                    pos.len(),
                    if pos.len() == 1 { "" } else { "s" }
                ),
                d.at,
            )
            .with_primary_label(format!(
                "argument positions are 0 to {}",
                pos.len().saturating_sub(1)
            ))
            .with_note("`wrt` counts arguments from 0"),
        ));
    }
    if let Kind::Hessian = d.kind {
        let i = idxs.first().copied().unwrap_or(0);
        return hessian(ev, &d.f, pos, named, i, span);
    }
    let (value, grads) = reverse(ev, &d.f, pos, named, idxs, d.at, span)?;
    let g = if *many {
        Value::Tuple(grads.into())
    } else {
        grads.into_iter().next().unwrap_or(Value::Unit)
    };
    Ok(match d.kind {
        Kind::ValueAndGrad => Value::Tuple(vec![value, g].into()),
        _ => g,
    })
}

/// The tensor leaves of `v` in order (record fields sorted), with a flag for float ones.
fn leaves(v: &Value, out: &mut Vec<TensorVal>) {
    match v {
        Value::Tensor(t) => out.push(t.clone()),
        Value::Tuple(items) => items.iter().for_each(|x| leaves(x, out)),
        Value::Record(fields) => fields.values().for_each(|x| leaves(x, out)),
        _ => {}
    }
}

/// `v` with its tensor leaves replaced, in order, by `new`.
fn rebuild(v: &Value, new: &mut impl Iterator<Item = Value>) -> Value {
    match v {
        Value::Tensor(_) => new.next().unwrap_or(Value::Unit),
        Value::Tuple(items) => Value::Tuple(items.iter().map(|x| rebuild(x, new)).collect()),
        Value::Record(fields) => Value::Record(Arc::new(
            fields
                .iter()
                .map(|(k, x)| (k.clone(), rebuild(x, new)))
                .collect::<BTreeMap<_, _>>(),
        )),
        other => other.clone(),
    }
}

/// An argument differentiated with respect to must hold floats.
fn float_arg(i: usize, v: &Value, span: Span) -> R<()> {
    if let Value::Tensor(t) = v
        && !t.dtype.is_float()
    {
        return Err(Flow::error(
            Diagnostic::error(
                "E0703",
                format!(
                    "cannot differentiate with respect to argument {i}: it is {} (only floats have gradients)",
                    v.describe()
                ),
                span,
            )
            .with_primary_label(format!("this is {}", v.describe())),
        ));
    }
    Ok(())
}

/// Watches the float leaves of `v` on the reverse level `level`: each gets a new identity
/// (known to the outer levels as the old one). Returns the renewed value and the leaves'
/// nodes in order (`None` for integer and bool leaves, which have no gradient).
fn watch(ev: &Eval<'_>, level: usize, v: &Value) -> (Value, Vec<Option<NodeId>>) {
    let mut ls = Vec::new();
    leaves(v, &mut ls);
    let mut ids = Vec::with_capacity(ls.len());
    let mut new = Vec::with_capacity(ls.len());
    for l in ls {
        if !l.dtype.is_float() {
            ids.push(None);
            new.push(Value::Tensor(l));
            continue;
        }
        let t = l.t.renewed();
        alias(ev, &l.t, &t);
        let mut stack = ev.st.traces.stack.borrow_mut();
        if let Some(Trace::Reverse { tape, nodes }) = stack.get_mut(level) {
            let n = tape.watch();
            nodes.insert(t.id(), n);
            ids.push(Some(n));
        }
        new.push(Value::Tensor(TensorVal { t, ..l }));
    }
    (rebuild(v, &mut new.into_iter()), ids)
}

/// The output of a differentiated function, which must be a float scalar.
pub(crate) fn scalar_out(v: &Value, at: Span, span: Span) -> R<TensorVal> {
    match v {
        Value::Tensor(t) if t.dtype.is_float() && t.t.rank() == 0 => Ok(t.clone()),
        other => Err(Flow::error(
            Diagnostic::error(
                "E0701",
                format!(
                    "the gradient needs a function that returns a float scalar, but it returned {}",
                    other.describe()
                ),
                span,
            )
            .with_label(at, "the gradient is taken here")
            .with_hint("reduce the result to a scalar: return `sum(...)` or `mean(...)` of it"),
        )),
    }
}

/// Gradients as values: leaf `k` of each input gets `grads[k]`, or zeros, in the leaf's
/// dtype, strong.
fn structure(
    ev: &Eval<'_>,
    inputs: &[Value],
    grads: Vec<Option<Tensor>>,
    span: Span,
) -> R<Vec<Value>> {
    let mut grads = grads.into_iter();
    let mut out = Vec::with_capacity(inputs.len());
    for x in inputs {
        let mut ls = Vec::new();
        leaves(x, &mut ls);
        let mut new = Vec::with_capacity(ls.len());
        for l in ls {
            let g = if l.dtype.is_float() {
                grads.next().flatten()
            } else {
                None
            };
            let g = match g {
                Some(g) => ev.cast(&g, l.dtype, span)?,
                None => ev.exec(
                    &Op::Full {
                        shape: ir::Shape::known(l.t.shape()),
                        dtype: l.dtype,
                        value: 0.0,
                    },
                    &[],
                    span,
                )?,
            };
            new.push(Value::Tensor(TensorVal::strong_of(g)));
        }
        out.push(rebuild(x, &mut new.into_iter()));
    }
    Ok(out)
}

/// Runs `f` on `pos` under a new reverse level watching the arguments `wrt`; returns the
/// output, the tape, the output's node and the watched (renewed) arguments.
#[allow(clippy::type_complexity)]
fn record(
    ev: &mut Eval<'_>,
    f: &Value,
    mut pos: Vec<(Value, Span)>,
    named: Vec<(Name, Value, Span)>,
    wrt: &[usize],
    span: Span,
) -> R<(Value, Tape<Tensor>, Option<NodeId>, Vec<Value>)> {
    for &i in wrt {
        if let Some((v, s)) = pos.get(i) {
            float_arg(i, v, *s)?;
        }
    }
    let level = ev.st.traces.push(Trace::Reverse {
        tape: Tape::new(),
        nodes: HashMap::default(),
    });
    let mut watched = Vec::with_capacity(wrt.len());
    for &i in wrt {
        if let Some((v, _)) = pos.get_mut(i) {
            let (nv, _) = watch(ev, level, v);
            *v = nv.clone();
            watched.push(nv);
        }
    }
    let r = ev.call(f, pos, named, span);
    let trace = ev.st.traces.pop(level);
    let out = r?;
    let Some(Trace::Reverse { tape, nodes }) = trace else {
        return Err(errors::internal("the gradient trace was lost", span));
    };
    let mut ls = Vec::new();
    leaves(&out, &mut ls);
    let node = match ls.as_slice() {
        [one] if matches!(out, Value::Tensor(_)) => nodes.get(&one.t.id()).copied(),
        _ => None,
    };
    Ok((out, tape, node, watched))
}

/// The value of `f` at `pos` and its gradients with respect to the arguments `wrt`.
fn reverse(
    ev: &mut Eval<'_>,
    f: &Value,
    pos: Vec<(Value, Span)>,
    named: Vec<(Name, Value, Span)>,
    wrt: &[usize],
    at: Span,
    span: Span,
) -> R<(Value, Vec<Value>)> {
    if ev.staging() {
        // Inside a staged function: reverse mode on the IR (`stage::grad`).
        for &i in wrt {
            if let Some((v, s)) = pos.get(i) {
                float_arg(i, v, *s)?;
            }
        }
        let (y, grads, watched) = ev.reverse_staged(f, pos, named, wrt, at, span)?;
        let grads = structure(ev, &watched, grads, span)?;
        return Ok((Value::Tensor(y), grads));
    }
    let (out, tape, node, watched) = record(ev, f, pos, named, wrt, span)?;
    let y = scalar_out(&out, at, span)?;
    let grads = match node {
        Some(node) => {
            let seed = ones_like(ev, &y.t, span)?;
            tape.backward(&mut ExecEmit::new(ev, span), node, seed)?
        }
        None => vec![None; tape.watched()],
    };
    let grads = structure(ev, &watched, grads, span)?;
    Ok((Value::Tensor(TensorVal::strong_of(y.t)), grads))
}

/// Ones shaped and stored like `t`.
fn ones_like(ev: &Eval<'_>, t: &Tensor, span: Span) -> R<Tensor> {
    ExecEmit::new(ev, span).ones_like(t)
}

/// `vjp(f, x...)`: the value and a pullback of the cotangents of all the inputs.
fn vjp(ev: &mut Eval<'_>, f: &Value, xs: Vec<(Value, Span)>, span: Span) -> R<Value> {
    let wrt: Vec<usize> = (0..xs.len()).collect();
    let (out, tape, node, watched, staged) = if ev.staging() {
        // The eager tape cannot see into staged regions: the pullback stages its reverse
        // pass on the IR when it is called.
        let key = ev.with_stager(span, |s| Ok(s.tensor(s.rng)))?;
        let inputs: Vec<Value> = xs.iter().map(|(v, _)| v.clone()).collect();
        let out = ev.call(f, xs, Vec::new(), span)?;
        (out, Tape::new(), None, inputs, Some((f.clone(), key)))
    } else {
        let (out, tape, node, watched) = record(ev, f, xs, Vec::new(), &wrt, span)?;
        (out, tape, node, watched, None)
    };
    let Value::Tensor(y) = &out else {
        return Err(errors::mismatch(
            format!(
                "`vjp` needs a function that returns a tensor, found {}",
                out.describe()
            ),
            span,
        ));
    };
    let p = Pullback {
        tape,
        out: node,
        out_type: (y.t.dtype(), y.t.shape().to_vec()),
        inputs: watched,
        staged,
    };
    let pb = Value::Derived(Arc::new(Derived {
        kind: Kind::Pullback(p),
        f: f.clone(),
        wrt: (wrt, true),
        at: span,
    }));
    Ok(Value::Tuple(
        vec![Value::Tensor(TensorVal::strong_of(y.t.clone())), pb].into(),
    ))
}

/// Calls a pullback with the cotangent of the output.
fn pullback(ev: &mut Eval<'_>, p: &Pullback, pos: Vec<(Value, Span)>, span: Span) -> R<Value> {
    let [(Value::Tensor(v), vs)] = pos.as_slice() else {
        return Err(errors::mismatch(
            "a pullback takes one argument: the cotangent of the output".to_string(),
            span,
        ));
    };
    let (dtype, dims) = &p.out_type;
    if v.t.shape() != dims.as_slice() {
        return Err(errors::mismatch(
            format!(
                "the cotangent must have the shape of the output {:?}, found {:?}",
                dims,
                v.t.shape()
            ),
            *vs,
        ));
    }
    let seed = ev.cast(&v.t, *dtype, *vs)?;
    if let Some((f, key)) = &p.staged {
        // The cotangent's pullback is the gradient of `sum(f(x) * seed)`.
        let run = |ev: &mut Eval<'_>, pos: Vec<(Value, Span)>| -> R<Value> {
            let y = ev.call(f, pos, Vec::new(), span)?;
            let Value::Tensor(y) = y else {
                return Err(errors::internal("a pullback's function changed", span));
            };
            let prod = ev.exec(
                &Op::Binary {
                    op: ir::BinaryOp::Mul,
                },
                &[&y.t, &seed],
                span,
            )?;
            let sum = Op::Reduce {
                op: ir::ReduceOp::Sum,
                axes: (0..prod.rank()).collect(),
                keepdims: false,
            };
            Ok(Value::Tensor(TensorVal::strong_of(ev.exec(
                &sum,
                &[&prod],
                span,
            )?)))
        };
        let pos: Vec<(Value, Span)> = p.inputs.iter().map(|v| (v.clone(), span)).collect();
        let wrt: Vec<usize> = (0..pos.len()).collect();
        let (_, grads, watched) = ev.reverse_staged_with(pos, &wrt, Some(key), span, &run)?;
        let mut cts = structure(ev, &watched, grads, span)?;
        return Ok(if cts.len() == 1 {
            cts.pop().unwrap_or(Value::Unit)
        } else {
            Value::Tuple(cts.into())
        });
    }
    let grads = match p.out {
        Some(node) => p
            .tape
            .backward_keep(&mut ExecEmit::new(ev, span), node, seed)?,
        None => vec![None; p.tape.watched()],
    };
    let mut cts = structure(ev, &p.inputs, grads, span)?;
    Ok(if cts.len() == 1 {
        cts.pop().unwrap_or(Value::Unit)
    } else {
        Value::Tuple(cts.into())
    })
}

/// `jvp(f, primals, tangents)`: the value and its tangent, pushed forward through each
/// primitive's JVP rule.
fn jvp(
    ev: &mut Eval<'_>,
    f: &Value,
    (primals, pspan): (&Value, Span),
    tangents: &Value,
    span: Span,
) -> R<Value> {
    let (Value::Tuple(ps), Value::Tuple(ts)) = (primals, tangents) else {
        return Err(errors::mismatch(
            "`jvp` takes the primals and the tangents as tuples".to_string(),
            pspan,
        ));
    };
    if ev.staging() {
        // Inside a staged function: forward mode on the IR (`stage::grad`).
        let (out, tangent) = ev.forward_staged(f, ps, ts, span)?;
        return Ok(Value::Tuple(vec![out, tangent].into()));
    }
    let level = ev.st.traces.push(Trace::Forward {
        tangents: HashMap::default(),
    });
    let r = (|| {
        let mut args = Vec::with_capacity(ps.len());
        for (p, t) in ps.iter().zip(ts.iter()) {
            let nv = seed_forward(ev, level, p, t, pspan)?;
            args.push((nv, pspan));
        }
        ev.call(f, args, Vec::new(), span)
    })();
    let trace = ev.st.traces.pop(level);
    let out = r?;
    let Some(Trace::Forward { tangents }) = trace else {
        return Err(errors::internal("the tangent trace was lost", span));
    };
    let tangent = tangents_of(ev, &out, &tangents, span)?;
    Ok(Value::Tuple(vec![out, tangent].into()))
}

/// Gives the float leaves of primal `p` new identities with the leaves of `t` as their
/// tangents on forward level `level`.
fn seed_forward(ev: &Eval<'_>, level: usize, p: &Value, t: &Value, span: Span) -> R<Value> {
    let (mut pl, mut tl) = (Vec::new(), Vec::new());
    leaves(p, &mut pl);
    leaves(t, &mut tl);
    let mut new = Vec::with_capacity(pl.len());
    for (l, tv) in pl.into_iter().zip(tl) {
        if !l.dtype.is_float() {
            new.push(Value::Tensor(l));
            continue;
        }
        let x = l.t.renewed();
        alias(ev, &l.t, &x);
        let tan = ev.cast(&tv.t, l.t.dtype(), span)?;
        let tan = ExecEmit::new(ev, span).broadcast_to(&tan, l.t.shape())?;
        let mut stack = ev.st.traces.stack.borrow_mut();
        if let Some(Trace::Forward { tangents }) = stack.get_mut(level) {
            tangents.insert(x.id(), tan);
        }
        new.push(Value::Tensor(TensorVal { t: x, ..l }));
    }
    Ok(rebuild(p, &mut new.into_iter()))
}

/// The tangents of the leaves of `out` (zeros where the output does not depend on the
/// primals), in the structure of `out`.
fn tangents_of(
    ev: &Eval<'_>,
    out: &Value,
    tangents: &HashMap<TensorId, Tensor, foldhash::fast::RandomState>,
    span: Span,
) -> R<Value> {
    let mut ls = Vec::new();
    leaves(out, &mut ls);
    let mut new = Vec::with_capacity(ls.len());
    for l in ls {
        let t = match tangents.get(&l.t.id()) {
            Some(t) => ev.cast(t, l.dtype, span)?,
            None => ExecEmit::new(ev, span).zeros_like(&ev.cast(&l.t, l.dtype, span)?)?,
        };
        new.push(Value::Tensor(TensorVal::strong_of(t)));
    }
    Ok(rebuild(out, &mut new.into_iter()))
}

/// `hessian(f, wrt: i)` at `pos`: forward-over-reverse. For each element `k` of each leaf
/// `a` of the argument, a forward level with the basis tangent `e_k` on that leaf (zero on
/// the others) runs the gradient; the tangent of the gradient's leaf `b` is row `k` of the
/// block `H[a][b]`, whose shape is `a.shape ++ b.shape`. For a tensor argument that is the
/// whole Hessian; for a tuple or record the blocks nest in its structure twice over, as in
/// JAX (`h.w.b` is ∂²f/∂w∂b).
fn hessian(
    ev: &mut Eval<'_>,
    f: &Value,
    pos: Vec<(Value, Span)>,
    named: Vec<(Name, Value, Span)>,
    i: usize,
    span: Span,
) -> R<Value> {
    let Some((x, xs)) = pos.get(i).cloned() else {
        return Err(errors::mismatch(
            "`hessian` differentiates with respect to an argument it is given".to_string(),
            span,
        ));
    };
    let mut ls = Vec::new();
    leaves(&x, &mut ls);
    if ls.is_empty() {
        return Err(errors::mismatch(
            "`hessian` differentiates with respect to tensors: the argument holds none".to_string(),
            xs,
        ));
    }
    for l in &ls {
        float_arg(i, &Value::Tensor(l.clone()), xs)?;
    }
    let n = ls.len();
    let mut blocks: Vec<Vec<Vec<Tensor>>> = vec![vec![Vec::new(); n]; n];
    for a in 0..n {
        let numel = ls[a].t.numel();
        for k in 0..numel {
            let tangent = basis_tangent(ev, &x, &ls, a, k, span)?;
            if ev.staging() {
                // Inside a staged function the gradient is an IR graph, which an eager
                // forward trace cannot see into: forward mode on the IR instead.
                let rows = staged_hessian_rows(ev, f, &pos, &named, i, &tangent, span)?;
                push_rows(ev, &mut blocks[a], &ls, rows, span)?;
                continue;
            }
            let level = ev.st.traces.push(Trace::Forward {
                tangents: HashMap::default(),
            });
            let mut args = pos.clone();
            let r = (|| {
                let seeded = seed_forward(ev, level, &x, &tangent, xs)?;
                if let Some(slot) = args.get_mut(i) {
                    slot.0 = seeded;
                }
                let (_, grads) = reverse(ev, f, args, named.clone(), &[i], span, span)?;
                let g = grads.into_iter().next().unwrap_or(Value::Unit);
                let mut gl = Vec::new();
                leaves(&g, &mut gl);
                let stack = ev.st.traces.stack.borrow();
                let tangents = match stack.get(level) {
                    Some(Trace::Forward { tangents }) => tangents,
                    _ => return Err(errors::internal("the tangent trace was lost", span)),
                };
                Ok(gl
                    .iter()
                    .map(|t| tangents.get(&t.t.id()).cloned())
                    .collect::<Vec<_>>())
            })();
            ev.st.traces.pop(level);
            let rows = r?;
            push_rows(ev, &mut blocks[a], &ls, rows, span)?;
        }
    }
    let mut outer = Vec::with_capacity(n);
    for (a, row_blocks) in blocks.into_iter().enumerate() {
        let mut inner = Vec::with_capacity(n);
        for (b, rows) in row_blocks.into_iter().enumerate() {
            let mut dims = ls[a].t.shape().to_vec();
            dims.extend(ls[b].t.shape());
            inner.push(Value::Tensor(TensorVal::strong_of(stack_rows(
                ev,
                rows,
                &dims,
                ls[a].dtype,
                span,
            )?)));
        }
        outer.push(rebuild(&x, &mut inner.into_iter()));
    }
    Ok(rebuild(&x, &mut outer.into_iter()))
}

/// Appends one row of each block `H[a][b]` (the tangent of the gradient's leaf `b`; zeros
/// where there is none) to `blocks`.
fn push_rows(
    ev: &Eval<'_>,
    blocks: &mut [Vec<Tensor>],
    ls: &[TensorVal],
    rows: Vec<Option<Tensor>>,
    span: Span,
) -> R<()> {
    for ((lb, block), row) in ls.iter().zip(blocks.iter_mut()).zip(
        rows.into_iter()
            .chain(std::iter::repeat(None))
            .take(ls.len()),
    ) {
        let row = match row {
            Some(t) => t,
            None => ExecEmit::new(ev, span).zeros_like(&lb.t)?,
        };
        let row = ev.cast(&row, lb.dtype, span)?;
        let mut flat = lb.t.shape().to_vec();
        flat.insert(0, 1);
        block.push(ev.exec(
            &Op::Reshape {
                shape: ir::Shape::known(&flat),
            },
            &[&row],
            span,
        )?);
    }
    Ok(())
}

/// One row of the staged Hessian: the tangent of `grad(f, wrt: i)` along `tangent` (a
/// basis direction of argument `i`), by forward mode on the IR of the staged gradient.
fn staged_hessian_rows(
    ev: &mut Eval<'_>,
    f: &Value,
    pos: &[(Value, Span)],
    named: &[(Name, Value, Span)],
    i: usize,
    tangent: &Value,
    span: Span,
) -> R<Vec<Option<Tensor>>> {
    if !named.is_empty() {
        return Err(crate::stage::staging_error(
            "`hessian` inside a staged function takes its arguments by position".into(),
            span,
        ));
    }
    let g = Value::Derived(Arc::new(Derived {
        kind: Kind::Grad,
        f: f.clone(),
        wrt: (vec![i], false),
        at: span,
    }));
    let primals: Vec<Value> = pos.iter().map(|(v, _)| v.clone()).collect();
    let tangents: Vec<Value> = (0..pos.len())
        .map(|k| if k == i { tangent.clone() } else { Value::Unit })
        .collect();
    let (_, dg) = ev.forward_staged(&g, &primals, &tangents, span)?;
    let mut gl = Vec::new();
    leaves(&dg, &mut gl);
    Ok(gl.into_iter().map(|t| Some(t.t)).collect())
}

/// The tangent for `hessian`'s basis direction `k` of leaf `a`: `x`'s structure with zeros
/// everywhere but a one at element `k` of leaf `a`.
fn basis_tangent(
    ev: &Eval<'_>,
    x: &Value,
    ls: &[TensorVal],
    a: usize,
    k: usize,
    span: Span,
) -> R<Value> {
    let mut new = Vec::with_capacity(ls.len());
    for (b, l) in ls.iter().enumerate() {
        let mut basis = vec![0.0f64; l.t.numel()];
        if b == a
            && let Some(e) = basis.get_mut(k)
        {
            *e = 1.0;
        }
        let t = Tensor::from_vec(basis, l.t.shape()).map_err(|e| ev.device_error(e, span))?;
        new.push(Value::Tensor(TensorVal::strong_of(t)));
    }
    Ok(rebuild(x, &mut new.into_iter()))
}

/// Rows `[1, ...]` stacked and reshaped to `dims` (zeros of `dims` when there are none).
fn stack_rows(
    ev: &Eval<'_>,
    rows: Vec<Tensor>,
    dims: &[usize],
    dtype: DType,
    span: Span,
) -> R<Tensor> {
    if rows.is_empty() {
        return ev.exec(
            &Op::Full {
                shape: ir::Shape::known(dims),
                dtype,
                value: 0.0,
            },
            &[],
            span,
        );
    }
    let refs: Vec<&Tensor> = rows.iter().collect();
    let stacked = ev.exec(&Op::Concat { axis: 0 }, &refs, span)?;
    ev.exec(
        &Op::Reshape {
            shape: ir::Shape::known(dims),
        },
        &[&stacked],
        span,
    )
}

/// `stop_gradient(x)`: `x` under new identities, which no trace knows: gradients stop here.
/// A staged value is a graph value rather than an identity, so it goes through the
/// `stop_gradient` primitive, whose derivative is zero, instead.
pub(super) fn stop_gradient(ev: &mut Eval<'_>, c: &super::Call) -> R<Value> {
    c.req(0)?.map_leaves(&mut |v| match v {
        Value::Tensor(t) if t.t.staged_id().is_some() => Ok(Value::Tensor(TensorVal {
            t: ev.exec(&Op::StopGradient {}, &[&t.t], c.span)?.renewed(),
            ..t.clone()
        })),
        Value::Tensor(t) => Ok(Value::Tensor(TensorVal {
            t: t.t.renewed(),
            ..t.clone()
        })),
        other => Ok(other.clone()),
    })
}
