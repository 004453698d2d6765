//! Fleet mode's agent routes on a broker. The admin issues a token per host
//! (`POST /v1/agent/tokens`); with it the host's agent registers its host and capacity
//! (`POST /v1/agent/register`), fetches what its limits should be when the ledger changed
//! (`GET /v1/agent/targets?after=SEQ`: its own workloads only, a few KB, where the fleet's
//! ledger is megabytes) and reports every sample period
//! (`POST /v1/agent/report`: samples, what is in force, leases it gives back). A workload held
//! at a limit is raised at once by whichever broker the report reaches; the host's plan is made
//! by the broker holding the host (`planner.rs`). `GET /v1/agent/hosts` (admin) shows each
//! agent's state.
//!
//! # Rules
//! * A token speaks for one host name only: every sample, limit or lease it reports must be of
//!   a workload on that host (422 naming the one that is not). A workload no longer in the
//!   ledger (unbound while the report was on its way) is passed over.
//! * A host not heard from for `offline_after` is **offline**: its plan stops (no new leases,
//!   none renewed, nothing lent out of its reservations); what is in force there stays as last
//!   read back; leases it holds run to their end; shards lent out of its reservations stay
//!   with their borrowers until those leases end. When its agent reports again it is online,
//!   and what it puts in force converges to the ledger as it is then.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use shardex_api::Problem;
use shardex_api::wire::agent::{
    AgentView, HostTargets, HostTokenIssued, InForceReport, NewHostToken, Register, Registered,
    Report, Reported,
};
use shardex_core::{Action, LeaseId, PhysicalVector, ResourceKind, Timestamp, WorkloadId, action};

use super::Broker;

/// The largest report accepted (about 40,000 samples).
const REPORT_LIMIT: usize = 8 << 20;

/// The agents' routes.
pub(super) fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/v1/agent/tokens", post(issue_token))
        .route(
            "/v1/agent/tokens/{host}",
            axum::routing::delete(revoke_tokens),
        )
        .route("/v1/agent/register", post(register))
        .route("/v1/agent/targets", get(targets))
        .route("/v1/agent/report", post(report))
        .route("/v1/agent/hosts", get(list))
        .layer(DefaultBodyLimit::max(REPORT_LIMIT))
}

fn admin(b: &Broker, headers: &HeaderMap) -> Result<(), Problem> {
    let given = shardex_api::auth::bearer(headers);
    if given.is_some_and(|t| shardex_api::auth::same(t, &b.admin_token)) {
        Ok(())
    } else {
        Err(Problem::unauthorized())
    }
}

/// The host name a request's agent token speaks for.
async fn host_caller(b: &Broker, headers: &HeaderMap) -> Result<String, Problem> {
    let token = shardex_api::auth::bearer(headers).ok_or_else(Problem::unauthorized)?;
    let (id, secret) =
        shardex_api::auth::parse_host_token(token).ok_or_else(Problem::unauthorized)?;
    let record = b
        .agents
        .token(id)
        .await
        .map_err(Problem::store)?
        .ok_or_else(Problem::unauthorized)?;
    let hash = shardex_api::auth::hash_secret(secret);
    if record.revoked.is_some() || !shardex_api::auth::same(&hash, &record.hash) {
        return Err(Problem::unauthorized());
    }
    Ok(record.host_name)
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| Problem::bad_request(format!("the body: {e}")))
}

fn unprocessable(code: &str, detail: impl std::fmt::Display) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
}

