//! The `ms` command line: arguments, the commands, exit statuses and Ctrl-C.
//!
//! Arguments are parsed by clap (derive): the grammar is the [`Cli`] type. Words after a
//! script's name belong to the script (`ms train.ms --epochs 5` gives `--epochs 5` to it,
//! read with `arg`), so `ms`'s own flags come before the name, as with `python`.
//!
//! Errors show one of two ways: a diagnostic of the program (it has a source span) is
//! rendered by `lang::diagnostics` (ariadne) as everywhere else; an error of the command
//! line itself (a bad flag, a file that cannot be read, an unknown code) has no span and is
//! a miette report ([`CliError`]). Colours only on a terminal, never with `NO_COLOR`.
//!
//! Ctrl-C: for a script and the REPL, a SIGINT handler sets `devices::cancel`'s flag; the
//! evaluator and the kernels stop within a step and the entry ends with E0911 (exit status
//! 130 for a script; the REPL shows the error and its prompt, state intact). A second
//! Ctrl-C while the first is still pending exits at once.

use std::ffi::OsString;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use lang::diagnostics::{self, RenderOptions};

/// Typical commands, shown after the flags by `ms --help`.
pub const EXAMPLES: &str = "\
Examples:
  ms                            open the REPL (:help inside it lists its commands)
  ms train.ms                   check a script, then run it
  ms train.ms --epochs 5        words after the script are its own (read with `arg`)
  ms --seed 7 --threads 4 train.ms
                                ms's flags go before the script
  ms --device cuda train.ms     run on the first NVIDIA GPU (cuda:N for another)
  ms check model.ms             parse and type-check without running
  ms --mode graph train.ms      stage every named function called from the top level
  ms run --check-modes train.ms run every staged call eagerly too and compare; a difference
                                names the optimizer's pass and the node to blame
  ms ir train.ms --fn step --stage grad
                                the IR of `step` as the script stages it, differentiated
  ms export model.ms --fn predict --args \"f32[B, 784]\" --onnx model.onnx
                                `predict` as an ONNX model (B a dim_param); --params CKPT
                                bakes in a checkpoint as its first argument; --mir
                                model.msir writes MindScript's own model file (load_model)
  ms --logdir logs train.ms     summaries (log_scalar, ...) go to logs/train-<time>/
  ms report runs/train-20250101-120000
                                an HTML page of the run's scalars and histograms
  ms explain E0301              what a diagnostic code means (`ms explain` lists them)
  ms demo --epochs 5            train a perceptron on the UCI digits, straight on the CPU

Exit status: 0 success, 1 an error in the program, 2 bad usage, 130 interrupted (Ctrl-C).";

