//! One VJP (reverse mode) and one JVP (forward mode) rule per differentiable primitive.
//!
//! The rules never compute anything themselves: they ask an [`Emit`] to apply primitives, so
//! the same rule serves the eager tape (which computes on device tensors, and records again
//! under an outer `grad`, giving higher-order derivatives) and the staged IR transform. Every
//! rule is itself written with differentiable primitives, so a rule's output can be
//! differentiated again.
//!
//! Conventions, fixed once for every rule:
//! - Only floating-point values carry derivatives. An integer or `bool` operand (an index, a
//!   condition, an integer tensor) gets no cotangent (`None`), and an integer or `bool`
//!   result has no tangent.
//! - `None` stands for a zero cotangent or tangent: rules skip the work instead of building
//!   zeros.
//! - Piecewise-constant functions (`sign`, `floor`, `ceil`, `round`, `floor_div`) are declared
//!   [`Differentiability::NonDifferentiable`]: their derivative is zero wherever it exists,
//!   and the `None` cotangent says exactly that without emitting a zero tensor.
//! - At a kink the rules pick one value, like PyTorch and JAX: `relu'(0) = 0`, `|x|'(0) = 0`.
//!   `maximum`/`minimum` split the cotangent equally between two tied operands (JAX's
//!   choice), and a `max`/`min` reduction divides it equally among the tied maxima.
//! - A broadcast operand's cotangent is summed back to the operand's shape ([`Emit::sum_to`]).

use ir::{
    BinaryOp, CmpOp, Conv2dParams, DType, Emit, Op, Pool2dParams, PoolOp, Prim, ReduceOp, SliceDim,
    UnaryOp,
};

/// Whether and how a primitive is differentiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Differentiability {
    /// It has VJP and JVP rules; its floating-point operands get gradients.
    Differentiable,
    /// Its derivative is zero or undefined everywhere (comparisons, integer and logical
    /// ops, piecewise-constant functions, random numbers, constants): no operand ever gets a
    /// gradient through it.
    NonDifferentiable,
}

/// Exhaustive over every `ir::Prim` (no `_ =>` arm): adding a primitive must fail to
/// compile until it is classified.
pub fn differentiability(prim: Prim) -> Differentiability {
    use Differentiability::{Differentiable as D, NonDifferentiable as N};
    match prim {
        Prim::Unary(op) => match op {
            UnaryOp::Neg
            | UnaryOp::Abs
            | UnaryOp::Relu
            | UnaryOp::Exp
            | UnaryOp::Log
            | UnaryOp::Log1p
            | UnaryOp::Expm1
            | UnaryOp::Sqrt
            | UnaryOp::Rsqrt
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tanh
            | UnaryOp::Sigmoid
            | UnaryOp::Gelu
            | UnaryOp::Silu
            | UnaryOp::Softplus
            | UnaryOp::Erf => D,
            UnaryOp::Sign
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Round
            | UnaryOp::Not
            | UnaryOp::IsNan
            | UnaryOp::IsFinite => N,
        },
        Prim::Binary(op) => match op {
            BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Rem
            | BinaryOp::Pow
            | BinaryOp::Maximum
            | BinaryOp::Minimum => D,
            BinaryOp::FloorDiv | BinaryOp::And | BinaryOp::Or => N,
        },
        Prim::Reduce(op) => match op {
            ReduceOp::Sum | ReduceOp::Prod | ReduceOp::Max | ReduceOp::Min => D,
        },
        Prim::Pool2d(op) | Prim::Pool2dBackward(op) => match op {
            PoolOp::Max | PoolOp::Avg => D,
        },
        Prim::Select
        | Prim::MatMul
        | Prim::Reshape
        | Prim::Transpose
        | Prim::Broadcast
        | Prim::Slice
        | Prim::Concat
        | Prim::Pad
        | Prim::Gather
        | Prim::ScatterAdd
        | Prim::Conv2d
        | Prim::Conv2dBackwardInput
        | Prim::Conv2dBackwardFilter
        | Prim::Cast
        | Prim::Print => D,
        Prim::Compare(_)
        | Prim::ArgReduce(_)
        | Prim::Random(_)
        | Prim::Iota
        | Prim::Full
        | Prim::StopGradient => N,
    }
}

/// A local derivative of an elementwise op: the factor a cotangent or tangent is multiplied
/// (or divided) by. Naming the trivial factors saves emitting multiplications by one.
enum Factor<V> {
    /// Multiply by one.
    One,
    /// Multiply by minus one.
    MinusOne,
    /// Multiply by this value.
    By(V),
    /// Divide by this value (`ct / x` for `log` reads better and rounds better than
    /// `ct * (1 / x)`).
    Over(V),
    /// Keep the value where this boolean mask holds and zero it elsewhere: multiplying by a
    /// 0/1 indicator, in one `select` instead of a cast and a product.
    Where(V),
}

