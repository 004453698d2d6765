//! `shardex run`: the ledger of this host in the embedded store, the local host registered
//! with its real capacity, expiries applied as they fall due, and the HTTP API, until Ctrl-C.

use shardex_core::action;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use axum::extract::State;
use axum::extract::{Path as UrlPath, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde_json::json;
use shardex_core::ports::LedgerStore;
use shardex_core::{Action, PhysicalVector, ShardVector, Span, Timestamp};
use shardex_store::SqliteStore;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::{RunArgs, machine};

/// Shared by the API handlers and the expiry loop.
struct App {
    store: Mutex<SqliteStore>,
    admin_token: String,
    prices: shardex_core::PriceTable,
    lender_share: rust_decimal::Decimal,
    /// What the control loop shows of each workload.
    workloads: std::sync::Mutex<Vec<WorkloadView>>,
    /// Told when the ledger changed outside the control loop (an expiry, an API action), so
    /// that new entitlements are applied at once rather than at the next sample.
    changed: tokio::sync::Notify,
}

/// The wall clock, read only here at the edge; never earlier than the ledger's time.
fn wall_clock(floor: Timestamp) -> anyhow::Result<Timestamp> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    let now = Timestamp::from_millis(
        i64::try_from(ms.as_millis()).context("the system clock overflows")?,
    )?;
    Ok(now.max(floor))
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.data.load_config()?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHARDEX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args, config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: RunArgs, config: Config) -> anyhow::Result<()> {
    let data = &args.data.data;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .with_context(|| format!("could not create the data folder {}", data.display()))?;
    let mut store = SqliteStore::open(&args.data.ledger_path(), config.shards)
        .await
        .with_context(|| format!("could not open the ledger in {}", data.display()))?;
    let admin_token = admin_token(data)?;

    let now = wall_clock(store.ledger().now())?;
    store.set_prices(config.pricing.table());
    store.set_lender_share(config.pricing.lender_share);
    let params = config.ledger_params();
    if store.ledger().params() != &params {
        apply(
            &mut store,
            Action::Configure(action::Configure { params }),
            now,
        )
        .await?;
    }
    register_host(&mut store, &config, now).await?;
    // Prices are set before the API opens, so the first lease is priced by the market.
    let mut book = shardex_core::market::PriceBook::new(config.market.curve);
    for action in
        shardex_core::market::reprice(&mut book, store.ledger(), &config.pricing.shard_hour, now)
    {
        apply(&mut store, action, now).await?;
    }

    let listen = args.listen.unwrap_or(config.api.listen);
    let app = Arc::new(App {
        store: Mutex::new(store),
        admin_token,
        prices: config.pricing.table(),
        lender_share: config.pricing.lender_share,
        workloads: std::sync::Mutex::new(Vec::new()),
        changed: tokio::sync::Notify::new(),
    });
    let router = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/hosts", get(hosts))
        .route("/v1/tenants", get(tenants))
        .route("/v1/ledger/check", get(ledger_check))
        .route("/v1/actions", post(post_action))
        .route("/v1/quote", post(post_quote))
        .route("/v1/tenants/{tenant}/invoice", get(get_invoice))
        .route("/v1/market", get(get_market))
        .route("/v1/decisions", get(get_decisions))
        .route("/v1/workloads", get(get_workloads))
        .route("/v1/ooms", get(get_ooms))
        .with_state(app.clone());
    let actuator = build_actuator(&config.engine)?;
    let mut agent = build_agent(&config)?;
    let sampler = build_sampler(&config)?;
    {
        // The history survives a restart: the first decision forecasts from it.
        let store = app.store.lock().await;
        let from = Timestamp::from_millis(
            now.millis()
                .saturating_sub(i64::try_from(config.engine.history.millis()).unwrap_or(0)),
        )
        .unwrap_or(Timestamp::EPOCH);
        let history = store
            .samples_since(from)
            .await
            .context("could not read the workloads' history")?;
        let fed = agent.restore_history(history);
        tracing::info!(samples = fed, "workload history restored");
    }
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    let bound = listener.local_addr()?;
    // Where `shardex launch` and `shardex workload` find this daemon.
    let addr_file = data.join(crate::client::ADDR_FILE);
    std::fs::write(&addr_file, format!("{bound}\n"))
        .with_context(|| format!("could not write {}", addr_file.display()))?;
    tracing::info!(listen = %bound, data = %data.display(), "shardex is running; Ctrl-C stops it");

    let expiry = tokio::spawn(expire_when_due(app.clone()));
    let agent = tokio::spawn(control_loop(
        app.clone(),
        config.clone(),
        agent,
        sampler,
        actuator,
    ));
    let pricing = tokio::spawn(reprice_market(
        app.clone(),
        book,
        config.pricing.shard_hour,
        Duration::from_millis(config.market.update_every.millis()),
    ));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .context("the API server failed")?;
    let _ = std::fs::remove_file(&addr_file);
    expiry.abort();
    pricing.abort();
    agent.abort();
    let _ = agent.await;
    let _ = expiry.await;
    let _ = pricing.await;
    // Every handler has finished; the store is ours alone again.
    let app = Arc::try_unwrap(app).map_err(|_| anyhow::anyhow!("the API still holds the store"))?;
    let store = app.store.into_inner();
    let seq = store.seq();
    store.close().await;
    tracing::info!(seq, "stopped cleanly; the ledger is closed");
    Ok(())
}

