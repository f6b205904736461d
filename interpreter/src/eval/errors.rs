//! Runtime errors as diagnostics (codes E09xx), and the control flow that unwinds the
//! evaluator (`break`, `continue`, `return`, errors).
//!
//! Codes (each has `lang/explain/EXXXX.md` and a failing program in `tests/run/`):
//!
//! | code  | what |
//! |-------|------|
//! | E0901 | an index out of range at run time (the index, the axis and its size) |
//! | E0902 | integer division or remainder by zero |
//! | E0903 | a failed `assert` |
//! | E0904 | calls nested deeper than the limit (runaway recursion) |
//! | E0905 | a tensor larger than the device allows |
//! | E0906 | a builtin or feature that is not available yet (none is left today: the code is reserved) |
//! | E0907 | a value that does not fit an operation at run time (where the checker could not know) |
//! | E0908 | an integer raised to a negative power |
//! | E0909 | an argument whose value is invalid (`arange` step 0, uneven `split`, ...) |
//! | E0910 | a name with no value (the entry that defined it stopped with an error) |
//! | E0911 | the computation was interrupted (Ctrl-C) |
//! | E0912 | a data file that cannot be read, parsed or written (`load_csv`, `load_npy`, `load_idx`, `load`, `save`, the event files of `log_*`, ...), an import cycle at run time |
//! | E0914 | eager and staged results differ (`ms run --check-modes`, `stage::check`; no program of `tests/run/` can show it, since the real passes are exact: `interpreter/tests/check_modes.rs` does, with a wrong pass) |
//! | E0999 | an internal error of the evaluator |

use devices::DeviceError;
use lang::{Diagnostic, Span};

use super::Eval;

/// Why evaluation left the normal path.
#[derive(Debug)]
pub(crate) enum Flow {
    /// `break` out of the innermost loop.
    Break,
    /// `continue` with the next iteration.
    Continue,
    /// `return` from the innermost function, with its value.
    Return(crate::value::Value),
    /// A `break`, `continue` or `return` taken on some run-time paths only, in staged code
    /// (`stage::exits`): the enclosing statements, loop or call finish it.
    Exit(Box<crate::stage::exits::Outcome>),
    /// A runtime error.
    Error(Box<RtError>),
}

/// A runtime error on its way to the top: the diagnostic, and whether the call stack has
/// been attached yet (by the innermost call it left).
#[derive(Debug)]
pub(crate) struct RtError {
    pub diag: Diagnostic,
    pub traced: bool,
}

/// The result of evaluating something.
pub(crate) type R<T> = Result<T, Flow>;

impl Flow {
    /// A runtime error with this diagnostic.
    pub fn error(d: Diagnostic) -> Flow {
        Flow::Error(Box::new(RtError {
            diag: d,
            traced: false,
        }))
    }
}

/// Attaches the call stack and the source name to an error leaving the innermost call.
/// The spans of the error index the source of that call's code, which may be an earlier
/// REPL entry: `file` names it then.
pub(crate) fn trace(e: &mut RtError, ev: &Eval<'_>) {
    if e.traced {
        return;
    }
    e.traced = true;
    if e.diag.file.is_none() && ev.src != ev.main_src {
        e.diag.file = super::source_name(ev.st, ev.src);
    }
    if ev.stack.is_empty() {
        return;
    }
    // Runs of the same call (a recursion) show once with a count, and a long stack keeps
    // its innermost and outermost frames.
    let mut runs: Vec<(String, usize)> = Vec::new();
    for f in ev.stack.iter().rev() {
        let at = ev
            .st
            .sources
            .get(f.call_src)
            .map_or_else(String::new, |(name, text)| {
                let (line, col) = line_col(text, f.call.start);
                if f.call_src == ev.main_src {
                    format!(" at {line}:{col}")
                } else {
                    format!(" at {name}:{line}:{col}")
                }
            });
        let line = format!("`{}` called{at}", f.name);
        match runs.last_mut() {
            Some((l, n)) if *l == line => *n += 1,
            _ => runs.push((line, 1)),
        }
    }
    const KEEP: usize = 6;
    let shown = |(l, n): &(String, usize)| {
        if *n > 1 {
            format!("  {l} ({n} times)")
        } else {
            format!("  {l}")
        }
    };
    let mut lines = vec!["call stack, innermost first:".to_string()];
    if runs.len() > 2 * KEEP {
        lines.extend(runs.iter().take(KEEP).map(shown));
        lines.push(format!("  ... {} more", runs.len() - 2 * KEEP));
        lines.extend(runs.iter().skip(runs.len() - KEEP).map(shown));
    } else {
        lines.extend(runs.iter().map(shown));
    }
    e.diag.notes.push(lines.join("\n"));
}

