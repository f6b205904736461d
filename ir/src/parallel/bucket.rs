//! Bucketed all-reduces: the all-reduces of a partitioned graph's body merged into fewer,
//! larger ones, as PyTorch's DDP buckets gradients.
//!
//! Data parallelism all-reduces each gradient once, just before its first use (the
//! optimizer's update), so a training step runs one collective per parameter, and each
//! collective pays the link's latency. Here an all-reduce joins the bucket of an earlier
//! one (same combination, mesh axis and dtype) when its operand is already computed where
//! the bucket runs and the bucket stays within [`BUCKET_BYTES`]; the bucket flattens its
//! members, joins them, reduces them in one collective and cuts the result back. The
//! values are the same bit for bit (an all-reduce adds elementwise, so each element is
//! combined exactly as alone).
//!
//! The buckets are chosen once, on device 0's graph, and applied by position to every
//! device's graph: the partitioner makes graphs of one structure on every device (only
//! the sizes of pieces differ), and every device must run the same collectives in the
//! same order.

use std::cell::RefCell;
use std::collections::HashMap;

use super::Collective;
use crate::graph::{BuildError, Graph, GraphBuilder, NodeId, NodeKind, Rewrite, ValueId, rewrite};
use crate::{Dim, Op, Shape, SliceDim, TensorType};

/// The most bytes one bucket holds (PyTorch DDP's default, 25 MiB).
pub const BUCKET_BYTES: u64 = 25 << 20;

/// Buckets of all-reduces, as positions of body nodes: each bucket's first member is where
/// it runs.
pub type Buckets = Vec<Vec<usize>>;

fn numel(t: &TensorType) -> Option<u64> {
    t.shape.numel().map(|n| n as u64)
}

/// Chooses the buckets of `g`'s body (one with two members or more each).
pub fn choose(g: &Graph, cap: u64) -> Buckets {
    let body = g.block(g.body());
    // Where each value of the body is defined (graph inputs: before everything).
    let mut def_at: HashMap<ValueId, usize> = HashMap::new();
    for (p, &n) in body.nodes.iter().enumerate() {
        for &r in &g.node(n).results {
            def_at.insert(r, p);
        }
    }
    let reduces: Vec<(usize, Collective, ValueId, TensorType)> = body
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(p, &n)| {
            let node = g.node(n);
            match node.kind {
                NodeKind::Collective(c @ Collective::AllReduce { .. }) => {
                    let x = *node.operands.first()?;
                    Some((p, c, x, g.ty(x).tensor()?.clone()))
                }
                _ => None,
            }
        })
        .collect();
    let mut taken = vec![false; reduces.len()];
    let mut out = Vec::new();
    for i in 0..reduces.len() {
        if taken[i] {
            continue;
        }
        let (head, c, _, t) = &reduces[i];
        let size = |t: &TensorType| {
            numel(t)
                .unwrap_or(u64::MAX)
                .saturating_mul(t.dtype.size_of() as u64)
        };
        let mut bytes = size(t);
        let mut bucket = vec![*head];
        taken[i] = true;
        for j in i + 1..reduces.len() {
            let (p, c2, x2, t2) = &reduces[j];
            let ready = def_at.get(x2).is_none_or(|&d| d < *head);
            let more = bytes.saturating_add(size(t2));
            if !taken[j] && c2 == c && t2.dtype == t.dtype && ready && more <= cap {
                bucket.push(*p);
                bytes = more;
                taken[j] = true;
            }
        }
        if bucket.len() > 1 {
            out.push(bucket);
        }
    }
    out
}

/// `g` with `buckets` (positions of its body's all-reduces, from [`choose`] on a graph of
/// the same structure) merged.
pub fn apply(g: &Graph, buckets: &Buckets) -> Result<Graph, BuildError> {
    let body = g.block(g.body());
    let at = |p: usize| body.nodes.get(p).copied();
    let mut heads = HashMap::new();
    let mut skipped = Vec::new();
    for b in buckets {
        let members: Option<Vec<NodeId>> = b.iter().map(|&p| at(p)).collect();
        let Some(members) = members else { continue };
        let all_reduces = members.iter().all(|&n| {
            matches!(
                g.node(n).kind,
                NodeKind::Collective(Collective::AllReduce { .. })
            )
        });
        if !all_reduces {
            continue;
        }
        skipped.extend_from_slice(&members[1..]);
        heads.insert(members[0], members);
    }
    let rw = Merge {
        g,
        heads,
        skipped,
        depth: RefCell::new(0),
    };
    rewrite(g, &rw)
}

struct Merge<'a> {
    g: &'a Graph,
    heads: HashMap<NodeId, Vec<NodeId>>,
    skipped: Vec<NodeId>,
    depth: RefCell<usize>,
}

impl Rewrite for Merge<'_> {
    fn skip(&self, n: NodeId) -> bool {
        *self.depth.borrow() == 0 && self.skipped.contains(&n)
    }

    fn node(
        &self,
        b: &mut GraphBuilder,
        n: NodeId,
        get: &dyn Fn(ValueId) -> ValueId,
    ) -> Result<Option<Vec<(ValueId, ValueId)>>, BuildError> {
        if *self.depth.borrow() > 0 {
            return Ok(None);
        }
        let Some(members) = self.heads.get(&n) else {
            return Ok(None);
        };
        let NodeKind::Collective(c) = self.g.node(n).kind else {
            return Ok(None);
        };
        let mut flat = Vec::with_capacity(members.len());
        let mut parts = Vec::with_capacity(members.len());
        let mut total = 0usize;
        let mut dtype = None;
        for &m in members {
            let node = self.g.node(m);
            let (Some(&x), Some(&r)) = (node.operands.first(), node.results.first()) else {
                return Err(BuildError::Unfinished);
            };
            let t = self
                .g
                .ty(x)
                .tensor()
                .cloned()
                .ok_or(BuildError::Unfinished)?;
            let len = t.shape.numel().ok_or(BuildError::Unfinished)?;
            dtype = Some(t.dtype);
            flat.push(b.op(
                &Op::Reshape {
                    shape: Shape::known(&[len]),
                },
                &[get(x)],
            )?);
            parts.push((r, t, total, len));
            total += len;
        }
        let joined = b.op(&Op::Concat { axis: 0 }, &flat)?;
        let dtype = dtype.ok_or(BuildError::Unfinished)?;
        let reduced = b.collective(
            c,
            joined,
            TensorType::new(dtype, Shape(vec![Dim::Known(total)])),
        )?;
        let mut bindings = Vec::with_capacity(parts.len());
        for (r, t, start, len) in parts {
            let piece = b.op(
                &Op::Slice {
                    dims: vec![SliceDim {
                        start,
                        len,
                        step: 1,
                    }],
                },
                &[reduced],
            )?;
            bindings.push((
                r,
                b.op(
                    &Op::Reshape {
                        shape: t.shape.clone(),
                    },
                    &[piece],
                )?,
            ));
        }
        Ok(Some(bindings))
    }

    fn enter(&self, _closed: bool) {
        *self.depth.borrow_mut() += 1;
    }

    fn leave(&self) {
        let mut d = self.depth.borrow_mut();
        *d = d.saturating_sub(1);
    }
}
