//! A compact S-expression printer for the tree, used by the tests to state expected
//! parses: `let x = 1 + y` prints `(let x (binary + (int 1) (name y)))`.
//!
//! The printer recurses; the parser bounds the depth of any tree it returns (see
//! [`super::MAX_NESTING`]).

use std::fmt::Write;

use crate::ast::{
    Arg, Block, DimExprKind, Expr, ExprKind, FnDecl, ImportSource, IndexItem, Param, Pattern,
    PatternKind, Program, Stmt, StmtKind, TypeExpr, TypeExprKind,
};

/// The program as S-expressions, one statement per line.
pub fn sexpr(program: &Program) -> String {
    let lines: Vec<String> = program.stmts.iter().map(stmt).collect();
    lines.join("\n")
}

/// One expression as an S-expression.
pub fn sexpr_expr(e: &Expr) -> String {
    let mut out = String::new();
    expr(&mut out, e);
    out
}

fn stmt(s: &Stmt) -> String {
    let mut out = String::new();
    match &s.kind {
        StmtKind::Let { pat, ty, value } => {
            out.push_str("(let ");
            pattern(&mut out, pat);
            if let Some(ty) = ty {
                out.push_str(" : ");
                type_expr(&mut out, ty);
            }
            out.push(' ');
            expr(&mut out, value);
            out.push(')');
        }
        StmtKind::Assign { target, op, value } => {
            let op = op.map_or(String::new(), |op| op.symbol().to_string());
            let _ = write!(out, "(assign{op}= {} ", target.name);
            expr(&mut out, value);
            out.push(')');
        }
        StmtKind::Fn(decl) => fn_decl(&mut out, decl),
        StmtKind::TypeAlias { name, ty } => {
            let _ = write!(out, "(type {} ", name.name);
            type_expr(&mut out, ty);
            out.push(')');
        }
        StmtKind::Import { source, alias } => {
            out.push_str("(import ");
            match source {
                ImportSource::Module(m) => out.push_str(&m.name),
                ImportSource::File(path, _) => {
                    let _ = write!(out, "{path:?}");
                }
            }
            if let Some(alias) = alias {
                let _ = write!(out, " as {}", alias.name);
            }
            out.push(')');
        }
        StmtKind::Expr(e) => expr(&mut out, e),
    }
    out
}

fn fn_decl(out: &mut String, d: &FnDecl) {
    out.push_str("(fn ");
    if let Some(doc) = &d.doc {
        let _ = write!(out, "(doc {doc:?}) ");
    }
    for attr in &d.attrs {
        let _ = write!(out, "(@{}", attr.name.name);
        args(out, &attr.args);
        out.push_str(") ");
    }
    out.push_str(&d.name.name);
    out.push_str(" (");
    params(out, &d.params);
    out.push(')');
    if let Some(ret) = &d.ret {
        out.push_str(" -> ");
        type_expr(out, ret);
    }
    out.push(' ');
    block(out, &d.body);
    out.push(')');
}

fn params(out: &mut String, ps: &[Param]) {
    for (i, p) in ps.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if p.ty.is_none() && p.default.is_none() {
            out.push_str(&p.name.name);
            continue;
        }
        let _ = write!(out, "({}", p.name.name);
        if let Some(ty) = &p.ty {
            out.push(' ');
            type_expr(out, ty);
        }
        if let Some(default) = &p.default {
            out.push_str(" = ");
            expr(out, default);
        }
        out.push(')');
    }
}

fn args(out: &mut String, args: &[Arg]) {
    for a in args {
        out.push(' ');
        match &a.name {
            Some(name) => {
                let _ = write!(out, "({}: ", name.name);
                expr(out, &a.value);
                out.push(')');
            }
            None => expr(out, &a.value),
        }
    }
}

fn block(out: &mut String, b: &Block) {
    out.push_str("(block");
    for s in &b.stmts {
        out.push(' ');
        out.push_str(&stmt(s));
    }
    out.push(')');
}

fn exprs(out: &mut String, head: &str, items: &[Expr]) {
    out.push('(');
    out.push_str(head);
    for e in items {
        out.push(' ');
        expr(out, e);
    }
    out.push(')');
}

fn opt(out: &mut String, e: &Option<Box<Expr>>) {
    match e {
        Some(e) => expr(out, e),
        None => out.push('_'),
    }
}

