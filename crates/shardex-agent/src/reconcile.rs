//! Reconciliation (DESIGN invariant 4): what is in force converges to the ledger.
//!
//! # Rules
//! * Each workload's limits ([`shardex_core::entitlement::limits`]) are applied when they
//!   differ from what was last applied, and read back; a kind counts as applied only when the
//!   read-back shows it ([`Actuator::expected`]).
//! * Every `check_every`, what is in force is read back even when nothing changed; a limit
//!   changed behind shardex's back (drift) is put back and recorded.
//! * A kind that fails is retried with exponential backoff (from `retry_after`, doubling, at
//!   most `retry_max`); after `degrade_after` failures in a row the workload is **degraded** in
//!   that kind: it is still retried at `retry_max`, and its leases of that kind are released
//!   so that the ledger holds no more than what is really in force (an entitlement the
//!   actuator can't write is no use to it, and the shards go back to their lenders).
//! * A workload that left the ledger (or its host) has shardex's limits taken off
//!   ([`Actuator::clear`]).
//! * It works from [`Targets`] alone: what the limits should be, read off the ledger by
//!   whoever holds it.
//! * A reservation whose workloads all live in its group (the cgroup `shardex/res-ID`,
//!   `shardex_core::entitlement::group_of`) has the group's limits reconciled the same way, first: its
//!   hard limits are the reservation's entitlement, so the kernel enforces the sum of its
//!   workloads while each of them may still use all of it alone.

use std::collections::BTreeMap;

use serde::Serialize;
use shardex_core::action;
use shardex_core::ports::{Actuator, Applied, KindState, Kinds, Limits};
use shardex_core::{Action, ReservationId, ResourceKind, Span, Timestamp, WorkloadId};

use crate::targets::{Targets, WorkloadTarget};

/// How reconciliation retries and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileParams {
    /// Read back what is in force at least this often.
    pub check_every: Span,
    /// First retry after a failure.
    pub retry_after: Span,
    /// Longest wait between retries.
    pub retry_max: Span,
    /// Failures in a row before the workload is degraded in that kind.
    pub degrade_after: u32,
}

impl Default for ReconcileParams {
    /// Checks every 60 s; retries after 10 s, doubling up to 5 min; degraded after 5 failures.
    fn default() -> Self {
        Self {
            check_every: Span::from_secs(60),
            retry_after: Span::from_secs(10),
            retry_max: Span::from_secs(300),
            degrade_after: 5,
        }
    }
}

/// What happened to one kind of one workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Applied and read back as asked.
    Applied {
        /// The hard limit in force (`None`: unlimited).
        hard: Option<u64>,
    },
    /// Applied, but the read-back shows something else (e.g. a balloon still deflating).
    NotYet {
        /// What was asked.
        want: Option<u64>,
        /// What is in force.
        found: Option<u64>,
    },
    /// Found changed behind shardex's back and put back.
    Drift {
        /// What it was changed to.
        found: Option<u64>,
        /// What was put back.
        want: Option<u64>,
    },
    /// It failed; retried later.
    Failed {
        /// Why.
        reason: String,
        /// Failures in a row.
        attempt: u32,
        /// When it is tried again.
        retry_at: Timestamp,
    },
    /// Failed `degrade_after` times in a row: degraded until it succeeds.
    Degraded {
        /// Why.
        reason: String,
    },
    /// shardex's limits were taken off (the workload left).
    Cleared,
}

/// What limits are reconciled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A workload.
    Workload(WorkloadId),
    /// The group holding a reservation's workloads.
    Reservation(ReservationId),
}

/// One kind of one workload (or reservation group), reconciled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actuation {
    /// What it was applied to.
    pub subject: Subject,
    /// Its name.
    pub name: String,
    /// The kind.
    pub kind: ResourceKind,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// One kind's state.
#[derive(Debug, Clone, Default)]
struct KindTrack {
    /// The hard limit last seen in force as asked.
    applied: Option<Option<u64>>,
    failures: u32,
    retry_at: Option<Timestamp>,
    degraded: Option<String>,
}

#[derive(Debug, Clone)]
struct Track {
    name: String,
    want: Limits,
    kinds: [KindTrack; 4],
    checked: Option<Timestamp>,
}

/// What the reconciler knows of one workload, for the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The limits it should have.
    pub want: Limits,
    /// Per kind, the hard limit last read back as asked (`None` inside: unlimited).
    pub in_force: [Option<Option<u64>>; 4],
    /// Per kind, why it is degraded, if it is.
    pub degraded: [Option<String>; 4],
}

/// Applies, reads back and repairs every workload's limits.
#[derive(Debug, Clone, Default)]
pub struct Reconciler {
    params: ReconcileParams,
    tracks: BTreeMap<WorkloadId, Track>,
    groups: BTreeMap<ReservationId, Track>,
}

