//! `shardex ctl`: a kubectl-like client of the tenant-facing API. Tables by default, `-o json`
//! for scripts; the daemon from `--url`/`SHARDEX_URL` (else the data folder's `api.addr`), the
//! token from `--token`/`SHARDEX_TOKEN` (else the data folder's admin token).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::client::Client;

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, pretty.
    Json,
}

/// Arguments of `shardex ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The daemon's address (`host:port` or `http://host:port`).
    #[arg(long, value_name = "URL", env = "SHARDEX_URL", global = true)]
    url: Option<String>,
    /// Bearer token: a tenant's `sxt_…` or the admin's [default: SHARDEX_TOKEN, else the data
    /// folder's admin.token].
    #[arg(long, value_name = "TOKEN", global = true)]
    token: Option<String>,
    /// Data folder of a local daemon (for its address and admin token).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "shardex-data",
        env = "SHARDEX_DATA",
        global = true
    )]
    data: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    output: Output,
    #[command(subcommand)]
    command: CtlCommand,
}

/// What `shardex ctl` does.
#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// List or show objects.
    Get {
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Reserve shards on a host, as the token's tenant.
    Reserve {
        /// The host, by name or id.
        #[arg(long)]
        host: String,
        /// CPU shards.
        #[arg(long, default_value_t = 0)]
        cpu: u64,
        /// Memory shards.
        #[arg(long, default_value_t = 0)]
        memory: u64,
        /// Network shards.
        #[arg(long, default_value_t = 0)]
        net: u64,
        /// IOPS shards.
        #[arg(long, default_value_t = 0)]
        iops: u64,
        /// How long, e.g. 24h.
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// When it starts: now, an RFC 3339 time or +10m.
        #[arg(long)]
        start: Option<String>,
        /// best-effort, standard, premium or critical.
        #[arg(long)]
        tier: Option<String>,
    },
    /// Modify a reservation for a while: `shardex ctl modify 3 cpu=+10% --for 1h`.
    Modify(ModifyArgs),
    /// What a modification would cost and do, committing nothing (a dry run).
    Quote(ModifyArgs),
    /// Cancel a reservation or a modification.
    Cancel {
        #[command(subcommand)]
        what: CancelWhat,
    },
    /// Create a tenant (admin); prints its first token once.
    CreateTenant {
        /// Its name.
        name: String,
        /// When its first token expires, as a duration from now (e.g. 90d).
        #[arg(long, value_name = "DURATION")]
        token_expires_in: Option<String>,
    },
    /// Issue another token for a tenant (admin); printed once.
    CreateToken {
        /// The tenant, by name or id.
        tenant: String,
        /// What to call it.
        #[arg(long)]
        label: Option<String>,
        /// When it expires, as a duration from now.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// Issue a token for a host's agent in fleet mode (admin, on a broker); printed once.
    AgentToken {
        /// The host's name, as its agent registers it.
        host: String,
    },
    /// Revoke every agent token of a host (admin, on a broker): its agent stops at its next
    /// call.
    RevokeAgentToken {
        /// The host's name.
        host: String,
    },
    /// Revoke a token by its public id.
    RevokeToken {
        /// The id (the part after `sxt_`).
        id: String,
    },
    /// The token's tenant's invoice (the admin names `--tenant`).
    Invoice {
        /// How far back, e.g. 30d [default: everything].
        #[arg(long, value_name = "DURATION")]
        period: Option<String>,
        /// Whose (admin only).
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// A modification on the command line.
#[derive(Debug, Args)]
struct ModifyArgs {
    /// The reservation's id.
    reservation: u64,
    /// Changes as KIND=CHANGE: cpu=+10%, memory=+4, iops=-25%, net==8.
    #[arg(required = true, value_name = "KIND=CHANGE")]
    changes: Vec<String>,
    /// How long it lasts, e.g. 1h.
    #[arg(long = "for", value_name = "DURATION")]
    duration: String,
    /// When it starts: now, an RFC 3339 time or +10m (then it is scheduled).
    #[arg(long)]
    start: Option<String>,
    /// Makes a retry safe: the same key and change apply once.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

/// What `ctl get` lists or shows.
#[derive(Debug, Subcommand)]
enum GetWhat {
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
    /// The workloads inside a reservation.
    Workloads {
        /// The reservation's id.
        reservation: u64,
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
}

/// What `ctl cancel` ends.
#[derive(Debug, Subcommand)]
enum CancelWhat {
    /// A reservation, now.
    Reservation {
        /// Its id.
        id: u64,
    },
    /// A modification, now.
    Modification {
        /// The reservation's id.
        reservation: u64,
        /// The modification's id.
        id: u64,
    },
}

/// Runs `shardex ctl`.
pub fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    let client = Client::connect_as(&args.data, args.url.as_deref(), args.token.as_deref())?;
    let out = args.output;
    match args.command {
        CtlCommand::Get { what } => get(&client, what, out),
        CtlCommand::Reserve {
            host,
            cpu,
            memory,
            net,
            iops,
            duration,
            start,
            tier,
        } => {
            let mut body = json!({"host": host, "shards": {"cpu": cpu, "memory": memory, "net": net, "iops": iops}, "for": duration});
            if let Some(s) = start {
                body["start"] = s.into();
            }
            if let Some(t) = tier {
                body["tier"] = t.into();
            }
            let r = client.post("/v1/reservations", &body)?;
            print(out, &r, || reservations_table(std::slice::from_ref(&r)))
        }
        CtlCommand::Modify(m) => modify(&client, &m, false, out),
        CtlCommand::Quote(m) => modify(&client, &m, true, out),
        CtlCommand::Cancel { what } => {
            let (path, r) = match what {
                CancelWhat::Reservation { id } => {
                    let p = format!("/v1/reservations/{id}");
                    let r = client.delete(&p)?;
                    (p, r)
                }
                CancelWhat::Modification { reservation, id } => {
                    let p = format!("/v1/reservations/{reservation}/modifications/{id}");
                    let r = client.delete(&p)?;
                    (p, r)
                }
            };
            print(out, &r, || {
                format!("cancelled {path}: {}", r["state"].as_str().unwrap_or("?"))
            })
        }
        CtlCommand::CreateTenant {
            name,
            token_expires_in,
        } => {
            let mut body = json!({"name": name});
            if let Some(e) = token_expires_in {
                body["token_expires_in"] = e.into();
            }
            let r = client.post("/v1/tenants", &body)?;
            print(out, &r, || {
                format!(
                    "tenant {} ({})\ntoken {} (shown once; keep it)",
                    r["tenant"]["name"].as_str().unwrap_or("?"),
                    r["tenant"]["id"],
                    r["token"]["token"].as_str().unwrap_or("?")
                )
            })
        }
        CtlCommand::CreateToken {
            tenant,
            label,
            expires_in,
        } => {
            let body = json!({"label": label, "expires_in": expires_in});
            let r = client.post(&format!("/v1/tenants/{tenant}/tokens"), &body)?;
            print(out, &r, || {
                format!(
                    "token {} (shown once; keep it)",
                    r["token"].as_str().unwrap_or("?")
                )
            })
        }
        CtlCommand::AgentToken { host } => {
            let r = client.post("/v1/agent/tokens", &json!({ "host": host }))?;
            if out == Output::Table {
                // The token alone on standard output, so that `> host.token` keeps just it.
                eprintln!(
                    "host {host}'s agent token, shown once: give it to `shardex agent --token-file`"
                );
            }
            print(out, &r, || r["token"].as_str().unwrap_or("?").to_string())
        }
        CtlCommand::RevokeAgentToken { host } => {
            let r = client.delete(&format!("/v1/agent/tokens/{host}"))?;
            print(out, &r, || {
                format!("revoked {} token(s) of host {host}", r["revoked"])
            })
        }
        CtlCommand::RevokeToken { id } => {
            client.delete(&format!("/v1/tokens/{id}"))?;
            print(out, &json!({"revoked": id}), || {
                format!("revoked token {id}")
            })
        }
        CtlCommand::Invoice { period, tenant } => {
            let mut q = Vec::new();
            if let Some(p) = period {
                q.push(format!("period={p}"));
            }
            if let Some(t) = tenant {
                q.push(format!("tenant={t}"));
            }
            let r = client.get(&format!("/v1/invoice?{}", q.join("&")))?;
            print(out, &r, || invoice_table(&r))
        }
    }
}

fn print(out: Output, v: &Value, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    match out {
        Output::Json => outln!("{}", serde_json::to_string_pretty(v)?),
        Output::Table => outln!("{}", table()),
    }
    Ok(())
}

fn get(client: &Client, what: GetWhat, out: Output) -> anyhow::Result<()> {
    match what {
        GetWhat::Reservations { host, state } => {
            let mut items = Vec::new();
            let mut after = 0u64;
            loop {
                let mut path = format!("/v1/reservations?limit=1000&after={after}");
                if let Some(h) = &host {
                    path.push_str(&format!("&host={h}"));
                }
                if let Some(s) = &state {
                    path.push_str(&format!("&state={s}"));
                }
                let page = client.get(&path)?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                match page["next"].as_u64() {
                    Some(n) => after = n,
                    None => break,
                }
            }
            let v = Value::Array(items.clone());
            print(out, &v, || reservations_table(&items))
        }
        GetWhat::Reservation { id } => {
            let r = client.get(&format!("/v1/reservations/{id}"))?;
            print(out, &r, || reservations_table(std::slice::from_ref(&r)))
        }
        GetWhat::Modifications { reservation } => {
            let r = client.get(&format!("/v1/reservations/{reservation}/modifications"))?;
            let items = r["modifications"].as_array().cloned().unwrap_or_default();
            print(out, &r, || modifications_table(&items))
        }
        GetWhat::Workloads { reservation } => {
            let r = client.get(&format!("/v1/reservations/{reservation}/workloads"))?;
            let items = r["workloads"].as_array().cloned().unwrap_or_default();
            print(out, &r, || workloads_table(&items))
        }
        GetWhat::Workload { id } => {
            let r = client.get(&format!("/v1/workloads/{id}"))?;
            print(out, &r, || workloads_table(std::slice::from_ref(&r)))
        }
        GetWhat::Forecast { id } => {
            let r = client.get(&format!("/v1/workloads/{id}/forecast"))?;
            let mut rows = Vec::new();
            for step in r["steps"].as_array().into_iter().flatten() {
                for (kind, q) in step["kinds"].as_object().into_iter().flatten() {
                    rows.push(vec![
                        text(&step["at"]),
                        kind.clone(),
                        text(&q["p50"]),
                        text(&q["p90"]),
                        text(&q["p95"]),
                        text(&q["p99"]),
                        text(&q["shards"][3]),
                    ]);
                }
            }
            print(out, &r, || {
                table(
                    &["AT", "KIND", "P50", "P90", "P95", "P99", "P99 SHARDS"],
                    &rows,
                )
            })
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
            print(out, &r, || {
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
            print(out, &r, || table(&["ID", "NAME"], &rows))
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
            print(out, &r, || {
                table(&["ID", "LABEL", "CREATED", "EXPIRES", "REVOKED"], &rows)
            })
        }
    }
}

fn modify(client: &Client, m: &ModifyArgs, dry_run: bool, out: Output) -> anyhow::Result<()> {
    let mut changes = serde_json::Map::new();
    for c in &m.changes {
        let (kind, change) = c
            .split_once('=')
            .with_context(|| format!("{c:?} is not KIND=CHANGE (e.g. cpu=+10%)"))?;
        if changes.insert(kind.to_string(), change.into()).is_some() {
            bail!("{kind} is changed twice");
        }
    }
    let mut body = json!({"changes": changes, "for": m.duration});
    if let Some(s) = &m.start {
        body["start"] = s.clone().into();
        body["delivery"] = "scheduled".into();
    }
    let path = format!(
        "/v1/reservations/{}/modifications{}",
        m.reservation,
        if dry_run { "?dry_run=true" } else { "" }
    );
    let headers: Vec<(&str, &str)> = m
        .idempotency_key
        .as_deref()
        .map(|k| ("Idempotency-Key", k))
        .into_iter()
        .collect();
    let r = client.post_with(&path, &body, &headers)?;
    print(out, &r, || {
        let res = &r["reservation"];
        format!(
            "{}{}: reservation {} now cpu {} memory {} net {} iops {}; cost {} until {}",
            if dry_run { "dry run, would be " } else { "" },
            text(&r["outcome"]),
            res["id"],
            res["now"]["cpu"],
            res["now"]["memory"],
            res["now"]["net"],
            res["now"]["iops"],
            text(&r["quote"]["cost"]),
            text(&r["quote"]["until"]),
        )
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn shards(v: &Value) -> String {
    format!("{}/{}/{}/{}", v["cpu"], v["memory"], v["net"], v["iops"])
}

fn reservations_table(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| {
            vec![
                r["id"].to_string(),
                r["tenant"].to_string(),
                text(&r["host"]),
                text(&r["tier"]),
                text(&r["state"]),
                shards(&r["now"]),
                text(&r["window"]["start"]),
                text(&r["window"]["end"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TENANT",
            "HOST",
            "TIER",
            "STATE",
            "NOW cpu/mem/net/iops",
            "START",
            "END",
        ],
        &rows,
    )
}

fn workloads_table(items: &[Value]) -> String {
    let mut rows = Vec::new();
    for w in items {
        for (kind, k) in w["kinds"].as_object().into_iter().flatten() {
            rows.push(vec![
                w["id"].to_string(),
                text(&w["name"]),
                kind.clone(),
                text(&k["usage"]),
                if k["censored"] == true {
                    "yes".into()
                } else {
                    "no".into()
                },
                text(&k["entitlement"]),
                text(&k["limit_in_force"]),
            ]);
        }
    }
    table(
        &[
            "ID",
            "NAME",
            "KIND",
            "USAGE",
            "AT LIMIT",
            "ENTITLEMENT",
            "IN FORCE",
        ],
        &rows,
    )
}

fn modifications_table(items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|m| {
            let changes = m["changes"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k}{}", text(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                m["id"].to_string(),
                changes,
                text(&m["state"]),
                text(&m["window"]["start"]),
                text(&m["window"]["end"]),
            ]
        })
        .collect();
    table(&["ID", "CHANGES", "STATE", "START", "END"], &rows)
}

fn invoice_table(r: &Value) -> String {
    let rows: Vec<Vec<String>> = r["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            vec![
                text(&l["what"]),
                text(&l["shard_hours"]),
                text(&l["unit_price"]),
                text(&l["amount"]),
            ]
        })
        .collect();
    format!(
        "{}\ntotal {} ({} to {})",
        table(&["WHAT", "SHARD-HOURS", "UNIT PRICE", "AMOUNT"], &rows),
        text(&r["total"]),
        text(&r["from"]),
        text(&r["to"])
    )
}

/// Aligned columns.
fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(head.iter().map(|h| (*h).to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}
