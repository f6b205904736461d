//! The optimizer's passes over staged graphs, one file each, and the pipeline that runs
//! them.
//!
//! A pass takes a graph and gives an equivalent one: the same inputs and outputs, the same
//! effects in the same order, the same values (bit for bit: a pass never reassociates
//! arithmetic). Every pass rewrites by copying the graph through a [`GraphBuilder`]
//! (`graph::rewrite`), so each node it keeps is type-checked again; the pipeline verifies
//! the result after each pass in debug builds and tests.
//!
//! The pipeline is data ([`PIPELINE`]): a list of [`Pass`]es, run in order by
//! [`optimize`].
//!
//! [`memory`] is the one file here that is not a pass: memory planning (liveness, and which
//! results may be written into a dying operand's buffer) is an analysis of the graph that
//! runs, which the executor reads; its module doc says why.
//!
//! [`GraphBuilder`]: crate::GraphBuilder

mod cse;
mod dce;
mod fold;
mod fuse;
mod inline;
pub mod memory;
mod simplify;

pub use fuse::{flatten, is_flat};

/// `g` with every `call` node spliced into its caller: what IR autodiff, the partitioner
/// and the exporters, which work on one flat graph, do first.
pub fn inline_calls(g: &Graph) -> Result<Graph, PassError> {
    Pass::Inline.run(g)
}

use std::fmt;

use crate::Op;
use crate::graph::{BuildError, Graph, GraphBuilder, NodeKind, ValueDef, ValueId, VerifyError};

/// One pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pass {
    /// Inlining: every `call` node becomes a copy of its body in the calling block
    /// (`inline.rs`).
    Inline,
    /// Constant folding: arithmetic on constants becomes a constant (`fold.rs`).
    Fold,
    /// Algebraic simplification: `x * 1`, a transpose of a transpose, ... (`simplify.rs`).
    Simplify,
    /// Common-subexpression elimination: a pure primitive applied again to the same
    /// operands is the value computed first (`cse.rs`).
    Cse,
    /// Dead-code elimination: nodes whose results nothing reads, and that have no effect,
    /// are dropped (`dce.rs`).
    Dce,
    /// Elementwise fusion: chains and siblings of elementwise primitives of one shape become
    /// one `fused` node that a device runs in one pass over memory (`fuse.rs`).
    Fuse,
}

impl Pass {
    /// Every pass.
    pub const ALL: [Pass; 6] = [
        Pass::Inline,
        Pass::Fold,
        Pass::Simplify,
        Pass::Cse,
        Pass::Dce,
        Pass::Fuse,
    ];

    /// The pass's name, as `ms ir --stage opt` and the tests write it.
    pub fn name(self) -> &'static str {
        match self {
            Pass::Inline => "inline",
            Pass::Fold => "fold",
            Pass::Simplify => "simplify",
            Pass::Cse => "cse",
            Pass::Dce => "dce",
            Pass::Fuse => "fuse",
        }
    }

    /// The pass named `name`.
    pub fn from_name(name: &str) -> Option<Pass> {
        Pass::ALL.into_iter().find(|p| p.name() == name)
    }

    /// `g` after this pass.
    pub fn run(self, g: &Graph) -> Result<Graph, PassError> {
        let out = match self {
            Pass::Inline => inline::run(g),
            Pass::Fold => fold::run(g),
            Pass::Simplify => simplify::run(g),
            Pass::Cse => cse::run(g),
            Pass::Dce => dce::run(g),
            Pass::Fuse => fuse::run(g),
        };
        out.map_err(|e| PassError::Build(self, e))
    }
}

/// The passes staged graphs go through, in order: calls spliced in first (so that every
/// later pass sees across them), then constants folded (so that the identities see them),
/// then the identities, then duplicates merged, then what all of
/// that left unread removed; last the elementwise groups fused, and the scalar constants
/// that fusion copied into regions removed from outside.
pub const PIPELINE: &[Pass] = &[
    Pass::Inline,
    Pass::Fold,
    Pass::Simplify,
    Pass::Cse,
    Pass::Dce,
    Pass::Fuse,
    Pass::Dce,
];

/// Why a pass failed: its rewrite did not build, or its result does not verify. Either is
/// a bug in the pass.
#[derive(Debug, Clone, PartialEq)]
pub enum PassError {
    /// The rewritten graph could not be built.
    Build(Pass, BuildError),
    /// The rewritten graph breaks a rule of the IR.
    Verify(Pass, VerifyError),
}

impl fmt::Display for PassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassError::Build(p, e) => write!(f, "the pass `{}` built a bad graph: {e}", p.name()),
            PassError::Verify(p, e) => {
                write!(f, "the pass `{}` broke the graph: {e}", p.name())
            }
        }
    }
}

impl std::error::Error for PassError {}

/// `g` after each of `passes` in order; with `check` (debug builds and tests), each result
/// is verified.
pub fn optimize(g: &Graph, passes: &[Pass], check: bool) -> Result<Graph, PassError> {
    let mut g = g.clone();
    for &p in passes {
        g = p.run(&g)?;
        if check {
            crate::verify(&g).map_err(|e| PassError::Verify(p, e))?;
        }
    }
    Ok(g)
}

/// The primitive and operands of the node that defines `v` in the graph being built.
fn producer(b: &GraphBuilder, v: ValueId) -> Option<(&Op, Vec<ValueId>)> {
    let g = b.graph();
    let ValueDef::Result { node, .. } = g.value(v).def else {
        return None;
    };
    match &g.node(node).kind {
        NodeKind::Prim(op) => Some((op, g.node(node).operands.clone())),
        _ => None,
    }
}

/// The value of `v` when a `full` node defines it.
fn full_value(b: &GraphBuilder, v: ValueId) -> Option<f64> {
    match producer(b, v) {
        Some((Op::Full { value, .. }, _)) => Some(*value),
        _ => None,
    }
}
