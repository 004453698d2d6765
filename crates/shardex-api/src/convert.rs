//! Wire types into core actions (`TryFrom`, where validation lives) and core objects into wire
//! views. A request is converted in its context ([`Scoped`]): the tenant of its token, the
//! commit's time (so `"now"` is exactly the ledger's now) and the ledger, to resolve names.

use std::collections::BTreeMap;

use shardex_core::action::{
    CancelModification, CancelReservation, CreateReservation, ModifyReservation,
};
use shardex_core::{
    Change, HostId, KindChange, Ledger, Modification, PendingModification, Reservation,
    ResourceKind, ShardVector, TenantId, Tier, Timestamp, Window,
};

use crate::moment::{self, rfc3339};
use crate::problem::Problem;
use crate::wire::{
    ModificationView, NewModification, NewReservation, ReservationView, Resources, Shards,
    WindowView,
};

/// A request body with what it is converted in.
pub struct Scoped<'a, T> {
    /// The body.
    pub body: &'a T,
    /// The tenant whose token sent it.
    pub tenant: TenantId,
    /// The time it is committed at.
    pub now: Timestamp,
    /// The ledger it is checked against.
    pub ledger: &'a Ledger,
    /// How much one shard of each kind is, for amounts in physical units.
    pub sizes: shardex_core::ShardSizes,
}

/// Shards for amounts in physical units, each rounded up to a whole shard.
pub fn resources(r: &Resources, sizes: shardex_core::ShardSizes) -> Result<Shards, Problem> {
    let of = |kind: ResourceKind, text: &Option<String>| -> Result<u64, Problem> {
        let Some(text) = text else { return Ok(0) };
        let amount =
            crate::quantity::of(kind, text).map_err(|e| bad(format!("resources.{kind}: {e}")))?;
        Ok(sizes.demand_shards(kind, amount))
    };
    Ok(Shards {
        cpu: of(ResourceKind::Cpu, &r.cpu)?,
        memory: of(ResourceKind::Memory, &r.memory)?,
        net: of(ResourceKind::Net, &r.net)?,
        iops: of(ResourceKind::Iops, &r.iops)?,
    })
}

impl From<Shards> for ShardVector {
    fn from(s: Shards) -> Self {
        ShardVector::new(s.cpu, s.memory, s.net, s.iops)
    }
}

impl From<ShardVector> for Shards {
    fn from(v: ShardVector) -> Self {
        Shards {
            cpu: v.get(ResourceKind::Cpu),
            memory: v.get(ResourceKind::Memory),
            net: v.get(ResourceKind::Net),
            iops: v.get(ResourceKind::Iops),
        }
    }
}

fn bad(e: impl std::fmt::Display) -> Problem {
    Problem::bad_request(e)
}

/// A host by name or id; 404 when there is none.
pub fn host(ledger: &Ledger, text: &str) -> Result<HostId, Problem> {
    let by_id = text
        .parse::<u64>()
        .ok()
        .and_then(|n| ledger.host(HostId(n)));
    by_id
        .or_else(|| ledger.host_named(text))
        .map(|h| h.id)
        .ok_or_else(|| Problem::not_found(format!("host {text:?}")))
}

/// A tier by name.
pub fn tier(field: &str, text: &str) -> Result<Tier, Problem> {
    text.parse().map_err(|_| {
        bad(format!(
            "{field}: {text:?} is not a tier (best-effort, standard, premium, critical)"
        ))
    })
}

/// The most shards of one kind a request may name: the ledger's bound (`ledger/bounds.rs`),
/// checked here too so that the answer names the field.
pub const MAX_SHARDS: u64 = shardex_core::ledger::bounds::MAX_SHARDS;

fn bounded(field: &str, s: &Shards) -> Result<(), Problem> {
    for (kind, n) in [
        ("cpu", s.cpu),
        ("memory", s.memory),
        ("net", s.net),
        ("iops", s.iops),
    ] {
        if n > MAX_SHARDS {
            return Err(bad(format!(
                "{field}.{kind}: {n} shards is more than {MAX_SHARDS}"
            )));
        }
    }
    Ok(())
}

