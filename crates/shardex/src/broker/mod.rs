//! `shardex broker --db postgres://…`: the tenant-facing API, the market and the ledger-wide
//! periodic work over a PostgreSQL database shared with other brokers. A broker holds no state
//! of its own: the ledger is the database's log (`shardex_store::PgStore`: every write locks
//! the log's head, catches up with the other brokers and appends), tokens and idempotency
//! answers are its tables, and the work only one broker should do at a time is owned through
//! it (`shardex_store::Ownership`): the ledger-wide duties (expiries, repricing) are the lease
//! on the pseudo-host 0, taken over by another broker within `ttl + ttl/3` (`[fleet]
//! owner_ttl`, 3 s by default) when its broker dies.

mod agents;
mod backend;
mod metrics;
mod planner;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use shardex_core::ports::LedgerStore;
use shardex_core::{Action, Ledger, Timestamp};
use shardex_store::{Held, Ownership, PgStore};
use tokio::sync::Mutex;

use crate::run::clock;

/// `shardex broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// The shared database, e.g. `postgres://shardex@db:5432/shardex`.
    #[arg(long, value_name = "URL", env = "SHARDEX_DB")]
    db: String,
    /// Address for the API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    listen: std::net::SocketAddr,
    /// This broker's name in the database's ownership table [default: the hostname and pid].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The admin token's file, the same for every broker (made, mode 0600, if missing).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "admin.token",
        env = "SHARDEX_ADMIN_TOKEN_FILE"
    )]
    admin_token: PathBuf,
    /// Configuration file (shard sizes, prices, market, API limits).
    #[arg(long, value_name = "FILE", env = "SHARDEX_CONFIG")]
    config: Option<PathBuf>,
    /// How long a broker's hold on its work lasts without renewal.
    #[arg(long, value_name = "DURATION", default_value = "3s")]
    owner_ttl: shardex_core::Span,
    /// A host whose agent has not reported for this long is offline: its plan stops.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    offline_after: shardex_core::Span,
    /// Log lines for people (`human`) or one JSON object each (`json`), on standard error.
    #[arg(
        long,
        value_name = "FORMAT",
        env = "SHARDEX_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: crate::LogFormat,
}

/// What the broker's API and loops share.
pub(crate) struct Broker {
    store: Mutex<PgStore>,
    /// The API's writes, to this broker's writer (group commit: one transaction for the
    /// writes waiting together).
    writer: tokio::sync::mpsc::Sender<crate::run::writer::Job>,
    /// The ledger as of the newest entry this broker has seen, for readers.
    ledger: tokio::sync::watch::Sender<Ledger>,
    tokens: shardex_store::Tokens,
    idempotency: shardex_store::Idempotency,
    admin_token: String,
    sizes: shardex_core::ShardSizes,
    /// A migrator is configured and the engine acts: a change its host has no room for may
    /// wait (pending).
    frees_room: bool,
    prices: shardex_core::PriceTable,
    lender_share: rust_decimal::Decimal,
    events: shardex_api::events::EventBus,
    public_overview: bool,
    ownership: Ownership,
    /// What this broker holds now (host 0: the ledger-wide duties).
    held: std::sync::Mutex<Vec<Held>>,
    /// Host agents' tokens, reports and samples.
    agents: shardex_store::Agents,
    /// The plans' decisions and shard requests.
    plans: shardex_store::Plans,
    /// How often agents report (the engine's sample period).
    report_every: shardex_core::Span,
    /// A host not heard from for this long is offline.
    offline_after: Duration,
    /// The newest entry this broker has seen.
    seq: std::sync::atomic::AtomicU64,
    /// What it timed (API requests, plans).
    metrics: Arc<crate::run::metrics::Metrics>,
    /// Whether `/metrics` answers without the admin token.
    public_metrics: bool,
}

impl Broker {
    /// The broker's time now: never before the ledger's.
    fn now(&self, floor: Timestamp) -> Timestamp {
        clock::now(floor).unwrap_or(floor)
    }

