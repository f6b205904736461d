//! Models loaded from `.msir` files (`load_model`, `docs/export.md`): a value that is called
//! like a function and runs the file's graph with the executor a staged function's graph
//! runs with (`devices::schedule::Plan`), so a loaded model gives the results the exported
//! function gave, bit for bit.
//!
//! A call checks its arguments against the file's signature before anything runs: their
//! structure, dtypes, static scalars, and shapes (known dims exactly, each symbolic dim one
//! size throughout), E0907 at the call otherwise. The random key comes from the session's
//! stream and the stream continues from the key the run gives back, as for a staged call.
//! A model prints nothing (its `print` nodes' layouts stayed with the program that
//! staged it, as they do in ONNX) and its failures are reported at the call, since the
//! source lines its spans pointed into are not in the file.
//!
//! Called inside a function being staged, a model's graph is inlined into the staged graph
//! (its parameters captured as constants), unless it prints or asserts (those effects are
//! reported at an eager call, which an inlined copy could not do) or has symbolic dims
//! (its shape attributes name them); those are E0913. A model cannot be differentiated (a
//! derivative's tape cannot see into the executor; E0909).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use devices::Tensor;
use devices::schedule::{Effects, Plan, Prepared, RunError};
use ir::graph::{NodeId, Span as IrSpan, Type};
use ir::{DType, Dim};
use lang::Span;
use lang::ast::Name;

use crate::eval::Eval;
use crate::eval::errors::{self, Flow, R};
use crate::io::msir::{Role, Signature, Tree, stored_as};
use crate::value::{TensorVal, Value};

/// A model read from a `.msir` file.
pub struct Model {
    /// The file it came from, for messages.
    pub path: String,
    /// How callers' values map onto the graph.
    pub(crate) sig: Signature,
    /// The graph (validated by `io::msir::read`).
    pub graph: ir::Graph,
    /// The graph analysed for the executor, made on the first call.
    prepared: OnceLock<Prepared>,
    /// The parameters, in the order of the `Param` roles, on the host.
    params: Vec<Tensor>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("function", &self.sig.function)
            .field("params", &self.params.len())
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Why the graph cannot be inlined into a staged function, if it cannot: it prints or
    /// asserts (effects a model reports at its call — it prints nothing, and its failures
    /// are the call's — which an inlined copy could not), or its signature has symbolic
    /// dims (its shape attributes name them, and the staged graph's sizes are not
    /// substituted into them).
    pub(crate) fn not_inlinable(&self) -> Option<&'static str> {
        let g = &self.graph;
        let effects = g.walk(g.body()).iter().any(|&n| {
            matches!(
                g.node(n).kind,
                ir::graph::NodeKind::Assert { .. } | ir::graph::NodeKind::Prim(ir::Op::Print {})
            )
        });
        if effects {
            return Some("prints or asserts");
        }
        let symbolic = g.inputs().iter().any(|&v| {
            g.ty(v)
                .tensor()
                .is_some_and(|t| t.shape.dims().iter().any(|d| d.known().is_none()))
        });
        symbolic.then_some("has symbolic dims")
    }

    /// A model of `graph` with its signature and parameters.
    pub(crate) fn new(
        path: String,
        sig: Signature,
        graph: ir::Graph,
        params: Vec<Tensor>,
    ) -> Model {
        Model {
            path,
            sig,
            graph,
            prepared: OnceLock::new(),
            params,
        }
    }

    /// The name it is shown by: the exported function's.
    pub fn name(&self) -> &str {
        &self.sig.function
    }
}

/// Ignores the graph's `print` nodes (see the module documentation).
struct Silent;

impl Effects for Silent {
    fn print(&mut self, _node: NodeId, _value: &Tensor, _span: IrSpan) {}
}

/// Binding a call's arguments to the signature: the input tensors in order, the sizes the
/// symbolic dims took.
struct Binder<'m> {
    model: &'m Model,
    leaves: Vec<(String, TensorVal)>,
}

