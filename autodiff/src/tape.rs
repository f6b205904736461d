//! The eager reverse-mode tape: what a gradient needs to remember of a computation, and
//! the backward sweep that turns it into gradients.
//!
//! The tape knows nothing of devices or of the language. Its user (the interpreter)
//! decides which values are traced: it [`watch`](Tape::watch)es the inputs of a
//! differentiated function and [`record`](Tape::record)s every primitive applied to a traced
//! value, naming each operand by the node that made it (or none, for a constant). The
//! backward sweep then walks the nodes in reverse, asks [`crate::rules::vjp`] for the
//! cotangents of each node's operands, and adds them up with [`Emit::add`]. Because the sweep
//! applies primitives only through an [`Emit`], the gradient computation can itself be
//! recorded by an outer tape, which is how gradients of gradients work.
//!
//! Memory: a node keeps only what its VJP rule can read. The VJP of a linear map does not
//! depend on the point where it is taken, so for linear primitives (additions, negation,
//! sums, and the movement primitives) the tape keeps only the operands' types, and rebuilds
//! stand-ins of the right type (a broadcast NaN scalar, costing one element) for the rule;
//! the VJP of a bilinear primitive (`mul`, `matmul`, `conv2d`) needs its operands but not its
//! result. Everything else keeps its operands and result. A value the rule reads is thus
//! never a stand-in, and if a rule ever did read one, its NaN would show in the gradient
//! rather than a silently wrong number. The sweep frees each node and each cotangent as
//! soon as it has been used, when the tape is consumed.

use ir::{BinaryOp, Emit, Op, ReduceOp, TensorType, UnaryOp};

/// A node of a [`Tape`], by position.
pub type NodeId = usize;

/// What a node keeps of a value.
#[derive(Clone, Debug)]
enum Saved<V> {
    /// The value itself: its rule reads it.
    Value(V),
    /// Only its type: the rule reads no element of it.
    Type(TensorType),
}

/// One entry of the tape.
#[derive(Clone, Debug)]
enum Node<V> {
    /// An input being differentiated with respect to: the `k`th watched one.
    Leaf(usize),
    /// A primitive applied to some traced operands.
    Apply {
        /// The primitive and its attributes.
        op: Op,
        /// The node that made each operand, or `None` for a constant.
        parents: Vec<Option<NodeId>>,
        /// The operands, as far as the rule needs them.
        inputs: Vec<Saved<V>>,
        /// The result, as far as the rule needs it.
        output: Saved<V>,
    },
}

/// A reverse-mode tape over values `V` (device tensors in the interpreter).
#[derive(Clone, Debug)]
pub struct Tape<V> {
    nodes: Vec<Node<V>>,
    leaves: usize,
}

impl<V> Default for Tape<V> {
    fn default() -> Tape<V> {
        Tape {
            nodes: Vec::new(),
            leaves: 0,
        }
    }
}

/// What a primitive's VJP rule reads: (its operands, its result).
fn needs(op: &Op) -> (bool, bool) {
    match op {
        Op::Unary { op: UnaryOp::Neg }
        | Op::Binary {
            op: BinaryOp::Add | BinaryOp::Sub,
        }
        | Op::Reduce {
            op: ReduceOp::Sum, ..
        }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Pad { .. } => (false, false),
        // Linear in the gathered tensor, but the indices say where the cotangent goes.
        Op::Gather { .. } | Op::ScatterAdd { .. } => (true, false),
        Op::Binary { op: BinaryOp::Mul } | Op::MatMul { .. } | Op::Conv2d { .. } => (true, false),
        _ => (true, true),
    }
}

impl<V: Clone> Tape<V> {
    /// An empty tape.
    pub fn new() -> Tape<V> {
        Tape::default()
    }

    /// Adds an input to differentiate with respect to; [`Tape::backward`] returns its
    /// cotangent in the position of this call among the `watch` calls.
    pub fn watch(&mut self) -> NodeId {
        self.nodes.push(Node::Leaf(self.leaves));
        self.leaves += 1;
        self.nodes.len() - 1
    }

    /// How many inputs are watched.
    pub fn watched(&self) -> usize {
        self.leaves
    }

