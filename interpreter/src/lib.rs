//! `interpreter` — the MindScript session and the `ms` command line.
//!
//! This is the only crate that does user IO: it reads files and arguments and prints. The
//! eager evaluator, the REPL and `Session::eval` arrive with the interpreter issue; today
//! the crate holds [`demo`], a training run written directly against the primitive table
//! and the CPU device, which exercises the kernels end to end on the digits data set.

pub mod check;
pub mod cli;
pub mod demo;
pub mod print;
