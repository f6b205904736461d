//! The partitioner: a graph written for one device becomes the graph each device of a
//! mesh runs (SPMD), with the collectives that keep the pieces consistent.
//!
//! The copy walks the body in order. Each tensor has a [`Layout`]; the graph's inputs
//! have the layouts the caller gives (data parallelism splits the batch arguments). At
//! each primitive the sharding rule ([`super::rules::strategy`]) says which operand
//! layouts it needs and which result layout it gives; an operand in another layout is
//! *redistributed* first — partial parts all-reduced, splits the rule cannot keep
//! all-gathered, splits it wants taken locally (`shard`, which moves no data) — and the
//! primitive is emitted with its shape attributes made local. Control flow, assertions
//! and the graph's outputs see whole values: everything a region reads is gathered before
//! it, and the region runs replicated on every device. Values are therefore equal to the
//! single-device graph's up to the order of floating-point sums (the all-reduces add the
//! devices' parts in a fixed order, so runs are reproducible bit for bit).
//!
//! One graph is made per device (the sizes of uneven pieces differ); devices whose graphs
//! come out equal share one.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use thiserror::Error;

use super::bucket::BucketPolicy;
use super::rules::{Dims, strategy};
use super::{Collective, Layout, Mesh};
use crate::graph::{
    BuildError, Graph, GraphBuilder, NodeId, NodeKind, Rewrite, Type, ValueDef, ValueId, rewrite,
};
use crate::{Op, SliceDim, TensorType, infer};

