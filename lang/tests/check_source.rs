//! The checker on source text (parser + rules + walker): the programs of LANGUAGE.md
//! check clean, wrong programs give their codes, and spans stay inside the source.

mod common;

use lang::check::{Checker, ModuleId, ModuleLoader, check_source};
use lang::syntax::parse;

/// LANGUAGE.md §1.
const FIRST_LOOK: &str = r#"
// linear regression, eager by default
seed(0)
let x = randn([100, 3])
let w_true = [[2.0], [-1.0], [0.5]]
let y = x @ w_true + 0.1 * randn([100, 1])

fn loss(w: f32[3, 1]) -> f32 {
    mean((x @ w - y) ** 2)
}

let w = zeros([3, 1])
for step in 0..200 {
    w = w - 0.1 * grad(loss)(w)
}
print(w)          // ≈ [[2.0], [-1.0], [0.5]]
"#;

/// LANGUAGE.md §6's example.
const MATMUL_ERROR: &str = r#"
let x = randn([32, 784])
let w1 = randn([128, 784])
fn forward(x) {
    let h = x @ w1
    h
}
let out = forward(x)
"#;

fn assert_spans_inside(src: &str, diags: &[lang::Diagnostic]) {
    for d in diags {
        if d.file.is_some() {
            continue;
        }
        for l in std::iter::once(&d.primary).chain(&d.labels) {
            assert!(l.span.end <= src.len(), "{d:?}: span outside the source");
            assert!(src.is_char_boundary(l.span.start) && src.is_char_boundary(l.span.end));
        }
    }
}

/// Checks `src` and asserts it has no diagnostics and that the globals have the types.
fn check_ok(src: &str, expect: &[(&str, &str)]) {
    let (program, syntax) = parse(src);
    assert!(syntax.is_empty(), "syntax errors in {src}: {syntax:#?}");
    let mut c = Checker::new();
    let diags = c.check_program(src, &program);
    assert!(diags.is_empty(), "{src}\n{diags:#?}");
    common::assert_globals(&c, expect, &format!("{src}\n"));
}

/// Checks `src` and asserts the diagnostic codes, and that the first message contains
/// `needle`.
fn check_err(src: &str, codes: &[&str], needle: &str) {
    let (_, diags) = check_source(src);
    assert_spans_inside(src, &diags);
    let got: Vec<&str> = diags.iter().map(|d| d.code).collect();
    assert_eq!(got, codes, "{src}\n{diags:#?}");
    if let Some(d) = diags.first() {
        let text = format!("{} | {}", d.message, d.hints.join(" | "));
        assert!(text.contains(needle), "{src}: `{text}` lacks `{needle}`");
    }
}

#[test]
fn the_first_look_checks_clean() {
    check_ok(FIRST_LOOK, &[("w", "f32[3, 1]"), ("y", "f32[100, 1]")]);
}

#[test]
fn the_matmul_example_gives_its_error() {
    check_err(MATMUL_ERROR, &["E0301"], "f32[32, 784] @ f32[128, 784]");
}

