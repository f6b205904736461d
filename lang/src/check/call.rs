//! Calls: named functions and closures checked per signature, method sugar, fields and
//! module members, `@jit` attributes and imports.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::ast::{Arg, Attribute, Expr, FnDecl, Ident, ImportSource, Name, Param};
use crate::check::annot::{Ann, Bindings, Misfit, SymScope};
use crate::check::merge;
use crate::check::ops::{self, Typed};
use crate::check::scope::{Env, RetCx};
use crate::check::suggest::nearest;
use crate::check::ty::{FnTy, Ty};
use crate::check::{
    Body, CacheEntry, Checker, Cx, FnDef, MAX_CALL_DEPTH, MAX_TYPE_NODES, ModuleId, builtins,
};
use crate::diagnostics::Diagnostic;
use crate::span::Span;

/// The `parallel:` modes of `@jit` (LANGUAGE.md §9).
const PARALLEL_MODES: &[&str] = &["data", "semi_auto", "auto"];

impl Checker {
    /// Records a named function (its annotations converted once) and returns its index.
    pub(crate) fn declare_fn(&mut self, decl: &FnDecl) -> usize {
        for attr in &decl.attrs {
            self.attribute(attr);
        }
        let mut syms = SymScope::new(
            decl.params
                .iter()
                .filter_map(|p| p.ty.as_ref())
                .chain(decl.ret.as_ref()),
        );
        let anns = self.param_anns(&decl.params, &mut syms);
        let ret = decl
            .ret
            .as_ref()
            .map(|t| (self.annotation(t, &mut syms, true), t.span));
        // A function declared inside a block sees the block's variables as they are when
        // the block starts (it cannot change them).
        let captured = if self.env.frames.is_empty() {
            None
        } else {
            let mut all = HashMap::new();
            for f in &self.env.frames {
                for (k, v) in f {
                    all.insert(k.clone(), v.clone());
                }
            }
            Some(Arc::new(all))
        };
        self.fns.push(Arc::new(FnDef {
            name: decl.name.name.clone(),
            params: decl.params.clone(),
            anns,
            ret,
            body: Body::Block(decl.body.clone()),
            unit: self.cx.unit,
            src: self.cx.src,
            captured,
            is_closure: false,
        }));
        self.fns.len() - 1
    }

    fn param_anns(&mut self, params: &[Param], syms: &mut SymScope) -> Vec<Option<Ann>> {
        params
            .iter()
            .map(|p| p.ty.as_ref().map(|t| self.annotation(t, syms, true)))
            .collect()
    }

    /// Records a closure with the values it captured and returns its index.
    pub(crate) fn declare_closure(
        &mut self,
        params: &[Param],
        body: &Expr,
        captured: HashMap<Name, Ty>,
    ) -> usize {
        let mut syms = SymScope::new(params.iter().filter_map(|p| p.ty.as_ref()));
        let anns = self.param_anns(params, &mut syms);
        self.fns.push(Arc::new(FnDef {
            name: Name::from("closure"),
            params: params.to_vec(),
            anns,
            ret: None,
            body: Body::Expr(body.clone()),
            unit: self.cx.unit,
            src: self.cx.src,
            captured: Some(Arc::new(captured)),
            is_closure: true,
        }));
        self.fns.len() - 1
    }

    /// Checks the arguments of `@name(args)` before a `fn`.
    fn attribute(&mut self, attr: &Attribute) {
        if &*attr.name.name != "jit" {
            let mut d = Diagnostic::error(
                "E0412",
                format!("unknown attribute `@{}`", attr.name.name),
                attr.name.span,
            )
            .with_primary_label("not an attribute");
            if nearest(&attr.name.name, ["jit"]).is_some() {
                d = d.with_hint("did you mean `@jit`?");
            } else {
                d = d.with_note("the only attribute is `@jit` (optionally with `parallel:`, `devices:`, `batch:`)");
            }
            self.emit(d);
            return;
        }
        for arg in &attr.args {
            let v = self.typed(&arg.value);
            let Some(name) = &arg.name else {
                self.emit(
                    Diagnostic::error("E0412", "`@jit` takes only named arguments", arg.value.span)
                        .with_primary_label("unnamed argument")
                        .with_hint("name it: `@jit(parallel: \"data\", devices: 4)`"),
                );
                continue;
            };
            match &*name.name {
                "parallel" => match &v.ty {
                    Ty::Str(Some(s)) if PARALLEL_MODES.contains(&&**s) => {}
                    Ty::Unknown => {}
                    other => {
                        let found = match other {
                            Ty::Str(Some(s)) => format!("\"{s}\""),
                            t => t.to_string(),
                        };
                        let mut d = Diagnostic::error(
                            "E0412",
                            format!("`parallel` must be \"data\", \"semi_auto\" or \"auto\", found {found}"),
                            v.span,
                        )
                        .with_primary_label("not a parallel mode");
                        if let Ty::Str(Some(s)) = other
                            && let Some(m) = nearest(s, PARALLEL_MODES.iter().copied())
                        {
                            d = d.with_hint(format!("did you mean \"{m}\"?"));
                        }
                        self.emit(d);
                    }
                },
                "devices" => {
                    if !is_int_scalar(&v.ty) {
                        self.emit(
                            Diagnostic::error(
                                "E0412",
                                format!("`devices` must be an integer, found {}", v.ty),
                                v.span,
                            )
                            .with_primary_label("not a device count")
                            .with_hint("write the number of devices: `devices: 4`"),
                        );
                    }
                }
                "batch" => {
                    let ok = match &v.ty {
                        Ty::Tuple(ts) => ts.iter().all(is_int_scalar),
                        t => is_int_scalar(t),
                    };
                    if !ok {
                        self.emit(
                            Diagnostic::error(
                                "E0412",
                                format!("`batch` must be an argument index or a tuple of them, found {}", v.ty),
                                v.span,
                            )
                            .with_primary_label("not argument indices")
                            .with_hint("name the split arguments by position: `batch: (1, 2)`"),
                        );
                    }
                }
                other => {
                    let mut d = Diagnostic::error(
                        "E0412",
                        format!("`@jit` has no argument `{other}`"),
                        name.span,
                    )
                    .with_primary_label("unknown argument");
                    if let Some(s) = nearest(other, ["parallel", "devices", "batch"]) {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    } else {
                        d = d.with_note("`@jit` takes `parallel:`, `devices:` and `batch:`");
                    }
                    self.emit(d);
                }
            }
        }
    }

