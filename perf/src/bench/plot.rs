//! The three PNG plots of a run: no-drop throughput by DUT, throughput as
//! flows grow, and the latency CDF at half the no-drop rate.

use std::path::Path;

use plotters::prelude::*;

use super::results::{dut_label, flows_label, Row, Run};
use super::BenchError;

/// The font plotters draws with (ab_glyph: no system font libraries, only
/// the TTF file from Debian's fonts-dejavu-core).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> Result<(), BenchError> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT).map_err(|e| format!("{FONT}: {e}"))?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
            .map_err(|_| format!("{FONT}: not a font"))
    })
    .clone()
    .map_err(BenchError::Plot)
}

fn plot_err<E: std::fmt::Display>(e: E) -> BenchError {
    BenchError::Plot(e.to_string())
}

const W: u32 = 1000;
const H: u32 = 560;

/// Bars of the median no-drop rate (with min–max whiskers) per DUT at
/// `flows`, over the offered-vs-delivered at full rate.
pub fn throughput_by_dut(rows: &[Row], flows: u32, path: &Path) -> Result<(), BenchError> {
    register_font()?;
    let rows: Vec<&Row> = rows.iter().filter(|r| r.flows == flows).collect();
    let top = rows
        .iter()
        .map(|r| r.offered_mpps.max.max(r.ndr_mpps.max))
        .fold(0.1f64, f64::max)
        * 1.5;
    let root = BitMapBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    #[allow(clippy::cast_precision_loss)]
    let n = rows.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("64-byte frames, {flows} flow(s): throughput by DUT (median of runs)"),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n, 0f64..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("Mpps")
        .x_label_formatter(&|_| String::new())
        .draw()
        .map_err(plot_err)?;
    #[allow(clippy::cast_precision_loss)]
    let bar = |i: usize, v: f64, inset: f64, style: ShapeStyle| {
        let x = i as f64;
        Rectangle::new([(x + inset, 0.0), (x + 1.0 - inset, v)], style)
    };
    // Delivered at full rate (wide, light) behind the no-drop rate.
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .map(|(i, r)| bar(i, r.delivered_mpps.median, 0.1, BLUE.mix(0.25).filled())),
        )
        .map_err(plot_err)?
        .label("delivered at the generator's full rate")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLUE.mix(0.25).filled()));
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .map(|(i, r)| bar(i, r.ndr_mpps.median, 0.25, BLUE.filled())),
        )
        .map_err(plot_err)?
        .label("no-drop rate (<0.1% loss), min–max of runs")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], BLUE.filled()));
    #[allow(clippy::cast_precision_loss)]
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let x = i as f64 + 0.5;
            PathElement::new(
                vec![(x, r.ndr_mpps.min), (x, r.ndr_mpps.max)],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(plot_err)?;
    // Each bar named above its top, its no-drop rate below the name, and
    // every other one two lines higher: names are wider than bars and
    // would run into their neighbours' (drawn last, so no bar hides one).
    let line = top * 0.04;
    #[allow(clippy::cast_precision_loss)]
    chart
        .draw_series(rows.iter().enumerate().flat_map(|(i, r)| {
            let x = i as f64 + 0.1;
            let y =
                r.delivered_mpps.median.max(r.ndr_mpps.max) + line * (1.5 + 2.0 * (i % 2) as f64);
            [
                Text::new(r.label(), (x, y + line), ("sans-serif", 14)),
                Text::new(
                    format!("{:.2}", r.ndr_mpps.median),
                    (x, y),
                    ("sans-serif", 14),
                ),
            ]
        }))
        .map_err(plot_err)?;
    // Above the names of the tallest bars.
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

/// A line per DUT (and Service count): median no-drop rate at each
/// number of flows.
pub fn throughput_vs_flows(rows: &[Row], path: &Path) -> Result<(), BenchError> {
    register_font()?;
    let mut flows: Vec<u32> = rows.iter().map(|r| r.flows).collect();
    flows.sort_unstable();
    flows.dedup();
    let mut duts: Vec<String> = Vec::new();
    for r in rows {
        if !duts.contains(&r.label()) {
            duts.push(r.label());
        }
    }
    let top = rows
        .iter()
        .map(|r| r.ndr_mpps.median)
        .fold(0.1f64, f64::max)
        * 1.15;
    let root = BitMapBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "64-byte frames: no-drop rate as flows grow",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..(flows.len().max(2) - 1) as f64, 0f64..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("flows")
        .y_desc("Mpps")
        .x_labels(flows.len())
        .x_label_formatter(&|x| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = x.round() as usize;
            flows.get(i).map_or(String::new(), |&f| flows_label(f))
        })
        .draw()
        .map_err(plot_err)?;
    for (k, dut) in duts.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        #[allow(clippy::cast_precision_loss)]
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.label() == *dut)
            .filter_map(|r| {
                let i = flows.iter().position(|&f| f == r.flows)?;
                Some((i as f64, r.ndr_mpps.median))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(dut)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}

/// Latency CDF per DUT at `flows`, from the first run's trial at half the
/// no-drop rate.
pub fn latency_cdf(run: &Run, flows: u32, path: &Path) -> Result<(), BenchError> {
    register_font()?;
    #[allow(clippy::cast_precision_loss)]
    let curves: Vec<(String, Vec<(f64, f64)>)> = run
        .cases
        .iter()
        .filter(|c| c.flows == flows)
        .filter_map(|c| {
            let h = &c.at_half.as_ref()?.latency_histogram;
            let total: u64 = h.iter().map(|b| b.1).sum();
            if total == 0 {
                return None;
            }
            let mut seen = 0;
            let points = h
                .iter()
                .map(|&(ns, n)| {
                    seen += n;
                    ((ns.max(100) as f64) / 1000.0, seen as f64 / total as f64)
                })
                .collect();
            Some((dut_label(c.dut, c.services), points))
        })
        .collect();
    let hi = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.0))
        .fold(1.0f64, f64::max)
        * 1.5;
    let root = BitMapBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Latency CDF at half the no-drop rate, {flows} flow(s)"),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0.1f64..hi).log_scale(), 0f64..1.0)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("one-way latency, µs (log)")
        .y_desc("fraction of packets")
        .draw()
        .map_err(plot_err)?;
    for (k, (dut, points)) in curves.into_iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_err)?
            .label(dut)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)
}
