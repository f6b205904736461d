//! Results written into a dying operand's buffer (in place) against the allocating
//! kernels: the same bits, and the donor's buffer really reused.
//!
//! The kernels are called directly (`Device::exec` against `Device::exec_donating` on a
//! tensor nobody else holds), and through the executor (a plan with and without in-place
//! writes, `RunStats::in_place` counting the results written into a donor). Values cover
//! NaNs, infinities and signed zeros; sizes straddle the parallel threshold (32 Ki
//! elements); the other operand is of the result's shape, a row that repeats, or a scalar.

use devices::schedule::{Plan, Prepared};
use devices::{CpuDevice, Device, Tensor};
use ir::{BinaryOp, CmpOp, Op, UnaryOp};

/// A small deterministic generator (xorshift64*), so that failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn value(&mut self) -> f64 {
        match self.next() % 32 {
            0 => f64::NAN,
            1 => -f64::NAN,
            2 => f64::INFINITY,
            3 => f64::NEG_INFINITY,
            4 => -0.0,
            5 => 0.0,
            _ => ((self.next() % 20_000) as f64 / 1000.0) - 10.0,
        }
    }
}

fn tensor(g: &mut Gen, dtype: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| g.value()).collect();
    match dtype {
        "f64" => Tensor::from_vec(v, shape).expect("f64"),
        "i64" => {
            Tensor::from_vec(v.iter().map(|&x| x as i64).collect::<Vec<i64>>(), shape).expect("i64")
        }
        "bool" => Tensor::from_vec(v.iter().map(|&x| x > 0.0).collect::<Vec<bool>>(), shape)
            .expect("bool"),
        _ => {
            Tensor::from_vec(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), shape).expect("f32")
        }
    }
}

/// A copy of `t` with a buffer of its own (so that the copy is the only handle on it).
fn own(t: &Tensor) -> Tensor {
    let shape = t.shape().to_vec();
    if let Some(v) = t.to_vec::<f32>() {
        return Tensor::from_vec(v, &shape).expect("copy");
    }
    if let Some(v) = t.to_vec::<f64>() {
        return Tensor::from_vec(v, &shape).expect("copy");
    }
    if let Some(v) = t.to_vec::<i64>() {
        return Tensor::from_vec(v, &shape).expect("copy");
    }
    Tensor::from_vec(t.to_vec::<bool>().expect("bool"), &shape).expect("copy")
}

fn bits(t: &Tensor) -> Vec<u64> {
    if let Some(v) = t.to_vec::<f32>() {
        return v.iter().map(|x| u64::from(x.to_bits())).collect();
    }
    if let Some(v) = t.to_vec::<f64>() {
        return v.iter().map(|x| x.to_bits()).collect();
    }
    if let Some(v) = t.to_vec::<i64>() {
        return v.iter().map(|&x| x as u64).collect();
    }
    t.to_vec::<bool>()
        .expect("bool")
        .iter()
        .map(|&x| u64::from(x))
        .collect()
}

/// Runs `op` on `inputs` allocating, then with `inputs[donor]` lent, and checks that the
/// bits agree and that the result took the donor's buffer.
fn check(name: &str, op: &Op, inputs: &[Tensor], donor: usize) {
    let device = CpuDevice::new();
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let want = device.exec(op, &refs).expect("allocating run");
    let mut lent: Vec<Tensor> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| if i == donor { own(t) } else { t.clone() })
        .collect();
    let before = devices::memory::stats().buffers;
    let donor_bits = bits(&lent[donor]);
    let got = device
        .exec_donating(op, &mut lent, donor)
        .expect("in-place run");
    assert!(
        got.shares_buffer(&lent[donor]),
        "{name}: the result has a buffer of its own"
    );
    // Other tests make buffers at the same time, so only a lower bound is certain: this
    // run made none of its own if the result shares the donor's.
    let _ = before;
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{name}: dtype");
    let (w, o) = (bits(&want), bits(&got));
    if let Some(k) = w.iter().zip(&o).position(|(a, b)| a != b) {
        panic!(
            "{name}: element {k} differs: {:#x} allocating, {:#x} in place (donor held {:#x})",
            w[k], o[k], donor_bits[k]
        );
    }
}

