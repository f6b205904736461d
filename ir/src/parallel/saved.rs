//! A plan as text: saved by `ms plan --save`, edited by hand, and checked and priced again
//! by `ms plan --plan FILE` (or used to run, `ms --plan NAME=FILE`).
//!
//! A partitioned graph is determined by its mesh, the layout of each tensor input and the
//! layouts asked for inside the body (the `shard` hints): every other layout follows from
//! the sharding rules. So that is what the file holds, one item per line:
//!
//! ```text
//! # comments start with `#`
//! mesh 2x2
//! input 0 f32[64, 128] [m0, -]
//! input 1 f32[128, 10] [-, m1]
//! hint %7 f32[64, 128] [-, m1]
//! ```
//!
//! Inputs are numbered among the staged graph's tensor inputs (as `ms plan` lists them) and
//! carry their type, which must match, so that a plan made for other shapes is refused
//! rather than misapplied. A hint names a value of the staged graph by the number `ms ir`
//! prints it with. A layout names, for each axis, the mesh axis it is split over (`m0`,
//! `m1`, ...) or `-`. Inputs left out are replicated.

use std::fmt::Write as _;

use thiserror::Error;

use super::{Layout, Mesh};
use crate::Graph;
use crate::graph::{ValueId, numbering};

/// Layouts asked for inside a graph's body: `partition`'s hints.
pub type Hints = Vec<(ValueId, Layout)>;

/// A plan read from (or written to) its text form.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedPlan {
    /// The mesh.
    pub mesh: Mesh,
    /// The layout of tensor inputs by position, with the type written beside each.
    pub inputs: Vec<(usize, String, Layout)>,
    /// Layouts asked for inside the body: value number (as `ms ir` prints it), type, layout.
    pub hints: Vec<(usize, String, Layout)>,
}

/// What is wrong with a plan file or with the plan for a graph; `line` is 1-based, 0 when
/// the plan as a whole does not fit.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{}{message}", if *line > 0 { format!("line {line}: ") } else { String::new() })]
pub struct PlanFileError {
    /// The line of the file.
    pub line: usize,
    /// What is wrong, in words.
    pub message: String,
}

fn fail(line: usize, message: impl Into<String>) -> PlanFileError {
    PlanFileError {
        line,
        message: message.into(),
    }
}

/// Splits `"f32[64, 128] [m0, -]"` into the type and the layout text after it.
fn type_and_layout(rest: &str) -> Option<(&str, &str)> {
    let close = rest.find(']')?;
    Some((rest[..=close].trim(), rest[close + 1..].trim()))
}

