//! Table-driven tests of the builtin rules (`lang::check::builtins`), on abstract values
//! written as type strings.

mod common;

use common::{Src, show, spans_inside, summary};
use lang::ast::Ident;
use lang::check::Typed;
use lang::check::builtins;

/// `name(a0, a1, key: v)` where each argument is `type` or `text :: type`.
fn check_call(name: &str, args: &[&str], named: &[(&str, &str)]) -> Result<String, String> {
    let split = |s: &str, d: String| -> (String, String) {
        match s.split_once(" :: ") {
            Some((text, t)) => (text.to_string(), t.to_string()),
            None => (d, s.to_string()),
        }
    };
    let mut src = Src::new().lit(name).lit("(");
    let mut pos = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            src = src.lit(", ");
        }
        let (text, t) = split(a, format!("a{i}"));
        src = src.part(&text);
        pos.push((src.spans.len() - 1, t));
    }
    let mut keys = Vec::new();
    for (i, (k, v)) in named.iter().enumerate() {
        if i > 0 || !args.is_empty() {
            src = src.lit(", ");
        }
        src = src.part(k).lit(": ");
        let (text, t) = split(v, format!("v{i}"));
        src = src.part(&text);
        keys.push((src.spans.len() - 2, src.spans.len() - 1, t));
    }
    src = src.lit(")");
    let args: Vec<Typed> = pos.iter().map(|(k, t)| src.typed(*k, t)).collect();
    let named: Vec<(Ident, Typed)> = keys
        .iter()
        .map(|(k, v, t)| {
            let span = src.span(*k);
            (
                Ident {
                    name: src.at(span).into(),
                    span,
                },
                src.typed(*v, t),
            )
        })
        .collect();
    let whole = lang::Span::new(0, src.text.len());
    let res = builtins::call(&src.text, name, &args, &named, whole)
        .unwrap_or_else(|| panic!("{name} is not a builtin"));
    res.map(|t| show(&t)).map_err(|d| {
        spans_inside(&src, &d);
        summary(&src, &d)
    })
}

type Case = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    Result<&'static str, &'static str>,
);

fn run(cases: &[Case]) {
    for (name, args, named, want) in cases {
        let got = check_call(name, args, named);
        let got = got.as_ref().map(String::as_str).map_err(String::as_str);
        assert_eq!(got, *want, "{name}({args:?}, {named:?})");
    }
}

#[test]
fn creation() {
    run(&[
        ("zeros", &["weak i64[2] = [2, 3]"], &[], Ok("f32[2, 3]")),
        ("zeros", &["(i64 = n, i64 = 3)"], &[], Ok("f32[n, 3]")),
        (
            "ones",
            &["weak i64 = 4"],
            &[("dtype", "str \"i32\"")],
            Ok("i32[4]"),
        ),
        ("zeros", &["()"], &[], Ok("f32")),
        ("zeros", &["weak f32[0]"], &[], Ok("f32")),
        ("zeros", &["i64[2]"], &[], Ok("f32[?, ?]")),
        (
            "full",
            &["weak i64[1] = [2]", "weak f32 = 7.0"],
            &[],
            Ok("f32[2]"),
        ),
        (
            "full",
            &["weak i64[1] = [2]", "weak i64 = 7"],
            &[],
            Ok("i64[2]"),
        ),
        (
            "randint",
            &["weak i64 = 0", "weak i64 = 10", "weak i64[1] = [5]"],
            &[],
            Ok("i64[5]"),
        ),
        ("rand", &["weak i64[2] = [2, 2]"], &[], Ok("f32[2, 2]")),
        (
            "randn",
            &["weak i64[1] = [3]"],
            &[("dtype", "str \"f64\"")],
            Ok("f64[3]"),
        ),
        ("arange", &["weak i64 = 5"], &[], Ok("i64[5]")),
        (
            "arange",
            &["weak i64 = 2", "weak i64 = 10", "weak i64 = 3"],
            &[],
            Ok("i64[3]"),
        ),
        (
            "arange",
            &["weak f32 = 0.0", "weak f32 = 1.0", "weak f32 = 0.25"],
            &[],
            Ok("f32[4]"),
        ),
        ("arange", &["i64 = n"], &[], Ok("i64[n]")),
        ("arange", &["i64"], &[], Ok("i64[?]")),
        (
            "linspace",
            &["weak f32 = 0.0", "weak f32 = 1.0", "weak i64 = 11"],
            &[],
            Ok("f32[11]"),
        ),
        ("eye", &["weak i64 = 3"], &[], Ok("f32[3, 3]")),
        (
            "eye",
            &["weak i64 = 3", "weak i64 = 4"],
            &[],
            Ok("f32[3, 4]"),
        ),
        (
            "zeros_like",
            &["{b: f64[2], w: i32[3]}"],
            &[],
            Ok("{b: f64[2], w: i32[3]}"),
        ),
        ("ones_like", &["weak f32 = 1.0"], &[], Ok("f32")),
        ("seed", &["weak i64 = 0"], &[], Ok("()")),
        (
            "zeros",
            &["weak i64[2] = [2, -3]"],
            &[],
            Err("E0807: a shape cannot hold the negative size -3 | a0: is i64[2]"),
        ),
        (
            "zeros",
            &["weak f32[2]"],
            &[],
            Err(
                "E0804: `zeros` needs a shape (a list or tuple of ints) for `shape`, found f32[2] | a0: is f32[2]",
            ),
        ),
        (
            "arange",
            &["weak i64 = 0", "weak i64 = 5", "weak i64 = 0"],
            &[],
            Err("E0807: `arange` cannot step by 0 | a2: step 0"),
        ),
        (
            "rand",
            &["weak i64[1] = [2]"],
            &[("dtype", "str \"i64\"")],
            Err(
                "E0807: `rand` draws floats, not i64 | v0: is i64 | hint: draw integers with `randint(low, high, shape)`",
            ),
        ),
    ]);
}

