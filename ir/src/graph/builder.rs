//! [`GraphBuilder`]: appends nodes to the current block, opens regions, checks types as it
//! goes and threads the effect token.
//!
//! Every node is type-checked when it is added (primitives with [`infer`], control flow
//! against its region signatures), and every operand must be in scope, so a graph that
//! [`GraphBuilder::finish`] returns passes [`verify`](super::verify()).
//!
//! **Token threading.** Each open block may hold a *current token*. The body gets one from
//! [`GraphBuilder::token_input`]. Effects ([`GraphBuilder::print`], [`GraphBuilder::random`],
//! [`GraphBuilder::assert`], and effectful ops through [`Emit`]) consume it and replace it
//! with their new token. A control-flow node opened while the block holds a token passes it
//! into its regions as their first argument (after the induction variable of a `For`),
//! yields the region's final token first, and takes its own first result as the block's
//! new token; the closures that fill regions never see it. [`GraphBuilder::finish`] returns
//! the body's final token as the first output.

use std::fmt;

use thiserror::Error;

use super::{BlockId, Graph, NodeId, NodeKind, Span, Type, ValueDef, ValueId, is_effectful};
use crate::parallel::Collective;
use crate::{DType, Emit, InferError, Op, RandomOp, Shape, TensorType, infer};

/// Why the builder refused a node.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum BuildError {
    /// A primitive's shape/dtype rule rejected its operands.
    #[error("{error}")]
    Infer {
        /// The rule's error (boxed: it is large, and results should stay small).
        error: Box<InferError>,
        /// The node's span.
        span: Span,
    },
    /// A token was given where a tensor is needed, or a tensor where the token is.
    #[error("{op} operand {index}: expected {expected}, found {found}")]
    Operand {
        /// The node's keyword.
        op: &'static str,
        /// Which operand.
        index: usize,
        /// What it must be, in words.
        expected: &'static str,
        /// Its type.
        found: Type,
        /// The node's span.
        span: Span,
    },
    /// An effect was added to a block that holds no token.
    #[error("{op} is an effect, but the current block has no effect token")]
    NoToken {
        /// The node's keyword.
        op: &'static str,
        /// The node's span.
        span: Span,
    },
    /// An operand is not visible from the current block (it is defined in a region that
    /// has been closed, or in another graph).
    #[error("{op} operand {index} is not in scope here")]
    OutOfScope {
        /// The node's keyword.
        op: &'static str,
        /// Which operand (or yielded value).
        index: usize,
        /// The node's span.
        span: Span,
    },
    /// A region yields values of other types than its node needs.
    #[error("the {region} region of {op} yields ({}), expected ({})", list(.found), list(.expected))]
    Yield {
        /// The node's keyword.
        op: &'static str,
        /// Which region (`then`, `else`, `body`).
        region: &'static str,
        /// The types it must yield.
        expected: Vec<Type>,
        /// The types it yields.
        found: Vec<Type>,
        /// The node's span.
        span: Span,
    },
    /// `finish` was called with regions still open.
    #[error("finish called inside a region")]
    Unfinished,
    /// A collective's result type does not fit its operand (see
    /// [`crate::parallel::collective::check_type`]).
    #[error("{message}")]
    Collective {
        /// What does not fit.
        message: String,
        /// The node's span.
        span: Span,
    },
}

