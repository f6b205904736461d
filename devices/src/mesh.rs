//! Collectives over a mesh of devices, and a communicator for ranks on threads.
//!
//! A *mesh* is a set of ranks, each of which holds one *part* of a value. A collective
//! combines the parts of a *group* of ranks: [`all_reduce`] folds them elementwise,
//! [`all_gather`] concatenates them, [`reduce_scatter`] folds them and gives each rank one
//! piece of the result, [`all_to_all`] exchanges pieces so that a tensor split along one axis
//! becomes split along another, and [`broadcast`] gives every rank the root's part.
//!
//! The functions of this module are *functional*: they take a group's parts in rank order and
//! give the results per rank. They are written against [`Device`] and combine parts with the
//! primitives every device already runs (`Op::Binary` `add`/`maximum`/`minimum` for
//! reductions, `Op::Concat` for gathers, `Op::Slice` for splits), so they work on any device
//! and need no kernel of their own. [`Comm`] builds on them for ranks that run on threads of
//! one process (the virtual CPU mesh of `--devices cpu:N`): each call is a rendezvous at
//! which every member deposits its part and gets its result.
//!
//! # Bitwise-reproducible mode
//!
//! Floating-point addition is not associative, so a sum over ranks depends on the order in
//! which the parts are combined. Here that order is fixed: parts are folded in rank order,
//! `((p0 ⊕ p1) ⊕ p2) ⊕ …`, whatever order the ranks arrived in and whichever thread computes.
//! Results are therefore bitwise reproducible from run to run and independent of thread
//! timing. This is the only mode: a faster, order-dependent one (a ring or a tree) would make
//! a program's numbers change between runs, which a reference backend must not do.
//!
//! # Uneven splits
//!
//! A length that does not divide by the number of pieces is split as NumPy's
//! `array_split` does ([`split_sizes`]): the first `len % n` pieces are one element
//! longer. Ten rows over four ranks are 3, 3, 2 and 2 rows; two rows over four ranks are 1,
//! 1, 0 and 0 rows (zero-size pieces are ordinary tensors).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ir::{Op, SliceDim};

use crate::{Device, DeviceError, Tensor, cancel};

/// Sizes of `n` pieces of a length `len`, as even as possible: the first `len % n` pieces are
/// one longer than the others (NumPy's `array_split`). The sizes add up to `len`; when
/// `len < n` the last pieces are empty. `n == 0` gives no pieces.
pub fn split_sizes(len: usize, n: usize) -> Vec<usize> {
    (0..n).map(|i| split_range(len, n, i).len()).collect()
}

/// Where each of the `n` pieces of [`split_sizes`] starts: piece `i` covers
/// `split_offsets(len, n)[i] ..` for `split_sizes(len, n)[i]` elements.
pub fn split_offsets(len: usize, n: usize) -> Vec<usize> {
    (0..n).map(|i| split_range(len, n, i).start).collect()
}

/// The elements of piece `index` of `n` pieces of a length `len` (see [`split_sizes`]).
/// Computed directly, without the other pieces, so that a rank can find its own piece in
/// constant time. An `index` of `n` or more gives the empty range at `len`; `n == 0` gives
/// the empty range at 0.
pub fn split_range(len: usize, n: usize, index: usize) -> Range<usize> {
    if n == 0 {
        return 0..0;
    }
    if index >= n {
        return len..len;
    }
    let base = len / n;
    let extra = len % n;
    let start = index * base + index.min(extra);
    let size = base + usize::from(index < extra);
    start..start + size
}

/// How an all-reduce or a reduce-scatter combines the parts, elementwise: the IR's own
/// (`ir::parallel::ReduceKind`), which names the binary primitive that combines two parts.
pub use ir::parallel::ReduceKind;

fn err(op: &'static str, message: impl Into<String>) -> DeviceError {
    DeviceError::Collective {
        op,
        message: message.into(),
    }
}

/// Refuses an empty group: a collective needs at least one part to know the result's type.
fn check_nonempty(op: &'static str, parts: &[Tensor]) -> Result<(), DeviceError> {
    if parts.is_empty() {
        Err(err(op, "the group has no parts"))
    } else {
        Ok(())
    }
}

