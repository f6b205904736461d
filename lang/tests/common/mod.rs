//! Test support for the typing rules: a tiny parser of type strings and a printer that
//! shows what the rules know (weakness and values included).
//!
//! Syntax: `f32[2, n]`, `i64` (a scalar), `f32[...]` (unknown rank), `weak f32`,
//! `i64 = 3`, `i64[2] = [2, n]` (known integers, `n` a symbolic size), `f32 = 0.5`,
//! `bool = true`, `(f32[3], i64)`, `{w: f32[2]}`, `str`, `str "ij,jk->ik"`, `()`, `?`
//! (unknown), `!` (never), `range`, `iter[f32[2]]`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use lang::check::{Const, IntVal, TensorTy, Ty, Typed};
use lang::{DType, Dim, Shape, Span};

/// Parses a type string; panics (this is test code) on a malformed one.
pub fn ty(s: &str) -> Ty {
    let mut p = P {
        s: s.as_bytes(),
        i: 0,
    };
    let t = p.ty();
    p.ws();
    assert_eq!(p.i, p.s.len(), "trailing text in type string {s:?}");
    t
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i] == b' ' {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> u8 {
        self.ws();
        self.s.get(self.i).copied().unwrap_or(0)
    }
    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, t: &str) {
        assert!(
            self.eat(t),
            "expected {t:?} at {} in {:?}",
            self.i,
            std::str::from_utf8(self.s)
        );
    }
    fn word(&mut self) -> String {
        self.ws();
        let st = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric()
                || matches!(self.s[self.i], b'_' | b'-' | b'.' | b'?'))
        {
            self.i += 1;
        }
        String::from_utf8(self.s[st..self.i].to_vec()).unwrap()
    }
    fn ty(&mut self) -> Ty {
        match self.peek() {
            b'(' => {
                self.expect("(");
                let mut items = Vec::new();
                while !self.eat(")") {
                    items.push(self.ty());
                    self.eat(",");
                }
                if items.is_empty() {
                    Ty::Unit
                } else {
                    Ty::Tuple(items)
                }
            }
            b'{' => {
                self.expect("{");
                let mut fields = BTreeMap::new();
                while !self.eat("}") {
                    let name = self.word();
                    self.expect(":");
                    fields.insert(name.as_str().into(), self.ty());
                    self.eat(",");
                }
                Ty::Record(fields)
            }
            b'?' => {
                self.expect("?");
                Ty::Unknown
            }
            b'!' => {
                self.expect("!");
                Ty::Never
            }
            _ => {
                let mut w = self.word();
                let weak = w == "weak";
                if weak {
                    w = self.word();
                }
                match w.as_str() {
                    "str" => {
                        if self.eat("\"") {
                            let st = self.i;
                            while self.s[self.i] != b'"' {
                                self.i += 1;
                            }
                            let lit = std::str::from_utf8(&self.s[st..self.i])
                                .unwrap()
                                .to_string();
                            self.i += 1;
                            Ty::Str(Some(lit.into()))
                        } else {
                            Ty::Str(None)
                        }
                    }
                    "range" => Ty::Range,
                    "iter" => {
                        self.expect("[");
                        let t = self.ty();
                        self.expect("]");
                        Ty::Iter(Box::new(t))
                    }
                    d => {
                        let dtype = DType::from_name(d).unwrap_or_else(|| panic!("dtype {d:?}"));
                        let shape = if self.eat("[...]") {
                            None
                        } else if self.eat("[") {
                            let mut dims = Vec::new();
                            while !self.eat("]") {
                                let w = self.word();
                                dims.push(match w.parse::<usize>() {
                                    Ok(n) => Dim::Known(n),
                                    Err(_) => Dim::sym(&w),
                                });
                                self.eat(",");
                            }
                            Some(Shape(dims))
                        } else {
                            Some(Shape::scalar())
                        };
                        let value = if self.eat("=") {
                            Some(self.value())
                        } else {
                            None
                        };
                        Ty::Tensor(TensorTy {
                            dtype,
                            shape,
                            weak,
                            value,
                        })
                    }
                }
            }
        }
    }
    fn int(w: &str) -> IntVal {
        match w.parse::<i64>() {
            Ok(n) => IntVal::Lit(n),
            Err(_) => IntVal::Sym(w.into()),
        }
    }
    fn value(&mut self) -> Const {
        if self.eat("[") {
            let mut v = Vec::new();
            while !self.eat("]") {
                let w = self.word();
                v.push(Self::int(&w));
                self.eat(",");
            }
            return Const::Ints(v);
        }
        let w = self.word();
        match w.as_str() {
            "true" => Const::Bool(true),
            "false" => Const::Bool(false),
            _ if w.contains('.') || w.contains('e') => Const::Float(w.parse().unwrap()),
            _ => Const::Ints(vec![Self::int(&w)]),
        }
    }
}

