//! A reservation's modifications: "+10% cpu for the next hour" as one call, with a dry run
//! that quotes it and commits nothing.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shardex_core::action::ModifyReservation;
use shardex_core::billing::{quote_action_at, quote_applied, quote_pending};
use shardex_core::deferral::defer_modification;
use shardex_core::{Action, Event, LedgerError, ModificationId};

use super::reservations::{deferral_reason, infeasible, visible};
use super::{Keep, acting_tenant, answer, body, once, path, query};
use crate::auth::Principal;
use crate::convert::{self, Modify, Scoped};
use crate::idempotency::fingerprint;
use crate::moment::rfc3339;
use crate::wire::{DryRun, ModificationOutcome, ModificationView, NewModification, Quote};
use crate::{Api, Backend, Planned, Problem};

/// `GET /v1/reservations/{id}/modifications`: oldest first.
#[utoipa::path(get, path = "/v1/reservations/{id}/modifications", tag = "modifications",
    params(("id" = u64, Path)),
    responses((status = 200, description = "`{\"modifications\": [ModificationView]}`"), (status = 404, body = Problem)))]
pub async fn list<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<u64>, PathRejection>,
) -> Response {
    let run = async {
        let id = path(id)?;
        api.backend
            .read(|l, now| {
                let r = visible(l, p, id)?;
                let mut all: Vec<ModificationView> = r
                    .modifications
                    .iter()
                    .filter_map(|m| l.modification(*m))
                    .map(|m| convert::modification(m, now))
                    .chain(
                        l.pending_modifications()
                            .filter(|w| w.reservation == r.id)
                            .map(|w| convert::pending_modification(l, w, now)),
                    )
                    .collect();
                // Oldest (by id, the order they were asked in) first.
                all.sort_by_key(|m| m.id);
                Ok::<_, Problem>(all)
            })
            .await
    };
    match run.await {
        Ok(m) => answer(StatusCode::OK, &json!({ "modifications": m })),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/reservations/{id}/modifications/{modification}`.
#[utoipa::path(get, path = "/v1/reservations/{id}/modifications/{modification}", tag = "modifications",
    params(("id" = u64, Path), ("modification" = u64, Path)),
    responses((status = 200, body = ModificationView), (status = 404, body = Problem)))]
pub async fn get<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    ids: Result<Path<(u64, u64)>, PathRejection>,
) -> Response {
    let run = async {
        let (id, mid) = path(ids)?;
        api.backend
            .read(|l, now| {
                visible(l, p, id)?;
                let mid = ModificationId(mid);
                l.modification(mid)
                    .filter(|m| m.reservation.0 == id)
                    .map(|m| convert::modification(m, now))
                    .or_else(|| {
                        l.pending_modification(mid)
                            .filter(|w| w.reservation.0 == id)
                            .map(|w| convert::pending_modification(l, w, now))
                    })
                    .ok_or_else(|| Problem::not_found(mid))
            })
            .await
    };
    match run.await {
        Ok(m) => answer(StatusCode::OK, &m),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/reservations/{id}/modifications[?dry_run=true]`: e.g.
/// `{"changes": {"cpu": "+10%"}, "for": "1h"}`.
#[utoipa::path(post, path = "/v1/reservations/{id}/modifications", tag = "modifications",
    request_body = NewModification,
    params(("id" = u64, Path), DryRun,
        ("Idempotency-Key" = Option<String>, Header, description = "makes a retry safe")),
    responses((status = 201, body = ModificationOutcome, description = "applied, scheduled, deferred or pending"),
        (status = 200, body = ModificationOutcome, description = "dry run: nothing committed"),
        (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "infeasible, with the reason"),
        (status = 422, body = Problem)))]
