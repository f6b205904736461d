//! Staging (graph mode, LANGUAGE.md §8): a function at one signature becomes an
//! [`ir::Graph`], which `devices::schedule` runs.
//!
//! Staging is the eager evaluator run over *staged tensors* (DESIGN.md §1, the second of
//! its two choices). A staged tensor ([`devices::Tensor::staged`]) has a dtype and a shape
//! but no elements; it stands for a value of the graph being built. Every primitive goes
//! through [`Eval::exec_or`] already (that is how eager differentiation hooks in), and
//! there a primitive with a staged operand, or an effect, is appended to the graph instead
//! of being run. Because the same evaluator, the same builtins and the same prelude run in
//! both modes, the two cannot disagree about what a program means: closures and
//! higher-order functions are specialized away simply by being called, and a computation
//! on known values (sizes, literals, captured constants) is done once, at staging time.
//!
//! What the evaluator must decide differently when a value is staged is handled here and
//! in [`control`]:
//! - `if`, `while` and `for` whose condition or loop-carried values are staged become
//!   `If`/`While`/`For` regions ([`control`]); the variables a branch or a loop body
//!   assigns are found in its text and passed through the region.
//! - `print` becomes one `print` node per tensor it shows, with the line's layout kept
//!   here so that the run prints exactly what eager mode prints ([`PrintLine`]).
//! - `assert` becomes an `assert` node; random draws take their key from the graph's RNG
//!   input, which is threaded like a loop-carried value, so the stream is eager's.
//! - Anything that needs a staged value's elements now (a slice bound, a shape, a range
//!   end computed from data) is error E0913 at its span; nothing falls back to eager.
//!
//! Captured tensors enter the graph by handle: a scalar as a `full` node, anything larger as
//! an extra graph input that [`jit`] passes on every run (so a graph holds no device
//! buffers). Globals a staged function reads are recorded, and a later call whose globals
//! hold other values re-stages (late binding, as in eager mode).

pub(crate) mod check;
pub(crate) mod control;
pub(crate) mod exits;
pub(crate) mod export;
pub(crate) mod grad;
pub(crate) mod jit;
pub(crate) mod model;
pub(crate) mod parallel;
pub(crate) mod pipeline;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use devices::{Tensor, TensorId};
use ir::graph::{BuildError, GraphBuilder, Type, ValueId};
use ir::{DType, Op, Shape};
use lang::Span;
use lang::ast::Name;

use crate::eval::Eval;
use crate::eval::errors::{self, Flow, R};
use crate::value::{TensorVal, Value};

/// Numbers the graphs being staged, so that a staged tensor of one (an outer function's
/// value seen while a derivative is staged inside it) is never mistaken for another's.
static NEXT_GRAPH: AtomicU32 = AtomicU32::new(1);

/// A graph being built, with what running it will need.
pub(crate) struct Stager {
    /// The number staged tensors of this graph carry.
    pub tag: u32,
    /// The graph so far.
    pub b: GraphBuilder,
    /// Tensors captured as extra graph inputs, in input order after the arguments.
    pub captures: Vec<Tensor>,
    capture_ids: HashMap<TensorId, ValueId>,
    /// The current random key, `i64[2]` (seed, offset): staged.
    pub rng: ValueId,
    /// The layout of each `print` call staged, by its span: a `print` node shows one of
    /// its tensors, in order. (Keyed by span rather than by node, so that it survives
    /// inlining and differentiation, which copy nodes with their spans.)
    pub prints: HashMap<ir::graph::Span, PrintLine>,
    /// The globals the staged code read, with the values they had.
    pub globals_read: Vec<(Name, Value)>,
    /// The functions being staged now (by their declaration's address), to refuse
    /// recursion.
    pub active: Vec<usize>,
    /// The loops (by span) whose first iteration is being peeled off now: the loop that
    /// follows it is not peeled again, whatever its dry run says (a run on known values can
    /// keep weak what the dry run, on staged ones, made strong).
    pub peeling: Vec<Span>,
    /// Whether `print` stages nothing (a pullback's recomputation of its function, which
    /// eager mode does not run again).
    pub muted: bool,
    /// `shard(x, strategy)` hints on values of this graph (`parallel: "semi_auto"`).
    pub hints: Vec<(ValueId, Vec<usize>, Span)>,
}

