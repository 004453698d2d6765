//! `shardex agent --broker URL`: fleet mode's host agent. It registers its host and capacity
//! with its host token, fetches what its workloads' limits should be whenever a broker has a
//! newer ledger entry (`shardex_agent::Targets` of this host only), and every sample period
//! samples the host's workloads, applies and reads back their limits (the same steps as
//! `shardex run`, `shardex_agent::Agent`) and reports to a broker: samples (a workload held at a limit is raised at once by
//! the broker), what is in force, and the leases a degraded kind gives back. The plan is made
//! by the broker that holds the host.
//!
//! # Rules
//! * **Brokers unreachable**: the limits in force stay (they are the ledger's as last seen:
//!   nothing is lowered because a broker is away); samples are kept (the newest
//!   [`PENDING_MAX`]) and sent with the next report that gets through; every broker given is
//!   tried in turn.
//! * **Restart**: a new agent reads back every workload's limits and applies the ledger's
//!   where they differ: what is in force converges to the ledger within one sample period of
//!   its first ledger fetch.
//! * **Stop** (SIGTERM, Ctrl-C): the limits stay in force; the host goes offline after the
//!   brokers' timeout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shardex_agent::Targets;
use shardex_api::wire::agent::{
    HostTargets, InForceReport, Register, Registered, Report, Reported, SampleReport,
};
use shardex_core::{Action, HostId, ResourceKind, ShardSizes, Timestamp};

use crate::run::clock;

/// Samples kept while no broker answers.
pub const PENDING_MAX: usize = 100_000;

/// `shardex agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The brokers' addresses, comma-separated, tried in turn (e.g.
    /// `http://broker-a:7070,http://broker-b:7070`).
    #[arg(
        long,
        value_name = "URL",
        env = "SHARDEX_BROKER",
        value_delimiter = ',',
        required = true
    )]
    broker: Vec<String>,
    /// The file holding this host's agent token (`shardex ctl agent-token HOST` makes one).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "host.token",
        env = "SHARDEX_HOST_TOKEN_FILE"
    )]
    token_file: PathBuf,
    /// Configuration file: `[host]` capacity overrides, `[engine]` sampling, actuators and
    /// reconciliation.
    #[arg(long, value_name = "FILE", env = "SHARDEX_CONFIG")]
    config: Option<PathBuf>,
    /// Log lines for people (`human`) or one JSON object each (`json`), on standard error.
    #[arg(
        long,
        value_name = "FORMAT",
        env = "SHARDEX_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: crate::LogFormat,
}

/// The brokers, as the agent speaks to them.
struct Brokers {
    urls: Vec<String>,
    /// The one that answered last: tried first.
    current: usize,
    token: String,
    http: ureq::Agent,
}

/// Why a call failed: no broker answered, or one refused.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("no broker answered ({0})")]
    Unreachable(String),
    #[error("{what}: refused ({status}): {detail}")]
    Refused {
        what: String,
        status: u16,
        detail: String,
    },
}

impl Brokers {
    fn new(urls: Vec<String>, token: String) -> Self {
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let urls = urls
            .into_iter()
            .map(|u| {
                let u = u.trim().trim_end_matches('/').to_string();
                if u.starts_with("http://") || u.starts_with("https://") {
                    u
                } else {
                    format!("http://{u}")
                }
            })
            .collect();
        Self {
            urls,
            current: 0,
            token,
            http,
        }
    }

