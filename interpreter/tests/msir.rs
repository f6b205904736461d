//! The MindScript model file (`.msir`, `docs/export.md`): `Session::export_mir` /
//! `ms export --mir` write it, `load_model` reads it back into a value called like the
//! function it came from.
//!
//! - Round trips: the samples' models (with their checkpoints baked in) and small
//!   functions with staged `if`/`while`/`for`, symbolic dims, captured globals, random
//!   draws, static scalars and structured results are exported, loaded and called; the
//!   result must equal the original function's staged call bit for bit (both are saved as
//!   safetensors and the files compared byte for byte).
//! - Hostile files: every prefix of a valid file, and a table of damaged ones (bad magic
//!   and version, lengths past the end, headers, IR text and parameters that lie), each
//!   an error E0912 at the `load_model` call, never a panic (which would be E0999).
//! - Calls that do not fit the file's signature are E0907 at the call.

use std::path::{Path, PathBuf};

use interpreter::{OnnxOptions, Options, Session};

mod support;

/// A fresh folder for a test's files.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ms-msir-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

fn session() -> Session {
    Session::with_options(Options {
        capture_output: true,
        ..Options::default()
    })
}

/// Runs `src`, failing the test on any diagnostic.
fn ok(s: &mut Session, src: &str, what: &str) {
    let o = s.eval(src);
    assert!(!o.has_errors(), "{what}: {:?}\n{src}", o.diagnostics);
}

/// Loads `model` in `s`, calls it on `call` and the original function `f` (staged, with
/// `jit`) on `orig`, each after `seed(11)`, and asserts that the two results are the same
/// bits (their safetensors files are byte for byte equal).
fn assert_same(s: &mut Session, dir: &Path, model: &Path, f: &str, call: &str, orig: &str) {
    let (got, want) = (dir.join("got.safetensors"), dir.join("want.safetensors"));
    ok(
        s,
        &format!(
            "let __m = load_model({model:?})\nseed(11)\nsave(__m({call}), {got:?})\n\
             seed(11)\nsave(jit({f})({orig}), {want:?})",
            model = model.display().to_string(),
            got = got.display().to_string(),
            want = want.display().to_string(),
        ),
        f,
    );
    let (a, b) = (
        std::fs::read(&got).expect("the model's result"),
        std::fs::read(&want).expect("the function's result"),
    );
    assert!(
        a == b,
        "{f}: the loaded model's result differs from the function's"
    );
}

