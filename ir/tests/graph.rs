//! The graph IR: the builder (and its `Emit`), the text form's round trip over seeded
//! random graphs that cover every primitive and every control-flow form, and parse errors.

use std::cell::RefCell;
use std::collections::HashSet;

use ir::graph::{BuildError, NodeKind, PrintOptions, Span, Type, ValueId, parse, print};
use ir::{
    ArgOp, BinaryOp, CmpOp, Conv2dParams, DType, Dim, Emit, GraphBuilder, Op, Pool2dParams, Prim,
    Shape, SliceDim, TensorType, UnaryKind, verify,
};

fn t(dtype: DType, dims: &[usize]) -> TensorType {
    TensorType::known(dtype, dims)
}

fn tensor(b: &GraphBuilder, v: ValueId) -> TensorType {
    b.ty(v)
        .tensor()
        .cloned()
        .unwrap_or_else(|| panic!("{v:?} is the token"))
}

/// Round-trips `g` through the text form, with and without spans.
fn round_trip(g: &ir::Graph) {
    let text = print(g, PrintOptions { spans: true });
    let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(
        back == *g,
        "round trip changed the graph:\n{text}\n---\n{}",
        print(&back, PrintOptions { spans: true })
    );
    assert_eq!(print(&back, PrintOptions { spans: true }), text);
    let plain = print(g, PrintOptions::default());
    let back = parse(&plain).unwrap_or_else(|e| panic!("{e}\n{plain}"));
    assert_eq!(print(&back, PrintOptions::default()), plain);
}

#[test]
fn autodiff_compositions_emit_typed_nodes() -> Result<(), BuildError> {
    let mut b = GraphBuilder::new("vjp_pieces");
    let x = b.input(t(DType::F32, &[4, 3]));
    let w = b.input(t(DType::F32, &[3, 5]));
    let bias = b.input(t(DType::F32, &[5]));
    let dy = b.input(t(DType::F32, &[4, 5]));
    // The matmul VJP: dx = dy @ wᵀ, dw = xᵀ @ dy; the bias gradient is dy summed to [5].
    let y = b.matmul(&x, &w)?;
    let y = b.add(&y, &bias)?;
    assert_eq!(tensor(&b, y), t(DType::F32, &[4, 5]));
    let wt = b.transpose_last2(&w)?;
    let dx = b.matmul(&dy, &wt)?;
    let xt = b.transpose_last2(&x)?;
    let dw = b.matmul(&xt, &dy)?;
    let db = b.sum_to(&dy, &[5])?;
    let db1 = b.sum_to(&dy, &[1, 5])?;
    assert_eq!(tensor(&b, dx), t(DType::F32, &[4, 3]));
    assert_eq!(tensor(&b, dw), t(DType::F32, &[3, 5]));
    assert_eq!(tensor(&b, db), t(DType::F32, &[5]));
    assert_eq!(tensor(&b, db1), t(DType::F32, &[1, 5]));
    // relu's VJP: dy where y > 0, else 0.
    let zero = b.zeros_like(&y)?;
    let mask = b.compare(CmpOp::Gt, &y, &zero)?;
    let dr = b.select(&mask, &dy, &zero)?;
    assert_eq!(tensor(&b, mask), t(DType::Bool, &[4, 5]));
    assert_eq!(tensor(&b, dr), t(DType::F32, &[4, 5]));
    let bb = b.broadcast_to(&bias, &[4, 5])?;
    let p = b.placeholder(&t(DType::F64, &[2, 2]))?;
    let s = b.scale(&bb, 0.5)?;
    let c = b.cast(&s, DType::F64)?;
    assert_eq!(tensor(&b, bb), t(DType::F32, &[4, 5]));
    assert_eq!(tensor(&b, p), t(DType::F64, &[2, 2]));
    assert_eq!(tensor(&b, c), t(DType::F64, &[4, 5]));
    // Compositions that are no-ops add no node.
    let before = b.graph().node_count();
    assert_eq!(b.sum_to(&dy, &[4, 5])?, dy);
    assert_eq!(b.broadcast_to(&dy, &[4, 5])?, dy);
    assert_eq!(b.graph().node_count(), before);
    let g = b.finish(&[dx, dw, db, dr, c, p])?;
    assert_eq!(verify(&g), Ok(()));
    assert_eq!(g.outputs().len(), 6);
    round_trip(&g);
    Ok(())
}

