//! The planner: a cost model for partitioned graphs, and the search that picks the input
//! layouts of a parallel function (`parallel: "auto"`, `ms plan`).
//!
//! **Cost.** A partitioned graph is priced from device 0's graph (it holds the largest
//! piece of every uneven split): each primitive takes the longer of its flops at the
//! profile's rate and its bytes at its memory bandwidth (`ir::cost` of the local
//! primitive); each collective takes α + bytes/β of the link of its mesh axis (the α-β
//! model; the bytes are what one device sends with ring algorithms). **Memory** is the
//! peak of live local tensors over the body in order (the inputs held throughout, each
//! result added, each value removed after its last use, as `ir::passes::memory` plans).
//!
//! **Search.** The strategy space is the layout of each graph input (its role says which
//! layouts it may take: a batch splits along axis 0, a parameter along any axis, over any
//! mesh axis, or stays whole); every other value's layout follows from the sharding rules,
//! so one point of the space is one partitioned graph. When the space has at most
//! [`EXACT_LIMIT`] points every one is priced (exact over the space); otherwise
//! coordinate descent from two starts (data parallel, and everything whole) changes one
//! input at a time while the estimate improves. A plan whose peak exceeds the memory cap
//! is never chosen when one within it was found; when none fits, the search says so and
//! names the smallest peak it saw.

use std::fmt;

use super::partition::{Partitioned, partition_first};
use super::{BucketPolicy, Collective, Layout, Mesh};
use crate::Graph;
use crate::graph::{NodeKind, Type, ValueId};
use crate::passes::memory::MemoryPlan;

/// The most points an exhaustive search prices (see also [`EXACT_WORK`]).
pub const EXACT_LIMIT: usize = 4096;

/// One link class of a mesh axis: latency per collective and bandwidth.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// Seconds per collective.
    pub alpha: f64,
    /// Bytes per second each device sends.
    pub beta: f64,
}

/// The speeds a plan's estimate assumes for one device and its links.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// Its name (`--profile`).
    pub name: &'static str,
    /// f32 flops per second of one device.
    pub flops: f64,
    /// Memory bytes per second of one device.
    pub memory: f64,
    /// The link of each mesh axis, outermost first; the last serves the axes after it.
    pub links: Vec<Link>,
    /// Where the figures come from, in words.
    pub about: &'static str,
}

impl Profile {
    /// Every profile: `cpu` (this machine, one core per device), `h100` (GPUs of one box
    /// on NVLink) and `h100-2node` (mesh axis 0 between two boxes on InfiniBand, the other
    /// axes on NVLink: the slow-axis case).
    pub fn all() -> Vec<Profile> {
        let nvlink = Link {
            alpha: 10e-6,
            beta: 150e9,
        };
        vec![
            Profile {
                name: "cpu",
                flops: 150e9,
                memory: 10e9,
                links: vec![Link {
                    alpha: 5e-6,
                    beta: 10e9,
                }],
                about: "one core of this machine per device: 150 GFLOP/s f32 and 10 GB/s, collectives as memory copies with 5 µs per rendezvous",
            },
            Profile {
                name: "h100",
                flops: 51e12,
                memory: 4e12,
                links: vec![nvlink],
                about: "an H100/H200 per device: 51 TFLOP/s f32 and 4 TB/s as measured on an H200 (BENCHMARKS.md); NVLink at 150 GB/s and 10 µs per collective assumed, not measured",
            },
            Profile {
                name: "h100-2node",
                flops: 51e12,
                memory: 4e12,
                links: vec![
                    Link {
                        alpha: 20e-6,
                        beta: 25e9,
                    },
                    nvlink,
                ],
                about: "H100/H200s as in `h100`, mesh axis 0 between two machines on 200 Gb/s InfiniBand (25 GB/s, 20 µs; assumed)",
            },
        ]
    }

    /// The profile named `name`.
    pub fn named(name: &str) -> Result<Profile, String> {
        let all = Profile::all();
        let names: Vec<&str> = all.iter().map(|p| p.name).collect();
        let list = names.join(", ");
        all.into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("no hardware profile `{name}` (there are {list})"))
    }

    /// The link of mesh axis `axis`.
    pub fn link(&self, axis: usize) -> Link {
        self.links
            .get(axis)
            .or(self.links.last())
            .copied()
            .unwrap_or(Link {
                alpha: 0.0,
                beta: f64::INFINITY,
            })
    }
}

