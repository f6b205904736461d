//! [`verify`]: the invariants every graph keeps between transforms.
//!
//! 1. **SSA**: every value is defined exactly once (one block argument or one node result),
//!    and the arena's record of each definition is where the value is defined.
//! 2. **Dominance**: every use comes after its definition in the same block or in a block
//!    that encloses it (a region sees the values of its enclosing blocks defined before its
//!    node; nothing defined in a region is visible outside it).
//! 3. **Types**: a primitive's operand types are re-inferred with [`infer`] and must give
//!    its declared result type; an assertion takes `(token, bool[])` and gives a token.
//! 4. **Regions**: block arguments and yields match what the node passes and returns
//!    (see the control-flow shapes in the module doc of [`graph`](super)); a fused region
//!    holds pure primitives only and uses only its own arguments.
//! 5. **Token**: effects take and give the token; every token value is used exactly once,
//!    in the block that defines it; no list of operands, results or arguments holds two.
//!
//! The first broken rule is reported, with the values named as [`print`](super::print())
//! names them.

use std::collections::{HashMap, HashSet};
use std::fmt;

use thiserror::Error;

use super::print::{numbering, value_name};
use super::{BlockId, Graph, NodeId, NodeKind, Span, Type, ValueDef, ValueId, is_effectful};
use crate::{DType, Shape, TensorType, infer};

/// Which rule a graph breaks (the numbered list of the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerifyErrorKind {
    /// A value defined twice, or a stale arena record.
    Ssa,
    /// A use not dominated by its definition.
    Dominance,
    /// A primitive or assertion whose types do not check.
    Type,
    /// A region whose arguments or yields do not match its node.
    Region,
    /// A misused effect token.
    Token,
}

impl fmt::Display for VerifyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyErrorKind::Ssa => "ssa",
            VerifyErrorKind::Dominance => "dominance",
            VerifyErrorKind::Type => "type",
            VerifyErrorKind::Region => "region",
            VerifyErrorKind::Token => "token",
        })
    }
}

/// The first rule a graph breaks, where, and why.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{kind}: {message}")]
pub struct VerifyError {
    /// The rule.
    pub kind: VerifyErrorKind,
    /// The span of the offending node (`Span::default()` for the graph's own inputs and
    /// outputs).
    pub span: Span,
    /// What is wrong, naming values as the printer does.
    pub message: String,
}

/// Checks every rule of the module doc.
pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    let names = numbering(g);
    let mut v = Verifier {
        g,
        names: &names,
        scopes: Vec::new(),
        seen: HashSet::new(),
        seen_blocks: HashSet::new(),
        token_uses: HashMap::new(),
    };
    v.block(g.body(), None)?;
    let mut tokens: Vec<(&ValueId, &(usize, Span))> = v.token_uses.iter().collect();
    tokens.sort_by_key(|(t, _)| names.get(t).copied());
    for (&t, &(uses, span)) in tokens {
        if uses != 1 {
            return Err(VerifyError {
                kind: VerifyErrorKind::Token,
                span,
                message: format!(
                    "the token {} is used {uses} times; each token must be used exactly once",
                    value_name(&names, t)
                ),
            });
        }
    }
    Ok(())
}

struct Verifier<'g> {
    g: &'g Graph,
    names: &'g HashMap<ValueId, usize>,
    /// The values visible in each open block, innermost last.
    scopes: Vec<HashSet<ValueId>>,
    seen: HashSet<ValueId>,
    seen_blocks: HashSet<BlockId>,
    /// Each token: how often it is used, and the span of its definer.
    token_uses: HashMap<ValueId, (usize, Span)>,
}

type VR = Result<(), VerifyError>;

fn flag() -> Type {
    Type::Tensor(TensorType::new(DType::Bool, Shape::scalar()))
}

fn types_list(ts: &[Type]) -> String {
    let v: Vec<String> = ts.iter().map(Type::to_string).collect();
    format!("({})", v.join(", "))
}

