//! The CUDA device against the CPU device: every conformance case (`ms_tests::cases`) runs
//! on both and the results are compared, and the sample programs run on both.
//!
//! Without a GPU each test prints one `skipped: no CUDA device (...)` line and passes; the
//! test that every primitive has a case needs no GPU.
//!
//! Tolerances (CUDA's math library and summation order differ from the CPU's; each bound
//! is relative to the CPU value, plus an absolute floor):
//! - integers, bool, casts, movement, iota, full, print: exact;
//! - random numbers: bit-identical, except `f64` normals, which go through CUDA's `log`
//!   and `cos` (within 2 ulp, not correctly rounded) and may differ in the last bits:
//!   relative 1e-14;
//! - other elementwise: f32 relative 1e-5 with absolute 1e-6; f64 relative 1e-12 with
//!   absolute 1e-14;
//! - reductions, matmul, convolution, pooling gradients (sums in another order, atomics):
//!   f32 relative 1e-4, f64 relative 1e-10, with an absolute floor of that times the
//!   largest operand magnitudes times the reduction length;
//! - float `scatter_add` (atomic adds, so repeated indices sum in any order): the same
//!   bounds, with the updates' magnitude and the updates per result element as the length.

use std::sync::Arc;

use devices::cuda::CudaDevice;
use devices::{CpuDevice, Device, Tensor};
use ir::{Category, DType, Op, Prim, RandomOp};
use ms_tests::cases::{self, Case};

/// The GPU, or `None` after printing why the test is skipped.
fn gpu() -> Option<Arc<CudaDevice>> {
    match devices::cuda::open_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("skipped: no CUDA device ({e})");
            None
        }
    }
}

/// Every primitive of the table has at least one conformance case, so the comparison
/// below covers all of them (the CUDA device's dispatch is an exhaustive match).
#[test]
fn every_primitive_has_a_case() {
    let all = cases::all();
    let missing: Vec<String> = Prim::all()
        .iter()
        .filter(|p| !all.iter().any(|c| c.op.prim() == **p))
        .map(|p| p.name().to_string())
        .collect();
    assert!(missing.is_empty(), "primitives without a case: {missing:?}");
}

/// Every kernel module compiles on this GPU (each failure with NVRTC's log).
#[test]
fn kernels_compile() {
    let Some(dev) = gpu() else { return };
    println!("device: {} ({:?})", dev.name(), dev.memory());
    let errors = dev.compile_all();
    assert!(
        errors.is_empty(),
        "{} modules fail:\n{}",
        errors.len(),
        errors.join("\n\n")
    );
}

/// How close two results must be.
#[derive(Clone, Copy, Debug)]
struct Tol {
    rel: f64,
    abs: f64,
}

fn max_abs(t: &Tensor) -> f64 {
    t.to_f64_vec()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(0.0, |a, v| a.max(v.abs()))
}

fn tolerance(case: &Case, out_dt: DType, out_numel: usize) -> Tol {
    let exact = Tol { rel: 0.0, abs: 0.0 };
    if !out_dt.is_float() {
        return exact;
    }
    let f32 = out_dt == DType::F32;
    let op = &case.op;
    if let Op::Random { op: r, .. } = op {
        return if *r == RandomOp::Normal && !f32 {
            Tol {
                rel: 1e-14,
                abs: 1e-300,
            }
        } else {
            exact
        };
    }
    if let Op::ScatterAdd { .. } = op {
        let rel = if f32 { 1e-4 } else { 1e-10 };
        let updates = case.inputs.get(2).map(|o| &o.tensor);
        let scale = updates.map_or(1.0, |u| max_abs(u).max(1.0));
        let len = (updates.map_or(1, Tensor::numel) / out_numel.max(1)).max(1) + 1;
        return Tol {
            rel,
            abs: rel * scale * len as f64,
        };
    }
    let info = op.prim().info();
    match info.category {
        Category::Movement | Category::Creation | Category::Effect => exact,
        _ if matches!(op, Op::Cast { .. }) => exact,
        Category::Elementwise => {
            if f32 {
                Tol {
                    rel: 1e-5,
                    abs: 1e-6,
                }
            } else {
                Tol {
                    rel: 1e-12,
                    abs: 1e-14,
                }
            }
        }
        Category::Reduction | Category::Contraction | Category::Convolution | Category::Pooling => {
            let rel = if f32 { 1e-4 } else { 1e-10 };
            let scale: f64 = case
                .inputs
                .iter()
                .map(|o| max_abs(&o.tensor).max(1.0))
                .product();
            let len =
                (case.inputs.first().map_or(1, |o| o.tensor.numel()) / out_numel.max(1)).max(1);
            Tol {
                rel,
                abs: rel * scale * len as f64,
            }
        }
    }
}

