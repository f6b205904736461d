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

impl std::str::FromStr for Layout {
    type Err = String;

    /// The text form [`Layout`]'s `Display` writes, back: `[m0, -]`, optionally followed by
    /// ` partial sum(m1)` clauses (test headers and hand-written plans use it).
    fn from_str(text: &str) -> Result<Layout, String> {
        let bad = || format!("`{text}` is not a layout (write `[m0, -]`)");
        let t = text.trim();
        let (map_text, rest) = t
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .ok_or_else(bad)?;
        let map = map_text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match s {
                "-" => Ok(None),
                m => m
                    .strip_prefix('m')
                    .and_then(|n| n.parse::<usize>().ok())
                    .map(Some)
                    .ok_or_else(bad),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut partial = Vec::new();
        for clause in rest
            .split("partial")
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            let (kind, axis) = clause
                .strip_suffix(')')
                .and_then(|c| c.split_once("(m"))
                .ok_or_else(bad)?;
            let kind = ReduceKind::from_name(kind.trim()).ok_or_else(bad)?;
            partial.push((axis.parse::<usize>().map_err(|_| bad())?, kind));
        }
        Ok(Layout { map, partial })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_round_trips() {
        for l in [
            Layout::replicated(0),
            Layout::replicated(2),
            Layout::split(3, 1, 0),
            Layout {
                map: vec![Some(1), None],
                partial: vec![(0, ReduceKind::Sum), (2, ReduceKind::Max)],
            },
        ] {
            assert_eq!(l.to_string().parse::<Layout>(), Ok(l.clone()), "{l}");
        }
        for bad in [
            "",
            "m0",
            "[x]",
            "[m0, -] partial mean(m0)",
            "[m0] partial sum(m)",
        ] {
            assert!(bad.parse::<Layout>().is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_and_pieces() {
        let mesh = Mesh::new(&[2, 3]);
        assert_eq!(mesh.coords(4), vec![1, 1]);
        assert_eq!(mesh.group(4, 0), vec![1, 4]);
        assert_eq!(mesh.group(4, 1), vec![3, 4, 5]);
        let t = TensorType::known(crate::DType::F32, &[10, 7]);
        let l = Layout::split(2, 1, 1);
        let sizes: Vec<Dim> = (0..6)
            .map(|r| l.local(&t, &mesh, r).shape.dims()[1].clone())
            .collect();
        assert_eq!(sizes, [3, 2, 2, 3, 2, 2].map(Dim::Known).to_vec());
    }
}
