//! A modification its host has no room for waits (pending) while the controller frees room:
//! real ticks over a real ledger, every invariant checked after each.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;

use shardex_core::action;
use shardex_core::control::Controller;
use shardex_core::engine::{Demand, Engine, EngineParams, RequestStatus, ShardRequest, Step};
use shardex_core::ports::{Migrator, NoMigrator, SimulatedMigrator, StaticProvisioner};
use shardex_core::testkit::moves::{cpu_demand, crowded, mover};
use shardex_core::testkit::t;
use shardex_core::{
    Action, Change, Event, HostId, KindChange, Ledger, LedgerParams, ModificationId, ResourceKind,
    ShardSizes, ShardVector, Span, WorkloadId,
};

fn cpu(n: u64) -> ShardVector {
    ShardVector::of(ResourceKind::Cpu, n)
}

/// `a`'s owner asks for +30 cpu shards for 10 minutes at `at` on the crowded host: queued.
fn ask_more(l: &mut Ledger, a: WorkloadId, at: i64) -> ModificationId {
    let w = l.workload(a).unwrap().clone();
    let ask = action::ModifyReservation {
        tenant: w.tenant,
        reservation: w.reservation,
        changes: vec![KindChange {
            kind: ResourceKind::Cpu,
            change: Change::Delta(30),
        }],
        start: None,
        duration: Span::from_secs(600),
    };
    assert!(
        l.applied(&Action::ModifyReservation(ask.clone()), t(at))
            .is_err(),
        "h1 is full: the change does not fit now"
    );
    let ev = l.apply(&Action::QueueModification(ask), t(at)).unwrap();
    match ev.as_slice() {
        [Event::ModificationQueued { modification, .. }] => *modification,
        other => panic!("{other:?}"),
    }
}

fn tick<M: Migrator>(
    c: &mut Controller<StaticProvisioner, M>,
    l: &mut Ledger,
    demands: &BTreeMap<WorkloadId, Demand>,
    at: i64,
) -> shardex_core::control::TickReport {
    let r = c.tick(l, demands, &ShardSizes::default(), t(at));
    assert_eq!(l.check(), vec![], "after the tick at {at}");
    r
}

fn request_of<M>(c: &Controller<StaticProvisioner, M>, m: ModificationId) -> ShardRequest {
    c.engine
        .shard_requests()
        .find(|r| r.modification == Some(m))
        .cloned()
        .expect("a shard request for the pending modification")
}

fn reserved(l: &Ledger, w: WorkloadId) -> u64 {
    let r = l.reservation(l.workload(w).unwrap().reservation).unwrap();
    l.reserved_at(r, l.now()).unwrap().get(ResourceKind::Cpu)
}

#[test]
fn a_pending_change_moves_a_neighbour_away_then_starts_and_its_request_is_fulfilled() {
    let (mut l, a, b) = crowded();
    let m = ask_more(&mut l, a, 10);
    // The default hysteresis (10 minutes short before anything moves) is for forecasts; a
    // tenant asked for this room, so the move starts at once.
    let params = EngineParams {
        headroom_pct: 0,
        ..EngineParams::default()
    };
    assert!(params.move_after >= Span::from_secs(60));
    let mut c = Controller::new(
        Engine::new(params),
        StaticProvisioner::default(),
        SimulatedMigrator::new(Span::from_secs(60)),
    );
    let demands: BTreeMap<WorkloadId, Demand> =
        [(a, cpu_demand(50, t(10))), (b, cpu_demand(50, t(10)))]
            .into_iter()
            .collect();
    let r = tick(&mut c, &mut l, &demands, 10);
    // The host misses 30 shards for it; a shard request says so.
    let req = request_of(&c, m);
    assert_eq!(req.status, RequestStatus::Pending);
    assert_eq!(req.wanted, cpu(30));
    assert_eq!(req.host, HostId(1));
    assert!(matches!(req.steps.as_slice(), [Step::HostShort { shards }] if *shards == cpu(30)));
    // b moves, never a (as cheap, and first by id, but its reservation is the one waiting).
    assert_eq!(r.moves_started.len(), 1, "{r:?}");
    assert_eq!(r.moves_started[0].mv.workload, b);
    assert_eq!(r.moves_started[0].to, HostId(2));
    assert_eq!(reserved(&l, a), 50, "nothing held while it waits");
    // The move completes at 70: in the same tick the change starts, under its id, for 10 min.
    let r = tick(&mut c, &mut l, &demands, 70);
    assert_eq!(r.moved.len(), 1, "{r:?}");
    assert!(l.pending_modification(m).is_none());
    let started = l
        .modification(m)
        .expect("in force under the id it was given");
    assert_eq!(started.window.start(), t(70));
    assert_eq!(started.window.end(), t(670));
    assert_eq!(reserved(&l, a), 80);
    assert!(
        r.applied
            .iter()
            .any(|(x, _)| format!("{x:?}").contains("StartPendingModification"))
    );
    // Its request is fulfilled as it starts, and stays so.
    assert_eq!(request_of(&c, m).status, RequestStatus::Fulfilled);
    tick(&mut c, &mut l, &demands, 80);
    assert_eq!(request_of(&c, m).status, RequestStatus::Fulfilled);
}

#[test]
fn a_pending_change_no_one_makes_room_for_gives_up_on_time_and_changes_nothing() {
    let (mut l, a, b) = crowded();
    let params = LedgerParams {
        pending_for: Span::from_secs(120),
        ..LedgerParams::default()
    };
    l.apply(&Action::Configure(action::Configure { params }), t(5))
        .unwrap();
    let m = ask_more(&mut l, a, 10);
    // No migrator: the moves are recommendations only.
    let mut c = mover(NoMigrator);
    let demands: BTreeMap<WorkloadId, Demand> =
        [(a, cpu_demand(50, t(10))), (b, cpu_demand(50, t(10)))]
            .into_iter()
            .collect();
    for at in [10, 70] {
        let r = tick(&mut c, &mut l, &demands, at);
        assert!(r.moves_started.is_empty(), "{r:?}");
        assert_eq!(request_of(&c, m).status, RequestStatus::Pending);
    }
    assert_eq!(
        l.next_change(),
        Some(t(130)),
        "the ledger wakes when it gives up"
    );
    tick(&mut c, &mut l, &demands, 140);
    assert!(l.pending_modification(m).is_none());
    assert!(l.modification(m).is_none());
    assert_eq!(reserved(&l, a), 50);
    assert!(matches!(request_of(&c, m).status, RequestStatus::Failed(_)));
}
