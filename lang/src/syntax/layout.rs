//! The layout pass: between the lexer and the parser, it decides which newlines end a
//! statement, which `{` opens a record rather than a block, which doc comments belong to
//! a `fn`, and it enforces the nesting limit.
//!
//! # Newlines
//! A bracket-context stack tracks whether the innermost open bracket is a block (or the
//! top level), where newlines are significant, or a `(`, `[` or record `{`, where they are
//! not. A newline is also dropped after a token that cannot end an expression (a binary
//! operator, `,`, `=`, `|`, ...) and before a line that starts with `else` or `.`. Runs of
//! significant newlines collapse into one [`Tok::Newline`].
//!
//! # Nesting limit
//! The parser and every later pass recurse over the tree, so the depth of the tree must be
//! bounded on any input. This pass counts, for the statement being read, every token that
//! can add a level to the tree (brackets, operators, `.`, `|`, `if`, `for`, `while`,
//! `return`, `->`); the count restarts at `,`, `;` and statement ends, and a closed
//! bracket passes the deepest count reached inside it on to its parent. The count is an
//! upper bound of the nesting depth of the expression, type or pattern being built: every
//! tree node with children has one of these tokens. When it passes [`MAX_NESTING`] the
//! pass reports E0010 and replaces the too-deep region (the rest of the item, up to the
//! next `,`, `;`, closing bracket or statement end) with one [`Tok::Error`] token, which the parser reads as an error
//! expression. Hence the parser's recursion and the tree it returns are at most
//! `MAX_NESTING + 1` levels deep (counted in expressions), on any input.

use super::token::Tok;
use crate::diagnostics::Diagnostic;
use crate::span::Span;

/// The deepest nesting accepted: brackets, blocks, operators and control flow together.
pub const MAX_NESTING: u32 = 256;

/// Why a bracket is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    /// The top level or a block: newlines end statements.
    Block,
    /// `(`, `[` or a record `{`: newlines are spaces.
    Group,
}

#[derive(Debug)]
struct Frame {
    ctx: Ctx,
    /// The nesting count at the opening bracket (restored at `,` and statement ends).
    base: u32,
    /// The count for the item being read.
    cur: u32,
    /// The deepest count reached in this bracket.
    hi: u32,
}

/// The tokens of one source text after layout, with the errors found.
pub fn layout(tokens: Vec<(Tok, Span)>, diags: &mut Vec<Diagnostic>) -> Vec<(Tok, Span)> {
    let mut out: Vec<(Tok, Span)> = Vec::with_capacity(tokens.len());
    let mut stack = vec![Frame {
        ctx: Ctx::Block,
        base: 0,
        cur: 0,
        hi: 0,
    }];
    let mut i = 0;
    while let Some((tok, span)) = tokens.get(i) {
        let span = *span;
        match tok {
            Tok::Newline => {
                let top_is_block = stack.last().is_some_and(|f| f.ctx == Ctx::Block);
                let next = next_non_newline(&tokens, i + 1);
                let continues = out.last().is_none_or(|(t, _)| continues_line(t))
                    || matches!(next, Some(Tok::Else | Tok::Dot));
                if top_is_block && !continues {
                    out.push((Tok::Newline, span));
                    restart_item(&mut stack);
                }
                i += 1;
            }
            Tok::Doc(_) => {
                let in_block = stack.last().is_some_and(|f| f.ctx == Ctx::Block);
                i = doc_comment(&tokens, i, in_block, &mut out);
            }
            Tok::Semi | Tok::Comma => {
                out.push((tok.clone(), span));
                restart_item(&mut stack);
                i += 1;
            }
            Tok::LParen | Tok::LBracket | Tok::LBrace | Tok::LRecord => {
                let depth = stack.last().map_or(0, |f| f.cur) + 1;
                if depth > MAX_NESTING {
                    // The rest of the item goes too: in `f()()()...` every further
                    // group would be one level deeper again.
                    let in_block = stack.last().is_some_and(|f| f.ctx == Ctx::Block);
                    let end = item_end(&tokens, i, in_block);
                    cut(&tokens, i, end, &mut out, diags);
                    i = end;
                    continue;
                }
                let (tok, ctx) = match tok {
                    Tok::LBrace if is_record(&tokens, i + 1) => (Tok::LRecord, Ctx::Group),
                    Tok::LBrace => (Tok::LBrace, Ctx::Block),
                    other => (other.clone(), Ctx::Group),
                };
                stack.push(Frame {
                    ctx,
                    base: depth,
                    cur: depth,
                    hi: depth,
                });
                out.push((tok, span));
                i += 1;
            }
            Tok::RParen | Tok::RBracket | Tok::RBrace => {
                // A stray closer leaves the top level in place; the parser reports it.
                if stack.len() > 1
                    && let Some(inner) = stack.pop()
                    && let Some(parent) = stack.last_mut()
                {
                    parent.cur = parent.cur.max(inner.hi);
                    parent.hi = parent.hi.max(parent.cur);
                }
                out.push((tok.clone(), span));
                i += 1;
            }
            _ if adds_level(tok) => {
                let over = stack.last_mut().is_some_and(|f| {
                    f.cur += 1;
                    f.hi = f.hi.max(f.cur);
                    f.cur > MAX_NESTING
                });
                if over {
                    let in_block = stack.last().is_some_and(|f| f.ctx == Ctx::Block);
                    let end = item_end(&tokens, i, in_block);
                    cut(&tokens, i, end, &mut out, diags);
                    i = end;
                    continue;
                }
                out.push((tok.clone(), span));
                i += 1;
            }
            _ => {
                out.push((tok.clone(), span));
                i += 1;
            }
        }
    }
    out
}