#[test]
fn snippets_that_check() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "let t = (1.0, 2)\nlet (a, b) = t\nlet c = t.1",
            &[("a", "f32"), ("c", "i64")],
        ),
        (
            "let p = {w: zeros([2, 3]), b: zeros([3])}\nlet {w, b} = p\nlet q = p - 0.1 * p",
            &[("w", "f32[2, 3]")],
        ),
        (
            "let f = |x| x * 2\nlet y = f(zeros([4]))",
            &[("y", "f32[4]")],
        ),
        (
            "fn adam(lr = 1e-3, b1 = 0.9) { lr * b1 }\nlet o = adam(lr: 0.01)",
            &[],
        ),
        (
            "let x = zeros([5, 3])\nlet total = 0.0\nfor row in x {\n    total = total + sum(row)\n}",
            &[("total", "f32")],
        ),
        ("let n = 0\nwhile n < 10 {\n    n += 1\n}", &[("n", "i64")]),
        (
            "fn f(x: f32[n, d]) -> f32[d] { sum(x, axis: 0) }\nlet s = f(zeros([7, 2]))",
            &[("s", "f32[2]")],
        ),
        ("let x = zeros([3])\nlet y = x\n.sum()", &[("y", "f32")]),
        (
            "fn loss(w, x) { mean(w * x) }\nlet g = grad(loss, wrt: (0, 1))(ones([3]), ones([3]))",
            &[("g", "(f32[3], f32[3])")],
        ),
        (
            "fn loss(w: f32[3, 1]) -> f32 { sum(w) }\nlet h = hessian(loss)(zeros([3, 1]))",
            &[("h", "f32[3, 1, 3, 1]")],
        ),
        (
            "let c = true\nlet v = if c { zeros([2]) } else { ones([3]) }",
            &[("v", "f32[?]")],
        ),
        (
            "fn fib(n: i64) -> i64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }\nlet r = fib(10)",
            &[("r", "i64")],
        ),
        (
            "let opt = {init: |p| p, update: |s, p, g| (p - g, s)}\nlet s = opt.init(1.0)\nlet (p, s2) = opt.update(s, 1.0, 0.5)",
            &[("p", "f32")],
        ),
        (
            "type Lin = {w: f32[i, o], b: f32[o]}\nfn apply(l: Lin, x: f32[n, _]) -> f32[n, _] { x @ l.w + l.b }\nlet y = apply({w: zeros([3, 4]), b: zeros([4])}, zeros([8, 3]))",
            &[("y", "f32[8, ?]")],
        ),
        (
            "@jit\nfn step(x) { x * 2 }\nlet y = step(ones([2]))",
            &[("y", "f32[2]")],
        ),
        (
            "import nn\nlet l = nn.init_linear(3, 4)\nlet y = nn.linear(l, zeros([8, 3]))",
            &[("l", "{b: f32[4], w: f32[3, 4]}"), ("y", "f32[8, 4]")],
        ),
    ];
    for (src, expect) in cases {
        check_ok(src, expect);
    }
}

#[test]
fn snippets_with_errors() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "let x = zeros([3])\nlet m = mena(x)",
            &["E0101"],
            "did you mean `mean`?",
        ),
        (
            "fn f(a: f32[n], b: f32[n]) { a + b }\nf(zeros([32]), zeros([64]))",
            &["E0407"],
            "n is 32 from argument a but 64 from argument b",
        ),
        (
            "fn loss(w) { w * 2.0 }\nlet g = grad(loss)(zeros([3]))",
            &["E0701"],
            "sum",
        ),
        (
            "let w = zeros([3])\nw = w > 0.0",
            &["E0106"],
            "keeps the dtype",
        ),
        ("let k = 1.0\nlet f = |x| { k = x }", &["E0105"], "captured"),
        ("let x = zeros([3])\nif x { }", &["E0501"], "scalar bool"),
        ("let x = zeros([3])\nif x > 0.0 { }", &["E0501"], "all(...)"),
        (
            "fn f() -> f32 { zeros([3]) }",
            &["E0408"],
            "declared to return f32",
        ),
        ("let p = {w: 1.0}\np.ww", &["E0601"], "did you mean `w`?"),
        (
            "@jit(parallel: \"dat\")\nfn f(x) { x }",
            &["E0412"],
            "\"data\"",
        ),
        ("import \"u.ms\" as u", &["E0104"], "u.ms"),
        (
            "let x = undefined_one\nlet y = x + 1",
            &["E0101"],
            "unknown name",
        ),
    ];
    for (src, codes, needle) in cases {
        check_err(src, codes, needle);
    }
}

struct Files(Vec<(&'static str, &'static str)>);

