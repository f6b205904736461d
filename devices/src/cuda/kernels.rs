//! CUDA C source of every kernel, generated per kernel family and dtype.
//!
//! A *module* is one family (unary, binary, reduce, ...) for one dtype: its source is made
//! here as text, compiled once by NVRTC when a kernel of it is first needed, loaded into the
//! device's context, and kept (see `CudaDevice::function`). Grouping a family's kernels in
//! one module keeps the number of NVRTC runs small (a compile costs tens of milliseconds),
//! and a module that fails to compile names its family and dtype with NVRTC's log.
//!
//! Every kernel is a 1-D grid-stride loop over its output with 64-bit index arithmetic.
//! Strided operands are read through [`PRELUDE`]'s `Geo`: up to [`MAX_RANK`] dims and the
//! strides of up to three operands, so views (transposes, broadcasts, slices) are read in
//! place. The maths follows the CPU kernels (`cpu::elementwise`, `cpu::math`): floored
//! integer remainder and division, wrapping integer arithmetic (done on the unsigned type,
//! where C++ defines it), NaN-propagating maximum and minimum, saturating float-to-integer
//! casts.

use ir::{BinaryOp, CmpOp, DType, UnaryKind, UnaryOp};

/// The most dims a strided operand may have after adjacent dims are merged.
pub(crate) const MAX_RANK: usize = 8;

/// Threads per block of every launch (a power of two: the reductions halve it).
pub(crate) const BLOCK: u32 = 256;

/// A group of kernels compiled together for one dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Family {
    /// `unary_<op>` for the unary ops the dtype admits.
    Unary,
    /// `binary_<op>` and `compare_<op>`.
    Binary,
    /// `cast_to_<dtype>` from this dtype to every dtype.
    Cast,
    /// `reduce_<op>` (numeric dtypes) and `argmax`/`argmin` (every dtype).
    Reduce,
    /// `copy`, `fill`, `iota`, `select`, `gather`, `scatter_add`, `matmul_naive`.
    Movement,
    /// `random_uniform`, `random_normal` (float dtypes), compiled without contracted
    /// multiply-adds so the arithmetic is exactly the CPU's.
    Random,
    /// `conv2d`, `conv2d_backward_input`, `conv2d_backward_filter` (float dtypes).
    Conv,
    /// `pool_max`, `pool_avg`, `pool_max_backward`, `pool_avg_backward`.
    Pool,
}

impl Family {
    /// Every family.
    pub(crate) const ALL: [Family; 8] = [
        Family::Unary,
        Family::Binary,
        Family::Cast,
        Family::Reduce,
        Family::Movement,
        Family::Random,
        Family::Conv,
        Family::Pool,
    ];

    /// The family's name in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Unary => "unary",
            Family::Binary => "binary",
            Family::Cast => "cast",
            Family::Reduce => "reduce",
            Family::Movement => "movement",
            Family::Random => "random",
            Family::Conv => "conv",
            Family::Pool => "pool",
        }
    }

    /// Whether the family has kernels for `dt` (a module is only built where it does).
    pub(crate) fn has(self, dt: DType) -> bool {
        match self {
            Family::Unary | Family::Binary | Family::Cast | Family::Reduce | Family::Movement => {
                is_supported(dt)
            }
            Family::Random | Family::Conv => matches!(dt, DType::F32 | DType::F64),
            Family::Pool => matches!(dt, DType::F32 | DType::F64 | DType::I32 | DType::I64),
        }
    }
}

/// The dtypes the CUDA device computes on.
pub(crate) fn is_supported(dt: DType) -> bool {
    matches!(
        dt,
        DType::F32 | DType::F64 | DType::I32 | DType::I64 | DType::Bool
    )
}

/// The C type of a dtype's elements (`bool` is one byte, `unsigned char`).
pub(crate) fn ctype(dt: DType) -> &'static str {
    match dt {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::I32 => "int",
        DType::I64 => "long long",
        DType::Bool | DType::BF16 | DType::F16 => "unsigned char",
    }
}

/// The unsigned type of the same width, for wrapping arithmetic.
pub(crate) fn utype(dt: DType) -> &'static str {
    match dt {
        DType::I64 | DType::F64 => "unsigned long long",
        DType::I32 | DType::F32 => "unsigned int",
        DType::Bool | DType::BF16 | DType::F16 => "unsigned char",
    }
}

/// The suffix of the C math functions for the dtype (`expf` for f32).
fn fsuf(dt: DType) -> &'static str {
    if dt == DType::F32 { "f" } else { "" }
}

/// Declarations every module starts with: the strided geometry and the loop.
pub(crate) const PRELUDE: &str = r#"
#define MAXR 8
struct Geo {
    unsigned long long n;
    int rank;
    int pad;
    long long shape[MAXR];
    long long st[3][MAXR];
    long long off[3];
};
/* The buffer positions of element `i` (C order over `shape`) in the first `k` operands. */
__device__ __forceinline__ void locate(const Geo& g, unsigned long long i, long long* o, int k) {
    /* Most geometries merge to one dim (contiguous operands, scalars): no division. */
    if (g.rank <= 1) {
        for (int a = 0; a < k; ++a) o[a] = g.off[a] + (long long)i * g.st[a][0];
        return;
    }
    for (int a = 0; a < k; ++a) o[a] = g.off[a];
    for (int d = g.rank - 1; d >= 0; --d) {
        unsigned long long s = (unsigned long long)g.shape[d];
        unsigned long long q = i / s;
        long long r = (long long)(i - q * s);
        i = q;
        for (int a = 0; a < k; ++a) o[a] += r * g.st[a][d];
    }
}
#define LOOP(n) for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; \
    i < (unsigned long long)(n); i += (unsigned long long)gridDim.x * blockDim.x)
