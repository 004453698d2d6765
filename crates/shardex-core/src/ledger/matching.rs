//! Matching: supply, lease requests served by tier and age, preemption, reclaim and lease ends.

use super::*;

impl Ledger {
    pub(super) fn end_request(
        &mut self,
        id: RequestId,
        outcome: RequestOutcome,
        ev: &mut Vec<Event>,
    ) {
        if let Some(r) = self.requests.remove(&id) {
            index_remove(&mut self.idx.requests, &r.host, &id);
            self.undue(Self::request_dues(&r));
            ev.push(Event::LeaseRequestEnded {
                request: id,
                filled: r.filled,
                outcome,
            });
        }
    }

    pub(super) fn end_lease(
        &mut self,
        id: LeaseId,
        reason: LeaseEnd,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let l = self
            .leases
            .remove(&id)
            .ok_or(LedgerError::UnknownLease(id))?;
        index_remove(&mut self.by_lender, &l.lender, &id);
        index_remove(&mut self.idx.leases, &l.host, &id);
        self.undue([Self::lease_due(&l)]);
        // Ended early (released): the provider's shards are free again from now.
        self.commit_provider_lease(&l, self.now, l.window.end(), -1);
        if let Some(set) = self.by_borrower.get_mut(&l.borrower) {
            set.remove(&id);
            if set.is_empty() {
                self.by_borrower.remove(&l.borrower);
            }
        }
        // A lender who reclaimed wants the shards for itself; otherwise they return to the pool.
        // Within the lending cap, which may have been lowered while the lease was out.
        if let (Lender::Reservation(r), false) = (l.lender, reason == LeaseEnd::Reclaimed) {
            let lent = self.lent_by(l.lender, self.now)?;
            if let Some(res) = self.reservations.get_mut(&r) {
                let mut offered = res.offered.checked_add(&l.vector)?;
                if let Some(cap) = res.lending.cap {
                    offered = offered.min(&cap.excess_over(&lent));
                }
                res.offered = offered;
            }
        }
        ev.push(Event::LeaseEnded { lease: id, reason });
        Ok(())
    }

    pub(super) fn reclaim(
        &mut self,
        id: LeaseId,
        reason: ReclaimReason,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let at = self.now.checked_add(self.params.reclaim_notice)?;
        let l = self
            .leases
            .get_mut(&id)
            .ok_or(LedgerError::UnknownLease(id))?;
        let was = Self::lease_due(l);
        let old_end = l.window.end();
        l.reclaim = Some(reason);
        l.window = l.window.cut_at(at);
        let end = l.window.end();
        let is = Self::lease_due(l);
        let cut = l.clone();
        self.commit_provider_lease(&cut, end, old_end, -1);
        ev.push(Event::LeaseReclaiming {
            lease: id,
            at: end,
            reason,
        });
        self.undue([was]);
        self.due([is]);
        Ok(())
    }

    // ----- matching -----

    /// What each lender on `host` can lend now and keep lent until `until`, with its floor.
    pub(super) fn supply(
        &self,
        host: HostId,
        until: Timestamp,
    ) -> Result<Vec<(Lender, PriceVector, ShardVector)>, LedgerError> {
        let h = self
            .hosts
            .get(&host)
            .ok_or(LedgerError::UnknownHost(host))?;
        let now = self.now;
        // Every lease started by now and only ends, so what a lender has lent only falls over
        // time; what it holds changes only at its reservations' edges. So its cover is lowest
        // at now or at one of those edges: no other moment needs checking.
        let on_host: Vec<&Reservation> = self
            .host_reservations(host)
            .filter(|r| !r.cancelled)
            .collect();
        let leases: Vec<&Lease> = self.host_leases(host).collect();
        let lent_at = |lender: Lender, t: Timestamp| -> Result<ShardVector, LedgerError> {
            Ok(ShardVector::checked_sum(
                leases
                    .iter()
                    .filter(|l| l.lender == lender && l.window.contains(t))
                    .map(|l| &l.vector),
            )?)
        };
        let edges = |r: &Reservation| -> Vec<Timestamp> {
            let mut pts = vec![r.window.start(), r.window.end()];
            for m in r
                .modifications
                .iter()
                .filter_map(|m| self.modifications.get(m))
            {
                if !m.cancelled {
                    pts.push(m.window.start());
                    pts.push(m.window.end());
                }
            }
            pts.retain(|&t| t > now && t < until);
            pts.push(now);
            pts
        };
        let mut out = Vec::new();
        let mut all_points = vec![now];
        for r in &on_host {
            let points = edges(r);
            all_points.extend(points.iter().copied());
            if r.offered.is_zero() {
                continue;
            }
            let mut avail = r.offered;
            for &t in &points {
                let cover = self
                    .reserved_at(r, t)?
                    .excess_over(&lent_at(Lender::Reservation(r.id), t)?);
                avail = avail.min(&cover);
            }
            if !avail.is_zero() {
                out.push((Lender::Reservation(r.id), r.floor, avail));
            }
        }
        all_points.sort();
        all_points.dedup();
        let mut free: Option<ShardVector> = None;
        for &t in &all_points {
            let mut used = lent_at(Lender::Provider(host), t)?;
            for r in &on_host {
                used = used.checked_add(&self.reserved_at(r, t)?)?;
            }
            let f = h.capacity.excess_over(&used);
            free = Some(free.map_or(f, |x| x.min(&f)));
        }
        if let Some(free) = free.filter(|f| !f.is_zero()) {
            out.push((Lender::Provider(host), self.params.provider_floor, free));
        }
        Ok(out)
    }