const SIZES: [usize; 4] = [1, 1000, 33_000, 70_001];

#[test]
fn unary_in_place_gives_the_same_bits() {
    let mut g = Gen(1);
    let ops = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Sqrt,
        UnaryOp::Gelu,
        UnaryOp::Sign,
        UnaryOp::Floor,
    ];
    for dtype in ["f32", "f64"] {
        for n in SIZES {
            let x = tensor(&mut g, dtype, &[n]);
            for op in ops {
                let name = format!("{} {dtype} n={n}", op.name());
                check(&name, &Op::Unary { op }, std::slice::from_ref(&x), 0);
            }
        }
    }
    let x = tensor(&mut g, "i64", &[5000]);
    for op in [UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Sign, UnaryOp::Relu] {
        check(
            &format!("{} i64", op.name()),
            &Op::Unary { op },
            std::slice::from_ref(&x),
            0,
        );
    }
    let b = tensor(&mut g, "bool", &[5000]);
    check(
        "not",
        &Op::Unary { op: UnaryOp::Not },
        std::slice::from_ref(&b),
        0,
    );
}

#[test]
fn binary_in_place_gives_the_same_bits_whichever_side_donates() {
    let mut g = Gen(2);
    let ops = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
        BinaryOp::FloorDiv,
        BinaryOp::Pow,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
    ];
    for dtype in ["f32", "f64"] {
        for n in SIZES {
            let cols = if n % 1000 == 0 { 1000 } else { n };
            let x = tensor(&mut g, dtype, &[n / cols, cols]);
            let y = tensor(&mut g, dtype, &[n / cols, cols]);
            let row = tensor(&mut g, dtype, &[cols]);
            let s = tensor(&mut g, dtype, &[]);
            for op in ops {
                let op = Op::Binary { op };
                let name = |what: &str| format!("{} {dtype} n={n} {what}", op.name());
                check(&name("lhs"), &op, &[x.clone(), y.clone()], 0);
                check(&name("rhs"), &op, &[x.clone(), y.clone()], 1);
                check(&name("row"), &op, &[x.clone(), row.clone()], 0);
                check(&name("row rhs"), &op, &[row.clone(), x.clone()], 1);
                check(&name("scalar"), &op, &[x.clone(), s.clone()], 0);
                check(&name("scalar lhs"), &op, &[s.clone(), x.clone()], 1);
            }
        }
    }
    let a = tensor(&mut g, "bool", &[3000]);
    let b = tensor(&mut g, "bool", &[3000]);
    for op in [BinaryOp::And, BinaryOp::Or] {
        check(op.name(), &Op::Binary { op }, &[a.clone(), b.clone()], 1);
    }
    for op in [CmpOp::Eq, CmpOp::Lt, CmpOp::Ge] {
        check(op.name(), &Op::Compare { op }, &[a.clone(), b.clone()], 0);
    }
}

#[test]
fn select_in_place_gives_the_same_bits() {
    let mut g = Gen(3);
    for n in SIZES {
        let c = tensor(&mut g, "bool", &[n]);
        let x = tensor(&mut g, "f32", &[n]);
        let y = tensor(&mut g, "f32", &[n]);
        let s = tensor(&mut g, "f32", &[]);
        let op = Op::Select {};
        check("select a", &op, &[c.clone(), x.clone(), y.clone()], 1);
        check("select b", &op, &[c.clone(), x.clone(), y.clone()], 2);
        check(
            "select a scalar b",
            &op,
            &[c.clone(), x.clone(), s.clone()],
            1,
        );
        check(
            "select scalar a b",
            &op,
            &[c.clone(), s.clone(), y.clone()],
            2,
        );
        let (p, q) = (tensor(&mut g, "bool", &[n]), tensor(&mut g, "bool", &[n]));
        check("select on bools", &op, &[c.clone(), p, q], 0);
    }
}

#[test]
fn integer_division_by_zero_is_still_an_error_in_place() {
    let device = CpuDevice::new();
    let x = Tensor::from_vec(vec![1i64, 2, 3], &[3]).expect("x");
    let y = Tensor::from_vec(vec![1i64, 0, 3], &[3]).expect("y");
    let op = Op::Binary {
        op: BinaryOp::FloorDiv,
    };
    for donor in [0, 1] {
        let mut lent = vec![own(&x), own(&y)];
        assert!(device.exec_donating(&op, &mut lent, donor).is_err());
    }
}

