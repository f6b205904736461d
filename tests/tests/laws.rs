//! Property laws of the primitives on the CPU device (proptest, 256 cases per law).
//!
//! - For every family, the type `ir::infer` predicts is the type the kernel returns, for
//!   random valid shapes and attributes (and non-contiguous operands). An error from `exec`
//!   on a valid input is a failure, including `Unavailable` from kernels still pending.
//! - Reshape to flat and back, and transpose then its inverse, give back the original.
//! - The sum over an axis of a concatenation is the sum of the parts' sums (exact in `i64`,
//!   within a stated tolerance in `f64`).
//! - Broadcasting along a new axis of size `k` and summing that axis gives `k·x`.
//!
//! Proptest draws the main shape (so failures shrink to small shapes) and a seed from which
//! the rest of the case (attributes, other operands, values) is derived with SplitMix64.

use devices::{CpuDevice, Device, Tensor};
use ir::{
    ArgOp, BinaryOp, CmpOp, Conv2dParams, DType, Op, Pool2dParams, PoolOp, RandomOp, ReduceOp,
    Shape, SliceDim, TensorType, UnaryKind, UnaryOp,
};
use ms_tests::inputs::{Domain, Operand, Rng, View, operand};
use ms_tests::reference::{self, broadcast_dims, numel};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use DType::{Bool, F32, F64, I32, I64};

/// 256 cases per law, no regression files written into the source tree, and a bounded
/// shrink (a pending kernel fails every case, so shrinking would find nothing new).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

/// Shapes of rank 0 to 4 with dims 0 to 4.
fn dims_st() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..=4, 0..=4)
}

/// Typical values of a dtype.
fn typical(dt: DType) -> Domain {
    match dt {
        F32 | F64 => Domain::Uniform(-10.0, 10.0),
        Bool => Domain::Bools,
        _ => Domain::Ints(-100, 100),
    }
}

const VIEWS: [View; 5] = [
    View::Contiguous,
    View::Transposed,
    View::Reversed,
    View::Strided,
    View::Broadcast,
];

/// A tensor of `dt` and `dims` with values from `dom`, in a random layout.
fn tensor(r: &mut Rng, dt: DType, dims: &[usize], dom: &Domain) -> Tensor {
    let view = pick(r, &VIEWS);
    operand(r, dt, dims, dom, view).tensor
}

fn pick<T: Copy>(r: &mut Rng, xs: &[T]) -> T {
    xs[r.below(xs.len())]
}

/// A shape that broadcasts to `out`: some leading axes dropped, some axes set to 1.
fn broadcastable(r: &mut Rng, out: &[usize]) -> Vec<usize> {
    let drop = r.below(out.len() + 1);
    out[drop..]
        .iter()
        .map(|&d| if r.below(3) == 0 { 1 } else { d })
        .collect()
}

