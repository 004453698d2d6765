//! IOPS through QEMU's block throttling: the VM's limit shared among the block devices its
//! guest uses (`block_set_io_throttle`'s `iops`, total of reads and writes), read back from
//! `query-block`. QEMU's bandwidth limits on the same devices are kept as they are.

use serde_json::{Value, json};

use super::QmpError;
use super::session::Session;

/// A block device a guest device uses, and its throttling now.
struct Throttled {
    /// The guest device's id or QOM path, which `block_set_io_throttle` takes.
    qdev: String,
    /// Its limits now (`inserted` of `query-block`).
    inserted: Value,
}

impl Session {
    fn throttled(&mut self) -> Result<Vec<Throttled>, QmpError> {
        let block = self.execute("query-block", None)?;
        Ok(block
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                let qdev = d["qdev"].as_str().filter(|q| !q.is_empty())?;
                let inserted = d.get("inserted")?.clone();
                Some(Throttled {
                    qdev: qdev.to_string(),
                    inserted,
                })
            })
            .collect())
    }

    /// How many block devices the guest uses.
    pub(super) fn disks(&mut self) -> Result<u64, QmpError> {
        Ok(self.throttled()?.len() as u64)
    }

    /// The VM's IOPS limit in force: the sum over its devices; `None` when any is unlimited,
    /// or when it has none (nothing to limit).
    pub(super) fn iops(&mut self) -> Result<Option<u64>, QmpError> {
        let devices = self.throttled()?;
        let mut sum = 0u64;
        for d in &devices {
            match d.inserted["iops"].as_u64() {
                Some(0) | None => return Ok(None),
                Some(n) => sum = sum.saturating_add(n),
            }
        }
        Ok((!devices.is_empty()).then_some(sum))
    }

    /// Sets the VM's IOPS limit (`None`: unlimited), shared evenly among its devices (the
    /// remainder to the first ones, so the read-back sums to the limit).
    pub(super) fn set_iops(&mut self, limit: Option<u64>) -> Result<(), QmpError> {
        let devices = self.throttled()?;
        if devices.is_empty() {
            return Ok(());
        }
        let n = devices.len() as u64;
        if let Some(l) = limit
            && l < n
        {
            // QEMU reads 0 as "no limit", so a device can't be given none.
            return Err(QmpError::Answer(format!(
                "an IOPS limit of {l} can't be shared among {n} block devices (QEMU takes 0 as unlimited)"
            )));
        }
        for (i, d) in devices.iter().enumerate() {
            let each = limit.map_or(0, |l| l / n + u64::from((i as u64) < l % n));
            let keep = |k: &str| d.inserted[k].as_u64().unwrap_or(0);
            self.execute(
                "block_set_io_throttle",
                Some(json!({
                    "id": d.qdev,
                    "bps": keep("bps"),
                    "bps_rd": keep("bps_rd"),
                    "bps_wr": keep("bps_wr"),
                    "iops": each,
                    // A total and a per-direction limit exclude each other.
                    "iops_rd": 0,
                    "iops_wr": 0,
                })),
            )?;
        }
        Ok(())
    }
}
