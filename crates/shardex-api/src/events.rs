//! The event stream's bus: what happened (ledger events after each commit, the engine's
//! decisions, OOM kills, shard requests), each with the tenants allowed to see it, numbered in
//! order. Subscribers get what comes after the id they last saw, from a window of the newest
//! [`WINDOW`] events kept in memory, then live; one that falls out of the window is told so
//! rather than silently missing events (as a Kubernetes watch answers 410 Gone).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use shardex_core::{Event, Ledger, Lender, TenantId};
use tokio::sync::broadcast;

/// How many of the newest events a reconnecting subscriber can resume from.
pub const WINDOW: usize = 4096;

/// The stream's kinds of event, a subscriber's filter.
pub const KINDS: [&str; 9] = [
    "modification",
    "reservation",
    "lease",
    "request",
    "market",
    "decision",
    "oom",
    "shard_request",
    "ledger",
];

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// Its number: one more than the event before it.
    pub id: u64,
    /// Its kind (one of [`KINDS`]).
    pub kind: &'static str,
    /// The tenants who may see it (only the admin when empty).
    pub tenants: Vec<TenantId>,
    /// What happened, as JSON.
    pub data: Value,
}

/// Where a subscriber starts.
#[derive(Debug)]
pub struct Subscription {
    /// The kept events after the id asked for, oldest first.
    pub backlog: Vec<Arc<StreamEvent>>,
    /// Events from now on.
    pub live: broadcast::Receiver<Arc<StreamEvent>>,
    /// Events after the id asked for that are no longer kept (0 when none were lost).
    pub missed: u64,
}

/// The bus: publish from anywhere in the daemon, subscribe from the API.
#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<StreamEvent>>,
    kept: Mutex<VecDeque<Arc<StreamEvent>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(WINDOW).0,
            kept: Mutex::new(VecDeque::with_capacity(WINDOW)),
        }
    }
}

impl EventBus {
    /// Publishes one event of `kind` for `tenants` (admin only when empty).
    pub fn publish(&self, kind: &'static str, tenants: Vec<TenantId>, data: Value) {
        // Numbering and keeping under one lock, so that ids are in the order subscribers see.
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let id = kept.back().map_or(1, |e| e.id + 1);
        let e = Arc::new(StreamEvent {
            id,
            kind,
            tenants,
            data,
        });
        if kept.len() == WINDOW {
            kept.pop_front();
        }
        kept.push_back(e.clone());
        // No subscriber is not an error: the event is kept for one that comes.
        let _ = self.tx.send(e);
    }

    /// The events after `after` (the newest only when `None`), then live.
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let kept = self.kept.lock().ok();
        // Subscribing under the lock: nothing published between backlog and live is lost.
        let live = self.tx.subscribe();
        let Some(kept) = kept else {
            return Subscription {
                backlog: Vec::new(),
                live,
                missed: 0,
            };
        };
        let Some(after) = after else {
            return Subscription {
                backlog: Vec::new(),
                live,
                missed: 0,
            };
        };
        let oldest = kept.front().map_or(after + 1, |e| e.id);
        Subscription {
            backlog: kept.iter().filter(|e| e.id > after).cloned().collect(),
            live,
            missed: oldest.saturating_sub(after + 1),
        }
    }

    /// Publishes a commit's ledger events, each for the tenants whose objects it names (looked
    /// up in the ledger before and after, since an ended object is gone after).
    pub fn publish_ledger(&self, seq: u64, before: &Ledger, after: &Ledger, events: &[Event]) {
        for e in events {
            let Ok(Value::Object(mut data)) = serde_json::to_value(e) else {
                continue;
            };
            let tag = data
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let tenants = audience(&data, before, after);
            data.insert("seq".into(), Value::from(seq));
            self.publish(kind_of(&tag), tenants, Value::Object(data));
        }
    }
}

/// The stream's kind of a ledger event, from its tag.
fn kind_of(tag: &str) -> &'static str {
    if tag.starts_with("modification") || tag == "pending_modification_ended" {
        "modification"
    } else if tag.starts_with("lease_request") {
        "request"
    } else if tag.starts_with("lease") || tag == "lending_changed" || tag == "offer_changed" {
        "lease"
    } else if tag.starts_with("reservation")
        || tag.starts_with("workload")
        || tag == "allocation_changed"
    {
        "reservation"
    } else if tag == "market_price_changed" {
        "market"
    } else {
        "ledger"
    }
}