/// A random valid case of a family, built around the shape `dims`.
fn build(family: &str, dims: &[usize], r: &mut Rng) -> (Op, Vec<Tensor>) {
    const ALL: [DType; 5] = [F32, F64, I32, I64, Bool];
    const NUMERIC: [DType; 4] = [F32, F64, I32, I64];
    const FLOATS: [DType; 2] = [F32, F64];
    let rank = dims.len();
    match family {
        "unary" => {
            let op = pick(r, UnaryOp::ALL);
            let dt = match op.kind() {
                UnaryKind::Numeric | UnaryKind::Predicate => pick(r, &NUMERIC),
                UnaryKind::Float => pick(r, &FLOATS),
                UnaryKind::Logical => Bool,
            };
            let dom = match op {
                UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt => Domain::Uniform(0.1, 10.0),
                _ => typical(dt),
            };
            (Op::Unary { op }, vec![tensor(r, dt, dims, &dom)])
        }
        "binary" => {
            let op = pick(r, BinaryOp::ALL);
            let dt = match op {
                BinaryOp::And | BinaryOp::Or => Bool,
                BinaryOp::Div => pick(r, &FLOATS),
                _ => pick(r, &NUMERIC),
            };
            // Integer divisors avoid zero and integer exponents stay non-negative: those
            // are errors by design (see bad_input.rs).
            let rhs = match (op, dt.is_int()) {
                (BinaryOp::Rem | BinaryOp::FloorDiv, true) => Domain::NonZeroInts(-9, 9),
                (BinaryOp::Pow, true) => Domain::Ints(0, 4),
                _ => typical(dt),
            };
            let (a, b) = (broadcastable(r, dims), broadcastable(r, dims));
            let xs = vec![tensor(r, dt, &a, &typical(dt)), tensor(r, dt, &b, &rhs)];
            (Op::Binary { op }, xs)
        }
        "compare" => {
            let op = pick(r, CmpOp::ALL);
            let dt = pick(r, &ALL);
            let (a, b) = (broadcastable(r, dims), broadcastable(r, dims));
            let dom = Domain::Ints(-2, 2);
            (
                Op::Compare { op },
                vec![tensor(r, dt, &a, &dom), tensor(r, dt, &b, &dom)],
            )
        }
        "select" => {
            let dt = pick(r, &ALL);
            let shapes: Vec<Vec<usize>> = (0..3).map(|_| broadcastable(r, dims)).collect();
            let xs = vec![
                tensor(r, Bool, &shapes[0], &Domain::Bools),
                tensor(r, dt, &shapes[1], &typical(dt)),
                tensor(r, dt, &shapes[2], &typical(dt)),
            ];
            (Op::Select {}, xs)
        }
        "reduce" => {
            let op = pick(r, ReduceOp::ALL);
            let dt = pick(r, &ALL);
            let axes: Vec<usize> = (0..rank).filter(|_| r.coin()).collect();
            let mut dims = dims.to_vec();
            if matches!(op, ReduceOp::Max | ReduceOp::Min) {
                // The maximum of nothing has no value: keep reduced axes non-empty.
                for &a in &axes {
                    dims[a] = dims[a].max(1);
                }
            }
            let x = tensor(r, dt, &dims, &typical(dt));
            let keepdims = r.coin();
            (Op::Reduce { op, axes, keepdims }, vec![x])
        }
        "arg_reduce" => {
            let op = pick(r, ArgOp::ALL);
            let dt = pick(r, &ALL);
            let mut dims = dims.to_vec();
            if dims.is_empty() {
                dims.push(3);
            }
            let axis = r.below(dims.len());
            dims[axis] = dims[axis].max(1);
            let x = tensor(r, dt, &dims, &typical(dt));
            let keepdims = r.coin();
            (Op::ArgReduce { op, axis, keepdims }, vec![x])
        }
        "matmul" => {
            let dt = pick(r, &NUMERIC);
            // `dims` gives the batch dims (at most two) of the result.
            let batch = &dims[..rank.min(2)];
            let (m, k, n) = (r.below(4), r.below(4), r.below(4));
            let mut a = broadcastable(r, batch);
            let mut b = broadcastable(r, batch);
            a.extend([m, k]);
            b.extend([k, n]);
            let xs = vec![
                tensor(r, dt, &a, &typical(dt)),
                tensor(r, dt, &b, &typical(dt)),
            ];
            (Op::MatMul {}, xs)
        }
        "reshape" => {
            let dt = pick(r, &ALL);
            let n = numel(dims);
            let mut targets = vec![vec![n], dims.iter().rev().copied().collect(), vec![1, n, 1]];
            if n.is_multiple_of(2) && n > 0 {
                targets.push(vec![2, n / 2]);
            }
            if n == 1 {
                targets.push(vec![]);
            }
            let to = targets[r.below(targets.len())].clone();
            let x = tensor(r, dt, dims, &typical(dt));
            (
                Op::Reshape {
                    shape: Shape::known(&to),
                },
                vec![x],
            )
        }
        "transpose" => {
            let dt = pick(r, &ALL);
            let perm = shuffled(r, rank);
            (
                Op::Transpose { perm },
                vec![tensor(r, dt, dims, &typical(dt))],
            )
        }
        "broadcast" => {
            let dt = pick(r, &ALL);
            let from = broadcastable(r, dims);
            (
                Op::Broadcast {
                    shape: Shape::known(dims),
                },
                vec![tensor(r, dt, &from, &typical(dt))],
            )
        }
        "slice" => {
            let dt = pick(r, &ALL);
            let sl = dims.iter().map(|&d| random_slice(r, d)).collect();
            (
                Op::Slice { dims: sl },
                vec![tensor(r, dt, dims, &typical(dt))],
            )
        }
        "concat" => {
            let dt = pick(r, &ALL);
            let mut dims = dims.to_vec();
            if dims.is_empty() {
                dims.push(2);
            }
            let axis = r.below(dims.len());
            let parts = 1 + r.below(3);
            let xs = (0..parts)
                .map(|_| {
                    let mut p = dims.clone();
                    p[axis] = r.below(4);
                    tensor(r, dt, &p, &typical(dt))
                })
                .collect();
            (Op::Concat { axis }, xs)
        }
        "pad" => {
            let dt = pick(r, &ALL);
            let pads = dims.iter().map(|_| (r.below(3), r.below(3))).collect();
            let value = pick(r, &[0.0, 1.5, -2.0]);
            (
                Op::Pad { pads, value },
                vec![tensor(r, dt, dims, &typical(dt))],
            )
        }
        "gather" | "scatter_add" => {
            let scatter = family == "scatter_add";
            let dt = if scatter {
                pick(r, &NUMERIC)
            } else {
                pick(r, &ALL)
            };
            let mut dims = dims.to_vec();
            if dims.is_empty() {
                dims.push(3);
            }
            let axis = r.below(dims.len());
            // An empty axis has no valid index.
            dims[axis] = dims[axis].max(1);
            let n = dims[axis] as i64;
            let idx_dims: Vec<usize> = (0..r.below(3)).map(|_| r.below(4)).collect();
            let idt = pick(r, &[I32, I64]);
            let x = tensor(r, dt, &dims, &typical(dt));
            let idx = tensor(r, idt, &idx_dims, &Domain::Ints(-n, n - 1));
            if scatter {
                let mut ud = dims[..axis].to_vec();
                ud.extend(&idx_dims);
                ud.extend(&dims[axis + 1..]);
                let upd = tensor(r, dt, &ud, &typical(dt));
                (Op::ScatterAdd { axis }, vec![x, idx, upd])
            } else {
                (Op::Gather { axis }, vec![x, idx])
            }
        }
        "conv2d" | "conv2d_backward_input" | "conv2d_backward_filter" => {
            let dt = pick(r, &FLOATS);
            let groups = 1 + r.below(3);
            let (cg, og) = (1 + r.below(3), 1 + r.below(3));
            let (c, o) = (cg * groups, og * groups);
            let n = r.below(3);
            let k = [1 + r.below(3), 1 + r.below(3)];
            let p = Conv2dParams {
                stride: [1 + r.below(3), 1 + r.below(3)],
                padding: [r.below(3), r.below(3)],
                dilation: [1 + r.below(2), 1 + r.below(2)],
                groups,
            };
            // Each spatial size is at least what one window needs (and at least 1).
            let hw: Vec<usize> = (0..2)
                .map(|i| {
                    let span = p.dilation[i] * (k[i] - 1) + 1;
                    span.saturating_sub(2 * p.padding[i]).max(1) + r.below(4)
                })
                .collect();
            let out: Vec<usize> = (0..2)
                .map(|i| {
                    reference::window_out(hw[i], k[i], p.stride[i], p.padding[i], p.dilation[i])
                })
                .collect();
            let dom = Domain::Uniform(-1.0, 1.0);
            let x = [n, c, hw[0], hw[1]];
            let w = [o, cg, k[0], k[1]];
            let y = [n, o, out[0], out[1]];
            match family {
                "conv2d" => (
                    Op::Conv2d { params: p },
                    vec![tensor(r, dt, &x, &dom), tensor(r, dt, &w, &dom)],
                ),
                "conv2d_backward_input" => (
                    Op::Conv2dBackwardInput {
                        params: p,
                        input_hw: [hw[0], hw[1]],
                    },
                    vec![tensor(r, dt, &y, &dom), tensor(r, dt, &w, &dom)],
                ),
                _ => (
                    Op::Conv2dBackwardFilter {
                        params: p,
                        kernel_hw: k,
                    },
                    vec![tensor(r, dt, &x, &dom), tensor(r, dt, &y, &dom)],
                ),
            }
        }
        "pool2d" | "pool2d_backward" => {
            let op = pick(r, PoolOp::ALL);
            let dt = match op {
                PoolOp::Max => pick(r, &NUMERIC),
                PoolOp::Avg => pick(r, &FLOATS),
            };
            let window = [1 + r.below(3), 1 + r.below(3)];
            let p = Pool2dParams {
                window,
                stride: [1 + r.below(3), 1 + r.below(3)],
                padding: [r.below(window[0] / 2 + 1), r.below(window[1] / 2 + 1)],
            };
            let hw: Vec<usize> = (0..2)
                .map(|i| window[i].saturating_sub(2 * p.padding[i]).max(1) + r.below(4))
                .collect();
            let x = [r.below(3), r.below(3), hw[0], hw[1]];
            let xt = tensor(r, dt, &x, &typical(dt));
            if family == "pool2d" {
                (Op::Pool2d { op, params: p }, vec![xt])
            } else {
                let out: Vec<usize> = (0..2)
                    .map(|i| reference::window_out(hw[i], window[i], p.stride[i], p.padding[i], 1))
                    .collect();
                let dy = tensor(r, dt, &[x[0], x[1], out[0], out[1]], &typical(dt));
                (Op::Pool2dBackward { op, params: p }, vec![xt, dy])
            }
        }
        "cast" => {
            let (from, to) = (pick(r, &ALL), pick(r, &ALL));
            (
                Op::Cast { dtype: to },
                vec![tensor(r, from, dims, &typical(from))],
            )
        }
        "random" => {
            let op = pick(r, RandomOp::ALL);
            let key = Operand::exact(
                I64,
                &[2],
                &[r.int_in(-1000, 1000) as f64, r.below(100) as f64],
            );
            (
                Op::Random {
                    op,
                    shape: Shape::known(dims),
                    dtype: pick(r, &FLOATS),
                },
                vec![key.tensor],
            )
        }
        "iota" => {
            let mut dims = dims.to_vec();
            if dims.is_empty() {
                dims.push(3);
            }
            let axis = r.below(dims.len());
            let op = Op::Iota {
                shape: Shape::known(&dims),
                axis,
                dtype: pick(r, &NUMERIC),
            };
            (op, vec![])
        }
        "full" => {
            let op = Op::Full {
                shape: Shape::known(dims),
                dtype: pick(r, &ALL),
                value: pick(r, &[0.0, -1.5, 7.0]),
            };
            (op, vec![])
        }
        "print" => {
            let dt = pick(r, &ALL);
            (Op::Print {}, vec![tensor(r, dt, dims, &typical(dt))])
        }
        "stop_gradient" => {
            let dt = pick(r, &ALL);
            (Op::StopGradient {}, vec![tensor(r, dt, dims, &typical(dt))])
        }
        other => panic!("no family {other}"),
    }
}

