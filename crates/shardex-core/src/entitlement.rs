//! Entitlements (DESIGN invariant 8) and the limits the actuators write from them.
//!
//! A workload's **entitlement** is what it may use at once without asking: every shard of its
//! reservation that is not lent out at this moment, plus its own leases. The hard limits an
//! actuator writes (cpu quota, memory max, IOPS, net rate) are the entitlement, never less.
//! The engine's allocation (the workload's share of its reservation plus its leases, planned
//! from the forecast) sets only the soft knobs (cpu weight, the memory soft limit), and decides
//! what is offered and leased: a forecast that is too low makes a workload lend its idle
//! shards, it never throttles or kills it inside what it reserved.
//!
//! # Rules
//! * Workload entitlement = reserved now − lent out by its reservation now + its leases.
//! * Reservation entitlement = reserved now − lent out now + the leases of all its workloads:
//!   what its workloads share (the hard limits of the reservation's own cgroup when its
//!   workloads are children of it). Summed over a host's reservations it never exceeds the
//!   host's capacity: every lent shard is counted once, in its borrower's leases.
//! * Soft = the allocation, never above the hard limit.
//! * A kind with no entitlement at all has no guarantee: for cpu that means no quota (the
//!   workload gets spare cycles at the lowest weight), not a hard zero that pins it to the
//!   kernel's least quota; net and IOPS keep the least rate the kernel can shape; memory is not
//!   limited by a zero (that would kill the workload) and is reported as not applied.

use crate::domain::{Lender, ReservationId, WorkloadId};
use crate::ledger::{Ledger, LedgerError};
use crate::ports::Limits;
use crate::shard::{ResourceKind, ShardSizes, ShardVector};

/// The parent of the groups shardex makes for reservations: a reservation's group is the
/// cgroup `shardex/res-ID`, and its workloads are its children.
pub const GROUPS: &str = "shardex";

/// The name of `reservation`'s group (`shardex/res-ID`).
pub fn group_name(reservation: ReservationId) -> String {
    format!("{GROUPS}/res-{}", reservation.0)
}

/// The group whose limits the kernel enforces on the sum of `reservation`'s workloads: its
/// name when every one of them lives inside it (a workload bound by another path is outside
/// any group, and then the reservation has none).
pub fn group_of(ledger: &Ledger, reservation: ReservationId) -> Option<String> {
    let name = group_name(reservation);
    let prefix = format!("{name}/");
    let mut any = false;
    for w in ledger.workloads_of(reservation) {
        if !w.name.trim_start_matches('/').starts_with(&prefix) {
            return None;
        }
        any = true;
    }
    any.then_some(name)
}

/// The physical limits of a reservation's group: hard = the reservation's entitlement (what
/// its workloads share), soft = their allocations together, at most the hard limit.
pub fn group_limits(
    ledger: &Ledger,
    reservation: ReservationId,
    sizes: &ShardSizes,
) -> Result<Limits, LedgerError> {
    let hard = reservation_entitlement(ledger, reservation)?;
    let mut soft = ShardVector::ZERO;
    for w in ledger.workloads_of(reservation) {
        soft = soft.saturating_add(&ledger.allocation(w.id)?);
    }
    Ok(physical(
        &ShardLimits {
            hard,
            soft: soft.min(&hard),
        },
        sizes,
    ))
}

/// A workload's limits in shards: hard (its entitlement) and soft (its allocation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardLimits {
    /// Hard limits: the entitlement.
    pub hard: ShardVector,
    /// Soft targets: the allocation, at most `hard`.
    pub soft: ShardVector,
}

/// What a workload may use at once: its reservation's shards not lent out, plus its leases.
pub fn entitlement(ledger: &Ledger, workload: WorkloadId) -> Result<ShardVector, LedgerError> {
    let w = ledger
        .workload(workload)
        .ok_or(LedgerError::UnknownWorkload(workload))?;
    let own = unlent(ledger, w.reservation)?;
    Ok(own.checked_add(&ledger.borrowed(workload)?)?)
}

