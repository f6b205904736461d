//! Tensors: a shared immutable buffer seen through a strided layout.

use std::fmt;
use std::sync::Arc;

use ir::{DType, Shape, SliceDim, TensorType};
use ndarray::{ArrayViewD, Axis, IxDyn, ShapeBuilder};
use smallvec::SmallVec;

use crate::{DeviceError, DeviceId, Elem, HostBuffer};

/// The dims of a layout: inline up to rank 4, so that making or cloning the tensors of
/// everyday ranks allocates nothing for their shape.
pub type Dims = SmallVec<[usize; 4]>;
/// The strides of a layout, inline like [`Dims`].
pub type Strides = SmallVec<[isize; 4]>;

/// How the elements of a tensor sit in its buffer: element `[i0, i1, ...]` is at
/// `offset + Σ ik * strides[k]` (strides in elements, possibly zero for broadcast axes or
/// negative for reversed slices).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Dims, outermost first.
    pub shape: Dims,
    /// Element strides per dim.
    pub strides: Strides,
    /// Position of element `[0, 0, ...]` in the buffer.
    pub offset: usize,
}

impl Layout {
    /// The C-order (row-major) layout of a shape.
    pub fn contiguous(shape: &[usize]) -> Layout {
        Layout {
            shape: Dims::from_slice(shape),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the elements are the C-order run `offset .. offset + numel` of the buffer.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1isize;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d as isize;
        }
        true
    }
}

/// How a strided view walks its buffer in C order: its dims with size-1 dims dropped and
/// dims that walk memory as one merged, so that the innermost dim is one run (stride 1),
/// one repeated element (stride 0) or one stepped run. Readers copy run by run under an
/// odometer over the outer dims: ndarray's general iterator recomputes a dynamic index per
/// element, which made small broadcast copies cost microseconds.
#[derive(Clone, Debug)]
pub(crate) struct Walk {
    /// (size, stride) per merged dim, outermost first; empty for one element.
    dims: SmallVec<[(usize, isize); 4]>,
    offset: isize,
    numel: usize,
}

impl Walk {
    /// The walk of the view `l` of a buffer of `len` elements, or `None` when the view
    /// reaches outside the buffer (or its reach overflows).
    pub(crate) fn new(l: &Layout, len: usize) -> Option<Walk> {
        let mut dims: SmallVec<[(usize, isize); 4]> = SmallVec::new();
        for (&d, &s) in l.shape.iter().zip(&l.strides) {
            if d == 1 {
                continue;
            }
            match dims.last_mut() {
                Some((pd, ps)) if *ps == s.checked_mul(d as isize)? => {
                    *pd *= d;
                    *ps = s;
                }
                _ => dims.push((d, s)),
            }
        }
        let numel = l.numel();
        let offset = isize::try_from(l.offset).ok()?;
        if numel > 0 {
            let (mut lo, mut hi) = (offset, offset);
            for &(d, s) in &dims {
                let reach = s.checked_mul(d as isize - 1)?;
                if reach < 0 {
                    lo = lo.checked_add(reach)?;
                } else {
                    hi = hi.checked_add(reach)?;
                }
            }
            if lo < 0 || hi as usize >= len {
                return None;
            }
        }
        Some(Walk {
            dims,
            offset,
            numel,
        })
    }

    /// The stride of the innermost run (1 when the view is one element).
    fn step(&self) -> isize {
        self.dims.last().map_or(1, |&(_, s)| s)
    }

