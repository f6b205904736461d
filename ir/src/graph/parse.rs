//! Reads the text form back into a [`Graph`] (see [`print`](super::print()) for the form).
//!
//! The parser checks syntax and resolves names only: types, scopes and the token are the
//! verifier's business, so a graph that breaks a rule can be written down and handed to
//! [`verify`](super::verify()) (that is how its failing cases are written). Value names
//! are `%` and any identifier characters (`%x`, `%12`); a name used before its definition
//! is resolved later in the text, a name defined twice keeps one value defined at both
//! places (which the verifier rejects), and a name never defined is a parse error. `//`
//! starts a comment that runs to the end of the line.

use std::collections::{HashMap, HashSet};
use std::fmt;

use thiserror::Error;

use super::{BlockId, Graph, NodeId, NodeKind, Span, Type, ValueDef, ValueId};
use crate::parallel::{Collective, ReduceKind};
use crate::{Conv2dParams, DType, Dim, Op, Pool2dParams, Prim, Shape, SliceDim, TensorType};

/// Why a text is not a graph: the message and where (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{line}:{col}: {message}")]
pub struct ParseError {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses one graph.
pub fn parse(text: &str) -> Result<Graph, ParseError> {
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        g: Graph::empty(""),
        names: HashMap::new(),
        defined: HashSet::new(),
        first_use: HashMap::new(),
    };
    p.graph()?;
    let mut undefined: Vec<(&Pos, &String)> = p
        .names
        .iter()
        .filter(|(_, v)| !p.defined.contains(*v))
        .filter_map(|(name, v)| p.first_use.get(v).map(|pos| (pos, name)))
        .collect();
    undefined.sort();
    if let Some((pos, name)) = undefined.first() {
        return Err(pos.error(format!("%{name} is never defined")));
    }
    Ok(p.g)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    line: usize,
    col: usize,
}

impl Pos {
    fn error(self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            col: self.col,
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Value(String),
    Str(String),
    Punct(&'static str),
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) | Tok::Num(s) => write!(f, "`{s}`"),
            Tok::Value(s) => write!(f, "`%{s}`"),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Punct(p) => write!(f, "`{p}`"),
            Tok::Eof => f.write_str("the end of the text"),
        }
    }
}

const PUNCT: &[&str] = &[
    "->", "..", "@", ":", ",", "(", ")", "[", "]", "{", "}", "=", "-", "?",
];

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn lex(text: &str) -> Result<Vec<(Tok, Pos)>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0, 1, 1);
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize, n: usize| {
        for _ in 0..n {
            if chars[*i] == '\n' {
                *line += 1;
                *col = 1;
            } else {
                *col += 1;
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, col };
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, 1);
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            let n = chars[i..].iter().take_while(|&&c| c != '\n').count();
            advance(&mut i, &mut line, &mut col, n);
        } else if c == '%' {
            let n = chars[i + 1..]
                .iter()
                .take_while(|&&c| is_ident_char(c))
                .count();
            if n == 0 {
                return Err(pos.error("expected a value name after `%`"));
            }
            out.push((Tok::Value(chars[i + 1..i + 1 + n].iter().collect()), pos));
            advance(&mut i, &mut line, &mut col, n + 1);
        } else if c.is_ascii_digit() {
            let mut n = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            // A fraction needs a digit after the dot, so `3..5` is two numbers.
            if chars.get(i + n) == Some(&'.')
                && chars.get(i + n + 1).is_some_and(char::is_ascii_digit)
            {
                n += 1 + chars[i + n + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
            }
            if matches!(chars.get(i + n), Some('e' | 'E')) {
                let sign = usize::from(matches!(chars.get(i + n + 1), Some('+' | '-')));
                let digits = chars[(i + n + 1 + sign).min(chars.len())..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if digits > 0 {
                    n += 1 + sign + digits;
                }
            }
            out.push((Tok::Num(chars[i..i + n].iter().collect()), pos));
            advance(&mut i, &mut line, &mut col, n);
        } else if c.is_ascii_alphabetic() || c == '_' {
            let n = chars[i..].iter().take_while(|&&c| is_ident_char(c)).count();
            out.push((Tok::Ident(chars[i..i + n].iter().collect()), pos));
            advance(&mut i, &mut line, &mut col, n);
        } else if c == '"' {
            let (s, n) = string(&chars[i..]).map_err(|(k, m)| {
                let before = &chars[i..i + k];
                let nl = before.iter().filter(|&&c| c == '\n').count();
                let col = if nl == 0 {
                    col + k
                } else {
                    before.iter().rev().take_while(|&&c| c != '\n').count() + 1
                };
                Pos {
                    line: line + nl,
                    col,
                }
                .error(m)
            })?;
            out.push((Tok::Str(s), pos));
            advance(&mut i, &mut line, &mut col, n);
        } else if let Some(p) = PUNCT.iter().find(|p| {
            p.chars()
                .enumerate()
                .all(|(k, pc)| chars.get(i + k) == Some(&pc))
        }) {
            out.push((Tok::Punct(p), pos));
            advance(&mut i, &mut line, &mut col, p.chars().count());
        } else {
            return Err(pos.error(format!("unexpected character `{c}`")));
        }
    }
    out.push((Tok::Eof, Pos { line, col }));
    Ok(out)
}

