//! Fetching from a registry that wants a bearer token (the Docker token
//! flow): Debian's docker-registry on 127.0.0.1 with `auth: token`, and a
//! token server in this process (`support/token.rs`) that signs ES256
//! JWTs the registry checks against the server's certificate.
//!
//! Accounts: `pusher` may push and pull everywhere (skopeo pushes the test
//! image with it, following the token flow itself); `alice` may pull
//! `test/busybox` and nothing of `test/secret`.

mod support;
#[path = "support/token.rs"]
mod token;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bhatti_oci::fetch::{Auth, ErrorClass, FetchError, FetchOptions, fetch};
use bhatti_oci::{Fetched, Limits, Source, no_progress};
use support::{ENV, Registry, USER, WORKDIR};
use token::{Account, Issued, TokenServer};

const TOOLS: [&str; 5] = [
    "umoci",
    "skopeo",
    "openssl",
    "/usr/bin/docker-registry",
    support::BUSYBOX,
];

const PUSHER: (&str, &str) = ("pusher", "push-pw");
const ALICE: (&str, &str) = ("alice", "alice-pw");

/// A token server, its registry holding the test image as
/// `test/busybox:1` and `test/secret:1`, and the layout it came from.
struct Setup {
    tokens: TokenServer,
    reg: Registry,
    layout: PathBuf,
    tmp: tempfile::TempDir,
}

impl Setup {
    /// None (and why, printed) when a tool is missing.
    fn new() -> Option<Self> {
        if !support::tools(&TOOLS) {
            return None;
        }
        let tokens = TokenServer::start(vec![
            Account::new(PUSHER.0, PUSHER.1).grant("*", &["pull", "push"]),
            Account::new(ALICE.0, ALICE.1).grant("test/busybox", &["pull"]),
        ]);
        let reg = Registry::start_with_auth(&tokens.registry_auth());
        let tmp = tempfile::tempdir().expect("tmp");
        let layout = support::build_image(tmp.path());
        reg.push(&layout, "test/busybox:1", Some(PUSHER));
        reg.push(&layout, "test/secret:1", Some(PUSHER));
        Some(Self {
            tokens,
            reg,
            layout,
            tmp,
        })
    }

    fn blobs(&self) -> PathBuf {
        self.tmp.path().join("blobs")
    }

    /// Fetches `repo` with `auth` (plain HTTP); a minute at most, so a
    /// flow that loops fails instead of hanging.
    async fn get(&self, repo: &str, auth: Option<Auth>) -> Result<Fetched, FetchError> {
        let source = Source::parse(&format!("{}/{repo}", self.reg.addr)).expect("source");
        let opts = FetchOptions {
            auth,
            insecure: true,
            ..FetchOptions::default()
        };
        let blobs = self.blobs();
        let f = fetch(&source, &opts, &blobs, Limits::default(), no_progress());
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .unwrap_or_else(|_| panic!("fetching {repo} hung"))
    }

    /// The registry's 401, as the fetch words it.
    fn refused(&self, repo: &str) -> String {
        format!(
            "registry {} answered 401 for {repo}: the credentials are wrong, missing, or do not grant pull on it (check --username/--password)",
            self.reg.addr
        )
    }

    /// The token requests made as `user` (none: without credentials).
    fn asked_by(&self, user: Option<&str>) -> Vec<Issued> {
        self.tokens
            .log()
            .into_iter()
            .filter(|i| i.user.as_deref() == user)
            .collect()
    }
}

fn basic((username, password): (&str, &str)) -> Option<Auth> {
    Some(Auth::Basic {
        username: username.into(),
        password: password.into(),
    })
}

