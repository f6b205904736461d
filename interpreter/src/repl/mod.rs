//! The REPL: `ms` with no arguments (LANGUAGE.md §11).
//!
//! Entries are read line by line; an entry the parser finds unfinished
//! (`lang::syntax::is_incomplete`: an open bracket, a trailing operator) continues on the
//! next line, and a complete one is checked and run by one persistent [`Session`], whose
//! values are echoed with their type; `_` is the last value. Lines starting with `:` are
//! commands ([`commands::COMMANDS`]).
//!
//! On a terminal the line editor is rustyline ([`editor`]): Tab completion of names,
//! fields, module members and commands ([`complete`]), syntax highlighting with the
//! language's lexer ([`highlight`]), grey hints from history, Enter continuing an
//! unfinished entry, history saved in `~/.mindscript_history`, Ctrl-C abandoning the
//! entry being typed and Ctrl-D leaving. When stdin is not a terminal there are no
//! prompts, no colours and the results are the same, so transcripts can be tested:
//! [`transcript`] runs the same REPL on lines given in memory.

pub mod commands;
pub mod complete;
pub mod editor;
pub mod help;
pub mod highlight;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use lang::diagnostics::{self, RenderOptions};
use lang::syntax::token::Tok;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor};

use crate::cli::Status;
use crate::value::{FnBody, Value, repr};
use crate::{Options, Outcome, Session};

use complete::View;

const PROMPT: &str = "ms> ";
const CONTINUE: &str = "... ";

/// An entry that runs faster than this is repeated by `:time` (see its help).
const TIME_REPEAT_BELOW: Duration = Duration::from_millis(100);
/// How many runs `:time` makes of a fast entry, the first included.
const TIME_RUNS: usize = 5;

/// Runs the REPL with the default session options until end of input or `:quit`.
pub fn run() -> Status {
    run_with(Options::default())
}

/// Runs the REPL until end of input or `:quit`, with sessions (the first, and each
/// `:reset`) made from `options`.
pub fn run_with(options: Options) -> Status {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut repl = Repl::new(
        options,
        color,
        Box::new(std::io::stdout()),
        Box::new(std::io::stderr()),
    );
    if std::io::stdin().is_terminal() {
        repl.interactive()
    } else {
        let stdin = std::io::stdin();
        let lines = stdin.lock().lines().map_while(std::io::Result::ok);
        repl.lines(lines);
        Status::Ok
    }
}