    /// Calls `run(position, count)` for the runs covering the elements
    /// `start..start + len` in C order, in order: each run is `count` elements of the
    /// innermost dim starting at buffer position `position`, stepping by [`Walk::step`].
    /// The caller keeps `start + len` within the view.
    fn runs(&self, start: usize, len: usize, mut run: impl FnMut(usize, usize)) {
        if len == 0 {
            return;
        }
        let Some((&(inner, step), outer)) = self.dims.split_last() else {
            run(self.offset as usize, len.min(1));
            return;
        };
        // The multi-index of element `start` over the outer dims, and where it sits.
        let mut index: SmallVec<[usize; 4]> = SmallVec::from_elem(0, outer.len());
        let mut rest = start / inner;
        let mut base = self.offset;
        for (k, &(d, s)) in outer.iter().enumerate().rev() {
            index[k] = rest % d;
            rest /= d;
            base += index[k] as isize * s;
        }
        let mut i = start % inner;
        let mut left = len;
        while left > 0 {
            let count = (inner - i).min(left);
            run((base + i as isize * step) as usize, count);
            left -= count;
            i = 0;
            advance(outer, &mut index, &mut base);
        }
    }

    /// Copies the elements `start..start + out.len()` of the view (C order) out of `buf`
    /// (the buffer the walk was made for) into `out`.
    pub(crate) fn read<T: Copy>(&self, buf: &[T], start: usize, out: &mut [T]) {
        let step = self.step();
        let mut w = 0;
        self.runs(
            start,
            out.len().min(self.numel.saturating_sub(start)),
            |p, count| {
                let o = &mut out[w..w + count];
                match step {
                    1 => o.copy_from_slice(&buf[p..p + count]),
                    0 => o.fill(buf[p]),
                    _ => {
                        for (k, x) in o.iter_mut().enumerate() {
                            *x = buf[(p as isize + k as isize * step) as usize];
                        }
                    }
                }
                w += count;
            },
        );
    }
}

/// The elements of the strided view `l` of `buf` in C order, or `None` when the view
/// reaches outside the buffer.
fn gather_strided<T: Copy>(buf: &[T], l: &Layout) -> Option<Vec<T>> {
    let walk = Walk::new(l, buf.len())?;
    if let Some(out) = gather_transposed(buf, &walk) {
        return Some(out);
    }
    let step = walk.step();
    let mut out = Vec::with_capacity(walk.numel);
    walk.runs(0, walk.numel, |p, count| match step {
        1 => out.extend_from_slice(&buf[p..p + count]),
        0 => out.extend(std::iter::repeat_n(buf[p], count)),
        _ => out.extend((0..count).map(|k| buf[(p as isize + k as isize * step) as usize])),
    });
    Some(out)
}

/// Advances the odometer `index` over the (size, stride) dims `outer` by one, the last
/// fastest, keeping `base` at the buffer position it stands for.
#[inline(always)]
fn advance(outer: &[(usize, isize)], index: &mut [usize], base: &mut isize) {
    let mut axis = outer.len();
    while axis > 0 {
        axis -= 1;
        let (d, s) = outer[axis];
        index[axis] += 1;
        *base += s;
        if index[axis] < d {
            break;
        }
        *base -= s * d as isize;
        index[axis] = 0;
    }
}

/// [`gather_strided`] of a view whose two innermost merged dims are swapped in memory (the
/// innermost steps by more than one element, the one outside it by exactly one: a
/// transposed matrix, or a column block of one), or `None` for any other view. Element
/// by element, every read of such a view lands on another cache line and, for large
/// strides, another page; copying square tiles of [`TRANSPOSE_TILE`] elements a side
/// reads whole lines and writes whole lines instead. The elements are the same.
fn gather_transposed<T: Copy>(buf: &[T], walk: &Walk) -> Option<Vec<T>> {
    let [outer @ .., (rows, 1), (cols, step)] = walk.dims.as_slice() else {
        return None;
    };
    let (rows, cols, step) = (*rows, *cols, *step);
    if step == 1 || step == 0 || rows < TRANSPOSE_TILE || cols < TRANSPOSE_TILE {
        return None;
    }
    let plane = rows * cols;
    let mut out: Vec<T> = Vec::with_capacity(walk.numel);
    let spare = &mut out.spare_capacity_mut()[..walk.numel];
    let mut index: SmallVec<[usize; 4]> = SmallVec::from_elem(0, outer.len());
    let mut base = walk.offset;
    for dst in spare.chunks_mut(plane) {
        // out[r * cols + c] = buf[base + r + c * step], tile by tile.
        for r0 in (0..rows).step_by(TRANSPOSE_TILE) {
            let r1 = (r0 + TRANSPOSE_TILE).min(rows);
            for c0 in (0..cols).step_by(TRANSPOSE_TILE) {
                let c1 = (c0 + TRANSPOSE_TILE).min(cols);
                for r in r0..r1 {
                    let src = base + r as isize;
                    for (c, d) in (c0..c1).zip(&mut dst[r * cols + c0..r * cols + c1]) {
                        let at = (src + c as isize * step) as usize;
                        debug_assert!(at < buf.len());
                        // SAFETY: `Walk::new` checked that every element of the view, this
                        // one among them, lies inside `buf`.
                        d.write(unsafe { *buf.get_unchecked(at) });
                    }
                }
            }
        }
        advance(outer, &mut index, &mut base);
    }
    // SAFETY: the planes cover `0..numel`, and each writes every one of its elements.
    unsafe { out.set_len(walk.numel) };
    Some(out)
}

