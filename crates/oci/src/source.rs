//! Import sources, named with skopeo's transports.
//!
//! | typed                                   | source                      |
//! |-----------------------------------------|-----------------------------|
//! | `docker://HOST/REPO:TAG`, `REPO:TAG`    | [`Source::Registry`]        |
//! | `docker://REPO@sha256:…`                | [`Source::Registry`]        |
//! | `oci:DIR[:TAG]`                         | [`Source::OciDir`]          |
//! | `oci-archive:FILE[:TAG]`                | [`Source::OciArchive`]      |
//! | `docker-archive:FILE[:REPO:TAG]`        | [`Source::DockerArchive`]   |
//! | `rootfs:FILE.tar`                       | [`Source::Rootfs`]          |
//!
//! A string without a known transport prefix is a registry reference, as
//! `docker pull` reads it: Docker Hub short names normalise
//! (`python:3.12` → `docker.io/library/python:3.12`), a missing tag is
//! `latest`, and `host:port/repo` names another registry. As in skopeo,
//! the path of `oci:`, `oci-archive:` and `docker-archive:` ends at its
//! first `:`; what follows names the image inside.
//!
//! [`Display`](std::fmt::Display) gives back the canonical form, which
//! parses to the same [`Source`].

use std::fmt;
use std::path::PathBuf;

use oci_client::Reference;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A registry, over the distribution protocol (`docker://`).
    Registry(ImageRef),
    /// An OCI image layout directory; `tag` picks the index entry whose
    /// `org.opencontainers.image.ref.name` it is (else the only entry).
    OciDir {
        /// The layout directory (holds `oci-layout`, `index.json`).
        path: PathBuf,
        /// The tag to pick from `index.json`.
        tag: Option<String>,
    },
    /// A tar file of an OCI image layout (`oci-archive:`).
    OciArchive {
        /// The tar file.
        path: PathBuf,
        /// The tag to pick from its `index.json`.
        tag: Option<String>,
    },
    /// A `docker save` tar file (`docker-archive:`).
    DockerArchive {
        /// The tar file.
        path: PathBuf,
        /// Which of its images (a `RepoTags` entry), when it holds several.
        reference: Option<String>,
    },
    /// A plain tarball of a root filesystem (`rootfs:`): one layer, no
    /// config.
    Rootfs(PathBuf),
}

/// A normalised registry reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The registry host (and port), `docker.io` for Docker Hub.
    pub registry: String,
    /// The repository path (`library/python` for Hub official images).
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// `sha256:<hex>`, when the reference pins a digest.
    pub digest: Option<String>,
}

/// Why a source string is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    /// Nothing was given.
    #[error("empty image source")]
    Empty,
    /// A `transport:` prefix this crate does not know.
    #[error(
        "unknown transport {0:?} (use docker://, oci:, oci-archive:, docker-archive: or rootfs:)"
    )]
    UnknownTransport(String),
    /// A transport with nothing after it (`oci:`, `docker://`).
    #[error("{0} needs a {1} after it")]
    EmptyPart(&'static str, &'static str),
    /// A registry reference that does not parse.
    #[error("bad image reference {reference:?}: {reason}")]
    BadReference {
        /// What was given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Transports with a path, and whether their path may carry `:NAME`.
const PATH_TRANSPORTS: [&str; 4] = ["oci", "oci-archive", "docker-archive", "rootfs"];

impl Source {
    /// Parses what the user typed (see the module docs).
    ///
    /// # Errors
    /// [`SourceError`] for an empty string, an unknown transport, a
    /// transport without its path or reference, or a bad reference.
    pub fn parse(s: &str) -> Result<Self, SourceError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SourceError::Empty);
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            if rest.is_empty() {
                return Err(SourceError::EmptyPart("docker://", "reference"));
            }
            return ImageRef::parse(rest).map(Source::Registry);
        }
        if let Some((transport, rest)) = s.split_once(':') {
            if PATH_TRANSPORTS.contains(&transport) {
                return Self::parse_path(transport, rest);
            }
            // `name:tag` or `host:port/…`: a registry reference. A word of
            // letters before `:` followed by `/` or nothing is a transport
            // we do not know (`ftp://…`, `containers-storage:…`).
            if looks_like_transport(transport, rest) {
                return Err(SourceError::UnknownTransport(transport.to_string()));
            }
        }
        ImageRef::parse(s).map(Source::Registry)
    }

    fn parse_path(transport: &str, rest: &str) -> Result<Self, SourceError> {
        let (path, name) = match rest.split_once(':') {
            Some((p, n)) if transport != "rootfs" => (p, Some(n)),
            _ => (rest, None),
        };
        let static_name = match transport {
            "oci" => "oci:",
            "oci-archive" => "oci-archive:",
            "docker-archive" => "docker-archive:",
            _ => "rootfs:",
        };
        if path.is_empty() {
            return Err(SourceError::EmptyPart(static_name, "path"));
        }
        if name == Some("") {
            return Err(SourceError::EmptyPart(
                static_name,
                "name after the path's `:`",
            ));
        }
        let path = PathBuf::from(path);
        let name = name.map(str::to_string);
        Ok(match transport {
            "oci" => Source::OciDir { path, tag: name },
            "oci-archive" => Source::OciArchive { path, tag: name },
            "docker-archive" => Source::DockerArchive {
                path,
                reference: name,
            },
            _ => Source::Rootfs(path),
        })
    }
}