/// A random permutation of `0..n`.
fn shuffled(r: &mut Rng, n: usize) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        perm.swap(i, r.below(i + 1));
    }
    perm
}

/// A random valid slice of an axis of size `d`, with a step of magnitude 1 to 3 and either
/// sign.
fn random_slice(r: &mut Rng, d: usize) -> SliceDim {
    let step = pick(r, &[-3isize, -2, -1, 1, 2, 3]);
    if d == 0 {
        return SliceDim {
            start: 0,
            len: 0,
            step,
        };
    }
    let start = r.below(d);
    let room = if step > 0 {
        (d - start).div_ceil(step as usize)
    } else {
        start / step.unsigned_abs() + 1
    };
    SliceDim {
        start,
        len: r.below(room + 1),
        step,
    }
}

/// The kernel's result has the type `ir::infer` predicts, and its elements can be read.
fn infer_agrees(op: &Op, inputs: &[Tensor]) -> Result<(), TestCaseError> {
    let types: Vec<TensorType> = inputs.iter().map(Tensor::ttype).collect();
    let want = ir::infer(op, &types).map_err(|e| {
        TestCaseError::fail(format!(
            "generated an invalid case {op:?} on {types:?}: {e}"
        ))
    })?;
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let got = CpuDevice::new()
        .exec(op, &refs)
        .map_err(|e| TestCaseError::fail(format!("{op:?} on {types:?}: {e}")))?;
    prop_assert_eq!(got.dtype(), want.dtype, "{:?} on {:?}", op, types);
    prop_assert_eq!(
        Some(got.shape().to_vec()),
        want.shape.to_known(),
        "{:?} on {:?}",
        op,
        types
    );
    prop_assert_eq!(
        got.to_f64_vec().map(|v| v.len()),
        Some(got.numel()),
        "{:?}",
        op
    );
    Ok(())
}

