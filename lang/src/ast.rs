//! The abstract syntax tree of MindScript (LANGUAGE.md §2–§5, §7–§9).
//!
//! The parser always produces a tree, even for wrong programs: what could not be parsed
//! becomes an [`ExprKind::Error`] node (or is left out) and the syntax error is reported
//! beside the tree. Every node carries the byte [`Span`] of the source it came from.
//!
//! Syntactic sugar is kept as written where diagnostics need it (method calls, compound
//! assignment, `x.T`), so that errors can point at what the user typed; the checker and the
//! evaluator give it its meaning.

use std::collections::HashSet;
use std::sync::Arc;

use crate::span::Span;

/// An identifier's text, shared cheaply between the tree, scopes and types.
pub type Name = Arc<str>;

/// An identifier with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The identifier as written.
    pub name: Name,
    /// Where it is.
    pub span: Span,
}

/// A whole script, or one REPL entry: its statements in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Program {
    /// Top-level statements, including `fn`, `type` and `import` declarations.
    pub stmts: Vec<Stmt>,
}

/// A statement with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    /// What the statement is.
    pub kind: StmtKind,
    /// The whole statement.
    pub span: Span,
}

/// The statements of LANGUAGE.md §5.
#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// `let PAT (: TYPE)? = EXPR`.
    Let {
        /// What is bound: a name, a tuple or record pattern, `_`.
        pat: Pattern,
        /// The annotation, checked against the value.
        ty: Option<TypeExpr>,
        /// The bound value.
        value: Expr,
    },
    /// `x = e`, or `x op= e` when `op` is set (`+= -= *= /=`): rebinding an existing
    /// variable, which keeps its dtype and rank.
    Assign {
        /// The variable rebound.
        target: Ident,
        /// `Some(Add)` for `+=`, and so on; `None` for plain `=`.
        op: Option<BinOp>,
        /// The new value (the right-hand side as written).
        value: Expr,
    },
    /// A named function declaration.
    Fn(FnDecl),
    /// `type Name = TYPE`.
    TypeAlias {
        /// The alias being declared.
        name: Ident,
        /// What it stands for.
        ty: TypeExpr,
    },
    /// `import nn` or `import "lib/util.ms" as util`.
    Import {
        /// The module imported.
        source: ImportSource,
        /// The name it is bound to (`as util`); for a standard module, its own name.
        alias: Option<Ident>,
    },
    /// An expression used as a statement (its value is the block's value when last).
    Expr(Expr),
}

/// What an `import` names.
#[derive(Clone, Debug, PartialEq)]
pub enum ImportSource {
    /// A standard module by name (`import nn`).
    Module(Ident),
    /// A file path relative to the importing file (`import "lib/util.ms"`), with the span
    /// of the string literal.
    File(String, Span),
}

/// `fn name(params) -> ret { body }`, with its attributes and doc comment.
#[derive(Clone, Debug, PartialEq)]
pub struct FnDecl {
    /// The function's name.
    pub name: Ident,
    /// Parameters in order.
    pub params: Vec<Param>,
    /// The declared result type, if any.
    pub ret: Option<TypeExpr>,
    /// The body; its value is the function's result.
    pub body: Block,
    /// `@jit`, `@jit(parallel: "data", devices: 4)`, ... in source order.
    pub attrs: Vec<Attribute>,
    /// The `///` doc comment lines before the function, joined with newlines, without the
    /// `///` markers.
    pub doc: Option<String>,
    /// The whole declaration, attributes included.
    pub span: Span,
}

/// One parameter of a function or closure: `name`, `name: T`, `name = default`.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The parameter's name.
    pub name: Ident,
    /// Its annotation; an unannotated parameter is generic.
    pub ty: Option<TypeExpr>,
    /// Its default value (`lr = 1e-3`).
    pub default: Option<Expr>,
    /// The whole parameter.
    pub span: Span,
}

