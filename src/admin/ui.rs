//! The operator console (DESIGN B11, `GET /ui`): one page embedded in the binary, its script and
//! its style sheet, all three open like `/health` (they hold no data: `auth::check` lets exactly
//! [`ASSET_PATHS`] through), and `GET /ui/state`, the one JSON document the page polls every
//! second, behind the admin protection like every other read (`state.rs`). Every data call the
//! page makes carries the token the operator typed (kept in the tab's session storage); writes
//! (drain, undrain) go to the existing endpoints and pass the same guard as any client's.
//!
//! The assets are served with a strict Content-Security-Policy (own script and style only, no
//! inline code, no framing, no form posts), `no-store`, `nosniff`, `DENY` framing and no
//! referrer.

mod state;

use actix_web::http::header;
use actix_web::{web, HttpResponse, HttpResponseBuilder};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_CSS: &str = include_str!("ui/app.css");
/// The scripts (ES modules): `app.js` imports the others.
const SCRIPTS: [(&str, &str); 4] = [
    ("/ui/app.js", include_str!("ui/app.js")),
    ("/ui/view.js", include_str!("ui/view.js")),
    ("/ui/sections.js", include_str!("ui/sections.js")),
    ("/ui/explain.js", include_str!("ui/explain.js")),
];

/// The console's Content-Security-Policy: the page's own script and style sheet, fetches to its
/// own origin, nothing else (no inline script or style, no framing, no form submission).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
form-action 'none'";

/// The console's static files: open to `GET` without a token (they contain no data).
pub const ASSET_PATHS: [&str; 6] = [
    "/ui",
    "/ui/app.css",
    "/ui/app.js",
    "/ui/view.js",
    "/ui/sections.js",
    "/ui/explain.js",
];

/// Registers `/ui`, its assets and `/ui/state` (inside the guarded admin scope).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(index))
        .route("/ui/app.css", web::get().to(app_css))
        .route("/ui/state", web::get().to(state::state));
    for (path, body) in SCRIPTS {
        cfg.route(
            path,
            web::get().to(move || async move { asset("text/javascript; charset=utf-8", body) }),
        );
    }
}

/// The headers every console answer carries.
pub(super) fn secured(mut res: HttpResponseBuilder) -> HttpResponseBuilder {
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP));
    res
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    secured(HttpResponse::Ok())
        .content_type(content_type)
        .body(body)
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_css() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_its_own_assets() {
        // No inline script or style (the CSP forbids them) and nothing from elsewhere.
        assert!(INDEX_HTML.contains(r#"<script type="module" src="/ui/app.js"></script>"#));
        assert!(INDEX_HTML.contains(r#"href="/ui/app.css""#));
        for bad in [
            "<script>",
            "style=",
            "http://",
            "https://",
            "<style",
            "javascript:",
        ] {
            assert!(!INDEX_HTML.contains(bad), "index.html contains {bad:?}");
        }
        let handler = INDEX_HTML
            .split_whitespace()
            .find(|w| w.starts_with("on") && w.contains('='));
        assert_eq!(handler, None, "no inline event handler attributes");
        for (path, js) in SCRIPTS {
            // Only the SVG namespace names a URL; nothing is fetched from elsewhere.
            let js = js.replace("'http://www.w3.org/2000/svg'", "");
            for bad in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "http:",
                "https:",
                "setAttribute('style'",
            ] {
                assert!(!js.contains(bad), "{path} contains {bad:?}");
            }
            assert!(ASSET_PATHS.contains(&path), "{path} is open like the page");
        }
        assert!(!APP_CSS.contains("@import") && !APP_CSS.contains("url("));
    }
}
