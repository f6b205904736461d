//! Type annotations: turning a written type into a pattern ([`Ann`]) that values are
//! fitted against, with symbolic dimensions bound consistently across one signature.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use ir::{DType, Dim, Shape};

use crate::ast::{DimExprKind, Name, TypeExpr, TypeExprKind};
use crate::check::Checker;
use crate::check::ty::{FnTy, TensorTy, Ty, write_list, write_record, write_tuple};
use crate::diagnostics::Diagnostic;

/// A type annotation after alias expansion: what a value must look like.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Ann {
    /// A tensor type; `ellipsis` for a leading `...` (any number of leading dims).
    Tensor {
        dtype: DType,
        dims: Vec<AnnDim>,
        ellipsis: bool,
    },
    Tuple(Vec<Ann>),
    Record(BTreeMap<Name, Ann>),
    Fn {
        params: Vec<Ann>,
        ret: Box<Ann>,
    },
    Str,
    Unit,
    /// After an error in the annotation: anything fits.
    Unknown,
}

/// One dimension of an annotation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AnnDim {
    Known(usize),
    /// A symbolic dimension: the same name must bind the same size in one signature.
    Sym(Name),
    /// `_` or `?`: any size.
    Any,
}

impl fmt::Display for Ann {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ann::Tensor {
                dtype,
                dims,
                ellipsis,
            } => {
                write!(f, "{dtype}")?;
                if dims.is_empty() && !ellipsis {
                    return Ok(());
                }
                f.write_str("[")?;
                let mut first = true;
                if *ellipsis {
                    f.write_str("...")?;
                    first = false;
                }
                for d in dims {
                    if !first {
                        f.write_str(", ")?;
                    }
                    first = false;
                    match d {
                        AnnDim::Known(n) => write!(f, "{n}")?,
                        AnnDim::Sym(s) => f.write_str(s)?,
                        AnnDim::Any => f.write_str("_")?,
                    }
                }
                f.write_str("]")
            }
            Ann::Tuple(items) => write_tuple(f, items),
            Ann::Record(fields) => write_record(f, fields),
            Ann::Fn { params, ret } => {
                f.write_str("fn(")?;
                write_list(f, params)?;
                write!(f, ") -> {ret}")
            }
            Ann::Str => f.write_str("str"),
            Ann::Unit => f.write_str("()"),
            Ann::Unknown => f.write_str("?"),
        }
    }
}

/// The sizes symbolic dimensions took in one signature, each with the argument that fixed
/// it (for "n is 32 from argument x but 64 from argument y").
#[derive(Clone, Debug, Default)]
pub(crate) struct Bindings {
    map: HashMap<Name, (Dim, Name)>,
}

impl Bindings {
    /// The dimension bound to `sym`, if any.
    pub(crate) fn get(&self, sym: &str) -> Option<&Dim> {
        self.map.get(sym).map(|(d, _)| d)
    }

    /// Bindings that map every symbol of `ann` to itself (inside the function's body the
    /// symbols stand for themselves).
    pub(crate) fn identity(anns: &[&Ann]) -> Bindings {
        let mut b = Bindings::default();
        for a in anns {
            a.visit_syms(&mut |s| {
                b.map
                    .entry(s.clone())
                    .or_insert_with(|| (Dim::Sym(s.clone()), s.clone()));
            });
        }
        b
    }
}

/// Why a value does not fit an annotation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Misfit {
    /// The value's type differs (dtype, rank, a fixed dim, structure).
    Type,
    /// A symbolic dim got two different sizes.
    Sym {
        sym: Name,
        first: Dim,
        first_from: Name,
        second: Dim,
    },
}

impl Ann {
    fn visit_syms(&self, f: &mut dyn FnMut(&Name)) {
        match self {
            Ann::Tensor { dims, .. } => {
                for d in dims {
                    if let AnnDim::Sym(s) = d {
                        f(s);
                    }
                }
            }
            Ann::Tuple(items) => items.iter().for_each(|a| a.visit_syms(f)),
            Ann::Record(fields) => fields.values().for_each(|a| a.visit_syms(f)),
            Ann::Fn { params, ret } => {
                params.iter().for_each(|a| a.visit_syms(f));
                ret.visit_syms(f);
            }
            Ann::Str | Ann::Unit | Ann::Unknown => {}
        }
    }

