//! `shardex ctl`: a kubectl-like client of the tenant-facing API. Tables by default, `-o json`
//! or `-o yaml` for scripts, `get -w` to watch a list; the daemon from `--url`/`SHARDEX_URL` (else the data folder's `api.addr`), the
//! token from `--token`/`SHARDEX_TOKEN` (else the data folder's admin token).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::client::Client;

mod describe;
mod events;
mod get;
mod tables;

use describe::{DescribeWhat, describe};
use events::{EventsArgs, events};
use get::{GetWhat, get};
use tables::*;

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, pretty.
    Json,
    /// The same document as YAML.
    Yaml,
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
        /// Keep watching: print it again whenever it changes (every 2 s), until Ctrl-C.
        #[arg(short = 'w', long)]
        watch: bool,
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Everything about one object, for a person: `describe workload 7`.
    Describe {
        #[command(subcommand)]
        what: DescribeWhat,
    },
    /// The event stream: one page, or `-f` to follow it as it happens.
    Events(EventsArgs),
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
        CtlCommand::Get { what, watch } => get(&client, &what, out, watch),
        CtlCommand::Describe { what } => describe(&client, &what, out),
        CtlCommand::Events(a) => events(&client, &a, out),
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
            let q = query(&[("period", period), ("tenant", tenant)]);
            let r = client.get(&format!("/v1/invoice{q}"))?;
            print(out, &r, || invoice_table(&r))
        }
    }
}

/// `v` as `out` asks: the table `table` lays out, or the document as JSON or YAML.
fn render(out: Output, v: &Value, table: impl FnOnce() -> String) -> anyhow::Result<String> {
    Ok(match out {
        Output::Json => serde_json::to_string_pretty(v)?,
        Output::Yaml => serde_norway::to_string(v)?.trim_end().to_string(),
        Output::Table => table(),
    })
}

fn print(out: Output, v: &Value, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    outln!("{}", render(out, v, table)?);
    Ok(())
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
        let mut s = format!(
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
        );
        if let Some(why) = r["reason"].as_str() {
            s.push_str(&format!("\nwhy: {why}"));
        }
        if let (Some(id), false) = (
            r["modification"]["id"].as_u64(),
            r["shard_requests"].is_null(),
        ) {
            s.push_str(&format!(
                "\nfollow: shardex ctl get modifications {} (modification {id}), shardex ctl get shard-requests --modification {id}",
                res["id"]
            ));
        }
        s
    })
}
