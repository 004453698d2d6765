//! `shardex.toml`: every key, its default, and validation that names what was wrong.

use std::net::SocketAddr;
use std::path::Path;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use shardex_core::billing::DEFAULT_LENDER_SHARE;
use shardex_core::market::PriceCurve;
use shardex_core::pricing::{DurationTier, TierFactors, VolumeTier};
use shardex_core::{LedgerParams, PriceTable, PriceVector, ShardSizes, Span};
use thiserror::Error;

/// Errors reading or validating the configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("could not read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key, or a value of the wrong form.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, which quotes the line, the key and what is allowed.
        message: String,
    },
    /// A value of the right form but not allowed.
    #[error("{path}: {key} = {value}: {allowed}")]
    Invalid {
        /// The file.
        path: String,
        /// The key, dotted.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
}

/// The whole configuration; every section and key is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Shard sizes (fixed once a data folder exists).
    pub shards: ShardSizes,
    /// The local host.
    pub host: HostConfig,
    /// Ledger behaviour.
    pub ledger: LedgerConfig,
    /// The HTTP API.
    pub api: ApiConfig,
    /// The price table and how lenders are paid.
    pub pricing: PricingConfig,
    /// Dynamic market prices.
    pub market: MarketConfig,
    /// Where new hosts come from when the engine runs out of room.
    pub provisioner: ProvisionerConfig,
    /// How workloads move between hosts.
    pub migrator: MigratorConfig,
    /// The control loop.
    pub engine: EngineConfig,
}

/// `[migrator]`: how the engine's moves between hosts are carried out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigratorConfig {
    /// `none`, `command` or `qmp`.
    pub kind: MigratorKind,
    /// For `command`: the executable and its arguments.
    pub command: Vec<String>,
    /// For `command`: how long one call may take.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub timeout: Span,
    /// How long a move may run before it counts as failed.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub max_duration: Span,
    /// For `qmp`: per destination host (by name), its QEMU waiting with `-incoming defer`.
    pub incoming: std::collections::BTreeMap<String, IncomingConfig>,
}

/// Which migrator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigratorKind {
    /// None: a move is a recommendation (logged and in the decisions); nothing moves.
    #[default]
    None,
    /// An executable (e.g. a stop-and-restart of a cgroup workload over ssh).
    Command,
    /// QEMU live migration over QMP.
    Qmp,
}

/// A destination host's QEMU waiting for a VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingConfig {
    /// Its QMP socket.
    pub socket: std::path::PathBuf,
    /// The migration URI it listens on, e.g. `tcp:10.0.0.2:4444`.
    pub uri: String,
}

impl Default for MigratorConfig {
    fn default() -> Self {
        Self {
            kind: MigratorKind::None,
            command: Vec::new(),
            timeout: Span::from_secs(30),
            max_duration: Span::from_secs(3600),
            incoming: std::collections::BTreeMap::new(),
        }
    }
}

impl MigratorConfig {
    /// The migrator this section describes (a VM's QMP socket from `engine.qmp_sockets`).
    pub fn build(&self, engine: &EngineConfig) -> Box<dyn shardex_core::ports::Migrator + Send> {
        match self.kind {
            MigratorKind::None => Box::new(shardex_core::ports::NoMigrator),
            MigratorKind::Command => {
                let (program, args) = self.command.split_first().map_or_else(
                    || (String::new(), Vec::new()),
                    |(p, a)| (p.clone(), a.to_vec()),
                );
                Box::new(crate::migrate::CommandMigrator::new(
                    program.into(),
                    args,
                    std::time::Duration::from_millis(self.timeout.millis()),
                    self.max_duration,
                ))
            }
            MigratorKind::Qmp => {
                let mut m = shardex_host::qmp::QmpMigrator::new();
                for (name, socket) in &engine.qmp_sockets {
                    m = m.with_vm(name.clone(), socket.clone());
                }
                for (host, i) in &self.incoming {
                    m = m.with_incoming(
                        host.clone(),
                        shardex_host::qmp::Incoming {
                            socket: i.socket.clone(),
                            uri: i.uri.clone(),
                        },
                    );
                }
                Box::new(m)
            }
        }
    }
}