async fn apply(store: &mut SqliteStore, action: Action, now: Timestamp) -> anyhow::Result<()> {
    let what = format!("{action:?}");
    store
        .apply(action, now)
        .await
        .context("the store failed")?
        .with_context(|| format!("the ledger refused {what}"))?;
    Ok(())
}

/// Registers the machine, or brings its recorded capacity up to date.
async fn register_host(
    store: &mut SqliteStore,
    config: &Config,
    now: Timestamp,
) -> anyhow::Result<()> {
    let name = match &config.host.name {
        Some(n) => n.clone(),
        None => machine::hostname()?,
    };
    let cpu = match config.host.cpu_millicores {
        Some(m) => m,
        None => machine::online_cpus()? * 1000,
    };
    let memory = match config.host.memory_bytes {
        Some(b) => b,
        None => machine::memory_bytes()?,
    };
    let physical = PhysicalVector([cpu, memory, config.host.net_bps, config.host.iops]);
    // Supply rounds down: never promise a shard the machine can't back.
    let capacity: ShardVector = config.shards.supply_vector(physical);
    if capacity.is_zero() {
        bail!("host {name} has no whole shard of any kind with the configured shard sizes");
    }
    let existing = store.ledger().host_named(&name).map(|h| (h.id, h.capacity));
    match existing {
        None => {
            apply(
                store,
                Action::RegisterHost(action::RegisterHost {
                    name: name.clone(),
                    capacity,
                }),
                now,
            )
            .await?;
            tracing::info!(host = %name, %capacity, "registered this host");
        }
        Some((host, old)) if old != capacity => {
            apply(
                store,
                Action::SetHostCapacity(action::SetHostCapacity { host, capacity }),
                now,
            )
            .await?;
            tracing::info!(host = %name, from = %old, to = %capacity, "host capacity changed");
        }
        Some(_) => tracing::info!(host = %name, %capacity, "host already registered"),
    }
    Ok(())
}

/// Reads `admin.token`, creating it (mode 0600) at first start.
fn admin_token(data: &Path) -> anyhow::Result<String> {
    let path = data.join("admin.token");
    if path.exists() {
        let token = std::fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?
            .trim()
            .to_string();
        if token.len() < 32 {
            bail!(
                "{} is shorter than 32 characters; delete it to get a new one",
                path.display()
            );
        }
        return Ok(token);
    }
    let bytes: [u8; 32] = rand::rng().random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("could not create {}", path.display()))?;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "wrote the admin token");
    Ok(token)
}

