//! The rustyline helper: completion ([`complete`]), highlighting ([`highlight`]), grey
//! hints from history, and the parser-driven validator that makes Enter continue an
//! unfinished entry on a new line instead of submitting it.

use std::borrow::Cow;

use rustyline::completion::Completer;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::{Hinter, HistoryHinter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Result};

use super::complete::{self, View};
use super::highlight;

/// What the line editor consults while a line is typed.
#[derive(Debug)]
pub struct Helper {
    /// The session's variables, refreshed after each entry.
    pub view: View,
    /// Whether to colour (a terminal and no `NO_COLOR`; rustyline checks too).
    color: bool,
}

impl Helper {
    /// A helper over `view`.
    pub fn new(view: View, color: bool) -> Helper {
        Helper { view, color }
    }
}

impl Completer for Helper {
    type Candidate = String;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Result<(usize, Vec<String>)> {
        Ok(complete::complete(line, pos, &self.view))
    }
}

impl Hinter for Helper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, ctx: &Context<'_>) -> Option<String> {
        HistoryHinter::new().hint(line, pos, ctx)
    }
}

impl Highlighter for Helper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.color {
            Cow::Owned(highlight::highlight(line))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.color {
            Cow::Owned(format!("{}{hint}\x1b[0m", highlight::HINT))
        } else {
            Cow::Borrowed(hint)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        // Every edit can change the colours (typing `"` turns the rest into a string), so
        // repaint on edits; moving the cursor changes nothing.
        self.color && kind == CmdKind::Other
    }
}

impl Validator for Helper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> Result<ValidationResult> {
        let input = ctx.input();
        // Commands are one line; code continues while the parser finds it unfinished.
        if input.trim_start().starts_with(':') || !super::unfinished(input) {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl rustyline::Helper for Helper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_colours_unless_asked() {
        let plain = Helper::new(View::default(), false);
        assert_eq!(plain.highlight("let x = 1", 0), "let x = 1");
        assert_eq!(plain.highlight_hint("= 2"), "= 2");
        assert!(!plain.highlight_char("x", 1, CmdKind::Other));
        let coloured = Helper::new(View::default(), true);
        assert!(coloured.highlight("let x = 1", 0).contains('\x1b'));
        assert!(coloured.highlight_char("x", 1, CmdKind::Other));
        assert!(!coloured.highlight_char("x", 1, CmdKind::MoveCursor));
    }
}
