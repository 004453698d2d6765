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
    pub(super) fn admit(&self, host: HostId) -> Result<(), LedgerError> {
        let h = self
            .hosts
            .get(&host)
            .ok_or(LedgerError::UnknownHost(host))?;
        for t in self.change_points(host) {
            let mut committed = self.lent_by(Lender::Provider(host), t)?;
            for r in self.host_reservations(host) {
                let reserved = self.reserved_at(r, t)?;
                let lent = self.lent_by(Lender::Reservation(r.id), t)?;
                if let Some(kind) = ResourceKind::ALL
                    .into_iter()
                    .find(|&k| reserved.get(k) < lent.get(k))
                {
                    return Err(LedgerError::BelowLent {
                        reservation: r.id,
                        kind,
                        at: t,
                        reserved: reserved.get(kind),
                        lent: lent.get(kind),
                    });
                }
                committed = committed.checked_add(&reserved)?;
            }
            if let Some(kind) = ResourceKind::ALL
                .into_iter()
                .find(|&k| committed.get(k) > h.capacity.get(k))
            {
                return Err(LedgerError::HostCapacityExceeded {
                    host,
                    kind,
                    at: t,
                    needed: committed.get(kind),
                    capacity: h.capacity.get(kind),
                });
            }
        }
        Ok(())
    }

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
