//! One workload's replay as an SVG: usage, the shardex forecast band, and every policy's
//! allocation over time, one panel per resource kind, with axes, units and a legend.

use std::fmt::Write;

use shardex_core::ResourceKind;
use shardex_forecast::Policy;
use shardex_forecast::replay::{PlotPoint, ReplayConfig};

const WIDTH: f64 = 1200.0;
const PANEL: f64 = 340.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 46.0;
const COLORS: [&str; 6] = [
    "#7f7f7f", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#1f77b4",
];

/// Display unit per kind: (divisor, label).
fn unit(kind: ResourceKind) -> (f64, &'static str) {
    match kind {
        ResourceKind::Cpu => (1000.0, "cores"),
        ResourceKind::Memory => (1024.0 * 1024.0 * 1024.0, "GiB"),
        ResourceKind::Net => (1e6, "Mbit/s"),
        ResourceKind::Iops => (1.0, "IOPS"),
    }
}

fn nice_step(range: f64, ticks: f64) -> f64 {
    let raw = (range / ticks).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag)
}

/// `s` as SVG text.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the plot; times are labelled in hours since `since` (the workload's first sample).
pub fn render(
    workload: &str,
    config: &ReplayConfig,
    points: &[PlotPoint],
    since: shardex_core::Timestamp,
) -> String {
    let kinds: Vec<ResourceKind> = config
        .kinds
        .iter()
        .copied()
        .filter(|k| points.iter().any(|p| p.kind == *k))
        .collect();
    let band = points.iter().any(|p| p.band.is_some());
    // The legend's height first (it wraps), so that the panels start below it.
    let legend_h = legend(&mut String::new(), config, band, 0.0);
    let first = TOP + legend_h;
    let height = first + kinds.len().max(1) as f64 * (PANEL + BOTTOM) + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="16" font-weight="bold">{} — usage, shardex p50–p99 band (p95 dashed) and allocations (lead {}, shard-rounded)</text>"#,
        escape(workload),
        config.lead
    );
    legend(&mut s, config, band, TOP - 14.0);
    for (panel, &kind) in kinds.iter().enumerate() {
        let pts: Vec<&PlotPoint> = points.iter().filter(|p| p.kind == kind).collect();
        let top = first + panel as f64 * (PANEL + BOTTOM);
        draw_panel(&mut s, kind, config, &pts, top, since.millis());
    }
    s.push_str("</svg>\n");
    s
}