/// A function of a small program, exported as a model and called again.
struct Case {
    name: &'static str,
    /// Defines `f` and its inputs.
    src: &'static str,
    /// `--args`, or `None` for the annotations or the last call.
    args: Option<&'static str>,
    /// The calls to compare, as argument lists (the model's and the function's are the
    /// same: no checkpoint).
    calls: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "symbolic_batch",
        src: "seed(1)\nfn f(x: f32[B, 5], y: f32[5]) { tanh(x * y + 1.0) - sigmoid(x) / 2.0 }\n\
              let a = randn([7, 5])\nlet b = randn([3, 5])\nlet y = randn([5])",
        args: None,
        calls: &["a, y", "b, y"],
    },
    Case {
        name: "staged_if",
        src: "seed(2)\nfn f(x) { if sum(x) > 0.0 { x * 2.0 } else { -x } }\n\
              let a = randn([4])\nlet b = -abs(a)",
        args: Some("f32[4]"),
        calls: &["a", "b"],
    },
    Case {
        name: "staged_while",
        src: "fn f(x) {\n  let y = abs(x) + 0.5\n  while sum(y) < 50.0 { y = y * 1.5 }\n  y\n}\n\
              seed(3)\nlet a = randn([3])",
        args: Some("f32[3]"),
        calls: &["a"],
    },
    Case {
        name: "staged_for",
        src: "fn f(x) {\n  let acc = x\n  for i in 0..5 { acc = acc * 0.5 + x }\n  acc\n}\n\
              seed(4)\nlet a = randn([2, 3])",
        args: Some("f32[N, 3]"),
        calls: &["a", "randn([6, 3])"],
    },
    Case {
        name: "captured_global_and_print",
        src: "seed(5)\nlet w = randn([4, 3])\n\
              fn f(x) { let h = x @ w\n print(\"h\", h)\n softmax(h) }\n\
              let a = randn([2, 4])",
        args: Some("f32[2, 4]"),
        calls: &["a"],
    },
    Case {
        name: "gather_slices_reductions",
        src: "seed(6)\nfn f(x: f32[6, 5], i: i64[3]) {\n  let g = x[i]\n  let s = x[1:5:2, ::-1]\n  \
              concat((max(g, axis: 0, keepdims: true), s), axis: 0) + f32(argmax(x, axis: 0))\n}\n\
              let a = randn([6, 5])\nlet i = [4, -1, 0]",
        args: None,
        calls: &["a, i"],
    },
    Case {
        name: "random_draws_follow_the_stream",
        src: "fn f(x) { x + randn([3]) * 0.1 + dropout(x, 0.5, training: true) }\n\
              let a = ones([4, 3])",
        args: Some("f32[4, 3]"),
        calls: &["a", "a * 2.0"],
    },
    Case {
        name: "tuple_and_record_results",
        src: "seed(8)\nfn f(x: f32[B, 2], p: {w: f32[2, 2], b: f32[2]}) {\n  \
              let h = x @ p.w + p.b\n  (h, {sum: sum(h), rows: (h[0], i64(argmax(h, axis: 1)))})\n}\n\
              let a = randn([3, 2])\nlet p = {w: randn([2, 2]), b: randn([2])}",
        args: None,
        calls: &["a, p"],
    },
    Case {
        name: "static_scalar_argument",
        src: "seed(9)\n@jit\nfn f(x, k) { relu(x) * f32(k) + twice(k) }\nfn twice(k) { f32(k * 2) }\n\
              let a = randn([3])\nlet r = f(a, 4)",
        args: None,
        calls: &["a, 4"],
    },
    Case {
        name: "f64_and_bool",
        src: "fn f(x: f64[n], m: bool[n]) { where(m, exp(x), x * 0.25) }\n\
              seed(10)\nlet a = f64(randn([5]))\nlet m = a > 0.0",
        args: None,
        calls: &["a, m"],
    },
];

