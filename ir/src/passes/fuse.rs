//! Elementwise and reduction fusion: chains and siblings of elementwise primitives of one
//! shape become one `fused` node, whose closed region a device runs in one pass over
//! memory, and a reduction of a value the group computes may end the group.
//!
//! **Groups.** The nodes of each block are visited in order. An elementwise node (unary,
//! binary, compare, select, cast, `stop_gradient`) joins a group when its result has the
//! group's shape and the group is still *open*: it joins the groups that produce its
//! operands (merging them when there are several: producer/consumer fusion), or else an
//! open group of its shape that reads one of its operands (sibling fusion: the two read
//! that operand in one pass). A group closes as soon as a node outside it reads one of its
//! values (a use inside a region counts as a use by the region's node).
//!
//! **Reductions.** A `sum`, `prod`, `max` or `min` over the trailing axes of a float value
//! that an open group computes joins that group (with or without `keepdims`), provided the
//! group's other reductions fold as many axes: a device then folds each row as soon as the
//! row is computed, instead of writing the value out and reading it back. A reduction
//! *ends* the group for the values that depend on it: its result is an output of the group
//! only, and a node that reads it never joins the group (it reads it from outside, which
//! closes the group), because it would need whole rows folded before it could start. A
//! node that does not read it may still join. Reductions over other axes, or of a value
//! computed outside the group (a graph input, say), stay plain nodes, as do arg-reductions.
//!
//! **Recomputing instead of writing.** A value that a group writes out only for other
//! groups to read is recomputed by each of them when that costs less than the pass over
//! memory it saves (see [`recompute`]): softmax's `exp(x - max)` is summed by one group,
//! and the gradient's group computes it again from `x` and the per-row maximum instead of
//! reading 16 MB back. The reading group copies the value's cone of members into its own
//! region; the first group no longer yields the value, and members that then feed nothing
//! are left out. The copies compute exactly what the originals computed.
//!
//! **Why that keeps the graph valid.** The fused node takes the place of the group's last
//! member. Every operand a member reads from outside is defined before that member, so
//! before the fused node; and since a group takes no member after an outside node has read
//! it, every outside use of a member's value comes after the fused node.
//!
//! **The region.** It takes the values the members read from outside (in order of first
//! use) and yields the member values that something outside reads. A scalar constant
//! (`full` of shape `[]`) a member reads is copied into the region rather than passed, so
//! the region keeps its constants (a generated kernel inlines them); the outer `full` is
//! left for dead-code elimination. A group of one node stays a plain node.
//!
//! Fusion changes no value: a fused node computes exactly what its members computed. It
//! runs after the other passes, which see through plain nodes only. [`unfuse`] undoes it
//! (differentiation on the IR works on unfused graphs).

use std::collections::{HashMap, HashSet};

use crate::graph::{
    BlockId, BuildError, Graph, GraphBuilder, NodeId, NodeKind, Rewrite, Type, ValueDef, ValueId,
    rewrite,
};
use crate::prim::{Category, UnaryKind};
use crate::{Op, Shape};

/// `g` with its elementwise groups fused.
pub(super) fn run(g: &Graph) -> Result<Graph, BuildError> {
    let mut plan = Plan {
        g,
        at: HashMap::new(),
        skip: HashSet::new(),
    };
    for b in blocks(g) {
        plan.block(b);
    }
    rewrite(g, &plan)
}

/// `g` with every fused node and every call replaced by the nodes of its region: the one
/// flat graph that IR autodiff differentiates.
pub fn flatten(g: &Graph) -> Result<Graph, BuildError> {
    rewrite(g, &Unfuse { g })
}

/// Whether `g` holds a fused node or a call anywhere (and so needs [`flatten`] before
/// differentiation).
pub fn is_flat(g: &Graph) -> bool {
    !g.walk(g.body()).into_iter().any(|n| {
        matches!(
            g.node(n).kind,
            NodeKind::Fused { .. } | NodeKind::Call { .. }
        )
    })
}

/// The body and every region, except the regions of fused nodes.
fn blocks(g: &Graph) -> Vec<BlockId> {
    let mut out = vec![g.body()];
    for n in g.walk(g.body()) {
        if !matches!(g.node(n).kind, NodeKind::Fused { .. }) {
            out.extend(g.node(n).kind.regions());
        }
    }
    out
}

