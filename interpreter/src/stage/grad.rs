//! `grad` and `value_and_grad` inside staged code: reverse mode on the IR.
//!
//! The eager tape cannot differentiate through a staged `if` or loop (its nodes would
//! refer to values inside a region from outside it). So inside a staged function a
//! derivative is taken the way the IR is meant to be differentiated: the function is
//! staged on its own, at the arguments' types, into a graph of its own; `autodiff::graph::
//! value_and_grad` differentiates that graph with the very rules of the eager tape; and the
//! result is inlined into the enclosing graph ([`ir::graph::inline`]). Values of the
//! enclosing graph that the function reads (captured, or passed but not differentiated)
//! are inputs of the inner graph, bound to the enclosing values when it is inlined. Since
//! the enclosing function is itself a graph being staged, `grad(grad(f))` staged and `jit`
//! of a `grad` follow.

use devices::Tensor;
use lang::Span;
use lang::ast::Name;

use super::{Stager, build_error, staging_error, tensor_leaves};
use crate::eval::Eval;
use crate::eval::errors::{self, R};
use crate::value::{TensorVal, Value};

/// What a staged reverse pass gives: the function's value, the gradient of each float
/// leaf of the differentiated arguments (in order), and those arguments.
pub(crate) type Reverse = (TensorVal, Vec<Option<Tensor>>, Vec<Value>);

impl Eval<'_> {
    /// `f`'s value at `pos` and its gradients with respect to the arguments `wrt`, staged.
    pub(crate) fn reverse_staged(
        &mut self,
        f: &Value,
        mut pos: Vec<(Value, Span)>,
        named: Vec<(Name, Value, Span)>,
        wrt: &[usize],
        at: Span,
        span: Span,
    ) -> R<Reverse> {
        let mut inner = Stager::new(&format!("{}_inner", super::jit::fn_name(f)));
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
        let r = self.call(f, pos, named, span);
        let Some(mut inner) = self.st.stage.borrow_mut().pop() else {
            return Err(errors::internal("the staged graph was lost", span));
        };
        let out = r?;
        let y = crate::eval::builtins::grad::scalar_out(&out, at, span)?;
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
            let mut inputs = vec![s.rng];
            for t in outer_leaves.iter().chain(captures.iter()) {
                inputs.push(s.value_of(t, span)?);
            }
            let outs =
                ir::graph::inline(&mut s.b, &dgraph, &inputs).map_err(|e| build_error(&e, span))?;
            let [y, rng, grads @ ..] = &outs[..] else {
                return Err(errors::internal(
                    "the staged derivative lost its outputs",
                    span,
                ));
            };
            s.rng = *rng;
            let value = TensorVal::strong_of(s.tensor(*y));
            let grads = grads.iter().map(|&g| Some(s.tensor(g))).collect();
            Ok((value, grads, watched))
        })
    }
}
