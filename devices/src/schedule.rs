//! The graph executor: runs an `ir::Graph` on a [`Device`].
//!
//! Every `Prim` node is one [`Device::exec`]; every `fused` node (made by the optimizer's
//! fusion pass) is one [`Device::exec_fused`]. The work is split in two: [`Plan::new`]
//! analyses a graph once (for every block, which values die after which node, and the
//! program of every fused group), and [`Plan::run`] executes it as often as asked.
//!
//! - **Values** live in one table indexed by `ValueId`. A slot holds a [`Tensor`] (a cheap
//!   shared handle) or the unit marker of the effect token, which is ordering only and
//!   never a tensor.
//! - **Memory.** The graph's [`MemoryPlan`] (`ir::passes::memory`) says where each value
//!   dies: its slot is emptied right after its last use in the block that defines it, so
//!   its buffer is freed as soon as nothing else holds it. A use inside a region counts as
//!   a use by the control-flow node that owns the region, so a value defined outside a loop
//!   and read inside it lives until the loop node has finished. The plan also names, for
//!   elementwise and fused nodes, operands that die there and have a result's type: such a
//!   *donor* is taken out of its slot before the node runs (so the executor no longer holds
//!   it) and lent to the device ([`Device::exec_donating`],
//!   [`Device::exec_fused_donating`]), which writes the result into its buffer when nobody
//!   else holds that buffer either. [`RunStats::in_place`] counts the results written so.
//! - **Control flow.** `If` downloads its `bool[]` condition and runs one region; `For`
//!   reads its integer bounds and runs its body with the induction variable as a scalar of
//!   the bounds' dtype; `While` alternates its `cond` and `body` regions. Region arguments
//!   bind to the passed or carried values; a region's `yield` gives the node's results. A
//!   `call` (left when the inlining pass did not run) runs its region the same way.
//! - **Fused groups.** A `fused` node's region is compiled once into a [`Kernel`] and
//!   handed to [`Device::exec_fused`], which runs it in one pass over memory; a device
//!   without a kernel for it declines. A declined group that ends in reductions is tried
//!   again as its elementwise part ([`Kernel::split`]) followed by its reductions as plain
//!   primitives, so that a device which fuses elementwise chains but not reductions (the
//!   GPU, or the CPU on very long rows) loses nothing to the reductions having joined the
//!   group; otherwise, or when that is declined too, the region runs node by node like any
//!   other block.
//! - **Effects.** A `print` node hands its value to [`Effects::print`] (the interpreter
//!   renders it) and passes it on; an `assert` node fails the run with
//!   [`RunError::Assert`] when its condition is false. The token orders them.
//! - **Errors** are data: a device error carries the span of the node that raised it, so a
//!   runtime error in staged code points at the user's line. Ctrl-C
//!   ([`crate::cancel::requested`]) is looked at between nodes and in every loop iteration.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use ir::graph::{BlockId, NodeId, NodeKind, Span, Type, ValueId, is_effectful};
use ir::parallel::Collective;
use ir::passes::memory::MemoryPlan;
use ir::{DType, Dim, Graph, Op, Shape, TensorType};
use thiserror::Error;

use crate::fused::{Kernel, Part, Split};
use crate::{Device, DeviceError, HostBuffer, Tensor};

/// The side effects a graph performs through its token, provided by the caller.
pub trait Effects {
    /// Shows `value`, the operand of `print` node `node` (staged from `span`), in program
    /// order. The node tells the caller which part of which line of output it is.
    fn print(&mut self, node: NodeId, value: &Tensor, span: Span);

    /// Runs collective `c` of a partitioned graph on this device's `value`, giving its
    /// result of type `out`. Only the runner of a mesh (which knows the device and the
    /// others) can; a graph run on its own refuses.
    fn collective(
        &mut self,
        c: &Collective,
        value: &Tensor,
        out: &TensorType,
    ) -> Result<Tensor, DeviceError> {
        let _ = (value, out);
        Err(DeviceError::Unavailable(format!(
            "`{}` runs only on a mesh of devices",
            c.name()
        )))
    }
}

