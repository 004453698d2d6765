//! What the adapters' tests share: cgroup trees laid out in a folder as the kernel has them,
//! and a real QEMU paused before its first instruction (no guest image needed) with a QMP
//! socket, killed when dropped, and a bare QMP query. Compiled for
//! this crate's tests and, with the `testkit` feature, for other crates' tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub mod guest;

/// A real QEMU (TCG), paused, with one vCPU of `max_cpus` slots, 256 MiB, a virtio balloon
/// (`balloon0`) and its QMP socket; killed when dropped.
pub struct PausedQemu {
    child: Child,
    /// Its QMP socket.
    pub socket: PathBuf,
}

impl PausedQemu {
    /// Starts one whose socket is `dir/vm.qmp`, and waits for the socket (5 s at most).
    pub fn spawn(dir: &Path, max_cpus: u32) -> Self {
        Self::spawn_as(dir, "vm", max_cpus, &["-S"])
    }

    /// The same machine with its socket at `dir/<name>.qmp` and `extra` arguments (e.g. none to
    /// run at once, or `-incoming defer` to wait for a migration).
    pub fn spawn_as(dir: &Path, name: &str, max_cpus: u32, extra: &[&str]) -> Self {
        let socket = dir.join(format!("{name}.qmp"));
        let child = Command::new("qemu-system-x86_64")
            .args(["-machine", "q35,accel=tcg", "-m", "256M", "-smp"])
            .arg(format!("1,maxcpus={max_cpus}"))
            .args(["-nodefaults", "-display", "none"])
            .args(extra)
            .args(["-device", "virtio-balloon-pci,id=balloon0", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("no qemu-system-x86_64 here: {e}"));
        let mut vm = Self { child, socket };
        for _ in 0..100 {
            if vm.socket.exists() {
                return vm;
            }
            if let Ok(Some(status)) = vm.child.try_wait() {
                panic!("qemu exited with {status} before opening its QMP socket");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("qemu opened no QMP socket within 5 s");
    }

    /// QEMU's `return` to `command` (no arguments), asked on a session of its own.
    pub fn query(&self, command: &str) -> serde_json::Value {
        qmp_once(&self.socket, command, &serde_json::Value::Null)
    }

    /// Whether its process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// How many vCPUs it has now.
    pub fn vcpus(&self) -> usize {
        self.query("query-cpus-fast").as_array().map_or(0, Vec::len)
    }
}

impl Drop for PausedQemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// QEMU's `return` to `command` (with `arguments` unless null), on a QMP session of its own.
pub fn qmp_once(socket: &Path, command: &str, arguments: &serde_json::Value) -> serde_json::Value {
    let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream).lines();
    let greeting = lines.next().unwrap().unwrap();
    assert!(greeting.contains("QMP"), "{greeting}");
    let mut reply = |msg: serde_json::Value| -> serde_json::Value {
        writer.write_all(format!("{msg}\n").as_bytes()).unwrap();
        loop {
            let v: serde_json::Value =
                serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
            if v.get("event").is_none() {
                return v;
            }
        }
    };
    reply(serde_json::json!({ "execute": "qmp_capabilities" }));
    let mut msg = serde_json::json!({ "execute": command });
    if !arguments.is_null() {
        msg["arguments"] = arguments.clone();
    }
    let answer = reply(msg);
    answer
        .get("return")
        .cloned()
        .unwrap_or_else(|| panic!("QMP {command} failed: {answer}"))
}

/// Hard limits of cpu (millicores), memory (bytes) and IOPS, no soft ones.
pub fn limits(
    cpu: Option<u64>,
    memory: Option<u64>,
    iops: Option<u64>,
) -> shardex_core::ports::Limits {
    shardex_core::ports::Limits {
        hard: [cpu, memory, None, iops],
        soft: [0; 4],
    }
}

/// The limit `a` read back in force for `kind`; panics naming what it was otherwise.
pub fn in_force(a: &shardex_core::ports::Applied, kind: shardex_core::ResourceKind) -> u64 {
    match a.get(kind) {
        shardex_core::ports::KindState::InForce(Some(v)) => *v,
        other => panic!("{kind}: not in force: {other:?}"),
    }
}

/// A laid-out v2 tree with the cgroup `name`, files as the kernel has them.
pub fn laid_out_v2(base: &Path, name: &str) -> PathBuf {
    std::fs::write(base.join("cgroup.controllers"), "cpu io memory\n").unwrap();
    let cg = base.join(name);
    std::fs::create_dir_all(&cg).unwrap();
    for (f, v) in [
        ("cpu.max", "max 100000\n"),
        ("cpu.weight", "100\n"),
        ("memory.max", "max\n"),
        ("memory.high", "max\n"),
    ] {
        std::fs::write(cg.join(f), v).unwrap();
    }
    cg
}

/// A laid-out v1 tree (cpu and memory hierarchies) with the cgroup `name`.
pub fn laid_out_v1(base: &Path, name: &str) {
    let unlimited = "9223372036854771712\n";
    for (dir, files) in [
        (
            "cpu",
            vec![
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.cfs_quota_us", "-1\n"),
                ("cpu.shares", "1024\n"),
            ],
        ),
        (
            "memory",
            vec![
                ("memory.limit_in_bytes", unlimited),
                ("memory.soft_limit_in_bytes", unlimited),
            ],
        ),
    ] {
        let cg = base.join(dir).join(name);
        std::fs::create_dir_all(&cg).unwrap();
        for (f, v) in files {
            std::fs::write(base.join(dir).join(f), v).unwrap();
            std::fs::write(cg.join(f), v).unwrap();
        }
    }
}
