//! Errors as `application/problem+json` (RFC 9457): a stable `type` per rule, the HTTP status,
//! and a message a person understands. The ledger's typed errors map one to one; an unknown or
//! foreign object is 404, a broken rule 409 or 422 naming it; bad input is never a 5xx.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shardex_core::LedgerError;
use utoipa::ToSchema;

/// Where the problem types are documented (the README's API section).
const TYPE_BASE: &str = "https://shardex.dev/problems/";

/// A problem, boxed so that results stay small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub Box<ProblemDoc>);

impl std::ops::Deref for Problem {
    type Target = ProblemDoc;
    fn deref(&self) -> &ProblemDoc {
        &self.0
    }
}

impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        ProblemDoc::schema()
    }
}

impl ToSchema for Problem {
    fn name() -> std::borrow::Cow<'static, str> {
        "Problem".into()
    }
}

/// One problem document (RFC 9457).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProblemDoc {
    /// A URI naming the rule, stable across versions.
    #[serde(rename = "type")]
    pub kind: String,
    /// The rule's short name.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time, for a person.
    pub detail: String,
    /// The stable code of the rule (the last segment of `type`).
    pub code: String,
    /// For refused modifications and reservations: `infeasible`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl Problem {
    /// A problem with a code, a status and a message.
    pub fn new(status: StatusCode, code: &str, detail: impl std::fmt::Display) -> Self {
        Self(Box::new(ProblemDoc {
            kind: format!("{TYPE_BASE}{code}"),
            title: code.replace('-', " "),
            status: status.as_u16(),
            detail: detail.to_string(),
            code: code.to_string(),
            outcome: None,
        }))
    }

    /// 400: the request can't be read (syntax, unknown field, bad value).
    pub fn bad_request(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 401: no valid token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
    }

    /// 403: a valid token that may not use this route.
    pub fn forbidden(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404: no such object, or one of another tenant (the same answer, on purpose).
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} does not exist"),
        )
    }

    /// 422: an `Idempotency-Key` reused with another body.
    pub fn idempotency_mismatch() -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "this Idempotency-Key was used with another request body; use a new key",
        )
    }

    /// 409: the key's request was applied, but its answer was not kept (the process stopped
    /// in between, or the answer held a secret).
    pub fn answer_not_kept(seq: Option<u64>) -> Self {
        let what = seq.map_or_else(
            || "was applied".to_string(),
            |s| format!("was applied as log entry {s}"),
        );
        Self::new(
            StatusCode::CONFLICT,
            "idempotency-answer-not-kept",
            format!(
                "the request with this Idempotency-Key {what}, but its answer was not kept (the daemon stopped before keeping it, or it held a secret): read the object to see it; nothing was applied twice"
            ),
        )
    }

    /// 429: this token made more requests than its rate limit allows; the answer says in
    /// `Retry-After` (whole seconds, at least 1) when it may try again.
    pub fn rate_limited(wait: std::time::Duration) -> Response {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = secs.max(1);
        let mut r = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("this token is over its rate limit ([api] rate_limit in shardex.toml); retry in {secs} s"),
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        r
    }

    /// 500: the store failed; nothing was applied.
    pub fn store(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store-failed",
            format!("the store failed, nothing was applied: {detail}"),
        )
    }

    /// Marks a refusal of a change as `infeasible`.
    #[must_use]
    pub fn infeasible(mut self) -> Self {
        self.0.outcome = Some("infeasible".into());
        self
    }

    /// The ledger's refusal, by rule.
    pub fn ledger(e: &LedgerError) -> Self {
        use LedgerError as E;
        let (status, code) = match e {
            E::InBatch { source, .. } => return Self::ledger(source),
            E::UnknownHost(_)
            | E::UnknownTenant(_)
            | E::UnknownReservation(_)
            | E::UnknownModification(_)
            | E::UnknownWorkload(_)
            | E::UnknownLease(_)
            | E::UnknownRequest(_)
            // A foreign object is answered exactly like a missing one.
            | E::NotOwner { .. }
            | E::NotLender { .. } => {
                return Self::new(StatusCode::NOT_FOUND, "not-found", not_found_detail(e));
            }
            E::DuplicateName { .. } | E::WorkloadTaken { .. } => (StatusCode::CONFLICT, "name-taken"),
            E::BadName { .. } | E::BadWorkloadName { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "bad-name")
            }
            E::EmptyVector { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "empty-vector"),
            E::StartsInPast { .. } | E::NotInFuture { .. } | E::TimeWentBackwards { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "time-in-past")
            }
            E::Time(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bad-time"),
            E::Shard(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bad-shards"),
            E::ReservationNotInForce { .. } | E::ReservationEnded(_) => {
                (StatusCode::CONFLICT, "reservation-not-in-force")
            }
            E::ModificationOutsideReservation { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "modification-outside-reservation")
            }
            E::BadChanges(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bad-changes"),
            E::ModificationEnded(_) => (StatusCode::CONFLICT, "modification-ended"),
            E::HostCapacityExceeded { .. } => (StatusCode::CONFLICT, "host-capacity-exceeded"),
            E::BelowLent { .. } => (StatusCode::CONFLICT, "below-lent"),
            E::InsufficientIdle { .. } => (StatusCode::CONFLICT, "insufficient-idle"),
            E::LenderHasLeases { .. } => (StatusCode::CONFLICT, "lender-has-leases"),
            E::RequestExceedsCapacity { .. } => {
                (StatusCode::CONFLICT, "request-exceeds-capacity")
            }
            E::NegativePrice { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "negative-price"),
            E::AlreadyReclaiming(_) => (StatusCode::CONFLICT, "already-reclaiming"),
            E::NotProviderLease(_) => (StatusCode::CONFLICT, "not-provider-lease"),
            E::PriceUnderFloor { .. } => (StatusCode::CONFLICT, "price-under-floor"),
            E::OverLendingCap { .. } => (StatusCode::CONFLICT, "over-lending-cap"),
            E::NestedBatch => (StatusCode::UNPROCESSABLE_ENTITY, "nested-batch"),
            E::OutOfBounds { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "out-of-bounds"),
            E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "ledger-internal"),
        };
        Self::new(status, code, e)
    }
}

/// "reservation 7 does not exist", never "… does not belong to tenant 2".
fn not_found_detail(e: &LedgerError) -> String {
    match e {
        LedgerError::NotOwner { object, .. } => format!("{object} does not exist"),
        LedgerError::NotLender { lease, .. } => format!("{lease} does not exist"),
        other => other.to_string(),
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&*self.0).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardex_core::{ReservationId, TenantId};

    #[test]
    fn a_foreign_object_reads_exactly_like_a_missing_one() {
        let foreign = Problem::ledger(&LedgerError::NotOwner {
            object: "reservation 7".into(),
            tenant: TenantId(2),
        });
        let missing = Problem::ledger(&LedgerError::UnknownReservation(ReservationId(7)));
        assert_eq!(foreign, missing);
        assert_eq!(foreign.status, 404);
    }
}
