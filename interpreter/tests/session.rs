//! The session API and the evaluator's semantics that are easiest to state as values:
//! promotion and weak literals (one rule shared with the checker), REPL state, runtime
//! errors, and no panics on programs the checker accepts.

use std::fs;
use std::path::Path;

use interpreter::{Options, Session, Value};
use ir::DType;
use lang::check::ops::promote_dtypes;

fn session() -> Session {
    Session::with_options(Options {
        capture_output: true,
        ..Options::default()
    })
}

/// Runs `src` and returns what it printed; panics with the diagnostics on an error.
fn printed(src: &str) -> String {
    let mut s = session();
    let out = s.eval(src);
    assert!(
        !out.has_errors(),
        "{src}\n{}",
        s.render(&out, "test.ms", src, Default::default())
    );
    out.output
}

/// The dtype and weak flag of the last value of `src`.
fn last(src: &str) -> (DType, bool) {
    let mut s = session();
    let out = s.eval(src);
    assert!(!out.has_errors(), "{src}: {:?}", out.diagnostics);
    match out.values.last() {
        Some(Value::Tensor(t)) => (t.dtype, t.weak),
        other => panic!("{src}: not a tensor: {other:?}"),
    }
}

#[test]
fn the_promotion_rule_is_the_checkers() {
    use DType::*;
    // Weak operands adopt the other side's dtype when it is of the same or a higher kind.
    assert_eq!(promote_dtypes((I64, true), (F64, false)), Ok((F64, false)));
    assert_eq!(promote_dtypes((F32, true), (I32, false)), Ok((F32, false)));
    assert_eq!(promote_dtypes((I64, true), (F32, true)), Ok((F32, true)));
    assert_eq!(promote_dtypes((Bool, false), (I64, true)), Ok((I64, false)));
    // Strong operands of different kinds promote; two strong floats never mix.
    assert_eq!(promote_dtypes((I32, false), (F64, false)), Ok((F64, false)));
    assert_eq!(promote_dtypes((I32, false), (I64, false)), Ok((I64, false)));
    assert_eq!(promote_dtypes((F32, false), (F64, false)), Err((F32, F64)));
}

#[test]
fn weak_literals_take_the_other_operands_dtype() {
    assert_eq!(last("f64(1.0) * 2"), (DType::F64, false));
    assert_eq!(last("i32(3) + 1"), (DType::I32, false));
    assert_eq!(last("i32(3) * 0.5"), (DType::F32, false));
    assert_eq!(last("arange(5) * 0.5"), (DType::F32, false));
    assert_eq!(last("[1, 2.0]"), (DType::F32, true));
    assert_eq!(last("[1, 2]"), (DType::I64, true));
    assert_eq!(last("2 * 3"), (DType::I64, true));
    assert_eq!(last("7 / 2"), (DType::F32, true));
    assert_eq!(last("i32(7) / 2"), (DType::F32, false));
    assert_eq!(last("true + 1"), (DType::I64, false));
    assert_eq!(last("sum([true, false])"), (DType::I64, false));
    assert_eq!(last("mean([1, 2])"), (DType::F32, false));
    assert_eq!(last("exp(1)"), (DType::F32, true));
    assert_eq!(last("let x: f64 = 0.1\nx"), (DType::F64, false));
}

#[test]
fn weak_floats_keep_their_precision_until_they_meet_a_dtype() {
    // 0.1 multiplies an f64 as the f64 0.1, not as 0.1 rounded to f32.
    assert_eq!(printed("print(f64(1.0) * 0.1 == f64(0.1))"), "true\n");
    // Alone, a float literal is f32.
    assert_eq!(
        printed("print(0.1 + 0.2, dtype(0.1 + 0.2))"),
        "0.3000 f32\n"
    );
}

#[test]
fn rebinding_keeps_the_dtype() {
    assert_eq!(last("let x = f64(2.0)\nx = 1\nx"), (DType::F64, false));
    assert_eq!(last("let n = i32(2)\nn += 1\nn"), (DType::I32, false));
}

#[test]
fn entries_share_state_and_underscore_is_the_last_value() {
    let mut s = session();
    assert!(!s.eval("let x = 2\nfn f(y) { x * y }").has_errors());
    let out = s.eval("f(3)");
    assert!(!out.has_errors());
    assert_eq!(out.values.len(), 1);
    let out = s.eval("print(_ + 1)\nx = 10\nprint(f(3))");
    assert_eq!(out.output, "7\n30\n");
    // An entry with a type error runs nothing.
    let out = s.eval("print(1)\nlet bad = [1.0] @ [1.0, 2.0]");
    assert!(out.has_errors());
    assert_eq!(out.output, "");
    // A runtime error keeps what ran before it.
    let out = s.eval("let kept = 5\nassert(false)\nlet lost = 1");
    assert_eq!(out.diagnostics.first().map(|d| d.code), Some("E0903"));
    let out = s.eval("print(kept)");
    assert_eq!(out.output, "5\n");
    let out = s.eval("print(lost)");
    assert_eq!(out.diagnostics.first().map(|d| d.code), Some("E0910"));
}

#[test]
fn deep_recursion_is_an_error_not_a_crash() {
    let mut s = Session::with_options(Options {
        capture_output: true,
        max_call_depth: 50,
        ..Options::default()
    });
    let out = s.eval("fn f(n: i64) -> i64 { if n == 0 { 0 } else { 1 + f(n - 1) } }\nprint(f(40))");
    assert_eq!(out.output, "40\n");
    let out = s.eval("print(f(60))");
    assert_eq!(out.diagnostics.first().map(|d| d.code), Some("E0904"));
    // The default limit is reached well before the evaluation thread's stack runs out.
    let mut s = session();
    let out = s.eval(
        "fn g(n: i64) -> i64 { if n == 0 { 0 } else { 1 + g(n - 1) } }\nprint(g(999))\ng(5000)",
    );
    assert_eq!(out.output, "999\n");
    assert_eq!(out.diagnostics.first().map(|d| d.code), Some("E0904"));
}

#[test]
fn printing_goes_to_the_sink_of_the_session() {
    assert_eq!(
        printed("print(\"a\", 1, [1.5, 2.0])"),
        "a 1 [1.5000, 2.0000]\n"
    );
}

/// Every program of the golden UI cases that checks clean runs without an internal error
/// (a panic or an unexpected state shows as E0999); runtime errors are allowed.
#[test]
fn clean_ui_programs_run_without_internal_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("ui");
    let mut ran = 0;
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.extension().is_none_or(|e| e != "ms") {
            continue;
        }
        let golden = fs::read_to_string(p.with_extension("stderr")).unwrap_or_default();
        if !golden.is_empty() {
            continue;
        }
        let text = fs::read_to_string(&p).unwrap_or_default();
        // Programs that import files need a loader, which sessions do not have yet.
        if text.contains("import \"") {
            continue;
        }
        let mut s = session();
        let out = s.eval(&text);
        assert!(
            out.diagnostics.iter().all(|d| d.code != "E0999"),
            "{}: {:?}",
            p.display(),
            out.diagnostics
        );
        ran += 1;
    }
    assert!(ran > 0, "no clean UI program found in {}", dir.display());
}