impl TryFrom<Scoped<'_, NewReservation>> for CreateReservation {
    type Error = Problem;
    fn try_from(s: Scoped<'_, NewReservation>) -> Result<Self, Problem> {
        let b = s.body;
        let (field, shards) = match (&b.shards, &b.resources) {
            (Some(n), None) => ("shards", *n),
            (None, Some(r)) => ("resources", resources(r, s.sizes)?),
            (Some(_), Some(_)) => {
                return Err(bad(
                    "give shards or resources, not both: they say the same thing twice",
                ));
            }
            (None, None) => {
                return Err(bad(
                    "shards or resources: how much to reserve, e.g. {\"resources\": {\"cpu\": \"1.5\", \"memory\": \"1GiB\"}}",
                ));
            }
        };
        bounded(field, &shards)?;
        let host = host(s.ledger, &b.host)?;
        let start = moment::at_or_after("start", b.start.as_deref().unwrap_or("now"), s.now)
            .map_err(bad)?;
        delivery(b.delivery.as_deref(), start, s.now)?;
        let span = moment::duration("for", &b.duration).map_err(bad)?;
        let window = Window::starting(start, span).map_err(bad)?;
        let tier = match &b.tier {
            Some(t) => tier("tier", t)?,
            None => Tier::Standard,
        };
        Ok(CreateReservation {
            tenant: s.tenant,
            host,
            vector: shards.into(),
            window,
            tier,
        })
    }
}

/// Per-kind changes from `{"cpu": "+10%"}`: `=N`, `+N`, `-N` shards, `+P%`/`-P%`, or a
/// physical amount with its unit (`+500m` or `=2cores` of cpu, `+1GiB` of memory,
/// `=100Mbit` of net, `+200iops`), turned into whole shards with `sizes`: rounded up for `=`
/// and `+` (what was asked is covered), down for `-` (no more than asked is taken away).
pub fn changes(
    map: &BTreeMap<String, String>,
    sizes: shardex_core::ShardSizes,
) -> Result<Vec<KindChange>, Problem> {
    if map.is_empty() {
        return Err(bad(
            "changes: name at least one kind, e.g. {\"cpu\": \"+10%\"}",
        ));
    }
    map.iter()
        .map(|(k, v)| {
            let kind: ResourceKind = k.parse().map_err(|_| {
                bad(format!(
                    "changes: {k:?} is not a kind (cpu, memory, net, iops)"
                ))
            })?;
            let change = match physical_change(kind, v, sizes) {
                Some(c) => c.map_err(|e| bad(format!("changes.{k}: {e}")))?,
                None => v
                    .parse::<Change>()
                    .map_err(|e| bad(format!("changes.{k}: {e}")))?,
            };
            if let Change::Set(n) = change
                && n > MAX_SHARDS
            {
                return Err(bad(format!(
                    "changes.{k}: {n} shards is more than {MAX_SHARDS}"
                )));
            }
            if let Change::Delta(d) = change
                && d.unsigned_abs() > MAX_SHARDS
            {
                return Err(bad(format!(
                    "changes.{k}: {d} shards is more than {MAX_SHARDS}"
                )));
            }
            Ok(KindChange { kind, change })
        })
        .collect()
}

