//! IOPS through `virsh blkdeviotune --live`: the virt crate (0.4.3) has no binding for
//! `virDomainSetBlockIoTune` and this project forbids unsafe code, so the limit goes through
//! libvirt's own client, on the same URI. The VM's limit is shared among its disks (the
//! remainder to the first ones), as the QMP backend does.

use std::process::Command;

use super::LibvirtError;

/// The domain's disks (their target names, e.g. `vda`), from `virsh domblklist`.
pub(super) fn disks(uri: &str, domain: &str) -> Result<Vec<String>, LibvirtError> {
    let out = virsh(uri, &["domblklist", domain, "--details"], domain)?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Type, device, target, source; only disks (not cdroms) with a source.
            (f.len() >= 4 && f[1] == "disk" && f[3] != "-").then(|| f[2].to_string())
        })
        .collect())
}

fn virsh(uri: &str, args: &[&str], domain: &str) -> Result<String, LibvirtError> {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .output()
        .map_err(|e| LibvirtError::Call {
            what: "virsh",
            domain: domain.to_string(),
            message: format!("could not run virsh (libvirt-clients): {e}"),
        })?;
    if !out.status.success() {
        return Err(LibvirtError::Call {
            what: "blkdeviotune",
            domain: domain.to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sets the domain's IOPS limit (`None`: unlimited); false when it has no disk to limit.
pub(super) fn set(uri: &str, domain: &str, limit: Option<u64>) -> Result<bool, LibvirtError> {
    let disks = disks(uri, domain)?;
    let n = disks.len() as u64;
    if n == 0 {
        return Ok(false);
    }
    if let Some(l) = limit
        && l < n
    {
        return Err(LibvirtError::Answer(format!(
            "an IOPS limit of {l} can't be shared among {n} disks (libvirt takes 0 as unlimited)"
        )));
    }
    for (i, disk) in disks.iter().enumerate() {
        let each = limit.map_or(0, |l| l / n + u64::from((i as u64) < l % n));
        virsh(
            uri,
            &[
                "blkdeviotune",
                domain,
                disk,
                "--total-iops-sec",
                &each.to_string(),
                "--live",
            ],
            domain,
        )?;
    }
    Ok(true)
}

/// The domain's IOPS limit in force: the sum over its disks; `None` when any is unlimited or
/// it has none.
pub(super) fn get(uri: &str, domain: &str) -> Result<Option<u64>, LibvirtError> {
    let disks = disks(uri, domain)?;
    if disks.is_empty() {
        return Ok(None);
    }
    let mut sum = 0u64;
    for disk in &disks {
        let out = virsh(uri, &["blkdeviotune", domain, disk, "--live"], domain)?;
        let iops = out
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("total_iops_sec")?
                    .trim()
                    .strip_prefix(':')
            })
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                LibvirtError::Answer(format!(
                    "blkdeviotune on {domain} {disk}: no total_iops_sec"
                ))
            })?;
        if iops == 0 {
            return Ok(None);
        }
        sum = sum.saturating_add(iops);
    }
    Ok(Some(sum))
}