fn expr(out: &mut String, e: &Expr) {
    match &e.kind {
        ExprKind::Int(v) => {
            let _ = write!(out, "(int {v})");
        }
        ExprKind::Float(v) => {
            let _ = write!(out, "(float {v:?})");
        }
        ExprKind::Bool(v) => {
            let _ = write!(out, "(bool {v})");
        }
        ExprKind::Str(s) => {
            let _ = write!(out, "(str {s:?})");
        }
        ExprKind::Name(n) => {
            let _ = write!(out, "(name {n})");
        }
        ExprKind::List(items) => exprs(out, "list", items),
        ExprKind::Tuple(items) => exprs(out, "tuple", items),
        ExprKind::Record(fields) => {
            out.push_str("(record");
            for f in fields {
                let _ = write!(out, " ({} ", f.name.name);
                expr(out, &f.value);
                out.push(')');
            }
            out.push(')');
        }
        ExprKind::Unary { op, operand } => {
            let _ = write!(out, "(unary {} ", op.symbol());
            expr(out, operand);
            out.push(')');
        }
        ExprKind::Binary { op, lhs, rhs, .. } => {
            let _ = write!(out, "(binary {} ", op.symbol());
            expr(out, lhs);
            out.push(' ');
            expr(out, rhs);
            out.push(')');
        }
        ExprKind::Range { start, end } => {
            out.push_str("(range ");
            expr(out, start);
            out.push(' ');
            expr(out, end);
            out.push(')');
        }
        ExprKind::Call { callee, args: a } => {
            out.push_str("(call ");
            expr(out, callee);
            args(out, a);
            out.push(')');
        }
        ExprKind::Method {
            receiver,
            method,
            args: a,
        } => {
            out.push_str("(method ");
            expr(out, receiver);
            let _ = write!(out, " {}", method.name);
            args(out, a);
            out.push(')');
        }
        ExprKind::Field { base, field } => {
            out.push_str("(field ");
            expr(out, base);
            let _ = write!(out, " {})", field.name);
        }
        ExprKind::TupleField { base, index, .. } => {
            out.push_str("(tfield ");
            expr(out, base);
            let _ = write!(out, " {index})");
        }
        ExprKind::Index { base, items } => {
            out.push_str("(index ");
            expr(out, base);
            for item in items {
                out.push(' ');
                match item {
                    IndexItem::Expr(e) => expr(out, e),
                    IndexItem::Slice {
                        start, end, step, ..
                    } => {
                        out.push_str("(slice ");
                        opt(out, start);
                        out.push(' ');
                        opt(out, end);
                        out.push(' ');
                        opt(out, step);
                        out.push(')');
                    }
                    IndexItem::Ellipsis(_) => out.push_str("..."),
                }
            }
            out.push(')');
        }
        ExprKind::Closure { params: ps, body } => {
            out.push_str("(closure (");
            params(out, ps);
            out.push_str(") ");
            expr(out, body);
            out.push(')');
        }
        ExprKind::Block(b) => block(out, b),
        ExprKind::If { cond, then, els } => {
            out.push_str("(if ");
            expr(out, cond);
            out.push(' ');
            block(out, then);
            if let Some(els) = els {
                out.push(' ');
                expr(out, els);
            }
            out.push(')');
        }
        ExprKind::For { pat, iter, body } => {
            out.push_str("(for ");
            pattern(out, pat);
            out.push(' ');
            expr(out, iter);
            out.push(' ');
            block(out, body);
            out.push(')');
        }
        ExprKind::While { cond, body } => {
            out.push_str("(while ");
            expr(out, cond);
            out.push(' ');
            block(out, body);
            out.push(')');
        }
        ExprKind::Break => out.push_str("break"),
        ExprKind::Continue => out.push_str("continue"),
        ExprKind::Return(value) => match value {
            Some(v) => {
                out.push_str("(return ");
                expr(out, v);
                out.push(')');
            }
            None => out.push_str("(return)"),
        },
        ExprKind::Error => out.push_str("error"),
    }
}

fn pattern(out: &mut String, p: &Pattern) {
    match &p.kind {
        PatternKind::Name(id) => out.push_str(&id.name),
        PatternKind::Wildcard => out.push('_'),
        PatternKind::Tuple(items) => {
            out.push_str("(ptuple");
            for item in items {
                out.push(' ');
                pattern(out, item);
            }
            out.push(')');
        }
        PatternKind::Record(fields) => {
            out.push_str("(precord");
            for f in fields {
                out.push(' ');
                match &f.pat {
                    None => out.push_str(&f.name.name),
                    Some(sub) => {
                        let _ = write!(out, "({}: ", f.name.name);
                        pattern(out, sub);
                        out.push(')');
                    }
                }
            }
            out.push(')');
        }
    }
}

/// Types print in their surface syntax, normalized: `f32[2, n]`, `(f32, i64)`.
fn type_expr(out: &mut String, t: &TypeExpr) {
    match &t.kind {
        TypeExprKind::Tensor { dtype, dims } => {
            out.push_str(&dtype.name);
            if let Some(dims) = dims {
                out.push('[');
                for (i, d) in dims.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    match &d.kind {
                        DimExprKind::Known(n) => {
                            let _ = write!(out, "{n}");
                        }
                        DimExprKind::Sym(s) => out.push_str(s),
                        DimExprKind::Any => out.push('_'),
                        DimExprKind::Unknown => out.push('?'),
                        DimExprKind::Ellipsis => out.push_str("..."),
                    }
                }
                out.push(']');
            }
        }
        TypeExprKind::Tuple(items) => {
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                type_expr(out, item);
            }
            if items.len() == 1 {
                out.push(',');
            }
            out.push(')');
        }
        TypeExprKind::Record(fields) => {
            out.push('{');
            for (i, (name, ty)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}: ", name.name);
                type_expr(out, ty);
            }
            out.push('}');
        }
        TypeExprKind::Fn { params, ret } => {
            out.push_str("fn(");
            for (i, p) in params.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                type_expr(out, p);
            }
            out.push_str(") -> ");
            type_expr(out, ret);
        }
        TypeExprKind::Str => out.push_str("str"),
    }
}