/// The `ms` command line.
#[derive(Debug, Parser)]
#[command(
    name = "ms",
    version,
    about = "MindScript: a small typed, differentiable language",
    override_usage = "ms [OPTIONS] [FILE.ms [ARGS]...]\n       ms [OPTIONS] <COMMAND>",
    after_help = EXAMPLES,
    allow_external_subcommands = true
)]
pub struct Cli {
    /// Threads for parallel kernels (the rayon pool) [default: one per core]
    #[arg(long, global = true, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub threads: Option<u64>,
    /// Seed of the random stream (`seed(n)` in a program changes it) [default: 0]
    #[arg(long, global = true, value_name = "N", allow_negative_numbers = true)]
    pub seed: Option<i64>,
    /// The device every operation runs on: cpu, cuda or cuda:N [default: cpu]
    #[arg(long, global = true, value_name = "NAME")]
    pub device: Option<String>,
    /// How named functions called from the top level run: eager (op by op) or graph
    /// (staged into the IR, like `@jit`) [default: eager]
    #[arg(long, global = true, value_name = "MODE", value_parser = ["eager", "graph"])]
    pub mode: Option<String>,
    /// Say on stderr why a staged function is staged again (which argument, which dim)
    #[arg(long, global = true)]
    pub explain_restage: bool,
    /// The optimizer's passes for staged graphs, in order, comma-separated (inline, fold,
    /// simplify, cse, dce, fuse), or `none` [default: inline,fold,simplify,cse,dce,fuse,dce]
    #[arg(long, global = true, value_name = "LIST")]
    pub passes: Option<String>,
    /// The folder for summaries (`log_scalar`, `log_histogram`, `log_text`): each run
    /// writes an event file in DIR/<script>-<start time>/ [default: runs]
    #[arg(long, global = true, value_name = "DIR")]
    pub logdir: Option<PathBuf>,
    /// After the command, print on stderr the host memory that tensors held: the peak and
    /// the live bytes at exit, and how many buffers were made
    #[arg(long, global = true)]
    pub mem_stats: bool,
    /// A mesh of devices for parallel functions (`@jit(parallel: "data")`): `cpu:N` is N
    /// virtual CPU devices in this process (LANGUAGE.md §9)
    #[arg(long, global = true, value_name = "MESH")]
    pub devices: Option<String>,
    /// Run every staged function (`@jit`, and every named function under `--mode graph`)
    /// in this parallel mode on all the devices of `--devices`, unless its own
    /// `@jit(parallel: ...)` says otherwise, as MindSpore's
    /// `set_auto_parallel_context(parallel_mode=...)` does for a whole program: data,
    /// semi_auto or auto
    #[arg(long, global = true, value_name = "MODE")]
    pub parallel: Option<String>,
    /// Split the parallel function NAME as the plan in FILE says (written by `ms plan
    /// --save`, perhaps edited) instead of by its own `parallel:` strategy; repeatable.
    /// Under `ms plan`, `--plan FILE` alone is the plan of its `--fn`
    #[arg(long, global = true, value_name = "NAME=FILE")]
    pub plan: Vec<String>,
    /// Let f32 matrix products on CUDA devices use TF32 tensor cores: several times faster,
    /// with operands rounded to a 10-bit mantissa (about 1e-3 relative error). Off by
    /// default, as in PyTorch; the CPU always computes in full f32
    #[arg(long, global = true)]
    pub tf32: bool,
    /// What to do; without one, the REPL.
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// The passes `--passes` names: `none`, or pass names separated by commas.
fn parse_passes(list: &str) -> Result<Vec<ir::passes::Pass>, CliError> {
    if list.trim() == "none" {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|name| {
            ir::passes::Pass::from_name(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = ir::passes::Pass::ALL.iter().map(|p| p.name()).collect();
                CliError::usage(format!(
                    "`{}` is not a pass; the passes are {} (or `none`)",
                    name.trim(),
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// The commands of `ms`.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Check a script, then run it eagerly (the same as `ms FILE.ms`)
    Run {
        /// Run every staged call also eagerly and as staged (before the optimizer's
        /// passes), compare the results, and report the first difference with the pass and
        /// the node to blame; implies `--mode graph` unless `--mode eager` is given
        #[arg(long)]
        check_modes: bool,
        /// The script, then the words given to it
        #[arg(value_name = "FILE.ms [ARGS]", required = true, num_args = 1..,
              trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Parse and type-check a script without running it
    Check {
        /// The script
        #[arg(value_name = "FILE.ms")]
        file: PathBuf,
    },
    /// Print the IR of a function as the script stages it (the script runs in graph mode,
    /// its output hidden; one graph per signature it called NAME with)
    Ir {
        /// The script
        #[arg(value_name = "FILE.ms")]
        file: PathBuf,
        /// The function whose graphs to print
        #[arg(long = "fn", value_name = "NAME")]
        name: String,
        /// raw: as staged; grad: differentiated on the IR; opt: after the optimizer's
        /// passes, as it runs; parallel: the graphs the devices of the mesh run (a
        /// `@jit(parallel: ...)` function)
        #[arg(long, value_name = "STAGE", default_value = "raw",
              value_parser = ["raw", "grad", "opt", "parallel"])]
        stage: String,
        /// Show each node's source span (`@src:start..end`)
        #[arg(long)]
        spans: bool,
    },
    /// Export a function as an ONNX model for inference elsewhere (ONNX Runtime, ...): the
    /// script runs in graph mode, its output hidden, then NAME is staged at the argument
    /// types --args gives (or its annotations, or the graph of its last call), mapped
    /// primitive by primitive to ONNX operators and written to OUT.onnx (docs/export.md)
    Export {
        /// The script
        #[arg(value_name = "FILE.ms")]
        file: PathBuf,
        /// The function to export
        #[arg(long = "fn", value_name = "NAME")]
        name: String,
        /// Where to write the ONNX model
        #[arg(long, value_name = "OUT.onnx")]
        onnx: Option<PathBuf>,
        /// Where to write a MindScript model file (`.msir`: the graph's IR text and its
        /// parameters, which `load_model` runs); with --onnx too, both are written
        #[arg(long, value_name = "OUT.msir")]
        mir: Option<PathBuf>,
        /// Write the ONNX model's parameters (initializers of 1 KiB or more) to an external
        /// data file beside it, OUT.onnx.data (done anyway for a model over 2 GiB)
        #[arg(long)]
        external_data: bool,
        /// The types of the arguments, as in MindScript (`"f32[1, 784], i64[1]"`; a name
        /// such as `B` is a symbolic dim, an ONNX dim_param); with --params, of the
        /// arguments after the first
        #[arg(long, value_name = "TYPES")]
        args: Option<String>,
        /// A safetensors checkpoint (`save(params, "ckpt.safetensors")`) bound to the
        /// first argument and baked into the model as initializers
        #[arg(long, value_name = "CKPT")]
        params: Option<PathBuf>,
        /// The ONNX opset
        #[arg(long, value_name = "N", default_value_t = crate::io::onnx::DEFAULT_OPSET,
              value_parser = clap::value_parser!(i64).range(13..=21))]
        opset: i64,
        /// Words given to the script, after `--` (`-- --epochs 0`)
        #[arg(last = true, value_name = "ARGS")]
        script_args: Vec<String>,
    },
    /// Print how a parallel function (`@jit(parallel: "data")`) is split over a mesh: each
    /// primitive's layout, the collectives, and the estimated time of a call (the script
    /// runs in graph mode, its output hidden)
    Plan {
        /// The script
        #[arg(value_name = "FILE.ms")]
        file: PathBuf,
        /// The parallel function
        #[arg(long = "fn", value_name = "NAME")]
        name: String,
        /// The hardware profile of the estimate (and of the planner's search for
        /// `parallel: "auto"`): cpu, h100 or h100-2node (mesh axis 0 between machines)
        #[arg(long, value_name = "NAME", default_value = "cpu")]
        profile: String,
        /// The mesh's shape for `parallel: "auto"` (`2x4`); without it the planner tries
        /// each shape the device count allows
        #[arg(long, value_name = "AxB")]
        mesh: Option<String>,
        /// The most memory a device may hold, for `parallel: "auto"` (`8GiB`, `512MiB`,
        /// bytes)
        #[arg(long, value_name = "SIZE")]
        mem_cap: Option<String>,
        /// Write the plan to FILE as text (the mesh, each input's layout, the hints), to be
        /// edited and checked again with `--plan FILE`
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
        /// The script's own arguments, after `--` (`-- --batch 64`)
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Write an HTML page of a run's summaries: a line plot of every scalar, the last
    /// histogram of every histogram tag, the text summaries
    Report {
        /// The run's folder (runs/NAME) or one event file
        #[arg(value_name = "RUN")]
        run: PathBuf,
        /// Where to write the page [default: RUN/report.html]
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Explain a diagnostic code; without CODE, list the codes
    Explain {
        /// A code such as E0301
        code: Option<String>,
    },
    /// Train a 64-h-10 perceptron on the UCI digits directly on the CPU device
    Demo {
        /// The digits CSV
        #[arg(value_name = "CSV", default_value = "samples/data/digits.csv")]
        csv: String,
        /// Training epochs
        #[arg(long, value_name = "N", default_value_t = 20,
              value_parser = clap::value_parser!(u64).range(1..))]
        epochs: u64,
        /// Hidden units
        #[arg(long, value_name = "N", default_value_t = 64,
              value_parser = clap::value_parser!(u64).range(1..))]
        hidden: u64,
    },
    /// `ms FILE.ms [ARGS]...`: a word that is no command is a script's name.
    #[command(external_subcommand)]
    Script(Vec<String>),
}

/// The exit status of a command (LANGUAGE.md §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// An error in the program, reported with spans.
    ProgramError = 1,
    /// Bad usage: unknown command or flag, unreadable file.
    Usage = 2,
    /// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

/// An error of the command line itself, with no source span: shown as a miette report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// What went wrong, in one line.
    pub message: String,
    /// How to put it right, when there is something to say.
    pub help: Option<String>,
    /// The exit status it leads to.
    pub status: Status,
}

