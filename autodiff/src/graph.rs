//! Reverse mode on the IR: the gradient of a staged function as another staged function.
//!
//! [`value_and_grad`] turns a graph `f(x0, x1, ...) -> (y, ...)` whose first output `y` is a
//! float scalar into a graph with the same inputs whose outputs are `f`'s outputs followed
//! by `∂y/∂x_i` for each requested input. It uses the very rules of the eager tape
//! ([`crate::rules::vjp_some`]), emitted through [`GraphBuilder`], which implements
//! `ir::Emit`: both modes differentiate identically by construction.
//!
//! How the new graph is made:
//! 1. the forward graph is copied node by node (the builder re-checks every type);
//! 2. an activity analysis marks the values that depend on a differentiated input, so a
//!    rule is asked only for the cotangents of operands that need one;
//! 3. the body's nodes are swept in reverse, seeded with `1` for `y`. Every node made for a
//!    node's derivative carries that node's span, so an error in the backward pass names
//!    the user's line.
//!
//! Control flow. The reverse of an `If` is an `If` on the same condition: each branch
//! recomputes its forward values inside the new region, then sweeps them in reverse and
//! yields the cotangents of the values the branch read (its block arguments and the values
//! of enclosing blocks it used). The reverse of a `for` runs its iterations backwards and
//! recomputes each one's carried values from the start (checkpointing in its simplest
//! form: constant memory, time quadratic in the trip count). A `while` on the path from a
//! differentiated input to `y` is copied with an iteration counter among its carried values,
//! and reversed the same way over that many iterations.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;

use ir::graph::{
    BlockId, BuildError, Graph, GraphBuilder, NodeKind, Span, Type, ValueDef, ValueId,
};
use ir::{Emit, Op, Prim};

use crate::rules::vjp_some;

/// Why a graph could not be differentiated.
#[derive(Clone, Debug, PartialEq)]
pub enum GradError {
    /// Building the new graph failed (a rule emitted an ill-typed node: a bug, reported with
    /// its span rather than a panic).
    Build(BuildError),
    /// The first output is not a float scalar.
    NotScalar {
        /// Its type, printed.
        found: String,
    },
    /// A requested input does not exist or is not a float tensor.
    Wrt {
        /// The input position asked for.
        index: usize,
        /// Why it cannot be differentiated.
        why: String,
    },
    /// A loop lies between a differentiated input and the output.
    Loop {
        /// The loop's span.
        span: Span,
    },
    /// A `while` whose condition region passes on values other than its arguments (the
    /// builder's `while`, which the copy uses, passes them on unchanged).
    WhilePasses {
        /// The loop's span.
        span: Span,
    },
    /// A fused node or a call reached differentiation. The entry points flatten a graph
    /// first (`ir::passes::flatten`), so this is a bug if it shows.
    Fused {
        /// The fused node's span.
        span: Span,
    },
    /// A collective reached differentiation: graphs are differentiated before they are
    /// partitioned over a mesh, so this is a bug if it shows.
    Collective {
        /// The collective's span.
        span: Span,
    },
}

impl fmt::Display for GradError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GradError::Build(e) => write!(f, "building the gradient graph failed: {e}"),
            GradError::NotScalar { found } => write!(
                f,
                "the gradient needs a function whose first result is a float scalar, found {found}"
            ),
            GradError::Wrt { index, why } => {
                write!(
                    f,
                    "cannot differentiate with respect to input {index}: {why}"
                )
            }
            GradError::WhilePasses { span } => write!(
                f,
                "a while whose condition passes on other values than its arguments cannot be copied yet (the loop at {}..{})",
                span.start, span.end
            ),
            GradError::Fused { span } => write!(
                f,
                "a fused group or call cannot be differentiated; flatten the graph first (the node at {}..{})",
                span.start, span.end
            ),
            GradError::Collective { span } => write!(
                f,
                "a partitioned graph cannot be differentiated; differentiate before partitioning (the collective at {}..{})",
                span.start, span.end
            ),
            GradError::Loop { span } => write!(
                f,
                "reverse mode through a loop is not staged yet (the loop at {}..{})",
                span.start, span.end
            ),
        }
    }
}

impl std::error::Error for GradError {}

impl From<BuildError> for GradError {
    fn from(e: BuildError) -> GradError {
        GradError::Build(e)
    }
}

type R<T> = Result<T, GradError>;

