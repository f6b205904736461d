//! The fused executor against the nodes it replaces: each case is a graph of elementwise
//! nodes, run once as it is (node by node) and once after the fusion pass (one `fused`
//! node the CPU runs over tiles); every output must be the same, bit for bit, except that
//! a NaN may come out with another sign or payload: IEEE 754 leaves those unspecified for
//! arithmetic, and LLVM may swap the operands of a commutative `+` or `*` (x86 keeps the
//! first operand's NaN), which it does when one operand is a broadcast scalar. The sizes
//! straddle the tile (1024 elements) and the parallel task (16 tiles, and the 32 Ki
//! elements from which work goes parallel); the operands cover every way an input is read
//! (in place, a repeating row, a scalar, a column made contiguous first) and both float
//! dtypes, with NaNs, infinities and signed zeros among the values.

use devices::schedule::{self, Plan};
use devices::{CpuDevice, Tensor};
use ir::Graph;
use ir::graph::NodeKind;
use ir::passes::{Pass, optimize};

/// A small deterministic generator (xorshift64*), so that failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Mostly normal-sized values, with the special ones mixed in.
    fn value(&mut self) -> f64 {
        match self.next() % 64 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => -0.0,
            4 => 0.0,
            _ => ((self.next() % 20_000) as f64 / 1000.0) - 10.0,
        }
    }
}

fn tensor(g: &mut Gen, dtype: &str, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| g.value()).collect();
    match dtype {
        "f64" => Tensor::from_vec(v, shape).expect("f64 tensor"),
        _ => Tensor::from_vec(v.iter().map(|&x| x as f32).collect::<Vec<f32>>(), shape)
            .expect("f32 tensor"),
    }
}

/// The elements of `t` as bit patterns, whatever its dtype, every NaN as one pattern.
fn bits(t: &Tensor) -> Vec<u64> {
    if let Some(v) = t.to_vec::<f32>() {
        return v
            .iter()
            .map(|x| u64::from(if x.is_nan() { f32::NAN } else { *x }.to_bits()))
            .collect();
    }
    if let Some(v) = t.to_vec::<f64>() {
        return v
            .iter()
            .map(|x| if x.is_nan() { f64::NAN } else { *x }.to_bits())
            .collect();
    }
    if let Some(v) = t.to_vec::<bool>() {
        return v.iter().map(|&x| u64::from(x)).collect();
    }
    panic!("unexpected dtype {}", t.dtype())
}

fn fused_nodes(g: &Graph) -> usize {
    g.walk(g.body())
        .into_iter()
        .filter(|&n| matches!(g.node(n).kind, NodeKind::Fused { .. }))
        .count()
}

/// The graph of `body` over inputs of the given shapes, with `{t}` standing for the dtype.
fn graph(dtype: &str, inputs: &[(&str, &str)], outs: &str, body: &str) -> Graph {
    let params: Vec<String> = inputs
        .iter()
        .map(|(name, shape)| format!("%{name}: {dtype}{shape}"))
        .collect();
    let text = format!(
        "graph @g({}) -> ({}) {{\n{}\n}}\n",
        params.join(", "),
        outs.replace("{t}", dtype),
        body.replace("{t}", dtype)
    );
    let g = ir::graph::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    ir::verify(&g).unwrap_or_else(|e| panic!("{e}\n{text}"));
    g
}

/// Runs `g` unfused and fused on the same inputs and compares every output bit for bit.
fn check(name: &str, g: &Graph, inputs: &[Tensor]) {
    let fused = optimize(g, &[Pass::Fuse, Pass::Dce], true).expect("fusion runs");
    assert!(fused_nodes(&fused) > 0, "{name}: nothing was fused");
    let device = CpuDevice::new();
    let mut p1 = Vec::new();
    let mut p2 = Vec::new();
    let want = schedule::run(g, &device, inputs, &mut p1).expect("unfused run");
    let got = Plan::new(&fused)
        .run(&device, inputs, &mut p2)
        .expect("fused run");
    assert_eq!(want.len(), got.len(), "{name}: output count");
    for (i, (w, o)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w.shape(), o.shape(), "{name}: output {i} shape");
        assert_eq!(w.dtype(), o.dtype(), "{name}: output {i} dtype");
        let (w, o) = (bits(w), bits(o));
        if let Some(k) = w.iter().zip(&o).position(|(a, b)| a != b) {
            panic!(
                "{name}: output {i} differs first at element {k}: {:#x} unfused, {:#x} fused",
                w[k], o[k]
            );
        }
    }
}

