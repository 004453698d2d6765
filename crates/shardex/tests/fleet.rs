//! Fleet mode on a real PostgreSQL: two `shardex broker`s share one ledger. A storm of
//! modifications through both, with one broker killed by SIGKILL in the middle of it: the
//! recorded history holds every invariant at every entry (no shard held twice), every
//! modification a broker acknowledged is there afterwards, and the ledger-wide duties move to
//! the surviving broker within the documented bound.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A broker on `url` with the shared admin token file; its process and address.
fn broker(url: &str, name: &str, token_file: &std::path::Path) -> (std::process::Child, String) {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "broker",
        "--db",
        url,
        "--listen",
        "127.0.0.1:0",
        "--name",
        name,
    ])
    .args(["--owner-ttl", "1500ms", "--admin-token"])
    .arg(token_file);
    spawn_listening(cmd)
}

fn holds(addr: &str) -> Vec<u64> {
    let (s, body) = get(addr, "/v1/health", None);
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["holds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_u64().unwrap())
        .collect()
}

/// A request that may find its broker dead: `None` when no answer came (refused, reset).
fn try_send(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn two_brokers_keep_one_history_through_a_storm_and_a_sigkill() {
    let (url, _pg) = shardex_store::testkit::database().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    let (a, addr_a) = broker(&url, "a", &token_file);
    let a = Stopping::new(a, Duration::from_secs(5));
    // a takes the ledger-wide duties (host 0) first.
    assert!(eventually(Duration::from_secs(10), || holds(&addr_a).contains(&0)));
    let (b, addr_b) = broker(&url, "b", &token_file);
    let b = Stopping::new(b, Duration::from_secs(5));
    let admin = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    // Each broker serves the dashboard, a client of its API.
    let (s, page) = get(&addr_b, "/", None);
    assert_eq!(s, 200);
    assert!(page.contains("/assets/app.js"), "{page}");
    assert!(!holds(&addr_b).contains(&0), "one owner of the duties");

    // A host, through a; four tenants, through b; a reservation each, through a.
    let (s, body) = send(
        &addr_a,
        "POST",
        "/v1/actions",
        &admin,
        &json!({"action": "register_host", "name": "h1",
                "capacity": {"cpu": 1000, "memory": 1000, "net": 100, "iops": 100}})
        .to_string(),
    );
    assert_eq!(s, 200, "{body}");
    let mut tenants = Vec::new();
    for i in 0..4 {
        let (s, body) = send(
            &addr_b,
            "POST",
            "/v1/tenants",
            &admin,
            &json!({"name": format!("t{i}")}).to_string(),
        );
        assert_eq!(s, 201, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let token = v["token"]["token"].as_str().unwrap().to_string();
        // The token was written by b: a reads it from the shared table.
        let (s, body) = send(
            &addr_a,
            "POST",
            "/v1/reservations",
            &token,
            &json!({"host": "h1", "shards": {"cpu": 200, "memory": 100}, "for": "1h"}).to_string(),
        );
        assert_eq!(s, 201, "{body}");
        let r: Value = serde_json::from_str(&body).unwrap();
        tenants.push((token, r["id"].as_u64().unwrap()));
    }

    // b's event stream carries what was written through a (b replays a's entries).
    let seen = eventually(Duration::from_secs(5), || {
        let (s, body) = get(&addr_b, "/v1/events?kinds=reservation", Some(&admin));
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["events"].as_array().is_some_and(|e| e.len() >= 4)
    });
    assert!(
        seen,
        "b's event stream misses the reservations made through a"
    );

    // The storm: each tenant modifies its reservation 40 times, alternating brokers; a is
    // killed (SIGKILL) once a third of the requests were answered, whatever the machine's speed.
    let started = Instant::now();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let storm: Vec<_> = tenants
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, (token, r))| {
            let (addr_a, addr_b) = (addr_a.clone(), addr_b.clone());
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let (mut refused, mut lost) = (0, 0);
                for n in 0..40u64 {
                    let addr = if (n + i as u64).is_multiple_of(2) {
                        &addr_a
                    } else {
                        &addr_b
                    };
                    let change = if n % 3 == 2 {
                        format!("-{}", 5 + n)
                    } else {
                        format!("+{}", 10 + 3 * n)
                    };
                    let body = json!({"changes": {"cpu": change}, "for": "30m"}).to_string();
                    match try_send(
                        addr,
                        "POST",
                        &format!("/v1/reservations/{r}/modifications"),
                        &token,
                        &body,
                    ) {
                        Some((201, text)) => {
                            let v: Value = serde_json::from_str(&text).unwrap();
                            acked.push(v["modification"]["id"].as_u64().unwrap());
                        }
                        Some((409 | 422, _)) => refused += 1,
                        Some((s, text)) => panic!("tenant {i}: {s} {text}"),
                        None => lost += 1,
                    }
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                (token, r, acked, refused, lost)
            })
        })
        .collect();
    let going = Instant::now();
    while answered.load(std::sync::atomic::Ordering::Relaxed) < 50 {
        assert!(
            going.elapsed() < Duration::from_secs(30),
            "the storm never got going"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut a = a.take();
    a.kill().unwrap();
    let killed = Instant::now();
    let _ = a.wait();
    let mut outcomes = Vec::new();
    for t in storm {
        outcomes.push(t.join().unwrap());
    }
    let storm_took = started.elapsed();

    // The duties move to b within ttl + ttl/3 (+ a round of slack).
    assert!(
        eventually(Duration::from_secs(10), || holds(&addr_b).contains(&0)),
        "b never took the duties over"
    );
    let took_over = killed.elapsed();
    assert!(
        took_over < Duration::from_millis(1500 + 500 + 1000),
        "{took_over:?}"
    );

    // Every acknowledged modification is there, read through the survivor.
    let (mut acked_n, mut refused_n, mut lost_n) = (0, 0, 0);
    for (token, r, acked, refused, lost) in &outcomes {
        let (s, body) = get(
            &addr_b,
            &format!("/v1/reservations/{r}/modifications"),
            Some(token),
        );
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let there: Vec<u64> = v["modifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect();
        for id in acked {
            assert!(
                there.contains(id),
                "acknowledged modification {id} of reservation {r} is lost"
            );
        }
        acked_n += acked.len();
        refused_n += refused;
        lost_n += lost;
    }
    assert!(acked_n > 40, "{acked_n} acknowledged");
    assert!(lost_n > 0, "the kill happened during the storm");
    // The history, entry by entry from nothing: the host, 4 tenants and 4 reservations, the
    // acknowledged modifications, and at most those whose answer was lost with a (a commit
    // the client never heard of); never a refused one.
    let history = shardex_store::testkit::check_history(&url).await;
    let unacknowledged = history.len() - 9 - acked_n;
    assert!(
        unacknowledged <= lost_n,
        "{unacknowledged} entries no answer accounts for"
    );
    interrupt_and_wait(b.take());
    eprintln!(
        "{acked_n} modifications acknowledged, {refused_n} refused, {lost_n} unanswered (a killed) \
         in {storm_took:?}; {} log entries replayed with every invariant; b took the duties \
         over {took_over:?} after the kill (ttl 1.5 s)",
        history.len()
    );
}