/// The graph of `(f's outputs..., ∂y/∂x_wrt[0], ∂y/∂x_wrt[1], ...)`, `y` being `f`'s first
/// (non-token) output. See the module doc.
pub fn value_and_grad(f: &Graph, wrt: &[usize]) -> R<Graph> {
    let flat;
    let f = if ir::passes::is_flat(f) {
        f
    } else {
        flat = ir::passes::flatten(f)?;
        &flat
    };
    let inputs: Vec<ValueId> = f.inputs().to_vec();
    let tensor_inputs: Vec<ValueId> = inputs
        .iter()
        .copied()
        .filter(|&v| !f.ty(v).is_token())
        .collect();
    let outputs: Vec<ValueId> = f
        .outputs()
        .iter()
        .copied()
        .filter(|&v| !f.ty(v).is_token())
        .collect();
    let Some(&y) = outputs.first() else {
        return Err(GradError::NotScalar {
            found: "no result".to_string(),
        });
    };
    match f.ty(y) {
        Type::Tensor(t) if t.dtype.is_float() && t.rank() == 0 => {}
        other => {
            return Err(GradError::NotScalar {
                found: other.to_string(),
            });
        }
    }
    let mut wrt_values = Vec::with_capacity(wrt.len());
    for &i in wrt {
        let Some(&x) = tensor_inputs.get(i) else {
            return Err(GradError::Wrt {
                index: i,
                why: format!("the function has {} inputs", tensor_inputs.len()),
            });
        };
        if !is_float(f, x) {
            return Err(GradError::Wrt {
                index: i,
                why: format!("it is {}, and only floats have gradients", f.ty(x)),
            });
        }
        wrt_values.push(x);
    }

    let varied = activity(f, &wrt_values);
    let mut b = GraphBuilder::new(&format!("{}_grad", f.name()));
    let map = RefCell::new(HashMap::new());
    for &x in &inputs {
        let new = match f.ty(x) {
            Type::Token => b.token_input(),
            Type::Tensor(t) => b.input(t.clone()),
        };
        map.borrow_mut().insert(x, new);
    }
    let cx = Cx {
        f,
        varied,
        map,
        replay: Cell::new(false),
        pending: RefCell::new(None),
        counts: RefCell::new(HashMap::new()),
    };
    let swept = (|| {
        cx.copy_block(&mut b, f.body())?;
        let new_y = cx.get(y);
        let seed = b.ones_like(&new_y)?;
        let mut seeds = HashMap::new();
        seeds.insert(y, seed);
        cx.reverse_block(&mut b, f.body(), seeds, &wrt_values)
    })();
    let grads = match swept {
        Ok(g) => g,
        Err(e) => return Err(cx.pending.take().unwrap_or(e)),
    };

    let mut outs: Vec<ValueId> = outputs.iter().map(|&v| cx.get(v)).collect();
    outs.extend(grads);
    Ok(b.finish(&outs)?)
}

fn is_float(f: &Graph, v: ValueId) -> bool {
    matches!(f.ty(v), Type::Tensor(t) if t.dtype.is_float())
}

/// The float values of `f` that depend on one of `wrt` (through any node, including the
/// values of enclosing blocks that a region reads).
fn activity(f: &Graph, wrt: &[ValueId]) -> HashSet<ValueId> {
    let mut varied: HashSet<ValueId> = wrt.iter().copied().collect();
    // Regions may read values of enclosing blocks, and loops feed results back into their
    // block arguments, so iterate to a fixed point (few rounds: each adds whole chains).
    loop {
        let before = varied.len();
        for n in f.walk(f.body()) {
            let node = f.node(n);
            let mut reads: Vec<ValueId> = node.operands.clone();
            for r in node.kind.regions() {
                reads.extend(outer_reads(f, r));
                reads.extend(f.block(r).yields.iter().copied());
            }
            if reads.iter().any(|v| varied.contains(v)) {
                for &r in &node.results {
                    if is_float(f, r) {
                        varied.insert(r);
                    }
                }
                // Block arguments of regions take the node's operands (and, for loops,
                // the carried values): mark the float ones.
                for r in node.kind.regions() {
                    for &a in &f.block(r).args {
                        if is_float(f, a) {
                            varied.insert(a);
                        }
                    }
                }
            }
        }
        if varied.len() == before {
            return varied;
        }
    }
}

