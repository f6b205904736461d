//! `ms check`: parse and type-check a script, with its imports read from disk.
//!
//! `lang` is pure, so the file reading for `import "lib/util.ms" as util` happens here:
//! [`FileLoader`] resolves paths against the importing script's folder and keeps every
//! text it read, so diagnostics inside an imported file render with that file's lines.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use lang::check::{Checker, ModuleLoader};
use lang::diagnostics::{RenderOptions, SourceFile, render_all};
use lang::{Diagnostic, Severity};

/// The result of checking one text: its diagnostics and every source they may point into.
#[derive(Debug)]
pub struct CheckReport {
    name: String,
    text: String,
    imports: Vec<(String, String)>,
    /// What was found, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl CheckReport {
    /// True when at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Every diagnostic rendered for people.
    pub fn render(&self, options: RenderOptions) -> String {
        let main = SourceFile {
            name: &self.name,
            text: &self.text,
        };
        let imports: Vec<SourceFile<'_>> = self
            .imports
            .iter()
            .map(|(name, text)| SourceFile { name, text })
            .collect();
        render_all(&self.diagnostics, main, &imports, options)
    }

    /// `error: 2 errors found in mlp.ms` (and warnings), for the end of the output.
    pub fn summary(&self) -> String {
        let count = |sev| {
            self.diagnostics
                .iter()
                .filter(|d| d.severity == sev)
                .count()
        };
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
        let mut s = format!("error: {} found in {}", plural(errors, "error"), self.name);
        if warnings > 0 {
            s.push_str(&format!(" (and {})", plural(warnings, "warning")));
        }
        s
    }
}

/// The files a [`FileLoader`] read: each path as written in its import, and the text.
pub type ReadFiles = Rc<RefCell<Vec<(String, String)>>>;

/// The largest file an import reads: a program is far smaller, and a limit keeps a
/// mistaken `import "data.csv"` from reading gigabytes.
const MAX_SOURCE_BYTES: u64 = 16 << 20;

/// Reads imported files relative to a folder and remembers what it read.
///
/// Paths resolve against the one folder (the main script's), also for an import written
/// inside an imported file: the checker asks for a file by its path alone and keys the
/// module by it, so one path means one module throughout a program.
#[derive(Debug)]
pub struct FileLoader {
    base: PathBuf,
    read: ReadFiles,
}

impl FileLoader {
    /// A loader reading relative to `base` (the empty path: the working directory), and
    /// the list it records every text it reads in.
    pub fn new(base: PathBuf) -> (FileLoader, ReadFiles) {
        let read = ReadFiles::default();
        (
            FileLoader {
                base,
                read: Rc::clone(&read),
            },
            read,
        )
    }
}

impl ModuleLoader for FileLoader {
    fn load(&mut self, path: &str) -> Result<String, String> {
        use std::io::Read as _;
        let full = self.base.join(path);
        // The message names no absolute path: it is shown beside the import's own span,
        // which already says which file was meant.
        let reason = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => e.to_string(),
        };
        let file = std::fs::File::open(&full).map_err(reason)?;
        let mut text = String::new();
        file.take(MAX_SOURCE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(reason)?;
        if text.len() as u64 > MAX_SOURCE_BYTES {
            return Err(format!(
                "the file is larger than {} MiB, too large for a program",
                MAX_SOURCE_BYTES >> 20
            ));
        }
        self.read
            .borrow_mut()
            .push((path.to_string(), text.clone()));
        Ok(text)
    }
}

/// Parses and checks `text` (shown as `name`), reading imports relative to `base`.
pub fn check_text(name: &str, text: &str, base: Option<&Path>) -> CheckReport {
    let (loader, read) = FileLoader::new(base.map_or_else(PathBuf::new, Path::to_path_buf));
    let mut checker = Checker::with_loader(Box::new(loader));
    let (program, mut diagnostics) = lang::syntax::parse(text);
    diagnostics.extend(checker.check_program(text, &program));
    diagnostics.sort_by_key(|d| (d.file.is_some(), d.primary.span.start));
    drop(checker);
    let imports = read.take();
    CheckReport {
        name: name.to_string(),
        text: text.to_string(),
        imports,
        diagnostics,
    }
}
