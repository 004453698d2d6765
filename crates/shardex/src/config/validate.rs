//! Validation: a value of the right form but not allowed is named with what is allowed.

use rust_decimal::Decimal;
use shardex_core::Span;

use super::{Config, ConfigError, MigratorKind, ProvisionerKind};

impl Config {
    pub(super) fn validate(&self, path: &str) -> Result<(), ConfigError> {
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
