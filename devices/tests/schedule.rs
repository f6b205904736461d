//! The graph executor (`devices::schedule`): graphs parsed from the IR text form run on the
//! CPU device, with control flow, effects, errors and memory release checked by value.

use std::path::PathBuf;

use devices::schedule::{self, Plan, RunError};
use devices::{CpuDevice, Device, DeviceError, HostBuffer, Tensor};
use ir::graph::{Span, Type};
use ir::{DType, Dim, Graph, Op, RandomOp, Shape};

fn parse(text: &str) -> Graph {
    let g = ir::graph::parse(text).unwrap_or_else(|e| panic!("the graph parses: {e:?}"));
    ir::verify(&g).unwrap_or_else(|e| panic!("the graph verifies: {e:?}"));
    g
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/ir")
}

fn golden(name: &str) -> Graph {
    let path = golden_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    parse(&text)
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().expect("an f32 tensor")
}

/// What was printed, with the spans of the `print` nodes.
type Prints = Vec<(Tensor, Span)>;

fn run(g: &Graph, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Prints), RunError> {
    let mut prints = Vec::new();
    let out = schedule::run(g, &CpuDevice::new(), inputs, &mut prints)?;
    Ok((out, prints))
}

#[test]
fn straight_line_dense_layer() {
    let g = parse(
        "graph @dense(%x: f32[B, 2], %w: f32[2, 3], %b: f32[3]) -> (f32[B, 3]) {
           %h: f32[B, 3] = matmul %x, %w
           %z: f32[B, 3] = add %h, %b
           %a: f32[B, 3] = relu %z
           yield %a
         }",
    );
    let x = Tensor::from_vec(vec![1.0f32, 2.0, -1.0, 0.5], &[2, 2]).expect("x");
    let w = Tensor::from_vec(vec![1.0f32, 0.0, -1.0, 0.0, 1.0, 1.0], &[2, 3]).expect("w");
    let b = Tensor::from_vec(vec![0.5f32, -3.0, 0.0], &[3]).expect("b");
    let (out, prints) = run(&g, &[x, w, b]).expect("runs");
    assert!(prints.is_empty());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].shape(), &[2, 3]);
    // Row 1: [1, 2] @ w = [1, 2, 1], + b = [1.5, -1, 1]; row 2: [-1, 0.5] @ w = [-1, 0.5,
    // 1.5], + b = [-0.5, -2.5, 1.5]; relu clips the negatives.
    assert_eq!(f32s(&out[0]), vec![1.5, 0.0, 1.0, 0.0, 0.0, 1.5]);
}

#[test]
fn mlp_forward_golden_gives_softmax_rows() {
    let g = golden("mlp_forward.ir");
    let batch = 3;
    let x: Vec<f32> = (0..batch * 784).map(|i| (i % 7) as f32 * 0.01).collect();
    let w1: Vec<f32> = (0..784 * 128)
        .map(|i| ((i % 11) as f32 - 5.0) * 0.001)
        .collect();
    let w2: Vec<f32> = (0..128 * 10)
        .map(|i| ((i % 5) as f32 - 2.0) * 0.1)
        .collect();
    let inputs = [
        Tensor::from_vec(x, &[batch, 784]).expect("x"),
        Tensor::from_vec(w1, &[784, 128]).expect("w1"),
        Tensor::from_vec(vec![0.1f32; 128], &[128]).expect("b1"),
        Tensor::from_vec(w2, &[128, 10]).expect("w2"),
        Tensor::from_vec((0..10).map(|i| i as f32 * 0.1).collect(), &[10]).expect("b2"),
    ];
    let (out, _) = run(&g, &inputs).expect("runs");
    assert_eq!(out[0].shape(), &[batch, 10]);
    let p = f32s(&out[0]);
    for row in p.chunks(10) {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "a softmax row sums to {sum}");
        assert!(row.iter().all(|&v| v > 0.0 && v < 1.0));
    }
    // The bias of the last layer grows with the column, and so does every row here.
    assert!(p[9] > p[0]);
}

