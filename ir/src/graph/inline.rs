//! Inlining: a graph's body copied into the block a [`GraphBuilder`] is building.
//!
//! Staging uses it ([`call`]) to put a graph made elsewhere (the derivative of a function
//! staged on its own and differentiated on the IR, a model's forward) into the graph of the
//! function that called it, as the closed region of a `call` node; the inlining pass
//! (`crate::passes`) splices those regions into their callers ([`splice_calls`]).
//! Every node is re-added through the builder, so its type is checked again and an effect
//! threads the builder's current token: the inlined `print`s and draws take their place in
//! the caller's effect order.
//!
//! The same copy, into a fresh builder and with a [`Rewrite`] deciding what to keep, is how
//! the optimizer's passes (`crate::passes`) rewrite a graph ([`rewrite`]).

use std::cell::RefCell;
use std::collections::HashMap;

use super::{BlockId, BuildError, Graph, GraphBuilder, NodeId, NodeKind, Type, ValueId};
use crate::{Op, TensorType};

/// What a copy changes: nodes dropped, primitives replaced by values already there.
pub(crate) trait Rewrite {
    /// Whether node `n` is left out (its results are never read).
    fn skip(&self, _n: NodeId) -> bool {
        false
    }

    /// The value standing for the primitive `op` on `args` (already copied): one the
    /// builder has, or one the rewrite adds; `None` copies it as it is.
    fn prim(
        &self,
        _b: &mut GraphBuilder,
        _op: &Op,
        _args: &[ValueId],
    ) -> Result<Option<ValueId>, BuildError> {
        Ok(None)
    }

    /// Copies node `n` some other way: `Some(bindings)` pairs values of the original graph
    /// with the values that now stand for them (the rewrite adds what it needs through `b`;
    /// `get` maps a value of the original graph to its copy); `None` copies it as usual.
    fn node(
        &self,
        _b: &mut GraphBuilder,
        _n: NodeId,
        _get: &dyn Fn(ValueId) -> ValueId,
    ) -> Result<Option<Vec<(ValueId, ValueId)>>, BuildError> {
        Ok(None)
    }

    /// Makes the copy's input standing for input `index` of type `t` (the partitioner
    /// gives a device its piece's type).
    fn input(&self, b: &mut GraphBuilder, _index: usize, t: &TensorType) -> ValueId {
        b.input(t.clone())
    }

    /// Runs before node `n` is copied: `(old, new)` pairs rebind values of the original
    /// graph for this node and every later one (the partitioner gathers what a region
    /// reads).
    fn before(
        &self,
        _b: &mut GraphBuilder,
        _n: NodeId,
        _get: &dyn Fn(ValueId) -> ValueId,
    ) -> Result<Vec<(ValueId, ValueId)>, BuildError> {
        Ok(Vec::new())
    }

    /// The copy's outputs, given the copies of the original's tensor outputs.
    fn outputs(
        &self,
        _b: &mut GraphBuilder,
        outs: Vec<ValueId>,
    ) -> Result<Vec<ValueId>, BuildError> {
        Ok(outs)
    }

    /// Whether `call` nodes are spliced into the calling block (the inlining pass) rather
    /// than copied as calls.
    fn splice_calls(&self) -> bool {
        false
    }

    /// A region's copy begins (what it defines is not visible after it ends). A `closed`
    /// region (a fused node's) sees nothing of the blocks around it.
    fn enter(&self, _closed: bool) {}

    /// A region's copy ends.
    fn leave(&self) {}
}

/// The copy that changes nothing.
struct Plain;

impl Rewrite for Plain {}

/// `g` copied node by node through a new builder, as `rw` says. Spans, the token and the
/// inputs and outputs are kept.
pub(crate) fn rewrite(g: &Graph, rw: &dyn Rewrite) -> Result<Graph, BuildError> {
    Ok(copy_with(g, rw, &[], &[])?.0)
}

/// `g` copied unchanged, with `extra` (values of its body block) as further outputs after
/// its own: how a checker observes intermediate values of a run. Values inside regions are
/// not visible outside them and cannot be extra outputs (the build fails).
pub fn with_outputs(g: &Graph, extra: &[ValueId]) -> Result<Graph, BuildError> {
    Ok(copy_with(g, &Plain, extra, &[])?.0)
}