/// What one call of a partitioned graph costs device 0.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Estimate {
    /// Arithmetic of device 0's pieces.
    pub flops: u64,
    /// Bytes device 0 sends in collectives.
    pub bytes: u64,
    /// All-reduces, all-gathers, shards.
    pub counts: [usize; 3],
    /// Seconds of computing.
    pub compute: f64,
    /// Seconds of communicating.
    pub comm: f64,
    /// The peak of live tensor bytes on device 0.
    pub peak_bytes: u64,
}

impl Estimate {
    /// Seconds per call.
    pub fn total(&self) -> f64 {
        self.compute + self.comm
    }
}

/// Prices a partitioned graph (its device 0) on `profile`: the primitives as the steps
/// record them, the collectives as device 0's graph runs them (after bucketing).
pub fn estimate(p: &Partitioned, profile: &Profile) -> Estimate {
    let mut e = Estimate::default();
    let g0 = p.of_rank.first().and_then(|&i| p.graphs.get(i));
    if let Some(g) = g0 {
        for &n in &g.block(g.body()).nodes {
            let node = g.node(n);
            let NodeKind::Collective(c) = node.kind else {
                continue;
            };
            let ty = |v: Option<&ValueId>| v.and_then(|&v| g.ty(v).tensor().cloned());
            let k = p.mesh.shape().get(c.mesh_axis()).copied().unwrap_or(1) as u64;
            let size = |t: Option<crate::TensorType>| {
                t.and_then(|t| t.shape.numel().map(|n| n as u64 * t.dtype.size_of() as u64))
                    .unwrap_or(0)
            };
            // What each device sends with ring algorithms: an all-reduce its part twice
            // over (reduce-scatter, then all-gather), a gather (k-1)/k of its result.
            let (kind, bytes) = match c {
                Collective::AllReduce { .. } => {
                    (0, 2 * size(ty(node.operands.first())) * (k - 1) / k.max(1))
                }
                Collective::AllToAll { .. } => {
                    (1, size(ty(node.operands.first())) * (k - 1) / k.max(1))
                }
                Collective::AllGather { .. } => {
                    (1, size(ty(node.results.first())) * (k - 1) / k.max(1))
                }
                Collective::Shard { .. } => (2, 0),
            };
            e.counts[kind] += 1;
            if kind < 2 {
                let link = profile.link(c.mesh_axis());
                e.bytes += bytes;
                e.comm += link.alpha + bytes as f64 / link.beta;
            }
        }
    }
    for s in &p.steps {
        e.flops += s.cost.flops;
        e.compute +=
            (s.cost.flops as f64 / profile.flops).max(s.cost.bytes as f64 / profile.memory);
    }
    e.peak_bytes = p
        .of_rank
        .first()
        .and_then(|&i| p.graphs.get(i))
        .map_or(0, peak_bytes);
    e
}

fn bytes_of(g: &Graph, v: ValueId) -> u64 {
    match g.ty(v) {
        Type::Tensor(t) => t.shape.numel_lower_bound() * t.dtype.size_of() as u64,
        Type::Token => 0,
    }
}

/// The peak of live tensor bytes over `g`'s body, inputs included throughout.
pub fn peak_bytes(g: &Graph) -> u64 {
    let plan = MemoryPlan::new(g);
    let body = g.body();
    let inputs: Vec<ValueId> = g.inputs().to_vec();
    let mut live: u64 = inputs.iter().map(|&v| bytes_of(g, v)).sum();
    let mut peak = live;
    let releases = plan.releases(body);
    for (k, &n) in g.block(body).nodes.iter().enumerate() {
        live += g
            .node(n)
            .results
            .iter()
            .map(|&r| bytes_of(g, r))
            .sum::<u64>();
        peak = peak.max(live);
        for &v in releases.get(k + 1).map_or(&[][..], Vec::as_slice) {
            if !inputs.contains(&v) {
                live = live.saturating_sub(bytes_of(g, v));
            }
        }
    }
    peak
}