/// The shape of an elementwise node's result, when the node may join a group.
fn fusible(g: &Graph, n: NodeId) -> Option<&Shape> {
    let node = g.node(n);
    let NodeKind::Prim(op) = &node.kind else {
        return None;
    };
    if op.prim().info().category != Category::Elementwise {
        return None;
    }
    match node.results.as_slice() {
        [r] => match g.ty(*r) {
            Type::Tensor(t) => Some(&t.shape),
            Type::Token => None,
        },
        _ => None,
    }
}

/// The operand of a reduction that may end a group, and how many trailing axes it folds: a
/// `reduce` over the last axes of a float operand.
fn reducible(g: &Graph, n: NodeId) -> Option<(ValueId, usize)> {
    let node = g.node(n);
    let NodeKind::Prim(Op::Reduce { axes, .. }) = &node.kind else {
        return None;
    };
    let &[x] = node.operands.as_slice() else {
        return None;
    };
    let Type::Tensor(t) = g.ty(x) else {
        return None;
    };
    let rank = t.rank();
    let trailing =
        !axes.is_empty() && axes.len() <= rank && axes.iter().copied().eq(rank - axes.len()..rank);
    (trailing && t.dtype.is_float()).then_some((x, axes.len()))
}

/// A scalar constant: the op of the `full` node of shape `[]` that defines `v`.
fn scalar_constant(g: &Graph, v: ValueId) -> Option<&Op> {
    let ValueDef::Result { node, .. } = g.value(v).def else {
        return None;
    };
    match &g.node(node).kind {
        NodeKind::Prim(op @ Op::Full { shape, .. }) if shape.rank() == 0 => Some(op),
        _ => None,
    }
}

/// The most nodes a recomputed value's cone may hold (see [`recompute`]).
const CONE_NODES: usize = 6;

/// The members of the group `set` that value `v` depends on within the group (its
/// *cone*, every one elementwise) and the values the cone reads from outside the group
/// (scalar constants excepted), or `None` when recomputing `v` would cost too much: more
/// than [`CONE_NODES`] nodes, or more than one transcendental function (`exp`, `tanh`,
/// ...), which costs as much on a CPU as writing its value and reading it back.
fn cone(g: &Graph, v: ValueId, set: &HashSet<NodeId>) -> Option<(Vec<NodeId>, Vec<ValueId>)> {
    let (mut nodes, mut outside) = (Vec::new(), Vec::new());
    let mut seen = HashSet::new();
    let mut stack = vec![v];
    let mut transcendental = 0;
    while let Some(x) = stack.pop() {
        if !seen.insert(x) {
            continue;
        }
        match g.value(x).def {
            ValueDef::Result { node, .. } if set.contains(&node) => {
                fusible(g, node)?;
                if let NodeKind::Prim(Op::Unary { op }) = &g.node(node).kind
                    && op.kind() == UnaryKind::Float
                {
                    transcendental += 1;
                }
                nodes.push(node);
                stack.extend(g.node(node).operands.iter().copied());
            }
            _ if scalar_constant(g, x).is_some() => {}
            _ => outside.push(x),
        }
    }
    (nodes.len() <= CONE_NODES && transcendental <= 1).then_some((nodes, outside))
}

/// Which values of the finished groups `live` of block `b` the groups that read them
/// compute again instead: per reading group, the members of other groups it copies into
/// its region; and the values no longer written out (see the module doc).
///
/// A value qualifies when every node outside its group that reads it is a member of
/// another group, and its cone reads at most one value of its own shape from outside
/// (every other outside value is smaller: a broadcast row or column, a scalar). A reader
/// then reads that one operand instead of the value (the same traffic) and the group
/// that computed it no longer writes it, so a whole pass of writing and reading back is
/// saved. A value that a recomputed cone reads from outside stays written (no chains), and
/// a cone never reads a value that is itself recomputed.
fn recompute(
    g: &Graph,
    b: BlockId,
    groups: &[Group],
    shape_of: &[Shape],
    live: &[usize],
    group_of: &HashMap<NodeId, usize>,
    read_by: &HashMap<ValueId, Vec<NodeId>>,
) -> (HashMap<usize, Vec<NodeId>>, HashSet<ValueId>) {
    let yields = &g.block(b).yields;
    let mut extra: HashMap<usize, Vec<NodeId>> = HashMap::new();
    let mut unread: HashSet<ValueId> = HashSet::new();
    // Values that an accepted cone reads from outside: they must stay written.
    let mut needed: HashSet<ValueId> = HashSet::new();
    for &i in live {
        let set: HashSet<NodeId> = groups[i].members.iter().copied().collect();
        for &m in &groups[i].members {
            let Some(shape) = fusible(g, m) else {
                continue;
            };
            let v = g.node(m).results[0];
            if yields.contains(&v) || needed.contains(&v) {
                continue;
            }
            let outside: Vec<NodeId> = read_by
                .get(&v)
                .into_iter()
                .flatten()
                .copied()
                .filter(|n| !set.contains(n))
                .collect();
            let targets: Option<Vec<usize>> = outside
                .iter()
                .map(|n| {
                    group_of
                        .get(n)
                        .copied()
                        .filter(|&j| j != i && shape_of[j] == *shape)
                })
                .collect();
            let Some(targets) = targets.filter(|t| !t.is_empty()) else {
                continue;
            };
            let Some((nodes, reads)) = cone(g, v, &set) else {
                continue;
            };
            let full = reads
                .iter()
                .filter(|&&x| matches!(g.ty(x), Type::Tensor(t) if t.shape == *shape))
                .count();
            if full > 1 || reads.iter().any(|x| unread.contains(x)) {
                continue;
            }
            for j in targets {
                extra.entry(j).or_default().extend(nodes.iter().copied());
            }
            needed.extend(reads);
            unread.insert(v);
        }
    }
    (extra, unread)
}

