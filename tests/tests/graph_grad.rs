//! Reverse mode on the IR (`autodiff::graph`) against the eager rules: for every gradient
//! spec, the staged gradient of `sum(op(xs) * w)` run by the graph executor equals what the
//! same VJP rule gives eagerly on the CPU device for the cotangent `w` (the differential
//! principle: one set of rules, two modes, the same numbers). Plus control flow: an `if`
//! differentiated through both branches against analytic answers, and a loop on the path
//! to the output refused with its span.

use std::sync::Arc;

use autodiff::graph::{GradError, value_and_grad};
use autodiff::rules;
use devices::schedule::run;
use devices::{CpuDevice, Device, DeviceError, Tensor};
use ir::graph::{GraphBuilder, parse};
use ir::{Emit, Op, TensorType};
use ms_tests::grad_specs::specs;
use ms_tests::inputs::{Rng, tensor};

/// An [`Emit`] on the CPU device, for the eager side.
struct Cpu(Arc<CpuDevice>);

impl Emit for Cpu {
    type Val = Tensor;
    type Err = DeviceError;

    fn emit(&mut self, op: &Op, args: &[&Tensor]) -> Result<Tensor, DeviceError> {
        self.0.exec(op, args)
    }

    fn ttype(&self, v: &Tensor) -> TensorType {
        v.ttype()
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().expect("a host tensor")
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            (x - y).abs() <= 1e-12 * (1.0 + x.abs().max(y.abs())) || (x.is_nan() && y.is_nan())
        })
}

#[test]
fn staged_gradients_equal_the_eager_rules() {
    let cpu = Arc::new(CpuDevice::new());
    let mut rng = Rng::new(6);
    let mut fails = Vec::new();
    let mut ran = 0;
    for spec in specs() {
        let (g, xs, wt, wrt) = match spec_graph(&spec, &mut rng) {
            Ok(Some(built)) => built,
            Ok(None) => continue,
            Err(e) => {
                fails.push(e);
                continue;
            }
        };
        let dg = match value_and_grad(&g, &wrt) {
            Ok(dg) => dg,
            Err(e) => {
                fails.push(format!("{}: value_and_grad failed: {e}", spec.name));
                continue;
            }
        };
        if let Err(e) = ir::verify(&dg) {
            fails.push(format!(
                "{}: the gradient graph does not verify: {e}",
                spec.name
            ));
            continue;
        }
        // Run it.
        let mut inputs = xs.clone();
        inputs.push(wt.clone());
        let mut printed = Vec::new();
        let outs = match run(&dg, cpu.as_ref(), &inputs, &mut printed) {
            Ok(o) => o,
            Err(e) => {
                fails.push(format!(
                    "{}: running the gradient graph failed: {e}",
                    spec.name
                ));
                continue;
            }
        };
        // Eager: the rule with cotangent w.
        let mut e = Cpu(cpu.clone());
        let yv = cpu
            .exec(&spec.op, &xs.iter().collect::<Vec<_>>())
            .expect("the op runs");
        let gs = rules::vjp(&mut e, &spec.op, &xs, &yv, &wt).expect("the rule runs");
        for (k, &i) in wrt.iter().enumerate() {
            let staged = values(&outs[1 + k]);
            let eager = gs[i]
                .as_ref()
                .map_or_else(|| vec![0.0; xs[i].numel()], values);
            if !close(&staged, &eager) {
                fails.push(format!(
                    "{}: input {i}: staged {:?} eager {:?}",
                    spec.name,
                    &staged[..staged.len().min(4)],
                    &eager[..eager.len().min(4)]
                ));
            }
        }
        ran += 1;
    }
    assert!(
        fails.is_empty(),
        "{} failures:\n{}",
        fails.len(),
        fails.join("\n")
    );
    assert!(ran >= 60, "only {ran} specs ran");
}

