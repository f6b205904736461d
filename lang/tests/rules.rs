//! Table-driven tests of the operator, literal, indexing and property rules
//! (`lang::check::ops`), on abstract values written as type strings.

mod common;

use common::{Src, show, spans_inside, summary, ty};
use lang::ast::{BinOp, Ident, UnaryOp};
use lang::check::ops;
use lang::check::{Ty, TypedIndex};

/// A result as string slices, for comparison with the tables.
fn rs(r: &Result<String, String>) -> Result<&str, &str> {
    r.as_ref().map(String::as_str).map_err(String::as_str)
}

fn binop(op: &str) -> BinOp {
    [
        BinOp::Or,
        BinOp::And,
        BinOp::Eq,
        BinOp::Ne,
        BinOp::Lt,
        BinOp::Le,
        BinOp::Gt,
        BinOp::Ge,
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Rem,
        BinOp::MatMul,
        BinOp::Pow,
    ]
    .into_iter()
    .find(|b| b.symbol() == op)
    .unwrap_or_else(|| panic!("operator {op}"))
}

/// `x op y` with `x: l` and `y: r` (operand texts may be given as `text: type`).
fn check_binary(op: &str, l: &str, r: &str) -> Result<String, String> {
    let split = |s: &str, d: &'static str| -> (String, String) {
        match s.split_once(" :: ") {
            Some((text, t)) => (text.to_string(), t.to_string()),
            None => (d.to_string(), s.to_string()),
        }
    };
    let (lt, l) = split(l, "x");
    let (rt, r) = split(r, "y");
    let src = Src::new().part(&lt).lit(" ").part(op).lit(" ").part(&rt);
    let res = ops::binary(
        &src.text,
        binop(op),
        &src.typed(0, &l),
        &src.typed(2, &r),
        src.span(1),
    );
    res.map(|t| show(&t)).map_err(|d| {
        spans_inside(&src, &d);
        summary(&src, &d)
    })
}

#[test]
fn binary_operators() {
    let ok = |s: &str| Ok::<String, String>(s.to_string());
    let cases: &[(&str, &str, &str, Result<String, String>)] = &[
        // Broadcasting.
        ("+", "f32[2, 3]", "f32[3]", ok("f32[2, 3]")),
        ("+", "f32[2, 1]", "f32[1, 4]", ok("f32[2, 4]")),
        ("*", "f32[n, 3]", "f32[n, 3]", ok("f32[n, 3]")),
        ("*", "f32[n, 1]", "f32[3]", ok("f32[n, 3]")),
        ("-", "f32[?, 3]", "f32[5, 3]", ok("f32[5, 3]")),
        ("-", "f32[?, 3]", "f32[m, 3]", ok("f32[m, 3]")),
        ("+", "f32[...]", "f32[3]", ok("f32[...]")),
        ("+", "?", "f32[3]", ok("?")),
        ("+", "f32[3]", "!", ok("!")),
        // Weak literals and promotion.
        ("*", "f64[3]", "weak i64 = 2", ok("f64[3]")),
        ("*", "weak i64 = 2", "weak f32 = 0.5", ok("weak f32 = 1.0")),
        ("*", "i64[5]", "weak f32 = 0.5", ok("f32[5]")),
        ("+", "i32[5]", "weak i64 = 1", ok("i32[5]")),
        ("+", "i32[5]", "i64[5]", ok("i64[5]")),
        ("+", "bool[5]", "f64", ok("f64[5]")),
        ("+", "bool[5]", "weak i64 = 1", ok("i64[5]")),
        ("+", "f16[2]", "weak f32 = 1.0", ok("f16[2]")),
        ("/", "i64[4]", "i64[4]", ok("f32[4]")),
        ("/", "weak i64 = 1", "weak i64 = 2", ok("weak f32 = 0.5")),
        ("%", "i32[4]", "weak i64 = 3", ok("i32[4]")),
        ("%", "weak i64 = -7", "weak i64 = 3", ok("weak i64 = 2")),
        ("**", "f32[3]", "weak i64 = -1", ok("f32[3]")),
        ("**", "weak i64 = 2", "weak i64 = 10", ok("weak i64 = 1024")),
        ("+", "i64 = 2", "weak i64 = 3", ok("i64 = 5")),
        ("<", "f32[3]", "weak f32 = 0.5", ok("bool[3]")),
        ("==", "bool[3]", "bool[3]", ok("bool[3]")),
        ("<", "weak i64 = 1", "weak i64 = 2", ok("weak bool = true")),
        ("&&", "bool", "bool = true", ok("bool")),
        ("||", "bool = false", "bool = true", ok("bool = true")),
        // Matmul.
        ("@", "f32[32, 784]", "f32[784, 128]", ok("f32[32, 128]")),
        ("@", "f32[b, n, k]", "f32[k, m]", ok("f32[b, n, m]")),
        ("@", "f32[3]", "f32[3, 4]", ok("f32[4]")),
        ("@", "f32[2, 3]", "f32[3]", ok("f32[2]")),
        ("@", "f32[3]", "f32[3]", ok("f32")),
        (
            "@",
            "f32[2, 1, 3, 4]",
            "f32[5, 4, 6]",
            ok("f32[2, 5, 3, 6]"),
        ),
        ("@", "f32[?, 784]", "f32[?, 10]", ok("f32[?, 10]")),
        ("@", "f32[2, 3]", "weak f32[3, 4]", ok("f32[2, 4]")),
        // Lifting over structures.
        (
            "-",
            "{b: f32[2], w: f32[3, 2]}",
            "{b: f32[2], w: f32[3, 2]}",
            ok("{b: f32[2], w: f32[3, 2]}"),
        ),
        (
            "*",
            "weak f32 = 0.1",
            "{b: f32[2], w: f32[3, 2]}",
            ok("{b: f32[2], w: f32[3, 2]}"),
        ),
        ("+", "(f32[2], i64)", "(f32[2], i64)", ok("(f32[2], i64)")),
        (
            "+",
            "(f32[2], (f32, f32[3]))",
            "f32",
            ok("(f32[2], (f32, f32[3]))"),
        ),
        ("+", "(f32[2], ?)", "(f32[2], f32)", ok("(f32[2], ?)")),
    ];
    for (op, l, r, want) in cases {
        assert_eq!(&check_binary(op, l, r), want, "{l} {op} {r}");
    }
}

