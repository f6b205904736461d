//! Shape and dtype inference: the abstract evaluation rule of every primitive.
//!
//! [`infer`] is used by the checker (on shapes with symbolic and unknown dims), by lowering
//! and the IR verifier, and by every device before it runs a kernel (on known shapes), so
//! a kernel can never be called with operands its rule rejects.

use crate::prim::UnaryKind;
use crate::{DType, Dim, InferError, Op, Shape, TensorType};

/// The type of `op` applied to operands of the given types.
pub fn infer(op: &Op, inputs: &[TensorType]) -> Result<TensorType, InferError> {
    let prim = op.prim();
    let name = prim.name();
    let arity = prim.info().arity;
    if !arity.accepts(inputs.len()) {
        return Err(InferError::Arity {
            prim: name,
            expected: arity,
            found: inputs.len(),
        });
    }
    let out = match op {
        Op::Unary { op } => {
            let x = &inputs[0];
            TensorType::new(unary_dtype(name, *op, x.dtype)?, x.shape.clone())
        }
        Op::Binary { op } => {
            let dt = binary_dtype(name, *op, inputs[0].dtype, inputs[1].dtype)?;
            TensorType::new(dt, broadcast_pair(name, inputs, 0, 1)?)
        }
        Op::Compare { .. } => {
            let dt = compare_dtype(name, inputs[0].dtype, inputs[1].dtype)?;
            TensorType::new(dt, broadcast_pair(name, inputs, 0, 1)?)
        }
        Op::Select {} => {
            if inputs[0].dtype != DType::Bool {
                return Err(dtype_err(name, 0, "bool", inputs[0].dtype));
            }
            same_dtype(name, inputs, 1, 2)?;
            let ab = broadcast_pair(name, inputs, 1, 2)?;
            let shape = broadcast_shapes(&inputs[0].shape, &ab).map_err(|(axis, l, r)| {
                InferError::Broadcast {
                    prim: name,
                    lhs: 0,
                    rhs: 1,
                    axis,
                    lhs_dim: l,
                    rhs_dim: r,
                    lhs_shape: inputs[0].shape.clone(),
                    rhs_shape: ab.clone(),
                }
            })?;
            TensorType::new(inputs[1].dtype, shape)
        }
        Op::Reduce { op, axes, keepdims } => {
            let x = &inputs[0];
            check_axes(name, axes, x.rank())?;
            if matches!(op, crate::ReduceOp::Max | crate::ReduceOp::Min)
                && let Some(&a) = axes.iter().find(|&&a| x.shape.0[a] == Dim::Known(0))
            {
                return Err(attr_err(
                    name,
                    format!("axis {a} has size 0: there is no {name} of no elements"),
                ));
            }
            let dtype = match (op, x.dtype) {
                (crate::ReduceOp::Sum | crate::ReduceOp::Prod, DType::Bool) => DType::I64,
                (_, d) => d,
            };
            TensorType::new(dtype, reduce_shape(&x.shape, axes, *keepdims))
        }
        Op::ArgReduce { axis, keepdims, .. } => {
            let x = &inputs[0];
            check_axes(name, std::slice::from_ref(axis), x.rank())?;
            if x.shape.0[*axis] == Dim::Known(0) {
                return Err(attr_err(
                    name,
                    format!("axis {axis} has size 0: there is no extreme value"),
                ));
            }
            TensorType::new(
                DType::I64,
                reduce_shape(&x.shape, std::slice::from_ref(axis), *keepdims),
            )
        }
        Op::MatMul {} => {
            same_dtype(name, inputs, 0, 1)?;
            let (a, b) = (&inputs[0], &inputs[1]);
            if !a.dtype.is_numeric() {
                return Err(dtype_err(name, 0, "a numeric dtype", a.dtype));
            }
            for (i, t) in [a, b].into_iter().enumerate() {
                if t.rank() < 2 {
                    return Err(rank_err(name, i, "≥ 2", t));
                }
            }
            let (ra, rb) = (a.rank(), b.rank());
            let k_a = &a.shape.0[ra - 1];
            let k_b = &b.shape.0[rb - 2];
            if !k_a.may_equal(k_b) {
                return Err(InferError::Dim {
                    prim: name,
                    operand: 1,
                    axis: rb - 2,
                    expected: k_a.clone(),
                    found: k_b.clone(),
                });
            }
            let batch_a = Shape(a.shape.0[..ra - 2].to_vec());
            let batch_b = Shape(b.shape.0[..rb - 2].to_vec());
            let mut dims = broadcast_shapes(&batch_a, &batch_b)
                .map_err(|(axis, l, r)| InferError::Broadcast {
                    prim: name,
                    lhs: 0,
                    rhs: 1,
                    axis: axis + 2,
                    lhs_dim: l,
                    rhs_dim: r,
                    lhs_shape: a.shape.clone(),
                    rhs_shape: b.shape.clone(),
                })?
                .0;
            dims.push(a.shape.0[ra - 2].clone());
            dims.push(b.shape.0[rb - 1].clone());
            TensorType::new(a.dtype, Shape(dims))
        }
        Op::Reshape { shape } => {
            let x = &inputs[0];
            let from = x
                .shape
                .checked_numel()
                .map_err(|()| overflow(name, &x.shape))?;
            let to = shape.checked_numel().map_err(|()| overflow(name, shape))?;
            let fits = match (from, to) {
                (Some(a), Some(b)) => a == b,
                // With symbolic dims on either side, the counts must agree as products of
                // the same names times the same known factor; `?` matches anything.
                _ => {
                    x.shape.0.iter().chain(&shape.0).any(Dim::is_unknown)
                        || symbolic_signature(&x.shape) == symbolic_signature(shape)
                }
            };
            if !fits {
                return Err(attr_err(
                    name,
                    format!(
                        "cannot reshape {} into {}: the element counts differ",
                        x.shape, shape
                    ),
                ));
            }
            TensorType::new(x.dtype, shape.clone())
        }
        Op::Transpose { perm } => {
            let x = &inputs[0];
            let mut seen = vec![false; x.rank()];
            let valid = perm.len() == x.rank()
                && perm
                    .iter()
                    .all(|&p| p < x.rank() && !std::mem::replace(&mut seen[p], true));
            if !valid {
                return Err(attr_err(
                    name,
                    format!("{perm:?} is not a permutation of the {} axes", x.rank()),
                ));
            }
            TensorType::new(
                x.dtype,
                Shape(perm.iter().map(|&p| x.shape.0[p].clone()).collect()),
            )
        }
        Op::Broadcast { shape } => {
            let x = &inputs[0];
            shape.checked_numel().map_err(|()| overflow(name, shape))?;
            if x.rank() > shape.rank() {
                return Err(attr_err(
                    name,
                    format!("cannot broadcast {} to the lower-rank {}", x.shape, shape),
                ));
            }
            let off = shape.rank() - x.rank();
            for (i, d) in x.shape.0.iter().enumerate() {
                let t = &shape.0[off + i];
                if *d != Dim::Known(1) && !d.may_equal(t) {
                    return Err(InferError::Dim {
                        prim: name,
                        operand: 0,
                        axis: i,
                        expected: t.clone(),
                        found: d.clone(),
                    });
                }
            }
            TensorType::new(x.dtype, shape.clone())
        }
        Op::Slice { dims } => {
            let x = &inputs[0];
            if dims.len() != x.rank() {
                return Err(attr_err(
                    name,
                    format!("{} slice entries for rank {}", dims.len(), x.rank()),
                ));
            }
            for (axis, (s, d)) in dims.iter().zip(&x.shape.0).enumerate() {
                if s.step == 0 {
                    return Err(attr_err(name, format!("axis {axis}: the step is zero")));
                }
                if let (Some(n), true) = (d.known(), s.len > 0) {
                    let last = s.start as i128 + (s.len as i128 - 1) * s.step as i128;
                    if s.start >= n || last < 0 || last >= n as i128 {
                        return Err(attr_err(
                            name,
                            format!("axis {axis} of size {n}: the slice reaches outside it"),
                        ));
                    }
                }
            }
            TensorType::new(
                x.dtype,
                Shape(dims.iter().map(|s| Dim::Known(s.len)).collect()),
            )
        }
        Op::Concat { axis } => {
            let first = &inputs[0];
            check_axes(name, std::slice::from_ref(axis), first.rank())?;
            let mut total = Some(0usize);
            for (i, t) in inputs.iter().enumerate() {
                same_dtype(name, inputs, 0, i)?;
                if t.rank() != first.rank() {
                    return Err(rank_err(name, i, &first.rank().to_string(), t));
                }
                for (ax, (d, d0)) in t.shape.0.iter().zip(&first.shape.0).enumerate() {
                    if ax != *axis && !d.may_equal(d0) {
                        return Err(InferError::Dim {
                            prim: name,
                            operand: i,
                            axis: ax,
                            expected: d0.clone(),
                            found: d.clone(),
                        });
                    }
                }
                total = match (total, t.shape.0[*axis].known()) {
                    (Some(a), Some(b)) => {
                        Some(a.checked_add(b).ok_or_else(|| overflow(name, &t.shape))?)
                    }
                    _ => None,
                };
            }
            let mut dims = first.shape.0.clone();
            dims[*axis] = total.map_or_else(Dim::unknown, Dim::Known);
            TensorType::new(first.dtype, Shape(dims))
        }
        Op::Pad { pads, .. } => {
            let x = &inputs[0];
            if pads.len() != x.rank() {
                return Err(attr_err(
                    name,
                    format!("{} pad entries for rank {}", pads.len(), x.rank()),
                ));
            }
            let dims = x
                .shape
                .0
                .iter()
                .zip(pads)
                .map(|(d, &(lo, hi))| match d.known() {
                    Some(n) => n
                        .checked_add(lo)
                        .and_then(|v| v.checked_add(hi))
                        .map(Dim::Known),
                    None if lo == 0 && hi == 0 => Some(d.clone()),
                    None => Some(Dim::unknown()),
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| overflow(name, &x.shape))?;
            let shape = Shape(dims);
            shape.checked_numel().map_err(|()| overflow(name, &shape))?;
            TensorType::new(x.dtype, shape)
        }
        Op::Gather { axis } => {
            let (x, idx) = (&inputs[0], &inputs[1]);
            check_axes(name, std::slice::from_ref(axis), x.rank())?;
            if !idx.dtype.is_int() {
                return Err(dtype_err(name, 1, "an integer dtype", idx.dtype));
            }
            let shape = gather_shape(&x.shape, &idx.shape, *axis);
            shape.checked_numel().map_err(|()| overflow(name, &shape))?;
            TensorType::new(x.dtype, shape)
        }
        Op::ScatterAdd { axis } => {
            let (x, idx, upd) = (&inputs[0], &inputs[1], &inputs[2]);
            check_axes(name, std::slice::from_ref(axis), x.rank())?;
            if !idx.dtype.is_int() {
                return Err(dtype_err(name, 1, "an integer dtype", idx.dtype));
            }
            same_dtype(name, inputs, 0, 2)?;
            if !x.dtype.is_numeric() {
                return Err(dtype_err(name, 0, "a numeric dtype", x.dtype));
            }
            let want = gather_shape(&x.shape, &idx.shape, *axis);
            if want.rank() != upd.rank() {
                return Err(rank_err(name, 2, &want.rank().to_string(), upd));
            }
            for (ax, (w, u)) in want.0.iter().zip(&upd.shape.0).enumerate() {
                if !w.may_equal(u) {
                    return Err(InferError::Dim {
                        prim: name,
                        operand: 2,
                        axis: ax,
                        expected: w.clone(),
                        found: u.clone(),
                    });
                }
            }
            x.clone()
        }
        Op::Conv2d { params } => {
            let (x, w) = (&inputs[0], &inputs[1]);
            conv_common(name, inputs, params)?;
            let (kh, kw) = (&w.shape.0[2], &w.shape.0[3]);
            let oh = conv_out(
                name,
                &x.shape.0[2],
                kh,
                params.stride[0],
                params.padding[0],
                params.dilation[0],
            )?;
            let ow = conv_out(
                name,
                &x.shape.0[3],
                kw,
                params.stride[1],
                params.padding[1],
                params.dilation[1],
            )?;
            check_channels(
                name,
                &x.shape.0[1],
                &w.shape.0[1],
                &w.shape.0[0],
                params.groups,
                1,
            )?;
            TensorType::new(
                x.dtype,
                Shape(vec![x.shape.0[0].clone(), w.shape.0[0].clone(), oh, ow]),
            )
        }
        Op::Conv2dBackwardInput { params, input_hw } => {
            let (dy, w) = (&inputs[0], &inputs[1]);
            conv_common(name, inputs, params)?;
            for (i, &hw) in input_hw.iter().enumerate() {
                let o = conv_out(
                    name,
                    &Dim::Known(hw),
                    &w.shape.0[2 + i],
                    params.stride[i],
                    params.padding[i],
                    params.dilation[i],
                )?;
                expect_dim(name, 0, 2 + i, &o, &dy.shape.0[2 + i])?;
            }
            expect_dim(name, 0, 1, &w.shape.0[0], &dy.shape.0[1])?;
            let c = match w.shape.0[1].known() {
                Some(c) => Dim::Known(c * params.groups),
                None => Dim::unknown(),
            };
            if let Some(o) = w.shape.0[0].known()
                && o % params.groups != 0
            {
                return Err(attr_err(
                    name,
                    format!(
                        "{o} output channels do not split into {} groups",
                        params.groups
                    ),
                ));
            }
            TensorType::new(
                dy.dtype,
                Shape(vec![
                    dy.shape.0[0].clone(),
                    c,
                    Dim::Known(input_hw[0]),
                    Dim::Known(input_hw[1]),
                ]),
            )
        }
        Op::Conv2dBackwardFilter { params, kernel_hw } => {
            let (x, dy) = (&inputs[0], &inputs[1]);
            conv_common(name, inputs, params)?;
            for (i, &k) in kernel_hw.iter().enumerate() {
                let o = conv_out(
                    name,
                    &x.shape.0[2 + i],
                    &Dim::Known(k),
                    params.stride[i],
                    params.padding[i],
                    params.dilation[i],
                )?;
                expect_dim(name, 1, 2 + i, &o, &dy.shape.0[2 + i])?;
            }
            expect_dim(name, 1, 0, &x.shape.0[0], &dy.shape.0[0])?;
            let g = params.groups;
            let cg = match x.shape.0[1].known() {
                Some(c) if c % g == 0 => Dim::Known(c / g),
                Some(c) => {
                    return Err(attr_err(
                        name,
                        format!("{c} input channels do not split into {g} groups"),
                    ));
                }
                None => Dim::unknown(),
            };
            if let Some(o) = dy.shape.0[1].known()
                && o % g != 0
            {
                return Err(attr_err(
                    name,
                    format!("{o} output channels do not split into {g} groups"),
                ));
            }
            TensorType::new(
                x.dtype,
                Shape(vec![
                    dy.shape.0[1].clone(),
                    cg,
                    Dim::Known(kernel_hw[0]),
                    Dim::Known(kernel_hw[1]),
                ]),
            )
        }
        Op::Pool2d { op, params } => {
            let x = &inputs[0];
            pool_check(name, *op, x, params)?;
            let dims = pool_out_shape(name, &x.shape, params)?;
            TensorType::new(x.dtype, dims)
        }
        Op::Pool2dBackward { op, params } => {
            let (x, dy) = (&inputs[0], &inputs[1]);
            pool_check(name, *op, x, params)?;
            same_dtype(name, inputs, 0, 1)?;
            let want = pool_out_shape(name, &x.shape, params)?;
            if dy.rank() != 4 {
                return Err(rank_err(name, 1, "4", dy));
            }
            for ax in 0..4 {
                expect_dim(name, 1, ax, &want.0[ax], &dy.shape.0[ax])?;
            }
            x.clone()
        }
        Op::Cast { dtype } => TensorType::new(*dtype, inputs[0].shape.clone()),
        Op::Random { shape, dtype, .. } => {
            let key = &inputs[0];
            if key.dtype != DType::I64 {
                return Err(dtype_err(name, 0, "i64 (the key)", key.dtype));
            }
            if key.shape != Shape::known(&[2]) {
                return Err(rank_err(name, 0, "1 with shape [2] (seed, offset)", key));
            }
            if !dtype.is_float() {
                return Err(attr_err(
                    name,
                    format!("random numbers are floats, not {dtype}"),
                ));
            }
            shape.checked_numel().map_err(|()| overflow(name, shape))?;
            TensorType::new(*dtype, shape.clone())
        }
        Op::Iota { shape, axis, dtype } => {
            check_axes(name, std::slice::from_ref(axis), shape.rank())?;
            if !dtype.is_numeric() {
                return Err(attr_err(
                    name,
                    format!("iota counts in a numeric dtype, not {dtype}"),
                ));
            }
            shape.checked_numel().map_err(|()| overflow(name, shape))?;
            TensorType::new(*dtype, shape.clone())
        }
        Op::Full { shape, dtype, .. } => {
            shape.checked_numel().map_err(|()| overflow(name, shape))?;
            TensorType::new(*dtype, shape.clone())
        }
        Op::Print {} | Op::StopGradient {} => inputs[0].clone(),
    };
    Ok(out)
}

/// NumPy broadcasting of two shapes. On failure, gives the axis counted from the right and
/// the two dims that clash.
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> Result<Shape, (usize, Dim, Dim)> {
    let rank = a.rank().max(b.rank());
    let mut out = vec![Dim::Known(1); rank];
    for i in 0..rank {
        let da = if i < a.rank() {
            a.0[a.rank() - 1 - i].clone()
        } else {
            Dim::Known(1)
        };
        let db = if i < b.rank() {
            b.0[b.rank() - 1 - i].clone()
        } else {
            Dim::Known(1)
        };
        out[rank - 1 - i] = match (&da, &db) {
            (Dim::Known(1), _) => db,
            (_, Dim::Known(1)) => da,
            _ if da == db => da,
            // `?` may turn out to be 1 or the other size: the result is whatever is known.
            _ if da.is_unknown() => db,
            _ if db.is_unknown() => da,
            _ => return Err((i, da, db)),
        };
    }
    Ok(Shape(out))
}

fn broadcast_pair(
    name: &'static str,
    inputs: &[TensorType],
    l: usize,
    r: usize,
) -> Result<Shape, InferError> {
    broadcast_shapes(&inputs[l].shape, &inputs[r].shape).map_err(|(axis, lhs_dim, rhs_dim)| {
        InferError::Broadcast {
            prim: name,
            lhs: l,
            rhs: r,
            axis,
            lhs_dim,
            rhs_dim,
            lhs_shape: inputs[l].shape.clone(),
            rhs_shape: inputs[r].shape.clone(),
        }
    })
}

/// The result dtype of an elementwise primitive (unary, binary or comparison) from its
/// operands' dtypes, checked exactly as [`infer`] checks them; `None` for every other
/// primitive. For operands that all have one shape this is the whole rule (the result has
/// that shape), so a device can run the small same-shape operations eager code is made of
/// without building [`TensorType`]s.
pub fn elementwise_dtype(op: &Op, dtypes: &[DType]) -> Option<Result<DType, InferError>> {
    let name = op.prim().name();
    let result = match (op, dtypes) {
        (Op::Unary { op }, &[x]) => unary_dtype(name, *op, x),
        (Op::Binary { op }, &[l, r]) => binary_dtype(name, *op, l, r),
        (Op::Compare { .. }, &[l, r]) => compare_dtype(name, l, r),
        (Op::Unary { .. } | Op::Binary { .. } | Op::Compare { .. }, _) => Err(InferError::Arity {
            prim: name,
            expected: op.prim().info().arity,
            found: dtypes.len(),
        }),
        _ => return None,
    };
    Some(result)
}

/// The dtype rule of a unary primitive, by its kind.
fn unary_dtype(name: &'static str, op: crate::UnaryOp, x: DType) -> Result<DType, InferError> {
    let (accepted, ok) = match op.kind() {
        UnaryKind::Numeric | UnaryKind::Predicate => ("a numeric dtype", x.is_numeric()),
        UnaryKind::Float => ("a float dtype", x.is_float()),
        UnaryKind::Logical => ("bool", x == DType::Bool),
    };
    if !ok {
        return Err(dtype_err(name, 0, accepted, x));
    }
    Ok(if op.kind() == UnaryKind::Predicate {
        DType::Bool
    } else {
        x
    })
}

/// The dtype rule of binary arithmetic: one dtype for both operands, bool for the logical
/// operators, float for true division, numeric otherwise.
fn binary_dtype(
    name: &'static str,
    op: crate::BinaryOp,
    l: DType,
    r: DType,
) -> Result<DType, InferError> {
    dtypes_match(name, l, r)?;
    if op.is_logical() {
        if l != DType::Bool {
            return Err(dtype_err(name, 0, "bool", l));
        }
    } else if op == crate::BinaryOp::Div {
        if !l.is_float() {
            return Err(dtype_err(name, 0, "a float dtype (cast integers first)", l));
        }
    } else if !l.is_numeric() {
        return Err(dtype_err(name, 0, "a numeric dtype", l));
    }
    Ok(l)
}

/// The dtype rule of a comparison: one dtype for both operands, a bool result.
fn compare_dtype(name: &'static str, l: DType, r: DType) -> Result<DType, InferError> {
    dtypes_match(name, l, r)?;
    Ok(DType::Bool)
}

/// Operands 0 and 1 of `name` must have one dtype.
fn dtypes_match(name: &'static str, l: DType, r: DType) -> Result<(), InferError> {
    if l == r {
        Ok(())
    } else {
        Err(InferError::DTypeMismatch {
            prim: name,
            lhs: 0,
            rhs: 1,
            lhs_dtype: l,
            rhs_dtype: r,
        })
    }
}

fn same_dtype(
    name: &'static str,
    inputs: &[TensorType],
    l: usize,
    r: usize,
) -> Result<(), InferError> {
    if inputs[l].dtype == inputs[r].dtype {
        Ok(())
    } else {
        Err(InferError::DTypeMismatch {
            prim: name,
            lhs: l,
            rhs: r,
            lhs_dtype: inputs[l].dtype,
            rhs_dtype: inputs[r].dtype,
        })
    }
}

fn dtype_err(
    prim: &'static str,
    operand: usize,
    expected: &'static str,
    found: DType,
) -> InferError {
    InferError::DType {
        prim,
        operand,
        expected,
        found,
    }
}

fn rank_err(prim: &'static str, operand: usize, expected: &str, t: &TensorType) -> InferError {
    InferError::Rank {
        prim,
        operand,
        expected: expected.to_string(),
        found: t.rank(),
        shape: t.shape.clone(),
    }
}

fn attr_err(prim: &'static str, message: String) -> InferError {
    InferError::Attr { prim, message }
}

fn overflow(prim: &'static str, shape: &Shape) -> InferError {
    InferError::Overflow {
        prim,
        shape: shape.clone(),
    }
}

fn expect_dim(
    prim: &'static str,
    operand: usize,
    axis: usize,
    expected: &Dim,
    found: &Dim,
) -> Result<(), InferError> {
    if expected.may_equal(found) {
        Ok(())
    } else {
        Err(InferError::Dim {
            prim,
            operand,
            axis,
            expected: expected.clone(),
            found: found.clone(),
        })
    }
}

fn check_axes(name: &'static str, axes: &[usize], rank: usize) -> Result<(), InferError> {
    for (i, &a) in axes.iter().enumerate() {
        if a >= rank {
            return Err(InferError::Axis {
                prim: name,
                axis: a,
                rank,
            });
        }
        if i > 0 && axes[i - 1] >= a {
            return Err(attr_err(
                name,
                format!("axes {axes:?} must be sorted and distinct"),
            ));
        }
    }
    Ok(())
}

fn reduce_shape(shape: &Shape, axes: &[usize], keepdims: bool) -> Shape {
    Shape(
        shape
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
                (false, _) => Some(d.clone()),
                (true, true) => Some(Dim::Known(1)),
                (true, false) => None,
            })
            .collect(),
    )
}

