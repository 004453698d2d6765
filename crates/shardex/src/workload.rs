//! `shardex workload add | list | remove`: putting existing cgroups and process trees under a
//! running `shardex run`, seeing what it does with them, and taking them out again. These are
//! an operator's acts on the host (binding a cgroup by path needs the admin token); the steps
//! they share with `shardex launch` live here.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use shardex_core::action;
use shardex_core::{
    Action, Event, HostId, ReservationId, ResourceKind, ShardVector, Span, TenantId, Tier,
    Timestamp, Window, WorkloadId,
};
use shardex_host::tree::{CgroupTree, process_tree};

use crate::DataArgs;
use crate::client::Client;
use shardex_api::quantity;

/// Where the daemon is.
#[derive(Debug, Clone, Args)]
pub struct Daemon {
    #[command(flatten)]
    pub data: DataArgs,
    /// The daemon's API, HOST:PORT [default: the address `shardex run` wrote in the data folder].
    #[arg(long, value_name = "ADDR", env = "SHARDEX_API")]
    pub api: Option<String>,
}

impl Daemon {
    /// A client for it.
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::connect(&self.data.data, self.api.as_deref())
    }
}

/// Whose shards a workload runs on: an existing reservation, or a new one of this size.
#[derive(Debug, Clone, Args)]
pub struct Placement {
    /// The tenant that owns the workload (made if it doesn't exist).
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub tenant: String,
    /// Run inside this existing reservation of the tenant's.
    #[arg(long, value_name = "ID", conflicts_with_all = ["cpu", "memory", "net", "iops"])]
    pub reservation: Option<u64>,
    /// Reserve this much cpu: cores (1.5) or millicores (1500m).
    #[arg(long, value_name = "CORES")]
    pub cpu: Option<String>,
    /// Reserve this much memory (1GiB, 512MiB); needed for a new reservation (shardex never
    /// writes a memory limit of zero, which would kill the workload, so without memory
    /// reserved its limits could not all be in force).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Reserve this much network bandwidth (100Mbit).
    #[arg(long, value_name = "RATE")]
    pub net: Option<String>,
    /// Reserve this many storage operations per second.
    #[arg(long, value_name = "IOPS")]
    pub iops: Option<String>,
    /// How long a new reservation lasts.
    #[arg(long = "for", value_name = "DURATION", default_value = "24h")]
    pub duration: String,
    /// The new reservation's tier: best-effort, standard, premium or critical.
    #[arg(long, value_name = "TIER", default_value = "standard")]
    pub tier: String,
    /// The host, by name [default: the only one].
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

/// Subcommands of `shardex workload`.
#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Put an existing cgroup (`--cgroup PATH`) or process tree (`--pid PID`, moved into a new
    /// cgroup `shardex/res-ID/NAME` in its reservation's group) under shardex.
    Add(Box<AddArgs>),
    /// What shardex sees and decides for each workload.
    List {
        #[command(flatten)]
        daemon: Daemon,
        /// Print the daemon's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Take a workload out from under shardex: its limits come off, a cgroup shardex made is
    /// removed (what runs in it moves to the root cgroup, never killed).
    Remove {
        #[command(flatten)]
        daemon: Daemon,
        /// The workload's name (as `workload list` shows it) or id.
        workload: String,
        /// Also cancel its reservation.
        #[arg(long)]
        cancel_reservation: bool,
    },
}

/// Arguments of `shardex workload add`.
#[derive(Debug, Clone, Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub daemon: Daemon,
    #[command(flatten)]
    pub placement: Placement,
    /// An existing cgroup, by its path under the cgroup root (e.g. system.slice/nginx.service).
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with_all = ["pid", "libvirt"],
        required_unless_present_any = ["pid", "libvirt"]
    )]
    pub cgroup: Option<String>,
    /// A running libvirt domain, by name or UUID: resized and sampled through libvirt (a
    /// shardex built with `--features libvirt`); its workload is named `libvirt:DOMAIN`.
    #[arg(long, value_name = "DOMAIN", conflicts_with = "pid")]
    pub libvirt: Option<String>,
    /// Where libvirt is, for --libvirt (the daemon's `engine.libvirt_uri`).
    #[arg(
        long,
        value_name = "URI",
        default_value = "qemu:///system",
        requires = "libvirt"
    )]
    pub libvirt_uri: String,
    /// A running process: it and its descendants move into a new cgroup shardex/res-ID/NAME.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// The new cgroup's name, for --pid [default: the process's command and pid].
    #[arg(long, value_name = "NAME", requires = "pid")]
    pub name: Option<String>,
}

