//! The tenant-facing API against a real `shardex run`: tenants and tokens, isolation between
//! tenants, reservations, the headline modification ("+10% cpu for an hour") with its dry run,
//! idempotent retries, expiry, the invoice line it produced, problem documents, and the
//! OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{get, interrupt_and_wait, send, send_with, start};
use serde_json::{Value, json};

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

struct Daemon {
    child: Option<std::process::Child>,
    addr: String,
    admin: String,
    host: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Self {
        Self::start_with("")
    }

    /// With `extra` added to the configuration file (`shardex.toml` beside the data folder).
    fn start_with(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Allocations are only recorded; an `[engine]` table of the test's own gets that too.
        let config = if extra.contains("[engine]") {
            extra.replacen("[engine]", "[engine]\nactuator = \"simulated\"", 1)
        } else {
            format!("{extra}\n[engine]\nactuator = \"simulated\"\n")
        };
        std::fs::write(dir.path().join("shardex.toml"), config).unwrap();
        let data = dir.path().join("data");
        let (child, addr) = start(&data);
        let admin = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        let (_, hosts) = get(&addr, "/v1/hosts", Some(&admin));
        let host = parse(&hosts)["hosts"][0]["name"]
            .as_str()
            .unwrap()
            .to_string();
        Daemon {
            child: Some(child),
            addr,
            admin,
            host,
            _dir: dir,
        }
    }

    /// A new tenant and its token.
    fn tenant(&self, name: &str) -> (u64, String) {
        let (s, b) = send(
            &self.addr,
            "POST",
            "/v1/tenants",
            &self.admin,
            &json!({"name": name}).to_string(),
        );
        assert_eq!(s, 201, "{b}");
        let v = parse(&b);
        (
            v["tenant"]["id"].as_u64().unwrap(),
            v["token"]["token"].as_str().unwrap().to_string(),
        )
    }

    fn reserve(&self, token: &str, cpu: u64, duration: &str) -> Value {
        let body = json!({"host": self.host, "shards": {"cpu": cpu, "memory": 8}, "for": duration});
        let (s, b) = send(
            &self.addr,
            "POST",
            "/v1/reservations",
            token,
            &body.to_string(),
        );
        assert_eq!(s, 201, "{b}");
        parse(&b)
    }
}

impl Daemon {
    /// SIGKILL, then a new daemon on the same data folder.
    fn crash_and_restart(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let (child, addr) = start(&self._dir.path().join("data"));
        self.child = Some(child);
        self.addr = addr;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            interrupt_and_wait(c);
        }
    }
}

fn assert_problem(status: u16, body: &str, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    let v = parse(body);
    assert_eq!(v["code"], code, "{body}");
    assert_eq!(v["status"], want_status);
    assert!(v["type"].as_str().unwrap().ends_with(code));
    assert!(!v["detail"].as_str().unwrap().is_empty());
}

