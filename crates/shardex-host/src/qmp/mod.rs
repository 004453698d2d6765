//! The QMP actuator: a QEMU/KVM VM's allocation applied live over its QMP socket
//! (`engine.qmp_sockets`, workload name → socket path): memory through the balloon
//! (`memory.rs`), cpu as whole vCPUs (`vcpus.rs`), IOPS through QEMU's block throttling
//! (`block.rs`), each read back from QEMU. Bandwidth is tc's, on the VM's tap device. VMs
//! move live between QEMU processes through [`QmpMigrator`] (`migrate.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use shardex_core::ResourceKind;
use shardex_core::domain::WorkloadId;
use shardex_core::ports::{Actuator, Applied, KindState, Kinds, Limits};

mod block;
mod error;
mod memory;
mod migrate;
mod session;
mod vcpus;

pub use error::QmpError;
pub use migrate::{Incoming, QmpMigrator};
use session::Session;

/// Applies VMs' cpu, memory and IOPS allocations over QMP.
#[derive(Debug, Clone)]
pub struct QmpActuator {
    sockets: BTreeMap<String, PathBuf>,
    /// What each VM has at most, learned at each actuation: a limit above it leaves the VM
    /// unlimited, and that is what its read-back shows and what [`Actuator::expected`] says.
    most: Arc<Mutex<BTreeMap<String, Most>>>,
    /// Per VM, its vCPUs as shardex left them (see [`Vcpus`]).
    vcpus: Arc<Mutex<BTreeMap<String, Vcpus>>>,
    /// Whether vCPUs are unplugged to scale a VM down (see [`QmpActuator::with_unplug`]).
    unplug: bool,
    /// The cgroups, to cap a VM's cpu exactly with a quota on its QEMU process (see
    /// [`QmpActuator::with_cpu_quota`]).
    cpu_quota: Option<crate::cgroup::CgroupActuator>,
    /// Per VM, whether its last cpu actuation was capped by that quota.
    capped: Arc<Mutex<BTreeMap<String, bool>>>,
}

/// Only cpu.
const CPU_ONLY: Kinds = [true, false, false, false];

/// What the vCPU rule remembers of a VM between actuations.
#[derive(Debug, Clone, Copy, Default)]
struct Vcpus {
    /// Its QEMU: the QMP socket's inode, new at each start.
    instance: u64,
    /// Whether shardex has unplugged a vCPU from this QEMU.
    unplugged: bool,
    /// The cpu limit last applied and the vCPUs it aimed for.
    aimed: Option<(Option<u64>, u64)>,
}

/// A VM's memory without the balloon, its vCPU slots and its disks.
#[derive(Debug, Clone, Copy)]
struct Most {
    memory: u64,
    vcpus: u64,
    disks: u64,
}

impl QmpActuator {
    /// For these VMs (workload name → QMP socket path).
    pub fn new(sockets: BTreeMap<String, PathBuf>) -> Self {
        Self {
            sockets,
            most: Arc::default(),
            vcpus: Arc::default(),
            unplug: false,
            cpu_quota: None,
            capped: Arc::default(),
        }
    }

    /// Also caps each VM's cpu with a CFS quota on its QEMU process's cgroup, where the VM's
    /// workload is its cgroup (e.g. `machine.slice/vm-1.scope`): vCPUs give it at least its
    /// cores, the quota at most, so the cores in force are its allocation exactly (as libvirt's
    /// `vcpu_quota`). A VM whose name is no cgroup gets vCPUs alone.
    #[must_use]
    pub fn with_cpu_quota(mut self, cgroups: crate::cgroup::CgroupActuator) -> Self {
        self.cpu_quota = Some(cgroups);
        self
    }

    /// `out`'s cpu (the VM's vCPUs) capped by the quota `quota` found for `name`, when there is
    /// one; remembers whether there was.
    fn cap(&self, name: &str, out: &mut Applied, quota: Option<Applied>) {
        let Some(quota) = quota else {
            return;
        };
        let vcpus = match out.get(ResourceKind::Cpu) {
            KindState::InForce(Some(v)) => *v,
            _ => return,
        };
        let capped = match quota.get(ResourceKind::Cpu) {
            KindState::InForce(q) => {
                out.set(
                    ResourceKind::Cpu,
                    KindState::InForce(Some(q.map_or(vcpus, |q| q.min(vcpus)))),
                );
                true
            }
            other => {
                tracing::debug!(vm = name, quota = ?other, "no cgroup to cap this VM's cpu: its vCPUs alone");
                false
            }
        };
        if let Ok(mut c) = self.capped.lock() {
            c.insert(name.to_string(), capped);
        }
    }