#[test]
fn elementwise_and_casts() {
    run(&[
        ("exp", &["f32[2, n]"], &[], Ok("f32[2, n]")),
        ("exp", &["i64[3]"], &[], Ok("f32[3]")),
        ("tanh", &["weak f32 = 0.5"], &[], Ok("weak f32")),
        ("relu", &["i32[3]"], &[], Ok("i32[3]")),
        ("isnan", &["f64[3]"], &[], Ok("bool[3]")),
        ("logical_not", &["bool[3]"], &[], Ok("bool[3]")),
        ("abs", &["f32[...]"], &[], Ok("f32[...]")),
        (
            "maximum",
            &["f32[2, 3]", "weak f32 = 0.0"],
            &[],
            Ok("f32[2, 3]"),
        ),
        ("floor_div", &["i64[4]", "weak i64 = 2"], &[], Ok("i64[4]")),
        (
            "floor_div",
            &["weak i64 = -7", "weak i64 = 2"],
            &[],
            Ok("weak i64 = -4"),
        ),
        ("logical_and", &["bool[3]", "bool[1]"], &[], Ok("bool[3]")),
        (
            "where",
            &["bool[3, 1]", "f32[4]", "weak f32 = 0.0"],
            &[],
            Ok("f32[3, 4]"),
        ),
        (
            "clip",
            &["f32[3]", "weak f32 = 0.0", "weak f32 = 1.0"],
            &[],
            Ok("f32[3]"),
        ),
        ("f64", &["f32[3]"], &[], Ok("f64[3]")),
        ("i64", &["weak i64 = 3"], &[], Ok("i64 = 3")),
        ("f32", &["{w: f64[2]}"], &[], Ok("{w: f32[2]}")),
        ("bool", &["i64[2]"], &[], Ok("bool[2]")),
        ("exp", &["?"], &[], Ok("?")),
        ("exp", &["bool[3]"], &[], Ok("f32[3]")),
        (
            "relu",
            &["x :: bool[3]"],
            &[],
            Err(
                "E0202: `relu` needs a numeric dtype, found bool | x: is bool | hint: convert it first: `i64(x)`",
            ),
        ),
        (
            "logical_not",
            &["x :: f32[3]"],
            &[],
            Err(
                "E0202: `logical_not` needs bool, found f32 | x: is f32 | hint: compare first: `x != 0`",
            ),
        ),
        (
            "maximum",
            &["x :: f32[3]", "y :: f64[3]"],
            &[],
            Err(
                "E0201: dtypes do not mix: maximum(f32[3], f64[3]) | x: is f32[3] | y: is f64[3] | hint: cast one side: `maximum(f64(x), y)` or `maximum(x, f32(y))`",
            ),
        ),
        (
            "where",
            &["c :: f32[3]", "f32[3]", "f32[3]"],
            &[],
            Err(
                "E0202: `where` needs a bool condition, found f32[3] | c: is f32[3] | hint: compare first: `c != 0`",
            ),
        ),
        (
            "logical_or",
            &["bool[3]", "y :: i64[3]"],
            &[],
            Err(
                "E0202: `logical_or` needs bool tensors, found logical_or(bool[3], i64[3]) | y: is not bool | hint: compare first: `y != 0`",
            ),
        ),
        (
            "exp",
            &["str"],
            &[],
            Err("E0205: `exp` needs a tensor for `x`, found str | a0: is str"),
        ),
    ]);
}

