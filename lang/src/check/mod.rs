//! The type-and-shape checker (LANGUAGE.md §6, DESIGN.md §4).
//!
//! The checker is an abstract interpreter over the AST: it runs the program on abstract
//! values ([`Ty`]: dtypes, shapes with known, symbolic or unknown dims, small known
//! constants) instead of real ones. The walker (this module and its private submodules)
//! handles scopes, functions, control flow, structures and differentiation; the typing
//! rules of operators and first-order builtins live in [`ops`] and [`builtins`].
//!
//! Functions are checked per call signature, like templates: an unannotated parameter takes
//! the caller's argument type, and the result is cached per (function, parameter types,
//! top-level values the body read), so checking stays fast on long scripts.

pub mod builtins;
pub mod ops;
pub mod ty;

mod annot;
mod call;
mod diff;
mod merge;
mod scope;
mod suggest;
mod walk;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::ast::{Block, Expr, Name, Param, Program, TypeExpr};
use crate::diagnostics::Diagnostic;
use crate::span::Span;

use annot::Ann;
use scope::Env;

pub use ops::{Typed, TypedIndex};
pub use ty::{Const, Deriv, FnTy, IntVal, TensorTy, Ty, Wrt};

/// The identity of a file module, as a [`ModuleLoader`] gives it: a key that is the same
/// for every spelling of one file (e.g. its canonical path), and the name diagnostics show.
///
/// A standard module (`import nn`, its text in `stdlib`) is identified by its name and is
/// never the same module as a file, whatever the file's key.
///
/// Two ids are the same module exactly when their keys (and kinds) are equal; the name is
/// only shown.
#[derive(Clone, Debug)]
pub struct ModuleId {
    key: Name,
    name: Name,
    standard: bool,
}

impl ModuleId {
    /// The module keyed by `key`, shown as `name`. A loader gives distinct keys distinct
    /// names, since a diagnostic finds its file's text by the name.
    pub fn new(key: impl Into<Name>, name: impl Into<Name>) -> ModuleId {
        ModuleId {
            key: key.into(),
            name: name.into(),
            standard: false,
        }
    }

    /// The standard module `name` (`import nn`), shown by its name.
    pub fn standard(name: &str) -> ModuleId {
        ModuleId {
            key: Name::from(name),
            name: Name::from(name),
            standard: true,
        }
    }

    /// True for a standard module, whose text is `stdlib`'s rather than a file's.
    pub fn is_standard(&self) -> bool {
        self.standard
    }

    /// The key that identifies the module.
    pub fn key(&self) -> &Name {
        &self.key
    }

    /// The name diagnostics show for the module.
    pub fn name(&self) -> &Name {
        &self.name
    }
}

impl PartialEq for ModuleId {
    fn eq(&self, other: &ModuleId) -> bool {
        self.key == other.key && self.standard == other.standard
    }
}

impl Eq for ModuleId {}

impl std::hash::Hash for ModuleId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
        self.standard.hash(state);
    }
}

/// Finds and reads the files named by `import "path" as m` (the crate does no IO).
pub trait ModuleLoader {
    /// The module that `path` (as written in the import) names when the import is written
    /// in the file `from`, or in a text that is no file (a REPL entry) when `from` is
    /// `None`; or why there is none.
    fn resolve(&mut self, from: Option<&ModuleId>, path: &str) -> Result<ModuleId, String>;

    /// The text of a module that [`ModuleLoader::resolve`] gave, or why it cannot be read.
    fn read(&mut self, id: &ModuleId) -> Result<String, String>;
}

/// How many signature checks may nest (calls inside calls while checking) before the
/// checker gives up with an error instead of exhausting the stack.
const MAX_CALL_DEPTH: usize = 64;

/// How many nodes an argument type may have: a recursion that nests its argument in a
/// tuple doubles it each call, and would exhaust memory long before the depth limit.
const MAX_TYPE_NODES: usize = 4096;

/// The names of the standard modules (`import nn`), whose texts are `stdlib::MODULES`.
fn std_modules() -> impl Iterator<Item = &'static str> {
    stdlib::MODULES.iter().map(|(name, _)| *name)
}

/// A text the checker has seen: the program being checked, an earlier REPL entry, or an
/// imported file.
#[derive(Debug)]
struct Source {
    text: Arc<str>,
    /// The name diagnostics use for it when it is not the text being checked.
    name: Arc<str>,
    /// The file it is, which its imports resolve against (`None`: no file, e.g. a REPL
    /// entry).
    origin: Option<ModuleId>,
}