    /// Checks the arguments of a call: positional ones first, then named ones.
    fn args(&mut self, args: &[Arg]) -> (Vec<Typed>, Vec<(Ident, Typed)>) {
        let mut pos = Vec::new();
        let mut named = Vec::new();
        for a in args {
            let t = self.typed(&a.value);
            match &a.name {
                Some(n) => named.push((n.clone(), t)),
                None => pos.push(t),
            }
        }
        (pos, named)
    }

    /// `callee(args)`.
    pub(crate) fn call_expr(&mut self, callee: &Expr, args: &[Arg], span: Span) -> Ty {
        let f = self.typed(callee);
        let (pos, named) = self.args(args);
        self.call_value(&f, pos, named, span)
    }

    /// `receiver.method(args)`: a record field named `method` wins; on a module it is a
    /// member; otherwise it is `method(receiver, args)`.
    pub(crate) fn method_expr(
        &mut self,
        receiver: &Expr,
        method: &Ident,
        args: &[Arg],
        span: Span,
    ) -> Ty {
        let r = self.typed(receiver);
        match &r.ty {
            Ty::Record(fields) if fields.contains_key(&method.name) => {
                let f = Typed {
                    ty: fields.get(&method.name).cloned().unwrap_or(Ty::Unknown),
                    span: method.span,
                };
                let (pos, named) = self.args(args);
                self.call_value(&f, pos, named, span)
            }
            Ty::Module(_) => {
                let f = Typed {
                    ty: self.field(&r, method),
                    span: method.span,
                };
                let (pos, named) = self.args(args);
                self.call_value(&f, pos, named, span)
            }
            _ => {
                let f = self.lookup_value(&method.name);
                let (mut pos, named) = self.args(args);
                let Some(f) = f else {
                    if !r.ty.is_unknown() {
                        let mut d = Diagnostic::error(
                            "E0101",
                            format!(
                                "unknown method `{}`: there is no function of that name",
                                method.name
                            ),
                            method.span,
                        )
                        .with_primary_label("not found in this scope")
                        .with_note(format!(
                            "`x.{}(...)` means `{}(x, ...)`",
                            method.name, method.name
                        ));
                        let names = self.names_in_scope();
                        if let Some(s) = nearest(&method.name, names.iter().map(String::as_str)) {
                            d = d.with_hint(format!("did you mean `{s}`?"));
                        }
                        if let Ty::Record(fields) = &r.ty {
                            let list: Vec<&str> = fields.keys().map(|k| &**k).collect();
                            d = d.with_note(format!("the record has fields {}", list.join(", ")));
                        }
                        self.emit(d);
                    }
                    return Ty::Unknown;
                };
                pos.insert(0, r);
                let f = Typed {
                    ty: f,
                    span: method.span,
                };
                self.call_value(&f, pos, named, span)
            }
        }
    }

