//! Fused groups as devices run them: a [`Kernel`] is the closed region of a graph's `fused`
//! node, flattened into a straight-line program over numbered registers.
//!
//! Registers `0..inputs.len()` are the group's inputs; step `k` defines register
//! `inputs.len() + k`. Every step is a pure elementwise primitive (or a scalar constant) at
//! the group's shape, so a device may evaluate those element by element in any order, or a
//! *reduction* (`sum`, `prod`, `max`, `min`) over trailing axes of a register computed at
//! that shape. A reduction ends the program for its rows: no step reads its result, which
//! is only an output, and every reduction of a kernel folds the same number of trailing
//! axes, so one row length serves them all. The CPU walks the program over L1-sized tiles
//! of whole rows ([`crate::CpuDevice`]), and a GPU backend can print the elementwise part
//! as the body of one generated kernel. A device that cannot run a kernel says so
//! ([`crate::Device::exec_fused`] gives `None`); the executor then runs the kernel's
//! elementwise part alone ([`Kernel::split`]) with the reductions as plain primitives, or
//! failing that the region node by node, which compute the same values.

use ir::graph::{BlockId, NodeKind, Type, ValueId};
use ir::{Graph, Op, TensorType};

use crate::Tensor;

/// One step of a [`Kernel`].
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The primitive (elementwise, a `full` of shape `[]`, or a `reduce` over trailing
    /// axes).
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
        let kernel = Kernel {
            inputs,
            steps,
            outputs,
        };
        kernel.reductions_end_rows().then_some(kernel)
    }

    /// Whether the reductions keep the rules of the module doc: each folds trailing axes of
    /// its operand, all fold the same number of them, and no step reads a reduction's
    /// result. The fusion pass only makes such groups; a region written otherwise is run
    /// node by node.
    fn reductions_end_rows(&self) -> bool {
        let mut count = None;
        for step in &self.steps {
            if step.args.iter().any(|&a| self.is_reduction(a)) {
                return false;
            }
            let Op::Reduce { axes, .. } = &step.op else {
                continue;
            };
            let Some(rank) = step
                .args
                .first()
                .and_then(|&a| self.ty(a))
                .map(TensorType::rank)
            else {
                return false;
            };
            let trailing = !axes.is_empty()
                && axes.len() <= rank
                && axes.iter().copied().eq(rank - axes.len()..rank);
            if !trailing || count.is_some_and(|c| c != axes.len()) {
                return false;
            }
            count = Some(axes.len());
        }
        true
    }

    /// The type of register `r`.
    pub fn ty(&self, r: usize) -> Option<&TensorType> {
        match r.checked_sub(self.inputs.len()) {
            None => self.inputs.get(r),
            Some(k) => self.steps.get(k).map(|s| &s.ty),
        }
    }

    /// The reduction that defines register `r`, if a reduction does: its op and operand.
    pub fn reduction(&self, r: usize) -> Option<(ir::ReduceOp, usize)> {
        let step = self.steps.get(r.checked_sub(self.inputs.len())?)?;
        match (&step.op, step.args.as_slice()) {
            (Op::Reduce { op, .. }, &[a]) => Some((*op, a)),
            _ => None,
        }
    }

    /// Whether register `r` is a reduction's result.
    pub fn is_reduction(&self, r: usize) -> bool {
        self.reduction(r).is_some()
    }

    /// How many trailing axes the kernel's reductions fold (the same for all of them), or 0
    /// when it has none.
    pub fn reduced_axes(&self) -> usize {
        self.steps
            .iter()
            .find_map(|s| match &s.op {
                Op::Reduce { axes, .. } => Some(axes.len()),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// The dims of output `i` when the group's elementwise steps run at `dims` (see
    /// [`output_dims`]): `dims` itself, or for a reduction `dims` less its trailing axes (or
    /// with them as 1 under `keepdims`). `None` when there is no such output or `dims` has
    /// too few axes.
    pub fn output_dims(&self, i: usize, dims: &[usize]) -> Option<Vec<usize>> {
        let &r = self.outputs.get(i)?;
        let step = r
            .checked_sub(self.inputs.len())
            .and_then(|k| self.steps.get(k));
        match step.map(|s| &s.op) {
            Some(Op::Reduce { axes, keepdims, .. }) => {
                let kept = dims.len().checked_sub(axes.len())?;
                let mut out = dims[..kept].to_vec();
                if *keepdims {
                    out.resize(dims.len(), 1);
                }
                Some(out)
            }
            _ => Some(dims.to_vec()),
        }
    }

    /// The kernel's elementwise part, for a device that runs that part but not the
    /// reductions (the GPU, or the CPU on rows longer than it folds in one tile); `None`
    /// when the kernel has no reduction.
    pub fn split(&self) -> Option<Split> {
        if self.reduced_axes() == 0 {
            return None;
        }
        // The registers of the part: the inputs, then the steps that are not reductions.
        let mut map: Vec<Option<usize>> = (0..self.inputs.len()).map(Some).collect();
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            if matches!(step.op, Op::Reduce { .. }) {
                map.push(None);
                continue;
            }
            let args = step
                .args
                .iter()
                .map(|&a| map.get(a).copied().flatten())
                .collect::<Option<Vec<_>>>()?;
            map.push(Some(self.inputs.len() + steps.len()));
            steps.push(Step {
                op: step.op.clone(),
                args,
                ty: step.ty.clone(),
            });
        }
        let mut outputs = Vec::with_capacity(self.outputs.len());
        let mut parts = Vec::with_capacity(self.outputs.len());
        for &o in &self.outputs {
            let (reg, part) = match self.reduction(o) {
                Some((_, a)) => {
                    let op = self.steps.get(o - self.inputs.len())?.op.clone();
                    (
                        a,
                        Part::Reduce {
                            op,
                            of: outputs.len(),
                        },
                    )
                }
                None => (o, Part::Output(outputs.len())),
            };
            outputs.push((*map.get(reg)?)?);
            parts.push(part);
        }
        Some(Split {
            kernel: Kernel {
                inputs: self.inputs.clone(),
                steps,
                outputs,
            },
            outputs: parts,
        })
    }
}

/// A kernel with reductions cut in two ([`Kernel::split`]): an elementwise kernel, and the
/// reductions to run on its outputs as plain primitives. Both halves compute what the
/// region's nodes compute, so the outputs are the same.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The elementwise steps, giving the elementwise outputs of the kernel and the operand
    /// of each reduction output, in the order of the kernel's outputs.
    pub kernel: Kernel,
    /// Where each output of the whole kernel comes from.
    pub outputs: Vec<Part>,
}

/// Where an output of a [`Split`] kernel comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// Output `i` of the elementwise kernel.
    Output(usize),
    /// A reduction applied to an output of the elementwise kernel.
    Reduce {
        /// The reduction (an `Op::Reduce`).
        op: Op,
        /// Which output of the elementwise kernel it folds.
        of: usize,
    },
}

/// The dims at which a fused group's elementwise steps run for `inputs`: their broadcast
/// shape, or `None` when they do not broadcast or a dim is not known. Every output but a
/// reduction has these dims ([`Kernel::output_dims`]).
pub fn output_dims<'t>(inputs: impl IntoIterator<Item = &'t Tensor>) -> Option<Vec<usize>> {
    let mut shape = ir::Shape::scalar();
    for t in inputs {
        shape = ir::broadcast_shapes(&shape, &t.ttype().shape).ok()?;
    }
    shape.to_known()
}