/// 1-based line and column (in characters) of byte `pos` in `text`.
pub(crate) fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = text.get(..pos.min(text.len())).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A device error as a diagnostic at `span`.
pub(crate) fn from_device(e: DeviceError, span: Span) -> Diagnostic {
    match e {
        DeviceError::IndexOutOfRange {
            index, axis, size, ..
        } => index_out_of_range(index, axis, size, span),
        DeviceError::DivisionByZero { .. } => {
            Diagnostic::error("E0902", "integer division by zero", span)
                .with_primary_label("the divisor holds a zero")
                .with_hint(
                    "divide floats instead (`/` on integers gives f32), or test the divisor first",
                )
        }
        DeviceError::NegativeIntPower { exponent, .. } => Diagnostic::error(
            "E0908",
            format!("an integer cannot be raised to the negative power {exponent}"),
            span,
        )
        .with_primary_label(format!("exponent {exponent}"))
        .with_hint("use a float base: `f32(x) ** n`"),
        DeviceError::Alloc {
            op,
            shape,
            dtype,
            bytes,
            reason,
        } => Diagnostic::error(
            "E0905",
            format!(
                "`{op}` would make a tensor of {dtype}{shape} ({}), which is too large",
                bytes_text(bytes)
            ),
            span,
        )
        .with_primary_label("this tensor is too large")
        .with_note(reason),
        DeviceError::Interrupted => interrupted_diag(span),
        other => {
            Diagnostic::error("E0907", other.to_string(), span).with_primary_label("failed here")
        }
    }
}

/// E0911: Ctrl-C asked the computation to stop (`devices::cancel`), seen at `span`.
pub(crate) fn interrupted(span: Span) -> Flow {
    Flow::error(interrupted_diag(span))
}

fn interrupted_diag(span: Span) -> Diagnostic {
    Diagnostic::error("E0911", "interrupted (Ctrl-C)", span)
        .with_primary_label("stopped here")
        .with_note(
            "what ran before keeps its effects; a variable being assigned keeps its old value",
        )
}

fn bytes_text(b: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if b >= GIB {
        format!("{:.1} GiB", b as f64 / GIB as f64)
    } else if b >= MIB {
        format!("{:.1} MiB", b as f64 / MIB as f64)
    } else {
        format!("{b} bytes")
    }
}

/// E0901.
pub(crate) fn index_out_of_range(index: i64, axis: usize, size: usize, span: Span) -> Diagnostic {
    let d = Diagnostic::error(
        "E0901",
        format!("index {index} is out of range for axis {axis} of size {size}"),
        span,
    )
    .with_primary_label(format!("index {index}"));
    if size == 0 {
        d.with_note(format!("axis {axis} is empty: no index is valid"))
    } else {
        d.with_note(format!(
            "valid indices for axis {axis} are 0 to {} (or -{size} to -1 from the end)",
            size - 1
        ))
    }
}

/// E0903: `assert(cond, message)` found `cond` false.
pub(crate) fn assertion(message: Option<&str>, span: Span) -> Flow {
    let text = match message {
        Some(m) => format!("assertion failed: {m}"),
        None => "assertion failed".to_string(),
    };
    Flow::error(Diagnostic::error("E0903", text, span).with_primary_label("this is false"))
}

/// E0904: the call depth limit.
pub(crate) fn too_deep(limit: usize, name: &str, span: Span) -> Flow {
    Flow::error(
        Diagnostic::error(
            "E0904",
            format!("calls nest more than {limit} deep, calling `{name}`"),
            span,
        )
        .with_primary_label("one call too many")
        .with_hint("a recursion that never reaches its base case runs until this limit; check the condition that ends it"),
    )
}

/// E0906: a builtin (or module member, or feature) that is not implemented yet.
pub(crate) fn not_available(what: &str, span: Span) -> Flow {
    let what = if what.starts_with('`') || what.contains(' ') {
        what.to_string()
    } else {
        format!("`{what}`")
    };
    Flow::error(
        Diagnostic::error("E0906", format!("{what} is not available yet"), span)
            .with_primary_label("not available in this version of the interpreter")
            .with_note(
                "the program checks, but this part of the language has no eager implementation yet",
            ),
    )
}

/// E0907: a value that does not fit what is done with it.
pub(crate) fn mismatch(message: String, span: Span) -> Flow {
    Flow::error(Diagnostic::error("E0907", message, span).with_primary_label("failed here"))
}

/// E0909: an argument whose value is not allowed.
pub(crate) fn bad_value(message: String, span: Span) -> Flow {
    Flow::error(Diagnostic::error("E0909", message, span).with_primary_label("this value"))
}

/// E0910: a name whose value does not exist.
pub(crate) fn no_value(name: &str, span: Span) -> Flow {
    Flow::error(
        Diagnostic::error("E0910", format!("`{name}` has no value"), span)
            .with_primary_label("no value")
            .with_note("the entry that defined it stopped with an error before it was set"),
    )
}

/// E0907: an operation whose operands live on two different devices.
pub(crate) fn mixed_devices(
    op: &str,
    (i, a): (usize, devices::DeviceId),
    (j, b): (usize, devices::DeviceId),
    span: Span,
) -> Flow {
    Flow::error(
        Diagnostic::error(
            "E0907",
            format!(
                "`{op}` has operands on two devices: operand {i} is on {a}, operand {j} on {b}"
            ),
            span,
        )
        .with_primary_label("operands on different devices")
        .with_hint(format!("move one of them first, e.g. `to(x, \"{a}\")`")),
    )
}

/// E0999: something the evaluator did not expect.
pub(crate) fn internal(message: &str, span: Span) -> Flow {
    Flow::error(
        Diagnostic::error(
            "E0999",
            format!("internal error of the evaluator: {message}"),
            span,
        )
        .with_note("please report this with the program that caused it"),
    )
}
