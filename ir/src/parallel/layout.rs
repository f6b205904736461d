//! Meshes and layouts: which piece of a tensor each device holds.
//!
//! A [`Mesh`] is MindSpore's *device matrix*: devices numbered in C order over a shape
//! such as `[2, 4]`, so that device `r` has one coordinate per mesh axis. A [`Layout`] is
//! its *tensor map*: for each axis of a tensor, the mesh axis it is split over (or none),
//! plus the mesh axes over which each device holds only a *partial* result that the
//! devices must still combine (the sum of per-device products when a contraction axis is
//! split). A tensor axis of size `n` split over a mesh axis of `k` devices is cut into `k`
//! pieces by [`super::split_sizes`] (as even as possible, the first ones larger).

use std::fmt;

use super::{ReduceKind, split_sizes};
use crate::{Dim, Shape, TensorType};

/// The devices of a parallel run, as a matrix (C order: the last axis varies fastest).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mesh {
    shape: Vec<usize>,
}

impl Mesh {
    /// A mesh of the given shape (every axis at least one device; an empty shape is one
    /// device).
    pub fn new(shape: &[usize]) -> Mesh {
        Mesh {
            shape: shape.iter().map(|&k| k.max(1)).collect(),
        }
    }

    /// A line of `n` devices (what `--devices cpu:N` and data parallelism use).
    pub fn line(n: usize) -> Mesh {
        Mesh::new(&[n])
    }

    /// Devices along each mesh axis.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of devices.
    pub fn size(&self) -> usize {
        self.shape.iter().product()
    }

    /// The coordinates of device `rank`.
    pub fn coords(&self, rank: usize) -> Vec<usize> {
        let mut c = vec![0; self.shape.len()];
        let mut r = rank;
        for (i, &k) in self.shape.iter().enumerate().rev() {
            c[i] = r % k;
            r /= k;
        }
        c
    }

    /// The devices that take part with `rank` in a collective over `mesh_axis` (those whose
    /// other coordinates are `rank`'s), in the order of their coordinate on that axis.
    pub fn group(&self, rank: usize, mesh_axis: usize) -> Vec<usize> {
        let k = self.shape.get(mesh_axis).copied().unwrap_or(1);
        let stride: usize = self.shape.iter().skip(mesh_axis + 1).product();
        let c = self.coords(rank).get(mesh_axis).copied().unwrap_or(0);
        let base = rank - c * stride;
        (0..k).map(|i| base + i * stride).collect()
    }
}

impl fmt::Display for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(usize::to_string).collect();
        f.write_str(&dims.join("x"))
    }
}

/// Which piece of a tensor each device holds: the tensor map and the pending partial
/// reductions. The default (no split, nothing partial) is *replicated*: every device holds
/// the whole tensor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Per tensor axis, the mesh axis it is split over. A mesh axis splits at most one
    /// tensor axis.
    pub map: Vec<Option<usize>>,
    /// Mesh axes over which the devices hold parts to combine, and how.
    pub partial: Vec<(usize, ReduceKind)>,
}

impl Layout {
    /// Every device holds the whole tensor of rank `rank`.
    pub fn replicated(rank: usize) -> Layout {
        Layout {
            map: vec![None; rank],
            partial: Vec::new(),
        }
    }

    /// Axis `axis` of a tensor of rank `rank` split over `mesh_axis`.
    pub fn split(rank: usize, axis: usize, mesh_axis: usize) -> Layout {
        let mut l = Layout::replicated(rank);
        if let Some(m) = l.map.get_mut(axis) {
            *m = Some(mesh_axis);
        }
        l
    }

    /// Whether every device holds the whole value.
    pub fn is_replicated(&self) -> bool {
        self.partial.is_empty() && self.map.iter().all(Option::is_none)
    }

    /// The tensor axis split over `mesh_axis`, if any.
    pub fn axis_of(&self, mesh_axis: usize) -> Option<usize> {
        self.map.iter().position(|&m| m == Some(mesh_axis))
    }

    /// This layout without its partial reductions.
    pub fn whole(&self) -> Layout {
        Layout {
            map: self.map.clone(),
            partial: Vec::new(),
        }
    }

    /// The type device `rank` holds of a tensor of type `global` in this layout.
    pub fn local(&self, global: &TensorType, mesh: &Mesh, rank: usize) -> TensorType {
        let coords = mesh.coords(rank);
        let dims = global
            .shape
            .dims()
            .iter()
            .zip(self.map.iter().chain(std::iter::repeat(&None)))
            .map(|(d, m)| match (d, m) {
                (Dim::Known(n), Some(m)) => {
                    let k = mesh.shape().get(*m).copied().unwrap_or(1);
                    let c = coords.get(*m).copied().unwrap_or(0);
                    Dim::Known(split_sizes(*n, k)[c])
                }
                (d, _) => d.clone(),
            })
            .collect::<Vec<_>>();
        TensorType::new(global.dtype, Shape(dims))
    }
}

impl fmt::Display for Layout {
    /// MindSpore's tensor map in words: `[m0, -]` splits axis 0 over mesh axis 0; a
    /// pending reduction follows as `partial sum(m0)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let axes: Vec<String> = self
            .map
            .iter()
            .map(|m| m.map_or("-".to_string(), |m| format!("m{m}")))
            .collect();
        write!(f, "[{}]", axes.join(", "))?;
        for (m, k) in &self.partial {
            write!(f, " partial {}(m{m})", k.name())?;
        }
        Ok(())
    }
}