#[test]
fn reductions() {
    run(&[
        (
            "sum",
            &["f32[2, 3]"],
            &[("axis", "weak i64 = 1")],
            Ok("f32[2]"),
        ),
        ("sum", &["f32[2, 3]"], &[], Ok("f32")),
        (
            "sum",
            &["f32[2, 3]"],
            &[("axis", "weak i64 = -1"), ("keepdims", "bool = true")],
            Ok("f32[2, 1]"),
        ),
        (
            "sum",
            &["f32[2, 3, 4]"],
            &[("axis", "(weak i64 = 0, weak i64 = 2)")],
            Ok("f32[3]"),
        ),
        ("sum", &["bool[5]"], &[], Ok("i64")),
        ("mean", &["i64[5]"], &[], Ok("f32")),
        (
            "mean",
            &["bool[n, 5]"],
            &[("axis", "weak i64 = 0")],
            Ok("f32[5]"),
        ),
        (
            "max",
            &["f32[n, 5]"],
            &[("axis", "weak i64 = 1")],
            Ok("f32[n]"),
        ),
        (
            "argmax",
            &["f32[n, 10]"],
            &[("axis", "weak i64 = -1")],
            Ok("i64[n]"),
        ),
        ("argmax", &["f32[n, 10]"], &[], Ok("i64")),
        ("all", &["f32[3]"], &[], Ok("bool")),
        (
            "logsumexp",
            &["f32[3, 4]"],
            &[("axis", "weak i64 = -1")],
            Ok("f32[3]"),
        ),
        ("sum", &["f32[...]"], &[], Ok("f32")),
        (
            "sum",
            &["f32[...]"],
            &[("axis", "weak i64 = 0")],
            Ok("f32[...]"),
        ),
        (
            "sum",
            &["x :: f32[2, 3]"],
            &[("axis", "weak i64 = 2")],
            Err(
                "E0801: axis 2 is out of range for f32[2, 3] (rank 2) | v0: axis 2 | x: is f32[2, 3]",
            ),
        ),
        (
            "sum",
            &["f32[2, 3]"],
            &[("axis", "(weak i64 = 1, weak i64 = -1)")],
            Err("E0810: axis 1 is named twice in `sum` | v0: repeated axis"),
        ),
        (
            "sum",
            &["f32[2, 3]"],
            &[("axis", "i64")],
            Err(
                "E0808: `sum` needs `axis` to be known when checking, but it is computed at run time | v0: not a known integer | hint: write the number itself, or a `let` of a literal",
            ),
        ),
        (
            "sum",
            &["f32[2, 3]"],
            &[("axis", "str")],
            Err(
                "E0804: `sum` needs an integer or a tuple of integers for `axis`, found str | v0: is str",
            ),
        ),
        (
            "max",
            &["f32[0, 3]"],
            &[("axis", "weak i64 = 0")],
            Err("E0307: `max` of an empty axis: axis 0 of f32[0, 3] has size 0 | a0: is f32[0, 3]"),
        ),
    ]);
}

#[test]
fn named_arguments() {
    run(&[
        (
            "sum",
            &["f32[2]"],
            &[("axes", "weak i64 = 0")],
            Err(
                "E0802: `sum` has no argument named `axes` | axes: unknown name | hint: did you mean `axis`?",
            ),
        ),
        (
            "zeros",
            &[],
            &[],
            Err(
                "E0803: `zeros` needs the argument `shape` | zeros(): `shape` is missing | hint: call it as `zeros(shape, dtype?)`",
            ),
        ),
        (
            "exp",
            &["f32", "f32"],
            &[],
            Err(
                "E0805: `exp` takes at most 1 argument, found 2 | a1: one argument too many | hint: call it as `exp(x)`",
            ),
        ),
        (
            "sum",
            &["f32[2]", "weak i64 = 0"],
            &[("axis", "weak i64 = 0")],
            Err(
                "E0809: the argument `axis` of `sum` is given twice | axis: given again here | a1: first given here",
            ),
        ),
        (
            "full",
            &[],
            &[("value", "weak f32 = 1.0"), ("shape", "weak i64[1] = [3]")],
            Ok("f32[3]"),
        ),
        ("print", &["f32", "str", "(f32, i64)"], &[], Ok("()")),
        ("print", &["?"], &[], Ok("()")),
        ("exp", &["!"], &[], Ok("!")),
    ]);
}

