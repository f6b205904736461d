//! Small constructors for hand-built ASTs (every node gets the span `0..0`), so that the
//! walker can be tested independently of the parser.

use lang::Span;
use lang::ast::*;

pub fn sp() -> Span {
    Span::new(0, 0)
}

pub fn id(n: &str) -> Ident {
    Ident {
        name: n.into(),
        span: sp(),
    }
}

pub fn e(kind: ExprKind) -> Expr {
    Expr { kind, span: sp() }
}

pub fn name(n: &str) -> Expr {
    e(ExprKind::Name(n.into()))
}

pub fn int(n: i64) -> Expr {
    e(ExprKind::Int(n))
}

pub fn float(x: f64) -> Expr {
    e(ExprKind::Float(x))
}

pub fn string(s: &str) -> Expr {
    e(ExprKind::Str(s.into()))
}

pub fn tuple(items: Vec<Expr>) -> Expr {
    e(ExprKind::Tuple(items))
}

pub fn record(fields: &[(&str, Expr)]) -> Expr {
    e(ExprKind::Record(
        fields
            .iter()
            .map(|(n, v)| Field {
                name: id(n),
                value: v.clone(),
            })
            .collect(),
    ))
}

pub fn pos(v: Expr) -> Arg {
    Arg {
        name: None,
        value: v,
    }
}

pub fn kw(n: &str, v: Expr) -> Arg {
    Arg {
        name: Some(id(n)),
        value: v,
    }
}

pub fn call(f: Expr, args: Vec<Arg>) -> Expr {
    e(ExprKind::Call {
        callee: Box::new(f),
        args,
    })
}

pub fn call_n(f: &str, args: Vec<Expr>) -> Expr {
    call(name(f), args.into_iter().map(pos).collect())
}

pub fn method(r: Expr, m: &str, args: Vec<Arg>) -> Expr {
    e(ExprKind::Method {
        receiver: Box::new(r),
        method: id(m),
        args,
    })
}

pub fn field(b: Expr, f: &str) -> Expr {
    e(ExprKind::Field {
        base: Box::new(b),
        field: id(f),
    })
}

pub fn tfield(b: Expr, i: usize) -> Expr {
    e(ExprKind::TupleField {
        base: Box::new(b),
        index: i,
        index_span: sp(),
    })
}

pub fn block(stmts: Vec<Stmt>) -> Block {
    Block { stmts, span: sp() }
}

pub fn if_(c: Expr, t: Vec<Stmt>, el: Option<Vec<Stmt>>) -> Expr {
    e(ExprKind::If {
        cond: Box::new(c),
        then: block(t),
        els: el.map(|b| Box::new(e(ExprKind::Block(block(b))))),
    })
}

pub fn for_(p: Pattern, it: Expr, body: Vec<Stmt>) -> Expr {
    e(ExprKind::For {
        pat: p,
        iter: Box::new(it),
        body: block(body),
    })
}

pub fn while_(c: Expr, body: Vec<Stmt>) -> Expr {
    e(ExprKind::While {
        cond: Box::new(c),
        body: block(body),
    })
}

pub fn range(a: Expr, b: Expr) -> Expr {
    e(ExprKind::Range {
        start: Box::new(a),
        end: Box::new(b),
    })
}

pub fn closure(params: &[&str], body: Expr) -> Expr {
    e(ExprKind::Closure {
        params: params.iter().map(|p| param(p, None, None)).collect(),
        body: Box::new(body),
    })
}

pub fn ret(v: Option<Expr>) -> Expr {
    e(ExprKind::Return(v.map(Box::new)))
}

pub fn s(kind: StmtKind) -> Stmt {
    Stmt { kind, span: sp() }
}

pub fn expr(x: Expr) -> Stmt {
    s(StmtKind::Expr(x))
}

pub fn pat(n: &str) -> Pattern {
    Pattern {
        kind: if n == "_" {
            PatternKind::Wildcard
        } else {
            PatternKind::Name(id(n))
        },
        span: sp(),
    }
}

pub fn ptuple(items: Vec<Pattern>) -> Pattern {
    Pattern {
        kind: PatternKind::Tuple(items),
        span: sp(),
    }
}

pub fn precord(fields: &[&str]) -> Pattern {
    Pattern {
        kind: PatternKind::Record(
            fields
                .iter()
                .map(|f| FieldPattern {
                    name: id(f),
                    pat: None,
                })
                .collect(),
        ),
        span: sp(),
    }
}

pub fn let_(n: &str, v: Expr) -> Stmt {
    s(StmtKind::Let {
        pat: pat(n),
        ty: None,
        value: v,
    })
}

pub fn let_ty(n: &str, t: TypeExpr, v: Expr) -> Stmt {
    s(StmtKind::Let {
        pat: pat(n),
        ty: Some(t),
        value: v,
    })
}

pub fn let_pat(p: Pattern, v: Expr) -> Stmt {
    s(StmtKind::Let {
        pat: p,
        ty: None,
        value: v,
    })
}

pub fn assign(n: &str, v: Expr) -> Stmt {
    s(StmtKind::Assign {
        target: id(n),
        op: None,
        value: v,
    })
}

/// A tensor type: dims written as in the language (`"3"`, `"n"`, `"_"`, `"?"`, `"..."`);
/// `None` for a scalar or an alias name.
pub fn ty(dtype: &str, dims: Option<&[&str]>) -> TypeExpr {
    let dims = dims.map(|ds| {
        ds.iter()
            .map(|d| DimExpr {
                kind: match *d {
                    "_" => DimExprKind::Any,
                    "?" => DimExprKind::Unknown,
                    "..." => DimExprKind::Ellipsis,
                    other => match other.parse::<u64>() {
                        Ok(n) => DimExprKind::Known(n),
                        Err(_) => DimExprKind::Sym(other.into()),
                    },
                },
                span: sp(),
            })
            .collect()
    });
    TypeExpr {
        kind: TypeExprKind::Tensor {
            dtype: id(dtype),
            dims,
        },
        span: sp(),
    }
}

pub fn param(n: &str, t: Option<TypeExpr>, default: Option<Expr>) -> Param {
    Param {
        name: id(n),
        ty: t,
        default,
        span: sp(),
    }
}

pub fn fn_(n: &str, params: Vec<Param>, ret: Option<TypeExpr>, body: Vec<Stmt>) -> Stmt {
    fn_attrs(n, params, ret, body, vec![])
}

pub fn fn_attrs(
    n: &str,
    params: Vec<Param>,
    ret: Option<TypeExpr>,
    body: Vec<Stmt>,
    attrs: Vec<Attribute>,
) -> Stmt {
    s(StmtKind::Fn(FnDecl {
        name: id(n),
        params,
        ret,
        body: block(body),
        attrs,
        doc: None,
        span: sp(),
    }))
}

pub fn jit(args: Vec<Arg>) -> Attribute {
    Attribute {
        name: id("jit"),
        args,
        span: sp(),
    }
}

pub fn program(stmts: Vec<Stmt>) -> Program {
    Program { stmts }
}
