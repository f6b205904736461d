//! The CUDA device: every primitive on NVIDIA GPUs through cudarc.
//!
//! CUDA is loaded at run time (cudarc's `dynamic-loading`), so the same binary runs on a
//! machine without it: [`open`] first checks that the driver, NVRTC and cuBLAS libraries
//! can be loaded and turns their absence into [`DeviceError::Unavailable`] with a plain
//! message, and runs the driver's set-up inside `catch_unwind`, because cudarc panics when a
//! library or one of its symbols is missing.
//!
//! Kernels are CUDA C generated per family and dtype ([`kernels`]), compiled by NVRTC the
//! first time one of them is needed and cached in the device. Matrix products of floats go to
//! cuBLAS; everything else is a generated kernel. All work runs on the context's default
//! stream, in order; reading a result (download, printing, a scalar condition) waits for it.
//!
//! Files: `buffer.rs` device memory, `kernels.rs` CUDA C sources, `elementwise.rs`,
//! `reduce.rs`, `matmul.rs`, `movement.rs` (copies, concat, pad, gather, scatter, creation,
//! random numbers), `conv.rs` (convolution and pooling), `fused.rs` (one generated kernel per
//! fused group of a staged graph).

mod buffer;
mod conv;
mod elementwise;
mod fused;
pub(crate) mod kernels;
mod matmul;
mod movement;
mod reduce;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
};
use ir::{DType, Op, TensorType};

pub use buffer::CudaBuffer;
pub(crate) use buffer::CudaData;
use kernels::{BLOCK, Family, MAX_RANK};

use crate::cpu::Limits;
use crate::{Device, DeviceError, DeviceId, HostBuffer, Tensor};

/// Why CUDA cannot be used on this machine, or `Ok` when its libraries load.
fn libraries(ordinal: u32) -> Result<(), DeviceError> {
    // SAFETY: each check only tries to load the library (dlopen) and drops it; no symbol is
    // called.
    let checks = unsafe {
        [
            (
                cudarc::driver::sys::is_culib_present(),
                "the CUDA driver library (libcuda.so) was not found: is the NVIDIA driver installed?",
            ),
            (
                cudarc::nvrtc::sys::is_culib_present(),
                "the NVRTC library (libnvrtc.so, CUDA toolkit 13) was not found: add its folder to LD_LIBRARY_PATH",
            ),
            (
                cudarc::cublas::sys::is_culib_present(),
                "the cuBLAS library (libcublas.so, CUDA toolkit 13) was not found: add its folder to LD_LIBRARY_PATH",
            ),
        ]
    };
    for (present, why) in checks {
        if !present {
            return Err(DeviceError::Unavailable(format!(
                "cuda:{ordinal} is not available: {why}; use --device cpu"
            )));
        }
    }
    Ok(())
}

/// Runs driver code that may panic (cudarc panics on a missing symbol) as an error.
fn guarded<T>(ordinal: u32, f: impl FnOnce() -> Result<T, DeviceError>) -> Result<T, DeviceError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic in the CUDA libraries".into());
        Err(DeviceError::Unavailable(format!(
            "cuda:{ordinal} is not available: the CUDA libraries failed: {msg}; use --device cpu"
        )))
    })
}

/// The CUDA devices of this machine: none where CUDA cannot be loaded.
pub fn devices() -> Vec<DeviceId> {
    if libraries(0).is_err() {
        return Vec::new();
    }
    let count = guarded(0, || {
        CudaContext::device_count().map_err(|e| DeviceError::Unavailable(format!("{e:?}")))
    });
    (0..count.unwrap_or(0).max(0) as u32)
        .map(DeviceId::Cuda)
        .collect()
}

/// Opens CUDA device `ordinal` (once per process: later calls share it and its compiled
/// kernels).
pub fn open(ordinal: u32) -> Result<Arc<dyn Device>, DeviceError> {
    open_cuda(ordinal).map(|d| d as Arc<dyn Device>)
}

/// Whether f32 products may use TF32 tensor cores (`ms --tf32`); off by default, so that
/// f32 means f32 as on the CPU. TF32 rounds each operand to a 10-bit mantissa (about 1e-3
/// relative error per product) for several times the throughput, the trade PyTorch offers
/// with `torch.backends.cuda.matmul.allow_tf32`.
static TF32: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets (or stops) f32 matrix products on every CUDA device use TF32 tensor cores.
pub fn set_tf32(allowed: bool) {
    TF32.store(allowed, std::sync::atomic::Ordering::Relaxed);
}

