//! The higher-order builtins (`grad`, `value_and_grad`, `vjp`, `jvp`, `hessian`, `jit`,
//! `map`, `map2`): they take functions, so they are typed by calling them.

use std::sync::Arc;

use ir::{Dim, Shape};

use crate::ast::Ident;
use crate::check::Checker;
use crate::check::merge::{self, strong};
use crate::check::ops::Typed;
use crate::check::ty::{Const, Deriv, FnTy, IntVal, TensorTy, Ty, Wrt};
use crate::diagnostics::Diagnostic;
use crate::span::Span;

impl Checker {
    /// A call of the higher-order builtin `name`.
    pub(crate) fn higher_order(
        &mut self,
        name: &str,
        callee: &Typed,
        args: Vec<Typed>,
        named: Vec<(Ident, Typed)>,
        span: Span,
    ) -> Ty {
        match name {
            "grad" | "value_and_grad" | "hessian" => {
                let kind = match name {
                    "grad" => Deriv::Grad,
                    "value_and_grad" => Deriv::ValueAndGrad,
                    _ => Deriv::Hessian,
                };
                self.derive(kind, name, callee, args, named, span)
            }
            "jit" => {
                self.no_named(name, &named);
                let Some(f) = self.fn_arg(name, &args, 1, span) else {
                    return Ty::Unknown;
                };
                f.ty
            }
            "vjp" => {
                self.no_named(name, &named);
                let Some(f) = self.fn_arg(name, &args, usize::MAX, span) else {
                    return Ty::Unknown;
                };
                let xs: Vec<Typed> = args.iter().skip(1).cloned().collect();
                if xs.is_empty() {
                    self.emit(
                        Diagnostic::error(
                            "E0704",
                            "`vjp` needs the point to differentiate at",
                            span,
                        )
                        .with_primary_label("no inputs given")
                        .with_hint("pass the inputs after the function: `vjp(f, x)`"),
                    );
                    return Ty::Unknown;
                }
                let cot = match xs.as_slice() {
                    [one] => strong(&one.ty),
                    many => Ty::Tuple(many.iter().map(|x| strong(&x.ty)).collect()),
                };
                let y = self.call_value(&f, xs, Vec::new(), span);
                let pullback = Ty::Fn(Arc::new(FnTy::Pullback {
                    out: strong(&y),
                    cot,
                }));
                Ty::Tuple(vec![y, pullback])
            }
            "jvp" => {
                self.no_named(name, &named);
                let Some(f) = self.fn_arg(name, &args, 3, span) else {
                    return Ty::Unknown;
                };
                let (Some(primals), Some(tangents)) = (args.get(1), args.get(2)) else {
                    self.emit(
                        Diagnostic::error(
                            "E0706",
                            "`jvp` takes a function, the primals and the tangents",
                            span,
                        )
                        .with_primary_label("missing arguments")
                        .with_hint("write `jvp(f, (x,), (v,))`"),
                    );
                    return Ty::Unknown;
                };
                let ps = match &primals.ty {
                    Ty::Tuple(ps) => ps.clone(),
                    Ty::Unknown => return Ty::Unknown,
                    other => {
                        let text = self.snippet(primals.span, "x");
                        self.emit(
                            Diagnostic::error(
                                "E0706",
                                format!("`jvp` takes the primals as a tuple, found {other}"),
                                primals.span,
                            )
                            .with_primary_label("not a tuple")
                            .with_hint(format!("wrap it in a one-element tuple: `({text},)`")),
                        );
                        return Ty::Unknown;
                    }
                };
                match &tangents.ty {
                    Ty::Tuple(ts) if ts.len() == ps.len() => {
                        for (i, (p, t)) in ps.iter().zip(ts).enumerate() {
                            if !same_type(p, t) {
                                self.emit(
                                    Diagnostic::error(
                                        "E0706",
                                        format!("tangent {i} is {t}, but its primal is {p}"),
                                        tangents.span,
                                    )
                                    .with_primary_label(format!("tangent {i} is {t}"))
                                    .with_label(primals.span, format!("primal {i} is {p}"))
                                    .with_note("each tangent must have the type of its primal"),
                                );
                            }
                        }
                    }
                    Ty::Unknown => {}
                    other => {
                        self.emit(
                            Diagnostic::error(
                                "E0706",
                                format!("the tangents must be a tuple like the primals {}, found {other}", primals.ty),
                                tangents.span,
                            )
                            .with_primary_label(format!("this is {other}"))
                            .with_label(primals.span, format!("this is {}", primals.ty)),
                        );
                    }
                }
                let xs: Vec<Typed> = ps
                    .into_iter()
                    .map(|ty| Typed {
                        ty,
                        span: primals.span,
                    })
                    .collect();
                let y = self.call_value(&f, xs, Vec::new(), span);
                let t = strong(&y);
                Ty::Tuple(vec![y, t])
            }
            "map" => {
                self.no_named(name, &named);
                let Some(f) = self.fn_arg(name, &args, 2, span) else {
                    return Ty::Unknown;
                };
                let Some(t) = args.get(1) else {
                    self.missing_structure(name, span);
                    return Ty::Unknown;
                };
                self.map_leaves(&f, &t.ty, t.span, span)
            }
            "map2" => {
                self.no_named(name, &named);
                let Some(f) = self.fn_arg(name, &args, 3, span) else {
                    return Ty::Unknown;
                };
                let (Some(a), Some(b)) = (args.get(1), args.get(2)) else {
                    self.missing_structure(name, span);
                    return Ty::Unknown;
                };
                self.map2_leaves(&f, a, b, &a.ty, &b.ty, span)
            }
            _ => Ty::Unknown,
        }
    }

