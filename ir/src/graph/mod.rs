//! The graph IR: typed SSA in an arena, with structured control flow and an effect token.
//!
//! A [`Graph`] is what staging produces and what IR autodiff, the passes and the graph
//! executor consume. It is first-order (closures and higher-order functions are specialized
//! away before a graph exists) and every value has a static type.
//!
//! - **Values** ([`ValueId`]) are defined exactly once, either as an argument of a block or
//!   as a result of a node, and have a [`Type`]: a [`TensorType`] or the effect [`Type::Token`].
//! - **Nodes** ([`NodeId`]) apply a primitive ([`NodeKind::Prim`] with an [`Op`]), check an
//!   assertion ([`NodeKind::Assert`]), or run structured control flow ([`NodeKind::If`],
//!   [`NodeKind::While`], [`NodeKind::For`]) whose regions are blocks. Every node keeps the
//!   source [`Span`] it was staged from.
//! - **Blocks** ([`BlockId`]) hold arguments, nodes in order and a terminator that yields
//!   values. A region is exactly one block, as in MLIR's `scf` dialect; the graph's own body
//!   is a block whose arguments are the graph's inputs and whose yield is its outputs. A
//!   region may use values of the blocks that enclose it (defined before the node that owns
//!   the region); nothing defined inside a region is visible outside it except through the
//!   node's results.
//!
//! Control flow, with `T...` the carried (or passed) values:
//!
//! - `If`: operands `(cond: bool[], T...)`; the `then` and `else` blocks take `T...` as
//!   arguments and yield the node's result types.
//! - `While`: operands `T...` (initial carried values); the `cond` block takes `T...` and
//!   yields `(bool[], T...)` — the flag and the values passed on to the body (or out, when
//!   the flag is false); the `body` block takes `T...` and yields `T...`; the results are
//!   the final `T...`.
//! - `For`: operands `(start, stop, step, T...)`, the three bounds scalars of one integer
//!   dtype; the `body` block takes `(i, T...)` with `i` the induction variable (of the
//!   bounds' type) and yields `T...`; the results are the final `T...`. It runs
//!   `i = start, start + step, ...` while `i < stop` (`i > stop` for a negative step).
//! - `Fused`: operands `T...` (tensors); the `body` block takes `T...`, holds only pure
//!   primitives and yields the node's results. Unlike the other regions it is *closed*: it
//!   uses nothing but its own arguments, so a device can compile it on its own (one CPU
//!   loop over tiles, one generated GPU kernel). The fusion pass (`passes::fuse`) makes
//!   these; running the body node by node is always a correct way to execute one.
//! - `Call`: operands `(token?, T...)`; the `body` block takes them and yields the token
//!   (when it is passed) and the node's results. It is closed like a fused region, but may
//!   hold anything a graph body may: it is the body of a graph staged on its own, which
//!   staging calls instead of copying it in (a model's forward, a derivative differentiated
//!   apart from its caller), so the staged IR reads as the program was written. The first
//!   pass of the pipeline (`passes::inline`) splices every call into its caller, after
//!   which the other passes see across the boundary; a graph run without passes runs the
//!   call as a region.
//!
//! **The effect token.** `print`, random draws and assertions must happen in program order
//! on every run, although nothing else depends on them. They take a value of type
//! [`Type::Token`] as their first operand and give a new one as their first result, so
//! their order is an ordinary data dependence that any pass respects. A graph with effects
//! takes the token as an input and returns the last one as an output (the staged function's
//! caller owns the world before and after); a pure graph has no token at all. The token is
//! *linear*: every token value is used exactly once, in the block that defines it, so
//! control flow that performs effects carries the token explicitly (an `If` passes it as an
//! operand to its regions, loops carry it) and no effect can be dropped or duplicated.
//! [`GraphBuilder`] threads it automatically.
//!
//! The text form ([`print()`], [`parse()`]) and the verifier ([`verify()`]) live in their own
//! files; see ARCHITECTURE.md for the grammar.

mod builder;
mod eq;
mod generalize;
mod inline;
mod parse;
mod print;
mod verify;

pub use builder::{BuildError, GraphBuilder};

use crate::parallel::Collective;
pub use generalize::{SymSize, generalize};
pub(crate) use inline::{Rewrite, rewrite};
pub use inline::{call, inline, splice_calls, with_outputs};
pub use parse::{ParseError, parse};
pub(crate) use print::value_name;
pub use print::{PrintOptions, numbering, print};
pub use verify::{VerifyError, VerifyErrorKind, verify};