/// Whether f32 products may use TF32 (see [`set_tf32`]).
pub fn tf32() -> bool {
    TF32.load(std::sync::atomic::Ordering::Relaxed)
}

/// A place that keeps compiled kernels (PTX text) between processes, so that a later run
/// skips NVRTC (about 100 ms per module). The device crate does no IO of its own: the
/// program that opens devices supplies the store (`ms` keeps one on disk). `key` is the
/// whole input of a compilation (NVRTC's version, the options and the source), so a store
/// that returns only what it was given under the same key can never hand back a kernel of
/// another source.
pub trait KernelStore: Send + Sync {
    /// The PTX stored under `key`, if any.
    fn load(&self, key: &str) -> Option<String>;
    /// Keeps `ptx` under `key` (best effort: a store that cannot write just forgets).
    fn store(&self, key: &str, ptx: &str);
}

/// The kernel store of this process, if the program set one.
static STORE: Mutex<Option<Arc<dyn KernelStore>>> = Mutex::new(None);

/// Sets (or, with `None`, removes) the store that compiled kernels are kept in.
pub fn set_kernel_store(store: Option<Arc<dyn KernelStore>>) {
    *STORE.lock().unwrap_or_else(|p| p.into_inner()) = store;
}

/// NVRTC's version, for the keys of the kernel store (`0.0` if it cannot say).
fn nvrtc_version() -> (i32, i32) {
    static VERSION: OnceLock<(i32, i32)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: NVRTC writes two ints through valid pointers; the library is present
        // (checked before any device opens).
        let ok = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
        if ok == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
            (major, minor)
        } else {
            (0, 0)
        }
    })
}

/// The CUDA devices this process has opened, by ordinal.
static OPEN: OnceLock<Mutex<HashMap<u32, Arc<CudaDevice>>>> = OnceLock::new();

/// Waits for the queued work of every CUDA device this process has opened (`time()` calls
/// it, so that a timing covers finished kernels).
pub fn synchronize_all() -> Result<(), DeviceError> {
    let Some(table) = OPEN.get() else {
        return Ok(());
    };
    let devs: Vec<Arc<CudaDevice>> = table
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    devs.iter().try_for_each(|d| d.synchronize())
}

/// [`open`], typed.
pub fn open_cuda(ordinal: u32) -> Result<Arc<CudaDevice>, DeviceError> {
    let table = OPEN.get_or_init(Default::default);
    let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(d) = table.get(&ordinal) {
        return Ok(d.clone());
    }
    let dev = Arc::new(CudaDevice::new(ordinal, Limits::default())?);
    table.insert(ordinal, dev.clone());
    Ok(dev)
}

/// Copies a CUDA tensor into a new contiguous buffer through the host (for callers outside
/// the device; the device itself copies on the GPU).
pub(crate) fn contiguous_through_host(t: &Tensor, b: &CudaBuffer) -> Result<Tensor, DeviceError> {
    if t.is_contiguous() && t.layout().offset == 0 && b.len() >= t.numel() {
        return Ok(t.clone());
    }
    let host = t.to_host()?.contiguous();
    let data = host.host().cloned().unwrap_or(HostBuffer::F32(Vec::new()));
    let buf = CudaBuffer::upload(&b.stream, b.ordinal, &data)?;
    Ok(Tensor::from_cuda(buf, t.dtype(), t.shape()))
}

/// The strided geometry of a kernel: the iteration shape (C order) and where each of up to
/// three operands keeps element `[i0, i1, ...]`. Same layout as `struct Geo` in the CUDA
/// prelude.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geo {
    n: u64,
    rank: i32,
    pad: i32,
    shape: [i64; MAX_RANK],
    st: [[i64; MAX_RANK]; 3],
    off: [i64; 3],
}

// SAFETY: `Geo` is plain old data with the C layout the kernels declare.
unsafe impl DeviceRepr for Geo {}

