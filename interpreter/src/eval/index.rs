//! Indexing `x[i, 1:3, :, -1, ...]` (LANGUAGE.md §4, §13).
//!
//! Integers and slices are *basic* indices: one strided slice (a view on the device) and a
//! reshape that drops the integer axes. Slices clamp like NumPy and may step backwards; an
//! integer out of range is an error naming the index, the axis and its size.
//!
//! Integer tensors are *advanced* indices and follow NumPy: their shapes broadcast together
//! (with any integer scalars beside them), and the broadcast dims take the place of the
//! indexed axes when those are adjacent, or come first otherwise. The indices are checked
//! and combined into one flat index on the host, and one `gather` takes the elements.

use devices::Tensor;
use ir::{DType, Op, Shape, SliceDim};
use lang::Span;

use super::Eval;
use super::errors::{self, Flow, R};
use crate::value::{TensorVal, Value};

/// One evaluated index item.
#[derive(Debug)]
pub(crate) enum Item {
    /// An integer or an integer tensor, with its span.
    Value(Value, Span),
    /// `start:end:step`, with the whole slice's span.
    Slice(Option<i64>, Option<i64>, Option<i64>, Span),
    /// `...`.
    Ellipsis,
}

/// An item assigned to one axis.
enum Axis {
    Int(i64, Span),
    Tensor(Tensor, Span),
    Slice(Option<i64>, Option<i64>, Option<i64>, Span),
}

