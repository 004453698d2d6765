//! The QMP actuator: a QEMU/KVM VM's cpu and memory allocation applied live over its QMP
//! socket (`engine.qmp_sockets`, workload name → socket path). Memory: the balloon target
//! (`balloon`), read back as what the guest actually holds (`query-balloon`). Cpu: whole vCPUs
//! (`ceil(millicores / 1000)`), plugged into the free slots `query-hotpluggable-cpus` lists
//! (`device_add`) or unplugged from the ones shardex plugged (`device_del`, which needs the
//! guest's cooperation), read back by counting `query-cpus-fast`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use shardex_core::ResourceKind;
use shardex_core::domain::WorkloadId;
use shardex_core::ports::{Actuator, Applied, KindState, Kinds, Limits};

mod error;

pub use error::QmpError;

/// How long one QMP exchange may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Ids of the vCPUs shardex plugs start with this, so it only ever unplugs its own.
const CPU_ID_PREFIX: &str = "shardex-cpu";

/// One QMP session, capabilities negotiated.
struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Session {
    fn open(path: &std::path::Path) -> Result<Self, QmpError> {
        let connect = |source| QmpError::Connect {
            path: path.to_path_buf(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(connect)?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
            .map_err(connect)?;
        let writer = stream.try_clone().map_err(connect)?;
        let mut session = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = session.message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::NotQmp {
                path: path.display().to_string(),
                greeting,
            });
        }
        session.execute("qmp_capabilities", None)?;
        Ok(session)
    }

    /// The next message that is not an asynchronous event.
    fn message(&mut self) -> Result<Value, QmpError> {
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|source| QmpError::Io {
                    what: "reading from",
                    source,
                })?;
            if n == 0 {
                return Err(QmpError::Closed);
            }
            let v: Value = serde_json::from_str(&line).map_err(|source| QmpError::NotJson {
                line: line.clone(),
                source,
            })?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    }

    fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .map_err(|source| QmpError::Io {
                what: "writing to",
                source,
            })?;
        let reply = self.message()?;
        if let Some(err) = reply.get("error") {
            let class = err["class"].as_str().unwrap_or("no class").to_string();
            let hint = if class == "DeviceNotActive" && command == "query-balloon" {
                ": start the VM with a balloon device (-device virtio-balloon-pci)"
            } else {
                ""
            };
            return Err(QmpError::Command {
                command: command.to_string(),
                class,
                desc: err["desc"].as_str().unwrap_or("no description").to_string(),
                hint,
            });
        }
        Ok(reply.get("return").cloned().unwrap_or(Value::Null))
    }

    fn balloon_actual(&mut self) -> Result<u64, QmpError> {
        self.execute("query-balloon", None)?
            .get("actual")
            .and_then(Value::as_u64)
            .ok_or_else(|| QmpError::Answer("query-balloon answered without \"actual\"".into()))
    }

    fn vcpus(&mut self) -> Result<u64, QmpError> {
        Ok(self
            .execute("query-cpus-fast", None)?
            .as_array()
            .map_or(0, |a| a.len() as u64))
    }

    /// Plugs or unplugs vCPUs towards `want`.
    fn set_vcpus(&mut self, want: u64) -> Result<(), QmpError> {
        let slots = self.execute("query-hotpluggable-cpus", None)?;
        let slots = slots.as_array().cloned().unwrap_or_default();
        let plugged = slots.iter().filter(|s| s.get("qom-path").is_some()).count() as u64;
        if want > plugged {
            // Free slots, in the order of their properties, so plugging is deterministic.
            let mut free: Vec<&Value> = slots
                .iter()
                .filter(|s| s.get("qom-path").is_none())
                .collect();
            free.sort_by_key(|s| s["props"].to_string());
            if free.len() < usize::try_from(want - plugged).unwrap_or(usize::MAX) {
                tracing::warn!(
                    want,
                    plugged,
                    free = free.len(),
                    "the VM has fewer vCPU slots than its allocation (start it with a higher maxcpus)"
                );
            }
            for slot in free
                .into_iter()
                .take(usize::try_from(want - plugged).unwrap_or(0))
            {
                let props = slot["props"].as_object().cloned().unwrap_or_default();
                let id = props
                    .iter()
                    .map(|(_, v)| v.to_string())
                    .fold(CPU_ID_PREFIX.to_string(), |id, v| format!("{id}-{v}"));
                let mut args = json!({ "driver": slot["type"], "id": id });
                for (k, v) in props {
                    args[k] = v;
                }
                self.execute("device_add", Some(args))?;
            }
        } else if want < plugged {
            // Only vCPUs shardex plugged can go; the boot ones stay.
            let ours = self.execute("query-cpus-fast", None)?;
            let mut ids: Vec<String> = ours
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    let path = c["qom-path"].as_str()?;
                    let id = path.rsplit('/').next()?;
                    id.starts_with(CPU_ID_PREFIX).then(|| id.to_string())
                })
                .collect();
            ids.sort();
            let n = usize::try_from(plugged - want).unwrap_or(0);
            for id in ids.into_iter().rev().take(n) {
                // An x86 vCPU leaves only once the guest's ACPI has taken over CPU hotplug; until
                // then QEMU refuses. That is no reason to undo the memory change: the read-back
                // shows the vCPUs still there, and the next tick asks again.
                if let Err(e) = self.execute("device_del", Some(json!({ "id": id }))) {
                    tracing::warn!(error = %e, "a vCPU could not be unplugged yet");
                }
            }
        }
        Ok(())
    }
}

