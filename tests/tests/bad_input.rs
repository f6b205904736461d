//! Bad input is an error value, never a panic, and the device keeps working afterwards.
//!
//! Each case goes through [`check_err`]: the op runs under `catch_unwind`, its error must
//! match the expected variant (and name what the user needs to fix it), and then a valid op
//! runs on the same device and must give the right answer.

use std::panic::{AssertUnwindSafe, catch_unwind};

use devices::cpu::Limits;
use devices::{CpuDevice, Device, DeviceError, Tensor};
use ir::{ArgOp, BinaryOp, Conv2dParams, DType, Dim, InferError, Op, ReduceOp, Shape, SliceDim};

fn f32s(v: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), dims).expect("the data fills the dims")
}

fn zeros_f32(dims: &[usize]) -> Tensor {
    f32s(&vec![0.0; dims.iter().product()], dims)
}

fn i32s(v: &[i32], dims: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), dims).expect("the data fills the dims")
}

fn i64s(v: &[i64], dims: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), dims).expect("the data fills the dims")
}

/// Runs `op` on `inputs` expecting an error that satisfies `expect` (which may also check
/// its message); then checks that `dev` still computes `[1, 2] + [3, 4] = [4, 6]`.
fn check_err(
    dev: &CpuDevice,
    op: &Op,
    inputs: &[&Tensor],
    expect: impl Fn(&DeviceError) -> bool,
    what: &str,
) {
    let result = catch_unwind(AssertUnwindSafe(|| dev.exec(op, inputs)))
        .unwrap_or_else(|_| panic!("{what}: {op:?} panicked instead of returning an error"));
    match result {
        Ok(t) => panic!("{what}: {op:?} succeeded with {t:?}"),
        Err(e) => assert!(expect(&e), "{what}: unexpected error {e:?} ({e})"),
    }
    still_works(dev, what);
}

/// A valid op on the device gives the right answer.
fn still_works(dev: &CpuDevice, what: &str) {
    let a = f32s(&[1.0, 2.0], &[2]);
    let b = f32s(&[3.0, 4.0], &[2]);
    let sum = dev
        .exec(&Op::Binary { op: BinaryOp::Add }, &[&a, &b])
        .unwrap_or_else(|e| panic!("after {what}, a valid add failed: {e}"));
    assert_eq!(
        sum.to_f64_vec(),
        Some(vec![4.0, 6.0]),
        "after {what}, a valid add is wrong"
    );
}

/// Runs `op` and only requires that it does not panic (an error or a value are both fine:
/// the result is undefined); then the device must still work.
fn check_no_panic(dev: &CpuDevice, op: &Op, inputs: &[&Tensor], what: &str) {
    catch_unwind(AssertUnwindSafe(|| dev.exec(op, inputs)))
        .unwrap_or_else(|_| panic!("{what}: {op:?} panicked"))
        .ok();
    still_works(dev, what);
}

#[test]
fn broadcast_mismatch_names_the_shapes() {
    let dev = CpuDevice::new();
    let (a, b) = (zeros_f32(&[2, 3]), zeros_f32(&[4]));
    check_err(
        &dev,
        &Op::Binary { op: BinaryOp::Add },
        &[&a, &b],
        |e| {
            matches!(e, DeviceError::Infer(InferError::Broadcast { prim: "add", lhs_shape, rhs_shape, lhs_dim: Dim::Known(3), rhs_dim: Dim::Known(4), .. })
                if *lhs_shape == Shape::known(&[2, 3]) && *rhs_shape == Shape::known(&[4]))
                && e.to_string().contains("[2, 3]")
                && e.to_string().contains("[4]")
        },
        "f32[2, 3] + f32[4]",
    );
}