impl Eval<'_> {
    /// `base[items]`.
    pub fn index(&self, base: &Value, base_span: Span, items: &[Item], span: Span) -> R<Value> {
        let Value::Tensor(x) = base else {
            return Err(errors::mismatch(
                format!("cannot index {}", base.describe()),
                base_span,
            ));
        };
        let rank = x.rank();
        // Classify the items.
        let mut axes_items: Vec<Option<Axis>> = Vec::with_capacity(items.len());
        let mut consuming = 0usize;
        for it in items {
            match it {
                Item::Ellipsis => axes_items.push(None),
                Item::Slice(a, b, s, sp) => {
                    consuming += 1;
                    axes_items.push(Some(Axis::Slice(*a, *b, *s, *sp)));
                }
                Item::Value(Value::Tensor(t), sp) if t.dtype.is_int() => {
                    consuming += 1;
                    // An integer that a staged function computes (`x[argmax(x)]`) is known
                    // only when the graph runs: it indexes as a tensor of rank 0 does, by
                    // one `gather` whose index the graph computes and checks.
                    if t.rank() == 0 && t.t.staged_id().is_none() {
                        axes_items.push(Some(Axis::Int(
                            self.scalar_int(&Value::Tensor(t.clone()), *sp)?,
                            *sp,
                        )));
                    } else {
                        let idx = self.cast(&t.t, DType::I64, *sp)?;
                        axes_items.push(Some(Axis::Tensor(idx, *sp)));
                    }
                }
                Item::Value(v, sp) => {
                    return Err(errors::mismatch(
                        format!("an index must be an integer, found {}", v.describe()),
                        *sp,
                    ));
                }
            }
        }
        if consuming > rank {
            return Err(errors::mismatch(
                format!("too many indices: the tensor has {rank} axes, indexed with {consuming}"),
                span,
            ));
        }
        // Expand `...` (or the missing trailing axes) into full slices.
        let fill = rank - consuming;
        let mut per_axis: Vec<Axis> = Vec::with_capacity(rank);
        let mut filled = false;
        for a in axes_items {
            match a {
                Some(a) => per_axis.push(a),
                None => {
                    filled = true;
                    for _ in 0..fill {
                        per_axis.push(Axis::Slice(None, None, None, span));
                    }
                }
            }
        }
        if !filled {
            for _ in 0..fill {
                per_axis.push(Axis::Slice(None, None, None, span));
            }
        }
        let shape = x.shape().to_vec();
        let has_tensor = per_axis.iter().any(|a| matches!(a, Axis::Tensor(..)));
        // Basic pass: slices (and, without tensor indices, integers).
        let mut dims = Vec::with_capacity(rank);
        let mut keep = Vec::with_capacity(rank);
        let mut trivial = true;
        for (axis, (a, &n)) in per_axis.iter().zip(&shape).enumerate() {
            match a {
                Axis::Int(i, sp) => {
                    let norm = normalize(*i, axis, n, *sp)?;
                    if has_tensor {
                        dims.push(SliceDim::full(n));
                        keep.push(n);
                    } else {
                        dims.push(SliceDim {
                            start: norm,
                            len: 1,
                            step: 1,
                        });
                        trivial = false;
                    }
                }
                Axis::Tensor(..) => {
                    dims.push(SliceDim::full(n));
                    keep.push(n);
                }
                Axis::Slice(a, b, s, sp) => {
                    let sd = SliceDim::resolve(*a, *b, *s, n).ok_or_else(|| {
                        errors::bad_value("a slice step cannot be zero".to_string(), *sp)
                    })?;
                    if sd != SliceDim::full(n) {
                        trivial = false;
                    }
                    keep.push(sd.len);
                    dims.push(sd);
                }
            }
        }
        let mut t = x.t.clone();
        if !trivial {
            t = self.exec(&Op::Slice { dims }, &[&t], span)?;
            t = self.reshape(&t, &keep, span)?;
        }
        if !has_tensor {
            return Ok(Value::Tensor(TensorVal { t, ..x.clone() }));
        }
        // Advanced pass: the axes of `t` are the original axes (no integer was dropped).
        let adv: Vec<(usize, Tensor, Span)> = per_axis
            .iter()
            .enumerate()
            .filter_map(|(axis, a)| match a {
                Axis::Int(i, sp) => Some((axis, Tensor::scalar(*i), *sp)),
                Axis::Tensor(idx, sp) => Some((axis, idx.clone(), *sp)),
                Axis::Slice(..) => None,
            })
            .collect();
        let out = self.advanced(&t, &adv, span)?;
        Ok(Value::Tensor(TensorVal {
            t: out,
            dtype: x.dtype,
            weak: x.weak,
        }))
    }

    /// NumPy advanced indexing of `t` by integer tensors at the given axes.
    fn advanced(&self, t: &Tensor, adv: &[(usize, Tensor, Span)], span: Span) -> R<Tensor> {
        let shape = t.shape().to_vec();
        let rank = shape.len();
        // The broadcast shape of the indices.
        let mut bshape = Shape::scalar();
        for (_, idx, sp) in adv {
            bshape = ir::broadcast_shapes(&bshape, &Shape::known(idx.shape())).map_err(|_| {
                errors::mismatch("tensor indices do not broadcast together".to_string(), *sp)
            })?;
        }
        let bdims = bshape.to_known().unwrap_or_default();
        let staged = adv.iter().any(|(_, idx, _)| idx.staged_id().is_some());
        let idx = if staged {
            self.flat_index_staged(&shape, &bdims, adv)?
        } else {
            self.flat_index(&shape, &bdims, adv, span)?
        };
        let adv_axes: Vec<usize> = adv.iter().map(|(a, _, _)| *a).collect();
        let rest: Vec<usize> = (0..rank).filter(|a| !adv_axes.contains(a)).collect();
        let adjacent = adv_axes
            .windows(2)
            .all(|w| matches!(w, [a, b] if a + 1 == *b));
        // Move the indexed axes to the front and merge them into one.
        let mut perm = adv_axes.clone();
        perm.extend(&rest);
        let moved = if perm.iter().enumerate().all(|(i, p)| i == *p) {
            t.clone()
        } else {
            self.exec(&Op::Transpose { perm }, &[t], span)?
        };
        let merged: usize = adv_axes
            .iter()
            .map(|&a| shape.get(a).copied().unwrap_or(0))
            .product();
        let mut mdims = vec![merged];
        mdims.extend(rest.iter().map(|&a| shape.get(a).copied().unwrap_or(0)));
        let moved = self.reshape(&moved, &mdims, span)?;
        let g = self.exec(&Op::Gather { axis: 0 }, &[&moved, &idx], span)?;
        // NumPy: adjacent indexed axes keep their place; otherwise their dims come first.
        let first = adv_axes.first().copied().unwrap_or(0);
        if !adjacent || first == 0 {
            return Ok(g);
        }
        let nb = bdims.len();
        let before = rest.iter().filter(|&&a| a < first).count();
        let mut perm: Vec<usize> = (nb..nb + before).collect();
        perm.extend(0..nb);
        perm.extend(nb + before..nb + rest.len());
        self.exec(&Op::Transpose { perm }, &[&g], span)
    }

    /// The flat index into the indexed axes of a tensor of `shape`, the indices broadcast to
    /// `bdims`, computed and checked on the host.
    fn flat_index(
        &self,
        shape: &[usize],
        bdims: &[usize],
        adv: &[(usize, Tensor, Span)],
        span: Span,
    ) -> R<Tensor> {
        let count: usize = bdims.iter().product();
        let mut flat = vec![0i64; count];
        let mut stride = 1i64;
        for (axis, idx, sp) in adv.iter().rev() {
            let n = shape.get(*axis).copied().unwrap_or(0);
            let b = self.broadcast_index(idx, bdims, *sp)?;
            let vals = b
                .to_vec::<i64>()
                .ok_or_else(|| errors::internal("an index tensor could not be read", *sp))?;
            for (f, &v) in flat.iter_mut().zip(&vals) {
                let i = normalize(v, *axis, n, *sp)?;
                *f += i as i64 * stride;
            }
            stride = stride.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX));
        }
        Tensor::from_vec(flat, bdims).map_err(|e| self.device_error(e, span))
    }

    /// [`Eval::flat_index`] for indices known only when a staged graph runs: the same sum
    /// in primitives, negative indices wrapped with a `select`. An index out of range is
    /// then found by the `gather` that uses it.
    fn flat_index_staged(
        &self,
        shape: &[usize],
        bdims: &[usize],
        adv: &[(usize, Tensor, Span)],
    ) -> R<Tensor> {
        use ir::{BinaryOp, CmpOp};
        let mut flat: Option<Tensor> = None;
        let mut stride = 1i64;
        for (axis, idx, sp) in adv.iter().rev() {
            let n = i64::try_from(shape.get(*axis).copied().unwrap_or(0)).unwrap_or(i64::MAX);
            let b = self.broadcast_index(idx, bdims, *sp)?;
            let neg = self.exec(
                &Op::Compare { op: CmpOp::Lt },
                &[&b, &Tensor::scalar(0i64)],
                *sp,
            )?;
            let up = self.exec(
                &Op::Binary { op: BinaryOp::Add },
                &[&b, &Tensor::scalar(n)],
                *sp,
            )?;
            let norm = self.exec(&Op::Select {}, &[&neg, &up, &b], *sp)?;
            let term = if stride == 1 {
                norm
            } else {
                self.exec(
                    &Op::Binary { op: BinaryOp::Mul },
                    &[&norm, &Tensor::scalar(stride)],
                    *sp,
                )?
            };
            flat = Some(match flat {
                None => term,
                Some(f) => self.exec(&Op::Binary { op: BinaryOp::Add }, &[&f, &term], *sp)?,
            });
            stride = stride.saturating_mul(n);
        }
        flat.ok_or_else(|| errors::internal("advanced indexing without an index", Span::new(0, 0)))
    }

    /// An index tensor broadcast to `bdims`.
    fn broadcast_index(&self, idx: &Tensor, bdims: &[usize], span: Span) -> R<Tensor> {
        if idx.shape() == bdims {
            return Ok(idx.clone());
        }
        self.exec(
            &Op::Broadcast {
                shape: Shape::known(bdims),
            },
            &[idx],
            span,
        )
    }
}

/// A possibly negative index into an axis of size `n`, or E0901.
fn normalize(i: i64, axis: usize, n: usize, span: Span) -> Result<usize, Flow> {
    let n_i = i64::try_from(n).unwrap_or(i64::MAX);
    let j = if i < 0 { i + n_i } else { i };
    if (0..n_i).contains(&j) {
        Ok(usize::try_from(j).unwrap_or(0))
    } else {
        Err(Flow::error(errors::index_out_of_range(i, axis, n, span)))
    }
}
