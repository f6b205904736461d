//! The grammar, written with chumsky over the tokens of the layout pass.
//!
//! Expressions use chumsky's Pratt parser with the precedence table of LANGUAGE.md §4.
//! The grammar never needs to re-parse an expression after backtracking: every choice
//! is decided by its first token (tuples versus parentheses, slices versus indices,
//! named versus positional arguments look at most one token ahead), so parsing is linear.
//!
//! Errors of our own (chained comparisons, misplaced named arguments, bad assignment
//! targets) are emitted as chumsky errors carrying a whole [`Diagnostic`], so that they
//! are discarded with the branch that produced them when the parser backtracks.

use chumsky::input::MappedInput;
use chumsky::pratt::{infix, left, postfix, prefix, right};
use chumsky::prelude::*;

use super::token::Tok;
use crate::ast::{
    Arg, Attribute, BinOp, Block, DimExpr, DimExprKind, Expr, ExprKind, Field, FieldPattern,
    FnDecl, Ident, ImportSource, IndexItem, Name, Param, Pattern, PatternKind, Stmt, StmtKind,
    TypeExpr, TypeExprKind, UnaryOp,
};
use crate::diagnostics::Diagnostic;
use crate::span::Span;

/// The parser's input: the layout pass's tokens with chumsky spans.
pub(crate) type TokInput<'s> = MappedInput<'s, Tok, SimpleSpan, &'s [(Tok, SimpleSpan)]>;

/// A parse error: chumsky's expected/found errors, or one of our diagnostics.
pub(crate) type PError<'s> = Rich<'s, Tok, SimpleSpan, Box<Diagnostic>>;

type Extra<'s> = extra::Err<PError<'s>>;

type Boxed<'s, O> = chumsky::Boxed<'s, 's, TokInput<'s>, O, Extra<'s>>;

/// A handle on a parser built with [`recursive`]: inside the closure that builds the
/// parser it is a weak back-reference to it; the value `recursive` returns owns it.
type Rec<'s, O> = Recursive<chumsky::recursive::Direct<'s, 's, TokInput<'s>, O, Extra<'s>>>;

/// The dtype name given to a type that failed to parse (the error is reported). No
/// identifier can be spelled like this.
pub const ERROR_TYPE_NAME: &str = "{error}";

/// Converts a chumsky span. An empty match between two tokens comes back reversed (from
/// the next token's start to the previous token's end); it becomes the empty span just
/// after the previous token, where something was missing.
pub(crate) fn sp(s: SimpleSpan) -> Span {
    if s.start <= s.end {
        Span::new(s.start, s.end)
    } else {
        Span::new(s.end, s.end)
    }
}

/// What [`parenthesized`] read: a single item without a trailing comma is only grouping,
/// anything else is a tuple (`()` the empty one).
enum Paren<T> {
    Group(T),
    Tuple(Vec<T>),
}

/// `()`, `(a)`, `(a,)` and `(a, b, ...)` over `item`. Expressions, types and patterns all
/// read parentheses this way, so the rule lives here once: the comma after the first item
/// decides between grouping and a tuple, looking one token ahead.
fn parenthesized<'s, T, P>(item: P) -> impl Parser<'s, TokInput<'s>, Paren<T>, Extra<'s>> + Clone
where
    P: Parser<'s, TokInput<'s>, T, Extra<'s>> + Clone,
{
    just(Tok::LParen)
        .ignore_then(
            item.clone()
                .then(
                    just(Tok::Comma)
                        .ignore_then(
                            item.separated_by(just(Tok::Comma))
                                .allow_trailing()
                                .collect::<Vec<_>>(),
                        )
                        .or_not(),
                )
                .or_not(),
        )
        .then_ignore(just(Tok::RParen))
        .map(|inner| match inner {
            None => Paren::Tuple(Vec::new()),
            Some((first, None)) => Paren::Group(first),
            Some((first, Some(rest))) => {
                let mut items = Vec::with_capacity(rest.len() + 1);
                items.push(first);
                items.extend(rest);
                Paren::Tuple(items)
            }
        })
}

fn mk(kind: ExprKind, span: Span) -> Expr {
    Expr { kind, span }
}