/// One proptest per family: `infer_matches_kernel::<family>`.
mod infer_matches_kernel {
    use super::*;

    macro_rules! families {
        ($($fam:ident),* $(,)?) => {
            proptest! {
                #![proptest_config(config())]
                $(
                    #[test]
                    fn $fam(dims in dims_st(), seed in any::<u64>()) {
                        let (op, xs) = build(stringify!($fam), &dims, &mut Rng::new(seed));
                        infer_agrees(&op, &xs)?;
                    }
                )*
            }

            /// The laws above cover every family of the case table.
            #[test]
            fn every_family_has_a_law() {
                assert_eq!(vec![$(stringify!($fam)),*], ms_tests::cases::FAMILIES);
            }
        };
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
}

fn exec(op: &Op, xs: &[&Tensor]) -> Result<Tensor, TestCaseError> {
    CpuDevice::new()
        .exec(op, xs)
        .map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))
}

/// The elements of a tensor as bits, so that equality is exact (NaN included).
fn bits(t: &Tensor) -> Vec<u64> {
    t.to_f64_vec()
        .expect("a host tensor")
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn dtype_st() -> impl Strategy<Value = DType> {
    prop::sample::select(vec![F32, F64, I32, I64, Bool])
}

fn view_st() -> impl Strategy<Value = View> {
    prop::sample::select(VIEWS.to_vec())
}

/// `reduce_sum(x, axes)` on the device.
fn sum(x: &Tensor, axes: &[usize], keepdims: bool) -> Result<Tensor, TestCaseError> {
    exec(
        &Op::Reduce {
            op: ReduceOp::Sum,
            axes: axes.to_vec(),
            keepdims,
        },
        &[x],
    )
}

proptest! {
    #![proptest_config(config())]

    /// Reshaping to one axis and back gives the original shape and elements.
    #[test]
    fn reshape_round_trip(dims in dims_st(), dt in dtype_st(), view in view_st(), seed in any::<u64>()) {
        let x = operand(&mut Rng::new(seed), dt, &dims, &typical(dt), view).tensor;
        let flat = exec(&Op::Reshape { shape: Shape::known(&[numel(&dims)]) }, &[&x])?;
        let back = exec(&Op::Reshape { shape: Shape::known(&dims) }, &[&flat])?;
        prop_assert_eq!(back.shape(), x.shape());
        prop_assert_eq!(back.dtype(), x.dtype());
        prop_assert_eq!(bits(&back), bits(&x));
    }

    /// Transposing with a permutation and then with its inverse gives the original.
    #[test]
    fn transpose_inverse(dims in dims_st(), dt in dtype_st(), view in view_st(), seed in any::<u64>()) {
        let mut r = Rng::new(seed);
        let x = operand(&mut r, dt, &dims, &typical(dt), view).tensor;
        let perm = shuffled(&mut r, dims.len());
        let mut inv = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        let t = exec(&Op::Transpose { perm }, &[&x])?;
        let back = exec(&Op::Transpose { perm: inv }, &[&t])?;
        prop_assert_eq!(back.shape(), x.shape());
        prop_assert_eq!(bits(&back), bits(&x));
    }

    /// `sum(concat(parts, axis), axis) == Σ sum(part, axis)`, exactly in `i64` and within
    /// `(n + 2)·eps·Σ|x|` in `f64` (the bound of recursive summation of `n` terms, for both
    /// sides).
    #[test]
    fn sum_over_split(dims in prop::collection::vec(0usize..=4, 1..=3), seed in any::<u64>(), float in any::<bool>()) {
        let mut r = Rng::new(seed);
        let axis = r.below(dims.len());
        let dt = if float { F64 } else { I64 };
        let dom = if float { Domain::Uniform(-100.0, 100.0) } else { Domain::Ints(-1 << 40, 1 << 40) };
        let parts: Vec<Operand> = (0..1 + r.below(3))
            .map(|_| {
                let mut p = dims.clone();
                p[axis] = r.below(4);
                let view = pick(&mut r, &VIEWS);
                operand(&mut r, dt, &p, &dom, view)
            })
            .collect();
        let refs: Vec<&Tensor> = parts.iter().map(|p| &p.tensor).collect();
        let whole = exec(&Op::Concat { axis }, &refs)?;
        let total = sum(&whole, &[axis], false)?;
        let mut want = vec![0.0; numel(total.shape())];
        // Σ|x| per output element, from the reference, for the floating-point tolerance.
        let mut scale = vec![0.0; want.len()];
        let ref_sum = Op::Reduce { op: ReduceOp::Sum, axes: vec![axis], keepdims: false };
        for p in &parts {
            let s = sum(&p.tensor, &[axis], false)?.to_f64_vec().expect("host");
            let a = reference::eval(&ref_sum, &[&p.reference.abs()]).expect("a valid sum");
            for i in 0..want.len() {
                want[i] += s[i];
                scale[i] += a.data[i];
            }
        }
        let got = total.to_f64_vec().expect("host");
        let n = whole.shape()[axis] as f64;
        for i in 0..want.len() {
            let tol = if float { (n + 2.0) * f64::EPSILON * scale[i] } else { 0.0 };
            prop_assert!((got[i] - want[i]).abs() <= tol, "element {}: {} vs {}", i, got[i], want[i]);
        }
    }

    /// Broadcasting `x` along a new axis of size `k` and summing that axis gives `k·x`
    /// (exactly in `i64`; within `(k + 2)·eps·k·|x|` in `f64`).
    #[test]
    fn broadcast_then_sum(dims in prop::collection::vec(0usize..=4, 0..=3), k in 0usize..=5, seed in any::<u64>(), float in any::<bool>()) {
        let mut r = Rng::new(seed);
        let dt = if float { F64 } else { I64 };
        let dom = if float { Domain::Uniform(-100.0, 100.0) } else { Domain::Ints(-1 << 40, 1 << 40) };
        let view = pick(&mut r, &VIEWS);
        let x = operand(&mut r, dt, &dims, &dom, view);
        // Insert the new axis at a random position: as a size-1 axis of `x` and as `k` in
        // the target.
        let at = r.below(dims.len() + 1);
        let mut with_one = dims.clone();
        with_one.insert(at, 1);
        let mut target = dims.clone();
        target.insert(at, k);
        let x1 = exec(&Op::Reshape { shape: Shape::known(&with_one) }, &[&x.tensor])?;
        let b = exec(&Op::Broadcast { shape: Shape::known(&target) }, &[&x1])?;
        let s = sum(&b, &[at], false)?;
        prop_assert_eq!(s.shape(), dims.as_slice());
        let got = s.to_f64_vec().expect("host");
        let kf = k as f64;
        for (i, &v) in x.reference.data.iter().enumerate() {
            let want = if float { kf * v } else { (v as i64).wrapping_mul(k as i64) as f64 };
            let tol = if float { (kf + 2.0) * f64::EPSILON * kf * v.abs() } else { 0.0 };
            prop_assert!((got[i] - want).abs() <= tol, "element {}: {} vs {}", i, got[i], want);
        }
    }
}

/// The broadcast helper of the reference agrees with `ir::broadcast_shapes` on the shapes
/// the laws generate (a check of the test's own machinery).
#[test]
fn broadcastable_shapes_broadcast() {
    let mut r = Rng::new(7);
    for _ in 0..200 {
        let out: Vec<usize> = (0..r.below(5)).map(|_| r.below(4)).collect();
        let a = broadcastable(&mut r, &out);
        let b = broadcastable(&mut r, &out);
        let ir_shape = ir::broadcast_shapes(&Shape::known(&a), &Shape::known(&b)).expect("valid");
        assert_eq!(ir_shape.to_known(), Some(broadcast_dims(&a, &b)));
    }
}
