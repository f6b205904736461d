//! Memory planning: when each value's buffer can be freed, and which results can be
//! written into the buffer of an operand that dies where they are made.
//!
//! **An analysis, not a rewrite.** Unlike the other files of this module, memory planning
//! does not give a new graph: it gives a [`MemoryPlan`], data about one exact graph that the
//! executor (`devices::schedule::Prepared`) reads. Recording it in the graph instead (an
//! attribute on nodes) would change the IR's meaning for every other consumer — the
//! printer, the parser, structural equality, `generalize`, autodiff — and every pass would
//! have to keep the annotations right or drop them, though none of them changes what a
//! value *is*. Kept apart, the plan cannot go stale: it is computed from the graph that
//! runs, after every pass, and the graph keeps meaning exactly what it meant.
//!
//! **Liveness.** For every block, each value that the block defines (its arguments and its
//! nodes' results) dies at its last use in that block: a use inside a region counts as a use
//! by the node that owns the region (a value read inside a loop lives until the loop has
//! finished), and a value the block yields lives to the end of the block. A value never used
//! dies where it is defined. [`MemoryPlan::releases`] lists, per position, the values to
//! drop there.
//!
//! **Donors.** An elementwise node (unary, binary, comparison, `select`, or a `fused` group)
//! may write a result into the buffer of an operand, and a `scatter_add` into the buffer of
//! its base (operand 0: the updates are added into a copy of it, which may as well be the
//! base itself; `grad` of `take`/`gather` scatters into fresh zeros), when that operand
//! - dies at this node (its last use is here, and the block does not yield it),
//! - is defined in the same block (a value from an enclosing block is still held there),
//!   and is not an input of the graph (the caller holds its inputs throughout the call),
//! - appears once among the node's operands (`x * x` reads its buffer twice), and
//! - has exactly the result's type: the same dtype and the same shape, dim by dim, with no
//!   unknown (`?`) dim, since two unknown dims need not be equal.
//!
//! Each result takes at most one donor and each operand gives its buffer at most once; the
//! first operand that qualifies is chosen. A [`Donation`] is a permission, not an order:
//! whether the buffer can really be written is only known when the graph runs (nobody else
//! may hold it — a graph input is held by its caller, a view shares its buffer — and it must
//! be laid out contiguously), and the device checks that itself; the value computed is the
//! same either way. `cast` is not listed: a cast to the same dtype already gives its operand
//! unchanged, and any other cast changes the dtype.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use crate::Op;
use crate::graph::{BlockId, Graph, NodeId, NodeKind, Type, ValueDef, ValueId};

/// A result written into an operand's buffer: `operand` and `result` are positions in the
/// node's operand and result lists (for a `fused` node, the region's arguments and yields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Donation {
    /// The operand whose buffer may be reused.
    pub operand: usize,
    /// The result that may be written into it.
    pub result: usize,
}

/// The memory plan of one graph (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Per block (by index): `releases[b][p]` are the values of block `b` whose last use is
    /// at position `p`: 0 right after the arguments are bound (arguments never used),
    /// `k + 1` after node `k`, `len + 1` after the yield.
    releases: Vec<Vec<Vec<ValueId>>>,
    /// The donations of every node that has some.
    donations: HashMap<NodeId, Vec<Donation>>,
}

impl MemoryPlan {
    /// Plans every block of `g`, the regions of fused nodes included (a device that declines
    /// a fused group has its region run node by node).
    pub fn new(g: &Graph) -> MemoryPlan {
        let mut plan = MemoryPlan {
            releases: vec![Vec::new(); g.block_count()],
            donations: HashMap::new(),
        };
        plan.block(g, g.body());
        for n in g.walk(g.body()) {
            for r in g.node(n).kind.regions() {
                plan.block(g, r);
            }
        }
        plan
    }

    /// The number of blocks the plan covers (the graph's, when it is that graph's plan).
    pub fn block_count(&self) -> usize {
        self.releases.len()
    }

    /// The release lists of block `b`: entry `p` holds the values that die at position `p`
    /// (0: after the arguments are bound; `k + 1`: after node `k`; `len + 1`: after the
    /// yield). Empty for a block the plan does not cover.
    pub fn releases(&self, b: BlockId) -> &[Vec<ValueId>] {
        self.releases.get(b.index()).map_or(&[], Vec::as_slice)
    }

    /// The donations of node `n` (none for most nodes).
    pub fn donations(&self, n: NodeId) -> &[Donation] {
        self.donations.get(&n).map_or(&[], Vec::as_slice)
    }

    /// Plans block `b`.
    fn block(&mut self, g: &Graph, b: BlockId) {
        let block = g.block(b);
        let len = block.nodes.len();
        // Position of the last use of every value defined here, starting at its definition
        // so that a value never used is released at once.
        let mut last: HashMap<ValueId, usize> = HashMap::new();
        for &a in &block.args {
            last.insert(a, 0);
        }
        for (k, &n) in block.nodes.iter().enumerate() {
            let node = g.node(n);
            for &r in &node.results {
                last.insert(r, k + 1);
            }
            for v in g.reads(n) {
                if def_block(g, v) == b {
                    last.insert(v, k + 1);
                }
            }
        }
        for &v in &block.yields {
            if def_block(g, v) == b {
                last.insert(v, len + 1);
            }
        }
        for (k, &n) in block.nodes.iter().enumerate() {
            let donations = donations(g, n, |v| {
                def_block(g, v) == b
                    && last.get(&v) == Some(&(k + 1))
                    && !(b == g.body() && block.args.contains(&v))
            });
            if !donations.is_empty() {
                self.donations.insert(n, donations);
            }
        }
        let mut releases = vec![Vec::new(); len + 2];
        for (v, p) in last {
            releases[p].push(v);
        }
        // The map's order is arbitrary; the lists are sorted so that the plan (and its
        // text) is the same on every run.
        for list in &mut releases {
            list.sort_by_key(|v| v.index());
        }
        self.releases[b.index()] = releases;
    }
}

