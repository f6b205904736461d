//! The eager evaluator: walks the checked AST and runs each primitive on the device as it
//! is reached (MindSpore's PyNative mode, DESIGN.md §1).
//!
//! The evaluator only runs programs the checker accepted, so most of what could go wrong
//! was ruled out before; what remains (an index out of range, an integer division by zero,
//! a failed `assert`, a tensor too large, runaway recursion, values the checker knew
//! nothing about) becomes a [`Diagnostic`] with a code in E09xx, the span of the expression
//! that failed and a note with the MindScript call stack. Nothing here panics on purpose;
//! the session still catches a panic and reports it as an internal error.
//!
//! The concerns are split by file: this module holds the environment, statements and the
//! expressions that are not operators; [`ops`] the operators and dtype promotion;
//! [`index`] indexing; [`builtins`] the builtin functions; [`errors`] the runtime
//! diagnostics.

pub(crate) mod builtins;
pub(crate) mod errors;
pub(crate) mod index;
pub(crate) mod ops;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use devices::{Device, DeviceError, Tensor};
use ir::{DType, Op};
use lang::Span;
use lang::ast::{
    Arg, Block, Expr, ExprKind, FnDecl, ImportSource, IndexItem, Name, Param, Pattern, PatternKind,
    Stmt, StmtKind, TypeExpr, TypeExprKind,
};
use lang::check::ModuleId;

use crate::value::{FnBody, FnValue, Module, TensorVal, Value};
pub(crate) use errors::{Flow, R};

/// Variables by name at a top level (the session's, a module's, the prelude's). Hashed with
/// foldhash: a loop at the top level reads its variables here on every iteration, and
/// SipHash (the default) cost more than the addition being looped over.
pub(crate) type Globals = HashMap<Name, Value, foldhash::fast::RandomState>;

/// The state of a session that outlives one entry: top-level values, the device, the
/// random stream, the output sink and every source text seen.
pub(crate) struct State {
    /// Top-level values by name (REPL entries accumulate here).
    pub globals: Globals,
    /// The device every primitive runs on.
    pub device: Arc<dyn Device>,
    /// The seed of the random stream (`seed(n)`).
    pub seed: i64,
    /// How many random numbers were drawn since the seed was set: the next draw's offset.
    pub offset: i64,
    /// Where `print` writes.
    pub out: Box<dyn Write + Send>,
    /// Every text evaluated so far: its name (for diagnostics) and contents.
    pub sources: Vec<(Arc<str>, Arc<str>)>,
    /// Closure bodies and block-local functions, copied out of the tree once per place in
    /// the source (keyed by source and span) so that making one in a loop copies nothing.
    closures: HashMap<(usize, Span), ClosureCode>,
    decls: HashMap<(usize, Span), Arc<FnDecl>>,
    /// The most MindScript calls that may nest.
    pub max_depth: usize,
    /// The prelude's functions, swapped with `globals` while one runs.
    pub prelude: builtins::prelude::Scope,
    /// The words after the script's name, which `arg` reads.
    pub script_args: Vec<String>,
    /// Imported files by identity: their source in `sources`.
    pub file_sources: HashMap<ModuleId, usize>,
    /// The file each source is, by its index in `sources`: imported files, and entries
    /// that are the text of a file (the script, a `:load`ed file). Imports written in a
    /// source resolve against its file; one missing here is no file (a REPL entry).
    pub origins: HashMap<usize, ModuleId>,
    /// The module each import names, as the checker's loader resolved it: by the file the
    /// import is written in (`None`: no file) and the path as written.
    pub resolved: HashMap<(Option<ModuleId>, Name), ModuleId>,
    /// Imported files that have run, by identity: each runs once, however often (and by
    /// whatever spelling) it is imported.
    modules: HashMap<ModuleId, Arc<Module>>,
    /// The top-level variables of each imported file, by its source: a module's functions
    /// read (and its top level writes) these rather than the importer's globals.
    namespaces: HashMap<usize, Globals>,
    /// The files being imported, innermost last (a cycle is an error, not a hang).
    importing: Vec<ModuleId>,
    /// The derivatives being taken, which see every primitive run (`builtins::grad`).
    pub traces: builtins::grad::Traces,
    /// The graphs being staged, innermost last (`crate::stage`); empty in eager code.
    pub stage: std::cell::RefCell<Vec<crate::stage::Stager>>,
    /// The graphs staged so far, per function.
    pub jit: crate::stage::jit::Cache,
    /// Graph mode (`--mode graph`, `:mode graph`): named functions called from the top
    /// level are staged.
    pub graph_mode: bool,
    /// Whether each re-staging is explained on stderr (`--explain-restage`).
    pub explain_restage: bool,
    /// The optimizer's passes that staged graphs go through, in order
    /// (`Session::set_passes`; `ir::passes::PIPELINE` by default).
    pub passes: crate::stage::pipeline::Pipeline,
    /// Whether staged graphs write results into the buffers of operands that die
    /// (`Options::in_place`).
    pub in_place: bool,
    /// `ms run --check-modes`: every staged call is also run eagerly and as staged, and the
    /// results compared (`stage::check`); what was checked so far.
    pub check: Option<crate::stage::check::CheckModes>,
    /// Whether every call runs eagerly, `@jit` ones included: set while a checked call
    /// runs eagerly for reference, so that the reference stages nothing.
    pub eager_only: bool,
    /// The event file that `log_*` write (`crate::insight`), made on first use.
    pub summaries: crate::insight::Summaries,
    /// Whether `for` loops may show progress bars on stderr (`Options::progress_bars`).
    pub progress_bars: bool,
    /// The progress bar on the screen now, which `print` clears while it writes.
    pub bar: Option<indicatif::ProgressBar>,
    /// The mesh of `--devices cpu:N` (`Options::mesh`): how many virtual devices parallel
    /// functions may use; `None` when not given.
    pub mesh: Option<usize>,
    /// The tensor outputs of every staged call so far, in order, when the session keeps
    /// them (`Options::record_staged`).
    pub staged_outputs: Option<Vec<Vec<Tensor>>>,
    /// `--parallel MODE` (`Options::parallel`): the mode of staged functions that name
    /// none.
    pub parallel: Option<crate::stage::parallel::Mode>,
    /// How `parallel: "auto"` plans (`ms plan --mesh --mem-cap --profile`).
    pub planning: crate::stage::parallel::Planning,
    /// The thread pools of the virtual devices of the last mesh a parallel call ran on,
    /// kept between calls (`stage::parallel::DevicePools`).
    pub device_pools: Option<std::sync::Arc<crate::stage::parallel::DevicePools>>,
}

impl State {
    /// Adds the text of an imported module (a file, or a standard module such as `nn`) to
    /// the sources, where diagnostics and the evaluator find it by its identity.
    pub(crate) fn add_module_source(&mut self, id: ModuleId, text: Arc<str>) {
        self.sources.push((id.name().clone(), text));
        let src_id = self.sources.len() - 1;
        self.file_sources.insert(id.clone(), src_id);
        self.origins.insert(src_id, id);
    }

    /// A state with no values, writing to `out`.
    pub fn new(device: Arc<dyn Device>, seed: i64, out: Box<dyn Write + Send>) -> State {
        State {
            globals: HashMap::default(),
            device,
            seed,
            offset: 0,
            out,
            sources: Vec::new(),
            closures: HashMap::new(),
            decls: HashMap::new(),
            max_depth: 1000,
            prelude: builtins::prelude::Scope::default(),
            script_args: Vec::new(),
            file_sources: HashMap::new(),
            origins: HashMap::new(),
            resolved: HashMap::new(),
            modules: HashMap::new(),
            namespaces: HashMap::new(),
            importing: Vec::new(),
            traces: builtins::grad::Traces::default(),
            stage: std::cell::RefCell::new(Vec::new()),
            jit: crate::stage::jit::Cache::default(),
            graph_mode: false,
            explain_restage: false,
            passes: crate::stage::pipeline::Pipeline::default(),
            in_place: true,
            check: None,
            eager_only: false,
            summaries: crate::insight::Summaries::new(None, None),
            progress_bars: false,
            bar: None,
            mesh: None,
            staged_outputs: None,
            parallel: None,
            device_pools: None,
            planning: crate::stage::parallel::Planning::default(),
        }
    }
}

/// A closure's code copied out of the tree: its body, parameters and the names it may
/// capture.
type ClosureCode = (Arc<Expr>, Arc<[Param]>, Arc<[Name]>);

/// The functions of one block, what they capture, and the source they are in.
type Siblings = (Arc<[Arc<FnDecl>]>, Option<Arc<Vec<(Name, Value)>>>, usize);

/// Evaluated call arguments: positional ones with spans, named ones with names and spans.
type Args = (Vec<(Value, Span)>, Vec<(Name, Value, Span)>);

