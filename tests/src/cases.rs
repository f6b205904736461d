//! The conformance case table: for every primitive (each op of a family counts as one), a
//! rank-0 case (or the smallest rank the primitive takes), a zero-size dim, a size-1 dim or
//! size-1 broadcasting, non-contiguous view operands, large and small magnitudes and a
//! typical case, for each dtype the primitive claims; plus special values (NaN, ±inf) where
//! the semantics define them, and one case large enough to take the kernels' parallel path.
//!
//! Inputs are generated from a SplitMix64 stream seeded by the family name, so a case is
//! the same on every run and a new case does not perturb the others' families.

use ir::{
    ArgOp, BinaryOp, CmpOp, Conv2dParams, DType, Op, Pool2dParams, PoolOp, RandomOp, ReduceOp,
    Shape, SliceDim, UnaryKind, UnaryOp,
};

use crate::inputs::{Domain, Operand, Rng, View, log_pos, log_signed, operand};

/// One conformance case: an op, its operands, and a name saying what it exercises.
#[derive(Clone, Debug)]
pub struct Case {
    /// `dtype/what` (`f32/zero-size`), unique within the primitive.
    pub name: String,
    /// The op run.
    pub op: Op,
    /// Its operands.
    pub inputs: Vec<Operand>,
}

/// The families of the primitive table, by their `PrimInfo::family` names.
pub const FAMILIES: &[&str] = &[
    "unary",
    "binary",
    "compare",
    "select",
    "reduce",
    "arg_reduce",
    "matmul",
    "reshape",
    "transpose",
    "broadcast",
    "slice",
    "concat",
    "pad",
    "gather",
    "scatter_add",
    "conv2d",
    "conv2d_backward_input",
    "conv2d_backward_filter",
    "pool2d",
    "pool2d_backward",
    "cast",
    "random",
    "iota",
    "full",
    "print",
    "stop_gradient",
];

/// The cases of one family (by its `PrimInfo::family` name).
pub fn family(name: &str) -> Vec<Case> {
    let mut t = Table::new(name);
    match name {
        "unary" => unary(&mut t),
        "binary" => binary(&mut t),
        "compare" => compare(&mut t),
        "select" => select(&mut t),
        "reduce" => reduce(&mut t),
        "arg_reduce" => arg_reduce(&mut t),
        "matmul" => matmul(&mut t),
        "reshape" => reshape(&mut t),
        "transpose" => transpose(&mut t),
        "broadcast" => broadcast(&mut t),
        "slice" => slice(&mut t),
        "concat" => concat(&mut t),
        "pad" => pad(&mut t),
        "gather" => gather(&mut t),
        "scatter_add" => scatter_add(&mut t),
        "conv2d" => conv(&mut t, ConvKind::Forward),
        "conv2d_backward_input" => conv(&mut t, ConvKind::BackwardInput),
        "conv2d_backward_filter" => conv(&mut t, ConvKind::BackwardFilter),
        "pool2d" => pool(&mut t, false),
        "pool2d_backward" => pool(&mut t, true),
        "cast" => cast(&mut t),
        "random" => random(&mut t),
        "iota" => iota(&mut t),
        "full" => full(&mut t),
        "print" => identity(&mut t, &Op::Print {}),
        "stop_gradient" => identity(&mut t, &Op::StopGradient {}),
        other => panic!("no family named {other}"),
    }
    t.cases
}

/// Every case of every family.
pub fn all() -> Vec<Case> {
    FAMILIES.iter().flat_map(|f| family(f)).collect()
}

/// What an operand should be: dtype, dims, values and layout.
#[derive(Clone, Debug)]
pub struct Spec {
    dtype: DType,
    dims: Vec<usize>,
    domain: Domain,
    view: View,
}

/// A contiguous operand spec.
pub fn spec(dtype: DType, dims: &[usize], domain: &Domain) -> Spec {
    Spec {
        dtype,
        dims: dims.to_vec(),
        domain: domain.clone(),
        view: View::Contiguous,
    }
}

impl Spec {
    /// The same operand laid out as `view`.
    pub fn view(mut self, view: View) -> Spec {
        self.view = view;
        self
    }
}

struct Table {
    rng: Rng,
    cases: Vec<Case>,
}

impl Table {
    fn new(name: &str) -> Table {
        Table {
            rng: Rng::from_name(name),
            cases: Vec::new(),
        }
    }

    fn add(&mut self, name: String, op: &Op, specs: Vec<Spec>) {
        let inputs = specs
            .iter()
            .map(|s| operand(&mut self.rng, s.dtype, &s.dims, &s.domain, s.view))
            .collect();
        self.add_operands(name, op, inputs);
    }

    fn add_operands(&mut self, name: String, op: &Op, inputs: Vec<Operand>) {
        self.cases.push(Case {
            name,
            op: op.clone(),
            inputs,
        });
    }
}

use DType::{Bool, F32, F64, I32, I64};

const FLOATS: [DType; 2] = [F32, F64];
const NUMERIC: [DType; 4] = [F32, F64, I32, I64];
const ALL_DTYPES: [DType; 5] = [F32, F64, I32, I64, Bool];

/// A large finite magnitude of the dtype (with room for a few products or sums).
fn big(dt: DType) -> f64 {
    if dt == F32 { 1e30 } else { 1e300 }
}

/// A small normal magnitude of the dtype.
fn tiny(dt: DType) -> f64 {
    if dt == F32 { 1e-30 } else { 1e-300 }
}

/// The full range of an integer dtype (for `i64`, the integers exact in `f64`).
fn int_range(dt: DType) -> Domain {
    match dt {
        I32 => Domain::Ints(i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => Domain::Ints(-(1 << 53), 1 << 53),
    }
}

/// Typical values: `[-10, 10)` for floats, `-100..=100` for integers.
fn typical(dt: DType) -> Domain {
    if dt.is_float() {
        Domain::Uniform(-10.0, 10.0)
    } else {
        Domain::Ints(-100, 100)
    }
}

/// Large magnitudes: up to [`big`] for floats, the whole range for integers.
fn large(dt: DType) -> Domain {
    if dt.is_float() {
        log_signed(1.0, big(dt))
    } else {
        int_range(dt)
    }
}

/// Small magnitudes: down to [`tiny`] for floats, `-2..=2` for integers.
fn small(dt: DType) -> Domain {
    if dt.is_float() {
        log_signed(tiny(dt), 1.0)
    } else {
        Domain::Ints(-2, 2)
    }
}

const INF: f64 = f64::INFINITY;
const NAN: f64 = f64::NAN;

/// Special floating-point values.
fn specials() -> Domain {
    Domain::Cycle(vec![0.0, 1.0, -1.0, INF, -INF, NAN, 2.5, -0.5])
}

/// The size of a case that takes the kernels' parallel path (more than
/// `devices::cpu::PAR_MIN_ELEMS` elements).
const PAR: [usize; 2] = [129, 257];

// ---------------------------------------------------------------------------------------
// Elementwise.

fn unary_dtypes(op: UnaryOp) -> &'static [DType] {
    match op.kind() {
        UnaryKind::Numeric | UnaryKind::Predicate => &NUMERIC,
        UnaryKind::Float => &FLOATS,
        UnaryKind::Logical => &[Bool],
    }
}