#[test]
fn shape_functions() {
    run(&[
        (
            "reshape",
            &["f32[2, 3]", "weak i64[2] = [3, 2]"],
            &[],
            Ok("f32[3, 2]"),
        ),
        (
            "reshape",
            &["f32[2, 3]", "weak i64[2] = [-1, 2]"],
            &[],
            Ok("f32[3, 2]"),
        ),
        (
            "reshape",
            &["f32[n, 6]", "weak i64[3] = [n, 2, 3]"],
            &[],
            Ok("f32[n, 2, 3]"),
        ),
        (
            "reshape",
            &["f32[n, 6]", "weak i64[2] = [-1, 3]"],
            &[],
            Ok("f32[?, 3]"),
        ),
        ("transpose", &["f32[2, 3, 4]"], &[], Ok("f32[4, 3, 2]")),
        (
            "transpose",
            &["f32[2, 3, 4]", "weak i64[3] = [0, 2, 1]"],
            &[],
            Ok("f32[2, 4, 3]"),
        ),
        (
            "expand_dims",
            &["f32[3]", "weak i64 = 0"],
            &[],
            Ok("f32[1, 3]"),
        ),
        (
            "expand_dims",
            &["f32[3]", "weak i64 = -1"],
            &[],
            Ok("f32[3, 1]"),
        ),
        ("squeeze", &["f32[1, 3, 1]"], &[], Ok("f32[3]")),
        (
            "squeeze",
            &["f32[1, 3, 1]"],
            &[("axis", "weak i64 = 0")],
            Ok("f32[3, 1]"),
        ),
        (
            "concat",
            &["(f32[2, 3], f32[4, 3])"],
            &[("axis", "weak i64 = 0")],
            Ok("f32[6, 3]"),
        ),
        (
            "concat",
            &["(f32[2, 3], f32[2, n])"],
            &[("axis", "weak i64 = 1")],
            Ok("f32[2, ?]"),
        ),
        ("stack", &["(f32[3], f32[3])"], &[], Ok("f32[2, 3]")),
        (
            "stack",
            &["(f32[3], f32[3])"],
            &[("axis", "weak i64 = 1")],
            Ok("f32[3, 2]"),
        ),
        (
            "split",
            &["f32[10, 4]", "weak i64 = 2"],
            &[],
            Ok("(f32[5, 4], f32[5, 4])"),
        ),
        (
            "split",
            &["f32[10, 4]", "weak i64 = 2"],
            &[("axis", "weak i64 = 1")],
            Ok("(f32[10, 2], f32[10, 2])"),
        ),
        ("flatten", &["f32[2, 3, 4]"], &[], Ok("f32[24]")),
        ("flatten", &["f32[n, 3]"], &[], Ok("f32[?]")),
        (
            "broadcast_to",
            &["f32[3]", "weak i64[2] = [2, 3]"],
            &[],
            Ok("f32[2, 3]"),
        ),
        (
            "pad",
            &["f32[2, 3]", "weak i64[2] = [1, 1]"],
            &[],
            Ok("f32[4, 5]"),
        ),
        (
            "pad",
            &[
                "f32[2, 3]",
                "(weak i64[2] = [0, 0], (weak i64 = 1, weak i64 = 2))",
            ],
            &[],
            Ok("f32[2, 6]"),
        ),
        (
            "one_hot",
            &["i64[n]", "weak i64 = 10"],
            &[],
            Ok("f32[n, 10]"),
        ),
        ("take", &["f32[3, 4]", "i64[5]"], &[], Ok("f32[5]")),
        (
            "take",
            &["f32[3, 4]", "i64[5]"],
            &[("axis", "weak i64 = 1")],
            Ok("f32[3, 5]"),
        ),
        (
            "gather",
            &["f32[3, 4]", "i64[2, 2]"],
            &[],
            Ok("f32[2, 2, 4]"),
        ),
        (
            "reshape",
            &["x :: f32[2, 3]", "s :: weak i64[2] = [4, 2]"],
            &[],
            Err(
                "E0308: cannot reshape f32[2, 3] (6 elements) into [4, 2] (8 elements) | s: has 8 elements | x: has 6 elements | hint: a reshape keeps the number of elements; one size may be -1 to infer it",
            ),
        ),
        (
            "reshape",
            &["f32[2, 3]", "s :: weak i64[2] = [-1, -1]"],
            &[],
            Err(
                "E0807: `reshape` can infer only one size: the shape holds more than one -1 | s: more than one -1",
            ),
        ),
        (
            "reshape",
            &["x :: f32[2, 3]", "s :: weak i64[2] = [-1, 4]"],
            &[],
            Err(
                "E0308: cannot reshape f32[2, 3] (6 elements) into [?, 4] (a different number of elements) | s: has a different number of elements | x: has 6 elements | hint: a reshape keeps the number of elements; one size may be -1 to infer it",
            ),
        ),
        (
            "transpose",
            &["x :: f32[2, 3]", "p :: weak i64[2] = [0, 0]"],
            &[],
            Err(
                "E0807: [0, 0] is not a permutation of the 2 axes of f32[2, 3] | p: not a permutation | x: is f32[2, 3]",
            ),
        ),
        (
            "squeeze",
            &["x :: f32[2, 3]"],
            &[("axis", "weak i64 = 0")],
            Err(
                "E0307: cannot squeeze axis 0 of f32[2, 3]: its size is 2, not 1 | v0: axis 0 | x: is f32[2, 3]",
            ),
        ),
        (
            "concat",
            &["t :: (f32[2, 3], f32[2, 4])"],
            &[],
            Err(
                "E0307: shapes do not fit `concat` along axis 0: piece 1 has 4 at axis 1, piece 0 has 3 | t: is (f32[2, 3], f32[2, 4])",
            ),
        ),
        (
            "split",
            &["x :: f32[10]", "n :: weak i64 = 3"],
            &[],
            Err(
                "E0307: cannot split axis 0 of f32[10] (size 10) into 3 equal pieces | n: 3 pieces | x: is f32[10]",
            ),
        ),
        (
            "expand_dims",
            &["x :: f32[3]", "weak i64 = 3"],
            &[],
            Err("E0801: axis 3 is out of range for f32[3] (rank 2) | a1: axis 3 | x: is f32[3]"),
        ),
    ]);
}