    /// Whether to unplug vCPUs when a VM's cpu shrinks (off by default). Off, a VM keeps the
    /// vCPUs it has (its cpu is capped by the quota on its process, where the cgroup actuator
    /// manages that): QEMU 7.2 under TCG crashed, measured here, at the next vCPU plug after an
    /// unplug, whatever the slot. On, an unplug is asked of the guest, and once one was, that
    /// QEMU gets no vCPU plugged again until it restarts (its QMP socket is made anew).
    #[must_use]
    pub fn with_unplug(mut self, unplug: bool) -> Self {
        self.unplug = unplug;
        self
    }

    fn most(&self, name: &str) -> Option<Most> {
        self.most.lock().ok()?.get(name).copied()
    }

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
        for kind in [ResourceKind::Memory, ResourceKind::Cpu, ResourceKind::Iops] {
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
    fn read(&mut self, kind: ResourceKind) -> Result<Option<u64>, QmpError> {
        match kind {
            // What the guest actually holds, which follows the target only as fast as its
            // balloon driver gives memory back.
            ResourceKind::Memory => self.balloon_actual().map(Some),
            ResourceKind::Iops => self.iops(),
            _ => Ok(Some(self.vcpus()?.saturating_mul(1000))),
        }
    }
}

impl QmpActuator {
    /// What QMP applies: memory, vCPUs, IOPS.
    fn apply_qmp(&mut self, name: &str, limits: &Limits, kinds: Kinds) -> Applied {
        let most = Arc::clone(&self.most);
        let vcpus_state = Arc::clone(&self.vcpus);
        let unplug = self.unplug;
        let instance = self
            .sockets
            .get(name)
            .and_then(|p| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).ok()?).into());
        self.session(name, kinds, |s, kind| {
            let vm = Most {
                memory: s.base_memory()?,
                vcpus: s.slots()?,
                disks: s.disks()?,
            };
            if let Ok(mut m) = most.lock() {
                m.insert(name.to_string(), vm);
            }
            match kind {
                ResourceKind::Memory => {
                    let target = match limits.hard(kind) {
                        Some(0) => {
                            return Err(QmpError::Answer(
                                "a memory limit of 0 would take all of the guest's memory".into(),
                            ));
                        }
                        Some(b) => b.min(vm.memory),
                        None => vm.memory,
                    };
                    s.set_memory(target)?;
                }
                // No IOPS reserved is no IOPS limit, as for cpu: QEMU can't hold a disk at 0.
                ResourceKind::Iops => s.set_iops(limits.hard(kind).filter(|&l| l > 0))?,
                _ => {
                    let hard = limits.hard(kind);
                    let want = hard.map_or(vm.vcpus, |m| m.div_ceil(1000).max(1)).min(vm.vcpus.max(1));
                    let now = s.vcpus()?;
                    let mut all = vcpus_state.lock().map_err(|_| {
                        QmpError::Answer("the vCPU bookkeeping was poisoned".into())
                    })?;
                    let state = all.entry(name.to_string()).or_default();
                    if Some(state.instance) != instance {
                        // A new QEMU (or the first actuation): nothing unplugged from it yet.
                        *state = Vcpus {
                            instance: instance.unwrap_or(0),
                            ..Vcpus::default()
                        };
                    }
                    let aim = if want < now && !unplug {
                        now
                    } else if want > now && state.unplugged {
                        tracing::warn!(
                            vm = name,
                            want,
                            now,
                            "no vCPU is plugged into a QEMU shardex unplugged one from, until it restarts (QEMU 7.2 crashed doing it)"
                        );
                        now
                    } else {
                        want
                    };
                    state.aimed = Some((hard, aim));
                    s.set_vcpus(aim, &mut state.unplugged)?;
                }
            }
            s.read(kind)
        })
    }

    /// Memory and IOPS back to the whole VM (vCPUs stay).
    fn clear_qmp(&mut self, name: &str, kinds: Kinds) -> Applied {
        self.session(name, kinds, |s, kind| {
            // The guest gets its memory and disks back; its vCPUs stay as they are
            // (unplugging is the guest's to accept, and plugging more than it booted with is
            // not "no limit").
            match kind {
                ResourceKind::Memory => {
                    let base = s.base_memory()?;
                    s.set_memory(base)?;
                }
                ResourceKind::Iops => s.set_iops(None)?,
                _ => {}
            }
            s.read(kind)
        })
    }
}