    fn missing_structure(&mut self, name: &str, span: Span) {
        let example = if name == "map" {
            "map(f, params)"
        } else {
            "map2(f, params, grads)"
        };
        self.emit(
            Diagnostic::error(
                "E0704",
                format!("`{name}` needs a function and the values to map over"),
                span,
            )
            .with_primary_label("missing arguments")
            .with_hint(format!("write `{example}`")),
        );
    }

    /// Reports named arguments given to a builtin that takes none.
    fn no_named(&mut self, name: &str, named: &[(Ident, Typed)]) {
        for (n, _) in named {
            self.emit(
                Diagnostic::error(
                    "E0402",
                    format!("`{name}` has no parameter named `{}`", n.name),
                    n.span,
                )
                .with_primary_label("unknown parameter"),
            );
        }
    }

    /// The function argument of a higher-order builtin (its first), checking that it is
    /// one and that at most `max` arguments were given.
    fn fn_arg(&mut self, name: &str, args: &[Typed], max: usize, span: Span) -> Option<Typed> {
        if let Some(extra) = args.get(max) {
            self.emit(
                Diagnostic::error(
                    "E0401",
                    format!(
                        "`{name}` takes {max} argument{} but {} were given",
                        if max == 1 { "" } else { "s" },
                        args.len()
                    ),
                    extra.span,
                )
                .with_primary_label("unexpected argument"),
            );
        }
        let Some(f) = args.first() else {
            self.emit(
                Diagnostic::error("E0704", format!("`{name}` needs a function"), span)
                    .with_primary_label("no function given")
                    .with_hint(format!("pass the function to transform: `{name}(f)`")),
            );
            return None;
        };
        match &f.ty {
            Ty::Fn(_) => Some(f.clone()),
            Ty::Unknown | Ty::Never => None,
            other => {
                self.emit(
                    Diagnostic::error(
                        "E0704",
                        format!("`{name}` needs a function, found {other}"),
                        f.span,
                    )
                    .with_primary_label(format!("this is {other}"))
                    .with_hint(format!(
                        "wrap the computation in a function: `{name}(|x| ...)`"
                    )),
                );
                None
            }
        }
    }

