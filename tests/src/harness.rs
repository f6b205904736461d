//! Running a conformance case on a device and comparing it with the reference.
//!
//! Tolerances:
//! - Integers and bools: exact.
//! - Elementwise `f64`: `|got - want| ≤ 1e-7 + 1e-7·|want|`, or within 4 ulp (so a kernel
//!   using vectorised polynomials passes as long as it is accurate to a few ulp).
//! - Elementwise `f32`: `|got - want| ≤ 1e-5 + 1.3e-6·|want|`, where `want` is the reference
//!   computed from the same `f32` inputs widened to `f64` and rounded once to `f32`.
//! - Accumulating primitives (sum, prod, matmul, convolutions, average pooling, scatter-add
//!   and the pooling gradients): `|got - want| ≤ K·eps·Σ|terms|` with `K = terms + 2`, where
//!   `terms` is the number of addends (or factors) of the output element and `eps` the
//!   dtype's machine epsilon. This is the classical worst-case bound of recursive summation
//!   (`(n-1)·u·Σ|x|`, with `u = eps/2`) for the device and the reference together, so it
//!   holds for any summation order, blocking or FMA use, plus one rounding of the result
//!   and one of a division. `Σ|terms|` is the reference evaluated on the absolute values of
//!   the operands the result is linear in.
//! - NaN must match NaN, and infinities must match exactly.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use devices::{CpuDevice, Device, DeviceError, Tensor};
use ir::{DType, Op, RandomOp};

use crate::cases::Case;
use crate::reference::{self, RefError, RefTensor};

/// How one element is compared.
#[derive(Clone, Copy, Debug)]
enum Tolerance {
    /// Bit-for-bit equality of the `f64` images (integers and bools).
    Exact,
    /// The elementwise floating-point tolerance of the dtype.
    Elementwise(DType),
    /// `bound` is the largest error allowed for this element.
    Bound(f64),
}

/// Whether two values agree within a tolerance.
fn agrees(got: f64, want: f64, tol: Tolerance) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    let diff = (got - want).abs();
    match tol {
        Tolerance::Exact => got == want,
        Tolerance::Elementwise(DType::F32) => diff <= 1e-5 + 1.3e-6 * want.abs(),
        Tolerance::Elementwise(_) => diff <= 1e-7 + 1e-7 * want.abs() || ulps(got, want) <= 4,
        Tolerance::Bound(b) => diff <= b,
    }
}

/// Distance in units in the last place between two finite `f64`.
fn ulps(a: f64, b: f64) -> u64 {
    // Maps the floats onto a monotone integer line (negatives mirrored below zero).
    let key = |x: f64| {
        let bits = x.to_bits() as i64;
        if bits < 0 { i64::MIN - bits } else { bits }
    };
    key(a).abs_diff(key(b))
}

/// The machine epsilon of a float dtype.
fn eps(dt: DType) -> f64 {
    if dt == DType::F32 {
        f64::from(f32::EPSILON)
    } else {
        f64::EPSILON
    }
}

