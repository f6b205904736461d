//! `ms run --check-modes`: every staged call is checked against eager evaluation and
//! against its graph as staged, and a difference is traced to the pass and the node that
//! made it.
//!
//! A checked call runs three times, from the same random key:
//! 1. the optimized graph, as the program would run it: its result and its output are the
//!    program's;
//! 2. the graph as staged (before any pass), with its output kept aside;
//! 3. the function itself, eagerly (every call inside it eager too, `@jit` ones included:
//!    `State::eager_only`), with its output kept aside.
//!
//! The results are compared leaf by leaf with the tolerance of the graph-mode tests
//! ([`disagreement`]), and so are the tensors the graphs print; eager and staged printed
//! text must be the same, as in the graph-mode tests, and so must the random stream's
//! position afterwards. When the optimized graph differs from the graph as staged, the
//! pipeline is *bisected*: it is run again step by step on the staged graph, each prefix
//! run on the call's inputs, and the first step after which the outputs differ is the
//! pass to blame. (The search goes through the prefixes in order rather than halving: a
//! pipeline is a handful of passes, each prefix costs one pass and one run more than the
//! last, and going in order finds the first culprit even where a later pass would hide
//! its difference again.) The graphs just before and just after that pass are then compared node
//! by node: nodes of the body are matched by source span and operation (the `k`-th node
//! with a given span and operation after the pass with the `k`-th one before it; a node
//! left over, which the pass may have made another operation, by span and types), both
//! graphs are copied with the values of the matched nodes as extra outputs
//! ([`ir::graph::with_outputs`]), both copies run, and the first matched node (in execution order
//! after the pass) whose values differ is reported, with its span, as error E0914. A node
//! inside a region (an `if` branch, a loop body) is seen through the region's node, whose
//! results are compared: values inside a region exist once per iteration and cannot be
//! graph outputs. When the graph as staged already differs from eager evaluation, no pass
//! is to blame and the report points at the call. A staged call that fails stops the
//! program as it would without the check, unless the graph as staged runs: then the
//! pipeline is searched for the pass that made it fail.
//!
//! The first difference stops the program with E0914 (exit status 1); without one, the
//! command line prints what was checked ([`CheckModes`]).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use devices::Tensor;
use ir::DType;
use ir::graph::{BuildError, NodeId, NodeKind, Type, ValueId, with_outputs};
use lang::ast::Name;
use lang::{Diagnostic, Span};

use super::jit::{StagedFn, fn_name};
use super::tensor_leaves;
use crate::eval::Eval;
use crate::eval::errors::{self, Flow, R};
use crate::session::Capture;
use crate::value::{TensorVal, Value};

/// The code of a difference found by `--check-modes`.
const CODE: &str = "E0914";

/// What `--check-modes` has checked so far in a session.
#[derive(Default)]
pub(crate) struct CheckModes {
    /// Staged calls checked.
    pub calls: usize,
    /// The graphs those calls ran, each once (kept, so that the addresses stay distinct).
    pub graphs: Vec<Arc<StagedFn>>,
}

/// One run of a graph on a call's inputs, as the comparisons see it: its tensor outputs
/// and the tensors it printed, or the text of the error that stopped it.
type Run = Result<(Vec<Tensor>, Vec<Tensor>), String>;

/// How a value differs from the reference.
#[derive(Clone, Debug, PartialEq)]
enum Mismatch {
    /// Another dtype.
    Dtype(DType, DType),
    /// Another shape.
    Shape(Vec<usize>, Vec<usize>),
    /// An element beyond the tolerance: its flat index and both values.
    Element(usize, f64, f64),
    /// The elements could not be read back.
    Unreadable,
}