/// The block that defines `v`.
fn def_block(g: &Graph, v: ValueId) -> BlockId {
    match g.value(v).def {
        ValueDef::Arg { block, .. } => block,
        ValueDef::Result { node, .. } => g.node(node).block,
    }
}

/// The donations of node `n`, where `dies_here(v)` says that operand `v` dies at `n`.
fn donations(g: &Graph, n: NodeId, dies_here: impl Fn(ValueId) -> bool) -> Vec<Donation> {
    let node = g.node(n);
    // Which operands may take a result: any operand of an elementwise node (each element
    // is read before it is written), only the base of a `scatter_add` (the updates are
    // added into a copy of it, which may as well be the base itself).
    let candidates = match &node.kind {
        NodeKind::Prim(
            Op::Unary { .. } | Op::Binary { .. } | Op::Compare { .. } | Op::Select {},
        )
        | NodeKind::Fused { .. } => node.operands.len(),
        NodeKind::Prim(Op::ScatterAdd { .. }) => 1,
        _ => return Vec::new(),
    };
    // A fused group's reductions give one element per row, written after their rows are
    // computed: such a result is not made element by element over its operands' places,
    // so it takes no operand's buffer.
    let reduced = |r: usize| match &node.kind {
        NodeKind::Fused { body } => g.block(*body).yields.get(r).is_some_and(|&y| {
            matches!(g.value(y).def, ValueDef::Result { node, .. }
                if matches!(g.node(node).kind, NodeKind::Prim(Op::Reduce { .. })))
        }),
        _ => false,
    };
    let mut out = Vec::new();
    let mut given: HashSet<usize> = HashSet::new();
    for (r, &result) in node.results.iter().enumerate() {
        let Type::Tensor(rt) = g.ty(result) else {
            continue;
        };
        if reduced(r) {
            continue;
        }
        if rt.shape.dims().iter().any(|d| d.is_unknown()) {
            continue;
        }
        let donor = node.operands[..candidates]
            .iter()
            .enumerate()
            .find(|&(i, &v)| {
                !given.contains(&i)
                    && node.operands.iter().filter(|&&w| w == v).count() == 1
                    && matches!(g.ty(v), Type::Tensor(t) if t == rt)
                    && dies_here(v)
            });
        if let Some((i, _)) = donor {
            given.insert(i);
            out.push(Donation {
                operand: i,
                result: r,
            });
        }
    }
    out
}

/// The plan as text, for tests and inspection: the graph's text (as
/// [`print`](crate::graph::print()) gives it), then one line per node that frees values or
/// writes in place, in execution order (`  ` per region level): `%3 = exp: frees %2;
/// %3 in %2`. Lines for the values freed once a block's arguments are bound and after its
/// yield say `args` and `yield`.
pub fn print(g: &Graph, plan: &MemoryPlan) -> String {
    let names = crate::graph::numbering(g);
    let name = |v: ValueId| crate::graph::value_name(&names, v);
    let list = |vs: &[ValueId]| vs.iter().map(|&v| name(v)).collect::<Vec<_>>().join(", ");
    let mut out = crate::graph::print(g, crate::graph::PrintOptions::default());
    out.push_str("// memory plan\n");
    fn block(
        g: &Graph,
        plan: &MemoryPlan,
        b: BlockId,
        depth: usize,
        out: &mut String,
        name: &dyn Fn(ValueId) -> String,
        list: &dyn Fn(&[ValueId]) -> String,
    ) {
        let releases = plan.releases(b);
        let indent = "  ".repeat(depth);
        let freed = |p: usize| releases.get(p).map_or(&[][..], Vec::as_slice);
        if !freed(0).is_empty() {
            let _ = writeln!(out, "//{indent} args: frees {}", list(freed(0)));
        }
        let nodes = &g.block(b).nodes;
        for (k, &n) in nodes.iter().enumerate() {
            let node = g.node(n);
            let mut parts = Vec::new();
            if !freed(k + 1).is_empty() {
                parts.push(format!("frees {}", list(freed(k + 1))));
            }
            for d in plan.donations(n) {
                parts.push(format!(
                    "{} in {}",
                    name(node.results[d.result]),
                    name(node.operands[d.operand])
                ));
            }
            if !parts.is_empty() {
                let results = list(&node.results);
                let head = if results.is_empty() {
                    node.kind.name().to_string()
                } else {
                    format!("{results} = {}", node.kind.name())
                };
                let _ = writeln!(out, "//{indent} {head}: {}", parts.join("; "));
            }
            for r in node.kind.regions() {
                block(g, plan, r, depth + 1, out, name, list);
            }
        }
        if !freed(nodes.len() + 1).is_empty() {
            let _ = writeln!(
                out,
                "//{indent} yield: frees {}",
                list(freed(nodes.len() + 1))
            );
        }
    }
    block(g, plan, g.body(), 0, &mut out, &name, &list);
    out
}
