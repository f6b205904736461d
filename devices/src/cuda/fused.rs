//! Fused groups on the GPU: each [`Kernel`] becomes one generated CUDA C kernel that reads
//! the group's inputs once, keeps every intermediate value in registers and writes the
//! group's results once, so a chain of elementwise primitives costs one pass over memory
//! and one launch instead of one of each per primitive.
//!
//! **Source.** The kernel is printed from the program's steps with the same C expressions
//! as the per-primitive kernels of [`super::kernels`] (one namespace of helper functions
//! per dtype the group computes on), so a fused group computes what the unfused kernels
//! compute. One difference is deliberate: float `+`, `-` and `*` are written as the
//! `__fadd_rn`-style intrinsics, which the compiler never contracts into a multiply-add.
//! Unfused, a product is stored before the sum reads it; fused, a plain `a * b + c` would
//! become one `fma` with a different rounding, and the staged result would drift from the
//! eager one.
//!
//! **Signature.** How each input is read is part of the source: an input of one element is
//! read once before the loop, an input that is contiguous in the output's shape is read at
//! the loop index, and any other view (a broadcast row, a transpose) goes through the
//! prelude's strided `Geo` (three inputs per geometry). The kernel's text is the cache key:
//! it is compiled by NVRTC (with the prelude and the helpers it names) the first time it is
//! seen and reused afterwards, so a call writes out only the short kernel itself.
//!
//! **Declining.** A group the generated kernels cannot compute exactly as the unfused
//! primitives do gives `None`, and the executor runs its region node by node: integer
//! `rem`, `floor_div` and `pow` (their divisors and exponents are checked on the host
//! first), dtypes the device lacks, operands on another device, more strided inputs than
//! [`MAX_GEOS`] geometries hold, and groups that end in reductions (the executor runs
//! their elementwise part, [`Kernel::split`], as a kernel of its own, then the reductions).

use std::fmt::Write as _;

use ir::{BinaryOp, DType, Op, TensorType};

use super::kernels::{self, ctype};
use super::{Arg, CudaDevice, Geo};
use crate::fused::Kernel;
use crate::{DeviceError, DeviceId, Elem, Tensor};

/// The most strided geometries one fused kernel takes (three inputs each).
pub(crate) const MAX_GEOS: usize = 4;

/// Elements per thread and pass of a fused kernel's loop.
const UNROLL: usize = 4;

/// How a fused kernel reads one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    /// One element, read once before the loop.
    Scalar,
    /// Contiguous in the output's shape: element `i` at `i`.
    Dense,
    /// Through geometry `geo`, operand `slot` of it.
    Strided { geo: usize, slot: usize },
}

