//! The `ms` binary's commands and exit statuses (LANGUAGE.md §12): 0 success, 1 an error in
//! the program, 2 bad usage, 130 interrupted by Ctrl-C.
//!
//! The one in-process test that sets the cancellation flag (`devices::cancel`, global to the
//! process) lives here because every other test of this binary runs `ms` as a child process,
//! which has a flag of its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

/// `ms check` run in `dir` on `script` (a path relative to `dir`).
fn check_in(dir: &Path, script: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ms"))
        .args(["check", script])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the ms binary runs")
}

#[test]
fn check_reads_nested_imports_relative_to_each_module() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests");
    // Two `import "util.ms"` in two folders: two modules, with no error, from a working
    // directory that is none of the scripts' folders.
    let clean = check_in(&tests, "run/import_relative.ms");
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stderr));
    assert!(clean.stderr.is_empty(), "{}", text(&clean.stderr));

    // The error two imports deep is shown in its own file, named from the working
    // directory, and each importer says which import failed.
    let wrong = check_in(&tests.join("ui"), "import_nested.ms");
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong.stderr));
    let err = text(&wrong.stderr);
    for needle in [
        "lib/inner/deep.ms:3:11",
        "shapes do not fit matmul: f32[2] @ f32[3]",
        "`lib/inner/deep.ms` has errors",
        "lib/nested.ms:2:8",
        "import_nested.ms:3:8",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
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
        // Every one is a miette report: `× message`, and no colour over a pipe.
        let err = text(&out.stderr);
        assert!(err.contains("  × "), "ms {args:?}: {err}");
        assert!(!err.contains('\u{1b}'), "ms {args:?}: {err}");
        assert!(out.stdout.is_empty(), "ms {args:?}");
    }
}