pub async fn create<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    uri: Uri,
    id: Result<Path<u64>, PathRejection>,
    q: Result<Query<DryRun>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let fp = fingerprint(
        "POST",
        uri.path(),
        uri.query().unwrap_or(""),
        raw.as_deref().unwrap_or_default(),
    );
    once(&api, p, &headers, fp, Keep::Durably, |claim| async {
        let run = async {
            let id = path(id)?;
            let dry_run = query(q)?.dry_run;
            let tenant = acting_tenant(p)?;
            let req: NewModification = body(raw, "a modification")?;
            let immediate = req.delivery.as_deref() == Some("immediate");
            let sizes = api.backend.sizes();
            let frees_room = api.backend.frees_room();
            let prices = api.backend.prices().clone();
            api.backend
                .write(
                    move |ledger, now| {
                        visible(ledger, p, id)?;
                        let target = Modify {
                            reservation: shardex_core::ReservationId(id),
                            body: &req,
                        };
                        let m = ModifyReservation::try_from(Scoped {
                            body: &target,
                            tenant,
                            now,
                            ledger,
                            sizes,
                        })?;
                        let start = m.start.unwrap_or(now);
                        let until = start
                            .checked_add(m.duration)
                            .map_err(Problem::bad_request)?;
                        let action = Action::ModifyReservation(m.clone());
                        // Priced on the ledger it applies to (what the tenant pays with it minus
                        // without), and that application is the one committed.
                        let (planned, cost, deferred) = match ledger.applied(&action, now) {
                            Ok((after, events)) => {
                                let cost = quote_applied(
                                    ledger, &after, &events, &prices, tenant, now, until,
                                )
                                .map_err(|e| unpriceable(&e))?;
                                let applied = Some((after, events));
                                (Planned { action, applied }, cost, None)
                            }
                            // Short only because the provider lent shards out: deferred until
                            // they come back, unless the tenant asked for immediate delivery.
                            Err(e @ LedgerError::HostCapacityExceeded { .. })
                                if m.start.is_none() && !immediate =>
                            {
                                if let Some(d) = defer_modification(ledger, &m, now) {
                                    let until = d
                                        .start
                                        .checked_add(m.duration)
                                        .map_err(Problem::bad_request)?;
                                    let cost = quote_action_at(
                                        ledger, &prices, &d.action, tenant, now, until,
                                    )
                                    .map_err(|e| unpriceable(&e))?;
                                    let reason = deferral_reason(&e, &d);
                                    (d.action.into(), cost, Some(Later::Deferred(reason)))
                                } else if !frees_room {
                                    // No migrator: nothing can free the room.
                                    return Err(Problem::ledger(&e));
                                } else {
                                    // Room only other workloads' moves can free: it waits.
                                    let action = Action::QueueModification(m.clone());
                                    let applied =
                                        ledger.applied(&action, now).map_err(|q| match q {
                                            LedgerError::HostCapacityExceeded { .. } => {
                                                Problem::ledger(&e)
                                            }
                                            other => Problem::ledger(&other),
                                        })?;
                                    let cost = quote_pending(ledger, &prices, &m, now, until)
                                        .map_err(|e| unpriceable(&e))?;
                                    let planned = Planned {
                                        action,
                                        applied: Some(applied),
                                    };
                                    (planned, cost, Some(Later::Pending(e.to_string())))
                                }
                            }
                            Err(e) => return Err(Problem::ledger(&e)),
                        };
                        let quote = Quote {
                            cost: cost.to_string(),
                            from: rfc3339(now),
                            until: rfc3339(until),
                        };
                        Ok((planned, (quote, deferred)))
                    },
                    move |after, events, (quote, later)| {
                        let now = after.now();
                        let m = events.iter().find_map(|e| match e {
                            Event::ModificationCreated { modification, .. } => {
                                after.modification(*modification)
                            }
                            _ => None,
                        });
                        let pending = events.iter().find_map(|e| match e {
                            Event::ModificationQueued { modification, .. } => {
                                after.pending_modification(*modification)
                            }
                            _ => None,
                        });
                        let r = visible(after, p, id)?;
                        let (outcome, reason, shard_requests, view) = match (later, pending) {
                            (Some(Later::Pending(refusal)), Some(w)) => (
                                "pending",
                                Some(pending_reason(after, &refusal, w)),
                                Some(format!("/v1/shard-requests?modification={}", w.id.0)),
                                Some(convert::pending_modification(after, w, now)),
                            ),
                            (Some(Later::Deferred(reason)), _) => (
                                "deferred",
                                Some(reason),
                                None,
                                m.map(|m| convert::modification(m, now)),
                            ),
                            _ => (
                                if m.is_some_and(|m| m.window.start() > now) {
                                    "scheduled"
                                } else {
                                    "applied"
                                },
                                None,
                                None,
                                m.map(|m| convert::modification(m, now)),
                            ),
                        };
                        Ok::<_, Problem>(ModificationOutcome {
                            outcome: outcome.into(),
                            reason,
                            shard_requests,
                            dry_run,
                            modification: view,
                            reservation: convert::reservation(after, r, now),
                            quote,
                        })
                    },
                    dry_run,
                    claim,
                )
                .await
                .map_err(infeasible)?
        };
        match run.await {
            Ok(o) if o.dry_run => answer(StatusCode::OK, &o),
            Ok(o) => answer(StatusCode::CREATED, &o),
            Err(e) => e.into_response(),
        }
    })
    .await
}

