//! Lexing and parsing (LANGUAGE.md §2–§5, §13).
//!
//! Three passes: [`lexer`] turns text into tokens (comments dropped, `///` kept),
//! [`layout`] decides which newlines end statements, which `{` opens a record, and cuts
//! anything nested deeper than [`MAX_NESTING`], and [`parser`] (chumsky, with its Pratt
//! parser for the operator table of §4) builds the tree.
//!
//! Parsing never fails: [`parse`] returns a tree and every syntax error. Erroneous parts
//! become [`ExprKind::Error`](crate::ast::ExprKind::Error) nodes (a pattern that failed is
//! a wildcard, a type that failed is a tensor type whose dtype is [`ERROR_TYPE_NAME`]), or
//! a statement is dropped into an error statement; each such place has its diagnostic.
//!
//! **Depth guarantee.** On any input, the returned tree is at most `MAX_NESTING + 1`
//! expressions deep (likewise for types and patterns), so later passes may recurse over
//! it; parsing itself recurses at most a small multiple of that deep and runs on a 2 MiB
//! stack.

pub mod layout;
pub mod lexer;
pub mod parser;
mod sexpr;
pub mod token;

use chumsky::error::RichReason;
use chumsky::input::Input as _;
use chumsky::prelude::*;

use crate::ast::{Expr, Program};
use crate::diagnostics::Diagnostic;

pub use layout::MAX_NESTING;
pub use parser::ERROR_TYPE_NAME;
pub use sexpr::{sexpr, sexpr_expr};
use token::Tok;

/// Parses a whole script (or REPL entry): the statements, and every syntax error found,
/// in source order.
pub fn parse(src: &str) -> (Program, Vec<Diagnostic>) {
    let (tokens, mut diags) = tokens_for_parser(src);
    let grammar = parser::grammar(src);
    let eoi = SimpleSpan::from(src.len()..src.len());
    let (stmts, errors) = grammar
        .program
        .parse(tokens.as_slice().split_token_span(eoi))
        .into_output_errors();
    let parse_errors = errors.into_iter().map(|e| to_diagnostic(e, src));
    merge(&mut diags, parse_errors, src);
    (
        Program {
            stmts: stmts.unwrap_or_default(),
        },
        diags,
    )
}

/// Parses one expression (the REPL's `:type EXPR`); `None` when nothing usable was found.
pub fn parse_expr(src: &str) -> (Option<Expr>, Vec<Diagnostic>) {
    let (tokens, mut diags) = tokens_for_parser(src);
    let grammar = parser::grammar(src);
    let eoi = SimpleSpan::from(src.len()..src.len());
    let (expr, errors) = grammar
        .expr
        .parse(tokens.as_slice().split_token_span(eoi))
        .into_output_errors();
    let parse_errors = errors.into_iter().map(|e| to_diagnostic(e, src));
    merge(&mut diags, parse_errors, src);
    (expr, diags)
}

/// True when `src` is unfinished, so that the REPL should read another line: it ends
/// inside an unclosed `(`, `[` or `{`, a block comment or a string, or right after a
/// binary operator, `,`, `=` or `|`.
pub fn is_incomplete(src: &str) -> bool {
    let lexed = lexer::lex(src);
    if lexed.unterminated {
        return true;
    }
    let mut open = 0usize;
    for (tok, _) in &lexed.tokens {
        if tok.is_opener() {
            open += 1;
        } else if tok.is_closer() {
            // More closers than openers is an error the parser reports; it cannot be
            // completed by more lines.
            if open == 0 {
                return false;
            }
            open -= 1;
        }
    }
    if open > 0 {
        return true;
    }
    let last = lexed
        .tokens
        .iter()
        .rev()
        .map(|(t, _)| t)
        .find(|t| !matches!(t, Tok::Newline | Tok::Doc(_)));
    last.is_some_and(Tok::expects_more)
}

/// The last bracket left open at the end of `src`, if any.
fn unclosed_opener(src: &str) -> Option<crate::span::Span> {
    let mut open = Vec::new();
    for (tok, span) in lexer::lex(src).tokens {
        if tok.is_opener() {
            open.push(span);
        } else if tok.is_closer() {
            open.pop();
        }
    }
    open.pop()
}

