//! Diagnostics as data, and (in `render`) their rendering.
//!
//! Every phase of the front end reports problems as [`Diagnostic`] values: a stable code,
//! a one-line message, the culprit span, labels on the other spans involved and hints.
//! Nothing here is text for a terminal yet; rendering happens at the edge (the CLI, the
//! REPL, the tests), so the same diagnostic can be shown with ariadne, compared in a
//! golden file or inspected by a test.

use std::sync::Arc;

pub mod explain;
pub mod render;

pub use explain::{codes, explain, title};
pub use render::{RenderOptions, SourceFile, render, render_all};

use crate::span::Span;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The program is wrong; it does not run.
    Error,
    /// The program runs, but probably does not do what was meant.
    Warning,
}

/// A span with a message, pointing at something involved in a diagnostic.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    /// What is pointed at.
    pub span: Span,
    /// What to say about it (may be empty for a bare caret).
    pub message: String,
}

impl Label {
    /// A label on `span` saying `message`.
    pub fn new(span: Span, message: impl Into<String>) -> Label {
        Label {
            span,
            message: message.into(),
        }
    }
}

/// One problem found in a program.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// The stable code (`"E0301"`); `ms explain CODE` prints its explanation.
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// One line naming the types and shapes involved, without a trailing period.
    pub message: String,
    /// The culprit.
    pub primary: Label,
    /// The other spans involved.
    pub labels: Vec<Label>,
    /// Likely fixes (`` `x @ w.T` fits ``), each one line.
    pub hints: Vec<String>,
    /// Further facts that are not fixes.
    pub notes: Vec<String>,
    /// The file the spans index, when it is not the text being checked (an imported
    /// file), by the name the import used.
    pub file: Option<Arc<str>>,
}

impl Diagnostic {
    /// An error with code `code`, message `message` at `span` (label text empty).
    pub fn error(code: &'static str, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            primary: Label::new(span, ""),
            labels: Vec::new(),
            hints: Vec::new(),
            notes: Vec::new(),
            file: None,
        }
    }

    /// Sets the primary label's text.
    pub fn with_primary_label(mut self, message: impl Into<String>) -> Diagnostic {
        self.primary.message = message.into();
        self
    }

    /// Adds a label on another span.
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label::new(span, message));
        self
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hints.push(hint.into());
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// True for errors (which stop the program from running).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}
