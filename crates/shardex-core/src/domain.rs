//! The objects the ledger keeps: hosts, tenants, reservations, modifications, workloads,
//! lease requests and leases, with the rules that belong to each alone.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::shard::{ResourceKind, ShardError, ShardVector};
use crate::time::{Span, Timestamp, Window};

macro_rules! id_type {
    ($(#[$doc:meta] $name:ident => $label:literal),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, " {}"), self.0)
            }
        }
    )*};
}

id_type! {
    /// Identifies a host.
    HostId => "host",
    /// Identifies a tenant.
    TenantId => "tenant",
    /// Identifies a reservation.
    ReservationId => "reservation",
    /// Identifies a modification of a reservation.
    ModificationId => "modification",
    /// Identifies a workload.
    WorkloadId => "workload",
    /// Identifies a lease.
    LeaseId => "lease",
    /// Identifies a lease request.
    RequestId => "lease request",
}

/// Errors in parsing domain values.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// A tier name that is not one of the four.
    #[error("unknown priority tier {0:?} (expected best-effort, standard, premium or critical)")]
    UnknownTier(String),
    /// A change that is not `+N`, `-N`, `=N`, `+P%` or `-P%`.
    #[error("invalid change {0:?}: write +10%, -4 (shards) or =8 (shards)")]
    BadChange(String),
    /// A percentage decrease of more than 100%.
    #[error("a decrease of {0} cannot go below zero; the most is -100%")]
    PercentBelowZero(String),
    /// A change for a kind that is not cpu, memory, net or iops.
    #[error(transparent)]
    Kind(#[from] ShardError),
}

/// Priority tier of a reservation; higher tiers win contention.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Runs on what is left; preempted first.
    BestEffort,
    /// The default tier.
    #[default]
    Standard,
    /// Served before standard.
    Premium,
    /// Served before everything else.
    Critical,
}

impl Tier {
    /// Every tier, lowest first.
    pub const ALL: [Tier; 4] = [
        Self::BestEffort,
        Self::Standard,
        Self::Premium,
        Self::Critical,
    ];

    /// Name used in config, the API and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Self::BestEffort => "best-effort",
            Self::Standard => "standard",
            Self::Premium => "premium",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Tier {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.name() == s.trim())
            .ok_or_else(|| DomainError::UnknownTier(s.to_string()))
    }
}

/// A price per shard-hour for each kind, in exact decimal money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceVector {
    /// Per cpu shard-hour.
    #[serde(default)]
    pub cpu: Decimal,
    /// Per memory shard-hour.
    #[serde(default)]
    pub memory: Decimal,
    /// Per net shard-hour.
    #[serde(default)]
    pub net: Decimal,
    /// Per iops shard-hour.
    #[serde(default)]
    pub iops: Decimal,
}

impl PriceVector {
    /// The same price for every kind.
    pub fn uniform(p: Decimal) -> Self {
        Self {
            cpu: p,
            memory: p,
            net: p,
            iops: p,
        }
    }

    /// Price of one kind.
    pub fn get(&self, kind: ResourceKind) -> Decimal {
        match kind {
            ResourceKind::Cpu => self.cpu,
            ResourceKind::Memory => self.memory,
            ResourceKind::Net => self.net,
            ResourceKind::Iops => self.iops,
        }
    }

    /// Sets the price of one kind.
    pub fn set(&mut self, kind: ResourceKind, price: Decimal) {
        match kind {
            ResourceKind::Cpu => self.cpu = price,
            ResourceKind::Memory => self.memory = price,
            ResourceKind::Net => self.net = price,
            ResourceKind::Iops => self.iops = price,
        }
    }

    /// Each kind's price combined with `other`'s by `f`.
    pub fn zip(&self, other: &PriceVector, f: impl Fn(Decimal, Decimal) -> Decimal) -> Self {
        Self {
            cpu: f(self.cpu, other.cpu),
            memory: f(self.memory, other.memory),
            net: f(self.net, other.net),
            iops: f(self.iops, other.iops),
        }
    }

