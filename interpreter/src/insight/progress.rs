//! Progress bars for `for` loops (indicatif): over `progress(it)`, and over `batches(...)`
//! when the loop turns out long. They draw on stderr, and only when the session was asked
//! for them (`Options::progress_bars`, which `ms` sets when stderr is a terminal), so pipes,
//! files and tests see nothing. A bar steps aside ([`suspend`]) while `print` writes a line,
//! so output and bar never mix on the screen.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a loop over `batches(...)` runs before its bar appears: short loops (a test
/// set evaluated in a blink) would only flicker.
const AUTO_AFTER: Duration = Duration::from_secs(1);

/// The bar of one `for` loop.
#[derive(Debug)]
pub struct LoopBar {
    bar: ProgressBar,
    /// Whether the program asked for it (`progress(...)`): it stays on the screen when the
    /// loop ends. An automatic bar is hidden until [`AUTO_AFTER`] and cleared at the end.
    explicit: bool,
    shown: bool,
    start: Instant,
}

impl LoopBar {
    /// A bar for a loop of `n` iterations.
    pub fn new(n: usize, explicit: bool) -> LoopBar {
        let target = if explicit {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(n as u64), target);
        // `{per_sec}` is the rate and `{eta}` the time left, both smoothed by indicatif.
        let style = ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise} < {eta_precise}, {per_sec}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        LoopBar {
            bar,
            explicit,
            shown: explicit,
            start: Instant::now(),
        }
    }

    /// The bar, for [`suspend`].
    pub fn handle(&self) -> ProgressBar {
        self.bar.clone()
    }

    /// One iteration done.
    pub fn tick(&mut self) {
        self.bar.inc(1);
        if !self.shown && self.start.elapsed() >= AUTO_AFTER {
            self.shown = true;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// The loop ended: normally (`ok`) or by an error.
    pub fn end(self, ok: bool) {
        if ok && self.explicit {
            self.bar.finish();
            // indicatif leaves the cursor at the end of the finished bar's line: without a
            // line break the program's next output would continue on it.
            if !self.bar.is_hidden() {
                eprintln!();
            }
        } else {
            self.bar.finish_and_clear();
        }
    }
}

/// Runs `f` (which writes to the terminal) with the bar, if any, cleared and redrawn after.
pub fn suspend<T>(bar: &Option<ProgressBar>, f: impl FnOnce() -> T) -> T {
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}