/// One group being formed.
#[derive(Default)]
struct Group {
    /// Members in block order.
    members: Vec<NodeId>,
    /// Whether it may still take members.
    open: bool,
    /// Merged into another group (its members moved there).
    gone: bool,
    /// How many trailing axes its reductions fold (0 while it has none).
    reduced_axes: usize,
}

/// A finished group of two or more members, as the copy emits it.
struct Fusion {
    members: Vec<NodeId>,
    /// Values read from outside, in order of first use (scalar constants excepted).
    inputs: Vec<ValueId>,
    /// Member values read outside the group.
    outputs: Vec<ValueId>,
}

/// What to fuse, found before the copy.
struct Plan<'g> {
    /// The graph being copied.
    g: &'g Graph,
    /// Last member → its group.
    at: HashMap<NodeId, Fusion>,
    /// Members other than the last: left out where they stand.
    skip: HashSet<NodeId>,
}

impl Plan<'_> {
    /// Forms the groups of block `b`.
    fn block(&mut self, b: BlockId) {
        let g = self.g;
        let mut groups: Vec<Group> = Vec::new();
        let mut shape_of: Vec<Shape> = Vec::new();
        // Which group defines a value (elementwise members).
        let mut owner: HashMap<ValueId, usize> = HashMap::new();
        // Which group a reduction's result belongs to (no member may read it).
        let mut reduced: HashMap<ValueId, usize> = HashMap::new();
        // Which groups read a value from outside (for sibling fusion).
        let mut readers: HashMap<ValueId, Vec<usize>> = HashMap::new();
        let find = |groups: &Vec<Group>, mut i: usize, merged: &HashMap<usize, usize>| {
            while groups[i].gone {
                i = merged[&i];
            }
            i
        };
        let mut merged: HashMap<usize, usize> = HashMap::new();
        // The nodes of the block that read each value (a region's reads count for its node).
        let mut read_by: HashMap<ValueId, Vec<NodeId>> = HashMap::new();
        for &n in &g.block(b).nodes {
            let node = g.node(n);
            let mut joined = None;
            // The groups whose reductions this node reads: it may not join them.
            let barred: Vec<usize> = node
                .operands
                .iter()
                .filter_map(|v| reduced.get(v))
                .map(|&i| find(&groups, i, &merged))
                .collect();
            if let Some(shape) = fusible(g, n) {
                let mut producers: Vec<usize> = node
                    .operands
                    .iter()
                    .filter_map(|v| owner.get(v))
                    .map(|&i| find(&groups, i, &merged))
                    .filter(|&i| groups[i].open && shape_of[i] == *shape && !barred.contains(&i))
                    .collect();
                producers.sort_unstable();
                producers.dedup();
                let target = match producers.first() {
                    Some(&first) => Some(first),
                    None => node
                        .operands
                        .iter()
                        .filter_map(|v| readers.get(v))
                        .flatten()
                        .map(|&i| find(&groups, i, &merged))
                        .find(|&i| groups[i].open && shape_of[i] == *shape && !barred.contains(&i)),
                };
                let i = match target {
                    Some(i) => i,
                    None => {
                        groups.push(Group {
                            open: true,
                            ..Group::default()
                        });
                        shape_of.push(shape.clone());
                        groups.len() - 1
                    }
                };
                for &other in producers.iter().filter(|&&j| j != i) {
                    // The reductions of one group fold rows of one length: a group whose
                    // reductions fold other axes is not merged in (this node then reads
                    // its value from outside, which closes it).
                    let (mine, theirs) = (groups[i].reduced_axes, groups[other].reduced_axes);
                    if mine != 0 && theirs != 0 && mine != theirs {
                        continue;
                    }
                    let moved = std::mem::take(&mut groups[other].members);
                    groups[other].gone = true;
                    merged.insert(other, i);
                    groups[i].members.extend(moved);
                    groups[i].reduced_axes = mine.max(theirs);
                }
                groups[i].members.push(n);
                joined = Some(i);
            } else if let Some((x, axes)) = reducible(g, n)
                && let Some(&i) = owner.get(&x)
                && let i = find(&groups, i, &merged)
                && groups[i].open
                && (groups[i].reduced_axes == 0 || groups[i].reduced_axes == axes)
            {
                groups[i].members.push(n);
                groups[i].reduced_axes = axes;
                joined = Some(i);
                for &r in &node.results {
                    reduced.insert(r, i);
                }
            }
            // Every read of a group's value by a node outside it closes that group.
            let reads = g.reads(n);
            for v in &reads {
                if let Some(&i) = owner.get(v).or_else(|| reduced.get(v)) {
                    let i = find(&groups, i, &merged);
                    if Some(i) != joined {
                        groups[i].open = false;
                    }
                }
            }
            for &v in &reads {
                read_by.entry(v).or_default().push(n);
            }
            if let Some(i) = joined
                && fusible(g, n).is_some()
            {
                for &v in &node.operands {
                    if owner
                        .get(&v)
                        .is_none_or(|&o| find(&groups, o, &merged) != i)
                    {
                        readers.entry(v).or_default().push(i);
                    }
                }
                for &r in &node.results {
                    owner.insert(r, i);
                }
            }
        }
        let position: HashMap<NodeId, usize> = g
            .block(b)
            .nodes
            .iter()
            .enumerate()
            .map(|(k, &n)| (n, k))
            .collect();
        let live: Vec<usize> = (0..groups.len())
            .filter(|&i| !groups[i].gone && groups[i].members.len() >= 2)
            .collect();
        let mut group_of: HashMap<NodeId, usize> = HashMap::new();
        for &i in &live {
            for &m in &groups[i].members {
                group_of.insert(m, i);
            }
        }
        let (recomputed, unread) = recompute(g, b, &groups, &shape_of, &live, &group_of, &read_by);
        for &i in &live {
            let mut own = groups[i].members.clone();
            own.sort_by_key(|n| position[n]);
            let mut members = own.clone();
            if let Some(extra) = recomputed.get(&i) {
                members.extend(extra.iter().filter(|n| !own.contains(n)));
                members.sort_by_key(|n| position[n]);
                members.dedup();
            }
            self.add(b, own, members, &read_by, &unread);
        }
    }

    /// Records the fusion of a group of block `b`: `own` its members (two or more, in
    /// block order), `members` those and the members of other groups it recomputes, in
    /// block order. A value of the group that every outside reader recomputes (`unread`)
    /// is not an output, and a member that then feeds no output is left out.
    fn add(
        &mut self,
        b: BlockId,
        own: Vec<NodeId>,
        members: Vec<NodeId>,
        read_by: &HashMap<ValueId, Vec<NodeId>>,
        unread: &HashSet<ValueId>,
    ) {
        let g = self.g;
        let set: HashSet<NodeId> = members.iter().copied().collect();
        // Member values read by a node of the block outside the group (or its regions), or
        // by the block's yield.
        let yields = &g.block(b).yields;
        let outputs: Vec<ValueId> = own
            .iter()
            .flat_map(|&m| g.node(m).results.iter().copied())
            .filter(|v| {
                yields.contains(v)
                    || (!unread.contains(v)
                        && read_by
                            .get(v)
                            .is_some_and(|ns| ns.iter().any(|n| !set.contains(n))))
            })
            .collect();
        // The members the outputs need, found backwards from them.
        let mut needed: HashSet<ValueId> = outputs.iter().copied().collect();
        let mut kept = Vec::with_capacity(members.len());
        for &m in members.iter().rev() {
            if g.node(m).results.iter().any(|r| needed.contains(r)) {
                needed.extend(g.node(m).operands.iter().copied());
                kept.push(m);
            }
        }
        kept.reverse();
        let Some(&last) = own.last() else {
            return;
        };
        // Own members that feed no output any more are dead: their readers recompute them.
        let own_kept: Vec<NodeId> = own.iter().copied().filter(|m| kept.contains(m)).collect();
        self.skip
            .extend(own.iter().copied().filter(|m| !own_kept.contains(m)));
        if kept.len() < 2 {
            // What is left is one node (or none): it stays a plain node.
            return;
        }
        // The fused node stands where the group's last member stood, needed or not: every
        // value it reads is defined before that, and every outside read comes after it.
        self.skip
            .extend(own_kept.iter().copied().filter(|&m| m != last));
        self.skip.remove(&last);
        let defined: HashSet<ValueId> = kept
            .iter()
            .flat_map(|&m| g.node(m).results.iter().copied())
            .collect();
        let mut inputs = Vec::new();
        for &m in &kept {
            for &v in &g.node(m).operands {
                if !defined.contains(&v) && scalar_constant(g, v).is_none() && !inputs.contains(&v)
                {
                    inputs.push(v);
                }
            }
        }
        self.at.insert(
            last,
            Fusion {
                members: kept,
                inputs,
                outputs,
            },
        );
    }
}

