//! The routes: one file per resource. Every answer is JSON; every refusal a problem document.
//! Authentication runs before a body is read ([`authenticate`]); bodies are limited to
//! [`BODY_LIMIT`]; unknown routes and fields are refused by name.

pub mod events;
pub mod invoice;
pub mod market;
pub mod modifications;
pub mod overview;
pub mod requests;
pub mod reservations;
pub mod tenants;
pub mod timeline;
pub mod workloads;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{self, Principal};
use crate::idempotency;
use crate::{Api, Backend, Problem};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The API's routes over `api`, to be merged into the daemon's router.
pub fn router<B: Backend>(api: Arc<Api<B>>) -> Router {
    let authed = Router::new()
        .route(
            "/v1/tenants",
            get(tenants::list::<B>).post(tenants::create::<B>),
        )
        .route(
            "/v1/tenants/{tenant}/tokens",
            get(tenants::list_tokens::<B>).post(tenants::create_token::<B>),
        )
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(tenants::revoke_token::<B>),
        )
        .route(
            "/v1/reservations",
            get(reservations::list::<B>).post(reservations::create::<B>),
        )
        .route(
            "/v1/reservations/{id}",
            get(reservations::get::<B>).delete(reservations::cancel::<B>),
        )
        .route(
            "/v1/reservations/{id}/modifications",
            get(modifications::list::<B>).post(modifications::create::<B>),
        )
        .route(
            "/v1/reservations/{id}/modifications/{modification}",
            get(modifications::get::<B>).delete(modifications::cancel::<B>),
        )
        .route(
            "/v1/reservations/{id}/workloads",
            get(workloads::of_reservation::<B>),
        )
        .route("/v1/workloads", get(workloads::list::<B>))
        .route("/v1/workloads/{id}", get(workloads::get::<B>))
        .route("/v1/workloads/{id}/history", get(timeline::history::<B>))
        .route(
            "/v1/workloads/{id}/decisions",
            get(timeline::decisions::<B>),
        )
        .route("/v1/workloads/{id}/forecast", get(workloads::forecast::<B>))
        .route("/v1/hosts/{host}/market", get(market::get::<B>))
        .route("/v1/hosts/{host}/market/history", get(market::history::<B>))
        .route("/v1/shard-requests", get(requests::list::<B>))
        .route("/v1/invoice", get(invoice::get::<B>))
        .route("/v1/events", get(events::stream::<B>))
        .route_layer(middleware::from_fn_with_state(
            api.clone(),
            authenticate::<B>,
        ));
    Router::new()
        .route("/v1/openapi.json", get(crate::openapi::serve))
        .route("/v1/overview", get(overview::get::<B>))
        .merge(authed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(api)
}

/// What every answer of the daemon gets, its operator routes included: a request id
/// (`x-request-id`, the client's if it sent one, else a new one, logged with the request), and
/// a panic turned into a 500 problem document rather than a dropped connection.
pub fn hardened(router: Router) -> Router {
    use tower_http::catch_panic::CatchPanicLayer;
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    router
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "shardex failed on this request (a bug: it is logged); nothing was applied unless a later read shows it",
            )
            .into_response()
        }))
        .layer(middleware::from_fn(log_request))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// One log line per request, with its id.
async fn log_request(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.in_scope(|| tracing::info!(status = response.status().as_u16(), "answered"));
    response
}

/// Finds the caller from its bearer token before anything else is read; 401 otherwise.
async fn authenticate<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    mut req: Request,
    next: Next,
) -> Response {
    match caller(&api.backend, req.headers()).await {
        Ok(p) => {
            if let (Some(limiter), Principal::Tenant(_)) = (&api.limiter, p) {
                let id = auth::bearer(req.headers())
                    .and_then(auth::parse_tenant_token)
                    .map_or("", |(id, _)| id);
                if let Err(wait) = limiter.check(id) {
                    return Problem::rate_limited(wait);
                }
            }
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(p) => p.into_response(),
    }
}

/// The caller of a request with these headers.
pub async fn caller<B: Backend>(b: &B, headers: &HeaderMap) -> Result<Principal, Problem> {
    let token = auth::bearer(headers).ok_or_else(Problem::unauthorized)?;
    if auth::same(token, b.admin_token()) {
        return Ok(Principal::Admin);
    }
    let (id, secret) = auth::parse_tenant_token(token).ok_or_else(Problem::unauthorized)?;
    let record = b.token(id).await?.ok_or_else(Problem::unauthorized)?;
    let now = b.read(|_, now| now).await;
    if auth::verify(&record, secret, now) {
        Ok(Principal::Tenant(record.tenant))
    } else {
        Err(Problem::unauthorized())
    }
}

/// A JSON answer with a status.
pub fn answer<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut r = (status, bytes).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => {
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "encode-failed", e).into_response()
        }
    }
}

