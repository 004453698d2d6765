//! `shardex simulate`: the whole system over a recorded trace, with a simulated actuator.
//!
//! Two clouds run the same workloads. The static one reserves each workload's provisioned size
//! and packs them first-fit-decreasing: `hosts_static`. The shardex one starts from one host;
//! each workload, when it first appears, reserves only a guaranteed base (its first measured
//! usage, capped at its provisioned size) on the host where it fits with the most headroom,
//! and the real engine, marketplace and ledger lease it the rest as its forecast asks, up to
//! its provisioned size. A host that runs short moves workloads away; when no host has room,
//! the static provisioner (an unlimited supply of hosts of the same size) adds one:
//! `hosts_shardex` is the peak number of hosts with a workload on them.
//!
//! Time runs on the trace's 5-minute grid. At each step: moves that are done finish; each
//! sample is scored against the allocation in force (decided one step earlier, from samples
//! before that decision only); new workloads are placed; the engine ticks for the next step;
//! then the forecasters see the step's samples.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use rust_decimal::Decimal;
use serde_json::json;
use shardex_core::action;
use shardex_core::billing::{Account, DEFAULT_LENDER_SHARE, Subject, accrue, charge_transaction};
use shardex_core::control::Controller;
use shardex_core::engine::{Engine, EngineParams, RequestStatus};
use shardex_core::market::{PriceBook, PriceCurve, reprice};
use shardex_core::ports::{SimulatedMigrator, StaticProvisioner};
use shardex_core::{
    Action, Horizon, Ledger, PhysicalVector, PriceTable, ResourceKind, ShardSizes, ShardVector,
    Span, TenantId, Tier, Timestamp, Window, WorkloadId,
};
use shardex_forecast::Policy;

use crate::trace::TraceReader;

/// Arguments of `shardex simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Trace folder (samples.csv.gz and workloads.csv).
    #[arg(long, value_name = "DIR")]
    trace: PathBuf,
    /// CPU of one host, in millicores.
    #[arg(long, value_name = "MILLICORES", default_value_t = 64_000)]
    host_cpu: u64,
    /// Memory of one host, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 512 << 30)]
    host_memory: u64,
    /// Forecasting policy of the shardex cloud.
    #[arg(long, value_name = "NAME", default_value = "shardex")]
    policy: String,
    /// Kinds to allocate and score, comma-separated.
    #[arg(
        long,
        value_name = "KINDS",
        value_delimiter = ',',
        default_value = "cpu,memory"
    )]
    kinds: Vec<String>,
    /// Samples in each workload's first stretch of this length are not scored.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    warmup: String,
    /// How long a live migration takes.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    migration_time: String,
    /// Simulate only the first N workloads of the trace.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Simulate only this long from the trace's start (e.g. 2d).
    #[arg(long = "for", value_name = "DURATION")]
    duration: Option<String>,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Feed the forecasters every workload's true usage, whatever its allocation (the figures
    /// before closed loops); by default they see what the simulated host shows.
    #[arg(long)]
    open_loop: bool,
    /// Engine: headroom added on a change, in percent of the target.
    #[arg(long, value_name = "PCT", default_value_t = EngineParams::default().headroom_pct)]
    headroom: u64,
    /// Engine: how long targets must stay under an allocation before it shrinks.
    #[arg(long, value_name = "DURATION", default_value = "15m")]
    down_after: String,
    /// Print hosts and cpu shards used, reserved and allocated at the start of each day
    /// (to standard error).
    #[arg(long)]
    daily: bool,
}

/// One workload's samples, physical units, on the trace's grid.
struct Series {
    name: String,
    provisioned: [Option<u64>; 4],
    /// Grid slot of each sample.
    slots: Vec<u32>,
    /// Per sample, per kind in `ResourceKind::ALL` order; `u64::MAX` where not measured.
    values: Vec<[u64; 4]>,
}

const STEP_S: i64 = 300;
const MISSING: u64 = u64::MAX;
/// A new workload is placed where this many times its first usage fits: its base, and room
/// for what it will lease as its demand moves around it.
const PLACEMENT_FACTOR: u64 = 2;

