//! The dashboard in a real browser: Debian's Chromium, driven through chromedriver, against
//! `shardex run` with real workloads (`shardex launch` puts busy loops in cgroups). It draws
//! the hosts' capacity with data, a workload's charts from its samples, and a dry-run
//! modification's quote, which commits nothing; with 1,000 workloads the first page is drawn
//! in well under a second. Screenshots go to `target/dashboard-screenshots/`.
//!
//! They need Chromium and chromedriver (Debian's `chromium` and `chromium-driver`), and the
//! first needs root for its cgroups, so they are `#[ignore]`d; CI installs both and runs them.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver leads its own process group: the browsers it started go with it, also
        // when a test failed before closing its session.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn driver() -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver) is needed: apt-get install chromium chromium-driver");
    let addr = format!("127.0.0.1:{port}");
    assert!(
        eventually(Duration::from_secs(10), || std::net::TcpStream::connect(
            &addr
        )
        .is_ok()),
        "chromedriver did not listen on {addr}"
    );
    Driver {
        child,
        url: format!("http://{addr}"),
    }
}

async fn browser(driver: &Driver) -> Client {
    let profile = tempfile::tempdir().unwrap().keep();
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000", format!("--user-data-dir={}", profile.display()),
            ],
        }
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("could not start Chromium through chromedriver")
}

/// Waits until the page says `page` is loaded and drawn; the time it took from navigation, in
/// milliseconds, as the page measured it. A page that failed names why.
async fn loaded(c: &Client, page: &str) -> f64 {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let state = c
            .execute(
                "const m = document.getElementById('main');
                 return [m.dataset.loaded || '', m.dataset.error || '', window.shardexDrawnAt || null];",
                vec![],
            )
            .await
            .unwrap();
        if state[0] == page {
            return state[2].as_f64().unwrap();
        }
        assert!(
            Instant::now() < end,
            "the {page} page never loaded: {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Goes to the dashboard's `route` and waits for `page` to be drawn.
async fn visit(c: &Client, base: &str, route: &str, page: &str) -> f64 {
    c.goto(&format!("{base}/{route}")).await.unwrap();
    loaded(c, page).await
}

/// The data points each chart on the page drew.
async fn points(c: &Client) -> Vec<u64> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(".chart")).await.unwrap() {
        let n = e.attr("data-points").await.unwrap().unwrap_or_default();
        out.push(n.parse().unwrap_or(0));
    }
    out
}

