//! `if`, `while` and `for` on staged values become `If`, `While` and `For` regions.
//!
//! A region is built by running the evaluator over the branch or the loop body with the
//! graph builder positioned inside the region ([`GraphBuilder`]'s `if_`, `while_`, `for_`
//! take closures; each closure lends the builder back to the innermost [`Stager`] while the
//! evaluator runs). What flows through the region is found in the text: the variables the
//! branch or body assigns that are visible where it starts ([`lang::ast::block_assigned`]),
//! the value of an `if`, and the random key. Their tensor leaves become the region's
//! yields or loop-carried values; anything else they hold (a function, a string) must be
//! the same on every path, or staging stops with E0913.
//!
//! Dtypes: a weak literal is stored wider than its dtype (`value.rs`). A loop carries a
//! weak leaf weak only when a dry run of its body (into a scratch graph, thrown away)
//! finds it still weak afterwards, as eager mode would go on computing it wide; when the
//! body turns it strong, the first iteration is peeled off (`if cond { body; loop }`), so
//! that it computes wide as eagerly, and the loop carries the rest strong. Every other
//! leaf is carried strong, in its dtype, so the body yields what it receives. An
//! `if` yields its `then` leaves as they are, the `else` leaves converted to them, and
//! converts after the node where the two did not agree on weakness.
//!
//! Regions have one exit. An `if` with a `return` in a branch, directly in a function's
//! body, takes the rest of the body into both branches ([`Eval::staged_if_returning`]);
//! `break`, `continue` and `return` anywhere else inside a region are E0913 (a loop over
//! known bounds is unrolled instead, where they work as in eager mode).

use std::cell::RefCell;
use std::collections::HashSet;

use devices::Tensor;
use ir::Op;
use ir::graph::{BuildError, GraphBuilder, ValueId};
use lang::Span;
use lang::ast::{Block, Expr, ExprKind, Name, Pattern, Stmt, StmtKind};

use super::{build_error, has_staged, same_value, staging_error, substitute, tensor_leaves};
use crate::eval::Eval;
use crate::eval::errors::{Flow, R};
use crate::value::{TensorVal, Value};

/// What a region closure hands back through the builder: the evaluator's own error is kept
/// aside (the builder's closures can only return a [`BuildError`]).
struct Lent<'a, 'b> {
    ev: &'a mut Eval<'b>,
    failed: Option<Flow>,
}

/// Swaps the builder a region closure was given with the innermost stager's, so that the
/// evaluator emits into the region; called again to swap back.
fn swap_builder(ev: &Eval<'_>, b: &mut GraphBuilder) {
    if let Some(s) = ev.st.stage.borrow_mut().last_mut() {
        std::mem::swap(b, &mut s.b);
    }
}

/// A region's outcome: the evaluator's own error first (the builder's is then only its
/// sentinel), else the builder's, else the node's results.
fn lent_result<T>(r: Result<T, BuildError>, failed: Option<Flow>, span: Span) -> R<T> {
    match (r, failed) {
        (_, Some(f)) => Err(f),
        (Err(e), None) => Err(build_error(&e, span)),
        (Ok(ids), None) => Ok(ids),
    }
}

/// The builder's sentinel for "the evaluator failed; see `Lent::failed`".
fn lent_failure() -> BuildError {
    BuildError::Unfinished
}