/// An attribute before a `fn`: `@name` or `@name(args)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    /// The attribute's name (`jit`).
    pub name: Ident,
    /// Its arguments, positional and named.
    pub args: Vec<Arg>,
    /// The whole attribute.
    pub span: Span,
}

/// A `{ ... }` block: statements whose value is the last statement's, when it is an
/// expression, and unit otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// The statements in order.
    pub stmts: Vec<Stmt>,
    /// From `{` to `}`.
    pub span: Span,
}

/// An argument of a call or an attribute: `e` or `name: e`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// The name, for a named argument.
    pub name: Option<Ident>,
    /// The value.
    pub value: Expr,
}

/// A field of a record literal: `name: e`.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The field's name.
    pub name: Ident,
    /// Its value.
    pub value: Expr,
}

/// An expression with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// The whole expression.
    pub span: Span,
}

/// The expressions of LANGUAGE.md §4 (and control flow, which are expressions too).
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// An integer literal (weakly typed: `i64` unless the context says otherwise).
    Int(i64),
    /// A float literal (weakly typed: `f32` unless the context needs `f64`).
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A string literal, escapes resolved.
    Str(String),
    /// A variable, function or module name; `_` in the REPL is the last value.
    Name(Name),
    /// A bracketed list `[a, b, c]`: a tensor literal, or a shape where one is expected.
    List(Vec<Expr>),
    /// A tuple `(a, b)` or `(a,)`; `()` is the unit value.
    Tuple(Vec<Expr>),
    /// A record literal `{w: e, b: e}`.
    Record(Vec<Field>),
    /// A prefix operator: `-x`, `!c`.
    Unary {
        /// Which operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// An infix operator of §4 (`..` is [`ExprKind::Range`]).
    Binary {
        /// Which operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
        /// The operator token itself.
        op_span: Span,
    },
    /// `start..end`, an integer range (for loops).
    Range {
        /// First value.
        start: Box<Expr>,
        /// One past the last value.
        end: Box<Expr>,
    },
    /// A call `f(a, b, key: v)`.
    Call {
        /// What is called.
        callee: Box<Expr>,
        /// Positional arguments first, then named ones.
        args: Vec<Arg>,
    },
    /// Method sugar `x.f(a)`, which is `f(x, a)` unless `x` is a record with a field `f`.
    Method {
        /// The receiver `x`.
        receiver: Box<Expr>,
        /// The method name `f`.
        method: Ident,
        /// The other arguments.
        args: Vec<Arg>,
    },
    /// A field access `p.w`, or a property `x.T`, `x.shape`, `x.dtype`, or a module member
    /// `nn.linear`.
    Field {
        /// The record, tensor or module.
        base: Box<Expr>,
        /// The field's name.
        field: Ident,
    },
    /// A tuple element `t.0`.
    TupleField {
        /// The tuple.
        base: Box<Expr>,
        /// Which element.
        index: usize,
        /// The span of the index digits.
        index_span: Span,
    },
    /// Indexing `x[i, 1:3, :, -1, ...]`.
    Index {
        /// The tensor indexed.
        base: Box<Expr>,
        /// One item per indexed axis (or an ellipsis).
        items: Vec<IndexItem>,
    },
    /// A closure `|x, y| body`.
    Closure {
        /// Parameters (annotations allowed, defaults not).
        params: Vec<Param>,
        /// The body expression (often a block).
        body: Box<Expr>,
    },
    /// A block used as an expression.
    Block(Block),
    /// `if cond { .. } else ..`; `else if` nests another `If` as the else branch.
    If {
        /// The condition (a scalar bool).
        cond: Box<Expr>,
        /// The then-branch.
        then: Block,
        /// The else-branch: a `Block` or an `If` expression.
        els: Option<Box<Expr>>,
    },
    /// `for PAT in ITER { body }` (unit-valued).
    For {
        /// The loop variable pattern.
        pat: Pattern,
        /// What is iterated: a range, a tensor (axis 0), `batches(...)`.
        iter: Box<Expr>,
        /// The loop body.
        body: Block,
    },
    /// `while cond { body }` (unit-valued).
    While {
        /// The condition (a scalar bool).
        cond: Box<Expr>,
        /// The loop body.
        body: Block,
    },
    /// `break`.
    Break,
    /// `continue`.
    Continue,
    /// `return` or `return e`.
    Return(Option<Box<Expr>>),
    /// Something that failed to parse; its error was reported. Checking it yields an
    /// unknown type that raises no further errors.
    Error,
}