    /// `method path` on each broker in turn until one answers; its status, headers' seq and
    /// body.
    fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Option<u64>, Vec<u8>), CallError> {
        let mut why = Vec::new();
        for i in 0..self.urls.len() {
            let at = (self.current + i) % self.urls.len();
            let url = format!("{}{path}", self.urls[at]);
            let auth = format!("Bearer {}", self.token);
            let sent = match (method, &body) {
                ("GET", _) => self.http.get(&url).header("Authorization", &auth).call(),
                (_, b) => self
                    .http
                    .post(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .send(b.clone().unwrap_or_default()),
            };
            match sent {
                Ok(mut r) => {
                    self.current = at;
                    let status = r.status().as_u16();
                    let seq = r
                        .headers()
                        .get("x-shardex-seq")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok());
                    let bytes = r
                        .body_mut()
                        .with_config()
                        .limit(1 << 30)
                        .read_to_vec()
                        .map_err(|e| CallError::Unreachable(format!("{url}: {e}")))?;
                    if status >= 500 {
                        why.push(format!("{url}: {status}"));
                        continue;
                    }
                    if status >= 400 {
                        let v: serde_json::Value =
                            serde_json::from_slice(&bytes).unwrap_or_default();
                        let detail = v.get("detail").and_then(|d| d.as_str()).map_or_else(
                            || String::from_utf8_lossy(&bytes).into_owned(),
                            str::to_string,
                        );
                        return Err(CallError::Refused {
                            what: format!("{method} {path}"),
                            status,
                            detail,
                        });
                    }
                    return Ok((status, seq, bytes));
                }
                Err(e) => why.push(format!("{url}: {e}")),
            }
        }
        Err(CallError::Unreachable(why.join("; ")))
    }

    fn post<T: serde::Serialize, R: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        body: &T,
    ) -> Result<R, CallError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CallError::Refused {
            what: format!("POST {path}"),
            status: 0,
            detail: format!("could not encode the body: {e}"),
        })?;
        let (_, _, answer) = self.call("POST", path, Some(bytes))?;
        serde_json::from_slice(&answer).map_err(|e| CallError::Refused {
            what: format!("POST {path}"),
            status: 200,
            detail: format!("an answer this agent can't read: {e}"),
        })
    }

    /// The host's targets when a broker has newer ones than `after`.
    fn targets(&mut self, after: Option<u64>) -> Result<Option<(u64, Targets)>, CallError> {
        let path = match after {
            Some(s) => format!("/v1/agent/targets?after={s}"),
            None => "/v1/agent/targets".to_string(),
        };
        let (status, _, bytes) = self.call("GET", &path, None)?;
        if status == 204 {
            return Ok(None);
        }
        let got: HostTargets<Targets> =
            serde_json::from_slice(&bytes).map_err(|e| CallError::Refused {
                what: "GET /v1/agent/targets".into(),
                status,
                detail: format!("an answer this agent can't read: {e}"),
            })?;
        Ok(Some((got.seq, got.targets)))
    }
}

