//! `shardex guest`: the profiler inside a VM. Samples the guest's cpu, memory, block I/O,
//! pressure and applications every interval and writes each report as a line of JSON to the
//! virtio-serial port named `org.shardex.guest.0`, whose other end is the host's shardex.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shardex_core::Span;
use shardex_host::guest::{PORT_NAME, Probe};

/// Arguments of `shardex guest`.
#[derive(Debug, clap::Args)]
pub struct GuestArgs {
    /// The port to write to [default: the virtio-serial port named `org.shardex.guest.0`,
    /// found under /sys/class/virtio-ports].
    #[arg(long, value_name = "PATH", conflicts_with = "stdout")]
    port: Option<PathBuf>,
    /// Write the reports to standard output instead (to see what the host would get).
    #[arg(long)]
    stdout: bool,
    /// How often to sample.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    every: String,
    /// Stop after this many reports [default: never].
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// The device of the virtio-serial port named `name`, from `sys` (`/sys/class/virtio-ports`).
fn find_port(sys: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let entries = std::fs::read_dir(sys).with_context(|| {
        format!(
            "no virtio-serial ports here ({} is missing): attach a virtserialport named {name} to this VM, or pass --port",
            sys.display()
        )
    })?;
    for e in entries.flatten() {
        let named = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if named.trim() == name {
            return Ok(Path::new("/dev").join(e.file_name()));
        }
    }
    bail!(
        "no virtio-serial port named {name} in {}: attach one to this VM (see the README), or pass --port",
        sys.display()
    )
}

/// Runs the profiler until killed (or `--count` reports).
pub fn guest(args: &GuestArgs) -> anyhow::Result<ExitCode> {
    let every: Span = args.every.parse().with_context(|| {
        format!(
            "--every: {:?} is not a duration like 1s or 500ms",
            args.every
        )
    })?;
    if every.millis() < 100 {
        bail!("--every: sample at most ten times a second");
    }
    let every = Duration::from_millis(every.millis());
    let port = match (&args.port, args.stdout) {
        (_, true) => None,
        (Some(p), false) => Some(p.clone()),
        (None, false) => Some(find_port(Path::new("/sys/class/virtio-ports"), PORT_NAME)?),
    };
    let mut probe = Probe::new(Path::new("/"));
    let mut out: Option<std::fs::File> = None;
    let mut last = Instant::now();
    probe.sample(0).context("sampling this guest")?;
    let mut sent = 0u64;
    loop {
        std::thread::sleep(every.saturating_sub(last.elapsed()));
        let elapsed = u64::try_from(last.elapsed().as_millis()).unwrap_or(u64::MAX);
        last = Instant::now();
        let Some(report) = probe.sample(elapsed).context("sampling this guest")? else {
            continue;
        };
        let line = format!("{}\n", report.to_line());
        match &port {
            None => {
                let mut stdout = std::io::stdout().lock();
                if stdout
                    .write_all(line.as_bytes())
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    // The reader went away.
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Some(path) => {
                if out.is_none() {
                    out = std::fs::OpenOptions::new().write(true).open(path).ok();
                }
                // With no host at the other end the write fails; the next interval tries again.
                if let Some(f) = out.as_mut()
                    && f.write_all(line.as_bytes()).is_err()
                {
                    out = None;
                }
            }
        }
        sent += 1;
        if args.count.is_some_and(|n| sent >= n) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_found_by_name_and_its_absence_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        for (port, name) in [("vport1p1", "org.other"), ("vport2p1", PORT_NAME)] {
            std::fs::create_dir_all(dir.path().join(port)).unwrap();
            std::fs::write(dir.path().join(port).join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(
            find_port(dir.path(), PORT_NAME).unwrap(),
            Path::new("/dev/vport2p1")
        );
        let e = find_port(dir.path(), "org.none").unwrap_err().to_string();
        assert!(e.contains("no virtio-serial port named org.none"), "{e}");
        let e = find_port(&dir.path().join("absent"), PORT_NAME)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--port"), "{e}");
    }
}
