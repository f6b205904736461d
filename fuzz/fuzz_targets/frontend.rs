//! Lex + parse + check arbitrary bytes: no panic, no hang, no stack overflow, and every
//! diagnostic span inside the source on char boundaries.

#![no_main]

use lang::check::Checker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let (program, mut diags) = lang::syntax::parse(src);
    diags.extend(Checker::new().check_program(src, &program));
    for d in &diags {
        for span in std::iter::once(d.primary.span).chain(d.labels.iter().map(|l| l.span)) {
            assert!(span.start <= span.end && span.end <= src.len(), "span {span:?} outside");
            assert!(src.is_char_boundary(span.start) && src.is_char_boundary(span.end));
        }
    }
});