#[test]
fn dtype_mismatch() {
    let dev = CpuDevice::new();
    let a = zeros_f32(&[2]);
    let b = Tensor::from_vec(vec![0.0f64; 2], &[2]).expect("a tensor");
    check_err(
        &dev,
        &Op::Binary { op: BinaryOp::Add },
        &[&a, &b],
        |e| {
            matches!(
                e,
                DeviceError::Infer(InferError::DTypeMismatch {
                    lhs_dtype: DType::F32,
                    rhs_dtype: DType::F64,
                    ..
                })
            )
        },
        "f32 + f64",
    );
}

#[test]
fn matmul_inner_dim_mismatch() {
    let dev = CpuDevice::new();
    let (a, b) = (zeros_f32(&[2, 3]), zeros_f32(&[4, 5]));
    check_err(
        &dev,
        &Op::MatMul {},
        &[&a, &b],
        |e| {
            matches!(
                e,
                DeviceError::Infer(InferError::Dim {
                    prim: "matmul",
                    operand: 1,
                    axis: 0,
                    expected: Dim::Known(3),
                    found: Dim::Known(4),
                })
            )
        },
        "f32[2, 3] @ f32[4, 5]",
    );
}

#[test]
fn reshape_with_a_different_count() {
    let dev = CpuDevice::new();
    let x = zeros_f32(&[2, 3]);
    check_err(
        &dev,
        &Op::Reshape {
            shape: Shape::known(&[4]),
        },
        &[&x],
        |e| {
            matches!(e, DeviceError::Infer(InferError::Attr { prim: "reshape", message })
                if message.contains("[2, 3]") && message.contains("[4]"))
        },
        "reshape [2, 3] to [4]",
    );
}

#[test]
fn allocation_over_the_cap_is_refused() {
    let dev = CpuDevice::with_limits(Limits {
        max_tensor_bytes: 1 << 30,
    });
    let op = Op::Full {
        shape: Shape::known(&[1_000_000, 1_000_000]),
        dtype: DType::F32,
        value: 0.0,
    };
    check_err(
        &dev,
        &op,
        &[],
        |e| {
            let msg = e.to_string();
            matches!(e, DeviceError::Alloc { op: "full", dtype: DType::F32, bytes: 4_000_000_000_000, shape, .. }
                if *shape == Shape::known(&[1_000_000, 1_000_000]))
                && msg.contains("full")
                && msg.contains("[1000000, 1000000]")
                && msg.contains("f32")
                && msg.contains("4000000000000")
        },
        "full f32[1e6, 1e6] under a 1 GiB cap",
    );
    // Bytes that overflow u64 (2^62 elements of 8 bytes) are refused too, with the byte
    // count saturated.
    let op = Op::Full {
        shape: Shape::known(&[1 << 62]),
        dtype: DType::F64,
        value: 0.0,
    };
    check_err(
        &dev,
        &op,
        &[],
        |e| {
            matches!(
                e,
                DeviceError::Alloc {
                    bytes: u64::MAX,
                    ..
                }
            )
        },
        "full f64[2^62]",
    );
}

/// Shapes whose element count overflows `usize` are errors wherever a shape is made.
#[test]
fn element_count_overflow() {
    let dev = CpuDevice::new();
    let huge = Shape::known(&[usize::MAX, 2]);
    let overflow = |e: &DeviceError| matches!(e, DeviceError::Infer(InferError::Overflow { .. }));
    check_err(
        &dev,
        &Op::Full {
            shape: huge.clone(),
            dtype: DType::F32,
            value: 1.0,
        },
        &[],
        overflow,
        "full [usize::MAX, 2]",
    );
    check_err(
        &dev,
        &Op::Iota {
            shape: huge.clone(),
            axis: 0,
            dtype: DType::I64,
        },
        &[],
        overflow,
        "iota [usize::MAX, 2]",
    );
    let key = i64s(&[0, 0], &[2]);
    check_err(
        &dev,
        &Op::Random {
            op: ir::RandomOp::Uniform,
            shape: huge.clone(),
            dtype: DType::F32,
        },
        &[&key],
        overflow,
        "random [usize::MAX, 2]",
    );
    let x = zeros_f32(&[1, 1]);
    check_err(
        &dev,
        &Op::Broadcast {
            shape: huge.clone(),
        },
        &[&x],
        overflow,
        "broadcast to [usize::MAX, 2]",
    );
    check_err(
        &dev,
        &Op::Reshape { shape: huge },
        &[&x],
        overflow,
        "reshape to [usize::MAX, 2]",
    );
    check_err(
        &dev,
        &Op::Pad {
            pads: vec![(usize::MAX, 1), (0, 0)],
            value: 0.0,
        },
        &[&x],
        overflow,
        "pad by usize::MAX",
    );
}