fn list(ts: &[Type]) -> String {
    ts.iter()
        .map(Type::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One open block and its current token.
#[derive(Debug)]
struct Frame {
    block: BlockId,
    token: Option<ValueId>,
}

/// Builds a [`Graph`] node by node. See the module doc.
#[derive(Debug)]
pub struct GraphBuilder {
    g: Graph,
    stack: Vec<Frame>,
    span: Span,
}

type R<T> = Result<T, BuildError>;

impl GraphBuilder {
    /// A builder for a graph named `name`, with no inputs yet.
    pub fn new(name: &str) -> GraphBuilder {
        let g = Graph::empty(name);
        let body = g.body();
        GraphBuilder {
            g,
            stack: vec![Frame {
                block: body,
                token: None,
            }],
            span: Span::default(),
        }
    }

    /// Adds a tensor input (an argument of the body).
    pub fn input(&mut self, t: TensorType) -> ValueId {
        let body = self.g.body();
        self.g.add_arg(body, Type::Tensor(t))
    }

    /// Adds the token input and makes it the body's current token (once; later calls give
    /// the body's current token back).
    pub fn token_input(&mut self) -> ValueId {
        if let Some(t) = self.stack[0].token {
            return t;
        }
        let body = self.g.body();
        let t = self.g.add_arg(body, Type::Token);
        self.stack[0].token = Some(t);
        t
    }

    /// Sets the span given to the nodes added from now on.
    pub fn set_span(&mut self, span: Span) {
        self.span = span;
    }

    /// The span nodes get now.
    pub fn span(&self) -> Span {
        self.span
    }

    /// The graph built so far.
    pub fn graph(&self) -> &Graph {
        &self.g
    }

    /// The type of a value.
    pub fn ty(&self, v: ValueId) -> &Type {
        self.g.ty(v)
    }

    /// The current block's token, if it holds one.
    pub fn current_token(&self) -> Option<ValueId> {
        self.frame().token
    }

    fn frame(&self) -> &Frame {
        // The body's frame is pushed by `new` and never popped, so the stack is never empty.
        &self.stack[self.stack.len() - 1]
    }

    fn frame_mut(&mut self) -> &mut Frame {
        let i = self.stack.len() - 1;
        &mut self.stack[i]
    }

    /// Whether `v` is visible from the current block: defined in it or in a block that
    /// encloses it. (Definitions are appended in order, so "before" holds by construction.)
    fn in_scope(&self, v: ValueId) -> bool {
        if v.index() >= self.g.value_count() {
            return false;
        }
        let def_block = match self.g.value(v).def {
            ValueDef::Arg { block, .. } => block,
            ValueDef::Result { node, .. } => self.g.node(node).block,
        };
        self.stack.iter().any(|f| f.block == def_block)
    }

    fn check_operands(&self, op: &'static str, args: &[ValueId], first: usize) -> R<()> {
        for (i, &v) in args.iter().enumerate() {
            if !self.in_scope(v) {
                return Err(BuildError::OutOfScope {
                    op,
                    index: first + i,
                    span: self.span,
                });
            }
        }
        Ok(())
    }

    fn tensor(&self, op: &'static str, index: usize, v: ValueId) -> R<TensorType> {
        match self.g.ty(v) {
            Type::Tensor(t) => Ok(t.clone()),
            Type::Token => Err(BuildError::Operand {
                op,
                index,
                expected: "a tensor",
                found: Type::Token,
                span: self.span,
            }),
        }
    }

    /// The types of the tensor operands of a node with a closed region (`fused`, `call`),
    /// which become its region's arguments; each must be in scope and a tensor.
    fn closed_operands(&self, op: &'static str, inputs: &[ValueId]) -> R<Vec<Type>> {
        self.check_operands(op, inputs, 0)?;
        inputs
            .iter()
            .enumerate()
            .map(|(i, &v)| self.tensor(op, i, v).map(Type::Tensor))
            .collect()
    }

    fn push_node(&mut self, kind: NodeKind, operands: Vec<ValueId>) -> NodeId {
        let block = self.frame().block;
        self.g.add_node(block, kind, operands, self.span)
    }

    /// Adds a primitive. An effectful one (`print`, `random`) consumes the current token
    /// and replaces it; its value result is returned.
    pub fn op(&mut self, op: &Op, args: &[ValueId]) -> R<ValueId> {
        let name = op.name();
        self.check_operands(name, args, 0)?;
        let types = args
            .iter()
            .enumerate()
            .map(|(i, &v)| self.tensor(name, i, v))
            .collect::<R<Vec<_>>>()?;
        let out = infer(op, &types).map_err(|error| BuildError::Infer {
            error: Box::new(error),
            span: self.span,
        })?;
        if is_effectful(op.prim()) {
            let Some(token) = self.frame().token else {
                return Err(BuildError::NoToken {
                    op: name,
                    span: self.span,
                });
            };
            let mut operands = vec![token];
            operands.extend_from_slice(args);
            let n = self.push_node(NodeKind::Prim(op.clone()), operands);
            let t = self.g.add_result(n, Type::Token);
            self.frame_mut().token = Some(t);
            Ok(self.g.add_result(n, Type::Tensor(out)))
        } else {
            let n = self.push_node(NodeKind::Prim(op.clone()), args.to_vec());
            Ok(self.g.add_result(n, Type::Tensor(out)))
        }
    }

    /// Adds a collective of a partitioned graph: `x` becomes a value of type `out` on each
    /// device (for a gather or a shard, `out` is this device's size).
    pub fn collective(&mut self, c: Collective, x: ValueId, out: TensorType) -> R<ValueId> {
        self.check_operands(c.name(), &[x], 0)?;
        let input = self.tensor(c.name(), 0, x)?;
        crate::parallel::check_type(&c, &input, &out).map_err(|message| {
            BuildError::Collective {
                message,
                span: self.span,
            }
        })?;
        let n = self.push_node(NodeKind::Collective(c), vec![x]);
        Ok(self.g.add_result(n, Type::Tensor(out)))
    }

    /// Shows `x` at run time, in order with the other effects; gives `x` back.
    pub fn print(&mut self, x: ValueId) -> R<ValueId> {
        self.op(&Op::Print {}, &[x])
    }

    /// Draws random numbers with `key` (`i64[2]`: seed and offset), in effect order.
    pub fn random(&mut self, op: RandomOp, key: ValueId, shape: Shape, dtype: DType) -> R<ValueId> {
        self.op(&Op::Random { op, shape, dtype }, &[key])
    }

    /// Fails the run with `message` unless `cond` (`bool[]`) is true, in effect order.
    pub fn assert(&mut self, cond: ValueId, message: &str) -> R<()> {
        self.check_operands("assert", &[cond], 1)?;
        self.expect_flag("assert", 1, cond)?;
        let Some(token) = self.frame().token else {
            return Err(BuildError::NoToken {
                op: "assert",
                span: self.span,
            });
        };
        let n = self.push_node(
            NodeKind::Assert {
                message: message.to_string(),
            },
            vec![token, cond],
        );
        let t = self.g.add_result(n, Type::Token);
        self.frame_mut().token = Some(t);
        Ok(())
    }

    fn expect_flag(&self, op: &'static str, index: usize, v: ValueId) -> R<()> {
        let flag = Type::Tensor(TensorType::new(DType::Bool, Shape::scalar()));
        let found = self.g.ty(v);
        if *found != flag {
            return Err(BuildError::Operand {
                op,
                index,
                expected: "a bool[] condition",
                found: found.clone(),
                span: self.span,
            });
        }
        Ok(())
    }

    /// Opens `block` (with `lead` leading arguments, then the token if `token`, then one
    /// argument per type of `carried`), runs `fill` in it and closes it. Gives what `fill`
    /// returned and the final token.
    fn region<T>(
        &mut self,
        block: BlockId,
        lead: &[Type],
        token: bool,
        carried: &[Type],
        fill: impl FnOnce(&mut Self, &[ValueId], &[ValueId]) -> R<T>,
    ) -> R<(T, Option<ValueId>)> {
        let lead: Vec<ValueId> = lead
            .iter()
            .map(|t| self.g.add_arg(block, t.clone()))
            .collect();
        let tok = token.then(|| self.g.add_arg(block, Type::Token));
        let args: Vec<ValueId> = carried
            .iter()
            .map(|t| self.g.add_arg(block, t.clone()))
            .collect();
        self.stack.push(Frame { block, token: tok });
        let out = fill(self, &lead, &args);
        let frame = self.stack.pop();
        Ok((out?, frame.and_then(|f| f.token)))
    }

    /// Checks that `found` yields the `expected` types, sets the block's yields (the token
    /// first) and restores the span.
    fn close(
        &mut self,
        op: &'static str,
        region: &'static str,
        block: BlockId,
        token: Option<ValueId>,
        yields: Vec<ValueId>,
        expected: &[Type],
    ) -> R<()> {
        let found: Vec<Type> = yields.iter().map(|&v| self.g.ty(v).clone()).collect();
        if found != expected {
            return Err(BuildError::Yield {
                op,
                region,
                expected: expected.to_vec(),
                found,
                span: self.span,
            });
        }
        let mut all: Vec<ValueId> = token.into_iter().collect();
        all.extend(yields);
        self.g.block_mut(block).yields = all;
        Ok(())
    }

    /// Checks the values a region yields are visible inside it.
    fn check_yields(&mut self, op: &'static str, block: BlockId, yields: &[ValueId]) -> R<()> {
        self.stack.push(Frame { block, token: None });
        let r = self.check_operands(op, yields, 0);
        self.stack.pop();
        r
    }

    /// Adds the results of a control-flow node (the token first when it threads one) and
    /// takes the token result as the block's current token. Gives the other results.
    fn results(&mut self, n: NodeId, token: bool, types: &[Type]) -> Vec<ValueId> {
        if token {
            let t = self.g.add_result(n, Type::Token);
            self.frame_mut().token = Some(t);
        }
        types
            .iter()
            .map(|t| self.g.add_result(n, t.clone()))
            .collect()
    }

    /// `if cond { then } else { else }`. `args` are passed to both regions as their block
    /// arguments (values of enclosing blocks may also be used directly); each closure
    /// gets them and returns what its region yields. Gives the node's results.
    pub fn if_(
        &mut self,
        cond: ValueId,
        args: &[ValueId],
        then_f: impl FnOnce(&mut Self, &[ValueId]) -> R<Vec<ValueId>>,
        else_f: impl FnOnce(&mut Self, &[ValueId]) -> R<Vec<ValueId>>,
    ) -> R<Vec<ValueId>> {
        self.check_operands("if", &[cond], 0)?;
        self.check_operands("if", args, 1)?;
        self.expect_flag("if", 0, cond)?;
        let span = self.span;
        let tok = self.frame().token;
        let mut operands = vec![cond];
        operands.extend(tok);
        operands.extend_from_slice(args);
        let types: Vec<Type> = args.iter().map(|&v| self.g.ty(v).clone()).collect();
        let n = self.push_node(
            NodeKind::If {
                then_block: BlockId(0),
                else_block: BlockId(0),
            },
            operands,
        );
        let (tb, eb) = (self.g.add_block(Some(n)), self.g.add_block(Some(n)));
        self.g.node_mut(n).kind = NodeKind::If {
            then_block: tb,
            else_block: eb,
        };
        let (ty, tt) = self.region(tb, &[], tok.is_some(), &types, |b, _, a| then_f(b, a))?;
        self.check_yields("if", tb, &ty)?;
        let out: Vec<Type> = ty.iter().map(|&v| self.g.ty(v).clone()).collect();
        self.span = span;
        self.close("if", "then", tb, tt, ty, &out)?;
        let (ey, et) = self.region(eb, &[], tok.is_some(), &types, |b, _, a| else_f(b, a))?;
        self.check_yields("if", eb, &ey)?;
        self.span = span;
        self.close("if", "else", eb, et, ey, &out)?;
        Ok(self.results(n, tok.is_some(), &out))
    }

    /// `while cond(carried) { carried = body(carried) }`, starting from `init`. `cond_f`
    /// returns the `bool[]` flag; `body_f` returns the next carried values. Gives the
    /// final carried values.
    pub fn while_(
        &mut self,
        init: &[ValueId],
        cond_f: impl FnOnce(&mut Self, &[ValueId]) -> R<ValueId>,
        body_f: impl FnOnce(&mut Self, &[ValueId]) -> R<Vec<ValueId>>,
    ) -> R<Vec<ValueId>> {
        self.check_operands("while", init, 0)?;
        let span = self.span;
        let tok = self.frame().token;
        let mut operands: Vec<ValueId> = tok.into_iter().collect();
        operands.extend_from_slice(init);
        let types: Vec<Type> = init.iter().map(|&v| self.g.ty(v).clone()).collect();
        let n = self.push_node(
            NodeKind::While {
                cond: BlockId(0),
                body: BlockId(0),
            },
            operands,
        );
        let (cb, bb) = (self.g.add_block(Some(n)), self.g.add_block(Some(n)));
        self.g.node_mut(n).kind = NodeKind::While { cond: cb, body: bb };
        let ((flag, args), ct) = self.region(cb, &[], tok.is_some(), &types, |b, _, a| {
            Ok((cond_f(b, a)?, a.to_vec()))
        })?;
        self.check_yields("while", cb, &[flag])?;
        self.span = span;
        self.expect_flag("while", 0, flag)?;
        let mut cy = vec![flag];
        cy.extend(ct);
        cy.extend(args);
        self.g.block_mut(cb).yields = cy;
        let (by, bt) = self.region(bb, &[], tok.is_some(), &types, |b, _, a| body_f(b, a))?;
        self.check_yields("while", bb, &by)?;
        self.span = span;
        self.close("while", "body", bb, bt, by, &types)?;
        Ok(self.results(n, tok.is_some(), &types))
    }

    /// `for i in range(start, stop, step) { carried = body(i, carried) }`, starting from
    /// `init`. The bounds are scalars of one integer dtype. Gives the final carried values.
    pub fn for_(
        &mut self,
        start: ValueId,
        stop: ValueId,
        step: ValueId,
        init: &[ValueId],
        body_f: impl FnOnce(&mut Self, ValueId, &[ValueId]) -> R<Vec<ValueId>>,
    ) -> R<Vec<ValueId>> {
        self.check_operands("for", &[start, stop, step], 0)?;
        self.check_operands("for", init, 3)?;
        let bound = self.g.ty(start).clone();
        for (i, &v) in [start, stop, step].iter().enumerate() {
            let t = self.g.ty(v);
            let ok = matches!(t, Type::Tensor(tt) if tt.dtype.is_int() && tt.rank() == 0);
            if !ok || *t != bound {
                return Err(BuildError::Operand {
                    op: "for",
                    index: i,
                    expected: "an integer scalar (the three bounds share one dtype)",
                    found: t.clone(),
                    span: self.span,
                });
            }
        }
        let span = self.span;
        let tok = self.frame().token;
        let mut operands = vec![start, stop, step];
        operands.extend(tok);
        operands.extend_from_slice(init);
        let types: Vec<Type> = init.iter().map(|&v| self.g.ty(v).clone()).collect();
        let n = self.push_node(NodeKind::For { body: BlockId(0) }, operands);
        let bb = self.g.add_block(Some(n));
        self.g.node_mut(n).kind = NodeKind::For { body: bb };
        let (by, bt) = self.region(bb, &[bound], tok.is_some(), &types, |b, lead, a| {
            body_f(b, lead[0], a)
        })?;
        self.check_yields("for", bb, &by)?;
        self.span = span;
        self.close("for", "body", bb, bt, by, &types)?;
        Ok(self.results(n, tok.is_some(), &types))
    }

    /// A fused group over `inputs`: `body_f` gets the region's arguments (one per input,
    /// of its type) and returns what the group gives. The region has no token, so an effect
    /// inside it fails to build; it should use only its arguments (a fused region is
    /// closed, which [`verify`](super::verify()) checks). Gives the node's results.
    pub fn fused(
        &mut self,
        inputs: &[ValueId],
        body_f: impl FnOnce(&mut Self, &[ValueId]) -> R<Vec<ValueId>>,
    ) -> R<Vec<ValueId>> {
        let types = self.closed_operands("fused", inputs)?;
        let make = |body| NodeKind::Fused { body };
        self.closed_node("fused", make, inputs.to_vec(), &types, false, body_f)
    }

    /// A call of the graph `callee` on `inputs`: `body_f` fills the closed region with its
    /// body, getting one argument per input, and returns what it yields. With `effects`
    /// the current token is passed in (the region's own token is threaded inside and
    /// yielded first) and the node's token result becomes the current one; a call without
    /// effects has no token, so an effect inside it fails to build. Gives the node's
    /// results.
    pub fn call(
        &mut self,
        callee: &str,
        inputs: &[ValueId],
        effects: bool,
        body_f: impl FnOnce(&mut Self, &[ValueId]) -> R<Vec<ValueId>>,
    ) -> R<Vec<ValueId>> {
        let types = self.closed_operands("call", inputs)?;
        let mut operands = Vec::with_capacity(inputs.len() + 1);
        if effects {
            let token = self.frame().token.ok_or(BuildError::NoToken {
                op: "call",
                span: self.span,
            })?;
            operands.push(token);
        }
        operands.extend_from_slice(inputs);
        let make = |body| NodeKind::Call {
            callee: callee.to_string(),
            body,
        };
        self.closed_node("call", make, operands, &types, effects, body_f)
    }

    /// Adds a node with one closed region (`fused`, `call`): `make` gives its kind for a
    /// body block; the region takes the token first when `token`, then one argument per
    /// type of `types`, and its yields are the node's results (the token first).
    fn closed_node(
        &mut self,
        op: &'static str,
        make: impl Fn(BlockId) -> NodeKind,
        operands: Vec<ValueId>,
        types: &[Type],
        token: bool,
        body_f: impl FnOnce(&mut Self, &[ValueId]) -> R<Vec<ValueId>>,
    ) -> R<Vec<ValueId>> {
        let span = self.span;
        let n = self.push_node(make(BlockId(0)), operands);
        let bb = self.g.add_block(Some(n));
        self.g.node_mut(n).kind = make(bb);
        let (ys, bt) = self.region(bb, &[], token, types, |b, _, a| body_f(b, a))?;
        self.check_yields(op, bb, &ys)?;
        let out: Vec<Type> = ys.iter().map(|&v| self.g.ty(v).clone()).collect();
        self.span = span;
        self.close(op, "body", bb, bt, ys, &out)?;
        Ok(self.results(n, token, &out))
    }

    /// Ends the graph with `outputs` (after the body's final token, if it has one).
    pub fn finish(mut self, outputs: &[ValueId]) -> R<Graph> {
        if self.stack.len() != 1 {
            return Err(BuildError::Unfinished);
        }
        self.check_operands("yield", outputs, 0)?;
        let body = self.g.body();
        let mut all: Vec<ValueId> = self.stack[0].token.into_iter().collect();
        all.extend_from_slice(outputs);
        self.g.block_mut(body).yields = all;
        Ok(self.g)
    }
}

/// The builder is an [`Emit`] over graph values, so every differentiation rule written
/// against `Emit` emits IR unchanged. An effectful op threads the current token.
///
/// `Emit::ttype` must give a tensor type; for the token (which no rule is ever handed) it
/// gives `bool[]`, and `emit` refuses the token as an operand.
impl Emit for GraphBuilder {
    type Val = ValueId;
    type Err = BuildError;

    fn emit(&mut self, op: &Op, args: &[&ValueId]) -> R<ValueId> {
        let args: Vec<ValueId> = args.iter().map(|&&v| v).collect();
        self.op(op, &args)
    }

    fn ttype(&self, v: &ValueId) -> TensorType {
        match self.g.ty(*v) {
            Type::Tensor(t) => t.clone(),
            Type::Token => TensorType::new(DType::Bool, Shape::scalar()),
        }
    }
}

impl fmt::Display for GraphBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.g)
    }
}
