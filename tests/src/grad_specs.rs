//! The gradient spec table and an `Emit` over the `f64` reference, for checking the
//! differentiation rules of `autodiff::rules` against finite differences.
//!
//! A [`GradSpec`] is one application of a differentiable primitive with the domain of each
//! operand: values are drawn where the function is smooth (away from the kinks of `abs` and
//! `relu`, the jumps of `rem`, the ties of `maximum`, the poles of `log` and `div`), because
//! a finite difference across a kink measures nothing. [`Tape`] implements `ir::Emit` by
//! evaluating each primitive with [`crate::reference::eval`] and recording it, so a rule's
//! own output can be differentiated again (second order) by [`backprop`], which runs the
//! same rules backwards over the record.

use autodiff::rules;
use ir::{
    BinaryOp, Conv2dParams, DType, Emit, Op, Pool2dParams, PoolOp, ReduceOp, Shape, SliceDim,
    TensorType, UnaryOp,
};

use crate::inputs::Rng;
use crate::reference::{self, RefError, RefTensor, numel};

/// Where an operand's values come from.
#[derive(Clone, Debug)]
pub enum Dom {
    /// Uniform on `[lo, hi)`.
    Uniform(f64, f64),
    /// Uniform magnitude on `[lo, hi)` with a random sign (keeps away from zero).
    Signed(f64, f64),
    /// These exact values (for zeros, ties or indices).
    Values(Vec<f64>),
    /// A random bool tensor.
    Bools,
}

/// One operand of a spec.
#[derive(Clone, Debug)]
pub struct Arg {
    /// Its dtype; only float operands are differentiated.
    pub dtype: DType,
    /// Its dims.
    pub dims: Vec<usize>,
    /// Its values.
    pub dom: Dom,
}

impl Arg {
    /// Draws the operand.
    pub fn sample(&self, rng: &mut Rng) -> RefTensor {
        let n = numel(&self.dims);
        let data = match &self.dom {
            Dom::Uniform(lo, hi) => (0..n).map(|_| lo + (hi - lo) * rng.unit()).collect(),
            Dom::Signed(lo, hi) => (0..n)
                .map(|_| {
                    let m = lo + (hi - lo) * rng.unit();
                    if rng.coin() { m } else { -m }
                })
                .collect(),
            Dom::Values(v) => v.clone(),
            Dom::Bools => (0..n).map(|_| f64::from(u8::from(rng.coin()))).collect(),
        };
        RefTensor::new(self.dtype, &self.dims, data)
    }
}

/// One application of a differentiable primitive, with its operands' domains.
#[derive(Clone, Debug)]
pub struct GradSpec {
    /// A unique name (the primitive's name and a variant).
    pub name: String,
    /// The op applied.
    pub op: Op,
    /// The operands.
    pub args: Vec<Arg>,
    /// Whether the second-order check (the VJP's own VJP) runs.
    pub second_order: bool,
}

fn f64a(dims: &[usize], dom: Dom) -> Arg {
    Arg {
        dtype: DType::F64,
        dims: dims.to_vec(),
        dom,
    }
}

fn u(dims: &[usize], lo: f64, hi: f64) -> Arg {
    f64a(dims, Dom::Uniform(lo, hi))
}

fn idx(dims: &[usize], v: &[f64]) -> Arg {
    Arg {
        dtype: DType::I64,
        dims: dims.to_vec(),
        dom: Dom::Values(v.to_vec()),
    }
}

fn spec(name: &str, op: Op, args: Vec<Arg>) -> GradSpec {
    GradSpec {
        name: name.to_string(),
        op,
        args,
        second_order: true,
    }
}