impl Geo {
    /// The geometry of iterating `shape` over operands given as (strides, offset). Size-1
    /// dims are dropped and dims that every operand walks contiguously are merged, so most
    /// geometries have rank 1 or 2.
    pub(crate) fn new(shape: &[usize], ops: &[(&[isize], usize)]) -> Result<Geo, String> {
        let k = ops.len();
        let mut dims: Vec<(i64, [i64; 3])> = Vec::new();
        for (d, &size) in shape.iter().enumerate() {
            if size == 1 {
                continue;
            }
            let mut st = [0i64; 3];
            for (a, (strides, _)) in ops.iter().enumerate() {
                st[a] = strides[d] as i64;
            }
            match dims.last_mut() {
                Some((psize, pst)) if (0..k).all(|a| pst[a] == st[a] * size as i64) => {
                    *psize *= size as i64;
                    *pst = st;
                }
                _ => dims.push((size as i64, st)),
            }
        }
        if dims.len() > MAX_RANK {
            return Err(format!(
                "a strided operand of rank {} (after merging dims) is over the kernels' limit of {MAX_RANK}",
                dims.len()
            ));
        }
        let mut g = Geo {
            n: shape.iter().product::<usize>() as u64,
            rank: dims.len() as i32,
            pad: 0,
            shape: [1; MAX_RANK],
            st: [[0; MAX_RANK]; 3],
            off: [0; 3],
        };
        for (d, (size, st)) in dims.iter().enumerate() {
            g.shape[d] = *size;
            for (a, &s) in st.iter().enumerate().take(k) {
                g.st[a][d] = s;
            }
        }
        for (a, (_, off)) in ops.iter().enumerate() {
            g.off[a] = *off as i64;
        }
        Ok(g)
    }
}

/// One kernel argument, owned until the launch.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    /// A device address or a count.
    U64(u64),
    /// A signed count or stride.
    I64(i64),
    /// An `f32` value.
    F32(f32),
    /// An `f64` value.
    F64(f64),
    /// An `i32` value.
    I32(i32),
    /// A `bool` value as a byte.
    U8(u8),
    /// A strided geometry.
    Geo(Geo),
    /// Convolution or pooling sizes (up to 18 `i64`, as the kernel's struct declares).
    Sizes([i64; 18]),
}

/// A value of a dtype as a kernel argument, converted as a cast would.
pub(crate) fn scalar_arg(dt: DType, v: f64) -> Arg {
    use crate::Elem;
    match dt {
        DType::F32 => Arg::F32(f32::from_f64(v)),
        DType::F64 => Arg::F64(v),
        DType::I32 => Arg::I32(i32::from_f64(v)),
        DType::I64 => Arg::I64(i64::from_f64(v)),
        _ => Arg::U8(u8::from(bool::from_f64(v))),
    }
}

/// The driver's memory pool of a device (a raw handle owned by the driver, valid for the
/// life of the context).
#[derive(Clone, Copy, Debug)]
struct PoolHandle(cudarc::driver::sys::CUmemoryPool);

// SAFETY: a memory pool handle is a process-wide driver object; the driver's pool functions
// may be called from any thread.
unsafe impl Send for PoolHandle {}
// SAFETY: as above; the handle itself is never mutated.
unsafe impl Sync for PoolHandle {}

/// Makes the device's default memory pool keep the memory freed into it, and returns the
/// pool. The stream-ordered allocator (`cuMemAllocAsync`, which cudarc uses) returns a
/// pool's free memory to the system at every synchronisation by default, so each large
/// result after a `time()` or a download maps fresh pages again: on an H200 that cost more
/// than the kernels of a 100M-element chain. Keeping it makes the pool a caching allocator,
/// the role of PyTorch's; [`CudaDevice::alloc`] trims the pool and retries when an
/// allocation finds the device full. `None` when the device has no such allocator.
fn keep_freed(ctx: &CudaContext) -> Option<PoolHandle> {
    use cudarc::driver::sys;
    if !ctx.has_async_alloc() {
        return None;
    }
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut keep: u64 = u64::MAX;
    // SAFETY: both calls write or read only the locals passed; the device handle is the
    // context's own.
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) != sys::CUresult::CUDA_SUCCESS
        {
            return None;
        }
        let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
        if sys::cuMemPoolSetAttribute(pool, attr, (&raw mut keep).cast())
            != sys::CUresult::CUDA_SUCCESS
        {
            return None;
        }
    }
    Some(PoolHandle(pool))
}

/// A compiled module, or why it did not compile.
type Compiled = Result<Arc<CudaModule>, String>;

