//! REPL transcripts (`tests/repl/NAME.in` → `NAME.out`), run both through the in-memory
//! driver [`interpreter::repl::transcript`] and through the real `ms` binary over a pipe,
//! and one session on a real pseudo-terminal (multi-line entry and Tab completion).
//!
//! A `.out` file is the transcript: each input line after the prompt it gets (`ms> `, or
//! `... ` on a continuation line), then what the REPL wrote, output and errors in order.
//! The binary writes no prompts over a pipe, so its output is compared with the `.out`
//! file without its prompt lines. Timings vary, so a `time: ...` line is compared as
//! `time: <masked>`. `BLESS=1 cargo test -p interpreter --test repl` rewrites the `.out`
//! files from the driver.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use interpreter::Options;

fn case_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/repl")
}

/// The `.in` files, sorted by name.
fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(case_dir())
        .expect("tests/repl exists")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "in"))
        .collect();
    cases.sort();
    cases
}

/// Replaces the numbers of `:time` reports, which vary from run to run.
fn mask(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("time: ") {
                "time: <masked>"
            } else {
                l
            }
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn without_prompt_lines(transcript: &str) -> String {
    transcript
        .lines()
        .filter(|l| !l.starts_with("ms> ") && !l.starts_with("... "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn transcripts_through_the_session_driver() {
    let cases = cases();
    assert!(cases.len() >= 8, "only {} transcripts", cases.len());
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for input_path in &cases {
        let input = std::fs::read_to_string(input_path).expect("a readable .in file");
        let got = mask(&interpreter::repl::transcript(Options::default(), &input));
        let out_path = input_path.with_extension("out");
        if bless {
            std::fs::write(&out_path, &got).expect("the .out file is writable");
            continue;
        }
        let expected = std::fs::read_to_string(&out_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}\n--- got\n{got}",
                out_path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn transcripts_through_the_binary_over_a_pipe() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("repl-transcripts");
    std::fs::create_dir_all(&tmp).expect("a scratch folder");
    let mut failures = Vec::new();
    for input_path in cases() {
        let name = input_path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a UTF-8 case name");
        // Output and errors go to one file, so that they stay in the order written.
        let log_path = tmp.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("a log file");
        let status = Command::new(env!("CARGO_BIN_EXE_ms"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("NO_COLOR", "1")
            .stdin(std::fs::File::open(&input_path).expect("the .in file"))
            .stdout(Stdio::from(log.try_clone().expect("a second handle")))
            .stderr(Stdio::from(log))
            .status()
            .expect("the ms binary runs");
        assert!(status.success(), "{name}: {status}");
        let got = mask(&std::fs::read_to_string(&log_path).expect("the log"));
        let expected = std::fs::read_to_string(input_path.with_extension("out"))
            .expect("the .out file (BLESS=1 writes it)");
        let expected = without_prompt_lines(&expected);
        if got != expected {
            failures.push(format!("{name}:\n--- expected\n{expected}\n--- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A real terminal: the line editor runs, Enter continues an unfinished `fn`, Tab
/// completes a function, a variable and a record field.
#[cfg(unix)]
#[test]
fn a_terminal_session_with_multi_line_entry_tab_completion_and_ctrl_c() {
    use rexpect::session::spawn_command;

    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("repl-pty-home");
    std::fs::create_dir_all(&home).expect("a scratch home");
    // No history from an earlier run, so that no grey hint appears in the screen text.
    let _ = std::fs::remove_file(home.join(".mindscript_history"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ms"));
    cmd.env("HOME", &home)
        .env("TERM", "xterm")
        .env("NO_COLOR", "1");
    let mut p = spawn_command(cmd, Some(20_000)).expect("ms starts on a pty");
    p.exp_string("Tab completes").expect("the banner");
    p.exp_string("ms> ").expect("the first prompt");
    // Each step waits for a value echoed after its entry ran: typing before the editor
    // is back at the prompt would race with it (and a repaint also shows `ms> `).

    // Enter after `fn add(left,` must not submit: the parser says the entry is unfinished.
    p.send_line("fn add(left,").expect("typing");
    p.send_line("       right) { left + right }; add(1, 1)")
        .expect("typing");
    p.exp_string("i64 2")
        .expect("the fn was defined across two lines");

    // `ad` + Tab completes the function (no builtin or keyword starts with `ad`), and
    // `tot` + Tab the variable.
    p.send("let total = ad").expect("typing");
    p.send("\t").expect("Tab");
    p.send_line("(40, 2); total").expect("typing");
    p.exp_string("i64 42").expect("add(40, 2)");
    p.send("tot").expect("typing");
    p.send("\t").expect("Tab");
    p.send_line(" * 10").expect("typing");
    p.exp_string("i64 420")
        .expect("total * 10 through a completion");

    // A record field after `.`.
    p.send_line("let rec = {alpha: 5, beta: 6}; rec.beta")
        .expect("typing");
    p.exp_string("i64 6").expect("the record");
    p.send("rec.al").expect("typing");
    p.send("\t").expect("Tab");
    p.send_line(" + total").expect("typing");
    p.exp_string("i64 47").expect("rec.alpha + total");

    // Ctrl-C during a long loop stops it (E0911) and brings the prompt back; the session
    // keeps its variables. The entry prints a computed number first, so that Ctrl-C comes
    // while the loop runs, not while the editor still owns the terminal.
    p.send_line("let spins = 0; print(total + 1000); for i in 0..1000000000 { spins = spins + 1 }")
        .expect("typing");
    p.exp_string("1042").expect("the loop started");
    std::thread::sleep(std::time::Duration::from_millis(200));
    p.send_control('c').expect("Ctrl-C");
    p.exp_string("E0911").expect("the loop was interrupted");
    p.exp_string("ms> ").expect("the prompt is back");
    p.send_line("total + rec.beta; spins > 0").expect("typing");
    p.exp_string("i64 48")
        .expect("total and rec survived the interrupt");
    p.exp_string("true")
        .expect("the loop's work before Ctrl-C stays");

    // Ctrl-D leaves.
    p.send_control('d').expect("Ctrl-D");
    p.exp_eof().expect("the REPL exits");
}
