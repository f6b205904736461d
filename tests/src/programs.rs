//! Seeded generators of MindScript programs, for the front end's robustness tests and its
//! benchmark.
//!
//! [`valid_program`] writes programs that should check clean: top-level tensors of shapes
//! drawn from a small pool, functions with annotated and generic parameters, loops with
//! loop-carried values, records lifted through arithmetic, `if` expressions, closures and
//! gradients. The generator tracks each variable's shape, so every operation it writes
//! fits. [`mutate`] then damages a program the way people and fuzzers do (deleting,
//! duplicating and swapping spans, inserting stray tokens and non-ASCII text), to exercise
//! every recovery path of the parser and checker.

use crate::inputs::Rng;

/// Sizes the generator draws dimensions from (small, so shapes collide and ops fit).
const SIZES: [usize; 4] = [2, 3, 4, 8];

#[derive(Clone, Debug)]
struct Var {
    name: String,
    rows: usize,
    cols: usize,
}

/// Writes a program that should check clean, of about `lines` lines.
pub fn valid_program(rng: &mut Rng, lines: usize) -> String {
    let mut g = Gen {
        rng,
        out: String::new(),
        vars: Vec::new(),
        lines: 0,
        next: 0,
    };
    g.line("seed(0)".into());
    while g.lines < lines {
        g.item();
    }
    g.out
}

struct Gen<'a> {
    rng: &'a mut Rng,
    out: String,
    vars: Vec<Var>,
    lines: usize,
    next: usize,
}

