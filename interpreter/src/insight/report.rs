//! `ms report runs/NAME`: every scalar and histogram of a run on one self-contained HTML
//! page. The run's event files are read back with [`super::events`] (every record's CRC
//! and every field checked: a damaged file is an error naming it and the byte offset), and
//! each tag is drawn as inline SVG by plotters: a scalar as a line over its steps, a
//! histogram as the bars of its last step and, when it was logged at several steps, its
//! distribution over the steps (TensorBoard's "distributions" view: the minimum, the
//! quartiles and the maximum of each step, read off its buckets). Text summaries are
//! listed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::events::{self, Histogram, Value, What};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not a valid event file: {error}", path.display())]
    Decode {
        path: PathBuf,
        error: events::AtOffset,
    },
    #[error("`{}` holds no event files (`events.out.tfevents.*`)", path.display())]
    NoEvents { path: PathBuf },
    #[error("cannot draw `{tag}`: {message}")]
    Plot { tag: String, message: String },
}

/// Everything a run logged, by tag, in the order of the files and of their records.
#[derive(Debug, Default)]
pub struct Run {
    pub scalars: BTreeMap<String, Vec<(i64, f64)>>,
    pub histograms: BTreeMap<String, Vec<(i64, Histogram)>>,
    pub texts: BTreeMap<String, Vec<(i64, String)>>,
}

impl Run {
    /// Adds the summaries of one event file's bytes.
    pub fn add_file(&mut self, bytes: &[u8]) -> Result<(), events::AtOffset> {
        for e in events::read_events(bytes)? {
            let What::Summary(values) = e.what else {
                continue;
            };
            for (tag, v) in values {
                match v {
                    Value::Scalar(x) => self
                        .scalars
                        .entry(tag)
                        .or_default()
                        .push((e.step, f64::from(x))),
                    Value::Histogram(h) => {
                        self.histograms.entry(tag).or_default().push((e.step, h))
                    }
                    Value::Text(s) => self.texts.entry(tag).or_default().push((e.step, s)),
                }
            }
        }
        Ok(())
    }

    /// The run in the folder `dir` (every `events.out.tfevents.*` file in it, by name), or
    /// in the one event file `dir` names.
    pub fn read(dir: &Path) -> Result<Run, ReportError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ReportError::Io { path, source }
        };
        let files = if dir.is_file() {
            vec![dir.to_path_buf()]
        } else {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io(dir))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.contains("tfevents"))
                })
                .collect();
            files.sort();
            files
        };
        if files.is_empty() {
            return Err(ReportError::NoEvents {
                path: dir.to_path_buf(),
            });
        }
        let mut run = Run::default();
        for f in files {
            let bytes = std::fs::read(&f).map_err(io(&f))?;
            run.add_file(&bytes)
                .map_err(|error| ReportError::Decode { path: f, error })?;
        }
        Ok(run)
    }
}

