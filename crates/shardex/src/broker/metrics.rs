//! `GET /metrics` on a broker: the same exposition as `shardex run`'s, from the shared ledger
//! (hosts' shards by state, market, leases, each workload's entitlement) and from what the
//! hosts' agents reported (each workload's limits read back in force), the broker's API
//! request and plan timings, and per host its agent: online or offline, how long since its
//! last report, how many of its workloads are degraded.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use shardex_api::wire::agent::InForceReport;
use shardex_core::{ResourceKind, WorkloadId};

use super::Broker;
use crate::run::control_loop::WorkloadView;
use crate::run::metrics::{Labels, Moment, gauge, number};

/// The agents at the moment of one scrape: per host, (name, online, seconds since its last
/// report, degraded workloads).
#[derive(Debug)]
struct Agents(Vec<(String, bool, f64, u64)>);

impl Collector for Agents {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (mut online, mut offline) = (0u64, 0u64);
        let mut age: Vec<(Labels, f64)> = Vec::new();
        let mut degraded: Vec<(Labels, f64)> = Vec::new();
        for (host, on, seconds, bad) in &self.0 {
            if *on {
                online += 1;
            } else {
                offline += 1;
            }
            age.push((vec![("host", host.clone())], *seconds));
            degraded.push((vec![("host", host.clone())], number(*bad)));
        }
        gauge(
            &mut e,
            "shardex_agents",
            "Hosts' agents by state (offline: no report for the offline timeout)",
            &[
                (vec![("state", "online".to_string())], number(online)),
                (vec![("state", "offline".to_string())], number(offline)),
            ],
        )?;
        gauge(
            &mut e,
            "shardex_agent_report_age_seconds",
            "Time since a host's agent last reported",
            &age,
        )?;
        gauge(
            &mut e,
            "shardex_agent_degraded_workloads",
            "A host's workloads degraded in some kind (a limit its actuator can't write)",
            &degraded,
        )?;
        Ok(())
    }
}

/// `GET /metrics` (admin, unless `api.public_metrics`).
pub(super) async fn serve(State(b): State<Arc<Broker>>, headers: HeaderMap) -> Response {
    if !b.public_metrics
        && !shardex_api::auth::bearer(&headers)
            .is_some_and(|t| shardex_api::auth::same(t, &b.admin_token))
    {
        return shardex_api::Problem::unauthorized().into_response();
    }
    let seen = match b.agents.agents().await {
        Ok(s) => s,
        Err(e) => return shardex_api::Problem::store(e).into_response(),
    };
    let ledger = b.ledger.borrow().clone();
    let now = b.now(ledger.now());
    let mut workloads = Vec::new();
    let mut agents = Vec::new();
    for a in seen {
        let reports: Vec<InForceReport> = serde_json::from_str(&a.in_force).unwrap_or_default();
        let bad = reports
            .iter()
            .filter(|r| r.degraded.iter().any(Option::is_some))
            .count();
        #[allow(clippy::cast_precision_loss)]
        let age = now.since(a.seen).millis() as f64 / 1000.0;
        agents.push((a.name.clone(), b.online(a.seen, now), age, bad as u64));
        for r in reports {
            let Some(w) = ledger.workload(WorkloadId(r.workload)) else {
                continue;
            };
            let degraded = r.degraded.iter().any(Option::is_some);
            let mut want = shardex_core::ports::Limits::default();
            for k in ResourceKind::ALL {
                want.hard[k.index()] = r.want[k.index()];
            }
            workloads.push(WorkloadView {
                id: w.id,
                name: w.name.clone(),
                tenant: ledger
                    .tenant(w.tenant)
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
                reservation: w.reservation,
                forecast: [None; 4],
                rdv: None,
                usage: None,
                censored: [false; 4],
                entitlement: None,
                limits: Some(shardex_agent::Status {
                    want,
                    in_force: r.in_force,
                    degraded: r.degraded,
                }),
                degraded,
                oom_kills: 0,
                held_ms: [0; 4],
                resolved: true,
            });
        }
    }
    let moment = Moment {
        ledger,
        sizes: b.sizes,
        workloads,
        requests: Vec::new(),
    };
    crate::run::metrics::text(crate::run::metrics::exposition(
        moment,
        &b.metrics,
        Some(Box::new(Agents(agents))),
    ))
}