fn answer(r: Result<Response, Problem>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/agent/tokens` (admin): a new token for a host's agent, shown once.
async fn issue_token(State(b): State<Arc<Broker>>, headers: HeaderMap, bytes: Bytes) -> Response {
    answer(
        async {
            admin(&b, &headers)?;
            let ask: NewHostToken = body(&bytes)?;
            let name = ask.host.trim();
            if name.is_empty() || name.chars().count() > 128 || name != ask.host {
                return Err(unprocessable(
                    "bad-host-name",
                    "host: 1 to 128 characters, without surrounding spaces",
                ));
            }
            let (token, id, hash) = shardex_api::auth::issue_host();
            let floor = b.ledger.borrow().now();
            b.agents
                .add_token(&shardex_store::HostToken {
                    id,
                    host_name: name.to_string(),
                    hash,
                    created: b.now(floor),
                    revoked: None,
                })
                .await
                .map_err(Problem::store)?;
            tracing::info!(host = name, "issued a host agent token");
            let issued = HostTokenIssued {
                host: name.to_string(),
                token,
            };
            Ok((StatusCode::CREATED, axum::Json(issued)).into_response())
        }
        .await,
    )
}

/// `DELETE /v1/agent/tokens/{host}` (admin): revokes every token of the host `host`; its
/// agent is refused from its next call on (it stops, saying so).
async fn revoke_tokens(
    State(b): State<Arc<Broker>>,
    headers: HeaderMap,
    axum::extract::Path(host): axum::extract::Path<String>,
) -> Response {
    answer(
        async {
            admin(&b, &headers)?;
            let floor = b.ledger.borrow().now();
            let n = b
                .agents
                .revoke_tokens(&host, b.now(floor))
                .await
                .map_err(Problem::store)?;
            if n == 0 {
                return Err(Problem::not_found(format!(
                    "a valid agent token of host {host}"
                )));
            }
            tracing::info!(host = %host, revoked = n, "revoked a host's agent tokens");
            Ok(axum::Json(serde_json::json!({ "host": host, "revoked": n })).into_response())
        }
        .await,
    )
}

/// `POST /v1/agent/register` (the host's token): adds the host, or brings its capacity up to
/// date (the ledger's admission rules apply: a host can't shrink below what is reserved).
async fn register(State(b): State<Arc<Broker>>, headers: HeaderMap, bytes: Bytes) -> Response {
    answer(
        async {
            let name = host_caller(&b, &headers).await?;
            let ask: Register = body(&bytes)?;
            let physical =
                PhysicalVector([ask.cpu_millicores, ask.memory_bytes, ask.net_bps, ask.iops]);
            // Supply rounds down: never promise a shard the machine can't back.
            let capacity = b.sizes.supply_vector(physical);
            if capacity.is_zero() {
                return Err(unprocessable(
                    "empty-host",
                    format!(
                        "host {name} backs no whole shard of any kind with the fleet's shard sizes"
                    ),
                ));
            }
            let mut store = b.store.lock().await;
            let done = store
                .write(|batch| {
                    let now = b.now(batch.ledger().now());
                    let act = match batch.ledger().host_named(&name) {
                        None => Some(Action::RegisterHost(action::RegisterHost {
                            name: name.clone(),
                            capacity,
                        })),
                        Some(h) if h.capacity != capacity => {
                            Some(Action::SetHostCapacity(action::SetHostCapacity {
                                host: h.id,
                                capacity,
                            }))
                        }
                        Some(_) => None,
                    };
                    if let Some(a) = act {
                        match batch.apply(a, now, None) {
                            Ok(Ok(_)) => {}
                            Ok(Err(refused)) => return Err(Problem::ledger(&refused)),
                            Err(metering) => return Err(Problem::store(metering)),
                        }
                    }
                    batch
                        .ledger()
                        .host_named(&name)
                        .map(|h| (h.id, h.capacity))
                        .ok_or_else(|| {
                            Problem::store("the host is not in the ledger after it was added")
                        })
                })
                .await
                .map_err(Problem::store)?;
            let ((host, capacity), _) = done?;
            b.publish(&store);
            drop(store);
            tracing::info!(host = %name, %capacity, "host agent registered");
            let sizes = b.sizes;
            Ok(axum::Json(Registered {
                host: host.0,
                name,
                capacity: capacity.into(),
                shard_sizes: ResourceKind::ALL.map(|k| sizes.size(k)),
                report_every_ms: b.report_every.millis(),
                offline_after_ms: u64::try_from(b.offline_after.as_millis()).unwrap_or(u64::MAX),
            })
            .into_response())
        }
        .await,
    )
}

/// `GET /v1/agent/targets?after=SEQ` (a host's token): the host's limits as of the newest
/// entry this broker has, or 204 when that is not past `SEQ`.
async fn targets(
    State(b): State<Arc<Broker>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    answer(
        async {
            let name = host_caller(&b, &headers).await?;
            let mut after = None;
            for pair in query
                .as_deref()
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
            {
                match pair.split_once('=') {
                    Some(("after", v)) => {
                        after = Some(v.parse::<u64>().map_err(|_| {
                            Problem::bad_request(format!("after: {v:?} is not a log entry number"))
                        })?);
                    }
                    _ => {
                        return Err(Problem::bad_request(format!(
                            "unknown query parameter {pair:?}; only `after` is understood"
                        )));
                    }
                }
            }
            // The entry first, then the ledger (published in the other order): the ledger is
            // at least as new as the entry it is sent under.
            let seq = b.seq.load(std::sync::atomic::Ordering::Acquire);
            let ledger = b.ledger.borrow().clone();
            // Nothing newer than what the agent has: also when this broker lags behind the one
            // the agent asked last (it must never go back to older limits, e.g. from before a
            // raise).
            if after.is_some_and(|a| seq <= a) {
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            let host = ledger
                .host_named(&name)
                .map(|h| h.id)
                .ok_or_else(|| not_registered(&name))?;
            let targets = shardex_agent::Targets::of(&ledger, &b.sizes, Some(host));
            Ok(axum::Json(HostTargets {
                seq,
                host: host.0,
                targets,
            })
            .into_response())
        }
        .await,
    )
}

fn not_registered(name: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "not-registered",
        format!("host {name} is not registered: POST /v1/agent/register first"),
    )
}

/// `POST /v1/agent/report` (a host's token): keeps the samples and what is in force, raises
/// at once the workloads held at a limit and releases the leases the host gives back, in one
/// transaction.
async fn report(State(b): State<Arc<Broker>>, headers: HeaderMap, bytes: Bytes) -> Response {
    answer(
        async {
            let name = host_caller(&b, &headers).await?;
            let r: Report = body(&bytes)?;
            let ledger = b.ledger.borrow().clone();
            let host = ledger
                .host_named(&name)
                .map(|h| h.id)
                .ok_or_else(|| not_registered(&name))?;
            let now = b.now(ledger.now());
            let latest = now
                .checked_add(shardex_core::Span::from_secs(60))
                .unwrap_or(now);
            // Each workload it names must be on this host (or gone from the ledger).
            let ours = |id: u64, what: &str| -> Result<bool, Problem> {
                match ledger.workload(WorkloadId(id)) {
                    None => Ok(false),
                    Some(w) if w.host == host => Ok(true),
                    Some(_) => Err(unprocessable(
                        "foreign-workload",
                        format!("{what}: workload {id} is not on host {name}"),
                    )),
                }
            };
            let mut samples = Vec::with_capacity(r.samples.len());
            let mut censored = Vec::new();
            for (i, s) in r.samples.iter().enumerate() {
                let at = Timestamp::from_millis(s.at_ms).map_err(|e| {
                    unprocessable("bad-time", format!("samples[{i}].at_ms: {e}"))
                })?;
                if at > latest {
                    return Err(unprocessable(
                        "bad-time",
                        format!("samples[{i}].at_ms: {at} is more than a minute ahead of the broker's clock ({now})"),
                    ));
                }
                if !ours(s.workload, &format!("samples[{i}]"))? {
                    continue;
                }
                let w = WorkloadId(s.workload);
                for kind in ResourceKind::ALL {
                    if s.reading.censored(kind) {
                        censored.push((w, kind));
                    }
                }
                samples.push((w, at, s.reading));
            }
            for (i, f) in r.in_force.iter().enumerate() {
                ours(f.workload, &format!("in_force[{i}]"))?;
            }
            let mut releases = Vec::new();
            for (i, &id) in r.release.iter().enumerate() {
                let Some(lease) = ledger.lease(LeaseId(id)) else {
                    continue;
                };
                if !ours(lease.borrower.0, &format!("release[{i}]"))? {
                    continue;
                }
                releases.push(id);
            }
            let seen = shardex_store::AgentSeen {
                host: host.0,
                name: name.clone(),
                seen: now,
                seq: r.seq,
                in_force: serde_json::to_string(&r.in_force)
                    .map_err(|e| Problem::store(format!("encoding what is in force: {e}")))?,
            };
            b.agents
                .report(&seen, &samples)
                .await
                .map_err(Problem::store)?;
            let mut committed = 0;
            if censored.is_empty() && releases.is_empty() {
                // Nothing to commit: the store's lock is left to the writers.
                let seq = b.seq.load(std::sync::atomic::Ordering::Acquire);
                return Ok(axum::Json(Reported { seq, committed }).into_response());
            }
            let mut store = b.store.lock().await;
            {
                let done = store
                    .write(|batch| {
                        let now = b.now(batch.ledger().now());
                        let mut actions = shardex_agent::agent::raise(batch.ledger(), &censored);
                        for &id in &releases {
                            if let Some(l) = batch.ledger().lease(LeaseId(id)) {
                                let tenant = batch.ledger().workload(l.borrower).map(|w| w.tenant);
                                if let Some(tenant) = tenant {
                                    actions.push(Action::Release(action::Release {
                                        tenant,
                                        lease: LeaseId(id),
                                    }));
                                }
                            }
                        }
                        let mut n = 0;
                        for a in actions {
                            match batch.apply(a, now, None) {
                                Ok(Ok(_)) => n += 1,
                                Ok(Err(e)) => tracing::warn!(host = %name, error = %e, "an agent's raise or release was refused"),
                                Err(metering) => return Err(metering),
                            }
                        }
                        Ok(n)
                    })
                    .await
                    .map_err(Problem::store)?;
                committed = done.map_err(Problem::store)?.0;
                if committed > 0 {
                    b.publish(&store);
                }
            }
            let seq = store.seq();
            drop(store);
            if !censored.is_empty() {
                tracing::info!(host = %name, held = censored.len(), committed, "workloads held at a limit: raised at once");
            }
            Ok(axum::Json(Reported { seq, committed }).into_response())
        }
        .await,
    )
}

/// `GET /v1/agent/hosts` (admin): every host's agent, online or offline, and who plans it.
async fn list(State(b): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    answer(
        async {
            admin(&b, &headers)?;
            let seen = b.agents.agents().await.map_err(Problem::store)?;
            let owners: std::collections::BTreeMap<u64, String> = b
                .ownership
                .owners()
                .await
                .map_err(Problem::store)?
                .into_iter()
                .collect();
            let floor = b.ledger.borrow().now();
            let now = b.now(floor);
            let views: Vec<AgentView> = seen
                .into_iter()
                .map(|a| AgentView {
                    host: a.host,
                    state: if b.online(a.seen, now) {
                        "online"
                    } else {
                        "offline"
                    }
                    .into(),
                    seen_ms: a.seen.millis(),
                    seq: a.seq,
                    planned_by: owners.get(&a.host).cloned(),
                    in_force: serde_json::from_str::<Vec<InForceReport>>(&a.in_force)
                        .unwrap_or_default(),
                    name: a.name,
                })
                .collect();
            Ok(axum::Json(views).into_response())
        }
        .await,
    )
}