#[test]
fn tenants_get_tokens_that_only_reach_their_own_objects() {
    let d = Daemon::start();
    let (a_id, a) = d.tenant("alpha");
    let (_, b) = d.tenant("beta");
    // A tenant sees itself only.
    let (s, body) = get(&d.addr, "/v1/tenants", Some(&a));
    assert_eq!(s, 200);
    assert_eq!(
        parse(&body)["tenants"],
        json!([{"id": a_id, "name": "alpha"}])
    );
    // No token, a wrong one, a forged one: 401, as a problem document.
    let (s, body) = get(&d.addr, "/v1/reservations", None);
    assert_problem(s, &body, 401, "unauthorized");
    let last = if a.ends_with('0') { "1" } else { "0" };
    let forged = format!("{}{last}", &a[..a.len() - 1]);
    let (s, body) = get(&d.addr, "/v1/reservations", Some(&forged));
    assert_problem(s, &body, 401, "unauthorized");
    // Admin-only routes refuse a tenant.
    let (s, body) = send(&d.addr, "POST", "/v1/tenants", &a, r#"{"name":"gamma"}"#);
    assert_problem(s, &body, 403, "forbidden");
    // A tenant creating a reservation for itself; the other tenant can't see or touch it.
    let r = d.reserve(&a, 20, "1h");
    let id = r["id"].as_u64().unwrap();
    assert_eq!(r["tenant"], a_id);
    assert_eq!(r["state"], "active");
    for (method, path, body) in [
        ("GET", format!("/v1/reservations/{id}"), String::new()),
        ("DELETE", format!("/v1/reservations/{id}"), String::new()),
        (
            "GET",
            format!("/v1/reservations/{id}/modifications"),
            String::new(),
        ),
        (
            "POST",
            format!("/v1/reservations/{id}/modifications"),
            json!({"changes": {"cpu": "+10%"}, "for": "1h"}).to_string(),
        ),
        ("GET", "/v1/tenants/alpha/tokens".to_string(), String::new()),
    ] {
        let (s, got) = send(&d.addr, method, &path, &b, &body);
        assert_problem(s, &got, 404, "not-found");
        // Exactly like a missing one.
        let missing = path
            .replace(&format!("/{id}"), "/999")
            .replace("alpha", "nobody");
        let (s2, got2) = send(&d.addr, method, &missing, &b, &body);
        assert_eq!(
            (s, parse(&got)["code"].clone()),
            (s2, parse(&got2)["code"].clone()),
            "{missing}"
        );
    }
    let (_, page) = get(&d.addr, "/v1/reservations", Some(&b));
    assert_eq!(parse(&page)["items"], json!([]));
    // Nothing changed for alpha.
    let (s, body) = get(&d.addr, &format!("/v1/reservations/{id}"), Some(&a));
    assert_eq!(s, 200);
    assert_eq!(parse(&body)["state"], "active");
    assert_eq!(parse(&body)["modifications"], json!([]));
    // Tokens: listed without secrets; a revoked one stops working at once.
    let (s, body) = send(
        &d.addr,
        "POST",
        "/v1/tenants/alpha/tokens",
        &d.admin,
        r#"{"label":"ci","expires_in":"1d"}"#,
    );
    assert_eq!(s, 201, "{body}");
    let second = parse(&body);
    let second_token = second["token"].as_str().unwrap().to_string();
    let (s, body) = get(&d.addr, "/v1/tenants/alpha/tokens", Some(&a));
    assert_eq!(s, 200);
    assert_eq!(parse(&body)["tokens"].as_array().unwrap().len(), 2);
    assert!(
        !body.contains(&second_token[20..]),
        "a listed token shows no secret"
    );
    let tid = second["id"].as_str().unwrap();
    let (s, _) = send(
        &d.addr,
        "DELETE",
        &format!("/v1/tokens/{tid}"),
        &second_token,
        "",
    );
    assert_eq!(s, 204);
    let (s, body) = get(&d.addr, "/v1/reservations", Some(&second_token));
    assert_problem(s, &body, 401, "unauthorized");
    let (s, _) = get(&d.addr, "/v1/reservations", Some(&a));
    assert_eq!(s, 200, "the other token of alpha still works");
}

#[test]
fn bad_input_is_a_problem_document_naming_what_is_wrong_and_changes_nothing() {
    let d = Daemon::start();
    let (_, a) = d.tenant("alpha");
    let host = d.host.clone();
    for (body, code, needle) in [
        (
            json!({"host": host, "shards": {"cpu": 1}, "for": "1h", "x": 1}),
            "bad-request",
            "unknown field",
        ),
        (
            json!({"host": host, "shards": {"cpu": 1, "gpu": 1}, "for": "1h"}),
            "bad-request",
            "gpu",
        ),
        (
            json!({"host": host, "shards": {"cpu": 1}, "for": "1y"}),
            "bad-request",
            "for",
        ),
        (
            json!({"host": host, "shards": {"cpu": 1}, "for": "18446744073709551615ms"}),
            "bad-request",
            "10 years",
        ),
        (
            json!({"host": host, "shards": {"cpu": 1}, "for": "1h", "start": "2001-01-01T00:00:00Z"}),
            "bad-request",
            "past",
        ),
        (
            json!({"host": host, "shards": {"cpu": 1}, "for": "1h", "start": "tomorrow"}),
            "bad-request",
            "start",
        ),
        (
            json!({"host": host, "shards": {"cpu": 1u64 << 50}, "for": "1h"}),
            "bad-request",
            "shards.cpu",
        ),
        (
            json!({"host": host, "shards": {"cpu": 1}, "for": "1h", "tier": "gold"}),
            "bad-request",
            "tier",
        ),
        (
            json!({"host": "nowhere", "shards": {"cpu": 1}, "for": "1h"}),
            "not-found",
            "nowhere",
        ),
        (
            json!({"host": host, "shards": {}, "for": "1h"}),
            "empty-vector",
            "shard",
        ),
        (
            json!({"host": host, "shards": {"cpu": 1_000_000}, "for": "1h"}),
            "host-capacity-exceeded",
            "cpu",
        ),
    ] {
        let (s, got) = send(&d.addr, "POST", "/v1/reservations", &a, &body.to_string());
        assert!((400..500).contains(&s), "{body}: {s} {got}");
        let v = parse(&got);
        assert_eq!(v["code"], code, "{body}: {got}");
        assert!(
            v["detail"].as_str().unwrap().contains(needle),
            "{body}: {got}"
        );
    }
    let (s, head, got) = send_with(&d.addr, "POST", "/v1/reservations", &a, &[], "{not json");
    assert_eq!(s, 400, "{got}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    let big = format!("{{\"host\": \"{}\"}}", "x".repeat(100_000));
    let (s, got) = send(&d.addr, "POST", "/v1/reservations", &a, &big);
    assert_problem(s, &got, 413, "body-too-large");
    let (s, got) = get(&d.addr, "/v1/reservations?limit=abc", Some(&a));
    assert_problem(s, &got, 400, "bad-request");
    let (s, got) = get(&d.addr, "/v1/reservations?colour=red", Some(&a));
    assert_problem(s, &got, 400, "bad-request");
    let (s, got) = get(&d.addr, "/v1/reservations/abc", Some(&a));
    assert_problem(s, &got, 400, "bad-request");
    // The room refused is infeasible, with the reason.
    let (_, got) = send(
        &d.addr,
        "POST",
        "/v1/reservations",
        &a,
        &json!({"host": host, "shards": {"cpu": 1_000_000}, "for": "1h"}).to_string(),
    );
    assert_eq!(parse(&got)["outcome"], "infeasible");
    let (_, page) = get(&d.addr, "/v1/reservations", Some(&a));
    assert_eq!(parse(&page)["items"], json!([]), "nothing was created");
}

#[test]
fn plus_ten_percent_cpu_for_an_hour_is_one_call_with_a_dry_run_a_safe_retry_and_an_expiry() {
    let d = Daemon::start();
    let (_, a) = d.tenant("alpha");
    let r = d.reserve(&a, 100, "1h");
    let id = r["id"].as_u64().unwrap();
    let path = format!("/v1/reservations/{id}/modifications");
    let headline = json!({"changes": {"cpu": "+10%"}, "for": "1h"}).to_string();
    // Dry run: the same document with the quote, nothing committed.
    let (s, body) = send(
        &d.addr,
        "POST",
        &format!("{path}?dry_run=true"),
        &a,
        &headline,
    );
    assert_eq!(s, 200, "{body}");
    let dry = parse(&body);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["outcome"], "applied");
    assert_eq!(dry["reservation"]["now"]["cpu"], 110);
    let cost: f64 = dry["quote"]["cost"].as_str().unwrap().parse().unwrap();
    assert!(cost > 0.0, "{body}");
    let (_, now) = get(&d.addr, &format!("/v1/reservations/{id}"), Some(&a));
    assert_eq!(
        parse(&now)["now"]["cpu"],
        100,
        "the dry run changed nothing"
    );
    assert_eq!(parse(&now)["modifications"], json!([]));
    // The call itself, with an Idempotency-Key; a retry answers the same and applies nothing.
    let key = ["Idempotency-Key: plus-ten-1"];
    let (s, head, first) = send_with(&d.addr, "POST", &path, &a, &key, &headline);
    assert_eq!(s, 201, "{first}");
    assert!(!head.contains("idempotent-replayed"));
    let done = parse(&first);
    assert_eq!(done["outcome"], "applied");
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["reservation"]["now"]["cpu"], 110);
    assert_eq!(done["modification"]["state"], "in_force");
    assert_eq!(done["quote"]["cost"], dry["quote"]["cost"]);
    let (s, head, again) = send_with(&d.addr, "POST", &path, &a, &key, &headline);
    assert_eq!((s, again.as_str()), (201, first.as_str()));
    assert!(head.contains("idempotent-replayed: true"), "{head}");
    let other = json!({"changes": {"cpu": "+20%"}, "for": "1h"}).to_string();
    let (s, _, got) = send_with(&d.addr, "POST", &path, &a, &key, &other);
    assert_problem(s, &got, 422, "idempotency-key-reused");
    let (_, list) = get(&d.addr, &path, Some(&a));
    assert_eq!(
        parse(&list)["modifications"].as_array().unwrap().len(),
        1,
        "applied once"
    );
    // Concurrent duplicates: one applies, the rest replay it.
    let key2 = "Idempotency-Key: minus-one";
    let small = json!({"changes": {"cpu": "-1"}, "for": "1h"}).to_string();
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let (st, _, b) = send_with(&d.addr, "POST", &path, &a, &[key2], &small);
                    (st, b)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|x| x == &answers[0]), "{answers:?}");
    let (_, list) = get(&d.addr, &path, Some(&a));
    assert_eq!(parse(&list)["modifications"].as_array().unwrap().len(), 2);
    // A short one expires after its duration and leaves the reservation as it was.
    let short = json!({"changes": {"cpu": "=150"}, "for": "2s"}).to_string();
    let (s, body) = send(&d.addr, "POST", &path, &a, &short);
    assert_eq!(s, 201, "{body}");
    let mid = parse(&body)["modification"]["id"].as_u64().unwrap();
    assert_eq!(parse(&body)["reservation"]["now"]["cpu"], 150);
    std::thread::sleep(Duration::from_millis(3500));
    // An ended modification is pruned from the ledger (its charges stay on the invoice).
    let (s, m) = get(&d.addr, &format!("{path}/{mid}"), Some(&a));
    assert!(s == 404 || parse(&m)["state"] == "ended", "{s} {m}");
    let (_, now) = get(&d.addr, &format!("/v1/reservations/{id}"), Some(&a));
    assert_eq!(parse(&now)["now"]["cpu"], 109, "+10% then -1 again: {now}");
    assert!(
        !parse(&now)["modifications"]
            .as_array()
            .unwrap()
            .contains(&json!(mid))
    );
    // A scheduled one, then cancelled.
    let later =
        json!({"changes": {"memory": "+4"}, "for": "1h", "start": "+10m", "delivery": "scheduled"})
            .to_string();
    let (s, body) = send(&d.addr, "POST", &path, &a, &later);
    assert_eq!(s, 201, "{body}");
    assert_eq!(parse(&body)["outcome"], "scheduled");
    let sid = parse(&body)["modification"]["id"].as_u64().unwrap();
    let (s, body) = send(&d.addr, "DELETE", &format!("{path}/{sid}"), &a, "");
    assert_eq!(s, 200, "{body}");
    assert_eq!(parse(&body)["state"], "cancelled");
    // A change past the host's capacity is infeasible, with the reason; nothing changes.
    let huge = json!({"changes": {"cpu": "+100000"}, "for": "1h"}).to_string();
    let (s, body) = send(&d.addr, "POST", &path, &a, &huge);
    assert_eq!(s, 409, "{body}");
    assert_eq!(parse(&body)["outcome"], "infeasible");
    for (bad, needle) in [
        (json!({"changes": {}, "for": "1h"}), "at least one kind"),
        (
            json!({"changes": {"cpu": "ten"}, "for": "1h"}),
            "changes.cpu",
        ),
        (json!({"changes": {"disk": "+1"}, "for": "1h"}), "disk"),
        (
            json!({"changes": {"cpu": "+1"}, "for": "1h", "delivery": "scheduled"}),
            "delivery",
        ),
        (
            json!({"changes": {"cpu": "+1"}, "for": "1h", "delivery": "later"}),
            "delivery",
        ),
    ] {
        let (s, body) = send(&d.addr, "POST", &path, &a, &bad.to_string());
        assert_eq!(s, 400, "{bad}: {body}");
        assert!(
            parse(&body)["detail"].as_str().unwrap().contains(needle),
            "{body}"
        );
    }
    let (_, list) = get(&d.addr, &path, Some(&a));
    let states: Vec<Value> = parse(&list)["modifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].clone())
        .collect();
    assert!(
        states.iter().filter(|s| *s == "in_force").count() == 2,
        "{list}"
    );
    // The invoice has the reservation's line.
    let (s, body) = get(&d.addr, "/v1/invoice?period=1d", Some(&a));
    assert_eq!(s, 200, "{body}");
    let inv = parse(&body);
    assert!(
        inv["lines"].as_array().unwrap().iter().any(|l| l["what"]
            .as_str()
            .unwrap()
            .contains(&format!("reservation {id}"))),
        "{body}"
    );
    // Cancel the reservation: cancelled, listed by state.
    let (s, body) = send(&d.addr, "DELETE", &format!("/v1/reservations/{id}"), &a, "");
    assert_eq!(s, 200, "{body}");
    assert_eq!(parse(&body)["state"], "cancelled");
    // The ledger prunes what has ended (its charges stay on the invoice).
    let (s, r) = get(&d.addr, &format!("/v1/reservations/{id}"), Some(&a));
    assert!(s == 404 || parse(&r)["state"] == "cancelled", "{s} {r}");
    let (_, page) = get(&d.addr, "/v1/reservations?state=active", Some(&a));
    assert_eq!(parse(&page)["items"], json!([]));
}

