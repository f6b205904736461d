//! The CPU's fused executor: a [`Kernel`] evaluated in one pass over memory.
//!
//! The output is cut into tiles of [`TILE`] elements, small enough that every register a
//! tile needs stays in L1. For each tile the program runs step by step, each step one tight
//! loop over the tile (the same vectorised math kernels and the same scalar arithmetic as
//! the unfused primitives, so every element gets exactly the value the unfused graph
//! gives); only the inputs are read from memory and only the outputs are written to it.
//! Tiles are grouped into tasks of [`TASK`] elements that run in parallel on rayon, each
//! with its own scratch registers.
//!
//! **Registers.** A scalar constant, or a step whose operands are all scalars, is evaluated
//! once before the loop and never stored per tile, as is an input that is one element
//! broadcast. An input whose view at the output's shape is contiguous is read in place;
//! any other (a bias row repeating along leading axes, a per-row value repeating along
//! the last axis, a transposed or sliced view) is gathered per tile through its strides
//! (`tensor::Walk`), run by run, so no broadcast is ever materialised. When the last axis
//! is long ([`ROW_MIN`] to [`ROW_CAP`] elements) and some input repeats along its rows,
//! tiles are single rows instead, and such an input is read in place without a gather: a
//! value per row (a `[..., 1]` column) is the tile's scalar operand, a unit-stride row (a
//! bias vector, a slice) the tile's slice of its buffer. Softmax's `x - max` and its
//! gradient's `e * (g / s)` read their per-row values that way. The remaining
//! steps get scratch buffers, reused once a register is dead (a linear scan over the
//! program), so a long chain needs only a few tiles of scratch.
//!
//! **Reductions.** A group may end in reductions over its trailing axes (rows of `R`
//! elements, the same `R` for all of them). Tiles then hold whole rows, `max(1, TILE / R)`
//! of them, and tasks whole tiles: after the steps of a tile, each reduction folds each row
//! of its operand's scratch with `reduce::fold_row`, the eager kernel's own fold, and
//! writes one element per row. The eager kernel folds each row of a contiguous operand on
//! its own, in an order fixed by the row alone, so the fused result has its bits whatever
//! the tiling. Rows longer than [`ROW_CAP`] (or empty) are declined; the schedule then runs
//! the elementwise part fused and the reductions as plain primitives.
//!
//! The executor covers groups over one float dtype (f32 or f64) and bool: unary math,
//! arithmetic, comparisons, `select`, logic, `stop_gradient` and float reductions. Any
//! other group (integer arithmetic, which can fail on division by zero, and casts) is
//! declined, and the schedule runs its region node by node.

use ir::{BinaryOp, CmpOp, DType, Op, ReduceOp, UnaryOp};
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::elementwise::Num;
use super::reduce::{Bounded, fold_row};
use super::{PAR_MIN_ELEMS, math};
use crate::fused::Kernel;
use crate::tensor::Walk;
use crate::{Elem, HostBuffer, Tensor};
use ir::passes::memory::Donation;

/// Elements per tile: 4 KiB of f32 per register.
const TILE: usize = 1024;

/// Elements per parallel task (a whole number of tiles).
const TASK: usize = TILE * 16;

/// The longest row a fused reduction folds: one task's worth. A tile holds at least one
/// whole row, so a longer row would make every scratch register longer than L2 holds
/// comfortably, and a task of one row would run serially what the unfused kernels split
/// between threads (a sum of a 60 000-element chain over one row, say). Longer rows are
/// declined; the schedule then runs the elementwise part fused, in parallel tasks, and the
/// reductions with the reduce kernel, which splits a long row into parallel blocks.
const ROW_CAP: usize = TASK;

/// The shortest row that tiles of one row each may take (see the module doc): below it a
/// tile would be too short for a step's loop to repay its dispatch, and inputs that repeat
/// along rows are gathered per tile instead.
const ROW_MIN: usize = 512;

/// The float element types the executor runs.
pub(crate) trait Float: Num + Bounded {
    fn unary(op: UnaryOp, x: &[Self], out: &mut [Self]);
}

impl Float for f32 {
    fn unary(op: UnaryOp, x: &[f32], out: &mut [f32]) {
        math::unary_f32(op, x, out);
    }
}

impl Float for f64 {
    fn unary(op: UnaryOp, x: &[f64], out: &mut [f64]) {
        math::unary_f64(op, x, out);
    }
}

/// Runs `kernel` on `inputs` (already checked to be on the CPU) giving outputs of `shape`
/// (the inputs' broadcast shape), or `None` when the executor does not cover it.
pub(crate) fn exec(
    kernel: &Kernel,
    inputs: &[&Tensor],
    shape: &[usize],
) -> Option<Result<Vec<Tensor>, String>> {
    let float = float_dtype(kernel, inputs.iter().map(|t| t.dtype()))?;
    let held = inputs.iter().map(|&t| Input::Held(t)).collect();
    let outs = match float {
        DType::F32 => run::<f32>(kernel, held, shape),
        DType::F64 => run::<f64>(kernel, held, shape),
        _ => None,
    }?;
    Some(outs.map(|outs| outs.into_iter().flatten().collect()))
}