/// Typical, large and small domains of a unary op on a dtype, chosen inside the op's
/// domain (logarithms on positives, exponentials short of overflow where the result must
/// stay finite).
fn unary_domains(op: UnaryOp, dt: DType) -> [Domain; 3] {
    use UnaryOp::*;
    if !dt.is_float() {
        return [typical(dt), large(dt), small(dt)];
    }
    let f32_ = dt == F32;
    let near_zero = log_signed(1e-20, 1e-3);
    let exp_range = if f32_ { 87.0 } else { 700.0 };
    match op {
        Neg | Abs | Sign | Relu | IsNan | IsFinite | Not => [typical(dt), large(dt), small(dt)],
        Floor | Ceil | Round => [
            typical(dt),
            log_signed(1.0, if f32_ { 1e20 } else { 1e300 }),
            // Ties and near-ties: half-integers round to the even neighbour.
            Domain::Cycle(vec![
                -3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.499, -0.501, 1e-30, 4.5,
            ]),
        ],
        Exp => [
            Domain::Uniform(-5.0, 5.0),
            Domain::Uniform(-exp_range, exp_range),
            near_zero,
        ],
        Log | Sqrt => [
            Domain::Uniform(0.1, 100.0),
            log_pos(1.0, big(dt)),
            log_pos(tiny(dt), 1.0),
        ],
        Rsqrt => [
            Domain::Uniform(0.01, 100.0),
            log_pos(1.0, big(dt)),
            log_pos(tiny(dt), 1.0),
        ],
        Log1p => [
            Domain::Uniform(-0.9, 10.0),
            log_pos(1.0, big(dt)),
            near_zero,
        ],
        Expm1 => [
            Domain::Uniform(-5.0, 5.0),
            Domain::Uniform(-exp_range, exp_range),
            near_zero,
        ],
        Sin | Cos => [
            Domain::Uniform(-6.3, 6.3),
            Domain::Uniform(-100.0, 100.0),
            near_zero,
        ],
        Tanh | Gelu | Silu | Softplus | Erf => {
            [Domain::Uniform(-5.0, 5.0), log_signed(1.0, 1e4), near_zero]
        }
        Sigmoid => [
            Domain::Uniform(-6.0, 6.0),
            Domain::Uniform(-exp_range, exp_range),
            near_zero,
        ],
    }
}

fn unary(t: &mut Table) {
    for &op in UnaryOp::ALL {
        let u = Op::Unary { op };
        for &dt in unary_dtypes(op) {
            let [typ, lrg, sml] = unary_domains(op, dt);
            let n = |s: &str| format!("{dt}/{s}");
            t.add(n("rank0"), &u, vec![spec(dt, &[], &typ)]);
            t.add(n("zero-size"), &u, vec![spec(dt, &[0, 3], &typ)]);
            t.add(n("size-1"), &u, vec![spec(dt, &[1, 5, 1], &typ)]);
            t.add(
                n("transposed"),
                &u,
                vec![spec(dt, &[3, 4], &typ).view(View::Transposed)],
            );
            t.add(
                n("reversed"),
                &u,
                vec![spec(dt, &[2, 5], &typ).view(View::Reversed)],
            );
            t.add(n("large"), &u, vec![spec(dt, &[4, 6], &lrg)]);
            t.add(n("small"), &u, vec![spec(dt, &[4, 6], &sml)]);
            t.add(n("typical"), &u, vec![spec(dt, &[2, 3, 4], &typ)]);
            t.add(
                n("parallel"),
                &u,
                vec![spec(dt, &PAR, &typ).view(View::Strided)],
            );
            if dt.is_float() {
                // GELU and SiLU at -inf are `-inf * 0` by their formulas; the limit (0) and
                // NaN are both defensible, so the infinities are left out for them.
                let sp = match op {
                    UnaryOp::Gelu | UnaryOp::Silu => {
                        Domain::Cycle(vec![0.0, 1.0, -1.0, NAN, 2.5, -0.5])
                    }
                    _ => specials(),
                };
                t.add(n("special"), &u, vec![spec(dt, &[8], &sp)]);
            }
        }
    }
}

fn binary_dtypes(op: BinaryOp) -> &'static [DType] {
    match op {
        BinaryOp::And | BinaryOp::Or => &[Bool],
        BinaryOp::Div => &FLOATS,
        _ => &NUMERIC,
    }
}

/// Typical, large and small `(lhs, rhs)` domains of a binary op on a dtype.
fn binary_domains(op: BinaryOp, dt: DType) -> [(Domain, Domain); 3] {
    use BinaryOp::*;
    let same = |d: Domain| (d.clone(), d);
    if dt == Bool {
        return [
            same(Domain::Bools),
            same(Domain::Bools),
            same(Domain::Bools),
        ];
    }
    if dt.is_int() {
        return match op {
            Rem | FloorDiv => [
                (typical(dt), Domain::NonZeroInts(-9, 9)),
                (int_range(dt), Domain::NonZeroInts(-1000, 1000)),
                (Domain::Ints(-3, 3), Domain::NonZeroInts(-2, 2)),
            ],
            // Exponents stay non-negative: a negative one is an error (see bad_input).
            Pow => [
                (Domain::Ints(-5, 5), Domain::Ints(0, 5)),
                (Domain::Ints(-3, 3), Domain::Ints(0, 60)),
                (Domain::Ints(-1, 1), Domain::Ints(0, 3)),
            ],
            _ => [same(typical(dt)), same(large(dt)), same(small(dt))],
        };
    }
    match op {
        Div => [
            (typical(dt), log_signed(0.1, 10.0)),
            (large(dt), log_signed(1e-3, 1e3)),
            same(small(dt)),
        ],
        Rem | FloorDiv => [
            (Domain::Uniform(-20.0, 20.0), log_signed(0.5, 5.0)),
            (log_signed(1.0, 1e6), log_signed(1e-2, 1e2)),
            (log_signed(1e-3, 1.0), log_signed(1e-3, 1.0)),
        ],
        Pow => [
            (log_pos(0.1, 10.0), Domain::Uniform(-3.0, 3.0)),
            (log_pos(1e-4, 1e4), Domain::Uniform(-4.0, 4.0)),
            (log_pos(1e-3, 1.0), log_signed(1e-3, 1.0)),
        ],
        _ => [same(typical(dt)), same(large(dt)), same(small(dt))],
    }
}

