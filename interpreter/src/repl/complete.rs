//! Tab completion, as a pure function of the text, the cursor and a [`View`] of the
//! session, so that it is tested without a terminal.
//!
//! What is completed where:
//! - a word in code: the session's variables (those starting with `_` only when the word
//!   does), builtins and keywords;
//! - after `name.` (and `a.b.`, `t.0.`): the fields of a record, the members of a module
//!   (`nn.`, whatever members the module value has, less its `_` helpers), the positions of a tuple, and for a
//!   tensor its properties (`T`, `shape`, `dtype`) and the builtins, which method syntax
//!   calls (`x.sum()`);
//! - `:` at the start: the commands; after `:help`, any name or command; after `:type` and
//!   `:time`, code; after `:explain`, the diagnostic codes;
//! - nothing inside a string or a comment.

use std::collections::BTreeMap;

use lang::syntax::lexer;
use lang::syntax::token::Tok;

use super::commands::COMMANDS;
use crate::Session;
use crate::value::Value;

/// What completion sees of a session: its top-level values by name. Values are cheap to
/// clone (they share their data), so the line editor keeps a copy taken after each entry.
#[derive(Clone, Debug, Default)]
pub struct View {
    globals: BTreeMap<String, Value>,
}

impl View {
    /// The session's variables as they are now.
    pub fn of(session: &Session) -> View {
        View::from_globals(
            session
                .globals()
                .map(|(name, v)| (name.to_string(), v.clone())),
        )
    }

    /// A view of the given variables.
    pub fn from_globals(globals: impl IntoIterator<Item = (String, Value)>) -> View {
        View {
            globals: globals.into_iter().collect(),
        }
    }
}

/// The keywords of LANGUAGE.md §2.
pub const KEYWORDS: &[&str] = &[
    "as", "break", "continue", "else", "false", "fn", "for", "if", "import", "in", "let", "return",
    "true", "type", "while",
];

/// What a tensor offers after `.` besides method syntax on the builtins.
const TENSOR_PROPERTIES: &[&str] = &["T", "dtype", "shape"];

/// Completes the word that ends at byte `pos` of `line`: where that word starts, and the
/// whole words that may replace it, sorted and without repeats (none when nothing fits).
pub fn complete(line: &str, pos: usize, view: &View) -> (usize, Vec<String>) {
    let pos = pos.min(line.len());
    if !line.is_char_boundary(pos) {
        return (pos, Vec::new());
    }
    let before = &line[..pos];
    let indent = before.len() - before.trim_start().len();
    if let Some(command_line) = before[indent..].strip_prefix(':') {
        return complete_command(command_line, indent + 1, view);
    }
    complete_code(before, 0, view)
}

/// Completion on a command line; `offset` is where `text` (after the `:`) starts.
fn complete_command(text: &str, offset: usize, view: &View) -> (usize, Vec<String>) {
    let Some((name, rest)) = text.split_once(char::is_whitespace) else {
        return (offset, command_names(text));
    };
    let rest_offset = offset + name.len() + 1;
    match name {
        "type" | "time" => complete_code(rest, rest_offset, view),
        "help" | "h" => {
            let word_start = rest.len() - word_before(rest).len();
            let word = &rest[word_start..];
            let start = rest_offset + word_start;
            match rest[..word_start].trim() {
                "" => {
                    let mut names = names_in_scope(word, view);
                    names.extend(command_names(word));
                    names.sort();
                    names.dedup();
                    (start, names)
                }
                ":" => (start, command_names(word)),
                _ => (rest_offset + rest.len(), Vec::new()),
            }
        }
        "explain" => {
            let word = rest.trim_start();
            let start = rest_offset + rest.len() - word.len();
            let upper = word.to_ascii_uppercase();
            let codes = lang::diagnostics::codes()
                .filter(|c| c.starts_with(&upper))
                .map(str::to_string)
                .collect();
            (start, codes)
        }
        _ => (rest_offset + rest.len(), Vec::new()),
    }
}