/// [`exec`] on inputs the caller lends: for each donation whose input can take it (it has
/// the output's dtype and the output's shape, and nobody else holds its buffer, see
/// `Tensor::unique_host_mut`), the output is written into that input's buffer. The other
/// donations are ignored: those outputs get fresh buffers, with the same values.
pub(crate) fn exec_donating(
    kernel: &Kernel,
    inputs: &mut [Tensor],
    shape: &[usize],
    donations: &[Donation],
) -> Option<Result<Vec<Tensor>, String>> {
    let float = float_dtype(kernel, inputs.iter().map(|t| t.dtype()))?;
    // Which output each input gives its buffer to.
    let mut lend: Vec<Option<usize>> = vec![None; inputs.len()];
    for d in donations {
        let (Some(t), Some(ty)) = (
            inputs.get(d.operand),
            kernel.outputs.get(d.result).and_then(|&o| kernel.ty(o)),
        ) else {
            continue;
        };
        // A reduction's result is written a row at a time after its tile, not in the tile
        // order of a lent input, so it never takes an input's buffer.
        let reduced = kernel
            .outputs
            .get(d.result)
            .is_some_and(|&o| kernel.is_reduction(o));
        let taken = lend.contains(&Some(d.result)) || lend[d.operand].is_some();
        if !taken && !reduced && t.dtype() == ty.dtype && t.shape() == shape && t.is_unique_host() {
            lend[d.operand] = Some(d.result);
        }
    }
    let lent = lend.iter().flatten().count();
    let args: Vec<Input<'_>> = inputs
        .iter_mut()
        .zip(&lend)
        .map(|(t, l)| match (*l, t.is_unique_host()) {
            (Some(output), true) => match t.unique_host_mut() {
                Some(buf) => Input::Lent { output, buf },
                None => Input::Gone,
            },
            _ => Input::Held(t),
        })
        .collect();
    if args.iter().any(|a| matches!(a, Input::Gone)) {
        return None;
    }
    let outs = match float {
        DType::F32 => run::<f32>(kernel, args, shape),
        DType::F64 => run::<f64>(kernel, args, shape),
        _ => None,
    }?;
    let mut outs = match outs {
        Ok(o) => o,
        Err(e) => return Some(Err(e)),
    };
    debug_assert_eq!(outs.iter().filter(|o| o.is_none()).count(), lent);
    // The outputs written into lent buffers are those buffers, under new handles.
    for (i, l) in lend.iter().enumerate() {
        if let Some(output) = *l
            && let Some(slot) = outs.get_mut(output)
            && slot.is_none()
        {
            *slot = Some(inputs[i].reborn());
        }
    }
    Some(Ok(outs.into_iter().flatten().collect()))
}

/// The float dtype of a group, if the executor covers its dtypes: one float dtype (f32 or
/// f64) besides bool.
fn float_dtype(kernel: &Kernel, inputs: impl Iterator<Item = DType>) -> Option<DType> {
    let mut float = None;
    for dt in inputs.chain(kernel.steps.iter().map(|s| s.ty.dtype)) {
        match dt {
            DType::Bool => {}
            DType::F32 | DType::F64 if float.is_none_or(|f| f == dt) => float = Some(dt),
            _ => return None,
        }
    }
    Some(float.unwrap_or(DType::F32))
}

/// An input of one run.
enum Input<'a> {
    /// A tensor read where it is.
    Held(&'a Tensor),
    /// The buffer of a tensor lent to output `output`, which is written into it; its
    /// elements are read tile by tile before the output's are written there.
    Lent {
        output: usize,
        buf: &'a mut HostBuffer,
    },
    /// A lent buffer that could not be had after all (not reached: `is_unique_host` was
    /// checked just before).
    Gone,
}