/// Collects printed values with their spans, in order (tests, and callers that render
/// later).
impl Effects for Vec<(Tensor, Span)> {
    fn print(&mut self, _node: NodeId, value: &Tensor, span: Span) {
        self.push((value.clone(), span));
    }
}

/// Why a graph run failed.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum RunError {
    /// The caller passed the wrong number of tensors (the token is not counted).
    #[error("the graph takes {expected} input tensors, but {found} were given")]
    InputCount {
        /// Tensor inputs the graph declares.
        expected: usize,
        /// Tensors given.
        found: usize,
    },
    /// An input tensor does not have the declared dtype or shape.
    #[error("input {index} must be {expected}, but it is {found}: {reason}")]
    InputType {
        /// Position among the tensor inputs.
        index: usize,
        /// The declared type.
        expected: TensorType,
        /// The type of the tensor given.
        found: TensorType,
        /// Which part does not match.
        reason: String,
    },
    /// An `assert` node's condition was false.
    #[error("assertion failed: {message}")]
    Assert {
        /// The assertion's message.
        message: String,
        /// The node's span.
        span: Span,
    },
    /// The device refused or failed an operation.
    #[error("{error}")]
    Device {
        /// What the device said (boxed: it is large, and errors are rare).
        error: Box<DeviceError>,
        /// The span of the node that ran it.
        span: Span,
    },
    /// Ctrl-C was pressed ([`crate::cancel`]); the run stopped before this node.
    #[error("interrupted")]
    Interrupted {
        /// The node that was about to run.
        span: Span,
    },
    /// The graph does not hold together (an unverified graph: a value used before it is
    /// defined, a token where a tensor must be, a region yielding the wrong number of
    /// values, a dim that cannot be known when the node runs, a `for` with step zero).
    #[error("{message}")]
    Malformed {
        /// What is wrong.
        message: String,
        /// The offending node's span.
        span: Span,
    },
    /// A node gave a tensor other than its declared type (a graph whose declared types
    /// disagree with what its operations compute).
    #[error("`{op}` gave {found}, but its result is declared as {expected}")]
    ResultType {
        /// The node's keyword.
        op: &'static str,
        /// The declared type.
        expected: TensorType,
        /// What it gave.
        found: TensorType,
        /// The node's span.
        span: Span,
    },
}

impl RunError {
    /// The span of the node the error belongs to (`Span::default()` for the inputs).
    pub fn span(&self) -> Span {
        match self {
            RunError::InputCount { .. } | RunError::InputType { .. } => Span::default(),
            RunError::Assert { span, .. }
            | RunError::Device { span, .. }
            | RunError::Interrupted { span }
            | RunError::Malformed { span, .. }
            | RunError::ResultType { span, .. } => *span,
        }
    }
}

/// Runs `graph` on `device`: binds `inputs` (the graph's tensor inputs in order; the token
/// is not passed), runs the body and returns its tensor outputs in order (the token is not
/// returned). A graph that runs once; to run one graph many times, build a [`Plan`] once.
pub fn run(
    graph: &Graph,
    device: &dyn Device,
    inputs: &[Tensor],
    effects: &mut dyn Effects,
) -> Result<Vec<Tensor>, RunError> {
    Plan::new(graph).run(device, inputs, effects)
}

/// A graph analysed for execution: its memory plan and the programs of its fused groups.
#[derive(Clone, Debug)]
pub struct Plan<'g> {
    graph: &'g Graph,
    prepared: Cow<'g, Prepared>,
}

/// What [`Plan::new`] works out about a graph, owned, so that a caller who runs one graph
/// many times (a staged function) keeps it next to the graph and pays for it once
/// ([`Plan::with`]).
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Where each value dies, and which operands may lend their buffers to results.
    memory: MemoryPlan,
    /// Whether donors are lent to the device (see [`Prepared::without_in_place`]).
    in_place: bool,
    /// The program of every fused node, compiled once.
    kernels: HashMap<NodeId, Kernel>,
    /// The elementwise part of every fused node that ends in reductions.
    splits: HashMap<NodeId, Split>,
}

