//! A trace-driven run on this machine's kernel: real processes (`shardex load --trace`) replay
//! the cpu and memory of bitbrains workloads, time-compressed (a 5-minute sample lasts 3 s)
//! and scaled to this 2-core machine, once under static limits at their provisioned size and
//! once under `shardex run` in act mode with a busy neighbour of another tenant soaking up
//! whatever it can lease. Reported: throttled periods, OOM kills, and the cpu-seconds the
//! neighbour got beyond its own reservation (which, on a host whose capacity is exactly the
//! reservations, can only be shards the replayed workloads' reservations lent it).
//!
//! The bar (issue 10): no OOM kills, throttled time within 1 percentage point of the static
//! run, and at least 30 % of the replayed workloads' reserved cpu-seconds lent. All three are
//! asserted.
//!
//! It needs root, cgroups with cpu and memory control and the traces in ../shared/data, so it
//! is `#[ignore]`d; CI runs it with `--include-ignored`, where a missing part is a failure.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Replayed workloads: (trace name, provisioned millicores, provisioned MiB), scaled below.
const WORKLOADS: [(&str, u64, u64); 2] = [("bb0813-1", 2000, 8192), ("bb0813-10", 1000, 2048)];
/// The trace's cpu and memory times these (a 2-core machine holds two VMs and a neighbour).
const CPU_SCALE: f64 = 0.25;
const MEMORY_SCALE: f64 = 0.0625;
/// A 5-minute sample lasts 5 s (the issue's example); 30 samples are 2.5 hours of trace in
/// 150 s. At 3 s a sample the loop's fixed reaction (a 3 s decision, 9 s before a share
/// shrinks) took a varying part of each idle stretch: lent 29 % to 65 % over five runs.
const SPEED: &str = "60";
const SAMPLES: &str = "30";
/// The neighbour's own reservation, in millicores, and what it tries to use.
const SOAK_RESERVED: u64 = 100;

fn trace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/bitbrains-2013-08")
}

fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// What a cgroup has counted so far.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    periods: u64,
    throttled: u64,
    cpu_ns: u64,
    oom_kills: u64,
}

/// The counters of cgroup `rel`, if it exists.
fn counters(rel: &str) -> Option<Counters> {
    let stat = std::fs::read_to_string(cgroup_dir("cpu", rel).join("cpu.stat")).ok()?;
    let cpu_ns = if v2() {
        keyed(&stat, "usage_usec")? * 1000
    } else {
        std::fs::read_to_string(cgroup_dir("cpuacct", rel).join("cpuacct.usage"))
            .ok()?
            .trim()
            .parse()
            .ok()?
    };
    let (file, key) = if v2() {
        ("memory.events", "oom_kill")
    } else {
        ("memory.oom_control", "oom_kill")
    };
    let oom = std::fs::read_to_string(cgroup_dir("memory", rel).join(file)).ok()?;
    Some(Counters {
        periods: keyed(&stat, "nr_periods")?,
        throttled: keyed(&stat, "nr_throttled")?,
        cpu_ns,
        oom_kills: keyed(&oom, key).unwrap_or(0),
    })
}

/// Per cgroup, its first and last counters while it existed.
struct Watch {
    names: Vec<String>,
    first: Vec<Option<Counters>>,
    last: Vec<Option<Counters>>,
}

impl Watch {
    fn new(names: Vec<String>) -> Self {
        let n = names.len();
        Self {
            names,
            first: vec![None; n],
            last: vec![None; n],
        }
    }

    fn poll(&mut self) {
        for (i, name) in self.names.iter().enumerate() {
            if let Some(c) = counters(name) {
                self.first[i].get_or_insert(c);
                self.last[i] = Some(c);
            }
        }
    }

    /// Periods, throttled periods, cpu-seconds and OOM kills of cgroup `i` over the run.
    fn delta(&self, i: usize) -> Counters {
        let (a, b) = (
            self.first[i].unwrap_or_default(),
            self.last[i].unwrap_or_default(),
        );
        Counters {
            periods: b.periods - a.periods,
            throttled: b.throttled - a.throttled,
            cpu_ns: b.cpu_ns - a.cpu_ns,
            oom_kills: b.oom_kills,
        }
    }
}