/// What a reservation's workloads may use together: its shards not lent out, plus all their
/// leases.
pub fn reservation_entitlement(
    ledger: &Ledger,
    reservation: ReservationId,
) -> Result<ShardVector, LedgerError> {
    let mut sum = unlent(ledger, reservation)?;
    for w in ledger.workloads_of(reservation) {
        sum = sum.checked_add(&ledger.borrowed(w.id)?)?;
    }
    Ok(sum)
}

/// Reserved now minus lent out now (zero when it is not in force).
fn unlent(ledger: &Ledger, reservation: ReservationId) -> Result<ShardVector, LedgerError> {
    let r = ledger
        .reservation(reservation)
        .ok_or(LedgerError::UnknownReservation(reservation))?;
    let reserved = ledger.reserved_at(r, ledger.now())?;
    // Admission keeps lent ≤ reserved; the excess form never underflows regardless.
    Ok(reserved.excess_over(&ledger.lent_now(Lender::Reservation(reservation))?))
}

/// A workload's hard and soft limits now, in shards.
pub fn shard_limits(ledger: &Ledger, workload: WorkloadId) -> Result<ShardLimits, LedgerError> {
    let hard = entitlement(ledger, workload)?;
    let soft = ledger.allocation(workload)?.min(&hard);
    Ok(ShardLimits { hard, soft })
}

/// The physical limits an actuator writes for `limits` (see the rules for kinds without an
/// entitlement).
pub fn physical(limits: &ShardLimits, sizes: &ShardSizes) -> Limits {
    let mut out = Limits::default();
    for kind in ResourceKind::ALL {
        let i = kind.index();
        let hard = limits.hard.get(kind);
        let amount = |n| sizes.physical(kind, n).unwrap_or(u64::MAX);
        out.hard[i] = match (kind, hard) {
            (ResourceKind::Cpu, 0) => None,
            _ => Some(amount(hard)),
        };
        out.soft[i] = amount(limits.soft.get(kind).min(hard));
    }
    out
}

/// The physical limits of a workload now.
pub fn limits(
    ledger: &Ledger,
    workload: WorkloadId,
    sizes: &ShardSizes,
) -> Result<Limits, LedgerError> {
    Ok(physical(&shard_limits(ledger, workload)?, sizes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action;
    use crate::ledger::Action;

    use crate::testkit::{World, t};

    #[test]
    fn entitlement_is_the_unlent_reservation_plus_leases_whatever_the_allocation() {
        let mut world = World::new(ShardVector::new(200, 100, 0, 0), &["a"]);
        let tenant = world.tenant(0);
        world.reserve(tenant, ShardVector::new(150, 64, 0, 0), 0, 3600);
        let mut l = world.ledger;
        let r = l.reservations().next().unwrap().id;
        l.apply(
            &Action::BindWorkload(action::BindWorkload {
                tenant,
                reservation: r,
                name: "job".into(),
            }),
            t(0),
        )
        .unwrap();
        let w = l.workloads().next().unwrap().id;
        // An idle workload sized to 4 cpu shards still may use all 150 at once.
        l.apply(
            &Action::Allocate(action::Allocate {
                tenant,
                workload: w,
                share: ShardVector::new(4, 2, 0, 0),
            }),
            t(1),
        )
        .unwrap();
        let lim = shard_limits(&l, w).unwrap();
        assert_eq!(lim.hard, ShardVector::new(150, 64, 0, 0));
        assert_eq!(lim.soft, ShardVector::new(4, 2, 0, 0));
        assert_eq!(reservation_entitlement(&l, r).unwrap(), lim.hard);
        let sizes = ShardSizes::default();
        let p = physical(&lim, &sizes);
        assert_eq!(p.hard[0], Some(1500));
        assert_eq!(p.soft[0], 40);
        assert_eq!(p.hard[1], Some((64 * 16) << 20));
        // No net reserved: the least rate, not none; no cpu at all: no quota.
        assert_eq!(p.hard[2], Some(0));
        let none = physical(
            &ShardLimits {
                hard: ShardVector::new(0, 1, 0, 0),
                soft: ShardVector::ZERO,
            },
            &sizes,
        );
        assert_eq!(none.hard[0], None);
    }
}
