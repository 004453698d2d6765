//! Applying one action to the ledger: a dispatcher to the rules of each intent, which live in
//! the files named after them (hosts, reservations, lending, matching).

use super::*;

impl Ledger {
    pub(super) fn act(&mut self, action: &Action, ev: &mut Vec<Event>) -> Result<(), LedgerError> {
        bounds::check(action, self.now)?;
        match action {
            Action::Configure(a) => self.configure(a, ev),
            Action::RegisterHost(a) => self.register_host(a, ev),
            Action::SetHostCapacity(a) => self.set_host_capacity(a, ev),
            Action::CreateTenant(a) => self.create_tenant(a, ev),
            Action::CreateReservation(a) => self.create_reservation(a, ev),
            Action::ModifyReservation(a) => self.modify_reservation(a, ev),
            Action::CancelModification(a) => self.cancel_modification(a, ev),
            Action::CancelReservation(a) => self.cancel_reservation(a, ev),
            Action::BindWorkload(a) => self.bind_workload(a, ev),
            Action::UnbindWorkload(a) => self.unbind_workload(a, ev),
            Action::Allocate(a) => self.allocate(a, ev),
            Action::Offer(a) => self.offer(a, ev),
            Action::SetLending(a) => self.set_lending(a, ev),
            Action::AutoOffer(a) => self.auto_offer(a, ev),
            Action::SetMarketPrice(a) => self.set_market_price(a, ev),
            Action::RequestLease(a) => self.request_lease(a, ev),
            Action::CancelRequest(a) => self.cancel_request(a, ev),
            Action::Reclaim(a) => self.reclaim_lease(a, ev),
            Action::ReclaimProvider(a) => self.reclaim_provider_lease(a, ev),
            Action::Release(a) => self.release_lease(a, ev),
            Action::QueueModification(a) => self.queue_modification(a, ev),
            Action::StartPendingModification(a) => self.start_pending_modification(a, ev),
            Action::Expire => Ok(()),
            Action::Batch(_) => Err(LedgerError::NestedBatch),
        }
    }
}