#define NAN_F __int_as_float(0x7fc00000)
#define NAN_D __longlong_as_double(0x7ff8000000000000LL)
"#;

/// The whole source of one module.
pub(crate) fn source(family: Family, dt: DType) -> String {
    let mut s = String::from(PRELUDE);
    s.push_str(&format!(
        "typedef {} T;\ntypedef {} U;\n",
        ctype(dt),
        utype(dt)
    ));
    match family {
        Family::Unary => unary_module(&mut s, dt),
        Family::Binary => binary_module(&mut s, dt),
        Family::Cast => cast_module(&mut s, dt),
        Family::Reduce => reduce_module(&mut s, dt),
        Family::Movement => movement_module(&mut s, dt),
        Family::Random => s.push_str(&random_module(dt)),
        Family::Conv => s.push_str(CONV),
        Family::Pool => pool_module(&mut s, dt),
    }
    s
}

/// Whether `unary_<op>` exists for `dt` (what `ir::infer` admits).
pub(crate) fn unary_admits(op: UnaryOp, dt: DType) -> bool {
    match op.kind() {
        UnaryKind::Numeric | UnaryKind::Predicate => dt.is_numeric() && is_supported(dt),
        UnaryKind::Float => matches!(dt, DType::F32 | DType::F64),
        UnaryKind::Logical => dt == DType::Bool,
    }
}

/// The C expression of unary `op` on `v` (of `dt`, whose C type is `T` in scope).
pub(crate) fn unary_expr(op: UnaryOp, dt: DType) -> String {
    let f = fsuf(dt);
    let float = dt.is_float();
    let wrap_neg = "(T)((U)0 - (U)v)";
    match op {
        UnaryOp::Neg if float => "-v".into(),
        UnaryOp::Neg => wrap_neg.into(),
        UnaryOp::Abs if float => format!("fabs{f}(v)"),
        UnaryOp::Abs => format!("v < 0 ? {wrap_neg} : v"),
        // `v + 0` turns -0 into +0 and keeps NaN, as the CPU does.
        UnaryOp::Sign if float => "v > 0 ? (T)1 : (v < 0 ? (T)-1 : v + (T)0)".into(),
        UnaryOp::Sign => "(T)(v > 0 ? 1 : (v < 0 ? -1 : 0))".into(),
        UnaryOp::Floor if float => format!("floor{f}(v)"),
        UnaryOp::Ceil if float => format!("ceil{f}(v)"),
        // `rint` rounds ties to even in the default rounding mode, NumPy's `round`.
        UnaryOp::Round if float => format!("rint{f}(v)"),
        UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => "v".into(),
        UnaryOp::Relu if float => "(v < 0 ? (T)0 : v) + (T)0".into(),
        UnaryOp::Relu => "v < 0 ? (T)0 : v".into(),
        UnaryOp::Exp => format!("exp{f}(v)"),
        UnaryOp::Log => format!("log{f}(v)"),
        UnaryOp::Log1p => format!("log1p{f}(v)"),
        UnaryOp::Expm1 => format!("expm1{f}(v)"),
        UnaryOp::Sqrt => format!("sqrt{f}(v)"),
        UnaryOp::Rsqrt => format!("(T)1 / sqrt{f}(v)"),
        UnaryOp::Sin => format!("sin{f}(v)"),
        UnaryOp::Cos => format!("cos{f}(v)"),
        UnaryOp::Tanh => format!("tanh{f}(v)"),
        UnaryOp::Erf => format!("erf{f}(v)"),
        UnaryOp::Sigmoid => "ms_sigmoid(v)".into(),
        UnaryOp::Gelu => "ms_gelu(v)".into(),
        UnaryOp::Silu => "ms_silu(v)".into(),
        UnaryOp::Softplus => "ms_softplus(v)".into(),
        UnaryOp::Not => "(unsigned char)(v ? 0 : 1)".into(),
        UnaryOp::IsNan if float => "(unsigned char)(isnan(v) ? 1 : 0)".into(),
        UnaryOp::IsNan => "(unsigned char)0".into(),
        UnaryOp::IsFinite if float => "(unsigned char)(isfinite(v) ? 1 : 0)".into(),
        UnaryOp::IsFinite => "(unsigned char)1".into(),
    }
}

/// The helper functions the unary expressions of a float `dt` call (`ms_sigmoid`, ...), for
/// a scope where `T` is the dtype's C type; empty for other dtypes.
pub(crate) fn unary_helpers(dt: DType) -> String {
    let mut s = String::new();
    if dt.is_float() {
        let f = fsuf(dt);
        // The clamp keeps silu(-inf) at the limit -0 (as the CPU), not inf * 0 = NaN.
        let lo = if dt == DType::F32 { "-150" } else { "-1500" };
        s.push_str(&format!(
            r#"
__device__ __forceinline__ T ms_sigmoid(T x) {{
    T e = exp{f}(-fabs{f}(x));
    T num = x < 0 ? e : (T)1;
    return num / ((T)1 + e);
}}
__device__ __forceinline__ T ms_silu(T x) {{
    T e = exp{f}(-fabs{f}(x));
    T xm = x < (T){lo} ? (T){lo} : x;
    T num = x < 0 ? xm * e : x;
    return num / ((T)1 + e);
}}
__device__ __forceinline__ T ms_softplus(T x) {{
    return (x > 0 ? x : (T)0) + log1p{f}(exp{f}(-fabs{f}(x)));
}}
__device__ __forceinline__ T ms_gelu(T x) {{
    return (T)0.5 * x * erfc{f}(-x * (T)0.70710678118654752440);
}}
"#
        ));
    }
    s
}