/// The values that the nodes of `block` (and its nested regions) read but that are
/// defined outside it, in order of first use.
fn outer_reads(f: &Graph, block: BlockId) -> Vec<ValueId> {
    let inside = |v: ValueId| -> bool {
        let mut b = match f.value(v).def {
            ValueDef::Arg { block, .. } => block,
            ValueDef::Result { node, .. } => f.node(node).block,
        };
        loop {
            if b == block {
                return true;
            }
            match f.block(b).parent {
                Some(n) => b = f.node(n).block,
                None => return false,
            }
        }
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut consider = |v: ValueId| {
        if !inside(v) && seen.insert(v) {
            out.push(v);
        }
    };
    for n in f.walk(block) {
        for &v in &f.node(n).operands {
            consider(v);
        }
        for r in f.node(n).kind.regions() {
            for &v in &f.block(r).yields {
                consider(v);
            }
        }
    }
    for &v in &f.block(block).yields {
        consider(v);
    }
    out
}

/// The differentiation of one graph in progress.
struct Cx<'g> {
    f: &'g Graph,
    varied: HashSet<ValueId>,
    /// Old value → the new graph's value that holds it where the builder is now.
    map: RefCell<HashMap<ValueId, ValueId>>,
    /// True while a branch is recomputed for its reverse: its `print`s and assertions
    /// already happened in the forward pass and are not repeated.
    replay: Cell<bool>,
    /// A refusal raised inside a region, reported instead of the build error it became.
    pending: RefCell<Option<GradError>>,
    /// For each `while` on the gradient path, the new graph's count of the iterations it
    /// ran (the forward copy carries a counter), which its reverse needs.
    counts: RefCell<HashMap<ir::graph::NodeId, ValueId>>,
}

