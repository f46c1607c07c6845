//! What `image import SOURCE` sends, and the image's default name.
//!
//! SOURCE is parsed with [`bhatti_oci::Source`] (skopeo's transport names,
//! the daemon's own parser). A registry reference goes to the daemon as
//! JSON in its canonical `docker://` form; everything on this machine is
//! uploaded, because the daemon never reads paths on its host: a file as
//! it is (`oci-archive:`, `docker-archive:`, `rootfs:`), an archive with
//! an image named in it (`oci-archive:FILE:TAG`, `docker-archive:FILE:REF`
//! or `:@N`) with its image list cut to that one ([`super::rewrite`]), an
//! `oci:DIR` layout as an oci-archive stream ([`super::layout`]).
//!
//! Default names ([`default_name`]): for a registry reference, the last
//! component of its repository, then `-TAG` unless the tag is `latest`
//! (`python:3.12-slim` → `python-3.12-slim`, `ghcr.io/o/app` → `app`, a
//! digest-only reference → `app-` and the digest's first 12 hex digits);
//! for a file, its name without `.tar`, `.tar.gz`, `.tgz` (`alpine.tar` →
//! `alpine`), and `-TAG` the same way for `oci-archive:FILE:TAG`
//! (`-N` for `docker-archive:FILE:@N`; `docker-archive:FILE:REF` is named
//! as the registry reference REF would be); for `oci:DIR[:TAG]`, the
//! directory's name and `-TAG`. Characters outside `[A-Za-z0-9._-]` become `-`; the name starts
//! with a letter or digit and has at most 63 characters.

use std::path::{Path, PathBuf};

use bhatti_oci::source::{ImageRef, Source, SourceError};

use super::rewrite::Pick;

/// Longest image name the daemon takes.
const MAX_NAME: usize = 63;