    /// The abstract value of something of this type. Symbols bound in `b` take their size;
    /// unbound ones stay symbolic when `keep_unbound`, and become `?` otherwise.
    pub(crate) fn to_ty(&self, b: &Bindings, keep_unbound: bool) -> Ty {
        match self {
            Ann::Tensor {
                dtype,
                dims,
                ellipsis,
            } => {
                let shape = if *ellipsis {
                    None
                } else {
                    Some(Shape(
                        dims.iter()
                            .map(|d| match d {
                                AnnDim::Known(n) => Dim::Known(*n),
                                AnnDim::Sym(s) => match b.get(s) {
                                    Some(d) => d.clone(),
                                    None if keep_unbound => Dim::Sym(s.clone()),
                                    None => Dim::unknown(),
                                },
                                AnnDim::Any => Dim::unknown(),
                            })
                            .collect(),
                    ))
                };
                Ty::Tensor(TensorTy::new(*dtype, shape))
            }
            Ann::Tuple(items) => {
                if items.is_empty() {
                    Ty::Unit
                } else {
                    Ty::Tuple(items.iter().map(|a| a.to_ty(b, keep_unbound)).collect())
                }
            }
            Ann::Record(fields) => Ty::Record(
                fields
                    .iter()
                    .map(|(n, a)| (n.clone(), a.to_ty(b, keep_unbound)))
                    .collect(),
            ),
            Ann::Fn { params, ret } => Ty::Fn(Arc::new(FnTy::Sig {
                params: params.iter().map(|a| a.to_ty(b, keep_unbound)).collect(),
                ret: ret.to_ty(b, keep_unbound),
            })),
            Ann::Str => Ty::Str(None),
            Ann::Unit => Ty::Unit,
            Ann::Unknown => Ty::Unknown,
        }
    }

    /// Fits `ty` (the value of argument `param`) to this annotation, binding symbols in `b`.
    pub(crate) fn fit(&self, ty: &Ty, param: &Name, b: &mut Bindings) -> Result<(), Misfit> {
        match (self, ty) {
            (Ann::Unknown, _) | (_, Ty::Unknown) | (_, Ty::Never) => Ok(()),
            (
                Ann::Tensor {
                    dtype,
                    dims,
                    ellipsis,
                },
                Ty::Tensor(t),
            ) => {
                if !dtype_fits(*dtype, t) {
                    return Err(Misfit::Type);
                }
                let Some(shape) = &t.shape else {
                    return Ok(());
                };
                let found = shape.dims();
                if (*ellipsis && found.len() < dims.len())
                    || (!*ellipsis && found.len() != dims.len())
                {
                    return Err(Misfit::Type);
                }
                let offset = found.len() - dims.len();
                for (want, got) in dims.iter().zip(&found[offset..]) {
                    fit_dim(want, got, param, b)?;
                }
                Ok(())
            }
            (Ann::Tuple(items), Ty::Tuple(tys)) => {
                if items.len() != tys.len() {
                    return Err(Misfit::Type);
                }
                for (a, t) in items.iter().zip(tys) {
                    a.fit(t, param, b)?;
                }
                Ok(())
            }
            (Ann::Tuple(items), Ty::Unit) if items.is_empty() => Ok(()),
            (Ann::Unit, Ty::Unit) => Ok(()),
            (Ann::Record(fields), Ty::Record(found)) => {
                if fields.len() != found.len() || fields.keys().any(|k| !found.contains_key(k)) {
                    return Err(Misfit::Type);
                }
                for (n, a) in fields {
                    if let Some(t) = found.get(n) {
                        a.fit(t, param, b)?;
                    }
                }
                Ok(())
            }
            (Ann::Fn { .. }, Ty::Fn(_)) => Ok(()),
            (Ann::Str, Ty::Str(_)) => Ok(()),
            _ => Err(Misfit::Type),
        }
    }