impl SavedPlan {
    /// The plan of `g` on `mesh` with these input layouts and hints (what `ms plan --save`
    /// writes).
    pub fn of(g: &Graph, mesh: &Mesh, inputs: &[Layout], hints: &[(ValueId, Layout)]) -> Self {
        let types: Vec<String> = g
            .inputs()
            .iter()
            .filter_map(|&v| g.ty(v).tensor())
            .map(ToString::to_string)
            .collect();
        let numbers = numbering(g);
        SavedPlan {
            mesh: mesh.clone(),
            inputs: types
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    // An input given no layout (an empty one) is replicated.
                    let l = inputs
                        .get(i)
                        .filter(|l| !l.map.is_empty())
                        .cloned()
                        .unwrap_or_else(|| Layout::replicated(rank_of(&t)));
                    (i, t, l)
                })
                .collect(),
            hints: hints
                .iter()
                .filter_map(|(v, l)| {
                    let t = g.ty(*v).tensor()?.to_string();
                    Some((*numbers.get(v)?, t, l.clone()))
                })
                .collect(),
        }
    }

    /// The text form, after `about` as comment lines.
    pub fn to_text(&self, about: &str) -> String {
        let mut out = String::new();
        for line in about.lines() {
            let _ = writeln!(out, "# {line}");
        }
        let shape: Vec<String> = self.mesh.shape().iter().map(usize::to_string).collect();
        let _ = writeln!(out, "mesh {}", shape.join("x"));
        for (i, t, l) in &self.inputs {
            let _ = writeln!(out, "input {i} {t} {l}");
        }
        for (n, t, l) in &self.hints {
            let _ = writeln!(out, "hint %{n} {t} {l}");
        }
        out
    }

    /// Reads the text form.
    pub fn parse(text: &str) -> Result<SavedPlan, PlanFileError> {
        let mut mesh = None;
        let mut inputs = Vec::new();
        let mut hints = Vec::new();
        for (k, raw) in text.lines().enumerate() {
            let line = k + 1;
            let s = raw.split('#').next().unwrap_or("").trim();
            if s.is_empty() {
                continue;
            }
            let (word, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
            let rest = rest.trim();
            match word {
                "mesh" => {
                    if mesh.is_some() {
                        return Err(fail(line, "a second `mesh` line"));
                    }
                    let dims = rest
                        .split('x')
                        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
                        .collect::<Option<Vec<usize>>>()
                        .filter(|d| !d.is_empty() && d.len() <= 8)
                        .ok_or_else(|| {
                            fail(line, format!("`{rest}` is not a mesh (write `4` or `2x4`)"))
                        })?;
                    if dims
                        .iter()
                        .try_fold(1usize, |a, &d| a.checked_mul(d))
                        .is_none()
                    {
                        return Err(fail(line, format!("the mesh `{rest}` is too large")));
                    }
                    mesh = Some(Mesh::new(&dims));
                }
                "input" | "hint" => {
                    let (id, rest) = rest.split_once(char::is_whitespace).ok_or_else(|| {
                        fail(
                            line,
                            format!("`{word}` needs a number, a type and a layout"),
                        )
                    })?;
                    let number = if word == "hint" {
                        id.strip_prefix('%')
                    } else {
                        Some(id)
                    }
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| {
                        fail(
                            line,
                            if word == "hint" {
                                format!("`{id}` is not a value number (write `%7`)")
                            } else {
                                format!("`{id}` is not an input number")
                            },
                        )
                    })?;
                    let (ty, layout) = type_and_layout(rest).ok_or_else(|| {
                        fail(line, format!("`{rest}` is not a type and a layout"))
                    })?;
                    let layout: Layout = layout.parse().map_err(|e: String| fail(line, e))?;
                    if word == "input" {
                        if !layout.partial.is_empty() {
                            return Err(fail(line, "an input cannot be a pending partial sum"));
                        }
                        if inputs.iter().any(|(i, _, _)| *i == number) {
                            return Err(fail(line, format!("input {number} is given twice")));
                        }
                        inputs.push((number, ty.to_string(), layout));
                    } else {
                        hints.push((number, ty.to_string(), layout));
                    }
                }
                other => {
                    return Err(fail(
                        line,
                        format!("`{other}` is not `mesh`, `input` or `hint`"),
                    ));
                }
            }
        }
        let mesh = mesh.ok_or_else(|| fail(0, "the plan has no `mesh` line"))?;
        Ok(SavedPlan {
            mesh,
            inputs,
            hints,
        })
    }

    /// The input layouts and hints for `g`, after checking that the plan fits it: every
    /// input exists and has the type written, every hint names a value of `g` of its type,
    /// every layout has one entry per axis and splits only over axes of the mesh, each at
    /// most once.
    pub fn apply(&self, g: &Graph) -> Result<(Vec<Layout>, Hints), PlanFileError> {
        let types: Vec<String> = g
            .inputs()
            .iter()
            .filter_map(|&v| g.ty(v).tensor())
            .map(ToString::to_string)
            .collect();
        let mut layouts: Vec<Layout> = types
            .iter()
            .map(|t| Layout::replicated(rank_of(t)))
            .collect();
        let check = |what: &str, t: &str, l: &Layout| -> Result<(), PlanFileError> {
            let rank = rank_of(t);
            if l.map.len() != rank {
                return Err(fail(
                    0,
                    format!(
                        "{what}: the layout {l} has {} axes, but {t} has {rank}",
                        l.map.len()
                    ),
                ));
            }
            let axes = self.mesh.shape().len();
            let used: Vec<usize> = l.map.iter().flatten().copied().collect();
            if let Some(&m) = used
                .iter()
                .chain(l.partial.iter().map(|(m, _)| m))
                .find(|&&m| m >= axes)
            {
                return Err(fail(
                    0,
                    format!("{what}: the mesh {} has no axis m{m}", self.mesh),
                ));
            }
            if let Some(m) = (0..axes).find(|m| used.iter().filter(|&&u| u == *m).count() > 1) {
                return Err(fail(
                    0,
                    format!("{what}: the layout {l} splits two axes over mesh axis m{m}"),
                ));
            }
            Ok(())
        };
        for (i, t, l) in &self.inputs {
            let Some(have) = types.get(*i) else {
                return Err(fail(
                    0,
                    format!("input {i}: the function has {} tensor inputs", types.len()),
                ));
            };
            if squash(have) != squash(t) {
                return Err(fail(
                    0,
                    format!("input {i} is {have}, but the plan was made for {t}"),
                ));
            }
            check(&format!("input {i}"), have, l)?;
            layouts[*i] = l.clone();
        }
        let numbers = numbering(g);
        let mut by_number: Vec<(usize, ValueId)> = numbers.iter().map(|(&v, &n)| (n, v)).collect();
        by_number.sort_unstable();
        let mut hints = Vec::new();
        for (n, t, l) in &self.hints {
            let v = by_number
                .binary_search_by_key(n, |&(k, _)| k)
                .ok()
                .map(|i| by_number[i].1)
                .ok_or_else(|| fail(0, format!("hint %{n}: the graph has no value %{n}")))?;
            let have = g
                .ty(v)
                .tensor()
                .map(ToString::to_string)
                .ok_or_else(|| fail(0, format!("hint %{n}: %{n} is not a tensor")))?;
            if squash(&have) != squash(t) {
                return Err(fail(
                    0,
                    format!("hint %{n} is {have}, but the plan was made for {t}"),
                ));
            }
            check(&format!("hint %{n}"), &have, l)?;
            hints.push((v, l.clone()));
        }
        Ok((layouts, hints))
    }
}

