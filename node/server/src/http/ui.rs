//! The dashboard's files, embedded in the binary (`node/server/ui/`, plain ES modules
//! and CSS, no build step; uPlot vendored under `ui/vendor/` by `dashboard/vendor.mjs`)
//! and served at `/ui/` by every node: no CDN, no download at run time.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles and API
//! calls from this origin only, no inline script, no framing), `nosniff`, no referrer,
//! and an ETag so that a reload costs a 304.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub struct Asset {
    pub path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $mime:literal) => {
        Asset {
            path: $path,
            mime: $mime,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
        }
    };
}

/// Every file under `node/server/ui/` (a test checks that none is missing).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("charts.js", "text/javascript; charset=utf-8"),
    asset!("resources.js", "text/javascript; charset=utf-8"),
    asset!("resource.js", "text/javascript; charset=utf-8"),
    asset!("keys.js", "text/javascript; charset=utf-8"),
    asset!("cluster.js", "text/javascript; charset=utf-8"),
    asset!(
        "vendor/uplot/uPlot.esm.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
    asset!("vendor/uplot/VERSION", "text/plain; charset=utf-8"),
];

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12])))
            .collect()
    })
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return (
            StatusCode::NOT_FOUND,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            "not found\n",
        )
            .into_response();
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(ETAG, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// The headers of every file's answer.
const FILE_HEADERS: &str = "ETag, Cache-Control: no-cache, Content-Security-Policy, \
    X-Content-Type-Options: nosniff, Referrer-Policy: no-referrer, X-Frame-Options: DENY";

#[utoipa::path(
    get,
    path = "/ui/",
    tag = "dashboard",
    operation_id = "dashboard_index",
    summary = "The dashboard's page",
    description = FILE_HEADERS,
    security(()),
    params(("If-None-Match" = Option<String>, Header, description = "An ETag of this page")),
    responses(
        (status = 200, description = "The page", content_type = "text/html; charset=utf-8", body = String),
        (status = 304, description = "Not modified (the ETag matched)"),
        super::openapi::AnyErrors,
    ),
)]
pub(super) async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

#[utoipa::path(
    get,
    path = "/ui/{path}",
    tag = "dashboard",
    operation_id = "dashboard_file",
    summary = "One of the dashboard's files (embedded in the binary)",
    description = FILE_HEADERS,
    security(()),
    params(
        ("path" = String, Path, description = "The file, below `ui/` (may contain `/`)"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag of this file"),
    ),
    responses(
        (status = 200, description = "The file, with its type", body = String,
         content(("text/javascript; charset=utf-8"), ("text/css; charset=utf-8"), ("text/plain; charset=utf-8"), ("text/html; charset=utf-8"))),
        (status = 304, description = "Not modified (the ETag matched)"),
        (status = 404, description = "No such file", content_type = "text/plain; charset=utf-8", body = String),
        super::openapi::AnyErrors,
    ),
)]
pub(super) async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// `/` and `/ui` lead to the dashboard.
#[utoipa::path(
    get,
    path = "/",
    tag = "dashboard",
    operation_id = "root",
    summary = "Redirects to the dashboard (`/ui/`)",
    security(()),
    responses(
        (status = 308, description = "To `/ui/`", headers(("Location" = String, description = "`/ui/`"))),
        super::openapi::AnyErrors,
    ),
)]
pub(super) async fn to_index() -> Response {
    (StatusCode::PERMANENT_REDIRECT, [(LOCATION, "/ui/")]).into_response()
}

#[utoipa::path(
    get,
    path = "/ui",
    tag = "dashboard",
    operation_id = "dashboard_root",
    summary = "Redirects to the dashboard (`/ui/`)",
    security(()),
    responses(
        (status = 308, description = "To `/ui/`", headers(("Location" = String, description = "`/ui/`"))),
        super::openapi::AnyErrors,
    ),
)]
pub(super) async fn to_index_ui() -> Response {
    to_index().await
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::ASSETS;

    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else {
                out.push(p);
            }
        }
    }

    #[test]
    fn every_file_of_the_ui_directory_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
        let mut found = Vec::new();
        files(&root, &mut found);
        let mut found: Vec<String> = found
            .iter()
            .map(|p| {
                p.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/")
            })
            .collect();
        found.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        listed.sort();
        assert_eq!(
            found, listed,
            "ASSETS in http/ui.rs must list every file of ui/"
        );
    }
}
