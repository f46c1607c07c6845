//! Registries, through `oci-client`: auth, manifests, blob streams.
//!
//! `oci-client` speaks the protocol (token dance, `Accept` headers,
//! `WWW-Authenticate`); this module picks the platform itself (to name
//! the platforms an index has when none fits), verifies every digest as
//! the blob streams into the store, and turns the client's errors into
//! [`FetchError`]s a user can act on.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::blobs::{self, BlobStore, Verifier};
use super::layout;
use super::manifest::{self, Descriptor, MAX_JSON_BYTES, Parsed, media_types};
use super::{Auth, FetchError, FetchOptions};
use crate::source::ImageRef;
use crate::{Event, Fetched, Limits, Progress};

/// Layers fetched at once.
const PARALLEL_BLOBS: usize = 3;

/// One registry conversation.
struct Remote<'a> {
    client: Client,
    auth: RegistryAuth,
    image: &'a ImageRef,
    insecure: bool,
    platform: super::Platform,
}

/// Fetches `image` from its registry.
pub(crate) async fn fetch(
    image: &ImageRef,
    opts: &FetchOptions,
    store: &BlobStore,
    limits: Limits,
    progress: &Progress,
) -> Result<Fetched, FetchError> {
    let mut remote = Remote::new(image, opts)?;
    let mut reference = image.to_reference();
    let (mut bytes, mut digest) = remote.start(&reference).await?;
    for _ in 0..4 {
        match manifest::parse(&bytes, "manifest")? {
            Parsed::Index(entries) => {
                let entry = manifest::choose(&entries, &opts.platform)?;
                reference = reference.clone_with_digest(entry.digest.clone());
                (bytes, digest) = remote.manifest(&reference).await?;
            }
            Parsed::Image { config, layers } => {
                let v = Verifier::new("manifest", &digest, None, MAX_JSON_BYTES, true)?;
                store.copy_from(&bytes[..], v, progress)?;
                return remote
                    .image(
                        &reference, digest, &config, &layers, store, limits, progress,
                    )
                    .await;
            }
        }
    }
    Err(FetchError::invalid("manifest", "indexes nested too deep"))
}

impl<'a> Remote<'a> {
    fn new(image: &'a ImageRef, opts: &FetchOptions) -> Result<Self, FetchError> {
        let client = client(opts.insecure, false)?;
        let auth = match &opts.auth {
            None => RegistryAuth::Anonymous,
            Some(Auth::Basic { username, password }) => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Some(Auth::Bearer(t)) => RegistryAuth::Bearer(t.clone()),
        };
        Ok(Self {
            client,
            auth,
            image,
            insecure: opts.insecure,
            platform: opts.platform.clone(),
        })
    }

    /// Logs in and gets the first manifest. With `insecure`, HTTPS that
    /// does not verify certificates is tried first, then plain HTTP (as
    /// Docker and skopeo do for an insecure registry).
    async fn start(&mut self, reference: &Reference) -> Result<(Vec<u8>, String), FetchError> {
        let first = self.login_and_manifest(reference).await;
        match first {
            Err(FetchError::Connect { .. }) if self.insecure => {
                tracing::debug!(registry = %self.image.registry, "HTTPS failed; plain HTTP");
                self.client = client(true, true)?;
                self.login_and_manifest(reference).await
            }
            other => other,
        }
    }

    async fn login_and_manifest(
        &self,
        reference: &Reference,
    ) -> Result<(Vec<u8>, String), FetchError> {
        self.login(reference).await?;
        self.manifest(reference).await
    }

    /// Asks for a token when the registry wants one (a refused one is an
    /// error here, not a silent anonymous pull).
    async fn login(&self, reference: &Reference) -> Result<(), FetchError> {
        self.client
            .auth(reference, &self.auth, RegistryOperation::Pull)
            .await
            .map(drop)
            .map_err(|e| self.error(e, "login"))
    }

