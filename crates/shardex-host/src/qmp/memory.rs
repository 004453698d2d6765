//! Memory through the balloon: the target set with `balloon`, read back as what the guest
//! actually holds (`query-balloon`), moved by the balloon rule (`balloon.rs`) with what the
//! guest uses from the balloon driver's statistics.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::QmpError;
use super::session::Session;

/// How often the balloon driver is asked to report the guest's statistics, in seconds.
const STATS_INTERVAL: u64 = 2;
/// How long an actuation waits for the guest to reach its target before reading back.
pub(super) const SETTLE: Duration = Duration::from_millis(500);

impl Session {
    /// What the guest holds now.
    pub(super) fn balloon_actual(&mut self) -> Result<u64, QmpError> {
        self.execute("query-balloon", None)?
            .get("actual")
            .and_then(Value::as_u64)
            .ok_or_else(|| QmpError::Answer("query-balloon answered without \"actual\"".into()))
    }

    /// The VM's memory without the balloon: what "no limit" gives it back.
    pub(super) fn base_memory(&mut self) -> Result<u64, QmpError> {
        self.execute("query-memory-size-summary", None)?
            .get("base-memory")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                QmpError::Answer(
                    "query-memory-size-summary answered without \"base-memory\"".into(),
                )
            })
    }

    /// The balloon device's QOM path, with or without an id.
    fn balloon_path(&mut self) -> Result<Option<String>, QmpError> {
        for parent in ["/machine/peripheral", "/machine/peripheral-anon"] {
            let children = match self.execute("qom-list", Some(json!({ "path": parent }))) {
                Ok(c) => c,
                Err(QmpError::Command { .. }) => continue,
                Err(e) => return Err(e),
            };
            let balloon = children.as_array().into_iter().flatten().find(|c| {
                c["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("child<virtio-balloon"))
            });
            if let Some(name) = balloon.and_then(|c| c["name"].as_str()) {
                return Ok(Some(format!("{parent}/{name}")));
            }
        }
        Ok(None)
    }

    /// What the guest uses (its total less what it says is available), from the balloon
    /// driver's statistics; `None` until the guest has reported them.
    pub(super) fn guest_used(&mut self) -> Result<Option<u64>, QmpError> {
        let Some(path) = self.balloon_path()? else {
            return Ok(None);
        };
        // Asking again is harmless; the first report comes one interval later.
        self.execute(
            "qom-set",
            Some(json!({
                "path": path,
                "property": "guest-stats-polling-interval",
                "value": STATS_INTERVAL,
            })),
        )?;
        let stats = self.execute(
            "qom-get",
            Some(json!({ "path": path, "property": "guest-stats" })),
        )?;
        if stats["last-update"].as_u64().unwrap_or(0) == 0 {
            return Ok(None);
        }
        let total = stats["stats"]["stat-total-memory"].as_u64();
        let available = stats["stats"]["stat-available-memory"].as_u64();
        Ok(match (total, available) {
            (Some(t), Some(a)) if a <= t => Some(t - a),
            _ => None,
        })
    }

    /// Moves the balloon towards `target` bytes: at once up; down by at most a step, and not
    /// below the guest's use plus the margin. Waits up to [`SETTLE`] for the guest to get
    /// there; returns the target set (the read-back says what the guest holds).
    pub(super) fn set_memory(&mut self, target: u64) -> Result<u64, QmpError> {
        let actual = self.balloon_actual()?;
        let used = if target < actual {
            self.guest_used()?
        } else {
            None
        };
        let set = crate::balloon::next_target(actual, target, used);
        if set > target {
            tracing::debug!(
                target,
                set,
                ?used,
                "the balloon shrinks in steps, above the guest's use"
            );
        }
        self.execute("balloon", Some(json!({ "value": set })))?;
        let deadline = Instant::now() + SETTLE;
        while self.balloon_actual()? != set && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(set)
    }
}