/// One MindScript call in progress, for call stacks in diagnostics.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    /// The function called.
    pub name: Name,
    /// The call's span.
    pub call: Span,
    /// The source the call's span indexes.
    pub call_src: usize,
}

/// The variables visible to the code running now.
#[derive(Clone, Debug, Default)]
struct Env {
    /// Local scopes, innermost last; empty at the top level.
    frames: Vec<Vec<(Name, Value)>>,
    /// What a closure captured, or what a block-local function sees.
    captured: Option<Arc<Vec<(Name, Value)>>>,
    /// Functions declared in the same block as the running one.
    siblings: Option<Siblings>,
}

/// Evaluates one entry (or one call of a function value from a builtin) against a state.
pub(crate) struct Eval<'s> {
    pub st: &'s mut State,
    env: Env,
    pub stack: Vec<Frame>,
    /// The source the spans of the running code index.
    pub src: usize,
    /// The entry being evaluated (diagnostics about it need no file name).
    pub main_src: usize,
}

impl<'s> Eval<'s> {
    /// An evaluator for the top level of source `src`.
    pub fn new(st: &'s mut State, src: usize) -> Eval<'s> {
        Eval {
            st,
            env: Env::default(),
            stack: Vec::new(),
            src,
            main_src: src,
        }
    }

    /// Runs one primitive; a device error becomes a diagnostic at `span`.
    /// While a derivative is being taken, the primitive is also shown to its traces
    /// (`builtins::grad`): this is the one place where eager differentiation hooks in.
    pub fn exec(&self, op: &Op, inputs: &[&Tensor], span: Span) -> R<Tensor> {
        self.exec_or(op, inputs, span, |e| self.device_error(e, span))
    }

    /// [`Eval::exec`] with the caller's own rendering of a device error (a builtin that
    /// adds a note to it, say). Every primitive the evaluator runs goes through here, so
    /// that no builtin can escape the gradient traces.
    pub fn exec_or(
        &self,
        op: &Op,
        inputs: &[&Tensor],
        span: Span,
        on_error: impl FnOnce(DeviceError) -> Flow,
    ) -> R<Tensor> {
        // While a function is staged, a primitive on a staged value (or an effect) is
        // appended to its graph; one on known values is computed now, once.
        if self.staging()
            && (inputs
                .iter()
                .any(|t| t.device() == devices::DeviceId::Staged)
                || ir::graph::is_effectful(op.prim()))
        {
            let out = self.stage_exec(op, inputs, span)?;
            if self.st.traces.any() {
                builtins::grad::on_exec(self, op, inputs, &out, span)?;
            }
            return Ok(out);
        }
        // The usual case, every operand on the session's device, costs no placement.
        let session = self.st.device.id();
        let out = if inputs.iter().all(|t| t.device() == session) {
            self.st.device.exec(op, inputs)
        } else {
            let (device, moved) = self.placement(op, inputs, span)?;
            match &moved {
                Some(m) => device.exec(op, &m.iter().collect::<Vec<_>>()),
                None => device.exec(op, inputs),
            }
        }
        .map_err(on_error)?;
        // Gradient traces see the operands as given (a host operand copied to the device is
        // the same value to them, under its own identity).
        if self.st.traces.any() {
            builtins::grad::on_exec(self, op, inputs, &out, span)?;
        }
        Ok(out)
    }

    /// Where `op` runs and, when some operands had to move there, the operands moved.
    ///
    /// (The result type is [`Placement`].)
    ///
    /// An operation runs on the device of its operands that are not on the host, or on the
    /// session's device when all are on the host. Host operands join it there: always when
    /// that is the session's device (the evaluator makes literals and loaded data on the
    /// host), and otherwise only scalars (`x * 2` with `x` moved to a GPU). Operands on two
    /// different GPUs, or a host tensor beside a tensor moved to a GPU, are an error that
    /// names both devices.
    fn placement(&self, op: &Op, inputs: &[&Tensor], span: Span) -> R<Placement> {
        use devices::DeviceId;
        let session = self.st.device.id();
        let mut target: Option<(usize, DeviceId)> = None;
        for (i, t) in inputs.iter().enumerate() {
            let d = t.device();
            if d == DeviceId::Cpu {
                continue;
            }
            match target {
                Some((j, other)) if other != d => {
                    return Err(errors::mixed_devices(op.name(), (j, other), (i, d), span));
                }
                _ => target = Some((i, d)),
            }
        }
        let Some((first, target)) = target.filter(|(_, d)| *d != session) else {
            if session == DeviceId::Cpu || inputs.iter().all(|t| t.device() == session) {
                return Ok((self.st.device.clone(), None));
            }
            let moved = self.upload_all(&self.st.device, inputs, span)?;
            return Ok((self.st.device.clone(), Some(moved)));
        };
        let DeviceId::Cuda(n) = target else {
            return Ok((self.st.device.clone(), None));
        };
        let device = devices::cuda::open(n).map_err(|e| self.device_error(e, span))?;
        if let Some((i, t)) = inputs
            .iter()
            .enumerate()
            .find(|(_, t)| t.device() != target && t.rank() > 0)
        {
            return Err(errors::mixed_devices(
                op.name(),
                (first, target),
                (i, t.device()),
                span,
            ));
        }
        if inputs.iter().all(|t| t.device() == target) {
            return Ok((device, None));
        }
        let moved = self.upload_all(&device, inputs, span)?;
        Ok((device, Some(moved)))
    }

    /// The operands on `device`, copying those that are elsewhere through the host.
    fn upload_all(
        &self,
        device: &std::sync::Arc<dyn devices::Device>,
        inputs: &[&Tensor],
        span: Span,
    ) -> R<Vec<Tensor>> {
        inputs
            .iter()
            .map(|t| {
                if t.device() == device.id() {
                    return Ok((*t).clone());
                }
                let host = t.to_host().map_err(|e| self.device_error(e, span))?;
                let data = devices::CpuDevice::new()
                    .download(&host)
                    .map_err(|e| self.device_error(e, span))?;
                device
                    .upload(data, t.shape())
                    .map_err(|e| self.device_error(e, span))
            })
            .collect()
    }

    /// A device error as a runtime diagnostic at `span`.
    pub fn device_error(&self, e: DeviceError, span: Span) -> Flow {
        Flow::error(errors::from_device(e, span))
    }

    // -----------------------------------------------------------------------------------
    // Statements.

    /// Runs the statements of a program at the top level; returns the values of its
    /// expression statements that are not unit.
    pub fn program(&mut self, stmts: &[Stmt]) -> R<Vec<Value>> {
        self.hoist(stmts);
        let mut values = Vec::new();
        for s in stmts {
            let v = self.stmt(s)?;
            if matches!(s.kind, StmtKind::Expr(_)) && !matches!(v, Value::Unit) {
                values.push(v);
            }
        }
        Ok(values)
    }

    /// Declares the named functions of `stmts` before they run, so that calls before the
    /// declaration and recursion work. At the top level they become globals that read
    /// top-level variables when called; in a block they see the block's variables as they
    /// are when it starts, and each other.
    fn hoist(&mut self, stmts: &[Stmt]) {
        let decls: Vec<&FnDecl> = stmts
            .iter()
            .filter_map(|s| match &s.kind {
                StmtKind::Fn(d) => Some(d),
                _ => None,
            })
            .collect();
        if decls.is_empty() {
            return;
        }
        let src = self.src;
        let arcs: Vec<Arc<FnDecl>> = decls
            .iter()
            .map(|d| {
                self.st
                    .decls
                    .entry((src, d.span))
                    .or_insert_with(|| Arc::new((*d).clone()))
                    .clone()
            })
            .collect();
        if self.env.frames.is_empty() && self.env.captured.is_none() {
            for d in arcs {
                let v = Value::Fn(Arc::new(FnValue {
                    name: d.name.name.clone(),
                    params: d.params.clone().into(),
                    body: FnBody::Decl(d.clone()),
                    captured: None,
                    siblings: None,
                    src,
                }));
                let v = jit_if_marked(&d, v);
                self.globals_mut().insert(d.name.name.clone(), v);
            }
            return;
        }
        let captured = Some(Arc::new(self.visible_locals()));
        let siblings: Arc<[Arc<FnDecl>]> = arcs.into();
        for d in siblings.iter() {
            let v = jit_if_marked(d, block_fn(d, &captured, &siblings, src));
            self.bind(d.name.name.clone(), v);
        }
    }

    /// Every local variable visible now (captured ones first, inner scopes last, so that a
    /// search from the end finds the innermost).
    fn visible_locals(&self) -> Vec<(Name, Value)> {
        let mut all: Vec<(Name, Value)> = Vec::new();
        if let Some(c) = &self.env.captured {
            all.extend(c.iter().cloned());
        }
        for f in &self.env.frames {
            all.extend(f.iter().cloned());
        }
        all
    }

    /// Binds `name` in the innermost scope (a global at the top level).
    fn bind(&mut self, name: Name, v: Value) {
        match self.env.frames.last_mut() {
            Some(f) => {
                if let Some(slot) = f.iter_mut().rev().find(|(n, _)| *n == name) {
                    slot.1 = v;
                } else {
                    f.push((name, v));
                }
            }
            None => {
                self.globals_mut().insert(name, v);
            }
        }
    }

    /// E0911 once Ctrl-C asked the computation to stop (`devices::cancel`): looked at before
    /// each statement, loop iteration and call, so that any running program stops within
    /// one step; `span` is the place it stops at.
    #[inline]
    pub(crate) fn check_interrupt(&self, span: Span) -> R<()> {
        if devices::cancel::requested() {
            Err(errors::interrupted(span))
        } else {
            Ok(())
        }
    }

    fn stmt(&mut self, s: &Stmt) -> R<Value> {
        self.check_interrupt(s.span)?;
        match &s.kind {
            StmtKind::Let { pat, ty, value } => {
                let (mut v, exited) = self.expr_or_exit(value)?;
                if let Some(te) = ty {
                    v = self.fit_annotation(v, te, value.span)?;
                }
                self.bind_pattern(pat, v, value.span)?;
                exited.map_or(Ok(Value::Unit), |o| Err(Flow::Exit(o)))
            }
            StmtKind::Assign { target, op, value } => {
                let (rhs, exited) = self.expr_or_exit(value)?;
                self.assign_rhs(target, *op, value.span, rhs)?;
                exited.map_or(Ok(Value::Unit), |o| Err(Flow::Exit(o)))
            }
            StmtKind::Fn(_) | StmtKind::TypeAlias { .. } => Ok(Value::Unit),
            StmtKind::Import { source, alias } => {
                match source {
                    ImportSource::Module(m) => {
                        let name = alias.as_ref().map_or(&m.name, |a| &a.name).clone();
                        let module = self.run_module(ModuleId::standard(&m.name), m.span)?;
                        self.bind(name, Value::Module(module));
                    }
                    ImportSource::File(path, span) => {
                        let module = self.import_file(path, *span)?;
                        if let Some(a) = alias {
                            self.bind(a.name.clone(), Value::Module(module));
                        }
                    }
                }
                Ok(Value::Unit)
            }
            StmtKind::Expr(e) => self.expr(e),
        }
    }

    /// Rebinds an existing variable where it lives.
    fn assign(&mut self, name: &Name, v: Value) {
        for f in self.env.frames.iter_mut().rev() {
            if let Some(slot) = f.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = v;
                return;
            }
        }
        self.globals_mut().insert(name.clone(), v);
    }

