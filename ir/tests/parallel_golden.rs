//! Golden tests of the partitioner (`ir::parallel::partition`): each
//! `tests/ir/parallel/<case>.ir` (at the repository root) starts with `// mesh: N` (or
//! `2x4`) and `// layouts: [m0, -] [-] ...` (one layout per tensor input, in
//! `ir::parallel::Layout`'s text form) and may have `// hints: 2 [-, m0]; ...` (the result
//! of body node 2 asked in that layout, as `shard` asks); the graph is partitioned, every
//! device's graph is
//! verified, and the text — which device runs which graph, each distinct graph, and the
//! plan's steps — must equal `<case>.out`. `BLESS=1 cargo test -p ir --test
//! parallel_golden` rewrites the `.out` files; review the diff like code.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use ir::graph::{PrintOptions, parse, print};
use ir::parallel::{BucketPolicy, Layout, Mesh, partition};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ir/parallel");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    cases.sort();
    cases
}

/// `[m0, -] [-]` → layouts (each in `Layout`'s text form).
fn layouts(text: &str) -> Vec<Layout> {
    text.split_inclusive(']')
        .filter(|p| p.contains('['))
        .map(|p| p.parse().expect("a layout"))
        .collect()
}

/// `// hints: 0 [-, m0]; 3 [m0, m1]`: the result of body node 0 in layout `[-, m0]`, ...
fn hints(text: &str, g: &ir::Graph) -> Vec<(ir::graph::ValueId, Layout)> {
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

fn header<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("// {key}:")))
        .unwrap_or_else(|| panic!("no `// {key}:` line"))
        .trim()
}

fn render(text: &str) -> String {
    let mesh_dims: Vec<usize> = header(text, "mesh")
        .split('x')
        .map(|d| d.trim().parse().expect("mesh dim"))
        .collect();
    let mesh = Mesh::new(&mesh_dims);
    let g = parse(text).expect("parses");
    ir::verify(&g).expect("verifies");
    let p = partition(
        &g,
        &mesh,
        &layouts(header(text, "layouts")),
        &hints(text, &g),
        &BucketPolicy::ddp(),
    )
    .expect("partitions");
    let mut out = String::new();
    let _ = writeln!(out, "// mesh {mesh}: devices run graphs {:?}", p.of_rank);
    for (i, local) in p.graphs.iter().enumerate() {
        ir::verify(local).unwrap_or_else(|e| panic!("graph {i} does not verify: {e}"));
        let _ = writeln!(out, "// graph {i}");
        out.push_str(&print(local, PrintOptions::default()));
    }
    let _ = writeln!(out, "// steps (device 0)");
    for s in &p.steps {
        let _ = write!(out, "{}: {} {}", s.name, s.ty, s.layout);
        for (c, t, bytes) in &s.collectives {
            let _ = write!(out, "; {} {c} of {t} ({bytes} B)", c.name());
        }
        out.push('\n');
    }
    let _ = write!(out, "yield");
    for (c, t, bytes) in &p.output_collectives {
        let _ = write!(out, "; {} {c} of {t} ({bytes} B)", c.name());
    }
    out.push('\n');
    out
}

#[test]
fn each_partition_is_its_golden_text() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    let all = cases();
    assert!(!all.is_empty(), "no parallel cases");
    for path in all {
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let text = fs::read_to_string(&path).expect("readable");
        let got = std::panic::catch_unwind(|| render(&text))
            .unwrap_or_else(|_| panic!("case {name} failed"));
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