fn unary_module(s: &mut String, dt: DType) {
    s.push_str(&unary_helpers(dt));
    for &op in UnaryOp::ALL {
        if !unary_admits(op, dt) {
            continue;
        }
        let out = match op.kind() {
            UnaryKind::Predicate | UnaryKind::Logical => "unsigned char",
            UnaryKind::Numeric | UnaryKind::Float => "T",
        };
        s.push_str(&format!(
            "extern \"C\" __global__ void unary_{name}(const T* x, {out}* y, Geo g) {{\n    \
             LOOP(g.n) {{ long long o[1]; locate(g, i, o, 1); T v = x[o[0]]; y[i] = {e}; }}\n}}\n",
            name = op.name(),
            e = unary_expr(op, dt),
        ));
    }
}

/// Whether `binary_<op>` exists for `dt`.
pub(crate) fn binary_admits(op: BinaryOp, dt: DType) -> bool {
    match op {
        BinaryOp::And | BinaryOp::Or => dt == DType::Bool,
        BinaryOp::Div => matches!(dt, DType::F32 | DType::F64),
        _ => dt.is_numeric() && is_supported(dt),
    }
}

/// The helper functions the binary expressions of `dt` call (`ms_rem`, ...), for a scope
/// where `T` and `U` are the dtype's C type and its unsigned twin.
pub(crate) fn binary_helpers(dt: DType) -> String {
    let mut s = String::new();
    let f = fsuf(dt);
    let nan = if dt == DType::F32 { "NAN_F" } else { "NAN_D" };
    if dt.is_float() {
        s.push_str(&format!(
            r#"
__device__ __forceinline__ T ms_rem(T a, T b) {{
    T r = fmod{f}(a, b);
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}}
__device__ __forceinline__ T ms_floor_div(T a, T b) {{
    T r = fmod{f}(a, b);
    T q = (a - r) / b;
    if (r != 0 && ((r < 0) != (b < 0))) return round{f}(q - (T)1);
    if (b == 0) return a / b;
    return round{f}(q);
}}
__device__ __forceinline__ T ms_max(T a, T b) {{ return (a != a || b != b) ? {nan} : (a >= b ? a : b); }}
__device__ __forceinline__ T ms_min(T a, T b) {{ return (a != a || b != b) ? {nan} : (a <= b ? a : b); }}
"#
        ));
    } else if dt.is_int() {
        // Exponents are capped at u32::MAX as on the CPU; beyond it only |a| <= 1 matters.
        let umax = "0xffffffffULL";
        s.push_str(&format!(
            r#"
__device__ __forceinline__ T ms_rem(T a, T b) {{
    if (b == 0 || b == (T)-1) return 0;
    T r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? (T)(r + b) : r;
}}
__device__ __forceinline__ T ms_floor_div(T a, T b) {{
    if (b == 0) return 0;
    if (b == (T)-1) return (T)((U)0 - (U)a);
    T q = a / b;
    T r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? (T)(q - 1) : q;
}}
__device__ __forceinline__ T ms_pow(T a, T b) {{
    if (b < 0) return 0;
    unsigned long long e = (unsigned long long)b;
    if (e > {umax}) e = {umax};
    U base = (U)a, acc = 1;
    while (e) {{ if (e & 1ULL) acc *= base; base *= base; e >>= 1; }}
    return (T)acc;
}}
__device__ __forceinline__ T ms_max(T a, T b) {{ return a >= b ? a : b; }}
__device__ __forceinline__ T ms_min(T a, T b) {{ return a <= b ? a : b; }}
"#
        ));
    }
    s
}

/// The C expression of binary `op` on `p` and `q` (of `dt`; `T` and `U` in scope).
pub(crate) fn binary_expr(op: BinaryOp, dt: DType) -> String {
    let f = fsuf(dt);
    let float = dt.is_float();
    match op {
        BinaryOp::Add if float => "p + q".to_string(),
        BinaryOp::Sub if float => "p - q".to_string(),
        BinaryOp::Mul if float => "p * q".to_string(),
        BinaryOp::Add => "(T)((U)p + (U)q)".to_string(),
        BinaryOp::Sub => "(T)((U)p - (U)q)".to_string(),
        BinaryOp::Mul => "(T)((U)p * (U)q)".to_string(),
        BinaryOp::Div => "p / q".to_string(),
        BinaryOp::Rem => "ms_rem(p, q)".to_string(),
        BinaryOp::FloorDiv => "ms_floor_div(p, q)".to_string(),
        BinaryOp::Pow if float => format!("pow{f}(p, q)"),
        BinaryOp::Pow => "ms_pow(p, q)".to_string(),
        BinaryOp::Maximum => "ms_max(p, q)".to_string(),
        BinaryOp::Minimum => "ms_min(p, q)".to_string(),
        BinaryOp::And => "(unsigned char)((p && q) ? 1 : 0)".to_string(),
        BinaryOp::Or => "(unsigned char)((p || q) ? 1 : 0)".to_string(),
    }
}

