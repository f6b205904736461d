//! The `ms` command line: argument parsing and the commands.
//!
//! Parsing is hand-written: the grammar is a handful of subcommands with a few flags, and
//! a hand-written parser keeps the usage errors in our own words (exit status 2).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use lang::diagnostics::{self, RenderOptions};

/// The usage text printed after a usage error and by `ms --help`.
pub const USAGE: &str = "usage:
  ms                          the REPL (:help inside it lists its commands)
  ms FILE.ms [--seed N]       check a script, then run it eagerly (also `ms run FILE.ms`)
  ms check FILE.ms            parse and type-check a script without running it
  ms explain [CODE]           explain a diagnostic code (E0301); without CODE, list them
  ms demo [CSV] [--epochs N] [--hidden N]
                              train a 64-h-10 perceptron on the UCI digits
                              (default samples/data/digits.csv) directly on the CPU device
exit status: 0 success, 1 an error in the program, 2 bad usage";

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
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `ms` alone: the REPL.
    Repl,
    /// `ms --help`.
    Help,
    /// `ms FILE.ms` or `ms run FILE.ms`.
    Run {
        /// The script.
        path: PathBuf,
        /// The random seed (`--seed N`; LANGUAGE.md §10 defaults it to 0).
        seed: i64,
    },
    /// `ms check FILE`.
    Check(PathBuf),
    /// `ms explain [CODE]`.
    Explain(Option<String>),
    /// `ms demo [CSV] [--epochs N] [--hidden N]`.
    Demo {
        /// The digits CSV.
        path: String,
        /// Training epochs.
        epochs: usize,
        /// Hidden units.
        hidden: usize,
    },
}

impl Command {
    /// Parses the arguments after the program name.
    pub fn parse(args: &[String]) -> Result<Command, String> {
        let mut it = args.iter().map(String::as_str);
        match it.next() {
            None => Ok(Command::Repl),
            Some("--help" | "-h" | "help") => Ok(Command::Help),
            Some("check") => {
                let file = it.next().ok_or("`ms check` needs a FILE.ms")?;
                reject_rest(it)?;
                Ok(Command::Check(PathBuf::from(file)))
            }
            Some("explain") => {
                let code = it.next().map(str::to_string);
                reject_rest(it)?;
                Ok(Command::Explain(code))
            }
            Some("demo") => parse_demo(it),
            Some("run") => {
                let file = it.next().ok_or("`ms run` needs a FILE.ms")?;
                parse_run(file, it)
            }
            Some(other) if other.ends_with(".ms") => parse_run(other, it),
            Some(other) if other.starts_with('-') => Err(format!("unknown flag `{other}`")),
            Some(other) => Err(format!("unknown command `{other}`")),
        }
    }

    /// Runs the command, printing its output, and returns the exit status.
    pub fn run(self) -> Status {
        match self {
            Command::Repl => crate::repl::run(),
            Command::Help => {
                println!("{USAGE}");
                Status::Ok
            }
            Command::Run { path, seed } => run_file(&path, seed),
            Command::Check(path) => check_file(&path),
            Command::Explain(code) => explain(code.as_deref()),
            Command::Demo {
                path,
                epochs,
                hidden,
            } => demo(&path, epochs, hidden),
        }
    }
}

fn reject_rest<'a>(mut rest: impl Iterator<Item = &'a str>) -> Result<(), String> {
    match rest.next() {
        Some(extra) => Err(format!("unexpected argument `{extra}`")),
        None => Ok(()),
    }
}

fn parse_run<'a>(file: &str, mut it: impl Iterator<Item = &'a str>) -> Result<Command, String> {
    let mut seed = 0;
    while let Some(a) = it.next() {
        match a {
            "--seed" => {
                let v = it.next().ok_or("--seed needs a value")?;
                seed = v
                    .parse()
                    .map_err(|_| format!("--seed takes a whole number, not `{v}`"))?;
            }
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok(Command::Run {
        path: PathBuf::from(file),
        seed,
    })
}

fn parse_demo<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<Command, String> {
    let (mut path, mut epochs, mut hidden) = ("samples/data/digits.csv".to_string(), 20, 64);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{name} takes a positive whole number, not `{v}`"))
        };
        match a {
            "--epochs" => epochs = number("--epochs")?,
            "--hidden" => hidden = number("--hidden")?,
            s if s.starts_with("--") => return Err(format!("unknown flag `{s}`")),
            s => path = s.to_string(),
        }
    }
    Ok(Command::Demo {
        path,
        epochs,
        hidden,
    })
}

/// Colour only for a terminal, and never when `NO_COLOR` is set (no-color.org).
fn render_options() -> RenderOptions {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    RenderOptions { color }
}

/// Reads a script as UTF-8 text, reporting why it cannot be (status 2 for a missing or
/// unreadable file, 1 for a file that is not text).
fn read_script(path: &Path) -> Result<String, Status> {
    let bytes = std::fs::read(path).map_err(|e| {
        eprintln!("error: cannot read {}: {e}", path.display());
        Status::Usage
    })?;
    String::from_utf8(bytes).map_err(|_| {
        eprintln!("error: {} is not UTF-8 text", path.display());
        Status::ProgramError
    })
}

fn run_file(path: &Path, seed: i64) -> Status {
    let text = match read_script(path) {
        Ok(text) => text,
        Err(status) => return status,
    };
    let options = crate::Options {
        seed,
        ..crate::Options::default()
    };
    let mut session = crate::Session::with_options(options);
    let outcome = session.eval(&text);
    let name = path.display().to_string();
    eprint!(
        "{}",
        session.render(&outcome, &name, &text, render_options())
    );
    if outcome.has_errors() {
        Status::ProgramError
    } else {
        Status::Ok
    }
}

fn check_file(path: &Path) -> Status {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return Status::Usage;
        }
    };
    let Ok(text) = String::from_utf8(text) else {
        eprintln!("error: {} is not UTF-8 text", path.display());
        return Status::ProgramError;
    };
    let name = path.display().to_string();
    let report = crate::check::check_text(&name, &text, path.parent());
    eprint!("{}", report.render(render_options()));
    if report.has_errors() {
        eprintln!("{}", report.summary());
        Status::ProgramError
    } else {
        Status::Ok
    }
}

fn explain(code: Option<&str>) -> Status {
    match code {
        None => {
            for code in diagnostics::codes() {
                println!("{code}  {}", diagnostics::title(code).unwrap_or(""));
            }
            Status::Ok
        }
        Some(code) => match diagnostics::explain(code) {
            Some(text) => {
                print!("{text}");
                Status::Ok
            }
            None => {
                eprintln!("error: no diagnostic code `{code}` (`ms explain` lists them)");
                Status::Usage
            }
        },
    }
}

fn demo(path: &str, epochs: usize, hidden: usize) -> Status {
    let started = std::time::Instant::now();
    let result = crate::demo::load_digits(path)
        .and_then(|data| crate::demo::train(&data, epochs, hidden, |line| println!("{line}")));
    match result {
        Ok(report) => {
            println!(
                "test accuracy {:.1}%  ({:.2} s)",
                100.0 * report.test_accuracy,
                started.elapsed().as_secs_f64()
            );
            Status::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            Status::ProgramError
        }
    }
}
