//! Meshes of processes: the collectives of `devices::mesh` over MPI (`mpirun -np N ms
//! --devices mpi FILE.ms`), behind the `mpi` feature.
//!
//! Every process runs the whole program and is one device of a line mesh of the world's
//! size. MPI moves elements only (typed buffers, no conversion); every combination is made
//! by the functional collectives of `devices::mesh`, in rank order — so an all-reduce
//! gives every process the same bits, the same as the threads of one process would,
//! whatever MPI's own reduction order. An all-reduce is a reduce-scatter (`MPI_Alltoallv`
//! of ranges, each folded by the process that owns it) then an all-gather of the folded
//! ranges (`MPI_Allgatherv`); an all-gather sends each part to every process, an
//! all-to-all (`MPI_Alltoallv`) each piece to the process that keeps it.
//!
//! MPI is initialised with `MPI_THREAD_SERIALIZED` (the interpreter evaluates on a thread
//! of its own, not the one that started MPI), and every call goes through one lock, so no
//! two MPI calls overlap.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use mpi::datatype::{Equivalence, Partition, PartitionMut};
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};

use crate::mesh::{Collectives, ReduceKind, all_gather, all_reduce, shard, split_range};
use crate::{Device, DeviceError, Elem, Tensor};
use ir::DType;

/// The MPI universe and its world communicator.
struct World {
    /// Finalises MPI when dropped ([`finalize`]).
    universe: Option<mpi::environment::Universe>,
    world: SimpleCommunicator,
}

// SAFETY: MPI was initialised with `MPI_THREAD_SERIALIZED` or better (checked in `init`),
// which allows MPI calls from any thread provided they never overlap; every use of these
// handles holds `WORLD`'s lock, so they do not.
unsafe impl Send for World {}

static WORLD: OnceLock<Mutex<World>> = OnceLock::new();

fn world() -> Result<MutexGuard<'static, World>, DeviceError> {
    let w = WORLD
        .get()
        .ok_or_else(|| err("MPI is not initialised (`--devices mpi`)"))?;
    Ok(w.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

fn err(message: impl Into<String>) -> DeviceError {
    DeviceError::Collective {
        op: "mpi",
        message: message.into(),
    }
}

/// Starts MPI (once per process) and gives this process's device of the world mesh.
pub fn init() -> Result<MpiComm, DeviceError> {
    if WORLD.get().is_none() {
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| err("MPI could not be initialised (was it initialised before?)"))?;
        if threading < mpi::Threading::Serialized {
            return Err(err(format!(
                "this MPI library gives thread support {threading:?}; `--devices mpi` needs Serialized"
            )));
        }
        let world = universe.world();
        let _ = WORLD.set(Mutex::new(World {
            universe: Some(universe),
            world,
        }));
    }
    let w = world()?;
    Ok(MpiComm {
        rank: usize::try_from(w.world.rank()).unwrap_or(0),
        size: usize::try_from(w.world.size()).unwrap_or(1),
        sent: AtomicU64::new(0),
    })
}

/// Finalises MPI (at the end of `ms`): later collectives are errors.
pub fn finalize() {
    if let Ok(mut w) = world() {
        w.universe = None;
    }
}

/// Stops every process of the job (after this one reported its error): the others may be
/// waiting in a collective this one will never join.
pub fn abort_all(code: i32) {
    if let Ok(w) = world() {
        w.world.abort(code);
    }
}

/// This process's device of the world mesh.
#[derive(Debug)]
pub struct MpiComm {
    rank: usize,
    size: usize,
    /// The bytes of elements this process has handed to MPI for other processes (the
    /// lengths exchanged before a collective are not counted).
    sent: AtomicU64,
}