/// Runs `kernel` on `inputs` as one generated kernel, or `None` when it declines (see the
/// module doc).
pub(super) fn exec(
    dev: &CudaDevice,
    kernel: &Kernel,
    inputs: &[&Tensor],
) -> Result<Option<Vec<Tensor>>, DeviceError> {
    // A group that ends in reductions is declined whole: the executor then runs its
    // elementwise part here as one kernel and its reductions as the reduce kernels.
    if kernel.reduced_axes() > 0
        || inputs.len() != kernel.inputs.len()
        || inputs
            .iter()
            .any(|t| t.device() != DeviceId::Cuda(dev.ordinal))
    {
        return Ok(None);
    }
    let Some(dims) = crate::fused::output_dims(inputs.iter().copied()) else {
        return Ok(None);
    };
    let shape = ir::Shape::known(&dims);
    let n: usize = dims.iter().product();

    // How each input is read, and the strided geometries.
    let mut reads = Vec::with_capacity(inputs.len());
    let mut strided: Vec<Tensor> = Vec::new();
    let mut ptrs = Vec::with_capacity(inputs.len());
    for t in inputs {
        let b = dev.buf(t)?;
        let view = t.broadcast_view(&dims);
        let offset = view.layout().offset;
        let read = if t.numel() == 1 {
            Read::Scalar
        } else if view.is_contiguous() {
            Read::Dense
        } else {
            let k = strided.len();
            strided.push(view.clone());
            Read::Strided {
                geo: k / 3,
                slot: k % 3,
            }
        };
        let base = match read {
            Read::Strided { .. } => b.ptr(),
            Read::Scalar | Read::Dense => {
                // The kernel reads `[offset, offset + n)` (one element for a scalar) from
                // the address it is given: the buffer must hold it.
                let want = offset + if read == Read::Scalar { 1 } else { n };
                if n > 0 && want > b.len() {
                    return Err(dev.err(
                        "fused",
                        format!(
                            "an input view reaches element {want} of a buffer of {}",
                            b.len()
                        ),
                    ));
                }
                b.ptr() + (offset * t.dtype().size_of()) as u64
            }
        };
        reads.push(read);
        ptrs.push(base);
    }
    if strided.len() > 3 * MAX_GEOS {
        return Ok(None);
    }
    // Whether the kernel declines is known before any output is allocated. The vector path
    // is chosen from the inputs' addresses; the outputs are fresh allocations, which the
    // driver aligns to 256 bytes, and are checked below all the same.
    let input_addresses: Vec<u64> = (ptrs.iter().zip(&reads))
        .filter(|(_, r)| **r == Read::Dense)
        .map(|(&p, _)| p)
        .collect();
    let vec4 = vectorizes(kernel, &reads, &input_addresses);
    let Some(mut src) = source(kernel, &reads, vec4) else {
        return Ok(None);
    };
    let mut outs = Vec::with_capacity(kernel.outputs.len());
    for &o in &kernel.outputs {
        let Some(t) = kernel.ty(o) else {
            return Ok(None);
        };
        let ty = TensorType::new(t.dtype, shape.clone());
        dev.check_alloc("fused", &ty, &dims)?;
        outs.push(dev.alloc("fused", t.dtype, &dims, false)?);
    }
    if vec4 && outs.iter().any(|b| b.ptr() % 16 != 0) {
        let Some(scalar) = source(kernel, &reads, false) else {
            return Ok(None);
        };
        src = scalar;
    }
    if n > 0 {
        let f = dev.fused_function(&src.kernel, || src.module())?;
        let mut args: Vec<Arg> = ptrs.iter().map(|&p| Arg::U64(p)).collect();
        args.extend(outs.iter().map(|b| Arg::U64(b.ptr())));
        args.push(Arg::U64(n as u64));
        for chunk in strided.chunks(3) {
            let layouts: Vec<(&[isize], usize)> = chunk
                .iter()
                .map(|v| (&v.layout().strides[..], v.layout().offset))
                .collect();
            let g = Geo::new(&dims, &layouts).map_err(|m| dev.err("fused", m))?;
            args.push(Arg::Geo(g));
        }
        dev.launch(&f, "fused", n.div_ceil(UNROLL) as u64, &args)?;
    }
    Ok(Some(
        outs.into_iter()
            .zip(&kernel.outputs)
            .map(|(b, &o)| {
                let dt = kernel.ty(o).map_or(DType::F32, |t| t.dtype);
                Tensor::from_cuda(b, dt, &dims)
            })
            .collect(),
    ))
}

/// The C name of register `r`.
fn reg(r: usize) -> String {
    format!("r{r}")
}

/// A literal of `dt` with the value a `full` of `value` holds (exact, whatever the dtype).
fn literal(dt: DType, value: f64) -> String {
    match dt {
        DType::F32 => format!("__int_as_float(0x{:08x})", f32::from_f64(value).to_bits()),
        DType::F64 => format!("__longlong_as_double(0x{:016x}LL)", value.to_bits()),
        DType::I32 => format!("(int)0x{:08x}U", i32::from_f64(value) as u32),
        DType::I64 => format!("(long long)0x{:016x}ULL", i64::from_f64(value) as u64),
        DType::Bool | DType::BF16 | DType::F16 => {
            format!("(unsigned char){}", u8::from(bool::from_f64(value)))
        }
    }
}

/// The namespace of a dtype's helpers (`T` and `U` are its C types inside it).
fn space(dt: DType) -> String {
    format!("ms_{}", dt.name())
}

