//! Parallel functions: `@jit(parallel: "data", devices: N)` run on a mesh of devices
//! (LANGUAGE.md §9).
//!
//! A call stages the function as any `@jit` call does (one graph, written for one
//! device), then `ir::parallel::partition` turns the graph as staged into the graph each
//! device of the mesh runs, with the collectives that keep the pieces consistent; each
//! device's graph goes through the session's passes like any staged graph. The devices are
//! virtual CPU devices in this process (`--devices cpu:N`): one thread per device, each
//! running its graph with the executor every staged graph uses, and
//! `devices::mesh::Comm` carrying the collectives between them. The devices share the
//! process's thread pool (`--threads`) for their kernels.
//!
//! **Data parallelism** (`parallel: "data"`): plain tensor arguments of rank ≥ 1 are split
//! along axis 0, as evenly as possible (the first devices get one more row); tuple and
//! record arguments (parameters, optimizer state), scalars and captured tensors are
//! replicated; `batch: (1, 2)` names the split arguments by position instead (counting
//! from 0; every tensor of rank ≥ 1 inside them is split). The partitioner keeps the batch
//! split through every primitive that allows it and makes a *partial* result where the
//! batch is folded away (a loss's sum, a weight gradient's product); one all-reduce
//! combines it before its first use, which for a training step is the all-reduce of each
//! gradient. The result is the single-device result up to the order of floating-point
//! sums, and the same on every run (the all-reduces add the devices' parts in rank order).
//! Device 0's prints and summaries are the call's; the other devices' are not shown.
//!
//! The mesh is `--devices cpu:N` when given (a function may not ask for more devices than
//! it has); without it, a parallel function gets the `devices:` it asks for. With one
//! device a parallel function is an ordinary `@jit` function.
//!
//! **Semi-automatic** (`parallel: "semi_auto"`): `shard(x, [a, b])` inside the function
//! asks for `x` split into `a` pieces along axis 0 and `b` along axis 1 (MindSpore's
//! strategies); the first hint's counts make the mesh (`[2, 2]` on 4 devices is a 2×2
//! mesh; a leading axis holds any devices left over), arguments are replicated unless
//! hinted, and the partitioner propagates the hinted layouts through what reads them
//! (Megatron's column-then-row products come from one hint). Hints inside a function
//! differentiated within the staged one are not seen.
//!
//! **Automatic** (`parallel: "auto"`): the candidates — data parallelism and full
//! replication — are partitioned and priced with the cost model (`ir::cost` per
//! primitive, α-β per collective, on the `cpu` profile), and the cheapest runs. The
//! per-operator search of the planner is not built.

use std::sync::Arc;

use devices::Tensor;
use devices::mesh::{self as dmesh, Collectives as _, Comm};
use devices::schedule::{Effects, Plan, Prepared, RunError};
use ir::graph::{NodeId, Span as IrSpan};
use ir::parallel::{BucketPolicy, Collective, Layout, Mesh, Profile, SavedPlan, estimate};
use lang::Span;
use lang::ast::{Attribute, ExprKind};

use super::jit::StagedFn;
use crate::eval::Eval;
use crate::eval::errors::{self, R};
use crate::value::{TensorVal, Value};

/// How a parallel function splits its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch arguments split, everything else replicated, gradients all-reduced.
    Data,
    /// `shard` hints, the rest propagated.
    SemiAuto,
    /// The planner's search.
    Auto,
}

impl Mode {
    /// The mode named `name` as `parallel:` and `--parallel` write it.
    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "data" => Some(Mode::Data),
            "semi_auto" => Some(Mode::SemiAuto),
            "auto" => Some(Mode::Auto),
            _ => None,
        }
    }
}

/// What `@jit(parallel: ..., devices: ..., batch: ...)` asks for.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The parallel mode.
    pub mode: Mode,
    /// `devices: N`, if given.
    pub devices: Option<usize>,
    /// `batch: (i, ...)`, if given: the positions of the split arguments.
    pub batch: Option<Vec<usize>>,
    /// The attribute, for messages.
    pub span: Span,
    /// An argument that is not a literal (the checker knows its type, not its value).
    pub not_literal: Option<Span>,
}

