//! The explanation of every diagnostic code, embedded from `lang/explain/EXXXX.md`.

include!(concat!(env!("OUT_DIR"), "/explain.rs"));

/// The explanation of `code` (`"E0301"`, case-insensitive), as Markdown.
pub fn explain(code: &str) -> Option<&'static str> {
    let code = code.trim();
    EXPLANATIONS
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(code))
        .map(|(_, text)| *text)
}

/// Every code that has an explanation, sorted.
pub fn codes() -> impl Iterator<Item = &'static str> {
    EXPLANATIONS.iter().map(|(c, _)| *c)
}

/// The one-line title of `code`: the first line of its explanation without `# EXXXX: `.
pub fn title(code: &str) -> Option<&'static str> {
    let first = explain(code)?.lines().next()?;
    let rest = first.trim_start_matches('#').trim();
    Some(rest.split_once(':').map_or(rest, |(_, t)| t.trim()))
}