fn gather_shape(x: &Shape, idx: &Shape, axis: usize) -> Shape {
    let mut dims = x.0[..axis].to_vec();
    dims.extend(idx.0.iter().cloned());
    dims.extend(x.0[axis + 1..].iter().cloned());
    Shape(dims)
}

/// The symbolic names of a shape (sorted) with the product of its known dims; two shapes
/// with equal signatures have equal element counts.
fn symbolic_signature(s: &Shape) -> (Vec<String>, Option<usize>) {
    let mut names: Vec<String> =
        s.0.iter()
            .filter_map(|d| match d {
                Dim::Sym(n) => Some(n.to_string()),
                Dim::Known(_) => None,
            })
            .collect();
    names.sort();
    let known =
        s.0.iter()
            .filter_map(Dim::known)
            .try_fold(1usize, usize::checked_mul);
    (names, known)
}

fn conv_common(
    name: &'static str,
    inputs: &[TensorType],
    p: &crate::Conv2dParams,
) -> Result<(), InferError> {
    same_dtype(name, inputs, 0, 1)?;
    if !inputs[0].dtype.is_float() {
        return Err(dtype_err(name, 0, "a float dtype", inputs[0].dtype));
    }
    for (i, t) in inputs.iter().enumerate() {
        if t.rank() != 4 {
            return Err(rank_err(name, i, "4", t));
        }
    }
    if p.stride.contains(&0) || p.dilation.contains(&0) || p.groups == 0 {
        return Err(attr_err(
            name,
            "stride, dilation and groups must be at least 1".to_string(),
        ));
    }
    Ok(())
}