fn load_args(name: &str) -> Vec<String> {
    [
        "load",
        "--trace",
        &trace_dir().display().to_string(),
        "--workload",
        name,
        "--speed",
        SPEED,
        "--cpu-scale",
        &CPU_SCALE.to_string(),
        "--memory-scale",
        &MEMORY_SCALE.to_string(),
        "--samples",
        SAMPLES,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn reserved(millicores: u64, mib: u64) -> (u64, u64) {
    (
        (millicores as f64 * CPU_SCALE) as u64,
        (mib as f64 * MEMORY_SCALE) as u64,
    )
}

/// What one run showed.
struct Outcome {
    throttled_pct: f64,
    oom_kills: u64,
    /// Cpu-seconds the neighbour used beyond its own reservation.
    lent_cpu_s: f64,
    /// Cpu-seconds the replayed workloads reserved over the run.
    reserved_cpu_s: f64,
    seconds: f64,
}

fn report(label: &str, o: &Outcome) {
    eprintln!(
        "{label}: throttled {:.2} % of periods, {} OOM kills, lent {:.1} of {:.1} reserved cpu-seconds ({:.0} %), {:.0} s",
        o.throttled_pct,
        o.oom_kills,
        o.lent_cpu_s,
        o.reserved_cpu_s,
        100.0 * o.lent_cpu_s / o.reserved_cpu_s,
        o.seconds
    );
}

/// Runs `children` to their end while watching `names` (replayed first, neighbour last).
fn watch_until_done(mut children: Vec<Child>, replayed: usize, names: Vec<String>) -> Outcome {
    let mut watch = Watch::new(names);
    let t0 = Instant::now();
    let mut running: Vec<bool> = vec![true; children.len()];
    while running.iter().take(replayed).any(|r| *r) {
        watch.poll();
        for (i, c) in children.iter_mut().enumerate() {
            if running[i]
                && let Some(status) = c.try_wait().unwrap()
            {
                running[i] = false;
                assert!(
                    status.success() || i >= replayed,
                    "a replayed workload ended with {status}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            t0.elapsed() < Duration::from_secs(400),
            "the run did not end"
        );
    }
    let seconds = t0.elapsed().as_secs_f64();
    // The neighbour is stopped with SIGTERM: a launcher passes it on to its command and then
    // takes the workload out (SIGKILL would leave its busy loop running, orphaned).
    for c in children.iter_mut() {
        // Those that ended already are gone: nothing to stop.
        if c.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = c.wait();
    }
    let (mut periods, mut throttled, mut ooms) = (0, 0, 0);
    for i in 0..replayed {
        let d = watch.delta(i);
        eprintln!(
            "  {}: throttled {} of {} periods, {:.1} cpu-seconds",
            watch.names[i],
            d.throttled,
            d.periods,
            d.cpu_ns as f64 / 1e9
        );
        periods += d.periods;
        throttled += d.throttled;
        ooms += d.oom_kills;
    }
    let soak = watch.delta(replayed);
    let reserved_cpu_s: f64 = WORKLOADS
        .iter()
        .map(|&(_, c, m)| reserved(c, m).0 as f64 / 1000.0 * seconds)
        .sum();
    Outcome {
        throttled_pct: 100.0 * throttled as f64 / periods.max(1) as f64,
        oom_kills: ooms,
        lent_cpu_s: (soak.cpu_ns as f64 / 1e9 - SOAK_RESERVED as f64 / 1000.0 * seconds).max(0.0),
        reserved_cpu_s,
        seconds,
    }
}

/// The static run: each process in its own cgroup with quota and memory limit at its
/// provisioned size (scaled), the neighbour at its reservation; no shardex.
fn static_run() -> Outcome {
    let tag = std::process::id();
    let mut made = Vec::new();
    let mut names = Vec::new();
    let mut children = Vec::new();
    let limits: Vec<(String, u64, u64, Vec<String>)> = WORKLOADS
        .iter()
        .map(|&(w, c, m)| {
            let (c, m) = reserved(c, m);
            (w.to_string(), c, m, load_args(w))
        })
        .chain(std::iter::once((
            "soak".to_string(),
            SOAK_RESERVED,
            64,
            vec![
                "load".into(),
                "--cpu".into(),
                "1000".into(),
                "--hold".into(),
                "600s".into(),
            ],
        )))
        .collect();
    for (w, millicores, mib, args) in &limits {
        let rel = format!("shardex-static-{tag}-{w}");
        let controllers: &[&str] = if v2() {
            &["cpu"]
        } else {
            &["cpu", "cpuacct", "memory"]
        };
        let mut procs = Vec::new();
        for c in controllers {
            let d = cgroup_dir(c, &rel);
            std::fs::create_dir_all(&d).unwrap();
            made.push(d.clone());
            procs.push(d.join("cgroup.procs").display().to_string());
        }
        let quota = millicores * 100;
        if v2() {
            std::fs::write(
                cgroup_dir("cpu", &rel).join("cpu.max"),
                format!("{quota} 100000"),
            )
            .unwrap();
            std::fs::write(
                cgroup_dir("memory", &rel).join("memory.max"),
                (mib << 20).to_string(),
            )
            .unwrap();
        } else {
            std::fs::write(
                cgroup_dir("cpu", &rel).join("cpu.cfs_quota_us"),
                quota.to_string(),
            )
            .unwrap();
            std::fs::write(
                cgroup_dir("memory", &rel).join("memory.limit_in_bytes"),
                (mib << 20).to_string(),
            )
            .unwrap();
        }
        children.push(
            Command::new("sh")
                .arg("-c")
                .arg(
                    r#"for f in $CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; exec "$0" "$@""#,
                )
                .arg(BIN)
                .args(args)
                .env("CGROUP_PROCS", procs.join(" "))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        names.push(rel);
    }
    let _guard = TestCgroup(made.into_iter().rev().collect());
    let out = watch_until_done(children, WORKLOADS.len(), names);
    std::thread::sleep(Duration::from_millis(200));
    out
}

/// The shardex run: `shardex launch` puts each replayed workload in a reservation of its
/// provisioned size (a tenant each) and the neighbour in a small one; the host's capacity is
/// exactly the three reservations, so the neighbour can only grow on what they lend.
fn shardex_run() -> Outcome {
    let dir_ = tempfile::tempdir().unwrap();
    let total: u64 = WORKLOADS
        .iter()
        .map(|&(_, c, m)| reserved(c, m).0)
        .sum::<u64>()
        + SOAK_RESERVED;
    std::fs::write(
        dir_.path().join("shardex.toml"),
        format!(
            "[host]\ncpu_millicores = {total}\n\n[ledger]\nreclaim_notice = \"2s\"\n\n\
             [engine]\nmode = \"act\"\nsample_every = \"1s\"\ndecide_every = \"3s\"\n\
             scale_down_after = \"9s\"\ncheck_every = \"5s\"\n"
        ),
    )
    .unwrap();
    let data = dir_.path().join("data");
    let (daemon, _) = start(&data);
    let launch = |tenant: &str, cpu: u64, mib: u64, name: &str, args: &[String]| {
        Command::new(BIN)
            .args(["launch", "--tenant", tenant, "--name", name])
            .args([
                "--cpu",
                &format!("{cpu}m"),
                "--memory",
                &format!("{mib}MiB"),
            ])
            .arg("--")
            .arg(BIN)
            .args(args)
            .env("SHARDEX_DATA", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let tag = std::process::id();
    let mut children = Vec::new();
    let mut names = Vec::new();
    // The neighbour first, so that it is there to lease when the replayed ones go idle.
    let soak_args: Vec<String> = ["load", "--cpu", "1000", "--hold", "600s"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let soak = launch(
        "soak",
        SOAK_RESERVED,
        64,
        &format!("soak-{tag}"),
        &soak_args,
    );
    std::thread::sleep(Duration::from_secs(2));
    for (i, &(w, c, m)) in WORKLOADS.iter().enumerate() {
        let (c, m) = reserved(c, m);
        children.push(launch(
            &format!("t{i}"),
            c,
            m,
            &format!("{w}-{tag}"),
            &load_args(w),
        ));
        // Each in the group of the reservation made for it: the neighbour's is 1, theirs 2, 3.
        names.push(format!("shardex/res-{}/{w}-{tag}", i + 2));
        // One after the other, so that the reservation ids follow the launch order.
        std::thread::sleep(Duration::from_millis(700));
    }
    children.push(soak);
    names.push(format!("shardex/res-1/soak-{tag}"));
    let out = watch_until_done(children, WORKLOADS.len(), names);
    // The launchers take their workloads out when their commands end.
    std::thread::sleep(Duration::from_secs(1));
    interrupt_and_wait(daemon);
    out
}

#[test]
#[ignore = "needs root, cgroups with cpu and memory control and ../shared/data; CI runs it with --include-ignored"]
fn replayed_bitbrains_workloads_lend_their_idle_cpu_without_more_throttling_than_static() {
    assert!(
        trace_dir().join("samples.csv.gz").exists(),
        "the bitbrains trace is not at {}",
        trace_dir().display()
    );
    let fixed = static_run();
    report("static limits", &fixed);
    let live = shardex_run();
    report("shardex act", &live);
    assert_eq!(fixed.oom_kills + live.oom_kills, 0);
    assert!(
        live.throttled_pct <= fixed.throttled_pct + 1.0,
        "throttled {:.2} % under shardex against {:.2} % static",
        live.throttled_pct,
        fixed.throttled_pct
    );
    // A workload's share shrinks to its upper forecast over the reclaim notice after a lasting
    // dip, so what an early peak grew is offered again (before that rule: 8 % to 44 %).
    let lent_pct = 100.0 * live.lent_cpu_s / live.reserved_cpu_s;
    assert!(
        lent_pct >= 30.0,
        "lent {lent_pct:.0} % of the reserved cpu-seconds, under the 30 % bar"
    );
}