/// Whether `got` agrees with `want`, the reference, and how it differs when it does not.
///
/// The rule is the graph-mode tests' (`tests/tests/staged_gen.rs`): for `f32` (and the
/// narrower floats), `|got - want| <= 1e-5 * max(1, max |want|) + 1e-4 * |got|`, the
/// magnitude taken over the finite elements of the reference (so that one infinity does not
/// excuse every other element); for `f64`, the same with `1e-7` and `1e-7` (the `f64`
/// tolerance of the conformance suite, `tests/src/harness.rs`); integers and bools exactly.
/// A NaN agrees with a NaN, an infinity only with the same infinity.
fn disagreement(want: &Tensor, got: &Tensor, dtype: DType) -> Option<Mismatch> {
    if want.shape() != got.shape() {
        return Some(Mismatch::Shape(want.shape().to_vec(), got.shape().to_vec()));
    }
    let (Some(a), Some(b)) = (want.to_f64_vec(), got.to_f64_vec()) else {
        return Some(Mismatch::Unreadable);
    };
    let (atol, rtol) = match dtype {
        DType::F64 => (1e-7, 1e-7),
        d if d.is_float() => (1e-5, 1e-4),
        _ => (0.0, 0.0),
    };
    let scale = a
        .iter()
        .filter(|x| x.is_finite())
        .fold(1.0f64, |m, x| m.max(x.abs()));
    a.iter()
        .zip(&b)
        .position(|(&x, &y)| {
            let same = (x.is_nan() && y.is_nan())
                || x == y
                || (x.is_finite()
                    && y.is_finite()
                    && (x - y).abs() <= atol * scale + rtol * y.abs());
            !same
        })
        .map(|i| Mismatch::Element(i, a[i], b[i]))
}

/// [`disagreement`] of two tensors of the program (the dtype the program sees decides the
/// tolerance).
fn leaf_disagreement(want: &TensorVal, got: &TensorVal) -> Option<Mismatch> {
    if want.dtype != got.dtype {
        return Some(Mismatch::Dtype(want.dtype, got.dtype));
    }
    disagreement(&want.t, &got.t, want.dtype)
}

/// A number as its dtype shows it (an `f32` with the digits an `f32` has).
fn show(x: f64, dtype: DType) -> String {
    match dtype {
        DType::F64 => format!("{x}"),
        d if d.is_float() => format!("{}", x as f32),
        _ => format!("{x}"),
    }
}

/// A mismatch in words: `what` is the value's name, `a` and `b` say where each side comes
/// from.
fn describe(m: &Mismatch, what: &str, dtype: DType, a: &str, b: &str) -> String {
    match m {
        Mismatch::Dtype(x, y) => format!("{what} is {x} {a} and {y} {b}"),
        Mismatch::Shape(x, y) => format!("{what} has shape {x:?} {a} and {y:?} {b}"),
        Mismatch::Element(i, x, y) => format!(
            "element {i} of {what} is {} {a} and {} {b}",
            show(*x, dtype),
            show(*y, dtype)
        ),
        Mismatch::Unreadable => format!("{what} cannot be read back to compare"),
    }
}

/// The first difference between two runs of graphs of one call (`a` and `b` say where
/// each comes from), in words; `None` when they agree. Outputs are the result's leaves,
/// then the random key.
fn runs_differ(x: &Run, y: &Run, a: &str, b: &str) -> Option<String> {
    let ((xo, xp), (yo, yp)) = match (x, y) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), Err(f)) if e == f => return None,
        (Err(e), Err(f)) => return Some(format!("the run stops with \"{e}\" {a} and \"{f}\" {b}")),
        (Err(e), Ok(_)) => return Some(format!("the run stops with \"{e}\" {a}, not {b}")),
        (Ok(_), Err(f)) => return Some(format!("the run stops with \"{f}\" {b}, not {a}")),
    };
    if xo.len() != yo.len() {
        return Some(format!("{} outputs {a}, {} {b}", xo.len(), yo.len()));
    }
    for (i, (p, q)) in xo.iter().zip(yo).enumerate() {
        let what = if i + 1 == xo.len() {
            "the random key".to_string()
        } else {
            format!("output {i}")
        };
        if let Some(m) = disagreement(p, q, p.dtype()) {
            return Some(describe(&m, &what, p.dtype(), a, b));
        }
    }
    if xp.len() != yp.len() {
        return Some(format!(
            "{} values are printed {a}, {} {b}",
            xp.len(),
            yp.len()
        ));
    }
    for (i, (p, q)) in xp.iter().zip(yp).enumerate() {
        if let Some(m) = disagreement(p, q, p.dtype()) {
            return Some(describe(&m, &format!("printed value {i}"), p.dtype(), a, b));
        }
    }
    None
}