    /// Every price multiplied by `factor`, without trailing zeros.
    pub fn scaled(&self, factor: Decimal) -> Self {
        self.zip(self, |a, _| (a * factor).normalize())
    }

    /// True when no kind has a negative price.
    pub fn is_non_negative(&self) -> bool {
        ResourceKind::ALL
            .iter()
            .all(|&k| !self.get(k).is_sign_negative())
    }
}

/// A machine that lends its capacity out as shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Its id.
    pub id: HostId,
    /// Unique name (usually the hostname).
    pub name: String,
    /// Shards it has of each kind.
    pub capacity: ShardVector,
}

/// A customer: owns reservations, workloads and leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Unique name.
    pub name: String,
}

/// How one kind of a reservation changes under a modification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// `=N`: exactly N shards.
    Set(u64),
    /// `+N` / `-N`: N shards more or fewer; a decrease stops at zero.
    Delta(i64),
    /// `+P%` / `-P%`, in hundredths of a percent; the result is rounded up to a whole shard.
    PercentBp(i32),
}

impl Change {
    /// Applies the change to a count; fails only when an increase overflows.
    pub fn apply(self, kind: ResourceKind, count: u64) -> Result<u64, ShardError> {
        match self {
            Change::Set(n) => Ok(n),
            Change::Delta(d) if d >= 0 => count
                .checked_add(d.unsigned_abs())
                .ok_or(ShardError::Overflow { kind }),
            Change::Delta(d) => Ok(count.saturating_sub(d.unsigned_abs())),
            Change::PercentBp(bp) => {
                // Rounds up: a tenant asking for +10% of 15 shards gets 17, and -10% leaves 14.
                let factor = 10_000i128 + i128::from(bp);
                let scaled = i128::from(count) * factor.max(0);
                let result = (scaled + 9_999) / 10_000;
                u64::try_from(result).map_err(|_| ShardError::Overflow { kind })
            }
        }
    }
}

impl FromStr for Change {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || DomainError::BadChange(s.to_string());
        let (sign, rest) = t.split_at(t.char_indices().nth(1).map_or(t.len(), |(i, _)| i));
        if let Some(pct) = rest.strip_suffix('%') {
            let negative = match sign {
                "+" => false,
                "-" => true,
                _ => return Err(bad()),
            };
            let bp = parse_hundredths(pct).ok_or_else(bad)?;
            if bp > 1_000_000 {
                return Err(bad());
            }
            let bp = i32::try_from(bp).map_err(|_| bad())?;
            if negative && bp > 10_000 {
                return Err(DomainError::PercentBelowZero(s.to_string()));
            }
            return Ok(Change::PercentBp(if negative { -bp } else { bp }));
        }
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = rest.parse().map_err(|_| bad())?;
        match sign {
            "=" => Ok(Change::Set(n)),
            "+" => Ok(Change::Delta(i64::try_from(n).map_err(|_| bad())?)),
            "-" => Ok(Change::Delta(-i64::try_from(n).map_err(|_| bad())?)),
            _ => Err(bad()),
        }
    }
}

/// `12.5` → 1250; at most two decimals.
fn parse_hundredths(s: &str) -> Option<u32> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || frac.len() > 2 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let w: u32 = whole.parse().ok()?;
    let f: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().ok()?
    };
    w.checked_mul(100)?.checked_add(f)
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Change::Set(n) => write!(f, "={n}"),
            Change::Delta(d) if d >= 0 => write!(f, "+{d}"),
            Change::Delta(d) => write!(f, "{d}"),
            Change::PercentBp(bp) => {
                let sign = if bp < 0 { '-' } else { '+' };
                let a = bp.unsigned_abs();
                if a % 100 == 0 {
                    write!(f, "{sign}{}%", a / 100)
                } else {
                    let frac = format!("{:02}", a % 100);
                    write!(f, "{sign}{}.{}%", a / 100, frac.trim_end_matches('0'))
                }
            }
        }
    }
}