    /// The base-price limit of a request: its maximum price divided by its tier and delivery
    /// factor, so that offers can be compared at their base price.
    pub(super) fn limit(&self, req: &LeaseRequest) -> PriceVector {
        let f = self.params.price_factor(req.tier, req.delivery);
        if f.is_zero() {
            return PriceVector::uniform(Decimal::MAX);
        }
        req.max_price.zip(&req.max_price, |m, _| m / f)
    }

    pub(super) fn match_requests(
        &mut self,
        host: HostId,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let now = self.now;
        let mut order: Vec<(Reverse<Tier>, RequestId)> = self
            .host_requests(host)
            .filter(|r| r.start <= now)
            .map(|r| (Reverse(r.tier), r.id))
            .collect();
        if order.is_empty() {
            return Ok(());
        }
        order.sort();
        // The book holds what each lender can lend now, at its base price; how long a lender
        // can keep lending depends on each request's end, so that is a per-request cap.
        let mut book = HostBook::new();
        let instant = now.checked_add(Span::from_millis(1))?;
        for (lender, _, avail) in self.supply(host, instant)? {
            book.set_asks(lender, &self.ask_price(lender, host), &avail);
        }
        // Cover per distinct end, computed once per pass; what this pass already lent from a
        // lender is taken off it (a lower bound of the true cover, so leases never outlive it).
        let mut covers: BTreeMap<Timestamp, BTreeMap<Lender, ShardVector>> = BTreeMap::new();
        for &(_, id) in &order {
            let until = self.requests[&id].until;
            if let std::collections::btree_map::Entry::Vacant(e) = covers.entry(until) {
                e.insert(
                    self.supply(host, until)?
                        .into_iter()
                        .map(|(l, _, v)| (l, v))
                        .collect(),
                );
            }
        }
        let mut taken: BTreeMap<Lender, ShardVector> = BTreeMap::new();
        for &(_, id) in &order {
            let req = self.requests[&id].clone();
            let remaining = req.remaining();
            let Some(cover) = covers.get(&req.until) else {
                continue;
            };
            let bid = Bid {
                vector: remaining,
                limit: self.limit(&req),
                all_or_nothing: req.all_or_nothing,
            };
            let fill = book.match_bid(&bid, |l, k| {
                cover
                    .get(&l)
                    .map_or(0, |v| v.get(k))
                    .saturating_sub(taken.get(&l).map_or(0, |v| v.get(k)))
            });
            if fill.got.is_zero() {
                continue;
            }
            let mut takes: BTreeMap<Lender, ShardVector> = BTreeMap::new();
            for t in &fill.takes {
                let v = takes.entry(t.lender).or_insert(ShardVector::ZERO);
                *v = v.with(t.kind, v.get(t.kind) + t.shards);
            }
            let factor = self.params.price_factor(req.tier, req.delivery);
            let window = Window::new(now, req.until)?;
            for (lender, vector) in takes {
                let t = taken.entry(lender).or_insert(ShardVector::ZERO);
                *t = t.saturating_add(&vector);
                if let Lender::Reservation(r) = lender {
                    let res = self
                        .reservations
                        .get_mut(&r)
                        .ok_or(LedgerError::UnknownReservation(r))?;
                    res.offered = res.offered.checked_sub(&vector)?;
                }
                let price = self.ask_price(lender, host).scaled(factor);
                let lease = LeaseId(next(&mut self.counters.lease));
                self.by_lender.entry(lender).or_default().insert(lease);
                index_add(&mut self.idx.leases, host, lease);
                self.by_borrower
                    .entry(req.workload)
                    .or_default()
                    .insert(lease);
                let l = Lease {
                    id: lease,
                    lender,
                    borrower: req.workload,
                    tier: req.tier,
                    host,
                    vector,
                    price,
                    window,
                    reclaim: None,
                    request: id,
                };
                self.due([Self::lease_due(&l)]);
                self.commit_provider_lease(&l, l.window.start(), l.window.end(), 1);
                self.leases.insert(lease, l);
                ev.push(Event::LeaseCreated {
                    lease,
                    request: id,
                    lender,
                    borrower: req.workload,
                    vector,
                    price,
                    window,
                });
            }
            let r = self
                .requests
                .get_mut(&id)
                .ok_or(LedgerError::UnknownRequest(id))?;
            r.filled = r.filled.checked_add(&fill.got)?;
            if r.remaining().is_zero() {
                self.end_request(id, RequestOutcome::Fulfilled, ev);
            }
        }
        self.preempt(host, ev)
    }

