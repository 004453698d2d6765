//! Time as plain values: the core never reads a clock, `now` is always an argument.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors in times, durations and windows.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimeError {
    /// A duration text that is not a positive number followed by ms, s, m, h or d.
    #[error(
        "invalid duration {0:?}: write a positive whole number and a unit, like 90s, 5m, 1h or 7d"
    )]
    BadDuration(String),
    /// A duration of zero where something must last.
    #[error("duration must be longer than zero")]
    ZeroDuration,
    /// A window whose end is not after its start.
    #[error("window ends at {end} which is not after its start {start}")]
    ReversedWindow {
        /// Window start.
        start: Timestamp,
        /// Window end.
        end: Timestamp,
    },
    /// A time before the Unix epoch.
    #[error("time {0} ms is before 1970-01-01")]
    Negative(i64),
    /// A time past the representable range.
    #[error("time overflows")]
    Overflow,
}

/// Milliseconds since the Unix epoch.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Timestamp(i64);

impl TryFrom<i64> for Timestamp {
    type Error = TimeError;
    fn try_from(ms: i64) -> Result<Self, TimeError> {
        Timestamp::from_millis(ms)
    }
}

impl From<Timestamp> for i64 {
    fn from(t: Timestamp) -> i64 {
        t.0
    }
}

impl Timestamp {
    /// The epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The latest time there is (an open end, never a ledger time: the ledger's bounds keep
    /// times within years of now).
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// A timestamp from milliseconds since the epoch; negative values are rejected.
    pub fn from_millis(ms: i64) -> Result<Self, TimeError> {
        if ms < 0 {
            Err(TimeError::Negative(ms))
        } else {
            Ok(Self(ms))
        }
    }

    /// A timestamp from whole seconds since the epoch.
    pub fn from_secs(secs: i64) -> Result<Self, TimeError> {
        Self::from_millis(secs.checked_mul(1000).ok_or(TimeError::Overflow)?)
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This time plus a span.
    pub fn checked_add(self, span: Span) -> Result<Timestamp, TimeError> {
        i64::try_from(span.0)
            .ok()
            .and_then(|s| self.0.checked_add(s))
            .map(Timestamp)
            .ok_or(TimeError::Overflow)
    }

    /// Span from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Span {
        Span(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t={}ms", self.0)
    }
}

/// A length of time in milliseconds.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Span(u64);

impl Span {
    /// A span of milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// A span of seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(s * 1000)
    }

    /// Milliseconds in this span.
    pub const fn millis(self) -> u64 {
        self.0
    }

    /// True for a span of zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl FromStr for Span {
    type Err = TimeError;
    /// Parses `90s`, `5m`, `1h`, `7d` or `250ms`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || TimeError::BadDuration(s.to_string());
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let per = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        let ms = n.checked_mul(per).ok_or_else(bad)?;
        Ok(Span(ms))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        for (per, unit) in [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ] {
            if ms >= per && ms.is_multiple_of(per) {
                return write!(f, "{}{unit}", ms / per);
            }
        }
        write!(f, "{ms}ms")
    }
}

/// A half-open time window `[start, end)`; never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "WindowWire", into = "WindowWire")]
pub struct Window {
    start: Timestamp,
    end: Timestamp,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowWire {
    start: Timestamp,
    end: Timestamp,
}

impl TryFrom<WindowWire> for Window {
    type Error = TimeError;
    fn try_from(w: WindowWire) -> Result<Self, Self::Error> {
        Window::new(w.start, w.end)
    }
}

impl From<Window> for WindowWire {
    fn from(w: Window) -> Self {
        WindowWire {
            start: w.start,
            end: w.end,
        }
    }
}

impl Window {
    /// A window; `end` must be after `start`.
    pub fn new(start: Timestamp, end: Timestamp) -> Result<Self, TimeError> {
        if end <= start {
            return Err(TimeError::ReversedWindow { start, end });
        }
        Ok(Self { start, end })
    }

    /// A window starting at `start` and lasting `span` (which must not be zero).
    pub fn starting(start: Timestamp, span: Span) -> Result<Self, TimeError> {
        if span.is_zero() {
            return Err(TimeError::ZeroDuration);
        }
        Self::new(start, start.checked_add(span)?)
    }

    /// First instant inside.
    pub const fn start(&self) -> Timestamp {
        self.start
    }

    /// First instant after.
    pub const fn end(&self) -> Timestamp {
        self.end
    }

    /// True when `t` is inside `[start, end)`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    /// True when `other` lies entirely inside this window.
    pub fn covers(&self, other: &Window) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// This window with the end moved earlier (never before or at the start).
    pub fn cut_at(&self, end: Timestamp) -> Window {
        Window {
            start: self.start,
            end: end.clamp(self.start, self.end),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}ms, {}ms)", self.start.0, self.end.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_duration_forms() {
        assert_eq!("90s".parse::<Span>().unwrap(), Span::from_secs(90));
        assert_eq!("5m".parse::<Span>().unwrap(), Span::from_secs(300));
        assert_eq!("1h".parse::<Span>().unwrap(), Span::from_secs(3600));
        assert_eq!("7d".parse::<Span>().unwrap(), Span::from_secs(7 * 86400));
        assert_eq!("250ms".parse::<Span>().unwrap(), Span::from_millis(250));
        assert_eq!(Span::from_secs(3600).to_string(), "1h");
        assert_eq!(Span::from_millis(1500).to_string(), "1500ms");
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in [
            "",
            "5",
            "-5m",
            "5 minutes",
            "1.5h",
            "h",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<Span>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn windows_must_move_forward() {
        let t = |s| Timestamp::from_secs(s).unwrap();
        assert!(Window::new(t(5), t(5)).is_err());
        assert!(matches!(
            Window::new(t(6), t(5)),
            Err(TimeError::ReversedWindow { .. })
        ));
        assert_eq!(
            Window::starting(t(0), Span::from_millis(0)),
            Err(TimeError::ZeroDuration)
        );
        assert!(Timestamp::from_millis(-1).is_err());
        let w = Window::new(t(1), t(3)).unwrap();
        assert!(w.contains(t(1)) && !w.contains(t(3)));
        assert!(serde_json::from_str::<Window>(r#"{"start":5,"end":1}"#).is_err());
        assert!(serde_json::from_str::<Window>(r#"{"start":-5,"end":1}"#).is_err());
        assert!(serde_json::from_str::<Window>(r#"{"start":1,"end":1}"#).is_err());
    }
}
