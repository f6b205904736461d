//! The data builtins of LANGUAGE.md §10: `load_csv`, `shuffle`, `split_train_test`, and
//! `arg` for script arguments; also the CSV reader the `ms demo` command shares.
//!
//! Decisions, where the language leaves room:
//!
//! - `load_csv(path, header: false, delimiter: ",", dtype: "f32")` returns a matrix
//!   `dtype[rows, cols]` (the checker's rule: two unknown dims). Every line is a row;
//!   blank lines are skipped; every row must have as many cells as the first. A cell is a
//!   number (for a float dtype), an integer (for an integer dtype) or `true`/`false`/`1`/`0`
//!   (for `bool`), with spaces around it allowed. `header: true` skips the first line
//!   unread; without it a non-numeric cell (a header too) is an error naming
//!   `file:line:col`. Quoted cells are not supported: the files are numeric tables.
//! - A relative path is relative to the working directory, as in Python's `open`.
//! - A file that cannot be opened or read, or a cell that does not parse, is E0912 at the
//!   call, with the OS's reason or the position of the cell.
//! - The file is read as a stream: memory holds one cell of text and the numbers read so
//!   far, and before the numbers grow the device is asked whether a tensor of that size
//!   is allowed, so a huge file meets the device's tensor cap (E0905) instead of
//!   exhausting memory, and a line of garbage meets the cell length limit.
//! - `shuffle(data)` permutes the rows (axis 0) of every leaf with one permutation drawn
//!   from the session's random stream (so `seed(n)` makes it repeatable), as `batches`
//!   with `shuffle: true` does.
//! - `split_train_test(data, test, shuffle: true)` returns `(train, test)`. A float `test`
//!   is the fraction of rows for the test part (rounded up, as scikit-learn's
//!   `test_size`), an integer is their number. With `shuffle: true` (the default, as in
//!   scikit-learn) the rows are permuted first with the session's stream; with
//!   `shuffle: false` the test part is the last rows.
//! - `arg(name, default)` reads `--name VALUE` or `--name=VALUE` from the words after the
//!   script's name (`--learning-rate` also matches `learning_rate`); the last occurrence
//!   wins. The value is parsed to the default's type: an integer, a float, a bool
//!   (`true`/`false`; a bare `--name` is `true`) or a string. A value that does not parse
//!   is E0909 naming the argument.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use devices::Tensor;
use ir::{DType, Op, RandomOp, Shape, SliceDim};
use lang::{Diagnostic, Span};

use super::{Call, scalar_f64, strong};
use crate::eval::Eval;
use crate::eval::errors::{self, Flow, R};
use crate::value::{TensorVal, Value};

// ---------------------------------------------------------------------------------------
// The CSV reader.

/// The longest cell, in bytes: numbers are short, and a limit keeps a file without
/// delimiters or newlines from filling memory one cell at a time.
const MAX_CELL: usize = 256;

/// What the cells of a CSV file are read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CellKind {
    /// Numbers, rounded to `f32`.
    F32,
    /// Numbers as `f64`.
    F64,
    /// Integers.
    I64,
    /// `true`, `false`, `1` or `0`.
    Bool,
}

impl CellKind {
    /// The kind that reads cells for a tensor of `dtype` (narrower dtypes are cast after).
    pub(crate) fn for_dtype(dtype: DType) -> CellKind {
        match dtype {
            DType::F64 => CellKind::F64,
            DType::Bool => CellKind::Bool,
            d if d.is_int() => CellKind::I64,
            _ => CellKind::F32,
        }
    }

    /// The dtype the cells are held in.
    pub(crate) fn dtype(self) -> DType {
        match self {
            CellKind::F32 => DType::F32,
            CellKind::F64 => DType::F64,
            CellKind::I64 => DType::I64,
            CellKind::Bool => DType::Bool,
        }
    }
}

/// Whether a CSV file starts with a header line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// The first line names the columns.
    Yes,
    /// Every line is data.
    No,
    /// The first line is a header when one of its non-empty cells is neither a number nor
    /// `true`/`false` (see the module documentation).
    Detect,
}

/// How a CSV file is laid out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CsvFormat {
    /// The byte between cells (ASCII).
    pub delimiter: u8,
    /// Whether the first line is a header.
    pub header: Header,
    /// What the cells are.
    pub kind: CellKind,
}

/// The longest header line, in bytes: column names are short, and a limit keeps a file
/// without newlines from filling memory while its first line is read.
const MAX_HEADER_LINE: usize = 1 << 20;

/// Whether a cell of a first line looks like data: a number or a bool.
fn looks_like_data(cell: &str) -> bool {
    cell.parse::<f64>().is_ok() || matches!(cell, "true" | "false")
}

/// The cells of a first line, trimmed, with one pair of surrounding double quotes removed
/// (spreadsheet programs quote column names).
fn line_cells(line: &[u8], delimiter: u8) -> Vec<String> {
    let text = String::from_utf8_lossy(line.trim_ascii());
    text.split(char::from(delimiter))
        .map(|c| {
            let c = c.trim();
            c.strip_prefix('"')
                .and_then(|c| c.strip_suffix('"'))
                .unwrap_or(c)
                .to_string()
        })
        .collect()
}