/// The staged graph of a spec, `sum(op(xs) * w)` with inputs `xs` then `w`, and its sampled
/// inputs: (graph, xs, w, the float inputs); `None` when the op's result is not float.
#[allow(clippy::type_complexity)]
fn spec_graph(
    spec: &ms_tests::grad_specs::GradSpec,
    rng: &mut Rng,
) -> Result<Option<(ir::Graph, Vec<Tensor>, Tensor, Vec<usize>)>, String> {
    let xs: Vec<Tensor> = spec
        .args
        .iter()
        .map(|a| {
            let r = a.sample(rng);
            tensor(r.dtype, &r.dims, &r.data)
        })
        .collect();
    let mut b = GraphBuilder::new(&spec.name);
    if ir::graph::is_effectful(spec.op.prim()) {
        b.token_input();
    }
    let ins: Vec<_> = xs.iter().map(|x| b.input(x.ttype())).collect();
    let y = b
        .op(&spec.op, &ins)
        .map_err(|e| format!("{}: staging the op failed: {e}", spec.name))?;
    let yt = b.ttype(&y);
    if !yt.dtype.is_float() {
        return Ok(None);
    }
    let w = b.input(yt.clone());
    let g = (|| {
        let p = b.mul(&y, &w)?;
        let axes: Vec<usize> = (0..yt.rank()).collect();
        let s = b.reduce_sum(&p, &axes, false)?;
        b.finish(&[s])
    })()
    .map_err(|e| format!("{}: staging failed: {e}", spec.name))?;
    let wrt: Vec<usize> = (0..xs.len())
        .filter(|&i| xs[i].dtype().is_float())
        .collect();
    let dims: Vec<usize> = yt.shape.0.iter().map(|d| d.known().unwrap_or(0)).collect();
    let n: usize = dims.iter().product();
    let wdata: Vec<f64> = (0..n).map(|_| rng.unit() * 2.0 - 1.0).collect();
    let wt = tensor(yt.dtype, &dims, &wdata);
    Ok(Some((g, xs, wt, wrt)))
}

/// Forward mode on the IR against reverse mode on the IR, for every spec: the tangent of
/// `s = sum(op(xs) * w)` along random tangents `v` is `Σ <∂s/∂x_i, v_i>` (both run by the
/// graph executor; the two transforms share no code beyond the rules).
#[test]
fn staged_tangents_are_gradients_along_the_tangent() {
    let cpu = Arc::new(CpuDevice::new());
    let mut rng = Rng::new(7);
    let mut fails = Vec::new();
    let mut ran = 0;
    for spec in specs() {
        let (g, xs, wt, wrt) = match spec_graph(&spec, &mut rng) {
            Ok(Some(built)) => built,
            Ok(None) => continue,
            Err(e) => {
                fails.push(e);
                continue;
            }
        };
        let (dg, jg) = match (value_and_grad(&g, &wrt), autodiff::forward::jvp(&g, &wrt)) {
            (Ok(d), Ok(j)) => (d, j),
            (d, j) => {
                fails.push(format!("{}: {:?} {:?}", spec.name, d.err(), j.err()));
                continue;
            }
        };
        if let Err(e) = ir::verify(&jg) {
            fails.push(format!(
                "{}: the tangent graph does not verify: {e}",
                spec.name
            ));
            continue;
        }
        let vs: Vec<Tensor> = wrt
            .iter()
            .map(|&i| {
                let data: Vec<f64> = (0..xs[i].numel()).map(|_| rng.unit() * 2.0 - 1.0).collect();
                tensor(xs[i].dtype(), xs[i].shape(), &data)
            })
            .collect();
        let mut inputs = xs.clone();
        inputs.push(wt.clone());
        let mut printed = Vec::new();
        let grads = run(&dg, cpu.as_ref(), &inputs, &mut printed);
        inputs.extend(vs.iter().cloned());
        let tangent = run(&jg, cpu.as_ref(), &inputs, &mut printed);
        let (grads, tangent) = match (grads, tangent) {
            (Ok(g), Ok(t)) => (g, t),
            (g, t) => {
                fails.push(format!(
                    "{}: running failed: {:?} {:?}",
                    spec.name,
                    g.err(),
                    t.err()
                ));
                continue;
            }
        };
        let along: f64 = vs
            .iter()
            .enumerate()
            .map(|(k, v)| {
                values(&grads[1 + k])
                    .iter()
                    .zip(values(v))
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
            })
            .sum();
        let t = values(&tangent[1]);
        // An f32 operand (the casts) rounds the two sums differently.
        let tol = if xs.iter().any(|x| x.dtype() == ir::DType::F32) {
            1e-6
        } else {
            1e-12
        };
        if (t[0] - along).abs() > tol * (1.0 + along.abs()) {
            fails.push(format!(
                "{}: tangent {t:?}, gradient along it {along}",
                spec.name
            ));
        }
        ran += 1;
    }
    assert!(
        fails.is_empty(),
        "{} failures:\n{}",
        fails.len(),
        fails.join("\n")
    );
    assert!(ran >= 60, "only {ran} specs ran");
}

