//! Our GEMM against a naive product accumulated in `f64`.
//!
//! Tolerance: an `f32` dot product of `k` terms, however its sum is ordered or blocked, is
//! within `k · ε · Σ|a_ip · b_pj|` of the exact value (ε = `f32::EPSILON`, twice the unit
//! round-off, covering the rounding of each product and of each addition), so each element
//! is checked against that bound plus a tiny absolute term for all-zero sums.

use ir::{Op, SliceDim};

use super::driver::Blocking;
use super::{Isa, MatRef, Product, sgemm};
use crate::{CpuDevice, Device, Tensor};

/// The sizes of the shape table: edges of the 6 × 16 and 12 × 32 tiles and of the blocking.
const SIZES: [usize; 15] = [1, 5, 6, 7, 12, 13, 16, 17, 31, 33, 63, 64, 65, 200, 1000];

/// Deliberately small blocks, so that modest shapes cross every block edge of every loop.
const TINY: Blocking = Blocking {
    mc: 12,
    kc: 7,
    nc: 32,
};

/// Deterministic values in [-1, 1) from a 64-bit LCG (the test needs variety, not quality).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32) / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Every kernel this CPU runs; none (and a note) on a CPU without AVX2 + FMA.
fn kernels() -> Vec<Isa> {
    let all = Isa::all();
    if all.is_empty() {
        eprintln!("skipped: this CPU has neither AVX2 + FMA nor AVX-512");
    }
    all
}

fn at(x: &MatRef, i: usize, j: usize) -> f32 {
    x.data[(x.offset as isize + i as isize * x.rs + j as isize * x.cs) as usize]
}

/// Checks element `(i, j)` of `c` (row-major) against the `f64` reference.
fn check_elem(p: &Product, c: &[f32], i: usize, j: usize, what: &str) {
    let (mut exact, mut mag) = (0.0f64, 0.0f64);
    for l in 0..p.k {
        let t = f64::from(at(&p.a, i, l)) * f64::from(at(&p.b, l, j));
        exact += t;
        mag += t.abs();
    }
    let got = f64::from(c[i * p.n + j]);
    let tol = p.k as f64 * f64::from(f32::EPSILON) * mag + 1e-30;
    assert!(
        (got - exact).abs() <= tol,
        "{what}: c[{i}, {j}] = {got}, expected {exact} (tolerance {tol})"
    );
}

/// Runs `sgemm` into a NaN-filled output (so that a kernel that accumulates into C instead
/// of writing it fails) and checks every element, or a spread of ~4000 of them for large
/// products.
fn check(isa: Isa, blocking: Blocking, p: &Product, parallel: bool, what: &str) {
    let (m, n, k) = (p.m, p.n, p.k);
    let mut c = vec![f32::NAN; m * n];
    sgemm(isa, blocking, p, &mut c, parallel);
    let what = format!("{what} {isa:?} m={m} n={n} k={k} {blocking:?} parallel={parallel}");
    if m * n * k <= 1 << 22 {
        for i in 0..m {
            for j in 0..n {
                check_elem(p, &c, i, j, &what);
            }
        }
    } else {
        // A spread of elements, every row and every column at least once, and the corner.
        let step = (m * n).div_ceil(4000).max(1);
        for idx in (0..m * n).step_by(step) {
            check_elem(p, &c, idx / n, idx % n, &what);
        }
        for i in 0..m {
            check_elem(p, &c, i, (i * 7) % n, &what);
        }
        for j in 0..n {
            check_elem(p, &c, (j * 5) % m, j, &what);
        }
        check_elem(p, &c, m - 1, n - 1, &what);
    }
}

/// The product of row-major `m × k` and `k × n` operands.
fn row_major<'a>(ad: &'a [f32], bd: &'a [f32], (m, n, k): (usize, usize, usize)) -> Product<'a> {
    let a = MatRef {
        data: ad,
        offset: 0,
        rs: k as isize,
        cs: 1,
    };
    let b = MatRef {
        data: bd,
        offset: 0,
        rs: n as isize,
        cs: 1,
    };
    Product { m, n, k, a, b }
}