#[test]
fn builder_errors_are_data() {
    let mut b = GraphBuilder::new("bad");
    let x = b.input(t(DType::F32, &[2, 3]));
    let y = b.input(t(DType::F32, &[4, 3]));
    b.set_span(Span::new(0, 10, 20));
    match b.matmul(&x, &y) {
        Err(BuildError::Infer { span, .. }) => assert_eq!(span, Span::new(0, 10, 20)),
        other => panic!("expected an inference error, got {other:?}"),
    }
    assert!(matches!(
        b.print(x),
        Err(BuildError::NoToken { op: "print", .. })
    ));
    let c = b.input(t(DType::F32, &[]));
    assert!(matches!(
        b.if_(c, &[], |_, _| Ok(vec![]), |_, _| Ok(vec![])),
        Err(BuildError::Operand {
            op: "if",
            index: 0,
            ..
        })
    ));
    let flag = b.input(t(DType::Bool, &[]));
    let err = b
        .if_(
            flag,
            &[x],
            |_, a| Ok(vec![a[0]]),
            |b, _| Ok(vec![b.full(&[3], DType::F32, 0.0)?]),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the else region of if yields (f32[3]), expected (f32[2, 3])"
    );
    // A value of a closed region is out of scope afterwards.
    let mut inner = None;
    let _ = b.if_(
        flag,
        &[],
        |b, _| {
            inner = Some(b.neg(&x)?);
            Ok(vec![])
        },
        |_, _| Ok(vec![]),
    );
    let inner = inner.expect("the then closure ran");
    assert!(matches!(b.neg(&inner), Err(BuildError::OutOfScope { .. })));
    let tok = b.token_input();
    assert!(matches!(
        b.op(
            &Op::Unary {
                op: ir::UnaryOp::Neg
            },
            &[tok]
        ),
        Err(BuildError::Operand {
            expected: "a tensor",
            ..
        })
    ));
}

#[test]
fn the_token_is_threaded_through_control_flow() -> Result<(), BuildError> {
    let mut b = GraphBuilder::new("effects");
    let tok0 = b.token_input();
    let x = b.input(t(DType::F32, &[3]));
    let n = b.input(t(DType::I64, &[]));
    let zero = b.scalar(DType::I64, 0.0)?;
    let one = b.scalar(DType::I64, 1.0)?;
    let out = b.for_(zero, n, one, &[x], |b, _i, c| {
        let p = b.print(c[0])?;
        Ok(vec![b.scale(&p, 2.0)?])
    })?;
    let tok1 = b.current_token().expect("the body holds a token");
    assert_ne!(tok0, tok1);
    let g = b.finish(&out)?;
    assert_eq!(verify(&g), Ok(()));
    assert_eq!(g.outputs()[0], tok1);
    let for_node = g.block(g.body()).nodes.last().copied().expect("a node");
    let node = g.node(for_node);
    assert!(matches!(node.kind, NodeKind::For { .. }));
    assert_eq!(node.operands[3], tok0, "the token follows the bounds");
    assert_eq!(*g.ty(node.results[0]), Type::Token);
    round_trip(&g);
    Ok(())
}