impl Binder<'_> {
    /// Checks `v` against `tree` (`at` is its path, `x.0`) and collects its tensors.
    fn bind(&mut self, tree: &Tree, v: &Value, at: &str) -> Result<(), String> {
        let join = |k: &str| format!("{at}.{k}");
        match (tree, v) {
            (Tree::Tensor { dtype, .. }, Value::Tensor(t)) => {
                if t.dtype != *dtype {
                    return Err(format!(
                        "`{at}` must be a {dtype} tensor, found {}",
                        v.describe()
                    ));
                }
                self.leaves.push((at.to_string(), t.clone()));
                Ok(())
            }
            (Tree::Static { dtype, value }, Value::Tensor(t))
                if t.rank() == 0 && crate::stage::jit::is_static(t) =>
            {
                let got = crate::stage::export::static_value(&t.t);
                if t.dtype != *dtype || got != Some(*value) {
                    let shown = if *dtype == DType::Bool {
                        (*value != 0).to_string()
                    } else {
                        value.to_string()
                    };
                    return Err(format!(
                        "`{at}` was the constant {dtype} {shown} when the model was staged, \
                         and a model is one graph: it must be {shown} here, found {}",
                        crate::value::display(v)
                    ));
                }
                Ok(())
            }
            (Tree::Tuple(items), Value::Tuple(vs)) if items.len() == vs.len() => items
                .iter()
                .zip(vs.iter())
                .enumerate()
                .try_for_each(|(i, (t, x))| self.bind(t, x, &join(&i.to_string()))),
            (Tree::Record(fields), Value::Record(m))
                if fields.len() == m.len()
                    && fields.iter().zip(m.keys()).all(|((a, _), b)| **a == **b) =>
            {
                fields
                    .iter()
                    .zip(m.values())
                    .try_for_each(|((k, t), x)| self.bind(t, x, &join(k)))
            }
            (Tree::Unit, Value::Unit) => Ok(()),
            _ => Err(format!(
                "`{at}` must be {}, found {}",
                describe_tree(tree),
                v.describe()
            )),
        }
    }

    /// The graph's inputs for the bound leaves, checked against the graph's types (dtype
    /// of storage, rank, known dims, one size per symbolic dim), with the key and the
    /// parameters in their places.
    fn inputs(self, ev: &Eval<'_>, key: Tensor, span: Span) -> R<Vec<Tensor>> {
        let g = &self.model.graph;
        let mut sizes: HashMap<Name, (usize, String)> = HashMap::new();
        let mut leaves = self.leaves.into_iter();
        let mut params = self.model.params.iter();
        let mut out = Vec::with_capacity(g.inputs().len());
        for (role, &v) in self.model.sig.inputs.iter().zip(g.inputs()) {
            let Type::Tensor(want) = g.ty(v) else {
                continue;
            };
            match role {
                Role::Token => {}
                Role::Key => out.push(key.clone()),
                Role::Param(_) => match params.next() {
                    Some(p) => out.push(p.clone()),
                    None => return Err(errors::internal("a model lost a parameter", span)),
                },
                Role::Input(_) => {
                    let Some((at, leaf)) = leaves.next() else {
                        return Err(errors::internal("a model lost an input", span));
                    };
                    let t = if leaf.t.dtype() == want.dtype {
                        leaf.t
                    } else if stored_as(leaf.dtype, true, want.dtype) {
                        // A literal stored wide, or a tensor the graph took wide: the
                        // same value in the graph's dtype of its kind.
                        ev.cast(&leaf.t, want.dtype, span)?
                    } else {
                        return Err(errors::mismatch(
                            format!(
                                "`{at}` must be {want} for the model `{}`, found {}",
                                self.model.name(),
                                crate::value::tensor_type_text(leaf.dtype, leaf.shape())
                            ),
                            span,
                        ));
                    };
                    check_dims(&at, want, t.shape(), &mut sizes).map_err(|m| {
                        errors::mismatch(format!("the model `{}`: {m}", self.model.name()), span)
                    })?;
                    out.push(t);
                }
            }
        }
        Ok(out)
    }
}