/// One side of the comparison with eager evaluation: a call's result, what it printed and
/// the random key `(seed, offset)` after it.
type Side = (Value, String, (i64, i64));

/// How the staged side of a call differs from the eager one: what (completing "staged
/// `f` ...") and notes saying where; `None` when they agree.
fn eager_difference(eager: &Side, staged: &Side) -> Option<(&'static str, Vec<String>)> {
    let (mut want, mut got) = (Vec::new(), Vec::new());
    tensor_leaves(&eager.0, &mut want);
    tensor_leaves(&staged.0, &mut got);
    if want.len() != got.len() {
        return Some((
            "gives a result of another form than eager evaluation",
            vec![format!(
                "the result has {} tensors eagerly and {} staged",
                want.len(),
                got.len()
            )],
        ));
    }
    for (i, (w, s)) in want.iter().zip(&got).enumerate() {
        if let Some(m) = leaf_disagreement(w, s) {
            let what = format!("result tensor {i}");
            return Some((
                "gives other values than eager evaluation",
                vec![describe(&m, &what, w.dtype, "eagerly", "staged")],
            ));
        }
    }
    let (e, t) = (&eager.1, &staged.1);
    if e != t {
        let line = e
            .lines()
            .zip(t.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| e.lines().count().min(t.lines().count()));
        let at = |x: &str| x.lines().nth(line).unwrap_or("(nothing)").to_string();
        return Some((
            "prints other text than eager evaluation",
            vec![
                format!("line {} eagerly: {}", line + 1, at(e)),
                format!("line {} staged: {}", line + 1, at(t)),
            ],
        ));
    }
    if eager.2 != staged.2 {
        return Some((
            "leaves the random stream elsewhere than eager evaluation",
            vec![format!(
                "(seed, offset) is {:?} eagerly and {:?} staged",
                eager.2, staged.2
            )],
        ));
    }
    None
}

/// The step of the pipeline to blame, with the graphs just before and just after it.
struct Blame {
    /// The step's position in the pipeline.
    index: usize,
    before: ir::Graph,
    after: ir::Graph,
    /// How the outputs differ after it, in words.
    why: String,
}

/// The first node whose value a pass changed.
struct NodeDiff {
    /// The node, in the graph after the pass.
    node: NodeId,
    /// How its value differs, in words.
    why: String,
    /// What its match was before the pass, when the pass made it another operation.
    was: Option<&'static str>,
}

