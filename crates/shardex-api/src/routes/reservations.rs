//! Reservations: a tenant creates, lists, reads and cancels its own; the admin reads all.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use shardex_core::action::CreateReservation;
use shardex_core::deferral::{Deferred, defer_reservation};
use shardex_core::{Action, Event, Ledger, LedgerError, Reservation, ReservationId, Timestamp};

use super::{Keep, acting_tenant, answer, body, once, path, query};
use crate::auth::Principal;
use crate::convert::{self, Scoped};
use crate::idempotency::fingerprint;
use crate::wire::{NewReservation, ReservationFilter, ReservationPage, ReservationView};
use crate::{Api, Backend, Planned, Problem};

/// A reservation the caller may see; 404 otherwise (missing and foreign alike).
pub fn visible(ledger: &Ledger, p: Principal, id: u64) -> Result<&Reservation, Problem> {
    ledger
        .reservation(ReservationId(id))
        .filter(|r| p.sees(r.tenant))
        .ok_or_else(|| Problem::not_found(ReservationId(id)))
}

fn page(
    ledger: &Ledger,
    p: Principal,
    f: &ReservationFilter,
    now: Timestamp,
) -> Result<ReservationPage, Problem> {
    let host = f
        .host
        .as_deref()
        .map(|h| convert::host(ledger, h))
        .transpose()?;
    let tier = f
        .tier
        .as_deref()
        .map(|t| convert::tier("tier", t))
        .transpose()?;
    if let Some(s) = &f.state
        && !["scheduled", "active", "ended", "cancelled"].contains(&s.as_str())
    {
        return Err(Problem::bad_request(format!(
            "state: {s:?} is not scheduled, active, ended or cancelled"
        )));
    }
    let limit = usize::try_from(f.limit.unwrap_or(100).clamp(1, 1000)).unwrap_or(100);
    let mut items: Vec<ReservationView> = ledger
        .reservations()
        .filter(|r| p.sees(r.tenant))
        .filter(|r| f.after.is_none_or(|a| r.id.0 > a))
        .filter(|r| host.is_none_or(|h| r.host == h))
        .filter(|r| tier.is_none_or(|t| r.tier == t))
        .filter(|r| {
            f.state
                .as_deref()
                .is_none_or(|s| convert::reservation_state(r, now) == s)
        })
        .take(limit + 1)
        .map(|r| convert::reservation(ledger, r, now))
        .collect();
    let next = (items.len() > limit).then(|| {
        items.truncate(limit);
        items.last().map_or(0, |r| r.id)
    });
    Ok(ReservationPage { items, next })
}

/// `GET /v1/reservations`: the caller's reservations (the admin's: all), by id, paginated.
#[utoipa::path(get, path = "/v1/reservations", tag = "reservations", params(ReservationFilter),
    responses((status = 200, body = ReservationPage), (status = 400, body = Problem)))]