/// The HTML page of `run`, titled `title`.
pub fn html(title: &str, run: &Run) -> Result<String, ReportError> {
    let mut page = String::new();
    let t = escape(title);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{t}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; color: #222; }}\n\
         section {{ display: inline-block; vertical-align: top; margin: 0 1.5em 1.5em 0; }}\n\
         h3 {{ margin: 0.2em 0; font-size: 1em; }}\n\
         p.info {{ margin: 0.2em 0; font-size: 0.85em; color: #555; }}\n\
         table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }}\n\
         </style>\n</head>\n<body>\n<h1>{t}</h1>\n"
    );
    let _ = writeln!(
        page,
        "<p>{} scalars, {} histograms, {} text tags.</p>",
        run.scalars.len(),
        run.histograms.len(),
        run.texts.len()
    );
    if !run.scalars.is_empty() {
        page.push_str("<h2>Scalars</h2>\n");
    }
    for (tag, points) in &run.scalars {
        let finite: Vec<(i64, f64)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
        let lo = finite.iter().map(|p| p.1).reduce(f64::min);
        let hi = finite.iter().map(|p| p.1).reduce(f64::max);
        let last = points.last().map(|p| p.1);
        let mut info = format!(
            "{} points, steps {} to {}",
            points.len(),
            points.first().map_or(0, |p| p.0),
            points.last().map_or(0, |p| p.0)
        );
        if let (Some(lo), Some(hi)) = (lo, hi) {
            let _ = write!(info, ", values {} to {}", num(lo), num(hi));
        }
        if let Some(l) = last {
            let _ = write!(info, ", last {}", num(l));
        }
        let skipped = points.len() - finite.len();
        if skipped > 0 {
            let _ = write!(info, " ({skipped} not finite, not drawn)");
        }
        let svg = line_plot(tag, &finite)?;
        let _ = write!(
            page,
            "<section class=\"scalar\">\n<h3>{}</h3>\n<p class=\"info\">{info}</p>\n{svg}\n</section>\n",
            escape(tag)
        );
    }
    if !run.histograms.is_empty() {
        page.push_str("<h2>Histograms</h2>\n");
    }
    for (tag, steps) in &run.histograms {
        let Some((step, h)) = steps.last() else {
            continue;
        };
        let mean = if h.num > 0.0 { h.sum / h.num } else { 0.0 };
        let info = format!(
            "step {step} (the last of {} logged): {} values from {} to {}, mean {}",
            steps.len(),
            h.num,
            num(h.min),
            num(h.max),
            num(mean)
        );
        let mut svg = bar_plot(tag, h)?;
        if steps.len() > 1 {
            svg.push('\n');
            svg.push_str(&distribution_plot(tag, steps)?);
        }
        let _ = write!(
            page,
            "<section class=\"histogram\">\n<h3>{}</h3>\n<p class=\"info\">{info}</p>\n{svg}\n</section>\n",
            escape(tag)
        );
    }
    if !run.texts.is_empty() {
        page.push_str("<h2>Text</h2>\n");
    }
    for (tag, entries) in &run.texts {
        let _ = write!(
            page,
            "<section class=\"text\">\n<h3>{}</h3>\n<table>\n<tr><th>step</th><th>text</th></tr>\n",
            escape(tag)
        );
        for (step, text) in entries {
            let _ = writeln!(page, "<tr><td>{step}</td><td>{}</td></tr>", escape(text));
        }
        page.push_str("</table>\n</section>\n");
    }
    page.push_str("</body>\n</html>\n");
    Ok(page)
}

/// Plot size in pixels.
const SIZE: (u32, u32) = (560, 300);

/// `lo..hi` made wide enough to draw (a single value gets a unit range around it).
fn range(lo: f64, hi: f64) -> std::ops::Range<f64> {
    if hi > lo {
        let pad = (hi - lo) * 0.05;
        (lo - pad)..(hi + pad)
    } else {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad)..(hi + pad)
    }
}

fn plot_error<E: std::error::Error + Send + Sync>(
    tag: &str,
) -> impl Fn(DrawingAreaErrorKind<E>) -> ReportError + '_ {
    move |e| ReportError::Plot {
        tag: tag.to_string(),
        message: e.to_string(),
    }
}

/// A scalar's points (step, value) as an SVG line plot.
fn line_plot(tag: &str, points: &[(i64, f64)]) -> Result<String, ReportError> {
    let points: Vec<(f64, f64)> = points.iter().map(|&(s, v)| (s as f64, v)).collect();
    lines_plot(tag, &[(points, BLUE.stroke_width(2), None)])
}

/// One line of a [`lines_plot`]: its points, its style and its legend, if any.
type Line<'a> = (Vec<(f64, f64)>, ShapeStyle, Option<&'a str>);

/// Lines over steps as one SVG plot, with a legend when a line has a label.
fn lines_plot(tag: &str, lines: &[Line<'_>]) -> Result<String, ReportError> {
    let all = || lines.iter().flat_map(|l| &l.0);
    let x = range(
        all().map(|p| p.0).reduce(f64::min).unwrap_or(0.0),
        all().map(|p| p.0).reduce(f64::max).unwrap_or(1.0),
    );
    let y = range(
        all().map(|p| p.1).reduce(f64::min).unwrap_or(0.0),
        all().map(|p| p.1).reduce(f64::max).unwrap_or(1.0),
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error(tag))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(x, y)
            .map_err(plot_error(tag))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .max_light_lines(0)
            .draw()
            .map_err(plot_error(tag))?;
        for (points, style, label) in lines {
            let series = chart
                .draw_series(LineSeries::new(points.iter().copied(), *style))
                .map_err(plot_error(tag))?;
            if let Some(name) = label {
                let style = *style;
                series
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
            }
        }
        if lines.iter().any(|l| l.2.is_some()) {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(plot_error(tag))?;
        }
        root.present().map_err(plot_error(tag))?;
    }
    Ok(svg)
}

