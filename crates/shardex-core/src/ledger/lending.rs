//! Lending: prices asked for lent shards, idle shards, offers and automatic offers.

use super::*;

impl Ledger {
    /// The base price per shard-hour a lender's shards go for now: its floor, or the host's
    /// market price when that is higher.
    pub(super) fn ask_price(&self, lender: Lender, host: HostId) -> PriceVector {
        let floor = self.lender_floor(lender);
        match self.market.get(&host) {
            Some(m) => floor.zip(m, Decimal::max),
            None => floor,
        }
    }

    /// The lowest floor on a host per kind: the provider's, or a reservation offering lower.
    pub fn lowest_floor(&self, host: HostId) -> PriceVector {
        let mut f = self.params.provider_floor;
        for r in self
            .host_reservations(host)
            .filter(|r| !r.offered.is_zero())
        {
            for k in r.offered.kinds() {
                f.set(k, f.get(k).min(r.floor.get(k)));
            }
        }
        f
    }

    /// The market price per shard-hour on a host, before tier and delivery factors.
    pub fn market_price(&self, host: HostId) -> Option<PriceVector> {
        self.market.get(&host).copied()
    }

    pub(super) fn lender_floor(&self, lender: Lender) -> PriceVector {
        match lender {
            Lender::Reservation(r) => self
                .reservations
                .get(&r)
                .map(|r| r.floor)
                .unwrap_or_default(),
            Lender::Provider(_) => self.params.provider_floor,
        }
    }

    /// What an automatic offer of a reservation would be now, given its owner's predicted
    /// need, and what it offers now: idle − need within its cap, nothing when it opted out or
    /// is not in force.
    pub fn auto_offer_target(
        &self,
        reservation: ReservationId,
        need: &ShardVector,
    ) -> Result<(ShardVector, ShardVector), LedgerError> {
        let r = self
            .reservations
            .get(&reservation)
            .ok_or(LedgerError::UnknownReservation(reservation))?;
        if r.lending.opt_out || r.cancelled || !r.window.contains(self.now) {
            return Ok((ShardVector::ZERO, r.offered));
        }
        let mut t = self.idle_of(r)?.excess_over(need);
        if let Some(cap) = r.lending.cap {
            let lent = self.lent_by(Lender::Reservation(r.id), self.now)?;
            t = t.min(&cap.excess_over(&lent));
        }
        Ok((t, r.offered))
    }

    /// Idle shards of a reservation now (offered or not): reserved − allocated − lent.
    pub fn idle(&self, id: ReservationId) -> Result<ShardVector, LedgerError> {
        let r = self
            .reservations
            .get(&id)
            .ok_or(LedgerError::UnknownReservation(id))?;
        self.idle_of(r)
    }

    pub(super) fn idle_of(&self, r: &Reservation) -> Result<ShardVector, LedgerError> {
        let reserved = self.reserved_at(r, self.now)?;
        let used = self
            .allocated(r.id)?
            .checked_add(&self.lent_by(Lender::Reservation(r.id), self.now)?)?;
        Ok(reserved.checked_sub(&used)?)
    }

    pub(super) fn set_offer(
        &mut self,
        r: ReservationId,
        offered: ShardVector,
        reason: OfferReason,
        ev: &mut Vec<Event>,
    ) {
        if let Some(res) = self.reservations.get_mut(&r) {
            res.offered = offered;
            ev.push(Event::OfferChanged {
                reservation: r,
                offered,
                floor: res.floor,
                reason,
            });
        }
    }
}

impl Ledger {
    /// Applies [`Action::Offer`].
    pub(super) fn offer(
        &mut self,
        a: &action::Offer,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::Offer {
            tenant,
            reservation,
            vector,
            floor,
        } = a;
        let now = self.now;
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
        Ok(())
    }

    /// Applies [`Action::SetLending`].
    pub(super) fn set_lending(
        &mut self,
        a: &action::SetLending,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::SetLending {
            tenant,
            reservation,
            lending,
            floor,
        } = a;
        let now = self.now;
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
        Ok(())
    }

    /// Applies [`Action::AutoOffer`].
    pub(super) fn auto_offer(
        &mut self,
        a: &action::AutoOffer,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::AutoOffer { reservation, need } = a;
        let (target, offered) = self.auto_offer_target(*reservation, need)?;
        if target != offered {
            self.set_offer(*reservation, target, OfferReason::Auto, ev);
        }
        Ok(())
    }
}