fn agrees(got: f64, want: f64, t: Tol) -> bool {
    if got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()) {
        return true;
    }
    if t.rel == 0.0 && t.abs == 0.0 {
        return got == want;
    }
    if got.is_infinite() || want.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= t.abs + t.rel * want.abs()
}

/// Runs one case on both devices; `Err` says what differs.
fn run_both(gpu: &CudaDevice, case: &Case) -> Result<(), String> {
    let what = format!("{} [{}]", case.op.name(), case.name);
    let host: Vec<&Tensor> = case.inputs.iter().map(|o| &o.tensor).collect();
    let want = CpuDevice::new().exec(&case.op, &host);
    let dev: Vec<Tensor> = host
        .iter()
        .map(|t| gpu.upload_view(t))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what}: upload failed: {e}"))?;
    let dev_refs: Vec<&Tensor> = dev.iter().collect();
    let got = gpu.exec(&case.op, &dev_refs);
    let (want, got) = match (want, got) {
        (Ok(w), Ok(g)) => (w, g),
        (Err(_), Err(_)) => return Ok(()),
        (Ok(_), Err(e)) => return Err(format!("{what}: cuda error: {e}")),
        (Err(e), Ok(g)) => {
            return Err(format!("{what}: the CPU refuses ({e}) but cuda gave {g:?}"));
        }
    };
    if got.dtype() != want.dtype() || got.shape() != want.shape() {
        return Err(format!(
            "{what}: cuda made {}{:?}, the CPU {}{:?}",
            got.dtype(),
            got.shape(),
            want.dtype(),
            want.shape()
        ));
    }
    let (g, w) = (
        got.to_f64_vec()
            .ok_or_else(|| format!("{what}: the cuda result cannot be read back"))?,
        want.to_f64_vec().unwrap_or_default(),
    );
    if g.len() != w.len() {
        return Err(format!(
            "{what}: {} elements read back, want {}",
            g.len(),
            w.len()
        ));
    }
    let tol = tolerance(case, want.dtype(), w.len());
    let bad: Vec<usize> = (0..w.len()).filter(|&i| !agrees(g[i], w[i], tol)).collect();
    if bad.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = bad
        .iter()
        .take(4)
        .map(|&i| format!("[{i}] cuda {:e} cpu {:e}", g[i], w[i]))
        .collect();
    Err(format!(
        "{what}: {} of {} elements differ ({tol:?}): {}",
        bad.len(),
        w.len(),
        shown.join(", ")
    ))
}

fn check_family(family: &str) {
    let Some(dev) = gpu() else { return };
    let cases = cases::family(family);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| run_both(&dev, c).err())
        .collect();
    println!(
        "{family}: {} of {} cases agree",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} {family} cases differ on cuda:\n  {}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

macro_rules! families {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check_family(stringify!($name));
        }
    )*};
}