fn apply<E: Emit>(e: &mut E, f: &Factor<E::Val>, v: &E::Val) -> Result<E::Val, E::Err> {
    match f {
        Factor::One => Ok(v.clone()),
        Factor::MinusOne => e.neg(v),
        Factor::By(p) => e.mul(v, p),
        Factor::Over(p) => e.div(v, p),
        Factor::Where(mask) => {
            let zero = konst(e, v, 0.0)?;
            e.select(mask, v, &zero)
        }
    }
}

fn is_float<E: Emit>(e: &E, v: &E::Val) -> bool {
    e.dtype(v).is_float()
}

/// A constant in the dtype of `like`, rank 0 (binary ops broadcast it).
fn konst<E: Emit>(e: &mut E, like: &E::Val, c: f64) -> Result<E::Val, E::Err> {
    let dt = e.dtype(like);
    e.scalar(dt, c)
}

/// `1.0` where `op(x, y)` holds, else `0.0`, in the dtype `dt`.
fn indicator<E: Emit>(
    e: &mut E,
    op: CmpOp,
    x: &E::Val,
    y: &E::Val,
    dt: DType,
) -> Result<E::Val, E::Err> {
    let c = e.compare(op, x, y)?;
    e.cast(&c, dt)
}

/// The local derivative `f'(x)` of a differentiable unary op, from its operand `x` and its
/// result `y`; `None` for the ops with no derivative.
fn unary_factor<E: Emit>(
    e: &mut E,
    op: UnaryOp,
    x: &E::Val,
    y: &E::Val,
) -> Result<Option<Factor<E::Val>>, E::Err> {
    let f = match op {
        // d/dx -x = -1
        UnaryOp::Neg => Factor::MinusOne,
        // d/dx |x| = 1 where x >= 0 and -1 elsewhere, as `jax.grad` takes it: 1 at 0 (and
        // at -0), -1 at NaN. PyTorch's sign(x) gives 0 at 0; LANGUAGE.md follows JAX.
        UnaryOp::Abs => {
            let zero = konst(e, x, 0.0)?;
            let one = konst(e, x, 1.0)?;
            let minus_one = konst(e, x, -1.0)?;
            let up = e.compare(CmpOp::Ge, x, &zero)?;
            Factor::By(e.select(&up, &one, &minus_one)?)
        }
        // d/dx relu(x) = 1 if x > 0 else 0 (0 at the kink, like PyTorch)
        UnaryOp::Relu => {
            let zero = konst(e, x, 0.0)?;
            Factor::Where(e.compare(CmpOp::Gt, x, &zero)?)
        }
        // d/dx e^x = e^x
        UnaryOp::Exp => Factor::By(y.clone()),
        // d/dx ln x = 1 / x
        UnaryOp::Log => Factor::Over(x.clone()),
        // d/dx ln(1 + x) = 1 / (1 + x)
        UnaryOp::Log1p => {
            let one = konst(e, x, 1.0)?;
            Factor::Over(e.add(x, &one)?)
        }
        // d/dx (e^x - 1) = e^x = expm1(x) + 1
        UnaryOp::Expm1 => {
            let one = konst(e, y, 1.0)?;
            Factor::By(e.add(y, &one)?)
        }
        // d/dx sqrt(x) = 1 / (2 sqrt(x))
        UnaryOp::Sqrt => Factor::Over(e.add(y, y)?),
        // d/dx x^(-1/2) = -1/2 x^(-3/2) = -1/2 * rsqrt(x) / x
        UnaryOp::Rsqrt => {
            let q = e.div(y, x)?;
            Factor::By(e.scale(&q, -0.5)?)
        }
        // d/dx sin x = cos x
        UnaryOp::Sin => Factor::By(e.unary(UnaryOp::Cos, x)?),
        // d/dx cos x = -sin x
        UnaryOp::Cos => {
            let s = e.unary(UnaryOp::Sin, x)?;
            Factor::By(e.neg(&s)?)
        }
        // d/dx tanh(x) = 1 - tanh(x)^2
        UnaryOp::Tanh => {
            let one = konst(e, y, 1.0)?;
            let y2 = e.mul(y, y)?;
            Factor::By(e.sub(&one, &y2)?)
        }
        // d/dx sigmoid(x) = sigmoid(x) (1 - sigmoid(x))
        UnaryOp::Sigmoid => {
            let one = konst(e, y, 1.0)?;
            let c = e.sub(&one, y)?;
            Factor::By(e.mul(y, &c)?)
        }
        // d/dx x Φ(x) = Φ(x) + x φ(x), Φ(x) = (1 + erf(x/√2)) / 2, φ(x) = e^(-x²/2) / √(2π)
        UnaryOp::Gelu => {
            let xs = e.scale(x, std::f64::consts::FRAC_1_SQRT_2)?;
            let erf = e.unary(UnaryOp::Erf, &xs)?;
            let one = konst(e, x, 1.0)?;
            let cdf2 = e.add(&one, &erf)?;
            let cdf = e.scale(&cdf2, 0.5)?;
            let x2 = e.mul(x, x)?;
            let ex = e.scale(&x2, -0.5)?;
            let g = e.unary(UnaryOp::Exp, &ex)?;
            let pdf = e.scale(&g, 1.0 / (2.0 * std::f64::consts::PI).sqrt())?;
            let xpdf = e.mul(x, &pdf)?;
            Factor::By(e.add(&cdf, &xpdf)?)
        }
        // d/dx x s(x) = s(x) (1 + x (1 - s(x))), s = sigmoid
        UnaryOp::Silu => {
            let s = e.unary(UnaryOp::Sigmoid, x)?;
            let one = konst(e, x, 1.0)?;
            let c = e.sub(&one, &s)?;
            let xc = e.mul(x, &c)?;
            let t = e.add(&one, &xc)?;
            Factor::By(e.mul(&s, &t)?)
        }
        // d/dx ln(1 + e^x) = sigmoid(x)
        UnaryOp::Softplus => Factor::By(e.unary(UnaryOp::Sigmoid, x)?),
        // d/dx erf(x) = 2/√π e^(-x²)
        UnaryOp::Erf => {
            let x2 = e.mul(x, x)?;
            let nx2 = e.neg(&x2)?;
            let g = e.unary(UnaryOp::Exp, &nx2)?;
            Factor::By(e.scale(&g, std::f64::consts::FRAC_2_SQRT_PI)?)
        }
        // Piecewise constant (zero derivative) or not real-valued: no factor.
        UnaryOp::Sign
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::Not
        | UnaryOp::IsNan
        | UnaryOp::IsFinite => return Ok(None),
    };
    Ok(Some(f))
}

