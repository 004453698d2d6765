//! `shardex replay`: every policy over a recorded trace, scored the same way.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, mpsc};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use shardex_core::{PriceTable, ResourceKind, ShardSizes, Span};
use shardex_forecast::Policy;
use shardex_forecast::replay::{
    Loop, PlotPoint, ReplayConfig, Report, Tallies, WorkloadTrace, replay_workload,
};

use shardex_forecast::frontier::BUDGETS_PCT;

use crate::plot;
use crate::trace::TraceReader;

/// Arguments of `shardex replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Trace folder (samples.csv.gz and workloads.csv).
    #[arg(long, value_name = "DIR")]
    trace: PathBuf,
    /// Policy to compare (repeat for several) [default: all].
    #[arg(long = "policy", value_name = "NAME")]
    policies: Vec<String>,
    /// Kinds to score, comma-separated [default: every kind].
    #[arg(long, value_name = "KINDS", value_delimiter = ',')]
    kinds: Vec<String>,
    /// Actuation lead time: a decision takes effect this long after it is made.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    lead: String,
    /// Samples in each workload's first stretch of this length are not scored.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    warmup: String,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Feed every policy the trace's true usage, whatever its allocation (the figures before
    /// closed loops); by default each policy sees what a host would show it.
    #[arg(long)]
    open_loop: bool,
    /// Draw this workload's usage, forecast band and allocations.
    #[arg(long, value_name = "WORKLOAD", requires = "out")]
    plot: Option<String>,
    /// With --plot: draw from this long after the workload's first sample (e.g. `2d`).
    #[arg(long, value_name = "DURATION", requires = "plot")]
    from: Option<String>,
    /// With --plot: draw up to this long after the workload's first sample (e.g. `3d`).
    #[arg(long, value_name = "DURATION", requires = "plot")]
    to: Option<String>,
    /// SVG file for --plot or --frontier.
    #[arg(long, value_name = "FILE.svg")]
    out: Option<PathBuf>,
    /// Also run shardex at a range of shortfall budgets and report, per kind and baseline,
    /// shardex's slack at that baseline's realised shortfall (interpolated); with --out, draw
    /// slack against shortfall.
    #[arg(long, conflicts_with_all = ["budget", "plot"])]
    frontier: bool,
    /// Replay only the first N workloads of the trace.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Worker threads [default: the machine's cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Also write per-workload figures to this CSV file.
    #[arg(long, value_name = "FILE.csv")]
    by_workload: Option<PathBuf>,
    /// Shortfall budgets of the shardex policy per kind, e.g. `cpu=1%,memory=0.1%`: the
    /// share of samples its allocation may leave short, tracked online.
    #[arg(long, value_name = "KIND=P%,...")]
    budget: Option<String>,
    /// Override parameters of the shardex policy, `name=value,...` (for experiments).
    #[arg(long, value_name = "PARAMS", hide = true)]
    tune: Option<String>,
}

