//! A workload's past: its timeline (usage, forecast band, entitlement and limit in force, with
//! throttled samples and OOM kills) and the engine's decisions about it. A tenant sees its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shardex_core::{ResourceKind, Timestamp, WorkloadId};

use super::workloads::visible_workload;
use super::{answer, path, query};
use crate::auth::Principal;
use crate::moment::{duration, rfc3339};
use crate::wire::{
    DecisionView, DecisionsQuery, DecisionsView, SeriesView, TimelineQuery, TimelineView,
};
use crate::{Api, Backend, Problem, Timeline};

/// Each kind's unit in a timeline.
const UNITS: [&str; 4] = ["millicores", "bytes", "bits/s", "IO/s"];

fn seconds(t: Timestamp) -> f64 {
    // Milliseconds since 1970 fit an f64 exactly for the next 280,000 years.
    #[allow(clippy::cast_precision_loss)]
    let ms = t.millis() as f64;
    ms / 1000.0
}

/// The wire form of a timeline: kinds that never had a number are left out.
pub fn view(workload: u64, t: Timeline) -> TimelineView {
    let mut kinds = BTreeMap::new();
    for (k, s) in ResourceKind::ALL.iter().zip(t.kinds) {
        let any = [&s.usage, &s.p50, &s.p95, &s.entitlement, &s.limit]
            .iter()
            .any(|v| v.iter().any(Option::is_some));
        if any {
            kinds.insert(
                k.name().to_string(),
                SeriesView {
                    usage: s.usage,
                    p50: s.p50,
                    p95: s.p95,
                    entitlement: s.entitlement,
                    limit: s.limit,
                    censored: s.censored,
                },
            );
        }
    }
    TimelineView {
        workload,
        units: ResourceKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), UNITS[k.index()].to_string()))
            .collect(),
        t: t.at.into_iter().map(seconds).collect(),
        kinds,
        ooms: t.ooms.into_iter().map(seconds).collect(),
    }
}

/// `GET /v1/workloads/{id}/history[?period=]`: what it used, its forecast band, entitlement
/// and limit in force, oldest first; empty series when nothing was kept yet.
#[utoipa::path(get, path = "/v1/workloads/{id}/history", tag = "workloads",
    params(("id" = u64, Path), TimelineQuery),
    responses((status = 200, body = TimelineView), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn history<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<u64>, PathRejection>,
    q: Result<Query<TimelineQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let id = path(id)?;
        let q = query(q)?;
        let period = duration("period", q.period.as_deref().unwrap_or("1h"))
            .map_err(Problem::bad_request)?;
        let now = api
            .backend
            .read(|l, now| visible_workload(l, p, id).map(|_| now))
            .await?;
        let since = Timestamp::from_millis(
            now.millis()
                .saturating_sub(i64::try_from(period.millis()).unwrap_or(i64::MAX)),
        )
        .unwrap_or(Timestamp::EPOCH);
        let t = api
            .backend
            .timeline(WorkloadId(id), since)
            .await
            .unwrap_or_default();
        Ok::<_, Problem>(view(id, t))
    };
    match run.await {
        Ok(v) => answer(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

/// A stored decision in its wire form (fields the control loop did not record are empty).
fn decision(d: crate::DecisionRecord) -> DecisionView {
    let text = |k: &str| {
        d.decision
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let count = |k: &str| d.decision.get(k).and_then(serde_json::Value::as_u64);
    DecisionView {
        at: rfc3339(d.at),
        kind: text("kind"),
        from: count("from").unwrap_or(0),
        to: count("to").unwrap_or(0),
        why: text("why"),
        outcome: text("outcome"),
        mode: d.mode,
    }
}

/// `GET /v1/workloads/{id}/decisions[?limit=]`: the engine's decisions about it, newest first.
#[utoipa::path(get, path = "/v1/workloads/{id}/decisions", tag = "workloads",
    params(("id" = u64, Path), DecisionsQuery),
    responses((status = 200, body = DecisionsView), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn decisions<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<u64>, PathRejection>,
    q: Result<Query<DecisionsQuery>, QueryRejection>,
) -> Response {
    let run = async {
        let id = path(id)?;
        let limit = query(q)?.limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return Err(Problem::bad_request(format!(
                "limit: {limit} is not between 1 and 1000"
            )));
        }
        api.backend
            .read(|l, _| visible_workload(l, p, id).map(|_| ()))
            .await?;
        let found = api.backend.decisions(WorkloadId(id), limit).await?;
        Ok(DecisionsView {
            workload: id,
            decisions: found.into_iter().map(decision).collect(),
        })
    };
    match run.await {
        Ok(v) => answer(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}
