//! Fleet mode with real host agents: two `shardex broker`s on a real PostgreSQL and two
//! `shardex agent`s, each with its own token, configuration and cgroup subtree. A workload's
//! reservation reaches its cgroup on its host only; an agent killed with SIGKILL goes offline,
//! and when it is started again it resyncs: the limit in force (changed behind its back while
//! it was away, and changed in the ledger meanwhile) matches the ledger. The broker planning
//! the host is killed too: the other takes the host's plan over and the agent reports to it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const ENGINE: &str = "[engine]\nmode = \"act\"\nsample_every = \"500ms\"\ndecide_every = \"2s\"\nscale_down_after = \"4s\"\ncheck_every = \"1s\"\n";

fn broker(url: &str, name: &str, dir: &Path) -> (Child, String) {
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
    .args([
        "--owner-ttl",
        "1500ms",
        "--offline-after",
        "3s",
        "--admin-token",
    ])
    .arg(dir.join("admin.token"))
    .arg("--config")
    .arg(dir.join("broker.toml"));
    spawn_listening(cmd)
}

/// `shardex agent` for host `host` (its token in `dir/<host>.token`), logging to
/// `dir/<host>.log`.
fn agent(host: &str, brokers: &str, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{host}.log")))
        .unwrap();
    Command::new(BIN)
        .args(["agent", "--broker", brokers, "--token-file"])
        .arg(dir.join(format!("{host}.token")))
        .arg("--config")
        .arg(dir.join(format!("{host}.toml")))
        .env("SHARDEX_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn agent_log(host: &str, dir: &Path) -> String {
    std::fs::read_to_string(dir.join(format!("{host}.log"))).unwrap_or_default()
}

/// The directories of a cgroup made for the test in the cpu, cpuacct and memory hierarchies
/// (v1) or the unified one (v2); removed when dropped.
fn make_cgroup(name: &str) -> (TestCgroup, PathBuf) {
    let base = Path::new("/sys/fs/cgroup");
    let dirs: Vec<PathBuf> = if base.join("cgroup.controllers").exists() {
        let _ = std::fs::write(base.join("cgroup.subtree_control"), "+cpu +memory");
        vec![base.join(name)]
    } else {
        let mut d: Vec<PathBuf> = ["cpu", "cpuacct", "memory"]
            .iter()
            .map(|c| cgroup_dir(c, name))
            .collect();
        d.dedup();
        d
    };
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("can't make {}: {e}", d.display()));
    }
    (TestCgroup(dirs), cgroup_dir("cpu", name))
}