#[test]
fn reservations_page_by_id_and_the_openapi_document_is_served_as_committed() {
    let d = Daemon::start();
    let (_, a) = d.tenant("alpha");
    let ids: Vec<u64> = (0..5)
        .map(|_| d.reserve(&a, 1, "1h")["id"].as_u64().unwrap())
        .collect();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (_, body) = get(
            &d.addr,
            &format!("/v1/reservations?limit=2&after={after}"),
            Some(&a),
        );
        let page = parse(&body);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_u64().unwrap()),
        );
        match page["next"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let (_, all) = get(&d.addr, "/v1/reservations", Some(&d.admin));
    assert_eq!(
        parse(&all)["items"].as_array().unwrap().len(),
        5,
        "the admin sees all"
    );
    let (s, body) = get(&d.addr, &format!("/v1/hosts/{}/market", d.host), Some(&a));
    assert_eq!(s, 200, "{body}");
    let m = parse(&body);
    assert_eq!(m["host"], d.host.as_str());
    assert!(m["offered"]["cpu"].as_u64().is_some(), "{body}");
    assert_eq!(m["borrowed"], json!([]));
    let (s, body) = get(&d.addr, "/v1/hosts/nowhere/market", Some(&a));
    assert_problem(s, &body, 404, "not-found");
    let (s, body) = get(&d.addr, "/v1/openapi.json", None);
    assert_eq!(s, 200);
    let committed = include_str!("../../shardex-api/openapi.json");
    assert_eq!(parse(&body), parse(committed));
    assert!(parse(&body)["paths"]["/v1/reservations/{id}/modifications"]["post"].is_object());
}

#[test]
fn every_answer_has_a_request_id_and_an_unknown_route_is_a_problem() {
    let d = Daemon::start();
    let (s, head, body) = send_with(&d.addr, "GET", "/v1/nothing-here", &d.admin, &[], "");
    assert_problem(s, &body, 404, "no-such-route");
    assert!(head.contains("x-request-id: "), "{head}");
    let (_, head, _) = send_with(
        &d.addr,
        "GET",
        "/v1/hosts",
        &d.admin,
        &["x-request-id: trace-me-7"],
        "",
    );
    assert!(
        head.contains("x-request-id: trace-me-7"),
        "the client's id is kept: {head}"
    );
}