    /// `base.field`: a record field, a tensor property or a module member.
    pub(crate) fn field(&mut self, b: &Typed, field: &Ident) -> Ty {
        match &b.ty {
            Ty::Record(map) => match map.get(&field.name) {
                Some(t) => t.clone(),
                None => {
                    let list: Vec<&str> = map.keys().map(|k| &**k).collect();
                    let mut d = Diagnostic::error(
                        "E0601",
                        format!("no field `{}` in {}", field.name, b.ty),
                        field.span,
                    )
                    .with_primary_label("unknown field")
                    .with_label(
                        b.span,
                        if list.is_empty() {
                            "this record has no fields".to_string()
                        } else {
                            format!("this record has fields {}", list.join(", "))
                        },
                    );
                    if let Some(s) = nearest(&field.name, list.iter().copied()) {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    }
                    self.emit(d);
                    Ty::Unknown
                }
            },
            Ty::Module(m) => self.member(m, field),
            Ty::Unknown | Ty::Never => Ty::Unknown,
            Ty::Tensor(_) => {
                let src = self.src();
                match ops::property(&src, b, field) {
                    Some(r) => self.rule(r),
                    None => {
                        let mut d = Diagnostic::error(
                            "E0602",
                            format!("{} has no property `{}`", b.ty, field.name),
                            field.span,
                        )
                        .with_primary_label("unknown property")
                        .with_note("tensors have the properties `.T`, `.shape` and `.dtype`");
                        let is_fn = builtins::names().contains(&&*field.name)
                            || self
                                .lookup_value(&field.name)
                                .is_some_and(|t| matches!(t, Ty::Fn(_)));
                        if is_fn {
                            let text = self.snippet(b.span, "x");
                            d = d.with_hint(format!(
                                "to call the function, write `{text}.{}()`",
                                field.name
                            ));
                        }
                        self.emit(d);
                        Ty::Unknown
                    }
                }
            }
            other => {
                let mut d = Diagnostic::error(
                    "E0602",
                    format!("{other} has no field `{}`", field.name),
                    field.span,
                )
                .with_primary_label("no such field")
                .with_label(b.span, format!("this is {other}"));
                if matches!(other, Ty::Tuple(_)) {
                    d = d.with_hint("tuple elements are numbered: `.0`, `.1`, ...");
                }
                self.emit(d);
                Ty::Unknown
            }
        }
    }

    /// A member of an imported module.
    fn member(&mut self, module: &Name, field: &Ident) -> Ty {
        let Some(&unit) = self.module_units.get(module) else {
            // A module whose text could not be checked (a file that failed to load) has
            // unknown members, which raise no further error.
            return Ty::Unknown;
        };
        match self
            .units
            .get(unit)
            .and_then(|u| u.globals.get(&field.name))
        {
            Some(t) => t.clone(),
            None => {
                let names: Vec<String> = self
                    .units
                    .get(unit)
                    .map(|u| u.globals.keys().map(|k| k.to_string()).collect())
                    .unwrap_or_default();
                let mut d = Diagnostic::error(
                    "E0103",
                    format!("module `{module}` has no member `{}`", field.name),
                    field.span,
                )
                .with_primary_label("not defined in the module");
                if let Some(s) = nearest(&field.name, names.iter().map(String::as_str)) {
                    d = d.with_hint(format!("did you mean `{s}`?"));
                }
                self.emit(d);
                Ty::Unknown
            }
        }
    }

    /// Calls the function value `f` with checked arguments.
    pub(crate) fn call_value(
        &mut self,
        f: &Typed,
        args: Vec<Typed>,
        named: Vec<(Ident, Typed)>,
        span: Span,
    ) -> Ty {
        let func = match &f.ty {
            Ty::Unknown | Ty::Never => return Ty::Unknown,
            Ty::Fn(func) => func.clone(),
            other => {
                let text = self.snippet(f.span, "this");
                self.emit(
                    Diagnostic::error(
                        "E0405",
                        format!("`{text}` is not a function: it is {other}"),
                        f.span,
                    )
                    .with_primary_label(format!("this is {other}"))
                    .with_label(span, "called here"),
                );
                return Ty::Unknown;
            }
        };
        match &*func {
            FnTy::Builtin(name) => {
                if builtins::HIGHER_ORDER.contains(&&**name) {
                    return self.higher_order(name, f, args, named, span);
                }
                let src = self.src();
                match builtins::call(&src, name, &args, &named, span) {
                    Some(r) => self.rule(r),
                    None => Ty::Unknown,
                }
            }
            FnTy::User { decl, .. } | FnTy::Closure(decl) => {
                self.call_code(*decl, args, named, span)
            }
            FnTy::Sig { params, ret } => {
                if args.len() != params.len() {
                    self.emit(
                        Diagnostic::error(
                            "E0401",
                            format!(
                                "this function takes {} arguments but {} were given",
                                params.len(),
                                args.len()
                            ),
                            span,
                        )
                        .with_label(f.span, format!("this is {}", f.ty)),
                    );
                }
                if let Some((n, _)) = named.first() {
                    self.emit(
                        Diagnostic::error(
                            "E0402",
                            format!("a function of type {} has no parameter names", f.ty),
                            n.span,
                        )
                        .with_primary_label("named argument")
                        .with_hint("pass the argument by position"),
                    );
                }
                for (p, a) in params.iter().zip(&args) {
                    if merge::join(p, &a.ty).is_err() {
                        self.emit(
                            Diagnostic::error(
                                "E0406",
                                format!("the argument is {} but the function takes {p}", a.ty),
                                a.span,
                            )
                            .with_primary_label(format!("this is {}", a.ty))
                            .with_label(f.span, format!("this is {}", f.ty)),
                        );
                    }
                }
                ret.clone()
            }
            FnTy::Derived {
                kind,
                f: inner,
                wrt,
                at,
                at_src,
            } => self.call_derived(*kind, inner, wrt, (*at, *at_src), f.span, args, named, span),
            FnTy::Pullback { out, cot } => self.call_pullback(out, cot, args, named, span),
        }
    }

