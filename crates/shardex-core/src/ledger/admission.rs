//! Admission and ownership: what may be asked, by whom, and whether the host can hold it
//! (names, tenants' own reservations and workloads, commitments within capacity).

use super::*;

pub(super) fn check_name(what: &'static str, name: &str) -> Result<(), LedgerError> {
    if name.trim().is_empty() || name.len() > 128 || name.trim() != name {
        return Err(LedgerError::BadName {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// A workload's name is what the host's adapters find it by (a cgroup path like
/// `system.slice/nginx.service`, a VM's name): path parts of `[A-Za-z0-9._@:-]`, no `..`, no
/// empty part except one leading `/` (`/` alone is the root cgroup).
pub(super) fn check_workload_name(name: &str) -> Result<(), LedgerError> {
    check_name("workload", name)?;
    let rel = name.strip_prefix('/').unwrap_or(name);
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@:".contains(c))
    };
    if name == "/" || rel.split('/').all(ok_part) {
        Ok(())
    } else {
        Err(LedgerError::BadWorkloadName {
            name: name.to_string(),
        })
    }
}

/// The name without a leading `/`: `/a/b` and `a/b` are the same cgroup.
pub(super) fn same_thing(a: &str, b: &str) -> bool {
    a.trim_start_matches('/') == b.trim_start_matches('/')
}

impl Ledger {
    /// Admission: at every future change point the host's commitments fit its capacity and no
    /// reservation holds less than it has lent.
    ///
    /// One sweep over the host's change points: each reservation's holding is evaluated only at
    /// its own change points (it is constant in between) and enters the host's sum as steps, so
    /// the cost grows with the number of change points plus the reservations' own points, not
    /// with their product. The first failure in time is reported (at one time, a reservation
    /// below what it lent before the host's capacity), as a check point by point would.
    pub(super) fn admit(&self, host: HostId) -> Result<(), LedgerError> {
        let h = self
            .hosts
            .get(&host)
            .ok_or(LedgerError::UnknownHost(host))?;
        let points = self.change_points(host);
        let mut deltas = vec![[0i128; 4]; points.len()];
        add_steps(
            &mut deltas,
            &self.lent_steps(Lender::Provider(host), &points)?,
        );
        let mut below: Option<(usize, LedgerError)> = None;
        for r in self.host_reservations(host) {
            let reserved = self.reserved_steps(r, &points)?;
            let lent = self.lent_steps(Lender::Reservation(r.id), &points)?;
            if let Some((i, e)) = first_below_lent(r.id, &reserved, &lent, &points)
                && below.as_ref().is_none_or(|(b, _)| i < *b)
            {
                below = Some((i, e));
            }
            add_steps(&mut deltas, &reserved);
        }
        let mut committed = [0i128; 4];
        for (i, (t, d)) in points.iter().zip(&deltas).enumerate() {
            if let Some((b, _)) = &below
                && *b <= i
            {
                break;
            }
            for (c, d) in committed.iter_mut().zip(d) {
                *c += d;
            }
            for kind in ResourceKind::ALL {
                let needed = committed[kind.index()];
                let needed =
                    u64::try_from(needed).map_err(|_| crate::ShardError::Overflow { kind })?;
                if needed > h.capacity.get(kind) {
                    return Err(LedgerError::HostCapacityExceeded {
                        host,
                        kind,
                        at: *t,
                        needed,
                        capacity: h.capacity.get(kind),
                    });
                }
            }
        }
        below.map_or(Ok(()), |(_, e)| Err(e))
    }

    /// Admission after a change of one reservation `changed` (or of the host's capacity, when
    /// `None`), given that the host was admissible before: the peak of its committed shards
    /// from now on (kept in step, see `committed.rs`) fits the capacity, and the changed
    /// reservation holds at least what it lent at each of its own change points. Nothing else
    /// changed, so nothing else can break. When either fails, the full sweep
    /// ([`Ledger::admit`]) finds the first failure in time and names it.
    pub(super) fn admit_change(
        &self,
        host: HostId,
        changed: Option<(ReservationId, &[(Timestamp, ShardVector)])>,
    ) -> Result<(), LedgerError> {
        let h = self
            .hosts
            .get(&host)
            .ok_or(LedgerError::UnknownHost(host))?;
        let peak = self
            .idx
            .committed
            .get(&host)
            .map(|c| c.peak_from(self.now))
            .unwrap_or_default();
        let fits = ResourceKind::ALL
            .into_iter()
            .all(|k| peak[k.index()] <= i128::from(h.capacity.get(k)));
        let covered = match changed {
            Some((r, held)) => self.holds_what_it_lent(r, held)?,
            None => true,
        };
        if fits && covered {
            debug_assert_eq!(self.admit(host), Ok(()), "the fast admission disagrees");
            return Ok(());
        }
        self.admit(host)
    }

    /// True when `r`, holding `held` from now on, holds at least what it has lent at every
    /// point where either changes.
    fn holds_what_it_lent(
        &self,
        r: ReservationId,
        held: &[(Timestamp, ShardVector)],
    ) -> Result<bool, LedgerError> {
        let lender = Lender::Reservation(r);
        if self.by_lender.get(&lender).is_none_or(|s| s.is_empty()) {
            return Ok(true);
        }
        let mut points: Vec<Timestamp> = held.iter().map(|p| p.0).collect();
        for l in self.lent_leases(lender) {
            points.extend([l.window.start(), l.window.end()]);
        }
        points.retain(|&t| t >= self.now);
        points.sort_unstable();
        points.dedup();
        let reserved = steps_over(held, &points);
        let lent = self.lent_steps(lender, &points)?;
        Ok(first_below_lent(r, &reserved, &lent, &points).is_none())
    }

    /// What `r` holds over the host's change points `points`, as steps: (index of the first
    /// point it holds it at, the vector); the first step is at index 0 (now).
    fn reserved_steps(&self, r: &Reservation, points: &[Timestamp]) -> Result<Steps, LedgerError> {
        Ok(steps_over(&self.holdings(r, self.now)?, points))
    }

    /// What `lender` has lent over `points`, as steps (see [`Ledger::reserved_steps`]).
    fn lent_steps(&self, lender: Lender, points: &[Timestamp]) -> Result<Steps, LedgerError> {
        let mut at = vec![0];
        for l in self.lent_leases(lender) {
            for t in [l.window.start(), l.window.end()] {
                at.push(points.partition_point(|&p| p < t));
            }
        }
        at.retain(|&i| i < points.len());
        at.sort_unstable();
        at.dedup();
        let mut steps: Steps = Vec::with_capacity(at.len());
        for i in at {
            let v = self.lent_by(lender, points[i])?;
            if steps.last().is_none_or(|(_, last)| *last != v) {
                steps.push((i, v));
            }
        }
        Ok(steps)
    }
}

/// A vector over a host's change points that changes only at some of them: (index of the first
/// point it holds at, value), in order, the first at index 0.
type Steps = Vec<(usize, ShardVector)>;

/// Holdings from now on as steps over `points` (which include each holding's time).
fn steps_over(held: &[(Timestamp, ShardVector)], points: &[Timestamp]) -> Steps {
    let mut steps: Steps = Vec::new();
    for (t, v) in held {
        if steps.last().is_none_or(|(_, last)| last != v) {
            steps.push((points.partition_point(|&p| p < *t), *v));
        }
    }
    steps
}

/// Adds `steps` to the per-point differences `deltas`.
fn add_steps(deltas: &mut [[i128; 4]], steps: &Steps) {
    let mut prev = ShardVector::ZERO;
    for (i, v) in steps {
        for kind in ResourceKind::ALL {
            deltas[*i][kind.index()] += i128::from(v.get(kind)) - i128::from(prev.get(kind));
        }
        prev = *v;
    }
}

/// The first point at which a reservation holds less of a kind than it has lent.
fn first_below_lent(
    reservation: ReservationId,
    reserved: &Steps,
    lent: &Steps,
    points: &[Timestamp],
) -> Option<(usize, LedgerError)> {
    let (mut a, mut b) = (0, 0);
    let (mut held, mut out) = (ShardVector::ZERO, ShardVector::ZERO);
    while a < reserved.len() || b < lent.len() {
        let next_a = reserved.get(a).map_or(usize::MAX, |s| s.0);
        let next_b = lent.get(b).map_or(usize::MAX, |s| s.0);
        let i = next_a.min(next_b);
        if next_a == i {
            held = reserved[a].1;
            a += 1;
        }
        if next_b == i {
            out = lent[b].1;
            b += 1;
        }
        if let Some(kind) = ResourceKind::ALL
            .into_iter()
            .find(|&k| held.get(k) < out.get(k))
        {
            let e = LedgerError::BelowLent {
                reservation,
                kind,
                at: points[i],
                reserved: held.get(kind),
                lent: out.get(kind),
            };
            return Some((i, e));
        }
    }
    None
}

impl Ledger {
    // ----- actions -----

    pub(super) fn tenant_owns(
        &self,
        tenant: TenantId,
        owner: TenantId,
        object: impl FnOnce() -> String,
    ) -> Result<(), LedgerError> {
        if !self.tenants.contains_key(&tenant) {
            return Err(LedgerError::UnknownTenant(tenant));
        }
        if tenant != owner {
            return Err(LedgerError::NotOwner {
                object: object(),
                tenant,
            });
        }
        Ok(())
    }

    pub(super) fn own_reservation(
        &self,
        tenant: TenantId,
        id: ReservationId,
    ) -> Result<&Reservation, LedgerError> {
        let r = self
            .reservations
            .get(&id)
            .ok_or(LedgerError::UnknownReservation(id))?;
        self.tenant_owns(tenant, r.tenant, || id.to_string())?;
        Ok(r)
    }

    pub(super) fn own_workload(
        &self,
        tenant: TenantId,
        id: WorkloadId,
    ) -> Result<&Workload, LedgerError> {
        let w = self
            .workloads
            .get(&id)
            .ok_or(LedgerError::UnknownWorkload(id))?;
        self.tenant_owns(tenant, w.tenant, || id.to_string())?;
        Ok(w)
    }
}