#[test]
fn linear_algebra() {
    run(&[
        ("matmul", &["f32[2, 3]", "f32[3, 4]"], &[], Ok("f32[2, 4]")),
        ("dot", &["f32[3]", "f32[3]"], &[], Ok("f32")),
        ("outer", &["f32[3]", "f32[4]"], &[], Ok("f32[3, 4]")),
        (
            "einsum",
            &["str \"ij,jk->ik\"", "f32[2, 3]", "f32[3, 4]"],
            &[],
            Ok("f32[2, 4]"),
        ),
        (
            "einsum",
            &["str \"ij,jk\"", "f32[2, 3]", "f32[3, 4]"],
            &[],
            Ok("f32[2, 4]"),
        ),
        (
            "einsum",
            &["str \"bij->bji\"", "f32[b, 2, 3]"],
            &[],
            Ok("f32[b, 3, 2]"),
        ),
        ("einsum", &["str \"ii->\"", "f32[3, 3]"], &[], Ok("f32")),
        (
            "matmul",
            &["x :: f32[32, 784]", "w1 :: f32[128, 784]"],
            &[],
            Err(
                "E0301: shapes do not fit matmul: f32[32, 784] @ f32[128, 784] | x: has 784 columns | w1: has 128 rows | hint: `x @ w1.T` fits: w1.T is f32[784, 128]",
            ),
        ),
        (
            "einsum",
            &["s :: str \"ij,jk->ik\"", "a :: f32[2, 3]", "b :: f32[4, 5]"],
            &[],
            Err(
                "E0307: einsum axis `j` is 3 in operand 0 but 4 in operand 1 | b: is f32[4, 5] | a: is f32[2, 3]",
            ),
        ),
        (
            "einsum",
            &["s :: str \"ij,jk->ik\"", "a :: f32[2, 3]"],
            &[],
            Err("E0806: the einsum spec names 2 operands, but 1 is given | s: is \"ij,jk->ik\""),
        ),
        (
            "einsum",
            &["s :: str \"ijk->i\"", "a :: f32[2, 3]"],
            &[],
            Err(
                "E0806: einsum term `ijk` names 3 axes, but operand 0 is f32[2, 3] with 2 | a: is f32[2, 3] | s: term `ijk`",
            ),
        ),
        (
            "einsum",
            &["s :: str \"ij->ik\"", "a :: f32[2, 3]"],
            &[],
            Err("E0806: the result's axis `k` is not an axis of any operand | s: is \"ij->ik\""),
        ),
        ("einsum", &["str", "f32[2, 3]"], &[], Ok("?")),
    ]);
}

