//! Times and durations on the wire: `"now"`, an RFC 3339 time (`"2026-12-03T10:00:00Z"`), or
//! an offset from now (`"+10m"`); durations as `"90s"`, `"1h"`, `"7d"`. Pure: `now` is given.
//!
//! Bounds, so that no accepted time can overflow later arithmetic: a time is at most
//! [`MAX_AHEAD`] after now, a duration at most [`MAX_SPAN`].

use shardex_core::{Span, Timestamp};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The furthest ahead a time may be: the ledger's bound, 10 years.
pub const MAX_AHEAD: Span = shardex_core::ledger::bounds::MAX_AHEAD;
/// The longest a duration may be: 10 years.
pub const MAX_SPAN: Span = MAX_AHEAD;

/// Why a time or duration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MomentError {
    /// Not one of the accepted forms.
    #[error(
        "{field}: {value:?} is not a time (\"now\", an RFC 3339 time like \"2026-12-03T10:00:00Z\", or \"+10m\")"
    )]
    BadTime {
        /// Which field.
        field: &'static str,
        /// What was sent.
        value: String,
    },
    /// Not a duration.
    #[error("{field}: {value:?} is not a duration (like \"90s\", \"30m\", \"1h\", \"7d\")")]
    BadDuration {
        /// Which field.
        field: &'static str,
        /// What was sent.
        value: String,
    },
    /// Beyond the bounds.
    #[error("{field}: {value:?} is more than 10 years away")]
    TooFar {
        /// Which field.
        field: &'static str,
        /// What was sent.
        value: String,
    },
    /// Before now, where only now or later makes sense.
    #[error("{field}: {value:?} is in the past")]
    Past {
        /// Which field.
        field: &'static str,
        /// What was sent.
        value: String,
    },
}

/// A duration, within [`MAX_SPAN`] and not zero.
pub fn duration(field: &'static str, text: &str) -> Result<Span, MomentError> {
    let bad = || MomentError::BadDuration {
        field,
        value: text.to_string(),
    };
    let span: Span = text.parse().map_err(|_| bad())?;
    if span.is_zero() {
        return Err(bad());
    }
    if span > MAX_SPAN {
        return Err(MomentError::TooFar {
            field,
            value: text.to_string(),
        });
    }
    Ok(span)
}

/// A time at or after `now`, within [`MAX_AHEAD`]. A time a few seconds in the past (clock
/// skew between client and daemon) is taken as now.
pub fn at_or_after(
    field: &'static str,
    text: &str,
    now: Timestamp,
) -> Result<Timestamp, MomentError> {
    let t = text.trim();
    let far = || MomentError::TooFar {
        field,
        value: text.to_string(),
    };
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(rest) = t.strip_prefix('+') {
        let span = duration(field, rest).map_err(|e| match e {
            MomentError::TooFar { .. } => far(),
            _ => MomentError::BadTime {
                field,
                value: text.to_string(),
            },
        })?;
        return now.checked_add(span).map_err(|_| far());
    }
    let parsed = OffsetDateTime::parse(t, &Rfc3339).map_err(|_| MomentError::BadTime {
        field,
        value: text.to_string(),
    })?;
    let ms = parsed.unix_timestamp_nanos() / 1_000_000;
    let ms = i64::try_from(ms).map_err(|_| far())?;
    let skew = 5_000;
    if ms < now.millis() - skew {
        return Err(MomentError::Past {
            field,
            value: text.to_string(),
        });
    }
    let at = Timestamp::from_millis(ms.max(now.millis())).map_err(|_| far())?;
    if at.since(now) > MAX_AHEAD {
        return Err(far());
    }
    Ok(at)
}

/// RFC 3339 text of a time (UTC, milliseconds).
pub fn rfc3339(t: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.millis()) * 1_000_000)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{}ms", t.millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_secs(1_796_000_000).unwrap()
    }

    #[test]
    fn now_offsets_and_rfc3339_times_are_understood() {
        assert_eq!(at_or_after("start", "now", now()), Ok(now()));
        assert_eq!(
            at_or_after("start", "+10m", now()).unwrap().since(now()),
            Span::from_secs(600)
        );
        let text = rfc3339(now().checked_add(Span::from_secs(3600)).unwrap());
        assert_eq!(
            at_or_after("start", &text, now()).unwrap().since(now()),
            Span::from_secs(3600)
        );
        // A client a second behind the daemon means now.
        let behind = rfc3339(Timestamp::from_millis(now().millis() - 1000).unwrap());
        assert_eq!(at_or_after("start", &behind, now()), Ok(now()));
    }

    #[test]
    fn bad_far_and_past_times_are_refused_by_name() {
        assert!(matches!(
            at_or_after("start", "soon", now()),
            Err(MomentError::BadTime { field: "start", .. })
        ));
        assert!(matches!(
            at_or_after("start", "+11000d", now()),
            Err(MomentError::TooFar { .. })
        ));
        assert!(matches!(
            at_or_after("start", "2000-01-01T00:00:00Z", now()),
            Err(MomentError::Past { .. })
        ));
        assert!(matches!(
            at_or_after("start", "9999-01-01T00:00:00Z", now()),
            Err(MomentError::TooFar { .. })
        ));
        assert!(matches!(
            duration("for", "0s"),
            Err(MomentError::BadDuration { .. })
        ));
        assert!(matches!(
            duration("for", "18446744073709551615ms"),
            Err(MomentError::TooFar { .. })
        ));
        assert!(matches!(
            duration("for", "1y"),
            Err(MomentError::BadDuration { .. })
        ));
    }
}
