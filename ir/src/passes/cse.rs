//! Common-subexpression elimination.
//!
//! A pure primitive (not `print`, not a draw) applied to the same operands with the same
//! attributes as one before it, in the same block or an enclosing one, is replaced by that
//! earlier value. The copy keeps one table of what each block computed; a region starts a
//! new one on top of its enclosing blocks' tables and drops it when it ends, since what a
//! region computes is not visible after it. A fused region is closed, so its lookups stop
//! at its own table. Float attributes compare by their bits.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::Op;
use crate::graph::{BuildError, Graph, GraphBuilder, Rewrite, ValueId, is_effectful, rewrite};

/// `g` with repeated pure computations merged.
pub(super) fn run(g: &Graph) -> Result<Graph, BuildError> {
    rewrite(
        g,
        &Cse {
            scopes: RefCell::new(vec![HashMap::new()]),
            barriers: RefCell::new(Vec::new()),
        },
    )
}

struct Cse {
    /// Per open block, innermost last: a computation's key → its value.
    scopes: RefCell<Vec<HashMap<String, ValueId>>>,
    /// Per open fused region, innermost last: the index of the empty table that marks its
    /// start. Lookups do not go below the innermost one.
    barriers: RefCell<Vec<usize>>,
}

impl Rewrite for Cse {
    fn prim(
        &self,
        b: &mut GraphBuilder,
        op: &Op,
        args: &[ValueId],
    ) -> Result<Option<ValueId>, BuildError> {
        if is_effectful(op.prim()) {
            return Ok(None);
        }
        // `Op`'s debug form spells every attribute (floats exactly), so equal keys are equal
        // computations.
        let key = format!("{op:?} {args:?}");
        let floor = self.barriers.borrow().last().copied().unwrap_or(0);
        if let Some(v) = self.scopes.borrow()[floor..]
            .iter()
            .rev()
            .find_map(|s| s.get(&key).copied())
        {
            return Ok(Some(v));
        }
        let v = b.op(op, args)?;
        if let Some(s) = self.scopes.borrow_mut().last_mut() {
            s.insert(key, v);
        }
        Ok(Some(v))
    }

    fn enter(&self, closed: bool) {
        let mut scopes = self.scopes.borrow_mut();
        if closed {
            // A fused region may use nothing from outside: its lookups start afresh, and
            // the barrier keeps them from reaching the enclosing tables.
            scopes.push(HashMap::new());
            self.barriers.borrow_mut().push(scopes.len() - 1);
        }
        scopes.push(HashMap::new());
    }

    fn leave(&self) {
        let mut scopes = self.scopes.borrow_mut();
        scopes.pop();
        let mut barriers = self.barriers.borrow_mut();
        if barriers.last() == Some(&(scopes.len().wrapping_sub(1))) {
            barriers.pop();
            scopes.pop();
        }
    }
}
