//! The differentiation rules of `autodiff::rules` against central finite differences in
//! `f64`, one spec per differentiable primitive (`ms_tests::grad_specs`).
//!
//! For each spec: the full Jacobian when the operands and the result have at most 1,024
//! elements (each VJP row and each JVP column against the finite-difference Jacobian), else
//! three random projections; the duality `<u, Jᵀv> = <Ju, v>` between the VJP and the JVP
//! rule; and the second-order check, the VJP of the VJP (run backwards over the recorded
//! rule) against finite differences of the VJP. Finite differences: central, eps 1e-6,
//! accepted when `|rule - fd| <= 1e-5 + 1e-3 |fd|`.

use autodiff::rules::{self, Differentiability};
use ir::{DType, Emit, Prim};
use ms_tests::grad_specs::{GradSpec, Tape, backprop, specs};
use ms_tests::inputs::Rng;
use ms_tests::reference::{self, RefError, RefTensor};

const EPS: f64 = 1e-6;
const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-3;
const FULL_LIMIT: usize = 1024;

type R<T> = Result<T, RefError>;

fn close(rule: f64, fd: f64) -> bool {
    (rule - fd).abs() <= ATOL + RTOL * fd.abs()
}

fn eval(spec: &GradSpec, xs: &[RefTensor]) -> R<RefTensor> {
    let refs: Vec<&RefTensor> = xs.iter().collect();
    reference::eval(&spec.op, &refs)
}

fn random_like(rng: &mut Rng, t: &RefTensor) -> RefTensor {
    let data = t.data.iter().map(|_| rng.unit() * 2.0 - 1.0).collect();
    RefTensor::new(t.dtype, &t.dims, data)
}

fn dot(a: &RefTensor, b: &RefTensor) -> f64 {
    assert_eq!(a.dims, b.dims, "dot of mismatched shapes");
    a.data.iter().zip(&b.data).map(|(x, y)| x * y).sum()
}

/// The differentiable (float) operands of a spec.
fn float_args(xs: &[RefTensor]) -> Vec<usize> {
    (0..xs.len()).filter(|&i| xs[i].dtype.is_float()).collect()
}

/// `(f(x + eps u) - f(x - eps u)) / 2 eps`, `u` given per float operand.
fn fd_dir(spec: &GradSpec, xs: &[RefTensor], dirs: &[(usize, RefTensor)]) -> R<Vec<f64>> {
    let shift = |s: f64| {
        let mut ys = xs.to_vec();
        for (i, d) in dirs {
            for (y, dv) in ys[*i].data.iter_mut().zip(&d.data) {
                *y += s * EPS * dv;
            }
        }
        ys
    };
    let plus = eval(spec, &shift(1.0))?;
    let minus = eval(spec, &shift(-1.0))?;
    Ok(plus
        .data
        .iter()
        .zip(&minus.data)
        .map(|(p, m)| (p - m) / (2.0 * EPS))
        .collect())
}

/// The VJP rule's cotangents for the output cotangent `v`.
fn run_vjp(spec: &GradSpec, xs: &[RefTensor], v: &RefTensor) -> R<Vec<Option<RefTensor>>> {
    let mut t = Tape::default();
    let ins: Vec<usize> = xs.iter().map(|x| t.leaf(x.clone())).collect();
    let out = t.emit(&spec.op, &ins.iter().collect::<Vec<_>>())?;
    let ct = t.leaf(v.clone());
    let gs = rules::vjp(&mut t, &spec.op, &ins, &out, &ct)?;
    for (i, g) in gs.iter().enumerate() {
        if let Some(g) = g {
            assert_eq!(
                t.vals[*g].dims, xs[i].dims,
                "{}: cotangent {i} has the wrong shape",
                spec.name
            );
        }
    }
    Ok(gs
        .into_iter()
        .map(|g| g.map(|g| t.vals[g].clone()))
        .collect())
}