families!(
    unary,
    binary,
    compare,
    select,
    reduce,
    arg_reduce,
    matmul,
    reshape,
    transpose,
    broadcast,
    slice,
    concat,
    pad,
    gather,
    scatter_add,
    conv2d,
    conv2d_backward_input,
    conv2d_backward_filter,
    pool2d,
    pool2d_backward,
    cast,
    random,
    iota,
    full,
    print,
    stop_gradient,
);

/// The families above are exactly the table's.
#[test]
fn families_are_the_tables() {
    assert_eq!(cases::FAMILIES.len(), 26);
}

/// The runnable programs of `tests/run` give the same output with the session on the GPU
/// (numbers printed may differ in the last digit: those lines are listed, not failed; an
/// error on the GPU where the CPU had none fails).
#[test]
fn programs_run_on_cuda() {
    let Some(dev) = gpu() else { return };
    let files = runnable_programs();
    let mut failures = Vec::new();
    let mut differing = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).expect("a program");
        let run = |device: Arc<dyn Device>| {
            let mut s = interpreter::Session::with_options(interpreter::Options {
                device,
                capture_output: true,
                script_path: Some(path.clone()),
                ..interpreter::Options::default()
            });
            let o = s.eval(&text);
            (o.has_errors(), o.output, o.diagnostics)
        };
        let (cpu_err, cpu_out, _) = run(Arc::new(CpuDevice::new()));
        let (gpu_err, gpu_out, diags) = run(dev.clone());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if gpu_err && !cpu_err {
            let msgs: Vec<String> = diags
                .iter()
                .map(|d| format!("{}: {}", d.code, d.message))
                .collect();
            failures.push(format!("{name}: {}", msgs.join("; ")));
        } else if cpu_out != gpu_out {
            differing += 1;
            let lines: Vec<String> = cpu_out
                .lines()
                .zip(gpu_out.lines())
                .filter(|(a, b)| a != b)
                .take(3)
                .map(|(a, b)| format!("    cpu: {a}\n    gpu: {b}"))
                .collect();
            println!("{name}: output differs\n{}", lines.join("\n"));
        }
    }
    println!(
        "{} programs, {differing} with differing output, {} failing",
        files.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "programs failing on cuda:\n  {}",
        failures.join("\n  ")
    );
}

/// The folder of test data `name` (`tests/<name>`), from the repository root (as
/// scripts/gpu-check.sh runs the prebuilt binary on another machine) or from this crate's
/// folder (as `cargo test` runs it).
fn data_dir(name: &str) -> std::path::PathBuf {
    [
        std::path::Path::new("tests").join(name),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name),
    ]
    .into_iter()
    .find(|d| d.is_dir())
    .unwrap_or_else(|| panic!("tests/{name}, from the repository root or the tests crate"))
}

/// The programs of `tests/run` that should run without error (not `err_*`), in order.
fn runnable_programs() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(data_dir("run"))
        .expect("tests/run is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "ms")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("err_"))
        })
        .collect();
    files.sort();
    files
}

/// Runs `path` in a session on `device` (graph mode and `--check-modes` when `checked`):
/// whether it failed, what it printed, and its diagnostics' codes and messages.
fn run_program(
    device: Arc<dyn Device>,
    path: &std::path::Path,
    checked: bool,
) -> (bool, String, Vec<String>) {
    let text = std::fs::read_to_string(path).expect("a program");
    let mut s = interpreter::Session::with_options(interpreter::Options {
        device,
        capture_output: true,
        script_path: Some(path.to_path_buf()),
        graph_mode: checked,
        check_modes: checked,
        ..interpreter::Options::default()
    });
    let o = s.eval(&text);
    let diags = o
        .diagnostics
        .iter()
        .map(|d| format!("{}: {}", d.code, d.message))
        .collect();
    (o.has_errors(), o.output, diags)
}