    /// How many nodes (watched inputs and applied primitives) the tape holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when nothing has been watched or recorded.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Records that `op` was applied to `inputs` (made by the nodes `parents`, `None` for a
    /// constant) and gave `output`; `ttype` tells a value's type. Returns the result's node.
    pub fn record(
        &mut self,
        op: &Op,
        parents: Vec<Option<NodeId>>,
        inputs: &[&V],
        output: &V,
        ttype: impl Fn(&V) -> TensorType,
    ) -> NodeId {
        let (keep_in, keep_out) = needs(op);
        let save = |v: &V, keep: bool| {
            if keep {
                Saved::Value(v.clone())
            } else {
                Saved::Type(ttype(v))
            }
        };
        let inputs = inputs.iter().map(|v| save(v, keep_in)).collect();
        let output = save(output, keep_out);
        self.nodes.push(Node::Apply {
            op: op.clone(),
            parents,
            inputs,
            output,
        });
        self.nodes.len() - 1
    }

    /// The cotangents of the watched inputs (in `watch` order; `None` for an input the
    /// output does not depend on) of the node `output` seeded with `seed`, consuming the
    /// tape so that each node's values are freed as soon as the sweep has passed it.
    pub fn backward<E: Emit<Val = V>>(
        mut self,
        e: &mut E,
        output: NodeId,
        seed: V,
    ) -> Result<Vec<Option<V>>, E::Err> {
        let nodes = std::mem::take(&mut self.nodes);
        let mut slots: Vec<Option<Node<V>>> = nodes.into_iter().map(Some).collect();
        sweep(e, self.leaves, output, seed, |i| {
            slots.get_mut(i).and_then(Option::take)
        })
    }

    /// Like [`Tape::backward`] but keeps the tape, for a pullback called more than once.
    pub fn backward_keep<E: Emit<Val = V>>(
        &self,
        e: &mut E,
        output: NodeId,
        seed: V,
    ) -> Result<Vec<Option<V>>, E::Err> {
        sweep(e, self.leaves, output, seed, |i| self.nodes.get(i).cloned())
    }
}

/// The backward sweep from node `output` down, taking each node from `node`.
fn sweep<E: Emit>(
    e: &mut E,
    leaves: usize,
    output: NodeId,
    seed: E::Val,
    mut node: impl FnMut(NodeId) -> Option<Node<E::Val>>,
) -> Result<Vec<Option<E::Val>>, E::Err> {
    let mut grads: Vec<Option<E::Val>> = vec![None; leaves];
    let mut cts: Vec<Option<E::Val>> = vec![None; output + 1];
    let mut stand_ins = StandIns::default();
    if let Some(slot) = cts.get_mut(output) {
        *slot = Some(seed);
    }
    for i in (0..=output).rev() {
        // A node no cotangent reached contributes nothing; it is dropped unread.
        let Some(ct) = cts.get_mut(i).and_then(Option::take) else {
            continue;
        };
        match node(i) {
            None => {}
            Some(Node::Leaf(k)) => {
                if let Some(g) = grads.get_mut(k) {
                    *g = Some(ct);
                }
            }
            Some(Node::Apply {
                op,
                parents,
                inputs,
                output,
            }) => {
                if parents.iter().all(Option::is_none) {
                    continue;
                }
                let inputs = inputs
                    .into_iter()
                    .map(|s| restore(e, &mut stand_ins, s))
                    .collect::<Result<Vec<_>, _>>()?;
                let output = restore(e, &mut stand_ins, output)?;
                let needed: Vec<bool> = parents.iter().map(Option::is_some).collect();
                let contribs = crate::rules::vjp_some(e, &op, &inputs, &output, &ct, &needed)?;
                drop((inputs, output, ct));
                for (parent, c) in parents.into_iter().zip(contribs) {
                    let (Some(p), Some(c)) = (parent, c) else {
                        continue;
                    };
                    if let Some(slot) = cts.get_mut(p) {
                        *slot = Some(match slot.take() {
                            Some(acc) => e.add(&acc, &c)?,
                            None => c,
                        });
                    }
                }
            }
        }
    }
    Ok(grads)
}

/// The stand-ins one sweep has made, by type. A network has few distinct types (a chain of
/// adds has one), so a short list searched in order serves every linear node of a sweep
/// with a handful of stand-ins; past its cap a new type simply gets a fresh one.
struct StandIns<V>(Vec<(TensorType, V)>);

impl<V> Default for StandIns<V> {
    fn default() -> Self {
        StandIns(Vec::new())
    }
}

