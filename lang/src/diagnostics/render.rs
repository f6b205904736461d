//! Rendering diagnostics for people, with ariadne.
//!
//! This is the only place diagnostics become text. Spans are byte offsets, so ariadne is
//! configured with `IndexType::Byte` (its default counts chars, which shifts every label
//! after non-ASCII text). Colour is the caller's choice: the CLI turns it on only when the
//! output is a terminal, golden tests never use it.

use ariadne::{Config, IndexType, Label as ALabel, Report, ReportKind};

use crate::diagnostics::{Diagnostic, Severity};
use crate::span::Span;

/// A source text the spans of a diagnostic index, with the name shown in the report.
#[derive(Clone, Copy, Debug)]
pub struct SourceFile<'a> {
    /// The name shown (`mlp.ms`, `<repl>`).
    pub name: &'a str,
    /// The text.
    pub text: &'a str,
}

/// How to render.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderOptions {
    /// ANSI colours (only for terminals).
    pub color: bool,
}

/// Renders `diag` against `main` (the checked text) and `imports` (files named by
/// [`Diagnostic::file`]). A diagnostic whose file is not supplied is rendered without a
/// source snippet rather than pointing into the wrong text.
pub fn render(
    diag: &Diagnostic,
    main: SourceFile<'_>,
    imports: &[SourceFile<'_>],
    options: RenderOptions,
) -> String {
    let source = match &diag.file {
        None => Some(main),
        Some(name) => imports.iter().copied().find(|f| f.name == &**name),
    };
    let Some(source) = source else {
        return render_plain(diag);
    };
    let id = source.name.to_string();
    let clamp = |span: Span| clamp_span(source.text, span);
    let kind = match diag.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
    };
    let config = Config::default()
        .with_index_type(IndexType::Byte)
        .with_color(options.color);
    let primary = clamp(diag.primary.span);
    let mut builder = Report::build(kind, (id.clone(), primary.range()))
        .with_config(config)
        .with_code(diag.code)
        .with_message(&diag.message);
    let mut order = 0;
    let mut label = |span: Span, message: &str| {
        let mut l = ALabel::new((id.clone(), clamp(span).range())).with_order(order);
        order += 1;
        if !message.is_empty() {
            l = l.with_message(message);
        }
        l
    };
    builder.add_label(label(diag.primary.span, &diag.primary.message));
    for extra in &diag.labels {
        builder.add_label(label(extra.span, &extra.message));
    }
    for hint in &diag.hints {
        builder.add_help(hint);
    }
    for note in &diag.notes {
        builder.add_note(note);
    }
    let mut out = Vec::new();
    let cache = (id, ariadne::Source::from(source.text));
    if builder.finish().write(cache, &mut out).is_err() {
        return render_plain(diag);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Renders every diagnostic of one text in order, separated as ariadne separates them.
pub fn render_all(
    diags: &[Diagnostic],
    main: SourceFile<'_>,
    imports: &[SourceFile<'_>],
    options: RenderOptions,
) -> String {
    diags
        .iter()
        .map(|d| render(d, main, imports, options))
        .collect()
}

/// One line per diagnostic plus its hints, for when no source text is at hand.
fn render_plain(diag: &Diagnostic) -> String {
    let kind = match diag.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut out = format!("[{}] {kind}: {}\n", diag.code, diag.message);
    for hint in &diag.hints {
        out.push_str(&format!("  help: {hint}\n"));
    }
    for note in &diag.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    out
}

/// A span that lies inside `text` and on char boundaries, whatever `span` was: a
/// diagnostic with a bad span is a bug, but it must still render rather than panic.
fn clamp_span(text: &str, span: Span) -> Span {
    let fix = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = fix(span.start);
    Span::new(start, fix(span.end).max(start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::Diagnostic;

    fn plain(diag: &Diagnostic, text: &str) -> String {
        let main = SourceFile { name: "t.ms", text };
        render(diag, main, &[], RenderOptions::default())
    }

    #[test]
    fn labels_stay_on_their_bytes_after_non_ascii_text() {
        let text = "// größe\nlet y = x + 1\n";
        let start = text.find('x').unwrap_or_default();
        let diag = Diagnostic::error("E0101", "unknown name `x`", Span::new(start, start + 1))
            .with_primary_label("not defined");
        let out = plain(&diag, text);
        assert!(out.contains("[E0101] Error: unknown name `x`"), "{out}");
        assert!(out.contains("t.ms:2:9"), "{out}");
        let line = out
            .lines()
            .find(|l| l.contains("let y"))
            .unwrap_or_default();
        let caret = out.lines().find(|l| l.contains('┬')).unwrap_or_default();
        let col = |l: &str, c: char| l.chars().position(|x| x == c);
        assert_eq!(col(line, 'x'), col(caret, '┬'), "{out}");
        assert!(!out.contains('\u{1b}'), "no colour unless asked: {out}");
    }

    #[test]
    fn spans_outside_the_text_are_clamped_not_fatal() {
        let diag = Diagnostic::error("E0001", "bad", Span::new(3, 400)).with_hint("try again");
        let out = plain(&diag, "aé");
        assert!(out.contains("Help: try again"), "{out}");
    }

    #[test]
    fn diagnostics_of_files_not_supplied_render_without_a_snippet() {
        let mut diag = Diagnostic::error("E0101", "unknown name `q`", Span::new(0, 1));
        diag.file = Some("lib/util.ms".into());
        assert_eq!(plain(&diag, "q"), "[E0101] error: unknown name `q`\n");
    }
}
