//! Operators: dtype promotion, broadcasting and lifting over tuples and records.
//!
//! Promotion is the checker's rule, [`lang::check::ops::promote_dtypes`], called here on
//! run-time values: one rule, two users. Broadcasting is the binary primitives' own
//! (`ir::infer` broadcasts NumPy-style), so operands are only cast, never reshaped.

use std::collections::BTreeMap;
use std::sync::Arc;

use devices::Tensor;
use ir::{BinaryOp, CmpOp, DType, Op, UnaryOp as IrUnary};
use lang::Span;
use lang::ast::{BinOp, UnaryOp};
use lang::check::ops::promote_dtypes;

use super::Eval;
use super::errors::{self, R};
use crate::value::{TensorVal, Value};

/// An elementwise binary operation as the evaluator runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bin {
    /// An arithmetic or logical primitive in the operands' common dtype.
    Arith(BinaryOp),
    /// A comparison (gives `bool`).
    Cmp(CmpOp),
    /// `/`: integers divide as `f32`.
    Div,
    /// `@`.
    MatMul,
}

impl Bin {
    /// The operation of an infix operator (`&&` and `||` short-circuit in the walker).
    pub fn of(op: BinOp) -> Bin {
        match op {
            BinOp::Add => Bin::Arith(BinaryOp::Add),
            BinOp::Sub => Bin::Arith(BinaryOp::Sub),
            BinOp::Mul => Bin::Arith(BinaryOp::Mul),
            BinOp::Rem => Bin::Arith(BinaryOp::Rem),
            BinOp::Pow => Bin::Arith(BinaryOp::Pow),
            BinOp::Div => Bin::Div,
            BinOp::MatMul => Bin::MatMul,
            BinOp::Eq => Bin::Cmp(CmpOp::Eq),
            BinOp::Ne => Bin::Cmp(CmpOp::Ne),
            BinOp::Lt => Bin::Cmp(CmpOp::Lt),
            BinOp::Le => Bin::Cmp(CmpOp::Le),
            BinOp::Gt => Bin::Cmp(CmpOp::Gt),
            BinOp::Ge => Bin::Cmp(CmpOp::Ge),
            BinOp::And => Bin::Arith(BinaryOp::And),
            BinOp::Or => Bin::Arith(BinaryOp::Or),
        }
    }

    /// Arithmetic lifts over tuples and records (LANGUAGE.md §3); comparisons and `@` do
    /// not.
    fn lifts(self) -> bool {
        matches!(
            self,
            Bin::Div
                | Bin::Arith(
                    BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Rem | BinaryOp::Pow
                )
        )
    }
}

/// The widest dtype of `d`'s kind: where weak values keep their elements.
pub(crate) fn wide(d: DType) -> DType {
    if d.is_float() {
        DType::F64
    } else if d.is_int() {
        DType::I64
    } else {
        d
    }
}

/// The dtype a float function computes in: the operand's, or `f32` for integers and bools
/// (the checker's rule, `float_of`).
pub(crate) fn float_of(d: DType) -> DType {
    if d.is_float() { d } else { DType::F32 }
}