/// One `print` call: its arguments, whose tensor leaves are staged (a run substitutes the
/// values its `print` nodes show, in order), and how many leaves it has. A `log_*` call
/// stages the same way, its step and value as the arguments: `log` says which summary
/// the run writes instead of a line of text.
pub(crate) struct PrintLine {
    pub args: Vec<Value>,
    pub leaves: usize,
    pub log: Option<crate::insight::LogCall>,
}

impl Stager {
    /// A stager for a graph named `name` with its token and random-key inputs.
    pub fn new(name: &str) -> Stager {
        let mut b = GraphBuilder::new(name);
        b.token_input();
        let rng = b.input(ir::TensorType::known(DType::I64, &[2]));
        Stager {
            tag: NEXT_GRAPH.fetch_add(1, Ordering::Relaxed),
            b,
            captures: Vec::new(),
            capture_ids: HashMap::new(),
            rng,
            prints: HashMap::new(),
            globals_read: Vec::new(),
            active: Vec::new(),
            peeling: Vec::new(),
            muted: false,
            hints: Vec::new(),
        }
    }

    /// The staged tensor standing for `v`.
    pub fn tensor(&self, v: ValueId) -> Tensor {
        match self.b.ty(v) {
            Type::Tensor(t) => {
                let shape: Vec<usize> = t
                    .shape
                    .dims()
                    .iter()
                    .map(|d| d.known().unwrap_or(0))
                    .collect();
                Tensor::staged(self.tag, v.index() as u32, t.dtype, &shape)
            }
            Type::Token => Tensor::staged(self.tag, v.index() as u32, DType::Bool, &[]),
        }
    }

    /// A new graph input per leaf, of its storage type, as a staged leaf of the same dtype
    /// and weakness.
    pub fn inputs_like(&mut self, leaves: &[TensorVal]) -> Vec<TensorVal> {
        leaves
            .iter()
            .map(|l| {
                let v = self.b.input(l.t.ttype());
                TensorVal {
                    t: self.tensor(v),
                    ..l.clone()
                }
            })
            .collect()
    }

    /// The graph value of `t`: its own when staged here; a captured constant otherwise.
    pub fn value_of(&mut self, t: &Tensor, span: Span) -> R<ValueId> {
        if let Some((g, v)) = t.staged_id()
            && g == self.tag
        {
            return Ok(ValueId::from_index(v as usize));
        }
        // A value of an enclosing graph (a derivative staged inside a staged function) is
        // captured like a constant: the enclosing graph passes it in when it inlines this one.
        if t.staged_id().is_none()
            && t.rank() == 0
            && let Some(x) = exact_scalar(t)
        {
            let op = Op::Full {
                shape: Shape::known(&[]),
                dtype: t.dtype(),
                value: x,
            };
            return self.b.op(&op, &[]).map_err(|e| build_error(&e, span));
        }
        if let Some(&v) = self.capture_ids.get(&t.id()) {
            return Ok(v);
        }
        let v = self.b.input(t.ttype());
        self.capture_ids.insert(t.id(), v);
        self.captures.push(t.clone());
        Ok(v)
    }
}

impl Stager {
    /// A staged `full` node of `value`, `dtype` and `shape` (staged even though its value
    /// is known, so that the graph computes it, at whatever size a symbolic dim has).
    pub fn full(&mut self, value: f64, dtype: DType, shape: &[usize], span: Span) -> R<Tensor> {
        let op = Op::Full {
            shape: Shape::known(shape),
            dtype,
            value,
        };
        let v = self.b.op(&op, &[]).map_err(|e| build_error(&e, span))?;
        Ok(self.tensor(v))
    }
}

/// The value of a scalar host tensor as an `f64` that converts back to it exactly (the
/// attribute of a `full` node), or `None`.
fn exact_scalar(t: &Tensor) -> Option<f64> {
    let h = t.to_host().ok()?;
    // A negative zero stays a captured input: an attribute's text form would print it as
    // a plain zero and lose its sign.
    let signed = |x: f64| (x != 0.0 || x.is_sign_positive()).then_some(x);
    match t.dtype() {
        DType::F32 => signed(f64::from(*h.to_vec::<f32>()?.first()?)),
        DType::F64 => signed(*h.to_vec::<f64>()?.first()?),
        DType::I32 => h.to_vec::<i32>()?.first().map(|&x| f64::from(x)),
        DType::I64 => {
            let x = *h.to_vec::<i64>()?.first()?;
            ((x as f64) as i64 == x && x.unsigned_abs() < (1 << 53)).then_some(x as f64)
        }
        DType::Bool => h.to_vec::<bool>()?.first().map(|&b| f64::from(u8::from(b))),
        _ => None,
    }
}

