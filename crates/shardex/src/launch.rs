//! `shardex launch -- CMD ARGS`: like `systemd-run`, a command run in a new managed cgroup
//! (`shardex/res-ID/NAME`, inside its reservation's group) under a running `shardex run`, inside an existing reservation or a new one
//! made for it. The command starts only once its limits are in force; when it ends, the
//! workload is unbound, its cgroup removed, a reservation made for it cancelled, and its exit
//! status passed on (128 + the signal's number when a signal ended it, as shells do).
//!
//! The launcher moves itself into the new cgroup only for the moment of starting the command
//! (so the command is there from its first instruction, with no unsafe pre-exec hook), and
//! back out at once, so that its own memory is not charged to the workload.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use shardex_core::Action;
use shardex_core::action;
use shardex_host::tree::CgroupTree;

use crate::workload::{self, Daemon, Placement};

/// Arguments of `shardex launch`.
#[derive(Debug, Clone, Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    daemon: Daemon,
    #[command(flatten)]
    placement: Placement,
    /// The workload's name: its cgroup is shardex/NAME [default: the command's name and the
    /// launcher's pid].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The command and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    command: Vec<String>,
}

/// The cgroup of this process in the hierarchy `root`, from `/proc/self/cgroup`.
fn own_cgroup(tree: &CgroupTree) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/cgroup").context("/proc/self/cgroup")?;
    let mut out = Vec::new();
    for root in tree.roots() {
        let controllers = root
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let path = text.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            let matches = if tree.is_v2() {
                names.is_empty()
            } else {
                let wanted: Vec<&str> = controllers.split(',').collect();
                let have: Vec<&str> = names.split(',').collect();
                wanted.iter().all(|w| have.contains(w))
            };
            matches.then(|| path.to_string())
        });
        out.push(path.unwrap_or_else(|| "/".into()));
    }
    Ok(out)
}

/// Writes this process into the cgroup at `paths` (one per hierarchy, from [`own_cgroup`]).
fn move_self(tree: &CgroupTree, paths: &[String]) -> anyhow::Result<()> {
    for (root, path) in tree.roots().iter().zip(paths) {
        let procs = root.join(path.trim_start_matches('/')).join("cgroup.procs");
        std::fs::write(&procs, std::process::id().to_string())
            .with_context(|| format!("could not move the launcher back to {}", procs.display()))?;
    }
    Ok(())
}

/// The exit code a shell would give for `status`.
fn code(status: std::process::ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(s)) => u8::try_from((128 + s) & 0xff).unwrap_or(1),
        _ => 1,
    }
}

/// A name from the command: its file name, with what a cgroup name can't hold replaced.
fn default_name(command: &str) -> String {
    let base = std::path::Path::new(command)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("cmd");
    let clean = workload::cgroup_leaf(base);
    format!("{clean}-{}", std::process::id())
}

/// Runs `shardex launch`.
pub fn launch(args: &LaunchArgs) -> anyhow::Result<ExitCode> {
    let Some(program) = args.command.first() else {
        bail!("give the command to run after --");
    };
    let client = args.daemon.client()?;
    let tree = CgroupTree::probe()?;
    let leaf = args.name.clone().unwrap_or_else(|| default_name(program));
    let home = own_cgroup(&tree)?;
    let tenant = workload::tenant(&client, &args.placement.tenant)?;
    let (reservation, made) = args
        .placement
        .reservation(&client, &args.daemon.data, tenant)?;
    let cancel = || {
        if made {
            let _ = client.act(&Action::CancelReservation(action::CancelReservation {
                tenant,
                reservation,
            }));
        }
    };
    // Inside the reservation's group, so the kernel enforces the sum of its workloads.
    let name = CgroupTree::in_group(reservation, &leaf);
    if tree.exists(&name) {
        cancel();
        bail!("the cgroup {name} exists already: choose another --name");
    }
    if let Err(e) = tree.create(&name) {
        cancel();
        return Err(e.into());
    }
    let bound = workload::bind(&client, tenant, reservation, &name).and_then(|w| {
        workload::wait_in_force(&client, w, Duration::from_secs(15))?;
        Ok(w)
    });
    let id = match bound {
        Ok(w) => w,
        Err(e) => {
            let _ = tree.remove(&name);
            cancel();
            return Err(e);
        }
    };
    eprintln!(
        "shardex: workload {} ({name}) in reservation {}",
        id.0, reservation.0
    );
    // In for the start, out at once.
    let spawned = tree
        .attach(&name, std::process::id())
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            let child = std::process::Command::new(program)
                .args(&args.command[1..])
                .spawn()
                .with_context(|| format!("could not start {program}"));
            move_self(&tree, &home)?;
            child
        });
    let status = spawned.and_then(|mut child| {
        forward_signals(child.id())?;
        child.wait().context("could not wait for the command")
    });
    let out = workload::take_out(&client, tenant, id, &name);
    cancel();
    let status = status?;
    out?;
    Ok(ExitCode::from(code(status)))
}

/// Keeps the launcher alive through SIGINT, SIGTERM and SIGHUP while the command runs, so
/// that it can take the workload out afterwards. SIGTERM and SIGHUP sent to the launcher are
/// passed on to the command; SIGINT is not, since a terminal's Ctrl-C reaches the command
/// directly (same process group).
fn forward_signals(child: u32) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("could not catch signals")?;
    let pid = i32::try_from(child)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .context("the command's pid is out of range")?;
    std::thread::spawn(move || {
        for s in signals.forever() {
            let sig = match s {
                SIGTERM => rustix::process::Signal::TERM,
                SIGHUP => rustix::process::Signal::HUP,
                _ => continue,
            };
            // It may have exited meanwhile: nothing to pass on then.
            let _ = rustix::process::kill_process(pid, sig);
        }
    });
    Ok(())
}
