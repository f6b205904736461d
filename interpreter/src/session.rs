//! [`Session`]: the one entry point for running MindScript — the CLI runs a script as one
//! entry, the REPL runs each entry in turn, the tests run programs and read what they
//! printed.
//!
//! Each entry is parsed and checked with the session's persistent checker first; an entry
//! with errors runs nothing. A checked entry runs statement by statement on a thread with a
//! large stack (so that deep MindScript recursion meets the call depth limit, an error,
//! before the Rust stack), and stops at the first runtime error, keeping what the
//! statements before it did (like the Python REPL).

pub use crate::stage::parallel::Mode as ParallelMode;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use devices::{CpuDevice, Device, Tensor};
use lang::check::{Checker, ModuleId};
use lang::diagnostics::{RenderOptions, SourceFile, render};
use lang::{Diagnostic, Span};

use crate::eval::errors::{Flow, trace};
use crate::eval::{Eval, State};
use crate::value::Value;

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The seed of the random stream (`--seed`; `seed(n)` changes it).
    pub seed: i64,
    /// The device every primitive runs on.
    pub device: Arc<dyn Device>,
    /// Keep what `print` writes in [`Outcome::output`] instead of writing it to stdout.
    pub capture_output: bool,
    /// The most MindScript calls that may nest before it is an error (E0904).
    pub max_call_depth: usize,
    /// The stack of the thread that evaluates, in bytes.
    pub stack_bytes: usize,
    /// The words given after the script's name (`ms train.ms --epochs 5`), which `arg`
    /// reads.
    pub script_args: Vec<String>,
    /// The script being run, when there is one: `import "file.ms"` resolves relative to
    /// its folder (the REPL resolves relative to the working directory).
    pub script_path: Option<std::path::PathBuf>,
    /// Graph mode (`--mode graph`): every named function called from the top level is
    /// staged, as `@jit` functions always are.
    pub graph_mode: bool,
    /// Say on stderr why a staged function is staged again (`--explain-restage`).
    pub explain_restage: bool,
    /// Check every staged call against eager evaluation and against its graph as staged
    /// (`ms run --check-modes`): the first difference stops the entry with E0914, naming
    /// the pass and the node to blame; [`Session::check_summary`] says what was checked.
    pub check_modes: bool,
    /// The optimizer's passes for staged graphs, in order (`--passes`); `None` is
    /// `ir::passes::PIPELINE`.
    pub passes: Option<Vec<ir::passes::Pass>>,
    /// Whether staged graphs may write a result into the buffer of an operand that dies
    /// there (`ir::passes::memory`); off, every result gets a buffer of its own, with the
    /// same values. For measuring what writing in place saves (`bench/memory.sh`).
    pub in_place: bool,
    /// `--devices cpu:N`: a mesh of N virtual CPU devices for parallel functions
    /// (`@jit(parallel: ...)`); `None` when not given (a parallel function then gets the
    /// `devices:` it asks for).
    pub mesh: Option<usize>,
    /// `--parallel MODE`: every staged function runs in this parallel mode on the mesh
    /// (all of `mesh`'s devices), unless its own `@jit(parallel: ...)` says otherwise, as
    /// MindSpore's `set_auto_parallel_context(parallel_mode=...)` sets it for a whole
    /// program; `None` runs functions without a `parallel:` on one device.
    pub parallel: Option<ParallelMode>,
    /// Keep the tensor outputs of every staged call, in order
    /// ([`Session::staged_outputs`]): how the tests compare a program's steps on a mesh
    /// with its steps on one device.
    pub record_staged: bool,
    /// How `parallel: "auto"` plans: the mesh's shape (`ms plan --mesh 2x4`; `None` tries
    /// every shape the devices allow), the most bytes a device may hold (`--mem-cap`) and
    /// the hardware profile of the estimates (`--profile`, `cpu` by default).
    pub planning: (Option<Vec<usize>>, Option<u64>, Option<String>),
    /// `--plan NAME=FILE`: saved plans that decide how the named parallel functions are
    /// split (function name, plan, file name).
    pub plans: Vec<(String, ir::parallel::SavedPlan, String)>,
    /// The folder that holds the runs' summaries (`--logdir`); `runs` in the working
    /// directory when `None`. A run's event file goes into `<logdir>/<script>-<start
    /// time>/` (`repl-<start time>` without a script), made on the first `log_*` call.
    pub logdir: Option<std::path::PathBuf>,
    /// Whether `for` loops over `progress(...)` and long ones over `batches(...)` show a
    /// progress bar on stderr (`ms` sets it when stderr is a terminal).
    pub progress_bars: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            seed: 0,
            device: Arc::new(CpuDevice::new()),
            capture_output: false,
            max_call_depth: 1000,
            stack_bytes: 256 << 20,
            script_args: Vec::new(),
            script_path: None,
            graph_mode: false,
            explain_restage: false,
            check_modes: false,
            passes: None,
            in_place: true,
            mesh: None,
            parallel: None,
            record_staged: false,
            planning: (None, None, None),
            plans: Vec::new(),
            logdir: None,
            progress_bars: false,
        }
    }
}

/// What evaluating one entry gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The values of the entry's top-level expression statements that are not unit, in
    /// order (the REPL echoes them; scripts do not).
    pub values: Vec<Value>,
    /// Syntax and type errors (then nothing ran), or the runtime error that stopped the
    /// entry.
    pub diagnostics: Vec<Diagnostic>,
    /// What `print` wrote during this entry, when the session captures output; empty
    /// otherwise.
    pub output: String,
}

impl Outcome {
    /// True when the entry had an error (before or while running).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// A sink that keeps what is written (for tests and captured sessions, and for the
/// comparisons of `--check-modes`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// What was written so far, kept.
    pub(crate) fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut v) => {
                v.extend_from_slice(buf);
                Ok(buf.len())
            }
            Err(_) => Err(std::io::Error::other("the output buffer was poisoned")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A MindScript session: the checker and the values that persist between entries.
pub struct Session {
    checker: Checker,
    /// The files the checker's loader read and the evaluator has not taken yet.
    imports: crate::check::ReadFiles,
    /// The script the session runs, when there is one and it can be found: the file its
    /// entries are (their imports resolve against its folder).
    script: Option<ModuleId>,
    state: State,
    capture: Option<Capture>,
    stack_bytes: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("globals", &self.state.globals.len())
            .field("entries", &self.state.sources.len())
            .finish_non_exhaustive()
    }
}

