//! SVG charts: titled, with axes, ticks, labels and legends.

use std::fmt::Write;

use ndarray::ArrayView2;

use crate::escape;

/// Ten distinguishable colours (Tableau 10).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

const W: f64 = 680.0;
const H: f64 = 420.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 52.0;

/// "Nice" tick values covering `lo..hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 7.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 * span {
        out.push(if t.abs() < 1e-12 * span { 0.0 } else { t });
        t += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-2 {
        format!("{v:.0e}")
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').to_string()
    }
}

struct Frame {
    x: (f64, f64),
    y: (f64, f64),
    svg: String,
}

impl Frame {
    fn new(
        title: &str,
        x_label: &str,
        y_label: &str,
        x: (f64, f64),
        y: (f64, f64),
        x_ticks: bool,
    ) -> Self {
        let pad = |(a, b): (f64, f64)| {
            let (a, b) = if a.is_finite() && b.is_finite() {
                (a, b)
            } else {
                (0.0, 1.0)
            };
            if (b - a).abs() < 1e-12 {
                (a - 0.5, b + 0.5)
            } else {
                (a, b)
            }
        };
        let (x, y) = (pad(x), pad(y));
        let mut svg = String::new();
        let _ = write!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="12"><rect width="{W}" height="{H}" fill="#ffffff"/><text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"##,
            (LEFT + W - RIGHT) / 2.0,
            escape(title)
        );
        let f = Self { x, y, svg };
        let mut f = f;
        let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
        let _ = write!(
            f.svg,
            r##"<rect x="{x0}" y="{y1}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
            x1 - x0,
            y0 - y1
        );
        for t in if x_ticks {
            ticks(f.x.0, f.x.1)
        } else {
            Vec::new()
        } {
            let px = f.px(t);
            let _ = write!(
                f.svg,
                r##"<line x1="{px:.1}" y1="{y0}" x2="{px:.1}" y2="{}" stroke="#444"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
                y0 + 5.0,
                y0 + 18.0,
                fmt_tick(t)
            );
        }
        for t in ticks(f.y.0, f.y.1) {
            let py = f.py(t);
            let _ = write!(
                f.svg,
                r##"<line x1="{}" y1="{py:.1}" x2="{x0}" y2="{py:.1}" stroke="#444"/><line x1="{x0}" y1="{py:.1}" x2="{x1}" y2="{py:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 - 5.0,
                x0 - 8.0,
                py + 4.0,
                fmt_tick(t)
            );
        }
        let _ = write!(
            f.svg,
            r##"<text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"##,
            (x0 + x1) / 2.0,
            H - 12.0,
            escape(x_label),
            (y0 + y1) / 2.0,
            escape(y_label)
        );
        f
    }

    fn px(&self, v: f64) -> f64 {
        LEFT + (v - self.x.0) / (self.x.1 - self.x.0) * (W - RIGHT - LEFT)
    }

    fn py(&self, v: f64) -> f64 {
        H - BOTTOM - (v - self.y.0) / (self.y.1 - self.y.0) * (H - BOTTOM - TOP)
    }

    fn legend(&mut self, entries: &[(String, &str)]) {
        for (i, (name, colour)) in entries.iter().enumerate() {
            let y = TOP + 10.0 + 18.0 * i as f64;
            let x = W - RIGHT + 14.0;
            let _ = write!(
                self.svg,
                r##"<rect x="{x}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{}</text>"##,
                y - 9.0,
                x + 18.0,
                y + 1.0,
                escape(name)
            );
        }
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>");
        self.svg
    }
}

fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        })
}