#[test]
fn gather_index_out_of_range() {
    let dev = CpuDevice::new();
    let x = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    for (idx, bad) in [(vec![0, 5, 1], 5), (vec![-4, 0], -4)] {
        let n = idx.len();
        let idx = i64s(&idx, &[n]);
        check_err(
            &dev,
            &Op::Gather { axis: 0 },
            &[&x, &idx],
            |e| matches!(e, DeviceError::IndexOutOfRange { op: "gather", index, axis: 0, size: 3 } if *index == bad),
            &format!("gather index {bad} on an axis of 3"),
        );
    }
    let idx = i32s(&[2], &[1]);
    check_err(
        &dev,
        &Op::Gather { axis: 1 },
        &[&x, &idx],
        |e| {
            matches!(
                e,
                DeviceError::IndexOutOfRange {
                    index: 2,
                    axis: 1,
                    size: 2,
                    ..
                }
            )
        },
        "gather i32 index 2 on axis 1 of size 2",
    );
}

#[test]
fn scatter_add_index_out_of_range() {
    let dev = CpuDevice::new();
    let x = zeros_f32(&[3]);
    let idx = i64s(&[1, 3], &[2]);
    let upd = f32s(&[1.0, 1.0], &[2]);
    check_err(
        &dev,
        &Op::ScatterAdd { axis: 0 },
        &[&x, &idx, &upd],
        |e| {
            matches!(
                e,
                DeviceError::IndexOutOfRange {
                    op: "scatter_add",
                    index: 3,
                    axis: 0,
                    size: 3,
                }
            )
        },
        "scatter_add index 3 on an axis of 3",
    );
}

#[test]
fn integer_division_by_zero() {
    let dev = CpuDevice::new();
    for op in [BinaryOp::Rem, BinaryOp::FloorDiv] {
        let a = i32s(&[7, -7, 3], &[3]);
        let b = i32s(&[2, 0, 1], &[3]);
        check_err(
            &dev,
            &Op::Binary { op },
            &[&a, &b],
            |e| matches!(e, DeviceError::DivisionByZero { op: name } if *name == op.name()),
            &format!("i32 {op} by zero"),
        );
        let a = i64s(&[7], &[1]);
        let b = i64s(&[0], &[]);
        check_err(
            &dev,
            &Op::Binary { op },
            &[&a, &b],
            |e| matches!(e, DeviceError::DivisionByZero { .. }),
            &format!("i64 {op} by a zero scalar"),
        );
    }
}

#[test]
fn integer_negative_power() {
    let dev = CpuDevice::new();
    let a = i64s(&[2, 3], &[2]);
    let b = i64s(&[2, -1], &[2]);
    check_err(
        &dev,
        &Op::Binary { op: BinaryOp::Pow },
        &[&a, &b],
        |e| {
            matches!(
                e,
                DeviceError::NegativeIntPower {
                    op: "pow",
                    exponent: -1
                }
            )
        },
        "i64 2 ** -1",
    );
    let a = i32s(&[2], &[1]);
    let b = i32s(&[-3], &[1]);
    check_err(
        &dev,
        &Op::Binary { op: BinaryOp::Pow },
        &[&a, &b],
        |e| matches!(e, DeviceError::NegativeIntPower { exponent: -3, .. }),
        "i32 2 ** -3",
    );
}

