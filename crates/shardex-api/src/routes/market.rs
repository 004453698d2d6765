//! A host's shard market: its price, what is offered, leased and waiting, and the caller's own
//! leases there (borrowed and lent). Anyone with a token may see a host's pool; the leases are
//! the caller's only.

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shardex_core::{Lease, Ledger, Lender, PriceVector, ResourceKind};

use super::{answer, path, query};
use crate::auth::Principal;
use crate::convert;
use crate::moment::{duration, rfc3339};
use crate::wire::{
    HistoryQuery, LeaseView, MarketView, PriceHistoryView, PricePointView, PricesView,
};
use crate::{Api, Backend, Problem};

pub(crate) fn prices(p: &PriceVector) -> PricesView {
    PricesView {
        cpu: p.get(ResourceKind::Cpu).to_string(),
        memory: p.get(ResourceKind::Memory).to_string(),
        net: p.get(ResourceKind::Net).to_string(),
        iops: p.get(ResourceKind::Iops).to_string(),
    }
}

fn lease(l: &Lease) -> LeaseView {
    LeaseView {
        id: l.id.0,
        workload: l.borrower.0,
        lender: match l.lender {
            Lender::Reservation(r) => r.to_string(),
            Lender::Provider(_) => "provider".into(),
        },
        shards: l.vector.into(),
        price: prices(&l.price),
        window: convert::window(&l.window),
        reclaiming: l.reclaim.is_some(),
    }
}

fn market(l: &Ledger, p: Principal, host: &str) -> Result<MarketView, Problem> {
    let id = convert::host(l, host)?;
    let pool = shardex_core::market::pool_of(l, id);
    let borrower_of = |lease: &Lease| l.workload(lease.borrower).map(|w| w.tenant);
    let lender_of = |lease: &Lease| match lease.lender {
        Lender::Reservation(r) => l.reservation(r).map(|r| r.tenant),
        Lender::Provider(_) => None,
    };
    let here: Vec<&Lease> = l.leases().filter(|x| x.host == id).collect();
    Ok(MarketView {
        host: l.host(id).map(|h| h.name.clone()).unwrap_or_default(),
        price: l.market_price(id).as_ref().map(prices),
        offered: pool.offered.into(),
        leased: pool.leased.into(),
        waiting: pool.waiting.into(),
        borrowed: here
            .iter()
            .filter(|x| borrower_of(x).is_some_and(|t| p.sees(t)))
            .map(|x| lease(x))
            .collect(),
        lent: here
            .iter()
            .filter(|x| match lender_of(x) {
                Some(t) => p.sees(t),
                None => p.tenant().is_none(),
            })
            .map(|x| lease(x))
            .collect(),
    })
}

/// `GET /v1/hosts/{host}/market`: the pool's price and size, and the caller's leases there.
#[utoipa::path(get, path = "/v1/hosts/{host}/market", tag = "market",
    params(("host" = String, Path, description = "name or id")),
    responses((status = 200, body = MarketView), (status = 404, body = Problem)))]
pub async fn get<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    host: Result<Path<String>, PathRejection>,
) -> Response {
    let run = async {
        let host = path(host)?;
        api.backend.read(|l, _| market(l, p, &host)).await
    };
    match run.await {
        Ok(m) => answer(StatusCode::OK, &m),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/hosts/{host}/market/history[?period=&limit=]`: the prices the market set there,
/// newest first (from the log, so a restart keeps them).
#[utoipa::path(get, path = "/v1/hosts/{host}/market/history", tag = "market",
    params(("host" = String, Path, description = "name or id"), HistoryQuery),
    responses((status = 200, body = PriceHistoryView), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn history<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    host: Result<Path<String>, PathRejection>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let host = path(host)?;
        let q = query(q)?;
        let period = duration("period", q.period.as_deref().unwrap_or("7d"))
            .map_err(Problem::bad_request)?;
        let limit = q.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(Problem::bad_request(format!(
                "limit: {limit} is not between 1 and 1000"
            )));
        }
        let (id, name, now) = api
            .backend
            .read(|l, now| {
                let id = convert::host(l, &host)?;
                let name = l.host(id).map(|h| h.name.clone()).unwrap_or_default();
                Ok::<_, Problem>((id, name, now))
            })
            .await?;
        let since = shardex_core::Timestamp::from_millis(
            now.millis()
                .saturating_sub(i64::try_from(period.millis()).unwrap_or(i64::MAX)),
        )
        .unwrap_or(shardex_core::Timestamp::EPOCH);
        let points = api.backend.price_history(id, since, limit).await?;
        Ok(PriceHistoryView {
            host: name,
            points: points
                .iter()
                .map(|(at, p)| PricePointView {
                    at: rfc3339(*at),
                    price: prices(p),
                })
                .collect(),
        })
    };
    match run.await {
        Ok(h) => answer(StatusCode::OK, &h),
        Err(e) => e.into_response(),
    }
}
