//! cgroup v1's files, each controller in its own hierarchy: `cpu.cfs_quota_us` /
//! `cpu.cfs_period_us` and `cpu.shares`, `memory.limit_in_bytes` and
//! `memory.soft_limit_in_bytes`, `blkio.throttle.{read,write}_iops_device`.

use std::path::Path;

use shardex_core::ResourceKind;

use super::{BlockDevice, CgroupError, Change, PERIOD_US, control_file, limit, limit_text};
use super::{millicores, read_text};

/// The files that throttle IOPS, read then write.
const IOPS_FILES: [&str; 2] = [
    "blkio.throttle.read_iops_device",
    "blkio.throttle.write_iops_device",
];

/// The `cpu.shares` for a soft cpu target: 1,024 (the default) per core, 2 to 262,144.
pub(super) fn shares(millicores: u64) -> u64 {
    (millicores.saturating_mul(1024) / 1000).clamp(2, 262_144)
}

/// The limit for `device` in a `blkio.throttle.*_device` file (`None`: none).
pub(super) fn device_value(text: &str, device: BlockDevice) -> Option<u64> {
    let dev = device.to_string();
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(dev.as_str()))
            .then(|| parts.next()?.parse().ok())
            .flatten()
    })
}

/// The memory writes: the hard limit and the soft limit the kernel reclaims towards.
pub(super) fn memory(
    dir: &Path,
    hard: Option<u64>,
    soft: Option<u64>,
) -> Result<Vec<Change>, CgroupError> {
    let max = control_file(dir, "memory.limit_in_bytes", "memory")?;
    let softf = control_file(dir, "memory.soft_limit_in_bytes", "memory")?;
    Ok(vec![
        Change::keeping(max, limit_text(hard, "-1"))?,
        Change::keeping(softf, limit_text(soft, "-1"))?,
    ])
}

/// The cpu writes: the period, the quota, and the soft target as `cpu.shares` where it exists.
pub(super) fn cpu(dir: &Path, quota: Option<u64>, soft: u64) -> Result<Vec<Change>, CgroupError> {
    let period = control_file(dir, "cpu.cfs_period_us", "cpu")?;
    let quota_file = control_file(dir, "cpu.cfs_quota_us", "cpu")?;
    let mut changes = vec![
        Change::keeping(period, PERIOD_US.to_string())?,
        Change::keeping(quota_file, limit_text(quota, "-1"))?,
    ];
    if let Ok(s) = control_file(dir, "cpu.shares", "cpu") {
        changes.push(Change::keeping(s, shares(soft).to_string())?);
    }
    Ok(changes)
}

/// The IOPS writes: one line per device in each throttle file (0 removes a v1 throttle).
pub(super) fn iops(
    dir: &Path,
    devices: &[BlockDevice],
    iops: Option<u64>,
) -> Result<Vec<Change>, CgroupError> {
    let mut changes = Vec::new();
    for file in IOPS_FILES {
        let path = control_file(dir, file, "blkio")?;
        for &d in devices {
            changes.push(Change::undone_by(
                path.clone(),
                format!("{d} {}", iops.unwrap_or(0)),
                move |old| format!("{d} {}", device_value(old, d).unwrap_or(0)),
            )?);
        }
    }
    Ok(changes)
}

/// The hard limit in force for `kind` (`None`: unlimited); IOPS are the least over devices.
pub(super) fn in_force(
    dir: &Path,
    kind: ResourceKind,
    devices: &[BlockDevice],
) -> Result<Option<u64>, CgroupError> {
    Ok(match kind {
        // v1 prints a huge page-aligned number for "no limit".
        ResourceKind::Memory => {
            limit(&dir.join("memory.limit_in_bytes"))?.filter(|&b| b < (1 << 62))
        }
        ResourceKind::Cpu => {
            let quota_file = dir.join("cpu.cfs_quota_us");
            let text = read_text(&quota_file)?;
            let q: i64 = text.parse().map_err(|_| CgroupError::NotALimit {
                path: quota_file.clone(),
                text,
            })?;
            let period = read_text(&dir.join("cpu.cfs_period_us"))?
                .parse()
                .unwrap_or(PERIOD_US);
            // v1 prints -1 for no limit.
            millicores(u64::try_from(q).ok(), period)
        }
        ResourceKind::Iops => {
            let [r, w] = IOPS_FILES.map(|f| read_text(&dir.join(f)));
            let (r, w) = (r?, w?);
            devices
                .iter()
                .map(|&d| Some(device_value(&r, d)?.min(device_value(&w, d)?)))
                .min()
                .flatten()
        }
        ResourceKind::Net => return Err(CgroupError::Net),
    })
}