    /// `grad(f, wrt: ..)`, `value_and_grad(f, ..)`, `hessian(f, ..)`.
    fn derive(
        &mut self,
        kind: Deriv,
        name: &str,
        _callee: &Typed,
        args: Vec<Typed>,
        named: Vec<(Ident, Typed)>,
        span: Span,
    ) -> Ty {
        let mut wrt = Wrt::One(0);
        let mut wrt_span = span;
        for (n, v) in &named {
            if &*n.name != "wrt" {
                let mut d = Diagnostic::error(
                    "E0402",
                    format!("`{name}` has no parameter named `{}`", n.name),
                    n.span,
                )
                .with_primary_label("unknown parameter");
                if crate::check::suggest::nearest(&n.name, ["wrt"]).is_some() {
                    d = d.with_hint("did you mean `wrt`?");
                }
                self.emit(d);
                continue;
            }
            wrt_span = v.span;
            match wrt_value(&v.ty) {
                Some(w) => wrt = w,
                None if v.ty.is_unknown() => {}
                None => {
                    self.emit(
                        Diagnostic::error(
                            "E0704",
                            format!(
                                "`wrt` must be an argument index or a tuple of them, found {}",
                                v.ty
                            ),
                            v.span,
                        )
                        .with_primary_label("not a literal argument index")
                        .with_hint("write the positions: `wrt: 1` or `wrt: (0, 2)`"),
                    );
                }
            }
        }
        if kind == Deriv::Hessian && matches!(wrt, Wrt::Many(_)) {
            self.emit(
                Diagnostic::error(
                    "E0704",
                    "`hessian` differentiates with respect to one argument",
                    wrt_span,
                )
                .with_primary_label("several arguments")
                .with_hint("pick one: `wrt: 0`"),
            );
            wrt = Wrt::One(0);
        }
        let Some(f) = self.fn_arg(name, &args, 1, span) else {
            return Ty::Unknown;
        };
        if let Some((n, fname)) = self.arity(&f.ty) {
            let idxs = match &wrt {
                Wrt::One(i) => vec![*i],
                Wrt::Many(v) => v.clone(),
            };
            if let Some(bad) = idxs.iter().find(|&&i| i >= n) {
                self.wrt_out_of_range(*bad, n, &fname, wrt_span);
                return Ty::Unknown;
            }
        }
        Ty::Fn(Arc::new(FnTy::Derived {
            kind,
            f: f.ty,
            wrt,
            at: span,
            at_src: self.cx.src,
        }))
    }

    fn wrt_out_of_range(&mut self, i: usize, n: usize, fname: &str, span: Span) {
        self.emit(
            Diagnostic::error(
                "E0702",
                format!(
                    "`wrt: {i}` is out of range: `{fname}` takes {n} argument{}",
                    if n == 1 { "" } else { "s" }
                ),
                span,
            )
            .with_primary_label(format!(
                "argument positions are 0 to {}",
                n.saturating_sub(1)
            ))
            .with_note("`wrt` counts arguments from 0"),
        );
    }

