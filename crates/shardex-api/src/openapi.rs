//! The OpenAPI 3.1 document, generated from the wire types and the handlers' annotations,
//! served at `/v1/openapi.json` and committed as `openapi.json` at the crate's root (a test
//! fails when the two differ: `cargo test -p shardex-api` says how to update it).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    events, invoice, market, modifications, overview, requests, reservations, tenants, timeline,
    workloads,
};
use crate::wire;

/// The bearer tokens: the admin's, or a tenant's `sxt_…`.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "shardex", description = "Shards of a host's capacity, reserved, modified, lent and billed."),
    paths(
        tenants::list, tenants::create, tenants::list_tokens, tenants::create_token, tenants::revoke_token,
        reservations::list, reservations::create, reservations::get, reservations::cancel,
        modifications::list, modifications::get, modifications::create, modifications::cancel,
        workloads::list, workloads::of_reservation, workloads::get, workloads::forecast,
        timeline::history, timeline::decisions, overview::get,
        market::get, market::history,
        requests::list,
        invoice::get,
        events::stream,
    ),
    components(schemas(
        crate::Problem, wire::Shards, wire::NewTenant, wire::TenantView, wire::NewToken, wire::TokenView,
        wire::IssuedToken, wire::CreatedTenant, wire::NewReservation, wire::Resources, wire::WindowView, wire::ReservationView,
        wire::ReservationPage, wire::NewModification, wire::ModificationView, wire::Quote,
        wire::ModificationOutcome, wire::InvoiceLine, wire::InvoiceView, wire::KindNow,
        wire::WorkloadView, wire::QuantileView, wire::ForecastStep, wire::ForecastView,
        wire::PricesView, wire::LeaseView, wire::MarketView,
        wire::StepView, wire::ShardRequestView, wire::StreamEventView, wire::EventPage,
        wire::PricePointView, wire::PriceHistoryView,
        wire::SplitView, wire::MarketSummary, wire::HostOverview, wire::RequestCounts, wire::OverviewView,
        wire::SeriesView, wire::TimelineView, wire::DecisionView, wire::DecisionsView, wire::WorkloadList,
    )),
    modifiers(&Bearer),
    security(("bearer" = [])),
)]
pub struct Doc;

/// The document as pretty JSON (what is committed).
pub fn json() -> String {
    Doc::openapi().to_pretty_json().unwrap_or_default()
}

/// `GET /v1/openapi.json` (no token needed).
pub async fn serve() -> Response {
    let mut r = (StatusCode::OK, json()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_document_is_the_codes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let now = super::json();
        if std::env::var_os("SHARDEX_WRITE_OPENAPI").is_some() {
            std::fs::write(path, format!("{now}\n")).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            committed.trim_end(),
            now,
            "crates/shardex-api/openapi.json is stale: run SHARDEX_WRITE_OPENAPI=1 cargo test -p shardex-api openapi"
        );
    }
}