impl Cx<'_> {
    fn get(&self, v: ValueId) -> ValueId {
        // Every old value is mapped before use: the copy walks blocks in order, and a
        // region's reads were mapped by the enclosing block first.
        self.map.borrow().get(&v).copied().unwrap_or(v)
    }

    fn set(&self, old: ValueId, new: ValueId) {
        self.map.borrow_mut().insert(old, new);
    }

    /// Copies the nodes of `block` into the builder's current block.
    fn copy_block(&self, b: &mut GraphBuilder, block: BlockId) -> R<()> {
        let f = self.f;
        for &n in &f.block(block).nodes {
            let node = f.node(n);
            b.set_span(node.span);
            let tensors = |vs: &[ValueId]| -> Vec<ValueId> {
                vs.iter()
                    .filter(|&&v| !f.ty(v).is_token())
                    .map(|&v| self.get(v))
                    .collect()
            };
            let token_results = |b: &GraphBuilder| {
                for &r in &node.results {
                    if f.ty(r).is_token()
                        && let Some(t) = b.current_token()
                    {
                        self.set(r, t);
                    }
                }
            };
            match &node.kind {
                NodeKind::Prim(op) if self.replay.get() && op.prim() == Prim::Print => {
                    // The value passes through; the text was shown by the forward pass.
                    let args = tensors(&node.operands);
                    if let (Some(&r), Some(&a)) = (
                        node.results.iter().find(|&&r| !f.ty(r).is_token()),
                        args.first(),
                    ) {
                        self.set(r, a);
                    }
                    token_results(b);
                }
                NodeKind::Assert { .. } if self.replay.get() => token_results(b),
                NodeKind::Prim(op) => {
                    let v = b.op(op, &tensors(&node.operands))?;
                    token_results(b);
                    if let Some(&r) = node.results.iter().find(|&&r| !f.ty(r).is_token()) {
                        self.set(r, v);
                    }
                }
                NodeKind::Assert { message } => {
                    let args = tensors(&node.operands);
                    let cond = args
                        .first()
                        .copied()
                        .unwrap_or_else(|| self.get(node.operands[0]));
                    b.assert(cond, message)?;
                    token_results(b);
                }
                NodeKind::If {
                    then_block,
                    else_block,
                } => {
                    let all = tensors(&node.operands);
                    let (cond, args) = (all[0], &all[1..]);
                    let outs = b.if_(
                        cond,
                        args,
                        |b, a| self.copy_region(b, *then_block, &[], a),
                        |b, a| self.copy_region(b, *else_block, &[], a),
                    )?;
                    self.set_results(b, node, &outs);
                }
                NodeKind::While { cond, body } => {
                    // The builder's `while` passes the condition region's arguments on
                    // unchanged; a region that passes on other values cannot be rebuilt.
                    let cb = f.block(*cond);
                    let args: Vec<ValueId> = cb
                        .args
                        .iter()
                        .copied()
                        .filter(|&v| !f.ty(v).is_token())
                        .collect();
                    let passed: Vec<ValueId> = cb
                        .yields
                        .iter()
                        .copied()
                        .filter(|&v| !f.ty(v).is_token())
                        .skip(1)
                        .collect();
                    if passed != args {
                        return Err(GradError::WhilePasses { span: node.span });
                    }
                    let init = tensors(&node.operands);
                    if node.results.iter().any(|r| self.varied.contains(r)) {
                        // On the gradient path: carry an iteration counter for the reverse.
                        let zero = b.scalar(ir::DType::I64, 0.0)?;
                        let mut counted = vec![zero];
                        counted.extend(&init);
                        let outs = b.while_(
                            &counted,
                            |b, a| {
                                let ys = self.copy_region(b, *cond, &[], &a[1..])?;
                                Ok(ys[0])
                            },
                            |b, a| {
                                let one = b.scalar(ir::DType::I64, 1.0)?;
                                let mut next = vec![b.add(&a[0], &one)?];
                                next.extend(self.copy_region(b, *body, &[], &a[1..])?);
                                Ok(next)
                            },
                        )?;
                        self.counts.borrow_mut().insert(n, outs[0]);
                        self.set_results(b, node, &outs[1..]);
                    } else {
                        let outs = b.while_(
                            &init,
                            |b, a| {
                                let ys = self.copy_region(b, *cond, &[], a)?;
                                Ok(ys[0])
                            },
                            |b, a| self.copy_region(b, *body, &[], a),
                        )?;
                        self.set_results(b, node, &outs);
                    }
                }
                NodeKind::Fused { .. } | NodeKind::Call { .. } => {
                    return Err(GradError::Fused { span: node.span });
                }
                NodeKind::Collective(_) => return Err(GradError::Collective { span: node.span }),
                NodeKind::For { body } => {
                    let all = tensors(&node.operands);
                    let (start, stop, step, init) = (all[0], all[1], all[2], &all[3..]);
                    let outs = b.for_(start, stop, step, init, |b, i, a| {
                        self.copy_region(b, *body, &[i], a)
                    })?;
                    self.set_results(b, node, &outs);
                }
            }
        }
        Ok(())
    }

    /// Maps a control-flow node's results: the token (if any) to the builder's current one,
    /// the others in order to `outs`.
    fn set_results(&self, b: &GraphBuilder, node: &ir::graph::Node, outs: &[ValueId]) {
        let mut outs = outs.iter();
        for &r in &node.results {
            if self.f.ty(r).is_token() {
                if let Some(t) = b.current_token() {
                    self.set(r, t);
                }
            } else if let Some(&o) = outs.next() {
                self.set(r, o);
            }
        }
    }

    /// Inside a region the builder has opened: binds the old block's arguments (`lead`
    /// then the non-token ones to `args`, the token to the region's current token), copies
    /// its nodes and gives its non-token yields.
    fn copy_region(
        &self,
        b: &mut GraphBuilder,
        block: BlockId,
        lead: &[ValueId],
        args: &[ValueId],
    ) -> Result<Vec<ValueId>, BuildError> {
        let f = self.f;
        let mut lead = lead.iter();
        let mut args = args.iter();
        for (i, &a) in f.block(block).args.iter().enumerate() {
            let new = if f.ty(a).is_token() {
                b.current_token()
            } else if i < f.block(block).args.len() && lead.len() > 0 {
                lead.next().copied()
            } else {
                args.next().copied()
            };
            if let Some(n) = new {
                self.set(a, n);
            }
        }
        self.copy_block(b, block).map_err(|e| match e {
            GradError::Build(e) => e,
            // A refusal crosses the builder's closures as a build error; the real one waits
            // in `pending` for `value_and_grad` to report.
            other => {
                *self.pending.borrow_mut() = Some(other);
                BuildError::Unfinished
            }
        })?;
        Ok(f.block(block)
            .yields
            .iter()
            .filter(|&&v| !f.ty(v).is_token())
            .map(|&v| self.get(v))
            .collect())
    }

    /// Sweeps `block` in reverse from the cotangents `seeds` (old value → new cotangent)
    /// and gives the cotangents of `targets` (zeros where none reached them).
    fn reverse_block(
        &self,
        b: &mut GraphBuilder,
        block: BlockId,
        seeds: HashMap<ValueId, ValueId>,
        targets: &[ValueId],
    ) -> R<Vec<ValueId>> {
        let f = self.f;
        let mut ct = seeds;
        for &n in f.block(block).nodes.iter().rev() {
            let node = f.node(n);
            b.set_span(node.span);
            let reached = node.results.iter().any(|r| ct.contains_key(r));
            if !reached {
                continue;
            }
            match &node.kind {
                NodeKind::Prim(op) => self.reverse_prim(b, node, op, &mut ct)?,
                NodeKind::Assert { .. } => {}
                NodeKind::If {
                    then_block,
                    else_block,
                } => self.reverse_if(b, node, *then_block, *else_block, &mut ct)?,
                NodeKind::Fused { .. } | NodeKind::Call { .. } => {
                    return Err(GradError::Fused { span: node.span });
                }
                NodeKind::Collective(_) => return Err(GradError::Collective { span: node.span }),
                NodeKind::For { body } => {
                    if node.results.iter().any(|r| self.varied.contains(r)) {
                        self.reverse_loop(b, node, *body, None, &mut ct)?;
                    }
                }
                NodeKind::While { body, .. } => {
                    if node.results.iter().any(|r| self.varied.contains(r)) {
                        let Some(count) = self.counts.borrow().get(&n).copied() else {
                            return Err(GradError::Loop { span: node.span });
                        };
                        self.reverse_loop(b, node, *body, Some(count), &mut ct)?;
                    }
                }
            }
        }
        targets
            .iter()
            .map(|&t| match ct.get(&t) {
                Some(&g) => Ok(g),
                None => {
                    let x = self.get(t);
                    Ok(b.zeros_like(&x)?)
                }
            })
            .collect()
    }

    /// The VJP of one primitive node, accumulated into `ct`.
    fn reverse_prim(
        &self,
        b: &mut GraphBuilder,
        node: &ir::graph::Node,
        op: &Op,
        ct: &mut HashMap<ValueId, ValueId>,
    ) -> R<()> {
        let f = self.f;
        let operands: Vec<ValueId> = node
            .operands
            .iter()
            .copied()
            .filter(|&v| !f.ty(v).is_token())
            .collect();
        let Some(&out) = node.results.iter().find(|&&r| !f.ty(r).is_token()) else {
            return Ok(());
        };
        let Some(&c) = ct.get(&out) else {
            return Ok(());
        };
        if op.prim() == Prim::Print {
            // print is the identity on its value.
            return accumulate(b, ct, operands[0], c);
        }
        let needed: Vec<bool> = operands
            .iter()
            .map(|v| self.varied.contains(v) && is_float(f, *v))
            .collect();
        if !needed.iter().any(|&x| x) {
            return Ok(());
        }
        let ins: Vec<ValueId> = operands.iter().map(|&v| self.get(v)).collect();
        let y = self.get(out);
        let gs = vjp_some(b, op, &ins, &y, &c, &needed)?;
        for (v, g) in operands.iter().zip(gs) {
            if let Some(g) = g {
                accumulate(b, ct, *v, g)?;
            }
        }
        Ok(())
    }

    /// The reverse of an `If`: an `If` on the same condition whose branches recompute
    /// their forward values and sweep them back. It yields the cotangents of the values the
    /// node's regions read: the node's passed operands and the enclosing values used.
    fn reverse_if(
        &self,
        b: &mut GraphBuilder,
        node: &ir::graph::Node,
        then_block: BlockId,
        else_block: BlockId,
        ct: &mut HashMap<ValueId, ValueId>,
    ) -> R<()> {
        let f = self.f;
        let tensors: Vec<ValueId> = node
            .operands
            .iter()
            .copied()
            .filter(|&v| !f.ty(v).is_token())
            .collect();
        let (cond, passed) = (tensors[0], &tensors[1..]);
        // What gets a cotangent: passed operands and enclosing reads that are varied floats.
        let mut targets: Vec<ValueId> = Vec::new();
        for &v in passed
            .iter()
            .chain(outer_reads(f, then_block).iter())
            .chain(outer_reads(f, else_block).iter())
        {
            if self.varied.contains(&v) && is_float(f, v) && !targets.contains(&v) {
                targets.push(v);
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        let results: Vec<ValueId> = node
            .results
            .iter()
            .copied()
            .filter(|&r| !f.ty(r).is_token())
            .collect();
        let seeds: Vec<(usize, ValueId)> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| ct.get(r).map(|&c| (i, c)))
            .collect();
        let new_passed: Vec<ValueId> = passed.iter().map(|&v| self.get(v)).collect();
        let err = RefCell::new(None);
        let branch = |b: &mut GraphBuilder, block: BlockId| -> Result<Vec<ValueId>, BuildError> {
            let mut run = || -> R<Vec<ValueId>> {
                let outer = self.replay.replace(true);
                let copied = self.copy_region(b, block, &[], &new_passed);
                self.replay.set(outer);
                copied?;
                // Seeds: the cotangents of the node's results flow to what the branch
                // yielded for them.
                let yields: Vec<ValueId> = f
                    .block(block)
                    .yields
                    .iter()
                    .copied()
                    .filter(|&v| !f.ty(v).is_token())
                    .collect();
                let mut local: HashMap<ValueId, ValueId> = HashMap::new();
                for &(i, c) in &seeds {
                    if let Some(&yv) = yields.get(i)
                        && is_float(f, yv)
                    {
                        accumulate(b, &mut local, yv, c)?;
                    }
                }
                // The branch's own arguments stand for the passed operands.
                let args: Vec<ValueId> = f
                    .block(block)
                    .args
                    .iter()
                    .copied()
                    .filter(|&v| !f.ty(v).is_token())
                    .collect();
                // A passed operand reaches the branch twice over: as its block argument and,
                // when the branch also reads it from the enclosing block, directly. Its
                // cotangent is the sum of both.
                let mut inner_targets: Vec<ValueId> = Vec::new();
                let mut pairs: Vec<(usize, Option<usize>)> = Vec::new();
                for &t in &targets {
                    let direct = inner_targets.len();
                    inner_targets.push(t);
                    let via_arg = passed.iter().position(|&p| p == t).map(|k| {
                        inner_targets.push(args[k]);
                        inner_targets.len() - 1
                    });
                    pairs.push((direct, via_arg));
                }
                let cts = self.reverse_block(b, block, local, &inner_targets)?;
                pairs
                    .into_iter()
                    .map(|(d, a)| match a {
                        Some(a) => Ok(b.add(&cts[d], &cts[a])?),
                        None => Ok(cts[d]),
                    })
                    .collect()
            };
            run().map_err(|e| {
                let out = match &e {
                    GradError::Build(be) => be.clone(),
                    _ => BuildError::Unfinished,
                };
                *err.borrow_mut() = Some(e);
                out
            })
        };
        let r = b.if_(
            self.get(cond),
            &[],
            |b, _| branch(b, then_block),
            |b, _| branch(b, else_block),
        );
        if let Some(e) = err.into_inner() {
            return Err(e);
        }
        let outs = r?;
        for (&t, g) in targets.iter().zip(outs) {
            accumulate(b, ct, t, g)?;
        }
        Ok(())
    }
}