/// `g` copied, and the values of the copy that stand for `keep` (tensor values of `g`'s
/// body block).
fn copy_with(
    g: &Graph,
    rw: &dyn Rewrite,
    extra: &[ValueId],
    keep: &[ValueId],
) -> Result<(Graph, Vec<ValueId>), BuildError> {
    let mut b = GraphBuilder::new(g.name());
    let cx = Inliner {
        g,
        map: RefCell::new(HashMap::new()),
        rw,
    };
    for (i, &x) in g.inputs().iter().enumerate() {
        match g.ty(x) {
            Type::Token => {
                b.token_input();
            }
            Type::Tensor(t) => {
                let v = rw.input(&mut b, i, t);
                cx.set(x, v);
            }
        }
    }
    cx.block(&mut b, g.body())?;
    let mut outs = rw.outputs(&mut b, cx.tensors(g.outputs()))?;
    outs.extend(extra.iter().map(|&v| cx.get(v)));
    let kept = keep.iter().map(|&v| cx.get(v)).collect();
    Ok((b.finish(&outs)?, kept))
}

/// Copies `g`'s body into `b`'s current block with `g`'s tensor inputs bound to `inputs`
/// (its token input, if any, is `b`'s current token) and gives the values of `g`'s tensor
/// outputs. Node spans are kept.
pub fn inline(
    b: &mut GraphBuilder,
    g: &Graph,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, BuildError> {
    let cx = Inliner {
        g,
        map: RefCell::new(HashMap::new()),
        rw: &Plain,
    };
    let mut given = inputs.iter();
    for &x in g.inputs() {
        if g.ty(x).is_token() {
            continue;
        }
        let Some(&new) = given.next() else {
            return Err(BuildError::OutOfScope {
                op: "inline",
                index: 0,
                span: b.span(),
            });
        };
        cx.set(x, new);
    }
    cx.block(b, g.body())?;
    Ok(g.outputs()
        .iter()
        .filter(|&&v| !g.ty(v).is_token())
        .map(|&v| cx.get(v))
        .collect())
}

/// Adds to `b`'s current block a `call` of `g` on `inputs` (its tensor inputs, in order):
/// one node whose closed region is a copy of `g`'s body, threading `b`'s current token
/// when `g` performs effects. Gives the values of `g`'s tensor outputs. Staging calls a
/// graph made elsewhere this way; the inlining pass later splices the copy in.
///
/// A staged graph takes the token whether or not it performs effects; a call of one that
/// performs none is left without it, so that it is pure (DCE may drop it, nothing orders
/// it after the caller's prints).
pub fn call(
    b: &mut GraphBuilder,
    g: &Graph,
    inputs: &[ValueId],
) -> Result<Vec<ValueId>, BuildError> {
    let effects = g.walk(g.body()).into_iter().any(|n| match &g.node(n).kind {
        NodeKind::Prim(op) => super::is_effectful(op.prim()),
        NodeKind::Assert { .. } => true,
        _ => false,
    });
    b.call(g.name(), inputs, effects, |b, args| inline(b, g, args))
}

/// `g` with every `call` node replaced by a copy of its body (the inlining pass), and the
/// values of the result that stand for `keep` (tensor values of `g`'s body block: what a
/// caller holding ids of `g` needs to find again, such as the values `shard` hints name).
pub fn splice_calls(g: &Graph, keep: &[ValueId]) -> Result<(Graph, Vec<ValueId>), BuildError> {
    struct Splice;
    impl Rewrite for Splice {
        fn splice_calls(&self) -> bool {
            true
        }
    }
    copy_with(g, &Splice, &[], keep)
}

struct Inliner<'g> {
    g: &'g Graph,
    /// Value of `g` → the value that holds it where the builder is now.
    map: RefCell<HashMap<ValueId, ValueId>>,
    rw: &'g dyn Rewrite,
}