fn conv_params(stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv2dParams {
    Conv2dParams {
        stride: [stride; 2],
        padding: [padding; 2],
        dilation: [dilation; 2],
        groups,
    }
}

fn pool_params(window: usize, stride: usize, padding: usize) -> Pool2dParams {
    Pool2dParams {
        window: [window; 2],
        stride: [stride; 2],
        padding: [padding; 2],
    }
}

/// The spec table: at least one spec per differentiable primitive.
pub fn specs() -> Vec<GradSpec> {
    let mut v = Vec::new();
    let s23 = [2, 3];
    for &op in UnaryOp::ALL {
        let dom = match op {
            UnaryOp::Abs | UnaryOp::Relu => Dom::Signed(0.1, 2.0),
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt => Dom::Uniform(0.2, 3.0),
            UnaryOp::Log1p => Dom::Uniform(-0.5, 2.0),
            _ => Dom::Uniform(-2.5, 2.5),
        };
        if rules::differentiability(ir::Prim::Unary(op)) == rules::Differentiability::Differentiable
        {
            v.push(spec(op.name(), Op::Unary { op }, vec![f64a(&s23, dom)]));
        }
    }
    // A larger operand takes the random-projection path.
    v.push(spec(
        "tanh_large",
        Op::Unary { op: UnaryOp::Tanh },
        vec![u(&[40, 30], -2.0, 2.0)],
    ));
    let bin = |op| Op::Binary { op };
    v.push(spec(
        "add_broadcast",
        bin(BinaryOp::Add),
        vec![u(&[2, 3], -2.0, 2.0), u(&[3], -2.0, 2.0)],
    ));
    v.push(spec(
        "sub_outer",
        bin(BinaryOp::Sub),
        vec![u(&[2, 1], -2.0, 2.0), u(&[1, 3], -2.0, 2.0)],
    ));
    v.push(spec(
        "mul_scalar",
        bin(BinaryOp::Mul),
        vec![u(&[2, 3], -2.0, 2.0), u(&[], -2.0, 2.0)],
    ));
    v.push(spec(
        "div",
        bin(BinaryOp::Div),
        vec![u(&[2, 3], -2.0, 2.0), f64a(&[2, 3], Dom::Signed(0.5, 2.0))],
    ));
    v.push(spec(
        "rem",
        bin(BinaryOp::Rem),
        vec![u(&[2, 3], 2.2, 2.8), u(&[2, 3], 1.0, 1.05)],
    ));
    v.push(spec(
        "pow",
        bin(BinaryOp::Pow),
        vec![u(&[2, 3], 0.5, 2.0), u(&[3], -1.5, 1.5)],
    ));
    v.push(spec(
        "maximum",
        bin(BinaryOp::Maximum),
        vec![u(&[2, 3], -2.0, 2.0), u(&[2, 3], -2.0, 2.0)],
    ));
    v.push(spec(
        "minimum_broadcast",
        bin(BinaryOp::Minimum),
        vec![u(&[2, 3], -2.0, 2.0), u(&[3], -2.0, 2.0)],
    ));
    v.push(spec(
        "select",
        Op::Select {},
        vec![
            Arg {
                dtype: DType::Bool,
                dims: vec![2, 3],
                dom: Dom::Bools,
            },
            u(&[2, 3], -2.0, 2.0),
            u(&[3], -2.0, 2.0),
        ],
    ));
    let red = |op, axes: &[usize], keepdims| Op::Reduce {
        op,
        axes: axes.to_vec(),
        keepdims,
    };
    v.push(spec(
        "sum",
        red(ReduceOp::Sum, &[1], false),
        vec![u(&[2, 3, 4], -2.0, 2.0)],
    ));
    v.push(spec(
        "prod",
        red(ReduceOp::Prod, &[0, 2], false),
        vec![f64a(&[2, 3, 2], Dom::Signed(0.5, 1.5))],
    ));
    // Groups with no zero, one zero and two zeros. First order only: the rule's weights
    // at a zero treat the other zeros' cofactors as constant, so its own derivative there
    // is not the second derivative of the product (see `autodiff::rules`).
    v.push(GradSpec {
        second_order: false,
        ..spec(
            "prod_zeros",
            red(ReduceOp::Prod, &[1], true),
            vec![f64a(
                &[3, 3],
                Dom::Values(vec![1.5, -0.5, 2.0, 0.0, 1.25, -0.75, 0.0, 0.0, 1.1]),
            )],
        )
    });
    v.push(spec(
        "max",
        red(ReduceOp::Max, &[1], false),
        vec![u(&[2, 3, 4], -2.0, 2.0)],
    ));
    v.push(spec(
        "min_keepdims",
        red(ReduceOp::Min, &[0, 2], true),
        vec![u(&[2, 3, 4], -2.0, 2.0)],
    ));
    v.push(spec(
        "matmul",
        Op::MatMul {},
        vec![u(&[2, 3, 4], -1.0, 1.0), u(&[4, 5], -1.0, 1.0)],
    ));
    v.push(spec(
        "matmul_batch_broadcast",
        Op::MatMul {},
        vec![u(&[2, 1, 2, 3], -1.0, 1.0), u(&[3, 3, 2], -1.0, 1.0)],
    ));
    v.push(spec(
        "matmul_large",
        Op::MatMul {},
        vec![u(&[16, 40], -1.0, 1.0), u(&[40, 32], -1.0, 1.0)],
    ));
    v.push(spec(
        "reshape",
        Op::Reshape {
            shape: Shape::known(&[6, 4]),
        },
        vec![u(&[2, 3, 4], -1.0, 1.0)],
    ));
    v.push(spec(
        "transpose",
        Op::Transpose {
            perm: vec![2, 0, 1],
        },
        vec![u(&[2, 3, 4], -1.0, 1.0)],
    ));
    v.push(spec(
        "broadcast",
        Op::Broadcast {
            shape: Shape::known(&[2, 3, 4]),
        },
        vec![u(&[3, 1], -1.0, 1.0)],
    ));
    let sd = |a: Option<i64>, b: Option<i64>, s: Option<i64>, n: usize| {
        SliceDim::resolve(a, b, s, n).unwrap_or(SliceDim::full(n))
    };
    v.push(spec(
        "slice_strided_reversed",
        Op::Slice {
            dims: vec![
                sd(None, None, Some(-2), 5),
                sd(Some(1), Some(6), Some(2), 6),
            ],
        },
        vec![u(&[5, 6], -1.0, 1.0)],
    ));
    v.push(spec(
        "slice_offsets",
        Op::Slice {
            dims: vec![
                sd(Some(1), Some(3), None, 3),
                sd(Some(-1), Some(0), Some(-3), 7),
                sd(Some(1), None, None, 4),
            ],
        },
        vec![u(&[3, 7, 4], -1.0, 1.0)],
    ));
    v.push(spec(
        "slice_empty",
        Op::Slice {
            dims: vec![sd(Some(2), Some(2), None, 4), SliceDim::full(3)],
        },
        vec![u(&[4, 3], -1.0, 1.0)],
    ));
    v.push(spec(
        "concat",
        Op::Concat { axis: 1 },
        vec![
            u(&[2, 1, 3], -1.0, 1.0),
            u(&[2, 3, 3], -1.0, 1.0),
            u(&[2, 2, 3], -1.0, 1.0),
        ],
    ));
    v.push(spec(
        "pad",
        Op::Pad {
            pads: vec![(1, 2), (0, 1)],
            value: 3.0,
        },
        vec![u(&[2, 3], -1.0, 1.0)],
    ));
    v.push(spec(
        "gather",
        Op::Gather { axis: 1 },
        vec![
            u(&[2, 4, 3], -1.0, 1.0),
            idx(&[2, 3], &[0.0, 3.0, -1.0, 1.0, 1.0, 2.0]),
        ],
    ));
    v.push(spec(
        "scatter_add",
        Op::ScatterAdd { axis: 0 },
        vec![
            u(&[4, 3], -1.0, 1.0),
            idx(&[3], &[2.0, 0.0, 2.0]),
            u(&[3, 3], -1.0, 1.0),
        ],
    ));
    for (name, p, x, w) in [
        (
            "conv2d",
            conv_params(1, 0, 1, 1),
            [1, 2, 4, 4],
            [3, 2, 2, 2],
        ),
        (
            "conv2d_strided_padded",
            conv_params(2, 1, 1, 1),
            [2, 2, 5, 5],
            [3, 2, 3, 3],
        ),
        (
            "conv2d_grouped_dilated",
            conv_params(1, 1, 2, 2),
            [1, 4, 5, 5],
            [2, 2, 2, 2],
        ),
    ] {
        let ohw = |n: usize, k: usize| {
            reference::window_out(n, k, p.stride[0], p.padding[0], p.dilation[0])
        };
        let dy = [x[0], w[0], ohw(x[2], w[2]), ohw(x[3], w[3])];
        v.push(spec(
            name,
            Op::Conv2d { params: p },
            vec![u(&x, -1.0, 1.0), u(&w, -1.0, 1.0)],
        ));
        v.push(spec(
            &format!("{name}_backward_input"),
            Op::Conv2dBackwardInput {
                params: p,
                input_hw: [x[2], x[3]],
            },
            vec![u(&dy, -1.0, 1.0), u(&w, -1.0, 1.0)],
        ));
        v.push(spec(
            &format!("{name}_backward_filter"),
            Op::Conv2dBackwardFilter {
                params: p,
                kernel_hw: [w[2], w[3]],
            },
            vec![u(&x, -1.0, 1.0), u(&dy, -1.0, 1.0)],
        ));
    }
    for (name, op, p) in [
        ("max_pool2d", PoolOp::Max, pool_params(2, 2, 0)),
        (
            "max_pool2d_overlap_padded",
            PoolOp::Max,
            pool_params(3, 2, 1),
        ),
        ("avg_pool2d", PoolOp::Avg, pool_params(2, 2, 0)),
        (
            "avg_pool2d_overlap_padded",
            PoolOp::Avg,
            pool_params(3, 2, 1),
        ),
    ] {
        let x = [1, 2, 5, 5];
        let o = |n: usize| reference::window_out(n, p.window[0], p.stride[0], p.padding[0], 1);
        let dy = [1, 2, o(5), o(5)];
        v.push(spec(
            name,
            Op::Pool2d { op, params: p },
            vec![u(&x, -1.0, 1.0)],
        ));
        v.push(spec(
            &format!("{name}_backward"),
            Op::Pool2dBackward { op, params: p },
            vec![u(&x, -1.0, 1.0), u(&dy, -1.0, 1.0)],
        ));
    }
    // f32 -> f64 is exact, so finite differences in f64 see the identity; the cotangent
    // comes back rounded to f32 (well inside the tolerance).
    v.push(spec(
        "cast_f32_to_f64",
        Op::Cast { dtype: DType::F64 },
        vec![Arg {
            dtype: DType::F32,
            dims: vec![2, 3],
            dom: Dom::Uniform(-1.0, 1.0),
        }],
    ));
    v.push(spec("print", Op::Print {}, vec![u(&[2, 3], -1.0, 1.0)]));
    v
}

/// An `Emit` that evaluates every primitive with the `f64` reference and records it, so a
/// computation made of rules can be run backwards again ([`backprop`]).
#[derive(Debug, Default)]
pub struct Tape {
    /// The value of each recorded node.
    pub vals: Vec<RefTensor>,
    /// How each node was made: `None` for a leaf, else the op and its operands.
    pub nodes: Vec<Option<(Op, Vec<usize>)>>,
}

impl Tape {
    /// Records a leaf (an input).
    pub fn leaf(&mut self, t: RefTensor) -> usize {
        self.vals.push(t);
        self.nodes.push(None);
        self.vals.len() - 1
    }
}

impl Emit for Tape {
    type Val = usize;
    type Err = RefError;

    fn emit(&mut self, op: &Op, args: &[&usize]) -> Result<usize, RefError> {
        let ins: Vec<&RefTensor> = args.iter().map(|&&a| &self.vals[a]).collect();
        let out = reference::eval(op, &ins)?;
        self.vals.push(out);
        self.nodes
            .push(Some((op.clone(), args.iter().map(|&&a| a).collect())));
        Ok(self.vals.len() - 1)
    }

    fn ttype(&self, v: &usize) -> TensorType {
        let t = &self.vals[*v];
        TensorType::known(t.dtype, &t.dims)
    }
}

/// Reverse mode over the tape: the cotangent of every node at or before `out`, given the
/// cotangent `ct` of `out`, computed with `autodiff::rules::vjp` (which records on the same
/// tape, so the result can be differentiated once more).
pub fn backprop(tape: &mut Tape, out: usize, ct: usize) -> Result<Vec<Option<usize>>, RefError> {
    let mut cts: Vec<Option<usize>> = vec![None; out + 1];
    cts[out] = Some(ct);
    for i in (0..=out).rev() {
        let (Some(c), Some((op, args))) = (cts[i], tape.nodes[i].clone()) else {
            continue;
        };
        let ins = args.clone();
        let grads = rules::vjp(tape, &op, &ins, &i, &c)?;
        for (a, g) in args.into_iter().zip(grads) {
            if let Some(g) = g {
                cts[a] = Some(match cts[a] {
                    None => g,
                    Some(prev) => tape.add(&prev, &g)?,
                });
            }
        }
    }
    Ok(cts)
}
