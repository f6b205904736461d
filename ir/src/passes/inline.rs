//! Inlining: every `call` node is replaced by a copy of its region, in the calling block.
//!
//! Staging keeps a graph made elsewhere (a model's forward, a derivative staged and
//! differentiated on its own) as a `call`, so that the staged IR shows the program's
//! structure and a graph run without passes still runs it. The other passes see nothing
//! through a call's closed region: a constant passed in is not folded inside, a value
//! computed on both sides is not shared, an elementwise chain that crosses the boundary is
//! not fused. This pass, first in the pipeline, removes the boundary. It changes no
//! arithmetic, so it keeps values bit for bit: the copied nodes are the called ones, in
//! their order, and an effect inside a call takes its place in the caller's token chain
//! exactly where the call stood.

use crate::graph::{BuildError, Graph, splice_calls};

/// `g` with every call (at any depth, calls inside calls included) spliced in.
pub(super) fn run(g: &Graph) -> Result<Graph, BuildError> {
    Ok(splice_calls(g, &[])?.0)
}