    /// Runs the file imported as `path` and returns its module (see [`Eval::run_module`]).
    /// The checker resolved the import and read and checked the file before anything ran.
    fn import_file(&mut self, path: &str, span: Span) -> R<Arc<Module>> {
        let from = self.st.origins.get(&self.src).cloned();
        let Some(id) = self.st.resolved.get(&(from, Name::from(path))).cloned() else {
            return Err(errors::internal(
                &format!("the import of `{path}` was not resolved before the program ran"),
                span,
            ));
        };
        self.run_module(id, span)
    }

    /// Runs the module `id` (an imported file, or a standard module such as `nn`) and
    /// returns it: its top-level variables and functions, which read the module's own top
    /// level when called. A module runs once per session however often it is imported (its
    /// `print`s show once, like a Python module); the text run is the one the checker
    /// checked, kept in `sources`.
    fn run_module(&mut self, id: ModuleId, span: Span) -> R<Arc<Module>> {
        if let Some(m) = self.st.modules.get(&id) {
            return Ok(m.clone());
        }
        let name = id.name().clone();
        if self.st.importing.contains(&id) {
            let chain: Vec<&str> = self.st.importing.iter().map(|m| &**m.name()).collect();
            return Err(Flow::error(
                lang::Diagnostic::error("E0912", format!("`{name}` imports itself"), span)
                    .with_primary_label("import cycle")
                    .with_note(format!("the chain is {} -> {name}", chain.join(" -> "))),
            ));
        }
        let Some(&src) = self.st.file_sources.get(&id) else {
            return Err(errors::internal(
                &format!("the imported module `{name}` was not read before the program ran"),
                span,
            ));
        };
        let text = self
            .st
            .sources
            .get(src)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| Arc::from(""));
        let (program, syntax) = lang::syntax::parse(&text);
        if syntax.iter().any(lang::Diagnostic::is_error) {
            return Err(errors::internal(
                &format!("the imported module `{name}` does not parse"),
                span,
            ));
        }
        let (line, col) = errors::line_col(
            self.st.sources.get(self.src).map_or("", |(_, t)| t),
            span.start,
        );
        let here = match (self.src == self.main_src, source_name(self.st, self.src)) {
            (false, Some(name)) => format!("{name}:{line}:{col}"),
            _ => format!("{line}:{col}"),
        };
        self.st.namespaces.insert(src, Globals::default());
        self.st.importing.push(id.clone());
        let saved_env = std::mem::take(&mut self.env);
        let saved_src = std::mem::replace(&mut self.src, src);
        let r = match self.program(&program.stmts) {
            Ok(_) => Ok(()),
            Err(Flow::Error(mut e)) => {
                // Traced here, where the running source is the file, so that the error
                // names it and renders against its text.
                errors::trace(&mut e, self);
                e.diag
                    .notes
                    .push(format!("while running `{name}`, imported at {here}"));
                Err(Flow::Error(e))
            }
            Err(_) => Err(errors::internal(
                "control flow escaped the top level of an imported file",
                span,
            )),
        };
        self.src = saved_src;
        self.env = saved_env;
        self.st.importing.pop();
        r?;
        let members: BTreeMap<Name, Value> = self
            .st
            .namespaces
            .get(&src)
            .map(|ns| ns.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let module = Arc::new(Module { name, members });
        self.st.modules.insert(id, module.clone());
        Ok(module)
    }

    /// Binds the names of `pat` to the parts of `v`.
    fn bind_pattern(&mut self, pat: &Pattern, v: Value, span: Span) -> R<()> {
        match &pat.kind {
            PatternKind::Name(id) => {
                self.bind(id.name.clone(), v);
                Ok(())
            }
            PatternKind::Wildcard => Ok(()),
            PatternKind::Tuple(pats) => {
                let items: Vec<Value> = match &v {
                    Value::Tuple(items) if items.len() == pats.len() => items.to_vec(),
                    Value::Unit if pats.is_empty() => Vec::new(),
                    other => {
                        return Err(errors::mismatch(
                            format!(
                                "a pattern of {} elements cannot take apart {}",
                                pats.len(),
                                other.describe()
                            ),
                            span,
                        ));
                    }
                };
                for (p, x) in pats.iter().zip(items) {
                    self.bind_pattern(p, x, span)?;
                }
                Ok(())
            }
            PatternKind::Record(fields) => {
                let Value::Record(map) = &v else {
                    return Err(errors::mismatch(
                        format!("a record pattern cannot take apart {}", v.describe()),
                        span,
                    ));
                };
                for fp in fields {
                    let Some(x) = map.get(&fp.name.name) else {
                        return Err(errors::mismatch(
                            format!("the record has no field `{}`", fp.name.name),
                            fp.name.span,
                        ));
                    };
                    match &fp.pat {
                        Some(p) => self.bind_pattern(p, x.clone(), span)?,
                        None => self.bind(fp.name.name.clone(), x.clone()),
                    }
                }
                Ok(())
            }
        }
    }

