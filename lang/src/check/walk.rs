//! The walker: statements, scopes, patterns, control flow and the expressions that are not
//! calls (those are in `call.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ir::DType;

use crate::ast::{
    Block, Expr, ExprKind, FieldPattern, Ident, IndexItem, Name, Pattern, PatternKind, Stmt,
    StmtKind,
};
use crate::check::annot::{Bindings, SymScope};
use crate::check::merge::{self, Clash};
use crate::check::ops::{self, Typed, TypedIndex};
use crate::check::scope::Slot;
use crate::check::suggest::nearest;
use crate::check::ty::{Const, IntVal, TensorTy, Ty};
use crate::check::{Checker, builtins};
use crate::diagnostics::Diagnostic;
use crate::span::Span;

/// How many times a loop body is checked before the loop-carried values are widened.
const LOOP_ROUNDS: usize = 3;

impl Checker {
    /// Checks the statements of a program or an imported file at the top level: aliases
    /// and functions are hoisted, the rest runs in order.
    pub(crate) fn top_level(&mut self, stmts: &[Stmt]) {
        self.hoist(stmts);
        for s in stmts {
            self.stmt(s);
        }
    }

    /// Declares the `type` aliases and named functions of `stmts` before the statements
    /// run, so that calls before the declaration and recursion work.
    fn hoist(&mut self, stmts: &[Stmt]) {
        let mut aliases = Vec::new();
        for s in stmts {
            if let StmtKind::TypeAlias { name, ty } = &s.kind {
                if let Some(u) = self.units.get_mut(self.cx.unit) {
                    u.aliases.insert(name.name.clone(), ty.clone());
                }
                aliases.push(ty);
            }
        }
        // Aliases are validated once, after all of them are known (they may refer to one
        // another); their uses do not report again.
        for ty in aliases {
            let mut syms = SymScope::new([ty]);
            self.annotation(ty, &mut syms, true);
        }
        for s in stmts {
            if let StmtKind::Fn(decl) = &s.kind {
                let idx = self.declare_fn(decl);
                let name = decl.name.name.clone();
                let ty = Ty::Fn(Arc::new(crate::check::FnTy::User {
                    name: name.clone(),
                    decl: idx,
                }));
                self.bind_name(name, ty);
            }
        }
    }

    /// Binds `name` in the innermost scope: a local frame, or the unit's globals at the
    /// top level.
    pub(crate) fn bind_name(&mut self, name: Name, ty: Ty) {
        if !self.env.declare(name.clone(), ty.clone())
            && let Some(u) = self.units.get_mut(self.cx.unit)
        {
            u.globals.insert(name, ty);
        }
    }

    /// Checks one statement and returns its value (unit for everything but expressions).
    fn stmt(&mut self, s: &Stmt) -> Ty {
        match &s.kind {
            StmtKind::Let { pat, ty, value } => {
                let v = self.expr(value);
                let bound = match ty {
                    None => v,
                    Some(te) => {
                        let mut syms = SymScope::new([te]);
                        let ann = self.annotation(te, &mut syms, true);
                        let mut b = Bindings::default();
                        let name: Name = Arc::from("value");
                        match ann.fit(&v, &name, &mut b) {
                            Ok(()) => ann.refine(&v, &b),
                            Err(_) => {
                                self.emit(
                                    Diagnostic::error(
                                        "E0409",
                                        format!("the value is {v}, but the annotation says {ann}"),
                                        value.span,
                                    )
                                    .with_primary_label(format!("this is {v}"))
                                    .with_label(te.span, "expected because of this annotation"),
                                );
                                ann.to_ty(&b, false)
                            }
                        }
                    }
                };
                if matches!(bound, Ty::Never) {
                    return Ty::Never;
                }
                self.bind_pattern(pat, bound, value.span);
                Ty::Unit
            }
            StmtKind::Assign { target, op, value } => {
                let v = self.typed(value);
                let v = match op {
                    None => v.ty,
                    Some(op) => {
                        let Some(cur) = self.lookup_value(&target.name) else {
                            self.assign(target, Ty::Unknown, value.span);
                            return Ty::Unit;
                        };
                        let lhs = Typed {
                            ty: cur,
                            span: target.span,
                        };
                        let op_span =
                            Span::new(target.span.end, value.span.start.max(target.span.end));
                        let src = self.src();
                        match ops::binary(&src, *op, &lhs, &v, op_span) {
                            Ok(t) => t,
                            Err(d) => {
                                self.emit(*d);
                                Ty::Unknown
                            }
                        }
                    }
                };
                self.assign(target, v, value.span);
                Ty::Unit
            }
            // Hoisted: declared when the enclosing block started.
            StmtKind::Fn(_) | StmtKind::TypeAlias { .. } => Ty::Unit,
            StmtKind::Import { source, alias } => {
                self.import(source, alias.as_ref(), s.span);
                Ty::Unit
            }
            StmtKind::Expr(e) => self.expr(e),
        }
    }