#[test]
fn a_buffer_someone_else_holds_is_not_written() {
    let device = CpuDevice::new();
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]).expect("x");
    let held = x.clone();
    let mut lent = vec![x];
    let out = device
        .exec_donating(&Op::Unary { op: UnaryOp::Neg }, &mut lent, 0)
        .expect("runs");
    assert!(!out.shares_buffer(&held));
    assert_eq!(held.to_vec::<f32>(), Some(vec![1.0, 2.0, 3.0]));
    assert_eq!(out.to_vec::<f32>(), Some(vec![-1.0, -2.0, -3.0]));
    // A view shares the buffer too.
    let y = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]).expect("y");
    let t = device
        .exec(&Op::Transpose { perm: vec![1, 0] }, &[&y])
        .expect("view");
    let mut lent = vec![y];
    let out = device
        .exec_donating(&Op::Unary { op: UnaryOp::Neg }, &mut lent, 0)
        .expect("runs");
    assert!(!out.shares_buffer(&t));
    assert_eq!(t.to_vec::<f32>(), Some(vec![1.0, 3.0, 2.0, 4.0]));
}

fn parse(text: &str) -> ir::Graph {
    let g = ir::graph::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    ir::verify(&g).unwrap_or_else(|e| panic!("{e}\n{text}"));
    g
}

/// The executor: a chain of elementwise nodes on an intermediate value writes every
/// result after the first into the buffer of the value before it, fused or not; the
/// outputs are those of a run without in-place writes, bit for bit.
#[test]
fn the_executor_writes_chains_in_place_with_the_same_bits() {
    let n = 50_000;
    let text = format!(
        "graph @g(%x: f32[{n}], %y: f32[{n}], %r: f32[{n}]) -> (f32[{n}], f32[{n}]) {{
  %a: f32[{n}] = exp %x
  %b: f32[{n}] = mul %a, %y
  %c: f32[{n}] = tanh %b
  %d: f32[{n}] = sub %y, %c
  %s: f32[] = sum %d {{axes: [0], keepdims: false}}
  %e: f32[{n}] = add %d, %s
  %f: f32[{n}] = sigmoid %e
  %m: f32[{n}] = maximum %f, %r
  yield %m, %y
}}
"
    );
    let g = parse(&text);
    let mut rng = Gen(9);
    let inputs = [
        tensor(&mut rng, "f32", &[n]),
        tensor(&mut rng, "f32", &[n]),
        tensor(&mut rng, "f32", &[n]),
    ];
    let device = CpuDevice::new();
    for graph in [
        g.clone(),
        ir::passes::optimize(&g, ir::passes::PIPELINE, true).expect("pipeline"),
    ] {
        let (want, plain) = Plan::new(&graph)
            .without_in_place()
            .run_with_stats(&device, &inputs, &mut Vec::new())
            .expect("runs");
        assert_eq!(plain.in_place, 0);
        let prepared = Prepared::new(&graph);
        let (got, stats) = Plan::with(&graph, &prepared)
            .run_with_stats(&device, &inputs, &mut Vec::new())
            .expect("runs");
        for (w, o) in want.iter().zip(&got) {
            assert_eq!(bits(w), bits(o));
        }
        // Unfused: b, c, d, e, f and m take the buffer of the value before them (`a` is
        // computed from an input, which its caller holds). Fused: the group after the sum
        // writes into the buffer of what it reads.
        // (Donations inside a fused region are used only when the device declines the
        // group; the CPU runs these.)
        let donors: usize = graph
            .block(graph.body())
            .nodes
            .iter()
            .copied()
            .map(|n| prepared.memory().donations(n).len())
            .sum();
        assert!(
            donors > 0,
            "no donor in\n{}",
            ir::graph::print(&graph, Default::default())
        );
        assert_eq!(
            stats.in_place,
            donors,
            "every donation was taken in\n{}",
            ir::passes::memory::print(&graph, prepared.memory())
        );
    }
}
