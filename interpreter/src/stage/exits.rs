//! `break`, `continue` and `return` taken on conditions known only at run time.
//!
//! A region has one exit, so staged code that may leave early carries an *exit code*, an
//! `i64[]` graph value: [`GO`] (it went on), [`BREAK`], [`CONTINUE`] or [`RETURN`]. An `if`
//! on a staged condition whose branches may exit yields the code with its other results,
//! and the value returned (zeros on the paths that did not return). What follows such an
//! `if` then runs under a *guard*, `if code == GO { rest } else { as it was }`:
//!
//! - the statements after it in its block ([`Eval::after_exit`]);
//! - the next iterations of a loop unrolled at staging time, one guard per iteration
//!   (not nested, so a long loop stays shallow); a `while` whose condition was known
//!   becomes a `While` region carrying the code from there on;
//! - a loop staged as a region carries the code (and the value returned) as loop-carried
//!   values; its condition is `code == GO && cond`, and a `For` body runs under a guard.
//!
//! A loop turns `CONTINUE` into `GO` after each iteration and `BREAK` into `GO` after its
//! last; a call turns the code into its result, `if code == RETURN { ret } else { value }`.
//! Which codes are possible is tracked at staging time ([`Code::may`]), so code whose
//! exit is known (both branches break, say) goes back to the evaluator's ordinary
//! [`Flow`], and no code is staged for it.
//!
//! A branch's value and the value it returns have the shape the branch that runs first
//! gives them; the other branch fills what it lacks with zeros of that shape. The branch
//! that goes on, or that returns, is therefore staged first.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;

use devices::Tensor;
use ir::{CmpOp, Op};
use lang::Span;
use lang::ast::{Block, Name};

use super::{staging_error, substitute, tensor_leaves};
use crate::eval::Eval;
use crate::eval::errors::{self, Flow, R};
use crate::value::{TensorVal, Value};

/// The code of a path that went on.
pub(crate) const GO: u8 = 0;
/// The code of a path that left its loop.
pub(crate) const BREAK: u8 = 1;
/// The code of a path that skipped the rest of its loop's iteration.
pub(crate) const CONTINUE: u8 = 2;
/// The code of a path that returned.
pub(crate) const RETURN: u8 = 3;

/// Which exit a piece of staged code took: known at staging time when only one is
/// possible, an `i64[]` graph value otherwise.
#[derive(Clone, Debug)]
pub(crate) struct Code {
    /// The codes some path may have, as a bit set.
    pub may: u8,
    /// The staged code, when more than one is possible.
    pub t: Option<Tensor>,
}

impl Code {
    /// The code `c`, known.
    pub fn known(c: u8) -> Code {
        Code {
            may: 1 << c,
            t: None,
        }
    }

    /// The code, when only one is possible.
    pub fn single(&self) -> Option<u8> {
        (self.may.count_ones() == 1).then(|| self.may.trailing_zeros() as u8)
    }

    /// Whether some path may have code `c`.
    pub fn may(&self, c: u8) -> bool {
        self.may & (1 << c) != 0
    }

    /// The code as a tensor, staged or a known scalar.
    pub(crate) fn tensor(&self) -> Tensor {
        match &self.t {
            Some(t) => t.clone(),
            None => Tensor::scalar(i64::from(self.single().unwrap_or(GO))),
        }
    }

    /// The code with `may` narrowed: the staged value is dropped when one code is left.
    pub(crate) fn narrowed(&self, may: u8) -> Code {
        let mut c = Code {
            may,
            t: self.t.clone(),
        };
        if c.single().is_some() {
            c.t = None;
        }
        c
    }
}

/// How staged code ended: its exit code, its value on the paths that went on (`None` when
/// none did), and the value returned on the paths that returned.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub code: Code,
    pub value: Option<Value>,
    pub ret: Option<Value>,
}

impl Outcome {
    /// The outcome of code that went on with `v`.
    fn went_on(v: Value) -> Outcome {
        Outcome {
            code: Code::known(GO),
            value: Some(v),
            ret: None,
        }
    }
}

/// The outcome of evaluating something (a runtime error stays an error).
pub(crate) fn outcome(r: R<Value>) -> R<Outcome> {
    let exited = |c: u8, ret: Option<Value>| Outcome {
        code: Code::known(c),
        value: None,
        ret,
    };
    match r {
        Ok(v) => Ok(Outcome::went_on(v)),
        Err(Flow::Break) => Ok(exited(BREAK, None)),
        Err(Flow::Continue) => Ok(exited(CONTINUE, None)),
        Err(Flow::Return(v)) => Ok(exited(RETURN, Some(v))),
        Err(Flow::Exit(o)) => Ok(*o),
        Err(e) => Err(e),
    }
}

