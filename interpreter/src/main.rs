//! `ms`: the MindScript command line (`ms --help` lists the commands; `cli` has them).
//!
//! Exit status as LANGUAGE.md §12: 0 success, 1 an error in the program, 2 bad usage, 130
//! interrupted by Ctrl-C.

use std::process::ExitCode;

/// Eager evaluation allocates small shapes and buffers for every operation; mimalloc
/// serves them much faster than the system allocator (see BENCHMARKS.md, eager overhead).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ExitCode::from(interpreter::cli::main(std::env::args_os()) as u8)
}