/// A change written as a physical amount with a unit, in shards; `None` when `v` has no
/// unit (shards or a percentage: the core's own notation).
fn physical_change(
    kind: ResourceKind,
    v: &str,
    sizes: shardex_core::ShardSizes,
) -> Option<Result<Change, String>> {
    let t = v.trim();
    let mut chars = t.chars();
    let op = chars.next()?;
    let amount = chars.as_str().trim();
    if !matches!(op, '=' | '+' | '-') || amount.ends_with('%') {
        return None;
    }
    if !amount.chars().any(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let physical = match kind {
        ResourceKind::Cpu => match amount
            .strip_suffix("cores")
            .or_else(|| amount.strip_suffix("core"))
        {
            Some(cores) => crate::quantity::cpu(cores.trim()),
            None if amount.ends_with('m') => crate::quantity::cpu(amount),
            None => Err(format!(
                "{v:?}: cpu is written in shards (=8), percent (+10%), millicores (+500m) or cores (=2cores)"
            )),
        },
        _ => crate::quantity::of(kind, amount),
    };
    Some(physical.and_then(|n| {
        let shards = if op == '-' {
            sizes.supply_shards(kind, n)
        } else {
            sizes.demand_shards(kind, n)
        };
        if op == '-' && shards == 0 && n > 0 {
            return Err(format!("{v:?} is less than one {kind} shard"));
        }
        let delta = i64::try_from(shards).map_err(|_| format!("{v:?} is too large"))?;
        Ok(match op {
            '=' => Change::Set(shards),
            '+' => Change::Delta(delta),
            _ => Change::Delta(-delta),
        })
    }))
}

/// A modification of the reservation named in the path.
pub struct Modify<'a> {
    /// The reservation (from the path).
    pub reservation: shardex_core::ReservationId,
    /// The body.
    pub body: &'a NewModification,
}

impl TryFrom<Scoped<'_, Modify<'_>>> for ModifyReservation {
    type Error = Problem;
    fn try_from(s: Scoped<'_, Modify<'_>>) -> Result<Self, Problem> {
        let reservation = s.body.reservation;
        let b = s.body.body;
        let changes = changes(&b.changes, s.sizes)?;
        let duration = moment::duration("for", &b.duration).map_err(bad)?;
        let start = moment::at_or_after("start", b.start.as_deref().unwrap_or("now"), s.now)
            .map_err(bad)?;
        delivery(b.delivery.as_deref(), start, s.now)?;
        // "For the next hour" of a reservation that ends sooner lasts until its end (the
        // answer shows the window); one that has ended is refused by the ledger.
        let duration = s
            .ledger
            .reservation(reservation)
            .map(|r| r.window.end().since(start))
            .filter(|left| !left.is_zero())
            .map_or(duration, |left| duration.min(left));
        Ok(ModifyReservation {
            tenant: s.tenant,
            reservation,
            changes,
            start: (start > s.now).then_some(start),
            duration,
        })
    }
}

/// Cancels a reservation of the caller's.
pub fn cancel_reservation(tenant: TenantId, id: u64) -> CancelReservation {
    CancelReservation {
        tenant,
        reservation: shardex_core::ReservationId(id),
    }
}

/// Cancels a modification of the caller's.
pub fn cancel_modification(tenant: TenantId, id: u64) -> CancelModification {
    CancelModification {
        tenant,
        modification: shardex_core::ModificationId(id),
    }
}

/// A window on the wire.
pub fn window(w: &Window) -> WindowView {
    WindowView {
        start: rfc3339(w.start()),
        end: rfc3339(w.end()),
    }
}

/// A reservation's state at `now`.
pub fn reservation_state(r: &Reservation, now: Timestamp) -> &'static str {
    if r.cancelled {
        "cancelled"
    } else if now < r.window.start() {
        "scheduled"
    } else if r.window.contains(now) {
        "active"
    } else {
        "ended"
    }
}

/// `delivery` checked against the start: `immediate` needs a start of now, `scheduled` a
/// later one.
fn delivery(delivery: Option<&str>, start: Timestamp, now: Timestamp) -> Result<(), Problem> {
    match delivery {
        Some("immediate") if start > now => Err(bad(
            "delivery: \"immediate\" needs a start of now; use \"scheduled\"",
        )),
        None | Some("immediate") => Ok(()),
        Some("scheduled") if start == now => {
            Err(bad("delivery: \"scheduled\" needs a start after now"))
        }
        Some("scheduled") => Ok(()),
        Some(other) => Err(bad(format!(
            "delivery: {other:?} is not \"immediate\" or \"scheduled\""
        ))),
    }
}

