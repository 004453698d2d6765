//! `GET /v1/overview`: every host's capacity split per kind and its market, and the shard
//! requests by state: what the dashboard's first page shows. It holds nothing of any tenant's,
//! so it answers without a token unless the operator turned that off (`api.public_overview`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use shardex_core::{Ledger, ResourceKind, Timestamp};

use super::market::prices;
use super::requests::{STATUSES, status};
use super::{answer, caller};
use crate::moment::rfc3339;
use crate::wire::{HostOverview, MarketSummary, OverviewView, RequestCounts, SplitView};
use crate::{Api, Backend, Problem};

/// Every host now, as the ledger at `now` has it.
pub fn hosts(l: &Ledger) -> Result<Vec<HostOverview>, Problem> {
    let mut running: BTreeMap<shardex_core::HostId, u64> = BTreeMap::new();
    for w in l.workloads() {
        if let Some(r) = l.reservation(w.reservation) {
            *running.entry(r.host).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for h in l.hosts() {
        let b = l.balance(h.id).map_err(|e| Problem::ledger(&e))?;
        let s = b.split();
        let split = ResourceKind::ALL
            .iter()
            .map(|&k| {
                (
                    k.name().to_string(),
                    SplitView {
                        allocated: s.allocated.get(k),
                        lent: s.lent.get(k),
                        idle: s.idle.get(k),
                        offered: s.offered.get(k),
                        free: s.free.get(k),
                        reserved: b.reserved.get(k),
                        unreserved: b.unreserved.get(k),
                    },
                )
            })
            .collect();
        let pool = shardex_core::market::pool_of(l, h.id);
        out.push(HostOverview {
            id: h.id.0,
            name: h.name.clone(),
            capacity: h.capacity.into(),
            split,
            market: MarketSummary {
                price: l.market_price(h.id).as_ref().map(prices),
                offered: pool.offered.into(),
                leased: pool.leased.into(),
                waiting: pool.waiting.into(),
            },
            workloads: running.get(&h.id).copied().unwrap_or(0),
        });
    }
    Ok(out)
}

/// The engine's shard requests counted by state.
pub fn counts(requests: &[shardex_core::engine::ShardRequest]) -> RequestCounts {
    let mut by_state: BTreeMap<String, u64> = STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
    for r in requests {
        *by_state.entry(status(&r.status).0.to_string()).or_default() += 1;
    }
    RequestCounts {
        open: by_state.get("pending").copied().unwrap_or(0),
        total: requests.len() as u64,
        by_state,
    }
}

/// `GET /v1/overview`: hosts' capacity split and markets, shard requests by state.
#[utoipa::path(get, path = "/v1/overview", tag = "hosts",
    responses((status = 200, body = OverviewView), (status = 401, body = Problem)),
    security((), ("bearer" = [])))]
pub async fn get<B: Backend>(State(api): State<Arc<Api<B>>>, headers: HeaderMap) -> Response {
    let run = async {
        // A token, if one is sent, must be good: a wrong one is not taken for none.
        if !api.backend.public_overview() || headers.contains_key(axum::http::header::AUTHORIZATION)
        {
            caller(&api.backend, &headers).await?;
        }
        let requests = api.backend.shard_requests().await;
        let (hosts, at) = api
            .backend
            .read(|l, now: Timestamp| Ok::<_, Problem>((hosts(l)?, now)))
            .await?;
        Ok::<_, Problem>(OverviewView {
            at: rfc3339(at),
            hosts,
            shard_requests: counts(&requests),
        })
    };
    match run.await {
        Ok(o) => answer(StatusCode::OK, &o),
        Err(e) => e.into_response(),
    }
}
