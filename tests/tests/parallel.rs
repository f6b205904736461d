//! The partitioner against one device: every graph of `tests/ir/parallel/` (the golden
//! cases of `ir/tests/parallel_golden.rs`) runs whole on the CPU and partitioned over its
//! mesh — one thread per device, collectives through `devices::mesh::Comm` — on seeded
//! random inputs, over several meshes, and the outputs must agree to floating-point
//! tolerance (the all-reduces add parts in another order than one device's sums). Runs
//! repeated on the same inputs must agree bit for bit (the collectives' fixed order).

use std::fs;
use std::path::{Path, PathBuf};

use devices::mesh::{self, Comm};
use devices::schedule::{Effects, Plan};
use devices::{CpuDevice, DeviceError, Tensor};
use ir::graph::{NodeId, Span, ValueId, parse};
use ir::parallel::{BucketPolicy, Collective, Layout, Mesh, Profile, estimate, partition};
use ir::{DType, Graph, TensorType};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir/parallel");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    cases.sort();
    cases
}

/// The golden case's `// layouts: [m0, -] [-]` header, in `Layout`'s text form.
fn layouts(text: &str) -> Vec<Layout> {
    text.lines()
        .find_map(|l| l.strip_prefix("// layouts:"))
        .expect("a layouts line")
        .split_inclusive(']')
        .filter(|p| p.contains('['))
        .map(|p| p.parse().expect("a layout"))
        .collect()
}

/// `// hints: 0 [-, m0]; ...`: the result of body node 0 in that layout.
fn hints(text: &str, g: &Graph) -> Vec<(ValueId, Layout)> {
    let Some(line) = text.lines().find_map(|l| l.strip_prefix("// hints:")) else {
        return Vec::new();
    };
    line.split(';')
        .filter(|h| !h.trim().is_empty())
        .map(|h| {
            let (node, layout) = h.trim().split_once(' ').expect("`N [layout]`");
            let n = g.block(g.body()).nodes[node.parse::<usize>().expect("node index")];
            let r = *g.node(n).results.last().expect("a result");
            (r, layout.parse().expect("a layout"))
        })
        .collect()
}

/// The meshes a case runs on: its own when it has two axes, else lines of 1 to 5 devices.
fn meshes(text: &str) -> Vec<Mesh> {
    let header = text
        .lines()
        .find_map(|l| l.strip_prefix("// mesh:"))
        .expect("a mesh line")
        .trim();
    if header.contains('x') {
        let dims: Vec<usize> = header
            .split('x')
            .map(|d| d.trim().parse().expect("dim"))
            .collect();
        vec![Mesh::new(&dims)]
    } else {
        (1..=5).map(Mesh::line).collect()
    }
}

/// A small counter-based generator, so that inputs do not depend on the test order.
fn noise(seed: u64, i: u64) -> f64 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn input(t: &TensorType, seed: u64) -> Tensor {
    let dims = t.shape.to_known().expect("known dims");
    let n: usize = dims.iter().product();
    match t.dtype {
        DType::F32 => Tensor::from_vec(
            (0..n)
                .map(|i| (noise(seed, i as u64) * 4.0 - 2.0) as f32)
                .collect::<Vec<f32>>(),
            &dims,
        ),
        DType::F64 => Tensor::from_vec(
            (0..n)
                .map(|i| noise(seed, i as u64) * 4.0 - 2.0)
                .collect::<Vec<f64>>(),
            &dims,
        ),
        // Small integers: valid indices for every gather of the cases, and keys.
        DType::I64 => Tensor::from_vec(
            (0..n)
                .map(|i| (noise(seed, i as u64) * 2.0) as i64)
                .collect::<Vec<i64>>(),
            &dims,
        ),
        other => panic!("no inputs of {other}"),
    }
    .expect("input")
}

/// One device's effects: collectives through its communicator; prints ignored.
struct OnMesh<'a> {
    comm: &'a Comm,
    mesh: &'a Mesh,
    dev: &'a CpuDevice,
}

impl Effects for OnMesh<'_> {
    fn print(&mut self, _node: NodeId, _value: &Tensor, _span: Span) {}

    fn collective(
        &mut self,
        c: &Collective,
        value: &Tensor,
        _out: &TensorType,
    ) -> Result<Tensor, DeviceError> {
        let rank = self.comm.rank();
        let members = self.mesh.group(rank, c.mesh_axis());
        match *c {
            Collective::AllReduce { op, .. } => self.comm.all_reduce(self.dev, value, op, &members),
            Collective::AllGather { axis, .. } => {
                self.comm.all_gather(self.dev, value, axis, &members)
            }
            Collective::AllToAll {
                split_axis,
                concat_axis,
                ..
            } => self
                .comm
                .all_to_all(self.dev, value, split_axis, concat_axis, &members),
            Collective::Shard { axis, mesh_axis } => {
                let at = self.mesh.coords(rank)[mesh_axis];
                mesh::shard(self.dev, value, axis, members.len(), at)
            }
        }
    }
}