/// Refuses an axis that part 0 does not have (all parts have its rank once
/// [`check_parts`] has passed).
fn check_axis(op: &'static str, what: &str, axis: usize, rank: usize) -> Result<(), DeviceError> {
    if axis < rank {
        Ok(())
    } else {
        Err(err(
            op,
            format!("{what} {axis} is out of range for parts of rank {rank}"),
        ))
    }
}

/// Checks that every part has part 0's dtype and rank, and its dims on every axis but
/// `free` (the axis along which parts may differ: a gather's or an all-to-all's concat axis).
fn check_parts(op: &'static str, parts: &[Tensor], free: Option<usize>) -> Result<(), DeviceError> {
    let first = &parts[0];
    for (i, p) in parts.iter().enumerate().skip(1) {
        if p.dtype() != first.dtype() {
            return Err(err(
                op,
                format!("part {i} is {} but part 0 is {}", p.dtype(), first.dtype()),
            ));
        }
        let agree = p.rank() == first.rank()
            && p.shape()
                .iter()
                .zip(first.shape())
                .enumerate()
                .all(|(ax, (a, b))| Some(ax) == free || a == b);
        if !agree {
            let except = free.map_or(String::new(), |ax| format!(" (except along axis {ax})"));
            return Err(err(
                op,
                format!(
                    "part {i} has shape {:?} but part 0 has {:?}; they must agree{except}",
                    p.shape(),
                    first.shape()
                ),
            ));
        }
    }
    Ok(())
}

/// The elements `range` of `t` along `axis`, as a view (`Op::Slice`).
fn slice_axis(
    dev: &dyn Device,
    t: &Tensor,
    axis: usize,
    range: Range<usize>,
) -> Result<Tensor, DeviceError> {
    let mut dims: Vec<SliceDim> = t.shape().iter().map(|&d| SliceDim::full(d)).collect();
    dims[axis] = SliceDim {
        start: range.start,
        len: range.len(),
        step: 1,
    };
    dev.exec(&Op::Slice { dims }, &[t])
}

/// `Op::Concat` of `parts` along `axis`; a single part is its own concatenation and is
/// returned as it is (tensors are immutable, so sharing it is safe and copies nothing).
fn concat(dev: &dyn Device, parts: &[&Tensor], axis: usize) -> Result<Tensor, DeviceError> {
    match parts {
        [one] => Ok((*one).clone()),
        _ => dev.exec(&Op::Concat { axis }, parts),
    }
}

/// Folds the parts elementwise with `op`, in rank order: `((p0 ⊕ p1) ⊕ p2) ⊕ …`.
///
/// The parts must have one shape and one dtype. The order is fixed, so the result is the
/// same bit for bit however the parts were produced and whichever thread runs this (the
/// module's bitwise-reproducible mode). A single part is the result as it is. Errors of
/// the device's kernel (a dtype `add` does not take, such as `bool`) come back unchanged.
pub fn all_reduce(
    dev: &dyn Device,
    parts: &[Tensor],
    op: ReduceKind,
) -> Result<Tensor, DeviceError> {
    const NAME: &str = "all_reduce";
    check_nonempty(NAME, parts)?;
    check_parts(NAME, parts, None)?;
    let bin = Op::Binary {
        op: op.binary_op(parts[0].dtype()),
    };
    let mut acc = parts[0].clone();
    for p in &parts[1..] {
        acc = dev.exec(&bin, &[&acc, p])?;
    }
    Ok(acc)
}

/// Concatenates the parts along `axis`, in rank order: the inverse of sharding with
/// [`shard`]. Parts may differ in size along `axis` (an uneven split), and must agree on
/// every other axis and on the dtype.
pub fn all_gather(dev: &dyn Device, parts: &[Tensor], axis: usize) -> Result<Tensor, DeviceError> {
    const NAME: &str = "all_gather";
    check_nonempty(NAME, parts)?;
    check_axis(NAME, "axis", axis, parts[0].rank())?;
    check_parts(NAME, parts, Some(axis))?;
    let refs: Vec<&Tensor> = parts.iter().collect();
    concat(dev, &refs, axis)
}

