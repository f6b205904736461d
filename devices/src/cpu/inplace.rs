//! Elementwise kernels that write their result into the buffer of an operand that dies
//! (the donor, chosen by `ir::passes::memory` and lent by the executor).
//!
//! They run only when the donor's buffer can take the result: nobody else holds it
//! ([`Tensor::unique_host_mut`]: a graph input is still held by its caller, a view shares its
//! buffer), it covers exactly the result in C order, and it has the result's dtype. The
//! other operands must be contiguous and either have the result's shape, be a single
//! element, or repeat along leading axes (a bias row); anything else is declined and runs
//! through the allocating kernels. Declining is decided before any element is written.
//!
//! **Same values.** Every element is computed by the very function the allocating kernels
//! use (the `Num` arithmetic, the comparisons, the `math` kernels), so the result is the
//! same bit for bit. Element `i` reads its operands at `i` before writing `i`, so writing
//! over an operand as the loop goes is safe; the vectorised `math` kernels take separate
//! input and output slices, so for them each tile of the donor is first copied into an
//! L1-sized buffer on the stack.

use ir::{BinaryOp, CmpOp, Op, UnaryKind, UnaryOp};
use rayon::prelude::*;

use super::PAR_MIN_ELEMS;
use super::elementwise::{self, Num};
use super::fused::Float;
use crate::{DeviceError, Elem, HostBuffer, Tensor};

/// Elements per tile of the vectorised unary kernels: 4 KiB of `f32`.
const TILE: usize = 1024;

/// Runs elementwise `op` with its result written into `inputs[donor]`'s buffer, giving the
/// result, or `None` (having written nothing) when the operands do not allow it. The
/// caller has checked the operands' types with `ir::infer` and that the donor has the
/// result's dtype and shape.
pub(crate) fn exec(
    op: &Op,
    inputs: &mut [Tensor],
    donor: usize,
) -> Option<Result<Tensor, DeviceError>> {
    let (before, rest) = inputs.split_at_mut(donor);
    let (d, after) = rest.split_first_mut()?;
    let shape = d.shape().to_vec();
    let others: Vec<&Tensor> = before.iter().chain(after.iter()).collect();
    // The other operands, as contiguous runs that repeat along the result.
    let mut runs = Vec::with_capacity(others.len());
    for t in &others {
        runs.push(Run::of(t, &shape)?);
    }
    let buf = d.unique_host_mut()?;
    let done = match (op, runs.as_slice()) {
        (Op::Unary { op }, []) => unary(*op, buf),
        (Op::Binary { op }, [o]) => binary(*op, buf, donor == 0, o),
        (Op::Compare { op }, [o]) => compare(*op, buf, donor == 0, o),
        (Op::Select {}, [o1, o2]) => select(buf, donor, o1, o2),
        _ => None,
    }?;
    Some(done.map(|()| d.reborn()))
}

/// An operand other than the donor: the tensor, contiguous, whose elements repeat every
/// `len` elements along the result (`len` is the result's size for an operand of its shape,
/// 1 for a single element).
#[derive(Clone, Copy)]
struct Run<'t> {
    t: &'t Tensor,
}

impl<'t> Run<'t> {
    /// `t` as a run along a result of `shape`, if it is one.
    fn of(t: &'t Tensor, shape: &[usize]) -> Option<Run<'t>> {
        if !t.is_contiguous() {
            return None;
        }
        let off = shape.len().checked_sub(t.rank())?;
        // Leading ones of `t` are stretched; from its first other dim on it must match the
        // trailing dims of the result.
        let dims = t.shape();
        let first = dims.iter().position(|&d| d != 1).unwrap_or(dims.len());
        let repeats = dims[first..]
            .iter()
            .zip(&shape[off + first..])
            .all(|(a, b)| a == b);
        repeats.then_some(Run { t })
    }

    /// The elements, when they are of type `T`.
    fn slice<T: Elem>(self) -> Option<&'t [T]> {
        self.t.as_slice::<T>()
    }
}

/// Runs `kernel(start, chunk)` over `d` in chunks, in parallel when large; `start` is the
/// chunk's first element. Once Ctrl-C is seen the chunks left are skipped (the caller then
/// reports the interruption and drops the result).
fn chunks<T: Elem>(d: &mut [T], kernel: impl Fn(usize, &mut [T]) + Sync + Send) {
    if d.len() >= PAR_MIN_ELEMS {
        d.par_chunks_mut(PAR_MIN_ELEMS)
            .enumerate()
            .for_each(|(k, c)| {
                if !crate::cancel::requested() {
                    kernel(k * PAR_MIN_ELEMS, c);
                }
            });
    } else {
        kernel(0, d);
    }
}