/// `g` partitioned over `mesh` with the input layouts, run on one thread per device;
/// device 0's outputs.
fn run_on_mesh(
    g: &Graph,
    m: &Mesh,
    ls: &[Layout],
    hints: &[(ValueId, Layout)],
    inputs: &[Tensor],
) -> Vec<Tensor> {
    let p = partition(g, m, ls, hints, &BucketPolicy::ddp()).expect("partitions");
    let dev = CpuDevice::new();
    let comms = Comm::group(m.size());
    let outs: Vec<(Vec<Tensor>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .enumerate()
            .map(|(rank, comm)| {
                let (p, dev) = (&p, &dev);
                s.spawn(move || {
                    let local: Vec<Tensor> = inputs
                        .iter()
                        .zip(ls.iter().chain(std::iter::repeat(&Layout::default())))
                        .map(|(t, l)| {
                            let mut t = t.clone();
                            for (axis, mesh_axis) in l.map.iter().enumerate() {
                                if let Some(ma) = mesh_axis {
                                    let k = m.shape()[*ma];
                                    t = mesh::shard(dev, &t, axis, k, m.coords(rank)[*ma])
                                        .expect("shard");
                                }
                            }
                            t
                        })
                        .collect();
                    let g = &p.graphs[p.of_rank[rank]];
                    let mut fx = OnMesh {
                        comm: &comm,
                        mesh: m,
                        dev,
                    };
                    let r = Plan::new(g).run(dev, &local, &mut fx);
                    let sent = comm.bytes_sent();
                    match &r {
                        Ok(_) => comm.finish(),
                        Err(e) => comm.abort(&e.to_string()),
                    }
                    (r.unwrap_or_else(|e| panic!("device {rank}: {e}")), sent)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("device thread"))
            .collect()
    });
    // What device 0 sent is what the cost model priced: the same collectives, of the same
    // sizes, as its graph (after bucketing) says.
    let (outs, sent): (Vec<Vec<Tensor>>, Vec<u64>) = outs.into_iter().unzip();
    let cpu = Profile::named("cpu").expect("profile");
    assert_eq!(
        sent[0],
        estimate(&p, &cpu).bytes,
        "device 0's bytes against the estimate of {}",
        g.name()
    );
    // Every device ends with the whole outputs, and they agree exactly.
    for (rank, o) in outs.iter().enumerate() {
        for (a, b) in o.iter().zip(&outs[0]) {
            assert!(bits(a) == bits(b), "device {rank} disagrees with device 0");
        }
    }
    outs.into_iter().next().unwrap_or_default()
}

fn bits(t: &Tensor) -> Vec<u64> {
    match t.dtype() {
        DType::F32 => t
            .to_vec::<f32>()
            .unwrap_or_default()
            .iter()
            .map(|x| u64::from(x.to_bits()))
            .collect(),
        DType::F64 => t
            .to_vec::<f64>()
            .unwrap_or_default()
            .iter()
            .map(|x| x.to_bits())
            .collect(),
        DType::I64 => t
            .to_vec::<i64>()
            .unwrap_or_default()
            .iter()
            .map(|&x| x as u64)
            .collect(),
        DType::Bool => t
            .to_vec::<bool>()
            .unwrap_or_default()
            .iter()
            .map(|&x| u64::from(x))
            .collect(),
        _ => Vec::new(),
    }
}

fn close(a: &Tensor, b: &Tensor) -> bool {
    let (x, y) = match (a.dtype(), b.dtype()) {
        (DType::F32, DType::F32) => (
            a.to_vec::<f32>()
                .unwrap_or_default()
                .iter()
                .map(|&v| f64::from(v))
                .collect::<Vec<_>>(),
            b.to_vec::<f32>()
                .unwrap_or_default()
                .iter()
                .map(|&v| f64::from(v))
                .collect::<Vec<_>>(),
        ),
        _ => return bits(a) == bits(b),
    };
    a.shape() == b.shape()
        && x.iter()
            .zip(&y)
            .all(|(p, q)| (p - q).abs() <= 1e-5 * (1.0 + q.abs()))
}

#[test]
fn partitioned_graphs_compute_what_one_device_computes() {
    let dev = CpuDevice::new();
    let mut checked = 0;
    for path in cases() {
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let text = fs::read_to_string(&path).expect("readable");
        let g = parse(&text).expect("parses");
        let ls = layouts(&text);
        let hs = hints(&text, &g);
        let types: Vec<TensorType> = g
            .inputs()
            .iter()
            .filter_map(|&v| g.ty(v).tensor().cloned())
            .collect();
        for seed in 0..3u64 {
            let inputs: Vec<Tensor> = types
                .iter()
                .enumerate()
                .map(|(i, t)| input(t, seed * 100 + i as u64))
                .collect();
            let whole = Plan::new(&g)
                .run(&dev, &inputs, &mut Vec::new())
                .expect("one device");
            for m in meshes(&text) {
                let n = m.size();
                let outs = run_on_mesh(&g, &m, &ls, &hs, &inputs);
                assert_eq!(outs.len(), whole.len(), "{name}");
                for (i, (a, b)) in outs.iter().zip(&whole).enumerate() {
                    assert!(
                        close(a, b),
                        "{name} on {n} devices, output {i}: {:?} vs {:?}",
                        a.to_vec::<f32>(),
                        b.to_vec::<f32>()
                    );
                }
                let again = run_on_mesh(&g, &m, &ls, &hs, &inputs);
                for (a, b) in again.iter().zip(&outs) {
                    assert!(
                        bits(a) == bits(b),
                        "{name} on {n} devices: a second run differs"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "only {checked} runs");
}

/// A device whose graph fails stops the others: no device waits for it forever, and the
/// failure is an error, not a hang or a panic.
#[test]
fn a_failing_device_stops_the_mesh() {
    let g = parse(
        "graph @fails(%x: i64[4], %d: i64[4]) -> (i64[]) {\n  %q: i64[4] = floor_div %x, %d\n  %s: i64[] = sum %q {axes: [0], keepdims: false}\n  yield %s\n}\n",
    )
    .expect("parses");
    let ls = vec![Layout::split(1, 0, 0), Layout::split(1, 0, 0)];
    let p = partition(&g, &Mesh::line(2), &ls, &[], &BucketPolicy::ddp()).expect("partitions");
    let dev = CpuDevice::new();
    let x = Tensor::from_vec(vec![1i64, 2, 3, 4], &[4]).expect("x");
    // Device 1's divisors hold a zero; device 0's do not.
    let d = Tensor::from_vec(vec![1i64, 1, 0, 1], &[4]).expect("d");
    let m = Mesh::line(2);
    let comms = Comm::group(2);
    let results: Vec<bool> = std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .into_iter()
            .enumerate()
            .map(|(rank, comm)| {
                let (p, dev, x, d, m) = (&p, &dev, &x, &d, &m);
                s.spawn(move || {
                    let local = [
                        mesh::shard(dev, x, 0, 2, rank).expect("x piece"),
                        mesh::shard(dev, d, 0, 2, rank).expect("d piece"),
                    ];
                    let mut fx = OnMesh {
                        comm: &comm,
                        mesh: m,
                        dev,
                    };
                    let r = Plan::new(&p.graphs[p.of_rank[rank]]).run(dev, &local, &mut fx);
                    match &r {
                        Ok(_) => comm.finish(),
                        Err(e) => comm.abort(&e.to_string()),
                    }
                    r.is_ok()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(results, vec![false, false]);
}

/// One primitive with random operand layouts and, half the time, a random layout asked of
/// its result: the graph's text, the inputs' layouts, the hint, and a name for failures.
struct OneOp {
    text: String,
    layouts: Vec<Layout>,
    hint: Option<Layout>,
    name: String,
}

/// A random layout of a tensor of rank `rank` on a mesh of `axes` axes: each mesh axis
/// splits a tensor axis no other mesh axis splits, or none.
fn random_layout(rank: usize, axes: usize, pick: &mut impl FnMut(usize) -> usize) -> Layout {
    let mut l = Layout::replicated(rank);
    for m in 0..axes {
        let free: Vec<usize> = (0..rank).filter(|&a| l.map[a].is_none()).collect();
        let choice = pick(free.len() + 1);
        if let Some(&a) = free.get(choice) {
            l.map[a] = Some(m);
        }
    }
    l
}

/// The case drawn from `seed` on a mesh of `axes` axes: an elementwise unary or binary
/// primitive (the second operand full or a broadcast row), a matrix product, a sum or max
/// over one axis (with or without keepdims), or a transpose, on dims that every mesh
/// splits evenly.
fn one_op(seed: u64, axes: usize) -> OneOp {
    let mut i = 0u64;
    let mut pick = |n: usize| {
        i += 1;
        ((noise(seed, i) * n as f64) as usize).min(n.saturating_sub(1))
    };
    // 3 is shorter than a mesh axis of 4: some device then holds an empty piece.
    let dims = [3usize, 12, 24];
    let (a, b, k) = (dims[pick(3)], dims[pick(3)], dims[pick(3)]);
    let t = |d: &[usize]| {
        format!(
            "f32[{}]",
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let (params, body, out, ranks): (Vec<String>, String, String, Vec<usize>) = match pick(5) {
        0 => {
            let op = ["exp", "tanh", "neg", "abs"][pick(4)];
            (
                vec![format!("%x: {}", t(&[a, b]))],
                format!("{op} %x"),
                t(&[a, b]),
                vec![2],
            )
        }
        1 => {
            let op = ["add", "mul", "sub", "maximum"][pick(4)];
            let row = pick(2) == 0;
            let y = if row { t(&[b]) } else { t(&[a, b]) };
            (
                vec![format!("%x: {}", t(&[a, b])), format!("%y: {y}")],
                format!("{op} %x, %y"),
                t(&[a, b]),
                vec![2, if row { 1 } else { 2 }],
            )
        }
        2 => (
            vec![format!("%x: {}", t(&[a, k])), format!("%y: {}", t(&[k, b]))],
            "matmul %x, %y".to_string(),
            t(&[a, b]),
            vec![2, 2],
        ),
        3 => {
            let op = ["sum", "max", "min"][pick(3)];
            let axis = pick(2);
            let keep = pick(2) == 0;
            let kept = match (axis, keep) {
                (0, true) => t(&[1, b]),
                (0, false) => t(&[b]),
                (_, true) => t(&[a, 1]),
                (_, false) => t(&[a]),
            };
            (
                vec![format!("%x: {}", t(&[a, b]))],
                format!("{op} %x {{axes: [{axis}], keepdims: {keep}}}"),
                kept,
                vec![2],
            )
        }
        _ => (
            vec![format!("%x: {}", t(&[a, b]))],
            "transpose %x {perm: [1, 0]}".to_string(),
            t(&[b, a]),
            vec![2],
        ),
    };
    let layouts: Vec<Layout> = ranks
        .iter()
        .map(|&r| random_layout(r, axes, &mut pick))
        .collect();
    let out_rank = out.matches(',').count() + 1;
    let hint = (pick(2) == 0).then(|| random_layout(out_rank, axes, &mut pick));
    let text = format!(
        "graph @op({}) -> ({out}) {{\n  %r: {out} = {body}\n  yield %r\n}}\n",
        params.join(", ")
    );
    let name = format!(
        "{body} on {}, layouts {}, hint {}",
        params.join(", "),
        layouts
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        hint.as_ref().map_or("none".to_string(), |h| h.to_string())
    );
    OneOp {
        text,
        layouts,
        hint,
        name,
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        max_shrink_iters: 32,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Per-primitive sharding and redistribution: one primitive with random operand
    /// layouts (and, half the time, a random layout asked of its result, which the
    /// partitioner reaches by redistributing) on meshes of 1 to 4 devices in a line and
    /// 2×2 and 2×3 grids, partitioned and run on one thread per device, gives what one
    /// device gives; `run_on_mesh` also checks that the devices agree and that device 0
    /// sent the bytes the cost model predicts.
    #[test]
    fn one_primitive_sharded_any_way_computes_what_one_device_computes(
        seed in proptest::prelude::any::<u64>(),
        mesh_at in 0usize..6,
    ) {
        let m = [
            Mesh::line(1),
            Mesh::line(2),
            Mesh::line(3),
            Mesh::line(4),
            Mesh::new(&[2, 2]),
            Mesh::new(&[2, 3]),
        ][mesh_at]
            .clone();
        let case = one_op(seed, m.shape().len());
        let g = parse(&case.text).expect("parses");
        let inputs: Vec<Tensor> = g
            .inputs()
            .iter()
            .enumerate()
            .filter_map(|(i, &v)| g.ty(v).tensor().map(|t| input(t, seed ^ i as u64)))
            .collect();
        let whole = Plan::new(&g)
            .run(&CpuDevice::new(), &inputs, &mut Vec::new())
            .expect("one device");
        let hints: Vec<(ValueId, Layout)> = case
            .hint
            .iter()
            .map(|h| (g.block(g.body()).yields[0], h.clone()))
            .collect();
        let outs = run_on_mesh(&g, &m, &case.layouts, &hints, &inputs);
        proptest::prop_assert_eq!(outs.len(), whole.len());
        for (o, w) in outs.iter().zip(&whole) {
            proptest::prop_assert!(
                close(o, w),
                "{} on {:?}: {:?} vs {:?}",
                case.name,
                m.shape(),
                o.to_vec::<f32>(),
                w.to_vec::<f32>()
            );
        }
    }
}