fn custom_error<'s>(diag: Diagnostic) -> PError<'s> {
    let span = SimpleSpan::from(diag.primary.span.range());
    Rich::custom(span, Box::new(diag))
}

/// The operators that cannot be chained without parentheses.
fn is_comparison(op: BinOp) -> bool {
    matches!(
        op,
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
    )
}

/// True when `e` was written without parentheses around it: its span is exactly that of
/// its operands (a parenthesized expression's span includes the parentheses).
fn unparenthesized(e: &Expr, first: &Expr, last: &Expr) -> bool {
    e.span == first.span.to(last.span)
}

/// An item after an operand: call, index, field, method or tuple field.
#[derive(Clone)]
enum Post {
    Call(Vec<Arg>),
    Index(Vec<IndexItem>),
    Field(Ident),
    Method(Ident, Vec<Arg>),
    TupleField(i64, Span),
    Error,
}

/// The parsers for a whole program and for one expression.
pub(crate) struct Grammar<'s> {
    /// Statements up to the end of the input.
    pub program: Boxed<'s, Vec<Stmt>>,
    /// One expression (surrounded by optional separators) up to the end of the input.
    pub expr: Boxed<'s, Expr>,
}

/// Builds the grammar; `src` is the text being parsed, quoted in hints.
///
/// Expressions and blocks are mutually recursive: an expression can be a block (or an
/// `if`, `for` or `while` with one) and a block holds statements made of expressions.
/// Every back-edge of that recursion must be a handle given by [`recursive`], never a
/// clone of a [`Recursive::declare`]d parser. A declared parser is an `Rc` that each of
/// its clones shares as a strong reference, so a parser that contains a clone of itself
/// is an `Rc` cycle that is never freed: built that way, the grammar leaked several
/// kilobytes on every call of [`parse`](super::parse), without bound in a REPL. The
/// handle that `recursive` passes to its closure is a `Weak` reference instead, and only
/// the value it returns is strong. So `expr` is built with `recursive`, and inside it
/// `block` with a nested `recursive` that refers to `expr` through the outer closure's
/// weak handle. The statement parser is built twice by [`statement`]: once inside
/// `block` from the weak handles, and once for the whole program from the finished
/// (strong) `expr` and `block`.
pub(crate) fn grammar<'s>(src: &'s str) -> Grammar<'s> {
    let ident = select! { Tok::Ident(name) = e => Ident { name, span: sp(e.span()) } }
        .labelled("a name")
        .boxed();
    let sep = just(Tok::Newline)
        .or(just(Tok::Semi))
        .ignored()
        .labelled("end of line or `;`")
        .boxed();
    let ty = type_parser(ident.clone());
    let pat = pattern_parser(ident.clone());

    // The finished block parser, handed out of the closure that builds `expr` so that
    // top-level function declarations can use it too. This strong handle makes no
    // cycle: the block parser refers to `expr` and to itself only through weak handles.
    let mut finished_block = None;
    let expr: Rec<'s, Expr> = recursive(|expr: Rec<'s, Expr>| {
        let block: Rec<'s, Block> = recursive(|block: Rec<'s, Block>| {
            let stmt = statement(src, &ident, &ty, &pat, expr.clone(), block);
            statements(stmt, sep.clone(), true)
                .delimited_by(just(Tok::LBrace), just(Tok::RBrace))
                .map_with(|stmts, e| Block {
                    stmts,
                    span: sp(e.span()),
                })
        });
        finished_block = Some(block.clone());
        expression(src, &ident, &ty, &pat, expr, block)
    });
    let block = finished_block.expect("`recursive` calls its closure before returning");

    let stmt = statement(src, &ident, &ty, &pat, expr.clone(), block);
    let program = statements(stmt, sep.clone(), false)
        .then_ignore(end())
        .boxed();
    let expr_only = sep
        .clone()
        .repeated()
        .ignore_then(expr)
        .then_ignore(sep.repeated())
        .then_ignore(end())
        .boxed();
    Grammar {
        program,
        expr: expr_only,
    }
}