#[test]
fn neural_and_losses() {
    run(&[
        ("softmax", &["f32[n, 10]"], &[], Ok("f32[n, 10]")),
        (
            "log_softmax",
            &["f32[n, 10]"],
            &[("axis", "weak i64 = 0")],
            Ok("f32[n, 10]"),
        ),
        (
            "conv2d",
            &["f32[8, 3, 32, 32]", "f32[16, 3, 3, 3]"],
            &[],
            Ok("f32[8, 16, 30, 30]"),
        ),
        (
            "conv2d",
            &["f32[8, 3, 32, 32]", "f32[16, 3, 3, 3]"],
            &[("stride", "weak i64 = 2"), ("padding", "weak i64 = 1")],
            Ok("f32[8, 16, 16, 16]"),
        ),
        (
            "conv2d",
            &["f32[b, 3, 32, 32]", "f32[16, 3, 5, 5]", "f32[16]"],
            &[],
            Ok("f32[b, 16, 28, 28]"),
        ),
        (
            "max_pool2d",
            &["f32[8, 16, 28, 28]", "weak i64 = 2"],
            &[],
            Ok("f32[8, 16, 14, 14]"),
        ),
        (
            "avg_pool2d",
            &["f32[8, 16, 28, 28]", "weak i64 = 3"],
            &[("stride", "weak i64 = 1")],
            Ok("f32[8, 16, 26, 26]"),
        ),
        (
            "layer_norm",
            &["f32[n, 64]", "f32[64]", "f32[64]"],
            &[],
            Ok("f32[n, 64]"),
        ),
        (
            "batch_norm",
            &["f32[n, 16, 8, 8]", "f32[16]"],
            &[],
            Ok("f32[n, 16, 8, 8]"),
        ),
        (
            "dropout",
            &["f32[n, 64]", "weak f32 = 0.5"],
            &[],
            Ok("f32[n, 64]"),
        ),
        (
            "embedding",
            &["i64[b, t]", "f32[1000, 64]"],
            &[],
            Ok("f32[b, t, 64]"),
        ),
        (
            "embedding",
            &["f32[1000, 64]", "i64[b, t]"],
            &[],
            Ok("f32[b, t, 64]"),
        ),
        (
            "attention",
            &["f32[b, t, 64]", "f32[b, s, 64]", "f32[b, s, 32]"],
            &[],
            Ok("f32[b, t, 32]"),
        ),
        ("mse", &["f32[n, 1]", "f32[n, 1]"], &[], Ok("f32")),
        ("cross_entropy", &["f32[n, 10]", "i64[n]"], &[], Ok("f32")),
        ("nll", &["f64[32, 10]", "i32[32]"], &[], Ok("f64")),
        (
            "binary_cross_entropy_with_logits",
            &["f32[n]", "f32[n]"],
            &[],
            Ok("f32"),
        ),
        (
            "conv2d",
            &["x :: f32[8, 3, 32, 32]", "w :: f32[16, 4, 3, 3]"],
            &[],
            Err("E0307: shapes do not fit `conv2d`: axis 1 is 4, expected 3 | w: has 4 at axis 1"),
        ),
        (
            "conv2d",
            &["x :: f32[3, 32, 32]", "w :: f32[16, 3, 3, 3]"],
            &[],
            Err(
                "E0306: `conv2d` needs rank 4, found rank 3 ([3, 32, 32]) | x: has shape [3, 32, 32]",
            ),
        ),
        (
            "cross_entropy",
            &["f32[n, 10]", "y :: f32[n, 10]"],
            &[],
            Err(
                "E0202: `cross_entropy` needs integer class labels, found f32[n, 10] | y: is f32[n, 10] | hint: convert them: `i64(y)` | hint: for one-hot targets, take the class: `argmax(y, axis: -1)`",
            ),
        ),
        (
            "cross_entropy",
            &["z :: f32[32, 10]", "y :: i64[16]"],
            &[],
            Err(
                "E0307: `cross_entropy` needs labels of shape [32] for logits f32[32, 10], found i64[16] | y: is i64[16] | z: is f32[32, 10]: one row of class scores per label",
            ),
        ),
        (
            "softmax",
            &["x :: f32[3]"],
            &[("axis", "weak i64 = 1")],
            Err("E0801: axis 1 is out of range for f32[3] (rank 1) | v0: axis 1 | x: is f32[3]"),
        ),
        (
            "batch_norm",
            &["x :: f32[n, 16, 8, 8]", "w :: f32[8]"],
            &[],
            Err(
                "E0307: `batch_norm` of f32[n, 16, 8, 8] needs a `weight` of shape [16], found f32[8] | w: is f32[8] | x: has 16 channels (axis 1)",
            ),
        ),
    ]);
}

