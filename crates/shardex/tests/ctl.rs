//! `shardex ctl` end to end against a real `shardex run`: a tenant, its reservation, the
//! headline modification with its dry run, a safe retry, its expiry after its duration, the
//! invoice line it produced, and refusals passed on with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{BIN, interrupt_and_wait, start};
use serde_json::Value;

fn ctl(data: &Path, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new(BIN);
    c.arg("ctl")
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("SHARDEX_TOKEN")
        .env_remove("SHARDEX_URL");
    if let Some(t) = token {
        c.args(["--token", t]);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `shardex ctl ARGS` left running (a watch or a follow), its output kept.
fn running(data: &Path, token: &str, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(["ctl", "--data"])
        .arg(data)
        .args(["--token", token])
        .args(args)
        .env_remove("SHARDEX_TOKEN")
        .env_remove("SHARDEX_URL")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Stops a [`running`] ctl and returns what it printed.
fn stop(mut child: std::process::Child) -> String {
    child.kill().unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

fn json(data: &Path, token: Option<&str>, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (ok, out, err) = ctl(data, token, &all);
    assert!(ok, "shardex ctl {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn ctl_makes_the_headline_modification_quotes_it_and_bills_it() {
    let dir = tempfile::tempdir().unwrap();
    // The configuration sits beside the data folder.
    let data = &dir.path().join("data");
    std::fs::write(
        dir.path().join("shardex.toml"),
        "[engine]\nactuator = \"simulated\"\n",
    )
    .unwrap();
    let (child, _) = start(data);
    // The admin (the data folder's token) creates a tenant; its token is printed once.
    let created = json(data, None, &["create-tenant", "alpha"]);
    let token = created["token"]["token"].as_str().unwrap().to_string();
    let t = Some(token.as_str());
    let hosts = json(data, t, &["get", "tenants"]);
    assert_eq!(hosts["tenants"][0]["name"], "alpha");
    let host = {
        let (_, body) = common::get(
            std::fs::read_to_string(data.join("api.addr"))
                .unwrap()
                .trim(),
            "/v1/hosts",
            Some(
                std::fs::read_to_string(data.join("admin.token"))
                    .unwrap()
                    .trim(),
            ),
        );
        serde_json::from_str::<Value>(&body).unwrap()["hosts"][0]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let r = json(
        data,
        t,
        &[
            "reserve", "--host", &host, "--cpu", "100", "--memory", "8", "--for", "1h",
        ],
    );
    let id = r["id"].as_u64().unwrap().to_string();
    assert_eq!(r["now"]["cpu"], 100);
    // The quote is a dry run: nothing changes.
    let q = json(data, t, &["quote", &id, "cpu=+10%", "--for", "2s"]);
    assert_eq!(q["dry_run"], true);
    assert_eq!(q["reservation"]["now"]["cpu"], 110);
    assert!(q["quote"]["cost"].as_str().unwrap().parse::<f64>().unwrap() > 0.0);
    assert_eq!(
        json(data, t, &["get", "reservation", &id])["now"]["cpu"],
        100
    );
    // The headline call, retried with the same key: applied once.
    let args = [
        "modify",
        &id,
        "cpu=+10%",
        "--for",
        "2s",
        "--idempotency-key",
        "k1",
    ];
    let first = json(data, t, &args);
    assert_eq!(first["outcome"], "applied");
    assert_eq!(first["reservation"]["now"]["cpu"], 110);
    assert_eq!(json(data, t, &args), first);
    let mods = json(data, t, &["get", "modifications", &id]);
    assert_eq!(mods["modifications"].as_array().unwrap().len(), 1);
    // The table shows it too.
    let (ok, table, _) = ctl(data, t, &["get", "reservations"]);
    assert!(ok);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(
        table.contains("active") && table.contains("110/8/0/0"),
        "{table}"
    );
    // After its duration it is gone and the reservation is back.
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(
        json(data, t, &["get", "reservation", &id])["now"]["cpu"],
        100
    );
    // The invoice has the reservation's line.
    let inv = json(data, t, &["invoice", "--period", "1d"]);
    assert!(
        inv["lines"].as_array().unwrap().iter().any(|l| l["what"]
            .as_str()
            .unwrap()
            .contains(&format!("reservation {id}"))),
        "{inv}"
    );
    // Refusals come back with the reason and a failing exit status.
    let (ok, _, err) = ctl(data, t, &["modify", "999", "cpu=+1", "--for", "1h"]);
    assert!(!ok);
    assert!(err.contains("reservation 999 does not exist"), "{err}");
    let (ok, _, err) = ctl(data, t, &["modify", &id, "cpu+1", "--for", "1h"]);
    assert!(!ok);
    assert!(err.contains("KIND=CHANGE"), "{err}");
    let (ok, _, err) = ctl(data, t, &["create-tenant", "beta"]);
    assert!(!ok);
    assert!(err.contains("only the admin"), "{err}");
    interrupt_and_wait(child);
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().contains("ctl"));
}

/// The rest of the API through `ctl` on a daemon that can free room (a command migrator, act
/// mode): a pending modification told as such with why and how to follow it, its shard
/// request, `describe`, the market, hosts, decisions, every workload, `-o yaml`, and `--watch`
/// printing a list again when it changes.
#[test]
fn ctl_follows_a_pending_change_describes_objects_and_watches_lists() {
    let dir = tempfile::tempdir().unwrap();
    // The configuration sits beside the data folder.
    let data = &dir.path().join("data");
    std::fs::write(
        dir.path().join("shardex.toml"),
        "[host]\nname = \"h-ctl\"\ncpu_millicores = 1000\nmemory_bytes = 1073741824\n\
         [migrator]\nkind = \"command\"\ncommand = [\"/bin/true\"]\n\
         [engine]\nactuator = \"simulated\"\nmode = \"act\"\ndecide_every = \"1s\"\n",
    )
    .unwrap();
    let (child, _) = start(data);
    let token = |name: &str| {
        json(data, None, &["create-tenant", name])["token"]["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (a, b) = (token("alpha"), token("beta"));
    let (a, b) = (Some(a.as_str()), Some(b.as_str()));
    let reserve = |t, cpu: &str| {
        json(
            data,
            t,
            &[
                "reserve", "--host", "h-ctl", "--cpu", cpu, "--memory", "8", "--for", "1h",
            ],
        )["id"]
            .as_u64()
            .unwrap()
            .to_string()
    };
    let id = reserve(a, "60");
    reserve(b, "40");

    // Pending, told as such, with why and what to follow.
    let (ok, said, err) = ctl(data, a, &["modify", &id, "cpu=+20", "--for", "1h"]);
    assert!(ok, "{err}");
    assert!(said.starts_with("pending: reservation"), "{said}");
    assert!(said.contains("\nwhy: ") && said.contains("h-ctl"), "{said}");
    let mods = json(data, a, &["get", "modifications", &id]);
    let mid = mods["modifications"][0]["id"].as_u64().unwrap().to_string();
    assert!(
        said.contains(&format!("get shard-requests --modification {mid}")),
        "{said}"
    );
    // YAML is the same document.
    let (ok, yaml, _) = ctl(data, a, &["get", "modifications", &id, "-o", "yaml"]);
    assert!(ok);
    assert!(
        yaml.contains("state: pending") && yaml.contains("gives_up_at:"),
        "{yaml}"
    );
    // Its shard request, once the engine has decided.
    let mut table = String::new();
    for _ in 0..50 {
        let (ok, t, err) = ctl(data, a, &["get", "shard-requests", "--modification", &mid]);
        assert!(ok, "{err}");
        table = t;
        if table.contains("host_short") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains(&format!("modification {mid}")) && table.contains("20/0/0/0"),
        "{table}"
    );
    let (_, theirs, _) = ctl(data, b, &["get", "shard-requests", "--modification", &mid]);
    assert_eq!(
        theirs.lines().count(),
        1,
        "beta sees only the header: {theirs}"
    );
    // describe: the reservation with its pending change.
    let (ok, page, err) = ctl(data, a, &["describe", "reservation", &id]);
    assert!(ok, "{err}");
    assert!(
        page.contains("Modifications:") && page.contains("pending"),
        "{page}"
    );
    let doc = json(data, a, &["describe", "reservation", &id]);
    assert_eq!(doc["modifications"][0]["state"], "pending", "{doc}");
    // The market and the hosts (admin).
    let (ok, market, err) = ctl(data, a, &["get", "market", "h-ctl"]);
    assert!(ok, "{err}");
    assert!(
        market.starts_with("KIND") && market.contains("cpu"),
        "{market}"
    );
    let (ok, hosts, err) = ctl(data, None, &["get", "hosts"]);
    assert!(ok, "{err}");
    assert!(
        hosts.contains("h-ctl") && hosts.contains("100/64/"),
        "{hosts}"
    );

    // The event stream: the page has the queued change; a follower sees the withdrawal below.
    let (ok, page, err) = ctl(data, a, &["events", "--kinds", "modification"]);
    assert!(ok, "{err}");
    assert!(
        page.starts_with("ID") && page.contains("modification_queued"),
        "{page}"
    );
    let follower = running(
        data,
        a.unwrap(),
        &["events", "-f", "--kinds", "modification", "-o", "json"],
    );
    // --watch prints the list again when it changes: here, when the change is withdrawn.
    let watcher = running(
        data,
        a.unwrap(),
        &["get", "-w", "modifications", &id, "-o", "json"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let (ok, _, err) = ctl(data, a, &["cancel", "modification", &id, &mid]);
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_millis(3000));
    let followed = stop(follower);
    let withdrawn = followed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .find(|e| e["data"]["event"] == "pending_modification_ended")
        .unwrap_or_else(|| panic!("not followed: {followed}"));
    assert_eq!(withdrawn["kind"], "modification");
    assert_eq!(withdrawn["data"]["how"], "cancelled", "{withdrawn}");
    let seen = stop(watcher);
    let docs: Vec<Value> = seen
        .split("\n---\n")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {seen}")))
        .collect();
    assert_eq!(docs.len(), 2, "{seen}");
    assert_eq!(docs[0]["modifications"][0]["state"], "pending");
    assert_eq!(docs[1]["modifications"], serde_json::json!([]));

    // A workload: every one you may see, its decisions, and describe's page.
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let addr = std::fs::read_to_string(data.join("api.addr")).unwrap();
    let bind = serde_json::json!({"action": "bind_workload", "tenant": 1,
        "reservation": id.parse::<u64>().unwrap(), "name": "w"});
    let (s, body) = common::send(
        addr.trim(),
        "POST",
        "/v1/actions",
        admin.trim(),
        &bind.to_string(),
    );
    assert_eq!(s, 200, "{body}");
    let all = json(data, a, &["get", "workloads"]);
    let w = all["workloads"][0]["id"].as_u64().unwrap().to_string();
    assert_eq!(
        json(data, b, &["get", "workloads"])["workloads"],
        serde_json::json!([])
    );
    let d = json(data, a, &["get", "decisions", &w]);
    assert!(d["decisions"].is_array(), "{d}");
    let (ok, page, err) = ctl(data, a, &["describe", "workload", &w]);
    assert!(ok, "{err}");
    for section in ["Workload ", "Forecast", "Decisions", "Shard requests:"] {
        assert!(page.contains(section), "{section}: {page}");
    }
    let (ok, _, err) = ctl(data, b, &["describe", "workload", &w]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    interrupt_and_wait(child);
}