impl Default for Session {
    fn default() -> Session {
        Session::new()
    }
}

/// An expression making zeros of an annotated type, when every size is known.
fn zeros_of(te: &lang::ast::TypeExpr, sizes: &[(lang::ast::Name, usize)]) -> Option<String> {
    use lang::ast::{DimExprKind, TypeExprKind};
    match &te.kind {
        TypeExprKind::Tensor { dtype, dims } => {
            let dims: Option<Vec<String>> = dims
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|d| match &d.kind {
                    DimExprKind::Known(n) => Some(n.to_string()),
                    DimExprKind::Sym(s) => sizes
                        .iter()
                        .find(|(m, _)| m == s)
                        .map(|(_, n)| n.to_string()),
                    _ => None,
                })
                .collect();
            Some(format!("zeros([{}], \"{}\")", dims?.join(", "), dtype.name))
        }
        TypeExprKind::Tuple(items) => {
            let items: Option<Vec<String>> = items.iter().map(|t| zeros_of(t, sizes)).collect();
            let items = items?;
            Some(if items.len() == 1 {
                format!("({},)", items[0])
            } else {
                format!("({})", items.join(", "))
            })
        }
        TypeExprKind::Record(fields) => {
            let fields: Option<Vec<String>> = fields
                .iter()
                .map(|(n, t)| zeros_of(t, sizes).map(|z| format!("{}: {z}", n.name)))
                .collect();
            Some(format!("{{{}}}", fields?.join(", ")))
        }
        _ => None,
    }
}

/// The lines of `a` not in `b` (`-`) and of `b` not in `a` (`+`), in order, by a longest
/// common subsequence of lines (graphs are short; the quadratic table is fine). Value
/// numbers are renumbered by each print, so a pass that drops a line also shows the lines
/// after it renumbered.
fn line_diff(a: &str, b: &str) -> String {
    let (x, y): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let (n, m) = (x.len(), y.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if x[i] == y[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && x[i] == y[j] {
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {}\n", x[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {}\n", y[j]));
            j += 1;
        }
    }
    out
}

/// The graph inputs among the first `n_args` after the random key that are float tensors
/// (what `ms ir --stage grad` differentiates with respect to).
fn float_args(graph: &ir::Graph, n_args: usize) -> Vec<usize> {
    let tensors: Vec<ir::graph::ValueId> = graph
        .inputs()
        .iter()
        .copied()
        .filter(|&v| !graph.ty(v).is_token())
        .collect();
    (1..=n_args)
        .filter(|&i| {
            tensors
                .get(i)
                .is_some_and(|&v| graph.ty(v).tensor().is_some_and(|t| t.dtype.is_float()))
        })
        .collect()
}

/// The symbolic dims a type names, each once, in order.
/// The types of `ms export --args` (`"f32[1, 784], i64[1]"`), parsed as MindScript types.
fn parse_arg_types(text: &str) -> Result<Vec<(lang::ast::TypeExpr, String)>, String> {
    use lang::ast::{StmtKind, TypeExprKind};
    let src = format!("type __MsExportArgs = ({text},)");
    let (program, diags) = lang::syntax::parse(&src);
    if let Some(d) = diags.iter().find(|d| d.is_error()) {
        return Err(format!(
            "--args \"{text}\" is not a list of types: {}",
            d.message
        ));
    }
    match program.stmts.first().map(|s| &s.kind) {
        Some(StmtKind::TypeAlias { ty, .. }) => match &ty.kind {
            TypeExprKind::Tuple(items) => Ok(items
                .iter()
                .map(|t| (t.clone(), src.get(t.span.range()).unwrap_or("").to_string()))
                .collect()),
            _ => Err(format!("--args \"{text}\" is not a list of types")),
        },
        _ => Err(format!("--args \"{text}\" is not a list of types")),
    }
}

fn sym_names(te: &lang::ast::TypeExpr, out: &mut Vec<lang::ast::Name>) {
    use lang::ast::{DimExprKind, TypeExprKind};
    match &te.kind {
        TypeExprKind::Tensor { dims, .. } => {
            for d in dims.as_deref().unwrap_or(&[]) {
                if let DimExprKind::Sym(s) = &d.kind
                    && !out.contains(s)
                {
                    out.push(s.clone());
                }
            }
        }
        TypeExprKind::Tuple(items) => items.iter().for_each(|t| sym_names(t, out)),
        TypeExprKind::Record(fields) => fields.iter().for_each(|(_, t)| sym_names(t, out)),
        _ => {}
    }
}

/// What `ms run --check-modes` checked: staged calls that agreed with eager evaluation and
/// with their graphs as staged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSummary {
    /// Staged calls checked.
    pub calls: usize,
    /// Distinct graphs those calls ran.
    pub graphs: usize,
    /// The passes of the pipeline, in order.
    pub passes: Vec<String>,
}

impl std::fmt::Display for CheckSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let passes = if self.passes.is_empty() {
            "no passes".to_string()
        } else {
            format!("passes: {}", self.passes.join(", "))
        };
        write!(
            f,
            "check-modes: {} of {} agreed with eager evaluation and with the graph as staged \
             ({passes})",
            plural(self.calls, "staged call", "staged calls"),
            plural(self.graphs, "graph", "graphs"),
        )
    }
}

/// How `ms export --onnx` (and `Session::export_onnx`) stages and exports a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxOptions {
    /// The types of the arguments, as written in MindScript (`"f32[1, 784], i64[1]"`): of
    /// the arguments after the first when `params` is given, of all of them otherwise.
    /// `None`: the parameters' annotations, or else the graph of the function's last call.
    pub args: Option<String>,
    /// A safetensors checkpoint whose record is the first argument, baked into the model
    /// as initializers named by its dotted names.
    pub params: Option<std::path::PathBuf>,
    /// The ONNX opset (13 to 21).
    pub opset: i64,
}