    /// Applies an annotation to a value: weak literals take the annotated dtype
    /// (`let x: f64 = 0.1` is the `f64` 0.1). Shapes were checked before the program ran.
    pub(crate) fn fit_annotation(&mut self, v: Value, te: &TypeExpr, span: Span) -> R<Value> {
        match (&te.kind, v) {
            (TypeExprKind::Tensor { dtype, dims }, Value::Tensor(t)) => {
                // A weak literal takes the annotated dtype and stops being weak, even when
                // its dtype already is that one: `b: i64[2]` given `[3000000000, 4]` is
                // an i64 tensor, which `a + b` with an i32 `a` widens to (as staged code
                // does), not a weak literal that would take `a`'s i32 and wrap.
                let t = match DType::from_name(&dtype.name) {
                    Some(d) if t.weak => TensorVal::strong_of(self.cast(&t.t, d, span)?),
                    _ => t,
                };
                match DType::from_name(&dtype.name) {
                    Some(d) => {
                        // The checker proved what it could; a value whose type it did not
                        // know (data from a file, `?` dims) is checked here, where it
                        // arrives, against the annotation (LANGUAGE.md §6).
                        if let Some(why) = annotation_misfit(d, dims.as_deref(), &t) {
                            let found = crate::value::tensor_type_text(t.dtype, t.shape());
                            return Err(misfit(te, span, &found, &why));
                        }
                        Ok(Value::Tensor(t))
                    }
                    None => Ok(Value::Tensor(t)),
                }
            }
            (TypeExprKind::Tuple(ts), Value::Tuple(items)) => {
                if ts.len() != items.len() {
                    let why = format!("it has {} items, the annotation {}", items.len(), ts.len());
                    return Err(misfit(te, span, "a tuple", &why));
                }
                let mut out = Vec::with_capacity(items.len());
                for (t, x) in ts.iter().zip(items.iter()) {
                    out.push(self.fit_annotation(x.clone(), t, span)?);
                }
                Ok(Value::Tuple(out.into()))
            }
            (TypeExprKind::Record(fs), Value::Record(map)) => {
                // A value the checker knew has exactly the annotated fields; one read from
                // a file (`load`) is checked here.
                if let Some((name, _)) = fs.iter().find(|(n, _)| !map.contains_key(&n.name)) {
                    let why = format!("it has no field `{}`", name.name);
                    return Err(misfit(te, span, "a record", &why));
                }
                if let Some(extra) = map.keys().find(|k| !fs.iter().any(|(n, _)| n.name == **k)) {
                    let why = format!("it has the field `{extra}`, which the annotation lacks");
                    return Err(misfit(te, span, "a record", &why));
                }
                let mut out = (*map).clone();
                for (name, t) in fs {
                    if let Some(x) = out.get(&name.name).cloned() {
                        let fitted = self.fit_annotation(x, t, span)?;
                        out.insert(name.name.clone(), fitted);
                    }
                }
                Ok(Value::Record(Arc::new(out)))
            }
            (TypeExprKind::Tuple(ts), Value::Unit) if ts.is_empty() => Ok(Value::Unit),
            (TypeExprKind::Tensor { dtype, .. }, v) if DType::from_name(&dtype.name).is_some() => {
                Err(misfit(te, span, &v.describe(), "it is not a tensor"))
            }
            (TypeExprKind::Tuple(_), v @ (Value::Tensor(_) | Value::Record(_) | Value::Unit)) => {
                Err(misfit(te, span, &v.describe(), "it is not a tuple"))
            }
            (TypeExprKind::Record(_), v @ (Value::Tensor(_) | Value::Tuple(_) | Value::Unit)) => {
                Err(misfit(te, span, &v.describe(), "it is not a record"))
            }
            (_, v) => Ok(v),
        }
    }

    /// Converts a tensor's storage to `dtype` (a no-op when it already is).
    pub fn cast(&self, t: &Tensor, dtype: DType, span: Span) -> R<Tensor> {
        if t.dtype() == dtype {
            return Ok(t.clone());
        }
        self.exec(&Op::Cast { dtype }, &[t], span)
    }

    /// `target op= rhs` (or `target = rhs`), `rhs` evaluated from the text at `value_span`.
    fn assign_rhs(
        &mut self,
        target: &lang::ast::Ident,
        op: Option<lang::ast::BinOp>,
        value_span: Span,
        rhs: Value,
    ) -> R<()> {
        let Some(old) = self.lookup_var(&target.name) else {
            return Err(errors::no_value(&target.name, target.span));
        };
        let new = match op {
            None => rhs,
            Some(op) => {
                let op_span = Span::new(target.span.end, value_span.start.max(target.span.end));
                self.binary(op, &old, &rhs, target.span, value_span, op_span)?
            }
        };
        // Rebinding keeps the variable's dtype: a literal takes it (`x = 0`).
        let new = keep_dtype(self, &old, new, value_span)?;
        if self.staging() && !self.is_local(&target.name) {
            return Err(crate::stage::staging_error(
                format!(
                    "a staged function cannot assign the top-level variable `{}`",
                    target.name
                ),
                target.span,
            ));
        }
        self.assign(&target.name, new);
        Ok(())
    }

    /// An expression's value, and the exit it took on some run-time paths (staged code),
    /// if it did: the value is then the one of the paths that went on.
    fn expr_or_exit(&mut self, e: &Expr) -> R<(Value, Option<Box<crate::stage::exits::Outcome>>)> {
        match self.expr(e) {
            Ok(v) => Ok((v, None)),
            Err(Flow::Exit(mut o)) => {
                let v = o.value.take().unwrap_or(Value::Unit);
                o.value = Some(Value::Unit);
                Ok((v, Some(o)))
            }
            Err(e) => Err(e),
        }
    }

    /// A block in a new scope: its value is the last statement's when that is an
    /// expression, unit otherwise.
    pub fn block(&mut self, b: &Block) -> R<Value> {
        self.env.frames.push(Vec::new());
        let r = self.block_body(b);
        self.env.frames.pop();
        r
    }

    /// A named function's body.
    fn fn_body(&mut self, b: &Block) -> R<Value> {
        self.hoist(&b.stmts);
        self.stmts(&b.stmts)
    }

    /// The local scopes, to put back after running code that may rebind them.
    pub(crate) fn save_frames(&self) -> Vec<Vec<(Name, Value)>> {
        self.env.frames.clone()
    }

    /// Puts back scopes [`Eval::save_frames`] saved.
    pub(crate) fn restore_frames(&mut self, frames: Vec<Vec<(Name, Value)>>) {
        self.env.frames = frames;
    }

    fn block_body(&mut self, b: &Block) -> R<Value> {
        self.hoist(&b.stmts);
        self.stmts(&b.stmts)
    }

    /// Statements in order: the last one's value when it is an expression, unit otherwise.
    /// After one that exited on some run-time paths only (staged code), the rest runs on
    /// the others ([`Eval::after_exit`]).
    pub(crate) fn stmts(&mut self, stmts: &[Stmt]) -> R<Value> {
        let mut last = Value::Unit;
        for (i, s) in stmts.iter().enumerate() {
            let is_expr = matches!(s.kind, StmtKind::Expr(_));
            let v = match self.stmt(s) {
                Err(Flow::Exit(o)) => {
                    let rest = stmts.get(i + 1..).unwrap_or_default();
                    return self.after_exit(*o, rest, is_expr, s.span);
                }
                r => r?,
            };
            last = if is_expr { v } else { Value::Unit };
        }
        Ok(last)
    }

    // -----------------------------------------------------------------------------------
    // Names.

    /// A variable's value: locals, captured values, block siblings, then globals.
    fn lookup_var(&self, name: &str) -> Option<Value> {
        for f in self.env.frames.iter().rev() {
            if let Some((_, v)) = f.iter().rev().find(|(n, _)| &**n == name) {
                return Some(v.clone());
            }
        }
        if let Some(c) = &self.env.captured
            && let Some((_, v)) = c.iter().rev().find(|(n, _)| &**n == name)
        {
            return Some(v.clone());
        }
        if let Some((sibs, captured, src)) = &self.env.siblings
            && let Some(d) = sibs.iter().find(|d| &*d.name.name == name)
        {
            return Some(block_fn(d, captured, sibs, *src));
        }
        let v = self.globals().get(name).cloned();
        // A staged graph holds what it read from the top level; a later call checks that
        // those globals still hold the same values.
        // (The prelude's functions and an imported file's top level never change once
        // made, so only the session's own top level is recorded.)
        if let Some(v) = &v
            && self.staging()
            && !self.st.prelude.active
            && !self.st.namespaces.contains_key(&self.src)
            && let Some(s) = self.st.stage.borrow_mut().first_mut()
            && !s.globals_read.iter().any(|(n, _)| &**n == name)
        {
            s.globals_read.push((Name::from(name), v.clone()));
        }
        v
    }

    /// A top-level variable's value now (what a cached graph checks its globals against).
    pub(crate) fn global_value(&self, name: &str) -> Option<Value> {
        self.globals().get(name).cloned()
    }

    /// Whether an expression names a variable that holds a staged value now.
    pub(crate) fn reads_staged(&self, e: &Expr) -> bool {
        let mut names = HashSet::new();
        lang::ast::free_names(e, &mut names);
        names.iter().any(|n| {
            self.lookup_var(n)
                .is_some_and(|v| crate::stage::has_staged(&v))
        })
    }

    /// Whether evaluating `e` cannot print or log: every name it reads is a tensor (or a
    /// value without a function in it) or one of the builtins that only read sizes.
    fn cannot_print(&self, e: &Expr) -> bool {
        const SIZES: [&str; 3] = ["len", "shape", "dtype"];
        let mut names = HashSet::new();
        lang::ast::free_names(e, &mut names);
        names.iter().all(|n| match self.lookup_var(n) {
            Some(Value::Tensor(_) | Value::Tuple(_) | Value::Record(_)) => true,
            Some(Value::Builtin(b)) => SIZES.contains(&b),
            // A builtin not shadowed by a variable.
            None => SIZES.contains(&&**n),
            _ => false,
        })
    }

