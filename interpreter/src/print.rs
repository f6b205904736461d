//! NumPy-style text for tensors: what `print(x)` and the REPL show.
//!
//! The form follows NumPy's `repr`, adapted to MindScript's type syntax:
//!
//! - A tensor of rank ≥ 1 prints its type (`f32[2, 3]`, as annotations write it) on the
//!   first line and its values below, in nested brackets separated by `, `:
//!
//!   ```text
//!   f32[2, 3]
//!   [[ 1.0000,  2.0000, -3.0000],
//!    [ 4.0000,  5.0000,  6.0000]]
//!   ```
//!
//! - A scalar (rank 0) prints on one line as its type and its value: `f32 3.5000`,
//!   `i64 7`, `bool true`, because the language writes the type of a scalar as `f32`.
//! - A tensor with no elements prints its type and `[]`: `f32[0, 3]` then `[]`.
//! - Every value of one tensor is right-aligned to one common width, so columns line up.
//! - Floats (`f32` and `f64` alike) use fixed notation with exactly `precision` digits after
//!   the point, unless the largest finite magnitude is at least `1e8` or the smallest
//!   finite non-zero magnitude is below `1e-4`: then the whole tensor uses scientific
//!   notation (`1.2346e+08`), with exponents padded to a common number of digits (at
//!   least two). Non-finite values print as `nan`, `inf` and `-inf` and do not take part in
//!   that decision. Negative zero keeps its sign (`-0.0000`). Unlike NumPy, a large ratio
//!   between the largest and the smallest magnitude does not switch to scientific
//!   notation: with a fixed number of digits, `[1.0000, 2000.0000]` loses nothing and is
//!   easier to read than `[1.0000e+00, 2.0000e+03]`. With `precision` 0 the point stays
//!   (`2.`, `2.e+00`), as in NumPy, so floats never read like integers. Ties round to even
//!   on the exact binary value (`0.5` → `0.`, `2.5` → `2.`).
//! - Integers print without decimals, booleans as `true` and `false`.
//! - A tensor with more than `threshold` elements is elided: every axis longer than
//!   `2 * edge_items` shows its first and last `edge_items` entries with `...` between them.
//!   Only the elements shown are read, so printing a huge (for example broadcast) tensor
//!   costs no more than printing a small one. The column width and the choice between
//!   fixed and scientific notation are decided by the shown elements only, as in NumPy.
//!   With `edge_items` 0 an elided tensor prints `[...]`.
//! - Blocks of rank ≥ 2 are separated by `rank - 1` line breaks, so the 2-D blocks of a 3-D
//!   tensor have a blank line between them.
//! - Rows longer than `line_width` wrap after a separator, and continue under the first
//!   element of the row.
//!
//! Tensors whose values cannot be read on the host (a dtype the CPU does not hold, such as
//! `bf16`, or memory on another device) print their type and `<values unavailable>`.
//! Nothing here panics, whatever the shape or the options.

use std::fmt::Write as _;

use devices::{Elem, Tensor};
use ir::DType;

/// The most digits after the point that [`PrintOptions::precision`] gives. More are never
/// meaningful for an `f64`, and an unbounded request would make one number arbitrarily
/// long.
pub const MAX_PRECISION: usize = 100;

/// How tensors print; the defaults are NumPy's `set_printoptions` defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrintOptions {
    /// Tensors with more elements than this are elided with `...`.
    pub threshold: usize,
    /// How many entries an elided axis shows at each end.
    pub edge_items: usize,
    /// Digits after the point for floats (capped at [`MAX_PRECISION`]).
    pub precision: usize,
    /// The width in characters at which rows wrap.
    pub line_width: usize,
}

impl Default for PrintOptions {
    fn default() -> PrintOptions {
        PrintOptions {
            threshold: 1000,
            edge_items: 3,
            precision: 4,
            line_width: 80,
        }
    }
}

/// The text of a tensor with the default [`PrintOptions`] (see the module documentation
/// for the form).
pub fn format_tensor(t: &Tensor) -> String {
    format_tensor_with(t, &PrintOptions::default())
}

