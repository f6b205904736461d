//! Helpers shared by the integration tests that export the repository's samples
//! (`msir.rs`, `onnx_export.rs`).

use std::path::{Path, PathBuf};

use interpreter::{Options, Session};

/// A session that has run `samples/<sample>` with `script_args` (where `REPO` stands for the
/// repository root, since the samples' data paths are relative to it), writing its logs
/// under `root/<case>/runs`, and that case folder. Panics, naming `case`, if the sample
/// fails.
pub fn run_sample(
    root: &Path,
    case: &str,
    sample: &str,
    script_args: &[&str],
) -> (Session, PathBuf) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join(case);
    std::fs::create_dir_all(&dir).expect("a case folder");
    let path = repo.join("samples").join(sample);
    let text = std::fs::read_to_string(&path).expect("the sample");
    let script_args: Vec<String> = script_args
        .iter()
        .map(|a| a.replace("REPO", &repo.display().to_string()))
        .collect();
    let mut s = Session::with_options(Options {
        capture_output: true,
        script_path: Some(path),
        script_args,
        logdir: Some(dir.join("runs")),
        ..Options::default()
    });
    s.mute_summaries();
    let o = s.eval(&text);
    assert!(!o.has_errors(), "{case}: {:?}", o.diagnostics);
    (s, dir)
}