/// Files by path from the root: an import resolves against the importing file's folder,
/// and `./` and `dir/..` steps are spellings of the same file.
impl ModuleLoader for Files {
    fn resolve(&mut self, from: Option<&ModuleId>, path: &str) -> Result<ModuleId, String> {
        let mut parts: Vec<&str> = from
            .map(|f| f.key().split('/').collect::<Vec<_>>())
            .unwrap_or_default();
        parts.pop();
        for part in path.split('/') {
            match part {
                "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        let key = parts.join("/");
        if self.0.iter().any(|(p, _)| *p == key) {
            Ok(ModuleId::new(key.as_str(), key.as_str()))
        } else {
            Err("file not found".to_string())
        }
    }

    fn read(&mut self, id: &ModuleId) -> Result<String, String> {
        self.0
            .iter()
            .find(|(p, _)| *p == &**id.key())
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| "file not found".to_string())
    }
}

#[test]
fn file_modules() {
    let files = Files(vec![
        ("util.ms", "let scale = 2.0\nfn double(x) { x * scale }\n"),
        ("bad.ms", "fn broken() { nope }\n"),
        ("cycle.ms", "import \"cycle.ms\" as again\n"),
    ]);
    let mut c = Checker::with_loader(Box::new(files));
    let src = "import \"util.ms\" as util\nlet y = util.double(zeros([3]))\nlet s = util.scale";
    let (p, _) = parse(src);
    let diags = c.check_program(src, &p);
    assert!(diags.is_empty(), "{diags:#?}");
    let g = c.globals();
    let y = g
        .iter()
        .find(|(n, _)| &**n == "y")
        .map(|(_, t)| t.to_string());
    assert_eq!(y.as_deref(), Some("f32[3]"));

    for (src, codes) in [
        (
            "import \"util.ms\" as util\nutil.tripple(1.0)",
            vec!["E0103"],
        ),
        ("import \"bad.ms\" as bad", vec!["E0104", "E0101"]),
        ("import \"cycle.ms\" as c", vec!["E0104", "E0104"]),
        ("import \"none.ms\" as n", vec!["E0104"]),
    ] {
        let (p, _) = parse(src);
        let diags = c.check_program(src, &p);
        let got: Vec<&str> = diags.iter().map(|d| d.code).collect();
        assert_eq!(got, codes, "{src}: {diags:#?}");
    }
}

/// The type of the top-level value `name`, as text.
fn global_ty(c: &Checker, name: &str) -> Option<String> {
    c.globals()
        .into_iter()
        .find(|(n, _)| &**n == name)
        .map(|(_, t)| t.to_string())
}

#[test]
fn file_imports_resolve_against_the_importing_file() {
    let files = Files(vec![
        ("a/util.ms", "let v = zeros([2])\n"),
        ("b/util.ms", "let v = zeros([5])\n"),
        ("a/m.ms", "import \"util.ms\" as u\nlet v = u.v\n"),
        ("b/m.ms", "import \"util.ms\" as u\nlet v = u.v\n"),
        ("a/x.ms", "import \"../b/y.ms\" as y\n"),
        ("b/y.ms", "import \"../a/x.ms\" as x\n"),
        ("main.ms", "import \"a/m.ms\" as m\n"),
    ]);
    let mut c = Checker::with_loader(Box::new(files));
    // The same string names a different file in each folder.
    let src = "import \"a/m.ms\" as am\nimport \"b/m.ms\" as bm\nlet x = am.v\nlet y = bm.v";
    let (p, _) = parse(src);
    let diags = c.check_program(src, &p);
    assert!(diags.is_empty(), "{diags:#?}");
    assert_eq!(global_ty(&c, "x").as_deref(), Some("f32[2]"));
    assert_eq!(global_ty(&c, "y").as_deref(), Some("f32[5]"));

    // Two spellings of one file are one module.
    let src = "import \"a/util.ms\" as p\nimport \"b/../a/./util.ms\" as q";
    let (p, _) = parse(src);
    let diags = c.check_program(src, &p);
    assert!(diags.is_empty(), "{diags:#?}");
    assert_eq!(global_ty(&c, "p"), global_ty(&c, "q"));
    assert_eq!(global_ty(&c, "p").as_deref(), Some("module a/util.ms"));

    // A cycle across folders is found by identity.
    let src = "import \"a/x.ms\" as x";
    let (p, _) = parse(src);
    let diags = c.check_program(src, &p);
    assert!(
        diags
            .iter()
            .any(|d| d.message == "`a/x.ms` imports itself" && d.file.as_deref() == Some("b/y.ms")),
        "{diags:#?}"
    );

    // A file checked as the entry joins the cycle check: a module importing it back is one.
    let files = Files(vec![
        ("main.ms", "import \"lib/m.ms\" as m\n"),
        ("lib/m.ms", "import \"../main.ms\" as back\n"),
    ]);
    let mut c = Checker::with_loader(Box::new(files));
    let src = "import \"lib/m.ms\" as m";
    let (p, _) = parse(src);
    let main = ModuleId::new("main.ms", "main.ms");
    let diags = c.check_program_in(src, &p, Some(&main));
    let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
    assert!(messages.contains(&"`main.ms` imports itself"), "{diags:#?}");
}

#[test]
fn repl_entries_accumulate() {
    let mut c = Checker::new();
    for (src, errors) in [
        ("let x = zeros([2, 3])", 0),
        ("fn f(a) { a @ x.T }", 0),
        ("let y = f(ones([4, 3]))", 0),
        ("let z = nope", 1),
        ("let w = y + 1.0", 0),
    ] {
        let (p, _) = parse(src);
        let diags = c.check_program(src, &p);
        assert_eq!(diags.len(), errors, "{src}: {diags:#?}");
    }
    let names: Vec<String> = c
        .globals()
        .into_iter()
        .map(|(n, t)| format!("{n}: {t}"))
        .collect();
    assert!(names.contains(&"y: f32[4, 2]".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("z:")), "{names:?}");
    let (e, _) = lang::syntax::parse_expr("f(x)");
    if let Some(e) = e {
        let (t, d) = c.type_of("f(x)", &e);
        assert!(d.is_empty());
        assert_eq!(t.to_string(), "f32[2, 2]");
    }
}

/// A long generated script: functions called many times, loops, records.
fn long_script(blocks: usize) -> String {
    let mut s =
        String::from("let x = randn([64, 32])\nlet p = {w: zeros([32, 8]), b: zeros([8])}\n");
    for i in 0..blocks {
        s.push_str(&format!(
            "fn f{i}(a, q) {{\n    let h = a @ q.w + q.b\n    mean(h ** 2)\n}}\n\
             let l{i} = f{i}(x, p)\n\
             let g{i} = grad(f{i}, wrt: 1)(x, p)\n\
             for k in 0..3 {{\n    p = p - 0.1 * g{i}\n}}\n\
             let c{i} = if l{i} > 0.0 {{ l{i} }} else {{ 0.0 }}\n"
        ));
    }
    s
}

#[test]
fn long_scripts_check_quickly() {
    let src = long_script(1000);
    assert!(src.lines().count() >= 10_000);
    let start = std::time::Instant::now();
    let (_, diags) = check_source(&src);
    let took = start.elapsed();
    assert!(diags.is_empty(), "{:#?}", diags.first());
    // Debug builds are far slower than the release target of 200 ms; this bound catches
    // a lost cache (quadratic or exponential checking), not small regressions.
    assert!(took.as_secs_f64() < 20.0, "checking took {took:?}");
}

#[test]
fn truncated_programs_do_not_panic() {
    let sources = [FIRST_LOOK, MATMUL_ERROR, &long_script(2)];
    for src in sources {
        for (i, _) in src.char_indices() {
            let part = &src[..i];
            let (_, diags) = check_source(part);
            assert_spans_inside(part, &diags);
        }
    }
}