    /// Checks a block in a new scope; its value is the last statement's (when that is an
    /// expression), `!` when a statement never finishes (`return`, `break`).
    pub(crate) fn block(&mut self, b: &Block) -> Ty {
        self.env.frames.push(HashMap::new());
        self.hoist(&b.stmts);
        let mut value = Ty::Unit;
        let mut diverged = false;
        for s in &b.stmts {
            let t = self.stmt(s);
            if matches!(t, Ty::Never) {
                diverged = true;
            }
            value = if matches!(s.kind, StmtKind::Expr(_)) {
                t
            } else {
                Ty::Unit
            };
        }
        self.env.frames.pop();
        if diverged { Ty::Never } else { value }
    }

    /// The span of a block's value: its last expression, or the block itself.
    pub(crate) fn block_value_span(b: &Block) -> Span {
        match b.stmts.last() {
            Some(Stmt {
                kind: StmtKind::Expr(e),
                ..
            }) => e.span,
            _ => b.span,
        }
    }

    /// Binds the names of `pat` to the parts of `ty` (the value at `value_span`).
    pub(crate) fn bind_pattern(&mut self, pat: &Pattern, ty: Ty, value_span: Span) {
        match &pat.kind {
            PatternKind::Name(id) => self.bind_name(id.name.clone(), ty),
            PatternKind::Wildcard => {}
            PatternKind::Tuple(pats) => {
                let parts: Vec<Ty> = match &ty {
                    Ty::Tuple(ts) if ts.len() == pats.len() => ts.clone(),
                    Ty::Unit if pats.is_empty() => Vec::new(),
                    Ty::Unknown | Ty::Never => vec![Ty::Unknown; pats.len()],
                    Ty::Tuple(ts) => {
                        self.emit(
                            Diagnostic::error(
                                "E0605",
                                format!(
                                    "the pattern has {} elements but the tuple {ty} has {}",
                                    pats.len(),
                                    ts.len()
                                ),
                                pat.span,
                            )
                            .with_primary_label(format!("{} elements", pats.len()))
                            .with_label(value_span, format!("this is {ty}")),
                        );
                        vec![Ty::Unknown; pats.len()]
                    }
                    other => {
                        self.emit(
                            Diagnostic::error(
                                "E0605",
                                format!("a tuple pattern cannot take apart {other}"),
                                pat.span,
                            )
                            .with_primary_label("tuple pattern")
                            .with_label(value_span, format!("this is {other}, not a tuple")),
                        );
                        vec![Ty::Unknown; pats.len()]
                    }
                };
                for (p, t) in pats.iter().zip(parts) {
                    self.bind_pattern(p, t, value_span);
                }
            }
            PatternKind::Record(fields) => match &ty {
                Ty::Record(map) => {
                    for fp in fields {
                        let t = match map.get(&fp.name.name) {
                            Some(t) => t.clone(),
                            None => {
                                let mut d = Diagnostic::error(
                                    "E0606",
                                    format!("no field `{}` in {ty}", fp.name.name),
                                    fp.name.span,
                                )
                                .with_primary_label("not a field of the value")
                                .with_label(value_span, format!("this is {ty}"));
                                if let Some(s) = nearest(&fp.name.name, map.keys().map(|k| &**k)) {
                                    d = d.with_hint(format!("did you mean `{s}`?"));
                                }
                                self.emit(d);
                                Ty::Unknown
                            }
                        };
                        self.bind_field_pattern(fp, t, value_span);
                    }
                }
                Ty::Unknown | Ty::Never => {
                    for fp in fields {
                        self.bind_field_pattern(fp, Ty::Unknown, value_span);
                    }
                }
                other => {
                    self.emit(
                        Diagnostic::error(
                            "E0606",
                            format!("a record pattern cannot take apart {other}"),
                            pat.span,
                        )
                        .with_primary_label("record pattern")
                        .with_label(value_span, format!("this is {other}, not a record")),
                    );
                    for fp in fields {
                        self.bind_field_pattern(fp, Ty::Unknown, value_span);
                    }
                }
            },
        }
    }