impl MpiComm {
    /// The number of processes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Counts `elements` of `T` sent to other processes.
    fn count<T>(&self, elements: usize) {
        let bytes = (elements * std::mem::size_of::<T>()) as u64;
        self.sent.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Checks that `members` is the whole world, the only group MPI collectives here span.
    fn check_members(&self, members: &[usize]) -> Result<(), DeviceError> {
        if members.len() != self.size || members.iter().enumerate().any(|(i, &m)| i != m) {
            return Err(err(format!(
                "a collective over devices {members:?}: over MPI every collective spans all {} processes",
                self.size
            )));
        }
        Ok(())
    }
}

/// Calls `$f::<T>(args)` with the element type `T` of `$dtype`, or fails for a dtype that
/// does not cross MPI.
macro_rules! by_dtype {
    ($dtype:expr, $f:ident($($arg:expr),*)) => {
        match $dtype {
            DType::F32 => $f::<f32>($($arg),*),
            DType::F64 => $f::<f64>($($arg),*),
            DType::I32 => $f::<i32>($($arg),*),
            DType::I64 => $f::<i64>($($arg),*),
            DType::Bool => $f::<bool>($($arg),*),
            other => Err(err(format!("{other} tensors cannot cross MPI"))),
        }
    };
}

/// MPI's element counts and displacements (`i32`) of pieces of `sizes` elements laid end to
/// end.
fn counts_displs(sizes: &[usize]) -> Result<(Vec<i32>, Vec<i32>), DeviceError> {
    let too_big = || err("a collective over 2^31 elements");
    let mut counts = Vec::with_capacity(sizes.len());
    let mut displs = Vec::with_capacity(sizes.len());
    let mut at = 0usize;
    for &n in sizes {
        counts.push(i32::try_from(n).map_err(|_| too_big())?);
        displs.push(i32::try_from(at).map_err(|_| too_big())?);
        at += n;
    }
    Ok((counts, displs))
}

/// `t`'s elements as one C-order slice of `T` (a copy only when `t` is a view).
fn elements<T: Elem>(t: &Tensor) -> Result<(Tensor, usize), DeviceError> {
    let t = t.contiguous();
    let n = t
        .as_slice::<T>()
        .map(<[T]>::len)
        .ok_or_else(|| err(format!("a {} tensor that is not in host memory", t.dtype())))?;
    Ok((t, n))
}

/// Every process's part, in rank order (`MPI_Allgatherv` of the elements). With `axis`,
/// the parts may differ in size along it; without, they must have this part's shape.
fn parts_of<T: Elem + Equivalence>(
    c: &MpiComm,
    t: &Tensor,
    axis: Option<usize>,
) -> Result<Vec<Tensor>, DeviceError> {
    let (t, n) = elements::<T>(t)?;
    let mine = t.as_slice::<T>().unwrap_or(&[]);
    let len = i32::try_from(n).map_err(|_| err("a part over 2^31 elements"))?;
    let w = world()?;
    let mut counts = vec![0i32; c.size];
    w.world.all_gather_into(&len, &mut counts[..]);
    let sizes: Vec<usize> = counts
        .iter()
        .map(|&k| usize::try_from(k).unwrap_or(0))
        .collect();
    let (counts, displs) = counts_displs(&sizes)?;
    let mut buf = vec![T::default(); sizes.iter().sum()];
    {
        let mut p = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
        w.world.all_gather_varcount_into(mine, &mut p);
    }
    drop(w);
    c.count::<T>(n * (c.size - 1));
    let shape = t.shape().to_vec();
    let others: usize = shape
        .iter()
        .enumerate()
        .filter(|&(i, _)| Some(i) != axis)
        .map(|(_, &d)| d)
        .product();
    let mut out = Vec::with_capacity(c.size);
    let mut at = 0;
    for (r, &k) in sizes.iter().enumerate() {
        let mut dims = shape.clone();
        if let Some(a) = axis {
            dims[a] = k.checked_div(others).unwrap_or(0);
        } else if k != n {
            return Err(err(format!(
                "process {r}'s part has {k} elements, this one's {n}"
            )));
        }
        out.push(Tensor::from_vec(buf[at..at + k].to_vec(), &dims)?);
        at += k;
    }
    Ok(out)
}

/// The all-reduce as a reduce-scatter and an all-gather, as ring all-reduces do: process
/// `r` receives range `r` of the elements ([`split_range`]) from every process, folds
/// those pieces in rank order, and the folded ranges are then gathered by all. Each
/// element is combined exactly as [`all_reduce`] combines it (`((p0 ⊕ p1) ⊕ p2) ⊕ …`), so
/// the bits equal those of the threads of one process; and each process sends and folds
/// only about `1/k` of the data, where gathering every part whole would send and fold all
/// of it on every process.
fn reduce_of<T: Elem + Equivalence>(
    c: &MpiComm,
    dev: &dyn Device,
    t: &Tensor,
    op: ReduceKind,
) -> Result<Tensor, DeviceError> {
    let (t, n) = elements::<T>(t)?;
    let mine = t.as_slice::<T>().unwrap_or(&[]);
    let k = c.size;
    let ranges: Vec<usize> = (0..k).map(|r| split_range(n, k, r).len()).collect();
    let (counts, displs) = counts_displs(&ranges)?;
    let own = ranges.get(c.rank).copied().unwrap_or(0);
    let (own_counts, own_displs) = counts_displs(&vec![own; k])?;
    let mut pieces = vec![T::default(); own * k];
    {
        let w = world()?;
        let send = Partition::new(mine, &counts[..], &displs[..]);
        let mut recv = PartitionMut::new(&mut pieces[..], &own_counts[..], &own_displs[..]);
        w.world.all_to_all_varcount_into(&send, &mut recv);
    }
    c.count::<T>(n - own);
    let stacked = Tensor::from_vec(pieces, &[k, own])?;
    let parts = (0..k)
        .map(|r| shard(dev, &stacked, 0, k, r))
        .collect::<Result<Vec<_>, _>>()?;
    let folded = all_reduce(dev, &parts, op)?.contiguous();
    let chunk = folded.as_slice::<T>().unwrap_or(&[]);
    let mut out = vec![T::default(); n];
    {
        let w = world()?;
        let mut recv = PartitionMut::new(&mut out[..], &counts[..], &displs[..]);
        w.world.all_gather_varcount_into(chunk, &mut recv);
    }
    c.count::<T>(chunk.len() * (k - 1));
    Tensor::from_vec(out, t.shape())
}

impl Collectives for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn all_reduce(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        op: ReduceKind,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        self.check_members(members)?;
        // Every process must take part in the same calls: the shapes agree, as every
        // process runs the same graph, but a disagreement must not leave one waiting on a
        // message of another size, so the part sizes are checked first.
        let sizes = parts_len(self, t)?;
        if let Some(r) = sizes.iter().position(|&k| k != t.numel()) {
            return Err(err(format!(
                "process {r}'s part has {} elements, this one's {}",
                sizes[r],
                t.numel()
            )));
        }
        by_dtype!(t.dtype(), reduce_of(self, dev, t, op))
    }