#[test]
fn shape_table_with_default_blocking() {
    for isa in kernels() {
        for &m in &SIZES {
            for &n in &SIZES {
                for &k in &SIZES {
                    // The full cube would spend minutes in the reference; products up to 1000 on
                    // two sides are covered here and by the sampled large cases below.
                    if m * n * k > 1 << 24 {
                        continue;
                    }
                    let (ad, bd) = (values(1, m * k), values(2, k * n));
                    let p = row_major(&ad, &bd, (m, n, k));
                    check(isa, isa.blocking(), &p, m * n * k > 1 << 16, "table");
                }
            }
        }
    }
}

#[test]
fn shape_table_with_tiny_blocks() {
    for isa in kernels() {
        for &m in &SIZES[..10] {
            for &n in &SIZES[..10] {
                for &k in &SIZES[..10] {
                    let (ad, bd) = (values(3, m * k), values(4, k * n));
                    let p = row_major(&ad, &bd, (m, n, k));
                    check(isa, TINY, &p, (m + n + k) % 2 == 0, "tiny blocks");
                }
            }
        }
    }
}

#[test]
fn large_products() {
    for isa in kernels() {
        for (m, n, k) in [
            (1000, 1000, 1000),
            (1000, 200, 65),
            (65, 1000, 200),
            (200, 17, 1000),
            (517, 389, 601),
        ] {
            let (ad, bd) = (values(5, m * k), values(6, k * n));
            let p = row_major(&ad, &bd, (m, n, k));
            check(isa, isa.blocking(), &p, true, "large");
            check(isa, isa.blocking(), &p, false, "large");
        }
    }
}

#[test]
fn strided_and_transposed_operands() {
    for isa in kernels() {
        for &(m, n, k) in &[(7, 17, 5), (63, 65, 64), (200, 64, 17), (65, 200, 300)] {
            // Storage large enough for every layout below: a padded row stride of 2k+3, etc.
            let (ad, bd) = (
                values(7, 3 * (m + 2) * (k + 2)),
                values(8, 3 * (k + 2) * (n + 2)),
            );
            let a_layouts = [
                ("A row-major", 0, k as isize, 1),
                ("A transposed", 0, 1, m as isize),
                ("A padded rows", 5, (2 * k + 3) as isize, 1),
                ("A every other column", 1, (2 * k + 1) as isize, 2),
                ("A reversed rows", (m - 1) * k, -(k as isize), 1),
                (
                    "A reversed transposed",
                    (k - 1) * m + m - 1,
                    -1,
                    -(m as isize),
                ),
                ("A broadcast row", 3, 0, 1),
            ];
            let b_layouts = [
                ("B row-major", 0, n as isize, 1),
                ("B transposed", 0, 1, k as isize),
                ("B padded transposed", 2, 1, (k + 9) as isize),
                ("B every third row", 0, (3 * n) as isize, 1),
                ("B reversed columns", n - 1, n as isize, -1),
                ("B broadcast column", 4, 1, 0),
            ];
            for &(an, aoff, ars, acs) in &a_layouts {
                for &(bn, boff, brs, bcs) in &b_layouts {
                    let a = MatRef {
                        data: &ad,
                        offset: aoff,
                        rs: ars,
                        cs: acs,
                    };
                    let b = MatRef {
                        data: &bd,
                        offset: boff,
                        rs: brs,
                        cs: bcs,
                    };
                    let p = Product { m, n, k, a, b };
                    for (blocking, parallel) in
                        [(isa.blocking(), true), (TINY, false), (TINY, true)]
                    {
                        check(isa, blocking, &p, parallel, &format!("{an}, {bn}"));
                    }
                }
            }
        }
    }
}

#[test]
fn empty_dimensions() {
    for isa in kernels() {
        let (ad, bd) = (values(9, 64), values(10, 64));
        for (m, n, k) in [(0, 5, 3), (5, 0, 3), (0, 0, 0), (4, 6, 0), (17, 33, 0)] {
            let p = row_major(&ad, &bd, (m, n, k));
            let mut c = vec![f32::NAN; m * n];
            sgemm(isa, isa.blocking(), &p, &mut c, true);
            assert!(c.iter().all(|&x| x == 0.0), "m={m} n={n} k={k}: {c:?}");
        }
    }
}

/// A tensor of `values(seed, ..)` with the given shape.
fn tensor(seed: u64, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values(seed, shape.iter().product()), shape).unwrap()
}

