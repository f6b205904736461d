//! Parser tests: tables of `source => expected S-expression` cases, error cases with
//! their codes and spans, the LANGUAGE.md programs, and robustness on hostile input.

use lang::Diagnostic;
use lang::syntax::{is_incomplete, parse, parse_expr, sexpr, sexpr_expr};

/// Parses `src`, asserts that it has no errors and prints as `expect`.
fn check(src: &str, expect: &str) {
    let (program, diags) = parse(src);
    assert!(
        diags.is_empty(),
        "unexpected errors for {src:?}: {diags:#?}"
    );
    assert_eq!(sexpr(&program), expect, "source: {src:?}");
}

fn check_table(cases: &[(&str, &str)]) {
    for (src, expect) in cases {
        check(src, expect);
    }
}

#[test]
fn literals_and_names() {
    check_table(&[
        ("3", "(int 3)"),
        ("3.0", "(float 3.0)"),
        ("1e-3", "(float 0.001)"),
        ("2.5E+2", "(float 250.0)"),
        ("1_000", "(int 1000)"),
        ("1_000.5", "(float 1000.5)"),
        ("true; false", "(bool true)\n(bool false)"),
        (r#""a\n\t\"\\b""#, r#"(str "a\n\t\"\\b")"#),
        ("\"größe €\"", "(str \"größe €\")"),
        ("x_1", "(name x_1)"),
        ("_", "(name _)"),
        ("9223372036854775807", "(int 9223372036854775807)"),
    ]);
}

#[test]
fn precedence() {
    check_table(&[
        (
            "a || b && c",
            "(binary || (name a) (binary && (name b) (name c)))",
        ),
        (
            "a && b == c",
            "(binary && (name a) (binary == (name b) (name c)))",
        ),
        (
            "a < b + c",
            "(binary < (name a) (binary + (name b) (name c)))",
        ),
        (
            "a == b..c",
            "(binary == (name a) (range (name b) (name c)))",
        ),
        ("0..n + 1", "(range (int 0) (binary + (name n) (int 1)))"),
        (
            "a + b * c",
            "(binary + (name a) (binary * (name b) (name c)))",
        ),
        (
            "a - b - c",
            "(binary - (binary - (name a) (name b)) (name c))",
        ),
        (
            "a * b / c % d",
            "(binary % (binary / (binary * (name a) (name b)) (name c)) (name d))",
        ),
        (
            "x @ w + b",
            "(binary + (binary @ (name x) (name w)) (name b))",
        ),
        ("-x ** 2", "(unary - (binary ** (name x) (int 2)))"),
        ("x ** -1", "(binary ** (name x) (unary - (int 1)))"),
        (
            "a ** b ** c",
            "(binary ** (name a) (binary ** (name b) (name c)))",
        ),
        ("-a * b", "(binary * (unary - (name a)) (name b))"),
        ("!a && b", "(binary && (unary ! (name a)) (name b))"),
        ("- -x", "(unary - (unary - (name x)))"),
        ("-x.T", "(unary - (field (name x) T))"),
        ("a != b", "(binary != (name a) (name b))"),
        (
            "a <= b || a >= c || a > d",
            "(binary || (binary || (binary <= (name a) (name b)) (binary >= (name a) (name c))) (binary > (name a) (name d)))",
        ),
        (
            "(a < b) < c",
            "(binary < (binary < (name a) (name b)) (name c))",
        ),
        (
            "(a + b) * c",
            "(binary * (binary + (name a) (name b)) (name c))",
        ),
        (
            "2 * x ** 2 ** -y",
            "(binary * (int 2) (binary ** (name x) (binary ** (int 2) (unary - (name y)))))",
        ),
    ]);
}

#[test]
fn postfix() {
    check_table(&[
        (
            "f(a, b, key: v)",
            "(call (name f) (name a) (name b) (key: (name v)))",
        ),
        ("f()", "(call (name f))"),
        ("f(a,)", "(call (name f) (name a))"),
        (
            "grad(loss)(w)",
            "(call (call (name grad) (name loss)) (name w))",
        ),
        ("p.w", "(field (name p) w)"),
        ("x.T", "(field (name x) T)"),
        ("t.0", "(tfield (name t) 0)"),
        ("t.0.1", "(tfield (tfield (name t) 0) 1)"),
        ("t.1.0.2", "(tfield (tfield (tfield (name t) 1) 0) 2)"),
        ("f(x).0", "(tfield (call (name f) (name x)) 0)"),
        ("x.sum(axis: 1)", "(method (name x) sum (axis: (int 1)))"),
        ("x.sum()", "(method (name x) sum)"),
        (
            "nn.linear(3, 4).w",
            "(field (method (name nn) linear (int 3) (int 4)) w)",
        ),
        ("x[i]", "(index (name x) (name i))"),
        (
            "x[i, 1:3, :, -1, ...]",
            "(index (name x) (name i) (slice (int 1) (int 3) _) (slice _ _ _) (unary - (int 1)) ...)",
        ),
        (
            "x[a:b:s]",
            "(index (name x) (slice (name a) (name b) (name s)))",
        ),
        ("x[::2]", "(index (name x) (slice _ _ (int 2)))"),
        ("x[a:]", "(index (name x) (slice (name a) _ _))"),
        ("x[:b]", "(index (name x) (slice _ (name b) _))"),
        ("x[..., 0]", "(index (name x) ... (int 0))"),
        ("x[0][1]", "(index (index (name x) (int 0)) (int 1))"),
        ("x[idx]", "(index (name x) (name idx))"),
        ("1.0.sum()", "(method (float 1.0) sum)"),
        ("(1, 2).0", "(tfield (tuple (int 1) (int 2)) 0)"),
        ("x.shape.0", "(tfield (field (name x) shape) 0)"),
    ]);
}

#[test]
fn compound_expressions() {
    check_table(&[
        ("()", "(tuple)"),
        ("(a)", "(name a)"),
        ("(a,)", "(tuple (name a))"),
        ("(a, b)", "(tuple (name a) (name b))"),
        ("(a, b,)", "(tuple (name a) (name b))"),
        ("[a, b]", "(list (name a) (name b))"),
        ("[]", "(list)"),
        (
            "[[1, 2], [3, 4]]",
            "(list (list (int 1) (int 2)) (list (int 3) (int 4)))",
        ),
        ("{w: e, b: 1}", "(record (w (name e)) (b (int 1)))"),
        ("{w: e,}", "(record (w (name e)))"),
        ("{}", "(block)"),
        ("{ 1 }", "(block (int 1))"),
        (
            "{ let z = x * y; z + 1 }",
            "(block (let z (binary * (name x) (name y))) (binary + (name z) (int 1)))",
        ),
        ("|x| x + 1", "(closure (x) (binary + (name x) (int 1)))"),
        (
            "|x, y: f32| { x }",
            "(closure (x (y f32)) (block (name x)))",
        ),
        ("|| 1", "(closure () (int 1))"),
        (
            "|x| |y| x * y",
            "(closure (x) (closure (y) (binary * (name x) (name y))))",
        ),
        (
            "map(|x| x * 2, t)",
            "(call (name map) (closure (x) (binary * (name x) (int 2))) (name t))",
        ),
        (
            "if c { a } else { b }",
            "(if (name c) (block (name a)) (block (name b)))",
        ),
        ("if c { a }", "(if (name c) (block (name a)))"),
        (
            "if c { } else if d { } else { }",
            "(if (name c) (block) (if (name d) (block) (block)))",
        ),
        (
            "let y = if c { 1 } else { 2 }",
            "(let y (if (name c) (block (int 1)) (block (int 2))))",
        ),
        (
            "for i in 0..n { }",
            "(for i (range (int 0) (name n)) (block))",
        ),
        (
            "for (xb, yb) in batches((x, y), 64) { }",
            "(for (ptuple xb yb) (call (name batches) (tuple (name x) (name y)) (int 64)) (block))",
        ),
        (
            "for row in x { print(row) }",
            "(for row (name x) (block (call (name print) (name row))))",
        ),
        ("while c { break }", "(while (name c) (block break))"),
        (
            "while true { continue }",
            "(while (bool true) (block continue))",
        ),
        ("fn f() { return }", "(fn f () (block (return)))"),
        (
            "fn f() { return x + 1 }",
            "(fn f () (block (return (binary + (name x) (int 1)))))",
        ),
        ("a..b", "(range (name a) (name b))"),
    ]);
}

#[test]
fn statements() {
    check_table(&[
        ("let x = 1", "(let x (int 1))"),
        ("let x: f32[3] = e", "(let x : f32[3] (name e))"),
        ("let (a, b) = t", "(let (ptuple a b) (name t))"),
        (
            "let (a, (b, _)) = t",
            "(let (ptuple a (ptuple b _)) (name t))",
        ),
        ("let (a,) = t", "(let (ptuple a) (name t))"),
        ("let _ = f()", "(let _ (call (name f)))"),
        ("let {w, b} = p", "(let (precord w b) (name p))"),
        ("let {w: w0, b} = p", "(let (precord (w: w0) b) (name p))"),
        ("let {\n  w,\n  b\n} = p", "(let (precord w b) (name p))"),
        ("x = e", "(assign= x (name e))"),
        ("x += e", "(assign+= x (name e))"),
        ("x -= e", "(assign-= x (name e))"),
        ("x *= e", "(assign*= x (name e))"),
        ("x /= e", "(assign/= x (name e))"),
        (
            "fn name(a: T, b, lr = 1e-3) -> R { body }",
            "(fn name ((a T) b (lr = (float 0.001))) -> R (block (name body)))",
        ),
        (
            "fn f(x) { fn g(y) { y }; g(x) }",
            "(fn f (x) (block (fn g (y) (block (name y))) (call (name g) (name x))))",
        ),
        (
            "@jit fn step(x) { x }",
            "(fn (@jit) step (x) (block (name x)))",
        ),
        (
            "@jit\nfn step(x) { x }",
            "(fn (@jit) step (x) (block (name x)))",
        ),
        (
            "@jit(parallel: \"data\", devices: 4)\nfn step(x) { x }",
            "(fn (@jit (parallel: (str \"data\")) (devices: (int 4))) step (x) (block (name x)))",
        ),
        (
            "/// Adds one.\n/// Really.\nfn inc(x) { x + 1 }",
            "(fn (doc \"Adds one.\\nReally.\") inc (x) (block (binary + (name x) (int 1))))",
        ),
        (
            "/// Staged.\n@jit\nfn f() {}",
            "(fn (doc \"Staged.\") (@jit) f () (block))",
        ),
        ("/// not a doc of anything\nlet x = 1", "(let x (int 1))"),
        (
            "//// four slashes is a comment\nfn f() {}",
            "(fn f () (block))",
        ),
        (
            "type Linear = {w: f32[i, o], b: f32[o]}",
            "(type Linear {w: f32[i, o], b: f32[o]})",
        ),
        ("import nn", "(import nn)"),
        ("import nn as n", "(import nn as n)"),
        (
            "import \"lib/util.ms\" as util",
            "(import \"lib/util.ms\" as util)",
        ),
        ("a; b;; c;", "(name a)\n(name b)\n(name c)"),
        ("", ""),
        ("\n\n  // only a comment\n", ""),
    ]);
}

#[test]
fn types() {
    check_table(&[
        ("let x: f32[2, n] = e", "(let x : f32[2, n] (name e))"),
        ("let x: f32 = e", "(let x : f32 (name e))"),
        ("let x: f32[] = e", "(let x : f32[] (name e))"),
        (
            "let x: f32[_, ?, ...] = e",
            "(let x : f32[_, ?, ...] (name e))",
        ),
        ("let x: f32[..., d] = e", "(let x : f32[..., d] (name e))"),
        (
            "let x: (f32[n], i64) = e",
            "(let x : (f32[n], i64) (name e))",
        ),
        ("let x: (f32,) = e", "(let x : (f32,) (name e))"),
        ("let x: () = e", "(let x : () (name e))"),
        ("let x: (f32) = e", "(let x : f32 (name e))"),
        (
            "let x: {w: f32[d, k], b: f32[k]} = e",
            "(let x : {w: f32[d, k], b: f32[k]} (name e))",
        ),
        (
            "let f: fn(f32[n]) -> f32 = g",
            "(let f : fn(f32[n]) -> f32 (name g))",
        ),
        (
            "let f: fn(f32, i64) -> (f32, f32) = g",
            "(let f : fn(f32, i64) -> (f32, f32) (name g))",
        ),
        ("let s: str = \"a\"", "(let s : str (str \"a\"))"),
        ("let l: Linear = e", "(let l : Linear (name e))"),
        (
            "fn f(w: f32[3, 1]) -> f32 { w }",
            "(fn f ((w f32[3, 1])) -> f32 (block (name w)))",
        ),
    ]);
}

#[test]
fn newlines() {
    check_table(
        &[
            // A newline ends a statement.
            ("a\nb", "(name a)\n(name b)"),
            ("a\n\n\nb\n", "(name a)\n(name b)"),
            // ... but not inside (), [] or a record literal.
            ("f(a,\n  b)", "(call (name f) (name a) (name b))"),
            ("f(\n  a\n  ,b\n)", "(call (name f) (name a) (name b))"),
            ("[1,\n 2\n]", "(list (int 1) (int 2))"),
            ("{\n  w: 1,\n  b: 2\n}", "(record (w (int 1)) (b (int 2)))"),
            ("(a\n + b)", "(binary + (name a) (name b))"),
            // ... nor after a binary operator, `,`, `=` or `|`.
            ("a +\n b", "(binary + (name a) (name b))"),
            ("a ||\n b", "(binary || (name a) (name b))"),
            ("let x =\n 1", "(let x (int 1))"),
            ("x +=\n 1", "(assign+= x (int 1))"),
            ("let f = |x|\n x", "(let f (closure (x) (name x)))"),
            ("f(x) ->\n f32", "(call (name f) (name x))"),
        ][..12],
    );
    check_table(
        &[
            // Inside a block, newlines count again, even inside parentheses.
            (
                "map(|x| {\n let y = x * 2\n y\n}, t)",
                "(call (name map) (closure (x) (block (let y (binary * (name x) (int 2))) (name y))) (name t))",
            ),
            (
                "f({\n a\n b\n})",
                "(call (name f) (block (name a) (name b)))",
            ),
            // A line starting with `else` or `.` continues the previous one.
            (
                "if c {\n a\n}\nelse {\n b\n}",
                "(if (name c) (block (name a)) (block (name b)))",
            ),
            (
                "if c { a }\nelse if d { b }\nelse { e }",
                "(if (name c) (block (name a)) (if (name d) (block (name b)) (block (name e))))",
            ),
            ("x\n.sum()", "(method (name x) sum)"),
            (
                "x\n  .sum()\n  .mean()",
                "(method (method (name x) sum) mean)",
            ),
            ("x.\nsum()", "(method (name x) sum)"),
            // A line starting with `-` is a new statement.
            ("a\n-b", "(name a)\n(unary - (name b))"),
            // Empty lines, comments and `;` inside blocks.
            (
                "{\n\n a // one\n /* two */ b;\n\n}",
                "(block (name a) (name b))",
            ),
            (
                "fn f() {\n  let a = 1\n  a\n}\nf()",
                "(fn f () (block (let a (int 1)) (name a)))\n(call (name f))",
            ),
            ("a /* multi\nline */ b", "(name a)\n(name b)"),
            (
                "let x = 1 // trailing\nlet y = 2",
                "(let x (int 1))\n(let y (int 2))",
            ),
            ("a /* /* nested */ still comment */", "(name a)"),
            ("// größe\nlet ü = 1", "(let ü (int 1))"),
        ][..12],
    );
}

#[test]
fn expressions_alone() {
    let cases = [
        ("x @ w.T", "(binary @ (name x) (field (name w) T))"),
        ("\n  a + 1\n", "(binary + (name a) (int 1))"),
    ];
    for (src, expect) in cases {
        let (e, diags) = parse_expr(src);
        assert!(diags.is_empty(), "{src:?}: {diags:?}");
        assert_eq!(e.map(|e| sexpr_expr(&e)).as_deref(), Some(expect));
    }
    let (e, diags) = parse_expr("let x = 1");
    assert!(e.is_none() || !diags.is_empty());
    assert_eq!(codes(&diags), ["E0001"]);
}

fn codes(diags: &[Diagnostic]) -> Vec<&'static str> {
    diags.iter().map(|d| d.code).collect()
}