impl Spec {
    /// The parallel part of a `@jit` attribute; `None` when it names no `parallel:` mode.
    /// The checker has checked the arguments' types; their values must be literals.
    pub fn of(attr: &Attribute) -> Option<Spec> {
        let mut spec = Spec {
            mode: Mode::Data,
            devices: None,
            batch: None,
            span: attr.span,
            not_literal: None,
        };
        let mut parallel = false;
        for arg in &attr.args {
            let Some(name) = &arg.name else { continue };
            let v = &arg.value;
            match (&*name.name, &v.kind) {
                ("parallel", ExprKind::Str(s)) => {
                    parallel = true;
                    spec.mode = Mode::from_name(s).unwrap_or(Mode::Data);
                }
                ("devices", ExprKind::Int(n)) => spec.devices = Some((*n).max(0) as usize),
                ("batch", ExprKind::Int(n)) => spec.batch = Some(vec![(*n).max(0) as usize]),
                ("batch", ExprKind::Tuple(items)) => {
                    let ints: Option<Vec<usize>> = items
                        .iter()
                        .map(|e| match e.kind {
                            ExprKind::Int(n) => Some(n.max(0) as usize),
                            _ => None,
                        })
                        .collect();
                    match ints {
                        Some(b) => spec.batch = Some(b),
                        None => spec.not_literal = Some(v.span),
                    }
                }
                ("parallel", _) => {
                    parallel = true;
                    spec.not_literal = Some(v.span);
                }
                _ => spec.not_literal = Some(v.span),
            }
        }
        parallel.then_some(spec)
    }
}

/// A staged function partitioned for a mesh: one graph per distinct device program.
pub(crate) struct MeshPlan {
    mesh: Mesh,
    /// How the strategy was chosen, in words (`ms plan`'s first line).
    note: String,
    graphs: Vec<(ir::Graph, Prepared)>,
    of_rank: Vec<usize>,
    /// The layout of each tensor input of the staged graph.
    layouts: Vec<Layout>,
    /// The type of each tensor input of the staged graph.
    input_types: Vec<ir::TensorType>,
    /// The partitioned graphs before the passes, with what was decided at each primitive
    /// (`ms plan`, `:plan`).
    priced: ir::parallel::Partitioned,
    /// The plan as `ms plan --save` writes it: the mesh, the input layouts and the hints.
    saved: SavedPlan,
}

impl MeshPlan {
    /// The plan's text form for `ms plan --save` (`ir::parallel::saved`), headed by comment
    /// lines saying where it came from and how to re-check it.
    pub(crate) fn saved_text(&self, name: &str, about: &str) -> String {
        self.saved.to_text(&format!(
            "The plan of `{name}` ({}), {about}.\n\
             Edit the layouts (one entry per axis: `-`, or the mesh axis m0, m1, ... it is\n\
             split over), then check and price it again with\n\
             `ms plan FILE.ms --fn {name} --plan THIS_FILE`, or run with it:\n\
             `ms --plan {name}=THIS_FILE FILE.ms`.",
            self.note
        ))
    }

    /// Each distinct device graph as text, after a comment naming the devices that run it
    /// (`ms ir --stage parallel`).
    pub(crate) fn graph_texts(&self, opts: ir::graph::PrintOptions) -> Vec<String> {
        self.graphs
            .iter()
            .enumerate()
            .map(|(i, (g, _))| {
                let ranks: Vec<String> = (0..self.of_rank.len())
                    .filter(|&r| self.of_rank[r] == i)
                    .map(|r| r.to_string())
                    .collect();
                format!(
                    "// devices {} of a {} mesh\n{}",
                    ranks.join(", "),
                    self.mesh,
                    ir::graph::print(g, opts)
                )
            })
            .collect()
    }

