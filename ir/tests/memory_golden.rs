//! Golden tests of memory planning (`ir::passes::memory`): each `tests/ir/memory/<case>.ir`
//! (at the repository root) is parsed and verified, planned, and the plan's text
//! (`memory::print`: the graph, then what each node frees and which result takes which
//! operand's buffer) must equal `tests/ir/memory/<case>.out` byte for byte. `BLESS=1 cargo
//! test -p ir --test memory_golden` rewrites the `.out` files; review the diff like code.
//! Every graph the pipeline makes of the pass cases is planned too, and each donation is
//! checked against the rules the module doc states.

use std::fs;
use std::path::{Path, PathBuf};

use ir::graph::{NodeKind, Type, ValueDef, parse};
use ir::passes::memory::{self, MemoryPlan};
use ir::passes::{PIPELINE, optimize};

fn cases(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    cases.sort();
    cases
}

#[test]
fn each_plan_is_its_golden_text() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    let all = cases("../tests/ir/memory");
    assert!(!all.is_empty(), "no memory cases");
    for path in all {
        let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or("?");
        let g = parse(&fs::read_to_string(&path).expect("readable"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        ir::verify(&g).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = memory::print(&g, &MemoryPlan::new(&g));
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
}

/// Over the optimized graphs of every pass case: each value of a block dies exactly once,
/// and every donor is an operand of the result's exact type that dies at its node, appears
/// once among its operands, and is not a graph input.
#[test]
fn plans_of_the_optimized_corpus_keep_the_rules() {
    let mut planned = 0;
    for path in cases("../tests/ir/passes")
        .into_iter()
        .chain(cases("../tests/ir/memory"))
    {
        let name = path.display().to_string();
        let g = parse(&fs::read_to_string(&path).expect("readable")).expect("parses");
        let g = optimize(&g, PIPELINE, true).unwrap_or_else(|e| panic!("{name}: {e}"));
        let plan = MemoryPlan::new(&g);
        let mut blocks = vec![g.body()];
        for n in g.walk(g.body()) {
            blocks.extend(g.node(n).kind.regions());
        }
        for b in blocks {
            let block = g.block(b);
            let releases = plan.releases(b);
            assert_eq!(releases.len(), block.nodes.len() + 2, "{name}");
            let mut defined: Vec<_> = block.args.clone();
            for &n in &block.nodes {
                defined.extend(&g.node(n).results);
            }
            let mut freed: Vec<_> = releases.iter().flatten().copied().collect();
            freed.sort_by_key(|v| v.index());
            defined.sort_by_key(|v| v.index());
            assert_eq!(freed, defined, "{name}: every value dies once");
            for (k, &n) in block.nodes.iter().enumerate() {
                let node = g.node(n);
                for d in plan.donations(n) {
                    planned += 1;
                    let v = node.operands[d.operand];
                    let r = node.results[d.result];
                    assert!(
                        matches!(node.kind, NodeKind::Prim(_) | NodeKind::Fused { .. }),
                        "{name}"
                    );
                    assert!(releases[k + 1].contains(&v), "{name}: donor dies here");
                    assert_eq!(node.operands.iter().filter(|&&w| w == v).count(), 1);
                    assert!(matches!(g.ty(v), Type::Tensor(_)));
                    assert_eq!(g.ty(v), g.ty(r), "{name}: donor of the result's type");
                    let input =
                        matches!(g.value(v).def, ValueDef::Arg { block, .. } if block == g.body());
                    assert!(!input, "{name}: a graph input never donates");
                }
            }
        }
    }
    assert!(planned > 0, "no donation in the corpus");
}