impl Default for OnnxOptions {
    fn default() -> OnnxOptions {
        OnnxOptions {
            args: None,
            params: None,
            opset: crate::io::onnx::DEFAULT_OPSET,
        }
    }
}

/// An exported ONNX model: its bytes and what is in it.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    /// The `ModelProto`, encoded.
    pub bytes: Vec<u8>,
    /// The external data file's bytes, when initializers were written outside the model
    /// (`Session::export_models` with `io::onnx::External`); it goes beside the model
    /// under the location it names (`OUT.onnx.data`).
    pub external: Option<Vec<u8>>,
    /// Its inputs, outputs and parameters, in words.
    pub summary: crate::stage::export::ExportSummary,
}

/// An exported MindScript model file (`.msir`): its bytes and what is in it.
#[derive(Clone, Debug)]
pub struct MirModel {
    /// The whole file.
    pub bytes: Vec<u8>,
    /// Its inputs, outputs and parameters, in words.
    pub summary: crate::stage::export::ExportSummary,
}

/// A function staged for export: its graph, the names of the arguments it was staged
/// with, and the checkpoint bound to the first of them.
struct ForExport {
    staged: Arc<crate::stage::jit::StagedFn>,
    names: Vec<lang::ast::Name>,
    checkpoint: Option<Value>,
}

/// Why `Session::export_onnx` failed: a message, or a call of the program that failed
/// (staging the function, loading the checkpoint), with its diagnostics.
#[derive(Debug)]
pub enum ExportFailure {
    /// What went wrong, in one line.
    Message(String),
    /// The text that ran and its outcome, for rendering.
    Program(String, Outcome),
}

impl std::fmt::Display for ExportFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportFailure::Message(m) => f.write_str(m),
            ExportFailure::Program(call, o) => {
                let first = o.diagnostics.first().map_or("", |d| d.message.as_str());
                write!(f, "`{call}` failed: {first}")
            }
        }
    }
}

/// Which form of a staged function `ms ir` and `:ir` show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrStage {
    /// The graph as staged.
    Raw,
    /// Its reverse-mode derivative on the IR: the outputs, then the gradient of the first
    /// output with respect to every float tensor argument.
    Grad,
    /// The graph after the session's pipeline of passes (`ir::passes::PIPELINE` unless
    /// [`Session::set_passes`] chose others): what runs.
    Opt,
    /// The graphs the devices of the mesh run, for a parallel function (`@jit(parallel:
    /// ...)`) that ran on more than one device: partitioned, then optimized.
    Parallel,
}

impl Session {
    /// A session on the CPU with seed 0, printing to stdout.
    pub fn new() -> Session {
        Session::with_options(Options::default())
    }

    /// A session set up by `options`.
    pub fn with_options(options: Options) -> Session {
        let capture = options.capture_output.then(Capture::default);
        let out: Box<dyn Write + Send> = match &capture {
            Some(c) => Box::new(c.clone()),
            None => Box::new(std::io::stdout()),
        };
        let mut state = State::new(options.device, options.seed, out);
        state.max_depth = options.max_call_depth;
        state.script_args = options.script_args;
        state.graph_mode = options.graph_mode;
        state.explain_restage = options.explain_restage;
        state.in_place = options.in_place;
        state.mesh = options.mesh;
        state.parallel = options.parallel;
        state.staged_outputs = options.record_staged.then(Vec::new);
        let (mesh, cap, profile) = options.planning;
        state.planning = crate::stage::parallel::Planning {
            mesh,
            cap,
            profile: profile.unwrap_or_else(|| "cpu".to_string()),
            plans: options.plans,
        };
        state.summaries =
            crate::insight::Summaries::new(options.logdir.clone(), options.script_path.as_deref());
        state.progress_bars = options.progress_bars;
        if let Some(passes) = &options.passes {
            state.passes = crate::stage::pipeline::Pipeline::of(passes);
        }
        state.check = options
            .check_modes
            .then(crate::stage::check::CheckModes::default);
        // `import "file.ms"` resolves against the script's folder; in the REPL (no
        // script) against the working directory.
        let base = options
            .script_path
            .as_deref()
            .and_then(std::path::Path::parent)
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let script = options
            .script_path
            .as_deref()
            .and_then(crate::check::module_id);
        let (loader, imports) = crate::check::FileLoader::new(base);
        Session {
            checker: Checker::with_loader(Box::new(loader)),
            imports,
            script,
            state,
            capture,
            stack_bytes: options.stack_bytes,
        }
    }

    /// Parses, checks and runs one entry (a whole script, or one REPL entry).
    ///
    /// A Ctrl-C from before the entry is forgotten; one during it (`devices::cancel`, set by
    /// the command line's SIGINT handler) stops it with E0911, keeping what ran before.
    pub fn eval(&mut self, src: &str) -> Outcome {
        let origin = self.script.clone();
        self.eval_in(src, origin)
    }

    /// Parses, checks and runs `src`, the text of the file at `path` (the REPL's `:load`):
    /// like [`Session::eval`], but the text's imports resolve against the file's folder.
    pub fn eval_file(&mut self, path: &std::path::Path, src: &str) -> Outcome {
        let origin = crate::check::module_id(path);
        self.eval_in(src, origin)
    }

    fn eval_in(&mut self, src: &str, origin: Option<ModuleId>) -> Outcome {
        devices::cancel::clear();
        let outcome = self.eval_entry(src, origin);
        // A request that came too late to stop anything must not stop the next entry.
        devices::cancel::clear();
        outcome
    }

