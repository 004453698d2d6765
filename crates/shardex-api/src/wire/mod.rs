//! Wire types: what the API reads and writes. Stateless, `deny_unknown_fields`, documented for
//! the OpenAPI document; turned into core actions in `convert.rs`, where validation lives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub mod agent;
mod overview;
mod timeline;

pub use overview::{HostOverview, MarketSummary, OverviewView, RequestCounts, SplitView};
pub use timeline::{
    DecisionView, DecisionsQuery, DecisionsView, SeriesView, TimelineQuery, TimelineView,
    WorkloadList,
};

/// Shards per kind; a kind left out is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Shards {
    /// CPU shards.
    #[serde(default)]
    pub cpu: u64,
    /// Memory shards.
    #[serde(default)]
    pub memory: u64,
    /// Network bandwidth shards.
    #[serde(default)]
    pub net: u64,
    /// Storage IOPS shards.
    #[serde(default)]
    pub iops: u64,
}

/// `POST /v1/tenants`: a new tenant, and its first token.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Unique name, 1 to 128 characters.
    pub name: String,
    /// When its first token stops working, as a duration from now (e.g. `"90d"`); never when absent.
    #[serde(default)]
    pub token_expires_in: Option<String>,
}

/// A tenant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TenantView {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// `POST /v1/tenants/{tenant}/tokens`: another token for a tenant.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What to call it (e.g. `"ci"`), up to 64 characters.
    #[serde(default)]
    pub label: Option<String>,
    /// When it stops working, as a duration from now; never when absent.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    /// Its public id (the part after `sxt_`).
    pub id: String,
    /// Whose.
    pub tenant: u64,
    /// What it is called.
    pub label: String,
    /// When issued (RFC 3339).
    pub created: String,
    /// When it stops working (RFC 3339), if ever.
    pub expires: Option<String>,
    /// When revoked (RFC 3339), if it was.
    pub revoked: Option<String>,
}

/// A token just issued: the only time its secret is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedToken {
    /// The bearer token to send: `Authorization: Bearer <token>`. Shown once.
    pub token: String,
    /// Its record.
    #[serde(flatten)]
    pub view: TokenView,
}

/// A new tenant and its first token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedTenant {
    /// The tenant.
    pub tenant: TenantView,
    /// Its first token (shown once).
    pub token: IssuedToken,
}

/// `POST /v1/reservations`: shards on a host for a while.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReservation {
    /// The host, by name or id.
    pub host: String,
    /// How many shards of each kind (or give `resources`).
    #[serde(default)]
    pub shards: Option<Shards>,
    /// How much of each kind in physical units, rounded up to whole shards (or give
    /// `shards`).
    #[serde(default)]
    pub resources: Option<Resources>,
    /// When it starts: `"now"` (the default), an RFC 3339 time or `"+10m"`.
    #[serde(default)]
    pub start: Option<String>,
    /// How long it lasts, e.g. `"24h"` (at most 10 years).
    #[serde(rename = "for")]
    pub duration: String,
    /// `best-effort`, `standard` (the default), `premium` or `critical`.
    #[serde(default)]
    pub tier: Option<String>,
    /// `immediate` (now or not at all) or `scheduled` (it must start later). Without it, a
    /// reservation from now that fits only once the provider takes back shards it lent is
    /// deferred until then (answered with `state: scheduled` and the reason in `deferred`).
    #[serde(default)]
    pub delivery: Option<String>,
}

/// Amounts in physical units; a kind left out is 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Cores (`"1.5"`) or millicores (`"1500m"`).
    #[serde(default)]
    pub cpu: Option<String>,
    /// Bytes: `"1GiB"`, `"512MiB"`, `"2G"` or a plain number.
    #[serde(default)]
    pub memory: Option<String>,
    /// Bits a second: `"100Mbit"`, `"1Gbit"` or a plain number.
    #[serde(default)]
    pub net: Option<String>,
    /// Operations a second.
    #[serde(default)]
    pub iops: Option<String>,
}

