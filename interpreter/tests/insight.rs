//! Training insight end to end: the event files a program's `log_*` calls write, read back
//! by MindScript's own reader (eagerly and in graph mode, which must write the same
//! summaries) and by TensorBoard's (when `MS_PYTHON` names a Python with the `tensorboard`
//! package; otherwise that test says it is skipped), `ms report` on them, and `progress`
//! leaving piped output alone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use interpreter::insight::events::{self, Value, What};
use interpreter::{Options, Session};

/// A fresh folder for one test's runs.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ms-insight-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("a temporary folder");
    dir
}

/// The program every test logs with: scalars from a staged-or-not function, a histogram,
/// text, and the step of a loop.
const PROGRAM: &str = r#"
fn step(w: f32[4], i: i64) -> f32[4] {
    log_scalar("loss", i, sum(w * w))
    log_histogram("w", i, w)
    w * 0.5
}
let w = [1.0, -2.0, 3.0, 0.5]
for i in progress(0..3) {
    w = step(w, i)
}
log_text("note", 3, "done: **3** steps")
log_histogram("big", 7, arange(100))
print(w)
"#;

/// Runs [`PROGRAM`] with summaries under `logdir`; gives the event file.
fn run(logdir: &Path, graph: bool) -> PathBuf {
    let mut s = Session::with_options(Options {
        capture_output: true,
        logdir: Some(logdir.to_path_buf()),
        script_path: Some(PathBuf::from("train.ms")),
        graph_mode: graph,
        ..Options::default()
    });
    let out = s.eval(PROGRAM);
    assert!(!out.has_errors(), "{:?}", out.diagnostics);
    assert_eq!(out.output, "[ 0.1250, -0.2500,  0.3750,  0.0625]\n");
    s.summary_file().expect("an event file").to_path_buf()
}