#[test]
fn binary_operator_errors() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "+",
            "f32[2, 3]",
            "f32[4]",
            "E0302: shapes do not broadcast: f32[2, 3] + f32[4] (3 vs 4 at axis -1) | x: has 3 at axis 1 | y: has 4 at axis 0",
        ),
        (
            "+",
            "f32[n]",
            "f32[m]",
            "E0302: shapes do not broadcast: f32[n] + f32[m] (n vs m at axis -1) | x: has n at axis 0 | y: has m at axis 0",
        ),
        (
            "+",
            "f32[n]",
            "f32[3]",
            "E0302: shapes do not broadcast: f32[n] + f32[3] (n vs 3 at axis -1) | x: has n at axis 0 | y: has 3 at axis 0",
        ),
        (
            "*",
            "f32[3, 4]",
            "f32[3]",
            "E0302: shapes do not broadcast: f32[3, 4] * f32[3] (4 vs 3 at axis -1) | x: has 4 at axis 1 | y: has 3 at axis 0 | hint: `x * expand_dims(y, -1)` broadcasts: expand_dims(y, -1) is f32[3, 1]",
        ),
        (
            "+",
            "a :: f32[3]",
            "b :: f64[3]",
            "E0201: dtypes do not mix: f32[3] + f64[3] | a: is f32[3] | b: is f64[3] | hint: cast one side: `f64(a) + b` or `a + f32(b)`",
        ),
        (
            "<",
            "f64",
            "f32",
            "E0201: dtypes do not mix: f64 < f32 | x: is f64 | y: is f32 | hint: cast one side: `f32(x) < y` or `x < f64(y)`",
        ),
        (
            "+",
            "bool[2]",
            "bool[2]",
            "E0202: `+` needs numbers, found bool[2] + bool[2] | x: is bool | hint: count with integers: `i64(x)`",
        ),
        (
            "**",
            "i64[3]",
            "weak i64 = -1",
            "E0203: an integer cannot be raised to the negative power -1 | y: exponent -1 | x: is i64[3] | hint: use a float base: `f32(x) ** y`",
        ),
        (
            "&&",
            "bool[3]",
            "bool",
            "E0204: `&&` works on scalar bools, found bool[3] && bool | x: is bool[3] | hint: `logical_and(x, y)` works elementwise on tensors",
        ),
        (
            "||",
            "bool",
            "f32",
            "E0202: `||` needs bool operands, found f32 | y: is f32 | hint: compare first: `y != 0`",
        ),
        (
            "+",
            "f32",
            "str",
            "E0205: `+` needs numbers or tensors, found f32 + str | y: is str",
        ),
        (
            "@",
            "x :: f32[32, 784]",
            "w1 :: f32[128, 784]",
            "E0301: shapes do not fit matmul: f32[32, 784] @ f32[128, 784] | x: has 784 columns | w1: has 128 rows | hint: `x @ w1.T` fits: w1.T is f32[784, 128]",
        ),
        (
            "@",
            "x + 1 :: f32[5, 2]",
            "w :: f32[5, 3]",
            "E0301: shapes do not fit matmul: f32[5, 2] @ f32[5, 3] | x + 1: has 2 columns | w: has 5 rows | hint: `(x + 1).T @ w` fits: (x + 1).T is f32[2, 5]",
        ),
        (
            "@",
            "f32[3]",
            "f32[4]",
            "E0301: shapes do not fit matmul: f32[3] @ f32[4] | x: has 3 elements | y: has 4 elements",
        ),
        (
            "@",
            "f32[n, k]",
            "f32[j, m]",
            "E0301: shapes do not fit matmul: f32[n, k] @ f32[j, m] | x: has k columns | y: has j rows",
        ),
        (
            "@",
            "f32[2, 3, 4]",
            "f32[5, 4, 6]",
            "E0301: batch dims do not fit matmul: f32[2, 3, 4] @ f32[5, 4, 6] (2 vs 5) | x: has batch dims [2] | y: has batch dims [5]",
        ),
        (
            "@",
            "f32",
            "f32[3]",
            "E0306: matmul needs operands with at least one axis, found f32 @ f32[3] | x: is the scalar f32 | hint: multiply by a scalar with `*`: `x * y`",
        ),
        (
            "+",
            "(f32, f32)",
            "(f32,)",
            "E0640: structures do not match for `+`: tuples of 2 and 1 elements | x: is (f32, f32) | y: is (f32,)",
        ),
        (
            "-",
            "{b: f32, w: f32}",
            "{w: f32}",
            "E0640: structures do not match for `-`: field `b` is missing on the right | x: is {b: f32, w: f32} | y: is {w: f32}",
        ),
        (
            "-",
            "{w: f32}",
            "{v: f32, w: f32}",
            "E0640: structures do not match for `-`: field `v` is missing on the left | x: is {w: f32} | y: is {v: f32, w: f32}",
        ),
        (
            "+",
            "(f32, f32)",
            "{w: f32}",
            "E0640: structures do not match for `+`: a tuple and a record | x: is (f32, f32) | y: is {w: f32}",
        ),
        (
            "==",
            "(f32, f32)",
            "(f32, f32)",
            "E0205: `==` needs numbers or tensors, found (f32, f32) == (f32, f32) | x: is (f32, f32)",
        ),
    ];
    for (op, l, r, want) in cases {
        assert_eq!(rs(&check_binary(op, l, r)), Err(*want), "{l} {op} {r}");
    }
}