impl CliError {
    /// A usage error (exit status 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            help: None,
            status: Status::Usage,
        }
    }

    /// The same error with a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> CliError {
        self.help = Some(help.into());
        self
    }

    /// A usage error from clap's own message: its first paragraph is the message, its tips
    /// and usage lines the help.
    pub fn from_clap(e: &clap::Error) -> CliError {
        let text = e.render().to_string();
        let mut paragraphs = text.split("\n\n").map(|p| {
            p.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
        });
        let first = paragraphs.next().unwrap_or_default().join(" ");
        let message = first.strip_prefix("error: ").unwrap_or(&first).to_string();
        let help: Vec<String> = paragraphs
            .flatten()
            .map(|l| {
                l.strip_prefix("tip: ")
                    .map(str::to_string)
                    .or_else(|| l.strip_prefix("Usage: ").map(|u| format!("usage: {u}")))
                    .unwrap_or_else(|| l.to_string())
            })
            .collect();
        let err = CliError::usage(if message.is_empty() {
            "bad usage".to_string()
        } else {
            message
        });
        if help.is_empty() {
            err
        } else {
            err.with_help(help.join("\n"))
        }
    }

    /// The report as text (`color` picks the coloured theme).
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            miette::GraphicalTheme::unicode()
        } else {
            miette::GraphicalTheme::unicode_nocolor()
        };
        let mut out = String::new();
        let handler = miette::GraphicalReportHandler::new_themed(theme);
        if handler.render_report(&mut out, self).is_err() {
            // Rendering into a String cannot fail; keep the plain message if it ever does.
            out = format!("error: {}\n", self.message);
        }
        out
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl miette::Diagnostic for CliError {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display + 'a>)
    }
}

/// Runs `ms` with these arguments (the program's name first) and returns its exit status.
pub fn main(args: impl IntoIterator<Item = OsString>) -> Status {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                // Help and version go to stdout; a closed stdout leaves nothing to report.
                let _ = e.print();
                return Status::Ok;
            }
            return report(&CliError::from_clap(&e));
        }
    };
    match cli.run() {
        Ok(status) => status,
        Err(e) => report(&e),
    }
}

fn report(e: &CliError) -> Status {
    eprint!("{}", e.render(render_options().color));
    e.status
}

impl Cli {
    /// Sets up the process (threads, Ctrl-C) and runs the command; with `--mem-stats`,
    /// reports the tensor memory afterwards (whatever the outcome).
    pub fn run(self) -> Result<Status, CliError> {
        let mem_stats = self.mem_stats;
        let mpi = self.devices.as_deref() == Some("mpi");
        let status = self.run_command();
        #[cfg(feature = "mpi")]
        if mpi {
            // A process that failed stops the job (the others may wait for it in a
            // collective); one that succeeded finalises MPI.
            if matches!(status, Ok(Status::Ok)) {
                devices::mesh_mpi::finalize();
            } else {
                devices::mesh_mpi::abort_all(1);
            }
        }
        #[cfg(not(feature = "mpi"))]
        let _ = mpi;
        if mem_stats {
            let m = devices::memory::stats();
            eprintln!(
                "memory: peak {} bytes of host tensors, {} live at exit, {} buffers made",
                m.peak_bytes, m.live_bytes, m.buffers
            );
        }
        status
    }

