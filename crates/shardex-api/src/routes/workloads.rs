//! Workloads: what each uses, is entitled to and has in force, and its forecast (its RDV).
//! A tenant sees its own; the admin all.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shardex_core::{Ledger, ResourceKind, ShardSizes, Span, Workload, WorkloadId};

use super::reservations::visible;
use super::{answer, path};
use crate::auth::Principal;
use crate::moment::rfc3339;
use crate::wire::{ForecastStep, ForecastView, KindNow, QuantileView, WorkloadList, WorkloadView};
use crate::{Api, Backend, Problem, WorkloadState};

fn view(l: &Ledger, w: &Workload, s: Option<&WorkloadState>, sizes: &ShardSizes) -> WorkloadView {
    let owed = shardex_core::entitlement::entitlement(l, w.id)
        .ok()
        .and_then(|v| sizes.physical_vector(v).ok());
    let kinds = ResourceKind::ALL
        .iter()
        .map(|&k| {
            let i = k.index();
            (
                k.name().to_string(),
                KindNow {
                    usage: s.and_then(|s| s.usage[i]),
                    censored: s.is_some_and(|s| s.censored[i]),
                    entitlement: owed.map(|p| p.get(k)),
                    limit_in_force: s.and_then(|s| s.in_force[i]),
                    degraded: s.and_then(|s| s.degraded[i].clone()),
                },
            )
        })
        .collect();
    WorkloadView {
        id: w.id.0,
        name: w.name.clone(),
        tenant: w.tenant.0,
        reservation: w.reservation.0,
        allocation: l.allocation(w.id).unwrap_or_default().into(),
        kinds,
        oom_kills: s.map_or(0, |s| s.oom_kills),
        resolved: s.is_none_or(|s| s.resolved),
    }
}

pub(crate) fn visible_workload(l: &Ledger, p: Principal, id: u64) -> Result<&Workload, Problem> {
    l.workload(WorkloadId(id))
        .filter(|w| p.sees(w.tenant))
        .ok_or_else(|| Problem::not_found(WorkloadId(id)))
}

/// `GET /v1/workloads`: the caller's workloads (the admin's: all), by id.
#[utoipa::path(get, path = "/v1/workloads", tag = "workloads",
    responses((status = 200, body = WorkloadList), (status = 401, body = Problem)))]
pub async fn list<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
) -> Response {
    let states = api.backend.workloads().await;
    let by_id: BTreeMap<WorkloadId, &WorkloadState> = states.iter().map(|s| (s.id, s)).collect();
    let sizes = api.backend.sizes();
    let workloads = api
        .backend
        .read(|l, _| {
            l.workloads()
                .filter(|w| p.sees(w.tenant))
                .map(|w| view(l, w, by_id.get(&w.id).copied(), &sizes))
                .collect::<Vec<_>>()
        })
        .await;
    answer(StatusCode::OK, &WorkloadList { workloads })
}

/// `GET /v1/reservations/{id}/workloads`: the workloads running inside a reservation.
#[utoipa::path(get, path = "/v1/reservations/{id}/workloads", tag = "workloads",
    params(("id" = u64, Path)),
    responses((status = 200, description = "`{\"workloads\": [WorkloadView]}`"), (status = 404, body = Problem)))]
pub async fn of_reservation<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<u64>, PathRejection>,
) -> Response {
    let run = async {
        let id = path(id)?;
        let states = api.backend.workloads().await;
        let sizes = api.backend.sizes();
        api.backend
            .read(|l, _| {
                let r = visible(l, p, id)?;
                Ok::<_, Problem>(
                    l.workloads_of(r.id)
                        .map(|w| view(l, w, states.iter().find(|s| s.id == w.id), &sizes))
                        .collect::<Vec<_>>(),
                )
            })
            .await
    };
    match run.await {
        Ok(w) => answer(StatusCode::OK, &json!({ "workloads": w })),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/workloads/{id}`: usage, entitlement and limits in force per kind.
#[utoipa::path(get, path = "/v1/workloads/{id}", tag = "workloads",
    params(("id" = u64, Path)),
    responses((status = 200, body = WorkloadView), (status = 404, body = Problem)))]
pub async fn get<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<u64>, PathRejection>,
) -> Response {
    let run = async {
        let id = path(id)?;
        let states = api.backend.workloads().await;
        let sizes = api.backend.sizes();
        api.backend
            .read(|l, _| {
                let w = visible_workload(l, p, id)?;
                Ok::<_, Problem>(view(l, w, states.iter().find(|s| s.id == w.id), &sizes))
            })
            .await
    };
    match run.await {
        Ok(w) => answer(StatusCode::OK, &w),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/workloads/{id}/forecast`: its RDV, per step and kind, quantiles in physical
/// units and shards; 404 `no-forecast` until the profiler has enough history.
#[utoipa::path(get, path = "/v1/workloads/{id}/forecast", tag = "workloads",
    params(("id" = u64, Path)),
    responses((status = 200, body = ForecastView), (status = 404, body = Problem)))]
pub async fn forecast<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<u64>, PathRejection>,
) -> Response {
    let run = async {
        let id = path(id)?;
        api.backend
            .read(|l, _| visible_workload(l, p, id).map(|_| ()))
            .await?;
        let states = api.backend.workloads().await;
        let sizes = api.backend.sizes();
        let rdv = states
            .into_iter()
            .find(|s| s.id == WorkloadId(id))
            .and_then(|s| s.rdv)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "no-forecast",
                    format!("workload {id} has no forecast yet (the profiler needs a few samples)"),
                )
            })?;
        let n = rdv.kinds.iter().map(|k| k.steps.len()).max().unwrap_or(0);
        let steps = (0..n)
            .map(|i| {
                let ahead =
                    Span::from_millis(rdv.horizon.step.millis().saturating_mul(i as u64 + 1));
                let at = rdv.made_at.checked_add(ahead).unwrap_or(rdv.made_at);
                let kinds: BTreeMap<String, QuantileView> = rdv
                    .kinds
                    .iter()
                    .filter_map(|f| {
                        let q = f.steps.get(i)?;
                        let sh = |v| sizes.demand_shards(f.kind, v);
                        Some((
                            f.kind.name().to_string(),
                            QuantileView {
                                p50: q.p50,
                                p90: q.p90,
                                p95: q.p95,
                                p99: q.p99,
                                shards: [sh(q.p50), sh(q.p90), sh(q.p95), sh(q.p99)],
                            },
                        ))
                    })
                    .collect();
                ForecastStep {
                    at: rfc3339(at),
                    kinds,
                }
            })
            .collect();
        Ok::<_, Problem>(ForecastView {
            workload: id,
            made_at: rfc3339(rdv.made_at),
            step: rdv.horizon.step.to_string(),
            steps,
        })
    };
    match run.await {
        Ok(f) => answer(StatusCode::OK, &f),
        Err(e) => e.into_response(),
    }
}
