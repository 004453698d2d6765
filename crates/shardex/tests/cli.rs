//! End-to-end: the real binary on a fresh data folder.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;

use common::*;
use shardex_core::action;

#[test]
fn run_registers_this_host_serves_and_stops_cleanly_then_the_ledger_checks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shardex-data");
    let (child, addr) = start(&data);

    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let token = token.trim();
    let meta = std::fs::metadata(data.join("admin.token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );

    let (status, body) = get(&addr, "/v1/health", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""));
    assert_eq!(get(&addr, "/v1/hosts", None).0, 401);
    let (status, body) = get(&addr, "/v1/hosts", Some(token));
    assert_eq!(status, 200);
    let hosts: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cpu = hosts["hosts"][0]["capacity_physical"]["cpu_millicores"]
        .as_u64()
        .unwrap();
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert!(
        cpu >= cores * 1000,
        "cpu capacity {cpu} millicores is under the {cores} cores this machine shows"
    );
    let memory = hosts["hosts"][0]["capacity_physical"]["memory_bytes"]
        .as_u64()
        .unwrap();
    assert!(memory > 64 << 20, "memory capacity {memory} looks unread");
    interrupt_and_wait(child);

    let (code, out) = ledger_check(&data);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("All invariants hold"), "{out}");

    // A restart finds the host already registered and its market priced, and adds nothing
    // to the log (the first start wrote the host and its first market price).
    let (child, addr) = start(&data);
    let (_, body) = get(&addr, "/v1/health", None);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["seq"], 2, "{body}");
    interrupt_and_wait(child);
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shardex.toml"),
        "[shards]\ncpu_millicores = 0\n",
    )
    .unwrap();
    let data = dir.path().join("shardex-data");
    let out = Command::new(BIN)
        .args(["run", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("shards.cpu_millicores = 0") && err.contains("at least 1"),
        "{err}"
    );
    assert!(!data.exists(), "nothing is created on a bad config");
}

#[test]
fn ledger_check_without_data_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["ledger", "check", "--data"])
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("no ledger at")
    );
}