fn check_channels(
    name: &'static str,
    c: &Dim,
    wc: &Dim,
    o: &Dim,
    groups: usize,
    w_operand: usize,
) -> Result<(), InferError> {
    if let (Some(c), Some(wc)) = (c.known(), wc.known())
        && c != wc * groups
    {
        return Err(InferError::Dim {
            prim: name,
            operand: w_operand,
            axis: 1,
            expected: if c % groups == 0 {
                Dim::Known(c / groups)
            } else {
                Dim::Known(c)
            },
            found: Dim::Known(wc),
        });
    }
    if let Some(o) = o.known()
        && o % groups != 0
    {
        return Err(attr_err(
            name,
            format!("{o} output channels do not split into {groups} groups"),
        ));
    }
    Ok(())
}

/// Output size of a convolution or pooling along one axis, or an error if the window does
/// not fit even once.
fn conv_out(
    name: &'static str,
    n: &Dim,
    k: &Dim,
    stride: usize,
    pad: usize,
    dil: usize,
) -> Result<Dim, InferError> {
    match (n.known(), k.known()) {
        (Some(n), Some(k)) => {
            let span = dil
                .checked_mul(k.saturating_sub(1))
                .and_then(|v| v.checked_add(1));
            let padded = n.checked_add(2 * pad);
            match (span, padded) {
                (Some(span), Some(padded)) if k > 0 && padded >= span => {
                    Ok(Dim::Known((padded - span) / stride + 1))
                }
                _ => Err(attr_err(
                    name,
                    format!(
                        "a window of {k} (dilation {dil}) does not fit in a size of {n} padded by {pad}"
                    ),
                )),
            }
        }
        _ => Ok(Dim::unknown()),
    }
}