/// The C operator of comparison `op`.
pub(crate) fn compare_symbol(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}

fn binary_module(s: &mut String, dt: DType) {
    s.push_str(&binary_helpers(dt));
    for &op in BinaryOp::ALL {
        if !binary_admits(op, dt) {
            continue;
        }
        let e = binary_expr(op, dt);
        s.push_str(&format!(
            "extern \"C\" __global__ void binary_{name}(const T* a, const T* b, T* y, Geo g) {{\n    \
             LOOP(g.n) {{ long long o[2]; locate(g, i, o, 2); T p = a[o[0]]; T q = b[o[1]]; y[i] = {e}; }}\n}}\n",
            name = op.name(),
        ));
    }
    for &op in CmpOp::ALL {
        let c = compare_symbol(op);
        s.push_str(&format!(
            "extern \"C\" __global__ void compare_{name}(const T* a, const T* b, unsigned char* y, Geo g) {{\n    \
             LOOP(g.n) {{ long long o[2]; locate(g, i, o, 2); y[i] = (unsigned char)((a[o[0]] {c} b[o[1]]) ? 1 : 0); }}\n}}\n",
            name = op.name(),
        ));
    }
}

/// The expression converting `v` (of `from`; `d` is it as a `double`) to `to`, with the
/// CPU's `as` semantics.
pub(crate) fn cast_expr(from: DType, to: DType) -> String {
    let ct = ctype(to);
    if to == DType::Bool {
        return "(unsigned char)(v != 0 ? 1 : 0)".into();
    }
    if from == DType::Bool {
        return format!("({ct})(v ? 1 : 0)");
    }
    match (from.is_float(), to) {
        // Saturating, NaN to zero, truncating toward zero: Rust's `as`.
        (true, DType::I32) => "(d != d ? 0 : (d <= -2147483648.0 ? (int)(-2147483647 - 1) : \
                               (d >= 2147483647.0 ? 2147483647 : (int)d)))"
            .into(),
        (true, DType::I64) => "(d != d ? 0LL : (d <= -9223372036854775808.0 ? \
                               (long long)(-9223372036854775807LL - 1) : \
                               (d >= 9223372036854775807.0 ? 9223372036854775807LL : (long long)d)))"
            .into(),
        // Integers narrow by wrapping.
        (false, DType::I32) => "(int)(unsigned int)(unsigned long long)v".into(),
        _ => format!("({ct})v"),
    }
}

fn cast_module(s: &mut String, from: DType) {
    for to in [DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool] {
        s.push_str(&format!(
            "extern \"C\" __global__ void cast_to_{name}(const T* x, {ct}* y, Geo g) {{\n    \
             LOOP(g.n) {{ long long o[1]; locate(g, i, o, 1); T v = x[o[0]]; double d = (double)v; (void)d; y[i] = {e}; }}\n}}\n",
            name = to.name(),
            ct = ctype(to),
            e = cast_expr(from, to),
        ));
    }
}

fn reduce_module(s: &mut String, dt: DType) {
    let float = dt.is_float();
    let nan = if dt == DType::F32 { "NAN_F" } else { "NAN_D" };
    let (lowest, highest) = match dt {
        DType::F32 => (
            "(-__int_as_float(0x7f800000))",
            "__int_as_float(0x7f800000)",
        ),
        DType::F64 => (
            "(-__longlong_as_double(0x7ff0000000000000LL))",
            "__longlong_as_double(0x7ff0000000000000LL)",
        ),
        DType::I32 => ("(-2147483647 - 1)", "2147483647"),
        _ => ("(-9223372036854775807LL - 1)", "9223372036854775807LL"),
    };
    if dt.is_numeric() {
        let ops: [(&str, String, String); 4] = [
            (
                "sum",
                "(T)0".into(),
                if float {
                    "a + b".into()
                } else {
                    "(T)((U)a + (U)b)".into()
                },
            ),
            (
                "prod",
                "(T)1".into(),
                if float {
                    "a * b".into()
                } else {
                    "(T)((U)a * (U)b)".into()
                },
            ),
            (
                "max",
                lowest.into(),
                if float {
                    format!("(a != a || b != b) ? {nan} : (a >= b ? a : b)")
                } else {
                    "a >= b ? a : b".into()
                },
            ),
            (
                "min",
                highest.into(),
                if float {
                    format!("(a != a || b != b) ? {nan} : (a <= b ? a : b)")
                } else {
                    "a <= b ? a : b".into()
                },
            ),
        ];
        for (name, ident, comb) in ops {
            s.push_str(&format!(
                r#"
__device__ __forceinline__ T comb_{name}(T a, T b) {{ return {comb}; }}
/* One block per output element (grid-stride over outputs); the block's threads fold the
   reduced elements and combine their partials in shared memory. */
extern "C" __global__ void reduce_{name}(const T* x, T* y, Geo kg, Geo rg) {{
    __shared__ T sh[{BLOCK}];
    for (unsigned long long o = blockIdx.x; o < kg.n; o += gridDim.x) {{
        long long base[1];
        locate(kg, o, base, 1);
        T acc = {ident};
        for (unsigned long long j = threadIdx.x; j < rg.n; j += blockDim.x) {{
            long long r[1];
            locate(rg, j, r, 1);
            acc = comb_{name}(acc, x[base[0] + r[0]]);
        }}
        sh[threadIdx.x] = acc;
        __syncthreads();
        for (unsigned int w = blockDim.x / 2; w > 0; w >>= 1) {{
            if (threadIdx.x < w) sh[threadIdx.x] = comb_{name}(sh[threadIdx.x], sh[threadIdx.x + w]);
            __syncthreads();
        }}
        if (threadIdx.x == 0) y[o] = sh[0];
        __syncthreads();
    }}
}}
"#
            ));
        }
    }
    let isnan = if float { "(v != v)" } else { "false" };
    for (name, cmp) in [("argmax", ">"), ("argmin", "<")] {
        s.push_str(&format!(
            r#"
/* The first extreme along the axis; the first NaN wins (NumPy). */
extern "C" __global__ void {name}(const T* x, long long* y, Geo kg, long long st, unsigned long long len) {{
    LOOP(kg.n) {{
        long long b[1];
        locate(kg, i, b, 1);
        long long best = 0;
        if (len > 0) {{
            T bv = x[b[0]];
            T v = bv;
            if (!{isnan}) {{
                for (unsigned long long j = 1; j < len; ++j) {{
                    v = x[b[0] + (long long)j * st];
                    if ({isnan}) {{ best = (long long)j; break; }}
                    if (v {cmp} bv) {{ best = (long long)j; bv = v; }}
                }}
            }}
        }}
        y[i] = best;
    }}
}}
"#
        ));
    }
}