#[test]
fn errors_inside_structures_name_the_leaf() {
    let src = Src::new().part("p").lit(" - ").part("-").lit(" ").part("g");
    let l = src.typed(0, "{b: f32[2], w: f32[3, 2]}");
    let r = src.typed(2, "{b: f32[2], w: f32[2, 3]}");
    let d = ops::binary(&src.text, BinOp::Sub, &l, &r, src.span(1)).unwrap_err();
    assert_eq!(d.code, "E0302");
    assert_eq!(
        d.notes.first().map(String::as_str),
        Some("in the leaf `.w` of the structures")
    );
}

fn check_unary(op: UnaryOp, t: &str) -> Result<String, String> {
    let src = Src::new().part(op.symbol()).part("x");
    ops::unary(&src.text, op, &src.typed(1, t), src.span(0))
        .map(|t| show(&t))
        .map_err(|d| summary(&src, &d))
}

#[test]
fn unary_operators() {
    let cases: &[(UnaryOp, &str, Result<&str, &str>)] = &[
        (UnaryOp::Neg, "weak i64 = 1", Ok("weak i64 = -1")),
        (UnaryOp::Neg, "f32[2, n]", Ok("f32[2, n]")),
        (UnaryOp::Neg, "weak f32 = 0.5", Ok("weak f32 = -0.5")),
        (UnaryOp::Neg, "{w: f32[2]}", Ok("{w: f32[2]}")),
        (UnaryOp::Not, "bool = true", Ok("bool = false")),
        (UnaryOp::Not, "bool[3]", Ok("bool[3]")),
        (UnaryOp::Neg, "?", Ok("?")),
        (
            UnaryOp::Neg,
            "bool[3]",
            Err(
                "E0202: `-` needs numbers, found bool[3] | x: is bool[3] | -: negation | hint: negate a bool with `!x`",
            ),
        ),
        (
            UnaryOp::Not,
            "f32",
            Err(
                "E0202: `!` needs bool, found f32 | x: is f32 | !: logical negation | hint: compare first: `x == 0`",
            ),
        ),
        (
            UnaryOp::Neg,
            "str",
            Err("E0205: `-` needs a number or a tensor, found str | x: is str"),
        ),
    ];
    for (op, t, want) in cases {
        assert_eq!(rs(&check_unary(*op, t)), *want, "{}{t}", op.symbol());
    }
}