/// The shared case list of binary elementwise ops (arithmetic and comparisons): `doms` are
/// the typical, large and small `(lhs, rhs)` domains.
fn binary_like(t: &mut Table, op: &Op, dt: DType, doms: &[(Domain, Domain); 3]) {
    let [(ta, tb), (la, lb), (sa, sb)] = doms;
    let n = |s: &str| format!("{dt}/{s}");
    let pair = |da: &[usize], db: &[usize]| vec![spec(dt, da, ta), spec(dt, db, tb)];
    t.add(n("rank0"), op, pair(&[], &[]));
    t.add(n("scalar-lhs"), op, pair(&[], &[3, 4]));
    t.add(n("broadcast"), op, pair(&[3, 1], &[1, 4]));
    t.add(n("broadcast-rank"), op, pair(&[2, 3, 4], &[4]));
    t.add(n("zero-size"), op, pair(&[0, 3], &[3]));
    t.add(
        n("transposed-reversed"),
        op,
        vec![
            spec(dt, &[3, 4], ta).view(View::Transposed),
            spec(dt, &[3, 4], tb).view(View::Reversed),
        ],
    );
    t.add(
        n("strided-stretched"),
        op,
        vec![
            spec(dt, &[4, 5], ta).view(View::Strided),
            spec(dt, &[4, 5], tb).view(View::Broadcast),
        ],
    );
    t.add(
        n("large"),
        op,
        vec![spec(dt, &[4, 6], la), spec(dt, &[4, 6], lb)],
    );
    t.add(
        n("small"),
        op,
        vec![spec(dt, &[4, 6], sa), spec(dt, &[4, 6], sb)],
    );
    t.add(n("typical"), op, pair(&[2, 3, 4], &[2, 3, 4]));
    t.add(
        n("parallel"),
        op,
        vec![
            spec(dt, &PAR, ta).view(View::Transposed),
            spec(dt, &PAR[1..], tb),
        ],
    );
    if dt.is_float() {
        // Every pair of special values.
        t.add(
            n("special"),
            op,
            vec![
                spec(dt, &[8, 1], &specials()),
                spec(dt, &[1, 8], &specials()),
            ],
        );
    }
}

fn binary(t: &mut Table) {
    for &op in BinaryOp::ALL {
        let b = Op::Binary { op };
        for &dt in binary_dtypes(op) {
            binary_like(t, &b, dt, &binary_domains(op, dt));
            if op == BinaryOp::Pow && dt.is_float() {
                // Negative bases with integral exponents are defined.
                t.add(
                    format!("{dt}/negative-base"),
                    &b,
                    vec![
                        spec(dt, &[5, 4], &Domain::Uniform(-4.0, 4.0)),
                        spec(dt, &[5, 4], &Domain::Ints(-3, 3)),
                    ],
                );
            }
            if matches!(op, BinaryOp::Maximum | BinaryOp::Minimum) && dt.is_int() {
                let ties = Domain::Ints(-2, 2);
                t.add(
                    format!("{dt}/ties"),
                    &b,
                    vec![spec(dt, &[6, 5], &ties), spec(dt, &[6, 5], &ties)],
                );
            }
        }
    }
}

fn compare(t: &mut Table) {
    for &op in CmpOp::ALL {
        let c = Op::Compare { op };
        for dt in ALL_DTYPES {
            // Small integers make ties, so `eq`, `le` and `ge` see equal elements.
            let ties = Domain::Ints(-3, 3);
            let doms = [
                (ties.clone(), ties),
                (large(dt), large(dt)),
                (small(dt), small(dt)),
            ];
            binary_like(t, &c, dt, &doms);
        }
    }
}

