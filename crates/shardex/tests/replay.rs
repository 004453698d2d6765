//! `shardex replay` end to end on small slices of the real traces in ../shared/data.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_shardex");

fn trace(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(name);
    assert!(
        dir.join("samples.csv.gz").exists(),
        "the test traces are missing: {}",
        dir.display()
    );
    dir
}

fn replay_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("replay")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("exactly one JSON document")
}

#[test]
fn replay_prints_the_documented_json_for_a_slice_of_bitbrains() {
    let dir = trace("bitbrains-2013-08");
    let doc = replay_json(&[
        "--trace",
        dir.to_str().unwrap(),
        "--limit",
        "4",
        "--kinds",
        "cpu,memory",
    ]);
    assert_eq!(doc["trace"], "bitbrains-2013-08");
    let policies = doc["policies"].as_array().unwrap();
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["static", "reactive", "vpa", "autopilot", "shardex"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for p in policies {
        for kind in ["cpu", "memory"] {
            let k = &p["kinds"][kind];
            for field in [
                "slack_pct",
                "shortfall_samples_pct",
                "shortfall_volume_pct",
                "changes_per_hour",
            ] {
                let v = k[field]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{} {kind} {field}", p["name"]));
                assert!(
                    (0.0..=100.0).contains(&v) || field == "changes_per_hour",
                    "{field} = {v}"
                );
            }
        }
        assert!(p["cost"].as_f64().unwrap() > 0.0);
    }
    let shardex = policies.iter().find(|p| p["name"] == "shardex").unwrap();
    assert!(
        shardex["kinds"]["cpu"]["coverage_p95_pct"]
            .as_f64()
            .is_some()
    );
    let vpa = policies.iter().find(|p| p["name"] == "vpa").unwrap();
    assert!(
        vpa["kinds"]["cpu"].get("coverage_p95_pct").is_none(),
        "VPA gives no quantiles"
    );
    assert_eq!(doc["mode"], "closed_loop", "closed loop by default");
    let open = replay_json(&[
        "--trace",
        dir.to_str().unwrap(),
        "--limit",
        "4",
        "--kinds",
        "cpu,memory",
        "--open-loop",
    ]);
    assert_eq!(open["mode"], "open_loop");
    // Same trace, same names: only what the policies were shown differs.
    let slack = |d: &serde_json::Value, name: &str| {
        d["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["kinds"]["cpu"]["slack_pct"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(
        slack(&doc, "static"),
        slack(&open, "static"),
        "static ignores what it is shown"
    );
}

#[test]
fn replay_plots_one_workload_as_a_readable_svg() {
    let dir = trace("azure-v1-100vms");
    let svg = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(BIN)
        .args([
            "replay",
            "--trace",
            dir.to_str().unwrap(),
            "--limit",
            "2",
            "--kinds",
            "cpu",
        ])
        .args(["--plot", "az-1023683", "--out"])
        .arg(svg.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(svg.path()).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    for label in [
        "az-1023683",
        "cpu (cores)",
        "hours since",
        "used",
        "shardex allocation",
        "vpa allocation",
        "shardex p95",
    ] {
        assert!(text.contains(label), "the plot lacks {label:?}");
    }
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("slack %") && table.contains("shardex"),
        "{table}"
    );
    // The legend sits above the panel, outside the curves; usage is drawn after (over) the
    // allocations.
    let legend_y = text.find("vpa allocation").unwrap();
    let first_curve = text.find("<polyline").unwrap();
    assert!(legend_y < first_curve, "legend drawn before any curve");
    let usage = text.rfind(r##"stroke="#000000""##).unwrap();
    let last_alloc = text.rfind(r##"stroke="#d62728""##).unwrap();
    assert!(usage > last_alloc, "usage on top");
    // A time range draws only its samples: a day of 5-minute samples is 288 points.
    let day = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(BIN)
        .args(["replay", "--trace", dir.to_str().unwrap(), "--limit", "2"])
        .args([
            "--kinds",
            "cpu",
            "--plot",
            "az-1023683",
            "--from",
            "2d",
            "--to",
            "3d",
        ])
        .arg("--out")
        .arg(day.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(day.path()).unwrap();
    let usage_line = text
        .lines()
        .rev()
        .find(|l| l.contains(r##"stroke="#000000""##) && l.contains("<polyline"))
        .unwrap();
    let points = usage_line
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(points.split_whitespace().count(), 288, "one day of samples");
}

#[test]
fn replay_refuses_bad_arguments_clearly() {
    let dir = trace("azure-v1-100vms");
    let run = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["replay", "--trace", dir.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8(out.stderr).unwrap()
    };
    assert!(run(&["--policy", "magic"]).contains("unknown policy \"magic\""));
    assert!(run(&["--kinds", "gpu"]).contains("gpu"));
    assert!(run(&["--lead", "5 minutes"]).contains("invalid duration"));
    let budget = run(&["--budget", "cpu=1"]);
    assert!(
        budget.contains("--budget") && budget.contains("percentage"),
        "{budget}"
    );
    assert!(run(&["--budget", "cpu=80%"]).contains("outside"));
    let unknown = run(&["--plot", "nope", "--out", "/tmp/x.svg"]);
    assert!(
        unknown.contains("\"nope\" is not in") && unknown.contains("workloads.csv"),
        "{unknown}"
    );
    assert!(
        run(&[
            "--plot",
            "x",
            "--out",
            "/tmp/x.svg",
            "--from",
            "2d",
            "--to",
            "1d"
        ])
        .contains("before --to")
    );
}

#[test]
fn replay_frontier_reports_shardex_at_each_baselines_shortfall_and_draws_it() {
    let dir = trace("azure-v1-100vms");
    let svg = tempfile::NamedTempFile::new().unwrap();
    let doc = replay_json(&[
        "--trace",
        dir.to_str().unwrap(),
        "--limit",
        "6",
        "--kinds",
        "cpu",
        "--frontier",
        "--out",
        svg.path().to_str().unwrap(),
    ]);
    let cpu = &doc["frontier"]["cpu"];
    let curve = cpu["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 9, "one point per budget: {cpu}");
    // A larger budget never realises much less shortfall than a smaller one.
    let short: Vec<f64> = curve
        .iter()
        .map(|c| c["shortfall_pct"].as_f64().unwrap())
        .collect();
    assert!(short.first().unwrap() < short.last().unwrap(), "{short:?}");
    for b in cpu["baselines"].as_array().unwrap() {
        assert_ne!(b["name"], "shardex");
        let s = b["shortfall_pct"].as_f64().unwrap();
        let inside = short.iter().any(|&x| x <= s) && short.iter().any(|&x| x >= s);
        // Interpolated exactly where the curve reaches, and only there.
        assert_eq!(b["shardex_slack_pct"].is_f64(), inside, "{b}");
        if inside {
            let by = b["slack_pct"].as_f64().unwrap() - b["shardex_slack_pct"].as_f64().unwrap();
            assert!(
                (by - b["slack_lower_by"].as_f64().unwrap()).abs() < 0.02,
                "{b}"
            );
        }
    }
    let text = std::fs::read_to_string(svg.path()).unwrap();
    assert!(text.starts_with("<svg") && text.contains("polyline") && text.contains("vpa"));
}

#[test]
fn replay_out_without_plot_or_frontier_is_refused() {
    let dir = trace("azure-v1-100vms");
    let out = Command::new(BIN)
        .args([
            "replay",
            "--trace",
            dir.to_str().unwrap(),
            "--out",
            "/tmp/x.svg",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--plot or --frontier"));
}