/// The text of a tensor with the given options (see the module documentation for the
/// form).
pub fn format_tensor_with(t: &Tensor, opts: &PrintOptions) -> String {
    // A tensor on a GPU is copied out (the part its layout reaches) and shown from there.
    let host;
    let t = if t.device() == devices::DeviceId::Cpu {
        t
    } else {
        host = t.to_host().ok();
        host.as_ref().unwrap_or(t)
    };
    let shape = t.shape();
    let mut out = String::new();
    out.push_str(t.dtype().name());
    if !shape.is_empty() {
        // The shape is written like an annotation so that the header reads as the type.
        out.push('[');
        for (i, d) in shape.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            // Writing to a `String` cannot fail.
            let _ = write!(out, "{d}");
        }
        out.push(']');
    }
    out.push(if shape.is_empty() { ' ' } else { '\n' });

    // A zero-sized dim means there is nothing to read, whatever the other dims are.
    if shape.contains(&0) {
        out.push_str("[]");
        return out;
    }
    let axes = shown_axes(shape, opts);
    match shown_cells(t, &axes, opts) {
        Some(cells) if shape.is_empty() => out.push_str(cells.first().map_or("", String::as_str)),
        Some(cells) => render(&mut out, &axes, &cells, opts),
        None => out.push_str("<values unavailable>"),
    }
    out
}

/// One entry shown along an axis: an index, or the `...` that stands for the elided ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Index(usize),
    Ellipsis,
}

/// The entries shown along each axis. Which entries show depends only on the axis length,
/// so the shown elements are the product of these lists.
fn shown_axes(shape: &[usize], opts: &PrintOptions) -> Vec<Vec<Entry>> {
    // A product that overflows `usize` is certainly over the threshold; such a tensor can
    // exist as a broadcast view even though it could never be allocated.
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let summarize = numel.is_none_or(|n| n > opts.threshold);
    let e = opts.edge_items;
    shape
        .iter()
        .map(|&n| {
            if summarize && e.saturating_mul(2) < n {
                let mut v: Vec<Entry> = (0..e).map(Entry::Index).collect();
                v.push(Entry::Ellipsis);
                v.extend((n - e..n).map(Entry::Index));
                v
            } else {
                (0..n).map(Entry::Index).collect()
            }
        })
        .collect()
}

/// The formatted shown elements in C order, or `None` when the values cannot be read.
fn shown_cells(t: &Tensor, axes: &[Vec<Entry>], opts: &PrintOptions) -> Option<Vec<String>> {
    let precision = opts.precision.min(MAX_PRECISION);
    Some(match t.dtype() {
        DType::F32 => format_floats(&gather::<f32>(t, axes)?, precision),
        DType::F64 => format_floats(&gather::<f64>(t, axes)?, precision),
        DType::I32 => gather::<i32>(t, axes)?.iter().map(i32::to_string).collect(),
        DType::I64 => gather::<i64>(t, axes)?.iter().map(i64::to_string).collect(),
        DType::Bool => gather::<bool>(t, axes)?
            .iter()
            .map(bool::to_string)
            .collect(),
        DType::BF16 | DType::F16 => return None,
    })
}

/// Reads the shown elements (every index combination of `axes`, ellipses skipped) in C
/// order through a strided view, so views print without a copy of the whole tensor.
fn gather<T: Elem>(t: &Tensor, axes: &[Vec<Entry>]) -> Option<Vec<T>> {
    let view = t.view::<T>()?;
    let lists: Vec<Vec<usize>> = axes
        .iter()
        .map(|a| {
            a.iter()
                .filter_map(|e| match e {
                    Entry::Index(i) => Some(*i),
                    Entry::Ellipsis => None,
                })
                .collect()
        })
        .collect();
    // An odometer over positions in `lists` (rather than recursion) keeps the stack flat
    // for tensors of any rank.
    // With no edge items an elided axis shows no element at all.
    let Some(mut idx) = lists
        .iter()
        .map(|l| l.first().copied())
        .collect::<Option<Vec<_>>>()
    else {
        return Some(Vec::new());
    };
    let mut pos = vec![0usize; lists.len()];
    let mut out = Vec::new();
    loop {
        out.push(*view.get(idx.as_slice())?);
        let mut k = lists.len();
        loop {
            if k == 0 {
                return Some(out);
            }
            k -= 1;
            pos[k] += 1;
            if pos[k] < lists[k].len() {
                idx[k] = lists[k][pos[k]];
                break;
            }
            pos[k] = 0;
            idx[k] = lists[k].first().copied().unwrap_or(0);
        }
    }
}