fn command_names(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = COMMANDS
        .iter()
        .filter(|c| c.name.starts_with(prefix))
        .map(|c| c.name.to_string())
        .collect();
    names.sort();
    names
}

/// Completion in code; `offset` is where `code` starts in the line.
fn complete_code(code: &str, offset: usize, view: &View) -> (usize, Vec<String>) {
    let end = offset + code.len();
    if in_string_or_comment(code) {
        return (end, Vec::new());
    }
    let word = word_before(code);
    let word_start = code.len() - word.len();
    if word.starts_with(|c: char| c.is_ascii_digit()) {
        return (end, Vec::new());
    }
    let head = &code[..word_start];
    let candidates = if head.ends_with('.') && !head.ends_with("..") {
        match field_path(head) {
            Some(path) => members(&path, view)
                .into_iter()
                .filter(|m| m.starts_with(word))
                .collect(),
            None => Vec::new(),
        }
    } else {
        names_in_scope(word, view)
    };
    (offset + word_start, candidates)
}

/// The identifier characters at the end of `text` (the word being typed; maybe empty).
fn word_before(text: &str) -> &str {
    let start = text
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        .last()
        .map_or(text.len(), |(i, _)| i);
    &text[start..]
}

/// The path `a.b.0` before a final `.` of `head` (`head` ends with that `.`): its segments
/// from the root, or `None` when what precedes the dot is not a plain path from a
/// variable (a call, an index, a number).
fn field_path(head: &str) -> Option<Vec<&str>> {
    let mut segments = Vec::new();
    let mut rest = head.strip_suffix('.')?;
    loop {
        let seg = word_before(rest);
        if seg.is_empty() {
            return None;
        }
        segments.push(seg);
        rest = &rest[..rest.len() - seg.len()];
        match rest.strip_suffix('.') {
            Some(r) if !r.ends_with('.') => rest = r,
            Some(_) => return None,
            None => break,
        }
    }
    segments.reverse();
    // The root is a variable: a name, not a number (`1.5.` is no path).
    let root = segments.first()?;
    if root.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(segments)
}

/// What may follow `path.`: fields, members, tuple positions or tensor properties.
fn members(path: &[&str], view: &View) -> Vec<String> {
    let (root, fields) = match path.split_first() {
        Some(split) => split,
        None => return Vec::new(),
    };
    let Some(mut value) = view.globals.get(*root) else {
        return Vec::new();
    };
    for field in fields {
        let next = match value {
            Value::Record(r) => r.get(*field),
            Value::Module(m) => m.members.get(*field),
            Value::Tuple(items) => field.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(v) => value = v,
            None => return Vec::new(),
        }
    }
    let mut out: Vec<String> = match value {
        Value::Record(r) => r.keys().map(ToString::to_string).collect(),
        // A module's names starting with `_` are its own helpers (as in `nn`), not offered.
        Value::Module(m) => m
            .members
            .keys()
            .filter(|k| !k.starts_with('_'))
            .map(ToString::to_string)
            .collect(),
        Value::Tuple(items) => (0..items.len()).map(|i| i.to_string()).collect(),
        Value::Tensor(_) => TENSOR_PROPERTIES
            .iter()
            .chain(lang::check::builtins::names())
            .map(ToString::to_string)
            .collect(),
        _ => Vec::new(),
    };
    out.sort();
    out.dedup();
    out
}

