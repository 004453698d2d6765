//! `replay --frontier`: shardex's slack against shortfall over a range of budgets, each
//! baseline's point, and shardex's slack at each baseline's own shortfall, as a table, JSON
//! and an SVG (one panel per kind, legend above the panels).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;
use shardex_forecast::Policy;
use shardex_forecast::frontier::{BUDGETS_PCT, Point, slack_at};
use shardex_forecast::replay::{ReplayConfig, Tallies};

use crate::plot::{color as policy_color, escape};

/// One budget's point of the shardex curve.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// The budget it ran at, percent.
    pub budget_pct: f64,
    /// What it realised, percent of samples.
    pub shortfall_pct: f64,
    /// Its slack, percent.
    pub slack_pct: f64,
}

/// A baseline against the curve.
#[derive(Debug, Clone, Serialize)]
pub struct Versus {
    /// The baseline.
    pub name: String,
    /// Its realised shortfall, percent of samples.
    pub shortfall_pct: f64,
    /// Its slack, percent.
    pub slack_pct: f64,
    /// Shardex's slack at that shortfall (`None`: outside the curve's range).
    pub shardex_slack_pct: Option<f64>,
    /// The baseline's slack minus shardex's: positive when shardex wastes less.
    pub slack_lower_by: Option<f64>,
}

/// One kind's frontier.
#[derive(Debug, Clone, Serialize)]
pub struct KindFrontier {
    /// Shardex at each budget, in budget order.
    pub curve: Vec<CurvePoint>,
    /// Every other policy.
    pub baselines: Vec<Versus>,
}

