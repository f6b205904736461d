//! `stdlib` — the MindScript sources of the prelude (softmax, losses, layer norm...) and of
//! the `nn` module, embedded with `include_str!` so the `ms` binary needs no files at run
//! time. Compositions live here rather than in the primitive table so that the core stays
//! small and every composite op reads as teaching material. The sources arrive with the
//! interpreter and `nn` issues; until then the library is empty.

/// The standard modules as `(name, source)` pairs; empty until the interpreter can run them.
pub const MODULES: &[(&str, &str)] = &[];
