//! The frontier: shardex run at a range of shortfall budgets gives a curve of slack against
//! shortfall; a baseline is one point. The honest comparison is shardex's slack at the
//! baseline's own realised shortfall, interpolated between the neighbouring budgets, next to
//! the baseline's slack: who wastes less at the same risk.

use serde::Serialize;

/// Budgets the sweep runs shardex at, percent of samples (the same for every kind).
pub const BUDGETS_PCT: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];

/// One point: a realised shortfall and the slack that came with it, both percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Share of samples short, percent.
    pub shortfall_pct: f64,
    /// Slack, percent of what was allocated.
    pub slack_pct: f64,
}

/// The curve's slack at `shortfall`, linear between the two points around it (the curve in
/// any order; where two points have the same shortfall the lower slack counts). `None` when
/// `shortfall` is outside the curve's range: no extrapolation.
pub fn slack_at(curve: &[Point], shortfall: f64) -> Option<f64> {
    let mut pts: Vec<Point> = curve
        .iter()
        .copied()
        .filter(|p| p.shortfall_pct.is_finite() && p.slack_pct.is_finite())
        .collect();
    pts.sort_by(|a, b| {
        a.shortfall_pct
            .total_cmp(&b.shortfall_pct)
            .then(a.slack_pct.total_cmp(&b.slack_pct))
    });
    pts.dedup_by(|b, a| a.shortfall_pct == b.shortfall_pct);
    let first = pts.first()?;
    let last = pts.last()?;
    if shortfall < first.shortfall_pct || shortfall > last.shortfall_pct {
        return None;
    }
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        if shortfall <= b.shortfall_pct {
            let span = b.shortfall_pct - a.shortfall_pct;
            let f = if span > 0.0 {
                (shortfall - a.shortfall_pct) / span
            } else {
                0.0
            };
            return Some(a.slack_pct + f * (b.slack_pct - a.slack_pct));
        }
    }
    Some(first.slack_pct)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(shortfall_pct: f64, slack_pct: f64) -> Point {
        Point {
            shortfall_pct,
            slack_pct,
        }
    }

    #[test]
    fn slack_is_interpolated_between_the_neighbouring_budgets_and_never_extrapolated() {
        let curve = [p(4.0, 30.0), p(1.0, 50.0), p(2.0, 40.0)];
        assert_eq!(slack_at(&curve, 1.0), Some(50.0));
        assert_eq!(slack_at(&curve, 1.5), Some(45.0));
        assert_eq!(slack_at(&curve, 3.0), Some(35.0));
        assert_eq!(slack_at(&curve, 4.0), Some(30.0));
        assert_eq!(slack_at(&curve, 0.5), None, "below the curve");
        assert_eq!(slack_at(&curve, 5.0), None, "above the curve");
        assert_eq!(slack_at(&[], 1.0), None);
        assert_eq!(slack_at(&[p(1.0, 50.0)], 1.0), Some(50.0));
        // Two budgets that realised the same shortfall: the better one counts.
        assert_eq!(
            slack_at(&[p(1.0, 50.0), p(1.0, 45.0), p(2.0, 40.0)], 1.0),
            Some(45.0)
        );
    }
}