/// One item of an index expression.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexItem {
    /// An integer (drops the axis) or an `i64` tensor (gathers).
    Expr(Expr),
    /// `start:end:step`, each part optional (`:`, `a:`, `:b`, `a:b:s`).
    Slice {
        /// First index, if given.
        start: Option<Box<Expr>>,
        /// One past the last index, if given.
        end: Option<Box<Expr>>,
        /// The step, if given.
        step: Option<Box<Expr>>,
        /// The whole slice.
        span: Span,
    },
    /// `...`: as many full slices as needed.
    Ellipsis(Span),
}

/// Prefix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `!c`.
    Not,
}

/// Infix operators of §4 (ranges are [`ExprKind::Range`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `||` (short-circuit, scalar bools).
    Or,
    /// `&&` (short-circuit, scalar bools).
    And,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/` (float division; ints give `f32`).
    Div,
    /// `%` (floored, like Python).
    Rem,
    /// `@` (NumPy `matmul`).
    MatMul,
    /// `**` (right-associative).
    Pow,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::MatMul => "@",
            BinOp::Pow => "**",
        }
    }
}

impl UnaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            UnaryOp::Neg => "-",
            UnaryOp::Not => "!",
        }
    }
}

/// A binding pattern of `let`, `for` and (tuple) parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    /// What the pattern is.
    pub kind: PatternKind,
    /// The whole pattern.
    pub span: Span,
}

/// The patterns of §5 and §13.
#[derive(Clone, Debug, PartialEq)]
pub enum PatternKind {
    /// Binds a name.
    Name(Ident),
    /// `_`: matches anything, binds nothing.
    Wildcard,
    /// `(a, b)`, `(a,)`.
    Tuple(Vec<Pattern>),
    /// `{w, b}` or `{w: pat, b}`: fields by name.
    Record(Vec<FieldPattern>),
}

/// One field of a record pattern: `w` (shorthand) or `w: pat`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldPattern {
    /// The field's name.
    pub name: Ident,
    /// The sub-pattern; `None` for the shorthand, which binds the field's name.
    pub pat: Option<Pattern>,
}

/// A type as written in an annotation or a `type` alias (§3).
#[derive(Clone, Debug, PartialEq)]
pub struct TypeExpr {
    /// What the type is.
    pub kind: TypeExprKind,
    /// The whole type.
    pub span: Span,
}

/// The type syntax of §3.
#[derive(Clone, Debug, PartialEq)]
pub enum TypeExprKind {
    /// `f32[2, n]`, `f32` (a scalar: no brackets), `i64[...,d]`; also an alias name when
    /// `dims` is `None` and the name is not a dtype (the checker decides).
    Tensor {
        /// The dtype name (`f32`), or an alias name.
        dtype: Ident,
        /// The dimensions in brackets; `None` when written without brackets.
        dims: Option<Vec<DimExpr>>,
    },
    /// `(T, U)`, `(T,)`; `()` is the unit type.
    Tuple(Vec<TypeExpr>),
    /// `{w: T, b: U}`.
    Record(Vec<(Ident, TypeExpr)>),
    /// `fn(T, U) -> R`.
    Fn {
        /// Parameter types.
        params: Vec<TypeExpr>,
        /// Result type.
        ret: Box<TypeExpr>,
    },
    /// `str`.
    Str,
}

/// One dimension in a tensor type.
#[derive(Clone, Debug, PartialEq)]
pub struct DimExpr {
    /// What the dimension is.
    pub kind: DimExprKind,
    /// Where it is written.
    pub span: Span,
}

/// The dimension syntax of §3.
#[derive(Clone, Debug, PartialEq)]
pub enum DimExprKind {
    /// A fixed size: `3`.
    Known(u64),
    /// A symbolic size: `n`, `batch`.
    Sym(Name),
    /// `_`: any one dimension.
    Any,
    /// `?`: a dimension known only at run time.
    Unknown,
    /// `...`: any number of leading dimensions.
    Ellipsis,
}

/// Every name an expression mentions: an over-approximation of its free variables (names
/// bound inside shadow the captured ones anyway), which is what both the checker and the
/// evaluator need to decide what a closure captures.
pub fn free_names(e: &Expr, out: &mut HashSet<Name>) {
    match &e.kind {
        ExprKind::Name(n) => {
            out.insert(n.clone());
        }
        ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Bool(_)
        | ExprKind::Str(_)
        | ExprKind::Break
        | ExprKind::Continue
        | ExprKind::Error => {}
        ExprKind::List(xs) | ExprKind::Tuple(xs) => xs.iter().for_each(|x| free_names(x, out)),
        ExprKind::Record(fs) => fs.iter().for_each(|f| free_names(&f.value, out)),
        ExprKind::Unary { operand, .. } => free_names(operand, out),
        ExprKind::Binary { lhs, rhs, .. } => {
            free_names(lhs, out);
            free_names(rhs, out);
        }
        ExprKind::Range { start, end } => {
            free_names(start, out);
            free_names(end, out);
        }
        ExprKind::Call { callee, args } => {
            free_names(callee, out);
            args.iter().for_each(|a| free_names(&a.value, out));
        }
        ExprKind::Method {
            receiver,
            method,
            args,
        } => {
            out.insert(method.name.clone());
            free_names(receiver, out);
            args.iter().for_each(|a| free_names(&a.value, out));
        }
        ExprKind::Field { base, .. } | ExprKind::TupleField { base, .. } => free_names(base, out),
        ExprKind::Index { base, items } => {
            free_names(base, out);
            for it in items {
                match it {
                    IndexItem::Expr(x) => free_names(x, out),
                    IndexItem::Slice {
                        start, end, step, ..
                    } => {
                        for x in [start, end, step].into_iter().flatten() {
                            free_names(x, out);
                        }
                    }
                    IndexItem::Ellipsis(_) => {}
                }
            }
        }
        ExprKind::Closure { params, body } => {
            for p in params {
                if let Some(d) = &p.default {
                    free_names(d, out);
                }
            }
            free_names(body, out);
        }
        ExprKind::Block(b) => block_names(b, out),
        ExprKind::If { cond, then, els } => {
            free_names(cond, out);
            block_names(then, out);
            if let Some(x) = els {
                free_names(x, out);
            }
        }
        ExprKind::For { iter, body, .. } => {
            free_names(iter, out);
            block_names(body, out);
        }
        ExprKind::While { cond, body } => {
            free_names(cond, out);
            block_names(body, out);
        }
        ExprKind::Return(x) => {
            if let Some(x) = x {
                free_names(x, out);
            }
        }
    }
}

/// Every name the statements of a block mention (see [`free_names`]).
pub fn block_names(b: &Block, out: &mut HashSet<Name>) {
    for s in &b.stmts {
        match &s.kind {
            StmtKind::Let { value, .. } => free_names(value, out),
            StmtKind::Assign { target, value, .. } => {
                out.insert(target.name.clone());
                free_names(value, out);
            }
            StmtKind::Fn(d) => {
                block_names(&d.body, out);
                for p in &d.params {
                    if let Some(x) = &p.default {
                        free_names(x, out);
                    }
                }
            }
            StmtKind::Expr(e) => free_names(e, out),
            StmtKind::TypeAlias { .. } | StmtKind::Import { .. } => {}
        }
    }
}

/// The variables a block assigns (`x = e`, `x += e`) outside closures and nested function
/// declarations: what staging passes through the region of an `if` or a loop whose
/// condition is known only at run time. Names a nested `let` shadows are included; the
/// caller keeps those that name a variable visible where the region starts.
pub fn block_assigned(b: &Block, out: &mut HashSet<Name>) {
    stmts_assigned(&b.stmts, out);
}

/// [`block_assigned`] of some statements.
pub fn stmts_assigned(stmts: &[Stmt], out: &mut HashSet<Name>) {
    for s in stmts {
        match &s.kind {
            StmtKind::Let { value, .. } => expr_assigned(value, out),
            StmtKind::Assign { target, value, .. } => {
                out.insert(target.name.clone());
                expr_assigned(value, out);
            }
            StmtKind::Expr(e) => expr_assigned(e, out),
            StmtKind::Fn(_) | StmtKind::TypeAlias { .. } | StmtKind::Import { .. } => {}
        }
    }
}

/// [`block_assigned`] of the blocks inside an expression.
pub fn expr_assigned(e: &Expr, out: &mut HashSet<Name>) {
    let mut each = |xs: &mut dyn Iterator<Item = &Expr>| xs.for_each(|x| expr_assigned(x, out));
    match &e.kind {
        ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Bool(_)
        | ExprKind::Str(_)
        | ExprKind::Name(_)
        | ExprKind::Break
        | ExprKind::Continue
        | ExprKind::Error
        | ExprKind::Closure { .. } => {}
        ExprKind::List(xs) | ExprKind::Tuple(xs) => each(&mut xs.iter()),
        ExprKind::Record(fs) => each(&mut fs.iter().map(|f| &f.value)),
        ExprKind::Unary { operand, .. } => expr_assigned(operand, out),
        ExprKind::Binary { lhs, rhs, .. } => each(&mut [&**lhs, &**rhs].into_iter()),
        ExprKind::Range { start, end } => each(&mut [&**start, &**end].into_iter()),
        ExprKind::Call { callee, args } => {
            each(&mut std::iter::once(&**callee).chain(args.iter().map(|a| &a.value)));
        }
        ExprKind::Method { receiver, args, .. } => {
            each(&mut std::iter::once(&**receiver).chain(args.iter().map(|a| &a.value)));
        }
        ExprKind::Field { base, .. } | ExprKind::TupleField { base, .. } => {
            expr_assigned(base, out);
        }
        ExprKind::Index { base, items } => {
            expr_assigned(base, out);
            for it in items {
                match it {
                    IndexItem::Expr(x) => expr_assigned(x, out),
                    IndexItem::Slice {
                        start, end, step, ..
                    } => {
                        for x in [start, end, step].into_iter().flatten() {
                            expr_assigned(x, out);
                        }
                    }
                    IndexItem::Ellipsis(_) => {}
                }
            }
        }
        ExprKind::Block(b) => block_assigned(b, out),
        ExprKind::If { cond, then, els } => {
            expr_assigned(cond, out);
            block_assigned(then, out);
            if let Some(x) = els {
                expr_assigned(x, out);
            }
        }
        ExprKind::For { iter, body, .. } => {
            expr_assigned(iter, out);
            block_assigned(body, out);
        }
        ExprKind::While { cond, body } => {
            expr_assigned(cond, out);
            block_assigned(body, out);
        }
        ExprKind::Return(x) => {
            if let Some(x) = x {
                expr_assigned(x, out);
            }
        }
    }
}

/// The ways code can leave its surroundings early: a `break` or `continue` that is not
/// inside a loop of its own, or a `return`. Closures and nested function declarations do
/// not count (their exits are their own). Staging gives code that may exit on a run-time
/// condition an exit code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exits {
    /// A `break` or `continue` leaves (or restarts) an enclosing loop.
    pub loops: bool,
    /// A `return` leaves the function.
    pub returns: bool,
}

impl Exits {
    /// Whether there is any exit.
    pub fn any(self) -> bool {
        self.loops || self.returns
    }

    fn or(self, o: Exits) -> Exits {
        Exits {
            loops: self.loops || o.loops,
            returns: self.returns || o.returns,
        }
    }

    /// The exits of a loop's body seen from outside the loop: only its `return`s.
    fn outside_loop(self) -> Exits {
        Exits {
            loops: false,
            returns: self.returns,
        }
    }
}

/// [`Exits`] of a block.
pub fn block_exits(b: &Block) -> Exits {
    b.stmts
        .iter()
        .map(|s| match &s.kind {
            StmtKind::Let { value, .. } | StmtKind::Assign { value, .. } => expr_exits(value),
            StmtKind::Expr(e) => expr_exits(e),
            StmtKind::Fn(_) | StmtKind::TypeAlias { .. } | StmtKind::Import { .. } => {
                Exits::default()
            }
        })
        .fold(Exits::default(), Exits::or)
}

/// [`Exits`] of an expression.
pub fn expr_exits(e: &Expr) -> Exits {
    let all =
        |xs: &mut dyn Iterator<Item = &Expr>| xs.map(expr_exits).fold(Exits::default(), Exits::or);
    match &e.kind {
        ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Bool(_)
        | ExprKind::Str(_)
        | ExprKind::Name(_)
        | ExprKind::Error
        | ExprKind::Closure { .. } => Exits::default(),
        ExprKind::Break | ExprKind::Continue => Exits {
            loops: true,
            returns: false,
        },
        ExprKind::Return(x) => Exits {
            loops: false,
            returns: true,
        }
        .or(x.as_deref().map(expr_exits).unwrap_or_default()),
        ExprKind::List(xs) | ExprKind::Tuple(xs) => all(&mut xs.iter()),
        ExprKind::Record(fs) => all(&mut fs.iter().map(|f| &f.value)),
        ExprKind::Unary { operand, .. } => expr_exits(operand),
        ExprKind::Binary { lhs, rhs, .. } => all(&mut [&**lhs, &**rhs].into_iter()),
        ExprKind::Range { start, end } => all(&mut [&**start, &**end].into_iter()),
        ExprKind::Call { callee, args } => {
            all(&mut std::iter::once(&**callee).chain(args.iter().map(|a| &a.value)))
        }
        ExprKind::Method { receiver, args, .. } => {
            all(&mut std::iter::once(&**receiver).chain(args.iter().map(|a| &a.value)))
        }
        ExprKind::Field { base, .. } | ExprKind::TupleField { base, .. } => expr_exits(base),
        ExprKind::Index { base, items } => {
            let mut ex = expr_exits(base);
            for it in items {
                match it {
                    IndexItem::Expr(x) => ex = ex.or(expr_exits(x)),
                    IndexItem::Slice {
                        start, end, step, ..
                    } => {
                        for x in [start, end, step].into_iter().flatten() {
                            ex = ex.or(expr_exits(x));
                        }
                    }
                    IndexItem::Ellipsis(_) => {}
                }
            }
            ex
        }
        ExprKind::Block(b) => block_exits(b),
        ExprKind::If { cond, then, els } => expr_exits(cond)
            .or(block_exits(then))
            .or(els.as_deref().map(expr_exits).unwrap_or_default()),
        // A loop's own `break`s stay inside it; its condition or iterable belongs outside.
        ExprKind::For { iter, body, .. } => expr_exits(iter).or(block_exits(body).outside_loop()),
        ExprKind::While { cond, body } => expr_exits(cond).or(block_exits(body).outside_loop()),
    }
}
