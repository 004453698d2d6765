//! Shard requests: what the engine raised when the market could not cover a workload, the
//! steps it took (reclaim, preempt, grow, move) and where each stands. A tenant sees those of
//! its own workloads.

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shardex_core::Ledger;
use shardex_core::engine::{RequestStatus, ShardRequest, Step};

use super::{answer, query};
use crate::auth::Principal;
use crate::moment::rfc3339;
use crate::wire::{ShardRequestFilter, ShardRequestView, StepView};
use crate::{Api, Backend, Problem};

pub(crate) const STATUSES: [&str; 4] = ["pending", "fulfilled", "partially_fulfilled", "failed"];

/// A request's state's name (one of [`STATUSES`]) and why, where it has a reason.
pub(crate) fn status(s: &RequestStatus) -> (&'static str, Option<String>) {
    match s {
        RequestStatus::Pending => ("pending", None),
        RequestStatus::Fulfilled => ("fulfilled", None),
        RequestStatus::PartiallyFulfilled(why) => ("partially_fulfilled", Some(why.clone())),
        RequestStatus::Failed(why) => ("failed", Some(why.clone())),
    }
}

fn view(l: &Ledger, r: &ShardRequest) -> ShardRequestView {
    let (status, reason) = status(&r.status);
    ShardRequestView {
        id: r.id,
        workload: r.workload.map(|w| w.0),
        modification: r.modification.map(|m| m.0),
        host: l
            .host(r.host)
            .map_or_else(|| r.host.to_string(), |h| h.name.clone()),
        wanted: r.wanted.into(),
        raised: rfc3339(r.raised),
        status: status.into(),
        reason,
        steps: r
            .steps
            .iter()
            .map(|s| {
                let (step, shards) = match s {
                    Step::Reclaim { shards } => ("reclaim", shards),
                    Step::Preempt { shards } => ("preempt", shards),
                    Step::Grow { shards } => ("grow", shards),
                    Step::HostShort { shards } => ("host_short", shards),
                };
                StepView {
                    step: step.into(),
                    shards: (*shards).into(),
                }
            })
            .collect(),
    }
}

/// `GET /v1/shard-requests[?workload=&modification=&status=]`: newest first, at most 1,000.
#[utoipa::path(get, path = "/v1/shard-requests", tag = "shard requests", params(ShardRequestFilter),
    responses((status = 200, description = "`{\"shard_requests\": [ShardRequestView]}`"), (status = 400, body = Problem)))]
pub async fn list<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    q: Result<Query<ShardRequestFilter>, QueryRejection>,
) -> Response {
    let run = async {
        let f = query(q)?;
        if let Some(s) = &f.status
            && !STATUSES.contains(&s.as_str())
        {
            return Err(Problem::bad_request(format!(
                "status: {s:?} is not pending, fulfilled, partially_fulfilled or failed"
            )));
        }
        let all = api.backend.shard_requests().await;
        Ok(api
            .backend
            .read(|l, _| {
                all.iter()
                    // A workload or modification that is gone shows to the admin only.
                    .filter(|r| match r.tenant(l) {
                        Some(t) => p.sees(t),
                        None => p.tenant().is_none(),
                    })
                    .filter(|r| {
                        f.workload
                            .is_none_or(|w| r.workload.is_some_and(|x| x.0 == w))
                    })
                    .filter(|r| {
                        f.modification
                            .is_none_or(|m| r.modification.is_some_and(|x| x.0 == m))
                    })
                    .map(|r| view(l, r))
                    .filter(|v| f.status.as_deref().is_none_or(|s| v.status == s))
                    .collect::<Vec<_>>()
            })
            .await)
    };
    match run.await {
        Ok(r) => answer(StatusCode::OK, &json!({ "shard_requests": r })),
        Err(e) => e.into_response(),
    }
}