    fn all_gather(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        axis: usize,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        self.check_members(members)?;
        let parts = by_dtype!(t.dtype(), parts_of(self, t, Some(axis)))?;
        all_gather(dev, &parts, axis)
    }

    fn all_to_all(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        split_axis: usize,
        concat_axis: usize,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        self.check_members(members)?;
        let rank = t.rank();
        if split_axis >= rank || concat_axis >= rank {
            return Err(err(format!(
                "all_to_all of a rank-{rank} part along axes {split_axis} and {concat_axis}"
            )));
        }
        by_dtype!(
            t.dtype(),
            all_to_all_of(self, dev, t, split_axis, concat_axis)
        )
    }
}

/// A true all-to-all (`MPI_Alltoallv`): this process's part is cut into one piece per
/// process along `split_axis`, each process receives its piece of every part, and joins
/// them along `concat_axis` in rank order — the pieces [`all_to_all`] gives, sending only
/// what each process keeps.
fn all_to_all_of<T: Elem + Equivalence>(
    c: &MpiComm,
    dev: &dyn Device,
    t: &Tensor,
    split_axis: usize,
    concat_axis: usize,
) -> Result<Tensor, DeviceError> {
    let k = c.size;
    let pieces = (0..k)
        .map(|r| shard(dev, t, split_axis, k, r).map(|p| p.contiguous()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut send: Vec<T> = Vec::with_capacity(t.numel());
    let mut send_sizes = Vec::with_capacity(k);
    for p in &pieces {
        let e = p.as_slice::<T>().unwrap_or(&[]);
        send.extend_from_slice(e);
        send_sizes.push(e.len());
    }
    // Every process's lengths along the two axes: they size the pieces it sends here.
    let mine = [t.shape()[split_axis] as i64, t.shape()[concat_axis] as i64];
    let mut lens = vec![0i64; 2 * k];
    {
        let w = world()?;
        w.world.all_gather_into(&mine[..], &mut lens[..]);
    }
    let shapes: Vec<Vec<usize>> = (0..k)
        .map(|r| {
            let mut dims = t.shape().to_vec();
            let split_len = usize::try_from(lens[2 * r]).unwrap_or(0);
            dims[concat_axis] = usize::try_from(lens[2 * r + 1]).unwrap_or(0);
            dims[split_axis] = split_range(split_len, k, c.rank).len();
            dims
        })
        .collect();
    let recv_sizes: Vec<usize> = shapes.iter().map(|d| d.iter().product()).collect();
    let (send_counts, send_displs) = counts_displs(&send_sizes)?;
    let (recv_counts, recv_displs) = counts_displs(&recv_sizes)?;
    let mut recv = vec![T::default(); recv_sizes.iter().sum()];
    {
        let w = world()?;
        let out = Partition::new(&send[..], &send_counts[..], &send_displs[..]);
        let mut into = PartitionMut::new(&mut recv[..], &recv_counts[..], &recv_displs[..]);
        w.world.all_to_all_varcount_into(&out, &mut into);
    }
    c.count::<T>(send.len() - send_sizes.get(c.rank).copied().unwrap_or(0));
    let mut parts = Vec::with_capacity(k);
    let mut at = 0;
    for (dims, &n) in shapes.iter().zip(&recv_sizes) {
        parts.push(Tensor::from_vec(recv[at..at + n].to_vec(), dims)?);
        at += n;
    }
    all_gather(dev, &parts, concat_axis)
}

/// Every process's number of elements of its part (`MPI_Allgather` of one count).
fn parts_len(c: &MpiComm, t: &Tensor) -> Result<Vec<usize>, DeviceError> {
    let len = i64::try_from(t.numel()).map_err(|_| err("a part over 2^63 elements"))?;
    let mut counts = vec![0i64; c.size];
    let w = world()?;
    w.world.all_gather_into(&len, &mut counts[..]);
    Ok(counts
        .iter()
        .map(|&k| usize::try_from(k).unwrap_or(usize::MAX))
        .collect())
}