/// The frontier per kind name.
#[derive(Debug, Clone, Serialize)]
pub struct Frontier(pub BTreeMap<String, KindFrontier>);

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Frontier {
    /// From the replay's tallies and the sweep's (one per budget of [`BUDGETS_PCT`]).
    pub fn new(config: &ReplayConfig, tallies: &Tallies, swept: &[Tallies]) -> Self {
        let mut out = BTreeMap::new();
        for &kind in &config.kinds {
            let curve: Vec<CurvePoint> = BUDGETS_PCT
                .iter()
                .zip(swept)
                .filter_map(|(&b, t)| {
                    let f = t.0.get(&(Policy::Shardex, kind))?.figures();
                    Some(CurvePoint {
                        budget_pct: b,
                        shortfall_pct: f.shortfall_samples_pct,
                        slack_pct: f.slack_pct,
                    })
                })
                .collect();
            if curve.is_empty() {
                continue;
            }
            let points: Vec<Point> = curve
                .iter()
                .map(|c| Point {
                    shortfall_pct: c.shortfall_pct,
                    slack_pct: c.slack_pct,
                })
                .collect();
            let baselines = config
                .policies
                .iter()
                .filter(|&&p| p != Policy::Shardex)
                .filter_map(|&p| {
                    let f = tallies.0.get(&(p, kind))?.figures();
                    let at = slack_at(&points, f.shortfall_samples_pct).map(round2);
                    Some(Versus {
                        name: p.name().to_string(),
                        shortfall_pct: f.shortfall_samples_pct,
                        slack_pct: f.slack_pct,
                        shardex_slack_pct: at,
                        slack_lower_by: at.map(|s| round2(f.slack_pct - s)),
                    })
                })
                .collect();
            out.insert(kind.name().to_string(), KindFrontier { curve, baselines });
        }
        Frontier(out)
    }

    /// As a readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        for (kind, f) in &self.0 {
            let _ = writeln!(s, "frontier, {kind}: shardex at each budget");
            let _ = writeln!(
                s,
                "{:>10} {:>12} {:>9}",
                "budget %", "shortfall %", "slack %"
            );
            for c in &f.curve {
                let _ = writeln!(
                    s,
                    "{:>10} {:>12.2} {:>9.1}",
                    c.budget_pct, c.shortfall_pct, c.slack_pct
                );
            }
            let _ = writeln!(
                s,
                "{:<17} {:>12} {:>9} {:>16} {:>15}",
                "at the shortfall of", "shortfall %", "slack %", "shardex slack %", "lower by"
            );
            for v in &f.baselines {
                let at = v
                    .shardex_slack_pct
                    .map_or("out of range".to_string(), |x| format!("{x:.1}"));
                let by = v
                    .slack_lower_by
                    .map_or("-".to_string(), |x| format!("{x:+.1}"));
                let _ = writeln!(
                    s,
                    "{:<17} {:>12.2} {:>9.1} {:>16} {:>15}",
                    v.name, v.shortfall_pct, v.slack_pct, at, by
                );
            }
        }
        s
    }

    /// Slack against shortfall, one panel per kind: shardex's curve (its budgets marked) and
    /// each baseline's point, the legend above the panels.
    pub fn svg(&self, trace: &str) -> String {
        const W: f64 = 560.0;
        const H: f64 = 400.0;
        const L: f64 = 70.0;
        const T: f64 = 80.0;
        const PW: f64 = 440.0;
        const PH: f64 = 280.0;
        let color = |n: &str| n.parse::<Policy>().map_or("#000000", policy_color);
        let width = W * self.0.len().max(1) as f64;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" viewBox="0 0 {width} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="15">{}: slack against shortfall (line: shardex at budgets {}–{} %)</text>"#,
            escape(trace),
            BUDGETS_PCT[0],
            BUDGETS_PCT[BUDGETS_PCT.len() - 1]
        );
        // The legend, above every panel.
        let mut x = 10.0;
        for p in Policy::ALL {
            let (name, c) = (p.name(), policy_color(p));
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="34" width="12" height="12" fill="{c}"/><text x="{}" y="45">{name}</text>"#,
                x + 16.0
            );
            x += 30.0 + 7.0 * name.len() as f64;
        }
        for (i, (kind, f)) in self.0.iter().enumerate() {
            let ox = i as f64 * W + L;
            let max_x = f
                .curve
                .iter()
                .map(|c| c.shortfall_pct)
                .chain(f.baselines.iter().map(|b| b.shortfall_pct))
                .fold(1.0f64, f64::max)
                .min(30.0)
                * 1.05;
            let px = |v: f64| ox + v.min(max_x) / max_x * PW;
            let py = |v: f64| T + PH - v.clamp(0.0, 100.0) / 100.0 * PH;
            let _ = writeln!(
                s,
                r##"<rect x="{ox}" y="{T}" width="{PW}" height="{PH}" fill="none" stroke="#333"/><text x="{}" y="{}" text-anchor="middle">{kind}: shortfall, % of samples</text><text x="{}" y="{}" transform="rotate(-90 {} {})" text-anchor="middle">slack, % of allocation</text>"##,
                ox + PW / 2.0,
                T + PH + 36.0,
                ox - 48.0,
                T + PH / 2.0,
                ox - 48.0,
                T + PH / 2.0
            );
            for k in 0..=5 {
                let v = f64::from(k) * 20.0;
                let _ = writeln!(
                    s,
                    r##"<line x1="{ox}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{v}</text>"##,
                    ox + PW,
                    ox - 6.0,
                    py(v) + 4.0,
                    y = py(v)
                );
                let xv = max_x * f64::from(k) / 5.0;
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}" text-anchor="middle">{:.1}</text>"#,
                    px(xv),
                    T + PH + 16.0,
                    xv
                );
            }
            let pts: Vec<String> = f
                .curve
                .iter()
                .map(|c| format!("{:.1},{:.1}", px(c.shortfall_pct), py(c.slack_pct)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                pts.join(" "),
                color("shardex")
            );
            for c in &f.curve {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>budget {}%: {:.2}% short, {:.1}% slack</title></circle>"#,
                    px(c.shortfall_pct),
                    py(c.slack_pct),
                    color("shardex"),
                    c.budget_pct,
                    c.shortfall_pct,
                    c.slack_pct
                );
            }
            for b in &f.baselines {
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="{}"><title>{}: {:.2}% short, {:.1}% slack</title></rect>"#,
                    px(b.shortfall_pct) - 4.0,
                    py(b.slack_pct) - 4.0,
                    color(&b.name),
                    b.name,
                    b.shortfall_pct,
                    b.slack_pct
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }
}
