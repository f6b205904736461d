//! A seeded generator of well-typed MindScript programs for the eager == staged test
//! (`tests/staged_gen.rs`), and the shrinking steps that minimize a failing one.
//!
//! A program is a function `f` over one to three `f32` tensor arguments (shapes from
//! [`SHAPES`]) returning a scalar, so that `grad` applies, together with the helper
//! functions it calls, a `@jit` wrapper `jf`, a `@jit` gradient wrapper `jg`, the
//! arguments' values, and four result lines (`ve`, `vs`, `ge`, `gs`: eager and staged value
//! and gradient). The body mixes elementwise arithmetic, broadcasting, reductions, matrix
//! products, `where`, `if` on run-time conditions (statements with and without `else`, and
//! expressions), bounded `while` loops with a staged counter (and with an integer counter,
//! which staging unrolls), `for` loops carrying values, `break`, `continue` and `return`
//! on run-time conditions, closures, helper calls and `print`.
//!
//! The generator tracks each variable's shape, so every operation it writes fits. It keeps
//! values tame, so that a disagreement is a staging bug and not a rounding accident: `exp`
//! only of a bounded value, division only by `1 + b * b`, and inside loops assignments pass
//! through a bounded function, so iteration cannot overflow.
//!
//! Programs are kept as trees ([`Program`]) rather than text, so that [`Program::shrink`]
//! can offer the smaller programs a minimizer tries: a statement dropped, a loop or branch
//! replaced by its body, an expression replaced by an operand of the same shape.

use std::fmt::Write as _;

use crate::inputs::Rng;

/// The shapes of arguments and intermediate values: small, so that operations fit often.
pub const SHAPES: [&[usize]; 5] = [&[], &[2], &[3], &[2, 3], &[3, 3]];

/// What the generator leaves out, each for a staging bug not fixed yet (so that the test
/// can run meanwhile). The default leaves out nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Knobs {
    /// No `print` in helper functions (a helper may be called from a `while` condition,
    /// whose `print` runs once too often when staged).
    pub skip_print_in_helpers: bool,
    /// No negative zero printed: `print` shows `e + 0.0` (staging turns a negative zero
    /// constant into `+0.0`, which only `print` can tell from `-0.0`).
    pub skip_negative_zero: bool,
    /// Arguments written strong (`f32([...])`) in programs that print: a staged loop
    /// carries a weak (literal) value as strong `f32` where eager mode keeps computing it
    /// in `f64`, so a printed digit can differ.
    pub skip_weak_printed_args: bool,
}

/// The dims of a value.
pub type Dims = Vec<usize>;

/// An expression with the dims of its value.
#[derive(Clone, Debug)]
pub struct Expr {
    /// The dims of the value.
    pub dims: Dims,
    /// What it computes.
    pub kind: Kind,
}

