//! A bearer-token server for registry tests: the Docker token flow's
//! other half, on 127.0.0.1 and a free port, stopped on drop.
//!
//! `GET /token?service=…&scope=repository:NAME:ACTIONS` with HTTP basic
//! credentials answers `{"token", "access_token", "expires_in"}`: an
//! ES256 JWT (iss, sub, aud, exp, nbf, iat, jti, access) whose header
//! carries the signing key's self-signed certificate (`x5c`), the
//! certificate [`TokenServer::registry_auth`] names as the registry's
//! `rootcertbundle`. Each scope gets the actions its [`Account`] grants
//! (none: no entry). Wrong or missing credentials get 401. Every request
//! is logged ([`TokenServer::log`]) so a test can tell the flow happened.
//!
//! The key and certificate are made with the `openssl` command; the JWT
//! is signed with `ring`. Not a module of `support` (whose `mod.rs` other
//! crates' tests include by path, without these dev-dependencies): a test
//! includes it beside `mod support;` as
//! `#[path = "support/token.rs"] mod token;`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

/// The `service` the registry names and the tokens' audience.
pub const SERVICE: &str = "bhatti-test-registry";
/// The tokens' issuer.
pub const ISSUER: &str = "bhatti-test-token-server";

/// A user of the token server and what it may do.
#[derive(Debug, Clone)]
pub struct Account {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
    /// (repository or `*`, actions) pairs.
    pub grants: Vec<(String, Vec<String>)>,
}

impl Account {
    /// A user allowed nothing yet.
    #[must_use]
    pub fn new(user: &str, password: &str) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
            grants: Vec::new(),
        }
    }

    /// Also allows `actions` on `repo` (`*`: every repository).
    #[must_use]
    pub fn grant(mut self, repo: &str, actions: &[&str]) -> Self {
        let actions = actions.iter().map(|a| (*a).to_string()).collect();
        self.grants.push((repo.into(), actions));
        self
    }

    /// Which of `wanted` this account may do on `repo`.
    fn allowed(&self, repo: &str, wanted: &[String]) -> Vec<String> {
        wanted
            .iter()
            .filter(|a| {
                self.grants
                    .iter()
                    .any(|(r, acts)| (r == "*" || r == repo) && acts.contains(a))
            })
            .cloned()
            .collect()
    }
}

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The basic-auth user (none: no credentials).
    pub user: Option<String>,
    /// The `scope` parameters asked for.
    pub scopes: Vec<String>,
    /// What the token grants: (repository, actions).
    pub access: Vec<(String, Vec<String>)>,
    /// 200, or 401 for refused credentials.
    pub status: u16,
}