/// Runs `case` on `dev` and compares it with the reference; `Err` says what differs
/// (op, case name, and for values the first few indices with what was got and wanted).
pub fn check(dev: &CpuDevice, case: &Case) -> Result<(), String> {
    let op = &case.op;
    let what = format!("{} [{}]", op.name(), case.name);
    let tensors: Vec<&Tensor> = case.inputs.iter().map(|o| &o.tensor).collect();
    let refs: Vec<&RefTensor> = case.inputs.iter().map(|o| &o.reference).collect();
    // A panicking kernel is a failure of this case, not of the whole family.
    let got = catch_unwind(AssertUnwindSafe(|| dev.exec(op, &tensors)))
        .map_err(|p| format!("{what}: the kernel panicked: {}", panic_message(&p)))?;
    let want = match reference::eval(op, &refs) {
        Ok(want) => want,
        Err(RefError::NoOracle { dtype, dims }) => {
            return check_random(dev, case, got, dtype, &dims).map_err(|e| format!("{what}: {e}"));
        }
        Err(RefError::Invalid(why)) => {
            return match got {
                Err(_) => Ok(()),
                Ok(t) => Err(format!(
                    "{what}: the reference rejects the values ({why}) but the device gave {t:?}"
                )),
            };
        }
    };
    let got = got.map_err(|e| format!("{what}: device error: {e}"))?;
    if got.dtype() != want.dtype || got.shape() != want.dims.as_slice() {
        return Err(format!(
            "{what}: got {}{:?}, want {}{:?}",
            got.dtype(),
            got.shape(),
            want.dtype,
            want.dims
        ));
    }
    let values = got
        .to_f64_vec()
        .ok_or_else(|| format!("{what}: the result cannot be read back"))?;
    if values.len() != want.numel() {
        return Err(format!(
            "{what}: {} elements read back for shape {:?}",
            values.len(),
            want.dims
        ));
    }
    let tolerances = tolerances(op, case, &want)?;
    let bad: Vec<usize> = (0..values.len())
        .filter(|&i| !agrees(values[i], want.data[i], tolerances(i)))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = bad
        .iter()
        .take(4)
        .map(|&i| {
            format!(
                "index {:?}: got {:e}, want {:e} ({:?})",
                reference::unravel(i, &want.dims),
                values[i],
                want.data[i],
                tolerances(i)
            )
        })
        .collect();
    Err(format!(
        "{what}: {} of {} elements differ; {}",
        bad.len(),
        values.len(),
        shown.join("; ")
    ))
}

/// The message of a caught panic.
fn panic_message(p: &Box<dyn Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// The tolerance of each output element of `case`.
fn tolerances(
    op: &Op,
    case: &Case,
    want: &RefTensor,
) -> Result<Box<dyn Fn(usize) -> Tolerance>, String> {
    let dt = want.dtype;
    if !dt.is_float() {
        return Ok(Box::new(|_| Tolerance::Exact));
    }
    let dims: Vec<&[usize]> = case
        .inputs
        .iter()
        .map(|o| o.reference.dims.as_slice())
        .collect();
    let Some(acc) = reference::accumulation(op, &dims) else {
        return Ok(Box::new(move |_| Tolerance::Elementwise(dt)));
    };
    let abs_inputs: Vec<RefTensor> = case
        .inputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            if acc.abs_operands.contains(&i) {
                o.reference.abs()
            } else {
                o.reference.clone()
            }
        })
        .collect();
    let abs_refs: Vec<&RefTensor> = abs_inputs.iter().collect();
    let scale = reference::eval(op, &abs_refs)
        .map_err(|e| format!("{} [{}]: reference on |x|: {e:?}", op.name(), case.name))?;
    let k = (acc.terms + 2) as f64 * eps(dt);
    Ok(Box::new(move |i| Tolerance::Bound(k * scale.data[i])))
}

/// Random numbers have no value oracle: the type must be right, uniform draws must lie in
/// `[0, 1)`, normal draws must be finite, and the same key must give the same numbers.
fn check_random(
    dev: &CpuDevice,
    case: &Case,
    got: Result<Tensor, DeviceError>,
    dtype: DType,
    dims: &[usize],
) -> Result<(), String> {
    let got = got.map_err(|e| format!("device error: {e}"))?;
    if got.dtype() != dtype || got.shape() != dims {
        return Err(format!(
            "got {}{:?}, want {dtype}{dims:?}",
            got.dtype(),
            got.shape()
        ));
    }
    let v = got.to_f64_vec().ok_or("the result cannot be read back")?;
    let Op::Random { op, .. } = case.op else {
        return Err("not a random op".into());
    };
    let bad = match op {
        RandomOp::Uniform => v.iter().position(|x| !(0.0..1.0).contains(x)),
        RandomOp::Normal => v.iter().position(|x| !x.is_finite()),
    };
    if let Some(i) = bad {
        return Err(format!(
            "element {i} is {} , outside the distribution's support",
            v[i]
        ));
    }
    let tensors: Vec<&Tensor> = case.inputs.iter().map(|o| &o.tensor).collect();
    let again = dev
        .exec(&case.op, &tensors)
        .map_err(|e| format!("second run: {e}"))?
        .to_f64_vec();
    if again
        .as_ref()
        .map(|a| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        != Some(v.iter().map(|x| x.to_bits()).collect())
    {
        return Err("the same key gave different numbers".into());
    }
    Ok(())
}
