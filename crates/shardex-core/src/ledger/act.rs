//! Applying one action to the ledger: the rules of each intent.

use super::*;

impl Ledger {
    pub(super) fn act(&mut self, action: &Action, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let now = self.now;
        match action {
            Action::Configure(action::Configure { params }) => {
                if !params.provider_floor.is_non_negative() {
                    return Err(LedgerError::NegativePrice {
                        what: "provider floor price",
                    });
                }
                if params.reclaim_notice.is_zero() {
                    return Err(TimeError::ZeroDuration.into());
                }
                self.params = params.clone();
                ev.push(Event::Configured {
                    params: params.clone(),
                });
            }
            Action::RegisterHost(action::RegisterHost { name, capacity }) => {
                check_name("host", name)?;
                if self.host_named(name).is_some() {
                    return Err(LedgerError::DuplicateName {
                        what: "host",
                        name: name.clone(),
                    });
                }
                if capacity.is_zero() {
                    return Err(LedgerError::EmptyVector {
                        what: "host capacity",
                    });
                }
                let id = HostId(next(&mut self.counters.host));
                self.hosts.insert(
                    id,
                    Host {
                        id,
                        name: name.clone(),
                        capacity: *capacity,
                    },
                );
                ev.push(Event::HostRegistered {
                    host: id,
                    name: name.clone(),
                    capacity: *capacity,
                });
            }
            Action::SetHostCapacity(action::SetHostCapacity { host, capacity }) => {
                let h = self
                    .hosts
                    .get_mut(host)
                    .ok_or(LedgerError::UnknownHost(*host))?;
                let from = h.capacity;
                h.capacity = *capacity;
                self.admit(*host)?;
                ev.push(Event::HostCapacityChanged {
                    host: *host,
                    from,
                    to: *capacity,
                });
            }
            Action::CreateTenant(action::CreateTenant { name }) => {
                check_name("tenant", name)?;
                if self.tenant_named(name).is_some() {
                    return Err(LedgerError::DuplicateName {
                        what: "tenant",
                        name: name.clone(),
                    });
                }
                let id = TenantId(next(&mut self.counters.tenant));
                self.tenants.insert(
                    id,
                    Tenant {
                        id,
                        name: name.clone(),
                    },
                );
                ev.push(Event::TenantCreated {
                    tenant: id,
                    name: name.clone(),
                });
            }
            Action::CreateReservation(action::CreateReservation {
                tenant,
                host,
                vector,
                window,
                tier,
            }) => {
                if !self.tenants.contains_key(tenant) {
                    return Err(LedgerError::UnknownTenant(*tenant));
                }
                if !self.hosts.contains_key(host) {
                    return Err(LedgerError::UnknownHost(*host));
                }
                if vector.is_zero() {
                    return Err(LedgerError::EmptyVector {
                        what: "a reservation",
                    });
                }
                if window.start() < now {
                    return Err(LedgerError::StartsInPast {
                        what: "the reservation",
                        start: window.start(),
                        now,
                    });
                }
                let id = ReservationId(next(&mut self.counters.reservation));
                index_add(&mut self.idx.reservations, *host, id);
                self.reservations.insert(
                    id,
                    Reservation {
                        id,
                        tenant: *tenant,
                        host: *host,
                        base: *vector,
                        window: *window,
                        tier: *tier,
                        modifications: Vec::new(),
                        offered: ShardVector::ZERO,
                        floor: PriceVector::default(),
                        lending: Lending::default(),
                        cancelled: false,
                    },
                );
                self.admit(*host)?;
                ev.push(Event::ReservationCreated {
                    reservation: id,
                    tenant: *tenant,
                    host: *host,
                    vector: *vector,
                    window: *window,
                    tier: *tier,
                });
            }
            Action::ModifyReservation(action::ModifyReservation {
                tenant,
                reservation,
                changes,
                start,
                duration,
            }) => {
                let r = self.own_reservation(*tenant, *reservation)?.clone();
                if r.cancelled || r.window.end() <= now {
                    return Err(LedgerError::ReservationEnded(r.id));
                }
                let start = start.unwrap_or(now);
                if start < now {
                    return Err(LedgerError::StartsInPast {
                        what: "the modification",
                        start,
                        now,
                    });
                }
                let window = Window::starting(start, *duration)?;
                if !r.window.covers(&window) {
                    return Err(LedgerError::ModificationOutsideReservation {
                        reservation: r.id,
                        window,
                        reserved: r.window,
                    });
                }
                if changes.is_empty() {
                    return Err(LedgerError::BadChanges("none given".into()));
                }
                let kinds: BTreeSet<ResourceKind> = changes.iter().map(|c| c.kind).collect();
                if kinds.len() != changes.len() {
                    return Err(LedgerError::BadChanges("a kind appears twice".into()));
                }
                let id = ModificationId(next(&mut self.counters.modification));
                self.modifications.insert(
                    id,
                    Modification {
                        id,
                        reservation: r.id,
                        changes: changes.clone(),
                        window,
                        cancelled: false,
                    },
                );
                let before = self.reserved_at(&r, now)?;
                if let Some(res) = self.reservations.get_mut(&r.id) {
                    res.modifications.push(id);
                }
                self.admit(r.host)?;
                ev.push(Event::ModificationCreated {
                    modification: id,
                    reservation: r.id,
                    changes: changes.clone(),
                    window,
                });
                self.resized(r.id, before, ev)?;
            }
            Action::CancelModification(action::CancelModification {
                tenant,
                modification,
            }) => {
                let m = self
                    .modifications
                    .get(modification)
                    .ok_or(LedgerError::UnknownModification(*modification))?
                    .clone();
                let r = self.own_reservation(*tenant, m.reservation)?.clone();
                if m.cancelled || m.window.end() <= now {
                    return Err(LedgerError::ModificationEnded(m.id));
                }
                let before = self.reserved_at(&r, now)?;
                if let Some(m) = self.modifications.get_mut(modification) {
                    m.cancelled = true;
                }
                self.admit(r.host)?;
                ev.push(Event::ModificationEnded {
                    modification: m.id,
                    cancelled: true,
                });
                self.resized(r.id, before, ev)?;
            }
            Action::CancelReservation(action::CancelReservation {
                tenant,
                reservation,
            }) => {
                let r = self.own_reservation(*tenant, *reservation)?.clone();
                if r.cancelled || r.window.end() <= now {
                    return Err(LedgerError::ReservationEnded(r.id));
                }
                let lent: Vec<&Lease> = self
                    .leases
                    .values()
                    .filter(|l| l.lender == Lender::Reservation(r.id))
                    .collect();
                if !lent.is_empty() {
                    return Err(LedgerError::LenderHasLeases {
                        reservation: r.id,
                        leases: lent.len(),
                    });
                }
                let before = self.reserved_at(&r, now)?;
                self.unbind_all(r.id, ev)?;
                if let Some(res) = self.reservations.get_mut(&r.id) {
                    res.cancelled = true;
                    res.offered = ShardVector::ZERO;
                }
                if !before.is_zero() {
                    ev.push(Event::ReservationResized {
                        reservation: r.id,
                        from: before,
                        to: ShardVector::ZERO,
                    });
                }
                ev.push(Event::ReservationEnded {
                    reservation: r.id,
                    cancelled: true,
                });
            }
            Action::BindWorkload(action::BindWorkload {
                tenant,
                reservation,
                name,
            }) => {
                check_workload_name(name)?;
                let r = self.own_reservation(*tenant, *reservation)?.clone();
                if r.cancelled || r.window.end() <= now {
                    return Err(LedgerError::ReservationEnded(r.id));
                }
                // One cgroup, process or VM is one workload, of one tenant.
                if let Some(w) = self
                    .workloads
                    .values()
                    .find(|w| w.host == r.host && w.tenant != *tenant && same_thing(&w.name, name))
                {
                    return Err(LedgerError::WorkloadTaken {
                        name: name.clone(),
                        host: r.host,
                        workload: w.id,
                        tenant: w.tenant,
                    });
                }
                if self
                    .workloads
                    .values()
                    .any(|w| w.tenant == *tenant && w.name == *name)
                {
                    return Err(LedgerError::DuplicateName {
                        what: "workload",
                        name: name.clone(),
                    });
                }
                let id = WorkloadId(next(&mut self.counters.workload));
                index_add(&mut self.idx.workloads, r.id, id);
                self.workloads.insert(
                    id,
                    Workload {
                        id,
                        tenant: *tenant,
                        name: name.clone(),
                        host: r.host,
                        reservation: r.id,
                        share: ShardVector::ZERO,
                    },
                );
                ev.push(Event::WorkloadBound {
                    workload: id,
                    tenant: *tenant,
                    name: name.clone(),
                    reservation: r.id,
                    host: r.host,
                });
            }
            Action::UnbindWorkload(action::UnbindWorkload { tenant, workload }) => {
                self.own_workload(*tenant, *workload)?;
                self.unbind(*workload, ev)?;
            }
            Action::Allocate(action::Allocate {
                tenant,
                workload,
                share,
            }) => {
                let w = self.own_workload(*tenant, *workload)?.clone();
                let r = self.reservations[&w.reservation].clone();
                if r.cancelled || !r.window.contains(now) {
                    return Err(LedgerError::ReservationNotInForce {
                        reservation: r.id,
                        now,
                    });
                }
                let reserved = self.reserved_at(&r, now)?;
                let others = self.allocated(r.id)?.checked_sub(&w.share)?;
                let lent = self.lent_by(Lender::Reservation(r.id), now)?;
                let room = reserved.checked_sub(&others.checked_add(&lent)?)?;
                if let Some(kind) = ResourceKind::ALL
                    .into_iter()
                    .find(|&k| share.get(k) > room.get(k))
                {
                    return Err(LedgerError::InsufficientIdle {
                        reservation: r.id,
                        kind,
                        idle: room.get(kind).saturating_sub(w.share.get(kind)),
                        needed: share.get(kind).saturating_sub(w.share.get(kind)),
                    });
                }
                // Own workloads come before the pool: the offer shrinks if unoffered idle runs out.
                let unoffered = room.checked_sub(share)?;
                let offered = r.offered.min(&unoffered);
                if let Some(w) = self.workloads.get_mut(workload) {
                    w.share = *share;
                }
                ev.push(Event::AllocationChanged {
                    workload: *workload,
                    from: w.share,
                    to: *share,
                    reason: AllocationReason::Allocated,
                });
                if offered != r.offered {
                    self.set_offer(r.id, offered, OfferReason::Allocated, ev);
                }
            }
            Action::Offer(action::Offer {
                tenant,
                reservation,
                vector,
                floor,
            }) => {
                let r = self.own_reservation(*tenant, *reservation)?.clone();
                if !floor.is_non_negative() {
                    return Err(LedgerError::NegativePrice {
                        what: "floor price",
                    });
                }
                if (r.cancelled || !r.window.contains(now)) && !vector.is_zero() {
                    return Err(LedgerError::ReservationNotInForce {
                        reservation: r.id,
                        now,
                    });
                }
                let idle = self.idle_of(&r)?;
                if let Some(kind) = ResourceKind::ALL
                    .into_iter()
                    .find(|&k| vector.get(k) > idle.get(k))
                {
                    return Err(LedgerError::InsufficientIdle {
                        reservation: r.id,
                        kind,
                        idle: idle.get(kind),
                        needed: vector.get(kind),
                    });
                }
                if let Some(cap) = r.lending.cap {
                    let lent = self.lent_by(Lender::Reservation(r.id), now)?;
                    if let Some(kind) = ResourceKind::ALL
                        .into_iter()
                        .find(|&k| lent.get(k).saturating_add(vector.get(k)) > cap.get(k))
                    {
                        return Err(LedgerError::OverLendingCap {
                            reservation: r.id,
                            kind,
                            cap: cap.get(kind),
                            lent: lent.get(kind),
                            wanted: vector.get(kind),
                        });
                    }
                }
                if let Some(res) = self.reservations.get_mut(reservation) {
                    res.floor = *floor;
                }
                self.set_offer(r.id, *vector, OfferReason::Owner, ev);
            }
            Action::SetLending(action::SetLending {
                tenant,
                reservation,
                lending,
                floor,
            }) => {
                let r = self.own_reservation(*tenant, *reservation)?.clone();
                if !floor.is_non_negative() {
                    return Err(LedgerError::NegativePrice {
                        what: "floor price",
                    });
                }
                if let Some(res) = self.reservations.get_mut(reservation) {
                    res.lending = *lending;
                    res.floor = *floor;
                }
                ev.push(Event::LendingChanged {
                    reservation: r.id,
                    lending: *lending,
                    floor: *floor,
                });
                // Opting out withdraws the offer; a lower cap trims it. Leases already made
                // stay until they end or are reclaimed.
                let mut offered = if lending.opt_out {
                    ShardVector::ZERO
                } else {
                    r.offered
                };
                if let Some(cap) = lending.cap {
                    let lent = self.lent_by(Lender::Reservation(r.id), now)?;
                    offered = offered.min(&cap.excess_over(&lent));
                }
                if offered != r.offered || *floor != r.floor {
                    self.set_offer(r.id, offered, OfferReason::Lending, ev);
                }
            }
            Action::AutoOffer(action::AutoOffer { reservation, need }) => {
                let (target, offered) = self.auto_offer_target(*reservation, need)?;
                if target != offered {
                    self.set_offer(*reservation, target, OfferReason::Auto, ev);
                }
            }
            Action::SetMarketPrice(action::SetMarketPrice { host, prices }) => {
                if !self.hosts.contains_key(host) {
                    return Err(LedgerError::UnknownHost(*host));
                }
                if !prices.is_non_negative() {
                    return Err(LedgerError::NegativePrice {
                        what: "market price",
                    });
                }
                if self.market.get(host) != Some(prices) {
                    self.market.insert(*host, *prices);
                    ev.push(Event::MarketPriceChanged {
                        host: *host,
                        prices: *prices,
                    });
                }
            }
            Action::RequestLease(action::RequestLease {
                tenant,
                workload,
                vector,
                until,
                max_price,
                all_or_nothing,
                start,
            }) => {
                let w = self.own_workload(*tenant, *workload)?.clone();
                if vector.is_zero() {
                    return Err(LedgerError::EmptyVector {
                        what: "a lease request",
                    });
                }
                if *until <= now {
                    return Err(LedgerError::NotInFuture {
                        what: "the lease end",
                        at: *until,
                        now,
                    });
                }
                if !max_price.is_non_negative() {
                    return Err(LedgerError::NegativePrice {
                        what: "maximum price",
                    });
                }
                let cap = self.hosts[&w.host].capacity;
                if let Some(kind) = ResourceKind::ALL
                    .into_iter()
                    .find(|&k| vector.get(k) > cap.get(k))
                {
                    return Err(LedgerError::RequestExceedsCapacity {
                        host: w.host,
                        kind,
                        capacity: cap.get(kind),
                        wanted: vector.get(kind),
                    });
                }
                if let Some(s) = start {
                    if *s < now {
                        return Err(LedgerError::StartsInPast {
                            what: "a lease request's delivery",
                            start: *s,
                            now,
                        });
                    }
                    Window::new(*s, *until)?;
                }
                let tier = self.reservations[&w.reservation].tier;
                let delivery = match start {
                    Some(s) if *s > now => Delivery::Scheduled,
                    _ => Delivery::Immediate,
                };
                let factor = self.params.price_factor(tier, delivery);
                let floors = self.lowest_floor(w.host);
                if let Some(kind) = vector
                    .kinds()
                    .find(|&k| max_price.get(k) < floors.get(k) * factor)
                {
                    return Err(LedgerError::PriceUnderFloor {
                        host: w.host,
                        kind,
                        max: max_price.get(kind),
                        floor: floors.get(kind) * factor,
                    });
                }
                let id = RequestId(next(&mut self.counters.request));
                index_add(&mut self.idx.requests, w.host, id);
                self.requests.insert(
                    id,
                    LeaseRequest {
                        id,
                        workload: w.id,
                        host: w.host,
                        tier,
                        wanted: *vector,
                        filled: ShardVector::ZERO,
                        max_price: *max_price,
                        until: *until,
                        start: start.unwrap_or(now).max(now),
                        delivery,
                        all_or_nothing: *all_or_nothing,
                    },
                );
                ev.push(Event::LeaseRequested {
                    request: id,
                    workload: w.id,
                    wanted: *vector,
                    until: *until,
                    tier,
                    start: start.filter(|&s| s > now),
                });
            }
            Action::CancelRequest(action::CancelRequest { tenant, request }) => {
                let req = self
                    .requests
                    .get(request)
                    .ok_or(LedgerError::UnknownRequest(*request))?;
                self.own_workload(*tenant, req.workload)?;
                self.end_request(*request, RequestOutcome::Cancelled, ev);
            }
            Action::Reclaim(action::Reclaim { tenant, lease }) => {
                let l = self
                    .leases
                    .get(lease)
                    .ok_or(LedgerError::UnknownLease(*lease))?
                    .clone();
                if !self.tenants.contains_key(tenant) {
                    return Err(LedgerError::UnknownTenant(*tenant));
                }
                let Lender::Reservation(r) = l.lender else {
                    return Err(LedgerError::NotLender {
                        lease: *lease,
                        tenant: *tenant,
                    });
                };
                if self.reservations.get(&r).map(|r| r.tenant) != Some(*tenant) {
                    return Err(LedgerError::NotLender {
                        lease: *lease,
                        tenant: *tenant,
                    });
                }
                if l.reclaim.is_some() {
                    return Err(LedgerError::AlreadyReclaiming(*lease));
                }
                self.reclaim(*lease, ReclaimReason::Lender, ev)?;
            }
            Action::Release(action::Release { tenant, lease }) => {
                let l = self
                    .leases
                    .get(lease)
                    .ok_or(LedgerError::UnknownLease(*lease))?;
                self.own_workload(*tenant, l.borrower)?;
                self.end_lease(*lease, LeaseEnd::Released, ev)?;
            }
            Action::Expire => {}
            Action::Batch(action::Batch { .. }) => return Err(LedgerError::NestedBatch),
        }
        Ok(())
    }
}