const SIZES: [usize; 7] = [1, 7, 1023, 1025, 16 * 1024 + 3, 33_000, 100_003];

#[test]
fn a_chain_of_math_and_arithmetic_matches_node_by_node() {
    let mut rng = Gen(0x5eed);
    for dtype in ["f32", "f64"] {
        for n in SIZES {
            let shape = format!("[{n}]");
            let g = graph(
                dtype,
                &[("x", &shape), ("y", &shape)],
                "{t}[N], {t}[N]".replace("N", &n.to_string()).as_str(),
                &"  %a: {t}[] = full {shape: [], dtype: {t}, value: 1.5}
  %m: {t}[N] = mul %x, %a
  %b: {t}[] = full {shape: [], dtype: {t}, value: 0.25}
  %p: {t}[N] = add %m, %b
  %t: {t}[N] = tanh %p
  %s: {t}[N] = sigmoid %x
  %ts: {t}[N] = mul %t, %s
  %h: {t}[] = full {shape: [], dtype: {t}, value: 0.5}
  %hx: {t}[N] = mul %h, %x
  %o: {t}[N] = sub %ts, %hx
  %d: {t}[N] = div %o, %y
  %r: {t}[N] = rem %d, %y
  %q: {t}[N] = floor_div %x, %y
  %w: {t}[N] = pow %s, %y
  %mx: {t}[N] = maximum %r, %q
  %mn: {t}[N] = minimum %mx, %w
  %e: {t}[N] = exp %mn
  %l: {t}[N] = log1p %e
  %g: {t}[N] = gelu %l
  %k: {t}[N] = sqrt %g
  yield %o, %k"
                    .replace("N", &n.to_string()),
            );
            let x = tensor(&mut rng, dtype, &[n]);
            let y = tensor(&mut rng, dtype, &[n]);
            check(&format!("chain {dtype} n={n}"), &g, &[x, y]);
        }
    }
}

#[test]
fn broadcast_inputs_are_read_as_rows_scalars_and_columns() {
    let mut rng = Gen(42);
    for dtype in ["f32", "f64"] {
        for rows in [1usize, 3, 40, 700] {
            let cols = 97;
            let g = graph(
                dtype,
                &[
                    ("x", &format!("[{rows}, {cols}]")),
                    ("row", &format!("[{cols}]")),
                    ("col", &format!("[{rows}, 1]")),
                    ("s", "[]"),
                ],
                &format!("{{t}}[{rows}, {cols}], {{t}}[{rows}, {cols}]"),
                &"  %a: {t}[R, C] = add %x, %row
  %b: {t}[R, C] = mul %a, %col
  %c: {t}[R, C] = sub %b, %s
  %d: {t}[R, C] = sin %c
  %e: {t}[R, C] = mul %row, %col
  %f: {t}[R, C] = add %d, %e
  yield %f, %e"
                    .replace('R', &rows.to_string())
                    .replace('C', &cols.to_string()),
            );
            let inputs = [
                tensor(&mut rng, dtype, &[rows, cols]),
                tensor(&mut rng, dtype, &[cols]),
                tensor(&mut rng, dtype, &[rows, 1]),
                tensor(&mut rng, dtype, &[]),
            ];
            check(&format!("broadcast {dtype} rows={rows}"), &g, &inputs);
        }
    }
}