/// Where a register's elements come from in one run.
#[derive(Clone, Copy, Debug)]
enum Reg<'a, T> {
    /// A float input of the output's shape, read in place.
    Slice(&'a [T]),
    /// A bool input of the output's shape.
    BSlice(&'a [bool]),
    /// A float input read through a strided walk of its buffer (a broadcast, transposed or
    /// sliced view at the output's shape), gathered into a slot per tile.
    Strided(&'a [T], &'a Walk, usize),
    /// A bool input read through a strided walk.
    BStrided(&'a [bool], &'a Walk, usize),
    /// A float input that is one value per row of the last axis (a `[..., 1]` column
    /// broadcast along it), when tiles are single rows: the tile's value, read in place.
    RowConst(&'a [T], &'a Rows),
    /// A float input whose rows are unit-stride runs of its buffer (a row vector broadcast
    /// along leading axes, say), when tiles are single rows: the tile's row, read in place.
    RowSlice(&'a [T], &'a Rows),
    /// A float scalar.
    Const(T),
    /// A bool scalar.
    BConst(bool),
    /// A float scratch slot.
    Slot(usize),
    /// A bool scratch slot.
    BSlot(usize),
    /// A float input lent to an output: copied into a slot at the start of each tile.
    Lent(usize),
    /// A bool input lent to an output.
    BLent(usize),
    /// The result of reduction `k` of the run (see [`Ctx::reductions`]): an output only,
    /// never a step's operand.
    Reduced(usize),
}

/// A held input seen at the output's shape: the view, its walk when it is not contiguous,
/// and its rows when tiles are single rows and it repeats along them.
type View = (Tensor, Option<Walk>, Option<Rows>);

/// Where each row of the last axis of an input's view starts in its buffer, for tiles of
/// one row each.
#[derive(Debug)]
struct Rows {
    /// The view's offset.
    offset: isize,
    /// (size, stride) of the axes before the last, outermost first.
    lead: Vec<(usize, isize)>,
    /// The length of a row (the last axis).
    len: usize,
}

impl Rows {
    /// The rows of `view`, a view whose walk stays inside its buffer (checked by
    /// `Walk::new`, so no offset computed here leaves it).
    fn new(view: &Tensor) -> Option<Rows> {
        let l = view.layout();
        let (&len, lead) = l.shape.split_last()?;
        Some(Rows {
            offset: isize::try_from(l.offset).ok()?,
            lead: lead
                .iter()
                .copied()
                .zip(l.strides.iter().copied())
                .collect(),
            len,
        })
    }

    /// The buffer offset of the element at flat index `start` of the view, and how many
    /// elements of its row follow it (itself included).
    #[inline(always)]
    fn at(&self, start: usize) -> (usize, usize) {
        let mut r = start / self.len;
        let col = start - r * self.len;
        let mut off = self.offset;
        // The row index is below the product of the leading sizes, so the outermost axis
        // takes what the inner ones leave without a division.
        if let Some((&(_, outer), inner)) = self.lead.split_first() {
            for &(d, s) in inner.iter().rev() {
                off += (r % d) as isize * s;
                r /= d;
            }
            off += r as isize * outer;
        }
        (off as usize, self.len - col)
    }
}

/// An operand as a step sees it on one tile.
#[derive(Clone, Copy)]
enum Arg<'a, E> {
    V(&'a [E]),
    S(E),
}

/// The scratch registers of one task.
struct Scratch<T> {
    t: Vec<Vec<T>>,
    b: Vec<Vec<bool>>,
}

/// Where a step's elements go on one tile.
enum Out<'a, T> {
    T(&'a mut [T]),
    B(&'a mut [bool]),
}

/// Where an output's elements go, for one task: the not yet written part of its vector,
/// or the part of a lent input's buffer (which holds that input's elements until written).
enum Dest<'a, T> {
    T(&'a mut [MaybeUninit<T>]),
    B(&'a mut [MaybeUninit<bool>]),
    LentT(&'a mut [T]),
    LentB(&'a mut [bool]),
}

/// A whole output (with its length, when allocated here).
enum OutBuf<'a, T> {
    T(Vec<T>, usize),
    B(Vec<bool>, usize),
    LentT(&'a mut [T]),
    LentB(&'a mut [bool]),
}

/// Runs `kernel` over elements of type `T` (and bool). Gives each output's tensor in order,
/// or `None` for an output written into a lent input's buffer.
fn run<T: Float>(
    kernel: &Kernel,
    inputs: Vec<Input<'_>>,
    shape: &[usize],
) -> Option<Result<Vec<Option<Tensor>>, String>> {
    if inputs.len() != kernel.inputs.len() {
        return None;
    }
    let n: usize = shape.iter().product();
    let mut cut = Cut::new(kernel, shape)?;
    // Tiles may be single rows of the last axis (see the module doc) when rows are long
    // enough that a step's loop over one row costs more than its dispatch, and the group's
    // reductions (if any) fold that axis alone.
    let row_len = shape.last().copied().unwrap_or(0);
    let by_rows = kernel.reduced_axes() <= 1 && (ROW_MIN..=ROW_CAP).contains(&row_len);
    // Every held input is seen at the output's shape (a broadcast view where it has fewer
    // elements; no copy), and read in place when that view is contiguous or else walked
    // tile by tile through its strides. Lent buffers are set aside, to become their
    // outputs' destinations.
    let mut views: Vec<Option<View>> = Vec::with_capacity(inputs.len());
    let mut lent_bufs: Vec<(usize, &mut HostBuffer)> = Vec::new();
    for input in inputs {
        match input {
            Input::Held(t) => {
                let view = if t.shape() == shape {
                    t.clone()
                } else {
                    t.broadcast_view(shape)
                };
                let walk = if view.is_contiguous() || view.numel() == 0 {
                    None
                } else {
                    let len = match view.dtype() {
                        DType::Bool => view.buffer::<bool>()?.len(),
                        _ => view.buffer::<T>()?.len(),
                    };
                    Some(Walk::new(view.layout(), len)?)
                };
                // A float input walked by rows that are one value, or a unit-stride run,
                // each is read in place when tiles are single rows.
                let rows = match view.layout().strides.last() {
                    Some(0 | 1) if by_rows && walk.is_some() && view.dtype() != DType::Bool => {
                        Rows::new(&view)
                    }
                    _ => None,
                };
                views.push(Some((view, walk, rows)));
            }
            Input::Lent { output, buf } => {
                views.push(None);
                lent_bufs.push((output, buf));
            }
            Input::Gone => return None,
        }
    }
    let mut regs: Vec<Reg<'_, T>> = Vec::with_capacity(kernel.inputs.len() + kernel.steps.len());
    let (mut t_slots, mut b_slots) = (0usize, 0usize);
    let mut gathers = Vec::new();
    // (output, register) of every lent input, in input order.
    let mut lent: Vec<(usize, usize)> = Vec::new();
    let mut lent_outputs = lent_bufs.iter().map(|(o, _)| *o);
    for (i, view) in views.iter().enumerate() {
        let Some((t, walk, rows)) = view else {
            let output = lent_outputs.next()?;
            let bool_input = kernel.inputs.get(i)?.dtype == DType::Bool;
            let reg = if bool_input {
                b_slots += 1;
                Reg::BLent(b_slots - 1)
            } else {
                t_slots += 1;
                Reg::Lent(t_slots - 1)
            };
            lent.push((output, regs.len()));
            regs.push(reg);
            continue;
        };
        // A scalar broadcast to the output is a constant, whatever its strides.
        let l = t.layout();
        let single = n > 0
            && l.shape
                .iter()
                .zip(&l.strides)
                .all(|(&d, &s)| d == 1 || s == 0);
        let reg = if t.dtype() == DType::Bool {
            let buf = t.buffer::<bool>()?;
            match walk {
                _ if single => Reg::BConst(*buf.get(t.layout().offset)?),
                None => Reg::BSlice(t.as_slice::<bool>()?),
                Some(w) => {
                    b_slots += 1;
                    gathers.push(regs.len());
                    Reg::BStrided(buf, w, b_slots - 1)
                }
            }
        } else {
            let buf = t.buffer::<T>()?;
            match walk {
                _ if single => Reg::Const(*buf.get(t.layout().offset)?),
                None => Reg::Slice(t.as_slice::<T>()?),
                Some(_) if let Some(rows) = rows => {
                    cut = Cut::rows(row_len);
                    if l.strides.last() == Some(&0) {
                        Reg::RowConst(buf, rows)
                    } else {
                        Reg::RowSlice(buf, rows)
                    }
                }
                Some(w) => {
                    t_slots += 1;
                    gathers.push(regs.len());
                    Reg::Strided(buf, w, t_slots - 1)
                }
            }
        };
        regs.push(reg);
    }
    // The last step that reads each register (outputs are read after every step). A
    // `stop_gradient` is its operand's register under another name, so reads of either
    // count for the register both stand for (`root`).
    let count = kernel.inputs.len() + kernel.steps.len();
    let mut root: Vec<usize> = (0..count).collect();
    for (k, s) in kernel.steps.iter().enumerate() {
        if let (Op::StopGradient {}, [a]) = (&s.op, s.args.as_slice()) {
            root[kernel.inputs.len() + k] = *root.get(*a)?;
        }
    }
    let mut last_use = vec![0usize; count];
    for (k, s) in kernel.steps.iter().enumerate() {
        // A reduction folds its operand after the tile's last step.
        let at = if matches!(s.op, Op::Reduce { .. }) {
            usize::MAX
        } else {
            k
        };
        for &a in &s.args {
            let r = *root.get(a)?;
            last_use[r] = last_use[r].max(at);
        }
    }
    for &o in &kernel.outputs {
        last_use[*root.get(o)?] = usize::MAX;
    }
    let (mut free_t, mut free_b): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    // Steps evaluated per tile: (step index, register).
    let mut program = Vec::new();
    // The reductions, folded after each tile's steps: (op, operand).
    let mut reductions: Vec<(ReduceOp, Reg<'_, T>)> = Vec::new();
    for (k, step) in kernel.steps.iter().enumerate() {
        let args: Vec<Reg<'_, T>> = step
            .args
            .iter()
            .map(|&a| regs.get(a).copied())
            .collect::<Option<_>>()?;
        if args.iter().any(|a| matches!(a, Reg::Reduced(_))) {
            return None;
        }
        let is_bool = step.ty.dtype == DType::Bool;
        let reg = match (&step.op, args.as_slice()) {
            (Op::StopGradient {}, [a]) => *a,
            (Op::Reduce { op, .. }, [a]) => {
                // Only float rows at the group's shape (bool reductions count in i64).
                let operand = kernel.ty(*step.args.first()?)?;
                if is_bool || operand.dtype == DType::Bool || operand.rank() != shape.len() {
                    return None;
                }
                reductions.push((*op, *a));
                Reg::Reduced(reductions.len() - 1)
            }
            (Op::Full { shape, value, .. }, []) if shape.rank() == 0 => {
                if is_bool {
                    Reg::BConst(*value != 0.0)
                } else {
                    Reg::Const(T::from_f64(*value))
                }
            }
            (op, args)
                if args
                    .iter()
                    .all(|a| matches!(a, Reg::Const(_) | Reg::BConst(_))) =>
            {
                // Every operand is a scalar: evaluate once, on one element.
                let sargs: Vec<AnyArg<'_, T>> = args.iter().map(|a| scalar_arg(*a)).collect();
                if is_bool {
                    let mut o = [false];
                    eval(op, &sargs, Out::B(&mut o))?;
                    Reg::BConst(o[0])
                } else {
                    let mut o = [T::default()];
                    eval(op, &sargs, Out::T(&mut o))?;
                    Reg::Const(o[0])
                }
            }
            _ => {
                let reg = if is_bool {
                    Reg::BSlot(free_b.pop().unwrap_or_else(|| {
                        b_slots += 1;
                        b_slots - 1
                    }))
                } else {
                    Reg::Slot(free_t.pop().unwrap_or_else(|| {
                        t_slots += 1;
                        t_slots - 1
                    }))
                };
                program.push((k, reg));
                reg
            }
        };
        if !supported(&step.op) {
            return None;
        }
        // Operands whose last reader is this step free their slots for later steps (after
        // this step's own slot was chosen, so a step never writes a slot it reads).
        for &a in &step.args {
            if last_use[root[a]] == k {
                match regs[a] {
                    Reg::Slot(s) if !free_t.contains(&s) => free_t.push(s),
                    Reg::BSlot(s) if !free_b.contains(&s) => free_b.push(s),
                    _ => {}
                }
            }
        }
        regs.push(reg);
    }
    let outputs: Vec<Reg<'_, T>> = kernel
        .outputs
        .iter()
        .map(|&o| regs.get(o).copied())
        .collect::<Option<_>>()?;
    let mut lent_dest: Vec<Option<&mut HostBuffer>> =
        (0..kernel.outputs.len()).map(|_| None).collect();
    for (output, buf) in lent_bufs {
        *lent_dest.get_mut(output)? = Some(buf);
    }
    // Each output's dims, and its elements per task: a reduction gives one per row.
    let mut sizes: Vec<(Vec<usize>, usize)> = Vec::with_capacity(kernel.outputs.len());
    let mut bufs: Vec<OutBuf<'_, T>> = Vec::with_capacity(kernel.outputs.len());
    for (i, (&o, lent)) in kernel.outputs.iter().zip(lent_dest).enumerate() {
        let is_bool = kernel.ty(o).map(|t| t.dtype) == Some(DType::Bool);
        let reduced = kernel.is_reduction(o);
        let len = if reduced { n / cut.row } else { n };
        let per = if reduced {
            cut.task / cut.row
        } else {
            cut.task
        };
        sizes.push((kernel.output_dims(i, shape)?, per));
        bufs.push(match (lent, is_bool) {
            (Some(_), _) if reduced => return None,
            (Some(b), true) => OutBuf::LentB(bool::slice_mut(b)?.get_mut(..n)?),
            (Some(b), false) => OutBuf::LentT(T::slice_mut(b)?.get_mut(..n)?),
            (None, true) => OutBuf::B(crate::buffer::unfilled::<bool>(len), len),
            (None, false) => OutBuf::T(crate::buffer::unfilled::<T>(len), len),
        });
    }
    let tasks = n.div_ceil(cut.task);
    let mut per_task: Vec<Vec<Dest<'_, T>>> = (0..tasks).map(|_| Vec::new()).collect();
    for (buf, &(_, per)) in bufs.iter_mut().zip(&sizes) {
        match buf {
            OutBuf::T(v, len) => {
                for (k, c) in v.spare_capacity_mut()[..*len].chunks_mut(per).enumerate() {
                    per_task[k].push(Dest::T(c));
                }
            }
            OutBuf::B(v, len) => {
                for (k, c) in v.spare_capacity_mut()[..*len].chunks_mut(per).enumerate() {
                    per_task[k].push(Dest::B(c));
                }
            }
            OutBuf::LentT(v) => {
                for (k, c) in v.chunks_mut(per).enumerate() {
                    per_task[k].push(Dest::LentT(c));
                }
            }
            OutBuf::LentB(v) => {
                for (k, c) in v.chunks_mut(per).enumerate() {
                    per_task[k].push(Dest::LentB(c));
                }
            }
        }
    }
    let ctx = Ctx {
        kernel,
        regs: &regs,
        program: &program,
        gathers: &gathers,
        lent: &lent,
        outputs: &outputs,
        reductions: &reductions,
        cut,
        n,
    };
    let scratch = || Scratch {
        t: vec![vec![T::default(); cut.tile]; t_slots],
        b: vec![vec![false; cut.tile]; b_slots],
    };
    // A task that starts after Ctrl-C writes nothing and fails, so the outputs are dropped
    // unfinished (the caller reports the interruption).
    let task = |scr: &mut Scratch<T>, (k, outs): (usize, Vec<Dest<'_, T>>)| -> bool {
        !crate::cancel::requested() && ctx.task(scr, k * cut.task, outs).is_some()
    };
    let ok = if n >= PAR_MIN_ELEMS {
        per_task
            .into_par_iter()
            .enumerate()
            .map_init(scratch, task)
            .all(|ok| ok)
    } else {
        let mut scr = scratch();
        per_task
            .into_iter()
            .enumerate()
            .all(|item| task(&mut scr, item))
    };
    if !ok {
        return Some(Err(
            "a fused kernel met an operand it was not built for".into()
        ));
    }
    Some(Ok(bufs
        .into_iter()
        .zip(sizes)
        .map(|(b, (dims, _))| match b {
            OutBuf::T(mut v, len) => {
                // SAFETY: the capacity is at least `len`, and every task succeeded: each
                // wrote every element of its chunk, and the chunks cover `0..len`.
                unsafe { v.set_len(len) };
                Some(Tensor::from_host_unchecked(T::into_buffer(v), &dims))
            }
            OutBuf::B(mut v, len) => {
                // SAFETY: as above.
                unsafe { v.set_len(len) };
                Some(Tensor::from_host_unchecked(bool::into_buffer(v), &dims))
            }
            OutBuf::LentT(_) | OutBuf::LentB(_) => None,
        })
        .collect()))
}

/// What every task of one run shares.
struct Ctx<'r, 'a, T> {
    kernel: &'r Kernel,
    regs: &'r [Reg<'a, T>],
    program: &'r [(usize, Reg<'a, T>)],
    gathers: &'r [usize],
    /// (output, register) of every input lent to an output.
    lent: &'r [(usize, usize)],
    outputs: &'r [Reg<'a, T>],
    /// The reductions: (op, operand register).
    reductions: &'r [(ReduceOp, Reg<'a, T>)],
    cut: Cut,
    n: usize,
}

/// How a run cuts its elements: tiles of whole rows, tasks of whole tiles.
#[derive(Clone, Copy, Debug)]
struct Cut {
    /// The length of the rows the group's reductions fold (1 when it has none).
    row: usize,
    /// Elements per tile: [`TILE`], or the whole rows that fit in it (at least one).
    tile: usize,
    /// Elements per parallel task: the whole tiles that fit in [`TASK`] (at least one).
    task: usize,
}

impl Cut {
    /// Tiles of one row of `len` elements each (the rows the reductions fold, if any).
    fn rows(len: usize) -> Cut {
        Cut {
            row: len,
            tile: len,
            task: len * (TASK / len).max(1),
        }
    }

    /// The cut of a run of `kernel` whose elementwise steps run at `shape`, or `None` when
    /// its rows are empty or longer than [`ROW_CAP`] (or `shape` lacks the reduced axes).
    fn new(kernel: &Kernel, shape: &[usize]) -> Option<Cut> {
        let kept = shape.len().checked_sub(kernel.reduced_axes())?;
        let row: usize = shape[kept..].iter().product();
        if row == 0 || row > ROW_CAP {
            return None;
        }
        let tile = row * (TILE / row).max(1);
        Some(Cut {
            row,
            tile,
            task: tile * (TASK / tile).max(1),
        })
    }
}

impl<T: Float> Ctx<'_, '_, T> {
    /// Runs the tiles of the task starting at element `base`, writing `outs`.
    /// Gives `None`, with the outputs possibly not all written, when a step meets operands
    /// it was not built for.
    fn task(&self, scr: &mut Scratch<T>, base: usize, outs: Vec<Dest<'_, T>>) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.task_avx2(scr, base, outs) };
        }
        self.task_body(scr, base, outs)
    }

    /// The tile loop compiled for AVX2: the arithmetic loops of the steps (inlined into
    /// it) then run 8 f32 lanes wide instead of SSE2's 4. The values do not change: the
    /// basic operations are exactly rounded at any width, and no multiply-add is fused.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn task_avx2(
        &self,
        scr: &mut Scratch<T>,
        base: usize,
        outs: Vec<Dest<'_, T>>,
    ) -> Option<()> {
        self.task_body(scr, base, outs)
    }

    #[inline(always)]
    fn task_body(
        &self,
        scr: &mut Scratch<T>,
        base: usize,
        mut outs: Vec<Dest<'_, T>>,
    ) -> Option<()> {
        let end = (base + self.cut.task).min(self.n);
        let mut start = base;
        while start < end {
            let len = self.cut.tile.min(end - start);
            for &g in self.gathers {
                match self.regs[g] {
                    Reg::Strided(src, walk, slot) => walk.read(src, start, &mut scr.t[slot][..len]),
                    Reg::BStrided(src, walk, slot) => {
                        walk.read(src, start, &mut scr.b[slot][..len]);
                    }
                    _ => {}
                }
            }
            // A lent input's tile is read out of the output's buffer before anything is
            // written there.
            let at = start - base;
            for &(o, r) in self.lent {
                match (self.regs[r], outs.get(o)?) {
                    (Reg::Lent(slot), Dest::LentT(d)) => {
                        scr.t[slot][..len].copy_from_slice(d.get(at..at + len)?);
                    }
                    (Reg::BLent(slot), Dest::LentB(d)) => {
                        scr.b[slot][..len].copy_from_slice(d.get(at..at + len)?);
                    }
                    _ => return None,
                }
            }
            for &(k, reg) in self.program {
                let step = self.kernel.steps.get(k)?;
                match reg {
                    Reg::Slot(s) => {
                        let mut o = std::mem::take(&mut scr.t[s]);
                        let r = self.step(step, scr, start, len, Out::T(&mut o[..len]));
                        scr.t[s] = o;
                        r?;
                    }
                    Reg::BSlot(s) => {
                        let mut o = std::mem::take(&mut scr.b[s]);
                        let r = self.step(step, scr, start, len, Out::B(&mut o[..len]));
                        scr.b[s] = o;
                        r?;
                    }
                    _ => return None,
                }
            }
            for (out, &reg) in outs.iter_mut().zip(self.outputs) {
                if let Reg::Reduced(j) = reg {
                    self.fold(j, scr, start, len, out, at)?;
                    continue;
                }
                match (out, arg(reg, scr, start, len)?) {
                    (Dest::T(o), AnyArg::T(a)) => put(a, o.get_mut(at..at + len)?),
                    (Dest::B(o), AnyArg::B(a)) => put(a, o.get_mut(at..at + len)?),
                    (Dest::LentT(o), AnyArg::T(a)) => put_lent(a, o.get_mut(at..at + len)?),
                    (Dest::LentB(o), AnyArg::B(a)) => put_lent(a, o.get_mut(at..at + len)?),
                    _ => return None,
                }
            }
            start += len;
        }
        Some(())
    }

    #[inline(always)]
    fn step(
        &self,
        step: &crate::fused::Step,
        scr: &Scratch<T>,
        start: usize,
        len: usize,
        out: Out<'_, T>,
    ) -> Option<()> {
        let mut args = [AnyArg::B(Arg::S(false)); 3];
        for (slot, &a) in args.iter_mut().zip(&step.args) {
            *slot = arg(*self.regs.get(a)?, scr, start, len)?;
        }
        eval(&step.op, args.get(..step.args.len())?, out)
    }

    /// Folds the rows of the tile `start..start + len` (whole rows, the tile's offset in
    /// its task being `at`) for reduction `j`, one element of `out` per row.
    #[inline(always)]
    fn fold(
        &self,
        j: usize,
        scr: &Scratch<T>,
        start: usize,
        len: usize,
        out: &mut Dest<'_, T>,
        at: usize,
    ) -> Option<()> {
        let &(op, src) = self.reductions.get(j)?;
        let row = self.cut.row;
        let Dest::T(o) = out else {
            return None;
        };
        let o = o.get_mut(at / row..(at + len) / row)?;
        match arg(src, scr, start, len)?.t()? {
            Arg::V(v) => {
                for (d, r) in o.iter_mut().zip(v.chunks_exact(row)) {
                    d.write(fold_row(op, r));
                }
            }
            Arg::S(x) => {
                // Every row is `x` repeated (an input of one element, broadcast): one row
                // folded gives them all.
                let folded = fold_row(op, &vec![x; row]);
                for d in o {
                    d.write(folded);
                }
            }
        }
        Some(())
    }
}

