//! A tenant's bill for a period, from the metered charges.

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shardex_core::Timestamp;

use super::tenants::tenant_of;
use super::{answer, query};
use crate::auth::Principal;
use crate::moment::{self, rfc3339};
use crate::wire::{InvoiceLine, InvoiceQuery, InvoiceView};
use crate::{Api, Backend, Problem};

/// `GET /v1/invoice[?period=30d]`: the caller's invoice (the admin names `tenant`).
#[utoipa::path(get, path = "/v1/invoice", tag = "billing", params(InvoiceQuery),
    responses((status = 200, body = InvoiceView), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn get<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    q: Result<Query<InvoiceQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let q = query(q)?;
        let (tenant, to) = api
            .backend
            .read(|l, _| {
                let tenant = match (p, q.tenant.as_deref()) {
                    (Principal::Tenant(t), None) => t,
                    (_, Some(name)) => tenant_of(l, p, name)?,
                    (Principal::Admin, None) => {
                        return Err(Problem::bad_request(
                            "tenant: the admin names whose invoice",
                        ));
                    }
                };
                Ok((tenant, l.now()))
            })
            .await?;
        let from = match q.period.as_deref() {
            None => Timestamp::EPOCH,
            Some(text) => {
                let span = moment::duration("period", text).map_err(Problem::bad_request)?;
                let back = i64::try_from(span.millis()).unwrap_or(i64::MAX);
                Timestamp::from_millis(to.millis().saturating_sub(back).max(0))
                    .unwrap_or(Timestamp::EPOCH)
            }
        };
        let charges = api.backend.charges(tenant, from, to).await?;
        let inv =
            shardex_core::billing::invoice(tenant, from, to, &charges, api.backend.lender_share());
        Ok::<_, Problem>(InvoiceView {
            tenant: tenant.0,
            from: rfc3339(inv.from),
            to: rfc3339(inv.to),
            lines: inv
                .lines
                .iter()
                .map(|l| InvoiceLine {
                    what: l.what.clone(),
                    shard_hours: l.shard_hours.to_string(),
                    unit_price: l.unit_price.to_string(),
                    amount: l.amount.to_string(),
                })
                .collect(),
            total: inv.total.to_string(),
        })
    };
    match run.await {
        Ok(i) => answer(StatusCode::OK, &i),
        Err(e) => e.into_response(),
    }
}
