//! `einsum(spec, a, b, ...)`, composed of primitives.
//!
//! The spec is read as the checker reads it (`lang::check::builtins::neural::einsum`): one
//! term of axis letters per operand, separated by commas, then `->` and the result's
//! letters; without `->` the result has the letters that appear exactly once, in
//! alphabetical order. A letter has one size wherever it appears; a letter repeated within
//! one term takes that operand's diagonal. `...` is not supported.
//!
//! The evaluation never materialises the full product of all operands:
//! 1. each operand's repeated letters become its diagonal (one `gather`), and the letters
//!    that no other operand and not the result name are summed away;
//! 2. the operands are contracted left to right, two at a time: letters shared by both
//!    that are still needed later are batch axes, shared letters that are not are
//!    contracted, and the two are transposed and reshaped into `[batch, m, k] @ [batch, k,
//!    n]` — one batched matrix product, the device's fastest kernel. With nothing to
//!    contract the pair is a broadcast product instead;
//! 3. what is left is summed over the letters the result does not name and transposed
//!    into the result's order.
//!
//! Operands are cast to their common dtype (the checker's `join_dtype` rule, the
//! promotion of `concat`); bools compute as `i64` and come back as "any product true".

use devices::Tensor;
use ir::{BinaryOp, DType, Op, ReduceOp};
use lang::Span;
use lang::check::ops::promote_dtypes;

use super::Call;
use crate::eval::Eval;
use crate::eval::errors::{self, R};
use crate::value::{TensorVal, Value};

/// An operand on its way through the contraction: its elements and one letter per axis.
struct Term {
    t: Tensor,
    letters: Vec<char>,
}

/// The parsed spec: the letters of each operand and of the result.
struct Spec {
    inputs: Vec<Vec<char>>,
    output: Vec<char>,
}

/// Reads the spec; the errors are those of the checker's rule, for specs it could not see.
fn parse(spec: &str, operands: usize, span: Span) -> R<Spec> {
    if spec.contains("...") {
        return Err(errors::bad_value(
            "einsum specs with `...` are not supported; name every axis".to_string(),
            span,
        ));
    }
    let (lhs, out) = match spec.split_once("->") {
        Some((l, r)) => (l, Some(r.trim())),
        None => (spec, None),
    };
    let inputs: Vec<Vec<char>> = lhs.split(',').map(|t| t.trim().chars().collect()).collect();
    if inputs.len() != operands {
        return Err(errors::bad_value(
            format!(
                "the einsum spec names {} operands, but {operands} are given",
                inputs.len()
            ),
            span,
        ));
    }
    if let Some(c) = inputs.iter().flatten().find(|c| !c.is_ascii_alphabetic()) {
        return Err(errors::bad_value(
            format!("`{c}` is not an axis letter in the einsum spec \"{spec}\""),
            span,
        ));
    }
    let count = |c: char| inputs.iter().flatten().filter(|&&l| l == c).count();
    let output: Vec<char> = match out {
        Some(o) => o.chars().collect(),
        None => {
            let mut once: Vec<char> = inputs
                .iter()
                .flatten()
                .copied()
                .filter(|&c| count(c) == 1)
                .collect();
            once.sort_unstable();
            once
        }
    };
    for (i, &c) in output.iter().enumerate() {
        if !c.is_ascii_alphabetic() {
            return Err(errors::bad_value(
                format!("`{c}` is not an axis letter in the result of the einsum spec \"{spec}\""),
                span,
            ));
        }
        if output.get(..i).is_some_and(|before| before.contains(&c)) {
            return Err(errors::bad_value(
                format!("the result of the einsum spec \"{spec}\" names the axis `{c}` twice"),
                span,
            ));
        }
        if count(c) == 0 {
            return Err(errors::bad_value(
                format!("the result's axis `{c}` is not an axis of any operand in \"{spec}\""),
                span,
            ));
        }
    }
    Ok(Spec { inputs, output })
}