/// Why a graph could not be partitioned.
#[derive(Debug, Error)]
pub enum PartitionError {
    /// A dim is symbolic: pieces need known sizes.
    #[error("the graph `{graph}` has a symbolic dim in {ty}: partitioning needs known sizes")]
    Symbolic {
        /// The graph's name.
        graph: String,
        /// The type with the symbolic dim.
        ty: TensorType,
    },
    /// An input layout does not fit its input.
    #[error("input {index} of type {ty} cannot have the layout {layout} on a {mesh} mesh")]
    Input {
        /// Which tensor input.
        index: usize,
        /// Its type.
        ty: TensorType,
        /// The layout asked for.
        layout: Layout,
        /// The mesh.
        mesh: Mesh,
    },
    /// The copy failed (a bug of a sharding rule: the local primitive did not type).
    #[error("partitioning failed: {0}")]
    Build(#[from] BuildError),
}

/// How a staged graph runs on a mesh.
#[derive(Debug)]
pub struct Partitioned {
    /// The distinct per-device graphs.
    pub graphs: Vec<Graph>,
    /// For each device (rank), the index of its graph in `graphs`.
    pub of_rank: Vec<usize>,
    /// What was decided at each primitive (as device 0 sees it), for `ms plan`.
    pub steps: Vec<Step>,
    /// The collectives that make the outputs whole, with the bytes each device sends.
    pub output_collectives: Vec<(Collective, TensorType, u64)>,
    /// The all-reduces merged into buckets (`super::bucket`), as positions in device 0's
    /// graph before merging.
    pub buckets: super::bucket::Buckets,
    /// The mesh.
    pub mesh: Mesh,
}

/// One primitive of the partitioned graph, as `ms plan` shows it.
#[derive(Clone, Debug)]
pub struct Step {
    /// The node in the original graph's text order (its keyword).
    pub name: String,
    /// Its result's global type.
    pub ty: TensorType,
    /// The layout of its result.
    pub layout: Layout,
    /// The collectives run on its operands before it, with the bytes each device sends.
    pub collectives: Vec<(Collective, TensorType, u64)>,
    /// What device 0's piece of it costs (`ir::cost` of the local primitive).
    pub cost: crate::Cost,
    /// The span of the original node.
    pub span: crate::graph::Span,
}

/// Partitions `g` over `mesh`. `inputs` gives the layout of each tensor input (tokens are
/// not counted); a missing entry is replicated. `hints` (MindSpore's `shard` strategies)
/// ask for values of the body in given layouts: each is redistributed to its hint right
/// where it is computed, and what reads it propagates from there. `buckets` says which
/// all-reduces are merged (`super::bucket`).
pub fn partition(
    g: &Graph,
    mesh: &Mesh,
    inputs: &[Layout],
    hints: &[(ValueId, Layout)],
    buckets: &BucketPolicy,
) -> Result<Partitioned, PartitionError> {
    partition_ranks(g, mesh, inputs, hints, buckets, mesh.size())
}

/// Device 0's graph alone (`graphs` has one entry and `of_rank` is `[0]`): what the
/// planner prices. Device 0 holds the largest piece of every uneven split, so its time
/// and memory are the mesh's.
pub fn partition_first(
    g: &Graph,
    mesh: &Mesh,
    inputs: &[Layout],
    hints: &[(ValueId, Layout)],
    buckets: &BucketPolicy,
) -> Result<Partitioned, PartitionError> {
    partition_ranks(g, mesh, inputs, hints, buckets, 1)
}

fn partition_ranks(
    g: &Graph,
    mesh: &Mesh,
    inputs: &[Layout],
    hints: &[(ValueId, Layout)],
    policy: &BucketPolicy,
    ranks: usize,
) -> Result<Partitioned, PartitionError> {
    let tensor_inputs: Vec<&TensorType> = g
        .inputs()
        .iter()
        .filter_map(|&v| g.ty(v).tensor())
        .collect();
    for (index, (ty, layout)) in tensor_inputs.iter().zip(inputs).enumerate() {
        let bad = layout.map.len() != ty.shape.rank()
            || !layout.partial.is_empty()
            || layout
                .map
                .iter()
                .flatten()
                .any(|&m| m >= mesh.shape().len())
            || (0..mesh.shape().len())
                .any(|m| layout.map.iter().filter(|&&x| x == Some(m)).count() > 1);
        if bad {
            return Err(PartitionError::Input {
                index,
                ty: (*ty).clone(),
                layout: layout.clone(),
                mesh: mesh.clone(),
            });
        }
    }
    for n in g.walk(g.body()) {
        for &r in &g.node(n).results {
            if let Type::Tensor(t) = g.ty(r)
                && t.shape.to_known().is_none()
            {
                return Err(PartitionError::Symbolic {
                    graph: g.name().to_string(),
                    ty: t.clone(),
                });
            }
        }
    }
    let mut graphs: Vec<Graph> = Vec::new();
    let mut of_rank = Vec::new();
    let mut steps = Vec::new();
    let mut output_collectives = Vec::new();
    let mut buckets = Vec::new();
    for rank in 0..ranks.min(mesh.size()) {
        let p = Part {
            g,
            mesh,
            rank,
            inputs,
            depth: Cell::new(0),
            info: RefCell::new(HashMap::new()),
            moved: RefCell::new(HashMap::new()),
            transposed: RefCell::new(HashMap::new()),
            steps: RefCell::new(Vec::new()),
            pending: RefCell::new(Vec::new()),
            hints: hints.iter().cloned().collect(),
            current: Cell::new(None),
        };
        let local = rewrite(g, &p)?;
        if rank == 0 {
            steps = p.steps.into_inner();
            output_collectives = p.pending.into_inner();
            buckets = super::bucket::choose(&local, policy);
        }
        let local = super::bucket::apply(&local, &buckets)?;
        match graphs.iter().position(|h| *h == local) {
            Some(i) => of_rank.push(i),
            None => {
                of_rank.push(graphs.len());
                graphs.push(local);
            }
        }
    }
    Ok(Partitioned {
        graphs,
        of_rank,
        steps,
        output_collectives,
        buckets,
        mesh: mesh.clone(),
    })
}

/// The copy for one device.
struct Part<'a> {
    g: &'a Graph,
    mesh: &'a Mesh,
    rank: usize,
    inputs: &'a [Layout],
    /// How deep in regions the copy is (regions are copied unchanged).
    depth: Cell<usize>,
    /// Per value of the copy: its layout and its global type. A value not here is whole.
    info: RefCell<HashMap<ValueId, (Layout, TensorType)>>,
    /// Redistributions made so far: a value in a layout, and the value that holds it.
    moved: RefCell<HashMap<(ValueId, Layout), ValueId>>,
    /// Values of the copy that a `transpose` made: its operand and its permutation.
    transposed: RefCell<HashMap<ValueId, (ValueId, Vec<usize>)>>,
    steps: RefCell<Vec<Step>>,
    /// Collectives emitted for the node being copied.
    pending: RefCell<Vec<(Collective, TensorType, u64)>>,
    /// Layouts asked for values of the original graph.
    hints: HashMap<ValueId, Layout>,
    /// The body node being copied.
    current: Cell<Option<NodeId>>,
}