/// A time window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WindowView {
    /// Start (RFC 3339).
    pub start: String,
    /// End, exclusive (RFC 3339).
    pub end: String,
}

/// A reservation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReservationView {
    /// Its id.
    pub id: u64,
    /// Owner.
    pub tenant: u64,
    /// The host's name.
    pub host: String,
    /// Its tier.
    pub tier: String,
    /// `scheduled`, `active`, `ended` or `cancelled`.
    pub state: String,
    /// What it was created with.
    pub base: Shards,
    /// What it holds now, its modifications applied (0 unless active).
    pub now: Shards,
    /// When it holds shards.
    pub window: WindowView,
    /// Its idle shards on offer to others.
    pub offered: Shards,
    /// Its modifications, oldest first.
    pub modifications: Vec<u64>,
    /// On the answer to its creation only: why it starts later than asked (it did not fit
    /// now only because the provider lent shards out, which are being taken back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
}

/// One page of reservations.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReservationPage {
    /// The reservations, by id.
    pub items: Vec<ReservationView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<u64>,
}

/// Filters and pagination of `GET /v1/reservations`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReservationFilter {
    /// Only on this host (name or id).
    pub host: Option<String>,
    /// Only in this state: `scheduled`, `active`, `ended`, `cancelled`.
    pub state: Option<String>,
    /// Only of this tier.
    pub tier: Option<String>,
    /// Only ids above this one.
    pub after: Option<u64>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<u32>,
}

/// `POST /v1/reservations/{id}/modifications`: "+10% cpu for the next hour".
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModification {
    /// Per kind: `"+10%"`, `"-25%"`, `"+4"`, `"-2"` or `"=8"` shards, or a physical amount
    /// with its unit, rounded to whole shards (up for `=` and `+`, down for `-`): cpu
    /// `"+500m"` or `"=2cores"`, memory `"+1GiB"`, net `"=100Mbit"`, iops `"+200iops"`.
    #[schema(example = json!({"cpu": "+10%"}))]
    pub changes: BTreeMap<String, String>,
    /// How long it lasts, e.g. `"1h"`.
    #[serde(rename = "for")]
    pub duration: String,
    /// When it starts: `"now"` (the default), an RFC 3339 time or `"+10m"`.
    #[serde(default)]
    pub start: Option<String>,
    /// `immediate` (the default when it starts now) or `scheduled` (it must start later).
    #[serde(default)]
    pub delivery: Option<String>,
}

/// A modification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModificationView {
    /// Its id.
    pub id: u64,
    /// The reservation it changes.
    pub reservation: u64,
    /// Per kind, the change.
    pub changes: BTreeMap<String, String>,
    /// When it is in force.
    pub window: WindowView,
    /// `pending` (waiting for room on its host), `scheduled`, `in_force`, `ended` or
    /// `cancelled`.
    pub state: String,
    /// When a pending modification gives up if no room has been freed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gives_up_at: Option<String>,
}

/// What it would cost.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Quote {
    /// The extra cost over the modification's window at today's prices (a decimal string).
    pub cost: String,
    /// Priced from (RFC 3339).
    pub from: String,
    /// Priced until (RFC 3339).
    pub until: String,
}

/// The answer to a modification: what happened, in the way an in-place resize answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModificationOutcome {
    /// `applied` (the reservation holds the new shards now), `scheduled` (it will at its
    /// start), `deferred` (it did not fit now only because the provider lent shards out: those
    /// leases are being taken back with the reclaim notice and it starts then, for the
    /// duration asked; see `reason`), `pending` (the host has no room even then, but would
    /// have if other workloads moved off it: it waits, holding nothing and costing nothing,
    /// while the engine's shard request frees room; it starts as soon as there is, or gives
    /// up at its `gives_up_at`; see `shard_requests`); refusals are problem documents with
    /// `outcome: infeasible`.
    pub outcome: String,
    /// Why it is deferred or pending, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where to follow the shard request working on a pending modification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_requests: Option<String>,
    /// True when nothing was committed.
    pub dry_run: bool,
    /// The modification (on a dry run, what it would be; its id is not kept).
    pub modification: Option<ModificationView>,
    /// The reservation as it is (or would be) afterwards.
    pub reservation: ReservationView,
    /// Its price.
    pub quote: Quote,
}

