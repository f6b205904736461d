//! Bucketed all-reduces: the all-reduces of a partitioned graph's body merged into fewer,
//! larger ones, as PyTorch's DDP buckets gradients.
//!
//! Data parallelism all-reduces each gradient once, just before its first use (the
//! optimizer's update), so a training step runs one collective per parameter, and each
//! collective pays the link's latency. Here an all-reduce joins the bucket of an earlier
//! one (same combination, mesh axis and dtype) when its operand is already computed where
//! the bucket runs and the bucket stays within its cap; the bucket flattens its members,
//! joins them, reduces them in one collective and cuts the result back. The values are the
//! same bit for bit (an all-reduce adds elementwise, so each element is combined exactly
//! as alone).
//!
//! Merging is not free: a member is copied into the bucket and back out of it. It pays
//! where a collective's latency dwarfs that copy (GPUs on NVLink: microseconds of latency
//! against terabytes per second of memory), and does not for large tensors on a CPU,
//! where the copies of a few megabytes cost more than the rendezvous they save. So which
//! all-reduces join buckets follows the hardware profile ([`BucketPolicy::for_profile`]).
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

/// Which all-reduces are merged: those of at most `largest` bytes (per mesh axis, the
/// last entry serving the axes after it), into buckets of at most `cap` bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketPolicy {
    /// The most bytes one bucket holds.
    pub cap: u64,
    /// The largest all-reduce that joins a bucket, per mesh axis.
    pub largest: Vec<u64>,
}

impl BucketPolicy {
    /// PyTorch DDP's: every all-reduce, in buckets of up to [`BUCKET_BYTES`].
    pub fn ddp() -> BucketPolicy {
        BucketPolicy {
            cap: BUCKET_BYTES,
            largest: vec![BUCKET_BYTES],
        }
    }

    /// What pays on `profile`: an all-reduce of `b` bytes joins a bucket when copying it in
    /// and out (about `4b` bytes of memory traffic: read and write, twice) takes less than
    /// the latency α of the collective it saves on its axis's link.
    pub fn for_profile(profile: &super::Profile) -> BucketPolicy {
        let largest = (0..profile.links.len().max(1))
            .map(|axis| {
                let worth = profile.link(axis).alpha * profile.memory / 4.0;
                (worth.max(0.0) as u64).min(BUCKET_BYTES)
            })
            .collect();
        BucketPolicy {
            cap: BUCKET_BYTES,
            largest,
        }
    }

    /// The largest all-reduce over mesh axis `axis` that joins a bucket.
    pub fn largest(&self, axis: usize) -> u64 {
        self.largest
            .get(axis)
            .or(self.largest.last())
            .copied()
            .unwrap_or(0)
    }
}

/// Buckets of all-reduces, as positions of body nodes: each bucket's first member is where
/// it runs.
pub type Buckets = Vec<Vec<usize>>;

fn numel(t: &TensorType) -> Option<u64> {
    t.shape.numel().map(|n| n as u64)
}

/// Chooses the buckets of `g`'s body under `policy` (one with two members or more each).
pub fn choose(g: &Graph, policy: &BucketPolicy) -> Buckets {
    let cap = policy.cap;
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
                    let t = g.ty(x).tensor()?.clone();
                    let bytes = numel(&t)?.saturating_mul(t.dtype.size_of() as u64);
                    (bytes <= policy.largest(c.mesh_axis())).then_some((p, c, x, t))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::parse;
    use crate::parallel::Profile;

    /// Three all-reduces of a data-parallel step's gradients: 4 MiB, 4 MiB and 4 KiB.
    const GRADS: &str = "graph @grads(%a: f32[1024, 1024], %b: f32[1024, 1024], %c: f32[1024]) -> (f32[1024, 1024], f32[1024, 1024], f32[1024]) {\n  %ra: f32[1024, 1024] = all_reduce %a {op: sum, mesh_axis: 0}\n  %rb: f32[1024, 1024] = all_reduce %b {op: sum, mesh_axis: 0}\n  %rc: f32[1024] = all_reduce %c {op: sum, mesh_axis: 0}\n  yield %ra, %rb, %rc\n}\n";

    fn profile(name: &str) -> BucketPolicy {
        BucketPolicy::for_profile(&Profile::named(name).expect("profile"))
    }

    #[test]
    fn what_joins_a_bucket_follows_the_hardware() {
        let g = parse(GRADS).expect("parses");
        // DDP's policy merges all three; on GPUs with NVLink the copies of 4 MiB cost less
        // than a collective's latency, so all three too.
        assert_eq!(choose(&g, &BucketPolicy::ddp()), vec![vec![0, 1, 2]]);
        assert_eq!(choose(&g, &profile("h100")), vec![vec![0, 1, 2]]);
        // On the CPU copying megabytes costs more than a rendezvous: the large ones stay
        // apart, and a lone small one makes no bucket.
        assert!(choose(&g, &profile("cpu")).is_empty());
        // A cap of 5 MiB: the first two cannot share a bucket.
        let capped = BucketPolicy {
            cap: 5 << 20,
            largest: vec![BUCKET_BYTES],
        };
        assert_eq!(choose(&g, &capped), vec![vec![0, 2]]);
    }

    #[test]
    fn the_threshold_is_latency_times_bandwidth() {
        let cpu = Profile::named("cpu").expect("profile");
        let p = BucketPolicy::for_profile(&cpu);
        let want = (cpu.link(0).alpha * cpu.memory / 4.0) as u64;
        assert_eq!(p.largest(0), want);
        assert_eq!(p.largest(3), want, "the last link serves the axes after it");
        let two = BucketPolicy::for_profile(&Profile::named("h100-2node").expect("profile"));
        assert!(two.largest(0) > two.largest(1), "the slow axis merges more");
    }
}
