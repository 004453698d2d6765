//! The daemon as the tenant-facing API's backend (`shardex_api::Backend`): the store under its
//! lock, the wall clock, the metered charges and the tokens table.

use std::sync::Arc;

use shardex_api::{Backend, Problem, TokenRecord, WorkloadState};
use shardex_core::billing::Charge;
use shardex_core::ports::LedgerStore;
use shardex_core::{Action, Event, Ledger, PriceTable, TenantId, Timestamp};
use shardex_store::StoredToken;

use super::{App, wall_clock};

/// The API's view of the daemon.
pub(super) struct Daemon(pub(super) Arc<App>);

fn record(t: StoredToken) -> TokenRecord {
    TokenRecord {
        id: t.id,
        tenant: t.tenant,
        hash: t.hash,
        label: t.label,
        created: t.created,
        expires: t.expires,
        revoked: t.revoked,
    }
}

impl Daemon {
    async fn now(&self) -> Timestamp {
        let floor = self.0.store.lock().await.ledger().now();
        wall_clock(floor).unwrap_or(floor)
    }
}

impl Backend for Daemon {
    fn admin_token(&self) -> &str {
        &self.0.admin_token
    }

    fn prices(&self) -> &PriceTable {
        &self.0.prices
    }

    fn lender_share(&self) -> rust_decimal::Decimal {
        self.0.lender_share
    }

    async fn read<R: Send>(&self, f: impl FnOnce(&Ledger, Timestamp) -> R + Send) -> R {
        let store = self.0.store.lock().await;
        let floor = store.ledger().now();
        f(store.ledger(), wall_clock(floor).unwrap_or(floor))
    }

    async fn write<P: Send, T: Send>(
        &self,
        plan: impl FnOnce(&Ledger, Timestamp) -> Result<(Action, P), Problem> + Send,
        describe: impl FnOnce(&Ledger, &[Event], P) -> T + Send,
        dry_run: bool,
    ) -> Result<T, Problem> {
        let mut store = self.0.store.lock().await;
        let now = wall_clock(store.ledger().now()).map_err(Problem::store)?;
        let (action, p) = plan(store.ledger(), now)?;
        if dry_run {
            let (after, events) = store
                .ledger()
                .applied(&action, now)
                .map_err(|e| Problem::ledger(&e))?;
            return Ok(describe(&after, &events, p));
        }
        match store.apply(action, now).await {
            Ok(Ok(events)) => {
                self.0.changed.notify_one();
                Ok(describe(store.ledger(), &events, p))
            }
            Ok(Err(e)) => Err(Problem::ledger(&e)),
            Err(e) => Err(Problem::store(e)),
        }
    }

    async fn charges(
        &self,
        tenant: TenantId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Charge>, Problem> {
        let store = self.0.store.lock().await;
        store
            .charges(Some(tenant), from, to)
            .await
            .map_err(Problem::store)
    }

    fn sizes(&self) -> shardex_core::ShardSizes {
        self.0.sizes
    }

    async fn workloads(&self) -> Vec<WorkloadState> {
        let views = self
            .0
            .workloads
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        views
            .into_iter()
            .map(|v| WorkloadState {
                id: v.id,
                rdv: v.rdv,
                usage: v.usage.unwrap_or_default(),
                censored: v.censored,
                in_force: v.limits.as_ref().map(|l| l.in_force).unwrap_or_default(),
                degraded: v.limits.map(|l| l.degraded).unwrap_or_default(),
                oom_kills: v.oom_kills,
                resolved: v.resolved,
            })
            .collect()
    }

    async fn shard_requests(&self) -> Vec<shardex_core::engine::ShardRequest> {
        self.0
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, Problem> {
        Ok(self
            .0
            .tokens
            .get(id)
            .await
            .map_err(Problem::store)?
            .map(record))
    }

    async fn tokens(&self, tenant: Option<TenantId>) -> Result<Vec<TokenRecord>, Problem> {
        let all = self.0.tokens.list(tenant).await.map_err(Problem::store)?;
        Ok(all.into_iter().map(record).collect())
    }

    async fn add_token(&self, t: TokenRecord) -> Result<(), Problem> {
        let stored = StoredToken {
            id: t.id,
            tenant: t.tenant,
            hash: t.hash,
            label: t.label,
            created: t.created,
            expires: t.expires,
            revoked: t.revoked,
        };
        self.0.tokens.insert(&stored).await.map_err(Problem::store)
    }

    async fn price_history(
        &self,
        host: shardex_core::HostId,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<(Timestamp, shardex_core::PriceVector)>, Problem> {
        let store = self.0.store.lock().await;
        store
            .price_history(host, since, limit)
            .await
            .map_err(Problem::store)
    }

    fn events(&self) -> &shardex_api::events::EventBus {
        &self.0.events
    }

    async fn revoke_token(&self, id: &str) -> Result<bool, Problem> {
        let now = self.now().await;
        self.0.tokens.revoke(id, now).await.map_err(Problem::store)
    }
}