    /// The number of parameters of a function value, where it is fixed.
    pub(crate) fn arity(&self, f: &Ty) -> Option<(usize, Name)> {
        let Ty::Fn(func) = f else { return None };
        match &**func {
            FnTy::User { decl, .. } | FnTy::Closure(decl) => {
                let def = self.fns.get(*decl)?;
                Some((def.params.len(), def.name.clone()))
            }
            FnTy::Sig { params, .. } => Some((params.len(), Name::from("the function"))),
            _ => None,
        }
    }

    /// Calls the named function or closure `idx`: matches the arguments to the parameters,
    /// fits them to the annotations and checks the body at this signature.
    fn call_code(
        &mut self,
        idx: usize,
        args: Vec<Typed>,
        named: Vec<(Ident, Typed)>,
        span: Span,
    ) -> Ty {
        let Some(def) = self.fns.get(idx).cloned() else {
            return Ty::Unknown;
        };
        let same = self.same_src(def.src);
        let fallback = |def: &FnDef| {
            def.ret
                .as_ref()
                .map_or(Ty::Unknown, |(a, _)| a.to_ty(&Bindings::default(), false))
        };
        let shown = if def.is_closure {
            "the closure".to_string()
        } else {
            format!("`{}`", def.name)
        };
        let n = def.params.len();
        let mut slots: Vec<Option<Typed>> = vec![None; n];
        let mut ok = true;
        // A misspelt argument name also leaves its parameter missing: report it once.
        let mut misnamed = false;
        for (i, a) in args.into_iter().enumerate() {
            if i < n {
                if let Some(s) = slots.get_mut(i) {
                    *s = Some(a);
                }
            } else {
                ok = false;
                if i == n {
                    let mut d = Diagnostic::error(
                        "E0401",
                        format!(
                            "{shown} takes {n} argument{} but more were given",
                            if n == 1 { "" } else { "s" }
                        ),
                        a.span,
                    )
                    .with_primary_label("unexpected argument");
                    if same
                        && !def.is_closure
                        && let Some(p) = def.params.last()
                    {
                        d = d.with_label(p.span, "the last parameter");
                    }
                    self.emit(d);
                }
            }
        }
        for (name, a) in named {
            match def.params.iter().position(|p| p.name.name == name.name) {
                None => {
                    ok = false;
                    misnamed = true;
                    let mut d = Diagnostic::error(
                        "E0402",
                        format!("{shown} has no parameter named `{}`", name.name),
                        name.span,
                    )
                    .with_primary_label("unknown parameter");
                    let params: Vec<&str> = def.params.iter().map(|p| &*p.name.name).collect();
                    if let Some(s) = nearest(&name.name, params.iter().copied()) {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    } else if !params.is_empty() {
                        d = d.with_note(format!("the parameters are {}", params.join(", ")));
                    }
                    self.emit(d);
                }
                Some(p) => {
                    if slots.get(p).is_some_and(Option::is_some) {
                        ok = false;
                        self.emit(
                            Diagnostic::error(
                                "E0403",
                                format!("argument `{}` is given twice", name.name),
                                name.span,
                            )
                            .with_primary_label("given again by name")
                            .with_hint("remove one of them"),
                        );
                    } else if let Some(s) = slots.get_mut(p) {
                        *s = Some(a);
                    }
                }
            }
        }
        let mut filled = Vec::with_capacity(n);
        for (p, slot) in def.params.iter().zip(slots) {
            match slot {
                Some(t) => filled.push(t),
                None => match &p.default {
                    Some(d) => {
                        let ty = self.default_value(&def, d);
                        filled.push(Typed { ty, span });
                    }
                    None if misnamed => {
                        ok = false;
                        filled.push(Typed {
                            ty: Ty::Unknown,
                            span,
                        });
                    }
                    None => {
                        ok = false;
                        let mut d = Diagnostic::error(
                            "E0404",
                            format!("missing argument `{}` in the call of {shown}", p.name.name),
                            span,
                        )
                        .with_primary_label(format!("`{}` is not given", p.name.name));
                        if same {
                            d = d.with_label(p.span, "the parameter");
                        }
                        self.emit(d);
                        filled.push(Typed {
                            ty: Ty::Unknown,
                            span,
                        });
                    }
                },
            }
        }
        if !ok {
            return fallback(&def);
        }
        // Fit the annotated parameters; symbols bind across the whole signature.
        let mut b = Bindings::default();
        for ((p, ann), a) in def.params.iter().zip(&def.anns).zip(&filled) {
            let Some(ann) = ann else { continue };
            match ann.fit(&a.ty, &p.name.name, &mut b) {
                Ok(()) => {}
                Err(Misfit::Type) => {
                    let mut d = Diagnostic::error(
                        "E0406",
                        format!(
                            "argument `{}` of {shown} must be {ann}, found {}",
                            p.name.name, a.ty
                        ),
                        a.span,
                    )
                    .with_primary_label(format!("this is {}", a.ty));
                    if same && let Some(t) = &p.ty {
                        d = d.with_label(t.span, "the parameter's type");
                    }
                    self.emit(d);
                }
                Err(Misfit::Sym {
                    sym,
                    first,
                    first_from,
                    second,
                }) => {
                    let mut d = Diagnostic::error(
                        "E0407",
                        format!(
                            "{sym} is {first} from argument {first_from} but {second} from argument {}",
                            p.name.name
                        ),
                        a.span,
                    )
                    .with_primary_label(format!("this is {}, so {sym} = {second}", a.ty))
                    .with_note(format!(
                        "in {shown}, the dimension `{sym}` must have the same size everywhere"
                    ));
                    if same && let Some(t) = &p.ty {
                        d = d.with_label(t.span, format!("`{}` is {ann}", p.name.name));
                    }
                    self.emit(d);
                }
            }
        }
        let anns = sig_anns(&def);
        let identity = Bindings::identity(&anns);
        let ptys: Vec<Ty> = def
            .anns
            .iter()
            .zip(filled)
            .map(|(ann, a)| match ann {
                Some(ann) => ann.to_ty(&identity, true),
                None => a.ty,
            })
            .collect();
        if ptys
            .iter()
            .map(|t| ty_nodes(t, MAX_TYPE_NODES))
            .sum::<usize>()
            > MAX_TYPE_NODES
        {
            self.emit(
                Diagnostic::error(
                    "E0410",
                    format!("the argument types of `{}` grow too large to check", def.name),
                    span,
                )
                .with_primary_label("checking stopped here")
                .with_note("each call with new argument types is checked again; these types grow with every call")
                .with_hint("annotate the parameters and the result type so that the function is checked once"),
            );
            return fallback(&def);
        }
        let mark = self.diags.len();
        let result = self.instantiate(idx, &def, ptys, span);
        if self.std_units.contains(&def.unit) && !self.std_units.contains(&self.cx.unit) {
            self.report_at_call(mark, &def, span);
        }
        match &def.ret {
            Some((ann, _)) => ann.to_ty(&b, false),
            None if anns.is_empty() => result,
            None => {
                let mut map = HashMap::new();
                for a in &anns {
                    collect_bound(a, &b, &mut map);
                }
                merge::subst(&result, &map)
            }
        }
    }