/// The JVP rule's tangent for the operand tangents `dirs`.
fn run_jvp(spec: &GradSpec, xs: &[RefTensor], dirs: &[(usize, RefTensor)]) -> R<RefTensor> {
    let mut t = Tape::default();
    let ins: Vec<usize> = xs.iter().map(|x| t.leaf(x.clone())).collect();
    let out = t.emit(&spec.op, &ins.iter().collect::<Vec<_>>())?;
    let mut tans = vec![None; xs.len()];
    for (i, d) in dirs {
        tans[*i] = Some(t.leaf(d.clone()));
    }
    let res = rules::jvp(&mut t, &spec.op, &ins, &out, &tans)?;
    let od = t.vals[out].clone();
    Ok(match res {
        Some(r) => {
            assert_eq!(t.vals[r].dims, od.dims, "{}: tangent shape", spec.name);
            t.vals[r].clone()
        }
        None => RefTensor::filled(od.dtype, &od.dims, 0.0),
    })
}

fn unit_vec(like: &RefTensor, k: usize) -> RefTensor {
    let mut e = RefTensor::filled(like.dtype, &like.dims, 0.0);
    e.data[k] = 1.0;
    e
}

/// Checks the rules of one spec at one point; returns the failures.
fn check(spec: &GradSpec, rng: &mut Rng) -> R<Vec<String>> {
    let mut fails = Vec::new();
    let xs: Vec<RefTensor> = spec.args.iter().map(|a| a.sample(rng)).collect();
    let y = eval(spec, &xs)?;
    let fl = float_args(&xs);
    let in_n: usize = fl.iter().map(|&i| xs[i].numel()).sum();
    if in_n <= FULL_LIMIT && y.numel() <= FULL_LIMIT {
        // Finite-difference Jacobian, one column per float operand element.
        let mut cols: Vec<(usize, usize, Vec<f64>)> = Vec::new();
        for &i in &fl {
            for j in 0..xs[i].numel() {
                let d = unit_vec(&xs[i], j);
                cols.push((i, j, fd_dir(spec, &xs, &[(i, d.clone())])?));
                let jv = run_jvp(spec, &xs, &[(i, d)])?;
                let fd = &cols.last().map(|c| c.2.clone()).unwrap_or_default();
                for (k, (&a, &b)) in jv.data.iter().zip(fd).enumerate() {
                    if !close(a, b) {
                        fails.push(format!("jvp d out[{k}] / d x{i}[{j}] = {a}, fd {b}"));
                    }
                }
            }
        }
        for k in 0..y.numel() {
            let gs = run_vjp(spec, &xs, &unit_vec(&y, k))?;
            for (i, j, col) in &cols {
                let a = gs[*i].as_ref().map_or(0.0, |g| g.data[*j]);
                if !close(a, col[k]) {
                    fails.push(format!("vjp d out[{k}] / d x{i}[{j}] = {a}, fd {}", col[k]));
                }
            }
        }
    } else {
        for _ in 0..3 {
            let dirs: Vec<(usize, RefTensor)> =
                fl.iter().map(|&i| (i, random_like(rng, &xs[i]))).collect();
            let v = random_like(rng, &y);
            let fd = fd_dir(spec, &xs, &dirs)?;
            let fd_t = RefTensor::new(y.dtype, &y.dims, fd);
            let gs = run_vjp(spec, &xs, &v)?;
            let lhs: f64 = dirs
                .iter()
                .map(|(i, d)| gs[*i].as_ref().map_or(0.0, |g| dot(g, d)))
                .sum();
            let rhs = dot(&fd_t, &v);
            if !close(lhs, rhs) {
                fails.push(format!("projection <Jᵀv, u> = {lhs}, fd <v, Ju> = {rhs}"));
            }
            let jv = run_jvp(spec, &xs, &dirs)?;
            for (k, (&a, &b)) in jv.data.iter().zip(&fd_t.data).enumerate() {
                if !close(a, b) {
                    fails.push(format!("jvp projection out[{k}] = {a}, fd {b}"));
                }
            }
        }
    }
    // Duality between the two rules: <u, Jᵀv> = <Ju, v> up to rounding.
    let dirs: Vec<(usize, RefTensor)> = fl.iter().map(|&i| (i, random_like(rng, &xs[i]))).collect();
    let v = random_like(rng, &y);
    let gs = run_vjp(spec, &xs, &v)?;
    let lhs: f64 = dirs
        .iter()
        .map(|(i, d)| gs[*i].as_ref().map_or(0.0, |g| dot(g, d)))
        .sum();
    let rhs = dot(&run_jvp(spec, &xs, &dirs)?, &v);
    // Exact up to f64 rounding, or f32 rounding when a cotangent is cast back to an f32
    // operand.
    let tol = if xs.iter().any(|x| x.dtype == DType::F32) {
        1e-6
    } else {
        1e-9
    };
    if (lhs - rhs).abs() > tol * (1.0 + lhs.abs().max(rhs.abs())) {
        fails.push(format!("duality: <u, Jᵀv> = {lhs}, <Ju, v> = {rhs}"));
    }
    if spec.second_order {
        fails.extend(second_order(spec, rng, &xs)?);
    }
    Ok(fails)
}