#[test]
fn ledger_invoice_prints_the_metered_charges_of_a_tenant() {
    use shardex_core::ports::LedgerStore;
    use shardex_core::{
        Action, HostId, ShardSizes, ShardVector, TenantId, Tier, Timestamp, Window,
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shardex-data");
    std::fs::create_dir_all(&data).unwrap();
    let t = |s| Timestamp::from_secs(s).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut store =
            shardex_store::SqliteStore::open(&data.join("ledger.db"), ShardSizes::default())
                .await
                .unwrap();
        let capacity = ShardVector::new(1000, 1000, 10, 10);
        for a in [
            Action::RegisterHost(action::RegisterHost {
                name: "h".into(),
                capacity,
            }),
            Action::CreateTenant(action::CreateTenant {
                name: "acme".into(),
            }),
            Action::CreateReservation(action::CreateReservation {
                tenant: TenantId(1),
                host: HostId(1),
                vector: ShardVector::new(100, 0, 0, 0),
                window: Window::new(t(0), t(3600)).unwrap(),
                tier: Tier::Standard,
            }),
        ] {
            store.apply(a, t(0)).await.unwrap().unwrap();
        }
        store.apply(Action::Expire, t(3600)).await.unwrap().unwrap();
        store.close().await;
    });
    let out = Command::new(BIN)
        .args(["ledger", "invoice", "--tenant", "acme", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // 100 cpu shards for an hour at 0.0004 per shard-hour.
    assert!(text.contains("reservation 1 cpu (standard)"), "{text}");
    assert!(
        text.lines().last().unwrap().trim_end().ends_with("0.04"),
        "{text}"
    );
    let out = Command::new(BIN)
        .args(["ledger", "invoice", "--tenant", "nobody", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenant named \"nobody\""));
}

#[test]
fn the_api_takes_actions_quotes_leases_and_invoices_the_borrower() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, addr) = start(&data);
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let token = token.trim();
    let post = |body: serde_json::Value| {
        let (status, text) = send(&addr, "POST", "/v1/actions", token, &body.to_string());
        (
            status,
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        )
    };
    for name in ["a", "b"] {
        let (status, _) = post(serde_json::json!({"action": "create_tenant", "name": name}));
        assert_eq!(status, 200);
    }
    let start_ms = wall_ms() + 1000;
    let window = serde_json::json!({"start": start_ms, "end": start_ms + 3_600_000});
    for (tenant, cpu) in [(1, 50), (2, 10)] {
        let (status, body) = post(serde_json::json!({
            "action": "create_reservation", "tenant": tenant, "host": 1,
            "vector": [cpu, 0, 0, 0], "window": window, "tier": "standard"
        }));
        assert_eq!(status, 200, "{body}");
    }
    // Wait for the reservations to start.
    std::thread::sleep(Duration::from_millis(1300));
    let (status, body) = post(serde_json::json!({
        "action": "bind_workload", "tenant": 2, "reservation": 2, "name": "web"
    }));
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(serde_json::json!({
        "action": "offer", "tenant": 1, "reservation": 1, "vector": [40, 0, 0, 0],
        "floor": {"cpu": "0.001"}
    }));
    assert_eq!(status, 200, "{body}");
    let until = wall_ms() + 1_800_000;
    let request = serde_json::json!({
        "action": "request_lease", "tenant": 2, "workload": 1, "vector": [20, 0, 0, 0],
        "until": until, "max_price": {"cpu": "1"}, "all_or_nothing": true
    });
    // The provider's free capacity is cheaper than a's floor of 0.001: the market price of an
    // idle pool is half the list price (0.0004), 0.0002, × 1.25 for immediate delivery. A
    // quote changes nothing: 20 shards × ~0.5 h × 0.00025 ≈ 0.0025.
    let quote = serde_json::json!({"action": request, "tenant": "b", "over": "1h"});
    let (status, text) = send(&addr, "POST", "/v1/quote", token, &quote.to_string());
    assert_eq!(status, 200, "{text}");
    let q: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cost: f64 = q["cost"].as_str().unwrap().parse().unwrap();
    assert!(cost > 0.0024 && cost <= 0.0025, "{q}");
    let (_, market) = send(&addr, "GET", "/v1/market", token, "");
    let market: serde_json::Value = serde_json::from_str(&market).unwrap();
    assert_eq!(market["hosts"][0]["leased"]["cpu"], 0, "{market}");
    // A delivery time in the past: refused, named, nothing changed.
    let mut late = request.clone();
    late["start"] = serde_json::json!(start_ms - 5000);
    let (status, body) = post(late);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("before now"),
        "{body}"
    );
    let (status, body) = post(request);
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().unwrap();
    let lease = events
        .iter()
        .find(|e| e["event"] == "lease_created")
        .expect("leased");
    assert_eq!(
        lease["lender"],
        serde_json::json!({"provider": 1}),
        "{lease}"
    );
    assert_eq!(lease["price"]["cpu"], "0.00025", "{lease}");
    let (_, market) = send(&addr, "GET", "/v1/market", token, "");
    let market: serde_json::Value = serde_json::from_str(&market).unwrap();
    assert_eq!(market["hosts"][0]["leased"]["cpu"], 20, "{market}");
    // Bad input: not an action at all.
    let (status, text) = send(&addr, "POST", "/v1/actions", token, "{\"action\": \"fly\"}");
    assert_eq!(status, 400, "{text}");
    // Time passes; the next action meters the lease; b's invoice shows it.
    std::thread::sleep(Duration::from_millis(1100));
    let (status, _) = post(serde_json::json!({"action": "expire"}));
    assert_eq!(status, 200);
    let (status, text) = send(&addr, "GET", "/v1/tenants/b/invoice", token, "");
    assert_eq!(status, 200, "{text}");
    let inv: serde_json::Value = serde_json::from_str(&text).unwrap();
    let lines = inv["invoice"]["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["what"].as_str().unwrap().contains("lease")),
        "{inv}"
    );
    let (status, _) = send(&addr, "GET", "/v1/tenants/nobody/invoice", token, "");
    assert_eq!(status, 404);
    let (status, _) = send(&addr, "GET", "/v1/market", "wrong-token", "");
    assert_eq!(status, 401);
    interrupt_and_wait(child);
    let (code, out) = ledger_check(&data);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn provisioner_try_runs_the_configured_command_and_reports_its_failure() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("new-host");
    std::fs::write(
        &hook,
        "#!/bin/sh\ncat > /dev/null\necho '{\"name\": \"cloud-1\", \"capacity\": {\"cpu\": 800, \"memory\": 64}}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("shardex.toml");
    std::fs::write(
        &config,
        format!(
            "[provisioner]\nkind = \"command\"\ncommand = [\"{}\"]\ntimeout = \"10s\"\n",
            hook.display()
        ),
    )
    .unwrap();
    let run = |cpu: &str| {
        Command::new(BIN)
            .args(["provisioner", "try", "--config"])
            .arg(&config)
            .args(["--cpu", cpu])
            .output()
            .unwrap()
    };
    let out = run("100");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cloud-1"));
    // A host smaller than asked for is refused, naming both.
    let out = run("5000");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cloud-1") && err.contains("5000"), "{err}");
}