/// Lexes and lays out `src`, converting spans for chumsky.
fn tokens_for_parser(src: &str) -> (Vec<(Tok, SimpleSpan)>, Vec<Diagnostic>) {
    let lexed = lexer::lex(src);
    let mut diags = lexed.diags;
    let tokens = layout::layout(lexed.tokens, &mut diags);
    let tokens = tokens
        .into_iter()
        .map(|(t, s)| (t, SimpleSpan::from(s.range())))
        .collect();
    (tokens, diags)
}

/// Adds the parser's errors to the lexer's and layout's, in source order. A generic
/// "expected ..., found ..." error on the line of an earlier lexical error is dropped: it
/// is almost always a consequence of the bad token (`let größe = 1`).
fn merge(diags: &mut Vec<Diagnostic>, parse_errors: impl Iterator<Item = Diagnostic>, src: &str) {
    let lexical: Vec<usize> = diags.iter().map(|d| d.primary.span.start).collect();
    for d in parse_errors {
        let start = d.primary.span.start;
        let follows_lexical = d.code == "E0001"
            && lexical.iter().any(|&at| {
                at <= start
                    && src
                        .get(at..start)
                        .is_some_and(|between| !between.contains('\n'))
            });
        if !follows_lexical {
            diags.push(d);
        }
    }
    diags.sort_by_key(|d| (d.primary.span.start, d.primary.span.end));
}

/// Turns a chumsky error into a diagnostic: our own diagnostics pass through, the
/// expected/found errors become E0001.
fn to_diagnostic(err: parser::PError<'_>, src: &str) -> Diagnostic {
    let span = parser::sp(*err.span());
    match err.into_reason() {
        RichReason::Custom(diag) => *diag,
        RichReason::ExpectedFound { expected, found } => {
            // After a complete operand, every operator and postfix bracket could follow;
            // naming them all buries the expectation that matters (`,` or `)`).
            let continues_operand = |p: &chumsky::error::RichPattern<'_, Tok>| match p {
                chumsky::error::RichPattern::Token(t) => {
                    let t: &Tok = t;
                    t.is_binary_op()
                        || matches!(t, Tok::LParen | Tok::LBracket | Tok::Dot | Tok::Error)
                }
                chumsky::error::RichPattern::Any | chumsky::error::RichPattern::SomethingElse => {
                    true
                }
                _ => false,
            };
            let keep_all = expected.iter().all(continues_operand);
            let mut names: Vec<String> = Vec::new();
            for pattern in expected
                .iter()
                .filter(|p| keep_all || !continues_operand(p))
            {
                let name = match pattern {
                    chumsky::error::RichPattern::Token(t) => t.to_string(),
                    chumsky::error::RichPattern::Label(l) => l.to_string(),
                    chumsky::error::RichPattern::Identifier(s) => format!("`{s}`"),
                    chumsky::error::RichPattern::Any => "something".to_string(),
                    chumsky::error::RichPattern::SomethingElse => "something else".to_string(),
                    chumsky::error::RichPattern::EndOfInput => "end of input".to_string(),
                    _ => "something else".to_string(),
                };
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            let found_tok: Option<Tok> = found.map(|t| (*t).clone());
            let found_text = found_tok
                .as_ref()
                .map_or_else(|| "end of input".to_string(), Tok::to_string);
            let expected_text = match names.len() {
                0 => "something else".to_string(),
                1 => names.join(""),
                n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
            };
            let mut diag = Diagnostic::error(
                "E0001",
                format!("expected {expected_text}, found {found_text}"),
                span,
            )
            .with_primary_label(match found_tok {
                None => "the text ends here".to_string(),
                Some(_) => format!("unexpected {found_text}"),
            });
            match found_tok {
                Some(Tok::Assign) if names.iter().any(|n| n == "`{`") => {
                    diag = diag.with_hint("to compare, write `==`");
                }
                Some(_) if names.iter().any(|n| n == "end of line or `;`") => {
                    diag = diag
                        .with_hint("put each statement on its own line, or separate them with `;`");
                }
                None => {
                    if let Some(open) = unclosed_opener(src) {
                        diag = diag
                            .with_label(open, "this bracket is never closed")
                            .with_hint("add the missing closing bracket");
                    }
                }
                _ => {}
            }
            diag
        }
    }
}