/// A 2-D scatter of `points` (N × 2), coloured by `labels` with a legend.
pub fn scatter(
    points: ArrayView2<'_, f64>,
    labels: Option<&[i64]>,
    title: &str,
    x_label: &str,
    y_label: &str,
) -> String {
    let xr = range(points.column(0).iter().copied());
    let yr = if points.ncols() > 1 {
        range(points.column(1).iter().copied())
    } else {
        (0.0, 1.0)
    };
    let mut f = Frame::new(title, x_label, y_label, xr, yr, true);
    let mut classes: Vec<i64> = labels.map(|l| l.to_vec()).unwrap_or_default();
    classes.sort_unstable();
    classes.dedup();
    let colour = |l: Option<i64>| -> &'static str {
        match l {
            Some(l) => PALETTE[classes.iter().position(|c| *c == l).unwrap_or(0) % PALETTE.len()],
            None => PALETTE[0],
        }
    };
    let radius = if points.nrows() > 3000 { 1.2 } else { 2.2 };
    for (i, r) in points.rows().into_iter().enumerate() {
        let (x, y) = (r[0], if r.len() > 1 { r[1] } else { 0.0 });
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        let c = colour(labels.and_then(|l| l.get(i).copied()));
        let _ = write!(
            f.svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="{radius}" fill="{c}" fill-opacity="0.7"/>"##,
            f.px(x),
            f.py(y)
        );
    }
    if labels.is_some() {
        let entries: Vec<(String, &str)> = classes
            .iter()
            .take(PALETTE.len())
            .map(|c| (format!("label {c}"), colour(Some(*c))))
            .collect();
        f.legend(&entries);
    }
    f.finish()
}

/// Vertical bars, one per name, with an optional dashed reference line.
pub fn bars(
    values: &[f64],
    names: &[String],
    title: &str,
    y_label: &str,
    reference: Option<(f64, &str)>,
) -> String {
    let hi = values
        .iter()
        .copied()
        .chain(reference.map(|r| r.0))
        .fold(0.0f64, f64::max);
    let mut f = Frame::new(
        title,
        "",
        y_label,
        (0.0, values.len().max(1) as f64),
        (0.0, hi * 1.05),
        false,
    );
    let n = values.len().max(1) as f64;
    let bw = (W - RIGHT - LEFT) / n;
    for (i, v) in values.iter().enumerate() {
        let x = LEFT + bw * i as f64;
        let y = f.py(v.max(0.0));
        let _ = write!(
            f.svg,
            r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"##,
            x + 0.1 * bw,
            0.8 * bw,
            (H - BOTTOM - y).max(0.0),
            PALETTE[0]
        );
        if let Some(name) = names.get(i)
            && (values.len() <= 32 || i % (values.len() / 16).max(1) == 0)
        {
            let _ = write!(
                f.svg,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" font-size="10">{}</text>"##,
                x + 0.5 * bw,
                H - BOTTOM + 16.0,
                escape(name)
            );
        }
    }
    if let Some((v, label)) = reference {
        let y = f.py(v);
        let _ = write!(
            f.svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e15759" stroke-dasharray="6 4"/>"##,
            W - RIGHT
        );
        f.legend(&[(label.to_string(), "#e15759")]);
    }
    f.finish()
}

/// A strip plot: one column per group, a dot per value (each group's
/// values spread sideways in their order), and a bar at the group's
/// median; non-finite values are left out.
pub fn strips(groups: &[(String, Vec<f64>)], title: &str, y_label: &str) -> String {
    let yr = range(groups.iter().flat_map(|(_, v)| v.iter().copied()));
    let span = (yr.1 - yr.0).abs().max(1e-9);
    let mut f = Frame::new(
        title,
        "",
        y_label,
        (0.0, groups.len().max(1) as f64),
        (yr.0 - 0.05 * span, yr.1 + 0.05 * span),
        false,
    );
    let n = groups.len().max(1) as f64;
    let bw = (W - RIGHT - LEFT) / n;
    for (i, (name, values)) in groups.iter().enumerate() {
        let centre = LEFT + bw * (i as f64 + 0.5);
        let colour = PALETTE[i % PALETTE.len()];
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let k = finite.len().max(1) as f64;
        for (j, v) in finite.iter().enumerate() {
            let dx = if finite.len() > 1 {
                (j as f64 / (k - 1.0) - 0.5) * 0.4 * bw
            } else {
                0.0
            };
            let _ = write!(
                f.svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{colour}" fill-opacity="0.8"/>"##,
                centre + dx,
                f.py(*v)
            );
        }
        let mut sorted = finite.clone();
        sorted.sort_by(f64::total_cmp);
        if !sorted.is_empty() {
            let m = sorted.len();
            let median = if m % 2 == 1 {
                sorted[m / 2]
            } else {
                0.5 * (sorted[m / 2 - 1] + sorted[m / 2])
            };
            let y = f.py(median);
            let _ = write!(
                f.svg,
                r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#222" stroke-width="2"/>"##,
                centre - 0.3 * bw,
                centre + 0.3 * bw
            );
        }
        let _ = write!(
            f.svg,
            r##"<text x="{centre:.1}" y="{}" text-anchor="middle" font-size="10">{}</text>"##,
            H - BOTTOM + 16.0,
            escape(name)
        );
    }
    f.finish()
}