/// Inputs that reach a group as views (a transpose, a backwards slice, an explicit
/// broadcast of a column and of a scalar) are read through their strides, element for
/// element as the unfused nodes read them.
#[test]
fn views_are_read_through_their_strides() {
    let mut rng = Gen(7);
    for dtype in ["f32", "f64"] {
        for (rows, cols) in [(1usize, 1usize), (3, 5), (37, 1029), (300, 70)] {
            let g = graph(
                dtype,
                &[
                    ("x", &format!("[{cols}, {rows}]")),
                    ("y", &format!("[{rows}, {}]", 2 * cols)),
                    ("col", &format!("[{rows}, 1]")),
                    ("s", "[]"),
                ],
                &format!("{{t}}[{rows}, {cols}]"),
                &"  %xt: {t}[R, C] = transpose %x {perm: [1, 0]}
  %ys: {t}[R, C] = slice %y {dims: [(0, R, 1), (D, C, -2)]}
  %cb: {t}[R, C] = broadcast %col {shape: [R, C]}
  %sb: {t}[R, C] = broadcast %s {shape: [R, C]}
  %a: {t}[R, C] = mul %xt, %ys
  %b: {t}[R, C] = add %a, %cb
  %c: {t}[R, C] = tanh %b
  %d: {t}[R, C] = sub %c, %sb
  yield %d"
                    .replace('R', &rows.to_string())
                    .replace('D', &(2 * cols - 1).to_string())
                    .replace('C', &cols.to_string()),
            );
            let inputs = [
                tensor(&mut rng, dtype, &[cols, rows]),
                tensor(&mut rng, dtype, &[rows, 2 * cols]),
                tensor(&mut rng, dtype, &[rows, 1]),
                tensor(&mut rng, dtype, &[]),
            ];
            check(&format!("views {dtype} {rows}x{cols}"), &g, &inputs);
        }
    }
}

#[test]
fn comparisons_selects_and_logic_keep_bools_inside_or_give_them_out() {
    let mut rng = Gen(7);
    for dtype in ["f32", "f64"] {
        for n in SIZES {
            let g = graph(
                dtype,
                &[("x", &format!("[{n}]")), ("y", &format!("[{n}]"))],
                &format!("{{t}}[{n}], bool[{n}]"),
                &"  %z: {t}[] = full {shape: [], dtype: {t}, value: 0}
  %pos: bool[N] = gt %x, %z
  %lt: bool[N] = lt %x, %y
  %both: bool[N] = logical_and %pos, %lt
  %either: bool[N] = logical_or %both, %lt
  %not: bool[N] = logical_not %either
  %nan: bool[N] = isnan %y
  %fin: bool[N] = isfinite %x
  %odd: bool[N] = logical_or %nan, %fin
  %eq: bool[N] = eq %x, %y
  %ne: bool[N] = ne %x, %z
  %ge: bool[N] = ge %x, %y
  %le: bool[N] = le %y, %z
  %k: bool[N] = logical_and %eq, %ne
  %k2: bool[N] = logical_or %ge, %le
  %k3: bool[N] = logical_and %k, %k2
  %k4: bool[N] = logical_or %k3, %odd
  %s: {t}[N] = select %k4, %x, %y
  %r: {t}[N] = relu %s
  %a: {t}[N] = abs %r
  %n: {t}[N] = neg %a
  %sg: {t}[N] = sign %n
  %st: {t}[N] = stop_gradient %sg
  %o: {t}[N] = select %not, %st, %z
  yield %o, %not"
                    .replace('N', &n.to_string()),
            );
            let inputs = [tensor(&mut rng, dtype, &[n]), tensor(&mut rng, dtype, &[n])];
            check(&format!("logic {dtype} n={n}"), &g, &inputs);
        }
    }
}