#[test]
fn a_bad_flag_is_a_report_with_the_usage() {
    let out = ms(&["--nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("× unexpected argument '--nope' found"),
        "{err}"
    );
    assert!(err.contains("help:") && err.contains("usage: ms"), "{err}");

    let out = ms(&["--threads", "0", "run", "x.ms"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("× invalid value '0' for '--threads <N>'"),
        "{err}"
    );

    let out = ms(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("× unknown command `frobnicate`"), "{err}");
    assert!(
        err.contains("run, check, ir, plan, export, report, explain and demo"),
        "{err}"
    );
}

#[test]
fn an_unreadable_script_is_a_report_and_bad_usage() {
    for args in [
        &["/no/such/file.ms"][..],
        &["run", "/no/such/file.ms"],
        &["check", "/no/such/file.ms"],
    ] {
        let out = ms(args);
        assert_eq!(out.status.code(), Some(2), "ms {args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("× cannot read /no/such/file.ms"),
            "ms {args:?}: {err}"
        );
    }
    // A file that is there but is not text is an error in the program.
    let dir = scratch_dir("not_text");
    let path = dir.join("bytes.ms");
    std::fs::write(&path, [0x66, 0xff, 0xfe, 0x0a]).expect("write a scratch file");
    let out = ms(&[&path.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("is not UTF-8 text") && err.contains("offset 1"),
        "{err}"
    );
}

#[test]
fn version_and_help() {
    let out = ms(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("ms {}\n", env!("CARGO_PKG_VERSION"))
    );

    for flag in ["--help", "-h"] {
        let out = ms(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        for part in [
            "Usage: ms [OPTIONS] [FILE.ms [ARGS]...]",
            "run ",
            "check ",
            "explain ",
            "demo ",
            "--threads <N>",
            "--seed <N>",
            "--version",
            "Examples:",
            "ms train.ms --epochs 5",
            "ms explain E0301",
            "130 interrupted (Ctrl-C)",
        ] {
            assert!(help.contains(part), "{flag}: `{part}` missing from\n{help}");
        }
    }
    let out = ms(&["help", "check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).contains("type-check"),
        "{}",
        text(&out.stdout)
    );
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
            "--seed".into(),
            "3".into(),
            script.to_string_lossy().into_owned(),
        ],
        vec![
            "--threads".into(),
            "1".into(),
            script.to_string_lossy().into_owned(),
            "--these-words-are-the-scripts".into(),
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
            // meant to be run from; their summaries go to a temporary folder.
            let logdir =
                std::env::temp_dir().join(format!("ms-sample-logs-{}", std::process::id()));
            let run = |mode: &str| {
                Command::new(env!("CARGO_BIN_EXE_ms"))
                    .args(["--mode", mode])
                    .arg("--logdir")
                    .arg(&logdir)
                    .arg(&path)
                    .current_dir(dir.join(".."))
                    .env("NO_COLOR", "1")
                    .output()
                    .expect("the ms binary runs")
            };
            let out = run("eager");
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
            // The differential principle: staged, the sample prints the same.
            let staged = run("graph");
            assert_eq!(text(&staged.stderr), "", "{} in graph mode", path.display());
            assert_eq!(
                text(&staged.stdout),
                text(&out.stdout),
                "{} prints otherwise in graph mode",
                path.display()
            );
            let _ = std::fs::remove_dir_all(&logdir);
            ran += 1;
        }
    }
    assert!(ran >= 1, "no samples found in {}", dir.display());
}

#[test]
fn the_repl_over_a_pipe_echoes_values_and_keeps_state() {
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

/// A fresh folder for the files of one test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ms-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir
}

/// Waits up to `limit` for the child to exit.
fn wait_within(child: &mut std::process::Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return Some(status);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn sigint(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -INT failed");
}

/// Reads lines of the child's stdout until one equals `line`.
fn wait_for_line(out: &mut impl BufRead, line: &str) {
    let mut buf = String::new();
    loop {
        buf.clear();
        let n = out.read_line(&mut buf).expect("the child's stdout reads");
        assert!(n > 0, "stdout ended before `{line}`");
        if buf.trim_end() == line {
            return;
        }
    }
}

#[test]
fn ctrl_c_stops_a_script_with_status_130() {
    let dir = scratch_dir("sigint");
    let script = dir.join("spin.ms");
    // A billion iterations take far longer than the test; a matrix product between them
    // keeps the kernels busy too.
    std::fs::write(
        &script,
        "let m = ones([256, 256])\nlet n = 0\nprint(\"started\")\n\
         for i in 0..1000000000 {\n  n = n + sum(m @ m)\n}\nprint(\"unreached\")\n",
    )
    .expect("write the script");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ms"))
        .arg(&script)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ms starts");
    let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
    wait_for_line(&mut out, "started");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().expect("waitable").is_none(),
        "ms ended by itself"
    );
    sigint(&child);
    let status = wait_within(&mut child, Duration::from_secs(1));
    if status.is_none() {
        let _ = child.kill();
    }
    let status = status.expect("ms stops within 1 s of Ctrl-C");
    assert_eq!(status.code(), Some(130), "{status:?}");
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("stdout reads");
    assert!(!rest.contains("unreached"), "{rest}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut err)
        .expect("stderr reads");
    assert!(
        err.contains("E0911") && err.contains("interrupted (Ctrl-C)"),
        "{err}"
    );
    assert!(err.contains("spin.ms"), "{err}");
}

#[test]
fn ctrl_c_in_the_repl_returns_to_the_prompt_with_state_intact() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ms"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ms starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        // Over a pipe the REPL reads one line ahead (a next line starting with `else` or `.`
        // would continue the entry), so the blank line lets the loop start now.
        .write_all(b"let x = 41\nprint(\"looping\")\nfor i in 0..1000000000 { x = x + 1 }\n\n")
        .expect("the REPL reads");
    stdin.flush().expect("flushed");
    let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
    wait_for_line(&mut out, "looping");
    std::thread::sleep(Duration::from_millis(200));
    sigint(&child);
    // The loop's increments before Ctrl-C stay (like Python), so ask for a fact that does
    // not depend on when it came: `x` is still a number past 41, and the session still runs.
    stdin
        .write_all(b"x > 41\nlet y = 2\ny * 21\n:quit\n")
        .expect("the REPL reads on");
    drop(stdin);
    let status = wait_within(&mut child, Duration::from_secs(5));
    if status.is_none() {
        let _ = child.kill();
    }
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("stdout reads");
    assert!(rest.contains("true") && rest.contains("42"), "{rest}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr is piped")
        .read_to_string(&mut err)
        .expect("stderr reads");
    assert!(err.contains("E0911"), "{err}");
}

#[test]
fn a_cancel_request_stops_a_session_entry_and_keeps_its_variables() {
    use interpreter::{Options, Session};
    let mut session = Session::with_options(Options {
        capture_output: true,
        ..Options::default()
    });
    let setup = session.eval(
        "let a = 5\nlet big = ones([3072, 3072])\n\
         fn spin(x) {\n  for i in 0..1000000000 {}\n  x * 1000\n}\n",
    );
    assert!(setup.diagnostics.is_empty(), "{:?}", setup.diagnostics);

    // Each entry clears the flag as it starts, so the request is repeated until the entry
    // ends; `interrupted` says how long it ran after the first one.
    let interrupted = |session: &mut Session, src: &str| {
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let setter = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(150));
                let first = Instant::now();
                while !done.load(Ordering::Relaxed) {
                    devices::cancel::request();
                    std::thread::sleep(Duration::from_millis(2));
                }
                first
            });
            let outcome = session.eval(src);
            let ended = Instant::now();
            done.store(true, Ordering::Relaxed);
            let first = setter.join().expect("the setter ends");
            (outcome, ended.saturating_duration_since(first))
        })
    };

    // In the evaluator: an empty loop (no primitive runs, only the loop's own check stops
    // it) inside a call, inside an assignment.
    let (outcome, after) = interrupted(&mut session, "a = spin(a)\n");
    let codes: Vec<&str> = outcome.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E0911"], "{:?}", outcome.diagnostics);
    assert!(
        after < Duration::from_secs(1),
        "stopped {after:?} after the request"
    );
    let note = outcome.diagnostics[0].notes.join("\n");
    assert!(note.contains("`spin` called at 1:5"), "{note}");

    // In a kernel: a product of two 3072² matrices takes seconds.
    let (outcome, after) = interrupted(&mut session, "let p = big @ big\n");
    let codes: Vec<&str> = outcome.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["E0911"], "{:?}", outcome.diagnostics);
    assert!(
        after < Duration::from_secs(1),
        "stopped {after:?} after the request"
    );
    let span = outcome.diagnostics[0].primary.span;
    assert_eq!((span.start, span.end), (8, 17), "the span of `big @ big`");

    // The interrupted assignment left `a` as it was, `p` never got a value, and the next
    // entry runs normally: the flag was cleared.
    let after = session.eval("a + 1\n");
    assert!(after.diagnostics.is_empty(), "{:?}", after.diagnostics);
    assert_eq!(
        after
            .values
            .iter()
            .map(interpreter::value::repr)
            .collect::<Vec<_>>(),
        ["i64 6"]
    );
    assert!(session.global("p").is_none());
}

