//! The HTTP API of `shardex run` (under `/v1`, admin bearer token): health, hosts, tenants,
//! actions, quotes, invoices, the market, workloads, OOM kills and decisions.

use super::*;

/// The refusal to send when the admin bearer token is missing or wrong, if it is.
pub(super) fn unauthorized(app: &App, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    (given != Some(app.admin_token.as_str())).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "a valid bearer token is required"})),
        )
            .into_response()
    })
}

pub(super) async fn health(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    let store = app.store.lock().await;
    Json(json!({
        "status": "ok",
        "seq": store.seq(),
        "ledger_time_ms": store.ledger().now().millis(),
    }))
}

pub(super) async fn hosts(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let store = app.store.lock().await;
    let sizes = store.sizes();
    let ledger = store.ledger();
    let mut out = Vec::new();
    for h in ledger.hosts() {
        let balance = match ledger.balance(h.id) {
            Ok(b) => b,
            Err(e) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": e.to_string()})),
                )
                    .into_response();
            }
        };
        let physical = sizes.physical_vector(h.capacity).map(|p| {
            json!({"cpu_millicores": p.0[0], "memory_bytes": p.0[1], "net_bps": p.0[2], "iops": p.0[3]})
        });
        out.push(json!({
            "id": h.id,
            "name": h.name,
            "capacity": h.capacity,
            "capacity_physical": physical.ok(),
            "balance": balance,
        }));
    }
    Json(json!({ "hosts": out })).into_response()
}

pub(super) async fn ledger_check(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let store = app.store.lock().await;
    let violations = store.ledger().check();
    Json(json!({ "ok": violations.is_empty(), "violations": violations })).into_response()
}

/// A JSON body, or why it is not `what`.
pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("not {what}: {e}"))
}

pub(super) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

/// Applies one ledger action (the JSON form of `shardex_core::Action`), durably, at the
/// wall-clock time; answers the events, or 422 with the rule it would break.
pub(super) async fn post_action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let action: Action = match parse(&body, "an action") {
        Ok(a) => a,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let mut store = app.store.lock().await;
    let now = match wall_clock(store.ledger().now()) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    match store.apply(action, now).await {
        Ok(Ok(events)) => {
            app.changed.notify_one();
            Json(json!({ "seq": store.seq(), "events": events })).into_response()
        }
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store failed: {e}"),
        ),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuoteRequest {
    /// The action to price (a modification, reservation or lease request).
    action: Action,
    /// Whose cost: the tenant's name.
    tenant: String,
    /// Over how long from now, like "1h".
    over: String,
}

/// Prices an action without committing it: what the tenant would pay over `over` with it,
/// minus what it pays without it.
pub(super) async fn post_quote(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let q: QuoteRequest = match parse(&body, "a quote request") {
        Ok(q) => q,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let over: shardex_core::Span = match q.over.parse() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("over: {e}")),
    };
    let store = app.store.lock().await;
    let ledger = store.ledger();
    let Some(tenant) = ledger.tenant_named(&q.tenant).map(|t| t.id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no tenant named {:?}", q.tenant),
        );
    };
    let Ok(until) = ledger.now().checked_add(over) else {
        return error(StatusCode::BAD_REQUEST, "over: too far in the future");
    };
    match shardex_core::billing::quote_action(ledger, &app.prices, &q.action, tenant, until) {
        Ok(cost) => Json(json!({
            "tenant": q.tenant,
            "from_ms": ledger.now().millis(),
            "until_ms": until.millis(),
            "cost": cost.to_string(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InvoiceQuery {
    /// How far back from now, like "30d"; everything when absent.
    period: Option<String>,
}

/// A tenant's invoice from the metered charges: line items and total, exact decimals.
pub(super) async fn get_invoice(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<InvoiceQuery>,
) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let store = app.store.lock().await;
    let ledger = store.ledger();
    let Some(tenant) = ledger.tenant_named(&name).map(|t| t.id) else {
        return error(StatusCode::NOT_FOUND, format!("no tenant named {name:?}"));
    };
    let to = ledger.now();
    let from = match q.period.as_deref().map(str::parse::<shardex_core::Span>) {
        None => Timestamp::EPOCH,
        Some(Ok(p)) => Timestamp::from_millis(
            (to.millis() - i64::try_from(p.millis()).unwrap_or(i64::MAX)).max(0),
        )
        .unwrap_or(Timestamp::EPOCH),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("period: {e}")),
    };
    match store.charges(Some(tenant), from, to).await {
        Ok(charges) => {
            let inv = shardex_core::billing::invoice(tenant, from, to, &charges, app.lender_share);
            Json(json!({ "tenant": name, "invoice": inv })).into_response()
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store failed: {e}"),
        ),
    }
}

/// Per host: the market price, what is on offer, lent and wanted.
pub(super) async fn get_market(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let store = app.store.lock().await;
    let ledger = store.ledger();
    let mut out = Vec::new();
    for h in ledger.hosts() {
        let pool = shardex_core::market::pool_of(ledger, h.id);
        out.push(json!({
            "host": h.name,
            "market_price": ledger.market_price(h.id),
            "offered": pool.offered,
            "leased": pool.leased,
            "waiting": pool.waiting,
        }));
    }
    Json(json!({ "hosts": out })).into_response()
}

/// Every workload with what the loop knows of it.
pub(super) async fn get_workloads(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let shown = app.workloads.lock().map(|w| w.clone()).unwrap_or_default();
    Json(json!({ "workloads": shown })).into_response()
}

/// The newest OOM kills inside workloads.
pub(super) async fn get_ooms(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let store = app.store.lock().await;
    match store.ooms(1000).await {
        Ok(o) => Json(json!({ "ooms": o })).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store failed: {e}"),
        ),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionsQuery {
    /// How many, newest first (default 100, at most 10,000).
    limit: Option<u32>,
}

/// The engine's newest decisions, with their reasons.
pub(super) async fn get_decisions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<DecisionsQuery>,
) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let store = app.store.lock().await;
    match store.decisions(q.limit.unwrap_or(100).min(10_000)).await {
        Ok(d) => Json(json!({ "decisions": d })).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store failed: {e}"),
        ),
    }
}