/// A histogram's buckets as SVG bars: bucket `i` spans from the previous limit (`min` for
/// the first) to its own.
fn bar_plot(tag: &str, h: &Histogram) -> Result<String, ReportError> {
    let mut bars = Vec::with_capacity(h.bucket.len());
    let mut left = h.min;
    for (&right, &count) in h.bucket_limit.iter().zip(&h.bucket) {
        // A bucket of zero width (every value equal) still shows as a thin bar.
        let (l, r) = if right > left {
            (left, right)
        } else {
            let w = if left == 0.0 { 0.5 } else { left.abs() * 0.05 };
            (left - w, left + w)
        };
        if l.is_finite() && r.is_finite() && count.is_finite() {
            bars.push((l, r, count));
        }
        left = right;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error(tag))?;
        let x = range(
            bars.iter().map(|b| b.0).reduce(f64::min).unwrap_or(0.0),
            bars.iter().map(|b| b.1).reduce(f64::max).unwrap_or(1.0),
        );
        let top = bars
            .iter()
            .map(|b| b.2)
            .reduce(f64::max)
            .unwrap_or(1.0)
            .max(1.0);
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(x, 0.0..top * 1.05)
            .map_err(plot_error(tag))?;
        chart
            .configure_mesh()
            .y_desc("count")
            .max_light_lines(0)
            .draw()
            .map_err(plot_error(tag))?;
        chart
            .draw_series(
                bars.iter()
                    .map(|&(l, r, c)| Rectangle::new([(l, 0.0), (r, c)], BLUE.mix(0.6).filled())),
            )
            .map_err(plot_error(tag))?;
        root.present().map_err(plot_error(tag))?;
    }
    Ok(svg)
}

/// The value below which a fraction `q` of a histogram's values lie, read off its buckets
/// (linear within the bucket that holds it, as if its values were spread evenly); `None`
/// for an empty histogram.
fn quantile(h: &Histogram, q: f64) -> Option<f64> {
    if h.num <= 0.0 {
        return None;
    }
    let want = q.clamp(0.0, 1.0) * h.num;
    let (mut below, mut left) = (0.0, h.min);
    for (&right, &count) in h.bucket_limit.iter().zip(&h.bucket) {
        if count > 0.0 && below + count >= want {
            return Some(left + (right - left) * ((want - below) / count).clamp(0.0, 1.0));
        }
        below += count;
        left = right;
    }
    Some(h.max)
}

/// The fractions the distribution plot follows, with their legends.
const QUANTILES: [(f64, &str); 5] = [
    (0.0, "min"),
    (0.25, "25%"),
    (0.5, "median"),
    (0.75, "75%"),
    (1.0, "max"),
];

/// A histogram's distribution over its steps as SVG lines: for each of [`QUANTILES`], its
/// value at every step.
fn distribution_plot(tag: &str, steps: &[(i64, Histogram)]) -> Result<String, ReportError> {
    let lines: Vec<Line<'_>> = QUANTILES
        .iter()
        .map(|&(q, name)| {
            let points = steps
                .iter()
                .filter_map(|(s, h)| quantile(h, q).map(|v| (*s as f64, v)))
                .filter(|p| p.1.is_finite())
                .collect();
            // The median strongest, the quartiles lighter, the extremes faintest.
            let width = if q == 0.5 { 2 } else { 1 };
            (
                points,
                BLUE.mix(1.0 - (q - 0.5).abs() * 1.4).stroke_width(width),
                Some(name),
            )
        })
        .collect();
    lines_plot(tag, &lines)
}

/// A number as the report shows it: up to 6 significant digits.
fn num(x: f64) -> String {
    if x == 0.0 || (1e-4..1e6).contains(&x.abs()) {
        let s = format!("{x:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{x:.5e}")
    }
}

