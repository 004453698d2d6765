//! Hosts, tenants, parameters and market prices: what the operator and the market set.

use super::*;

impl Ledger {
    /// Applies [`Action::Configure`].
    pub(super) fn configure(
        &mut self,
        a: &action::Configure,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::Configure { params } = a;
        // What parameters may be is checked with every action's bounds (bounds.rs).
        bounds::params(params)?;
        self.params = params.clone();
        ev.push(Event::Configured {
            params: params.clone(),
        });
        Ok(())
    }

    /// Applies [`Action::RegisterHost`].
    pub(super) fn register_host(
        &mut self,
        a: &action::RegisterHost,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::RegisterHost { name, capacity } = a;
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
        Ok(())
    }

    /// Applies [`Action::SetHostCapacity`].
    pub(super) fn set_host_capacity(
        &mut self,
        a: &action::SetHostCapacity,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::SetHostCapacity { host, capacity } = a;
        let h = self
            .hosts
            .get_mut(host)
            .ok_or(LedgerError::UnknownHost(*host))?;
        let from = h.capacity;
        h.capacity = *capacity;
        self.admit_change(*host, None)?;
        ev.push(Event::HostCapacityChanged {
            host: *host,
            from,
            to: *capacity,
        });
        Ok(())
    }

    /// Applies [`Action::CreateTenant`].
    pub(super) fn create_tenant(
        &mut self,
        a: &action::CreateTenant,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::CreateTenant { name } = a;
        check_name("tenant", name)?;
        if self.tenant_named(name).is_some() {
            return Err(LedgerError::DuplicateName {
                what: "tenant",
                name: name.clone(),
            });
        }
        let id = TenantId(next(&mut self.counters.tenant));
        self.idx.tenant_names.insert(name.clone(), id);
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
        Ok(())
    }

    /// Applies [`Action::SetMarketPrice`].
    pub(super) fn set_market_price(
        &mut self,
        a: &action::SetMarketPrice,
        ev: &mut Vec<Event>,
    ) -> Result<(), LedgerError> {
        let action::SetMarketPrice { host, prices } = a;
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
        Ok(())
    }
}