    fn bind_field_pattern(&mut self, fp: &FieldPattern, ty: Ty, value_span: Span) {
        match &fp.pat {
            Some(p) => self.bind_pattern(p, ty, value_span),
            None => self.bind_name(fp.name.name.clone(), ty),
        }
    }

    /// The value of a variable, function or builtin named `name`, if there is one. A
    /// top-level value read inside a function body is remembered: the body's check stays
    /// valid only while that value is unchanged.
    pub(crate) fn lookup_value(&mut self, name: &str) -> Option<Ty> {
        if let Some((_, t)) = self.env.lookup(name) {
            return Some(t.clone());
        }
        let unit = self.cx.unit;
        let global = self
            .units
            .get(unit)
            .and_then(|u| u.globals.get(name))
            .cloned();
        if let Some(frame) = self.reads.last_mut() {
            frame
                .entry((unit, Name::from(name)))
                .or_insert_with(|| global.clone());
        }
        if global.is_some() {
            return global;
        }
        if builtins::names().contains(&name) || builtins::HIGHER_ORDER.contains(&name) {
            return Some(Ty::Fn(Arc::new(crate::check::FnTy::Builtin(Name::from(
                name,
            )))));
        }
        None
    }

    /// Every name in scope, for suggestions.
    pub(crate) fn names_in_scope(&self) -> Vec<String> {
        let mut out: Vec<String> = self.env.names().map(|n| n.to_string()).collect();
        if let Some(u) = self.units.get(self.cx.unit) {
            out.extend(u.globals.keys().map(|k| k.to_string()));
        }
        out.extend(builtins::names().iter().map(|s| s.to_string()));
        out.extend(builtins::HIGHER_ORDER.iter().map(|s| s.to_string()));
        out.sort();
        out.dedup();
        out
    }