    /// Whether `name` is a local variable here (not a captured or global one).
    pub(crate) fn is_local(&self, name: &str) -> bool {
        self.env
            .frames
            .iter()
            .any(|f| f.iter().any(|(n, _)| &**n == name))
    }

    /// A local variable's value.
    pub(crate) fn lookup_local(&self, name: &str) -> Option<Value> {
        self.env.frames.iter().rev().find_map(|f| {
            f.iter()
                .rev()
                .find(|(n, _)| &**n == name)
                .map(|(_, v)| v.clone())
        })
    }

    /// Rebinds a local variable where it lives.
    pub(crate) fn assign_local(&mut self, name: &Name, v: Value) {
        if self.is_local(name) {
            self.assign(name, v);
        }
    }

    /// Opens a scope for loop variables.
    pub(crate) fn push_scope(&mut self) {
        self.env.frames.push(Vec::new());
    }

    /// Closes the scope [`Eval::push_scope`] opened.
    pub(crate) fn pop_scope(&mut self) {
        self.env.frames.pop();
    }

    /// Binds a pattern in the innermost scope.
    pub(crate) fn bind_pat(&mut self, pat: &Pattern, v: Value, span: Span) -> R<()> {
        self.bind_pattern(pat, v, span)
    }

    /// `tensors` on the session's device (a staged graph's inputs).
    pub(crate) fn on_session_device(&self, tensors: &[Tensor], span: Span) -> R<Vec<Tensor>> {
        let refs: Vec<&Tensor> = tensors.iter().collect();
        self.upload_all(&self.st.device, &refs, span)
    }

    /// The top-level variables the running code sees: those of the file it is in when
    /// that is an imported one, the session's otherwise.
    fn globals(&self) -> &Globals {
        if !self.st.namespaces.is_empty()
            && let Some(ns) = self.st.namespaces.get(&self.src)
        {
            return ns;
        }
        &self.st.globals
    }

    /// [`Eval::globals`], to change.
    fn globals_mut(&mut self) -> &mut Globals {
        let src = self.src;
        if self.st.namespaces.contains_key(&src) {
            self.st.namespaces.entry(src).or_default()
        } else {
            &mut self.st.globals
        }
    }

    /// A name's value: a variable, or a builtin.
    pub fn lookup(&self, name: &str, span: Span) -> R<Value> {
        if let Some(v) = self.lookup_var(name) {
            return Ok(v);
        }
        match builtins::builtin_name(name) {
            Some(n) => Ok(Value::Builtin(n)),
            None => Err(errors::no_value(name, span)),
        }
    }

    // -----------------------------------------------------------------------------------
    // Expressions.

    /// Evaluates an expression.
    pub fn expr(&mut self, e: &Expr) -> R<Value> {
        match self.expr_kind(e) {
            // Code that exited on some run-time paths only (staged) goes on as data through
            // the statements, loops and calls around it; an expression that would compute
            // on after it (`x + if c { break } else { 1 }`) does not stage.
            Err(Flow::Exit(_))
                if !matches!(
                    e.kind,
                    ExprKind::If { .. }
                        | ExprKind::Block(_)
                        | ExprKind::For { .. }
                        | ExprKind::While { .. }
                ) =>
            {
                Err(crate::stage::staging_error(
                    "a `break`, `continue` or `return` taken on a run-time condition inside a \
                     larger expression; give the `if` its own `let` first"
                        .into(),
                    e.span,
                ))
            }
            r => r,
        }
    }