/// The cells read, row after row.
#[derive(Debug, PartialEq)]
pub(crate) enum Cells {
    /// [`CellKind::F32`].
    F32(Vec<f32>),
    /// [`CellKind::F64`].
    F64(Vec<f64>),
    /// [`CellKind::I64`].
    I64(Vec<i64>),
    /// [`CellKind::Bool`].
    Bool(Vec<bool>),
}

impl Cells {
    fn new(kind: CellKind) -> Cells {
        match kind {
            CellKind::F32 => Cells::F32(Vec::new()),
            CellKind::F64 => Cells::F64(Vec::new()),
            CellKind::I64 => Cells::I64(Vec::new()),
            CellKind::Bool => Cells::Bool(Vec::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Cells::F32(v) => v.len(),
            Cells::F64(v) => v.len(),
            Cells::I64(v) => v.len(),
            Cells::Bool(v) => v.len(),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Cells::F32(v) => v.capacity(),
            Cells::F64(v) => v.capacity(),
            Cells::I64(v) => v.capacity(),
            Cells::Bool(v) => v.capacity(),
        }
    }

    /// Makes room for `more` cells without aborting when memory runs out.
    fn try_reserve(&mut self, more: usize) -> bool {
        match self {
            Cells::F32(v) => v.try_reserve_exact(more).is_ok(),
            Cells::F64(v) => v.try_reserve_exact(more).is_ok(),
            Cells::I64(v) => v.try_reserve_exact(more).is_ok(),
            Cells::Bool(v) => v.try_reserve_exact(more).is_ok(),
        }
    }

    /// Parses `text` as one more cell, or says why it is not one.
    fn push(&mut self, text: &str) -> Result<(), String> {
        match self {
            Cells::F32(v) => v.push(text.parse().map_err(|_| not_a("number", text))?),
            Cells::F64(v) => v.push(text.parse().map_err(|_| not_a("number", text))?),
            Cells::I64(v) => v.push(text.parse().map_err(|_| not_a("integer", text))?),
            Cells::Bool(v) => v.push(match text {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(format!("`{text}` is not a bool (true, false, 1 or 0)")),
            }),
        }
        Ok(())
    }

    /// The cells as a `[rows, cols]` tensor.
    pub(crate) fn into_tensor(
        self,
        rows: usize,
        cols: usize,
    ) -> Result<Tensor, devices::DeviceError> {
        let shape = [rows, cols];
        match self {
            Cells::F32(v) => Tensor::from_vec(v, &shape),
            Cells::F64(v) => Tensor::from_vec(v, &shape),
            Cells::I64(v) => Tensor::from_vec(v, &shape),
            Cells::Bool(v) => Tensor::from_vec(v, &shape),
        }
    }
}

fn not_a(what: &str, text: &str) -> String {
    format!(
        "`{text}` is not {} {what}",
        if what == "integer" { "an" } else { "a" }
    )
}

/// A CSV file read into a table.
#[derive(Debug, PartialEq)]
pub(crate) struct Table {
    /// The number of rows.
    pub rows: usize,
    /// The number of cells in each row.
    pub cols: usize,
    /// The cells, row after row.
    pub cells: Cells,
    /// The names of the header line, when the file has one.
    pub names: Option<Vec<String>>,
}

/// Why a CSV file could not be read.
#[derive(Debug)]
pub(crate) enum CsvError {
    /// Reading failed.
    Io(std::io::Error),
    /// A cell or row is malformed: 1-based line and column (in characters) of the cell.
    At {
        /// The line.
        line: usize,
        /// The column where the cell starts.
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// The columns `columns:` names do not fit the header (the message follows the file's
    /// name).
    Columns(String),
    /// The table would hold more cells than `room` allowed (or memory could hold).
    TooLarge {
        /// How many cells were read before one more was refused.
        cells: usize,
    },
}

/// Where the reader is in the file.
struct Cursor {
    line: usize,
    col: usize,
    cell_col: usize,
    cell: Vec<u8>,
    cell_too_long: bool,
    row_cells: usize,
    cols: Option<usize>,
    rows: usize,
    /// Which columns are kept (`columns:`); `None` keeps all.
    keep: Option<Vec<bool>>,
}

/// Reads a numeric CSV table from `input`. `room(n)` is asked before the cells grow to
/// hold `n` values and says whether that many are allowed; a refusal is
/// [`CsvError::TooLarge`].
pub(crate) fn read_csv(
    input: impl Read,
    format: CsvFormat,
    columns: Option<&[String]>,
    room: &mut dyn FnMut(usize) -> bool,
) -> Result<Table, CsvError> {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut cells = Cells::new(format.kind);
    let mut at = Cursor {
        line: 1,
        col: 1,
        cell_col: 1,
        cell: Vec::with_capacity(MAX_CELL),
        cell_too_long: false,
        row_cells: 0,
        cols: None,
        rows: 0,
        keep: None,
    };
    // A UTF-8 byte order mark, which spreadsheet programs write, is not part of the first
    // cell.
    loop {
        match reader.fill_buf() {
            Ok(b) => {
                if b.starts_with(&[0xEF, 0xBB, 0xBF]) {
                    reader.consume(3);
                }
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CsvError::Io(e)),
        }
    }
    let mut names = None;
    if format.header != Header::No {
        // The first line is read whole to decide whether it is a header; when it is data
        // it goes through the cell reader like any other line.
        let mut line = Vec::new();
        (&mut reader)
            .take(MAX_HEADER_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(CsvError::Io)?;
        if line.len() > MAX_HEADER_LINE {
            return Err(CsvError::At {
                line: 1,
                col: 1,
                message: format!("a first line longer than {MAX_HEADER_LINE} bytes"),
            });
        }
        let first = line_cells(&line, format.delimiter);
        let header = match format.header {
            Header::Yes => true,
            _ => first.iter().any(|c| !c.is_empty() && !looks_like_data(c)),
        };
        if header {
            if let Some(wanted) = columns {
                at.keep = Some(keep_columns(&first, wanted)?);
            }
            names = Some(first);
            if line.ends_with(b"\n") {
                at.line = 2;
            } else {
                // A header and nothing else: no rows.
                return Ok(Table {
                    rows: 0,
                    cols: columns.map_or(0, <[String]>::len),
                    cells,
                    names,
                });
            }
        } else {
            for &b in &line {
                step(&mut at, &mut cells, b, format.delimiter, room)?;
            }
        }
    }
    if columns.is_some() && names.is_none() {
        return Err(CsvError::Columns(
            "has no header line to name its columns: its first line is data".into(),
        ));
    }
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CsvError::Io(e)),
        };
        if buf.is_empty() {
            break;
        }
        let len = buf.len();
        for &b in buf {
            step(&mut at, &mut cells, b, format.delimiter, room)?;
        }
        reader.consume(len);
    }
    end_cell(&mut at, &mut cells, true, room)?;
    let mut cols = at.cols.unwrap_or(0);
    if let (Some(keep), Some(names)) = (&at.keep, &names) {
        if at.rows > 0 && names.len() != cols {
            return Err(CsvError::Columns(format!(
                "has a header of {} names, but rows of {cols} cells",
                names.len()
            )));
        }
        cols = keep.iter().filter(|&&k| k).count();
    }
    Ok(Table {
        rows: at.rows,
        cols,
        cells,
        names,
    })
}