/// Runs `shardex workload …`.
pub fn workload(command: WorkloadCommand) -> anyhow::Result<ExitCode> {
    match command {
        WorkloadCommand::Add(args) => add(&args),
        WorkloadCommand::List { daemon, json } => list(&daemon, json),
        WorkloadCommand::Remove {
            daemon,
            workload,
            cancel_reservation,
        } => remove(&daemon, &workload, cancel_reservation),
    }
}

/// Milliseconds since 1970 now.
fn wall_ms() -> anyhow::Result<i64> {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    i64::try_from(d.as_millis()).context("the system clock overflows")
}

/// The host to place on: by name, or the only one.
pub fn host(client: &Client, name: Option<&str>) -> anyhow::Result<HostId> {
    let hosts = client.get("/v1/hosts")?;
    let hosts = hosts["hosts"].as_array().cloned().unwrap_or_default();
    let pick = match name {
        Some(n) => hosts.iter().find(|h| h["name"] == n),
        None if hosts.len() == 1 => hosts.first(),
        None => bail!(
            "the daemon has {} hosts: choose one with --host NAME",
            hosts.len()
        ),
    };
    let id = pick
        .and_then(|h| h["id"].as_u64())
        .with_context(|| format!("the daemon has no host {:?}", name.unwrap_or("")))?;
    Ok(HostId(id))
}

/// The tenant named `name`, made if it doesn't exist.
pub fn tenant(client: &Client, name: &str) -> anyhow::Result<TenantId> {
    if let Some(id) = find_tenant(client, name)? {
        return Ok(id);
    }
    let events = client.act(&Action::CreateTenant(action::CreateTenant {
        name: name.to_string(),
    }))?;
    events
        .iter()
        .find_map(|e| match e {
            Event::TenantCreated { tenant, .. } => Some(*tenant),
            _ => None,
        })
        .context("the daemon made no tenant")
}

impl Placement {
    /// The shards asked for, in the daemon's shard sizes (rounded up).
    fn vector(&self, sizes: &shardex_core::ShardSizes) -> anyhow::Result<ShardVector> {
        let mut v = ShardVector::ZERO;
        for (kind, given) in [
            (ResourceKind::Cpu, &self.cpu),
            (ResourceKind::Memory, &self.memory),
            (ResourceKind::Net, &self.net),
            (ResourceKind::Iops, &self.iops),
        ] {
            if let Some(s) = given {
                let amount = quantity::of(kind, s).map_err(|e| anyhow::anyhow!("--{kind}: {e}"))?;
                v = v.with(kind, sizes.demand_shards(kind, amount));
            }
        }
        Ok(v)
    }

    /// The reservation to run in: the one given, or a new one of the size given, started (a
    /// workload is bound only once its reservation is in force, so its limits are never the
    /// zero of a reservation that hasn't begun).
    pub fn reservation(
        &self,
        client: &Client,
        data: &DataArgs,
        tenant: TenantId,
    ) -> anyhow::Result<(ReservationId, bool)> {
        if let Some(id) = self.reservation {
            return Ok((ReservationId(id), false));
        }
        let config = data.load_config()?;
        let vector = self.vector(&config.shards)?;
        if vector.get(ResourceKind::Memory) == 0 {
            bail!(
                "give --memory SIZE (or --reservation ID): shardex never writes a memory limit \
                 of zero (it would kill the workload), so one without memory reserved can't \
                 have its limits in force"
            );
        }
        let duration: Span = self
            .duration
            .parse()
            .map_err(|e| anyhow::anyhow!("--for {:?}: {e}", self.duration))?;
        let tier: Tier = self
            .tier
            .parse()
            .map_err(|e| anyhow::anyhow!("--tier: {e}"))?;
        let host = host(client, self.host.as_deref())?;
        // A start a moment ahead, so that it is not "before now" when the daemon applies it.
        let start = Timestamp::from_millis(wall_ms()? + 250)?;
        let end = start
            .checked_add(duration)
            .context("--for reaches past the end of time")?;
        let window = Window::new(start, end).map_err(|e| anyhow::anyhow!("--for: {e}"))?;
        let events = client.act(&Action::CreateReservation(action::CreateReservation {
            tenant,
            host,
            vector,
            window,
            tier,
        }))?;
        let id = events
            .iter()
            .find_map(|e| match e {
                Event::ReservationCreated { reservation, .. } => Some(*reservation),
                _ => None,
            })
            .context("the daemon made no reservation")?;
        let wait = start.millis() - wall_ms()?;
        if wait > 0 {
            std::thread::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0) + 20));
        }
        Ok((id, true))
    }
}