/// The staged gradient of a two-branch function against its analytic derivative.
#[test]
fn gradients_through_if_take_the_branch_that_ran() {
    let text = "\
graph @f(%c: bool[], %x: f64[3]) -> (f64[]) {
  %r: f64[3] = if %c, %x then(%a: f64[3]) {
    %sq: f64[3] = mul %a, %a
    yield %sq
  } else(%b: f64[3]) {
    %s: f64[3] = sin %b
    %t: f64[3] = mul %s, %x
    yield %t
  }
  %y: f64[] = sum %r {axes: [0], keepdims: false}
  yield %y
}
";
    let g = match parse(text) {
        Ok(g) => g,
        Err(e) => panic!("the test graph parses: {e}\n{text}"),
    };
    let dg = value_and_grad(&g, &[1]).expect("differentiable");
    ir::verify(&dg).expect("the gradient graph verifies");
    let cpu = CpuDevice::new();
    let x = [0.5f64, -1.0, 2.0];
    for c in [true, false] {
        let ins = vec![
            Tensor::scalar(c),
            Tensor::from_vec(x.to_vec(), &[3]).expect("three values"),
        ];
        let outs = run(&dg, &cpu, &ins, &mut Vec::new()).expect("runs");
        let got = values(&outs[1]);
        // then: d/dx Σ x² = 2x; else: d/dx Σ sin(x)·x = cos(x)·x + sin(x) (x read twice:
        // as the branch argument and from the enclosing block).
        let want: Vec<f64> = x
            .iter()
            .map(|&v| if c { 2.0 * v } else { v.cos() * v + v.sin() })
            .collect();
        assert!(close(&got, &want), "c = {c}: got {got:?}, want {want:?}");
    }
}