    /// The value `found` seen through this annotation (for `let x: T = e`): the annotated
    /// dtype, and each dim the value leaves unknown filled in from the annotation.
    pub(crate) fn refine(&self, found: &Ty, b: &Bindings) -> Ty {
        match (self, found) {
            (_, Ty::Unknown) | (_, Ty::Never) => self.to_ty(b, false),
            (Ann::Tensor { dtype, dims, .. }, Ty::Tensor(t)) => {
                let shape = match &t.shape {
                    None => match self.to_ty(b, false) {
                        Ty::Tensor(a) => a.shape,
                        _ => None,
                    },
                    Some(s) => {
                        let offset = s.rank().saturating_sub(dims.len());
                        let mut out = s.0.clone();
                        for (i, d) in out.iter_mut().enumerate().skip(offset) {
                            if d.is_unknown()
                                && let Some(want) = dims.get(i - offset)
                            {
                                *d = match want {
                                    AnnDim::Known(n) => Dim::Known(*n),
                                    AnnDim::Sym(s) => {
                                        b.get(s).cloned().unwrap_or_else(Dim::unknown)
                                    }
                                    AnnDim::Any => Dim::unknown(),
                                };
                            }
                        }
                        Some(Shape(out))
                    }
                };
                Ty::Tensor(TensorTy {
                    dtype: *dtype,
                    shape,
                    weak: false,
                    value: t.value.clone(),
                })
            }
            (Ann::Tuple(items), Ty::Tuple(tys)) if items.len() == tys.len() => {
                Ty::Tuple(items.iter().zip(tys).map(|(a, t)| a.refine(t, b)).collect())
            }
            (Ann::Record(fields), Ty::Record(found)) => Ty::Record(
                fields
                    .iter()
                    .map(|(n, a)| {
                        let t = found
                            .get(n)
                            .map_or_else(|| a.to_ty(b, false), |t| a.refine(t, b));
                        (n.clone(), t)
                    })
                    .collect(),
            ),
            _ => found.clone(),
        }
    }
}

/// Whether a tensor of `t` may be passed where `want` is expected: the same dtype, or a
/// weak literal that adopts it (an integer literal becomes a float, not the reverse).
pub(crate) fn dtype_fits(want: DType, t: &TensorTy) -> bool {
    if t.dtype == want {
        return true;
    }
    if !t.weak {
        return false;
    }
    if want.is_float() {
        t.dtype.is_float() || t.dtype.is_int()
    } else if want.is_int() {
        t.dtype.is_int()
    } else {
        false
    }
}

fn fit_dim(want: &AnnDim, got: &Dim, param: &Name, b: &mut Bindings) -> Result<(), Misfit> {
    match want {
        AnnDim::Any => Ok(()),
        AnnDim::Known(n) => match got {
            Dim::Known(m) if m != n => Err(Misfit::Type),
            _ => Ok(()),
        },
        AnnDim::Sym(s) => match b.map.get(s) {
            None => {
                b.map.insert(s.clone(), (got.clone(), param.clone()));
                Ok(())
            }
            Some((first, from)) => {
                if let (Dim::Known(x), Dim::Known(y)) = (first, got) {
                    if x != y {
                        return Err(Misfit::Sym {
                            sym: s.clone(),
                            first: first.clone(),
                            first_from: from.clone(),
                            second: got.clone(),
                        });
                    }
                } else if first.is_unknown() && !got.is_unknown() {
                    // A later argument tells what the size is: remember the better fact.
                    b.map.insert(s.clone(), (got.clone(), param.clone()));
                }
                Ok(())
            }
        },
    }
}

/// Symbol names already used in one signature, so that each use of a type alias gets
/// fresh ones.
#[derive(Debug, Default)]
pub(crate) struct SymScope {
    used: HashSet<Name>,
}