/// Formats floats with one notation for all of them, chosen by the finite non-zero
/// magnitudes (see the module documentation).
fn format_floats<T: Elem>(values: &[T], precision: usize) -> Vec<String> {
    let values: Vec<f64> = values.iter().map(|v| v.to_f64()).collect();
    let mut max = 0.0f64;
    let mut min = f64::INFINITY;
    for a in values.iter().map(|v| v.abs()) {
        if a.is_finite() && a != 0.0 {
            max = max.max(a);
            min = min.min(a);
        }
    }
    let scientific = max >= 1e8 || min < 1e-4;
    // With no digits after the point the point itself stays (`2.`, `2.e+00`), as in NumPy,
    // so that a float tensor never reads like an integer one.
    let point = if precision == 0 { "." } else { "" };
    if !scientific {
        return values
            .iter()
            .map(|&v| match special(v) {
                Some(s) => s.to_string(),
                None => format!("{v:.precision$}{point}"),
            })
            .collect();
    }
    // Rust writes `1.2346e8`; split the mantissa from the exponent so that the exponents can
    // be given a sign and padded to a common number of digits, as NumPy does.
    let parts: Vec<Result<(String, i32), &str>> = values
        .iter()
        .map(|&v| match special(v) {
            Some(s) => Err(s),
            None => {
                let s = format!("{v:.precision$e}");
                let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                Ok((format!("{m}{point}"), e.parse().unwrap_or(0)))
            }
        })
        .collect();
    let digits = parts
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .map(|(_, e)| e.unsigned_abs().to_string().len())
        .fold(2, usize::max);
    parts
        .into_iter()
        .map(|p| match p {
            Ok((m, e)) => {
                let sign = if e < 0 { '-' } else { '+' };
                format!("{m}e{sign}{:0digits$}", e.unsigned_abs())
            }
            Err(s) => s.to_string(),
        })
        .collect()
}

/// The text of a non-finite float, or `None` for a finite one.
fn special(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("nan")
    } else if v == f64::INFINITY {
        Some("inf")
    } else if v == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

/// Writes the nested brackets of a tensor of rank ≥ 1 with no zero-sized dim, following
/// NumPy's `_formatArray`: the row at depth `d` starts after `d + 1` characters (its
/// opening brackets, or the indentation under them), so every line of a row can be
/// measured from the same start.
fn render(out: &mut String, axes: &[Vec<Entry>], cells: &[String], opts: &PrintOptions) {
    let rank = axes.len();
    let width = cells.iter().map(String::len).max().unwrap_or(0);
    let mut cells = cells.iter();
    // With no edge items an elided tensor has nothing but the ellipsis to show.
    if axes.iter().any(|a| a.first() == Some(&Entry::Ellipsis)) {
        out.push_str("[...]");
        return;
    }
    // The position along each open axis. An explicit stack rather than recursion keeps
    // the native stack flat for tensors of any rank.
    let mut pos: Vec<usize> = Vec::with_capacity(rank);
    loop {
        // Descend to a row; every axis starts with an index, checked above.
        while pos.len() < rank {
            out.push('[');
            pos.push(0);
        }
        render_row(out, &axes[rank - 1], &mut cells, width, rank - 1, opts);
        // Ascend until an axis has a next block, writing the separators and ellipses
        // between blocks and the closing brackets of finished axes.
        pos.pop();
        loop {
            let Some(d) = pos.len().checked_sub(1) else {
                return;
            };
            pos[d] += 1;
            match axes[d].get(pos[d]) {
                Some(entry) => {
                    block_separator(out, rank - d, d);
                    if *entry == Entry::Ellipsis {
                        out.push_str("...");
                        continue;
                    }
                    break;
                }
                None => {
                    out.push(']');
                    pos.pop();
                }
            }
        }
    }
}

