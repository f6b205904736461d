//! The checker's walker on hand-built programs: scopes, functions, control flow,
//! structures and differentiation. Values whose type the operator rules would compute are
//! given to the checker as top-level values instead (`set_global`), so these tests do not
//! depend on the rules.

#[path = "check/build.rs"]
mod build;
mod common;

use build::*;
use lang::ast::{ImportSource, Program, StmtKind};
use lang::check::{Checker, TensorTy, Ty};
use lang::{DType, Diagnostic, Dim, Shape};

fn f32s(dims: &[usize]) -> Ty {
    Ty::tensor(DType::F32, dims)
}

/// The top-level values every case starts with.
fn base_globals() -> Vec<(&'static str, Ty)> {
    vec![
        ("x", f32s(&[3, 1])),
        ("a", f32s(&[3])),
        ("b", f32s(&[4])),
        ("v", f32s(&[2])),
        ("m32", f32s(&[32, 3])),
        ("m64", f32s(&[64, 3])),
        ("flag", Ty::scalar(DType::Bool)),
        ("ints", Ty::tensor(DType::I64, &[3])),
        (
            "dyn",
            Ty::Tensor(TensorTy::new(
                DType::F32,
                Some(Shape(vec![Dim::unknown(), Dim::unknown()])),
            )),
        ),
        ("s", Ty::Str(None)),
    ]
}

fn run(prog: &Program) -> (Checker, Vec<Diagnostic>) {
    let mut c = Checker::new();
    for (n, t) in base_globals() {
        c.set_global(n, t);
    }
    let diags = c.check_program("", prog);
    (c, diags)
}

/// Checks `prog` and asserts it is clean and that each named global has the given type.
fn check_ok(case: &str, prog: Program, expect: &[(&str, &str)]) {
    let (c, diags) = run(&prog);
    assert!(
        diags.is_empty(),
        "{case}: unexpected diagnostics {diags:#?}"
    );
    common::assert_globals(&c, expect, &format!("{case}:"));
}

/// Checks `prog` and asserts the codes of its diagnostics, and that the first one's
/// message (and hints) contain `needle`.
fn check_err(case: &str, prog: Program, codes: &[&str], needle: &str) {
    let (_, diags) = run(&prog);
    let got: Vec<&str> = diags.iter().map(|d| d.code).collect();
    assert_eq!(got, codes, "{case}: {diags:#?}");
    if let Some(d) = diags.first() {
        let text = format!("{} | {}", d.message, d.hints.join(" | "));
        assert!(text.contains(needle), "{case}: `{text}` lacks `{needle}`");
        assert!(
            !d.message.ends_with('.'),
            "{case}: message ends with a period"
        );
    }
}

fn loss_fn() -> Stmt {
    // fn loss(w: f32[3, 1]) -> f32 { mean(w) }
    fn_(
        "loss",
        vec![param("w", Some(ty("f32", Some(&["3", "1"]))), None)],
        Some(ty("f32", None)),
        vec![expr(call_n("mean", vec![name("w")]))],
    )
}

fn id_fn() -> Stmt {
    fn_(
        "ident",
        vec![param("t", None, None)],
        None,
        vec![expr(name("t"))],
    )
}

use lang::ast::Stmt;