/// How the import reaches the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `POST /images` with `{"source": …}` (the canonical reference).
    Registry(String),
    /// `POST /images?format=FORMAT` with the file as the body.
    File { path: PathBuf, format: &'static str },
    /// `POST /images?format=oci-archive` with the layout made into a tar.
    OciDir { dir: PathBuf, tag: Option<String> },
    /// `POST /images?format=FORMAT` with the archive, its image list cut
    /// to the one picked ([`super::rewrite`]).
    Rewrite {
        path: PathBuf,
        format: &'static str,
        pick: Pick,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Source(#[from] SourceError),
}

/// `@N` (the N-th image) or a reference.
fn docker_pick(r: &str) -> Pick {
    match r.strip_prefix('@').and_then(|n| n.parse().ok()) {
        Some(n) => Pick::DockerIndex(n),
        None => Pick::DockerRef(r.to_owned()),
    }
}

/// The plan for `source`.
pub fn plan(source: &str) -> Result<(Plan, Source), PlanError> {
    let src = Source::parse(source)?;
    let plan = match &src {
        Source::Registry(r) => Plan::Registry(format!("docker://{r}")),
        Source::OciDir { path, tag } => Plan::OciDir {
            dir: path.clone(),
            tag: tag.clone(),
        },
        Source::OciArchive { path, tag: Some(t) } => Plan::Rewrite {
            path: path.clone(),
            format: "oci-archive",
            pick: Pick::OciTag(t.clone()),
        },
        Source::DockerArchive {
            path,
            reference: Some(r),
        } => Plan::Rewrite {
            path: path.clone(),
            format: "docker-archive",
            pick: docker_pick(r),
        },
        Source::OciArchive { path, tag: None } => Plan::File {
            path: path.clone(),
            format: "oci-archive",
        },
        Source::DockerArchive {
            path,
            reference: None,
        } => Plan::File {
            path: path.clone(),
            format: "docker-archive",
        },
        Source::Rootfs(path) => Plan::File {
            path: path.clone(),
            format: "rootfs",
        },
    };
    Ok((plan, src))
}

/// The name an import of `src` gets without `--name` (module docs);
/// `None` when nothing usable is left.
pub fn default_name(src: &Source) -> Option<String> {
    let raw = match src {
        Source::Registry(r) => registry_name(r),
        Source::OciDir { path, tag } => with_tag(dir_name(path)?, tag.as_deref()),
        Source::OciArchive { path, tag } => with_tag(file_stem(path)?, tag.as_deref()),
        Source::DockerArchive {
            reference: Some(r),
            path,
        } => match (r.strip_prefix('@'), ImageRef::parse(r)) {
            (Some(n), _) => format!("{}-{n}", file_stem(path)?),
            (None, Ok(r)) => registry_name(&r),
            (None, Err(_)) => file_stem(path)?,
        },
        Source::DockerArchive { path, .. } | Source::Rootfs(path) => file_stem(path)?,
    };
    sanitize(&raw)
}

fn registry_name(r: &ImageRef) -> String {
    let base = r
        .repository
        .rsplit('/')
        .next()
        .unwrap_or(&r.repository)
        .to_owned();
    match (&r.tag, &r.digest) {
        (Some(t), _) => with_tag(base, Some(t)),
        (None, Some(d)) => {
            let hex = d.split_once(':').map_or(d.as_str(), |(_, h)| h);
            format!("{base}-{}", &hex[..hex.len().min(12)])
        }
        (None, None) => base,
    }
}

fn with_tag(base: String, tag: Option<&str>) -> String {
    match tag {
        Some(t) if t != "latest" => format!("{base}-{t}"),
        _ => base,
    }
}

/// The directory's own name (`oci:.` names the current directory).
fn dir_name(path: &Path) -> Option<String> {
    let named = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    named(path).or_else(|| named(&std::fs::canonicalize(path).ok()?))
}

fn file_stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let lower = name.to_ascii_lowercase();
    for ext in [".tar.gz", ".tgz", ".tar", ".gz"] {
        if lower.len() > ext.len() && lower.ends_with(ext) {
            return Some(name[..name.len() - ext.len()].to_owned());
        }
    }
    Some(name)
}

/// `raw` made a valid image name, or `None` when nothing is left.
pub fn sanitize(raw: &str) -> Option<String> {
    let mapped: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name: String = mapped
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(MAX_NAME)
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Option<String> {
        default_name(&plan(s).unwrap_or_else(|e| panic!("{s}: {e}")).1)
    }

    #[test]
    fn registry_names() {
        assert_eq!(
            name("python:3.12-slim").as_deref(),
            Some("python-3.12-slim")
        );
        assert_eq!(name("busybox").as_deref(), Some("busybox"));
        assert_eq!(name("busybox:latest").as_deref(), Some("busybox"));
        assert_eq!(name("docker://ghcr.io/o/app:v1").as_deref(), Some("app-v1"));
        assert_eq!(name("127.0.0.1:5000/t/box:1.0").as_deref(), Some("box-1.0"));
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            name(&format!("repo@{d}")).as_deref(),
            Some("repo-abababababab")
        );
    }

    #[test]
    fn file_and_layout_names() {
        assert_eq!(
            name("docker-archive:/tmp/alpine.tar").as_deref(),
            Some("alpine")
        );
        assert_eq!(
            name("oci-archive:x/My Image.TAR").as_deref(),
            Some("My-Image")
        );
        assert_eq!(name("rootfs:root-1.2.tar.gz").as_deref(), Some("root-1.2"));
        assert_eq!(name("rootfs:r.tgz").as_deref(), Some("r"));
        assert_eq!(name("oci:/srv/layouts/deb:12").as_deref(), Some("deb-12"));
        assert_eq!(name("oci:/srv/layouts/deb").as_deref(), Some("deb"));
        assert_eq!(name("oci-archive:o.tar:v1").as_deref(), Some("o-v1"));
        assert_eq!(
            name("docker-archive:d.tar:test/bare:1").as_deref(),
            Some("bare-1")
        );
        assert_eq!(name("docker-archive:d.tar:@1").as_deref(), Some("d-1"));
        assert_eq!(name("rootfs:/x/+.tar"), None);
    }

    #[test]
    fn sanitized() {
        assert_eq!(sanitize("__a b+c").as_deref(), Some("a-b-c"));
        assert_eq!(sanitize("---"), None);
        assert_eq!(sanitize(&"x".repeat(100)).map(|s| s.len()), Some(63));
    }

    #[test]
    fn plans() {
        let p = |s: &str| plan(s).unwrap_or_else(|e| panic!("{s}: {e}")).0;
        assert_eq!(
            p("python:3.12"),
            Plan::Registry("docker://docker.io/library/python:3.12".into())
        );
        assert_eq!(
            p("docker://127.0.0.1:5000/a:b"),
            Plan::Registry("docker://127.0.0.1:5000/a:b".into())
        );
        assert_eq!(
            p("docker-archive:d.tar"),
            Plan::File {
                path: "d.tar".into(),
                format: "docker-archive"
            }
        );
        assert_eq!(
            p("oci-archive:o.tar"),
            Plan::File {
                path: "o.tar".into(),
                format: "oci-archive"
            }
        );
        assert_eq!(
            p("rootfs:r.tar.gz"),
            Plan::File {
                path: "r.tar.gz".into(),
                format: "rootfs"
            }
        );
        assert_eq!(
            p("oci:lay:v2"),
            Plan::OciDir {
                dir: "lay".into(),
                tag: Some("v2".into())
            }
        );
        let rw = |path: &str, format, pick| Plan::Rewrite {
            path: path.into(),
            format,
            pick,
        };
        assert_eq!(
            p("docker-archive:d.tar:foo:1"),
            rw("d.tar", "docker-archive", Pick::DockerRef("foo:1".into()))
        );
        assert_eq!(
            p("docker-archive:d.tar:@2"),
            rw("d.tar", "docker-archive", Pick::DockerIndex(2))
        );
        assert_eq!(
            p("oci-archive:o.tar:v1"),
            rw("o.tar", "oci-archive", Pick::OciTag("v1".into()))
        );
        let e = plan("ftp://x/y").expect_err("ftp");
        assert!(e.to_string().contains("unknown transport"), "{e}");
    }
}
