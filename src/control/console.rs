//! The web console (`/ui/` on the admin listener): a page over the admin API, served from
//! assets built into the binary. It holds no state and no privilege of its own: the signed-in
//! token goes with every `/v1` call, and the API enforces its role.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// Scripts and styles from this origin only, no framing, no referrer, no inline code.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/ui/presets.json", get(|| async { presets() }))
}

/// The OAuth presets catalog (`sluice oauth presets`) for the console's create form: public
/// endpoints and scopes, no secret.
fn presets() -> Response {
    static JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = JSON.get_or_init(|| {
        serde_json::to_string(crate::config::oauth_provider::PRESETS).unwrap_or_default()
    });
    asset(body.as_str(), "application/json")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    // `'static` for the built-in files and the catalog made once.
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}