/// A case name, a program and the expected types of some of its globals.
type OkCase = (&'static str, Program, Vec<(&'static str, &'static str)>);

#[test]
fn programs_that_check() {
    let cases: Vec<OkCase> = vec![
        (
            "generic function takes the caller's types",
            program(vec![
                id_fn(),
                let_("y", call_n("ident", vec![name("x")])),
                let_("z", call_n("ident", vec![name("flag")])),
            ]),
            vec![("y", "f32[3, 1]"), ("z", "bool")],
        ),
        (
            "call before the declaration",
            program(vec![let_("y", call_n("ident", vec![name("a")])), id_fn()]),
            vec![("y", "f32[3]")],
        ),
        (
            "symbolic dims are substituted into the result",
            program(vec![
                fn_(
                    "first",
                    vec![
                        param("p", Some(ty("f32", Some(&["n", "d"]))), None),
                        param("q", Some(ty("f32", Some(&["d"]))), None),
                    ],
                    Some(ty("f32", Some(&["n"]))),
                    vec![expr(call(
                        name("sum"),
                        vec![pos(name("p")), kw("axis", int(1))],
                    ))],
                ),
                let_("y", call_n("first", vec![name("m32"), name("a")])),
            ]),
            vec![("y", "f32[32]")],
        ),
        (
            "unannotated result keeps the caller's sizes for symbols",
            program(vec![
                fn_(
                    "keep",
                    vec![param("p", Some(ty("f32", Some(&["n", "d"]))), None)],
                    None,
                    vec![expr(name("p"))],
                ),
                let_("y", call_n("keep", vec![name("m64")])),
            ]),
            vec![("y", "f32[64, 3]")],
        ),
        (
            "grad has the argument's type",
            program(vec![
                loss_fn(),
                let_(
                    "g",
                    call(call_n("grad", vec![name("loss")]), vec![pos(name("x"))]),
                ),
                let_(
                    "h",
                    call(call_n("hessian", vec![name("loss")]), vec![pos(name("x"))]),
                ),
                let_(
                    "vg",
                    call(
                        call_n("value_and_grad", vec![name("loss")]),
                        vec![pos(name("x"))],
                    ),
                ),
            ]),
            vec![
                ("g", "f32[3, 1]"),
                ("h", "f32[3, 1, 3, 1]"),
                ("vg", "(f32, f32[3, 1])"),
            ],
        ),
        (
            "grad with a tuple wrt gives a tuple",
            program(vec![
                fn_(
                    "l2",
                    vec![param("p", None, None), param("q", None, None)],
                    None,
                    vec![expr(call_n("sum", vec![name("p")]))],
                ),
                let_(
                    "g",
                    call(
                        call(
                            name("grad"),
                            vec![pos(name("l2")), kw("wrt", tuple(vec![int(0), int(1)]))],
                        ),
                        vec![pos(name("x")), pos(name("v"))],
                    ),
                ),
                let_(
                    "g1",
                    call(
                        call(name("grad"), vec![pos(name("l2")), kw("wrt", int(1))]),
                        vec![pos(name("x")), pos(name("v"))],
                    ),
                ),
            ]),
            vec![("g", "(f32[3, 1], f32[2])"), ("g1", "f32[2]")],
        ),
        (
            "grad composes",
            program(vec![
                fn_(
                    "sq",
                    vec![param("t", Some(ty("f32", None)), None)],
                    Some(ty("f32", None)),
                    vec![expr(name("t"))],
                ),
                let_(
                    "g2",
                    call(
                        call_n("grad", vec![call_n("grad", vec![name("sq")])]),
                        vec![pos(float(1.0))],
                    ),
                ),
            ]),
            vec![("g2", "f32")],
        ),
        (
            "vjp and jvp",
            program(vec![
                let_(
                    "yp",
                    call_n("vjp", vec![closure(&["t"], name("t")), name("a")]),
                ),
                let_("ct", call(tfield(name("yp"), 1), vec![pos(name("a"))])),
                let_(
                    "yt",
                    call_n(
                        "jvp",
                        vec![
                            closure(&["t"], name("t")),
                            tuple(vec![name("a")]),
                            tuple(vec![name("a")]),
                        ],
                    ),
                ),
            ]),
            vec![("ct", "f32[3]"), ("yt", "(f32[3], f32[3])")],
        ),
        (
            "closures and map over a record",
            program(vec![
                let_("p", record(&[("w", name("x")), ("b", name("a"))])),
                let_(
                    "q",
                    call_n("map", vec![closure(&["t"], name("t")), name("p")]),
                ),
                let_(
                    "r",
                    call_n(
                        "map2",
                        vec![closure(&["t", "u"], name("u")), name("p"), name("p")],
                    ),
                ),
            ]),
            vec![
                ("q", "{b: f32[3], w: f32[3, 1]}"),
                ("r", "{b: f32[3], w: f32[3, 1]}"),
            ],
        ),
        (
            "a closure captures values at creation",
            program(vec![
                let_("k", name("a")),
                let_("f", closure(&[], name("k"))),
                let_("k", name("flag")),
                let_("y", call_n("f", vec![])),
            ]),
            vec![("y", "f32[3]"), ("k", "bool")],
        ),
        (
            "a named function binds top-level values late",
            program(vec![
                fn_("getg", vec![], None, vec![expr(name("gg"))]),
                let_("gg", name("a")),
                let_("r1", call_n("getg", vec![])),
                let_("gg", name("x")),
                let_("r2", call_n("getg", vec![])),
            ]),
            vec![("r1", "f32[3]"), ("r2", "f32[3, 1]")],
        ),
        (
            "branches that differ in a dim join to ?",
            program(vec![
                let_(
                    "c",
                    if_(
                        name("flag"),
                        vec![expr(name("a"))],
                        Some(vec![expr(name("b"))]),
                    ),
                ),
                let_("mm", name("a")),
                expr(if_(name("flag"), vec![assign("mm", name("b"))], None)),
            ]),
            vec![("c", "f32[?]"), ("mm", "f32[?]")],
        ),
        (
            "rebinding keeps dtype and rank",
            program(vec![
                let_("mm", name("a")),
                assign("mm", name("b")),
                let_("n0", int(0)),
                assign("n0", int(5)),
            ]),
            vec![("mm", "f32[?]"), ("n0", "i64")],
        ),
        (
            "loops: range, tensor rows, loop-carried values",
            program(vec![
                let_("last", int(0)),
                expr(for_(
                    pat("i"),
                    range(int(0), int(10)),
                    vec![assign("last", name("i"))],
                )),
                let_("row", call_n("ident", vec![name("v")])),
                expr(for_(pat("r"), name("m32"), vec![assign("row", name("r"))])),
                let_("cnt", name("a")),
                expr(while_(
                    name("flag"),
                    vec![
                        assign("cnt", name("b")),
                        expr(e(lang::ast::ExprKind::Break)),
                    ],
                )),
                id_fn(),
            ]),
            vec![("last", "i64"), ("row", "f32[?]"), ("cnt", "f32[?]")],
        ),
        (
            "patterns",
            program(vec![
                let_pat(
                    ptuple(vec![pat("p1"), pat("_")]),
                    tuple(vec![name("a"), name("b")]),
                ),
                let_("p", record(&[("w", name("x")), ("b", name("a"))])),
                let_pat(precord(&["w", "b"]), name("p")),
            ]),
            vec![("p1", "f32[3]"), ("w", "f32[3, 1]")],
        ),
        (
            "a record field wins over method sugar",
            program(vec![
                let_("opt", record(&[("update", closure(&["t"], name("t")))])),
                let_("r", method(name("opt"), "update", vec![pos(name("a"))])),
                id_fn(),
                let_("r2", method(name("x"), "ident", vec![])),
            ]),
            vec![("r", "f32[3]"), ("r2", "f32[3, 1]")],
        ),
        (
            "recursion terminates",
            program(vec![
                fn_(
                    "rec",
                    vec![param("n", Some(ty("i64", None)), None)],
                    Some(ty("i64", None)),
                    vec![expr(call_n("rec", vec![name("n")]))],
                ),
                fn_(
                    "grec",
                    vec![param("n", None, None)],
                    None,
                    vec![expr(call_n("grec", vec![name("n")]))],
                ),
                let_("r", call_n("rec", vec![int(3)])),
                let_("r2", call_n("grec", vec![int(3)])),
            ]),
            vec![("r", "i64"), ("r2", "?")],
        ),
        (
            "defaults and named arguments",
            program(vec![
                fn_(
                    "adam",
                    vec![
                        param("lr", None, Some(float(0.001))),
                        param("b1", None, Some(float(0.9))),
                    ],
                    None,
                    vec![expr(tuple(vec![name("lr"), name("b1")]))],
                ),
                let_("o", call(name("adam"), vec![kw("b1", name("a"))])),
            ]),
            vec![("o", "(f32, f32[3])")],
        ),
        (
            "a let annotation fills unknown dims",
            program(vec![
                let_ty("u", ty("f32", Some(&["_", "64"])), name("dyn")),
                let_ty("sc", ty("f64", None), float(1.0)),
            ]),
            vec![("u", "f32[?, 64]"), ("sc", "f64")],
        ),
        (
            "return joins with the body",
            program(vec![
                fn_(
                    "early",
                    vec![param("t", None, None)],
                    None,
                    vec![
                        expr(if_(name("flag"), vec![expr(ret(Some(name("a"))))], None)),
                        expr(name("b")),
                    ],
                ),
                let_("r", call_n("early", vec![int(1)])),
            ]),
            vec![("r", "f32[?]")],
        ),
        (
            "jit attributes and jit()",
            program(vec![
                fn_attrs(
                    "step",
                    vec![param("t", None, None)],
                    None,
                    vec![expr(name("t"))],
                    vec![jit(vec![
                        kw("parallel", string("data")),
                        kw("devices", int(4)),
                    ])],
                ),
                let_(
                    "js",
                    call(call_n("jit", vec![name("step")]), vec![pos(name("a"))]),
                ),
            ]),
            vec![("js", "f32[3]")],
        ),
        (
            "import nn",
            program(vec![
                s(StmtKind::Import {
                    source: ImportSource::Module(id("nn")),
                    alias: None,
                }),
                let_(
                    "l",
                    call(
                        field(name("nn"), "init_linear"),
                        vec![pos(int(3)), pos(int(4))],
                    ),
                ),
            ]),
            vec![("nn", "module nn"), ("l", "{b: f32[4], w: f32[3, 4]}")],
        ),
    ];
    for (case, prog, expect) in cases {
        check_ok(case, prog, &expect);
    }
}

#[test]
fn programs_with_errors() {
    let cases: Vec<(&str, Program, Vec<&str>, &str)> = vec![
        (
            "unknown name",
            program(vec![expr(name("gard"))]),
            vec!["E0101"],
            "did you mean `grad`?",
        ),
        (
            "unknown module used",
            program(vec![expr(name("nn"))]),
            vec!["E0101"],
            "import nn",
        ),
        (
            "assign to an unknown variable",
            program(vec![assign("zz", int(1))]),
            vec!["E0102"],
            "let zz",
        ),
        (
            "unknown module",
            program(vec![s(StmtKind::Import {
                source: ImportSource::Module(id("nnn")),
                alias: None,
            })]),
            vec!["E0103"],
            "did you mean `nn`?",
        ),
        (
            "file import without a loader",
            program(vec![s(StmtKind::Import {
                source: ImportSource::File("u.ms".into(), sp()),
                alias: Some(id("u")),
            })]),
            vec!["E0104"],
            "u.ms",
        ),
        (
            "assign a captured variable",
            program(vec![
                let_("k", name("a")),
                let_(
                    "f",
                    closure(
                        &[],
                        e(lang::ast::ExprKind::Block(block(vec![assign(
                            "k",
                            name("a"),
                        )]))),
                    ),
                ),
            ]),
            vec!["E0105"],
            "captured",
        ),
        (
            "assign a top-level variable in a function",
            program(vec![fn_("f", vec![], None, vec![assign("a", name("a"))])]),
            vec!["E0105"],
            "top-level",
        ),
        (
            "rebinding changes the dtype",
            program(vec![let_("mm", name("a")), assign("mm", name("ints"))]),
            vec!["E0106"],
            "keeps the dtype",
        ),
        (
            "rebinding changes the rank",
            program(vec![let_("mm", name("a")), assign("mm", name("x"))]),
            vec!["E0106"],
            "keeps the rank",
        ),
        (
            "too many arguments",
            program(vec![id_fn(), expr(call_n("ident", vec![int(1), int(2)]))]),
            vec!["E0401"],
            "takes 1 argument",
        ),
        (
            "unknown named argument",
            program(vec![
                id_fn(),
                expr(call(name("ident"), vec![kw("tt", int(1))])),
            ]),
            vec!["E0402"],
            "did you mean `t`?",
        ),
        (
            "argument given twice",
            program(vec![
                id_fn(),
                expr(call(name("ident"), vec![pos(int(1)), kw("t", int(1))])),
            ]),
            vec!["E0403"],
            "given twice",
        ),
        (
            "missing argument",
            program(vec![id_fn(), expr(call_n("ident", vec![]))]),
            vec!["E0404"],
            "missing argument `t`",
        ),
        (
            "not callable",
            program(vec![expr(call_n("a", vec![]))]),
            vec!["E0405"],
            "not a function",
        ),
        (
            "argument does not fit",
            program(vec![
                fn_(
                    "h",
                    vec![param("p", Some(ty("f32", Some(&["3"]))), None)],
                    None,
                    vec![expr(name("p"))],
                ),
                expr(call_n("h", vec![name("x")])),
            ]),
            vec!["E0406"],
            "must be f32[3], found f32[3, 1]",
        ),
        (
            "symbolic dims disagree",
            program(vec![
                fn_(
                    "h2",
                    vec![
                        param("p", Some(ty("f32", Some(&["n", "d"]))), None),
                        param("q", Some(ty("f32", Some(&["n", "d"]))), None),
                    ],
                    None,
                    vec![expr(name("p"))],
                ),
                expr(call_n("h2", vec![name("m32"), name("m64")])),
            ]),
            vec!["E0407"],
            "n is 32 from argument p but 64 from argument q",
        ),
        (
            "return type mismatch",
            program(vec![fn_(
                "r",
                vec![param("p", Some(ty("f32", Some(&["3"]))), None)],
                Some(ty("f32", Some(&["4"]))),
                vec![expr(name("p"))],
            )]),
            vec!["E0408"],
            "declared to return f32[4]",
        ),
        (
            "let annotation",
            program(vec![let_ty("u", ty("f64", Some(&["3"])), name("a"))]),
            vec!["E0409"],
            "annotation says f64[3]",
        ),
        (
            "checking that never ends",
            program(vec![
                fn_(
                    "grow",
                    vec![param("t", None, None)],
                    None,
                    vec![expr(call_n(
                        "grow",
                        vec![tuple(vec![name("t"), name("t")])],
                    ))],
                ),
                expr(call_n("grow", vec![name("a")])),
            ]),
            vec!["E0410"],
            "annotate",
        ),
        (
            "unknown dtype",
            program(vec![let_ty("u", ty("f33", None), name("a"))]),
            vec!["E0411"],
            "did you mean `f32`?",
        ),
        (
            "bad jit argument",
            program(vec![fn_attrs(
                "st",
                vec![],
                None,
                vec![],
                vec![jit(vec![kw("parallel", string("dat"))])],
            )]),
            vec!["E0412"],
            "did you mean \"data\"?",
        ),
        (
            "condition not bool",
            program(vec![expr(if_(name("a"), vec![], None))]),
            vec!["E0501"],
            "scalar bool",
        ),
        (
            "branches disagree",
            program(vec![let_(
                "c",
                if_(
                    name("flag"),
                    vec![expr(name("a"))],
                    Some(vec![expr(name("ints"))]),
                ),
            )]),
            vec!["E0502"],
            "f32[3] and i64[3]",
        ),
        (
            "break outside a loop",
            program(vec![expr(e(lang::ast::ExprKind::Break))]),
            vec!["E0503"],
            "outside a loop",
        ),
        (
            "return outside a function",
            program(vec![expr(ret(None))]),
            vec!["E0504"],
            "outside a function",
        ),
        (
            "iterate over a scalar",
            program(vec![expr(for_(pat("q"), float(1.0), vec![]))]),
            vec!["E0505"],
            "cannot iterate",
        ),
        (
            "range of floats",
            program(vec![expr(for_(
                pat("q"),
                range(float(0.5), int(3)),
                vec![],
            ))]),
            vec!["E0506"],
            "integer scalars",
        ),
        (
            "missing field",
            program(vec![
                let_("p", record(&[("w", name("x"))])),
                expr(field(name("p"), "ww")),
            ]),
            vec!["E0601"],
            "did you mean `w`?",
        ),
        (
            "tensor property",
            program(vec![expr(field(name("a"), "foo"))]),
            vec!["E0602"],
            "no property `foo`",
        ),
        (
            "tuple index out of range",
            program(vec![expr(tfield(tuple(vec![name("a"), name("b")]), 2))]),
            vec!["E0603"],
            "has 2 elements",
        ),
        (
            "tuple index on a tensor",
            program(vec![expr(tfield(name("a"), 0))]),
            vec!["E0604"],
            "index it",
        ),
        (
            "tuple pattern",
            program(vec![let_pat(
                ptuple(vec![pat("p1"), pat("p2")]),
                tuple(vec![name("a"), name("b"), name("a")]),
            )]),
            vec!["E0605"],
            "has 3",
        ),
        (
            "record pattern",
            program(vec![
                let_("p", record(&[("w", name("x"))])),
                let_pat(precord(&["ww"]), name("p")),
            ]),
            vec!["E0606"],
            "did you mean `w`?",
        ),
        (
            "duplicate field",
            program(vec![expr(record(&[("w", name("x")), ("w", name("a"))]))]),
            vec!["E0607"],
            "given twice",
        ),
        (
            "map2 structures",
            program(vec![expr(call_n(
                "map2",
                vec![
                    closure(&["t", "u"], name("t")),
                    tuple(vec![name("a")]),
                    tuple(vec![name("a"), name("b")]),
                ],
            ))]),
            vec!["E0608"],
            "same structure",
        ),
        (
            "grad of a non-scalar",
            program(vec![expr(call(
                call_n("grad", vec![closure(&["t"], name("t"))]),
                vec![pos(name("a"))],
            ))]),
            vec!["E0701"],
            "`sum(...)` or `mean(...)`",
        ),
        (
            "wrt out of range",
            program(vec![
                loss_fn(),
                expr(call(
                    name("grad"),
                    vec![pos(name("loss")), kw("wrt", int(3))],
                )),
            ]),
            vec!["E0702"],
            "out of range",
        ),
        (
            "wrt an integer",
            program(vec![expr(call(
                call_n("grad", vec![closure(&["t"], float(1.0))]),
                vec![pos(name("ints"))],
            ))]),
            vec!["E0703"],
            "only floats",
        ),
        (
            "grad of a tensor",
            program(vec![expr(call_n("grad", vec![name("a")]))]),
            vec!["E0704"],
            "needs a function",
        ),
        (
            "pullback cotangent",
            program(vec![
                let_(
                    "yp",
                    call_n("vjp", vec![closure(&["t"], name("t")), name("a")]),
                ),
                expr(call(tfield(name("yp"), 1), vec![pos(name("b"))])),
            ]),
            vec!["E0705"],
            "f32[3]",
        ),
        (
            "jvp primals",
            program(vec![expr(call_n(
                "jvp",
                vec![closure(&["t"], name("t")), name("a"), name("a")],
            ))]),
            vec!["E0706"],
            "one-element tuple",
        ),
        (
            "uncalled function is checked",
            program(vec![fn_(
                "never",
                vec![param("p", Some(ty("f32", Some(&["3"]))), None)],
                None,
                vec![expr(name("undefined_thing"))],
            )]),
            vec!["E0101"],
            "unknown name",
        ),
    ];
    for (case, prog, codes, needle) in cases {
        check_err(case, prog, &codes, needle);
    }
}

#[test]
fn failed_entries_are_not_kept() {
    let mut c = Checker::new();
    let d = c.check_program("", &program(vec![let_("ok1", float(1.0))]));
    assert!(d.is_empty());
    let d = c.check_program(
        "",
        &program(vec![let_("bad", float(1.0)), expr(name("nope"))]),
    );
    assert_eq!(d.len(), 1);
    let names: Vec<String> = c
        .globals()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(names, vec!["ok1".to_string()]);
}

#[test]
fn every_walker_code_is_explained() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut codes = Vec::new();
    for file in ["walk.rs", "call.rs", "diff.rs", "annot.rs", "mod.rs"] {
        let text = std::fs::read_to_string(dir.join("src/check").join(file)).unwrap_or_default();
        for part in text.split('"').skip(1).step_by(2) {
            let is_code = part.len() == 5
                && part.starts_with('E')
                && part[1..].bytes().all(|b| b.is_ascii_digit());
            if is_code && !codes.contains(&part.to_string()) {
                codes.push(part.to_string());
            }
        }
    }
    assert!(codes.len() >= 30, "found only {codes:?}");
    for code in codes {
        let path = dir.join("explain").join(format!("{code}.md"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text.starts_with(&format!("# {code}: ")),
            "{code}: no explanation file"
        );
        for section in ["## Example", "## Fix", "```ms"] {
            assert!(text.contains(section), "{code}: no `{section}`");
        }
    }
}