    /// [`Eval::expr`] by the expression's kind.
    fn expr_kind(&mut self, e: &Expr) -> R<Value> {
        match &e.kind {
            ExprKind::Int(n) => Ok(Value::Tensor(TensorVal {
                t: Tensor::scalar(*n),
                dtype: DType::I64,
                weak: true,
            })),
            ExprKind::Float(x) => Ok(Value::Tensor(TensorVal {
                t: Tensor::scalar(*x),
                dtype: DType::F32,
                weak: true,
            })),
            ExprKind::Bool(b) => Ok(Value::tensor(Tensor::scalar(*b))),
            ExprKind::Str(s) => Ok(Value::Str(Arc::from(s.as_str()))),
            ExprKind::Name(n) => self.lookup(n, e.span),
            ExprKind::List(items) => {
                let mut vals = Vec::with_capacity(items.len());
                for i in items {
                    vals.push((self.expr(i)?, i.span));
                }
                self.list_literal(&vals, e.span)
            }
            ExprKind::Tuple(items) => {
                if items.is_empty() {
                    return Ok(Value::Unit);
                }
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.expr(i)?);
                }
                Ok(Value::Tuple(out.into()))
            }
            ExprKind::Record(fields) => {
                let mut out = BTreeMap::new();
                for f in fields {
                    let v = self.expr(&f.value)?;
                    out.entry(f.name.name.clone()).or_insert(v);
                }
                Ok(Value::Record(Arc::new(out)))
            }
            ExprKind::Unary { op, operand } => {
                // A negative literal (`-1`, `-0.5`) is a literal: no primitive runs for it.
                if *op == lang::ast::UnaryOp::Neg
                    && let Some(v) = negated_literal(&operand.kind)
                {
                    return Ok(v);
                }
                let v = self.expr(operand)?;
                self.unary(*op, &v, operand.span)
            }
            ExprKind::Binary {
                op,
                lhs,
                rhs,
                op_span,
            } => {
                use lang::ast::BinOp;
                if matches!(op, BinOp::And | BinOp::Or) {
                    // `&&` and `||` short-circuit on scalar bools.
                    let l = self.expr(lhs)?;
                    if crate::stage::has_staged(&l) {
                        // Known only at run time: both sides are evaluated, and combined.
                        let r = self.expr(rhs)?;
                        return self.staged_logic(*op, &l, &r, lhs.span, rhs.span, e.span);
                    }
                    let lb = self.scalar_bool(&l, lhs.span)?;
                    if (*op == BinOp::And) != lb {
                        return Ok(Value::tensor(Tensor::scalar(lb)));
                    }
                    let r = self.expr(rhs)?;
                    if crate::stage::has_staged(&r) {
                        return Ok(r);
                    }
                    let rb = self.scalar_bool(&r, rhs.span)?;
                    return Ok(Value::tensor(Tensor::scalar(rb)));
                }
                let l = self.expr(lhs)?;
                let r = self.expr(rhs)?;
                self.binary(*op, &l, &r, lhs.span, rhs.span, *op_span)
            }
            ExprKind::Range { start, end } => {
                let a = self.expr(start)?;
                let b = self.expr(end)?;
                let a = self.scalar_int(&a, start.span)?;
                let b = self.scalar_int(&b, end.span)?;
                Ok(Value::Range(a, b))
            }
            ExprKind::Call { callee, args } => {
                let f = self.expr(callee)?;
                let (pos, named) = self.args(args)?;
                self.call(&f, pos, named, e.span)
            }
            ExprKind::Method {
                receiver,
                method,
                args,
            } => {
                let r = self.expr(receiver)?;
                let f = match &r {
                    Value::Record(fields) if fields.contains_key(&method.name) => {
                        let f = fields.get(&method.name).cloned().unwrap_or(Value::Unit);
                        let (pos, named) = self.args(args)?;
                        return self.call(&f, pos, named, e.span);
                    }
                    Value::Module(m) => {
                        let f = self.member(m, &method.name, method.span)?;
                        let (pos, named) = self.args(args)?;
                        return self.call(&f, pos, named, e.span);
                    }
                    _ => self.lookup(&method.name, method.span)?,
                };
                let (mut pos, named) = self.args(args)?;
                pos.insert(0, (r, receiver.span));
                self.call(&f, pos, named, e.span)
            }
            ExprKind::Field { base, field } => {
                let b = self.expr(base)?;
                self.field(&b, &field.name, base.span, field.span)
            }
            ExprKind::TupleField {
                base,
                index_span,
                index,
                ..
            } => {
                let b = self.expr(base)?;
                match &b {
                    Value::Tuple(items) => items.get(*index).cloned().ok_or_else(|| {
                        errors::mismatch(
                            format!(
                                "tuple index {index} is out of range: the tuple has {} elements",
                                items.len()
                            ),
                            *index_span,
                        )
                    }),
                    other => Err(errors::mismatch(
                        format!("`.{index}` needs a tuple, found {}", other.describe()),
                        *index_span,
                    )),
                }
            }
            ExprKind::Index { base, items } => {
                let b = self.expr(base)?;
                let mut its = Vec::with_capacity(items.len());
                for it in items {
                    its.push(match it {
                        IndexItem::Expr(x) => index::Item::Value(self.expr(x)?, x.span),
                        IndexItem::Slice {
                            start,
                            end,
                            step,
                            span,
                        } => {
                            let mut part = |p: &Option<Box<Expr>>| -> R<Option<i64>> {
                                match p {
                                    None => Ok(None),
                                    Some(x) => {
                                        let v = self.expr(x)?;
                                        self.scalar_int(&v, x.span).map(Some)
                                    }
                                }
                            };
                            let (a, b2, s) = (part(start)?, part(end)?, part(step)?);
                            index::Item::Slice(a, b2, s, *span)
                        }
                        IndexItem::Ellipsis(_) => index::Item::Ellipsis,
                    });
                }
                self.index(&b, base.span, &its, e.span)
            }
            ExprKind::Closure { params, body } => self.closure(params, body, e.span),
            ExprKind::Block(b) => self.block(b),
            ExprKind::If { cond, then, els } => {
                let c = self.expr(cond)?;
                if let Value::Tensor(t) = &c
                    && t.t.staged_id().is_some()
                {
                    let t = self.condition_tensor(&c, cond.span)?;
                    return self.staged_if(&t, then, els.as_deref(), e.span);
                }
                if self.scalar_bool(&c, cond.span)? {
                    self.block(then)
                } else {
                    match els {
                        Some(x) => self.expr(x),
                        None => Ok(Value::Unit),
                    }
                }
            }
            ExprKind::For { pat, iter, body } => {
                let it = self.expr(iter)?;
                self.for_loop(pat, &it, iter.span, body, e.span)?;
                Ok(Value::Unit)
            }
            ExprKind::While { cond, body } => {
                // A condition that reads a staged value is staged without being evaluated
                // here first (its `print`s would otherwise show once too often), unless it
                // cannot print: then it is evaluated, and one about sizes only (`len(y) <
                // 7`) is known now, so the loop runs here, unrolled, as eagerly.
                if self.staging() && self.reads_staged(cond) && !self.cannot_print(cond) {
                    self.staged_while(cond, body, e.span, None)?;
                    return Ok(Value::Unit);
                }
                loop {
                    self.check_interrupt(e.span)?;
                    let c = self.expr(cond)?;
                    if let Value::Tensor(t) = &c
                        && t.t.staged_id().is_some()
                    {
                        self.staged_while(cond, body, e.span, None)?;
                        break;
                    }
                    if !self.scalar_bool(&c, cond.span)? {
                        break;
                    }
                    match self.block(body) {
                        Ok(_) | Err(Flow::Continue) => {}
                        Err(Flow::Break) => break,
                        Err(Flow::Exit(o)) => {
                            // The loop went on on some run-time paths only: from here on
                            // it is a `While` region that carries the exit code.
                            let o = self.iteration_end(Err(Flow::Exit(o)), e.span)?;
                            match o.code.single() {
                                Some(crate::stage::exits::GO) => continue,
                                Some(crate::stage::exits::BREAK) => break,
                                Some(_) => return crate::stage::exits::into_flow(o),
                                None => self.staged_while(cond, body, e.span, Some(o))?,
                            }
                            break;
                        }
                        Err(other) => return Err(other),
                    }
                }
                Ok(Value::Unit)
            }
            ExprKind::Break => Err(Flow::Break),
            ExprKind::Continue => Err(Flow::Continue),
            ExprKind::Return(v) => {
                let v = match v {
                    Some(x) => self.expr(x)?,
                    None => Value::Unit,
                };
                Err(Flow::Return(v))
            }
            ExprKind::Error => Err(errors::internal(
                "a part of the program did not parse",
                e.span,
            )),
        }
    }

    /// Evaluates call arguments: positional ones with their spans, then named ones.
    fn args(&mut self, args: &[Arg]) -> R<Args> {
        let mut pos = Vec::new();
        let mut named = Vec::new();
        for a in args {
            let v = self.expr(&a.value)?;
            match &a.name {
                Some(n) => named.push((n.name.clone(), v, a.value.span)),
                None => pos.push((v, a.value.span)),
            }
        }
        Ok((pos, named))
    }

    /// `base.name`: a record field, a module member or a tensor property.
    fn field(&mut self, b: &Value, name: &Name, base_span: Span, span: Span) -> R<Value> {
        match b {
            Value::Record(fields) => fields
                .get(name)
                .cloned()
                .ok_or_else(|| errors::mismatch(format!("the record has no field `{name}`"), span)),
            Value::Module(m) => self.member(m, name, span),
            Value::Tensor(t) => match &**name {
                "T" => {
                    let r = t.rank();
                    if r < 2 {
                        return Err(errors::mismatch(
                            format!("`.T` swaps the last two axes, but the tensor has {r}"),
                            span,
                        ));
                    }
                    let mut perm: Vec<usize> = (0..r).collect();
                    perm.swap(r - 2, r - 1);
                    let out = self.exec(&Op::Transpose { perm }, &[&t.t], base_span.to(span))?;
                    Ok(Value::Tensor(TensorVal {
                        t: out,
                        ..t.clone()
                    }))
                }
                "shape" => Ok(shape_value(t.shape())),
                "dtype" => Ok(Value::Str(Arc::from(t.dtype.name()))),
                _ => Err(errors::mismatch(
                    format!("a tensor has no property `{name}`"),
                    span,
                )),
            },
            other => Err(errors::mismatch(
                format!("{} has no field `{name}`", other.describe()),
                span,
            )),
        }
    }

    /// A member of a module. The checker typed the module's members, so a missing one is
    /// a module whose top level stopped before defining it.
    fn member(&self, m: &Module, name: &Name, span: Span) -> R<Value> {
        match m.members.get(name) {
            Some(v) => Ok(v.clone()),
            None => Err(errors::mismatch(
                format!("module `{}` has no member `{name}`", m.name),
                span,
            )),
        }
    }

    /// A closure: captures the values of the outer variables its body names, now.
    fn closure(&mut self, params: &[Param], body: &Expr, span: Span) -> R<Value> {
        let key = (self.src, span);
        let (body, params, names) = match self.st.closures.get(&key) {
            Some(c) => c.clone(),
            None => {
                let mut set = HashSet::new();
                lang::ast::free_names(body, &mut set);
                for p in params {
                    set.remove(&p.name.name);
                }
                let mut names: Vec<Name> = set.into_iter().collect();
                names.sort();
                let entry = (
                    Arc::new(body.clone()),
                    Arc::<[Param]>::from(params.to_vec()),
                    Arc::<[Name]>::from(names),
                );
                self.st.closures.insert(key, entry.clone());
                entry
            }
        };
        let mut captured = Vec::with_capacity(names.len());
        for n in names.iter() {
            if let Some(v) = self.lookup_var(n) {
                captured.push((n.clone(), v));
            }
        }
        Ok(Value::Fn(Arc::new(FnValue {
            name: Name::from("closure"),
            params,
            body: FnBody::Closure(body),
            captured: Some(Arc::new(captured)),
            siblings: None,
            src: self.src,
        })))
    }

    /// `for pat in it { body }`; `span` is the whole loop's.
    fn for_loop(
        &mut self,
        pat: &Pattern,
        it: &Value,
        it_span: Span,
        body: &Block,
        span: Span,
    ) -> R<()> {
        let n = builtins::iter_len(it, it_span)?;
        // `progress(it)` iterates `it`; the bar is this function's business alone.
        let (it, explicit) = match it {
            Value::Progress(inner) => (&**inner, true),
            other => (other, false),
        };
        if let Value::Range(a, b) = it
            && crate::stage::control::for_as_region(self, pat, body, n)
        {
            return self.staged_for(pat, (*a, *b), it_span, body, span);
        }
        // A bar for `progress(...)`, and for `batches(...)` in case the loop is long; never
        // while staging (the loop runs once, to build a graph) or inside another bar's loop.
        let mut bar = (self.st.progress_bars
            && self.st.bar.is_none()
            && !self.staging()
            && n > 1
            && (explicit || matches!(it, Value::Batches(_))))
        .then(|| crate::insight::progress::LoopBar::new(n, explicit));
        self.st.bar = bar.as_ref().map(crate::insight::progress::LoopBar::handle);
        // One frame for the loop variables, emptied per iteration rather than made anew:
        // closures copy what they capture, so nothing can still refer to the old bindings,
        // and a tight loop does not pay an allocation per iteration for them.
        self.env.frames.push(Vec::new());
        let r = (|| {
            // An iteration that exited on some run-time paths only (staged code) leaves
            // the next ones to run under a guard each, carrying its exit code.
            let mut pending: Option<crate::stage::exits::Outcome> = None;
            for i in 0..n {
                self.check_interrupt(span)?;
                let item = builtins::iter_item(self, it, i, it_span)?;
                if let Some(frame) = self.env.frames.last_mut() {
                    frame.clear();
                }
                self.bind_pattern(pat, item, it_span)?;
                let r = match pending.take() {
                    None => self.block(body),
                    Some(o) => self.guarded_block(o, body, span),
                };
                match r {
                    Ok(_) | Err(Flow::Continue) => {}
                    Err(Flow::Break) => break,
                    Err(Flow::Exit(o)) => {
                        let o = self.iteration_end(Err(Flow::Exit(o)), span)?;
                        match o.code.single() {
                            Some(crate::stage::exits::GO) => {}
                            Some(crate::stage::exits::BREAK) => break,
                            Some(_) => return crate::stage::exits::into_flow(o).map(|_| ()),
                            None => pending = Some(o),
                        }
                    }
                    Err(other) => return Err(other),
                }
                if let Some(b) = bar.as_mut() {
                    b.tick();
                }
            }
            match pending {
                Some(o) => self.loop_end(o, span),
                None => Ok(()),
            }
        })();
        self.env.frames.pop();
        if let Some(b) = bar {
            self.st.bar = None;
            b.end(r.is_ok());
        }
        r
    }

    // -----------------------------------------------------------------------------------
    // Calls.

    /// Calls a function value with evaluated arguments.
    pub fn call(
        &mut self,
        f: &Value,
        pos: Vec<(Value, Span)>,
        named: Vec<(Name, Value, Span)>,
        span: Span,
    ) -> R<Value> {
        let eager = self.staging() || self.st.traces.any() || self.st.eager_only;
        match f {
            // Inside a staged function a staged one is inlined; under an eager derivative
            // it runs eagerly, so that the derivative sees its primitives; in the eager
            // reference run of `--check-modes` (`eager_only`) everything runs eagerly.
            Value::Jit(_) if !eager => self.call_staged(f, pos, named, span),
            // The functions of a standard module called from the top level are not staged
            // on their own: they are constructors and configuration (`nn.init_linear`,
            // `nn.adam`, whose result holds functions, which a staged function may not
            // return), like the Python code around a compiled cell in MindSpore. Called
            // inside a staged function, they are staged with it.
            Value::Fn(func)
                if self.st.graph_mode
                    && !eager
                    && self.stack.is_empty()
                    && !func.is_closure()
                    && !self.is_standard(func.src) =>
            {
                self.call_staged(f, pos, named, span)
            }
            // The gradient of a staged function, and in graph mode that of any function
            // called from the top level, is staged too: differentiated on the IR
            // (`stage::grad`).
            Value::Derived(d)
                if !eager
                    && ((self.st.graph_mode && self.stack.is_empty())
                        || matches!(d.f, Value::Jit(_)))
                    && matches!(
                        d.kind,
                        builtins::grad::Kind::Grad | builtins::grad::Kind::ValueAndGrad
                    ) =>
            {
                self.call_staged(f, pos, named, span)
            }
            _ => self.call_inner(f, pos, named, span),
        }
    }

    /// True when the source `src` is the text of a standard module (`nn`).
    fn is_standard(&self, src: usize) -> bool {
        self.st.origins.get(&src).is_some_and(ModuleId::is_standard)
    }

    /// Calls a function value as it is: a staged one's function directly.
    pub(crate) fn call_inner(
        &mut self,
        f: &Value,
        pos: Vec<(Value, Span)>,
        named: Vec<(Name, Value, Span)>,
        span: Span,
    ) -> R<Value> {
        match f {
            Value::Builtin(name) => builtins::call(self, name, pos, named, span),
            Value::Fn(func) => self.call_fn(func, pos, named, span),
            Value::Derived(d) => builtins::grad::call_derived(self, d, pos, named, span),
            Value::Jit(j) => {
                let inner = j.f.clone();
                self.call_inner(&inner, pos, named, span)
            }
            Value::Model(m) => {
                let m = m.clone();
                self.call_model(&m, pos, named, span)
            }
            other => Err(errors::mismatch(
                format!("{} is not a function", other.describe()),
                span,
            )),
        }
    }

    /// Calls a named function or a closure: binds the arguments (defaults are evaluated
    /// where the function was declared), runs the body in a new frame.
    pub fn call_fn(
        &mut self,
        func: &Arc<FnValue>,
        pos: Vec<(Value, Span)>,
        named: Vec<(Name, Value, Span)>,
        span: Span,
    ) -> R<Value> {
        self.check_interrupt(span)?;
        if self.stack.len() >= self.st.max_depth {
            return Err(errors::too_deep(self.st.max_depth, &func.name, span));
        }
        let n = func.params.len();
        let mut slots: Vec<Option<Value>> = vec![None; n];
        if pos.len() > n {
            return Err(errors::mismatch(
                format!("`{}` takes {n} arguments, found {}", func.name, pos.len()),
                span,
            ));
        }
        for (slot, (v, _)) in slots.iter_mut().zip(pos) {
            *slot = Some(v);
        }
        for (name, v, s) in named {
            match func.params.iter().position(|p| p.name.name == name) {
                Some(i) => {
                    if let Some(slot) = slots.get_mut(i) {
                        *slot = Some(v);
                    }
                }
                None => {
                    return Err(errors::mismatch(
                        format!("`{}` has no parameter named `{name}`", func.name),
                        s,
                    ));
                }
            }
        }
        // The new frame's environment: what the function captured, nothing of the caller.
        let fn_env = Env {
            frames: vec![Vec::with_capacity(n)],
            captured: func.captured.clone(),
            siblings: func
                .siblings
                .as_ref()
                .map(|s| (s.clone(), func.captured.clone(), func.src)),
        };
        let saved_env = std::mem::replace(&mut self.env, fn_env);
        let saved_src = std::mem::replace(&mut self.src, func.src);
        self.stack.push(Frame {
            name: func.name.clone(),
            call: span,
            call_src: saved_src,
        });
        let decl = match &func.body {
            FnBody::Decl(d) if self.staging() => Some(Arc::as_ptr(d) as usize),
            _ => None,
        };
        let r = match decl {
            Some(d) => self.run_fn_staged(func, d, slots, span),
            None => self.run_fn(func, slots, span),
        };
        let r = match r {
            Err(Flow::Error(mut e)) => {
                errors::trace(&mut e, self);
                Err(Flow::Error(e))
            }
            other => other,
        };
        self.stack.pop();
        self.src = saved_src;
        self.env = saved_env;
        r
    }

    /// [`Eval::run_fn`] while staging: a function already being staged is a recursion,
    /// which cannot be staged (LANGUAGE.md §13).
    fn run_fn_staged(
        &mut self,
        func: &Arc<FnValue>,
        decl: usize,
        slots: Vec<Option<Value>>,
        span: Span,
    ) -> R<Value> {
        let recursive = self.with_stager(span, |s| {
            let r = s.active.contains(&decl);
            s.active.push(decl);
            Ok(r)
        })?;
        let r = if recursive {
            Err(crate::stage::staging_error(
                format!(
                    "`{}` calls itself; recursion inside a staged function cannot be staged",
                    func.name
                ),
                span,
            ))
        } else {
            self.run_fn(func, slots, span)
        };
        self.with_stager(span, |s| {
            s.active.pop();
            Ok(())
        })?;
        r
    }

    fn run_fn(&mut self, func: &Arc<FnValue>, slots: Vec<Option<Value>>, span: Span) -> R<Value> {
        for (p, slot) in func.params.iter().zip(slots) {
            let v = match slot {
                Some(v) => v,
                None => match &p.default {
                    // Defaults are evaluated in the declaring scope: only captured values
                    // and globals are visible, not the other parameters.
                    Some(d) => {
                        let frames = std::mem::take(&mut self.env.frames);
                        let r = self.expr(d);
                        self.env.frames = frames;
                        r?
                    }
                    None => {
                        return Err(errors::mismatch(
                            format!(
                                "missing argument `{}` in the call of `{}`",
                                p.name.name, func.name
                            ),
                            span,
                        ));
                    }
                },
            };
            let v = match &p.ty {
                Some(te) => self.fit_annotation(v, te, span)?,
                None => v,
            };
            if let Some(f) = self.env.frames.last_mut() {
                f.push((p.name.name.clone(), v));
            }
        }
        let result = match &func.body {
            FnBody::Decl(d) => match self.fn_body(&d.body) {
                Ok(v) | Err(Flow::Return(v)) => v,
                Err(Flow::Exit(o)) => self.call_result(*o, span)?,
                Err(e) => return Err(e),
            },
            FnBody::Closure(body) => match self.expr(body) {
                Ok(v) | Err(Flow::Return(v)) => v,
                Err(Flow::Exit(o)) => self.call_result(*o, span)?,
                Err(e) => return Err(e),
            },
        };
        match &func.body {
            FnBody::Decl(d) => match &d.ret {
                Some(te) => self.fit_annotation(result, te, span),
                None => Ok(result),
            },
            FnBody::Closure(_) => Ok(result),
        }
    }

    // -----------------------------------------------------------------------------------
    // Small conversions.

    /// The value of a scalar bool (conditions).
    pub fn scalar_bool(&self, v: &Value, span: Span) -> R<bool> {
        if crate::stage::has_staged(v) {
            return Err(crate::stage::staging_error(
                "this needs a bool now, but it is computed from the staged function's arguments"
                    .into(),
                span,
            ));
        }
        match v {
            Value::Tensor(t) if t.rank() == 0 && t.dtype == DType::Bool => {
                t.t.to_vec::<bool>()
                    .and_then(|v| v.first().copied())
                    .ok_or_else(|| errors::internal("a bool scalar could not be read", span))
            }
            other => Err(errors::mismatch(
                format!(
                    "a condition must be a scalar bool, found {}",
                    other.describe()
                ),
                span,
            )),
        }
    }

    /// The value of an integer scalar (range bounds, slice bounds, axes, sizes).
    pub fn scalar_int(&self, v: &Value, span: Span) -> R<i64> {
        if crate::stage::has_staged(v) {
            return Err(Flow::error(
                crate::stage::staging_diag(
                    "this needs an integer now (a size, a bound or an index), but it is \
                     computed from the staged function's arguments"
                        .into(),
                    span,
                )
                .with_hint("pass it as an integer argument: integer arguments are static"),
            ));
        }
        match v {
            Value::Tensor(t) if t.rank() == 0 && t.dtype.is_int() => {
                let c = self.cast(&t.t, DType::I64, span)?;
                c.to_vec::<i64>()
                    .and_then(|v| v.first().copied())
                    .ok_or_else(|| errors::internal("an integer scalar could not be read", span))
            }
            other => Err(errors::mismatch(
                format!("an integer is needed here, found {}", other.describe()),
                span,
            )),
        }
    }
}

