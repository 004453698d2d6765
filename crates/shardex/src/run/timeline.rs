//! What the daemon keeps of each workload's recent past for its dashboard page: per sample,
//! usage, the forecast band, the entitlement and the limit in force per kind, which samples
//! were held at the limit, and when OOM kills were seen. In memory and bounded: `api.history`
//! of samples per workload, each number an `f32` (a chart needs no more; 1,000 workloads keep
//! an hour at 10 s in about 35 MB).

use std::collections::{HashMap, VecDeque};

use shardex_core::{Timestamp, WorkloadId};

use super::control_loop::WorkloadView;

/// The series of one point, in this order.
const USAGE: usize = 0;
const P50: usize = 1;
const P95: usize = 2;
const ENTITLEMENT: usize = 3;
const LIMIT: usize = 4;

/// One sample of one workload: per kind the five numbers (`NaN`: not known), and a bit per
/// kind held at its limit.
#[derive(Debug, Clone, Copy)]
struct Point {
    at_ms: i64,
    values: [[f32; 5]; 4],
    censored: u8,
}

#[derive(Debug, Default)]
struct Ring {
    points: VecDeque<Point>,
    ooms: VecDeque<i64>,
}

/// Every workload's recent past.
#[derive(Debug)]
pub struct Timelines {
    keep: usize,
    per: HashMap<WorkloadId, Ring>,
}

#[allow(clippy::cast_precision_loss)]
fn number(v: Option<u64>) -> f32 {
    v.map_or(f32::NAN, |v| v as f32)
}

fn known(v: f32) -> Option<f64> {
    (!v.is_nan()).then_some(f64::from(v))
}

impl Timelines {
    /// Keeping the newest `keep` samples of each workload (at least one).
    pub fn new(keep: usize) -> Self {
        Self {
            keep: keep.max(1),
            per: HashMap::new(),
        }
    }

    /// Adds what the control loop shows of a workload at `at`.
    pub fn push(&mut self, at: Timestamp, v: &WorkloadView) {
        let mut values = [[f32::NAN; 5]; 4];
        let mut censored = 0u8;
        for (k, row) in values.iter_mut().enumerate() {
            row[USAGE] = number(v.usage.and_then(|u| u[k]));
            row[P50] = number(v.forecast[k].map(|q| q.p50));
            row[P95] = number(v.forecast[k].map(|q| q.p95));
            row[ENTITLEMENT] = number(v.entitlement.map(|e| e[k]));
            row[LIMIT] = number(v.limits.as_ref().and_then(|l| l.in_force[k]).flatten());
            if v.censored[k] {
                censored |= 1 << k;
            }
        }
        let ring = self.per.entry(v.id).or_default();
        if ring.points.len() == self.keep {
            ring.points.pop_front();
        }
        ring.points.push_back(Point {
            at_ms: at.millis(),
            values,
            censored,
        });
    }

    /// Records an OOM kill inside `w` at `at`.
    pub fn oom(&mut self, w: WorkloadId, at: Timestamp) {
        let ring = self.per.entry(w).or_default();
        if ring.ooms.len() == self.keep {
            ring.ooms.pop_front();
        }
        ring.ooms.push_back(at.millis());
    }

    /// Forgets the workloads for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(WorkloadId) -> bool) {
        self.per.retain(|w, _| keep(*w));
    }

    /// `w`'s points from `since` on, oldest first; `None` when nothing of it is kept.
    pub fn since(&self, w: WorkloadId, since: Timestamp) -> Option<shardex_api::Timeline> {
        let ring = self.per.get(&w)?;
        let from = since.millis();
        let mut out = shardex_api::Timeline::default();
        let stamp = |ms: i64| Timestamp::from_millis(ms).unwrap_or(Timestamp::EPOCH);
        for p in ring.points.iter().filter(|p| p.at_ms >= from) {
            out.at.push(stamp(p.at_ms));
            for (k, s) in out.kinds.iter_mut().enumerate() {
                let v = &p.values[k];
                s.usage.push(known(v[USAGE]));
                s.p50.push(known(v[P50]));
                s.p95.push(known(v[P95]));
                s.entitlement.push(known(v[ENTITLEMENT]));
                s.limit.push(known(v[LIMIT]));
                s.censored.push(p.censored & (1 << k) != 0);
            }
        }
        out.ooms = ring
            .ooms
            .iter()
            .filter(|t| **t >= from)
            .map(|t| stamp(*t))
            .collect();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn view(id: u64, cpu: u64, censored: bool) -> WorkloadView {
        WorkloadView {
            id: WorkloadId(id),
            name: format!("w{id}"),
            tenant: "t".into(),
            reservation: shardex_core::ReservationId(1),
            forecast: [Some(shardex_core::Quantiles::point(cpu)), None, None, None],
            rdv: None,
            usage: Some([Some(cpu), Some(1 << 30), None, None]),
            censored: [censored, false, false, false],
            entitlement: Some([2000, 2 << 30, 0, 0]),
            limits: None,
            degraded: false,
            oom_kills: 0,
            held_ms: [0; 4],
            resolved: true,
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millis(s * 1000).unwrap()
    }

    #[test]
    fn keeps_the_newest_points_in_order_with_what_was_not_known_as_none() {
        let mut t = Timelines::new(3);
        for i in 0..5 {
            t.push(at(i), &view(1, 100 * i.cast_unsigned(), i == 4));
        }
        t.oom(WorkloadId(1), at(3));
        let got = t.since(WorkloadId(1), at(0)).unwrap();
        assert_eq!(
            got.at,
            [at(2), at(3), at(4)],
            "the newest three, oldest first"
        );
        let cpu = &got.kinds[0];
        assert_eq!(cpu.usage, [Some(200.0), Some(300.0), Some(400.0)]);
        assert_eq!(cpu.p95, cpu.usage);
        assert_eq!(cpu.entitlement, [Some(2000.0); 3]);
        assert_eq!(cpu.limit, [None; 3], "no limit read back yet");
        assert_eq!(cpu.censored, [false, false, true]);
        assert_eq!(
            got.kinds[1].usage,
            [Some(1_073_741_824.0); 3],
            "a GiB is exact"
        );
        assert_eq!(got.kinds[2].usage, [None; 3]);
        assert_eq!(got.ooms, [at(3)]);
        let later = t.since(WorkloadId(1), at(4)).unwrap();
        assert_eq!(later.at, [at(4)]);
        assert!(later.ooms.is_empty());
        assert!(t.since(WorkloadId(2), at(0)).is_none());
        t.retain(|w| w != WorkloadId(1));
        assert!(t.since(WorkloadId(1), at(0)).is_none());
    }
}
