//! Table-driven tests of `ir::infer`: each row is an op, operand types written as in the
//! IR text (`f32[2, n]`), and the expected type or error message.

use ir::*;

/// Parses `f32[2, n, ?]` into a tensor type.
fn ty(s: &str) -> TensorType {
    let (dt, rest) = s.split_once('[').expect("type has a shape");
    let dims = rest.trim_end_matches(']');
    let shape = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().map_or_else(|_| Dim::sym(d), Dim::Known))
        .collect::<Vec<_>>();
    TensorType::new(DType::from_name(dt).expect("dtype"), Shape(shape))
}

fn check(op: Op, inputs: &[&str], expect: &str) {
    let types: Vec<TensorType> = inputs.iter().map(|s| ty(s)).collect();
    let got = match infer(&op, &types) {
        Ok(t) => t.to_string(),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(got, expect, "{op:?} on {inputs:?}");
}

#[test]
fn elementwise_broadcasting() {
    let add = || Op::Binary { op: BinaryOp::Add };
    check(add(), &["f32[2, 3]", "f32[3]"], "f32[2, 3]");
    check(add(), &["f32[4, 1, 3]", "f32[5, 1]"], "f32[4, 5, 3]");
    check(add(), &["f32[]", "f32[7]"], "f32[7]");
    check(add(), &["f32[n, 3]", "f32[1, 3]"], "f32[n, 3]");
    check(add(), &["f32[?, 3]", "f32[5, 3]"], "f32[5, 3]");
    check(
        add(),
        &["f32[2, 3]", "f32[4]"],
        "error: add: shapes [2, 3] and [4] do not broadcast: axis 0 (from the right) is 3 vs 4",
    );
    check(
        add(),
        &["f32[n]", "f32[m]"],
        "error: add: shapes [n] and [m] do not broadcast: axis 0 (from the right) is n vs m",
    );
    check(
        add(),
        &["f32[2]", "f64[2]"],
        "error: add: operands 0 and 1 have different dtypes f32 and f64; cast one of them",
    );
    check(
        Op::Binary { op: BinaryOp::Div },
        &["i64[2]", "i64[2]"],
        "error: div operand 0: expected a float dtype (cast integers first), found i64",
    );
    check(
        Op::Binary { op: BinaryOp::And },
        &["bool[2]", "bool[1]"],
        "bool[2]",
    );
    check(
        Op::Binary { op: BinaryOp::Mul },
        &["bool[2]", "bool[2]"],
        "error: mul operand 0: expected a numeric dtype, found bool",
    );
    check(
        Op::Compare { op: CmpOp::Lt },
        &["i32[2, 1]", "i32[3]"],
        "bool[2, 3]",
    );
    check(
        Op::Select {},
        &["bool[2, 1]", "f32[3]", "f32[]"],
        "f32[2, 3]",
    );
    check(
        Op::Select {},
        &["f32[2]", "f32[2]", "f32[2]"],
        "error: select operand 0: expected bool, found f32",
    );
}

#[test]
fn unary_dtype_rules() {
    check(Op::Unary { op: UnaryOp::Exp }, &["f64[3]"], "f64[3]");
    check(
        Op::Unary { op: UnaryOp::Exp },
        &["i64[3]"],
        "error: exp operand 0: expected a float dtype, found i64",
    );
    check(Op::Unary { op: UnaryOp::Abs }, &["i32[3]"], "i32[3]");
    check(Op::Unary { op: UnaryOp::IsNan }, &["f32[3]"], "bool[3]");
    check(Op::Unary { op: UnaryOp::Not }, &["bool[]"], "bool[]");
    check(
        Op::Unary { op: UnaryOp::Not },
        &["f32[]"],
        "error: logical_not operand 0: expected bool, found f32",
    );
}

#[test]
fn reductions() {
    let sum = |axes: Vec<usize>, keepdims| Op::Reduce {
        op: ReduceOp::Sum,
        axes,
        keepdims,
    };
    check(sum(vec![1], false), &["f32[2, 3, 4]"], "f32[2, 4]");
    check(sum(vec![0, 2], true), &["f32[2, 3, 4]"], "f32[1, 3, 1]");
    check(sum(vec![], false), &["f32[2]"], "f32[2]");
    check(sum(vec![0], false), &["bool[5]"], "i64[]");
    check(
        sum(vec![3], false),
        &["f32[2, 3]"],
        "error: sum: axis 3 is out of range for rank 2",
    );
    check(
        sum(vec![1, 0], false),
        &["f32[2, 3]"],
        "error: sum: axes [1, 0] must be sorted and distinct",
    );
    check(
        Op::Reduce {
            op: ReduceOp::Max,
            axes: vec![0],
            keepdims: false,
        },
        &["f32[0, 3]"],
        "error: max: axis 0 has size 0: there is no max of no elements",
    );
    check(
        Op::ArgReduce {
            op: ArgOp::ArgMax,
            axis: 1,
            keepdims: false,
        },
        &["f32[2, 3]"],
        "i64[2]",
    );
    check(
        Op::ArgReduce {
            op: ArgOp::ArgMin,
            axis: 0,
            keepdims: true,
        },
        &["f32[0, 3]"],
        "error: argmin: axis 0 has size 0: there is no extreme value",
    );
}

#[test]
fn matmul() {
    check(Op::MatMul {}, &["f32[2, 3]", "f32[3, 4]"], "f32[2, 4]");
    check(
        Op::MatMul {},
        &["f32[5, 1, 2, 3]", "f32[7, 3, 4]"],
        "f32[5, 7, 2, 4]",
    );
    check(
        Op::MatMul {},
        &["f32[b, n, 3]", "f32[3, k]"],
        "f32[b, n, k]",
    );
    check(
        Op::MatMul {},
        &["f32[32, 784]", "f32[128, 784]"],
        "error: matmul operand 1, axis 0: expected 784, found 128",
    );
    check(
        Op::MatMul {},
        &["f32[3]", "f32[3, 4]"],
        "error: matmul operand 0: expected rank ≥ 2, found rank 1 (shape [3])",
    );
}

#[test]
fn movement() {
    check(
        Op::Reshape {
            shape: Shape::known(&[3, 2]),
        },
        &["f32[2, 3]"],
        "f32[3, 2]",
    );
    check(
        Op::Reshape {
            shape: Shape::known(&[4]),
        },
        &["f32[2, 3]"],
        "error: reshape: cannot reshape [2, 3] into [4]: the element counts differ",
    );
    check(
        Op::Reshape {
            shape: Shape(vec![Dim::sym("n"), Dim::Known(6)]),
        },
        &["f32[n, 2, 3]"],
        "f32[n, 6]",
    );
    check(
        Op::Transpose {
            perm: vec![1, 0, 2],
        },
        &["f32[2, 3, 4]"],
        "f32[3, 2, 4]",
    );
    check(
        Op::Transpose { perm: vec![0, 0] },
        &["f32[2, 3]"],
        "error: transpose: [0, 0] is not a permutation of the 2 axes",
    );
    check(
        Op::Broadcast {
            shape: Shape::known(&[4, 2, 3]),
        },
        &["f32[1, 3]"],
        "f32[4, 2, 3]",
    );
    check(
        Op::Broadcast {
            shape: Shape::known(&[2, 4]),
        },
        &["f32[3]"],
        "error: broadcast operand 0, axis 0: expected 4, found 3",
    );
    let s = |start, len, step| SliceDim { start, len, step };
    check(
        Op::Slice {
            dims: vec![s(1, 2, 1), s(3, 2, -1)],
        },
        &["f32[3, 4]"],
        "f32[2, 2]",
    );
    check(
        Op::Slice {
            dims: vec![s(2, 2, 1)],
        },
        &["f32[3]"],
        "error: slice: axis 0 of size 3: the slice reaches outside it",
    );
    check(
        Op::Concat { axis: 1 },
        &["f32[2, 3]", "f32[2, 5]", "f32[2, 0]"],
        "f32[2, 8]",
    );
    check(
        Op::Concat { axis: 0 },
        &["f32[2, 3]", "f32[2, 4]"],
        "error: concat operand 1, axis 1: expected 3, found 4",
    );
    check(
        Op::Pad {
            pads: vec![(1, 2), (0, 0)],
            value: 0.0,
        },
        &["f32[2, 3]"],
        "f32[5, 3]",
    );
    check(
        Op::Gather { axis: 0 },
        &["f32[10, 3]", "i64[4, 2]"],
        "f32[4, 2, 3]",
    );
    check(
        Op::Gather { axis: 1 },
        &["f32[10, 3]", "f32[4]"],
        "error: gather operand 1: expected an integer dtype, found f32",
    );
    check(
        Op::ScatterAdd { axis: 0 },
        &["f32[10, 3]", "i64[4]", "f32[4, 3]"],
        "f32[10, 3]",
    );
    check(
        Op::ScatterAdd { axis: 0 },
        &["f32[10, 3]", "i64[4]", "f32[5, 3]"],
        "error: scatter_add operand 2, axis 0: expected 4, found 5",
    );
}

#[test]
fn convolution_and_pooling() {
    let p = Conv2dParams {
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 1,
    };
    check(
        Op::Conv2d { params: p },
        &["f32[32, 3, 32, 32]", "f32[16, 3, 3, 3]"],
        "f32[32, 16, 32, 32]",
    );
    let s2 = Conv2dParams {
        stride: [2, 2],
        padding: [0, 0],
        dilation: [2, 1],
        groups: 2,
    };
    check(
        Op::Conv2d { params: s2 },
        &["f64[1, 4, 9, 8]", "f64[6, 2, 3, 3]"],
        "f64[1, 6, 3, 3]",
    );
    check(
        Op::Conv2d { params: p },
        &["f32[1, 4, 8, 8]", "f32[6, 3, 3, 3]"],
        "error: conv2d operand 1, axis 1: expected 4, found 3",
    );
    check(
        Op::Conv2d {
            params: Conv2dParams::default(),
        },
        &["f32[1, 1, 2, 2]", "f32[1, 1, 3, 3]"],
        "error: conv2d: a window of 3 (dilation 1) does not fit in a size of 2 padded by 0",
    );
    check(
        Op::Conv2dBackwardInput {
            params: p,
            input_hw: [32, 32],
        },
        &["f32[32, 16, 32, 32]", "f32[16, 3, 3, 3]"],
        "f32[32, 3, 32, 32]",
    );
    check(
        Op::Conv2dBackwardFilter {
            params: p,
            kernel_hw: [3, 3],
        },
        &["f32[32, 3, 32, 32]", "f32[32, 16, 32, 32]"],
        "f32[16, 3, 3, 3]",
    );
    let pool = Pool2dParams {
        window: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
    };
    check(
        Op::Pool2d {
            op: PoolOp::Max,
            params: pool,
        },
        &["f32[8, 4, 9, 9]"],
        "f32[8, 4, 4, 4]",
    );
    check(
        Op::Pool2dBackward {
            op: PoolOp::Avg,
            params: pool,
        },
        &["f32[8, 4, 9, 9]", "f32[8, 4, 4, 4]"],
        "f32[8, 4, 9, 9]",
    );
    check(
        Op::Pool2d {
            op: PoolOp::Avg,
            params: pool,
        },
        &["i64[1, 1, 4, 4]"],
        "error: avg_pool2d operand 0: expected a float dtype, found i64",
    );
}

#[test]
fn creation_and_misc() {
    check(Op::Cast { dtype: DType::I32 }, &["f32[2]"], "i32[2]");
    let random = |dtype| Op::Random {
        op: RandomOp::Normal,
        shape: Shape::known(&[3, 4]),
        dtype,
    };
    check(random(DType::F32), &["i64[2]"], "f32[3, 4]");
    check(
        random(DType::I64),
        &["i64[2]"],
        "error: random_normal: random numbers are floats, not i64",
    );
    check(
        random(DType::F32),
        &["i64[3]"],
        "error: random_normal operand 0: expected rank 1 with shape [2] (seed, offset), found rank 1 (shape [3])",
    );
    check(
        Op::Iota {
            shape: Shape::known(&[2, 3]),
            axis: 1,
            dtype: DType::I64,
        },
        &[],
        "i64[2, 3]",
    );
    check(
        Op::Full {
            shape: Shape::known(&[usize::MAX, 2]),
            dtype: DType::F32,
            value: 0.0,
        },
        &[],
        "error: full: the shape [18446744073709551615, 2] has more elements than can be addressed",
    );
    check(Op::Print {}, &["f32[2]"], "f32[2]");
    check(
        Op::MatMul {},
        &["f32[2, 2]"],
        "error: matmul takes 2 operand(s), found 1",
    );
}

#[test]
fn slice_resolution_follows_numpy() {
    // (start, stop, step) on size 10 -> the indices NumPy takes.
    type Case = (Option<i64>, Option<i64>, Option<i64>, &'static [usize]);
    let cases: &[Case] = &[
        (None, None, None, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        (Some(5), Some(20), None, &[5, 6, 7, 8, 9]),
        (Some(-3), None, None, &[7, 8, 9]),
        (None, None, Some(-1), &[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]),
        (Some(8), Some(2), Some(-3), &[8, 5]),
        (Some(2), Some(8), Some(3), &[2, 5]),
        (Some(7), Some(3), None, &[]),
        (Some(-100), Some(2), None, &[0, 1]),
    ];
    for &(a, b, c, want) in cases {
        let s = SliceDim::resolve(a, b, c, 10).expect("valid slice");
        let got: Vec<usize> = (0..s.len)
            .map(|k| (s.start as isize + k as isize * s.step) as usize)
            .collect();
        assert_eq!(got, want, "{a:?}:{b:?}:{c:?}");
    }
    assert_eq!(SliceDim::resolve(None, None, Some(0), 10), None);
}

#[test]
fn table_is_closed_and_named_once() {
    let all = Prim::all();
    let mut names: Vec<&str> = all.iter().map(|p| p.name()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "every primitive has its own name");
    assert!(all.contains(&Prim::Unary(UnaryOp::Gelu)) && all.contains(&Prim::MatMul));
    assert_eq!(Prim::Unary(UnaryOp::Exp).info().family, "unary");
    assert_eq!(
        Prim::Reduce(ReduceOp::Sum).info().attrs,
        &["axes", "keepdims"]
    );
    // The DESIGN's budget: at most 40 table entries, a family counting once.
    let mut families: Vec<&str> = all.iter().map(|p| p.info().family).collect();
    families.dedup();
    assert!(families.len() <= 40, "{} families", families.len());
}

#[test]
fn cost_counts_flops_and_bytes() {
    let mm = Op::MatMul {};
    let (a, b) = (ty("f32[2, 3]"), ty("f32[3, 4]"));
    let out = infer(&mm, &[a.clone(), b.clone()]).expect("fits");
    assert_eq!(
        cost(&mm, &[a, b], &out),
        Cost {
            flops: 2 * 2 * 4 * 3,
            bytes: (6 + 12 + 8) * 4
        }
    );
    let conv = Op::Conv2d {
        params: Conv2dParams {
            padding: [1, 1],
            ..Conv2dParams::default()
        },
    };
    let (x, w) = (ty("f32[32, 3, 32, 32]"), ty("f32[16, 3, 3, 3]"));
    let y = infer(&conv, &[x.clone(), w.clone()]).expect("fits");
    // The 28.3 MFLOP of the benchmark's forward convolution.
    assert_eq!(
        cost(&conv, &[x.clone(), w.clone()], &y).flops,
        2 * 32 * 16 * 32 * 32 * 27
    );
    let dw = Op::Conv2dBackwardFilter {
        params: Conv2dParams {
            padding: [1, 1],
            ..Conv2dParams::default()
        },
        kernel_hw: [3, 3],
    };
    assert_eq!(
        cost(&dw, &[x, y.clone()], &w).flops,
        2 * 32 * 16 * 32 * 32 * 27
    );
    let reshape = Op::Reshape {
        shape: Shape::known(&[4, 3]),
    };
    assert_eq!(
        cost(&reshape, &[ty("f32[3, 4]")], &ty("f32[4, 3]")),
        Cost::default()
    );
}