fn pool_check(
    name: &'static str,
    op: crate::PoolOp,
    x: &TensorType,
    p: &crate::Pool2dParams,
) -> Result<(), InferError> {
    if x.rank() != 4 {
        return Err(rank_err(name, 0, "4", x));
    }
    let ok = match op {
        crate::PoolOp::Max => x.dtype.is_numeric(),
        crate::PoolOp::Avg => x.dtype.is_float(),
    };
    if !ok {
        return Err(dtype_err(name, 0, "a float dtype", x.dtype));
    }
    if p.window.contains(&0) || p.stride.contains(&0) {
        return Err(attr_err(
            name,
            "window and stride must be at least 1".to_string(),
        ));
    }
    if p.padding[0] * 2 > p.window[0] || p.padding[1] * 2 > p.window[1] {
        return Err(attr_err(
            name,
            "padding must be at most half the window".to_string(),
        ));
    }
    Ok(())
}

fn pool_out_shape(
    name: &'static str,
    s: &Shape,
    p: &crate::Pool2dParams,
) -> Result<Shape, InferError> {
    let oh = conv_out(
        name,
        &s.0[2],
        &Dim::Known(p.window[0]),
        p.stride[0],
        p.padding[0],
        1,
    )?;
    let ow = conv_out(
        name,
        &s.0[3],
        &Dim::Known(p.window[1]),
        p.stride[1],
        p.padding[1],
        1,
    )?;
    Ok(Shape(vec![s.0[0].clone(), s.0[1].clone(), oh, ow]))
}
