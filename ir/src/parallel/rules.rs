//! The sharding rule of every primitive: on which layouts of its operands it can compute
//! each device's piece of its result without talking to the other devices, and what layout
//! that result has (DESIGN.md §2: one exhaustive match over the primitive table).
//!
//! A rule is given the layouts its operands have now and prefers to keep them: it answers
//! with the layouts it *requires* (the partitioner redistributes any operand whose layout
//! differs: a gather, an all-reduce or a local shard) and the layout of the result. A split
//! axis survives wherever the primitive treats that axis independently (elementwise ops,
//! the batch and row axes of a product, the kept axes of a reduction, the batch of a
//! convolution); a split that the primitive folds away becomes a *partial* result (a
//! reduction over it, the contraction axis of a product, the batch of a weight gradient);
//! anything else (a sliced or padded axis, the axis a gather indexes, scatter-add) is
//! gathered first. Operands are always required whole (no partial parts), so a partial
//! result is combined by one all-reduce before its first use — for data parallelism,
//! exactly the all-reduce of each gradient.

use super::{Layout, ReduceKind};
use crate::{Op, ReduceOp};

/// What a rule decides for one node.
#[derive(Clone, Debug, PartialEq)]
pub struct Strategy {
    /// The layout each operand must have (never partial).
    pub operands: Vec<Layout>,
    /// The layout of the result.
    pub result: Layout,
}

/// Known dims of a tensor, outermost first.
pub type Dims = Vec<usize>;