    /// The plan as a table (`ms plan`, `:plan`): the inputs' layouts, each primitive's
    /// layout and the collectives before it, and the estimated time of one call on
    /// `profile`.
    pub(crate) fn render(&self, name: &str, profile: &str) -> Result<String, String> {
        use std::fmt::Write as _;
        let prof = Profile::named(profile)?;
        let prof = &prof;
        let n = self.mesh.size();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plan of `{name}`: {} over {n} devices (mesh {}; m0, m1, ... are its axes)",
            self.note, self.mesh
        );
        let _ = writeln!(out, "inputs:");
        for (i, (t, l)) in self.input_types.iter().zip(&self.layouts).enumerate() {
            let splits: Vec<String> = l
                .map
                .iter()
                .enumerate()
                .filter_map(|(axis, m)| {
                    let k = self.mesh.shape().get((*m)?).copied()?;
                    let len = t.shape.dims().get(axis)?.known()?;
                    let sizes: Vec<String> = ir::parallel::split_sizes(len, k)
                        .iter()
                        .map(usize::to_string)
                        .collect();
                    Some(format!("axis {axis} into {}", sizes.join(", ")))
                })
                .collect();
            let pieces = if splits.is_empty() {
                "  replicated".to_string()
            } else {
                format!("  split: {}", splits.join("; "))
            };
            let _ = writeln!(
                out,
                "  {i:>3}  {:<22} {:<14}{pieces}",
                t.to_string(),
                l.to_string()
            );
        }
        let _ = writeln!(
            out,
            "  {:>3}  {:<22} {:<22} {:<16} {:>12}  collectives before it",
            "#", "primitive", "result", "layout", "flops/dev"
        );
        let yield_step = ir::parallel::Step {
            name: "yield".to_string(),
            ty: ir::TensorType::new(ir::DType::Bool, ir::Shape::scalar()),
            layout: Layout::default(),
            collectives: self.priced.output_collectives.clone(),
            cost: ir::Cost::default(),
            span: IrSpan::default(),
        };
        let last = self.priced.steps.len();
        for (i, s) in self
            .priced
            .steps
            .iter()
            .chain(std::iter::once(&yield_step))
            .enumerate()
        {
            let colls: Vec<String> = s
                .collectives
                .iter()
                .filter(|(c, _, _)| !matches!(c, Collective::Shard { .. }))
                .map(|(c, t, b)| format!("{} {t} ({b} B)", c.name()))
                .collect();
            if i == last {
                let _ = writeln!(
                    out,
                    "       {:<22} {:<56}  {}",
                    "yield",
                    "(the outputs, whole)",
                    colls.join("; ")
                );
                continue;
            }
            let _ = writeln!(
                out,
                "  {:>3}  {:<22} {:<22} {:<16} {:>12}  {}",
                i + 1,
                s.name,
                s.ty.to_string(),
                s.layout.to_string(),
                s.cost.flops,
                colls.join("; ")
            );
        }
        let e = estimate(&self.priced, prof);
        let _ = writeln!(
            out,
            "per call on each device: {} flops; {} all-reduces and {} all-gathers sending {} bytes; {} local shards",
            e.flops, e.counts[0], e.counts[1], e.bytes, e.counts[2]
        );
        let _ = writeln!(
            out,
            "estimated on `{}`: compute {:.1} µs + communication {:.1} µs = {:.1} µs; peak memory {} bytes per device ({})",
            prof.name,
            e.compute * 1e6,
            e.comm * 1e6,
            e.total() * 1e6,
            e.peak_bytes,
            prof.about
        );
        Ok(out)
    }
}

/// The mesh a semi-automatic function runs on and its hints as layouts. The first hint's
/// piece counts greater than one, in axis order, are the mesh's axes (`[2, 2]` makes a
/// 2×2 mesh); when they use fewer devices than the function has, a leading axis holds the
/// rest (whole copies). Each hint maps each split axis to an unused mesh axis of its
/// count, the first hint's own axes first.
fn semi_auto_mesh(
    n: usize,
    hints: &[(ir::graph::ValueId, Vec<usize>, Span)],
) -> R<(Mesh, Vec<(ir::graph::ValueId, Layout)>)> {
    let Some((_, first, at)) = hints.first() else {
        return Ok((Mesh::line(n), Vec::new()));
    };
    let base: Vec<usize> = first.iter().copied().filter(|&k| k > 1).collect();
    let used: usize = base.iter().product();
    if used == 0 || !n.is_multiple_of(used) {
        return Err(errors::bad_value(
            format!(
                "`shard` asks for {used} devices, which does not divide the function's {n} devices"
            ),
            *at,
        ));
    }
    let mut shape = Vec::new();
    if used < n {
        shape.push(n / used);
    }
    let lead = shape.len();
    shape.extend(base);
    let mesh = Mesh::new(&shape);
    let mut out = Vec::new();
    for (v, strategy, span) in hints {
        let mut map = vec![None; strategy.len()];
        for (axis, &k) in strategy.iter().enumerate() {
            if k == 1 {
                continue;
            }
            let free = (lead..shape.len())
                .chain(0..lead)
                .find(|&m| shape[m] == k && !map.contains(&Some(m)));
            match free {
                Some(m) => map[axis] = Some(m),
                None => {
                    return Err(errors::bad_value(
                        format!(
                            "`shard(x, {strategy:?})` does not fit the {} mesh the first hint made ({:?})",
                            mesh, first
                        ),
                        *span,
                    ));
                }
            }
        }
        out.push((
            *v,
            Layout {
                map,
                partial: Vec::new(),
            },
        ));
    }
    Ok((mesh, out))
}