/// `einsum(spec, a, b, ...)`.
pub(super) fn einsum(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let spec = c.string(0)?.unwrap_or("");
    let spec_span = c.span(0);
    let mut vals: Vec<(&TensorVal, Span)> = Vec::with_capacity(c.rest.len());
    for (v, s) in &c.rest {
        match v {
            Value::Tensor(t) => vals.push((t, *s)),
            other => {
                return Err(errors::mismatch(
                    format!("`einsum` needs tensors, found {}", other.describe()),
                    *s,
                ));
            }
        }
    }
    let parsed = parse(spec, vals.len(), spec_span)?;
    // The common dtype, as the checker folds it.
    let mut acc: Option<(DType, bool)> = None;
    for (t, s) in &vals {
        acc = Some(match acc {
            None => (t.dtype, t.weak),
            Some(a) => promote_dtypes(a, (t.dtype, t.weak)).map_err(|(p, q)| {
                errors::mismatch(format!("dtypes do not mix in `einsum`: {p} and {q}"), *s)
            })?,
        });
    }
    let dtype = acc.map_or(DType::F32, |(d, _)| d);
    let compute = if dtype == DType::Bool {
        DType::I64
    } else {
        dtype
    };
    // Each letter's size, checked across operands.
    let mut sizes: Vec<(char, usize, usize)> = Vec::new();
    for (k, ((t, s), letters)) in vals.iter().zip(&parsed.inputs).enumerate() {
        if t.rank() != letters.len() {
            return Err(errors::mismatch(
                format!(
                    "einsum term `{}` names {} axes, but operand {k} has shape {:?}",
                    letters.iter().collect::<String>(),
                    letters.len(),
                    t.shape()
                ),
                *s,
            ));
        }
        for (&l, &d) in letters.iter().zip(t.shape()) {
            match sizes.iter().find(|(m, _, _)| *m == l) {
                Some(&(_, prev, from)) if prev != d => {
                    return Err(errors::mismatch(
                        format!(
                            "einsum axis `{l}` is {prev} in operand {from} but {d} in operand {k}"
                        ),
                        *s,
                    ));
                }
                Some(_) => {}
                None => sizes.push((l, d, k)),
            }
        }
    }
    let size_of = |l: char| {
        sizes
            .iter()
            .find(|(m, _, _)| *m == l)
            .map_or(1, |&(_, d, _)| d)
    };
    let span = c.span;
    let mut terms = Vec::with_capacity(vals.len());
    for ((t, s), letters) in vals.iter().zip(&parsed.inputs) {
        let x = ev.cast(&t.t, compute, *s)?;
        terms.push(diagonal(ev, x, letters, &size_of, *s)?);
    }
    // Contract left to right; `needed(k)` is what the operands after `k` and the result
    // still name.
    let needed = |k: usize| -> Vec<char> {
        let mut v = parsed.output.clone();
        for l in parsed.inputs.iter().skip(k + 1).flatten() {
            if !v.contains(l) {
                v.push(*l);
            }
        }
        v
    };
    let mut terms = terms.into_iter();
    let Some(first) = terms.next() else {
        return Err(errors::bad_value(
            "`einsum` needs at least one operand".to_string(),
            spec_span,
        ));
    };
    let mut acc = first;
    for (k, b) in terms.enumerate() {
        // `acc` holds operands 0..=k; `b` is operand k + 1.
        let later = needed(k + 1);
        let keep_a: Vec<char> = b.letters.clone().into_iter().chain(later.clone()).collect();
        acc = sum_except(ev, acc, &keep_a, span)?;
        let keep_b: Vec<char> = acc
            .letters
            .clone()
            .into_iter()
            .chain(later.clone())
            .collect();
        let b = sum_except(ev, b, &keep_b, span)?;
        acc = contract(ev, acc, b, &later, &size_of, span)?;
    }
    let acc = sum_except(ev, acc, &parsed.output, span)?;
    let perm: Vec<usize> = parsed
        .output
        .iter()
        .map(|l| acc.letters.iter().position(|m| m == l).unwrap_or(0))
        .collect();
    let mut t = acc.t;
    if perm.iter().enumerate().any(|(i, &p)| i != p) {
        t = ev.exec(&Op::Transpose { perm }, &[&t], span)?;
    }
    let t = ev.cast(&t, dtype, span)?;
    Ok(Value::Tensor(TensorVal {
        t,
        dtype,
        weak: false,
    }))
}

/// The operand with each repeated letter reduced to its diagonal (`ii` of a matrix is its
/// diagonal vector); the letters come out in first-appearance order.
fn diagonal(
    ev: &Eval<'_>,
    x: Tensor,
    letters: &[char],
    size_of: &dyn Fn(char) -> usize,
    span: Span,
) -> R<Term> {
    let mut unique: Vec<char> = Vec::with_capacity(letters.len());
    for &l in letters {
        if !unique.contains(&l) {
            unique.push(l);
        }
    }
    if unique.len() == letters.len() {
        return Ok(Term {
            t: x,
            letters: letters.to_vec(),
        });
    }
    // Group each letter's axes together, merge each group into one axis of size n^k, and
    // take the diagonal of a group as the elements at i * (1 + n + ... + n^(k-1)).
    let mut perm = Vec::with_capacity(letters.len());
    let mut dims = Vec::with_capacity(unique.len());
    for &u in &unique {
        let axes: Vec<usize> = (0..letters.len())
            .filter(|&a| letters.get(a) == Some(&u))
            .collect();
        let n = size_of(u);
        let k = u32::try_from(axes.len()).unwrap_or(u32::MAX);
        dims.push(n.checked_pow(k).ok_or_else(|| {
            errors::bad_value(
                format!("the diagonal of einsum axis `{u}` is too large"),
                span,
            )
        })?);
        perm.extend(axes);
    }
    let mut t = ev.exec(&Op::Transpose { perm }, &[&x], span)?;
    t = ev.reshape(&t, &dims, span)?;
    for (axis, &u) in unique.iter().enumerate() {
        let k = letters.iter().filter(|&&l| l == u).count();
        if k < 2 {
            continue;
        }
        let n = size_of(u);
        let step: usize = (0..k).map(|p| n.pow(u32::try_from(p).unwrap_or(0))).sum();
        let idx: Vec<i64> = (0..n)
            .map(|i| i64::try_from(i * step).unwrap_or(i64::MAX))
            .collect();
        let idx = Tensor::from_vec(idx, &[n]).map_err(|e| ev.device_error(e, span))?;
        t = ev.exec(&Op::Gather { axis }, &[&t, &idx], span)?;
    }
    Ok(Term { t, letters: unique })
}