#[test]
#[ignore = "needs a cgroup v1 or v2 filesystem at /sys/fs/cgroup; CI runs it with --include-ignored"]
fn the_control_loop_samples_a_real_cgroup_decides_and_records_why() {
    // Sample every 200 ms, decide every second, and act on it. "/" is the root cgroup:
    // everything running here, a real, busy workload; it can't be limited, so decisions are
    // applied to the simulated actuator.
    let (child, addr, token, dir) = daemon_with_one_workload(
        "mode = \"act\"\nsample_every = \"200ms\"\ndecide_every = \"1s\"\nactuator = \"simulated\"\n",
        serde_json::json!({"cpu": 1, "memory": 1}),
        "/",
    );
    let token = token.as_str();
    let mut decisions = serde_json::Value::Null;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(200));
        let (status, text) = send(&addr, "GET", "/v1/decisions", token, "");
        assert_eq!(status, 200, "{text}");
        decisions = serde_json::from_str(&text).unwrap();
        let cpu = |d: &serde_json::Value| d["decision"]["kind"] == "cpu";
        if decisions["decisions"].as_array().unwrap().iter().any(cpu) {
            break;
        }
    }
    // The cpu decision (the root's IOPS are above the 1-IOPS least rate of a reservation
    // without IOPS, so they are held there: another decision, "censored").
    let list = decisions["decisions"].as_array().unwrap();
    let d = list
        .iter()
        .find(|d| d["decision"]["kind"] == "cpu")
        .unwrap_or_else(|| panic!("no cpu decision in 20 s: {decisions}"));
    assert_eq!(d["mode"], "act", "{d}");
    assert_eq!(d["decision"]["workload"], "/", "{d}");
    assert_eq!(d["decision"]["reason"], "scale_up", "{d}");
    assert!(
        d["decision"]["why"].as_str().unwrap().contains("forecast"),
        "{d}"
    );
    // Acting means the ledger holds more than the 1-shard reservation for it now.
    let (_, market) = send(&addr, "GET", "/v1/market", token, "");
    let market: serde_json::Value = serde_json::from_str(&market).unwrap();
    let leased = &market["hosts"][0]["leased"];
    assert!(
        leased["memory"].as_u64().unwrap() + leased["cpu"].as_u64().unwrap() > 0,
        "{market}"
    );
    interrupt_and_wait(child);
    let (code, out) = ledger_check(&dir.path().join("data"));
    assert_eq!(code, 0, "{out}");
}

