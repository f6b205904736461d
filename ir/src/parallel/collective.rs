//! Collectives: the communication a partitioned (SPMD) graph performs between the devices
//! of a mesh.
//!
//! They are not primitives of the table: a primitive means the same thing on one device as
//! on many, while a collective only means something in a graph that runs once per device of
//! a mesh. The partitioner (`super::partition`) is the only producer; the graph executor
//! hands them to its caller (`devices::schedule::Effects::collective`), which owns the mesh.

use std::fmt;

/// How an all-reduce combines the parts of the devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    /// Elementwise sum.
    Sum,
    /// Elementwise maximum (NaN-propagating, as `maximum`).
    Max,
    /// Elementwise minimum (NaN-propagating, as `minimum`).
    Min,
}

impl ReduceKind {
    /// The binary primitive that combines two parts of `dtype` (NaN-propagating for max
    /// and min, as NumPy's `maximum`; integer sums wrap, as the `add` kernel does). Bools
    /// order `false < true`, as a `max` or `min` reduction over them does (`any`, `all`):
    /// their max is `logical_or`, their min `logical_and`.
    pub fn binary_op(self, dtype: crate::DType) -> crate::BinaryOp {
        let bool = dtype == crate::DType::Bool;
        match self {
            ReduceKind::Sum => crate::BinaryOp::Add,
            ReduceKind::Max if bool => crate::BinaryOp::Or,
            ReduceKind::Min if bool => crate::BinaryOp::And,
            ReduceKind::Max => crate::BinaryOp::Maximum,
            ReduceKind::Min => crate::BinaryOp::Minimum,
        }
    }

    /// The name in the text form.
    pub fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "sum",
            ReduceKind::Max => "max",
            ReduceKind::Min => "min",
        }
    }

    /// The kind named `s` in the text form.
    pub fn from_name(s: &str) -> Option<ReduceKind> {
        [ReduceKind::Sum, ReduceKind::Max, ReduceKind::Min]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

impl fmt::Display for ReduceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One collective over the devices along one axis of the mesh (the devices whose mesh
/// coordinates differ only in `mesh_axis` take part together).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Collective {
    /// Every device gets the combination of every device's operand (same type).
    AllReduce {
        /// How the parts combine.
        op: ReduceKind,
        /// The mesh axis reduced over.
        mesh_axis: usize,
    },
    /// Every device gets the concatenation along `axis` of every device's operand, in the
    /// order of their coordinates along `mesh_axis`.
    AllGather {
        /// The tensor axis joined along.
        axis: usize,
        /// The mesh axis gathered over.
        mesh_axis: usize,
    },
    /// Moves a split from one tensor axis to another: each device cuts its piece along
    /// `split_axis` into as many pieces as the mesh axis has devices, sends piece `j` to
    /// the device at coordinate `j`, and joins what it receives along `concat_axis` in
    /// coordinate order. A value split along `concat_axis` comes out split along
    /// `split_axis`; each device sends (k-1)/k of its piece, where a gather and a shard
    /// would move k times as much.
    AllToAll {
        /// The axis split now (cut and sent).
        split_axis: usize,
        /// The axis joined (split before, whole after).
        concat_axis: usize,
        /// The mesh axis exchanged over.
        mesh_axis: usize,
    },
    /// Each device keeps its own piece of a value every device holds whole: the tensor is
    /// split along `axis` into as many pieces as the mesh axis has devices, as evenly as
    /// possible (the first pieces one larger), and the device at coordinate `c` takes piece
    /// `c`. No data moves between devices.
    Shard {
        /// The tensor axis split.
        axis: usize,
        /// The mesh axis split over.
        mesh_axis: usize,
    },
}

impl Collective {
    /// The keyword in the text form.
    pub fn name(&self) -> &'static str {
        match self {
            Collective::AllReduce { .. } => "all_reduce",
            Collective::AllGather { .. } => "all_gather",
            Collective::AllToAll { .. } => "all_to_all",
            Collective::Shard { .. } => "shard",
        }
    }

    /// The mesh axis the devices taking part differ in.
    pub fn mesh_axis(&self) -> usize {
        match *self {
            Collective::AllReduce { mesh_axis, .. }
            | Collective::AllGather { mesh_axis, .. }
            | Collective::AllToAll { mesh_axis, .. }
            | Collective::Shard { mesh_axis, .. } => mesh_axis,
        }
    }

    /// The tensor axis whose size changes (`None` for an all-reduce).
    pub fn axis(&self) -> Option<usize> {
        match *self {
            Collective::AllReduce { .. } => None,
            Collective::AllGather { axis, .. } | Collective::Shard { axis, .. } => Some(axis),
            Collective::AllToAll { split_axis, .. } => Some(split_axis),
        }
    }
}

