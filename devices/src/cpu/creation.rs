//! Tensors made from attributes alone: `iota` and `full`.

use ir::DType;

use crate::{Elem, Tensor, with_elem};

/// Each element is its index along `axis`.
pub(crate) fn iota(shape: &[usize], axis: usize, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let len = shape[axis];
    with_elem!(dtype, T => {
        let data: Vec<T> = (0..n).map(|i| T::from_f64(((i / inner.max(1)) % len.max(1)) as f64)).collect();
        Tensor::from_host_unchecked(T::into_buffer(data), shape)
    }, else Tensor::scalar(0.0f32))
}

/// Every element is `value` converted to `dtype` (as a cast would).
pub(crate) fn full(shape: &[usize], dtype: DType, value: f64) -> Tensor {
    let n: usize = shape.iter().product();
    with_elem!(dtype, T => {
        let v = T::from_f64(value);
        // Zeros come cleared from the allocator (fresh pages need no pass at all); any other
        // value is written once into an unfilled vector rather than over cleared memory.
        let data = if v == T::default() {
            crate::buffer::zeroed::<T>(n)
        } else {
            let mut data = crate::buffer::unfilled::<T>(n);
            data.resize(n, v);
            data
        };
        Tensor::from_host_unchecked(T::into_buffer(data), shape)
    }, else Tensor::scalar(0.0f32))
}