    /// The error for a name that is not in scope.
    pub(crate) fn unknown_name(&mut self, name: &str, span: Span) {
        let mut d = Diagnostic::error("E0101", format!("unknown name `{name}`"), span)
            .with_primary_label("not found in this scope");
        if crate::check::std_modules().any(|m| m == name) {
            d = d.with_hint(format!("import the module first: `import {name}`"));
        } else {
            let names = self.names_in_scope();
            if let Some(s) = nearest(name, names.iter().map(String::as_str)) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            }
        }
        self.emit(d);
    }

    /// `x = v`: rebinds an existing variable, keeping its dtype and rank.
    fn assign(&mut self, target: &Ident, v: Ty, value_span: Span) {
        let name = &target.name;
        let slot = match self.env.lookup(name) {
            Some((depth, _)) if depth >= self.env.captured => Slot::Local(depth, name.clone()),
            Some(_) => {
                let what = if self.env.in_closure {
                    "a closure"
                } else {
                    "a function declared in a block"
                };
                self.emit(
                    Diagnostic::error(
                        "E0105",
                        format!("cannot assign to `{name}` inside {what}: it was captured from outside"),
                        target.span,
                    )
                    .with_primary_label("captured variable")
                    .with_note("a closure captures the values of outer variables when it is created; they cannot be changed from inside")
                    .with_hint(format!("return the new value instead, or use a local copy: `let {name} = ...`")),
                );
                return;
            }
            None => {
                let is_global = self
                    .units
                    .get(self.cx.unit)
                    .is_some_and(|u| u.globals.contains_key(name));
                if is_global && self.env.in_fn {
                    self.emit(
                        Diagnostic::error(
                            "E0105",
                            format!("cannot assign to the top-level variable `{name}` inside a function"),
                            target.span,
                        )
                        .with_primary_label("top-level variable")
                        .with_note("functions read top-level variables but cannot change them")
                        .with_hint(format!("return the new value and assign it at the top level, or use a local: `let {name} = ...`")),
                    );
                    return;
                }
                if !is_global {
                    let mut d = Diagnostic::error(
                        "E0102",
                        format!("cannot assign to `{name}`: there is no such variable"),
                        target.span,
                    )
                    .with_primary_label("not declared")
                    .with_hint(format!("declare it first: `let {name} = ...`"));
                    let names = self.names_in_scope();
                    if let Some(s) = nearest(name, names.iter().map(String::as_str)) {
                        d = d.with_hint(format!("or did you mean `{s}`?"));
                    }
                    self.emit(d);
                    return;
                }
                Slot::Global(name.clone())
            }
        };
        let Some(old) = self.slot_value(&slot) else {
            return;
        };
        match merge::rebind(&old, &v) {
            Ok(t) => self.set_slot(slot, t),
            Err(clash) => {
                let why = match clash {
                    Clash::DType => "rebinding keeps the dtype",
                    Clash::Rank => "rebinding keeps the rank",
                    Clash::Structure => "rebinding keeps the kind of value",
                };
                let mut d = Diagnostic::error(
                    "E0106",
                    format!("cannot rebind `{name}` from {old} to {v}: {why}"),
                    value_span,
                )
                .with_primary_label(format!("this is {v}"))
                .with_label(target.span, format!("`{name}` is {old}"));
                if let (Clash::DType, Ty::Tensor(t)) = (clash, &old) {
                    let text = self.snippet(value_span, "...");
                    d = d.with_hint(format!("convert the value: `{name} = {}({text})`", t.dtype));
                } else {
                    d = d.with_hint(format!("use a new variable: `let {name} = ...`"));
                }
                self.emit(d);
            }
        }
    }

    fn slot_value(&self, slot: &Slot) -> Option<Ty> {
        match slot {
            Slot::Local(depth, name) => self.env.frames.get(*depth)?.get(name).cloned(),
            Slot::Global(name) => self.units.get(self.cx.unit)?.globals.get(name).cloned(),
        }
    }

    /// Writes `ty` into `slot`, remembering the old value so that it can be undone.
    fn set_slot(&mut self, slot: Slot, ty: Ty) {
        let old = self.write_slot(&slot, ty);
        if let Some(old) = old {
            self.env.log.push((slot, old));
        }
    }

    fn write_slot(&mut self, slot: &Slot, ty: Ty) -> Option<Ty> {
        match slot {
            Slot::Local(depth, name) => {
                let frame = self.env.frames.get_mut(*depth)?;
                let cur = frame.get_mut(name)?;
                Some(std::mem::replace(cur, ty))
            }
            Slot::Global(name) => {
                let unit = self.units.get_mut(self.cx.unit)?;
                let cur = unit.globals.get_mut(name)?;
                Some(std::mem::replace(cur, ty))
            }
        }
    }

    /// The variables rebound since log position `mark` that still exist, with their
    /// current values.
    fn touched_since(&self, mark: usize) -> Vec<(Slot, Ty)> {
        let mut out: Vec<(Slot, Ty)> = Vec::new();
        for (slot, _) in self.env.log.get(mark..).unwrap_or_default() {
            if out.iter().any(|(s, _)| s == slot) {
                continue;
            }
            if let Slot::Local(depth, _) = slot
                && *depth >= self.env.frames.len()
            {
                continue;
            }
            if let Some(t) = self.slot_value(slot) {
                out.push((slot.clone(), t));
            }
        }
        out
    }

    /// Undoes every rebinding since log position `mark`.
    fn undo_to(&mut self, mark: usize) {
        while self.env.log.len() > mark {
            if let Some((slot, old)) = self.env.log.pop() {
                if let Slot::Local(depth, _) = &slot
                    && *depth >= self.env.frames.len()
                {
                    continue;
                }
                self.write_slot(&slot, old);
            }
        }
    }

    /// Checks `e` and pairs its value with its span.
    pub(crate) fn typed(&mut self, e: &Expr) -> Typed {
        Typed {
            ty: self.expr(e),
            span: e.span,
        }
    }

    /// Applies a rule's result: its type, or its diagnostic and an unknown type.
    pub(crate) fn rule(&mut self, r: Result<Ty, Box<Diagnostic>>) -> Ty {
        match r {
            Ok(t) => t,
            Err(d) => {
                self.emit(*d);
                Ty::Unknown
            }
        }
    }

    /// Checks an expression and returns its abstract value.
    pub(crate) fn expr(&mut self, e: &Expr) -> Ty {
        match &e.kind {
            ExprKind::Int(n) => Ty::Tensor(TensorTy {
                dtype: DType::I64,
                shape: Some(ir::Shape::scalar()),
                weak: true,
                value: Some(Const::Ints(vec![IntVal::Lit(*n)])),
            }),
            ExprKind::Float(x) => Ty::Tensor(TensorTy {
                dtype: DType::F32,
                shape: Some(ir::Shape::scalar()),
                weak: true,
                value: Some(Const::Float(*x)),
            }),
            ExprKind::Bool(b) => Ty::Tensor(TensorTy {
                dtype: DType::Bool,
                shape: Some(ir::Shape::scalar()),
                weak: false,
                value: Some(Const::Bool(*b)),
            }),
            ExprKind::Str(s) => Ty::Str(Some(Arc::from(s.as_str()))),
            ExprKind::Name(n) => match self.lookup_value(n) {
                Some(t) => t,
                None => {
                    self.unknown_name(n, e.span);
                    Ty::Unknown
                }
            },
            ExprKind::List(items) => {
                let elems: Vec<Typed> = items.iter().map(|i| self.typed(i)).collect();
                let src = self.src();
                let r = ops::list_literal(&src, &elems, e.span);
                self.rule(r)
            }
            ExprKind::Tuple(items) => {
                if items.is_empty() {
                    Ty::Unit
                } else {
                    Ty::Tuple(items.iter().map(|i| self.expr(i)).collect())
                }
            }
            ExprKind::Record(fields) => {
                let mut out = BTreeMap::new();
                let mut spans: HashMap<Name, Span> = HashMap::new();
                for f in fields {
                    let t = self.expr(&f.value);
                    if let Some(first) = spans.get(&f.name.name) {
                        self.emit(
                            Diagnostic::error(
                                "E0607",
                                format!("field `{}` is given twice", f.name.name),
                                f.name.span,
                            )
                            .with_primary_label("given again here")
                            .with_label(*first, "first given here")
                            .with_hint("remove one of them"),
                        );
                        continue;
                    }
                    spans.insert(f.name.name.clone(), f.name.span);
                    out.insert(f.name.name.clone(), t);
                }
                Ty::Record(out)
            }
            ExprKind::Unary { op, operand } => {
                let x = self.typed(operand);
                let op_span = Span::new(e.span.start, (e.span.start + 1).min(e.span.end));
                let src = self.src();
                let r = ops::unary(&src, *op, &x, op_span);
                self.rule(r)
            }
            ExprKind::Binary {
                op,
                lhs,
                rhs,
                op_span,
            } => {
                let l = self.typed(lhs);
                let r = self.typed(rhs);
                if matches!(l.ty, Ty::Never) || matches!(r.ty, Ty::Never) {
                    return Ty::Never;
                }
                let src = self.src();
                let res = ops::binary(&src, *op, &l, &r, *op_span);
                self.rule(res)
            }
            ExprKind::Range { start, end } => {
                let a = self.typed(start);
                let b = self.typed(end);
                for part in [&a, &b] {
                    self.range_bound(part);
                }
                Ty::Range
            }
            ExprKind::Call { callee, args } => self.call_expr(callee, args, e.span),
            ExprKind::Method {
                receiver,
                method,
                args,
            } => self.method_expr(receiver, method, args, e.span),
            ExprKind::Field { base, field } => {
                let b = self.typed(base);
                self.field(&b, field)
            }
            ExprKind::TupleField {
                base,
                index,
                index_span,
            } => {
                let b = self.typed(base);
                self.tuple_field(&b, *index, *index_span)
            }
            ExprKind::Index { base, items } => {
                let b = self.typed(base);
                let items: Vec<TypedIndex> = items
                    .iter()
                    .map(|it| match it {
                        IndexItem::Expr(x) => TypedIndex::Expr(self.typed(x)),
                        IndexItem::Slice {
                            start,
                            end,
                            step,
                            span,
                        } => TypedIndex::Slice {
                            start: start.as_deref().map(|x| self.typed(x)),
                            end: end.as_deref().map(|x| self.typed(x)),
                            step: step.as_deref().map(|x| self.typed(x)),
                            span: *span,
                        },
                        IndexItem::Ellipsis(s) => TypedIndex::Ellipsis(*s),
                    })
                    .collect();
                let src = self.src();
                let r = ops::index(&src, &b, &items, e.span);
                self.rule(r)
            }
            ExprKind::Closure { params, body } => self.closure(params, body, e.span),
            ExprKind::Block(b) => self.block(b),
            ExprKind::If { cond, then, els } => self.if_expr(cond, then, els.as_deref()),
            ExprKind::For { pat, iter, body } => {
                let it = self.typed(iter);
                let item = self.iter_item(&it);
                self.fixpoint(|c| {
                    c.env.frames.push(HashMap::new());
                    c.bind_pattern(pat, item.clone(), iter.span);
                    c.block(body);
                    c.env.frames.pop();
                });
                Ty::Unit
            }
            ExprKind::While { cond, body } => {
                self.fixpoint(|c| {
                    let t = c.typed(cond);
                    c.condition(&t, "while");
                    c.block(body);
                });
                Ty::Unit
            }
            ExprKind::Break | ExprKind::Continue => {
                if self.env.loops == 0 {
                    let what = if matches!(e.kind, ExprKind::Break) {
                        "break"
                    } else {
                        "continue"
                    };
                    self.emit(
                        Diagnostic::error("E0503", format!("`{what}` outside a loop"), e.span)
                            .with_primary_label("not inside `for` or `while`"),
                    );
                }
                Ty::Never
            }
            ExprKind::Return(value) => {
                let t = match value {
                    Some(v) => self.expr(v),
                    None => Ty::Unit,
                };
                self.ret(t, value.as_deref().map_or(e.span, |v| v.span), e.span);
                Ty::Never
            }
            ExprKind::Error => Ty::Unknown,
        }
    }

    fn range_bound(&mut self, part: &Typed) {
        let ok = match &part.ty {
            Ty::Unknown | Ty::Never => true,
            Ty::Tensor(t) => t.dtype.is_int() && t.rank().is_none_or(|r| r == 0),
            _ => false,
        };
        if !ok {
            self.emit(
                Diagnostic::error(
                    "E0506",
                    format!("a range needs integer scalars, found {}", part.ty),
                    part.span,
                )
                .with_primary_label(format!("this is {}", part.ty))
                .with_hint("ranges count with integers: `0..n`; convert with `i64(...)`"),
            );
        }
    }

    /// `return t` (the value at `value_span`) in the enclosing function.
    fn ret(&mut self, t: Ty, value_span: Span, span: Span) {
        let Some(rc) = self.env.ret.as_mut() else {
            self.emit(
                Diagnostic::error("E0504", "`return` outside a function", span)
                    .with_primary_label("not inside a `fn` or closure"),
            );
            return;
        };
        rc.returns.push(t.clone());
        let Some((ann, ann_span)) = rc.ann.clone() else {
            return;
        };
        let name = rc.name.clone();
        let mut b = rc.bindings.clone();
        if ann.fit(&t, &name, &mut b).is_err() {
            self.emit(
                Diagnostic::error(
                    "E0408",
                    format!("`return` gives {t}, but `{name}` is declared to return {ann}"),
                    value_span,
                )
                .with_primary_label(format!("this is {t}"))
                .with_label(ann_span, "the declared result type"),
            );
        }
    }

    /// Checks that a condition is a scalar bool.
    pub(crate) fn condition(&mut self, c: &Typed, what: &str) {
        let hint = match &c.ty {
            Ty::Unknown | Ty::Never => return,
            Ty::Tensor(t) if t.dtype == DType::Bool && t.rank().is_none_or(|r| r == 0) => return,
            Ty::Tensor(t) if t.dtype == DType::Bool => {
                "reduce it to one bool: `all(...)` or `any(...)`".to_string()
            }
            Ty::Tensor(t) if t.is_scalar() => {
                let text = self.snippet(c.span, "x");
                format!("compare it: `{text} != 0`")
            }
            _ => "use a comparison such as `a < b`".to_string(),
        };
        self.emit(
            Diagnostic::error(
                "E0501",
                format!(
                    "the `{what}` condition must be a scalar bool, found {}",
                    c.ty
                ),
                c.span,
            )
            .with_primary_label(format!("this is {}", c.ty))
            .with_hint(hint),
        );
    }

    fn if_expr(&mut self, cond: &Expr, then: &Block, els: Option<&Expr>) -> Ty {
        let c = self.typed(cond);
        self.condition(&c, "if");
        let mark = self.env.log.len();
        let t = self.block(then);
        let then_vals = self.touched_since(mark);
        self.undo_to(mark);
        let (e, else_vals) = match els {
            Some(x) => {
                let e = self.expr(x);
                let v = self.touched_since(mark);
                self.undo_to(mark);
                (e, v)
            }
            None => (Ty::Unit, Vec::new()),
        };
        // Variables rebound in either branch hold the join of both afterwards.
        let mut slots: Vec<Slot> = then_vals.iter().map(|(s, _)| s.clone()).collect();
        for (s, _) in &else_vals {
            if !slots.contains(s) {
                slots.push(s.clone());
            }
        }
        for slot in slots {
            let Some(old) = self.slot_value(&slot) else {
                continue;
            };
            let pick = |vals: &[(Slot, Ty)]| {
                vals.iter()
                    .find(|(s, _)| *s == slot)
                    .map_or_else(|| old.clone(), |(_, t)| t.clone())
            };
            let tv = pick(&then_vals);
            let ev = pick(&else_vals);
            let merged = if matches!(t, Ty::Never) {
                ev
            } else if matches!(e, Ty::Never) {
                tv
            } else {
                merge::join(&tv, &ev).unwrap_or(Ty::Unknown)
            };
            self.set_slot(slot, merged);
        }
        let Some(els) = els else {
            return Ty::Unit;
        };
        match merge::join(&t, &e) {
            Ok(v) => v,
            Err(_) => {
                let then_span = Self::block_value_span(then);
                let else_span = match &els.kind {
                    ExprKind::Block(b) => Self::block_value_span(b),
                    _ => els.span,
                };
                self.emit(
                    Diagnostic::error(
                        "E0502",
                        format!("the branches of `if` give different types: {t} and {e}"),
                        else_span,
                    )
                    .with_primary_label(format!("this is {e}"))
                    .with_label(then_span, format!("this is {t}"))
                    .with_note("both branches must give the same dtype, rank and structure"),
                );
                Ty::Unknown
            }
        }
    }

    /// Checks a loop body (`round`) until the loop-carried variables' types are stable,
    /// widening their dims after a few rounds. Only the last round's diagnostics are kept.
    fn fixpoint(&mut self, mut round: impl FnMut(&mut Checker)) {
        self.env.loops += 1;
        let diag_mark = self.diags.len();
        let mut rounds = 0;
        loop {
            self.diags.truncate(diag_mark);
            let mark = self.env.log.len();
            round(self);
            let after = self.touched_since(mark);
            self.undo_to(mark);
            let mut changed = Vec::new();
            for (slot, t) in after {
                let Some(entry) = self.slot_value(&slot) else {
                    continue;
                };
                let joined = merge::join(&entry, &t).unwrap_or(Ty::Unknown);
                if joined != entry {
                    changed.push((slot, joined));
                }
            }
            if changed.is_empty() || rounds > LOOP_ROUNDS {
                break;
            }
            rounds += 1;
            for (slot, t) in changed {
                let t = if rounds >= LOOP_ROUNDS {
                    merge::widen(&t)
                } else {
                    t
                };
                self.set_slot(slot, t);
            }
        }
        self.env.loops -= 1;
    }

    /// What `for` binds when iterating over `it`.
    fn iter_item(&mut self, it: &Typed) -> Ty {
        match &it.ty {
            Ty::Range => Ty::scalar(DType::I64),
            Ty::Iter(item) => (**item).clone(),
            Ty::Unknown | Ty::Never => Ty::Unknown,
            Ty::Tensor(t) => match &t.shape {
                None => Ty::Tensor(TensorTy::new(t.dtype, None)),
                Some(s) if s.rank() > 0 => Ty::Tensor(TensorTy::new(
                    t.dtype,
                    Some(ir::Shape(s.dims().get(1..).unwrap_or_default().to_vec())),
                )),
                Some(_) => {
                    self.not_iterable(it, "a scalar has no axis to iterate over");
                    Ty::Unknown
                }
            },
            _ => {
                self.not_iterable(
                    it,
                    "`for` iterates over ranges, tensors (axis 0) and `batches(...)`",
                );
                Ty::Unknown
            }
        }
    }

    fn not_iterable(&mut self, it: &Typed, note: &str) {
        self.emit(
            Diagnostic::error("E0505", format!("cannot iterate over {}", it.ty), it.span)
                .with_primary_label(format!("this is {}", it.ty))
                .with_note(note.to_string()),
        );
    }

    /// A tuple element `t.index`.
    fn tuple_field(&mut self, b: &Typed, index: usize, index_span: Span) -> Ty {
        match &b.ty {
            Ty::Tuple(ts) => match ts.get(index) {
                Some(t) => t.clone(),
                None => {
                    self.emit(
                        Diagnostic::error(
                            "E0603",
                            format!(
                                "tuple index {index} is out of range: {} has {} elements",
                                b.ty,
                                ts.len()
                            ),
                            index_span,
                        )
                        .with_primary_label(format!(
                            "the last index is {}",
                            ts.len().saturating_sub(1)
                        ))
                        .with_label(b.span, format!("this is {}", b.ty)),
                    );
                    Ty::Unknown
                }
            },
            Ty::Unknown | Ty::Never => Ty::Unknown,
            other => {
                let mut d = Diagnostic::error(
                    "E0604",
                    format!("`.{index}` needs a tuple, found {other}"),
                    index_span,
                )
                .with_label(b.span, format!("this is {other}"));
                if matches!(other, Ty::Tensor(_)) {
                    let text = self.snippet(b.span, "x");
                    d = d.with_hint(format!(
                        "to take an element of a tensor, index it: `{text}[{index}]`"
                    ));
                }
                self.emit(d);
                Ty::Unknown
            }
        }
    }

    /// Creates a closure value: it captures the values of the outer variables its body
    /// names, as they are now.
    fn closure(&mut self, params: &[crate::ast::Param], body: &Expr, span: Span) -> Ty {
        let mut names = HashSet::new();
        crate::ast::free_names(body, &mut names);
        let mut captured: BTreeMap<Name, Ty> = BTreeMap::new();
        let mut sorted: Vec<&Name> = names.iter().collect();
        sorted.sort();
        for n in sorted {
            if params.iter().any(|p| p.name.name == *n) {
                continue;
            }
            if let Some((_, t)) = self.env.lookup(n) {
                captured.insert(n.clone(), t.clone());
                continue;
            }
            let unit = self.cx.unit;
            let global = self.units.get(unit).and_then(|u| u.globals.get(n)).cloned();
            if let Some(frame) = self.reads.last_mut() {
                frame
                    .entry((unit, n.clone()))
                    .or_insert_with(|| global.clone());
            }
            if let Some(t) = global {
                captured.insert(n.clone(), t);
            }
        }
        // The node's address tells apart closures written at the same place in generated
        // code; re-checking the same node (loop rounds) finds the same closure again.
        let key = (
            self.cx.src,
            span,
            std::ptr::from_ref(body) as usize,
            format!("{captured:?}"),
        );
        if let Some(&idx) = self.closure_ids.get(&key) {
            return Ty::Fn(Arc::new(crate::check::FnTy::Closure(idx)));
        }
        let idx = self.declare_closure(params, body, captured.into_iter().collect());
        self.closure_ids.insert(key, idx);
        Ty::Fn(Arc::new(crate::check::FnTy::Closure(idx)))
    }
}
