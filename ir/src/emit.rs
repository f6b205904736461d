//! [`Emit`]: the small algebra the differentiation rules are written in.
//!
//! A rule (`autodiff::rules`) never computes anything itself: it asks an `Emit` to apply
//! primitives. The eager interpreter implements `Emit` by running each primitive on a
//! device tensor (and recording it on any outer gradient tape, which is what makes
//! higher-order eager differentiation work); the staged mode implements it by adding a node
//! to an IR graph. One rule per primitive therefore serves both modes, and both modes
//! differentiate identically.
//!
//! The trait has two required methods — apply an [`Op`], and tell a value's type — and the
//! rest are provided compositions, so an implementation stays a few lines long.

use crate::{BinaryOp, DType, Dim, Op, ReduceOp, Shape, TensorType, UnaryOp};

/// Applies primitives to values of some representation.
pub trait Emit {
    /// A value: a device tensor (eager) or a graph node (staged).
    type Val: Clone;
    /// Why an operation could not be applied (an inference error, an interrupted kernel...).
    type Err;

    /// Applies `op` to `args` (in the primitive's operand order).
    fn emit(&mut self, op: &Op, args: &[&Self::Val]) -> Result<Self::Val, Self::Err>;

    /// The dtype and shape of `v`. Rules run on values whose shapes are known.
    fn ttype(&self, v: &Self::Val) -> TensorType;

    /// The dims of `v` (symbolic dims, which rules never see, read as 0).
    fn dims(&self, v: &Self::Val) -> Vec<usize> {
        self.ttype(v)
            .shape
            .0
            .iter()
            .map(|d| d.known().unwrap_or(0))
            .collect()
    }

    /// A tensor of `dims` filled with `value`.
    fn full(&mut self, dims: &[usize], dtype: DType, value: f64) -> Result<Self::Val, Self::Err> {
        self.emit(
            &Op::Full {
                shape: Shape::known(dims),
                dtype,
                value,
            },
            &[],
        )
    }

    /// `value` with the dtype and shape of `like`.
    fn full_like(&mut self, like: &Self::Val, value: f64) -> Result<Self::Val, Self::Err> {
        let t = self.ttype(like);
        let dims = self.dims(like);
        self.full(&dims, t.dtype, value)
    }

    /// Zeros shaped like `like`.
    fn zeros_like(&mut self, like: &Self::Val) -> Result<Self::Val, Self::Err> {
        self.full_like(like, 0.0)
    }

    /// Ones shaped like `like`.
    fn ones_like(&mut self, like: &Self::Val) -> Result<Self::Val, Self::Err> {
        self.full_like(like, 1.0)
    }

    /// Elementwise `op(x)`.
    fn unary(&mut self, op: UnaryOp, x: &Self::Val) -> Result<Self::Val, Self::Err> {
        self.emit(&Op::Unary { op }, &[x])
    }

    /// Elementwise `op(x, y)`, broadcast.
    fn binary(
        &mut self,
        op: BinaryOp,
        x: &Self::Val,
        y: &Self::Val,
    ) -> Result<Self::Val, Self::Err> {
        self.emit(&Op::Binary { op }, &[x, y])
    }

    /// `x + y`, broadcast.
    fn add(&mut self, x: &Self::Val, y: &Self::Val) -> Result<Self::Val, Self::Err> {
        self.binary(BinaryOp::Add, x, y)
    }

    /// `x * y`, broadcast.
    fn mul(&mut self, x: &Self::Val, y: &Self::Val) -> Result<Self::Val, Self::Err> {
        self.binary(BinaryOp::Mul, x, y)
    }

    /// `x` broadcast to `dims`.
    fn broadcast_to(&mut self, x: &Self::Val, dims: &[usize]) -> Result<Self::Val, Self::Err> {
        if self.dims(x) == dims {
            return Ok(x.clone());
        }
        self.emit(
            &Op::Broadcast {
                shape: Shape::known(dims),
            },
            &[x],
        )
    }

    /// `x` summed down to `dims`, the inverse of broadcasting `dims` to `x`'s shape: the
    /// leading axes broadcasting added and the axes it stretched from 1 are summed away.
    /// This is how the gradient of a broadcast operand gets back to the operand's shape.
    fn sum_to(&mut self, x: &Self::Val, dims: &[usize]) -> Result<Self::Val, Self::Err> {
        let from = self.dims(x);
        if from == dims {
            return Ok(x.clone());
        }
        let lead = from.len().saturating_sub(dims.len());
        let axes: Vec<usize> = (0..from.len())
            .filter(|&i| i < lead || (dims[i - lead] == 1 && from[i] != 1))
            .collect();
        let summed = self.emit(
            &Op::Reduce {
                op: ReduceOp::Sum,
                axes,
                keepdims: true,
            },
            &[x],
        )?;
        self.emit(
            &Op::Reshape {
                shape: Shape(dims.iter().map(|&d| Dim::Known(d)).collect()),
            },
            &[&summed],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Emit;
    use crate::{DType, InferError, Op, TensorType, infer};

    /// An `Emit` over types alone: applying an op is inferring its result type, which is
    /// enough to check the shapes the provided compositions produce.
    struct Types;

    impl Emit for Types {
        type Val = TensorType;
        type Err = InferError;

        fn emit(&mut self, op: &Op, args: &[&TensorType]) -> Result<TensorType, InferError> {
            let args: Vec<TensorType> = args.iter().map(|&t| t.clone()).collect();
            infer(op, &args)
        }

        fn ttype(&self, v: &TensorType) -> TensorType {
            v.clone()
        }
    }

    #[test]
    fn sum_to_undoes_broadcasting() -> Result<(), InferError> {
        let mut e = Types;
        let big = TensorType::known(DType::F32, &[4, 3, 5]);
        for (dims, want) in [
            (vec![3, 5], vec![3, 5]),
            (vec![3, 1], vec![3, 1]),
            (vec![1, 5], vec![1, 5]),
            (vec![], vec![]),
            (vec![4, 3, 5], vec![4, 3, 5]),
            (vec![4, 1, 1], vec![4, 1, 1]),
        ] {
            let s = e.sum_to(&big, &dims)?;
            assert_eq!(e.dims(&s), want, "sum_to {dims:?}");
            let b = e.broadcast_to(&s, &[4, 3, 5])?;
            assert_eq!(e.dims(&b), vec![4, 3, 5]);
        }
        Ok(())
    }

    #[test]
    fn fills_take_the_type_of_their_model() -> Result<(), InferError> {
        let mut e = Types;
        let x = TensorType::known(DType::F64, &[2, 7]);
        let one = e.ones_like(&x)?;
        assert_eq!(one, x);
        let y = e.mul(&one, &x)?;
        assert_eq!(y, x);
        Ok(())
    }
}
