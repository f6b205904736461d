//! Parsing must give back all the memory it takes: a REPL parses every entry, so a few
//! kilobytes kept per call would grow without bound over a long session.
//!
//! A counting global allocator tracks the bytes currently allocated. After a warm-up
//! (which lets one-time caches settle), hundreds more parses must leave that count where
//! it was, give or take a small slack. This file holds a single test so that no other
//! test allocates on another thread while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use lang::syntax::{parse, parse_expr};

/// The system allocator, counting the bytes that are currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// Converts a size to the signed type of the counter; no allocation is that large.
fn signed(size: usize) -> isize {
    isize::try_from(size).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards to `System`, which upholds the `GlobalAlloc` contract;
// the counter is only bookkeeping and does not affect the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations for `layout` are passed on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(signed(layout.size()), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's obligations for `layout` are passed on unchanged.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(signed(layout.size()), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`, as the caller promises.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(signed(layout.size()), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's obligations for `ptr`, `layout` and `new_size` are passed
        // on unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(signed(new_size) - signed(layout.size()), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The LANGUAGE.md programs, plus one with syntax errors so that error recovery (and the
/// diagnostics it builds) is exercised too.
const PROGRAMS: &[&str] = &[
    include_str!("parse/s01_first_look.ms"),
    include_str!("parse/s03_types.ms"),
    include_str!("parse/s04_expressions.ms"),
    include_str!("parse/s05_statements.ms"),
    include_str!("parse/s07_differentiation.ms"),
    include_str!("parse/s08_staging.ms"),
    include_str!("parse/s09_devices.ms"),
    include_str!("parse/s13_details.ms"),
    "fn f() {\n  let a = )\n  let b = *\n  a < b < c\n  x.y = 1\n}\nlet c = )\n",
];

const EXPRESSIONS: &[&str] = &[
    "if a.shape.0 > 2 { h } else { -h ** 2 }",
    "|x: f32[n]| { let y = x @ w + b; relu(y)[:, 0:k] }",
    "f(a: 1, 2",
];

/// Parses every program and expression once, dropping the results.
fn parse_all() {
    for src in PROGRAMS {
        drop(parse(src));
    }
    for src in EXPRESSIONS {
        drop(parse_expr(src));
    }
}

#[test]
fn parsing_does_not_leak() {
    for _ in 0..50 {
        parse_all();
    }
    let before = LIVE.load(Ordering::Relaxed);
    const ROUNDS: usize = 500;
    for _ in 0..ROUNDS {
        parse_all();
    }
    let grown = LIVE.load(Ordering::Relaxed) - before;
    let calls = ROUNDS * (PROGRAMS.len() + EXPRESSIONS.len());
    eprintln!("live bytes grew by {grown} over {calls} parses");
    const SLACK: isize = 64 << 10;
    assert!(
        grown <= SLACK,
        "parsing leaked: {grown} bytes stayed allocated after {calls} parses (about {} per parse)",
        grown / isize::try_from(calls).unwrap_or(1)
    );
}