/// An operand of either element type.
#[derive(Clone, Copy)]
enum AnyArg<'a, T> {
    T(Arg<'a, T>),
    B(Arg<'a, bool>),
}

impl<'a, T: Copy> AnyArg<'a, T> {
    fn t(self) -> Option<Arg<'a, T>> {
        match self {
            AnyArg::T(a) => Some(a),
            AnyArg::B(_) => None,
        }
    }

    fn b(self) -> Option<Arg<'a, bool>> {
        match self {
            AnyArg::B(a) => Some(a),
            AnyArg::T(_) => None,
        }
    }
}

/// Register `reg` on the tile `start..start + len`; `None` for a reduction's result, which
/// is not an elementwise value. Inlined into the tile loop: a call per operand per step
/// costs a quarter of a fused softmax's time (the returned operand passes through memory).
#[inline(always)]
fn arg<'s, T: Copy>(
    reg: Reg<'s, T>,
    scr: &'s Scratch<T>,
    start: usize,
    len: usize,
) -> Option<AnyArg<'s, T>> {
    Some(match reg {
        Reg::Slice(s) => AnyArg::T(Arg::V(&s[start..start + len])),
        Reg::BSlice(s) => AnyArg::B(Arg::V(&s[start..start + len])),
        Reg::Const(x) => AnyArg::T(Arg::S(x)),
        Reg::BConst(x) => AnyArg::B(Arg::S(x)),
        Reg::Strided(_, _, s) | Reg::Slot(s) | Reg::Lent(s) => AnyArg::T(Arg::V(&scr.t[s][..len])),
        Reg::BStrided(_, _, s) | Reg::BSlot(s) | Reg::BLent(s) => {
            AnyArg::B(Arg::V(&scr.b[s][..len]))
        }
        Reg::RowConst(buf, rows) => AnyArg::T(Arg::S(*buf.get(rows.at(start).0)?)),
        Reg::RowSlice(buf, rows) => {
            let (off, left) = rows.at(start);
            if len > left {
                return None;
            }
            // The row's elements run at unit stride from `off`, plus the column.
            AnyArg::T(Arg::V(buf.get(off + (rows.len - left)..)?.get(..len)?))
        }
        Reg::Reduced(_) => return None,
    })
}

