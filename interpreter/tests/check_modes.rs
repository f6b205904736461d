//! `--check-modes` (`Options::check_modes`): every staged call checked against eager
//! evaluation and against its graph as staged.
//!
//! Every real pass is exact, so no program can make the real pipeline differ; these tests
//! give the pipeline a deliberately wrong pass (`Session::insert_test_pass`: a pass that
//! turns every `exp` into `log`, through the IR's text form) and check that the report
//! names that pass and the node it changed. The reports are golden files:
//! `tests/check_modes/<case>.ms` beside its rendered `<case>.stderr` (at the workspace
//! root; `BLESS=1 cargo test -p interpreter --test check_modes` rewrites them). The
//! programs of `tests/run/` also run under the check, to show it finds nothing where
//! nothing is wrong.

use std::fs;
use std::path::{Path, PathBuf};

use interpreter::{Options, Outcome, Session};
use lang::diagnostics::RenderOptions;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("check_modes")
}

/// A wrong pass: every `exp` becomes `log` (same types, other values), by rewriting the
/// graph's text form with its spans.
fn exp_to_log(g: &ir::Graph) -> Result<ir::Graph, String> {
    let text = ir::graph::print(g, ir::graph::PrintOptions { spans: true });
    ir::graph::parse(&text.replace(" = exp ", " = log ")).map_err(|e| e.to_string())
}

/// A session that checks modes, in graph mode, capturing what it prints.
fn checking() -> Session {
    Session::with_options(Options {
        capture_output: true,
        graph_mode: true,
        check_modes: true,
        ..Options::default()
    })
}

/// Runs case `name` with the wrong pass at position `at` of the pipeline: the session, the
/// outcome, the rendered diagnostics and the source.
fn run_case(name: &str, at: usize) -> (Session, Outcome, String, String) {
    let path = dir().join(format!("{name}.ms"));
    let text = fs::read_to_string(&path).expect("a readable case");
    let mut s = checking();
    s.insert_test_pass(at, "wrong", exp_to_log);
    let out = s.eval(&text);
    let rendered = s.render(
        &out,
        &format!("check_modes/{name}.ms"),
        &text,
        RenderOptions::default(),
    );
    (s, out, rendered, text)
}

/// The rendered report of case `name` equals its golden `.stderr` (or becomes it, with
/// `BLESS=1`).
fn golden(name: &str, rendered: &str) {
    let file = dir().join(format!("{name}.stderr"));
    if std::env::var_os("BLESS").is_some() {
        fs::write(&file, rendered).expect("a writable golden file");
        return;
    }
    let want = fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(
        rendered,
        want,
        "{name}: the report differs from {} (BLESS=1 to accept)",
        file.display()
    );
}

#[test]
fn a_wrong_pass_is_named_with_the_node_it_changed() {
    let (s, out, rendered, text) = run_case("pass_changes_a_node", 3);
    assert_eq!(
        s.passes(),
        [
            "inline", "fold", "simplify", "wrong", "cse", "dce", "fuse", "dce"
        ],
        "the wrong pass runs after fold and simplify"
    );
    let d = out
        .diagnostics
        .iter()
        .find(|d| d.code == "E0914")
        .unwrap_or_else(|| panic!("no E0914:\n{rendered}"));
    assert_eq!(&text[d.primary.span.range()], "exp(y)", "{rendered}");
    assert_eq!(
        d.primary.message,
        "this `log` gives other values after `wrong`"
    );
    assert!(
        d.notes
            .contains(&"`wrong` made it `log` where it was `exp`".to_string()),
        "{:?}",
        d.notes
    );
    assert!(
        d.message
            .starts_with("the pass `wrong` changed what staged `f` computes"),
        "{}",
        d.message
    );
    // The values before and after the pass: element 0 is exp(0.5) before, log(0.5) after.
    let element = format!(
        "element 0 of its value is {} before the pass and {} after it",
        0.5f32.exp(),
        0.5f32.ln()
    );
    assert!(d.notes.contains(&element), "{:?}", d.notes);
    assert!(
        d.notes.iter().any(|n| n.contains(
            "the pipeline is `inline`, `fold`, `simplify`, `wrong`, `cse`, `dce`, `fuse`, `dce`: the \
             outputs are kept through `inline`, `fold`, `simplify` and change after `wrong`"
        )),
        "{:?}",
        d.notes
    );
    // The program stopped at the call: nothing was printed.
    assert_eq!(out.output, "");
    golden("pass_changes_a_node", &rendered);
}

