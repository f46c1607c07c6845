//! The guest user of an envd call and path resolution.
//!
//! The SDK names the user as `Authorization: Basic base64("<user>:")` on
//! RPCs and as `?username=` on `/files`; without either, the sandbox's
//! default user runs the command ([`default_user`]: its `exec_user`, else
//! root, as lohar decides). Relative paths (and `~/…`) are resolved
//! against the user's home, read from the guest's `/etc/passwd` only when
//! a path needs it.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use bhatti_engine::engine::{Engine, ReadOptions, SandboxId};
use bhatti_store::sandboxes::Sandbox;

use super::connect::{Code, RpcError};
use crate::state::Shared;

/// Why a user or a path is refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("malformed Authorization header (expected Basic with user:)")]
    Header,
    #[error("invalid user name {0:?}")]
    Name(String),
    #[error("path must not be empty or contain NUL bytes")]
    Path,
}

impl From<UserError> for RpcError {
    fn from(e: UserError) -> Self {
        let code = match e {
            UserError::Header => Code::Unauthenticated,
            UserError::Name(_) | UserError::Path => Code::InvalidArgument,
        };
        RpcError::new(code, e.to_string())
    }
}

/// The user an RPC names in `Authorization: Basic`.
pub fn from_headers(headers: &HeaderMap) -> Result<Option<String>, UserError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = v.to_str().map_err(|_| UserError::Header)?.trim();
    let Some(b64) = text
        .strip_prefix("Basic ")
        .or_else(|| text.strip_prefix("basic "))
    else {
        return Err(UserError::Header);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| UserError::Header)?;
    let pair = String::from_utf8(raw).map_err(|_| UserError::Header)?;
    let name = pair.split(':').next().unwrap_or_default();
    checked(name)
}

/// A user name from a query (`username`), checked.
pub fn checked(name: &str) -> Result<Option<String>, UserError> {
    if name.is_empty() {
        return Ok(None);
    }
    crate::service::validate::user(name).map_err(|_| UserError::Name(name.into()))?;
    Ok(Some(name.to_owned()))
}

/// The user commands run as when the call names none.
pub fn default_user(sb: &Sandbox) -> String {
    sb.spec
        .get("user")
        .and_then(serde_json::Value::as_str)
        .filter(|u| !u.is_empty())
        .unwrap_or("root")
        .to_owned()
}

/// `path` made absolute: as it is when absolute, else against the home of
/// `user` (the sandbox's default when `None`).
pub async fn resolve<E: Engine>(
    st: &Shared<E>,
    sb: &Sandbox,
    eid: &SandboxId,
    user: Option<&str>,
    path: &str,
) -> Result<String, RpcError> {
    if path.contains('\0') {
        return Err(UserError::Path.into());
    }
    if path.starts_with('/') {
        return Ok(normalize(path));
    }
    let name = user.map_or_else(|| default_user(sb), str::to_owned);
    let home = home_of(st, eid, &name).await?;
    let rel = path
        .strip_prefix('~')
        .unwrap_or(path)
        .trim_start_matches('/');
    Ok(normalize(&format!("{home}/{rel}")))
}

/// The home directory of `user` from the guest's `/etc/passwd` (`/root`
/// for root without an entry, `/` for anyone else without one).
async fn home_of<E: Engine>(
    st: &Shared<E>,
    eid: &SandboxId,
    user: &str,
) -> Result<String, RpcError> {
    let reader = st
        .engine
        .read_file(eid, "/etc/passwd", ReadOptions::default())
        .await;
    let text = match reader {
        Ok(r) => String::from_utf8_lossy(&r.read_all().await?).into_owned(),
        Err(_) => String::new(),
    };
    Ok(home_in(&text, user).unwrap_or_else(|| {
        if user == "root" || user == "0" {
            "/root"
        } else {
            "/"
        }
        .to_owned()
    }))
}

/// `user`'s home in passwd text (by name or uid).
fn home_in(passwd: &str, user: &str) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && (f[0] == user || f[2] == user)).then(|| f[5].to_owned())
    })
}

/// Drops `.` and empty segments and applies `..` (never above `/`).
pub fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn basic_auth_names_the_user() {
        let mut h = HeaderMap::new();
        assert_eq!(from_headers(&h).expect("none"), None);
        // base64("user:")
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjo="),
        );
        assert_eq!(from_headers(&h).expect("user").as_deref(), Some("user"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(from_headers(&h).is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(normalize("/a/./b/../c/"), "/a/c");
        assert_eq!(normalize("/../.."), "/");
        let pw = "root:x:0:0:root:/root:/bin/sh\nlohar:x:1000:1000::/home/lohar:/bin/sh\n";
        assert_eq!(home_in(pw, "lohar").as_deref(), Some("/home/lohar"));
        assert_eq!(home_in(pw, "1000").as_deref(), Some("/home/lohar"));
        assert_eq!(home_in(pw, "nobody"), None);
    }
}