    /// After a write or a catch-up: the ledger readers see.
    fn publish(&self, store: &PgStore) {
        // The ledger first, then its entry: a reader that loads the entry and then the ledger
        // never gets an older ledger under a newer entry (an agent would miss that change).
        self.ledger.send_replace(store.ledger().clone());
        self.seq
            .store(store.seq(), std::sync::atomic::Ordering::Release);
    }

    /// Whether an agent last heard from at `seen` is online at `now`.
    fn online(&self, seen: Timestamp, now: Timestamp) -> bool {
        now.since(seen).millis()
            <= u64::try_from(self.offline_after.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Runs until Ctrl-C or SIGTERM.
pub fn broker(args: BrokerArgs) -> anyhow::Result<ExitCode> {
    let config =
        crate::config::Config::load(args.config.as_deref(), &PathBuf::from("shardex.toml"))
            .map(|(c, _)| c)
            .context("could not read the configuration")?;
    crate::run::init_logs(args.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args, config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: BrokerArgs, config: crate::config::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    let mut store = PgStore::open(&args.db, config.shards)
        .await
        .with_context(|| format!("could not open the ledger in {}", redact(&args.db)))?;
    store.set_prices(config.pricing.table());
    store.set_lender_share(config.pricing.lender_share);
    clock::check_start(store.ledger().now())?;
    let admin_token = crate::run::admin_token_at(&args.admin_token)?;
    let name = match args.name {
        Some(n) => n,
        None => format!("{}-{}", crate::machine::hostname()?, std::process::id()),
    };
    let ttl = Duration::from_millis(args.owner_ttl.millis().max(300));
    let (jobs_tx, jobs) = tokio::sync::mpsc::channel(crate::run::writer::QUEUE);
    let broker = Arc::new(Broker {
        writer: jobs_tx,
        tokens: store.tokens(),
        idempotency: store.idempotency(),
        ownership: Ownership::new(store.pool().clone(), name.clone(), ttl),
        ledger: tokio::sync::watch::Sender::new(store.ledger().clone()),
        agents: store.agents(),
        plans: store.plans(),
        seq: std::sync::atomic::AtomicU64::new(store.seq()),
        store: Mutex::new(store),
        admin_token,
        sizes: config.shards,
        frees_room: config.migrator.kind != crate::config::MigratorKind::None
            && config.engine.mode == crate::config::EngineMode::Act,
        prices: config.pricing.table(),
        lender_share: config.pricing.lender_share,
        events: shardex_api::events::EventBus::default(),
        public_overview: config.api.public_overview,
        held: std::sync::Mutex::new(Vec::new()),
        report_every: config.engine.sample_every,
        metrics: Arc::new(crate::run::metrics::Metrics::default()),
        public_metrics: config.api.public_metrics,
        offline_after: Duration::from_millis(args.offline_after.millis()),
    });
    let router = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/actions", post(post_action))
        .route("/metrics", get(metrics::serve))
        // The dashboard is a client of the API: it works on any broker as on `shardex run`.
        .route("/", get(crate::run::dashboard::index))
        .route("/assets/{*file}", get(crate::run::dashboard::asset))
        .merge(agents::routes())
        .with_state(broker.clone())
        .merge(shardex_api::router(shardex_api::Api::limited(
            backend::Shared(broker.clone()),
            config.api.rate(),
        )));
    let router = router.layer(axum::middleware::from_fn_with_state(
        broker.metrics.clone(),
        crate::run::metrics::time_requests,
    ));
    let router = shardex_api::routes::hardened(router);
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, broker = %name, "shardex broker is running; Ctrl-C stops it");
    let duties = tokio::spawn(duties(
        broker.clone(),
        ttl,
        config.pricing.shard_hour,
        shardex_core::market::PriceBook::new(config.market.curve),
        Duration::from_millis(config.market.update_every.millis()),
        planner::Planner::new(config.clone()),
    ));
    let follow = tokio::spawn(follow(broker.clone()));
    let writer = tokio::spawn(write_jobs(broker.clone(), jobs));
    crate::run::http::serve(listener, router, crate::run::shutdown_signal()?).await;
    duties.abort();
    follow.abort();
    writer.abort();
    // A clean stop hands this broker's work to the others at once.
    if let Err(e) = broker.ownership.release().await {
        tracing::warn!(error = %e, "could not release this broker's hosts");
    }
    Ok(())
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = &url[s + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// The API's writes: those waiting together are applied one after another on one batch (each
/// on the ledger the ones before left, all on the newest shared state) and appended in one
/// transaction; each is answered once it is committed, a refused one with its refusal.
async fn write_jobs(
    broker: Arc<Broker>,
    mut jobs: tokio::sync::mpsc::Receiver<crate::run::writer::Job>,
) {
    let mut waiting = Vec::with_capacity(crate::run::writer::MAX_BATCH);
    while jobs
        .recv_many(&mut waiting, crate::run::writer::MAX_BATCH)
        .await
        > 0
    {
        let mut store = broker.store.lock().await;
        let before = store.ledger().clone();
        let mut replies = Vec::with_capacity(waiting.len());
        let done = store
            .write(|batch| {
                let now = broker.now(batch.ledger().now());
                for job in waiting.drain(..) {
                    replies.push(job(batch, now));
                }
                Ok::<_, std::convert::Infallible>(())
            })
            .await;
        match done {
            Ok(Ok(((), events))) => {
                broker.publish(&store);
                // Other brokers' entries replayed before these first, then these.
                let mut all = store.caught_up();
                all.extend(events);
                broker
                    .events
                    .publish_ledger(store.seq(), &before, store.ledger(), &all);
                drop(store);
                for reply in replies {
                    reply(Ok(()));
                }
            }
            Ok(Err(never)) => match never {},
            Err(e) => {
                // Jobs the failed transaction never reached are planned on a scratch batch,
                // only to be answered: nothing of any of them was written.
                let mut scratch = store.batch();
                let now = broker.now(scratch.ledger().now());
                replies.extend(waiting.drain(..).map(|job| job(&mut scratch, now)));
                drop(store);
                tracing::error!(error = %e, "the store failed; the batch's writes are refused");
                let detail = e.to_string();
                for reply in replies {
                    reply(Err(shardex_api::Problem::store(detail.clone())));
                }
            }
        }
    }
}

/// Catches up with the other brokers' writes every 200 ms, for readers.
async fn follow(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let mut store = broker.store.lock().await;
        let before = store.ledger().clone();
        match store.refresh().await {
            Ok(0) => {}
            Ok(_) => {
                broker.publish(&store);
                // Other brokers' writes reach this broker's event stream too.
                let events = store.caught_up();
                broker
                    .events
                    .publish_ledger(store.seq(), &before, store.ledger(), &events);
            }
            Err(e) => tracing::warn!(error = %e, "could not catch up with the shared ledger"),
        }
    }
}

/// Every `ttl / 3`: renews and claims what this broker works for, plans the hosts it holds
/// (`planner.rs`); while it holds the ledger-wide duties (pseudo-host 0), applies expiries as
/// they fall due, reprices the market every `reprice_every` and prunes the agents' samples
/// past `[engine] history` every hour.
async fn duties(
    broker: Arc<Broker>,
    ttl: Duration,
    list: shardex_core::PriceVector,
    mut book: shardex_core::market::PriceBook,
    reprice_every: Duration,
    mut planner: planner::Planner,
) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut repriced = tokio::time::Instant::now();
    let mut pruned = None;
    let history = planner.history();
    loop {
        tick.tick().await;
        let hosts: Vec<u64> = std::iter::once(0)
            .chain(broker.ledger.borrow().hosts().map(|h| h.id.0))
            .collect();
        let held = match broker.ownership.spread(&hosts).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "could not renew this broker's hold");
                Vec::new()
            }
        };
        if let Ok(mut shown) = broker.held.lock() {
            *shown = held.clone();
        }
        planner.tick(&broker, &held).await;
        let Some(&leader) = held.iter().find(|h| h.host == 0) else {
            continue;
        };
        // The lease is checked at the write: a broker that lost it meanwhile does nothing.
        if !broker.ownership.holds(leader).await.unwrap_or(false) {
            continue;
        }
        // Samples older than the history the forecasters start from are no use to anyone.
        if pruned.is_none_or(|t: tokio::time::Instant| t.elapsed() >= Duration::from_secs(3600)) {
            pruned = Some(tokio::time::Instant::now());
            let floor = broker.ledger.borrow().now();
            let now = broker.now(floor);
            let keep_from = Timestamp::from_millis(
                now.millis()
                    .saturating_sub(i64::try_from(history.millis()).unwrap_or(i64::MAX)),
            )
            .unwrap_or(Timestamp::EPOCH);
            match broker.agents.prune(keep_from).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned old samples"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not prune old samples"),
            }
        }
        let reprice = repriced.elapsed() >= reprice_every;
        let mut store = broker.store.lock().await;
        let done = store
            .write(|batch| {
                let now = broker.now(batch.ledger().now());
                if batch.ledger().next_change().is_some_and(|t| t <= now) {
                    batch
                        .apply(Action::Expire, now, None)
                        .map_err(|e| e.to_string())?
                        .ok();
                }
                if reprice {
                    for action in
                        shardex_core::market::reprice(&mut book, batch.ledger(), &list, now)
                    {
                        if let Err(e) = batch.apply(action, now, None).map_err(|e| e.to_string())? {
                            tracing::error!(error = %e, "the ledger refused a market price");
                        }
                    }
                }
                Ok::<_, String>(())
            })
            .await;
        if reprice {
            repriced = tokio::time::Instant::now();
        }
        match done {
            Ok(Ok(((), events))) if !events.is_empty() => broker.publish(&store),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "metering failed in the periodic work"),
            Err(e) => tracing::error!(error = %e, "the store failed in the periodic work"),
        }
    }
}