#[test]
fn if_runs_the_branch_its_condition_picks() {
    let g = parse(
        "graph @pick(%c: bool[], %x: f32[2]) -> (f32[2]) {
           %y: f32[2] = if %c, %x then(%a: f32[2]) {
             %d: f32[2] = add %a, %a
             yield %d
           } else(%e: f32[2]) {
             %n: f32[2] = neg %e
             yield %n
           }
           yield %y
         }",
    );
    let x = Tensor::from_vec(vec![1.5f32, -2.0], &[2]).expect("x");
    let (then_out, _) = run(&g, &[Tensor::scalar(true), x.clone()]).expect("then");
    assert_eq!(f32s(&then_out[0]), vec![3.0, -4.0]);
    let (else_out, _) = run(&g, &[Tensor::scalar(false), x]).expect("else");
    assert_eq!(f32s(&else_out[0]), vec![-1.5, 2.0]);
}

fn range_sum(start: i64, stop: i64, step: i64) -> i64 {
    let g = parse(
        "graph @sum(%lo: i64[], %hi: i64[], %st: i64[]) -> (i64[]) {
           %z: i64[] = full {shape: [], dtype: i64, value: 0.0}
           %s: i64[] = for %lo, %hi, %st, %z body(%i: i64[], %acc: i64[]) {
             %n: i64[] = add %acc, %i
             yield %n
           }
           yield %s
         }",
    );
    let inputs = [start, stop, step].map(Tensor::scalar);
    let (out, _) = run(&g, &inputs).expect("runs");
    out[0].to_vec::<i64>().expect("i64")[0]
}

#[test]
fn for_carries_a_sum_over_its_range() {
    assert_eq!(range_sum(0, 10, 1), 45);
    assert_eq!(range_sum(0, 10, 3), 3 + 6 + 9);
    assert_eq!(range_sum(10, 0, -3), 10 + 7 + 4 + 1);
    assert_eq!(range_sum(5, 5, 1), 0);
    assert_eq!(range_sum(5, 0, 1), 0);
}

#[test]
fn for_with_step_zero_is_an_error() {
    let g = parse(
        "graph @sum(%lo: i64[], %hi: i64[], %st: i64[]) -> (i64[]) {
           %s: i64[] = for %lo, %hi, %st, %lo body(%i: i64[], %acc: i64[]) {
             yield %i
           } @0:4..9
           yield %s
         }",
    );
    let err = run(&g, &[0i64, 3, 0].map(Tensor::scalar)).expect_err("step zero");
    assert!(matches!(err, RunError::Malformed { .. }), "{err:?}");
    assert_eq!(err.span(), Span::new(0, 4, 9));
}

#[test]
fn for_with_if_prints_through_the_token() {
    // `for i in range(0, 10, 3) { if i % 2 == 0 { print(acc) }; acc += i }` in i32.
    let g = golden("for_if_print.ir");
    let (out, prints) = run(&g, &[]).expect("runs");
    assert_eq!(out.len(), 1, "the token is not returned");
    assert_eq!(out[0].to_vec::<i32>(), Some(vec![18]));
    let shown: Vec<i32> = prints
        .iter()
        .map(|(t, _)| t.to_vec::<i32>().expect("i32")[0])
        .collect();
    // Printed at i = 0 (acc 0) and i = 6 (acc 0 + 3).
    assert_eq!(shown, vec![0, 3]);
}

#[test]
fn while_runs_newton_to_convergence() {
    let g = golden("newton.ir");
    let (out, _) = run(&g, &[Tensor::scalar(2.0f64)]).expect("runs");
    let x = out[0].to_vec::<f64>().expect("f64")[0];
    assert!((x * x - 2.0).abs() < 1e-6, "x = {x}");
    // From x = 2: 1.5, 1.41667, 1.4142157 (|x² - 2| = 6e-6), 1.41421356.
    assert_eq!(out[1].to_vec::<i32>(), Some(vec![4]));
    let (out, _) = run(&g, &[Tensor::scalar(1.0f64)]).expect("runs");
    assert_eq!(out[1].to_vec::<i32>(), Some(vec![0]), "already converged");
}

