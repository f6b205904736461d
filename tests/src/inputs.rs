//! Seeded, deterministic input generation: a tiny SplitMix64 generator, value domains, and
//! operands built as device tensors (contiguous or as strided views) together with their
//! reference values.

use devices::{CpuDevice, Device, Tensor};
use ir::{DType, Op, Shape, SliceDim};

use crate::reference::{self, RefTensor};

/// SplitMix64 (Steele, Lea and Flood): tiny, fast and good enough for test inputs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator seeded from a name (FNV-1a), so each table gets its own stream.
    pub fn from_name(name: &str) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform on `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `lo..=hi`.
    pub fn int_in(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (i128::from(hi) - i128::from(lo) + 1) as u128;
        (i128::from(lo) + (u128::from(self.next_u64()) % span) as i128) as i64
    }

    /// Uniform index below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability one half.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

/// Where the values of an operand come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Domain {
    /// Uniform on `[lo, hi)`.
    Uniform(f64, f64),
    /// Magnitude log-uniform on `[lo, hi]` (both positive), with a random sign if `signed`.
    LogUniform {
        /// Smallest magnitude.
        lo: f64,
        /// Largest magnitude.
        hi: f64,
        /// Whether to flip signs at random.
        signed: bool,
    },
    /// Integers uniform in `lo..=hi` (also usable for float dtypes, to make ties).
    Ints(i64, i64),
    /// Integers uniform in `lo..=hi` except zero.
    NonZeroInts(i64, i64),
    /// `false` and `true`.
    Bools,
    /// These values in order, repeated to fill.
    Cycle(Vec<f64>),
}

/// Shorthand for [`Domain::LogUniform`] with a random sign.
pub fn log_signed(lo: f64, hi: f64) -> Domain {
    Domain::LogUniform {
        lo,
        hi,
        signed: true,
    }
}

/// Shorthand for [`Domain::LogUniform`] with positive values.
pub fn log_pos(lo: f64, hi: f64) -> Domain {
    Domain::LogUniform {
        lo,
        hi,
        signed: false,
    }
}

impl Domain {
    /// `n` values, as `f64`, before fitting to a dtype.
    pub fn sample(&self, rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| match self {
                Domain::Uniform(lo, hi) => lo + (hi - lo) * rng.unit(),
                Domain::LogUniform { lo, hi, signed } => {
                    let m = (lo.ln() + (hi.ln() - lo.ln()) * rng.unit()).exp();
                    if *signed && rng.coin() { -m } else { m }
                }
                Domain::Ints(lo, hi) => rng.int_in(*lo, *hi) as f64,
                Domain::NonZeroInts(lo, hi) => loop {
                    let v = rng.int_in(*lo, *hi);
                    if v != 0 {
                        break v as f64;
                    }
                },
                Domain::Bools => f64::from(u8::from(rng.coin())),
                Domain::Cycle(vals) => vals[i % vals.len()],
            })
            .collect()
    }
}

/// The value a tensor of `dtype` holds for a generated `v`: floats round to the dtype,
/// integers round to the nearest and clamp into range, bools are "non-zero".
pub fn fit(dtype: DType, v: f64) -> f64 {
    match dtype {
        DType::F32 => v as f32 as f64,
        DType::I32 => v.round() as i32 as f64,
        DType::I64 => v.round() as i64 as f64,
        DType::Bool => f64::from(u8::from(v != 0.0)),
        DType::F64 | DType::BF16 | DType::F16 => v,
    }
}

/// A contiguous device tensor of `dtype` holding exactly `data` (already fitted).
pub fn tensor(dtype: DType, dims: &[usize], data: &[f64]) -> Tensor {
    let t = match dtype {
        DType::F32 => Tensor::from_vec(data.iter().map(|&v| v as f32).collect(), dims),
        DType::F64 => Tensor::from_vec(data.to_vec(), dims),
        DType::I32 => Tensor::from_vec(data.iter().map(|&v| v as i32).collect(), dims),
        DType::I64 => Tensor::from_vec(data.iter().map(|&v| v as i64).collect(), dims),
        DType::Bool => Tensor::from_vec(data.iter().map(|&v| v != 0.0).collect(), dims),
        DType::BF16 | DType::F16 => panic!("no host tensors of {dtype}"),
    };
    t.expect("the data fills the dims")
}

/// How an operand is laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// A fresh C-order tensor.
    Contiguous,
    /// The last two axes of a contiguous tensor swapped (a transpose view). Rank < 2 falls
    /// back to [`View::Reversed`].
    Transposed,
    /// Every axis walked backwards (a slice view with step -1: negative strides).
    Reversed,
    /// Every other element of a longer last axis (a slice view with step 2).
    Strided,
    /// The first axis longer than 1 stretched from size 1 (a broadcast view: stride 0).
    Broadcast,
}

/// A device tensor together with its reference value.
#[derive(Clone, Debug)]
pub struct Operand {
    /// What the device computes on.
    pub tensor: Tensor,
    /// The same values for the reference.
    pub reference: RefTensor,
}

impl Operand {
    /// An operand holding exactly these values (fitted to `dtype`).
    pub fn exact(dtype: DType, dims: &[usize], data: &[f64]) -> Operand {
        let data: Vec<f64> = data.iter().map(|&v| fit(dtype, v)).collect();
        Operand {
            tensor: tensor(dtype, dims, &data),
            reference: RefTensor::new(dtype, dims, data),
        }
    }

    /// Applies a movement op to both the device tensor and the reference, and checks that
    /// the view's elements are the reference's.
    pub fn apply(&self, op: &Op) -> Operand {
        let t = CpuDevice::new()
            .exec(op, &[&self.tensor])
            .unwrap_or_else(|e| panic!("building a view with {op:?}: {e}"));
        let r = reference::eval(op, &[&self.reference])
            .unwrap_or_else(|e| panic!("reference view {op:?}: {e:?}"));
        assert_eq!(
            t.to_f64_vec()
                .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
            Some(r.data.iter().map(|x| x.to_bits()).collect()),
            "the view {op:?} of {:?} does not hold the reference's elements",
            self.tensor
        );
        Operand {
            tensor: t,
            reference: r,
        }
    }
}

/// An operand of `dtype` and `dims` with values from `domain`, laid out as `view`.
pub fn operand(
    rng: &mut Rng,
    dtype: DType,
    dims: &[usize],
    domain: &Domain,
    view: View,
) -> Operand {
    let fresh = |rng: &mut Rng, dims: &[usize]| {
        let domain = match (dtype, domain) {
            (DType::Bool, Domain::Cycle(_)) => domain.clone(),
            (DType::Bool, _) => Domain::Bools,
            _ => domain.clone(),
        };
        Operand::exact(dtype, dims, &domain.sample(rng, reference::numel(dims)))
    };
    let rank = dims.len();
    match view {
        View::Contiguous => fresh(rng, dims),
        View::Transposed if rank >= 2 => {
            let mut perm: Vec<usize> = (0..rank).collect();
            perm.swap(rank - 2, rank - 1);
            let base: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
            fresh(rng, &base).apply(&Op::Transpose { perm })
        }
        View::Transposed | View::Reversed if rank >= 1 => {
            let sl = dims
                .iter()
                .map(|&d| SliceDim {
                    start: d.saturating_sub(1),
                    len: d,
                    step: -1,
                })
                .collect();
            fresh(rng, dims).apply(&Op::Slice { dims: sl })
        }
        View::Strided if rank >= 1 => {
            let mut base = dims.to_vec();
            base[rank - 1] = 2 * dims[rank - 1] + 1;
            let mut sl: Vec<SliceDim> = base.iter().map(|&d| SliceDim::full(d)).collect();
            sl[rank - 1] = SliceDim {
                start: usize::from(dims[rank - 1] > 0),
                len: dims[rank - 1],
                step: 2,
            };
            fresh(rng, &base).apply(&Op::Slice { dims: sl })
        }
        View::Broadcast => match dims.iter().position(|&d| d > 1) {
            Some(axis) => {
                let mut base = dims.to_vec();
                base[axis] = 1;
                fresh(rng, &base).apply(&Op::Broadcast {
                    shape: Shape::known(dims),
                })
            }
            None => fresh(rng, dims),
        },
        View::Transposed | View::Reversed | View::Strided => fresh(rng, dims),
    }
}