/// Runs a simulation and prints its report.
pub fn simulate(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let policy: Policy = args.policy.parse()?;
    let mut kinds = Vec::new();
    for k in &args.kinds {
        let k: ResourceKind = k.parse().context("in --kinds")?;
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    let warmup: Span = args.warmup.parse().context("in --warmup")?;
    let migration: Span = args.migration_time.parse().context("in --migration-time")?;
    let limit_span: Option<Span> = args
        .duration
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("in --for")?;
    if args.host_cpu == 0 || args.host_memory == 0 {
        bail!("--host-cpu and --host-memory must be more than zero");
    }
    let sizes = ShardSizes::default();
    // Bandwidth and IOPS of a host are generous: they are scored only if asked for.
    let host_physical =
        PhysicalVector([args.host_cpu, args.host_memory, 100_000_000_000, 1_000_000]);
    let host_cap = sizes.supply_vector(host_physical);

    let started = Instant::now();
    let (trace_name, series, t0) = load(args, limit_span)?;
    if series.is_empty() {
        bail!("the trace {} has no samples", args.trace.display());
    }
    let hosts_static = first_fit_decreasing(&series, &kinds, &sizes, &host_cap)?;

    let engine = EngineParams {
        lead: Span::from_secs(STEP_S as u64),
        headroom_pct: args.headroom,
        down_after: args.down_after.parse().context("in --down-after")?,
        ..EngineParams::default()
    };
    let timing = Timing {
        migration,
        warmup,
        t0,
    };
    let mut sim = Sim::new(&series, &kinds, policy, host_cap, timing, engine)?;
    sim.daily = args.daily;
    sim.open_loop = args.open_loop;
    let last_slot = series
        .iter()
        .filter_map(|s| s.slots.last().copied())
        .max()
        .unwrap_or(0);
    let bar = crate::progress::bar(
        u64::from(last_slot) + 1,
        "{spinner} simulating [{bar:40}] {pos}/{len} steps, {elapsed} elapsed, about {eta} left",
    );
    for slot in 0..=last_slot {
        sim.step(slot)?;
        if let Some(b) = &bar {
            b.set_position(u64::from(slot) + 1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let report = sim.report(&trace_name, policy, hosts_static, &kinds, elapsed, args);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the trace into memory, time-major ready: every workload's samples on the grid.
fn load(
    args: &SimulateArgs,
    limit_span: Option<Span>,
) -> anyhow::Result<(String, Vec<Series>, i64)> {
    let mut reader = TraceReader::open(&args.trace)?;
    let name = reader.name.clone();
    let mut raw = Vec::new();
    while let Some(w) = reader.next_workload()? {
        raw.push(w);
        if args.limit.is_some_and(|l| raw.len() >= l) {
            break;
        }
    }
    let t0 = raw
        .iter()
        .filter_map(|w| w.rows.first().map(|r| r.time.millis()))
        .min()
        .unwrap_or(0);
    let end = limit_span.map(|s| t0.saturating_add(i64::try_from(s.millis()).unwrap_or(i64::MAX)));
    let mut out = Vec::with_capacity(raw.len());
    for w in raw {
        let mut s = Series {
            name: w.name,
            provisioned: w.provisioned,
            slots: Vec::with_capacity(w.rows.len()),
            values: Vec::with_capacity(w.rows.len()),
        };
        for r in w.rows {
            let ms = r.time.millis();
            if end.is_some_and(|e| ms >= e) {
                break;
            }
            let slot = u32::try_from((ms - t0) / (STEP_S * 1000)).unwrap_or(u32::MAX);
            // Two samples in one slot (irregular sources): keep the later one.
            if s.slots.last() == Some(&slot) {
                s.slots.pop();
                s.values.pop();
            }
            s.slots.push(slot);
            s.values.push(r.values.map(|v| v.unwrap_or(MISSING)));
        }
        if !s.slots.is_empty() {
            out.push(s);
        }
    }
    Ok((name, out, t0))
}

/// What a workload is sized at in the static cloud: its provisioned size, or its peak usage
/// where the trace doesn't say.
fn static_size(s: &Series, kinds: &[ResourceKind], sizes: &ShardSizes) -> ShardVector {
    let mut v = ShardVector::ZERO;
    for &k in kinds {
        let amount = s.provisioned[k.index()].unwrap_or_else(|| {
            s.values
                .iter()
                .map(|v| v[k.index()])
                .filter(|&x| x != MISSING)
                .max()
                .unwrap_or(0)
        });
        v = v.with(k, sizes.demand_shards(k, amount));
    }
    v
}

/// Hosts that first-fit-decreasing packing of the static sizes needs.
fn first_fit_decreasing(
    series: &[Series],
    kinds: &[ResourceKind],
    sizes: &ShardSizes,
    host: &ShardVector,
) -> anyhow::Result<usize> {
    let mut items: Vec<(u64, &str, ShardVector)> = Vec::new();
    for s in series {
        let v = static_size(s, kinds, sizes);
        if !v.fits_in(host) {
            bail!(
                "workload {} is provisioned with {v} shards, more than a host has ({host}); pass a bigger --host-cpu or --host-memory",
                s.name
            );
        }
        // Decreasing by its largest share of a host.
        let key = kinds
            .iter()
            .map(|&k| v.get(k).saturating_mul(1_000_000) / host.get(k).max(1))
            .max()
            .unwrap_or(0);
        items.push((key, &s.name, v));
    }
    items.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let mut bins: Vec<ShardVector> = Vec::new();
    for (_, _, v) in items {
        match bins.iter_mut().find(|free| v.fits_in(free)) {
            Some(free) => *free = free.excess_over(&v),
            None => bins.push(host.excess_over(&v)),
        }
    }
    Ok(bins.len())
}

mod sim;

use sim::*;

/// The report as a readable table.
fn table(r: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trace {} ({} workloads), policy {}",
        r["trace"].as_str().unwrap_or(""),
        r["workloads"],
        r["policy"].as_str().unwrap_or("")
    );
    let _ = writeln!(
        out,
        "hosts: static reservations {}, shardex {} ({}% fewer)",
        r["hosts_static"], r["hosts_shardex"], r["hosts_saved_pct"]
    );
    let _ = writeln!(
        out,
        "mean utilisation of hosts in use: {}%",
        r["mean_utilisation_pct"]
    );
    let _ = writeln!(
        out,
        "{:<8} {:>12} {:>14} {:>16}",
        "kind", "shortfall %", "utilisation %", "shard-hours lent"
    );
    if let Some(s) = r["shortfall_samples_pct"].as_object() {
        for (k, v) in s {
            let _ = writeln!(
                out,
                "{:<8} {:>12} {:>14} {:>16}",
                k, v, r["utilisation_pct"][k], r["shard_hours_lent"][k]
            );
        }
    }
    let _ = writeln!(out, "migrations: {}", r["migrations"]);
    let _ = writeln!(out, "shard requests: {}", r["shard_requests"]);
    let _ = writeln!(out, "money: {}", r["money"]);
    let _ = writeln!(out, "elapsed: {} s", r["elapsed_s"]);
    out
}