const STAND_INS_CAP: usize = 32;

/// A saved value, or a stand-in of its type (see [`Emit::placeholder`]).
fn restore<E: Emit>(
    e: &mut E,
    stand_ins: &mut StandIns<E::Val>,
    s: Saved<E::Val>,
) -> Result<E::Val, E::Err> {
    match s {
        Saved::Value(v) => Ok(v),
        Saved::Type(t) => {
            if let Some((_, v)) = stand_ins.0.iter().find(|(k, _)| *k == t) {
                return Ok(v.clone());
            }
            let v = e.placeholder(&t)?;
            if stand_ins.0.len() < STAND_INS_CAP {
                stand_ins.0.push((t, v.clone()));
            }
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tape;
    use ir::{BinaryOp, DType, Emit, Op, TensorType};

    /// An `Emit` over f64 scalars that counts the primitives it applies.
    struct Scalars(usize);

    impl Emit for Scalars {
        type Val = f64;
        type Err = String;

        fn emit(&mut self, op: &Op, args: &[&f64]) -> Result<f64, String> {
            self.0 += 1;
            match (op, args) {
                (Op::Binary { op: BinaryOp::Add }, [a, b]) => Ok(**a + **b),
                (Op::Binary { op: BinaryOp::Mul }, [a, b]) => Ok(**a * **b),
                (Op::Full { value, .. }, []) => Ok(*value),
                (Op::Broadcast { .. }, [a]) => Ok(**a),
                _ => Err(format!("unsupported {op:?}")),
            }
        }

        fn ttype(&self, _: &f64) -> TensorType {
            TensorType::known(DType::F64, &[])
        }
    }

    fn mul() -> Op {
        Op::Binary { op: BinaryOp::Mul }
    }

    fn add() -> Op {
        Op::Binary { op: BinaryOp::Add }
    }

    #[test]
    fn sums_the_paths_to_each_input() -> Result<(), String> {
        // f(x, y) = x * y + x at (3, 5): df/dx = y + 1 = 6, df/dy = x = 3.
        let (x, y) = (3.0, 5.0);
        let mut tape = Tape::new();
        let nx = tape.watch();
        let ny = tape.watch();
        let ty = |_: &f64| TensorType::known(DType::F64, &[]);
        let xy = x * y;
        let n1 = tape.record(&mul(), vec![Some(nx), Some(ny)], &[&x, &y], &xy, ty);
        let out = xy + x;
        let n2 = tape.record(&add(), vec![Some(n1), Some(nx)], &[&xy, &x], &out, ty);
        let mut e = Scalars(0);
        let kept = tape.backward_keep(&mut e, n2, 1.0)?;
        assert_eq!(kept, vec![Some(6.0), Some(3.0)]);
        let g = tape.backward(&mut e, n2, 2.0)?;
        assert_eq!(g, vec![Some(12.0), Some(6.0)]);
        Ok(())
    }

    #[test]
    fn constants_and_unreached_inputs_get_nothing() -> Result<(), String> {
        // f(x, y) = 4 * x; y is watched but unused.
        let (c, x) = (4.0, 2.0);
        let mut tape = Tape::new();
        let nx = tape.watch();
        let _ny = tape.watch();
        let ty = |_: &f64| TensorType::known(DType::F64, &[]);
        let n = tape.record(&mul(), vec![None, Some(nx)], &[&c, &x], &8.0, ty);
        let g = tape.backward(&mut Scalars(0), n, 1.0)?;
        assert_eq!(g, vec![Some(4.0), None]);
        Ok(())
    }

    #[test]
    fn linear_nodes_keep_no_values() {
        // A 1,000-step chain of additions keeps types, not values.
        let mut tape: Tape<f64> = Tape::new();
        let mut prev = tape.watch();
        let ty = |_: &f64| TensorType::known(DType::F64, &[]);
        for _ in 0..1000 {
            prev = tape.record(&add(), vec![Some(prev), None], &[&1.0, &1.0], &2.0, ty);
        }
        let kept = tape
            .nodes
            .iter()
            .filter(|n| {
                matches!(n, super::Node::Apply { inputs, output, .. }
                    if inputs.iter().chain([output]).any(|s| matches!(s, super::Saved::Value(_))))
            })
            .count();
        assert_eq!(kept, 0);
    }
}