/// The layouts of a call's graph inputs in data parallelism: the random key, then each
/// argument's input leaves, then captured tensors.
fn data_layouts(
    g: &StagedFn,
    spec: &Spec,
    pos: &[(Value, Span)],
    named: &[(lang::ast::Name, Value, Span)],
) -> Vec<Layout> {
    let mut out = vec![Layout::replicated(1)];
    let mut leaves = Vec::new();
    let args = pos
        .iter()
        .map(|(v, _)| v)
        .chain(named.iter().map(|(_, v, _)| v));
    for (i, v) in args.enumerate() {
        leaves.clear();
        super::jit::input_leaves(v, &mut leaves);
        let split = match &spec.batch {
            Some(b) => b.contains(&i),
            None => matches!(v, Value::Tensor(_)),
        };
        for l in &leaves {
            let rank = l.rank();
            out.push(if split && rank >= 1 {
                Layout::split(rank, 0, 0)
            } else {
                Layout::replicated(rank)
            });
        }
    }
    out.extend(g.captures.iter().map(|t| Layout::replicated(t.rank())));
    out
}

/// The roles of a call's graph inputs for the planner: the random key and scalars stay
/// whole, plain tensor arguments are batches, the leaves of tuples and records
/// (parameters, optimizer state) and captured tensors are parameters.
fn data_roles(
    g: &StagedFn,
    pos: &[(Value, Span)],
    named: &[(lang::ast::Name, Value, Span)],
) -> Vec<ir::parallel::Role> {
    use ir::parallel::Role;
    let mut out = vec![Role::Fixed];
    let mut leaves = Vec::new();
    for v in pos
        .iter()
        .map(|(v, _)| v)
        .chain(named.iter().map(|(_, v, _)| v))
    {
        leaves.clear();
        super::jit::input_leaves(v, &mut leaves);
        for l in &leaves {
            out.push(match (v, l.rank()) {
                (_, 0) => Role::Fixed,
                (Value::Tensor(_), _) => Role::Batch,
                _ => Role::Param,
            });
        }
    }
    out.extend(g.captures.iter().map(|t| {
        if t.rank() == 0 {
            Role::Fixed
        } else {
            Role::Param
        }
    }));
    out
}

/// `ms plan`'s settings for the planner (`parallel: "auto"`).
#[derive(Clone, Debug)]
pub struct Planning {
    /// `--mesh 2x4`: the mesh's shape, instead of trying each that the devices allow.
    pub mesh: Option<Vec<usize>>,
    /// `--mem-cap 8GiB`: the most bytes a device may hold.
    pub cap: Option<u64>,
    /// `--profile NAME`: the hardware profile of the estimates.
    pub profile: String,
    /// `--plan NAME=FILE`: saved plans (`ir::parallel::saved`) that decide how the named
    /// functions are split, instead of their own `parallel:` strategy; with the file's name.
    pub plans: Vec<(String, SavedPlan, String)>,
}

impl Default for Planning {
    fn default() -> Planning {
        Planning {
            mesh: None,
            cap: None,
            profile: "cpu".to_string(),
            plans: Vec::new(),
        }
    }
}

/// The effects of one device of a mesh: its collectives go through its communicator;
/// device 0 prints through the session's printer, the others print nothing.
struct OnMesh<'a, 'p, 'e> {
    print: Option<&'p mut (dyn Effects + 'e)>,
    comm: &'a dyn dmesh::Collectives,
    mesh: &'a Mesh,
    device: &'a dyn devices::Device,
}

impl Effects for OnMesh<'_, '_, '_> {
    fn print(&mut self, node: NodeId, value: &Tensor, span: IrSpan) {
        if let Some(p) = self.print.as_deref_mut() {
            p.print(node, value, span);
        }
    }

    fn collective(
        &mut self,
        c: &Collective,
        value: &Tensor,
        _out: &ir::TensorType,
    ) -> Result<Tensor, devices::DeviceError> {
        let rank = self.comm.rank();
        let members = self.mesh.group(rank, c.mesh_axis());
        match *c {
            Collective::AllReduce { op, .. } => {
                self.comm.all_reduce(self.device, value, op, &members)
            }
            Collective::AllGather { axis, .. } => {
                self.comm.all_gather(self.device, value, axis, &members)
            }
            Collective::AllToAll {
                split_axis,
                concat_axis,
                ..
            } => self
                .comm
                .all_to_all(self.device, value, split_axis, concat_axis, &members),
            Collective::Shard { axis, mesh_axis } => {
                let k = members.len();
                let at = self.mesh.coords(rank)[mesh_axis];
                dmesh::shard(self.device, value, axis, k, at)
            }
        }
    }
}