/// `foo:` followed by `//…` or by something that is neither a tag nor a
/// port-and-path: a transport name rather than a `name:tag`.
fn looks_like_transport(prefix: &str, rest: &str) -> bool {
    if rest.starts_with("//") {
        return true;
    }
    // `containers-storage:foo` has no `/` before the colon and a rest that
    // is no tag (a tag has no `/`); `host:5000/repo` has a port.
    let port_and_path = rest
        .split_once('/')
        .is_some_and(|(port, _)| port.chars().all(|c| c.is_ascii_digit()));
    !port_and_path
        && rest.contains('/')
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c == '-')
}

impl ImageRef {
    /// Parses and normalises a registry reference (`docker pull`'s rules).
    ///
    /// # Errors
    /// [`SourceError::BadReference`] when it does not parse.
    pub fn parse(s: &str) -> Result<Self, SourceError> {
        let r: Reference =
            s.parse()
                .map_err(|e: oci_client::ParseError| SourceError::BadReference {
                    reference: s.to_string(),
                    reason: e.to_string(),
                })?;
        Ok(Self {
            registry: r.registry().to_string(),
            repository: r.repository().to_string(),
            tag: r.tag().map(str::to_string),
            digest: r.digest().map(str::to_string),
        })
    }

    /// The `oci-client` reference for this one.
    #[must_use]
    pub fn to_reference(&self) -> Reference {
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
                d.clone(),
            ),
            (None, Some(d)) => {
                Reference::with_digest(self.registry.clone(), self.repository.clone(), d.clone())
            }
            (t, None) => Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone().unwrap_or_else(|| "latest".into()),
            ),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with = |f: &mut fmt::Formatter<'_>, t: &str, p: &PathBuf, n: &Option<String>| {
            write!(f, "{t}:{}", p.display())?;
            n.as_ref().map_or(Ok(()), |n| write!(f, ":{n}"))
        };
        match self {
            Source::Registry(r) => write!(f, "docker://{r}"),
            Source::OciDir { path, tag } => with(f, "oci", path, tag),
            Source::OciArchive { path, tag } => with(f, "oci-archive", path, tag),
            Source::DockerArchive { path, reference } => with(f, "docker-archive", path, reference),
            Source::Rootfs(p) => write!(f, "rootfs:{}", p.display()),
        }
    }
}

impl std::str::FromStr for Source {
    type Err = SourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(s: &str) -> String {
        match Source::parse(s) {
            Ok(Source::Registry(r)) => r.to_string(),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn registry_references_normalise() {
        assert_eq!(reg("python:3.12"), "docker.io/library/python:3.12");
        assert_eq!(reg("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(reg("docker://alpine"), "docker.io/library/alpine:latest");
        assert_eq!(reg("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(
            reg("127.0.0.1:5000/t/busybox:1"),
            "127.0.0.1:5000/t/busybox:1"
        );
        assert_eq!(reg("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(reg("ghcr.io/o/r:tag"), "ghcr.io/o/r:tag");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            reg(&format!("repo@{d}")),
            format!("docker.io/library/repo@{d}")
        );
    }

    #[test]
    fn path_transports() {
        let p = |s: &str| Source::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            p("oci:/tmp/lay:v1"),
            Source::OciDir {
                path: "/tmp/lay".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            p("oci:lay"),
            Source::OciDir {
                path: "lay".into(),
                tag: None
            }
        );
        assert_eq!(
            p("oci-archive:a.tar"),
            Source::OciArchive {
                path: "a.tar".into(),
                tag: None
            }
        );
        assert_eq!(
            p("docker-archive:d.tar:foo:latest"),
            Source::DockerArchive {
                path: "d.tar".into(),
                reference: Some("foo:latest".into())
            }
        );
        assert_eq!(p("rootfs:/x/r.tar"), Source::Rootfs("/x/r.tar".into()));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "docker://docker.io/library/python:3.12",
            "docker://127.0.0.1:5000/a/b:c",
            "oci:/tmp/lay:v1",
            "oci:/tmp/lay",
            "oci-archive:/a.tar",
            "docker-archive:/d.tar:foo:latest",
            "rootfs:/r.tar",
        ] {
            let src = Source::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(src.to_string(), s);
            assert_eq!(Source::parse(&src.to_string()), Ok(src));
        }
    }

    #[test]
    fn errors_are_clear() {
        assert_eq!(Source::parse("  "), Err(SourceError::Empty));
        assert_eq!(
            Source::parse("oci:"),
            Err(SourceError::EmptyPart("oci:", "path"))
        );
        assert_eq!(
            Source::parse("rootfs:"),
            Err(SourceError::EmptyPart("rootfs:", "path"))
        );
        assert!(matches!(
            Source::parse("docker://"),
            Err(SourceError::EmptyPart(..))
        ));
        assert!(matches!(
            Source::parse("oci:dir:"),
            Err(SourceError::EmptyPart(..))
        ));
        for s in ["ftp://host/x", "containers-storage:foo/bar"] {
            let e = Source::parse(s).expect_err(s);
            assert!(matches!(e, SourceError::UnknownTransport(_)), "{s}: {e}");
            assert!(e.to_string().contains("docker://"), "{e}");
        }
        for s in ["Upper/Case:x", "a b", "repo@sha256:abc", "docker://:x"] {
            let e = Source::parse(s).expect_err(s);
            assert!(matches!(e, SourceError::BadReference { .. }), "{s}: {e}");
        }
    }
}
