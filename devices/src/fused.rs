//! Fused groups as devices run them: a [`Kernel`] is the closed region of a graph's `fused`
//! node, flattened into a straight-line program over numbered registers.
//!
//! Registers `0..inputs.len()` are the group's inputs; step `k` defines register
//! `inputs.len() + k`. Every step is a pure elementwise primitive (or a scalar constant),
//! so a device may evaluate the program element by element in any order: the CPU walks it
//! over L1-sized tiles ([`crate::CpuDevice`]), and a GPU backend can print it as the body of
//! one generated kernel. A device that cannot run a kernel says so
//! ([`crate::Device::exec_fused`] gives `None`) and the executor runs the region node by
//! node instead, which computes the same values.

use ir::graph::{BlockId, NodeKind, Type, ValueId};
use ir::{Graph, Op, TensorType};

use crate::Tensor;

/// One step of a [`Kernel`].
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The primitive (elementwise, or a `full` of shape `[]`).
    pub op: Op,
    /// Its operands, as registers defined before it.
    pub args: Vec<usize>,
    /// Its result's type.
    pub ty: TensorType,
}

/// A fused group's program (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// The inputs' declared types (their shapes may hold symbolic dims).
    pub inputs: Vec<TensorType>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The registers the group gives, in order.
    pub outputs: Vec<usize>,
}

impl Kernel {
    /// The program of the region `body` of a `fused` node of `g`, or `None` when the region
    /// is not a straight line of pure primitives over its own arguments (an unverified
    /// graph).
    pub fn from_region(g: &Graph, body: BlockId) -> Option<Kernel> {
        let block = g.block(body);
        let mut reg: std::collections::HashMap<ValueId, usize> = std::collections::HashMap::new();
        let mut inputs = Vec::with_capacity(block.args.len());
        for &a in &block.args {
            let Type::Tensor(t) = g.ty(a) else {
                return None;
            };
            reg.insert(a, inputs.len());
            inputs.push(t.clone());
        }
        let mut steps = Vec::with_capacity(block.nodes.len());
        for &n in &block.nodes {
            let node = g.node(n);
            let NodeKind::Prim(op) = &node.kind else {
                return None;
            };
            let args = node
                .operands
                .iter()
                .map(|v| reg.get(v).copied())
                .collect::<Option<Vec<_>>>()?;
            let [r] = node.results[..] else {
                return None;
            };
            let Type::Tensor(ty) = g.ty(r) else {
                return None;
            };
            reg.insert(r, inputs.len() + steps.len());
            steps.push(Step {
                op: op.clone(),
                args,
                ty: ty.clone(),
            });
        }
        let outputs = block
            .yields
            .iter()
            .map(|v| reg.get(v).copied())
            .collect::<Option<Vec<_>>>()?;
        Some(Kernel {
            inputs,
            steps,
            outputs,
        })
    }

    /// The type of register `r`.
    pub fn ty(&self, r: usize) -> Option<&TensorType> {
        match r.checked_sub(self.inputs.len()) {
            None => self.inputs.get(r),
            Some(k) => self.steps.get(k).map(|s| &s.ty),
        }
    }
}

/// The dims of a fused group's outputs for `inputs`: their broadcast shape, or `None` when
/// they do not broadcast or a dim is not known (every device runs groups at this shape).
pub fn output_dims<'t>(inputs: impl IntoIterator<Item = &'t Tensor>) -> Option<Vec<usize>> {
    let mut shape = ir::Shape::scalar();
    for t in inputs {
        shape = ir::broadcast_shapes(&shape, &t.ttype().shape).ok()?;
    }
    shape.to_known()
}
