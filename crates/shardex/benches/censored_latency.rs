//! Benchmark (not a test): from a censored sample to the raised limit in force, on this
//! machine's kernel. Each episode launches a fresh busy loop (`shardex load --cpu 1000`) with
//! `shardex launch` into a 0.2-core reservation on a host with free capacity, so it is
//! throttled from its first period; the latency is from the first throttled period the
//! benchmark sees in the cgroup's `cpu.stat` to the cpu quota in force reaching twice the
//! reservation (the first doubling, a lease). Prints the median and p99 over the episodes.
//!
//! `cargo bench -p shardex --bench censored_latency` (root, cgroups with cpu control; about
//! 2 minutes). `SHARDEX_BENCH_EPISODES` sets the number of episodes (default 20).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SAMPLE: &str = "1s";
const DECIDE: &str = "2s";

/// (throttled periods so far, quota in millicores) of the cgroup, if it exists.
fn read(dir: &Path) -> Option<(u64, Option<u64>)> {
    let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    let throttled = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))?
        .trim()
        .parse()
        .ok()?;
    let quota = if let Ok(max) = std::fs::read_to_string(dir.join("cpu.max")) {
        max.split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
            .map(|q| q / 100)
    } else {
        let q: i64 = std::fs::read_to_string(dir.join("cpu.cfs_quota_us"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        u64::try_from(q).ok().map(|q| q / 100)
    };
    Some((throttled, quota))
}

fn main() {
    let episodes: usize = std::env::var("SHARDEX_BENCH_EPISODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shardex.toml"),
        format!(
            "[engine]\nmode = \"act\"\nsample_every = \"{SAMPLE}\"\ndecide_every = \"{DECIDE}\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let (daemon, _) = start(&data);
    let mut latencies = Vec::new();
    for i in 0..episodes {
        let name = format!("lat-{}-{i}", std::process::id());
        let mut launched = Command::new(BIN)
            .args([
                "launch", "--cpu", "0.2", "--memory", "64MiB", "--name", &name, "--",
            ])
            .args([BIN, "load", "--cpu", "1000", "--hold", "6s"])
            .env("SHARDEX_DATA", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Each episode's reservation is the next one: its group is shardex/res-ID.
        let cg = cgroup_dir("cpu", &format!("shardex/res-{}/{name}", i + 1));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut first_throttled: Option<Instant> = None;
        let mut base: Option<u64> = None;
        while Instant::now() < deadline {
            if let Some((throttled, quota)) = read(&cg) {
                let b = *base.get_or_insert(throttled);
                if first_throttled.is_none() && throttled > b {
                    first_throttled = Some(Instant::now());
                }
                if let (Some(t), Some(q)) = (first_throttled, quota)
                    && q >= 400
                {
                    latencies.push(t.elapsed());
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = launched.wait();
        if latencies.len() <= i {
            eprintln!("episode {i}: the quota was not raised within 20 s");
        }
    }
    interrupt_and_wait(daemon);
    latencies.sort();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or_default()
    };
    println!(
        "censored sample -> raised limit (sample_every {SAMPLE}, decide_every {DECIDE}): {} of {episodes} episodes, median {:.2} s, p99 {:.2} s, max {:.2} s",
        latencies.len(),
        pick(0.5).as_secs_f64(),
        pick(0.99).as_secs_f64(),
        latencies.last().copied().unwrap_or_default().as_secs_f64()
    );
}