/// What a [`Plan::run_with_stats`] observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// The most slots of the value table that held a tensor or the token at once.
    pub peak_live: usize,
    /// Nodes executed (a node inside a loop counts once per iteration).
    pub nodes_run: usize,
    /// Results the device wrote into a donor's buffer instead of a new one.
    pub in_place: usize,
}

impl Prepared {
    /// Plans the memory of `graph` ([`MemoryPlan::new`]) and compiles its fused groups.
    pub fn new(graph: &Graph) -> Prepared {
        let mut kernels = HashMap::new();
        let mut splits = HashMap::new();
        for n in graph.walk(graph.body()) {
            if let NodeKind::Fused { body } = graph.node(n).kind
                && let Some(k) = Kernel::from_region(graph, body)
            {
                if let Some(split) = k.split() {
                    splits.insert(n, split);
                }
                kernels.insert(n, k);
            }
        }
        Prepared {
            memory: MemoryPlan::new(graph),
            in_place: true,
            kernels,
            splits,
        }
    }

    /// The same analysis with no donor ever lent: every result gets a buffer of its own.
    /// The values are the same; this is for measuring what writing in place saves, and
    /// for tests that compare the two.
    pub fn without_in_place(mut self) -> Prepared {
        self.in_place = false;
        self
    }

    /// The memory plan the executor follows.
    pub fn memory(&self) -> &MemoryPlan {
        &self.memory
    }
}

impl<'g> Plan<'g> {
    /// Analyses `graph` ([`Prepared::new`]).
    pub fn new(graph: &'g Graph) -> Plan<'g> {
        Plan {
            graph,
            prepared: Cow::Owned(Prepared::new(graph)),
        }
    }

    /// This plan with no donor ever lent ([`Prepared::without_in_place`]).
    pub fn without_in_place(self) -> Plan<'g> {
        Plan {
            graph: self.graph,
            prepared: Cow::Owned(self.prepared.into_owned().without_in_place()),
        }
    }

    /// The plan of `graph` from an analysis made earlier, which must be `graph`'s own:
    /// another graph's would free values at the wrong time. (One whose block count shows
    /// it belongs elsewhere is not used; `graph` is analysed afresh.)
    pub fn with(graph: &'g Graph, prepared: &'g Prepared) -> Plan<'g> {
        if prepared.memory.block_count() != graph.block_count() {
            return Plan::new(graph);
        }
        Plan {
            graph,
            prepared: Cow::Borrowed(prepared),
        }
    }

    /// Runs the graph (see [`run`]).
    pub fn run(
        &self,
        device: &dyn Device,
        inputs: &[Tensor],
        effects: &mut dyn Effects,
    ) -> Result<Vec<Tensor>, RunError> {
        self.run_with_stats(device, inputs, effects)
            .map(|(out, _)| out)
    }

    /// Runs the graph and also says how many values were alive at most.
    pub fn run_with_stats(
        &self,
        device: &dyn Device,
        inputs: &[Tensor],
        effects: &mut dyn Effects,
    ) -> Result<(Vec<Tensor>, RunStats), RunError> {
        let g = self.graph;
        let body = g.body();
        let mut dims = Dims::default();
        let args = bind_inputs(g, inputs, &mut dims)?;
        let mut run = Run {
            plan: self,
            device,
            effects,
            table: vec![None; g.value_count()],
            dims,
            live: 0,
            stats: RunStats::default(),
        };
        let outs = run.block(body, args, Span::default())?;
        let mut tensors = Vec::with_capacity(outs.len());
        for (v, slot) in g.outputs().iter().zip(outs) {
            if let Slot::Tensor(t) = slot {
                run.check_type(*v, &t, "yield", Span::default())?;
                tensors.push(t);
            }
        }
        Ok((tensors, run.stats))
    }
}

/// One slot of the value table.
#[derive(Clone, Debug)]
enum Slot {
    /// A tensor value.
    Tensor(Tensor),
    /// The effect token: ordering only, no data.
    Token,
}

/// The sizes that symbolic dims stand for in this run, bound on first sight.
#[derive(Default)]
struct Dims {
    bound: HashMap<Arc<str>, usize>,
}