/// `[engine]`: the control loop of `shardex run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// `recommend` (decide and record, change nothing) or `act`.
    pub mode: EngineMode,
    /// How often workloads are sampled.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub sample_every: Span,
    /// How often the engine forecasts and decides.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub decide_every: Span,
    /// Forecasting policy (parsed once, here).
    #[serde(deserialize_with = "policy_text", serialize_with = "display")]
    pub policy: shardex_forecast::Policy,
    /// How long every forecast must stay under a workload's allocation before it shrinks
    /// (the scale-down cool-down).
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub scale_down_after: Span,
    /// How much of each workload's sample history is kept (and fed back after a restart).
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub history: Span,
    /// Failed actuations in a row before a workload is marked degraded in that kind.
    pub degrade_after: u32,
    /// How often what is in force is read back even when nothing changed (a limit changed
    /// behind shardex's back is put back and recorded).
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub check_every: Span,
    /// How `act` mode applies allocations: `cgroup` (live, to each workload's cgroup) or
    /// `simulated` (recorded only, for trying the loop on a machine it must not touch).
    pub actuator: ActuatorKind,
    /// Block devices (`major:minor`) whose IOPS the cgroup actuator throttles; none: IOPS
    /// are not enforced.
    #[serde(deserialize_with = "devices_text", serialize_with = "displays")]
    pub iops_devices: Vec<shardex_host::cgroup::BlockDevice>,
    /// Workload name → the network interface its traffic leaves by, which the tc actuator
    /// shapes to its network allocation; workloads not listed are not shaped.
    pub net_interfaces: std::collections::BTreeMap<String, String>,
    /// Workload name → the QMP socket of the QEMU/KVM VM it is: its cpu (vCPU hot-plug),
    /// memory (balloon) and IOPS (block throttling) are applied there instead of to its cgroup.
    pub qmp_sockets: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// Workload name → the host's end of the VM's `org.shardex.guest.0` virtio-serial port (a
    /// unix socket QEMU or libvirt listens on), where `shardex guest` inside it reports: the
    /// VM's memory samples are then what its applications use.
    pub guest_channels: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// Where libvirt is, for `libvirt:DOMAIN` workloads (a build with the `libvirt` feature).
    pub libvirt_uri: String,
}

/// Where `act` mode's allocations go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActuatorKind {
    /// The workload's cgroup: cpu quota and memory limit, written live and read back.
    #[default]
    Cgroup,
    /// Nowhere: what would be applied is only recorded.
    Simulated,
}

/// What the control loop does with its decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineMode {
    /// Decide and record only.
    #[default]
    Recommend,
    /// Commit to the ledger and actuate.
    Act,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            mode: EngineMode::Recommend,
            sample_every: Span::from_secs(10),
            decide_every: Span::from_secs(60),
            policy: shardex_forecast::Policy::Shardex,
            scale_down_after: Span::from_secs(900),
            history: Span::from_secs(8 * 86_400),
            degrade_after: 5,
            check_every: Span::from_secs(60),
            actuator: ActuatorKind::Cgroup,
            iops_devices: Vec::new(),
            net_interfaces: std::collections::BTreeMap::new(),
            qmp_sockets: std::collections::BTreeMap::new(),
            guest_channels: std::collections::BTreeMap::new(),
            libvirt_uri: "qemu:///system".into(),
        }
    }
}

/// `[provisioner]`: `kind = "static"` with a list of standby hosts, or `kind = "command"`
/// running an executable that talks to a cloud API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisionerConfig {
    /// `static` or `command`.
    pub kind: ProvisionerKind,
    /// For `static`: standby hosts, joined in order.
    pub standby: Vec<StandbyHost>,
    /// For `command`: the executable and its arguments.
    pub command: Vec<String>,
    /// For `command`: how long it may take.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub timeout: Span,
}

/// Which provisioner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionerKind {
    /// Standby hosts from the configuration.
    #[default]
    Static,
    /// An executable.
    Command,
}

/// A standby host of the `static` provisioner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyHost {
    /// Its name.
    pub name: String,
    /// CPU in millicores.
    pub cpu_millicores: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Bandwidth in bit/s.
    #[serde(default)]
    pub net_bps: u64,
    /// Storage IOPS.
    #[serde(default)]
    pub iops: u64,
}

impl Default for ProvisionerConfig {
    fn default() -> Self {
        Self {
            kind: ProvisionerKind::Static,
            standby: Vec::new(),
            command: Vec::new(),
            timeout: Span::from_secs(300),
        }
    }
}