/// One kind's change inside a modification, e.g. `cpu +10%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindChange {
    /// The kind it changes.
    pub kind: ResourceKind,
    /// How.
    pub change: Change,
}

impl FromStr for KindChange {
    type Err = DomainError;
    /// Parses `cpu +10%`, `memory -4`, `iops =200`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split_whitespace();
        let (Some(kind), Some(change), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(DomainError::BadChange(s.to_string()));
        };
        Ok(KindChange {
            kind: kind.parse()?,
            change: change.parse()?,
        })
    }
}

/// When shards are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Now: priced with the immediate-delivery premium.
    Immediate,
    /// At a future time, announced in advance.
    Scheduled,
}

/// A tenant's commitment of shards on a host over a window, with a tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Its id.
    pub id: ReservationId,
    /// Owner.
    pub tenant: TenantId,
    /// Where its shards are.
    pub host: HostId,
    /// The vector before modifications.
    pub base: ShardVector,
    /// When it holds shards.
    pub window: Window,
    /// Priority of its workloads.
    pub tier: Tier,
    /// Its modifications, oldest first: the order they compose in.
    pub modifications: Vec<ModificationId>,
    /// Idle shards put in the pool.
    pub offered: ShardVector,
    /// Lowest price the owner lends at.
    pub floor: PriceVector,
    /// How the owner lets its idle shards be lent automatically.
    #[serde(default)]
    pub lending: Lending,
    /// Set when cancelled: from then on it holds nothing.
    pub cancelled: bool,
}

/// An owner's rules for lending a reservation's idle shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lending {
    /// Never offer its idle shards automatically (the owner may still offer by hand).
    #[serde(default)]
    pub opt_out: bool,
    /// Most shards it lends or offers at once, per kind; no cap when absent.
    #[serde(default)]
    pub cap: Option<ShardVector>,
}

/// A time-bounded change of a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modification {
    /// Its id.
    pub id: ModificationId,
    /// The reservation it changes.
    pub reservation: ReservationId,
    /// What it changes, per kind.
    pub changes: Vec<KindChange>,
    /// When it is in force.
    pub window: Window,
    /// Set when cancelled.
    pub cancelled: bool,
}

impl Modification {
    /// True when it changes the reservation at `t`.
    pub fn in_force(&self, t: Timestamp) -> bool {
        !self.cancelled && self.window.contains(t)
    }
}

/// A modification the host had no room for when it was asked: kept, under the id it will
/// have, until room is freed for it (the engine moves other workloads off the host or
/// provisions one) and it starts, or until it gives up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingModification {
    /// The id it keeps once it starts.
    pub id: ModificationId,
    /// Owner.
    pub tenant: TenantId,
    /// The reservation it changes.
    pub reservation: ReservationId,
    /// What it changes, per kind.
    pub changes: Vec<KindChange>,
    /// How long it lasts once started (cut at the reservation's end).
    pub duration: Span,
    /// When it was asked for.
    pub since: Timestamp,
    /// When it gives up if it has not started (at the latest the reservation's end).
    pub gives_up_at: Timestamp,
}

/// Something running on a host inside a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Its id.
    pub id: WorkloadId,
    /// Owner.
    pub tenant: TenantId,
    /// Name, unique per tenant.
    pub name: String,
    /// The host it runs on.
    pub host: HostId,
    /// The reservation it runs inside.
    pub reservation: ReservationId,
    /// Shards it holds from its own reservation.
    pub share: ShardVector,
}

/// Who lends the shards of a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lender {
    /// Idle shards of a reservation.
    Reservation(ReservationId),
    /// Unreserved capacity of a host, lent by the provider.
    Provider(HostId),
}

impl fmt::Display for Lender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lender::Reservation(r) => write!(f, "{r}"),
            Lender::Provider(h) => write!(f, "the provider of {h}"),
        }
    }
}

