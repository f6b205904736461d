//! Host memory: typed element buffers and the [`Elem`] trait that kernels are generic over.

use std::fmt::Debug;

use ir::DType;

/// A typed buffer in host memory, in the element type of its dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum HostBuffer {
    /// `f32` elements.
    F32(Vec<f32>),
    /// `f64` elements.
    F64(Vec<f64>),
    /// `i32` elements.
    I32(Vec<i32>),
    /// `i64` elements.
    I64(Vec<i64>),
    /// `bool` elements.
    Bool(Vec<bool>),
}

impl HostBuffer {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            HostBuffer::F32(_) => DType::F32,
            HostBuffer::F64(_) => DType::F64,
            HostBuffer::I32(_) => DType::I32,
            HostBuffer::I64(_) => DType::I64,
            HostBuffer::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            HostBuffer::F32(v) => v.len(),
            HostBuffer::F64(v) => v.len(),
            HostBuffer::I32(v) => v.len(),
            HostBuffer::I64(v) => v.len(),
            HostBuffer::Bool(v) => v.len(),
        }
    }

    /// The size of the elements in bytes (what [`crate::memory`] counts).
    pub fn byte_len(&self) -> u64 {
        (self.len() as u64).saturating_mul(self.dtype().size_of() as u64)
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An element type the CPU kernels work on.
pub trait Elem: Copy + Send + Sync + PartialEq + PartialOrd + Debug + Default + 'static {
    /// The dtype of this element type.
    const DTYPE: DType;
    /// The buffer's elements, if it holds this type.
    fn slice(b: &HostBuffer) -> Option<&[Self]>;
    /// The buffer's elements, writable, if it holds this type.
    fn slice_mut(b: &mut HostBuffer) -> Option<&mut [Self]>;
    /// Wraps elements into a buffer.
    fn into_buffer(v: Vec<Self>) -> HostBuffer;
    /// Converts to `f64` (bool: 0 or 1), exactly for every value but `i64` beyond 2^53.
    fn to_f64(self) -> f64;
    /// Converts from `f64` like a cast: floats round, integers truncate toward zero and
    /// saturate (NaN gives 0), bool is `v != 0`.
    fn from_f64(v: f64) -> Self;
}

macro_rules! elem {
    ($t:ty, $dt:ident, $to:expr, $from:expr) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$dt;
            fn slice(b: &HostBuffer) -> Option<&[Self]> {
                match b {
                    HostBuffer::$dt(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(b: &mut HostBuffer) -> Option<&mut [Self]> {
                match b {
                    HostBuffer::$dt(v) => Some(v),
                    _ => None,
                }
            }
            fn into_buffer(v: Vec<Self>) -> HostBuffer {
                HostBuffer::$dt(v)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                let f: fn($t) -> f64 = $to;
                f(self)
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                let f: fn(f64) -> $t = $from;
                f(v)
            }
        }
    };
}

elem!(f32, F32, |x| x as f64, |v| v as f32);
elem!(f64, F64, |x| x, |v| v);
elem!(i32, I32, |x| x as f64, |v| v as i32);
elem!(i64, I64, |x| x as f64, |v| v as i64);
elem!(bool, Bool, |x| if x { 1.0 } else { 0.0 }, |v| v != 0.0);

/// Calls a generic function with the element type of a dtype the CPU supports:
/// `with_elem!(dtype, T => expr)` evaluates `expr` with `T` bound; for `bf16`/`f16`
/// it evaluates the `else` expression instead.
#[macro_export]
macro_rules! with_elem {
    ($dtype:expr, $t:ident => $body:expr, else $other:expr) => {
        match $dtype {
            ir::DType::F32 => {
                type $t = f32;
                $body
            }
            ir::DType::F64 => {
                type $t = f64;
                $body
            }
            ir::DType::I32 => {
                type $t = i32;
                $body
            }
            ir::DType::I64 => {
                type $t = i64;
                $body
            }
            ir::DType::Bool => {
                type $t = bool;
                $body
            }
            ir::DType::BF16 | ir::DType::F16 => $other,
        }
    };
}

/// Tensors at least this large are backed by transparent huge pages where the OS offers
/// them.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// A vector of `n` zero elements (every `Elem` is valid as all-zero bytes), ready to be
/// overwritten by a kernel.
///
/// Large vectors come from `calloc`, which maps fresh zero pages without writing them,
/// and are marked for transparent huge pages before they are touched: a 40 MB result then
/// costs about 20 page faults instead of 10 000, which on Linux is most of the time of a
/// simple elementwise kernel (NumPy does the same). Small vectors use the plain path.
pub(crate) fn zeroed<T: Elem>(n: usize) -> Vec<T> {
    let bytes = n.saturating_mul(std::mem::size_of::<T>());
    if bytes < HUGE_PAGE_MIN_BYTES {
        return vec![T::default(); n];
    }
    let Ok(layout) = std::alloc::Layout::array::<T>(n) else {
        return vec![T::default(); n];
    };
    // SAFETY: `layout` has non-zero size (bytes ≥ HUGE_PAGE_MIN_BYTES). Zero bytes are a
    // valid value of every `Elem` type (0.0, 0, false), so the `n` elements are initialised,
    // and the vector takes ownership of an allocation made by the global allocator with
    // exactly the layout `Vec<T>` uses for capacity `n`.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout);
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        advise_huge_pages(ptr, bytes);
        Vec::from_raw_parts(ptr.cast::<T>(), n, n)
    }
}

/// An empty vector with room for `n` elements, for a kernel that writes every element
/// before the vector is used (through `spare_capacity_mut`, then `set_len`). Unlike
/// [`zeroed`] it writes nothing: an allocator that reuses freed memory (mimalloc does)
/// would otherwise clear it first, a whole extra pass over a large result. Large vectors
/// are marked for transparent huge pages like [`zeroed`]'s.
pub(crate) fn unfilled<T: Elem>(n: usize) -> Vec<T> {
    let bytes = n.saturating_mul(std::mem::size_of::<T>());
    if bytes < HUGE_PAGE_MIN_BYTES {
        return Vec::with_capacity(n);
    }
    let Ok(layout) = std::alloc::Layout::array::<T>(n) else {
        return Vec::with_capacity(n);
    };
    // SAFETY: `layout` has non-zero size (bytes ≥ HUGE_PAGE_MIN_BYTES); the vector takes
    // ownership of an allocation made by the global allocator with exactly the layout
    // `Vec<T>` uses for capacity `n`, and its length 0 claims no element initialised.
    unsafe {
        let ptr = std::alloc::alloc(layout);
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        advise_huge_pages(ptr, bytes);
        Vec::from_raw_parts(ptr.cast::<T>(), 0, n)
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    const PAGE: usize = 4096;
    let start = (ptr as usize).next_multiple_of(PAGE);
    let end = (ptr as usize + bytes) & !(PAGE - 1);
    if end > start {
        // SAFETY: the range lies inside an allocation we own; MADV_HUGEPAGE only changes how
        // the kernel backs the pages, never their contents. Failure (THP disabled) is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *mut u8, _bytes: usize) {}
