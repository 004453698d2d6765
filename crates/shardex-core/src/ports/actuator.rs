//! The actuator port: limits applied live and read back, per kind, and the router and the
//! simulated actuator behind it.

use serde::{Deserialize, Serialize};

use crate::domain::{ReservationId, WorkloadId};

/// The limits an actuator puts on one workload, physical units in `ResourceKind::ALL` order
/// (see [`crate::entitlement`] for where they come from).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Hard limits: the workload's entitlement, never less (`None`: no limit).
    pub hard: [Option<u64>; 4],
    /// Soft targets: the allocation planned from the forecast (cpu weight, memory soft limit).
    pub soft: [u64; 4],
}

impl Limits {
    /// The hard limit of `kind`.
    pub fn hard(&self, kind: crate::ResourceKind) -> Option<u64> {
        self.hard[kind.index()]
    }

    /// The soft target of `kind`.
    pub fn soft(&self, kind: crate::ResourceKind) -> u64 {
        self.soft[kind.index()]
    }
}

/// Which kinds an actuation is for, in `ResourceKind::ALL` order.
pub type Kinds = [bool; 4];

/// Every kind.
pub const ALL_KINDS: Kinds = [true; 4];

/// One kind of an actuation or a read-back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "value")]
pub enum KindState {
    /// Not managed for this workload (or not asked for).
    Unmanaged,
    /// The hard limit in force, read back (`None`: unlimited).
    InForce(Option<u64>),
    /// It failed, and why; this kind was left as it was.
    Failed(super::ActuationError),
}

/// What an actuation or a read-back found, per kind.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied(pub [KindState; 4]);

impl Default for Applied {
    fn default() -> Self {
        Self(std::array::from_fn(|_| KindState::Unmanaged))
    }
}

impl Applied {
    /// Every kind in `kinds` failed for the same reason (nothing was written).
    pub fn failed(kinds: Kinds, reason: &super::ActuationError) -> Self {
        Self(std::array::from_fn(|i| {
            if kinds[i] {
                KindState::Failed(reason.clone())
            } else {
                KindState::Unmanaged
            }
        }))
    }

    /// The state of `kind`.
    pub fn get(&self, kind: crate::ResourceKind) -> &KindState {
        &self.0[kind.index()]
    }

    /// Sets the state of `kind`.
    pub fn set(&mut self, kind: crate::ResourceKind, state: KindState) {
        self.0[kind.index()] = state;
    }

    /// The hard limit in force for `kind`, when it was read back.
    pub fn in_force(&self, kind: crate::ResourceKind) -> Option<Option<u64>> {
        match self.get(kind) {
            KindState::InForce(v) => Some(*v),
            _ => None,
        }
    }
}

/// Applies a workload's limits live, reads back what is in force, and takes its limits off.
/// Each kind is applied and reported on its own: one kind's failure leaves the others applied.
pub trait Actuator {
    /// Applies the `kinds` of `limits` that it manages to the workload `name`, and reads back
    /// what is in force for them.
    fn apply(&mut self, workload: WorkloadId, name: &str, limits: &Limits, kinds: Kinds)
    -> Applied;

    /// Reads back what is in force for the `kinds` it manages, writing nothing.
    fn read(&mut self, workload: WorkloadId, name: &str, kinds: Kinds) -> Applied;

    /// Takes the limits it put on the workload off (unlimited, or the parent's), for the
    /// `kinds` it manages: what unbinding a workload does.
    fn clear(&mut self, workload: WorkloadId, name: &str, kinds: Kinds) -> Applied;

    /// Whether it enforces `kind` for the workload `name`.
    fn manages(&self, name: &str, kind: crate::ResourceKind) -> bool {
        let _ = (name, kind);
        true
    }

    /// What a read-back shows once `hard` took for `kind` (e.g. whole vCPUs for a VM's cpu).
    fn expected(&self, name: &str, kind: crate::ResourceKind, hard: Option<u64>) -> Option<u64> {
        let _ = (name, kind);
        hard
    }

    /// Whether it enforces `kind` on the group `name` that holds all of a reservation's
    /// workloads (a parent cgroup), so that the kernel enforces their sum. None by default.
    fn manages_group(&self, name: &str, kind: crate::ResourceKind) -> bool {
        let _ = (name, kind);
        false
    }

