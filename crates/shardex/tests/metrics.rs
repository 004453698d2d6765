//! `GET /metrics` parsed with a Prometheus text-format parser: its numbers agree with the
//! API's for the same ledger, its labels are declared routes (never a path as sent), it needs
//! the admin token; and the log carries each request's id, in either format.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// One sample per metric name and label set.
type Samples = HashMap<(String, Vec<(String, String)>), f64>;

fn scrape(addr: &str, token: &str) -> Samples {
    let (status, text) = get(addr, "/metrics", Some(token));
    assert_eq!(status, 200, "{text}");
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut out = HashMap::new();
    for s in parsed.samples {
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        out.insert((s.metric, labels), v);
    }
    out
}

fn one(samples: &Samples, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    samples.get(&(metric.to_string(), want)).copied()
}

fn json_of(addr: &str, path: &str, token: Option<&str>) -> Value {
    let (status, text) = get(addr, path, token);
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A daemon with a tenant "acme" (its token), a reservation of 2 cores and 1 GiB, and a
/// workload in it whose cgroup does not exist (so nothing is sampled or limited).
fn daemon() -> (
    std::process::Child,
    String,
    String,
    String,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, addr) = start(&data);
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let (s, body) = send(&addr, "POST", "/v1/tenants", &admin, r#"{"name":"acme"}"#);
    assert_eq!(s, 201, "{body}");
    let tenant: Value = serde_json::from_str(&body).unwrap();
    let token = tenant["token"]["token"].as_str().unwrap().to_string();
    let host = json_of(&addr, "/v1/overview", None)["hosts"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, body) = send(
        &addr,
        "POST",
        "/v1/reservations",
        &token,
        &json!({"host": host, "shards": {"cpu": 8, "memory": 8}, "for": "1h"}).to_string(),
    );
    assert_eq!(s, 201, "{body}");
    let (s, body) = send(
        &addr,
        "POST",
        "/v1/actions",
        &admin,
        &json!({"action": "bind_workload", "tenant": 1, "reservation": 1, "name": "/shardex-test-nowhere"})
            .to_string(),
    );
    assert_eq!(s, 200, "{body}");
    (child, addr, admin, token, dir)
}

#[test]
fn the_metrics_parse_and_agree_with_the_api_for_the_same_ledger() {
    let (child, addr, admin, token, _dir) = daemon();
    // The ledger may move between two reads (a repricing): compare a scrape taken between two
    // equal overviews.
    let (overview, samples) = (0..20)
        .find_map(|_| {
            let before = json_of(&addr, "/v1/overview", None);
            let samples = scrape(&addr, &admin);
            let after = json_of(&addr, "/v1/overview", None);
            (before["hosts"] == after["hosts"]).then_some((after, samples))
        })
        .expect("the ledger never held still between two reads");
    let host = &overview["hosts"][0];
    let name = host["name"].as_str().unwrap();
    for kind in ["cpu", "memory", "net", "iops"] {
        let split = &host["split"][kind];
        let mut parts = 0.0;
        for state in ["allocated", "lent", "idle", "offered", "free"] {
            let m = one(
                &samples,
                "shardex_host_shards",
                &[("host", name), ("kind", kind), ("state", state)],
            );
            assert_eq!(m, split[state].as_f64(), "{kind} {state}");
            parts += m.unwrap();
        }
        for state in ["reserved", "unreserved"] {
            let m = one(
                &samples,
                "shardex_host_shards",
                &[("host", name), ("kind", kind), ("state", state)],
            );
            assert_eq!(m, split[state].as_f64(), "{kind} {state}");
        }
        let capacity = one(
            &samples,
            "shardex_host_shards",
            &[("host", name), ("kind", kind), ("state", "capacity")],
        );
        assert_eq!(capacity, host["capacity"][kind].as_f64(), "{kind} capacity");
        assert_eq!(
            Some(parts),
            capacity,
            "the parts of {kind} add up to its capacity"
        );
        let price: f64 = host["market"]["price"][kind]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let m = one(
            &samples,
            "shardex_market_price",
            &[("host", name), ("kind", kind)],
        );
        assert_eq!(m, Some(price), "{kind} price");
        for state in ["offered", "leased", "waiting"] {
            let m = one(
                &samples,
                "shardex_market_shards",
                &[("host", name), ("kind", kind), ("state", state)],
            );
            assert_eq!(
                m,
                host["market"][state][kind].as_f64(),
                "{kind} market {state}"
            );
        }
    }
    // 8 of the host's cpu shards are reserved: allocated to the workload, idle or offered.
    let cpu = &host["split"]["cpu"];
    assert_eq!(cpu["reserved"], 8);
    let reserved_parts: u64 = ["allocated", "idle", "offered"]
        .iter()
        .map(|s| cpu[s].as_u64().unwrap())
        .sum();
    assert_eq!(reserved_parts, 8, "{cpu}");
    // The workload's entitlement, as the API (its tenant's token) shows it.
    let w = json_of(&addr, "/v1/workloads/1", Some(&token));
    for kind in ["cpu", "memory"] {
        let m = one(
            &samples,
            "shardex_workload_entitlement",
            &[
                ("workload", "/shardex-test-nowhere"),
                ("tenant", "acme"),
                ("kind", kind),
                ("unit", if kind == "cpu" { "millicores" } else { "bytes" }),
            ],
        );
        // Only once the control loop has seen the workload is it in the metrics.
        if m.is_some() {
            assert_eq!(m, w["kinds"][kind]["entitlement"].as_f64(), "{kind}");
        }
    }
    assert_eq!(one(&samples, "shardex_workloads", &[]), Some(1.0));
    let requests = overview["shard_requests"]["total"].as_f64().unwrap();
    let counted: f64 = ["pending", "fulfilled", "partially_fulfilled", "failed"]
        .iter()
        .map(|s| one(&samples, "shardex_shard_requests", &[("state", s)]).unwrap())
        .sum();
    assert_eq!(counted, requests);

    // The workload appears once the loop has run; then its entitlement agrees too.
    let seen = eventually(Duration::from_secs(20), || {
        let s = scrape(&addr, &admin);
        let labels = [
            ("workload", "/shardex-test-nowhere"),
            ("tenant", "acme"),
            ("kind", "cpu"),
            ("unit", "millicores"),
        ];
        let w = json_of(&addr, "/v1/workloads/1", Some(&token));
        one(&s, "shardex_workload_entitlement", &labels).is_some_and(|m| {
            assert_eq!(Some(m), w["kinds"]["cpu"]["entitlement"].as_f64());
            true
        })
    });
    assert!(seen, "the workload never appeared in the metrics");

    // Routes as declared, never the path as sent; the admin token is needed.
    let (s, _) = get(&addr, "/v1/workloads/1", Some(&token));
    assert_eq!(s, 200);
    let (s, _) = get(&addr, "/v1/workloads/99", Some(&token));
    assert_eq!(s, 404);
    // The parser folds a histogram's lines into buckets: read its counts from the text.
    let (_, text) = get(&addr, "/metrics", Some(&admin));
    let counts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("shardex_api_request_seconds_count{"))
        .collect();
    let routes: Vec<&str> = counts
        .iter()
        .filter_map(|l| l.split("route=\"").nth(1)?.split('"').next())
        .collect();
    assert!(routes.contains(&"/v1/workloads/{id}"), "{routes:?}");
    assert!(
        !routes
            .iter()
            .any(|r| r.contains("/99") || r.ends_with("/1")),
        "{routes:?}"
    );
    let count = |status: &str| -> f64 {
        let head = format!(
            "shardex_api_request_seconds_count{{method=\"GET\",route=\"/v1/workloads/{{id}}\",status=\"{status}\"}} "
        );
        counts
            .iter()
            .find_map(|l| l.strip_prefix(head.as_str()))
            .unwrap_or_else(|| panic!("no {head} in {counts:?}"))
            .parse()
            .unwrap()
    };
    assert!(count("2xx") >= 2.0, "{counts:?}");
    assert_eq!(count("4xx"), 1.0, "{counts:?}");
    assert!(
        text.contains("shardex_control_tick_seconds_count"),
        "the control tick is timed"
    );
    // Every metric the Grafana dashboard in the repo queries is one the daemon exposes.
    let grafana = include_str!("../../../deploy/grafana/shardex.json");
    let mut queried: Vec<&str> = grafana
        .match_indices("shardex_")
        .map(|(i, _)| {
            let rest = &grafana[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    queried.sort_unstable();
    queried.dedup();
    assert!(queried.len() >= 10, "{queried:?}");
    for m in queried {
        // A histogram's series are its name's `_bucket`, `_count` and `_sum`.
        let m = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| m.strip_suffix(s))
            .unwrap_or(m);
        assert!(
            text.lines().any(|l| l.starts_with(&format!("# TYPE {m} "))
                || l.starts_with(&format!("{m}{{"))
                || l.starts_with(&format!("{m} "))),
            "deploy/grafana/shardex.json queries {m}, which /metrics does not have"
        );
    }
    let (s, _) = get(&addr, "/metrics", None);
    assert_eq!(s, 401, "the metrics need the admin token");
    let (s, _) = get(&addr, "/metrics", Some(&token));
    assert_eq!(s, 401, "a tenant's token is not enough");
    interrupt_and_wait(child);
}

#[test]
fn every_log_line_of_a_request_carries_its_id_in_either_format() {
    for format in ["human", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (child, addr) = start_with(&data, &["--log-format", format]);
        let pid = child.id();
        let id = format!("req-{format}-42");
        let (s, _, _) = send_with(
            &addr,
            "GET",
            "/v1/workloads/7",
            "wrong-token",
            &[&format!("x-request-id: {id}")],
            "",
        );
        assert_eq!(s, 401);
        // The request's line is written after the answer: wait for it.
        let logged = eventually(Duration::from_secs(5), || log_of(pid).contains(&id));
        let log = log_of(pid);
        assert!(logged, "{format}: no line with {id}:\n{log}");
        let line = log.lines().find(|l| l.contains(&id)).unwrap();
        if format == "json" {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["span"]["request_id"], id.as_str(), "{line}");
            assert_eq!(v["fields"]["status"], 401, "{line}");
            for l in log.lines() {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            }
        } else {
            assert!(line.contains(&format!("request_id={id}")), "{line}");
            assert!(line.contains("status=401"), "{line}");
        }
        interrupt_and_wait(child);
    }
}
