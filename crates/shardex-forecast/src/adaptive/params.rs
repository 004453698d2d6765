//! The forecaster's tunables and their defaults.

use shardex_core::ResourceKind;

/// Tunables. Defaults are set from how fast each part should adapt and how bad a shortfall is,
/// not fitted to one trace; `shardex replay --tune name=value,...` overrides them for
/// experiments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Quantile level of cpu, net and iops allocations (a shortfall throttles).
    pub throttle_level: f64,
    /// Quantile level of memory allocations (a shortfall is an OOM kill).
    pub memory_level: f64,
    /// Step of the quantile trackers (log space: 0.05 moves a multiplier by about 5 %).
    pub eta: f64,
    /// Smoothing of the Holt-Winters level.
    pub level_alpha: f64,
    /// Smoothing of the Holt-Winters trend (the level's change per five-minute slot); a tenth
    /// of the level's, so the slope averages over many level moves.
    pub trend_beta: f64,
    /// Damping of the trend's extrapolation per slot: a trend fades rather than runs on.
    pub trend_damping: f64,
    /// Smoothing of the seasonal profiles.
    pub season_gamma: f64,
    /// Smoothing of the pinball losses used to pick a candidate.
    pub loss_alpha: f64,
    /// Decisions a scale-down waits: the allocation is the largest of the last this many.
    pub hold: f64,
    /// Ceiling on any quantile, as a multiple of the largest value of the last week.
    pub ceiling: f64,
    /// Use only this candidate (its index) instead of selecting; negative: select (experiments).
    pub only: f64,
    /// Minutes the allocation stays at least at a sample that exceeded it (a spike the model
    /// missed), whatever the candidates say.
    pub spike_hold_min: f64,
    /// Shortfall budgets per kind, in `ResourceKind::ALL` order, as shares of samples (0: none,
    /// the levels above decide); a budget sets its kind's allocation level (see `budget.rs`).
    pub budgets: [f64; 4],
    /// Step of the tracker on the memory allocation itself (log space; 0 turns it off): see
    /// [`Adaptive::track_output`].
    pub memory_output_eta: f64,
    /// Memory's allocation is the largest of this many best-ranked candidates at its level
    /// (1: the best alone; see the module's selection).
    pub memory_top: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            throttle_level: 0.98,
            memory_level: 0.998,
            eta: 0.05,
            level_alpha: 0.05,
            trend_beta: 0.005,
            trend_damping: 0.98,
            season_gamma: 0.05,
            loss_alpha: 0.01,
            hold: 1.0,
            only: -1.0,
            spike_hold_min: 10.0,
            ceiling: 1.1,
            budgets: [0.0; 4],
            memory_output_eta: 0.0,
            memory_top: 3.0,
        }
    }
}

impl Params {
    /// The shortfall budget of `kind`, if one is set.
    pub fn budget(&self, kind: ResourceKind) -> Option<f64> {
        let b = self.budgets[kind.index()];
        (b > 0.0).then_some(b)
    }

    /// These parameters with `name=value` overrides, comma-separated (for experiments).
    pub fn with_overrides(mut self, text: &str) -> Result<Self, String> {
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not name=value"))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{v:?} is not a number"))?;
            let slot = match k.trim() {
                "throttle_level" => &mut self.throttle_level,
                "memory_level" => &mut self.memory_level,
                "eta" => &mut self.eta,
                "level_alpha" => &mut self.level_alpha,
                "trend_beta" => &mut self.trend_beta,
                "trend_damping" => &mut self.trend_damping,
                "season_gamma" => &mut self.season_gamma,
                "loss_alpha" => &mut self.loss_alpha,
                "hold" => &mut self.hold,
                "only" => &mut self.only,
                "spike_hold_min" => &mut self.spike_hold_min,
                "ceiling" => &mut self.ceiling,
                "memory_output_eta" => &mut self.memory_output_eta,
                "memory_top" => &mut self.memory_top,
                other => return Err(format!("unknown shardex parameter {other:?}")),
            };
            *slot = v;
        }
        Ok(self)
    }
}
