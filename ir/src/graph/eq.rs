//! Structural equality of graphs: the same program up to a renaming of values.
//!
//! Arena order is an accident of construction (the builder allocates a region's arguments
//! before the node's results; the parser allocates in text order), so `==` walks both
//! bodies side by side and keeps a one-to-one map between their values instead.

use std::collections::HashMap;

use super::{BlockId, Graph, NodeKind, ValueId};
use crate::Op;

impl PartialEq for Graph {
    fn eq(&self, other: &Graph) -> bool {
        self.name == other.name
            && Matcher {
                a: self,
                b: other,
                fwd: HashMap::new(),
                back: HashMap::new(),
            }
            .blocks(self.body, other.body)
    }
}

/// Walks two graphs in step, pairing values.
struct Matcher<'g> {
    a: &'g Graph,
    b: &'g Graph,
    fwd: HashMap<ValueId, ValueId>,
    back: HashMap<ValueId, ValueId>,
}

impl Matcher<'_> {
    /// Pairs `x` of `a` with `y` of `b`, or checks an existing pairing. A use may come
    /// before its definition in a graph the verifier rejects, so a first use pairs too.
    fn pair(&mut self, x: ValueId, y: ValueId) -> bool {
        if self.a.ty(x) != self.b.ty(y) {
            return false;
        }
        match (self.fwd.get(&x), self.back.get(&y)) {
            (None, None) => {
                self.fwd.insert(x, y);
                self.back.insert(y, x);
                true
            }
            (Some(&y2), Some(&x2)) => y2 == y && x2 == x,
            _ => false,
        }
    }

    fn pair_all(&mut self, xs: &[ValueId], ys: &[ValueId]) -> bool {
        xs.len() == ys.len() && xs.iter().zip(ys).all(|(&x, &y)| self.pair(x, y))
    }

    fn blocks(&mut self, ba: BlockId, bb: BlockId) -> bool {
        let (x, y) = (self.a.block(ba), self.b.block(bb));
        if !self.pair_all(&x.args, &y.args) || x.nodes.len() != y.nodes.len() {
            return false;
        }
        for (&na, &nb) in x.nodes.iter().zip(&y.nodes) {
            let (p, q) = (self.a.node(na), self.b.node(nb));
            let same_kind = match (&p.kind, &q.kind) {
                (NodeKind::Prim(o1), NodeKind::Prim(o2)) => same_op(o1, o2),
                (NodeKind::Assert { message: m1 }, NodeKind::Assert { message: m2 }) => m1 == m2,
                (NodeKind::Collective(c1), NodeKind::Collective(c2)) => c1 == c2,
                (NodeKind::Call { callee: c1, .. }, NodeKind::Call { callee: c2, .. }) => c1 == c2,
                (NodeKind::If { .. }, NodeKind::If { .. })
                | (NodeKind::While { .. }, NodeKind::While { .. })
                | (NodeKind::For { .. }, NodeKind::For { .. })
                | (NodeKind::Fused { .. }, NodeKind::Fused { .. }) => true,
                _ => false,
            };
            if !same_kind
                || p.span != q.span
                || !self.pair_all(&p.operands, &q.operands)
                || !self.pair_all(&p.results, &q.results)
            {
                return false;
            }
            let (ra, rb) = (p.kind.regions(), q.kind.regions());
            if ra.len() != rb.len() || !ra.iter().zip(&rb).all(|(&r, &s)| self.blocks(r, s)) {
                return false;
            }
        }
        self.pair_all(&x.yields, &y.yields)
    }
}

/// `a == b`, except that float attributes compare by their bits (NaN equals itself).
fn same_op(a: &Op, b: &Op) -> bool {
    match (a, b) {
        (
            Op::Full {
                shape: s1,
                dtype: d1,
                value: v1,
            },
            Op::Full {
                shape: s2,
                dtype: d2,
                value: v2,
            },
        ) => s1 == s2 && d1 == d2 && v1.to_bits() == v2.to_bits(),
        (
            Op::Pad {
                pads: p1,
                value: v1,
            },
            Op::Pad {
                pads: p2,
                value: v2,
            },
        ) => p1 == p2 && v1.to_bits() == v2.to_bits(),
        _ => a == b,
    }
}