struct Inner {
    accounts: Vec<Account>,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The certificate, base64 DER (the JWT header's `x5c`).
    cert_b64: String,
    log: Mutex<Vec<Issued>>,
    serial: AtomicU64,
}

/// A running token server.
pub struct TokenServer {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Holds the key and `cert.pem`.
    pub dir: tempfile::TempDir,
    inner: Arc<Inner>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TokenServer {
    /// Makes a P-256 key and its certificate, and listens.
    pub fn start(accounts: Vec<Account>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        crate::support::run(
            std::process::Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-nodes", "-days", "2"])
                .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
                .args(["-subj", "/CN=bhatti test token issuer"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        let rng = SystemRandom::new();
        let pkcs8 = pem_der(&std::fs::read_to_string(&key).expect("key"));
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .expect("a P-256 PKCS#8 key");
        let cert_der = pem_der(&std::fs::read_to_string(&cert).expect("cert"));
        let inner = Arc::new(Inner {
            accounts,
            key,
            rng,
            cert_b64: STANDARD.encode(cert_der),
            log: Mutex::new(Vec::new()),
            serial: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (state, stopped) = (Arc::clone(&inner), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || state.serve(conn));
                }
            }
        });
        Self {
            addr,
            dir,
            inner,
            stop,
        }
    }

    /// The registry config's `auth:` section for this server.
    #[must_use]
    pub fn registry_auth(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://{}/token\n    service: {SERVICE}\n    \
             issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.addr,
            self.cert_pem().display()
        )
    }

    /// The signing key's certificate.
    #[must_use]
    pub fn cert_pem(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// What was asked and answered so far.
    #[must_use]
    pub fn log(&self) -> Vec<Issued> {
        self.inner.log.lock().expect("lock").clone()
    }

    /// A token as the server would issue it, for `sub`, granting `access`,
    /// valid from `now + from` for `secs` seconds (`from` may be negative).
    #[must_use]
    pub fn mint(&self, sub: &str, access: &[(&str, &[&str])], from: i64, secs: i64) -> String {
        let access: Vec<(String, Vec<String>)> = access
            .iter()
            .map(|(r, a)| {
                (
                    (*r).to_string(),
                    a.iter().map(|s| (*s).to_string()).collect(),
                )
            })
            .collect();
        self.inner.token(sub, &access, from, secs)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

impl Inner {
    /// Answers one connection (one request; `Connection: close`).
    fn serve(&self, mut conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let Some((target, authorization)) = read_head(&conn) else {
            return;
        };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let params: Vec<(String, String)> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (unescape(k), unescape(v)))
            .collect();
        let (status, body) = if path == "/token" {
            self.answer(&params, authorization.as_deref())
        } else {
            (404, r#"{"errors":[{"code":"NOT_FOUND"}]}"#.to_string())
        };
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            _ => "Not Found",
        };
        let challenge = if status == 401 {
            "WWW-Authenticate: Basic realm=\"token\"\r\n"
        } else {
            ""
        };
        let _ = write!(
            conn,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{challenge}\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.flush();
    }

    /// The status and body for a token request.
    fn answer(&self, params: &[(String, String)], authorization: Option<&str>) -> (u16, String) {
        let creds = authorization
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            });
        let scopes: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect();
        let account = creds.as_ref().and_then(|(u, p)| {
            self.accounts
                .iter()
                .find(|a| &a.user == u && &a.password == p)
        });
        let mut issued = Issued {
            user: creds.map(|(u, _)| u),
            scopes: scopes.clone(),
            access: Vec::new(),
            status: 401,
        };
        let Some(account) = account else {
            self.log.lock().expect("lock").push(issued);
            let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
            return (401, body.to_string());
        };
        for scope in &scopes {
            // repository:NAME:ACTIONS (a name has no colon here).
            let mut parts = scope.splitn(3, ':');
            if let (Some("repository"), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            {
                let wanted: Vec<String> = actions.split(',').map(str::to_string).collect();
                let allowed = account.allowed(name, &wanted);
                if !allowed.is_empty() {
                    issued.access.push((name.to_string(), allowed));
                }
            }
        }
        let token = self.token(&account.user, &issued.access, 0, 300);
        issued.status = 200;
        self.log.lock().expect("lock").push(issued);
        let body = serde_json::json!({
            "token": token, "access_token": token, "expires_in": 300,
        });
        (200, body.to_string())
    }

    /// A signed JWT (ES256, the certificate in `x5c`).
    fn token(&self, sub: &str, access: &[(String, Vec<String>)], from: i64, secs: i64) -> String {
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_secs(),
        )
        .expect("time");
        let access: Vec<serde_json::Value> = access
            .iter()
            .map(|(name, actions)| {
                serde_json::json!({"type": "repository", "name": name, "actions": actions})
            })
            .collect();
        let serial = self.serial.fetch_add(1, Ordering::SeqCst);
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": sub, "aud": SERVICE,
            "iat": now + from, "nbf": now + from, "exp": now + from + secs,
            "jti": format!("{}-{serial}", std::process::id()),
            "access": access,
        });
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [self.cert_b64]});
        let part = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!("{}.{}", part(&header), part(&claims));
        let sig = self.key.sign(&self.rng, input.as_bytes()).expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// The request target and `Authorization` header of a request head.
fn read_head(conn: &TcpStream) -> Option<(String, Option<String>)> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let target = line.split_whitespace().nth(1)?.to_string();
    let mut authorization = None;
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    Some((target, authorization))
}

/// A query component, percent- and `+`-decoded.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The DER inside a PEM file's first block.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD.decode(body).expect("PEM base64")
}