/// Runs the REPL on `input` in memory, as `ms` would over a pipe, and returns the
/// transcript: each line of input after the prompt it would get (`ms> `, or `... ` for
/// continuation lines), then what the REPL and the program wrote, output and errors in
/// order, without colours. Removing the prompt lines gives exactly what `ms < input`
/// writes to stdout and stderr together.
pub fn transcript(options: Options, input: &str) -> String {
    let buffer = SharedBuffer::default();
    let options = Options {
        capture_output: true,
        ..options
    };
    let mut repl = Repl::new(
        options,
        false,
        Box::new(buffer.clone()),
        Box::new(buffer.clone()),
    );
    repl.echo = true;
    repl.lines(input.lines().map(str::to_string));
    let bytes = buffer.0.borrow();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A writer whose bytes stay readable by its clones (the transcript's one stream).
#[derive(Clone, Debug, Default)]
struct SharedBuffer(Rc<RefCell<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A running REPL: the session and where its results go.
struct Repl {
    session: Session,
    /// How sessions are made (the first and each `:reset`).
    options: Options,
    color: bool,
    out: Box<dyn Write>,
    err: Box<dyn Write>,
    /// Write each input line after its prompt (the in-memory transcript).
    echo: bool,
}

/// What to do after an entry.
enum Next {
    Continue,
    Quit,
}

impl Repl {
    fn new(options: Options, color: bool, out: Box<dyn Write>, err: Box<dyn Write>) -> Repl {
        Repl {
            session: Session::with_options(options.clone()),
            options,
            color,
            out,
            err,
            echo: false,
        }
    }

    fn interactive(&mut self) -> Status {
        let config = Config::builder()
            .completion_type(CompletionType::List)
            .auto_add_history(false)
            .build();
        let mut editor: Editor<editor::Helper, DefaultHistory> = match Editor::with_config(config) {
            Ok(e) => e,
            Err(e) => {
                let _ = writeln!(self.err, "error: cannot edit lines on this terminal ({e})");
                let stdin = std::io::stdin();
                self.lines(stdin.lock().lines().map_while(std::io::Result::ok));
                return Status::Ok;
            }
        };
        editor.set_helper(Some(editor::Helper::new(
            View::of(&self.session),
            self.color,
        )));
        let history = history_path();
        if let Some(path) = &history {
            // A missing history file is normal on the first run.
            let _ = editor.load_history(path);
        }
        let _ = writeln!(
            self.out,
            "MindScript {} — :help for commands, Tab completes, Ctrl-D leaves",
            env!("CARGO_PKG_VERSION")
        );
        let _ = self.out.flush();
        loop {
            match editor.readline(PROMPT) {
                Ok(entry) => {
                    if !entry.trim().is_empty() {
                        let _ = editor.add_history_entry(entry.trim_end());
                    }
                    let next = self.entry(&entry);
                    if let Some(helper) = editor.helper_mut() {
                        helper.view = View::of(&self.session);
                    }
                    if let Next::Quit = next {
                        break;
                    }
                }
                Err(ReadlineError::Interrupted) => {}
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    let _ = writeln!(self.err, "error: {e}");
                    break;
                }
            }
        }
        if let Some(path) = &history
            && let Err(e) = editor.save_history(path)
        {
            let _ = writeln!(
                self.err,
                "warning: history not saved to {}: {e}",
                path.display()
            );
        }
        Status::Ok
    }

    /// Runs the entries of `lines` (no line editor): unfinished entries continue on the
    /// next line; a command is one line.
    ///
    /// Reading ahead is possible here, unlike on a terminal, so a line starting with `else`
    /// or `.` continues the entry before it, as in a script (LANGUAGE.md §13).
    fn lines(&mut self, lines: impl Iterator<Item = String>) {
        let mut lines = lines.peekable();
        let mut entry = String::new();
        while let Some(line) = lines.next() {
            if self.echo {
                let prompt = if entry.is_empty() { PROMPT } else { CONTINUE };
                let _ = writeln!(self.out, "{prompt}{line}");
            }
            if entry.is_empty() && line.trim_start().starts_with(':') {
                if let Next::Quit = self.entry(&line) {
                    return;
                }
                continue;
            }
            entry.push_str(&line);
            entry.push('\n');
            if unfinished(&entry) || lines.peek().is_some_and(|l| continues_previous(l)) {
                continue;
            }
            let next = self.entry(&entry);
            entry.clear();
            if let Next::Quit = next {
                return;
            }
        }
        if !entry.trim().is_empty() {
            // The input ended inside an entry: run it, so that its error says what is
            // missing.
            self.entry(&entry);
        }
    }

    /// Runs one complete entry: a command or MindScript.
    fn entry(&mut self, entry: &str) -> Next {
        let text = entry.trim();
        if text.is_empty() {
            return Next::Continue;
        }
        let next = match text.strip_prefix(':') {
            Some(command) => self.command(command),
            None => {
                let outcome = self.session.eval(entry);
                self.show(&outcome, "<repl>", entry, true);
                Next::Continue
            }
        };
        let _ = self.out.flush();
        let _ = self.err.flush();
        next
    }

    fn render_options(&self) -> RenderOptions {
        RenderOptions { color: self.color }
    }

    /// Writes what an entry printed (when captured), its values (when `echo_values`) and
    /// its diagnostics rendered against `src`, called `name`.
    fn show(&mut self, outcome: &Outcome, name: &str, src: &str, echo_values: bool) {
        let _ = self.out.write_all(outcome.output.as_bytes());
        if echo_values {
            for value in &outcome.values {
                let _ = writeln!(self.out, "{}", repr(value));
            }
        }
        let _ = self.out.flush();
        let rendered = self
            .session
            .render(outcome, name, src, self.render_options());
        let _ = self.err.write_all(rendered.as_bytes());
        let _ = self.err.flush();
    }

    /// Writes an error of the REPL itself (not of the program).
    fn error(&mut self, message: &str) {
        let _ = self.out.flush();
        let _ = writeln!(self.err, "error: {message}");
        let _ = self.err.flush();
    }

    fn say(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = self.out.write_all(b"\n");
        }
    }

    fn command(&mut self, command: &str) -> Next {
        let (name, arg) = command
            .split_once(char::is_whitespace)
            .unwrap_or((command, ""));
        let arg = arg.trim();
        let Some(found) = commands::find(name) else {
            let mut message = format!("unknown command `:{name}`");
            if let Some(near) = commands::suggest(name) {
                message.push_str(&format!("; did you mean `:{near}`?"));
            }
            message.push_str(" (:help lists the commands)");
            self.error(&message);
            return Next::Continue;
        };
        let needs_arg = found.args.starts_with(|c: char| c.is_ascii_uppercase());
        if needs_arg && arg.is_empty() {
            self.error(&format!(
                "`:{0}` needs its argument: `:{0} {1}`",
                found.name, found.args
            ));
            return Next::Continue;
        }
        match found.name {
            "quit" => return Next::Quit,
            "help" => self.help(arg),
            "vars" => self.vars(),
            "explain" => self.explain(arg),
            "type" => self.type_of(arg),
            "load" => self.load(arg),
            "reset" => {
                self.session = Session::with_options(self.options.clone());
                self.say("the session is reset: no variables are defined");
            }
            "time" => self.time(arg),
            "mode" => match arg.trim() {
                "" => {
                    let m = if self.session.graph_mode() {
                        "graph"
                    } else {
                        "eager"
                    };
                    self.say(&format!("mode: {m}"));
                }
                "graph" => {
                    self.session.set_graph_mode(true);
                    self.say("graph mode: named functions called from the top level are staged");
                }
                "eager" => {
                    self.session.set_graph_mode(false);
                    self.say("eager mode: functions run op by op");
                }
                other => self.error(&format!("`{other}` is not a mode: use eager or graph")),
            },
            "plan" => {
                let mut words = arg.split_whitespace();
                let name = words.next().unwrap_or("");
                let profile = words.next().unwrap_or("cpu");
                let _ = self.session.stage_at_annotations(name);
                match self.session.plan_text(name, profile) {
                    Ok(text) => self.say(text.trim_end()),
                    Err(e) => self.error(&e),
                }
            }
            "device" => match arg.trim() {
                "" => self.say(&format!("device: {}", self.session.device())),
                name => match crate::cli::open_device(Some(name)) {
                    Ok(device) => {
                        let device = device
                            .unwrap_or_else(|| std::sync::Arc::new(devices::CpuDevice::new()));
                        let id = device.id();
                        self.session.set_device(device);
                        self.say(&format!("device: {id}"));
                    }
                    Err(e) => self.error(&format!("{e} (:device takes cpu, cuda or cuda:N)")),
                },
            },
            "ir" => {
                // A function never called is staged at its annotated types first.
                let staged = self.session.stage_at_annotations(arg.trim()).is_ok();
                match self.session.staged_ir(arg.trim()).filter(|_| staged) {
                    Some(graphs) => self.say(graphs.join("\n").trim_end()),
                    None => self.error(&format!(
                        "`{}` has no staged graph: call it first (a `@jit` function, or any \
                         named function in graph mode), or annotate its parameters",
                        arg.trim()
                    )),
                }
            }
            "passes" => {
                let name = arg.trim();
                let staged = self.session.stage_at_annotations(name).is_ok();
                match self.session.passes_ir(name).filter(|_| staged) {
                    Some(text) => self.say(text.trim_end()),
                    None => self.error(&format!(
                        "`{name}` has no staged graph: call it first, or annotate its parameters"
                    )),
                }
            }
            other => self.error(&format!("the command `:{other}` has no action")),
        }
        Next::Continue
    }

    fn vars(&mut self) {
        let mut text = String::new();
        for (name, ty) in self.session.checker().globals() {
            if !name.starts_with('_') {
                text.push_str(&format!("{name}: {ty}\n"));
            }
        }
        if text.is_empty() {
            text.push_str("no variables yet\n");
        }
        self.say(&text);
    }

    fn explain(&mut self, code: &str) {
        if code.is_empty() {
            let mut list = String::new();
            for c in diagnostics::codes() {
                list.push_str(&format!("{c} {}\n", diagnostics::title(c).unwrap_or("")));
            }
            self.say(&list);
            return;
        }
        match diagnostics::explain(&code.to_ascii_uppercase()) {
            Some(text) => self.say(text),
            None => self.error(&format!(
                "no diagnostic code `{code}` (`:explain` alone lists them)"
            )),
        }
    }

    fn type_of(&mut self, arg: &str) {
        let (expr, mut diags) = lang::syntax::parse_expr(arg);
        if let Some(expr) = expr.filter(|_| diags.is_empty()) {
            let (ty, more) = self.session.checker().type_of(arg, &expr);
            diags.extend(more);
            if diags.is_empty() {
                self.say(&ty.to_string());
            }
        }
        let main = diagnostics::SourceFile {
            name: "<type>",
            text: arg,
        };
        let rendered = diagnostics::render_all(&diags, main, &[], self.render_options());
        let _ = self.out.flush();
        let _ = self.err.write_all(rendered.as_bytes());
    }

    /// `:load FILE`: the file's text as one entry, reported under the file's name.
    fn load(&mut self, path: &str) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.error(&format!("cannot read `{path}`: {e}"));
                return;
            }
        };
        let before: BTreeSet<String> = self.session.globals().map(|(n, _)| n.to_string()).collect();
        // The file's imports resolve against its own folder.
        let outcome = self.session.eval_file(std::path::Path::new(path), &text);
        self.show(&outcome, path, &text, false);
        if outcome.has_errors() {
            return;
        }
        let mut defined: Vec<String> = self
            .session
            .globals()
            .map(|(n, _)| n.to_string())
            .filter(|n| !before.contains(n) && !n.starts_with('_'))
            .collect();
        defined.sort();
        if defined.is_empty() {
            self.say(&format!("loaded {path}"));
        } else {
            self.say(&format!("loaded {path}: {}", defined.join(", ")));
        }
    }

    /// `:time EXPR`: runs the entry, shows it as usual and then the wall time (see the
    /// command's help for the repeats).
    fn time(&mut self, src: &str) {
        let start = Instant::now();
        let first = self.session.eval(src);
        let mut times = vec![start.elapsed()];
        self.show(&first, "<time>", src, true);
        if first.has_errors() {
            return;
        }
        if times[0] < TIME_REPEAT_BELOW {
            let saved = self.session.swap_output(Box::new(std::io::sink()));
            for _ in 1..TIME_RUNS {
                let start = Instant::now();
                let again = self.session.eval(src);
                times.push(start.elapsed());
                if again.has_errors() {
                    break;
                }
            }
            self.session.swap_output(saved);
        }
        times.sort();
        let median = times[times.len() / 2];
        let line = if times.len() == 1 {
            format!("time: {} (1 run)", format_duration(median))
        } else {
            format!(
                "time: {} (median of {} runs, fastest {})",
                format_duration(median),
                times.len(),
                format_duration(times[0])
            )
        };
        self.say(&line);
    }

    /// `:help` and `:help NAME`.
    fn help(&mut self, name: &str) {
        if name.is_empty() {
            self.say(&commands::help_text());
            return;
        }
        if let Some(command) = name.strip_prefix(':') {
            match commands::find(command) {
                Some(c) => self.say(&commands::command_help(c)),
                None => self.error(&format!("no command `:{command}` (`:help` lists them)")),
            }
            return;
        }
        let mut text = String::new();
        if let Some(value) = self.lookup(name) {
            text.push_str(&self.value_help(name, &value));
        } else if let Some(builtin) = help::builtin_help(name) {
            text.push_str(&builtin);
        }
        if let Some(c) = commands::find(name) {
            if text.is_empty() {
                text.push_str(&commands::command_help(c));
            } else {
                text.push_str(&format!(
                    "  (`:{}` is also a command: `:help :{}`)\n",
                    c.name, c.name
                ));
            }
        }
        if text.is_empty() {
            self.error(&format!(
                "`{name}` is not a variable, a builtin or a command (`:vars` lists the \
                 variables, Tab completes names)"
            ));
        } else {
            self.say(&text);
        }
    }

    /// The value of a variable, or of a field or module member reached from one
    /// (`p.w`, `nn.linear`).
    fn lookup(&self, path: &str) -> Option<Value> {
        let mut parts = path.split('.');
        let mut value = self.session.global(parts.next()?)?.clone();
        for part in parts {
            value = match &value {
                Value::Record(fields) => fields.get(part)?.clone(),
                Value::Module(m) => m.members.get(part)?.clone(),
                Value::Tuple(items) => items.get(part.parse::<usize>().ok()?)?.clone(),
                _ => return None,
            };
        }
        Some(value)
    }

    /// The help of a session variable: a function's signature as written and its doc
    /// comment, a closure's parameters, or any other value's type.
    fn value_help(&mut self, name: &str, value: &Value) -> String {
        match value {
            Value::Fn(f) => match &f.body {
                FnBody::Decl(decl) => {
                    let header = self
                        .session
                        .source_text(f.src)
                        .and_then(|src| src.get(decl.span.start..decl.body.span.start))
                        .map(signature_text)
                        .unwrap_or_else(|| format!("fn {name}(...)"));
                    let doc = match &decl.doc {
                        Some(doc) => doc
                            .lines()
                            .map(|l| format!("  {}\n", l.trim()))
                            .collect::<String>(),
                        None => "  (no doc comment: write `///` lines just before the `fn`)\n"
                            .to_string(),
                    };
                    format!("{header}\n{doc}")
                }
                FnBody::Closure(_) => {
                    let params: Vec<&str> = f.params.iter().map(|p| &*p.name.name).collect();
                    format!("{name}: a closure |{}|\n", params.join(", "))
                }
            },
            Value::Builtin(b) => help::builtin_help(b).unwrap_or_default(),
            other => {
                let ty = self
                    .session
                    .checker()
                    .globals()
                    .into_iter()
                    .find(|(n, _)| &**n == name)
                    .map_or_else(|| other.describe(), |(_, ty)| ty.to_string());
                format!("{name}: {ty}\n")
            }
        }
    }
}

