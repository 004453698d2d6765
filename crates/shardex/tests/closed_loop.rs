//! The closed loop on this machine's kernel, with real processes (`shardex load`) in real
//! cgroups under `shardex run` in act mode: a workload is never throttled or killed inside
//! its reservation, an OOM past it is recorded, a modification reaches the limits within a
//! sample period, drift is put back, and the history survives a restart.
//!
//! They need root and cgroups with cpu and memory control, so they are `#[ignore]`d; CI runs
//! them with `--include-ignored`, where a missing cgroup is a failure, not a skip. They run
//! one at a time (a 2-core machine can't measure one busy core beside another).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A cgroup made for one test in every hierarchy the loop reads and writes.
struct Cgroup {
    name: String,
    /// Directories that hold its processes, one per hierarchy.
    dirs: Vec<PathBuf>,
    cpu: PathBuf,
    cpuacct: PathBuf,
    memory: PathBuf,
    v2: bool,
    _guard: TestCgroup,
}

impl Cgroup {
    fn new(tag: &str) -> Self {
        let base = Path::new("/sys/fs/cgroup");
        let name = format!("shardex-cl-{tag}-{}", std::process::id());
        let v2 = base.join("cgroup.controllers").exists();
        let (cpu, cpuacct, memory) = if v2 {
            // Controllers must be enabled for the root's children.
            let _ = std::fs::write(base.join("cgroup.subtree_control"), "+cpu +memory");
            let d = base.join(&name);
            (d.clone(), d.clone(), d)
        } else {
            let find = |names: &[&str]| {
                names
                    .iter()
                    .map(|n| base.join(n))
                    .find(|d| d.is_dir())
                    .unwrap_or_else(|| panic!("no {names:?} hierarchy under {}", base.display()))
                    .join(&name)
            };
            (
                find(&["cpu", "cpu,cpuacct"]),
                find(&["cpuacct", "cpu,cpuacct"]),
                find(&["memory"]),
            )
        };
        let mut dirs = vec![cpu.clone(), cpuacct.clone(), memory.clone()];
        dirs.dedup();
        for d in &dirs {
            if !d.exists() {
                std::fs::create_dir(d)
                    .unwrap_or_else(|e| panic!("can't create the cgroup {}: {e}", d.display()));
            }
        }
        Self {
            name,
            _guard: TestCgroup(dirs.clone()),
            dirs,
            cpu,
            cpuacct,
            memory,
            v2,
        }
    }