    /// Applies `limits` to the group `name` of `reservation`'s workloads and reads them back.
    fn apply_group(
        &mut self,
        reservation: ReservationId,
        name: &str,
        limits: &Limits,
        kinds: Kinds,
    ) -> Applied {
        let _ = (reservation, name, limits, kinds);
        Applied::default()
    }

    /// Reads back what is in force on the group `name`, writing nothing.
    fn read_group(&mut self, reservation: ReservationId, name: &str, kinds: Kinds) -> Applied {
        let _ = (reservation, name, kinds);
        Applied::default()
    }
}

impl<A: Actuator + ?Sized> Actuator for Box<A> {
    fn apply(
        &mut self,
        workload: WorkloadId,
        name: &str,
        limits: &Limits,
        kinds: Kinds,
    ) -> Applied {
        (**self).apply(workload, name, limits, kinds)
    }

    fn read(&mut self, workload: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        (**self).read(workload, name, kinds)
    }

    fn clear(&mut self, workload: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        (**self).clear(workload, name, kinds)
    }

    fn manages(&self, name: &str, kind: crate::ResourceKind) -> bool {
        (**self).manages(name, kind)
    }

    fn expected(&self, name: &str, kind: crate::ResourceKind, hard: Option<u64>) -> Option<u64> {
        (**self).expected(name, kind, hard)
    }

    fn manages_group(&self, name: &str, kind: crate::ResourceKind) -> bool {
        (**self).manages_group(name, kind)
    }

    fn apply_group(
        &mut self,
        reservation: ReservationId,
        name: &str,
        limits: &Limits,
        kinds: Kinds,
    ) -> Applied {
        (**self).apply_group(reservation, name, limits, kinds)
    }

    fn read_group(&mut self, reservation: ReservationId, name: &str, kinds: Kinds) -> Applied {
        (**self).read_group(reservation, name, kinds)
    }
}

/// Several actuators, each for the kinds it manages (e.g. QMP for a VM's cpu and memory, tc
/// for network, cgroups for the rest): a kind goes to the first that manages it for the
/// workload, and only that one is asked about it.
#[derive(Default)]
pub struct ActuatorRouter(pub Vec<Box<dyn Actuator + Send>>);

impl ActuatorRouter {
    /// Per actuator, the kinds of `kinds` it is the first to manage for `name`.
    fn split(&self, name: &str, kinds: Kinds) -> Vec<Kinds> {
        self.claim(kinds, |a, k| a.manages(name, k))
    }

    /// Per actuator, the kinds of `kinds` it is the first to manage for the group `name`.
    fn split_group(&self, name: &str, kinds: Kinds) -> Vec<Kinds> {
        self.claim(kinds, |a, k| a.manages_group(name, k))
    }

    /// Each kind of `kinds` goes to the first actuator for which `manages` holds.
    fn claim(
        &self,
        kinds: Kinds,
        manages: impl Fn(&(dyn Actuator + Send), crate::ResourceKind) -> bool,
    ) -> Vec<Kinds> {
        let mut claimed = [false; 4];
        self.0
            .iter()
            .map(|a| {
                std::array::from_fn(|i| {
                    let k = crate::ResourceKind::ALL[i];
                    let mine = kinds[i] && !claimed[i] && manages(a.as_ref(), k);
                    claimed[i] |= mine;
                    mine
                })
            })
            .collect()
    }

    fn each(
        &mut self,
        name: &str,
        kinds: Kinds,
        f: impl FnMut(&mut Box<dyn Actuator + Send>, Kinds) -> Applied,
    ) -> Applied {
        let split = self.split(name, kinds);
        self.each_of(split, f)
    }

    fn each_of(
        &mut self,
        split: Vec<Kinds>,
        mut f: impl FnMut(&mut Box<dyn Actuator + Send>, Kinds) -> Applied,
    ) -> Applied {
        let mut out = Applied::default();
        for (a, mine) in self.0.iter_mut().zip(split) {
            if !mine.iter().any(|&m| m) {
                continue;
            }
            let got = f(a, mine);
            for (i, state) in got.0.into_iter().enumerate() {
                if mine[i] {
                    out.0[i] = state;
                }
            }
        }
        out
    }
}

impl Actuator for ActuatorRouter {
    fn apply(
        &mut self,
        workload: WorkloadId,
        name: &str,
        limits: &Limits,
        kinds: Kinds,
    ) -> Applied {
        self.each(name, kinds, |a, k| a.apply(workload, name, limits, k))
    }

    fn read(&mut self, workload: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.each(name, kinds, |a, k| a.read(workload, name, k))
    }