    fn run_command(self) -> Result<Status, CliError> {
        if let Some(n) = self.threads {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            crate::session::set_eval_threads(n);
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .map_err(|e| CliError::usage(format!("cannot start {n} threads: {e}")))?;
        }
        // `--devices mpi`: this process is one device of the job's processes; only the
        // first shows what the script prints.
        let mpi_rank = match self.devices.as_deref() {
            Some("mpi") => Some(start_mpi()?),
            _ => None,
        };
        let mesh = match mpi_rank {
            Some((_, size)) => Some(size),
            None => self.devices.as_deref().map(parse_mesh).transpose()?,
        };
        let quiet = mpi_rank.is_some_and(|(rank, _)| rank != 0);
        let seed = self.seed.unwrap_or(0);
        devices::cuda::set_tf32(self.tf32);
        if let Some(store) = crate::io::kernels::DiskKernelStore::from_env() {
            devices::cuda::set_kernel_store(Some(std::sync::Arc::new(store)));
        }
        let device = open_device(self.device.as_deref())?;
        let graph_mode = self.mode.as_deref() == Some("graph");
        let eager_mode = self.mode.as_deref() == Some("eager");
        let explain_restage = self.explain_restage;
        let parallel = match self.parallel.as_deref() {
            None => None,
            Some(name) => Some(
                crate::session::ParallelMode::from_name(name).ok_or_else(|| {
                    CliError::usage(format!("`--parallel {name}` is not a parallel mode"))
                        .with_help("the modes are data, semi_auto and auto (LANGUAGE.md §9)")
                })?,
            ),
        };
        let passes = self.passes.as_deref().map(parse_passes).transpose()?;
        let logdir = self.logdir.clone();
        // Bars only where a person watches: a pipe or a file gets none.
        let progress_bars = std::io::stderr().is_terminal();
        // `ms plan` reads its own (a bare `--plan FILE` is its function's).
        let plans = if matches!(self.command, Some(Cmd::Plan { .. })) {
            Vec::new()
        } else {
            read_plans(&self.plan, None)?
        };
        let with_device = |o: crate::Options| {
            let o = crate::Options {
                plans: if o.plans.is_empty() {
                    plans.clone()
                } else {
                    o.plans
                },
                graph_mode,
                explain_restage,
                passes: passes.clone(),
                logdir: logdir.clone(),
                progress_bars,
                mesh,
                parallel,
                capture_output: o.capture_output || quiet,
                ..o
            };
            match &device {
                Some(d) => crate::Options {
                    device: d.clone(),
                    ..o
                },
                None => o,
            }
        };
        match self.command {
            None => {
                install_interrupt_handler();
                Ok(crate::repl::run_with(with_device(crate::Options {
                    seed,
                    ..crate::Options::default()
                })))
            }
            Some(Cmd::Run { check_modes, words }) => {
                let (file, args) = words.split_first().ok_or_else(|| {
                    CliError::usage("`ms run` needs a FILE.ms")
                        .with_help("ms run [--check-modes] FILE.ms [ARGS]...")
                })?;
                let options = with_device(script_options(file, args, seed));
                if !check_modes {
                    return run_file(&options);
                }
                // Checking is about staged calls: without a mode, every named function
                // called from the top level is staged (and so checked), as in graph mode.
                run_file(&crate::Options {
                    check_modes: true,
                    graph_mode: !eager_mode,
                    ..options
                })
            }
            Some(Cmd::Script(words)) => {
                let (word, args) = words
                    .split_first()
                    .ok_or_else(|| CliError::usage("a script's name is missing"))?;
                if let Some(what) = later_milestone(word) {
                    return Err(CliError {
                        message: format!("`ms {word}` is not available yet: {what}"),
                        help: Some(
                            "the commands available are run, check, ir, plan, export, report, explain and demo"
                                .into(),
                        ),
                        status: Status::ProgramError,
                    });
                }
                if !looks_like_a_script(word) {
                    return Err(CliError::usage(format!("unknown command `{word}`")).with_help(
                        "the commands are run, check, ir, plan, export, report, explain and demo; a script's \
                         name ends in .ms (`ms --help` shows them all)",
                    ));
                }
                run_file(&with_device(script_options(word, args, seed)))
            }
            Some(Cmd::Check { file }) => check_file(&file),
            Some(Cmd::Ir {
                file,
                name,
                stage,
                spans,
            }) => {
                let file = file.to_string_lossy().into_owned();
                ir_of(
                    &with_device(script_options(&file, &[], seed)),
                    &name,
                    &stage,
                    spans,
                )
            }
            Some(Cmd::Export {
                file,
                name,
                onnx,
                mir,
                external_data,
                args,
                params,
                opset,
                script_args,
            }) => {
                if onnx.is_none() && mir.is_none() {
                    return Err(CliError::usage(
                        "`ms export` needs --onnx OUT.onnx or --mir OUT.msir (or both)",
                    )
                    .with_help(
                        "ms export FILE.ms --fn NAME [--onnx OUT.onnx] [--mir OUT.msir] \
                         [--args TYPES] [--params CKPT] [--opset N] [--external-data]",
                    ));
                }
                if external_data && onnx.is_none() {
                    return Err(CliError::usage(
                        "--external-data is about the ONNX model: give --onnx OUT.onnx",
                    ));
                }
                let external = match &onnx {
                    Some(path) => external_for(path, external_data)?,
                    None => crate::io::onnx::External::default(),
                };
                let file = file.to_string_lossy().into_owned();
                let options = crate::session::OnnxOptions {
                    args,
                    params,
                    opset,
                };
                export_models(
                    &with_device(script_options(&file, &script_args, seed)),
                    &name,
                    &options,
                    onnx.as_deref().map(|p| (p, &external)),
                    mir.as_deref(),
                )
            }
            Some(Cmd::Report { run, output }) => report_run(&run, output),
            Some(Cmd::Plan {
                file,
                name,
                profile,
                mesh,
                mem_cap,
                save,
                args,
            }) => {
                let file = file.to_string_lossy().into_owned();
                let mesh = mesh.as_deref().map(parse_mesh_shape).transpose()?;
                let cap = mem_cap.as_deref().map(parse_size).transpose()?;
                let options = crate::Options {
                    planning: (mesh, cap, Some(profile.clone())),
                    plans: read_plans(&self.plan, Some(&name))?,
                    ..with_device(script_options(&file, &args, seed))
                };
                plan_of(&options, &name, &profile, save.as_deref())
            }
            Some(Cmd::Explain { code }) => explain(code.as_deref()),
            Some(Cmd::Demo {
                csv,
                epochs,
                hidden,
            }) => demo(
                &csv,
                usize::try_from(epochs).unwrap_or(usize::MAX),
                usize::try_from(hidden).unwrap_or(usize::MAX),
            ),
        }
    }
}

