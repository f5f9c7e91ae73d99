//! PNG plots of a sweep: output token throughput, median TTFT, median TPOT and median
//! end-to-end latency against concurrency (or request rate), one line per server, in a
//! 2×2 grid.
//!
//! Drawn with `plotters` into an RGB buffer (its bitmap backend) and encoded with the `png`
//! crate. Text uses a font compiled into the binary (Roboto Regular, Apache-2.0, cut down to
//! printable ASCII: assets/), so plots render the same everywhere and need no system fonts.
//! The x axis is logarithmic (sweeps are usually 1, 4, 16, 64).

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::report::{BenchReport, RunReport};
use crate::stats::Summary;

const FONT: &[u8] = include_bytes!("../assets/Roboto-Regular-ascii.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1400, 1000);
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known good; a failure would only lose the text.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// What the x axis shows.
#[derive(Clone, Copy, PartialEq)]
enum XAxis {
    Concurrency,
    Rate,
}

impl XAxis {
    fn of(run: &RunReport) -> Option<(Self, f64)> {
        match (run.concurrency, run.request_rate) {
            (Some(c), _) => Some((XAxis::Concurrency, c as f64)),
            (None, Some(r)) if r.is_finite() => Some((XAxis::Rate, r)),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            XAxis::Concurrency => "concurrency (requests in flight)",
            XAxis::Rate => "request rate (req/s)",
        }
    }
}

/// One panel: its title and the value it plots from a run's summary.
struct Panel {
    title: &'static str,
    value: fn(&Summary) -> Option<f64>,
}

const PANELS: [Panel; 4] = [
    Panel {
        title: "Output token throughput (tok/s)",
        value: |s| Some(s.output_throughput),
    },
    Panel {
        title: "Median time to first token (s)",
        value: |s| s.ttft_ms.map(|d| d.median / 1e3),
    },
    Panel {
        title: "Median time per output token (ms)",
        value: |s| s.tpot_ms.map(|d| d.median),
    },
    Panel {
        title: "Median end-to-end latency (s)",
        value: |s| s.e2e_ms.map(|d| d.median / 1e3),
    },
];

/// Draws the sweep of every report into a PNG at `path`.
pub fn draw(reports: &[BenchReport], path: &Path) -> Result<()> {
    register_font();
    // Points per report: (x, summary), sorted by x.
    let mut axis = None;
    let mut series = Vec::new();
    for r in reports {
        let mut pts = Vec::new();
        for run in &r.runs {
            let Some((a, x)) = XAxis::of(run) else {
                continue;
            };
            if *axis.get_or_insert(a) != a {
                bail!("--plot: cannot put concurrency runs and request-rate runs on one axis");
            }
            pts.push((x, &run.summary));
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push((r.label.as_str(), pts));
    }
    let Some(axis) = axis else {
        bail!("--plot: no run has a concurrency or a finite request rate to plot against");
    };
    // Ticks at the measured x values only (1, 4, 16, 64 rather than every decade step).
    let mut ticks: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let (lo, hi) = (ticks[0] / 1.3, ticks[ticks.len() - 1] * 1.3);

    let mut buf = vec![255u8; (SIZE.0 * SIZE.1 * 3) as usize]; // [height, width, rgb]
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        for (area, panel) in root.split_evenly((2, 2)).iter().zip(&PANELS) {
            let ymax = series
                .iter()
                .flat_map(|(_, p)| p.iter().filter_map(|(_, s)| (panel.value)(s)))
                .fold(0.0f64, f64::max);
            let ymax = if ymax > 0.0 { ymax * 1.15 } else { 1.0 };
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, (FAMILY, 26))
                .margin(18)
                .x_label_area_size(50)
                .y_label_area_size(70)
                .build_cartesian_2d(
                    (lo..hi).log_scale().with_key_points(ticks.clone()),
                    0.0..ymax,
                )
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc(axis.label())
                .x_label_formatter(&|x| format!("{x}"))
                .y_label_formatter(&|y| tick(*y, ymax))
                .label_style((FAMILY, 16))
                .axis_desc_style((FAMILY, 18))
                .light_line_style(WHITE)
                .draw()
                .map_err(plot_err)?;
            for (i, (label, pts)) in series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let line: Vec<(f64, f64)> = pts
                    .iter()
                    .filter_map(|(x, s)| Some((*x, (panel.value)(s)?)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(line.clone(), color.stroke_width(3)))
                    .map_err(plot_err)?
                    .label(*label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                    });
                chart
                    .draw_series(line.iter().map(|&p| Circle::new(p, 5, color.filled())))
                    .map_err(plot_err)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FAMILY, 16))
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    write_png(path, &buf, SIZE).with_context(|| format!("writing the plot {}", path.display()))
}

/// A y tick with as many decimals as the axis range needs.
fn tick(y: f64, ymax: f64) -> String {
    let decimals = if ymax >= 20.0 {
        0
    } else if ymax >= 2.0 {
        1
    } else {
        2
    };
    format!("{y:.decimals$}")
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e:?}")
}

/// Encodes an RGB buffer as PNG.
fn write_png(path: &Path, rgb: &[u8], (w, h): (u32, u32)) -> Result<()> {
    let file = std::fs::File::create(path)?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(())
}