/// The sharding rule of `op` applied to operands of global shapes `ins` (result `out`)
/// whose layouts are now `cur`, on a mesh of shape `mesh`.
pub fn strategy(op: &Op, ins: &[Dims], out: &Dims, cur: &[Layout], mesh: &[usize]) -> Strategy {
    let rank = out.len();
    let whole = |i: usize| -> Layout {
        cur.get(i)
            .map(Layout::whole)
            .unwrap_or_else(|| Layout::replicated(ins.get(i).map_or(0, Vec::len)))
    };
    let replicated = || Strategy {
        operands: ins.iter().map(|d| Layout::replicated(d.len())).collect(),
        result: Layout::replicated(rank),
    };
    match op {
        Op::Unary { .. }
        | Op::Binary { .. }
        | Op::Compare { .. }
        | Op::Select {}
        | Op::Cast { .. }
        | Op::StopGradient {} => elementwise(ins, out, cur),
        Op::Reduce { op, axes, keepdims } => {
            let kind = match op {
                ReduceOp::Sum => Some(ReduceKind::Sum),
                ReduceOp::Max => Some(ReduceKind::Max),
                ReduceOp::Min => Some(ReduceKind::Min),
                // A product of per-device products would need a multiplying all-reduce,
                // which the mesh does not have: the reduced axes are gathered instead.
                ReduceOp::Prod => None,
            };
            let mut need = whole(0);
            let mut result = Layout::default();
            for (i, m) in need.map.iter_mut().enumerate() {
                if axes.contains(&i) {
                    // An axis shorter than its mesh axis leaves some device an empty piece,
                    // whose max or min does not exist (a sum of none is 0): such an axis
                    // is gathered instead.
                    let empty_piece = |mesh_axis: usize| {
                        ins[0]
                            .get(i)
                            .is_some_and(|&n| n < mesh_size(mesh, mesh_axis))
                    };
                    match (*m, kind) {
                        (Some(mesh_axis), Some(k))
                            if k == ReduceKind::Sum || !empty_piece(mesh_axis) =>
                        {
                            result.partial.push((mesh_axis, k));
                        }
                        _ => *m = None,
                    }
                    if *keepdims {
                        result.map.push(None);
                    }
                } else {
                    result.map.push(*m);
                }
            }
            Strategy {
                operands: vec![need],
                result,
            }
        }
        Op::ArgReduce { axis, keepdims, .. } => {
            let mut need = whole(0);
            if let Some(m) = need.map.get_mut(*axis) {
                *m = None;
            }
            let mut result = need.clone();
            if !keepdims && *axis < result.map.len() {
                result.map.remove(*axis);
            }
            Strategy {
                operands: vec![need],
                result,
            }
        }
        Op::MatMul {} => matmul(ins, out, cur),
        Op::Reshape { .. } => {
            let need = reshape_need(&ins[0], out, &whole(0), mesh);
            let mut result = Layout::replicated(rank);
            for (i, m) in need.map.iter().enumerate() {
                if let Some(m) = m
                    && let Some(j) = reshape_axis(&ins[0], out, i, mesh_size(mesh, *m))
                {
                    result.map[j] = Some(*m);
                }
            }
            Strategy {
                operands: vec![need],
                result,
            }
        }
        Op::Transpose { perm } => {
            let need = whole(0);
            let result = Layout {
                map: perm
                    .iter()
                    .map(|&p| need.map.get(p).copied().flatten())
                    .collect(),
                partial: Vec::new(),
            };
            Strategy {
                operands: vec![need],
                result,
            }
        }
        Op::Broadcast { .. } => {
            let mut need = whole(0);
            let lead = rank - ins[0].len();
            let mut result = Layout::replicated(rank);
            for (i, m) in need.map.iter_mut().enumerate() {
                if ins[0][i] != out[lead + i] {
                    *m = None;
                }
                result.map[lead + i] = *m;
            }
            Strategy {
                operands: vec![need],
                result,
            }
        }
        Op::Slice { dims } => {
            let mut need = whole(0);
            for (i, m) in need.map.iter_mut().enumerate() {
                let full = dims
                    .get(i)
                    .is_some_and(|d| d.start == 0 && d.step == 1 && d.len == ins[0][i]);
                if !full {
                    *m = None;
                }
            }
            Strategy {
                result: need.clone(),
                operands: vec![need],
            }
        }
        Op::Concat { axis } => {
            let mut first = whole(0);
            if let Some(m) = first.map.get_mut(*axis) {
                *m = None;
            }
            Strategy {
                operands: vec![first.clone(); ins.len()],
                result: first,
            }
        }
        Op::Pad { pads, .. } => {
            let mut need = whole(0);
            for (i, m) in need.map.iter_mut().enumerate() {
                if pads.get(i).is_some_and(|&(a, b)| a != 0 || b != 0) {
                    *m = None;
                }
            }
            Strategy {
                result: need.clone(),
                operands: vec![need],
            }
        }
        Op::Gather { axis } => {
            let mut x = whole(0);
            if let Some(m) = x.map.get_mut(*axis) {
                *m = None;
            }
            let mut idx = whole(1);
            let mut result = Layout::default();
            result.map.extend_from_slice(&x.map[..*axis]);
            for m in idx.map.iter_mut() {
                if m.is_some_and(|m| x.map.contains(&Some(m))) {
                    *m = None;
                }
            }
            result.map.extend_from_slice(&idx.map);
            result.map.extend_from_slice(&x.map[*axis + 1..]);
            Strategy {
                operands: vec![x, idx],
                result,
            }
        }
        // Scatter-add accumulates into a base every device holds; adding each device's
        // updates into its own copy would count the base once per device.
        Op::ScatterAdd { .. } => replicated(),
        Op::Conv2d { .. } | Op::Conv2dBackwardInput { .. } => {
            let batch = whole(0).map.first().copied().flatten();
            let mut x = Layout::replicated(4);
            x.map[0] = batch;
            let mut result = Layout::replicated(4);
            result.map[0] = batch;
            Strategy {
                operands: vec![x, Layout::replicated(ins[1].len())],
                result,
            }
        }
        Op::Conv2dBackwardFilter { .. } => {
            let batch = whole(0)
                .map
                .first()
                .copied()
                .flatten()
                .or_else(|| whole(1).map.first().copied().flatten());
            let mut x = Layout::replicated(4);
            x.map[0] = batch;
            let mut result = Layout::replicated(4);
            if let Some(m) = batch {
                result.partial.push((m, ReduceKind::Sum));
            }
            Strategy {
                operands: vec![x.clone(), x],
                result,
            }
        }
        Op::Pool2d { .. } => {
            let mut x = whole(0);
            x.map[2] = None;
            x.map[3] = None;
            Strategy {
                result: x.clone(),
                operands: vec![x],
            }
        }
        Op::Pool2dBackward { .. } => {
            let (a, b) = (whole(0), whole(1));
            let mut x = Layout::replicated(4);
            for i in 0..2 {
                x.map[i] = a.map[i].or(b.map[i]);
            }
            if x.map[0].is_some() && x.map[0] == x.map[1] {
                x.map[1] = None;
            }
            Strategy {
                operands: vec![x.clone(), x.clone()],
                result: x,
            }
        }
        // Made from attributes alone (the key of a draw is a replicated value): every
        // device makes the whole value, which keeps random streams those of one device.
        Op::Random { .. } | Op::Iota { .. } | Op::Full { .. } => replicated(),
        // Shows the whole value once.
        Op::Print {} => replicated(),
    }
}