/// Folds the parts like [`all_reduce`] and splits the result along `axis` into one piece
/// per rank ([`split_sizes`]): rank `i` gets piece `i`. The pieces are views of the one
/// reduced tensor, so the split copies nothing.
pub fn reduce_scatter(
    dev: &dyn Device,
    parts: &[Tensor],
    op: ReduceKind,
    axis: usize,
) -> Result<Vec<Tensor>, DeviceError> {
    const NAME: &str = "reduce_scatter";
    check_nonempty(NAME, parts)?;
    // Checked before reducing so that a bad axis costs no arithmetic.
    check_axis(NAME, "axis", axis, parts[0].rank())?;
    let full = all_reduce(dev, parts, op).map_err(|e| rename(e, NAME))?;
    let n = parts.len();
    let len = full.shape()[axis];
    (0..n)
        .map(|i| slice_axis(dev, &full, axis, split_range(len, n, i)))
        .collect()
}

/// Exchanges pieces between ranks: each rank's part is split along `split_axis` into one
/// piece per rank ([`split_sizes`]), and rank `i` gets the concatenation along
/// `concat_axis` of piece `i` of every rank's part, in rank order.
///
/// This turns a tensor sharded along `concat_axis` into one sharded along `split_axis`;
/// calling it again with the axes swapped gives the original parts back. Parts must agree
/// in dtype, rank and every dim but `concat_axis` (along which they may be uneven shards).
pub fn all_to_all(
    dev: &dyn Device,
    parts: &[Tensor],
    split_axis: usize,
    concat_axis: usize,
) -> Result<Vec<Tensor>, DeviceError> {
    const NAME: &str = "all_to_all";
    check_nonempty(NAME, parts)?;
    let rank = parts[0].rank();
    check_axis(NAME, "split axis", split_axis, rank)?;
    check_axis(NAME, "concat axis", concat_axis, rank)?;
    check_parts(NAME, parts, Some(concat_axis))?;
    let n = parts.len();
    // pieces[r][i]: piece i of rank r's part.
    let pieces: Vec<Vec<Tensor>> = parts
        .iter()
        .map(|p| {
            let len = p.shape()[split_axis];
            (0..n)
                .map(|i| slice_axis(dev, p, split_axis, split_range(len, n, i)))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    (0..n)
        .map(|i| {
            let column: Vec<&Tensor> = pieces.iter().map(|row| &row[i]).collect();
            concat(dev, &column, concat_axis)
        })
        .collect()
}

/// Gives every rank the part of rank `root`. The other parts stand for the buffers the
/// result replaces (as in NCCL), so they must have the root's shape and dtype: a rank that
/// expected something else is a program error worth reporting. The result shares the root's
/// buffer; nothing is copied.
pub fn broadcast(parts: &[Tensor], root: usize) -> Result<Vec<Tensor>, DeviceError> {
    const NAME: &str = "broadcast";
    check_nonempty(NAME, parts)?;
    if root >= parts.len() {
        return Err(err(
            NAME,
            format!("root {root} is not in a group of {} ranks", parts.len()),
        ));
    }
    check_parts(NAME, parts, None)?;
    Ok(vec![parts[root].clone(); parts.len()])
}

/// Piece `index` of `n` of `t` split along `axis` ([`split_sizes`]): what rank `index` holds
/// when `t` is sharded over `n` ranks. A view; [`all_gather`] of all `n` pieces gives `t`.
pub fn shard(
    dev: &dyn Device,
    t: &Tensor,
    axis: usize,
    n: usize,
    index: usize,
) -> Result<Tensor, DeviceError> {
    const NAME: &str = "shard";
    check_axis(NAME, "axis", axis, t.rank())?;
    if index >= n {
        return Err(err(
            NAME,
            format!("piece {index} does not exist among {n} pieces"),
        ));
    }
    slice_axis(dev, t, axis, split_range(t.shape()[axis], n, index))
}

/// A collective error raised by a helper collective, under the name of the caller.
fn rename(e: DeviceError, op: &'static str) -> DeviceError {
    match e {
        DeviceError::Collective { message, .. } => DeviceError::Collective { op, message },
        other => other,
    }
}

// ---------------------------------------------------------------------------------------
// The communicator.
// ---------------------------------------------------------------------------------------

/// How long a waiting rank sleeps before it looks at the cancel flag again. Aborts and
/// results wake it at once (through the condition variable); only Ctrl-C, which cannot
/// signal a condition variable, waits for this.
const POLL: Duration = Duration::from_millis(50);

/// One collective call as a member made it: what the members of a group must agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    AllReduce {
        op: ReduceKind,
    },
    AllGather {
        axis: usize,
    },
    ReduceScatter {
        op: ReduceKind,
        axis: usize,
    },
    AllToAll {
        split_axis: usize,
        concat_axis: usize,
    },
    Broadcast {
        root: usize,
    },
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::AllReduce { .. } => "all_reduce",
            Call::AllGather { .. } => "all_gather",
            Call::ReduceScatter { .. } => "reduce_scatter",
            Call::AllToAll { .. } => "all_to_all",
            Call::Broadcast { .. } => "broadcast",
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Call::AllReduce { op } => write!(f, "all_reduce({op})"),
            Call::AllGather { axis } => write!(f, "all_gather(axis {axis})"),
            Call::ReduceScatter { op, axis } => write!(f, "reduce_scatter({op}, axis {axis})"),
            Call::AllToAll {
                split_axis,
                concat_axis,
            } => write!(
                f,
                "all_to_all(split axis {split_axis}, concat axis {concat_axis})"
            ),
            Call::Broadcast { root } => write!(f, "broadcast(root {root})"),
        }
    }
}

