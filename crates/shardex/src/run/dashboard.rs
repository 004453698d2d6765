//! The web dashboard at `/`: a page and its scripts, styles and chart library (uPlot 1.6.32,
//! vendored), all embedded in the binary, so it works offline and the daemon ships as one file.
//! The page reads the API like any client: `GET /v1/overview` without a token, everything else
//! with the token the user pastes in (kept in the browser's session storage), so it is
//! read-only unless a token is given and shows a tenant only what that tenant's token may see.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Each asset: its path under `/assets/`, its content type and its bytes.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/app.css"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/vendor/uPlot.min.css"),
    ),
];

const INDEX: &[u8] = include_bytes!("../../assets/dashboard/index.html");

/// Scripts and styles from this origin only; the API on the same origin; never in a frame.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                      img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

fn page(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The binary is the version: a browser asks again (cheap) rather than run a stale script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    r
}

/// `GET /`: the dashboard's page.
pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// `GET /assets/{*file}`: one embedded asset, or a 404 problem document.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => page(content_type, body),
        None => shardex_api::Problem::new(
            StatusCode::NOT_FOUND,
            "no-such-asset",
            format!("the dashboard has no asset {file:?}"),
        )
        .into_response(),
    }
}