/// An outcome back as the evaluator's result: the ordinary [`Flow`] when its code is
/// known, [`Flow::Exit`] otherwise.
pub(crate) fn into_flow(o: Outcome) -> R<Value> {
    match o.code.single() {
        Some(GO) => Ok(o.value.unwrap_or(Value::Unit)),
        Some(BREAK) => Err(Flow::Break),
        Some(CONTINUE) => Err(Flow::Continue),
        Some(_) => Err(Flow::Return(o.ret.unwrap_or(Value::Unit))),
        None => Err(Flow::Exit(Box::new(o))),
    }
}

/// One arm of an [`Eval::exit_if`]: runs a branch and gives its outcome.
pub(crate) type Arm<'a> = dyn Fn(&mut Eval<'_>) -> R<Outcome> + 'a;

/// What an [`Eval::exit_if`] region yields besides the variables.
pub(crate) struct Yields<'a> {
    /// The branches' value (else unit).
    pub value: bool,
    /// An exit code (the branches may exit).
    pub code: bool,
    /// The shape of the value, when the arm staged first may not give one (from a dry run
    /// of the second).
    pub prior_value: Option<&'a Value>,
    /// The shape of the value returned, when the arm staged first may not give one: the
    /// value returned before a guard, or a dry run's of the second arm.
    pub prior_ret: Option<&'a Value>,
}