    /// Reclaims lower-tier leases that still-short requests could use.
    pub(super) fn preempt(&mut self, host: HostId, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        let mut order: Vec<(Reverse<Tier>, RequestId)> = self
            .host_requests(host)
            .filter(|r| r.start <= self.now)
            .map(|r| (Reverse(r.tier), r.id))
            .collect();
        order.sort();
        for (_, id) in order {
            let req = self.requests[&id].clone();
            let limit = self.limit(&req);
            let mut incoming = ShardVector::checked_sum(
                self.host_leases(host)
                    .filter(|l| l.reclaim == Some(ReclaimReason::Preempted { by: id }))
                    .map(|l| &l.vector),
            )?;
            for kind in req.remaining().kinds() {
                let mut need = req.remaining().get(kind).saturating_sub(incoming.get(kind));
                if need == 0 {
                    continue;
                }
                let mut cands: Vec<(Tier, Reverse<LeaseId>)> = self
                    .host_leases(host)
                    .filter(|l| {
                        l.reclaim.is_none()
                            && l.tier < req.tier
                            && l.vector.get(kind) > 0
                            && self.ask_price(l.lender, host).get(kind) <= limit.get(kind)
                    })
                    .map(|l| (l.tier, Reverse(l.id)))
                    .collect();
                cands.sort();
                for (_, Reverse(lease)) in cands {
                    if need == 0 {
                        break;
                    }
                    let v = self.leases[&lease].vector;
                    need = need.saturating_sub(v.get(kind));
                    incoming = incoming.checked_add(&v)?;
                    self.reclaim(lease, ReclaimReason::Preempted { by: id }, ev)?;
                }
            }
        }
        Ok(())
    }
}

impl Ledger {
    /// Applies [`Action::RequestLease`].
    pub(super) fn request_lease(
        &mut self,
        a: &action::RequestLease,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::RequestLease {
            tenant,
            workload,
            vector,
            until,
            max_price,
            all_or_nothing,
            start,
        } = a;
        let now = self.now;
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
        let q = LeaseRequest {
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
        };
        self.due(Self::request_dues(&q));
        self.requests.insert(id, q);
        ev.push(Event::LeaseRequested {
            request: id,
            workload: w.id,
            wanted: *vector,
            until: *until,
            tier,
            start: start.filter(|&s| s > now),
        });
        Ok(())
    }

    /// Applies [`Action::CancelRequest`].
    pub(super) fn cancel_request(
        &mut self,
        a: &action::CancelRequest,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::CancelRequest { tenant, request } = a;
        let req = self
            .requests
            .get(request)
            .ok_or(LedgerError::UnknownRequest(*request))?;
        self.own_workload(*tenant, req.workload)?;
        self.end_request(*request, RequestOutcome::Cancelled, ev);
        Ok(())
    }

    /// Applies [`Action::Reclaim`].
    pub(super) fn reclaim_lease(
        &mut self,
        a: &action::Reclaim,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::Reclaim { tenant, lease } = a;
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
        Ok(())
    }

    /// Applies [`Action::ReclaimProvider`].
    pub(super) fn reclaim_provider_lease(
        &mut self,
        a: &action::ReclaimProvider,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let l = self
            .leases
            .get(&a.lease)
            .ok_or(LedgerError::UnknownLease(a.lease))?;
        if !matches!(l.lender, Lender::Provider(_)) {
            return Err(LedgerError::NotProviderLease(a.lease));
        }
        if l.reclaim.is_some() {
            return Err(LedgerError::AlreadyReclaiming(a.lease));
        }
        self.reclaim(a.lease, ReclaimReason::Lender, ev)
    }

    /// Applies [`Action::Release`].
    pub(super) fn release_lease(
        &mut self,
        a: &action::Release,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::Release { tenant, lease } = a;
        let l = self
            .leases
            .get(lease)
            .ok_or(LedgerError::UnknownLease(*lease))?;
        self.own_workload(*tenant, l.borrower)?;
        self.end_lease(*lease, LeaseEnd::Released, ev)?;
        Ok(())
    }
}