use std::fmt;
use std::ops::Range;

use crate::{Op, Prim, TensorType};

/// Declares an index newtype into one of the graph's arenas.
macro_rules! arena_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u32);

        impl $name {
            /// The position in the graph's arena.
            pub fn index(self) -> usize {
                self.0 as usize
            }

            /// The id at position `i` of the arena (saturating at `u32::MAX`, which no
            /// arena reaches). An id names a value only of the graph it came from; the
            /// builder and the verifier refuse one out of range.
            pub fn from_index(i: usize) -> $name {
                $name(u32::try_from(i).unwrap_or(u32::MAX))
            }
        }
    };
}

arena_id!(
    /// A value of a [`Graph`]: a block argument or a node result.
    ValueId
);
arena_id!(
    /// A node of a [`Graph`].
    NodeId
);
arena_id!(
    /// A block of a [`Graph`]; a region is one block.
    BlockId
);

/// Where a node came from in the source: bytes `start..end` of source number `src`.
///
/// `ir` does not depend on `lang`, so it keeps its own span. Staging converts a
/// `lang::Span` (a byte range into one text) with [`Span::from_range`], giving the number
/// under which the session registered that text; `Span::default()` is "no source" (nodes
/// parsed from text without `@` annotations, or made by tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    /// Which source text (the session's numbering).
    pub src: u32,
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The span `start..end` of source `src`.
    pub fn new(src: u32, start: u32, end: u32) -> Span {
        Span { src, start, end }
    }

    /// The span of a byte range of source `src` (offsets past `u32::MAX` saturate; no
    /// source file is that large).
    pub fn from_range(src: u32, range: Range<usize>) -> Span {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Span::new(src, clamp(range.start), clamp(range.end))
    }

    /// The byte range, for slicing the source.
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}:{}..{}", self.src, self.start, self.end)
    }
}

/// The type of a value: a tensor, or the effect token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// A tensor of this dtype and shape.
    Tensor(TensorType),
    /// The effect token (see the module doc); written `token`.
    Token,
}

impl Type {
    /// The tensor type, unless this is the token.
    pub fn tensor(&self) -> Option<&TensorType> {
        match self {
            Type::Tensor(t) => Some(t),
            Type::Token => None,
        }
    }

    /// True for the effect token.
    pub fn is_token(&self) -> bool {
        matches!(self, Type::Token)
    }
}

impl From<TensorType> for Type {
    fn from(t: TensorType) -> Type {
        Type::Tensor(t)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Tensor(t) => write!(f, "{t}"),
            Type::Token => f.write_str("token"),
        }
    }
}

/// Where a value is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueDef {
    /// Argument `index` of `block`.
    Arg {
        /// The block.
        block: BlockId,
        /// Position among its arguments.
        index: usize,
    },
    /// Result `index` of `node`.
    Result {
        /// The node.
        node: NodeId,
        /// Position among its results.
        index: usize,
    },
}

/// A value: its type and where it is defined.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Its type.
    pub ty: Type,
    /// Its (first) definition. The verifier checks it is the only one.
    pub def: ValueDef,
}

/// What a node does.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// Applies a primitive. The effectful ones ([`is_effectful`]: `print`, random draws)
    /// take the token first and give a new token as their first result.
    Prim(Op),
    /// Fails the run with `message` unless the operand `cond: bool[]` is true. Operands
    /// `(token, cond)`; result: the new token.
    Assert {
        /// Shown when the assertion fails.
        message: String,
    },
    /// Runs `then_block` or `else_block` by a scalar condition (see the module doc).
    If {
        /// Runs when the condition is true.
        then_block: BlockId,
        /// Runs when it is false.
        else_block: BlockId,
    },
    /// Runs `body` while `cond` yields true (see the module doc).
    While {
        /// Computes the flag from the carried values.
        cond: BlockId,
        /// Computes the next carried values.
        body: BlockId,
    },
    /// Runs `body` over a counted range (see the module doc).
    For {
        /// Takes the induction variable and the carried values.
        body: BlockId,
    },
    /// A fused group: `body` computes the node's results from its operands in one pass over
    /// memory (see the module doc). Only the fusion pass makes these.
    Fused {
        /// Takes the operands, holds pure primitives only, yields the results.
        body: BlockId,
    },
    /// A call of a graph staged on its own (a model's forward, a derivative staged and
    /// differentiated apart from its caller): `body` is a copy of that graph's body, a
    /// closed region (see the module doc). The inlining pass (`passes::inline`) splices it
    /// into the calling block; the executor runs it as a region.
    Call {
        /// The called graph's name, for reading the IR.
        callee: String,
        /// Takes the operands, yields the results.
        body: BlockId,
    },
    /// Communication between the devices of a mesh, in a partitioned graph that runs once
    /// per device (see [`crate::parallel`]). One operand, one result whose type the node
    /// fixes (a gather's or shard's size depends on the mesh and the device).
    Collective(Collective),
}

