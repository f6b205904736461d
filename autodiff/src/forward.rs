//! Forward mode on the IR: the Jacobian-vector product of a staged function as another
//! staged function.
//!
//! [`jvp`] turns a graph `f(x0, x1, ...) -> (y0, y1, ...)` into one that also takes a
//! tangent for each requested input and gives, after `f`'s outputs, the tangent of each
//! output (zeros where no tangent reaches it). It uses the JVP rules of the eager tape
//! ([`crate::rules::jvp`]) emitted through the [`GraphBuilder`], as reverse mode
//! ([`crate::graph`]) uses the VJP rules. Every node made for a node's tangent carries that
//! node's span.
//!
//! Control flow carries tangents alongside values: an `If` yields the tangent of each float
//! result after the results; a loop carries the tangent of each float carried value after
//! the values (zeros where the start has none). Values of enclosing blocks are visible in a
//! region, and so are their tangents. `print` passes its tangent through without printing
//! it (the forward pass prints the value once).

use std::cell::RefCell;
use std::collections::HashMap;

use ir::graph::{BlockId, BuildError, Graph, GraphBuilder, Node, NodeKind, Type, ValueId};
use ir::{Emit, Op};

use crate::graph::GradError;
use crate::rules;

type R<T> = Result<T, GradError>;

/// The graph of `(f's outputs..., tangent of each output...)`, with one tangent input per
/// requested input after `f`'s inputs. See the module doc.
pub fn jvp(f: &Graph, wrt: &[usize]) -> R<Graph> {
    let flat;
    let f = if ir::passes::is_flat(f) {
        f
    } else {
        flat = ir::passes::flatten(f)?;
        &flat
    };
    let tensor_inputs: Vec<ValueId> = f
        .inputs()
        .iter()
        .copied()
        .filter(|&v| !f.ty(v).is_token())
        .collect();
    let mut b = GraphBuilder::new(&format!("{}_jvp", f.name()));
    let cx = Cx {
        f,
        map: RefCell::new(HashMap::new()),
        tan: RefCell::new(HashMap::new()),
        pending: RefCell::new(None),
    };
    for &x in f.inputs() {
        let new = match f.ty(x) {
            Type::Token => b.token_input(),
            Type::Tensor(t) => b.input(t.clone()),
        };
        cx.set(x, new);
    }
    for &i in wrt {
        let Some(&x) = tensor_inputs.get(i) else {
            return Err(GradError::Wrt {
                index: i,
                why: format!("the function has {} inputs", tensor_inputs.len()),
            });
        };
        match f.ty(x) {
            Type::Tensor(t) if t.dtype.is_float() => {
                let t_in = b.input(t.clone());
                cx.tan.borrow_mut().insert(x, t_in);
            }
            other => {
                return Err(GradError::Wrt {
                    index: i,
                    why: format!("it is {other}, and only floats have tangents"),
                });
            }
        }
    }
    if let Err(e) = cx.block(&mut b, f.body()) {
        return Err(cx.pending.take().unwrap_or(e));
    }
    let outputs: Vec<ValueId> = f
        .outputs()
        .iter()
        .copied()
        .filter(|&v| !f.ty(v).is_token())
        .collect();
    let mut outs: Vec<ValueId> = outputs.iter().map(|&v| cx.get(v)).collect();
    for &v in &outputs {
        outs.push(cx.tangent_or_zeros(&mut b, v)?);
    }
    Ok(b.finish(&outs)?)
}

struct Cx<'g> {
    f: &'g Graph,
    /// Old value → the new graph's value.
    map: RefCell<HashMap<ValueId, ValueId>>,
    /// Old value → the new graph's value of its tangent (absent: zero).
    tan: RefCell<HashMap<ValueId, ValueId>>,
    /// A refusal raised inside a region, reported instead of the build error it became.
    pending: RefCell<Option<GradError>>,
}