#[test]
#[ignore = "needs a cgroup v1 or v2 filesystem at /sys/fs/cgroup; CI runs it with --include-ignored"]
fn a_workload_shows_its_usage_entitlement_and_forecast_to_its_tenant_only() {
    // "/" is the root cgroup: everything running here, sampled for real.
    let (child, addr, admin, _dir) = common::daemon_with_one_workload(
        "mode = \"act\"\nsample_every = \"200ms\"\ndecide_every = \"1s\"\nactuator = \"simulated\"\n",
        json!({"cpu": 1, "memory": 1}),
        "/",
    );
    let (s, body) = send(&addr, "POST", "/v1/tenants/ops/tokens", &admin, "{}");
    assert_eq!(s, 201, "{body}");
    let ops = parse(&body)["token"].as_str().unwrap().to_string();
    let (s, body) = send(&addr, "POST", "/v1/tenants", &admin, r#"{"name":"other"}"#);
    assert_eq!(s, 201, "{body}");
    let other = parse(&body)["token"]["token"].as_str().unwrap().to_string();
    let mut forecast = Value::Null;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(200));
        let (s, body) = get(&addr, "/v1/workloads/1/forecast", Some(&ops));
        // cpu needs two samples (a usage is a difference of counters).
        if s == 200 && parse(&body)["steps"][0]["kinds"]["cpu"].is_object() {
            forecast = parse(&body);
            break;
        }
        if s == 200 {
            continue;
        }
        assert_eq!(parse(&body)["code"], "no-forecast", "{body}");
    }
    let steps = forecast["steps"]
        .as_array()
        .expect("a forecast within 20 s");
    assert_eq!(steps.len(), 12, "{forecast}");
    assert_eq!(forecast["step"], "1s");
    let cpu = &steps[0]["kinds"]["cpu"];
    let q = |k: &str| cpu[k].as_u64().unwrap_or_else(|| panic!("{forecast}"));
    assert!(
        q("p50") <= q("p90") && q("p90") <= q("p95") && q("p95") <= q("p99"),
        "{cpu}"
    );
    // Shards are the quantiles in 10-millicore shards, rounded up.
    assert_eq!(
        cpu["shards"][3].as_u64().unwrap(),
        q("p99").div_ceil(10),
        "{cpu}"
    );
    let (s, body) = get(&addr, "/v1/workloads/1", Some(&ops));
    assert_eq!(s, 200, "{body}");
    let w = parse(&body);
    assert_eq!(w["name"], "/");
    // Its reservation's one 10-millicore shard plus what it leased (act mode), in force.
    let cpu_now = &w["kinds"]["cpu"];
    assert!(cpu_now["entitlement"].as_u64().unwrap() >= 10, "{w}");
    assert_eq!(cpu_now["limit_in_force"], cpu_now["entitlement"], "{w}");
    assert!(w["kinds"]["cpu"]["usage"].as_u64().is_some(), "{w}");
    let (_, body) = get(&addr, "/v1/reservations/1/workloads", Some(&ops));
    assert_eq!(parse(&body)["workloads"][0]["id"], 1);
    // Its leases show in its host's market, to it and not to another tenant.
    let host = {
        let (_, body) = get(&addr, "/v1/hosts", Some(&admin));
        parse(&body)["hosts"][0]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (s, body) = get(&addr, &format!("/v1/hosts/{host}/market"), Some(&ops));
    assert_eq!(s, 200, "{body}");
    let borrowed = parse(&body)["borrowed"].as_array().unwrap().clone();
    assert!(
        borrowed.iter().any(|l| l["workload"] == 1),
        "act mode leased for it: {body}"
    );
    let (_, body) = get(&addr, &format!("/v1/hosts/{host}/market"), Some(&other));
    assert_eq!(parse(&body)["borrowed"], json!([]), "{body}");
    // The same through `shardex ctl`.
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .args(["ctl", "--url", &addr, "--token", &ops])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = ctl(&["get", "forecast", "1"]);
    assert!(table.starts_with("AT") && table.contains("cpu"), "{table}");
    let table = ctl(&["get", "workload", "1"]);
    assert!(
        table.contains("ENTITLEMENT") && table.contains("memory"),
        "{table}"
    );
    for path in [
        "/v1/workloads/1",
        "/v1/workloads/1/forecast",
        "/v1/reservations/1/workloads",
    ] {
        let (s, body) = get(&addr, path, Some(&other));
        assert_problem(s, &body, 404, "not-found");
    }
    interrupt_and_wait(child);
}

#[test]
fn a_client_holding_half_sent_headers_is_cut_off_and_never_holds_up_a_stop() {
    use std::io::{Read, Write};
    let mut d = Daemon::start();
    let half = |addr: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /v1/health HTTP/1.1\r\nHo").unwrap();
        s
    };
    // Headers not finished within the header timeout (10 s): the connection is closed.
    let mut slow = half(&d.addr);
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let n = slow.read(&mut buf).unwrap_or(0);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(15), "cut off after {waited:?}");
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    // A client holding half-sent headers does not hold up a stop.
    let _held = half(&d.addr);
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    interrupt_and_wait(d.child.take().unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stopped after {:?}",
        started.elapsed()
    );
}

#[test]
#[ignore = "needs a cgroup v1 or v2 filesystem at /sys/fs/cgroup; CI runs it with --include-ignored"]
fn a_workload_the_market_cannot_cover_shows_its_shard_request_to_its_tenant() {
    // The root cgroup (busy: everything here) in a 1-shard reservation, on a host whose other
    // cpu is all reserved by a tenant that does not lend: the market can't cover it.
    let (child, addr, admin, _dir) = common::daemon_with_one_workload(
        "mode = \"act\"\nsample_every = \"200ms\"\ndecide_every = \"1s\"\nactuator = \"simulated\"\n",
        json!({"cpu": 1, "memory": 1}),
        "/",
    );
    let (_, hosts) = get(&addr, "/v1/hosts", Some(&admin));
    let h = &parse(&hosts)["hosts"][0];
    let free = h["balance"]["free"]["cpu"].as_u64().unwrap();
    let (s, body) = send(
        &addr,
        "POST",
        "/v1/tenants",
        &admin,
        r#"{"name":"hoarder"}"#,
    );
    assert_eq!(s, 201, "{body}");
    let hoarder = parse(&body)["token"]["token"].as_str().unwrap().to_string();
    let host = h["name"].as_str().unwrap();
    let (s, body) = send(
        &addr,
        "POST",
        "/v1/reservations",
        &hoarder,
        &json!({"host": host, "shards": {"cpu": free}, "for": "1h"}).to_string(),
    );
    assert_eq!(s, 201, "{body}");
    let rid = parse(&body)["id"].as_u64().unwrap();
    let (s, body) = send(
        &addr,
        "POST",
        "/v1/actions",
        &admin,
        &json!({"action": "set_lending", "tenant": 2, "reservation": rid, "lending": {"opt_out": true}, "floor": {}}).to_string(),
    );
    assert_eq!(s, 200, "{body}");
    let (s, body) = send(&addr, "POST", "/v1/tenants/ops/tokens", &admin, "{}");
    assert_eq!(s, 201, "{body}");
    let ops = parse(&body)["token"].as_str().unwrap().to_string();
    let mut seen = Value::Null;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(200));
        let (s, body) = get(&addr, "/v1/shard-requests?workload=1", Some(&ops));
        assert_eq!(s, 200, "{body}");
        let v = parse(&body);
        if !v["shard_requests"].as_array().unwrap().is_empty() {
            seen = v;
            break;
        }
    }
    let r = &seen["shard_requests"][0];
    assert_eq!(r["workload"], 1, "a shard request within 20 s: {seen}");
    assert!(r["wanted"]["cpu"].as_u64().unwrap() > 0, "{r}");
    assert!(
        ["pending", "fulfilled", "partially_fulfilled", "failed"]
            .contains(&r["status"].as_str().unwrap()),
        "{r}"
    );
    let (_, body) = get(&addr, "/v1/shard-requests", Some(&hoarder));
    assert_eq!(
        parse(&body)["shard_requests"],
        json!([]),
        "not another tenant's"
    );
    let (s, body) = get(&addr, "/v1/shard-requests?status=lost", Some(&ops));
    assert_problem(s, &body, 400, "bad-request");
    interrupt_and_wait(child);
}