impl Eval<'_> {
    /// `l op r` for the operators of §4 other than `&&`, `||` and `..`.
    pub fn binary(
        &mut self,
        op: BinOp,
        l: &Value,
        r: &Value,
        ls: Span,
        rs: Span,
        _op_span: Span,
    ) -> R<Value> {
        self.lift(Bin::of(op), l, r, ls.to(rs))
    }

    /// An elementwise operation on values, lifted over structures.
    pub fn lift(&self, op: Bin, l: &Value, r: &Value, span: Span) -> R<Value> {
        match (l, r) {
            // Strings compare for equality (the checker's rule); they have no order.
            (Value::Str(a), Value::Str(b)) if matches!(op, Bin::Cmp(CmpOp::Eq | CmpOp::Ne)) => {
                let same = a == b;
                Ok(Value::tensor(Tensor::scalar(
                    same == (op == Bin::Cmp(CmpOp::Eq)),
                )))
            }
            (Value::Tensor(a), Value::Tensor(b)) => {
                let out = if op == Bin::MatMul {
                    self.matmul(a, b, span)?
                } else {
                    self.tensor_binary(op, a, b, span)?
                };
                Ok(Value::Tensor(out))
            }
            (Value::Tuple(a), Value::Tuple(b)) if op.lifts() && a.len() == b.len() => {
                let mut out = Vec::with_capacity(a.len());
                for (x, y) in a.iter().zip(b.iter()) {
                    out.push(self.lift(op, x, y, span)?);
                }
                Ok(Value::Tuple(out.into()))
            }
            (Value::Record(a), Value::Record(b))
                if op.lifts() && a.len() == b.len() && a.keys().all(|k| b.contains_key(k)) =>
            {
                let mut out = BTreeMap::new();
                for (k, x) in a.iter() {
                    let y = b.get(k).unwrap_or(x);
                    out.insert(k.clone(), self.lift(op, x, y, span)?);
                }
                Ok(Value::Record(Arc::new(out)))
            }
            (Value::Tuple(a), Value::Tensor(_)) if op.lifts() => {
                let mut out = Vec::with_capacity(a.len());
                for x in a.iter() {
                    out.push(self.lift(op, x, r, span)?);
                }
                Ok(Value::Tuple(out.into()))
            }
            (Value::Tensor(_), Value::Tuple(b)) if op.lifts() => {
                let mut out = Vec::with_capacity(b.len());
                for y in b.iter() {
                    out.push(self.lift(op, l, y, span)?);
                }
                Ok(Value::Tuple(out.into()))
            }
            (Value::Record(a), Value::Tensor(_)) if op.lifts() => {
                let mut out = BTreeMap::new();
                for (k, x) in a.iter() {
                    out.insert(k.clone(), self.lift(op, x, r, span)?);
                }
                Ok(Value::Record(Arc::new(out)))
            }
            (Value::Tensor(_), Value::Record(b)) if op.lifts() => {
                let mut out = BTreeMap::new();
                for (k, y) in b.iter() {
                    out.insert(k.clone(), self.lift(op, l, y, span)?);
                }
                Ok(Value::Record(Arc::new(out)))
            }
            _ => Err(errors::mismatch(
                format!(
                    "this operation needs numbers or tensors of the same structure, found {} and {}",
                    l.describe(),
                    r.describe()
                ),
                span,
            )),
        }
    }

    /// An elementwise operation on two tensors: promotion, then the primitive (which
    /// broadcasts).
    pub fn tensor_binary(&self, op: Bin, a: &TensorVal, b: &TensorVal, span: Span) -> R<TensorVal> {
        let (dtype, weak) = promote_dtypes((a.dtype, a.weak), (b.dtype, b.weak))
            .map_err(|(x, y)| errors::mismatch(format!("dtypes do not mix: {x} and {y}"), span))?;
        let logical = match op {
            Bin::Div if !dtype.is_float() => DType::F32,
            _ => dtype,
        };
        // Two weak operands compute in the widest dtype of the kind: their result is still
        // a literal, which takes its final dtype where it meets a strong value.
        let store = if weak { wide(logical) } else { logical };
        let x = self.cast(&a.t, store, span)?;
        let y = self.cast(&b.t, store, span)?;
        let prim = match op {
            Bin::Arith(o) => Op::Binary { op: o },
            Bin::Div => Op::Binary { op: BinaryOp::Div },
            Bin::Cmp(o) => Op::Compare { op: o },
            Bin::MatMul => return self.matmul(a, b, span),
        };
        let t = self.exec(&prim, &[&x, &y], span)?;
        let dtype = match op {
            Bin::Cmp(_) => DType::Bool,
            _ => logical,
        };
        Ok(TensorVal { t, dtype, weak })
    }

    /// `a @ b` with NumPy `matmul` rules: a 1-D left operand is a row, a 1-D right operand
    /// a column, and the added axis is dropped from the result.
    pub fn matmul(&self, a: &TensorVal, b: &TensorVal, span: Span) -> R<TensorVal> {
        let (dtype, weak) =
            promote_dtypes((a.dtype, a.weak), (b.dtype, b.weak)).map_err(|(x, y)| {
                errors::mismatch(format!("dtypes do not mix in `@`: {x} and {y}"), span)
            })?;
        if a.rank() == 0 || b.rank() == 0 {
            return Err(errors::mismatch(
                "`@` needs operands with at least one axis".to_string(),
                span,
            ));
        }
        let x = self.cast(&a.t, dtype, span)?;
        let y = self.cast(&b.t, dtype, span)?;
        let row = a.rank() == 1;
        let col = b.rank() == 1;
        let x = if row {
            self.reshape(&x, &[1, x.numel()], span)?
        } else {
            x
        };
        let y = if col {
            self.reshape(&y, &[y.numel(), 1], span)?
        } else {
            y
        };
        let mut t = self.exec(&Op::MatMul {}, &[&x, &y], span)?;
        if row || col {
            let mut shape = t.shape().to_vec();
            let r = shape.len();
            if col {
                shape.remove(r - 1);
            }
            if row {
                shape.remove(r - 2);
            }
            t = self.reshape(&t, &shape, span)?;
        }
        Ok(TensorVal { t, dtype, weak })
    }

    /// Reshape to known dims.
    pub fn reshape(&self, t: &Tensor, dims: &[usize], span: Span) -> R<Tensor> {
        if t.shape() == dims {
            return Ok(t.clone());
        }
        self.exec(
            &Op::Reshape {
                shape: ir::Shape::known(dims),
            },
            &[t],
            span,
        )
    }

    /// `-x` and `!c`, lifted over structures.
    pub fn unary(&self, op: UnaryOp, v: &Value, span: Span) -> R<Value> {
        let prim = match op {
            UnaryOp::Neg => IrUnary::Neg,
            UnaryOp::Not => IrUnary::Not,
        };
        v.map_leaves(&mut |leaf| match leaf {
            Value::Tensor(t) => {
                let out = self.exec(&Op::Unary { op: prim }, &[&t.t], span)?;
                Ok(Value::Tensor(TensorVal {
                    t: out,
                    ..t.clone()
                }))
            }
            other => Err(errors::mismatch(
                format!(
                    "`{}` needs a number or a tensor, found {}",
                    op.symbol(),
                    other.describe()
                ),
                span,
            )),
        })
    }

    /// A list literal `[a, b, ...]`: the elements stacked along a new axis 0, in their
    /// common dtype; weak when every element is.
    pub fn list_literal(&self, vals: &[(Value, Span)], span: Span) -> R<Value> {
        let mut elems: Vec<&TensorVal> = Vec::with_capacity(vals.len());
        for (v, s) in vals {
            match v {
                Value::Tensor(t) => elems.push(t),
                other => {
                    return Err(errors::mismatch(
                        format!(
                            "a list literal holds numbers or tensors, found {}",
                            other.describe()
                        ),
                        *s,
                    ));
                }
            }
        }
        let Some(first) = elems.first() else {
            // `[]` is an empty weak float vector.
            let t = self.exec(
                &Op::Full {
                    shape: ir::Shape::known(&[0]),
                    dtype: DType::F64,
                    value: 0.0,
                },
                &[],
                span,
            )?;
            return Ok(Value::Tensor(TensorVal {
                t,
                dtype: DType::F32,
                weak: true,
            }));
        };
        let mut acc = (first.dtype, first.weak);
        for e in elems.iter().skip(1) {
            acc = promote_dtypes(acc, (e.dtype, e.weak)).map_err(|(x, y)| {
                errors::mismatch(
                    format!("dtypes do not mix in a list literal: {x} and {y}"),
                    span,
                )
            })?;
        }
        let (dtype, weak) = acc;
        let store = if weak { wide(dtype) } else { dtype };
        // Numbers already stored in the list's dtype (`[-1, c]`, `[0.5, 2.0]`) are gathered
        // on the host: building a shape should not cost a cast, a reshape and a concat per
        // element. A traced element takes the general path, so its gradient is recorded.
        if elems.iter().all(|e| e.t.dtype() == store)
            && !elems
                .iter()
                .any(|e| super::builtins::grad::is_traced(self, &e.t))
        {
            let ts: Vec<&Tensor> = elems.iter().map(|e| &e.t).collect();
            if let Some(t) = Tensor::stack_scalars(&ts) {
                return Ok(Value::Tensor(TensorVal { t, dtype, weak }));
            }
        }
        let row = first.shape().to_vec();
        let mut dims = Vec::with_capacity(row.len() + 1);
        dims.push(1);
        dims.extend_from_slice(&row);
        let mut pieces = Vec::with_capacity(elems.len());
        for (e, (_, s)) in elems.iter().zip(vals) {
            if e.shape() != row.as_slice() {
                return Err(errors::mismatch(
                    "rows of a list literal differ in shape".to_string(),
                    *s,
                ));
            }
            let c = self.cast(&e.t, store, *s)?;
            pieces.push(self.reshape(&c, &dims, *s)?);
        }
        let t = if pieces.len() == 1 {
            pieces.swap_remove(0)
        } else {
            let refs: Vec<&Tensor> = pieces.iter().collect();
            self.exec(&Op::Concat { axis: 0 }, &refs, span)?
        };
        Ok(Value::Tensor(TensorVal { t, dtype, weak }))
    }

    /// A weak or strong tensor as a plain tensor of its logical dtype.
    pub fn strong(&self, t: &TensorVal, span: Span) -> R<Tensor> {
        self.cast(&t.t, t.dtype, span)
    }
}