/// Restarts the nesting count of the innermost bracket for a new item.
fn restart_item(stack: &mut [Frame]) {
    if let Some(f) = stack.last_mut() {
        f.cur = f.base;
    }
}

fn next_non_newline(tokens: &[(Tok, Span)], from: usize) -> Option<&Tok> {
    tokens
        .get(from..)
        .and_then(|rest| rest.iter().map(|(t, _)| t).find(|t| **t != Tok::Newline))
}

/// True when a line ending with `tok` must continue on the next line.
fn continues_line(tok: &Tok) -> bool {
    // After a newline, a `;` or a doc comment what came before is already ended or
    // separated, so another newline would add nothing.
    tok.expects_more() || matches!(tok, Tok::Newline | Tok::Semi | Tok::Doc(_))
}

/// True for the tokens that can add a level to the tree.
fn adds_level(tok: &Tok) -> bool {
    tok.is_binary_op()
        || matches!(
            tok,
            Tok::Bang
                | Tok::Dot
                | Tok::Pipe
                | Tok::Arrow
                | Tok::If
                | Tok::For
                | Tok::While
                | Tok::Return
        )
}

/// A `{` opens a record when its first token (after newlines) is a name followed by `:`.
fn is_record(tokens: &[(Tok, Span)], from: usize) -> bool {
    let mut rest = tokens
        .get(from..)
        .unwrap_or_default()
        .iter()
        .map(|(t, _)| t)
        .filter(|t| **t != Tok::Newline);
    matches!(
        (rest.next(), rest.next()),
        (Some(Tok::Ident(_)), Some(Tok::Colon))
    )
}

/// Merges the doc comment lines starting at `i`; keeps them only when a `fn` or an
/// attribute follows. Returns the index after them (and the newlines between them).
fn doc_comment(
    tokens: &[(Tok, Span)],
    i: usize,
    in_block: bool,
    out: &mut Vec<(Tok, Span)>,
) -> usize {
    let mut lines = Vec::new();
    let mut span: Option<Span> = None;
    let mut j = i;
    while let Some((tok, s)) = tokens.get(j) {
        match tok {
            Tok::Doc(text) => {
                lines.push(text.as_str());
                span = Some(span.map_or(*s, |sp| sp.to(*s)));
            }
            Tok::Newline => {}
            _ => break,
        }
        j += 1;
    }
    // The newlines skipped here may be all that ends the previous statement
    // (`let x = 1 /// note`): keep one for it.
    let ends_statement = in_block && out.last().is_some_and(|(t, _)| !continues_line(t));
    let skipped_newline = tokens
        .get(i..j)
        .unwrap_or_default()
        .iter()
        .find(|(t, _)| *t == Tok::Newline);
    if let (true, Some((_, s))) = (ends_statement, skipped_newline) {
        out.push((Tok::Newline, *s));
    }
    if let (Some((Tok::Fn | Tok::At, _)), Some(span)) = (tokens.get(j), span) {
        out.push((Tok::Doc(lines.join("\n")), span));
    }
    j
}

/// The end of the item that contains token `from`: the next `,`, `;`, unmatched closer
/// or (in a block) newline at the same bracket depth.
fn item_end(tokens: &[(Tok, Span)], from: usize, in_block: bool) -> usize {
    let mut depth = 0usize;
    for (j, (tok, _)) in tokens.iter().enumerate().skip(from) {
        if tok.is_opener() {
            depth += 1;
        } else if tok.is_closer() {
            if depth == 0 {
                return j;
            }
            depth -= 1;
        } else if depth == 0
            && (matches!(tok, Tok::Comma | Tok::Semi) || (in_block && *tok == Tok::Newline))
        {
            return j;
        }
    }
    tokens.len()
}

/// Replaces `tokens[from..end]` with one error token and reports E0010.
fn cut(
    tokens: &[(Tok, Span)],
    from: usize,
    end: usize,
    out: &mut Vec<(Tok, Span)>,
    diags: &mut Vec<Diagnostic>,
) {
    let first = tokens.get(from).map_or(Span::default(), |(_, s)| *s);
    let last = end
        .checked_sub(1)
        .and_then(|k| tokens.get(k))
        .map_or(first, |(_, s)| *s);
    let region = first.to(last);
    diags.push(
        Diagnostic::error(
            "E0010",
            format!("nesting is too deep: more than {MAX_NESTING} levels"),
            first,
        )
        .with_primary_label(format!("nesting passes {MAX_NESTING} levels here"))
        .with_note(
            "brackets, blocks, operators, closures and `if`/`for`/`while` all count as levels",
        )
        .with_hint("split the expression with `let` bindings or helper functions"),
    );
    out.push((Tok::Error, region));
}