/// `S(x) = Σᵢ <vjp(x, v)ᵢ, wᵢ>` on a tape, with the leaves of `x`.
fn vjp_probe(
    spec: &GradSpec,
    xs: &[RefTensor],
    v: &RefTensor,
    ws: &[Option<RefTensor>],
) -> R<(Tape, Vec<usize>, Option<usize>)> {
    let mut t = Tape::default();
    let ins: Vec<usize> = xs.iter().map(|x| t.leaf(x.clone())).collect();
    let out = t.emit(&spec.op, &ins.iter().collect::<Vec<_>>())?;
    let ct = t.leaf(v.clone());
    let gs = rules::vjp(&mut t, &spec.op, &ins, &out, &ct)?;
    let mut s = None;
    for (g, w) in gs.iter().zip(ws) {
        if let (Some(g), Some(w)) = (g, w) {
            let wl = t.leaf(w.clone());
            let p = t.mul(g, &wl)?;
            let axes: Vec<usize> = (0..w.dims.len()).collect();
            let r = t.reduce_sum(&p, &axes, false)?;
            s = Some(match s {
                None => r,
                Some(a) => t.add(&a, &r)?,
            });
        }
    }
    Ok((t, ins, s))
}

/// The VJP of the VJP against finite differences of the VJP in a random direction.
fn second_order(spec: &GradSpec, rng: &mut Rng, xs: &[RefTensor]) -> R<Vec<String>> {
    let y = eval(spec, xs)?;
    let v = random_like(rng, &y);
    let ws: Vec<Option<RefTensor>> = xs
        .iter()
        .map(|x| x.dtype.is_float().then(|| random_like(rng, x)))
        .collect();
    let dirs: Vec<Option<RefTensor>> = ws
        .iter()
        .zip(xs)
        .map(|(w, x)| w.as_ref().map(|_| random_like(rng, x)))
        .collect();
    let (mut t, ins, s) = vjp_probe(spec, xs, &v, &ws)?;
    let Some(s) = s else {
        return Ok(Vec::new());
    };
    let one = t.leaf(RefTensor::filled(DType::F64, &[], 1.0));
    let cts = backprop(&mut t, s, one)?;
    let rule: f64 = ins
        .iter()
        .zip(&dirs)
        .map(|(&i, d)| match (cts[i], d) {
            (Some(c), Some(d)) => dot(&t.vals[c], d),
            _ => 0.0,
        })
        .sum();
    let probe = |sgn: f64| -> R<f64> {
        let ys: Vec<RefTensor> = xs
            .iter()
            .zip(&dirs)
            .map(|(x, d)| {
                let mut x = x.clone();
                if let Some(d) = d {
                    for (a, b) in x.data.iter_mut().zip(&d.data) {
                        *a += sgn * EPS * b;
                    }
                }
                x
            })
            .collect();
        let (t, _, s) = vjp_probe(spec, &ys, &v, &ws)?;
        Ok(s.map_or(0.0, |s| t.vals[s].data[0]))
    };
    let fd = (probe(1.0)? - probe(-1.0)?) / (2.0 * EPS);
    Ok(if close(rule, fd) {
        Vec::new()
    } else {
        vec![format!("second order: rule {rule}, fd {fd}")]
    })
}