impl Rewrite for Plan<'_> {
    fn node(
        &self,
        b: &mut GraphBuilder,
        n: NodeId,
        get: &dyn Fn(ValueId) -> ValueId,
    ) -> Result<Option<Vec<(ValueId, ValueId)>>, BuildError> {
        if self.skip.contains(&n) {
            return Ok(Some(Vec::new()));
        }
        let Some(f) = self.at.get(&n) else {
            return Ok(None);
        };
        let g = self.g;
        let outer: Vec<ValueId> = f.inputs.iter().map(|&v| get(v)).collect();
        let span = b.span();
        let outs = b.fused(&outer, |b, args| {
            let mut local: HashMap<ValueId, ValueId> =
                f.inputs.iter().copied().zip(args.iter().copied()).collect();
            for &m in &f.members {
                let node = g.node(m);
                let NodeKind::Prim(op) = &node.kind else {
                    return Err(BuildError::Unfinished);
                };
                b.set_span(node.span);
                let mut operands = Vec::with_capacity(node.operands.len());
                for &v in &node.operands {
                    let value = match local.get(&v) {
                        Some(&x) => x,
                        None => {
                            let c = scalar_constant(g, v).ok_or(BuildError::Unfinished)?;
                            let x = b.op(c, &[])?;
                            local.insert(v, x);
                            x
                        }
                    };
                    operands.push(value);
                }
                let r = b.op(op, &operands)?;
                local.insert(node.results[0], r);
            }
            b.set_span(span);
            f.outputs
                .iter()
                .map(|v| local.get(v).copied().ok_or(BuildError::Unfinished))
                .collect()
        })?;
        Ok(Some(f.outputs.iter().copied().zip(outs).collect()))
    }
}

