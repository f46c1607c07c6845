//! The web UI: static files (HTML, JS modules, CSS, the vendored xterm.js)
//! embedded in the binary from `web/assets/` and served at `/ui/`, with no
//! API key (the page asks for one and sends it as a Bearer key; the shell
//! WebSocket takes it as `?token=`). `GET /` and `GET /index.html` (v1's
//! UI paths) redirect a browser (an `Accept` naming `text/html`) to
//! `/ui/`; other clients get the usual JSON 404 there.
//!
//! The files are embedded in debug builds too (`rust-embed`'s
//! `debug-embed`), so what a test serves is what a release serves, and
//! the daemon never reads them from disk. Replies carry the file's SHA-256
//! as a strong `ETag` (a matching `If-None-Match` is a 304),
//! `Cache-Control: no-cache` (revalidated on every load, so an upgraded
//! daemon's UI is never mixed with a cached one) and a Content Security
//! Policy that allows only this origin: the UI loads nothing from
//! anywhere else and works offline.

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

use crate::error::ApiError;

/// Where the UI is served.
pub const PREFIX: &str = "/ui/";

/// The embedded files of `web/assets/`.
#[derive(RustEmbed)]
#[folder = "../../web/assets/"]
struct Assets;

/// What the UI's pages may load and talk to: this origin only (its API,
/// its WebSockets); inline styles for xterm.js's renderer.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'self'";

/// The UI's routes (public: no API key), for any router state.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(root))
        .route("/index.html", get(root))
        .route("/ui", get(|| async { Redirect::permanent(PREFIX) }))
        .route(
            "/ui/",
            get(|h: HeaderMap| async move { asset("index.html", &h) }),
        )
        .route(
            "/ui/{*path}",
            get(|Path(p): Path<String>, h: HeaderMap| async move { asset(&p, &h) }),
        )
}

/// `/` and `/index.html`: a browser goes to the UI; an API client gets the
/// JSON 404 of any unknown route.
async fn root(req: Request) -> Response {
    let html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if html {
        Redirect::to(PREFIX).into_response()
    } else {
        ApiError::Missing(format!("no route for GET {}", req.uri().path())).into_response()
    }
}

/// One embedded file, or a JSON 404.
fn asset(path: &str, req: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::Missing(format!("no UI file {path}")).into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime(path)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, file.data.into_owned()).into_response()
}

/// The media type of a UI file, by its extension.
fn mime(path: &str) -> &'static str {
    match path.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "webmanifest" => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page and every file it loads are embedded.
    #[test]
    fn the_page_and_its_modules_are_embedded() {
        for f in [
            "index.html",
            "app.js",
            "style.css",
            "vendor/xterm.mjs",
            "vendor/addon-fit.mjs",
            "vendor/xterm.css",
        ] {
            assert!(Assets::get(f).is_some(), "{f} is not embedded");
        }
    }

    /// The vendored xterm.js files are the ones `npm ci` installs from the
    /// lock file (checked when `web/node_modules` is there).
    #[test]
    fn vendored_xterm_matches_the_lock_file() {
        let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
        let lock = std::fs::read_to_string(web.join("package-lock.json")).expect("lock file");
        let versions =
            std::fs::read_to_string(web.join("assets/vendor/VERSIONS")).expect("VERSIONS");
        for line in versions.lines() {
            let (pkg, v) = line.rsplit_once('@').expect("pkg@version");
            let entry = lock
                .split(&format!("\"node_modules/{pkg}\""))
                .nth(1)
                .expect("package in the lock file");
            assert!(
                entry.contains(&format!("\"version\": \"{v}\"")),
                "{pkg}: VERSIONS says {v}, the lock file differs"
            );
        }
        for (installed, vendored) in [
            ("@xterm/xterm/lib/xterm.mjs", "xterm.mjs"),
            ("@xterm/addon-fit/lib/addon-fit.mjs", "addon-fit.mjs"),
        ] {
            let Ok(js) = std::fs::read_to_string(web.join("node_modules").join(installed)) else {
                continue;
            };
            let ours = std::fs::read_to_string(web.join("assets/vendor").join(vendored))
                .expect("vendored file");
            assert!(
                js.starts_with(ours.trim_end()),
                "web/assets/vendor/{vendored} is stale: run `npm run vendor` in web/"
            );
        }
    }

    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        use tower::ServiceExt;
        let mut req = axum::http::Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(axum::body::Body::empty()).expect("request");
        router::<()>().oneshot(req).await.expect("infallible")
    }

    /// Browsers at `/` go to the UI; API clients get a 404; the files come
    /// with their type, policy and ETag, and a matching ETag is a 304.
    #[tokio::test]
    async fn serving() {
        let r = get("/", &[("accept", "text/html,application/xhtml+xml")]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], PREFIX);
        assert_eq!(get("/", &[]).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            get("/ui", &[]).await.status(),
            StatusCode::PERMANENT_REDIRECT
        );
        let r = get("/ui/", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let etag = r.headers()[header::ETAG].to_str().expect("etag").to_owned();
        let r = get("/ui/index.html", &[("if-none-match", &etag)]).await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = get("/ui/vendor/xterm.mjs", &[]).await;
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            get("/ui/nope.js", &[]).await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn media_types() {
        assert_eq!(mime("a/b.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(mime("index.html"), "text/html; charset=utf-8");
        assert_eq!(mime("LICENSE.xterm"), "text/plain; charset=utf-8");
    }
}
