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

use crate::{BinaryOp, CmpOp, DType, Dim, Op, ReduceOp, Shape, SliceDim, TensorType, UnaryOp};

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

    /// The dtype of `v`.
    fn dtype(&self, v: &Self::Val) -> DType {
        self.ttype(v).dtype
    }

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

    /// A value of type `t` whose elements nobody reads: what a differentiation rule gets for
    /// an operand whose value was not kept (linear primitives need only its type). The
    /// default is a NaN (zero for integers) broadcast to the shape; an emitter that can make
    /// one without applying primitives should.
    fn placeholder(&mut self, t: &TensorType) -> Result<Self::Val, Self::Err> {
        let dims: Vec<usize> = t.shape.0.iter().map(|d| d.known().unwrap_or(0)).collect();
        let value = if t.dtype.is_float() { f64::NAN } else { 0.0 };
        let one = self.full(&[], t.dtype, value)?;
        self.broadcast_to(&one, &dims)
    }

    /// `value` with the dtype and shape of `like`.
    fn full_like(&mut self, like: &Self::Val, value: f64) -> Result<Self::Val, Self::Err> {
        let dtype = self.dtype(like);
        let dims = self.dims(like);
        self.full(&dims, dtype, value)
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

    /// `x - y`, broadcast.
    fn sub(&mut self, x: &Self::Val, y: &Self::Val) -> Result<Self::Val, Self::Err> {
        self.binary(BinaryOp::Sub, x, y)
    }

    /// `x / y`, broadcast.
    fn div(&mut self, x: &Self::Val, y: &Self::Val) -> Result<Self::Val, Self::Err> {
        self.binary(BinaryOp::Div, x, y)
    }

    /// `-x`.
    fn neg(&mut self, x: &Self::Val) -> Result<Self::Val, Self::Err> {
        self.unary(UnaryOp::Neg, x)
    }

    /// A rank-0 tensor holding `value`; binary ops broadcast it against any shape.
    fn scalar(&mut self, dtype: DType, value: f64) -> Result<Self::Val, Self::Err> {
        self.full(&[], dtype, value)
    }

    /// `x * c` for a constant `c` (in `x`'s dtype).
    fn scale(&mut self, x: &Self::Val, c: f64) -> Result<Self::Val, Self::Err> {
        let dtype = self.dtype(x);
        let c = self.scalar(dtype, c)?;
        self.mul(x, &c)
    }

    /// The elementwise comparison `op(x, y)`, broadcast, as `bool`.
    fn compare(&mut self, op: CmpOp, x: &Self::Val, y: &Self::Val) -> Result<Self::Val, Self::Err> {
        self.emit(&Op::Compare { op }, &[x, y])
    }

    /// `a` where `c` is true, else `b`; all three broadcast.
    fn select(
        &mut self,
        c: &Self::Val,
        a: &Self::Val,
        b: &Self::Val,
    ) -> Result<Self::Val, Self::Err> {
        self.emit(&Op::Select {}, &[c, a, b])
    }

    /// `x` converted to `dtype` (no op when it already has it).
    fn cast(&mut self, x: &Self::Val, dtype: DType) -> Result<Self::Val, Self::Err> {
        if self.dtype(x) == dtype {
            return Ok(x.clone());
        }
        self.emit(&Op::Cast { dtype }, &[x])
    }

    /// The reduction `op` of `x` over `axes`.
    fn reduce(
        &mut self,
        op: ReduceOp,
        x: &Self::Val,
        axes: &[usize],
        keepdims: bool,
    ) -> Result<Self::Val, Self::Err> {
        self.emit(
            &Op::Reduce {
                op,
                axes: axes.to_vec(),
                keepdims,
            },
            &[x],
        )
    }

    /// The sum of `x` over `axes`.
    fn reduce_sum(
        &mut self,
        x: &Self::Val,
        axes: &[usize],
        keepdims: bool,
    ) -> Result<Self::Val, Self::Err> {
        self.reduce(ReduceOp::Sum, x, axes, keepdims)
    }

    /// `x` with the same elements in C order and the shape `dims` (no op when it has it).
    fn reshape(&mut self, x: &Self::Val, dims: &[usize]) -> Result<Self::Val, Self::Err> {
        if self.dims(x) == dims {
            return Ok(x.clone());
        }
        self.emit(
            &Op::Reshape {
                shape: Shape::known(dims),
            },
            &[x],
        )
    }

    /// `x` with its axes permuted: output axis `i` is input axis `perm[i]`.
    fn transpose(&mut self, x: &Self::Val, perm: &[usize]) -> Result<Self::Val, Self::Err> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(x.clone());
        }
        self.emit(
            &Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    /// `x` with its last two axes swapped (the matrix transpose of a batch of matrices).
    fn transpose_last2(&mut self, x: &Self::Val) -> Result<Self::Val, Self::Err> {
        let r = self.dims(x).len();
        let mut perm: Vec<usize> = (0..r).collect();
        if r >= 2 {
            perm.swap(r - 2, r - 1);
        }
        self.transpose(x, &perm)
    }

    /// The batched matrix product `x @ y`.
    fn matmul(&mut self, x: &Self::Val, y: &Self::Val) -> Result<Self::Val, Self::Err> {
        self.emit(&Op::MatMul {}, &[x, y])
    }

    /// The strided slice of `x`, one [`SliceDim`] per axis.
    fn slice(&mut self, x: &Self::Val, dims: &[SliceDim]) -> Result<Self::Val, Self::Err> {
        self.emit(
            &Op::Slice {
                dims: dims.to_vec(),
            },
            &[x],
        )
    }

    /// `x` padded with `value`: `pads[i] = (before, after)` (no op when all are zero).
    fn pad(
        &mut self,
        x: &Self::Val,
        pads: &[(usize, usize)],
        value: f64,
    ) -> Result<Self::Val, Self::Err> {
        if pads.iter().all(|&p| p == (0, 0)) {
            return Ok(x.clone());
        }
        self.emit(
            &Op::Pad {
                pads: pads.to_vec(),
                value,
            },
            &[x],
        )
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
        // Only leading axes added by broadcasting: one sum without kept dims lands on `dims`.
        if axes.iter().all(|&i| i < lead) {
            return self.emit(
                &Op::Reduce {
                    op: ReduceOp::Sum,
                    axes,
                    keepdims: false,
                },
                &[x],
            );
        }
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
