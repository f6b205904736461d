//! Golden tests of the optimizer's passes: before and after, text in and text out.
//!
//! Each `tests/ir/passes/<pass>_<case>.ir` (at the repository root) is the graph before
//! the pass its name starts with; it is parsed and verified, the pass runs, the result is
//! verified and printed, and must equal `tests/ir/passes/<pass>_<case>.out` byte for byte.
//! Every case also goes through the whole pipeline, whose result must verify. `BLESS=1
//! cargo test -p ir --test passes_golden` rewrites the `.out` files; review the diff like
//! code.

use std::fs;
use std::path::{Path, PathBuf};

use ir::graph::{PrintOptions, parse, print};
use ir::passes::{PIPELINE, Pass, optimize};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ir/passes");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable tests/ir/passes entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    cases.sort();
    cases
}

#[test]
fn each_pass_gives_its_golden_graph() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    for path in cases() {
        let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or("?");
        let pass = name
            .split('_')
            .next()
            .and_then(Pass::from_name)
            .unwrap_or_else(|| panic!("{name}: the name must start with a pass's name"));
        seen.push(pass);
        let text = fs::read_to_string(&path).expect("readable case");
        let g = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        ir::verify(&g).unwrap_or_else(|e| panic!("{name}: the input does not verify: {e}"));
        let after = optimize(&g, &[pass], true).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = print(&after, PrintOptions::default());
        optimize(&g, PIPELINE, true).unwrap_or_else(|e| panic!("{name}: pipeline: {e}"));
        let out = path.with_extension("out");
        if bless {
            fs::write(&out, &got).expect("writable .out");
            continue;
        }
        let want = fs::read_to_string(&out).unwrap_or_default();
        if want != got {
            failures.push(format!("--- {name}: expected\n{want}--- got\n{got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases differ (BLESS=1 to accept):\n{}",
        failures.len(),
        failures.join("\n")
    );
    for p in Pass::ALL {
        assert!(
            seen.contains(&p),
            "no golden case for the pass `{}`",
            p.name()
        );
    }
}

/// Every golden graph of `tests/ir/` goes through the pipeline and still verifies, and a
/// second run of the pipeline changes nothing.
#[test]
fn the_pipeline_keeps_every_golden_graph_valid_and_is_idempotent() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ir");
    for entry in fs::read_dir(&dir).expect("tests/ir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        if path.extension().is_none_or(|e| e != "ir") || name.starts_with("err_") {
            continue;
        }
        let g = parse(&fs::read_to_string(&path).expect("readable")).expect("parses");
        let once = optimize(&g, PIPELINE, true).unwrap_or_else(|e| panic!("{name}: {e}"));
        let twice = optimize(&once, PIPELINE, true).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            print(&once, PrintOptions::default()),
            print(&twice, PrintOptions::default()),
            "{name}"
        );
    }
}