/// Runs device `rank`'s graph and settles its communicator: finished when the run
/// succeeds, aborted (so that no other device waits for it forever) when it fails.
fn run_rank(
    plan: &MeshPlan,
    rank: usize,
    device: &dyn devices::Device,
    inputs: &[Tensor],
    comm: Comm,
    print: Option<&mut (dyn Effects + '_)>,
) -> Result<Vec<Tensor>, RunError> {
    let r = match plan.of_rank.get(rank).and_then(|&i| plan.graphs.get(i)) {
        Some((g, prepared)) => {
            let mut fx = OnMesh {
                print,
                comm: &comm,
                mesh: &plan.mesh,
                device,
            };
            Plan::with(g, prepared).run(device, inputs, &mut fx)
        }
        None => Err(RunError::Malformed {
            message: format!("device {rank} has no graph"),
            span: IrSpan::default(),
        }),
    };
    match &r {
        Ok(_) => comm.finish(),
        Err(e) => comm.abort(&e.to_string()),
    }
    r
}

/// The thread pools of a mesh of `n` virtual CPU devices, one per device, each with an
/// equal share of the process's threads (`--threads`, at least one each).
///
/// A device runs its graph inside its own pool, so its kernels split their work only among
/// its own threads, as on a machine where each device has its cores: devices do not queue
/// behind each other in one shared pool. The pools live in the session between calls
/// because a device's threads keep per-thread state that is costly to rebuild on every
/// call, above all the matrix product's packing buffers (fresh ones are megabytes of newly
/// mapped pages to fault in).
#[derive(Debug)]
pub(crate) struct DevicePools {
    pools: Vec<rayon::ThreadPool>,
}

impl DevicePools {
    /// How many devices the pools serve.
    fn len(&self) -> usize {
        self.pools.len()
    }
}

/// Whether an error only reports that another device stopped (so that the other device's
/// own error is the one to show).
fn is_echo(e: &RunError) -> bool {
    matches!(e, RunError::Device { error, .. } if matches!(**error, devices::DeviceError::Collective { .. }))
}

impl Eval<'_> {
    /// How many devices a call of a parallel function runs on, or the error that it may
    /// not run.
    pub(crate) fn mesh_size(&self, spec: &Spec, span: Span) -> R<usize> {
        if let Some(at) = spec.not_literal {
            return Err(errors::bad_value(
                "the arguments of `@jit(parallel: ...)` must be literals (a string, an integer, a tuple of integers)".to_string(),
                at,
            ));
        }
        let n = match (spec.devices, self.st.mesh) {
            (Some(0), _) => {
                return Err(errors::bad_value(
                    "`devices: 0`: a mesh needs at least one device".to_string(),
                    spec.span,
                ));
            }
            (Some(want), Some(have)) if want > have => {
                return Err(errors::bad_value(
                    format!(
                        "`devices: {want}` asks for more devices than the mesh has ({have}, `--devices cpu:{have}`)"
                    ),
                    spec.span,
                ));
            }
            (Some(want), _) => want,
            (None, Some(have)) => have,
            (None, None) => 1,
        };
        if n > MAX_DEVICES {
            return Err(errors::bad_value(
                format!("`devices: {n}`: a virtual mesh has at most {MAX_DEVICES} devices"),
                spec.span,
            ));
        }
        let _ = span;
        Ok(n)
    }

    /// The thread pools of a mesh of `n` virtual devices, made on the first call on a mesh
    /// of that size and kept (see [`DevicePools`]).
    fn device_pools(&mut self, n: usize, span: Span) -> R<Arc<DevicePools>> {
        if let Some(p) = &self.st.device_pools
            && p.len() == n
        {
            return Ok(p.clone());
        }
        let each = (rayon::current_num_threads() / n.max(1)).max(1);
        let pool = |size: usize, name: String| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(size)
                .thread_name(move |i| format!("{name}-{i}"))
                .build()
                .map_err(|e| {
                    errors::bad_value(format!("cannot start the threads of the mesh: {e}"), span)
                })
        };
        let pools = (0..n)
            .map(|d| pool(each, format!("ms-device{d}")))
            .collect::<R<Vec<_>>>()?;
        let pools = Arc::new(DevicePools { pools });
        self.st.device_pools = Some(pools.clone());
        Ok(pools)
    }

    /// Runs a staged call of a parallel function on a mesh of `n` devices.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_parallel(
        &mut self,
        g: &StagedFn,
        spec: &Spec,
        n: usize,
        pos: &[(Value, Span)],
        named: &[(lang::ast::Name, Value, Span)],
        leaves: Vec<TensorVal>,
        span: Span,
    ) -> R<Value> {
        let plan = self.mesh_plan(g, spec, n, pos, named, span)?;
        let inputs = self.staged_inputs(g, leaves, span)?;
        let device = self.st.device.clone();
        let procs = process_mesh();
        let mut per_rank: Vec<Vec<Tensor>> = Vec::with_capacity(n);
        for rank in 0..n {
            // Over MPI this process is one device: it makes only its own pieces.
            if procs.is_some_and(|p| p.rank() != rank) {
                per_rank.push(Vec::new());
                continue;
            }
            let mut mine = Vec::with_capacity(inputs.len());
            for (t, l) in inputs.iter().zip(
                plan.layouts
                    .iter()
                    .chain(std::iter::repeat(&Layout::default())),
            ) {
                let coords = plan.mesh.coords(rank);
                let mut piece = t.clone();
                for (axis, m) in l.map.iter().enumerate() {
                    if let Some(m) = *m {
                        let k = plan.mesh.shape()[m];
                        piece = dmesh::shard(&*device, &piece, axis, k, coords[m])
                            .map_err(|e| self.device_error(e, span))?;
                    }
                }
                mine.push(piece);
            }
            per_rank.push(mine);
        }
        if let Some(p) = procs {
            let rank = p.rank();
            let mine: Vec<Tensor> = per_rank
                .get_mut(rank)
                .map(std::mem::take)
                .unwrap_or_default();
            let outs = self.run_with_printer(g, span, None, |printer| {
                match plan.of_rank.get(rank).and_then(|&i| plan.graphs.get(i)) {
                    Some((graph, prepared)) => {
                        let mut fx = OnMesh {
                            print: Some(printer),
                            comm: p,
                            mesh: &plan.mesh,
                            device: &*device,
                        };
                        Plan::with(graph, prepared).run(&*device, &mine, &mut fx)
                    }
                    None => Err(RunError::Malformed {
                        message: format!("process {rank} has no graph"),
                        span: IrSpan::default(),
                    }),
                }
            })?;
            return self.staged_result(g, &outs, span);
        }
        let pools = self.device_pools(n, span)?;
        let mut comms = Comm::group(n).into_iter();
        let Some(comm0) = comms.next() else {
            return Err(errors::internal("a mesh without devices", span));
        };
        let plan_ref = &*plan;
        let dev = &*device;
        let mut others = per_rank.split_off(1);
        let mine = per_rank.pop().unwrap_or_default();
        let outs = std::thread::scope(|s| {
            let handles: Vec<_> = comms
                .zip(others.drain(..))
                .zip(pools.pools.iter().skip(1))
                .enumerate()
                .map(|(i, ((comm, inputs), pool))| {
                    s.spawn(move || {
                        pool.install(|| run_rank(plan_ref, i + 1, dev, &inputs, comm, None))
                    })
                })
                .collect();
            self.run_with_printer(g, span, None, |printer| {
                let r = match pools.pools.first() {
                    Some(pool) => {
                        pool.install(|| run_rank(plan_ref, 0, dev, &mine, comm0, Some(printer)))
                    }
                    None => run_rank(plan_ref, 0, dev, &mine, comm0, Some(printer)),
                };
                let rest: Vec<Result<Vec<Tensor>, RunError>> = handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(RunError::Malformed {
                                message: "a device's thread panicked".into(),
                                span: IrSpan::default(),
                            })
                        })
                    })
                    .collect();
                // Report the error of the device that failed first-hand, not another's
                // echo of it (device 0 waiting in a collective learns only that a
                // device stopped).
                match r {
                    Err(e) if is_echo(&e) => match rest
                        .into_iter()
                        .find_map(|x| x.err().filter(|e| !is_echo(e)))
                    {
                        Some(own) => Err(own),
                        None => Err(e),
                    },
                    other => match rest.into_iter().find_map(Result::err) {
                        Some(e) if other.is_ok() => Err(e),
                        _ => other,
                    },
                }
            })
        })?;
        self.staged_result(g, &outs, span)
    }

    /// The partitioned graphs of `g` for a mesh of `n` devices, made on the first call and
    /// kept with the staged graph.
    pub(crate) fn mesh_plan(
        &mut self,
        g: &StagedFn,
        spec: &Spec,
        n: usize,
        pos: &[(Value, Span)],
        named: &[(lang::ast::Name, Value, Span)],
        span: Span,
    ) -> R<Arc<MeshPlan>> {
        if let Some(p) = g.mesh_plan.get()
            && p.mesh.size() == n
        {
            return Ok(p.clone());
        }
        if let Some(b) = &spec.batch
            && let Some(&bad) = b.iter().find(|&&i| i >= pos.len() + named.len())
        {
            return Err(errors::bad_value(
                format!(
                    "`batch` names argument {bad}, but the call has {} arguments (positions count from 0)",
                    pos.len() + named.len()
                ),
                spec.span,
            ));
        }
        // The planner and the partitioner read one flat graph: the calls staging left are
        // spliced in, and the values the `shard` hints name are found again in it.
        let hinted: Vec<ir::graph::ValueId> = g.hints.iter().map(|h| h.0).collect();
        let (flat, hinted) = ir::graph::splice_calls(&g.raw, &hinted)
            .map_err(|e| errors::internal(&format!("inlining `{}`: {e}", g.raw.name()), span))?;
        let raw = &flat;
        let staged_hints: Vec<(ir::graph::ValueId, Vec<usize>, Span)> = g
            .hints
            .iter()
            .zip(hinted)
            .map(|((_, s, at), v)| (v, s.clone(), *at))
            .collect();
        let input_values: Vec<ir::graph::ValueId> = raw
            .inputs()
            .iter()
            .copied()
            .filter(|&v| !raw.ty(v).is_token())
            .collect();
        // The all-reduces merged into buckets are those it pays to merge on the hardware
        // profile the plans are priced on (`cpu` unless `ms plan --profile` says otherwise).
        let buckets = Profile::named(&self.st.planning.profile)
            .map(|p| BucketPolicy::for_profile(&p))
            .map_err(|e| errors::bad_value(e, spec.span))?;
        let partition = |mesh: &Mesh,
                         layouts: &[Layout],
                         hints: &[(ir::graph::ValueId, Layout)]| {
            ir::parallel::partition(raw, mesh, layouts, hints, &buckets)
                .map_err(|e| errors::internal(&format!("partitioning `{}`: {e}", raw.name()), span))
        };
        let replicated: Vec<Layout> = input_values
            .iter()
            .map(|&v| Layout::replicated(raw.ty(v).tensor().map_or(0, |t| t.shape.rank())))
            .collect();
        let saved = self
            .st
            .planning
            .plans
            .iter()
            .find(|(f, _, _)| f == raw.name())
            .map(|(_, p, file)| (p.clone(), file.clone()));
        let (mesh, layouts, hints, parts, note) = match (saved, spec.mode) {
            (Some((plan, file)), _) => {
                let (layouts, hints) = plan.apply(raw).map_err(|e| {
                    errors::bad_value(format!("the plan in `{file}` does not fit: {e}"), spec.span)
                })?;
                if plan.mesh.size() != n {
                    return Err(errors::bad_value(
                        format!(
                            "the plan in `{file}` is for a mesh of {} devices ({}), but the function runs on {n}",
                            plan.mesh.size(),
                            plan.mesh
                        ),
                        spec.span,
                    ));
                }
                let parts = partition(&plan.mesh, &layouts, &hints)?;
                let note = format!("from the plan file `{file}`");
                (plan.mesh, layouts, hints, parts, note)
            }
            (None, Mode::Data) => {
                let mesh = Mesh::line(n);
                let layouts = data_layouts(g, spec, pos, named);
                let parts = partition(&mesh, &layouts, &[])?;
                (
                    mesh,
                    layouts,
                    Vec::new(),
                    parts,
                    "data parallel".to_string(),
                )
            }
            (None, Mode::SemiAuto) => {
                let (mesh, hints) = semi_auto_mesh(n, &staged_hints)?;
                // A hint on an argument splits it as it enters.
                let mut layouts = replicated;
                let mut body = Vec::new();
                for (v, l) in hints {
                    match input_values.iter().position(|&i| i == v) {
                        Some(k) => layouts[k] = l,
                        None => body.push((v, l)),
                    }
                }
                let parts = partition(&mesh, &layouts, &body)?;
                let note = format!("semi-automatic, from {} `shard` hints", staged_hints.len());
                (mesh, layouts, body, parts, note)
            }
            (None, Mode::Auto) => {
                // The planner's search (`ir::parallel::planner`), on each shape of mesh the
                // devices allow unless `ms plan --mesh` fixed one.
                let settings = self.st.planning.clone();
                let prof = Profile::named(&settings.profile)
                    .map_err(|e| errors::bad_value(e, spec.span))?;
                let meshes: Vec<Mesh> = match &settings.mesh {
                    Some(shape) if shape.iter().product::<usize>() == n => vec![Mesh::new(shape)],
                    Some(shape) => {
                        return Err(errors::bad_value(
                            format!(
                                "the mesh {} has {} devices, but the function runs on {n}",
                                Mesh::new(shape),
                                shape.iter().product::<usize>()
                            ),
                            spec.span,
                        ));
                    }
                    // Over MPI every collective spans all the processes: a line only.
                    None if process_mesh().is_some() => vec![Mesh::line(n)],
                    None => std::iter::once(Mesh::line(n))
                        .chain(
                            (2..n)
                                .filter(|a| n.is_multiple_of(*a))
                                .map(|a| Mesh::new(&[a, n / a])),
                        )
                        .collect(),
                };
                let roles = data_roles(g, pos, named);
                let mut best: Option<(Mesh, ir::parallel::Chosen)> = None;
                let mut over = None;
                let mut priced = 0;
                for mesh in meshes {
                    match ir::parallel::search(raw, &mesh, &roles, &prof, settings.cap) {
                        Ok(c) => {
                            priced += c.priced;
                            if best
                                .as_ref()
                                .is_none_or(|(_, b)| c.estimate.total() < b.estimate.total())
                            {
                                best = Some((mesh, c));
                            }
                        }
                        Err(e @ ir::parallel::PlanError::OverCap { .. }) => over = Some(e),
                        Err(e) => return Err(errors::internal(&e.to_string(), span)),
                    }
                }
                let Some((mesh, chosen)) = best else {
                    let why = over.map_or_else(|| "no plan".to_string(), |e| e.to_string());
                    return Err(errors::bad_value(why, spec.span));
                };
                let parts = partition(&mesh, &chosen.layouts, &[])?;
                let note = format!(
                    "automatic: the cheapest of {priced} plans priced on `{}`{}{}",
                    prof.name,
                    if chosen.exact {
                        " (every plan of its mesh)"
                    } else {
                        " (coordinate descent)"
                    },
                    settings
                        .cap
                        .map_or(String::new(), |c| format!(", within {c} bytes per device"))
                );
                (mesh, chosen.layouts, Vec::new(), parts, note)
            }
        };
        let saved = SavedPlan::of(raw, &mesh, &layouts, &hints);
        let in_place = self.st.in_place;
        let mut graphs = Vec::with_capacity(parts.graphs.len());
        for local in &parts.graphs {
            let opt = self
                .st
                .passes
                .optimize(local, cfg!(debug_assertions))
                .map_err(|e| {
                    errors::internal(
                        &format!("optimizing `{}` for the mesh: {e}", raw.name()),
                        span,
                    )
                })?;
            let p = Prepared::new(&opt);
            let p = if in_place { p } else { p.without_in_place() };
            graphs.push((opt, p));
        }
        let input_types = raw
            .inputs()
            .iter()
            .filter_map(|&v| raw.ty(v).tensor().cloned())
            .collect();
        let plan = Arc::new(MeshPlan {
            mesh,
            note,
            graphs,
            of_rank: parts.of_rank.clone(),
            layouts,
            input_types,
            priced: parts,
            saved,
        });
        let _ = g.mesh_plan.set(plan.clone());
        Ok(plan)
    }
}