impl Eval<'_> {
    /// Runs a staged call as [`Eval::call_staged`] would, and checks it (see the module
    /// doc): the call's result, or E0914 at the first difference.
    pub(crate) fn run_checked(
        &mut self,
        f: &Value,
        g: &Arc<StagedFn>,
        pos: Vec<(Value, Span)>,
        named: Vec<(Name, Value, Span)>,
        leaves: Vec<TensorVal>,
        span: Span,
    ) -> R<Value> {
        let inputs = self.staged_inputs(g, leaves, span)?;
        let key_before = (self.st.seed, self.st.offset);
        // The run the program sees; what it prints goes out as usual once it is kept.
        let staged_out = Capture::default();
        let real = std::mem::replace(&mut self.st.out, Box::new(staged_out.clone()));
        let mut printed = Vec::new();
        let opt = self.run_graph(g, &inputs, span, Some(&mut printed));
        self.st.out = real;
        let text = staged_out.text();
        if let Err(e) = write!(self.st.out, "{text}").and_then(|()| self.st.out.flush()) {
            return Err(errors::bad_value(
                format!("cannot write the output: {e}"),
                span,
            ));
        }
        let raw = self.run_muted(&g.raw, &inputs);
        // A run that Ctrl-C stopped proves nothing either way.
        self.check_interrupt(span)?;
        let opt_outs = match opt {
            Ok(outs) => outs,
            // A staged call that fails stops the program as it would without the check,
            // unless the graph as staged runs: then a pass made the failure.
            Err(Flow::Error(e)) if raw.is_ok() => {
                let opt_run: Run = Err(e.diag.message.clone());
                return Err(self.blame_a_pass(f, g, &inputs, &raw, &opt_run, span));
            }
            Err(other) => return Err(other),
        };
        let opt_run: Run = Ok((opt_outs.clone(), printed));
        if runs_differ(&raw, &opt_run, "as staged", "optimized").is_some() {
            return Err(self.blame_a_pass(f, g, &inputs, &raw, &opt_run, span));
        }
        let value = self.staged_result(g, &opt_outs, span)?;
        let key_after = (self.st.seed, self.st.offset);

        // The eager reference, from the same random key, its output kept aside.
        (self.st.seed, self.st.offset) = key_before;
        let eager_out = Capture::default();
        let real = std::mem::replace(&mut self.st.out, Box::new(eager_out.clone()));
        let was = std::mem::replace(&mut self.st.eager_only, true);
        // Its summaries were written by the run the program sees; not twice.
        let muted = std::mem::replace(&mut self.st.summaries.muted, true);
        let eager = self.call_inner(f, pos, named, span);
        self.st.summaries.muted = muted;
        self.st.eager_only = was;
        self.st.out = real;
        let eager_key = (self.st.seed, self.st.offset);
        (self.st.seed, self.st.offset) = key_after;
        let name = fn_name(f);
        let eager = match eager {
            Ok(v) => v,
            Err(Flow::Error(e)) if e.diag.code == "E0911" => return Err(Flow::Error(e)),
            Err(Flow::Error(e)) => {
                return Err(self.staging_differs(
                    &name,
                    span,
                    "runs where eager evaluation stops with an error",
                    vec![format!("eagerly: [{}] {}", e.diag.code, e.diag.message)],
                ));
            }
            Err(_) => {
                return Err(errors::internal(
                    "control flow escaped the eager run of a checked call",
                    span,
                ));
            }
        };
        let eager_side = (eager, eager_out.text(), eager_key);
        let staged_side = (value.clone(), text, key_after);
        if let Some((what, notes)) = eager_difference(&eager_side, &staged_side) {
            return Err(self.staging_differs(&name, span, what, notes));
        }
        if let Some(check) = self.st.check.as_mut() {
            check.calls += 1;
            if !check.graphs.iter().any(|h| Arc::ptr_eq(h, g)) {
                check.graphs.push(g.clone());
            }
        }
        Ok(value)
    }

    /// Runs `graph` on `inputs` with what it prints kept, not shown.
    fn run_muted(&self, graph: &ir::Graph, inputs: &[Tensor]) -> Run {
        let mut printed: Vec<(Tensor, ir::graph::Span)> = Vec::new();
        let plan = devices::schedule::Plan::new(graph);
        match plan.run(&*self.st.device, inputs, &mut printed) {
            Ok(outs) => Ok((outs, printed.into_iter().map(|(t, _)| t).collect())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// E0914 at the call: the graph as staged already differs from eager evaluation, so the
    /// difference comes from staging, not from a pass.
    fn staging_differs(&self, name: &str, call: Span, what: &str, notes: Vec<String>) -> Flow {
        let mut d = Diagnostic::error(CODE, format!("staged `{name}` {what}"), call)
            .with_primary_label("this staged call");
        d.notes = notes;
        d.notes.push(format!(
            "the graph as staged gives what the optimized graph gives, so no pass is to blame: \
             the difference comes from staging `{name}` (or from a kernel the two modes run \
             differently)"
        ));
        d = d.with_hint(format!(
            "`ms ir FILE.ms --fn {name} --spans` shows the graph as staged"
        ));
        Flow::error(d)
    }

    /// E0914 for an optimized graph that differs from the graph as staged: the pass to
    /// blame, found by running the pipeline again step by step, and the first node it
    /// changed.
    fn blame_a_pass(
        &self,
        f: &Value,
        g: &StagedFn,
        inputs: &[Tensor],
        raw: &Run,
        opt: &Run,
        call: Span,
    ) -> Flow {
        let name = fn_name(f);
        let steps = self.st.passes.steps.clone();
        let names: Vec<String> = steps.iter().map(|s| format!("`{}`", s.name())).collect();
        let pipeline = names.join(", ");
        let agreement = match raw {
            Ok(_) => "",
            Err(_) => " (the graph as staged stops with an error)",
        };
        let mut before = g.raw.clone();
        let mut blame = None;
        for (index, step) in steps.iter().enumerate() {
            let after = match step.run(&before, true) {
                Ok(a) => a,
                Err(e) => {
                    return errors::internal(
                        &format!("the pipeline cannot run again on `{name}`: {e}"),
                        call,
                    );
                }
            };
            let run = self.run_muted(&after, inputs);
            if devices::cancel::requested() {
                return errors::interrupted(call);
            }
            let label = format!("after `{}`", step.name());
            if let Some(why) = runs_differ(raw, &run, "as staged", &label) {
                blame = Some(Blame {
                    index,
                    before,
                    after,
                    why,
                });
                break;
            }
            before = after;
        }
        let Some(blame) = blame else {
            // The pipeline run again keeps the values: the graph that runs was not made by
            // it alone. A graph general in its symbolic dims is the generalization of two
            // optimized stagings, and that step is not a pass.
            let why = runs_differ(raw, opt, "as staged", "optimized").unwrap_or_default();
            let mut d = Diagnostic::error(
                CODE,
                format!("staged `{name}` gives other values than its graph as staged"),
                call,
            )
            .with_primary_label("this staged call")
            .with_note(why)
            .with_note(format!(
                "the pipeline ({pipeline}) run again on the graph as staged keeps its values; \
                 the graph that runs {}",
                if g.general {
                    "is general in its symbolic dims, and generalizing two optimized stagings \
                     made the difference"
                } else {
                    "was made otherwise"
                }
            ));
            d.notes
                .push(format!("in the staged call of `{name}`{agreement}"));
            return Flow::error(d);
        };
        let pass = steps[blame.index].name().to_string();
        let kept = match &names[..blame.index] {
            [] => format!("the outputs change after its first pass, `{pass}`"),
            before => format!(
                "the outputs are kept through {} and change after `{pass}`",
                before.join(", ")
            ),
        };
        let head = format!(
            "the pass `{pass}` changed what staged `{name}` computes: it no longer agrees with \
             the graph as staged"
        );
        let found = self.first_changed_node(&blame, inputs);
        if devices::cancel::requested() {
            return errors::interrupted(call);
        }
        let mut d = match &found {
            Ok(Some(nd)) => {
                let node = blame.after.node(nd.node);
                let s = node.span;
                let at = Span::new(s.start as usize, s.end as usize);
                let mut d = Diagnostic::error(CODE, head, at).with_primary_label(format!(
                    "this `{}` gives other values after `{pass}`",
                    node.kind.name()
                ));
                if s.src as usize != self.main_src {
                    d.file = crate::eval::source_name(self.st, s.src as usize);
                }
                if s.src as usize == self.src && !at.is_empty() && at != call {
                    d = d.with_label(call, "in this staged call");
                }
                if let Some(was) = nd.was {
                    d = d.with_note(format!(
                        "`{pass}` made it `{}` where it was `{was}`",
                        node.kind.name()
                    ));
                }
                d.with_note(nd.why.clone())
            }
            Ok(None) | Err(_) => {
                let mut d =
                    Diagnostic::error(CODE, head, call).with_primary_label("this staged call");
                if let Err(e) = &found {
                    d = d.with_note(format!("the nodes cannot be compared one by one: {e}"));
                } else {
                    d = d.with_note(
                        "every node the pass kept (matched by span and operation) has its \
                         value: the difference is in a node the pass made anew or in which \
                         values it made the outputs",
                    );
                }
                d
            }
        };
        d = d.with_note(blame.why.clone());
        d = d.with_note(format!("the pipeline is {pipeline}: {kept}{agreement}"));
        d = d.with_note(format!(
            "in the staged call of `{name}` at {}",
            self.place(call)
        ));
        d = d.with_hint(format!(
            "this is a bug in the pass `{pass}`; `ms ir FILE.ms --fn {name} --stage opt --spans` \
             shows the graph that runs"
        ));
        Flow::error(d)
    }

    /// The first node of the graph after the blamed pass whose values differ from those of
    /// its match before the pass (see the module doc); `None` when every matched node
    /// agrees.
    fn first_changed_node(
        &self,
        blame: &Blame,
        inputs: &[Tensor],
    ) -> Result<Option<NodeDiff>, String> {
        let (before, after) = (&blame.before, &blame.after);
        let pairs = match_nodes(before, after);
        let after_vals: Vec<ValueId> = pairs.iter().flat_map(|p| p.2.clone()).collect();
        let before_vals: Vec<ValueId> = pairs.iter().flat_map(|p| p.3.clone()).collect();
        let shown = |e: BuildError| e.to_string();
        let a = with_outputs(after, &after_vals).map_err(shown)?;
        let b = with_outputs(before, &before_vals).map_err(shown)?;
        let (ra, rb) = (self.run_muted(&a, inputs), self.run_muted(&b, inputs));
        let (Ok((oa, _)), Ok((ob, _))) = (ra, rb) else {
            return Err("a graph with the nodes' values as outputs does not run".into());
        };
        let skip_a = oa.len() - after_vals.len().min(oa.len());
        let skip_b = ob.len() - before_vals.len().min(ob.len());
        let (mut ia, mut ib) = (oa[skip_a..].iter(), ob[skip_b..].iter());
        for (n, m, a_vals, _) in &pairs {
            for (r, _) in a_vals.iter().enumerate() {
                let (Some(x), Some(y)) = (ia.next(), ib.next()) else {
                    return Ok(None);
                };
                if let Some(mm) = disagreement(y, x, y.dtype()) {
                    let what = if a_vals.len() == 1 {
                        "its value".to_string()
                    } else {
                        format!("its result {r}")
                    };
                    let why = describe(&mm, &what, y.dtype(), "before the pass", "after it");
                    let (now, was) = (after.node(*n).kind.name(), before.node(*m).kind.name());
                    return Ok(Some(NodeDiff {
                        node: *n,
                        why,
                        was: (now != was).then_some(was),
                    }));
                }
            }
        }
        Ok(None)
    }
}

/// The body nodes of `after` (in order) with their matches in `before`, and the tensor
/// results of both. A node matches the node of `before` with its span and operation (the
/// `k`-th such node after the pass the `k`-th before it); a node left without one then
/// matches the first node left in `before` with its span and result types, since a pass
/// that replaces an operation keeps its span. Nodes without a match are left out.
type Pair = (NodeId, NodeId, Vec<ValueId>, Vec<ValueId>);

fn match_nodes(before: &ir::Graph, after: &ir::Graph) -> Vec<Pair> {
    let mut by_key: HashMap<(ir::graph::Span, String), Vec<NodeId>> = HashMap::new();
    for &n in &before.block(before.body()).nodes {
        by_key.entry(node_key(before, n)).or_default().push(n);
    }
    let nodes = &after.block(after.body()).nodes;
    let mut seen: HashMap<(ir::graph::Span, String), usize> = HashMap::new();
    let mut matched: Vec<Option<NodeId>> = Vec::with_capacity(nodes.len());
    let mut used = std::collections::HashSet::new();
    for &n in nodes {
        let key = node_key(after, n);
        let k = seen.entry(key.clone()).or_insert(0);
        let m = by_key.get(&key).and_then(|v| v.get(*k)).copied();
        *k += 1;
        used.extend(m);
        matched.push(m);
    }
    let types = |g: &ir::Graph, n: NodeId| -> Vec<Type> {
        tensor_results(g, n)
            .iter()
            .map(|&v| g.ty(v).clone())
            .collect()
    };
    for (slot, &n) in matched.iter_mut().zip(nodes) {
        if slot.is_some() {
            continue;
        }
        let (span, ty) = (after.node(n).span, types(after, n));
        let found = before
            .block(before.body())
            .nodes
            .iter()
            .copied()
            .find(|&m| !used.contains(&m) && before.node(m).span == span && types(before, m) == ty);
        used.extend(found);
        *slot = found;
    }
    nodes
        .iter()
        .zip(matched)
        .filter_map(|(&n, m)| {
            let m = m?;
            let (a, b) = (tensor_results(after, n), tensor_results(before, m));
            (!a.is_empty() && a.len() == b.len()).then_some((n, m, a, b))
        })
        .collect()
}

/// What matches a node across a pass: its span, and its operation with its attributes (a
/// region node by its kind alone, since its blocks are numbered per graph).
fn node_key(g: &ir::Graph, n: NodeId) -> (ir::graph::Span, String) {
    let node = g.node(n);
    let op = match &node.kind {
        NodeKind::Prim(op) => format!("{op:?}"),
        NodeKind::Assert { message } => format!("assert {message:?}"),
        other => other.name().to_string(),
    };
    (node.span, op)
}

/// The node's results that are tensors (not the token).
fn tensor_results(g: &ir::Graph, n: NodeId) -> Vec<ValueId> {
    g.node(n)
        .results
        .iter()
        .copied()
        .filter(|&v| !g.ty(v).is_token())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: Vec<f32>) -> Tensor {
        let n = v.len();
        Tensor::from_vec(v, &[n]).expect("a tensor")
    }

    #[test]
    fn the_tolerance_is_the_graph_mode_tests() {
        let a = t(vec![1.0, 100.0, f32::NAN, f32::INFINITY]);
        // Within 1e-5 of the magnitude (100) plus 1e-4 of the value.
        let b = t(vec![1.0005, 100.01, f32::NAN, f32::INFINITY]);
        assert_eq!(disagreement(&a, &b, DType::F32), None);
        let c = t(vec![1.01, 100.0, f32::NAN, f32::INFINITY]);
        let Some(Mismatch::Element(0, x, y)) = disagreement(&a, &c, DType::F32) else {
            panic!("1.01 is not 1");
        };
        assert_eq!((x, y as f32), (1.0, 1.01));
        // An infinity in the reference does not make every difference small.
        let d = t(vec![2.0, 100.0, f32::NAN, f32::INFINITY]);
        assert!(disagreement(&a, &d, DType::F32).is_some());
        let e = t(vec![1.0, 100.0, f32::NAN, f32::NEG_INFINITY]);
        assert_eq!(
            disagreement(&a, &e, DType::F32),
            Some(Mismatch::Element(3, f64::INFINITY, f64::NEG_INFINITY))
        );
        assert_eq!(
            disagreement(&a, &t(vec![1.0]), DType::F32),
            Some(Mismatch::Shape(vec![4], vec![1]))
        );
        // Integers compare exactly.
        let i = Tensor::from_vec(vec![1i64, 2], &[2]).expect("a tensor");
        let j = Tensor::from_vec(vec![1i64, 3], &[2]).expect("a tensor");
        assert_eq!(
            disagreement(&i, &j, DType::I64),
            Some(Mismatch::Element(1, 2.0, 3.0))
        );
    }

    fn tensor(v: Vec<f32>) -> Value {
        Value::Tensor(TensorVal::strong_of(t(v)))
    }

    #[test]
    fn staged_results_are_compared_with_eager_ones() {
        let side = |v: Value, text: &str, offset: i64| (v, text.to_string(), (0, offset));
        let eager = side(tensor(vec![1.0, 2.0]), "a\nb\n", 4);
        // Within the tolerance, the same text and key: no difference.
        let close = side(tensor(vec![1.000001, 2.0]), "a\nb\n", 4);
        assert_eq!(eager_difference(&eager, &close), None);
        let far = side(tensor(vec![1.0, 2.5]), "a\nb\n", 4);
        assert_eq!(
            eager_difference(&eager, &far),
            Some((
                "gives other values than eager evaluation",
                vec!["element 1 of result tensor 0 is 2 eagerly and 2.5 staged".to_string()]
            ))
        );
        let pair = side(
            Value::Tuple(vec![tensor(vec![1.0, 2.0]), tensor(vec![3.0])].into()),
            "a\nb\n",
            4,
        );
        let (what, notes) = eager_difference(&eager, &pair).expect("another form");
        assert_eq!(what, "gives a result of another form than eager evaluation");
        assert_eq!(notes, ["the result has 1 tensors eagerly and 2 staged"]);
        let text = side(tensor(vec![1.0, 2.0]), "a\nc\n", 4);
        assert_eq!(
            eager_difference(&eager, &text),
            Some((
                "prints other text than eager evaluation",
                vec![
                    "line 2 eagerly: b".to_string(),
                    "line 2 staged: c".to_string()
                ]
            ))
        );
        let short = side(tensor(vec![1.0, 2.0]), "a\n", 4);
        let (_, notes) = eager_difference(&eager, &short).expect("a missing line");
        assert_eq!(notes, ["line 2 eagerly: b", "line 2 staged: (nothing)"]);
        let key = side(tensor(vec![1.0, 2.0]), "a\nb\n", 6);
        assert_eq!(
            eager_difference(&eager, &key),
            Some((
                "leaves the random stream elsewhere than eager evaluation",
                vec!["(seed, offset) is (0, 4) eagerly and (0, 6) staged".to_string()]
            ))
        );
    }

    #[test]
    fn a_copy_with_extra_outputs_gives_the_inner_values() {
        let text = "graph @f(%x: f32[2]) -> (f32[2]) {\n  %a: f32[2] = exp %x\n  %b: f32[2] = neg %a\n  yield %b\n}\n";
        let g = ir::graph::parse(text).expect("parses");
        let body = g.block(g.body());
        let exp = g.node(body.nodes[0]).results[0];
        let h = with_outputs(&g, &[exp]).expect("copies");
        assert_eq!(h.outputs().len(), 2);
        let cpu = devices::CpuDevice::new();
        let mut printed: Vec<(Tensor, ir::graph::Span)> = Vec::new();
        let outs =
            devices::schedule::run(&h, &cpu, &[t(vec![0.0, 1.0])], &mut printed).expect("runs");
        assert_eq!(outs[0].to_vec::<f32>(), Some(vec![-1.0, -1.0f32.exp()]));
        assert_eq!(outs[1].to_vec::<f32>(), Some(vec![1.0, 1.0f32.exp()]));
    }
}
