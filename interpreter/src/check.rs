//! `ms check`: parse and type-check a script, with its imports read from disk.
//!
//! `lang` is pure, so the file reading for `import "lib/util.ms" as util` happens here:
//! [`FileLoader`] resolves paths against the importing file's folder and keeps every text
//! it read, so diagnostics inside an imported file render with that file's lines.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use lang::check::{Checker, ModuleId, ModuleLoader};
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

/// What a [`FileLoader`] found: the modules it read and the imports it resolved.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Each module read, with its text, in the order read.
    pub files: Vec<(ModuleId, String)>,
    /// Each import resolved: the file it is written in (`None`: a text that is no file),
    /// the path as written, and the module it names.
    pub resolved: Vec<(Option<ModuleId>, String, ModuleId)>,
}

/// What a [`FileLoader`] found, shared with whoever runs the checked program.
pub type ReadFiles = Rc<RefCell<Loaded>>;

/// The largest file an import reads: a program is far smaller, and a limit keeps a
/// mistaken `import "data.csv"` from reading gigabytes.
const MAX_SOURCE_BYTES: u64 = 16 << 20;

/// Finds imported files relative to the importing file, reads them, and remembers what it
/// found.
///
/// A module's key is its canonical path, so the same file reached by two spellings
/// (`lib/../lib/util.ms`, a symbolic link) is one module, and two files imported by the
/// same string from different folders are two. Its name is the path relative to the
/// working directory (absolute when the two share only the root).
#[derive(Debug)]
pub struct FileLoader {
    base: PathBuf,
    read: ReadFiles,
}

impl FileLoader {
    /// A loader that resolves the imports of texts that are no file (REPL entries, a script
    /// whose path cannot be made canonical) against `base` (the empty path: the working
    /// directory), and the record it keeps of what it finds.
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

/// Why a file cannot be opened, in words: the message names no absolute path, since it is
/// shown beside the import's own span, which already says which file was meant.
fn reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    }
}

/// The module that the file at `path` is: its canonical path as the key, and a readable
/// name. `None` when the file cannot be found.
pub fn module_id(path: &Path) -> Option<ModuleId> {
    identify(path).ok()
}

fn identify(path: &Path) -> Result<ModuleId, String> {
    let canonical = std::fs::canonicalize(path).map_err(|e| reason(&e))?;
    if canonical.is_dir() {
        return Err("it is a folder, not a file".to_string());
    }
    let key = canonical
        .to_str()
        .ok_or_else(|| "its path is not valid UTF-8".to_string())?;
    let name = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .ok()
        .and_then(|cwd| relative_to(&canonical, &cwd))
        .unwrap_or_else(|| canonical.clone());
    Ok(ModuleId::new(key, name.to_string_lossy().as_ref()))
}

/// `path` relative to `base` (both absolute and canonical), stepping up with `..` where
/// needed; `None` when they share no more than the root, where the absolute path reads
/// better than a long climb.
fn relative_to(path: &Path, base: &Path) -> Option<PathBuf> {
    let (p, b): (Vec<_>, Vec<_>) = (path.components().collect(), base.components().collect());
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let shares_more_than_root = p
        .iter()
        .take(common)
        .any(|c| matches!(c, std::path::Component::Normal(_)));
    if !shares_more_than_root {
        return None;
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    Some(out)
}

impl ModuleLoader for FileLoader {
    fn resolve(&mut self, from: Option<&ModuleId>, path: &str) -> Result<ModuleId, String> {
        let dir = match from {
            Some(f) => Path::new(&**f.key())
                .parent()
                .map_or_else(PathBuf::new, Path::to_path_buf),
            None => self.base.clone(),
        };
        let id = identify(&dir.join(path))?;
        self.read
            .borrow_mut()
            .resolved
            .push((from.cloned(), path.to_string(), id.clone()));
        Ok(id)
    }

    fn read(&mut self, id: &ModuleId) -> Result<String, String> {
        use std::io::Read as _;
        let file = std::fs::File::open(&**id.key()).map_err(|e| reason(&e))?;
        let mut text = String::new();
        file.take(MAX_SOURCE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| reason(&e))?;
        if text.len() as u64 > MAX_SOURCE_BYTES {
            return Err(format!(
                "the file is larger than {} MiB, too large for a program",
                MAX_SOURCE_BYTES >> 20
            ));
        }
        self.read
            .borrow_mut()
            .files
            .push((id.clone(), text.clone()));
        Ok(text)
    }
}

/// Parses and checks `text` (shown as `name`), the text of the file `script` when it is
/// one: its imports resolve against the script's folder (without a script, against the
/// working directory).
pub fn check_text(name: &str, text: &str, script: Option<&Path>) -> CheckReport {
    let base = script
        .and_then(Path::parent)
        .map_or_else(PathBuf::new, Path::to_path_buf);
    let origin = script.and_then(module_id);
    let (loader, read) = FileLoader::new(base);
    let mut checker = Checker::with_loader(Box::new(loader));
    let (program, mut diagnostics) = lang::syntax::parse(text);
    diagnostics.extend(checker.check_program_in(text, &program, origin.as_ref()));
    diagnostics.sort_by_key(|d| (d.file.is_some(), d.primary.span.start));
    drop(checker);
    // The standard modules are sources too: a diagnostic may point into `nn`.
    let imports = read
        .take()
        .files
        .into_iter()
        .map(|(id, text)| (id.name().to_string(), text))
        .chain(
            stdlib::MODULES
                .iter()
                .map(|(name, text)| (name.to_string(), text.to_string())),
        )
        .collect();
    CheckReport {
        name: name.to_string(),
        text: text.to_string(),
        imports,
        diagnostics,
    }
}
