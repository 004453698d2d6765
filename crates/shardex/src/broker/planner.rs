//! Each host's plan, made by the broker that holds the host (`shardex_store::Ownership`): the
//! same engine tick as `shardex run`'s (`shardex_agent::Agent::decide`, scoped to the host's
//! workloads), fed by the samples its agent reported into the shared database. A broker that
//! takes a host over starts its forecasters from that history (`[engine] history`), so a
//! takeover does not forget what the workloads did. The plan is committed only under the
//! host's hold (`PgStore::write_as`): a broker that lost the host meanwhile writes nothing.
//! An offline host is not planned (see `agents.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use shardex_core::{HostId, Timestamp};
use shardex_store::Held;

use super::Broker;
use crate::config::Config;
use crate::run::HostAgent;

/// Samples read per query.
const PAGE: u32 = 10_000;

/// One held host's plan.
struct Plan {
    held: Held,
    agent: HostAgent,
    /// The last sample row fed to its forecasters.
    cursor: i64,
    decided: std::time::Instant,
    /// Its shard requests as last kept in the shared database.
    requests: Vec<shardex_core::engine::ShardRequest>,
}

/// The plans of the hosts this broker holds.
pub(super) struct Planner {
    config: Config,
    plans: BTreeMap<u64, Plan>,
}

impl Planner {
    /// No plans yet.
    pub(super) fn new(config: Config) -> Self {
        Self {
            config,
            plans: BTreeMap::new(),
        }
    }

    /// How much of each workload's history its forecasters start from (`[engine] history`).
    pub(super) fn history(&self) -> shardex_core::Span {
        self.config.engine.history
    }

    /// Plans every host in `held` whose decision is due and whose agent is online.
    pub(super) async fn tick(&mut self, b: &Arc<Broker>, held: &[Held]) {
        // A host lost, or held again under a new epoch (someone else planned it meanwhile),
        // starts over from the shared history.
        self.plans
            .retain(|h, p| held.contains(&p.held) && *h == p.held.host);
        let seen: BTreeMap<u64, Timestamp> = match b.agents.agents().await {
            Ok(a) => a.into_iter().map(|a| (a.host, a.seen)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the agents' state");
                return;
            }
        };
        let decide_every =
            std::time::Duration::from_millis(self.config.engine.decide_every.millis());
        for &h in held.iter().filter(|h| h.host != 0) {
            let floor = b.ledger.borrow().now();
            let now = b.now(floor);
            if !self.plans.contains_key(&h.host) {
                let provisioner = self.config.provisioner.build(&self.config.shards);
                match crate::run::agent_with(&self.config, provisioner) {
                    Ok(mut agent) => {
                        let mut p = *agent.params();
                        p.host = Some(HostId(h.host));
                        agent = shardex_agent::Agent::new(agent.profiler, agent.controller, p);
                        self.plans.insert(
                            h.host,
                            Plan {
                                held: h,
                                agent,
                                cursor: 0,
                                // As `shardex run`: the first decision one period after the
                                // start, with that period's samples seen.
                                decided: std::time::Instant::now(),
                                requests: Vec::new(),
                            },
                        );
                        tracing::info!(host = h.host, epoch = h.epoch, "planning this host");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "can't plan hosts with this configuration");
                        return;
                    }
                }
            }
            let Some(plan) = self.plans.get_mut(&h.host) else {
                continue;
            };
            // Its forecasters see every sample reported since (from the history window at first).
            let since = Timestamp::from_millis(now.millis().saturating_sub(
                i64::try_from(self.config.engine.history.millis()).unwrap_or(i64::MAX),
            ))
            .unwrap_or(Timestamp::EPOCH);
            loop {
                match b.agents.samples(h.host, plan.cursor, since, PAGE).await {
                    Ok(rows) => {
                        let n = rows.len();
                        if let Some(last) = rows.last() {
                            plan.cursor = last.id;
                        }
                        plan.agent.restore_history(
                            rows.into_iter().map(|s| (s.workload, s.at, s.reading)),
                        );
                        if n < PAGE as usize {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(host = h.host, error = %e, "could not read the host's samples");
                        break;
                    }
                }
            }
            let online = seen.get(&h.host).is_some_and(|&s| b.online(s, now));
            if !online || plan.decided.elapsed() < decide_every {
                continue;
            }
            plan.decided = std::time::Instant::now();
            let ledger = b.ledger.borrow().clone();
            let decided = plan.agent.decide(&ledger, now);
            b.metrics.tick(plan.decided.elapsed());
            for p in &decided.problems {
                tracing::warn!(host = h.host, problem = %p, "the plan could not do everything");
            }
            let ok = decided.actions.is_empty() || commit(b, h, &decided).await;
            plan.agent.committed(&decided, ok);
            if ok && !decided.decisions.is_empty() {
                record(b, h.host, plan.agent.params().act, &decided).await;
            }
            // The host's shard requests, for any broker's API, when they changed.
            let all: Vec<_> = plan.agent.controller.engine.shard_requests().collect();
            let newest: Vec<_> = all.into_iter().rev().take(1000).cloned().collect();
            if newest != plan.requests {
                match b.plans.set_requests(h.host, &newest).await {
                    Ok(()) => plan.requests = newest,
                    Err(e) => {
                        tracing::warn!(host = h.host, error = %e, "could not keep the shard requests");
                    }
                }
            }
        }
    }
}