impl fmt::Display for Collective {
    /// The attributes as the text form writes them: `{op: sum, mesh_axis: 0}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Collective::AllReduce { op, mesh_axis } => {
                write!(f, "{{op: {}, mesh_axis: {mesh_axis}}}", op.name())
            }
            Collective::AllGather { axis, mesh_axis } | Collective::Shard { axis, mesh_axis } => {
                write!(f, "{{axis: {axis}, mesh_axis: {mesh_axis}}}")
            }
            Collective::AllToAll {
                split_axis,
                concat_axis,
                mesh_axis,
            } => write!(
                f,
                "{{split_axis: {split_axis}, concat_axis: {concat_axis}, mesh_axis: {mesh_axis}}}"
            ),
        }
    }
}

/// Sizes of `n` pieces of `len` elements, as even as possible, the first `len % n` pieces
/// one larger (NumPy's `array_split`). The one rule every split of the mesh follows, so
/// that the partitioner's types and the devices' pieces agree.
pub fn split_sizes(len: usize, n: usize) -> Vec<usize> {
    let n = n.max(1);
    (0..n).map(|i| len / n + usize::from(i < len % n)).collect()
}

/// Where piece `i` of [`split_sizes`]`(len, n)` starts.
pub fn split_start(len: usize, n: usize, i: usize) -> usize {
    split_sizes(len, n).iter().take(i).sum()
}

/// Whether a collective may turn a value of type `input` into one of type `output` on
/// some device: the dtype and rank are kept; an all-reduce keeps the shape, a gather may
/// only grow its axis and a shard only shrink it, every other dim staying. (The sizes
/// themselves depend on the mesh and the device, which a graph does not know.) The
/// builder and the verifier both ask it.
pub fn check_type(
    c: &Collective,
    input: &crate::TensorType,
    output: &crate::TensorType,
) -> Result<(), String> {
    use crate::Dim;
    if input.dtype != output.dtype {
        return Err(format!(
            "{} changes the dtype from {} to {}",
            c.name(),
            input.dtype,
            output.dtype
        ));
    }
    let (a, b) = (input.shape.dims(), output.shape.dims());
    if a.len() != b.len() {
        return Err(format!(
            "{} changes the rank from {} to {}",
            c.name(),
            a.len(),
            b.len()
        ));
    }
    let axis = c.axis();
    let other = match *c {
        Collective::AllToAll { concat_axis, .. } => Some(concat_axis),
        _ => None,
    };
    if let Some(ax) = axis.into_iter().chain(other).find(|&ax| ax >= a.len()) {
        return Err(format!(
            "{} axis {ax} is out of range for rank {}",
            c.name(),
            a.len()
        ));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let fits = if Some(i) == other {
            // The joined axis grows, the cut one shrinks; their sizes depend on the device.
            true
        } else if Some(i) == axis {
            match (x, y, c) {
                (Dim::Known(x), Dim::Known(y), Collective::AllGather { .. }) => y >= x,
                (Dim::Known(x), Dim::Known(y), Collective::Shard { .. }) => y <= x,
                _ => true,
            }
        } else {
            x == y
        };
        if !fits {
            return Err(format!(
                "{} cannot turn {input} into {output} (axis {i})",
                c.name()
            ));
        }
    }
    Ok(())
}