#[test]
fn a_group_the_cpu_does_not_cover_runs_node_by_node() {
    // Integer arithmetic (which can fail on a zero divisor) and casts are declined by the
    // fused executor; the region then runs as plain nodes and gives the same values.
    let g = ir::graph::parse(
        "graph @g(%x: i32[5], %y: i32[5]) -> (f32[5]) {
  %a: i32[5] = add %x, %y
  %m: i32[5] = mul %a, %x
  %c: f32[5] = cast %m {dtype: f32}
  yield %c
}",
    )
    .expect("parses");
    let x = Tensor::from_vec(vec![1i32, -2, 3, 4, 5], &[5]).expect("x");
    let y = Tensor::from_vec(vec![10i32, 20, -30, 40, 50], &[5]).expect("y");
    let fused = optimize(&g, &[Pass::Fuse], true).expect("fusion runs");
    assert_eq!(fused_nodes(&fused), 1);
    let out = Plan::new(&fused)
        .run(&CpuDevice::new(), &[x, y], &mut Vec::new())
        .expect("runs");
    assert_eq!(
        out[0].to_vec::<f32>().expect("f32"),
        vec![11.0, -36.0, -81.0, 176.0, 275.0]
    );
}

/// Whether the CPU runs every fused node of `g` whole, reductions included, rather than
/// declining it (the schedule then runs its elementwise part and reductions apart). Only
/// fused nodes that read graph inputs are looked at.
fn cpu_runs_whole(g: &Graph, inputs: &[Tensor]) -> bool {
    use devices::Device;
    let device = CpuDevice::new();
    let mut seen = 0;
    for n in g.walk(g.body()) {
        let NodeKind::Fused { body } = g.node(n).kind else {
            continue;
        };
        let args: Option<Vec<&Tensor>> = g
            .node(n)
            .operands
            .iter()
            .map(|v| g.inputs().iter().position(|i| i == v).map(|k| &inputs[k]))
            .collect();
        let Some(args) = args else {
            continue;
        };
        let kernel = devices::fused::Kernel::from_region(g, body).expect("a kernel");
        seen += 1;
        if device.exec_fused(&kernel, &args).expect("runs").is_none() {
            return false;
        }
    }
    seen > 0
}

/// Row lengths around the reduction block (4096 elements: one `fold_run` up to it,
/// pairwise blocks beyond) and the longest row the executor folds (16 Ki; longer rows are
/// declined and run apart), each with a few row counts (whole tiles of short rows, one
/// row per tile and per task for long ones).
const ROWS: [(usize, &[usize]); 9] = [
    (1, &[1, 5, 3000]),
    (7, &[1, 3, 150, 5000]),
    (16, &[1, 64, 2049]),
    (1000, &[1, 3, 40]),
    (4096, &[1, 2, 9]),
    (4097, &[1, 5]),
    (16_384, &[1, 3]),
    (16_385, &[2]),
    (70_000, &[1, 3]),
];

/// Sums, products, maxima and minima over the last axis of values a group computes,
/// with and without keepdims, next to an elementwise output of the group: the same bits as
/// the eager reductions of the unfused graph, NaNs and infinities included.
#[test]
fn reductions_over_rows_match_node_by_node() {
    let mut rng = Gen(0x0001_0ad5);
    for dtype in ["f32", "f64"] {
        for (len, counts) in ROWS {
            for &rows in counts {
                let g = graph(
                    dtype,
                    &[
                        ("x", &format!("[{rows}, {len}]")),
                        ("m", &format!("[{rows}, 1]")),
                        ("b", &format!("[{len}]")),
                    ],
                    &format!(
                        "{{t}}[{rows}], {{t}}[{rows}, 1], {{t}}[{rows}], {{t}}[{rows}, 1], {{t}}[{rows}, {len}]"
                    ),
                    &"  %sh: {t}[R, L] = sub %x, %m
  %e: {t}[R, L] = exp %sh
  %s: {t}[R] = sum %e {axes: [1], keepdims: false}
  %mx: {t}[R, 1] = max %sh {axes: [1], keepdims: true}
  %th: {t}[R, L] = tanh %x
  %p: {t}[R, L] = add %th, %b
  %mn: {t}[R] = min %p {axes: [1], keepdims: false}
  %pr: {t}[R, 1] = prod %th {axes: [1], keepdims: true}
  %o: {t}[R, L] = mul %e, %b
  yield %s, %mx, %mn, %pr, %o"
                        .replace('R', &rows.to_string())
                        .replace('L', &len.to_string()),
                );
                let inputs = [
                    tensor(&mut rng, dtype, &[rows, len]),
                    tensor(&mut rng, dtype, &[rows, 1]),
                    tensor(&mut rng, dtype, &[len]),
                ];
                let name = format!("rows {dtype} {rows}x{len}");
                check(&name, &g, &inputs);
                let fused = optimize(&g, &[Pass::Fuse, Pass::Dce], true).expect("fuses");
                assert_eq!(
                    cpu_runs_whole(&fused, &inputs),
                    len <= 16_384,
                    "{name}: rows up to 16 Ki are folded in the fused kernel"
                );
            }
        }
    }
}

