//! The counter-based random generator: Philox-4x32-10 (Salmon et al., "Parallel random
//! numbers: as easy as 1, 2, 3", SC 2011).
//!
//! A draw is a pure function of the key `(seed, offset)` and the element index, so the
//! numbers do not depend on the thread count, on how the work is chunked, or on the device:
//! any backend that implements the mapping below produces the same stream.
//!
//! The mapping, for element `i` of a draw with key `(seed, offset)` and `g = offset + i`
//! (wrapping in 64 bits); the Philox key is the seed's two 32-bit halves (low, high) and
//! the counter of block `b` is `(low32(b), high32(b), 0, 0)`:
//! - `f32` uniform: block `g / 4`, word `g % 4`; `u = (word >> 8) · 2⁻²⁴` in `[0, 1)`.
//! - `f64` uniform: block `g / 2`, words `2·(g % 2)` (high) and `+1` (low);
//!   `u = ((hi << 21) | (lo >> 11)) · 2⁻⁵³`.
//! - `f32` normal: block `g / 2`, words `w0 = 2·(g % 2)`, `w1 = w0 + 1`; Box–Muller with
//!   `u1 = 1 - (w0 >> 8)·2⁻²⁴` (never 0) and `u2 = (w1 >> 8)·2⁻²⁴`:
//!   `z = sqrt(-2 ln u1) · cos(2π u2)`, evaluated in f64 and rounded to f32.
//! - `f64` normal: block `g`, `u1 = 1 - ` the f64 uniform of words 0–1, `u2` that of words 2–3.
//!
//! The caller (the interpreter, or a staged graph's effect chain) advances `offset` by the
//! number of elements drawn, so consecutive draws never overlap.

use ir::{DType, RandomOp};
use rayon::prelude::*;

use super::PAR_MIN_ELEMS;
use crate::{DeviceError, Elem, Tensor};

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// One Philox-4x32-10 block: four 32-bit words for counter `ctr` under key `key`.
pub fn philox4x32(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = ctr;
    let [mut k0, mut k1] = key;
    for round in 0..10 {
        let p0 = u64::from(M0) * u64::from(c0);
        let p1 = u64::from(M1) * u64::from(c2);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        if round < 9 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
    }
    [c0, c1, c2, c3]
}

/// The block of 64-bit index `b` under `seed`.
fn block(seed: u64, b: u64) -> [u32; 4] {
    philox4x32(
        [b as u32, (b >> 32) as u32, 0, 0],
        [seed as u32, (seed >> 32) as u32],
    )
}

fn unit24(w: u32) -> f64 {
    f64::from(w >> 8) * (1.0 / 16_777_216.0)
}

fn unit53(hi: u32, lo: u32) -> f64 {
    (((u64::from(hi)) << 21) | u64::from(lo >> 11)) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

fn box_muller(u1: f64, u2: f64) -> f64 {
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Elements per Philox block for a distribution and dtype, and the value of element `g`
/// given its block.
fn element(op: RandomOp, dtype: DType, g: u64) -> (u64, impl Fn(&[u32; 4]) -> f64) {
    let per_block: u64 = match (op, dtype) {
        (RandomOp::Uniform, DType::F32) => 4,
        (RandomOp::Uniform, _) | (RandomOp::Normal, DType::F32) => 2,
        (RandomOp::Normal, _) => 1,
    };
    let lane = (g % per_block) as usize;
    let f = move |w: &[u32; 4]| match (op, dtype, per_block) {
        (RandomOp::Uniform, DType::F32, _) => unit24(w[lane]),
        (RandomOp::Uniform, _, _) => unit53(w[2 * lane], w[2 * lane + 1]),
        (RandomOp::Normal, DType::F32, _) => {
            box_muller(1.0 - unit24(w[2 * lane]), unit24(w[2 * lane + 1]))
        }
        (RandomOp::Normal, _, _) => box_muller(1.0 - unit53(w[0], w[1]), unit53(w[2], w[3])),
    };
    (g / per_block, f)
}

fn fill<T: Elem>(op: RandomOp, dtype: DType, seed: u64, start: u64, out: &mut [T]) {
    let mut cached: Option<(u64, [u32; 4])> = None;
    for (i, o) in out.iter_mut().enumerate() {
        let (b, value) = element(op, dtype, start.wrapping_add(i as u64));
        let words = match cached {
            Some((cb, w)) if cb == b => w,
            _ => {
                let w = block(seed, b);
                cached = Some((b, w));
                w
            }
        };
        let mut v = T::from_f64(value(&words));
        // Rounding an f64 just below 1 to f32 can give 1.0; keep uniforms in [0, 1).
        if op == RandomOp::Uniform && v.to_f64() >= 1.0 {
            v = T::from_f64(1.0 - f64::from(f32::EPSILON) / 2.0);
        }
        *o = v;
    }
}

/// Draws `shape` numbers of `dtype` from distribution `op` under `key = [seed, offset]`.
pub(crate) fn random(
    op: RandomOp,
    key: &Tensor,
    shape: &[usize],
    dtype: DType,
) -> Result<Tensor, DeviceError> {
    let k = key.to_vec::<i64>().unwrap_or_default();
    let (seed, offset) = (
        k.first().copied().unwrap_or(0) as u64,
        k.get(1).copied().unwrap_or(0) as u64,
    );
    let n: usize = shape.iter().product();
    let data = crate::with_elem!(dtype, T => {
        let mut out = crate::buffer::zeroed::<T>(n);
        if n >= PAR_MIN_ELEMS {
            out.par_chunks_mut(PAR_MIN_ELEMS).enumerate().for_each(|(c, part)| {
                // After Ctrl-C the chunks left stay zero; `CpuDevice::exec` discards them.
                if !crate::cancel::requested() {
                    fill(op, dtype, seed, offset.wrapping_add((c * PAR_MIN_ELEMS) as u64), part)
                }
            });
        } else {
            fill(op, dtype, seed, offset, &mut out);
        }
        T::into_buffer(out)
    }, else return Err(DeviceError::UnsupportedDType { op: op.name(), dtype, device: crate::DeviceId::Cpu }));
    Ok(Tensor::from_host_unchecked(data, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known-answer vectors of the Random123 distribution for Philox-4x32-10.
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }
}
