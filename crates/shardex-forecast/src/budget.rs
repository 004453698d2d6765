//! Shortfall budgets: "at most 1 % of samples throttled" as the knob, instead of a quantile
//! level. A budget `α` for a kind makes shardex allocate at level `1 − α`, and its quantile
//! trackers hold that level online, per workload (after each sample, `log m += η (miss − α)`
//! per candidate, as in adaptive conformal inference), counting a throttled or OOM-killed
//! sample as a miss wherever the limit it was held at is at or above their quantile
//! (`Adaptive::observe_limited`): in a closed loop the trackers see the misses a host shows.

use shardex_core::ResourceKind;

/// Budgets from `kind=P%,...` (e.g. `cpu=1%,memory=0.1%`), in `ResourceKind::ALL` order;
/// kinds not named have none. Each must be a percentage above 0 and under 50.
pub fn parse(text: &str) -> Result<[f64; 4], String> {
    let mut out = [0.0; 4];
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not kind=percent, e.g. cpu=1%"))?;
        let kind: ResourceKind = k
            .trim()
            .parse()
            .map_err(|_| format!("{:?} is not a kind (cpu, memory, net, iops)", k.trim()))?;
        let pct = v
            .trim()
            .strip_suffix('%')
            .ok_or_else(|| format!("{:?}: write the budget as a percentage, e.g. 1%", v.trim()))?;
        let pct: f64 = pct
            .trim()
            .parse()
            .map_err(|_| format!("{:?} is not a percentage", v.trim()))?;
        if !(pct > 0.0 && pct < 50.0) {
            return Err(format!(
                "{kind} budget {pct}% is outside (0%, 50%): a share of samples allowed short"
            ));
        }
        out[kind.index()] = pct / 100.0;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;
    use shardex_core::ports::Forecaster;
    use shardex_core::{Sample, Span, Timestamp};

    /// A stationary series (uniform on 0..1000, a fixed-seed generator), fed as a closed loop
    /// would: the realised shortfall rate settles near each budget.
    #[test]
    fn the_realised_shortfall_rate_meets_the_budget_on_a_stationary_series() {
        for budget in [0.01, 0.05] {
            let mut params = crate::adaptive::Params::default();
            params.budgets[ResourceKind::Cpu.index()] = budget;
            let f = Policy::Shardex
                .build(ResourceKind::Cpu, None, &params)
                .unwrap();
            let rate = realised(f);
            assert!(
                rate > budget * 0.5 && rate < budget * 1.6,
                "budget {budget}: realised {rate}"
            );
        }
    }

    /// The tracker on the memory allocation itself (an experiment, off by default) holds the
    /// same rate when it is on.
    #[test]
    fn the_memory_output_tracker_holds_the_budget_too() {
        let budget = 0.01;
        let mut params = crate::adaptive::Params::default();
        params.budgets[ResourceKind::Memory.index()] = budget;
        params.memory_output_eta = 0.05;
        let f = Policy::Shardex
            .build(ResourceKind::Memory, None, &params)
            .unwrap();
        let rate = realised(f);
        assert!(
            rate > budget * 0.5 && rate < budget * 1.6,
            "realised {rate}"
        );
    }

    /// The share of samples above the allocation of a uniform series on 0..1000 (a fixed-seed
    /// generator) fed as a closed loop would, after a warm-up.
    fn realised(mut f: Box<dyn Forecaster>) -> f64 {
        {
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            let (mut misses, mut n) = (0u32, 0u32);
            let lead = Span::from_secs(300);
            let mut allocated = Vec::new();
            for i in 0..20_000i64 {
                let now = Timestamp::from_secs(i * 300).unwrap();
                allocated.push(f.recommend(now, lead));
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = x % 1000;
                // The sample of this slot is measured under the allocation decided a slot ago.
                let a = allocated[usize::try_from(i).unwrap().saturating_sub(1)];
                if i >= 4_000 {
                    n += 1;
                    misses += u32::from(v > a);
                }
                let t = Timestamp::from_secs(i * 300 + 1).unwrap();
                if v > a && i > 288 {
                    f.observe_limited(t, a, false);
                } else {
                    f.observe(Sample { time: t, value: v }, Some(a));
                }
            }
            f64::from(misses) / f64::from(n)
        }
    }

    #[test]
    fn budgets_parse_as_percentages_per_kind_and_bad_ones_name_what_is_wrong() {
        let b = parse("cpu=1%, memory=0.1%").unwrap();
        assert_eq!(b, [0.01, 0.001, 0.0, 0.0]);
        assert!(parse("cpu=1").unwrap_err().contains("percentage"));
        assert!(parse("disk=1%").unwrap_err().contains("not a kind"));
        assert!(parse("cpu=0%").unwrap_err().contains("outside"));
        assert!(parse("cpu=x%").unwrap_err().contains("not a percentage"));
        assert!(parse("cpu").unwrap_err().contains("kind=percent"));
    }
}