/// `d[i] = f(d[i], o[i mod p])` (`lhs`) or `d[i] = f(o[i mod p], d[i])` for the run `o` of
/// period `p = o.len()`, over the chunk of `d` that starts at element `start`.
///
/// Each tile of `d` is copied out first and the arithmetic then reads two sources and writes
/// a third, exactly the loops of the allocating kernels (`strided::map2`: one plain loop per
/// row, the scalar held in a register): compiled alike, they give alike even the bits of
/// NaNs, which depend on which operand the instruction takes first when both are NaN.
#[inline(always)]
fn zip_run<T: Copy + Default, U: Copy>(
    start: usize,
    d: &mut [T],
    o: &[U],
    lhs: bool,
    f: &impl Fn(T, U) -> T,
    g: &impl Fn(U, T) -> T,
) {
    let p = o.len();
    let mut tmp = [T::default(); TILE];
    let mut i = start % p;
    for tile in d.chunks_mut(TILE) {
        let src = &mut tmp[..tile.len()];
        src.copy_from_slice(tile);
        if p == 1 {
            let y = o[0];
            if lhs {
                for (d, &x) in tile.iter_mut().zip(src.iter()) {
                    *d = f(x, y);
                }
            } else {
                for (d, &x) in tile.iter_mut().zip(src.iter()) {
                    *d = g(y, x);
                }
            }
            continue;
        }
        let (mut dst, mut src) = (tile, &*src);
        while !dst.is_empty() {
            let take = (p - i).min(dst.len());
            let (dh, dt) = dst.split_at_mut(take);
            let (sh, st) = src.split_at(take);
            let oh = &o[i..i + take];
            if lhs {
                for ((d, &x), &y) in dh.iter_mut().zip(sh).zip(oh) {
                    *d = f(x, y);
                }
            } else {
                for ((d, &x), &y) in dh.iter_mut().zip(oh).zip(sh) {
                    *d = g(x, y);
                }
            }
            (dst, src) = (dt, st);
            i = (i + take) % p;
        }
    }
}

/// `d[i] = f(d[i], o[i])` (`lhs`) or `d[i] = g(o[i], d[i])` over the whole of `d`, `o` a
/// run along it.
fn zip<T: Elem, U: Elem>(
    d: &mut [T],
    o: &[U],
    lhs: bool,
    f: impl Fn(T, U) -> T + Sync + Send,
    g: impl Fn(U, T) -> T + Sync + Send,
) {
    if o.is_empty() {
        return;
    }
    chunks(d, |start, c| zip_run(start, c, o, lhs, &f, &g));
}

/// `d[i] = f(d[i])`.
fn map<T: Elem>(d: &mut [T], f: impl Fn(T) -> T + Sync + Send) {
    chunks(d, |_, c| {
        for x in c {
            *x = f(*x);
        }
    });
}

/// A vectorised float unary kernel over `d`, each tile copied out first.
fn float_unary<T: Float>(op: UnaryOp, d: &mut [T]) {
    chunks(d, |_, c| {
        let mut tmp = [T::default(); TILE];
        for tile in c.chunks_mut(TILE) {
            let src = &mut tmp[..tile.len()];
            src.copy_from_slice(tile);
            T::unary(op, src, tile);
        }
    });
}

fn unary(op: UnaryOp, buf: &mut HostBuffer) -> Option<Result<(), DeviceError>> {
    match (op.kind(), buf) {
        (UnaryKind::Logical, HostBuffer::Bool(v)) => map(v, |x: bool| !x),
        (UnaryKind::Numeric | UnaryKind::Float, HostBuffer::F32(v)) => float_unary(op, v),
        (UnaryKind::Numeric | UnaryKind::Float, HostBuffer::F64(v)) => float_unary(op, v),
        (UnaryKind::Numeric | UnaryKind::Float, HostBuffer::I32(v)) => int_unary(op, v),
        (UnaryKind::Numeric | UnaryKind::Float, HostBuffer::I64(v)) => int_unary(op, v),
        // Predicates give bool from numbers: never the donor's dtype.
        _ => return None,
    }
    Some(Ok(()))
}

fn int_unary<T: Num>(op: UnaryOp, d: &mut [T]) {
    match op {
        UnaryOp::Neg => map(d, elementwise::int_neg),
        UnaryOp::Abs => map(d, elementwise::int_abs),
        UnaryOp::Sign => map(d, elementwise::int_sign),
        UnaryOp::Relu => map(d, elementwise::int_relu),
        // Every other op is the identity on integers (see `elementwise::int_unary`):
        // the donor already holds the result.
        _ => {}
    }
}

/// Binary `op` with the donor as its left operand (`lhs`) or its right one.
fn binary(
    op: BinaryOp,
    buf: &mut HostBuffer,
    lhs: bool,
    o: &Run<'_>,
) -> Option<Result<(), DeviceError>> {
    match buf {
        HostBuffer::Bool(v) => {
            let o = o.slice::<bool>()?;
            match op {
                BinaryOp::And => zip(v, o, lhs, |x, y| x && y, |x, y| x && y),
                BinaryOp::Or => zip(v, o, lhs, |x, y| x || y, |x, y| x || y),
                _ => return None,
            }
            Some(Ok(()))
        }
        HostBuffer::F32(v) => binary_typed(op, v, lhs, o.slice()?),
        HostBuffer::F64(v) => binary_typed(op, v, lhs, o.slice()?),
        HostBuffer::I32(v) => binary_typed(op, v, lhs, o.slice()?),
        HostBuffer::I64(v) => binary_typed(op, v, lhs, o.slice()?),
    }
}