/// Reductions over the last two axes (rows of both), of a transposed view, and of a value
/// that is one element broadcast (every row the same constant).
#[test]
fn reductions_of_views_and_constants_match_node_by_node() {
    let mut rng = Gen(0xfeed);
    for dtype in ["f32", "f64"] {
        for (a, b, c) in [
            (1usize, 1usize, 1usize),
            (2, 3, 5),
            (3, 40, 33),
            (2, 7, 1500),
        ] {
            let g = graph(
                dtype,
                &[
                    ("x", &format!("[{a}, {b}, {c}]")),
                    ("y", &format!("[{a}, {c}, {b}]")),
                    ("s", "[]"),
                ],
                &format!("{{t}}[{a}], {{t}}[{a}, 1, 1], {{t}}[{a}, {b}]"),
                &"  %yt: {t}[A, B, C] = transpose %y {perm: [0, 2, 1]}
  %sb: {t}[A, B, C] = broadcast %s {shape: [A, B, C]}
  %q: {t}[A, B, C] = mul %x, %yt
  %r: {t}[A, B, C] = sin %q
  %s2: {t}[A] = sum %r {axes: [1, 2], keepdims: false}
  %e: {t}[A, B, C] = exp %sb
  %k: {t}[A, B, C] = add %e, %e
  %mk: {t}[A, 1, 1] = max %k {axes: [1, 2], keepdims: true}
  %u: {t}[A, B, C] = cos %yt
  %last: {t}[A, B] = sum %u {axes: [2], keepdims: false}
  yield %s2, %mk, %last"
                    .replace('A', &a.to_string())
                    .replace('B', &b.to_string())
                    .replace('C', &c.to_string()),
            );
            let inputs = [
                tensor(&mut rng, dtype, &[a, b, c]),
                tensor(&mut rng, dtype, &[a, c, b]),
                tensor(&mut rng, dtype, &[]),
            ];
            check(&format!("views {dtype} {a}x{b}x{c}"), &g, &inputs);
        }
    }
}

/// An operand that dies at a fused node with a reduction lends its buffer to the
/// elementwise output (never to the reduction), with the same values as without lending.
#[test]
fn a_group_with_a_reduction_writes_in_place_with_the_same_values() {
    let mut rng = Gen(99);
    for (rows, len) in [(3usize, 5usize), (40, 1000), (5, 4097)] {
        let g = graph(
            "f32",
            &[("x", &format!("[2, {rows}, {len}]"))],
            &format!("f32[{rows}, {len}], f32[{rows}, 1]"),
            &"  %xs: f32[R, L] = sum %x {axes: [0], keepdims: false}
  %e: f32[R, L] = exp %xs
  %n: f32[R, L] = neg %e
  %s: f32[R, 1] = sum %e {axes: [1], keepdims: true}
  yield %n, %s"
                .replace('R', &rows.to_string())
                .replace('L', &len.to_string()),
        );
        let inputs = [tensor(&mut rng, "f32", &[2, rows, len])];
        check(&format!("in place {rows}x{len}"), &g, &inputs);
        let fused = optimize(&g, &[Pass::Fuse, Pass::Dce], true).expect("fuses");
        let device = CpuDevice::new();
        let (lent, stats) = Plan::new(&fused)
            .run_with_stats(&device, &inputs, &mut Vec::new())
            .expect("runs");
        assert_eq!(
            stats.in_place, 1,
            "{rows}x{len}: the elementwise output in place"
        );
        let plain = Plan::new(&fused)
            .without_in_place()
            .run(&device, &inputs, &mut Vec::new())
            .expect("runs");
        for (a, b) in lent.iter().zip(&plain) {
            assert_eq!(bits(a), bits(b), "{rows}x{len}");
        }
    }
}