impl Gen<'_> {
    fn line(&mut self, text: String) {
        self.out.push_str(&text);
        self.out.push('\n');
        self.lines += 1 + text.matches('\n').count();
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn size(&mut self) -> usize {
        SIZES[self.rng.below(SIZES.len())]
    }

    /// A variable of shape `[rows, cols]`, creating one if none exists.
    fn var(&mut self, rows: usize, cols: usize) -> String {
        let found: Vec<String> = self
            .vars
            .iter()
            .filter(|v| v.rows == rows && v.cols == cols)
            .map(|v| v.name.clone())
            .collect();
        if !found.is_empty() && self.rng.below(4) != 0 {
            return found[self.rng.below(found.len())].clone();
        }
        let name = self.fresh("t");
        self.line(format!("let {name} = randn([{rows}, {cols}])"));
        self.vars.push(Var {
            name: name.clone(),
            rows,
            cols,
        });
        name
    }

    fn any_var(&mut self) -> Var {
        if self.vars.is_empty() || self.rng.below(8) == 0 {
            let (r, c) = (self.size(), self.size());
            self.var(r, c);
        }
        self.vars[self.rng.below(self.vars.len())].clone()
    }

    /// An expression of shape `[rows, cols]` built from existing variables.
    fn expr(&mut self, rows: usize, cols: usize, depth: usize) -> String {
        let leaf = depth == 0 || self.rng.below(3) == 0;
        if leaf {
            return self.var(rows, cols);
        }
        match self.rng.below(7) {
            0 => format!(
                "{} + {}",
                self.expr(rows, cols, depth - 1),
                self.expr(rows, cols, depth - 1)
            ),
            1 => format!(
                "({} - {}) * 0.5",
                self.expr(rows, cols, depth - 1),
                self.var(1, cols)
            ),
            2 => {
                let k = self.size();
                format!("{} @ {}", self.var(rows, k), self.var(k, cols))
            }
            3 => {
                let f = ["relu", "tanh", "sigmoid", "exp", "abs", "sin"][self.rng.below(6)];
                format!("{f}({})", self.expr(rows, cols, depth - 1))
            }
            4 => format!("{}.T", self.var(cols, rows)),
            5 => format!("softmax({}, axis: 1)", self.expr(rows, cols, depth - 1)),
            _ => format!("maximum({}, 0.0)", self.expr(rows, cols, depth - 1)),
        }
    }

    fn item(&mut self) {
        match self.rng.below(10) {
            0..=2 => {
                let (r, c) = (self.size(), self.size());
                let e = self.expr(r, c, 3);
                let name = self.fresh("v");
                self.line(format!("let {name} = {e}"));
                self.vars.push(Var {
                    name,
                    rows: r,
                    cols: c,
                });
            }
            3 => self.function(),
            4 => self.for_loop(),
            5 => self.record(),
            6 => {
                let v = self.any_var();
                let e = self.expr(v.rows, v.cols, 2);
                let name = self.fresh("c");
                self.line(format!(
                    "let {name} = if mean({}) > 0.0 {{\n    {e}\n}} else {{\n    {} * 2.0\n}}",
                    v.name, v.name
                ));
                self.vars.push(Var {
                    name,
                    rows: v.rows,
                    cols: v.cols,
                });
            }
            7 => {
                let v = self.any_var();
                let s = self.fresh("s");
                self.line(format!(
                    "let {s} = sum({}, axis: 1) + mean({}, axis: 1, keepdims: false)",
                    v.name, v.name
                ));
                let i = self.fresh("i");
                self.line(format!(
                    "let {i} = 0\nwhile {i} < {} {{\n    {i} += 1\n    if {i} == 2 {{ continue }}\n}}",
                    v.rows
                ));
            }
            8 => {
                let v = self.any_var();
                let name = self.fresh("m");
                self.line(format!(
                    "let {name} = map(|x| x * 0.5 + 1.0, ({}, {}[0], {}[1:, :]))",
                    v.name, v.name, v.name
                ));
            }
            _ => {
                let v = self.any_var();
                let e = self.expr(v.rows, v.cols, 2);
                self.line(format!("/* a comment */ print(mean({e}))"));
            }
        }
    }

    fn function(&mut self) {
        let (r, c) = (self.size(), self.size());
        let f = self.fresh("f");
        let w = self.var(r, c);
        let body = self.expr(r, c, 2);
        let generic = self.rng.coin();
        let sig = if generic {
            "a, b".to_string()
        } else {
            format!("a: f32[{r}, {c}], b: f32")
        };
        let ret = if generic {
            String::new()
        } else {
            " -> f32".to_string()
        };
        self.line(format!(
            "/// A generated function.\nfn {f}({sig}){ret} {{\n    let h = a * b + {body}\n    let z = h - mean(h)\n    sum(z ** 2) / {}.0\n}}",
            r * c
        ));
        let g = self.fresh("g");
        self.line(format!("let {g} = grad({f})({w}, 2.0)"));
        self.vars.push(Var {
            name: g,
            rows: r,
            cols: c,
        });
        let l = self.fresh("l");
        self.line(format!("let {l} = {f}({w}, 0.5)"));
    }

    fn for_loop(&mut self) {
        let v = self.any_var();
        let acc = self.fresh("acc");
        let e = self.expr(v.rows, v.cols, 2);
        let trips = self.rng.below(5) + 1;
        self.line(format!(
            "let {acc} = zeros([{}, {}])\nfor k in 0..{trips} {{\n    {acc} = {acc} + 0.1 * {e}\n    {acc} -= {}\n}}",
            v.rows, v.cols, v.name
        ));
        self.vars.push(Var {
            name: acc,
            rows: v.rows,
            cols: v.cols,
        });
    }

    fn record(&mut self) {
        let v = self.any_var();
        let b = self.var(1, v.cols);
        let p = self.fresh("p");
        self.line(format!("let {p} = {{w: {}, b: {b}}}", v.name));
        let q = self.fresh("q");
        self.line(format!(
            "let {q} = {p} - 0.01 * {{w: {}, b: {b} * 2.0}}",
            v.name
        ));
        let w = self.fresh("w");
        self.line(format!("let {w} = {q}.w + {p}.b"));
        self.vars.push(Var {
            name: w,
            rows: v.rows,
            cols: v.cols,
        });
    }
}

/// Damages `src` with a few random edits; the result is usually wrong and sometimes not
/// even tokenizable, which is the point.
pub fn mutate(rng: &mut Rng, src: &str) -> String {
    const JUNK: [&str; 16] = [
        "(", ")", "[", "]", "{", "}", "|", ",", ";", "\n", "let", "fn", "@", "..", "é€", "\"",
    ];
    let mut chars: Vec<char> = src.chars().collect();
    for _ in 0..=rng.below(4) {
        let len = chars.len();
        let at = if len == 0 { 0 } else { rng.below(len) };
        match rng.below(5) {
            0 if len > 0 => {
                let n = (rng.below(8) + 1).min(len - at);
                chars.drain(at..at + n);
            }
            1 => {
                let junk = JUNK[rng.below(JUNK.len())];
                chars.splice(at..at, junk.chars());
            }
            2 if len > 0 => {
                let n = (rng.below(30) + 1).min(len - at);
                let copy: Vec<char> = chars[at..at + n].to_vec();
                let to = rng.below(len);
                chars.splice(to..to, copy);
            }
            3 if len > 1 => {
                let other = rng.below(len);
                chars.swap(at, other);
            }
            _ => chars.truncate(at),
        }
    }
    chars.into_iter().collect()
}
