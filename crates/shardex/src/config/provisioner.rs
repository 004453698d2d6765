//! `[provisioner]`: where new hosts come from.

use serde::{Deserialize, Serialize};
use shardex_core::{ShardSizes, Span};

use super::text::*;

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
