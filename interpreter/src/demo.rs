//! A two-layer perceptron trained on the UCI digits with hand-written backpropagation,
//! every step a primitive run on the CPU device.
//!
//! It exists to exercise the tensor core end to end (matmul with transposed views,
//! broadcasting, reductions, gathers through one-hot comparisons, the RNG, slicing) until
//! the language can express the same program; the loss and accuracy it prints are real.

use std::fmt;

use devices::{CpuDevice, Device, DeviceError, Tensor};
use ir::{ArgOp, BinaryOp, CmpOp, DType, Op, RandomOp, ReduceOp, Shape, SliceDim, UnaryOp};

/// What can go wrong in the demo.
#[derive(Debug)]
pub enum DemoError {
    /// The data file could not be read.
    Io(String, std::io::Error),
    /// A line of the CSV is malformed.
    Csv {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    /// A device operation failed.
    Device(DeviceError),
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::Io(p, e) => write!(f, "cannot read {p}: {e}"),
            DemoError::Csv {
                path,
                line,
                col,
                message,
            } => write!(f, "{path}:{line}:{col}: {message}"),
            DemoError::Device(e) => write!(f, "{e}"),
        }
    }
}

impl From<DeviceError> for DemoError {
    fn from(e: DeviceError) -> Self {
        DemoError::Device(e)
    }
}

/// The digits data: features scaled to `[0, 1]` and labels.
#[derive(Debug)]
pub struct Digits {
    /// `f32[n, 64]`.
    pub x: Tensor,
    /// `i64[n]`.
    pub y: Tensor,
}

/// Reads the digits CSV: 64 pixel values (0–16) then the label (0–9) per row, no header.
/// The file is read by the same reader as `load_csv`, so its errors name `file:line:col`.
pub fn load_digits(path: &str) -> Result<Digits, DemoError> {
    use crate::eval::builtins::data::{CellKind, Cells, CsvError, CsvFormat, Header, read_csv};
    let file = std::fs::File::open(path).map_err(|e| DemoError::Io(path.to_string(), e))?;
    let format = CsvFormat {
        delimiter: b',',
        header: Header::No,
        kind: CellKind::F32,
    };
    // The digits are 117 thousand cells; a file a hundred times larger is not them.
    let table = read_csv(file, format, None, &mut |n| n <= 1 << 24).map_err(|e| match e {
        CsvError::Io(e) => DemoError::Io(path.to_string(), e),
        CsvError::At { line, col, message } => DemoError::Csv {
            path: path.to_string(),
            line,
            col,
            message,
        },
        CsvError::Columns(message) => DemoError::Csv {
            path: path.to_string(),
            line: 1,
            col: 1,
            message,
        },
        CsvError::TooLarge { cells } => DemoError::Csv {
            path: path.to_string(),
            line: 1,
            col: 1,
            message: format!("more than {cells} cells: not the digits data"),
        },
    })?;
    if table.cols != 65 {
        return Err(DemoError::Csv {
            path: path.to_string(),
            line: 1,
            col: 1,
            message: format!("expected 65 fields, found {}", table.cols),
        });
    }
    let Cells::F32(cells) = table.cells else {
        return Err(DemoError::Csv {
            path: path.to_string(),
            line: 1,
            col: 1,
            message: "the cells were not read as numbers".to_string(),
        });
    };
    let n = table.rows;
    let mut xs = Vec::with_capacity(n * 64);
    let mut ys = Vec::with_capacity(n);
    for row in cells.chunks_exact(65) {
        let (pixels, label) = row.split_at(64);
        xs.extend(pixels.iter().map(|v| v / 16.0));
        ys.extend(label.iter().map(|&v| v as i64));
    }
    Ok(Digits {
        x: Tensor::from_vec(xs, &[n, 64])?,
        y: Tensor::from_vec(ys, &[n])?,
    })
}

/// A thin layer over the device so the training step reads like maths.
struct Ops<'d> {
    dev: &'d CpuDevice,
}