/// A JSON body, or a 400 naming what is wrong with it (unknown fields included).
pub fn body<T: DeserializeOwned>(
    raw: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, Problem> {
    let raw = raw.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the body is over {BODY_LIMIT} bytes"),
        ),
        s => Problem::new(s, "bad-body", e.body_text()),
    })?;
    serde_json::from_slice(&raw).map_err(|e| Problem::bad_request(format!("not {what}: {e}")))
}

/// Query parameters, or a 400 naming the bad one.
pub fn query<T>(q: Result<axum::extract::Query<T>, QueryRejection>) -> Result<T, Problem> {
    q.map(|q| q.0)
        .map_err(|e| Problem::bad_request(format!("query: {}", e.body_text())))
}

/// Path parameters, or a 400 (ids are numbers).
pub fn path<T>(p: Result<axum::extract::Path<T>, PathRejection>) -> Result<T, Problem> {
    p.map(|p| p.0)
        .map_err(|e| Problem::bad_request(format!("path: {}", e.body_text())))
}

/// The tenant a route that acts as a tenant acts for: the token's; the admin is refused.
pub fn acting_tenant(p: Principal) -> Result<shardex_core::TenantId, Problem> {
    p.tenant().ok_or_else(|| {
        Problem::forbidden("this route acts as a tenant: use that tenant's token (POST /v1/tenants/{tenant}/tokens issues one)")
    })
}

/// Whether an answer may be kept durably: one that holds a secret is kept in memory only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Kept in the backend, across restarts.
    Durably,
    /// Holds a secret: kept in memory only.
    InMemory,
}

/// Runs a write once per `Idempotency-Key`: a retry with the same key and request gets the
/// first answer back; the same key with another request is a 422. `run` gets the claim to
/// pass to [`Backend::write`], so that the key is taken in the action's own transaction.
pub async fn once<B, F, Fut>(
    api: &Api<B>,
    caller: Principal,
    headers: &HeaderMap,
    fingerprint: [u8; 32],
    keep: Keep,
    run: F,
) -> Response
where
    B: Backend,
    F: FnOnce(Option<idempotency::Claim>) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let Some(key) = headers.get("idempotency-key") else {
        return run(None).await;
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= idempotency::MAX_KEY_LEN => k.to_string(),
        _ => {
            return Problem::bad_request(format!(
                "Idempotency-Key: 1 to {} visible ASCII characters",
                idempotency::MAX_KEY_LEN
            ))
            .into_response();
        }
    };
    let who = match caller {
        Principal::Admin => "admin".to_string(),
        Principal::Tenant(t) => t.to_string(),
    };
    let _held = api.idempotency.lock(&who, &key).await;
    let now = api.backend.read(|_, now| now).await;
    let kept = match api.backend.kept(&who, &key, now).await {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    if let Some(k) = kept {
        if k.fingerprint.as_slice() != fingerprint.as_slice() {
            return Problem::idempotency_mismatch().into_response();
        }
        let replay = match (&k.answer, api.idempotency.secret(&who, &key, now)) {
            (Some((status, content_type, body)), _) => {
                Some((*status, content_type.clone(), body.clone()))
            }
            (None, Some(a)) if a.fingerprint == fingerprint => {
                Some((a.status, "application/json".to_string(), a.body.clone()))
            }
            _ => None,
        };
        let Some((status, content_type, body)) = replay else {
            return Problem::answer_not_kept(k.seq).into_response();
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let mut r = (status, body).into_response();
        if let Ok(v) = HeaderValue::from_str(&content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return r;
    }
    let claim = idempotency::Claim {
        caller: who.clone(),
        key: key.clone(),
        fingerprint,
    };
    let response = run(Some(claim)).await;
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encode-failed",
            "could not read the answer",
        )
        .into_response();
    };
    // A store failure is worth retrying: it is not kept.
    if !parts.status.is_server_error() {
        let content_type = if parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/problem+json")
        {
            "application/problem+json"
        } else {
            "application/json"
        };
        let kept = match keep {
            Keep::InMemory if parts.status.is_success() => {
                api.idempotency.keep_secret(
                    &who,
                    &key,
                    idempotency::Answer {
                        fingerprint,
                        status: parts.status.as_u16(),
                        body: bytes.to_vec(),
                        at: now,
                    },
                );
                Ok(())
            }
            _ => {
                api.backend
                    .keep(
                        &who,
                        &key,
                        &fingerprint,
                        now,
                        (parts.status.as_u16(), content_type, &bytes),
                    )
                    .await
            }
        };
        if let Err(e) = kept {
            // The action (if any) is durable and its claim with it: a retry is still safe.
            tracing::error!(error = ?e, "could not keep an idempotent answer");
        }
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}