fn dims(t: &TensorType) -> Dims {
    t.shape.to_known().unwrap_or_default()
}

fn build_err(b: &GraphBuilder, message: String) -> BuildError {
    BuildError::Collective {
        message,
        span: b.span(),
    }
}

impl Part<'_> {
    /// The layout and global type of a value of the copy.
    fn of(&self, b: &GraphBuilder, v: ValueId) -> (Layout, TensorType) {
        if let Some(x) = self.info.borrow().get(&v) {
            return x.clone();
        }
        let t = b
            .ty(v)
            .tensor()
            .cloned()
            .unwrap_or_else(|| TensorType::new(crate::DType::Bool, crate::Shape::scalar()));
        (Layout::replicated(t.shape.rank()), t)
    }

    fn emit(
        &self,
        b: &mut GraphBuilder,
        c: Collective,
        x: ValueId,
        layout: Layout,
        global: &TensorType,
    ) -> Result<ValueId, BuildError> {
        let local = layout.local(global, self.mesh, self.rank);
        let k = self.mesh.shape().get(c.mesh_axis()).copied().unwrap_or(1) as u64;
        let numel = |t: Option<&TensorType>| t.and_then(|t| t.shape.numel()).unwrap_or(0) as u64;
        let elem = global.dtype.size_of() as u64;
        // What each device sends with ring algorithms: an all-reduce sends its part twice
        // over (reduce-scatter, then all-gather), a gather (k-1)/k of its result.
        let moved_bytes = match c {
            Collective::AllReduce { .. } => 2 * numel(b.ty(x).tensor()) * elem * (k - 1) / k.max(1),
            Collective::AllToAll { .. } => numel(b.ty(x).tensor()) * elem * (k - 1) / k.max(1),
            Collective::AllGather { .. } => numel(Some(&local)) * elem * (k - 1) / k.max(1),
            Collective::Shard { .. } => 0,
        };
        self.pending
            .borrow_mut()
            .push((c, global.clone(), moved_bytes));
        let v = b.collective(c, x, local)?;
        self.info.borrow_mut().insert(v, (layout, global.clone()));
        Ok(v)
    }

    /// `v` in the layout `want` (which has no partial parts).
    fn redistribute(
        &self,
        b: &mut GraphBuilder,
        v: ValueId,
        want: &Layout,
    ) -> Result<ValueId, BuildError> {
        let (mut cur, global) = self.of(b, v);
        if cur == *want {
            return Ok(v);
        }
        if let Some(&w) = self.moved.borrow().get(&(v, want.clone())) {
            return Ok(w);
        }
        if let Some(w) = self.transpose_moved(b, v, want)? {
            return Ok(w);
        }
        let mut x = v;
        if !cur.partial.is_empty() {
            // Partial parts are combined once, whatever layouts the value is wanted in.
            let whole = cur.whole();
            let done = self.moved.borrow().get(&(v, whole.clone())).copied();
            match done {
                Some(w) => x = w,
                None => {
                    for (m, op) in std::mem::take(&mut cur.partial) {
                        x = self.emit(
                            b,
                            Collective::AllReduce { op, mesh_axis: m },
                            x,
                            cur.clone(),
                            &global,
                        )?;
                    }
                    self.moved.borrow_mut().insert((v, whole.clone()), x);
                }
            }
            cur = whole;
            if cur == *want {
                return Ok(x);
            }
        }
        // A split that moves to another axis over the same mesh axis is one all-to-all,
        // which sends 1/k of what a gather followed by a shard would.
        for i in 0..cur.map.len() {
            if let Some(m) = cur.map[i]
                && want.map.get(i) != Some(&Some(m))
                && let Some(j) = want.map.iter().position(|&w| w == Some(m))
                && cur.map[j].is_none()
            {
                cur.map[i] = None;
                cur.map[j] = Some(m);
                x = self.emit(
                    b,
                    Collective::AllToAll {
                        split_axis: j,
                        concat_axis: i,
                        mesh_axis: m,
                    },
                    x,
                    cur.clone(),
                    &global,
                )?;
            }
        }
        for i in 0..cur.map.len() {
            if let Some(m) = cur.map[i]
                && want.map.get(i) != Some(&Some(m))
            {
                cur.map[i] = None;
                x = self.emit(
                    b,
                    Collective::AllGather {
                        axis: i,
                        mesh_axis: m,
                    },
                    x,
                    cur.clone(),
                    &global,
                )?;
            }
        }
        for i in 0..cur.map.len() {
            if let Some(&Some(m)) = want.map.get(i)
                && cur.map[i] != Some(m)
            {
                if m >= self.mesh.shape().len() || cur.map.contains(&Some(m)) {
                    return Err(build_err(
                        b,
                        format!("layout {want} does not fit a {} mesh", self.mesh),
                    ));
                }
                cur.map[i] = Some(m);
                x = self.emit(
                    b,
                    Collective::Shard {
                        axis: i,
                        mesh_axis: m,
                    },
                    x,
                    cur.clone(),
                    &global,
                )?;
            }
        }
        self.moved.borrow_mut().insert((v, want.clone()), x);
        Ok(x)
    }

    /// `v`, a transpose of `u`, in the layout `want` as the transpose of `u` already moved
    /// to the matching layout, when an earlier redistribution made that: a local view
    /// instead of collectives. A weight split by columns is gathered for the forward
    /// product, and its transpose, which the backward product reads, is then the gathered
    /// weight transposed rather than a second gather. `None` when no such move exists.
    fn transpose_moved(
        &self,
        b: &mut GraphBuilder,
        v: ValueId,
        want: &Layout,
    ) -> Result<Option<ValueId>, BuildError> {
        let Some((u, perm)) = self.transposed.borrow().get(&v).cloned() else {
            return Ok(None);
        };
        if !want.partial.is_empty() || perm.len() != want.map.len() {
            return Ok(None);
        }
        // Axis i of `v` is axis perm[i] of `u`.
        let mut want_u = Layout::replicated(perm.len());
        for (i, &p) in perm.iter().enumerate() {
            want_u.map[p] = want.map[i];
        }
        let Some(&w) = self.moved.borrow().get(&(u, want_u)) else {
            return Ok(None);
        };
        let (_, global) = self.of(b, v);
        let x = b.op(&Op::Transpose { perm }, &[w])?;
        if b.ty(x).tensor() != Some(&want.local(&global, self.mesh, self.rank)) {
            return Err(build_err(
                b,
                format!(
                    "the transpose of a moved value is not {want} on device {}",
                    self.rank
                ),
            ));
        }
        self.info.borrow_mut().insert(x, (want.clone(), global));
        self.moved.borrow_mut().insert((v, want.clone()), x);
        Ok(Some(x))
    }

    /// `op` with its shape attributes made those of this device's piece.
    fn localize(&self, op: &Op, out: &TensorType, layout: &Layout, local_ins: &[TensorType]) -> Op {
        let local_out = layout.local(out, self.mesh, self.rank);
        match op {
            Op::Reshape { .. } => Op::Reshape {
                shape: local_out.shape,
            },
            Op::Broadcast { .. } => Op::Broadcast {
                shape: local_out.shape,
            },
            Op::Slice { dims } => Op::Slice {
                dims: dims
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        match (
                            layout.map.get(i),
                            local_ins
                                .first()
                                .and_then(|t| t.shape.dims().get(i))
                                .and_then(|d| d.known()),
                        ) {
                            (Some(Some(_)), Some(n)) => SliceDim::full(n),
                            _ => *d,
                        }
                    })
                    .collect(),
            },
            other => other.clone(),
        }
    }
}