impl Reconciler {
    /// A reconciler.
    pub fn new(params: ReconcileParams) -> Self {
        Self {
            params,
            tracks: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
    }

    /// The hard limits last read back in force for `workload`, physical units.
    pub fn in_force(&self, workload: WorkloadId) -> [Option<u64>; 4] {
        self.tracks
            .get(&workload)
            .map(|t| std::array::from_fn(|i| t.kinds[i].applied.flatten()))
            .unwrap_or_default()
    }

    /// What it knows of `workload`.
    pub fn status(&self, workload: WorkloadId) -> Option<Status> {
        let t = self.tracks.get(&workload)?;
        Some(Status {
            want: t.want,
            in_force: std::array::from_fn(|i| t.kinds[i].applied),
            degraded: std::array::from_fn(|i| t.kinds[i].degraded.clone()),
        })
    }

    /// Whether `workload` is degraded in any kind.
    pub fn degraded(&self, workload: WorkloadId) -> bool {
        self.tracks
            .get(&workload)
            .is_some_and(|t| t.kinds.iter().any(|k| k.degraded.is_some()))
    }

    /// One pass at `now` towards `targets`: applies what changed, reads back what is due,
    /// clears workloads that left. Returns what happened and the ledger actions that bring the
    /// ledger back to what is really in force for degraded workloads (lease releases), to
    /// commit.
    pub fn reconcile(
        &mut self,
        targets: &Targets,
        actuator: &mut dyn Actuator,
        now: Timestamp,
    ) -> (Vec<Actuation>, Vec<Action>) {
        let mut out = Vec::new();
        let mut actions = Vec::new();
        // Workloads that left (the ledger, or this host): their limits come off.
        let gone: Vec<WorkloadId> = self
            .tracks
            .keys()
            .filter(|w| targets.workload(**w).is_none())
            .copied()
            .collect();
        for w in gone {
            if let Some(t) = self.tracks.remove(&w) {
                let kinds: Kinds =
                    std::array::from_fn(|i| actuator.manages(&t.name, ResourceKind::ALL[i]));
                let got = actuator.clear(w, &t.name, kinds);
                for kind in ResourceKind::ALL {
                    let outcome = match got.get(kind) {
                        KindState::Unmanaged => continue,
                        KindState::InForce(_) => Outcome::Cleared,
                        KindState::Failed(e) => Outcome::Failed {
                            reason: format!("taking the limits off: {e}"),
                            attempt: 1,
                            retry_at: now,
                        },
                    };
                    out.push(Actuation {
                        subject: Subject::Workload(w),
                        name: t.name.clone(),
                        kind,
                        outcome,
                    });
                }
            }
        }
        // Groups first: a rise of the sum is in force before any of its workloads needs it.
        self.groups
            .retain(|r, _| targets.groups.iter().any(|g| g.reservation == *r));
        for g in &targets.groups {
            let track = self
                .groups
                .entry(g.reservation)
                .or_insert_with(|| Track::new(&g.name, g.want));
            let degraded = step(
                &self.params,
                track,
                Subject::Reservation(g.reservation),
                g.want,
                actuator,
                now,
                &mut out,
            );
            for kind in degraded {
                for w in g.workloads.iter().filter_map(|w| targets.workload(*w)) {
                    actions.extend(release_leases(w, kind));
                }
            }
        }
        for wl in &targets.workloads {
            let track = self
                .tracks
                .entry(wl.id)
                .or_insert_with(|| Track::new(&wl.name, wl.want));
            let degraded = step(
                &self.params,
                track,
                Subject::Workload(wl.id),
                wl.want,
                actuator,
                now,
                &mut out,
            );
            for kind in degraded {
                actions.extend(release_leases(wl, kind));
            }
        }
        (out, actions)
    }
}

impl Track {
    fn new(name: &str, want: Limits) -> Self {
        Self {
            name: name.to_string(),
            want,
            kinds: Default::default(),
            checked: None,
        }
    }
}

/// The actuator's calls for a subject: a workload's own, or its reservation group's.
fn manages(actuator: &dyn Actuator, subject: Subject, name: &str, kind: ResourceKind) -> bool {
    match subject {
        Subject::Workload(_) => actuator.manages(name, kind),
        Subject::Reservation(_) => actuator.manages_group(name, kind),
    }
}

fn read(actuator: &mut dyn Actuator, subject: Subject, name: &str, kinds: Kinds) -> Applied {
    match subject {
        Subject::Workload(w) => actuator.read(w, name, kinds),
        Subject::Reservation(r) => actuator.read_group(r, name, kinds),
    }
}

fn apply(
    actuator: &mut dyn Actuator,
    subject: Subject,
    name: &str,
    want: &Limits,
    kinds: Kinds,
) -> Applied {
    match subject {
        Subject::Workload(w) => actuator.apply(w, name, want, kinds),
        Subject::Reservation(r) => actuator.apply_group(r, name, want, kinds),
    }
}

/// Reconciles one subject: applies what changed or failed, reads back what is due, records
/// what happened in `out`; the kinds that became degraded just now.
fn step(
    params: &ReconcileParams,
    track: &mut Track,
    subject: Subject,
    want: Limits,
    actuator: &mut dyn Actuator,
    now: Timestamp,
    out: &mut Vec<Actuation>,
) -> Vec<ResourceKind> {
    let mut newly_degraded = Vec::new();
    let name = track.name.clone();
    let due_check = track
        .checked
        .is_none_or(|c| now.since(c) >= params.check_every);
    let changed = track.want != want;
    track.want = want;
    let mut to_apply: Kinds = [false; 4];
    let mut to_read: Kinds = [false; 4];
    let mut drifted: Kinds = [false; 4];
    for kind in ResourceKind::ALL {
        let i = kind.index();
        if !manages(actuator, subject, &name, kind) {
            continue;
        }
        let k = &track.kinds[i];
        if k.retry_at.is_some_and(|r| r > now) {
            continue;
        }
        if k.applied.is_none() || k.failures > 0 {
            to_apply[i] = true;
        } else if due_check || changed {
            // Read first, so that a change made behind shardex's back is seen (and recorded)
            // even when the ledger changed too.
            to_read[i] = true;
            to_apply[i] = changed;
        }
    }
    if to_read.iter().any(|&r| r) {
        track.checked = Some(now);
        let got = read(actuator, subject, &name, to_read);
        for kind in ResourceKind::ALL {
            let i = kind.index();
            if !to_read[i] {
                continue;
            }
            // What it should still be: what was last seen in force as asked.
            let expected = track.kinds[i].applied.flatten();
            match got.get(kind) {
                KindState::InForce(v) if *v == expected => {}
                KindState::InForce(v) => {
                    // Drift: put back below, and say what was found.
                    out.push(Actuation {
                        subject,
                        name: name.clone(),
                        kind,
                        outcome: Outcome::Drift {
                            found: *v,
                            want: expected,
                        },
                    });
                    to_apply[i] = true;
                    drifted[i] = true;
                }
                KindState::Failed(_) | KindState::Unmanaged => to_apply[i] = true,
            }
        }
    }
    if !to_apply.iter().any(|&a| a) {
        return newly_degraded;
    }
    if due_check {
        track.checked = Some(now);
    }
    let got = apply(actuator, subject, &name, &want, to_apply);
    for kind in ResourceKind::ALL {
        let i = kind.index();
        if !to_apply[i] {
            continue;
        }
        let expected = actuator.expected(&name, kind, want.hard(kind));
        let k = &mut track.kinds[i];
        let outcome = match got.get(kind) {
            KindState::Unmanaged => continue,
            KindState::InForce(v) => {
                k.failures = 0;
                k.retry_at = None;
                k.degraded = None;
                if *v == expected {
                    let first = k.applied != Some(*v);
                    k.applied = Some(*v);
                    if !first && drifted[i] {
                        // The drift reported above says what was put back.
                        continue;
                    }
                    Outcome::Applied { hard: *v }
                } else {
                    k.applied = None;
                    Outcome::NotYet {
                        want: expected,
                        found: *v,
                    }
                }
            }
            KindState::Failed(reason) => {
                k.failures += 1;
                k.applied = None;
                let wait = backoff(params, k.failures);
                let retry_at = now.checked_add(wait).unwrap_or(now);
                k.retry_at = Some(retry_at);
                if k.failures >= params.degrade_after {
                    if k.degraded.is_none() {
                        newly_degraded.push(kind);
                    }
                    k.degraded = Some(reason.to_string());
                    Outcome::Degraded {
                        reason: reason.to_string(),
                    }
                } else {
                    Outcome::Failed {
                        reason: reason.to_string(),
                        attempt: k.failures,
                        retry_at,
                    }
                }
            }
        };
        out.push(Actuation {
            subject,
            name: name.clone(),
            kind,
            outcome,
        });
    }
    newly_degraded
}

/// The wait before the `failures`-th retry.
fn backoff(p: &ReconcileParams, failures: u32) -> Span {
    let factor = 1u64 << failures.saturating_sub(1).min(20);
    Span::from_millis(
        p.retry_after
            .millis()
            .saturating_mul(factor)
            .min(p.retry_max.millis()),
    )
}

/// Releases of the leases of `kind` a degraded workload holds.
fn release_leases(w: &WorkloadTarget, kind: ResourceKind) -> Vec<Action> {
    w.leases
        .iter()
        .filter(|l| l.kinds[kind.index()])
        .map(|l| {
            Action::Release(action::Release {
                tenant: w.tenant,
                lease: l.id,
            })
        })
        .collect()
}