#[test]
fn parse_errors_carry_line_and_column() {
    let cases = [
        (
            "graph @g() -> () {\n  %1: f32[] = neg %x\n  yield\n}\n",
            "2:19: %x is never defined",
        ),
        (
            "graph @g(%0: f33[2]) -> () {\n  yield\n}\n",
            "1:14: unknown type `f33`",
        ),
        (
            "graph @g(%0: f32[2]) -> (f32[2]) {\n  %1: f32[2] = frobnicate %0\n  yield %1\n}\n",
            "2:16: unknown operation `frobnicate`",
        ),
        (
            "graph @g(%0: f32[2]) -> (f32[]) {\n  %1: f32[] = sum %0 {axes: [0]}\n  yield %1\n}\n",
            "2:15: sum needs the attribute `keepdims`",
        ),
        (
            "graph @g(%0: f32[2]) -> (f32[2]) {\n  %1: f32[2] = neg %0 {axis: 1}\n  yield %1\n}\n",
            "2:24: neg has no attribute `axis`",
        ),
        (
            "graph @g() -> (f32[2]) {\n  yield\n}\n",
            "1:16: the header lists 1 output(s), the body yields 0",
        ),
        (
            "graph @g() -> () {\n  yield\n",
            "3:1: expected `}`, found the end of the text",
        ),
        (
            "graph @g() -> () {\n  %1: f32[] = full {shape: [], dtype: f32, value: \"x\"}\n  yield\n}",
            "2:51: expected a number",
        ),
        (
            "graph @g() -> () { yield } $",
            "1:28: unexpected character `$`",
        ),
    ];
    for (text, want) in cases {
        match parse(text) {
            Err(e) => assert_eq!(e.to_string(), want, "for:\n{text}"),
            Ok(g) => panic!("parsed:\n{text}\nas\n{g}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Seeded random graphs.

/// A small deterministic generator (xorshift64*), so each seed is one fixed graph.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

struct State {
    rng: Rng,
    /// Values in scope, by type; truncated when a region closes.
    pool: Vec<ValueId>,
    covered: HashSet<Prim>,
    control: HashSet<&'static str>,
    effects: bool,
}

type S<'a> = &'a RefCell<State>;

/// A value of type `ty`: one in scope, a new graph input, or a fill.
fn operand(b: &mut GraphBuilder, s: S, ty: &TensorType) -> Result<ValueId, BuildError> {
    let mut st = s.borrow_mut();
    let same: Vec<ValueId> = st
        .pool
        .iter()
        .copied()
        .filter(|&v| b.ty(v) == &Type::Tensor(ty.clone()))
        .collect();
    let choice = st.rng.below(4);
    if !same.is_empty() && choice < 2 {
        return Ok(st.rng.pick(&same));
    }
    if choice == 2 {
        return Ok(b.input(ty.clone()));
    }
    let value = st
        .rng
        .pick(&[0.0, 1.5, -2.0, 1e-30, f64::NAN, f64::INFINITY, -0.0]);
    let value = if ty.dtype.is_float() { value } else { 1.0 };
    let v = b.emit(
        &Op::Full {
            shape: ty.shape.clone(),
            dtype: ty.dtype,
            value,
        },
        &[],
    )?;
    st.pool.push(v);
    Ok(v)
}

/// Applies `prim` to operands of types it accepts, with random attributes.
fn apply(b: &mut GraphBuilder, s: S, prim: Prim) -> Result<Option<ValueId>, BuildError> {
    use DType::*;
    if matches!(prim, Prim::Print | Prim::Random(_)) && b.current_token().is_none() {
        return Ok(None);
    }
    let sym = Shape(vec![Dim::sym("B"), Dim::Known(3)]);
    let conv = Conv2dParams {
        stride: [2, 2],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 1,
    };
    let pool = Pool2dParams {
        window: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
    };
    let (op, args): (Op, Vec<TensorType>) = {
        let mut st = s.borrow_mut();
        let r = &mut st.rng;
        let shape2 = if r.coin() {
            sym.clone()
        } else {
            Shape::known(&[2, 3])
        };
        match prim {
            Prim::Unary(op) => {
                let dt = match op.kind() {
                    UnaryKind::Float => r.pick(&[F32, F64]),
                    UnaryKind::Numeric => r.pick(&[F32, I64]),
                    UnaryKind::Logical => Bool,
                    UnaryKind::Predicate => F32,
                };
                (Op::Unary { op }, vec![TensorType::new(dt, shape2)])
            }
            Prim::Binary(op) => {
                let dt = if op.is_logical() {
                    Bool
                } else if matches!(op, BinaryOp::Div | BinaryOp::Pow) {
                    F32
                } else {
                    r.pick(&[F32, I32])
                };
                (
                    Op::Binary { op },
                    vec![TensorType::new(dt, shape2), t(dt, &[3])],
                )
            }
            Prim::Compare(op) => (Op::Compare { op }, vec![t(F32, &[2, 3]), t(F32, &[1, 3])]),
            Prim::Select => (
                Op::Select {},
                vec![t(Bool, &[2, 3]), t(F32, &[2, 3]), t(F32, &[])],
            ),
            Prim::Reduce(op) => {
                let axes: Vec<usize> = (0..3).filter(|_| r.coin()).collect();
                let keepdims = r.coin();
                (Op::Reduce { op, axes, keepdims }, vec![t(F32, &[2, 3, 4])])
            }
            Prim::ArgReduce(op) => (
                Op::ArgReduce {
                    op,
                    axis: r.below(2),
                    keepdims: r.coin(),
                },
                vec![t(F32, &[2, 3])],
            ),
            Prim::MatMul => {
                let a = if r.coin() {
                    t(F32, &[2, 3])
                } else {
                    t(F32, &[5, 2, 3])
                };
                (Op::MatMul {}, vec![a, t(F32, &[3, 4])])
            }
            Prim::Reshape => {
                let to = r.pick(&[vec![3, 2], vec![6], vec![1, 6, 1]]);
                (
                    Op::Reshape {
                        shape: Shape::known(&to),
                    },
                    vec![t(F32, &[2, 3])],
                )
            }
            Prim::Transpose => {
                let perm = r.pick(&[vec![0, 1, 2], vec![2, 0, 1], vec![1, 0, 2], vec![2, 1, 0]]);
                (Op::Transpose { perm }, vec![t(F32, &[2, 3, 4])])
            }
            Prim::Broadcast => (
                Op::Broadcast {
                    shape: Shape(vec![Dim::sym("B"), Dim::unknown(), Dim::Known(3)]),
                },
                vec![t(F32, &[1, 3])],
            ),
            Prim::Slice => (
                Op::Slice {
                    dims: vec![
                        SliceDim {
                            start: 1,
                            len: 2,
                            step: 2,
                        },
                        SliceDim {
                            start: 3,
                            len: 2,
                            step: -1,
                        },
                    ],
                },
                vec![t(F32, &[5, 4])],
            ),
            Prim::Concat => (
                Op::Concat { axis: 0 },
                vec![t(F32, &[2, 3]), t(F32, &[4, 3]), t(F32, &[1, 3])],
            ),
            Prim::Pad => {
                let value = r.pick(&[0.0, -1.5, f64::NAN, f64::NEG_INFINITY, 1e-30]);
                (
                    Op::Pad {
                        pads: vec![(1, 0), (0, 2)],
                        value,
                    },
                    vec![t(F32, &[2, 3])],
                )
            }
            Prim::Gather => (Op::Gather { axis: 0 }, vec![t(F32, &[5, 3]), t(I64, &[4])]),
            Prim::ScatterAdd => (
                Op::ScatterAdd { axis: 0 },
                vec![t(F32, &[5, 3]), t(I64, &[4]), t(F32, &[4, 3])],
            ),
            Prim::Conv2d => (
                Op::Conv2d { params: conv },
                vec![t(F32, &[1, 2, 5, 5]), t(F32, &[4, 2, 3, 3])],
            ),
            Prim::Conv2dBackwardInput => (
                Op::Conv2dBackwardInput {
                    params: conv,
                    input_hw: [5, 5],
                },
                vec![t(F32, &[1, 4, 3, 3]), t(F32, &[4, 2, 3, 3])],
            ),
            Prim::Conv2dBackwardFilter => (
                Op::Conv2dBackwardFilter {
                    params: conv,
                    kernel_hw: [3, 3],
                },
                vec![t(F32, &[1, 2, 5, 5]), t(F32, &[1, 4, 3, 3])],
            ),
            Prim::Pool2d(op) => (Op::Pool2d { op, params: pool }, vec![t(F32, &[1, 2, 4, 4])]),
            Prim::Pool2dBackward(op) => (
                Op::Pool2dBackward { op, params: pool },
                vec![t(F32, &[1, 2, 4, 4]), t(F32, &[1, 2, 2, 2])],
            ),
            Prim::Cast => (
                Op::Cast {
                    dtype: r.pick(&DType::ALL),
                },
                vec![t(F32, &[2, 3])],
            ),
            Prim::Random(op) => (
                Op::Random {
                    op,
                    shape: Shape::known(&[2, 3]),
                    dtype: r.pick(&[F32, F64]),
                },
                vec![t(I64, &[2])],
            ),
            Prim::Iota => (
                Op::Iota {
                    shape: Shape::known(&[3, 4]),
                    axis: r.below(2),
                    dtype: r.pick(&[I64, F32]),
                },
                vec![],
            ),
            Prim::Full => (
                Op::Full {
                    shape: shape2,
                    dtype: r.pick(&[F32, F64, I32, Bool]),
                    value: r.pick(&[0.0, 2.5, f64::NAN, f64::INFINITY]),
                },
                vec![],
            ),
            Prim::Print => (Op::Print {}, vec![t(F32, &[2, 3])]),
            Prim::StopGradient => (Op::StopGradient {}, vec![t(F32, &[2, 3])]),
        }
    };
    let mut vals = Vec::new();
    for a in &args {
        vals.push(operand(b, s, a)?);
    }
    let refs: Vec<&ValueId> = vals.iter().collect();
    let v = b.emit(&op, &refs)?;
    let mut st = s.borrow_mut();
    st.covered.insert(prim);
    st.pool.push(v);
    Ok(Some(v))
}

/// A few random primitives, maybe a control-flow node around more, at `depth`.
fn fill(b: &mut GraphBuilder, s: S, depth: usize, must: Option<Prim>) -> Result<(), BuildError> {
    if let Some(p) = must {
        apply(b, s, p)?;
    }
    let steps = s.borrow_mut().rng.below(4);
    for _ in 0..steps {
        let kind = s.borrow_mut().rng.below(if depth < 2 { 8 } else { 5 });
        match kind {
            5 => gen_if(b, s, depth)?,
            6 => gen_while(b, s, depth)?,
            7 => gen_for(b, s, depth)?,
            _ => {
                let p = s.borrow_mut().rng.pick(Prim::all());
                apply(b, s, p)?;
            }
        }
    }
    if s.borrow().effects && s.borrow_mut().rng.below(4) == 0 {
        let flag = operand(b, s, &t(DType::Bool, &[]))?;
        b.assert(flag, "check \"quoted\"\n")?;
    }
    Ok(())
}

/// Runs `f` in a region: values made inside leave the pool when it closes.
fn scoped<T>(
    b: &mut GraphBuilder,
    s: S,
    args: &[ValueId],
    f: impl FnOnce(&mut GraphBuilder) -> Result<T, BuildError>,
) -> Result<T, BuildError> {
    let mark = s.borrow().pool.len();
    s.borrow_mut().pool.extend_from_slice(args);
    let out = f(b);
    s.borrow_mut().pool.truncate(mark);
    out
}

fn gen_if(b: &mut GraphBuilder, s: S, depth: usize) -> Result<(), BuildError> {
    let c = operand(b, s, &t(DType::Bool, &[]))?;
    let x = operand(b, s, &t(DType::F32, &[2, 3]))?;
    let out = b.if_(
        c,
        &[x],
        |b, a| {
            scoped(b, s, a, |b| {
                fill(b, s, depth + 1, None)?;
                Ok(vec![b.neg(&a[0])?, a[0]])
            })
        },
        |b, a| {
            scoped(b, s, a, |b| {
                fill(b, s, depth + 1, None)?;
                Ok(vec![a[0], x])
            })
        },
    )?;
    let mut st = s.borrow_mut();
    st.control.insert("if");
    st.pool.extend(out);
    Ok(())
}

fn gen_while(b: &mut GraphBuilder, s: S, depth: usize) -> Result<(), BuildError> {
    let i = operand(b, s, &t(DType::I64, &[]))?;
    let x = operand(b, s, &t(DType::F32, &[3]))?;
    let out = b.while_(
        &[i, x],
        |b, a| {
            scoped(b, s, a, |b| {
                let ten = b.scalar(DType::I64, 10.0)?;
                b.compare(CmpOp::Lt, &a[0], &ten)
            })
        },
        |b, a| {
            scoped(b, s, a, |b| {
                fill(b, s, depth + 1, None)?;
                let one = b.scalar(DType::I64, 1.0)?;
                Ok(vec![
                    b.add(&a[0], &one)?,
                    b.unary(ir::UnaryOp::Tanh, &a[1])?,
                ])
            })
        },
    )?;
    let mut st = s.borrow_mut();
    st.control.insert("while");
    st.pool.extend(out);
    Ok(())
}

fn gen_for(b: &mut GraphBuilder, s: S, depth: usize) -> Result<(), BuildError> {
    let dt = s.borrow_mut().rng.pick(&[DType::I64, DType::I32]);
    let lo = b.scalar(dt, 0.0)?;
    let hi = operand(b, s, &t(dt, &[]))?;
    let step = b.scalar(dt, 2.0)?;
    let x = operand(b, s, &t(DType::F32, &[2, 3]))?;
    let out = b.for_(lo, hi, step, &[x], |b, i, a| {
        let mut args = vec![i];
        args.extend_from_slice(a);
        scoped(b, s, &args, |b| {
            fill(b, s, depth + 1, None)?;
            let m = b.reduce(ir::ReduceOp::Max, &a[0], &[1], true)?;
            Ok(vec![b.sub(&a[0], &m)?])
        })
    })?;
    let mut st = s.borrow_mut();
    st.control.insert("for");
    st.pool.extend(out);
    Ok(())
}

/// The graph of `seed`: it applies primitive `seed mod |Prim::all()|` at least.
fn random_graph(seed: u64, s: S) -> Result<ir::Graph, BuildError> {
    let mut b = GraphBuilder::new(&format!("g{seed}"));
    let effects = seed % 5 != 4;
    s.borrow_mut().effects = effects;
    if effects {
        b.token_input();
    }
    let all = Prim::all();
    let must = all[(seed as usize) % all.len()];
    let spans = s.borrow_mut().rng.coin();
    if spans {
        b.set_span(Span::new(1, seed as u32, seed as u32 + 7));
    }
    fill(&mut b, s, 0, Some(must))?;
    let outs: Vec<ValueId> = {
        let mut st = s.borrow_mut();
        let n = st.pool.len().min(3);
        let k = st.rng.below(n + 1);
        st.pool.iter().rev().take(k).copied().collect()
    };
    s.borrow_mut().pool.clear();
    b.finish(&outs)
}

#[test]
fn random_graphs_verify_and_round_trip() {
    let state = RefCell::new(State {
        rng: Rng(0x9E37_79B9_7F4A_7C15),
        pool: Vec::new(),
        covered: HashSet::new(),
        control: HashSet::new(),
        effects: true,
    });
    let seeds = 3 * Prim::all().len() as u64;
    for seed in 0..seeds {
        state.borrow_mut().rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let g = random_graph(seed, &state).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        if let Err(e) = verify(&g) {
            panic!(
                "seed {seed}: {e}\n{}",
                print(&g, PrintOptions { spans: true })
            );
        }
        round_trip(&g);
    }
    let st = state.borrow();
    let missing: Vec<&Prim> = Prim::all()
        .iter()
        .filter(|p| !st.covered.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "primitives no graph applied: {missing:?}"
    );
    for form in ["if", "while", "for"] {
        assert!(st.control.contains(form), "no graph has a `{form}`");
    }
}

#[test]
fn equality_is_structural_and_sees_every_difference() -> Result<(), BuildError> {
    let make = |axis: usize, span: u32, value: f64| -> Result<ir::Graph, BuildError> {
        let mut b = GraphBuilder::new("eq");
        let x = b.input(t(DType::F32, &[2, 3]));
        b.set_span(Span::new(0, span, span + 1));
        let p = b.pad(&x, &[(1, 1), (0, 0)], value)?;
        let a = b.emit(
            &Op::ArgReduce {
                op: ArgOp::ArgMax,
                axis,
                keepdims: false,
            },
            &[&p],
        )?;
        b.finish(&[a])
    };
    assert!(make(1, 5, f64::NAN)? == make(1, 5, f64::NAN)?);
    assert!(make(0, 5, 1.0)? != make(1, 5, 1.0)?);
    assert!(make(1, 5, 1.0)? != make(1, 6, 1.0)?);
    assert!(make(1, 5, 0.0)? != make(1, 5, -0.0)?);
    // Graphs with the same nodes wired differently differ.
    let wire = |swap: bool| -> Result<ir::Graph, BuildError> {
        let mut b = GraphBuilder::new("w");
        let x = b.input(t(DType::F32, &[2]));
        let y = b.input(t(DType::F32, &[2]));
        let d = if swap { b.sub(&y, &x)? } else { b.sub(&x, &y)? };
        b.finish(&[d])
    };
    assert!(wire(false)? != wire(true)?);
    assert!(wire(true)? == wire(true)?);
    Ok(())
}

/// The text form is what the `.msir` model file stores, so a graph must come back exactly
/// without spans too: every optimized random graph (fused regions included) prints, parses
/// and prints the same text, and the parsed graph equals the graph with its spans cleared.
#[test]
fn optimized_random_graphs_round_trip_without_spans() {
    let state = RefCell::new(State {
        rng: Rng(0x2545_F491_4F6C_DD1D),
        pool: Vec::new(),
        covered: HashSet::new(),
        control: HashSet::new(),
        effects: true,
    });
    let mut fused = 0;
    let seeds = 3 * Prim::all().len() as u64;
    for seed in 0..seeds {
        state.borrow_mut().rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let g = random_graph(seed, &state).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let opt = ir::passes::optimize(&g, ir::passes::PIPELINE, true)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        fused += count_fused(&opt, opt.body());
        for g in [&g, &opt] {
            let plain = print(g, PrintOptions::default());
            let back = parse(&plain).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{plain}"));
            verify(&back).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{plain}"));
            assert_eq!(print(&back, PrintOptions::default()), plain, "seed {seed}");
            let unspanned = parse(&plain).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                back == unspanned,
                "seed {seed}: parsing is not deterministic"
            );
        }
    }
    assert!(fused > 0, "no optimized random graph has a fused node");
}

fn count_fused(g: &ir::Graph, b: ir::graph::BlockId) -> usize {
    g.block(b)
        .nodes
        .iter()
        .map(|&n| {
            let node = g.node(n);
            let own = usize::from(matches!(node.kind, NodeKind::Fused { .. }));
            own + node
                .kind
                .regions()
                .into_iter()
                .map(|r| count_fused(g, r))
                .sum::<usize>()
        })
        .sum()
}

/// Float constants come back with the same bits: signed zeros, subnormals, the extremes of
/// f32 and f64, infinities and NaNs with a sign or a payload.
#[test]
fn float_constants_round_trip_bit_for_bit() -> Result<(), BuildError> {
    let values = [
        0.0,
        -0.0,
        0.1,
        -1.0 / 3.0,
        f64::from(f32::MAX),
        f64::from(f32::MIN_POSITIVE),
        f64::from(f32::from_bits(1)),
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        f64::from_bits(0xFFF8_0000_0000_0000),
        f64::from_bits(0x7FF0_0000_0000_0001),
        f64::from_bits(0x7FF4_0000_DEAD_BEEF),
    ];
    let mut b = GraphBuilder::new("consts");
    let x = b.input(t(DType::F32, &[2]));
    let mut outs = Vec::new();
    for (k, &value) in values.iter().enumerate() {
        let dtype = if k % 2 == 0 { DType::F64 } else { DType::F32 };
        outs.push(b.op(
            &Op::Full {
                shape: Shape::known(&[]),
                dtype,
                value,
            },
            &[],
        )?);
    }
    let padded = b.op(
        &Op::Pad {
            pads: vec![(1, 0)],
            value: f64::from_bits(0xFFF8_0000_0000_0000),
        },
        &[x],
    )?;
    outs.push(padded);
    let g = b.finish(&outs)?;
    let text = print(&g, PrintOptions::default());
    let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(back == g, "constants changed:\n{text}");
    let bits = |g: &ir::Graph| -> Vec<u64> {
        g.block(g.body())
            .nodes
            .iter()
            .filter_map(|&n| match &g.node(n).kind {
                NodeKind::Prim(Op::Full { value, .. } | Op::Pad { value, .. }) => {
                    Some(value.to_bits())
                }
                _ => None,
            })
            .collect()
    };
    let mut want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
    want.push(0xFFF8_0000_0000_0000);
    assert_eq!(bits(&back), want);
    assert!(text.contains("nan_fff8000000000000"), "{text}");
    for bad in ["nan_12", "nan_0000000000000001", "nan_zzzzzzzzzzzzzzzz"] {
        let text = format!(
            "graph @g() -> (f32[]) {{\n  %0: f32[] = full {{shape: [], dtype: f32, value: {bad}}}\n  yield %0\n}}\n"
        );
        assert!(parse(&text).is_err(), "{bad} parsed");
    }
    Ok(())
}