/// The tenants an event's ids belong to: `tenant` itself, the owner of a `reservation`, of a
/// `modification` (pending or not), of a `workload` or `borrower`, and both sides of a `lease`.
fn audience(
    data: &serde_json::Map<String, Value>,
    before: &Ledger,
    after: &Ledger,
) -> Vec<TenantId> {
    let id = |key: &str| data.get(key).and_then(Value::as_u64);
    let both = |f: &dyn Fn(&Ledger) -> Option<TenantId>| f(after).or_else(|| f(before));
    let mut out = Vec::new();
    if let Some(t) = id("tenant") {
        out.push(TenantId(t));
    }
    if let Some(r) = id("reservation") {
        out.extend(both(&|l| {
            l.reservation(shardex_core::ReservationId(r))
                .map(|r| r.tenant)
        }));
    }
    if let Some(m) = id("modification") {
        let m = shardex_core::ModificationId(m);
        out.extend(both(&|l| l.modification_owner(m)));
    }
    for key in ["workload", "borrower"] {
        if let Some(w) = id(key) {
            out.extend(both(&|l| {
                l.workload(shardex_core::WorkloadId(w)).map(|w| w.tenant)
            }));
        }
    }
    if let Some(x) = id("lease") {
        let lease = shardex_core::LeaseId(x);
        let borrower = |l: &Ledger| {
            let lease = l.lease(lease)?;
            l.workload(lease.borrower).map(|w| w.tenant)
        };
        let lender = |l: &Ledger| match l.lease(lease)?.lender {
            Lender::Reservation(r) => l.reservation(r).map(|r| r.tenant),
            Lender::Provider(_) => None,
        };
        out.extend(both(&borrower));
        out.extend(both(&lender));
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_resumes_after_the_last_id_and_is_told_what_fell_out() {
        let bus = EventBus::default();
        for i in 0..3 {
            bus.publish("oom", vec![TenantId(1)], Value::from(i));
        }
        let s = bus.subscribe(Some(1));
        assert_eq!(s.backlog.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(s.missed, 0);
        let fresh = bus.subscribe(None);
        assert!(fresh.backlog.is_empty());
        for i in 0..WINDOW {
            bus.publish("oom", Vec::new(), Value::from(i));
        }
        // Ids 1..=3+WINDOW were published; the oldest 3 are gone.
        let late = bus.subscribe(Some(0));
        assert_eq!(late.missed, 3);
        assert_eq!(late.backlog.len(), WINDOW);
        assert_eq!(late.backlog[0].id, 4);
    }

    #[test]
    fn live_events_reach_a_subscriber_in_order() {
        let bus = EventBus::default();
        let mut s = bus.subscribe(None);
        bus.publish("decision", Vec::new(), Value::from("a"));
        bus.publish("decision", Vec::new(), Value::from("b"));
        assert_eq!(s.live.try_recv().unwrap().id, 1);
        assert_eq!(s.live.try_recv().unwrap().id, 2);
    }

    #[test]
    fn ledger_events_go_to_the_tenants_whose_objects_they_name() {
        use shardex_core::testkit::World;
        let mut w = World::new(shardex_core::ShardVector::new(10, 10, 0, 0), &["a", "b"]);
        let before = w.ledger.clone();
        let (a, b) = (w.tenant(0), w.tenant(1));
        let r = w.reserve(a, shardex_core::ShardVector::new(2, 0, 0, 0), 0, 3600);
        let bus = EventBus::default();
        let events = vec![Event::ReservationEnded {
            reservation: r,
            cancelled: true,
        }];
        // Looked up after the commit; a reservation pruned by then is found before it.
        bus.publish_ledger(7, &before, &w.ledger, &events);
        bus.publish_ledger(8, &w.ledger, &before, &events);
        let s = bus.subscribe(Some(0));
        assert_eq!(s.backlog.len(), 2);
        assert_eq!(s.backlog[0].kind, "reservation");
        assert_eq!(s.backlog[0].tenants, vec![a]);
        assert_eq!(s.backlog[1].tenants, vec![a]);
        assert!(!s.backlog[0].tenants.contains(&b));
        assert_eq!(s.backlog[0].data["seq"], 7);
        assert_eq!(s.backlog[0].data["event"], "reservation_ended");
    }
}