/// Call arguments in parentheses: `name: e` (one token of lookahead after the name) or
/// `e`, named ones last.
fn args_parser<'s>(ident: &Boxed<'s, Ident>, expr: Rec<'s, Expr>) -> Boxed<'s, Vec<Arg>> {
    let arg = ident
        .clone()
        .then_ignore(just(Tok::Colon))
        .then(expr.clone())
        .map(|(name, value)| Arg {
            name: Some(name),
            value,
        })
        .or(expr.clone().map(|value| Arg { name: None, value }))
        .boxed();
    arg.separated_by(just(Tok::Comma))
        .allow_trailing()
        .collect::<Vec<_>>()
        .delimited_by(just(Tok::LParen), just(Tok::RParen))
        .validate(|args: Vec<Arg>, _, emitter| {
            check_arg_order(&args, |d| emitter.emit(custom_error(d)));
            args
        })
        .boxed()
}

/// Expressions: operands, then the Pratt parser for the operators of §4. `expr` and
/// `block` are the handles for nested expressions and blocks.
fn expression<'s>(
    src: &'s str,
    ident: &Boxed<'s, Ident>,
    ty: &Boxed<'s, TypeExpr>,
    pat: &Boxed<'s, Pattern>,
    expr: Rec<'s, Expr>,
    block: Rec<'s, Block>,
) -> impl Parser<'s, TokInput<'s>, Expr, Extra<'s>> + Clone + 's {
    let args = args_parser(ident, expr.clone());

    // Index items: `...`, `:b`, `a`, `a:b:s`, decided by the first token.
    let opt_expr = expr.clone().or_not().boxed();
    let slice_tail = just(Tok::Colon)
        .ignore_then(opt_expr.clone())
        .then(just(Tok::Colon).ignore_then(opt_expr.clone()).or_not())
        .boxed();
    let index_item = choice((
        just(Tok::Ellipsis).map_with(|_, e| IndexItem::Ellipsis(sp(e.span()))),
        slice_tail
            .clone()
            .map_with(|(end, step), e| IndexItem::Slice {
                start: None,
                end: end.map(Box::new),
                step: step.flatten().map(Box::new),
                span: sp(e.span()),
            }),
        expr.clone()
            .then(slice_tail.or_not())
            .map_with(|(start, tail), e| match tail {
                None => IndexItem::Expr(start),
                Some((end, step)) => IndexItem::Slice {
                    start: Some(Box::new(start)),
                    end: end.map(Box::new),
                    step: step.flatten().map(Box::new),
                    span: sp(e.span()),
                },
            }),
    ))
    .labelled("an index")
    .boxed();

    let post_op = choice((
        args.clone().map(Post::Call),
        index_item
            .separated_by(just(Tok::Comma))
            .allow_trailing()
            .collect::<Vec<_>>()
            .delimited_by(just(Tok::LBracket), just(Tok::RBracket))
            .map(Post::Index),
        just(Tok::Dot).ignore_then(choice((
            ident
                .clone()
                .then(args.clone().or_not())
                .map(|(name, args)| match args {
                    Some(args) => Post::Method(name, args),
                    None => Post::Field(name),
                }),
            select! { Tok::Int(i) = e => Post::TupleField(i, sp(e.span())) },
            just(Tok::Error).to(Post::Error),
        ))),
        just(Tok::Error).to(Post::Error),
    ))
    .boxed();

    let literal = select! {
        Tok::Int(v) => ExprKind::Int(v),
        Tok::Float(v) => ExprKind::Float(v),
        Tok::True => ExprKind::Bool(true),
        Tok::False => ExprKind::Bool(false),
        Tok::Str(s) => ExprKind::Str(s),
        Tok::Ident(n) => ExprKind::Name(n),
        Tok::Error => ExprKind::Error,
        Tok::Break => ExprKind::Break,
        Tok::Continue => ExprKind::Continue,
    }
    .map_with(|kind, e| mk(kind, sp(e.span())));

    // `()`, `(e)`, `(e,)`, `(e, f)`: the comma after the first element decides.
    let paren = parenthesized(expr.clone()).map_with(|inner, e| {
        let span = sp(e.span());
        match inner {
            Paren::Group(first) => mk(first.kind, span),
            Paren::Tuple(items) => mk(ExprKind::Tuple(items), span),
        }
    });

    let list = expr
        .clone()
        .separated_by(just(Tok::Comma))
        .allow_trailing()
        .collect::<Vec<_>>()
        .delimited_by(just(Tok::LBracket), just(Tok::RBracket))
        .map_with(|items, e| mk(ExprKind::List(items), sp(e.span())));

    let record = ident
        .clone()
        .then_ignore(just(Tok::Colon))
        .then(expr.clone())
        .map(|(name, value)| Field { name, value })
        .separated_by(just(Tok::Comma))
        .allow_trailing()
        .collect::<Vec<_>>()
        .delimited_by(just(Tok::LRecord), just(Tok::RBrace))
        .map_with(|fields, e| mk(ExprKind::Record(fields), sp(e.span())));

    let block_expr = block
        .clone()
        .map(|b| {
            let span = b.span;
            mk(ExprKind::Block(b), span)
        })
        .boxed();

    let if_expr = recursive(|if_expr| {
        just(Tok::If)
            .ignore_then(expr.clone())
            .then(block.clone())
            .then(
                just(Tok::Else)
                    .ignore_then(choice((
                        if_expr,
                        block_expr.clone(),
                        just(Tok::Error).map_with(|_, e| mk(ExprKind::Error, sp(e.span()))),
                    )))
                    .or_not(),
            )
            .map_with(|((cond, then), els), e| {
                mk(
                    ExprKind::If {
                        cond: Box::new(cond),
                        then,
                        els: els.map(Box::new),
                    },
                    sp(e.span()),
                )
            })
    })
    .boxed();

    let for_expr = just(Tok::For)
        .ignore_then(pat.clone())
        .then_ignore(just(Tok::In))
        .then(expr.clone())
        .then(block.clone())
        .map_with(|((pat, iter), body), e| {
            mk(
                ExprKind::For {
                    pat,
                    iter: Box::new(iter),
                    body,
                },
                sp(e.span()),
            )
        });

    let while_expr = just(Tok::While)
        .ignore_then(expr.clone())
        .then(block.clone())
        .map_with(|(cond, body), e| {
            mk(
                ExprKind::While {
                    cond: Box::new(cond),
                    body,
                },
                sp(e.span()),
            )
        });

    let return_expr = just(Tok::Return)
        .ignore_then(expr.clone().or_not())
        .map_with(|value, e| mk(ExprKind::Return(value.map(Box::new)), sp(e.span())));

    let closure_param = ident
        .clone()
        .then(just(Tok::Colon).ignore_then(ty.clone()).or_not())
        .map_with(|(name, ty), e| Param {
            name,
            ty,
            default: None,
            span: sp(e.span()),
        });
    let closure = choice((
        closure_param
            .separated_by(just(Tok::Comma))
            .allow_trailing()
            .collect::<Vec<_>>()
            .delimited_by(just(Tok::Pipe), just(Tok::Pipe)),
        just(Tok::OrOr).to(Vec::new()),
    ))
    .then(expr.clone())
    .map_with(|(params, body), e| {
        mk(
            ExprKind::Closure {
                params,
                body: Box::new(body),
            },
            sp(e.span()),
        )
    });

    let atom = choice((
        literal,
        paren,
        list,
        record,
        block_expr,
        if_expr,
        for_expr,
        while_expr,
        return_expr,
        closure,
    ))
    .labelled("an expression")
    .boxed();

    let binop = |toks: &'static [(Tok, BinOp)]| {
        any()
            .filter(move |t: &Tok| toks.iter().any(|(k, _)| k == t))
            .map_with(move |t: Tok, e| {
                let op = toks
                    .iter()
                    .find(|(k, _)| *k == t)
                    .map_or(BinOp::Add, |(_, op)| *op);
                (op, sp(e.span()))
            })
    };
    let fold_bin = |lhs: Expr, (op, op_span): (BinOp, Span), rhs: Expr, span: Span| {
        mk(
            ExprKind::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                op_span,
            },
            span,
        )
    };

    atom.pratt((
        postfix(10, post_op, |base: Expr, op: Post, e| {
            let span = sp(e.span());
            let base = Box::new(base);
            let kind = match op {
                Post::Call(args) => ExprKind::Call { callee: base, args },
                Post::Index(items) => ExprKind::Index { base, items },
                Post::Field(field) => ExprKind::Field { base, field },
                Post::Method(method, args) => ExprKind::Method {
                    receiver: base,
                    method,
                    args,
                },
                Post::TupleField(index, index_span) => match usize::try_from(index) {
                    Ok(index) => ExprKind::TupleField {
                        base,
                        index,
                        index_span,
                    },
                    Err(_) => ExprKind::Error,
                },
                Post::Error => ExprKind::Error,
            };
            mk(kind, span)
        }),
        infix(
            right(8),
            binop(&[(Tok::StarStar, BinOp::Pow)]),
            move |l, op, r, e| fold_bin(l, op, r, sp(e.span())),
        ),
        prefix(
            7,
            select! { Tok::Minus => UnaryOp::Neg, Tok::Bang => UnaryOp::Not },
            |op, operand, e| {
                mk(
                    ExprKind::Unary {
                        op,
                        operand: Box::new(operand),
                    },
                    sp(e.span()),
                )
            },
        ),
        infix(
            left(6),
            binop(&[
                (Tok::Star, BinOp::Mul),
                (Tok::Slash, BinOp::Div),
                (Tok::Percent, BinOp::Rem),
                (Tok::At, BinOp::MatMul),
            ]),
            move |l, op, r, e| fold_bin(l, op, r, sp(e.span())),
        ),
        infix(
            left(5),
            binop(&[(Tok::Plus, BinOp::Add), (Tok::Minus, BinOp::Sub)]),
            move |l, op, r, e| fold_bin(l, op, r, sp(e.span())),
        ),
        infix(
            left(4),
            just(Tok::DotDot).map_with(|_, e| sp(e.span())),
            move |l: Expr, op_span: Span, r: Expr, e| {
                if let ExprKind::Range { start, end } = &l.kind
                    && unparenthesized(&l, start, end)
                {
                    e.emit(custom_error(chained(
                        src, &l, start, end, "..", op_span, &r,
                    )));
                }
                mk(
                    ExprKind::Range {
                        start: Box::new(l),
                        end: Box::new(r),
                    },
                    sp(e.span()),
                )
            },
        ),
        infix(
            left(3),
            binop(&[
                (Tok::EqEq, BinOp::Eq),
                (Tok::Ne, BinOp::Ne),
                (Tok::Lt, BinOp::Lt),
                (Tok::Le, BinOp::Le),
                (Tok::Gt, BinOp::Gt),
                (Tok::Ge, BinOp::Ge),
            ]),
            move |l: Expr, (op, op_span): (BinOp, Span), r: Expr, e| {
                if let ExprKind::Binary {
                    op: first,
                    lhs,
                    rhs,
                    ..
                } = &l.kind
                    && is_comparison(*first)
                    && unparenthesized(&l, lhs, rhs)
                {
                    e.emit(custom_error(chained(
                        src,
                        &l,
                        lhs,
                        rhs,
                        op.symbol(),
                        op_span,
                        &r,
                    )));
                }
                fold_bin(l, (op, op_span), r, sp(e.span()))
            },
        ),
        infix(
            left(2),
            binop(&[(Tok::AndAnd, BinOp::And)]),
            move |l, op, r, e| fold_bin(l, op, r, sp(e.span())),
        ),
        infix(
            left(1),
            binop(&[(Tok::OrOr, BinOp::Or)]),
            move |l, op, r, e| fold_bin(l, op, r, sp(e.span())),
        ),
    ))
}