/// Reads server-sent events from an open stream until `done` says so (10 s at most); returns
/// the `(id, event, data)` of each.
fn read_events(
    s: &mut std::net::TcpStream,
    mut done: impl FnMut(&[(u64, String, Value)]) -> bool,
) -> Vec<(u64, String, Value)> {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let events: Vec<(u64, String, Value)> = text
            .split("\n\n")
            .filter_map(|block| {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                };
                let data = field("data:")?;
                Some((
                    field("id:").and_then(|i| i.parse().ok()).unwrap_or(0),
                    field("event:")?,
                    serde_json::from_str(&data).ok()?,
                ))
            })
            .collect();
        if done(&events) || std::time::Instant::now() > deadline {
            return events;
        }
    }
    Vec::new()
}

fn subscribe(addr: &str, token: &str, query: &str, last: Option<u64>) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let resume = last
        .map(|l| format!("Last-Event-ID: {l}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET /v1/events{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n{resume}\r\n"
    )
    .unwrap();
    s
}

#[test]
fn the_event_stream_shows_a_tenant_its_own_modifications_live_and_resumes() {
    let d = Daemon::start();
    let (_, a) = d.tenant("alpha");
    let (_, b) = d.tenant("beta");
    let mut stream_a = subscribe(&d.addr, &a, "?kinds=modification,reservation", None);
    let mut stream_admin = subscribe(&d.addr, &d.admin, "", None);
    // The subscriptions are open before anything happens.
    std::thread::sleep(Duration::from_millis(300));
    let ra = d.reserve(&a, 20, "1h")["id"].as_u64().unwrap();
    let rb = d.reserve(&b, 20, "1h")["id"].as_u64().unwrap();
    for (token, id) in [(&a, ra), (&b, rb)] {
        let (s, body) = send(
            &d.addr,
            "POST",
            &format!("/v1/reservations/{id}/modifications"),
            token,
            &json!({"changes": {"cpu": "+10%"}, "for": "1h"}).to_string(),
        );
        assert_eq!(s, 201, "{body}");
    }
    let seen = read_events(&mut stream_a, |ev| {
        ev.iter().any(|(_, k, _)| k == "modification")
    });
    let kinds: Vec<&str> = seen.iter().map(|(_, k, _)| k.as_str()).collect();
    assert!(kinds.contains(&"reservation"), "{seen:?}");
    assert!(kinds.contains(&"modification"), "{seen:?}");
    assert!(
        kinds
            .iter()
            .all(|k| *k == "reservation" || *k == "modification"),
        "the kinds filter holds: {seen:?}"
    );
    // Only alpha's own objects: beta's reservation never shows.
    for (_, _, v) in &seen {
        assert_ne!(v["data"]["reservation"], json!(rb), "{v}");
    }
    let modified = seen
        .iter()
        .find(|(_, k, _)| k == "modification")
        .map(|(_, _, v)| v.clone())
        .unwrap();
    assert_eq!(modified["data"]["event"], "modification_created");
    assert_eq!(modified["data"]["reservation"], json!(ra));
    // The admin sees both tenants' modifications.
    let all = read_events(&mut stream_admin, |ev| {
        ev.iter().filter(|(_, k, _)| k == "modification").count() >= 2
    });
    assert_eq!(
        all.iter().filter(|(_, k, _)| k == "modification").count(),
        2,
        "{all:?}"
    );
    // Resuming after the first event seen gives what came after it, in order.
    let first = seen[0].0;
    let mut again = subscribe(&d.addr, &a, "?kinds=modification,reservation", Some(first));
    let resumed = read_events(&mut again, |ev| ev.len() >= seen.len() - 1);
    assert_eq!(
        resumed.iter().map(|(i, _, _)| *i).collect::<Vec<_>>(),
        seen[1..].iter().map(|(i, _, _)| *i).collect::<Vec<_>>()
    );
    // Without `Accept: text/event-stream`, one JSON page of the same events.
    let (s, body) = get(&d.addr, "/v1/events?kinds=modification", Some(&a));
    assert_eq!(s, 200, "{body}");
    let page = parse(&body);
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["missed"], 0);
    // A kind that does not exist is named in a 400.
    let (s, body) = get(&d.addr, "/v1/events?kinds=gossip", Some(&a));
    assert_problem(s, &body, 400, "bad-request");
}

#[test]
fn a_tenant_token_over_its_rate_limit_gets_429_with_retry_after() {
    let d = Daemon::start_with("[api]\nrate_limit = 1\nrate_burst = 3\n");
    let (_, a) = d.tenant("alpha");
    let (_, b) = d.tenant("beta");
    for _ in 0..3 {
        let (s, body) = get(&d.addr, "/v1/reservations", Some(&a));
        assert_eq!(s, 200, "{body}");
    }
    let (s, head, body) = send_with(&d.addr, "GET", "/v1/reservations", &a, &[], "");
    assert_problem(s, &body, 429, "rate-limited");
    let retry: u64 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a Retry-After header");
    assert!((1..=2).contains(&retry), "{head}");
    // Another token has its own budget; the operator's is not limited.
    let (s, _) = get(&d.addr, "/v1/reservations", Some(&b));
    assert_eq!(s, 200);
    for _ in 0..10 {
        let (s, _) = get(&d.addr, "/v1/reservations", Some(&d.admin));
        assert_eq!(s, 200);
    }
    // The budget comes back.
    std::thread::sleep(Duration::from_millis(1100));
    let (s, _) = get(&d.addr, "/v1/reservations", Some(&a));
    assert_eq!(s, 200);
}

#[test]
fn a_host_s_price_history_comes_from_the_log_newest_first() {
    let d = Daemon::start();
    let (_, a) = d.tenant("alpha");
    // The daemon sets the market's first price before the API opens.
    let (s, now) = get(&d.addr, &format!("/v1/hosts/{}/market", d.host), Some(&a));
    assert_eq!(s, 200, "{now}");
    let price = parse(&now)["price"].clone();
    let (s, body) = get(
        &d.addr,
        &format!("/v1/hosts/{}/market/history", d.host),
        Some(&a),
    );
    assert_eq!(s, 200, "{body}");
    let h = parse(&body);
    assert_eq!(h["host"], json!(d.host));
    let points = h["points"].as_array().unwrap();
    assert!(!points.is_empty(), "{h}");
    assert_eq!(
        points[0]["price"], price,
        "the newest point is the price in force"
    );
    assert!(points[0]["at"].as_str().unwrap().ends_with('Z'));
    let (s, body) = get(
        &d.addr,
        &format!("/v1/hosts/{}/market/history?limit=0", d.host),
        Some(&a),
    );
    assert_problem(s, &body, 400, "bad-request");
    let (s, body) = get(
        &d.addr,
        &format!("/v1/hosts/{}/market/history?period=soon", d.host),
        Some(&a),
    );
    assert_problem(s, &body, 400, "bad-request");
    let (s, body) = get(&d.addr, "/v1/hosts/nowhere/market/history", Some(&a));
    assert_problem(s, &body, 404, "not-found");
}