/// One matched call of a group: the `seq`-th collective of each of its members.
#[derive(Debug)]
struct Round {
    /// What each member (by position in the group) brought, until the round is computed.
    deposits: Vec<Option<(Call, Tensor)>>,
    /// Which members have arrived (kept after the deposits are taken for computing).
    arrived: Vec<bool>,
    /// The results per member once computed, or the error every member gets.
    outcome: Option<Result<Vec<Option<Tensor>>, DeviceError>>,
    /// How many members have taken their result; the round is dropped when all have.
    taken: usize,
}

impl Round {
    fn new(n: usize) -> Round {
        Round {
            deposits: vec![None; n],
            arrived: vec![false; n],
            outcome: None,
            taken: 0,
        }
    }
}

/// The collectives of one group of ranks, matched by sequence number.
#[derive(Debug)]
struct Group {
    /// The sequence number of each member's next call on this group.
    next_seq: Vec<u64>,
    /// Rounds some member has reached and not every member has left.
    rounds: BTreeMap<u64, Round>,
}

/// Why the communicator stopped: the first rank to abort, and its reason.
#[derive(Clone, Debug)]
struct Aborted {
    rank: usize,
    why: String,
}

#[derive(Debug)]
struct State {
    aborted: Option<Aborted>,
    /// Ranks whose handle was finished cleanly: they will make no more calls.
    finished: Vec<bool>,
    /// Groups by their sorted members. On a 2-D mesh the rows and the columns are
    /// different groups, so their collectives are matched independently.
    groups: HashMap<Vec<usize>, Group>,
}

#[derive(Debug)]
struct Shared {
    size: usize,
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    /// The state, recovering it if a thread panicked while holding the lock: every update
    /// made under the lock leaves the state consistent at each step (a map insert, a flag),
    /// so what a panicking thread left is still valid, and a panic in one rank must turn
    /// into errors for the others, not into more panics.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn abort(&self, rank: usize, why: &str) {
        let mut st = self.lock();
        if st.aborted.is_none() {
            st.aborted = Some(Aborted {
                rank,
                why: why.to_string(),
            });
        }
        drop(st);
        self.wake.notify_all();
    }
}

