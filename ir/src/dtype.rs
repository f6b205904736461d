//! Element types.

use std::fmt;

/// The element type of a tensor.
///
/// `F32`, `F64`, `I32`, `I64` and `Bool` are supported by every device. `BF16` and `F16` are
/// declared so that types, the checker and the IR can name them; only devices that have
/// native half-precision arithmetic claim them (see `Device::supports` in `devices`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary64.
    F64,
    /// Two's-complement 32-bit integer; overflow wraps.
    I32,
    /// Two's-complement 64-bit integer; overflow wraps.
    I64,
    /// `true` or `false`, one byte per element.
    Bool,
    /// bfloat16 (8-bit exponent, 7-bit mantissa), for devices that have it.
    BF16,
    /// IEEE 754 binary16, for devices that have it.
    F16,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 7] = [
        DType::F32,
        DType::F64,
        DType::I32,
        DType::I64,
        DType::Bool,
        DType::BF16,
        DType::F16,
    ];

    /// The name used in MindScript source and in the IR text (`f32`, `i64`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
        }
    }

    /// Parses a dtype name as written in source.
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes one element occupies in memory.
    pub const fn size_of(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::BF16 | DType::F16 => 2,
            DType::Bool => 1,
        }
    }

    /// True for the floating-point dtypes (including the half types).
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::BF16 | DType::F16)
    }

    /// True for the integer dtypes.
    pub const fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64)
    }

    /// True for dtypes that support arithmetic (everything but `bool`).
    pub const fn is_numeric(self) -> bool {
        !matches!(self, DType::Bool)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
