//! What the binary's end-to-end tests share: starting `shardex run`, talking HTTP to it,
//! stopping it, and cgroups made for a test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    dead_code,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_shardex");

/// What a daemon has written to stderr so far.
pub type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Each running daemon's log (by process id), shown when it does not stop cleanly.
static LOGS: std::sync::Mutex<Vec<(u32, Log)>> = std::sync::Mutex::new(Vec::new());

pub fn log_of(pid: u32) -> String {
    LOGS.lock()
        .unwrap()
        .iter()
        .find(|(p, _)| *p == pid)
        .map(|(_, log)| log.lock().unwrap().join("\n"))
        .unwrap_or_default()
}

/// Starts `shardex run` on an ephemeral port; returns the child and the address it bound.
pub fn start(data: &Path) -> (Child, String) {
    start_with(data, &[])
}

/// [`start`] with more arguments for `shardex run` (its log, in either format, names the
/// address).
pub fn start_with(data: &Path, args: &[&str]) -> (Child, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .args(args);
    spawn_listening(cmd)
}

/// Starts `cmd` (a shardex that serves HTTP), keeps its log, and returns it with the address
/// its log says it listens on.
pub fn spawn_listening(mut cmd: Command) -> (Child, String) {
    let mut child = cmd
        .env("SHARDEX_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Log::default();
    LOGS.lock().unwrap().push((child.id(), log.clone()));
    // The log is read on its own thread (it keeps draining stderr, so the child never blocks
    // on a full pipe); the address comes back from it, or nothing within 30 s.
    let (found, address) = std::sync::mpsc::channel();
    let kept = log.clone();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line.clone());
            let addr = line
                .split("listen=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .or_else(|| {
                    line.split("\"listen\":\"")
                        .nth(1)
                        .and_then(|rest| rest.split('"').next())
                });
            if let (Some(addr), Some(tx)) = (addr, found.as_ref()) {
                let _ = tx.send(addr.to_string());
                found = None;
            }
        }
    });
    let Ok(addr) = address.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        let said = log.lock().unwrap().join("\n");
        panic!("shardex never said where it listens (or exited):\n{said}");
    };
    (child, addr)
}

pub fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

pub fn interrupt_and_wait(mut child: Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let asked = std::time::Instant::now();
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            eprintln!("shardex run stopped {:?} after Ctrl-C", asked.elapsed());
            if std::env::var_os("SHOW_LOG").is_some() {
                eprintln!("{}", log_of(child.id()));
            }
            assert!(
                status.success(),
                "shardex run exited with {status}; its log:\n{}",
                log_of(child.id())
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("shardex run did not stop within 30 s of Ctrl-C");
}

pub fn ledger_check(data: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["ledger", "check", "--data"])
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

pub fn send(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A daemon with `[engine]` set to `engine`, one tenant "ops" holding a premium reservation of
/// `vector` for an hour, and a workload `name` bound to it. Returns the daemon, its address,
/// the admin token and the folder that holds its data.
pub fn daemon_with_one_workload(
    engine: &str,
    vector: serde_json::Value,
    name: &str,
) -> (Child, String, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        dir.path().join("shardex.toml"),
        format!("[engine]\n{engine}"),
    )
    .unwrap();
    let (child, addr) = start(&data);
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let token = token.trim().to_string();
    let post = |body: serde_json::Value| {
        let (status, text) = send(&addr, "POST", "/v1/actions", &token, &body.to_string());
        assert_eq!(status, 200, "{text}");
    };
    post(serde_json::json!({"action": "create_tenant", "name": "ops"}));
    let start_ms = wall_ms() + 300;
    post(serde_json::json!({
        "action": "create_reservation", "tenant": 1, "host": 1, "vector": vector,
        "window": {"start": start_ms, "end": start_ms + 3_600_000}, "tier": "premium"
    }));
    std::thread::sleep(Duration::from_millis(400));
    post(
        serde_json::json!({"action": "bind_workload", "tenant": 1, "reservation": 1, "name": name}),
    );
    (child, addr, token, dir)
}

/// Child cgroups made for a test, removed when dropped.
pub struct TestCgroup(pub Vec<std::path::PathBuf>);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Polls `f` every 100 ms until it holds or `within` has passed; whether it held.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + within;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// The directory of the cgroup `rel` in `controller`'s v1 hierarchy, or in the unified v2 one.
pub fn cgroup_dir(controller: &str, rel: &str) -> std::path::PathBuf {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        base.join(rel)
    } else {
        base.join(controller).join(rel)
    }
}

/// The number after `key ` on its own line of a flat-keyed cgroup file.
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Like [`send`], with extra header lines (e.g. `Idempotency-Key: k`); returns the status,
/// the headers and the body.
pub fn send_with(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// A child process stopped when dropped, so that a test that fails leaves nothing running:
/// SIGTERM (a launcher then takes its workload out, a daemon closes its store), then SIGKILL
/// after `grace`.
pub struct Stopping {
    child: Option<Child>,
    grace: Duration,
}

impl Stopping {
    pub fn new(child: Child, grace: Duration) -> Self {
        Self {
            child: Some(child),
            grace,
        }
    }

    /// The process, no longer stopped on drop.
    pub fn take(mut self) -> Child {
        self.child.take().unwrap()
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Stopping {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let end = std::time::Instant::now() + self.grace;
        while std::time::Instant::now() < end {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
