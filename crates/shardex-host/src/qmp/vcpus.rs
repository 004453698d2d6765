//! vCPUs: whole ones, plugged into the free slots `query-hotpluggable-cpus` lists
//! (`device_add`) or unplugged from the ones shardex plugged (`device_del`, which the guest must
//! accept), counted back with `query-cpus-fast`. Which count to aim for is the actuator's rule
//! (`mod.rs`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::QmpError;
use super::memory::SETTLE;
use super::session::Session;

/// Ids of the vCPUs shardex plugs start with this, so it only ever unplugs its own.
const CPU_ID_PREFIX: &str = "shardex-cpu";

impl Session {
    /// How many vCPUs QEMU has now.
    pub(super) fn vcpus(&mut self) -> Result<u64, QmpError> {
        Ok(self
            .execute("query-cpus-fast", None)?
            .as_array()
            .map_or(0, |a| a.len() as u64))
    }

    /// Every vCPU slot the VM has, plugged or not.
    pub(super) fn slots(&mut self) -> Result<u64, QmpError> {
        Ok(self
            .execute("query-hotpluggable-cpus", None)?
            .as_array()
            .map_or(0, |a| a.len() as u64))
    }

    /// Plugs or unplugs vCPUs towards `want`. An unplug is the guest's to accept: it is waited
    /// for up to [`SETTLE`], and what is left is what the read-back reports; `unplugged` is set
    /// once one was asked for (see `QmpActuator`'s rule about plugging after that).
    pub(super) fn set_vcpus(&mut self, want: u64, unplugged: &mut bool) -> Result<(), QmpError> {
        let slots = self.execute("query-hotpluggable-cpus", None)?;
        let slots = slots.as_array().cloned().unwrap_or_default();
        let plugged = slots.iter().filter(|s| s.get("qom-path").is_some()).count() as u64;
        if want > plugged {
            self.plug(&slots, want, plugged)
        } else if want < plugged {
            self.unplug(want, plugged, unplugged)
        } else {
            Ok(())
        }
    }

    fn plug(&mut self, slots: &[Value], want: u64, plugged: u64) -> Result<(), QmpError> {
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
        Ok(())
    }

    fn unplug(&mut self, want: u64, plugged: u64, unplugged: &mut bool) -> Result<(), QmpError> {
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
            match self.execute("device_del", Some(json!({ "id": id }))) {
                Ok(_) => *unplugged = true,
                Err(e) => tracing::warn!(error = %e, "a vCPU could not be unplugged yet"),
            }
        }
        // The guest ejects them in its own time (under a second here); what is left when the
        // wait is over is reported as it is.
        let deadline = Instant::now() + SETTLE;
        loop {
            let now = self.vcpus()?;
            if now <= want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    want,
                    still = now,
                    "the guest has not released its vCPUs within {SETTLE:?}"
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
