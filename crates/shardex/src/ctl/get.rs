//! `shardex ctl get`: every object the API lists or shows, as a table or as the API's document.

use clap::Subcommand;
use serde_json::Value;

use super::tables::*;
use super::{Output, render};
use crate::client::Client;

/// What `ctl get` lists or shows.
#[derive(Debug, Subcommand)]
pub(super) enum GetWhat {
    /// Reservations (yours; the admin's: everyone's).
    Reservations {
        /// Only on this host.
        #[arg(long)]
        host: Option<String>,
        /// Only in this state: scheduled, active, ended, cancelled.
        #[arg(long)]
        state: Option<String>,
    },
    /// One reservation.
    Reservation {
        /// Its id.
        id: u64,
    },
    /// A reservation's modifications.
    Modifications {
        /// The reservation's id.
        reservation: u64,
    },
    /// Workloads: all you may see, or those inside one reservation.
    Workloads {
        /// Only inside this reservation.
        reservation: Option<u64>,
    },
    /// One workload: per kind its usage, entitlement and limit in force.
    Workload {
        /// Its id.
        id: u64,
    },
    /// A workload's forecast: per step and kind, p50/p90/p95/p99.
    Forecast {
        /// The workload's id.
        id: u64,
    },
    /// Tenants (the admin's: all; a tenant's: itself).
    Tenants,
    /// Fleet mode's host agents: online or offline, what they hold in force, who plans them
    /// (admin, on a broker).
    Agents,
    /// A tenant's tokens (never their secrets).
    Tokens {
        /// The tenant, by name or id.
        tenant: String,
    },
    /// Shard requests: what the engine raised for a workload the market could not cover or
    /// for a pending modification, and where each stands.
    ShardRequests {
        /// Only this workload's.
        #[arg(long)]
        workload: Option<u64>,
        /// Only this pending modification's.
        #[arg(long)]
        modification: Option<u64>,
        /// Only in this status: pending, fulfilled, partially_fulfilled, failed.
        #[arg(long)]
        status: Option<String>,
    },
    /// The engine's latest decisions about a workload, newest first.
    Decisions {
        /// The workload's id.
        id: u64,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// A host's market: prices, offers, leases and what waits, and your leases there.
    Market {
        /// The host, by name or id.
        host: String,
    },
    /// Hosts with their capacity and where its shards are (admin).
    Hosts,
}

/// How often `--watch` asks again.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Prints `what` once, or with `watch` every time it changes until interrupted.
pub(super) fn get(client: &Client, what: &GetWhat, out: Output, watch: bool) -> anyhow::Result<()> {
    let mut last: Option<String> = None;
    loop {
        let now = fetch(client, what, out)?;
        if last.as_ref() != Some(&now) {
            if last.is_some() {
                outln!("{}", if out == Output::Table { "" } else { "---" });
            }
            outln!("{now}");
            last = Some(now);
        }
        if !watch {
            return Ok(());
        }
        std::thread::sleep(WATCH_EVERY);
    }
}

/// `what`, fetched and laid out as `out` asks.
fn fetch(client: &Client, what: &GetWhat, out: Output) -> anyhow::Result<String> {
    match what {
        GetWhat::Reservations { host, state } => {
            let mut all = Vec::new();
            let mut after = 0u64;
            loop {
                let q = query(&[
                    ("limit", Some("1000".into())),
                    ("after", Some(after.to_string())),
                    ("host", host.clone()),
                    ("state", state.clone()),
                ]);
                let page = client.get(&format!("/v1/reservations{q}"))?;
                all.extend(items(&page, "items"));
                match page["next"].as_u64() {
                    Some(n) => after = n,
                    None => break,
                }
            }
            let v = Value::Array(all.clone());
            render(out, &v, || reservations_table(&all))
        }
        GetWhat::Reservation { id } => {
            let r = client.get(&format!("/v1/reservations/{id}"))?;
            render(out, &r, || reservations_table(std::slice::from_ref(&r)))
        }
        GetWhat::Modifications { reservation } => {
            let r = client.get(&format!("/v1/reservations/{reservation}/modifications"))?;
            let items = items(&r, "modifications");
            render(out, &r, || modifications_table(&items))
        }
        GetWhat::Workloads { reservation } => {
            let r = match reservation {
                Some(id) => client.get(&format!("/v1/reservations/{id}/workloads"))?,
                None => client.get("/v1/workloads")?,
            };
            let items = items(&r, "workloads");
            render(out, &r, || workloads_table(&items))
        }
        GetWhat::Workload { id } => {
            let r = client.get(&format!("/v1/workloads/{id}"))?;
            render(out, &r, || workloads_table(std::slice::from_ref(&r)))
        }
        GetWhat::Forecast { id } => {
            let r = client.get(&format!("/v1/workloads/{id}/forecast"))?;
            let steps = items(&r, "steps");
            render(out, &r, || forecast_table(&steps))
        }
        GetWhat::ShardRequests {
            workload,
            modification,
            status,
        } => {
            let q = query(&[
                ("workload", workload.map(|w| w.to_string())),
                ("modification", modification.map(|m| m.to_string())),
                ("status", status.clone()),
            ]);
            let r = client.get(&format!("/v1/shard-requests{q}"))?;
            let items = items(&r, "shard_requests");
            render(out, &r, || shard_requests_table(&items))
        }
        GetWhat::Decisions { id, limit } => {
            let r = client.get(&format!("/v1/workloads/{id}/decisions?limit={limit}"))?;
            let items = items(&r, "decisions");
            render(out, &r, || decisions_table(&items))
        }
        GetWhat::Market { host } => {
            let r = client.get(&format!("/v1/hosts/{host}/market"))?;
            render(out, &r, || market_table(&r))
        }
        GetWhat::Hosts => {
            let r = client.get("/v1/hosts")?;
            let items = items(&r, "hosts");
            render(out, &r, || hosts_table(&items))
        }
        GetWhat::Agents => {
            let r = client.get("/v1/agent/hosts")?;
            let rows: Vec<Vec<String>> = r
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let degraded = a["in_force"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|f| {
                            f["degraded"]
                                .as_array()
                                .is_some_and(|d| d.iter().any(|x| !x.is_null()))
                        })
                        .count();
                    vec![
                        a["host"].to_string(),
                        text(&a["name"]),
                        text(&a["state"]),
                        a["seq"].to_string(),
                        a["in_force"].as_array().map_or(0, Vec::len).to_string(),
                        degraded.to_string(),
                        text(&a["planned_by"]),
                    ]
                })
                .collect();
            render(out, &r, || {
                table(
                    &[
                        "HOST",
                        "NAME",
                        "STATE",
                        "SEQ",
                        "WORKLOADS",
                        "DEGRADED",
                        "PLANNED BY",
                    ],
                    &rows,
                )
            })
        }
        GetWhat::Tenants => {
            let r = client.get("/v1/tenants")?;
            let rows: Vec<Vec<String>> = r["tenants"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| vec![t["id"].to_string(), text(&t["name"])])
                .collect();
            render(out, &r, || table(&["ID", "NAME"], &rows))
        }
        GetWhat::Tokens { tenant } => {
            let r = client.get(&format!("/v1/tenants/{tenant}/tokens"))?;
            let rows: Vec<Vec<String>> = r["tokens"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    vec![
                        text(&t["id"]),
                        text(&t["label"]),
                        text(&t["created"]),
                        text(&t["expires"]),
                        text(&t["revoked"]),
                    ]
                })
                .collect();
            render(out, &r, || {
                table(&["ID", "LABEL", "CREATED", "EXPIRES", "REVOKED"], &rows)
            })
        }
    }
}