/// `[e0, e1, ...]` with the elements' types.
fn check_list(elems: &[&str]) -> Result<String, String> {
    let mut src = Src::new().lit("[");
    for (i, _) in elems.iter().enumerate() {
        if i > 0 {
            src = src.lit(", ");
        }
        src = src.part(&format!("e{i}"));
    }
    src = src.lit("]");
    let typed: Vec<_> = elems
        .iter()
        .enumerate()
        .map(|(i, t)| src.typed(i, t))
        .collect();
    let whole = lang::Span::new(0, src.text.len());
    ops::list_literal(&src.text, &typed, whole)
        .map(|t| show(&t))
        .map_err(|d| summary(&src, &d))
}

#[test]
fn list_literals() {
    let cases: &[(&[&str], Result<&str, &str>)] = &[
        (&["weak f32 = 1.0", "weak f32 = 2.0"], Ok("weak f32[2]")),
        (&["weak i64 = 1", "weak f32 = 2.0"], Ok("weak f32[2]")),
        (
            &["weak i64 = 2", "weak i64 = 3"],
            Ok("weak i64[2] = [2, 3]"),
        ),
        (&["i64 = n", "weak i64 = 3"], Ok("i64[2] = [n, 3]")),
        (
            &["weak i64[2] = [1, 2]", "weak i64[2] = [3, 4]"],
            Ok("weak i64[2, 2]"),
        ),
        (&["f32[3]", "f32[?]"], Ok("f32[2, 3]")),
        (&["f32[?]", "f32[3]"], Ok("f32[2, 3]")),
        (&["f64", "weak f32 = 1.0"], Ok("f64[2]")),
        (&["i32", "weak i64 = 1"], Ok("i32[2]")),
        (&["f32", "?"], Ok("?")),
        (&[], Ok("weak f32[0]")),
        (
            &["f32[3]", "f32[3]", "f32[2]"],
            Err(
                "E0303: rows of a list literal differ in shape: [3] and [2] | e2: row 2 has shape [2] | e0: row 0 has shape [3]",
            ),
        ),
        (
            &["f32[n]", "f32[m]"],
            Err(
                "E0303: rows of a list literal differ in shape: [n] and [m] | e1: row 1 has shape [m] | e0: row 0 has shape [n]",
            ),
        ),
        (
            &["f32", "f64"],
            Err(
                "E0201: dtypes do not mix in a list literal: f32 and f64 | e1: is f64 | e0: is f32 | hint: cast the odd element: `f32(e1)`",
            ),
        ),
        (
            &["f32", "str"],
            Err(
                "E0205: a list literal holds numbers or tensors, found str | e1: is str | [e0, e1]: in this list",
            ),
        ),
    ];
    for (elems, want) in cases {
        assert_eq!(rs(&check_list(elems)), *want, "{elems:?}");
    }
}