fn binary_typed<T: Num>(
    op: BinaryOp,
    d: &mut [T],
    lhs: bool,
    o: &[T],
) -> Option<Result<(), DeviceError>> {
    if !d.is_empty() && elementwise::needs_divisor_check::<T>(op) {
        let rhs: &[T] = if lhs { o } else { d };
        if let Err(e) = elementwise::check_divisor(op, rhs) {
            return Some(Err(e));
        }
    }
    // One monomorphic loop per operation and side, so that each inlines its arithmetic.
    macro_rules! run {
        ($f:expr) => {
            zip(d, o, lhs, $f, $f)
        };
    }
    match op {
        BinaryOp::Add => run!(T::add),
        BinaryOp::Sub => run!(T::sub),
        BinaryOp::Mul => run!(T::mul),
        BinaryOp::Div => run!(T::div),
        BinaryOp::Rem => run!(T::rem),
        BinaryOp::FloorDiv => run!(T::floor_div),
        BinaryOp::Pow => run!(T::pow),
        BinaryOp::Maximum => run!(T::maximum),
        BinaryOp::Minimum => run!(T::minimum),
        // Logical operations take bools, which `binary` handles.
        BinaryOp::And | BinaryOp::Or => return None,
    }
    Some(Ok(()))
}

/// A comparison whose result takes the donor's buffer: only bools compared, since the
/// result is `bool`.
// Bools order false < true, as NumPy's do; the lint would have the generic comparisons
// rewritten with bit operators.
#[allow(clippy::bool_comparison)]
fn compare(
    op: CmpOp,
    buf: &mut HostBuffer,
    lhs: bool,
    o: &Run<'_>,
) -> Option<Result<(), DeviceError>> {
    let HostBuffer::Bool(d) = buf else {
        return None;
    };
    let o = o.slice::<bool>()?;
    let f: fn(bool, bool) -> bool = match op {
        CmpOp::Eq => |x, y| x == y,
        CmpOp::Ne => |x, y| x != y,
        CmpOp::Lt => |x, y| x < y,
        CmpOp::Le => |x, y| x <= y,
        CmpOp::Gt => |x, y| x > y,
        CmpOp::Ge => |x, y| x >= y,
    };
    zip(d, o, lhs, f, f);
    Some(Ok(()))
}

/// `select(c, a, b)` written into the buffer of operand `donor` (0: the condition, which
/// has the result's dtype only when `a` and `b` are bools too; 1: `a`; 2: `b`). `o1` and
/// `o2` are the other two operands in order. Only the common runs are taken here: a single
/// element or the whole result.
fn select(
    buf: &mut HostBuffer,
    donor: usize,
    o1: &Run<'_>,
    o2: &Run<'_>,
) -> Option<Result<(), DeviceError>> {
    match (buf, donor) {
        (HostBuffer::Bool(d), 0) => {
            let (a, b) = (o1.slice::<bool>()?, o2.slice::<bool>()?);
            if !whole(a, d.len()) || !whole(b, d.len()) {
                return None;
            }
            chunks(d, |start, c| {
                for (j, x) in c.iter_mut().enumerate() {
                    let i = start + j;
                    *x = if *x { at(a, i) } else { at(b, i) };
                }
            });
            Some(Ok(()))
        }
        (HostBuffer::F32(d), 1 | 2) => select_value(d, donor == 1, o1, o2),
        (HostBuffer::F64(d), 1 | 2) => select_value(d, donor == 1, o1, o2),
        (HostBuffer::I32(d), 1 | 2) => select_value(d, donor == 1, o1, o2),
        (HostBuffer::I64(d), 1 | 2) => select_value(d, donor == 1, o1, o2),
        (HostBuffer::Bool(d), 1 | 2) => select_value(d, donor == 1, o1, o2),
        _ => None,
    }
}

/// `select` into the buffer of `a` (`a_is_donor`) or of `b`; `c` is the condition and `o`
/// the other value operand.
fn select_value<T: Elem>(
    d: &mut [T],
    a_is_donor: bool,
    c: &Run<'_>,
    o: &Run<'_>,
) -> Option<Result<(), DeviceError>> {
    let (c, o) = (c.slice::<bool>()?, o.slice::<T>()?);
    if !whole(c, d.len()) || !whole(o, d.len()) {
        return None;
    }
    chunks(d, |start, chunk| {
        for (j, x) in chunk.iter_mut().enumerate() {
            let i = start + j;
            // The donor's element stays where the condition picks the donor's side.
            if at(c, i) != a_is_donor {
                *x = at(o, i);
            }
        }
    });
    Some(Ok(()))
}

/// Whether a run is a single element or covers all `n` elements.
fn whole<T>(s: &[T], n: usize) -> bool {
    s.len() == 1 || s.len() == n
}

/// Element `i` of a run that is a single element or covers the result.
#[inline(always)]
fn at<T: Copy>(s: &[T], i: usize) -> T {
    if s.len() == 1 { s[0] } else { s[i] }
}
