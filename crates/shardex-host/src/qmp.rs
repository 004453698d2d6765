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
use shardex_core::ports::{Actuator, ActuatorError};
use shardex_core::shard::PhysicalVector;

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
    fn open(path: &std::path::Path) -> Result<Self, String> {
        let stream = UnixStream::connect(path)
            .map_err(|e| format!("connecting to QMP at {}: {e}", path.display()))?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
            .map_err(|e| format!("QMP at {}: {e}", path.display()))?;
        let writer = stream
            .try_clone()
            .map_err(|e| format!("QMP at {}: {e}", path.display()))?;
        let mut session = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = session.message()?;
        if greeting.get("QMP").is_none() {
            return Err(format!(
                "{} did not greet as QMP: {greeting}",
                path.display()
            ));
        }
        session.execute("qmp_capabilities", None)?;
        Ok(session)
    }

    /// The next message that is not an asynchronous event.
    fn message(&mut self) -> Result<Value, String> {
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| format!("reading from QMP: {e}"))?;
            if n == 0 {
                return Err("QMP closed the connection".into());
            }
            let v: Value = serde_json::from_str(&line)
                .map_err(|e| format!("QMP sent something that is not JSON ({e}): {line:?}"))?;
            if v.get("event").is_none() {
                return Ok(v);
            }
        }
    }

    fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, String> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| format!("writing to QMP: {e}"))?;
        let reply = self.message()?;
        if let Some(err) = reply.get("error") {
            return Err(format!(
                "QMP {command} failed: {} ({})",
                err["desc"].as_str().unwrap_or("no description"),
                err["class"].as_str().unwrap_or("no class")
            ));
        }
        Ok(reply.get("return").cloned().unwrap_or(Value::Null))
    }

    fn balloon_actual(&mut self) -> Result<u64, String> {
        self.execute("query-balloon", None)
            .map_err(|e| {
                if e.contains("DeviceNotActive") {
                    format!("{e}: start the VM with a balloon device (-device virtio-balloon-pci)")
                } else {
                    e
                }
            })?
            .get("actual")
            .and_then(Value::as_u64)
            .ok_or_else(|| "query-balloon answered without \"actual\"".to_string())
    }

    fn vcpus(&mut self) -> Result<u64, String> {
        Ok(self
            .execute("query-cpus-fast", None)?
            .as_array()
            .map_or(0, |a| a.len() as u64))
    }

    /// Plugs or unplugs vCPUs towards `want`.
    fn set_vcpus(&mut self, want: u64) -> Result<(), String> {
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

impl Actuator for QmpActuator {
    fn apply(
        &mut self,
        workload: WorkloadId,
        name: &str,
        allocation: PhysicalVector,
    ) -> Result<PhysicalVector, ActuatorError> {
        let fail = |reason: String| ActuatorError { workload, reason };
        let path = self
            .sockets
            .get(name)
            .ok_or_else(|| fail(format!("no QMP socket is configured for {name:?}")))?;
        let bytes = allocation.get(ResourceKind::Memory);
        if bytes == 0 {
            return Err(fail(
                "a memory allocation of 0 would take all of the guest's memory".into(),
            ));
        }
        let vcpus = allocation.get(ResourceKind::Cpu).div_ceil(1000).max(1);
        let mut s = Session::open(path).map_err(&fail)?;
        // Checked before anything changes: the balloon device answers, and what it holds now
        // is what is put back if the cpu change is refused.
        let before = s.balloon_actual().map_err(&fail)?;
        s.execute("balloon", Some(json!({ "value": bytes })))
            .map_err(&fail)?;
        if let Err(e) = s.set_vcpus(vcpus) {
            if let Err(undo) = s.execute("balloon", Some(json!({ "value": before }))) {
                tracing::error!(error = %undo, "could not put the balloon target back");
            }
            return Err(fail(e));
        }
        let memory = s.balloon_actual().map_err(&fail)?;
        let cpu = s.vcpus().map_err(&fail)?.saturating_mul(1000);
        Ok(PhysicalVector([cpu, memory, 0, 0]))
    }

    fn manages(&self, name: &str, kind: ResourceKind) -> bool {
        matches!(kind, ResourceKind::Cpu | ResourceKind::Memory) && self.sockets.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    const W: WorkloadId = WorkloadId(9);

    #[test]
    fn only_configured_vms_are_managed_and_errors_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = QmpActuator::new(BTreeMap::from([(
            "vm-1".to_string(),
            dir.path().join("absent.sock"),
        )]));
        assert!(a.manages("vm-1", ResourceKind::Memory) && a.manages("vm-1", ResourceKind::Cpu));
        assert!(!a.manages("vm-1", ResourceKind::Net) && !a.manages("vm-2", ResourceKind::Cpu));
        let e = a
            .apply(W, "vm-2", PhysicalVector([1000, 1 << 28, 0, 0]))
            .unwrap_err();
        assert!(e.reason.contains("no QMP socket"), "{e}");
        let e = a
            .apply(W, "vm-1", PhysicalVector([1000, 1 << 28, 0, 0]))
            .unwrap_err();
        assert!(e.reason.contains("absent.sock"), "{e}");
        let e = a
            .apply(W, "vm-1", PhysicalVector([1000, 0, 0, 0]))
            .unwrap_err();
        assert!(e.reason.contains("memory allocation of 0"), "{e}");
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
        let e = a
            .apply(W, "vm", PhysicalVector([1000, 1 << 28, 0, 0]))
            .unwrap_err();
        assert!(e.reason.contains("did not greet as QMP"), "{e}");
        server.join().unwrap();
    }

    /// A real QEMU, paused before its first instruction (no guest needed), killed when dropped.
    struct Qemu(Child);

    impl Drop for Qemu {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_real_qemu_gets_vcpus_plugged_and_its_balloon_target_set() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("vm.qmp");
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-machine",
                "q35,accel=tcg",
                "-smp",
                "1,maxcpus=4",
                "-m",
                "256M",
            ])
            .args(["-nodefaults", "-display", "none", "-S"])
            .args(["-device", "virtio-balloon-pci,id=balloon0", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(child) = child else {
            eprintln!("skipped: no qemu-system-x86_64 here");
            return;
        };
        let mut qemu = Qemu(child);
        for _ in 0..100 {
            if sock.exists() {
                break;
            }
            if let Ok(Some(status)) = qemu.0.try_wait() {
                panic!("qemu exited with {status} before opening its QMP socket");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut a = QmpActuator::new(BTreeMap::from([("vm".to_string(), sock)]));
        // 2.5 cores are 3 vCPUs: two plugged live next to the boot one.
        let in_force = a
            .apply(W, "vm", PhysicalVector([2500, 128 << 20, 0, 0]))
            .unwrap();
        assert_eq!(in_force.get(ResourceKind::Cpu), 3000);
        // A paused VM has no balloon driver running: the target is set, the guest still holds
        // all of its memory, and the read-back says so rather than echo the target.
        assert_eq!(in_force.get(ResourceKind::Memory), 256 << 20);
        // Idempotent: the same allocation plugs nothing more.
        let again = a
            .apply(W, "vm", PhysicalVector([2500, 128 << 20, 0, 0]))
            .unwrap();
        assert_eq!(again.get(ResourceKind::Cpu), 3000);
        // More than the VM has slots for: all 4, and the read-back shows 4.
        let most = a
            .apply(W, "vm", PhysicalVector([8000, 128 << 20, 0, 0]))
            .unwrap();
        assert_eq!(most.get(ResourceKind::Cpu), 4000);
        // Fewer: x86 vCPUs leave only once a guest has taken over CPU hotplug, and this
        // paused VM runs none, so QEMU refuses the unplug; the actuation still succeeds for
        // memory and the read-back honestly counts 4.
        let fewer = a
            .apply(W, "vm", PhysicalVector([1000, 128 << 20, 0, 0]))
            .unwrap();
        assert_eq!(fewer.get(ResourceKind::Cpu), 4000);
    }
}