/// The local derivatives `(∂out/∂a, ∂out/∂b)` of a differentiable binary op, broadcastable
/// to the result's shape; `None` for the ops with no derivative.
#[allow(clippy::type_complexity)]
fn binary_factors<E: Emit>(
    e: &mut E,
    op: BinaryOp,
    a: &E::Val,
    b: &E::Val,
    out: &E::Val,
    need: (bool, bool),
) -> Result<Option<(Factor<E::Val>, Factor<E::Val>)>, E::Err> {
    let dt = e.dtype(out);
    let (need_a, need_b) = need;
    // A factor nobody will apply is not built (a constant divisor's `-a / b²`, say); its
    // slot holds `One`, which no caller reads.
    let fs = match op {
        // ∂(a + b) = (1, 1)
        BinaryOp::Add => (Factor::One, Factor::One),
        // ∂(a - b) = (1, -1)
        BinaryOp::Sub => (Factor::One, Factor::MinusOne),
        // ∂(a b) = (b, a)
        BinaryOp::Mul => (Factor::By(b.clone()), Factor::By(a.clone())),
        // ∂(a / b) = (1 / b, -a / b² = -(a / b) / b)
        BinaryOp::Div => {
            let fb = if need_b {
                let q = e.div(out, b)?;
                Factor::By(e.neg(&q)?)
            } else {
                Factor::One
            };
            (Factor::Over(b.clone()), fb)
        }
        // a rem b = a - b floor(a / b), so ∂ = (1, -floor(a / b)) away from the jumps
        BinaryOp::Rem => {
            let fb = if need_b {
                let q = e.div(a, b)?;
                let fl = e.unary(UnaryOp::Floor, &q)?;
                Factor::By(e.neg(&fl)?)
            } else {
                Factor::One
            };
            (Factor::One, fb)
        }
        // ∂(a^b) = (b a^(b-1), a^b ln a). Like JAX, the a-derivative is 0 where b == 0 (so
        // 0^0 has none), and the b-derivative is 0 where a == 0 (where ln a is -inf); for
        // a < 0 ln a is NaN, as the real derivative does not exist.
        BinaryOp::Pow => {
            let zero = konst(e, out, 0.0)?;
            let fa = if need_a {
                let one = konst(e, out, 1.0)?;
                let bm1 = e.sub(b, &one)?;
                let p = e.binary(BinaryOp::Pow, a, &bm1)?;
                let da = e.mul(b, &p)?;
                let b0 = e.compare(CmpOp::Eq, b, &zero)?;
                Factor::By(e.select(&b0, &zero, &da)?)
            } else {
                Factor::One
            };
            let fb = if need_b {
                let ln = e.unary(UnaryOp::Log, a)?;
                let db = e.mul(out, &ln)?;
                let a0 = e.compare(CmpOp::Eq, a, &zero)?;
                Factor::By(e.select(&a0, &zero, &db)?)
            } else {
                Factor::One
            };
            (fa, fb)
        }
        // ∂max(a, b) = ([a > b] + [a = b]/2, [a < b] + [a = b]/2): ties split equally (JAX)
        // ∂min(a, b) = ([a < b] + [a = b]/2, [a > b] + [a = b]/2)
        BinaryOp::Maximum | BinaryOp::Minimum => {
            let (win_a, win_b) = if op == BinaryOp::Maximum {
                (CmpOp::Gt, CmpOp::Lt)
            } else {
                (CmpOp::Lt, CmpOp::Gt)
            };
            let eq = indicator(e, CmpOp::Eq, a, b, dt)?;
            let half = e.scale(&eq, 0.5)?;
            let side = |e: &mut E, need: bool, win: CmpOp| -> Result<_, E::Err> {
                if !need {
                    return Ok(Factor::One);
                }
                let w = indicator(e, win, a, b, dt)?;
                Ok(Factor::By(e.add(&w, &half)?))
            };
            (side(e, need_a, win_a)?, side(e, need_b, win_b)?)
        }
        BinaryOp::FloorDiv | BinaryOp::And | BinaryOp::Or => return Ok(None),
    };
    Ok(Some(fs))
}