/// Why a modification did not apply at once.
enum Later {
    /// Deferred: the provider's leases are being taken back; why, and until when.
    Deferred(String),
    /// Pending: the ledger's refusal now.
    Pending(String),
}

/// Why a modification is pending, and what is done about it.
fn pending_reason(
    l: &shardex_core::Ledger,
    refusal: &str,
    w: &shardex_core::PendingModification,
) -> String {
    let host = l
        .reservation(w.reservation)
        .and_then(|r| l.host(r.host))
        .map_or_else(|| "its host".to_string(), |h| h.name.clone());
    format!(
        "{refusal}; it is pending: the engine raises a shard request for the shards {host} misses \
         and moves other workloads off it (or provisions a host for them); it starts as soon as \
         they are free, for the duration asked, holding and costing nothing until then, and \
         gives up at {} if they are not",
        rfc3339(w.gives_up_at)
    )
}

/// A quote that fails because the ledger would refuse the action is that refusal.
fn unpriceable(e: &shardex_core::billing::BillingError) -> Problem {
    match e {
        shardex_core::billing::BillingError::Ledger(l) => Problem::ledger(l),
        other => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unpriceable", other),
    }
}

/// `DELETE /v1/reservations/{id}/modifications/{modification}`: ends it now.
#[utoipa::path(delete, path = "/v1/reservations/{id}/modifications/{modification}", tag = "modifications",
    params(("id" = u64, Path), ("modification" = u64, Path)),
    responses((status = 200, body = ModificationView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    uri: Uri,
    ids: Result<Path<(u64, u64)>, PathRejection>,
) -> Response {
    let fp = fingerprint("DELETE", uri.path(), "", b"");
    once(&api, p, &headers, fp, Keep::Durably, |claim| async {
        let run = async {
            let (id, mid) = path(ids)?;
            let tenant = acting_tenant(p)?;
            let missing = move || Problem::not_found(ModificationId(mid));
            api.backend
                .write(
                    move |ledger, _| {
                        visible(ledger, p, id)?;
                        let now = ledger.now();
                        let before = match ledger
                            .modification(ModificationId(mid))
                            .filter(|m| m.reservation.0 == id)
                        {
                            Some(m) => {
                                // The ledger prunes a cancelled modification at once: the
                                // answer is what it was, now cancelled.
                                let mut m = m.clone();
                                m.cancelled = true;
                                convert::modification(&m, now)
                            }
                            None => {
                                let w = ledger
                                    .pending_modification(ModificationId(mid))
                                    .filter(|w| w.reservation.0 == id)
                                    .ok_or_else(missing)?;
                                let mut v = convert::pending_modification(ledger, w, now);
                                v.state = "cancelled".into();
                                v.gives_up_at = None;
                                v
                            }
                        };
                        Ok((
                            Action::CancelModification(convert::cancel_modification(tenant, mid))
                                .into(),
                            before,
                        ))
                    },
                    move |after, _, before| match after.modification(ModificationId(mid)) {
                        Some(m) => convert::modification(m, after.now()),
                        None => before,
                    },
                    false,
                    claim,
                )
                .await
        };
        match run.await {
            Ok(m) => answer(StatusCode::OK, &m),
            Err(e) => e.into_response(),
        }
    })
    .await
}
