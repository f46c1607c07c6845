//! The API client: builds URLs (path segments percent-encoded), adds the
//! bearer token, and turns failures into [`HttpError`] — a daemon that is
//! not listening gets a message saying how to start it; an error status
//! carries the server's own `{"error": …}` message.
//!
//! Async (reqwest on the caller's tokio runtime); one connection pool per
//! process, no shared state beyond it.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde_json::Value;

use super::config::Settings;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid daemon URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot connect to the bhatti daemon at {url} ({detail}); start it with `bhatti serve` \
         (or scripts/serve.sh), or point the client at it with --url, BHATTI_URL or `bhatti setup`"
    )]
    NotRunning { url: String, detail: String },
    #[error("request to {url} failed: {detail}")]
    Transport { url: String, detail: String },
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("unexpected response from the daemon: {0}")]
    Decode(String),
    #[error("building the HTTP client: {0}")]
    Build(String),
}

/// A client of one daemon.
#[derive(Debug, Clone)]
pub struct Api {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(settings: &Settings) -> Result<Api, HttpError> {
        let bad = |reason: String| HttpError::BadUrl {
            url: settings.url.clone(),
            reason,
        };
        let base = Url::parse(&settings.url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("expected http://host:port or https://host".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("bhatti-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Build(e.to_string()))?;
        Ok(Api {
            base,
            token: settings.token.clone(),
            http,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The URL of `segments` under the base (each segment encoded).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        u
    }

    /// A request with the bearer token set.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let mut rb = self.http.request(method, url);
        if let Some(t) = &self.token
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}"))
        {
            rb = rb.header(AUTHORIZATION, v);
        }
        rb
    }

    /// Sends `rb` and maps connection failures and error statuses.
    pub async fn send(&self, rb: RequestBuilder) -> Result<Response, HttpError> {
        let resp = rb.send().await.map_err(|e| self.transport(&e))?;
        check(resp).await
    }

    /// `method` on `segments` with an optional JSON body; the JSON result
    /// (`null` for an empty body).
    pub async fn json(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<Value, HttpError> {
        let mut rb = self
            .request(method, self.url(segments))
            .header(ACCEPT, "application/json");
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = self.send(rb).await?;
        read_json(resp).await
    }

    pub async fn get(&self, segments: &[&str]) -> Result<Value, HttpError> {
        self.json(Method::GET, segments, None).await
    }

    /// Maps a reqwest error: refused/unreachable connections name the
    /// daemon and how to start it.
    pub fn transport(&self, e: &reqwest::Error) -> HttpError {
        let url = self.base.as_str().trim_end_matches('/').to_owned();
        let detail = root_cause(e);
        if e.is_connect() {
            HttpError::NotRunning { url, detail }
        } else {
            HttpError::Transport { url, detail }
        }
    }
}

/// The innermost error's message (e.g. "Connection refused (os error 111)").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Passes a success through; turns an error status into [`HttpError::Api`]
/// with the server's message.
pub async fn check(resp: Response) -> Result<Response, HttpError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let mut message = error_message(status.as_u16(), &text);
    if status.as_u16() == 401 {
        message.push_str("; set BHATTI_TOKEN, pass --token, or run `bhatti setup`");
    }
    Err(HttpError::Api {
        status: status.as_u16(),
        message,
    })
}

/// The server's `{"error": …}` message, or a description of the status.
pub fn error_message(status: u16, body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body)
        && let Some(m) = v.get("error").and_then(Value::as_str)
    {
        return one_line(m);
    }
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error");
    let body = one_line(body.trim());
    if body.is_empty() || body.len() > 200 {
        reason.to_lowercase()
    } else {
        format!("{}: {body}", reason.to_lowercase())
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The body as JSON (`null` when empty).
pub async fn read_json(resp: Response) -> Result<Value, HttpError> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| HttpError::Decode(root_cause(&e)))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| HttpError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_message_is_used_verbatim() {
        assert_eq!(
            error_message(404, r#"{"error":"sandbox \"x\" not found"}"#),
            "sandbox \"x\" not found"
        );
        assert_eq!(error_message(502, ""), "bad gateway");
        assert_eq!(
            error_message(500, "boom\nline2"),
            "internal server error: boom line2"
        );
    }

    #[test]
    fn urls_encode_segments_and_keep_base_path() {
        let api = Api::new(&Settings {
            url: "http://127.0.0.1:9/prefix/".into(),
            token: None,
        })
        .expect("api");
        assert_eq!(
            api.url(&["sandboxes", "a/b?c"]).as_str(),
            "http://127.0.0.1:9/prefix/sandboxes/a%2Fb%3Fc"
        );
        let err = Api::new(&Settings {
            url: "ftp://x".into(),
            token: None,
        })
        .expect_err("ftp");
        assert!(err.to_string().contains("invalid daemon URL"), "{err}");
    }
}