fn movement_module(s: &mut String, dt: DType) {
    s.push_str(
        r#"
/* y[dst(i)] = x[src(i)]: operand 0 of the geometry is the source, 1 the destination. */
extern "C" __global__ void copy(const T* x, T* y, Geo g) {
    LOOP(g.n) { long long o[2]; locate(g, i, o, 2); y[o[1]] = x[o[0]]; }
}
extern "C" __global__ void fill(T* y, unsigned long long n, T v) {
    LOOP(n) { y[i] = v; }
}
extern "C" __global__ void iota(T* y, unsigned long long n, unsigned long long inner, unsigned long long len) {
    LOOP(n) { y[i] = (T)((i / inner) % len); }
}
extern "C" __global__ void select(const unsigned char* c, const T* a, const T* b, T* y, Geo g) {
    LOOP(g.n) { long long o[3]; locate(g, i, o, 3); y[i] = c[o[0]] ? a[o[1]] : b[o[2]]; }
}
/* NumPy's take on a contiguous x: y[o, k, r] = x[o, ids[k], r]. */
extern "C" __global__ void gather(const T* x, const long long* ids, T* y, unsigned long long outer,
                                  unsigned long long size, unsigned long long nidx, unsigned long long inner) {
    LOOP(outer * nidx * inner) {
        unsigned long long r = i % inner, t = i / inner, k = t % nidx, o = t / nidx;
        y[i] = x[(o * size + (unsigned long long)ids[k]) * inner + r];
    }
}
"#,
    );
    let atomic = match dt {
        DType::F32 | DType::F64 | DType::I32 => Some("atomicAdd(p, v)"),
        DType::I64 => Some("atomicAdd((unsigned long long*)p, (unsigned long long)v)"),
        _ => None,
    };
    if let Some(atomic) = atomic {
        let mul = if dt.is_float() {
            "acc += p[q] * r[w]"
        } else {
            "acc = (T)((U)acc + (U)p[q] * (U)r[w])"
        };
        let mul = mul
            .replace("p[q]", "a[(bi * m + row) * k + kk]")
            .replace("r[w]", "b[(bi * k + kk) * n + col]");
        s.push_str(&format!(
            r#"
__device__ __forceinline__ void ms_atomic_add(T* p, T v) {{ {atomic}; }}
/* y (a copy of x) gets each update added at its index; repeated indices accumulate. */
extern "C" __global__ void scatter_add(T* y, const long long* ids, const T* u, unsigned long long outer,
                                       unsigned long long size, unsigned long long nidx, unsigned long long inner) {{
    LOOP(outer * nidx * inner) {{
        unsigned long long r = i % inner, t = i / inner, k = t % nidx, o = t / nidx;
        ms_atomic_add(&y[(o * size + (unsigned long long)ids[k]) * inner + r], u[i]);
    }}
}}
/* A plain batched product of contiguous [batch, m, k] and [batch, k, n] (integers). */
extern "C" __global__ void matmul_naive(const T* a, const T* b, T* y, unsigned long long batch,
                                        unsigned long long m, unsigned long long n, unsigned long long k) {{
    LOOP(batch * m * n) {{
        unsigned long long col = i % n, t = i / n, row = t % m, bi = t / m;
        T acc = 0;
        for (unsigned long long kk = 0; kk < k; ++kk) {{ {mul}; }}
        y[i] = acc;
    }}
}}
"#
        ));
    }
}

