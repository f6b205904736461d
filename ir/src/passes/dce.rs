//! Dead-code elimination.
//!
//! A node is live when it has an effect (`print`, a draw, an assertion) or a result that a
//! live node, a region's yield or the graph's outputs read. Liveness is found backwards,
//! block by block: a live control-flow node makes everything its regions yield live (a
//! node keeps all its results, so its regions keep all their yields). The copy then leaves
//! the dead nodes out.

use std::collections::HashSet;

use crate::graph::{
    BlockId, BuildError, Graph, NodeId, NodeKind, Rewrite, ValueId, is_effectful, rewrite,
};

/// `g` without the nodes nothing needs.
pub(super) fn run(g: &Graph) -> Result<Graph, BuildError> {
    let mut values: HashSet<ValueId> = g.outputs().iter().copied().collect();
    let mut live = HashSet::new();
    mark(g, g.body(), &mut values, &mut live);
    rewrite(g, &Dce { live })
}

/// Marks the live nodes of `block`, last first, given the live values after it.
fn mark(g: &Graph, block: BlockId, values: &mut HashSet<ValueId>, live: &mut HashSet<NodeId>) {
    for &n in g.block(block).nodes.iter().rev() {
        let node = g.node(n);
        let effect = match &node.kind {
            NodeKind::Prim(op) => is_effectful(op.prim()),
            NodeKind::Assert { .. } => true,
            // Every device of a mesh runs the same partitioned graph, so a collective no one
            // reads is unread on every device and all of them drop it together.
            NodeKind::Collective(_)
            | NodeKind::If { .. }
            | NodeKind::While { .. }
            | NodeKind::For { .. }
            | NodeKind::Fused { .. }
            | NodeKind::Call { .. } => false,
        };
        if !effect && !node.results.iter().any(|r| values.contains(r)) {
            continue;
        }
        live.insert(n);
        values.extend(node.operands.iter().copied());
        for r in node.kind.regions() {
            values.extend(g.block(r).yields.iter().copied());
            mark(g, r, values, live);
        }
    }
}

struct Dce {
    live: HashSet<NodeId>,
}

impl Rewrite for Dce {
    fn skip(&self, n: NodeId) -> bool {
        !self.live.contains(&n)
    }
}
