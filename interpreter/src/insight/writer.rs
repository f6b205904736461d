//! The session's summary writer: one event file per run, made on the first `log_*` call
//! under `<logdir>/<run name>/` (LANGUAGE.md §10), flushed every few seconds, at the end
//! of every entry and when the session ends, so that a crash loses little.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::events::{self, Event, What};

/// How long written events may wait in memory before they are flushed to the file.
const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// Why a summary could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}`: {source}", path.display())]
pub struct WriteError {
    /// What was being done: "create the folder", "create the event file", "write".
    pub action: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The event file of a session, made when first needed.
#[derive(Debug)]
pub struct Summaries {
    /// The folder that holds the runs (`--logdir`, `runs` by default).
    logdir: PathBuf,
    /// The run's folder name: `<script name>-<start time>` or `repl-<start time>`.
    run: String,
    file: Option<Open>,
    /// Set while a `--check-modes` reference run repeats a call eagerly: its summaries
    /// were already written by the run the program sees.
    pub muted: bool,
}

#[derive(Debug)]
struct Open {
    path: PathBuf,
    w: BufWriter<File>,
    last_flush: Instant,
}

impl Summaries {
    /// The summaries of a run of `script` (the REPL when `None`), started now, under
    /// `logdir` (`runs` when `None`).
    pub fn new(logdir: Option<PathBuf>, script: Option<&Path>) -> Summaries {
        let name = script
            .and_then(Path::file_stem)
            .and_then(|s| s.to_str())
            .map_or_else(|| "repl".to_string(), safe_name);
        Summaries {
            logdir: logdir.unwrap_or_else(|| PathBuf::from("runs")),
            run: format!("{name}-{}", utc_stamp(unix_now())),
            file: None,
            muted: false,
        }
    }

    /// The event file, once the first summary has made it.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|o| o.path.as_path())
    }

    /// Writes one summary value at `step`.
    pub fn log(&mut self, step: i64, tag: &str, value: events::Value) -> Result<(), WriteError> {
        if self.muted {
            return Ok(());
        }
        let event = Event {
            wall_time: wall_time(),
            step,
            what: What::Summary(vec![(tag.to_string(), value)]),
        };
        let open = self.open()?;
        let mut rec = Vec::new();
        events::frame_record(&event.encode(), &mut rec);
        open.w.write_all(&rec).map_err(|source| WriteError {
            action: "write",
            path: open.path.clone(),
            source,
        })?;
        if open.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        let Some(open) = self.file.as_mut() else {
            return Ok(());
        };
        open.last_flush = Instant::now();
        open.w.flush().map_err(|source| WriteError {
            action: "write",
            path: open.path.clone(),
            source,
        })
    }

    /// The open event file, made with its `file_version` record on first use. The run's
    /// folder is new: when two runs start in the same second, the second gets `-2`.
    fn open(&mut self) -> Result<&mut Open, WriteError> {
        match &mut self.file {
            Some(open) => Ok(open),
            slot => Ok(slot.insert(create(&self.logdir, &self.run)?)),
        }
    }
}

/// Makes the run's folder under `logdir` and its event file, with the `file_version`
/// record written.
fn create(logdir: &Path, run: &str) -> Result<Open, WriteError> {
    let fail = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError {
            action,
            path,
            source,
        }
    };
    fs::create_dir_all(logdir).map_err(fail("create the folder", logdir))?;
    let mut dir = logdir.join(run);
    let mut n = 1;
    loop {
        match fs::create_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {
                n += 1;
                dir = logdir.join(format!("{run}-{n}"));
            }
            Err(e) => return Err(fail("create the folder", &dir)(e)),
        }
    }
    let now = wall_time();
    let path = dir.join(format!(
        "events.out.tfevents.{}.{}",
        now.floor() as i64,
        hostname()
    ));
    let file = File::create(&path).map_err(fail("create the event file", &path))?;
    let mut w = BufWriter::new(file);
    let first = Event {
        wall_time: now,
        step: 0,
        what: What::FileVersion(events::FILE_VERSION.to_string()),
    };
    let mut rec = Vec::new();
    events::frame_record(&first.encode(), &mut rec);
    w.write_all(&rec)
        .and_then(|()| w.flush())
        .map_err(fail("write", &path))?;
    Ok(Open {
        path,
        w,
        last_flush: Instant::now(),
    })
}

impl Drop for Summaries {
    fn drop(&mut self) {
        // The command line flushes (and reports errors) before the session ends; this is
        // for every other way a session ends, where there is no one left to tell.
        let _ = self.flush();
    }
}

/// Seconds since the Unix epoch, as event files record time.
fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// `YYYYMMDD-HHMMSS` in UTC for a Unix time (the proleptic Gregorian calendar, by Howard
/// Hinnant's days-to-civil algorithm), so that run folders sort by start time.
pub fn utc_stamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The machine's name as TensorFlow puts it in event file names, read from the kernel
/// (Linux), then `HOSTNAME`; `localhost` when neither says.
fn hostname() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name = safe_name(raw.trim());
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// `s` with every character that is not a letter, digit, `.`, `_` or `-` made `_`, so
/// that it is safe in a file name on every system.
fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_700_000_000), "20231114-221320");
        assert_eq!(utc_stamp(-1), "19691231-235959");
    }

    #[test]
    fn names_are_safe_in_paths() {
        assert_eq!(safe_name("my run/1 é"), "my_run_1__");
        assert_eq!(safe_name("mlp_digits"), "mlp_digits");
    }

    #[test]
    fn the_file_is_made_on_first_use_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("ms-summaries-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut s = Summaries::new(Some(dir.clone()), Some(Path::new("a/train.ms")));
        assert!(s.path().is_none());
        assert!(!dir.exists(), "nothing is made before the first summary");
        s.log(1, "loss", events::Value::Scalar(0.5))
            .expect("writes");
        s.log(2, "loss", events::Value::Scalar(0.25))
            .expect("writes");
        s.flush().expect("flushes");
        let path = s.path().expect("made").to_path_buf();
        let run = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str());
        assert!(run.is_some_and(|r| r.starts_with("train-")), "{path:?}");
        let bytes = fs::read(&path).expect("readable");
        let evs = events::read_events(&bytes).expect("valid");
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].what, What::FileVersion("brain.Event:2".into()));
        assert_eq!(evs[2].step, 2);
        // A second run started in the same second gets a folder of its own.
        let mut t = Summaries::new(Some(dir.clone()), Some(Path::new("train.ms")));
        t.run = s.run.clone();
        t.log(1, "x", events::Value::Scalar(1.0)).expect("writes");
        assert_ne!(t.path().and_then(Path::parent), path.parent());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_folder_is_an_error() {
        let file = std::env::temp_dir().join(format!("ms-not-a-dir-{}", std::process::id()));
        fs::write(&file, b"x").expect("temp file");
        let mut s = Summaries::new(Some(file.join("logs")), None);
        let e = s
            .log(0, "x", events::Value::Scalar(1.0))
            .expect_err("a file is not a folder");
        assert_eq!(e.action, "create the folder");
        let _ = fs::remove_file(&file);
    }
}