/// Writes a tile of an output.
#[inline(always)]
fn put<E: Copy>(a: Arg<'_, E>, o: &mut [MaybeUninit<E>]) {
    match a {
        Arg::V(v) => {
            for (d, &x) in o.iter_mut().zip(v) {
                d.write(x);
            }
        }
        Arg::S(x) => {
            for d in o {
                d.write(x);
            }
        }
    }
}

/// Writes a tile of an output into a lent buffer.
#[inline(always)]
fn put_lent<E: Copy>(a: Arg<'_, E>, o: &mut [E]) {
    match a {
        Arg::V(v) => o.copy_from_slice(v),
        Arg::S(x) => o.fill(x),
    }
}

/// A scalar register as an operand.
fn scalar_arg<T: Copy>(reg: Reg<'_, T>) -> AnyArg<'_, T> {
    match reg {
        Reg::BConst(x) => AnyArg::B(Arg::S(x)),
        Reg::Const(x) => AnyArg::T(Arg::S(x)),
        _ => AnyArg::B(Arg::S(false)),
    }
}

/// Whether the executor has a kernel for `op` (the dtypes are checked by [`exec`]).
fn supported(op: &Op) -> bool {
    match op {
        Op::Unary { .. }
        | Op::Binary { .. }
        | Op::Compare { .. }
        | Op::Select {}
        | Op::StopGradient {}
        | Op::Reduce { .. } => true,
        Op::Full { shape, .. } => shape.rank() == 0,
        _ => false,
    }
}

/// Evaluates one step on one tile.
#[inline(always)]
fn eval<T: Float>(op: &Op, args: &[AnyArg<'_, T>], out: Out<'_, T>) -> Option<()> {
    match (op, out, args) {
        (Op::Unary { op }, Out::T(o), [x]) => match x.t()? {
            Arg::V(x) => T::unary(*op, x, o),
            Arg::S(x) => {
                let mut r = [T::default()];
                T::unary(*op, &[x], &mut r);
                o.fill(r[0]);
            }
        },
        (Op::Unary { op: UnaryOp::Not }, Out::B(o), [x]) => map1(x.b()?, o, |v: bool| !v),
        (Op::Unary { op: UnaryOp::IsNan }, Out::B(o), [x]) => {
            map1(x.t()?, o, |v: T| v.to_f64().is_nan());
        }
        (
            Op::Unary {
                op: UnaryOp::IsFinite,
            },
            Out::B(o),
            [x],
        ) => {
            map1(x.t()?, o, |v: T| v.to_f64().is_finite());
        }
        (Op::Binary { op }, Out::T(o), [a, b]) => {
            let (a, b) = (a.t()?, b.t()?);
            match op {
                BinaryOp::Add => map2(a, b, o, T::add),
                BinaryOp::Sub => map2(a, b, o, T::sub),
                BinaryOp::Mul => map2(a, b, o, T::mul),
                BinaryOp::Div => map2(a, b, o, T::div),
                BinaryOp::Rem => map2(a, b, o, T::rem),
                BinaryOp::FloorDiv => map2(a, b, o, T::floor_div),
                BinaryOp::Pow => map2(a, b, o, T::pow),
                BinaryOp::Maximum => map2(a, b, o, T::maximum),
                BinaryOp::Minimum => map2(a, b, o, T::minimum),
                BinaryOp::And | BinaryOp::Or => return None,
            }
        }
        (Op::Binary { op }, Out::B(o), [a, b]) => {
            let (a, b) = (a.b()?, b.b()?);
            match op {
                BinaryOp::And => map2(a, b, o, |x: bool, y: bool| x && y),
                BinaryOp::Or => map2(a, b, o, |x: bool, y: bool| x || y),
                _ => return None,
            }
        }
        (Op::Compare { op }, Out::B(o), [a, b]) => {
            let (a, b) = (a.t()?, b.t()?);
            match op {
                CmpOp::Eq => map2(a, b, o, |x: T, y: T| x == y),
                CmpOp::Ne => map2(a, b, o, |x: T, y: T| x != y),
                CmpOp::Lt => map2(a, b, o, |x: T, y: T| x < y),
                CmpOp::Le => map2(a, b, o, |x: T, y: T| x <= y),
                CmpOp::Gt => map2(a, b, o, |x: T, y: T| x > y),
                CmpOp::Ge => map2(a, b, o, |x: T, y: T| x >= y),
            }
        }
        (Op::Select {}, Out::T(o), [c, a, b]) => {
            let (c, a, b) = (c.b()?, a.t()?, b.t()?);
            select(c, a, b, o);
        }
        _ => return None,
    }
    Some(())
}

#[inline(always)]
fn map1<A: Copy, O: Copy>(a: Arg<'_, A>, o: &mut [O], f: impl Fn(A) -> O) {
    match a {
        Arg::V(x) => {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = f(x);
            }
        }
        Arg::S(x) => o.fill(f(x)),
    }
}

#[inline(always)]
fn map2<A: Copy, B: Copy, O: Copy>(
    a: Arg<'_, A>,
    b: Arg<'_, B>,
    o: &mut [O],
    f: impl Fn(A, B) -> O,
) {
    match (a, b) {
        (Arg::V(x), Arg::V(y)) => {
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                *o = f(x, y);
            }
        }
        (Arg::V(x), Arg::S(y)) => {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = f(x, y);
            }
        }
        (Arg::S(x), Arg::V(y)) => {
            for (o, &y) in o.iter_mut().zip(y) {
                *o = f(x, y);
            }
        }
        (Arg::S(x), Arg::S(y)) => o.fill(f(x, y)),
    }
}

#[inline(always)]
fn select<T: Copy>(c: Arg<'_, bool>, a: Arg<'_, T>, b: Arg<'_, T>, o: &mut [T]) {
    // Each shape of operands gets its own plain loop, so that LLVM vectorises it.
    let c = match c {
        Arg::S(k) => return map1(if k { a } else { b }, o, |x: T| x),
        Arg::V(c) => c,
    };
    match (a, b) {
        (Arg::V(a), Arg::V(b)) => {
            for (((o, &k), &x), &y) in o.iter_mut().zip(c).zip(a).zip(b) {
                *o = if k { x } else { y };
            }
        }
        (Arg::V(a), Arg::S(y)) => {
            for ((o, &k), &x) in o.iter_mut().zip(c).zip(a) {
                *o = if k { x } else { y };
            }
        }
        (Arg::S(x), Arg::V(b)) => {
            for ((o, &k), &y) in o.iter_mut().zip(c).zip(b) {
                *o = if k { x } else { y };
            }
        }
        (Arg::S(x), Arg::S(y)) => {
            for (o, &k) in o.iter_mut().zip(c) {
                *o = if k { x } else { y };
            }
        }
    }
}