/// A string literal with Rust's escapes (what `{:?}` prints): the text and the number of
/// characters it spans, or the offset and reason of an error.
fn string(chars: &[char]) -> Result<(String, usize), (usize, String)> {
    let mut s = String::new();
    let mut i = 1;
    loop {
        match chars.get(i) {
            None => return Err((0, "unterminated string".into())),
            Some('"') => return Ok((s, i + 1)),
            Some('\\') => {
                let esc = chars.get(i + 1).copied();
                i += 2;
                match esc {
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some('t') => s.push('\t'),
                    Some('0') => s.push('\0'),
                    Some(c @ ('\\' | '"' | '\'')) => s.push(c),
                    Some('u') if chars.get(i) == Some(&'{') => {
                        let hex: String =
                            chars[i + 1..].iter().take_while(|&&c| c != '}').collect();
                        let c = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                        match c {
                            Some(c) if chars.get(i + 1 + hex.len()) == Some(&'}') => s.push(c),
                            _ => return Err((i - 2, format!("bad unicode escape `\\u{{{hex}}}`"))),
                        }
                        i += hex.len() + 2;
                    }
                    _ => return Err((i - 2, "unknown escape in string".into())),
                }
            }
            Some(&c) => {
                s.push(c);
                i += 1;
            }
        }
    }
}

/// An attribute value as written, before the op gives it a meaning.
#[derive(Clone, Debug)]
enum Attr {
    /// A number, as written (with its sign).
    Num(String),
    /// `true`, `false`, a dtype, a dim name, `NaN`, `inf`, `-inf`.
    Ident(String),
    /// `?`.
    Unknown,
    /// A string.
    Str(String),
    /// `[a, b]`.
    List(Vec<(Attr, Pos)>),
    /// `(a, b)`.
    Tuple(Vec<(Attr, Pos)>),
}

/// The attributes of one node, consumed as the op reads them.
struct Attrs {
    /// Name, value, the value's position and the name's.
    map: Vec<(String, Attr, Pos, Pos)>,
    at: Pos,
    op: &'static str,
}

impl Attrs {
    fn take(&mut self, key: &str) -> Result<(Attr, Pos), ParseError> {
        match self.map.iter().position(|(k, ..)| k == key) {
            Some(i) => {
                let (_, a, p, _) = self.map.remove(i);
                Ok((a, p))
            }
            None => Err(self
                .at
                .error(format!("{} needs the attribute `{key}`", self.op))),
        }
    }

    fn usize(&mut self, key: &str) -> Result<usize, ParseError> {
        let (a, p) = self.take(key)?;
        as_usize(&a, p)
    }

    fn string(&mut self, key: &str) -> Result<String, ParseError> {
        match self.take(key)? {
            (Attr::Str(s), _) => Ok(s),
            (_, p) => Err(p.error("expected a string")),
        }
    }

    fn bool(&mut self, key: &str) -> Result<bool, ParseError> {
        match self.take(key)? {
            (Attr::Ident(s), _) if s == "true" => Ok(true),
            (Attr::Ident(s), _) if s == "false" => Ok(false),
            (_, p) => Err(p.error("expected `true` or `false`")),
        }
    }