/// Nothing in the blob dir: no blob, no temporary file.
fn assert_empty(blobs: &Path) {
    let left: Vec<PathBuf> = std::fs::read_dir(blobs.join("sha256"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_fetch_verifies_layers() {
    let Some(s) = Setup::new() else { return };
    let pushes = s.asked_by(Some(PUSHER.0));
    assert!(
        pushes.iter().any(|i| i.status == 200
            && i.access
                .iter()
                .any(|(r, a)| r == "test/busybox" && a.contains(&"push".to_string()))),
        "skopeo got a push token: {pushes:?}"
    );
    let f = s
        .get("test/busybox:1", basic(ALICE))
        .await
        .expect("fetch with a token");
    let (manifest_digest, manifest) = support::layout_manifest(&s.layout);
    assert_eq!(f.manifest_digest.as_deref(), Some(manifest_digest.as_str()));
    assert_eq!(Some(f.id.as_str()), manifest["config"]["digest"].as_str());
    let d = &f.defaults;
    assert_eq!(d.env.last(), Some(&(ENV.0.to_string(), ENV.1.to_string())));
    assert_eq!(
        (d.working_dir.as_deref(), d.user.as_deref()),
        (Some(WORKDIR), Some(USER))
    );
    let wanted: Vec<&str> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest"))
        .collect();
    let got: Vec<&str> = f.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(got, wanted);
    for l in &f.layers {
        let bytes = std::fs::read(&l.path).expect("layer");
        assert_eq!(bytes.len() as u64, l.size);
        assert_eq!(format!("sha256:{}", support::sha256_hex(&bytes)), l.digest);
        assert_eq!(
            bytes,
            std::fs::read(support::layout_blob(&s.layout, &l.digest)).expect("blob")
        );
    }
    // The token flow ran: alice asked for a pull token for the repository
    // and got exactly that.
    let asked = s.asked_by(Some(ALICE.0));
    assert!(!asked.is_empty(), "no token asked for");
    for i in &asked {
        assert_eq!(i.status, 200, "{i:?}");
        assert_eq!(i.scopes, ["repository:test/busybox:pull"], "{i:?}");
        assert_eq!(
            i.access,
            [("test/busybox".to_string(), vec!["pull".to_string()])]
        );
    }
}

#[tokio::test]
async fn wrong_password_is_refused_and_leaves_nothing() {
    let Some(s) = Setup::new() else { return };
    let e = s
        .get("test/busybox:1", basic((ALICE.0, "wrong")))
        .await
        .expect_err("a wrong password");
    eprintln!("{e}");
    assert_eq!(e.status_class(), ErrorClass::Unauthorized, "{e}");
    assert_eq!(e.to_string(), s.refused("test/busybox"));
    assert_empty(&s.blobs());
    // The token server refused it (the registry never saw a token).
    let asked = s.asked_by(Some(ALICE.0));
    assert!(
        !asked.is_empty() && asked.iter().all(|i| i.status == 401),
        "{asked:?}"
    );
}

#[tokio::test]
async fn no_credentials_is_refused() {
    let Some(s) = Setup::new() else { return };
    let e = s.get("test/busybox:1", None).await.expect_err("anonymous");
    eprintln!("{e}");
    assert_eq!(e.status_class(), ErrorClass::Unauthorized, "{e}");
    assert_eq!(e.to_string(), s.refused("test/busybox"));
    assert_empty(&s.blobs());
    let asked = s.asked_by(None);
    assert!(
        !asked.is_empty() && asked.iter().all(|i| i.status == 401),
        "{asked:?}"
    );
}

#[tokio::test]
async fn a_token_without_the_repository_is_refused() {
    let Some(s) = Setup::new() else { return };
    let e = s
        .get("test/secret:1", basic(ALICE))
        .await
        .expect_err("no access to test/secret");
    eprintln!("{e}");
    assert_eq!(e.status_class(), ErrorClass::Unauthorized, "{e}");
    assert_eq!(e.to_string(), s.refused("test/secret"));
    assert_empty(&s.blobs());
    // A token was issued (right credentials) but grants nothing there.
    let asked = s.asked_by(Some(ALICE.0));
    assert!(
        asked
            .iter()
            .any(|i| i.status == 200 && i.scopes == ["repository:test/secret:pull"]),
        "{asked:?}"
    );
    assert!(asked.iter().all(|i| i.access.is_empty()), "{asked:?}");
}

/// A token handed over as is (`Auth::Bearer`, no token server round
/// trip): good for its repository only, only while it lasts, and only
/// when signed by the key the registry trusts.
#[tokio::test]
async fn a_given_bearer_token_is_held_to_its_claims() {
    let Some(s) = Setup::new() else { return };
    let pull: &[&str] = &["pull"];
    let token = s.tokens.mint("carol", &[("test/busybox", pull)], 0, 300);
    let f = s
        .get("test/busybox:1", Some(Auth::Bearer(token.clone())))
        .await
        .expect("a pull token for the repository");
    assert_eq!(f.layers.len(), 2);
    assert!(s.asked_by(Some("carol")).is_empty());

    let e = s
        .get("test/secret:1", Some(Auth::Bearer(token)))
        .await
        .expect_err("another repository");
    assert_eq!(e.status_class(), ErrorClass::Unauthorized, "{e}");
    assert_eq!(e.to_string(), s.refused("test/secret"));

    // Signed by another key (its certificate not in the registry's
    // rootcertbundle), claims otherwise the same.
    let stranger = TokenServer::start(Vec::new());
    let forged = stranger.mint("carol", &[("test/busybox", pull)], 0, 300);
    let e = s
        .get("test/busybox:1", Some(Auth::Bearer(forged)))
        .await
        .expect_err("a token from an untrusted key");
    assert_eq!(e.status_class(), ErrorClass::Unauthorized, "{e}");

    // Expired ten minutes ago (well past the registry's minute of leeway).
    let old = s.tokens.mint("carol", &[("test/busybox", pull)], -900, 300);
    let e = s
        .get("test/busybox:1", Some(Auth::Bearer(old)))
        .await
        .expect_err("an expired token");
    assert_eq!(e.status_class(), ErrorClass::Unauthorized, "{e}");
}