/// The side of the square tiles [`gather_transposed`] copies: 16 f32 fill a cache line.
const TRANSPOSE_TILE: usize = 16;

/// C-order strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Strides {
    let mut strides = Strides::from_elem(0, shape.len());
    let mut acc = 1isize;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc = acc.saturating_mul(d.max(1) as isize);
    }
    strides
}

/// The identity of a tensor and its clones (see [`Tensor::id`]). Equality and hashing are
/// by address; the weak reference it holds keeps that address from being reused.
#[derive(Clone, Debug)]
pub struct TensorId(std::sync::Weak<Layout>);

impl PartialEq for TensorId {
    fn eq(&self, other: &TensorId) -> bool {
        std::sync::Weak::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TensorId {}

impl std::hash::Hash for TensorId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.as_ptr().hash(h);
    }
}

/// Where a tensor's elements are kept.
#[derive(Debug)]
pub(crate) enum Storage {
    /// Host memory (the CPU device).
    Host(HostBuffer),
    /// Memory of a CUDA device, with the stream that orders its uses.
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaBuffer),
    /// No elements: value `value` of graph `graph` being staged (see [`Tensor::staged`]).
    Staged {
        /// Which graph (staging may nest: a derivative staged inside a staged function).
        graph: u32,
        /// The value's number in that graph.
        value: u32,
    },
}

impl Storage {
    /// Host storage over `data`, counted as live tensor memory ([`crate::memory`]) until it
    /// is dropped.
    fn host(data: HostBuffer) -> Storage {
        crate::memory::made(data.byte_len());
        Storage::Host(data)
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Storage::Host(b) = self {
            crate::memory::freed(b.byte_len());
        }
    }
}

/// A tensor: shared immutable storage, a strided [`Layout`], a dtype and a device.
///
/// Cloning is cheap: the storage and the layout are reference counted, so a clone
/// allocates and copies nothing (the eager interpreter clones a tensor on every variable
/// read), and the tensor itself stays small to move. A layout of rank ≤ 4 keeps its dims
/// inline, so making a tensor costs one allocation for the layout and one for the storage.
/// Tensors are never mutated after creation, so a view can share its buffer with the
/// tensor it came from safely.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    layout: Arc<Layout>,
    dtype: DType,
    device: DeviceId,
}

impl Tensor {
    /// This tensor's identity, shared by its clones and by no other tensor: what a gradient
    /// trace keys its values by. The identity holds a weak reference to the tensor's layout,
    /// so that while it exists no other tensor can be given an equal identity (the layout's
    /// memory is not reused), yet it keeps neither the layout nor the elements alive.
    /// Two identities are equal only when taken from the same tensor or its clones; a
    /// tensor rebuilt from the same elements ([`Tensor::renewed`], an operation that returns
    /// a view) has a new identity.
    pub fn id(&self) -> TensorId {
        TensorId(Arc::downgrade(&self.layout))
    }

