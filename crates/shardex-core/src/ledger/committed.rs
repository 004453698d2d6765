//! A host's committed shards over time, kept in step with every change, so that admitting one
//! reservation's change costs about the square root of the host's change points instead of a
//! sweep over all of them and every reservation.
//!
//! Committed at `t` = Σ reservations' holdings at `t` + what the provider has lent at `t`: the
//! sum the admission rule keeps within capacity. It is stored as differences at change points
//! (value at `t` = Σ differences at points ≤ `t`), in sorted blocks that each know their sum
//! and their highest running sum, so the peak from now on is one pass over the blocks plus one
//! block's points. Only times from the ledger's now on matter: a change is entered "from now",
//! and points in the past are folded into one.
//!
//! Derived state: `check()` rebuilds it from the reservations and leases and reports any
//! difference from now on.

use std::sync::Arc;

use super::*;

/// Points a block holds before it is split in two (few in tests, so that they split often).
const BLOCK: usize = if cfg!(test) { 8 } else { 256 };

type Sums = [i128; 4];

/// `a += b`, per kind.
fn plus(a: &mut Sums, b: &Sums) {
    for (a, b) in a.iter_mut().zip(b) {
        *a += b;
    }
}

/// `a = max(a, b + c)`, per kind.
fn raise(a: &mut Sums, b: &Sums, c: &Sums) {
    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
        *a = (*a).max(b + c);
    }
}

/// Sorted differences with their sum and highest running sum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Block {
    points: Vec<(Timestamp, Sums)>,
    sum: Sums,
    peak: Sums,
}

impl Block {
    fn first(&self) -> Option<Timestamp> {
        self.points.first().map(|p| p.0)
    }

    fn refresh(&mut self) {
        let mut run = [0i128; 4];
        let mut peak = [i128::MIN; 4];
        for (_, d) in &self.points {
            plus(&mut run, d);
            raise(&mut peak, &run, &[0; 4]);
        }
        self.sum = run;
        self.peak = peak;
    }
}

/// One host's committed shards as a step function of time (see the module's doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Committed {
    blocks: Vec<Arc<Block>>,
}

impl Committed {
    /// Adds `d` from `t` on.
    fn add(&mut self, t: Timestamp, d: Sums) {
        if d == [0; 4] {
            return;
        }
        let i = self
            .blocks
            .partition_point(|b| b.first().is_some_and(|f| f <= t))
            .saturating_sub(1);
        if self.blocks.is_empty() {
            self.blocks.push(Arc::default());
        }
        let b = Arc::make_mut(&mut self.blocks[i]);
        match b.points.binary_search_by_key(&t, |p| p.0) {
            Ok(j) => {
                for (k, d) in d.iter().enumerate() {
                    b.points[j].1[k] += d;
                }
                if b.points[j].1 == [0; 4] {
                    b.points.remove(j);
                }
            }
            Err(j) => b.points.insert(j, (t, d)),
        }
        if b.points.is_empty() {
            self.blocks.remove(i);
            return;
        }
        if b.points.len() > 2 * BLOCK {
            let tail = b.points.split_off(BLOCK);
            b.refresh();
            let mut next = Block {
                points: tail,
                ..Block::default()
            };
            next.refresh();
            self.blocks.insert(i + 1, Arc::new(next));
        } else {
            b.refresh();
        }
    }

    /// Adds `v` (`sign` +1 or -1) over `[from, until)`.
    pub(super) fn add_window(
        &mut self,
        from: Timestamp,
        until: Timestamp,
        v: &ShardVector,
        sign: i128,
    ) {
        if from >= until || v.is_zero() {
            return;
        }
        let d = ResourceKind::ALL.map(|k| sign * i128::from(v.get(k)));
        self.add(from, d);
        self.add(until, d.map(|x| -x));
    }

