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
//! Regions have one exit: a `break`, `continue` or `return` taken on a run-time condition
//! becomes an exit code that the code after it, the loop and the call carry as data
//! ([`super::exits`]). A loop over known bounds whose body reads its variable is unrolled
//! instead.

use std::cell::RefCell;
use std::collections::HashSet;

use devices::Tensor;
use ir::Op;
use ir::graph::{BuildError, GraphBuilder, ValueId};
use lang::Span;
use lang::ast::{Block, Expr, ExprKind, Name, Pattern, StmtKind};

use super::exits::{self, Arm, Code, Outcome, Yields};
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
        let names = self.visible(names);
        let values = names.iter().filter_map(|n| self.lookup_local(n)).collect();
        (names, values)
    }

    /// Those of `names` that are local variables visible here, sorted.
    pub(crate) fn visible(&self, names: HashSet<Name>) -> Vec<Name> {
        let mut names: Vec<Name> = names.into_iter().filter(|n| self.is_local(n)).collect();
        names.sort();
        names
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
    /// the branches assign take the node's results. A branch may exit (`exits.rs`).
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
        let names = self.visible(names);
        let then_ex = lang::ast::block_exits(then);
        let else_ex = els.map(lang::ast::expr_exits).unwrap_or_default();
        let run_then = |ev: &mut Eval<'_>| exits::outcome(ev.block(then));
        let run_else =
            |ev: &mut Eval<'_>| exits::outcome(els.map_or(Ok(Value::Unit), |e| ev.expr(e)));
        // The branch staged first decides the shape of the `if`'s value: one that goes on
        // (`if c { break } else { v }` stages `v` first, on the negated condition).
        let swap = block_surely_exits(then) && !els.is_some_and(expr_surely_exits);
        let then_returns = block_surely_exits_by(then, true);
        let else_returns = els.is_some_and(|e| expr_surely_exits_by(e, true));
        let else_exits = els.is_some_and(expr_surely_exits);
        let (cond, arms, first_ex, first_returns, second_ex, second_surely_exits) = if swap {
            let not = Op::Unary {
                op: ir::UnaryOp::Not,
            };
            let c = self.exec(&not, &[cond], span)?;
            let arms: [&Arm<'_>; 2] = [&run_else, &run_then];
            (c, arms, else_ex, else_returns, then_ex, true)
        } else {
            let arms: [&Arm<'_>; 2] = [&run_then, &run_else];
            (
                cond.clone(),
                arms,
                then_ex,
                then_returns,
                else_ex,
                else_exits,
            )
        };
        // What the branch staged second gives that the first may not (a value, when the
        // first may exit early; a value returned, unless the first surely returns) gets its
        // shape from a dry run of the second.
        let second_gives_value = els.is_some() && !second_surely_exits;
        let prior =
            if (second_ex.returns && !first_returns) || (second_gives_value && first_ex.any()) {
                self.dry_run(arms[1])?
            } else {
                None
            };
        let y = Yields {
            value: els.is_some(),
            code: then_ex.any() || else_ex.any(),
            prior_value: prior.as_ref().and_then(|o| o.value.as_ref()),
            prior_ret: prior.as_ref().and_then(|o| o.ret.as_ref()),
        };
        let o = self.exit_if(&cond, span, arms, &y, &names)?;
        exits::into_flow(o)
    }

    /// What `arm` gives, from a dry run into a scratch graph that is thrown away (only the
    /// shapes of its value and of the value it returns are wanted).
    fn dry_run(&mut self, arm: &Arm<'_>) -> R<Option<Outcome>> {
        self.push_scratch();
        let saved = self.save_frames();
        let r = arm(self);
        self.restore_frames(saved);
        self.st.stage.borrow_mut().pop();
        r.map(Some)
    }

    /// Pushes a scratch stager for a dry run; it refuses recursion as the real one does.
    fn push_scratch(&self) {
        let mut st = self.st.stage.borrow_mut();
        let mut scratch = super::Stager::new("dry_run");
        if let Some(s) = st.last() {
            scratch.active = s.active.clone();
            scratch.peeling = s.peeling.clone();
        }
        st.push(scratch);
    }

    /// After one iteration staged on its own (a peeled first iteration) that ended with
    /// `o` (its `continue`s done with): `rest`, the rest of the loop, runs on the paths that
    /// went on. Gives the loop's outcome (its `break`s done with).
    fn then_rest(&mut self, o: Outcome, names: &[Name], span: Span, rest: &Arm<'_>) -> R<Outcome> {
        match o.code.single() {
            Some(exits::GO) => rest(self),
            Some(exits::BREAK) => exits::outcome(Ok(Value::Unit)),
            Some(_) => Ok(o),
            None => {
                let mut g = self.guard(o, names, false, span, rest)?;
                g.code = self.remap(g.code, exits::BREAK, exits::GO, span)?;
                Ok(g)
            }
        }
    }

    /// Builds an `If` region on `cond` whose branches run `then_run` and `else_run` (each
    /// gives the values its branch yields; what a branch rebinds is undone after it) and
    /// gives the node's results as values: the `then` values with their tensors replaced.
    /// The `else` leaves are converted to the `then` ones; a result is weak only when both
    /// branches' leaf was.
    pub(crate) fn if_region(
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
    /// they are now), or where an iteration before exited on some run-time paths only
    /// (`pending`, its `continue`s done with): a `While` region.
    pub(crate) fn staged_while(
        &mut self,
        cond: &Expr,
        body: &Block,
        span: Span,
        pending: Option<Outcome>,
    ) -> R<()> {
        let mut names = HashSet::new();
        lang::ast::expr_assigned(cond, &mut names);
        lang::ast::block_assigned(body, &mut names);
        let (names, template) = self.carried(names);
        let mut init = Vec::new();
        template.iter().for_each(|v| tensor_leaves(v, &mut init));
        let ex = lang::ast::block_exits(body);
        let want_ret = ex.returns && pending.as_ref().is_none_or(|p| p.ret.is_none());
        let kind = LoopKind::While(cond);
        let dry = self.carried_leaves(init, &names, &template, kind, body, want_ret, span)?;
        if dry.peel && pending.is_none() && self.start_peeling(span) {
            // The first iteration turns a weak leaf strong: it runs on its own, as
            // `if cond { body; while cond { body } }`, so that it computes as eagerly.
            let r = self.peeled_while(cond, body, &names, dry.ret.as_ref(), ex.any(), span);
            self.stop_peeling();
            return r;
        }
        let slots = self.exit_slots(ex.any() || pending.is_some(), pending, dry.ret, span)?;
        let lp = Looped {
            names,
            template,
            init: dry.leaves,
            slots,
        };
        let init_ids = self.loop_init(&lp, span)?;
        let results = self.with_builder_out(span, |ev, b| {
            let lent = RefCell::new(Lent { ev, failed: None });
            let fail = |l: &mut Lent<'_, '_>, f: Flow| {
                l.failed = Some(f);
                lent_failure()
            };
            let r = b.while_(
                &init_ids,
                |b, args| {
                    let mut l = lent.borrow_mut();
                    swap_builder(l.ev, b);
                    let r = (|| {
                        let c = match l.ev.enter_loop(&lp, args, span)? {
                            None => {
                                let c = l.ev.expr(cond)?;
                                l.ev.condition_tensor(&c, cond.span)?
                            }
                            Some((code, _)) => l.ev.cond_unless_exited(&code, cond)?,
                        };
                        l.ev.with_stager(cond.span, |s| s.value_of(&c, cond.span))
                    })();
                    swap_builder(l.ev, b);
                    r.map_err(|f| fail(&mut l, f))
                },
                |b, args| {
                    let mut l = lent.borrow_mut();
                    swap_builder(l.ev, b);
                    let r =
                        l.ev.enter_loop(&lp, args, span)
                            .and_then(|_| l.ev.region_body(&lp, span, &|ev| ev.block(body)));
                    swap_builder(l.ev, b);
                    r.map_err(|f| fail(&mut l, f))
                },
            );
            lent_result(r, lent.into_inner().failed, span)
        })?;
        self.finish_loop(&lp, &results, span)
    }

    /// A staged `while` whose first iteration is staged on its own (see
    /// [`Eval::staged_while`]).
    fn peeled_while(
        &mut self,
        cond: &Expr,
        body: &Block,
        names: &[Name],
        dry_ret: Option<&Value>,
        exits: bool,
        span: Span,
    ) -> R<()> {
        let c = self.expr(cond)?;
        let c = self.condition_tensor(&c, cond.span)?;
        let first = |ev: &mut Eval<'_>| -> R<Outcome> {
            let r = ev.block(body);
            let o = ev.iteration_end(r, span)?;
            let rest = |ev: &mut Eval<'_>| {
                exits::outcome(
                    ev.staged_while(cond, body, span, None)
                        .map(|()| Value::Unit),
                )
            };
            ev.then_rest(o, names, span, &rest)
        };
        if c.staged_id().is_some() {
            let none = |_: &mut Eval<'_>| exits::outcome(Ok(Value::Unit));
            let y = Yields {
                value: false,
                code: exits,
                prior_value: None,
                prior_ret: dry_ret,
            };
            let o = self.exit_if(&c, span, [&first, &none], &y, names)?;
            return exits::into_flow(o).map(|_| ());
        }
        if self.scalar_bool(&Value::Tensor(TensorVal::strong_of(c)), cond.span)? {
            let o = first(self)?;
            return exits::into_flow(o).map(|_| ());
        }
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
        let ex = lang::ast::block_exits(body);
        let kind = LoopKind::For(pat, it_span);
        let dry = self.carried_leaves(init, &names, &template, kind, body, ex.returns, span)?;
        if dry.peel && start < stop && self.start_peeling(span) {
            // The first iteration turns a weak leaf strong: it runs on its own first.
            let r = self.peeled_for(pat, (start, stop), it_span, body, &names, span);
            self.stop_peeling();
            return r;
        }
        let slots = self.exit_slots(ex.any(), None, dry.ret, span)?;
        // The codes an iteration may start with: once one exited, the rest keep its exit.
        let may_in: u8 = (1 << exits::GO)
            | if ex.loops { 1 << exits::BREAK } else { 0 }
            | if slots.as_ref().is_some_and(|s| s.ret.is_some()) {
                1 << exits::RETURN
            } else {
                0
            };
        let lp = Looped {
            names,
            template,
            init: dry.leaves,
            slots,
        };
        let init_ids = self.loop_init(&lp, span)?;
        let bounds = [start, stop, 1]
            .into_iter()
            .map(|x| self.with_stager(span, |s| s.value_of(&Tensor::scalar(x), span)))
            .collect::<R<Vec<_>>>()?;
        let results = self.with_builder_out(span, |ev, b| {
            let lent = RefCell::new(Lent { ev, failed: None });
            let r = b.for_(bounds[0], bounds[1], bounds[2], &init_ids, |b, i, args| {
                let mut l = lent.borrow_mut();
                swap_builder(l.ev, b);
                let r = (|| {
                    let entered = l.ev.enter_loop(&lp, args, span)?;
                    let iv = l.ev.with_stager(span, |s| Ok(s.tensor(i)))?;
                    l.ev.push_scope();
                    let r =
                        l.ev.bind_pat(pat, Value::Tensor(TensorVal::strong_of(iv)), it_span)
                            .and_then(|()| match entered {
                                Some((code, ret)) if may_in.count_ones() > 1 => {
                                    let o = Outcome {
                                        code: Code {
                                            may: may_in,
                                            t: Some(code),
                                        },
                                        value: None,
                                        ret,
                                    };
                                    l.ev.region_body(&lp, span, &|ev| {
                                        ev.guarded_block(o.clone(), body, span)
                                    })
                                }
                                _ => l.ev.region_body(&lp, span, &|ev| ev.block(body)),
                            });
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
        self.finish_loop(&lp, &results, span)
    }

    /// A `For` region whose first iteration is staged on its own (see
    /// [`Eval::staged_for`]).
    fn peeled_for(
        &mut self,
        pat: &Pattern,
        (start, stop): (i64, i64),
        it_span: Span,
        body: &Block,
        names: &[Name],
        span: Span,
    ) -> R<()> {
        self.push_scope();
        let first = Value::Tensor(TensorVal::strong_of(Tensor::scalar(start)));
        let r = self
            .bind_pat(pat, first, it_span)
            .and_then(|()| self.block(body));
        self.pop_scope();
        let o = self.iteration_end(r, span)?;
        let rest = |ev: &mut Eval<'_>| {
            let r = if start + 1 < stop {
                ev.staged_for(pat, (start + 1, stop), it_span, body, span)
            } else {
                Ok(())
            };
            exits::outcome(r.map(|()| Value::Unit))
        };
        let o = self.then_rest(o, names, span, &rest)?;
        exits::into_flow(o).map(|_| ())
    }

    /// What a loop region carries besides the variables when its body may exit: the exit
    /// code (from `pending`, else `GO`) and the value returned (from `pending`, else zeros
    /// shaped like the dry run's `dry_ret`), both strong.
    fn exit_slots(
        &mut self,
        needed: bool,
        pending: Option<Outcome>,
        dry_ret: Option<Value>,
        span: Span,
    ) -> R<Option<ExitSlots>> {
        if !needed {
            return Ok(None);
        }
        let (code, ret) = match pending {
            Some(p) => (p.code, p.ret),
            None => (Code::known(exits::GO), None),
        };
        let ret = match (ret, dry_ret) {
            (Some(r), _) => Some(self.strong_value(&r, span)?),
            (None, Some(d)) => Some(self.strong_value(&self.zeros_like(&d, span)?, span)?),
            (None, None) => None,
        };
        Ok(Some(ExitSlots {
            may: std::cell::Cell::new(code.may | (1 << exits::GO)),
            code: code.tensor(),
            ret,
        }))
    }

    /// `v` with every tensor leaf strong, in its dtype.
    fn strong_value(&self, v: &Value, span: Span) -> R<Value> {
        let mut leaves = Vec::new();
        tensor_leaves(v, &mut leaves);
        let strong = leaves
            .into_iter()
            .map(|l| Ok(TensorVal::strong_of(self.cast(&l.t, l.dtype, span)?)))
            .collect::<R<Vec<_>>>()?;
        Ok(substitute(v, &mut strong.into_iter()))
    }

    /// A loop region's initial carried values: the random key, the variables' leaves, then
    /// the exit slots.
    fn loop_init(&mut self, lp: &Looped, span: Span) -> R<Vec<ValueId>> {
        let mut ids = vec![self.stager_rng()];
        ids.extend(self.leaf_ids(&lp.init, None, span)?);
        if let Some(sl) = &lp.slots {
            ids.extend(self.leaf_ids(&[TensorVal::strong_of(sl.code.clone())], None, span)?);
            if let Some(r) = &sl.ret {
                let mut leaves = Vec::new();
                tensor_leaves(r, &mut leaves);
                ids.extend(self.leaf_ids(&leaves, None, span)?);
            }
        }
        Ok(ids)
    }

    /// Takes a loop's carried values `args` (a region's block arguments, or the node's
    /// results): the random key and the variables take them. Gives the exit code and the
    /// value returned it carries, if any.
    fn enter_loop(
        &mut self,
        lp: &Looped,
        args: &[ValueId],
        span: Span,
    ) -> R<Option<(Tensor, Option<Value>)>> {
        let Some((&rng, rest)) = args.split_first() else {
            return Ok(None);
        };
        self.set_stager_rng(rng);
        let n = lp.init.len();
        let leaves = self.staged_like(rest.get(..n).unwrap_or_default(), &lp.init);
        self.assign_all(&lp.names, &lp.template, leaves);
        let Some(sl) = &lp.slots else {
            return Ok(None);
        };
        let tail = rest.get(n..).unwrap_or_default();
        let Some((&code, ret_ids)) = tail.split_first() else {
            return Err(crate::eval::errors::internal(
                "a loop lost its exit code",
                span,
            ));
        };
        let code = self.with_stager(span, |s| Ok(s.tensor(code)))?;
        let ret = sl.ret.as_ref().map(|t| {
            let mut like = Vec::new();
            tensor_leaves(t, &mut like);
            let staged = self.staged_like(ret_ids, &like);
            substitute(t, &mut staged.into_iter())
        });
        Ok(Some((code, ret)))
    }

    /// A `while` condition in a region that carries an exit code: evaluated only while the
    /// code is `GO`, false otherwise.
    fn cond_unless_exited(&mut self, code: &Tensor, cond: &Expr) -> R<Tensor> {
        let go = self.code_is(code, exits::GO, cond.span)?;
        let vals = self.if_region(
            &go,
            cond.span,
            &|ev| {
                let c = ev.expr(cond)?;
                let c = ev.condition_tensor(&c, cond.span)?;
                Ok(vec![Value::Tensor(TensorVal::strong_of(c))])
            },
            &|_| {
                Ok(vec![Value::Tensor(TensorVal::strong_of(Tensor::scalar(
                    false,
                )))])
            },
        )?;
        match vals.into_iter().next() {
            Some(Value::Tensor(t)) => Ok(t.t),
            _ => Err(crate::eval::errors::internal(
                "a loop condition was lost",
                cond.span,
            )),
        }
    }

    /// Runs a loop body in a region (`run`): the carried values it yields (the random key
    /// first, the exit slots last).
    fn region_body(
        &mut self,
        lp: &Looped,
        span: Span,
        run: &dyn Fn(&mut Eval<'_>) -> R<Value>,
    ) -> R<Vec<ValueId>> {
        let r = run(self);
        let o = match &lp.slots {
            Some(_) => self.iteration_end(r, span)?,
            None => match r {
                Ok(v) => exits::outcome(Ok(v))?,
                Err(Flow::Error(e)) => return Err(Flow::Error(e)),
                Err(_) => {
                    return Err(staging_error(
                        "this loop exits in a way staging did not foresee".into(),
                        span,
                    ));
                }
            },
        };
        let vals: Vec<Value> = lp
            .names
            .iter()
            .filter_map(|n| self.lookup_local(n))
            .collect();
        if vals.len() != lp.template.len()
            || !vals
                .iter()
                .zip(&lp.template)
                .all(|(a, b)| same_skeleton(a, b))
        {
            // A tensor whose dtype or shape changes is the usual case (a value that grows
            // each iteration); say which variable and how, rather than blame its kind.
            let grown = lp.names.iter().zip(&vals).zip(&lp.template).find_map(|((n, a), b)| {
                match (a, b) {
                    (Value::Tensor(x), Value::Tensor(y)) if !same_skeleton(a, b) => Some(format!(
                        "this loop changes `{n}` from {} to {}: a staged loop carries values of one dtype and shape from iteration to iteration (as `jax.lax.while_loop` does)",
                        crate::value::tensor_type_text(y.dtype, y.shape()),
                        crate::value::tensor_type_text(x.dtype, x.shape()),
                    )),
                    _ => None,
                }
            });
            return Err(staging_error(
                grown.unwrap_or_else(|| {
                    "a loop changes a variable's value in more than its tensors (a function, a \
                     string or a structure); staged code needs one"
                        .into()
                }),
                span,
            ));
        }
        let mut leaves = Vec::new();
        vals.iter().for_each(|v| tensor_leaves(v, &mut leaves));
        let leaves = self.like_carried(leaves, &lp.init, span)?;
        let mut ids = vec![self.stager_rng()];
        ids.extend(self.leaf_ids(&leaves, Some(&lp.init), span)?);
        if let Some(sl) = &lp.slots {
            sl.may.set(sl.may.get() | o.code.may);
            let code = TensorVal::strong_of(o.code.tensor());
            ids.extend(self.leaf_ids(&[code], None, span)?);
            let ret = match (&sl.ret, o.ret) {
                (Some(_), Some(r)) => Some(r),
                (Some(t), None) => Some(self.zeros_like(t, span)?),
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(staging_error(
                        "a `return` inside this loop was not found when it was first staged".into(),
                        span,
                    ));
                }
            };
            if let (Some(t), Some(r)) = (&sl.ret, ret) {
                let (mut want, mut got) = (Vec::new(), Vec::new());
                tensor_leaves(t, &mut want);
                tensor_leaves(&r, &mut got);
                ids.extend(self.leaf_ids(&got, Some(&want), span)?);
            }
        }
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
    /// thrown away (its prints and draws never run). Otherwise it is carried strong. The dry
    /// run also finds the shape of a value the body returns (`want_ret`).
    #[allow(clippy::too_many_arguments)]
    fn carried_leaves(
        &mut self,
        init: Vec<TensorVal>,
        names: &[Name],
        template: &[Value],
        kind: LoopKind<'_>,
        body: &Block,
        want_ret: bool,
        span: Span,
    ) -> R<Dry> {
        if !want_ret && !init.iter().any(|l| l.weak) {
            return Ok(Dry {
                leaves: init,
                peel: false,
                ret: None,
            });
        }
        self.push_scratch();
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
                exits::outcome(self.block(body))
            })();
            self.pop_scope();
            let o = r?;
            let vals: Vec<Value> = names.iter().filter_map(|n| self.lookup_local(n)).collect();
            let mut leaves = Vec::new();
            vals.iter().for_each(|v| tensor_leaves(v, &mut leaves));
            Ok((leaves, o.ret))
        })();
        self.restore_frames(saved);
        self.st.stage.borrow_mut().pop();
        let (after, ret) = after?;
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
        Ok(Dry { leaves, peel, ret })
    }

    /// After a loop node: the random key and the variables take its results; a loop that
    /// carried an exit code is done with its `break`s, and a `return` goes on out.
    fn finish_loop(&mut self, lp: &Looped, results: &[ValueId], span: Span) -> R<()> {
        let Some((code, ret)) = self.enter_loop(lp, results, span)? else {
            return Ok(());
        };
        let may = lp.slots.as_ref().map_or(1 << exits::GO, |s| s.may.get());
        let o = Outcome {
            code: Code { may, t: Some(code) }.narrowed(may),
            value: Some(Value::Unit),
            ret,
        };
        self.loop_end(o, span)
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

/// What a loop region carries: the random key, the leaves of the variables `names`
/// (whose values are `template` with leaves like `init`), then the exit slots.
struct Looped {
    names: Vec<Name>,
    template: Vec<Value>,
    init: Vec<TensorVal>,
    slots: Option<ExitSlots>,
}

/// The exit code a loop region carries, and the value returned (strong leaves), when its
/// body may exit; `may` gathers the codes the body may end with.
struct ExitSlots {
    code: Tensor,
    ret: Option<Value>,
    may: std::cell::Cell<u8>,
}

/// What a loop's dry run found: the leaves to carry, whether to peel the first iteration,
/// and the value the body returns.
struct Dry {
    leaves: Vec<TensorVal>,
    peel: bool,
    ret: Option<Value>,
}

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

/// Whether a block surely exits (a `break`, `continue` or `return` among its statements,
/// or an `if` whose branches all do): its value is never wanted.
fn block_surely_exits(b: &Block) -> bool {
    block_surely_exits_by(b, false)
}

/// [`block_surely_exits`] of an expression.
fn expr_surely_exits(e: &Expr) -> bool {
    expr_surely_exits_by(e, false)
}

/// Whether a block surely exits, by a `return` only when `returns`.
fn block_surely_exits_by(b: &Block, returns: bool) -> bool {
    b.stmts
        .iter()
        .any(|s| matches!(&s.kind, StmtKind::Expr(e) if expr_surely_exits_by(e, returns)))
}

/// [`block_surely_exits_by`] of an expression.
fn expr_surely_exits_by(e: &Expr, returns: bool) -> bool {
    match &e.kind {
        ExprKind::Break | ExprKind::Continue => !returns,
        ExprKind::Return(_) => true,
        ExprKind::Block(b) => block_surely_exits_by(b, returns),
        ExprKind::If {
            then, els: Some(x), ..
        } => block_surely_exits_by(then, returns) && expr_surely_exits_by(x, returns),
        _ => false,
    }
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