/// An NVIDIA GPU.
pub struct CudaDevice {
    ordinal: u32,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    /// The `compute_XY` architecture the kernels are compiled for.
    arch: Option<&'static str>,
    limits: Limits,
    /// The device's total memory in bytes (0 when the driver did not say).
    total: usize,
    /// The driver's default memory pool, set to keep freed memory (see [`keep_freed`]);
    /// `None` when the device has no stream-ordered allocator.
    pool: Option<PoolHandle>,
    /// Compiled modules by family and dtype (a compile error is kept, so it is not retried).
    modules: Mutex<HashMap<(Family, DType), Compiled>>,
    /// Loaded kernels by module and name.
    functions: Mutex<HashMap<(Family, DType, String), CudaFunction>>,
    /// Generated kernels of fused groups by their kernel text (a compile error is kept too).
    fused: Mutex<HashMap<String, Result<CudaFunction, String>>>,
    /// cuBLAS, made on the first float matrix product.
    blas: Mutex<Option<Arc<cudarc::cublas::CudaBlas>>>,
    /// Wait for every kernel and check it (`MS_CUDA_SYNC=1`): a failing kernel is then named
    /// in the error instead of surfacing at a later copy.
    sync_each: bool,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .field("arch", &self.arch)
            .finish_non_exhaustive()
    }
}

impl CudaDevice {
    /// Opens device `ordinal` with the given limits (see [`open`] for the shared one).
    pub fn new(ordinal: u32, limits: Limits) -> Result<CudaDevice, DeviceError> {
        libraries(ordinal)?;
        guarded(ordinal, || {
            let unavailable = |what: &str, e: &dyn std::fmt::Debug| {
                DeviceError::Unavailable(format!(
                    "cuda:{ordinal} is not available: {what}: {e:?}; use --device cpu"
                ))
            };
            let count = CudaContext::device_count()
                .map_err(|e| unavailable("the driver could not count the devices", &e))?;
            if i64::from(ordinal) >= i64::from(count) {
                return Err(DeviceError::Unavailable(format!(
                    "cuda:{ordinal} is not available: this machine has {count} CUDA device(s); use --device cpu"
                )));
            }
            let ctx = CudaContext::new(ordinal as usize)
                .map_err(|e| unavailable("the driver could not open it", &e))?;
            // SAFETY: everything runs on the one stream below, so the per-buffer events that
            // order uses across streams are not needed (and cost two events per buffer).
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.default_stream();
            let total = ctx.mem_get_info().map_or(0, |(_, t)| t);
            let pool = keep_freed(&ctx);
            let name = ctx.name().unwrap_or_else(|_| "an NVIDIA GPU".into());
            let arch = ctx
                .compute_capability()
                .ok()
                .and_then(|(maj, min)| arch_name(maj, min));
            Ok(CudaDevice {
                ordinal,
                ctx,
                stream,
                name,
                arch,
                limits,
                total,
                pool,
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
                fused: Mutex::new(HashMap::new()),
                blas: Mutex::new(None),
                sync_each: std::env::var_os("MS_CUDA_SYNC").is_some_and(|v| v == "1"),
            })
        })
    }

    /// The GPU's name (`NVIDIA H100 80GB HBM3`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Free and total device memory in bytes.
    pub fn memory(&self) -> Option<(usize, usize)> {
        self.ctx.mem_get_info().ok()
    }

    /// Compiles every kernel module for every dtype now; the failures, each with NVRTC's
    /// log. (A diagnostic for a new machine: normally modules compile on first use.)
    pub fn compile_all(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for fam in Family::ALL {
            for dt in [DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool] {
                if fam.has(dt)
                    && let Err(e) = self.module(fam, dt)
                {
                    errors.push(e.to_string());
                }
            }
        }
        errors
    }

    /// A copy of host tensor `t` on this device with the same layout: its whole buffer is
    /// uploaded, so a transposed, reversed or broadcast view stays that view and the kernels'
    /// strided reads are exercised (the conformance tests use it).
    pub fn upload_view(&self, t: &Tensor) -> Result<Tensor, DeviceError> {
        let host = t
            .host()
            .ok_or_else(|| self.err("upload", "the tensor is not in host memory"))?;
        let buf = guarded(self.ordinal, || {
            CudaBuffer::upload(&self.stream, self.ordinal, host)
        })?;
        Ok(Tensor::from_cuda(buf, t.dtype(), &[]).with_layout(t.layout().clone()))
    }

    pub(crate) fn err(&self, op: &'static str, message: impl Into<String>) -> DeviceError {
        DeviceError::Backend {
            op,
            device: DeviceId::Cuda(self.ordinal),
            message: message.into(),
        }
    }

