//! The cost model: floating-point work and memory traffic of every primitive.
//!
//! Fusion heuristics, the parallel planner and the benchmarks read these numbers. They are
//! estimates of the work a straightforward kernel does, not measurements: flops count one
//! per add or multiply (a transcendental function counts as [`TRANSCENDENTAL_FLOPS`]),
//! bytes count every operand read once and the result written once. Symbolic dims count
//! as 1, so costs of shapes not yet specialized are lower bounds.

use crate::prim::UnaryKind;
use crate::{Op, TensorType, UnaryOp};

/// Flops charged for one evaluation of a transcendental function (a polynomial of about
/// this many multiply-adds, as the CPU kernels compute them).
pub const TRANSCENDENTAL_FLOPS: u64 = 20;

/// Estimated work of one primitive application.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Arithmetic operations.
    pub flops: u64,
    /// Bytes read plus bytes written.
    pub bytes: u64,
}

/// The cost of `op` on operands of the given types producing `output`.
pub fn cost(op: &Op, inputs: &[TensorType], output: &TensorType) -> Cost {
    let out_n = output.shape.numel_lower_bound();
    let out_b = out_n.saturating_mul(output.dtype.size_of() as u64);
    let in_b: u64 = inputs
        .iter()
        .map(|t| {
            t.shape
                .numel_lower_bound()
                .saturating_mul(t.dtype.size_of() as u64)
        })
        .fold(0, u64::saturating_add);
    let in_n: u64 = inputs.first().map_or(0, |t| t.shape.numel_lower_bound());
    let traffic = in_b.saturating_add(out_b);
    let (flops, bytes) = match op {
        Op::Unary { op } => {
            let per = match (op.kind(), op) {
                (UnaryKind::Float, UnaryOp::Sqrt | UnaryOp::Rsqrt) => 1,
                (UnaryKind::Float, _) => TRANSCENDENTAL_FLOPS,
                _ => 1,
            };
            (out_n.saturating_mul(per), traffic)
        }
        Op::Binary { .. } | Op::Compare { .. } | Op::Select {} | Op::Cast { .. } => {
            (out_n, traffic)
        }
        Op::Reduce { .. } | Op::ArgReduce { .. } => (in_n, traffic),
        Op::MatMul {} => {
            let k = inputs[0]
                .shape
                .0
                .last()
                .and_then(|d| d.known())
                .unwrap_or(1) as u64;
            (out_n.saturating_mul(k).saturating_mul(2), traffic)
        }
        // A reshape of a contiguous tensor changes only metadata.
        Op::Reshape { .. } => (0, 0),
        Op::Transpose { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Concat { .. }
        | Op::Pad { .. }
        | Op::Gather { .. } => (0, traffic),
        Op::ScatterAdd { .. } => (inputs[2].shape.numel_lower_bound(), traffic),
        // Every convolution kernel does one multiply-add per (output element of the forward
        // convolution, weight tap): `dy` has the forward output's size, and the weight shape
        // (operand or result) gives the taps per output element.
        Op::Conv2d { .. } => (
            out_n
                .saturating_mul(taps(&inputs[1].shape))
                .saturating_mul(2),
            traffic,
        ),
        Op::Conv2dBackwardInput { .. } => {
            let dy_n = inputs[0].shape.numel_lower_bound();
            (
                dy_n.saturating_mul(taps(&inputs[1].shape))
                    .saturating_mul(2),
                traffic,
            )
        }
        Op::Conv2dBackwardFilter { .. } => {
            let dy_n = inputs[1].shape.numel_lower_bound();
            (
                dy_n.saturating_mul(taps(&output.shape)).saturating_mul(2),
                traffic,
            )
        }
        Op::Pool2d { params, .. } => {
            let win = (params.window[0] * params.window[1]) as u64;
            (out_n.saturating_mul(win), traffic)
        }
        Op::Pool2dBackward { params, .. } => {
            let win = (params.window[0] * params.window[1]) as u64;
            (
                inputs[1].shape.numel_lower_bound().saturating_mul(win),
                traffic,
            )
        }
        // Philox-4x32-10 spends about 15 integer operations per 32-bit output.
        Op::Random { .. } => (out_n.saturating_mul(15), out_b),
        Op::Iota { .. } | Op::Full { .. } => (0, out_b),
        Op::Print {} | Op::StopGradient {} => (0, in_b),
    };
    Cost { flops, bytes }
}

/// Weight taps per output element of a convolution: `C/groups · KH · KW` of an OIHW weight.
fn taps(w: &crate::Shape) -> u64 {
    w.0.iter()
        .skip(1)
        .map(|d| d.known().unwrap_or(1) as u64)
        .product()
}