    fn eval_entry(&mut self, src: &str, origin: Option<ModuleId>) -> Outcome {
        let (program, mut diagnostics) = lang::syntax::parse(src);
        diagnostics.extend(
            self.checker
                .check_program_in(src, &program, origin.as_ref()),
        );
        diagnostics.sort_by_key(|d| (d.file.is_some(), d.primary.span.start, d.primary.span.end));
        // The files the entry imports join the sources whether or not it checks: the
        // diagnostics may point into them, and the evaluator runs the texts checked, found
        // by the same resolutions the checker made.
        let loaded = self.imports.take();
        for (id, text) in loaded.files {
            self.state.add_module_source(id, Arc::from(text));
        }
        for (from, path, id) in loaded.resolved {
            self.state.resolved.insert((from, Arc::from(path)), id);
        }
        // A standard module the entry imports joins them the same way, once: its text is
        // `stdlib`'s rather than a file's.
        for id in self.checker.standard_modules() {
            if self.state.file_sources.contains_key(&id) {
                continue;
            }
            let Some(text) = stdlib::module(id.name()) else {
                continue;
            };
            self.state.add_module_source(id, Arc::from(text));
        }
        if diagnostics.iter().any(Diagnostic::is_error) {
            return Outcome {
                values: Vec::new(),
                diagnostics,
                output: String::new(),
            };
        }
        let entries = self.state.sources.len() - self.state.file_sources.len();
        let name: Arc<str> = Arc::from(format!("<entry {}>", entries + 1));
        self.state.sources.push((name, Arc::from(src)));
        let src_id = self.state.sources.len() - 1;
        if let Some(origin) = origin {
            self.state.origins.insert(src_id, origin);
        }
        let result = run_on_big_stack(&mut self.state, self.stack_bytes, |st| {
            let mut ev = Eval::new(st, src_id);
            match ev.program(&program.stmts) {
                Ok(values) => Ok(values),
                Err(Flow::Error(mut e)) => {
                    trace(&mut e, &ev);
                    Err(Box::new(e.diag))
                }
                // The checker refuses `break`, `continue` and `return` outside their
                // constructs, so these cannot reach the top level.
                Err(_) => Err(Box::new(Diagnostic::error(
                    "E0999",
                    "internal error of the evaluator: control flow escaped to the top level",
                    Span::default(),
                ))),
            }
        });
        let values = match result {
            Ok(values) => values,
            Err(d) => {
                diagnostics.push(*d);
                Vec::new()
            }
        };
        // What the entry logged reaches the file before the next prompt (or the end).
        if let Err(e) = self.state.summaries.flush()
            && !diagnostics.iter().any(Diagnostic::is_error)
        {
            diagnostics.push(crate::eval::builtins::summary_write_error(
                &e,
                Span::default(),
            ));
        }
        if let Some(last) = values.last() {
            self.checker.set_global("_", last.ty());
            self.state.globals.insert(Arc::from("_"), last.clone());
        }
        Outcome {
            values,
            diagnostics,
            output: self.take_output(),
        }
    }

    /// Writes the summaries logged so far to their event file; the command line calls it
    /// before it exits, so that an error is reported rather than lost.
    pub fn flush_summaries(&mut self) -> Result<(), crate::insight::WriteError> {
        self.state.summaries.flush()
    }

    /// Makes `log_*` calls write nothing from now on (`ms ir` runs a script only to see
    /// what it stages, and must not leave a run behind).
    pub fn mute_summaries(&mut self) {
        self.state.summaries.muted = true;
    }

    /// The event file this session's summaries go to, once a `log_*` call has made it.
    pub fn summary_file(&self) -> Option<&std::path::Path> {
        self.state.summaries.path()
    }

