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
use shardex_core::billing::{quote_action_at, quote_applied};
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
                Ok::<_, Problem>(
                    r.modifications
                        .iter()
                        .filter_map(|m| l.modification(*m))
                        .map(|m| convert::modification(m, now))
                        .collect::<Vec<ModificationView>>(),
                )
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
                l.modification(ModificationId(mid))
                    .filter(|m| m.reservation.0 == id)
                    .map(|m| convert::modification(m, now))
                    .ok_or_else(|| Problem::not_found(ModificationId(mid)))
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
    responses((status = 201, body = ModificationOutcome, description = "applied or scheduled"),
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
                                let Some(d) = defer_modification(ledger, &m, now) else {
                                    return Err(Problem::ledger(&e));
                                };
                                let until = d
                                    .start
                                    .checked_add(m.duration)
                                    .map_err(Problem::bad_request)?;
                                let cost =
                                    quote_action_at(ledger, &prices, &d.action, tenant, now, until)
                                        .map_err(|e| unpriceable(&e))?;
                                let reason = deferral_reason(&e, &d);
                                (d.action.into(), cost, Some(reason))
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
                    move |after, events, (quote, deferred)| {
                        let now = after.now();
                        let m = events.iter().find_map(|e| match e {
                            Event::ModificationCreated { modification, .. } => {
                                after.modification(*modification)
                            }
                            _ => None,
                        });
                        let r = visible(after, p, id)?;
                        let outcome = if deferred.is_some() {
                            "deferred"
                        } else if m.is_some_and(|m| m.window.start() > now) {
                            "scheduled"
                        } else {
                            "applied"
                        };
                        Ok::<_, Problem>(ModificationOutcome {
                            outcome: outcome.into(),
                            reason: deferred,
                            dry_run,
                            modification: m.map(|m| convert::modification(m, now)),
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
                        let before = ledger
                            .modification(ModificationId(mid))
                            .filter(|m| m.reservation.0 == id)
                            .cloned()
                            .ok_or_else(missing)?;
                        Ok((
                            Action::CancelModification(convert::cancel_modification(tenant, mid))
                                .into(),
                            before,
                        ))
                    },
                    move |after, _, mut before| {
                        // The ledger prunes a cancelled modification at once: answer with
                        // what it was, now cancelled.
                        before.cancelled = true;
                        let m = after.modification(ModificationId(mid)).unwrap_or(&before);
                        convert::modification(m, after.now())
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
