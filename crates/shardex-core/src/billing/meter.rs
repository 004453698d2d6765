//! Metering by change: a subject (a reservation or a lease) is metered when an action changes
//! what it holds (the events name it) and at every hour boundary, not at every commit.
//!
//! Between two of its changes a subject's holding is known in advance from the ledger (its
//! window, its modifications' windows, a lease's end), so metering it later, from the ledger
//! as it stood before the change, gives exactly the shard-milliseconds metering it at every
//! commit would (a property test holds the two equal). A commit thus writes charges only for
//! what it touched, and once an hour for everything: the charges of one subject never span an
//! hour boundary, so an hour's charges are complete once the hour is over. What has not been
//! metered yet (since the subject's last change or the hour boundary, up to the ledger's
//! time) is [`Meter::pending`], which every reader of charges adds.

use imbl::OrdMap;

use super::*;

/// How often every subject is metered, whatever changes: charges never span its boundaries.
pub const METER_PERIOD: Span = Span::from_millis(3_600_000);

/// Where metering stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
    /// Every subject is metered up to here (a [`METER_PERIOD`] boundary).
    through: Timestamp,
    /// The subjects metered past `through`, each up to when.
    since: OrdMap<Subject, Timestamp>,
}

/// One stretch of one subject to meter: `[from, to)`, from the ledger before the action.
type Due = (Subject, Timestamp, Timestamp);

impl Meter {
    /// A meter that has metered nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where `subject` is metered up to.
    pub fn metered_until(&self, subject: Subject) -> Timestamp {
        self.since
            .get(&subject)
            .copied()
            .unwrap_or(self.through)
            .max(self.through)
    }

    /// The meter after an action committed at `now` that turned `before` into `after` with
    /// `events`, and the stretches that action makes due (priced from `before`).
    fn advance(&self, before: &Ledger, events: &[Event], now: Timestamp) -> (Meter, Vec<Due>) {
        let mut next = self.clone();
        let mut due = Vec::new();
        let boundary = period_start(now);
        if boundary > self.through {
            for s in subjects(before) {
                let from = self.metered_until(s);
                if from < boundary {
                    due.push((s, from, boundary));
                }
            }
            next.through = boundary;
            next.since = OrdMap::new();
        }
        for (s, existed) in touched(before, events) {
            if existed {
                let from = next.metered_until(s);
                if from < now {
                    due.push((s, from, now));
                }
            }
            next.since.insert(s, now);
        }
        // Watermarks of subjects that ended stay until the next period boundary clears them.
        (next, due)
    }

    /// The meter after the action, without pricing anything (replaying a log).
    pub fn advanced(&self, before: &Ledger, events: &[Event], now: Timestamp) -> Meter {
        self.advance(before, events, now).0
    }

    /// The meter after the action and the charges it makes due, priced at `prices`.
    pub fn charge(
        &self,
        before: &Ledger,
        events: &[Event],
        prices: &PriceTable,
        now: Timestamp,
    ) -> Result<(Meter, Vec<Charge>), BillingError> {
        let (next, due) = self.advance(before, events, now);
        let mut out = Vec::new();
        for (s, from, to) in due {
            meter_subject(before, prices, s, from, to, &mut out)?;
        }
        Ok((next, out))
    }

    /// What `ledger` has held and this meter has not metered yet, up to `to` (at least the
    /// ledger's time), priced at `prices`: the charges a commit at `to` would make due if it
    /// touched everything.
    pub fn pending(
        &self,
        ledger: &Ledger,
        prices: &PriceTable,
        to: Timestamp,
    ) -> Result<Vec<Charge>, BillingError> {
        let mut out = Vec::new();
        for s in subjects(ledger) {
            let from = self.metered_until(s);
            if from < to {
                meter_subject(ledger, prices, s, from, to, &mut out)?;
            }
        }
        Ok(out)
    }
}

/// The start of the metering period `t` falls in.
pub fn period_start(t: Timestamp) -> Timestamp {
    let p = i64::try_from(METER_PERIOD.millis()).unwrap_or(i64::MAX);
    Timestamp::from_millis(t.millis().div_euclid(p) * p).unwrap_or(t)
}

fn subjects(ledger: &Ledger) -> impl Iterator<Item = Subject> + '_ {
    ledger
        .reservations()
        .map(|r| Subject::Reservation(r.id))
        .chain(ledger.leases().map(|l| Subject::Lease(l.id)))
}

fn exists(ledger: &Ledger, s: Subject) -> bool {
    match s {
        Subject::Reservation(r) => ledger.reservation(r).is_some(),
        Subject::Lease(l) => ledger.lease(l).is_some(),
    }
}

/// The subjects whose holding from now on the events change, each with whether it existed
/// before the action (a new one has nothing to meter yet).
pub(super) fn touched(before: &Ledger, events: &[Event]) -> Vec<(Subject, bool)> {
    let mut out: Vec<Subject> = Vec::new();
    for e in events {
        let s = match e {
            Event::ReservationCreated { reservation, .. }
            | Event::ReservationResized { reservation, .. }
            | Event::ReservationEnded { reservation, .. }
            | Event::ModificationCreated { reservation, .. } => {
                Some(Subject::Reservation(*reservation))
            }
            Event::ModificationEnded { modification, .. } => before
                .modification(*modification)
                .map(|m| Subject::Reservation(m.reservation)),
            Event::LeaseCreated { lease, .. }
            | Event::LeaseReclaiming { lease, .. }
            | Event::LeaseEnded { lease, .. } => Some(Subject::Lease(*lease)),
            _ => None,
        };
        if let Some(s) = s
            && !out.contains(&s)
        {
            out.push(s);
        }
    }
    out.into_iter().map(|s| (s, exists(before, s))).collect()
}

/// Charges for what `subject` held in `ledger` over `[from, to)`, split at period boundaries.
fn meter_subject(
    ledger: &Ledger,
    prices: &PriceTable,
    subject: Subject,
    from: Timestamp,
    to: Timestamp,
    out: &mut Vec<Charge>,
) -> Result<(), BillingError> {
    let mut a = from;
    while a < to {
        let b = period_start(a)
            .checked_add(METER_PERIOD)
            .map_or(to, |end| end.min(to));
        subject_charges(ledger, prices, subject, a, b, out)?;
        if b <= a {
            break;
        }
        a = b;
    }
    Ok(())
}