impl Cx<'_> {
    /// The reverse of a loop, by recomputation: a `for` over the iterations backwards
    /// whose body first recomputes the carried values at the start of iteration `k` (a
    /// `for` from the start up to `k`), then replays iteration `k` and sweeps it back. It
    /// carries the cotangents of the float carried values and accumulates those of the
    /// enclosing values the body reads. Time is quadratic in the trip count and memory
    /// constant; saving the carried values on a stack instead is the optimizer's job.
    /// `count` is `None` for a `for` (its bounds give the trip count) and a `while`'s
    /// iteration count otherwise (its body takes no induction variable, and its condition,
    /// which passes the carried values on unchanged, need not be replayed).
    fn reverse_loop(
        &self,
        b: &mut GraphBuilder,
        node: &ir::graph::Node,
        body: BlockId,
        count: Option<ValueId>,
        ct: &mut HashMap<ValueId, ValueId>,
    ) -> R<()> {
        let f = self.f;
        let non_token = |vs: &[ValueId]| -> Vec<ValueId> {
            vs.iter()
                .copied()
                .filter(|&v| !f.ty(v).is_token())
                .collect()
        };
        let ops = non_token(&node.operands);
        let lead = count.is_none();
        let init: Vec<ValueId> = if lead { ops[3..].to_vec() } else { ops.clone() };
        let results = non_token(&node.results);
        let args = non_token(&f.block(body).args);
        let carried_args = if lead { args[1..].to_vec() } else { args };
        let yields = non_token(&f.block(body).yields);
        let float_pos: Vec<usize> = (0..init.len())
            .filter(|&m| is_float(f, results[m]))
            .collect();
        let outer: Vec<ValueId> = outer_reads(f, body)
            .into_iter()
            .filter(|v| self.varied.contains(v) && is_float(f, *v))
            .collect();
        let mut carried = Vec::with_capacity(float_pos.len() + outer.len());
        for &m in &float_pos {
            carried.push(match ct.get(&results[m]) {
                Some(&c) => c,
                None => b.zeros_like(&self.get(results[m]))?,
            });
        }
        for &v in &outer {
            carried.push(b.zeros_like(&self.get(v))?);
        }
        let (s0, st, n, zero, one) = match count {
            // Trip count: ceil((stop - start) / step) = -floor((start - stop) / step), ≥ 0.
            None => {
                let (s0, s1, st) = (self.get(ops[0]), self.get(ops[1]), self.get(ops[2]));
                let d = b.sub(&s0, &s1)?;
                let q = b.binary(ir::BinaryOp::FloorDiv, &d, &st)?;
                let negq = b.neg(&q)?;
                let zero = b.zeros_like(&s0)?;
                let n = b.binary(ir::BinaryOp::Maximum, &negq, &zero)?;
                let one = b.ones_like(&s0)?;
                (s0, st, n, zero, one)
            }
            Some(n) => {
                let zero = b.zeros_like(&n)?;
                let one = b.ones_like(&n)?;
                (zero, one, n, zero, one)
            }
        };
        let init_new: Vec<ValueId> = init.iter().map(|&v| self.get(v)).collect();
        let fp = float_pos.len();
        let err = RefCell::new(None);
        let outs = b.for_(zero, n, one, &carried, |b, j, a| {
            let mut step_back = || -> R<Vec<ValueId>> {
                // k = n - 1 - j, and i_k = start + k * step.
                let nm1 = b.sub(&n, &one)?;
                let k = b.sub(&nm1, &j)?;
                let ks = b.mul(&k, &st)?;
                let ik = b.add(&s0, &ks)?;
                let outer_replay = self.replay.replace(true);
                let recomputed = b.for_(s0, ik, st, &init_new, |b, i, c| {
                    let ix = [i];
                    self.copy_region(b, body, if lead { &ix[..] } else { &[] }, c)
                });
                let ck = match recomputed {
                    Ok(ck) => ck,
                    Err(e) => {
                        self.replay.set(outer_replay);
                        return Err(e.into());
                    }
                };
                let ix = [ik];
                let replayed = self.copy_region(b, body, if lead { &ix[..] } else { &[] }, &ck);
                self.replay.set(outer_replay);
                replayed?;
                let mut local: HashMap<ValueId, ValueId> = HashMap::new();
                for (idx, &m) in float_pos.iter().enumerate() {
                    accumulate(b, &mut local, yields[m], a[idx])?;
                }
                let mut targets: Vec<ValueId> =
                    float_pos.iter().map(|&m| carried_args[m]).collect();
                targets.extend(&outer);
                let back = self.reverse_block(b, body, local, &targets)?;
                let mut next: Vec<ValueId> = back[..fp].to_vec();
                for (q, &inc) in back[fp..].iter().enumerate() {
                    next.push(b.add(&a[fp + q], &inc)?);
                }
                Ok(next)
            };
            step_back().map_err(|e| {
                let out = match &e {
                    GradError::Build(be) => be.clone(),
                    _ => BuildError::Unfinished,
                };
                *err.borrow_mut() = Some(e);
                out
            })
        });
        if let Some(e) = err.into_inner() {
            return Err(e);
        }
        let outs = outs?;
        for (idx, &m) in float_pos.iter().enumerate() {
            accumulate(b, ct, init[m], outs[idx])?;
        }
        for (q, &v) in outer.iter().enumerate() {
            accumulate(b, ct, v, outs[fp + q])?;
        }
        Ok(())
    }
}

/// Adds the cotangent contribution `g` to old value `v`.
fn accumulate(
    b: &mut GraphBuilder,
    ct: &mut HashMap<ValueId, ValueId>,
    v: ValueId,
    g: ValueId,
) -> R<()> {
    let total = match ct.get(&v) {
        Some(&acc) => b.add(&acc, &g)?,
        None => g,
    };
    ct.insert(v, total);
    Ok(())
}
