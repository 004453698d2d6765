//! `Idempotency-Key`: a retry with the same key and body returns the first answer and applies
//! nothing twice, across restarts; the same key with another body is a 422. Keys are per
//! caller (two tenants may use the same key) and kept for [`KEEP`].
//!
//! A request that makes an action claims its key in the action's own transaction
//! ([`Claim`], through [`crate::Backend::write`]), so the claim is durable exactly when the
//! action is; the answer is kept durably right after it is made ([`crate::Backend::keep`]).
//! If the process stops between the two, a retry finds the claim without an answer and gets a
//! 409 naming the log entry the request made, never a second application. An answer that
//! carries a secret (a new tenant's first token) is kept in memory only: after a restart its
//! retry gets that 409 too. Requests with a key are served one at a time, so concurrent
//! duplicates see one another.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};
use shardex_core::{Span, Timestamp};
use tokio::sync::{Mutex, MutexGuard};

/// How long a key and its answer are kept.
pub const KEEP: Span = Span::from_millis(24 * 3_600_000);
/// How many answers holding secrets are kept in memory at most.
pub const MAX_SECRET_ANSWERS: usize = 10_000;
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A key claimed by the request that makes an action: stored with the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Whose key: `admin` or the tenant.
    pub caller: String,
    /// The key.
    pub key: String,
    /// Hash of what was asked (method, path, query, body).
    pub fingerprint: [u8; 32],
}

/// What a key holds in the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Hash of the request that used the key first.
    pub fingerprint: Vec<u8>,
    /// The log entry that request made, if it made one.
    pub seq: Option<u64>,
    /// The answer kept: status, content type, body (`None`: the request's action is durable
    /// but its answer was not kept).
    pub answer: Option<(u16, String, Vec<u8>)>,
}

/// A stored answer that holds a secret, in memory.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Hash of what was asked.
    pub fingerprint: [u8; 32],
    /// The status sent.
    pub status: u16,
    /// The body sent.
    pub body: Vec<u8>,
    /// When.
    pub at: Timestamp,
}

/// Serves keyed requests one at a time and keeps the answers that hold secrets.
#[derive(Debug, Default)]
pub struct Cache {
    inner: Mutex<Entries>,
}

/// The secret answers and the order they came in.
#[derive(Debug, Default)]
pub struct Entries {
    map: HashMap<(String, String), Answer>,
    order: VecDeque<(String, String)>,
}

impl Cache {
    /// Locks keyed requests for one request, from lookup to keeping its answer.
    pub async fn lock(&self) -> MutexGuard<'_, Entries> {
        self.inner.lock().await
    }
}

impl Entries {
    /// The secret answer kept for `caller`'s `key`, if still fresh at `now`.
    pub fn get(&mut self, caller: &str, key: &str, now: Timestamp) -> Option<&Answer> {
        self.expire(now);
        self.map.get(&(caller.to_string(), key.to_string()))
    }

    /// Keeps a secret answer.
    pub fn put(&mut self, caller: &str, key: &str, answer: Answer) {
        let k = (caller.to_string(), key.to_string());
        if self.map.insert(k.clone(), answer).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > MAX_SECRET_ANSWERS {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    fn expire(&mut self, now: Timestamp) {
        while let Some(k) = self.order.front() {
            let stale = self.map.get(k).is_none_or(|a| now.since(a.at) > KEEP);
            if !stale {
                break;
            }
            self.map.remove(k);
            self.order.pop_front();
        }
    }
}

/// The fingerprint of a request.
pub fn fingerprint(method: &str, path: &str, query: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), query.as_bytes(), body] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(fp: u8, at: i64) -> Answer {
        Answer {
            fingerprint: [fp; 32],
            status: 201,
            body: vec![fp],
            at: Timestamp::from_secs(at).unwrap(),
        }
    }

    #[test]
    fn answers_are_per_caller_and_expire() {
        let mut e = Entries::default();
        e.put("tenant 1", "k", answer(1, 0));
        e.put("tenant 2", "k", answer(2, 0));
        let t = Timestamp::from_secs(60).unwrap();
        assert_eq!(e.get("tenant 1", "k", t).unwrap().body, vec![1]);
        assert_eq!(e.get("tenant 2", "k", t).unwrap().body, vec![2]);
        let later = Timestamp::from_secs(86_401).unwrap();
        assert!(e.get("tenant 1", "k", later).is_none());
    }

    #[test]
    fn the_fingerprint_tells_bodies_and_paths_apart() {
        let a = fingerprint("POST", "/v1/x", "", b"{}");
        assert_eq!(a, fingerprint("POST", "/v1/x", "", b"{}"));
        assert_ne!(a, fingerprint("POST", "/v1/x", "", b"{ }"));
        assert_ne!(a, fingerprint("POST", "/v1/y", "", b"{}"));
        assert_ne!(
            fingerprint("POST", "/v1/x", "a", b""),
            fingerprint("POST", "/v1/xa", "", b"")
        );
    }
}
