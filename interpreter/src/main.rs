//! `ms`: the MindScript command line (`ms --help` lists the commands; `cli` has them).
//!
//! Exit status as LANGUAGE.md §12: 0 success, 1 an error in the program, 2 bad usage, 130
//! interrupted by Ctrl-C.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(interpreter::cli::main(std::env::args_os()) as u8)
}
