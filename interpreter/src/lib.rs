//! `interpreter` — the MindScript session and the `ms` command line.
//!
//! This is the only crate that does user IO: it reads files and arguments and prints.
//! [`Session::eval`] parses, checks and runs one entry with the eager evaluator (`eval`,
//! private: values in [`value`]); [`demo`] is a training run written directly against the
//! primitive table and the CPU device.

pub mod check;
pub mod cli;
pub mod demo;
pub(crate) mod eval;
pub mod insight;
pub(crate) mod io;
pub mod print;
pub mod repl;
pub mod session;
pub(crate) mod stage;
pub mod value;

pub use io::onnx;
pub use session::{
    CheckSummary, ExportFailure, IrStage, MirModel, OnnxModel, OnnxOptions, Options, Outcome,
    Session,
};
pub use stage::export::ExportSummary;
pub use value::Value;
