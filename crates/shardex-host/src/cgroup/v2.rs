//! cgroup v2's files: `cpu.max` (`quota period`) and `cpu.weight`, `memory.max` and
//! `memory.high`, `io.max` (`riops`/`wiops` per device).

use std::path::Path;

use shardex_core::ResourceKind;

use super::{BlockDevice, CgroupError, Change, PERIOD_US, control_file, limit, limit_text};
use super::{millicores, parse_limit, read_text};

/// The `cpu.weight` for a soft cpu target: 100 (the kernel's default) per core, 1 to 10,000.
pub(super) fn weight(millicores: u64) -> u64 {
    (millicores / 10).clamp(1, 10_000)
}

/// The value of `key=` for `device` in an `io.max` (`None`: no line, or `max`).
pub(super) fn io_max_value(text: &str, device: BlockDevice, key: &str) -> Option<u64> {
    let dev = device.to_string();
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(dev.as_str()))?
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

/// The memory writes: `memory.max` is the hard limit, `memory.high` under it a soft limit that
/// reclaims and never kills (a `high` event is a censored sample that lifts it next time).
pub(super) fn memory(
    dir: &Path,
    hard: Option<u64>,
    soft: Option<u64>,
) -> Result<Vec<Change>, CgroupError> {
    let max = control_file(dir, "memory.max", "memory")?;
    let high = control_file(dir, "memory.high", "memory")?;
    Ok(vec![
        Change::keeping(max, limit_text(hard, "max"))?,
        Change::keeping(high, limit_text(soft, "max"))?,
    ])
}

/// The cpu writes: the quota in `cpu.max`, the soft target as `cpu.weight` where it exists.
pub(super) fn cpu(dir: &Path, quota: Option<u64>, soft: u64) -> Result<Vec<Change>, CgroupError> {
    let max = control_file(dir, "cpu.max", "cpu")?;
    let mut changes = vec![Change::keeping(
        max,
        format!("{} {PERIOD_US}", limit_text(quota, "max")),
    )?];
    if let Ok(w) = control_file(dir, "cpu.weight", "cpu") {
        changes.push(Change::keeping(w, weight(soft).to_string())?);
    }
    Ok(changes)
}

/// The IOPS writes: one `io.max` line per device, read and write alike.
pub(super) fn iops(
    dir: &Path,
    devices: &[BlockDevice],
    iops: Option<u64>,
) -> Result<Vec<Change>, CgroupError> {
    let io = control_file(dir, "io.max", "io")?;
    let n = limit_text(iops, "max");
    devices
        .iter()
        .map(|&d| {
            Change::undone_by(io.clone(), format!("{d} riops={n} wiops={n}"), move |old| {
                let v = |k| io_max_value(old, d, k).map_or("max".into(), |n: u64| n.to_string());
                format!("{d} riops={} wiops={}", v("riops"), v("wiops"))
            })
        })
        .collect()
}

/// The hard limit in force for `kind` (`None`: unlimited); IOPS are the least over devices.
pub(super) fn in_force(
    dir: &Path,
    kind: ResourceKind,
    devices: &[BlockDevice],
) -> Result<Option<u64>, CgroupError> {
    Ok(match kind {
        ResourceKind::Memory => limit(&dir.join("memory.max"))?,
        ResourceKind::Cpu => {
            let file = dir.join("cpu.max");
            let text = read_text(&file)?;
            let mut parts = text.split_whitespace();
            let q = parse_limit(&file, parts.next().unwrap_or(""))?;
            let period = parts
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(PERIOD_US);
            millicores(q, period)
        }
        ResourceKind::Iops => {
            let text = read_text(&dir.join("io.max"))?;
            devices
                .iter()
                .map(|&d| {
                    Some(io_max_value(&text, d, "riops")?.min(io_max_value(&text, d, "wiops")?))
                })
                .min()
                .flatten()
        }
        ResourceKind::Net => return Err(CgroupError::Net),
    })
}