#[test]
fn every_rule_matches_finite_differences() {
    let mut report = Vec::new();
    for spec in specs() {
        let mut rng = Rng::from_name(&spec.name);
        match check(&spec, &mut rng) {
            Ok(fails) => {
                for f in fails.iter().take(5) {
                    report.push(format!("{}: {f}", spec.name));
                }
            }
            Err(e) => report.push(format!("{}: the reference failed: {e:?}", spec.name)),
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

/// Every primitive is either covered by a spec or declared non-differentiable, and no
/// spec is wasted on a non-differentiable one.
#[test]
fn every_primitive_is_specified_or_non_differentiable() {
    let table = specs();
    let covered: Vec<Prim> = table.iter().map(|s| s.op.prim()).collect();
    let mut missing = Vec::new();
    for &p in Prim::all() {
        match rules::differentiability(p) {
            Differentiability::Differentiable if !covered.contains(&p) => missing.push(p.name()),
            Differentiability::NonDifferentiable if covered.contains(&p) => {
                missing.push(p.name());
            }
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "primitives neither specified nor non-differentiable (or specified but declared \
         non-differentiable): {missing:?}"
    );
    let mut names: Vec<&str> = table.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), table.len(), "spec names must be unique");
}

/// Non-differentiable primitives give no cotangent and no tangent.
#[test]
fn non_differentiable_primitives_give_nothing() -> R<()> {
    let mut t = Tape::default();
    let x = t.leaf(RefTensor::new(DType::F64, &[3], vec![0.4, -1.6, 2.5]));
    let y = t.leaf(RefTensor::new(DType::F64, &[3], vec![1.0, 2.0, 3.0]));
    for op in [
        ir::Op::Unary {
            op: ir::UnaryOp::Floor,
        },
        ir::Op::Unary {
            op: ir::UnaryOp::Sign,
        },
        ir::Op::Binary {
            op: ir::BinaryOp::FloorDiv,
        },
        ir::Op::Compare { op: ir::CmpOp::Lt },
        ir::Op::StopGradient {},
    ] {
        let ins: Vec<usize> = if op.prim().info().arity == ir::Arity::Exact(1) {
            vec![x]
        } else {
            vec![x, y]
        };
        let out = t.emit(&op, &ins.iter().collect::<Vec<_>>())?;
        let ct = t.ones_like(&out)?;
        let gs = rules::vjp(&mut t, &op, &ins, &out, &ct)?;
        assert!(gs.iter().all(Option::is_none), "{op:?} gave a cotangent");
        assert_eq!(gs.len(), ins.len());
        let tans: Vec<Option<usize>> = ins.iter().map(|&i| Some(i)).collect();
        assert!(rules::jvp(&mut t, &op, &ins, &out, &tans)?.is_none());
    }
    Ok(())
}

/// Integer operands get no cotangent even when the op is differentiable.
#[test]
fn integer_operands_get_no_gradient() -> R<()> {
    let mut t = Tape::default();
    let a = t.leaf(RefTensor::new(DType::I64, &[2], vec![3.0, 4.0]));
    let b = t.leaf(RefTensor::new(DType::I64, &[2], vec![5.0, 6.0]));
    let op = ir::Op::Binary {
        op: ir::BinaryOp::Mul,
    };
    let out = t.emit(&op, &[&a, &b])?;
    let ct = t.ones_like(&out)?;
    let gs = rules::vjp(&mut t, &op, &[a, b], &out, &ct)?;
    assert_eq!(gs, vec![None, None]);
    Ok(())
}