/// This process's device of a mesh of processes (`--devices mpi`), when there is one.
#[cfg(feature = "mpi")]
fn process_mesh() -> Option<&'static devices::mesh_mpi::MpiComm> {
    MPI.get()
}

#[cfg(not(feature = "mpi"))]
fn process_mesh() -> Option<&'static NoProcesses> {
    None
}

/// Stands for a mesh of processes in builds without MPI (never made).
#[cfg(not(feature = "mpi"))]
pub(crate) enum NoProcesses {}

#[cfg(not(feature = "mpi"))]
impl dmesh::Collectives for NoProcesses {
    fn rank(&self) -> usize {
        match *self {}
    }

    fn bytes_sent(&self) -> u64 {
        match *self {}
    }

    fn all_reduce(
        &self,
        _: &dyn devices::Device,
        _: &Tensor,
        _: dmesh::ReduceKind,
        _: &[usize],
    ) -> Result<Tensor, devices::DeviceError> {
        match *self {}
    }

    fn all_gather(
        &self,
        _: &dyn devices::Device,
        _: &Tensor,
        _: usize,
        _: &[usize],
    ) -> Result<Tensor, devices::DeviceError> {
        match *self {}
    }

    fn all_to_all(
        &self,
        _: &dyn devices::Device,
        _: &Tensor,
        _: usize,
        _: usize,
        _: &[usize],
    ) -> Result<Tensor, devices::DeviceError> {
        match *self {}
    }
}

/// The process mesh of `--devices mpi`, set once by the command line.
#[cfg(feature = "mpi")]
static MPI: std::sync::OnceLock<devices::mesh_mpi::MpiComm> = std::sync::OnceLock::new();

/// Starts MPI for `--devices mpi`: this process becomes one device of a line mesh of the
/// job's processes. Gives (this process's rank, the number of processes).
#[cfg(feature = "mpi")]
pub fn start_mpi() -> Result<(usize, usize), String> {
    use devices::mesh::Collectives as _;
    let comm = devices::mesh_mpi::init().map_err(|e| e.to_string())?;
    let shape = (comm.rank(), comm.size());
    let _ = MPI.set(comm);
    Ok(shape)
}

/// The most virtual devices a mesh may have (threads, and graphs, per call).
pub const MAX_DEVICES: usize = 256;