/// Rules fixed against the contract: `logsumexp`'s default axis (LANGUAGE.md §10),
/// `attention`'s masks, the dtypes of normalisation and bias parameters (§3), `einsum`
/// result letters.
#[test]
fn contract_fixes() {
    run(&[
        ("logsumexp", &["f32[3, 4]"], &[], Ok("f32[3]")),
        ("logsumexp", &["i64[b, 3, 4]"], &[], Ok("f32[b, 3]")),
        (
            "logsumexp",
            &["f32[b, 3, 4]"],
            &[("keepdims", "bool = true")],
            Ok("f32[b, 3, 1]"),
        ),
        ("logsumexp", &["f64"], &[], Ok("f64")),
        (
            "logsumexp",
            &["f32[3, 4]"],
            &[("axis", "(weak i64 = 0, weak i64 = 1)")],
            Ok("f32"),
        ),
        (
            "logsumexp",
            &["f32[3, 4]"],
            &[("axis", "weak i64 = 0")],
            Ok("f32[4]"),
        ),
        ("sum", &["f32[3, 4]"], &[], Ok("f32")),
        (
            "attention",
            &["f32[t, 8]", "f32[s, 8]", "f32[s, 4]", "bool[t, s]"],
            &[],
            Ok("f32[t, 4]"),
        ),
        (
            "attention",
            &[
                "f32[b, t, 8]",
                "f32[b, s, 8]",
                "f32[b, s, 4]",
                "bool[b, 1, s]",
            ],
            &[],
            Ok("f32[b, t, 4]"),
        ),
        (
            "attention",
            &["f32[3, 8]", "f32[5, 8]", "f32[5, 4]", "f64[5]"],
            &[],
            Ok("f32[3, 4]"),
        ),
        (
            "attention",
            &["f32[3, 8]", "f32[5, 8]", "f32[5, 4]", "weak bool = true"],
            &[],
            Ok("f32[3, 4]"),
        ),
        (
            "attention",
            &[
                "q :: f32[3, 8]",
                "f32[5, 8]",
                "f32[5, 4]",
                "m :: bool[2, 3, 5]",
            ],
            &[],
            Err(
                "E0307: `attention`'s mask bool[2, 3, 5] does not broadcast to the scores f32[3, 5] | m: is bool[2, 3, 5] | q: the scores q @ k.T are [3, 5]",
            ),
        ),
        (
            "attention",
            &["q :: f32[1, 8]", "f32[5, 8]", "f32[5, 4]", "m :: i64[3, 5]"],
            &[],
            Err(
                "E0307: `attention`'s mask i64[3, 5] does not broadcast to the scores f32[1, 5] | m: is i64[3, 5] | q: the scores q @ k.T are [1, 5]",
            ),
        ),
        (
            "batch_norm",
            &["x :: f32[n, 16]", "w :: f64[16]"],
            &[],
            Err(
                "E0201: dtypes do not mix in `batch_norm`: f64[16] and f32[n, 16] | w: is f64[16] | x: is f32[n, 16] | hint: cast one side: `f32(w)` or `f64(x)`",
            ),
        ),
        (
            "batch_norm",
            &["f32[n, 16]", "i64[16]", "f32[16]"],
            &[],
            Ok("f32[n, 16]"),
        ),
        (
            "layer_norm",
            &["x :: f32[n, 16]", "f32[16]", "b :: f64[16]"],
            &[],
            Err(
                "E0201: dtypes do not mix in `layer_norm`: f64[16] and f32[n, 16] | b: is f64[16] | x: is f32[n, 16] | hint: cast one side: `f32(b)` or `f64(x)`",
            ),
        ),
        (
            "conv2d",
            &["x :: f32[8, 3, 32, 32]", "f32[16, 3, 3, 3]", "b :: f64[16]"],
            &[],
            Err(
                "E0201: dtypes do not mix in `conv2d`: f64[16] and f32[8, 3, 32, 32] | b: is f64[16] | x: is f32[8, 3, 32, 32] | hint: cast one side: `f32(b)` or `f64(x)`",
            ),
        ),
        (
            "einsum",
            &["s :: str \"ij,jk->i,k\"", "f32[2, 3]", "f32[3, 4]"],
            &[],
            Err(
                "E0806: `,` is not an axis letter in the result; the result is one term of letters | s: is \"ij,jk->i,k\"",
            ),
        ),
        (
            "einsum",
            &["s :: str \"ij,jk->kk\"", "f32[2, 3]", "f32[3, 4]"],
            &[],
            Err("E0806: the result names the axis `k` twice | s: is \"ij,jk->kk\""),
        ),
    ]);
}

