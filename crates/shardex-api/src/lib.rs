//! shardex-api: the tenant-facing HTTP API. Routes, wire types (`wire`), their conversion
//! into core actions (`convert`), auth (`auth`), errors as problem documents (`problem`),
//! idempotent retries (`idempotency`) and the OpenAPI document (`openapi`).
//!
//! The daemon only mounts [`router`] over its [`Backend`]: the store, the clock and the
//! tokens. A tenant acts as its token's tenant and sees only its own objects (another
//! tenant's id answers 404, exactly like a missing one); the admin token sees everything.

pub mod auth;
pub mod convert;
pub mod events;
pub mod idempotency;
pub mod moment;
pub mod openapi;
pub mod problem;
pub mod quantity;
pub mod ratelimit;
pub mod routes;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use rust_decimal::Decimal;
use shardex_core::billing::Charge;
use shardex_core::{Action, Event, Ledger, PriceTable, TenantId, Timestamp};

pub use auth::{Principal, TokenRecord};
pub use problem::Problem;
pub use routes::router;

/// What the API needs of the daemon: the ledger, durable writes at the daemon's clock, the
/// metered charges and the tokens.
pub trait Backend: Send + Sync + 'static {
    /// The admin's bearer token.
    fn admin_token(&self) -> &str;

    /// The list prices quotes are made with.
    fn prices(&self) -> &PriceTable;

    /// How much one shard of each kind is.
    fn sizes(&self) -> shardex_core::ShardSizes;

    /// True when the engine can free room on a host by moving workloads off it (a migrator
    /// is configured): only then does a change its host has no room for wait, `pending`,
    /// rather than being refused as infeasible.
    fn frees_room(&self) -> bool {
        false
    }

    /// The share of a lease's price its lender is credited.
    fn lender_share(&self) -> Decimal;

    /// Runs `f` over the ledger as of the last commit, with the daemon's time now.
    fn read<R: Send>(
        &self,
        f: impl FnOnce(&Ledger, Timestamp) -> R + Send,
    ) -> impl Future<Output = R> + Send;

    /// In the single writer, at the commit's time: `plan` makes the action (or refuses) on
    /// the ledger as the writes before it left it, the action is applied, and `describe`
    /// turns the ledger afterwards and the events into the answer, which is returned once the
    /// action is durable (writes arriving together are committed together). With `dry_run`
    /// the action is applied to a copy of the published ledger and never stored. `claim`, an
    /// `Idempotency-Key`, is stored in the action's own transaction. A refusal by the ledger
    /// is a problem document and changes nothing.
    fn write<P: Send + 'static, T: Send + 'static>(
        &self,
        plan: impl FnOnce(&Ledger, Timestamp) -> Result<(Planned, P), Problem> + Send + 'static,
        describe: impl FnOnce(&Ledger, &[Event], P) -> T + Send + 'static,
        dry_run: bool,
        claim: Option<idempotency::Claim>,
    ) -> impl Future<Output = Result<T, Problem>> + Send;

    /// What `caller`'s `key` holds, if it was used since `now - idempotency::KEEP`.
    fn kept(
        &self,
        caller: &str,
        key: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<idempotency::Kept>, Problem>> + Send;

    /// Keeps durably the answer (status, content type, body) sent for `caller`'s `key`.
    fn keep(
        &self,
        caller: &str,
        key: &str,
        fingerprint: &[u8; 32],
        at: Timestamp,
        answer: (u16, &str, &[u8]),
    ) -> impl Future<Output = Result<(), Problem>> + Send;

    /// `tenant`'s metered charges whose interval ends in `(from, to]`.
    fn charges(
        &self,
        tenant: TenantId,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Future<Output = Result<Vec<Charge>, Problem>> + Send;

    /// What the control loop knows of each workload now (empty when it has not run yet).
    fn workloads(&self) -> impl Future<Output = Vec<WorkloadState>> + Send;

    /// The engine's newest shard requests (at most 1,000), newest first.
    fn shard_requests(
        &self,
    ) -> impl Future<Output = Vec<shardex_core::engine::ShardRequest>> + Send;

    /// The token with this public id.
    fn token(&self, id: &str) -> impl Future<Output = Result<Option<TokenRecord>, Problem>> + Send;

    /// A tenant's tokens (everyone's when `None`).
    fn tokens(
        &self,
        tenant: Option<TenantId>,
    ) -> impl Future<Output = Result<Vec<TokenRecord>, Problem>> + Send;

    /// Stores a new token durably.
    fn add_token(&self, token: TokenRecord) -> impl Future<Output = Result<(), Problem>> + Send;

    /// The market prices set on `host` from `since` on, newest first, at most `limit`.
    fn price_history(
        &self,
        host: shardex_core::HostId,
        since: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(Timestamp, shardex_core::PriceVector)>, Problem>> + Send;

    /// The event stream's bus.
    fn events(&self) -> &events::EventBus;

    /// Revokes a token now; false when it was not there or already revoked.
    fn revoke_token(&self, id: &str) -> impl Future<Output = Result<bool, Problem>> + Send;

    /// What the control loop kept of a workload's recent past from `since` on (the
    /// dashboard's charts); `None` when it kept nothing of it.
    fn timeline(
        &self,
        workload: shardex_core::WorkloadId,
        since: Timestamp,
    ) -> impl Future<Output = Option<Timeline>> + Send;

    /// The engine's newest decisions about `workload`, newest first, at most `limit`.
    fn decisions(
        &self,
        workload: shardex_core::WorkloadId,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DecisionRecord>, Problem>> + Send;

    /// Whether `GET /v1/overview` (hosts' capacity split, market prices: nothing of any
    /// tenant's) answers without a token.
    fn public_overview(&self) -> bool;
}

/// A workload's recent past, oldest first, in physical units: what its dashboard page draws.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// When each point was sampled.
    pub at: Vec<Timestamp>,
    /// Per kind (by `ResourceKind::index`), series as long as `at`.
    pub kinds: [Series; 4],
    /// When OOM kills were seen.
    pub ooms: Vec<Timestamp>,
}

/// One kind's series in a [`Timeline`]; `None` where nothing was known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// What it used.
    pub usage: Vec<Option<f64>>,
    /// The forecast's median for the decision period the point falls in.
    pub p50: Vec<Option<f64>>,
    /// The forecast's 95th percentile.
    pub p95: Vec<Option<f64>>,
    /// Its entitlement.
    pub entitlement: Vec<Option<f64>>,
    /// The hard limit read back in force (`None`: unlimited or not known).
    pub limit: Vec<Option<f64>>,
    /// Whether the sample was held at the limit (a lower bound of demand).
    pub censored: Vec<bool>,
}

/// One decision of the engine as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    /// When it was made.
    pub at: Timestamp,
    /// "act" or "recommend".
    pub mode: String,
    /// The decision as the control loop recorded it (kind, from, to, why, outcome).
    pub decision: serde_json::Value,
}