impl SymScope {
    /// A scope that reserves the symbols written directly in `types`.
    pub(crate) fn new<'a>(types: impl IntoIterator<Item = &'a TypeExpr>) -> SymScope {
        let mut s = SymScope::default();
        for t in types {
            collect_syms(t, &mut s.used);
        }
        s
    }

    fn fresh(&mut self, name: &Name) -> Name {
        if self.used.insert(name.clone()) {
            return name.clone();
        }
        for k in 2.. {
            let cand: Name = Arc::from(format!("{name}{k}"));
            if self.used.insert(cand.clone()) {
                return cand;
            }
        }
        name.clone()
    }
}

fn collect_syms(t: &TypeExpr, out: &mut HashSet<Name>) {
    match &t.kind {
        TypeExprKind::Tensor {
            dims: Some(dims), ..
        } => {
            for d in dims {
                if let DimExprKind::Sym(s) = &d.kind {
                    out.insert(s.clone());
                }
            }
        }
        TypeExprKind::Tensor { dims: None, .. } | TypeExprKind::Str => {}
        TypeExprKind::Tuple(items) => items.iter().for_each(|i| collect_syms(i, out)),
        TypeExprKind::Record(fields) => fields.iter().for_each(|(_, i)| collect_syms(i, out)),
        TypeExprKind::Fn { params, ret } => {
            params.iter().for_each(|i| collect_syms(i, out));
            collect_syms(ret, out);
        }
    }
}

/// How deep aliases may refer to aliases (a guard against `type A = A`).
const MAX_ALIAS_DEPTH: usize = 32;

impl Checker {
    /// Turns the annotation `te` into an [`Ann`], reporting unknown dtypes and aliases
    /// (E0411) when `report` is set.
    pub(crate) fn annotation(&mut self, te: &TypeExpr, syms: &mut SymScope, report: bool) -> Ann {
        self.annotation_in(te, syms, report, &HashMap::new(), 0)
    }