impl Ops<'_> {
    fn run(&self, op: Op, args: &[&Tensor]) -> Result<Tensor, DeviceError> {
        self.dev.exec(&op, args)
    }
    fn bin(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor, DeviceError> {
        self.run(Op::Binary { op }, &[a, b])
    }
    fn un(&self, op: UnaryOp, a: &Tensor) -> Result<Tensor, DeviceError> {
        self.run(Op::Unary { op }, &[a])
    }
    fn matmul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, DeviceError> {
        self.run(Op::MatMul {}, &[a, b])
    }
    fn t(&self, a: &Tensor) -> Result<Tensor, DeviceError> {
        self.run(Op::Transpose { perm: vec![1, 0] }, &[a])
    }
    fn reduce(
        &self,
        op: ReduceOp,
        a: &Tensor,
        axis: usize,
        keepdims: bool,
    ) -> Result<Tensor, DeviceError> {
        self.run(
            Op::Reduce {
                op,
                axes: vec![axis],
                keepdims,
            },
            &[a],
        )
    }
    fn scalar(&self, v: f32) -> Tensor {
        Tensor::scalar(v)
    }
    fn rows(&self, a: &Tensor, start: usize, len: usize) -> Result<Tensor, DeviceError> {
        let mut dims: Vec<SliceDim> = a.shape().iter().map(|&n| SliceDim::full(n)).collect();
        dims[0] = SliceDim {
            start,
            len,
            step: 1,
        };
        self.run(Op::Slice { dims }, &[a])
    }
    fn normal(
        &self,
        shape: &[usize],
        seed: i64,
        offset: i64,
        scale: f32,
    ) -> Result<Tensor, DeviceError> {
        let key = Tensor::from_vec(vec![seed, offset], &[2])?;
        let z = self.run(
            Op::Random {
                op: RandomOp::Normal,
                shape: Shape::known(shape),
                dtype: DType::F32,
            },
            &[&key],
        )?;
        self.bin(BinaryOp::Mul, &z, &self.scalar(scale))
    }
    /// `f32[n, 10]` one-hot rows of the labels.
    fn one_hot(&self, y: &Tensor, classes: usize) -> Result<Tensor, DeviceError> {
        let n = y.shape()[0];
        let iota = self.run(
            Op::Iota {
                shape: Shape::known(&[1, classes]),
                axis: 1,
                dtype: DType::I64,
            },
            &[],
        )?;
        let col = self.run(
            Op::Reshape {
                shape: Shape::known(&[n, 1]),
            },
            &[y],
        )?;
        let hit = self.run(Op::Compare { op: CmpOp::Eq }, &[&col, &iota])?;
        self.run(Op::Cast { dtype: DType::F32 }, &[&hit])
    }
}

/// Parameters of the 64-h-10 perceptron.
struct Params {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

/// One run's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Mean training loss of each epoch.
    pub losses: Vec<f32>,
    /// Accuracy on the held-out rows after training.
    pub test_accuracy: f32,
}