impl ProvisionerConfig {
    /// The provisioner this section describes.
    pub fn build(&self, sizes: &ShardSizes) -> Box<dyn shardex_core::ports::Provisioner + Send> {
        match self.kind {
            ProvisionerKind::Static => Box::new(shardex_core::ports::StaticProvisioner::new(
                self.standby
                    .iter()
                    .map(|h| shardex_core::ports::NewHost {
                        name: h.name.clone(),
                        capacity: sizes.supply_vector(shardex_core::PhysicalVector([
                            h.cpu_millicores,
                            h.memory_bytes,
                            h.net_bps,
                            h.iops,
                        ])),
                    })
                    .collect(),
            )),
            ProvisionerKind::Command => {
                let (program, args) = self.command.split_first().map_or_else(
                    || (String::new(), Vec::new()),
                    |(p, a)| (p.clone(), a.to_vec()),
                );
                Box::new(crate::provision::CommandProvisioner {
                    program: program.into(),
                    args,
                    timeout: std::time::Duration::from_millis(self.timeout.millis()),
                })
            }
        }
    }
}

/// `[pricing]`: list prices and their tiers, as the price table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// List price per shard-hour, per kind.
    pub shard_hour: PriceVector,
    /// Graduated volume discounts: from this many shards, this factor.
    pub volume_tiers: Vec<VolumeTier>,
    /// Commitment discounts: a commitment at least this long costs this factor, all of it.
    pub duration_tiers: Vec<DurationTierConfig>,
    /// Multipliers by priority tier (reservations and leases).
    pub tier_factors: TierFactors,
    /// Multiplier for immediate over scheduled delivery (reservations and leases).
    pub immediate_premium: Decimal,
    /// Share of a lease's charge credited to the lender; the provider keeps the rest.
    pub lender_share: Decimal,
}

/// One duration tier with a readable duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationTierConfig {
    /// Shortest commitment of the tier, like `"1d"`.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub from: Span,
    /// Multiplier of the list price.
    pub factor: Decimal,
}

impl Default for PricingConfig {
    fn default() -> Self {
        let t = PriceTable::default();
        Self {
            shard_hour: t.shard_hour,
            volume_tiers: t.volume_tiers,
            duration_tiers: t
                .duration_tiers
                .iter()
                .map(|d| DurationTierConfig {
                    from: d.from,
                    factor: d.factor,
                })
                .collect(),
            tier_factors: t.tier_factors,
            immediate_premium: t.immediate_premium,
            lender_share: DEFAULT_LENDER_SHARE,
        }
    }
}

impl PricingConfig {
    /// The price table this section describes.
    pub fn table(&self) -> PriceTable {
        PriceTable {
            shard_hour: self.shard_hour,
            volume_tiers: self.volume_tiers.clone(),
            duration_tiers: self
                .duration_tiers
                .iter()
                .map(|d| DurationTier {
                    from: d.from,
                    factor: d.factor,
                })
                .collect(),
            tier_factors: self.tier_factors,
            immediate_premium: self.immediate_premium,
        }
    }
}

/// `[market]`: how the pool's price per (host, kind) follows supply and demand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketConfig {
    /// The utilisation curve, smoothing and history.
    #[serde(flatten)]
    pub curve: PriceCurve,
    /// How often prices are updated.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub update_every: Span,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            curve: PriceCurve::default(),
            update_every: Span::from_secs(60),
        }
    }
}

/// `[host]`: what `shardex run` registers for the machine it runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Host name; default: the machine's hostname.
    pub name: Option<String>,
    /// CPU capacity in millicores; default: online cores × 1000.
    pub cpu_millicores: Option<u64>,
    /// Memory capacity in bytes; default: MemTotal of /proc/meminfo.
    pub memory_bytes: Option<u64>,
    /// Network bandwidth in bit/s (not detectable reliably).
    pub net_bps: u64,
    /// Storage IOPS (not detectable reliably).
    pub iops: u64,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            name: None,
            cpu_millicores: None,
            memory_bytes: None,
            net_bps: 10_000_000_000,
            iops: 100_000,
        }
    }
}

/// `[ledger]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Notice before reclaimed or preempted shards move back.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub reclaim_notice: Span,
    /// Lowest price per shard-hour of unreserved capacity, per kind.
    pub provider_floor: PriceVector,
    /// How long a modification the host has no room for stays pending (while workloads move
    /// off the host or a host is provisioned) before it gives up.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub pending_for: Span,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        let p = LedgerParams::default();
        Self {
            reclaim_notice: p.reclaim_notice,
            provider_floor: p.provider_floor,
            pending_for: p.pending_for,
        }
    }
}

