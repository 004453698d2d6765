//! Replaying one log entry: what every store does on open and what a PostgreSQL broker does to
//! catch up with the others. The entry must come next, be in a format this version reads, and
//! reproduce through the core exactly the events stored with it.

use shardex_core::billing::Meter;
use shardex_core::{Action, Ledger, Timestamp};

use crate::StoreError;
use crate::snapshot::LOG_FORMAT;

/// One stored log entry, as read.
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) at_ms: i64,
    pub(crate) action: String,
    pub(crate) format: i64,
    /// Its events as stored, parsed, in order.
    pub(crate) events: Vec<serde_json::Value>,
}

/// Applies `entry` to `ledger` and `meter`, which hold the state as of `seq`; returns the new
/// last entry and the entry's events. On an error nothing is changed.
pub(crate) fn step(
    ledger: &mut Ledger,
    meter: &mut Meter,
    seq: u64,
    entry: Entry,
) -> Result<(u64, Vec<shardex_core::Event>), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        seq: entry.seq,
        reason,
    };
    if entry.seq != seq + 1 {
        return Err(corrupt(format!("expected action {} next", seq + 1)));
    }
    if entry.format != LOG_FORMAT {
        return Err(corrupt(format!(
            "log entry format {} is not one this version reads ({LOG_FORMAT}): it was written by a newer shardex",
            entry.format
        )));
    }
    let at = Timestamp::from_millis(entry.at_ms).map_err(|e| corrupt(e.to_string()))?;
    let action: Action =
        serde_json::from_str(&entry.action).map_err(|e| corrupt(format!("action: {e}")))?;
    let (next, events) = ledger
        .applied(&action, at)
        .map_err(|e| StoreError::Diverged {
            seq: entry.seq,
            detail: format!("the ledger now refuses it: {e}"),
        })?;
    let replayed = serde_json::to_value(&events).map_err(|source| StoreError::Encode {
        what: "events",
        source,
    })?;
    let stored = serde_json::Value::Array(entry.events);
    if replayed != stored {
        return Err(StoreError::Diverged {
            seq: entry.seq,
            detail: format!("stored {stored}, replayed {replayed}"),
        });
    }
    *meter = meter.advanced(ledger, &events, at);
    *ledger = next;
    Ok((entry.seq, events))
}
