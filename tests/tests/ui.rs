//! Golden diagnostics, rustc-UI style.
//!
//! Each `tests/ui/<case>.ms` is checked like `ms check` does it, and its rendered
//! diagnostics (ariadne, no colour) must equal `tests/ui/<case>.stderr` byte for byte; an
//! empty `.stderr` means the program checks clean. `BLESS=1 cargo test -p ms-tests --test ui`
//! rewrites the expected files from the current output; review the diff like code.
//!
//! A second test ties the golden files to the registry of codes: every code that has an
//! explanation (`ms explain`) must be shown by at least one case, so no diagnostic ships
//! untested.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use interpreter::check::check_text;
use lang::diagnostics::RenderOptions;

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = fs::read_dir(ui_dir())
        .expect("tests/ui exists")
        .map(|e| e.expect("readable tests/ui entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ms"))
        .collect();
    cases.sort();
    cases
}

/// What `ms check` prints for `path` (relative names, so the files are portable).
fn rendered(path: &Path) -> (String, Vec<&'static str>) {
    let text = fs::read_to_string(path).expect("readable case");
    let name = format!(
        "ui/{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("?")
    );
    let report = check_text(&name, &text, Some(path));
    let codes = report.diagnostics.iter().map(|d| d.code).collect();
    (report.render(RenderOptions::default()), codes)
}

#[test]
fn diagnostics_match_their_golden_files() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    let cases = cases();
    assert!(
        cases.len() >= 80,
        "only {} UI cases; the issue asks for at least 80",
        cases.len()
    );
    for case in &cases {
        let (actual, _) = rendered(case);
        let golden = case.with_extension("stderr");
        if bless {
            fs::write(&golden, &actual).expect("writable golden file");
            continue;
        }
        let expected = fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "--- {}\n=== expected\n{expected}=== actual\n{actual}",
                case.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} UI cases differ (BLESS=1 to accept):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_code_is_shown_by_a_ui_case() {
    let mut shown = BTreeSet::new();
    for case in cases() {
        shown.extend(rendered(&case).1);
    }
    let missing: Vec<&str> = lang::diagnostics::codes()
        // Runtime codes (E09xx) cannot be shown by checking alone: the interpreter's
        // `tests/run` programs show each of them (`interpreter/tests/run.rs`).
        .filter(|c| *c != "E0000" && !c.starts_with("E09") && !shown.contains(c))
        .collect();
    assert!(missing.is_empty(), "codes with no UI case: {missing:?}");
}

#[test]
fn every_emitted_code_has_an_explanation() {
    for case in cases() {
        for code in rendered(&case).1 {
            assert!(
                lang::diagnostics::explain(code).is_some(),
                "{code} (from {}) has no lang/explain/{code}.md",
                case.display()
            );
        }
    }
}