/// What a write's plan decided: the action and, when the plan already applied it to the
/// ledger it was given (to price it, say), that application (the ledger after and the
/// events), so that it is not applied twice.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The action to commit.
    pub action: Action,
    /// `ledger.applied(&action, now)` on the ledger and time the plan was given, if done.
    pub applied: Option<(Ledger, Vec<Event>)>,
}

impl From<Action> for Planned {
    fn from(action: Action) -> Self {
        Self {
            action,
            applied: None,
        }
    }
}

/// What the control loop reports of one workload (physical units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadState {
    /// The workload.
    pub id: shardex_core::WorkloadId,
    /// Its latest forecast over the coming steps, if it has one.
    pub rdv: Option<shardex_core::Rdv>,
    /// The last usage per kind.
    pub usage: [Option<u64>; 4],
    /// Per kind, whether the last sample was at the limit.
    pub censored: [bool; 4],
    /// Per kind, the hard limit read back in force (`Some(None)`: unlimited).
    pub in_force: [Option<Option<u64>>; 4],
    /// Per kind, why it is degraded.
    pub degraded: [Option<String>; 4],
    /// OOM kills since the daemon started.
    pub oom_kills: u64,
    /// Whether the sampler finds it.
    pub resolved: bool,
}

/// The API's state: the backend, the answers kept for idempotent retries and the rate limit.
pub struct Api<B> {
    /// The daemon.
    pub backend: B,
    /// Keyed requests one at a time, and the answers with secrets.
    pub idempotency: idempotency::Cache,
    /// Requests per tenant token (`None`: unlimited).
    pub limiter: Option<ratelimit::Limiter>,
}

impl<B: Backend> Api<B> {
    /// The API over `backend`, with no rate limit.
    pub fn new(backend: B) -> Arc<Self> {
        Self::limited(backend, None)
    }

    /// The API over `backend`, each tenant token limited to `limit`.
    pub fn limited(backend: B, limit: Option<ratelimit::RateLimit>) -> Arc<Self> {
        Arc::new(Self {
            backend,
            idempotency: idempotency::Cache::default(),
            limiter: limit.map(ratelimit::Limiter::new),
        })
    }
}
