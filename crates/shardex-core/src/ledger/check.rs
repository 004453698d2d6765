//! The invariants, verified from scratch, and what a violation says.

use super::*;

impl Ledger {
    // ----- invariants -----

    /// Verifies every ledger invariant from scratch; an empty list means all hold.
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if let Err(e) = self.check_into(&mut out) {
            out.push(Violation {
                rule: Rule::Consistency,
                message: format!("could not evaluate: {e}"),
            });
        }
        out
    }

    pub(super) fn check_into(&self, out: &mut Vec<Violation>) -> Result<(), LedgerError> {
        let now = self.now;
        let mut v = |rule: Rule, message: String| out.push(Violation { rule, message });
        // The lease indexes must say exactly what the leases say.
        let mut by_lender: Map<Lender, Set<LeaseId>> = Map::new();
        let mut by_borrower: Map<WorkloadId, Set<LeaseId>> = Map::new();
        for l in self.leases.values() {
            by_lender.entry(l.lender).or_default().insert(l.id);
            by_borrower.entry(l.borrower).or_default().insert(l.id);
        }
        let mut idx = Indexes::default();
        for r in self.reservations.values() {
            index_add(&mut idx.reservations, r.host, r.id);
        }
        for r in self.requests.values() {
            index_add(&mut idx.requests, r.host, r.id);
        }
        for l in self.leases.values() {
            index_add(&mut idx.leases, l.host, l.id);
        }
        for w in self.workloads.values() {
            index_add(&mut idx.workloads, w.reservation, w.id);
        }
        for t in self.tenants.values() {
            idx.tenant_names.insert(t.name.clone(), t.id);
        }
        for r in self.reservations.values() {
            let list: Vec<std::sync::Arc<Modification>> = r
                .modifications
                .iter()
                .filter_map(|m| self.modifications.get(m).cloned().map(std::sync::Arc::new))
                .collect();
            if !list.is_empty() {
                idx.mods.insert(r.id, list.into());
            }
        }
        (idx.dues, idx.ends) = self.rebuilt_dues();
        // Compared from now on, below: its past may be folded or not.
        idx.committed = self.idx.committed.clone();
        if by_lender != self.by_lender || by_borrower != self.by_borrower || idx != self.idx {
            v(
                Rule::Consistency,
                "the lease indexes disagree with the leases".into(),
            );
        }
        for h in self.hosts.values() {
            let mut reserved = [0u128; 4];
            let mut allocations = [0u128; 4];
            for r in self.reservations.values().filter(|r| r.host == h.id) {
                let res = self.reserved_at(r, now)?;
                let alloc = self.allocated(r.id)?;
                let lent = self.lent_by(Lender::Reservation(r.id), now)?;
                for k in ResourceKind::ALL {
                    reserved[k.index()] += u128::from(res.get(k));
                    let held = u128::from(alloc.get(k))
                        + u128::from(lent.get(k))
                        + u128::from(r.offered.get(k));
                    if held > u128::from(res.get(k)) {
                        v(
                            Rule::Conservation,
                            format!(
                                "{} holds {} {k} shards but its workloads have {}, it lent {} and offers {} ({held} in all)",
                                r.id,
                                res.get(k),
                                alloc.get(k),
                                lent.get(k),
                                r.offered.get(k)
                            ),
                        );
                    }
                }
                if (r.cancelled || !r.window.contains(now)) && !r.offered.is_zero() {
                    v(
                        Rule::Conservation,
                        format!("{} is not in force but offers {}", r.id, r.offered),
                    );
                }
            }
            let provider = self.lent_by(Lender::Provider(h.id), now)?;
            for k in ResourceKind::ALL {
                let committed = reserved[k.index()] + u128::from(provider.get(k));
                if committed > u128::from(h.capacity.get(k)) {
                    v(
                        Rule::Conservation,
                        format!(
                            "{} has {} {k} shards but {} are reserved and the provider lent {}",
                            h.id,
                            h.capacity.get(k),
                            reserved[k.index()],
                            provider.get(k)
                        ),
                    );
                }
            }
            for w in self.workloads.values().filter(|w| w.host == h.id) {
                let a = self.allocation(w.id)?;
                for k in ResourceKind::ALL {
                    allocations[k.index()] += u128::from(a.get(k));
                }
                match self.reservations.get(&w.reservation) {
                    Some(r) if r.host == w.host && r.tenant == w.tenant => {}
                    _ => v(
                        Rule::Allocation,
                        format!(
                            "{} is not inside a reservation of its own on its host",
                            w.id
                        ),
                    ),
                }
            }
            for k in ResourceKind::ALL {
                if allocations[k.index()] > u128::from(h.capacity.get(k)) {
                    v(
                        Rule::Allocation,
                        format!(
                            "allocations on {} add up to {} {k} shards, over its capacity {}",
                            h.id,
                            allocations[k.index()],
                            h.capacity.get(k)
                        ),
                    );
                }
            }
            // The future too: reservations and provider leases fit, and leases stay covered.
            if let Err(e) = self.admit(h.id) {
                v(Rule::Conservation, format!("at a future change point: {e}"));
            }
            if !self.committed_agrees(h.id)? {
                v(
                    Rule::Consistency,
                    format!(
                        "the committed shards kept for {} disagree with its reservations and leases",
                        h.id
                    ),
                );
            }
        }
        for l in self.leases.values() {
            if !l.window.contains(now) {
                v(
                    Rule::Consistency,
                    format!("{} is outside its window {} at {now}", l.id, l.window),
                );
            }
            if l.vector.is_zero() {
                v(Rule::Consistency, format!("{} leases no shards", l.id));
            }
            match self.workloads.get(&l.borrower) {
                Some(w) if w.host == l.host => {}
                _ => v(
                    Rule::Allocation,
                    format!("{} is borrowed by a workload not on {}", l.id, l.host),
                ),
            }
            let lender_host = match l.lender {
                Lender::Reservation(r) => self.reservations.get(&r).map(|r| r.host),
                Lender::Provider(h) => Some(h),
            };
            if lender_host != Some(l.host) {
                v(
                    Rule::Allocation,
                    format!("{} is lent by {} from another host", l.id, l.lender),
                );
            }
        }
        for p in self.pending.values() {
            let ok = self.reservations.get(&p.reservation).is_some_and(|r| {
                !r.cancelled && r.tenant == p.tenant && p.gives_up_at <= r.window.end()
            });
            if !ok || p.gives_up_at <= now || self.modifications.contains_key(&p.id) {
                v(
                    Rule::Consistency,
                    format!(
                        "pending {} does not wait on a reservation of its own in force, until before its end (gives up at {})",
                        p.id, p.gives_up_at
                    ),
                );
            }
        }
        for req in self.requests.values() {
            if req.until <= now {
                v(
                    Rule::Consistency,
                    format!("{} is pending past its end", req.id),
                );
            }
            if req.start > now {
                // A scheduled request competes only from its start.
                continue;
            }
            let incoming = ShardVector::checked_sum(
                self.leases
                    .values()
                    .filter(|l| l.reclaim == Some(ReclaimReason::Preempted { by: req.id }))
                    .map(|l| &l.vector),
            )?;
            for k in req.remaining().kinds() {
                if incoming.get(k) >= req.remaining().get(k) {
                    continue;
                }
                let held = self.leases.values().find(|l| {
                    l.host == req.host
                        && l.reclaim.is_none()
                        && l.tier < req.tier
                        && l.vector.get(k) > 0
                        && self.ask_price(l.lender, l.host).get(k) <= self.limit(req).get(k)
                });
                if let Some(l) = held {
                    v(
                        Rule::Priority,
                        format!(
                            "{} ({}) still needs {} {k} shards while {} of the lower tier {} keeps them",
                            req.id,
                            req.tier,
                            req.remaining().get(k),
                            l.id,
                            l.tier
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Which invariant a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Invariant 1: every shard is in exactly one place.
    Conservation,
    /// Invariant 2: allocations are share plus leases and fit the host.
    Allocation,
    /// Invariant 7: lower tiers never keep what a higher tier needs now.
    Priority,
    /// Internal consistency (objects refer to what exists, windows are current).
    Consistency,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Conservation => "conservation",
            Rule::Allocation => "allocation",
            Rule::Priority => "priority",
            Rule::Consistency => "consistency",
        })
    }
}

/// One broken invariant, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The invariant.
    pub rule: Rule,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.message)
    }
}