    fn module(&self, fam: Family, dt: DType) -> Result<Arc<CudaModule>, DeviceError> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let entry = modules.entry((fam, dt)).or_insert_with(|| {
            let src = kernels::source(fam, dt);
            let opts = cudarc::nvrtc::CompileOptions {
                arch: self.arch,
                // The random kernels must round exactly as the CPU does: no contracted
                // multiply-adds.
                fmad: (fam == Family::Random).then_some(false),
                name: Some(format!("ms_{}_{}.cu", fam.name(), dt.name())),
                ..Default::default()
            };
            self.compile(&src, opts)
                .map_err(|e| format!("the {} kernels for {dt}: {e}", fam.name()))
        });
        entry.clone().map_err(|m| self.err("compile", m))
    }

    /// Compiles `src` with `opts` and loads the module, through the kernel store when the
    /// program set one: PTX that an earlier process kept is loaded instead of compiling,
    /// and if the driver refuses it (a damaged file), the source is compiled afresh.
    fn compile(
        &self,
        src: &str,
        opts: cudarc::nvrtc::CompileOptions,
    ) -> Result<Arc<CudaModule>, String> {
        let store = STORE.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (major, minor) = nvrtc_version();
        let key = format!("nvrtc {major}.{minor}\noptions {opts:?}\n{src}");
        // The driver takes PTX as a C string, so text with a NUL inside could not reach it
        // whole: such an entry is compiled afresh too.
        if let Some(ptx) = store.as_ref().and_then(|s| s.load(&key))
            && ptx.is_ascii()
            && !ptx.contains('\0')
            && ptx.contains(".entry")
            && let Ok(m) = self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx))
        {
            return Ok(m);
        }
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| match e {
            cudarc::nvrtc::CompileError::CompileError {
                nvrtc,
                log,
                options,
            } => format!(
                "NVRTC could not compile it ({nvrtc:?}, options {options:?}):\n{}",
                log.to_string_lossy()
            ),
            other => format!("NVRTC failed: {other:?}"),
        })?;
        if let (Some(store), Some(bytes)) = (store, ptx.as_bytes()) {
            store.store(&key, String::from_utf8_lossy(bytes).trim_end_matches('\0'));
        }
        self.ctx
            .load_module(ptx)
            .map_err(|e| format!("the driver could not load it: {e:?}"))
    }

    /// Kernel `name` of the module of `fam` for `dt`.
    pub(crate) fn function(
        &self,
        fam: Family,
        dt: DType,
        name: &str,
    ) -> Result<CudaFunction, DeviceError> {
        let key = (fam, dt, name.to_string());
        if let Some(f) = self
            .functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(f.clone());
        }
        let module = self.module(fam, dt)?;
        let f = module.load_function(name).map_err(|e| {
            self.err(
                "load",
                format!(
                    "kernel `{name}` of the {} module for {dt}: {e:?}",
                    fam.name()
                ),
            )
        })?;
        self.functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, f.clone());
        Ok(f)
    }

    /// The kernel `fused` of a generated kernel text `key`, compiled from the module
    /// `module()` writes on first sight and kept. The cache is bounded: a session that stages
    /// many different graphs starts it afresh rather than growing without end.
    pub(crate) fn fused_function(
        &self,
        key: &str,
        module: impl FnOnce() -> String,
    ) -> Result<CudaFunction, DeviceError> {
        const MAX_KERNELS: usize = 4096;
        let mut cache = self.fused.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = cache.get(key) {
            return f.clone().map_err(|m| self.err("compile", m));
        }
        let src = module();
        let opts = cudarc::nvrtc::CompileOptions {
            arch: self.arch,
            name: Some("ms_fused.cu".into()),
            ..Default::default()
        };
        let compiled = self
            .compile(&src, opts)
            .map_err(|e| format!("a fused kernel: {e}\nsource:\n{src}"))
            .and_then(|m| {
                m.load_function("fused")
                    .map_err(|e| format!("a fused kernel has no entry point: {e:?}"))
            });
        if cache.len() >= MAX_KERNELS {
            cache.clear();
        }
        cache.insert(key.to_string(), compiled.clone());
        compiled.map_err(|m| self.err("compile", m))
    }

    /// Launches `f` over `n` work items (grid-stride: the grid is capped, each thread loops).
    pub(crate) fn launch(
        &self,
        f: &CudaFunction,
        name: &'static str,
        n: u64,
        args: &[Arg],
    ) -> Result<(), DeviceError> {
        let blocks = n.div_ceil(u64::from(BLOCK)).clamp(1, 65_535 * 4);
        self.launch_blocks(f, name, blocks as u32, args)
    }

    /// Launches `f` on exactly `blocks` blocks of [`BLOCK`] threads.
    pub(crate) fn launch_blocks(
        &self,
        f: &CudaFunction,
        name: &'static str,
        blocks: u32,
        args: &[Arg],
    ) -> Result<(), DeviceError> {
        let cfg = LaunchConfig {
            grid_dim: (blocks.max(1), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream.launch_builder(f);
        for a in args {
            match a {
                Arg::U64(v) => b.arg(v),
                Arg::I64(v) => b.arg(v),
                Arg::F32(v) => b.arg(v),
                Arg::F64(v) => b.arg(v),
                Arg::I32(v) => b.arg(v),
                Arg::U8(v) => b.arg(v),
                Arg::Geo(v) => b.arg(v),
                Arg::Sizes(v) => b.arg(v),
            };
        }
        // SAFETY: the arguments match the kernel's parameters (both are written in this
        // module and `kernels`), every address is of a live buffer large enough for the
        // geometry passed with it, and the kernels bound every access by that geometry.
        unsafe { b.launch(cfg) }
            .map_err(|e| self.err(name, format!("kernel launch failed: {e:?}")))?;
        if self.sync_each {
            self.stream
                .synchronize()
                .map_err(|e| self.err(name, format!("the kernel failed: {e:?}")))?;
        }
        Ok(())
    }

    /// A new buffer of `n` elements of `dt` (zeroed when asked), or an out-of-memory error
    /// naming the bytes requested and what the device has free.
    pub(crate) fn alloc(
        &self,
        op: &'static str,
        dt: DType,
        shape: &[usize],
        zeroed: bool,
    ) -> Result<CudaBuffer, DeviceError> {
        let n: usize = shape.iter().product::<usize>().max(1);
        let oom = |e: cudarc::driver::DriverError| {
            if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                let (free, total) = self.memory().unwrap_or((0, 0));
                DeviceError::Alloc {
                    op,
                    shape: ir::Shape::known(shape),
                    dtype: dt,
                    bytes: (n * dt.size_of()) as u64,
                    reason: format!(
                        "out of memory on cuda:{} ({free} bytes free of {total})",
                        self.ordinal
                    ),
                }
            } else {
                self.err(op, format!("allocation failed: {e:?}"))
            }
        };
        let full = |e: &cudarc::driver::DriverError| {
            e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY
        };
        macro_rules! make {
            ($t:ty, $v:ident) => {{
                let attempt = || {
                    if zeroed {
                        self.stream.alloc_zeros::<$t>(n)
                    } else {
                        // SAFETY: the kernel that follows writes every element before any
                        // read.
                        unsafe { self.stream.alloc::<$t>(n) }
                    }
                };
                // The pool keeps freed memory (see `keep_freed`): when the device is full,
                // give that back and try once more before calling it out of memory.
                let s = match attempt() {
                    Err(e) if full(&e) && self.trim_pool() => attempt(),
                    other => other,
                };
                CudaData::$v(s.map_err(oom)?)
            }};
        }
        let data = match dt {
            DType::F32 => make!(f32, F32),
            DType::F64 => make!(f64, F64),
            DType::I32 => make!(i32, I32),
            DType::I64 => make!(i64, I64),
            DType::Bool => make!(u8, Bool),
            DType::BF16 | DType::F16 => {
                return Err(DeviceError::UnsupportedDType {
                    op,
                    dtype: dt,
                    device: self.id(),
                });
            }
        };
        Ok(CudaBuffer {
            data,
            stream: self.stream.clone(),
            ordinal: self.ordinal,
        })
    }

    /// Waits for the queued work and releases the memory the pool keeps; whether there was a
    /// pool to trim.
    fn trim_pool(&self) -> bool {
        let Some(PoolHandle(pool)) = self.pool else {
            return false;
        };
        if self.stream.synchronize().is_err() {
            return false;
        }
        // SAFETY: the pool is the device's default pool, alive as long as the context.
        let r = unsafe { cudarc::driver::sys::cuMemPoolTrimTo(pool, 0) };
        r == cudarc::driver::sys::CUresult::CUDA_SUCCESS
    }

    /// The device buffer of an operand (already checked to be on this device).
    pub(crate) fn buf<'t>(&self, t: &'t Tensor) -> Result<&'t CudaBuffer, DeviceError> {
        t.cuda().ok_or_else(|| DeviceError::WrongDevice {
            op: "cuda",
            operand: 0,
            expected: self.id(),
            found: t.device(),
        })
    }

    /// Refuses a result over the cap, or larger than the device's whole memory. (What is
    /// free is the allocation's to find out: asking the driver before every large result
    /// cost more than the result's kernel, and the pool's cached memory counts as used.)
    pub(crate) fn check_alloc(
        &self,
        op: &'static str,
        ty: &TensorType,
        shape: &[usize],
    ) -> Result<(), DeviceError> {
        let bytes = self.limits.admit(op, ty, shape)?;
        if self.total > 0 && bytes > self.total as u64 {
            return Err(crate::cpu::alloc_error(
                op,
                ty,
                bytes,
                format!(
                    "more than the whole memory of cuda:{} ({} bytes)",
                    self.ordinal, self.total
                ),
            ));
        }
        Ok(())
    }

    fn run(
        &self,
        op: &Op,
        inputs: &[&Tensor],
        out: &TensorType,
        shape: &[usize],
    ) -> Result<Tensor, DeviceError> {
        let arg = |i: usize| inputs[i];
        match op {
            Op::Unary { op } => elementwise::unary(self, *op, arg(0), out.dtype),
            Op::Binary { op } => elementwise::binary(self, *op, arg(0), arg(1), shape),
            Op::Compare { op } => elementwise::compare(self, *op, arg(0), arg(1), shape),
            Op::Select {} => elementwise::select(self, arg(0), arg(1), arg(2), shape),
            Op::Cast { dtype } => elementwise::cast(self, arg(0), *dtype),
            Op::Reduce { op, axes, .. } => {
                reduce::reduce(self, *op, arg(0), axes, out.dtype, shape)
            }
            Op::ArgReduce { op, axis, .. } => reduce::arg_reduce(self, *op, arg(0), *axis, shape),
            Op::MatMul {} => matmul::matmul(self, arg(0), arg(1), shape),
            Op::Reshape { .. } => movement::reshape(self, arg(0), shape),
            Op::Transpose { perm } => Ok(arg(0).transpose_view(perm)),
            Op::Broadcast { .. } => Ok(arg(0).broadcast_view(shape)),
            Op::Slice { dims } => Ok(arg(0).slice_view(dims)),
            Op::Concat { axis } => movement::concat(self, inputs, *axis, shape),
            Op::Pad { pads, value } => movement::pad(self, arg(0), pads, *value, shape),
            Op::Gather { axis } => movement::gather(self, arg(0), arg(1), *axis, shape),
            Op::ScatterAdd { axis } => movement::scatter_add(self, arg(0), arg(1), arg(2), *axis),
            Op::Conv2d { params } => {
                conv::conv2d(self, conv::Which::Forward, arg(0), arg(1), params, shape)
            }
            Op::Conv2dBackwardInput { params, .. } => conv::conv2d(
                self,
                conv::Which::BackwardInput,
                arg(0),
                arg(1),
                params,
                shape,
            ),
            Op::Conv2dBackwardFilter { params, .. } => conv::conv2d(
                self,
                conv::Which::BackwardFilter,
                arg(0),
                arg(1),
                params,
                shape,
            ),
            Op::Pool2d { op, params } => conv::pool2d(self, *op, arg(0), params, shape),
            Op::Pool2dBackward { op, params } => {
                conv::pool2d_backward(self, *op, arg(0), arg(1), params)
            }
            Op::Random { op, .. } => movement::random(self, *op, arg(0), shape, out.dtype),
            Op::Iota { axis, .. } => movement::iota(self, shape, *axis, out.dtype),
            Op::Full { value, .. } => movement::full(self, shape, out.dtype, *value),
            // The value passes through; the executor shows it (reading it copies it out).
            Op::Print {} | Op::StopGradient {} => Ok(arg(0).clone()),
        }
    }

    /// A contiguous copy of `t` on this device (`t` itself when it already is one).
    pub(crate) fn dense(&self, t: &Tensor) -> Result<Tensor, DeviceError> {
        let b = self.buf(t)?;
        if t.is_contiguous() && t.layout().offset == 0 && b.len() >= t.numel() {
            return Ok(t.clone());
        }
        movement::copy(self, t)
    }
}