impl Actuator for QmpActuator {
    fn apply(&mut self, w: WorkloadId, name: &str, limits: &Limits, kinds: Kinds) -> Applied {
        let mut out = self.apply_qmp(name, limits, kinds);
        if kinds[ResourceKind::Cpu.index()] && self.manages(name, ResourceKind::Cpu) {
            let cpu = Limits {
                hard: [limits.hard(ResourceKind::Cpu), None, None, None],
                soft: [limits.soft[0], 0, 0, 0],
            };
            let quota = self
                .cpu_quota
                .as_mut()
                .map(|q| q.apply(w, name, &cpu, CPU_ONLY));
            self.cap(name, &mut out, quota);
        }
        out
    }

    fn read(&mut self, w: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        let mut out = self.session(name, kinds, |s, kind| s.read(kind));
        let capped = self
            .capped
            .lock()
            .ok()
            .and_then(|c| c.get(name).copied())
            .unwrap_or(false);
        if capped && kinds[ResourceKind::Cpu.index()] && self.manages(name, ResourceKind::Cpu) {
            let quota = self.cpu_quota.as_mut().map(|q| q.read(w, name, CPU_ONLY));
            self.cap(name, &mut out, quota);
        }
        out
    }

    fn clear(&mut self, w: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        if kinds[ResourceKind::Cpu.index()]
            && let Some(q) = self.cpu_quota.as_mut()
        {
            let _ = q.clear(w, name, CPU_ONLY);
        }
        self.clear_qmp(name, kinds)
    }

    fn manages(&self, name: &str, kind: ResourceKind) -> bool {
        kind != ResourceKind::Net && self.sockets.contains_key(name)
    }

    fn expected(&self, name: &str, kind: ResourceKind, hard: Option<u64>) -> Option<u64> {
        let most = self.most(name);
        match kind {
            // The vCPUs the last actuation aimed for, for the limit it applied.
            ResourceKind::Cpu
                if let Some((h, aim)) = self
                    .vcpus
                    .lock()
                    .ok()
                    .and_then(|v| v.get(name).and_then(|v| v.aimed))
                    && h == hard =>
            {
                let capped = self.capped.lock().ok().and_then(|c| c.get(name).copied());
                Some(match (capped, hard) {
                    (Some(true), Some(h)) => h.min(aim * 1000),
                    _ => aim * 1000,
                })
            }
            // Whole vCPUs, as many as the VM has slots for at most.
            ResourceKind::Cpu => {
                let slots = most.map(|m| m.vcpus);
                match (hard, slots) {
                    (Some(m), Some(n)) => Some(m.div_ceil(1000).clamp(1, n.max(1)) * 1000),
                    (Some(m), None) => Some(m.div_ceil(1000).max(1) * 1000),
                    (None, n) => n.map(|n| n * 1000),
                }
            }
            // The balloon gives the guest at most its memory.
            ResourceKind::Memory => match (hard, most) {
                (Some(h), Some(m)) => Some(h.min(m.memory)),
                (None, Some(m)) => Some(m.memory),
                (h, None) => h,
            },
            // A VM without disks has no IOPS to limit.
            ResourceKind::Iops if most.is_some_and(|m| m.disks == 0) => None,
            ResourceKind::Iops => hard.filter(|&l| l > 0),
            ResourceKind::Net => hard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardex_core::ports::ALL_KINDS;
    use std::io::Write;

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
        // ...which is what the agent is told to expect, as for memory above the VM's RAM: a
        // limit above what the VM has leaves it unlimited, not short of its limit.
        assert_eq!(a.expected("vm", ResourceKind::Cpu, Some(8000)), Some(4000));
        assert_eq!(a.expected("vm", ResourceKind::Cpu, None), Some(4000));
        assert_eq!(
            a.expected("vm", ResourceKind::Memory, Some(1 << 30)),
            Some(256 << 20)
        );
        assert_eq!(
            a.expected("vm", ResourceKind::Memory, Some(64 << 20)),
            Some(64 << 20)
        );
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
