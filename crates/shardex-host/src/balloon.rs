//! The balloon rule, shared by the QMP and libvirt backends: a VM's memory grows to its target
//! at once, and shrinks in steps, never below what the guest says it uses plus a margin, so the
//! balloon never makes a guest swap or kill its own processes.

/// A shrink takes at most a quarter of what the guest holds per actuation: the guest gives up
/// page cache as the balloon inflates, and its use is read again before the next step.
const STEP_DIVISOR: u64 = 4;

/// Kept above what the guest uses: the larger of 64 MiB and an eighth of its use.
const MARGIN_MIN: u64 = 64 << 20;

/// The balloon target to set now, in bytes, for a guest that holds `actual` and should get to
/// `target`, using `used` (`None` until its balloon driver reports).
pub fn next_target(actual: u64, target: u64, used: Option<u64>) -> u64 {
    if target >= actual {
        return target;
    }
    let floor = used.map_or(0, |u| u.saturating_add((u / 8).max(MARGIN_MIN)));
    let step = actual - (actual / STEP_DIVISOR).max(1);
    // A shrink never grows the guest, whatever its use.
    target.max(floor).max(step).min(actual)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_shrink_goes_in_quarters_down_to_the_guest_s_use_and_a_grow_at_once() {
        assert_eq!(next_target(512 * MIB, 320 * MIB, None), 384 * MIB);
        assert_eq!(next_target(384 * MIB, 320 * MIB, None), 320 * MIB);
        // 250 MiB in use keeps 250 + 64 MiB.
        assert_eq!(
            next_target(400 * MIB, 128 * MIB, Some(250 * MIB)),
            314 * MIB
        );
        // An eighth of a large use is more than 64 MiB.
        assert_eq!(
            next_target(8192 * MIB, 1024 * MIB, Some(4096 * MIB)),
            6144 * MIB
        );
        assert_eq!(
            next_target(300 * MIB, 512 * MIB, Some(290 * MIB)),
            512 * MIB
        );
    }

    proptest! {
        /// Repeated, the rule reaches the target or the guest's floor, never goes below
        /// either, and each step takes at most a quarter.
        #[test]
        fn shrinking_ends_at_the_target_or_the_floor_in_quarters(
            actual in 1u64..1 << 40,
            target in 0u64..1 << 40,
            used in proptest::option::of(0u64..1 << 39),
        ) {
            let floor = used.map_or(0, |u| u + (u / 8).max(MARGIN_MIN));
            let mut now = actual;
            for _ in 0..200 {
                let next = next_target(now, target, used);
                prop_assert!(next >= target);
                if next < now {
                    prop_assert!(next >= floor);
                    prop_assert!(now - next <= now / 4 + 1);
                }
                if next == now {
                    break;
                }
                now = next;
            }
            prop_assert!(now == target.max(floor.min(actual)) || (target >= actual && now == target));
        }
    }
}
