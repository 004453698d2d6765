//! The event stream (server-sent events): decisions, modifications, leases, lease requests,
//! prices, OOM kills and shard requests as they happen. A tenant sees what concerns its own
//! objects; the admin sees everything. `Last-Event-ID` (or `?after=`) resumes after the last
//! event seen; when that one is too old to be kept, the stream starts with a `missed` event
//! saying how many are gone, so a client knows to reread the state. A request that does not
//! accept `text/event-stream` (a poller, a script) gets the kept events after `after` as one
//! JSON page instead, and the id to ask after next.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::query;
use crate::auth::Principal;
use crate::events::{KINDS, StreamEvent};
use crate::wire::{EventFilter, EventPage, StreamEventView};
use crate::{Api, Backend, Problem};

/// What one subscriber is allowed and asked to see.
#[derive(Debug, Clone)]
struct Sieve {
    principal: Principal,
    kinds: Option<Vec<String>>,
}

impl Sieve {
    fn keeps(&self, e: &StreamEvent) -> bool {
        let visible = match self.principal.tenant() {
            None => true,
            Some(t) => e.tenants.contains(&t),
        };
        visible
            && self
                .kinds
                .as_ref()
                .is_none_or(|k| k.iter().any(|k| k == e.kind))
    }
}

fn sse(e: &StreamEvent) -> Event {
    let view = StreamEventView {
        id: e.id,
        kind: e.kind.to_string(),
        data: e.data.clone(),
    };
    Event::default()
        .id(e.id.to_string())
        .event(e.kind)
        .data(serde_json::to_string(&view).unwrap_or_default())
}

fn missed(n: u64) -> Event {
    Event::default().event("missed").data(
        serde_json::json!({
            "missed": n,
            "detail": "events were published faster than this subscriber read them, or before the id it resumed from: reread the state (e.g. GET /v1/reservations) and go on"
        })
        .to_string(),
    )
}

/// The kinds asked for, each checked.
fn kinds(f: &EventFilter) -> Result<Option<Vec<String>>, Problem> {
    let Some(list) = &f.kinds else {
        return Ok(None);
    };
    let kinds: Vec<String> = list.split(',').map(|k| k.trim().to_string()).collect();
    if let Some(bad) = kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
        return Err(Problem::bad_request(format!(
            "kinds: {bad:?} is not one of {}",
            KINDS.join(", ")
        )));
    }
    Ok(Some(kinds))
}

/// Where to resume: `Last-Event-ID` first, else `?after=`.
fn resume(headers: &HeaderMap, f: &EventFilter) -> Result<Option<u64>, Problem> {
    match headers.get("last-event-id") {
        None => Ok(f.after),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| Problem::bad_request("Last-Event-ID: not an event id (a number)")),
    }
}

/// The most events one JSON page holds.
const PAGE: usize = 1000;

/// The kept events after `after` as one JSON page.
fn page<B: Backend>(api: &Api<B>, sieve: &Sieve, after: u64) -> Response {
    let sub = api.backend.events().subscribe(Some(after));
    let next_after = sub.backlog[..sub.backlog.len().min(PAGE)]
        .last()
        .map_or(after, |e| e.id);
    let events: Vec<StreamEventView> = sub
        .backlog
        .iter()
        .take(PAGE)
        .filter(|e| sieve.keeps(e))
        .map(|e| StreamEventView {
            id: e.id,
            kind: e.kind.to_string(),
            data: e.data.clone(),
        })
        .collect();
    super::answer(
        axum::http::StatusCode::OK,
        &EventPage {
            events,
            missed: sub.missed,
            next_after,
        },
    )
}

/// `GET /v1/events[?kinds=&after=]`: with `Accept: text/event-stream`, a stream kept alive
/// with a comment every 15 s; otherwise one page of the kept events after `after`.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventFilter),
    responses((status = 200, content((EventPage = "application/json"),
            (StreamEventView = "text/event-stream")),
        description = "with `Accept: text/event-stream`, server-sent events (`id:` the event id, `event:` its kind, `data:` a StreamEventView); otherwise a page of the kept events"),
        (status = 400, body = Problem)))]
pub async fn stream<B: Backend>(
    State(api): State<Arc<Api<B>>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    q: Result<Query<EventFilter>, QueryRejection>,
) -> Response {
    let start = (|| {
        let f = query(q)?;
        Ok::<_, Problem>((kinds(&f)?, resume(&headers, &f)?))
    })();
    let (kinds, after) = match start {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let sieve = Sieve { principal, kinds };
    let streaming = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    if !streaming {
        return page(&api, &sieve, after.unwrap_or(0));
    }
    let sub = api.backend.events().subscribe(after);
    let head = (sub.missed > 0).then(|| missed(sub.missed));
    let backlog: Vec<Event> = sub
        .backlog
        .iter()
        .filter(|e| sieve.keeps(e))
        .map(|e| sse(e))
        .collect();
    let live = stream::unfold((sub.live, sieve), |(mut rx, sieve)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if sieve.keeps(&e) => return Some((sse(&e), (rx, sieve))),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => return Some((missed(n), (rx, sieve))),
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let all = stream::iter(head.into_iter().chain(backlog)).chain(live);
    Sse::new(all.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