/// One statement. `expr` and `block` are the handles for expressions and blocks: weak
/// ones inside the block parser, the finished parsers for the program's statements.
fn statement<'s>(
    src: &'s str,
    ident: &Boxed<'s, Ident>,
    ty: &Boxed<'s, TypeExpr>,
    pat: &Boxed<'s, Pattern>,
    expr: Rec<'s, Expr>,
    block: Rec<'s, Block>,
) -> Boxed<'s, Stmt> {
    let args = args_parser(ident, expr.clone());

    let let_stmt = just(Tok::Let)
        .ignore_then(pat.clone())
        .then(just(Tok::Colon).ignore_then(ty.clone()).or_not())
        .then_ignore(just(Tok::Assign))
        .then(expr.clone())
        .map(|((pat, ty), value)| StmtKind::Let { pat, ty, value });

    let param = ident
        .clone()
        .then(just(Tok::Colon).ignore_then(ty.clone()).or_not())
        .then(just(Tok::Assign).ignore_then(expr.clone()).or_not())
        .map_with(|((name, ty), default), e| Param {
            name,
            ty,
            default,
            span: sp(e.span()),
        });
    let attr = just(Tok::At)
        .ignore_then(ident.clone())
        .then(args.clone().or_not())
        .map_with(|(name, args), e| Attribute {
            name,
            args: args.unwrap_or_default(),
            span: sp(e.span()),
        });
    let fn_decl = select! { Tok::Doc(text) => text }
        .or_not()
        .then(
            attr.then_ignore(just(Tok::Newline).repeated())
                .repeated()
                .collect::<Vec<_>>(),
        )
        .then_ignore(just(Tok::Fn))
        .then(ident.clone())
        .then(
            param
                .separated_by(just(Tok::Comma))
                .allow_trailing()
                .collect::<Vec<_>>()
                .delimited_by(just(Tok::LParen), just(Tok::RParen)),
        )
        .then(just(Tok::Arrow).ignore_then(ty.clone()).or_not())
        .then(block.clone())
        .map_with(|(((((doc, attrs), name), params), ret), body), e| {
            StmtKind::Fn(FnDecl {
                name,
                params,
                ret,
                body,
                attrs,
                doc,
                span: sp(e.span()),
            })
        });

    let type_alias = just(Tok::Type)
        .ignore_then(ident.clone())
        .then_ignore(just(Tok::Assign))
        .then(ty.clone())
        .map(|(name, ty)| StmtKind::TypeAlias { name, ty });

    let import = just(Tok::Import)
        .ignore_then(choice((
            ident.clone().map(ImportSource::Module),
            select! { Tok::Str(path) = e => ImportSource::File(path, sp(e.span())) },
        )))
        .then(just(Tok::As).ignore_then(ident.clone()).or_not())
        .map(|(source, alias)| StmtKind::Import { source, alias });

    let assign_op = select! {
        Tok::Assign => None,
        Tok::PlusEq => Some(BinOp::Add),
        Tok::MinusEq => Some(BinOp::Sub),
        Tok::StarEq => Some(BinOp::Mul),
        Tok::SlashEq => Some(BinOp::Div),
    }
    .map_with(|op, e| (op, sp(e.span())));
    let expr_stmt = expr
        .clone()
        .then(assign_op.then(expr.clone()).or_not())
        .validate(move |(lhs, rhs), _, emitter| match rhs {
            None => StmtKind::Expr(lhs),
            Some(((op, op_span), value)) => match lhs.kind {
                ExprKind::Name(name) => StmtKind::Assign {
                    target: Ident {
                        name,
                        span: lhs.span,
                    },
                    op,
                    value,
                },
                _ => {
                    emitter.emit(custom_error(bad_target(src, &lhs, op, op_span)));
                    StmtKind::Expr(mk(ExprKind::Error, lhs.span.to(value.span)))
                }
            },
        });

    choice((let_stmt, fn_decl, type_alias, import, expr_stmt))
        .map_with(|kind, e| Stmt {
            kind,
            span: sp(e.span()),
        })
        .labelled("a statement")
        .boxed()
}

