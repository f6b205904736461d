//! Golden graphs, text in and text out.
//!
//! Each `tests/ir/<case>.ir` (at the repository root) is parsed, verified and printed with
//! spans; the result must equal `tests/ir/<case>.out` byte for byte. A case named `err_*`
//! must fail to parse or to verify, and its `.out` holds the error; every other case must
//! verify, and its printed form must parse back to an equal graph. `BLESS=1 cargo test -p ir
//! --test graph_golden` rewrites the `.out` files from the current output; review the diff
//! like code.

use std::fs;
use std::path::{Path, PathBuf};

use ir::graph::{PrintOptions, Span, VerifyErrorKind, parse, print};
use ir::verify;

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ir");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable tests/ir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    cases.sort();
    cases
}

fn is_err_case(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("err_"))
}

/// What the case produces, and the rule it breaks (if it fails to verify).
fn run(path: &Path) -> (String, Option<VerifyErrorKind>) {
    let text = fs::read_to_string(path).expect("readable case");
    let g = match parse(&text) {
        Ok(g) => g,
        Err(e) => return (format!("parse error: {e}\n"), None),
    };
    if let Err(e) = verify(&g) {
        let at = if e.span == Span::default() {
            String::new()
        } else {
            format!(" ({})", e.span)
        };
        return (format!("verify error: {e}{at}\n"), Some(e.kind));
    }
    let out = print(&g, PrintOptions { spans: true });
    let back = parse(&out).unwrap_or_else(|e| {
        panic!(
            "{}: the printed form does not parse: {e}\n{out}",
            path.display()
        )
    });
    assert!(
        back == g,
        "{}: the printed form parses to another graph",
        path.display()
    );
    (out, None)
}

#[test]
fn graphs_match_their_golden_files() {
    let bless = std::env::var_os("BLESS").is_some();
    let cases = cases();
    let valid = cases.iter().filter(|c| !is_err_case(c)).count();
    assert!(
        valid >= 12,
        "only {valid} valid graphs; at least a dozen are wanted"
    );
    let mut failures = Vec::new();
    for case in &cases {
        let (actual, _) = run(case);
        let is_error = actual.starts_with("parse error") || actual.starts_with("verify error");
        if is_error != is_err_case(case) {
            failures.push(format!(
                "--- {}: err_ cases must fail and others pass, got\n{actual}",
                case.display()
            ));
            continue;
        }
        let golden = case.with_extension("out");
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
        "{} of {} IR cases differ (BLESS=1 to accept):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_verifier_rule_has_a_failing_case() {
    let kinds: Vec<VerifyErrorKind> = cases().iter().filter_map(|c| run(c).1).collect();
    for rule in [
        VerifyErrorKind::Ssa,
        VerifyErrorKind::Dominance,
        VerifyErrorKind::Type,
        VerifyErrorKind::Region,
        VerifyErrorKind::Token,
    ] {
        assert!(kinds.contains(&rule), "no err_ case breaks the {rule} rule");
    }
}

/// Damaged texts (characters deleted, duplicated or replaced) give errors, never panics,
/// and whatever still parses can be verified and printed.
#[test]
fn damaged_graphs_never_panic() {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let junk = [
        '%', '{', '}', '(', ')', ':', '@', '"', '\\', '-', '.', '9', 'x', '\n', 'é',
    ];
    for case in cases() {
        let text: Vec<char> = fs::read_to_string(&case)
            .expect("readable case")
            .chars()
            .collect();
        for _ in 0..200 {
            let mut t = text.clone();
            for _ in 0..=next(3) {
                let i = next(t.len());
                match next(3) {
                    0 => {
                        t.remove(i);
                    }
                    1 => t.insert(i, t[i]),
                    _ => t[i] = junk[next(junk.len())],
                }
            }
            let s: String = t.into_iter().collect();
            if let Ok(g) = parse(&s) {
                let _ = verify(&g);
                let _ = print(&g, PrintOptions { spans: true });
            }
        }
    }
}