/// A function declared `@jit` as a staged function value; others as they are.
fn jit_if_marked(d: &FnDecl, v: Value) -> Value {
    if let Some(attr) = d.attrs.iter().find(|a| &*a.name.name == "jit") {
        Value::Jit(Arc::new(crate::stage::jit::Jitted {
            f: v,
            name: d.name.name.clone(),
            parallel: crate::stage::parallel::Spec::of(attr),
        }))
    } else {
        v
    }
}

/// A function declared in a block, as a value.
fn block_fn(
    d: &Arc<FnDecl>,
    captured: &Option<Arc<Vec<(Name, Value)>>>,
    siblings: &Arc<[Arc<FnDecl>]>,
    src: usize,
) -> Value {
    Value::Fn(Arc::new(FnValue {
        name: d.name.name.clone(),
        params: d.params.clone().into(),
        body: FnBody::Decl(d.clone()),
        captured: captured.clone(),
        siblings: Some(siblings.clone()),
        src,
    }))
}

/// `x.shape`: a tuple of `i64` scalars, unit for a scalar.
pub(crate) fn shape_value(shape: &[usize]) -> Value {
    if shape.is_empty() {
        return Value::Unit;
    }
    Value::Tuple(
        shape
            .iter()
            .map(|&d| Value::tensor(Tensor::scalar(i64::try_from(d).unwrap_or(i64::MAX))))
            .collect(),
    )
}