impl Config {
    /// The ledger parameters `[ledger]` and `[pricing]` ask for.
    pub fn ledger_params(&self) -> LedgerParams {
        LedgerParams {
            reclaim_notice: self.ledger.reclaim_notice,
            provider_floor: self.ledger.provider_floor,
            immediate_premium: self.pricing.immediate_premium,
            tier_factors: self.pricing.tier_factors,
            pending_for: self.ledger.pending_for,
        }
    }
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address the API and dashboard listen on.
    pub listen: SocketAddr,
    /// Requests a second each tenant token may make on average (0: no limit).
    pub rate_limit: u32,
    /// How many requests a tenant token may make at once, above the average.
    pub rate_burst: u32,
    /// Whether `GET /v1/overview` (hosts' capacity split and markets, nothing of a tenant's:
    /// the dashboard's first page) answers without a token.
    pub public_overview: bool,
    /// Whether `GET /metrics` answers without the admin token (per-workload numbers: turn on
    /// only where the port is the operator's alone).
    pub public_metrics: bool,
    /// How much of each workload's past the daemon keeps in memory for its dashboard page.
    #[serde(deserialize_with = "span_text", serialize_with = "span_display")]
    pub history: Span,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            rate_limit: 100,
            rate_burst: 200,
            public_overview: true,
            public_metrics: false,
            history: Span::from_secs(3600),
        }
    }
}

impl ApiConfig {
    /// The per-token rate limit, `None` when off.
    pub fn rate(&self) -> Option<shardex_api::ratelimit::RateLimit> {
        Some(shardex_api::ratelimit::RateLimit {
            per_second: std::num::NonZeroU32::new(self.rate_limit)?,
            burst: std::num::NonZeroU32::new(self.rate_burst)?,
        })
    }
}

fn span_text<'de, D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

fn span_display<S: serde::Serializer>(span: &Span, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&span.to_string())
}

/// `engine.policy` read as a policy, or an error naming the key, the value and what is allowed.
fn policy_text<'de, D: Deserializer<'de>>(d: D) -> Result<shardex_forecast::Policy, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "engine.policy: {text:?} is not one of static, reactive, vpa, autopilot, autopilot-window, shardex"
        ))
    })
}

/// `engine.iops_devices` read as block devices, or an error naming the key and the value.
fn devices_text<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<shardex_host::cgroup::BlockDevice>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            t.parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "engine.iops_devices: {t:?} is not a block device as \"major:minor\" (see lsblk), e.g. \"8:0\""
                ))
            })
        })
        .collect()
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

fn displays<T: std::fmt::Display, S: serde::Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

