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
//! retry gets that 409 too. Requests with the same caller and key are served one at a time,
//! so concurrent duplicates see one another; other keys go on meanwhile.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError};

use sha2::{Digest, Sha256};
use shardex_core::{Span, Timestamp};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// How long a key and its answer are kept.
pub const KEEP: Span = Span::from_millis(24 * 3_600_000);
/// How many answers holding secrets are kept in memory at most.
pub const MAX_SECRET_ANSWERS: usize = 10_000;
/// A caller and one of its keys.
type CallerKey = (String, String);

/// Keys' locks kept before those nobody holds are swept.
const SWEEP_AT: usize = 1024;
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

/// Serves the requests with the same caller and key one at a time (requests with other keys
/// go on meanwhile) and keeps the answers that hold secrets.
#[derive(Debug, Default)]
pub struct Cache {
    keys: std::sync::Mutex<HashMap<CallerKey, Arc<Mutex<()>>>>,
    secrets: std::sync::Mutex<Entries>,
}

/// The answers that hold secrets and the order they came in.
#[derive(Debug, Default)]
pub struct Entries {
    map: HashMap<(String, String), Answer>,
    order: VecDeque<(String, String)>,
}

/// Held while one request with `caller`'s `key` runs; dropping it lets the next one in.
#[derive(Debug)]
pub struct KeyGuard<'a> {
    cache: &'a Cache,
    key: CallerKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Cache {
    /// Waits until no other request with `caller`'s `key` runs, and holds the key.
    pub async fn lock(&self, caller: &str, key: &str) -> KeyGuard<'_> {
        let k = (caller.to_string(), key.to_string());
        let lock = {
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            // A waiter that went away (its client hung up) leaves its key's lock behind when
            // the holder was already gone: sweep such leftovers now and then.
            if keys.len() >= SWEEP_AT {
                keys.retain(|_, l| Arc::strong_count(l) > 1);
            }
            keys.entry(k.clone()).or_default().clone()
        };
        KeyGuard {
            cache: self,
            key: k,
            guard: Some(lock.lock_owned().await),
        }
    }

    /// The secret answer kept for `caller`'s `key`, if still fresh at `now`.
    pub fn secret(&self, caller: &str, key: &str, now: Timestamp) -> Option<Answer> {
        let mut e = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        e.get(caller, key, now).cloned()
    }

    /// Keeps a secret answer.
    pub fn keep_secret(&self, caller: &str, key: &str, answer: Answer) {
        let mut e = self.secrets.lock().unwrap_or_else(PoisonError::into_inner);
        e.put(caller, key, answer);
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        // Forget the key's lock once nobody holds or waits for it (they clone it under the
        // map's lock, so a count of one here means the map's own).
        let mut keys = self
            .cache
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if keys
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            keys.remove(&self.key);
        }
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

    #[tokio::test]
    async fn one_request_per_key_at_a_time_and_other_keys_go_on() {
        let cache = Cache::default();
        let held = cache.lock("tenant 1", "k").await;
        // Another key, and the same key of another caller, are not held up.
        drop(cache.lock("tenant 1", "other").await);
        drop(cache.lock("tenant 2", "k").await);
        // The same key waits until the first is done.
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            cache.lock("tenant 1", "k"),
        )
        .await;
        assert!(waiting.is_err(), "the same key went in twice");
        drop(held);
        drop(cache.lock("tenant 1", "k").await);
        // Nobody holds or waits for any key: none is kept.
        assert!(cache.keys.lock().unwrap().is_empty());
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