/// `GET /v1/health`: this broker, the newest entry it has seen, what it holds.
async fn health(State(b): State<Arc<Broker>>) -> Response {
    let seq = b.store.lock().await.seq();
    let held: Vec<u64> = b
        .held
        .lock()
        .map(|h| h.iter().map(|h| h.host).collect())
        .unwrap_or_default();
    axum::Json(json!({
        "status": "ok",
        "broker": b.ownership.broker(),
        "seq": seq,
        "holds": held,
    }))
    .into_response()
}

/// `POST /v1/actions` (admin): one ledger action, as `shardex run`'s escape hatch.
async fn post_action(
    State(b): State<Arc<Broker>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let given = shardex_api::auth::bearer(&headers);
    if !given.is_some_and(|t| shardex_api::auth::same(t, &b.admin_token)) {
        return shardex_api::Problem::unauthorized().into_response();
    }
    let action: Action = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return shardex_api::Problem::bad_request(format!("not an action: {e}"))
                .into_response();
        }
    };
    let mut store = b.store.lock().await;
    let done = store
        .write(|batch| {
            let now = b.now(batch.ledger().now());
            match batch.apply(action, now, None) {
                Ok(Ok(events)) => Ok(Ok(events)),
                Ok(Err(refused)) => Err(refused),
                Err(metering) => Ok(Err(metering)),
            }
        })
        .await;
    match done {
        Ok(Ok((Ok(events), _))) => {
            b.publish(&store);
            axum::Json(json!({ "seq": store.seq(), "events": events })).into_response()
        }
        Ok(Ok((Err(metering), _))) => shardex_api::Problem::store(metering).into_response(),
        Ok(Err(refused)) => shardex_api::Problem::ledger(&refused).into_response(),
        Err(e) => shardex_api::Problem::store(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_s_password_is_never_shown() {
        assert_eq!(
            super::redact("postgres://shardex:s3cret@db:5432/ledger"),
            "postgres://shardex@db:5432/ledger"
        );
        assert_eq!(
            super::redact("postgres://db/ledger"),
            "postgres://db/ledger"
        );
    }
}