/// The forms of [`Expr`].
#[derive(Clone, Debug)]
pub enum Kind {
    /// A float variable.
    Var(String),
    /// An integer loop index, converted: `f32(i)`.
    Index(String),
    /// A float literal (weak, broadcasts).
    Lit(f64),
    /// `full([dims], value)`.
    Full(f64),
    /// An elementwise function by name; `exp` is written `exp(tanh(e))` to stay bounded.
    Unary(&'static str, Box<Expr>),
    /// `(e) * (e)`.
    Square(Box<Expr>),
    /// `a op b` for `+`, `-`, `*`, broadcasting.
    Bin(&'static str, Box<Expr>, Box<Expr>),
    /// `a / (1.0 + b * b)`: a division kept away from zero.
    Div(Box<Expr>, Box<Expr>),
    /// `sum`, `mean` or `max`, over all elements or along one axis.
    Reduce(&'static str, Box<Expr>, Option<usize>),
    /// `a @ b`.
    MatMul(Box<Expr>, Box<Expr>),
    /// `where(c > d, a, b)`.
    Where(Box<Expr>, Box<Expr>, Box<Expr>, Box<Expr>),
    /// `if cond { a } else { b }` as an expression.
    If(Box<Cond>, Box<Expr>, Box<Expr>),
    /// A call of a helper function or a closure.
    Call(String, Vec<Expr>),
}

/// A scalar condition `e cmp lit`.
#[derive(Clone, Debug)]
pub struct Cond {
    /// The scalar compared.
    pub e: Expr,
    /// `>` or `<`.
    pub cmp: &'static str,
    /// The literal compared with.
    pub lit: f64,
}

/// How a `while` loop counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// `let k = 0.0 * sum(x0)`: a staged scalar, so the loop becomes an IR `While`.
    Staged,
    /// `let k = 0`: known at staging time, so the loop is unrolled.
    Int,
}

/// A statement of a function body.
#[derive(Clone, Debug)]
pub enum Stmt {
    /// `let name = e`.
    Let(String, Expr),
    /// `name = e`.
    Assign(String, Expr),
    /// `if cond { then } else { els }`, the `else` optional.
    If(Cond, Vec<Stmt>, Option<Vec<Stmt>>),
    /// A bounded `while`: `trips` iterations at most, and `extra` may stop it earlier.
    While {
        /// The counter's name.
        counter: String,
        /// What the counter is.
        kind: Counter,
        /// The argument the staged counter is computed from (`0.0 * sum(arg)`).
        from: String,
        /// The most iterations.
        trips: u32,
        /// A data-dependent condition joined with `logical_and`.
        extra: Option<Cond>,
        /// The body (the counter's increment is added when written).
        body: Vec<Stmt>,
    },
    /// `for _ in 0..trips { body }`, or `for i in 0..trips` when `index` names the variable.
    For {
        /// The loop variable, when the body reads it.
        index: Option<String>,
        /// `if i == k { break }` (or `continue`) first in the body: a loop whose body reads
        /// its index is unrolled when staged, where `break` and `continue` work.
        exit: Option<(u32, &'static str)>,
        /// The number of iterations.
        trips: u32,
        /// The body.
        body: Vec<Stmt>,
    },
    /// `let name = if cond { stmts; e } else { stmts; e }`: an `if` expression whose
    /// branches are blocks with statements (which may assign variables from outside).
    LetIf(String, Cond, Branch, Branch),
    /// `print("label", e)`.
    Print(String, Expr),
    /// `let name = |t| body`.
    Closure(String, Expr),
    /// `if cond { break }`, `{ continue }` or `{ return e }`: an exit on a run-time
    /// condition.
    Exit(Cond, Exit),
}

/// What a [`Stmt::Exit`] does.
#[derive(Clone, Debug)]
pub enum Exit {
    /// `break`.
    Break,
    /// `continue` (only in `for` loops: a `while` body's counter comes last).
    Continue,
    /// `return e` from `f`, with a scalar.
    Return(Expr),
}

/// A block with a value: statements, then the value.
pub type Branch = (Vec<Stmt>, Expr);

/// A top-level helper function `f` calls.
#[derive(Clone, Debug)]
pub struct Helper {
    /// Its name.
    pub name: String,
    /// Its parameters and their dims.
    pub params: Vec<(String, Dims)>,
    /// Whether the parameters and result are annotated (otherwise it is generic).
    pub annotated: bool,
    /// The statements of its body.
    pub body: Vec<Stmt>,
    /// Its result.
    pub result: Expr,
}

/// One generated program.
#[derive(Clone, Debug)]
pub struct Program {
    /// The helpers, in order (a helper may call earlier ones).
    pub helpers: Vec<Helper>,
    /// The arguments of `f`: name, dims and values.
    pub args: Vec<(String, Dims, Vec<f64>)>,
    /// Whether the arguments are written strong, `f32([...])`, rather than as literals
    /// (weak).
    pub strong_args: bool,
    /// The statements of `f`.
    pub body: Vec<Stmt>,
    /// The scalar result of `f`.
    pub result: Expr,
}

/// Writes dims as a type's shape: `f32[2, 3]`, or `f32` for a scalar.
fn ty(dims: &[usize]) -> String {
    if dims.is_empty() {
        "f32".into()
    } else {
        let d: Vec<String> = dims.iter().map(ToString::to_string).collect();
        format!("f32[{}]", d.join(", "))
    }
}

/// A float literal that always reads back as a float (`1.0`, not `1`).
fn lit(x: f64) -> String {
    let s = format!("{x}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// A tensor literal of `dims` holding `data`.
fn tensor_lit(dims: &[usize], data: &[f64]) -> String {
    match dims {
        [] => lit(data[0]),
        [_] => {
            let items: Vec<String> = data.iter().map(|&x| lit(x)).collect();
            format!("[{}]", items.join(", "))
        }
        [_, rest @ ..] => {
            let step: usize = rest.iter().product();
            let rows: Vec<String> = data.chunks(step).map(|c| tensor_lit(rest, c)).collect();
            format!("[{}]", rows.join(", "))
        }
    }
}

impl Expr {
    fn new(dims: &[usize], kind: Kind) -> Expr {
        Expr {
            dims: dims.to_vec(),
            kind,
        }
    }

    /// The expression's text.
    pub fn text(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    fn write(&self, out: &mut String) {
        match &self.kind {
            Kind::Var(n) => out.push_str(n),
            Kind::Index(n) => {
                let _ = write!(out, "f32({n})");
            }
            Kind::Lit(x) => out.push_str(&lit(*x)),
            Kind::Full(x) => {
                let d: Vec<String> = self.dims.iter().map(ToString::to_string).collect();
                let _ = write!(out, "full([{}], {})", d.join(", "), lit(*x));
            }
            Kind::Unary("exp", e) => {
                let _ = write!(out, "exp(tanh({}))", e.text());
            }
            Kind::Unary(f, e) => {
                let _ = write!(out, "{f}({})", e.text());
            }
            Kind::Square(e) => {
                let t = e.text();
                let _ = write!(out, "(({t}) * ({t}))");
            }
            Kind::Bin(op, a, b) => {
                let _ = write!(out, "({} {op} {})", a.text(), b.text());
            }
            Kind::Div(a, b) => {
                let t = b.text();
                let _ = write!(out, "({} / (1.0 + ({t}) * ({t})))", a.text());
            }
            Kind::Reduce(f, e, None) => {
                let _ = write!(out, "{f}({})", e.text());
            }
            Kind::Reduce(f, e, Some(axis)) => {
                let _ = write!(out, "{f}({}, axis: {axis})", e.text());
            }
            Kind::MatMul(a, b) => {
                let _ = write!(out, "({} @ {})", a.text(), b.text());
            }
            Kind::Where(c, d, a, b) => {
                let _ = write!(
                    out,
                    "where({} > {}, {}, {})",
                    c.text(),
                    d.text(),
                    a.text(),
                    b.text()
                );
            }
            Kind::If(c, a, b) => {
                let _ = write!(
                    out,
                    "(if {} {{ {} }} else {{ {} }})",
                    c.text(),
                    a.text(),
                    b.text()
                );
            }
            Kind::Call(f, args) => {
                let a: Vec<String> = args.iter().map(Expr::text).collect();
                let _ = write!(out, "{f}({})", a.join(", "));
            }
        }
    }

    /// The operands of a composite expression (empty for a leaf).
    fn children(&self) -> Vec<&Expr> {
        match &self.kind {
            Kind::Var(_) | Kind::Index(_) | Kind::Lit(_) | Kind::Full(_) => Vec::new(),
            Kind::Unary(_, e) | Kind::Square(e) | Kind::Reduce(_, e, _) => vec![e],
            Kind::Bin(_, a, b) | Kind::Div(a, b) | Kind::MatMul(a, b) => vec![a, b],
            Kind::Where(c, d, a, b) => vec![c, d, a, b],
            Kind::If(c, a, b) => vec![&c.e, a, b],
            Kind::Call(_, args) => args.iter().collect(),
        }
    }

    /// Simpler expressions of the same dims to try in this one's place: an operand of the
    /// same dims, a constant, and the same form with one operand simplified.
    fn shrink(&self) -> Vec<Expr> {
        let mut out = Vec::new();
        for c in self.children() {
            if c.dims == self.dims {
                out.push(c.clone());
            }
        }
        match &self.kind {
            Kind::Lit(_) | Kind::Full(_) => {}
            _ if self.dims.is_empty() => out.push(Expr::new(&[], Kind::Lit(0.5))),
            _ => out.push(Expr::new(&self.dims, Kind::Full(0.5))),
        }
        // One operand simplified, the rest kept.
        let n = self.children().len();
        for i in 0..n {
            let child = self.children()[i].clone();
            for smaller in child.shrink() {
                let mut e = self.clone();
                if let Some(c) = e.child_mut(i) {
                    *c = smaller;
                    out.push(e);
                }
            }
        }
        out
    }

    /// The `i`th operand, to replace (`None` for a leaf, which has none).
    fn child_mut(&mut self, i: usize) -> Option<&mut Expr> {
        match &mut self.kind {
            Kind::Unary(_, e) | Kind::Square(e) | Kind::Reduce(_, e, _) => Some(e),
            Kind::Bin(_, a, b) | Kind::Div(a, b) | Kind::MatMul(a, b) => {
                Some(if i == 0 { a } else { b })
            }
            Kind::Where(c, d, a, b) => Some(match i {
                0 => c,
                1 => d,
                2 => a,
                _ => b,
            }),
            Kind::If(c, a, b) => Some(match i {
                0 => &mut c.e,
                1 => a,
                _ => b,
            }),
            Kind::Call(_, args) => args.get_mut(i),
            Kind::Var(_) | Kind::Index(_) | Kind::Lit(_) | Kind::Full(_) => None,
        }
    }
}

impl Cond {
    fn text(&self) -> String {
        format!("{} {} {}", self.e.text(), self.cmp, lit(self.lit))
    }
}

/// Writes `stmts` at `indent` levels.
fn write_block(out: &mut String, stmts: &[Stmt], indent: usize) {
    for s in stmts {
        write_stmt(out, s, indent);
    }
}

fn write_stmt(out: &mut String, s: &Stmt, indent: usize) {
    let pad = "    ".repeat(indent);
    match s {
        Stmt::Let(n, e) => {
            let _ = writeln!(out, "{pad}let {n} = {}", e.text());
        }
        Stmt::Assign(n, e) => match &e.kind {
            // `v = v + e` is written `v += e` (the sugar is part of what is tested).
            Kind::Bin(op, a, b) if matches!(&a.kind, Kind::Var(v) if v == n) => {
                let _ = writeln!(out, "{pad}{n} {op}= {}", b.text());
            }
            _ => {
                let _ = writeln!(out, "{pad}{n} = {}", e.text());
            }
        },
        Stmt::If(c, then, els) => {
            let _ = writeln!(out, "{pad}if {} {{", c.text());
            write_block(out, then, indent + 1);
            match els {
                Some(els) => {
                    let _ = writeln!(out, "{pad}}} else {{");
                    write_block(out, els, indent + 1);
                    let _ = writeln!(out, "{pad}}}");
                }
                None => {
                    let _ = writeln!(out, "{pad}}}");
                }
            }
        }
        Stmt::While {
            counter,
            kind,
            from,
            trips,
            extra,
            body,
        } => {
            let (init, bound, step) = match kind {
                Counter::Staged => (
                    format!("0.0 * sum({from})"),
                    format!("{trips}.0"),
                    "1.0".to_string(),
                ),
                Counter::Int => ("0".into(), trips.to_string(), "1".into()),
            };
            let _ = writeln!(out, "{pad}let {counter} = {init}");
            let cond = match extra {
                Some(c) => format!("logical_and({counter} < {bound}, {})", c.text()),
                None => format!("{counter} < {bound}"),
            };
            let _ = writeln!(out, "{pad}while {cond} {{");
            write_block(out, body, indent + 1);
            let _ = writeln!(out, "{pad}    {counter} = {counter} + {step}");
            let _ = writeln!(out, "{pad}}}");
        }
        Stmt::For {
            index,
            exit,
            trips,
            body,
        } => {
            let var = index.as_deref().unwrap_or("_");
            let _ = writeln!(out, "{pad}for {var} in 0..{trips} {{");
            if let Some((k, word)) = exit {
                let _ = writeln!(out, "{pad}    if {var} == {k} {{ {word} }}");
            }
            write_block(out, body, indent + 1);
            let _ = writeln!(out, "{pad}}}");
        }
        Stmt::LetIf(n, c, (ts, te), (es, ee)) => {
            let _ = writeln!(out, "{pad}let {n} = if {} {{", c.text());
            write_block(out, ts, indent + 1);
            let _ = writeln!(out, "{pad}    {}", te.text());
            let _ = writeln!(out, "{pad}}} else {{");
            write_block(out, es, indent + 1);
            let _ = writeln!(out, "{pad}    {}", ee.text());
            let _ = writeln!(out, "{pad}}}");
        }
        Stmt::Print(label, e) => {
            let _ = writeln!(out, "{pad}print(\"{label}\", {})", e.text());
        }
        Stmt::Closure(n, e) => {
            let _ = writeln!(out, "{pad}let {n} = |t| {}", e.text());
        }
        Stmt::Exit(c, x) => {
            let what = match x {
                Exit::Break => "break".to_string(),
                Exit::Continue => "continue".to_string(),
                Exit::Return(e) => format!("return {}", e.text()),
            };
            let _ = writeln!(out, "{pad}if {} {{ {what} }}", c.text());
        }
    }
}

/// Every way to make `stmts` one step smaller: drop a statement, replace a compound
/// statement by its body, drop an `else`, or simplify one expression.
fn shrink_block(stmts: &[Stmt]) -> Vec<Vec<Stmt>> {
    let mut out = Vec::new();
    for i in 0..stmts.len() {
        let mut v = stmts.to_vec();
        v.remove(i);
        out.push(v);
    }
    for i in 0..stmts.len() {
        let splice = |inner: &[Stmt]| {
            let mut v = stmts[..i].to_vec();
            v.extend_from_slice(inner);
            v.extend_from_slice(&stmts[i + 1..]);
            v
        };
        let replace = |s: Stmt| {
            let mut v = stmts.to_vec();
            v[i] = s;
            v
        };
        match &stmts[i] {
            Stmt::Let(n, e) => {
                for e in e.shrink() {
                    out.push(replace(Stmt::Let(n.clone(), e)));
                }
            }
            Stmt::Assign(n, e) => {
                for e in e.shrink() {
                    out.push(replace(Stmt::Assign(n.clone(), e)));
                }
            }
            Stmt::Print(l, e) => {
                for e in e.shrink() {
                    out.push(replace(Stmt::Print(l.clone(), e)));
                }
            }
            Stmt::Closure(n, e) => {
                for e in e.shrink() {
                    out.push(replace(Stmt::Closure(n.clone(), e)));
                }
            }
            Stmt::Exit(c, x) => {
                for e in c.e.shrink() {
                    let c = Cond { e, ..c.clone() };
                    out.push(replace(Stmt::Exit(c, x.clone())));
                }
                if let Exit::Return(r) = x {
                    for r in r.shrink() {
                        out.push(replace(Stmt::Exit(c.clone(), Exit::Return(r))));
                    }
                }
            }
            Stmt::LetIf(n, c, (ts, te), (es, ee)) => {
                out.push(replace(Stmt::Let(n.clone(), te.clone())));
                out.push(replace(Stmt::Let(n.clone(), ee.clone())));
                let with = |t: Branch, e: Branch| Stmt::LetIf(n.clone(), c.clone(), t, e);
                for b in shrink_block(ts) {
                    out.push(replace(with((b, te.clone()), (es.clone(), ee.clone()))));
                }
                for b in shrink_block(es) {
                    out.push(replace(with((ts.clone(), te.clone()), (b, ee.clone()))));
                }
                for e in te.shrink() {
                    out.push(replace(with((ts.clone(), e), (es.clone(), ee.clone()))));
                }
                for e in ee.shrink() {
                    out.push(replace(with((ts.clone(), te.clone()), (es.clone(), e))));
                }
            }
            Stmt::If(c, then, els) => {
                out.push(splice(then));
                if let Some(els) = els {
                    out.push(splice(els));
                    out.push(replace(Stmt::If(c.clone(), then.clone(), None)));
                }
                for b in shrink_block(then) {
                    out.push(replace(Stmt::If(c.clone(), b, els.clone())));
                }
                if let Some(els) = els {
                    for b in shrink_block(els) {
                        out.push(replace(Stmt::If(c.clone(), then.clone(), Some(b))));
                    }
                }
                for e in c.e.shrink() {
                    let c = Cond { e, ..c.clone() };
                    out.push(replace(Stmt::If(c, then.clone(), els.clone())));
                }
            }
            Stmt::While {
                counter,
                kind,
                from,
                trips,
                extra,
                body,
            } => {
                out.push(splice(body));
                let with = |trips: u32, extra: Option<Cond>, body: Vec<Stmt>| Stmt::While {
                    counter: counter.clone(),
                    kind: *kind,
                    from: from.clone(),
                    trips,
                    extra,
                    body,
                };
                if *trips > 1 {
                    out.push(replace(with(1, extra.clone(), body.clone())));
                }
                if let Some(c) = extra {
                    out.push(replace(with(*trips, None, body.clone())));
                    for e in c.e.shrink() {
                        let c = Cond { e, ..c.clone() };
                        out.push(replace(with(*trips, Some(c), body.clone())));
                    }
                }
                for b in shrink_block(body) {
                    out.push(replace(with(*trips, extra.clone(), b)));
                }
            }
            Stmt::For {
                index,
                exit,
                trips,
                body,
            } => {
                if index.is_none() {
                    out.push(splice(body));
                }
                let with =
                    |exit: Option<(u32, &'static str)>, trips: u32, body: Vec<Stmt>| Stmt::For {
                        index: index.clone(),
                        exit,
                        trips,
                        body,
                    };
                if exit.is_some() {
                    out.push(replace(with(None, *trips, body.clone())));
                }
                if *trips > 1 {
                    out.push(replace(with(*exit, 1, body.clone())));
                }
                for b in shrink_block(body) {
                    out.push(replace(with(*exit, *trips, b)));
                }
            }
        }
    }
    out
}

impl Program {
    /// The parameter list of `f` and its wrappers: `x0: f32[3], x1: f32`.
    fn params(&self) -> String {
        let p: Vec<String> = self
            .args
            .iter()
            .map(|(n, d, _)| format!("{n}: {}", ty(d)))
            .collect();
        p.join(", ")
    }

    /// The argument list of a call: `x0, x1`.
    fn arg_names(&self) -> String {
        let a: Vec<&str> = self.args.iter().map(|(n, _, _)| n.as_str()).collect();
        a.join(", ")
    }

    /// `grad(f)` of every argument, and the type of what it gives.
    fn grad_call(&self) -> (String, String) {
        if self.args.len() == 1 {
            ("grad(f)".into(), ty(&self.args[0].1))
        } else {
            let idx: Vec<String> = (0..self.args.len()).map(|i| i.to_string()).collect();
            let tys: Vec<String> = self.args.iter().map(|(_, d, _)| ty(d)).collect();
            (
                format!("grad(f, wrt: ({}))", idx.join(", ")),
                format!("({})", tys.join(", ")),
            )
        }
    }

    /// The whole program as a script: helpers, `f`, `jf`, `jg`, the arguments and the
    /// four result lines (`ve`, `vs`, `ge`, `gs`), each on a line of its own.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for h in &self.helpers {
            let params: Vec<String> = h
                .params
                .iter()
                .map(|(n, d)| {
                    if h.annotated {
                        format!("{n}: {}", ty(d))
                    } else {
                        n.clone()
                    }
                })
                .collect();
            let ret = if h.annotated {
                format!(" -> {}", ty(&h.result.dims))
            } else {
                String::new()
            };
            let _ = writeln!(out, "fn {}({}){ret} {{", h.name, params.join(", "));
            write_block(&mut out, &h.body, 1);
            let _ = writeln!(out, "    {}", h.result.text());
            let _ = writeln!(out, "}}");
        }
        let _ = writeln!(out, "fn f({}) -> f32 {{", self.params());
        write_block(&mut out, &self.body, 1);
        let _ = writeln!(out, "    {}", self.result.text());
        let _ = writeln!(out, "}}");
        let (params, args) = (self.params(), self.arg_names());
        let (grad, grad_ty) = self.grad_call();
        let _ = writeln!(out, "@jit fn jf({params}) -> f32 {{ f({args}) }}");
        let _ = writeln!(
            out,
            "@jit fn jg({params}) -> {grad_ty} {{ {grad}({args}) }}"
        );
        // The same two on a mesh of two devices, the arguments split along their first
        // axis (LANGUAGE.md §9): the partitioner against one device.
        let _ = writeln!(
            out,
            "@jit(parallel: \"data\", devices: 2) fn pf({params}) -> f32 {{ f({args}) }}"
        );
        let _ = writeln!(
            out,
            "@jit(parallel: \"data\", devices: 2) fn pg({params}) -> {grad_ty} {{ {grad}({args}) }}"
        );
        for (n, d, v) in &self.args {
            if self.strong_args {
                let _ = writeln!(out, "let {n} = f32({})", tensor_lit(d, v));
            } else {
                let _ = writeln!(out, "let {n} = {}", tensor_lit(d, v));
            }
        }
        let _ = writeln!(out, "let ve = f({args})");
        let _ = writeln!(out, "let vs = jf({args})");
        let _ = writeln!(out, "let ge = {grad}({args})");
        let _ = writeln!(out, "let gs = jg({args})");
        let _ = writeln!(out, "let vp = pf({args})");
        let _ = writeln!(out, "let gp = pg({args})");
        out
    }

    /// Every program one step smaller than this one (they may not check: the minimizer
    /// tries them and keeps one that still fails the same way).
    pub fn shrink(&self) -> Vec<Program> {
        let mut out = Vec::new();
        for i in 0..self.helpers.len() {
            let mut p = self.clone();
            p.helpers.remove(i);
            out.push(p);
        }
        for b in shrink_block(&self.body) {
            let mut p = self.clone();
            p.body = b;
            out.push(p);
        }
        for e in self.result.shrink() {
            let mut p = self.clone();
            p.result = e;
            out.push(p);
        }
        for (i, h) in self.helpers.iter().enumerate() {
            for b in shrink_block(&h.body) {
                let mut p = self.clone();
                p.helpers[i].body = b;
                out.push(p);
            }
            for e in h.result.shrink() {
                let mut p = self.clone();
                p.helpers[i].result = e;
                out.push(p);
            }
        }
        out
    }
}

/// Something a generated body can name.
#[derive(Clone, Debug)]
enum Entry {
    /// A float variable; `assignable` is false for parameters of helpers and counters.
    Var {
        name: String,
        dims: Dims,
        assignable: bool,
    },
    /// An integer loop index.
    Index(String),
    /// A function (helper or closure) taking these dims and giving those.
    Callable {
        name: String,
        params: Vec<Dims>,
        ret: Dims,
    },
}

/// The generator's state for one program.
struct Gen<'a> {
    rng: &'a mut Rng,
    knobs: Knobs,
    /// What is visible, innermost last.
    scope: Vec<Entry>,
    /// The helpers written so far (callable from later ones and from `f`).
    helpers: Vec<Entry>,
    /// How many operations are left to write.
    budget: usize,
    next: usize,
    /// The arguments of the function being written (a staged counter reads one).
    params: Vec<String>,
    /// Whether a helper is being written (rather than `f`).
    in_helper: bool,
    /// Whether a `print` was written.
    printed: bool,
    /// The innermost loop being written, if any, is a `while` (whose body must not
    /// `continue`: its counter's increment comes last).
    in_while: bool,
}

/// Writes a program from `rng`.
pub fn program(rng: &mut Rng, knobs: Knobs) -> Program {
    let mut g = Gen {
        rng,
        knobs,
        scope: Vec::new(),
        helpers: Vec::new(),
        budget: 12,
        next: 0,
        params: Vec::new(),
        in_helper: true,
        printed: false,
        in_while: false,
    };
    let mut helpers = Vec::new();
    for _ in 0..g.rng.below(3) {
        helpers.push(g.helper());
    }
    let nargs = 1 + g.rng.below(3);
    let mut args = Vec::new();
    for i in 0..nargs {
        let dims = g.dims();
        let n: usize = dims.iter().product();
        // Two decimals, away from the kinks of `abs` and `relu` at zero.
        let values = (0..n)
            .map(|_| {
                let x = (g.rng.unit() * 300.0 - 150.0).round() / 100.0;
                if x == 0.0 { 0.25 } else { x }
            })
            .collect();
        args.push((format!("x{i}"), dims, values));
    }
    g.scope = g.helpers.clone();
    g.in_helper = false;
    g.params = args.iter().map(|(n, _, _)| n.clone()).collect();
    for (n, d, _) in &args {
        g.scope.push(Entry::Var {
            name: n.clone(),
            dims: d.clone(),
            assignable: true,
        });
    }
    let n = 2 + g.rng.below(4);
    let body = g.block(n, 0, 0);
    let result = g.result();
    Program {
        helpers,
        args,
        strong_args: g.printed && knobs.skip_weak_printed_args,
        body,
        result,
    }
}

impl Gen<'_> {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn dims(&mut self) -> Dims {
        SHAPES[self.rng.below(SHAPES.len())].to_vec()
    }

    /// A literal in `[-1, 1]` with two decimals (`-0.0` among them).
    fn literal(&mut self) -> f64 {
        (self.rng.unit() * 200.0 - 100.0).round() / 100.0
    }

    /// Takes one operation from the budget, or says there is none left.
    fn spend(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }

    /// The float variables of `dims` in scope, most recent first.
    fn vars_of(&self, dims: &[usize], assignable: bool) -> Vec<String> {
        self.scope
            .iter()
            .rev()
            .filter_map(|e| match e {
                Entry::Var {
                    name,
                    dims: d,
                    assignable: a,
                } if d == dims && (*a || !assignable) => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Dims that broadcast into `dims` (itself, a suffix, or a scalar).
    fn broadcastable(&mut self, dims: &[usize]) -> Dims {
        let mut options: Vec<Dims> = vec![dims.to_vec(), Vec::new()];
        if dims.len() == 2 {
            options.push(dims[1..].to_vec());
        }
        options[self.rng.below(options.len())].clone()
    }

    /// An expression of `dims` with no operation: a variable, a literal or a constant;
    /// failing those, a reduction of a variable (outside the budget, so that a value of
    /// every shape can always be written).
    fn leaf(&mut self, dims: &[usize]) -> Expr {
        let vars = self.vars_of(dims, false);
        let indexes: Vec<String> = self
            .scope
            .iter()
            .filter_map(|e| match e {
                Entry::Index(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        if dims.is_empty() && !indexes.is_empty() && self.rng.below(4) == 0 {
            let i = indexes[self.rng.below(indexes.len())].clone();
            return Expr::new(&[], Kind::Index(i));
        }
        if !vars.is_empty() && self.rng.below(6) != 0 {
            // Prefer recent variables, so that values flow through the program.
            let k = self.rng.below(vars.len()).min(self.rng.below(vars.len()));
            return Expr::new(dims, Kind::Var(vars[k].clone()));
        }
        if dims.is_empty() && self.rng.coin() {
            return Expr::new(&[], Kind::Lit(self.literal()));
        }
        // A variable of another shape brought to `dims`: reduced, or broadcast against a
        // constant.
        let mut options: Vec<Expr> = Vec::new();
        for (from, axis) in reductions_to(dims) {
            for v in self.vars_of(&from, false) {
                let e = Expr::new(&from, Kind::Var(v));
                options.push(Expr::new(dims, Kind::Reduce("sum", Box::new(e), axis)));
            }
        }
        for sub in [
            Vec::new(),
            dims.get(1..).map(<[usize]>::to_vec).unwrap_or_default(),
        ] {
            if sub.as_slice() == dims {
                continue;
            }
            for v in self.vars_of(&sub, false) {
                let c = Expr::new(dims, Kind::Full(self.literal()));
                let e = Expr::new(&sub, Kind::Var(v));
                options.push(Expr::new(dims, Kind::Bin("+", Box::new(c), Box::new(e))));
            }
        }
        if !options.is_empty() {
            let k = self.rng.below(options.len());
            return options.swap_remove(k);
        }
        if dims.is_empty() {
            return Expr::new(&[], Kind::Lit(self.literal()));
        }
        Expr::new(dims, Kind::Full(self.literal()))
    }

    /// An expression of `dims`, nested at most `depth` deep.
    fn expr(&mut self, dims: &[usize], depth: usize) -> Expr {
        if depth == 0 || self.rng.below(4) == 0 || !self.spend() {
            return self.leaf(dims);
        }
        let d = depth - 1;
        let bx = Box::new;
        match self.rng.below(11) {
            0 | 1 => {
                const F: [&str; 7] = ["sin", "cos", "tanh", "exp", "relu", "sigmoid", "abs"];
                let f = F[self.rng.below(F.len())];
                Expr::new(dims, Kind::Unary(f, bx(self.expr(dims, d))))
            }
            2 => Expr::new(dims, Kind::Square(bx(self.expr(dims, d)))),
            3 | 4 => {
                let op = ["+", "-", "*"][self.rng.below(3)];
                let a = self.expr(dims, d);
                let sub = self.broadcastable(dims);
                let b = if sub.is_empty() && self.rng.coin() {
                    Expr::new(&[], Kind::Lit(self.literal()))
                } else {
                    self.expr(&sub, d)
                };
                if self.rng.coin() {
                    Expr::new(dims, Kind::Bin(op, bx(a), bx(b)))
                } else {
                    Expr::new(dims, Kind::Bin(op, bx(b), bx(a)))
                }
            }
            5 => {
                let a = self.expr(dims, d);
                let sub = self.broadcastable(dims);
                let b = self.expr(&sub, d);
                Expr::new(dims, Kind::Div(bx(a), bx(b)))
            }
            6 => self.reduce(dims, d),
            7 => self.matmul(dims, d),
            8 => {
                let sub = self.broadcastable(dims);
                let c = self.expr(dims, d);
                let k = self.expr(&sub, 0);
                let a = self.expr(dims, d);
                let sub = self.broadcastable(dims);
                let b = self.expr(&sub, d);
                Expr::new(dims, Kind::Where(bx(c), bx(k), bx(a), bx(b)))
            }
            9 => {
                let c = Box::new(self.cond(d));
                let a = self.expr(dims, d);
                let b = self.expr(dims, d);
                Expr::new(dims, Kind::If(c, bx(a), bx(b)))
            }
            _ => self.call(dims, d),
        }
    }

    /// A reduction giving `dims`, when one can.
    fn reduce(&mut self, dims: &[usize], d: usize) -> Expr {
        let f = ["sum", "mean", "max"][self.rng.below(3)];
        let options = reductions_to(dims);
        if options.is_empty() {
            return self.leaf(dims);
        }
        let (from, axis) = options[self.rng.below(options.len())].clone();
        let e = self.expr(&from, d);
        Expr::new(dims, Kind::Reduce(f, Box::new(e), axis))
    }

    /// A matrix product giving `dims`, when one can.
    fn matmul(&mut self, dims: &[usize], d: usize) -> Expr {
        let (a, b): (Dims, Dims) = match dims {
            [] => (vec![3], vec![3]),
            [2] => (vec![2, 3], vec![3]),
            [3] => {
                if self.rng.coin() {
                    (vec![3, 3], vec![3])
                } else {
                    (vec![3], vec![3, 3])
                }
            }
            [2, 3] => (vec![2, 3], vec![3, 3]),
            _ => (vec![3, 3], vec![3, 3]),
        };
        let a = self.expr(&a, d);
        let b = self.expr(&b, d);
        Expr::new(dims, Kind::MatMul(Box::new(a), Box::new(b)))
    }

    /// A call of a helper or closure giving `dims`, when one is in scope.
    fn call(&mut self, dims: &[usize], d: usize) -> Expr {
        let found: Vec<(String, Vec<Dims>)> = self
            .scope
            .iter()
            .filter_map(|e| match e {
                Entry::Callable { name, params, ret } if ret == dims => {
                    Some((name.clone(), params.clone()))
                }
                _ => None,
            })
            .collect();
        if found.is_empty() {
            return self.expr(dims, d);
        }
        let (name, params) = found[self.rng.below(found.len())].clone();
        let args = params.iter().map(|p| self.expr(p, d)).collect();
        Expr::new(dims, Kind::Call(name, args))
    }

    /// A run-time condition: a reduction compared with a literal.
    fn cond(&mut self, depth: usize) -> Cond {
        let e = self.reduce(&[], depth);
        Cond {
            e,
            cmp: if self.rng.coin() { ">" } else { "<" },
            lit: self.literal(),
        }
    }

    /// The expression assigned to a variable of `dims` inside a loop: bounded, so that
    /// iteration cannot overflow.
    fn bounded(&mut self, name: &str, dims: &[usize], depth: usize) -> Expr {
        let e = self.expr(dims, depth);
        let bx = Box::new;
        if self.rng.coin() {
            let f = ["tanh", "sin", "sigmoid", "cos"][self.rng.below(4)];
            Expr::new(dims, Kind::Unary(f, bx(e)))
        } else {
            // `0.5 * v + 0.25 * tanh(e)`.
            let v = Expr::new(dims, Kind::Var(name.to_string()));
            let half = Expr::new(
                dims,
                Kind::Bin("*", bx(v), bx(Expr::new(&[], Kind::Lit(0.5)))),
            );
            let t = Expr::new(dims, Kind::Unary("tanh", bx(e)));
            let q = Expr::new(
                dims,
                Kind::Bin("*", bx(t), bx(Expr::new(&[], Kind::Lit(0.25)))),
            );
            Expr::new(dims, Kind::Bin("+", bx(half), bx(q)))
        }
    }

    /// An assignment to a variable visible here (one of `dims` made first when none is).
    fn assign(&mut self, in_loop: bool) -> Stmt {
        let candidates: Vec<(String, Dims)> = self
            .scope
            .iter()
            .filter_map(|e| match e {
                Entry::Var {
                    name,
                    dims,
                    assignable: true,
                } => Some((name.clone(), dims.clone())),
                _ => None,
            })
            .collect();
        if candidates.is_empty() {
            // Nothing to assign (a helper's parameters are not assigned): a new variable.
            let dims = self.dims();
            let e = self.expr(&dims, 2);
            let name = self.fresh("v");
            self.scope.push(Entry::Var {
                name: name.clone(),
                dims,
                assignable: true,
            });
            return Stmt::Let(name, e);
        }
        let (name, dims) = candidates[self.rng.below(candidates.len())].clone();
        let e = if in_loop {
            self.bounded(&name, &dims, 2)
        } else {
            self.expr(&dims, 2)
        };
        Stmt::Assign(name, e)
    }

    /// A block of about `n` statements; `loops` is how many loops enclose it and `nest`
    /// how many compound statements.
    fn block(&mut self, n: usize, loops: usize, nest: usize) -> Vec<Stmt> {
        let mark = self.scope.len();
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.stmt(loops, nest));
        }
        self.scope.truncate(mark);
        out
    }

    /// A branch or loop body: statements that assign at least one variable from outside
    /// (what flows through the region).
    fn body(&mut self, loops: usize, nest: usize) -> Vec<Stmt> {
        let mark = self.scope.len();
        let mut out = Vec::new();
        for _ in 0..self.rng.below(2) {
            out.push(self.stmt(loops, nest));
        }
        out.push(self.assign(loops > 0));
        for _ in 0..self.rng.below(2) {
            out.push(self.stmt(loops, nest));
        }
        self.scope.truncate(mark);
        out
    }

    /// A branch of an `if` expression: a body, then a value of `dims`.
    fn branch(&mut self, dims: &[usize], loops: usize, nest: usize) -> Branch {
        let mark = self.scope.len();
        let mut stmts = Vec::new();
        for _ in 0..self.rng.below(3) {
            stmts.push(self.stmt(loops, nest));
        }
        let e = self.expr(dims, 2);
        self.scope.truncate(mark);
        (stmts, e)
    }

    fn stmt(&mut self, loops: usize, nest: usize) -> Stmt {
        let compound = nest < 2 && self.budget > 0;
        match self.rng.below(13) {
            0..=2 => {
                let dims = self.dims();
                let e = if loops > 0 {
                    let t = self.expr(&dims, 2);
                    Expr::new(&dims, Kind::Unary("tanh", Box::new(t)))
                } else {
                    self.expr(&dims, 3)
                };
                let name = self.fresh("v");
                self.scope.push(Entry::Var {
                    name: name.clone(),
                    dims,
                    assignable: true,
                });
                Stmt::Let(name, e)
            }
            3 | 4 => self.assign(loops > 0),
            5 if compound => {
                let c = self.cond(1);
                let then = self.body(loops, nest + 1);
                let els = self.rng.coin().then(|| self.body(loops, nest + 1));
                Stmt::If(c, then, els)
            }
            6 if compound => {
                let counter = self.fresh("k");
                let kind = if self.rng.below(4) == 0 {
                    Counter::Int
                } else {
                    Counter::Staged
                };
                let from = self.params[self.rng.below(self.params.len())].clone();
                let trips = 1 + self.rng.below(3) as u32;
                let extra = (self.rng.below(3) == 0).then(|| self.cond(1));
                let outer = std::mem::replace(&mut self.in_while, true);
                let body = self.body(loops + 1, nest + 1);
                self.in_while = outer;
                Stmt::While {
                    counter,
                    kind,
                    from,
                    trips,
                    extra,
                    body,
                }
            }
            7 if compound => {
                let trips = 1 + self.rng.below(4) as u32;
                let index = (self.rng.below(4) == 0).then(|| self.fresh("i"));
                let mark = self.scope.len();
                if let Some(i) = &index {
                    self.scope.push(Entry::Index(i.clone()));
                }
                let outer = std::mem::replace(&mut self.in_while, false);
                let body = self.body(loops + 1, nest + 1);
                self.in_while = outer;
                self.scope.truncate(mark);
                let exit = (index.is_some() && self.rng.coin()).then(|| {
                    let word = if self.rng.coin() { "break" } else { "continue" };
                    (self.rng.below(trips as usize) as u32, word)
                });
                Stmt::For {
                    index,
                    exit,
                    trips,
                    body,
                }
            }
            11 if compound => {
                let c = self.cond(1);
                let dims = self.dims();
                let then = self.branch(&dims, loops, nest + 1);
                let els = self.branch(&dims, loops, nest + 1);
                let name = self.fresh("v");
                self.scope.push(Entry::Var {
                    name: name.clone(),
                    dims,
                    assignable: true,
                });
                Stmt::LetIf(name, c, then, els)
            }
            8 if !(self.in_helper && self.knobs.skip_print_in_helpers) => {
                let dims = self.dims();
                let mut e = self.expr(&dims, 1);
                if self.knobs.skip_negative_zero {
                    let zero = Box::new(Expr::new(&[], Kind::Lit(0.0)));
                    e = Expr::new(&dims, Kind::Bin("+", Box::new(e), zero));
                }
                let label = self.fresh("p");
                self.printed = true;
                Stmt::Print(label, e)
            }
            12 if loops > 0 || !self.in_helper => {
                let c = self.cond(1);
                let x = match self.rng.below(3) {
                    0 if !self.in_helper => Exit::Return(self.reduce(&[], 2)),
                    1 if loops > 0 && !self.in_while => Exit::Continue,
                    _ if loops > 0 => Exit::Break,
                    _ => Exit::Return(self.reduce(&[], 2)),
                };
                Stmt::Exit(c, x)
            }
            9 => {
                // A closure over a value of one shape, capturing what is in scope.
                let dims = self.dims();
                let mark = self.scope.len();
                self.scope.push(Entry::Var {
                    name: "t".into(),
                    dims: dims.clone(),
                    assignable: false,
                });
                let mut e = self.expr(&dims, 2);
                if !mentions(&e, "t") {
                    e = Expr::new(
                        &dims,
                        Kind::Bin(
                            "*",
                            Box::new(Expr::new(&dims, Kind::Var("t".into()))),
                            Box::new(e),
                        ),
                    );
                }
                self.scope.truncate(mark);
                let name = self.fresh("g");
                self.scope.push(Entry::Callable {
                    name: name.clone(),
                    params: vec![dims.clone()],
                    ret: dims,
                });
                Stmt::Closure(name, e)
            }
            _ => {
                // A value computed by a call, when there is something to call.
                let rets: Vec<Dims> = self
                    .scope
                    .iter()
                    .filter_map(|e| match e {
                        Entry::Callable { ret, .. } => Some(ret.clone()),
                        _ => None,
                    })
                    .collect();
                let dims = if rets.is_empty() {
                    self.dims()
                } else {
                    rets[self.rng.below(rets.len())].clone()
                };
                let e = self.call(&dims, 2);
                let name = self.fresh("v");
                self.scope.push(Entry::Var {
                    name: name.clone(),
                    dims,
                    assignable: true,
                });
                Stmt::Let(name, e)
            }
        }
    }

    /// A helper function: one or two parameters, a short body, a result of any shape.
    fn helper(&mut self) -> Helper {
        let name = self.fresh("h");
        let mut params = Vec::new();
        self.scope = self.helpers.clone();
        for i in 0..1 + self.rng.below(2) {
            let dims = self.dims();
            params.push((format!("p{i}"), dims.clone()));
            self.scope.push(Entry::Var {
                name: format!("p{i}"),
                dims,
                assignable: false,
            });
        }
        let saved = std::mem::replace(&mut self.budget, 4);
        self.params = params.iter().map(|(n, _)| n.clone()).collect();
        let n = self.rng.below(3);
        let body = self.block(n, 0, 1);
        let dims = self.dims();
        let result = self.expr(&dims, 2);
        self.budget = saved.saturating_sub(4 - self.budget);
        let h = Helper {
            name: name.clone(),
            params: params.clone(),
            annotated: self.rng.below(4) != 0,
            body,
            result,
        };
        self.helpers.push(Entry::Callable {
            name,
            params: params.into_iter().map(|(_, d)| d).collect(),
            ret: dims,
        });
        h
    }

    /// The scalar result of `f`: a reduction of the most recent variable, plus more.
    fn result(&mut self) -> Expr {
        let (name, dims) = self
            .scope
            .iter()
            .rev()
            .find_map(|e| match e {
                Entry::Var { name, dims, .. } => Some((name.clone(), dims.clone())),
                _ => None,
            })
            .unwrap_or_else(|| ("x0".into(), Vec::new()));
        let f = ["sum", "mean", "max"][self.rng.below(3)];
        let last = Expr::new(
            &[],
            Kind::Reduce(f, Box::new(Expr::new(&dims, Kind::Var(name))), None),
        );
        self.budget = self.budget.max(2);
        let more = self.expr(&[], 2);
        Expr::new(&[], Kind::Bin("+", Box::new(last), Box::new(more)))
    }
}

/// The shapes a reduction can bring to `dims`, with the axis (`None`: all of them).
fn reductions_to(dims: &[usize]) -> Vec<(Dims, Option<usize>)> {
    match dims {
        [] => SHAPES.iter().map(|d| (d.to_vec(), None)).collect(),
        [2] => vec![(vec![2, 3], Some(1))],
        [3] => vec![
            (vec![2, 3], Some(0)),
            (vec![3, 3], Some(0)),
            (vec![3, 3], Some(1)),
        ],
        _ => Vec::new(),
    }
}

/// Whether `e` reads the variable `name`.
fn mentions(e: &Expr, name: &str) -> bool {
    match &e.kind {
        Kind::Var(n) => n == name,
        _ => e.children().iter().any(|c| mentions(c, name)),
    }
}