    /// `shardex load ARGS` started inside the cgroup.
    fn spawn_load(&self, args: &[&str]) -> Child {
        let procs: Vec<String> = self
            .dirs
            .iter()
            .map(|d| d.join("cgroup.procs").display().to_string())
            .collect();
        Command::new("sh")
            .arg("-c")
            .arg(r#"for f in $CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; exec "$0" load "$@""#)
            .arg(BIN)
            .args(args)
            .env("CGROUP_PROCS", procs.join(" "))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// CPU time used so far, in nanoseconds.
    fn cpu_ns(&self) -> u64 {
        if self.v2 {
            let text = std::fs::read_to_string(self.cpuacct.join("cpu.stat")).unwrap();
            let us: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            us * 1000
        } else {
            read_u64(&self.cpuacct.join("cpuacct.usage"))
        }
    }

    /// The cpu limit in force, millicores (`None`: unlimited).
    fn cpu_limit(&self) -> Option<u64> {
        if self.v2 {
            let text = std::fs::read_to_string(self.cpu.join("cpu.max")).unwrap();
            let mut parts = text.split_whitespace();
            let q = parts.next().unwrap();
            let period: u64 = parts.next().unwrap().parse().unwrap();
            (q != "max").then(|| q.parse::<u64>().unwrap() * 1000 / period)
        } else {
            let q: i64 = std::fs::read_to_string(self.cpu.join("cpu.cfs_quota_us"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let period = read_u64(&self.cpu.join("cpu.cfs_period_us"));
            u64::try_from(q).ok().map(|q| q * 1000 / period)
        }
    }

    /// Writes a cpu limit behind shardex's back.
    fn tamper_cpu(&self, millicores: u64) {
        if self.v2 {
            std::fs::write(
                self.cpu.join("cpu.max"),
                format!("{} 100000", millicores * 100),
            )
            .unwrap();
        } else {
            std::fs::write(
                self.cpu.join("cpu.cfs_quota_us"),
                (millicores * 100).to_string(),
            )
            .unwrap();
        }
    }

    /// OOM kills the kernel counted in the cgroup.
    /// The hard memory limit in force, in bytes.
    fn memory_limit(&self) -> u64 {
        let file = if self.v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        let text = std::fs::read_to_string(self.memory.join(file)).unwrap();
        text.trim().parse().unwrap_or(u64::MAX)
    }

    fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill ")
        } else {
            ("memory.oom_control", "oom_kill ")
        };
        std::fs::read_to_string(self.memory.join(file))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

fn wait(mut child: Child, within: Duration) -> ExitStatus {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the load did not end within {within:?}");
}

const FAST: &str = "mode = \"act\"\nsample_every = \"1s\"\ndecide_every = \"2s\"\nscale_down_after = \"4s\"\ncheck_every = \"1s\"\n";

fn workloads(addr: &str, token: &str) -> serde_json::Value {
    let (status, text) = send(addr, "GET", "/v1/agent/workloads", token, "");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
#[ignore = "needs root and cgroups with cpu and memory control; CI runs it with --include-ignored"]
fn an_idle_workload_that_wakes_gets_its_whole_reservation_at_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cg = Cgroup::new("wake");
    // 1.5 cores and 1 GiB reserved.
    let (child, addr, token, _dir) = daemon_with_one_workload(
        FAST,
        serde_json::json!({"cpu": 150, "memory": 64}),
        &cg.name,
    );
    // Idle for a few decisions: shardex sizes it for idleness and offers its idle shards...
    let sized = eventually(Duration::from_secs(30), || {
        let w = workloads(&addr, &token);
        let soft = w["workloads"][0]["limits"]["want"]["soft"][0].as_u64();
        soft.is_some_and(|s| s < 1500)
    });
    let w = workloads(&addr, &token);
    assert!(sized, "never sized for idleness: {w}");
    let (_, market) = send(&addr, "GET", "/v1/market", &token, "");
    let market: serde_json::Value = serde_json::from_str(&market).unwrap();
    assert!(
        market["hosts"][0]["offered"]["cpu"].as_u64().unwrap() > 0,
        "{market}"
    );
    // ...and yet its hard limit is its whole reservation.
    assert_eq!(cg.cpu_limit(), Some(1500), "{w}");
    // It wakes up wanting one core.
    let load = cg.spawn_load(&["--cpu", "1000", "--step", "8s"]);
    let woke = Instant::now();
    // Within two sample periods it runs at a full core, and keeps it.
    std::thread::sleep(Duration::from_secs(2));
    let u0 = cg.cpu_ns();
    let t0 = Instant::now();
    let mut lowest_limit = u64::MAX;
    while t0.elapsed() < Duration::from_secs(4) {
        lowest_limit = lowest_limit.min(cg.cpu_limit().unwrap_or(u64::MAX));
        std::thread::sleep(Duration::from_millis(100));
    }
    let cores = (cg.cpu_ns() - u0) as f64 / t0.elapsed().as_nanos() as f64;
    let status = wait(load, Duration::from_secs(20));
    assert!(status.success(), "the load ended with {status}");
    interrupt_and_wait(child);
    eprintln!(
        "measured {cores:.3} cores from {:?} after waking; lowest cpu limit {lowest_limit}",
        t0.duration_since(woke)
    );
    assert!(cores >= 0.95, "only {cores:.3} cores after waking");
    assert!(
        lowest_limit >= 1500,
        "the cpu limit fell to {lowest_limit} millicores"
    );
}

#[test]
#[ignore = "needs root and cgroups with cpu and memory control; CI runs it with --include-ignored"]
fn memory_up_to_90_percent_of_the_reservation_is_never_killed_and_past_the_entitlement_the_oom_is_recorded()
 {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cg = Cgroup::new("mem");
    // 1 GiB reserved (64 shards of 16 MiB).
    let (child, addr, token, _dir) =
        daemon_with_one_workload(FAST, serde_json::json!({"cpu": 50, "memory": 64}), &cg.name);
    // Idle first, so the forecast is of an idle cgroup.
    std::thread::sleep(Duration::from_secs(6));
    let steps: Vec<String> = (1..=9).map(|i| (i * 102).to_string()).collect();
    let load = cg.spawn_load(&[
        "--memory",
        &steps.join(","),
        "--step",
        "500ms",
        "--hold",
        "2s",
    ]);
    let status = wait(load, Duration::from_secs(30));
    assert!(
        status.success(),
        "918 MiB inside a 1 GiB reservation ended with {status}"
    );
    assert_eq!(cg.oom_kills(), 0);
    // Pressing on its limit may have leased it more from the host's unreserved memory (the
    // market's supply): the entitlement is the reservation plus those leases, and leases
    // last, so the limit in force now is what the next load is measured against.
    let limit_now = cg.memory_limit();
    assert!(limit_now >= 1 << 30, "the limit fell to {limit_now} bytes");
    eprintln!(
        "memory limit in force after 918 MiB: {} MiB",
        limit_now >> 20
    );
    // Past the entitlement: the kernel kills it, and shardex records the OOM.
    let past = (limit_now >> 20) + 300;
    let load = cg.spawn_load(&["--memory", &past.to_string(), "--hold", "5s"]);
    let status = wait(load, Duration::from_secs(30));
    assert!(
        !status.success(),
        "{past} MiB past a {limit_now}-byte limit was not killed (limit now {}): {}",
        cg.memory_limit(),
        log_of(child.id())
    );
    assert!(cg.oom_kills() >= 1);
    let recorded = eventually(Duration::from_secs(10), || {
        let (_, text) = send(&addr, "GET", "/v1/ooms", &token, "");
        text.contains(&cg.name)
    });
    let (_, ooms) = send(&addr, "GET", "/v1/ooms", &token, "");
    interrupt_and_wait(child);
    assert!(recorded, "the OOM kill was not recorded: {ooms}");
    let ooms: serde_json::Value = serde_json::from_str(&ooms).unwrap();
    // Killed at its entitlement then: the reservation plus what it had leased by then.
    let limit = ooms["ooms"][0]["limit_bytes"].as_u64().unwrap();
    assert!((1u64 << 30..past << 20).contains(&limit), "{ooms}");
}

#[test]
#[ignore = "needs root and cgroups with cpu and memory control; CI runs it with --include-ignored"]
fn a_modification_reaches_the_limits_within_a_sample_drift_is_put_back_and_history_survives() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cg = Cgroup::new("mod");
    let (child, addr, token, dir) = daemon_with_one_workload(
        FAST,
        serde_json::json!({"cpu": 100, "memory": 16}),
        &cg.name,
    );
    assert!(
        eventually(Duration::from_secs(10), || cg.cpu_limit() == Some(1000)),
        "the reservation's 1 core never reached the cgroup: {:?}",
        cg.cpu_limit()
    );
    let post = |body: serde_json::Value| {
        let (status, text) = send(&addr, "POST", "/v1/actions", &token, &body.to_string());
        assert_eq!(status, 200, "{text}");
    };
    // +10 % cpu for ten minutes: in force within about one sample period.
    post(serde_json::json!({
        "action": "modify_reservation", "tenant": 1, "reservation": 1,
        "changes": [{"kind": "cpu", "change": {"percent_bp": 1000}}], "duration": 600_000
    }));
    let t = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || cg.cpu_limit() == Some(1100)),
        "+10 % never reached the cgroup: {:?}",
        cg.cpu_limit()
    );
    let took = t.elapsed();
    // When it ends, the limit goes back.
    post(serde_json::json!({"action": "cancel_modification", "tenant": 1, "modification": 1}));
    assert!(
        eventually(Duration::from_secs(5), || cg.cpu_limit() == Some(1000)),
        "the limit stayed at {:?} after the modification ended",
        cg.cpu_limit()
    );
    // A limit changed behind shardex's back is put back and recorded.
    cg.tamper_cpu(100);
    assert!(
        eventually(Duration::from_secs(5), || cg.cpu_limit() == Some(1000)),
        "the tampered limit stayed at {:?}",
        cg.cpu_limit()
    );
    let pid = child.id();
    assert!(
        eventually(Duration::from_secs(2), || log_of(pid).contains("Drift")),
        "no drift recorded:\n{}",
        log_of(pid)
    );
    // At least six samples of history before the restart (counted, not slept for: a loaded
    // machine may sample late).
    let sampled = || {
        let (status, text) = send(&addr, "GET", "/v1/workloads/1/history", &token, "");
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["kinds"]["cpu"]["usage"]
            .as_array()
            .map_or(0, |u| u.iter().filter(|x| !x.is_null()).count())
    };
    assert!(
        eventually(Duration::from_secs(20), || sampled() >= 6),
        "only {} samples in 20 s",
        sampled()
    );
    interrupt_and_wait(child);
    eprintln!("the modification was in force {took:?} after it was made");
    // Restart: the history is there, and fed to the forecasters at once.
    let (child, _) = start(&dir.path().join("data"));
    let pid = child.id();
    assert!(
        eventually(Duration::from_secs(5), || log_of(pid)
            .contains("workload history restored")),
        "{}",
        log_of(pid)
    );
    let log = log_of(pid);
    interrupt_and_wait(child);
    let fed: u64 = log
        .split("samples=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(fed >= 5, "only {fed} samples restored:\n{log}");
}

#[test]
#[ignore = "needs root and cgroups with cpu and memory control; CI runs it with --include-ignored"]
fn a_busy_neighbour_leases_an_idle_reservation_and_the_owner_gets_it_back_when_it_wakes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lender = Cgroup::new("lender");
    let borrower = Cgroup::new("borrower");
    // The lender ("ops", premium): 1.5 cores, idle. A 5 s reclaim notice keeps the test short.
    let engine = format!("{FAST}[ledger]\nreclaim_notice = \"5s\"\n");
    let engine = engine.replacen("[ledger]", "\n[ledger]", 1);
    let (child, addr, token, _dir) = daemon_with_one_workload(
        &engine,
        serde_json::json!({"cpu": 150, "memory": 8}),
        &lender.name,
    );
    let post = |body: serde_json::Value| {
        let (status, text) = send(&addr, "POST", "/v1/actions", &token, &body.to_string());
        assert_eq!(status, 200, "{text}");
    };
    // The borrower ("b", standard): 0.2 cores reserved, busy wanting a whole core.
    post(serde_json::json!({"action": "create_tenant", "name": "b"}));
    let start_ms = wall_ms() + 300;
    post(serde_json::json!({
        "action": "create_reservation", "tenant": 2, "host": 1, "vector": {"cpu": 20, "memory": 8},
        "window": {"start": start_ms, "end": start_ms + 3_600_000}, "tier": "standard"
    }));
    std::thread::sleep(Duration::from_millis(400));
    post(
        serde_json::json!({"action": "bind_workload", "tenant": 2, "reservation": 2, "name": borrower.name}),
    );
    // The lender is sized for idleness and offers its shards.
    let offered = eventually(Duration::from_secs(30), || {
        let (_, m) = send(&addr, "GET", "/v1/market", &token, "");
        let m: serde_json::Value = serde_json::from_str(&m).unwrap();
        m["hosts"][0]["offered"]["cpu"].as_u64().unwrap_or(0) >= 50
    });
    assert!(offered, "the idle reservation offered nothing");
    let mut busy = borrower.spawn_load(&["--cpu", "1000", "--step", "120s"]);
    // Held at its 0.2 cores, it doubles each decision and leases the lender's idle shards.
    let started = Instant::now();
    let mut steps: Vec<(u128, Option<u64>)> = Vec::new();
    let grew = eventually(Duration::from_secs(40), || {
        let m = borrower.cpu_limit();
        if steps.last().is_none_or(|&(_, last)| last != m) {
            steps.push((started.elapsed().as_millis(), m));
        }
        m.is_some_and(|m| m >= 900)
    });
    eprintln!("borrower's cpu limit (ms after it got busy, millicores): {steps:?}");
    assert!(grew, "the borrower stayed at {:?}", borrower.cpu_limit());
    let u0 = borrower.cpu_ns();
    std::thread::sleep(Duration::from_secs(3));
    let cores = (borrower.cpu_ns() - u0) as f64 / 3e9;
    assert!(
        cores >= 0.8,
        "the borrower measured {cores:.2} cores with its leases"
    );
    let (_, market) = send(&addr, "GET", "/v1/market", &token, "");
    eprintln!("while borrowing: {market}; borrower {cores:.2} cores");
    let lent_by_lender = lender.cpu_limit().unwrap_or(u64::MAX) < 1500;
    // The lender wakes: held at what it has not lent, it reclaims, and has its whole
    // reservation back within the notice and one sample period.
    let mut wake = lender.spawn_load(&["--cpu", "1000", "--step", "30s"]);
    let woke = Instant::now();
    // The notice (5 s) plus one sample period (1 s), with 0.5 s for the polling here.
    let back = eventually(Duration::from_millis(6_500), || {
        lender.cpu_limit().is_some_and(|m| m >= 1500)
    });
    let took = woke.elapsed();
    let limit = lender.cpu_limit();
    let (_, invoice) = send(&addr, "GET", "/v1/tenants/ops/invoice", &token, "");
    let _ = busy.kill();
    let _ = busy.wait();
    let _ = wake.kill();
    let _ = wake.wait();
    interrupt_and_wait(child);
    assert!(
        lent_by_lender,
        "the borrower's cores did not come from the lender's reservation"
    );
    assert!(
        back,
        "the lender's limit was {limit:?} {took:?} after it woke"
    );
    eprintln!("the lender had its reservation back {took:?} after waking (notice 5 s)");
    assert!(
        invoice.contains("credit"),
        "the lender was not credited: {invoice}"
    );
}