#[test]
fn a_reservation_can_be_asked_for_in_cores_and_bytes_rounded_up_to_shards() {
    let d = Daemon::start();
    let (_, a) = d.tenant("alpha");
    let post = |body: Value| send(&d.addr, "POST", "/v1/reservations", &a, &body.to_string());
    // Default shards: 10 millicores and 16 MiB. 0.155 cores is 15.5 shards: 16, never fewer.
    let (s, body) = post(
        json!({"host": d.host, "resources": {"cpu": "0.155", "memory": "100MiB"}, "for": "1h"}),
    );
    assert_eq!(s, 201, "{body}");
    let r = parse(&body);
    assert_eq!(r["base"]["cpu"], 16, "{r}");
    assert_eq!(
        r["base"]["memory"], 7,
        "100 MiB is 6.25 shards of 16 MiB: {r}"
    );
    let (s, body) = post(json!({"host": d.host, "resources": {"cpu": "1.5 cores"}, "for": "1h"}));
    assert_problem(s, &body, 400, "bad-request");
    assert!(body.contains("resources.cpu"), "{body}");
    let (s, body) =
        post(json!({"host": d.host, "shards": {"cpu": 1}, "resources": {"cpu": "1"}, "for": "1h"}));
    assert_problem(s, &body, 400, "bad-request");
    let (s, body) = post(json!({"host": d.host, "for": "1h"}));
    assert_problem(s, &body, 400, "bad-request");
    let (s, body) = post(json!({"host": d.host, "resources": {"gpu": "1"}, "for": "1h"}));
    assert_problem(s, &body, 400, "bad-request");
}

/// An `Idempotency-Key` survives a crash: its claim is in the action's own transaction and
/// its answer is kept beside it, so a retry after a SIGKILL and restart gets the first answer
/// and applies nothing twice; another body with the key is still a 422. A new tenant's answer
/// holds its token's secret, which is never stored: its retry after a restart is a 409 that
/// says the request was applied, and no second tenant is made.
#[test]
fn an_idempotent_retry_after_a_crash_gets_the_first_answer_and_applies_nothing_twice() {
    let mut d = Daemon::start();
    let (_, a) = d.tenant("acme");
    let id = d.reserve(&a, 100, "1h")["id"].as_u64().unwrap();
    let path = format!("/v1/reservations/{id}/modifications");
    let body = json!({"changes": {"cpu": "+10%"}, "for": "1h"}).to_string();
    let key = ["Idempotency-Key: crash-1"];
    let (s, _, first) = send_with(&d.addr, "POST", &path, &a, &key, &body);
    assert_eq!(s, 201, "{first}");
    let tenant_key = ["Idempotency-Key: new-tenant-1"];
    let new_tenant = json!({"name": "beta"}).to_string();
    let (s, _, made) = send_with(
        &d.addr,
        "POST",
        "/v1/tenants",
        &d.admin,
        &tenant_key,
        &new_tenant,
    );
    assert_eq!(s, 201, "{made}");

    d.crash_and_restart();
    let (s, head, again) = send_with(&d.addr, "POST", &path, &a, &key, &body);
    assert_eq!((s, again.as_str()), (201, first.as_str()));
    assert!(head.contains("idempotent-replayed: true"), "{head}");
    let other = json!({"changes": {"cpu": "+20%"}, "for": "1h"}).to_string();
    let (s, _, got) = send_with(&d.addr, "POST", &path, &a, &key, &other);
    assert_problem(s, &got, 422, "idempotency-key-reused");
    let (_, list) = get(&d.addr, &path, Some(&a));
    assert_eq!(parse(&list)["modifications"].as_array().unwrap().len(), 1);

    let (s, _, got) = send_with(
        &d.addr,
        "POST",
        "/v1/tenants",
        &d.admin,
        &tenant_key,
        &new_tenant,
    );
    assert_problem(s, &got, 409, "idempotency-answer-not-kept");
    assert!(
        parse(&got)["detail"]
            .as_str()
            .unwrap()
            .contains("log entry"),
        "{got}"
    );
    let (_, tenants) = get(&d.addr, "/v1/tenants", Some(&d.admin));
    let named_beta = parse(&tenants)["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "beta")
        .count();
    assert_eq!(named_beta, 1, "{tenants}");
}

/// A host of 100 cpu shards, `acme` with 10 of them reserved (its token and reservation),
/// and 80 of the other 89 lent by the provider to a workload of `beta`; the reclaim notice is
/// 2 s.
fn host_with_a_provider_lease() -> (Daemon, String, u64) {
    let d = Daemon::start_with(
        "[host]\nname = \"h-defer\"\ncpu_millicores = 1000\nmemory_bytes = 1073741824\n[ledger]\nreclaim_notice = \"2s\"\n",
    );
    let (_, a) = d.tenant("acme");
    let (b_id, b) = d.tenant("beta");
    let id = d.reserve(&a, 10, "1h")["id"].as_u64().unwrap();
    let b_res = d.reserve(&b, 1, "1h")["id"].as_u64().unwrap();
    let act = |body: Value| {
        let (s, got) = send(&d.addr, "POST", "/v1/actions", &d.admin, &body.to_string());
        assert_eq!(s, 200, "{got}");
        parse(&got)
    };
    act(json!({"action": "bind_workload", "tenant": b_id, "reservation": b_res, "name": "w"}));
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 3_600_000;
    let leased = act(
        json!({"action": "request_lease", "tenant": b_id, "workload": 1,
        "vector": {"cpu": 80}, "until": u64::try_from(until).unwrap(), "max_price": {"cpu": "10"},
        "all_or_nothing": true}),
    );
    assert!(leased.to_string().contains("lease_created"), "{leased}");
    (d, a, id)
}

/// A modification short only of shards the provider lent out of its unreserved capacity is
/// deferred, not refused: the provider takes those leases back with the reclaim notice (2 s
/// here) and the modification starts then, for the duration asked; the answer says so and
/// why. Asked for with `"delivery": "immediate"`, the same change is infeasible.
#[test]
fn a_modification_short_only_of_what_the_provider_lent_is_deferred_until_it_comes_back() {
    let (d, a, id) = host_with_a_provider_lease();
    let path = format!("/v1/reservations/{id}/modifications");
    let now_cpu = || {
        let (_, r) = get(&d.addr, &format!("/v1/reservations/{id}"), Some(&a));
        parse(&r)["now"]["cpu"].as_u64().unwrap()
    };

    let insist = json!({"changes": {"cpu": "=30"}, "for": "1h", "delivery": "immediate"});
    let (s, body) = send(&d.addr, "POST", &path, &a, &insist.to_string());
    assert_problem(s, &body, 409, "host-capacity-exceeded");
    assert_eq!(parse(&body)["outcome"], "infeasible");

    let dry = format!("{path}?dry_run=true");
    let change = json!({"changes": {"cpu": "=30"}, "for": "1h"}).to_string();
    let (s, body) = send(&d.addr, "POST", &dry, &a, &change);
    assert_eq!(s, 200, "{body}");
    assert_eq!(parse(&body)["outcome"], "deferred");
    let (s, body) = send(&d.addr, "POST", &path, &a, &change);
    assert_eq!(s, 201, "{body}");
    let v = parse(&body);
    assert_eq!(v["outcome"], "deferred", "{body}");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("taking back 1 lease"), "{reason}");
    assert_eq!(v["modification"]["state"], "scheduled", "{body}");
    assert_eq!(now_cpu(), 10, "not before the notice is over");
    std::thread::sleep(Duration::from_millis(3_000));
    assert_eq!(now_cpu(), 30, "after it");
}

