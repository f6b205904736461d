//! `log_scalar log_histogram log_text progress` (LANGUAGE.md §10 "Summaries"): the
//! evaluator's side of [`crate::insight`].

use std::sync::Arc;

use lang::{Diagnostic, Span};

use super::Call;
use crate::eval::Eval;
use crate::eval::errors::{Flow, R};
use crate::insight::{self, Kind, LogCall};
use crate::value::Value;

/// `log_scalar(tag, step, value)`, `log_histogram(tag, step, x)`, `log_text(tag, step, s)`:
/// one summary in the session's event file. In staged code the call becomes `print`-like
/// effect nodes whose values are written when the graph runs, on every call.
pub(super) fn log(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let Some(kind) = Kind::of_builtin(c.name) else {
        return Err(crate::eval::errors::internal(
            "not a summary builtin",
            c.span,
        ));
    };
    let tag: Arc<str> = Arc::from(c.string(0)?.unwrap_or_default());
    let (step, value) = (c.req(1)?.clone(), c.req(2)?.clone());
    if ev.staging() {
        let call = LogCall { kind, tag };
        ev.stage_line(&[step, value], c.span, Some(call))?;
        return Ok(Value::Unit);
    }
    write(&mut ev.st.summaries, kind, &tag, &step, &value, c.span)?;
    Ok(Value::Unit)
}

/// Writes one summary, reading `step` and `value` (eager values, or a staged run's).
pub(crate) fn write(
    summaries: &mut insight::Summaries,
    kind: Kind,
    tag: &str,
    step: &Value,
    value: &Value,
    span: Span,
) -> R<()> {
    let step = insight::step_value(step).map_err(|m| crate::eval::errors::mismatch(m, span))?;
    let v =
        insight::summary_value(kind, value).map_err(|m| crate::eval::errors::mismatch(m, span))?;
    summaries
        .log(step, tag, v)
        .map_err(|e| Flow::error(write_error(&e, span)))
}

/// E0912: the event file cannot be made or written.
pub(crate) fn write_error(e: &insight::WriteError, span: Span) -> Diagnostic {
    Diagnostic::error("E0912", format!("summaries: {e}"), span)
        .with_primary_label("writing this summary failed")
        .with_note(
            "summaries go to `runs/<script>-<start time>/` in the working directory; \
             `ms --logdir DIR` chooses another folder",
        )
}

/// `progress(iterable)`: the same items, with a progress bar when a `for` loop runs over
/// it on a terminal ([`crate::insight::progress`]).
pub(super) fn progress(_: &mut Eval<'_>, c: &Call) -> R<Value> {
    let it = c.req(0)?;
    // Checks now that it can be iterated, so that a mistake shows at the call.
    super::iter_len(it, c.span(0))?;
    Ok(match it {
        Value::Progress(_) => it.clone(),
        other => Value::Progress(Arc::new(other.clone())),
    })
}