impl Eval<'_> {
    /// `t == c` for a code tensor.
    pub(crate) fn code_is(&self, t: &Tensor, c: u8, span: Span) -> R<Tensor> {
        let k = Tensor::scalar(i64::from(c));
        self.exec(&Op::Compare { op: CmpOp::Eq }, &[t, &k], span)
    }

    /// The code with `from` turned into `to` (a `select` when it is staged).
    pub(crate) fn remap(&self, code: Code, from: u8, to: u8, span: Span) -> R<Code> {
        if !code.may(from) {
            return Ok(code);
        }
        let may = (code.may & !(1 << from)) | (1 << to);
        let mut out = code.narrowed(may);
        if out.single().is_none() {
            let Some(t) = &code.t else {
                return Err(errors::internal("an exit code was not staged", span));
            };
            let is = self.code_is(t, from, span)?;
            let to = Tensor::scalar(i64::from(to));
            out.t = Some(self.exec(&Op::Select {}, &[&is, &to, t], span)?);
        }
        Ok(out)
    }

    /// `v` with every tensor leaf replaced by staged zeros of its dtype and shape.
    pub(crate) fn zeros_like(&self, v: &Value, span: Span) -> R<Value> {
        let mut leaves = Vec::new();
        tensor_leaves(v, &mut leaves);
        let zeros = leaves
            .into_iter()
            .map(|l| {
                let t = self.with_stager(span, |s| s.full(0.0, l.t.dtype(), l.t.shape(), span))?;
                Ok(TensorVal { t, ..l })
            })
            .collect::<R<Vec<_>>>()?;
        Ok(substitute(v, &mut zeros.into_iter()))
    }

    /// An `If` region on `cond` whose arms may exit: `arms[0]` (the `then` branch) is
    /// staged first and decides the shape of the value and of the value returned; the
    /// region yields them (as [`Yields`] asks) and the variables `names`, which take its
    /// results. Gives the combined outcome.
    pub(crate) fn exit_if(
        &mut self,
        cond: &Tensor,
        span: Span,
        arms: [&Arm<'_>; 2],
        y: &Yields<'_>,
        names: &[Name],
    ) -> R<Outcome> {
        // The first arm's value and returned value, whose shapes the second arm follows.
        let first: RefCell<Option<(Value, Option<Value>)>> = RefCell::new(None);
        let may = Cell::new(0u8);
        let went_on = Cell::new(false);
        let run = |ev: &mut Eval<'_>, arm: &Arm<'_>| -> R<Vec<Value>> {
            let o = arm(ev)?;
            may.set(may.get() | o.code.may);
            went_on.set(went_on.get() || o.value.is_some());
            if !y.code && o.code.single() != Some(GO) {
                return Err(staging_error(
                    "this `if` exits in a way staging did not foresee".into(),
                    span,
                ));
            }
            let shape = first.borrow().clone();
            let (value, ret) = match shape {
                None => {
                    let value = match (&o.value, y.value, y.prior_value) {
                        (Some(v), true, _) => v.clone(),
                        (None, true, Some(p)) => ev.zeros_like(p, span)?,
                        _ => Value::Unit,
                    };
                    let ret = match (o.ret, y.prior_ret) {
                        (Some(r), _) => Some(r),
                        (None, Some(p)) => Some(ev.zeros_like(p, span)?),
                        (None, None) => None,
                    };
                    *first.borrow_mut() = Some((value.clone(), ret.clone()));
                    (value, ret)
                }
                Some((fv, fr)) => {
                    let value = match (o.value, y.value) {
                        (Some(v), true) => v,
                        (None, true) => ev.zeros_like(&fv, span)?,
                        (_, false) => Value::Unit,
                    };
                    let ret = match (fr, o.ret) {
                        (Some(_), Some(r)) => Some(r),
                        (Some(f), None) => Some(ev.zeros_like(&f, span)?),
                        (None, None) => None,
                        (None, Some(_)) => {
                            return Err(staging_error(
                                "only the `else` branch of this `if` returns, and its \
                                 value's shape was not known when the `then` branch was \
                                 staged"
                                    .into(),
                                span,
                            ));
                        }
                    };
                    (value, ret)
                }
            };
            let mut vals = vec![value];
            if y.code {
                vals.push(Value::Tensor(TensorVal::strong_of(o.code.tensor())));
            }
            vals.extend(ret);
            vals.extend(names.iter().filter_map(|n| ev.lookup_local(n)));
            Ok(vals)
        };
        let vals = self.if_region(cond, span, &|ev| run(ev, arms[0]), &|ev| run(ev, arms[1]))?;
        let has_ret = first.borrow().as_ref().is_some_and(|(_, r)| r.is_some());
        let mut it = vals.into_iter();
        let value = it.next().unwrap_or(Value::Unit);
        let code_t = if y.code {
            match it.next() {
                Some(Value::Tensor(t)) => Some(t.t),
                _ => return Err(errors::internal("an exit code was lost", span)),
            }
        } else {
            None
        };
        let ret = if has_ret { it.next() } else { None };
        for (n, v) in names.iter().zip(it) {
            self.assign_local(n, v);
        }
        let code = Code {
            may: may.get(),
            t: code_t,
        };
        Ok(Outcome {
            code: code.narrowed(code.may),
            value: went_on.get().then_some(value),
            ret,
        })
    }

    /// Runs `rest` only on the paths of `o` that went on; the others keep their exit and
    /// the variables `names` as they were. `o`'s code must be staged. `value`: whether
    /// `rest`'s value is wanted.
    pub(crate) fn guard(
        &mut self,
        o: Outcome,
        names: &[Name],
        value: bool,
        span: Span,
        rest: &Arm<'_>,
    ) -> R<Outcome> {
        let code = o.code.tensor();
        let go = self.code_is(&code, GO, span)?;
        let stayed = Outcome {
            code: o.code.narrowed(o.code.may & !(1 << GO)),
            value: None,
            ret: o.ret.clone(),
        };
        let stay = |_: &mut Eval<'_>| Ok(stayed.clone());
        let y = Yields {
            value,
            code: true,
            prior_value: None,
            prior_ret: o.ret.as_ref(),
        };
        self.exit_if(&go, span, [rest, &stay], &y, names)
    }

    /// The statements `rest` of a block after one that ended with `o` (its code staged):
    /// they run under a guard.
    pub(crate) fn after_exit(
        &mut self,
        mut o: Outcome,
        rest: &[lang::ast::Stmt],
        was_expr: bool,
        span: Span,
    ) -> R<Value> {
        if rest.is_empty() {
            if !was_expr && o.value.is_some() {
                o.value = Some(Value::Unit);
            }
            return into_flow(o);
        }
        let mut assigned = HashSet::new();
        lang::ast::stmts_assigned(rest, &mut assigned);
        let names = self.visible(assigned);
        let o = self.guard(o, &names, true, span, &|ev| outcome(ev.stmts(rest)))?;
        into_flow(o)
    }

    /// A loop body run under a guard: only on the paths of `o` (the iterations before)
    /// that went on.
    pub(crate) fn guarded_block(&mut self, o: Outcome, body: &Block, span: Span) -> R<Value> {
        let mut assigned = HashSet::new();
        lang::ast::block_assigned(body, &mut assigned);
        let names = self.visible(assigned);
        let o = self.guard(o, &names, false, span, &|ev| outcome(ev.block(body)))?;
        into_flow(o)
    }

    /// The end of one iteration of a loop: `continue` is done with.
    pub(crate) fn iteration_end(&self, r: R<Value>, span: Span) -> R<Outcome> {
        let mut o = outcome(r)?;
        o.code = self.remap(o.code, CONTINUE, GO, span)?;
        Ok(o)
    }

    /// The end of a loop: `break` is done with; a `return` goes on out.
    pub(crate) fn loop_end(&self, mut o: Outcome, span: Span) -> R<()> {
        o.code = self.remap(o.code, BREAK, GO, span)?;
        o.value = Some(Value::Unit);
        into_flow(o).map(|_| ())
    }

    /// A call's result from its body's outcome: the value returned on the paths that
    /// returned, the body's value on the others.
    pub(crate) fn call_result(&mut self, o: Outcome, span: Span) -> R<Value> {
        let Some(ret) = o.ret.filter(|_| o.code.may(RETURN)) else {
            return Ok(o.value.unwrap_or(Value::Unit));
        };
        let value = match o.value {
            Some(v) => v,
            None => self.zeros_like(&ret, span)?,
        };
        let is_ret = self.code_is(&o.code.tensor(), RETURN, span)?;
        let vals = self.if_region(&is_ret, span, &|_| Ok(vec![ret.clone()]), &|_| {
            Ok(vec![value.clone()])
        })?;
        Ok(vals.into_iter().next().unwrap_or(Value::Unit))
    }
}
