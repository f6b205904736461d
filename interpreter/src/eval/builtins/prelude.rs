//! The builtins written in MindScript: the glue between a builtin call and the prelude
//! ([`stdlib::PRELUDE`]).
//!
//! The prelude is parsed and checked once per process, the first time one of its builtins
//! is called (so creating a session costs nothing), and its functions become function
//! values whose spans index the prelude's text, a source the session does not list
//! ([`PRELUDE_SRC`]). A call binds its arguments with the checker's signature, like the
//! Rust builtins, and passes them by parameter name (the prelude uses the signature's
//! names, which a test checks), so the prelude's defaults fill what was left out.
//!
//! Hygiene: while a prelude function runs, the session's top-level variables are swapped
//! out for the prelude's functions, so the prelude sees only itself and the builtins — a
//! user's `fn sum` cannot change what `softmax` computes — and the user never sees the
//! prelude as variables (`:vars` stays clean). Nothing in the prelude can call back into
//! user code (its functions take tensors), so nothing user-visible runs while they are
//! swapped out.
//!
//! Errors: a runtime error inside the prelude is moved to the user's call, since the
//! prelude's text is not something the user can look at in the report. An assertion there
//! states a precondition on the arguments, so it becomes E0909 (an invalid argument) with
//! the assertion's message, pointed at the argument the message names first in backquotes.

use std::sync::{Arc, OnceLock};

use lang::Span;
use lang::ast::{Name, StmtKind};
use lang::diagnostics::Label;

use super::Call;
use crate::eval::errors::{self, Flow, R};
use crate::eval::{Eval, Globals};
use crate::value::{FnBody, FnValue, Value};

/// The source index of the prelude's functions. It is not an index into the session's
/// sources: nothing should render a span into the prelude (errors move to the user's
/// call), and the entries keep their numbers.
pub(crate) const PRELUDE_SRC: usize = usize::MAX;

/// What a session keeps for the prelude: its functions while they are not running, and
/// whether one is running (then the session's variables are the ones set aside).
#[derive(Debug, Default)]
pub(crate) struct Scope {
    /// Outside a prelude call, the prelude's functions by name (empty until the first
    /// call); during one, the session's top-level variables.
    parked: Globals,
    /// True while a prelude function runs.
    pub(crate) active: bool,
}

/// The prelude's functions as values, or why the prelude could not be loaded (a bug of
/// this crate, which the tests rule out).
fn loaded() -> Result<&'static Globals, &'static str> {
    static LOADED: OnceLock<Result<Globals, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| load(stdlib::PRELUDE))
        .as_ref()
        .map_err(String::as_str)
}

/// Parses and checks `src` (the prelude), and makes its functions values.
fn load(src: &str) -> Result<Globals, String> {
    let (program, mut diags) = lang::syntax::parse(src);
    diags.extend(lang::check::Checker::new().check_program(src, &program));
    if let Some(d) = diags.first() {
        let (line, col) = errors::line_col(src, d.primary.span.start);
        return Err(format!(
            "the prelude does not check: {}[{}] at {line}:{col}: {}",
            if d.is_error() { "error" } else { "warning" },
            d.code,
            d.message
        ));
    }
    let mut fns = Globals::default();
    for s in program.stmts {
        let StmtKind::Fn(d) = s.kind else {
            return Err("the prelude holds only function declarations".to_string());
        };
        let d = Arc::new(d);
        let f = FnValue {
            name: d.name.name.clone(),
            params: d.params.clone().into(),
            body: FnBody::Decl(d.clone()),
            captured: None,
            siblings: None,
            src: PRELUDE_SRC,
        };
        fns.insert(d.name.name.clone(), Value::Fn(Arc::new(f)));
    }
    Ok(fns)
}

/// True when the builtin `name` is implemented by the prelude. The first question loads
/// the prelude.
pub(super) fn implements(name: &str) -> bool {
    loaded().is_ok_and(|fns| fns.contains_key(name))
}