/// Types `token` into the page's token box and saves it (kept in the session's storage).
async fn sign_in(c: &Client, token: &str) {
    let field = c.find(Locator::Css("#token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    let save = c.find(Locator::Css("#token-save")).await.unwrap();
    save.click().await.unwrap();
}

async fn screenshot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

fn admin_of(data: &std::path::Path) -> String {
    std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (cgroups), Debian's chromium and chromium-driver; CI installs them and runs it"]
async fn the_dashboard_draws_live_workloads_and_quotes_a_dry_run_modification() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shardex.toml"),
        "[engine]\nmode = \"act\"\nsample_every = \"1s\"\ndecide_every = \"2s\"\n\
         scale_down_after = \"4s\"\ncheck_every = \"1s\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let (daemon, addr) = start(&data);
    // Dropped last: the launchers below take their workloads out through it first.
    let daemon = Stopping::new(daemon, Duration::from_secs(10));
    let admin = admin_of(&data);
    let tag = std::process::id();
    // A busy loop at 0.4 of a core and an idle neighbour, each in its own reservation (0.6
    // of a core each: a +10 % modification has room on a 2-core host).
    let launch = |name: &str, cpu: &str| {
        let child = Command::new(BIN)
            .args(["launch", "--tenant", "acme", "--name", name])
            .args(["--cpu", "0.6", "--memory", "256MiB", "--"])
            .arg(BIN)
            .args(["load", "--cpu", cpu, "--memory", "32", "--hold", "300s"])
            .env("SHARDEX_DATA", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A launcher stopped with SIGTERM takes its workload out (cgroup and all), also when
        // this test fails half-way.
        Stopping::new(child, Duration::from_secs(10))
    };
    let mut workloads = vec![launch(&format!("busy-{tag}"), "400")];
    std::thread::sleep(Duration::from_millis(700));
    workloads.push(launch(&format!("idle-{tag}"), "0"));
    let (s, body) = send(
        &addr,
        "POST",
        "/v1/tenants/acme/tokens",
        &admin,
        r#"{"label":"dashboard"}"#,
    );
    assert_eq!(s, 201, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    // A few samples and decisions.
    let sampled = eventually(Duration::from_secs(30), || {
        let (_, body) = get(&addr, "/v1/workloads", Some(&token));
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        v["workloads"]
            .as_array()
            .is_some_and(|w| w.len() == 2 && w.iter().all(|w| w["kinds"]["cpu"]["usage"].is_u64()))
    });
    assert!(sampled, "the workloads were never sampled");
    std::thread::sleep(Duration::from_secs(5));

    let driver = driver();
    let c = browser(&driver).await;
    let base = format!("http://{addr}");
    // The hosts, without a token: the capacity split as bars, and a chart with a point.
    let ms = visit(&c, &base, "#/", "hosts").await;
    let bars = c.find_all(Locator::Css(".capacity-bar")).await.unwrap();
    assert!(bars.len() >= 4, "{} capacity bars", bars.len());
    let drawn = points(&c).await;
    assert!(drawn.iter().any(|n| *n >= 1), "hosts charts: {drawn:?}");
    eprintln!("hosts page drawn {ms:.0} ms after navigation");
    screenshot(&c, "hosts").await;

    // The tenant's token, then its workloads and a link to the busy one.
    sign_in(&c, &token).await;
    visit(&c, &base, "#/workloads", "workloads").await;
    let links = c.find_all(Locator::Css("a.workload-link")).await.unwrap();
    assert_eq!(links.len(), 2);
    let mut busy = None;
    for l in links {
        if l.text().await.unwrap().contains("busy-") {
            busy = Some(l);
        }
    }
    screenshot(&c, "workloads").await;
    busy.expect("no link to the busy workload")
        .click()
        .await
        .unwrap();
    loaded(&c, "workload").await;
    let url = c.current_url().await.unwrap();
    assert!(
        url.fragment().is_some_and(|f| f.starts_with("/workloads/")),
        "{url}"
    );
    let drawn = points(&c).await;
    assert!(
        !drawn.is_empty() && drawn.iter().all(|n| *n >= 5),
        "the workload's charts: {drawn:?} points"
    );
    let page = c
        .find(Locator::Css("#main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("cpu"), "{page}");
    screenshot(&c, "workload").await;

    // A modification, dry run: its quote is shown and nothing is committed.
    visit(&c, &base, "#/reservations", "reservations").await;
    c.find(Locator::Css("#mod-changes"))
        .await
        .unwrap()
        .send_keys("cpu=+10%")
        .await
        .unwrap();
    let f = c.find(Locator::Css("#mod-for")).await.unwrap();
    f.clear().await.unwrap();
    f.send_keys("1h").await.unwrap();
    c.find(Locator::Css("#mod-dry-run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let quote = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#mod-quote #mod-price"))
        .await
        .expect("no quote shown");
    let price = quote.text().await.unwrap();
    assert!(
        price.chars().any(|ch| ch.is_ascii_digit()),
        "the quote shows no price: {price:?}"
    );
    let submit = c.find(Locator::Css("#mod-submit")).await.unwrap();
    assert_eq!(
        submit.prop("disabled").await.unwrap().as_deref(),
        Some("false"),
        "submit stays disabled after a dry run"
    );
    screenshot(&c, "reservations").await;
    for r in 1..=2 {
        let (s, body) = get(
            &addr,
            &format!("/v1/reservations/{r}/modifications"),
            Some(&token),
        );
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["modifications"].as_array().map(Vec::len),
            Some(0),
            "a dry run committed: {v}"
        );
    }
    visit(&c, &base, "#/market", "market").await;
    screenshot(&c, "market").await;
    visit(&c, &base, "#/bill", "bill").await;
    screenshot(&c, "bill").await;
    c.close().await.unwrap();

    drop(workloads);
    interrupt_and_wait(daemon.take());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and chromium-driver; CI installs them and runs it"]
async fn with_a_thousand_workloads_the_first_page_is_drawn_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Recommend mode, simulated actuator: the workloads are in the ledger, nothing is limited.
    std::fs::write(
        dir.path().join("shardex.toml"),
        "[engine]\nmode = \"recommend\"\nactuator = \"simulated\"\n",
    )
    .unwrap();
    let (daemon, addr) = start(&data);
    let daemon = Stopping::new(daemon, Duration::from_secs(10));
    let admin = admin_of(&data);
    let host = {
        let (_, body) = get(&addr, "/v1/overview", None);
        let v: Value = serde_json::from_str(&body).unwrap();
        v["hosts"][0]["name"].as_str().unwrap().to_string()
    };
    let (s, body) = send(&addr, "POST", "/v1/tenants", &admin, r#"{"name":"many"}"#);
    assert_eq!(s, 201, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    let token = token["token"]["token"].as_str().unwrap().to_string();
    for r in 0..10 {
        let (s, body) = send(
            &addr,
            "POST",
            "/v1/reservations",
            &token,
            &json!({"host": host, "shards": {"cpu": 10, "memory": 10}, "for": "1h"}).to_string(),
        );
        assert_eq!(s, 201, "reservation {r}: {body}");
    }
    for i in 0..1000 {
        let body = json!({
            "action": "bind_workload", "tenant": 1, "reservation": 1 + i % 10,
            "name": format!("simulated-{i}"),
        });
        let (s, text) = send(&addr, "POST", "/v1/actions", &admin, &body.to_string());
        assert_eq!(s, 200, "workload {i}: {text}");
    }
    let driver = driver();
    let c = browser(&driver).await;
    let base = format!("http://{addr}");
    // The first visit warms the browser's cache of nothing: every load is measured cold.
    let mut firsts = Vec::new();
    for _ in 0..3 {
        c.goto("about:blank").await.unwrap();
        firsts.push(visit(&c, &base, "#/", "hosts").await);
    }
    sign_in(&c, &admin).await;
    c.goto("about:blank").await.unwrap();
    let list = visit(&c, &base, "#/workloads", "workloads").await;
    let rows = c
        .find_all(Locator::Css("a.workload-link"))
        .await
        .unwrap()
        .len();
    assert_eq!(rows, 1000);
    screenshot(&c, "hosts-1000").await;
    c.close().await.unwrap();
    interrupt_and_wait(daemon.take());
    firsts.sort_by(f64::total_cmp);
    eprintln!(
        "1,000 workloads: the first page drawn {:.0} ms after navigation (median of 3: {firsts:?}); \
         the workloads page (1,000 rows) {list:.0} ms",
        firsts[1]
    );
    assert!(firsts[1] < 1000.0, "the first page took {} ms", firsts[1]);
    assert!(list < 3000.0, "the workloads page took {list} ms");
}