/// `?dry_run=true` and friends.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    /// Answer with the outcome and the quote, commit nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `GET /v1/invoice`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InvoiceQuery {
    /// How far back from now, e.g. `"30d"`; everything when absent.
    pub period: Option<String>,
    /// Whose (admin only; a tenant's token says whose).
    pub tenant: Option<String>,
}

/// One line of an invoice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvoiceLine {
    /// What it is for, e.g. `reservation 3 cpu (standard)`.
    pub what: String,
    /// Shard-hours (a decimal string).
    pub shard_hours: String,
    /// Per shard-hour; negative for a credit (a decimal string).
    pub unit_price: String,
    /// Amount; negative for a credit (a decimal string).
    pub amount: String,
}

/// A tenant's bill for a period.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvoiceView {
    /// Whose.
    pub tenant: u64,
    /// From (RFC 3339).
    pub from: String,
    /// To (RFC 3339).
    pub to: String,
    /// The lines, charges then credits.
    pub lines: Vec<InvoiceLine>,
    /// The total (a decimal string).
    pub total: String,
}

/// One kind of a workload, now (physical units: millicores, bytes, bits/s, IOPS).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct KindNow {
    /// The last usage sampled.
    pub usage: Option<u64>,
    /// True when that sample was taken at the limit (a lower bound of demand, not demand).
    pub censored: bool,
    /// What it may use at once: its reservation not lent out, plus its leases.
    pub entitlement: Option<u64>,
    /// The hard limit read back in force (`null` inside: unlimited; absent: not read yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_in_force: Option<Option<u64>>,
    /// Why this kind is degraded, if it is.
    pub degraded: Option<String>,
}

/// A workload: where it runs and what it uses, is entitled to and has in force.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkloadView {
    /// Its id.
    pub id: u64,
    /// Its name (e.g. its cgroup path).
    pub name: String,
    /// Owner.
    pub tenant: u64,
    /// The reservation it runs inside.
    pub reservation: u64,
    /// Its share of the reservation, and its leases, in shards.
    pub allocation: Shards,
    /// Per kind, now.
    pub kinds: std::collections::BTreeMap<String, KindNow>,
    /// OOM kills seen since the daemon started.
    pub oom_kills: u64,
    /// Whether the sampler finds it.
    pub resolved: bool,
}

/// Demand quantiles at one step (physical units and shards, rounded up).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuantileView {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// The same in shards.
    pub shards: [u64; 4],
}

/// One step of a forecast.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ForecastStep {
    /// The step's end (RFC 3339).
    pub at: String,
    /// Per kind.
    pub kinds: std::collections::BTreeMap<String, QuantileView>,
}

/// A workload's Resource Demand Vector: per step and kind, calibrated quantiles.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ForecastView {
    /// The workload.
    pub workload: u64,
    /// When it was made (RFC 3339).
    pub made_at: String,
    /// The length of a step, e.g. `"10s"`.
    pub step: String,
    /// The steps, soonest first.
    pub steps: Vec<ForecastStep>,
}

/// Prices per shard-hour, per kind (decimal strings).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PricesView {
    /// Per cpu shard-hour.
    pub cpu: String,
    /// Per memory shard-hour.
    pub memory: String,
    /// Per net shard-hour.
    pub net: String,
    /// Per iops shard-hour.
    pub iops: String,
}