/// The device `--device NAME` asks for (`None`: the default, the CPU). A CUDA device that
/// cannot be used is an error of the command line that says why.
pub(crate) fn open_device(
    name: Option<&str>,
) -> Result<Option<Arc<dyn devices::Device>>, CliError> {
    let Some(name) = name else { return Ok(None) };
    let bad = || {
        CliError::usage(format!("`{name}` is not a device"))
            .with_help("--device takes cpu, cuda or cuda:N")
    };
    let ordinal = match name.trim() {
        "cpu" | "cpu:0" => return Ok(None),
        "cuda" => 0,
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(bad)?,
    };
    devices::cuda::open(ordinal)
        .map(Some)
        .map_err(|e| CliError::usage(e.to_string()).with_help("`ms --device cpu` runs on the CPU"))
}

/// What a command of LANGUAGE.md §12 that is not built yet belongs to: such a command is
/// an error that says so (exit status 1, as the builtins that are not available yet give
/// E0906), not "unknown command".
pub(crate) fn later_milestone(command: &str) -> Option<&'static str> {
    match command {
        "import-onnx" => Some("importing ONNX models is a later milestone"),
        _ => None,
    }
}

/// A word after `ms` that is not a command names a script when it ends in `.ms`, has a
/// folder in it, or is a file: `ms frobnicate` is a mistyped command, not a missing file.
fn looks_like_a_script(word: &str) -> bool {
    word.ends_with(".ms") || word.contains(std::path::MAIN_SEPARATOR) || Path::new(word).is_file()
}

/// The session options for running `file` with the words `args` after it.
pub fn script_options(file: &str, args: &[String], seed: i64) -> crate::Options {
    crate::Options {
        seed,
        script_args: args.to_vec(),
        script_path: Some(PathBuf::from(file)),
        ..crate::Options::default()
    }
}

/// Starts MPI for `--devices mpi`: (this process's rank, the number of processes).
#[cfg(feature = "mpi")]
fn start_mpi() -> Result<(usize, usize), CliError> {
    crate::stage::parallel::start_mpi().map_err(|e| CliError {
        message: format!("`--devices mpi`: {e}"),
        help: Some("run it under `mpirun -np N`".into()),
        status: Status::ProgramError,
    })
}

#[cfg(not(feature = "mpi"))]
fn start_mpi() -> Result<(usize, usize), CliError> {
    Err(CliError {
        message: "`--devices mpi` needs an `ms` built with MPI: `cargo build --release -p interpreter --features mpi` (with libopenmpi-dev and libclang-dev installed)".into(),
        help: Some("`--devices cpu:N` makes a mesh of N virtual CPU devices in one process".into()),
        status: Status::ProgramError,
    })
}

/// `--mesh 2x4`: a mesh's shape.
fn parse_mesh_shape(text: &str) -> Result<Vec<usize>, CliError> {
    let dims: Option<Vec<usize>> = text
        .split('x')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d >= 1))
        .collect();
    dims.filter(|d| {
        !d.is_empty() && d.iter().product::<usize>() <= crate::stage::parallel::MAX_DEVICES
    })
    .ok_or_else(|| {
        CliError::usage(format!("`--mesh {text}` is not a mesh shape"))
            .with_help("write the devices per axis: `--mesh 2x4`")
    })
}

/// `--mem-cap 8GiB`: bytes, with an optional KiB/MiB/GiB/TiB (or KB/MB/GB/TB) suffix.
fn parse_size(text: &str) -> Result<u64, CliError> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0f64.powi(4),
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => -1.0,
    };
    match num.trim().parse::<f64>() {
        Ok(n) if scale > 0.0 && n.is_finite() && n > 0.0 => Ok((n * scale) as u64),
        _ => Err(CliError::usage(format!("`--mem-cap {text}` is not a size"))
            .with_help("write bytes with a unit: `--mem-cap 8GiB`")),
    }
}

/// `--devices MESH`: the number of virtual CPU devices of `cpu:N` (`cpu` alone is one).
fn parse_mesh(text: &str) -> Result<usize, CliError> {
    let usage = |why: &str| {
        CliError::usage(format!(
            "`--devices {text}`: {why}; write `cpu:N` for a mesh of N virtual CPU devices"
        ))
    };
    // A plain number is that many CPU devices (`ms plan --devices 4`).
    let (kind, count) = match text.split_once(':') {
        Some(pair) => pair,
        None if text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() => ("cpu", text),
        None => (text, "1"),
    };
    match kind {
        "cpu" => {}
        "cuda" | "gpu" => {
            return Err(CliError {
                message: format!(
                    "`--devices {text}` is not available yet: meshes of GPUs need NCCL, which is not built"
                ),
                help: Some("`--devices cpu:N` makes a mesh of N virtual CPU devices".into()),
                status: Status::ProgramError,
            });
        }
        _ => return Err(usage("unknown device kind")),
    }
    match count.parse::<usize>() {
        Ok(n) if (1..=crate::stage::parallel::MAX_DEVICES).contains(&n) => Ok(n),
        Ok(_) => Err(usage(&format!(
            "a mesh has 1 to {} devices",
            crate::stage::parallel::MAX_DEVICES
        ))),
        Err(_) => Err(usage("the count is not a number")),
    }
}

