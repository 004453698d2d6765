//! The daemon as the tenant-facing API's backend (`shardex_api::Backend`): reads from the
//! published ledger, writes through the single writer, the wall clock, the metered charges,
//! the tokens and the idempotency keys.

use std::sync::Arc;

use shardex_api::{Backend, Planned, Problem, TokenRecord, WorkloadState};
use shardex_core::billing::Charge;
use shardex_core::ports::LedgerStore;
use shardex_core::{Event, Ledger, PriceTable, TenantId, Timestamp};
use shardex_store::StoredToken;

use super::{App, wall_clock};
use shardex_api::idempotency::{Claim, Kept};

/// The API's view of the daemon.
pub(super) struct Daemon(pub(super) Arc<App>);

/// A stored token as the API sees it.
pub(crate) fn record(t: StoredToken) -> TokenRecord {
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

/// The API's token as it is stored.
pub(crate) fn stored(t: TokenRecord) -> StoredToken {
    StoredToken {
        id: t.id,
        tenant: t.tenant,
        hash: t.hash,
        label: t.label,
        created: t.created,
        expires: t.expires,
        revoked: t.revoked,
    }
}

/// The side tables as the API sees them, for every backend that keeps them in a store.
pub(crate) mod side {
    use shardex_api::idempotency::Kept;
    use shardex_api::{Problem, TokenRecord};
    use shardex_core::{TenantId, Timestamp};
    use shardex_store::{Idempotency, Tokens};

    /// The token with this public id.
    pub(crate) async fn token(t: &Tokens, id: &str) -> Result<Option<TokenRecord>, Problem> {
        Ok(t.get(id).await.map_err(Problem::store)?.map(super::record))
    }

    /// A tenant's tokens (everyone's when `None`).
    pub(crate) async fn tokens(
        t: &Tokens,
        tenant: Option<TenantId>,
    ) -> Result<Vec<TokenRecord>, Problem> {
        let all = t.list(tenant).await.map_err(Problem::store)?;
        Ok(all.into_iter().map(super::record).collect())
    }

    /// Stores a new token.
    pub(crate) async fn add_token(t: &Tokens, token: TokenRecord) -> Result<(), Problem> {
        t.insert(&super::stored(token))
            .await
            .map_err(Problem::store)
    }

    /// What `caller`'s `key` holds.
    pub(crate) async fn kept(
        i: &Idempotency,
        caller: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<Kept>, Problem> {
        let k = i.get(caller, key, now).await.map_err(Problem::store)?;
        Ok(k.map(|k| Kept {
            fingerprint: k.fingerprint,
            seq: k.seq,
            answer: k.answer,
        }))
    }

    /// Keeps the answer sent for `caller`'s `key`.
    pub(crate) async fn keep(
        i: &Idempotency,
        caller: &str,
        key: &str,
        fingerprint: &[u8; 32],
        at: Timestamp,
        answer: (u16, &str, &[u8]),
    ) -> Result<(), Problem> {
        let (status, content_type, body) = answer;
        i.keep(caller, key, fingerprint, at, status, content_type, body)
            .await
            .map_err(Problem::store)
    }
}

impl Daemon {
    /// The ledger as of the last commit (a cheap copy: its maps are shared).
    fn ledger(&self) -> Ledger {
        self.0.ledger.borrow().clone()
    }

    fn now(&self) -> Timestamp {
        let floor = self.0.ledger.borrow().now();
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
        let ledger = self.ledger();
        let floor = ledger.now();
        f(&ledger, wall_clock(floor).unwrap_or(floor))
    }

    async fn write<P: Send + 'static, T: Send + 'static>(
        &self,
        plan: impl FnOnce(&Ledger, Timestamp) -> Result<(Planned, P), Problem> + Send + 'static,
        describe: impl FnOnce(&Ledger, &[Event], P) -> T + Send + 'static,
        dry_run: bool,
        claim: Option<Claim>,
    ) -> Result<T, Problem> {
        if dry_run {
            let ledger = self.ledger();
            let now = wall_clock(ledger.now()).map_err(Problem::store)?;
            return super::writer::dry_run(&ledger, now, plan, describe);
        }
        let (job, rx) = super::writer::job(plan, describe, claim);
        self.0
            .writer
            .send(job)
            .await
            .map_err(|_| Problem::store("the writer has stopped"))?;
        rx.await
            .map_err(|_| Problem::store("the write was dropped before it was committed"))?
    }

    async fn kept(&self, caller: &str, key: &str, now: Timestamp) -> Result<Option<Kept>, Problem> {
        side::kept(&self.0.idempotency, caller, key, now).await
    }

    async fn keep(
        &self,
        caller: &str,
        key: &str,
        fingerprint: &[u8; 32],
        at: Timestamp,
        answer: (u16, &str, &[u8]),
    ) -> Result<(), Problem> {
        side::keep(&self.0.idempotency, caller, key, fingerprint, at, answer).await
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

    fn frees_room(&self) -> bool {
        self.0.frees_room
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

    async fn timeline(
        &self,
        workload: shardex_core::WorkloadId,
        since: Timestamp,
    ) -> Option<shardex_api::Timeline> {
        self.0.timelines.lock().ok()?.since(workload, since)
    }

    async fn decisions(
        &self,
        workload: shardex_core::WorkloadId,
        limit: u32,
    ) -> Result<Vec<shardex_api::DecisionRecord>, Problem> {
        let rows = {
            let store = self.0.store.lock().await;
            store
                .decisions_of(workload, limit)
                .await
                .map_err(Problem::store)?
        };
        Ok(decision_records(rows))
    }

    fn public_overview(&self) -> bool {
        self.0.public_overview
    }

    async fn shard_requests(&self) -> Vec<shardex_core::engine::ShardRequest> {
        self.0
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, Problem> {
        side::token(&self.0.tokens, id).await
    }

    async fn tokens(&self, tenant: Option<TenantId>) -> Result<Vec<TokenRecord>, Problem> {
        side::tokens(&self.0.tokens, tenant).await
    }

    async fn add_token(&self, t: TokenRecord) -> Result<(), Problem> {
        side::add_token(&self.0.tokens, t).await
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
        let now = self.now();
        self.0.tokens.revoke(id, now).await.map_err(Problem::store)
    }
}

/// Stored decision rows (`{at_ms, seq, mode, decision}`, either store's) as the API's records.
pub(crate) fn decision_records(rows: Vec<serde_json::Value>) -> Vec<shardex_api::DecisionRecord> {
    rows.into_iter()
        .map(|r| shardex_api::DecisionRecord {
            at: r["at_ms"]
                .as_i64()
                .and_then(|ms| Timestamp::from_millis(ms).ok())
                .unwrap_or(Timestamp::EPOCH),
            mode: r["mode"].as_str().unwrap_or_default().to_string(),
            decision: r["decision"].clone(),
        })
        .collect()
}