/// A lease: shards a workload borrows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeaseView {
    /// Its id.
    pub id: u64,
    /// The borrowing workload.
    pub workload: u64,
    /// Who lends: `reservation N` or `provider`.
    pub lender: String,
    /// The shards.
    pub shards: Shards,
    /// The agreed price per shard-hour.
    pub price: PricesView,
    /// When it holds (RFC 3339).
    pub window: WindowView,
    /// True once its lender takes it back (it ends at the window's end).
    pub reclaiming: bool,
}

/// A host's shard market now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MarketView {
    /// The host's name.
    pub host: String,
    /// The pool's price per shard-hour (absent before the first repricing).
    pub price: Option<PricesView>,
    /// On offer: reservations' idle shards offered plus the provider's unreserved ones.
    pub offered: Shards,
    /// Leased out now.
    pub leased: Shards,
    /// Asked for and not yet served.
    pub waiting: Shards,
    /// The caller's leases on this host: what its workloads borrow (the admin's: all).
    pub borrowed: Vec<LeaseView>,
    /// What the caller's reservations lend out on this host (the admin's: all).
    pub lent: Vec<LeaseView>,
}

/// One step taken for a shard request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepView {
    /// `reclaim` (from leases its reservation lent), `preempt` (lower-tier leases, with
    /// notice), `grow` (its reservation, from the host's free capacity) or `host_short`
    /// (workloads move away; a host may be provisioned).
    pub step: String,
    /// The shards concerned.
    pub shards: Shards,
}

/// What the engine raised when the market could not cover a workload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShardRequestView {
    /// Its id.
    pub id: u64,
    /// For which workload (absent for a pending modification's request).
    pub workload: Option<u64>,
    /// For which pending modification (its request: the host misses room for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modification: Option<u64>,
    /// On which host (name).
    pub host: String,
    /// What the market could not cover.
    pub wanted: Shards,
    /// When it was raised (RFC 3339).
    pub raised: String,
    /// `pending`, `fulfilled`, `partially_fulfilled` or `failed`.
    pub status: String,
    /// Why it was only partly fulfilled or failed.
    pub reason: Option<String>,
    /// What was done, in order.
    pub steps: Vec<StepView>,
}

/// `GET /v1/shard-requests` filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ShardRequestFilter {
    /// Only for this workload.
    pub workload: Option<u64>,
    /// Only for this pending modification.
    pub modification: Option<u64>,
    /// Only in this status.
    pub status: Option<String>,
}

/// `GET /v1/events` filters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// Only these kinds, comma-separated: modification, reservation, lease, request, market,
    /// decision, oom, shard_request, ledger.
    pub kinds: Option<String>,
    /// Resume after this event id (the `Last-Event-ID` header does the same).
    pub after: Option<u64>,
}

/// One server-sent event's `data`: `id:` and `event:` carry the id and the kind.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamEventView {
    /// Its id, in order.
    pub id: u64,
    /// Its kind.
    pub kind: String,
    /// What happened: a ledger event (with its log `seq`), a decision, an OOM kill, a shard
    /// request's status.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// `GET /v1/events` without `Accept: text/event-stream`: the kept events after `after`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventPage {
    /// The events the caller may see, oldest first (at most 1,000 looked at per page).
    pub events: Vec<StreamEventView>,
    /// Events after `after` that are no longer kept (0 when none were lost).
    pub missed: u64,
    /// What to pass as `after` for the next page.
    pub next_after: u64,
}

/// `GET /v1/hosts/{host}/market/history`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// How far back from now, e.g. `"24h"` (default `"7d"`).
    pub period: Option<String>,
    /// At most this many points, newest first (1 to 1,000; default 100).
    pub limit: Option<u32>,
}

/// One price the market set.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PricePointView {
    /// When (RFC 3339).
    pub at: String,
    /// Per shard-hour and kind.
    pub price: PricesView,
}

/// A host's price history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PriceHistoryView {
    /// The host's name.
    pub host: String,
    /// Newest first.
    pub points: Vec<PricePointView>,
}