/// Runs `ms ARGS` with `input` on stdin; returns stdout.
fn ms_with_input(args: &[&str], input: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ms"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ms starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("ms reads its input");
    let out = child.wait_with_output().expect("ms exits");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn seed_sets_the_random_stream_of_scripts_and_the_repl() {
    let dir = scratch_dir("seed");
    let script = dir.join("draw.ms");
    std::fs::write(&script, "print(randn([4]))\n").expect("write the script");
    let script = script.to_string_lossy().into_owned();
    let run = |seed: &str| {
        let out = ms(&["--seed", seed, &script]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(run("5"), run("5"));
    assert_ne!(run("5"), run("6"));
    assert_eq!(
        run("0"),
        text(&ms(&[&script]).stdout),
        "the default seed is 0"
    );

    // The REPL draws the same numbers from the same seed.
    let repl = ms_with_input(&["--seed", "5"], "print(randn([4]))\n");
    assert_eq!(repl, run("5"));
}

#[test]
fn ms_ir_prints_the_staged_graph_and_its_derivative() {
    let dir = std::env::temp_dir().join(format!("ms-ir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let file = dir.join("f.ms");
    std::fs::write(
        &file,
        "fn f(x: f32[3]) -> f32 {\n    if sum(x) > 0.0 { sum(x * x) } else { sum(sin(x)) }\n}\n\
         fn unused(a: f32[2, 2]) -> f32 { sum(a @ a) }\n\
         fn batch_loss(w: f32[4, 2], x: f32[B, 4]) -> f32 { mean(tanh(x @ w)) }\n\
         fn dup(x: f32[3]) -> f32 { let unused = tanh(x)\n sum(exp(x)) + sum(exp(x)) }\n\
         print(f([1.0, 2.0, 3.0]))\n",
    )
    .expect("writable script");
    let path = file.to_string_lossy().into_owned();
    let raw = ms(&["ir", &path, "--fn", "f"]);
    assert_eq!(raw.status.code(), Some(0), "{}", text(&raw.stderr));
    let out = text(&raw.stdout);
    assert!(out.starts_with("graph @f("), "{out}");
    assert!(out.contains(" = if "), "{out}");
    assert!(
        !out.contains("14.0"),
        "the script's own output is kept aside: {out}"
    );
    // The text form parses back.
    let parsed = ir::graph::parse(&out).expect("the printed graph parses");
    ir::verify(&parsed).expect("and verifies");
    let grad = text(&ms(&["ir", &path, "--fn", "f", "--stage", "grad", "--spans"]).stdout);
    assert!(grad.starts_with("graph @f_grad("), "{grad}");
    assert!(
        grad.contains("cos"),
        "the derivative of sin is there: {grad}"
    );
    assert!(grad.contains("@0:"), "spans are shown: {grad}");
    // A function the script never calls is staged at its annotated types.
    let unused = text(&ms(&["ir", &path, "--fn", "unused"]).stdout);
    assert!(unused.contains("matmul"), "{unused}");
    // Symbolic dims stay symbolic, in the graph and in its derivative.
    let sym = text(&ms(&["ir", &path, "--fn", "batch_loss"]).stdout);
    assert!(
        sym.contains("%3: f32[B, 4]") && sym.contains("f32[B, 2] = matmul"),
        "{sym}"
    );
    assert_eq!(
        sym.matches("graph @").count(),
        1,
        "one general graph: {sym}"
    );
    let sym_grad = text(&ms(&["ir", &path, "--fn", "batch_loss", "--stage", "grad"]).stdout);
    assert!(
        sym_grad.contains("-> (token, f32[], i64[2], f32[4, 2], f32[B, 4])"),
        "{sym_grad}"
    );
    let missing = ms(&["ir", &path, "--fn", "nosuch"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no staged graph"));
    // The optimized graph (what runs): the repeated `exp(x)` once, the unused `tanh` gone.
    let opt = ms(&["ir", &path, "--fn", "dup", "--stage", "opt"]);
    assert_eq!(opt.status.code(), Some(0), "{}", text(&opt.stderr));
    let opt = text(&opt.stdout);
    assert_eq!(opt.matches("exp").count(), 1, "one exp after CSE: {opt}");
    assert!(!opt.contains("tanh"), "the unused tanh is gone: {opt}");
    let raw = text(&ms(&["ir", &path, "--fn", "dup"]).stdout);
    assert_eq!(
        raw.matches("exp").count(),
        2,
        "the raw graph has both: {raw}"
    );
    // `f` is not a parallel function: it has no devices' graphs to show.
    let par = ms(&["ir", &path, "--fn", "f", "--stage", "parallel"]);
    assert_eq!(par.status.code(), Some(1));
    assert!(text(&par.stderr).contains("no partitioned graph"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_restage_names_the_argument_and_dim_that_changed() {
    let dir = std::env::temp_dir().join(format!("ms-restage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let file = dir.join("r.ms");
    std::fs::write(
        &file,
        "@jit\nfn f(x) { sum(x * 2.0) }\nprint(f(ones([2])))\nprint(f(ones([2])))\n\
         print(f(ones([3])))\n",
    )
    .expect("writable script");
    let out = ms(&["--explain-restage", &file.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "4.0000\n4.0000\n6.0000\n");
    let notes = text(&out.stderr);
    assert_eq!(notes.lines().count(), 1, "one re-staging, not two: {notes}");
    assert!(
        notes.contains("re-staging `f`") && notes.contains("argument 1: dim 0 is 3, was 2"),
        "{notes}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ms run --check-modes`: the script runs in graph mode, prints what it prints eagerly,
/// and one line on stderr says what was checked; with `--mode eager` only `@jit` calls are
/// staged, so only they are checked.
#[test]
fn check_modes_says_what_it_checked() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/check_modes/agrees.ms");
    let case = case.to_string_lossy();
    let eager = ms(&["run", &case]);
    assert_eq!(eager.status.code(), Some(0), "{}", text(&eager.stderr));
    let checked = ms(&["run", "--check-modes", &case]);
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked.stderr));
    assert_eq!(text(&checked.stdout), text(&eager.stdout));
    let passes: Vec<&str> = ir::passes::PIPELINE.iter().map(|p| p.name()).collect();
    assert_eq!(
        text(&checked.stderr),
        format!(
            "check-modes: 4 staged calls of 3 graphs agreed with eager evaluation and with \
             the graph as staged (passes: {})\n",
            passes.join(", ")
        )
    );
    // Eagerly, `grad(loss)` is not staged: the three calls of the `@jit` `step` are.
    let jit_only = ms(&["--mode", "eager", "run", "--check-modes", &case]);
    assert_eq!(
        jit_only.status.code(),
        Some(0),
        "{}",
        text(&jit_only.stderr)
    );
    assert_eq!(text(&jit_only.stdout), text(&eager.stdout));
    assert!(
        text(&jit_only.stderr).starts_with("check-modes: 3 staged calls of 2 graphs agreed"),
        "{}",
        text(&jit_only.stderr)
    );
    // The code it reports on a difference is explained.
    let explained = ms(&["explain", "E0914"]);
    assert_eq!(explained.status.code(), Some(0));
    assert!(text(&explained.stdout).starts_with("# E0914: eager and staged results differ"));
}

/// The commands and flags of LANGUAGE.md §12 that later milestones build (meshes of GPUs)
/// say that they are not available yet, with exit status 1, rather than "unknown command"
/// or "unexpected argument". (`ms export --onnx` and `--mir` are built: see
/// `export_writes_an_onnx_model` and `export_writes_a_model_file_that_load_model_runs`.)
#[test]
fn later_milestones_say_so() {
    let out = ms(&["--devices", "cuda:2", "train.ms"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not available yet") && err.contains("NCCL"),
        "{err}"
    );
}

/// `--devices cpu:N` makes the mesh; `ms plan` prints how a data-parallel function is
/// split (the batch inputs' pieces, the all-reduces of its gradients and their bytes) and
/// `ms ir --stage parallel` the devices' graphs; a function may not ask for more devices
/// than the mesh has; a bad mesh is a usage error.
#[test]
fn plans_and_meshes() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/run/parallel_data.ms");
    let file = file.to_str().expect("utf-8 path");
    let out = ms(&["plan", file, "--fn", "step4", "--devices", "cpu:4"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "data parallel over 4 devices",
        "split: axis 0 into 3, 3, 2, 2",
        "all_reduce f32[8, 3] (144 B)",
        "partial sum(m0)",
        "estimated on `cpu`",
    ] {
        assert!(text.contains(want), "no `{want}` in:\n{text}");
    }
    let out = ms(&["plan", file, "--fn", "step4", "--profile", "h100"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("estimated on `h100`"));
    let out = ms(&["ir", file, "--fn", "conv_grad2", "--stage", "parallel"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("// devices 0 of a 2 mesh")
            && text.contains("// devices 1 of a 2 mesh")
            && text.contains("conv2d_backward_filter")
            && text.contains("all_reduce"),
        "{text}"
    );
    let out = ms(&["--devices", "cpu:2", file]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("E0909") && err.contains("more devices than the mesh has (2"),
        "{err}"
    );
    for bad in ["cpu:0", "tpu:2", "cpu:x"] {
        let out = ms(&["--devices", bad, file]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
    // This build has no MPI (the `mpi` feature): it says how to get it.
    let out = ms(&["--devices", "mpi", file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("built with MPI"));
    let out = ms(&["--devices", "8", file]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A plan saved by `ms plan --save` reads back, is priced again after an edit (`--plan
/// FILE`), runs (`ms --plan NAME=FILE`) with the values of the function's own strategy, and
/// an edit that does not fit the function is an error naming the file and what is wrong.
#[test]
fn plans_are_saved_edited_and_checked() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/run/parallel_data.ms");
    let file = file.to_str().expect("utf-8 path");
    let dir = std::env::temp_dir().join(format!("ms-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let saved = dir.join("step4.plan");
    let saved_s = saved.to_str().expect("utf-8 path");
    let out = ms(&["plan", file, "--fn", "step4", "--save", saved_s]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&saved).expect("the plan was written");
    for want in [
        "mesh 4\n",
        "input 7 f32[10, 6] [m0, -]\n",
        "input 4 f32[6, 8] [-, -]\n",
    ] {
        assert!(text.contains(want), "no `{want}` in:\n{text}");
    }
    // Split the first weight by columns as well: priced again, with more traffic.
    let edited = text.replace("input 4 f32[6, 8] [-, -]", "input 4 f32[6, 8] [-, m0]");
    assert_ne!(edited, text);
    std::fs::write(&saved, &edited).expect("edit");
    let out = ms(&["plan", file, "--fn", "step4", "--plan", saved_s]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let priced = String::from_utf8_lossy(&out.stdout);
    assert!(
        priced.contains("from the plan file") && priced.contains("split: axis 1 into 2, 2, 2, 2"),
        "{priced}"
    );
    // The script asserts every step equals one device's: with the edited plan too.
    let out = ms(&["--plan", &format!("step4={saved_s}"), file]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Edits that do not fit.
    for (bad, why) in [
        ("input 4 f32[6, 8] [-, m1]", "the mesh 4 has no axis m1"),
        (
            "input 4 f32[6, 9] [-, -]",
            "input 4 is f32[6, 8], but the plan was made for f32[6, 9]",
        ),
        (
            "input 4 f32[6, 8] [m0, m0]",
            "splits two axes over mesh axis m0",
        ),
    ] {
        std::fs::write(&saved, text.replace("input 4 f32[6, 8] [-, -]", bad)).expect("edit");
        let out = ms(&["plan", file, "--fn", "step4", "--plan", saved_s]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(why) && err.contains("step4.plan"),
            "{bad}: {err}"
        );
    }
    std::fs::write(&saved, text.replace("mesh 4", "mesh 2")).expect("edit");
    let out = ms(&["plan", file, "--fn", "step4", "--plan", saved_s]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is for a mesh of 2 devices"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&saved, "mesh 4\nsplit everything\n").expect("edit");
    let out = ms(&["plan", file, "--fn", "step4", "--plan", saved_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2: `split` is not"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ms(&["--plan", saved_s, file]);
    assert_eq!(out.status.code(), Some(2), "a plan must name its function");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ms export --onnx` runs the script in graph mode (its output hidden, its own words after
/// `--`), stages the function at `--args` (a symbolic dim becomes a dim_param), bakes a
/// checkpoint in with `--params`, and writes the model; what cannot be exported is an
/// error of the program (status 1) that names the primitive, a bad opset is bad usage.
#[test]
fn export_writes_an_onnx_model() {
    use onnx_proto::onnx as pb;
    use onnx_proto::prost::Message;
    let dir = std::env::temp_dir().join(format!("ms-cli-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a folder");
    let script = dir.join("model.ms");
    let ckpt = dir.join("ckpt.safetensors");
    std::fs::write(
        &script,
        format!(
            "import nn\nseed(arg(\"seed\", 0))\nlet params = {{l1: nn.init_linear(4, 8), l2: \
             nn.init_linear(8, 3)}}\nsave(params, \"{}\")\nprint(\"trained\")\n\
             fn forward(p, x) {{ nn.linear(p.l2, relu(nn.linear(p.l1, x))) }}\n\
             fn noisy(x: f32[3]) {{ x + randn([3]) }}\n",
            ckpt.display()
        ),
    )
    .expect("written");
    let (file, out) = (script.to_string_lossy(), dir.join("m.onnx"));
    let out_s = out.to_string_lossy();
    let ckpt_s = ckpt.to_string_lossy();
    let run = ms(&[
        "export",
        &file,
        "--fn",
        "forward",
        "--params",
        &ckpt_s,
        "--args",
        "f32[B, 4]",
        "--onnx",
        &out_s,
        "--",
        "--seed",
        "3",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let said = text(&run.stdout);
    assert!(
        !said.contains("trained"),
        "the script's output is hidden: {said}"
    );
    assert!(
        said.contains("inputs:  x: f32[B, 4]") && said.contains("outputs: output: f32[B, 3]"),
        "{said}"
    );
    assert!(
        said.contains("4 parameter tensors baked in (67 values)"),
        "{said}"
    );
    let bytes = std::fs::read(&out).expect("the model is written");
    let model = pb::ModelProto::decode(&bytes[..]).expect("it decodes");
    let g = model.graph.expect("a graph");
    let mut names: Vec<String> = g
        .initializer
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.contains('.'))
        .collect();
    names.sort();
    assert_eq!(names, ["l1.b", "l1.w", "l2.b", "l2.w"]);
    assert_eq!(model.opset_import[0].version(), 17);

    let bad = ms(&["export", &file, "--fn", "noisy", "--onnx", &out_s]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("`random_normal` cannot be exported to ONNX"),
        "{}",
        text(&bad.stderr)
    );
    let opset = ms(&[
        "export", &file, "--fn", "forward", "--onnx", &out_s, "--opset", "12",
    ]);
    assert_eq!(opset.status.code(), Some(2), "{}", text(&opset.stderr));
    let nowhere = ms(&["export", &file, "--fn", "forward"]);
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(
        text(&nowhere.stderr).contains("--onnx"),
        "{}",
        text(&nowhere.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ms export --mir` (with `--onnx` in the same call, and `--external-data`) writes a
/// `.msir` model file and the ONNX model with its data file beside it; a script that
/// loads the model file with `load_model` prints what the function itself prints; a
/// damaged model file is E0912 at the `load_model` call (exit status 1).
#[test]
fn export_writes_a_model_file_that_load_model_runs() {
    use onnx_proto::onnx as pb;
    use onnx_proto::prost::Message;
    let dir = std::env::temp_dir().join(format!("ms-cli-mir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a folder");
    let script = dir.join("model.ms");
    let ckpt = dir.join("ckpt.safetensors");
    std::fs::write(
        &script,
        format!(
            "import nn\nseed(3)\nlet params = {{l1: nn.init_linear(4, 80), l2: \
             nn.init_linear(80, 4)}}\nsave(params, \"{}\")\n\
             fn forward(p, x) {{ nn.linear(p.l2, relu(nn.linear(p.l1, x))) }}\n\
             let x = reshape(f32(arange(20)) / 10.0, [5, 4])\n\
             print(jit(forward)(params, x))\n",
            ckpt.display()
        ),
    )
    .expect("written");
    let file = script.to_string_lossy();
    let (onnx, mir) = (dir.join("m.onnx"), dir.join("m.msir"));
    let run = ms(&[
        "export",
        &file,
        "--fn",
        "forward",
        "--params",
        &ckpt.to_string_lossy(),
        "--args",
        "f32[B, 4]",
        "--onnx",
        &onnx.to_string_lossy(),
        "--mir",
        &mir.to_string_lossy(),
        "--external-data",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let said = text(&run.stdout);
    assert!(
        said.contains("MindScript model format 1.0") && said.contains("bytes of external data"),
        "{said}"
    );
    assert!(
        said.contains("inputs:  x: f32[B, 4]") && said.contains("4 parameter tensors baked in"),
        "{said}"
    );
    // The ONNX model points at its data file by a plain name, for the tensors of 1 KiB or
    // more (the 4 x 80 and 80 x 4 weights).
    let model =
        pb::ModelProto::decode(&std::fs::read(&onnx).expect("the model")[..]).expect("it decodes");
    let data = std::fs::read(dir.join("m.onnx.data")).expect("the data file");
    let g = model.graph.expect("a graph");
    let external: Vec<&pb::TensorProto> = g
        .initializer
        .iter()
        .filter(|t| t.data_location == Some(1))
        .collect();
    assert_eq!(external.len(), 2, "{:?}", g.initializer);
    for t in external {
        assert!(t.raw_data.is_none());
        let entry = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key() == k)
                .map(|e| e.value().to_string())
                .unwrap_or_else(|| panic!("no {k}"))
        };
        assert_eq!(entry("location"), "m.onnx.data");
        let (offset, length): (usize, usize) = (
            entry("offset").parse().expect("a number"),
            entry("length").parse().expect("a number"),
        );
        assert_eq!(offset % 64, 0);
        assert!(offset + length <= data.len());
    }
    // The model file runs in a script that has only it.
    let user = dir.join("use.ms");
    std::fs::write(
        &user,
        format!(
            "let f = load_model(\"{}\")\nlet x = reshape(f32(arange(20)) / 10.0, [5, 4])\nprint(f(x))\n",
            mir.display()
        ),
    )
    .expect("written");
    let (a, b) = (ms(&[&file]), ms(&[&user.to_string_lossy()]));
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b.stderr));
    assert_eq!(text(&a.stdout), text(&b.stdout));
    // A damaged model file is an error of the program at the call.
    let mut bytes = std::fs::read(&mir).expect("the model file");
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&mir, &bytes).expect("written");
    let bad = ms(&[&user.to_string_lossy()]);
    assert_eq!(bad.status.code(), Some(1));
    let err = text(&bad.stderr);
    assert!(
        err.contains("E0912") && err.contains("load_model(") && err.contains("ends at byte"),
        "{err}"
    );
    let neither = ms(&["export", &file, "--fn", "forward"]);
    assert_eq!(neither.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
