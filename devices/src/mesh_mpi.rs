//! Meshes of processes: the collectives of `devices::mesh` over MPI (`mpirun -np N ms
//! --devices mpi FILE.ms`), behind the `mpi` feature.
//!
//! Every process runs the whole program and is one device of a line mesh of the world's
//! size. A collective moves bytes only: each process sends its part's bytes to every other
//! (`MPI_Allgatherv`), and each combines the parts itself with the functional collectives
//! of `devices::mesh`, in rank order — so an all-reduce gives every process the same bits,
//! the same as the threads of one process would, whatever MPI's own reduction order.
//!
//! MPI is initialised with `MPI_THREAD_SERIALIZED` (the interpreter evaluates on a thread
//! of its own, not the one that started MPI), and every call goes through one lock, so no
//! two MPI calls overlap.

use std::sync::{Mutex, MutexGuard, OnceLock};

use mpi::datatype::PartitionMut;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};

use crate::mesh::{Collectives, ReduceKind, all_gather, all_reduce, all_to_all};
use crate::{Device, DeviceError, Tensor};
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
#[derive(Clone, Copy, Debug)]
pub struct MpiComm {
    rank: usize,
    size: usize,
}

impl MpiComm {
    /// The number of processes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Every process's part of a collective, in rank order.
    fn parts(
        &self,
        t: &Tensor,
        axis: Option<usize>,
        members: &[usize],
    ) -> Result<Vec<Tensor>, DeviceError> {
        if members.len() != self.size || members.iter().enumerate().any(|(i, &m)| i != m) {
            return Err(err(format!(
                "a collective over devices {members:?}: over MPI every collective spans all {} processes",
                self.size
            )));
        }
        let mine = to_bytes(t)?;
        let w = world()?;
        let len = i32::try_from(mine.len()).map_err(|_| err("a part over 2 GiB"))?;
        let mut counts = vec![0i32; self.size];
        w.world.all_gather_into(&len, &mut counts[..]);
        let mut displs = Vec::with_capacity(self.size);
        let mut total = 0i64;
        for &c in &counts {
            displs.push(i32::try_from(total).map_err(|_| err("a collective over 2 GiB"))?);
            total += i64::from(c);
        }
        let mut buf = vec![0u8; usize::try_from(total).unwrap_or(0)];
        {
            let mut p = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
            w.world.all_gather_varcount_into(&mine[..], &mut p);
        }
        drop(w);
        let elem = t.dtype().size_of().max(1);
        let shape = t.shape().to_vec();
        let others: usize = shape
            .iter()
            .enumerate()
            .filter(|&(i, _)| Some(i) != axis)
            .map(|(_, &d)| d)
            .product();
        let mut out = Vec::with_capacity(self.size);
        for (r, (&c, &d)) in counts.iter().zip(&displs).enumerate() {
            let (c, d) = (c as usize, d as usize);
            let bytes = &buf[d..d + c];
            let mut dims = shape.clone();
            if let Some(a) = axis {
                let n = (c / elem).checked_div(others).unwrap_or(0);
                dims[a] = n;
            } else if c != mine.len() {
                return Err(err(format!(
                    "process {r}'s part has {c} bytes, this one's {}",
                    mine.len()
                )));
            }
            out.push(from_bytes(bytes, t.dtype(), &dims)?);
        }
        Ok(out)
    }
}

impl Collectives for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn all_reduce(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        op: ReduceKind,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        let parts = self.parts(t, None, members)?;
        all_reduce(dev, &parts, op)
    }

    fn all_gather(
        &self,
        dev: &dyn Device,
        t: &Tensor,
        axis: usize,
        members: &[usize],
    ) -> Result<Tensor, DeviceError> {
        let parts = self.parts(t, Some(axis), members)?;
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
        // Every part travels to every process, which keeps its own pieces: simple, at k
        // times the bytes of a true all-to-all.
        let parts = self.parts(t, Some(concat_axis), members)?;
        let mut mine = all_to_all(dev, &parts, split_axis, concat_axis)?;
        if self.rank < mine.len() {
            Ok(mine.swap_remove(self.rank))
        } else {
            Err(err("no piece for this process"))
        }
    }
}

fn to_bytes(t: &Tensor) -> Result<Vec<u8>, DeviceError> {
    let bad = || err(format!("{} tensors cannot cross MPI", t.dtype()));
    Ok(match t.dtype() {
        DType::F32 => t
            .to_vec::<f32>()
            .ok_or_else(bad)?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::F64 => t
            .to_vec::<f64>()
            .ok_or_else(bad)?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::I64 => t
            .to_vec::<i64>()
            .ok_or_else(bad)?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::I32 => t
            .to_vec::<i32>()
            .ok_or_else(bad)?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::Bool => t
            .to_vec::<bool>()
            .ok_or_else(bad)?
            .iter()
            .map(|&x| u8::from(x))
            .collect(),
        _ => return Err(bad()),
    })
}

fn from_bytes(b: &[u8], dtype: DType, dims: &[usize]) -> Result<Tensor, DeviceError> {
    fn chunks<const N: usize>(b: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        b.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
    }
    match dtype {
        DType::F32 => Tensor::from_vec(
            chunks::<4>(b).map(f32::from_le_bytes).collect::<Vec<_>>(),
            dims,
        ),
        DType::F64 => Tensor::from_vec(
            chunks::<8>(b).map(f64::from_le_bytes).collect::<Vec<_>>(),
            dims,
        ),
        DType::I64 => Tensor::from_vec(
            chunks::<8>(b).map(i64::from_le_bytes).collect::<Vec<_>>(),
            dims,
        ),
        DType::I32 => Tensor::from_vec(
            chunks::<4>(b).map(i32::from_le_bytes).collect::<Vec<_>>(),
            dims,
        ),
        DType::Bool => Tensor::from_vec(b.iter().map(|&x| x != 0).collect::<Vec<_>>(), dims),
        other => Err(err(format!("{other} tensors cannot cross MPI"))),
    }
}
