//! Collectives over a mesh (`devices::mesh`): the functional collectives checked against
//! hand-computed values (uneven splits, three dtypes, NaN-propagating max and min), and the
//! threaded communicator checked for bitwise determinism under random thread schedules,
//! independent sub-groups, agreement errors, and ranks that stop early.
//!
//! Ctrl-C while waiting is tested in `mesh_cancel.rs`: the cancel flag is process-wide, and
//! setting it here would fail the other tests of this binary, which run in parallel.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use devices::mesh::{
    self, Comm, ReduceKind, all_gather, all_reduce, all_to_all, broadcast, reduce_scatter, shard,
    split_offsets, split_range, split_sizes,
};
use devices::{CpuDevice, DeviceError, Elem, Tensor};

fn t<T: Elem>(data: Vec<T>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(data, shape).expect("the data fills the shape")
}

fn vals<T: Elem>(x: &Tensor) -> Vec<T> {
    x.to_vec::<T>().expect("a host tensor of that dtype")
}

fn bits32(x: &Tensor) -> Vec<u32> {
    vals::<f32>(x).iter().map(|v| v.to_bits()).collect()
}

/// `0, 1, 2, …` as f32 of `shape`, plus `base`.
fn iota32(shape: &[usize], base: f32) -> Tensor {
    let n: usize = shape.iter().product();
    t((0..n).map(|i| base + i as f32).collect(), shape)
}

/// The operation and message of a collective error; panics (failing the test) on any
/// other result.
fn collective(r: Result<impl std::fmt::Debug, DeviceError>) -> (&'static str, String) {
    match r {
        Err(DeviceError::Collective { op, message }) => (op, message),
        other => panic!("expected a collective error, got {other:?}"),
    }
}

