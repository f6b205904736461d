//! `ms`: the MindScript command line.
//!
//! Commands today: `ms check FILE.ms` (parse and type-check without running),
//! `ms explain [CODE]` (what a diagnostic code means) and `ms demo` (a training run written
//! directly against the CPU device). Exit status as LANGUAGE.md §12: 0 success, 1 an error
//! in the program, 2 bad usage.

use std::process::ExitCode;

use interpreter::cli;

/// Eager evaluation allocates small shapes and buffers for every operation; mimalloc
/// serves them much faster than the system allocator (see BENCHMARKS.md, eager overhead).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let status = match cli::Command::parse(&args) {
        Ok(command) => command.run(),
        Err(message) => {
            eprintln!("error: {message}\n\n{}", cli::USAGE);
            cli::Status::Usage
        }
    };
    ExitCode::from(status as u8)
}
