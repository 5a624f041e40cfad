//! SVG charts of a run: `time.svg` (per workload, time per operation by target) and
//! `speedup.svg` (per workload, each target's speedup over the FUSE mount, on a log scale).

use std::io;
use std::path::Path;

use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue, SegmentedCoord};
use plotters::coord::types::RangedCoordusize;
use plotters::prelude::*;

use crate::lab::Target;
use crate::report::{Results, duration, ratio};

fn color(target: Target) -> RGBColor {
    match target {
        Target::Tmpfs => RGBColor(0x88, 0x88, 0x88),
        Target::Fuse => RGBColor(0xd6, 0x5f, 0x3c),
        Target::Fast => RGBColor(0x2f, 0x6d, 0xb5),
        Target::Client => RGBColor(0x3a, 0x9a, 0x5b),
    }
}

fn plot_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("drawing a chart: {e}"))
}

/// Writes `time.svg` and `speedup.svg` into `dir`.
pub(crate) fn draw(results: &Results, dir: &Path) -> io::Result<()> {
    time(results, &dir.join("time.svg")).map_err(plot_error)?;
    speedup(results, &dir.join("speedup.svg")).map_err(plot_error)?;
    Ok(())
}

/// `n` slots, one per bar or group: plotters' segmented ranges include their end value.
fn segments(n: usize) -> SegmentedCoord<RangedCoordusize> {
    (0..n.saturating_sub(1)).into_segmented()
}

/// A target's name where space is short (the panels of `time.svg`).
fn short(target: Target) -> &'static str {
    match target {
        Target::Tmpfs => "tmpfs",
        Target::Fuse => "FUSE",
        Target::Fast => "preload",
        Target::Client => "client",
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// One panel per workload: a bar per target, labelled with its median; with `--load`, the
/// loaded figure as a paler bar beside the idle one.
fn time(results: &Results, path: &Path) -> DrawResult {
    let targets = &results.meta.targets;
    let load = results.meta.load;
    let columns = 3;
    let rows = results.workloads.len().div_ceil(columns).max(1);
    let root = SVGBackend::new(path, (1200, 40 + 300 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = if load > 0 {
        format!(
            "Time per operation, idle (solid) and with {load} CPU hogs (pale); median over \
             rounds, lower is better"
        )
    } else {
        "Time per operation (median over rounds; lower is better)".to_owned()
    };
    let root = root.titled(&title, ("sans-serif", 22))?;
    let panels = root.split_evenly((rows, columns));
    for (w, panel) in results.workloads.iter().zip(panels.iter()) {
        let loaded = w.loaded.as_ref().map_or(&[][..], |l| &l.targets[..]);
        let top = w
            .targets
            .iter()
            .chain(loaded)
            .map(|r| r.time.max)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            * 1.2;
        let mut chart = ChartBuilder::on(panel)
            .caption(w.workload.name(), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(segments(targets.len()), 0.0..top.max(1.0))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => targets.get(*i).map_or("", |t| short(*t)).to_owned(),
                _ => String::new(),
            })
            .y_label_formatter(&|ns| duration(*ns))
            .y_labels(5)
            .draw()?;
        let segment_px = chart.plotting_area().dim_in_pixel().0 / targets.len().max(1) as u32;
        for (i, &target) in targets.iter().enumerate() {
            let bars = [
                w.target(target).map(|r| (r, color(target).filled())),
                w.loaded(target)
                    .map(|r| (r, color(target).mix(0.4).filled())),
            ];
            let paired = w.loaded.is_some();
            for (k, (r, style)) in bars.into_iter().flatten().enumerate() {
                // Alone, a bar is the segment less 12 px a side; paired, each takes a half.
                let (left, right) = match (paired, k) {
                    (false, _) => (12, 12),
                    (true, 0) => (6, segment_px / 2),
                    (true, _) => (segment_px / 2, 6),
                };
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), r.time.median),
                    ],
                    style,
                );
                bar.set_margin(0, 0, left, right);
                chart.draw_series(std::iter::once(bar))?;
                // The range over rounds, as a whisker (alone: paired bars leave no centre to
                // draw it on; the report gives the ranges), and the median above it.
                let x = SegmentValue::CenterOf(i);
                if !paired {
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(x.clone(), r.time.min), (x.clone(), r.time.max)],
                        BLACK.stroke_width(2),
                    )))?;
                }
                chart.draw_series(std::iter::once(Text::new(
                    duration(r.time.median),
                    (x, r.time.max + top * (0.04 + 0.06 * k as f64)),
                    ("sans-serif", 13).into_font().color(&BLACK),
                )))?;
            }
        }
    }
    root.present()?;
    Ok(())
}

/// Per workload, a group of bars: each target's speedup over the FUSE mount, log scale.
fn speedup(results: &Results, path: &Path) -> DrawResult {
    let targets: Vec<Target> = results
        .meta
        .targets
        .iter()
        .copied()
        .filter(|&t| t != Target::Fuse)
        .collect();
    let root = SVGBackend::new(path, (1600, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let values: Vec<f64> = results
        .workloads
        .iter()
        .flat_map(|w| w.targets.iter())
        .filter_map(|r| r.speedup_over_fuse.map(|s| s.median))
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let low = values.iter().copied().fold(1.0, f64::min) / 2.0;
    let high = values.iter().copied().fold(1.0, f64::max) * 3.0;
    let n = results.workloads.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Speedup over the FUSE mount (FUSE time / target time; higher is better)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(segments(n), (low..high).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // One label per workload: left to itself, the mesh thins them out.
        .x_labels(n + 1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => results
                .workloads
                .get(*i)
                .map_or("", |w| w.workload.name())
                .to_owned(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| ratio(*v))
        .light_line_style(TRANSPARENT)
        .draw()?;
    // The FUSE mount itself, for reference.
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(SegmentValue::Exact(0), 1.0), (SegmentValue::Exact(n), 1.0)],
        color(Target::Fuse).stroke_width(2),
    )))?;
    // Bars of one group share a segment: each is drawn as a narrower rectangle by margins.
    let slots = targets.len().max(1) as u32;
    let segment_px = chart.plotting_area().dim_in_pixel().0 / n.max(1) as u32;
    let slot_px = segment_px.saturating_sub(20) / slots;
    for (w_index, w) in results.workloads.iter().enumerate() {
        for (t_index, &target) in targets.iter().enumerate() {
            let Some(s) = w.target(target).and_then(|r| r.speedup_over_fuse) else {
                continue;
            };
            let left = 10 + slot_px * t_index as u32;
            let right = segment_px.saturating_sub(left + slot_px);
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(w_index), low),
                    (SegmentValue::Exact(w_index + 1), s.median),
                ],
                color(target).filled(),
            );
            bar.set_margin(0, 0, left, right);
            let series = chart.draw_series(std::iter::once(bar))?;
            if w_index == 0 {
                series.label(target.label()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color(target).filled())
                });
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    root.present()?;
    Ok(())
}