/// Ctrl-C sets the cancellation flag (`devices::cancel`) that the evaluator and the kernels
/// look at; a second Ctrl-C while the flag is still set (the computation did not reach a
/// place where it stops) exits at once with status 130.
///
/// `signal-hook` rather than `ctrlc`: its handler stores to the `AtomicBool` itself, in the
/// signal handler (async-signal-safe, no thread started for it), and its conditional
/// shutdown is exactly the second-Ctrl-C rule. At the REPL's prompt rustyline reads Ctrl-C
/// as a key (raw mode), so this handler only sees the ones pressed while code runs.
fn install_interrupt_handler() {
    use signal_hook::consts::SIGINT;
    let flag = devices::cancel::flag();
    // Handlers run in the order they were registered: the exit looks at the flag before
    // the second registration sets it, so it sees what an earlier Ctrl-C left.
    let registered =
        signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&flag))
            .and_then(|_| signal_hook::flag::register(SIGINT, flag));
    if let Err(e) = registered {
        // Without the handler Ctrl-C keeps its default effect: it ends the process.
        eprintln!("warning: Ctrl-C will end ms rather than stop the computation: {e}");
    }
}

/// Colour only for a terminal, and never when `NO_COLOR` is set (no-color.org).
fn render_options() -> RenderOptions {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    RenderOptions { color }
}

/// Reads a script as UTF-8 text: a missing or unreadable file is bad usage (status 2, the
/// command named something that is not there), a file that is not text an error in the
/// program (status 1).
fn read_script(path: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|e| CliError {
        message: format!("{} is not UTF-8 text", path.display()),
        help: Some(format!(
            "the first bad byte is at offset {}; MindScript sources are UTF-8",
            e.utf8_error().valid_up_to()
        )),
        status: Status::ProgramError,
    })
}

fn run_file(options: &crate::Options) -> Result<Status, CliError> {
    let path = options.script_path.clone().unwrap_or_default();
    let text = read_script(&path)?;
    install_interrupt_handler();
    let mut session = crate::Session::with_options(options.clone());
    let outcome = session.eval(&text);
    let name = path.display().to_string();
    eprint!(
        "{}",
        session.render(&outcome, &name, &text, render_options())
    );
    // `--check-modes` says what it checked, unless it found a difference (which the
    // diagnostic above reports).
    if let Some(summary) = session.check_summary()
        && !outcome.diagnostics.iter().any(|d| d.code == "E0914")
    {
        eprintln!("{summary}");
    }
    Ok(if outcome.diagnostics.iter().any(|d| d.code == "E0911") {
        Status::Interrupted
    } else if outcome.has_errors() {
        Status::ProgramError
    } else {
        Status::Ok
    })
}