/// One index item as written in a test: `"3: i64 = 3"` (an expression `3` of that type),
/// `"1:3"` (a slice of literal bounds) or `"..."`.
fn check_index(base: &str, items: &[&str]) -> Result<String, String> {
    let mut src = Src::new().part("x").lit("[");
    let mut parts: Vec<(usize, &str)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            src = src.lit(", ");
        }
        let text = it.split_once(" :: ").map_or(*it, |(t, _)| t);
        src = src.part(text);
        parts.push((src.spans.len() - 1, it));
    }
    src = src.lit("]");
    let lit = |s: &str, span| -> Option<lang::check::Typed> {
        if s.is_empty() {
            return None;
        }
        Some(lang::check::Typed {
            ty: ty(&format!("weak i64 = {s}")),
            span,
        })
    };
    let typed: Vec<TypedIndex> = parts
        .iter()
        .map(|(k, it)| {
            let span = src.span(*k);
            if *it == "..." {
                TypedIndex::Ellipsis(span)
            } else if let Some((_, t)) = it.split_once(" :: ") {
                TypedIndex::Expr(lang::check::Typed { ty: ty(t), span })
            } else if it.contains(':') {
                let mut p = it.split(':');
                let start = p.next().and_then(|s| lit(s, span));
                let end = p.next().and_then(|s| lit(s, span));
                let step = p.next().and_then(|s| lit(s, span));
                TypedIndex::Slice {
                    start,
                    end,
                    step,
                    span,
                }
            } else {
                TypedIndex::Expr(lang::check::Typed {
                    ty: ty(&format!("weak i64 = {it}")),
                    span,
                })
            }
        })
        .collect();
    let whole = lang::Span::new(0, src.text.len());
    ops::index(&src.text, &src.typed(0, base), &typed, whole)
        .map(|t| show(&t))
        .map_err(|d| summary(&src, &d))
}

#[test]
fn indexing() {
    let cases: &[(&str, &[&str], Result<&str, &str>)] = &[
        ("f32[3, 4]", &["0"], Ok("f32[4]")),
        ("f32[3, 4]", &["-1", "2"], Ok("f32")),
        ("f32[3, 4]", &["1:3"], Ok("f32[2, 4]")),
        ("f32[10]", &["5:20"], Ok("f32[5]")),
        ("f32[10]", &["::2"], Ok("f32[5]")),
        ("f32[10]", &["::-1"], Ok("f32[10]")),
        ("f32[10]", &["-3:"], Ok("f32[3]")),
        ("f32[n, 4]", &[":", "1:"], Ok("f32[n, 3]")),
        ("f32[n, 4]", &["1:"], Ok("f32[?, 4]")),
        ("f32[2, 3, 4]", &["...", "0"], Ok("f32[2, 3]")),
        ("f32[2, 3, 4]", &["0", "..."], Ok("f32[3, 4]")),
        ("f32[2, 3, 4]", &["0", "...", "1"], Ok("f32[3]")),
        ("f32[10, 4]", &["idx :: i64[5]"], Ok("f32[5, 4]")),
        (
            "f32[10, 4]",
            &[":", "idx :: i64[2, 3]"],
            Ok("f32[10, 2, 3]"),
        ),
        (
            "f32[10, 4, 5]",
            &["i :: i64[3]", ":", "j :: i64[3]"],
            Ok("f32[3, 4]"),
        ),
        ("f32[10, 4]", &["n :: i64"], Ok("f32[4]")),
        ("f32[...]", &["0"], Ok("f32[...]")),
        ("f32[3]", &["i :: ?"], Ok("?")),
        (
            "f32[3, 4]",
            &["5"],
            Err(
                "E0304: index 5 is out of range for axis 0 of size 3 | 5: index 5 | x: is f32[3, 4]",
            ),
        ),
        (
            "f32[3, 4]",
            &["0", "-5"],
            Err(
                "E0304: index -5 is out of range for axis 1 of size 4 | -5: index -5 | x: is f32[3, 4]",
            ),
        ),
        (
            "f32[3, 4]",
            &["0", "1", "2"],
            Err(
                "E0305: too many indices: f32[3, 4] has 2 axes, indexed with 3 | 2: no axis left for this index | x: is f32[3, 4]",
            ),
        ),
        (
            "f32[3, 4]",
            &["...", "..."],
            Err("E0305: an index can hold only one `...` | ...: second `...`"),
        ),
        (
            "f32[3]",
            &["i :: f32"],
            Err(
                "E0202: an index must be an integer, found f32 | i: is f32 | hint: convert it: `i64(i)`",
            ),
        ),
        (
            "f32[3]",
            &["::0"],
            Err(
                "E0309: a slice step cannot be zero | ::0: step 0 | hint: a step of 1 takes every element; -1 walks backwards",
            ),
        ),
    ];
    for (base, items, want) in cases {
        assert_eq!(rs(&check_index(base, items)), *want, "{base} {items:?}");
    }
}