impl Cx<'_> {
    fn get(&self, v: ValueId) -> ValueId {
        self.map.borrow().get(&v).copied().unwrap_or(v)
    }

    fn set(&self, old: ValueId, new: ValueId) {
        self.map.borrow_mut().insert(old, new);
    }

    fn tangent(&self, v: ValueId) -> Option<ValueId> {
        self.tan.borrow().get(&v).copied()
    }

    fn is_float(&self, v: ValueId) -> bool {
        matches!(self.f.ty(v), Type::Tensor(t) if t.dtype.is_float())
    }

    /// The tangent of `v`, or zeros shaped like its new value.
    fn tangent_or_zeros(&self, b: &mut GraphBuilder, v: ValueId) -> Result<ValueId, BuildError> {
        match self.tangent(v) {
            Some(t) => Ok(t),
            None => b.zeros_like(&self.get(v)),
        }
    }

    fn tensors(&self, vs: &[ValueId]) -> Vec<ValueId> {
        vs.iter()
            .copied()
            .filter(|&v| !self.f.ty(v).is_token())
            .collect()
    }

    /// The non-token results of a node.
    fn results(&self, node: &Node) -> Vec<ValueId> {
        self.tensors(&node.results)
    }

    fn block(&self, b: &mut GraphBuilder, block: BlockId) -> R<()> {
        let f = self.f;
        for &n in &f.block(block).nodes {
            let node = f.node(n);
            b.set_span(node.span);
            match &node.kind {
                NodeKind::Prim(op) => self.prim(b, node, op)?,
                NodeKind::Assert { message } => {
                    if let Some(&c) = self.tensors(&node.operands).first() {
                        b.assert(self.get(c), message)?;
                    }
                }
                NodeKind::If {
                    then_block,
                    else_block,
                } => {
                    let ops = self.tensors(&node.operands);
                    let Some((&cond, args)) = ops.split_first() else {
                        continue;
                    };
                    let new_args: Vec<ValueId> = args.iter().map(|&v| self.get(v)).collect();
                    let results = self.results(node);
                    let outs = b.if_(
                        self.get(cond),
                        &new_args,
                        |b, a| self.region(b, *then_block, args, &[], a, &results),
                        |b, a| self.region(b, *else_block, args, &[], a, &results),
                    )?;
                    self.bind_results(&results, &outs);
                }
                NodeKind::While { cond, body } => {
                    let cb = f.block(*cond);
                    let cargs = self.tensors(&cb.args);
                    let passed: Vec<ValueId> =
                        self.tensors(&cb.yields).into_iter().skip(1).collect();
                    if passed != cargs {
                        return Err(GradError::WhilePasses { span: node.span });
                    }
                    let init = self.tensors(&node.operands);
                    let results = self.results(node);
                    let start = self.carried_start(b, &init)?;
                    let outs = b.while_(
                        &start,
                        |b, a| {
                            let ys = self.loop_region(b, *cond, &[], a, &init, None)?;
                            ys.first().copied().ok_or(BuildError::Unfinished)
                        },
                        |b, a| self.loop_region(b, *body, &[], a, &init, Some(&results)),
                    )?;
                    self.bind_results(&results, &outs);
                }
                NodeKind::Fused { .. } | NodeKind::Call { .. } => {
                    return Err(GradError::Fused { span: node.span });
                }
                NodeKind::Collective(_) => return Err(GradError::Collective { span: node.span }),
                NodeKind::For { body } => {
                    let ops = self.tensors(&node.operands);
                    if ops.len() < 3 {
                        continue;
                    }
                    let (bounds, init) = ops.split_at(3);
                    let results = self.results(node);
                    let start = self.carried_start(b, init)?;
                    let outs = b.for_(
                        self.get(bounds[0]),
                        self.get(bounds[1]),
                        self.get(bounds[2]),
                        &start,
                        |b, i, a| self.loop_region(b, *body, &[i], a, init, Some(&results)),
                    )?;
                    self.bind_results(&results, &outs);
                }
            }
        }
        Ok(())
    }

    fn prim(&self, b: &mut GraphBuilder, node: &Node, op: &Op) -> R<()> {
        let args: Vec<ValueId> = self.tensors(&node.operands);
        let new_args: Vec<ValueId> = args.iter().map(|&v| self.get(v)).collect();
        let v = b.op(op, &new_args)?;
        let Some(&r) = self.results(node).first() else {
            return Ok(());
        };
        self.set(r, v);
        let tans: Vec<Option<ValueId>> = args.iter().map(|&a| self.tangent(a)).collect();
        if tans.iter().all(Option::is_none) {
            return Ok(());
        }
        // `print` shows the value once; its tangent passes through unseen.
        let t = if matches!(op, Op::Print {}) {
            tans[0]
        } else {
            rules::jvp(b, op, &new_args, &v, &tans)?
        };
        if let Some(t) = t {
            self.tan.borrow_mut().insert(r, t);
        }
        Ok(())
    }

    /// The start of a loop carrying tangents: the values, then a tangent for each float one.
    fn carried_start(&self, b: &mut GraphBuilder, init: &[ValueId]) -> R<Vec<ValueId>> {
        let mut start: Vec<ValueId> = init.iter().map(|&v| self.get(v)).collect();
        for &v in init {
            if self.is_float(v) {
                start.push(self.tangent_or_zeros(b, v)?);
            }
        }
        Ok(start)
    }

    /// Maps a control-flow node's results and their tangents (which follow them in `outs`).
    fn bind_results(&self, results: &[ValueId], outs: &[ValueId]) {
        let (vals, tans) = outs.split_at(results.len().min(outs.len()));
        let mut tans = tans.iter();
        for (&r, &o) in results.iter().zip(vals) {
            self.set(r, o);
            if self.is_float(r)
                && let Some(&t) = tans.next()
            {
                self.tan.borrow_mut().insert(r, t);
            }
        }
    }

    /// An `If` branch: binds its arguments (their tangents are those of the operands
    /// passed, visible from the enclosing block), copies it, yields the results and then a
    /// tangent for each float result.
    fn region(
        &self,
        b: &mut GraphBuilder,
        block: BlockId,
        passed: &[ValueId],
        lead: &[ValueId],
        args: &[ValueId],
        results: &[ValueId],
    ) -> Result<Vec<ValueId>, BuildError> {
        let f = self.f;
        let bargs = self.tensors(&f.block(block).args);
        let mut given = lead.iter().chain(args.iter());
        for (i, &a) in bargs.iter().enumerate() {
            if let Some(&n) = given.next() {
                self.set(a, n);
            }
            if let Some(t) = passed.get(i).and_then(|&p| self.tangent(p)) {
                self.tan.borrow_mut().insert(a, t);
            }
        }
        self.run_block(b, block)?;
        let ys = self.tensors(&f.block(block).yields);
        let mut out: Vec<ValueId> = ys.iter().map(|&v| self.get(v)).collect();
        for (&y, &r) in ys.iter().zip(results) {
            if self.is_float(r) {
                out.push(self.tangent_or_zeros(b, y)?);
            }
        }
        Ok(out)
    }

    /// A loop region: the carried values then their tangents are its arguments (after
    /// `lead`, the induction variable); the body yields both, the condition its flag.
    fn loop_region(
        &self,
        b: &mut GraphBuilder,
        block: BlockId,
        lead: &[ValueId],
        args: &[ValueId],
        init: &[ValueId],
        results: Option<&[ValueId]>,
    ) -> Result<Vec<ValueId>, BuildError> {
        let f = self.f;
        let bargs = self.tensors(&f.block(block).args);
        let (lead_args, carried) = bargs.split_at(lead.len().min(bargs.len()));
        for (&a, &n) in lead_args.iter().zip(lead) {
            self.set(a, n);
        }
        let (vals, tans) = args.split_at(carried.len().min(args.len()));
        let mut tans = tans.iter();
        for ((&a, &n), &i) in carried.iter().zip(vals).zip(init) {
            self.set(a, n);
            if self.is_float(i)
                && let Some(&t) = tans.next()
            {
                self.tan.borrow_mut().insert(a, t);
            }
        }
        self.run_block(b, block)?;
        let ys = self.tensors(&f.block(block).yields);
        let mut out: Vec<ValueId> = ys.iter().map(|&v| self.get(v)).collect();
        if let Some(results) = results {
            for (&y, &r) in ys.iter().zip(results) {
                if self.is_float(r) {
                    out.push(self.tangent_or_zeros(b, y)?);
                }
            }
        }
        Ok(out)
    }

    /// [`Cx::block`] inside a builder closure, whose error type is a build error: a
    /// refusal waits in `pending`.
    fn run_block(&self, b: &mut GraphBuilder, block: BlockId) -> Result<(), BuildError> {
        self.block(b, block).map_err(|e| match e {
            GradError::Build(e) => e,
            other => {
                *self.pending.borrow_mut() = Some(other);
                BuildError::Unfinished
            }
        })
    }
}
