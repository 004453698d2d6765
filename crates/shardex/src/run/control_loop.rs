//! The control loop of `shardex run`: sample, raise, decide, commit, actuate and read back, on
//! the wall clock, with the store's lock held only to copy the ledger and to commit.

use super::*;

/// What the loop shows the API of each workload (`GET /v1/agent/workloads`).
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
    /// The forecast over the next twelve decision periods (the API's `forecast`).
    #[serde(skip)]
    pub rdv: Option<shardex_core::Rdv>,
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
    /// Per kind, how long it was held at its limit since the daemon started (a sample period
    /// per censored sample), in milliseconds.
    pub held_ms: [u64; 4],
    /// Whether the sampler can find it.
    pub resolved: bool,
}

/// The control loop: every `sample_every`, samples the workloads bound in the ledger, raises
/// censored ones at once, and applies and reads back their limits; every `decide_every`,
/// forecasts and runs one controller tick, committed as one transaction (act mode) or only
/// recorded (recommend). The store's lock is held only to copy the ledger and to commit, never
/// across sampling or actuation.
pub(super) async fn control_loop(
    app: Arc<App>,
    config: Config,
    mut agent: HostAgent,
    mut sampler: super::Sampler,
    mut actuator: shardex_core::ports::ActuatorRouter,
) {
    let act = config.engine.mode == crate::config::EngineMode::Act;
    let mode = if act { "act" } else { "recommend" };
    tracing::info!(layout = ?sampler.inner().cgroups().layout(), mode, "control loop started");
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
    let sample_every = Duration::from_millis(config.engine.sample_every.millis());
    let mut last_sample: Option<std::time::Instant> = None;
    loop {
        // A stop aborts this task at its next await that waits; when actuation runs longer
        // than a sample period every tick is already due and nothing below waits, so give the
        // stop its chance here (it took 20 s with a VM whose balloon never moves).
        tokio::task::yield_now().await;
        // A decision, a sample, or a ledger change made elsewhere (applied at once).
        let (deciding, mut sampling) = tokio::select! {
            _ = sample_tick.tick() => (false, true),
            _ = decide_tick.tick() => (true, true),
            _ = app.changed.notified() => (false, false),
        };
        // A decision due just after a sample does not sample again: a rate measured over a few
        // milliseconds is noise (it read 0.2 of a busy 0.45-core loop), and it would feed the
        // forecast and the charts a second, wrong point.
        if sampling
            && last_sample.is_some_and(|t: std::time::Instant| t.elapsed() < sample_every / 2)
        {
            sampling = false;
        }
        if sampling {
            last_sample = Some(std::time::Instant::now());
        }
        if deciding {
            let start = std::time::Instant::now();
            decide(&app, &mut agent, mode).await;
            app.metrics.tick(start.elapsed());
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
                let tenant = store.ledger().workload(o.workload).map(|w| w.tenant);
                app.events.publish(
                    "oom",
                    tenant.into_iter().collect(),
                    serde_json::json!({
                        "workload": o.workload.0, "name": o.name, "at_ms": o.at.millis(),
                        "kills": o.kills, "limit_bytes": o.limit,
                    }),
                );
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
        let (actuations, repair) = tokio::task::block_in_place(|| {
            let mut timed = super::metrics::Timed {
                inner: &mut actuator,
                metrics: &app.metrics,
            };
            agent.actuate(&ledger, &mut timed, now)
        });
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
                rdv: None,
                usage: None,
                censored: [false; 4],
                entitlement: None,
                limits: None,
                degraded: false,
                oom_kills: 0,
                held_ms: [0; 4],
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
                    steps: 12,
                };
                v.forecast = [None; 4];
                // From the moment just after this step's samples, as the decision does (a
                // forecast at their own moment would peek and is refused).
                let at = now.checked_add(Span::from_millis(1)).unwrap_or(now);
                v.rdv = agent.profiler.rdv(w.id, at, horizon);
                for f in v.rdv.iter().flat_map(|r| &r.kinds) {
                    v.forecast[f.kind.index()] = f.steps.first().copied();
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
                for (held, censored) in v.held_ms.iter_mut().zip(r.censored) {
                    if censored {
                        *held = held.saturating_add(config.engine.sample_every.millis());
                    }
                }
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
        if let Ok(mut kept) = app.timelines.lock() {
            kept.retain(|w| views.contains_key(&w));
            for o in &sampled.ooms {
                kept.oom(o.workload, o.at);
            }
            if sampling {
                for v in views.values().filter(|v| v.resolved) {
                    kept.push(now, v);
                }
            }
        }
        if deciding && let Ok(mut shown) = app.requests.lock() {
            let all: Vec<_> = agent.controller.engine.shard_requests().collect();
            let newest: Vec<_> = all.into_iter().rev().take(1000).cloned().collect();
            // A shard request raised or moved on since the last tick is an event.
            for r in &newest {
                if shown
                    .iter()
                    .any(|o| o.id == r.id && o.status == r.status && o.steps == r.steps)
                {
                    continue;
                }
                let tenant = r.tenant(&ledger);
                let data = serde_json::to_value(r).unwrap_or_default();
                app.events
                    .publish("shard_request", tenant.into_iter().collect(), data);
            }
            *shown = newest;
        }
    }
}

/// A copy of the ledger and the wall-clock time, holding the store's lock only to copy.
pub(super) async fn snapshot(app: &App) -> Option<(shardex_core::Ledger, Timestamp)> {
    let store = app.store.lock().await;
    let now = wall_clock(store.ledger().now()).ok()?;
    Some((store.ledger().clone(), now))
}

/// Commits actions as one transaction at the wall-clock time; logs a refusal.
pub(super) async fn commit(app: &App, actions: Vec<Action>, what: &str) -> bool {
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
pub(super) async fn decide(app: &App, agent: &mut HostAgent, mode: &str) {
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
            decision_json(ledger, d, &status)
        })
        .collect();
    if let Err(e) = store.record_decisions(decided.at, mode, &decisions).await {
        tracing::error!(error = %e, "could not record the engine's decisions");
    }
    for (d, data) in decided.decisions.iter().zip(&decisions) {
        let tenant = ledger.workload(d.workload).map(|w| w.tenant);
        app.events
            .publish("decision", tenant.into_iter().collect(), data.clone());
    }
}

/// A decision as it is recorded and sent on the event stream (`outcome`: what became of it).
pub(crate) fn decision_json(
    ledger: &shardex_core::Ledger,
    d: &shardex_core::engine::Decision,
    outcome: &str,
) -> serde_json::Value {
    json!({
        "workload": ledger.workload(d.workload).map(|w| w.name.clone()),
        "workload_id": d.workload,
        "kind": d.kind,
        "from": d.from,
        "to": d.to,
        "reason": d.reason,
        "why": d.reason.to_string(),
        "outcome": outcome,
    })
}