/// Trains on the first 80% of the rows and evaluates on the rest, printing each epoch's
/// mean loss through `log`.
pub fn train(
    data: &Digits,
    epochs: usize,
    hidden: usize,
    mut log: impl FnMut(&str),
) -> Result<Report, DemoError> {
    let dev = CpuDevice::new();
    let o = Ops { dev: &dev };
    let n = data.y.shape()[0];
    let n_train = n * 4 / 5;
    let (batch, lr) = (64usize, 0.1f32);
    let mut p = Params {
        w1: o.normal(&[64, hidden], 0, 0, (1.0 / 64f32).sqrt())?,
        b1: Tensor::from_vec(vec![0f32; hidden], &[hidden])?,
        w2: o.normal(
            &[hidden, 10],
            0,
            (64 * hidden) as i64,
            (1.0 / hidden as f32).sqrt(),
        )?,
        b2: Tensor::from_vec(vec![0f32; 10], &[10])?,
    };
    let mut losses = Vec::new();
    for epoch in 0..epochs {
        let (mut total, mut seen) = (0f32, 0usize);
        for start in (0..n_train).step_by(batch) {
            let len = batch.min(n_train - start);
            let xb = o.rows(&data.x, start, len)?;
            let yb = o.one_hot(&o.rows(&data.y, start, len)?, 10)?;
            // Forward: h = tanh(x W1 + b1), logits = h W2 + b2, p = softmax(logits).
            let h = o.un(
                UnaryOp::Tanh,
                &o.bin(BinaryOp::Add, &o.matmul(&xb, &p.w1)?, &p.b1)?,
            )?;
            let logits = o.bin(BinaryOp::Add, &o.matmul(&h, &p.w2)?, &p.b2)?;
            let shifted = o.bin(
                BinaryOp::Sub,
                &logits,
                &o.reduce(ReduceOp::Max, &logits, 1, true)?,
            )?;
            let e = o.un(UnaryOp::Exp, &shifted)?;
            let z = o.reduce(ReduceOp::Sum, &e, 1, true)?;
            let probs = o.bin(BinaryOp::Div, &e, &z)?;
            // Cross-entropy: log z - shifted[label], summed over the batch.
            let picked = o.reduce(
                ReduceOp::Sum,
                &o.bin(BinaryOp::Mul, &shifted, &yb)?,
                1,
                true,
            )?;
            let nll = o.bin(BinaryOp::Sub, &o.un(UnaryOp::Log, &z)?, &picked)?;
            let batch_loss = o.run(
                Op::Reduce {
                    op: ReduceOp::Sum,
                    axes: vec![0, 1],
                    keepdims: false,
                },
                &[&nll],
            )?;
            total += batch_loss
                .to_f64_vec()
                .unwrap_or_default()
                .first()
                .copied()
                .unwrap_or(0.0) as f32;
            seen += len;
            // Backward: d logits = (p - onehot) / len, then through both layers.
            let dlogits = o.bin(
                BinaryOp::Div,
                &o.bin(BinaryOp::Sub, &probs, &yb)?,
                &o.scalar(len as f32),
            )?;
            let dw2 = o.matmul(&o.t(&h)?, &dlogits)?;
            let db2 = o.reduce(ReduceOp::Sum, &dlogits, 0, false)?;
            let dh = o.matmul(&dlogits, &o.t(&p.w2)?)?;
            let one_minus_h2 = o.bin(
                BinaryOp::Sub,
                &o.scalar(1.0),
                &o.bin(BinaryOp::Mul, &h, &h)?,
            )?;
            let dz = o.bin(BinaryOp::Mul, &dh, &one_minus_h2)?;
            let dw1 = o.matmul(&o.t(&xb)?, &dz)?;
            let db1 = o.reduce(ReduceOp::Sum, &dz, 0, false)?;
            let step = |w: &Tensor, g: &Tensor| {
                o.bin(BinaryOp::Sub, w, &o.bin(BinaryOp::Mul, g, &o.scalar(lr))?)
            };
            p = Params {
                w1: step(&p.w1, &dw1)?,
                b1: step(&p.b1, &db1)?,
                w2: step(&p.w2, &dw2)?,
                b2: step(&p.b2, &db2)?,
            };
        }
        let mean = total / seen.max(1) as f32;
        log(&format!("epoch {:>2}  loss {mean:.4}", epoch + 1));
        losses.push(mean);
    }
    // Accuracy on the held-out rows: argmax of the logits against the labels.
    let xt = o.rows(&data.x, n_train, n - n_train)?;
    let yt = o.rows(&data.y, n_train, n - n_train)?;
    let h = o.un(
        UnaryOp::Tanh,
        &o.bin(BinaryOp::Add, &o.matmul(&xt, &p.w1)?, &p.b1)?,
    )?;
    let logits = o.bin(BinaryOp::Add, &o.matmul(&h, &p.w2)?, &p.b2)?;
    let pred = o.run(
        Op::ArgReduce {
            op: ArgOp::ArgMax,
            axis: 1,
            keepdims: false,
        },
        &[&logits],
    )?;
    let hits = o.run(Op::Compare { op: CmpOp::Eq }, &[&pred, &yt])?;
    let correct = o.run(
        Op::Reduce {
            op: ReduceOp::Sum,
            axes: vec![0],
            keepdims: false,
        },
        &[&hits],
    )?;
    let correct = correct
        .to_f64_vec()
        .unwrap_or_default()
        .first()
        .copied()
        .unwrap_or(0.0);
    Ok(Report {
        losses,
        test_accuracy: (correct / (n - n_train).max(1) as f64) as f32,
    })
}