/// Other ill-formed calls: wrong arity, bad attributes, bad ranks and channel counts.
#[test]
fn malformed_ops_are_infer_errors() {
    let dev = CpuDevice::new();
    let x = zeros_f32(&[2, 3]);
    let infer = |e: &DeviceError| matches!(e, DeviceError::Infer(_));
    check_err(
        &dev,
        &Op::Binary { op: BinaryOp::Add },
        &[&x],
        |e| matches!(e, DeviceError::Infer(InferError::Arity { found: 1, .. })),
        "add with one operand",
    );
    check_err(
        &dev,
        &Op::Transpose { perm: vec![0, 0] },
        &[&x],
        infer,
        "transpose by [0, 0]",
    );
    check_err(
        &dev,
        &Op::Slice {
            dims: vec![
                SliceDim::full(2),
                SliceDim {
                    start: 1,
                    len: 3,
                    step: 1,
                },
            ],
        },
        &[&x],
        infer,
        "slice past the end",
    );
    check_err(
        &dev,
        &Op::Slice {
            dims: vec![
                SliceDim::full(2),
                SliceDim {
                    start: 0,
                    len: 2,
                    step: -1,
                },
            ],
        },
        &[&x],
        infer,
        "slice before the start",
    );
    check_err(
        &dev,
        &Op::Reduce {
            op: ReduceOp::Sum,
            axes: vec![2],
            keepdims: false,
        },
        &[&x],
        |e| {
            matches!(
                e,
                DeviceError::Infer(InferError::Axis {
                    axis: 2,
                    rank: 2,
                    ..
                })
            )
        },
        "sum over axis 2 of a matrix",
    );
    check_err(
        &dev,
        &Op::Reduce {
            op: ReduceOp::Sum,
            axes: vec![1, 0],
            keepdims: false,
        },
        &[&x],
        infer,
        "unsorted axes",
    );
    let empty = zeros_f32(&[2, 0]);
    check_err(
        &dev,
        &Op::ArgReduce {
            op: ArgOp::ArgMax,
            axis: 1,
            keepdims: false,
        },
        &[&empty],
        infer,
        "argmax over an empty axis",
    );
    let img = zeros_f32(&[1, 3, 5, 5]);
    let w = zeros_f32(&[4, 2, 3, 3]);
    check_err(
        &dev,
        &Op::Conv2d {
            params: Conv2dParams::default(),
        },
        &[&img, &w],
        infer,
        "conv2d with 3 input channels and weights for 2",
    );
    let w = zeros_f32(&[4, 3, 7, 7]);
    check_err(
        &dev,
        &Op::Conv2d {
            params: Conv2dParams::default(),
        },
        &[&img, &w],
        infer,
        "conv2d with a kernel larger than the input",
    );
    let b = Tensor::from_vec(vec![true, false], &[2]).expect("a tensor");
    check_err(
        &dev,
        &Op::Unary {
            op: ir::UnaryOp::Exp,
        },
        &[&b],
        |e| {
            matches!(
                e,
                DeviceError::Infer(InferError::DType {
                    found: DType::Bool,
                    ..
                })
            )
        },
        "exp of bool",
    );
    let i = i32s(&[1, 2], &[2]);
    check_err(
        &dev,
        &Op::Binary { op: BinaryOp::Div },
        &[&i, &i],
        infer,
        "integer div",
    );
}

/// The maximum of an empty set has no value; whatever the kernel does, it must not panic.
#[test]
fn max_over_an_empty_axis_does_not_panic() {
    let dev = CpuDevice::new();
    for dt in [DType::F32, DType::I32, DType::Bool] {
        let x = dev
            .exec(
                &Op::Full {
                    shape: Shape::known(&[3, 0]),
                    dtype: dt,
                    value: 0.0,
                },
                &[],
            )
            .expect("an empty tensor");
        for op in [ReduceOp::Max, ReduceOp::Min] {
            check_no_panic(
                &dev,
                &Op::Reduce {
                    op,
                    axes: vec![1],
                    keepdims: false,
                },
                &[&x],
                &format!("{op} over an empty axis of {dt}"),
            );
        }
    }
}