/// A list of statements separated by newlines or `;`. A statement that fails to parse
/// (or is followed by something other than a separator) is skipped up to the next
/// separator at its bracket depth, so that later statements are still parsed and their
/// errors reported.
fn statements<'s>(
    stmt: Boxed<'s, Stmt>,
    sep: Boxed<'s, ()>,
    in_block: bool,
) -> Boxed<'s, Vec<Stmt>> {
    let stmt_end = if in_block {
        sep.clone().or(just(Tok::RBrace).ignored()).boxed()
    } else {
        sep.clone().or(end()).boxed()
    }
    .labelled("end of line or `;`")
    .rewind();
    // Skipping is imperative: a combinator that re-tries balanced groups at every token
    // would be quadratic in the nesting depth of an unclosed region.
    let skip = custom(
        move |inp: &mut chumsky::input::InputRef<'s, '_, TokInput<'s>, Extra<'s>>| {
            let before = inp.cursor();
            let mut depth = 0usize;
            let mut skipped = 0usize;
            while let Some(tok) = inp.peek() {
                let stop = depth == 0
                    && (matches!(tok, Tok::Newline | Tok::Semi)
                        || (in_block && tok == Tok::RBrace));
                if stop {
                    break;
                }
                if tok.is_opener() {
                    depth += 1;
                } else if tok.is_closer() {
                    depth = depth.saturating_sub(1);
                }
                inp.skip();
                skipped += 1;
            }
            let span = inp.span_since(&before);
            if skipped == 0 {
                return Err(custom_error(Diagnostic::error(
                    "E0001",
                    "expected a statement",
                    sp(span),
                )));
            }
            Ok(Stmt {
                kind: StmtKind::Expr(mk(ExprKind::Error, sp(span))),
                span: sp(span),
            })
        },
    );
    sep.clone()
        .repeated()
        .ignore_then(
            stmt.then_ignore(stmt_end)
                .recover_with(via_parser(skip))
                .then_ignore(sep.repeated())
                .repeated()
                .collect::<Vec<_>>(),
        )
        .boxed()
}