/// Philox-4x32-10 and the per-element mapping of `cpu::rng`, in C.
fn random_module(dt: DType) -> String {
    let body = match dt {
        DType::F32 => {
            r#"
extern "C" __global__ void random_uniform(float* y, unsigned long long n, unsigned long long seed, unsigned long long offset) {
    LOOP(n) {
        unsigned long long g = offset + i;
        unsigned int w[4];
        ms_block(seed, g / 4ULL, w);
        double u = ms_unit24(w[g % 4ULL]);
        float v = (float)u;
        if ((double)v >= 1.0) v = (float)(1.0 - 5.9604644775390625e-08);
        y[i] = v;
    }
}
extern "C" __global__ void random_normal(float* y, unsigned long long n, unsigned long long seed, unsigned long long offset) {
    LOOP(n) {
        unsigned long long g = offset + i;
        unsigned int w[4];
        ms_block(seed, g / 2ULL, w);
        unsigned int lane = (unsigned int)(g % 2ULL);
        y[i] = (float)ms_box_muller(1.0 - ms_unit24(w[2 * lane]), ms_unit24(w[2 * lane + 1]));
    }
}
"#
        }
        _ => {
            r#"
extern "C" __global__ void random_uniform(double* y, unsigned long long n, unsigned long long seed, unsigned long long offset) {
    LOOP(n) {
        unsigned long long g = offset + i;
        unsigned int w[4];
        ms_block(seed, g / 2ULL, w);
        unsigned int lane = (unsigned int)(g % 2ULL);
        double v = ms_unit53(w[2 * lane], w[2 * lane + 1]);
        if (v >= 1.0) v = 1.0 - 5.9604644775390625e-08;
        y[i] = v;
    }
}
extern "C" __global__ void random_normal(double* y, unsigned long long n, unsigned long long seed, unsigned long long offset) {
    LOOP(n) {
        unsigned long long g = offset + i;
        unsigned int w[4];
        ms_block(seed, g, w);
        y[i] = ms_box_muller(1.0 - ms_unit53(w[0], w[1]), ms_unit53(w[2], w[3]));
    }
}
"#
        }
    };
    format!("{PHILOX}{body}")
}

