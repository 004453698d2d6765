//! `shardex simulate` end to end on a small slice of a real trace.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_shardex");

fn bitbrains() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/bitbrains-2013-08");
    assert!(
        dir.join("samples.csv.gz").exists(),
        "the test traces are missing: {}",
        dir.display()
    );
    dir
}

#[test]
fn simulate_prints_the_documented_json_and_beats_static_reservations_on_a_slice() {
    let dir = bitbrains();
    // 30 VMs for a day on small hosts (16 cores, 96 GiB), so that several hosts are needed.
    let out = Command::new(BIN)
        .args(["simulate", "--trace"])
        .arg(&dir)
        .args(["--limit", "30", "--for", "1d", "--host-cpu", "16000"])
        .args(["--host-memory", &(96u64 << 30).to_string(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    for key in [
        "hosts_static",
        "hosts_shardex",
        "mean_utilisation_pct",
        "shortfall_samples_pct",
        "shard_requests",
        "migrations",
        "shard_hours_lent",
        "money",
        "hosts_mean",
        "migrations_per_workload_day",
        "hosts_drained",
        "host_hours",
        "host_hours_static",
        "host_hours_saved_pct",
    ] {
        assert!(doc.get(key).is_some(), "{key} missing: {doc}");
    }
    let stat = doc["hosts_static"].as_u64().unwrap();
    let shardex = doc["hosts_shardex"].as_u64().unwrap();
    assert!(stat >= 2, "{doc}");
    assert!(
        shardex < stat,
        "shardex {shardex} hosts vs static {stat}: {doc}"
    );
    for kind in ["cpu", "memory"] {
        let s = doc["shortfall_samples_pct"][kind].as_f64().unwrap();
        assert!((0.0..5.0).contains(&s), "{kind} shortfall {s}: {doc}");
    }
    assert_eq!(doc["ledger_violations"], 0, "{doc}");
    // Nothing the controller tried was refused (e.g. a provisioned host's name clashing).
    assert_eq!(doc["problems"], 0, "{doc}");
    assert_eq!(doc["money"]["journal_balance"], "0.000000", "{doc}");
    let lent = doc["shard_hours_lent"]["cpu"].as_f64().unwrap();
    assert!(lent > 0.0, "the market lent nothing: {doc}");
    let u = doc["mean_utilisation_pct"].as_f64().unwrap();
    assert!(u > 0.0 && u < 100.0, "{doc}");
    assert_eq!(doc["mode"], "closed_loop", "closed loop by default");
    let mean = doc["hosts_mean"].as_f64().unwrap();
    assert!(
        mean >= 1.0 && mean <= shardex as f64,
        "time-averaged hosts {mean}: {doc}"
    );
    assert!(
        doc["migrations_per_workload_day"].as_f64().unwrap() >= 0.0,
        "{doc}"
    );
    // Host-hours: the time-averaged count over the same steps as the static cloud's.
    let (hh, hs) = (
        doc["host_hours"].as_f64().unwrap(),
        doc["host_hours_static"].as_f64().unwrap(),
    );
    let ratio = hh / hs;
    assert!(
        (ratio - mean / stat as f64).abs() < 0.01,
        "host-hours {hh} / {hs} against {mean} / {stat} hosts: {doc}"
    );
}

#[test]
fn simulate_refuses_hosts_smaller_than_a_workload_naming_it() {
    let out = Command::new(BIN)
        .args(["simulate", "--trace"])
        .arg(bitbrains())
        .args(["--limit", "5", "--for", "1h", "--host-cpu", "500"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("more than a host has") && err.contains("--host-cpu"),
        "{err}"
    );
}
