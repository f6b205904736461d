//! `grad` and `value_and_grad` inside staged code: reverse mode on the IR.
//!
//! The eager tape cannot differentiate through a staged `if` or loop (its nodes would
//! refer to values inside a region from outside it). So inside a staged function a
//! derivative is taken the way the IR is meant to be differentiated: the function is
//! staged on its own, at the arguments' types, into a graph of its own; `autodiff::graph::
//! value_and_grad` differentiates that graph with the very rules of the eager tape; and the
//! result is called from the enclosing graph ([`ir::graph::call`]; the inlining pass splices
//! it in). Values of the enclosing graph that the function reads (captured, or passed but
//! not differentiated) are inputs of the inner graph, bound to the enclosing values at the
//! call. Since
//! the enclosing function is itself a graph being staged, `grad(grad(f))` staged and `jit`
//! of a `grad` follow.

use devices::Tensor;
use lang::Span;
use lang::ast::Name;

use super::{Stager, build_error, staging_error, tensor_leaves};
use crate::eval::Eval;
use crate::eval::errors::{self, R};
use crate::value::{TensorVal, Value};

/// The scalar function a staged reverse pass differentiates, given the arguments.
pub(crate) type ScalarFn<'a> = dyn Fn(&mut Eval<'_>, Vec<(Value, Span)>) -> R<Value> + 'a;

/// What a staged reverse pass gives: the function's value, the gradient of each float
/// leaf of the differentiated arguments (in order), and those arguments.
pub(crate) type Reverse = (TensorVal, Vec<Option<Tensor>>, Vec<Value>);

impl Eval<'_> {
    /// `f`'s value at `pos` and its gradients with respect to the arguments `wrt`, staged.
    pub(crate) fn reverse_staged(
        &mut self,
        f: &Value,
        pos: Vec<(Value, Span)>,
        named: Vec<(Name, Value, Span)>,
        wrt: &[usize],
        at: Span,
        span: Span,
    ) -> R<Reverse> {
        let name = super::jit::fn_name(f);
        let run = |ev: &mut Eval<'_>, pos: Vec<(Value, Span)>| -> R<Value> {
            let out = ev.call(f, pos, named.clone(), span)?;
            crate::eval::builtins::grad::scalar_out(&out, at, span).map(Value::Tensor)
        };
        self.reverse_with(&name, pos, wrt, None, span, &run)
    }

    /// The gradient of the scalar `run(pos)` with respect to the arguments `wrt`, staged,
    /// for a pullback: `run` is recomputed with the random key `replay` (the draws of the
    /// forward run) and its prints muted.
    pub(crate) fn reverse_staged_with(
        &mut self,
        pos: Vec<(Value, Span)>,
        wrt: &[usize],
        replay: Option<&Tensor>,
        span: Span,
        run: &ScalarFn<'_>,
    ) -> R<Reverse> {
        self.reverse_with(&Name::from("pullback"), pos, wrt, replay, span, run)
    }

    fn reverse_with(
        &mut self,
        name: &Name,
        mut pos: Vec<(Value, Span)>,
        wrt: &[usize],
        replay: Option<&Tensor>,
        span: Span,
        run: &ScalarFn<'_>,
    ) -> R<Reverse> {
        let mut inner = Stager::new(&format!("{name}_inner"));
        inner.muted = replay.is_some();
        // The differentiated leaves become the inner graph's inputs after the key.
        let mut outer_leaves: Vec<Tensor> = Vec::new();
        let mut watched = Vec::with_capacity(wrt.len());
        for &i in wrt {
            let Some((v, _)) = pos.get_mut(i) else {
                continue;
            };
            let mut leaves = Vec::new();
            tensor_leaves(v, &mut leaves);
            let mut new = Vec::with_capacity(leaves.len());
            for l in leaves {
                if l.dtype.is_float() {
                    outer_leaves.push(l.t.clone());
                    let x = inner.b.input(l.t.ttype());
                    new.push(TensorVal {
                        t: inner.tensor(x),
                        ..l
                    });
                } else {
                    new.push(l);
                }
            }
            *v = super::substitute(v, &mut new.into_iter());
            watched.push(v.clone());
        }
        let n_wrt = outer_leaves.len();
        self.st.stage.borrow_mut().push(inner);
        let r = run(self, pos);
        let Some(mut inner) = self.st.stage.borrow_mut().pop() else {
            return Err(errors::internal("the staged graph was lost", span));
        };
        let Value::Tensor(y) = r? else {
            return Err(errors::internal(
                "a derivative's value is not a tensor",
                span,
            ));
        };
        inner.b.set_span(super::ir_span(self.src, span));
        let y_id = inner.value_of(&y.t, span)?;
        let rng = inner.rng;
        let graph = inner
            .b
            .finish(&[y_id, rng])
            .map_err(|e| build_error(&e, span))?;
        let wrt_idx: Vec<usize> = (1..=n_wrt).collect();
        let dgraph = autodiff::graph::value_and_grad(&graph, &wrt_idx)
            .map_err(|e| staging_error(format!("the derivative cannot be staged: {e}"), span))?;
        verified(&dgraph, span)?;
        // Inline it where the enclosing function is being staged.
        let captures = inner.captures;
        let prints = inner.prints;
        let globals = inner.globals_read;
        self.with_stager(span, |s| {
            for (k, v) in prints {
                s.prints.entry(k).or_insert(v);
            }
            for (n, v) in globals {
                if !s.globals_read.iter().any(|(m, _)| *m == n) {
                    s.globals_read.push((n, v));
                }
            }
            let key = match replay {
                Some(k) => s.value_of(k, span)?,
                None => s.rng,
            };
            let mut inputs = vec![key];
            for t in outer_leaves.iter().chain(captures.iter()) {
                inputs.push(s.value_of(t, span)?);
            }
            let outs =
                ir::graph::call(&mut s.b, &dgraph, &inputs).map_err(|e| build_error(&e, span))?;
            let [y, rng, grads @ ..] = &outs[..] else {
                return Err(errors::internal(
                    "the staged derivative lost its outputs",
                    span,
                ));
            };
            // A replay's draws were the forward run's: the stream does not move on.
            if replay.is_none() {
                s.rng = *rng;
            }
            let value = TensorVal::strong_of(s.tensor(*y));
            let grads = grads.iter().map(|&g| Some(s.tensor(g))).collect();
            Ok((value, grads, watched))
        })
    }
}