#[test]
#[ignore = "needs root and cgroups with cpu and memory control; CI runs it with --include-ignored"]
fn act_mode_writes_the_entitlement_into_a_real_cgroup() {
    let base = Path::new("/sys/fs/cgroup");
    let name = format!("shardex-e2e-{}", std::process::id());
    // (directory, file with the cpu limit, file with the memory limit) per layout.
    let (dirs, cpu_file, memory_file) = if base.join("cgroup.controllers").exists() {
        let d = base.join(&name);
        (vec![d.clone()], d.join("cpu.max"), d.join("memory.max"))
    } else if base.join("cpu/cpu.cfs_period_us").exists()
        && base.join("memory/memory.limit_in_bytes").exists()
    {
        let (c, m) = (
            base.join("cpu").join(&name),
            base.join("memory").join(&name),
        );
        (
            vec![c.clone(), m.clone()],
            c.join("cpu.cfs_quota_us"),
            m.join("memory.limit_in_bytes"),
        )
    } else {
        panic!("no cgroup filesystem with cpu and memory control here");
    };
    let _guard = TestCgroup(dirs.clone());
    for d in &dirs {
        if let Err(e) = std::fs::create_dir(d) {
            panic!("can't create the cgroup {}: {e}", d.display());
        }
    }
    if !cpu_file.exists() || !memory_file.exists() {
        panic!("the cpu and memory controllers are not enabled for new cgroups");
    }
    let before = std::fs::read_to_string(&cpu_file).unwrap();
    // 50 cpu shards (500 millicores) and 8 memory shards (128 MiB), held by the workload.
    let (child, addr, token, _dir) = daemon_with_one_workload(
        "mode = \"act\"\nsample_every = \"200ms\"\ndecide_every = \"1s\"\n",
        serde_json::json!({"cpu": 50, "memory": 8}),
        &name,
    );
    let post = |body: serde_json::Value| {
        let (status, text) = send(&addr, "POST", "/v1/actions", &token, &body.to_string());
        assert_eq!(status, 200, "{text}");
    };
    post(serde_json::json!({
        "action": "allocate", "tenant": 1, "workload": 1, "share": {"cpu": 50, "memory": 8}
    }));
    // The cgroup is idle, but the engine scales down only after 15 minutes: the next ticks
    // write the ledger's allocation to the kernel as it is.
    let mut limits = (String::new(), String::new());
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(200));
        limits = (
            std::fs::read_to_string(&cpu_file).unwrap(),
            std::fs::read_to_string(&memory_file).unwrap(),
        );
        if limits.0 != before {
            break;
        }
    }
    interrupt_and_wait(child);
    let quota: u64 = limits
        .0
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "no cpu limit was written in 20 s: {} holds {:?}",
                cpu_file.display(),
                limits.0
            )
        });
    let memory: u64 = limits.1.trim().parse().unwrap();
    // 500 millicores are 50 ms of quota per 100 ms period; 8 shards of 16 MiB are 128 MiB.
    assert_eq!(quota, 50_000, "{limits:?}");
    assert_eq!(memory, 128 << 20, "{limits:?}");
}

#[test]
#[ignore = "needs qemu-system-x86_64; CI installs it and runs this with --include-ignored"]
fn act_mode_hot_plugs_a_real_vm_s_vcpus_over_qmp() {
    let vm_dir = tempfile::tempdir().unwrap();
    let qemu = shardex_host::testkit::PausedQemu::spawn(vm_dir.path(), 4);
    let sock = qemu.socket.clone();
    // The VM is not a cgroup, so only the simulated actuator would do for the rest; its cpu
    // and memory go over QMP.
    let engine = format!(
        "mode = \"act\"\nsample_every = \"200ms\"\ndecide_every = \"1s\"\nactuator = \"simulated\"\nqmp_sockets = {{ \"vm-1\" = \"{}\" }}\n",
        sock.display()
    );
    let (child, addr, token, _dir) = daemon_with_one_workload(
        &engine,
        serde_json::json!({"cpu": 120, "memory": 8}),
        "vm-1",
    );
    let (status, text) = send(
        &addr,
        "POST",
        "/v1/actions",
        &token,
        &serde_json::json!({
            "action": "allocate", "tenant": 1, "workload": 1, "share": {"cpu": 120, "memory": 8}
        })
        .to_string(),
    );
    assert_eq!(status, 200, "{text}");
    // 120 shards of 10 millicores are 1.2 cores (the host needs only 2): 2 vCPUs once a tick
    // has applied it.
    let mut vcpus = 0;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(200));
        vcpus = qemu.vcpus();
        if vcpus == 2 {
            break;
        }
    }
    interrupt_and_wait(child);
    assert_eq!(vcpus, 2, "the VM has {vcpus} vCPUs");
}

#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    // Issue 12, item 9: `shardex ledger check | head` panicked on the broken pipe. Here the
    // reading end is closed before the command starts, so its first write meets EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(["config", "defaults"])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_libvirt_domain_needs_a_build_with_libvirt_and_a_name() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["workload", "add", "--libvirt", "web 1"]);
    assert!(e.contains("without spaces"), "{e}");
    let e = run(&["workload", "add", "--libvirt", "web-1", "--pid", "1"]);
    assert!(e.contains("cannot be used with"), "{e}");
    if cfg!(not(feature = "libvirt")) {
        let e = run(&["workload", "add", "--libvirt", "web-1"]);
        assert!(e.contains("--features libvirt"), "{e}");
    }
}

#[test]
fn a_broker_with_a_bad_database_url_says_so_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["broker", "--db", "not-a-url", "--listen", "127.0.0.1:0"])
        .arg("--admin-token")
        .arg(dir.path().join("admin.token"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not open the ledger in not-a-url"),
        "{err}"
    );
    // Nothing was made for a broker that never started.
    assert!(!dir.path().join("admin.token").exists());
}