/// `s` safe inside HTML text and attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insight::events::{Event, frame_record};

    fn file(events: &[(i64, &str, Value)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (step, tag, v) in events {
            let e = Event {
                wall_time: 1.0,
                step: *step,
                what: What::Summary(vec![(tag.to_string(), v.clone())]),
            };
            frame_record(&e.encode(), &mut out);
        }
        out
    }

    #[test]
    fn the_page_has_one_plot_per_tag_with_its_range() {
        let mut run = Run::default();
        let mut evs = Vec::new();
        for s in 0..10 {
            evs.push((s, "loss", Value::Scalar(1.0 / (1.0 + s as f32))));
            evs.push((s, "acc<&>", Value::Scalar(0.5 + s as f32 * 0.05)));
        }
        evs.push((
            9,
            "w",
            Value::Histogram(Histogram::of(&[0.0, 1.0, 2.0, 2.0])),
        ));
        evs.push((9, "note", Value::Text("<b>hi</b>".into())));
        run.add_file(&file(&evs)).expect("valid");
        let page = html("run <x>", &run).expect("draws");
        assert_eq!(page.matches("<svg").count(), 3);
        assert!(page.contains("<h3>loss</h3>"));
        assert!(page.contains("<h3>acc&lt;&amp;&gt;</h3>"));
        assert!(page.contains("values 0.1 to 1, last 0.1"), "{page}");
        assert!(page.contains("values 0.5 to 0.95"));
        assert!(page.contains("4 values from 0 to 2"));
        assert!(page.contains("&lt;b&gt;hi&lt;/b&gt;"));
        assert!(page.contains("<title>run &lt;x&gt;</title>"));
        assert!(!page.contains("<b>hi"));
    }

    #[test]
    fn quantiles_are_read_off_the_buckets() {
        // 0..100 in 30 equal buckets: the quantiles of evenly spread values.
        let values: Vec<f64> = (0..=100).map(f64::from).collect();
        let h = Histogram::of(&values);
        let q = |f| quantile(&h, f).expect("not empty");
        assert_eq!(q(0.0), 0.0);
        assert_eq!(q(1.0), 100.0);
        assert!((q(0.5) - 50.0).abs() < 2.0, "{}", q(0.5));
        assert!((q(0.25) - 25.0).abs() < 2.0, "{}", q(0.25));
        assert_eq!(quantile(&Histogram::of(&[]), 0.5), None);
        assert_eq!(quantile(&Histogram::of(&[5.0, 5.0]), 0.5), Some(5.0));
    }

    #[test]
    fn histograms_of_several_steps_get_their_distribution() {
        let mut run = Run::default();
        let evs: Vec<_> = (0..4)
            .map(|s| {
                let spread: Vec<f64> = (0..10).map(|v| f64::from(v * (s + 1))).collect();
                (s as i64, "w", Value::Histogram(Histogram::of(&spread)))
            })
            .collect();
        run.add_file(&file(&evs)).expect("valid");
        let page = html("r", &run).expect("draws");
        // The last step's bars and the distribution over the four steps.
        assert_eq!(page.matches("<svg").count(), 2);
        for legend in ["median", "25%", "max"] {
            assert!(page.contains(legend), "{legend} missing");
        }
    }

    #[test]
    fn degenerate_runs_still_draw() {
        let mut run = Run::default();
        let evs = [
            (0, "one", Value::Scalar(3.0)),
            (0, "nan", Value::Scalar(f32::NAN)),
            (0, "same", Value::Histogram(Histogram::of(&[5.0, 5.0]))),
            (0, "empty", Value::Histogram(Histogram::of(&[]))),
        ];
        run.add_file(&file(&evs)).expect("valid");
        let page = html("r", &run).expect("draws");
        assert_eq!(page.matches("<svg").count(), 4);
        assert!(page.contains("1 not finite, not drawn"));
    }

    #[test]
    fn a_damaged_file_names_itself_and_the_offset() {
        let dir = std::env::temp_dir().join(format!("ms-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        assert!(matches!(Run::read(&dir), Err(ReportError::NoEvents { .. })));
        let mut bytes = file(&[(1, "x", Value::Scalar(1.0)), (2, "x", Value::Scalar(2.0))]);
        let whole = bytes.len();
        bytes.truncate(whole - 3);
        let path = dir.join("events.out.tfevents.1.host");
        std::fs::write(&path, &bytes).expect("written");
        let e = Run::read(&dir).expect_err("truncated");
        let text = e.to_string();
        assert!(text.contains("events.out.tfevents.1.host"), "{text}");
        assert!(text.contains(&format!("at byte {}", whole / 2)), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