/// Runs a replay and prints its report.
pub fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let policies = if args.policies.is_empty() {
        Policy::ALL.to_vec()
    } else {
        let mut ps = Vec::new();
        for name in &args.policies {
            let p: Policy = name.parse()?;
            if !ps.contains(&p) {
                ps.push(p);
            }
        }
        ps
    };
    let kinds = if args.kinds.is_empty() {
        ResourceKind::ALL.to_vec()
    } else {
        let mut ks = Vec::new();
        for k in &args.kinds {
            let k: ResourceKind = k.parse().with_context(|| "in --kinds".to_string())?;
            if !ks.contains(&k) {
                ks.push(k);
            }
        }
        ks
    };
    let lead: Span = args.lead.parse().context("in --lead")?;
    let warmup: Span = args.warmup.parse().context("in --warmup")?;
    if lead.is_zero() {
        bail!(
            "--lead must be longer than zero: a decision can't take effect at the moment it is made"
        );
    }
    if args.out.is_some() && args.plot.is_none() && !args.frontier {
        bail!("--out names the SVG of --plot or --frontier: give one of them");
    }
    let mut shardex = shardex_forecast::adaptive::Params::default()
        .with_overrides(args.tune.as_deref().unwrap_or(""))
        .map_err(|e| anyhow::anyhow!("in --tune: {e}"))?;
    if let Some(b) = &args.budget {
        shardex.budgets =
            shardex_forecast::budget::parse(b).map_err(|e| anyhow::anyhow!("in --budget: {e}"))?;
    }
    let config = ReplayConfig {
        mode: if args.open_loop {
            Loop::OpenLoop
        } else {
            Loop::ClosedLoop
        },
        policies,
        kinds,
        lead,
        warmup,
        sizes: ShardSizes::default(),
        prices: PriceTable::default(),
        shardex,
    };
    // The frontier's sweep: shardex alone at each budget, on the same workloads in one pass.
    let sweep: Vec<ReplayConfig> = if args.frontier {
        BUDGETS_PCT
            .iter()
            .map(|b| {
                let mut c = config.clone();
                c.policies = vec![Policy::Shardex];
                c.shardex.budgets = [b / 100.0; 4];
                c
            })
            .collect()
    } else {
        Vec::new()
    };
    let range = |d: &Option<String>, what: &str| -> anyhow::Result<Option<Span>> {
        d.as_deref()
            .map(|d| d.parse::<Span>().with_context(|| format!("in {what}")))
            .transpose()
    };
    let (from, to) = (range(&args.from, "--from")?, range(&args.to, "--to")?);
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        bail!("--from ({f}) must come before --to ({t})");
    }
    let mut reader = TraceReader::open(&args.trace)?;
    if let Some(name) = &args.plot
        && !reader.lists(name)
    {
        // Before reading a single sample: the trace's list of workloads says it.
        bail!(
            "workload {name:?} is not in {}",
            args.trace.join("workloads.csv").display()
        );
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let bar = crate::progress::bar(
        reader.total_bytes,
        "{spinner} replaying [{bar:40}] {percent:>3}% of the trace, {elapsed} elapsed, about {eta} left",
    );
    let started = Instant::now();

    let (tx, rx) = mpsc::sync_channel::<WorkloadTrace>(threads * 2);
    let rx = Mutex::new(rx);
    let plot_points: Mutex<Option<Vec<PlotPoint>>> = Mutex::new(None);
    let per_workload: Mutex<Vec<String>> = Mutex::new(Vec::new());
    type Totals = (Tallies, Vec<Tallies>);
    let ((tallies, swept), workloads) =
        std::thread::scope(|scope| -> anyhow::Result<(Totals, usize)> {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> anyhow::Result<Totals> {
                        let mut mine = Tallies::default();
                        let mut mine_swept = vec![Tallies::default(); sweep.len()];
                        loop {
                            let next = rx
                                .lock()
                                .map_err(|_| anyhow::anyhow!("a worker panicked"))?
                                .recv();
                            let Ok(w) = next else {
                                return Ok((mine, mine_swept));
                            };
                            for (c, t) in sweep.iter().zip(mine_swept.iter_mut()) {
                                t.merge(&replay_workload(&w, c, None)?);
                            }
                            let wants_plot = args.plot.as_deref() == Some(w.name.as_str());
                            let mut points = Vec::new();
                            let t =
                                replay_workload(&w, &config, wants_plot.then_some(&mut points))?;
                            if args.by_workload.is_some() {
                                let mut rows = Vec::new();
                                for ((p, k), tally) in &t.0 {
                                    let f = tally.figures();
                                    let mean = if tally.samples > 0 {
                                        tally.used / u128::from(tally.samples)
                                    } else {
                                        0
                                    };
                                    rows.push(format!(
                                        "{},{},{},{},{},{},{},{}",
                                        w.name,
                                        p,
                                        k,
                                        f.samples,
                                        mean,
                                        f.slack_pct,
                                        f.shortfall_samples_pct,
                                        f.changes_per_hour
                                    ));
                                }
                                per_workload
                                    .lock()
                                    .map_err(|_| anyhow::anyhow!("a worker panicked"))?
                                    .extend(rows);
                            }
                            if wants_plot {
                                *plot_points
                                    .lock()
                                    .map_err(|_| anyhow::anyhow!("a worker panicked"))? =
                                    Some(points);
                            }
                            mine.merge(&t);
                        }
                    })
                })
                .collect();
            let mut count = 0usize;
            let read_result = (|| -> anyhow::Result<()> {
                while let Some(w) = reader.next_workload()? {
                    count += 1;
                    if let Some(b) = &bar {
                        b.set_position(reader.progress.load(Ordering::Relaxed));
                    }
                    if tx.send(w).is_err() {
                        break;
                    }
                    if args.limit.is_some_and(|l| count >= l) {
                        break;
                    }
                }
                Ok(())
            })();
            drop(tx);
            let mut total = Tallies::default();
            let mut total_swept = vec![Tallies::default(); sweep.len()];
            for w in workers {
                let (t, s) = w
                    .join()
                    .map_err(|_| anyhow::anyhow!("a replay worker panicked"))??;
                total.merge(&t);
                for (a, b) in total_swept.iter_mut().zip(&s) {
                    a.merge(b);
                }
            }
            read_result?;
            Ok(((total, total_swept), count))
        })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let report = Report::new(&reader.name, &config, &tallies);
    let frontier = args
        .frontier
        .then(|| crate::frontier::Frontier::new(&config, &tallies, &swept));
    // Each sample of each kind, decided by every policy.
    let rows_scored = tallies.samples();

    if let (Some(f), Some(out)) = (&frontier, &args.out) {
        std::fs::write(out, f.svg(&reader.name))
            .with_context(|| format!("could not write {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    if let (Some(name), Some(out)) = (&args.plot, &args.out) {
        let mut points = plot_points
            .into_inner()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))?
            .with_context(|| format!("workload {name:?} is not in the trace (or past --limit)"))?;
        let since = points
            .iter()
            .map(|p| p.time)
            .min()
            .unwrap_or(shardex_core::Timestamp::EPOCH);
        if let Some(t0) = points.iter().map(|p| p.time).min() {
            let at = |s: Option<Span>| s.map(|s| t0.checked_add(s)).transpose();
            let (a, b) = (at(from)?, at(to)?);
            points.retain(|p| a.is_none_or(|a| p.time >= a) && b.is_none_or(|b| p.time < b));
            if points.is_empty() {
                bail!("no sample of {name:?} between --from and --to");
            }
        }
        let svg = plot::render(name, &config, &points, since);
        std::fs::write(out, svg).with_context(|| format!("could not write {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }

    if let Some(path) = &args.by_workload {
        let mut rows = per_workload
            .into_inner()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
        rows.sort();
        let text = format!(
            "workload,policy,kind,samples,mean_used,slack_pct,shortfall_samples_pct,changes_per_hour\n{}\n",
            rows.join("\n")
        );
        std::fs::write(path, text)
            .with_context(|| format!("could not write {}", path.display()))?;
    }

    if args.json {
        let mut doc = serde_json::to_value(&report)?;
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("workloads".into(), workloads.into());
            obj.insert(
                "elapsed_s".into(),
                ((elapsed * 100.0).round() / 100.0).into(),
            );
            obj.insert(
                "scored_per_s".into(),
                ((rows_scored as f64 / elapsed).round()).into(),
            );
            if let Some(f) = &frontier {
                obj.insert("frontier".into(), serde_json::to_value(f)?);
            }
        }
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        out!("{}", table(&report));
        if let Some(f) = &frontier {
            out!("{}", f.table());
        }
        outln!(
            "{workloads} workloads, {rows_scored} policy-scored samples in {elapsed:.1} s ({:.0} per second); lead {}, warm-up {}; {}",
            rows_scored as f64 / elapsed,
            config.lead,
            config.warmup,
            match config.mode {
                Loop::ClosedLoop => "closed loop (each policy sees what a host shows it)",
                Loop::OpenLoop => "open loop (each policy sees the true usage)",
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as a readable table.
pub fn table(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "trace {}", report.trace);
    let _ = writeln!(
        out,
        "{:<17} {:<7} {:>9} {:>12} {:>11} {:>10} {:>9} {:>12}",
        "policy", "kind", "slack %", "shortfall %", "short vol %", "changes/h", "p95 cov %", "cost"
    );
    for p in &report.policies {
        let kinds = ResourceKind::ALL
            .iter()
            .filter_map(|k| p.kinds.get(k.name()).map(|f| (k.name(), f)));
        for (i, (kind, f)) in kinds.enumerate() {
            let cov = f
                .coverage_p95_pct
                .map_or("-".to_string(), |c| format!("{c:.1}"));
            let cost = if i == 0 {
                format!("{:.2}", p.cost)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{:<17} {:<7} {:>9.1} {:>12.2} {:>11.2} {:>10.3} {:>9} {:>12}",
                if i == 0 { p.name.as_str() } else { "" },
                kind,
                f.slack_pct,
                f.shortfall_samples_pct,
                f.shortfall_volume_pct,
                f.changes_per_hour,
                cov,
                cost
            );
        }
    }
    out
}