/// Calls the prelude function that implements the builtin of `c`.
pub(super) fn call(ev: &mut Eval<'_>, c: Call) -> R<Value> {
    let fns = loaded().map_err(|why| errors::internal(why, c.span))?;
    let Some(Value::Fn(f)) = fns.get(c.name) else {
        return Err(errors::not_available(c.name, c.span));
    };
    let f = f.clone();
    let Some(sig) = lang::check::builtins::signature(c.name) else {
        return Err(errors::not_available(c.name, c.span));
    };
    let mut slots = c.slots;
    if c.name == "embedding" {
        ids_first(&mut slots);
    }
    // Every argument goes by its parameter's name; the prelude's defaults fill the rest.
    let spans: Vec<Option<Span>> = slots
        .iter()
        .map(|s| s.as_ref().map(|(_, sp)| *sp))
        .collect();
    let named: Vec<(Name, Value, Span)> = sig
        .params
        .iter()
        .zip(slots)
        .filter_map(|(p, s)| s.map(|(v, sp)| (Name::from(*p), v, sp)))
        .collect();
    let entered = !ev.st.prelude.active;
    if entered {
        if ev.st.prelude.parked.is_empty() {
            ev.st.prelude.parked = fns.clone();
        }
        std::mem::swap(&mut ev.st.globals, &mut ev.st.prelude.parked);
        ev.st.prelude.active = true;
    }
    let r = ev.call_fn(&f, Vec::new(), named, c.span);
    if entered {
        std::mem::swap(&mut ev.st.globals, &mut ev.st.prelude.parked);
        ev.st.prelude.active = false;
    }
    r.map_err(|flow| match flow {
        Flow::Error(mut e) => {
            at_call(&mut e.diag, c.name, sig.params, &spans, c.span);
            // The user's call stack is attached as the error leaves the user's code.
            e.traced = false;
            Flow::Error(e)
        }
        other => other,
    })
}

/// `embedding` takes the integer ids and the float table in either order (the checker's
/// rule): puts the ids first.
fn ids_first(slots: &mut [Option<(Value, Span)>]) {
    let table_first = matches!(
        slots.first(),
        Some(Some((Value::Tensor(t), _))) if !t.dtype.is_int()
    );
    if table_first && slots.len() >= 2 {
        slots.swap(0, 1);
    }
}

