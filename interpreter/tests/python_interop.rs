//! Files MindScript writes are read by Python's `safetensors` and NumPy, and files they
//! write are read by MindScript (`docs/data.md`).
//!
//! The test needs a Python interpreter with `numpy` and `safetensors`, named by the
//! environment variable `MS_PYTHON` (`.ci/run` makes one in `.venv-ci`). Without it the
//! test prints that it was skipped and passes; with it, any failure (a missing package
//! included) fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use interpreter::{Options, Session};

/// The Python named by `MS_PYTHON`, or `None` (after saying so) when it is not set.
fn python() -> Option<PathBuf> {
    match std::env::var_os("MS_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            eprintln!(
                "skipped: MS_PYTHON is not set; point it at a Python with numpy and safetensors \
                 (`.ci/run` makes one in .venv-ci) to run the interop test"
            );
            None
        }
    }
}

/// Runs `script` with `python` in `dir`, failing the test with its output if it fails.
fn run_python(python: &Path, dir: &Path, script: &str) {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "the Python side failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs MindScript `src` in `dir` (paths in it are relative to `dir`), failing the test
/// on any diagnostic; returns what it printed.
fn run_ms(dir: &Path, src: &str) -> String {
    let src = src.replace("DIR/", &format!("{}/", dir.display()));
    let mut s = Session::with_options(Options {
        capture_output: true,
        ..Options::default()
    });
    let out = s.eval(&src);
    assert!(
        !out.has_errors(),
        "the MindScript side failed: {:?}\n{src}",
        out.diagnostics
    );
    out.output
}

const MS_WRITES: &str = r#"
let p = {
    l1: {w: [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], b: [0.5, -0.5]},
    opt: (f64([1.0, 2.0]), [[1, 2]], i32([3]), [true, false]),
    step: 7,
}
save(p, "DIR/ms.safetensors")
save_npy([[1.5, 2.5]], "DIR/f32.npy")
save_npy(f64([1.0, 2.0, 3.0]), "DIR/f64.npy")
save_npy(i32([[1], [-2]]), "DIR/i32.npy")
save_npy([7, 8], "DIR/i64.npy")
save_npy([true, false, true], "DIR/bool.npy")
save_npy(3.25, "DIR/scalar.npy")
"#;

const PY_READS: &str = r#"
import json
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

t = load_file("ms.safetensors")
assert sorted(t) == ["l1.b", "l1.w", "opt.0", "opt.1", "opt.2", "opt.3", "step"], sorted(t)
assert t["l1.w"].dtype == np.float32 and t["l1.w"].tolist() == [[1, 2, 3], [4, 5, 6]]
assert t["l1.b"].tolist() == [0.5, -0.5]
assert t["opt.0"].dtype == np.float64 and t["opt.0"].tolist() == [1.0, 2.0]
assert t["opt.1"].dtype == np.int64 and t["opt.1"].shape == (1, 2)
assert t["opt.2"].dtype == np.int32 and t["opt.2"].tolist() == [3]
assert t["opt.3"].dtype == np.bool_ and t["opt.3"].tolist() == [True, False]
assert t["step"].shape == () and t["step"] == 7
with safe_open("ms.safetensors", framework="numpy") as f:
    structure = json.loads(f.metadata()["mindscript.structure"])
assert structure == {"l1": {"b": None, "w": None}, "opt": [None, None, None, None], "step": None}

def check(name, dtype, value):
    a = np.load(name)
    assert a.dtype == dtype, (name, a.dtype)
    assert a.tolist() == value, (name, a.tolist())
check("f32.npy", np.float32, [[1.5, 2.5]])
check("f64.npy", np.float64, [1.0, 2.0, 3.0])
check("i32.npy", np.int32, [[1], [-2]])
check("i64.npy", np.int64, [7, 8])
check("bool.npy", np.bool_, [True, False, True])
check("scalar.npy", np.float32, 3.25)
"#;

const PY_WRITES: &str = r#"
import numpy as np
from safetensors.numpy import save_file

save_file({
    "enc.layers.0.w": np.arange(6, dtype=np.float32).reshape(2, 3),
    "enc.layers.1.w": np.full((2,), -1.0, dtype=np.float64),
    "head": np.array([[1, 2], [3, 4]], dtype=np.int32),
    "count": np.array(9, dtype=np.int64),
    "mask": np.array([True, False]),
}, "py.safetensors", metadata={"format": "np"})
np.save("py_f32.npy", np.linspace(0, 1, 5, dtype=np.float32))
np.save("py_be.npy", np.array([[1.5, -2.0]], dtype=">f8"))
np.save("py_bool.npy", np.array([[True], [False]]))
np.save("py_i32.npy", np.array([-7, 7], dtype=np.int32))
with open("py_v2.npy", "wb") as f:
    np.lib.format.write_array(f, np.arange(4, dtype=np.int64), version=(2, 0))
with open("py_v3.npy", "wb") as f:
    np.lib.format.write_array(f, np.ones((2, 2), dtype=np.float32), version=(3, 0))
"#;

const MS_READS: &str = r#"
let p: {enc: {layers: ({w: f32[2, 3]}, {w: f64[2]})}, head: i32[2, 2], count: i64, mask: bool[2]} = load("DIR/py.safetensors")
assert(all(p.enc.layers.0.w == reshape(f32(arange(6)), [2, 3])), "layers.0.w")
assert(all(p.enc.layers.1.w == f64(full([2], -1.0))), "layers.1.w")
assert(all(p.head == i32([[1, 2], [3, 4]])), "head")
assert(p.count == 9, "count")
assert(all(p.mask == [true, false]), "mask")
let a: f32[5] = load_npy("DIR/py_f32.npy")
assert(allclose(a, linspace(0.0, 1.0, 5)), "linspace")
let b: f64[1, 2] = load_npy("DIR/py_be.npy")
assert(all(b == f64([[1.5, -2.0]])), "big-endian")
let c: bool[2, 1] = load_npy("DIR/py_bool.npy")
assert(all(c == [[true], [false]]), "bool")
let d: i32[2] = load_npy("DIR/py_i32.npy")
assert(all(d == i32([-7, 7])), "i32")
let e: i64[4] = load_npy("DIR/py_v2.npy")
assert(all(e == arange(4)), "version 2")
let f: f32[2, 2] = load_npy("DIR/py_v3.npy")
assert(all(f == ones([2, 2])), "version 3")
print("ok")
"#;

#[test]
fn python_reads_what_mindscript_writes_and_back() {
    let Some(py) = python() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("ms-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    run_ms(&dir, MS_WRITES);
    run_python(&py, &dir, PY_READS);
    run_python(&py, &dir, PY_WRITES);
    assert_eq!(run_ms(&dir, MS_READS), "ok\n");
    let _ = std::fs::remove_dir_all(&dir);
}
