//! Random and malformed requests (methods, paths, query strings, bodies, tokens) against the
//! API's router never produce a 5xx, never break a ledger invariant, and a refused request
//! changes nothing. The backend here keeps the ledger in memory (the daemon's backend keeps it
//! in SQLite; its routes are tested end to end in `crates/shardex/tests/api.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use shardex_api::idempotency::{Claim, Kept};
use shardex_api::{Api, Backend, Planned, Problem, TokenRecord};
use shardex_core::billing::Charge;
use shardex_core::{Action, Event, Ledger, PriceTable, ShardVector, TenantId, Timestamp, action};
use tokio::sync::Mutex;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret";
const NOW: i64 = 1_796_000_000_000;

struct Mem {
    ledger: Mutex<Ledger>,
    tokens: Mutex<Vec<TokenRecord>>,
    prices: PriceTable,
    commits: AtomicU64,
    events: shardex_api::events::EventBus,
    kept: Mutex<std::collections::HashMap<(String, String), Kept>>,
}

fn now_of(l: &Ledger) -> Timestamp {
    l.now().max(Timestamp::from_millis(NOW).unwrap())
}

impl Backend for Mem {
    fn admin_token(&self) -> &str {
        ADMIN
    }
    fn events(&self) -> &shardex_api::events::EventBus {
        &self.events
    }
    async fn price_history(
        &self,
        _: shardex_core::HostId,
        _: Timestamp,
        _: u32,
    ) -> Result<Vec<(Timestamp, shardex_core::PriceVector)>, Problem> {
        Ok(Vec::new())
    }
    async fn timeline(
        &self,
        _: shardex_core::WorkloadId,
        _: Timestamp,
    ) -> Option<shardex_api::Timeline> {
        None
    }
    async fn decisions(
        &self,
        _: shardex_core::WorkloadId,
        _: u32,
    ) -> Result<Vec<shardex_api::DecisionRecord>, Problem> {
        Ok(Vec::new())
    }
    fn public_overview(&self) -> bool {
        true
    }
    fn prices(&self) -> &PriceTable {
        &self.prices
    }
    fn lender_share(&self) -> rust_decimal::Decimal {
        rust_decimal::Decimal::new(8, 1)
    }
    async fn read<R: Send>(&self, f: impl FnOnce(&Ledger, Timestamp) -> R + Send) -> R {
        let l = self.ledger.lock().await;
        f(&l, now_of(&l))
    }
    async fn write<P: Send + 'static, T: Send + 'static>(
        &self,
        plan: impl FnOnce(&Ledger, Timestamp) -> Result<(Planned, P), Problem> + Send + 'static,
        describe: impl FnOnce(&Ledger, &[Event], P) -> T + Send + 'static,
        dry_run: bool,
        claim: Option<Claim>,
    ) -> Result<T, Problem> {
        let mut l = self.ledger.lock().await;
        let now = now_of(&l);
        let (planned, p) = plan(&l, now)?;
        // A plan that applied the action did it on this ledger at this time: the same.
        let (after, events) = l
            .applied(&planned.action, now)
            .map_err(|e| Problem::ledger(&e))?;
        if let Some((planned_after, planned_events)) = &planned.applied {
            assert_eq!((planned_after, planned_events), (&after, &events));
        }
        if !dry_run {
            *l = after.clone();
            let seq = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(c) = claim {
                self.kept.lock().await.insert(
                    (c.caller, c.key),
                    Kept {
                        fingerprint: c.fingerprint.to_vec(),
                        seq: Some(seq),
                        answer: None,
                    },
                );
            }
        }
        Ok(describe(&after, &events, p))
    }
    async fn kept(&self, caller: &str, key: &str, _: Timestamp) -> Result<Option<Kept>, Problem> {
        Ok(self
            .kept
            .lock()
            .await
            .get(&(caller.to_string(), key.to_string()))
            .cloned())
    }
    async fn keep(
        &self,
        caller: &str,
        key: &str,
        fingerprint: &[u8; 32],
        _: Timestamp,
        answer: (u16, &str, &[u8]),
    ) -> Result<(), Problem> {
        let mut kept = self.kept.lock().await;
        let k = kept
            .entry((caller.to_string(), key.to_string()))
            .or_insert_with(|| Kept {
                fingerprint: fingerprint.to_vec(),
                seq: None,
                answer: None,
            });
        if k.fingerprint == fingerprint.as_slice() {
            k.answer = Some((answer.0, answer.1.to_string(), answer.2.to_vec()));
        }
        Ok(())
    }
    async fn charges(
        &self,
        _: TenantId,
        _: Timestamp,
        _: Timestamp,
    ) -> Result<Vec<Charge>, Problem> {
        Ok(Vec::new())
    }
    fn sizes(&self) -> shardex_core::ShardSizes {
        shardex_core::ShardSizes::default()
    }
    // As with a migrator: a change the full host has no room for may wait (pending).
    fn frees_room(&self) -> bool {
        true
    }
    async fn workloads(&self) -> Vec<shardex_api::WorkloadState> {
        Vec::new()
    }
    async fn shard_requests(&self) -> Vec<shardex_core::engine::ShardRequest> {
        Vec::new()
    }
    async fn token(&self, id: &str) -> Result<Option<TokenRecord>, Problem> {
        Ok(self
            .tokens
            .lock()
            .await
            .iter()
            .find(|t| t.id == id)
            .cloned())
    }
    async fn tokens(&self, tenant: Option<TenantId>) -> Result<Vec<TokenRecord>, Problem> {
        let all = self.tokens.lock().await;
        Ok(all
            .iter()
            .filter(|t| tenant.is_none_or(|x| t.tenant == x))
            .cloned()
            .collect())
    }
    async fn add_token(&self, t: TokenRecord) -> Result<(), Problem> {
        self.tokens.lock().await.push(t);
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn revoke_token(&self, id: &str) -> Result<bool, Problem> {
        let mut all = self.tokens.lock().await;
        let Some(t) = all.iter_mut().find(|t| t.id == id && t.revoked.is_none()) else {
            return Ok(false);
        };
        t.revoked = Some(Timestamp::from_millis(NOW).unwrap());
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
}

/// A world: one host, tenants alpha (token A) and beta (token B), a reservation of alpha's.
fn world() -> (Arc<Api<Mem>>, String, String) {
    let mut l = Ledger::new();
    let t0 = Timestamp::from_millis(NOW - 1000).unwrap();
    l.apply(
        &Action::RegisterHost(action::RegisterHost {
            name: "h1".into(),
            capacity: ShardVector::new(1000, 1000, 100, 100),
        }),
        t0,
    )
    .unwrap();
    for n in ["alpha", "beta"] {
        l.apply(
            &Action::CreateTenant(action::CreateTenant { name: n.into() }),
            t0,
        )
        .unwrap();
    }
    // Alpha's reservation 1, and beta's filling the rest of the host's cpu: a cpu increase of
    // alpha's can only wait (pending).
    for (tenant, cpu) in [(1, 100), (2, 900)] {
        l.apply(
            &Action::CreateReservation(action::CreateReservation {
                tenant: TenantId(tenant),
                host: shardex_core::HostId(1),
                vector: ShardVector::new(cpu, 100, 0, 0),
                window: shardex_core::Window::new(
                    t0,
                    Timestamp::from_millis(NOW + 86_400_000).unwrap(),
                )
                .unwrap(),
                tier: shardex_core::Tier::Standard,
            }),
            t0,
        )
        .unwrap();
    }
    let a = shardex_api::auth::issue(TenantId(1), "a", t0, None);
    let b = shardex_api::auth::issue(TenantId(2), "b", t0, None);
    let mem = Mem {
        ledger: Mutex::new(l),
        tokens: Mutex::new(vec![a.record, b.record]),
        prices: PriceTable::default(),
        commits: AtomicU64::new(0),
        events: shardex_api::events::EventBus::default(),
        kept: Mutex::default(),
    };
    (Api::new(mem), a.token, b.token)
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_string()),
        Just("2".to_string()),
        Just("0".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        Just("alpha".to_string()),
        Just("%00".to_string()),
        Just("%F0%9F%92%A5".to_string()),
        "[a-z0-9]{0,12}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    (0usize..16, segment(), segment()).prop_map(|(i, a, b)| match i {
        0 => "/v1/tenants".to_string(),
        1 => format!("/v1/tenants/{a}/tokens"),
        2 => format!("/v1/tokens/{a}"),
        3 => "/v1/reservations".to_string(),
        4 => format!("/v1/reservations/{a}"),
        5 => format!("/v1/reservations/{a}/modifications"),
        6 => format!("/v1/reservations/{a}/modifications/{b}"),
        7 => "/v1/invoice".to_string(),
        8 => format!("/v1/workloads/{a}"),
        9 => format!("/v1/workloads/{a}/forecast"),
        10 => format!("/v1/reservations/{a}/workloads"),
        11 => format!("/v1/hosts/{a}/market"),
        12 => "/v1/shard-requests".to_string(),
        13 => "/v1/events".to_string(),
        14 => format!("/v1/hosts/{a}/market/history"),
        _ => format!("/v1/{a}"),
    })
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("?dry_run=true".to_string()),
        Just("?dry_run=maybe".to_string()),
        Just("?limit=0&after=18446744073709551615".to_string()),
        Just("?period=18446744073709551615ms".to_string()),
        Just("?state=active&host=h1&tier=gold".to_string()),
        "\\?[a-z_=&%0-9]{0,20}",
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let text = prop_oneof![
        Just("now".to_string()),
        Just("+10%".to_string()),
        Just("=8".to_string()),
        Just("1h".to_string()),
        Just("18446744073709551615ms".to_string()),
        Just("9999-12-31T23:59:59Z".to_string()),
        Just("h1".to_string()),
        ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        text.prop_map(serde_json::Value::from),
    ];
    let key = prop_oneof![
        Just("host".to_string()),
        Just("shards".to_string()),
        Just("for".to_string()),
        Just("start".to_string()),
        Just("tier".to_string()),
        Just("changes".to_string()),
        Just("cpu".to_string()),
        Just("memory".to_string()),
        Just("name".to_string()),
        Just("delivery".to_string()),
        Just("label".to_string()),
        Just("expires_in".to_string()),
        "[a-z]{1,6}",
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        // A well-formed change: on alpha's reservation it can only wait (pending).
        Just(br#"{"changes":{"cpu":"+10%"},"for":"1h"}"#.to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
        Just(Vec::new()),
    ]
}

/// Sends one request as `who` (0 admin, 1 alpha, 2 beta, 3 a forged token, 4 none) to a fresh
/// world and checks it: never a 5xx, the ledger's invariants hold, a refusal commits nothing,
/// an error is a problem document, beta never changes alpha's reservation.
fn one_request(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    who: usize,
    key: Option<&str>,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (api, a, b) = world();
        let token = match who {
            0 => Some(ADMIN.to_string()),
            1 => Some(a.clone()),
            2 => Some(b.clone()),
            3 => Some(format!("{}x", &a[..a.len() - 1])),
            _ => None,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{path}{query}"));
        if let Some(t) = &token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(k) = &key {
            req = req.header("idempotency-key", *k);
        }
        let Ok(req) = req.body(Body::from(body.to_vec())) else {
            return Ok(()); // not a request HTTP can express
        };
        let before = api.backend.ledger.lock().await.clone();
        let router = shardex_api::routes::hardened(shardex_api::router(api.clone()));
        let res = router.oneshot(req).await.unwrap();
        let status = res.status();
        prop_assert!(
            !status.is_server_error(),
            "{} {}{} {}: {}",
            method,
            path,
            query,
            String::from_utf8_lossy(body),
            status
        );
        let after = api.backend.ledger.lock().await.clone();
        prop_assert_eq!(after.check(), vec![]);
        if !status.is_success() {
            prop_assert_eq!(
                api.backend.commits.load(Ordering::SeqCst),
                0,
                "a refusal committed"
            );
            prop_assert_eq!(
                format!("{:?}", before.reservations().collect::<Vec<_>>()),
                format!("{:?}", after.reservations().collect::<Vec<_>>())
            );
        }
        let ct = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_string());
        if !status.is_success() && ct.is_some() {
            prop_assert_eq!(
                ct.as_deref(),
                Some("application/problem+json"),
                "{} {}{}",
                method,
                path,
                query
            );
        }
        // Beta never changes alpha's reservation.
        if who == 2 {
            let r = |l: &Ledger| format!("{:?}", l.reservation(shardex_core::ReservationId(1)));
            prop_assert_eq!(r(&before), r(&after));
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_never_5xx_never_break_the_ledger_and_refusals_change_nothing(
        method in prop_oneof![Just("GET"), Just("POST"), Just("DELETE"), Just("PUT"), Just("PATCH")],
        path in path(),
        query in query(),
        body in body(),
        who in 0usize..5,
        key in prop::option::of("[a-z]{1,4}"),
    ) {
        one_request(method, &path, &query, &body, who, key.as_deref())?;
    }

    /// Modifications of a full host's reservations, well-formed or nearly: applied, pending,
    /// infeasible or refused, never a 5xx, the ledger's rules kept.
    #[test]
    fn modifications_on_a_full_host_never_5xx_and_keep_the_ledger_s_rules(
        reservation in 1u64..4,
        change in prop_oneof![Just("+10%"), Just("+50"), Just("+2000"), Just("-5"), Just("=950"), Just("+1cores"), Just("x")],
        kind in prop_oneof![Just("cpu"), Just("memory"), Just("gpu")],
        extra in prop_oneof![
            Just(""),
            Just(r#","delivery":"immediate""#),
            Just(r#","delivery":"scheduled","start":"+10m""#),
            Just(r#","start":"now""#),
        ],
        duration in prop_oneof![Just("1h"), Just("30d"), Just("0s")],
        dry_run in any::<bool>(),
        who in 0usize..3,
        key in prop::option::of("[a-b]{1}"),
    ) {
        let body = format!(r#"{{"changes":{{"{kind}":"{change}"}},"for":"{duration}"{extra}}}"#);
        let query = if dry_run { "?dry_run=true" } else { "" };
        let path = format!("/v1/reservations/{reservation}/modifications");
        one_request("POST", &path, query, body.as_bytes(), who, key.as_deref())?;
    }
}
