//! The `command` migrator: moves a workload between hosts through an operator's executable
//! (the hook for what shardex can't do live itself: a cgroup workload stopped on one host and
//! started on the other, a VM moved by the cloud's API). It is run with one JSON object on
//! stdin, `{"op": "start" | "status", "workload": {"id", "name"}, "from": {"id", "name"},
//! "to": {"id", "name"}}`, and answers on stdout `{"status": "running" | "completed" |
//! "failed", "reason": "…", "check_in_s": N}` (`reason` and `check_in_s` optional).
//!
//! # Rules
//! * `start`: a non-zero exit, an answer that can't be read or `failed` refuses the move
//!   (nothing moved); `running` asks again after `check_in_s` (5 s by default); `completed`
//!   is a move already done.
//! * `status`: `completed` moves the workload in the ledger, `failed` leaves it where it was;
//!   a hook that fails or times out is asked again (a move is not declared done or failed on a
//!   broken call), until the move has run `max_duration`: then it failed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use shardex_core::ports::{MigrationError, MigrationStatus, Migrator, MoveOrder};
use shardex_core::{Span, Timestamp, WorkloadId};

/// How long after `running` the hook is asked again when it does not say.
const CHECK_IN: Span = Span::from_secs(5);

/// Runs `program args…` to start and follow moves.
#[derive(Debug, Clone)]
pub struct CommandMigrator {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// How long one call may take.
    pub timeout: Duration,
    /// How long a move may run before it counts as failed.
    pub max_duration: Span,
    /// Moves under way: the order and when it started.
    moving: BTreeMap<WorkloadId, (MoveOrder, Timestamp)>,
}

/// The hook's answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    status: Said,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    check_in_s: Option<u64>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Said {
    Running,
    Completed,
    Failed,
}

impl CommandMigrator {
    /// Runs `program args…`, each call within `timeout`, each move within `max_duration`.
    pub fn new(program: PathBuf, args: Vec<String>, timeout: Duration, max_duration: Span) -> Self {
        Self {
            program,
            args,
            timeout,
            max_duration,
            moving: BTreeMap::new(),
        }
    }

    fn ask(&self, op: &str, order: &MoveOrder) -> Result<Answer, String> {
        let input = json!({
            "op": op,
            "workload": {"id": order.workload.0, "name": order.name},
            "from": {"id": order.from.0, "name": order.from_name},
            "to": {"id": order.to.0, "name": order.to_name},
        })
        .to_string();
        let out = crate::hook::run(&self.program, &self.args, input.as_bytes(), self.timeout)
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&out).map_err(|e| {
            format!(
                "{} answered {out:?}, not {{\"status\": \"running\" | \"completed\" | \"failed\"}}: {e}",
                self.program.display()
            )
        })
    }
}

impl Migrator for CommandMigrator {
    fn start(&mut self, order: &MoveOrder, now: Timestamp) -> Result<Timestamp, MigrationError> {
        let refuse = |reason: String| MigrationError {
            workload: order.workload,
            reason,
        };
        let answer = self.ask("start", order).map_err(refuse)?;
        match answer.status {
            Said::Failed => Err(refuse(
                answer
                    .reason
                    .unwrap_or_else(|| "the hook refused it".to_string()),
            )),
            Said::Completed => {
                self.moving.insert(order.workload, (order.clone(), now));
                Ok(now)
            }
            Said::Running => {
                self.moving.insert(order.workload, (order.clone(), now));
                let wait = answer.check_in_s.map_or(CHECK_IN, Span::from_secs);
                Ok(now.checked_add(wait).unwrap_or(now))
            }
        }
    }

