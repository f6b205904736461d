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
    keep_freed_memory();
    ExitCode::from(interpreter::cli::main(std::env::args_os()) as u8)
}

/// Freed memory stays with the allocator for a second before it goes back to the OS
/// (mimalloc's default is 10 ms), unless `MIMALLOC_PURGE_DELAY` says otherwise. A training
/// step frees and allocates the same megabyte-sized buffers every few milliseconds; memory
/// returned to the OS in between comes back as fresh pages that the kernel zeroes on first
/// touch, which took a fifth of a data-parallel training step's time on two cores
/// (BENCHMARKS.md, "Parallel speedup").
fn keep_freed_memory() {
    // mimalloc v2's `mi_option_purge_delay` (its mimalloc.h); libmimalloc-sys names the
    // options on either side of it (14 and 16) but not this one.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores the value of an option that mimalloc reads whenever
    // it considers purging; any delay in milliseconds is a valid value.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) }
}