/// `ms report RUN [-o FILE]`: the HTML page of a run's summaries. A run that cannot be
/// read (no event files, a damaged file) is an error of the command (status 1) naming the
/// file and the byte offset.
fn report_run(run: &Path, output: Option<PathBuf>) -> Result<Status, CliError> {
    use crate::insight::report::{self, ReportError};
    let data = report::Run::read(run).map_err(|e| {
        let status = match e {
            ReportError::Io { .. } | ReportError::NoEvents { .. } => Status::Usage,
            _ => Status::ProgramError,
        };
        CliError {
            message: e.to_string(),
            help: None,
            status,
        }
    })?;
    let title = run.file_name().map_or_else(
        || run.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let page = report::html(&title, &data).map_err(|e| CliError {
        message: e.to_string(),
        help: None,
        status: Status::ProgramError,
    })?;
    let out = output.unwrap_or_else(|| {
        if run.is_dir() {
            run.join("report.html")
        } else {
            run.with_extension("html")
        }
    });
    std::fs::write(&out, page).map_err(|e| CliError {
        message: format!("cannot write {}: {e}", out.display()),
        help: None,
        status: Status::ProgramError,
    })?;
    println!("{}", out.display());
    Ok(Status::Ok)
}

/// `ms ir`: runs the script in graph mode with its output kept aside, then prints the
/// graphs staged for `name`.
fn ir_of(
    options: &crate::Options,
    name: &str,
    stage: &str,
    spans: bool,
) -> Result<Status, CliError> {
    let stage = match stage {
        "raw" => crate::session::IrStage::Raw,
        "grad" => crate::session::IrStage::Grad,
        "opt" => crate::session::IrStage::Opt,
        "parallel" => crate::session::IrStage::Parallel,
        other => {
            return Err(CliError::usage(format!("there is no `{other}` stage"))
                .with_help("use --stage raw, grad, opt or parallel"));
        }
    };
    let Some(mut session) = run_hidden(options)? else {
        return Ok(Status::ProgramError);
    };
    // A function the script never called is staged at its annotated types, if it has them.
    if let Err((call, out)) = session.stage_at_annotations(name) {
        eprint!("{}", session.render(&out, &call, &call, render_options()));
        return Ok(Status::ProgramError);
    }
    match session.staged_ir_at(name, stage, spans) {
        Ok(graphs) => {
            for g in graphs {
                print!("{g}");
            }
            Ok(Status::Ok)
        }
        Err(message) => {
            eprintln!("error: {message}");
            Ok(Status::ProgramError)
        }
    }
}

/// Where the external data of the ONNX model written to `onnx` goes: `NAME.data` beside
/// `NAME` (a plain file name, so the model never points elsewhere), always with
/// `--external-data`, otherwise only for a model over 2 GiB.
fn external_for(onnx: &Path, always: bool) -> Result<crate::io::onnx::External, CliError> {
    let name = onnx
        .file_name()
        .map(|n| format!("{}.data", n.to_string_lossy()))
        .filter(|n| crate::io::onnx::plain_file_name(n))
        .ok_or_else(|| CliError::usage(format!("`{}` names no file", onnx.display())))?;
    Ok(crate::io::onnx::External {
        mode: if always {
            crate::io::onnx::ExternalMode::Always
        } else {
            crate::io::onnx::ExternalMode::Auto
        },
        location: name,
        ..crate::io::onnx::External::default()
    })
}

/// `ms export`: runs the script as `ms ir` does, then stages the function for export once
/// (`Session::export_models`) and writes the ONNX model (and its external data, if any)
/// and the `.msir` model file, each atomically.
fn export_models(
    options: &crate::Options,
    name: &str,
    export: &crate::session::OnnxOptions,
    onnx: Option<(&Path, &crate::io::onnx::External)>,
    mir: Option<&Path>,
) -> Result<Status, CliError> {
    let Some(mut session) = run_hidden(options)? else {
        return Ok(Status::ProgramError);
    };
    let (onnx_model, mir_model) =
        match session.export_models(name, export, onnx.map(|(_, e)| e), mir.is_some()) {
            Ok(m) => m,
            Err(crate::session::ExportFailure::Program(call, o)) => {
                eprint!("{}", session.render(&o, &call, &call, render_options()));
                return Ok(Status::ProgramError);
            }
            Err(crate::session::ExportFailure::Message(m)) => {
                eprintln!("error: {m}");
                return Ok(Status::ProgramError);
            }
        };
    let write = |path: &Path, bytes: &[u8]| {
        crate::io::write_atomic(path, |w| w.write_all(bytes)).map_err(|e| CliError {
            message: format!("cannot write {}: {e}", path.display()),
            help: None,
            status: Status::ProgramError,
        })
    };
    let mut summary = None;
    if let (Some((out, external)), Some(model)) = (onnx, &onnx_model) {
        // The data file first: a model is never on disk pointing at data that is not.
        if let Some(data) = &model.external {
            let data_path = out.with_file_name(&external.location);
            write(&data_path, data)?;
            println!(
                "wrote {} ({} bytes of external data)",
                data_path.display(),
                data.len()
            );
        }
        write(out, &model.bytes)?;
        println!(
            "wrote {} ({} bytes, ONNX opset {})",
            out.display(),
            model.bytes.len(),
            export.opset
        );
        summary = Some(&model.summary);
    }
    if let (Some(out), Some(model)) = (mir, &mir_model) {
        write(out, &model.bytes)?;
        println!(
            "wrote {} ({} bytes, MindScript model format {}.{})",
            out.display(),
            model.bytes.len(),
            crate::io::msir::MAJOR,
            crate::io::msir::MINOR
        );
        summary = summary.or(Some(&model.summary));
    }
    if let Some(s) = summary {
        println!("  inputs:  {}", s.inputs.join(", "));
        println!("  outputs: {}", s.outputs.join(", "));
        println!(
            "  {} parameter tensor{} baked in ({} values)",
            s.initializers,
            if s.initializers == 1 { "" } else { "s" },
            s.parameters
        );
    }
    Ok(Status::Ok)
}

/// Runs the script of `options` in graph mode with its output and summaries hidden (`ms ir`,
/// `ms plan`, `ms export`), giving the session, or `None` after reporting the script's
/// errors.
fn run_hidden(options: &crate::Options) -> Result<Option<crate::Session>, CliError> {
    let path = options.script_path.clone().unwrap_or_default();
    let text = read_script(&path)?;
    install_interrupt_handler();
    let mut session = crate::Session::with_options(crate::Options {
        graph_mode: true,
        capture_output: true,
        ..options.clone()
    });
    session.mute_summaries();
    let outcome = session.eval(&text);
    if outcome.has_errors() {
        let file = path.display().to_string();
        eprint!(
            "{}",
            session.render(&outcome, &file, &text, render_options())
        );
        return Ok(None);
    }
    Ok(Some(session))
}

/// `--plan NAME=FILE` (repeatable): the saved plans, read and parsed. Under `ms plan`
/// (`this_fn` its `--fn`), a bare `--plan FILE` is that function's.
fn read_plans(
    given: &[String],
    this_fn: Option<&str>,
) -> Result<Vec<(String, ir::parallel::SavedPlan, String)>, CliError> {
    let mut out = Vec::new();
    for g in given {
        let (name, file) = match (g.split_once('='), this_fn) {
            (Some((n, f)), _) => (n.to_string(), f.to_string()),
            (None, Some(n)) => (n.to_string(), g.clone()),
            (None, None) => {
                return Err(CliError::usage(format!("`--plan {g}` names no function"))
                    .with_help("write `--plan NAME=FILE` (a plan saved by `ms plan --save`)"));
            }
        };
        let text = std::fs::read_to_string(&file).map_err(|e| CliError {
            message: format!("cannot read the plan `{file}`: {e}"),
            help: None,
            status: Status::ProgramError,
        })?;
        let plan = ir::parallel::SavedPlan::parse(&text).map_err(|e| CliError {
            message: format!("the plan `{file}`: {e}"),
            help: Some("`ms plan FILE.ms --fn NAME --save PLAN` writes one to start from".into()),
            status: Status::ProgramError,
        })?;
        out.push((name, plan, file));
    }
    Ok(out)
}

/// `ms plan`: runs the script as `ms ir` does, then prints the plan of the function; with
/// `--save`, writes it as text too.
fn plan_of(
    options: &crate::Options,
    name: &str,
    profile: &str,
    save: Option<&Path>,
) -> Result<Status, CliError> {
    let Some(mut session) = run_hidden(options)? else {
        return Ok(Status::ProgramError);
    };
    if let Err((call, out)) = session.stage_at_annotations(name) {
        eprint!("{}", session.render(&out, &call, &call, render_options()));
        return Ok(Status::ProgramError);
    }
    match session.plan_text(name, profile) {
        Ok(text) => {
            print!("{text}");
            if let Some(path) = save {
                let saved = session
                    .plan_saved_text(name, &format!("{}", path.display()))
                    .map_err(|m| CliError {
                        message: m,
                        help: None,
                        status: Status::ProgramError,
                    })?;
                crate::io::write_atomic(path, |w| w.write_all(saved.as_bytes())).map_err(|e| {
                    CliError {
                        message: format!("cannot write the plan to `{}`: {e}", path.display()),
                        help: None,
                        status: Status::ProgramError,
                    }
                })?;
                println!("plan saved to {}", path.display());
            }
            Ok(Status::Ok)
        }
        Err(message) => {
            eprintln!("error: {message}");
            Ok(Status::ProgramError)
        }
    }
}

fn check_file(path: &Path) -> Result<Status, CliError> {
    let text = read_script(path)?;
    let name = path.display().to_string();
    let report = crate::check::check_text(&name, &text, Some(path));
    eprint!("{}", report.render(render_options()));
    if report.has_errors() {
        eprintln!("{}", report.summary());
        Ok(Status::ProgramError)
    } else {
        Ok(Status::Ok)
    }
}

fn explain(code: Option<&str>) -> Result<Status, CliError> {
    match code {
        None => {
            for code in diagnostics::codes() {
                println!("{code}  {}", diagnostics::title(code).unwrap_or(""));
            }
            Ok(Status::Ok)
        }
        Some(code) => match diagnostics::explain(code) {
            Some(text) => {
                print!("{text}");
                Ok(Status::Ok)
            }
            None => Err(CliError::usage(format!("no diagnostic code `{code}`"))
                .with_help("`ms explain` lists the codes")),
        },
    }
}

fn demo(path: &str, epochs: usize, hidden: usize) -> Result<Status, CliError> {
    let started = std::time::Instant::now();
    let report = crate::demo::load_digits(path)
        .and_then(|data| crate::demo::train(&data, epochs, hidden, |line| println!("{line}")))
        .map_err(|e| CliError {
            message: e.to_string(),
            help: None,
            status: Status::ProgramError,
        })?;
    println!(
        "test accuracy {:.1}%  ({:.2} s)",
        100.0 * report.test_accuracy,
        started.elapsed().as_secs_f64()
    );
    Ok(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ms").chain(args.iter().copied()))
    }

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words_after_the_script_are_the_scripts() {
        let cli =
            parse(&["--seed", "3", "train.ms", "--epochs", "5", "--seed", "9"]).expect("parses");
        assert_eq!(cli.seed, Some(3));
        let Some(Cmd::Script(w)) = cli.command else {
            panic!("not a script: {:?}", cli.command)
        };
        assert_eq!(w, words(&["train.ms", "--epochs", "5", "--seed", "9"]));
        let options = script_options(&w[0], &w[1..], cli.seed.unwrap_or(0));
        assert_eq!(options.seed, 3);
        assert_eq!(
            options.script_args,
            words(&["--epochs", "5", "--seed", "9"])
        );
        assert_eq!(options.script_path, Some(PathBuf::from("train.ms")));

        let cli = parse(&["run", "--seed", "-4", "t.ms", "-x", "--threads", "2"]).expect("parses");
        assert_eq!((cli.seed, cli.threads), (Some(-4), None));
        let Some(Cmd::Run {
            words: w,
            check_modes,
        }) = cli.command
        else {
            panic!("not run: {:?}", cli.command)
        };
        assert_eq!(w, words(&["t.ms", "-x", "--threads", "2"]));
        assert!(!check_modes);

        // `--check-modes` before the script is `ms run`'s; after it, the script's.
        let cli = parse(&["run", "--check-modes", "t.ms", "--check-modes"]).expect("parses");
        let Some(Cmd::Run {
            words: w,
            check_modes,
        }) = cli.command
        else {
            panic!("not run: {:?}", cli.command)
        };
        assert!(check_modes);
        assert_eq!(w, words(&["t.ms", "--check-modes"]));
    }

    #[test]
    fn flags_are_checked() {
        use clap::error::ErrorKind;
        let kind = |args: &[&str]| parse(args).err().map(|e| e.kind());
        assert_eq!(kind(&["--threads", "0"]), Some(ErrorKind::ValueValidation));
        assert_eq!(
            kind(&["--threads", "two"]),
            Some(ErrorKind::ValueValidation)
        );
        assert_eq!(kind(&["--seed"]), Some(ErrorKind::InvalidValue));
        assert_eq!(kind(&["--nope"]), Some(ErrorKind::UnknownArgument));
        assert_eq!(kind(&["check"]), Some(ErrorKind::MissingRequiredArgument));
        assert_eq!(
            kind(&["demo", "--epochs", "0"]),
            Some(ErrorKind::ValueValidation)
        );
        let cli = parse(&["--threads", "3", "check", "a.ms"]).expect("parses");
        assert_eq!(cli.threads, Some(3));
        assert!(matches!(cli.command, Some(Cmd::Check { .. })));
        assert!(parse(&[]).expect("parses").command.is_none());
    }

    #[test]
    fn clap_errors_become_reports_with_a_hint() {
        let e = parse(&["--nope"]).expect_err("an unknown flag");
        let err = CliError::from_clap(&e);
        assert_eq!(err.message, "unexpected argument '--nope' found");
        assert_eq!(err.status, Status::Usage);
        let help = err.help.clone().unwrap_or_default();
        assert!(help.contains("usage: ms"), "{help}");
        let text = err.render(false);
        assert!(
            text.contains("× unexpected argument '--nope' found"),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn passes_are_named_or_none() {
        use ir::passes::Pass;
        assert_eq!(parse_passes("none").expect("none"), Vec::<Pass>::new());
        assert_eq!(
            parse_passes("fold, cse,fuse").expect("three"),
            [Pass::Fold, Pass::Cse, Pass::Fuse]
        );
        let e = parse_passes("fold,unroll").expect_err("no such pass");
        assert!(
            e.message.contains("`unroll` is not a pass"),
            "{}",
            e.message
        );
        let cli = parse(&["--passes", "none", "run", "t.ms"]).expect("parses");
        assert_eq!(cli.passes.as_deref(), Some("none"));
    }
}