/// `a @ b` through the device, checked against the `f64` reference per batch element.
/// `a` is `[batch.., m, k]` and `b` `[batch.., k, n]` after broadcasting (views allowed).
fn check_exec(a: &Tensor, b: &Tensor, what: &str) {
    let dev = CpuDevice::new();
    let c = dev.exec(&Op::MatMul {}, &[a, b]).unwrap();
    let shape = c.shape().to_vec();
    let r = shape.len();
    let (m, n, k) = (shape[r - 2], shape[r - 1], a.shape()[a.rank() - 1]);
    let batch: usize = shape[..r - 2].iter().product();
    let rows = |t: &Tensor| t.layout().strides[t.rank() - 1] == 1;
    assert!(
        super::choose(m, n, k, rows(a), rows(b)).is_some() || Isa::all().is_empty(),
        "{what}: expected this shape to use our GEMM"
    );
    let a = a
        .broadcast_view(&[&shape[..r - 2], &[m, k]].concat())
        .to_vec::<f32>()
        .unwrap();
    let b = b
        .broadcast_view(&[&shape[..r - 2], &[k, n]].concat())
        .to_vec::<f32>()
        .unwrap();
    let c = c.to_vec::<f32>().unwrap();
    for t in 0..batch {
        let am = MatRef {
            data: &a,
            offset: t * m * k,
            rs: k as isize,
            cs: 1,
        };
        let bm = MatRef {
            data: &b,
            offset: t * k * n,
            rs: n as isize,
            cs: 1,
        };
        let p = Product {
            m,
            n,
            k,
            a: am,
            b: bm,
        };
        let cm = &c[t * m * n..(t + 1) * m * n];
        let what = format!("{what} batch {t}");
        for idx in (0..m * n).step_by(97) {
            check_elem(&p, cm, idx / n, idx % n, &what);
        }
        check_elem(&p, cm, m - 1, n - 1, &what);
    }
}

#[test]
fn batched_matmul_through_exec() {
    // Every product here is just above `choose`'s lowest threshold for its layouts (about
    // 2.7e8 multiply-adds for row-major operands on AVX2; 1.7e7 with B a transposed view and
    // 2.6e8 with A one, on AVX-512), so that the device runs it on our GEMM; `check_exec`
    // asserts that it does. On AVX-512 row-major products this small stay with the `gemm`
    // crate, so the batching cases take B as a transposed view there.
    let dev = CpuDevice::new();
    // `[.., k, n]` values: row-major on AVX2, a transposed view of `[.., n, k]` on AVX-512.
    let b_operand = |seed: u64, shape: &[usize]| -> Tensor {
        if Isa::all().iter().all(|isa| matches!(isa, Isa::Avx2Fma(_))) {
            return tensor(seed, shape);
        }
        let r = shape.len();
        let mut stored = shape.to_vec();
        stored.swap(r - 2, r - 1);
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        dev.exec(&Op::Transpose { perm }, &[&tensor(seed, &stored)])
            .unwrap()
    };
    // Plain batch; B broadcast over the batch; A broadcast over a batch of B.
    check_exec(
        &tensor(11, &[2, 640, 650]),
        &b_operand(12, &[2, 650, 660]),
        "batch",
    );
    check_exec(
        &tensor(13, &[2, 2, 641, 650]),
        &b_operand(14, &[650, 661]),
        "broadcast B",
    );
    check_exec(
        &tensor(15, &[1, 643, 650]),
        &b_operand(16, &[2, 650, 655]),
        "broadcast A",
    );
    // `x @ w.T` with a transposed view of `w`, and a transposed A.
    let w = tensor(17, &[660, 650]);
    let wt = dev
        .exec(&Op::Transpose { perm: vec![1, 0] }, &[&w])
        .unwrap();
    check_exec(&tensor(18, &[2, 645, 650]), &wt, "x @ w.T");
    let x = tensor(19, &[650, 645]);
    let xt = dev
        .exec(&Op::Transpose { perm: vec![1, 0] }, &[&x])
        .unwrap();
    check_exec(&xt, &tensor(20, &[650, 660]), "x.T @ y");
    // A reversed, strided slice as A.
    let big = tensor(21, &[1300, 650]);
    let dims = vec![
        SliceDim {
            start: 1299,
            len: 650,
            step: -2,
        },
        SliceDim {
            start: 0,
            len: 650,
            step: 1,
        },
    ];
    let sliced = dev.exec(&Op::Slice { dims }, &[&big]).unwrap();
    check_exec(&sliced, &b_operand(22, &[650, 660]), "reversed slice");
}
