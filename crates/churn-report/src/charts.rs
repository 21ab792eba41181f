//! The report's charts, drawn with plotters into SVG strings that the HTML inlines: no script,
//! no image files, no network. Text is left to the browser's fonts (a `sans-serif` family),
//! so Chinese labels render with whatever CJK font the reader's system has.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{ReportError, Result};

const FONT: &str = "sans-serif";
const WIDTH: u32 = 760;
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const GREY: RGBColor = RGBColor(160, 160, 160);
const PALETTE: [RGBColor; 3] = [BLUE, ORANGE, GREEN];

fn chart_error(chart: &str) -> impl Fn(String) -> ReportError + '_ {
    move |reason| ReportError::Chart {
        chart: chart.to_string(),
        reason,
    }
}

/// Draws into an SVG string of `height` pixels; `draw` gets the drawing area.
fn svg(
    chart: &str,
    height: u32,
    draw: impl FnOnce(
        &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    ) -> std::result::Result<(), String>,
) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| chart_error(chart)(e.to_string()))?;
        draw(&root).map_err(chart_error(chart))?;
        root.present()
            .map_err(|e| chart_error(chart)(e.to_string()))?;
    }
    // A class lets the page (and its tests) find every chart.
    Ok(out.replacen(
        "<svg ",
        &format!("<svg class=\"chart\" data-chart=\"{chart}\" "),
        1,
    ))
}

fn percent(v: &f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// White to blue as `share` goes from 0 to 1.
fn shade(share: f64) -> RGBColor {
    let s = share.clamp(0.0, 1.0);
    let mix = |from: f64, to: f64| (from + (to - from) * s).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 69.0), mix(255.0, 148.0))
}

/// One cell of the cohort heatmap: row (cohort), column (month offset), share or unknown.
pub struct HeatCell {
    pub row: usize,
    pub column: usize,
    pub value: Option<f64>,
}

/// The label of the `k`-th category (top first) at a segment of a segmented axis of `n`.
fn segment_label(labels: &[String], value: &SegmentValue<i32>) -> String {
    match value {
        SegmentValue::CenterOf(k) if (*k as usize) < labels.len() => {
            labels[labels.len() - 1 - *k as usize].clone()
        }
        _ => String::new(),
    }
}

