//! The forecasters' conversions between f64 statistics and whole amounts, said once: a
//! quantile is computed in f64 and allocated in whole units. Each saturates as Rust's `as`
//! does (NaN and negatives to 0, beyond the range to its end), which is what a demand that
//! can't be negative needs.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

/// Rounded up to a whole amount.
pub(crate) fn ceil_u64(x: f64) -> u64 {
    x.ceil() as u64
}

/// Rounded to the nearest whole amount.
pub(crate) fn round_u64(x: f64) -> u64 {
    x.round() as u64
}

/// Truncated to an index or a count.
pub(crate) fn to_usize(x: f64) -> usize {
    x as usize
}

/// Truncated to milliseconds.
pub(crate) fn to_i64(x: f64) -> i64 {
    x as i64
}

/// Narrowed to the f32 the seasonal tables keep (a relative error of about 1e-7).
pub(crate) fn to_f32(x: f64) -> f32 {
    x as f32
}

/// A histogram bucket number as the exponent `powi` takes (buckets are few).
pub(crate) fn to_i32(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

/// A time slot from a non-negative remainder.
pub(crate) fn slot(ms_slot: i64) -> usize {
    usize::try_from(ms_slot).unwrap_or(0)
}
