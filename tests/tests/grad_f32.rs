//! The f32 smoke check of the differentiation rules: every gradient spec of
//! `ms_tests::grad_specs`, with its float operands in `f32`, run by a device's real kernels
//! (not the f64 reference), in one random direction. The VJP rule's `<u, Jᵀv>` must match
//! the central finite difference `<(f(x + eps u) - f(x - eps u)) / 2 eps, v>` with eps 1e-4,
//! within 2e-3 relative to the sum of the magnitudes of the terms (f32 rounding in the
//! finite difference grows with them) plus 2e-3 absolute.
//!
//! This is what catches a rule that is right in exact arithmetic but loses its digits in
//! the precision models train in, or a kernel whose f32 path disagrees with its f64 one.
//! The check runs on the CPU, and on the CUDA device when one is present (the rules then
//! emit through the GPU's kernels); without a GPU that test says it is skipped.

use std::sync::Arc;

use autodiff::rules;
use devices::{CpuDevice, Device, DeviceError, Tensor};
use ir::{DType, Emit, Op, TensorType};
use ms_tests::grad_specs::specs;
use ms_tests::inputs::{Rng, fit, tensor};

const EPS: f64 = 1e-4;
const TOL: f64 = 2e-3;

/// Operands: dtype, dims and values.
type Operand = (DType, Vec<usize>, Vec<f64>);

/// An [`Emit`] that runs each primitive on one device.
struct Dev(Arc<dyn Device>);

impl Emit for Dev {
    type Val = Tensor;
    type Err = DeviceError;

    fn emit(&mut self, op: &Op, args: &[&Tensor]) -> Result<Tensor, DeviceError> {
        self.0.exec(op, args)
    }

    fn ttype(&self, v: &Tensor) -> TensorType {
        v.ttype()
    }
}

impl Dev {
    /// A tensor of the given values on this device.
    fn tensor(&self, (dt, dims, v): &Operand) -> Tensor {
        let host = tensor(*dt, dims, v);
        let buf = self
            .0
            .download(&host)
            .or_else(|_| CpuDevice::new().download(&host))
            .expect("a host tensor reads back");
        self.0
            .upload(buf, dims)
            .expect("the device takes the operand")
    }

    /// The elements of a result, as f64.
    fn values(&self, t: &Tensor) -> Vec<f64> {
        let host = t.to_host().expect("the device gives the result back");
        host.to_f64_vec().expect("a host tensor")
    }

    /// The op applied to tensors made from `xs`.
    fn apply(&mut self, op: &Op, xs: &[Operand]) -> Result<Tensor, DeviceError> {
        let ts: Vec<Tensor> = xs.iter().map(|x| self.tensor(x)).collect();
        self.emit(op, &ts.iter().collect::<Vec<_>>())
    }
}

/// f32 in place of f64 for the operands' float dtypes.
fn narrow(dt: DType) -> DType {
    if dt == DType::F64 { DType::F32 } else { dt }
}

/// Runs one spec; `None` when its op takes no f32 operands (an error from the device for the
/// narrowed types) or agrees, `Some(failure)` on a mismatch.
fn check(dev: &mut Dev, name: &str, op: &Op, xs: &[Operand], rng: &mut Rng) -> Option<String> {
    let y = dev.apply(op, xs).ok()?;
    if !y.dtype().is_float() {
        return None;
    }
    let floats: Vec<usize> = (0..xs.len()).filter(|&i| xs[i].0.is_float()).collect();
    let dirs: Vec<Vec<f64>> = xs
        .iter()
        .map(|(_, _, v)| v.iter().map(|_| rng.unit() * 2.0 - 1.0).collect())
        .collect();
    let v: Vec<f64> = (0..y.numel()).map(|_| rng.unit() * 2.0 - 1.0).collect();
    let shifted = |s: f64| -> Vec<Operand> {
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
    let plus = dev.apply(op, &shifted(1.0)).ok()?;
    let plus = dev.values(&plus);
    let minus = dev.apply(op, &shifted(-1.0)).ok()?;
    let minus = dev.values(&minus);
    let terms: Vec<f64> = plus
        .iter()
        .zip(&minus)
        .zip(&v)
        .map(|((p, m), w)| (p - m) / (2.0 * EPS) * w)
        .collect();
    let fd: f64 = terms.iter().sum();
    let scale: f64 = terms.iter().map(|t| t.abs()).sum();

    let ins: Vec<Tensor> = xs.iter().map(|x| dev.tensor(x)).collect();
    let ct = dev.tensor(&(y.dtype(), y.shape().to_vec(), v));
    let gs = match rules::vjp(dev, op, &ins, &y, &ct) {
        Ok(gs) => gs,
        Err(e) => return Some(format!("{name}: the VJP rule failed: {e}")),
    };
    let mut rule = 0.0;
    for &i in &floats {
        if let Some(g) = &gs[i] {
            let g = dev.values(g);
            rule += g.iter().zip(&dirs[i]).map(|(a, b)| a * b).sum::<f64>();
        }
    }
    let ok = (rule - fd).abs() <= TOL * (1.0 + scale);
    (!ok).then(|| {
        format!("{name}: <u, Jᵀv> = {rule:.6e}, finite difference {fd:.6e} (scale {scale:.3e})")
    })
}

/// Runs every spec on `dev`; panics with the disagreements.
fn every_rule(dev: Arc<dyn Device>) {
    let mut dev = Dev(dev);
    let mut rng = Rng::new(32);
    let mut fails = Vec::new();
    let mut ran = 0;
    let mut skipped = Vec::new();
    for spec in specs() {
        let xs: Vec<Operand> = spec
            .args
            .iter()
            .map(|a| {
                let r = a.sample(&mut rng);
                let dt = narrow(r.dtype);
                let data = r.data.iter().map(|&x| fit(dt, x)).collect();
                (dt, r.dims.clone(), data)
            })
            .collect();
        if let Some(f) = check(&mut dev, &spec.name, &spec.op, &xs, &mut rng) {
            fails.push(f);
        }
        // A spec counts as run when its op took the narrowed operands.
        match dev.apply(&spec.op, &xs) {
            Ok(y) if y.dtype().is_float() => ran += 1,
            _ => skipped.push(spec.name.clone()),
        }
    }
    let id = dev.0.id();
    assert!(
        fails.is_empty(),
        "{} of {ran} rules disagree in f32 on {id}:\n{}",
        fails.len(),
        fails.join("\n")
    );
    // Only specs whose op fixes an f64 type (a cast to f64, say) may be skipped.
    assert!(
        skipped.len() * 10 <= ran,
        "too many specs skipped in f32 on {id}: {skipped:?}"
    );
    eprintln!("f32 smoke check on {id}: {ran} specs ran; skipped: {skipped:?}");
}

#[test]
fn every_rule_in_f32_in_one_direction() {
    every_rule(Arc::new(CpuDevice::new()));
}

#[test]
fn every_rule_in_f32_on_cuda() {
    match devices::cuda::open(0) {
        Ok(dev) => every_rule(dev),
        Err(e) => println!("skipped: no CUDA device ({e})"),
    }
}