    /// The same elements and layout under a new identity (one small allocation, no copy):
    /// how differentiation tells apart two arguments that are the same tensor, and how
    /// `stop_gradient` cuts a value off from the traces that know it.
    pub fn renewed(&self) -> Tensor {
        Tensor {
            storage: self.storage.clone(),
            layout: Arc::new((*self.layout).clone()),
            dtype: self.dtype,
            device: self.device,
        }
    }

    /// A contiguous host tensor from a buffer, checking that it fills the shape.
    pub fn from_host(data: HostBuffer, shape: &[usize]) -> Result<Tensor, DeviceError> {
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel != Some(data.len()) {
            return Err(DeviceError::DataLength {
                len: data.len(),
                shape: Shape::known(shape),
            });
        }
        Ok(Tensor::from_host_unchecked(data, shape))
    }

    /// A contiguous host tensor from a vector of elements.
    pub fn from_vec<T: Elem>(data: Vec<T>, shape: &[usize]) -> Result<Tensor, DeviceError> {
        Tensor::from_host(T::into_buffer(data), shape)
    }

    /// A rank-0 host tensor.
    pub fn scalar<T: Elem>(v: T) -> Tensor {
        Tensor::from_host_unchecked(T::into_buffer(vec![v]), &[])
    }

    /// A host tensor of `shape` whose every element is `value` (converted like a cast),
    /// stored once and seen through zero strides: a constant of any size for the price of
    /// one element.
    pub fn filled(value: f64, dtype: DType, shape: &[usize]) -> Tensor {
        let one = match dtype {
            DType::F64 => HostBuffer::F64(vec![value]),
            DType::I32 => HostBuffer::I32(vec![<i32 as Elem>::from_f64(value)]),
            DType::I64 => HostBuffer::I64(vec![<i64 as Elem>::from_f64(value)]),
            DType::Bool => HostBuffer::Bool(vec![value != 0.0]),
            // Every other float (bf16/f16 exist on no host device) is held as f32.
            _ => HostBuffer::F32(vec![value as f32]),
        };
        Tensor::from_host_unchecked(one, &[]).broadcast_view(shape)
    }

    pub(crate) fn from_host_unchecked(data: HostBuffer, shape: &[usize]) -> Tensor {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        Tensor {
            dtype: data.dtype(),
            storage: Arc::new(Storage::host(data)),
            layout: Arc::new(Layout::contiguous(shape)),
            device: DeviceId::Cpu,
        }
    }

    /// A tensor with no elements that stands for value `value` of graph `graph` being staged: it has
    /// a dtype and a shape, so that the evaluator can run over it unchanged, and every
    /// primitive applied to it is recorded rather than computed. No kernel accepts it (its
    /// device is [`DeviceId::Staged`]) and reading it is [`DeviceError::Staged`].
    pub fn staged(graph: u32, value: u32, dtype: DType, shape: &[usize]) -> Tensor {
        Tensor {
            dtype,
            storage: Arc::new(Storage::Staged { graph, value }),
            layout: Arc::new(Layout::contiguous(shape)),
            device: DeviceId::Staged,
        }
    }

    /// The graph and value a staged tensor stands for; `None` for a tensor with elements.
    pub fn staged_id(&self) -> Option<(u32, u32)> {
        match &*self.storage {
            Storage::Staged { graph, value } => Some((*graph, *value)),
            _ => None,
        }
    }

    /// The dims.
    pub fn shape(&self) -> &[usize] {
        &self.layout.shape
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Where the tensor lives.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.layout.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.layout.numel()
    }

    /// True when the elements are a C-order run of the buffer.
    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// The abstract type (`f32[2, 3]`).
    pub fn ttype(&self) -> TensorType {
        TensorType::known(self.dtype, &self.layout.shape)
    }