/// Cohort retention heatmap: one row per cohort (labels top to bottom), one column per month
/// offset; unknown cells are left blank.
pub fn heatmap(
    chart: &str,
    rows: &[String],
    columns: usize,
    cells: &[HeatCell],
    x_title: &str,
) -> Result<String> {
    let height = 80 + 22 * rows.len().max(1) as u32;
    // Offset 0 is 100 % by definition: shade the later months against their own maximum.
    let max_later = cells
        .iter()
        .filter(|c| c.column > 0)
        .filter_map(|c| c.value)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let n_rows = rows.len().max(1) as i32;
    let share = |cell: &HeatCell, v: f64| if cell.column == 0 { 1.0 } else { v / max_later };
    svg(chart, height, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..columns.max(1) as f64, (0..n_rows).into_segmented())
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .disable_mesh()
            .x_labels(columns.clamp(1, 25))
            .x_label_formatter(&|x| format!("{}", x.floor() as i64))
            .x_desc(x_title)
            .y_labels(n_rows as usize)
            .y_label_formatter(&|y| segment_label(rows, y))
            .label_style((FONT, 11))
            .draw()
            .map_err(|e| e.to_string())?;
        c.draw_series(cells.iter().filter_map(|cell| {
            let v = cell.value?;
            let y = n_rows - 1 - cell.row as i32;
            let x = cell.column as f64;
            let mut r = Rectangle::new(
                [
                    (x + 0.03, SegmentValue::Exact(y)),
                    (x + 0.97, SegmentValue::Exact(y + 1)),
                ],
                shade(share(cell, v)).filled(),
            );
            r.set_margin(1, 1, 0, 0);
            Some(r)
        }))
        .map_err(|e| e.to_string())?;
        c.draw_series(cells.iter().filter_map(|cell| {
            let v = cell.value?;
            let y = n_rows - 1 - cell.row as i32;
            let color = if share(cell, v) > 0.55 { WHITE } else { BLACK };
            let style = (FONT, 10)
                .into_font()
                .color(&color)
                .pos(Pos::new(HPos::Center, VPos::Center));
            Some(Text::new(
                format!("{:.0}", v * 100.0),
                (cell.column as f64 + 0.5, SegmentValue::CenterOf(y)),
                style,
            ))
        }))
        .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Lines over categories (months); `None` values break a line. Values are shares when
/// `shares`.
pub fn lines(
    chart: &str,
    categories: &[String],
    series: &[(String, Vec<Option<f64>>)],
    shares: bool,
) -> Result<String> {
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let top = if shares {
        (max * 1.15).clamp(0.05, 1.0)
    } else {
        (max * 1.15).max(1.0)
    };
    svg(chart, 320, |root| {
        let n = categories.len().max(2);
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .margin_right(36)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..(n - 1) as f64, 0f64..top)
            .map_err(|e| e.to_string())?;
        let step = categories.len().div_ceil(12).max(1);
        c.configure_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let k = x.round() as usize;
                if (x - x.round()).abs() < 1e-9 && k.is_multiple_of(step) {
                    categories.get(k).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| {
                if shares {
                    percent(y)
                } else {
                    format!("{y:.0}")
                }
            })
            .label_style((FONT, 11))
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, (name, values)) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            // One line per unbroken run of known values.
            let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for (i, v) in values.iter().enumerate() {
                match v {
                    Some(v) => runs.last_mut().expect("non-empty").push((i as f64, *v)),
                    None if !runs.last().expect("non-empty").is_empty() => runs.push(Vec::new()),
                    None => {}
                }
            }
            let mut first = true;
            for run in runs.into_iter().filter(|r| !r.is_empty()) {
                let drawn = c
                    .draw_series(LineSeries::new(run.clone(), color.stroke_width(2)))
                    .map_err(|e| e.to_string())?;
                if first {
                    drawn.label(name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                    first = false;
                }
                c.draw_series(run.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| e.to_string())?;
            }
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(GREY)
            .label_font((FONT, 12))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Horizontal bars, one per label, top to bottom as given.
pub fn bars(chart: &str, labels: &[String], values: &[f64], shares: bool) -> Result<String> {
    let height = 60 + 26 * labels.len().max(1) as u32;
    let max = values.iter().fold(0.0f64, |a, &b| a.max(b)).max(1e-9);
    let n = labels.len().max(1) as i32;
    svg(chart, height, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(170)
            .build_cartesian_2d(0f64..max * 1.12, (0..n).into_segmented())
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(n as usize)
            .y_label_formatter(&|y| segment_label(labels, y))
            .x_label_formatter(&|x| {
                if shares {
                    percent(x)
                } else {
                    format!("{x:.0}")
                }
            })
            .label_style((FONT, 11))
            .draw()
            .map_err(|e| e.to_string())?;
        c.draw_series(values.iter().enumerate().map(|(k, &v)| {
            let y = n - 1 - k as i32;
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(y)),
                    (v, SegmentValue::Exact(y + 1)),
                ],
                BLUE.filled(),
            );
            r.set_margin(4, 4, 0, 0);
            r
        }))
        .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Calibration: mean predicted probability against the observed churn rate per bin, with the
/// diagonal of a perfectly calibrated model.
pub fn calibration(
    chart: &str,
    points: &[(f64, f64)],
    x_title: &str,
    y_title: &str,
) -> Result<String> {
    svg(chart, 360, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .x_desc(x_title)
            .y_desc(y_title)
            .x_label_formatter(&percent)
            .y_label_formatter(&percent)
            .label_style((FONT, 11))
            .draw()
            .map_err(|e| e.to_string())?;
        c.draw_series(LineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            GREY.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?;
        c.draw_series(LineSeries::new(points.to_vec(), BLUE.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        c.draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Lift by decile as columns, with the line of no lift at 1.
pub fn lift(chart: &str, lifts: &[(u32, f64)], x_title: &str) -> Result<String> {
    let max = lifts.iter().fold(1.0f64, |a, &(_, l)| a.max(l));
    svg(chart, 320, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5f64..10.5f64, 0f64..max * 1.15)
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(10)
            .x_desc(x_title)
            .x_label_formatter(&|x| format!("{}", x.round() as i64))
            .y_label_formatter(&|y| format!("{y:.1}×"))
            .label_style((FONT, 11))
            .draw()
            .map_err(|e| e.to_string())?;
        c.draw_series(lifts.iter().map(|&(d, l)| {
            let x = d as f64;
            Rectangle::new([(x - 0.38, 0.0), (x + 0.38, l)], BLUE.filled())
        }))
        .map_err(|e| e.to_string())?;
        c.draw_series(LineSeries::new(
            vec![(0.5, 1.0), (10.5, 1.0)],
            ORANGE.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Uplift estimates with their 95 % intervals, one row per campaign export (top to bottom as
/// given), with the line of no effect.
pub fn uplift(chart: &str, labels: &[String], estimates: &[(f64, f64, f64)]) -> Result<String> {
    let lo = estimates.iter().fold(0.0f64, |a, &(_, l, _)| a.min(l));
    let hi = estimates.iter().fold(0.0f64, |a, &(_, _, h)| a.max(h));
    let pad = ((hi - lo) * 0.1).max(0.01);
    let n = labels.len().max(1) as i32;
    let height = 70 + 34 * n as u32;
    svg(chart, height, |root| {
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(170)
            .build_cartesian_2d((lo - pad)..(hi + pad), (0..n).into_segmented())
            .map_err(|e| e.to_string())?;
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(n as usize)
            .y_label_formatter(&|y| segment_label(labels, y))
            .x_label_formatter(&|x| format!("{:+.1} pt", x * 100.0))
            .label_style((FONT, 11))
            .draw()
            .map_err(|e| e.to_string())?;
        c.draw_series(LineSeries::new(
            vec![(0.0, SegmentValue::Exact(0)), (0.0, SegmentValue::Exact(n))],
            GREY.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?;
        c.draw_series(estimates.iter().enumerate().map(|(k, &(e, l, h))| {
            let y = SegmentValue::CenterOf(n - 1 - k as i32);
            ErrorBar::new_horizontal(y, l, e, h, BLUE.filled(), 10)
        }))
        .map_err(|e| e.to_string())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_one_svg_element_marked_with_its_name() {
        let s = bars("sizes", &["a".into(), "b".into()], &[3.0, 1.0], false).unwrap();
        assert!(
            s.starts_with("<svg class=\"chart\" data-chart=\"sizes\" "),
            "{s}"
        );
        assert_eq!(s.matches("<svg").count(), 1);
        assert!(s.trim_end().ends_with("</svg>"));
    }
}