/// Variables, builtins and keywords starting with `word`. Variables starting with `_`
/// (the last value `_`) are offered only when the word starts with `_`.
fn names_in_scope(word: &str, view: &View) -> Vec<String> {
    let hidden = !word.starts_with('_');
    let mut out: Vec<String> = view
        .globals
        .keys()
        .filter(|n| !(hidden && n.starts_with('_')))
        .map(String::as_str)
        .chain(lang::check::builtins::names().iter().copied())
        .chain(KEYWORDS.iter().copied())
        .filter(|n| n.starts_with(word))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// True when the end of `code` is inside a string or a comment, where nothing is
/// completed. The lexer drops comments, so a comment shows as text after the last token.
fn in_string_or_comment(code: &str) -> bool {
    let lexed = lexer::lex(code);
    if lexed.unterminated {
        return true;
    }
    let (last_end, in_doc) = lexed
        .tokens
        .iter()
        .rev()
        .find(|(t, _)| !matches!(t, Tok::Newline))
        .map_or((0, false), |(t, s)| {
            (s.end, matches!(t, Tok::Doc(_)) && s.end >= code.len())
        });
    if in_doc {
        return true;
    }
    let tail = code.get(last_end..).unwrap_or("");
    let tail = tail.rsplit('\n').next().unwrap_or("");
    tail.contains("//")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::value::Module;

    fn complete_all(line: &str, view: &View) -> (usize, Vec<String>) {
        complete(line, line.len(), view)
    }

    fn session_view(src: &str) -> View {
        let mut s = Session::new();
        let outcome = s.eval(src);
        assert!(!outcome.has_errors(), "{:?}", outcome.diagnostics);
        View::of(&s)
    }

    #[test]
    fn names_complete_from_variables_builtins_and_keywords() {
        let view = session_view("let weights = 1.0\nlet whole = 2\nfn widen(x) { x }");
        let (start, c) = complete_all("let y = w", &view);
        assert_eq!(start, 8);
        assert_eq!(c, ["weights", "where", "while", "whole", "widen"]);
        let (start, c) = complete_all("  sof", &view);
        assert_eq!((start, c), (2, vec!["softmax".into(), "softplus".into()]));
        let (_, c) = complete_all("retu", &view);
        assert_eq!(c, ["return"]);
        let (_, c) = complete_all("zzz", &view);
        assert!(c.is_empty());
    }

    #[test]
    fn the_last_value_is_offered_only_after_an_underscore() {
        let mut s = Session::new();
        s.eval("1 + 1");
        let view = View::of(&s);
        let (_, c) = complete_all("_", &view);
        assert_eq!(c, ["_"]);
        let (_, c) = complete_all("", &view);
        assert!(!c.contains(&"_".to_string()));
        assert!(c.contains(&"let".to_string()) && c.contains(&"zeros".to_string()));
    }

    #[test]
    fn record_fields_complete_after_a_dot_and_nested() {
        let view = session_view("let p = {w: 1.0, bias: 2.0, inner: {alpha: 1, beta: 2}}");
        let (start, c) = complete_all("p.", &view);
        assert_eq!(start, 2);
        assert_eq!(c, ["bias", "inner", "w"]);
        let (start, c) = complete_all("print(p.inner.al", &view);
        assert_eq!(start, 14);
        assert_eq!(c, ["alpha"]);
        let (_, c) = complete_all("p.nothing.", &view);
        assert!(c.is_empty());
        let (_, c) = complete_all("q.", &view);
        assert!(c.is_empty(), "no such variable");
    }

    #[test]
    fn module_members_come_from_the_module_value() {
        let mut members = BTreeMap::new();
        members.insert(Arc::from("linear"), Value::Unit);
        members.insert(Arc::from("lstm_cell"), Value::Unit);
        members.insert(Arc::from("adam"), Value::Unit);
        let nn = Value::Module(Arc::new(Module {
            name: Arc::from("nn"),
            members,
        }));
        let view = View::from_globals([("nn".to_string(), nn)]);
        let (start, c) = complete_all("let l = nn.l", &view);
        assert_eq!(start, 11);
        assert_eq!(c, ["linear", "lstm_cell"]);
        let (_, c) = complete_all("nn.", &view);
        assert_eq!(c, ["adam", "linear", "lstm_cell"]);
    }

    #[test]
    fn the_nn_module_offers_its_real_members() {
        let view = session_view("import nn");
        let (_, c) = complete_all("nn.ad", &view);
        assert_eq!(c, ["adam", "adamw"]);
        let (_, c) = complete_all("nn.", &view);
        for member in [
            "linear",
            "init_linear",
            "mlp",
            "lstm_cell",
            "sgd",
            "cross_entropy",
        ] {
            assert!(c.iter().any(|m| m == member), "{member} missing from {c:?}");
        }
        assert!(
            c.iter().all(|m| !m.starts_with('_')),
            "helpers offered: {c:?}"
        );
    }

    #[test]
    fn tuples_and_tensors_after_a_dot() {
        let view = session_view("let t = (1, {a: 2})\nlet x = [1.0, 2.0]");
        let (_, c) = complete_all("t.", &view);
        assert_eq!(c, ["0", "1"]);
        let (_, c) = complete_all("t.1.", &view);
        assert_eq!(c, ["a"]);
        let (_, c) = complete_all("x.s", &view);
        assert!(c.contains(&"shape".to_string()) && c.contains(&"sum".to_string()));
        assert!(c.iter().all(|n| n.starts_with('s')), "{c:?}");
        let (_, c) = complete_all("x.T", &view);
        assert_eq!(c, ["T"]);
    }

    #[test]
    fn nothing_after_a_call_a_number_or_a_range() {
        let view = session_view("let p = {w: 1.0}");
        assert!(complete_all("f(p).", &view).1.is_empty());
        assert!(complete_all("1.", &view).1.is_empty());
        assert!(complete_all("0..p", &view).1.contains(&"p".to_string()));
        assert!(complete_all("12", &view).1.is_empty());
    }

    #[test]
    fn nothing_inside_strings_and_comments() {
        let view = session_view("let pear = 1");
        assert!(complete_all("print(\"pe", &view).1.is_empty());
        assert!(complete_all("1 + 1 // pe", &view).1.is_empty());
        assert!(complete_all("/* pe", &view).1.is_empty());
        assert_eq!(complete_all("\"a\" + pe", &view).1, ["pear"]);
        assert_eq!(complete_all("// note\npe", &view).1, ["pear"]);
    }

    #[test]
    fn commands_complete_after_a_colon() {
        let view = View::default();
        let (start, c) = complete_all(":", &view);
        assert_eq!(start, 1);
        assert_eq!(c.len(), COMMANDS.len());
        assert_eq!(
            complete_all(":t", &view),
            (1, vec!["time".into(), "type".into()])
        );
        assert_eq!(complete_all(":re", &view).1, ["reset"]);
        assert_eq!(complete_all(":explain E030", &view).0, 9);
        assert!(
            complete_all(":explain e030", &view)
                .1
                .contains(&"E0301".to_string())
        );
    }

    #[test]
    fn command_arguments_complete_as_names_or_code() {
        let view = session_view("let pear = {ripe: true}");
        let (start, c) = complete_all(":help so", &view);
        assert_eq!(start, 6);
        assert_eq!(c, ["softmax", "softplus"]);
        let (_, c) = complete_all(":help ti", &view);
        assert_eq!(c, ["time"], "the builtin and the command are one word");
        let (start, c) = complete_all(":help :lo", &view);
        assert_eq!((start, c), (7, vec!["load".to_string()]));
        let (start, c) = complete_all(":type pear.r", &view);
        assert_eq!((start, c), (11, vec!["ripe".to_string()]));
        let (_, c) = complete_all(":time pe", &view);
        assert_eq!(c, ["pear"]);
        assert!(complete_all(":vars x", &view).1.is_empty());
    }

    #[test]
    fn the_cursor_need_not_be_at_the_end() {
        let view = session_view("let pear = 1");
        let line = "pe + 1";
        assert_eq!(complete(line, 2, &view), (0, vec!["pear".to_string()]));
        // A cursor inside a multi-byte character completes nothing instead of panicking.
        assert!(complete("é", 1, &view).1.is_empty());
        assert!(complete("pe", 99, &view).1.contains(&"pear".to_string()));
    }
}