/// Every case: exported, loaded and called, equal to the function bit for bit.
#[test]
fn functions_round_trip_bit_for_bit() {
    let root = fresh_dir("functions");
    for c in CASES {
        let dir = root.join(c.name);
        std::fs::create_dir_all(&dir).expect("a folder");
        let mut s = session();
        ok(&mut s, c.src, c.name);
        let model = s
            .export_mir(
                "f",
                &OnnxOptions {
                    args: c.args.map(str::to_string),
                    ..OnnxOptions::default()
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(&model.bytes[..4], b"MSIR");
        let path = dir.join("model.msir");
        std::fs::write(&path, &model.bytes).expect("written");
        for call in c.calls {
            assert_same(&mut s, &dir, &path, "f", call, call);
        }
        // A fresh session, which never saw the source, runs it too.
        let mut fresh = session();
        let o = fresh.eval(&format!(
            "let m = load_model({:?})\nm",
            path.display().to_string()
        ));
        assert!(!o.has_errors(), "{}: {:?}", c.name, o.diagnostics);
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// A sample's model: the script and its words, code run after it, the function
/// exported (its checkpoint `params` first), its `--args` and the input it is called on.
struct Sample<'a> {
    case: &'a str,
    sample: &'a str,
    script_args: &'a [&'a str],
    extra: &'a str,
    name: &'a str,
    args: &'a str,
    input: &'a str,
}

/// Runs a sample with a short configuration, saves its parameters, exports `name` with the
/// checkpoint baked in, and compares the loaded model on `input` with `name(params, input)`.
fn sample_case(root: &Path, c: &Sample<'_>) {
    let Sample {
        case,
        sample,
        script_args,
        extra,
        name,
        args,
        input,
    } = *c;
    let (mut s, dir) = support::run_sample(root, case, sample, script_args);
    let ckpt = dir.join("params.safetensors");
    ok(
        &mut s,
        &format!("save(params, {:?})\n{extra}", ckpt.display().to_string()),
        case,
    );
    let model = s
        .export_mir(
            name,
            &OnnxOptions {
                args: Some(args.into()),
                params: Some(ckpt),
                ..OnnxOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(model.summary.initializers > 0, "{case}: no parameters");
    let mpath = dir.join("model.msir");
    std::fs::write(&mpath, &model.bytes).expect("written");
    assert_same(
        &mut s,
        &dir,
        &mpath,
        name,
        input,
        &format!("params, {input}"),
    );
}

/// The samples' models (the MNIST MLP and CNN, the autoencoder, the transformer), each
/// with its trained parameters baked in, exported and run again, at another batch size
/// than they were staged at.
#[test]
fn sample_models_round_trip_bit_for_bit() {
    let root = fresh_dir("samples");
    let mnist = [
        "--images",
        "REPO/samples/data/mnist/train-images.idx3-ubyte.gz",
        "--labels",
        "REPO/samples/data/mnist/train-labels.idx1-ubyte.gz",
        "--test_images",
        "REPO/samples/data/mnist/t10k-images.idx3-ubyte.gz",
        "--test_labels",
        "REPO/samples/data/mnist/t10k-labels.idx1-ubyte.gz",
        "--epochs",
        "0",
        "--train",
        "64",
    ];
    sample_case(
        &root,
        &Sample {
            case: "mnist_mlp",
            sample: "mnist_mlp.ms",
            script_args: &mnist,
            extra: "fn forward(p, x) { nn.mlp(p, x) }",
            name: "forward",
            args: "f32[B, 784]",
            input: "x_test[0:5]",
        },
    );
    sample_case(
        &root,
        &Sample {
            case: "mnist_cnn",
            sample: "mnist_cnn.ms",
            script_args: &[&mnist[..], &["--test", "100"]].concat(),
            extra: "",
            name: "forward",
            args: "f32[B, 1, 28, 28]",
            input: "x_test[0:3]",
        },
    );
    sample_case(
        &root,
        &Sample {
            case: "autoencoder",
            sample: "autoencoder.ms",
            script_args: &["--epochs", "1", "--data", "REPO/samples/data/digits.csv"],
            extra: "fn reconstruct(p, x) { decode(p, encode(p, x)) }",
            name: "reconstruct",
            args: "f32[B, 64]",
            input: "xte[0:6]",
        },
    );
    sample_case(
        &root,
        &Sample {
            case: "transformer",
            sample: "transformer.ms",
            script_args: &[
                "--steps",
                "2",
                "--generate",
                "0",
                "--context",
                "16",
                "--d_model",
                "32",
                "--data",
                "REPO/samples/data/tiny_text.txt",
            ],
            extra: "",
            name: "forward",
            args: "i64[3, 16]",
            input: "ids[expand_dims(arange(3) * 16, 1) + arange(16)]",
        },
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// The small valid model the hostile cases start from: `f(x: f32[B, 3]) = x * w + 1`,
/// `w` a parameter.
fn valid_model(dir: &Path) -> Vec<u8> {
    let mut s = session();
    ok(
        &mut s,
        "let w = [1.0, 2.0, 3.0]\nfn f(x: f32[B, 3]) { x * w + 1.0 }",
        "valid",
    );
    let m = s
        .export_mir("f", &OnnxOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("valid.msir");
    std::fs::write(&path, &m.bytes).expect("written");
    m.bytes
}

/// The sections of a valid file: the header, the IR text and the parameters.
fn sections(bytes: &[u8]) -> (String, String, Vec<u8>) {
    let mut at = 12;
    let mut next = || {
        let n = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes")) as usize;
        let piece = bytes[at + 8..at + 8 + n].to_vec();
        at += 8 + n;
        piece
    };
    let header = String::from_utf8(next()).expect("a UTF-8 header");
    let ir = String::from_utf8(next()).expect("UTF-8 IR");
    (header, ir, next())
}

/// A file of the given sections, with version 1.0.
fn container(header: &str, ir: &str, params: &[u8]) -> Vec<u8> {
    let mut out = b"MSIR".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for s in [header.as_bytes(), ir.as_bytes(), params] {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s);
    }
    out
}

/// A safetensors file written by hand: the header JSON as given, then `data`.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32_bytes(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Loads `bytes` as a model file in a fresh session: the diagnostic it gives, or `None`.
fn load_error(dir: &Path, bytes: &[u8]) -> Option<lang::Diagnostic> {
    let path = dir.join("hostile.msir");
    std::fs::write(&path, bytes).expect("written");
    let mut s = session();
    let src = format!("let m = load_model({:?})", path.display().to_string());
    let o = s.eval(&src);
    let d = o.diagnostics.into_iter().next()?;
    // The error points at the call.
    assert_eq!(
        &src[d.primary.span.range()],
        format!("load_model({:?})", path.display().to_string()),
        "{d:?}"
    );
    Some(d)
}

/// Every prefix of a valid file is refused as E0912, and so is the file with a byte
/// after it.
#[test]
fn truncated_files_are_errors_at_every_offset() {
    let dir = fresh_dir("prefixes");
    let bytes = valid_model(&dir);
    assert!(load_error(&dir, &bytes).is_none(), "the valid file loads");
    for n in 0..bytes.len() {
        let d = load_error(&dir, &bytes[..n])
            .unwrap_or_else(|| panic!("a file cut to {n} bytes loaded"));
        assert_eq!(d.code, "E0912", "cut to {n}: {d:?}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let d = load_error(&dir, &longer).expect("a trailing byte is refused");
    assert!(d.message.contains("1 bytes after the parameters"), "{d:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Damaged files, each refused with E0912 and a message that says what is wrong.
#[test]
fn hostile_files_are_errors_not_panics() {
    let dir = fresh_dir("hostile");
    let bytes = valid_model(&dir);
    let (header, ir, _) = sections(&bytes);
    let len_at = |k: usize| -> usize {
        // The offset of section k's length (0: header, 1: IR, 2: parameters).
        let mut at = 12;
        for _ in 0..k {
            let n = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
            at += 8 + n as usize;
        }
        at
    };
    let with_len = |k: usize, n: u64| {
        let mut b = bytes.clone();
        let at = len_at(k);
        b[at..at + 8].copy_from_slice(&n.to_le_bytes());
        b
    };
    let w_ok = f32_bytes(&[1.0, 2.0, 3.0]);
    let w_name = header
        .split("[\"param\",\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the header names the parameter")
        .to_string();
    let st_one = |name: &str, dtype: &str, shape: &str, data: &[u8]| {
        safetensors(
            &format!(
                "{{\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[0,{}]}}}}",
                data.len()
            ),
            data,
        )
    };
    let good_params = st_one(&w_name, "F32", "[3]", &w_ok);
    assert!(
        load_error(&dir, &container(&header, &ir, &good_params)).is_none(),
        "the rebuilt file loads"
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bad magic",
            [b"MSIX", &bytes[4..]].concat(),
            "not a MindScript model file",
        ),
        (
            "not a model at all",
            b"\x89PNG\r\n\x1a\n....".to_vec(),
            "not a MindScript model file",
        ),
        (
            "a future version",
            [&bytes[..4], &999u32.to_le_bytes(), &bytes[8..]].concat(),
            "version 999.0",
        ),
        (
            "header length past the end",
            with_len(0, u64::MAX),
            "inside the header",
        ),
        (
            "IR length past the end",
            with_len(1, 1 << 62),
            "inside the IR text",
        ),
        (
            "parameters' length past the end",
            with_len(2, (bytes.len() as u64) * 2),
            "inside the parameters",
        ),
        (
            "header not JSON",
            container("{\"function\": ", &ir, &good_params),
            "not JSON",
        ),
        (
            "header without inputs",
            container(
                "{\"function\":\"f\",\"args\":[],\"result\":{\"unit\":null}}",
                &ir,
                &good_params,
            ),
            "`inputs` is missing",
        ),
        (
            "header with a role of another name",
            container(
                &header.replace("[\"key\"]", "[\"seed\"]"),
                &ir,
                &good_params,
            ),
            "input 1 is",
        ),
        (
            "a static scalar of a float dtype",
            container(
                &header.replacen(
                    "\"tensor\":\"f32\",\"weak\":false",
                    "\"static\":\"f32\",\"value\":1",
                    1,
                ),
                &ir,
                &good_params,
            ),
            "integer or a bool",
        ),
        (
            "IR text garbage",
            container(&header, "graph @f(%0 f32) -> {", &good_params),
            "not valid IR",
        ),
        (
            "IR text not UTF-8",
            raw_with_ir(&header, &[0xff, 0xfe, b'g'], &good_params),
            "not UTF-8",
        ),
        (
            "IR that parses but does not verify",
            container(
                &header,
                &ir.replacen("f32[B, 3] = mul", "f32[B, 4] = mul", 1),
                &good_params,
            ),
            "does not verify",
        ),
        (
            "IR nested too deep",
            container(&header, &"{".repeat(100_000), &good_params),
            "deeper than 256",
        ),
        (
            "fewer roles than inputs",
            container(
                &header.replace(&format!(",[\"param\",\"{w_name}\"]"), ""),
                &ir,
                &good_params,
            ),
            "lists 3 inputs, the graph has 4",
        ),
        (
            "the key's role on a tensor input",
            container(
                &header.replace("[\"input\",\"x\"]", "[\"key\"]"),
                &ir,
                &good_params,
            ),
            "not i64[2]",
        ),
        (
            "a result of another structure",
            container(
                &header.replace(
                    "\"result\":{\"tensor\":\"f32\",\"weak\":false}",
                    "\"result\":{\"tuple\":[{\"tensor\":\"f32\"},{\"tensor\":\"f32\"}]}",
                ),
                &ir,
                &good_params,
            ),
            "the result has 2 tensors, the graph gives 1",
        ),
        (
            "a parameter of the wrong shape",
            container(
                &header,
                &ir,
                &st_one(&w_name, "F32", "[4]", &f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
            ),
            "is f32[4], but the graph takes f32[3]",
        ),
        (
            "a parameter of the wrong dtype",
            container(&header, &ir, &st_one(&w_name, "I32", "[3]", &w_ok)),
            "is i32[3], but the graph takes f32[3]",
        ),
        (
            "a parameter missing",
            container(&header, &ir, &safetensors("{}", &[])),
            "is missing",
        ),
        (
            "an extra parameter",
            container(
                &header,
                &ir,
                &safetensors(
                    &format!(
                        "{{\"{w_name}\":{{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}},\
                         \"extra\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}}}"
                    ),
                    &f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
                ),
            ),
            "`extra` is not a parameter",
        ),
        (
            "a parameter named twice",
            container(
                &header,
                &ir,
                &safetensors(
                    &format!(
                        "{{\"{w_name}\":{{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}},\
                         \"{w_name}\":{{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}}}"
                    ),
                    &f32_bytes(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]),
                ),
            ),
            "appears twice",
        ),
        (
            "a parameter of a dtype MindScript lacks",
            container(&header, &ir, &st_one(&w_name, "F8_E4M3", "[12]", &w_ok)),
            "not one MindScript reads",
        ),
        (
            "a parameter whose size overflows",
            container(
                &header,
                &ir,
                &st_one(&w_name, "F32", "[4611686018427387904, 8]", &w_ok),
            ),
            "more bytes than memory can address",
        ),
        (
            "the parameters' header length past their end",
            container(&header, &ir, &[0xff; 16]),
            "header length",
        ),
        (
            "a role listing one parameter twice",
            container(
                &header.replace(
                    &format!("[\"param\",\"{w_name}\"]"),
                    &format!("[\"param\",\"{w_name}\"],[\"param\",\"{w_name}\"]"),
                ),
                &ir.replacen(") -> (", ", %dup: f32[3]) -> (", 1),
                &good_params,
            ),
            "is listed twice",
        ),
        (
            "a size no argument binds",
            container(
                &header,
                &before_last_yield(
                    &ir,
                    "%extra: f32[C] = full {shape: [C], dtype: f32, value: 1.0}",
                ),
                &good_params,
            ),
            "the dim `C`, which no argument carries",
        ),
        (
            "a collective",
            container(
                &header,
                &before_last_yield(
                    &ir,
                    "%extra: f32[3] = all_reduce %3 {op: sum, mesh_axis: 0}",
                ),
                &good_params,
            ),
            "only a mesh of devices runs",
        ),
    ];
    assert!(cases.len() >= 15);
    for (what, file, expect) in &cases {
        let d = load_error(&dir, file).unwrap_or_else(|| panic!("{what}: the file loaded"));
        assert_eq!(d.code, "E0912", "{what}: {d:?}");
        assert!(
            d.message.contains(expect),
            "{what}: expected `{expect}` in: {}",
            d.message
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ir` with `line` added to the graph's body, just before its `yield`.
fn before_last_yield(ir: &str, line: &str) -> String {
    let at = ir.rfind("  yield").expect("a yield");
    format!("{}  {line}\n{}", &ir[..at], &ir[at..])
}

/// A file whose IR section holds `ir`'s bytes as they are (not necessarily UTF-8).
fn raw_with_ir(header: &str, ir: &[u8], params: &[u8]) -> Vec<u8> {
    let mut out = b"MSIR".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for s in [header.as_bytes(), ir, params] {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s);
    }
    out
}

/// Calls that do not fit the file's signature: each an error at the call or its
/// argument, with the code given, and nothing run.
#[test]
fn calls_are_checked_against_the_signature() {
    let dir = fresh_dir("calls");
    let mut s = session();
    ok(
        &mut s,
        "let w = [1.0, 2.0, 3.0]\nfn f(x: f32[B, 3], y: f32[B]) { x * w + expand_dims(y, 1) }\n\
         @jit\nfn g(x, k) { x * f32(k) }\nlet a = ones([2])\nlet r = g(a, 3)",
        "setup",
    );
    for (name, file) in [("f", "f.msir"), ("g", "g.msir")] {
        let m = s
            .export_mir(name, &OnnxOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join(file), &m.bytes).expect("written");
    }
    let load = format!(
        "let mf = load_model({:?})\nlet mg = load_model({:?})",
        dir.join("f.msir").display().to_string(),
        dir.join("g.msir").display().to_string()
    );
    ok(&mut s, &load, "load");
    ok(
        &mut s,
        "let z = mf(ones([4, 3]), zeros([4]))\nassert(allclose(z, ones([4, 3]) * w))",
        "a fitting call",
    );
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "mf(ones([4, 3]))",
            "E0907",
            "takes 2 arguments (x, y), found 1",
            "mf(ones([4, 3]))",
        ),
        (
            "mf(f64(ones([4, 3])), zeros([4]))",
            "E0907",
            "`x` must be a f32 tensor",
            "f64(ones([4, 3]))",
        ),
        (
            "mf(ones([4, 2]), zeros([4]))",
            "E0907",
            "axis 1 has size 2, not 3",
            "mf(ones([4, 2]), zeros([4]))",
        ),
        (
            "mf(ones([4, 3]), zeros([5]))",
            "E0907",
            "`B` is 4 in `x` and 5 here",
            "mf(ones([4, 3]), zeros([5]))",
        ),
        (
            "mf(ones([3]), zeros([3]))",
            "E0907",
            "it has 1 axes, not 2",
            "mf(ones([3]), zeros([3]))",
        ),
        (
            "mf((ones([4, 3]),), zeros([4]))",
            "E0907",
            "`x` must be a f32 tensor, found a tuple",
            "(ones([4, 3]),)",
        ),
        (
            "mf(x: ones([4, 3]), y: zeros([4]))",
            "E0907",
            "by position",
            "ones([4, 3])",
        ),
        ("mg(a, 4)", "E0907", "must be 3 here, found 4", "4"),
        ("mg(a, 3.0)", "E0907", "`k` must be a i64 scalar", "3.0"),
        (
            "@jit\nfn h(x) { mf(x, zeros([4])) }\nh(ones([4, 3]))",
            "E0913",
            "has symbolic dims, so it cannot be inlined",
            "mf(x, zeros([4]))",
        ),
        (
            "grad(|x| sum(mf(x, zeros([4]))))(ones([4, 3]))",
            "E0909",
            "cannot be differentiated",
            "mf(x, zeros([4]))",
        ),
    ];
    for (src, code, message, at) in cases {
        let o = s.eval(src);
        let d = o
            .diagnostics
            .first()
            .unwrap_or_else(|| panic!("{src}: no error"));
        assert_eq!(d.code, *code, "{src}: {d:?}");
        assert!(d.message.contains(message), "{src}: {}", d.message);
        assert_eq!(&src[d.primary.span.range()], *at, "{src}: {d:?}");
    }
    // A literal passes for an f32 tensor (it is stored wide and cast to the graph's dtype).
    ok(
        &mut s,
        "let z = mf([[1.0, 1.0, 1.0]], [0.0])\nassert(allclose(z, [w]))",
        "a literal",
    );
    let o = s.eval("mf");
    assert!(
        o.values
            .first()
            .is_some_and(|v| interpreter::value::display(v).starts_with("<model f from ")),
        "{:?}",
        o.values
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Graphs that are valid IR but fail when they run (a size no input binds, an allocation
/// past the device's cap, a failed assertion): the call is an error at the call, never a
/// panic (E0999) and never a crash.
#[test]
fn valid_graphs_that_fail_at_run_time_are_errors_at_the_call() {
    let dir = fresh_dir("run_time");
    let header = |result: &str| {
        format!(
            "{{\"function\":\"h\",\"inputs\":[[\"token\"],[\"key\"],[\"input\",\"x\"]],\
             \"args\":[[\"x\",{{\"tensor\":\"f32\"}}]],\"result\":{result}}}"
        )
    };
    let t = "{\"tensor\":\"f32\"}";
    let cases: &[(&str, String, &str)] = &[
        (
            "an allocation past the device's cap",
            "graph @h(%0: token, %1: i64[2], %2: f32[B]) -> (token, f32[1000000, 1000000, 1000], i64[2]) {\n  \
             %3: f32[1000000, 1000000, 1000] = full {shape: [1000000, 1000000, 1000], dtype: f32, value: 1.0}\n  \
             yield %0, %3, %1\n}\n"
                .into(),
            "",
        ),
        (
            "a failed assertion",
            "graph @h(%0: token, %1: i64[2], %2: f32[B]) -> (token, f32[B], i64[2]) {\n  \
             %3: f32[] = sum %2 {axes: [0], keepdims: false}\n  \
             %4: f32[] = full {shape: [], dtype: f32, value: 100.0}\n  \
             %5: bool[] = gt %3, %4\n  \
             %6: token = assert %0, %5 {message: \"too small\"}\n  yield %6, %2, %1\n}\n"
                .into(),
            "too small",
        ),
    ];
    for (what, ir, expect) in cases {
        let file = container(&header(t), ir, &safetensors("{}", &[]));
        let path = dir.join("m.msir");
        std::fs::write(&path, &file).expect("written");
        let mut s = session();
        let src = format!(
            "let m = load_model({:?})\nm(ones([3]))",
            path.display().to_string()
        );
        let o = s.eval(&src);
        let d = o
            .diagnostics
            .first()
            .unwrap_or_else(|| panic!("{what}: it ran: {:?}", o.values));
        assert_ne!(d.code, "E0912", "{what}: the file should load: {d:?}");
        assert_ne!(d.code, "E0999", "{what}: {d:?}");
        assert_eq!(
            &src[d.primary.span.range()],
            "m(ones([3]))",
            "{what}: {d:?}"
        );
        assert!(d.message.contains(expect), "{what}: {}", d.message);
        assert!(
            d.notes.iter().any(|n| n.contains("in the model `h`")),
            "{what}: {d:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