/// Rebinding keeps a variable's dtype: a weak new value takes the old value's dtype.
fn keep_dtype(ev: &Eval<'_>, old: &Value, new: Value, span: Span) -> R<Value> {
    match (old, new) {
        (Value::Tensor(o), Value::Tensor(n)) if n.weak && !o.weak && n.dtype != o.dtype => {
            let t = ev.cast(&n.t, o.dtype, span)?;
            Ok(Value::Tensor(TensorVal::strong_of(t)))
        }
        (_, n) => Ok(n),
    }
}

/// The value of `-literal` for a number literal (`None` for anything else, and for the one
/// integer whose negation overflows).
fn negated_literal(kind: &ExprKind) -> Option<Value> {
    match *kind {
        ExprKind::Int(n) => Some(Value::Tensor(TensorVal {
            t: Tensor::scalar(n.checked_neg()?),
            dtype: DType::I64,
            weak: true,
        })),
        ExprKind::Float(x) => Some(Value::Tensor(TensorVal {
            t: Tensor::scalar(-x),
            dtype: DType::F32,
            weak: true,
        })),
        _ => None,
    }
}

/// Converts a tensor's storage with a CPU device of default limits (for printing, where
/// no session is at hand).
pub(crate) fn cast_storage(t: &Tensor, dtype: DType) -> Result<Tensor, DeviceError> {
    if t.dtype() == dtype {
        return Ok(t.clone());
    }
    devices::CpuDevice::new().exec(&Op::Cast { dtype }, &[t])
}

/// Diagnostics use this to name the text a span indexes.
pub(crate) fn source_name(st: &State, src: usize) -> Option<Arc<str>> {
    st.sources.get(src).map(|(n, _)| n.clone())
}

/// Why a tensor does not fit an annotated dtype and dims, or `None` when it fits. Known
/// sizes must match, a symbolic name must stand for one size throughout the annotation,
/// `_` and `?` match any size, and `...` any number of leading dims.
fn annotation_misfit(
    dtype: DType,
    dims: Option<&[lang::ast::DimExpr]>,
    t: &TensorVal,
) -> Option<String> {
    use lang::ast::DimExprKind;
    if dtype != t.dtype {
        return Some(format!("the dtype is {}, not {dtype}", t.dtype));
    }
    let shape = t.shape();
    let dims = dims.unwrap_or(&[]);
    let ellipsis = dims.iter().position(|d| d.kind == DimExprKind::Ellipsis);
    let (head, tail) = match ellipsis {
        Some(i) => (&dims[..i], &dims[i + 1..]),
        None => (dims, &[][..]),
    };
    let fixed = head.len() + tail.len();
    if (ellipsis.is_none() && shape.len() != dims.len()) || shape.len() < fixed {
        return Some(format!(
            "it has {} axes, the annotation {}",
            shape.len(),
            fixed
        ));
    }
    let pairs = head.iter().zip(shape.iter().enumerate()).chain(
        tail.iter()
            .zip(shape.iter().enumerate().skip(shape.len() - tail.len())),
    );
    let mut bound: HashMap<&str, usize> = HashMap::new();
    for (d, (axis, &size)) in pairs {
        match &d.kind {
            DimExprKind::Known(n) if *n != size as u64 => {
                return Some(format!("axis {axis} is {size}, not {n}"));
            }
            DimExprKind::Sym(name) => match bound.insert(name, size) {
                Some(before) if before != size => {
                    return Some(format!("`{name}` is {before} and {size}"));
                }
                _ => {}
            },
            _ => {}
        }
    }
    None
}

/// E0907: a value that does not fit its annotation, found where it arrives (`found`
/// describes the value, `why` says what differs).
fn misfit(te: &TypeExpr, span: Span, found: &str, why: &str) -> Flow {
    Flow::error(
        lang::Diagnostic::error(
            "E0907",
            format!(
                "the value is {found}, but the annotation says {}: {why}",
                annotation_text(te)
            ),
            te.span,
        )
        .with_primary_label("expected because of this annotation")
        .with_label(span, format!("this is {found}")),
    )
}

/// The annotation as written, for messages.
fn annotation_text(te: &TypeExpr) -> String {
    use lang::ast::DimExprKind;
    match &te.kind {
        TypeExprKind::Tensor {
            dtype,
            dims: Some(dims),
        } => {
            let dims: Vec<String> = dims
                .iter()
                .map(|d| match &d.kind {
                    DimExprKind::Known(n) => n.to_string(),
                    DimExprKind::Sym(s) => s.to_string(),
                    DimExprKind::Any => "_".into(),
                    DimExprKind::Unknown => "?".into(),
                    DimExprKind::Ellipsis => "...".into(),
                })
                .collect();
            format!("{}[{}]", dtype.name, dims.join(", "))
        }
        TypeExprKind::Tensor { dtype, dims: None } => dtype.name.to_string(),
        TypeExprKind::Tuple(ts) if ts.len() == 1 => {
            format!(
                "({},)",
                ts.first().map_or_else(String::new, annotation_text)
            )
        }
        TypeExprKind::Tuple(ts) => format!(
            "({})",
            ts.iter()
                .map(annotation_text)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeExprKind::Record(fs) => format!(
            "{{{}}}",
            fs.iter()
                .map(|(n, t)| format!("{}: {}", n.name, annotation_text(t)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeExprKind::Str => "str".into(),
        TypeExprKind::Fn { .. } => "a function type".into(),
    }
}

/// The device an operation runs on, and its operands moved there when some had to move.
type Placement = (Arc<dyn Device>, Option<Vec<Tensor>>);
