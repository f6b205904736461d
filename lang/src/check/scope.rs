//! Scopes: the local variables visible while checking, and an undo log of rebindings so
//! that branches and loop rounds can be checked and then merged.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ast::Name;
use crate::check::annot::{Ann, Bindings};
use crate::check::ty::Ty;
use crate::span::Span;

/// Where a variable lives.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Slot {
    /// In the local frame at this depth.
    Local(usize, Name),
    /// A top-level variable of the current unit.
    Global(Name),
}

/// What a function body checks its `return`s against.
#[derive(Clone, Debug)]
pub(crate) struct RetCx {
    /// The function's name, for messages.
    pub(crate) name: Name,
    /// The declared result type and the span of its annotation.
    pub(crate) ann: Option<(Ann, Span)>,
    /// The symbols of the signature (standing for themselves inside the body).
    pub(crate) bindings: Bindings,
    /// The types of the `return`s met so far.
    pub(crate) returns: Vec<Ty>,
}

/// The local state of the code being checked: frames of local variables, the loop depth,
/// and the enclosing function, if any.
#[derive(Clone, Debug, Default)]
pub(crate) struct Env {
    /// Local frames, innermost last. At the top level there are none outside blocks: the
    /// top-level scope is the unit's globals.
    pub(crate) frames: Vec<HashMap<Name, Ty>>,
    /// Frames below this index hold captured values, which may be read but not assigned.
    pub(crate) captured: usize,
    /// True inside a named function or closure body.
    pub(crate) in_fn: bool,
    /// True inside a closure body (for the message about assigning captured variables).
    pub(crate) in_closure: bool,
    /// Every rebinding, with the value it replaced, so that it can be undone.
    pub(crate) log: Vec<(Slot, Ty)>,
    /// How many loops enclose the code (for `break` and `continue`).
    pub(crate) loops: usize,
    /// The enclosing function's result, for `return`.
    pub(crate) ret: Option<RetCx>,
}

impl Env {
    /// The environment of a function body: captured values (for closures and nested
    /// functions), then the parameters.
    pub(crate) fn for_body(
        captured: Option<Arc<HashMap<Name, Ty>>>,
        params: HashMap<Name, Ty>,
        in_closure: bool,
        ret: RetCx,
    ) -> Env {
        let mut frames = Vec::new();
        if let Some(c) = captured {
            frames.push((*c).clone());
        }
        let captured = frames.len();
        frames.push(params);
        Env {
            frames,
            captured,
            in_fn: true,
            in_closure,
            log: Vec::new(),
            loops: 0,
            ret: Some(ret),
        }
    }

    /// The local variable `name`, innermost first, with its depth.
    pub(crate) fn lookup(&self, name: &str) -> Option<(usize, &Ty)> {
        self.frames
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, f)| f.get(name).map(|t| (i, t)))
    }

    /// Binds `name` in the innermost frame (shadowing any outer one).
    pub(crate) fn declare(&mut self, name: Name, ty: Ty) -> bool {
        match self.frames.last_mut() {
            Some(f) => {
                f.insert(name, ty);
                true
            }
            None => false,
        }
    }

    /// Every local name visible (for suggestions and closure capture).
    pub(crate) fn names(&self) -> impl Iterator<Item = &Name> {
        self.frames.iter().flat_map(|f| f.keys())
    }
}