/// `ir`'s span of a place in source `src`.
pub(crate) fn ir_span(src: usize, span: Span) -> ir::graph::Span {
    ir::graph::Span::from_range(src as u32, span.range())
}

/// E0913: something that cannot be staged, at its span.
pub(crate) fn staging_error(message: String, span: Span) -> Flow {
    Flow::error(staging_diag(message, span))
}

/// The diagnostic of [`staging_error`], to add to.
pub(crate) fn staging_diag(message: String, span: Span) -> lang::Diagnostic {
    lang::Diagnostic::error("E0913", message, span)
        .with_primary_label("cannot be staged")
        .with_note(
            "in a staged function (`@jit`, `jit(f)`, `--mode graph`) values computed from the \
             arguments are known only when the graph runs",
        )
}

/// A builder refusal (a bug of staging, or branches whose values differ in type) at `span`.
pub(crate) fn build_error(e: &BuildError, span: Span) -> Flow {
    match e {
        // The operands do not fit the primitive: the error eager mode gives.
        BuildError::Infer { error, .. } => Flow::error(errors::from_device(
            devices::DeviceError::Infer((**error).clone()),
            span,
        )),
        _ => staging_error(format!("the staged graph cannot be built: {e}"), span),
    }
}

impl Eval<'_> {
    /// True while a function is being staged.
    pub fn staging(&self) -> bool {
        !self.st.stage.borrow().is_empty()
    }

    /// Runs `f` on the innermost graph being staged, with its nodes given `span`.
    pub fn with_stager<T>(&self, span: Span, f: impl FnOnce(&mut Stager) -> R<T>) -> R<T> {
        let mut stack = self.st.stage.borrow_mut();
        let Some(s) = stack.last_mut() else {
            return Err(errors::internal("no function is being staged", span));
        };
        s.b.set_span(ir_span(self.src, span));
        f(s)
    }

    /// Appends `op` to the graph being staged (the staged form of [`Eval::exec`]).
    pub fn stage_exec(&self, op: &Op, inputs: &[&Tensor], span: Span) -> R<Tensor> {
        self.with_stager(span, |s| {
            let mut ids = Vec::with_capacity(inputs.len());
            for t in inputs {
                ids.push(s.value_of(t, span)?);
            }
            let v = s.b.op(op, &ids).map_err(|e| build_error(&e, span))?;
            Ok(s.tensor(v))
        })
    }

    /// `print(args...)` in staged code: one `print` node per tensor leaf (one of a unit
    /// scalar when there is none), and the line's layout for the run to fill in.
    pub fn stage_print(&self, args: &[Value], span: Span) -> R<()> {
        self.stage_line(args, span, None)
    }

    /// [`Eval::stage_print`], or with `log` a `log_*` call: the summary is an effect like
    /// a printed line, ordered by the same token, and written when the graph runs, on
    /// every call, with the values the run computes.
    pub fn stage_line(
        &self,
        args: &[Value],
        span: Span,
        log: Option<crate::insight::LogCall>,
    ) -> R<()> {
        if self.st.stage.borrow().last().is_some_and(|s| s.muted) {
            return Ok(());
        }
        let at = ir_span(self.src, span);
        self.with_stager(span, |s| {
            let mut leaves = Vec::new();
            for a in args {
                tensor_leaves(a, &mut leaves);
            }
            let mut out_args = Vec::with_capacity(args.len());
            let mut k = 0;
            let mut staged = Vec::with_capacity(leaves.len());
            for t in &leaves {
                let v = s.value_of(&t.t, span)?;
                let p = s.b.print(v).map_err(|e| build_error(&e, span))?;
                k += 1;
                staged.push(TensorVal {
                    t: s.tensor(p),
                    ..t.clone()
                });
            }
            if leaves.is_empty() {
                let unit =
                    s.b.op(
                        &Op::Full {
                            shape: Shape::known(&[]),
                            dtype: DType::Bool,
                            value: 0.0,
                        },
                        &[],
                    )
                    .map_err(|e| build_error(&e, span))?;
                s.b.print(unit).map_err(|e| build_error(&e, span))?;
            }
            let mut it = staged.into_iter();
            for a in args {
                out_args.push(substitute(a, &mut it));
            }
            match s.prints.get(&at) {
                Some(old) if old.leaves != k => Err(staging_error(
                    "this `print` shows values of different structures in one staged function"
                        .into(),
                    span,
                )),
                Some(_) => Ok(()),
                None => {
                    s.prints.insert(
                        at,
                        PrintLine {
                            args: out_args,
                            leaves: k,
                            log,
                        },
                    );
                    Ok(())
                }
            }
        })
    }

    /// `assert(cond, message)` in staged code, `cond` staged.
    pub fn stage_assert(&self, cond: &Tensor, message: Option<&str>, span: Span) -> R<()> {
        self.with_stager(span, |s| {
            let c = s.value_of(cond, span)?;
            s.b.assert(c, message.unwrap_or(""))
                .map_err(|e| build_error(&e, span))
        })
    }

    /// The key of a random draw of `n` numbers in staged code, advancing the stream.
    pub fn stage_rng_key(&self, n: i64, span: Span) -> R<Tensor> {
        self.with_stager(span, |s| {
            let key = s.rng;
            let step = Tensor::from_vec(vec![0i64, n], &[2])
                .map_err(|e| Flow::error(errors::from_device(e, span)))?;
            let step = s.value_of(&step, span)?;
            let next =
                s.b.op(
                    &Op::Binary {
                        op: ir::BinaryOp::Add,
                    },
                    &[key, step],
                )
                .map_err(|e| build_error(&e, span))?;
            s.rng = next;
            Ok(s.tensor(key))
        })
    }

    /// `seed(n)` in staged code: the stream restarts from `(n, 0)`.
    pub fn stage_seed(&self, seed: i64, span: Span) -> R<()> {
        self.with_stager(span, |s| {
            let key = Tensor::from_vec(vec![seed, 0], &[2])
                .map_err(|e| Flow::error(errors::from_device(e, span)))?;
            s.rng = s.value_of(&key, span)?;
            Ok(())
        })
    }
}