    /// True when both tensors are views of the same buffer.
    pub fn shares_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// The address of the storage: equal for two tensors exactly when they share a buffer
    /// (while both are alive). How the executor tells a result written in place.
    pub(crate) fn storage_addr(&self) -> usize {
        Arc::as_ptr(&self.storage) as usize
    }

    /// The host buffer, writable, when this handle is the only one on it (no clone, no
    /// view, no caller holds it) and the tensor covers the whole buffer in C order: what a
    /// kernel that writes its result in place needs. Writing it changes what this tensor
    /// holds, so a caller that lends a tensor this way gives up its value.
    pub(crate) fn unique_host_mut(&mut self) -> Option<&mut HostBuffer> {
        if !self.is_unique_host() {
            return None;
        }
        match Arc::get_mut(&mut self.storage)? {
            Storage::Host(b) => Some(b),
            _ => None,
        }
    }

    /// Whether [`Tensor::unique_host_mut`] would give the buffer.
    pub(crate) fn is_unique_host(&self) -> bool {
        // Storage is never the target of a weak reference, so one strong count means that
        // this handle is the only one.
        self.layout.is_contiguous()
            && self.layout.offset == 0
            && Arc::strong_count(&self.storage) == 1
            && self.host().is_some_and(|b| b.len() == self.layout.numel())
    }

    /// A new handle on this tensor's buffer with a C-order layout of its shape (a result
    /// written in place, under a fresh identity).
    pub(crate) fn reborn(&self) -> Tensor {
        self.with_layout(Layout::contiguous(&self.layout.shape))
    }

    pub(crate) fn host(&self) -> Option<&HostBuffer> {
        match &*self.storage {
            Storage::Host(b) => Some(b),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => None,
            Storage::Staged { .. } => None,
        }
    }