/// NVRTC's name for a compute capability (`compute_90`), for those NVRTC 13 knows.
fn arch_name(major: i32, minor: i32) -> Option<&'static str> {
    Some(match (major, minor) {
        (7, 5) => "compute_75",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 7) => "compute_87",
        (8, 9) => "compute_89",
        (9, 0) => "compute_90",
        (10, 0) => "compute_100",
        (12, 0) => "compute_120",
        _ => return None,
    })
}

impl Device for CudaDevice {
    fn id(&self) -> DeviceId {
        DeviceId::Cuda(self.ordinal)
    }

    fn synchronize(&self) -> Result<(), DeviceError> {
        self.stream
            .synchronize()
            .map_err(|e| self.err("synchronize", format!("a queued kernel failed: {e:?}")))
    }

    fn supports(&self, dtype: DType) -> bool {
        kernels::is_supported(dtype)
    }

    fn exec(&self, op: &Op, inputs: &[&Tensor]) -> Result<Tensor, DeviceError> {
        crate::cancel::check()?;
        let name = op.name();
        crate::device::check_placement(self.id(), op, inputs)?;
        let (out, shape) = crate::device::result_of(self, op, inputs)?;
        self.check_alloc(name, &out, &shape)?;
        let ordinal = self.ordinal;
        let result = guarded(ordinal, || self.run(op, inputs, &out, &shape))?;
        crate::cancel::check()?;
        if result.shape() != &shape[..] || result.dtype() != out.dtype {
            return Err(self.err(
                name,
                format!(
                    "the kernel made {}{:?}, not {}{:?}",
                    result.dtype(),
                    result.shape(),
                    out.dtype,
                    shape
                ),
            ));
        }
        Ok(result)
    }