/// A named line.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
}

/// Lines with a legend and an optional dashed horizontal reference.
pub fn lines(
    series: &[Series],
    title: &str,
    x_label: &str,
    y_label: &str,
    reference: Option<(f64, &str)>,
) -> String {
    let xr = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let yr = range(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(reference.map(|r| r.0)),
    );
    let margin = 0.05 * (yr.1 - yr.0).abs().max(1e-9);
    let mut f = Frame::new(
        title,
        x_label,
        y_label,
        xr,
        (yr.0 - margin, yr.1 + margin),
        true,
    );
    let mut entries = Vec::new();
    for (k, s) in series.iter().enumerate() {
        let c = PALETTE[k % PALETTE.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|p| format!("{:.1},{:.1}", f.px(p.0), f.py(p.1)))
            .collect();
        let _ = write!(
            f.svg,
            r##"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"##,
            pts.join(" ")
        );
        entries.push((s.name.clone(), c));
    }
    if let Some((v, label)) = reference {
        let y = f.py(v);
        let _ = write!(
            f.svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#333" stroke-dasharray="6 4"/>"##,
            W - RIGHT
        );
        entries.push((label.to_string(), "#333"));
    }
    f.legend(&entries);
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(-0.37, 0.91);
        assert!(t.first().unwrap() >= &-0.37 && t.last().unwrap() <= &0.91 && t.len() >= 3);
    }

    #[test]
    fn charts_are_well_formed_svg_with_titles_and_legends() {
        let s = scatter(
            array![[0.0, 1.0], [2.0, 3.0], [f64::NAN, 1.0]].view(),
            Some(&[1, 2, 1]),
            "map <x>",
            "t-SNE 1",
            "t-SNE 2",
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("map &lt;x&gt;") && s.contains("label 2"));
        assert_eq!(s.matches("<circle").count(), 2);
        let b = bars(
            &[1.0, 0.0, 2.5],
            &["z0".into(), "z1".into(), "z2".into()],
            "KL",
            "nats",
            Some((0.5, "threshold")),
        );
        assert_eq!(b.matches("<rect").count(), 3 + 2 + 1);
        let l = lines(
            &[Series {
                name: "linear".into(),
                points: vec![(0.0, 1.0), (1.0, 2.0)],
            }],
            "norms",
            "step",
            "‖z‖",
            Some((1.5, "√d")),
        );
        assert!(l.contains("polyline") && l.contains("√d"));
    }

    #[test]
    fn strips_draw_a_dot_per_finite_value_and_a_median_per_group() {
        let g = vec![
            ("β-VAE".to_string(), vec![0.1, 0.9, 0.2]),
            ("FactorVAE".to_string(), vec![0.5, f64::NAN]),
            ("empty".to_string(), vec![]),
        ];
        let s = strips(&g, "MIG <by family>", "MIG");
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("MIG &lt;by family&gt;") && s.contains("FactorVAE"));
        assert_eq!(s.matches("<circle").count(), 4);
        assert_eq!(s.matches(r#"stroke-width="2""#).count(), 2);
        // The median of 0.1, 0.9, 0.2 (not their mean, 0.4) sits where the
        // dot of 0.2 (the third) does.
        let attr = |tag: &str, name: &str| -> Vec<String> {
            s.split(tag)
                .skip(1)
                .map(|t| {
                    t.split(&format!(r#"{name}=""#))
                        .nth(1)
                        .unwrap()
                        .split('"')
                        .next()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        let dots = attr("<circle", "cy");
        let medians: Vec<String> = s
            .split("<line")
            .skip(1)
            .filter(|t| t.contains(r#"stroke-width="2""#))
            .map(|t| {
                t.split(r#"y1=""#)
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(medians[0], dots[2]);
        assert_eq!(medians[1], dots[3]);
    }
}