impl Verifier<'_> {
    fn name(&self, v: ValueId) -> String {
        value_name(self.names, v)
    }

    fn types(&self, vs: &[ValueId]) -> Vec<Type> {
        vs.iter().map(|&v| self.g.ty(v).clone()).collect()
    }

    /// How a node is named in messages: `` `%3 = add` `` or `` `if` ``.
    fn label(&self, n: NodeId) -> String {
        let node = self.g.node(n);
        let results: Vec<String> = node.results.iter().map(|&v| self.name(v)).collect();
        if results.is_empty() {
            format!("`{}`", node.kind.name())
        } else {
            format!("`{} = {}`", results.join(", "), node.kind.name())
        }
    }

    fn err(&self, kind: VerifyErrorKind, span: Span, message: String) -> VerifyError {
        VerifyError {
            kind,
            span,
            message,
        }
    }

    /// Records the definition of `v` by `def`, in the innermost scope.
    fn define(&mut self, v: ValueId, def: ValueDef, span: Span) -> VR {
        if v.index() >= self.g.value_count() || !self.seen.insert(v) {
            return Err(self.err(
                VerifyErrorKind::Ssa,
                span,
                format!("{} is defined more than once", self.name(v)),
            ));
        }
        if self.g.value(v).def != def {
            return Err(self.err(
                VerifyErrorKind::Ssa,
                span,
                format!(
                    "{} is recorded as defined elsewhere than where it is defined",
                    self.name(v)
                ),
            ));
        }
        if self.g.ty(v).is_token() {
            self.token_uses.insert(v, (0, span));
        }
        if let Some(s) = self.scopes.last_mut() {
            s.insert(v);
        }
        Ok(())
    }

    /// Checks a use of `v` in the innermost block, in `what` (for messages).
    fn use_value(&mut self, v: ValueId, what: &str, span: Span) -> VR {
        let visible =
            v.index() < self.g.value_count() && self.scopes.iter().any(|s| s.contains(&v));
        if !visible {
            return Err(self.err(
                VerifyErrorKind::Dominance,
                span,
                format!(
                    "{what} uses {}, which is not defined before it in this block or an enclosing one",
                    self.name(v)
                ),
            ));
        }
        if self.g.ty(v).is_token() {
            let local = self.scopes.last().is_some_and(|s| s.contains(&v));
            if !local {
                return Err(self.err(
                    VerifyErrorKind::Token,
                    span,
                    format!(
                        "{what} uses the token {} of an enclosing block; a region gets the token as a block argument",
                        self.name(v)
                    ),
                ));
            }
            if let Some(u) = self.token_uses.get_mut(&v) {
                u.0 += 1;
            }
        }
        Ok(())
    }

    /// Fails if `vs` holds more than one token.
    fn one_token(&self, vs: &[ValueId], what: &str, span: Span) -> VR {
        if vs.iter().filter(|&&v| self.g.ty(v).is_token()).count() > 1 {
            return Err(self.err(
                VerifyErrorKind::Token,
                span,
                format!("{what} hold more than one token"),
            ));
        }
        Ok(())
    }

    /// Verifies `b`, a region of `owner` (or the body), in a new scope.
    fn block(&mut self, b: BlockId, owner: Option<NodeId>) -> VR {
        let span = owner.map_or(Span::default(), |n| self.g.node(n).span);
        let blk = self.g.block(b);
        if !self.seen_blocks.insert(b) || blk.parent != owner {
            return Err(self.err(
                VerifyErrorKind::Ssa,
                span,
                format!(
                    "block {} is not a region of exactly its own node",
                    b.index()
                ),
            ));
        }
        self.scopes.push(HashSet::new());
        for (index, &a) in blk.args.iter().enumerate() {
            self.define(a, ValueDef::Arg { block: b, index }, span)?;
        }
        let what = if owner.is_some() {
            "the arguments of a region"
        } else {
            "the graph's inputs"
        };
        self.one_token(&blk.args, what, span)?;
        for &n in &blk.nodes {
            self.node(n, b)?;
        }
        let what = match owner {
            Some(n) => format!("the yield of a region of {}", self.label(n)),
            None => "the graph's yield".to_string(),
        };
        for &y in &blk.yields {
            self.use_value(y, &what, span)?;
        }
        self.one_token(&blk.yields, &what, span)?;
        self.scopes.pop();
        Ok(())
    }

    fn node(&mut self, n: NodeId, b: BlockId) -> VR {
        let node = self.g.node(n);
        let span = node.span;
        if node.block != b {
            return Err(self.err(
                VerifyErrorKind::Ssa,
                span,
                format!(
                    "{} is recorded in another block than the one that lists it",
                    self.label(n)
                ),
            ));
        }
        let label = self.label(n);
        for &o in &node.operands {
            self.use_value(o, &label, span)?;
        }
        self.one_token(&node.operands, &format!("the operands of {label}"), span)?;
        self.one_token(&node.results, &format!("the results of {label}"), span)?;
        self.check_types(n)?;
        // Regions are checked before the results are in scope: a region cannot see them.
        // A fused or called region is closed: it sees only its own arguments.
        let closed = matches!(node.kind, NodeKind::Fused { .. } | NodeKind::Call { .. });
        for r in node.kind.regions() {
            let outer = if closed {
                std::mem::take(&mut self.scopes)
            } else {
                Vec::new()
            };
            let checked = self.block(r, Some(n));
            if closed {
                self.scopes = outer;
            }
            checked?;
        }
        self.check_regions(n)?;
        for (index, &r) in node.results.iter().enumerate() {
            self.define(r, ValueDef::Result { node: n, index }, span)?;
        }
        Ok(())
    }

    /// Rule 3 (and the token's place in effects).
    fn check_types(&self, n: NodeId) -> VR {
        let node = self.g.node(n);
        let (span, label) = (node.span, self.label(n));
        let ty_err = |m: String| self.err(VerifyErrorKind::Type, span, format!("{label}: {m}"));
        let tok_err = |m: String| self.err(VerifyErrorKind::Token, span, format!("{label}: {m}"));
        let ops = self.types(&node.operands);
        let res = self.types(&node.results);
        match &node.kind {
            NodeKind::Prim(op) => {
                let (args, outs) = if is_effectful(op.prim()) {
                    if ops.first() != Some(&Type::Token) || res.first() != Some(&Type::Token) {
                        return Err(tok_err(format!(
                            "{} is an effect: it takes the token as its first operand and gives a new one as its first result",
                            op.name()
                        )));
                    }
                    (&ops[1..], &res[1..])
                } else {
                    (&ops[..], &res[..])
                };
                let mut tensors = Vec::new();
                for (i, t) in args.iter().enumerate() {
                    match t {
                        Type::Tensor(t) => tensors.push(t.clone()),
                        Type::Token => {
                            return Err(tok_err(format!(
                                "operand {i} is a token, but {} is not an effect",
                                op.name()
                            )));
                        }
                    }
                }
                let want = infer(op, &tensors).map_err(|e| ty_err(e.to_string()))?;
                if outs != [Type::Tensor(want.clone())] {
                    return Err(ty_err(format!(
                        "declares results {}, but {} gives {want}",
                        types_list(outs),
                        op.name()
                    )));
                }
            }
            NodeKind::Assert { .. } => {
                if ops != [Type::Token, flag()] || res != [Type::Token] {
                    return Err(ty_err(format!(
                        "an assertion takes (token, bool[]) and gives (token), not {} -> {}",
                        types_list(&ops),
                        types_list(&res)
                    )));
                }
            }
            NodeKind::Collective(c) => match (&ops[..], &res[..]) {
                ([Type::Tensor(a)], [Type::Tensor(b)]) => {
                    crate::parallel::check_type(c, a, b).map_err(ty_err)?;
                }
                _ => {
                    return Err(ty_err(format!(
                        "a collective takes one tensor and gives one, not {} -> {}",
                        types_list(&ops),
                        types_list(&res)
                    )));
                }
            },
            NodeKind::If { .. } => {
                if ops.first() != Some(&flag()) {
                    return Err(ty_err(format!(
                        "the condition must be bool[], found {}",
                        ops.first().map_or("nothing".into(), Type::to_string)
                    )));
                }
            }
            NodeKind::While { .. } | NodeKind::Call { .. } => {}
            NodeKind::Fused { .. } => {
                if ops.iter().any(Type::is_token) {
                    return Err(ty_err(
                        "a fused group takes tensors only, not the token".to_string(),
                    ));
                }
            }
            NodeKind::For { .. } => {
                let ok = ops.len() >= 3
                    && ops[..3].iter().all(|t| *t == ops[0])
                    && matches!(&ops[0], Type::Tensor(t) if t.rank() == 0 && t.dtype.is_int());
                if !ok {
                    return Err(ty_err(format!(
                        "the bounds (start, stop, step) must be integer scalars of one dtype, found {}",
                        types_list(&ops[..ops.len().min(3)])
                    )));
                }
            }
        }
        Ok(())
    }

    /// Rule 4.
    fn check_regions(&self, n: NodeId) -> VR {
        let node = self.g.node(n);
        let (span, label) = (node.span, self.label(n));
        let ops = self.types(&node.operands);
        let res = self.types(&node.results);
        let region = |name: &str, b: BlockId, args: &[Type], yields: &[Type]| -> VR {
            let blk = self.g.block(b);
            let (a, y) = (self.types(&blk.args), self.types(&blk.yields));
            if a != args {
                return Err(self.err(
                    VerifyErrorKind::Region,
                    span,
                    format!(
                        "{label}: the {name} region takes {}, expected {}",
                        types_list(&a),
                        types_list(args)
                    ),
                ));
            }
            if y != yields {
                return Err(self.err(
                    VerifyErrorKind::Region,
                    span,
                    format!(
                        "{label}: the {name} region yields {}, expected {}",
                        types_list(&y),
                        types_list(yields)
                    ),
                ));
            }
            Ok(())
        };
        match &node.kind {
            NodeKind::Prim(_) | NodeKind::Assert { .. } | NodeKind::Collective(_) => Ok(()),
            NodeKind::If {
                then_block,
                else_block,
            } => {
                region("then", *then_block, &ops[1..], &res)?;
                region("else", *else_block, &ops[1..], &res)
            }
            NodeKind::While { cond, body } => {
                let mut cy = vec![flag()];
                cy.extend(ops.iter().cloned());
                region("cond", *cond, &ops, &cy)?;
                region("body", *body, &ops, &ops)?;
                self.results_are(&label, span, &res, &ops)
            }
            NodeKind::For { body } => {
                let carried = &ops[3..];
                let mut args = vec![ops[0].clone()];
                args.extend(carried.iter().cloned());
                region("body", *body, &args, carried)?;
                self.results_are(&label, span, &res, carried)
            }
            NodeKind::Call { body, .. } => region("body", *body, &ops, &res),
            NodeKind::Fused { body } => {
                region("body", *body, &ops, &res)?;
                let impure = self.g.block(*body).nodes.iter().any(|&m| {
                    !matches!(&self.g.node(m).kind, NodeKind::Prim(op) if !is_effectful(op.prim()))
                });
                if impure {
                    return Err(self.err(
                        VerifyErrorKind::Region,
                        span,
                        format!("{label}: a fused region holds pure primitives only"),
                    ));
                }
                Ok(())
            }
        }
    }

    fn results_are(&self, label: &str, span: Span, res: &[Type], carried: &[Type]) -> VR {
        if res != carried {
            return Err(self.err(
                VerifyErrorKind::Region,
                span,
                format!(
                    "{label}: results {} differ from the carried values {}",
                    types_list(res),
                    types_list(carried)
                ),
            ));
        }
        Ok(())
    }
}
