//! The f32 smoke check of the differentiation rules: every gradient spec of
//! `ms_tests::grad_specs`, with its float operands in `f32`, run by the real CPU kernels
//! (not the f64 reference), in one random direction. The VJP rule's `<u, Jᵀv>` must match
//! the central finite difference `<(f(x + eps u) - f(x - eps u)) / 2 eps, v>` with eps 1e-4,
//! within 2e-3 relative to the sum of the magnitudes of the terms (f32 rounding in the
//! finite difference grows with them) plus 2e-3 absolute.
//!
//! This is what catches a rule that is right in exact arithmetic but loses its digits in
//! the precision models train in, or a kernel whose f32 path disagrees with its f64 one.

use autodiff::rules;
use devices::{CpuDevice, Device, DeviceError, Tensor};
use ir::{DType, Emit, Op, TensorType};
use ms_tests::grad_specs::specs;
use ms_tests::inputs::{Rng, tensor};

const EPS: f64 = 1e-4;
const TOL: f64 = 2e-3;

/// An [`Emit`] that runs each primitive on the CPU device.
struct Cpu(CpuDevice);

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

/// The op applied to host tensors made from `xs` (dtype, dims, values).
fn apply(
    cpu: &mut Cpu,
    op: &Op,
    xs: &[(DType, Vec<usize>, Vec<f64>)],
) -> Result<Tensor, DeviceError> {
    let ts: Vec<Tensor> = xs.iter().map(|(dt, d, v)| tensor(*dt, d, v)).collect();
    cpu.emit(op, &ts.iter().collect::<Vec<_>>())
}

/// f32 in place of f64 for the operands' float dtypes.
fn narrow(dt: DType) -> DType {
    if dt == DType::F64 { DType::F32 } else { dt }
}

/// Runs one spec; `Ok(None)` when its op takes no f32 operands (an error from the CPU device
/// for the narrowed types), `Ok(Some(failure))` on a mismatch.
fn check(
    name: &str,
    op: &Op,
    xs: &[(DType, Vec<usize>, Vec<f64>)],
    rng: &mut Rng,
) -> Option<String> {
    let mut cpu = Cpu(CpuDevice::new());
    let y = apply(&mut cpu, op, xs).ok()?;
    if !y.dtype().is_float() {
        return None;
    }
    let floats: Vec<usize> = (0..xs.len()).filter(|&i| xs[i].0.is_float()).collect();
    let dirs: Vec<Vec<f64>> = xs
        .iter()
        .map(|(_, _, v)| v.iter().map(|_| rng.unit() * 2.0 - 1.0).collect())
        .collect();
    let v: Vec<f64> = (0..y.numel()).map(|_| rng.unit() * 2.0 - 1.0).collect();
    let shifted = |s: f64| -> Vec<(DType, Vec<usize>, Vec<f64>)> {
        xs.iter()
            .enumerate()
            .map(|(i, (dt, d, x))| {
                let x = if floats.contains(&i) {
                    x.iter()
                        .zip(&dirs[i])
                        .map(|(a, u)| a + s * EPS * u)
                        .collect()
                } else {
                    x.clone()
                };
                (*dt, d.clone(), x)
            })
            .collect()
    };
    let plus = values(&apply(&mut cpu, op, &shifted(1.0)).ok()?);
    let minus = values(&apply(&mut cpu, op, &shifted(-1.0)).ok()?);
    let terms: Vec<f64> = plus
        .iter()
        .zip(&minus)
        .zip(&v)
        .map(|((p, m), w)| (p - m) / (2.0 * EPS) * w)
        .collect();
    let fd: f64 = terms.iter().sum();
    let scale: f64 = terms.iter().map(|t| t.abs()).sum();

    let ins: Vec<Tensor> = xs.iter().map(|(dt, d, x)| tensor(*dt, d, x)).collect();
    let ct = tensor(y.dtype(), y.shape(), &v);
    let gs = match rules::vjp(&mut cpu, op, &ins, &y, &ct) {
        Ok(gs) => gs,
        Err(e) => return Some(format!("{name}: the VJP rule failed: {e}")),
    };
    let mut rule = 0.0;
    for &i in &floats {
        if let Some(g) = &gs[i] {
            rule += values(g)
                .iter()
                .zip(&dirs[i])
                .map(|(a, b)| a * b)
                .sum::<f64>();
        }
    }
    let ok = (rule - fd).abs() <= TOL * (1.0 + scale);
    (!ok).then(|| {
        format!("{name}: <u, Jᵀv> = {rule:.6e}, finite difference {fd:.6e} (scale {scale:.3e})")
    })
}

#[test]
fn every_rule_in_f32_in_one_direction() {
    let mut rng = Rng::new(32);
    let mut fails = Vec::new();
    let mut ran = 0;
    let mut skipped = Vec::new();
    for spec in specs() {
        let xs: Vec<(DType, Vec<usize>, Vec<f64>)> = spec
            .args
            .iter()
            .map(|a| {
                let r = a.sample(&mut rng);
                let dt = narrow(r.dtype);
                let data = r
                    .data
                    .iter()
                    .map(|&x| ms_tests::inputs::fit(dt, x))
                    .collect();
                (dt, r.dims.clone(), data)
            })
            .collect();
        if let Some(f) = check(&spec.name, &spec.op, &xs, &mut rng) {
            fails.push(f);
        }
        // A spec counts as run when its op took the narrowed operands.
        let mut cpu = Cpu(CpuDevice::new());
        match apply(&mut cpu, &spec.op, &xs) {
            Ok(y) if y.dtype().is_float() => ran += 1,
            _ => skipped.push(spec.name.clone()),
        }
    }
    assert!(
        fails.is_empty(),
        "{} of {ran} rules disagree in f32:\n{}",
        fails.len(),
        fails.join("\n")
    );
    // Only specs whose op fixes an f64 type (a cast to f64, say) may be skipped.
    assert!(
        skipped.len() * 10 <= ran,
        "too many specs skipped in f32: {skipped:?}"
    );
    eprintln!("f32 smoke check: {ran} specs ran; skipped: {skipped:?}");
}
