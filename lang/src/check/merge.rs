//! Joining abstract values where control flow meets: both branches of an `if`, a loop's
//! entry and the end of its body, and a variable's old and new value when it is rebound.

use std::collections::HashMap;

use ir::{Dim, Shape};

use crate::ast::Name;
use crate::check::ty::{TensorTy, Ty};

/// Why two values cannot be joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clash {
    /// Different dtypes (`f32` and `f64`).
    DType,
    /// Different ranks.
    Rank,
    /// Different structures (a tensor and a tuple, tuples of different lengths, ...).
    Structure,
}

/// The value that covers both `a` and `b`: the same dtype, rank and structure, dims that
/// differ become `?`, known values that differ are forgotten. A weak literal adopts the
/// other side's dtype. `Never` (a branch that returned) leaves the other side.
pub(crate) fn join(a: &Ty, b: &Ty) -> Result<Ty, Clash> {
    join_with(a, b, false)
}

/// Rebinding `x = new` where `x` held `old`: like [`join`], except that a function value is
/// simply replaced (it has no dtype or rank to keep).
pub(crate) fn rebind(old: &Ty, new: &Ty) -> Result<Ty, Clash> {
    join_with(old, new, true)
}

fn join_with(a: &Ty, b: &Ty, replace_fns: bool) -> Result<Ty, Clash> {
    match (a, b) {
        (Ty::Never, x) | (x, Ty::Never) => Ok(x.clone()),
        (Ty::Unknown, _) | (_, Ty::Unknown) => Ok(Ty::Unknown),
        (Ty::Tensor(x), Ty::Tensor(y)) => join_tensors(x, y).map(Ty::Tensor),
        (Ty::Tuple(xs), Ty::Tuple(ys)) => {
            if xs.len() != ys.len() {
                return Err(Clash::Structure);
            }
            xs.iter()
                .zip(ys)
                .map(|(x, y)| join_with(x, y, replace_fns))
                .collect::<Result<Vec<_>, _>>()
                .map(Ty::Tuple)
        }
        (Ty::Record(xs), Ty::Record(ys)) => {
            if xs.len() != ys.len() || xs.keys().any(|k| !ys.contains_key(k)) {
                return Err(Clash::Structure);
            }
            let mut out = xs.clone();
            for (k, v) in out.iter_mut() {
                if let Some(y) = ys.get(k) {
                    *v = join_with(v, y, replace_fns)?;
                }
            }
            Ok(Ty::Record(out))
        }
        (Ty::Fn(f), Ty::Fn(g)) => {
            if f == g {
                Ok(a.clone())
            } else if replace_fns {
                Ok(b.clone())
            } else {
                // Two different functions have no common abstract value; what is called
                // through the join is not checked rather than checked wrongly.
                Ok(Ty::Unknown)
            }
        }
        (Ty::Str(x), Ty::Str(y)) => Ok(Ty::Str(if x == y { x.clone() } else { None })),
        (Ty::Unit, Ty::Unit) => Ok(Ty::Unit),
        (Ty::Range, Ty::Range) => Ok(Ty::Range),
        (Ty::Iter(x), Ty::Iter(y)) => Ok(Ty::Iter(Box::new(join_with(x, y, replace_fns)?))),
        (Ty::Module(x), Ty::Module(y)) if x == y => Ok(a.clone()),
        _ => Err(Clash::Structure),
    }
}

fn join_tensors(x: &TensorTy, y: &TensorTy) -> Result<TensorTy, Clash> {
    let dtype = if x.dtype == y.dtype || (y.weak && crate::check::annot::dtype_fits(x.dtype, y)) {
        x.dtype
    } else if x.weak && crate::check::annot::dtype_fits(y.dtype, x) {
        y.dtype
    } else {
        return Err(Clash::DType);
    };
    let shape = match (&x.shape, &y.shape) {
        (Some(s), Some(t)) => {
            if s.rank() != t.rank() {
                return Err(Clash::Rank);
            }
            Some(Shape(
                s.dims()
                    .iter()
                    .zip(t.dims())
                    .map(|(a, b)| if a == b { a.clone() } else { Dim::unknown() })
                    .collect(),
            ))
        }
        _ => None,
    };
    Ok(TensorTy {
        dtype,
        shape,
        weak: x.weak && y.weak,
        value: if x.value == y.value {
            x.value.clone()
        } else {
            None
        },
    })
}