    /// What was printed since the last call, when output is captured.
    fn take_output(&mut self) -> String {
        let Some(c) = &self.capture else {
            return String::new();
        };
        match c.0.lock() {
            Ok(mut v) => String::from_utf8_lossy(&std::mem::take(&mut *v)).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// Renders an outcome's diagnostics against the entry's text (`name` is what the
    /// report calls it, e.g. the script's path) and the earlier entries they may point
    /// into.
    pub fn render(
        &self,
        outcome: &Outcome,
        name: &str,
        src: &str,
        options: RenderOptions,
    ) -> String {
        let main = SourceFile { name, text: src };
        let imports: Vec<SourceFile<'_>> = self
            .state
            .sources
            .iter()
            .map(|(n, t)| SourceFile { name: n, text: t })
            .collect();
        outcome
            .diagnostics
            .iter()
            .map(|d| render(d, main, &imports, options))
            .collect()
    }

    /// The value of a top-level variable, if it has one.
    pub fn global(&self, name: &str) -> Option<&Value> {
        self.state.globals.get(name)
    }

    /// The checker, for `:type` and completion.
    /// Graph mode on or off from the next entry on (`:mode`).
    pub fn set_graph_mode(&mut self, on: bool) {
        self.state.graph_mode = on;
    }

    /// Makes `device` the session's default device (the REPL's `:device`): new values are
    /// made there and primitives run there; values made before stay where they are and
    /// move to it when an operation needs them there.
    pub fn set_device(&mut self, device: Arc<dyn Device>) {
        self.state.device = device;
    }

    /// The session's default device.
    pub fn device(&self) -> devices::DeviceId {
        self.state.device.id()
    }

    /// Whether graph mode is on.
    pub fn graph_mode(&self) -> bool {
        self.state.graph_mode
    }

    /// How many times a function was staged in this session (a cached graph that runs
    /// again does not count).
    pub fn stagings(&self) -> usize {
        self.state.jit.stagings
    }

    /// The optimizer's passes staged graphs go through from now on, in order (the default
    /// is `ir::passes::PIPELINE`; an empty list runs graphs as staged). The graphs staged
    /// so far were optimized with the passes of their time, so they are dropped: the next
    /// call of each function stages it again.
    pub fn set_passes(&mut self, passes: Vec<ir::passes::Pass>) {
        self.state.passes = crate::stage::pipeline::Pipeline::of(&passes);
        self.state.jit.forget();
    }

    /// The names of the passes staged graphs go through, in order.
    pub fn passes(&self) -> Vec<String> {
        self.state.passes.names()
    }

    /// Puts a graph transformation of a test's own into the pipeline at position `at` (0
    /// runs it first; past the end, last), named `name` in reports, and drops the graphs
    /// staged so far as [`Session::set_passes`] does. The tests of `--check-modes` use it
    /// to give the pipeline a deliberately wrong pass, which the real passes never are.
    #[doc(hidden)]
    pub fn insert_test_pass(
        &mut self,
        at: usize,
        name: &str,
        pass: impl Fn(&ir::Graph) -> Result<ir::Graph, String> + Send + Sync + 'static,
    ) {
        let steps = &mut self.state.passes.steps;
        let at = at.min(steps.len());
        steps.insert(
            at,
            crate::stage::pipeline::Step::Test(Arc::from(name), Arc::new(pass)),
        );
        self.state.jit.forget();
    }

    /// The tensor outputs of every staged call so far, in call order (the random key left
    /// out), when [`Options::record_staged`] asked for them; empty otherwise.
    pub fn staged_outputs(&self) -> &[Vec<Tensor>] {
        self.state.staged_outputs.as_deref().unwrap_or_default()
    }

    /// What `--check-modes` checked so far (every staged call agreed, or the entry that
    /// found a difference stopped with E0914); `None` when the session does not check.
    pub fn check_summary(&self) -> Option<CheckSummary> {
        self.state.check.as_ref().map(|c| CheckSummary {
            calls: c.calls,
            graphs: c.graphs.len(),
            passes: self.state.passes.names(),
        })
    }

    /// The text of the graphs staged so far for the function `name` (a global), one per
    /// signature; `None` when `name` is not a function or was never staged.
    pub fn staged_ir(&self, name: &str) -> Option<Vec<String>> {
        self.staged_ir_at(name, IrStage::Raw, false).ok()
    }

    /// Calls of the function `name` on zeros of its parameters' annotated types
    /// (`f(zeros([2, 3], "f32"))`), for staging a function the program never called: one
    /// call, or two when the annotations name symbolic dims, at two sizes each, so that the
    /// graph is staged general in them where it can be. Empty when a parameter has no
    /// annotation, or one with a dim that is neither a size nor a name.
    pub fn example_calls(&self, name: &str) -> Vec<String> {
        let f = match self.state.globals.get(name) {
            Some(Value::Jit(j)) => j.f.clone(),
            Some(other) => other.clone(),
            None => return Vec::new(),
        };
        let Value::Fn(func) = f else {
            return Vec::new();
        };
        let mut syms = Vec::new();
        for p in func.params.iter() {
            if let Some(t) = &p.ty {
                sym_names(t, &mut syms);
            }
        }
        // Each symbolic dim gets its own size in each call, different between the calls.
        let n = syms.len();
        let sizes = |second: bool| -> Vec<(lang::ast::Name, usize)> {
            syms.iter()
                .enumerate()
                .map(|(k, s)| (s.clone(), if second { 3 + n + k } else { 2 + k }))
                .collect()
        };
        let rounds: &[bool] = if syms.is_empty() {
            &[false]
        } else {
            &[false, true]
        };
        rounds
            .iter()
            .filter_map(|&second| {
                let sizes = sizes(second);
                let args: Option<Vec<String>> = func
                    .params
                    .iter()
                    .map(|p| p.ty.as_ref().and_then(|t| zeros_of(t, &sizes)))
                    .collect();
                Some(format!("{name}({})", args?.join(", ")))
            })
            .collect()
    }

    /// Stages the function `name`, if it was never staged, by [`Session::example_calls`]
    /// on zeros of its annotated types, leaving no trace but its graphs: what the calls
    /// print is dropped and the random stream is where it was. Gives the failed call and
    /// its outcome when one fails.
    pub fn stage_at_annotations(&mut self, name: &str) -> Result<(), (String, Outcome)> {
        if self.staged_ir_at(name, IrStage::Raw, false).is_ok() {
            return Ok(());
        }
        let (seed, offset) = (self.state.seed, self.state.offset);
        let last = self.state.globals.get("_").cloned();
        let out = self.swap_output(Box::new(std::io::sink()));
        let mut failed = None;
        for call in self.example_calls(name) {
            let o = self.eval(&call);
            if o.has_errors() {
                failed = Some((call, o));
                break;
            }
        }
        self.swap_output(out);
        (self.state.seed, self.state.offset) = (seed, offset);
        // `_` (the REPL's last value) is not the example's.
        let last = last.unwrap_or(Value::Unit);
        self.checker.set_global("_", last.ty());
        self.state.globals.insert(Arc::from("_"), last);
        failed.map_or(Ok(()), Err)
    }

    /// The graphs staged so far for the function `name`, one per signature, at `stage`:
    /// as staged, or differentiated on the IR with respect to every float tensor of the
    /// arguments (`ms ir --stage grad`). With `spans`, each node shows its source span.
    pub fn staged_ir_at(
        &self,
        name: &str,
        stage: IrStage,
        spans: bool,
    ) -> Result<Vec<String>, String> {
        let not_staged = || {
            format!(
                "`{name}` has no staged graph: it must be a function that was called (a `@jit` \
                 function, or any named function in graph mode)"
            )
        };
        let f = self.state.globals.get(name).ok_or_else(not_staged)?;
        let graphs = self.state.jit.graphs(crate::stage::jit::fn_key(f));
        if graphs.is_empty() {
            return Err(not_staged());
        }
        let opts = ir::graph::PrintOptions { spans };
        let mut out = Vec::with_capacity(graphs.len());
        // A graph general in its symbolic dims stands for the graphs staged at their sizes.
        let shown = graphs
            .iter()
            .filter(|g| g.general || !graphs.iter().any(|h| h.general && h.covers(g)));
        if stage == IrStage::Parallel {
            let texts: Vec<String> = graphs
                .iter()
                .filter_map(|g| g.mesh_plan())
                .flat_map(|p| p.graph_texts(opts))
                .collect();
            if texts.is_empty() {
                return Err(format!(
                    "`{name}` has no partitioned graph: it must be a `@jit(parallel: \"data\")` \
                     function that ran on more than one device"
                ));
            }
            return Ok(texts);
        }
        for g in shown {
            let graph = match stage {
                IrStage::Parallel => g.graph.clone(),
                IrStage::Raw => g.raw.clone(),
                IrStage::Opt => g.graph.clone(),
                IrStage::Grad => {
                    let grad = |graph: &ir::Graph| {
                        autodiff::graph::value_and_grad(graph, &float_args(graph, g.n_args))
                            .map_err(|e| format!("`{name}` cannot be differentiated: {e}"))
                    };
                    // IR autodiff works on concrete shapes: a general graph's derivative is
                    // the generalization of the derivatives of two of its stagings.
                    match (&g.staged, graphs.iter().find(|h| !h.general && g.covers(h))) {
                        (Some(mine), Some(h)) => {
                            ir::graph::generalize(&grad(&h.graph)?, &grad(mine)?, &g.sym_sizes(h))
                                .map_err(|e| {
                                format!("the derivative of `{name}` is not general: {e}")
                            })?
                        }
                        _ => grad(&g.raw)?,
                    }
                }
            };
            out.push(ir::graph::print(&graph, opts));
        }
        Ok(out)
    }

    /// The function `name` as an ONNX model (`ms export --onnx`, `docs/export.md`): staged
    /// at the types `options.args` gives (with symbolic dims: at two sizes, and the
    /// graph general in them), or at its parameters' annotations, or else the graph of its
    /// last call; with a checkpoint, the checkpoint's record is its first argument and is
    /// baked in. What staging prints is dropped and the random stream stays where it was.
    /// Every initializer is inside the model (one over 2 GiB is an error): with
    /// [`Session::export_models`], large ones go to an external data file.
    pub fn export_onnx(
        &mut self,
        name: &str,
        options: &OnnxOptions,
    ) -> Result<OnnxModel, ExportFailure> {
        let inside = crate::io::onnx::External {
            mode: crate::io::onnx::ExternalMode::Never,
            ..crate::io::onnx::External::default()
        };
        let (onnx, _) = self.export_models(name, options, Some(&inside), false)?;
        onnx.ok_or_else(|| ExportFailure::Message(format!("`{name}` was not exported")))
    }

    /// The function `name` as a MindScript model file (`ms export --mir`, `.msir`,
    /// `docs/export.md`): the graph [`Session::export_onnx`] would export (staged the same
    /// way; `options.opset` is not used), in the IR's text form, with the same parameters
    /// baked in; `load_model` runs it.
    pub fn export_mir(
        &mut self,
        name: &str,
        options: &OnnxOptions,
    ) -> Result<MirModel, ExportFailure> {
        let (_, mir) = self.export_models(name, options, None, true)?;
        mir.ok_or_else(|| ExportFailure::Message(format!("`{name}` was not exported")))
    }

    /// Stages `name` once for export and makes the ONNX model (when `onnx` says where its
    /// external data goes, if anywhere) and the `.msir` model file (`mir`) of that one
    /// graph.
    pub fn export_models(
        &mut self,
        name: &str,
        options: &OnnxOptions,
        onnx: Option<&crate::io::onnx::External>,
        mir: bool,
    ) -> Result<(Option<OnnxModel>, Option<MirModel>), ExportFailure> {
        use ExportFailure::Message;
        let ForExport {
            staged,
            names,
            checkpoint,
        } = self.stage_export(name, options)?;
        let onnx = if let Some(external) = onnx {
            let doc = format!("MindScript function `{name}`");
            let (spec, summary) = crate::stage::export::onnx_spec(
                &staged,
                &names,
                checkpoint.as_ref(),
                options.opset,
                doc,
            )
            .map_err(Message)?;
            let bytes = crate::io::onnx::export_with(&staged.graph, &spec, external)
                .map_err(|e| Message(format!("`{name}`: {e}")))?;
            Some(OnnxModel {
                bytes: bytes.model,
                external: bytes.external,
                summary,
            })
        } else {
            None
        };
        let mir = if mir {
            let (bytes, summary) =
                crate::stage::export::mir_file(&staged, &names, checkpoint.as_ref(), name)
                    .map_err(|m| Message(format!("`{name}`: {m}")))?;
            Some(MirModel { bytes, summary })
        } else {
            None
        };
        Ok((onnx, mir))
    }

    /// Stages `name` for export (see [`Session::export_onnx`]): the graph, the names of the
    /// arguments it was staged with, and the checkpoint bound to the first of them.
    fn stage_export(
        &mut self,
        name: &str,
        options: &OnnxOptions,
    ) -> Result<ForExport, ExportFailure> {
        use ExportFailure::Message;
        let f = self
            .state
            .globals
            .get(name)
            .cloned()
            .ok_or_else(|| Message(format!("there is no function `{name}`")))?;
        let func = match &f {
            Value::Fn(func) => func.clone(),
            Value::Jit(j) => match &j.f {
                Value::Fn(func) => func.clone(),
                _ => return Err(Message(format!("`{name}` is not a named function"))),
            },
            other => {
                return Err(Message(format!(
                    "`{name}` is {}, not a function",
                    other.describe()
                )));
            }
        };
        let param_names: Vec<lang::ast::Name> =
            func.params.iter().map(|p| p.name.name.clone()).collect();
        // The checkpoint, loaded by the program's own `load` (its errors are diagnostics).
        const CKPT: &str = "__ms_export_params";
        let checkpoint = match &options.params {
            None => None,
            Some(path) => {
                if param_names.is_empty() {
                    return Err(Message(format!(
                        "`{name}` takes no arguments, so a checkpoint has nothing to bind to"
                    )));
                }
                let call = format!("let {CKPT} = load({:?})", path.to_string_lossy());
                let o = self.quiet_eval(&call);
                if o.has_errors() {
                    return Err(ExportFailure::Program(call, o));
                }
                let v = self.state.globals.remove(CKPT);
                if !matches!(v, Some(Value::Record(_))) {
                    return Err(Message(format!(
                        "{} does not hold a record of parameters",
                        path.display()
                    )));
                }
                v
            }
        };
        let skip = usize::from(checkpoint.is_some());
        // The types to stage at, with their text: given, or annotated.
        let types: Option<Vec<(lang::ast::TypeExpr, String)>> = match &options.args {
            Some(text) => Some(parse_arg_types(text).map_err(Message)?),
            None => {
                let src = self
                    .state
                    .sources
                    .get(func.src)
                    .map(|(_, t)| t.clone())
                    .unwrap_or_default();
                func.params[skip.min(func.params.len())..]
                    .iter()
                    .filter(|p| p.default.is_none())
                    .map(|p| {
                        let t = p.ty.clone()?;
                        let text = src.get(t.span.range())?.to_string();
                        Some((t, text))
                    })
                    .collect()
            }
        };
        let Some(types) = types else {
            // Neither given nor annotated: the graph of the function's last call.
            let graphs = self.state.jit.graphs(crate::stage::jit::fn_key(&f));
            let Some(newest) = graphs.last() else {
                return Err(Message(format!(
                    "`{name}` has no staged graph to export: give the types of its arguments \
                     with --args (\"f32[1, 784]\"), annotate its parameters, or call it in the \
                     script"
                )));
            };
            let staged = graphs
                .iter()
                .rev()
                .find(|g| g.general && g.covers(newest))
                .unwrap_or(newest)
                .clone();
            return Ok(ForExport {
                staged,
                names: param_names,
                checkpoint,
            });
        };
        let wanted = param_names.len() - skip;
        let optional = func.params[skip.min(func.params.len())..]
            .iter()
            .filter(|p| p.default.is_some())
            .count();
        if types.len() > wanted || types.len() < wanted - optional {
            return Err(Message(format!(
                "`{name}` takes {wanted} argument{}{}, --args gives {}",
                if wanted == 1 { "" } else { "s" },
                if skip == 1 {
                    " after the checkpoint"
                } else {
                    ""
                },
                types.len()
            )));
        }
        // A wrapper with the argument types as annotations is staged (so that their
        // symbolic dims make a general graph); the checkpoint is its first argument, so
        // that its leaves are graph inputs, which become initializers.
        const WRAPPER: &str = "__ms_export";
        let names = &param_names[..skip + types.len()];
        let mut decl: Vec<String> = names[..skip].iter().map(|n| n.to_string()).collect();
        decl.extend(
            names[skip..]
                .iter()
                .zip(&types)
                .map(|(n, (_, t))| format!("{n}: {t}")),
        );
        let passed: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let wrapper = format!(
            "fn {WRAPPER}({}) {{ {name}({}) }}",
            decl.join(", "),
            passed.join(", ")
        );
        let mut symbolic = Vec::new();
        types.iter().for_each(|(t, _)| sym_names(t, &mut symbolic));
        let n = symbolic.len();
        let rounds: &[bool] = if n == 0 { &[false] } else { &[false, true] };
        let mut calls = vec![wrapper];
        for &second in rounds {
            let sizes: Vec<(lang::ast::Name, usize)> = symbolic
                .iter()
                .enumerate()
                .map(|(k, s)| (s.clone(), if second { 3 + n + k } else { 2 + k }))
                .collect();
            let args: Option<Vec<String>> =
                types.iter().map(|(t, _)| zeros_of(t, &sizes)).collect();
            let mut args = args.ok_or_else(|| {
                Message(
                    "--args takes tensor types with sizes or symbolic dims, in tuples and records \
                     (`f32[B, 784], i64[B]`)"
                        .to_string(),
                )
            })?;
            if checkpoint.is_some() {
                args.insert(0, CKPT.to_string());
            }
            calls.push(format!("{WRAPPER}({})", args.join(", ")));
        }
        // Staged in graph mode whatever the session's mode.
        let graph_mode = self.state.graph_mode;
        self.state.graph_mode = true;
        if let Some(ckpt) = &checkpoint {
            self.checker.set_global(CKPT, ckpt.ty());
            self.state.globals.insert(Arc::from(CKPT), ckpt.clone());
        }
        let mut failed = None;
        for call in calls {
            let o = self.quiet_eval(&call);
            if o.has_errors() {
                failed = Some((call, o));
                break;
            }
        }
        self.state.graph_mode = graph_mode;
        let wrapper_fn = self.state.globals.get(WRAPPER).cloned();
        if let Some((call, o)) = failed {
            return Err(ExportFailure::Program(call, o));
        }
        let graphs = wrapper_fn
            .map(|w| self.state.jit.graphs(crate::stage::jit::fn_key(&w)))
            .unwrap_or_default();
        let staged = if n == 0 {
            graphs.last()
        } else {
            let general = graphs.iter().rev().find(|g| g.general);
            if general.is_none() {
                let dims: Vec<&str> = symbolic.iter().map(|s| &**s).collect();
                return Err(Message(format!(
                    "the graph of `{name}` depends on the size of {} (it computes with it, or \
                     reshapes by it), so it cannot be exported with {} symbolic; give a fixed \
                     size in --args (`ms --explain-restage export ...` names the node)",
                    dims.join(", "),
                    if n == 1 { "it" } else { "them" }
                )));
            }
            general
        };
        let Some(staged) = staged else {
            return Err(Message(format!("`{name}` was not staged")));
        };
        Ok(ForExport {
            staged: staged.clone(),
            names: names.to_vec(),
            checkpoint,
        })
    }

    /// Runs `src` with its output dropped, leaving the random stream and `_` as they were.
    fn quiet_eval(&mut self, src: &str) -> Outcome {
        let (seed, offset) = (self.state.seed, self.state.offset);
        let last = self.state.globals.get("_").cloned();
        let out = self.swap_output(Box::new(std::io::sink()));
        let o = self.eval(src);
        self.swap_output(out);
        (self.state.seed, self.state.offset) = (seed, offset);
        let last = last.unwrap_or(Value::Unit);
        self.checker.set_global("_", last.ty());
        self.state.globals.insert(Arc::from("_"), last);
        o
    }

    /// The plan of the parallel function `name` (`ms plan`, `:plan`): how its newest
    /// partitioned graph splits each primitive, the collectives it runs and its estimated
    /// cost per step on the hardware profile `profile` (`cpu`, `h100`).
    pub fn plan_text(&self, name: &str, profile: &str) -> Result<String, String> {
        self.mesh_plan_of(name)?.render(name, profile)
    }

    /// The plan of the parallel function `name` as `ms plan --save` writes it, for the file
    /// `file` (named in its comments).
    pub fn plan_saved_text(&self, name: &str, file: &str) -> Result<String, String> {
        Ok(self
            .mesh_plan_of(name)?
            .saved_text(name, &format!("saved as {file}")))
    }

    /// The newest partitioned graphs of the parallel function `name`.
    fn mesh_plan_of(
        &self,
        name: &str,
    ) -> Result<std::sync::Arc<crate::stage::parallel::MeshPlan>, String> {
        let f = self
            .state
            .globals
            .get(name)
            .ok_or_else(|| format!("there is no function `{name}`"))?;
        let graphs = self.state.jit.graphs(crate::stage::jit::fn_key(f));
        graphs
            .iter()
            .rev()
            .find_map(|g| g.mesh_plan())
            .ok_or_else(|| {
                format!(
                    "`{name}` has no plan: it must be a `@jit(parallel: \"data\")` function that \
                 ran on more than one device (`devices: N`, or `--devices cpu:N`)"
                )
            })
    }

    /// The session's pipeline on the newest raw graph of the function `name`, pass by
    /// pass: a header per pass and the lines of the IR text it removed (`-`) and added
    /// (`+`). `None` when `name` was never staged.
    pub fn passes_ir(&self, name: &str) -> Option<String> {
        let f = self.state.globals.get(name)?;
        let graphs = self.state.jit.graphs(crate::stage::jit::fn_key(f));
        let newest = graphs.last()?;
        let opts = ir::graph::PrintOptions::default();
        let mut g = newest.raw.clone();
        let mut text = ir::graph::print(&g, opts);
        let mut out = format!("staged:\n{text}");
        for step in &self.state.passes.steps {
            let next = match step.run(&g, true) {
                Ok(n) => n,
                Err(e) => {
                    out.push_str(&format!("{e}\n"));
                    return Some(out);
                }
            };
            let next_text = ir::graph::print(&next, opts);
            let diff = line_diff(&text, &next_text);
            if diff.is_empty() {
                out.push_str(&format!("after {}: no change\n", step.name()));
            } else {
                out.push_str(&format!("after {}:\n{diff}", step.name()));
            }
            (g, text) = (next, next_text);
        }
        Some(out)
    }

    pub fn checker(&mut self) -> &mut Checker {
        &mut self.checker
    }

    /// Every top-level variable with its value, in no particular order (for the REPL's
    /// completion and `:help NAME`).
    pub fn globals(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.state.globals.iter().map(|(k, v)| (&**k, v))
    }

    /// The text of the entry (or imported file) that function values with `src == id`
    /// were declared in (the REPL shows a function's signature as written).
    pub fn source_text(&self, id: usize) -> Option<&str> {
        self.state.sources.get(id).map(|(_, text)| &**text)
    }

    /// Sends what `print` writes to `out` from now on, and returns where it went before
    /// (the REPL's `:time` silences the repeated runs of an expression).
    pub fn swap_output(&mut self, out: Box<dyn Write + Send>) -> Box<dyn Write + Send> {
        std::mem::replace(&mut self.state.out, out)
    }
}

/// Threads of the pools evaluation runs in (0: one per core); see [`set_eval_threads`].
static EVAL_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads the evaluation pools have (the CLI's `--threads`). Pools already
/// made keep their size, so this is called before the first evaluation.
pub fn set_eval_threads(n: usize) {
    EVAL_THREADS.store(n, Ordering::Relaxed);
}

/// The rayon pool whose workers have `stack_bytes` stacks, made on first use and kept for
/// the life of the process (a session normally uses one stack size, so there is one pool).
///
/// Evaluation runs *on* a worker of this pool, not on a thread of its own that hands
/// parallel kernels to a pool: a kernel's `par_iter` from inside a worker runs in place,
/// its caller taking part in the work, where a call from outside the pool queues the job
/// and puts the caller to sleep until a worker has finished it. On two cores that sleep and
/// wake-up around every parallel primitive took about a quarter of an eager MLP training
/// step, and the idle evaluation thread made a third thread for two cores.
fn eval_pool(stack_bytes: usize) -> Result<&'static rayon::ThreadPool, String> {
    static POOLS: Mutex<Vec<(usize, &'static rayon::ThreadPool)>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(size, _)| *size == stack_bytes) {
        return Ok(pool);
    }
    let threads = match EVAL_THREADS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(stack_bytes)
        .thread_name(|i| format!("ms-eval-{i}"))
        .build()
        .map_err(|e| format!("cannot start the evaluation threads: {e}"))?;
    // Leaked on purpose: the pool lives as long as the process, and `install` needs it to
    // outlive every evaluation that borrows it.
    let pool: &'static rayon::ThreadPool = Box::leak(Box::new(pool));
    pools.push((stack_bytes, pool));
    Ok(pool)
}

/// Runs `f` on a worker of the evaluation pool, whose threads have `stack_bytes` stacks (an
/// internal error when no such thread can be made). A panic in `f` is a bug; it becomes an
/// internal error rather than taking the process down.
fn run_on_big_stack<T: Send>(
    state: &mut State,
    stack_bytes: usize,
    f: impl FnOnce(&mut State) -> Result<T, Box<Diagnostic>> + Send,
) -> Result<T, Box<Diagnostic>> {
    let internal = |what: &str| {
        Box::new(
            Diagnostic::error(
                "E0999",
                format!("internal error of the evaluator: {what}"),
                Span::default(),
            )
            .with_note("please report this with the program that caused it"),
        )
    };
    let panicked = |p: Box<dyn std::any::Any + Send>| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        Err(internal(&what))
    };
    let pool = eval_pool(stack_bytes).map_err(|e| internal(&e))?;
    // From a plain thread `install` sleeps until the job is done, and on one of the pool's
    // own workers it runs the job in place. A worker of *another* pool (a caller's
    // `par_iter` over programs, as the tests have) would instead run that pool's other jobs
    // while it waited, each starting an evaluation of its own on the same small stack, so
    // such a caller gets a thread of its own, which it simply joins.
    if pool.current_thread_index().is_some() || rayon::current_thread_index().is_none() {
        return pool.install(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(state)))
                .unwrap_or_else(panicked)
        });
    }
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("ms-eval".to_string())
            .stack_size(stack_bytes)
            .spawn_scoped(scope, || f(state));
        match handle {
            Ok(h) => h.join().unwrap_or_else(panicked),
            Err(e) => Err(internal(&format!(
                "cannot start the evaluation thread: {e}"
            ))),
        }
    })
}