/// `shape` against the graph input type `want`: the rank, every known dim, and each
/// symbolic dim the same size wherever it appears (`sizes` remembers the first).
fn check_dims(
    at: &str,
    want: &ir::TensorType,
    shape: &[usize],
    sizes: &mut HashMap<Name, (usize, String)>,
) -> Result<(), String> {
    let found = crate::value::tensor_type_text(want.dtype, shape);
    if shape.len() != want.rank() {
        return Err(format!(
            "`{at}` must be {want}, found {found}: it has {} axes, not {}",
            shape.len(),
            want.rank()
        ));
    }
    for (axis, (d, &n)) in want.shape.dims().iter().zip(shape).enumerate() {
        match d {
            Dim::Known(k) if *k != n => {
                return Err(format!(
                    "`{at}` must be {want}, found {found}: axis {axis} has size {n}, not {k}"
                ));
            }
            Dim::Sym(s) if !d.is_unknown() => match sizes.get(s) {
                Some((m, first)) if *m != n => {
                    return Err(format!(
                        "`{at}` must be {want}, found {found}: `{s}` is {m} in `{first}` and \
                         {n} here (axis {axis})"
                    ));
                }
                Some(_) => {}
                None => {
                    sizes.insert(s.clone(), (n, at.to_string()));
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// A tree in words, for messages.
fn describe_tree(t: &Tree) -> String {
    match t {
        Tree::Tensor { dtype, .. } => format!("a {dtype} tensor"),
        Tree::Static { dtype, .. } => format!("a {dtype} scalar"),
        Tree::Tuple(items) => format!("a tuple of {} elements", items.len()),
        Tree::Record(fields) => {
            let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            format!("a record {{{}}}", names.join(", "))
        }
        Tree::Unit => "()".to_string(),
    }
}

/// The result from the graph's outputs (the key left out), in the result's structure.
fn rebuild(tree: &Tree, outs: &mut impl Iterator<Item = Tensor>) -> Option<Value> {
    Some(match tree {
        Tree::Tensor { dtype, weak } => Value::Tensor(TensorVal {
            t: outs.next()?,
            dtype: *dtype,
            weak: *weak,
        }),
        Tree::Static { dtype, value } => {
            let t = match dtype {
                DType::Bool => Tensor::from_vec(vec![*value != 0], &[]),
                DType::I32 => Tensor::from_vec(vec![i32::try_from(*value).ok()?], &[]),
                _ => Tensor::from_vec(vec![*value], &[]),
            };
            Value::Tensor(TensorVal::strong_of(t.ok()?))
        }
        Tree::Tuple(items) => Value::Tuple(
            items
                .iter()
                .map(|x| rebuild(x, outs))
                .collect::<Option<Vec<_>>>()?
                .into(),
        ),
        Tree::Record(fields) => Value::Record(Arc::new(
            fields
                .iter()
                .map(|(k, x)| Some((Name::from(k.as_str()), rebuild(x, outs)?)))
                .collect::<Option<_>>()?,
        )),
        Tree::Unit => Value::Unit,
    })
}

impl Eval<'_> {
    /// Calls a loaded model with positional arguments.
    pub(crate) fn call_model(
        &mut self,
        m: &Arc<Model>,
        pos: Vec<(Value, Span)>,
        named: Vec<(Name, Value, Span)>,
        span: Span,
    ) -> R<Value> {
        let name = m.name();
        let staging = self.staging();
        if staging && let Some(why) = m.not_inlinable() {
            return Err(super::staging_error(
                format!(
                    "the model `{name}` loaded from `{}` {why}, so it cannot be inlined into a \
                     staged function; call it from eager code",
                    m.path
                ),
                span,
            ));
        }
        if let Some((n, _, s)) = named.first() {
            return Err(errors::mismatch(
                format!("the model `{name}` takes its arguments by position, not `{n}:`"),
                *s,
            ));
        }
        if pos.len() != m.sig.args.len() {
            let names: Vec<&str> = m.sig.args.iter().map(|(n, _)| n.as_str()).collect();
            return Err(errors::mismatch(
                format!(
                    "the model `{name}` takes {} argument{} ({}), found {}",
                    names.len(),
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", "),
                    pos.len()
                ),
                span,
            ));
        }
        let mut binder = Binder {
            model: m,
            leaves: Vec::new(),
        };
        for ((arg, tree), (v, s)) in m.sig.args.iter().zip(&pos) {
            binder
                .bind(tree, v, arg)
                .map_err(|msg| errors::mismatch(format!("the model `{name}`: {msg}"), *s))?;
        }
        if binder
            .leaves
            .iter()
            .any(|(_, l)| crate::eval::builtins::grad::is_traced(self, &l.t))
        {
            return Err(errors::bad_value(
                format!(
                    "the model `{name}` cannot be differentiated: its graph runs as a whole, \
                     out of sight of `grad`"
                ),
                span,
            ));
        }
        if staging {
            return self.inline_model(m, binder, span);
        }
        let key = Tensor::from_vec(vec![self.st.seed, self.st.offset], &[2])
            .map_err(|e| self.device_error(e, span))?;
        let inputs = binder.inputs(self, key, span)?;
        let inputs = self.on_session_device(&inputs, span)?;
        let device = self.st.device.clone();
        let in_place = self.st.in_place;
        let prepared = m.prepared.get_or_init(|| {
            let p = Prepared::new(&m.graph);
            if in_place { p } else { p.without_in_place() }
        });
        let outs = Plan::with(&m.graph, prepared)
            .run(&*device, &inputs, &mut Silent)
            .map_err(|e| self.model_error(m, e, span))?;
        let Some((key, rest)) = outs.split_last() else {
            return Err(errors::internal("a model returned nothing", span));
        };
        if let Some([seed, offset]) = key.to_vec::<i64>().as_deref() {
            self.st.seed = *seed;
            self.st.offset = *offset;
        }
        rebuild(&m.sig.result, &mut rest.iter().cloned())
            .ok_or_else(|| errors::internal("a model's outputs do not fit its result", span))
    }

    /// A call of a model inside a function being staged: the model's graph is called from
    /// the staged graph (`ir::graph::call`, which the inlining pass splices in), its
    /// parameters captured as constants and its
    /// random key the staged graph's, so the staged function computes what the eager call
    /// computes, node for node.
    fn inline_model(&mut self, m: &Arc<Model>, binder: Binder<'_>, span: Span) -> R<Value> {
        let key = self.with_stager(span, |s| Ok(s.tensor(s.rng)))?;
        let inputs = binder.inputs(self, key, span)?;
        let outs = self.with_stager(span, |s| {
            let ids = inputs
                .iter()
                .map(|t| s.value_of(t, span))
                .collect::<R<Vec<_>>>()?;
            let outs = ir::graph::call(&mut s.b, &m.graph, &ids)
                .map_err(|e| super::build_error(&e, span))?;
            let Some((&key, rest)) = outs.split_last() else {
                return Err(errors::internal("a model returned nothing", span));
            };
            s.rng = key;
            Ok(rest.iter().map(|&v| s.tensor(v)).collect::<Vec<_>>())
        })?;
        rebuild(&m.sig.result, &mut outs.into_iter())
            .ok_or_else(|| errors::internal("a model's outputs do not fit its result", span))
    }

    /// A failed run of a model, reported at the call (its own spans point into a source
    /// that is not here).
    fn model_error(&self, m: &Model, e: RunError, span: Span) -> Flow {
        let note = format!("in the model `{}` loaded from `{}`", m.name(), m.path);
        let flow = match e {
            RunError::Device { error, .. } => Flow::error(errors::from_device(*error, span)),
            RunError::Assert { message, .. } => {
                errors::assertion((!message.is_empty()).then_some(message.as_str()), span)
            }
            RunError::InputType { .. } | RunError::InputCount { .. } => {
                errors::mismatch(e.to_string(), span)
            }
            // Anything else is the file's graph asking for what cannot run (a loader
            // that missed it is a gap in `io::msir`'s checks, not a bug of the evaluator).
            other => errors::bad_value(format!("the model cannot run: {other}"), span),
        };
        match flow {
            Flow::Error(mut b) => {
                b.diag.notes.push(note);
                Flow::Error(b)
            }
            other => other,
        }
    }
}