/// `t` with every dim made `?` and known values forgotten (loops that do not settle).
pub(crate) fn widen(t: &Ty) -> Ty {
    match t {
        Ty::Tensor(x) => Ty::Tensor(TensorTy {
            dtype: x.dtype,
            shape: x
                .shape
                .as_ref()
                .map(|s| Shape(vec![Dim::unknown(); s.rank()])),
            weak: x.weak,
            value: None,
        }),
        Ty::Tuple(xs) => Ty::Tuple(xs.iter().map(widen).collect()),
        Ty::Record(xs) => Ty::Record(xs.iter().map(|(k, v)| (k.clone(), widen(v))).collect()),
        Ty::Iter(x) => Ty::Iter(Box::new(widen(x))),
        other => other.clone(),
    }
}

/// `t` with symbolic dims renamed by `map` (a function's symbols replaced by the sizes
/// its caller's arguments gave them).
pub(crate) fn subst(t: &Ty, map: &HashMap<Name, Dim>) -> Ty {
    if map.is_empty() {
        return t.clone();
    }
    match t {
        Ty::Tensor(x) => Ty::Tensor(TensorTy {
            dtype: x.dtype,
            shape: x.shape.as_ref().map(|s| {
                Shape(
                    s.dims()
                        .iter()
                        .map(|d| match d {
                            Dim::Sym(n) => map.get(n).cloned().unwrap_or_else(|| d.clone()),
                            Dim::Known(_) => d.clone(),
                        })
                        .collect(),
                )
            }),
            weak: x.weak,
            value: x.value.clone(),
        }),
        Ty::Tuple(xs) => Ty::Tuple(xs.iter().map(|x| subst(x, map)).collect()),
        Ty::Record(xs) => Ty::Record(xs.iter().map(|(k, v)| (k.clone(), subst(v, map))).collect()),
        Ty::Iter(x) => Ty::Iter(Box::new(subst(x, map))),
        other => other.clone(),
    }
}

/// The value without the facts only a literal has (weakness and a known value): what a
/// gradient or a computed result of the same type looks like.
pub(crate) fn strong(t: &Ty) -> Ty {
    match t {
        Ty::Tensor(x) => Ty::Tensor(TensorTy::new(x.dtype, x.shape.clone())),
        Ty::Tuple(xs) => Ty::Tuple(xs.iter().map(strong).collect()),
        Ty::Record(xs) => Ty::Record(xs.iter().map(|(k, v)| (k.clone(), strong(v))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::DType;

    #[test]
    fn joins() {
        let a = Ty::tensor(DType::F32, &[3, 4]);
        let b = Ty::tensor(DType::F32, &[3, 5]);
        assert_eq!(
            join(&a, &b).map(|t| t.to_string()),
            Ok("f32[3, ?]".to_string())
        );
        let c = Ty::tensor(DType::F64, &[3, 4]);
        assert_eq!(join(&a, &c), Err(Clash::DType));
        let d = Ty::tensor(DType::F32, &[3]);
        assert_eq!(join(&a, &d), Err(Clash::Rank));
        assert_eq!(join(&Ty::Never, &a), Ok(a.clone()));
        assert_eq!(join(&a, &Ty::Unit), Err(Clash::Structure));
        let mut weak = TensorTy::new(DType::I64, Some(Shape::scalar()));
        weak.weak = true;
        let s = Ty::scalar(DType::F32);
        assert_eq!(join(&s, &Ty::Tensor(weak)), Ok(s.clone()));
    }
}