/// The dims of `x` with `axes` kept as size 1 (the shape a `keepdims` reduction gives).
fn kept_dims(dims: &[usize], axes: &[usize]) -> Vec<usize> {
    dims.iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect()
}

/// A reduction's result (or cotangent) `v` broadcast back over the reduced input's shape.
fn expand<E: Emit>(
    e: &mut E,
    v: &E::Val,
    x_dims: &[usize],
    axes: &[usize],
) -> Result<E::Val, E::Err> {
    let kept = e.reshape(v, &kept_dims(x_dims, axes))?;
    e.broadcast_to(&kept, x_dims)
}

/// The weights `∂out/∂x` of a reduction, shaped like `x`; `None` for a sum (all ones).
fn reduce_weights<E: Emit>(
    e: &mut E,
    op: ReduceOp,
    x: &E::Val,
    out: &E::Val,
    axes: &[usize],
) -> Result<Option<E::Val>, E::Err> {
    let dt = e.dtype(x);
    let kept = kept_dims(&e.dims(x), axes);
    match op {
        // ∂Σx/∂x_i = 1
        ReduceOp::Sum => Ok(None),
        // ∂Πx/∂x_i = Π_{j≠i} x_j, computed without dividing by zero: with no zero in the
        // group it is Π/x_i; with exactly one zero it is the product of the others at the
        // zero and 0 elsewhere; with two or more zeros it is 0 everywhere.
        ReduceOp::Prod => {
            let zero = konst(e, x, 0.0)?;
            let one = konst(e, x, 1.0)?;
            let is0 = e.compare(CmpOp::Eq, x, &zero)?;
            let z = e.cast(&is0, dt)?;
            let xnz = e.select(&is0, &one, x)?;
            let cnt = e.reduce_sum(&z, axes, true)?;
            let pnz = e.reduce(ReduceOp::Prod, &xnz, axes, true)?;
            let none = e.div(&pnz, &xnz)?;
            let single = e.mul(&z, &pnz)?;
            let c0 = e.compare(CmpOp::Eq, &cnt, &zero)?;
            let c1 = e.compare(CmpOp::Eq, &cnt, &one)?;
            let rest = e.select(&c1, &single, &zero)?;
            Ok(Some(e.select(&c0, &none, &rest)?))
        }
        // ∂max(x)/∂x_i = [x_i = max] / #{j : x_j = max}: the ties share equally (JAX).
        // The same holds for min.
        ReduceOp::Max | ReduceOp::Min => {
            let m = e.reshape(out, &kept)?;
            let mask = indicator(e, CmpOp::Eq, x, &m, dt)?;
            let cnt = e.reduce_sum(&mask, axes, true)?;
            Ok(Some(e.div(&mask, &cnt)?))
        }
    }
}

/// The cotangent of a strided slice's operand: `ct` put back at the taken positions of a
/// zero tensor of `x_dims`. Negative steps are reversed first, strides are spread out by
/// interleaving zeros (reshape, pad, reshape), and the offsets become padding.
fn unslice<E: Emit>(
    e: &mut E,
    ct: &E::Val,
    x_dims: &[usize],
    dims: &[SliceDim],
) -> Result<E::Val, E::Err> {
    let dt = e.dtype(ct);
    if dims.iter().any(|d| d.len == 0) {
        return e.full(x_dims, dt, 0.0);
    }
    // Walking an axis backwards is walking it forwards from the last taken element.
    let mut v = ct.clone();
    if dims.iter().any(|d| d.step < 0) {
        let rev: Vec<SliceDim> = dims
            .iter()
            .map(|d| {
                if d.step < 0 {
                    SliceDim {
                        start: d.len - 1,
                        len: d.len,
                        step: -1,
                    }
                } else {
                    SliceDim::full(d.len)
                }
            })
            .collect();
        v = e.slice(&v, &rev)?;
    }
    let mut pads = Vec::with_capacity(dims.len());
    for (axis, d) in dims.iter().enumerate() {
        let s = d.step.unsigned_abs();
        let first = if d.step < 0 {
            d.start - (d.len - 1) * s
        } else {
            d.start
        };
        if s > 1 {
            // [.., len, ..] -> [.., len, 1, ..] -> pad to [.., len, s, ..] -> [.., len*s, ..],
            // then keep the (len-1)*s + 1 leading elements so nothing runs past the end.
            let cur = e.dims(&v);
            let mut split = cur[..=axis].to_vec();
            split.push(1);
            split.extend_from_slice(&cur[axis + 1..]);
            let r = e.reshape(&v, &split)?;
            let mut p = vec![(0, 0); split.len()];
            p[axis + 1] = (0, s - 1);
            let padded = e.pad(&r, &p, 0.0)?;
            let mut merged = cur.clone();
            merged[axis] = d.len * s;
            let m = e.reshape(&padded, &merged)?;
            let mut keep: Vec<SliceDim> = merged.iter().map(|&n| SliceDim::full(n)).collect();
            keep[axis].len = (d.len - 1) * s + 1;
            v = e.slice(&m, &keep)?;
        }
        let taken = (d.len - 1) * s + 1;
        pads.push((first, x_dims[axis] - first - taken));
    }
    e.pad(&v, &pads, 0.0)
}

