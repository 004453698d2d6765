//! The broker as the tenant-facing API's backend: reads from the ledger as of the newest entry
//! it has seen, writes through the shared log (each under the head's lock, on the newest state
//! whoever wrote it), tokens and idempotency answers in the shared database. What a host's
//! agent reports is here too: each workload's limits in force and newest usage (the agents'
//! reports and samples), its decisions and the engine's shard requests (the plans', shared
//! tables); its charts answer empty on a broker.

use std::sync::Arc;

use shardex_api::idempotency::{Claim, Kept};
use shardex_api::{Backend, Planned, Problem, TokenRecord, WorkloadState};
use shardex_core::billing::Charge;
use shardex_core::ports::LedgerStore;
use shardex_core::{Event, Ledger, PriceTable, TenantId, Timestamp};

use super::Broker;

/// The API's view of a broker.
pub(super) struct Shared(pub(super) Arc<Broker>);

impl Backend for Shared {
    fn admin_token(&self) -> &str {
        &self.0.admin_token
    }

    fn prices(&self) -> &PriceTable {
        &self.0.prices
    }

    fn sizes(&self) -> shardex_core::ShardSizes {
        self.0.sizes
    }

    fn frees_room(&self) -> bool {
        self.0.frees_room
    }

    fn lender_share(&self) -> rust_decimal::Decimal {
        self.0.lender_share
    }

    async fn read<R: Send>(&self, f: impl FnOnce(&Ledger, Timestamp) -> R + Send) -> R {
        let ledger = self.0.ledger.borrow().clone();
        let now = self.0.now(ledger.now());
        f(&ledger, now)
    }

    async fn write<P: Send + 'static, T: Send + 'static>(
        &self,
        plan: impl FnOnce(&Ledger, Timestamp) -> Result<(Planned, P), Problem> + Send + 'static,
        describe: impl FnOnce(&Ledger, &[Event], P) -> T + Send + 'static,
        dry_run: bool,
        claim: Option<Claim>,
    ) -> Result<T, Problem> {
        if dry_run {
            let ledger = self.0.ledger.borrow().clone();
            let now = self.0.now(ledger.now());
            return crate::run::writer::dry_run(&ledger, now, plan, describe);
        }
        let (job, rx) = crate::run::writer::job(plan, describe, claim);
        self.0
            .writer
            .send(job)
            .await
            .map_err(|_| Problem::store("the writer has stopped"))?;
        rx.await
            .map_err(|_| Problem::store("the write was dropped before it was committed"))?
    }

    async fn kept(&self, caller: &str, key: &str, now: Timestamp) -> Result<Option<Kept>, Problem> {
        crate::run::backend::side::kept(&self.0.idempotency, caller, key, now).await
    }

    async fn keep(
        &self,
        caller: &str,
        key: &str,
        fingerprint: &[u8; 32],
        at: Timestamp,
        answer: (u16, &str, &[u8]),
    ) -> Result<(), Problem> {
        crate::run::backend::side::keep(&self.0.idempotency, caller, key, fingerprint, at, answer)
            .await
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

    async fn workloads(&self) -> Vec<WorkloadState> {
        // What the hosts' agents reported: limits in force, and each workload's newest
        // sample of the last five minutes.
        let b = &self.0;
        let floor = b.ledger.borrow().now();
        let since = Timestamp::from_millis(b.now(floor).millis().saturating_sub(300_000))
            .unwrap_or(Timestamp::EPOCH);
        let (seen, latest) = match (b.agents.agents().await, b.agents.latest(since).await) {
            (Ok(s), Ok(l)) => (s, l),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "could not read what the agents reported");
                return Vec::new();
            }
        };
        let usage: std::collections::BTreeMap<_, _> = latest
            .into_iter()
            .map(|s| (s.workload, s.reading))
            .collect();
        seen.iter()
            .flat_map(|a| {
                serde_json::from_str::<Vec<shardex_api::wire::agent::InForceReport>>(&a.in_force)
                    .unwrap_or_default()
            })
            .map(|f| {
                let id = shardex_core::WorkloadId(f.workload);
                let reading = usage.get(&id);
                WorkloadState {
                    id,
                    rdv: None,
                    usage: reading.map(|r| r.usage).unwrap_or_default(),
                    censored: reading.map(|r| r.censored).unwrap_or_default(),
                    in_force: f.in_force,
                    degraded: f.degraded,
                    oom_kills: 0,
                    resolved: reading.is_some(),
                }
            })
            .collect()
    }

    async fn shard_requests(&self) -> Vec<shardex_core::engine::ShardRequest> {
        // Each host's, as the broker planning it last saw them.
        self.0.plans.requests(1000).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read the shard requests");
            Vec::new()
        })
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, Problem> {
        crate::run::backend::side::token(&self.0.tokens, id).await
    }

    async fn tokens(&self, tenant: Option<TenantId>) -> Result<Vec<TokenRecord>, Problem> {
        crate::run::backend::side::tokens(&self.0.tokens, tenant).await
    }

    async fn add_token(&self, t: TokenRecord) -> Result<(), Problem> {
        crate::run::backend::side::add_token(&self.0.tokens, t).await
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
        let floor = self.0.ledger.borrow().now();
        let now = self.0.now(floor);
        self.0.tokens.revoke(id, now).await.map_err(Problem::store)
    }

    async fn timeline(
        &self,
        _: shardex_core::WorkloadId,
        _: Timestamp,
    ) -> Option<shardex_api::Timeline> {
        None
    }

    async fn decisions(
        &self,
        workload: shardex_core::WorkloadId,
        limit: u32,
    ) -> Result<Vec<shardex_api::DecisionRecord>, Problem> {
        let rows = self
            .0
            .plans
            .decisions_of(workload, limit)
            .await
            .map_err(Problem::store)?;
        Ok(crate::run::backend::decision_records(rows))
    }

    fn public_overview(&self) -> bool {
        self.0.public_overview
    }
}
