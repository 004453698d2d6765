//! What a sample held at its limit means for what is decided next, shared by the daemon's
//! profiler (`shardex-agent`) and the replay's shardex policy (`shardex-forecast`), so that the
//! yardstick scores the rule the daemon runs.
//!
//! * A held sample (throttled at the cpu, net or iops quota) is a lower bound on demand; the
//!   next decision lets the workload use at least twice the limit it was held at.
//! * An OOM kill floors memory at [`OOM_BUMP_PCT`] % over the limit the kernel enforced, for
//!   [`OOM_HOLD`], never from a previous floor (so one OOM never inflates the next, the
//!   feedback loop of kubernetes/autoscaler#9521). A memory shortfall budget above
//!   [`OOM_HOLD_BUDGET`] shortens the hold in proportion ([`oom_hold`]): a day-long floor after
//!   every kill would keep the realised rate far under a budget that allows one sample in
//!   twenty-five short, so the budget could never be what the user gets.

use crate::time::Span;

/// How long an OOM floor holds.
pub const OOM_HOLD: Span = Span::from_secs(86_400);

/// The largest memory shortfall budget (a share of samples) the full [`OOM_HOLD`] applies to.
pub const OOM_HOLD_BUDGET: f64 = 0.01;

/// How long an OOM floor holds under a memory shortfall `budget` (a share of samples; none:
/// the daemon's default): [`OOM_HOLD`], shortened in proportion above [`OOM_HOLD_BUDGET`]
/// (a 4 % budget holds a quarter of it).
pub fn oom_hold(budget: Option<f64>) -> Span {
    match budget {
        Some(b) if b > OOM_HOLD_BUDGET => {
            // A day in milliseconds is exact in an f64, and the ratio is in (0, 1): the result
            // is a non-negative whole number of milliseconds under a day.
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let ms = (OOM_HOLD.millis() as f64 * OOM_HOLD_BUDGET / b).round() as u64;
            Span::from_millis(ms)
        }
        _ => OOM_HOLD,
    }
}

/// An OOM floor is this many percent above the limit the workload was killed at.
pub const OOM_BUMP_PCT: u64 = 20;

/// The memory floor after an OOM kill at `limit`.
pub fn oom_floor(limit: u64) -> u64 {
    limit.saturating_add(limit.saturating_mul(OOM_BUMP_PCT) / 100)
}

/// The least the next decision gives a workload held at `limit`.
pub fn raised(limit: u64) -> u64 {
    limit.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oom_floors_20_percent_over_the_limit_and_a_held_sample_doubles() {
        assert_eq!(oom_floor(1000), 1200);
        assert_eq!(oom_floor(u64::MAX), u64::MAX);
        assert_eq!(raised(300), 600);
    }

    #[test]
    fn a_budget_above_one_percent_shortens_the_oom_hold_in_proportion() {
        assert_eq!(oom_hold(None), OOM_HOLD);
        assert_eq!(oom_hold(Some(0.001)), OOM_HOLD);
        assert_eq!(oom_hold(Some(0.01)), OOM_HOLD);
        assert_eq!(oom_hold(Some(0.04)), Span::from_secs(21_600));
        assert_eq!(oom_hold(Some(0.16)), Span::from_secs(5_400));
    }
}
