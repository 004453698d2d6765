//! `static`: allocate what was provisioned, always. The baseline of a static-reservation cloud.

use shardex_core::ports::Forecaster;
use shardex_core::{Horizon, Quantiles, Sample, Span, Timestamp};

/// Always the provisioned size.
#[derive(Debug, Clone)]
pub struct Static {
    provisioned: u64,
}

impl Static {
    /// A policy that always allocates `provisioned`.
    pub fn new(provisioned: u64) -> Self {
        Self { provisioned }
    }
}

impl Forecaster for Static {
    fn observe(&mut self, _: Sample, _: Option<u64>) {}

    fn forecast(&mut self, _: Timestamp, horizon: Horizon) -> Vec<Quantiles> {
        vec![Quantiles::point(self.provisioned); horizon.steps as usize]
    }

    fn recommend(&mut self, _: Timestamp, _: Span) -> u64 {
        self.provisioned
    }
}