impl Config {
    /// Parses and validates TOML text; `path` names the source in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Reads `path` if given; otherwise `default_path` if it exists; otherwise the defaults.
    pub fn load(
        path: Option<&Path>,
        default_path: &Path,
    ) -> Result<(Self, Option<String>), ConfigError> {
        let chosen = match path {
            Some(p) => p,
            None if default_path.exists() => default_path,
            None => return Ok((Config::default(), None)),
        };
        let shown = chosen.display().to_string();
        let text = std::fs::read_to_string(chosen).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Ok((Self::parse(&text, &shown)?, Some(shown)))
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |key, value: String, allowed| ConfigError::Invalid {
            path: path.to_string(),
            key,
            value,
            allowed,
        };
        let s = &self.shards;
        for (key, v) in [
            ("shards.cpu_millicores", s.cpu_millicores),
            ("shards.memory_bytes", s.memory_bytes),
            ("shards.net_bps", s.net_bps),
            ("shards.iops", s.iops),
        ] {
            if v == 0 {
                return Err(invalid(
                    key,
                    v.to_string(),
                    "a shard size must be at least 1",
                ));
            }
        }
        if self.api.rate_limit > 0 && self.api.rate_burst == 0 {
            return Err(invalid(
                "api.rate_burst",
                "0".into(),
                "at least 1 when api.rate_limit is set (0 turns the limit off)",
            ));
        }
        if let Some(name) = &self.host.name
            && (name.trim().is_empty() || name.len() > 128 || name.trim() != name.as_str())
        {
            return Err(invalid(
                "host.name",
                format!("{name:?}"),
                "1 to 128 characters without leading or trailing spaces",
            ));
        }
        for (key, v) in [
            ("host.cpu_millicores", self.host.cpu_millicores),
            ("host.memory_bytes", self.host.memory_bytes),
        ] {
            if v == Some(0) {
                return Err(invalid(
                    key,
                    "0".into(),
                    "a positive amount, or leave it out to detect it",
                ));
            }
        }
        if self.ledger.reclaim_notice.is_zero() {
            return Err(invalid(
                "ledger.reclaim_notice",
                "\"0s\"".into(),
                "a duration longer than zero",
            ));
        }
        if self.ledger.pending_for.is_zero() {
            return Err(invalid(
                "ledger.pending_for",
                "\"0s\"".into(),
                "a duration longer than zero",
            ));
        }
        if !self.ledger.provider_floor.is_non_negative() {
            return Err(invalid(
                "ledger.provider_floor",
                format!("{:?}", self.ledger.provider_floor),
                "prices of zero or more",
            ));
        }
        // The same bounds the ledger holds `configure` to (ledger/bounds.rs).
        if let Err(e) = shardex_core::ledger::bounds::params(&self.ledger_params()) {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                key: "ledger/pricing",
                value: e.to_string(),
                allowed: "a reclaim notice over 0 and at most 1d, an immediate premium from 1 to 10, tier factors over 0 and at most 100, prices from 0 to 1000000",
            });
        }
        if let Err(e) = self.pricing.table().validate() {
            return Err(ConfigError::Invalid {
                path: path.to_string(),
                key: "pricing",
                value: e.to_string(),
                allowed: "prices and factors of zero or more; tiers starting at 0 in increasing order",
            });
        }
        let share = self.pricing.lender_share;
        if share < Decimal::ZERO || share > Decimal::ONE {
            return Err(invalid(
                "pricing.lender_share",
                format!("\"{share}\""),
                "a share between 0 and 1",
            ));
        }
        let c = &self.market.curve;
        if c.min_factor < Decimal::ZERO || c.min_factor > Decimal::ONE {
            return Err(invalid(
                "market.min_factor",
                format!("\"{}\"", c.min_factor),
                "a factor between 0 and 1",
            ));
        }
        if c.kink <= Decimal::ZERO || c.kink > Decimal::ONE {
            return Err(invalid(
                "market.kink",
                format!("\"{}\"", c.kink),
                "a utilisation above 0 and at most 1",
            ));
        }
        if c.max_factor < Decimal::ONE {
            return Err(invalid(
                "market.max_factor",
                format!("\"{}\"", c.max_factor),
                "a factor of 1 or more",
            ));
        }
        if c.smoothing <= Decimal::ZERO || c.smoothing > Decimal::ONE {
            return Err(invalid(
                "market.smoothing",
                format!("\"{}\"", c.smoothing),
                "a share above 0 and at most 1 (1: no smoothing)",
            ));
        }
        if self.provisioner.kind == ProvisionerKind::Command && self.provisioner.command.is_empty()
        {
            return Err(invalid(
                "provisioner.command",
                "[]".into(),
                "the executable and its arguments, like [\"/usr/local/bin/new-host\", \"--zone\", \"a\"]",
            ));
        }
        if self.migrator.kind == MigratorKind::Command && self.migrator.command.is_empty() {
            return Err(invalid(
                "migrator.command",
                "[]".into(),
                "the executable and its arguments, like [\"/usr/local/bin/move-workload\"]",
            ));
        }
        if self.migrator.timeout.is_zero() || self.migrator.max_duration.is_zero() {
            return Err(invalid(
                "migrator.timeout",
                format!(
                    "\"{}\" / \"{}\"",
                    self.migrator.timeout, self.migrator.max_duration
                ),
                "durations longer than zero (timeout per call, max_duration per move)",
            ));
        }
        if self.migrator.kind == MigratorKind::Qmp && self.migrator.incoming.is_empty() {
            return Err(invalid(
                "migrator.incoming",
                "{}".into(),
                "per destination host a QEMU waiting with -incoming defer, like { \"host-2\" = { socket = \"/run/vm-in.qmp\", uri = \"tcp:10.0.0.2:4444\" } }",
            ));
        }
        if self.provisioner.timeout.is_zero() {
            return Err(invalid(
                "provisioner.timeout",
                "\"0s\"".into(),
                "a duration longer than zero",
            ));
        }
        if self.api.history > Span::from_secs(24 * 3600) {
            return Err(invalid(
                "api.history",
                format!("\"{}\"", self.api.history),
                "at most \"24h\" (it is kept in memory for every workload)",
            ));
        }
        if self.engine.sample_every.is_zero() || self.engine.decide_every.is_zero() {
            return Err(invalid(
                "engine.sample_every",
                format!(
                    "\"{}\" / \"{}\"",
                    self.engine.sample_every, self.engine.decide_every
                ),
                "durations longer than zero",
            ));
        }
        if self.engine.policy == shardex_forecast::Policy::Static {
            // A live workload has no provisioned size for the static policy to allocate.
            return Err(invalid(
                "engine.policy",
                "\"static\"".into(),
                "a forecasting policy for live workloads: reactive, vpa, autopilot, autopilot-window or shardex (static is a replay baseline)",
            ));
        }
        if self.engine.degrade_after == 0 {
            return Err(invalid(
                "engine.degrade_after",
                "0".into(),
                "at least 1 failed actuation",
            ));
        }
        for (workload, dev) in &self.engine.net_interfaces {
            if !shardex_host::tc::valid_interface(dev) {
                return Err(invalid(
                    "engine.net_interfaces",
                    format!("{{ {workload:?} = {dev:?} }}"),
                    "interface names of 1 to 15 characters, without '/' or spaces",
                ));
            }
        }
        for (workload, path) in &self.engine.qmp_sockets {
            if !path.is_absolute() {
                return Err(invalid(
                    "engine.qmp_sockets",
                    format!("{{ {workload:?} = {:?} }}", path.display().to_string()),
                    "absolute paths of QMP unix sockets (QEMU's -qmp unix:PATH,server=on,wait=off)",
                ));
            }
        }
        if self.engine.libvirt_uri.trim().is_empty() || !self.engine.libvirt_uri.contains(':') {
            return Err(invalid(
                "engine.libvirt_uri",
                format!("{:?}", self.engine.libvirt_uri),
                "a libvirt URI such as qemu:///system or xen:///system",
            ));
        }
        for (workload, path) in &self.engine.guest_channels {
            if !path.is_absolute() {
                return Err(invalid(
                    "engine.guest_channels",
                    format!("{{ {workload:?} = {:?} }}", path.display().to_string()),
                    "absolute paths of unix sockets (QEMU's -chardev socket,path=PATH,server=on,wait=off)",
                ));
            }
        }
        if self.market.update_every.is_zero() {
            return Err(invalid(
                "market.update_every",
                "\"0s\"".into(),
                "a duration longer than zero",
            ));
        }
        Ok(())
    }
}