/// A scope of top-level names: the main program (REPL entries accumulate there) or one
/// imported file.
#[derive(Clone, Debug, Default)]
pub(crate) struct Unit {
    globals: HashMap<Name, Ty>,
    aliases: HashMap<Name, TypeExpr>,
}

/// The body of a function.
#[derive(Debug)]
pub(crate) enum Body {
    Block(Block),
    Expr(Expr),
}

/// A named function or a closure, as the checker keeps it between calls.
#[derive(Debug)]
pub(crate) struct FnDef {
    name: Name,
    params: Vec<Param>,
    anns: Vec<Option<Ann>>,
    ret: Option<(Ann, Span)>,
    body: Body,
    unit: usize,
    src: usize,
    /// The values a closure (or a function declared in a block) captured.
    captured: Option<Arc<HashMap<Name, Ty>>>,
    is_closure: bool,
}

/// The code being checked now: which unit's globals are visible and which text the spans
/// index.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Cx {
    unit: usize,
    src: usize,
}

/// The result of checking one function body at one signature.
#[derive(Debug)]
pub(crate) struct CacheEntry {
    result: Ty,
    diags: Vec<Diagnostic>,
    /// The top-level values the body read (`None` for names that did not exist): the entry
    /// is valid while they are unchanged (named functions bind late).
    reads: Vec<((usize, Name), Option<Ty>)>,
}

/// The checker, holding the state that persists between REPL entries: top-level values,
/// functions, aliases and imported modules.
pub struct Checker {
    units: Vec<Unit>,
    fns: Vec<Arc<FnDef>>,
    closure_ids: HashMap<(usize, Span, usize, String), usize>,
    cache: HashMap<(usize, String), Vec<CacheEntry>>,
    in_progress: HashSet<(usize, String)>,
    checked: HashSet<usize>,
    sources: Vec<Source>,
    loader: Option<Box<dyn ModuleLoader>>,
    /// File modules by identity: their unit and the name `Ty::Module` holds for them.
    file_units: HashMap<ModuleId, (usize, Name)>,
    /// File modules by the name `Ty::Module` holds: their unit.
    module_units: HashMap<Name, usize>,
    /// The units of the standard modules (`nn`): an error inside one of their functions is
    /// reported at the call that led there from the user's code.
    std_units: HashSet<usize>,
    /// The file being checked as the entry (if it is one) and the imports being loaded
    /// inside it, outermost first, to report cycles.
    loading: Vec<ModuleId>,
    cx: Cx,
    main_src: usize,
    env: Env,
    diags: Vec<Diagnostic>,
    reads: Vec<BTreeMap<(usize, Name), Option<Ty>>>,
    depth: usize,
    entries: usize,
}

/// Parses and checks `src` with a fresh checker (for `ms check` and tests): syntax errors
/// and checking errors together, sorted by position.
pub fn check_source(src: &str) -> (Program, Vec<Diagnostic>) {
    let (program, mut diags) = crate::syntax::parse(src);
    let mut checker = Checker::new();
    diags.extend(checker.check_program(src, &program));
    // A stable sort keeps syntax errors before checking errors at the same position.
    diags.sort_by_key(|d| (d.file.is_some(), d.primary.span.start, d.primary.span.end));
    (program, diags)
}