impl Eval<'_> {
    /// `jvp(f, primals, tangents)` inside staged code: `f` staged on its own, forward mode
    /// on the IR (`autodiff::forward::jvp`), inlined. Gives `(f(primals), tangent)`, the
    /// tangent shaped like the value.
    pub(crate) fn forward_staged(
        &mut self,
        f: &Value,
        primals: &[Value],
        tangents: &[Value],
        span: Span,
    ) -> R<(Value, Value)> {
        let mut inner = Stager::new(&format!("{}_inner", super::jit::fn_name(f)));
        let mut outer_leaves: Vec<Tensor> = Vec::new();
        let mut outer_tangents: Vec<Tensor> = Vec::new();
        let mut args = Vec::with_capacity(primals.len());
        for (p, t) in primals.iter().zip(tangents) {
            let (mut ps, mut ts) = (Vec::new(), Vec::new());
            tensor_leaves(p, &mut ps);
            tensor_leaves(t, &mut ts);
            let mut new = Vec::with_capacity(ps.len());
            for (k, l) in ps.into_iter().enumerate() {
                match ts.get(k) {
                    Some(tl) if l.dtype.is_float() => {
                        outer_leaves.push(l.t.clone());
                        outer_tangents.push(self.cast(&tl.t, l.t.dtype(), span)?);
                        let x = inner.b.input(l.t.ttype());
                        new.push(TensorVal {
                            t: inner.tensor(x),
                            ..l
                        });
                    }
                    _ => new.push(l),
                }
            }
            args.push((super::substitute(p, &mut new.into_iter()), span));
        }
        let n_diff = outer_leaves.len();
        self.st.stage.borrow_mut().push(inner);
        let r = self.call(f, args, Vec::new(), span);
        let Some(mut inner) = self.st.stage.borrow_mut().pop() else {
            return Err(errors::internal("the staged graph was lost", span));
        };
        let out = r?;
        let mut leaves = Vec::new();
        tensor_leaves(&out, &mut leaves);
        inner.b.set_span(super::ir_span(self.src, span));
        let mut outputs = Vec::with_capacity(leaves.len() + 1);
        for l in &leaves {
            outputs.push(inner.value_of(&l.t, span)?);
        }
        outputs.push(inner.rng);
        let graph = inner
            .b
            .finish(&outputs)
            .map_err(|e| build_error(&e, span))?;
        let wrt: Vec<usize> = (1..=n_diff).collect();
        let jgraph = autodiff::forward::jvp(&graph, &wrt)
            .map_err(|e| staging_error(format!("the derivative cannot be staged: {e}"), span))?;
        verified(&jgraph, span)?;
        let k = leaves.len();
        self.with_stager(span, |s| {
            for (key, v) in inner.prints {
                s.prints.entry(key).or_insert(v);
            }
            let mut inputs = vec![s.rng];
            for t in outer_leaves
                .iter()
                .chain(inner.captures.iter())
                .chain(outer_tangents.iter())
            {
                inputs.push(s.value_of(t, span)?);
            }
            let outs =
                ir::graph::call(&mut s.b, &jgraph, &inputs).map_err(|e| build_error(&e, span))?;
            if outs.len() != 2 * (k + 1) {
                return Err(errors::internal(
                    "the staged tangent lost its outputs",
                    span,
                ));
            }
            s.rng = outs[k];
            let values: Vec<TensorVal> = outs[..k]
                .iter()
                .zip(&leaves)
                .map(|(&v, l)| TensorVal {
                    t: s.tensor(v),
                    ..l.clone()
                })
                .collect();
            let tans: Vec<TensorVal> = outs[k + 1..2 * k + 1]
                .iter()
                .zip(&leaves)
                .map(|(&v, l)| TensorVal {
                    t: s.tensor(v),
                    weak: false,
                    ..l.clone()
                })
                .collect();
            Ok((
                super::substitute(&out, &mut values.into_iter()),
                super::substitute(&out, &mut tans.into_iter()),
            ))
        })
    }
}

/// `ir::verify` after a transform, in debug builds (DESIGN.md §5): a graph a transform
/// broke is an internal error at the call, not a wrong answer later.
fn verified(g: &ir::Graph, span: Span) -> R<()> {
    if cfg!(debug_assertions)
        && let Err(e) = ir::verify(g)
    {
        return Err(errors::internal(
            &format!("the transformed graph `{}` does not verify: {e}", g.name()),
            span,
        ));
    }
    Ok(())
}