    fn status(&mut self, workload: WorkloadId, now: Timestamp) -> MigrationStatus {
        let Some((order, started)) = self.moving.get(&workload).cloned() else {
            return MigrationStatus::Failed(format!("no move of {workload} is under way"));
        };
        let status = match self.ask("status", &order) {
            Ok(a) => match a.status {
                Said::Completed => MigrationStatus::Completed,
                Said::Failed => MigrationStatus::Failed(
                    a.reason
                        .unwrap_or_else(|| "the hook says it failed".to_string()),
                ),
                Said::Running => MigrationStatus::Running,
            },
            Err(e) => {
                tracing::warn!(%workload, error = %e, "could not ask how a move stands; asked again");
                MigrationStatus::Running
            }
        };
        let status = match status {
            MigrationStatus::Running if now.since(started) >= self.max_duration => {
                MigrationStatus::Failed(format!(
                    "still not done after {} (migrator.max_duration)",
                    self.max_duration
                ))
            }
            s => s,
        };
        if status != MigrationStatus::Running {
            self.moving.remove(&workload);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardex_core::testkit::moves::{crowded, crowding, mover};
    use shardex_core::testkit::t;
    use shardex_core::{HostId, ShardSizes};
    use std::os::unix::fs::PermissionsExt;

    /// A hook that logs each call's input to `calls` and answers what the file `say` holds.
    fn hook(dir: &std::path::Path) -> CommandMigrator {
        let path = dir.join("move");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\ncat >> {calls}\necho >> {calls}\ncat {say}\n",
                calls = dir.join("calls").display(),
                say = dir.join("say").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        CommandMigrator::new(
            path,
            Vec::new(),
            Duration::from_secs(10),
            Span::from_secs(600),
        )
    }

    fn say(dir: &std::path::Path, what: &str) {
        std::fs::write(dir.join("say"), what).unwrap();
    }

    #[test]
    fn the_ledger_moves_a_workload_only_once_the_hook_says_it_completed() {
        let dir = tempfile::tempdir().unwrap();
        say(dir.path(), r#"{"status": "running", "check_in_s": 2}"#);
        let (mut ledger, a, b) = crowded();
        let mut c = mover(hook(dir.path()));
        let sizes = ShardSizes::default();
        let r = c.tick(&mut ledger, &crowding(a, b, t(1)), &sizes, t(1));
        assert_eq!(r.moves_started.len(), 1, "{r:?}");
        assert_eq!(
            r.moves_started[0].done_at,
            t(3),
            "asked again after check_in_s"
        );
        // The hook got the move by ids and names.
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        let first: serde_json::Value = serde_json::from_str(calls.lines().next().unwrap()).unwrap();
        assert_eq!(first["op"], "start");
        assert_eq!(first["workload"]["name"], "b");
        assert_eq!(first["from"]["name"], "h1");
        assert_eq!(first["to"]["name"], "h2");
        for at in [3, 4, 5] {
            let r = c.tick(&mut ledger, &crowding(a, b, t(at)), &sizes, t(at));
            assert!(r.moved.is_empty(), "{r:?}");
            assert_eq!(ledger.workload(b).unwrap().host, HostId(1));
        }
        say(dir.path(), r#"{"status": "completed"}"#);
        let r = c.tick(&mut ledger, &crowding(a, b, t(6)), &sizes, t(6));
        assert_eq!(r.moved.len(), 1, "{r:?}");
        assert_eq!(ledger.workload(r.moved[0].1).unwrap().host, HostId(2));
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert!(calls.contains(r#""op":"status""#), "{calls}");
    }

    #[test]
    fn a_hook_that_refuses_fails_or_breaks_never_moves_the_workload() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = ShardSizes::default();
        // Refused at the start: nothing under way, the reason in the problems.
        say(
            dir.path(),
            r#"{"status": "failed", "reason": "no capacity in zone b"}"#,
        );
        let (mut ledger, a, b) = crowded();
        let mut c = mover(hook(dir.path()));
        let r = c.tick(&mut ledger, &crowding(a, b, t(1)), &sizes, t(1));
        assert!(r.moves_started.is_empty());
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("no capacity in zone b")),
            "{r:?}"
        );
        // Started, then the hook breaks (garbage, then an exit 1): asked again, not moved.
        say(dir.path(), r#"{"status": "running"}"#);
        let (mut ledger, a, b) = crowded();
        let mut c = mover(hook(dir.path()));
        c.tick(&mut ledger, &crowding(a, b, t(1)), &sizes, t(1));
        say(dir.path(), "moved it, I think");
        let r = c.tick(&mut ledger, &crowding(a, b, t(6)), &sizes, t(6));
        assert!(r.moved.is_empty() && r.failed_moves.is_empty(), "{r:?}");
        assert_eq!(c.in_flight.len(), 1);
        // Then it says the move failed: the workload stays, the reason is told.
        say(
            dir.path(),
            r#"{"status": "failed", "reason": "the new host lost power"}"#,
        );
        let r = c.tick(&mut ledger, &crowding(a, b, t(8)), &sizes, t(8));
        assert_eq!(r.failed_moves, vec![b]);
        assert!(r.problems.iter().any(|p| p.contains("lost power")), "{r:?}");
        assert_eq!(ledger.workload(b).unwrap().host, HostId(1));
        // A move that never ends fails at max_duration.
        say(dir.path(), r#"{"status": "running"}"#);
        let (mut ledger, a, b) = crowded();
        let mut m = hook(dir.path());
        m.max_duration = Span::from_secs(30);
        let mut c = mover(m);
        c.tick(&mut ledger, &crowding(a, b, t(1)), &sizes, t(1));
        let r = c.tick(&mut ledger, &crowding(a, b, t(40)), &sizes, t(40));
        assert_eq!(r.failed_moves, vec![b], "{r:?}");
        assert!(
            r.problems.iter().any(|p| p.contains("max_duration")),
            "{r:?}"
        );
    }
}
