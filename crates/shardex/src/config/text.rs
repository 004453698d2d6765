//! Serde helpers: durations and values read from and written as text.

use serde::{Deserialize, Deserializer};
use shardex_core::Span;

pub(super) fn span_text<'de, D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

pub(super) fn span_display<S: serde::Serializer>(span: &Span, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&span.to_string())
}

pub(super) fn display<T: std::fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

pub(super) fn displays<T: std::fmt::Display, S: serde::Serializer>(
    v: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}