    /// Calls the gradient function `grad(f, wrt)` (or its relatives) with `args`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn call_derived(
        &mut self,
        kind: Deriv,
        f: &Ty,
        wrt: &Wrt,
        (at, at_src): (Span, usize),
        callee_span: Span,
        args: Vec<Typed>,
        named: Vec<(Ident, Typed)>,
        span: Span,
    ) -> Ty {
        let inner = Typed {
            ty: f.clone(),
            span: callee_span,
        };
        let out = self.call_value(&inner, args.clone(), named, span);
        let fname = match f {
            Ty::Fn(func) => match &**func {
                FnTy::User { name, .. } => format!("`{name}`"),
                FnTy::Closure(_) => "the closure".to_string(),
                _ => "the function".to_string(),
            },
            _ => "the function".to_string(),
        };
        let scalar_float = match &out {
            Ty::Unknown | Ty::Never => true,
            Ty::Tensor(t) => t.dtype.is_float() && t.rank().is_none_or(|r| r == 0),
            _ => false,
        };
        let what = match kind {
            Deriv::Grad => "grad",
            Deriv::ValueAndGrad => "value_and_grad",
            Deriv::Hessian => "hessian",
        };
        if !scalar_float {
            let mut d = Diagnostic::error(
                "E0701",
                format!("`{what}` needs a function that returns a float scalar, but {fname} returns {out}"),
                span,
            )
            .with_primary_label(format!("{fname} returns {out} here"));
            if at_src == self.cx.src && at != span {
                d = d.with_label(at, "the gradient is taken here");
            }
            d = match &out {
                Ty::Tensor(t) if t.dtype.is_float() => d.with_hint(
                    "reduce the result to a scalar: return `sum(...)` or `mean(...)` of it",
                ),
                Ty::Tensor(_) => {
                    d.with_hint("only float results have gradients: compute the loss in `f32`")
                }
                _ => d.with_hint("return a float scalar (the loss) from the function"),
            };
            self.emit(d);
        }
        let idxs: Vec<usize> = match wrt {
            Wrt::One(i) => vec![*i],
            Wrt::Many(v) => v.clone(),
        };
        let mut grads = Vec::new();
        for i in idxs {
            let Some(a) = args.get(i) else {
                if self.arity(f).is_none() {
                    self.wrt_out_of_range(i, args.len(), &fname.replace('`', ""), span);
                }
                return Ty::Unknown;
            };
            if let Ty::Tensor(t) = &a.ty
                && !t.dtype.is_float()
            {
                let text = self.snippet(a.span, "x");
                self.emit(
                        Diagnostic::error(
                            "E0703",
                            format!("cannot differentiate with respect to argument {i}: it is {} (only floats have gradients)", a.ty),
                            a.span,
                        )
                        .with_primary_label(format!("this is {}", a.ty))
                        .with_hint(format!("convert it to a float: `f32({text})`, or choose another argument with `wrt:`")),
                    );
                return Ty::Unknown;
            }
            grads.push(strong(&a.ty));
        }
        let g = match wrt {
            Wrt::One(_) => grads.into_iter().next().unwrap_or(Ty::Unknown),
            Wrt::Many(_) => Ty::Tuple(grads),
        };
        match kind {
            Deriv::Grad => g,
            Deriv::ValueAndGrad => Ty::Tuple(vec![strong(&out), g]),
            Deriv::Hessian => match g {
                Ty::Tensor(t) => Ty::Tensor(TensorTy::new(
                    t.dtype,
                    t.shape.map(|s| {
                        let mut dims = s.0.clone();
                        dims.extend(s.0);
                        Shape(dims)
                    }),
                )),
                _ => Ty::Unknown,
            },
        }
    }

    /// Calls a pullback from `vjp` with the cotangent of the output.
    pub(crate) fn call_pullback(
        &mut self,
        out: &Ty,
        cot: &Ty,
        args: Vec<Typed>,
        named: Vec<(Ident, Typed)>,
        span: Span,
    ) -> Ty {
        self.no_named("pullback", &named);
        if args.len() != 1 {
            self.emit(
                Diagnostic::error(
                    "E0401",
                    format!(
                        "a pullback takes one argument (the cotangent) but {} were given",
                        args.len()
                    ),
                    span,
                )
                .with_hint(format!("pass one value of the output's type {out}")),
            );
            return cot.clone();
        }
        if let Some(v) = args.first()
            && !same_type(out, &v.ty)
        {
            self.emit(
                Diagnostic::error(
                    "E0705",
                    format!(
                        "the cotangent must have the output's type {out}, found {}",
                        v.ty
                    ),
                    v.span,
                )
                .with_primary_label(format!("this is {}", v.ty))
                .with_note("the pullback of `vjp(f, x)` takes a value shaped like `f(x)`"),
            );
        }
        cot.clone()
    }

    fn map_leaves(&mut self, f: &Typed, t: &Ty, t_span: Span, span: Span) -> Ty {
        match t {
            Ty::Tuple(items) => Ty::Tuple(
                items
                    .iter()
                    .map(|x| self.map_leaves(f, x, t_span, span))
                    .collect(),
            ),
            Ty::Record(fields) => Ty::Record(
                fields
                    .iter()
                    .map(|(k, x)| (k.clone(), self.map_leaves(f, x, t_span, span)))
                    .collect(),
            ),
            Ty::Unknown | Ty::Never => Ty::Unknown,
            leaf => self.call_value(
                f,
                vec![Typed {
                    ty: leaf.clone(),
                    span: t_span,
                }],
                Vec::new(),
                span,
            ),
        }
    }

    fn map2_leaves(&mut self, f: &Typed, a: &Typed, b: &Typed, x: &Ty, y: &Ty, span: Span) -> Ty {
        match (x, y) {
            (Ty::Unknown | Ty::Never, _) | (_, Ty::Unknown | Ty::Never) => Ty::Unknown,
            (Ty::Tuple(xs), Ty::Tuple(ys)) if xs.len() == ys.len() => Ty::Tuple(
                xs.iter()
                    .zip(ys)
                    .map(|(p, q)| self.map2_leaves(f, a, b, p, q, span))
                    .collect(),
            ),
            (Ty::Record(xs), Ty::Record(ys))
                if xs.len() == ys.len() && xs.keys().all(|k| ys.contains_key(k)) =>
            {
                let mut out = xs.clone();
                for (k, v) in out.iter_mut() {
                    if let Some(q) = ys.get(k) {
                        *v = self.map2_leaves(
                            f,
                            a,
                            b,
                            &xs.get(k).cloned().unwrap_or(Ty::Unknown),
                            q,
                            span,
                        );
                    }
                }
                Ty::Record(out)
            }
            (Ty::Tuple(_) | Ty::Record(_), _) | (_, Ty::Tuple(_) | Ty::Record(_)) => {
                self.emit(
                    Diagnostic::error(
                        "E0608",
                        format!(
                            "`map2` needs two values of the same structure, found {} and {}",
                            a.ty, b.ty
                        ),
                        b.span,
                    )
                    .with_primary_label(format!("this is {}", b.ty))
                    .with_label(a.span, format!("this is {}", a.ty)),
                );
                Ty::Unknown
            }
            (p, q) => self.call_value(
                f,
                vec![
                    Typed {
                        ty: p.clone(),
                        span: a.span,
                    },
                    Typed {
                        ty: q.clone(),
                        span: b.span,
                    },
                ],
                Vec::new(),
                span,
            ),
        }
    }
}