/// The documented default configuration, as `shardex config defaults` prints it.
pub const DEFAULT_TOML: &str = r#"# shardex.toml: every key is optional; these are the defaults.

[shards]
# How much one shard of each kind is. Fixed once a data folder exists.
cpu_millicores = 10          # 1/100 of a core
memory_bytes = 16777216      # 16 MiB
net_bps = 1000000            # 1 Mbit/s
iops = 10

[host]
# name = "web-1"             # default: the machine's hostname
# cpu_millicores = 8000      # default: online cores x 1000
# memory_bytes = 34359738368 # default: MemTotal from /proc/meminfo
net_bps = 10000000000        # 10 Gbit/s: bandwidth can't be detected reliably
iops = 100000                # storage operations per second: can't be detected reliably

[ledger]
reclaim_notice = "30s"       # notice before reclaimed or preempted shards move back
pending_for = "1h"           # how long a change the host has no room for waits (pending)
# Lowest price per shard-hour of the provider's unreserved shards (exact decimals, as strings).
provider_floor = { cpu = "0", memory = "0", net = "0", iops = "0" }

[api]
listen = "127.0.0.1:7070"    # API under /v1, health at /v1/health
rate_limit = 100             # requests a second per tenant token, on average (0: no limit)
rate_burst = 200             # requests a tenant token may make at once; past both, 429
public_overview = true       # GET /v1/overview (hosts, markets; no tenant's data) without a token
public_metrics = false       # GET /metrics without the admin token (per-workload numbers)
history = "1h"               # each workload's past kept in memory for its dashboard page

[pricing]
# List price per shard-hour (close to public on-demand prices: a vCPU-hour 0.04, a GiB-hour
# of memory 0.005, a Gbit/s-hour 0.02, 1000 IOPS-hours 0.005).
shard_hour = { cpu = "0.0004", memory = "0.000078125", net = "0.00002", iops = "0.00005" }
# Graduated volume discounts by shard count (per reservation and kind).
volume_tiers = [
  { from_shards = 0, factor = "1" },
  { from_shards = 1000, factor = "0.9" },
  { from_shards = 10000, factor = "0.8" },
]
# Commitment discounts: a reservation at least this long costs this factor, all of it.
duration_tiers = [
  { from = "0s", factor = "1" },
  { from = "1d", factor = "0.9" },
  { from = "7d", factor = "0.75" },
  { from = "30d", factor = "0.6" },
]
# Multipliers by priority tier, for reservations and leases.
tier_factors = { best-effort = "0.5", standard = "1", premium = "1.5", critical = "2" }
immediate_premium = "1.25"   # immediate over scheduled delivery
lender_share = "0.8"         # share of a lease's charge credited to the lender