/// Types of §3: `f32[2, n]`, `f32`, `(T, U)`, `{w: T}`, `fn(T) -> R`, `str`, aliases.
fn type_parser<'s>(ident: Boxed<'s, Ident>) -> Boxed<'s, TypeExpr> {
    recursive(|ty| {
        let dim = select! {
            Tok::Int(v) if v >= 0 => DimExprKind::Known(v.unsigned_abs()),
            Tok::Ident(n) => if &*n == "_" { DimExprKind::Any } else { DimExprKind::Sym(n) },
            Tok::Question => DimExprKind::Unknown,
            Tok::Ellipsis => DimExprKind::Ellipsis,
        }
        .map_with(|kind, e| DimExpr {
            kind,
            span: sp(e.span()),
        })
        .labelled("a dimension");
        let tensor = ident
            .clone()
            .then(
                dim.separated_by(just(Tok::Comma))
                    .allow_trailing()
                    .collect::<Vec<_>>()
                    .delimited_by(just(Tok::LBracket), just(Tok::RBracket))
                    .or_not(),
            )
            .map(|(dtype, dims)| {
                if &*dtype.name == "str" && dims.is_none() {
                    TypeExprKind::Str
                } else {
                    TypeExprKind::Tensor { dtype, dims }
                }
            });
        let paren = parenthesized(ty.clone()).map(|inner: Paren<TypeExpr>| match inner {
            Paren::Group(first) => first.kind,
            Paren::Tuple(items) => TypeExprKind::Tuple(items),
        });
        let record = one_of([Tok::LRecord, Tok::LBrace])
            .ignore_then(
                ident
                    .clone()
                    .then_ignore(just(Tok::Colon))
                    .then(ty.clone())
                    .separated_by(just(Tok::Comma))
                    .allow_trailing()
                    .collect::<Vec<_>>(),
            )
            .then_ignore(just(Tok::RBrace))
            .map(TypeExprKind::Record);
        let fn_ty = just(Tok::Fn)
            .ignore_then(
                ty.clone()
                    .separated_by(just(Tok::Comma))
                    .allow_trailing()
                    .collect::<Vec<_>>()
                    .delimited_by(just(Tok::LParen), just(Tok::RParen)),
            )
            .then_ignore(just(Tok::Arrow))
            .then(ty)
            .map(|(params, ret)| TypeExprKind::Fn {
                params,
                ret: Box::new(ret),
            });
        let error = just(Tok::Error).map_with(|_, e| TypeExprKind::Tensor {
            dtype: Ident {
                name: Name::from(ERROR_TYPE_NAME),
                span: sp(e.span()),
            },
            dims: None,
        });
        choice((tensor, paren, record, fn_ty, error))
            .map_with(|kind, e| TypeExpr {
                kind,
                span: sp(e.span()),
            })
            .labelled("a type")
    })
    .boxed()
}

