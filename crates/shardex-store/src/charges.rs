//! What an invoice and a price history read, whatever the database: the charges stored with
//! log entries, then what the meter has pending (the stretches since each subject's last change
//! or the last hour boundary, up to the ledger's time), both limited to `(from, to]` and to one
//! tenant's; and the market prices read back from the log's events.

use shardex_core::billing::{Charge, Meter};
use shardex_core::{Ledger, PriceTable, TenantId, Timestamp};

use crate::StoreError;

/// The stored `rows` (seq, charge JSON) parsed, then the pending charges that fall in
/// `(from, to]` and concern `tenant` (everyone when `None`).
pub(crate) fn with_pending(
    rows: Vec<(i64, String)>,
    state: (&Ledger, &Meter, &PriceTable),
    tenant: Option<TenantId>,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Charge>, StoreError> {
    let (ledger, meter, prices) = state;
    let mut out = Vec::with_capacity(rows.len());
    for (seq, text) in rows {
        out.push(
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                seq: u64::try_from(seq).unwrap_or(0),
                reason: format!("charge: {e}"),
            })?,
        );
    }
    let pending = meter.pending(ledger, prices, ledger.now())?;
    out.extend(
        pending
            .into_iter()
            .filter(|c| c.to > from && c.to <= to)
            .filter(|c| tenant.is_none_or(|t| c.payer == t || c.lender == Some(t))),
    );
    Ok(out)
}

/// Price history rows (time in ms, log entry, the event's `prices` as JSON) parsed.
pub(crate) fn price_points(
    rows: Vec<(i64, i64, String)>,
) -> Result<Vec<(Timestamp, shardex_core::PriceVector)>, StoreError> {
    rows.into_iter()
        .map(|(at_ms, seq, text)| {
            let corrupt = |reason: String| StoreError::Corrupt {
                seq: u64::try_from(seq).unwrap_or(0),
                reason,
            };
            let at = Timestamp::from_millis(at_ms).map_err(|e| corrupt(e.to_string()))?;
            let prices = serde_json::from_str(&text).map_err(|e| corrupt(format!("price: {e}")))?;
            Ok((at, prices))
        })
        .collect()
}