/// Whether `a` is a better plan than `b`: faster by more than 0.5%, or as fast (within
/// 0.5%) with a smaller peak of memory.
fn cheaper(a: &Estimate, b: &Estimate) -> bool {
    let (ta, tb) = (a.total(), b.total());
    if ta < tb * 0.995 {
        return true;
    }
    ta <= tb * 1.005 && a.peak_bytes < b.peak_bytes
}

/// Which layouts an input may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Whole on every device (the random key, scalars).
    Fixed,
    /// A batch: whole, or split along axis 0 over one mesh axis.
    Batch,
    /// A parameter: whole, or split along any one axis over one mesh axis.
    Param,
}

/// The chosen plan and how it was found.
#[derive(Debug)]
pub struct Chosen {
    /// The layout of each tensor input.
    pub layouts: Vec<Layout>,
    /// Its estimate.
    pub estimate: Estimate,
    /// How many points were priced.
    pub priced: usize,
    /// Whether every point of the space was priced.
    pub exact: bool,
}

/// Why no plan was chosen.
#[derive(Debug, PartialEq)]
pub enum PlanError {
    /// Every plan seen needs more memory than the cap.
    OverCap {
        /// The cap.
        cap: u64,
        /// The smallest peak seen.
        smallest: u64,
    },
    /// The graph could not be partitioned (a bug of a rule, shown as its message).
    Partition(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::OverCap { cap, smallest } => write!(
                f,
                "no plan fits the memory cap of {cap} bytes per device: the smallest needs {smallest}"
            ),
            PlanError::Partition(m) => f.write_str(m),
        }
    }
}

/// The layouts input `t` of rank `rank` and dims `dims` may take in its role.
fn candidates(role: Role, dims: &[usize], mesh: &Mesh) -> Vec<Layout> {
    let rank = dims.len();
    let mut out = vec![Layout::replicated(rank)];
    let axes: Vec<usize> = match role {
        Role::Fixed => return out,
        Role::Batch => (0..rank.min(1)).collect(),
        Role::Param => (0..rank).collect(),
    };
    for axis in axes {
        for (m, &k) in mesh.shape().iter().enumerate() {
            // Splitting an axis into more pieces than it has elements leaves devices idle.
            if k > 1 && dims[axis] >= k {
                out.push(Layout::split(rank, axis, m));
            }
        }
    }
    out
}