/// Elementwise primitives: the result keeps every split an operand has on an axis it does
/// not broadcast; operands are split the same way (their broadcast axes stay whole).
fn elementwise(ins: &[Dims], out: &Dims, cur: &[Layout]) -> Strategy {
    let rank = out.len();
    let mut result = Layout::replicated(rank);
    for (d, l) in ins.iter().zip(cur) {
        let lead = rank - d.len();
        for (i, m) in l.map.iter().enumerate() {
            if let Some(m) = m
                && d[i] == out[lead + i]
                && result.map[lead + i].is_none()
                && !result.map.contains(&Some(*m))
            {
                result.map[lead + i] = Some(*m);
            }
        }
    }
    let operands = ins
        .iter()
        .map(|d| {
            let lead = rank - d.len();
            Layout {
                map: (0..d.len())
                    .map(|i| {
                        if d[i] == out[lead + i] {
                            result.map[lead + i]
                        } else {
                            None
                        }
                    })
                    .collect(),
                partial: Vec::new(),
            }
        })
        .collect();
    Strategy { operands, result }
}

/// `[..., m, k] @ [..., k, n]`: batch axes as elementwise, rows with the left operand,
/// columns with the right one, and a split contraction axis gives a partial sum.
fn matmul(ins: &[Dims], out: &Dims, cur: &[Layout]) -> Strategy {
    let rank = out.len();
    let (l, r) = (&ins[0], &ins[1]);
    let (lw, rw) = (cur[0].whole(), cur[1].whole());
    let mut result = Layout::replicated(rank);
    let take = |result: &mut Layout, at: usize, m: Option<usize>| {
        if let Some(m) = m
            && result.map[at].is_none()
            && !result.map.contains(&Some(m))
        {
            result.map[at] = Some(m);
        }
    };
    for (d, lay) in [(l, &lw), (r, &rw)] {
        let lead = rank - d.len();
        for i in 0..d.len() - 2 {
            if d[i] == out[lead + i] {
                take(&mut result, lead + i, lay.map[i]);
            }
        }
    }
    take(&mut result, rank - 2, lw.map[l.len() - 2]);
    take(&mut result, rank - 1, rw.map[r.len() - 1]);
    let k = [lw.map[l.len() - 1], rw.map[r.len() - 2]]
        .into_iter()
        .flatten()
        .find(|m| !result.map.contains(&Some(*m)));
    let need = |d: &Dims, row: Option<usize>, col: Option<usize>| {
        let lead = rank - d.len();
        let mut map: Vec<Option<usize>> = (0..d.len() - 2)
            .map(|i| {
                if d[i] == out[lead + i] {
                    result.map[lead + i]
                } else {
                    None
                }
            })
            .collect();
        map.push(row);
        map.push(col);
        Layout {
            map,
            partial: Vec::new(),
        }
    };
    let operands = vec![
        need(l, result.map[rank - 2], k),
        need(r, k, result.map[rank - 1]),
    ];
    if let Some(k) = k {
        result.partial.push((k, ReduceKind::Sum));
    }
    Strategy { operands, result }
}

fn mesh_size(mesh: &[usize], m: usize) -> usize {
    mesh.get(m).copied().unwrap_or(1)
}

/// The axis of a reshape's result that axis `i` of its operand, split into `k` pieces,
/// becomes: one with as many elements before it, and either of the same size (any split)
/// or — both sizes multiples of `k` — the outermost axis of the group it merges into or
/// splits off (`[B, L, d]` ↔ `[B, L, h, d/h]`: `k` equal blocks of `d` are `k` equal blocks
/// of `h`). Splitting such an axis commutes with the reshape.
fn reshape_axis(input: &Dims, out: &Dims, i: usize, k: usize) -> Option<usize> {
    let before: usize = input[..i].iter().product();
    let mut acc = 1usize;
    let mut found = None;
    for (j, &d) in out.iter().enumerate() {
        if acc == before {
            if d == input[i] {
                return Some(j);
            }
            if found.is_none()
                && d > 1
                && k > 1
                && d.is_multiple_of(k)
                && input[i].is_multiple_of(k)
            {
                found = Some(j);
            }
        }
        acc = acc.saturating_mul(d);
        if acc > before {
            break;
        }
    }
    found
}

/// The operand layout a reshape keeps: the splits of axes it leaves alone.
fn reshape_need(input: &Dims, out: &Dims, cur: &Layout, mesh: &[usize]) -> Layout {
    let mut need = cur.clone();
    for (i, m) in need.map.iter_mut().enumerate() {
        if let Some(mm) = *m
            && reshape_axis(input, out, i, mesh_size(mesh, mm)).is_none()
        {
            *m = None;
        }
    }
    need
}