impl Dims {
    /// Checks `shape` against `dims`, binding names seen for the first time. `?` matches any
    /// size and binds nothing.
    fn check(&mut self, dims: &Shape, shape: &[usize]) -> Result<(), String> {
        if dims.rank() != shape.len() {
            return Err(format!(
                "rank {} where {} is declared",
                shape.len(),
                dims.rank()
            ));
        }
        for (axis, (d, &n)) in dims.dims().iter().zip(shape).enumerate() {
            match d {
                Dim::Known(k) if *k != n => {
                    return Err(format!("axis {axis} has size {n}, not {k}"));
                }
                Dim::Known(_) => {}
                Dim::Sym(_) if d.is_unknown() => {}
                Dim::Sym(name) => match self.bound.get(name) {
                    Some(&k) if k != n => {
                        return Err(format!(
                            "axis {axis} has size {n}, but `{name}` is {k} in this run"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.bound.insert(Arc::clone(name), n);
                    }
                },
            }
        }
        Ok(())
    }

    /// `shape` with every bound name replaced by its size.
    fn resolve(&self, shape: &Shape) -> Result<Shape, String> {
        let dims = shape
            .dims()
            .iter()
            .map(|d| match d {
                Dim::Known(_) => Ok(d.clone()),
                Dim::Sym(name) => self.bound.get(name).map(|&n| Dim::Known(n)).ok_or_else(|| {
                    if d.is_unknown() {
                        format!(
                            "the dim `?` of the shape {shape} cannot be known when the node runs"
                        )
                    } else {
                        format!("the dim `{name}` of the shape {shape} is not bound by any input")
                    }
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Shape(dims))
    }

    /// `op` with the symbolic dims of its shape attribute resolved (borrowed when there are
    /// none).
    fn resolve_op<'o>(&self, op: &'o Op) -> Result<Cow<'o, Op>, String> {
        let Some(shape) = op.shape_attr() else {
            return Ok(Cow::Borrowed(op));
        };
        if shape.to_known().is_some() {
            return Ok(Cow::Borrowed(op));
        }
        let resolved = self.resolve(shape)?;
        let mut op = op.clone();
        if let Some(shape) = op.shape_attr_mut() {
            *shape = resolved;
        }
        Ok(Cow::Owned(op))
    }
}

/// Checks the caller's tensors against the graph's inputs and makes the body's arguments.
fn bind_inputs(g: &Graph, inputs: &[Tensor], dims: &mut Dims) -> Result<Vec<Slot>, RunError> {
    let expected = g.inputs().iter().filter(|&&v| !g.ty(v).is_token()).count();
    if inputs.len() != expected {
        return Err(RunError::InputCount {
            expected,
            found: inputs.len(),
        });
    }
    let mut given = inputs.iter().enumerate();
    let mut args = Vec::with_capacity(g.inputs().len());
    for &v in g.inputs() {
        let Type::Tensor(ty) = g.ty(v) else {
            args.push(Slot::Token);
            continue;
        };
        let Some((index, t)) = given.next() else {
            break;
        };
        let mismatch = |reason: String| RunError::InputType {
            index,
            expected: ty.clone(),
            found: t.ttype(),
            reason,
        };
        if t.dtype() != ty.dtype {
            return Err(mismatch(format!(
                "dtype {} where {} is declared",
                t.dtype(),
                ty.dtype
            )));
        }
        dims.check(&ty.shape, t.shape()).map_err(mismatch)?;
        args.push(Slot::Tensor(t.clone()));
    }
    Ok(args)
}

/// The state of one run.
struct Run<'p, 'g, 'e> {
    plan: &'p Plan<'g>,
    device: &'p dyn Device,
    effects: &'e mut dyn Effects,
    table: Vec<Option<Slot>>,
    dims: Dims,
    /// Slots currently holding something.
    live: usize,
    stats: RunStats,
}

impl Run<'_, '_, '_> {
    fn set(&mut self, v: ValueId, slot: Slot) {
        if self.table[v.index()].replace(slot).is_none() {
            self.live += 1;
            self.stats.peak_live = self.stats.peak_live.max(self.live);
        }
    }

    fn release(&mut self, v: ValueId) {
        if self.table[v.index()].take().is_some() {
            self.live -= 1;
        }
    }

    /// Takes tensor `v` out of its slot (the slot is released): how a donor is lent, so that
    /// the table no longer holds its buffer.
    fn take_tensor(&mut self, v: ValueId, span: Span) -> Result<Tensor, RunError> {
        self.tensor(v, span)?;
        match self.table[v.index()].take() {
            Some(Slot::Tensor(t)) => {
                self.live -= 1;
                Ok(t)
            }
            other => {
                self.table[v.index()] = other;
                Err(RunError::Malformed {
                    message: format!("value {} cannot be taken", v.index()),
                    span,
                })
            }
        }
    }

    /// The operands `vs` as owned handles, with the donors among them (positions in
    /// `donors`) taken out of the table.
    fn lend(
        &mut self,
        vs: &[ValueId],
        donors: impl Fn(usize) -> bool,
        span: Span,
    ) -> Result<Vec<Tensor>, RunError> {
        // Handles on the others first, so that a donor taken out of its slot is not needed
        // again (a donor appears once among the operands).
        let mut out: Vec<Option<Tensor>> = vs
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if donors(i) {
                    Ok(None)
                } else {
                    self.tensor(v, span).map(|t| Some(t.clone()))
                }
            })
            .collect::<Result<_, _>>()?;
        for (i, &v) in vs.iter().enumerate() {
            if out[i].is_none() {
                out[i] = Some(self.take_tensor(v, span)?);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn get(&self, v: ValueId, span: Span) -> Result<&Slot, RunError> {
        self.table
            .get(v.index())
            .and_then(Option::as_ref)
            .ok_or_else(|| RunError::Malformed {
                message: format!("value {} is used where it is not defined", v.index()),
                span,
            })
    }

    fn tensor(&self, v: ValueId, span: Span) -> Result<&Tensor, RunError> {
        match self.get(v, span)? {
            Slot::Tensor(t) => Ok(t),
            Slot::Token => Err(RunError::Malformed {
                message: format!("value {} is the token where a tensor is needed", v.index()),
                span,
            }),
        }
    }

    /// Checks a computed tensor against the declared type of `v`.
    fn check_type(
        &mut self,
        v: ValueId,
        t: &Tensor,
        op: &'static str,
        span: Span,
    ) -> Result<(), RunError> {
        let Type::Tensor(ty) = self.plan.graph.ty(v) else {
            return Err(RunError::Malformed {
                message: format!("`{op}` gives a tensor where the token is declared"),
                span,
            });
        };
        if t.dtype() != ty.dtype || self.dims.check(&ty.shape, t.shape()).is_err() {
            return Err(RunError::ResultType {
                op,
                expected: ty.clone(),
                found: t.ttype(),
                span,
            });
        }
        Ok(())
    }

    /// Runs block `b` with `args` bound to its arguments and returns what it yields.
    fn block(&mut self, b: BlockId, args: Vec<Slot>, span: Span) -> Result<Vec<Slot>, RunError> {
        let g = self.plan.graph;
        let block = g.block(b);
        if args.len() != block.args.len() {
            return Err(RunError::Malformed {
                message: format!(
                    "a region takes {} arguments but is given {}",
                    block.args.len(),
                    args.len()
                ),
                span,
            });
        }
        for (&v, slot) in block.args.iter().zip(args) {
            self.set(v, slot);
        }
        let releases = self.plan.prepared.memory.releases(b);
        for &v in releases.first().into_iter().flatten() {
            self.release(v);
        }
        for (k, &n) in block.nodes.iter().enumerate() {
            let node = g.node(n);
            if crate::cancel::requested() {
                return Err(RunError::Interrupted { span: node.span });
            }
            self.node(n)?;
            self.stats.nodes_run += 1;
            for &v in releases.get(k + 1).into_iter().flatten() {
                self.release(v);
            }
        }
        let mut out = Vec::with_capacity(block.yields.len());
        for &v in &block.yields {
            out.push(self.get(v, span)?.clone());
        }
        for &v in releases.get(block.nodes.len() + 1).into_iter().flatten() {
            self.release(v);
        }
        Ok(out)
    }

    /// Binds `slots` to the results of node `n`.
    fn bind_results(&mut self, n: ir::graph::NodeId, slots: Vec<Slot>) -> Result<(), RunError> {
        let node = self.plan.graph.node(n);
        if slots.len() != node.results.len() {
            return Err(RunError::Malformed {
                message: format!(
                    "`{}` gives {} values but declares {} results",
                    node.kind.name(),
                    slots.len(),
                    node.results.len()
                ),
                span: node.span,
            });
        }
        for (&v, slot) in node.results.iter().zip(slots) {
            if let Slot::Tensor(t) = &slot {
                self.check_type(v, t, node.kind.name(), node.span)?;
            }
            self.set(v, slot);
        }
        Ok(())
    }

    fn operands(&self, vs: &[ValueId], span: Span) -> Result<Vec<Slot>, RunError> {
        vs.iter().map(|&v| self.get(v, span).cloned()).collect()
    }

    /// Reads a `bool[]` scalar from the device.
    fn read_bool(&self, v: ValueId, span: Span) -> Result<bool, RunError> {
        let t = self.tensor(v, span)?;
        match self.download_scalar(t, span)? {
            HostBuffer::Bool(b) => Ok(b[0]),
            other => Err(RunError::Malformed {
                message: format!("a condition must be bool[], not {}", other.dtype()),
                span,
            }),
        }
    }

    /// Reads an integer scalar (a `for` bound) from the device.
    fn read_int(&self, v: ValueId, span: Span) -> Result<i64, RunError> {
        let t = self.tensor(v, span)?;
        match self.download_scalar(t, span)? {
            HostBuffer::I64(b) => Ok(b[0]),
            HostBuffer::I32(b) => Ok(i64::from(b[0])),
            other => Err(RunError::Malformed {
                message: format!("a loop bound must be an integer, not {}", other.dtype()),
                span,
            }),
        }
    }

    fn download_scalar(&self, t: &Tensor, span: Span) -> Result<HostBuffer, RunError> {
        if t.numel() != 1 {
            return Err(RunError::Malformed {
                message: format!("a scalar is needed, not a tensor of shape {:?}", t.shape()),
                span,
            });
        }
        let buf = self.device.download(t).map_err(|error| RunError::Device {
            error: Box::new(error),
            span,
        })?;
        if buf.len() != 1 {
            return Err(RunError::Malformed {
                message: format!("the device gave {} elements for a scalar", buf.len()),
                span,
            });
        }
        Ok(buf)
    }

    /// Fused node `n`, declined whole, run as its [`Split`]: the elementwise part as one
    /// fused kernel, then each reduction on that part's output. `None` when the node has no
    /// split or the device declines the part too.
    fn split(&self, n: NodeId, args: &[&Tensor]) -> Result<Option<Vec<Slot>>, DeviceError> {
        let Some(split) = self.plan.prepared.splits.get(&n) else {
            return Ok(None);
        };
        let Some(part) = self.device.exec_fused(&split.kernel, args)? else {
            return Ok(None);
        };
        let mut outs = Vec::with_capacity(split.outputs.len());
        for p in &split.outputs {
            let t = match p {
                Part::Output(i) => part.get(*i).cloned(),
                Part::Reduce { op, of } => match part.get(*of) {
                    Some(x) => Some(self.device.exec(op, &[x])?),
                    None => None,
                },
            };
            let Some(t) = t else {
                return Ok(None);
            };
            outs.push(Slot::Tensor(t));
        }
        Ok(Some(outs))
    }

    fn node(&mut self, n: NodeId) -> Result<(), RunError> {
        let g = self.plan.graph;
        let node = g.node(n);
        let span = node.span;
        let device_err = |error| RunError::Device {
            error: Box::new(error),
            span,
        };
        match &node.kind {
            NodeKind::Prim(op) => {
                let effectful = is_effectful(op.prim());
                let tensor_operands = if effectful {
                    node.operands.get(1..).unwrap_or_default()
                } else {
                    &node.operands[..]
                };
                let op = self
                    .dims
                    .resolve_op(op)
                    .map_err(|message| RunError::Malformed { message, span })?;
                let donation = match self.plan.prepared.memory.donations(n) {
                    [d] if self.plan.prepared.in_place && !effectful => Some(*d),
                    _ => None,
                };
                let out = if let Some(d) = donation {
                    let mut lent = self.lend(tensor_operands, |i| i == d.operand, span)?;
                    let addr = lent.get(d.operand).map(Tensor::storage_addr);
                    let out = self
                        .device
                        .exec_donating(&op, &mut lent, d.operand)
                        .map_err(device_err)?;
                    if addr == Some(out.storage_addr()) {
                        self.stats.in_place += 1;
                    }
                    out
                } else {
                    let args = tensor_operands
                        .iter()
                        .map(|&v| self.tensor(v, span))
                        .collect::<Result<Vec<_>, _>>()?;
                    self.device.exec(&op, &args).map_err(device_err)?
                };
                if matches!(*op, Op::Print {}) {
                    self.effects.print(n, &out, span);
                }
                let slots = if effectful {
                    vec![Slot::Token, Slot::Tensor(out)]
                } else {
                    vec![Slot::Tensor(out)]
                };
                self.bind_results(n, slots)
            }
            NodeKind::Collective(c) => {
                let (Some(&x), Some(&r)) = (node.operands.first(), node.results.first()) else {
                    return Err(RunError::Malformed {
                        message: format!("`{}` takes one operand and gives one result", c.name()),
                        span,
                    });
                };
                let Some(out) = g.ty(r).tensor() else {
                    return Err(RunError::Malformed {
                        message: format!("`{}` gives a tensor", c.name()),
                        span,
                    });
                };
                let value = self.tensor(x, span)?.clone();
                let t = self
                    .effects
                    .collective(c, &value, out)
                    .map_err(device_err)?;
                self.bind_results(n, vec![Slot::Tensor(t)])
            }
            NodeKind::Assert { message } => {
                let cond = node.operands.get(1).copied().ok_or(RunError::Malformed {
                    message: "`assert` takes the token and a condition".to_string(),
                    span,
                })?;
                if !self.read_bool(cond, span)? {
                    return Err(RunError::Assert {
                        message: message.clone(),
                        span,
                    });
                }
                self.bind_results(n, vec![Slot::Token])
            }
            NodeKind::If {
                then_block,
                else_block,
            } => {
                let (&cond, passed) = node.operands.split_first().ok_or(RunError::Malformed {
                    message: "`if` takes a condition".to_string(),
                    span,
                })?;
                let region = if self.read_bool(cond, span)? {
                    *then_block
                } else {
                    *else_block
                };
                let args = self.operands(passed, span)?;
                let out = self.block(region, args, span)?;
                self.bind_results(n, out)
            }
            NodeKind::Fused { body } => {
                let donations = self.plan.prepared.memory.donations(n);
                if let Some(kernel) = self.plan.prepared.kernels.get(&n)
                    && self.plan.prepared.in_place
                    && !donations.is_empty()
                {
                    let mut lent = self.lend(
                        &node.operands,
                        |i| donations.iter().any(|d| d.operand == i),
                        span,
                    )?;
                    let addrs: Vec<(usize, Option<usize>)> = donations
                        .iter()
                        .map(|d| (d.result, lent.get(d.operand).map(Tensor::storage_addr)))
                        .collect();
                    match self
                        .device
                        .exec_fused_donating(kernel, &mut lent, donations)
                        .map_err(device_err)?
                    {
                        Some(outs) => {
                            for (r, addr) in addrs {
                                if addr.is_some() && outs.get(r).map(Tensor::storage_addr) == addr {
                                    self.stats.in_place += 1;
                                }
                            }
                            return self
                                .bind_results(n, outs.into_iter().map(Slot::Tensor).collect());
                        }
                        None => {
                            // Declined before writing anything: the region runs on the
                            // operands, donors included.
                            let refs: Vec<&Tensor> = lent.iter().collect();
                            if let Some(outs) = self.split(n, &refs).map_err(device_err)? {
                                return self.bind_results(n, outs);
                            }
                            let args = lent.into_iter().map(Slot::Tensor).collect();
                            let out = self.block(*body, args, span)?;
                            return self.bind_results(n, out);
                        }
                    }
                }
                if let Some(kernel) = self.plan.prepared.kernels.get(&n) {
                    let args = node
                        .operands
                        .iter()
                        .map(|&v| self.tensor(v, span))
                        .collect::<Result<Vec<_>, _>>()?;
                    if let Some(outs) = self.device.exec_fused(kernel, &args).map_err(device_err)? {
                        return self.bind_results(n, outs.into_iter().map(Slot::Tensor).collect());
                    }
                    if let Some(outs) = self.split(n, &args).map_err(device_err)? {
                        return self.bind_results(n, outs);
                    }
                }
                let args = self.operands(&node.operands, span)?;
                let out = self.block(*body, args, span)?;
                self.bind_results(n, out)
            }
            NodeKind::Call { body, .. } => {
                let args = self.operands(&node.operands, span)?;
                let out = self.block(*body, args, span)?;
                self.bind_results(n, out)
            }
            NodeKind::For { body } => {
                let [start, stop, step, carried @ ..] = &node.operands[..] else {
                    return Err(RunError::Malformed {
                        message: "`for` takes start, stop and step".to_string(),
                        span,
                    });
                };
                let dtype = match g.ty(*start) {
                    Type::Tensor(t) => t.dtype,
                    Type::Token => DType::I64,
                };
                let (start, stop, step) = (
                    self.read_int(*start, span)?,
                    self.read_int(*stop, span)?,
                    self.read_int(*step, span)?,
                );
                if step == 0 {
                    return Err(RunError::Malformed {
                        message: "a `for` loop's step must not be zero".to_string(),
                        span,
                    });
                }
                let mut state = self.operands(carried, span)?;
                let mut i = start;
                while (step > 0 && i < stop) || (step < 0 && i > stop) {
                    if crate::cancel::requested() {
                        return Err(RunError::Interrupted { span });
                    }
                    let data = match dtype {
                        DType::I32 => HostBuffer::I32(vec![i32::try_from(i).map_err(|_| {
                            RunError::Malformed {
                                message: format!("the induction variable {i} overflows i32"),
                                span,
                            }
                        })?]),
                        _ => HostBuffer::I64(vec![i]),
                    };
                    let iv = self.device.upload(data, &[]).map_err(device_err)?;
                    let mut args = Vec::with_capacity(state.len() + 1);
                    args.push(Slot::Tensor(iv));
                    args.append(&mut state);
                    state = self.block(*body, args, span)?;
                    i = match i.checked_add(step) {
                        Some(next) => next,
                        None => break,
                    };
                }
                self.bind_results(n, state)
            }
            NodeKind::While { cond, body } => {
                let mut state = self.operands(&node.operands, span)?;
                loop {
                    if crate::cancel::requested() {
                        return Err(RunError::Interrupted { span });
                    }
                    let mut out = self.block(*cond, state, span)?;
                    if out.is_empty() {
                        return Err(RunError::Malformed {
                            message: "a `while` condition must yield its flag".to_string(),
                            span,
                        });
                    }
                    let flag = out.remove(0);
                    let go = match flag {
                        Slot::Tensor(t) => match self.download_scalar(&t, span)? {
                            HostBuffer::Bool(b) => b[0],
                            other => {
                                return Err(RunError::Malformed {
                                    message: format!(
                                        "a `while` flag must be bool[], not {}",
                                        other.dtype()
                                    ),
                                    span,
                                });
                            }
                        },
                        Slot::Token => {
                            return Err(RunError::Malformed {
                                message: "a `while` flag must be bool[], not the token".to_string(),
                                span,
                            });
                        }
                    };
                    if !go {
                        break self.bind_results(n, out);
                    }
                    state = self.block(*body, out, span)?;
                }
            }
        }
    }
}