/// Searches the layouts of `g`'s tensor inputs (`roles`, one per tensor input) on `mesh`
/// for the cheapest plan on `profile` whose peak memory is within `cap`.
///
/// Three phases, each priced point a partition of the whole graph:
/// 1. When the whole space has at most [`EXACT_LIMIT`] points and pricing them all stays
///    within [`EXACT_WORK`], every point is priced: the optimum over the space.
/// 2. Otherwise inputs of one role and one shape are *tied* (a deep network's weights of
///    one shape take one layout together, as a person writing the plan would), and the
///    tied space is searched — exhaustively when small, else by coordinate descent from
///    two starts (data parallel, everything whole).
/// 3. From the best tied plan, coordinate descent over single inputs while the work
///    spent (points priced times the graph's nodes) stays within [`SEARCH_WORK`].
pub fn search(
    g: &Graph,
    mesh: &Mesh,
    roles: &[Role],
    profile: &Profile,
    cap: Option<u64>,
) -> Result<Chosen, PlanError> {
    let dims: Vec<Vec<usize>> = g
        .inputs()
        .iter()
        .filter_map(|&v| g.ty(v).tensor())
        .map(|t| t.shape.to_known().unwrap_or_default())
        .collect();
    let role = |i: usize| roles.get(i).copied().unwrap_or(Role::Fixed);
    let cands: Vec<Vec<Layout>> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| candidates(role(i), d, mesh))
        .collect();
    let nodes = g.walk(g.body()).len().max(1) as u64;
    let buckets = BucketPolicy::for_profile(profile);
    let mut s = Searcher {
        g,
        mesh,
        profile,
        cap,
        buckets: &buckets,
        priced: 0,
        smallest: u64::MAX,
        best: None,
    };
    let space = space_of(cands.iter().map(Vec::len));
    let exact = space <= EXACT_LIMIT && (space as u64).saturating_mul(nodes) <= EXACT_WORK;
    if exact {
        exhaust(&cands.iter().map(Vec::len).collect::<Vec<_>>(), |index| {
            let layouts: Vec<Layout> = index
                .iter()
                .zip(&cands)
                .map(|(&i, c)| c[i].clone())
                .collect();
            s.price(&layouts).map(|_| ())
        })?;
    } else {
        // Phase 2: one class per (role, shape); a class's options are its members'.
        let mut classes: Vec<(Role, Vec<usize>)> = Vec::new();
        let mut class_of = Vec::with_capacity(dims.len());
        for (i, d) in dims.iter().enumerate() {
            let key = (role(i), d.clone());
            let k = match classes.iter().position(|c| *c == key) {
                Some(k) => k,
                None => {
                    classes.push(key);
                    classes.len() - 1
                }
            };
            class_of.push(k);
        }
        let options: Vec<Vec<Layout>> = classes
            .iter()
            .map(|(r, d)| candidates(*r, d, mesh))
            .collect();
        let tied = |choice: &[usize]| -> Vec<Layout> {
            class_of
                .iter()
                .map(|&k| options[k][choice[k]].clone())
                .collect()
        };
        let tied_space = space_of(options.iter().map(Vec::len));
        if tied_space <= EXACT_LIMIT && (tied_space as u64).saturating_mul(nodes) <= EXACT_WORK {
            exhaust(
                &options.iter().map(Vec::len).collect::<Vec<_>>(),
                |choice| s.price(&tied(choice)).map(|_| ()),
            )?;
        } else {
            let data = data_start(&classes.iter().map(|c| c.0).collect::<Vec<_>>(), &options);
            for start in [data, vec![0; options.len()]] {
                descend(&mut s, &options, start, &tied, u64::MAX)?;
            }
        }
        // Phase 3: untie, one input at a time, from the best tied plan.
        if let Some((layouts, _)) = s.best.clone() {
            let start: Vec<usize> = layouts
                .iter()
                .zip(&cands)
                .map(|(l, c)| c.iter().position(|x| x == l).unwrap_or(0))
                .collect();
            let budget = (SEARCH_WORK / nodes).max(1);
            let single = |index: &[usize]| -> Vec<Layout> {
                index
                    .iter()
                    .zip(&cands)
                    .map(|(&i, c)| c[i].clone())
                    .collect()
            };
            descend(&mut s, &cands, start, &single, budget)?;
        }
    }
    match s.best {
        Some((layouts, estimate)) => Ok(Chosen {
            layouts,
            estimate,
            priced: s.priced,
            exact,
        }),
        None => Err(PlanError::OverCap {
            cap: cap.unwrap_or(0),
            smallest: s.smallest,
        }),
    }
}

/// The most work (points priced times the graph's nodes) an exhaustive search may spend:
/// 4,096 points of a 500-node graph, about two seconds here.
pub const EXACT_WORK: u64 = 2_000_000;

/// The most work the refinement of single inputs (phase 3 of [`search`]) may spend: about
/// 400 prices of a 1,000-node graph (a second here) or 40 of a 10,000-node one.
pub const SEARCH_WORK: u64 = 400_000;

/// The number of points of a space of these option counts (saturating).
fn space_of(counts: impl Iterator<Item = usize>) -> usize {
    counts
        .into_iter()
        .try_fold(1usize, |acc, c| acc.checked_mul(c))
        .unwrap_or(usize::MAX)
}

/// Calls `visit` on every point of a space of these option counts, odometer style.
fn exhaust(
    counts: &[usize],
    mut visit: impl FnMut(&[usize]) -> Result<(), PlanError>,
) -> Result<(), PlanError> {
    if counts.contains(&0) {
        return Ok(());
    }
    let mut index = vec![0usize; counts.len()];
    loop {
        visit(&index)?;
        let mut k = 0;
        while k < index.len() {
            index[k] += 1;
            if index[k] < counts[k] {
                break;
            }
            index[k] = 0;
            k += 1;
        }
        if k == index.len() {
            return Ok(());
        }
    }
}