/// Patterns of §5: `x`, `_`, `(a, (b, _))`, `{w, b}`, `{w: w0, b}`.
fn pattern_parser<'s>(ident: Boxed<'s, Ident>) -> Boxed<'s, Pattern> {
    recursive(|pat| {
        // A `{` after `let` may have been read as a block, where newlines count: a record
        // pattern skips them itself.
        let nl = just(Tok::Newline).repeated();
        let name = ident.clone().map(|id| {
            if &*id.name == "_" {
                PatternKind::Wildcard
            } else {
                PatternKind::Name(id)
            }
        });
        let paren = parenthesized(pat.clone()).map(|inner: Paren<Pattern>| match inner {
            Paren::Group(first) => first.kind,
            Paren::Tuple(items) => PatternKind::Tuple(items),
        });
        let field = ident
            .then(just(Tok::Colon).ignore_then(pat).or_not())
            .map(|(name, pat)| FieldPattern { name, pat });
        let record = one_of([Tok::LRecord, Tok::LBrace])
            .ignore_then(nl.clone())
            .ignore_then(
                field
                    .separated_by(nl.clone().then(just(Tok::Comma)).then(nl.clone()))
                    .allow_trailing()
                    .collect::<Vec<_>>(),
            )
            .then_ignore(nl)
            .then_ignore(just(Tok::RBrace))
            .map(PatternKind::Record);
        let error = just(Tok::Error).to(PatternKind::Wildcard);
        choice((name, paren, record, error))
            .map_with(|kind, e| Pattern {
                kind,
                span: sp(e.span()),
            })
            .labelled("a pattern")
    })
    .boxed()
}