fn check_property(base: &str, name: &str) -> Option<Result<String, String>> {
    let src = Src::new().part("x").lit(".").part(name);
    let ident = Ident {
        name: name.into(),
        span: src.span(1),
    };
    ops::property(&src.text, &src.typed(0, base), &ident)
        .map(|r| r.map(|t| show(&t)).map_err(|d| summary(&src, &d)))
}

#[test]
fn properties() {
    type Expect = Option<Result<&'static str, &'static str>>;
    let cases: &[(&str, &str, Expect)] = &[
        ("f32[2, 3, 4]", "T", Some(Ok("f32[2, 4, 3]"))),
        ("f32[n, 3]", "shape", Some(Ok("(i64 = n, i64 = 3)"))),
        ("f32[?, 3]", "shape", Some(Ok("(i64, i64 = 3)"))),
        ("f32", "shape", Some(Ok("()"))),
        ("f64[2]", "dtype", Some(Ok("str \"f64\""))),
        ("?", "T", Some(Ok("?"))),
        ("f32[2]", "w", None),
        ("{w: f32}", "T", None),
        (
            "f32[3]",
            "T",
            Some(Err(
                "E0306: `.T` swaps the last two axes, but f32[3] has 1 | T: needs at least 2 axes | x: is f32[3] | hint: make it a row first: `expand_dims(x, 0).T` is a column",
            )),
        ),
    ];
    for (base, name, want) in cases {
        let got = check_property(base, name);
        assert_eq!(got.as_ref().map(rs), *want, "{base}.{name}");
    }
}

#[test]
fn unknown_never_raises() {
    let unknown = [
        check_binary("@", "?", "f32[3]"),
        check_binary("&&", "?", "f32[3]"),
        check_unary(UnaryOp::Not, "?"),
        check_list(&["?", "str"]),
    ];
    for r in unknown {
        assert_eq!(rs(&r), Ok("?"));
    }
    assert!(matches!(ty("?"), Ty::Unknown));
}

/// Every code the rules emit has an explanation file in the agreed format.
#[test]
fn every_rule_code_is_explained() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![
        root.join("src/check/ops.rs"),
        root.join("src/check/builtins.rs"),
    ];
    for e in std::fs::read_dir(root.join("src/check/builtins")).unwrap() {
        sources.push(e.unwrap().path());
    }
    let mut codes = std::collections::BTreeSet::new();
    for p in sources {
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, _) in text.match_indices("\"E0") {
            let code = &text[i + 1..i + 6];
            if code[1..].chars().all(|c| c.is_ascii_digit()) {
                codes.insert(code.to_string());
            }
        }
    }
    assert!(codes.len() >= 20, "{codes:?}");
    for code in codes {
        let path = root.join(format!("explain/{code}.md"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{code} has no explanation"));
        assert!(
            text.starts_with(&format!("# {code}: ")),
            "{code}: title line"
        );
        for part in ["\n\n## Example\n", "```ms\n", "\n## Fix\n"] {
            assert!(text.contains(part), "{code}: missing {part:?}");
        }
    }
}
