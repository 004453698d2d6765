//! `shardex run`: the ledger of this host in the embedded store, the local host registered
//! with its real capacity, expiries applied as they fall due, and the HTTP API, until Ctrl-C.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::extract::State;
use axum::extract::{Path as UrlPath, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde_json::json;
use shardex_core::action;
use shardex_core::ports::LedgerStore;
use shardex_core::{Action, PhysicalVector, ShardVector, Span, Timestamp};
use shardex_store::SqliteStore;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::{RunArgs, machine};

/// Shared by the API handlers and the expiry loop.
struct App {
    store: Mutex<SqliteStore>,
    /// The ledger as of the last commit, published by the store: what readers use.
    ledger: tokio::sync::watch::Receiver<shardex_core::Ledger>,
    /// The API's writes, to the single writer (`writer.rs`).
    writer: tokio::sync::mpsc::Sender<writer::Job>,
    /// `Idempotency-Key` claims and answers, beside the ledger.
    idempotency: shardex_store::Idempotency,
    admin_token: String,
    /// Tenants' API tokens (hashes), beside the ledger.
    tokens: shardex_store::Tokens,
    /// How much one shard of each kind is.
    sizes: shardex_core::ShardSizes,
    /// A migrator is configured and the engine acts: a change its host has no room for may
    /// wait (pending).
    frees_room: bool,
    prices: shardex_core::PriceTable,
    lender_share: rust_decimal::Decimal,
    /// What the control loop shows of each workload.
    workloads: std::sync::Mutex<Vec<WorkloadView>>,
    /// The engine's newest shard requests, newest first (at most 1,000).
    requests: std::sync::Mutex<Vec<shardex_core::engine::ShardRequest>>,
    /// Told when the ledger changed outside the control loop (an expiry, an API action), so
    /// that new entitlements are applied at once rather than at the next sample.
    changed: tokio::sync::Notify,
    /// The event stream's bus: every durable commit's events, decisions, OOM kills and shard
    /// requests.
    events: Arc<shardex_api::events::EventBus>,
    /// Each workload's recent past, for its dashboard page.
    timelines: std::sync::Mutex<timeline::Timelines>,
    /// Whether `GET /v1/overview` answers without a token.
    public_overview: bool,
    /// What the daemon times and counts, for `GET /metrics`.
    metrics: Arc<metrics::Metrics>,
    /// Whether `GET /metrics` answers without the admin token.
    public_metrics: bool,
}

/// The daemon's clock (see `clock.rs`): read only here at the edge; never earlier than the
/// ledger's time, and deaf to steps of the system clock while the daemon runs.
fn wall_clock(floor: Timestamp) -> anyhow::Result<Timestamp> {
    clock::now(floor)
}

/// Logs to standard error at `SHARDEX_LOG`'s level (`info` by default), for people (colours
/// only on a terminal) or as JSON lines.
pub(crate) fn init_logs(format: crate::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHARDEX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        crate::LogFormat::Human => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The request's span (its id, method and path) on every line written inside it.
        crate::LogFormat::Json => log
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.data.load_config()?;
    init_logs(args.log_format);
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
    // Whatever the folder's mode, what this daemon writes is its owner's alone.
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    let _lock = lock::acquire(data)?;
    // A busy port fails the start before anything is created or registered.
    let listen = args.listen.unwrap_or(config.api.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    let ledger_path = args.data.ledger_path();
    let mut store = SqliteStore::open(&ledger_path, config.shards)
        .await
        .with_context(|| format!("could not open the ledger in {}", data.display()))?;
    private(&ledger_path)?;
    let admin_token = admin_token(data)?;

    clock::check_start(store.ledger().now())?;
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

    let tokens = store.tokens();
    let idempotency = store.idempotency();
    match idempotency.forget_old(now).await {
        Ok(n) => tracing::debug!(forgotten = n, "old idempotency keys forgotten"),
        Err(e) => tracing::warn!(error = %e, "could not forget old idempotency keys"),
    }
    let ledger = store.published();
    let (jobs_tx, jobs) = tokio::sync::mpsc::channel(writer::QUEUE);
    let metrics = Arc::new(metrics::Metrics::default());
    // Every commit from here on, whoever makes it, reaches the event stream once durable.
    let (commits_tx, mut commits) = tokio::sync::mpsc::unbounded_channel();
    store.notify_commits(commits_tx);
    let app = Arc::new(App {
        store: Mutex::new(store),
        ledger,
        writer: jobs_tx,
        idempotency,
        admin_token,
        tokens,
        sizes: config.shards,
        frees_room: config.migrator.kind != crate::config::MigratorKind::None
            && config.engine.mode == crate::config::EngineMode::Act,
        prices: config.pricing.table(),
        lender_share: config.pricing.lender_share,
        workloads: std::sync::Mutex::new(Vec::new()),
        requests: std::sync::Mutex::new(Vec::new()),
        changed: tokio::sync::Notify::new(),
        events: Arc::default(),
        timelines: std::sync::Mutex::new(timeline::Timelines::new(
            usize::try_from(
                config.api.history.millis() / config.engine.sample_every.millis().max(1),
            )
            .unwrap_or(usize::MAX),
        )),
        public_overview: config.api.public_overview,
        metrics: metrics.clone(),
        public_metrics: config.api.public_metrics,
    });
    // The follower holds the bus only: it ends when the store (the sender) is closed.
    let bus = app.events.clone();
    tokio::spawn(async move {
        while let Some(c) = commits.recv().await {
            let c: shardex_store::Commit = c;
            bus.publish_ledger(c.seq, &c.before, &c.after, &c.events);
        }
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
        .route("/v1/agent/workloads", get(get_workloads))
        .route("/metrics", get(metrics::serve))
        .route("/", get(dashboard::index))
        .route("/assets/{*file}", get(dashboard::asset))
        .route("/v1/ooms", get(get_ooms))
        .with_state(app.clone())
        .merge(shardex_api::router(shardex_api::Api::limited(
            backend::Daemon(app.clone()),
            config.api.rate(),
        )))
        .fallback(|| async {
            shardex_api::Problem::new(
                StatusCode::NOT_FOUND,
                "no-such-route",
                "no such route; GET /v1/openapi.json lists them",
            )
        });
    let router = router.layer(axum::middleware::from_fn_with_state(
        metrics.clone(),
        metrics::time_requests,
    ));
    let router = shardex_api::routes::hardened(router);
    // The cgroup hierarchy, probed once for the actuator and the sampler.
    let hierarchy = shardex_host::cgroup::Hierarchy::probe();
    let actuator = build_actuator(&config.engine, hierarchy.as_ref())?;
    let mut agent = build_agent(&config, &metrics)?;
    let sampler = build_sampler(&config, hierarchy.as_ref())?;
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
    let bound = listener.local_addr()?;
    // Where `shardex launch` and `shardex workload` find this daemon.
    let addr_file = data.join(crate::client::ADDR_FILE);
    std::fs::write(&addr_file, format!("{bound}\n"))
        .with_context(|| format!("could not write {}", addr_file.display()))?;
    tracing::info!(listen = %bound, data = %data.display(), "shardex is running; Ctrl-C stops it");

    let writes = tokio::spawn(writer::run(app.clone(), jobs));
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
    http::serve(listener, router, shutdown).await;
    let _ = std::fs::remove_file(&addr_file);
    writes.abort();
    expiry.abort();
    pricing.abort();
    agent.abort();
    let _ = agent.await;
    let _ = expiry.await;
    let _ = pricing.await;
    let _ = writes.await;
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

/// This machine's name and capacity: the configuration's `[host]` where it says, else what
/// the machine has.
pub(crate) fn machine_capacity(config: &Config) -> anyhow::Result<(String, PhysicalVector)> {
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
    Ok((
        name,
        PhysicalVector([cpu, memory, config.host.net_bps, config.host.iops]),
    ))
}

/// Registers the machine, or brings its recorded capacity up to date.
async fn register_host(
    store: &mut SqliteStore,
    config: &Config,
    now: Timestamp,
) -> anyhow::Result<()> {
    let (name, physical) = machine_capacity(config)?;
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

/// Makes the ledger's files (and SQLite's WAL and shared-memory files beside it) readable by
/// their owner only, also in a data folder made by an earlier version or by hand.
fn private(ledger: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = ledger.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("could not make {} private", path.display()))?;
        }
    }
    Ok(())
}

/// Reads `admin.token`, creating it (mode 0600) at first start.
fn admin_token(data: &Path) -> anyhow::Result<String> {
    admin_token_at(&data.join("admin.token"))
}

/// The admin token kept in the file `path`, made (random, mode 0600) when it is not there.
pub(crate) fn admin_token_at(path: &Path) -> anyhow::Result<String> {
    let path = path.to_path_buf();
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
/// It goes through the writer like an API write: under load it joins a batch (and every write
/// catches up with time anyway, so it is then a no-op), instead of a transaction of its own
/// that would hold the store between two batches.
async fn expire_when_due(app: Arc<App>) {
    let mut wait = Duration::from_millis(500);
    loop {
        tokio::time::sleep(wait).await;
        wait = Duration::from_millis(500);
        let (now, due) = {
            let ledger = app.ledger.borrow();
            let Ok(now) = wall_clock(ledger.now()) else {
                continue;
            };
            (now, ledger.next_change().is_some_and(|t| t <= now))
        };
        if due {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let job: writer::Job = Box::new(move |batch: &mut shardex_store::Batch, now| {
                // Still due on the batch's state at the batch's time? (Writes since may have
                // caught up already.)
                let done = if batch.ledger().next_change().is_some_and(|t| t <= now) {
                    batch.apply(Action::Expire, now, None)
                } else {
                    Ok(Ok(Vec::new()))
                };
                Box::new(move |committed| {
                    let _ = tx.send(committed.map(|()| done));
                })
            });
            if app.writer.send(job).await.is_err() {
                return; // The writer has stopped: the daemon is stopping.
            }
            match rx.await {
                Ok(Ok(Ok(Ok(events)))) => {
                    tracing::debug!(events = events.len(), "expiries applied");
                }
                Ok(Ok(Ok(Err(e)))) => tracing::error!(error = %e, "the ledger refused to expire"),
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "metering failed while expiring"),
                Ok(Err(e)) => tracing::error!(error = %e.detail, "the store failed while expiring"),
                Err(_) => tracing::error!("the expiry was dropped before it was committed"),
            }
        }
        // Wake at the next change itself (a lease's end, a modification's), at most 500 ms on.
        let next = app.ledger.borrow().next_change();
        if let Some(next) = next.filter(|&t| t > now) {
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
pub(crate) fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
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

pub(crate) mod backend;
pub(crate) mod clock;
pub(crate) mod control_loop;
pub(crate) mod dashboard;
pub(crate) mod http;
mod lock;
pub(crate) mod metrics;
mod routes;
mod sampler;
mod timeline;
pub(crate) mod writer;

pub use control_loop::WorkloadView;
use control_loop::control_loop;
use routes::*;

/// The actuators `act` mode applies allocations with: QMP for the VMs listed, tc for the
/// interfaces listed, then the cgroups (or the simulated actuator) for everything else; each
/// kind goes to the first that manages it for the workload.
pub(crate) fn build_actuator(
    engine: &crate::config::EngineConfig,
    hierarchy: Option<&shardex_host::cgroup::Hierarchy>,
) -> anyhow::Result<shardex_core::ports::ActuatorRouter> {
    use crate::config::{ActuatorKind, EngineMode};
    let mut parts: Vec<Box<dyn shardex_core::ports::Actuator + Send>> = Vec::new();
    // `libvirt:DOMAIN` workloads (it manages no other name).
    #[cfg(feature = "libvirt")]
    parts.push(Box::new(shardex_host::libvirt::LibvirtActuator::new(
        &engine.libvirt_uri,
    )));
    let cgroups = match (
        engine.actuator,
        hierarchy.and_then(shardex_host::cgroup::CgroupActuator::from_hierarchy),
    ) {
        (ActuatorKind::Cgroup, Some(a)) => Some(a.with_iops_devices(engine.iops_devices.clone())),
        // Acting without a way to act would record allocations the kernel never sees.
        (ActuatorKind::Cgroup, None) if engine.mode == EngineMode::Act => anyhow::bail!(
            "engine.mode = \"act\" with engine.actuator = \"cgroup\", but /sys/fs/cgroup has no cgroup filesystem with cpu and memory control; set engine.actuator = \"simulated\" or run where cgroups are mounted"
        ),
        _ => None,
    };
    if !engine.qmp_sockets.is_empty() {
        tracing::info!(vms = ?engine.qmp_sockets, "VM allocations are applied over QMP");
        let mut qmp = shardex_host::qmp::QmpActuator::new(engine.qmp_sockets.clone());
        if let Some(c) = &cgroups {
            // A VM whose workload is its QEMU's cgroup gets its cpu capped exactly there.
            qmp = qmp.with_cpu_quota(c.clone());
        }
        parts.push(Box::new(qmp));
    }
    if !engine.net_interfaces.is_empty() {
        tracing::info!(interfaces = ?engine.net_interfaces, "network allocations are shaped with tc");
        parts.push(Box::new(shardex_host::tc::TcActuator::new(
            engine.net_interfaces.clone(),
        )));
    }
    match cgroups {
        Some(a) => {
            tracing::info!(layout = ?a.layout(), "allocations are applied to cgroups");
            parts.push(Box::new(a));
        }
        None => parts.push(Box::new(shardex_core::ports::SimulatedActuator::default())),
    }
    Ok(shardex_core::ports::ActuatorRouter(parts))
}

/// The agent of this host: the ports and loop steps `shardex-agent` runs, built from the
/// configuration. A policy or sampler that can't work stops the daemon here, with the reason.
pub(crate) type HostAgent = shardex_agent::Agent<
    Box<dyn shardex_core::ports::Provisioner + Send>,
    Box<dyn shardex_core::ports::Migrator + Send>,
>;

fn build_agent(config: &Config, metrics: &Arc<metrics::Metrics>) -> anyhow::Result<HostAgent> {
    let provisioner = Box::new(metrics::Counted {
        inner: config.provisioner.build(&config.shards),
        metrics: metrics.clone(),
    }) as Box<dyn shardex_core::ports::Provisioner + Send>;
    agent_with(config, provisioner)
}

/// The loop's state from the configuration, provisioning through `provisioner` (also a
/// fleet broker's plan of one host).
pub(crate) fn agent_with(
    config: &Config,
    provisioner: Box<dyn shardex_core::ports::Provisioner + Send>,
) -> anyhow::Result<HostAgent> {
    let sizes = config.shards;
    let policy = config.engine.policy;
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
        provisioner,
        // `[migrator]`: none by default (one host: a move is a recommendation, never recorded
        // as done).
        config.migrator.build(&config.engine),
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

/// The sampler of this host, or why there is none: the cgroups', with each VM's memory from
/// its guest where `engine.guest_channels` names its channel.
pub(crate) fn build_sampler(
    config: &Config,
    hierarchy: Option<&shardex_host::cgroup::Hierarchy>,
) -> anyhow::Result<Sampler> {
    let sampler = hierarchy
        .and_then(shardex_host::sampler::CgroupSampler::from_hierarchy)
        .context(
            "no cgroup filesystem at /sys/fs/cgroup: shardex run can't sample its workloads",
        )?;
    let sampler = sampler.with_interfaces(
        config.engine.net_interfaces.clone(),
        std::path::Path::new("/sys/class/net"),
    );
    let channels = shardex_host::guest::GuestChannels::start(&config.engine.guest_channels);
    Ok(shardex_host::guest::GuestAwareSampler::new(
        sampler::HostSampler::new(sampler, &config.engine.libvirt_uri),
        channels,
    ))
}

/// The daemon's sampler.
pub(crate) type Sampler = sampler::DaemonSampler;