[market]
# Pool price per (host, kind) = list price x a utilisation curve, smoothed, never under
# the lenders' floors. Utilisation = (leased + waiting) / (leased + offered).
min_factor = "0.5"           # factor of an idle pool
kink = "0.8"                 # utilisation where the price reaches the list price
max_factor = "3"             # factor of a full pool
smoothing = "0.25"           # share of the way to the target moved per update
history = 1440               # price points kept per (host, kind)
update_every = "60s"

[provisioner]
# Where new hosts come from when moving workloads needs room that no host has.
# kind = "static": standby hosts that join in order, e.g.
#   standby = [{ name = "spare-1", cpu_millicores = 64000, memory_bytes = 549755813888 }]
# kind = "command": runs the executable with the request as JSON on stdin
#   ({"reason": .., "short_host": N, "needs": {"cpu": .., "memory": ..}}) and reads the new
#   host as JSON on stdout ({"name": .., "capacity": {"cpu": .., "memory": ..}} in shards);
#   a non-zero exit, a bad answer or the timeout fails the request.
#   command = ["/usr/local/bin/new-host", "--zone", "a"]
kind = "static"
standby = []
command = []
timeout = "5m"

[migrator]
# How the engine's moves between hosts are carried out (a short host's cheapest workload to a
# host with room; a drained host's workloads). The ledger moves a workload only once the
# migrator says the move completed.
# kind = "none": a move is a recommendation (logged, in the decisions); nothing moves.
# kind = "command": runs the executable with {"op": "start" | "status", "workload": {"id", "name"},
#   "from": {"id", "name"}, "to": {"id", "name"}} on stdin; it answers on stdout
#   {"status": "running" | "completed" | "failed", "reason": "..", "check_in_s": N}, e.g. a
#   cgroup workload stopped on one host and started on the other over ssh.
#   command = ["/usr/local/bin/move-workload"]
# kind = "qmp": QEMU live migration; each VM's socket from engine.qmp_sockets, and per
#   destination host a QEMU waiting with -incoming defer:
#   incoming = { "host-2" = { socket = "/run/vm-in.qmp", uri = "tcp:10.0.0.2:4444" } }
kind = "none"
command = []
timeout = "30s"              # per call of the command
max_duration = "1h"          # a move still running after this has failed