/// One rank's handle on a communicator for ranks running on threads of one process: the
/// virtual CPU mesh of `--devices cpu:N`.
///
/// Every collective is a rendezvous of the members of a group (a sorted list of ranks, a
/// sub-group of the mesh: on a 2 × 2 mesh, ranks {0, 1} may reduce while {2, 3} do,
/// independently). Each member deposits its part and waits; the last to arrive computes
/// the results with this module's functional collectives, on the device it passed, reading
/// the parts in rank order, and every member gets its own. Which member arrives last, and
/// so which thread computes, changes nothing in the values (the bitwise-reproducible mode
/// of the module doc). The members of the CPU mesh share the host, so any of them can
/// compute; a GPU mesh will use NCCL instead of this type.
///
/// The calls of one group are matched in order: the `k`-th call a member makes on a group
/// meets the `k`-th call of every other member on that group. If they disagree (a different
/// collective, axis, reduction, root, shape or dtype), every member gets the same
/// [`DeviceError::Collective`] error, so that none waits forever and all can report it.
/// Ranks that disagree on the group itself (rank 0 names `[0, 1]`, rank 1 names
/// `[0, 1, 2]`) cannot be told from a rank that is merely late, as in MPI: they wait until
/// a rank finishes or aborts, or Ctrl-C.
///
/// **Stopping.** A rank that stops must say so, or the others would wait for it forever.
/// [`Comm::finish`] says that the rank is done: collectives that still need it fail
/// instead of waiting. [`Comm::abort`] stops the whole communicator: every pending and
/// later call on any rank returns an error naming the rank that aborted. Dropping a handle
/// without `finish` aborts, so a rank whose thread returns early with an error or panics
/// cannot leave the others hanging. Ctrl-C ([`crate::cancel`]) is honoured while waiting:
/// the waiting call returns [`DeviceError::Interrupted`] and aborts the communicator, whose
/// ranks would otherwise no longer agree on the sequence of their calls.
///
/// A handle is `Send` (it moves to its rank's thread) but not `Sync`: one rank's calls
/// must be made in one order, which sharing the handle between threads would not give.
///
/// **Traffic.** The threads share memory, so nothing is sent; [`Comm::bytes_sent`] counts
/// what this rank would send over a link with the ring algorithms the planner's cost model
/// prices (`ir::parallel::estimate`), from the tensors of the calls that completed.
pub struct Comm {
    rank: usize,
    shared: Arc<Shared>,
    /// Set by [`Comm::finish`], read by `Drop`.
    finished: bool,
    /// The bytes of [`Comm::bytes_sent`].
    sent: Cell<u64>,
    /// Makes the handle `!Sync` (see the type's doc).
    _not_sync: PhantomData<Cell<()>>,
}

/// The bytes one member of `n` sends in a collective under ring algorithms, given its part
/// and its result: an all-reduce sends its part twice over less its own share
/// (reduce-scatter, then all-gather); an all-gather all of the result but its own piece;
/// a reduce-scatter and an all-to-all their part less their own share; a broadcast's
/// root its part to each other member. The integer arithmetic is `ir::parallel::estimate`'s.
fn ring_bytes(call: Call, part: &Tensor, result: &Tensor, n: usize, root: bool) -> u64 {
    let bytes = |t: &Tensor| (t.numel() * t.dtype().size_of()) as u64;
    let (n, k) = (n as u64, n.saturating_sub(1) as u64);
    let n1 = n.max(1);
    match call {
        Call::AllReduce { .. } => 2 * bytes(part) * k / n1,
        Call::AllGather { .. } => bytes(result) * k / n1,
        Call::ReduceScatter { .. } | Call::AllToAll { .. } => bytes(part) * k / n1,
        Call::Broadcast { .. } => {
            if root {
                bytes(part) * k
            } else {
                0
            }
        }
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Comm")
            .field("rank", &self.rank)
            .field("size", &self.shared.size)
            .finish_non_exhaustive()
    }
}

/// What a device of a mesh needs from its communicator to run a partitioned graph: its
/// rank and the two collectives the partitioner emits. The threads of one process
/// ([`Comm`]) and the processes of `mpirun` (`crate::mesh_mpi`, the `mpi` feature) both
/// provide it.
pub trait Collectives {
    /// This device's rank.
    fn rank(&self) -> usize;