impl NodeKind {
    /// The regions of the node, in order (`then`, `else`; `cond`, `body`; `body`; `body`).
    pub fn regions(&self) -> Vec<BlockId> {
        match self {
            NodeKind::Prim(_) | NodeKind::Assert { .. } | NodeKind::Collective(_) => Vec::new(),
            NodeKind::If {
                then_block,
                else_block,
            } => vec![*then_block, *else_block],
            NodeKind::While { cond, body } => vec![*cond, *body],
            NodeKind::For { body } | NodeKind::Fused { body } | NodeKind::Call { body, .. } => {
                vec![*body]
            }
        }
    }

    /// The node's keyword in the text form (`matmul`, `assert`, `if`, `while`, `for`,
    /// `fused`, `call`).
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::Prim(op) => op.name(),
            NodeKind::Assert { .. } => "assert",
            NodeKind::If { .. } => "if",
            NodeKind::While { .. } => "while",
            NodeKind::For { .. } => "for",
            NodeKind::Fused { .. } => "fused",
            NodeKind::Call { .. } => "call",
            NodeKind::Collective(c) => c.name(),
        }
    }
}

/// Whether a primitive is an effect ordered by the token (`print` and random draws).
pub fn is_effectful(prim: Prim) -> bool {
    match prim {
        Prim::Print | Prim::Random(_) => true,
        Prim::Unary(_)
        | Prim::Binary(_)
        | Prim::Compare(_)
        | Prim::Select
        | Prim::Reduce(_)
        | Prim::ArgReduce(_)
        | Prim::MatMul
        | Prim::Reshape
        | Prim::Transpose
        | Prim::Broadcast
        | Prim::Slice
        | Prim::Concat
        | Prim::Pad
        | Prim::Gather
        | Prim::ScatterAdd
        | Prim::Conv2d
        | Prim::Conv2dBackwardInput
        | Prim::Conv2dBackwardFilter
        | Prim::Pool2d(_)
        | Prim::Pool2dBackward(_)
        | Prim::Cast
        | Prim::Iota
        | Prim::Full
        | Prim::StopGradient => false,
    }
}

/// A node: what it does, its operands and results, and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What it does.
    pub kind: NodeKind,
    /// The values it reads, in order.
    pub operands: Vec<ValueId>,
    /// The values it defines, in order.
    pub results: Vec<ValueId>,
    /// The source it was staged from.
    pub span: Span,
    /// The block it belongs to.
    pub block: BlockId,
}

/// A block: arguments, nodes in execution order, and the values its terminator yields.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Block {
    /// Its arguments (the graph's inputs, for the body).
    pub args: Vec<ValueId>,
    /// Its nodes, in order.
    pub nodes: Vec<NodeId>,
    /// What its `yield` returns (the graph's outputs, for the body).
    pub yields: Vec<ValueId>,
    /// The node whose region it is; `None` for the graph's body.
    pub parent: Option<NodeId>,
}

/// A staged function: a name and a body block in arenas of values, nodes and blocks.
///
/// `==` is *structural*: two graphs are equal when they have the same name and their
/// bodies match node for node (kinds, attributes, types, spans, and the same uses up to a
/// renaming of values), whatever the arena order. A float attribute compares by its bits,
/// so a NaN fill equals itself.
#[derive(Clone, Debug)]
pub struct Graph {
    name: String,
    values: Vec<Value>,
    nodes: Vec<Node>,
    blocks: Vec<Block>,
    body: BlockId,
}

impl Graph {
    /// An empty graph named `name`: a body with no arguments, nodes or outputs.
    pub(crate) fn empty(name: &str) -> Graph {
        Graph {
            name: name.to_string(),
            values: Vec::new(),
            nodes: Vec::new(),
            blocks: vec![Block::default()],
            body: BlockId(0),
        }
    }

    /// The staged function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The body block.
    pub fn body(&self) -> BlockId {
        self.body
    }

    /// The inputs: the body's arguments.
    pub fn inputs(&self) -> &[ValueId] {
        &self.blocks[self.body.index()].args
    }