/// Whether `v` holds a staged tensor anywhere.
pub(crate) fn has_staged(v: &Value) -> bool {
    match v {
        Value::Tensor(t) => t.t.staged_id().is_some(),
        Value::Tuple(items) => items.iter().any(has_staged),
        Value::Record(m) => m.values().any(has_staged),
        _ => false,
    }
}

/// The tensor leaves of `v` in order (tuple items, then record fields by name).
pub(crate) fn tensor_leaves(v: &Value, out: &mut Vec<TensorVal>) {
    match v {
        Value::Tensor(t) => out.push(t.clone()),
        Value::Tuple(items) => items.iter().for_each(|x| tensor_leaves(x, out)),
        Value::Record(m) => m.values().for_each(|x| tensor_leaves(x, out)),
        _ => {}
    }
}

/// `v` with its tensor leaves replaced, in order, by those `leaves` gives.
pub(crate) fn substitute(v: &Value, leaves: &mut impl Iterator<Item = TensorVal>) -> Value {
    match v {
        Value::Tensor(t) => Value::Tensor(leaves.next().unwrap_or_else(|| t.clone())),
        Value::Tuple(items) => Value::Tuple(items.iter().map(|x| substitute(x, leaves)).collect()),
        Value::Record(m) => Value::Record(std::sync::Arc::new(
            m.iter()
                .map(|(k, x)| (k.clone(), substitute(x, leaves)))
                .collect(),
        )),
        other => other.clone(),
    }
}

/// Whether two values are the same for staging: tensors by identity, functions and other
/// handles by address, the rest by content. (A global that is still the same value lets a
/// cached graph run; any other value re-stages.)
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
    use std::sync::Arc;
    match (a, b) {
        (Value::Tensor(x), Value::Tensor(y)) => {
            x.t.id() == y.t.id() && x.dtype == y.dtype && x.weak == y.weak
        }
        (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same_value(p, q))
        }
        (Value::Record(x), Value::Record(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((k, p), (l, q))| k == l && same_value(p, q))
        }
        (Value::Fn(x), Value::Fn(y)) => Arc::ptr_eq(x, y),
        (Value::Builtin(x), Value::Builtin(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Unit, Value::Unit) => true,
        (Value::Range(a0, a1), Value::Range(b0, b1)) => a0 == b0 && a1 == b1,
        (Value::Batches(x), Value::Batches(y)) => Arc::ptr_eq(x, y),
        (Value::Progress(x), Value::Progress(y)) => same_value(x, y),
        (Value::Module(x), Value::Module(y)) => Arc::ptr_eq(x, y),
        (Value::Derived(x), Value::Derived(y)) => Arc::ptr_eq(x, y),
        (Value::Jit(x), Value::Jit(y)) => Arc::ptr_eq(x, y),
        (Value::Model(x), Value::Model(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}