const PHILOX: &str = r#"
__device__ __forceinline__ void ms_block(unsigned long long seed, unsigned long long b, unsigned int* out) {
    unsigned int c0 = (unsigned int)b, c1 = (unsigned int)(b >> 32), c2 = 0, c3 = 0;
    unsigned int k0 = (unsigned int)seed, k1 = (unsigned int)(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        unsigned long long p0 = (unsigned long long)0xD2511F53u * (unsigned long long)c0;
        unsigned long long p1 = (unsigned long long)0xCD9E8D57u * (unsigned long long)c2;
        unsigned int hi0 = (unsigned int)(p0 >> 32), lo0 = (unsigned int)p0;
        unsigned int hi1 = (unsigned int)(p1 >> 32), lo1 = (unsigned int)p1;
        unsigned int n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        if (round < 9) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}
__device__ __forceinline__ double ms_unit24(unsigned int w) {
    return (double)(w >> 8) * (1.0 / 16777216.0);
}
__device__ __forceinline__ double ms_unit53(unsigned int hi, unsigned int lo) {
    return (double)((((unsigned long long)hi) << 21) | (unsigned long long)(lo >> 11)) * (1.0 / 9007199254740992.0);
}
__device__ __forceinline__ double ms_box_muller(double u1, double u2) {
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
"#;

/// Direct convolution kernels (one thread per output element, accumulating in `T`), and the
/// column-matrix kernels of the GEMM path (`conv.rs`).
const CONV: &str = r#"
struct ConvP {
    long long n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups, cg, og;
};
extern "C" __global__ void conv2d(const T* x, const T* wt, T* y, ConvP p) {
    LOOP(p.n * p.o * p.oh * p.ow) {
        long long ox = (long long)(i % p.ow), t = (long long)(i / p.ow);
        long long oy = t % p.oh; t /= p.oh;
        long long oc = t % p.o; long long n = t / p.o;
        long long g = oc / p.og;
        T acc = 0;
        for (long long c = 0; c < p.cg; ++c) {
            long long ic = g * p.cg + c;
            for (long long a = 0; a < p.kh; ++a) {
                long long iy = oy * p.sh - p.ph + a * p.dh;
                if (iy < 0 || iy >= p.h) continue;
                for (long long b = 0; b < p.kw; ++b) {
                    long long ix = ox * p.sw - p.pw + b * p.dw;
                    if (ix < 0 || ix >= p.w) continue;
                    acc += x[((n * p.c + ic) * p.h + iy) * p.w + ix] * wt[((oc * p.cg + c) * p.kh + a) * p.kw + b];
                }
            }
        }
        y[i] = acc;
    }
}
/* dx[n, ic, iy, ix] = sum over the outputs whose window read it. */
extern "C" __global__ void conv2d_backward_input(const T* dy, const T* wt, T* dx, ConvP p) {
    LOOP(p.n * p.c * p.h * p.w) {
        long long ix = (long long)(i % p.w), t = (long long)(i / p.w);
        long long iy = t % p.h; t /= p.h;
        long long ic = t % p.c; long long n = t / p.c;
        long long g = ic / p.cg, c = ic % p.cg;
        T acc = 0;
        for (long long ol = 0; ol < p.og; ++ol) {
            long long oc = g * p.og + ol;
            for (long long a = 0; a < p.kh; ++a) {
                long long ty = iy + p.ph - a * p.dh;
                if (ty < 0 || ty % p.sh != 0) continue;
                long long oy = ty / p.sh;
                if (oy >= p.oh) continue;
                for (long long b = 0; b < p.kw; ++b) {
                    long long tx = ix + p.pw - b * p.dw;
                    if (tx < 0 || tx % p.sw != 0) continue;
                    long long ox = tx / p.sw;
                    if (ox >= p.ow) continue;
                    acc += dy[((n * p.o + oc) * p.oh + oy) * p.ow + ox] * wt[((oc * p.cg + c) * p.kh + a) * p.kw + b];
                }
            }
        }
        dx[i] = acc;
    }
}
/* The column matrix of the GEMM path: cols[(ic * kh + a) * kw + b][(n * oh + oy) * ow + ox]
   is the input pixel that tap (a, b) of channel ic reads for output position (oy, ox) of
   image n, or 0 in the padding. Its rows of one group are that group's K = cg * kh * kw. */
extern "C" __global__ void conv_im2col(const T* x, T* cols, ConvP p) {
    long long np = p.n * p.oh * p.ow;
    LOOP(p.c * p.kh * p.kw * np) {
        long long j = (long long)i;
        long long col = j % np, row = j / np;
        long long b = row % p.kw, t = row / p.kw;
        long long a = t % p.kh; long long ic = t / p.kh;
        long long ox = col % p.ow; t = col / p.ow;
        long long oy = t % p.oh; long long n = t / p.oh;
        long long iy = oy * p.sh - p.ph + a * p.dh, ix = ox * p.sw - p.pw + b * p.dw;
        cols[j] = (iy >= 0 && iy < p.h && ix >= 0 && ix < p.w)
            ? x[((n * p.c + ic) * p.h + iy) * p.w + ix] : (T)0;
    }
}
/* The adjoint of conv_im2col: dx[n, ic, iy, ix] sums the entries of dcols that im2col would
   have read from that pixel (a gather per pixel, so no atomics and a fixed order). */
extern "C" __global__ void conv_col2im(const T* dcols, T* dx, ConvP p) {
    long long np = p.n * p.oh * p.ow;
    LOOP(p.n * p.c * p.h * p.w) {
        long long j = (long long)i;
        long long ix = j % p.w, t = j / p.w;
        long long iy = t % p.h; t /= p.h;
        long long ic = t % p.c; long long n = t / p.c;
        T acc = 0;
        for (long long a = 0; a < p.kh; ++a) {
            long long ty = iy + p.ph - a * p.dh;
            if (ty < 0 || ty % p.sh != 0) continue;
            long long oy = ty / p.sh;
            if (oy >= p.oh) continue;
            for (long long b = 0; b < p.kw; ++b) {
                long long tx = ix + p.pw - b * p.dw;
                if (tx < 0 || tx % p.sw != 0) continue;
                long long ox = tx / p.sw;
                if (ox >= p.ow) continue;
                acc += dcols[((ic * p.kh + a) * p.kw + b) * np + (n * p.oh + oy) * p.ow + ox];
            }
        }
        dx[j] = acc;
    }
}
/* dw[oc, c, a, b] = sum over the batch and the output positions. */
extern "C" __global__ void conv2d_backward_filter(const T* x, const T* dy, T* dw, ConvP p) {
    LOOP(p.o * p.cg * p.kh * p.kw) {
        long long b = (long long)(i % p.kw), t = (long long)(i / p.kw);
        long long a = t % p.kh; t /= p.kh;
        long long c = t % p.cg; long long oc = t / p.cg;
        long long ic = (oc / p.og) * p.cg + c;
        T acc = 0;
        for (long long n = 0; n < p.n; ++n) {
            for (long long oy = 0; oy < p.oh; ++oy) {
                long long iy = oy * p.sh - p.ph + a * p.dh;
                if (iy < 0 || iy >= p.h) continue;
                for (long long ox = 0; ox < p.ow; ++ox) {
                    long long ix = ox * p.sw - p.pw + b * p.dw;
                    if (ix < 0 || ix >= p.w) continue;
                    acc += x[((n * p.c + ic) * p.h + iy) * p.w + ix] * dy[((n * p.o + oc) * p.oh + oy) * p.ow + ox];
                }
            }
        }
        dw[i] = acc;
    }
}
"#;

fn pool_module(s: &mut String, dt: DType) {
    let (lowest, nan, add) = match dt {
        DType::F32 => (
            "(-__int_as_float(0x7f800000))",
            "(v != v)",
            "atomicAdd(p, v)",
        ),
        DType::F64 => (
            "(-__longlong_as_double(0x7ff0000000000000LL))",
            "(v != v)",
            "atomicAdd(p, v)",
        ),
        DType::I32 => ("(-2147483647 - 1)", "false", "atomicAdd(p, v)"),
        _ => (
            "(-9223372036854775807LL - 1)",
            "false",
            "atomicAdd((unsigned long long*)p, (unsigned long long)v)",
        ),
    };
    let best_nan = nan.replace('v', "bv");
    s.push_str(&format!(
        r#"
struct PoolP {{ long long planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw; }};
__device__ __forceinline__ void ms_atomic_add(T* p, T v) {{ {add}; }}
/* The window of output (oy, ox) clipped to the image, as the CPU clips it. */
__device__ __forceinline__ void ms_window(const PoolP& p, long long oy, long long ox,
                                          long long* y0, long long* y1, long long* x0, long long* x1) {{
    long long sy = oy * p.sh, sx = ox * p.sw;
    *y0 = sy - p.ph; if (*y0 < 0) *y0 = 0; if (*y0 > p.h) *y0 = p.h;
    *y1 = sy + p.kh - p.ph; if (*y1 < 0) *y1 = 0; if (*y1 > p.h) *y1 = p.h; if (*y1 < *y0) *y1 = *y0;
    *x0 = sx - p.pw; if (*x0 < 0) *x0 = 0; if (*x0 > p.w) *x0 = p.w;
    *x1 = sx + p.kw - p.pw; if (*x1 < 0) *x1 = 0; if (*x1 > p.w) *x1 = p.w; if (*x1 < *x0) *x1 = *x0;
}}
/* Position of the window's first maximum (a NaN beats a number), or -1 if it is empty. */
__device__ __forceinline__ long long ms_argmax(const T* plane, const PoolP& p, long long y0, long long y1,
                                               long long x0, long long x1) {{
    long long at = -1;
    T bv = 0;
    for (long long yy = y0; yy < y1; ++yy)
        for (long long xx = x0; xx < x1; ++xx) {{
            T v = plane[yy * p.w + xx];
            if (at < 0 || v > bv || ({nan} && !{best_nan})) {{ at = yy * p.w + xx; bv = v; }}
        }}
    return at;
}}
extern "C" __global__ void pool_max(const T* x, T* y, PoolP p) {{
    LOOP(p.planes * p.oh * p.ow) {{
        long long ox = (long long)(i % p.ow), t = (long long)(i / p.ow);
        long long oy = t % p.oh, k = t / p.oh;
        long long y0, y1, x0, x1;
        ms_window(p, oy, ox, &y0, &y1, &x0, &x1);
        const T* plane = x + k * p.h * p.w;
        long long at = ms_argmax(plane, p, y0, y1, x0, x1);
        y[i] = at < 0 ? {lowest} : plane[at];
    }}
}}
extern "C" __global__ void pool_max_backward(const T* x, const T* dy, T* dx, PoolP p) {{
    LOOP(p.planes * p.oh * p.ow) {{
        long long ox = (long long)(i % p.ow), t = (long long)(i / p.ow);
        long long oy = t % p.oh, k = t / p.oh;
        long long y0, y1, x0, x1;
        ms_window(p, oy, ox, &y0, &y1, &x0, &x1);
        long long at = ms_argmax(x + k * p.h * p.w, p, y0, y1, x0, x1);
        if (at >= 0) ms_atomic_add(dx + k * p.h * p.w + at, dy[i]);
    }}
}}
"#
    ));
    if dt.is_float() {
        s.push_str(
            r#"
extern "C" __global__ void pool_avg(const T* x, T* y, PoolP p) {
    LOOP(p.planes * p.oh * p.ow) {
        long long ox = (long long)(i % p.ow), t = (long long)(i / p.ow);
        long long oy = t % p.oh, k = t / p.oh;
        long long y0, y1, x0, x1;
        ms_window(p, oy, ox, &y0, &y1, &x0, &x1);
        const T* plane = x + k * p.h * p.w;
        T sum = 0;
        for (long long yy = y0; yy < y1; ++yy)
            for (long long xx = x0; xx < x1; ++xx) sum += plane[yy * p.w + xx];
        y[i] = sum / (T)(p.kh * p.kw);
    }
}
extern "C" __global__ void pool_avg_backward(const T* x, const T* dy, T* dx, PoolP p) {
    LOOP(p.planes * p.oh * p.ow) {
        long long ox = (long long)(i % p.ow), t = (long long)(i / p.ow);
        long long oy = t % p.oh, k = t / p.oh;
        long long y0, y1, x0, x1;
        ms_window(p, oy, ox, &y0, &y1, &x0, &x1);
        T share = dy[i] / (T)(p.kh * p.kw);
        for (long long yy = y0; yy < y1; ++yy)
            for (long long xx = x0; xx < x1; ++xx) ms_atomic_add(dx + k * p.h * p.w + yy * p.w + xx, share);
    }
}
"#,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module's source names each kernel the device looks up, exactly once (the
    /// compile itself needs a GPU machine; `tests/cuda.rs` runs it there).
    #[test]
    fn sources_declare_their_kernels() {
        for dt in [DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool] {
            let unary = source(Family::Unary, dt);
            for &op in UnaryOp::ALL {
                let decl = format!("void unary_{}(", op.name());
                assert_eq!(
                    unary.matches(&decl).count(),
                    usize::from(unary_admits(op, dt)),
                    "{decl} {dt}"
                );
            }
            let binary = source(Family::Binary, dt);
            for &op in BinaryOp::ALL {
                let decl = format!("void binary_{}(", op.name());
                assert_eq!(
                    binary.matches(&decl).count(),
                    usize::from(binary_admits(op, dt)),
                    "{decl} {dt}"
                );
            }
            assert!(source(Family::Cast, dt).contains("void cast_to_bool("));
            assert!(source(Family::Reduce, dt).contains("void argmax("));
            assert!(source(Family::Movement, dt).contains("void copy("));
        }
        assert!(source(Family::Random, DType::F64).contains("void random_normal("));
        assert!(source(Family::Pool, DType::I64).contains("void pool_max_backward("));
        assert!(!source(Family::Pool, DType::I64).contains("void pool_avg("));
    }
}