    fn clear(&mut self, workload: WorkloadId, name: &str, kinds: Kinds) -> Applied {
        self.each(name, kinds, |a, k| a.clear(workload, name, k))
    }

    fn manages(&self, name: &str, kind: crate::ResourceKind) -> bool {
        self.0.iter().any(|a| a.manages(name, kind))
    }

    fn expected(&self, name: &str, kind: crate::ResourceKind, hard: Option<u64>) -> Option<u64> {
        match self.0.iter().find(|a| a.manages(name, kind)) {
            Some(a) => a.expected(name, kind, hard),
            None => hard,
        }
    }

    fn manages_group(&self, name: &str, kind: crate::ResourceKind) -> bool {
        self.0.iter().any(|a| a.manages_group(name, kind))
    }

    fn apply_group(
        &mut self,
        reservation: ReservationId,
        name: &str,
        limits: &Limits,
        kinds: Kinds,
    ) -> Applied {
        let split = self.split_group(name, kinds);
        self.each_of(split, |a, k| a.apply_group(reservation, name, limits, k))
    }

    fn read_group(&mut self, reservation: ReservationId, name: &str, kinds: Kinds) -> Applied {
        let split = self.split_group(name, kinds);
        self.each_of(split, |a, k| a.read_group(reservation, name, k))
    }
}

/// The simulated actuator: whatever is applied is in force, at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimulatedActuator {
    in_force: std::collections::BTreeMap<WorkloadId, Limits>,
    /// Groups, for the reservations whose groups it is told to manage.
    groups: std::collections::BTreeMap<ReservationId, Limits>,
    /// Whether it manages reservations' groups (names under [`crate::entitlement::GROUPS`]).
    pub with_groups: bool,
    /// Actuations done.
    pub actuations: u64,
}

impl SimulatedActuator {
    /// What is in force for `workload`.
    pub fn in_force(&self, workload: WorkloadId) -> Option<Limits> {
        self.in_force.get(&workload).copied()
    }

    /// Changes what is in force behind the loop's back (what an operator or another tool
    /// might do), for tests of reconciliation.
    pub fn tamper(&mut self, workload: WorkloadId, kind: crate::ResourceKind, hard: Option<u64>) {
        self.in_force.entry(workload).or_default().hard[kind.index()] = hard;
    }

    /// What is in force for `reservation`'s group.
    pub fn group_in_force(&self, reservation: ReservationId) -> Option<Limits> {
        self.groups.get(&reservation).copied()
    }

    fn state(&self, workload: WorkloadId, kinds: Kinds) -> Applied {
        let now = self.in_force.get(&workload).copied().unwrap_or_default();
        Self::shown(now, kinds)
    }

    fn shown(now: Limits, kinds: Kinds) -> Applied {
        Applied(std::array::from_fn(|i| {
            if kinds[i] {
                KindState::InForce(now.hard[i])
            } else {
                KindState::Unmanaged
            }
        }))
    }
}

impl Actuator for SimulatedActuator {
    fn apply(&mut self, workload: WorkloadId, _: &str, limits: &Limits, kinds: Kinds) -> Applied {
        self.actuations += 1;
        let e = self.in_force.entry(workload).or_default();
        for (i, _) in kinds.iter().enumerate().filter(|(_, k)| **k) {
            e.hard[i] = limits.hard[i];
            e.soft[i] = limits.soft[i];
        }
        self.state(workload, kinds)
    }

    fn read(&mut self, workload: WorkloadId, _: &str, kinds: Kinds) -> Applied {
        self.state(workload, kinds)
    }

    fn clear(&mut self, workload: WorkloadId, _: &str, kinds: Kinds) -> Applied {
        let e = self.in_force.entry(workload).or_default();
        for (i, _) in kinds.iter().enumerate().filter(|(_, k)| **k) {
            e.hard[i] = None;
            e.soft[i] = 0;
        }
        self.state(workload, kinds)
    }

    fn manages_group(&self, _: &str, _: crate::ResourceKind) -> bool {
        self.with_groups
    }

    fn apply_group(
        &mut self,
        reservation: ReservationId,
        _: &str,
        limits: &Limits,
        kinds: Kinds,
    ) -> Applied {
        self.actuations += 1;
        let e = self.groups.entry(reservation).or_default();
        for (i, _) in kinds.iter().enumerate().filter(|(_, k)| **k) {
            e.hard[i] = limits.hard[i];
            e.soft[i] = limits.soft[i];
        }
        Self::shown(*e, kinds)
    }