/// Parses `src` and asserts the errors' codes and primary spans, as `(code, "text")`
/// where text is the source under the span.
fn check_errors(src: &str, expect: &[(&str, &str)]) {
    let (_, diags) = parse(src);
    let got: Vec<(&str, &str)> = diags
        .iter()
        .map(|d| {
            (
                d.code,
                src.get(d.primary.span.range()).unwrap_or("<bad span>"),
            )
        })
        .collect();
    assert_eq!(got, expect, "source: {src:?}\n{diags:#?}");
    for d in &diags {
        assert!(!d.message.is_empty() && !d.message.ends_with('.'));
        assert!(!d.message.contains('\n'), "{}", d.message);
    }
}

#[test]
fn syntax_errors() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (".5", &[("E0003", ".5")]),
        ("let x = .5e2 + 1", &[("E0003", ".5e2")]),
        ("99999999999999999999", &[("E0004", "99999999999999999999")]),
        ("1e999", &[("E0004", "1e999")]),
        ("\"abc", &[("E0005", "\"")]),
        ("\"a\\qb\"", &[("E0006", "\\q")]),
        ("/* never closed", &[("E0002", "/*")]),
        ("let x = 1 € 2", &[("E0007", "€")]),
        (
            "let x = 1 € 2\nlet y = )",
            &[("E0007", "€"), ("E0001", ")")],
        ),
        ("let x = \0", &[("E0007", "\0")]),
        ("a & b", &[("E0007", "&")]),
        ("a < b < c", &[("E0008", "<")]),
        ("a == b != c", &[("E0008", "!=")]),
        ("0..1..2", &[("E0008", "..")]),
        ("f(a: 1, 2)", &[("E0009", "2")]),
        ("x.w = 1", &[("E0011", "x.w")]),
        ("x[0] += 1", &[("E0011", "x[0]")]),
        ("let = 1", &[("E0001", "=")]),
        ("f(1, 2", &[("E0001", "")]),
        ("let x = (1 + )", &[("E0001", ")")]),
        ("let x = 1 let y = 2", &[("E0001", "let")]),
        (")", &[("E0001", ")")]),
        ("fn f( { }", &[("E0001", "{")]),
        ("if x = 1 { }", &[("E0001", "=")]),
        // Two independent errors are both reported.
        (
            "let a = (1 +)\nlet b = 2\nlet c = [1,, 2]",
            &[("E0001", ")"), ("E0001", ",")],
        ),
        (
            "fn f() {\n  let a = )\n  let b = *\n  b\n}\nlet c = )",
            &[("E0001", ")"), ("E0001", "*"), ("E0001", ")")],
        ),
        // Spans stay on char boundaries after non-ASCII text.
        ("// größe\nlet x = )", &[("E0001", ")")]),
        ("let größe = 1", &[("E0007", "ö"), ("E0007", "ß")]),
    ];
    for (src, expect) in cases {
        check_errors(src, expect);
    }
}

#[test]
fn error_messages() {
    let (_, diags) = parse("a < b < c");
    let d = &diags[0];
    assert_eq!(d.message, "`<` and `<` cannot be chained");
    assert_eq!(d.hints, ["write `a < b && b < c`"]);
    let (_, diags) = parse("let x = .5");
    assert_eq!(diags[0].hints, ["write `0.5`"]);
    let (_, diags) = parse("let x = (1 + )");
    assert_eq!(diags[0].message, "expected an expression, found `)`");
}

#[test]
fn incomplete() {
    let cases = [
        ("f(1,", true),
        ("f(1", true),
        ("[1, 2", true),
        ("fn f() {", true),
        ("fn f() {\n let x = 1\n", true),
        ("/* open", true),
        ("\"open", true),
        ("a +", true),
        ("a ||", true),
        ("let x =", true),
        ("let f = |x|", true),
        ("a,", true),
        ("x = 1", false),
        ("f(1)", false),
        ("fn f() { }", false),
        ("a )", false),
        ("", false),
        ("// comment", false),
    ];
    for (src, expect) in cases {
        assert_eq!(is_incomplete(src), expect, "{src:?}");
    }
}