impl Eval<'_> {
    fn stager_rng(&self) -> ValueId {
        self.st
            .stage
            .borrow()
            .last()
            .map_or(ValueId::from_index(0), |s| s.rng)
    }

    fn set_stager_rng(&self, v: ValueId) {
        if let Some(s) = self.st.stage.borrow_mut().last_mut() {
            s.rng = v;
        }
    }

    /// Runs `f` on the innermost stager's builder moved out of it (so that the region
    /// closures can lend it back).
    fn with_builder_out<T>(
        &mut self,
        span: Span,
        f: impl FnOnce(&mut Self, &mut GraphBuilder) -> R<T>,
    ) -> R<T> {
        let mut b = GraphBuilder::new("");
        swap_builder(self, &mut b);
        b.set_span(super::ir_span(self.src, span));
        let r = f(self, &mut b);
        swap_builder(self, &mut b);
        r
    }

    /// The variables `names` (those visible here) and their values.
    fn carried(&self, names: HashSet<Name>) -> (Vec<Name>, Vec<Value>) {
        let mut names: Vec<Name> = names.into_iter().filter(|n| self.is_local(n)).collect();
        names.sort();
        let values = names.iter().filter_map(|n| self.lookup_local(n)).collect();
        (names, values)
    }

    /// The graph values of `leaves`, converted to `want` where given.
    fn leaf_ids(
        &self,
        leaves: &[TensorVal],
        want: Option<&[TensorVal]>,
        span: Span,
    ) -> R<Vec<ValueId>> {
        let mut ids = Vec::with_capacity(leaves.len());
        for (i, l) in leaves.iter().enumerate() {
            let mut t = l.t.clone();
            if let Some(w) = want.and_then(|w| w.get(i))
                && w.t.dtype() != t.dtype()
            {
                t = self.exec(&Op::Cast { dtype: w.t.dtype() }, &[&t], span)?;
            }
            ids.push(self.with_stager(span, |s| s.value_of(&t, span))?);
        }
        Ok(ids)
    }

    /// Staged tensors for `ids`, with the dtypes and weakness of `like`.
    fn staged_like(&self, ids: &[ValueId], like: &[TensorVal]) -> Vec<TensorVal> {
        let st = self.st.stage.borrow();
        let Some(s) = st.last() else {
            return Vec::new();
        };
        ids.iter()
            .zip(like)
            .map(|(&v, l)| TensorVal {
                t: s.tensor(v),
                ..l.clone()
            })
            .collect()
    }

    /// Assigns `names` the values of `template` with its leaves replaced by `leaves`.
    fn assign_all(&mut self, names: &[Name], template: &[Value], leaves: Vec<TensorVal>) {
        let mut it = leaves.into_iter();
        for (n, t) in names.iter().zip(template) {
            let v = substitute(t, &mut it);
            self.assign_local(n, v);
        }
    }

    /// `if cond { then } else { els }` with `cond` staged: its value, and the variables
    /// the branches assign take the node's results.
    pub(crate) fn staged_if(
        &mut self,
        cond: &Tensor,
        then: &Block,
        els: Option<&Expr>,
        span: Span,
    ) -> R<Value> {
        let mut names = HashSet::new();
        lang::ast::block_assigned(then, &mut names);
        if let Some(e) = els {
            lang::ast::expr_assigned(e, &mut names);
        }
        let (names, _) = self.carried(names);
        let has_else = els.is_some();
        // A branch yields its value (unit without `else`: the `if` is a statement), then
        // the variables.
        let yields = |ev: &mut Eval<'_>, r: R<Value>| -> R<Vec<Value>> {
            let v = match r {
                Ok(v) => v,
                Err(Flow::Error(e)) => return Err(Flow::Error(e)),
                Err(_) => {
                    return Err(staging_error(
                        "`break`, `continue` or `return` inside an `if` whose condition is \
                         known only at run time"
                            .into(),
                        span,
                    ));
                }
            };
            let mut vals = vec![if has_else { v } else { Value::Unit }];
            vals.extend(names.iter().filter_map(|n| ev.lookup_local(n)));
            Ok(vals)
        };
        let vals = self.if_branches(cond, then, els, span, &yields)?;
        let mut vals = vals.into_iter();
        let value = vals.next().unwrap_or(Value::Unit);
        for (n, v) in names.iter().zip(vals) {
            self.assign_local(n, v);
        }
        Ok(value)
    }

    /// An `if` on a staged condition, directly in a function's body, with a `return` in a
    /// branch: each branch runs its block and then, unless it returned, the rest of the
    /// body (`rest`), so both yield the function's result, which this gives. The rest is
    /// staged twice, once per branch: a region has one exit, and this is how an early
    /// return fits it.
    pub(crate) fn staged_if_returning(
        &mut self,
        cond: &Tensor,
        then: &Block,
        els: Option<&Expr>,
        rest: &[lang::ast::Stmt],
        span: Span,
    ) -> R<Value> {
        let result = |ev: &mut Eval<'_>, r: R<Value>| -> R<Vec<Value>> {
            let v = match r {
                Ok(_) => match ev.fn_stmts(rest) {
                    Ok(v) | Err(Flow::Return(v)) => v,
                    Err(e) => return Err(e),
                },
                Err(Flow::Return(v)) => v,
                Err(Flow::Error(e)) => return Err(Flow::Error(e)),
                Err(_) => {
                    return Err(staging_error(
                        "`break` or `continue` inside an `if` whose condition is known only \
                         at run time"
                            .into(),
                        span,
                    ));
                }
            };
            Ok(vec![v])
        };
        let vals = self.if_branches(cond, then, els, span, &result)?;
        Ok(vals.into_iter().next().unwrap_or(Value::Unit))
    }

    /// [`Eval::if_region`] whose branches are `then` and `els` (unit without one), each
    /// branch's outcome turned into the values it yields by `finish`.
    fn if_branches(
        &mut self,
        cond: &Tensor,
        then: &Block,
        els: Option<&Expr>,
        span: Span,
        finish: &Finish<'_>,
    ) -> R<Vec<Value>> {
        self.if_region(
            cond,
            span,
            &|ev| {
                let r = ev.block(then);
                finish(ev, r)
            },
            &|ev| {
                let r = match els {
                    Some(e) => ev.expr(e),
                    None => Ok(Value::Unit),
                };
                finish(ev, r)
            },
        )
    }

    /// Builds an `If` region on `cond` whose branches run `then_run` and `else_run` (each
    /// gives the values its branch yields; what a branch rebinds is undone after it) and
    /// gives the node's results as values: the `then` values with their tensors replaced.
    /// The `else` leaves are converted to the `then` ones; a result is weak only when both
    /// branches' leaf was.
    fn if_region(
        &mut self,
        cond: &Tensor,
        span: Span,
        then_run: &dyn Fn(&mut Eval<'_>) -> R<Vec<Value>>,
        else_run: &dyn Fn(&mut Eval<'_>) -> R<Vec<Value>>,
    ) -> R<Vec<Value>> {
        type Shape = RefCell<Option<(Vec<Value>, Vec<TensorVal>)>>;
        let c = self.with_stager(span, |s| s.value_of(cond, span))?;
        let outer_rng = self.stager_rng();
        let then_shape: Shape = RefCell::new(None);
        let else_shape: Shape = RefCell::new(None);
        let results = self.with_builder_out(span, |ev, b| {
            let lent = RefCell::new(Lent { ev, failed: None });
            let branch = |b: &mut GraphBuilder,
                          run: &dyn Fn(&mut Eval<'_>) -> R<Vec<Value>>,
                          slot: &Shape,
                          want: Option<Vec<TensorVal>>|
             -> Result<Vec<ValueId>, BuildError> {
                let mut l = lent.borrow_mut();
                let ev = &mut *l.ev;
                swap_builder(ev, b);
                ev.set_stager_rng(outer_rng);
                let saved = ev.save_frames();
                let r = (|| {
                    let vals = run(ev)?;
                    let mut leaves = Vec::new();
                    vals.iter().for_each(|v| tensor_leaves(v, &mut leaves));
                    let mut ids = vec![ev.stager_rng()];
                    ids.extend(ev.leaf_ids(&leaves, want.as_deref(), span)?);
                    *slot.borrow_mut() = Some((vals, leaves));
                    Ok(ids)
                })();
                // The branch's rebindings are undone for the other branch and for the code
                // after the node, which sees the node's results instead.
                ev.restore_frames(saved);
                swap_builder(ev, b);
                r.map_err(|e| {
                    l.failed = Some(e);
                    lent_failure()
                })
            };
            let r = b.if_(
                c,
                &[],
                |b, _| branch(b, then_run, &then_shape, None),
                |b, _| {
                    let want = then_shape.borrow().as_ref().map(|(_, l)| l.clone());
                    branch(b, else_run, &else_shape, want)
                },
            );
            lent_result(r, lent.into_inner().failed, span)
        })?;
        let (Some((tv, tl)), Some((ev_, el))) = (then_shape.into_inner(), else_shape.into_inner())
        else {
            return Err(staging_error("an `if` region was not built".into(), span));
        };
        if tv.len() != ev_.len() || !tv.iter().zip(&ev_).all(|(a, b)| same_skeleton(a, b)) {
            return Err(staging_error(
                "the two branches give values that differ in more than their tensors (a \
                 function, a string or a structure); staged code needs one"
                    .into(),
                span,
            ));
        }
        let (rng, leaf_ids) = results
            .split_first()
            .map_or((outer_rng, &[][..]), |(r, l)| (*r, l));
        self.set_stager_rng(rng);
        let like: Vec<TensorVal> = tl
            .iter()
            .zip(&el)
            .map(|(a, b)| TensorVal {
                weak: a.weak && b.weak,
                ..a.clone()
            })
            .collect();
        let mut out = self.staged_like(leaf_ids, &like);
        for o in &mut out {
            if !o.weak && o.t.dtype() != o.dtype {
                o.t = self.cast(&o.t, o.dtype, span)?;
            }
        }
        let mut it = out.into_iter();
        Ok(tv.iter().map(|v| substitute(v, &mut it)).collect())
    }

    /// `while cond { body }` where the condition was found staged (with the variables as
    /// they are now).
    pub(crate) fn staged_while(&mut self, cond: &Expr, body: &Block, span: Span) -> R<()> {
        let mut names = HashSet::new();
        lang::ast::expr_assigned(cond, &mut names);
        lang::ast::block_assigned(body, &mut names);
        let (names, template) = self.carried(names);
        let mut init = Vec::new();
        template.iter().for_each(|v| tensor_leaves(v, &mut init));
        let (init, peel) =
            self.carried_leaves(init, &names, &template, LoopKind::While(cond), body, span)?;
        if peel && self.start_peeling(span) {
            // The first iteration turns a weak leaf strong: it runs on its own, as
            // `if cond { body; while cond { body } }`, so that it computes as eagerly.
            let c = self.expr(cond)?;
            let c = self.condition_tensor(&c, cond.span)?;
            let again = Expr {
                kind: ExprKind::While {
                    cond: Box::new(cond.clone()),
                    body: body.clone(),
                },
                span,
            };
            let peeled = Block {
                stmts: vec![
                    Stmt {
                        kind: StmtKind::Expr(Expr {
                            kind: ExprKind::Block(body.clone()),
                            span: body.span,
                        }),
                        span: body.span,
                    },
                    Stmt {
                        kind: StmtKind::Expr(again),
                        span,
                    },
                ],
                span: body.span,
            };
            let r = if c.staged_id().is_some() {
                self.staged_if(&c, &peeled, None, span).map(|_| ())
            } else {
                self.scalar_bool(&Value::Tensor(TensorVal::strong_of(c)), cond.span)
                    .and_then(|go| {
                        if go {
                            self.block(&peeled).map(|_| ())
                        } else {
                            Ok(())
                        }
                    })
            };
            self.stop_peeling();
            return r;
        }
        let mut init_ids = vec![self.stager_rng()];
        init_ids.extend(self.leaf_ids(&init, None, span)?);
        let results = self.with_builder_out(span, |ev, b| {
            let lent = RefCell::new(Lent { ev, failed: None });
            let enter = |ev: &mut Eval<'_>, args: &[ValueId]| {
                if let Some((&rng, rest)) = args.split_first() {
                    ev.set_stager_rng(rng);
                    let leaves = ev.staged_like(rest, &init);
                    ev.assign_all(&names, &template, leaves);
                }
            };
            let fail = |l: &mut Lent<'_, '_>, f: Flow| {
                l.failed = Some(f);
                lent_failure()
            };
            let r = b.while_(
                &init_ids,
                |b, args| {
                    let mut l = lent.borrow_mut();
                    swap_builder(l.ev, b);
                    enter(l.ev, args);
                    let r = (|| {
                        let c = l.ev.expr(cond)?;
                        let c = l.ev.condition_tensor(&c, cond.span)?;
                        l.ev.with_stager(cond.span, |s| s.value_of(&c, cond.span))
                    })();
                    swap_builder(l.ev, b);
                    r.map_err(|f| fail(&mut l, f))
                },
                |b, args| {
                    let mut l = lent.borrow_mut();
                    swap_builder(l.ev, b);
                    enter(l.ev, args);
                    let r = l.ev.region_body(body, &names, &template, &init, span);
                    swap_builder(l.ev, b);
                    r.map_err(|f| fail(&mut l, f))
                },
            );
            lent_result(r, lent.into_inner().failed, span)
        })?;
        self.finish_loop(&names, &template, &init, &results);
        Ok(())
    }

    /// `for pat in start..stop { body }` as a `For` region (the caller checked that the
    /// body carries staged values and does not read the loop variable).
    pub(crate) fn staged_for(
        &mut self,
        pat: &Pattern,
        (start, stop): (i64, i64),
        it_span: Span,
        body: &Block,
        span: Span,
    ) -> R<()> {
        let mut names = HashSet::new();
        lang::ast::block_assigned(body, &mut names);
        let (names, template) = self.carried(names);
        let mut init = Vec::new();
        template.iter().for_each(|v| tensor_leaves(v, &mut init));
        let (init, peel) = self.carried_leaves(
            init,
            &names,
            &template,
            LoopKind::For(pat, it_span),
            body,
            span,
        )?;
        if peel && start < stop && self.start_peeling(span) {
            // The first iteration turns a weak leaf strong: it runs on its own first.
            self.push_scope();
            let first = Value::Tensor(TensorVal::strong_of(Tensor::scalar(start)));
            let r = self
                .bind_pat(pat, first, it_span)
                .and_then(|()| self.block(body));
            self.pop_scope();
            let r = match r {
                Ok(_) | Err(Flow::Continue) if start + 1 < stop => {
                    self.staged_for(pat, (start + 1, stop), it_span, body, span)
                }
                Ok(_) | Err(Flow::Continue | Flow::Break) => Ok(()),
                Err(e) => Err(e),
            };
            self.stop_peeling();
            return r;
        }
        let mut init_ids = vec![self.stager_rng()];
        init_ids.extend(self.leaf_ids(&init, None, span)?);
        let bounds = [start, stop, 1]
            .into_iter()
            .map(|x| self.with_stager(span, |s| s.value_of(&Tensor::scalar(x), span)))
            .collect::<R<Vec<_>>>()?;
        let results = self.with_builder_out(span, |ev, b| {
            let lent = RefCell::new(Lent { ev, failed: None });
            let r = b.for_(bounds[0], bounds[1], bounds[2], &init_ids, |b, i, args| {
                let mut l = lent.borrow_mut();
                swap_builder(l.ev, b);
                if let Some((&rng, rest)) = args.split_first() {
                    l.ev.set_stager_rng(rng);
                    let leaves = l.ev.staged_like(rest, &init);
                    l.ev.assign_all(&names, &template, leaves);
                }
                let r = (|| {
                    let iv = l.ev.with_stager(span, |s| Ok(s.tensor(i)))?;
                    l.ev.push_scope();
                    let r =
                        l.ev.bind_pat(pat, Value::Tensor(TensorVal::strong_of(iv)), it_span)
                            .and_then(|()| l.ev.region_body(body, &names, &template, &init, span));
                    l.ev.pop_scope();
                    r
                })();
                swap_builder(l.ev, b);
                r.map_err(|f| {
                    l.failed = Some(f);
                    lent_failure()
                })
            });
            lent_result(r, lent.into_inner().failed, span)
        })?;
        self.finish_loop(&names, &template, &init, &results);
        Ok(())
    }

    /// Runs a loop body in a region: the carried values it yields (the random key first).
    fn region_body(
        &mut self,
        body: &Block,
        names: &[Name],
        template: &[Value],
        init: &[TensorVal],
        span: Span,
    ) -> R<Vec<ValueId>> {
        match self.block(body) {
            Ok(_) => {}
            Err(Flow::Error(e)) => return Err(Flow::Error(e)),
            Err(_) => {
                return Err(staging_error(
                    "`break`, `continue` or `return` inside a loop staged as a region (its \
                     condition or its carried values are known only at run time)"
                        .into(),
                    span,
                ));
            }
        }
        let vals: Vec<Value> = names.iter().filter_map(|n| self.lookup_local(n)).collect();
        if vals.len() != template.len()
            || !vals.iter().zip(template).all(|(a, b)| same_skeleton(a, b))
        {
            return Err(staging_error(
                "a loop changes a variable's value in more than its tensors (a function, a \
                 string or a structure); staged code needs one"
                    .into(),
                span,
            ));
        }
        let mut leaves = Vec::new();
        vals.iter().for_each(|v| tensor_leaves(v, &mut leaves));
        let leaves = self.like_carried(leaves, init, span)?;
        let mut ids = vec![self.stager_rng()];
        ids.extend(self.leaf_ids(&leaves, Some(init), span)?);
        Ok(ids)
    }

    /// Marks the loop at `span` as being peeled; false when it already is (the loop after
    /// a peeled iteration is not peeled again).
    fn start_peeling(&self, span: Span) -> bool {
        let mut st = self.st.stage.borrow_mut();
        let Some(s) = st.last_mut() else {
            return false;
        };
        if s.peeling.contains(&span) {
            return false;
        }
        s.peeling.push(span);
        true
    }

    /// Ends the peel [`Eval::start_peeling`] began.
    fn stop_peeling(&self) {
        if let Some(s) = self.st.stage.borrow_mut().last_mut() {
            s.peeling.pop();
        }
    }

    /// The body's new values of the carried leaves, in the carried form: a leaf carried weak
    /// stays as the body made it (the dry run found it weak), the others strong.
    fn like_carried(
        &self,
        leaves: Vec<TensorVal>,
        init: &[TensorVal],
        span: Span,
    ) -> R<Vec<TensorVal>> {
        leaves
            .into_iter()
            .zip(init)
            .map(|(l, i)| {
                if i.weak && l.weak {
                    Ok(l)
                } else {
                    Ok(TensorVal::strong_of(self.cast(&l.t, l.dtype, span)?))
                }
            })
            .collect()
    }

    /// The leaves a loop carries, from their values at its start. A strong leaf is carried
    /// as it is. A weak one (a literal, stored wider than its dtype) stays weak only if the
    /// body keeps it weak, as eager mode would go on computing it in the wider dtype; that
    /// is found by a dry run of the condition and body into a scratch graph, which is then
    /// thrown away (its prints and draws never run). Otherwise it is carried strong.
    fn carried_leaves(
        &mut self,
        init: Vec<TensorVal>,
        names: &[Name],
        template: &[Value],
        kind: LoopKind<'_>,
        body: &Block,
        span: Span,
    ) -> R<(Vec<TensorVal>, bool)> {
        if !init.iter().any(|l| l.weak) {
            return Ok((init, false));
        }
        self.st
            .stage
            .borrow_mut()
            .push(super::Stager::new("dry_run"));
        let saved = self.save_frames();
        let after = (|| {
            let staged = self.with_stager(span, |s| Ok(s.inputs_like(&init)))?;
            self.assign_all(names, template, staged);
            self.push_scope();
            let r = (|| {
                match kind {
                    LoopKind::While(cond) => {
                        self.expr(cond)?;
                    }
                    LoopKind::For(pat, it_span) => {
                        let i = self.with_stager(span, |s| {
                            let v = s.b.input(ir::TensorType::known(ir::DType::I64, &[]));
                            Ok(s.tensor(v))
                        })?;
                        self.bind_pat(pat, Value::Tensor(TensorVal::strong_of(i)), it_span)?;
                    }
                }
                match self.block(body) {
                    Ok(_) | Err(Flow::Break | Flow::Continue | Flow::Return(_)) => Ok(()),
                    Err(e) => Err(e),
                }
            })();
            self.pop_scope();
            r?;
            let vals: Vec<Value> = names.iter().filter_map(|n| self.lookup_local(n)).collect();
            let mut leaves = Vec::new();
            vals.iter().for_each(|v| tensor_leaves(v, &mut leaves));
            Ok(leaves)
        })();
        self.restore_frames(saved);
        self.st.stage.borrow_mut().pop();
        let after = after?;
        let mut peel = false;
        let leaves = init
            .into_iter()
            .enumerate()
            .map(|(k, l)| {
                let kept = after
                    .get(k)
                    .is_some_and(|a| a.weak && a.t.dtype() == l.t.dtype());
                peel |= l.weak && !kept;
                if l.weak && kept {
                    Ok(l)
                } else {
                    Ok(TensorVal::strong_of(self.cast(&l.t, l.dtype, span)?))
                }
            })
            .collect::<R<Vec<_>>>()?;
        Ok((leaves, peel))
    }

    /// After a loop node: the random key and the variables take its results.
    fn finish_loop(
        &mut self,
        names: &[Name],
        template: &[Value],
        init: &[TensorVal],
        results: &[ValueId],
    ) {
        if let Some((&rng, rest)) = results.split_first() {
            self.set_stager_rng(rng);
            let leaves = self.staged_like(rest, init);
            self.assign_all(names, template, leaves);
        }
    }

    /// `l && r` or `l || r` with a side known only at run time: both were evaluated (there
    /// is no short circuit in a graph) and are combined elementwise.
    pub(crate) fn staged_logic(
        &self,
        op: lang::ast::BinOp,
        l: &Value,
        r: &Value,
        lspan: Span,
        rspan: Span,
        span: Span,
    ) -> R<Value> {
        let a = self.condition_tensor(l, lspan)?;
        let b = self.condition_tensor(r, rspan)?;
        let op = match op {
            lang::ast::BinOp::And => ir::BinaryOp::And,
            _ => ir::BinaryOp::Or,
        };
        let t = self.exec(&Op::Binary { op }, &[&a, &b], span)?;
        Ok(Value::Tensor(TensorVal::strong_of(t)))
    }

    /// A condition's tensor, staged or not (a staged `while` condition may be known).
    pub(crate) fn condition_tensor(&self, v: &Value, span: Span) -> R<Tensor> {
        match v {
            Value::Tensor(t) if t.rank() == 0 && t.dtype == ir::DType::Bool => Ok(t.t.clone()),
            other => Err(crate::eval::errors::mismatch(
                format!(
                    "a condition must be a scalar bool, found {}",
                    other.describe()
                ),
                span,
            )),
        }
    }
}

/// How a staged `if` turns a branch's outcome into the values the branch yields.
type Finish<'a> = dyn Fn(&mut Eval<'_>, R<Value>) -> R<Vec<Value>> + 'a;