    fn f64(&mut self, key: &str) -> Result<f64, ParseError> {
        let (a, p) = self.take(key)?;
        let text = match &a {
            Attr::Num(s) | Attr::Ident(s) => s.as_str(),
            _ => "",
        };
        // A NaN with other bits than the canonical one is written by its bits.
        if let Some(hex) = text.strip_prefix("nan_") {
            return match u64::from_str_radix(hex, 16) {
                Ok(bits) if hex.len() == 16 && f64::from_bits(bits).is_nan() => {
                    Ok(f64::from_bits(bits))
                }
                _ => Err(p.error("expected the 16 hex digits of a NaN's bits after `nan_`")),
            };
        }
        let lower = text.trim_start_matches('-');
        let ok =
            lower.starts_with(|c: char| c.is_ascii_digit()) || lower == "inf" || lower == "NaN";
        match text.parse::<f64>() {
            Ok(v) if ok => Ok(v),
            _ => Err(p.error("expected a number")),
        }
    }

    fn dtype(&mut self, key: &str) -> Result<DType, ParseError> {
        match self.take(key)? {
            (Attr::Ident(s), p) => {
                DType::from_name(&s).ok_or_else(|| p.error(format!("unknown dtype `{s}`")))
            }
            (_, p) => Err(p.error("expected a dtype")),
        }
    }

    fn list(&mut self, key: &str) -> Result<(Vec<(Attr, Pos)>, Pos), ParseError> {
        match self.take(key)? {
            (Attr::List(items), p) => Ok((items, p)),
            (_, p) => Err(p.error("expected a list `[...]`")),
        }
    }

    fn usizes(&mut self, key: &str) -> Result<Vec<usize>, ParseError> {
        self.list(key)?
            .0
            .iter()
            .map(|(a, p)| as_usize(a, *p))
            .collect()
    }

    fn pair(&mut self, key: &str) -> Result<[usize; 2], ParseError> {
        let (items, p) = self.list(key)?;
        match items.as_slice() {
            [(a, pa), (b, pb)] => Ok([as_usize(a, *pa)?, as_usize(b, *pb)?]),
            _ => Err(p.error("expected two numbers `[h, w]`")),
        }
    }

    fn shape(&mut self, key: &str) -> Result<Shape, ParseError> {
        let (items, _) = self.list(key)?;
        items
            .iter()
            .map(|(a, p)| dim(a, *p))
            .collect::<Result<Vec<_>, _>>()
            .map(Shape)
    }

    fn tuples(&mut self, key: &str, n: usize) -> Result<Vec<Vec<(Attr, Pos)>>, ParseError> {
        let (items, _) = self.list(key)?;
        items
            .into_iter()
            .map(|(a, p)| match a {
                Attr::Tuple(t) if t.len() == n => Ok(t),
                _ => Err(p.error(format!("expected a tuple of {n}"))),
            })
            .collect()
    }

    fn conv(&mut self) -> Result<Conv2dParams, ParseError> {
        Ok(Conv2dParams {
            stride: self.pair("stride")?,
            padding: self.pair("padding")?,
            dilation: self.pair("dilation")?,
            groups: self.usize("groups")?,
        })
    }

    fn pool(&mut self) -> Result<Pool2dParams, ParseError> {
        Ok(Pool2dParams {
            window: self.pair("window")?,
            stride: self.pair("stride")?,
            padding: self.pair("padding")?,
        })
    }

    /// Fails on an attribute the op did not read.
    fn done(self) -> Result<(), ParseError> {
        match self.map.first() {
            Some((k, _, _, p)) => Err(p.error(format!("{} has no attribute `{k}`", self.op))),
            None => Ok(()),
        }
    }
}

fn as_int(a: &Attr, p: Pos) -> Result<i64, ParseError> {
    match a {
        Attr::Num(s) => s
            .parse::<i64>()
            .map_err(|_| p.error(format!("expected an integer, found `{s}`"))),
        _ => Err(p.error("expected an integer")),
    }
}

fn as_usize(a: &Attr, p: Pos) -> Result<usize, ParseError> {
    let v = as_int(a, p)?;
    usize::try_from(v).map_err(|_| p.error(format!("expected a non-negative integer, found {v}")))
}