/// Binds `name` to `reservation`; the new workload's id.
pub fn bind(
    client: &Client,
    tenant: TenantId,
    reservation: ReservationId,
    name: &str,
) -> anyhow::Result<WorkloadId> {
    let events = client.act(&Action::BindWorkload(action::BindWorkload {
        tenant,
        reservation,
        name: name.to_string(),
    }))?;
    events
        .iter()
        .find_map(|e| match e {
            Event::WorkloadBound { workload, .. } => Some(*workload),
            _ => None,
        })
        .context("the daemon bound no workload")
}

/// The daemon's view of one workload.
pub fn view(client: &Client, workload: WorkloadId) -> anyhow::Result<Option<Value>> {
    let all = client.get("/v1/agent/workloads")?;
    Ok(all["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["id"].as_u64() == Some(workload.0))
        .cloned())
}

/// Waits until the daemon has read back `workload`'s memory limit in force (it is applied at
/// once on a bind); an error if that takes longer than `within`.
pub fn wait_in_force(
    client: &Client,
    workload: WorkloadId,
    within: Duration,
) -> anyhow::Result<()> {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = view(client, workload)? {
            let memory = &v["limits"]["in_force"][ResourceKind::Memory.index()];
            if !memory.is_null() {
                return Ok(());
            }
            if v["degraded"] == true {
                bail!(
                    "shardex could not apply the workload's limits: {}",
                    v["limits"]["degraded"]
                );
            }
        }
        if Instant::now() >= end {
            bail!(
                "the workload's limits were not in force after {} s (is `shardex run` in act mode?)",
                within.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The command name of `pid`, for a default cgroup name.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| cgroup_leaf(c.trim()))
        .unwrap_or_else(|_| "process".into())
}

fn add(args: &AddArgs) -> anyhow::Result<ExitCode> {
    if let Some(domain) = &args.libvirt {
        return add_domain(args, domain);
    }
    let client = args.daemon.client()?;
    let tree = CgroupTree::probe()?;
    // What is to be added is checked before anything is made.
    let processes = match (&args.cgroup, args.pid) {
        (Some(path), _) => {
            if !tree.exists(path) {
                bail!(
                    "there is no cgroup {path} in every hierarchy ({})",
                    tree.roots()
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Vec::new()
        }
        (None, Some(pid)) => process_tree(pid)?,
        (None, None) => bail!("give --cgroup PATH or --pid PID"),
    };
    let tenant = tenant(&client, &args.placement.tenant)?;
    let (reservation, made_reservation) =
        args.placement
            .reservation(&client, &args.daemon.data, tenant)?;
    let cancel = || {
        if made_reservation {
            let _ = client.act(&Action::CancelReservation(action::CancelReservation {
                tenant,
                reservation,
            }));
        }
    };
    let (name, made) = match (&args.cgroup, args.pid) {
        (Some(path), _) => (path.trim_start_matches('/').to_string(), false),
        (None, Some(pid)) => {
            let leaf = args
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{pid}", comm(pid)));
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
            for &p in &processes {
                match tree.attach(&name, p) {
                    // A descendant that exited since it was listed.
                    Err(shardex_host::tree::TreeError::NoProcess(q)) if q != pid => {}
                    Err(e) => {
                        // Nothing half-done: the processes go back to the root cgroup.
                        let _ = tree.remove(&name);
                        cancel();
                        return Err(e.into());
                    }
                    Ok(()) => {}
                }
            }
            (name, true)
        }
        (None, None) => bail!("give --cgroup PATH or --pid PID"),
    };
    bind_and_report(&client, tenant, reservation, &name, || {
        if made {
            let _ = tree.remove(&name);
        }
        cancel();
    })
}

/// Binds `name` in `reservation`, undoing with `undo` if that fails, waits for its limits to
/// be in force and says so.
fn bind_and_report(
    client: &Client,
    tenant: TenantId,
    reservation: ReservationId,
    name: &str,
    undo: impl FnOnce(),
) -> anyhow::Result<ExitCode> {
    let workload = match bind(client, tenant, reservation, name) {
        Ok(w) => w,
        Err(e) => {
            undo();
            return Err(e);
        }
    };
    wait_in_force(client, workload, Duration::from_secs(15))?;
    outln!(
        "workload {} ({name}) in reservation {}",
        workload.0,
        reservation.0
    );
    Ok(ExitCode::SUCCESS)
}

/// Workload names that are libvirt domains start with this (`libvirt:DOMAIN`).
pub const LIBVIRT_PREFIX: &str = "libvirt:";

/// `workload add --libvirt DOMAIN`: the domain checked in libvirt, then bound by name.
fn add_domain(args: &AddArgs, domain: &str) -> anyhow::Result<ExitCode> {
    if domain.trim().is_empty() || domain.contains(char::is_whitespace) {
        bail!("--libvirt {domain:?}: a domain's name or UUID, without spaces");
    }
    #[cfg(feature = "libvirt")]
    shardex_host::libvirt::check_domain(&args.libvirt_uri, domain)?;
    #[cfg(not(feature = "libvirt"))]
    bail!(
        "this shardex was built without libvirt: build it with `cargo build --release --features libvirt` (needs libvirt-dev) to add {domain} at {}",
        args.libvirt_uri
    );
    #[cfg_attr(not(feature = "libvirt"), allow(unreachable_code))]
    {
        let client = args.daemon.client()?;
        let tenant = tenant(&client, &args.placement.tenant)?;
        let (reservation, made_reservation) =
            args.placement
                .reservation(&client, &args.daemon.data, tenant)?;
        let name = format!("{LIBVIRT_PREFIX}{domain}");
        bind_and_report(&client, tenant, reservation, &name, || {
            if made_reservation {
                let _ = client.act(&Action::CancelReservation(action::CancelReservation {
                    tenant,
                    reservation,
                }));
            }
        })
    }
}

/// One number of a view's `[Option<u64>; 4]` field, or "-".
fn cell(v: &Value, kind: ResourceKind) -> String {
    let x = &v[kind.index()];
    if let Some(n) = x.as_u64() {
        human(kind, n)
    } else if x.is_null() {
        "-".into()
    } else {
        // `Some(None)` in force: unlimited.
        "max".into()
    }
}

/// An amount as people read it: cores, MiB, Mbit/s, IOPS.
pub fn human(kind: ResourceKind, n: u64) -> String {
    match kind {
        ResourceKind::Cpu => format!("{:.2}", n as f64 / 1000.0),
        ResourceKind::Memory => format!("{}Mi", n >> 20),
        ResourceKind::Net => format!("{:.1}M", n as f64 / 1e6),
        ResourceKind::Iops => n.to_string(),
    }
}

fn list(daemon: &Daemon, json: bool) -> anyhow::Result<ExitCode> {
    let client = daemon.client()?;
    let all = client.get("/v1/agent/workloads")?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = all["workloads"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        outln!("no workloads");
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<4} {:<28} {:<12} {:<4} {:<7} {:>9} {:>9} {:>9} {:>9} {:>4}  STATE",
        "ID",
        "NAME",
        "TENANT",
        "RES",
        "KIND",
        "USAGE",
        "P95",
        "ENTITLED",
        "IN FORCE",
        "OOM"
    );
    for w in rows {
        let state = if w["resolved"] == false {
            "no such cgroup".to_string()
        } else if w["degraded"] == true {
            format!("degraded: {}", w["limits"]["degraded"])
        } else {
            "ok".into()
        };
        let mut first = true;
        for kind in ResourceKind::ALL {
            let i = kind.index();
            let entitled = w["entitlement"][i].as_u64().unwrap_or(0);
            let in_force = &w["limits"]["in_force"][i];
            // Kinds the workload neither has nor is limited in are left out.
            if entitled == 0 && in_force.is_null() && w["usage"][i].as_u64().unwrap_or(0) == 0 {
                continue;
            }
            let p95 = w["forecast"][i]["p95"]
                .as_u64()
                .map_or_else(|| "-".into(), |n| human(kind, n));
            let in_force = if in_force.is_null() {
                "-".into()
            } else {
                in_force
                    .as_u64()
                    .map_or_else(|| "max".into(), |n| human(kind, n))
            };
            let at_limit = if w["censored"][i] == true {
                " (at limit)"
            } else {
                ""
            };
            let (id, name, tenant, res, oom, st) = if first {
                (
                    w["id"].to_string(),
                    w["name"].as_str().unwrap_or("").to_string(),
                    w["tenant"].as_str().unwrap_or("").to_string(),
                    w["reservation"].to_string(),
                    w["oom_kills"].to_string(),
                    state.clone(),
                )
            } else {
                Default::default()
            };
            first = false;
            outln!(
                "{id:<4} {name:<28} {tenant:<12} {res:<4} {:<7} {:>9} {p95:>9} {:>9} {in_force:>9} {oom:>4}  {st}{at_limit}",
                kind.to_string(),
                cell(&w["usage"], kind),
                human(kind, entitled),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Takes a workload out: unbinds it, then removes a cgroup shardex made for it.
pub fn take_out(
    client: &Client,
    tenant: TenantId,
    workload: WorkloadId,
    name: &str,
) -> anyhow::Result<()> {
    client.act(&Action::UnbindWorkload(action::UnbindWorkload {
        tenant,
        workload,
    }))?;
    let rel = name.trim_start_matches('/');
    if rel.starts_with(&format!("{}/", shardex_host::tree::MANAGED_PARENT)) {
        // Its limits come off (the loop clears them on unbind); then the cgroup goes, and its
        // reservation's group with it once that holds no other workload.
        let tree = CgroupTree::probe()?;
        if tree.exists(rel) {
            tree.remove(rel).with_context(|| {
                format!("the workload was unbound, but its cgroup {name} stays")
            })?;
        }
        if let Some((group, _)) = rel.rsplit_once('/')
            && group != shardex_host::tree::MANAGED_PARENT
        {
            tree.remove_if_empty(group);
        }
    }
    Ok(())
}

fn remove(daemon: &Daemon, which: &str, cancel: bool) -> anyhow::Result<ExitCode> {
    let client = daemon.client()?;
    let all = client.get("/v1/agent/workloads")?;
    let found = all["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| {
            w["name"].as_str().map(|n| n.trim_start_matches('/'))
                == Some(which.trim_start_matches('/'))
                || w["id"].as_u64().map(|i| i.to_string()).as_deref() == Some(which)
        })
        .cloned()
        .collect::<Vec<_>>();
    let w = match found.as_slice() {
        [w] => w,
        [] => bail!("there is no workload {which:?} (see `shardex workload list`)"),
        _ => bail!("{which:?} names several workloads (of different tenants): give its id"),
    };
    let id = WorkloadId(w["id"].as_u64().context("a workload without an id")?);
    let reservation = ReservationId(w["reservation"].as_u64().unwrap_or(0));
    let tenant_name = w["tenant"].as_str().unwrap_or("");
    let tenant = tenant_id(&client, tenant_name)?;
    let name = w["name"].as_str().unwrap_or("").to_string();
    take_out(&client, tenant, id, &name)?;
    outln!("workload {} ({name}) removed", id.0);
    if cancel {
        client.act(&Action::CancelReservation(action::CancelReservation {
            tenant,
            reservation,
        }))?;
        outln!("reservation {} cancelled", reservation.0);
    }
    Ok(ExitCode::SUCCESS)
}

/// An existing tenant's id.
fn tenant_id(client: &Client, name: &str) -> anyhow::Result<TenantId> {
    find_tenant(client, name)?.with_context(|| format!("there is no tenant {name:?}"))
}

/// The id of the tenant named `name`, if there is one.
fn find_tenant(client: &Client, name: &str) -> anyhow::Result<Option<TenantId>> {
    let all = client.get("/v1/tenants")?;
    Ok(all["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == name)
        .and_then(|t| t["id"].as_u64())
        .map(TenantId))
}

/// `text` as a cgroup name part: what a cgroup name can't hold becomes `_`.
pub fn cgroup_leaf(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