#[test]
fn rng_draws_and_prints_in_token_order() {
    let g = golden("while_rng_print.ir");
    let seed = 7i64;
    let (out, prints) = run(&g, &[Tensor::scalar(seed)]).expect("runs");
    let dev = CpuDevice::new();
    let draw = Op::Random {
        op: RandomOp::Uniform,
        shape: Shape::known(&[1]),
        dtype: DType::F32,
    };
    assert!(!prints.is_empty());
    // Every printed draw is the generator's value at offset i of the seed's stream, the
    // same as running the primitive directly.
    for (i, (t, span)) in prints.iter().enumerate() {
        let key = Tensor::from_vec(vec![seed, i as i64], &[2]).expect("key");
        let direct = dev.exec(&draw, &[&key]).expect("a direct draw");
        assert_eq!(f32s(t), f32s(&direct), "draw {i}");
        assert_eq!(*span, Span::new(0, 75, 83));
        let last = i + 1 == prints.len();
        assert_eq!(
            f32s(t)[0] > 0.5,
            last,
            "draw {i}: only the last exceeds 0.5"
        );
    }
    assert_eq!(f32s(&out[0]), f32s(&prints[prints.len() - 1].0));
    assert_eq!(out[1].to_vec::<i64>(), Some(vec![prints.len() as i64]));
}

#[test]
fn asserts_pass_or_fail_with_their_span() {
    let g = golden("asserts.ir");
    let (out, prints) = run(&g, &[Tensor::scalar(0.25f32)]).expect("in range");
    assert_eq!(f32s(&out[0]), vec![0.25]);
    assert_eq!(prints.len(), 1);
    assert_eq!(prints[0].1, Span::new(0, 52, 60));

    let err = run(&g, &[Tensor::scalar(-1.0f32)]).expect_err("below 0");
    assert_eq!(
        err,
        RunError::Assert {
            message: "p must be at least 0".to_string(),
            span: Span::new(0, 10, 30),
        }
    );
    // The second assertion fails before the print runs, so nothing is printed.
    let mut prints = Vec::new();
    let err = schedule::run(
        &g,
        &CpuDevice::new(),
        &[Tensor::scalar(2.0f32)],
        &mut prints,
    )
    .expect_err("above 1");
    assert_eq!(
        err,
        RunError::Assert {
            message: "p must be at most 1, not \"more\"".to_string(),
            span: Span::new(0, 31, 51),
        }
    );
    assert!(prints.is_empty());
}

#[test]
fn device_errors_carry_the_node_span() {
    let g = parse(
        "graph @f(%a: i32[2], %b: i32[2]) -> (i32[2]) {
           %q: i32[2] = floor_div %a, %b @3:17..22
           yield %q
         }",
    );
    let a = Tensor::from_vec(vec![7i32, 8], &[2]).expect("a");
    let b = Tensor::from_vec(vec![2i32, 0], &[2]).expect("b");
    let err = run(&g, &[a, b]).expect_err("division by zero");
    assert!(
        matches!(
            err,
            RunError::Device { ref error, .. }
                if matches!(**error, DeviceError::DivisionByZero { .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.span(), Span::new(3, 17, 22));
}

#[test]
fn bad_inputs_are_errors() {
    let g = parse(
        "graph @f(%a: f32[N, 2], %b: f32[N, 2]) -> (f32[N, 2]) {
           %s: f32[N, 2] = add %a, %b
           yield %s
         }",
    );
    let t = |rows: usize| Tensor::from_vec(vec![1.0f32; rows * 2], &[rows, 2]).expect("t");
    assert_eq!(
        run(&g, &[t(3)]).expect_err("one input"),
        RunError::InputCount {
            expected: 2,
            found: 1
        }
    );
    let (out, _) = run(&g, &[t(3), t(3)]).expect("N = 3 twice");
    assert_eq!(f32s(&out[0]), vec![2.0; 6]);

    let err = run(&g, &[t(3), t(4)]).expect_err("N bound to 3, then 4");
    let RunError::InputType { index, reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*index, 1);
    assert!(reason.contains("`N` is 3"), "{reason}");

    let wrong_cols = Tensor::from_vec(vec![1.0f32; 9], &[3, 3]).expect("3x3");
    let err = run(&g, &[t(3), wrong_cols]).expect_err("3 columns");
    assert!(
        matches!(err, RunError::InputType { index: 1, .. }),
        "{err:?}"
    );

    let rank1 = Tensor::from_vec(vec![1.0f32; 2], &[2]).expect("rank 1");
    let err = run(&g, &[rank1, t(1)]).expect_err("rank 1");
    assert!(
        matches!(err, RunError::InputType { index: 0, .. }),
        "{err:?}"
    );

    let f64s = Tensor::from_vec(vec![1.0f64; 6], &[3, 2]).expect("f64");
    let err = run(&g, &[t(3), f64s]).expect_err("f64");
    let RunError::InputType { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("dtype f64"), "{reason}");
}

#[test]
fn symbolic_shape_attributes_take_the_bound_sizes() {
    let g = parse(
        "graph @f(%a: f32[N]) -> (f32[N, 2], f32[N]) {
           %o: f32[N, 2] = full {shape: [N, 2], dtype: f32, value: 1.5}
           %r: f32[N, 1] = reshape %a {shape: [N, 1]}
           %s: f32[N, 2] = add %o, %r
           %i: f32[N] = iota {shape: [N], axis: 0, dtype: f32}
           yield %s, %i
         }",
    );
    let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]).expect("a");
    let (out, _) = run(&g, &[a]).expect("runs");
    assert_eq!(f32s(&out[0]), vec![2.5, 2.5, 3.5, 3.5, 4.5, 4.5]);
    assert_eq!(f32s(&out[1]), vec![0.0, 1.0, 2.0]);
}