/// (step, tag, value) of every summary of a file, after its `file_version` event.
fn summaries(path: &Path) -> Vec<(i64, String, Value)> {
    let bytes = fs::read(path).expect("readable");
    let evs = events::read_events(&bytes).expect("a valid event file");
    assert_eq!(
        evs.first().map(|e| &e.what),
        Some(&What::FileVersion("brain.Event:2".into()))
    );
    evs.into_iter()
        .skip(1)
        .flat_map(|e| match e.what {
            What::Summary(vs) => vs.into_iter().map(|(t, v)| (e.step, t, v)).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn events_read_back_and_graph_mode_writes_the_same() {
    let dir = scratch("modes");
    let eager = run(&dir, false);
    let name = eager.file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let run_dir = eager
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str());
    assert!(
        run_dir.is_some_and(|r| r.starts_with("train-")),
        "{run_dir:?}"
    );
    let got = summaries(&eager);
    let scalars: Vec<(i64, f32)> = got
        .iter()
        .filter_map(|(s, t, v)| match v {
            Value::Scalar(x) if t == "loss" => Some((*s, *x)),
            _ => None,
        })
        .collect();
    assert_eq!(scalars, [(0, 14.25), (1, 3.5625), (2, 0.890625)]);
    let Some((_, _, Value::Histogram(h))) = got.iter().find(|(s, t, _)| t == "w" && *s == 0) else {
        panic!("no histogram w at step 0: {got:?}");
    };
    assert_eq!((h.min, h.max, h.num, h.sum), (-2.0, 3.0, 4.0, 2.5));
    assert_eq!(h.bucket.iter().sum::<f64>(), 4.0);
    assert!(got.contains(&(3, "note".into(), Value::Text("done: **3** steps".into()))));

    let graph = run(&dir, true);
    assert_ne!(graph, eager, "each session has its own run folder");
    assert_eq!(
        summaries(&graph),
        got,
        "graph mode logs what eager mode logs"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// The Python that reads the files back with TensorBoard's own event reader.
const READ_BACK: &str = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
acc.Reload()
tags = acc.Tags()
assert sorted(tags["scalars"]) == ["loss"], tags
assert sorted(tags["histograms"]) == ["big", "w"], tags
assert tags["tensors"] == ["note"], tags
loss = [(e.step, e.value) for e in acc.Scalars("loss")]
assert loss == [(0, 14.25), (1, 3.5625), (2, 0.890625)], loss
w = acc.Histograms("w")
assert [e.step for e in w] == [0, 1, 2]
h = w[0].histogram_value
assert (h.min, h.max, h.num, h.sum, h.sum_squares) == (-2.0, 3.0, 4.0, 2.5, 14.25), h
assert sum(h.bucket) == 4 and len(h.bucket) == len(h.bucket_limit) == 30
big = acc.Histograms("big")[0]
assert big.step == 7 and big.histogram_value.num == 100
assert sum(big.histogram_value.bucket) == 100 and big.histogram_value.bucket_limit[-1] == 99.0
note = acc.Tensors("note")
assert note[0].step == 3
text = tensor_util.make_ndarray(note[0].tensor_proto)
assert text.item() == b"done: **3** steps", text
meta = acc.SummaryMetadata("note")
assert meta.plugin_data.plugin_name == "text", meta

# The loader that TensorBoard's data server uses checks every CRC on its own.
from tensorboard.backend.event_processing import event_file_loader
import glob
files = glob.glob(sys.argv[1] + "/events.out.tfevents.*")
assert len(files) == 1, files
n = sum(1 for _ in event_file_loader.EventFileLoader(files[0]).Load())
assert n == 1 + 3 + 3 + 1 + 1, n
print("tensorboard read", n, "events")
"#;

#[test]
fn tensorboard_reads_the_event_files() {
    let Some(python) = std::env::var_os("MS_PYTHON") else {
        println!("skipped: set MS_PYTHON to a Python with the `tensorboard` package to run it");
        return;
    };
    let dir = scratch("tensorboard");
    let file = run(&dir, false);
    let run_dir = file.parent().expect("in a run folder");
    let out = Command::new(&python)
        .arg("-c")
        .arg(READ_BACK)
        .arg(run_dir)
        .output()
        .expect("MS_PYTHON runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "TensorBoard's reader failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("tensorboard read 9 events"), "{stdout}");
    let _ = fs::remove_dir_all(&dir);
}

fn ms(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ms"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("ms runs")
}

#[test]
fn ms_report_draws_every_tag() {
    let dir = scratch("report");
    let file = run(&dir, false);
    let run_dir = file.parent().expect("in a run folder");
    let page = dir.join("page.html");
    let out = ms(
        &[
            "report",
            &run_dir.display().to_string(),
            "-o",
            &page.display().to_string(),
        ],
        &dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = fs::read_to_string(&page).expect("the page");
    // One plot per scalar tag and per histogram tag, and the distribution over its steps of
    // `w`, logged at three steps.
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(html.contains("median"), "the distribution's legend");
    for tag in [
        "<h3>loss</h3>",
        "<h3>w</h3>",
        "<h3>big</h3>",
        "<h3>note</h3>",
    ] {
        assert!(html.contains(tag), "{tag} missing");
    }
    assert!(
        html.contains("values 0.890625 to 14.25"),
        "the loss's range"
    );
    assert!(html.contains("done: **3** steps"));

    // A damaged file is an error naming it and the offset, with status 1.
    let bytes = fs::read(&file).expect("readable");
    fs::write(&file, &bytes[..bytes.len() - 2]).expect("writable");
    let out = ms(&["report", &run_dir.display().to_string()], &dir);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("events.out.tfevents.") && err.contains("at byte"),
        "{err}"
    );
    // A folder without event files is bad usage.
    let out = ms(
        &["report", &dir.join("nothing").display().to_string()],
        &dir,
    );
    assert_eq!(out.status.code(), Some(2));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn progress_and_logdir_leave_piped_output_alone() {
    let dir = scratch("pipe");
    let script = dir.join("loop.ms");
    fs::write(
        &script,
        "for i in progress(0..50) {\n  log_scalar(\"i\", i, i)\n}\n\
         for b in batches(arange(10), 3) {\n  print(sum(b))\n}\n",
    )
    .expect("writable");
    let out = ms(&["--logdir", "logs", "loop.ms"], &dir);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n12\n21\n9\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no bar on a pipe");
    let runs: Vec<_> = fs::read_dir(dir.join("logs"))
        .expect("--logdir made")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(runs.len(), 1);
    let name = runs[0].file_name().to_string_lossy().into_owned();
    assert!(name.starts_with("loop-"), "{name}");
    let _ = fs::remove_dir_all(&dir);
}

/// Runs `ms loop.ms` (with `script` as `src`) in a pseudo-terminal made by util-linux's
/// `script`, and returns the terminal's lines with the escape sequences (colours, line
/// clears) taken out; `None` where `script` is not installed.
fn run_on_a_terminal(name: &str, script: &str) -> Option<Vec<String>> {
    if Command::new("script").arg("--version").output().is_err() {
        println!("skipped: util-linux `script` is not installed, so there is no terminal");
        return None;
    }
    let dir = scratch(name);
    fs::write(dir.join("loop.ms"), script).expect("writable");
    let command = format!("{} loop.ms", env!("CARGO_BIN_EXE_ms"));
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(&dir)
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .output()
        .expect("script runs");
    assert!(out.status.success(), "{out:?}");
    let screen = String::from_utf8_lossy(&out.stdout);
    let mut plain = String::new();
    let mut chars = screen.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, then one final letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let _ = fs::remove_dir_all(&dir);
    Some(
        plain
            .split(['\r', '\n'])
            .map(|l| l.trim_end().to_string())
            .collect(),
    )
}

/// On a terminal the bar is drawn, with its count, elapsed time, ETA and rate; a `print`
/// inside the loop gets a line of its own (the bar steps aside), and so does the first
/// output after the loop (the finished bar stays, followed by a line break). Without
/// `script` the test says so and passes.
#[test]
fn progress_bar_draws_on_a_terminal() {
    let Some(lines) = run_on_a_terminal(
        "tty",
        "let t = 0\nfor i in progress(0..40) {\n  t = t + i\n  if i == 20 { print(\"half\") }\n}\n\
         print(\"total\", t)\n",
    ) else {
        return;
    };
    let plain = lines.join("\n");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("40/40") && l.contains("/s]")),
        "the finished bar with its rate:\n{plain}"
    );
    assert!(
        lines.iter().any(|l| l == "half"),
        "print inside the loop:\n{plain}"
    );
    assert!(
        lines.iter().any(|l| l == "total 780"),
        "output after the loop:\n{plain}"
    );
}

/// A loop over `batches(...)` gets a bar of its own once it has run for a second, with no
/// `progress(...)` asked for, and the bar is cleared when the loop ends; a loop that ends
/// sooner never shows one. Each of the 30 iterations here waits 60 ms, so the bar appears
/// about halfway through.
#[test]
fn long_batch_loops_get_a_bar_on_a_terminal() {
    let Some(lines) = run_on_a_terminal(
        "tty-auto",
        "let x = reshape(f32(arange(60)), [30, 2])\n\
         let quick = 0.0\nfor b in batches(x, 10) { quick = quick + sum(b) }\n\
         print(\"quick\", quick)\n\
         let t = 0.0\nfor b in batches(x, 1) {\n  let t0 = time()\n  while time() - t0 < 0.06 { }\n  \
         t = t + sum(b)\n}\nprint(\"total\", t)\n",
    ) else {
        return;
    };
    let plain = lines.join("\n");
    let bars: Vec<&String> = lines.iter().filter(|l| l.contains("/30 [")).collect();
    assert!(!bars.is_empty(), "the long loop's bar:\n{plain}");
    assert!(
        lines.iter().all(|l| !l.contains("/3 [")),
        "no bar for the quick loop of 3 batches:\n{plain}"
    );
    assert!(lines.iter().any(|l| l == "quick 1770.0000"), "{plain}");
    // Cleared at the end: the last thing on the screen is the output after the loop.
    let last = lines.iter().rev().find(|l| !l.is_empty());
    assert_eq!(last.map(String::as_str), Some("total 1770.0000"), "{plain}");
}