/// Which of the header's columns `wanted` names (each exactly once).
fn keep_columns(names: &[String], wanted: &[String]) -> Result<Vec<bool>, CsvError> {
    let mut keep = vec![false; names.len()];
    for w in wanted {
        let mut found = names.iter().enumerate().filter(|(_, n)| *n == w);
        match (found.next(), found.next()) {
            (Some((j, _)), None) => {
                if let Some(k) = keep.get_mut(j) {
                    *k = true;
                }
            }
            (None, _) => {
                return Err(CsvError::Columns(format!(
                    "has no column `{w}`; its columns are {}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            (Some(_), Some(_)) => {
                return Err(CsvError::Columns(format!(
                    "has more than one column named `{w}`"
                )));
            }
        }
    }
    Ok(keep)
}

/// Reads one byte of the table.
fn step(
    at: &mut Cursor,
    cells: &mut Cells,
    b: u8,
    delimiter: u8,
    room: &mut dyn FnMut(usize) -> bool,
) -> Result<(), CsvError> {
    if b == b'\n' {
        end_cell(at, cells, true, room)?;
        at.line += 1;
        at.col = 1;
        at.cell_col = 1;
    } else if b == delimiter {
        end_cell(at, cells, false, room)?;
        at.col += 1;
        at.cell_col = at.col;
    } else {
        if at.cell.len() < MAX_CELL {
            at.cell.push(b);
        } else {
            at.cell_too_long = true;
        }
        // Columns count characters: UTF-8 continuation bytes start none.
        if b & 0xC0 != 0x80 {
            at.col += 1;
        }
        if at.cell_too_long {
            return Err(CsvError::At {
                line: at.line,
                col: at.cell_col,
                message: format!("a cell longer than {MAX_CELL} characters"),
            });
        }
    }
    Ok(())
}

/// Ends the cell being read (and the row, at the end of a line).
fn end_cell(
    at: &mut Cursor,
    cells: &mut Cells,
    end_of_line: bool,
    room: &mut dyn FnMut(usize) -> bool,
) -> Result<(), CsvError> {
    let raw = std::mem::take(&mut at.cell);
    let text = String::from_utf8_lossy(raw.trim_ascii());
    if end_of_line && at.row_cells == 0 && text.is_empty() {
        // A blank line.
        at.cell = raw;
        at.cell.clear();
        return Ok(());
    }
    let bad = |message: String| CsvError::At {
        line: at.line,
        col: at.cell_col,
        message,
    };
    if let Some(cols) = at.cols
        && at.row_cells >= cols
    {
        return Err(bad(format!(
            "this row has more than {cols} cells, as many as the first row has"
        )));
    }
    let kept = at
        .keep
        .as_ref()
        .is_none_or(|k| k.get(at.row_cells).copied().unwrap_or(false));
    if !kept {
        // A column `columns:` does not ask for is not parsed (it may hold text).
        at.row_cells += 1;
        at.cell = raw;
        at.cell.clear();
        return finish_row(at, end_of_line);
    }
    if text.is_empty() {
        return Err(bad("an empty cell".to_string()));
    }
    if cells.len() == cells.capacity() {
        // Room doubles while the cap allows; near the cap it grows by the one cell needed,
        // so that a table just under the cap still reads.
        let have = cells.len();
        let want = have.saturating_mul(2).max(1024);
        let target = if room(want) {
            want
        } else if room(have + 1) {
            have + 1
        } else {
            return Err(CsvError::TooLarge { cells: have });
        };
        if !cells.try_reserve(target - have) {
            return Err(CsvError::TooLarge { cells: have });
        }
    }
    cells.push(&text).map_err(bad)?;
    at.row_cells += 1;
    at.cell = raw;
    at.cell.clear();
    finish_row(at, end_of_line)
}

/// Ends the row after its last cell, checking its length against the first row's.
fn finish_row(at: &mut Cursor, end_of_line: bool) -> Result<(), CsvError> {
    if end_of_line {
        match at.cols {
            None => at.cols = Some(at.row_cells),
            Some(cols) if at.row_cells < cols => {
                return Err(CsvError::At {
                    line: at.line,
                    col: at.col,
                    message: format!(
                        "this row has {} cells, but the first row has {cols}",
                        at.row_cells
                    ),
                });
            }
            Some(_) => {}
        }
        at.rows += 1;
        at.row_cells = 0;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The builtins.

/// E0912: a data file that cannot be read or parsed.
fn file_error(message: String, span: Span) -> Flow {
    Flow::error(
        Diagnostic::error("E0912", message, span).with_primary_label("reading this file failed"),
    )
}

/// `load_csv(path, header: false, delimiter: ",", dtype: "f32")`: a `dtype[rows, cols]`
/// matrix (see the module documentation).
pub(super) fn load_csv(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let path = c.string(0)?.unwrap_or_default().to_string();
    let header = match c.flag(ev, 1)? {
        Some(true) => Header::Yes,
        Some(false) => Header::No,
        None => Header::Detect,
    };
    let columns = column_names(c)?;
    if header == Header::No && columns.is_some() {
        return Err(errors::bad_value(
            "`columns:` names columns by the header line, but `header: false` says the file has none".to_string(),
            c.span(4),
        ));
    }
    let delimiter = match c.string(2)? {
        None => b',',
        Some(d) => match d.as_bytes() {
            [b] if b.is_ascii() && !matches!(b, b'\n' | b'\r' | b'"') => *b,
            _ => {
                return Err(errors::bad_value(
                    format!(
                        "the delimiter must be one ASCII character other than a newline or a quote, found {d:?}"
                    ),
                    c.span(2),
                ));
            }
        },
    };
    let dtype = c.dtype(3, DType::F32)?;
    let kind = CellKind::for_dtype(dtype);
    let file = std::fs::File::open(&path)
        .map_err(|e| file_error(format!("cannot read `{path}`: {e}"), c.span))?;
    // Growing the cells asks the device for a tensor of that many values first (a view,
    // so nothing is allocated), which refuses what is over its cap.
    let mut refused = None;
    let span = c.span;
    let mut room = |n: usize| match fits(ev, kind.dtype(), n, span) {
        Ok(()) => true,
        Err(e) => {
            refused = Some(e);
            false
        }
    };
    let format = CsvFormat {
        delimiter,
        header,
        kind,
    };
    let wanted = columns.as_ref().map(|(names, _)| names.as_slice());
    let table = match read_csv(file, format, wanted, &mut room) {
        Ok(t) => t,
        Err(CsvError::Io(e)) => {
            return Err(file_error(format!("cannot read `{path}`: {e}"), c.span));
        }
        Err(CsvError::At { line, col, message }) => {
            return Err(file_error(
                format!("{path}:{line}:{col}: {message}"),
                c.span,
            ));
        }
        Err(CsvError::Columns(message)) => {
            return Err(file_error(format!("`{path}` {message}"), c.span));
        }
        Err(CsvError::TooLarge { cells }) => {
            // The device's refusal names the probe; the message names the file instead.
            let mut d = Diagnostic::error(
                "E0905",
                format!("`{path}` holds more than {cells} values, more than one tensor may hold"),
                c.span,
            )
            .with_primary_label("this file is too large");
            match refused {
                Some(Flow::Error(e)) => {
                    d = d.with_note(e.diag.message);
                    for n in e.diag.notes {
                        d = d.with_note(n);
                    }
                }
                Some(other) => return Err(other),
                None => d = d.with_note("memory could not hold them"),
            }
            return Err(Flow::error(d));
        }
    };
    let (rows, cols) = (table.rows, table.cols);
    let names = table.names.unwrap_or_default();
    let t = table
        .cells
        .into_tensor(rows, cols)
        .map_err(|e| ev.device_error(e, c.span))?;
    let t = ev.cast(&t, dtype, c.span)?;
    let Some((wanted, as_record)) = columns else {
        return Ok(strong(t));
    };
    // The table holds the wanted columns in the file's order.
    let mut kept: Vec<&String> = names.iter().filter(|n| wanted.contains(n)).collect();
    kept.dedup();
    let mut out = std::collections::BTreeMap::new();
    let mut single = None;
    for name in &wanted {
        let j = kept.iter().position(|n| *n == name).unwrap_or(0);
        let part = ev.exec(
            &Op::Slice {
                dims: vec![
                    SliceDim::full(rows),
                    SliceDim {
                        start: j,
                        len: 1,
                        step: 1,
                    },
                ],
            },
            &[&t],
            c.span,
        )?;
        let column = ev.exec(
            &Op::Reshape {
                shape: Shape::known(&[rows]),
            },
            &[&part],
            c.span,
        )?;
        single = Some(strong(column.clone()));
        out.insert(lang::ast::Name::from(name.as_str()), strong(column));
    }
    if as_record {
        Ok(Value::Record(Arc::new(out)))
    } else {
        single.ok_or_else(|| errors::internal("no column was read", c.span))
    }
}

/// The `columns:` argument of `load_csv`: the names, and whether the result is a record
/// (a tuple of names) rather than one column (a name).
fn column_names(c: &Call) -> R<Option<(Vec<String>, bool)>> {
    let bad = |span| {
        errors::mismatch(
            "`columns:` takes a column name or a tuple of column names".to_string(),
            span,
        )
    };
    match c.get(4) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some((vec![s.to_string()], false))),
        Some(Value::Tuple(items)) => {
            let names = items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.to_string()),
                    _ => Err(bad(c.span(4))),
                })
                .collect::<R<Vec<_>>>()?;
            Ok(Some((names, true)))
        }
        Some(_) => Err(bad(c.span(4))),
    }
}

