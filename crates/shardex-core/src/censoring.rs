//! What a sample held at its limit means for what is decided next, shared by the daemon's
//! profiler (`shardex-agent`) and the replay's shardex policy (`shardex-forecast`), so that the
//! yardstick scores the rule the daemon runs.
//!
//! * A held sample (throttled at the cpu, net or iops quota) is a lower bound on demand; the
//!   next decision lets the workload use at least twice the limit it was held at.
//! * An OOM kill floors memory at [`OOM_BUMP_PCT`] % over the limit the kernel enforced, for
//!   [`OOM_HOLD`], never from a previous floor (so one OOM never inflates the next, the
//!   feedback loop of kubernetes/autoscaler#9521).

use crate::time::Span;

/// How long an OOM floor holds.
pub const OOM_HOLD: Span = Span::from_secs(86_400);

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
}