/// Reports named arguments followed by positional ones.
fn check_arg_order(args: &[Arg], mut report: impl FnMut(Diagnostic)) {
    let mut first_named: Option<&Ident> = None;
    for arg in args {
        match (&arg.name, first_named) {
            (Some(name), None) => first_named = Some(name),
            (None, Some(named)) => {
                report(
                    Diagnostic::error(
                        "E0009",
                        "a positional argument cannot follow a named argument",
                        arg.value.span,
                    )
                    .with_primary_label("positional argument")
                    .with_label(
                        named.span,
                        format!("named argument `{}` comes before it", named.name),
                    )
                    .with_hint("put the positional arguments first, then the named ones"),
                );
                return;
            }
            _ => {}
        }
    }
}

fn text(src: &str, span: Span) -> &str {
    src.get(span.range()).unwrap_or("")
}

/// The error for `a < b < c` (or `a..b..c`).
fn chained(
    src: &str,
    first: &Expr,
    a: &Expr,
    b: &Expr,
    op2: &str,
    op2_span: Span,
    c: &Expr,
) -> Diagnostic {
    let op1 = match &first.kind {
        ExprKind::Binary { op, .. } => op.symbol(),
        _ => "..",
    };
    let (a, b, c) = (text(src, a.span), text(src, b.span), text(src, c.span));
    let mut diag = Diagnostic::error(
        "E0008",
        format!("`{op1}` and `{op2}` cannot be chained"),
        op2_span,
    )
    .with_primary_label(format!("second `{op2}`"))
    .with_label(first.span, "this is already complete");
    diag = if op1 == ".." {
        diag.with_hint(format!(
            "a range has one start and one end: `{a}..{b}` or `{b}..{c}`"
        ))
    } else {
        diag.with_hint(format!("write `{a} {op1} {b} && {b} {op2} {c}`"))
            .with_note("comparisons are not associative; parenthesize to compare a bool")
    };
    diag
}

/// The error for assigning to something other than a variable.
fn bad_target(src: &str, lhs: &Expr, op: Option<BinOp>, op_span: Span) -> Diagnostic {
    let written = text(src, lhs.span);
    let op_text = text(src, op_span);
    let mut diag = Diagnostic::error(
        "E0011",
        format!("cannot assign to `{written}`: only a variable can be assigned"),
        lhs.span,
    )
    .with_primary_label("not a variable name")
    .with_label(op_span, format!("`{op_text}` needs a variable on its left"));
    diag = match &lhs.kind {
        ExprKind::Field { base, field } => diag.with_hint(format!(
            "values are immutable: rebuild the record, e.g. `{} = {{{}: ..., ...}}`",
            text(src, base.span),
            field.name
        )),
        ExprKind::Index { base, .. } => diag.with_hint(format!(
            "tensors are immutable: compute a new one with `where(...)` and rebind `{}`",
            text(src, base.span)
        )),
        _ if op.is_none() => {
            diag.with_hint("to compare, write `==`; to bind a new name, write `let x = ...`")
        }
        _ => diag,
    };
    diag
}
