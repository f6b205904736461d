//! The text form of a graph (jaxpr-like; [`parse`](super::parse()) reads it back).
//!
//! ```text
//! graph @mlp(%0: f32[B, 784], %1: f32[784, 128]) -> (f32[B, 128]) {
//!   %2: f32[B, 128] = matmul %0, %1
//!   %3: f32[B] = sum %2 {axes: [1], keepdims: false} @0:40..52
//!   yield %2
//! }
//! ```
//!
//! Values are renumbered `%0, %1, ...` in text order, so the text does not depend on arena
//! order. Attributes follow the operands in braces, every attribute of the [`Op`] by its
//! table name; spans (`@src:start..end`) are printed on request (except the default "no
//! source" span) and always last on a node's line (after the closing brace of its last
//! region for control flow).

use std::collections::HashMap;
use std::fmt::Write;

use super::{BlockId, Graph, NodeKind, Span, ValueId};
use crate::{Conv2dParams, Op, Pool2dParams, Shape};

/// How to print a graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrintOptions {
    /// Print each node's span (`@src:start..end`); `Span::default()`, "no source", is
    /// never printed, which is also what the parser gives a node without one.
    pub spans: bool,
}

/// The graph as text.
pub fn print(g: &Graph, opts: PrintOptions) -> String {
    let names = numbering(g);
    let mut p = Printer {
        g,
        names: &names,
        opts,
        out: String::new(),
    };
    p.graph();
    p.out
}

/// The number each value is printed with: definitions in text order (the body's
/// arguments, then each node's results, then its regions' arguments and contents).
pub fn numbering(g: &Graph) -> HashMap<ValueId, usize> {
    fn block(g: &Graph, b: BlockId, names: &mut HashMap<ValueId, usize>) {
        let blk = g.block(b);
        for &v in &blk.args {
            let k = names.len();
            names.entry(v).or_insert(k);
        }
        for &n in &blk.nodes {
            let node = g.node(n);
            for &v in &node.results {
                let k = names.len();
                names.entry(v).or_insert(k);
            }
            for r in node.kind.regions() {
                block(g, r, names);
            }
        }
    }
    let mut names = HashMap::new();
    block(g, g.body(), &mut names);
    names
}

/// A value's printed name: its number, or its arena index after `?` for a value defined
/// nowhere in the graph's blocks (only in graphs the verifier rejects).
pub(crate) fn value_name(names: &HashMap<ValueId, usize>, v: ValueId) -> String {
    match names.get(&v) {
        Some(k) => format!("%{k}"),
        None => format!("%?{}", v.index()),
    }
}

struct Printer<'g> {
    g: &'g Graph,
    names: &'g HashMap<ValueId, usize>,
    opts: PrintOptions,
    out: String,
}