    /// The bytes this device has sent in collectives so far ([`Comm::bytes_sent`]; over
    /// MPI, the bytes handed to MPI for other processes).
    fn bytes_sent(&self) -> u64;

    /// [`Comm::all_reduce`].
    fn all_reduce(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        op: ReduceKind,
        members: &[usize],
    ) -> Result<Tensor, DeviceError>;

    /// [`Comm::all_gather`].
    fn all_gather(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        axis: usize,
        members: &[usize],
    ) -> Result<Tensor, DeviceError>;

    /// [`Comm::all_to_all`].
    fn all_to_all(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        split_axis: usize,
        concat_axis: usize,
        members: &[usize],
    ) -> Result<Tensor, DeviceError>;
}

impl Collectives for Comm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn bytes_sent(&self) -> u64 {
        Comm::bytes_sent(self)
    }

    fn all_reduce(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        op: ReduceKind,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        Comm::all_reduce(self, dev, t, op, members)
    }

    fn all_gather(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        axis: usize,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        Comm::all_gather(self, dev, t, axis, members)
    }

    fn all_to_all(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        split_axis: usize,
        concat_axis: usize,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        Comm::all_to_all(self, dev, t, split_axis, concat_axis, members)
    }
}

impl Comm {
    /// A communicator of `n` ranks: one handle per rank, in rank order, each to be moved to
    /// the thread that runs that rank. `n == 0` gives no handles.
    pub fn group(n: usize) -> Vec<Comm> {
        let shared = Arc::new(Shared {
            size: n,
            state: Mutex::new(State {
                aborted: None,
                finished: vec![false; n],
                groups: HashMap::new(),
            }),
            wake: Condvar::new(),
        });
        (0..n)
            .map(|rank| Comm {
                rank,
                shared: Arc::clone(&shared),
                finished: false,
                sent: Cell::new(0),
                _not_sync: PhantomData,
            })
            .collect()
    }

    /// This handle's rank, from 0.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks in the communicator.
    pub fn size(&self) -> usize {
        self.shared.size
    }