/// Applies VMs' cpu and memory allocations over QMP.
#[derive(Debug, Clone)]
pub struct QmpActuator {
    sockets: BTreeMap<String, PathBuf>,
}

impl QmpActuator {
    /// For these VMs (workload name → QMP socket path).
    pub fn new(sockets: BTreeMap<String, PathBuf>) -> Self {
        Self { sockets }
    }
}

impl QmpActuator {
    /// One session with the VM `name`, for the kinds asked that it manages: each kind's
    /// outcome on its own.
    fn session(
        &self,
        name: &str,
        kinds: Kinds,
        mut f: impl FnMut(&mut Session, ResourceKind) -> Result<Option<u64>, QmpError>,
    ) -> Applied {
        let mine: Kinds =
            std::array::from_fn(|i| kinds[i] && self.manages(name, ResourceKind::ALL[i]));
        if !mine.iter().any(|&m| m) {
            return Applied::default();
        }
        let opened = self
            .sockets
            .get(name)
            .ok_or_else(|| QmpError::NotMapped(name.to_string()))
            .and_then(|path| Session::open(path));
        let mut s = match opened {
            Ok(s) => s,
            Err(e) => return Applied::failed(mine, &e.into()),
        };
        let mut out = Applied::default();
        // Memory first: the balloon answering is what tells a VM that can be resized.
        for kind in [ResourceKind::Memory, ResourceKind::Cpu] {
            if mine[kind.index()] {
                out.set(
                    kind,
                    match f(&mut s, kind) {
                        Ok(v) => KindState::InForce(v),
                        Err(e) => KindState::Failed(e.into()),
                    },
                );
            }
        }
        out
    }
}

impl Session {
    /// The VM's memory without the balloon: what "no limit" gives it back.
    fn base_memory(&mut self) -> Result<u64, QmpError> {
        self.execute("query-memory-size-summary", None)?
            .get("base-memory")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                QmpError::Answer(
                    "query-memory-size-summary answered without \"base-memory\"".into(),
                )
            })
    }

    /// Every vCPU slot the VM has, plugged or not.
    fn slots(&mut self) -> Result<u64, QmpError> {
        Ok(self
            .execute("query-hotpluggable-cpus", None)?
            .as_array()
            .map_or(0, |a| a.len() as u64))
    }

    fn read(&mut self, kind: ResourceKind) -> Result<Option<u64>, QmpError> {
        match kind {
            // What the guest actually holds, which follows the target only as fast as its
            // balloon driver gives memory back.
            ResourceKind::Memory => self.balloon_actual().map(Some),
            _ => Ok(Some(self.vcpus()?.saturating_mul(1000))),
        }
    }
}

impl Actuator for QmpActuator {
    fn apply(&mut self, _: WorkloadId, name: &str, limits: &Limits, kinds: Kinds) -> Applied {
        self.session(name, kinds, |s, kind| {
            match kind {
                ResourceKind::Memory => {
                    let target = match limits.hard(kind) {
                        Some(0) => {
                            return Err(QmpError::Answer(
                                "a memory limit of 0 would take all of the guest's memory".into(),
                            ));
                        }
                        Some(b) => b,
                        None => s.base_memory()?,
                    };
                    s.balloon_actual()?;
                    s.execute("balloon", Some(json!({ "value": target })))?;
                }
                _ => {
                    let vcpus = match limits.hard(kind) {
                        Some(m) => m.div_ceil(1000).max(1),
                        None => s.slots()?,
                    };
                    s.set_vcpus(vcpus)?;
                }
            }
            s.read(kind)
        })
    }

    fn read(&mut self, _: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.session(name, kinds, |s, kind| s.read(kind))
    }

    fn clear(&mut self, _: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.session(name, kinds, |s, kind| {
            // The guest gets its memory back; its vCPUs stay as they are (unplugging is the
            // guest's to accept, and plugging more than it booted with is not "no limit").
            if kind == ResourceKind::Memory {
                let base = s.base_memory()?;
                s.execute("balloon", Some(json!({ "value": base })))?;
            }
            s.read(kind)
        })
    }

