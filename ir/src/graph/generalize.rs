//! One graph for every size of a function's symbolic dims, found from two stagings.
//!
//! Staging runs the function on tensors of concrete sizes, so a graph first has concrete
//! types. Staged again where only the sizes of its symbolic dims differ (`x: f32[B, 4]` at
//! `B = 2`, then at `B = 5`), the function gives a graph of the same structure in which
//! exactly those sizes differ, *if* nothing it computed depended on them. [`generalize`]
//! checks that, node by node (anti-unification): two dims that differ must be the sizes of
//! one symbolic dim in the two stagings, and become that dim; anything else that differs
//! (an attribute, a constant such as `1 / B` folded at staging time, a size computed from
//! `B` such as `2 * B`) means the graph is specific to its sizes, and the reason is given.
//! Shape attributes may become symbolic only where the executor binds them at run time
//! (`reshape`, `broadcast`, `random`, `iota`, `full`).

use std::sync::Arc;

use super::{Graph, NodeKind, Type};
use crate::{Dim, Op, Shape, TensorType};

/// A symbolic dim and its size in each of the two stagings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymSize {
    /// The dim's name (`B`).
    pub name: Arc<str>,
    /// Its size in the first graph.
    pub a: usize,
    /// Its size in the second graph.
    pub b: usize,
}

/// The graph of which `a` and `b` are the instances at the sizes `syms`, or why there is
/// none. The result verifies.
pub fn generalize(a: &Graph, b: &Graph, syms: &[SymSize]) -> Result<Graph, String> {
    if a.name != b.name || a.body != b.body {
        return Err("the graphs are of different functions".into());
    }
    if a.values.len() != b.values.len()
        || a.nodes.len() != b.nodes.len()
        || a.blocks.len() != b.blocks.len()
    {
        return Err(format!(
            "staging gave graphs of different sizes ({} and {} nodes)",
            a.nodes.len(),
            b.nodes.len()
        ));
    }
    if a.blocks != b.blocks {
        return Err("staging gave graphs of different structure".into());
    }
    let mut g = a.clone();
    for (i, (va, vb)) in a.values.iter().zip(&b.values).enumerate() {
        if va.def != vb.def {
            return Err("staging gave graphs of different structure".into());
        }
        g.values[i].ty =
            general_type(&va.ty, &vb.ty, syms).map_err(|e| format!("value %{i}: {e}"))?;
    }
    for (i, (na, nb)) in a.nodes.iter().zip(&b.nodes).enumerate() {
        if na.operands != nb.operands || na.results != nb.results || na.block != nb.block {
            return Err("staging gave graphs of different structure".into());
        }
        g.nodes[i].kind = match (&na.kind, &nb.kind) {
            (NodeKind::Prim(x), NodeKind::Prim(y)) => NodeKind::Prim(
                general_op(x, y, syms).map_err(|e| format!("node {i} ({}): {e}", x.prim()))?,
            ),
            (x, y) if x == y => x.clone(),
            _ => return Err(format!("node {i} differs")),
        };
    }
    super::verify(&g).map_err(|e| format!("the general graph does not verify: {e}"))?;
    Ok(g)
}

fn general_type(x: &Type, y: &Type, syms: &[SymSize]) -> Result<Type, String> {
    match (x, y) {
        (Type::Tensor(p), Type::Tensor(q)) if p.dtype == q.dtype => Ok(Type::Tensor(
            TensorType::new(p.dtype, general_shape(&p.shape, &q.shape, syms)?),
        )),
        _ if x == y => Ok(x.clone()),
        _ => Err(format!("type {x} differs from {y}")),
    }
}

fn general_shape(x: &Shape, y: &Shape, syms: &[SymSize]) -> Result<Shape, String> {
    if x.rank() != y.rank() {
        return Err(format!("shape {x} differs from {y}"));
    }
    x.dims()
        .iter()
        .zip(y.dims())
        .map(|(p, q)| match (p, q) {
            _ if p == q => Ok(p.clone()),
            (Dim::Known(m), Dim::Known(n)) => syms
                .iter()
                .find(|s| s.a == *m && s.b == *n)
                .map(|s| Dim::Sym(Arc::clone(&s.name)))
                .ok_or_else(|| {
                    format!("shape {x} differs from {y} by a size that no symbolic dim explains")
                }),
            _ => Err(format!("shape {x} differs from {y}")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Shape)
}

/// `x` and `y` as one op: equal, or differing only in a shape attribute the executor
/// binds at run time.
fn general_op(x: &Op, y: &Op, syms: &[SymSize]) -> Result<Op, String> {
    if x == y {
        return Ok(x.clone());
    }
    let text = |op: &Op| format!("{{{}}}", super::print::attrs(op).join(", "));
    let differ = || format!("its attributes differ ({} and {})", text(x), text(y));
    let (Some(sx), Some(sy)) = (x.shape_attr(), y.shape_attr()) else {
        return Err(differ());
    };
    // Everything but the shape must agree: `y` with `x`'s shape is `x`.
    let mut same = y.clone();
    if let Some(s) = same.shape_attr_mut() {
        s.clone_from(sx);
    }
    if same != *x {
        return Err(differ());
    }
    let mut out = x.clone();
    if let Some(s) = out.shape_attr_mut() {
        *s = general_shape(sx, sy, syms)?;
    }
    Ok(out)
}
