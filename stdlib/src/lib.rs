//! `stdlib` — the MindScript sources of the prelude (softmax, losses, layer norm...) and of
//! the `nn` module, embedded with `include_str!` so the `ms` binary needs no files at run
//! time. Compositions live here rather than in the primitive table so that the core stays
//! small and every composite op reads as teaching material. The crate is pure: it holds
//! text, and the interpreter parses, checks and runs it.

/// The prelude: the builtins of LANGUAGE.md §10 that are compositions of primitives
/// (`softmax`, the losses, `layer_norm`, `attention`, ...), as MindScript functions with
/// the parameter names of the checker's signatures. Its header comment says how the
/// interpreter runs it and which conventions it follows.
pub const PRELUDE: &str = include_str!("prelude.ms");

/// The `nn` module: layers with their `init_*` functions, initializers, losses, optimizers,
/// gradient clipping and learning-rate schedules, written in MindScript. `import nn` checks
/// and runs it like an imported file.
pub const NN: &str = include_str!("nn.ms");

/// The standard modules as `(name, source)` pairs, sorted by name: what `import NAME`
/// (without a path) may name.
pub const MODULES: &[(&str, &str)] = &[("nn", NN)];

/// The source of the standard module `name`, if there is one.
pub fn module(name: &str) -> Option<&'static str> {
    MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| *src)
}
