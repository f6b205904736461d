//! The optimizer's pipeline as a setting of the session.
//!
//! Staged functions run their graph after a list of passes: `ir::passes::PIPELINE` unless
//! the session was given another list (`Session::set_passes`), which is how the per-pass
//! differential tests run the corpus with no passes, with one pass left out, or with the
//! passes in a random order. A test can also put a transformation of its own into the
//! list (`Session::insert_test_pass`): a deliberately wrong pass is how the tests of
//! `ms run --check-modes` prove that its bisection names the pass to blame, since every
//! real pass is exact.

use std::fmt;
use std::sync::Arc;

use ir::passes::Pass;

/// A graph transformation given by a test: the graph after it, or why it failed.
pub(crate) type TestPass = Arc<dyn Fn(&ir::Graph) -> Result<ir::Graph, String> + Send + Sync>;

/// One step of a pipeline.
#[derive(Clone)]
pub(crate) enum Step {
    /// A pass of the optimizer.
    Pass(Pass),
    /// A transformation a test put in, with the name reports give it.
    Test(Arc<str>, TestPass),
}

impl Step {
    /// The step's name, as reports write it (`fold`, `cse`, a test's own name).
    pub fn name(&self) -> &str {
        match self {
            Step::Pass(p) => p.name(),
            Step::Test(name, _) => name,
        }
    }

    /// `g` after this step; with `check`, the result is verified too. An error says which
    /// step failed and why.
    pub fn run(&self, g: &ir::Graph, check: bool) -> Result<ir::Graph, String> {
        let out = match self {
            Step::Pass(p) => p.run(g).map_err(|e| e.to_string())?,
            Step::Test(name, f) => {
                f(g).map_err(|e| format!("the test pass `{name}` failed: {e}"))?
            }
        };
        if check && let Err(e) = ir::verify(&out) {
            return Err(format!("the pass `{}` broke the graph: {e}", self.name()));
        }
        Ok(out)
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The passes staged graphs go through, in order.
#[derive(Clone, Debug)]
pub(crate) struct Pipeline {
    pub steps: Vec<Step>,
}

impl Default for Pipeline {
    fn default() -> Pipeline {
        Pipeline::of(ir::passes::PIPELINE)
    }
}

impl Pipeline {
    /// The pipeline of these passes, in order.
    pub fn of(passes: &[Pass]) -> Pipeline {
        Pipeline {
            steps: passes.iter().copied().map(Step::Pass).collect(),
        }
    }

    /// `g` after every step in order; with `check` (debug builds and tests), each result
    /// is verified, as `ir::passes::optimize` does.
    pub fn optimize(&self, g: &ir::Graph, check: bool) -> Result<ir::Graph, String> {
        let mut g = g.clone();
        for step in &self.steps {
            g = step.run(&g, check)?;
        }
        Ok(g)
    }

    /// The names of the steps, in order.
    pub fn names(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.name().to_string()).collect()
    }
}
