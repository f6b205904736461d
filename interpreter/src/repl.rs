//! The REPL: `ms` with no arguments.
//!
//! Entries are read line by line; an entry the parser finds unfinished
//! (`lang::syntax::is_incomplete`: an open bracket, a trailing operator) continues on the
//! next line, and a complete one is checked and run by one persistent [`Session`], whose
//! values are echoed with their type. On a terminal the line editor is rustyline (history
//! saved in `~/.mindscript_history`, Ctrl-C abandons the entry being typed, Ctrl-D exits);
//! when stdin is a pipe there are no prompts and the output is the same, so transcripts
//! can be tested.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use lang::diagnostics::{self, RenderOptions};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::cli::Status;
use crate::value::repr;
use crate::{Outcome, Session};

const PROMPT: &str = "ms> ";
const CONTINUE: &str = "... ";
const HELP: &str = "Enter MindScript statements; an unfinished line continues on the next.
commands:
  :type EXPR     the checked type of an expression, with symbolic dims
  :vars          the variables defined so far and their types
  :explain CODE  what a diagnostic code means
  :help          this text
  :quit          leave (Ctrl-D too)";

/// Runs the REPL until end of input or `:quit`.
pub fn run() -> Status {
    run_with(crate::Options::default())
}

/// Runs the REPL with a session set up by `options` (`ms --seed N`).
pub fn run_with(options: crate::Options) -> Status {
    let mut repl = Repl {
        session: Session::with_options(options),
        color: std::io::stderr().is_terminal(),
    };
    if std::io::stdin().is_terminal() {
        repl.interactive()
    } else {
        repl.piped()
    }
}

struct Repl {
    session: Session,
    color: bool,
}

/// What to do after an entry.
enum Next {
    Continue,
    Quit,
}

impl Repl {
    fn interactive(&mut self) -> Status {
        let Ok(mut editor) = DefaultEditor::new() else {
            eprintln!("error: cannot open the terminal for line editing");
            return self.piped();
        };
        let history = history_path();
        if let Some(path) = &history {
            // A missing history file is normal on the first run.
            let _ = editor.load_history(path);
        }
        println!(
            "MindScript {} — :help for commands, Ctrl-D to leave",
            env!("CARGO_PKG_VERSION")
        );
        let mut entry = String::new();
        loop {
            let prompt = if entry.is_empty() { PROMPT } else { CONTINUE };
            match editor.readline(prompt) {
                Ok(line) => {
                    entry.push_str(&line);
                    entry.push('\n');
                    if lang::syntax::is_incomplete(&entry) {
                        continue;
                    }
                    let _ = editor.add_history_entry(entry.trim_end());
                    let next = self.entry(&entry);
                    entry.clear();
                    if let Next::Quit = next {
                        break;
                    }
                }
                Err(ReadlineError::Interrupted) => entry.clear(),
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("error: {e}");
                    break;
                }
            }
        }
        if let Some(path) = &history
            && let Err(e) = editor.save_history(path)
        {
            eprintln!("warning: history not saved to {}: {e}", path.display());
        }
        Status::Ok
    }

    fn piped(&mut self) -> Status {
        let stdin = std::io::stdin();
        let mut entry = String::new();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            entry.push_str(&line);
            entry.push('\n');
            if lang::syntax::is_incomplete(&entry) {
                continue;
            }
            let next = self.entry(&entry);
            entry.clear();
            if let Next::Quit = next {
                return Status::Ok;
            }
        }
        if !entry.trim().is_empty() {
            self.entry(&entry);
        }
        Status::Ok
    }

    /// Runs one complete entry: a command or MindScript.
    fn entry(&mut self, entry: &str) -> Next {
        let text = entry.trim();
        if text.is_empty() {
            return Next::Continue;
        }
        if let Some(command) = text.strip_prefix(':') {
            return self.command(command);
        }
        let outcome = self.session.eval(entry);
        self.show(&outcome, entry);
        Next::Continue
    }

    fn show(&self, outcome: &Outcome, entry: &str) {
        let mut out = std::io::stdout().lock();
        for value in &outcome.values {
            let _ = writeln!(out, "{}", repr(value));
        }
        let _ = out.flush();
        let options = RenderOptions { color: self.color };
        eprint!("{}", self.session.render(outcome, "<repl>", entry, options));
    }

    fn command(&mut self, command: &str) -> Next {
        let (name, arg) = command
            .split_once(char::is_whitespace)
            .unwrap_or((command, ""));
        let arg = arg.trim();
        match name {
            "quit" | "q" => return Next::Quit,
            "help" | "h" => println!("{HELP}"),
            "vars" => {
                for (name, ty) in self.session.checker().globals() {
                    if !name.starts_with('_') {
                        println!("{name}: {ty}");
                    }
                }
            }
            "explain" => match diagnostics::explain(arg) {
                Some(text) => print!("{text}"),
                None => eprintln!("error: no diagnostic code `{arg}`"),
            },
            "type" => {
                let (expr, mut diags) = lang::syntax::parse_expr(arg);
                if let Some(expr) = expr.filter(|_| diags.is_empty()) {
                    let (ty, more) = self.session.checker().type_of(arg, &expr);
                    diags.extend(more);
                    if diags.is_empty() {
                        println!("{ty}");
                    }
                }
                let main = diagnostics::SourceFile {
                    name: "<type>",
                    text: arg,
                };
                let options = RenderOptions { color: self.color };
                eprint!("{}", diagnostics::render_all(&diags, main, &[], options));
            }
            other => eprintln!("error: unknown command `:{other}` (:help lists them)"),
        }
        Next::Continue
    }
}

/// `~/.mindscript_history`, when there is a home folder.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".mindscript_history"))
}