    fn annotation_in(
        &mut self,
        te: &TypeExpr,
        syms: &mut SymScope,
        report: bool,
        rename: &HashMap<Name, Name>,
        depth: usize,
    ) -> Ann {
        match &te.kind {
            TypeExprKind::Str => Ann::Str,
            TypeExprKind::Tuple(items) => {
                if items.is_empty() {
                    Ann::Unit
                } else {
                    Ann::Tuple(
                        items
                            .iter()
                            .map(|t| self.annotation_in(t, syms, report, rename, depth))
                            .collect(),
                    )
                }
            }
            TypeExprKind::Record(fields) => {
                let mut out = BTreeMap::new();
                for (name, t) in fields {
                    let a = self.annotation_in(t, syms, report, rename, depth);
                    if out.insert(name.name.clone(), a).is_some() && report {
                        self.emit(Diagnostic::error(
                            "E0411",
                            format!("field `{}` appears twice in the record type", name.name),
                            name.span,
                        ));
                    }
                }
                Ann::Record(out)
            }
            TypeExprKind::Fn { params, ret } => Ann::Fn {
                params: params
                    .iter()
                    .map(|t| self.annotation_in(t, syms, report, rename, depth))
                    .collect(),
                ret: Box::new(self.annotation_in(ret, syms, report, rename, depth)),
            },
            TypeExprKind::Tensor { dtype, dims } => {
                if let Some(dt) = DType::from_name(&dtype.name) {
                    let mut out = Vec::new();
                    let mut ellipsis = false;
                    for (i, d) in dims.iter().flatten().enumerate() {
                        match &d.kind {
                            DimExprKind::Known(n) => {
                                out.push(AnnDim::Known(usize::try_from(*n).unwrap_or(usize::MAX)))
                            }
                            DimExprKind::Sym(s) => out.push(AnnDim::Sym(
                                rename.get(s).cloned().unwrap_or_else(|| s.clone()),
                            )),
                            DimExprKind::Any | DimExprKind::Unknown => out.push(AnnDim::Any),
                            DimExprKind::Ellipsis => {
                                if i == 0 {
                                    ellipsis = true;
                                } else if report {
                                    self.emit(
                                        Diagnostic::error(
                                            "E0411",
                                            "`...` may only stand for the leading dimensions",
                                            d.span,
                                        )
                                        .with_primary_label("not the first dimension")
                                        .with_hint(
                                            format!("write it first: `{}[..., d]`", dtype.name),
                                        ),
                                    );
                                }
                            }
                        }
                    }
                    return Ann::Tensor {
                        dtype: dt,
                        dims: out,
                        ellipsis,
                    };
                }
                let alias = if dims.is_none() {
                    self.units
                        .get(self.cx.unit)
                        .and_then(|u| u.aliases.get(&dtype.name))
                        .cloned()
                } else {
                    None
                };
                match alias {
                    Some(def) if depth < MAX_ALIAS_DEPTH => {
                        // Each use of an alias gets fresh symbols (LANGUAGE.md §13).
                        let mut inner = HashSet::new();
                        collect_syms(&def, &mut inner);
                        let mut names: Vec<&Name> = inner.iter().collect();
                        names.sort();
                        let rename: HashMap<Name, Name> = names
                            .into_iter()
                            .map(|n| (n.clone(), syms.fresh(n)))
                            .collect();
                        // Errors inside the alias were reported where it was declared.
                        self.annotation_in(&def, syms, false, &rename, depth + 1)
                    }
                    Some(_) => Ann::Unknown,
                    None => {
                        if report {
                            let mut candidates: Vec<String> =
                                DType::ALL.iter().map(|d| d.name().to_string()).collect();
                            if let Some(u) = self.units.get(self.cx.unit) {
                                candidates.extend(u.aliases.keys().map(|k| k.to_string()));
                            }
                            candidates.push("str".to_string());
                            let mut d = Diagnostic::error(
                                "E0411",
                                format!("unknown type `{}`", dtype.name),
                                dtype.span,
                            )
                            .with_primary_label("not a dtype or a type alias");
                            if let Some(s) = crate::check::suggest::nearest(
                                &dtype.name,
                                candidates.iter().map(String::as_str),
                            ) {
                                d = d.with_hint(format!("did you mean `{s}`?"));
                            }
                            self.emit(d);
                        }
                        Ann::Unknown
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dims: &[Dim]) -> Ty {
        Ty::Tensor(TensorTy::new(DType::F32, Some(Shape(dims.to_vec()))))
    }

    #[test]
    fn symbols_bind_across_arguments() {
        let ann = Ann::Tensor {
            dtype: DType::F32,
            dims: vec![AnnDim::Sym("n".into()), AnnDim::Known(3)],
            ellipsis: false,
        };
        let mut b = Bindings::default();
        assert_eq!(
            ann.fit(&t(&[Dim::Known(32), Dim::Known(3)]), &"x".into(), &mut b),
            Ok(())
        );
        let err = ann.fit(&t(&[Dim::Known(64), Dim::Known(3)]), &"y".into(), &mut b);
        assert!(matches!(
            err,
            Err(Misfit::Sym {
                first: Dim::Known(32),
                second: Dim::Known(64),
                ..
            })
        ));
        assert_eq!(
            ann.fit(&t(&[Dim::Known(32), Dim::Known(4)]), &"y".into(), &mut b),
            Err(Misfit::Type)
        );
        assert_eq!(ann.to_ty(&b, false).to_string(), "f32[32, 3]");
    }

    #[test]
    fn ellipsis_matches_trailing_dims() {
        let ann = Ann::Tensor {
            dtype: DType::F32,
            dims: vec![AnnDim::Known(4)],
            ellipsis: true,
        };
        let mut b = Bindings::default();
        assert_eq!(
            ann.fit(
                &t(&[Dim::Known(2), Dim::Known(7), Dim::Known(4)]),
                &"x".into(),
                &mut b
            ),
            Ok(())
        );
        assert_eq!(ann.fit(&t(&[]), &"x".into(), &mut b), Err(Misfit::Type));
        assert_eq!(ann.to_string(), "f32[..., 4]");
    }
}