#[test]
fn a_loop_reads_values_from_outside_on_every_iteration() {
    // One SGD step from zero weights: r = -y, w1 = 0.1 xᵀy, b1 = 0.1 Σy; a second step
    // needs x and y again, so they must live until the loop has ended.
    let g = golden("loop_record.ir");
    let x: Vec<f32> = (0..24).map(|i| (i % 5) as f32 * 0.1).collect();
    let y: Vec<f32> = (0..8).map(|i| i as f32 * 0.05).collect();
    let inputs = |n: i64| {
        [
            Tensor::from_vec(x.clone(), &[8, 3]).expect("x"),
            Tensor::from_vec(y.clone(), &[8, 1]).expect("y"),
            Tensor::from_vec(vec![0.0f32; 3], &[3, 1]).expect("w0"),
            Tensor::from_vec(vec![0.0f32], &[1]).expect("b0"),
            Tensor::scalar(n),
        ]
    };
    let (out, _) = run(&g, &inputs(0)).expect("no step");
    assert_eq!(f32s(&out[0]), vec![0.0; 3]);
    let (out, _) = run(&g, &inputs(1)).expect("one step");
    for j in 0..3 {
        let want: f32 = (0..8).map(|r| x[r * 3 + j] * y[r]).sum::<f32>() * 0.1;
        assert!((f32s(&out[0])[j] - want).abs() < 1e-6, "w[{j}]");
    }
    let want_b: f32 = y.iter().sum::<f32>() * 0.1;
    assert!((f32s(&out[1])[0] - want_b).abs() < 1e-6);
    let (two, _) = run(&g, &inputs(2)).expect("two steps");
    assert_ne!(f32s(&two[0]), f32s(&out[0]));
}

#[test]
fn a_long_chain_keeps_few_tensors_alive() {
    let n = 2000;
    let mut text = String::from("graph @chain(%x0: f32[64]) -> (f32[64]) {\n");
    for i in 1..=n {
        let op = if i % 2 == 0 { "neg" } else { "sin" };
        text.push_str(&format!("  %x{i}: f32[64] = {op} %x{}\n", i - 1));
    }
    text.push_str(&format!("  yield %x{n}\n}}\n"));
    let g = parse(&text);
    let plan = Plan::new(&g);
    let x = Tensor::from_vec(vec![0.5f32; 64], &[64]).expect("x");
    let mut prints = Vec::new();
    let (out, stats) = plan
        .run_with_stats(&CpuDevice::new(), std::slice::from_ref(&x), &mut prints)
        .expect("runs");
    assert_eq!(stats.nodes_run, n);
    assert!(stats.peak_live <= 2, "peak {} live values", stats.peak_live);
    // sin then neg, 1000 times: an odd function applied to 0.5 stays in (-1, 1).
    assert!(f32s(&out[0]).iter().all(|v| v.abs() < 1.0));
}