    fn manages(&self, name: &str, kind: ResourceKind) -> bool {
        matches!(kind, ResourceKind::Cpu | ResourceKind::Memory) && self.sockets.contains_key(name)
    }

    fn expected(&self, _: &str, kind: ResourceKind, hard: Option<u64>) -> Option<u64> {
        match kind {
            // Whole vCPUs.
            ResourceKind::Cpu => hard.map(|m| m.div_ceil(1000).max(1) * 1000),
            _ => hard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardex_core::ports::ALL_KINDS;

    const W: WorkloadId = WorkloadId(9);

    fn lim(cpu: u64, memory: u64) -> Limits {
        Limits {
            hard: [Some(cpu), Some(memory), None, None],
            soft: [0; 4],
        }
    }

    fn why(a: &Applied, kind: ResourceKind) -> String {
        match a.get(kind) {
            KindState::Failed(e) => e.to_string(),
            other => panic!("not a failure: {other:?}"),
        }
    }

    fn got(a: &Applied, kind: ResourceKind) -> u64 {
        a.in_force(kind).flatten().expect("read back")
    }

    #[test]
    fn only_configured_vms_are_managed_and_errors_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = QmpActuator::new(BTreeMap::from([(
            "vm-1".to_string(),
            dir.path().join("absent.sock"),
        )]));
        assert!(a.manages("vm-1", ResourceKind::Memory) && a.manages("vm-1", ResourceKind::Cpu));
        assert!(!a.manages("vm-1", ResourceKind::Net) && !a.manages("vm-2", ResourceKind::Cpu));
        assert_eq!(
            a.apply(W, "vm-2", &lim(1000, 1 << 28), ALL_KINDS),
            Applied::default(),
            "an unlisted VM is not managed"
        );
        let e = why(
            &a.apply(W, "vm-1", &lim(1000, 1 << 28), ALL_KINDS),
            ResourceKind::Cpu,
        );
        assert!(e.contains("absent.sock"), "{e}");
        assert_eq!(
            a.expected("vm-1", ResourceKind::Cpu, Some(1500)),
            Some(2000)
        );
    }

    #[test]
    fn a_peer_that_is_not_qmp_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(b"{\"hello\": 1}\n").unwrap();
        });
        let mut a = QmpActuator::new(BTreeMap::from([("vm".to_string(), path)]));
        let e = why(
            &a.apply(W, "vm", &lim(1000, 1 << 28), ALL_KINDS),
            ResourceKind::Memory,
        );
        assert!(e.contains("did not greet as QMP"), "{e}");
        server.join().unwrap();
    }

    #[test]
    #[ignore = "needs qemu-system-x86_64; CI installs it and runs this with --include-ignored"]
    fn a_real_qemu_gets_vcpus_plugged_and_its_balloon_target_set() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = crate::testkit::PausedQemu::spawn(dir.path(), 4);
        let sock = qemu.socket.clone();
        let mut a = QmpActuator::new(BTreeMap::from([("vm".to_string(), sock)]));
        // 2.5 cores are 3 vCPUs: two plugged live next to the boot one.
        let in_force = a.apply(W, "vm", &lim(2500, 128 << 20), ALL_KINDS);
        assert_eq!(got(&in_force, ResourceKind::Cpu), 3000);
        // A paused VM has no balloon driver running: the target is set, the guest still holds
        // all of its memory, and the read-back says so rather than echo the target.
        assert_eq!(got(&in_force, ResourceKind::Memory), 256 << 20);
        // Idempotent: the same limits plug nothing more.
        let again = a.apply(W, "vm", &lim(2500, 128 << 20), ALL_KINDS);
        assert_eq!(got(&again, ResourceKind::Cpu), 3000);
        // More than the VM has slots for: all 4, and the read-back shows 4.
        let most = a.apply(W, "vm", &lim(8000, 128 << 20), ALL_KINDS);
        assert_eq!(got(&most, ResourceKind::Cpu), 4000);
        // Fewer: x86 vCPUs leave only once a guest has taken over CPU hotplug, and this
        // paused VM runs none, so QEMU refuses the unplug; memory is applied all the same and
        // the read-back honestly counts 4.
        let fewer = a.apply(W, "vm", &lim(1000, 128 << 20), ALL_KINDS);
        assert_eq!(got(&fewer, ResourceKind::Cpu), 4000);
        assert_eq!(got(&a.read(W, "vm", ALL_KINDS), ResourceKind::Cpu), 4000);
        // A zero memory limit is refused for memory alone.
        let zero = a.apply(W, "vm", &lim(4000, 0), ALL_KINDS);
        assert!(why(&zero, ResourceKind::Memory).contains("memory limit of 0"));
        assert_eq!(got(&zero, ResourceKind::Cpu), 4000);
        // Unbinding gives the guest its memory back.
        assert_eq!(
            got(&a.clear(W, "vm", ALL_KINDS), ResourceKind::Memory),
            256 << 20
        );
    }
}