impl fmt::Debug for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker")
            .field("globals", &self.globals())
            .field("functions", &self.fns.len())
            .field("loader", &self.loader.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Checker {
    fn default() -> Checker {
        Checker::new()
    }
}

impl Checker {
    /// A checker with no top-level values, which cannot import files.
    pub fn new() -> Checker {
        Checker {
            units: vec![Unit::default()],
            fns: Vec::new(),
            closure_ids: HashMap::new(),
            cache: HashMap::new(),
            in_progress: HashSet::new(),
            checked: HashSet::new(),
            sources: Vec::new(),
            loader: None,
            file_units: HashMap::new(),
            module_units: HashMap::new(),
            std_units: HashSet::new(),
            loading: Vec::new(),
            cx: Cx::default(),
            main_src: 0,
            env: Env::default(),
            diags: Vec::new(),
            reads: Vec::new(),
            depth: 0,
            entries: 0,
        }
    }

    /// A checker that reads imported files through `loader`.
    pub fn with_loader(loader: Box<dyn ModuleLoader>) -> Checker {
        let mut c = Checker::new();
        c.loader = Some(loader);
        c
    }

    /// Checks one program (a script, or one REPL entry) against the top-level state, and
    /// returns its diagnostics sorted by position. The entry's top-level bindings,
    /// functions, aliases and imports are kept only when it has no errors (an entry with
    /// errors does not run).
    pub fn check_program(&mut self, src: &str, program: &Program) -> Vec<Diagnostic> {
        self.check_program_in(src, program, None)
    }

    /// Checks one program like [`Checker::check_program`], as the text of the file
    /// `origin`: its imports resolve against that file, and a module that imports it back
    /// is a cycle. `None` is a text that is no file (a REPL entry).
    pub fn check_program_in(
        &mut self,
        src: &str,
        program: &Program,
        origin: Option<&ModuleId>,
    ) -> Vec<Diagnostic> {
        let saved = self.units.first().cloned().unwrap_or_default();
        self.begin_entry(src);
        if let Some(s) = self.sources.get_mut(self.main_src) {
            s.origin = origin.cloned();
        }
        self.loading = origin.into_iter().cloned().collect();
        let first_fn = self.fns.len();
        self.top_level(&program.stmts);
        self.check_uncalled(first_fn);
        self.loading.clear();
        let diags = self.finish_diags();
        if diags.iter().any(Diagnostic::is_error)
            && let Some(u) = self.units.first_mut()
        {
            *u = saved;
        }
        diags
    }

    /// The type of `expr` in the top-level state (for `:type`), without changing it.
    pub fn type_of(&mut self, src: &str, expr: &Expr) -> (Ty, Vec<Diagnostic>) {
        let saved = self.units.first().cloned().unwrap_or_default();
        self.begin_entry(src);
        let ty = self.expr(expr);
        let diags = self.finish_diags();
        if let Some(u) = self.units.first_mut() {
            *u = saved;
        }
        (ty, diags)
    }

    /// The standard modules checked so far (`import nn`), whose texts the interpreter
    /// keeps among its sources as it keeps the files the loader read.
    pub fn standard_modules(&self) -> Vec<ModuleId> {
        self.file_units
            .keys()
            .filter(|id| id.is_standard())
            .cloned()
            .collect()
    }

    /// The top-level values, sorted by name (for `:vars` and completion).
    pub fn globals(&self) -> Vec<(Name, Ty)> {
        let mut out: Vec<(Name, Ty)> = self
            .units
            .first()
            .map(|u| {
                u.globals
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Sets a top-level value's type (the interpreter refines a value once it exists, e.g.
    /// data loaded from a file, and sets `_` to the last value).
    pub fn set_global(&mut self, name: &str, ty: Ty) {
        if let Some(u) = self.units.first_mut() {
            u.globals.insert(Name::from(name), ty);
        }
    }

    fn begin_entry(&mut self, src: &str) {
        self.entries += 1;
        let id = self.add_source(src, &format!("<entry {}>", self.entries));
        self.main_src = id;
        self.cx = Cx { unit: 0, src: id };
        self.env = Env::default();
        self.diags.clear();
        self.reads.clear();
        self.depth = 0;
        self.in_progress.clear();
    }

    fn add_source(&mut self, text: &str, name: &str) -> usize {
        self.sources.push(Source {
            text: Arc::from(text),
            name: Arc::from(name),
            origin: None,
        });
        self.sources.len() - 1
    }

    /// The text the current spans index.
    fn src(&self) -> Arc<str> {
        self.sources
            .get(self.cx.src)
            .map_or_else(|| Arc::from(""), |s| s.text.clone())
    }

    /// The source text at `span` (for hints that quote the user's code), or `fallback`
    /// when the span is empty or does not index the current text.
    fn snippet(&self, span: Span, fallback: &str) -> String {
        match self.src().get(span.range()) {
            Some(t) if !t.trim().is_empty() => t.to_string(),
            _ => fallback.to_string(),
        }
    }

    /// Records a diagnostic about the code being checked now.
    fn emit(&mut self, mut d: Diagnostic) {
        if self.cx.src != self.main_src && d.file.is_none() {
            d.file = self.sources.get(self.cx.src).map(|s| s.name.clone());
        }
        self.diags.push(d);
    }

    /// The diagnostics collected, without duplicates (a body checked at several signatures
    /// may report the same mistake twice), sorted by position.
    fn finish_diags(&mut self) -> Vec<Diagnostic> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for d in std::mem::take(&mut self.diags) {
            let key = (
                d.code,
                d.primary.span,
                d.message.clone(),
                d.file.as_ref().map(|f| f.to_string()),
            );
            if seen.insert(key) {
                out.push(d);
            }
        }
        out.sort_by(|a, b| {
            (a.file.is_some(), a.primary.span.start, a.primary.span.end).cmp(&(
                b.file.is_some(),
                b.primary.span.start,
                b.primary.span.end,
            ))
        });
        out
    }

    /// True when a span of function `def` may be used as a label in a diagnostic about the
    /// code being checked now (both index the same text).
    fn same_src(&self, src: usize) -> bool {
        src == self.cx.src
    }
}