/// The CUDA C source of `kernel` with its inputs read as `reads` say, or `None` when a step
/// has no exact generated form. With `vec4` (see [`vectorizes`]) each thread takes four
/// consecutive elements with one 16-byte load per input and one 16-byte store per output.
fn source(kernel: &Kernel, reads: &[Read], vec4: bool) -> Option<Source> {
    let ty = |r: usize| kernel.ty(r).map(|t| t.dtype);
    let mut spaces: Vec<DType> = Vec::new();
    let mut body = String::new();
    for (k, step) in kernel.steps.iter().enumerate() {
        let r = reg(kernel.inputs.len() + k);
        let out = step.ty.dtype;
        if !kernels::is_supported(out) {
            return None;
        }
        let a = |i: usize| step.args.get(i).map(|&x| reg(x));
        let line = match &step.op {
            Op::Unary { op } => {
                let dt = ty(*step.args.first()?)?;
                if !kernels::unary_admits(*op, dt) {
                    return None;
                }
                spaces.push(dt);
                format!(
                    "{{ using namespace {}; T v = {}; {r} = {}; }}",
                    space(dt),
                    a(0)?,
                    kernels::unary_expr(*op, dt)
                )
            }
            Op::Binary { op } => {
                let dt = ty(*step.args.first()?)?;
                if !kernels::binary_admits(*op, dt)
                    || (dt.is_int()
                        && matches!(op, BinaryOp::Rem | BinaryOp::FloorDiv | BinaryOp::Pow))
                {
                    return None;
                }
                spaces.push(dt);
                let d = if dt == DType::F32 { "f" } else { "d" };
                let e = match op {
                    BinaryOp::Add if dt.is_float() => format!("__{d}add_rn(p, q)"),
                    BinaryOp::Sub if dt.is_float() => format!("__{d}sub_rn(p, q)"),
                    BinaryOp::Mul if dt.is_float() => format!("__{d}mul_rn(p, q)"),
                    _ => kernels::binary_expr(*op, dt),
                };
                format!(
                    "{{ using namespace {}; T p = {}; T q = {}; {r} = {e}; }}",
                    space(dt),
                    a(0)?,
                    a(1)?
                )
            }
            Op::Compare { op } => format!(
                "{r} = (unsigned char)(({} {} {}) ? 1 : 0);",
                a(0)?,
                kernels::compare_symbol(*op),
                a(1)?
            ),
            Op::Select {} => format!("{r} = {} ? {} : {};", a(0)?, a(1)?, a(2)?),
            Op::Cast { dtype } => {
                let from = ty(*step.args.first()?)?;
                spaces.push(from);
                format!(
                    "{{ using namespace {}; T v = {}; double d = (double)v; (void)d; {r} = {}; }}",
                    space(from),
                    a(0)?,
                    kernels::cast_expr(from, *dtype)
                )
            }
            Op::StopGradient {} => format!("{r} = {};", a(0)?),
            Op::Full { shape, value, .. } if shape.rank() == 0 => {
                format!("{r} = {};", literal(out, *value))
            }
            _ => return None,
        };
        let _ = writeln!(body, "        {} {r}; {line}", ctype(out));
    }
    for t in &kernel.inputs {
        if !kernels::is_supported(t.dtype) {
            return None;
        }
    }
    spaces.sort();
    spaces.dedup();

    let mut s = String::new();
    let mut params: Vec<String> = Vec::new();
    for (i, t) in kernel.inputs.iter().enumerate() {
        params.push(format!("const {}* __restrict__ in{i}", ctype(t.dtype)));
    }
    for (j, &o) in kernel.outputs.iter().enumerate() {
        params.push(format!("{}* __restrict__ out{j}", ctype(ty(o)?)));
    }
    params.push("unsigned long long n".into());
    let geos = reads
        .iter()
        .filter_map(|r| match r {
            Read::Strided { geo, .. } => Some(geo + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    for g in 0..geos {
        params.push(format!("Geo g{g}"));
    }
    let _ = writeln!(
        s,
        "extern \"C\" __global__ void fused({}) {{",
        params.join(", ")
    );
    for (i, (t, read)) in kernel.inputs.iter().zip(reads).enumerate() {
        if *read == Read::Scalar {
            let _ = writeln!(s, "    const {} r{i} = in{i}[0];", ctype(t.dtype));
        }
    }
    if vec4 {
        vec4_loops(&mut s, kernel, reads, &body)?;
        return Some(Source { kernel: s, spaces });
    }
    // Each thread takes UNROLL elements a grid apart: it first loads all of them, then
    // computes and stores, so that UNROLL loads per input are in flight at once (one
    // load at a time left half of an H200's memory bandwidth unused).
    let _ = writeln!(
        s,
        "    const unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;\n    \
         for (unsigned long long i0 = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; \
         i0 < n; i0 += {UNROLL}ULL * step) {{"
    );
    let loaded: Vec<(usize, &TensorType, &Read)> = kernel
        .inputs
        .iter()
        .zip(reads)
        .enumerate()
        .filter(|(_, (_, r))| **r != Read::Scalar)
        .map(|(i, (t, r))| (i, t, r))
        .collect();
    for (i, t, _) in &loaded {
        let _ = writeln!(s, "        {} l{i}[{UNROLL}];", ctype(t.dtype));
    }
    let each = format!(
        "        #pragma unroll\n        for (int u = 0; u < {UNROLL}; ++u) {{\n            \
         unsigned long long i = i0 + (unsigned long long)u * step;\n            if (i < n) {{\n"
    );
    s.push_str(&each);
    for g in 0..geos {
        let k = reads
            .iter()
            .filter(|r| matches!(r, Read::Strided { geo, .. } if *geo == g))
            .count();
        let _ = writeln!(
            s,
            "                long long o{g}[3]; locate(g{g}, i, o{g}, {k});"
        );
    }
    for (i, _, read) in &loaded {
        let at = match read {
            Read::Strided { geo, slot } => format!("o{geo}[{slot}]"),
            Read::Scalar | Read::Dense => "i".to_string(),
        };
        let _ = writeln!(s, "                l{i}[u] = in{i}[{at}];");
    }
    s.push_str("            }\n        }\n");
    s.push_str(&each);
    for (i, t, _) in &loaded {
        let _ = writeln!(
            s,
            "                const {} r{i} = l{i}[u];",
            ctype(t.dtype)
        );
    }
    for line in body.lines() {
        let _ = writeln!(s, "        {line}");
    }
    for (j, &o) in kernel.outputs.iter().enumerate() {
        let _ = writeln!(s, "                out{j}[i] = {};", reg(o));
    }
    s.push_str("            }\n        }\n    }\n}\n");
    Some(Source { kernel: s, spaces })
}

/// Whether a kernel can take four elements per thread with vector loads: every input it
/// loads is dense, every input and output is a 4-byte dtype (f32, i32), every address is
/// 16-byte aligned, and `MS_FUSED_VEC4=0` does not turn the path off (for measuring it).
/// Scalar loads of consecutive elements by a warp are already coalesced; the vector forms
/// issue a quarter of the memory instructions, which is what the copy bandwidth needs.
fn vectorizes(kernel: &Kernel, reads: &[Read], addresses: &[u64]) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var("MS_FUSED_VEC4").map_or(true, |v| v != "0"));
    let four = |dt: DType| matches!(dt, DType::F32 | DType::I32);
    on && kernel
        .inputs
        .iter()
        .zip(reads)
        .all(|(t, r)| *r == Read::Scalar || (*r == Read::Dense && four(t.dtype)))
        && kernel
            .outputs
            .iter()
            .all(|&o| kernel.ty(o).is_some_and(|t| four(t.dtype)))
        && addresses.iter().all(|a| a % 16 == 0)
}

/// The vector type of four elements of a 4-byte dtype, and its constructor.
fn vec4_type(dt: DType) -> (&'static str, &'static str) {
    if dt == DType::F32 {
        ("float4", "make_float4")
    } else {
        ("int4", "make_int4")
    }
}

/// The loops of a `vec4` kernel (see [`vectorizes`]): thread `v` loads elements
/// `4v .. 4v + 4` of each input as one vector, computes the four with the same body as the
/// scalar kernel, and stores each output as one vector; the last `n % 4` elements are done
/// one by one after.
fn vec4_loops(s: &mut String, kernel: &Kernel, reads: &[Read], body: &str) -> Option<()> {
    let loaded: Vec<(usize, DType)> = kernel
        .inputs
        .iter()
        .zip(reads)
        .enumerate()
        .filter(|(_, (_, r))| **r == Read::Dense)
        .map(|(i, (t, _))| (i, t.dtype))
        .collect();
    let outs: Vec<(usize, DType, usize)> = kernel
        .outputs
        .iter()
        .enumerate()
        .map(|(j, &o)| kernel.ty(o).map(|t| (j, t.dtype, o)))
        .collect::<Option<_>>()?;
    s.push_str(
        "    const unsigned long long step = (unsigned long long)gridDim.x * blockDim.x;\n    \
         const unsigned long long first = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;\n    \
         const unsigned long long nv = n / 4;\n    \
         for (unsigned long long v = first; v < nv; v += step) {\n",
    );
    for &(i, dt) in &loaded {
        let (vt, _) = vec4_type(dt);
        let _ = writeln!(
            s,
            "        const {vt} w{i} = reinterpret_cast<const {vt}*>(in{i})[v];\n        \
             const {} l{i}[4] = {{w{i}.x, w{i}.y, w{i}.z, w{i}.w}};",
            ctype(dt)
        );
    }
    for &(j, dt, _) in &outs {
        let _ = writeln!(s, "        {} s{j}[4];", ctype(dt));
    }
    s.push_str("        #pragma unroll\n        for (int u = 0; u < 4; ++u) {\n");
    for &(i, dt) in &loaded {
        let _ = writeln!(s, "            const {} r{i} = l{i}[u];", ctype(dt));
    }
    for line in body.lines() {
        let _ = writeln!(s, "    {line}");
    }
    for &(j, _, o) in &outs {
        let _ = writeln!(s, "            s{j}[u] = {};", reg(o));
    }
    s.push_str("        }\n");
    for &(j, dt, _) in &outs {
        let (vt, make) = vec4_type(dt);
        let _ = writeln!(
            s,
            "        reinterpret_cast<{vt}*>(out{j})[v] = {make}(s{j}[0], s{j}[1], s{j}[2], s{j}[3]);"
        );
    }
    s.push_str("    }\n    for (unsigned long long i = 4 * nv + first; i < n; i += step) {\n");
    for &(i, dt) in &loaded {
        let _ = writeln!(s, "        const {} r{i} = in{i}[i];", ctype(dt));
    }
    for line in body.lines() {
        let _ = writeln!(s, "{line}");
    }
    for &(j, _, o) in &outs {
        let _ = writeln!(s, "        out{j}[i] = {};", reg(o));
    }
    s.push_str("    }\n}\n");
    Some(())
}

/// A fused group's generated code: the `fused` kernel itself, and the dtypes whose helper
/// namespaces it uses.
#[derive(Debug, PartialEq)]
struct Source {
    /// The kernel's text. It names every namespace it uses, so it alone identifies the
    /// module and is the key of the device's cache: the helpers and the prelude, many
    /// kilobytes, are only written out when a kernel is compiled.
    kernel: String,
    /// The dtypes of [`space`]s the kernel uses.
    spaces: Vec<DType>,
}

impl Source {
    /// The whole module NVRTC compiles: the prelude, the helper namespaces, the kernel.
    fn module(&self) -> String {
        let mut s = String::from(kernels::PRELUDE);
        for &dt in &self.spaces {
            let _ = write!(
                s,
                "namespace {} {{\ntypedef {} T;\ntypedef {} U;\n{}{}}}\n",
                space(dt),
                ctype(dt),
                kernels::utype(dt),
                kernels::unary_helpers(dt),
                kernels::binary_helpers(dt)
            );
        }
        s.push_str(&self.kernel);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::Step;
    use ir::{CmpOp, Shape, UnaryOp};

    fn f32s(shape: &[usize]) -> TensorType {
        TensorType::known(DType::F32, shape)
    }

    /// `tanh(x * a + b) * sigmoid(x) - 0.5 * x` with `a`, `b` as inputs.
    fn chain() -> Kernel {
        let t = f32s(&[4]);
        let step = |op: Op, args: &[usize], ty: &TensorType| Step {
            op,
            args: args.to_vec(),
            ty: ty.clone(),
        };
        let bin = |op| Op::Binary { op };
        Kernel {
            inputs: vec![t.clone(), f32s(&[]), f32s(&[])],
            steps: vec![
                step(bin(BinaryOp::Mul), &[0, 1], &t),
                step(bin(BinaryOp::Add), &[3, 2], &t),
                step(Op::Unary { op: UnaryOp::Tanh }, &[4], &t),
                step(
                    Op::Unary {
                        op: UnaryOp::Sigmoid,
                    },
                    &[0],
                    &t,
                ),
                step(bin(BinaryOp::Mul), &[5, 6], &t),
                step(
                    Op::Full {
                        shape: Shape::scalar(),
                        dtype: DType::F32,
                        value: 0.5,
                    },
                    &[],
                    &f32s(&[]),
                ),
                step(bin(BinaryOp::Mul), &[8, 0], &t),
                step(bin(BinaryOp::Sub), &[7, 9], &t),
                step(
                    Op::Compare { op: CmpOp::Gt },
                    &[10, 1],
                    &TensorType::known(DType::Bool, &[4]),
                ),
                step(Op::Select {}, &[11, 10, 0], &t),
            ],
            outputs: vec![12, 10],
        }
    }

    /// The generated source reads each input as its signature says, names every step, keeps
    /// the products and sums uncontracted, and writes each output once.
    #[test]
    fn source_of_a_chain() {
        let reads = [Read::Dense, Read::Scalar, Read::Strided { geo: 0, slot: 0 }];
        let src = source(&chain(), &reads, false)
            .expect("every step has a generated form")
            .module();
        assert!(src.contains("extern \"C\" __global__ void fused(const float* __restrict__ in0, const float* __restrict__ in1, const float* __restrict__ in2, float* __restrict__ out0, float* __restrict__ out1, unsigned long long n, Geo g0)"), "{src}");
        assert!(src.contains("const float r1 = in1[0];"), "{src}");
        assert!(src.contains("l0[u] = in0[i];"), "{src}");
        assert!(src.contains("const float r0 = l0[u];"), "{src}");
        assert!(src.contains("locate(g0, i, o0, 1);"), "{src}");
        assert!(src.contains("l2[u] = in2[o0[0]];"), "{src}");
        assert!(!src.contains("l1[u]"), "{src}");
        assert!(src.contains("r3 = __fmul_rn(p, q);"), "{src}");
        assert!(src.contains("r10 = __fsub_rn(p, q);"), "{src}");
        assert!(src.contains("T v = r4; r5 = tanhf(v);"), "{src}");
        assert!(src.contains("r8 = __int_as_float(0x3f000000);"), "{src}");
        assert!(
            src.contains("unsigned char r11; r11 = (unsigned char)((r10 > r1) ? 1 : 0);"),
            "{src}"
        );
        assert!(src.contains("r12 = r11 ? r10 : r0;"), "{src}");
        assert!(
            src.contains("out0[i] = r12;") && src.contains("out1[i] = r10;"),
            "{src}"
        );
        assert_eq!(src.matches("namespace ms_f32 {").count(), 1, "{src}");
        // A different way of reading the inputs is a different kernel.
        let dense = source(&chain(), &[Read::Dense; 3], false)
            .expect("generated")
            .module();
        assert_ne!(src, dense);
        assert!(!dense.contains("Geo g0"));
        // Four elements per thread with vector loads and stores, then the tail one by one.
        let vec4 = source(&chain(), &[Read::Dense; 3], true)
            .expect("generated")
            .module();
        assert!(
            vec4.contains("const float4 w0 = reinterpret_cast<const float4*>(in0)[v];"),
            "{vec4}"
        );
        assert!(vec4.contains("s0[u] = r12;"), "{vec4}");
        assert!(
            vec4.contains(
                "reinterpret_cast<float4*>(out0)[v] = make_float4(s0[0], s0[1], s0[2], s0[3]);"
            ),
            "{vec4}"
        );
        assert!(vec4.contains("for (unsigned long long i = 4 * nv + first; i < n; i += step)"));
        assert!(vec4.contains("out0[i] = r12;"), "{vec4}");
    }

    /// Integer division and powers decline: their operands are checked on the host.
    #[test]
    fn integer_division_declines() {
        let t = TensorType::known(DType::I32, &[3]);
        let k = Kernel {
            inputs: vec![t.clone(), t.clone()],
            steps: vec![Step {
                op: Op::Binary {
                    op: BinaryOp::FloorDiv,
                },
                args: vec![0, 1],
                ty: t.clone(),
            }],
            outputs: vec![2],
        };
        assert_eq!(source(&k, &[Read::Dense, Read::Dense], false), None);
        let k = Kernel {
            steps: vec![Step {
                op: Op::Binary { op: BinaryOp::Add },
                ..k.steps[0].clone()
            }],
            ..k
        };
        let src = source(&k, &[Read::Dense, Read::Dense], false)
            .expect("wrapping add is exact")
            .kernel;
        assert!(src.contains("(T)((U)p + (U)q)"), "{src}");
    }

    /// Constants keep their exact bits in every dtype.
    #[test]
    fn literals_are_exact() {
        assert_eq!(
            literal(DType::F32, 0.1),
            format!("__int_as_float(0x{:08x})", 0.1f32.to_bits())
        );
        assert_eq!(
            literal(DType::F64, -0.0),
            "__longlong_as_double(0x8000000000000000LL)"
        );
        assert_eq!(literal(DType::I32, -1.0), "(int)0xffffffffU");
        assert_eq!(literal(DType::I64, 3.0), "(long long)0x0000000000000003ULL");
        assert_eq!(literal(DType::Bool, 2.0), "(unsigned char)1");
    }
}
