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
    let data = dir.path();
    std::fs::write(
        data.join("shardex.toml"),
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
