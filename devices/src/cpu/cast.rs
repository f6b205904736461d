//! Dtype conversion, with NumPy's `astype` semantics: floats to integers truncate toward
//! zero (saturating, NaN to 0, as Rust's `as`), integers narrow by wrapping, anything to
//! `bool` is "non-zero".

use ir::DType;

use crate::{Elem, Tensor, with_elem};

/// Conversion of one element, written once per pair of element types.
pub(crate) trait CastTo<T> {
    fn cast(self) -> T;
}

macro_rules! cast_num {
    ($($from:ty),*) => {$(
        impl CastTo<f32> for $from { #[inline(always)] fn cast(self) -> f32 { self as f32 } }
        impl CastTo<f64> for $from { #[inline(always)] fn cast(self) -> f64 { self as f64 } }
        impl CastTo<i32> for $from { #[inline(always)] fn cast(self) -> i32 { self as i32 } }
        impl CastTo<i64> for $from { #[inline(always)] fn cast(self) -> i64 { self as i64 } }
        #[allow(clippy::float_cmp)]
        impl CastTo<bool> for $from { #[inline(always)] fn cast(self) -> bool { self != (0 as $from) } }
    )*};
}
cast_num!(f32, f64, i32, i64);

macro_rules! cast_bool {
    ($($to:ty),*) => {$(
        impl CastTo<$to> for bool { #[inline(always)] fn cast(self) -> $to { self as u8 as $to } }
    )*};
}
cast_bool!(f32, f64, i32, i64);
impl CastTo<bool> for bool {
    #[inline(always)]
    fn cast(self) -> bool {
        self
    }
}

/// Converts `x` to `dtype` (a contiguous result; `x` itself when the dtype already matches).
pub(crate) fn cast(x: &Tensor, dtype: DType) -> Tensor {
    if x.dtype() == dtype {
        return x.clone();
    }
    with_elem!(x.dtype(), S => with_elem!(dtype, D => cast_typed::<S, D>(x), else x.clone()), else x.clone())
}

fn cast_typed<S: Elem + CastTo<D>, D: Elem>(x: &Tensor) -> Tensor {
    let src = x.contiguous();
    let s = src.as_slice::<S>().unwrap_or(&[]);
    let out: Vec<D> = super::elementwise::map_slice(s, |v: S| v.cast());
    Tensor::from_host_unchecked(D::into_buffer(out), x.shape())
}
