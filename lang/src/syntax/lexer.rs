//! The lexer: source text to tokens with byte spans.
//!
//! Hand-written, because two of MindScript's lexing rules depend on the previous token:
//! after a `.`, digits are always an integer (`t.0.1` is field 1 of field 0, never the
//! float `0.1`), and a `.` followed by a digit where an operand is expected is the
//! forbidden `.5` form. Every error becomes a diagnostic and, where a token was expected,
//! a [`Tok::Error`] token, so that the parser does not report it a second time.

use std::sync::Arc;

use super::token::Tok;
use crate::diagnostics::Diagnostic;
use crate::span::Span;

/// What the lexer produces.
#[derive(Debug, Default)]
pub struct Lexed {
    /// The tokens in order, newlines included (the layout pass decides which count).
    pub tokens: Vec<(Tok, Span)>,
    /// The lexical errors.
    pub diags: Vec<Diagnostic>,
    /// True when the text ends inside a block comment or a string.
    pub unterminated: bool,
}

/// Splits `src` into tokens. Never fails; errors are reported in [`Lexed::diags`].
pub fn lex(src: &str) -> Lexed {
    let mut lx = Lexer {
        src,
        bytes: src.as_bytes(),
        pos: 0,
        out: Lexed::default(),
    };
    lx.run();
    lx.out
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    out: Lexed,
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> u8 {
        self.bytes.get(self.pos + ahead).copied().unwrap_or(0)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn push(&mut self, tok: Tok, start: usize) {
        self.out.tokens.push((tok, Span::new(start, self.pos)));
    }

    fn error(&mut self, diag: Diagnostic) {
        self.out.diags.push(diag);
    }

    /// True when the previous token ends an operand, so that a following `.` is a field
    /// access rather than the start of a number.
    fn after_operand(&self) -> bool {
        matches!(
            self.out.tokens.last(),
            Some((
                Tok::Ident(_)
                    | Tok::Int(_)
                    | Tok::Float(_)
                    | Tok::Str(_)
                    | Tok::RParen
                    | Tok::RBracket
                    | Tok::RBrace
                    | Tok::True
                    | Tok::False
                    | Tok::Error,
                _
            ))
        )
    }

    fn run(&mut self) {
        while !self.at_end() {
            let start = self.pos;
            let c = self.peek(0);
            match c {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\n' => {
                    self.pos += 1;
                    self.push(Tok::Newline, start);
                }
                b'/' if self.peek(1) == b'/' => self.line_comment(),
                b'/' if self.peek(1) == b'*' => self.block_comment(),
                b'"' => self.string(),
                b'0'..=b'9' => {
                    let after_dot = matches!(self.out.tokens.last(), Some((Tok::Dot, _)));
                    self.number(after_dot);
                }
                b'.' if self.peek(1).is_ascii_digit() && !self.after_operand() => {
                    self.leading_dot_number()
                }
                b'A'..=b'Z' | b'a'..=b'z' | b'_' => self.word(),
                _ => self.punct(),
            }
        }
    }

    fn line_comment(&mut self) {
        let start = self.pos;
        let end = self.src[start..]
            .find('\n')
            .map_or(self.src.len(), |i| start + i);
        let text = &self.src[start..end];
        self.pos = end;
        // `///` is a doc comment; `////...` is an ordinary comment, as in Rust.
        if let Some(doc) = text.strip_prefix("///")
            && !doc.starts_with('/')
        {
            let doc = doc.strip_prefix(' ').unwrap_or(doc).trim_end();
            self.push(Tok::Doc(doc.to_string()), start);
        }
    }

    fn block_comment(&mut self) {
        let start = self.pos;
        self.pos += 2;
        let mut depth = 1usize;
        while !self.at_end() {
            if self.peek(0) == b'/' && self.peek(1) == b'*' {
                depth += 1;
                self.pos += 2;
            } else if self.peek(0) == b'*' && self.peek(1) == b'/' {
                depth -= 1;
                self.pos += 2;
                if depth == 0 {
                    // A comment that spans lines separates them like a newline would.
                    if self.src[start..self.pos].contains('\n') {
                        self.push(Tok::Newline, start);
                    }
                    return;
                }
            } else {
                self.pos += 1;
            }
        }
        // The loop above stepped byte by byte, but it only stops at the end of the text,
        // which is a char boundary.
        self.out.unterminated = true;
        self.error(
            Diagnostic::error(
                "E0002",
                "unterminated block comment",
                Span::new(start, start + 2),
            )
            .with_primary_label("this comment is never closed")
            .with_hint("close it with `*/` (block comments nest: each `/*` needs its own `*/`)"),
        );
    }

    fn string(&mut self) {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(ch) = self.src[self.pos..].chars().next() else {
                self.out.unterminated = true;
                self.error(
                    Diagnostic::error("E0005", "unterminated string", Span::new(start, start + 1))
                        .with_primary_label("this string is never closed")
                        .with_hint("end the string with `\"`"),
                );
                self.push(Tok::Error, start);
                return;
            };
            let at = self.pos;
            self.pos += ch.len_utf8();
            match ch {
                '"' => break,
                '\\' => {
                    let Some(esc) = self.src[self.pos..].chars().next() else {
                        continue;
                    };
                    self.pos += esc.len_utf8();
                    match esc {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        '"' => value.push('"'),
                        '\\' => value.push('\\'),
                        other => self.error(
                            Diagnostic::error(
                                "E0006",
                                format!("unknown escape `\\{other}` in a string"),
                                Span::new(at, self.pos),
                            )
                            .with_primary_label("not an escape")
                            .with_hint(
                                "the escapes are `\\n`, `\\t`, `\\\"` and `\\\\`; write `\\\\` for a backslash",
                            ),
                        ),
                    }
                }
                other => value.push(other),
            }
        }
        self.push(Tok::Str(value), start);
    }

    /// Consumes digits and `_` separators; returns whether any digit was seen.
    fn digits(&mut self) -> bool {
        let mut any = false;
        while self.peek(0).is_ascii_digit() || (any && self.peek(0) == b'_') {
            any |= self.peek(0).is_ascii_digit();
            self.pos += 1;
        }
        any
    }

    /// Consumes an exponent (`e-3`) if one follows.
    fn exponent(&mut self) -> bool {
        let c = self.peek(0);
        if c != b'e' && c != b'E' {
            return false;
        }
        let sign = usize::from(matches!(self.peek(1), b'+' | b'-'));
        if !self.peek(1 + sign).is_ascii_digit() {
            return false;
        }
        self.pos += 1 + sign;
        self.digits();
        true
    }

    fn number(&mut self, after_dot: bool) {
        let start = self.pos;
        self.digits();
        let mut is_float = false;
        if !after_dot {
            if self.peek(0) == b'.' && self.peek(1).is_ascii_digit() {
                self.pos += 1;
                self.digits();
                is_float = true;
            }
            is_float |= self.exponent();
        }
        let text: String = self.src[start..self.pos]
            .chars()
            .filter(|&c| c != '_')
            .collect();
        let span = Span::new(start, self.pos);
        let tok = if is_float {
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Tok::Float(v),
                _ => {
                    self.error(
                        Diagnostic::error(
                            "E0004",
                            format!(
                                "float literal `{}` is out of range",
                                &self.src[start..self.pos]
                            ),
                            span,
                        )
                        .with_primary_label("larger than the largest f64")
                        .with_note("the largest f64 is about 1.8e308"),
                    );
                    Tok::Error
                }
            }
        } else {
            match text.parse::<i64>() {
                Ok(v) => Tok::Int(v),
                Err(_) => {
                    self.error(
                        Diagnostic::error(
                            "E0004",
                            format!(
                                "integer literal `{}` is out of range",
                                &self.src[start..self.pos]
                            ),
                            span,
                        )
                        .with_primary_label("does not fit in i64")
                        .with_note("integers are i64: the largest is 9223372036854775807")
                        .with_hint(format!("write it as a float if you meant one: `{text}.0`")),
                    );
                    Tok::Error
                }
            }
        };
        self.push(tok, start);
    }

    fn leading_dot_number(&mut self) {
        let start = self.pos;
        self.pos += 1;
        self.digits();
        self.exponent();
        let written = &self.src[start..self.pos];
        let fixed = format!("0{written}");
        self.error(
            Diagnostic::error(
                "E0003",
                format!("a number cannot start with `.`: `{written}`"),
                Span::new(start, self.pos),
            )
            .with_primary_label("needs a digit before the `.`")
            .with_hint(format!("write `{fixed}`")),
        );
        let value = fixed.replace('_', "").parse::<f64>().unwrap_or(0.0);
        self.push(Tok::Float(value), start);
    }

    fn word(&mut self) {
        let start = self.pos;
        while matches!(self.peek(0), b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_') {
            self.pos += 1;
        }
        let text = &self.src[start..self.pos];
        let tok = Tok::keyword(text).unwrap_or_else(|| Tok::Ident(Arc::from(text)));
        self.push(tok, start);
    }

    fn punct(&mut self) {
        let start = self.pos;
        let (tok, len) = match (self.peek(0), self.peek(1), self.peek(2)) {
            (b'.', b'.', b'.') => (Tok::Ellipsis, 3),
            (b'.', b'.', _) => (Tok::DotDot, 2),
            (b'.', _, _) => (Tok::Dot, 1),
            (b'*', b'*', _) => (Tok::StarStar, 2),
            (b'*', b'=', _) => (Tok::StarEq, 2),
            (b'*', _, _) => (Tok::Star, 1),
            (b'-', b'>', _) => (Tok::Arrow, 2),
            (b'-', b'=', _) => (Tok::MinusEq, 2),
            (b'-', _, _) => (Tok::Minus, 1),
            (b'+', b'=', _) => (Tok::PlusEq, 2),
            (b'+', _, _) => (Tok::Plus, 1),
            (b'/', b'=', _) => (Tok::SlashEq, 2),
            (b'/', _, _) => (Tok::Slash, 1),
            (b'%', _, _) => (Tok::Percent, 1),
            (b'@', _, _) => (Tok::At, 1),
            (b'=', b'=', _) => (Tok::EqEq, 2),
            (b'=', _, _) => (Tok::Assign, 1),
            (b'!', b'=', _) => (Tok::Ne, 2),
            (b'!', _, _) => (Tok::Bang, 1),
            (b'<', b'=', _) => (Tok::Le, 2),
            (b'<', _, _) => (Tok::Lt, 1),
            (b'>', b'=', _) => (Tok::Ge, 2),
            (b'>', _, _) => (Tok::Gt, 1),
            (b'&', b'&', _) => (Tok::AndAnd, 2),
            (b'|', b'|', _) => (Tok::OrOr, 2),
            (b'|', _, _) => (Tok::Pipe, 1),
            (b'(', _, _) => (Tok::LParen, 1),
            (b')', _, _) => (Tok::RParen, 1),
            (b'[', _, _) => (Tok::LBracket, 1),
            (b']', _, _) => (Tok::RBracket, 1),
            (b'{', _, _) => (Tok::LBrace, 1),
            (b'}', _, _) => (Tok::RBrace, 1),
            (b',', _, _) => (Tok::Comma, 1),
            (b';', _, _) => (Tok::Semi, 1),
            (b':', _, _) => (Tok::Colon, 1),
            (b'?', _, _) => (Tok::Question, 1),
            _ => {
                self.bad_char();
                return;
            }
        };
        self.pos += len;
        self.push(tok, start);
    }

    fn bad_char(&mut self) {
        let start = self.pos;
        let ch = self.src[start..].chars().next().unwrap_or('\u{fffd}');
        self.pos += ch.len_utf8().max(1);
        let shown = if ch.is_control() || ch.is_whitespace() {
            format!("{:?}", ch)
        } else {
            format!("`{ch}`")
        };
        let mut diag = Diagnostic::error(
            "E0007",
            format!("unexpected character {shown}"),
            Span::new(start, self.pos),
        )
        .with_primary_label("not part of MindScript's syntax");
        match ch {
            '&' => diag = diag.with_hint("logical and is `&&` (on tensors: `logical_and(a, b)`)"),
            '^' => diag = diag.with_hint("powers are written `x ** 2`"),
            '\'' => diag = diag.with_hint("strings use double quotes: `\"...\"`"),
            _ => {}
        }
        self.error(diag);
        self.push(Tok::Error, start);
    }
}