/// Sums `x` over its letters that `keep` does not name.
fn sum_except(ev: &Eval<'_>, x: Term, keep: &[char], span: Span) -> R<Term> {
    let axes: Vec<usize> = (0..x.letters.len())
        .filter(|&a| x.letters.get(a).is_some_and(|l| !keep.contains(l)))
        .collect();
    if axes.is_empty() {
        return Ok(x);
    }
    let letters = x
        .letters
        .iter()
        .copied()
        .filter(|l| keep.contains(l))
        .collect();
    let t = ev.exec(
        &Op::Reduce {
            op: ReduceOp::Sum,
            axes,
            keepdims: false,
        },
        &[&x.t],
        span,
    )?;
    Ok(Term { t, letters })
}

/// The product of two operands, summed over the letters both name that `later` does not:
/// one batched matrix product, or a broadcast product when nothing is summed.
fn contract(
    ev: &Eval<'_>,
    a: Term,
    b: Term,
    later: &[char],
    size_of: &dyn Fn(char) -> usize,
    span: Span,
) -> R<Term> {
    let shared: Vec<char> = a
        .letters
        .iter()
        .copied()
        .filter(|l| b.letters.contains(l))
        .collect();
    let batch: Vec<char> = shared
        .iter()
        .copied()
        .filter(|l| later.contains(l))
        .collect();
    let summed: Vec<char> = shared
        .iter()
        .copied()
        .filter(|l| !later.contains(l))
        .collect();
    let a_only: Vec<char> = a
        .letters
        .iter()
        .copied()
        .filter(|l| !shared.contains(l))
        .collect();
    let b_only: Vec<char> = b
        .letters
        .iter()
        .copied()
        .filter(|l| !shared.contains(l))
        .collect();
    let prod = |ls: &[char]| ls.iter().map(|&l| size_of(l)).product::<usize>();
    let dims = |ls: &[char]| ls.iter().map(|&l| size_of(l)).collect::<Vec<usize>>();
    let mut letters = batch.clone();
    letters.extend(&a_only);
    letters.extend(&b_only);
    let out_dims = dims(&letters);
    let t = if summed.is_empty() {
        // A broadcast product: a as [batch, a_only, 1...], b as [batch, 1..., b_only].
        let at = arrange(ev, &a, &[&batch, &a_only], span)?;
        let bt = arrange(ev, &b, &[&batch, &b_only], span)?;
        let mut ad = dims(&batch);
        ad.extend(dims(&a_only));
        ad.extend(vec![1; b_only.len()]);
        let mut bd = dims(&batch);
        bd.extend(vec![1; a_only.len()]);
        bd.extend(dims(&b_only));
        let at = ev.reshape(&at, &ad, span)?;
        let bt = ev.reshape(&bt, &bd, span)?;
        ev.exec(&Op::Binary { op: BinaryOp::Mul }, &[&at, &bt], span)?
    } else {
        let (nb, m, k, n) = (prod(&batch), prod(&a_only), prod(&summed), prod(&b_only));
        let at = arrange(ev, &a, &[&batch, &a_only, &summed], span)?;
        let bt = arrange(ev, &b, &[&batch, &summed, &b_only], span)?;
        let at = ev.reshape(&at, &[nb, m, k], span)?;
        let bt = ev.reshape(&bt, &[nb, k, n], span)?;
        let y = ev.exec(&Op::MatMul {}, &[&at, &bt], span)?;
        ev.reshape(&y, &out_dims, span)?
    };
    Ok(Term { t, letters })
}

/// `x` transposed so that its axes follow the letters of `groups` in order.
fn arrange(ev: &Eval<'_>, x: &Term, groups: &[&[char]], span: Span) -> R<Tensor> {
    let perm: Vec<usize> = groups
        .iter()
        .flat_map(|g| g.iter())
        .map(|l| x.letters.iter().position(|m| m == l).unwrap_or(0))
        .collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x.t.clone());
    }
    ev.exec(&Op::Transpose { perm }, &[&x.t], span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_output_is_the_letters_seen_once_sorted() {
        let s = parse("ji,jk", 2, Span::new(0, 0)).ok().map(|s| s.output);
        assert_eq!(s, Some(vec!['i', 'k']));
        let s = parse("ii", 1, Span::new(0, 0)).ok().map(|s| s.output);
        assert_eq!(s, Some(vec![]));
    }

    #[test]
    fn bad_specs_are_errors() {
        for (spec, n) in [
            ("ij,jk->i,k", 2),
            ("ij->ii", 1),
            ("ij->x", 1),
            ("ij,jk", 1),
            ("i...->i", 1),
            ("i1->i", 1),
        ] {
            assert!(parse(spec, n, Span::new(0, 0)).is_err(), "{spec}");
        }
    }
}