/// The copy that puts every fused node's region back in its place.
struct Unfuse<'g> {
    g: &'g Graph,
}

impl Rewrite for Unfuse<'_> {
    fn splice_calls(&self) -> bool {
        true
    }

    fn node(
        &self,
        b: &mut GraphBuilder,
        n: NodeId,
        get: &dyn Fn(ValueId) -> ValueId,
    ) -> Result<Option<Vec<(ValueId, ValueId)>>, BuildError> {
        let g = self.g;
        let node = g.node(n);
        let NodeKind::Fused { body } = node.kind else {
            return Ok(None);
        };
        let region = g.block(body);
        let mut local: HashMap<ValueId, ValueId> = region
            .args
            .iter()
            .zip(&node.operands)
            .map(|(&a, &v)| (a, get(v)))
            .collect();
        for &m in &region.nodes {
            let inner = g.node(m);
            let NodeKind::Prim(op) = &inner.kind else {
                return Err(BuildError::Unfinished);
            };
            b.set_span(inner.span);
            let args = inner
                .operands
                .iter()
                .map(|v| local.get(v).copied().ok_or(BuildError::Unfinished))
                .collect::<Result<Vec<_>, _>>()?;
            let r = b.op(op, &args)?;
            if let Some(&res) = inner.results.last() {
                local.insert(res, r);
            }
        }
        b.set_span(node.span);
        node.results
            .iter()
            .zip(&region.yields)
            .map(|(&r, y)| local.get(y).map(|&v| (r, v)).ok_or(BuildError::Unfinished))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}
