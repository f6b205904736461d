//! The `ms` binary's commands and exit statuses (LANGUAGE.md §12): 0 success, 1 an error in
//! the program, 2 bad usage.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ms(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ms"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the ms binary runs")
}

fn ui(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/ui")
        .join(case)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_exit_status_says_whether_the_program_is_wrong() {
    let clean = ms(&["check", &ui("lang_first_look.ms").to_string_lossy()]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stderr));
    assert!(clean.stderr.is_empty(), "{}", text(&clean.stderr));

    let wrong = ms(&["check", &ui("shape_matmul_mismatch.ms").to_string_lossy()]);
    assert_eq!(wrong.status.code(), Some(1));
    let err = text(&wrong.stderr);
    assert!(
        err.contains("E0301") && err.contains("f32[32, 784] @ f32[128, 784]"),
        "{err}"
    );
    assert!(err.contains("1 error found"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "no colour when not a terminal: {err}"
    );
}

#[test]
fn usage_errors_exit_with_status_2() {
    for args in [
        &["check"][..],
        &["check", "/no/such/file.ms"],
        &["frobnicate"],
        &["--nope"],
        &["explain", "E9999"],
        &["check", "a.ms", "b.ms"],
    ] {
        let out = ms(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "ms {args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("error:"), "ms {args:?}");
    }
}

#[test]
fn explain_prints_the_explanation_of_a_code() {
    let out = ms(&["explain", "E0301"]);
    assert_eq!(out.status.code(), Some(0));
    let body = text(&out.stdout);
    assert!(body.starts_with("# E0301"), "{body}");
    assert!(
        body.contains("## Example") && body.contains("## Fix"),
        "{body}"
    );

    let list = text(&ms(&["explain"]).stdout);
    assert!(list.lines().count() >= 20, "{list}");
    assert!(list.lines().any(|l| l.starts_with("E0301 ")), "{list}");
}

fn run_case(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/run")
        .join(name)
}

#[test]
fn a_script_runs_and_prints_what_the_session_prints() {
    let script = run_case("matmul.ms");
    for args in [
        vec![script.to_string_lossy().into_owned()],
        vec![
            "run".into(),
            script.to_string_lossy().into_owned(),
            "--seed".into(),
            "3".into(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ms(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let expected = std::fs::read_to_string(run_case("matmul.stdout")).expect("golden output");
        assert_eq!(text(&out.stdout), expected);
    }
    let failing = ms(&[&run_case("err_int_div_zero.ms").to_string_lossy()]);
    assert_eq!(failing.status.code(), Some(1));
    assert!(
        text(&failing.stderr).contains("E0902"),
        "{}",
        text(&failing.stderr)
    );
}

#[test]
fn every_sample_runs_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).expect("samples/ exists") {
        let path = entry.expect("readable samples entry").path();
        if path.extension().is_some_and(|e| e == "ms") {
            // Samples name their data relative to the repository root, where they are
            // meant to be run from.
            let out = Command::new(env!("CARGO_BIN_EXE_ms"))
                .arg(&path)
                .current_dir(dir.join(".."))
                .env("NO_COLOR", "1")
                .output()
                .expect("the ms binary runs");
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}",
                path.display(),
                text(&out.stderr)
            );
            assert!(
                out.stderr.is_empty(),
                "{}: {}",
                path.display(),
                text(&out.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 1, "no samples found in {}", dir.display());
}

#[test]
fn the_repl_over_a_pipe_echoes_values_and_keeps_state() {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ms"))
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the ms binary starts");
    let input = "let x = [[1.0, 2.0], [3.0, 4.0]]\nfn f(a,\n  b) { a + b }\nf(x, 1.0)\n\
                 let y = x @ zeros([3, 3])\nsum(x)\n_ * 2\n:type x.T\n:quit\nprint(\"unreached\")\n";
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("the REPL reads its input");
    let out = child.wait_with_output().expect("the REPL exits");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "f32[2, 2]\n[[2.0000, 3.0000],\n [4.0000, 5.0000]]\nf32 10.0000\nf32 20.0000\nf32[2, 2]\n"
    );
    let err = text(&out.stderr);
    assert!(err.contains("E0301") && err.contains("<repl>"), "{err}");
}