fn dim(a: &Attr, p: Pos) -> Result<Dim, ParseError> {
    match a {
        Attr::Num(_) => Ok(Dim::Known(as_usize(a, p)?)),
        Attr::Ident(s) => Ok(Dim::sym(s)),
        Attr::Unknown => Ok(Dim::unknown()),
        _ => Err(p.error("expected a dim (a size, a name or `?`)")),
    }
}

/// Makes the op named by `prim` from its attributes.
fn build_op(prim: Prim, a: &mut Attrs) -> Result<Op, ParseError> {
    Ok(match prim {
        Prim::Unary(op) => Op::Unary { op },
        Prim::Binary(op) => Op::Binary { op },
        Prim::Compare(op) => Op::Compare { op },
        Prim::Select => Op::Select {},
        Prim::Reduce(op) => Op::Reduce {
            op,
            axes: a.usizes("axes")?,
            keepdims: a.bool("keepdims")?,
        },
        Prim::ArgReduce(op) => Op::ArgReduce {
            op,
            axis: a.usize("axis")?,
            keepdims: a.bool("keepdims")?,
        },
        Prim::MatMul => Op::MatMul {},
        Prim::Reshape => Op::Reshape {
            shape: a.shape("shape")?,
        },
        Prim::Transpose => Op::Transpose {
            perm: a.usizes("perm")?,
        },
        Prim::Broadcast => Op::Broadcast {
            shape: a.shape("shape")?,
        },
        Prim::Slice => {
            let dims = a
                .tuples("dims", 3)?
                .iter()
                .map(|t| {
                    let step = as_int(&t[2].0, t[2].1)?;
                    Ok(SliceDim {
                        start: as_usize(&t[0].0, t[0].1)?,
                        len: as_usize(&t[1].0, t[1].1)?,
                        step: isize::try_from(step)
                            .map_err(|_| t[2].1.error("step out of range"))?,
                    })
                })
                .collect::<Result<Vec<_>, ParseError>>()?;
            Op::Slice { dims }
        }
        Prim::Concat => Op::Concat {
            axis: a.usize("axis")?,
        },
        Prim::Pad => {
            let pads = a
                .tuples("pads", 2)?
                .iter()
                .map(|t| Ok((as_usize(&t[0].0, t[0].1)?, as_usize(&t[1].0, t[1].1)?)))
                .collect::<Result<Vec<_>, ParseError>>()?;
            Op::Pad {
                pads,
                value: a.f64("value")?,
            }
        }
        Prim::Gather => Op::Gather {
            axis: a.usize("axis")?,
        },
        Prim::ScatterAdd => Op::ScatterAdd {
            axis: a.usize("axis")?,
        },
        Prim::Conv2d => Op::Conv2d { params: a.conv()? },
        Prim::Conv2dBackwardInput => Op::Conv2dBackwardInput {
            params: a.conv()?,
            input_hw: a.pair("input_hw")?,
        },
        Prim::Conv2dBackwardFilter => Op::Conv2dBackwardFilter {
            params: a.conv()?,
            kernel_hw: a.pair("kernel_hw")?,
        },
        Prim::Pool2d(op) => Op::Pool2d {
            op,
            params: a.pool()?,
        },
        Prim::Pool2dBackward(op) => Op::Pool2dBackward {
            op,
            params: a.pool()?,
        },
        Prim::Cast => Op::Cast {
            dtype: a.dtype("dtype")?,
        },
        Prim::Random(op) => Op::Random {
            op,
            shape: a.shape("shape")?,
            dtype: a.dtype("dtype")?,
        },
        Prim::Iota => Op::Iota {
            shape: a.shape("shape")?,
            axis: a.usize("axis")?,
            dtype: a.dtype("dtype")?,
        },
        Prim::Full => Op::Full {
            shape: a.shape("shape")?,
            dtype: a.dtype("dtype")?,
            value: a.f64("value")?,
        },
        Prim::Print => Op::Print {},
        Prim::StopGradient => Op::StopGradient {},
    })
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    pos: usize,
    g: Graph,
    names: HashMap<String, ValueId>,
    defined: HashSet<ValueId>,
    first_use: HashMap<ValueId, Pos>,
}