    /// Adds the difference between two step functions given from `now` on as (time, value)
    /// lists (each starting at `now`, in order; each value holds until the next time; a
    /// reservation's holdings end with zero at its window's end, so nothing holds for ever).
    /// Only the points where the difference itself changes are added: a modification changes
    /// a reservation's holdings inside its own window only, so the two lists agree everywhere
    /// else and those points cost nothing (each added point rewrites a block).
    pub(super) fn replace_steps(
        &mut self,
        old: &[(Timestamp, ShardVector)],
        new: &[(Timestamp, ShardVector)],
    ) {
        let (mut i, mut j) = (0, 0);
        let (mut was, mut is) = (ShardVector::ZERO, ShardVector::ZERO);
        let mut before = [0i128; 4];
        loop {
            let t = match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) => a.0.min(b.0),
                (Some(a), None) => a.0,
                (None, Some(b)) => b.0,
                (None, None) => break,
            };
            while let Some(p) = old.get(i).filter(|p| p.0 == t) {
                was = p.1;
                i += 1;
            }
            while let Some(p) = new.get(j).filter(|p| p.0 == t) {
                is = p.1;
                j += 1;
            }
            let diff = ResourceKind::ALL.map(|k| i128::from(is.get(k)) - i128::from(was.get(k)));
            self.add(t, std::array::from_fn(|k| diff[k] - before[k]));
            before = diff;
        }
    }

    /// The highest committed value per kind at any time from `now` on.
    pub(super) fn peak_from(&self, now: Timestamp) -> Sums {
        let mut run = [0i128; 4];
        let mut best: Option<Sums> = None;
        for b in &self.blocks {
            let last = b.points.last().map(|p| p.0);
            match (&mut best, last) {
                (None, Some(l)) if l <= now => {
                    plus(&mut run, &b.sum);
                }
                (None, _) => {
                    for (t, d) in &b.points {
                        if *t > now && best.is_none() {
                            best = Some(run);
                        }
                        plus(&mut run, d);
                        if let Some(best) = &mut best {
                            raise(best, &run, &[0; 4]);
                        }
                    }
                }
                (Some(best), _) => {
                    raise(best, &run, &b.peak);
                    plus(&mut run, &b.sum);
                }
            }
        }
        best.unwrap_or(run)
    }

    /// The function from `now` on: the value at `now`, then at each later point where it
    /// changes.
    pub(super) fn values_from(&self, now: Timestamp) -> Vec<(Timestamp, Sums)> {
        let mut run = [0i128; 4];
        let mut out: Vec<(Timestamp, Sums)> = Vec::new();
        for (t, d) in self.blocks.iter().flat_map(|b| b.points.iter()) {
            if *t > now && out.is_empty() {
                out.push((now, run));
            }
            plus(&mut run, d);
            if *t > now && out.last().is_none_or(|l| l.1 != run) {
                out.push((*t, run));
            }
        }
        if out.is_empty() {
            out.push((now, run));
        }
        out
    }

    /// True when a block's worth of points lie at or before `now` (see [`Committed::fold`]).
    pub(super) fn past_to_fold(&self, now: Timestamp) -> bool {
        let past: usize = self
            .blocks
            .iter()
            .take_while(|b| b.first().is_some_and(|f| f <= now))
            .map(|b| b.points.partition_point(|p| p.0 <= now))
            .sum();
        past >= BLOCK
    }

    /// Folds the points at or before `now` into one (the values from `now` on are unchanged),
    /// once they fill a block, so that the past costs nothing.
    pub(super) fn fold(&mut self, now: Timestamp) {
        if !self.past_to_fold(now) {
            return;
        }
        let mut run = [0i128; 4];
        let mut first = None;
        let mut rest: Vec<(Timestamp, Sums)> = Vec::new();
        for (t, d) in self.blocks.iter().flat_map(|b| b.points.iter()) {
            if *t <= now {
                first.get_or_insert(*t);
                plus(&mut run, d);
            } else {
                rest.push((*t, *d));
            }
        }
        let mut points = Vec::with_capacity(rest.len() + 1);
        if let Some(t) = first
            && run != [0; 4]
        {
            points.push((t, run));
        }
        points.extend(rest);
        self.blocks = points
            .chunks(BLOCK)
            .map(|c| {
                let mut b = Block {
                    points: c.to_vec(),
                    ..Block::default()
                };
                b.refresh();
                Arc::new(b)
            })
            .collect();
    }
}

impl Ledger {
    /// A host's committed shards rebuilt from its reservations and the provider's leases.
    pub(super) fn rebuilt_committed(&self, host: HostId) -> Result<Committed, LedgerError> {
        let mut c = Committed::default();
        for r in self.host_reservations(host) {
            c.replace_steps(&[], &self.holdings(r, self.now)?);
        }
        self.provider_leases_into(host, &mut c);
        Ok(c)
    }

    fn provider_leases_into(&self, host: HostId, c: &mut Committed) {
        for l in self.lent_leases(Lender::Provider(host)) {
            c.add_window(l.window.start().max(self.now), l.window.end(), &l.vector, 1);
        }
    }

    /// The host's committed function, for a change.
    pub(super) fn committed_mut(&mut self, host: HostId) -> &mut Committed {
        self.idx.committed.entry(host).or_default()
    }

    /// Enters a change of `r`'s holdings (`old` as they were from now on) into its host's
    /// committed shards; returns what it holds from now on.
    pub(super) fn recommit(
        &mut self,
        r: ReservationId,
        old: &[(Timestamp, ShardVector)],
    ) -> Result<Vec<(Timestamp, ShardVector)>, LedgerError> {
        let res = self
            .reservations
            .get(&r)
            .ok_or(LedgerError::UnknownReservation(r))?;
        let host = res.host;
        let new = self.holdings(res, self.now)?;
        self.committed_mut(host).replace_steps(old, &new);
        Ok(new)
    }