[engine]
# The control loop: sample every workload bound in the ledger whose name is a cgroup path
# (e.g. "system.slice/nginx.service"; "/" is the root), forecast, decide.
mode = "recommend"           # recommend: decide and record only; act: commit and actuate
sample_every = "10s"
decide_every = "60s"
policy = "shardex"
# Every forecast must stay under a workload's allocation this long before it shrinks.
scale_down_after = "15m"
# Sample history kept per workload (about 0.9 MB per workload per day at 10 s samples) and fed
# to the forecasters after a restart.
history = "8d"
# Failed actuations of a kind in a row before the workload is marked degraded in it (its
# leases of that kind are then released); retries go on with backoff up to 5 minutes.
degrade_after = 5
# What is in force is read back this often even when nothing changed; drift is put back.
check_every = "60s"
# act mode applies each workload's limits to its cgroup, live: hard limits (cpu quota, memory
# max, IOPS) are its entitlement (its reservation not lent out, plus its leases), the forecast
# only sets the soft knobs (cpu weight/shares, memory.high/soft limit); cgroup v1 or v2.
# "simulated" records them only.
actuator = "cgroup"
# Block devices ("major:minor", see lsblk) whose IOPS the cgroup actuator throttles, reads and
# writes each at the allocation; none: IOPS are not enforced.
iops_devices = []
# Workload name -> the interface its traffic leaves by (a VM's tap device), shaped by tc to the
# workload's network allocation (a tbf root qdisc), e.g. net_interfaces = { "vm-1" = "tap0" }.
net_interfaces = {}
# Workload name -> the QMP socket of the QEMU/KVM VM it is (QEMU's -qmp unix:PATH,server=on,
# wait=off): its cpu is applied as hot-plugged vCPUs, its memory as the balloon target and its
# IOPS as QEMU's block throttling, instead of to its cgroup,
# e.g. qmp_sockets = { "machine.slice/vm-1.scope" = "/run/vm-1.qmp" }.
qmp_sockets = {}
# Workload name -> the host's end of the VM's virtio-serial port org.shardex.guest.0 (QEMU's
# -chardev socket,id=g,path=PATH,server=on,wait=off -device virtserialport,chardev=g,
# name=org.shardex.guest.0), where `shardex guest` inside the VM reports what its applications
# use; the VM's memory samples are then theirs, e.g. guest_channels = { "vm-1" = "/run/vm-1.guest" }.
guest_channels = {}
# Where libvirt is, for workloads added with `shardex workload add --libvirt DOMAIN` (named
# libvirt:DOMAIN; a shardex built with `--features libvirt`): their memory, vCPUs (with a CFS
# quota) and IOPS are applied live through libvirt, and they are sampled from its statistics.
libvirt_uri = "qemu:///system"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_defaults_are_the_defaults() {
        assert_eq!(
            Config::parse(DEFAULT_TOML, "defaults").unwrap(),
            Config::default()
        );
        assert_eq!(Config::parse("", "empty").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_name_the_key_and_what_is_allowed() {
        let e = Config::parse("[shards]\ncpu_milicores = 5\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cpu_milicores") && e.contains("cpu_millicores"),
            "{e}"
        );
        let e = Config::parse("[gpu]\n", "x.toml").unwrap_err().to_string();
        assert!(e.contains("gpu") && e.contains("shards"), "{e}");
    }

    #[test]
    fn bad_values_name_key_value_and_what_is_allowed() {
        let e = Config::parse("[shards]\niops = 0\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "x.toml: shards.iops = 0: a shard size must be at least 1"
        );
        let e = Config::parse("[ledger]\nreclaim_notice = \"5 minutes\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reclaim_notice") && e.contains("5 minutes") && e.contains("90s"),
            "{e}"
        );
        for (text, key) in [
            ("[ledger]\nreclaim_notice = \"2d\"\n", "reclaim_notice"),
            (
                "[pricing]\nimmediate_premium = \"0\"\n",
                "immediate_premium",
            ),
        ] {
            let e = Config::parse(text, "x.toml").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("out of bounds"), "{e}");
        }
        for (text, key) in [
            ("[migrator]\nkind = \"command\"\n", "migrator.command"),
            ("[migrator]\nkind = \"qmp\"\n", "migrator.incoming"),
            ("[migrator]\nmax_duration = \"0s\"\n", "migrator.timeout"),
            ("[migrator]\nkind = \"ssh\"\n", "kind"),
        ] {
            let e = Config::parse(text, "x.toml").unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = Config::parse("[shards]\ncpu_millicores = -1\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cpu_millicores") && e.contains("-1"), "{e}");
        let e = Config::parse("[api]\nlisten = \"nowhere\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen") && e.contains("nowhere"), "{e}");
        let e = Config::parse("[ledger]\nprovider_floor = { cpu = \"-1\" }\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ledger.provider_floor") && e.contains("zero or more"),
            "{e}"
        );
        let e = Config::parse("[engine]\niops_devices = [\"8:0\", \"sda\"]\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("engine.iops_devices") && e.contains("\"sda\"") && e.contains("major:minor"),
            "{e}"
        );
        let e = Config::parse(
            "[engine]\nnet_interfaces = { \"vm-1\" = \"tap 0\" }\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("engine.net_interfaces") && e.contains("tap 0"),
            "{e}"
        );
        let e = Config::parse(
            "[engine]\nqmp_sockets = { \"vm-1\" = \"vm-1.qmp\" }\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("engine.qmp_sockets") && e.contains("vm-1.qmp") && e.contains("absolute"),
            "{e}"
        );
        let e = Config::parse("[pricing]\nlender_share = \"1.5\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "x.toml: pricing.lender_share = \"1.5\": a share between 0 and 1"
        );
        let e = Config::parse(
            "[pricing]\nduration_tiers = [{ from = \"1d\", factor = \"0.9\" }]\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("pricing") && e.contains("duration tiers"), "{e}");
        let e = Config::parse("[market]\nkink = \"0\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("market.kink"), "{e}");
        let e = Config::parse("[host]\nname = \" \"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("host.name"), "{e}");
    }
}
