//! Syntax highlighting of the line being edited, with the language's own lexer
//! (`lang::syntax::lexer`), so that the colours never disagree with what the parser sees.
//!
//! The result is the text with ANSI colour codes around tokens and nothing else changed:
//! the line editor requires the same display width. Whether to colour at all (a terminal,
//! no `NO_COLOR`) is decided by the caller.

use lang::syntax::lexer;
use lang::syntax::token::Tok;

use super::commands;

const RESET: &str = "\x1b[0m";
const KEYWORD: &str = "\x1b[1;35m";
const CONSTANT: &str = "\x1b[33m";
const NUMBER: &str = "\x1b[36m";
const STRING: &str = "\x1b[32m";
const COMMENT: &str = "\x1b[90m";
const OPERATOR: &str = "\x1b[33m";
const BUILTIN: &str = "\x1b[34m";
const ERROR: &str = "\x1b[31m";
const COMMAND: &str = "\x1b[1;34m";

/// The grey of history hints.
pub const HINT: &str = "\x1b[90m";

/// `line` with colour codes: keywords, numbers, strings, comments, operators and builtin
/// names; a `:command` in bold, and the code after `:type` and `:time` like code.
pub fn highlight(line: &str) -> String {
    let indent = line.len() - line.trim_start().len();
    if let Some(command) = line[indent..].strip_prefix(':') {
        let name_len = command.find(char::is_whitespace).unwrap_or(command.len());
        let (name, rest) = command.split_at(name_len);
        let mut out = String::with_capacity(line.len() + 32);
        out.push_str(&line[..indent]);
        paint(&mut out, COMMAND, &line[indent..indent + 1 + name_len]);
        match commands::find(name).map(|c| c.name) {
            Some("type" | "time") => out.push_str(&highlight_code(rest)),
            _ => out.push_str(rest),
        }
        return out;
    }
    highlight_code(line)
}

/// Colours MindScript source.
pub fn highlight_code(src: &str) -> String {
    let lexed = lexer::lex(src);
    let mut out = String::with_capacity(src.len() + 16 * lexed.tokens.len());
    let mut at = 0;
    for (tok, span) in &lexed.tokens {
        let (start, end) = (span.start.max(at), span.end.max(at));
        let (Some(gap), Some(text)) = (src.get(at..start), src.get(start..end)) else {
            continue;
        };
        gap_text(&mut out, gap);
        match style(tok) {
            Some(colour) => paint(&mut out, colour, text),
            None if matches!(tok, Tok::Ident(n) if is_builtin(n)) => {
                paint(&mut out, BUILTIN, text);
            }
            None => out.push_str(text),
        }
        at = end;
    }
    let tail = src.get(at..).unwrap_or("");
    if tail.trim_start().starts_with('"') {
        // An unterminated string runs to the end of the text.
        paint(&mut out, STRING, tail);
    } else {
        gap_text(&mut out, tail);
    }
    out
}

/// Text between tokens: whitespace, or comments (the lexer drops them).
fn gap_text(out: &mut String, gap: &str) {
    if gap.trim().is_empty() {
        out.push_str(gap);
    } else {
        paint(out, COMMENT, gap);
    }
}

fn paint(out: &mut String, colour: &str, text: &str) {
    if text.is_empty() {
        return;
    }
    out.push_str(colour);
    out.push_str(text);
    out.push_str(RESET);
}

fn is_builtin(name: &str) -> bool {
    lang::check::builtins::names().binary_search(&name).is_ok()
}

/// The colour of a token, or `None` for names and punctuation (builtin names are coloured
/// by the caller).
fn style(tok: &Tok) -> Option<&'static str> {
    Some(match tok {
        Tok::Let
        | Tok::Fn
        | Tok::Return
        | Tok::If
        | Tok::Else
        | Tok::For
        | Tok::In
        | Tok::While
        | Tok::Break
        | Tok::Continue
        | Tok::Import
        | Tok::As
        | Tok::Type => KEYWORD,
        Tok::True | Tok::False => CONSTANT,
        Tok::Int(_) | Tok::Float(_) => NUMBER,
        Tok::Str(_) => STRING,
        Tok::Doc(_) => COMMENT,
        Tok::Error => ERROR,
        t if t.is_binary_op() => OPERATOR,
        Tok::Assign
        | Tok::PlusEq
        | Tok::MinusEq
        | Tok::StarEq
        | Tok::SlashEq
        | Tok::Arrow
        | Tok::Pipe
        | Tok::Bang
        | Tok::Ellipsis
        | Tok::Question => OPERATOR,
        _ => return None,
    })
}

/// `text` without ANSI colour codes (what the highlighted text displays as).
pub fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_get_their_colours() {
        let h = highlight("let x = sum([1.5, 2]) ** 2 // note");
        assert!(h.starts_with(&format!("{KEYWORD}let{RESET} x ")), "{h:?}");
        assert!(h.contains(&format!("{OPERATOR}={RESET}")), "{h:?}");
        assert!(h.contains(&format!("{BUILTIN}sum{RESET}")), "{h:?}");
        assert!(h.contains(&format!("{NUMBER}1.5{RESET}")), "{h:?}");
        assert!(h.contains(&format!("{OPERATOR}**{RESET}")), "{h:?}");
        assert!(h.ends_with(&format!("{COMMENT} // note{RESET}")), "{h:?}");
        let s = highlight("print(\"hi\", true) /* block */");
        assert!(s.contains(&format!("{STRING}\"hi\"{RESET}")), "{s:?}");
        assert!(s.contains(&format!("{CONSTANT}true{RESET}")), "{s:?}");
        assert!(
            s.contains(&format!("{COMMENT} /* block */{RESET}")),
            "{s:?}"
        );
    }

    #[test]
    fn commands_are_bold_and_their_code_coloured() {
        let h = highlight(":type sum(x)");
        assert!(h.starts_with(&format!("{COMMAND}:type{RESET} ")), "{h:?}");
        assert!(h.contains(&format!("{BUILTIN}sum{RESET}")), "{h:?}");
        let l = highlight(":load let.ms");
        assert_eq!(l, format!("{COMMAND}:load{RESET} let.ms"));
    }

    #[test]
    fn highlighting_changes_nothing_but_colours() {
        let mut texts: Vec<String> = [
            "let x = 1",
            "fn f(a: f32[n], b = 2) -> f32[n] {\n  a * b  // twice\n}",
            "\"unterminated",
            "/* open comment",
            "x.T @ y.0.1 + 1e-3",
            "let größe = 1 § 2",
            "   :time f(1)",
            ":",
            "/// doc\nfn g() { 1 }",
            "",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
        for entry in std::fs::read_dir(samples).expect("samples/ exists") {
            let path = entry.expect("a readable entry").path();
            if path.extension().is_some_and(|e| e == "ms") {
                texts.push(std::fs::read_to_string(&path).expect("a readable sample"));
            }
        }
        for text in &texts {
            assert_eq!(&strip_colours(&highlight(text)), text);
        }
    }
}