/// The `wrt:` value as argument positions: a known integer or a tuple of them.
fn wrt_value(t: &Ty) -> Option<Wrt> {
    fn index(t: &Ty) -> Option<usize> {
        match t {
            Ty::Tensor(TensorTy {
                dtype,
                value: Some(Const::Ints(v)),
                ..
            }) if dtype.is_int() => match v.as_slice() {
                [IntVal::Lit(n)] => usize::try_from(*n).ok(),
                _ => None,
            },
            _ => None,
        }
    }
    match t {
        Ty::Tuple(items) => items
            .iter()
            .map(index)
            .collect::<Option<Vec<_>>>()
            .map(Wrt::Many),
        other => index(other).map(Wrt::One),
    }
}

/// Whether two values have the same type for differentiation purposes: the same
/// structure, dtype and rank, and no two known dims that differ.
fn same_type(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Tensor(x), Ty::Tensor(y)) => {
            let dtype_ok = x.dtype == y.dtype
                || crate::check::annot::dtype_fits(x.dtype, y)
                || crate::check::annot::dtype_fits(y.dtype, x);
            let shape_ok = match (&x.shape, &y.shape) {
                (Some(s), Some(t)) => {
                    s.rank() == t.rank()
                        && s.dims().iter().zip(t.dims()).all(|(p, q)| match (p, q) {
                            (Dim::Known(m), Dim::Known(n)) => m == n,
                            _ => true,
                        })
                }
                _ => true,
            };
            dtype_ok && shape_ok
        }
        (Ty::Tuple(xs), Ty::Tuple(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(p, q)| same_type(p, q))
        }
        (Ty::Record(xs), Ty::Record(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, v)| ys.get(k).is_some_and(|w| same_type(v, w)))
        }
        _ => merge::join(a, b).is_ok(),
    }
}