fn select(t: &mut Table) {
    let op = Op::Select {};
    let b = Domain::Bools;
    for dt in ALL_DTYPES {
        let d = typical(dt);
        let n = |s: &str| format!("{dt}/{s}");
        let three = |c: &[usize], a: &[usize], e: &[usize]| {
            vec![spec(Bool, c, &b), spec(dt, a, &d), spec(dt, e, &d)]
        };
        t.add(n("rank0"), &op, three(&[], &[], &[]));
        t.add(n("broadcast"), &op, three(&[3, 1], &[1, 4], &[]));
        t.add(n("broadcast-rank"), &op, three(&[4], &[2, 3, 4], &[3, 1]));
        t.add(n("zero-size"), &op, three(&[0, 3], &[3], &[0, 1]));
        t.add(
            n("views"),
            &op,
            vec![
                spec(Bool, &[3, 4], &b).view(View::Transposed),
                spec(dt, &[3, 4], &d).view(View::Reversed),
                spec(dt, &[3, 4], &d).view(View::Strided),
            ],
        );
        t.add(
            n("stretched"),
            &op,
            vec![
                spec(Bool, &[4, 5], &b).view(View::Broadcast),
                spec(dt, &[4, 5], &d).view(View::Broadcast),
                spec(dt, &[5], &d),
            ],
        );
        t.add(
            n("large"),
            &op,
            vec![
                spec(Bool, &[4, 6], &b),
                spec(dt, &[4, 6], &large(dt)),
                spec(dt, &[4, 6], &large(dt)),
            ],
        );
        t.add(n("typical"), &op, three(&[2, 3, 4], &[2, 3, 4], &[2, 3, 4]));
        t.add(
            n("parallel"),
            &op,
            vec![
                spec(Bool, &PAR, &b).view(View::Strided),
                spec(dt, &PAR, &d),
                spec(dt, &PAR[1..], &d),
            ],
        );
        if dt.is_float() {
            t.add(
                n("special"),
                &op,
                vec![
                    spec(Bool, &[8], &b),
                    spec(dt, &[8], &specials()),
                    spec(dt, &[8], &specials()),
                ],
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reductions and contractions.

/// Typical, large, small and long-run domains of a reduction. Products use magnitudes near
/// 1 so that they neither overflow nor underflow the dtype whatever the order.
fn reduce_domains(op: ReduceOp, dt: DType) -> [Domain; 4] {
    match (op, dt.is_float()) {
        (ReduceOp::Prod, true) => [
            log_signed(0.5, 2.0),
            if dt == F32 {
                log_signed(10.0, 1e6)
            } else {
                log_signed(1e10, 1e40)
            },
            if dt == F32 {
                log_signed(1e-5, 1.0)
            } else {
                log_signed(1e-40, 1.0)
            },
            log_signed(0.95, 1.05),
        ],
        (ReduceOp::Prod, false) => [
            Domain::Ints(-3, 3),
            int_range(dt),
            Domain::Ints(-1, 1),
            Domain::Ints(-1, 1),
        ],
        (ReduceOp::Sum, true) => [
            typical(dt),
            log_signed(1.0, big(dt) / 1e6),
            small(dt),
            typical(dt),
        ],
        _ => [typical(dt), large(dt), small(dt), typical(dt)],
    }
}

fn reduce(t: &mut Table) {
    for &op in ReduceOp::ALL {
        let r = |axes: &[usize], keepdims: bool| Op::Reduce {
            op,
            axes: axes.to_vec(),
            keepdims,
        };
        for dt in ALL_DTYPES {
            let [typ, lrg, sml, long] = reduce_domains(op, dt);
            let n = |s: &str| format!("{dt}/{s}");
            let one = |dims: &[usize], d: &Domain| vec![spec(dt, dims, d)];
            t.add(n("rank0"), &r(&[], false), one(&[], &typ));
            t.add(n("all-axes"), &r(&[0, 1], false), one(&[3, 4], &typ));
            t.add(n("keepdims"), &r(&[1], true), one(&[2, 3, 4], &typ));
            t.add(n("two-axes"), &r(&[0, 2], false), one(&[2, 3, 4], &typ));
            t.add(n("zero-size-kept"), &r(&[1], false), one(&[0, 3], &typ));
            // A zero-size kept axis after (or between) the reduced ones: nothing to fold.
            t.add(n("zero-size-inner"), &r(&[0], false), one(&[3, 0], &typ));
            t.add(
                n("zero-size-middle"),
                &r(&[0, 2], true),
                one(&[2, 0, 3], &typ),
            );
            if matches!(op, ReduceOp::Sum | ReduceOp::Prod) {
                // An empty sum is 0 and an empty product 1; max and min of nothing have no
                // value (see bad_input).
                t.add(n("zero-size-reduced"), &r(&[1], false), one(&[3, 0], &typ));
                t.add(n("empty-to-scalar"), &r(&[0], false), one(&[0], &typ));
            }
            t.add(n("size-1"), &r(&[0, 2], true), one(&[1, 5, 1], &typ));
            t.add(
                n("transposed"),
                &r(&[1], false),
                vec![spec(dt, &[4, 5], &typ).view(View::Transposed)],
            );
            t.add(
                n("reversed"),
                &r(&[0, 2], false),
                vec![spec(dt, &[3, 4, 5], &typ).view(View::Reversed)],
            );
            t.add(
                n("stretched"),
                &r(&[0], false),
                vec![spec(dt, &[4, 5], &typ).view(View::Broadcast)],
            );
            t.add(n("large"), &r(&[1], false), one(&[4, 6], &lrg));
            t.add(n("small"), &r(&[0], false), one(&[4, 6], &sml));
            t.add(n("typical"), &r(&[0], false), one(&[5, 6], &typ));
            t.add(
                n("parallel-inner"),
                &r(&[1], false),
                one(&[200, 200], &long),
            );
            t.add(
                n("parallel-outer"),
                &r(&[0], false),
                one(&[200, 200], &long),
            );
            if dt.is_float() {
                t.add(n("special"), &r(&[1], false), one(&[4, 6], &specials()));
            }
        }
    }
}

fn arg_reduce(t: &mut Table) {
    for &op in ArgOp::ALL {
        let a = |axis: usize, keepdims: bool| Op::ArgReduce { op, axis, keepdims };
        for dt in ALL_DTYPES {
            let typ = typical(dt);
            let n = |s: &str| format!("{dt}/{s}");
            let one = |dims: &[usize], d: &Domain| vec![spec(dt, dims, d)];
            // Rank 0 has no axis to search: rank 1 is the smallest case.
            t.add(n("rank1"), &a(0, false), one(&[1], &typ));
            t.add(n("keepdims"), &a(0, true), one(&[4], &typ));
            t.add(n("zero-size"), &a(1, false), one(&[0, 3], &typ));
            t.add(n("size-1-axis"), &a(1, false), one(&[3, 1, 4], &typ));
            // Ties: the first extreme along the axis wins.
            t.add(n("ties"), &a(1, false), one(&[5, 7], &Domain::Ints(-2, 2)));
            t.add(
                n("ties-axis0"),
                &a(0, true),
                one(&[6, 5], &Domain::Ints(-1, 1)),
            );
            t.add(
                n("transposed"),
                &a(0, false),
                vec![spec(dt, &[4, 6], &typ).view(View::Transposed)],
            );
            t.add(
                n("reversed-ties"),
                &a(1, false),
                vec![spec(dt, &[3, 4, 5], &Domain::Ints(-2, 2)).view(View::Reversed)],
            );
            t.add(n("large"), &a(1, false), one(&[4, 6], &large(dt)));
            t.add(n("small"), &a(0, false), one(&[4, 6], &small(dt)));
            t.add(n("typical"), &a(2, false), one(&[2, 3, 4], &typ));
            t.add(n("parallel"), &a(0, false), one(&[200, 200], &typ));
            if dt.is_float() {
                let infs = Domain::Cycle(vec![-INF, 1.0, INF, INF, -INF, 0.0, -INF]);
                t.add(n("infinities"), &a(1, false), one(&[3, 7], &infs));
            }
        }
    }
}

fn matmul(t: &mut Table) {
    let op = Op::MatMul {};
    for dt in NUMERIC {
        let (typ, lrg, sml) = if dt.is_float() {
            let e = if dt == F32 { 1e15 } else { 1e150 };
            (
                Domain::Uniform(-1.0, 1.0),
                log_signed(1.0, e),
                log_signed(1.0 / e, 1.0),
            )
        } else {
            (Domain::Ints(-10, 10), int_range(dt), Domain::Ints(-1, 1))
        };
        let n = |s: &str| format!("{dt}/{s}");
        let pair = |a: &[usize], b: &[usize], d: &Domain| vec![spec(dt, a, d), spec(dt, b, d)];
        // Rank 0 and 1 are not matmul operands: [1, 1] is the smallest case.
        t.add(n("1x1"), &op, pair(&[1, 1], &[1, 1], &typ));
        t.add(n("zero-k"), &op, pair(&[2, 0], &[0, 3], &typ));
        t.add(n("zero-m"), &op, pair(&[0, 4], &[4, 3], &typ));
        t.add(n("zero-batch"), &op, pair(&[0, 2, 3], &[3, 2], &typ));
        t.add(
            n("batch-broadcast"),
            &op,
            pair(&[2, 1, 3, 4], &[5, 4, 2], &typ),
        );
        t.add(n("size-1-batch"), &op, pair(&[1, 2, 3], &[4, 3, 2], &typ));
        t.add(
            n("views"),
            &op,
            vec![
                spec(dt, &[3, 4], &typ).view(View::Transposed),
                spec(dt, &[4, 5], &typ).view(View::Reversed),
            ],
        );
        t.add(
            n("stretched-batch"),
            &op,
            vec![
                spec(dt, &[4, 3, 5], &typ).view(View::Broadcast),
                spec(dt, &[4, 5, 2], &typ).view(View::Strided),
            ],
        );
        t.add(n("large"), &op, pair(&[3, 5], &[5, 4], &lrg));
        t.add(n("small"), &op, pair(&[3, 5], &[5, 4], &sml));
        t.add(n("typical"), &op, pair(&[3, 4], &[4, 5], &typ));
        t.add(n("odd-sizes"), &op, pair(&[17, 33], &[33, 9], &typ));
        t.add(n("batched"), &op, pair(&[3, 8, 16], &[3, 16, 8], &typ));
        t.add(n("long-k"), &op, pair(&[4, 300], &[300, 3], &typ));
    }
}

// ---------------------------------------------------------------------------------------
// Movement.

fn reshape(t: &mut Table) {
    let r = |dims: &[usize]| Op::Reshape {
        shape: Shape::known(dims),
    };
    for dt in ALL_DTYPES {
        let d = typical(dt);
        let n = |s: &str| format!("{dt}/{s}");
        t.add(n("rank0"), &r(&[1, 1]), vec![spec(dt, &[], &d)]);
        t.add(n("to-rank0"), &r(&[]), vec![spec(dt, &[1], &d)]);
        t.add(n("zero-size"), &r(&[3, 0]), vec![spec(dt, &[0, 3], &d)]);
        t.add(n("size-1"), &r(&[2, 1, 3]), vec![spec(dt, &[1, 6, 1], &d)]);
        t.add(
            n("transposed"),
            &r(&[12]),
            vec![spec(dt, &[3, 4], &d).view(View::Transposed)],
        );
        t.add(
            n("reversed"),
            &r(&[3, 2]),
            vec![spec(dt, &[2, 3], &d).view(View::Reversed)],
        );
        t.add(
            n("stretched"),
            &r(&[2, 6]),
            vec![spec(dt, &[4, 3], &d).view(View::Broadcast)],
        );
        t.add(n("large"), &r(&[24]), vec![spec(dt, &[4, 6], &large(dt))]);
        t.add(n("typical"), &r(&[4, 6]), vec![spec(dt, &[2, 3, 4], &d)]);
    }
}

fn transpose(t: &mut Table) {
    let p = |perm: &[usize]| Op::Transpose {
        perm: perm.to_vec(),
    };
    for dt in ALL_DTYPES {
        let d = typical(dt);
        let n = |s: &str| format!("{dt}/{s}");
        t.add(n("rank0"), &p(&[]), vec![spec(dt, &[], &d)]);
        t.add(
            n("zero-size"),
            &p(&[2, 0, 1]),
            vec![spec(dt, &[0, 3, 2], &d)],
        );
        t.add(n("size-1"), &p(&[1, 0]), vec![spec(dt, &[1, 4], &d)]);
        t.add(
            n("transposed"),
            &p(&[1, 0]),
            vec![spec(dt, &[3, 4], &d).view(View::Transposed)],
        );
        t.add(
            n("reversed"),
            &p(&[2, 1, 0]),
            vec![spec(dt, &[2, 3, 4], &d).view(View::Reversed)],
        );
        t.add(n("large"), &p(&[1, 0]), vec![spec(dt, &[3, 5], &large(dt))]);
        t.add(n("typical"), &p(&[1, 2, 0]), vec![spec(dt, &[2, 3, 4], &d)]);
        t.add(
            n("rank4"),
            &p(&[3, 1, 0, 2]),
            vec![spec(dt, &[2, 1, 3, 2], &d)],
        );
    }
}

fn broadcast(t: &mut Table) {
    let b = |dims: &[usize]| Op::Broadcast {
        shape: Shape::known(dims),
    };
    for dt in ALL_DTYPES {
        let d = typical(dt);
        let n = |s: &str| format!("{dt}/{s}");
        t.add(n("rank0"), &b(&[2, 3]), vec![spec(dt, &[], &d)]);
        t.add(n("identity-rank0"), &b(&[]), vec![spec(dt, &[], &d)]);
        t.add(n("to-zero"), &b(&[0]), vec![spec(dt, &[1], &d)]);
        t.add(n("zero-kept"), &b(&[2, 0, 3]), vec![spec(dt, &[0, 1], &d)]);
        t.add(n("size-1"), &b(&[2, 3, 4]), vec![spec(dt, &[3, 1], &d)]);
        t.add(
            n("transposed"),
            &b(&[2, 3, 4]),
            vec![spec(dt, &[3, 4], &d).view(View::Transposed)],
        );
        t.add(
            n("reversed"),
            &b(&[3, 4]),
            vec![spec(dt, &[4], &d).view(View::Reversed)],
        );
        t.add(n("large"), &b(&[4, 5]), vec![spec(dt, &[1, 5], &large(dt))]);
        t.add(
            n("typical"),
            &b(&[3, 2, 5, 4]),
            vec![spec(dt, &[2, 1, 4], &d)],
        );
    }
}

fn slice(t: &mut Table) {
    let s = |dims: &[(usize, usize, isize)]| Op::Slice {
        dims: dims
            .iter()
            .map(|&(start, len, step)| SliceDim { start, len, step })
            .collect(),
    };
    for dt in ALL_DTYPES {
        let d = typical(dt);
        let n = |name: &str| format!("{dt}/{name}");
        t.add(n("rank0"), &s(&[]), vec![spec(dt, &[], &d)]);
        t.add(n("empty"), &s(&[(0, 0, 1)]), vec![spec(dt, &[5], &d)]);
        t.add(
            n("negative-step"),
            &s(&[(5, 3, -2)]),
            vec![spec(dt, &[6], &d)],
        );
        t.add(
            n("step-2"),
            &s(&[(0, 3, 1), (1, 3, 2)]),
            vec![spec(dt, &[3, 7], &d)],
        );
        t.add(
            n("size-1"),
            &s(&[(0, 1, 1), (3, 2, -1)]),
            vec![spec(dt, &[1, 4], &d)],
        );
        t.add(
            n("transposed"),
            &s(&[(1, 2, 1), (4, 3, -2)]),
            vec![spec(dt, &[4, 5], &d).view(View::Transposed)],
        );
        t.add(
            n("reversed"),
            &s(&[(0, 2, 3), (3, 2, -1)]),
            vec![spec(dt, &[5, 4], &d).view(View::Reversed)],
        );
        t.add(
            n("large"),
            &s(&[(2, 2, 1), (0, 3, 2)]),
            vec![spec(dt, &[4, 6], &large(dt))],
        );
        t.add(
            n("typical"),
            &s(&[(1, 2, 1), (3, 4, -1), (0, 3, 2)]),
            vec![spec(dt, &[3, 4, 5], &d)],
        );
    }
}

fn concat(t: &mut Table) {
    let c = |axis: usize| Op::Concat { axis };
    for dt in ALL_DTYPES {
        let d = typical(dt);
        let n = |s: &str| format!("{dt}/{s}");
        let parts = |dims: &[&[usize]], dom: &Domain| {
            dims.iter().map(|p| spec(dt, p, dom)).collect::<Vec<Spec>>()
        };
        // Rank 0 has no axis to join along: rank 1 is the smallest case.
        t.add(n("rank1"), &c(0), parts(&[&[1], &[2]], &d));
        t.add(n("zero-part"), &c(1), parts(&[&[2, 0], &[2, 3]], &d));
        t.add(n("all-zero"), &c(0), parts(&[&[0, 3], &[0, 3]], &d));
        t.add(n("size-1"), &c(0), parts(&[&[1, 3], &[2, 3], &[1, 3]], &d));
        t.add(n("single"), &c(1), parts(&[&[2, 3]], &d));
        t.add(
            n("views"),
            &c(1),
            vec![
                spec(dt, &[3, 4], &d).view(View::Transposed),
                spec(dt, &[3, 2], &d).view(View::Reversed),
                spec(dt, &[3, 1], &d).view(View::Broadcast),
                spec(dt, &[3, 2], &d).view(View::Strided),
            ],
        );
        t.add(n("large"), &c(0), parts(&[&[2, 3], &[2, 3]], &large(dt)));
        t.add(
            n("typical"),
            &c(1),
            parts(&[&[2, 3, 4], &[2, 1, 4], &[2, 2, 4]], &d),
        );
        t.add(n("last-axis"), &c(2), parts(&[&[2, 3, 1], &[2, 3, 5]], &d));
        t.add(n("parallel"), &c(1), parts(&[&[129, 128], &[129, 129]], &d));
    }
}

fn pad(t: &mut Table) {
    let p = |pads: &[(usize, usize)], value: f64| Op::Pad {
        pads: pads.to_vec(),
        value,
    };
    for dt in ALL_DTYPES {
        let d = typical(dt);
        let n = |s: &str| format!("{dt}/{s}");
        t.add(n("rank0"), &p(&[], 3.0), vec![spec(dt, &[], &d)]);
        t.add(
            n("zero-size"),
            &p(&[(1, 1), (0, 2)], 1.5),
            vec![spec(dt, &[0, 3], &d)],
        );
        // The fill value converts like a cast: -1.7 is -1 in an integer dtype.
        t.add(
            n("size-1"),
            &p(&[(2, 0), (0, 0)], -1.7),
            vec![spec(dt, &[1, 4], &d)],
        );
        t.add(
            n("no-padding"),
            &p(&[(0, 0), (0, 0)], 9.0),
            vec![spec(dt, &[2, 3], &d)],
        );
        t.add(
            n("transposed"),
            &p(&[(1, 2), (3, 0)], 0.0),
            vec![spec(dt, &[3, 4], &d).view(View::Transposed)],
        );
        t.add(
            n("reversed"),
            &p(&[(0, 1), (1, 1), (2, 0)], 2.0),
            vec![spec(dt, &[2, 3, 2], &d).view(View::Reversed)],
        );
        t.add(
            n("large"),
            &p(&[(1, 1), (1, 1)], -2.5),
            vec![spec(dt, &[2, 3], &large(dt))],
        );
        t.add(
            n("typical"),
            &p(&[(1, 2), (2, 1)], 0.0),
            vec![spec(dt, &[2, 3], &d)],
        );
        t.add(
            n("parallel"),
            &p(&[(1, 1), (1, 1)], 0.0),
            vec![spec(dt, &[181, 181], &d)],
        );
        if dt.is_float() {
            t.add(
                n("nan-fill"),
                &p(&[(1, 0), (0, 1)], NAN),
                vec![spec(dt, &[2, 2], &d)],
            );
        }
    }
}

/// The operand shapes shared by gather and scatter_add: `(name, x dims, index spec, axis,
/// x view, index view)`.
type IndexCase = (
    &'static str,
    &'static [usize],
    &'static [usize],
    Domain,
    usize,
    View,
    View,
);

fn index_cases() -> Vec<IndexCase> {
    use View::{Contiguous as C, Reversed as R, Transposed as T};
    vec![
        ("rank0-index", &[4], &[], Domain::Cycle(vec![2.0]), 0, C, C),
        ("zero-index", &[3, 4], &[0], Domain::Ints(0, 3), 1, C, C),
        ("zero-x", &[0, 4], &[3], Domain::Ints(-4, 3), 1, C, C),
        (
            "negative",
            &[5],
            &[4],
            Domain::Cycle(vec![-1.0, -5.0, 0.0, 4.0]),
            0,
            C,
            C,
        ),
        (
            "repeated",
            &[3, 4, 2],
            &[2, 3],
            Domain::Cycle(vec![1.0, 1.0, 0.0, 3.0, 3.0, -4.0]),
            1,
            C,
            C,
        ),
        (
            "size-1",
            &[1, 3],
            &[4],
            Domain::Cycle(vec![0.0, -1.0, 0.0, 0.0]),
            0,
            C,
            C,
        ),
        ("views", &[4, 5], &[3], Domain::Ints(-4, 3), 0, T, R),
        ("typical", &[3, 5], &[2, 2], Domain::Ints(-5, 4), 1, C, C),
        (
            "parallel",
            &[200, 200],
            &[190],
            Domain::Ints(-200, 199),
            0,
            C,
            C,
        ),
    ]
}

fn gather(t: &mut Table) {
    for dt in ALL_DTYPES {
        for idt in [I32, I64] {
            for (name, xd, id, idom, axis, xv, iv) in index_cases() {
                t.add(
                    format!("{dt}/{idt}/{name}"),
                    &Op::Gather { axis },
                    vec![
                        spec(dt, xd, &typical(dt)).view(xv),
                        spec(idt, id, &idom).view(iv),
                    ],
                );
            }
            t.add(
                format!("{dt}/{idt}/large"),
                &Op::Gather { axis: 0 },
                vec![
                    spec(dt, &[6, 3], &large(dt)),
                    spec(idt, &[5], &Domain::Ints(-6, 5)),
                ],
            );
        }
    }
}

fn scatter_add(t: &mut Table) {
    for dt in NUMERIC {
        for idt in [I32, I64] {
            let mut cases = index_cases();
            cases.push((
                "large",
                &[6, 3],
                &[5],
                Domain::Ints(-6, 5),
                0,
                View::Contiguous,
                View::Contiguous,
            ));
            for (name, xd, id, idom, axis, xv, iv) in cases {
                let mut ud = xd[..axis].to_vec();
                ud.extend(id);
                ud.extend(&xd[axis + 1..]);
                let d = if name == "large" {
                    large(dt)
                } else {
                    typical(dt)
                };
                let uv = if name == "views" {
                    View::Strided
                } else {
                    View::Contiguous
                };
                t.add(
                    format!("{dt}/{idt}/{name}"),
                    &Op::ScatterAdd { axis },
                    vec![
                        spec(dt, xd, &d).view(xv),
                        spec(idt, id, &idom).view(iv),
                        spec(dt, &ud, &d).view(uv),
                    ],
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Convolution and pooling.

#[derive(Clone, Copy, PartialEq, Eq)]
enum ConvKind {
    Forward,
    BackwardInput,
    BackwardFilter,
}

fn conv_params(
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Conv2dParams {
    Conv2dParams {
        stride,
        padding,
        dilation,
        groups,
    }
}

/// A convolution configuration: `(name, x dims, w dims, params)`.
type ConvConfig = (&'static str, [usize; 4], [usize; 4], Conv2dParams);

/// One convolution case: the operand dims, parameters, values and layout.
struct ConvCase {
    name: String,
    x: [usize; 4],
    w: [usize; 4],
    p: Conv2dParams,
    dom: Domain,
    view: View,
}

/// The convolution configurations.
fn conv_configs() -> Vec<ConvConfig> {
    let d = Conv2dParams::default();
    vec![
        // Rank is fixed at 4: a 1x1x1x1 input is the smallest case.
        ("minimal", [1, 1, 1, 1], [1, 1, 1, 1], d),
        ("zero-batch", [0, 2, 4, 4], [3, 2, 3, 3], d),
        (
            "size-1-padded",
            [1, 2, 1, 1],
            [2, 2, 3, 3],
            conv_params([1, 1], [1, 1], [1, 1], 1),
        ),
        (
            "strided-padded",
            [2, 3, 7, 6],
            [4, 3, 3, 3],
            conv_params([2, 2], [1, 1], [1, 1], 1),
        ),
        (
            "dilated",
            [1, 2, 8, 8],
            [3, 2, 3, 2],
            conv_params([1, 1], [0, 1], [2, 1], 1),
        ),
        (
            "grouped",
            [2, 4, 5, 5],
            [6, 2, 3, 3],
            conv_params([1, 1], [1, 0], [1, 1], 2),
        ),
        (
            "depthwise",
            [1, 3, 5, 5],
            [3, 1, 3, 3],
            conv_params([1, 2], [1, 1], [1, 1], 3),
        ),
        // With stride 3 the last input rows are read by no window.
        (
            "uneven-stride",
            [1, 2, 8, 7],
            [2, 2, 2, 3],
            conv_params([3, 2], [0, 1], [1, 1], 1),
        ),
        (
            "typical",
            [2, 8, 10, 10],
            [16, 8, 3, 3],
            conv_params([1, 1], [1, 1], [1, 1], 1),
        ),
    ]
}

fn conv(t: &mut Table, kind: ConvKind) {
    for dt in FLOATS {
        let (typ, lrg, sml) = if dt == F32 {
            (
                Domain::Uniform(-1.0, 1.0),
                log_signed(1.0, 1e15),
                log_signed(1e-15, 1.0),
            )
        } else {
            (
                Domain::Uniform(-1.0, 1.0),
                log_signed(1.0, 1e150),
                log_signed(1e-150, 1.0),
            )
        };
        let config = |name: &str, (_, x, w, p): ConvConfig, dom: &Domain, view: View| ConvCase {
            name: name.to_string(),
            x,
            w,
            p,
            dom: dom.clone(),
            view,
        };
        let mut configs: Vec<ConvCase> = conv_configs()
            .into_iter()
            .map(|c| config(c.0, c, &typ, View::Contiguous))
            .collect();
        let (grouped, strided) = (conv_configs()[5], conv_configs()[3]);
        configs.push(config("large", grouped, &lrg, View::Contiguous));
        configs.push(config("small", grouped, &sml, View::Contiguous));
        configs.push(config("views", strided, &typ, View::Transposed));
        for ConvCase {
            name,
            x,
            w,
            p,
            dom,
            view,
        } in configs
        {
            let oh =
                crate::reference::window_out(x[2], w[2], p.stride[0], p.padding[0], p.dilation[0]);
            let ow =
                crate::reference::window_out(x[3], w[3], p.stride[1], p.padding[1], p.dilation[1]);
            let y = [x[0], w[0], oh, ow];
            let second = if view == View::Contiguous {
                View::Contiguous
            } else {
                View::Reversed
            };
            let (op, a, b) = match kind {
                ConvKind::Forward => (Op::Conv2d { params: p }, x, w),
                ConvKind::BackwardInput => (
                    Op::Conv2dBackwardInput {
                        params: p,
                        input_hw: [x[2], x[3]],
                    },
                    y,
                    w,
                ),
                ConvKind::BackwardFilter => (
                    Op::Conv2dBackwardFilter {
                        params: p,
                        kernel_hw: [w[2], w[3]],
                    },
                    x,
                    y,
                ),
            };
            t.add(
                format!("{dt}/{name}"),
                &op,
                vec![
                    spec(dt, &a, &dom).view(view),
                    spec(dt, &b, &dom).view(second),
                ],
            );
        }
    }
}

fn pool_params(window: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Pool2dParams {
    Pool2dParams {
        window,
        stride,
        padding,
    }
}

/// A pooling configuration: `(name, x dims, params)`.
type PoolConfig = (&'static str, [usize; 4], Pool2dParams);

/// The pooling configurations.
fn pool_configs() -> Vec<PoolConfig> {
    vec![
        // Rank is fixed at 4: a 1x1x1x1 input is the smallest case.
        ("minimal", [1, 1, 1, 1], pool_params([1, 1], [1, 1], [0, 0])),
        (
            "zero-batch",
            [0, 2, 4, 4],
            pool_params([2, 2], [2, 2], [0, 0]),
        ),
        (
            "zero-channels",
            [2, 0, 4, 4],
            pool_params([2, 2], [2, 2], [0, 0]),
        ),
        ("padded", [1, 2, 5, 5], pool_params([3, 3], [2, 2], [1, 1])),
        (
            "rectangular",
            [2, 1, 6, 7],
            pool_params([2, 3], [1, 2], [1, 0]),
        ),
        (
            "overlapping",
            [1, 2, 6, 6],
            pool_params([3, 3], [1, 1], [0, 0]),
        ),
        (
            "size-1-height",
            [1, 2, 1, 6],
            pool_params([1, 2], [1, 2], [0, 1]),
        ),
        ("uneven", [1, 1, 7, 9], pool_params([3, 2], [3, 2], [1, 1])),
        ("typical", [2, 3, 8, 8], pool_params([2, 2], [2, 2], [0, 0])),
    ]
}

fn pool(t: &mut Table, backward: bool) {
    for &op in PoolOp::ALL {
        let dtypes: &[DType] = match op {
            PoolOp::Max => &NUMERIC,
            PoolOp::Avg => &FLOATS,
        };
        for &dt in dtypes {
            let typ = typical(dt);
            let config = |name: &str, (_, x, p): PoolConfig, dom: &Domain, view: View| {
                (name.to_string(), x, p, dom.clone(), view)
            };
            let mut configs: Vec<_> = pool_configs()
                .into_iter()
                .map(|c| config(c.0, c, &typ, View::Contiguous))
                .collect();
            let (padded, overlapping) = (pool_configs()[3], pool_configs()[5]);
            configs.push(config("large", padded, &large(dt), View::Contiguous));
            configs.push(config("small", padded, &small(dt), View::Contiguous));
            configs.push(config("views", padded, &typ, View::Transposed));
            // Ties: max pooling picks, and its gradient goes to, the first maximum.
            configs.push(config(
                "ties",
                overlapping,
                &Domain::Ints(-1, 1),
                View::Contiguous,
            ));
            for (name, x, p, dom, view) in configs {
                let name = format!("{dt}/{name}");
                if backward {
                    let oh = crate::reference::window_out(
                        x[2],
                        p.window[0],
                        p.stride[0],
                        p.padding[0],
                        1,
                    );
                    let ow = crate::reference::window_out(
                        x[3],
                        p.window[1],
                        p.stride[1],
                        p.padding[1],
                        1,
                    );
                    let dyv = if view == View::Contiguous {
                        View::Contiguous
                    } else {
                        View::Reversed
                    };
                    t.add(
                        name,
                        &Op::Pool2dBackward { op, params: p },
                        vec![
                            spec(dt, &x, &dom).view(view),
                            spec(dt, &[x[0], x[1], oh, ow], &typ).view(dyv),
                        ],
                    );
                } else {
                    t.add(
                        name,
                        &Op::Pool2d { op, params: p },
                        vec![spec(dt, &x, &dom).view(view)],
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Casts and creation.

fn cast(t: &mut Table) {
    for from in ALL_DTYPES {
        let typ = if from.is_float() {
            // Fractions of both signs: truncation toward zero is visible.
            Domain::Uniform(-10.0, 10.0)
        } else {
            typical(from)
        };
        for to in ALL_DTYPES {
            let op = Op::Cast { dtype: to };
            let n = |s: &str| format!("{from}->{to}/{s}");
            t.add(n("rank0"), &op, vec![spec(from, &[], &typ)]);
            t.add(n("zero-size"), &op, vec![spec(from, &[0, 4], &typ)]);
            t.add(n("size-1"), &op, vec![spec(from, &[1, 3, 1], &typ)]);
            t.add(
                n("reversed"),
                &op,
                vec![spec(from, &[3, 4], &typ).view(View::Reversed)],
            );
            // Floats beyond an integer range saturate, and i64 narrows to i32 by wrapping.
            t.add(n("large"), &op, vec![spec(from, &[4, 5], &large(from))]);
            t.add(n("small"), &op, vec![spec(from, &[4, 5], &small(from))]);
            t.add(n("typical"), &op, vec![spec(from, &[2, 3, 4], &typ)]);
            if to == F32 || to == I32 {
                t.add(
                    n("parallel"),
                    &op,
                    vec![spec(from, &PAR, &typ).view(View::Transposed)],
                );
            }
            if from.is_float() {
                // NaN becomes 0 in an integer, true in a bool; infinities saturate.
                let sp = Domain::Cycle(vec![
                    NAN, INF, -INF, -0.5, -1.5, 2.7, 3e9, -1e20, 0.0, 1e-40,
                ]);
                t.add(n("special"), &op, vec![spec(from, &[10], &sp)]);
            }
        }
    }
}

fn random(t: &mut Table) {
    for &op in RandomOp::ALL {
        for dt in FLOATS {
            let mut add = |name: &str, dims: &[usize], seed: i64, offset: i64| {
                let key = Operand::exact(I64, &[2], &[seed as f64, offset as f64]);
                t.add_operands(
                    format!("{dt}/{name}"),
                    &Op::Random {
                        op,
                        shape: Shape::known(dims),
                        dtype: dt,
                    },
                    vec![key],
                );
            };
            add("rank0", &[], 1, 0);
            add("zero-size", &[2, 0, 3], 2, 0);
            add("size-1", &[7, 1, 3], 3, 5);
            add("odd-offset", &[5], 4, 1);
            add("large-seed", &[3, 4], i64::MAX, 1 << 40);
            add("negative-seed", &[3, 4], -1, 0);
            add("typical", &[1000], 42, 0);
            add("parallel", &PAR, 7, 3);
        }
    }
}

fn iota(t: &mut Table) {
    for dt in NUMERIC {
        let mut add = |name: &str, dims: &[usize], axis: usize| {
            t.add_operands(
                format!("{dt}/{name}"),
                &Op::Iota {
                    shape: Shape::known(dims),
                    axis,
                    dtype: dt,
                },
                vec![],
            );
        };
        // Rank 0 has no axis to count along: rank 1 is the smallest case.
        add("rank1", &[1], 0);
        add("zero-size", &[0, 3], 1);
        add("zero-other", &[3, 0], 0);
        add("size-1", &[3, 1], 1);
        add("axis0", &[2, 3, 4], 0);
        add("axis1", &[2, 3, 4], 1);
        add("axis2", &[2, 3, 4], 2);
        add("large", &[70000], 0);
    }
}

fn full(t: &mut Table) {
    for dt in ALL_DTYPES {
        let mut add = |name: &str, dims: &[usize], value: f64| {
            t.add_operands(
                format!("{dt}/{name}"),
                &Op::Full {
                    shape: Shape::known(dims),
                    dtype: dt,
                    value,
                },
                vec![],
            );
        };
        add("rank0", &[], 2.5);
        add("zero-size", &[0, 3], 1.0);
        add("size-1", &[1, 1], -2.5);
        add("typical", &[2, 3], 7.25);
        // Values convert like a cast: beyond an integer range they saturate, NaN is 0 in an
        // integer and true in a bool, beyond f32's range they become infinite.
        add("large", &[2, 2], 1e10);
        add("huge", &[3], 1e300);
        add("small", &[3], 1e-300);
        add("nan", &[2], NAN);
        add("parallel", &PAR, -1.0);
    }
}

/// `print` and `stop_gradient`: the operand unchanged, whatever its dtype and layout.
fn identity(t: &mut Table, op: &Op) {
    let op = op.clone();
    for dt in ALL_DTYPES {
        let d = typical(dt);
        let n = |s: &str| format!("{dt}/{s}");
        t.add(n("rank0"), &op, vec![spec(dt, &[], &d)]);
        t.add(n("zero-size"), &op, vec![spec(dt, &[0, 2], &d)]);
        t.add(n("size-1"), &op, vec![spec(dt, &[1, 3, 1], &d)]);
        t.add(
            n("transposed"),
            &op,
            vec![spec(dt, &[3, 4], &d).view(View::Transposed)],
        );
        t.add(
            n("reversed"),
            &op,
            vec![spec(dt, &[3, 4], &d).view(View::Reversed)],
        );
        t.add(
            n("stretched"),
            &op,
            vec![spec(dt, &[3, 4], &d).view(View::Broadcast)],
        );
        t.add(n("large"), &op, vec![spec(dt, &[4, 5], &large(dt))]);
        t.add(n("typical"), &op, vec![spec(dt, &[2, 3, 4], &d)]);
    }
}