/// True when `entry` needs more lines: the parser finds it unfinished, or it ends with a
/// `///` doc comment or an attribute line (`@jit`), which belong to the `fn` on the lines
/// after them.
pub fn unfinished(entry: &str) -> bool {
    if lang::syntax::is_incomplete(entry) {
        return true;
    }
    let last_line = entry.lines().rev().find(|l| !l.trim().is_empty());
    if last_line.is_some_and(|l| l.trim_start().starts_with('@')) {
        return true;
    }
    let lexed = lang::syntax::lexer::lex(entry);
    let last = lexed
        .tokens
        .iter()
        .rev()
        .find(|(t, _)| !matches!(t, Tok::Newline));
    matches!(last, Some((Tok::Doc(_), _)))
}

/// True for a line that continues the statement before it: one starting with `else` or
/// with `.` (a method call on the previous line's value).
fn continues_previous(line: &str) -> bool {
    let line = line.trim_start();
    let starts_else = line
        .strip_prefix("else")
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
    starts_else || (line.starts_with('.') && !line.starts_with(".."))
}

/// A function's signature as written in `header` (the text from the declaration's start
/// to its body): without doc comment lines, whitespace runs made one space.
fn signature_text(header: &str) -> String {
    let code: Vec<&str> = header
        .lines()
        .filter(|l| !l.trim_start().starts_with("///"))
        .collect();
    code.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A duration with three significant digits in a fitting unit (`812 µs`, `12.3 ms`,
/// `1.50 s`).
fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    let (value, unit) = if secs < 1e-3 {
        (secs * 1e6, "µs")
    } else if secs < 1.0 {
        (secs * 1e3, "ms")
    } else {
        (secs, "s")
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

/// `~/.mindscript_history`, when there is a home folder.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".mindscript_history"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_micros(812)), "812 µs");
        assert_eq!(format_duration(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.50 s");
        assert_eq!(format_duration(Duration::from_nanos(1500)), "1.50 µs");
    }

    #[test]
    fn the_transcript_keeps_state_between_entries() {
        let t = transcript(Options::default(), "let x = 2\nx * 3\n_ + 1\n");
        assert_eq!(t, "ms> let x = 2\nms> x * 3\ni64 6\nms> _ + 1\ni64 7\n");
    }

    #[test]
    fn doc_comments_and_else_lines_continue_an_entry() {
        assert!(unfinished("/// doc\n"));
        assert!(unfinished("let x = 1\n/// doc\n"));
        assert!(!unfinished("/// doc\nfn f() { 1 }\n"));
        assert!(unfinished("fn f(a,\n"));
        assert!(continues_previous("  else {"));
        assert!(continues_previous(".sum()"));
        assert!(!continues_previous("elsewhere = 1"));
        assert!(!continues_previous("..3"));
        assert_eq!(
            signature_text("/// Adds.\n@jit\nfn add(a,\n       b) -> f32 "),
            "@jit fn add(a, b) -> f32"
        );
    }

    #[test]
    fn a_command_line_never_continues() {
        let t = transcript(Options::default(), ":type 1 +\n1\n");
        assert!(t.contains("E0001"), "{t}");
        assert!(t.ends_with("ms> 1\ni64 1\n"), "{t}");
    }
}
