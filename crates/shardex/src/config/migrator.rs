//! `[migrator]`: how the engine's moves between hosts are carried out.

use serde::{Deserialize, Serialize};
use shardex_core::Span;

use super::text::*;

use super::EngineConfig;

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