    /// Moves the diagnostics found since `mark` inside the standard module that `def`
    /// belongs to onto `span`, the user's call of `def`: the user cannot change the module,
    /// and what they passed is what does not fit. The message stays; the place in the
    /// module and the labels there become notes.
    fn report_at_call(&mut self, mark: usize, def: &FnDef, span: Span) {
        let Some(module) = self
            .sources
            .get(def.src)
            .map(|s| (s.name.clone(), s.text.clone()))
        else {
            return;
        };
        let (module_name, module_text) = module;
        let here = if self.cx.src == self.main_src {
            None
        } else {
            self.sources.get(self.cx.src).map(|s| s.name.clone())
        };
        let snippet = |sp: Span| {
            module_text
                .get(sp.range())
                .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        // A closure that the module made (an optimizer's `update`) has no name of its own.
        let what = if def.is_closure {
            format!("a function made by `{module_name}`")
        } else {
            format!("`{module_name}.{}`", def.name)
        };
        let Some(moved) = self.diags.get_mut(mark..) else {
            return;
        };
        for d in moved {
            if d.file.as_deref() != Some(&*module_name) {
                continue;
            }
            let inner = d.primary.span;
            let before = module_text.get(..inner.start).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            let line_text = module_text
                .lines()
                .nth(line - 1)
                .map(str::trim)
                .unwrap_or_default();
            let mut notes = vec![format!(
                "the call of {what} fails at {module_name}:{line}:{col}: `{line_text}`"
            )];
            let inner_label = std::mem::take(&mut d.primary.message);
            for l in std::iter::once(crate::diagnostics::Label::new(inner, inner_label))
                .chain(std::mem::take(&mut d.labels))
            {
                if !l.message.is_empty() {
                    notes.push(format!("`{}` {}", snippet(l.span), l.message));
                }
            }
            notes.append(&mut d.notes);
            d.notes = notes;
            d.primary = crate::diagnostics::Label::new(span, format!("in this call of {what}"));
            d.file = here.clone();
        }
    }

    /// The value of a parameter's default, checked where the function was declared.
    fn default_value(&mut self, def: &FnDef, d: &Expr) -> Ty {
        let saved_cx = std::mem::replace(
            &mut self.cx,
            Cx {
                unit: def.unit,
                src: def.src,
            },
        );
        let mut env = Env::default();
        if let Some(c) = &def.captured {
            env.frames.push((**c).clone());
            env.captured = 1;
        }
        env.in_fn = true;
        let saved_env = std::mem::replace(&mut self.env, env);
        let t = self.expr(d);
        self.env = saved_env;
        self.cx = saved_cx;
        t
    }

    /// Checks the body of function `idx` with parameter types `ptys`, reusing an earlier
    /// check of the same signature while the top-level values it read are unchanged.
    pub(crate) fn instantiate(&mut self, idx: usize, def: &FnDef, ptys: Vec<Ty>, span: Span) -> Ty {
        // A function that calls itself with argument values the checker tracks (`f(n - 1)`,
        // `fib(n - 1) + fib(n - 2)`) would be checked once per value without end, and a
        // branching recursion exponentially often. Inside its own check, a call of it is
        // checked with those values forgotten, so the level below meets that same signature
        // and stops there (see `in_progress`).
        let ptys = if self.in_progress.iter().any(|(i, _)| *i == idx) {
            ptys.iter().map(forget_values).collect()
        } else {
            ptys
        };
        let key = (idx, format!("{ptys:?}"));
        if let Some(entries) = self.cache.get(&key) {
            let hit = entries.iter().position(|e| {
                e.reads.iter().all(|((unit, name), ty)| {
                    self.units.get(*unit).and_then(|u| u.globals.get(name)) == ty.as_ref()
                })
            });
            if let Some(i) = hit {
                let (result, diags, reads) = match entries.get(i) {
                    Some(e) => (e.result.clone(), e.diags.clone(), e.reads.clone()),
                    None => return Ty::Unknown,
                };
                self.diags.extend(diags);
                if let Some(frame) = self.reads.last_mut() {
                    for (k, v) in reads {
                        frame.entry(k).or_insert(v);
                    }
                }
                return result;
            }
        }
        if self.in_progress.contains(&key) {
            // Recursion at the same signature: the annotated result, or nothing known.
            return def
                .ret
                .as_ref()
                .map_or(Ty::Unknown, |(a, _)| a.to_ty(&Bindings::default(), true));
        }
        if self.depth >= MAX_CALL_DEPTH {
            self.emit(
                Diagnostic::error(
                    "E0410",
                    format!(
                        "calls nest more than {MAX_CALL_DEPTH} deep while checking `{}`",
                        def.name
                    ),
                    span,
                )
                .with_primary_label("checking stopped here")
                .with_note("each call with new argument types is checked again; a recursion that changes its argument types every time never ends")
                .with_hint("annotate the parameters and the result type so that the function is checked once"),
            );
            return Ty::Unknown;
        }
        self.checked.insert(idx);
        self.in_progress.insert(key.clone());
        self.depth += 1;
        self.reads.push(BTreeMap::new());
        let mark = self.diags.len();
        let result = self.run_body(def, ptys);
        let reads = self.reads.pop().unwrap_or_default();
        if let Some(parent) = self.reads.last_mut() {
            for (k, v) in &reads {
                parent.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let diags = self
            .diags
            .get(mark..)
            .map(<[Diagnostic]>::to_vec)
            .unwrap_or_default();
        self.depth -= 1;
        self.in_progress.remove(&key);
        self.cache.entry(key).or_default().push(CacheEntry {
            result: result.clone(),
            diags,
            reads: reads.into_iter().collect(),
        });
        result
    }

    fn run_body(&mut self, def: &FnDef, ptys: Vec<Ty>) -> Ty {
        let params: HashMap<Name, Ty> = def
            .params
            .iter()
            .zip(ptys)
            .map(|(p, t)| (p.name.name.clone(), t))
            .collect();
        let anns = sig_anns(def);
        let ret = RetCx {
            name: def.name.clone(),
            ann: def.ret.clone(),
            bindings: Bindings::identity(&anns),
            returns: Vec::new(),
        };
        let env = Env::for_body(def.captured.clone(), params, def.is_closure, ret);
        let saved_env = std::mem::replace(&mut self.env, env);
        let saved_cx = std::mem::replace(
            &mut self.cx,
            Cx {
                unit: def.unit,
                src: def.src,
            },
        );
        let (value, value_span) = match &def.body {
            Body::Block(b) => (self.block(b), Self::block_value_span(b)),
            Body::Expr(e) => (self.expr(e), e.span),
        };
        let rc = self.env.ret.take();
        if let (Some(rc), false) = (&rc, matches!(value, Ty::Never))
            && let Some((ann, ann_span)) = &rc.ann
        {
            let mut b = rc.bindings.clone();
            if ann.fit(&value, &rc.name, &mut b).is_err() {
                self.emit(
                    Diagnostic::error(
                        "E0408",
                        format!(
                            "`{}` is declared to return {ann}, but its body gives {value}",
                            rc.name
                        ),
                        value_span,
                    )
                    .with_primary_label(format!("this is {value}"))
                    .with_label(*ann_span, "the declared result type"),
                );
            }
        }
        let mut result = value;
        for r in rc.map(|r| r.returns).unwrap_or_default() {
            result = merge::join(&result, &r).unwrap_or(Ty::Unknown);
        }
        self.env = saved_env;
        self.cx = saved_cx;
        if matches!(result, Ty::Never) {
            Ty::Unknown
        } else {
            result
        }
    }

    /// Checks, once, every function declared since `first` that no call has checked, with
    /// its annotated parameter types (unannotated ones unknown), so its errors show.
    pub(crate) fn check_uncalled(&mut self, first: usize) {
        let mut idx = first;
        while idx < self.fns.len() {
            if !self.checked.contains(&idx)
                && let Some(def) = self.fns.get(idx).cloned()
            {
                let anns: Vec<&Ann> = def.anns.iter().flatten().collect();
                let identity = Bindings::identity(&anns);
                let ptys = def
                    .anns
                    .iter()
                    .map(|a| a.as_ref().map_or(Ty::Unknown, |a| a.to_ty(&identity, true)))
                    .collect();
                let saved = std::mem::take(&mut self.env);
                self.instantiate(idx, &def, ptys, Span::default());
                self.env = saved;
            }
            idx += 1;
        }
    }

    /// `import nn` or `import "path" as name`.
    pub(crate) fn import(&mut self, source: &ImportSource, alias: Option<&Ident>, span: Span) {
        match source {
            ImportSource::Module(m) => {
                let Some(text) = stdlib::module(&m.name) else {
                    let names: Vec<&str> = super::std_modules().collect();
                    let mut d =
                        Diagnostic::error("E0103", format!("unknown module `{}`", m.name), m.span)
                            .with_primary_label("no standard module of this name")
                            .with_note(format!("the standard modules are {}", names.join(", ")));
                    if let Some(s) = nearest(&m.name, names.iter().copied()) {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    }
                    self.emit(d);
                    return;
                };
                // A standard module is checked like an imported file (its own unit, its
                // members typed), once per checker.
                let id = ModuleId::standard(&m.name);
                let ty = match self.file_units.get(&id) {
                    Some((_, name)) => Ty::Module(name.clone()),
                    None => {
                        let ty = self.check_file(id.clone(), text, m.span);
                        if let Some(&(unit, _)) = self.file_units.get(&id) {
                            self.std_units.insert(unit);
                        }
                        ty
                    }
                };
                let name = alias.map_or_else(|| m.name.clone(), |a| a.name.clone());
                self.bind_name(name, ty);
            }
            ImportSource::File(path, path_span) => {
                let Some(alias) = alias else {
                    self.emit(
                        Diagnostic::error("E0104", "a file import needs a name", span)
                            .with_primary_label("no `as NAME`")
                            .with_hint(format!("name the module: `import \"{path}\" as util`")),
                    );
                    return;
                };
                let ty = self.load_file(path, *path_span);
                self.bind_name(alias.name.clone(), ty);
            }
        }
    }

    /// Declares the file module that `path` names where it is imported (checked once per
    /// checker, however it is spelled) and returns its value.
    fn load_file(&mut self, path: &str, span: Span) -> Ty {
        let from = self.sources.get(self.cx.src).and_then(|s| s.origin.clone());
        let id = match self.loader.as_mut().map(|l| l.resolve(from.as_ref(), path)) {
            Some(Ok(id)) => id,
            Some(Err(why)) => {
                self.emit(
                    Diagnostic::error("E0104", format!("cannot import `{path}`: {why}"), span)
                        .with_primary_label("could not be read"),
                );
                return Ty::Unknown;
            }
            None => {
                self.emit(
                    Diagnostic::error("E0104", format!("cannot import `{path}` here"), span)
                        .with_primary_label("file imports are not available")
                        .with_note("this checker was created without access to files"),
                );
                return Ty::Unknown;
            }
        };
        if let Some((_, name)) = self.file_units.get(&id) {
            return Ty::Module(name.clone());
        }
        if self.loading.contains(&id) {
            let name = id.name();
            self.emit(
                Diagnostic::error("E0104", format!("`{name}` imports itself"), span)
                    .with_primary_label("import cycle")
                    .with_note(format!(
                        "the chain is {} -> {name}",
                        self.loading
                            .iter()
                            .map(|m| &**m.name())
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    )),
            );
            return Ty::Unknown;
        }
        // The loader resolved the path, so it exists here.
        let read = self.loader.as_mut().map(|l| l.read(&id));
        match read {
            Some(Ok(text)) => self.check_file(id, &text, span),
            Some(Err(why)) => {
                self.emit(
                    Diagnostic::error("E0104", format!("cannot import `{path}`: {why}"), span)
                        .with_primary_label("could not be read"),
                );
                Ty::Unknown
            }
            None => Ty::Unknown,
        }
    }

    /// Checks the text of the file module `id` in a unit of its own and returns the
    /// module's value; its diagnostics name the file.
    fn check_file(&mut self, id: ModuleId, text: &str, span: Span) -> Ty {
        // The name is what `Ty::Module` holds, so it must stand for one module only; a
        // loader that gives two files one name has the second shown by its key.
        let name = if self.module_units.contains_key(id.name()) {
            id.key().clone()
        } else {
            id.name().clone()
        };
        let (program, syntax) = crate::syntax::parse(text);
        let src = self.add_source(text, &name);
        if let Some(s) = self.sources.get_mut(src) {
            s.origin = Some(id.clone());
        }
        for mut d in syntax {
            d.file = Some(name.clone());
            self.emit(d);
        }
        self.units.push(crate::check::Unit::default());
        let unit = self.units.len() - 1;
        self.loading.push(id.clone());
        let saved_env = std::mem::take(&mut self.env);
        let saved_cx = std::mem::replace(&mut self.cx, Cx { unit, src });
        let first_fn = self.fns.len();
        let mark = self.diags.len();
        self.top_level(&program.stmts);
        self.check_uncalled(first_fn);
        self.cx = saved_cx;
        self.env = saved_env;
        self.loading.pop();
        let failed = self
            .diags
            .get(mark..)
            .is_some_and(|ds| ds.iter().any(Diagnostic::is_error));
        if failed {
            let mut d = Diagnostic::error("E0104", format!("`{name}` has errors"), span)
                .with_primary_label("imported here");
            d.notes.push(format!("the errors are reported in `{name}`"));
            self.emit(d);
        }
        self.file_units.insert(id, (unit, name.clone()));
        self.module_units.insert(name.clone(), unit);
        Ty::Module(name)
    }
}

/// The sizes `b` gives to the symbols of `ann`, for substitution into a result.
fn collect_bound(ann: &Ann, b: &Bindings, out: &mut HashMap<Name, ir::Dim>) {
    match ann {
        Ann::Tensor { dims, .. } => {
            for d in dims {
                if let crate::check::annot::AnnDim::Sym(s) = d
                    && let Some(v) = b.get(s)
                {
                    out.insert(s.clone(), v.clone());
                }
            }
        }
        Ann::Tuple(items) => items.iter().for_each(|a| collect_bound(a, b, out)),
        Ann::Record(fields) => fields.values().for_each(|a| collect_bound(a, b, out)),
        Ann::Fn { params, ret } => {
            params.iter().for_each(|a| collect_bound(a, b, out));
            collect_bound(ret, b, out);
        }
        Ann::Str | Ann::Unit | Ann::Unknown => {}
    }
}

/// The number of nodes of `t`, counting at most up to `limit`.
fn ty_nodes(t: &Ty, limit: usize) -> usize {
    match t {
        Ty::Tuple(items) => {
            let mut n = 1;
            for i in items {
                n += ty_nodes(i, limit);
                if n > limit {
                    break;
                }
            }
            n
        }
        Ty::Record(fields) => {
            let mut n = 1;
            for i in fields.values() {
                n += ty_nodes(i, limit);
                if n > limit {
                    break;
                }
            }
            n
        }
        Ty::Iter(i) => 1 + ty_nodes(i, limit),
        _ => 1,
    }
}

/// True for what may stand where `@jit` wants an integer (`devices:`, each index of
/// `batch:`): an integer tensor that is, or may be, a scalar, or an unknown type, which
/// fits anything. Both arguments share it so that they accept the same values.
fn is_int_scalar(t: &Ty) -> bool {
    match t {
        Ty::Unknown => true,
        Ty::Tensor(t) => t.dtype.is_int() && t.rank().is_none_or(|r| r == 0),
        _ => false,
    }
}

/// The annotations of a function's signature, parameters then result, left out where
/// none was written. Instantiating and checking a body both bind their symbols.
fn sig_anns(def: &FnDef) -> Vec<&Ann> {
    def.anns
        .iter()
        .flatten()
        .chain(def.ret.as_ref().map(|(a, _)| a))
        .collect()
}

/// `t` without the values the checker tracks in its tensors (integer scalars, shape lists,
/// bools, float scalars): only dtypes, shapes and weakness are left.
fn forget_values(t: &Ty) -> Ty {
    match t {
        Ty::Tensor(x) => Ty::Tensor(crate::check::ty::TensorTy {
            value: None,
            ..x.clone()
        }),
        Ty::Tuple(items) => Ty::Tuple(items.iter().map(forget_values).collect()),
        Ty::Record(fields) => Ty::Record(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), forget_values(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}
