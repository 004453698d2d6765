//! `[engine]`: the control loop.

use serde::{Deserialize, Deserializer, Serialize};
use shardex_core::Span;

use super::text::*;

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