#[test]
fn a_wrong_first_pass_is_named_too() {
    let (s, out, rendered, text) = run_case("pass_changes_a_node", 0);
    assert_eq!(s.passes()[0], "wrong");
    let d = out
        .diagnostics
        .iter()
        .find(|d| d.code == "E0914")
        .unwrap_or_else(|| panic!("no E0914:\n{rendered}"));
    assert_eq!(&text[d.primary.span.range()], "exp(y)", "{rendered}");
    assert!(
        d.notes
            .iter()
            .any(|n| n.ends_with(": the outputs change after its first pass, `wrong`")),
        "{:?}",
        d.notes
    );
}

#[test]
fn a_node_changed_inside_a_loop_is_seen_through_the_loop() {
    let (_, out, rendered, text) = run_case("pass_changes_a_loop", 2);
    let d = out
        .diagnostics
        .iter()
        .find(|d| d.code == "E0914")
        .unwrap_or_else(|| panic!("no E0914:\n{rendered}"));
    let shown = &text[d.primary.span.range()];
    assert!(shown.starts_with("while i < n {"), "{shown:?}\n{rendered}");
    assert_eq!(
        d.primary.message,
        "this `while` gives other values after `wrong`"
    );
    golden("pass_changes_a_loop", &rendered);
}

#[test]
fn agreeing_calls_are_counted() {
    let path = dir().join("agrees.ms");
    let text = fs::read_to_string(&path).expect("a readable case");
    let mut s = checking();
    let out = s.eval(&text);
    let rendered = s.render(&out, "agrees.ms", &text, RenderOptions::default());
    assert!(!out.has_errors(), "{rendered}");
    // The same program, eagerly, prints the same: the check changes nothing it shows.
    let mut eager = Session::with_options(Options {
        capture_output: true,
        ..Options::default()
    });
    let want = eager.eval(&text);
    assert!(!want.has_errors());
    assert_eq!(out.output, want.output);
    let summary = s.check_summary().expect("the session checks");
    // `step` three times (two graphs: `len(x)` keeps a graph specific to its size, 3 or 5)
    // and the gradient of `loss` once (staged with `step` inlined, checked against the
    // eager tape's gradient).
    assert_eq!((summary.calls, summary.graphs), (4, 3), "{summary}");
    assert_eq!(
        summary.passes,
        ["inline", "fold", "simplify", "cse", "dce", "fuse", "dce"]
    );
    assert_eq!(
        summary.to_string(),
        "check-modes: 4 staged calls of 3 graphs agreed with eager evaluation and with the \
         graph as staged (passes: inline, fold, simplify, cse, dce, fuse, dce)"
    );
    // Without the wrong pass the report says nothing; with it, the same calls fail.
    let mut wrong = checking();
    wrong.insert_test_pass(5, "wrong", exp_to_log);
    let bad = wrong.eval(&text);
    assert!(
        bad.diagnostics.iter().all(|d| d.code != "E0914"),
        "`step` computes no exp: {:?}",
        bad.diagnostics
    );
}

/// Every program of `tests/run/` prints under the check what it prints eagerly, and the
/// check finds no difference: it raises no false alarm on the corpus.
#[test]
fn the_corpus_passes_the_check() {
    let run_dir = dir().join("..").join("run");
    std::env::set_current_dir(&run_dir).expect("tests/run can be entered");
    let mut progs: Vec<PathBuf> = fs::read_dir(&run_dir)
        .expect("tests/run exists")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ms"))
        .collect();
    progs.sort();
    let (mut calls, mut failures) = (0, Vec::new());
    for p in &progs {
        let text = fs::read_to_string(p).expect("a readable program");
        // Programs split into entries and given arguments are run by `tests/run.rs`.
        if text.contains("//--- ") {
            continue;
        }
        // Summaries go to a temporary folder, not into tests/run/.
        let logdir = std::env::temp_dir().join(format!("ms-check-logs-{}", std::process::id()));
        let mut s = Session::with_options(Options {
            capture_output: true,
            graph_mode: true,
            check_modes: true,
            logdir: Some(logdir.clone()),
            script_path: Some(p.clone()),
            device: std::sync::Arc::new(devices::CpuDevice::with_limits(devices::cpu::Limits {
                max_tensor_bytes: 1 << 30,
            })),
            ..Options::default()
        });
        let out = s.eval(&text);
        let _ = fs::remove_dir_all(&logdir);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let rendered = s.render(
            &out,
            &format!("run/{name}"),
            &text,
            RenderOptions::default(),
        );
        if out.diagnostics.iter().any(|d| d.code == "E0914") {
            failures.push(format!("--- {name}\n{rendered}"));
        }
        let want = fs::read_to_string(p.with_extension("stdout")).unwrap_or_default();
        if out.diagnostics.is_empty() && out.output != want {
            failures.push(format!("--- {name} prints otherwise under the check"));
        }
        calls += s.check_summary().map_or(0, |c| c.calls);
    }
    eprintln!("{} programs, {calls} staged calls checked", progs.len());
    assert!(calls >= 50, "only {calls} staged calls checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
