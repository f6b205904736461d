//! `ms-tests` — MindScript's integration test harness.
//!
//! The library half holds what the test files share:
//! - [`reference`]: a deliberately naive `f64` evaluator of every primitive, the oracle of
//!   the kernel conformance tests;
//! - [`inputs`]: a seeded SplitMix64 generator, value domains and operand builders (including
//!   strided, reversed and stretched views);
//! - [`cases`]: the conformance case table, at least six cases per primitive;
//! - [`grad_specs`]: one gradient spec per differentiable primitive and an `ir::Emit` over
//!   the reference that records, for checking `autodiff::rules` (`tests/grad.rs`);
//! - [`harness`]: runs one case on a device and compares it with the reference, with the
//!   tolerances stated in its module doc;
//! - [`programs`]: seeded generators of valid and damaged MindScript programs for the
//!   front end's robustness tests and benchmark;
//! - [`staged_programs`]: a seeded generator of well-typed programs with control flow,
//!   closures and helpers, and the steps that shrink one, for the eager == staged test
//!   (`tests/staged_gen.rs`).
//!
//! The tests themselves live in `tests/`: `conformance.rs` (the table against the CPU
//! device, plus a coverage check that no primitive is missing), `laws.rs` (proptest laws:
//! `ir::infer` agrees with the kernels, round trips, sums over splits and broadcasts),
//! `rng.rs` (the counter-based generator's guarantees and statistics) and `bad_input.rs`
//! (errors as data, never a panic).

pub mod cases;
pub mod grad_specs;
pub mod harness;
pub mod inputs;
pub mod programs;
pub mod reference;
pub mod staged_programs;