fn draw_panel(
    s: &mut String,
    kind: ResourceKind,
    config: &ReplayConfig,
    pts: &[&PlotPoint],
    top: f64,
    since: i64,
) {
    let (div, label) = unit(kind);
    let t0 = pts.first().map_or(0, |p| p.time.millis());
    let t1 = pts.last().map_or(1, |p| p.time.millis()).max(t0 + 1);
    let hours = (t1 - t0) as f64 / 3_600_000.0;
    let offset = (t0 - since) as f64 / 3_600_000.0;
    let mut ymax = 0f64;
    for p in pts {
        ymax = ymax.max(p.used as f64);
        for a in p.allocated.iter().flatten() {
            ymax = ymax.max(*a as f64);
        }
        if let Some((_, _, p99)) = p.band {
            ymax = ymax.max(p99 as f64);
        }
    }
    let ymax = (ymax / div * 1.05).max(1e-9);
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * plot_w;
    let y = |v: f64| top + PANEL - (v / div / ymax).min(1.0) * PANEL;

    // Axes and grid.
    let ystep = nice_step(ymax, 6.0);
    let mut v = 0.0;
    while v <= ymax + 1e-12 {
        let yy = top + PANEL - v / ymax * PANEL;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            yy + 4.0,
            trim(v)
        );
        v += ystep;
    }
    // Ticks at round hours since the workload's first sample, within the range drawn.
    let xstep = nice_step(hours, 10.0);
    let mut h = (offset / xstep).ceil() * xstep - offset;
    while h <= hours + 1e-9 {
        let xx = LEFT + h / hours.max(1e-9) * plot_w;
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{top:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#f0f0f0"/>"##,
            top + PANEL
        );
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            top + PANEL + 16.0,
            trim(h + offset)
        );
        h += xstep;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{top:.1}" width="{plot_w:.1}" height="{PANEL}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">hours since the workload's first sample</text>"#,
        LEFT + plot_w / 2.0,
        top + PANEL + 34.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">{} ({label})</text>"#,
        top + PANEL / 2.0,
        kind.name()
    );

    // Forecast band of the shardex policy.
    let band: Vec<(i64, (u64, u64, u64))> = pts
        .iter()
        .filter_map(|p| p.band.map(|b| (p.time.millis(), b)))
        .collect();
    if !band.is_empty() {
        let mut poly = String::new();
        for (t, (p50, _, _)) in &band {
            let _ = write!(poly, "{:.1},{:.1} ", x(*t), y(*p50 as f64));
        }
        for (t, (_, _, p99)) in band.iter().rev() {
            let _ = write!(poly, "{:.1},{:.1} ", x(*t), y(*p99 as f64));
        }
        let _ = writeln!(
            s,
            r##"<polygon points="{poly}" fill="#1f77b4" fill-opacity="0.15" stroke="none"/>"##
        );
        let line: Vec<(f64, f64)> = band
            .iter()
            .map(|(t, (_, p95, _))| (x(*t), y(*p95 as f64)))
            .collect();
        polyline(s, &line, "#1f77b4", 1.0, Some("4 3"));
    }
    // Allocations, as steps.
    for (i, policy) in config.policies.iter().enumerate() {
        let mut line = Vec::new();
        for p in pts {
            if let Some(Some(a)) = p.allocated.get(i) {
                let yy = y(*a as f64);
                if let Some(&(_, py)) = line.last() {
                    line.push((x(p.time.millis()), py));
                }
                line.push((x(p.time.millis()), yy));
            }
        }
        if !line.is_empty() {
            polyline(s, &line, color(*policy), 1.3, None);
        }
    }
    // Usage, drawn last so that no allocation hides it.
    let used: Vec<(f64, f64)> = pts
        .iter()
        .map(|p| (x(p.time.millis()), y(p.used as f64)))
        .collect();
    polyline(s, &used, "#000000", 1.4, None);
}

/// The legend, above every panel and outside them, wrapped to the figure's width; returns
/// the height it takes.
fn legend(s: &mut String, config: &ReplayConfig, band: bool, top: f64) -> f64 {
    let mut items: Vec<(String, &str, Option<&str>)> = vec![("used".into(), "#000000", None)];
    for policy in &config.policies {
        items.push((format!("{policy} allocation"), color(*policy), None));
    }
    if band {
        items.push(("shardex p95 (band p50–p99)".into(), "#1f77b4", Some("4 3")));
    }
    let (mut lx, mut ly) = (LEFT, top + 12.0);
    for (name, color, dash) in items {
        let w = 34.0 + name.chars().count() as f64 * 7.0;
        if lx + w > WIDTH - RIGHT && lx > LEFT {
            lx = LEFT;
            ly += 18.0;
        }
        let d = dash.map_or(String::new(), |d| format!(r#" stroke-dasharray="{d}""#));
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{d}/>"#,
            lx + 22.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 26.0,
            ly + 4.0,
            escape(&name)
        );
        lx += w;
    }
    ly - top + 16.0
}

/// A policy's colour, the same in every picture.
pub(crate) fn color(p: Policy) -> &'static str {
    COLORS[Policy::ALL.iter().position(|x| *x == p).unwrap_or(0) % COLORS.len()]
}

fn polyline(s: &mut String, pts: &[(f64, f64)], color: &str, width: f64, dash: Option<&str>) {
    let mut d = String::with_capacity(pts.len() * 14);
    for (x, y) in pts {
        let _ = write!(d, "{x:.1},{y:.1} ");
    }
    let dash = dash.map_or(String::new(), |d| format!(r#" stroke-dasharray="{d}""#));
    let _ = writeln!(
        s,
        r#"<polyline points="{d}" fill="none" stroke="{color}" stroke-width="{width}"{dash}/>"#
    );
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