/// A staged function whose optimized graph holds three fused groups (float, integer, and
/// a broadcast column; inputs read densely, as scalars and through strides) gives exactly
/// the eager results, on the CPU and on the GPU, where each group is one generated kernel.
#[test]
fn fused_groups_equal_eager() {
    let path = data_dir("cuda").join("fused.ms");
    let want = "true true true true true true true true";
    let (err, out, diags) = run_program(Arc::new(CpuDevice::new()), &path, false);
    assert!(!err, "{diags:?}");
    assert_eq!(out.lines().next(), Some(want), "cpu:\n{out}");
    let Some(dev) = gpu() else { return };
    let (err, out, diags) = run_program(dev, &path, false);
    assert!(!err, "{diags:?}");
    println!("cuda:\n{out}");
    assert_eq!(out.lines().next(), Some(want), "cuda:\n{out}");
}

/// The runnable programs of `tests/run` on the GPU in graph mode with `--check-modes`:
/// every staged call (fused groups as generated kernels) agrees with the eager GPU run
/// within the graph-mode tolerance, or the program fails with E0914 and this test lists it.
#[test]
fn programs_check_modes_on_cuda() {
    let Some(dev) = gpu() else { return };
    let files = runnable_programs();
    let mut diverging = Vec::new();
    for path in &files {
        let (_, _, diags) = run_program(dev.clone(), path, true);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        diverging.extend(
            diags
                .iter()
                .filter(|d| d.starts_with("E0914"))
                .map(|d| format!("{name}: {d}")),
        );
    }
    println!("{} programs checked on cuda", files.len());
    assert!(
        diverging.is_empty(),
        "staged differs from eager on cuda:\n  {}",
        diverging.join("\n  ")
    );
}

/// With `set_tf32(true)` an f32 product on the GPU rounds its operands to TF32 (a 10-bit
/// mantissa): each element stays within 1e-2 of the CPU's full-f32 value, relative to the
/// sum of the magnitudes of its terms (a TF32 operand is off by at most 2^-11 relative,
/// so each term by about 1e-3). With TF32 off again the product is full f32 (1e-5).
#[test]
fn tf32_products_are_close_and_opt_in() {
    let Some(dev) = gpu() else { return };
    let n = 512;
    // Deterministic operands with mantissas that TF32 must round.
    let a: Vec<f32> = (0..n * n)
        .map(|i| ((i * 7919 % 1000) as f32 / 997.0) - 0.5)
        .collect();
    let b: Vec<f32> = (0..n * n)
        .map(|i| ((i * 104_729 % 1000) as f32 / 1009.0) - 0.5)
        .collect();
    let (ha, hb) = (
        Tensor::from_vec(a.clone(), &[n, n]).unwrap(),
        Tensor::from_vec(b.clone(), &[n, n]).unwrap(),
    );
    let want = CpuDevice::new()
        .exec(&Op::MatMul {}, &[&ha, &hb])
        .unwrap()
        .to_f64_vec()
        .unwrap();
    // The scale of each element: the sum over k of |a[i,k]| |b[k,j]|.
    let scale: Vec<f64> = (0..n * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            (0..n)
                .map(|k| f64::from(a[i * n + k].abs()) * f64::from(b[k * n + j].abs()))
                .sum()
        })
        .collect();
    let (da, db) = (dev.upload_view(&ha).unwrap(), dev.upload_view(&hb).unwrap());
    let worst = |tf32: bool| {
        devices::cuda::set_tf32(tf32);
        let got = dev
            .exec(&Op::MatMul {}, &[&da, &db])
            .unwrap()
            .to_f64_vec()
            .unwrap();
        devices::cuda::set_tf32(false);
        (0..n * n)
            .map(|i| (got[i] - want[i]).abs() / scale[i])
            .fold(0.0, f64::max)
    };
    let (with, without) = (worst(true), worst(false));
    println!("worst error relative to the terms' magnitudes: tf32 {with:e}, f32 {without:e}");
    assert!(with < 1e-2, "tf32 error {with:e}");
    assert!(without < 1e-5, "f32 error {without:e}");
}