type PR<T> = Result<T, ParseError>;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn at(&self) -> Pos {
        self.toks[self.pos].1
    }

    fn bump(&mut self) -> (Tok, Pos) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }

    fn unexpected<T>(&self, what: &str) -> PR<T> {
        Err(self
            .at()
            .error(format!("expected {what}, found {}", self.peek())))
    }

    fn expect(&mut self, p: &str) -> PR<Pos> {
        if self.is(p) {
            Ok(self.bump().1)
        } else {
            self.unexpected(&format!("`{p}`"))
        }
    }

    fn expect_word(&mut self, w: &str) -> PR<()> {
        if self.is_word(w) {
            self.bump();
            Ok(())
        } else {
            self.unexpected(&format!("`{w}`"))
        }
    }

    fn ident(&mut self, what: &str) -> PR<(String, Pos)> {
        match self.peek().clone() {
            Tok::Ident(s) => Ok((s, self.bump().1)),
            _ => self.unexpected(what),
        }
    }

    fn num(&mut self) -> PR<u32> {
        match self.peek().clone() {
            Tok::Num(s) => {
                let p = self.bump().1;
                s.parse::<u32>()
                    .map_err(|_| p.error(format!("expected a span offset, found `{s}`")))
            }
            _ => self.unexpected("a number"),
        }
    }

    fn graph(&mut self) -> PR<()> {
        self.expect_word("graph")?;
        self.expect("@")?;
        let name = match self.peek().clone() {
            Tok::Ident(s) | Tok::Str(s) => {
                self.bump();
                s
            }
            _ => return self.unexpected("the graph's name"),
        };
        self.g = Graph::empty(&name);
        let body = self.g.body();
        self.expect("(")?;
        self.args(body)?;
        self.expect(")")?;
        self.expect("->")?;
        self.expect("(")?;
        let mut outs = Vec::new();
        while !self.is(")") {
            if !outs.is_empty() {
                self.expect(",")?;
            }
            let p = self.at();
            outs.push((self.ty()?, p));
        }
        self.expect(")")?;
        self.expect("{")?;
        self.block_body(body)?;
        self.expect("}")?;
        if *self.peek() != Tok::Eof {
            return self.unexpected("the end of the text after the graph");
        }
        let yields = self.g.block(body).yields.clone();
        if yields.len() != outs.len() {
            return Err(outs.first().map_or(self.at(), |o| o.1).error(format!(
                "the header lists {} output(s), the body yields {}",
                outs.len(),
                yields.len()
            )));
        }
        for ((t, p), v) in outs.iter().zip(yields) {
            if self.defined.contains(&v) && self.g.ty(v) != t {
                return Err(p.error(format!(
                    "the header says {t}, the body yields {}",
                    self.g.ty(v)
                )));
            }
        }
        Ok(())
    }

    /// `%a: T, %b: T` up to a `)`, as arguments of `block`.
    fn args(&mut self, block: BlockId) -> PR<()> {
        while !self.is(")") {
            if !self.g.block(block).args.is_empty() {
                self.expect(",")?;
            }
            let (name, ty, p) = self.def()?;
            let index = self.g.block(block).args.len();
            let v = self.define(&name, ty, ValueDef::Arg { block, index }, p);
            self.g.block_mut(block).args.push(v);
        }
        Ok(())
    }

    /// `%name: T`.
    fn def(&mut self) -> PR<(String, Type, Pos)> {
        let (tok, p) = self.bump();
        let Tok::Value(name) = tok else {
            return Err(p.error(format!(
                "expected a value definition `%name: type`, found {tok}"
            )));
        };
        self.expect(":")?;
        Ok((name, self.ty()?, p))
    }

    /// The value named `name`, now defined by `def` (a second definition keeps the first
    /// one's record and is left for the verifier to reject).
    fn define(&mut self, name: &str, ty: Type, def: ValueDef, _p: Pos) -> ValueId {
        match self.names.get(name) {
            Some(&v) if self.defined.contains(&v) => v,
            Some(&v) => {
                let val = self.g.value_mut(v);
                val.ty = ty;
                val.def = def;
                self.defined.insert(v);
                v
            }
            None => {
                let v = self.g.add_value(ty, def);
                self.names.insert(name.to_string(), v);
                self.defined.insert(v);
                v
            }
        }
    }

    /// A use of `%name`, defined now or later in the text.
    fn use_value(&mut self) -> PR<ValueId> {
        let (tok, p) = self.bump();
        let Tok::Value(name) = tok else {
            return Err(p.error(format!("expected a value `%name`, found {tok}")));
        };
        let v = match self.names.get(&name) {
            Some(&v) => v,
            None => {
                // A placeholder until the definition is read; `parse` fails if it never is.
                let body = self.g.body();
                let v = self.g.add_value(
                    Type::Token,
                    ValueDef::Arg {
                        block: body,
                        index: usize::MAX,
                    },
                );
                self.names.insert(name, v);
                v
            }
        };
        self.first_use.entry(v).or_insert(p);
        Ok(v)
    }

    fn ty(&mut self) -> PR<Type> {
        let (name, p) = self.ident("a type")?;
        if name == "token" {
            return Ok(Type::Token);
        }
        let dtype =
            DType::from_name(&name).ok_or_else(|| p.error(format!("unknown type `{name}`")))?;
        self.expect("[")?;
        let mut dims = Vec::new();
        while !self.is("]") {
            if !dims.is_empty() {
                self.expect(",")?;
            }
            let (tok, p) = self.bump();
            dims.push(match tok {
                Tok::Num(s) => Dim::Known(
                    s.parse::<usize>()
                        .map_err(|_| p.error(format!("bad dim `{s}`")))?,
                ),
                Tok::Ident(s) => Dim::sym(&s),
                Tok::Punct("?") => Dim::unknown(),
                t => {
                    return Err(
                        p.error(format!("expected a dim (a size, a name or `?`), found {t}"))
                    );
                }
            });
        }
        self.expect("]")?;
        Ok(Type::Tensor(TensorType::new(dtype, Shape(dims))))
    }

    /// Nodes up to and including the block's `yield`.
    fn block_body(&mut self, block: BlockId) -> PR<()> {
        loop {
            if self.is_word("yield") {
                let line = self.bump().1.line;
                let yields = self.uses_on(line)?;
                self.g.block_mut(block).yields = yields;
                return Ok(());
            }
            self.node(block)?;
        }
    }

    /// Operands on line `line` (`%a, %b`); the list may continue past a line end only
    /// after a comma.
    fn uses_on(&mut self, line: usize) -> PR<Vec<ValueId>> {
        let mut out = Vec::new();
        if matches!(self.peek(), Tok::Value(_)) && self.at().line == line {
            out.push(self.use_value()?);
            while self.is(",") {
                self.bump();
                out.push(self.use_value()?);
            }
        }
        Ok(out)
    }

    fn node(&mut self, block: BlockId) -> PR<()> {
        let mut defs = Vec::new();
        if matches!(self.peek(), Tok::Value(_)) {
            loop {
                defs.push(self.def()?);
                if !self.is(",") {
                    break;
                }
                self.bump();
            }
            self.expect("=")?;
        }
        let (kw, kp) = self.ident("an operation or `yield`")?;
        let operands = self.uses_on(kp.line)?;
        let placeholder = NodeKind::For {
            body: BlockId::from_index(0),
        };
        let n = self
            .g
            .add_node(block, placeholder, operands, Span::default());
        for (index, (name, ty, p)) in defs.into_iter().enumerate() {
            let v = self.define(&name, ty, ValueDef::Result { node: n, index }, p);
            self.g.node_mut(n).results.push(v);
        }
        let kind = match kw.as_str() {
            "if" => {
                let t = self.region("then", n)?;
                let e = self.region("else", n)?;
                NodeKind::If {
                    then_block: t,
                    else_block: e,
                }
            }
            "while" => {
                let c = self.region("cond", n)?;
                let b = self.region("body", n)?;
                NodeKind::While { cond: c, body: b }
            }
            "for" => NodeKind::For {
                body: self.region("body", n)?,
            },
            "fused" => NodeKind::Fused {
                body: self.region("body", n)?,
            },
            "call" => {
                let mut a = self.attrs("call", kp)?;
                let callee = a.string("callee")?;
                a.done()?;
                NodeKind::Call {
                    callee,
                    body: self.region("body", n)?,
                }
            }
            "assert" => {
                let mut a = self.attrs("assert", kp)?;
                let message = a.string("message")?;
                a.done()?;
                NodeKind::Assert { message }
            }
            "all_reduce" => {
                let mut a = self.attrs("all_reduce", kp)?;
                let op = match a.take("op")? {
                    (Attr::Ident(s), p) => ReduceKind::from_name(&s)
                        .ok_or_else(|| p.error("expected sum, max or min"))?,
                    (_, p) => return Err(p.error("expected sum, max or min")),
                };
                let mesh_axis = a.usize("mesh_axis")?;
                a.done()?;
                NodeKind::Collective(Collective::AllReduce { op, mesh_axis })
            }
            "all_to_all" => {
                let mut a = self.attrs("all_to_all", kp)?;
                let split_axis = a.usize("split_axis")?;
                let concat_axis = a.usize("concat_axis")?;
                let mesh_axis = a.usize("mesh_axis")?;
                a.done()?;
                NodeKind::Collective(Collective::AllToAll {
                    split_axis,
                    concat_axis,
                    mesh_axis,
                })
            }
            "all_gather" | "shard" => {
                let mut a = self.attrs(if kw == "shard" { "shard" } else { "all_gather" }, kp)?;
                let axis = a.usize("axis")?;
                let mesh_axis = a.usize("mesh_axis")?;
                a.done()?;
                NodeKind::Collective(if kw == "shard" {
                    Collective::Shard { axis, mesh_axis }
                } else {
                    Collective::AllGather { axis, mesh_axis }
                })
            }
            _ => {
                let prim = Prim::all()
                    .iter()
                    .copied()
                    .find(|p| p.name() == kw)
                    .ok_or_else(|| kp.error(format!("unknown operation `{kw}`")))?;
                let mut a = self.attrs(prim.name(), kp)?;
                let op = build_op(prim, &mut a)?;
                a.done()?;
                NodeKind::Prim(op)
            }
        };
        self.g.node_mut(n).kind = kind;
        if self.is("@") {
            self.bump();
            let src = self.num()?;
            self.expect(":")?;
            let start = self.num()?;
            self.expect("..")?;
            let end = self.num()?;
            self.g.node_mut(n).span = Span::new(src, start, end);
        }
        Ok(())
    }

    /// `label(%a: T, ...) { ... }`, a region of `node`.
    fn region(&mut self, label: &str, node: NodeId) -> PR<BlockId> {
        self.expect_word(label)?;
        let b = self.g.add_block(Some(node));
        self.expect("(")?;
        self.args(b)?;
        self.expect(")")?;
        self.expect("{")?;
        self.block_body(b)?;
        self.expect("}")?;
        Ok(b)
    }

    /// `{key: value, ...}`, if present.
    fn attrs(&mut self, op: &'static str, at: Pos) -> PR<Attrs> {
        let mut map: Vec<(String, Attr, Pos, Pos)> = Vec::new();
        if self.is("{") {
            self.bump();
            while !self.is("}") {
                if !map.is_empty() {
                    self.expect(",")?;
                }
                let (key, p) = self.ident("an attribute name")?;
                if map.iter().any(|(k, ..)| *k == key) {
                    return Err(p.error(format!("the attribute `{key}` is given twice")));
                }
                self.expect(":")?;
                let vp = self.at();
                map.push((key, self.attr()?, vp, p));
            }
            self.bump();
        }
        Ok(Attrs { map, at, op })
    }

    fn attr(&mut self) -> PR<Attr> {
        let (tok, p) = self.bump();
        Ok(match tok {
            Tok::Num(s) => Attr::Num(s),
            Tok::Ident(s) => Attr::Ident(s),
            Tok::Str(s) => Attr::Str(s),
            Tok::Punct("?") => Attr::Unknown,
            Tok::Punct("-") => match self.bump() {
                (Tok::Num(s), _) => Attr::Num(format!("-{s}")),
                (Tok::Ident(s), _) if s == "inf" || s == "NaN" => Attr::Ident(format!("-{s}")),
                (t, p) => return Err(p.error(format!("expected a number after `-`, found {t}"))),
            },
            Tok::Punct(open @ ("[" | "(")) => {
                let close = if open == "[" { "]" } else { ")" };
                let mut items = Vec::new();
                while !self.is(close) {
                    if !items.is_empty() {
                        self.expect(",")?;
                    }
                    let ip = self.at();
                    items.push((self.attr()?, ip));
                }
                self.bump();
                if open == "[" {
                    Attr::List(items)
                } else {
                    Attr::Tuple(items)
                }
            }
            t => return Err(p.error(format!("expected an attribute value, found {t}"))),
        })
    }
}