/// The padding of a pooling as a `pad` of the spatial axes of an NCHW tensor.
fn pool_pads(p: &Pool2dParams) -> Vec<(usize, usize)> {
    vec![
        (0, 0),
        (0, 0),
        (p.padding[0], p.padding[0]),
        (p.padding[1], p.padding[1]),
    ]
}

/// The linear map `J` of max pooling at `x` applied to `t`: each window's value of `t` at
/// the window's first maximum of `x` (the position `max_pool2d_backward` routes to). It is
/// the JVP of max pooling and the transpose of `max_pool2d_backward` in `dy`. Each window
/// tap is a strided slice of the padded input; walking the taps from last to first and
/// keeping `t` where `x` equals the maximum leaves the first maximum's value.
fn max_pool_pick<E: Emit>(
    e: &mut E,
    x: &E::Val,
    out: &E::Val,
    t: &E::Val,
    p: &Pool2dParams,
) -> Result<E::Val, E::Err> {
    let pads = pool_pads(p);
    let xp = e.pad(x, &pads, f64::NEG_INFINITY)?;
    let tp = e.pad(t, &pads, 0.0)?;
    let od = e.dims(out);
    let mut acc = e.zeros_like(out)?;
    for k in (0..p.window[0] * p.window[1]).rev() {
        let (i, j) = (k / p.window[1], k % p.window[1]);
        let sl = [
            SliceDim::full(od[0]),
            SliceDim::full(od[1]),
            SliceDim {
                start: i,
                len: od[2],
                step: p.stride[0] as isize,
            },
            SliceDim {
                start: j,
                len: od[3],
                step: p.stride[1] as isize,
            },
        ];
        let xk = e.slice(&xp, &sl)?;
        let tk = e.slice(&tp, &sl)?;
        let hit = e.compare(CmpOp::Eq, &xk, out)?;
        acc = e.select(&hit, &tk, &acc)?;
    }
    Ok(acc)
}

fn hw<E: Emit>(e: &E, v: &E::Val) -> [usize; 2] {
    let d = e.dims(v);
    [d[2], d[3]]
}

fn conv<E: Emit>(
    e: &mut E,
    x: &E::Val,
    w: &E::Val,
    params: Conv2dParams,
) -> Result<E::Val, E::Err> {
    e.emit(&Op::Conv2d { params }, &[x, w])
}

fn conv_bi<E: Emit>(
    e: &mut E,
    dy: &E::Val,
    w: &E::Val,
    params: Conv2dParams,
    input_hw: [usize; 2],
) -> Result<E::Val, E::Err> {
    e.emit(&Op::Conv2dBackwardInput { params, input_hw }, &[dy, w])
}

fn conv_bf<E: Emit>(
    e: &mut E,
    x: &E::Val,
    dy: &E::Val,
    params: Conv2dParams,
    kernel_hw: [usize; 2],
) -> Result<E::Val, E::Err> {
    e.emit(&Op::Conv2dBackwardFilter { params, kernel_hw }, &[x, dy])
}

/// Adds `v` to an optional running sum.
fn accumulate<E: Emit>(
    e: &mut E,
    acc: Option<E::Val>,
    v: E::Val,
) -> Result<Option<E::Val>, E::Err> {
    Ok(Some(match acc {
        None => v,
        Some(a) => e.add(&a, &v)?,
    }))
}

/// Reverse mode: the cotangents of the inputs given the output's cotangent `ct`, `None`
/// for an input that gets no gradient (integer/bool operands, indices, non-differentiable
/// ops). `inputs` and `output` are the primal values of the recorded application.
pub fn vjp<E: Emit>(
    e: &mut E,
    op: &Op,
    inputs: &[E::Val],
    output: &E::Val,
    ct: &E::Val,
) -> Result<Vec<Option<E::Val>>, E::Err> {
    vjp_some(e, op, inputs, output, ct, &vec![true; inputs.len()])
}

