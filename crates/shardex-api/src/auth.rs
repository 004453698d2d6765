//! Who is asking: the admin (the daemon's own token) or a tenant (a token issued to it).
//!
//! A tenant token reads `sxt_<id>_<secret>`: the id is public and finds the stored record, the
//! secret (32 random bytes, hex) is shown once and kept only as its SHA-256 hash. Tokens and
//! hashes are compared in constant time. The tenant a request acts for is always the token's,
//! never a field of the body.

use axum::http::{HeaderMap, header};
use rand::RngCore;
use sha2::{Digest, Sha256};
use shardex_core::{TenantId, Timestamp};
use subtle::ConstantTimeEq;

/// The caller of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// The operator: every route, every tenant.
    Admin,
    /// A tenant: its own objects only.
    Tenant(TenantId),
}

impl Principal {
    /// The tenant, or `None` for the admin.
    pub fn tenant(self) -> Option<TenantId> {
        match self {
            Principal::Admin => None,
            Principal::Tenant(t) => Some(t),
        }
    }

    /// True when this caller may see `owner`'s objects.
    pub fn sees(self, owner: TenantId) -> bool {
        self.tenant().is_none_or(|t| t == owner)
    }
}

/// A token's stored form: public id, tenant, hash of the secret, validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The public part.
    pub id: String,
    /// Whose.
    pub tenant: TenantId,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    /// What the operator called it.
    pub label: String,
    /// When issued.
    pub created: Timestamp,
    /// When it stops working, if ever.
    pub expires: Option<Timestamp>,
    /// When revoked, if it was.
    pub revoked: Option<Timestamp>,
}

impl TokenRecord {
    /// True when it may be used at `now`.
    pub fn valid_at(&self, now: Timestamp) -> bool {
        self.revoked.is_none() && self.expires.is_none_or(|e| now < e)
    }
}

/// A freshly issued token: the full text (shown once) and what to store.
#[derive(Debug, Clone)]
pub struct Issued {
    /// `sxt_<id>_<secret>`: what the tenant sends as its bearer token.
    pub token: String,
    /// What the store keeps.
    pub record: TokenRecord,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Issues a new random token for `tenant`.
pub fn issue(
    tenant: TenantId,
    label: &str,
    created: Timestamp,
    expires: Option<Timestamp>,
) -> Issued {
    let (id, secret) = random_parts();
    Issued {
        token: format!("sxt_{id}_{secret}"),
        record: TokenRecord {
            id,
            tenant,
            hash: hash_secret(&secret),
            label: label.to_string(),
            created,
            expires,
            revoked: None,
        },
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A new random host agent's token, `sxh_<id>_<secret>`: the text (shown once), its public
/// id and the hash of its secret (what is kept).
pub fn issue_host() -> (String, String, String) {
    let (id, secret) = random_parts();
    (format!("sxh_{id}_{secret}"), id, hash_secret(&secret))
}

/// A token's random public id (6 bytes) and secret (32 bytes), in hex.
fn random_parts() -> (String, String) {
    let mut rng = rand::rng();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    (hex(&id), hex(&secret))
}

/// Splits a host agent's `sxh_<id>_<secret>` into id and secret.
pub fn parse_host_token(token: &str) -> Option<(&str, &str)> {
    parse_parts(token.strip_prefix("sxh_")?)
}

/// Splits `sxt_<id>_<secret>` into id and secret.
pub fn parse_tenant_token(token: &str) -> Option<(&str, &str)> {
    parse_parts(token.strip_prefix("sxt_")?)
}

fn parse_parts(rest: &str) -> Option<(&str, &str)> {
    let (id, secret) = rest.split_once('_')?;
    let hexy = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexy(id) && id.len() <= 32 && hexy(secret) && secret.len() == 64).then_some((id, secret))
}

/// Constant-time equality of two strings (their lengths are not secret).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// True when `secret` is the one `record` was issued with and it is valid at `now`.
pub fn verify(record: &TokenRecord, secret: &str, now: Timestamp) -> bool {
    same(&hash_secret(secret), &record.hash) && record.valid_at(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(s).unwrap()
    }

    #[test]
    fn a_host_token_parses_as_a_host_s_and_never_as_a_tenant_s() {
        let (token, id, hash) = issue_host();
        let (pid, secret) = parse_host_token(&token).unwrap();
        assert_eq!(pid, id);
        assert_eq!(hash_secret(secret), hash);
        assert!(parse_tenant_token(&token).is_none());
        let tenant = issue(TenantId(1), "x", t(0), None).token;
        assert!(parse_host_token(&tenant).is_none());
    }

    #[test]
    fn an_issued_token_verifies_and_only_its_hash_is_kept() {
        let i = issue(TenantId(3), "ci", t(0), Some(t(100)));
        let (id, secret) = parse_tenant_token(&i.token).unwrap();
        assert_eq!(id, i.record.id);
        assert!(!i.record.hash.contains(secret));
        assert!(verify(&i.record, secret, t(50)));
        assert!(!verify(&i.record, secret, t(100)), "expired");
        let mut other = secret.to_string();
        other.replace_range(0..1, if other.starts_with('0') { "1" } else { "0" });
        assert!(!verify(&i.record, &other, t(50)));
        let mut revoked = i.record.clone();
        revoked.revoked = Some(t(10));
        assert!(!verify(&revoked, secret, t(50)));
    }

    #[test]
    fn malformed_tokens_are_not_parsed() {
        for bad in ["", "sxt_", "sxt_ab", "sxt_ab_cd", "abc_def", "sxt__00"] {
            assert_eq!(parse_tenant_token(bad), None, "{bad}");
        }
        let two = issue(TenantId(1), "", t(0), None);
        assert_ne!(two.token, issue(TenantId(1), "", t(0), None).token);
    }
}