/// Commits a plan's actions as one transaction under the host's hold; whether it was.
async fn commit(b: &Arc<Broker>, h: Held, decided: &shardex_agent::Decided) -> bool {
    let mut store = b.store.lock().await;
    let actions = decided.actions.clone();
    let done = store
        .write_as(b.ownership.broker(), h, |batch| {
            for (a, at) in actions {
                let at = at.max(batch.ledger().now());
                match batch.apply(a, at, None) {
                    Ok(Ok(_)) => {}
                    Ok(Err(refused)) => return Err(refused.to_string()),
                    Err(metering) => return Err(metering.to_string()),
                }
            }
            Ok(())
        })
        .await;
    match done {
        Ok(Ok(_)) => {
            b.publish(&store);
            true
        }
        Ok(Err(e)) => {
            // Decided on a state another broker's write has since changed: the next tick
            // decides again on the newest.
            tracing::info!(host = h.host, reason = %e, "the plan no longer applies; decided again at the next tick");
            false
        }
        Err(e) => {
            tracing::warn!(host = h.host, error = %e, "the plan was not committed");
            false
        }
    }
}

/// Records a plan's decisions in the shared database (any broker answers a workload's
/// decisions from there) and sends them on this broker's event stream.
async fn record(b: &Arc<Broker>, host: u64, act: bool, decided: &shardex_agent::Decided) {
    let ledger = b.ledger.borrow().clone();
    let (mode, outcome) = if act {
        (
            "act",
            "committed; applied at the host agent's next fetch, read back",
        )
    } else {
        ("recommend", "recommended")
    };
    let values: Vec<serde_json::Value> = decided
        .decisions
        .iter()
        .map(|d| {
            tracing::info!(host, workload = %d.workload, kind = %d.kind, from = d.from, to = d.to, why = %d.reason, outcome, "decision");
            crate::run::control_loop::decision_json(&ledger, d, outcome)
        })
        .collect();
    let seq = b.seq.load(std::sync::atomic::Ordering::Acquire);
    if let Err(e) = b
        .plans
        .record_decisions(host, decided.at, seq, mode, &values)
        .await
    {
        tracing::error!(host, error = %e, "could not record the engine's decisions");
    }
    for (d, data) in decided.decisions.iter().zip(values) {
        let tenant = ledger.workload(d.workload).map(|w| w.tenant);
        b.events
            .publish("decision", tenant.into_iter().collect(), data);
    }
}