    fn read_group(&mut self, reservation: ReservationId, _: &str, kinds: Kinds) -> Applied {
        Self::shown(
            self.groups.get(&reservation).copied().unwrap_or_default(),
            kinds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ResourceKind;
    use crate::ports::{ActuationError, FailureCause};

    /// Enforces one kind, for workloads whose name starts with a prefix; fails for `fail`.
    struct One {
        kind: ResourceKind,
        prefix: &'static str,
        calls: std::sync::Arc<std::sync::atomic::AtomicU32>,
    }

    impl Actuator for One {
        fn apply(&mut self, _: WorkloadId, name: &str, limits: &Limits, kinds: Kinds) -> Applied {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(
                kinds.iter().filter(|&&k| k).count(),
                1,
                "asked only about its kind"
            );
            let mut out = Applied::default();
            out.set(
                self.kind,
                if name == "fail" {
                    KindState::Failed(ActuationError::other(FailureCause::Refused, "refused"))
                } else {
                    KindState::InForce(limits.hard(self.kind).map(|v| v + 1))
                },
            );
            out
        }

        fn read(&mut self, _: WorkloadId, _: &str, _: Kinds) -> Applied {
            Applied::default()
        }

        fn clear(&mut self, _: WorkloadId, _: &str, kinds: Kinds) -> Applied {
            Applied::failed(kinds, &ActuationError::other(FailureCause::Io, "cleared"))
        }

        fn manages(&self, name: &str, kind: ResourceKind) -> bool {
            kind == self.kind && name.starts_with(self.prefix)
        }
    }

    #[test]
    fn combined_sends_each_kind_to_the_actuator_that_manages_it_and_reports_each_alone() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let one = |kind, prefix| -> Box<dyn Actuator + Send> {
            Box::new(One {
                kind,
                prefix,
                calls: calls.clone(),
            })
        };
        let mut c = ActuatorRouter(vec![
            one(ResourceKind::Cpu, ""),
            one(ResourceKind::Net, "vm"),
            one(ResourceKind::Cpu, ""),
        ]);
        let w = WorkloadId(1);
        let l = Limits {
            hard: [Some(10), Some(20), Some(30), Some(40)],
            soft: [1, 2, 3, 4],
        };
        // The cpu comes from the first that manages it; the net only for a mapped workload.
        let got = c.apply(w, "vm-1", &l, ALL_KINDS);
        assert_eq!(got.in_force(ResourceKind::Cpu), Some(Some(11)));
        assert_eq!(got.in_force(ResourceKind::Net), Some(Some(31)));
        assert_eq!(got.get(ResourceKind::Memory), &KindState::Unmanaged);
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2);
        let got = c.apply(w, "job", &l, ALL_KINDS);
        assert_eq!(got.get(ResourceKind::Net), &KindState::Unmanaged);
        assert!(c.manages("vm-1", ResourceKind::Net) && !c.manages("job", ResourceKind::Net));
        assert!(!c.manages("job", ResourceKind::Memory));
        let got = c.apply(w, "fail", &l, ALL_KINDS);
        assert_eq!(
            got.get(ResourceKind::Cpu),
            &KindState::Failed(ActuationError::other(FailureCause::Refused, "refused"))
        );
        // Only the kinds asked for.
        let got = c.apply(w, "vm-1", &l, [false, false, true, false]);
        assert_eq!(got.get(ResourceKind::Cpu), &KindState::Unmanaged);
        assert_eq!(got.in_force(ResourceKind::Net), Some(Some(31)));
    }

    #[test]
    fn the_simulated_actuator_keeps_what_was_applied_and_what_was_tampered_with() {
        let mut a = SimulatedActuator::default();
        let w = WorkloadId(3);
        let l = Limits {
            hard: [Some(1500), Some(1 << 30), None, None],
            soft: [40, 1 << 25, 0, 0],
        };
        let got = a.apply(w, "x", &l, ALL_KINDS);
        assert_eq!(got.in_force(ResourceKind::Cpu), Some(Some(1500)));
        a.tamper(w, ResourceKind::Cpu, Some(100));
        assert_eq!(
            a.read(w, "x", ALL_KINDS).in_force(ResourceKind::Cpu),
            Some(Some(100))
        );
        let cleared = a.clear(w, "x", ALL_KINDS);
        assert_eq!(cleared.in_force(ResourceKind::Memory), Some(None));
    }
}
