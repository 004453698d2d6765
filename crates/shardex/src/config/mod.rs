//! `shardex.toml`: every key, its default, and validation that names what was wrong.

use std::path::Path;

use serde::{Deserialize, Serialize};
use shardex_core::{LedgerParams, ShardSizes};
use thiserror::Error;

mod api;
mod engine;
mod host;
mod migrator;
mod pricing;
mod provisioner;
#[cfg(test)]
mod tests;
mod text;
mod validate;

pub use api::ApiConfig;
pub use engine::{ActuatorKind, EngineConfig, EngineMode};
pub use host::{HostConfig, LedgerConfig};
pub use migrator::{MigratorConfig, MigratorKind};
pub use pricing::{MarketConfig, PricingConfig};
pub use provisioner::{ProvisionerConfig, ProvisionerKind};

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
}

pub const DEFAULT_TOML: &str = include_str!("default.toml");