impl Rewrite for Part<'_> {
    fn input(&self, b: &mut GraphBuilder, index: usize, t: &TensorType) -> ValueId {
        let ordinal = self.g.inputs()[..index]
            .iter()
            .filter(|&&v| !self.g.ty(v).is_token())
            .count();
        let layout = self
            .inputs
            .get(ordinal)
            .cloned()
            .unwrap_or_else(|| Layout::replicated(t.shape.rank()));
        let v = b.input(layout.local(t, self.mesh, self.rank));
        self.info.borrow_mut().insert(v, (layout, t.clone()));
        v
    }

    fn before(
        &self,
        b: &mut GraphBuilder,
        n: NodeId,
        get: &dyn Fn(ValueId) -> ValueId,
    ) -> Result<Vec<(ValueId, ValueId)>, BuildError> {
        if self.depth.get() > 0 {
            return Ok(Vec::new());
        }
        self.current.set(Some(n));
        if matches!(self.g.node(n).kind, NodeKind::Prim(_)) {
            return Ok(Vec::new());
        }
        let body = self.g.body();
        let mut out = Vec::new();
        for v in self.g.reads(n) {
            let top = match self.g.value(v).def {
                ValueDef::Arg { block, .. } => block == body,
                ValueDef::Result { node, .. } => self.g.node(node).block == body,
            };
            if !top || self.g.ty(v).is_token() || out.iter().any(|&(o, _)| o == v) {
                continue;
            }
            let new = get(v);
            let rank = b.ty(new).tensor().map_or(0, |t| t.shape.rank());
            let w = self.redistribute(b, new, &Layout::replicated(rank))?;
            out.push((v, w));
        }
        self.pending.borrow_mut().clear();
        Ok(out)
    }

    fn prim(
        &self,
        b: &mut GraphBuilder,
        op: &Op,
        args: &[ValueId],
    ) -> Result<Option<ValueId>, BuildError> {
        if self.depth.get() > 0 {
            return Ok(None);
        }
        let (layouts, globals): (Vec<Layout>, Vec<TensorType>) =
            args.iter().map(|&a| self.of(b, a)).unzip();
        let out = infer(op, &globals).map_err(|e| BuildError::Infer {
            error: Box::new(e),
            span: b.span(),
        })?;
        let ins: Vec<Dims> = globals.iter().map(dims).collect();
        let s = strategy(op, &ins, &dims(&out), &layouts, self.mesh.shape());
        let mut local = Vec::with_capacity(args.len());
        for (&a, want) in args.iter().zip(&s.operands) {
            local.push(self.redistribute(b, a, want)?);
        }
        let local_types: Vec<TensorType> = local
            .iter()
            .filter_map(|&v| b.ty(v).tensor().cloned())
            .collect();
        let lop = self.localize(op, &out, &s.result, &local_types);
        let mut v = b.op(&lop, &local)?;
        let expect = s.result.local(&out, self.mesh, self.rank);
        if b.ty(v).tensor() != Some(&expect) {
            return Err(build_err(
                b,
                format!(
                    "the sharding rule of {} gives {} on device {}, but its piece should be {expect}",
                    op.name(),
                    b.ty(v),
                    self.rank
                ),
            ));
        }
        self.steps.borrow_mut().push(Step {
            name: op.name().to_string(),
            ty: out.clone(),
            layout: s.result.clone(),
            collectives: std::mem::take(&mut *self.pending.borrow_mut()),
            cost: crate::cost(&lop, &local_types, &expect),
            span: b.span(),
        });
        // The operand as the copy first had it: the key its other redistributions take.
        if let (Op::Transpose { perm }, [u]) = (op, args) {
            self.transposed.borrow_mut().insert(v, (*u, perm.clone()));
        }
        self.info.borrow_mut().insert(v, (s.result, out));
        let hint = self.current.get().and_then(|n| {
            let node = self.g.node(n);
            node.results
                .iter()
                .find(|&&r| !self.g.ty(r).is_token())
                .and_then(|r| self.hints.get(r))
                .cloned()
        });
        if let Some(h) = hint {
            if h.map.len() != b.ty(v).tensor().map_or(0, |t| t.shape.rank()) {
                return Err(build_err(
                    b,
                    format!("the layout {h} does not fit {}", b.ty(v)),
                ));
            }
            v = self.redistribute(b, v, &h)?;
            if let Some(last) = self.steps.borrow_mut().last_mut() {
                last.layout = h;
                last.collectives
                    .extend(std::mem::take(&mut *self.pending.borrow_mut()));
            }
        }
        Ok(Some(v))
    }

    fn outputs(
        &self,
        b: &mut GraphBuilder,
        outs: Vec<ValueId>,
    ) -> Result<Vec<ValueId>, BuildError> {
        self.pending.borrow_mut().clear();
        outs.into_iter()
            .map(|v| {
                let rank = b.ty(v).tensor().map_or(0, |t| t.shape.rank());
                self.redistribute(b, v, &Layout::replicated(rank))
            })
            .collect()
    }

    fn enter(&self, _closed: bool) {
        self.depth.set(self.depth.get() + 1);
    }

    fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }
}
