//! `shardex run`: the ledger of this host in the embedded store, the local host registered
//! with its real capacity, expiries applied as they fall due, and the HTTP API, until Ctrl-C.

use std::collections::{BTreeMap, HashMap};
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
use shardex_core::{Action, PhysicalVector, ShardVector, Timestamp};
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
        apply(&mut store, Action::Configure { params }, now).await?;
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
    });
    let router = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/hosts", get(hosts))
        .route("/v1/ledger/check", get(ledger_check))
        .route("/v1/actions", post(post_action))
        .route("/v1/quote", post(post_quote))
        .route("/v1/tenants/{tenant}/invoice", get(get_invoice))
        .route("/v1/market", get(get_market))
        .route("/v1/decisions", get(get_decisions))
        .with_state(app.clone());
    let actuator = build_actuator(&config.engine)?;
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, data = %data.display(), "shardex is running; Ctrl-C stops it");

    let expiry = tokio::spawn(expire_when_due(app.clone()));
    let agent = tokio::spawn(control_loop(app.clone(), config.clone(), actuator));
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
                Action::RegisterHost {
                    name: name.clone(),
                    capacity,
                },
                now,
            )
            .await?;
            tracing::info!(host = %name, %capacity, "registered this host");
        }
        Some((host, old)) if old != capacity => {
            apply(store, Action::SetHostCapacity { host, capacity }, now).await?;
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
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut store = app.store.lock().await;
        let Ok(now) = wall_clock(store.ledger().now()) else {
            continue;
        };
        if store.ledger().next_change().is_some_and(|t| t <= now) {
            match store.apply(Action::Expire, now).await {
                Ok(Ok(events)) => tracing::debug!(events = events.len(), "expiries applied"),
                Ok(Err(e)) => tracing::error!(error = %e, "the ledger refused to expire"),
                Err(e) => tracing::error!(error = %e, "the store failed while expiring"),
            }
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
        Ok(Ok(events)) => Json(json!({ "seq": store.seq(), "events": events })).into_response(),
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
) -> anyhow::Result<shardex_core::ports::Combined> {
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
    Ok(shardex_core::ports::Combined(parts))
}

/// The control loop: samples every workload bound in the ledger from its cgroup, feeds the
/// forecasters, and every `decide_every` runs one controller tick: in `recommend` mode on a
/// copy of the ledger (decisions recorded, nothing changed), in `act` mode committed action by
/// action to the store, then applied through the actuator (the workload's cgroup, or the
/// simulated one) and read back. Every decision is stored with its reason.
async fn control_loop(app: Arc<App>, config: Config, mut actuator: shardex_core::ports::Combined) {
    use shardex_core::ports::{Actuator, Causal, Forecaster, Sampler};
    use shardex_core::{Horizon, KindForecast, Rdv, ResourceKind, Sample, Span};

    let Some(sampler) = shardex_host::sampler::CgroupSampler::probe() else {
        tracing::warn!("no cgroup filesystem at /sys/fs/cgroup: the control loop can't sample");
        return;
    };
    let mut sampler = sampler.with_interfaces(
        config.engine.net_interfaces.clone(),
        std::path::Path::new("/sys/class/net"),
    );
    tracing::info!(layout = ?sampler.layout(), mode = ?config.engine.mode, "control loop started");
    let Ok(policy) = config.engine.policy.parse::<shardex_forecast::Policy>() else {
        return;
    };
    let sizes = config.shards;
    let act = config.engine.mode == crate::config::EngineMode::Act;
    let lead = config.engine.decide_every;
    let params = shardex_core::engine::EngineParams {
        lead,
        ..shardex_core::engine::EngineParams::default()
    };
    let mut controller = shardex_core::control::Controller::new(
        shardex_core::engine::Engine::new(params),
        config.provisioner.build(&sizes),
        shardex_core::ports::SimulatedMigrator::new(Span::from_secs(60)),
    );
    controller.recommend_only = !act;
    let mut forecasters: HashMap<(String, ResourceKind), Causal<Box<dyn Forecaster>>> =
        HashMap::new();
    let mut usage: HashMap<String, shardex_core::ShardVector> = HashMap::new();
    let mut sample_tick =
        tokio::time::interval(Duration::from_millis(config.engine.sample_every.millis()));
    let mut decide_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_millis(config.engine.decide_every.millis()),
        Duration::from_millis(config.engine.decide_every.millis()),
    );
    sample_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    decide_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deciding = tokio::select! {
            _ = sample_tick.tick() => false,
            _ = decide_tick.tick() => true,
        };
        let mut store = app.store.lock().await;
        let Ok(now) = wall_clock(store.ledger().now()) else {
            continue;
        };
        let ledger = store.ledger();
        if !deciding {
            for w in ledger.workloads() {
                let values = match sampler.sample(&w.name, now) {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "sampling failed");
                        continue;
                    }
                };
                let held = ledger.allocation(w.id).unwrap_or_default();
                for kind in ResourceKind::ALL {
                    let Some(v) = values[kind.index()] else {
                        continue;
                    };
                    let f = forecasters
                        .entry((w.name.clone(), kind))
                        .or_insert_with(|| {
                            Causal::new(
                                policy
                                    .build(
                                        kind,
                                        None,
                                        &shardex_forecast::adaptive::Params::default(),
                                    )
                                    .unwrap_or_else(|| {
                                        Box::new(shardex_forecast::reactive::Reactive::new(
                                            shardex_forecast::reactive::DEFAULT_MARGIN,
                                        ))
                                    }),
                            )
                        });
                    let allocated = sizes.physical(kind, held.get(kind)).ok();
                    if f.observe(
                        Sample {
                            time: now,
                            value: v,
                        },
                        allocated,
                    )
                    .is_ok()
                    {
                        let u = usage.entry(w.name.clone()).or_default();
                        *u = u.with(kind, sizes.demand_shards(kind, v));
                    }
                }
            }
            continue;
        }
        // Workloads that left take their forecasters with them.
        let bound: std::collections::HashSet<&str> =
            ledger.workloads().map(|w| w.name.as_str()).collect();
        forecasters.retain(|(name, _), _| bound.contains(name.as_str()));
        usage.retain(|name, _| bound.contains(name.as_str()));
        // Decide for now + lead from samples before now.
        let Ok(decide_at) = now.checked_add(Span::from_millis(1)) else {
            continue;
        };
        let horizon = Horizon {
            step: lead,
            steps: 1,
        };
        let mut demands = BTreeMap::new();
        for w in ledger.workloads() {
            let mut rdv = Rdv {
                made_at: decide_at,
                horizon,
                kinds: Vec::new(),
            };
            for kind in ResourceKind::ALL {
                if let Some(f) = forecasters.get_mut(&(w.name.clone(), kind))
                    && let Ok(steps) = f.forecast(decide_at, horizon)
                {
                    rdv.kinds.push(KindForecast { kind, steps });
                }
            }
            if rdv.kinds.is_empty() {
                continue;
            }
            demands.insert(
                w.id,
                shardex_core::engine::Demand {
                    rdv,
                    usage: usage.get(&w.name).copied().unwrap_or_default(),
                    cap: None,
                },
            );
        }
        let mut copy = ledger.clone();
        let report = controller.tick(&mut copy, &demands, &sizes, decide_at);
        for p in &report.problems {
            tracing::warn!(problem = %p, "control tick");
        }
        for w in &report.abandoned {
            tracing::info!(workload = %w, "move abandoned: the workload left before it finished");
        }
        let mut committed = true;
        for (action, at) in report.applied {
            match store.apply(action, at).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "the ledger refused the engine's action; the rest of the tick is dropped");
                    committed = false;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the store failed during the engine's tick");
                    committed = false;
                    break;
                }
            }
        }
        let mode = if act { "act" } else { "recommend" };
        let names: HashMap<_, _> = store
            .ledger()
            .workloads()
            .map(|w| (w.id, w.name.clone()))
            .collect();
        let decisions: Vec<serde_json::Value> = report
            .decisions
            .iter()
            .map(|d| {
                json!({
                    "workload": names.get(&d.workload),
                    "kind": d.kind,
                    "from": d.from,
                    "to": d.to,
                    "reason": d.reason,
                    "why": d.reason.to_string(),
                })
            })
            .collect();
        if let Err(e) = store.record_decisions(decide_at, mode, &decisions).await {
            tracing::error!(error = %e, "could not record the engine's decisions");
        }
        if act && committed {
            // Apply what the ledger now says, and check what is in force.
            let ledger = store.ledger();
            for w in ledger.workloads() {
                let Ok(shards) = ledger.allocation(w.id) else {
                    continue;
                };
                let Ok(physical) = sizes.physical_vector(shards) else {
                    continue;
                };
                // Actuation blocks (kernel files, tc, QMP with its timeouts): keep it off the
                // async workers that serve the API.
                let applied =
                    tokio::task::block_in_place(|| actuator.apply(w.id, &w.name, physical));
                match applied {
                    Ok(in_force)
                        if ResourceKind::ALL
                            .iter()
                            .filter(|&&k| actuator.manages(&w.name, k))
                            .all(|&k| in_force.get(k) == physical.get(k)) =>
                    {
                        tracing::debug!(workload = %w.name, ?in_force, "allocation in force");
                    }
                    Ok(in_force) => {
                        tracing::warn!(workload = %w.name, ?in_force, ?physical, "actuation did not take")
                    }
                    Err(e) => tracing::warn!(error = %e, "actuation failed; retried next tick"),
                }
            }
        }
        tracing::debug!(decisions = decisions.len(), "engine tick");
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
