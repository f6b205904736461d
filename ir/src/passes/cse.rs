//! Common-subexpression elimination.
//!
//! A pure primitive (not `print`, not a draw) applied to the same operands with the same
//! attributes as one before it, in the same block or an enclosing one, is replaced by that
//! earlier value. The copy keeps one table of what each block computed; a region starts a
//! new one on top of its enclosing blocks' tables and drops it when it ends, since what a
//! region computes is not visible after it. Float attributes compare by their bits.

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
        },
    )
}

struct Cse {
    /// Per open block, innermost last: a computation's key → its value.
    scopes: RefCell<Vec<HashMap<String, ValueId>>>,
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
        if let Some(v) = self
            .scopes
            .borrow()
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

    fn enter(&self) {
        self.scopes.borrow_mut().push(HashMap::new());
    }

    fn leave(&self) {
        self.scopes.borrow_mut().pop();
    }
}