    /// A manifest or index, its digest checked.
    async fn manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String), FetchError> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(reference, &self.auth, &media_types::MANIFESTS)
            .await
            .map_err(|e| self.error(e, "manifest"))?;
        if bytes.len() as u64 > MAX_JSON_BYTES {
            return Err(FetchError::TooLarge {
                what: "manifest",
                digest,
                size: bytes.len() as u64,
                limit: MAX_JSON_BYTES,
            });
        }
        let actual = blobs::sha256_of(&bytes);
        let expected = reference.digest().map_or(digest, str::to_string);
        if actual != expected {
            return Err(FetchError::Corrupt {
                what: "manifest",
                digest: expected,
                actual,
                remote: true,
            });
        }
        Ok((bytes.to_vec(), actual))
    }

    #[allow(clippy::too_many_arguments)] // the one place the pieces meet
    async fn image(
        &self,
        reference: &Reference,
        manifest_digest: String,
        config: &Descriptor,
        layers: &[Descriptor],
        store: &BlobStore,
        limits: Limits,
        progress: &Progress,
    ) -> Result<Fetched, FetchError> {
        manifest::check_config(config)?;
        let v = Verifier::new(
            "config",
            &config.digest,
            Some(config.size),
            MAX_JSON_BYTES,
            true,
        )?;
        let (path, _) = self.blob(reference, v, "", store, progress).await?;
        let image =
            layout::parse_config(&blobs::read_small(&path, MAX_JSON_BYTES)?, &self.platform)?;
        let wanted = layout::layer_verifiers(layers, limits, true)?;
        progress(Event::Phase("fetching".into()));
        // Owned media types, collected: a closure (of the stream or of an
        // iterator adapter) that borrows a descriptor makes this future
        // not `Send` (a higher-ranked lifetime the compiler cannot
        // prove), and the daemon runs imports as tasks.
        let types: Vec<String> = layers.iter().map(|d| d.media_type.clone()).collect();
        let stored: Vec<(PathBuf, u64)> = futures_util::stream::iter(wanted.into_iter().zip(types))
            .map(|(v, media_type)| async move {
                self.blob(reference, v, &media_type, store, progress).await
            })
            .buffered(PARALLEL_BLOBS)
            .try_collect()
            .await?;
        Ok(layout::fetched(
            config.digest.clone(),
            Some(manifest_digest),
            image,
            layers,
            stored,
        ))
    }

    /// Streams a blob into the store, verified (or reuses it).
    async fn blob(
        &self,
        reference: &Reference,
        mut v: Verifier,
        media_type: &str,
        store: &BlobStore,
        progress: &Progress,
    ) -> Result<(PathBuf, u64), FetchError> {
        if let Some(p) = store.existing(&v.digest, v.declared) {
            let size = v.declared.unwrap_or_default();
            progress(Event::Bytes {
                what: v.digest.clone(),
                done: size,
                total: size,
            });
            return Ok((p, size));
        }
        let desc = OciDescriptor {
            media_type: media_type.to_string(),
            digest: v.digest.clone(),
            size: i64::try_from(v.declared.unwrap_or_default()).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        let mut tmp = store.temp(&v.digest)?;
        let mut stream = self
            .client
            .pull_blob_stream(reference, &desc)
            .await
            .map_err(|e| self.error(e, v.what))?;
        if let Some(len) = stream.content_length.filter(|l| *l > v.limit()) {
            let (what, digest, limit) = (v.what, v.digest.clone(), v.limit());
            return Err(FetchError::TooLarge {
                what,
                digest,
                size: len,
                limit,
            });
        }
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    v.update(&bytes, progress)?;
                    tmp.write(&bytes)?;
                }
                // oci-client's own digest check fails at the end of the
                // stream: say what we saw instead.
                Err(e) => return Err(self.stream_error(v, &e)),
            }
        }
        let size = v.finish(progress)?;
        // fsync and rename: within this poll (so a dropped fetch leaves no
        // temporary file behind), telling a multi-threaded runtime it blocks.
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let path = if multi {
            tokio::task::block_in_place(|| tmp.keep())?
        } else {
            tmp.keep()?
        };
        Ok((path, size))
    }

    /// An error mid-stream: a corrupt or short blob if it is one, else
    /// a transfer failure.
    fn stream_error(&self, v: Verifier, e: &std::io::Error) -> FetchError {
        let what = v.what;
        let digest = v.digest.clone();
        match v.finish(&crate::no_progress()) {
            Err(corrupt) => corrupt,
            Ok(_) => FetchError::Registry {
                registry: self.image.registry.clone(),
                detail: format!("fetching {what} {digest} failed: {}", chain(e)),
            },
        }
    }

    /// A client error as a [`FetchError`]; `what` was being fetched.
    fn error(&self, e: OciDistributionError, what: &'static str) -> FetchError {
        let registry = self.image.registry.clone();
        let unauthorized = || FetchError::Unauthorized {
            registry: registry.clone(),
            repository: self.image.repository.clone(),
        };
        let not_found = |detail: &str| {
            FetchError::NotFound(format!(
                "{what} of {} not found on {registry}: {detail}",
                self.image
            ))
        };
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes = &envelope.errors;
                if codes
                    .iter()
                    .any(|c| matches!(c.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    unauthorized()
                } else if codes.iter().any(|c| {
                    matches!(
                        c.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    not_found(&envelope.to_string())
                } else {
                    FetchError::Registry {
                        registry,
                        detail: envelope.to_string(),
                    }
                }
            }
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => unauthorized(),
            OciDistributionError::ServerError {
                code: 404, message, ..
            } => not_found(&message),
            OciDistributionError::ServerError { code, message, .. } => FetchError::Registry {
                registry,
                detail: format!("HTTP {code} for the {what}: {}", message.trim()),
            },
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => FetchError::Corrupt {
                what,
                digest: expected,
                actual,
                remote: true,
            },
            OciDistributionError::RequestError(e) => {
                let detail = chain(&e);
                let hint = connect_hint(&detail, self.insecure);
                FetchError::Connect {
                    registry,
                    detail: format!("{detail}{hint}"),
                }
            }
            other => FetchError::Registry {
                registry,
                detail: format!("{what}: {}", chain(&other)),
            },
        }
    }
}

/// What to add to a connection error: `--insecure` when it may help.
fn connect_hint(detail: &str, insecure: bool) -> &'static str {
    let unreachable = ["Connection refused", "dns error", "timed out", "No route"];
    if insecure || unreachable.iter().any(|u| detail.contains(u)) {
        ""
    } else if detail.contains("certificate") {
        " (its TLS certificate is not trusted; --insecure skips the check)"
    } else {
        " (over HTTPS; a plain-HTTP registry needs --insecure)"
    }
}

/// A client: HTTPS, or with `insecure` HTTPS without certificate checks
/// (`plain`: HTTP).
fn client(insecure: bool, plain: bool) -> Result<Client, FetchError> {
    // rustls needs a process-wide crypto provider; ring is the one the
    // workspace builds. Another already installed is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = ClientConfig {
        protocol: if plain {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: insecure,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(120)),
        ..ClientConfig::default()
    };
    Client::try_from(config)
        .map_err(|e| FetchError::io("registry client", std::io::Error::other(e.to_string())))
}

/// An error and its sources, `: `-joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
