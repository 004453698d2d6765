//! shardex-forecast: turns samples into Resource Demand Vectors, and measures how well any
//! policy would have allocated over a recorded trace. Pure: no I/O, no clock.
//!
//! Every policy implements [`shardex_core::ports::Forecaster`] for one series (one workload,
//! one resource kind):
//! * [`static_policy`]: the provisioned size (what the customer reserved).
//! * [`reactive`]: the last observed value plus a fixed margin.
//! * [`vpa`]: the Kubernetes VPA recommender and updater.
//! * [`autopilot`]: Google Autopilot's moving-window and ML recommenders.
//! * [`adaptive`]: ours (`shardex`): seasonal base forecasts, online-calibrated quantiles,
//!   fast reaction to unpredicted spikes.
//!
//! [`replay`] drives policies through a trace without peeking and computes the figures.
//!
//! ```
//! use shardex_core::{ResourceKind, Sample, Span, Timestamp};
//! use shardex_forecast::{Policy, adaptive::Params};
//!
//! let mut f = Policy::Shardex.build(ResourceKind::Cpu, None, &Params::default()).unwrap();
//! for i in 0..48 {
//!     f.observe(Sample { time: Timestamp::from_secs(i * 300).unwrap(), value: 500 }, None);
//! }
//! // Decided now for five minutes from now: enough for the steady 500 millicores seen.
//! let allocation = f.recommend(Timestamp::from_secs(48 * 300).unwrap(), Span::from_secs(300));
//! assert!(allocation >= 500);
//! assert_eq!("vpa".parse::<Policy>().unwrap(), Policy::Vpa);
//! ```

pub mod adaptive;
pub mod autopilot;
pub mod budget;
pub mod censoring;
mod convert;
pub mod frontier;
pub mod histogram;
pub mod reactive;
pub mod replay;
pub mod static_policy;
pub mod vpa;

use std::fmt;
use std::str::FromStr;

use shardex_core::ResourceKind;
use shardex_core::ports::Forecaster;
use thiserror::Error;

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ForecastError {
    /// A policy name that is not one of ours.
    #[error("unknown policy {0:?} (expected one of: {names})", names = Policy::ALL.map(|p| p.name()).join(", "))]
    UnknownPolicy(String),
}

/// The allocation policies the replay can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    /// The provisioned size.
    Static,
    /// Last value plus a margin.
    Reactive,
    /// Kubernetes VPA.
    Vpa,
    /// Google Autopilot, ML recommender.
    Autopilot,
    /// Google Autopilot, moving-window recommender.
    AutopilotWindow,
    /// Ours.
    Shardex,
}

impl Policy {
    /// Every policy, in report order.
    pub const ALL: [Policy; 6] = [
        Policy::Static,
        Policy::Reactive,
        Policy::Vpa,
        Policy::Autopilot,
        Policy::AutopilotWindow,
        Policy::Shardex,
    ];

    /// Name used on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Policy::Static => "static",
            Policy::Reactive => "reactive",
            Policy::Vpa => "vpa",
            Policy::Autopilot => "autopilot",
            Policy::AutopilotWindow => "autopilot-window",
            Policy::Shardex => "shardex",
        }
    }

    /// A forecaster for one series of `kind`; `provisioned` is the workload's reserved size of
    /// that kind, if known. `None` when the policy can't serve the series (static without a
    /// provisioned size).
    pub fn build(
        self,
        kind: ResourceKind,
        provisioned: Option<u64>,
        shardex: &adaptive::Params,
    ) -> Option<Box<dyn Forecaster>> {
        Some(match self {
            Policy::Static => Box::new(static_policy::Static::new(provisioned?)),
            Policy::Reactive => Box::new(reactive::Reactive::new(reactive::DEFAULT_MARGIN)),
            Policy::Vpa => Box::new(vpa::Vpa::new(kind)),
            Policy::Autopilot => Box::new(autopilot::MlRecommender::new(kind)),
            Policy::AutopilotWindow => Box::new(autopilot::MovingWindow::new(kind)),
            Policy::Shardex => {
                // A budget is the allocation's quantile level, held online (`budget.rs`).
                let mut params = *shardex;
                if let Some(b) = shardex.budget(kind) {
                    match kind {
                        ResourceKind::Memory => params.memory_level = 1.0 - b,
                        _ => params.throttle_level = 1.0 - b,
                    }
                }
                let hold = match kind {
                    ResourceKind::Memory => censoring::oom_hold(shardex.budget(kind)),
                    _ => shardex_core::censoring::OOM_HOLD,
                };
                Box::new(censoring::Censored::holding(
                    adaptive::Adaptive::new(kind, params),
                    hold,
                ))
            }
        })
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = ForecastError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| ForecastError::UnknownPolicy(s.to_string()))
    }
}
