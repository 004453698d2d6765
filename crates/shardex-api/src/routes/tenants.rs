//! Tenants and their tokens: created by the admin; a tenant sees itself and its own tokens.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use shardex_core::{Action, Event, Ledger, TenantId, Timestamp, action};

use super::{Keep, answer, body, once, path};
use crate::auth::{self, Principal, TokenRecord};
use crate::idempotency::fingerprint;
use crate::moment::{self, rfc3339};
use crate::wire::{CreatedTenant, IssuedToken, NewTenant, NewToken, TenantView, TokenView};
use crate::{Api, Backend, Problem};

fn admin_only(p: Principal) -> Result<(), Problem> {
    match p {
        Principal::Admin => Ok(()),
        Principal::Tenant(_) => Err(Problem::forbidden("only the admin token may do this")),
    }
}

/// A tenant by name or id, that the caller may see; 404 otherwise.
pub fn tenant_of(ledger: &Ledger, p: Principal, text: &str) -> Result<TenantId, Problem> {
    let found = text
        .parse::<u64>()
        .ok()
        .and_then(|n| ledger.tenant(TenantId(n)))
        .or_else(|| ledger.tenant_named(text))
        .map(|t| t.id)
        .filter(|&t| p.sees(t));
    found.ok_or_else(|| Problem::not_found(format!("tenant {text:?}")))
}

fn token_view(r: &TokenRecord) -> TokenView {
    TokenView {
        id: r.id.clone(),
        tenant: r.tenant.0,
        label: r.label.clone(),
        created: rfc3339(r.created),
        expires: r.expires.map(rfc3339),
        revoked: r.revoked.map(rfc3339),
    }
}

fn expiry(
    field: &'static str,
    text: Option<&str>,
    now: Timestamp,
) -> Result<Option<Timestamp>, Problem> {
    text.map(|t| {
        let span = moment::duration(field, t).map_err(Problem::bad_request)?;
        now.checked_add(span).map_err(Problem::bad_request)
    })
    .transpose()
}

async fn issue<B: Backend>(
    b: &B,
    tenant: TenantId,
    label: &str,
    expires_in: Option<&str>,
    field: &'static str,
) -> Result<IssuedToken, Problem> {
    if label.chars().count() > 64 || label.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "label: at most 64 printable characters",
        ));
    }
    let now = b.read(|_, now| now).await;
    let expires = expiry(field, expires_in, now)?;
    let issued = auth::issue(tenant, label, now, expires);
    b.add_token(issued.record.clone()).await?;
    Ok(IssuedToken {
        token: issued.token,
        view: token_view(&issued.record),
    })
}

/// `GET /v1/tenants`: every tenant (admin), or the caller itself.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, description = "`{\"tenants\": [TenantView]}`"), (status = 401, body = Problem)))]
pub async fn list<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
) -> Response {
    let out: Vec<TenantView> = api
        .backend
        .read(|l, _| {
            l.tenants()
                .filter(|t| p.sees(t.id))
                .map(|t| TenantView {
                    id: t.id.0,
                    name: t.name.clone(),
                })
                .collect()
        })
        .await;
    answer(StatusCode::OK, &json!({ "tenants": out }))
}

/// `POST /v1/tenants` (admin): a new tenant and its first token, shown once.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = NewTenant,
    responses((status = 201, body = CreatedTenant), (status = 400, body = Problem), (status = 409, body = Problem)))]
pub async fn create<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let fp = fingerprint(
        "POST",
        "/v1/tenants",
        "",
        raw.as_deref().unwrap_or_default(),
    );
    once(&api, p, &headers, fp, Keep::InMemory, |claim| async {
        let run = async {
            admin_only(p)?;
            let req: NewTenant = body(raw, "a new tenant")?;
            let now = api.backend.read(|_, now| now).await;
            expiry("token_expires_in", req.token_expires_in.as_deref(), now)?;
            let name = req.name.clone();
            let tenant = api
                .backend
                .write(
                    move |_, _| {
                        Ok((
                            Action::CreateTenant(action::CreateTenant { name }).into(),
                            (),
                        ))
                    },
                    move |_, events, ()| {
                        events.iter().find_map(|e| match e {
                            Event::TenantCreated { tenant, .. } => Some(*tenant),
                            _ => None,
                        })
                    },
                    false,
                    claim,
                )
                .await?
                .ok_or_else(|| {
                    Problem::store("the tenant was created but its id was not reported")
                })?;
            let token = issue(
                &api.backend,
                tenant,
                "first",
                req.token_expires_in.as_deref(),
                "token_expires_in",
            )
            .await?;
            Ok::<_, Problem>(CreatedTenant {
                tenant: TenantView {
                    id: tenant.0,
                    name: req.name,
                },
                token,
            })
        };
        match run.await {
            Ok(c) => answer(StatusCode::CREATED, &c),
            Err(e) => e.into_response(),
        }
    })
    .await
}

/// `GET /v1/tenants/{tenant}/tokens`: a tenant's tokens, never their secrets.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/tokens", tag = "tenants",
    params(("tenant" = String, Path, description = "name or id")),
    responses((status = 200, description = "`{\"tokens\": [TokenView]}`"), (status = 404, body = Problem)))]
pub async fn list_tokens<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let run = async {
        let name = path(name)?;
        let tenant = api.backend.read(|l, _| tenant_of(l, p, &name)).await?;
        let tokens = api.backend.tokens(Some(tenant)).await?;
        Ok::<_, Problem>(tokens.iter().map(token_view).collect::<Vec<_>>())
    };
    match run.await {
        Ok(t) => answer(StatusCode::OK, &json!({ "tokens": t })),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/tenants/{tenant}/tokens` (admin): another token, shown once.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens", tag = "tenants", request_body = NewToken,
    params(("tenant" = String, Path, description = "name or id")),
    responses((status = 201, body = IssuedToken), (status = 404, body = Problem)))]
pub async fn create_token<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    name: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let run = async {
        admin_only(p)?;
        let name = path(name)?;
        let req: NewToken = if raw.as_ref().is_ok_and(|b| b.is_empty()) {
            NewToken::default()
        } else {
            body(raw, "a new token")?
        };
        let tenant = api.backend.read(|l, _| tenant_of(l, p, &name)).await?;
        issue(
            &api.backend,
            tenant,
            req.label.as_deref().unwrap_or(""),
            req.expires_in.as_deref(),
            "expires_in",
        )
        .await
    };
    match run.await {
        Ok(t) => answer(StatusCode::CREATED, &t),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /v1/tokens/{id}`: revokes a token (the admin any, a tenant its own).
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tenants",
    params(("id" = String, Path, description = "the token's public id")),
    responses((status = 204, description = "revoked"), (status = 404, body = Problem)))]
pub async fn revoke_token<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(p): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let run = async {
        let id = path(id)?;
        let missing = || Problem::not_found(format!("token {id:?}"));
        let record = api.backend.token(&id).await?.ok_or_else(missing)?;
        if !p.sees(record.tenant) || record.revoked.is_some() {
            return Err(missing());
        }
        if api.backend.revoke_token(&id).await? {
            Ok(())
        } else {
            Err(missing())
        }
    };
    match run.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}