    /// The bytes this rank has sent in the collectives that completed, counted as the ring
    /// algorithms send them (see the type's doc).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.get()
    }

    /// Stops the communicator: every pending and later collective on any rank returns a
    /// [`DeviceError::Collective`] error that names this rank and `why`. Collectives that
    /// had already computed their results still deliver them. Only the first abort is
    /// remembered.
    pub fn abort(&self, why: &str) {
        self.shared.abort(self.rank, why);
    }

    /// Says that this rank is done and will make no more calls. Collectives of other ranks
    /// that still need this one fail with an error naming it, instead of waiting; those
    /// that do not involve it go on. Dropping a handle without calling this aborts the
    /// communicator (see [`Comm::abort`]).
    pub fn finish(mut self) {
        self.finished = true;
    }

    /// Folds the members' parts elementwise ([`all_reduce`]); every member gets the result.
    pub fn all_reduce(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        op: ReduceKind,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        self.rendezvous(Some(dev), Call::AllReduce { op }, t, members)
    }

    /// Concatenates the members' parts along `axis` in rank order ([`all_gather`]); every
    /// member gets the result.
    pub fn all_gather(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        axis: usize,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        self.rendezvous(Some(dev), Call::AllGather { axis }, t, members)
    }

    /// Folds the members' parts and gives this rank its piece along `axis`
    /// ([`reduce_scatter`]): the member at position `i` of `members` gets piece `i`.
    pub fn reduce_scatter(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        op: ReduceKind,
        axis: usize,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        self.rendezvous(Some(dev), Call::ReduceScatter { op, axis }, t, members)
    }

    /// Exchanges pieces between the members ([`all_to_all`]): the member at position `i`
    /// of `members` gets piece `i` of every member's part along `split_axis`, concatenated
    /// along `concat_axis`.
    pub fn all_to_all(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        split_axis: usize,
        concat_axis: usize,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        let call = Call::AllToAll {
            split_axis,
            concat_axis,
        };
        self.rendezvous(Some(dev), call, t, members)
    }

    /// Gives every member the part of rank `root` (a rank number, one of `members`). The
    /// other members pass a tensor of the same shape and dtype ([`broadcast`]). Nothing is
    /// computed, so no device is needed.
    pub fn broadcast(
        &self,
        t: &Tensor,
        root: usize,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        self.rendezvous(None, Call::Broadcast { root }, t, members)
    }

    /// This rank's position in `members`, after checking that `members` is a group of this
    /// communicator that contains it.
    fn position(&self, call: Call, members: &[usize]) -> Result<usize, DeviceError> {
        let name = call.name();
        if members.windows(2).any(|w| w[0] >= w[1]) {
            return Err(err(
                name,
                format!("the members {members:?} must be sorted and distinct"),
            ));
        }
        if let Some(&r) = members.iter().find(|&&r| r >= self.size()) {
            return Err(err(
                name,
                format!(
                    "member {r} is not a rank of this communicator of {}",
                    self.size()
                ),
            ));
        }
        members.binary_search(&self.rank).map_err(|_| {
            err(
                name,
                format!("rank {} is not one of the members {members:?}", self.rank),
            )
        })
    }

    /// One collective: deposit this rank's part, compute if this rank completes the round,
    /// wait for the round's outcome, and take this rank's result.
    fn rendezvous(
        &self,
        dev: Option<&dyn Device>,
        call: Call,
        t: &Tensor,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        let result = self.exchange(dev, call, t, members)?;
        let root = matches!(call, Call::Broadcast { root } if root == self.rank);
        let sent = ring_bytes(call, t, &result, members.len(), root);
        self.sent.set(self.sent.get().saturating_add(sent));
        Ok(result)
    }

    /// [`Comm::rendezvous`] without the count of bytes.
    fn exchange(
        &self,
        dev: Option<&dyn Device>,
        call: Call,
        t: &Tensor,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        let pos = self.position(call, members)?;
        let n = members.len();
        let shared = &*self.shared;
        let mut st = shared.lock();
        if cancel::requested() {
            drop(st);
            shared.abort(self.rank, "interrupted");
            return Err(DeviceError::Interrupted);
        }
        if let Some(a) = &st.aborted {
            return Err(aborted_error(call.name(), a));
        }
        let group = st.groups.entry(members.to_vec()).or_insert_with(|| Group {
            next_seq: vec![0; n],
            rounds: BTreeMap::new(),
        });
        let seq = group.next_seq[pos];
        group.next_seq[pos] += 1;
        let round = group.rounds.entry(seq).or_insert_with(|| Round::new(n));
        round.arrived[pos] = true;
        // A round that already failed (a member finished without joining it) takes no part.
        if round.outcome.is_none() {
            round.deposits[pos] = Some((call, t.clone()));
        }
        if round.outcome.is_none() && round.arrived.iter().all(|&a| a) {
            // This rank completes the round: take the parts and compute without the lock,
            // so that other groups' collectives go on meanwhile.
            let deposits: Vec<(Call, Tensor)> =
                round.deposits.iter_mut().filter_map(Option::take).collect();
            drop(st);
            let outcome = compute(dev, members, &deposits);
            st = shared.lock();
            if let Some(round) = round_mut(&mut st, members, seq) {
                round.outcome = Some(outcome.map(|v| v.into_iter().map(Some).collect()));
            }
            shared.wake.notify_all();
        }
        loop {
            let State {
                aborted,
                finished,
                groups,
            } = &mut *st;
            let Some(round) = groups.get_mut(members).and_then(|g| g.rounds.get_mut(&seq)) else {
                // Unreachable: a round is dropped only after every member took its result.
                return Err(err(call.name(), "the round was lost"));
            };
            if let Some(outcome) = &mut round.outcome {
                let mine = match outcome {
                    Ok(results) => results[pos]
                        .take()
                        .ok_or_else(|| err(call.name(), "the result was taken twice")),
                    Err(e) => Err(e.clone()),
                };
                round.taken += 1;
                if round.taken == n
                    && let Some(group) = groups.get_mut(members)
                {
                    group.rounds.remove(&seq);
                }
                return mine;
            }
            // Ctrl-C first: other ranks that saw it abort the communicator, and a rank
            // woken by that abort should still report the interruption.
            if cancel::requested() {
                drop(st);
                shared.abort(self.rank, "interrupted");
                return Err(DeviceError::Interrupted);
            }
            if let Some(a) = aborted {
                return Err(aborted_error(call.name(), a));
            }
            // A member that finished without arriving never will: fail the round for all.
            if let Some(i) = (0..n).find(|&i| !round.arrived[i] && finished[members[i]]) {
                let name = round
                    .deposits
                    .iter()
                    .flatten()
                    .map(|(c, _)| c.name())
                    .next()
                    .unwrap_or(call.name());
                round.deposits.iter_mut().for_each(|d| *d = None);
                round.outcome = Some(Err(err(
                    name,
                    format!(
                        "rank {} finished before joining this collective of the group {members:?}",
                        members[i]
                    ),
                )));
                shared.wake.notify_all();
                continue;
            }
            st = shared
                .wake
                .wait_timeout(st, POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Comm {
    /// Marks a finished rank as done, or aborts the communicator for a rank that stopped
    /// without finishing (an early return or a panic), so that the others never wait for it.
    fn drop(&mut self) {
        if self.finished {
            let mut st = self.shared.lock();
            if let Some(f) = st.finished.get_mut(self.rank) {
                *f = true;
            }
            drop(st);
            self.shared.wake.notify_all();
        } else {
            self.abort("its handle was dropped without `finish` (the rank stopped early)");
        }
    }
}

fn round_mut<'a>(st: &'a mut State, members: &[usize], seq: u64) -> Option<&'a mut Round> {
    st.groups.get_mut(members)?.rounds.get_mut(&seq)
}

fn aborted_error(op: &'static str, a: &Aborted) -> DeviceError {
    err(op, format!("rank {} stopped: {}", a.rank, a.why))
}

/// The results of a complete round, per member, from the deposits in member order. The
/// members must agree on the call; the first one that does not (in member order, so the
/// message does not depend on who arrived first) is reported.
fn compute(
    dev: Option<&dyn Device>,
    members: &[usize],
    deposits: &[(Call, Tensor)],
) -> Result<Vec<Tensor>, DeviceError> {
    let (call, _) = deposits[0];
    if let Some(i) = deposits.iter().position(|(c, _)| *c != call) {
        return Err(err(
            call.name(),
            format!(
                "the members disagree: rank {} called {} but rank {} called {call}",
                members[i], deposits[i].0, members[0]
            ),
        ));
    }
    let parts: Vec<Tensor> = deposits.iter().map(|(_, t)| t.clone()).collect();
    let n = parts.len();
    let device = || dev.ok_or_else(|| err(call.name(), "no device to compute on"));
    let root_at = |root: usize| {
        members.binary_search(&root).map_err(|_| {
            err(
                call.name(),
                format!("the root {root} is not one of the members {members:?}"),
            )
        })
    };
    let result = match call {
        Call::AllReduce { op } => all_reduce(device()?, &parts, op).map(|t| vec![t; n]),
        Call::AllGather { axis } => all_gather(device()?, &parts, axis).map(|t| vec![t; n]),
        Call::ReduceScatter { op, axis } => reduce_scatter(device()?, &parts, op, axis),
        Call::AllToAll {
            split_axis,
            concat_axis,
        } => all_to_all(device()?, &parts, split_axis, concat_axis),
        Call::Broadcast { root } => broadcast(&parts, root_at(root)?),
    };
    // The functional collectives number parts by position; in a sub-group say which ranks
    // those are.
    let is_prefix = members.iter().enumerate().all(|(i, &r)| i == r);
    result.map_err(|e| match e {
        DeviceError::Collective { op, message } if !is_prefix => DeviceError::Collective {
            op,
            message: format!("{message} (parts are numbered by position in the group {members:?})"),
        },
        other => other,
    })
}
