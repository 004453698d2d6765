//! The daemon's clock: the wall clock read once at start, then advanced by the monotonic
//! clock. A step of the system clock while the daemon runs (an operator's `date -s`, a bad NTP
//! server) therefore never reaches the ledger: a step 30 days forward and back would otherwise
//! be adopted as ledger time and, since ledger time never goes back, freeze it for 30 days
//! (and survive restarts). A step is logged when it is seen, and once the system clock is back
//! within a second of the daemon's, that is logged too. At start, a ledger that is ahead of the
//! wall clock (it was written under a clock that was wrong) is logged as an error naming both,
//! since its time can't go back and new reservations then start at the ledger's time.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use shardex_core::Timestamp;

/// How far the system clock may drift from the daemon's before it counts as a step.
const STEP_MS: i64 = 1_000;

/// Where the daemon's time started: the wall clock then, and the monotonic instant.
static START: OnceLock<(i64, Instant)> = OnceLock::new();
/// Whether a step is being reported (so it is logged once, not every read).
static STEPPED: AtomicBool = AtomicBool::new(false);

/// The system's wall clock in milliseconds since the epoch.
fn system_ms() -> anyhow::Result<i64> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    i64::try_from(since.as_millis()).context("the system clock overflows")
}

/// The daemon's time: `wall0` plus the monotonic time since, never before `floor`.
pub(super) fn daemon_time(wall0_ms: i64, elapsed_ms: u128, floor: Timestamp) -> Timestamp {
    let elapsed = i64::try_from(elapsed_ms).unwrap_or(i64::MAX);
    Timestamp::from_millis(wall0_ms.saturating_add(elapsed))
        .unwrap_or(floor)
        .max(floor)
}

/// How far the system clock has stepped from the daemon's (positive: ahead), when it has.
pub(super) fn step(system_ms: i64, daemon_ms: i64) -> Option<i64> {
    let d = system_ms.saturating_sub(daemon_ms);
    (d.abs() > STEP_MS).then_some(d)
}

/// The daemon's time now, never earlier than the ledger's `floor`.
pub(crate) fn now(floor: Timestamp) -> anyhow::Result<Timestamp> {
    let sys = system_ms()?;
    let (wall0, mono0) = *START.get_or_init(|| (sys, Instant::now()));
    let t = daemon_time(wall0, mono0.elapsed().as_millis(), floor);
    match step(sys, t.millis()) {
        Some(d) if !STEPPED.swap(true, Ordering::Relaxed) => tracing::warn!(
            step_ms = d,
            "the system clock stepped; shardex keeps its own time (started from the wall clock, advanced by the monotonic clock) and the ledger does not follow the step"
        ),
        None if STEPPED.swap(false, Ordering::Relaxed) => {
            tracing::info!("the system clock is back in step with shardex's");
        }
        _ => {}
    }
    Ok(t)
}

/// Says loudly, at start, when the ledger's time is ahead of the wall clock.
pub(crate) fn check_start(ledger_now: Timestamp) -> anyhow::Result<()> {
    let sys = system_ms()?;
    let ahead = ledger_now.millis().saturating_sub(sys);
    if ahead > 60_000 {
        tracing::error!(
            ledger_ms = ledger_now.millis(),
            wall_ms = sys,
            ahead_s = ahead / 1000,
            "the ledger's time is ahead of this machine's clock (it was written under a wrong clock): ledger time does not go back, so it stands still until the clock catches up; new reservations start at the ledger's time"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_s_time_is_its_start_plus_monotonic_time_whatever_the_wall_clock_does() {
        let floor = Timestamp::from_millis(1_000).unwrap();
        let t = daemon_time(10_000, 2_500, floor);
        assert_eq!(t.millis(), 12_500);
        // Never before the ledger's time.
        let later = Timestamp::from_millis(20_000).unwrap();
        assert_eq!(daemon_time(10_000, 2_500, later), later);
        // A step of the system clock 30 days ahead is seen as a step, not adopted.
        let month = 30 * 86_400_000;
        assert_eq!(step(12_500 + month, 12_500), Some(month));
        assert_eq!(step(12_500 - month, 12_500), Some(-month));
        assert_eq!(
            step(12_900, 12_500),
            None,
            "drift within a second is no step"
        );
    }
}