/// [`vjp`] for the inputs where `needed` holds only: the cotangent of an operand that no
/// gradient flows back to (a constant, data) is not computed, which for `x @ w` with `x`
/// the data saves a whole matrix product.
pub fn vjp_some<E: Emit>(
    e: &mut E,
    op: &Op,
    inputs: &[E::Val],
    output: &E::Val,
    ct: &E::Val,
    needed: &[bool],
) -> Result<Vec<Option<E::Val>>, E::Err> {
    let n = inputs.len();
    let mut out: Vec<Option<E::Val>> = vec![None; n];
    if inputs.is_empty()
        || differentiability(op.prim()) == Differentiability::NonDifferentiable
        || !is_float(e, output)
    {
        return Ok(out);
    }
    let x = &inputs[0];
    let wants =
        |e: &E, i: usize| needed.get(i).copied().unwrap_or(false) && is_float(e, &inputs[i]);
    match op {
        Op::Unary { op } => {
            if let Some(f) = unary_factor(e, *op, x, output)? {
                out[0] = Some(apply(e, &f, ct)?);
            }
        }
        Op::Binary { op } => {
            let (a, b) = (&inputs[0], &inputs[1]);
            let need = (wants(e, 0), wants(e, 1));
            if let Some((fa, fb)) = binary_factors(e, *op, a, b, output, need)? {
                if wants(e, 0) {
                    let ga = apply(e, &fa, ct)?;
                    out[0] = Some(e.sum_to(&ga, &e.dims(a))?);
                }
                if wants(e, 1) {
                    let gb = apply(e, &fb, ct)?;
                    out[1] = Some(e.sum_to(&gb, &e.dims(b))?);
                }
            }
        }
        // select(c, a, b): the cotangent goes to `a` where c holds and to `b` elsewhere.
        Op::Select {} => {
            let c = &inputs[0];
            let zero = konst(e, ct, 0.0)?;
            if wants(e, 1) {
                let ga = e.select(c, ct, &zero)?;
                out[1] = Some(e.sum_to(&ga, &e.dims(&inputs[1]))?);
            }
            if wants(e, 2) {
                let gb = e.select(c, &zero, ct)?;
                out[2] = Some(e.sum_to(&gb, &e.dims(&inputs[2]))?);
            }
        }
        // x̄_i = ȳ ∂y/∂x_i, ȳ broadcast back over the reduced axes.
        Op::Reduce { op, axes, .. } => {
            let xd = e.dims(x);
            let g = expand(e, ct, &xd, axes)?;
            out[0] = Some(match reduce_weights(e, *op, x, output, axes)? {
                None => g,
                Some(w) => e.mul(&g, &w)?,
            });
        }
        // C = A B: Ā = C̄ Bᵀ, B̄ = Aᵀ C̄, each summed over the batch dims it was broadcast on.
        Op::MatMul {} => {
            let (a, b) = (&inputs[0], &inputs[1]);
            if wants(e, 0) {
                let bt = e.transpose_last2(b)?;
                let ga = e.matmul(ct, &bt)?;
                out[0] = Some(e.sum_to(&ga, &e.dims(a))?);
            }
            if wants(e, 1) {
                let at = e.transpose_last2(a)?;
                let gb = e.matmul(&at, ct)?;
                out[1] = Some(e.sum_to(&gb, &e.dims(b))?);
            }
        }
        // Movement ops are linear; their VJPs are their transposes.
        Op::Reshape { .. } => {
            let xd = e.dims(x);
            out[0] = Some(e.reshape(ct, &xd)?);
        }
        Op::Transpose { perm } => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            out[0] = Some(e.transpose(ct, &inv)?);
        }
        Op::Broadcast { .. } => {
            let xd = e.dims(x);
            out[0] = Some(e.sum_to(ct, &xd)?);
        }
        Op::Slice { dims } => {
            let xd = e.dims(x);
            out[0] = Some(unslice(e, ct, &xd, dims)?);
        }
        Op::Concat { axis } => {
            let cd = e.dims(ct);
            let mut start = 0;
            for (i, part) in inputs.iter().enumerate() {
                let len = e.dims(part)[*axis];
                let mut sl: Vec<SliceDim> = cd.iter().map(|&d| SliceDim::full(d)).collect();
                sl[*axis] = SliceDim {
                    start,
                    len,
                    step: 1,
                };
                start += len;
                if wants(e, i) {
                    out[i] = Some(e.slice(ct, &sl)?);
                }
            }
        }
        // The padding is constant; the operand's cotangent is the middle of ȳ.
        Op::Pad { pads, .. } => {
            let xd = e.dims(x);
            let sl: Vec<SliceDim> = xd
                .iter()
                .zip(pads)
                .map(|(&n, &(before, _))| SliceDim {
                    start: before,
                    len: n,
                    step: 1,
                })
                .collect();
            out[0] = Some(e.slice(ct, &sl)?);
        }
        // y = take(x, idx): x̄ = scatter_add(0, idx, ȳ) (repeated indices accumulate).
        Op::Gather { axis } => {
            let z = e.zeros_like(x)?;
            out[0] = Some(e.emit(&Op::ScatterAdd { axis: *axis }, &[&z, &inputs[1], ct])?);
        }
        // y = x + scatter(idx, u): x̄ = ȳ, ū = take(ȳ, idx).
        Op::ScatterAdd { axis } => {
            out[0] = Some(ct.clone());
            if wants(e, 2) {
                out[2] = Some(e.emit(&Op::Gather { axis: *axis }, &[ct, &inputs[1]])?);
            }
        }
        // y = conv(x, w): x̄ = conv_backward_input(ȳ, w), w̄ = conv_backward_filter(x, ȳ).
        Op::Conv2d { params } => {
            let (xv, w) = (&inputs[0], &inputs[1]);
            let (xhw, whw) = (hw(e, xv), hw(e, w));
            if wants(e, 0) {
                out[0] = Some(conv_bi(e, ct, w, *params, xhw)?);
            }
            if wants(e, 1) {
                out[1] = Some(conv_bf(e, xv, ct, *params, whw)?);
            }
        }
        // dx = BI(dy, w) is bilinear and BI(·, w) = conv(·, w)ᵀ, so <x̄, BI(dy, w)> =
        // <conv(x̄, w), dy>: dy-bar = conv(x̄, w) and w̄ = BF(x̄, dy).
        Op::Conv2dBackwardInput { params, .. } => {
            let (dy, w) = (&inputs[0], &inputs[1]);
            let whw = hw(e, w);
            if wants(e, 0) {
                out[0] = Some(conv(e, ct, w, *params)?);
            }
            if wants(e, 1) {
                out[1] = Some(conv_bf(e, ct, dy, *params, whw)?);
            }
        }
        // dw = BF(x, dy) with <w̄, BF(x, dy)> = <conv(x, w̄), dy>: dy-bar = conv(x, w̄) and
        // x̄ = BI(dy, w̄).
        Op::Conv2dBackwardFilter { params, .. } => {
            let (xv, dy) = (&inputs[0], &inputs[1]);
            let xhw = hw(e, xv);
            if wants(e, 0) {
                out[0] = Some(conv_bi(e, dy, ct, *params, xhw)?);
            }
            if wants(e, 1) {
                out[1] = Some(conv(e, xv, ct, *params)?);
            }
        }
        // y = pool(x): x̄ = pool_backward(x, ȳ).
        Op::Pool2d { op, params } => {
            out[0] = Some(e.emit(
                &Op::Pool2dBackward {
                    op: *op,
                    params: *params,
                },
                &[x, ct],
            )?);
        }
        // dx = pool_backward(x, dy) is linear in dy and piecewise constant in x (x only
        // chooses where max pooling routes), so x̄ = 0 and dy-bar is the transpose: average
        // pooling for avg, the pick at each window's first maximum for max.
        Op::Pool2dBackward { op, params } => match op {
            PoolOp::Avg => {
                out[1] = Some(e.emit(
                    &Op::Pool2d {
                        op: PoolOp::Avg,
                        params: *params,
                    },
                    &[ct],
                )?);
            }
            PoolOp::Max => {
                let y = e.emit(
                    &Op::Pool2d {
                        op: PoolOp::Max,
                        params: *params,
                    },
                    &[x],
                )?;
                out[1] = Some(max_pool_pick(e, x, &y, ct, params)?);
            }
        },
        // A float-to-float cast is the identity up to rounding: cast ȳ back.
        Op::Cast { .. } => {
            if wants(e, 0) {
                let dt = e.dtype(x);
                out[0] = Some(e.cast(ct, dt)?);
            }
        }
        // print is the identity.
        Op::Print {} => out[0] = Some(ct.clone()),
        // stop_gradient's derivative is zero by definition.
        Op::Compare { .. }
        | Op::ArgReduce { .. }
        | Op::Random { .. }
        | Op::Iota { .. }
        | Op::Full { .. }
        | Op::StopGradient {} => {}
    }
    // An integer or bool operand never gets a cotangent, whatever the op.
    for (i, g) in out.iter_mut().enumerate() {
        if !wants(e, i) {
            *g = None;
        }
    }
    Ok(out)
}