impl Inliner<'_> {
    fn get(&self, v: ValueId) -> ValueId {
        self.map.borrow().get(&v).copied().unwrap_or(v)
    }

    fn set(&self, old: ValueId, new: ValueId) {
        self.map.borrow_mut().insert(old, new);
    }

    fn tensors(&self, vs: &[ValueId]) -> Vec<ValueId> {
        vs.iter()
            .filter(|&&v| !self.g.ty(v).is_token())
            .map(|&v| self.get(v))
            .collect()
    }

    /// Maps a node's non-token results to `outs`, in order.
    fn results(&self, results: &[ValueId], outs: &[ValueId]) {
        let mut outs = outs.iter();
        for &r in results {
            if !self.g.ty(r).is_token()
                && let Some(&o) = outs.next()
            {
                self.set(r, o);
            }
        }
    }

    fn block(&self, b: &mut GraphBuilder, block: BlockId) -> Result<(), BuildError> {
        let g = self.g;
        for &n in &g.block(block).nodes {
            if self.rw.skip(n) {
                continue;
            }
            let node = g.node(n);
            b.set_span(node.span);
            for (old, new) in self.rw.before(b, n, &|v| self.get(v))? {
                self.set(old, new);
            }
            if let Some(bindings) = self.rw.node(b, n, &|v| self.get(v))? {
                for (old, new) in bindings {
                    self.set(old, new);
                }
                continue;
            }
            match &node.kind {
                NodeKind::Prim(op) => {
                    let args = self.tensors(&node.operands);
                    let v = match self.rw.prim(b, op, &args)? {
                        Some(v) => v,
                        None => b.op(op, &args)?,
                    };
                    self.results(&node.results, &[v]);
                }
                NodeKind::Assert { message } => {
                    let args = self.tensors(&node.operands);
                    if let Some(&c) = args.first() {
                        b.assert(c, message)?;
                    }
                }
                NodeKind::Collective(c) => {
                    let args = self.tensors(&node.operands);
                    let (Some(&x), Some(Type::Tensor(out))) =
                        (args.first(), node.results.first().map(|&r| g.ty(r)))
                    else {
                        return Err(BuildError::Unfinished);
                    };
                    let v = b.collective(*c, x, out.clone())?;
                    self.results(&node.results, &[v]);
                }
                NodeKind::If {
                    then_block,
                    else_block,
                } => {
                    let all = self.tensors(&node.operands);
                    let Some((&cond, args)) = all.split_first() else {
                        continue;
                    };
                    let outs = b.if_(
                        cond,
                        args,
                        |b, a| self.region(b, *then_block, &[], a),
                        |b, a| self.region(b, *else_block, &[], a),
                    )?;
                    self.results(&node.results, &outs);
                }
                NodeKind::While { cond, body } => {
                    let init = self.tensors(&node.operands);
                    let outs = b.while_(
                        &init,
                        |b, a| {
                            let ys = self.region(b, *cond, &[], a)?;
                            ys.first().copied().ok_or(BuildError::Unfinished)
                        },
                        |b, a| self.region(b, *body, &[], a),
                    )?;
                    self.results(&node.results, &outs);
                }
                NodeKind::For { body } => {
                    let all = self.tensors(&node.operands);
                    if all.len() < 3 {
                        continue;
                    }
                    let outs = b.for_(all[0], all[1], all[2], &all[3..], |b, i, a| {
                        self.region(b, *body, &[i], a)
                    })?;
                    self.results(&node.results, &outs);
                }
                NodeKind::Fused { body } => {
                    let inputs = self.tensors(&node.operands);
                    let outs = b.fused(&inputs, |b, a| self.region(b, *body, &[], a))?;
                    self.results(&node.results, &outs);
                }
                NodeKind::Call { callee, body } => {
                    let inputs = self.tensors(&node.operands);
                    let outs = if self.rw.splice_calls() {
                        self.splice(b, *body, &inputs)?
                    } else {
                        let effects = node.operands.iter().any(|&v| g.ty(v).is_token());
                        b.call(callee, &inputs, effects, |b, a| {
                            self.region(b, *body, &[], a)
                        })?
                    };
                    self.results(&node.results, &outs);
                }
            }
        }
        Ok(())
    }

    /// Copies a call's region into the current block: its arguments bound to `args` (the
    /// token argument to nothing, since the builder threads its own token through the
    /// copied effects), its nodes copied, its tensor yields given.
    fn splice(
        &self,
        b: &mut GraphBuilder,
        block: BlockId,
        args: &[ValueId],
    ) -> Result<Vec<ValueId>, BuildError> {
        let g = self.g;
        let mut given = args.iter();
        for &a in &g.block(block).args {
            if g.ty(a).is_token() {
                continue;
            }
            if let Some(&n) = given.next() {
                self.set(a, n);
            }
        }
        self.block(b, block)?;
        Ok(self.tensors(&g.block(block).yields))
    }

    /// Inside a region the builder opened: binds the block's arguments (`lead` first, then
    /// `args`; the token is the region's own), copies its nodes, gives its tensor yields.
    fn region(
        &self,
        b: &mut GraphBuilder,
        block: BlockId,
        lead: &[ValueId],
        args: &[ValueId],
    ) -> Result<Vec<ValueId>, BuildError> {
        let g = self.g;
        let mut given = lead.iter().chain(args.iter());
        for &a in &g.block(block).args {
            if g.ty(a).is_token() {
                continue;
            }
            if let Some(&n) = given.next() {
                self.set(a, n);
            }
        }
        let closed = g.block(block).parent.is_some_and(|n| {
            matches!(
                g.node(n).kind,
                NodeKind::Fused { .. } | NodeKind::Call { .. }
            )
        });
        self.rw.enter(closed);
        let r = self.block(b, block);
        self.rw.leave();
        r?;
        Ok(self.tensors(&g.block(block).yields))
    }
}
