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
