//! Training insight (LANGUAGE.md §10 "Summaries"): `log_scalar`, `log_histogram` and
//! `log_text` write TensorBoard event files, `progress` shows a progress bar, and
//! `ms report` turns a run's event files into an HTML page.
//!
//! - [`events`] — the event file format as pure functions over bytes (protobuf messages,
//!   TFRecord framing, CRC32C), both ways.
//! - [`writer`] — the session's event file: where it goes, made on first use, flushed.
//! - [`progress`] — progress bars for `for` loops (indicatif), on a terminal only.
//! - [`report`] — `ms report`: a run's event files read back and drawn as SVG in one page.

pub mod events;
pub mod progress;
pub mod report;
pub mod writer;

use std::sync::Arc;

use devices::Tensor;

pub use writer::{Summaries, WriteError};

/// Which `log_*` builtin a summary comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Scalar,
    Histogram,
    Text,
}

impl Kind {
    /// The kind of the builtin `name`, if it is one of the three.
    pub fn of_builtin(name: &str) -> Option<Kind> {
        match name {
            "log_scalar" => Some(Kind::Scalar),
            "log_histogram" => Some(Kind::Histogram),
            "log_text" => Some(Kind::Text),
            _ => None,
        }
    }
}

/// A `log_*` call as staged code keeps it: which kind, and its tag (a string known when the
/// function is staged). The step and the value are the call's other arguments, filled in
/// when the graph runs, as `print`'s are.
#[derive(Clone, Debug)]
pub struct LogCall {
    pub kind: Kind,
    pub tag: Arc<str>,
}

/// The elements of a tensor as `f64`, from any device.
fn elements(t: &Tensor) -> Result<Vec<f64>, String> {
    t.to_f64_vec()
        .ok_or_else(|| format!("the {} tensor's elements could not be read", t.dtype()))
}

/// The summary a `log_*` call of `kind` makes of `value` (a tensor; a string for
/// `log_text`).
pub fn summary_value(kind: Kind, value: &crate::Value) -> Result<events::Value, String> {
    use crate::Value as V;
    match (kind, value) {
        (Kind::Text, V::Str(s)) => Ok(events::Value::Text(s.to_string())),
        (Kind::Scalar, V::Tensor(t)) if t.t.numel() == 1 => {
            let x = elements(&t.t)?.first().copied().unwrap_or(f64::NAN);
            Ok(events::Value::Scalar(x as f32))
        }
        (Kind::Histogram, V::Tensor(t)) => Ok(events::Value::Histogram(events::Histogram::of(
            &elements(&t.t)?,
        ))),
        (Kind::Text, other) => Err(format!(
            "`log_text` needs a string, found {}",
            other.describe()
        )),
        (Kind::Scalar, other) => Err(format!(
            "`log_scalar` needs a number, found {}",
            other.describe()
        )),
        (Kind::Histogram, other) => Err(format!(
            "`log_histogram` needs a tensor, found {}",
            other.describe()
        )),
    }
}

/// The step of a `log_*` call: an integer scalar.
pub fn step_value(value: &crate::Value) -> Result<i64, String> {
    match value {
        crate::Value::Tensor(t) if t.t.numel() == 1 && t.dtype.is_int() => {
            // Read exactly: a step past 2^53 would lose digits through `f64`.
            let x = match t.t.dtype() {
                ir::DType::I64 => t.t.to_vec::<i64>().and_then(|v| v.first().copied()),
                ir::DType::I32 => {
                    t.t.to_vec::<i32>()
                        .and_then(|v| v.first().map(|&x| i64::from(x)))
                }
                _ => elements(&t.t)?.first().map(|&x| x as i64),
            };
            x.ok_or_else(|| "the step could not be read".to_string())
        }
        other => Err(format!(
            "the step of a summary must be an integer scalar, found {}",
            other.describe()
        )),
    }
}