/// Why a lease is ending before its window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReclaimReason {
    /// The lender wants its shards back.
    Lender,
    /// A higher-tier request needs them.
    Preempted {
        /// The request that needs them.
        by: RequestId,
    },
}

/// Shards a workload borrows from a lender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Its id.
    pub id: LeaseId,
    /// Who lends.
    pub lender: Lender,
    /// Who borrows.
    pub borrower: WorkloadId,
    /// Tier of the borrower's reservation.
    pub tier: Tier,
    /// Host of lender and borrower.
    pub host: HostId,
    /// The shards.
    pub vector: ShardVector,
    /// Price per shard-hour agreed.
    pub price: PriceVector,
    /// When the borrower holds them; the end moves earlier on reclaim.
    pub window: Window,
    /// Set once it is being taken back.
    pub reclaim: Option<ReclaimReason>,
    /// The request it fills.
    pub request: RequestId,
}

/// A workload's standing ask for shards from the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// Its id.
    pub id: RequestId,
    /// Who asks.
    pub workload: WorkloadId,
    /// Host of the workload.
    pub host: HostId,
    /// Tier of the workload's reservation.
    pub tier: Tier,
    /// Shards wanted in all.
    pub wanted: ShardVector,
    /// Shards granted so far.
    pub filled: ShardVector,
    /// Highest price per shard-hour accepted.
    pub max_price: PriceVector,
    /// When the request and its leases end.
    pub until: Timestamp,
    /// Earliest delivery: matching starts then.
    pub start: Timestamp,
    /// Delivery now (with the immediate premium) or at a scheduled start.
    pub delivery: Delivery,
    /// All or nothing, instead of partial fills.
    pub all_or_nothing: bool,
}

impl LeaseRequest {
    /// Shards still missing.
    pub fn remaining(&self) -> ShardVector {
        self.wanted.excess_over(&self.filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_changes() {
        for (text, change) in [
            ("+10%", Change::PercentBp(1000)),
            ("-12.5%", Change::PercentBp(-1250)),
            ("-4", Change::Delta(-4)),
            ("+4", Change::Delta(4)),
            ("=200", Change::Set(200)),
        ] {
            assert_eq!(text.parse::<Change>().unwrap(), change);
            assert_eq!(change.to_string(), text);
        }
        for bad in ["10%", "+", "+-4", "=x", "+1.234%", "~4", "", "+10 %"] {
            assert!(bad.parse::<Change>().is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            "-150%".parse::<Change>(),
            Err(DomainError::PercentBelowZero(_))
        ));
    }

    #[test]
    fn percent_changes_round_up_to_whole_shards() {
        let k = ResourceKind::Cpu;
        assert_eq!(Change::PercentBp(1000).apply(k, 15), Ok(17)); // 16.5 → 17
        assert_eq!(Change::PercentBp(-1000).apply(k, 15), Ok(14)); // 13.5 → 14
        assert_eq!(Change::PercentBp(-10_000).apply(k, 15), Ok(0));
        assert_eq!(Change::Delta(-20).apply(k, 15), Ok(0));
        assert!(Change::Delta(1).apply(k, u64::MAX).is_err());
        assert!(Change::PercentBp(100).apply(k, u64::MAX).is_err());
    }

    #[test]
    fn parses_kind_changes_and_tiers() {
        let kc: KindChange = "iops =200".parse().unwrap();
        assert_eq!(
            kc,
            KindChange {
                kind: ResourceKind::Iops,
                change: Change::Set(200)
            }
        );
        assert!("gpu +1".parse::<KindChange>().is_err());
        assert!("cpu".parse::<KindChange>().is_err());
        assert_eq!("premium".parse::<Tier>().unwrap(), Tier::Premium);
        assert!("gold".parse::<Tier>().is_err());
        assert!(Tier::BestEffort < Tier::Standard && Tier::Premium < Tier::Critical);
    }
}