    /// The device buffer of a CUDA tensor.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda(&self) -> Option<&crate::cuda::CudaBuffer> {
        match &*self.storage {
            Storage::Host(_) | Storage::Staged { .. } => None,
            Storage::Cuda(b) => Some(b),
        }
    }

    /// A tensor over a CUDA buffer with a C-order layout of `shape`.
    #[cfg(feature = "cuda")]
    pub(crate) fn from_cuda(buf: crate::cuda::CudaBuffer, dtype: DType, shape: &[usize]) -> Tensor {
        Tensor {
            device: DeviceId::Cuda(buf.ordinal),
            storage: Arc::new(Storage::Cuda(buf)),
            layout: Arc::new(Layout::contiguous(shape)),
            dtype,
        }
    }

    /// The same elements in host memory: the tensor itself when it is on the host, else the
    /// part of its device buffer that its layout reaches, copied out (the layout is kept, so
    /// views stay views). This is how code outside the devices (printing, reading a scalar)
    /// reads a tensor wherever it lives.
    pub fn to_host(&self) -> Result<Tensor, DeviceError> {
        match &*self.storage {
            Storage::Host(_) => Ok(self.clone()),
            Storage::Staged { .. } => Err(DeviceError::Staged),
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => {
                let l = &self.layout;
                if l.numel() == 0 {
                    let data = b.download_range(0, 0)?;
                    return Ok(Tensor {
                        storage: Arc::new(Storage::host(data)),
                        layout: self.layout.clone(),
                        dtype: self.dtype,
                        device: DeviceId::Cpu,
                    });
                }
                // The lowest and highest buffer positions the layout reaches.
                let (mut lo, mut hi) = (l.offset as isize, l.offset as isize);
                for (&d, &s) in l.shape.iter().zip(&l.strides) {
                    let reach = s * (d as isize - 1);
                    if reach < 0 {
                        lo += reach;
                    } else {
                        hi += reach;
                    }
                }
                let data = b.download_range(lo.max(0) as usize, hi.max(0) as usize + 1)?;
                Ok(Tensor {
                    storage: Arc::new(Storage::host(data)),
                    layout: Arc::new(Layout {
                        shape: l.shape.clone(),
                        strides: l.strides.clone(),
                        offset: (l.offset as isize - lo.max(0)) as usize,
                    }),
                    dtype: self.dtype,
                    device: DeviceId::Cpu,
                })
            }
        }
    }

    /// The whole buffer as `T`, if the tensor is on the host and of that type.
    pub(crate) fn buffer<T: Elem>(&self) -> Option<&[T]> {
        self.host().and_then(T::slice)
    }

    /// The elements in C order as one slice, when the tensor is contiguous host memory of `T`.
    pub fn as_slice<T: Elem>(&self) -> Option<&[T]> {
        if !self.is_contiguous() {
            return None;
        }
        let b = self.buffer::<T>()?;
        b.get(self.layout.offset..self.layout.offset + self.numel())
    }

    /// An ndarray view of a host tensor of element type `T`.
    pub fn view<T: Elem>(&self) -> Option<ArrayViewD<'_, T>> {
        let buf = self.buffer::<T>()?;
        let l = &self.layout;
        if l.numel() == 0 {
            return ArrayViewD::from_shape(IxDyn(&l.shape), &[]).ok();
        }
        // ndarray wants non-negative strides from the lowest address: start there, then
        // flip the axes whose stride was negative.
        let mut start = l.offset as isize;
        for (&d, &s) in l.shape.iter().zip(&l.strides) {
            if s < 0 {
                start += s * (d as isize - 1);
            }
        }
        let abs: Vec<usize> = l.strides.iter().map(|s| s.unsigned_abs()).collect();
        let last = start as usize
            + l.shape
                .iter()
                .zip(&abs)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>();
        if start < 0 || last >= buf.len() {
            return None;
        }
        // SAFETY: every element reachable from `start` with these non-negative strides lies
        // within `buf` (checked just above), the buffer is immutable and outlives the view.
        let mut v = unsafe {
            ArrayViewD::from_shape_ptr(
                IxDyn(&l.shape).strides(IxDyn(&abs)),
                buf.as_ptr().add(start as usize),
            )
        };
        for (k, &s) in l.strides.iter().enumerate() {
            if s < 0 {
                v.invert_axis(Axis(k));
            }
        }
        Some(v)
    }

    /// The elements in C order, copied out. `None` if the tensor is not host memory of `T`.
    pub fn to_vec<T: Elem>(&self) -> Option<Vec<T>> {
        if self.host().is_none() {
            // A device tensor is copied out first (one transfer of the part it reaches).
            return self.to_host().ok()?.to_vec();
        }
        if let Some(s) = self.as_slice::<T>() {
            return Some(s.to_vec());
        }
        gather_strided(self.buffer::<T>()?, &self.layout)
    }

    /// The host scalars `items`, all of one dtype, as a vector (the list literal `[a, b]`
    /// of numbers without running a primitive). `None` when one is not a rank-0 host
    /// tensor or the dtypes differ.
    pub fn stack_scalars(items: &[&Tensor]) -> Option<Tensor> {
        let dtype = items.first()?.dtype;
        if items.iter().any(|t| t.dtype != dtype || t.rank() != 0) {
            return None;
        }
        crate::with_elem!(dtype, T => {
            let mut v: Vec<T> = Vec::with_capacity(items.len());
            for t in items {
                v.push(*t.view::<T>()?.iter().next()?);
            }
            let n = v.len();
            Some(Tensor::from_host_unchecked(T::into_buffer(v), &[n]))
        }, else None)
    }

    /// The elements in C order converted to `f64` (for tests and printing).
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        crate::with_elem!(self.dtype, T => Some(self.to_vec::<T>()?.into_iter().map(Elem::to_f64).collect()), else None)
    }

    /// A contiguous tensor with the same elements: `self` when already contiguous and
    /// starting the buffer, a copy otherwise. (The CUDA device makes its operands contiguous
    /// on the GPU itself; a CUDA tensor reaching this function is copied through the host.)
    pub fn contiguous(&self) -> Tensor {
        #[cfg(feature = "cuda")]
        if let Some(b) = self.cuda() {
            return crate::cuda::contiguous_through_host(self, b).unwrap_or_else(|_| self.clone());
        }
        if self.is_contiguous()
            && self.layout.offset == 0
            && self.host().is_some_and(|b| b.len() == self.numel())
        {
            return self.clone();
        }
        let data = crate::with_elem!(self.dtype, T => T::into_buffer(self.to_vec::<T>().unwrap_or_default()), else return self.clone());
        Tensor::from_host_unchecked(data, &self.layout.shape)
    }

    /// Axis permutation as a view (no copy). The caller has checked `perm`.
    pub(crate) fn transpose_view(&self, perm: &[usize]) -> Tensor {
        let l = &self.layout;
        self.with_layout(Layout {
            shape: perm.iter().map(|&p| l.shape[p]).collect(),
            strides: perm.iter().map(|&p| l.strides[p]).collect(),
            offset: l.offset,
        })
    }

    /// NumPy broadcast as a view: stretched axes get stride 0. The caller has checked the shape.
    pub(crate) fn broadcast_view(&self, shape: &[usize]) -> Tensor {
        let l = &self.layout;
        let off = shape.len() - l.shape.len();
        let strides = (0..shape.len())
            .map(|i| {
                if i < off || l.shape[i - off] != shape[i] {
                    0
                } else {
                    l.strides[i - off]
                }
            })
            .collect();
        self.with_layout(Layout {
            shape: Dims::from_slice(shape),
            strides,
            offset: l.offset,
        })
    }

    /// Strided slice as a view. The caller has checked `dims` against the shape.
    pub(crate) fn slice_view(&self, dims: &[SliceDim]) -> Tensor {
        let l = &self.layout;
        let mut offset = l.offset as isize;
        let mut shape = Dims::with_capacity(dims.len());
        let mut strides = Strides::with_capacity(dims.len());
        for (s, &st) in dims.iter().zip(&l.strides) {
            if s.len > 0 {
                offset += s.start as isize * st;
            }
            shape.push(s.len);
            strides.push(st * s.step);
        }
        if shape.contains(&0) {
            offset = l.offset as isize;
        }
        self.with_layout(Layout {
            shape,
            strides,
            offset: offset as usize,
        })
    }

    /// Reshape: a view when contiguous, otherwise a contiguous copy first.
    pub(crate) fn reshape_view(&self, shape: &[usize]) -> Tensor {
        let base = if self.is_contiguous() {
            self.clone()
        } else {
            self.contiguous()
        };
        let offset = base.layout.offset;
        base.with_layout(Layout {
            shape: Dims::from_slice(shape),
            strides: contiguous_strides(shape),
            offset,
        })
    }

    pub(crate) fn with_layout(&self, layout: Layout) -> Tensor {
        Tensor {
            storage: Arc::clone(&self.storage),
            layout: Arc::new(layout),
            dtype: self.dtype,
            device: self.device,
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({}{:?} on {}",
            self.dtype, self.layout.shape, self.device
        )?;
        if self.numel() <= 16
            && let Some(v) = self.to_f64_vec()
        {
            write!(f, " {v:?}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view: shape, strides, offset, and the elements it holds in C order.
    type Case = (&'static [usize], &'static [isize], usize, Vec<i32>);

    fn layout(shape: &[usize], strides: &[isize], offset: usize) -> Layout {
        Layout {
            shape: Dims::from_slice(shape),
            strides: Strides::from_slice(strides),
            offset,
        }
    }

    /// Every kind of view comes out in C order: contiguous with an offset, transposed,
    /// reversed (negative stride), broadcast (stride 0) along either axis, and a scalar.
    #[test]
    fn strided_views_gather_in_c_order() {
        let buf: Vec<i32> = (0..12).collect();
        let cases: [Case; 6] = [
            (&[2, 3], &[3, 1], 6, vec![6, 7, 8, 9, 10, 11]),
            (&[3, 2], &[1, 3], 0, vec![0, 3, 1, 4, 2, 5]),
            (&[2, 3], &[-3, -1], 11, vec![11, 10, 9, 8, 7, 6]),
            (&[2, 3], &[1, 0], 4, vec![4, 4, 4, 5, 5, 5]),
            (&[2, 1, 3], &[0, 7, 2], 1, vec![1, 3, 5, 1, 3, 5]),
            (&[1, 1], &[5, 9], 7, vec![7]),
        ];
        for (shape, strides, offset, want) in cases {
            let l = layout(shape, strides, offset);
            assert_eq!(
                gather_strided(&buf, &l),
                Some(want),
                "{shape:?} {strides:?} {offset}"
            );
        }
        assert_eq!(
            gather_strided(&buf, &layout(&[0, 3], &[3, 1], 0)),
            Some(vec![])
        );
    }

    /// Reading any window `start..start + len` of a view gives that window of the whole
    /// view in C order, whichever run or outer index the window starts and ends in.
    #[test]
    fn walks_read_any_window() {
        let buf: Vec<i32> = (0..24).collect();
        let views: [(&[usize], &[isize], usize); 6] = [
            (&[2, 3, 4], &[12, 4, 1], 0),
            (&[4, 3, 2], &[1, 4, 12], 0),
            (&[3, 5], &[1, 0], 2),
            (&[2, 3, 2], &[0, 2, -1], 5),
            (&[6], &[3], 1),
            (&[], &[], 9),
        ];
        for (shape, strides, offset) in views {
            let l = layout(shape, strides, offset);
            let all = gather_strided(&buf, &l).expect("inside the buffer");
            let walk = Walk::new(&l, buf.len()).expect("inside the buffer");
            for start in 0..all.len() {
                for len in 0..=all.len() - start {
                    let mut out = vec![-1; len];
                    walk.read(&buf, start, &mut out);
                    assert_eq!(out, all[start..start + len], "{shape:?} {start} {len}");
                }
            }
        }
    }

    /// Transposed views large enough for the tiled copy (`gather_transposed`), with
    /// edges that are not whole tiles, leading dims, an offset and a negative stride
    /// outside, come out as the element-by-element definition gives them.
    #[test]
    fn transposed_views_gather_like_the_definition() {
        let buf: Vec<i32> = (0..4000).collect();
        let views: [(&[usize], &[isize], usize); 5] = [
            (&[40, 37], &[1, 40], 0),
            (&[3, 20, 33], &[660, 1, 20], 0),
            (&[2, 17, 18], &[-1000, 1, 17], 1500),
            (&[16, 16], &[1, 16], 7),
            (&[19, 16], &[1, 23], 3),
        ];
        for (shape, strides, offset) in views {
            let l = layout(shape, strides, offset);
            let walk = Walk::new(&l, buf.len()).expect("inside the buffer");
            let want: Vec<i32> = (0..l.numel())
                .map(|i| {
                    let (mut rest, mut at) = (i, offset as isize);
                    for (&d, &s) in shape.iter().zip(strides).rev() {
                        at += (rest % d) as isize * s;
                        rest /= d;
                    }
                    buf[at as usize]
                })
                .collect();
            assert!(
                gather_transposed(&buf, &walk).is_some(),
                "{shape:?} takes the tiles"
            );
            assert_eq!(
                gather_strided(&buf, &l),
                Some(want),
                "{shape:?} {strides:?}"
            );
        }
    }

    /// A view that reaches past either end of its buffer is refused, not read.
    #[test]
    fn views_outside_the_buffer_are_refused() {
        let buf: Vec<i32> = (0..12).collect();
        assert_eq!(gather_strided(&buf, &layout(&[2, 3], &[3, 1], 7)), None);
        assert_eq!(gather_strided(&buf, &layout(&[2, 3], &[-3, 1], 2)), None);
        assert_eq!(gather_strided(&buf, &layout(&[4], &[isize::MAX], 0)), None);
    }
}