/// Whether the device allows a tensor of `n` elements of `dtype` (asked with a broadcast
/// of a scalar, which the CPU device makes as a view).
pub(crate) fn fits(ev: &Eval<'_>, dtype: DType, n: usize, span: Span) -> R<()> {
    let zero = ev.cast(&Tensor::scalar(0i64), dtype, span)?;
    ev.exec(
        &Op::Broadcast {
            shape: Shape::known(&[n]),
        },
        &[&zero],
        span,
    )
    .map(|_| ())
}

/// A random permutation of `0..rows` as an `i64` tensor: one uniform key per row from the
/// session's stream, the rows ordered by key (ties by index).
pub(crate) fn permutation(ev: &mut Eval<'_>, rows: usize, span: Span) -> R<Tensor> {
    let keys = super::creation::draw(ev, RandomOp::Uniform, &[rows], DType::F64, span)?;
    // Inside a staged function the draw is a node of the graph: its keys exist only when
    // the graph runs, and the primitive set has no sort to order the rows by them there.
    let k = keys.to_vec::<f64>().ok_or_else(|| {
        Flow::error(
            crate::stage::staging_diag(
                "a random order of rows (`shuffle`, `batches(..., shuffle: true)`, `split_train_test`) is drawn when the function runs, and a staged graph cannot sort rows by it".to_string(),
                span,
            )
            .with_hint("shuffle outside the staged function and pass the shuffled data in, or keep the function that shuffles eager"),
        )
    })?;
    let mut idx: Vec<usize> = (0..rows).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (
            k.get(a).copied().unwrap_or(0.0),
            k.get(b).copied().unwrap_or(0.0),
        );
        x.total_cmp(&y).then(a.cmp(&b))
    });
    let idx: Vec<i64> = idx
        .into_iter()
        .map(|i| i64::try_from(i).unwrap_or(0))
        .collect();
    Tensor::from_vec(idx, &[rows]).map_err(|e| ev.device_error(e, span))
}