/// Between two blocks of an axis with `axes_left` axes below and including it, at depth
/// `d`: a comma, `axes_left - 1` line breaks (so 3-D blocks have a blank line between
/// them), and the indentation under the block's opening bracket.
fn block_separator(out: &mut String, axes_left: usize, d: usize) {
    out.push(',');
    out.extend(std::iter::repeat_n('\n', axes_left - 1));
    out.extend(std::iter::repeat_n(' ', d + 1));
}

/// Writes one innermost row at depth `d`, its closing bracket included, wrapping before an
/// element that would pass the line width (NumPy's `_extendLine`).
fn render_row<'a>(
    out: &mut String,
    entries: &[Entry],
    cells: &mut impl Iterator<Item = &'a String>,
    width: usize,
    d: usize,
    opts: &PrintOptions,
) {
    let indent = d + 1;
    // Each line of the row must leave room for the `,` or `]` after its last element and
    // for the closing brackets of the enclosing axes.
    let limit = opts.line_width.saturating_sub(d + 1);
    let mut line = indent;
    for (k, entry) in entries.iter().enumerate() {
        let word: std::borrow::Cow<'_, str> = match entry {
            Entry::Index(_) => {
                let cell = cells.next().map_or("", String::as_str);
                format!("{cell:>width$}").into()
            }
            Entry::Ellipsis => "...".into(),
        };
        if k > 0 {
            // The separator's space counts towards the line, as in NumPy, but is dropped
            // when the line breaks so that no line ends in a space.
            if line + word.len() > limit {
                out.push('\n');
                out.extend(std::iter::repeat_n(' ', indent));
                line = indent;
            } else {
                out.push(' ');
            }
        }
        out.push_str(&word);
        line += word.len();
        if k + 1 < entries.len() {
            out.push(',');
            line += 2;
        }
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::cpu::Limits;
    use devices::{CpuDevice, Device};
    use ir::{Op, Shape, SliceDim};

    /// A contiguous host tensor of `dtype` whose elements are `values` converted like a
    /// cast.
    fn tensor_from(shape: &[usize], values: &[f64], dtype: DType) -> Tensor {
        fn make<T: Elem>(shape: &[usize], values: &[f64]) -> Tensor {
            let data = values.iter().map(|&v| T::from_f64(v)).collect();
            Tensor::from_vec::<T>(data, shape).expect("values fill the shape")
        }
        match dtype {
            DType::F32 => make::<f32>(shape, values),
            DType::F64 => make::<f64>(shape, values),
            DType::I32 => make::<i32>(shape, values),
            DType::I64 => make::<i64>(shape, values),
            DType::Bool => make::<bool>(shape, values),
            DType::BF16 | DType::F16 => panic!("no host tensors of {dtype}"),
        }
    }

    /// `0.0, 1.0, ..., n - 1` as a tensor of `shape`.
    fn arange(shape: &[usize], dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        tensor_from(shape, &(0..n).map(|i| i as f64).collect::<Vec<_>>(), dtype)
    }

    #[track_caller]
    fn check(t: Tensor, expected: &str) {
        check_with(t, &PrintOptions::default(), expected);
    }

    #[track_caller]
    fn check_with(t: Tensor, opts: &PrintOptions, expected: &str) {
        let got = format_tensor_with(&t, opts);
        assert_eq!(
            got, expected,
            "\n--- got ---\n{got}\n--- expected ---\n{expected}\n"
        );
    }

    #[test]
    fn scalars() {
        let cases: &[(f64, DType, &str)] = &[
            (3.5, DType::F32, "f32 3.5000"),
            (-3.5, DType::F64, "f64 -3.5000"),
            (0.0, DType::F32, "f32 0.0000"),
            (-0.0, DType::F32, "f32 -0.0000"),
            (1.23456e8, DType::F64, "f64 1.2346e+08"),
            (1e-5, DType::F32, "f32 1.0000e-05"),
            (f64::NAN, DType::F32, "f32 nan"),
            (f64::NEG_INFINITY, DType::F64, "f64 -inf"),
            (7.0, DType::I64, "i64 7"),
            (-7.0, DType::I32, "i32 -7"),
            (1.0, DType::Bool, "bool true"),
        ];
        for &(v, dtype, expected) in cases {
            check(tensor_from(&[], &[v], dtype), expected);
        }
        check(Tensor::scalar(i64::MIN), "i64 -9223372036854775808");
    }

    #[test]
    fn one_d() {
        let cases: &[(&[f64], DType, &str)] = &[
            (
                &[1.0, 2.0, 3.0],
                DType::F32,
                "f32[3]\n[1.0000, 2.0000, 3.0000]",
            ),
            (
                &[1.0, -2.5, 30.0],
                DType::F64,
                "f64[3]\n[ 1.0000, -2.5000, 30.0000]",
            ),
            (&[0.1], DType::F32, "f32[1]\n[0.1000]"),
            (&[0.0, -0.0], DType::F32, "f32[2]\n[ 0.0000, -0.0000]"),
            (&[1.0, -20.0, 300.0], DType::I64, "i64[3]\n[  1, -20, 300]"),
            (&[1.0, 0.0], DType::Bool, "bool[2]\n[ true, false]"),
            (&[1.0, 1.0], DType::Bool, "bool[2]\n[true, true]"),
        ];
        for &(values, dtype, expected) in cases {
            check(tensor_from(&[values.len()], values, dtype), expected);
        }
    }

    #[test]
    fn two_d() {
        check(
            tensor_from(&[2, 3], &[1.0, 2.0, -3.0, 4.0, 5.0, 6.0], DType::F32),
            "f32[2, 3]\n[[ 1.0000,  2.0000, -3.0000],\n [ 4.0000,  5.0000,  6.0000]]",
        );
        check(
            arange(&[3, 4], DType::I32),
            "i32[3, 4]\n[[ 0,  1,  2,  3],\n [ 4,  5,  6,  7],\n [ 8,  9, 10, 11]]",
        );
        check(arange(&[1, 1], DType::I64), "i64[1, 1]\n[[0]]");
        check(
            tensor_from(&[2, 2], &[1.0, 0.0, 0.0, 1.0], DType::Bool),
            "bool[2, 2]\n[[ true, false],\n [false,  true]]",
        );
    }

    #[test]
    fn three_d_and_more() {
        check(
            arange(&[2, 2, 3], DType::I64),
            "i64[2, 2, 3]\n\
             [[[ 0,  1,  2],\n  [ 3,  4,  5]],\n\n \
             [[ 6,  7,  8],\n  [ 9, 10, 11]]]",
        );
        check(
            arange(&[2, 1, 1, 2], DType::I64),
            "i64[2, 1, 1, 2]\n[[[[0, 1]]],\n\n\n [[[2, 3]]]]",
        );
        check(
            arange(&[1, 1, 1, 1, 1], DType::F32),
            "f32[1, 1, 1, 1, 1]\n[[[[[0.0000]]]]]",
        );
    }

    #[test]
    fn floats() {
        let cases: &[(&[f64], &str)] = &[
            // The precision rounds (to nearest, on the exact binary value).
            (&[1.23456, -0.00015], "[ 1.2346, -0.0001]"),
            (&[99999999.0], "[99999999.0000]"),
            // Scientific notation applies to the whole tensor.
            (&[1.0, 1.23456e8], "[1.0000e+00, 1.2346e+08]"),
            (&[0.5, 1e-5, 0.0], "[5.0000e-01, 1.0000e-05, 0.0000e+00]"),
            (&[-1e-5, 2.0], "[-1.0000e-05,  2.0000e+00]"),
            // Exponents share their number of digits.
            (
                &[1e300, 1e8, -1e-300],
                "[ 1.0000e+300,  1.0000e+008, -1.0000e-300]",
            ),
            // Non-finite values are aligned like the others and do not choose the notation.
            (
                &[f64::NAN, 1.5, f64::INFINITY, f64::NEG_INFINITY],
                "[   nan, 1.5000,    inf,   -inf]",
            ),
            (&[f64::NAN, 1e9], "[       nan, 1.0000e+09]"),
            (&[f64::NAN, f64::INFINITY], "[nan, inf]"),
            (&[f64::MAX, f64::MIN_POSITIVE], "[1.7977e+308, 2.2251e-308]"),
            (&[1.0, 2000.0], "[   1.0000, 2000.0000]"),
        ];
        for &(values, expected) in cases {
            let t = tensor_from(&[values.len()], values, DType::F64);
            check(t, &format!("f64[{}]\n{expected}", values.len()));
        }
        // f32 values print their exact value like f64 ones, at the requested precision.
        let opts = PrintOptions {
            precision: 10,
            ..PrintOptions::default()
        };
        check_with(
            tensor_from(&[2], &[0.1, 0.5], DType::F32),
            &opts,
            "f32[2]\n[0.1000000015, 0.5000000000]",
        );
        let opts = PrintOptions {
            precision: 0,
            ..PrintOptions::default()
        };
        check_with(
            tensor_from(&[3], &[1.5, -2.0, 1e9], DType::F32),
            &opts,
            "f32[3]\n[ 2.e+00, -2.e+00,  1.e+09]",
        );
        check_with(
            tensor_from(&[3], &[0.5, 2.5, -10.0], DType::F64),
            &opts,
            "f64[3]\n[  0.,   2., -10.]",
        );
    }

    #[test]
    fn elision() {
        check(
            arange(&[2000], DType::I64),
            "i64[2000]\n[   0,    1,    2, ..., 1997, 1998, 1999]",
        );
        check(
            arange(&[100, 100], DType::I32),
            "i32[100, 100]\n\
             [[   0,    1,    2, ...,   97,   98,   99],\n \
             [ 100,  101,  102, ...,  197,  198,  199],\n \
             [ 200,  201,  202, ...,  297,  298,  299],\n \
             ...,\n \
             [9700, 9701, 9702, ..., 9797, 9798, 9799],\n \
             [9800, 9801, 9802, ..., 9897, 9898, 9899],\n \
             [9900, 9901, 9902, ..., 9997, 9998, 9999]]",
        );
        // Short axes of an elided tensor show in full.
        check(
            arange(&[2, 1000], DType::I64),
            "i64[2, 1000]\n[[   0,    1,    2, ...,  997,  998,  999],\n \
             [1000, 1001, 1002, ..., 1997, 1998, 1999]]",
        );
        let opts = PrintOptions {
            threshold: 5,
            edge_items: 1,
            ..PrintOptions::default()
        };
        check_with(
            arange(&[3, 3, 3], DType::I64),
            &opts,
            "i64[3, 3, 3]\n[[[ 0, ...,  2],\n  ...,\n  [ 6, ...,  8]],\n\n ...,\n\n \
             [[18, ..., 20],\n  ...,\n  [24, ..., 26]]]",
        );
        // A tensor at the threshold is not elided.
        check_with(arange(&[5], DType::I64), &opts, "i64[5]\n[0, 1, 2, 3, 4]");
        // The notation is decided by the shown elements only.
        let mut values = vec![1e-9; 2000];
        values[0] = 1.0;
        values[1999] = 2.0;
        values[3] = 1e-9;
        let opts = PrintOptions {
            edge_items: 1,
            ..PrintOptions::default()
        };
        check_with(
            tensor_from(&[2000], &values, DType::F32),
            &opts,
            "f32[2000]\n[1.0000, ..., 2.0000]",
        );
        let opts = PrintOptions {
            edge_items: 0,
            ..PrintOptions::default()
        };
        check_with(arange(&[2000], DType::I64), &opts, "i64[2000]\n[...]");
        check_with(arange(&[20, 100], DType::I64), &opts, "i64[20, 100]\n[...]");
    }

    #[test]
    fn empty() {
        check(tensor_from(&[0, 3], &[], DType::F32), "f32[0, 3]\n[]");
        check(tensor_from(&[0], &[], DType::I64), "i64[0]\n[]");
        check(
            tensor_from(&[2, 0, 4], &[], DType::Bool),
            "bool[2, 0, 4]\n[]",
        );
    }

    #[test]
    fn wide_rows() {
        check(
            arange(&[30], DType::F64),
            "f64[30]\n\
             [ 0.0000,  1.0000,  2.0000,  3.0000,  4.0000,  5.0000,  6.0000,  7.0000,\n  \
             8.0000,  9.0000, 10.0000, 11.0000, 12.0000, 13.0000, 14.0000, 15.0000,\n \
             16.0000, 17.0000, 18.0000, 19.0000, 20.0000, 21.0000, 22.0000, 23.0000,\n \
             24.0000, 25.0000, 26.0000, 27.0000, 28.0000, 29.0000]",
        );
        let opts = PrintOptions {
            line_width: 20,
            ..PrintOptions::default()
        };
        check_with(
            arange(&[2, 8], DType::I64),
            &opts,
            "i64[2, 8]\n[[ 0,  1,  2,  3,\n   4,  5,  6,  7],\n [ 8,  9, 10, 11,\n  12, 13, 14, 15]]",
        );
        // An element wider than the line still goes on a line of its own, once.
        let opts = PrintOptions {
            line_width: 3,
            ..PrintOptions::default()
        };
        check_with(
            tensor_from(&[2], &[12345.0, 1.0], DType::I64),
            &opts,
            "i64[2]\n[12345,\n     1]",
        );
        let opts = PrintOptions {
            line_width: 0,
            ..PrintOptions::default()
        };
        check_with(
            arange(&[2, 2], DType::I64),
            &opts,
            "i64[2, 2]\n[[0,\n  1],\n [2,\n  3]]",
        );
    }

    #[test]
    fn views_print_their_logical_elements() {
        let cpu = CpuDevice::new();
        let x = arange(&[2, 3], DType::I64);
        let t = cpu
            .exec(&Op::Transpose { perm: vec![1, 0] }, &[&x])
            .expect("transpose");
        check(t, "i64[3, 2]\n[[0, 3],\n [1, 4],\n [2, 5]]");
        // A negative step reads the buffer backwards.
        let reversed = Op::Slice {
            dims: vec![
                SliceDim::full(2),
                SliceDim {
                    start: 2,
                    len: 3,
                    step: -1,
                },
            ],
        };
        let t = cpu.exec(&reversed, &[&x]).expect("slice");
        check(t, "i64[2, 3]\n[[2, 1, 0],\n [5, 4, 3]]");
        // A broadcast view far too large to materialise prints its corners only. The
        // device's cap on result sizes is lifted because a view allocates nothing.
        let cpu = CpuDevice::with_limits(Limits {
            max_tensor_bytes: u64::MAX,
        });
        let s = Tensor::scalar(1.5f32);
        let big = Shape::known(&[1 << 12, 1 << 12, 1 << 4]);
        let t = cpu
            .exec(&Op::Broadcast { shape: big }, &[&s])
            .expect("broadcast is a view");
        let text = format_tensor(&t);
        assert!(text.starts_with("f32[4096, 4096, 16]\n[[[1.5000, 1.5000, 1.5000, ..., 1.5000"));
        // The header, 6 blocks of 6 rows and an ellipsis, the ellipsis between blocks and
        // the 6 blank lines around blocks and that ellipsis.
        assert_eq!(text.lines().count(), 1 + 6 * 7 + 1 + 6, "{text}");
    }

    #[test]
    fn never_panics_on_odd_options() {
        let opts = PrintOptions {
            threshold: 0,
            edge_items: usize::MAX,
            precision: usize::MAX,
            line_width: usize::MAX,
        };
        let text = format_tensor_with(&tensor_from(&[2], &[1.0, 2.0], DType::F64), &opts);
        assert!(text.starts_with("f64[2]\n[1.0000"), "{text}");
        let t = arange(&[1; 300], DType::I32);
        let text = format_tensor(&t);
        assert!(text.ends_with(&format!("{}0{}", "[".repeat(300), "]".repeat(300))));
    }
}