/// A small deterministic generator (xorshift64*), so that schedules are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs `f(comm)` for every rank of a fresh communicator of `n` ranks, each on its own
/// thread, and gives the results in rank order. Each rank finishes its handle cleanly.
fn on_ranks<R: Send + 'static>(n: usize, f: impl Fn(&Comm) -> R + Send + Sync + 'static) -> Vec<R> {
    let f = Arc::new(f);
    let handles: Vec<_> = Comm::group(n)
        .into_iter()
        .map(|comm| {
            let f = Arc::clone(&f);
            thread::spawn(move || {
                let r = f(&comm);
                comm.finish();
                r
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("the rank's thread ends without panicking"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Splits.
// ---------------------------------------------------------------------------------------

#[test]
fn split_sizes_are_even_with_the_first_pieces_longer() {
    assert_eq!(split_sizes(10, 4), vec![3, 3, 2, 2]);
    assert_eq!(split_offsets(10, 4), vec![0, 3, 6, 8]);
    assert_eq!(split_sizes(12, 4), vec![3, 3, 3, 3]);
    assert_eq!(split_sizes(11, 3), vec![4, 4, 3]);
    assert_eq!(split_offsets(11, 3), vec![0, 4, 8]);
    // Fewer elements than pieces: the last pieces are empty.
    assert_eq!(split_sizes(2, 4), vec![1, 1, 0, 0]);
    assert_eq!(split_offsets(2, 4), vec![0, 1, 2, 2]);
    assert_eq!(split_sizes(0, 3), vec![0, 0, 0]);
    // One piece is the whole; no pieces is nothing.
    assert_eq!(split_sizes(7, 1), vec![7]);
    assert_eq!(split_offsets(7, 1), vec![0]);
    assert_eq!(split_sizes(7, 0), Vec::<usize>::new());
    assert_eq!(split_range(10, 4, 2), 6..8);
    assert_eq!(split_range(10, 4, 9), 10..10);

    // Against NumPy's rule, for every small case: consecutive, covering, sizes differ by
    // at most one, and the longer ones first.
    for len in 0..40 {
        for n in 1..12 {
            let sizes = split_sizes(len, n);
            let offsets = split_offsets(len, n);
            assert_eq!(sizes.len(), n);
            assert_eq!(sizes.iter().sum::<usize>(), len, "{len} over {n}");
            for i in 0..n {
                let want = len / n + usize::from(i < len % n);
                assert_eq!(sizes[i], want, "{len} over {n}, piece {i}");
                let start: usize = sizes[..i].iter().sum();
                assert_eq!(offsets[i], start);
                assert_eq!(split_range(len, n, i), start..start + want);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The functional collectives.
// ---------------------------------------------------------------------------------------

#[test]
fn all_reduce_is_exact_for_f32_f64_and_i64() {
    let dev = CpuDevice::new();
    let parts32 = [
        t(vec![1.0f32, -2.0, 0.5], &[3]),
        t(vec![10.0f32, 3.0, 0.25], &[3]),
        t(vec![-4.0f32, 7.0, 2.0], &[3]),
    ];
    let sum = all_reduce(&dev, &parts32, ReduceKind::Sum).expect("sum");
    assert_eq!(vals::<f32>(&sum), vec![7.0, 8.0, 2.75]);
    let max = all_reduce(&dev, &parts32, ReduceKind::Max).expect("max");
    assert_eq!(vals::<f32>(&max), vec![10.0, 7.0, 2.0]);
    let min = all_reduce(&dev, &parts32, ReduceKind::Min).expect("min");
    assert_eq!(vals::<f32>(&min), vec![-4.0, -2.0, 0.25]);
    assert_eq!(sum.shape(), &[3]);

    let parts64 = [
        t(vec![0.1f64, 1e300, 2.0, 3.0], &[2, 2]),
        t(vec![0.2f64, 1e300, -2.0, 5.0], &[2, 2]),
    ];
    let sum = all_reduce(&dev, &parts64, ReduceKind::Sum).expect("sum");
    assert_eq!(sum.shape(), &[2, 2]);
    assert_eq!(vals::<f64>(&sum), vec![0.1 + 0.2, 2e300, 0.0, 8.0]);
    let max = all_reduce(&dev, &parts64, ReduceKind::Max).expect("max");
    assert_eq!(vals::<f64>(&max), vec![0.2, 1e300, 2.0, 5.0]);

    // Integers are exact and wrap on overflow, as the `add` kernel does.
    let parts_i = [
        t(vec![i64::MAX, 5, -7], &[3]),
        t(vec![1i64, 6, 3], &[3]),
        t(vec![0i64, -20, 4], &[3]),
        t(vec![0i64, 1, 0], &[3]),
    ];
    let sum = all_reduce(&dev, &parts_i, ReduceKind::Sum).expect("sum");
    assert_eq!(vals::<i64>(&sum), vec![i64::MIN, -8, 0]);
    let max = all_reduce(&dev, &parts_i, ReduceKind::Max).expect("max");
    assert_eq!(vals::<i64>(&max), vec![i64::MAX, 6, 4]);
    let min = all_reduce(&dev, &parts_i, ReduceKind::Min).expect("min");
    assert_eq!(vals::<i64>(&min), vec![0, -20, -7]);

    // One part is its own reduction.
    let one = all_reduce(&dev, &parts32[..1], ReduceKind::Sum).expect("one part");
    assert_eq!(vals::<f32>(&one), vec![1.0, -2.0, 0.5]);
}

#[test]
fn max_and_min_propagate_nan_from_any_rank() {
    let dev = CpuDevice::new();
    let nan = f32::NAN;
    let parts = [
        t(vec![1.0f32, nan, 3.0, -1.0], &[4]),
        t(vec![2.0f32, 0.0, nan, -2.0], &[4]),
        t(vec![nan, 5.0, 4.0, f32::INFINITY], &[4]),
    ];
    for kind in [ReduceKind::Max, ReduceKind::Min] {
        let r = vals::<f32>(&all_reduce(&dev, &parts, kind).expect("reduces"));
        assert!(
            r[0].is_nan() && r[1].is_nan() && r[2].is_nan(),
            "{kind}: {r:?}"
        );
        let want = if kind == ReduceKind::Max {
            f32::INFINITY
        } else {
            -2.0
        };
        assert_eq!(r[3], want, "{kind}");
    }
    let parts64 = [t(vec![f64::NAN, 1.0], &[2]), t(vec![0.0f64, 2.0], &[2])];
    let r = vals::<f64>(&all_reduce(&dev, &parts64, ReduceKind::Max).expect("max"));
    assert!(r[0].is_nan());
    assert_eq!(r[1], 2.0);
}

#[test]
fn bools_reduce_as_any_and_all() {
    // A `max` over bools is `any` and a `min` is `all`: an all-reduce of the parts of such
    // a reduction ors or ands them (there is no `maximum` of bools to call).
    let dev = CpuDevice::new();
    let parts = [
        t(vec![true, false, false, true], &[4]),
        t(vec![true, true, false, false], &[4]),
        t(vec![true, false, false, true], &[4]),
    ];
    let any = all_reduce(&dev, &parts, ReduceKind::Max).expect("max of bools");
    assert_eq!(vals::<bool>(&any), vec![true, true, false, true]);
    let all = all_reduce(&dev, &parts, ReduceKind::Min).expect("min of bools");
    assert_eq!(vals::<bool>(&all), vec![true, false, false, false]);
}

#[test]
fn all_reduce_folds_in_rank_order() {
    // In f32, 1e8 + 1 rounds back to 1e8, so ((1e8 + 1) - 1e8) is 0 while any order that
    // adds the 1 last gives 1: the result tells the order apart.
    let dev = CpuDevice::new();
    let parts = [
        t(vec![1e8f32], &[1]),
        t(vec![1.0f32], &[1]),
        t(vec![-1e8f32], &[1]),
    ];
    let r = all_reduce(&dev, &parts, ReduceKind::Sum).expect("sum");
    assert_eq!(vals::<f32>(&r), vec![0.0]);
    let reordered = [parts[0].clone(), parts[2].clone(), parts[1].clone()];
    let r = all_reduce(&dev, &reordered, ReduceKind::Sum).expect("sum");
    assert_eq!(vals::<f32>(&r), vec![1.0]);
}

#[test]
fn all_gather_joins_uneven_shards_in_rank_order() {
    let dev = CpuDevice::new();
    let whole = iota32(&[10, 2], 0.0);
    let shards: Vec<Tensor> = (0..4)
        .map(|i| shard(&dev, &whole, 0, 4, i).expect("a shard"))
        .collect();
    let rows: Vec<usize> = shards.iter().map(|s| s.shape()[0]).collect();
    assert_eq!(rows, vec![3, 3, 2, 2]);
    assert_eq!(vals::<f32>(&shards[2]), vec![12.0, 13.0, 14.0, 15.0]);
    let back = all_gather(&dev, &shards, 0).expect("gathers");
    assert_eq!(back.shape(), &[10, 2]);
    assert_eq!(vals::<f32>(&back), vals::<f32>(&whole));

    // Along the last axis, with i64.
    let parts = [
        t(vec![1i64, 2, 3, 4], &[2, 2]),
        t(vec![5i64, 6], &[2, 1]),
        t(Vec::<i64>::new(), &[2, 0]),
    ];
    let g = all_gather(&dev, &parts, 1).expect("gathers");
    assert_eq!(g.shape(), &[2, 3]);
    assert_eq!(vals::<i64>(&g), vec![1, 2, 5, 3, 4, 6]);
}

#[test]
fn reduce_scatter_gives_each_rank_its_piece_of_the_sum() {
    let dev = CpuDevice::new();
    // Four ranks, ten elements each: rank r holds 100 r + i.
    let parts: Vec<Tensor> = (0..4).map(|r| iota32(&[10], 100.0 * r as f32)).collect();
    let pieces = reduce_scatter(&dev, &parts, ReduceKind::Sum, 0).expect("scatters");
    // The sum is 600 + 4 i; rank pieces are 3, 3, 2 and 2 long.
    let want: Vec<Vec<f32>> = vec![
        vec![600.0, 604.0, 608.0],
        vec![612.0, 616.0, 620.0],
        vec![624.0, 628.0],
        vec![632.0, 636.0],
    ];
    let got: Vec<Vec<f32>> = pieces.iter().map(vals::<f32>).collect();
    assert_eq!(got, want);

    // Round trip: gathering the pieces gives the all-reduce, on a 2-D part along axis 1.
    let parts: Vec<Tensor> = (0..3).map(|r| iota32(&[2, 5], 0.5 * r as f32)).collect();
    let pieces = reduce_scatter(&dev, &parts, ReduceKind::Max, 1).expect("scatters");
    let widths: Vec<usize> = pieces.iter().map(|p| p.shape()[1]).collect();
    assert_eq!(widths, vec![2, 2, 1]);
    let gathered = all_gather(&dev, &pieces, 1).expect("gathers");
    let reduced = all_reduce(&dev, &parts, ReduceKind::Max).expect("reduces");
    assert_eq!(bits32(&gathered), bits32(&reduced));
    assert_eq!(vals::<f32>(&pieces[2]), vec![5.0, 10.0]);
}

#[test]
fn all_to_all_exchanges_pieces_and_twice_with_swapped_axes_is_identity() {
    let dev = CpuDevice::new();
    // Two ranks with 2 × 2 parts; split along axis 1, concatenate along axis 0.
    let parts = [
        t(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]),
        t(vec![5.0f64, 6.0, 7.0, 8.0], &[2, 2]),
    ];
    let out = all_to_all(&dev, &parts, 1, 0).expect("exchanges");
    assert_eq!(out[0].shape(), &[4, 1]);
    assert_eq!(vals::<f64>(&out[0]), vec![1.0, 3.0, 5.0, 7.0]);
    assert_eq!(vals::<f64>(&out[1]), vec![2.0, 4.0, 6.0, 8.0]);

    // A 10 × 6 tensor sharded by rows over 4 ranks (3, 3, 2, 2 rows) becomes sharded by
    // columns (2, 2, 1, 1 columns), and back.
    let whole = iota32(&[10, 6], 0.0);
    let rows: Vec<Tensor> = (0..4)
        .map(|i| shard(&dev, &whole, 0, 4, i).expect("a shard"))
        .collect();
    let cols = all_to_all(&dev, &rows, 1, 0).expect("to columns");
    for (i, c) in cols.iter().enumerate() {
        let want = shard(&dev, &whole, 1, 4, i).expect("a column shard");
        assert_eq!(c.shape(), want.shape(), "rank {i}");
        assert_eq!(bits32(c), bits32(&want), "rank {i}");
    }
    let back = all_to_all(&dev, &cols, 0, 1).expect("back to rows");
    for (i, (b, r)) in back.iter().zip(&rows).enumerate() {
        assert_eq!(b.shape(), r.shape(), "rank {i}");
        assert_eq!(bits32(b), bits32(r), "rank {i}");
    }

    // One axis both split and joined: rank i gets piece i of every part, in rank order.
    let parts = [iota32(&[4], 0.0), iota32(&[4], 10.0), iota32(&[4], 20.0)];
    let out = all_to_all(&dev, &parts, 0, 0).expect("exchanges");
    assert_eq!(vals::<f32>(&out[0]), vec![0.0, 1.0, 10.0, 11.0, 20.0, 21.0]);
    assert_eq!(vals::<f32>(&out[2]), vec![3.0, 13.0, 23.0]);
}

#[test]
fn broadcast_gives_the_roots_part_to_every_rank() {
    let parts = [
        t(vec![1i64, 2], &[2]),
        t(vec![3i64, 4], &[2]),
        t(vec![0i64, 0], &[2]),
    ];
    let out = broadcast(&parts, 1).expect("broadcasts");
    assert_eq!(out.len(), 3);
    for o in &out {
        assert_eq!(vals::<i64>(o), vec![3, 4]);
        assert!(o.shares_buffer(&parts[1]), "nothing is copied");
    }
}

#[test]
fn shards_cover_the_tensor_even_when_pieces_are_empty() {
    let dev = CpuDevice::new();
    let x = iota32(&[2, 3], 0.0);
    // Two rows over four ranks: 1, 1, 0, 0 rows.
    let shards: Vec<Tensor> = (0..4)
        .map(|i| shard(&dev, &x, 0, 4, i).expect("a shard"))
        .collect();
    let shapes: Vec<&[usize]> = shards.iter().map(|s| s.shape()).collect();
    assert_eq!(shapes, vec![&[1, 3][..], &[1, 3], &[0, 3], &[0, 3]]);
    assert_eq!(vals::<f32>(&shards[1]), vec![3.0, 4.0, 5.0]);
    assert!(vals::<f32>(&shards[3]).is_empty());
    let back = all_gather(&dev, &shards, 0).expect("gathers");
    assert_eq!(vals::<f32>(&back), vals::<f32>(&x));
    // Empty pieces reduce-scatter and all-to-all too.
    let pieces = reduce_scatter(&dev, &shards[..2], ReduceKind::Sum, 0).expect("scatters");
    assert_eq!(pieces[0].shape(), &[1, 3]);
    assert_eq!(pieces[1].shape(), &[0, 3]);
    let out = all_to_all(&dev, &[x.clone(), x.clone(), x.clone()], 0, 1).expect("exchanges");
    assert_eq!(out[2].shape(), &[0, 9]);

    // One piece is the whole tensor.
    let one = shard(&dev, &x, 1, 1, 0).expect("the whole");
    assert_eq!(vals::<f32>(&one), vals::<f32>(&x));
}

#[test]
fn bad_parts_are_collective_errors() {
    let dev = CpuDevice::new();
    let a = iota32(&[2, 3], 0.0);
    let b = iota32(&[3, 3], 0.0);
    let c = t(vec![1.0f64; 6], &[2, 3]);
    let r1 = iota32(&[6], 0.0);

    let (op, msg) = collective(all_reduce(&dev, &[], ReduceKind::Sum));
    assert_eq!(op, "all_reduce");
    assert!(msg.contains("no parts"), "{msg}");
    let (_, msg) = collective(all_reduce(&dev, &[a.clone(), b.clone()], ReduceKind::Sum));
    assert!(
        msg.contains("part 1 has shape [3, 3] but part 0 has [2, 3]"),
        "{msg}"
    );
    let (_, msg) = collective(all_reduce(&dev, &[a.clone(), c.clone()], ReduceKind::Max));
    assert!(msg.contains("part 1 is f64 but part 0 is f32"), "{msg}");
    let (_, msg) = collective(all_reduce(&dev, &[a.clone(), r1.clone()], ReduceKind::Min));
    assert!(msg.contains("part 1 has shape [6]"), "{msg}");

    // Gathers may differ along their axis only.
    assert!(all_gather(&dev, &[a.clone(), b.clone()], 0).is_ok());
    let (op, msg) = collective(all_gather(&dev, &[a.clone(), b.clone()], 1));
    assert_eq!(op, "all_gather");
    assert!(msg.contains("except along axis 1"), "{msg}");
    let (_, msg) = collective(all_gather(&dev, std::slice::from_ref(&a), 2));
    assert!(
        msg.contains("axis 2 is out of range for parts of rank 2"),
        "{msg}"
    );
    let (op, _) = collective(all_gather(&dev, &[a.clone(), c.clone()], 0));
    assert_eq!(op, "all_gather");

    let (op, _) = collective(reduce_scatter(
        &dev,
        std::slice::from_ref(&a),
        ReduceKind::Sum,
        5,
    ));
    assert_eq!(op, "reduce_scatter");
    let (op, _) = collective(reduce_scatter(
        &dev,
        &[a.clone(), b.clone()],
        ReduceKind::Sum,
        0,
    ));
    assert_eq!(op, "reduce_scatter");

    let (op, msg) = collective(all_to_all(&dev, std::slice::from_ref(&a), 2, 0));
    assert_eq!(op, "all_to_all");
    assert!(msg.contains("split axis 2"), "{msg}");
    let (_, msg) = collective(all_to_all(&dev, std::slice::from_ref(&a), 0, 3));
    assert!(msg.contains("concat axis 3"), "{msg}");
    collective(all_to_all(&dev, &[a.clone(), b.clone()], 0, 1));
    assert!(all_to_all(&dev, &[a.clone(), b.clone()], 1, 0).is_ok());

    let (op, msg) = collective(broadcast(&[a.clone(), a.clone()], 2));
    assert_eq!(op, "broadcast");
    assert!(msg.contains("root 2"), "{msg}");
    collective(broadcast(&[a.clone(), b.clone()], 0));
    collective(broadcast(&[], 0));

    let (op, msg) = collective(shard(&dev, &a, 0, 2, 2));
    assert_eq!(op, "shard");
    assert!(msg.contains("piece 2"), "{msg}");
    collective(shard(&dev, &a, 0, 0, 0));
    collective(shard(&dev, &a, 2, 2, 0));

    // A dtype the kernel does not add is the kernel's own error, unchanged.
    let flags = [t(vec![true, false], &[2]), t(vec![true, true], &[2])];
    let e = all_reduce(&dev, &flags, ReduceKind::Sum);
    assert!(matches!(e, Err(DeviceError::Infer(_))), "{e:?}");
}

// ---------------------------------------------------------------------------------------
// The communicator.
// ---------------------------------------------------------------------------------------

#[test]
fn a_communicator_runs_every_collective_like_the_functions() {
    let dev = CpuDevice::new();
    let part = |r: usize| iota32(&[10, 3], 7.5 * r as f32 - 3.0);
    let parts: Vec<Tensor> = (0..3).map(part).collect();
    let want_reduce = all_reduce(&dev, &parts, ReduceKind::Sum).expect("reduces");
    let want_gather = all_gather(&dev, &parts, 1).expect("gathers");
    let want_scatter = reduce_scatter(&dev, &parts, ReduceKind::Min, 0).expect("scatters");
    let want_a2a = all_to_all(&dev, &parts, 0, 1).expect("exchanges");

    let got = on_ranks(3, move |comm| {
        let dev = CpuDevice::new();
        let all = [0, 1, 2];
        let x = part(comm.rank());
        assert_eq!(comm.size(), 3);
        let reduced = comm
            .all_reduce(&dev, &x, ReduceKind::Sum, &all)
            .expect("all_reduce");
        let gathered = comm.all_gather(&dev, &x, 1, &all).expect("all_gather");
        let piece = comm
            .reduce_scatter(&dev, &x, ReduceKind::Min, 0, &all)
            .expect("reduce_scatter");
        let exchanged = comm.all_to_all(&dev, &x, 0, 1, &all).expect("all_to_all");
        let root = comm.broadcast(&x, 2, &all).expect("broadcast");
        (reduced, gathered, piece, exchanged, root)
    });
    for (r, (reduced, gathered, piece, exchanged, root)) in got.iter().enumerate() {
        assert_eq!(bits32(reduced), bits32(&want_reduce), "rank {r}");
        assert_eq!(gathered.shape(), &[10, 9]);
        assert_eq!(bits32(gathered), bits32(&want_gather), "rank {r}");
        assert_eq!(piece.shape(), want_scatter[r].shape(), "rank {r}");
        assert_eq!(bits32(piece), bits32(&want_scatter[r]), "rank {r}");
        assert_eq!(bits32(exchanged), bits32(&want_a2a[r]), "rank {r}");
        assert_eq!(bits32(root), bits32(&parts[2]), "rank {r}");
    }
    // The uneven pieces: 10 rows over 3 ranks.
    let rows: Vec<usize> = got.iter().map(|g| g.2.shape()[0]).collect();
    assert_eq!(rows, vec![4, 3, 3]);
}

#[test]
fn all_reduce_is_bitwise_identical_under_200_random_schedules() {
    const RANKS: usize = 4;
    const LEN: usize = 64;
    // Values over many binades with both signs, so that almost every element's sum depends
    // on the order of the additions.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let data: Vec<Vec<f32>> = (0..RANKS)
        .map(|_| {
            (0..LEN)
                .map(|_| {
                    let mant = 1.0 + (rng.below(1 << 20) as f32) / (1 << 20) as f32;
                    let exp = rng.below(40) as i32 - 20;
                    let sign = if rng.below(2) == 0 { 1.0 } else { -1.0 };
                    sign * mant * 2f32.powi(exp)
                })
                .collect()
        })
        .collect();
    // The reference, folded by hand in rank order: ((p0 + p1) + p2) + p3.
    let want: Vec<u32> = (0..LEN)
        .map(|i| {
            let mut acc = data[0][i];
            for part in &data[1..] {
                acc += part[i];
            }
            acc.to_bits()
        })
        .collect();
    // The test can fail: another order gives other bits.
    let reversed: Vec<u32> = (0..LEN)
        .map(|i| {
            let mut acc = data[RANKS - 1][i];
            for part in data[..RANKS - 1].iter().rev() {
                acc += part[i];
            }
            acc.to_bits()
        })
        .collect();
    assert_ne!(want, reversed, "the data must make the order visible");

    let data = Arc::new(data);
    for schedule in 0..200u64 {
        let mut delays = Rng(schedule.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let plans: Vec<(u64, u64)> = (0..RANKS)
            .map(|_| (delays.below(300), delays.below(4)))
            .collect();
        let data = Arc::clone(&data);
        let results = on_ranks(RANKS, move |comm| {
            let dev = CpuDevice::new();
            let (micros, yields) = plans[comm.rank()];
            for _ in 0..yields {
                thread::yield_now();
            }
            if micros % 3 != 0 {
                thread::sleep(Duration::from_micros(micros));
            }
            let x = t(data[comm.rank()].clone(), &[LEN]);
            comm.all_reduce(&dev, &x, ReduceKind::Sum, &[0, 1, 2, 3])
                .expect("all_reduce")
        });
        for (r, got) in results.iter().enumerate() {
            assert_eq!(bits32(got), want, "schedule {schedule}, rank {r}");
        }
    }
}

#[test]
fn sub_groups_of_a_2x2_mesh_run_concurrently_and_independently() {
    // The mesh   0 1    rows {0, 1} and {2, 3}, columns {0, 2} and {1, 3}.
    //            2 3
    // Rank 1 does not reach its row's all-reduce until the other row has finished two
    // all-reduces: were the groups not independent, rank 0 would block ranks 2 and 3.
    let (tx, rx) = mpsc::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    let rx = std::sync::Mutex::new(Some(rx));
    let start = Arc::new(Barrier::new(4));
    let got = on_ranks(4, move |comm| {
        let dev = CpuDevice::new();
        let r = comm.rank();
        let row = if r < 2 { [0, 1] } else { [2, 3] };
        let col = if r % 2 == 0 { [0, 2] } else { [1, 3] };
        let x = t(vec![10.0f64.powi(r as i32)], &[1]);
        start.wait();
        if r == 1 {
            let rx = rx.lock().expect("the lock").take().expect("one receiver");
            rx.recv_timeout(Duration::from_secs(20))
                .expect("the other row finishes while rank 0 waits");
        }
        let mut y = comm
            .all_reduce(&dev, &x, ReduceKind::Sum, &row)
            .expect("row all_reduce");
        if r >= 2 {
            y = comm
                .all_reduce(&dev, &y, ReduceKind::Max, &row)
                .expect("second row all_reduce");
            if r == 2 {
                let tx = tx.lock().expect("the lock").take().expect("one sender");
                tx.send(()).expect("rank 1 waits");
            }
        }
        let z = comm
            .all_reduce(&dev, &y, ReduceKind::Sum, &col)
            .expect("column all_reduce");
        (vals::<f64>(&y)[0], vals::<f64>(&z)[0])
    });
    // Rows: 1 + 10 = 11 and 100 + 1000 = 1100; columns add the rows: 1111 everywhere.
    assert_eq!(
        got,
        vec![
            (11.0, 1111.0),
            (11.0, 1111.0),
            (1100.0, 1111.0),
            (1100.0, 1111.0)
        ]
    );
}

#[test]
fn members_that_disagree_all_get_the_same_error_and_go_on() {
    // Each case: what rank 0 and what rank 1 call; both must fail with one error, and the
    // next (matching) call must work, so the sequences stay aligned.
    type Case = fn(&Comm, &CpuDevice) -> Result<Tensor, DeviceError>;
    let cases: Vec<(&str, Case, Case)> = vec![
        (
            "different collectives",
            |c, d| c.all_reduce(d, &iota32(&[4], 0.0), ReduceKind::Sum, &[0, 1]),
            |c, d| c.all_gather(d, &iota32(&[4], 0.0), 0, &[0, 1]),
        ),
        (
            "different reductions",
            |c, d| c.all_reduce(d, &iota32(&[4], 0.0), ReduceKind::Sum, &[0, 1]),
            |c, d| c.all_reduce(d, &iota32(&[4], 0.0), ReduceKind::Max, &[0, 1]),
        ),
        (
            "different axes",
            |c, d| c.all_gather(d, &iota32(&[2, 2], 0.0), 0, &[0, 1]),
            |c, d| c.all_gather(d, &iota32(&[2, 2], 0.0), 1, &[0, 1]),
        ),
        (
            "different shapes",
            |c, d| c.all_reduce(d, &iota32(&[4], 0.0), ReduceKind::Sum, &[0, 1]),
            |c, d| c.all_reduce(d, &iota32(&[5], 0.0), ReduceKind::Sum, &[0, 1]),
        ),
        (
            "different dtypes",
            |c, d| c.all_reduce(d, &iota32(&[2], 0.0), ReduceKind::Sum, &[0, 1]),
            |c, d| c.all_reduce(d, &t(vec![1i64, 2], &[2]), ReduceKind::Sum, &[0, 1]),
        ),
        (
            "different roots",
            |c, _| c.broadcast(&iota32(&[2], 0.0), 0, &[0, 1]),
            |c, _| c.broadcast(&iota32(&[2], 0.0), 1, &[0, 1]),
        ),
    ];
    for (what, zero, one) in cases {
        let got = on_ranks(2, move |comm| {
            let dev = CpuDevice::new();
            let first = if comm.rank() == 0 {
                zero(comm, &dev)
            } else {
                one(comm, &dev)
            };
            let next = comm
                .all_reduce(&dev, &t(vec![1.0f32], &[1]), ReduceKind::Sum, &[0, 1])
                .map(|x| vals::<f32>(&x));
            (first, next)
        });
        let e0 = got[0].0.clone().expect_err(what);
        let e1 = got[1].0.clone().expect_err(what);
        assert!(matches!(e0, DeviceError::Collective { .. }), "{what}: {e0}");
        assert_eq!(e0, e1, "{what}: both members get the same error");
        for (r, g) in got.iter().enumerate() {
            assert_eq!(g.1, Ok(vec![2.0]), "{what}: rank {r} goes on");
        }
    }
}

#[test]
fn a_disagreement_names_the_ranks_whatever_the_arrival_order() {
    for late in 0..3 {
        let got = on_ranks(3, move |comm| {
            let dev = CpuDevice::new();
            if comm.rank() != late {
                thread::sleep(Duration::from_millis(20));
            }
            let x = iota32(&[2], 0.0);
            if comm.rank() == 2 {
                comm.all_gather(&dev, &x, 0, &[0, 1, 2])
            } else {
                comm.all_reduce(&dev, &x, ReduceKind::Sum, &[0, 1, 2])
            }
        });
        for g in &got {
            let (op, msg) = collective(g.clone());
            assert_eq!(op, "all_reduce");
            assert_eq!(
                msg,
                "the members disagree: rank 2 called all_gather(axis 0) but rank 0 called \
                 all_reduce(sum)"
            );
        }
    }
}

#[test]
fn an_abort_fails_the_waiting_ranks_and_every_later_call() {
    let started = Instant::now();
    let got = on_ranks(4, |comm| {
        let dev = CpuDevice::new();
        let x = iota32(&[3], 0.0);
        if comm.rank() == 3 {
            thread::sleep(Duration::from_millis(100));
            comm.abort("the test stops rank 3");
            let later = comm.all_reduce(&dev, &x, ReduceKind::Sum, &[0, 3]);
            return vec![collective(later)];
        }
        // Ranks 0..3 wait for rank 3, which never comes.
        let pending = comm.all_reduce(&dev, &x, ReduceKind::Sum, &[0, 1, 2, 3]);
        // And a later call on another group fails too.
        let later = comm.all_gather(&dev, &x, 0, &[0, 1, 2]);
        vec![collective(pending), collective(later)]
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    for (r, errors) in got.iter().enumerate() {
        for (op, msg) in errors {
            assert!(["all_reduce", "all_gather"].contains(op), "rank {r}: {op}");
            assert_eq!(msg, "rank 3 stopped: the test stops rank 3", "rank {r}");
        }
    }
}

#[test]
fn a_rank_that_stops_without_finishing_fails_the_others() {
    // Rank 1 returns early (its handle is dropped), rank 2 panics: either way the others
    // get an error naming the rank instead of waiting forever.
    for stopper in [1usize, 2] {
        let handles: Vec<_> = Comm::group(3)
            .into_iter()
            .map(|comm| {
                thread::spawn(move || {
                    let dev = CpuDevice::new();
                    if comm.rank() == stopper {
                        thread::sleep(Duration::from_millis(50));
                        if stopper == 2 {
                            panic!("rank 2 fails on purpose");
                        }
                        return None;
                    }
                    let x = iota32(&[2], 0.0);
                    let r = comm.all_reduce(&dev, &x, ReduceKind::Sum, &[0, 1, 2]);
                    comm.finish();
                    Some(collective(r))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        for (r, res) in results.into_iter().enumerate() {
            if r == stopper {
                assert_eq!(res.is_err(), stopper == 2, "rank {r} panicked or returned");
                continue;
            }
            let (op, msg) = res.expect("no panic").expect("an error");
            assert_eq!(op, "all_reduce");
            assert!(
                msg.starts_with(&format!("rank {stopper} stopped: ")),
                "rank {r}: {msg}"
            );
        }
    }
}

#[test]
fn a_finished_rank_fails_only_the_collectives_that_need_it() {
    let got = on_ranks(3, |comm| {
        let dev = CpuDevice::new();
        let x = t(vec![comm.rank() as i64 + 1], &[1]);
        match comm.rank() {
            // Rank 1 takes part in one collective and is done.
            1 => vec![
                comm.all_reduce(&dev, &x, ReduceKind::Sum, &[0, 1])
                    .map(|y| vals::<i64>(&y)),
            ],
            0 => {
                let first = comm
                    .all_reduce(&dev, &x, ReduceKind::Sum, &[0, 1])
                    .map(|y| vals::<i64>(&y));
                // Rank 1 has finished (or will): this one cannot complete.
                let second = comm
                    .all_reduce(&dev, &x, ReduceKind::Sum, &[0, 1])
                    .map(|y| vals::<i64>(&y));
                // Ranks 0 and 2 go on without it.
                let third = comm
                    .all_reduce(&dev, &x, ReduceKind::Sum, &[0, 2])
                    .map(|y| vals::<i64>(&y));
                vec![first, second, third]
            }
            _ => vec![
                comm.all_reduce(&dev, &x, ReduceKind::Sum, &[0, 2])
                    .map(|y| vals::<i64>(&y)),
            ],
        }
    });
    assert_eq!(got[1], vec![Ok(vec![3])]);
    assert_eq!(got[0][0], Ok(vec![3]));
    let (op, msg) = collective(got[0][1].clone());
    assert_eq!(op, "all_reduce");
    assert!(
        msg.contains("rank 1 finished before joining this collective of the group [0, 1]"),
        "{msg}"
    );
    assert_eq!(got[0][2], Ok(vec![4]));
    assert_eq!(got[2], vec![Ok(vec![4])]);
}

#[test]
fn bad_member_lists_fail_at_once() {
    let comms = Comm::group(3);
    let dev = CpuDevice::new();
    let x = iota32(&[2], 0.0);
    let c = &comms[1];
    assert_eq!((c.rank(), c.size()), (1, 3));
    for (members, needle) in [
        (&[1, 0][..], "sorted and distinct"),
        (&[1, 1], "sorted and distinct"),
        (&[1, 3], "member 3 is not a rank"),
        (&[0, 2], "rank 1 is not one of the members [0, 2]"),
        (&[], "rank 1 is not one of the members []"),
    ] {
        let (_, msg) = collective(c.all_reduce(&dev, &x, ReduceKind::Sum, members));
        assert!(msg.contains(needle), "{members:?}: {msg}");
    }
    // A group of one is its own result, at once.
    let y = c
        .all_gather(&dev, &x, 0, &[1])
        .expect("a group of one gathers");
    assert_eq!(vals::<f32>(&y), vec![0.0, 1.0]);
    let (_, msg) = collective(c.broadcast(&x, 0, &[1]));
    assert!(
        msg.contains("the root 0 is not one of the members [1]"),
        "{msg}"
    );
    for c in comms {
        c.finish();
    }
    assert!(Comm::group(0).is_empty());
    // The module path is public too.
    assert_eq!(mesh::split_sizes(3, 2), vec![2, 1]);
}

#[test]
fn broadcast_over_a_sub_group_names_ranks_in_errors() {
    let got = on_ranks(4, |comm| {
        if comm.rank() < 2 {
            return None;
        }
        let shape: &[usize] = if comm.rank() == 3 { &[3] } else { &[2] };
        Some(comm.broadcast(&iota32(shape, 0.0), 3, &[2, 3]))
    });
    let (op, msg) = collective(got[2].clone().expect("rank 2 called"));
    assert_eq!(op, "broadcast");
    assert_eq!(
        msg,
        "part 1 has shape [3] but part 0 has [2]; they must agree (parts are numbered by \
         position in the group [2, 3])"
    );
    let other = collective(got[3].clone().expect("rank 3 called"));
    assert_eq!(other, (op, msg));
}