/// The common length of axis 0 of every tensor leaf of `v` (`what` names the builtin in
/// messages).
pub(crate) fn leaf_rows(v: &Value, what: &str, span: Span) -> R<usize> {
    fn walk(v: &Value, what: &str, rows: &mut Option<usize>, span: Span) -> R<()> {
        match v {
            Value::Tensor(t) => {
                let Some(&n) = t.shape().first() else {
                    return Err(errors::mismatch(
                        format!("`{what}` slices axis 0, found a scalar"),
                        span,
                    ));
                };
                match rows {
                    Some(r) if *r != n => Err(errors::mismatch(
                        format!(
                            "`{what}` needs every leaf to have the same length: {r} and {n} rows"
                        ),
                        span,
                    )),
                    _ => {
                        *rows = Some(n);
                        Ok(())
                    }
                }
            }
            Value::Tuple(items) => items.iter().try_for_each(|x| walk(x, what, rows, span)),
            Value::Record(fields) => fields.values().try_for_each(|x| walk(x, what, rows, span)),
            other => Err(errors::mismatch(
                format!("`{what}` needs tensors, found {}", other.describe()),
                span,
            )),
        }
    }
    let mut rows = None;
    walk(v, what, &mut rows, span)?;
    Ok(rows.unwrap_or(0))
}