#[test]
fn a_value_used_by_a_later_node_stays_alive_until_then() {
    // %x0 is read by the first and the last node, so it stays in the table throughout.
    let mut text = String::from("graph @keep(%x0: f32[4]) -> (f32[4]) {\n");
    for i in 1..=50 {
        text.push_str(&format!("  %x{i}: f32[4] = exp %x{}\n", i - 1));
    }
    text.push_str("  %y: f32[4] = add %x50, %x0\n  yield %y\n}\n");
    let g = parse(&text);
    let x = Tensor::from_vec(vec![0.0f32; 4], &[4]).expect("x");
    let mut prints = Vec::new();
    let (out, stats) = Plan::new(&g)
        .without_in_place()
        .run_with_stats(&CpuDevice::new(), std::slice::from_ref(&x), &mut prints)
        .expect("runs");
    assert_eq!(stats.peak_live, 3);
    assert!(f32s(&out[0]).iter().all(|v| v.is_infinite()));
    // Written in place, each `exp` takes its operand out of the table before its result
    // goes in, so %x0 and one link of the chain are all that is alive.
    let (out, stats) = Plan::new(&g)
        .run_with_stats(&CpuDevice::new(), &[x], &mut prints)
        .expect("runs");
    assert_eq!(stats.peak_live, 2);
    // Every node but the first (whose operand is the input) writes in place.
    assert_eq!(stats.in_place, 50);
    assert!(f32s(&out[0]).iter().all(|v| v.is_infinite()));
}

/// Ones of a tensor type, with every symbolic dim of size 2.
fn ones(ty: &ir::TensorType) -> Tensor {
    let shape: Vec<usize> = ty
        .shape
        .dims()
        .iter()
        .map(|d| match d {
            Dim::Known(n) => *n,
            Dim::Sym(_) => 2,
        })
        .collect();
    let n: usize = shape.iter().product();
    let data = match ty.dtype {
        DType::F64 => HostBuffer::F64(vec![1.0; n]),
        DType::I32 => HostBuffer::I32(vec![1; n]),
        DType::I64 => HostBuffer::I64(vec![1; n]),
        DType::Bool => HostBuffer::Bool(vec![true; n]),
        _ => HostBuffer::F32(vec![1.0; n]),
    };
    Tensor::from_host(data, &shape).expect("ones")
}

#[test]
fn every_valid_golden_runs_and_gives_its_declared_types() {
    // Graphs whose shape attributes hold `?`: the size is only known from data, which the
    // op's attribute cannot name, so the run stops with an error at that node.
    let unknowable = ["bias_unknown_dims.ir"];
    let mut entries: Vec<_> = std::fs::read_dir(golden_dir())
        .expect("tests/ir")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    entries.sort();
    let (mut valid, mut ran) = (0, 0);
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let text = std::fs::read_to_string(&path).expect("readable");
        let Ok(g) = ir::graph::parse(&text) else {
            continue;
        };
        if ir::verify(&g).is_err() {
            continue;
        }
        valid += 1;
        let inputs: Vec<Tensor> = g
            .inputs()
            .iter()
            .filter_map(|&v| g.ty(v).tensor().map(ones))
            .collect();
        let result = run(&g, &inputs);
        if unknowable.contains(&name) {
            let err = result.expect_err(name);
            assert!(matches!(err, RunError::Malformed { .. }), "{name}: {err:?}");
            continue;
        }
        let (out, _) = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let declared: Vec<_> = g
            .outputs()
            .iter()
            .filter_map(|&v| match g.ty(v) {
                Type::Tensor(t) => Some(t.clone()),
                Type::Token => None,
            })
            .collect();
        assert_eq!(out.len(), declared.len(), "{name}");
        for (t, ty) in out.iter().zip(&declared) {
            assert_eq!(t.dtype(), ty.dtype, "{name}");
            assert_eq!(t.rank(), ty.shape.rank(), "{name}");
            for (&n, d) in t.shape().iter().zip(ty.shape.dims()) {
                if let Some(k) = d.known() {
                    assert_eq!(n, k, "{name}");
                }
            }
        }
        ran += 1;
    }
    assert!(valid >= 15, "only {valid} valid goldens were found");
    assert_eq!(ran + unknowable.len(), valid);
}