/// What a dry run of a loop evaluates before its body: a `while` condition, or the
/// binding of a `for` loop's variable.
#[derive(Clone, Copy)]
enum LoopKind<'a> {
    While(&'a Expr),
    For(&'a Pattern, Span),
}

/// Whether two values agree in everything but their tensors' elements: the same structure,
/// the same non-tensor parts, tensors of the same dtype and shape.
fn same_skeleton(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Tensor(x), Value::Tensor(y)) => x.dtype == y.dtype && x.shape() == y.shape(),
        (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same_skeleton(p, q))
        }
        (Value::Record(x), Value::Record(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((k, p), (l, q))| k == l && same_skeleton(p, q))
        }
        (x, y) => same_value(x, y),
    }
}

/// Whether a loop over known bounds should be a `For` region rather than unrolled: it
/// carries staged values and its body does not read the loop variable (which would then be
/// known only at run time, and could no longer index or size anything).
pub(crate) fn for_as_region(ev: &Eval<'_>, pat: &Pattern, body: &Block, trips: usize) -> bool {
    if trips < 2 || !ev.staging() {
        return false;
    }
    let mut used = HashSet::new();
    lang::ast::block_names(body, &mut used);
    let mut bound = HashSet::new();
    pattern_names(pat, &mut bound);
    if bound.iter().any(|n| used.contains(n)) {
        return false;
    }
    let mut names = HashSet::new();
    lang::ast::block_assigned(body, &mut names);
    names
        .iter()
        .filter_map(|n| ev.lookup_local(n))
        .any(|v| has_staged(&v))
}

fn pattern_names(p: &Pattern, out: &mut HashSet<Name>) {
    use lang::ast::PatternKind;
    match &p.kind {
        PatternKind::Name(id) => {
            out.insert(id.name.clone());
        }
        PatternKind::Wildcard => {}
        PatternKind::Tuple(ps) => ps.iter().for_each(|q| pattern_names(q, out)),
        PatternKind::Record(fs) => {
            for f in fs {
                match &f.pat {
                    Some(q) => pattern_names(q, out),
                    None => {
                        out.insert(f.name.name.clone());
                    }
                }
            }
        }
    }
}