    /// Enters a provider lease's shards over `[from, until)` (`sign` +1 or -1).
    pub(super) fn commit_provider_lease(
        &mut self,
        l: &Lease,
        from: Timestamp,
        until: Timestamp,
        sign: i128,
    ) {
        if let Lender::Provider(host) = l.lender {
            let from = from.max(self.now);
            self.committed_mut(host)
                .add_window(from, until, &l.vector, sign);
        }
    }

    /// True when, from now on, `host`'s committed shards equal what its objects say.
    pub(super) fn committed_agrees(&self, host: HostId) -> Result<bool, LedgerError> {
        let kept = self
            .idx
            .committed
            .get(&host)
            .map(|c| c.values_from(self.now))
            .unwrap_or_else(|| Committed::default().values_from(self.now));
        Ok(kept == self.rebuilt_committed(host)?.values_from(self.now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(ms: u64) -> Timestamp {
        Timestamp::from_millis(i64::try_from(ms).unwrap()).unwrap()
    }

    /// The value at `t` of windows added point by point.
    fn value_at(windows: &[(u64, u64, u64, bool)], t: u64) -> i128 {
        windows
            .iter()
            .filter(|(s, e, _, _)| *s <= t && t < *e)
            .map(|(_, _, v, plus)| {
                if *plus {
                    i128::from(*v)
                } else {
                    -i128::from(*v)
                }
            })
            .sum()
    }

    proptest! {
        /// Windows added and removed in any order: the peak from any time and the values from
        /// it are those of the windows summed point by point, with blocks split and folded.
        #[test]
        fn the_peak_and_values_are_those_of_the_windows(
            adds in prop::collection::vec((0u64..400, 1u64..200, 0u64..50), 1..200),
            removed in prop::collection::vec(any::<prop::sample::Index>(), 0..100),
            now in 0u64..600,
        ) {
            let mut c = Committed::default();
            let mut windows: Vec<(u64, u64, u64, bool)> = Vec::new();
            for (s, len, v) in &adds {
                c.add_window(ts(*s), ts(s + len), &ShardVector::new(*v, 0, 0, 0), 1);
                windows.push((*s, s + len, *v, true));
            }
            for ix in &removed {
                let (s, e, v, _) = windows[ix.index(adds.len())];
                c.add_window(ts(s), ts(e), &ShardVector::new(v, 0, 0, 0), -1);
                windows.push((s, e, v, false));
            }
            c.fold(ts(now));
            let expected_peak = (now..700).map(|t| value_at(&windows, t)).max().unwrap_or(0);
            prop_assert_eq!(c.peak_from(ts(now))[0], expected_peak);
            for (t, v) in c.values_from(ts(now)) {
                let t = u64::try_from(t.millis()).unwrap();
                prop_assert_eq!(v[0], value_at(&windows, t), "at {}", t);
            }
        }

        /// Replacing one step function by another leaves what adding the new one alone would:
        /// the points where only the difference changes are written, and those where both
        /// change alike cancel.
        #[test]
        fn replacing_steps_is_adding_the_new_ones_alone(
            base in prop::collection::vec((0u64..300, 1u64..100, 0u64..50), 0..40),
            old in prop::collection::vec((0u64..300, 0u64..50), 0..30),
            new in prop::collection::vec((0u64..300, 0u64..50), 0..30),
        ) {
            let steps = |raw: &[(u64, u64)]| -> Vec<(Timestamp, ShardVector)> {
                let mut s: Vec<(u64, u64)> = raw.to_vec();
                s.sort_by_key(|p| p.0);
                let mut out: Vec<(Timestamp, ShardVector)> =
                    s.iter().map(|(t, v)| (ts(*t), ShardVector::new(*v, 0, *v / 2, 0))).collect();
                // Holdings end with zero, so nothing holds for ever.
                out.push((ts(400), ShardVector::ZERO));
                out
            };
            let (old, new) = (steps(&old), steps(&new));
            let mut replaced = Committed::default();
            let mut alone = Committed::default();
            for (s, len, v) in &base {
                for c in [&mut replaced, &mut alone] {
                    c.add_window(ts(*s), ts(s + len), &ShardVector::new(*v, 0, 0, 0), 1);
                }
            }
            replaced.replace_steps(&[], &old);
            replaced.replace_steps(&old, &new);
            alone.replace_steps(&[], &new);
            prop_assert_eq!(replaced.values_from(ts(0)), alone.values_from(ts(0)));
            prop_assert_eq!(replaced.peak_from(ts(0)), alone.peak_from(ts(0)));
        }
    }
}