/// A `for` on the gradient path: x⁴ as x · x · x · x over three iterations, and a loop
/// whose body reads an enclosing value (the same x) besides its carried one.
#[test]
fn gradients_through_for_loops() {
    let text = "\
graph @f(%x: f64[]) -> (f64[]) {
  %z: i64[] = full {shape: [], dtype: i64, value: 0.0}
  %n: i64[] = full {shape: [], dtype: i64, value: 3.0}
  %one: i64[] = full {shape: [], dtype: i64, value: 1.0}
  %r: f64[] = for %z, %n, %one, %x body(%i: i64[], %acc: f64[]) {
    %m: f64[] = mul %acc, %x
    yield %m
  }
  yield %r
}
";
    let g = match parse(text) {
        Ok(g) => g,
        Err(e) => panic!("the test graph parses: {e}\n{text}"),
    };
    let dg = value_and_grad(&g, &[0]).expect("differentiable");
    ir::verify(&dg).expect("the gradient graph verifies");
    let cpu = CpuDevice::new();
    for x in [0.5f64, -1.5, 2.0] {
        let outs = run(&dg, &cpu, &[Tensor::scalar(x)], &mut Vec::new()).expect("runs");
        let (y, dy) = (values(&outs[0])[0], values(&outs[1])[0]);
        assert!(close(&[y], &[x.powi(4)]), "x = {x}: value {y}");
        assert!(
            close(&[dy], &[4.0 * x.powi(3)]),
            "x = {x}: gradient {dy}, want {}",
            4.0 * x.powi(3)
        );
    }
    // A loop that never runs (stop below start) passes the cotangent straight through.
    let empty = text.replace("value: 3.0}\n  %one", "value: -2.0}\n  %one");
    let g = parse(&empty).expect("parses");
    let dg = value_and_grad(&g, &[0]).expect("differentiable");
    let outs = run(&dg, &cpu, &[Tensor::scalar(0.7f64)], &mut Vec::new()).expect("runs");
    assert!(
        close(&values(&outs[1]), &[1.0]),
        "d/dx x = 1, got {:?}",
        values(&outs[1])
    );
}

/// A `while` on the gradient path: squaring until the value reaches 100 runs a number of
/// times that depends on x, so the result is x^(2^k) and its derivative 2^k x^(2^k - 1).
#[test]
fn gradients_through_while_loops() {
    let text = "\
graph @f(%x: f64[]) -> (f64[]) {
  %lim: f64[] = full {shape: [], dtype: f64, value: 100.0}
  %r: f64[] = while %x cond(%a: f64[]) {
    %c: bool[] = lt %a, %lim
    yield %c, %a
  } body(%b: f64[]) {
    %d: f64[] = mul %b, %b
    yield %d
  }
  yield %r
}
";
    let g = match parse(text) {
        Ok(g) => g,
        Err(e) => panic!("the test graph parses: {e}\n{text}"),
    };
    let dg = value_and_grad(&g, &[0]).expect("differentiable");
    ir::verify(&dg).expect("the gradient graph verifies");
    let cpu = CpuDevice::new();
    // (x, iterations): 3 → 9 → 81 → 6561; 1.5 takes four; 200 none.
    for (x, k) in [(3.0f64, 3), (1.5, 4), (200.0, 0)] {
        let outs = run(&dg, &cpu, &[Tensor::scalar(x)], &mut Vec::new()).expect("runs");
        let (y, dy) = (values(&outs[0])[0], values(&outs[1])[0]);
        let p = 2i32.pow(k);
        assert!(close(&[y], &[x.powi(p)]), "x = {x}: value {y}");
        let want = f64::from(p) * x.powi(p - 1);
        let rel = (dy - want).abs() / want.abs();
        assert!(rel < 1e-12, "x = {x}: gradient {dy}, want {want}");
    }
}

/// A `while` whose condition passes on a value it computed (legal IR, which the builder's
/// `while` cannot rebuild) is refused with its span, not copied wrongly.
#[test]
fn a_while_passing_on_computed_values_is_refused() {
    let text = "\
graph @f(%x: f64[]) -> (f64[]) {
  %lim: f64[] = full {shape: [], dtype: f64, value: 100.0}
  %r: f64[] = while %x cond(%a: f64[]) {
    %c: bool[] = lt %a, %lim
    %h: f64[] = neg %a
    yield %c, %h
  } body(%b: f64[]) {
    %d: f64[] = mul %b, %b
    yield %d
  } @0:30..40
  %y: f64[] = mul %r, %r
  yield %y
}
";
    let g = match parse(text) {
        Ok(g) => g,
        Err(e) => panic!("the test graph parses: {e}\n{text}"),
    };
    match value_and_grad(&g, &[0]) {
        Err(GradError::WhilePasses { span }) => assert_eq!((span.start, span.end), (30, 40)),
        other => panic!("expected the while to be refused, got {other:?}"),
    }
}