/// Forward mode: the output's tangent given the inputs' tangents (`None` = zero).
/// `None` when no input has a tangent or the op is not differentiable.
pub fn jvp<E: Emit>(
    e: &mut E,
    op: &Op,
    inputs: &[E::Val],
    output: &E::Val,
    tangents: &[Option<E::Val>],
) -> Result<Option<E::Val>, E::Err> {
    if inputs.is_empty()
        || differentiability(op.prim()) == Differentiability::NonDifferentiable
        || !is_float(e, output)
    {
        return Ok(None);
    }
    // Tangents of integer or bool operands are ignored: they carry no derivative.
    let t: Vec<Option<E::Val>> = tangents
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.clone()
                .filter(|_| i < inputs.len() && is_float(e, &inputs[i]))
        })
        .collect();
    if t.iter().all(Option::is_none) {
        return Ok(None);
    }
    let x = &inputs[0];
    let od = e.dims(output);
    let tan = |i: usize| t.get(i).cloned().flatten();
    let res = match op {
        Op::Unary { op } => match (unary_factor(e, *op, x, output)?, tan(0)) {
            (Some(f), Some(tx)) => Some(apply(e, &f, &tx)?),
            _ => None,
        },
        Op::Binary { op } => {
            let (a, b) = (&inputs[0], &inputs[1]);
            let has = |i: usize| t.get(i).is_some_and(Option::is_some);
            let need = (has(0), has(1));
            match binary_factors(e, *op, a, b, output, need)? {
                None => None,
                Some((fa, fb)) => {
                    let mut acc = None;
                    if let Some(ta) = tan(0) {
                        let v = apply(e, &fa, &ta)?;
                        acc = accumulate(e, acc, v)?;
                    }
                    if let Some(tb) = tan(1) {
                        let v = apply(e, &fb, &tb)?;
                        acc = accumulate(e, acc, v)?;
                    }
                    acc
                }
            }
        }
        Op::Select {} => {
            let c = &inputs[0];
            let ta = match tan(1) {
                Some(v) => v,
                None => konst(e, output, 0.0)?,
            };
            let tb = match tan(2) {
                Some(v) => v,
                None => konst(e, output, 0.0)?,
            };
            Some(e.select(c, &ta, &tb)?)
        }
        Op::Reduce { op, axes, keepdims } => {
            let Some(tx) = tan(0) else {
                return Ok(None);
            };
            let w = reduce_weights(e, *op, x, output, axes)?;
            let v = match w {
                None => tx,
                Some(w) => e.mul(&tx, &w)?,
            };
            Some(e.reduce_sum(&v, axes, *keepdims)?)
        }
        // d(A B) = dA B + A dB
        Op::MatMul {} => {
            let (a, b) = (&inputs[0], &inputs[1]);
            let mut acc = None;
            if let Some(ta) = tan(0) {
                let v = e.matmul(&ta, b)?;
                acc = accumulate(e, acc, v)?;
            }
            if let Some(tb) = tan(1) {
                let v = e.matmul(a, &tb)?;
                acc = accumulate(e, acc, v)?;
            }
            acc
        }
        // Linear ops in one operand: apply the op to the tangent.
        Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Print {} => {
            let Some(tx) = tan(0) else {
                return Ok(None);
            };
            Some(e.emit(op, &[&tx])?)
        }
        Op::Pool2d {
            op: PoolOp::Avg, ..
        } => {
            let Some(tx) = tan(0) else {
                return Ok(None);
            };
            Some(e.emit(op, &[&tx])?)
        }
        Op::Pool2d {
            op: PoolOp::Max,
            params,
        } => {
            let Some(tx) = tan(0) else {
                return Ok(None);
            };
            Some(max_pool_pick(e, x, output, &tx, params)?)
        }
        // The pad value is a constant: the tangent is padded with zeros.
        Op::Pad { pads, .. } => {
            let Some(tx) = tan(0) else {
                return Ok(None);
            };
            Some(e.pad(&tx, pads, 0.0)?)
        }
        Op::Concat { .. } => {
            let mut parts = Vec::with_capacity(inputs.len());
            for (i, v) in inputs.iter().enumerate() {
                parts.push(match tan(i) {
                    Some(ti) => ti,
                    None => e.zeros_like(v)?,
                });
            }
            let refs: Vec<&E::Val> = parts.iter().collect();
            Some(e.emit(op, &refs)?)
        }
        Op::Gather { .. } => {
            let Some(tx) = tan(0) else {
                return Ok(None);
            };
            Some(e.emit(op, &[&tx, &inputs[1]])?)
        }
        // d scatter_add(x, idx, u) = scatter_add(dx, idx, du)
        Op::ScatterAdd { .. } => match tan(2) {
            None => tan(0),
            Some(tu) => {
                let tx = match tan(0) {
                    Some(v) => v,
                    None => e.zeros_like(x)?,
                };
                Some(e.emit(op, &[&tx, &inputs[1], &tu])?)
            }
        },
        // Bilinear ops: d f(p, q) = f(dp, q) + f(p, dq).
        Op::Conv2d { .. } | Op::Conv2dBackwardInput { .. } | Op::Conv2dBackwardFilter { .. } => {
            let (p, q) = (&inputs[0], &inputs[1]);
            let mut acc = None;
            if let Some(tp) = tan(0) {
                let v = e.emit(op, &[&tp, q])?;
                acc = accumulate(e, acc, v)?;
            }
            if let Some(tq) = tan(1) {
                let v = e.emit(op, &[p, &tq])?;
                acc = accumulate(e, acc, v)?;
            }
            acc
        }
        // Linear in dy; x only chooses where max pooling routes (a zero derivative).
        Op::Pool2dBackward { .. } => match tan(1) {
            Some(tdy) => Some(e.emit(op, &[x, &tdy])?),
            None => None,
        },
        Op::Cast { dtype } => {
            let Some(tx) = tan(0) else {
                return Ok(None);
            };
            Some(e.cast(&tx, *dtype)?)
        }
        Op::Compare { .. }
        | Op::ArgReduce { .. }
        | Op::Random { .. }
        | Op::Iota { .. }
        | Op::Full { .. }
        | Op::StopGradient {} => None,
    };
    // A broadcast operand's tangent (or a tangent multiplied by a broadcast factor) takes
    // the result's shape.
    match res {
        Some(v) => Ok(Some(e.broadcast_to(&v, &od)?)),
        None => Ok(None),
    }
}