pub async fn list<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    q: Result<Query<ReservationFilter>, QueryRejection>,
) -> Response {
    let run = async {
        let f = query(q)?;
        api.backend.read(|l, now| page(l, p, &f, now)).await
    };
    match run.await {
        Ok(page) => answer(StatusCode::OK, &page),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/reservations`: reserves shards on a host (as the token's tenant).
#[utoipa::path(post, path = "/v1/reservations", tag = "reservations", request_body = NewReservation,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes a retry safe")),
    responses((status = 201, body = ReservationView), (status = 400, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem, description = "infeasible: the host has no room")))]
pub async fn create<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let fp = fingerprint(
        "POST",
        "/v1/reservations",
        "",
        raw.as_deref().unwrap_or_default(),
    );
    once(&api, p, &headers, fp, Keep::Durably, |claim| async {
        let run = async {
            let tenant = acting_tenant(p)?;
            let req: NewReservation = body(raw, "a new reservation")?;
            let sizes = api.backend.sizes();
            api.backend
                .write(
                    move |ledger, now| {
                        let a = CreateReservation::try_from(Scoped {
                            body: &req,
                            tenant,
                            now,
                            ledger,
                            sizes,
                        })?;
                        let action = Action::CreateReservation(a.clone());
                        // Short only because the provider lent shards out: deferred until they
                        // come back, unless asked to start later or for immediate delivery.
                        match ledger.applied(&action, now) {
                            Ok(applied) => Ok((
                                Planned {
                                    action,
                                    applied: Some(applied),
                                },
                                None,
                            )),
                            Err(e @ LedgerError::HostCapacityExceeded { .. })
                                if a.window.start() == now && req.delivery.is_none() =>
                            {
                                let d = defer_reservation(ledger, &a, now)
                                    .ok_or_else(|| Problem::ledger(&e))?;
                                let reason = deferral_reason(&e, &d);
                                Ok((d.action.into(), Some(reason)))
                            }
                            Err(e) => Err(Problem::ledger(&e)),
                        }
                    },
                    move |after, events, deferred| {
                        events.iter().find_map(|e| match e {
                            Event::ReservationCreated { reservation, .. } => {
                                after.reservation(*reservation).map(|r| ReservationView {
                                    deferred: deferred.clone(),
                                    ..convert::reservation(after, r, after.now())
                                })
                            }
                            _ => None,
                        })
                    },
                    false,
                    claim,
                )
                .await
                .map_err(infeasible)?
                .ok_or_else(|| Problem::store("the reservation was created but not reported"))
        };
        match run.await {
            Ok(r) => answer(StatusCode::CREATED, &r),
            Err(e) => e.into_response(),
        }
    })
    .await
}

/// Why something was deferred: the refusal now, and what is being done about it.
pub fn deferral_reason(refusal: &LedgerError, d: &Deferred) -> String {
    format!(
        "{refusal}; the provider is taking back {} lease(s) of its unreserved shards on the host ({}), with the reclaim notice: it starts at {}",
        d.reclaimed.len(),
        d.reclaimed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        crate::moment::rfc3339(d.start)
    )
}

/// A refusal for lack of room is `infeasible`.
pub fn infeasible(p: Problem) -> Problem {
    if p.status == 409 { p.infeasible() } else { p }
}

/// `GET /v1/reservations/{id}`.
#[utoipa::path(get, path = "/v1/reservations/{id}", tag = "reservations",
    params(("id" = u64, Path)), responses((status = 200, body = ReservationView), (status = 404, body = Problem)))]
pub async fn get<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<u64>, PathRejection>,
) -> Response {
    let run = async {
        let id = path(id)?;
        api.backend
            .read(|l, now| visible(l, p, id).map(|r| convert::reservation(l, r, now)))
            .await
    };
    match run.await {
        Ok(r) => answer(StatusCode::OK, &r),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /v1/reservations/{id}`: cancels it now (its workloads lose their shards).
#[utoipa::path(delete, path = "/v1/reservations/{id}", tag = "reservations",
    params(("id" = u64, Path)), responses((status = 200, body = ReservationView), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn cancel<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    uri: Uri,
    id: Result<Path<u64>, PathRejection>,
) -> Response {
    let fp = fingerprint("DELETE", uri.path(), "", b"");
    once(&api, p, &headers, fp, Keep::Durably, |claim| async {
        let run = async {
            let id = path(id)?;
            let tenant = acting_tenant(p)?;
            api.backend
                .write(
                    move |ledger, _| {
                        let before = visible(ledger, p, id)?.clone();
                        Ok((
                            Action::CancelReservation(convert::cancel_reservation(tenant, id))
                                .into(),
                            before,
                        ))
                    },
                    move |after, _, mut before| {
                        // Answer what was done even if the ledger has pruned it already.
                        before.cancelled = true;
                        let r = after.reservation(before.id).unwrap_or(&before);
                        convert::reservation(after, r, after.now())
                    },
                    false,
                    claim,
                )
                .await
        };
        match run.await {
            Ok(r) => answer(StatusCode::OK, &r),
            Err(e) => e.into_response(),
        }
    })
    .await
}