/// A type's text without spaces, for comparing what a person typed with what is printed.
fn squash(t: &str) -> String {
    t.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The rank of a type written `f32[2, 3]` (0 for `f32[]`).
fn rank_of(t: &str) -> usize {
    let inside = t
        .split_once('[')
        .and_then(|(_, r)| r.rsplit_once(']'))
        .map_or("", |(i, _)| i);
    if inside.trim().is_empty() {
        0
    } else {
        inside.split(',').count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::parse;

    const G: &str = "graph @g(%x: f32[8, 4], %w: f32[4, 6]) -> (f32[8, 6]) {\n  %h: f32[8, 6] = matmul %x, %w\n  %y: f32[8, 6] = relu %h\n  yield %y\n}\n";

    #[test]
    fn a_saved_plan_reads_back_and_applies() {
        let g = parse(G).expect("parses");
        let mesh = Mesh::new(&[2, 2]);
        let numbers = numbering(&g);
        let h = g.block(g.body()).nodes[0];
        let hv = g.node(h).results[0];
        let hints = vec![(hv, Layout::split(2, 1, 1))];
        let saved = SavedPlan::of(&g, &mesh, &[Layout::split(2, 0, 0)], &hints);
        let text = saved.to_text("the plan of `g`");
        assert_eq!(
            text,
            format!(
                "# the plan of `g`\nmesh 2x2\ninput 0 f32[8, 4] [m0, -]\ninput 1 f32[4, 6] [-, -]\nhint %{} f32[8, 6] [-, m1]\n",
                numbers[&hv]
            )
        );
        let back = SavedPlan::parse(&text).expect("reads back");
        assert_eq!(back, saved);
        let (layouts, h2) = back.apply(&g).expect("fits");
        assert_eq!(layouts, vec![Layout::split(2, 0, 0), Layout::replicated(2)]);
        assert_eq!(h2, hints);
    }

    #[test]
    fn bad_plans_are_refused_with_their_line() {
        let g = parse(G).expect("parses");
        let cases: &[(&str, &str)] = &[
            ("input 0 f32[8, 4] [m0, -]\n", "the plan has no `mesh` line"),
            ("mesh 0\n", "line 1: `0` is not a mesh (write `4` or `2x4`)"),
            ("mesh 2\nmesh 2\n", "line 2: a second `mesh` line"),
            (
                "mesh 2\nsplit 0\n",
                "line 2: `split` is not `mesh`, `input` or `hint`",
            ),
            (
                "mesh 2\ninput x f32[8, 4] [m0, -]\n",
                "line 2: `x` is not an input number",
            ),
            (
                "mesh 2\ninput 0 f32[8, 4] [q, -]\n",
                "line 2: `[q, -]` is not a layout (write `[m0, -]`)",
            ),
            (
                "mesh 2\ninput 0 f32[8, 4] [m0, -]\ninput 0 f32[8, 4] [-, -]\n",
                "line 3: input 0 is given twice",
            ),
            (
                "mesh 2\nhint 3 f32[8, 6] [m0, -]\n",
                "line 2: `3` is not a value number (write `%7`)",
            ),
        ];
        for (text, want) in cases {
            let e = SavedPlan::parse(text).expect_err(text);
            assert_eq!(e.to_string(), *want, "{text}");
        }
        let fits: &[(&str, &str)] = &[
            (
                "mesh 2\ninput 2 f32[8, 4] [m0, -]\n",
                "input 2: the function has 2 tensor inputs",
            ),
            (
                "mesh 2\ninput 0 f32[9, 4] [m0, -]\n",
                "input 0 is f32[8, 4], but the plan was made for f32[9, 4]",
            ),
            (
                "mesh 2\ninput 0 f32[8, 4] [m0]\n",
                "input 0: the layout [m0] has 1 axes, but f32[8, 4] has 2",
            ),
            (
                "mesh 2\ninput 0 f32[8, 4] [m1, -]\n",
                "input 0: the mesh 2 has no axis m1",
            ),
            (
                "mesh 2x2\ninput 0 f32[8, 4] [m0, m0]\n",
                "input 0: the layout [m0, m0] splits two axes over mesh axis m0",
            ),
            (
                "mesh 2\nhint %99 f32[8, 6] [m0, -]\n",
                "hint %99: the graph has no value %99",
            ),
        ];
        for (text, want) in fits {
            let plan = SavedPlan::parse(text).expect(text);
            let e = plan.apply(&g).expect_err(text);
            assert_eq!(e.to_string(), *want, "{text}");
        }
    }
}
