//! `shardex load`: a synthetic workload (busy cpu and touched memory, in steps), to try
//! shardex on a real host and to drive its closed-loop tests with real processes. With
//! `--trace` the steps are one workload's samples of a recorded trace, time-compressed and
//! scaled, so that a real process replays a real workload's cpu and memory pattern.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shardex_core::Span;

/// Arguments of `shardex load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// CPU per step in millicores, comma-separated (e.g. `0,1000,1000`); the last one holds.
    #[arg(long, value_name = "LIST", default_value = "0")]
    cpu: String,
    /// Memory held per step in MiB, comma-separated (e.g. `100,200,400`); the last one holds.
    #[arg(long, value_name = "LIST", default_value = "0")]
    memory: String,
    /// How long each step lasts.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    step: String,
    /// How long to go on after the last step before exiting.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    hold: String,
    /// Replay a workload of this trace folder (`samples.csv.gz` and `workloads.csv`, as
    /// `shardex replay` reads) instead of --cpu and --memory.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["cpu", "memory"], requires = "workload")]
    trace: Option<std::path::PathBuf>,
    /// The trace's workload to replay.
    #[arg(long, value_name = "NAME", requires = "trace")]
    workload: Option<String>,
    /// How much faster than the trace (e.g. 100: a 5-minute sample lasts 3 s); sets --step.
    #[arg(long, value_name = "N", default_value_t = 100.0, requires = "trace")]
    speed: f64,
    /// The trace's cpu times this.
    #[arg(long, value_name = "F", default_value_t = 1.0, requires = "trace")]
    cpu_scale: f64,
    /// The trace's memory times this.
    #[arg(long, value_name = "F", default_value_t = 1.0, requires = "trace")]
    memory_scale: f64,
    /// Samples of the trace to skip first.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "trace")]
    skip: usize,
    /// Samples of the trace to replay [default: all].
    #[arg(long, value_name = "N", requires = "trace")]
    samples: Option<usize>,
}

/// The steps of one trace workload: millicores and MiB per sample, scaled, and how long a
/// sample lasts.
fn from_trace(
    args: &LoadArgs,
    dir: &std::path::Path,
    name: &str,
) -> anyhow::Result<(Vec<u64>, Vec<u64>, Duration)> {
    if !(args.speed > 0.0 && args.speed.is_finite()) {
        bail!("--speed must be a positive number");
    }
    for (what, f) in [
        ("cpu-scale", args.cpu_scale),
        ("memory-scale", args.memory_scale),
    ] {
        if !(f >= 0.0 && f.is_finite()) {
            bail!("--{what} must be zero or more");
        }
    }
    let mut reader = crate::trace::TraceReader::open(dir)?;
    let trace = loop {
        match reader.next_workload()? {
            Some(w) if w.name == name => break w,
            Some(_) => {}
            None => bail!("the trace {} has no workload {name:?}", dir.display()),
        }
    };
    let rows: Vec<_> = trace
        .rows
        .iter()
        .skip(args.skip)
        .take(args.samples.unwrap_or(usize::MAX))
        .collect();
    if rows.is_empty() {
        bail!("{name} has no samples after skipping {}", args.skip);
    }
    // The trace's own sample period, from its first two rows (5 minutes for bitbrains).
    let period_ms = match (trace.rows.first(), trace.rows.get(1)) {
        (Some(a), Some(b)) => b.time.since(a.time).millis(),
        _ => 300_000,
    };
    let step = Duration::from_secs_f64(period_ms as f64 / 1000.0 / args.speed);
    // Saturating, as `as` is: a scaled sample is never negative.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let scaled = |v: Option<u64>, f: f64| (v.unwrap_or(0) as f64 * f).round() as u64;
    let cpu = rows
        .iter()
        .map(|r| scaled(r.values[0], args.cpu_scale))
        .collect();
    let memory = rows
        .iter()
        .map(|r| scaled(r.values[1], args.memory_scale) >> 20)
        .collect();
    Ok((cpu, memory, step))
}

fn list(what: &str, text: &str) -> anyhow::Result<Vec<u64>> {
    text.split(',')
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .with_context(|| format!("--{what}: {v:?} is not a whole number"))
        })
        .collect()
}

fn span(what: &str, text: &str) -> anyhow::Result<Duration> {
    let s: Span = text
        .parse()
        .with_context(|| format!("--{what}: {text:?} is not a duration like 1s or 500ms"))?;
    Ok(Duration::from_millis(s.millis()))
}

/// Spins for `millicores` of one core: busy for that share of every 10 ms.
fn spin(millicores: u64, until: Instant) {
    let slice = Duration::from_millis(10);
    while Instant::now() < until {
        let start = Instant::now();
        let busy = slice.mul_f64(millicores.min(1000) as f64 / 1000.0);
        while start.elapsed() < busy {
            std::hint::spin_loop();
        }
        if let Some(rest) = slice.checked_sub(start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// Runs the steps, then exits 0.
pub fn load(args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let (cpu, memory, step) = match (&args.trace, &args.workload) {
        (Some(dir), Some(name)) => from_trace(args, dir, name)?,
        _ => (
            list("cpu", &args.cpu)?,
            list("memory", &args.memory)?,
            span("step", &args.step)?,
        ),
    };
    let hold = span("hold", &args.hold)?;
    if step.is_zero() {
        bail!("--step must be longer than zero");
    }
    let steps = cpu.len().max(memory.len());
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut held_mib = 0u64;
    for i in 0..steps {
        let want_cpu = *cpu.get(i).or(cpu.last()).unwrap_or(&0);
        let want_mib = *memory.get(i).or(memory.last()).unwrap_or(&0);
        // Memory: allocate and touch every page, so it is really resident.
        while held_mib < want_mib {
            let mut chunk = vec![0u8; 1 << 20];
            for b in chunk.iter_mut().step_by(4096) {
                *b = 1;
            }
            held.push(chunk);
            held_mib += 1;
        }
        while held_mib > want_mib {
            held.pop();
            held_mib -= 1;
        }
        if args.trace.is_none() {
            eprintln!("step {i}: {want_cpu} millicores, {held_mib} MiB");
        }
        let last = i + 1 == steps;
        let until = Instant::now() + step + if last { hold } else { Duration::ZERO };
        let threads: Vec<_> = (0..want_cpu.div_ceil(1000))
            .map(|t| {
                let share = (want_cpu - t * 1000).min(1000);
                std::thread::spawn(move || spin(share, until))
            })
            .collect();
        if threads.is_empty() {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
        for t in threads {
            t.join()
                .map_err(|_| anyhow::anyhow!("a cpu thread panicked"))?;
        }
    }
    std::hint::black_box(&held);
    Ok(ExitCode::SUCCESS)
}