/// The rows `idx` (an `i64` vector) of every leaf of `v`, or rows `start..start + len`
/// when there is no index.
pub(crate) fn take_rows(
    ev: &Eval<'_>,
    v: &Value,
    idx: Option<&Tensor>,
    start: usize,
    len: usize,
    span: Span,
) -> R<Value> {
    v.map_leaves(&mut |leaf| match leaf {
        Value::Tensor(t) => {
            let out = match idx {
                None => {
                    let mut dims: Vec<SliceDim> =
                        t.shape().iter().map(|&d| SliceDim::full(d)).collect();
                    if let Some(d0) = dims.first_mut() {
                        *d0 = SliceDim {
                            start,
                            len,
                            step: 1,
                        };
                    }
                    ev.exec(&Op::Slice { dims }, &[&t.t], span)?
                }
                Some(order) => {
                    let part = ev.exec(
                        &Op::Slice {
                            dims: vec![SliceDim {
                                start,
                                len,
                                step: 1,
                            }],
                        },
                        &[order],
                        span,
                    )?;
                    ev.exec(&Op::Gather { axis: 0 }, &[&t.t, &part], span)?
                }
            };
            Ok(Value::Tensor(TensorVal {
                t: out,
                ..t.clone()
            }))
        }
        other => Err(errors::mismatch(
            format!("expected tensors, found {}", other.describe()),
            span,
        )),
    })
}

/// `shuffle(data)`: the rows of every leaf in one random order.
pub(super) fn shuffle(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let data = c.req(0)?;
    let rows = leaf_rows(data, "shuffle", c.span(0))?;
    let order = permutation(ev, rows, c.span)?;
    take_rows(ev, data, Some(&order), 0, rows, c.span)
}

/// `split_train_test(data, test, shuffle: true)`: `(train, test)` (see the module
/// documentation for what `test` means).
pub(super) fn split_train_test(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let data = c.req(0)?;
    let rows = leaf_rows(data, "split_train_test", c.span(0))?;
    let test = c.tensor(1)?;
    let n_test = if test.dtype.is_float() {
        let f = scalar_f64(ev, c.req(1)?, c.span(1))?;
        if !(0.0..=1.0).contains(&f) {
            return Err(errors::bad_value(
                format!(
                    "a fraction of the rows for the test part must be between 0 and 1, found {f}"
                ),
                c.span(1),
            ));
        }
        // Rounded up, as scikit-learn's `test_size`; the product is at most `rows`.
        ((f * rows as f64).ceil() as usize).min(rows)
    } else {
        let n = ev.scalar_int(c.req(1)?, c.span(1))?;
        match usize::try_from(n) {
            Ok(n) if n <= rows => n,
            _ => {
                return Err(errors::bad_value(
                    format!("the test part must have 0 to {rows} rows, found {n}"),
                    c.span(1),
                ));
            }
        }
    };
    let order = if c.flag(ev, 2)?.unwrap_or(true) {
        Some(permutation(ev, rows, c.span)?)
    } else {
        None
    };
    let n_train = rows - n_test;
    let train = take_rows(ev, data, order.as_ref(), 0, n_train, c.span)?;
    let test = take_rows(ev, data, order.as_ref(), n_train, n_test, c.span)?;
    Ok(Value::Tuple(vec![train, test].into()))
}

/// `arg(name, default)`: the script argument `--name VALUE` parsed to the default's type,
/// or the default.
pub(super) fn arg(ev: &mut Eval<'_>, c: &Call) -> R<Value> {
    let name = c.string(0)?.unwrap_or_default().to_string();
    let default = c.req(1)?.clone();
    let Some(text) = find_arg(
        &ev.st.script_args,
        &name,
        matches!(&default, Value::Tensor(t) if t.dtype == DType::Bool),
    ) else {
        return Ok(default);
    };
    let bad = |what: &str| {
        Flow::error(
            Diagnostic::error(
                "E0909",
                format!("the script argument `--{name}` must be {what}, found {text:?}"),
                c.span,
            )
            .with_primary_label("read here")
            .with_note(format!(
                "the value takes the type of the default, {}",
                match &default {
                    Value::Tensor(t) =>
                        format!("{} ({})", t.dtype, crate::value::display(&default)),
                    other => other.describe(),
                }
            )),
        )
    };
    match &default {
        Value::Str(_) => Ok(Value::Str(Arc::from(text.as_str()))),
        Value::Tensor(t) => {
            let parsed = if t.dtype == DType::Bool {
                match text.as_str() {
                    "true" => Tensor::scalar(true),
                    "false" => Tensor::scalar(false),
                    _ => return Err(bad("`true` or `false`")),
                }
            } else if t.dtype.is_int() {
                let n: i64 = text.trim().parse().map_err(|_| bad("an integer"))?;
                Tensor::scalar(n)
            } else {
                let x: f64 = text.trim().parse().map_err(|_| bad("a number"))?;
                Tensor::scalar(x)
            };
            // The value keeps the default's dtype, weak flag and storage (a weak literal
            // is stored wide, see `value.rs`).
            let stored = ev.cast(&parsed, t.t.dtype(), c.span)?;
            if t.dtype.is_int() && !t.weak {
                let back = ev.cast(&stored, DType::I64, c.span)?;
                if back.to_vec::<i64>().and_then(|v| v.first().copied())
                    != parsed.to_vec::<i64>().and_then(|v| v.first().copied())
                {
                    return Err(bad(&format!("an integer that fits in {}", t.dtype)));
                }
            }
            Ok(Value::Tensor(TensorVal {
                t: stored,
                dtype: t.dtype,
                weak: t.weak,
            }))
        }
        other => Err(errors::mismatch(
            format!(
                "the default of `arg` must be a number, a bool or a string, found {}",
                other.describe()
            ),
            c.span(1),
        )),
    }
}