/// A daemon on host `name` (1 core: 100 cpu shards) that can free room: a command migrator
/// that reports every move completed, act mode, a decision every second.
fn migrating(name: &str) -> Daemon {
    const CONFIG: &str = r#"[host]
name = "HOST"
cpu_millicores = 1000
memory_bytes = 1073741824
[migrator]
kind = "command"
command = ["/bin/sh", "-c", "echo '{\"status\":\"completed\"}'"]
[engine]
mode = "act"
decide_every = "1s"
"#;
    Daemon::start_with(&CONFIG.replace("HOST", name))
}

/// With a migrator configured, a change the host has no room for, and that the whole host
/// could hold, waits (`pending`) instead of being refused: it holds and costs nothing, the
/// engine raises a shard request for the room it misses, its owner sees it (and only its
/// owner) and may withdraw it. What even an empty host could not hold, or asked with
/// `"delivery":"immediate"`, stays infeasible; a dry run commits nothing.
#[test]
fn with_a_migrator_a_change_the_host_has_no_room_for_is_pending_on_a_shard_request() {
    let d = migrating("h-pend");
    let (_, a) = d.tenant("acme");
    let (_, b) = d.tenant("beta");
    let id = d.reserve(&a, 60, "1h")["id"].as_u64().unwrap();
    d.reserve(&b, 40, "1h");
    let path = format!("/v1/reservations/{id}/modifications");
    let listed = |token: &str| {
        let (s, body) = get(&d.addr, &path, Some(token));
        (s, parse(&body))
    };
    let now_cpu = || {
        let (_, r) = get(&d.addr, &format!("/v1/reservations/{id}"), Some(&a));
        parse(&r)["now"]["cpu"].as_u64().unwrap()
    };
    let change = json!({"changes": {"cpu": "+20"}, "for": "1h"}).to_string();

    let (s, body) = send(
        &d.addr,
        "POST",
        &format!("{path}?dry_run=true"),
        &a,
        &change,
    );
    assert_eq!(s, 200, "{body}");
    assert_eq!(parse(&body)["outcome"], "pending", "{body}");
    assert_eq!(
        listed(&a).1["modifications"],
        json!([]),
        "a dry run keeps nothing"
    );

    let (s, body) = send(&d.addr, "POST", &path, &a, &change);
    assert_eq!(s, 201, "{body}");
    let v = parse(&body);
    assert_eq!(v["outcome"], "pending", "{body}");
    assert_eq!(v["modification"]["state"], "pending", "{body}");
    assert!(v["modification"]["gives_up_at"].is_string(), "{body}");
    assert!(v["reason"].as_str().unwrap().contains("h-pend"), "{body}");
    assert!(v["quote"]["cost"].as_str().unwrap() != "0", "{body}");
    let mid = v["modification"]["id"].as_u64().unwrap();
    assert_eq!(
        v["shard_requests"],
        format!("/v1/shard-requests?modification={mid}")
    );
    assert_eq!(now_cpu(), 60, "nothing is held while it waits");
    let (s, l) = listed(&a);
    assert_eq!(s, 200);
    assert_eq!(l["modifications"][0]["state"], "pending", "{l}");
    let (s, body) = get(&d.addr, &format!("{path}/{mid}"), Some(&b));
    assert_problem(s, &body, 404, "not-found");

    // The engine's next decision raises the shard request for the 20 shards h-pend misses.
    let requests = format!("/v1/shard-requests?modification={mid}");
    let mut seen = Value::Null;
    for _ in 0..100 {
        let (_, body) = get(&d.addr, &requests, Some(&a));
        seen = parse(&body);
        if seen["shard_requests"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = &seen["shard_requests"][0];
    assert_eq!(r["modification"], mid, "{seen}");
    assert_eq!(r["host"], "h-pend", "{seen}");
    assert_eq!(r["wanted"]["cpu"], 20, "{seen}");
    assert_eq!(r["steps"][0]["step"], "host_short", "{seen}");
    let (_, theirs) = get(&d.addr, &requests, Some(&b));
    assert_eq!(parse(&theirs)["shard_requests"], json!([]), "{theirs}");

    // Immediate delivery, or more than the whole host: infeasible, nothing kept.
    let insist = json!({"changes": {"cpu": "+20"}, "for": "1h", "delivery": "immediate"});
    let (s, body) = send(&d.addr, "POST", &path, &a, &insist.to_string());
    assert_problem(s, &body, 409, "host-capacity-exceeded");
    let huge = json!({"changes": {"cpu": "+50"}, "for": "1h"}).to_string();
    let (s, body) = send(&d.addr, "POST", &path, &a, &huge);
    assert_problem(s, &body, 409, "host-capacity-exceeded");
    assert_eq!(listed(&a).1["modifications"].as_array().unwrap().len(), 1);

    // Its owner withdraws it.
    let (s, body) = send(&d.addr, "DELETE", &format!("{path}/{mid}"), &b, "");
    assert_problem(s, &body, 404, "not-found");
    let (s, body) = send(&d.addr, "DELETE", &format!("{path}/{mid}"), &a, "");
    assert_eq!(s, 200, "{body}");
    assert_eq!(parse(&body)["state"], "cancelled", "{body}");
    assert_eq!(listed(&a).1["modifications"], json!([]));
    assert_eq!(now_cpu(), 60);
    let (_, check) = get(&d.addr, "/v1/ledger/check", Some(&d.admin));
    assert_eq!(parse(&check)["violations"], json!([]), "{check}");
}

/// The whole path on a real daemon: a pending change on a full host, a neighbour's workload
/// that can go to a second host, and a migrator (a command hook that reports every move
/// completed): the engine moves the neighbour at once, and the change starts under the id
/// it was given, its shard request fulfilled.
#[test]
fn a_pending_change_starts_once_the_engine_has_moved_a_neighbour_to_another_host() {
    let d = migrating("h-full");
    let (_, a) = d.tenant("acme");
    let (b_id, b) = d.tenant("beta");
    let id = d.reserve(&a, 60, "1h")["id"].as_u64().unwrap();
    let b_res = d.reserve(&b, 40, "1h")["id"].as_u64().unwrap();
    let act = |body: Value| {
        let (s, got) = send(&d.addr, "POST", "/v1/actions", &d.admin, &body.to_string());
        assert_eq!(s, 200, "{got}");
    };
    act(json!({"action": "register_host", "name": "h-spare",
        "capacity": {"cpu": 100, "memory": 64, "net": 0, "iops": 0}}));
    act(json!({"action": "bind_workload", "tenant": b_id, "reservation": b_res, "name": "w"}));
    let path = format!("/v1/reservations/{id}/modifications");
    let change = json!({"changes": {"cpu": "+30"}, "for": "1h"}).to_string();
    let (s, body) = send(&d.addr, "POST", &path, &a, &change);
    assert_eq!(s, 201, "{body}");
    let v = parse(&body);
    assert_eq!(v["outcome"], "pending", "{body}");
    let mid = v["modification"]["id"].as_u64().unwrap();
    let asked = std::time::Instant::now();
    let started = (0..150).any(|_| {
        let (_, m) = get(&d.addr, &format!("{path}/{mid}"), Some(&a));
        if parse(&m)["state"] == "in_force" {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    let (_, m) = get(&d.addr, &format!("{path}/{mid}"), Some(&a));
    assert!(started, "never started: {m}");
    eprintln!("pending -> in force in {:?}", asked.elapsed());
    let (_, r) = get(&d.addr, &format!("/v1/reservations/{id}"), Some(&a));
    assert_eq!(parse(&r)["now"]["cpu"], 90, "{r}");
    // beta's workload now runs on the spare host, in a reservation of the same size.
    let (_, w) = get(&d.addr, "/v1/workloads", Some(&b));
    let w = parse(&w);
    let moved_to = w["workloads"][0]["reservation"].as_u64().unwrap();
    assert_ne!(moved_to, b_res, "{w}");
    let (_, r) = get(&d.addr, &format!("/v1/reservations/{moved_to}"), Some(&b));
    let r = parse(&r);
    assert_eq!(
        (r["host"].as_str(), r["now"]["cpu"].as_u64()),
        (Some("h-spare"), Some(40)),
        "{r}"
    );
    let requests = format!("/v1/shard-requests?modification={mid}");
    let fulfilled = (0..50).any(|_| {
        let (_, body) = get(&d.addr, &requests, Some(&a));
        if parse(&body)["shard_requests"][0]["status"] == "fulfilled" {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    let (_, body) = get(&d.addr, &requests, Some(&a));
    assert!(fulfilled, "{body}");
    let (_, check) = get(&d.addr, "/v1/ledger/check", Some(&d.admin));
    assert_eq!(parse(&check)["violations"], json!([]), "{check}");
}

/// A modification in physical units: cores, millicores and bytes become whole shards (10
/// millicores and 16 MiB each by default), rounded up when added; a unit that is not the
/// kind's is a 400 naming the kind.
#[test]
fn a_modification_may_be_written_in_cores_and_bytes() {
    let d = Daemon::start();
    let (_, a) = d.tenant("acme");
    let id = d.reserve(&a, 100, "1h")["id"].as_u64().unwrap();
    let path = format!("/v1/reservations/{id}/modifications");
    let body = json!({"changes": {"cpu": "+0.5cores", "memory": "+1GiB"}, "for": "1h"});
    let (s, got) = send(&d.addr, "POST", &path, &a, &body.to_string());
    assert_eq!(s, 201, "{got}");
    let now = &parse(&got)["reservation"]["now"];
    assert_eq!(
        (now["cpu"].as_u64(), now["memory"].as_u64()),
        (Some(150), Some(72))
    );
    let body = json!({"changes": {"net": "+1GiB"}, "for": "1h"});
    let (s, got) = send(&d.addr, "POST", &path, &a, &body.to_string());
    assert_problem(s, &got, 400, "bad-request");
    assert!(
        parse(&got)["detail"]
            .as_str()
            .unwrap()
            .contains("changes.net"),
        "{got}"
    );
}

/// 200 tenants ask at once for 2 more cpu shards each on a host that has room for about half
/// of them: the host is never oversubscribed, each answer is either 201 or an infeasible 409,
/// every acknowledged modification is there after a SIGKILL and a restart, and every refused
/// one changed nothing.
#[test]
fn two_hundred_parallel_modifications_never_oversubscribe_and_survive_a_crash() {
    let mut d = Daemon::start_with(
        "[host]\nname = \"h-burst\"\ncpu_millicores = 2000\nmemory_bytes = 8589934592\n",
    );
    let n = 200;
    let mut who = Vec::new();
    for i in 0..n {
        let (_, token) = d.tenant(&format!("t{i}"));
        let body = json!({"host": "h-burst", "shards": {"cpu": 0, "memory": 1}, "for": "1h"});
        let (s, b) = send(
            &d.addr,
            "POST",
            "/v1/reservations",
            &token,
            &body.to_string(),
        );
        assert_eq!(s, 201, "{b}");
        who.push((token, parse(&b)["id"].as_u64().unwrap()));
    }
    let change = json!({"changes": {"cpu": "+2"}, "for": "1h"}).to_string();
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = who
            .iter()
            .map(|(token, id)| {
                let (addr, change) = (&d.addr, &change);
                s.spawn(move || {
                    let path = format!("/v1/reservations/{id}/modifications");
                    send(addr, "POST", &path, token, change)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: Vec<bool> = answers
        .iter()
        .map(|(s, b)| match s {
            201 => true,
            409 => {
                assert_eq!(parse(b)["outcome"], "infeasible", "{b}");
                false
            }
            other => panic!("{other}: {b}"),
        })
        .collect();
    let granted = accepted.iter().filter(|a| **a).count();
    // 200 cpu shards on the host, none reserved before: exactly 100 fit.
    assert_eq!(granted, 100, "{answers:?}");

    d.crash_and_restart();
    let (s, check) = get(&d.addr, "/v1/ledger/check", Some(&d.admin));
    assert_eq!(s, 200, "{check}");
    assert_eq!(parse(&check)["violations"], json!([]), "{check}");
    for ((token, id), acked) in who.iter().zip(&accepted) {
        let (s, r) = get(&d.addr, &format!("/v1/reservations/{id}"), Some(token));
        assert_eq!(s, 200, "{r}");
        let r = parse(&r);
        let (cpu, mods) = (
            r["now"]["cpu"].as_u64().unwrap(),
            r["modifications"].as_array().unwrap().len(),
        );
        if *acked {
            assert_eq!((cpu, mods), (2, 1), "acknowledged, then lost: {r}");
        } else {
            assert_eq!((cpu, mods), (0, 0), "refused, yet changed: {r}");
        }
    }
}

/// A reservation from now that fits only once the provider takes back what it lent is
/// deferred the same way: it starts after the notice, as long as asked, and says why; with
/// `"delivery": "immediate"` it is infeasible.
#[test]
fn a_reservation_short_only_of_what_the_provider_lent_is_deferred_until_it_comes_back() {
    let (d, _, _) = host_with_a_provider_lease();
    let (_, c) = d.tenant("gamma");
    let ask = |delivery: Option<&str>| {
        let mut body = json!({"host": "h-defer", "shards": {"cpu": 20}, "for": "1h"});
        if let Some(x) = delivery {
            body["delivery"] = json!(x);
        }
        send(&d.addr, "POST", "/v1/reservations", &c, &body.to_string())
    };
    let (s, body) = ask(Some("immediate"));
    assert_problem(s, &body, 409, "host-capacity-exceeded");
    let (s, body) = ask(None);
    assert_eq!(s, 201, "{body}");
    let v = parse(&body);
    assert_eq!(v["state"], "scheduled", "{body}");
    assert!(
        v["deferred"]
            .as_str()
            .unwrap()
            .contains("taking back 1 lease"),
        "{body}"
    );
    let id = v["id"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(3_000));
    let (_, r) = get(&d.addr, &format!("/v1/reservations/{id}"), Some(&c));
    let r = parse(&r);
    assert_eq!(
        (r["state"].as_str(), r["now"]["cpu"].as_u64()),
        (Some("active"), Some(20)),
        "{r}"
    );
}