/// Moves a diagnostic raised inside the prelude function that implements `name` to the
/// user's call at `call`: an assertion (a precondition on the arguments) becomes E0909 at
/// the argument its message names; any other error keeps its code and message. Labels and
/// the call stack inside the prelude are dropped (their spans index the prelude's text).
fn at_call(
    d: &mut lang::Diagnostic,
    name: &str,
    params: &[&str],
    spans: &[Option<Span>],
    call: Span,
) {
    d.labels.clear();
    d.notes.retain(|n| !n.starts_with("call stack"));
    d.file = None;
    let precondition = d.code == "E0903";
    if precondition {
        let text = d
            .message
            .strip_prefix("assertion failed: ")
            .unwrap_or(&d.message);
        d.message = format!("`{name}`: {text}");
        d.code = "E0909";
        d.hints.clear();
    }
    // The argument the message names first (`labels`), when it was given.
    let arg = d
        .message
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|w| params.iter().position(|p| *p == w))
        .find_map(|i| spans.get(i).copied().flatten());
    match arg {
        Some(span) if precondition => d.primary = Label::new(span, "this argument"),
        _ => d.primary = Label::new(call, format!("failed inside `{name}`")),
    }
    d.notes.push(format!(
        "`{name}` is written in MindScript in the prelude (stdlib/src/prelude.ms)"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelude_parses_and_checks_without_diagnostics() {
        let (program, mut diags) = lang::syntax::parse(stdlib::PRELUDE);
        diags.extend(lang::check::Checker::new().check_program(stdlib::PRELUDE, &program));
        let shown: Vec<String> = diags
            .iter()
            .map(|d| format!("{}: {}", d.code, d.message))
            .collect();
        assert!(shown.is_empty(), "{shown:#?}");
        assert!(load(stdlib::PRELUDE).is_ok());
    }

    #[test]
    fn prelude_builtins_take_the_checkers_parameters() {
        let fns = load(stdlib::PRELUDE).expect("the prelude loads");
        let mut builtins = 0;
        for (name, f) in &fns {
            let Some(sig) = lang::check::builtins::signature(name) else {
                continue;
            };
            builtins += 1;
            let Value::Fn(f) = f else {
                panic!("{name} is not a function");
            };
            let params: Vec<&str> = f.params.iter().map(|p| &*p.name.name).collect();
            assert_eq!(params, sig.params, "the parameters of `{name}`");
            for (i, p) in f.params.iter().enumerate() {
                assert_eq!(
                    p.default.is_none(),
                    i < sig.required,
                    "`{name}`: exactly the optional parameters have defaults"
                );
            }
            assert!(
                super::super::TABLE
                    .binary_search_by(|(n, _)| n.cmp(&name.as_ref()))
                    .is_err(),
                "`{name}` is both in the Rust table and in the prelude"
            );
        }
        assert!(builtins >= 11, "only {builtins} builtins in the prelude");
    }

    /// The type the checker gives `expr` after `setup`, with the prelude's functions
    /// defined as user functions (so their bodies are checked with these arguments) or not
    /// (so the builtins' rules type the call).
    fn type_of(with_prelude: bool, setup: &str, expr: &str) -> String {
        let mut c = lang::check::Checker::new();
        let mut run = |src: &str| {
            let (p, mut d) = lang::syntax::parse(src);
            d.extend(c.check_program(src, &p));
            assert!(d.is_empty(), "{src}: {:?}", d.first().map(|d| &d.message));
        };
        if with_prelude {
            run(stdlib::PRELUDE);
        }
        run(setup);
        let (e, d) = lang::syntax::parse_expr(expr);
        assert!(d.is_empty(), "{expr}");
        let e = e.expect("an expression");
        let (ty, d) = c.type_of(expr, &e);
        let shown: Vec<String> = d
            .iter()
            .map(|d| format!("{}: {}", d.code, d.message))
            .collect();
        format!("{ty} {shown:?}")
    }

    #[test]
    fn prelude_bodies_give_the_types_the_builtin_rules_predict() {
        let setup = "let x = randn([4, 5])\n\
            let x64 = f64(randn([2, 3]))\n\
            let xi = randint(0, 5, [4, 5])\n\
            let y = randint(0, 5, [4])\n\
            let img = randn([2, 3, 4, 4])\n\
            let g = randn([3])\n\
            let ids = randint(0, 10, [2, 7])\n\
            let table = randn([10, 8])\n\
            let q = randn([2, 6, 8])\n\
            let k = randn([2, 9, 8])\n\
            let v = randn([2, 9, 4])\n\
            let m = arange(9) <= expand_dims(arange(6), 1)\n";
        let cases = [
            "softmax(x)",
            "softmax(x, axis: 0)",
            "softmax(xi)",
            "log_softmax(x64, axis: 1)",
            "mse(x, zeros([4, 5]))",
            "mse(xi, xi)",
            "cross_entropy(x, y)",
            "cross_entropy(x64, randint(0, 3, [2]))",
            "nll(log_softmax(x), y)",
            "binary_cross_entropy_with_logits(x, rand([4, 5]))",
            "layer_norm(x)",
            "layer_norm(x, randn([5]), zeros([5]), eps: 1e-3)",
            "layer_norm(xi)",
            "batch_norm(img)",
            "batch_norm(img, g, g, eps: 0.01)",
            "batch_norm(x)",
            "dropout(x)",
            "dropout(x, 0.1, training: false)",
            "dropout(xi, 0.5)",
            "embedding(ids, table)",
            "embedding(y, table)",
            "attention(q, k, v)",
            "attention(q, k, v, i64(m))",
            "attention(q, k, v, f32(m))",
        ];
        for expr in cases {
            let builtin = type_of(false, setup, expr);
            let composed = type_of(true, setup, expr);
            assert_eq!(composed, builtin, "{expr}");
        }
    }

    #[test]
    fn the_session_never_sees_the_prelude_as_variables() {
        let mut s = crate::Session::with_options(crate::Options {
            capture_output: true,
            ..crate::Options::default()
        });
        let out = s.eval("let p = softmax([1.0, 2.0])\nlet l = cross_entropy([[1.0, 2.0]], [0])");
        assert!(!out.has_errors(), "{:?}", out.diagnostics);
        // An error inside the prelude leaves the session's variables in place too.
        let out = s.eval("let a = 1.0\nlet b = cross_entropy([[1.0, 2.0]], [5])");
        assert_eq!(
            out.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>(),
            ["E0909"]
        );
        for name in ["softmax", "shifted", "scalar_of", "nll", "log_softmax", "b"] {
            assert!(
                s.global(name).is_none(),
                "`{name}` is a variable of the session"
            );
        }
        for name in ["p", "l", "a"] {
            assert!(s.global(name).is_some(), "`{name}` was lost");
        }
        let vars: Vec<String> = s
            .checker()
            .globals()
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        // `b` is declared though its value never arrived (E0910 if it is used).
        assert_eq!(vars, ["a", "b", "l", "p"]);
    }

    #[test]
    fn a_broken_prelude_is_an_error_not_a_panic() {
        assert!(load("fn f(x) { x + }").is_err());
        assert!(load("let x = 1").is_err());
    }
}