/// The value given for `--name` in `args` (the last one when given more than once):
/// `--name VALUE` or `--name=VALUE`, with `-` and `_` alike in the name. For a bool
/// (`flag`), a bare `--name` (the last word, or one followed by another `--option`) is
/// `true`.
fn find_arg(args: &[String], name: &str, flag: bool) -> Option<String> {
    let same = |given: &str| {
        given.len() == name.len()
            && given
                .bytes()
                .zip(name.bytes())
                .all(|(a, b)| a == b || (matches!(a, b'-' | b'_') && matches!(b, b'-' | b'_')))
    };
    let mut found = None;
    let mut i = 0;
    while let Some(word) = args.get(i) {
        i += 1;
        let Some(rest) = word.strip_prefix("--") else {
            continue;
        };
        if let Some((key, value)) = rest.split_once('=') {
            if same(key) {
                found = Some(value.to_string());
            }
            continue;
        }
        if !same(rest) {
            continue;
        }
        match args.get(i) {
            Some(next) if !(flag && next.starts_with("--")) => {
                found = Some(next.clone());
                i += 1;
            }
            // A bare flag is true; any other option without a value has an empty one,
            // which does not parse and so is reported.
            _ => found = Some(if flag { "true" } else { "" }.to_string()),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, header: bool, kind: CellKind) -> Result<Table, CsvError> {
        let format = CsvFormat {
            delimiter: b',',
            header: if header { Header::Yes } else { Header::No },
            kind,
        };
        read_csv(text.as_bytes(), format, None, &mut |_| true)
    }

    fn at(r: Result<Table, CsvError>) -> (usize, usize, String) {
        match r {
            Err(CsvError::At { line, col, message }) => (line, col, message),
            other => panic!("expected a positioned error, got {other:?}"),
        }
    }

    #[test]
    fn reads_rows_skipping_blank_lines_bom_and_crlf() {
        let t = read("\u{feff}1, 2.5,3\r\n\n4,5,6e1\r\n", false, CellKind::F64).expect("reads");
        assert_eq!((t.rows, t.cols), (2, 3));
        assert_eq!(t.cells, Cells::F64(vec![1.0, 2.5, 3.0, 4.0, 5.0, 60.0]));
        let t = read("a,b\n1,0\n", true, CellKind::Bool).expect("reads");
        assert_eq!(t.cells, Cells::Bool(vec![true, false]));
        let t = read("7,-8", false, CellKind::I64).expect("no final newline");
        assert_eq!((t.rows, t.cols, t.cells), (1, 2, Cells::I64(vec![7, -8])));
        let t = read("", false, CellKind::F32).expect("empty");
        assert_eq!((t.rows, t.cols), (0, 0));
    }

    #[test]
    fn errors_name_the_line_and_column_of_the_cell() {
        assert_eq!(
            at(read("1,2\n3,x7\n", false, CellKind::F32)),
            (2, 3, "`x7` is not a number".to_string())
        );
        assert_eq!(
            at(read("1,2\n3,4.5\n", false, CellKind::I64)),
            (2, 3, "`4.5` is not an integer".to_string())
        );
        assert_eq!(at(read("1,,2\n", false, CellKind::F32)).1, 3);
        let (line, col, msg) = at(read("1,2\n3\n", false, CellKind::F32));
        assert_eq!((line, col), (2, 2));
        assert!(
            msg.contains("has 1 cells, but the first row has 2"),
            "{msg}"
        );
        let (line, col, _) = at(read("1,2\n3,4,5\n", false, CellKind::F32));
        assert_eq!((line, col), (2, 5));
        // Columns count characters, and a header's line still counts.
        assert_eq!(
            at(read("é,x\n1,é\n", true, CellKind::F32)),
            (2, 3, "`é` is not a number".to_string())
        );
    }

    fn detect(text: &str, columns: Option<&[String]>) -> Result<Table, CsvError> {
        let format = CsvFormat {
            delimiter: b',',
            header: Header::Detect,
            kind: CellKind::F64,
        };
        read_csv(text.as_bytes(), format, columns, &mut |_| true)
    }

    #[test]
    fn a_header_is_found_by_its_cells() {
        let cases: &[(&str, Option<&[&str]>, usize)] = &[
            ("x,y\n1,2\n", Some(&["x", "y"]), 1),
            ("\"a\", b ,c\n1,2,3\n", Some(&["a", "b", "c"]), 1),
            ("1,2\n3,4\n", None, 2),
            ("1e3,-inf\n3,4\n", None, 2),
            ("nan,2\n3,4\n", None, 2),
            ("id,,x\n1,2,3\n", Some(&["id", "", "x"]), 1),
            ("only,names", Some(&["only", "names"]), 0),
        ];
        for (text, names, rows) in cases {
            let t = detect(text, None).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
            let want: Option<Vec<String>> =
                names.map(|n| n.iter().map(ToString::to_string).collect());
            assert_eq!((t.names, t.rows), (want, *rows), "{text:?}");
        }
        // An empty cell is not a sign of a header: it stays an error on line 1.
        assert_eq!(at(detect("1,,2\n", None)).0, 1);
    }

    #[test]
    fn columns_are_picked_by_name_and_others_are_not_parsed() {
        let text = "name,x,species,y\nsetosa,1,0,2.5\nversicolor,3,1,4.5\n";
        let want = ["y".to_string(), "x".to_string()];
        let t = detect(text, Some(&want)).expect("reads");
        // The kept columns in the file's order: x, y.
        assert_eq!((t.rows, t.cols), (2, 2));
        assert_eq!(t.cells, Cells::F64(vec![1.0, 2.5, 3.0, 4.5]));
        let missing = ["z".to_string()];
        match detect(text, Some(&missing)) {
            Err(CsvError::Columns(m)) => assert!(m.contains("no column `z`"), "{m}"),
            other => panic!("{other:?}"),
        }
        let twice = ["a".to_string()];
        match detect("a,a\n1,2\n", Some(&twice)) {
            Err(CsvError::Columns(m)) => assert!(m.contains("more than one"), "{m}"),
            other => panic!("{other:?}"),
        }
        match detect("1,2\n", Some(&twice)) {
            Err(CsvError::Columns(m)) => assert!(m.contains("no header line"), "{m}"),
            other => panic!("{other:?}"),
        }
        match detect("a,b\n1,2,3\n", Some(&twice)) {
            Err(CsvError::Columns(m)) => assert!(m.contains("2 names, but rows of 3"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_input_is_refused_early() {
        let long = "1".repeat(10_000);
        let (_, _, msg) = at(read(&long, false, CellKind::F32));
        assert!(msg.contains("longer than"), "{msg}");
        let zeros = std::io::repeat(0).take(1 << 20);
        let format = CsvFormat {
            delimiter: b',',
            header: Header::No,
            kind: CellKind::F32,
        };
        assert!(matches!(
            read_csv(zeros, format, None, &mut |_| true),
            Err(CsvError::At { .. })
        ));
        let many = "1,".repeat(5000);
        let r = read_csv(many.as_bytes(), format, None, &mut |n| n <= 2048);
        assert!(
            matches!(r, Err(CsvError::TooLarge { cells: 2048 })),
            "{r:?}"
        );
    }

    #[test]
    fn script_arguments_are_found_by_name() {
        let args: Vec<String> = [
            "--epochs",
            "5",
            "--lr=0.1",
            "--verbose",
            "--learning-rate",
            "2",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(find_arg(&args, "epochs", false).as_deref(), Some("5"));
        assert_eq!(find_arg(&args, "lr", false).as_deref(), Some("0.1"));
        assert_eq!(find_arg(&args, "verbose", true).as_deref(), Some("true"));
        assert_eq!(
            find_arg(&args, "learning_rate", false).as_deref(),
            Some("2")
        );
        assert_eq!(find_arg(&args, "missing", false), None);
        let last = vec!["--k".to_string(), "1".to_string(), "--k".to_string()];
        assert_eq!(find_arg(&last, "k", false).as_deref(), Some(""));
    }

    #[test]
    fn a_file_over_the_device_cap_is_refused_before_it_is_read_whole() {
        use devices::CpuDevice;
        use devices::cpu::Limits;
        let dir = std::env::temp_dir().join(format!("ms-load-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("big.csv");
        std::fs::write(&file, "1,2,3,4\n".repeat(2000)).expect("write");
        let device = CpuDevice::with_limits(Limits {
            max_tensor_bytes: 16 << 10,
        });
        let mut s = crate::Session::with_options(crate::Options {
            capture_output: true,
            device: Arc::new(device),
            ..crate::Options::default()
        });
        let src = format!("let t = load_csv({:?})\nprint(t.shape)", file.display());
        let out = s.eval(&src);
        let codes: Vec<&str> = out.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["E0905"], "{:?}", out.diagnostics);
        assert!(
            out.diagnostics[0]
                .message
                .contains("big.csv` holds more than"),
            "{:?}",
            out.diagnostics
        );
        // The same file under a cap it fits reads in full.
        let mut s = crate::Session::with_options(crate::Options {
            capture_output: true,
            ..crate::Options::default()
        });
        let out = s.eval(&src);
        assert!(!out.has_errors(), "{:?}", out.diagnostics);
        assert_eq!(out.output, "(2000, 4)\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
