//! Kernel conformance: every case of the table in `ms_tests::cases` runs on the CPU device
//! and is compared with the `f64` reference (tolerances in `ms_tests::harness`).
//!
//! There is one test per family, so that a family whose kernels are still being written
//! fails on its own. A failing test lists, per primitive, how many cases fail and then the
//! first failures with the op, the case name, the index, and what was got and wanted.

use std::collections::BTreeMap;

use devices::CpuDevice;
use ir::Prim;
use ms_tests::cases::{self, Case};
use ms_tests::harness;

/// Runs every case of `family` and fails with a report if any disagrees with the reference.
fn check_family(family: &str) {
    let dev = CpuDevice::new();
    let cases = cases::family(family);
    assert!(!cases.is_empty(), "{family} has no cases");
    let mut per_prim: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let entry = per_prim.entry(case.op.name().to_string()).or_default();
        entry.1 += 1;
        if let Err(msg) = harness::check(&dev, case) {
            entry.0 += 1;
            failures.push(msg);
        }
    }
    if failures.is_empty() {
        return;
    }
    // Wrong values are more telling than kernels that refuse to run: list them first.
    failures.sort_by_key(|m| m.contains("device error"));
    let summary: Vec<String> = per_prim
        .iter()
        .filter(|(_, (bad, _))| *bad > 0)
        .map(|(name, (bad, total))| format!("  {name}: {bad} of {total} cases fail"))
        .collect();
    const SHOWN: usize = 40;
    panic!(
        "{} of {} {family} cases fail:\n{}\nfirst failures:\n  {}{}",
        failures.len(),
        cases.len(),
        summary.join("\n"),
        failures
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  "),
        if failures.len() > SHOWN {
            format!("\n  ... and {} more", failures.len() - SHOWN)
        } else {
            String::new()
        }
    );
}

macro_rules! families {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check_family(stringify!($name));
            }
        )*

        /// The test functions above cover exactly the families of the case table.
        #[test]
        fn every_family_has_a_test() {
            let tested: Vec<&str> = vec![$(stringify!($name)),*];
            assert_eq!(tested, cases::FAMILIES);
        }
    };
}

families!(
    unary,
    binary,
    compare,
    select,
    reduce,
    arg_reduce,
    matmul,
    reshape,
    transpose,
    broadcast,
    slice,
    concat,
    pad,
    gather,
    scatter_add,
    conv2d,
    conv2d_backward_input,
    conv2d_backward_filter,
    pool2d,
    pool2d_backward,
    cast,
    random,
    iota,
    full,
    print,
    stop_gradient,
);

/// Every primitive of the table has at least six conformance cases, and the families of the
/// case table are exactly the families of the primitive table.
#[test]
fn coverage() {
    let all: Vec<Case> = cases::all();
    let mut count: BTreeMap<Prim, usize> = BTreeMap::new();
    for case in &all {
        *count.entry(case.op.prim()).or_default() += 1;
    }
    let missing: Vec<String> = Prim::all()
        .iter()
        .filter(|p| count.get(p).copied().unwrap_or(0) < 6)
        .map(|p| format!("{p} ({} cases)", count.get(p).copied().unwrap_or(0)))
        .collect();
    assert!(
        missing.is_empty(),
        "primitives with fewer than 6 conformance cases: {missing:?}"
    );
    let mut families: Vec<&str> = Prim::all().iter().map(|p| p.info().family).collect();
    families.dedup();
    let mut ours = cases::FAMILIES.to_vec();
    ours.sort_unstable();
    families.sort_unstable();
    families.dedup();
    assert_eq!(
        ours, families,
        "case-table families vs primitive-table families"
    );
}

/// Case names are unique within a primitive, so a failure names one case.
#[test]
fn case_names_are_unique() {
    let mut seen = std::collections::BTreeSet::new();
    for case in cases::all() {
        assert!(
            seen.insert((case.op.prim(), case.name.clone())),
            "duplicate case {} [{}]",
            case.op.name(),
            case.name
        );
    }
}
