//! A host's shard market: its price, what is offered, leased and waiting, and the caller's own
//! leases there (borrowed and lent). Anyone with a token may see a host's pool; the leases are
//! the caller's only.

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shardex_core::{Lease, Ledger, Lender, PriceVector, ResourceKind};

use super::{answer, path};
use crate::auth::Principal;
use crate::convert;
use crate::wire::{LeaseView, MarketView, PricesView};
use crate::{Api, Backend, Problem};

fn prices(p: &PriceVector) -> PricesView {
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
