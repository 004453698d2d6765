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