    fn exec_fused(
        &self,
        kernel: &crate::fused::Kernel,
        inputs: &[&Tensor],
    ) -> Result<Option<Vec<Tensor>>, DeviceError> {
        crate::cancel::check()?;
        guarded(self.ordinal, || fused::exec(self, kernel, inputs))
    }

    fn upload(&self, data: HostBuffer, shape: &[usize]) -> Result<Tensor, DeviceError> {
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel != Some(data.len()) {
            return Err(DeviceError::DataLength {
                len: data.len(),
                shape: ir::Shape::known(shape),
            });
        }
        let dtype = data.dtype();
        if !self.supports(dtype) {
            return Err(DeviceError::UnsupportedDType {
                op: "upload",
                dtype,
                device: self.id(),
            });
        }
        let buf = guarded(self.ordinal, || {
            CudaBuffer::upload(&self.stream, self.ordinal, &data)
        })?;
        Ok(Tensor::from_cuda(buf, dtype, shape))
    }

    fn download(&self, t: &Tensor) -> Result<HostBuffer, DeviceError> {
        let host = guarded(self.ordinal, || t.to_host())?.contiguous();
        host.host()
            .cloned()
            .ok_or_else(|| self.err("download", "the copy did not reach the host"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without CUDA (CI, most laptops) opening a device is a plain `Unavailable` error, never
    /// a panic, and no device is listed.
    #[test]
    fn opening_without_cuda_is_an_error() {
        if libraries(0).is_ok() {
            println!("skipped: CUDA libraries are present on this machine");
            return;
        }
        match open(0) {
            Err(DeviceError::Unavailable(m)) => {
                assert!(m.contains("cuda:0") && m.contains("--device cpu"), "{m}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(matches!(open(3), Err(DeviceError::Unavailable(_))));
        assert!(devices().is_empty());
    }

    #[test]
    fn geometry_merges_contiguous_dims() {
        let g = Geo::new(&[2, 3, 4], &[(&[12, 4, 1], 0), (&[0, 0, 1], 5)]).expect("fits");
        // The first operand is contiguous, the second broadcast over the two outer dims:
        // those two merge, the inner one stays.
        assert_eq!(g.rank, 2);
        assert_eq!(&g.shape[..2], &[6, 4]);
        assert_eq!(&g.st[0][..2], &[4, 1]);
        assert_eq!(&g.st[1][..2], &[0, 1]);
        assert_eq!(g.off[1], 5);
        assert_eq!(g.n, 24);
        let t = Geo::new(&[3, 1, 2], &[(&[1, 9, 3], 0)]).expect("fits");
        assert_eq!(
            (t.rank, &t.shape[..2], &t.st[0][..2]),
            (2, &[3, 2][..], &[1, 3][..])
        );
    }

    #[test]
    fn geometry_over_the_rank_limit_is_an_error() {
        let shape = [2usize; 9];
        let strides: Vec<isize> = (0..9).map(|i| 1 << (2 * i)).collect();
        assert!(Geo::new(&shape, &[(&strides, 0)]).is_err());
    }
}
