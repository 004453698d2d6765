//! The in-guest profiler end to end (issue 14): the test guest (`tools/guest/build.sh`, which
//! carries this shardex binary) boots under QEMU inside a cgroup that `shardex run` manages as
//! a VM (its QMP socket and its guest channel configured); inside, `shardex guest` reports and
//! `shardex load` allocates memory in steps; the host's samples and forecast for that VM
//! follow the steps the guest's applications make, not the host's view of the VM's RAM.
//!
//! Needs root, cgroups, QEMU and the built guest, so it is `#[ignore]`d; CI builds the guest
//! and runs it with `--include-ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use shardex_host::testkit::guest::Guest;

const MIB: u64 = 1 << 20;

/// A cgroup for the VM in each hierarchy the daemon reads (cpu, cpuacct, memory; or the
/// unified one), removed when dropped; and the `cgroup.procs` files to put QEMU in.
fn vm_cgroup(name: &str) -> (TestCgroup, Vec<PathBuf>) {
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs: Vec<PathBuf> = if base.join("cgroup.controllers").exists() {
        let _ = std::fs::write(base.join("cgroup.subtree_control"), "+cpu +memory");
        vec![base.join(name)]
    } else {
        ["cpu", "cpuacct", "memory"]
            .iter()
            .map(|c| cgroup_dir(c, name))
            .collect()
    };
    dirs.dedup();
    for d in &dirs {
        if !d.exists() {
            std::fs::create_dir(d)
                .unwrap_or_else(|e| panic!("can't create the cgroup {}: {e}", d.display()));
        }
    }
    let procs = dirs.iter().map(|d| d.join("cgroup.procs")).collect();
    (TestCgroup(dirs), procs)
}

fn workload(addr: &str, token: &str) -> serde_json::Value {
    let (status, text) = send(addr, "GET", "/v1/workloads/1", token, "");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The memory p50 of the forecast's first step, if there is a forecast yet.
fn forecast_p50(addr: &str, token: &str) -> Option<u64> {
    let (status, text) = send(addr, "GET", "/v1/workloads/1/forecast", token, "");
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["steps"][0]["kinds"]["memory"]["p50"].as_u64()
}

#[test]
#[ignore = "needs root, cgroups, qemu-system-x86_64 and the test guest (tools/guest/build.sh); CI runs it with --include-ignored"]
fn the_host_s_forecast_follows_the_memory_the_guest_s_application_uses() {
    let name = format!("shardex-guest-{}", std::process::id());
    let (_cg, procs) = vm_cgroup(&name);
    let vm_dir = tempfile::tempdir().unwrap();
    let mut g = Guest::boot_in(vm_dir.path(), 512, 2, &procs);
    let config = format!(
        "mode = \"act\"\nsample_every = \"1s\"\ndecide_every = \"2s\"\ncheck_every = \"1s\"\n\
         qmp_sockets = {{ \"{name}\" = \"{}\" }}\nguest_channels = {{ \"{name}\" = \"{}\" }}\n",
        g.qmp.display(),
        g.port.display()
    );
    // 1 core and 768 MiB reserved: more memory than the VM has, so its balloon stays open.
    let (daemon, addr, token, _dir) = daemon_with_one_workload(
        &config,
        serde_json::json!({"cpu": 100, "memory": 48}),
        &name,
    );
    // The guest's profiler, then an application that holds 40, 80, 120 and 160 MiB, 8 s each.
    g.run("shardex guest --every 1s >/dev/null 2>&1 &");
    let base = g.meminfo("MemTotal") - g.meminfo("MemAvailable");
    g.run("shardex load --memory 40,80,120,160 --step 8s --hold 20s >/dev/null 2>&1 &");

    // Every second: what the host sampled for the VM, what the guest says it uses, the forecast.
    let started = Instant::now();
    let mut seen: Vec<(u64, u64, Option<u64>)> = Vec::new();
    while started.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_secs(1));
        let w = workload(&addr, &token);
        let Some(sampled) = w["kinds"]["memory"]["usage"].as_u64() else {
            continue;
        };
        let guest = g.meminfo("MemTotal") - g.meminfo("MemAvailable");
        seen.push((sampled, guest, forecast_p50(&addr, &token)));
    }
    let host_view = std::fs::read_to_string(
        procs
            .iter()
            .map(|p| p.with_file_name("memory.usage_in_bytes"))
            .find(|p| p.exists())
            .unwrap_or_else(|| procs[0].with_file_name("memory.current")),
    )
    .ok()
    .and_then(|t| t.trim().parse::<u64>().ok());
    let w = workload(&addr, &token);
    interrupt_and_wait(daemon);
    for (s, gu, f) in &seen {
        eprintln!(
            "sampled {:>4} MiB, guest {:>4} MiB, forecast p50 {:?} MiB",
            s / MIB,
            gu / MIB,
            f.map(|f| f / MIB)
        );
    }
    eprintln!(
        "guest at rest {} MiB; the VM's cgroup (QEMU) {:?} MiB; {w}",
        base / MIB,
        host_view.map(|h| h / MIB)
    );
    // The host's samples are the guest's own figure (within a sample's drift), not QEMU's.
    let close = seen
        .iter()
        .filter(|(s, gu, _)| s.abs_diff(*gu) <= 24 * MIB)
        .count();
    assert!(
        close * 10 >= seen.len() * 8,
        "{close} of {} samples near the guest's own figure",
        seen.len()
    );
    // They climb the application's steps: each of 40, 80, 120 and 160 MiB above the guest's
    // rest is seen (the host's first samples, before the guest's first report, are QEMU's).
    for step in [40, 80, 120, 160] {
        let want = base + step * MIB;
        assert!(
            seen.iter().any(|(s, _, _)| s.abs_diff(want) <= 16 * MIB),
            "no sample near {} MiB (rest {} + {step})",
            want / MIB,
            base / MIB
        );
    }
    // And the forecast follows them up: low while the application holds its first 40 MiB (its
    // very first forecasts may still carry QEMU's figure, sampled before the guest's first
    // report), at the application's top by the end.
    let top = seen
        .iter()
        .filter(|(s, gu, _)| s.abs_diff(*gu) <= 16 * MIB)
        .map(|s| s.0)
        .max()
        .unwrap();
    let first_step = base + 40 * MIB;
    let early = seen
        .iter()
        .filter(|(s, gu, _)| s.abs_diff(first_step) <= 16 * MIB && s.abs_diff(*gu) <= 16 * MIB)
        .filter_map(|s| s.2)
        .min()
        .expect("forecasts during the first step");
    let late = seen.iter().rev().find_map(|s| s.2).unwrap();
    assert!(
        early <= first_step + 40 * MIB,
        "the forecast was {} MiB during the first step ({} MiB)",
        early / MIB,
        first_step / MIB
    );
    assert!(
        late * 10 >= top * 9,
        "the forecast ended at {} MiB with the application's top at {} MiB",
        late / MIB,
        top / MIB
    );
    // Its cpu is capped exactly: vCPUs give it at least its entitlement's cores, the quota on
    // its QEMU's cgroup at most.
    assert_eq!(
        w["kinds"]["cpu"]["limit_in_force"], w["kinds"]["cpu"]["entitlement"],
        "{w}"
    );
    // The limits in force are the VM's: all of its RAM (the entitlement is above it).
    assert_eq!(
        w["kinds"]["memory"]["limit_in_force"].as_u64(),
        Some(512 * MIB),
        "{w}"
    );
}