/// Runs until SIGTERM or Ctrl-C.
pub fn agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let mut config =
        crate::config::Config::load(args.config.as_deref(), &PathBuf::from("shardex.toml"))
            .map(|(c, _)| c)
            .context("could not read the configuration")?;
    crate::run::init_logs(args.log_format);
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| {
            format!(
                "could not read the host token {}",
                args.token_file.display()
            )
        })?
        .trim()
        .to_string();
    if shardex_api::auth::parse_host_token(&token).is_none() {
        bail!(
            "{} does not hold a host agent token (sxh_…); the admin makes one with `shardex ctl agent-token HOST` or POST /v1/agent/tokens",
            args.token_file.display()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("could not handle signals")?;
    }
    let mut brokers = Brokers::new(args.broker, token);
    let (_, physical) = crate::run::machine_capacity(&config)?;
    let ask = Register {
        cpu_millicores: physical.0[0],
        memory_bytes: physical.0[1],
        net_bps: physical.0[2],
        iops: physical.0[3],
    };
    // Registered, or refused for good (a bad token, a host that can't shrink): a broker that
    // is only away is waited for.
    let registered: Registered = loop {
        match brokers.post("/v1/agent/register", &ask) {
            Ok(r) => break r,
            Err(CallError::Refused {
                what,
                status,
                detail,
            }) => {
                bail!("{what}: refused ({status}): {detail}")
            }
            Err(e) => {
                tracing::warn!(error = %e, "waiting for a broker");
                if stop.load(Ordering::Relaxed) {
                    return Ok(ExitCode::SUCCESS);
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    };
    let host = HostId(registered.host);
    let [cpu, memory, net, iops] = registered.shard_sizes;
    // The fleet's shard sizes, whatever this host's file says.
    config.shards = ShardSizes {
        cpu_millicores: cpu,
        memory_bytes: memory,
        net_bps: net,
        iops,
    };
    tracing::info!(host = %registered.name, id = host.0, capacity = ?registered.capacity, "registered with the fleet");
    let hierarchy = shardex_host::cgroup::Hierarchy::probe();
    let mut actuator = crate::run::build_actuator(&config.engine, hierarchy.as_ref())?;
    let mut sampler = crate::run::build_sampler(&config, hierarchy.as_ref())?;
    let provisioner = config.provisioner.build(&config.shards);
    let built = crate::run::agent_with(&config, provisioner)?;
    let mut params = *built.params();
    params.act = true;
    params.host = Some(host);
    let mut agent = shardex_agent::Agent::new(built.profiler, built.controller, params);
    let every = Duration::from_millis(registered.report_every_ms.max(100));
    let mut copy: Option<(u64, Targets)> = None;
    let mut pending: std::collections::VecDeque<SampleReport> = Default::default();
    let mut refetch = true;
    let mut away_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if refetch {
            match brokers.targets(copy.as_ref().map(|c| c.0)) {
                Ok(Some(fresh)) => copy = Some(fresh),
                Ok(None) => {}
                Err(e) => {
                    if away_since.is_none() {
                        tracing::warn!(error = %e, "can't fetch this host's limits; those in force stay");
                        away_since = Some(Instant::now());
                    }
                }
            }
        }
        if let Some((seq, targets)) = &copy {
            let now = clock::now(Timestamp::EPOCH)?;
            let sampled = agent.sample_targets(targets, &mut sampler, now);
            for (w, name) in &sampled.unresolved {
                tracing::warn!(workload = %w, name = %name, "the sampler can't find this workload on this host: it is neither sampled nor limited");
            }
            for e in &sampled.errors {
                tracing::warn!(error = %e, "sampling failed");
            }
            let (done, releases) = agent.actuate_targets(targets, &mut actuator, now);
            for a in &done {
                match &a.outcome {
                    shardex_agent::Outcome::Applied { .. }
                    | shardex_agent::Outcome::NotYet { .. } => {
                        tracing::debug!(name = %a.name, kind = %a.kind, outcome = ?a.outcome, "reconciled")
                    }
                    other => {
                        tracing::info!(name = %a.name, kind = %a.kind, outcome = ?other, "reconciled")
                    }
                }
            }
            for (w, at, reading) in sampled.readings {
                if pending.len() == PENDING_MAX {
                    pending.pop_front();
                }
                pending.push_back(SampleReport {
                    workload: w.0,
                    at_ms: at.millis(),
                    reading,
                });
            }
            let in_force = targets
                .workloads
                .iter()
                .filter_map(|w| {
                    let s = agent.reconciler.status(w.id)?;
                    Some(InForceReport {
                        workload: w.id.0,
                        want: ResourceKind::ALL.map(|k| s.want.hard(k)),
                        in_force: s.in_force,
                        degraded: s.degraded,
                    })
                })
                .collect();
            let release = releases
                .iter()
                .filter_map(|a| match a {
                    Action::Release(r) => Some(r.lease.0),
                    _ => None,
                })
                .collect();
            let report = Report {
                seq: *seq,
                samples: pending.iter().copied().collect(),
                in_force,
                release,
            };
            match brokers.post::<_, Reported>("/v1/agent/report", &report) {
                Ok(answer) => {
                    if let Some(t) = away_since.take() {
                        tracing::info!(after_s = t.elapsed().as_secs(), "a broker answers again");
                    }
                    pending.clear();
                    refetch = answer.seq != *seq;
                }
                Err(CallError::Refused {
                    what,
                    status,
                    detail,
                }) if status == 401 => {
                    bail!("{what}: refused ({status}): {detail}; was this host's token revoked?")
                }
                Err(e @ CallError::Refused { .. }) => {
                    // Sent again it would be refused again: said, and dropped.
                    tracing::error!(error = %e, dropped = pending.len(), "a broker refused this host's report");
                    pending.clear();
                    refetch = true;
                }
                Err(e) => {
                    refetch = true;
                    if away_since.is_none() {
                        tracing::warn!(error = %e, kept = pending.len(), "the report did not get through; samples are kept for the next one");
                        away_since = Some(Instant::now());
                    }
                }
            }
        } else {
            refetch = true;
        }
        let left = every.saturating_sub(started.elapsed());
        let until = Instant::now() + left;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
    }
    tracing::info!("stopped; the limits in force stay");
    Ok(ExitCode::SUCCESS)
}