/// The data-parallel start: every batch split along its rows over mesh axis 0.
fn data_start(roles: &[Role], options: &[Vec<Layout>]) -> Vec<usize> {
    options
        .iter()
        .zip(roles)
        .map(|(c, r)| {
            if *r == Role::Batch {
                c.iter()
                    .position(|l| l.map.first() == Some(&Some(0)))
                    .unwrap_or(0)
            } else {
                0
            }
        })
        .collect()
}

/// Coordinate descent over `options` from `start`: change one coordinate at a time while
/// the estimate improves, for at most four sweeps and `budget` points.
fn descend(
    s: &mut Searcher<'_>,
    options: &[Vec<Layout>],
    start: Vec<usize>,
    layouts: &dyn Fn(&[usize]) -> Vec<Layout>,
    budget: u64,
) -> Result<(), PlanError> {
    let mut spent = 0u64;
    let mut index = start;
    let mut here = s.price(&layouts(&index))?;
    for _sweep in 0..4 {
        let mut moved = false;
        for k in 0..options.len() {
            for option in 0..options[k].len() {
                if option == index[k] {
                    continue;
                }
                if spent >= budget {
                    return Ok(());
                }
                spent += 1;
                let mut next = index.clone();
                next[k] = option;
                if let Some(e) = s.price(&layouts(&next))?
                    && here.as_ref().is_none_or(|h| cheaper(&e, h))
                {
                    index = next;
                    here = Some(e);
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    Ok(())
}

/// The search's state: what was priced, and the best plan within the cap so far.
struct Searcher<'a> {
    g: &'a Graph,
    mesh: &'a Mesh,
    profile: &'a Profile,
    cap: Option<u64>,
    buckets: &'a BucketPolicy,
    priced: usize,
    smallest: u64,
    best: Option<(Vec<Layout>, Estimate)>,
}

impl Searcher<'_> {
    /// Prices one point; its estimate when it fits the cap (and keeps it when it is the
    /// best so far).
    fn price(&mut self, layouts: &[Layout]) -> Result<Option<Estimate>, PlanError> {
        self.priced += 1;
        let p = partition_first(self.g, self.mesh, layouts, &[], self.buckets)
            .map_err(|e| PlanError::Partition(e.to_string()))?;
        let e = estimate(&p, self.profile);
        self.smallest = self.smallest.min(e.peak_bytes);
        if self.cap.is_some_and(|c| e.peak_bytes > c) {
            return Ok(None);
        }
        if self.best.as_ref().is_none_or(|(_, b)| cheaper(&e, b)) {
            self.best = Some((layouts.to_vec(), e.clone()));
        }
        Ok(Some(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::parse;

    /// A wide two-layer block, forward only: `x [8, 1024] @ w1 [1024, 8192]`, relu, `@ w2`.
    const WIDE: &str = "graph @wide(%x: f32[8, 1024], %w1: f32[1024, 8192], %w2: f32[8192, 1024]) -> (f32[8, 1024]) {\n  %h: f32[8, 8192] = matmul %x, %w1\n  %a: f32[8, 8192] = relu %h\n  %y: f32[8, 1024] = matmul %a, %w2\n  yield %y\n}\n";

    /// A batch-heavy layer: `x [65536, 256] @ w [256, 256]`, summed.
    const TALL: &str = "graph @tall(%x: f32[65536, 256], %w: f32[256, 256]) -> (f32[]) {\n  %h: f32[65536, 256] = matmul %x, %w\n  %s: f32[] = sum %h {axes: [0, 1], keepdims: false}\n  yield %s\n}\n";

    fn h100() -> Profile {
        Profile::named("h100").expect("profile")
    }

    #[test]
    fn a_batch_heavy_layer_is_split_by_rows() {
        let g = parse(TALL).expect("parses");
        let c = search(
            &g,
            &Mesh::line(8),
            &[Role::Batch, Role::Param],
            &h100(),
            None,
        )
        .expect("a plan");
        assert!(c.exact);
        assert_eq!(c.layouts[0], Layout::split(2, 0, 0), "{:?}", c.layouts);
        assert!(c.layouts[1].is_replicated(), "{:?}", c.layouts);
    }

    #[test]
    fn the_memory_cap_is_kept_when_a_plan_fits() {
        // Every point priced by hand; for each cap between the smallest and the largest
        // peak, the search's plan fits and is the fastest of the points that fit.
        let g = parse(WIDE).expect("parses");
        let mesh = Mesh::line(4);
        let roles = [Role::Batch, Role::Param, Role::Param];
        let dims = [vec![8, 1024], vec![1024, 8192], vec![8192, 1024]];
        let cands: Vec<Vec<Layout>> = dims
            .iter()
            .zip(roles)
            .map(|(d, r)| candidates(r, d, &mesh))
            .collect();
        let mut points = Vec::new();
        for a in &cands[0] {
            for b in &cands[1] {
                for w in &cands[2] {
                    let p = partition_first(
                        &g,
                        &mesh,
                        &[a.clone(), b.clone(), w.clone()],
                        &[],
                        &BucketPolicy::for_profile(&h100()),
                    )
                    .expect("partitions");
                    let e = estimate(&p, &h100());
                    points.push((e.total(), e.peak_bytes));
                }
            }
        }
        let mut peaks: Vec<u64> = points.iter().map(|p| p.1).collect();
        peaks.sort_unstable();
        peaks.dedup();
        assert!(peaks.len() > 3, "{peaks:?}");
        for &cap in &peaks {
            let c = search(&g, &mesh, &roles, &h100(), Some(cap)).expect("a plan within the cap");
            let fastest = points
                .iter()
                .filter(|p| p.1 <= cap)
                .map(|p| p.0)
                .fold(f64::INFINITY, f64::min);
            assert!(
                c.estimate.peak_bytes <= cap,
                "cap {cap}: {}",
                c.estimate.peak_bytes
            );
            assert!(
                c.estimate.total() <= fastest * 1.005,
                "cap {cap}: {} vs {fastest}",
                c.estimate.total()
            );
        }
        let none = search(&g, &mesh, &roles, &h100(), Some(peaks[0] - 1));
        assert_eq!(
            none.err(),
            Some(PlanError::OverCap {
                cap: peaks[0] - 1,
                smallest: peaks[0]
            })
        );
    }

    #[test]
    fn the_exact_search_finds_what_brute_force_finds() {
        // Every point priced by hand: the search's choice is the cheapest of them.
        let g = parse(WIDE).expect("parses");
        let mesh = Mesh::line(4);
        let roles = [Role::Batch, Role::Param, Role::Param];
        let c = search(&g, &mesh, &roles, &h100(), None).expect("a plan");
        let dims = [vec![8, 1024], vec![1024, 8192], vec![8192, 1024]];
        let cands: Vec<Vec<Layout>> = dims
            .iter()
            .zip(roles)
            .map(|(d, r)| candidates(r, d, &mesh))
            .collect();
        let mut best = f64::INFINITY;
        for a in &cands[0] {
            for b in &cands[1] {
                for w in &cands[2] {
                    let p = partition_first(
                        &g,
                        &mesh,
                        &[a.clone(), b.clone(), w.clone()],
                        &[],
                        &BucketPolicy::for_profile(&h100()),
                    )
                    .expect("partitions");
                    best = best.min(estimate(&p, &h100()).total());
                }
            }
        }
        assert!(
            c.estimate.total() <= best * 1.005,
            "{} vs {best}",
            c.estimate.total()
        );
        assert_eq!(c.priced, cands.iter().map(Vec::len).product::<usize>());
    }

    #[test]
    fn a_slow_axis_carries_less() {
        // On two machines of four GPUs, the inter-machine axis (0) costs more per byte:
        // the same collective is dearer over it.
        let p = Profile::named("h100-2node").expect("profile");
        assert!(p.link(0).beta < p.link(1).beta && p.link(0).alpha > p.link(1).alpha);
        assert_eq!(p.link(5), p.link(1));
    }
}