impl Printer<'_> {
    fn name(&self, v: ValueId) -> String {
        value_name(self.names, v)
    }

    fn uses(&self, vs: &[ValueId]) -> String {
        vs.iter()
            .map(|&v| self.name(v))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn defs(&self, vs: &[ValueId]) -> String {
        vs.iter()
            .map(|&v| format!("{}: {}", self.name(v), self.g.ty(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn graph(&mut self) {
        let body = self.g.block(self.g.body());
        let outs = body
            .yields
            .iter()
            .map(|&v| self.g.ty(v).to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let header = format!(
            "graph @{}({}) -> ({outs}) {{\n",
            graph_name(self.g.name()),
            self.defs(&body.args)
        );
        self.out.push_str(&header);
        self.block_body(self.g.body(), 1);
        self.out.push_str("}\n");
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn block_body(&mut self, b: BlockId, depth: usize) {
        let blk = self.g.block(b);
        for &n in &blk.nodes {
            let node = self.g.node(n);
            self.indent(depth);
            if !node.results.is_empty() {
                let d = self.defs(&node.results);
                self.out.push_str(&d);
                self.out.push_str(" = ");
            }
            self.out.push_str(node.kind.name());
            if !node.operands.is_empty() {
                let u = self.uses(&node.operands);
                self.out.push(' ');
                self.out.push_str(&u);
            }
            match &node.kind {
                NodeKind::Prim(op) => {
                    let a = attrs(op);
                    if !a.is_empty() {
                        let _ = write!(self.out, " {{{}}}", a.join(", "));
                    }
                }
                NodeKind::Assert { message } => {
                    let _ = write!(self.out, " {{message: {message:?}}}");
                }
                NodeKind::Collective(c) => {
                    let _ = write!(self.out, " {c}");
                }
                NodeKind::If {
                    then_block,
                    else_block,
                } => {
                    self.region("then", *then_block, depth);
                    self.region("else", *else_block, depth);
                }
                NodeKind::While { cond, body } => {
                    self.region("cond", *cond, depth);
                    self.region("body", *body, depth);
                }
                NodeKind::For { body } | NodeKind::Fused { body } => {
                    self.region("body", *body, depth);
                }
                NodeKind::Call { callee, body } => {
                    let _ = write!(self.out, " {{callee: {callee:?}}}");
                    self.region("body", *body, depth);
                }
            }
            if self.opts.spans && node.span != Span::default() {
                let _ = write!(self.out, " {}", node.span);
            }
            self.out.push('\n');
        }
        self.indent(depth);
        self.out.push_str("yield");
        if !blk.yields.is_empty() {
            let u = self.uses(&blk.yields);
            self.out.push(' ');
            self.out.push_str(&u);
        }
        self.out.push('\n');
    }

    fn region(&mut self, label: &str, b: BlockId, depth: usize) {
        let d = self.defs(&self.g.block(b).args);
        let _ = writeln!(self.out, " {label}({d}) {{");
        self.block_body(b, depth + 1);
        self.indent(depth);
        self.out.push('}');
    }
}

/// The graph's name as written after `@`: bare when it is an identifier, else quoted.
fn graph_name(name: &str) -> String {
    let mut chars = name.chars();
    let ident = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

fn list<T: ToString>(xs: &[T]) -> String {
    let items: Vec<String> = xs.iter().map(ToString::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// A float attribute: Rust's shortest round-trip form (`0.5`, `1e-5`, `-0.0`, `-inf`),
/// which reads back to the same bits for every value but NaNs. A NaN is `NaN` when it is
/// the quiet NaN Rust's parser gives, and otherwise `nan_` and its 16 hex digits of bits
/// (`nan_fff8000000000000`, the NaN an x86 `0.0 / 0.0` makes), so that a folded constant
/// keeps its sign and payload through the text form (the `.msir` model file relies on it).
fn float(v: f64) -> String {
    if v.is_nan() && v.to_bits() != f64::NAN.to_bits() {
        format!("nan_{:016x}", v.to_bits())
    } else {
        format!("{v:?}")
    }
}

fn shape(s: &Shape) -> String {
    s.to_string()
}

fn conv(p: &Conv2dParams) -> Vec<String> {
    vec![
        format!("stride: {}", list(&p.stride)),
        format!("padding: {}", list(&p.padding)),
        format!("dilation: {}", list(&p.dilation)),
        format!("groups: {}", p.groups),
    ]
}

fn pool(p: &Pool2dParams) -> Vec<String> {
    vec![
        format!("window: {}", list(&p.window)),
        format!("stride: {}", list(&p.stride)),
        format!("padding: {}", list(&p.padding)),
    ]
}

/// Every attribute of `op` as `name: value`, in table order.
pub(crate) fn attrs(op: &Op) -> Vec<String> {
    match op {
        Op::Unary { .. }
        | Op::Binary { .. }
        | Op::Compare { .. }
        | Op::Select {}
        | Op::MatMul {}
        | Op::Print {}
        | Op::StopGradient {} => Vec::new(),
        Op::Reduce { axes, keepdims, .. } => {
            vec![
                format!("axes: {}", list(axes)),
                format!("keepdims: {keepdims}"),
            ]
        }
        Op::ArgReduce { axis, keepdims, .. } => {
            vec![format!("axis: {axis}"), format!("keepdims: {keepdims}")]
        }
        Op::Reshape { shape: s } | Op::Broadcast { shape: s } => {
            vec![format!("shape: {}", shape(s))]
        }
        Op::Transpose { perm } => vec![format!("perm: {}", list(perm))],
        Op::Slice { dims } => {
            let d: Vec<String> = dims
                .iter()
                .map(|s| format!("({}, {}, {})", s.start, s.len, s.step))
                .collect();
            vec![format!("dims: [{}]", d.join(", "))]
        }
        Op::Concat { axis } | Op::Gather { axis } | Op::ScatterAdd { axis } => {
            vec![format!("axis: {axis}")]
        }
        Op::Pad { pads, value } => {
            let p: Vec<String> = pads.iter().map(|(a, b)| format!("({a}, {b})")).collect();
            vec![
                format!("pads: [{}]", p.join(", ")),
                format!("value: {}", float(*value)),
            ]
        }
        Op::Conv2d { params } => conv(params),
        Op::Conv2dBackwardInput { params, input_hw } => {
            let mut a = conv(params);
            a.push(format!("input_hw: {}", list(input_hw)));
            a
        }
        Op::Conv2dBackwardFilter { params, kernel_hw } => {
            let mut a = conv(params);
            a.push(format!("kernel_hw: {}", list(kernel_hw)));
            a
        }
        Op::Pool2d { params, .. } | Op::Pool2dBackward { params, .. } => pool(params),
        Op::Cast { dtype } => vec![format!("dtype: {dtype}")],
        Op::Random {
            shape: s, dtype, ..
        } => {
            vec![format!("shape: {}", shape(s)), format!("dtype: {dtype}")]
        }
        Op::Iota {
            shape: s,
            axis,
            dtype,
        } => vec![
            format!("shape: {}", shape(s)),
            format!("axis: {axis}"),
            format!("dtype: {dtype}"),
        ],
        Op::Full {
            shape: s,
            dtype,
            value,
        } => vec![
            format!("shape: {}", shape(s)),
            format!("dtype: {dtype}"),
            format!("value: {}", float(*value)),
        ],
    }
}