/// Applies `Expire` whenever something falls due, so expiries don't wait for the next request.
async fn expire_when_due(app: Arc<App>) {
    let mut wait = Duration::from_millis(500);
    loop {
        tokio::time::sleep(wait).await;
        let mut store = app.store.lock().await;
        wait = Duration::from_millis(500);
        let Ok(now) = wall_clock(store.ledger().now()) else {
            continue;
        };
        if store.ledger().next_change().is_some_and(|t| t <= now) {
            match store.apply(Action::Expire, now).await {
                Ok(Ok(events)) => {
                    tracing::debug!(events = events.len(), "expiries applied");
                    if !events.is_empty() {
                        app.changed.notify_one();
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "the ledger refused to expire"),
                Err(e) => tracing::error!(error = %e, "the store failed while expiring"),
            }
        }
        // Wake at the next change itself (a lease's end, a modification's), at most 500 ms on.
        if let Some(next) = store.ledger().next_change().filter(|&t| t > now) {
            wait = Duration::from_millis(next.since(now).millis().saturating_add(1).min(500));
        }
    }
}

/// Moves every host's market price toward the utilisation curve's target, every `every`.
async fn reprice_market(
    app: Arc<App>,
    mut book: shardex_core::market::PriceBook,
    list: shardex_core::PriceVector,
    every: Duration,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut store = app.store.lock().await;
        let Ok(now) = wall_clock(store.ledger().now()) else {
            continue;
        };
        for action in shardex_core::market::reprice(&mut book, store.ledger(), &list, now) {
            match store.apply(action, now).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "the ledger refused a market price"),
                Err(e) => tracing::error!(error = %e, "the store failed while repricing"),
            }
        }
    }
}

/// Resolves at the first Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is
/// called, not when it is first polled, so a signal that arrives right after start-up still
/// stops the server cleanly instead of killing the process.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("could not handle Ctrl-C")?;
    let mut term = signal(SignalKind::terminate()).context("could not handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down");
    })
}