    /// The outputs: what the body yields.
    pub fn outputs(&self) -> &[ValueId] {
        &self.blocks[self.body.index()].yields
    }

    /// A value's type and definition.
    pub fn value(&self, v: ValueId) -> &Value {
        &self.values[v.index()]
    }

    /// A value's type.
    pub fn ty(&self, v: ValueId) -> &Type {
        &self.values[v.index()].ty
    }

    /// A node.
    pub fn node(&self, n: NodeId) -> &Node {
        &self.nodes[n.index()]
    }

    /// A block.
    pub fn block(&self, b: BlockId) -> &Block {
        &self.blocks[b.index()]
    }

    /// Number of values in the arena.
    pub fn value_count(&self) -> usize {
        self.values.len()
    }

    /// Number of nodes in the arena (in every block).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of blocks in the arena (the body and every region).
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Every value node `n` reads: its operands, then what its regions read at any depth
    /// (their nodes' operands and their yields), since a use inside a region is a use by
    /// the node that owns the region. Values may repeat.
    pub fn reads(&self, n: NodeId) -> Vec<ValueId> {
        let node = &self.nodes[n.index()];
        let mut out = node.operands.clone();
        for r in node.kind.regions() {
            self.region_reads(r, &mut out);
        }
        out
    }

    fn region_reads(&self, region: BlockId, out: &mut Vec<ValueId>) {
        let block = &self.blocks[region.index()];
        for &n in &block.nodes {
            let node = &self.nodes[n.index()];
            out.extend_from_slice(&node.operands);
            for r in node.kind.regions() {
                self.region_reads(r, out);
            }
        }
        out.extend_from_slice(&block.yields);
    }

    /// Every node of `block` and of the regions nested in it, in execution order (a
    /// control-flow node comes before the nodes of its regions).
    pub fn walk(&self, block: BlockId) -> Vec<NodeId> {
        let mut out = Vec::new();
        self.walk_into(block, &mut out);
        out
    }

    fn walk_into(&self, block: BlockId, out: &mut Vec<NodeId>) {
        for &n in &self.blocks[block.index()].nodes {
            out.push(n);
            for r in self.nodes[n.index()].kind.regions() {
                self.walk_into(r, out);
            }
        }
    }

    /// Adds a value defined by `def`.
    pub(crate) fn add_value(&mut self, ty: Type, def: ValueDef) -> ValueId {
        self.values.push(Value { ty, def });
        ValueId::from_index(self.values.len() - 1)
    }

    /// Adds an argument of type `ty` to `block`.
    pub(crate) fn add_arg(&mut self, block: BlockId, ty: Type) -> ValueId {
        let index = self.blocks[block.index()].args.len();
        let v = self.add_value(ty, ValueDef::Arg { block, index });
        self.blocks[block.index()].args.push(v);
        v
    }

    /// Adds an empty block owned by `parent`.
    pub(crate) fn add_block(&mut self, parent: Option<NodeId>) -> BlockId {
        self.blocks.push(Block {
            parent,
            ..Block::default()
        });
        BlockId::from_index(self.blocks.len() - 1)
    }

    /// Appends a node with no results yet to `block`.
    pub(crate) fn add_node(
        &mut self,
        block: BlockId,
        kind: NodeKind,
        operands: Vec<ValueId>,
        span: Span,
    ) -> NodeId {
        self.nodes.push(Node {
            kind,
            operands,
            results: Vec::new(),
            span,
            block,
        });
        let n = NodeId::from_index(self.nodes.len() - 1);
        self.blocks[block.index()].nodes.push(n);
        n
    }

    /// Adds a result of type `ty` to `node`.
    pub(crate) fn add_result(&mut self, node: NodeId, ty: Type) -> ValueId {
        let index = self.nodes[node.index()].results.len();
        let v = self.add_value(ty, ValueDef::Result { node, index });
        self.nodes[node.index()].results.push(v);
        v
    }

    /// Mutable access for the builder and the parser.
    pub(crate) fn node_mut(&mut self, n: NodeId) -> &mut Node {
        &mut self.nodes[n.index()]
    }

    /// Mutable access for the builder and the parser.
    pub(crate) fn block_mut(&mut self, b: BlockId) -> &mut Block {
        &mut self.blocks[b.index()]
    }

    /// Mutable access for the parser.
    pub(crate) fn value_mut(&mut self, v: ValueId) -> &mut Value {
        &mut self.values[v.index()]
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&print(self, PrintOptions::default()))
    }
}
