//! Embeds the explanation of every diagnostic code.
//!
//! Each code has one Markdown file `explain/EXXXX.md`. Generating the table from the folder
//! means adding a code is adding a file: no list to keep in sync by hand, and the test
//! `every_code_has_an_explanation` ties the codes the front end emits to these files.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("explain");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut codes: Vec<(String, String)> = Vec::new();
    for entry in fs::read_dir(&dir).expect("lang/explain exists") {
        let path = entry.expect("readable lang/explain entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(code) = name.strip_suffix(".md") else {
            continue;
        };
        let well_formed = code.len() == 5
            && code.starts_with('E')
            && code[1..].bytes().all(|b| b.is_ascii_digit());
        assert!(
            well_formed,
            "lang/explain/{name}: explanation files are named EXXXX.md"
        );
        println!("cargo:rerun-if-changed={}", path.display());
        codes.push((code.to_string(), path.display().to_string()));
    }
    codes.sort();
    let mut out = String::from("/// Every code with its explanation, sorted by code.\n");
    out.push_str("pub static EXPLANATIONS: &[(&str, &str)] = &[\n");
    for (code, path) in &codes {
        writeln!(out, "    ({code:?}, include_str!({path:?})),").expect("writing to a String");
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("explain.rs");
    fs::write(dest, out).expect("OUT_DIR is writable");
}