/// Prints a type with its weakness and known values, in the syntax [`ty`] reads.
pub fn show(t: &Ty) -> String {
    match t {
        Ty::Tensor(tt) => {
            let mut s = String::new();
            if tt.weak {
                s.push_str("weak ");
            }
            s.push_str(&tt.to_string());
            if let Some(v) = &tt.value {
                s.push_str(" = ");
                s.push_str(&show_const(v, tt.rank() == Some(1)));
            }
            s
        }
        Ty::Tuple(items) => {
            let inner: Vec<String> = items.iter().map(show).collect();
            if inner.len() == 1 {
                format!("({},)", inner[0])
            } else {
                format!("({})", inner.join(", "))
            }
        }
        Ty::Record(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{k}: {}", show(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Ty::Str(Some(s)) => format!("str {s:?}"),
        Ty::Iter(t) => format!("iter[{}]", show(t)),
        other => other.to_string(),
    }
}

fn show_const(c: &Const, vector: bool) -> String {
    let iv = |v: &IntVal| match v {
        IntVal::Lit(n) => n.to_string(),
        IntVal::Sym(s) => s.to_string(),
    };
    match c {
        Const::Ints(v) if vector => {
            format!("[{}]", v.iter().map(iv).collect::<Vec<_>>().join(", "))
        }
        Const::Ints(v) => v.iter().map(iv).collect::<Vec<_>>().join(", "),
        Const::Float(f) => format!("{f:?}"),
        Const::Bool(b) => b.to_string(),
    }
}

/// Builds a source text from pieces, each either plain text or an operand (text, type),
/// returning the text and the operands with their spans.
pub struct Src {
    pub text: String,
    pub spans: Vec<Span>,
}

impl Src {
    pub fn new() -> Src {
        Src {
            text: String::new(),
            spans: Vec::new(),
        }
    }
    /// Appends plain text.
    pub fn lit(mut self, s: &str) -> Src {
        self.text.push_str(s);
        self
    }
    /// Appends an operand's text and records its span.
    pub fn part(mut self, s: &str) -> Src {
        let st = self.text.len();
        self.text.push_str(s);
        self.spans.push(Span::new(st, self.text.len()));
        self
    }
    pub fn span(&self, i: usize) -> Span {
        self.spans[i]
    }
    pub fn typed(&self, i: usize, t: &str) -> Typed {
        Typed {
            ty: ty(t),
            span: self.spans[i],
        }
    }
    /// The text a span covers.
    pub fn at(&self, s: Span) -> &str {
        &self.text[s.range()]
    }
}

/// A diagnostic reduced to what the tables compare: code, message, and each label as
/// `text-under-the-span: label`.
pub fn summary(src: &Src, d: &lang::Diagnostic) -> String {
    let mut s = format!("{}: {}", d.code, d.message);
    s.push_str(&format!(
        " | {}: {}",
        src.at(d.primary.span),
        d.primary.message
    ));
    for l in &d.labels {
        s.push_str(&format!(" | {}: {}", src.at(l.span), l.message));
    }
    for h in &d.hints {
        s.push_str(&format!(" | hint: {h}"));
    }
    s
}

/// Asserts that each named global of `c` prints as the given type. `context` starts each
/// failure message (the case's name or source), so that a failing table row is found.
pub fn assert_globals(c: &lang::check::Checker, expect: &[(&str, &str)], context: &str) {
    let globals = c.globals();
    for (name, want) in expect {
        let got = globals
            .iter()
            .find(|(n, _)| &**n == *name)
            .map(|(_, t)| t.to_string());
        assert_eq!(got.as_deref(), Some(*want), "{context} type of `{name}`");
    }
}

/// Checks that every span of a diagnostic lies inside the source on char boundaries.
pub fn spans_inside(src: &Src, d: &lang::Diagnostic) {
    for s in std::iter::once(d.primary.span).chain(d.labels.iter().map(|l| l.span)) {
        assert!(
            src.text.get(s.range()).is_some(),
            "span {s:?} outside {:?}",
            src.text
        );
    }
}