/// A reservation on the wire, as of `now`.
pub fn reservation(ledger: &Ledger, r: &Reservation, now: Timestamp) -> ReservationView {
    ReservationView {
        id: r.id.0,
        tenant: r.tenant.0,
        host: ledger
            .host(r.host)
            .map_or_else(|| r.host.to_string(), |h| h.name.clone()),
        tier: r.tier.name().to_string(),
        state: reservation_state(r, now).to_string(),
        base: r.base.into(),
        now: ledger
            .reserved_at(r, now)
            .unwrap_or(ShardVector::ZERO)
            .into(),
        window: window(&r.window),
        offered: r.offered.into(),
        modifications: r.modifications.iter().map(|m| m.0).collect(),
        deferred: None,
    }
}

/// A modification on the wire, as of `now`.
pub fn modification(m: &Modification, now: Timestamp) -> ModificationView {
    let state = if m.cancelled {
        "cancelled"
    } else if now < m.window.start() {
        "scheduled"
    } else if m.window.contains(now) {
        "in_force"
    } else {
        "ended"
    };
    ModificationView {
        id: m.id.0,
        reservation: m.reservation.0,
        changes: changes_view(&m.changes),
        window: window(&m.window),
        state: state.to_string(),
        gives_up_at: None,
    }
}

/// Per kind, its change as written (`"+10%"`, `"=8"`).
fn changes_view(changes: &[KindChange]) -> BTreeMap<String, String> {
    changes
        .iter()
        .map(|c| (c.kind.name().to_string(), c.change.to_string()))
        .collect()
}

/// A pending modification as the API shows it: state `pending`, its window the one it would
/// have if it started now (cut at its reservation's end, as it would be), and when it gives up.
pub fn pending_modification(
    l: &Ledger,
    p: &PendingModification,
    now: Timestamp,
) -> ModificationView {
    let start = now.max(p.since);
    let reservation_end = l
        .reservation(p.reservation)
        .map_or(Timestamp::MAX, |r| r.window.end());
    let end = start
        .checked_add(p.duration)
        .unwrap_or(Timestamp::MAX)
        .min(reservation_end);
    ModificationView {
        id: p.id.0,
        reservation: p.reservation.0,
        changes: changes_view(&p.changes),
        window: WindowView {
            start: rfc3339(start),
            end: rfc3339(end),
        },
        state: "pending".to_string(),
        gives_up_at: Some(rfc3339(p.gives_up_at)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn one(kind: &str, v: &str) -> Result<Change, Problem> {
        let map = BTreeMap::from([(kind.to_string(), v.to_string())]);
        changes(&map, shardex_core::ShardSizes::default()).map(|c| c[0].change)
    }

    #[test]
    fn changes_in_physical_units_become_whole_shards() {
        // Default shards: 10 millicores, 16 MiB, 1 Mbit/s, 10 IOPS.
        assert_eq!(one("cpu", "+500m").unwrap(), Change::Delta(50));
        assert_eq!(one("cpu", "=2cores").unwrap(), Change::Set(200));
        assert_eq!(one("cpu", "=1.5 cores").unwrap(), Change::Set(150));
        assert_eq!(one("memory", "+1GiB").unwrap(), Change::Delta(64));
        assert_eq!(
            one("memory", "+1MiB").unwrap(),
            Change::Delta(1),
            "rounded up"
        );
        assert_eq!(
            one("memory", "-20MiB").unwrap(),
            Change::Delta(-1),
            "rounded down"
        );
        assert_eq!(one("net", "=100Mbit").unwrap(), Change::Set(100));
        assert_eq!(one("iops", "+200iops").unwrap(), Change::Delta(20));
        // Shards and percentages as before.
        assert_eq!(one("cpu", "=8").unwrap(), Change::Set(8));
        assert_eq!(one("cpu", "+10%").unwrap(), Change::PercentBp(1000));
    }

    #[test]
    fn a_bad_physical_change_names_the_kind_and_what_was_wrong() {
        for (kind, v, needle) in [
            ("cpu", "+2GiB", "millicores"),
            ("memory", "-1MiB", "less than one"),
            ("memory", "+1GB/s", "changes.memory"),
            ("net", "+1GiB", "changes.net"),
            ("cpu", "=1.5", "changes.cpu"),
            ("memory", "*1GiB", "changes.memory"),
        ] {
            let e = one(kind, v).unwrap_err();
            assert!(e.detail.contains(needle), "{v}: {}", e.detail);
        }
    }
}