/// The refusal to send when the admin bearer token is missing or wrong, if it is.
fn unauthorized(app: &App, headers: &HeaderMap) -> Option<Response> {
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

async fn health(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    let store = app.store.lock().await;
    Json(json!({
        "status": "ok",
        "seq": store.seq(),
        "ledger_time_ms": store.ledger().now().millis(),
    }))
}

async fn hosts(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
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

/// Every tenant: id and name.
async fn tenants(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let store = app.store.lock().await;
    let out: Vec<_> = store
        .ledger()
        .tenants()
        .map(|t| json!({"id": t.id, "name": t.name}))
        .collect();
    Json(json!({ "tenants": out })).into_response()
}

async fn ledger_check(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let store = app.store.lock().await;
    let violations = store.ledger().check();
    Json(json!({ "ok": violations.is_empty(), "violations": violations })).into_response()
}

/// A JSON body, or why it is not `what`.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("not {what}: {e}"))
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

/// Applies one ledger action (the JSON form of `shardex_core::Action`), durably, at the
/// wall-clock time; answers the events, or 422 with the rule it would break.
async fn post_action(
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
struct QuoteRequest {
    /// The action to price (a modification, reservation or lease request).
    action: Action,
    /// Whose cost: the tenant's name.
    tenant: String,
    /// Over how long from now, like "1h".
    over: String,
}

/// Prices an action without committing it: what the tenant would pay over `over` with it,
/// minus what it pays without it.
async fn post_quote(
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
struct InvoiceQuery {
    /// How far back from now, like "30d"; everything when absent.
    period: Option<String>,
}

/// A tenant's invoice from the metered charges: line items and total, exact decimals.
async fn get_invoice(
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
        Some(Ok(p)) => Timestamp::from_millis((to.millis() - p.millis() as i64).max(0))
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
async fn get_market(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
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

/// The actuators `act` mode applies allocations with: QMP for the VMs listed, tc for the
/// interfaces listed, then the cgroups (or the simulated actuator) for everything else; each
/// kind goes to the first that manages it for the workload.
fn build_actuator(
    engine: &crate::config::EngineConfig,
) -> anyhow::Result<shardex_core::ports::ActuatorRouter> {
    use crate::config::{ActuatorKind, EngineMode};
    let mut parts: Vec<Box<dyn shardex_core::ports::Actuator + Send>> = Vec::new();
    if !engine.qmp_sockets.is_empty() {
        tracing::info!(vms = ?engine.qmp_sockets, "VM allocations are applied over QMP");
        parts.push(Box::new(shardex_host::qmp::QmpActuator::new(
            engine.qmp_sockets.clone(),
        )));
    }
    if !engine.net_interfaces.is_empty() {
        tracing::info!(interfaces = ?engine.net_interfaces, "network allocations are shaped with tc");
        parts.push(Box::new(shardex_host::tc::TcActuator::new(
            engine.net_interfaces.clone(),
        )));
    }
    match (
        engine.actuator,
        shardex_host::cgroup::CgroupActuator::probe(),
    ) {
        (ActuatorKind::Cgroup, Some(a)) => {
            // Validated with the configuration.
            let devices = engine
                .iops_devices
                .iter()
                .filter_map(|d| d.parse().ok())
                .collect();
            let a = a.with_iops_devices(devices);
            tracing::info!(layout = ?a.layout(), "allocations are applied to cgroups");
            parts.push(Box::new(a));
        }
        // Acting without a way to act would record allocations the kernel never sees.
        (ActuatorKind::Cgroup, None) if engine.mode == EngineMode::Act => anyhow::bail!(
            "engine.mode = \"act\" with engine.actuator = \"cgroup\", but /sys/fs/cgroup has no cgroup filesystem with cpu and memory control; set engine.actuator = \"simulated\" or run where cgroups are mounted"
        ),
        _ => parts.push(Box::new(shardex_core::ports::SimulatedActuator::default())),
    }
    Ok(shardex_core::ports::ActuatorRouter(parts))
}

/// The agent of this host: the ports and loop steps `shardex-agent` runs, built from the
/// configuration. A policy or sampler that can't work stops the daemon here, with the reason.
type HostAgent = shardex_agent::Agent<
    Box<dyn shardex_core::ports::Provisioner + Send>,
    shardex_core::ports::NoMigrator,
>;

fn build_agent(config: &Config) -> anyhow::Result<HostAgent> {
    let sizes = config.shards;
    let policy: shardex_forecast::Policy = config
        .engine
        .policy
        .parse()
        .with_context(|| format!("engine.policy = {:?}", config.engine.policy))?;
    // Checked once here, so the loop never meets a policy that can't build.
    for kind in shardex_core::ResourceKind::ALL {
        if policy
            .build(kind, None, &shardex_forecast::adaptive::Params::default())
            .is_none()
        {
            bail!(
                "engine.policy = {policy} can't forecast live workloads (it needs a provisioned size)"
            );
        }
    }
    let factory: shardex_agent::Factory = Box::new(move |kind| {
        policy
            .build(kind, None, &shardex_forecast::adaptive::Params::default())
            .unwrap_or_else(|| {
                Box::new(shardex_forecast::reactive::Reactive::new(
                    shardex_forecast::reactive::DEFAULT_MARGIN,
                ))
            })
    });
    let params = shardex_core::engine::EngineParams {
        lead: config.engine.decide_every,
        down_after: config.engine.scale_down_after,
        ..shardex_core::engine::EngineParams::default()
    };
    let controller = shardex_core::control::Controller::new(
        shardex_core::engine::Engine::new(params),
        config.provisioner.build(&sizes),
        // One host, no live migration: a move is a recommendation, never recorded as done.
        shardex_core::ports::NoMigrator,
    );
    let mut agent_params = shardex_agent::AgentParams::new(
        sizes,
        config.engine.decide_every,
        config.engine.mode == crate::config::EngineMode::Act,
    );
    agent_params.reconcile.degrade_after = config.engine.degrade_after;
    agent_params.reconcile.retry_after = config.engine.sample_every;
    agent_params.reconcile.check_every = config.engine.check_every;
    Ok(shardex_agent::Agent::new(
        shardex_agent::Profiler::new(factory, sizes),
        controller,
        agent_params,
    ))
}

/// The sampler of this host, or why there is none.
fn build_sampler(config: &Config) -> anyhow::Result<shardex_host::sampler::CgroupSampler> {
    let sampler = shardex_host::sampler::CgroupSampler::probe().context(
        "no cgroup filesystem at /sys/fs/cgroup: shardex run can't sample its workloads",
    )?;
    Ok(sampler.with_interfaces(
        config.engine.net_interfaces.clone(),
        std::path::Path::new("/sys/class/net"),
    ))
}

/// What the loop shows the API of each workload (`GET /v1/workloads`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadView {
    /// The workload.
    pub id: shardex_core::WorkloadId,
    /// Its name.
    pub name: String,
    /// Its owner's name.
    pub tenant: String,
    /// The reservation it runs inside.
    pub reservation: shardex_core::ReservationId,
    /// The forecast for the next decision period per kind, physical units (`None`: no
    /// forecast yet for that kind).
    pub forecast: [Option<shardex_core::Quantiles>; 4],
    /// The last usage sampled, physical units (`None`: not yet, or the name does not resolve).
    pub usage: Option<[Option<u64>; 4]>,
    /// Kinds held at their limit in the last sample.
    pub censored: [bool; 4],
    /// Its entitlement now, physical units.
    pub entitlement: Option<[u64; 4]>,
    /// The limits it should have, and what was read back in force.
    pub limits: Option<shardex_agent::Status>,
    /// Whether it is degraded in some kind.
    pub degraded: bool,
    /// OOM kills seen since the daemon started.
    pub oom_kills: u64,
    /// Whether the sampler can find it.
    pub resolved: bool,
}

/// The control loop: every `sample_every`, samples the workloads bound in the ledger, raises
/// censored ones at once, and applies and reads back their limits; every `decide_every`,
/// forecasts and runs one controller tick, committed as one transaction (act mode) or only
/// recorded (recommend). The store's lock is held only to copy the ledger and to commit, never
/// across sampling or actuation.
async fn control_loop(
    app: Arc<App>,
    config: Config,
    mut agent: HostAgent,
    mut sampler: shardex_host::sampler::CgroupSampler,
    mut actuator: shardex_core::ports::ActuatorRouter,
) {
    let act = config.engine.mode == crate::config::EngineMode::Act;
    let mode = if act { "act" } else { "recommend" };
    tracing::info!(layout = ?sampler.layout(), mode, "control loop started");
    let mut sample_tick =
        tokio::time::interval(Duration::from_millis(config.engine.sample_every.millis()));
    let mut decide_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_millis(config.engine.decide_every.millis()),
        Duration::from_millis(config.engine.decide_every.millis()),
    );
    sample_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    decide_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut views: BTreeMap<shardex_core::WorkloadId, WorkloadView> = BTreeMap::new();
    let mut last_prune: Option<Timestamp> = None;
    loop {
        // A decision, a sample, or a ledger change made elsewhere (applied at once).
        let (deciding, sampling) = tokio::select! {
            _ = sample_tick.tick() => (false, true),
            _ = decide_tick.tick() => (true, true),
            _ = app.changed.notified() => (false, false),
        };
        if deciding {
            decide(&app, &mut agent, mode).await;
        }
        // Sample, outside the lock.
        let Some((ledger, now)) = snapshot(&app).await else {
            continue;
        };
        let sampled = if sampling {
            tokio::task::block_in_place(|| agent.sample(&ledger, &mut sampler, now))
        } else {
            shardex_agent::Sampled::default()
        };
        for (w, name) in &sampled.unresolved {
            tracing::warn!(workload = %w, name = %name, "the sampler can't find this workload (no cgroup by that path): it is neither sampled nor limited");
        }
        for e in &sampled.errors {
            tracing::warn!(error = %e, "sampling failed");
        }
        for (w, kind) in &sampled.censored {
            tracing::info!(workload = %w, %kind, "held at its limit: raised to its entitlement, and leasing above it at the next decision");
        }
        {
            let store = app.store.lock().await;
            if let Err(e) = store.record_samples(&sampled.readings).await {
                tracing::error!(error = %e, "could not keep the samples");
            }
            for o in &sampled.ooms {
                tracing::warn!(workload = %o.workload, name = %o.name, kills = o.kills, limit = ?o.limit, "OOM kill inside the workload");
                let record = shardex_store::OomRecord {
                    workload: o.workload,
                    name: o.name.clone(),
                    at_ms: o.at.millis(),
                    kills: o.kills,
                    limit_bytes: o.limit,
                };
                if let Err(e) = store.record_oom(&record).await {
                    tracing::error!(error = %e, "could not record an OOM kill");
                }
            }
            let keep_from = Timestamp::from_millis(
                now.millis()
                    .saturating_sub(i64::try_from(config.engine.history.millis()).unwrap_or(0)),
            )
            .unwrap_or(Timestamp::EPOCH);
            if last_prune.is_none_or(|t| now.since(t) >= Span::from_secs(3600)) {
                last_prune = Some(now);
                if let Err(e) = store.prune_samples(keep_from).await {
                    tracing::error!(error = %e, "could not prune old samples");
                }
            }
        }
        // Actuate what changed and read back what is due, outside the lock: on the ledger as
        // the raise left it (a change made meanwhile by the API wakes the loop on its own).
        let (ledger, now) = if sampled.raise.is_empty() {
            (ledger, now)
        } else {
            commit(&app, sampled.raise.clone(), "raising censored workloads").await;
            match snapshot(&app).await {
                Some(x) => x,
                None => continue,
            }
        };
        let (actuations, repair) =
            tokio::task::block_in_place(|| agent.actuate(&ledger, &mut actuator, now));
        for a in &actuations {
            match &a.outcome {
                shardex_agent::Outcome::Applied { hard } => {
                    tracing::info!(workload = %a.name, kind = %a.kind, hard = ?hard, "limit in force")
                }
                shardex_agent::Outcome::Cleared => {
                    tracing::info!(workload = %a.name, kind = %a.kind, "limits taken off")
                }
                other => {
                    tracing::warn!(workload = %a.name, kind = %a.kind, outcome = ?other, "actuation")
                }
            }
        }
        if !repair.is_empty() {
            commit(&app, repair, "releasing what a degraded workload can't use").await;
        }
        // What the API shows.
        let sizes = config.shards;
        views.retain(|w, _| ledger.workload(*w).is_some());
        for w in ledger.workloads() {
            let v = views.entry(w.id).or_insert_with(|| WorkloadView {
                id: w.id,
                name: String::new(),
                tenant: String::new(),
                reservation: w.reservation,
                forecast: [None; 4],
                usage: None,
                censored: [false; 4],
                entitlement: None,
                limits: None,
                degraded: false,
                oom_kills: 0,
                resolved: true,
            });
            v.name = w.name.clone();
            v.reservation = w.reservation;
            v.tenant = ledger
                .tenant(w.tenant)
                .map(|t| t.name.clone())
                .unwrap_or_default();
            if deciding {
                let horizon = shardex_core::Horizon {
                    step: config.engine.decide_every,
                    steps: 1,
                };
                v.forecast = [None; 4];
                if let Some(rdv) = agent.profiler.rdv(w.id, now, horizon) {
                    for f in &rdv.kinds {
                        v.forecast[f.kind.index()] = f.steps.first().copied();
                    }
                }
            }
            if sampling {
                v.resolved = true;
                v.censored = [false; 4];
            }
        }
        for (w, _) in sampled.unresolved.iter() {
            if let Some(v) = views.get_mut(w) {
                v.resolved = false;
            }
        }
        for (w, _, r) in &sampled.readings {
            if let Some(v) = views.get_mut(w) {
                v.usage = Some(r.usage);
                v.censored = r.censored;
            }
        }
        for o in &sampled.ooms {
            if let Some(v) = views.get_mut(&o.workload) {
                v.oom_kills += o.kills;
            }
        }
        for (id, v) in views.iter_mut() {
            v.entitlement = shardex_core::entitlement::entitlement(&ledger, *id)
                .ok()
                .and_then(|e| sizes.physical_vector(e).ok())
                .map(|p| p.0);
            v.limits = agent.reconciler.status(*id);
            v.degraded = agent.reconciler.degraded(*id);
        }
        if let Ok(mut shown) = app.workloads.lock() {
            *shown = views.values().cloned().collect();
        }
    }
}

/// A copy of the ledger and the wall-clock time, holding the store's lock only to copy.
async fn snapshot(app: &App) -> Option<(shardex_core::Ledger, Timestamp)> {
    let store = app.store.lock().await;
    let now = wall_clock(store.ledger().now()).ok()?;
    Some((store.ledger().clone(), now))
}

/// Commits actions as one transaction at the wall-clock time; logs a refusal.
async fn commit(app: &App, actions: Vec<Action>, what: &str) -> bool {
    let mut store = app.store.lock().await;
    let Ok(now) = wall_clock(store.ledger().now()) else {
        return false;
    };
    let batch = if actions.len() == 1 {
        actions.into_iter().next().unwrap_or(Action::Expire)
    } else {
        Action::Batch(action::Batch { actions })
    };
    match store.apply_all(vec![(batch, now)]).await {
        Ok(Ok(_)) => true,
        Ok(Err((_, e))) => {
            tracing::error!(error = %e, "the ledger refused {what}");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "the store failed {what}");
            false
        }
    }
}

/// One decision: the tick on a copy of the ledger, committed as one transaction (act mode),
/// and every new decision stored with its outcome.
async fn decide(app: &App, agent: &mut HostAgent, mode: &str) {
    let mut store = app.store.lock().await;
    let Ok(now) = wall_clock(store.ledger().now()) else {
        return;
    };
    // Deciding is pure computation (milliseconds): the lock is held so that what is committed
    // is decided on the ledger it applies to.
    let decided = agent.decide(store.ledger(), now);
    for p in &decided.problems {
        tracing::info!(problem = %p, "control tick");
    }
    let outcome = if decided.actions.is_empty() {
        Ok(())
    } else {
        match store.apply_all(decided.actions.clone()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((i, e))) => Err(format!("refused at action {i}: {e}")),
            Err(e) => Err(format!("the store failed: {e}")),
        }
    };
    agent.committed(&decided, outcome.is_ok());
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "the tick was not committed; nothing of it was applied");
    }
    let ledger = store.ledger();
    let waiting: std::collections::HashSet<shardex_core::WorkloadId> =
        ledger.requests().map(|r| r.workload).collect();
    let decisions: Vec<serde_json::Value> = decided
        .decisions
        .iter()
        .map(|d| {
            let status = match (&outcome, mode) {
                (_, "recommend") => "recommended".to_string(),
                (Err(e), _) => format!("refused: {e}"),
                (Ok(()), _) if waiting.contains(&d.workload) => {
                    "committed; waiting on the market for the rest".to_string()
                }
                (Ok(()), _) => "committed; applied at the next sample, read back".to_string(),
            };
            tracing::info!(workload = %d.workload, kind = %d.kind, from = d.from, to = d.to, why = %d.reason, %status, "decision");
            json!({
                "workload": ledger.workload(d.workload).map(|w| w.name.clone()),
                "workload_id": d.workload,
                "kind": d.kind,
                "from": d.from,
                "to": d.to,
                "reason": d.reason,
                "why": d.reason.to_string(),
                "outcome": status,
            })
        })
        .collect();
    if let Err(e) = store.record_decisions(decided.at, mode, &decisions).await {
        tracing::error!(error = %e, "could not record the engine's decisions");
    }
}

/// Every workload with what the loop knows of it.
async fn get_workloads(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let shown = app.workloads.lock().map(|w| w.clone()).unwrap_or_default();
    Json(json!({ "workloads": shown })).into_response()
}

/// The newest OOM kills inside workloads.
async fn get_ooms(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
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
struct DecisionsQuery {
    /// How many, newest first (default 100, at most 10,000).
    limit: Option<u32>,
}

/// The engine's newest decisions, with their reasons.
async fn get_decisions(
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