/// A region written by hand whose step reads a reduction (a reduction in the middle) is no
/// kernel: it runs node by node, with the values of its nodes.
#[test]
fn a_reduction_read_inside_its_group_runs_node_by_node() {
    let text = "graph @g(%x: f32[3, 4]) -> (f32[3, 4]) {
  %r: f32[3, 4] = fused %x body(%a: f32[3, 4]) {
    %m: f32[3, 1] = max %a {axes: [1], keepdims: true}
    %d: f32[3, 4] = sub %a, %m
    yield %d
  }
  yield %r
}";
    let g = ir::graph::parse(text).expect("parses");
    ir::verify(&g).expect("verifies");
    let NodeKind::Fused { body } = g.node(g.walk(g.body())[0]).kind else {
        panic!("a fused node");
    };
    assert_eq!(devices::fused::Kernel::from_region(&g, body), None);
    let x = Tensor::from_vec((0..12).map(|i| i as f32).collect::<Vec<_>>(), &[3, 4]).expect("x");
    let out = Plan::new(&g)
        .run(&CpuDevice::new(), &[x], &mut Vec::new())
        .expect("runs");
    assert_eq!(
        out[0].to_vec::<f32>().expect("f32"),
        vec![
            -3.0, -2.0, -1.0, 0.0, -3.0, -2.0, -1.0, 0.0, -3.0, -2.0, -1.0, 0.0
        ]
    );
}

/// When rows of the last axis are long (at least 512 elements), tiles are single rows and
/// inputs that repeat along them are read in place: a value per row (a column, or a plane
/// broadcast along two axes) as a scalar, a row vector (a bias, or a slice of a wider
/// tensor) as a run of its buffer. Rank 3 exercises the row's offset through two leading
/// axes; the group ends in a row sum, so rows are whole tiles either way.
#[test]
fn long_rows_read_repeating_inputs_in_place() {
    let mut rng = Gen(11);
    for dtype in ["f32", "f64"] {
        for (a, b, c) in [
            (2usize, 3usize, 700usize),
            (1, 1, 512),
            (3, 40, 513),
            (2, 5, 2048),
        ] {
            let g = graph(
                dtype,
                &[
                    ("x", &format!("[{a}, {b}, {c}]")),
                    ("bias", &format!("[{c}]")),
                    ("col", &format!("[{a}, {b}, 1]")),
                    ("plane", &format!("[{a}, 1, 1]")),
                    ("y", &format!("[{a}, {b}, {}]", c + 7)),
                ],
                &format!("{{t}}[{a}, {b}, {c}], {{t}}[{a}, {b}]"),
                &"  %ys: {t}[A, B, C] = slice %y {dims: [(0, A, 1), (0, B, 1), (3, C, 1)]}
  %p: {t}[A, B, C] = mul %x, %bias
  %q: {t}[A, B, C] = add %p, %col
  %r: {t}[A, B, C] = sub %plane, %q
  %u: {t}[A, B, C] = mul %r, %ys
  %v: {t}[A, B, C] = tanh %u
  %s: {t}[A, B] = sum %v {axes: [2], keepdims: false}
  yield %u, %s"
                    .replace('A', &a.to_string())
                    .replace('B', &b.to_string())
                    .replace('C', &c.to_string()),
            );
            let inputs = [
                tensor(&mut rng, dtype, &[a, b, c]),
                tensor(&mut rng, dtype, &[c]),
                tensor(&mut rng, dtype, &[a, b, 1]),
                tensor(&mut rng, dtype, &[a, 1, 1]),
                tensor(&mut rng, dtype, &[a, b, c + 7]),
            ];
            check(&format!("rows {dtype} {a}x{b}x{c}"), &g, &inputs);
        }
    }
}