#[test]
fn data_and_misc() {
    run(&[
        ("load_csv", &["str \"data.csv\""], &[], Ok("f32[?, ?]")),
        ("load_npy", &["str \"x.npy\""], &[], Ok("?")),
        // A model's signature is in its file, which the checker cannot read.
        ("load_model", &["str \"m.msir\""], &[], Ok("?")),
        ("save", &["{w: f32[2]}", "str \"ckpt\""], &[], Ok("()")),
        (
            "batches",
            &["(f32[100, 3], i64[100])", "weak i64 = 10"],
            &[],
            Ok("iter[(f32[?, 3], i64[?])]"),
        ),
        (
            "batches",
            &["(f32[100, 3], i64[100])", "weak i64 = 10"],
            &[("drop_last", "bool = true")],
            Ok("iter[(f32[10, 3], i64[10])]"),
        ),
        (
            "batches",
            &["{x: f32[n, 3], y: f32[n]}", "weak i64 = 10"],
            &[("shuffle", "bool = true")],
            Ok("iter[{x: f32[?, 3], y: f32[?]}]"),
        ),
        (
            "shuffle",
            &["(f32[100, 3], i64[100])"],
            &[],
            Ok("(f32[100, 3], i64[100])"),
        ),
        (
            "split_train_test",
            &["f32[100, 3]", "weak f32 = 0.2"],
            &[],
            Ok("(f32[?, 3], f32[?, 3])"),
        ),
        (
            "arg",
            &["str \"epochs\"", "weak i64 = 30"],
            &[],
            Ok("weak i64"),
        ),
        ("assert", &["bool", "str \"ok\""], &[], Ok("()")),
        (
            "allclose",
            &["{w: f32[2]}", "{w: f32[2]}"],
            &[("rtol", "weak f32 = 0.001")],
            Ok("bool"),
        ),
        ("shape", &["f32[n, 3]"], &[], Ok("(i64 = n, i64 = 3)")),
        ("len", &["f32[n, 3]"], &[], Ok("i64 = n")),
        ("len", &["(f32, f32)"], &[], Ok("i64 = 2")),
        ("dtype", &["i32[2]"], &[], Ok("str \"i32\"")),
        ("time", &[], &[], Ok("f64")),
        ("log_scalar", &["str \"loss\"", "i64", "f32"], &[], Ok("()")),
        ("progress", &["range"], &[], Ok("range")),
        ("progress", &["iter[f32[2]]"], &[], Ok("iter[f32[2]]")),
        ("progress", &["f32[5, 3]"], &[], Ok("iter[f32[3]]")),
        ("stop_gradient", &["{w: f32[2]}"], &[], Ok("{w: f32[2]}")),
        ("to", &["f32[2]", "str \"cuda:0\""], &[], Ok("f32[2]")),
        ("devices", &[], &[], Ok("iter[str]")),
        (
            "batches",
            &["d :: (f32[100, 3], i64[99])", "weak i64 = 10"],
            &[],
            Err(
                "E0307: `batches` needs every leaf to have the same length: f32[100, 3] has 100 rows, i64[99] has 99 | d: is (f32[100, 3], i64[99])",
            ),
        ),
        (
            "assert",
            &["c :: bool[3]"],
            &[],
            Err(
                "E0202: `assert` needs a scalar bool, found bool[3] | c: is bool[3] | hint: `all(c)` is true when every element is",
            ),
        ),
        (
            "allclose",
            &["a :: (f32, f32)", "b :: (f32,)"],
            &[],
            Err(
                "E0640: structures do not match for `-`: tuples of 2 and 1 elements | a: is (f32, f32) | b: is (f32,)",
            ),
        ),
        (
            "len",
            &["x :: f32"],
            &[],
            Err("E0306: `len` needs at least one axis, found the scalar f32 | x: is f32"),
        ),
    ]);
}

#[test]
fn every_listed_builtin_is_known() {
    // The names of LANGUAGE.md §10 (first-order ones are typed here; the rest are the
    // walker's).
    let listed = "zeros ones full arange linspace eye rand randn randint zeros_like ones_like seed \
        floor_div neg abs exp log log1p sqrt rsqrt sin cos tanh sigmoid relu gelu silu softplus sign \
        floor ceil round maximum minimum where clip isnan isfinite logical_and logical_or logical_not \
        sum mean prod max min argmax argmin var std logsumexp all any reshape transpose expand_dims \
        squeeze concat stack split flatten broadcast_to pad one_hot take gather matmul dot outer einsum \
        softmax log_softmax conv2d max_pool2d avg_pool2d layer_norm batch_norm dropout embedding attention \
        mse cross_entropy nll binary_cross_entropy_with_logits load_csv load_npy save_npy load_idx batches \
        shuffle split_train_test arg save load log_scalar log_histogram log_text progress print assert \
        allclose shape len dtype time grad value_and_grad vjp jvp hessian jit map map2 stop_gradient to \
        device devices f32 f64 i32 i64 bool";
    for name in listed.split_whitespace() {
        assert!(
            builtins::names().contains(&name),
            "{name} missing from names()"
        );
        let first_order = !builtins::HIGHER_ORDER.contains(&name);
        let typed = builtins::call("", name, &[], &[], lang::Span::default()).is_some();
        assert_eq!(typed, first_order, "{name}");
    }
}