/// The cpu limit in force in `dir`, millicores (`None`: unlimited).
fn cpu_limit(dir: &Path) -> Option<u64> {
    if dir.join("cpu.max").exists() {
        let text = std::fs::read_to_string(dir.join("cpu.max")).unwrap();
        let mut parts = text.split_whitespace();
        let q = parts.next().unwrap();
        let period: u64 = parts.next().unwrap().parse().unwrap();
        (q != "max").then(|| q.parse::<u64>().unwrap() * 1000 / period)
    } else {
        let q: i64 = std::fs::read_to_string(dir.join("cpu.cfs_quota_us"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let period: u64 = std::fs::read_to_string(dir.join("cpu.cfs_period_us"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        u64::try_from(q).ok().map(|q| q * 1000 / period)
    }
}

fn tamper_cpu(dir: &Path, millicores: u64) {
    if dir.join("cpu.max").exists() {
        std::fs::write(dir.join("cpu.max"), format!("{} 100000", millicores * 100)).unwrap();
    } else {
        std::fs::write(dir.join("cpu.cfs_quota_us"), (millicores * 100).to_string()).unwrap();
    }
}

/// `GET /v1/agent/hosts` as the admin.
fn agents(addr: &str, admin: &str) -> Vec<Value> {
    let (s, body) = get(addr, "/v1/agent/hosts", Some(admin));
    assert_eq!(s, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn agent_of<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|a| a["name"] == name)
}

/// The cpu hard limit `host`'s agent last reported in force for `workload`.
fn reported_cpu(addr: &str, admin: &str, host: &str, workload: u64) -> Option<u64> {
    let list = agents(addr, admin);
    let a = agent_of(&list, host)?;
    a["in_force"]
        .as_array()?
        .iter()
        .find(|f| f["workload"] == workload)?["in_force"][0]
        .as_u64()
}

/// A tenant "t" (made through `addr` by the admin) reserving 100 cpu and 16 memory shards on
/// h1 for an hour, with a workload `name` bound to it: the tenant's token, its id, the
/// reservation's id and the workload's id.
fn workload_on_h1(addr: &str, admin: &str, name: &str) -> (String, u64, u64, u64) {
    let (s, body) = send(
        addr,
        "POST",
        "/v1/tenants",
        admin,
        &json!({"name": "t"}).to_string(),
    );
    assert_eq!(s, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let token = v["token"]["token"].as_str().unwrap().to_string();
    let tenant = v["tenant"]["id"].as_u64().unwrap();
    let (s, body) = send(
        addr,
        "POST",
        "/v1/reservations",
        &token,
        &json!({"host": "h1", "shards": {"cpu": 100, "memory": 16}, "for": "1h"}).to_string(),
    );
    assert_eq!(s, 201, "{body}");
    let r = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_u64()
        .unwrap();
    let (s, body) = send(
        addr,
        "POST",
        "/v1/actions",
        admin,
        &json!({"action": "bind_workload", "tenant": tenant, "reservation": r, "name": name})
            .to_string(),
    );
    assert_eq!(s, 200, "{body}");
    let (_, body) = get(
        addr,
        &format!("/v1/reservations/{r}/workloads"),
        Some(&token),
    );
    let w = serde_json::from_str::<Value>(&body).unwrap()["workloads"][0]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{body}"));
    (token, tenant, r, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and root with cgroups (cpu, memory); CI starts PostgreSQL and runs this"]
async fn agents_apply_their_hosts_limits_go_offline_and_resync_after_a_restart() {
    let (url, _pg) = shardex_store::testkit::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("broker.toml"), ENGINE).unwrap();
    let (a, addr_a) = broker(&url, "a", dir);
    let a = Stopping::new(a, Duration::from_secs(5));
    let (b, addr_b) = broker(&url, "b", dir);
    let b = Stopping::new(b, Duration::from_secs(5));
    let admin = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();

    // A token per host, from the admin (h2's through `shardex ctl`); each agent's own
    // configuration.
    let ctl = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["ctl", "--url", &addr_a, "--token", &admin])
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
    std::fs::write(dir.join("h2.token"), ctl(&["agent-token", "h2"])).unwrap();
    for host in ["h1", "h2"] {
        std::fs::write(
            dir.join(format!("{host}.toml")),
            format!("[host]\ncpu_millicores = 4000\nmemory_bytes = 4294967296\nnet_bps = 0\niops = 0\n{ENGINE}"),
        )
        .unwrap();
        if host == "h2" {
            continue;
        }
        let (s, body) = send(
            &addr_a,
            "POST",
            "/v1/agent/tokens",
            &admin,
            &json!({"host": host}).to_string(),
        );
        assert_eq!(s, 201, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        std::fs::write(
            dir.join(format!("{host}.token")),
            v["token"].as_str().unwrap(),
        )
        .unwrap();
    }
    // Bad tokens are refused by name, and nothing is registered.
    let (s, _) = send(&addr_a, "POST", "/v1/agent/register", &admin, "{}");
    assert_eq!(s, 401);
    let (s, body) = send(
        &addr_a,
        "POST",
        "/v1/agent/tokens",
        &admin,
        &json!({"host": ""}).to_string(),
    );
    assert_eq!(s, 422, "{body}");

    let brokers = format!("{addr_a},{addr_b}");
    let h1 = Stopping::new(agent("h1", &brokers, dir), Duration::from_secs(5));
    let _h2 = Stopping::new(agent("h2", &brokers, dir), Duration::from_secs(5));
    assert!(
        eventually(Duration::from_secs(20), || {
            let list = agents(&addr_b, &admin);
            ["h1", "h2"]
                .iter()
                .all(|h| agent_of(&list, h).is_some_and(|a| a["state"] == "online"))
        }),
        "agents never came online:\n{}\n{}",
        agent_log("h1", dir),
        agent_log("h2", dir)
    );

    let table = ctl(&["get", "agents"]);
    assert!(
        table.lines().filter(|l| l.contains("online")).count() == 2,
        "{table}"
    );
    // A tenant reserves 1 core on h1 and binds a workload there, in a cgroup of its own.
    let name = format!("shardex-fleet-{}", std::process::id());
    let (_cg, cpu_dir) = make_cgroup(&name);
    let (tenant_token, tenant, r, w) = workload_on_h1(&addr_a, &admin, &name);

    // h1's agent puts the reservation's 1 core in force and reports it; h2's never touches it.
    let t = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || cpu_limit(&cpu_dir)
            == Some(1000)),
        "the reservation never reached the cgroup: {:?}\n{}",
        cpu_limit(&cpu_dir),
        agent_log("h1", dir)
    );
    eprintln!("in force on h1 {:?} after the bind", t.elapsed());
    assert!(eventually(Duration::from_secs(5), || reported_cpu(
        &addr_a, &admin, "h1", w
    ) == Some(1000)));
    assert!(
        !agent_log("h2", dir).contains(&name),
        "{}",
        agent_log("h2", dir)
    );
    // The workload holds its whole reservation to begin with; the broker holding h1 plans it
    // from the samples its agent reported: the idle workload's share is sized down (its hard
    // limit stays the reservation's), and that decision, recorded by the planning broker, is
    // read through either broker.
    let (s, body) = send(
        &addr_a,
        "POST",
        "/v1/actions",
        &admin,
        &json!({"action": "allocate", "tenant": tenant, "workload": w,
                "share": {"cpu": 100, "memory": 16, "net": 0, "iops": 0}})
        .to_string(),
    );
    assert_eq!(s, 200, "{body}");
    let share = |addr: &str| {
        let (_, body) = get(addr, &format!("/v1/workloads/{w}"), Some(&tenant_token));
        let v: Value = serde_json::from_str(&body).unwrap();
        v["allocation"]["cpu"].as_u64().unwrap()
    };
    assert_eq!(
        share(&addr_a),
        100,
        "as written, through the broker that wrote it"
    );
    let (pa, pb) = (a.id(), b.id());
    let decided = |addr: &str| {
        let (s, body) = get(
            addr,
            &format!("/v1/workloads/{w}/decisions"),
            Some(&tenant_token),
        );
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["decisions"].as_array().unwrap().iter().any(|d| {
            d["mode"] == "act" && d["kind"] == "cpu" && d["to"].as_u64().is_some_and(|t| t < 100)
        })
    };
    assert!(
        eventually(Duration::from_secs(30), || share(&addr_a) < 100
            && decided(&addr_a)
            && decided(&addr_b)),
        "h1 was never planned (share {}):\n{}\n{}",
        share(&addr_a),
        log_of(pa),
        log_of(pb)
    );
    assert_eq!(
        cpu_limit(&cpu_dir),
        Some(1000),
        "the hard limit stays the reservation's"
    );

    // h1's agent is killed: h1 goes offline after the timeout (3 s here).
    let mut h1 = h1.take();
    h1.kill().unwrap();
    h1.wait().unwrap();
    let killed = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || agent_of(
            &agents(&addr_a, &admin),
            "h1"
        )
        .is_some_and(|a| a["state"] == "offline")),
        "h1 never went offline"
    );
    eprintln!(
        "h1 offline {:?} after its agent was killed",
        killed.elapsed()
    );
    // Meanwhile: +50 % cpu in the ledger, and the cgroup's limit changed behind shardex's back.
    let (s, body) = send(
        &addr_b,
        "POST",
        &format!("/v1/reservations/{r}/modifications"),
        &tenant_token,
        &json!({"changes": {"cpu": "+50%"}, "for": "1h"}).to_string(),
    );
    assert_eq!(s, 201, "{body}");
    tamper_cpu(&cpu_dir, 100);
    // Restarted, it resyncs: what is in force is the ledger's, and it says so.
    let t = Instant::now();
    let _h1 = Stopping::new(agent("h1", &brokers, dir), Duration::from_secs(5));
    assert!(
        eventually(Duration::from_secs(15), || cpu_limit(&cpu_dir)
            == Some(1500)),
        "after the restart the limit is {:?}, not the ledger's 1500:\n{}",
        cpu_limit(&cpu_dir),
        agent_log("h1", dir)
    );
    eprintln!("resynced {:?} after the restart", t.elapsed());
    assert!(eventually(Duration::from_secs(5), || {
        let list = agents(&addr_a, &admin);
        agent_of(&list, "h1").is_some_and(|a| a["state"] == "online")
            && reported_cpu(&addr_a, &admin, "h1", w) == Some(1500)
    }));

    // The tenant sees, through either broker, the limit in force and the usage its host's
    // agent reported.
    for addr in [&addr_a, &addr_b] {
        assert!(
            eventually(Duration::from_secs(5), || {
                let (_, body) = get(addr, &format!("/v1/workloads/{w}"), Some(&tenant_token));
                let v: Value = serde_json::from_str(&body).unwrap();
                let cpu = &v["kinds"]["cpu"];
                cpu["limit_in_force"] == 1500 && cpu["usage"].is_u64()
            }),
            "{}",
            get(addr, &format!("/v1/workloads/{w}"), Some(&tenant_token)).1
        );
    }
    // A broker's /metrics: the agents, and each workload's limit read back in force as its
    // agent reported it (the admin's; 401 without).
    let (s, _) = get(&addr_a, "/metrics", None);
    assert_eq!(s, 401);
    let (s, text) = get(&addr_a, "/metrics", Some(&admin));
    assert_eq!(s, 200);
    assert!(
        text.contains("shardex_agents{state=\"online\"} 2"),
        "{text}"
    );
    let limit = text
        .lines()
        .find(|l| {
            l.starts_with("shardex_workload_limit{")
                && l.contains(&format!("workload=\"{name}\""))
                && l.contains("kind=\"cpu\"")
        })
        .unwrap_or_else(|| panic!("no cpu limit for {name}:\n{text}"));
    let value: f64 = limit.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(value, 1500.0, "{limit}");
    assert!(
        text.contains("shardex_api_request_seconds_count{"),
        "{text}"
    );

    // The broker planning h1 dies: the other plans it within the bound, and the agent reports
    // through it (h1 stays online).
    let planner = agent_of(&agents(&addr_a, &admin), "h1").unwrap()["planned_by"]
        .as_str()
        .unwrap()
        .to_string();
    let (dead, survivor) = if planner == "a" {
        (a, addr_b.clone())
    } else {
        (b, addr_a.clone())
    };
    let mut dead = dead.take();
    dead.kill().unwrap();
    dead.wait().unwrap();
    let killed = Instant::now();
    let other = if planner == "a" { "b" } else { "a" };
    assert!(
        eventually(Duration::from_secs(10), || agent_of(
            &agents(&survivor, &admin),
            "h1"
        )
        .is_some_and(|a| a["planned_by"] == other)),
        "h1 was not taken over"
    );
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "taken over after {took:?} (ttl 1.5 s)"
    );
    eprintln!("h1's plan taken over {took:?} after its broker was killed");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        agent_of(&agents(&survivor, &admin), "h1").is_some_and(|a| a["state"] == "online"),
        "the agent did not turn to the surviving broker:\n{}",
        agent_log("h1", dir)
    );
    assert_eq!(cpu_limit(&cpu_dir), Some(1500));
    // The history holds every invariant at every entry.
    shardex_store::testkit::check_history(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (Debian's postgresql, or SHARDEX_TEST_PG); CI starts it and runs this"]
async fn a_report_of_a_held_workload_raises_it_at_once_and_a_bad_report_changes_nothing() {
    let (url, _pg) = shardex_store::testkit::database().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // No plan runs during the test (its first decision is an hour away): what changes is the
    // report's doing alone.
    std::fs::write(
        dir.join("broker.toml"),
        ENGINE.replace("decide_every = \"2s\"", "decide_every = \"1h\""),
    )
    .unwrap();
    let (a, addr) = broker(&url, "a", dir);
    let _a = Stopping::new(a, Duration::from_secs(5));
    let admin = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let token_of = |host: &str| {
        let (s, body) = send(
            &addr,
            "POST",
            "/v1/agent/tokens",
            &admin,
            &json!({"host": host}).to_string(),
        );
        assert_eq!(s, 201, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (h1, h2) = (token_of("h1"), token_of("h2"));
    // Registered from physical units: rounded down to whole shards of the fleet's sizes.
    let register =
        json!({"cpu_millicores": 2005, "memory_bytes": 1u64 << 30, "net_bps": 0, "iops": 0});
    let (s, body) = send(
        &addr,
        "POST",
        "/v1/agent/register",
        &h1,
        &register.to_string(),
    );
    assert_eq!(s, 200, "{body}");
    let reg: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reg["capacity"]["cpu"], 200);
    assert_eq!(reg["capacity"]["memory"], 64);
    let (s, _) = send(
        &addr,
        "POST",
        "/v1/agent/register",
        &h2,
        &register.to_string(),
    );
    assert_eq!(s, 200);
    // A tenant's reservation on h1 with a workload holding 10 of its 100 cpu shards.
    let (tenant_token, tenant, _, w) = workload_on_h1(&addr, &admin, "w");
    let act = |body: Value| {
        let (s, text) = send(&addr, "POST", "/v1/actions", &admin, &body.to_string());
        assert_eq!(s, 200, "{text}");
    };
    act(
        json!({"action": "allocate", "tenant": tenant, "workload": w,
               "share": {"cpu": 10, "memory": 16, "net": 0, "iops": 0}}),
    );
    let share = || {
        let (_, body) = get(&addr, &format!("/v1/workloads/{w}"), Some(&tenant_token));
        serde_json::from_str::<Value>(&body).unwrap()["allocation"]["cpu"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(share(), 10);
    let (_, health) = get(&addr, "/v1/health", None);
    let seq = serde_json::from_str::<Value>(&health).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let sample = |cpu: u64, held: bool| {
        json!({"workload": w, "at_ms": wall_ms(), "reading": {
            "usage": [cpu, 1 << 20, null, null], "censored": [held, false, false, false], "oom_kills": 0}})
    };
    let report =
        |samples: Vec<Value>| json!({"seq": seq, "samples": samples, "in_force": []}).to_string();

    // Bad reports: each refused by name, and nothing changes.
    let bad = [
        (&h2, report(vec![sample(100, true)]), 422, "not on host h2"),
        (
            &h1,
            json!({"seq": seq, "samples": [], "in_force": [], "extra": 1}).to_string(),
            400,
            "unknown field",
        ),
        (
            &h1,
            report(vec![json!({"workload": w, "at_ms": wall_ms() + 3_600_000,
            "reading": {"usage": [1, 1, null, null], "censored": [true, false, false, false], "oom_kills": 0}})]),
            422,
            "ahead",
        ),
        (&tenant_token, report(vec![sample(100, true)]), 401, ""),
    ];
    for (token, body, status, says) in bad {
        let (s, text) = send(&addr, "POST", "/v1/agent/report", token, &body);
        assert_eq!(s, status, "{text}");
        assert!(text.contains(says), "{text}");
        assert_eq!(share(), 10, "a refused report changed the ledger: {body}");
    }
    // A sample below its limit changes nothing; one held at its limit raises the workload at
    // once to all the room its reservation has.
    let (s, text) = send(
        &addr,
        "POST",
        "/v1/agent/report",
        &h1,
        &report(vec![sample(50, false)]),
    );
    assert_eq!(s, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["committed"],
        0
    );
    let (s, text) = send(
        &addr,
        "POST",
        "/v1/agent/report",
        &h1,
        &report(vec![sample(100, true)]),
    );
    assert_eq!(s, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["committed"],
        1
    );
    assert_eq!(share(), 100);
    // The host's agent gets its own workloads' limits (h2's gets none of them), and 204 while
    // nothing changed; a tenant's token gets nothing.
    let (s, text) = get(&addr, "/v1/agent/targets", Some(&h1));
    assert_eq!(s, 200, "{text}");
    let got: Value = serde_json::from_str(&text).unwrap();
    let mine = got["targets"]["workloads"].as_array().unwrap();
    assert_eq!(mine.len(), 1, "{text}");
    assert_eq!(mine[0]["id"], w);
    assert_eq!(mine[0]["want"]["hard"][0], 1000, "{text}");
    let (s, text) = get(&addr, "/v1/agent/targets", Some(&h2));
    assert_eq!(s, 200);
    let theirs: Value = serde_json::from_str(&text).unwrap();
    assert!(
        theirs["targets"]["workloads"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{text}"
    );
    let (s, _) = get(
        &addr,
        &format!("/v1/agent/targets?after={}", got["seq"]),
        Some(&h1),
    );
    assert_eq!(s, 204);
    // A broker behind the one the agent asked last never sends it older limits.
    let ahead = got["seq"].as_u64().unwrap() + 1000;
    let (s, _) = get(
        &addr,
        &format!("/v1/agent/targets?after={ahead}"),
        Some(&h1),
    );
    assert_eq!(s, 204);
    let (s, _) = get(&addr, "/v1/agent/targets", Some(&tenant_token));
    assert_eq!(s, 401);
    let (s, text) = get(&addr, "/v1/agent/targets?after=x", Some(&h1));
    assert_eq!(s, 400, "{text}");
    // A revoked host token is refused from then on; a host with no token left is a 404.
    let (s, text) = send(&addr, "DELETE", "/v1/agent/tokens/h2", &admin, "");
    assert_eq!(s, 200, "{text}");
    let (s, _) = get(&addr, "/v1/agent/targets", Some(&h2));
    assert_eq!(s, 401);
    let (s, _) = send(&addr, "DELETE", "/v1/agent/tokens/h2", &admin, "");
    assert_eq!(s, 404);
    let (s, _) = send(&addr, "DELETE", "/v1/agent/tokens/h1", &h1, "");
    assert_eq!(s, 401, "a host can't revoke tokens");
    shardex_store::testkit::check_history(&url).await;
}
