//! What an import job gets ([`Request`]): a registry source of a JSON
//! body (file sources refused: the daemon never reads its own files for
//! a client), or an uploaded archive; and the name it takes by default.

use std::path::PathBuf;

use bhatti_oci::Source;
use bhatti_oci::fetch::{Auth, FetchOptions};

use crate::keys;
use crate::model::images::ImportImage;
use crate::service::ServiceResult;
use crate::service::validate::{self, Invalid};

/// What an import job gets: whose, what to call it, from where.
#[derive(Debug)]
pub struct Request {
    pub name: Option<String>,
    pub source: Source,
    /// As the job and the image show it.
    pub source_text: String,
    pub opts: FetchOptions,
    /// An uploaded file the job removes when it ends.
    pub upload: Option<PathBuf>,
}

impl Request {
    /// A registry import of a JSON body; file sources are refused.
    pub fn registry(req: ImportImage) -> ServiceResult<Self> {
        let source = Source::parse(&req.source).map_err(|e| {
            Invalid::Image(format!("source {}: {e}", validate::excerpt(&req.source)))
        })?;
        if !matches!(source, Source::Registry(_)) {
            return Err(Invalid::Image(
                "only registry sources (docker://HOST/REPO:TAG or REPO:TAG) are imported by JSON; \
                 the daemon never reads files on its own host: upload an archive as the body \
                 (POST /images?format=oci-archive|docker-archive|rootfs; `bhatti image import` does)"
                    .into(),
            )
            .into());
        }
        let auth = match (req.username, req.password, req.token) {
            (_, _, Some(t)) => Some(Auth::Bearer(t)),
            (Some(username), Some(password), None) => Some(Auth::Basic { username, password }),
            (None, None, None) => None,
            _ => {
                return Err(Invalid::Image("username and password go together".into()).into());
            }
        };
        Ok(Self {
            name: req.name,
            source_text: req.source,
            source,
            opts: FetchOptions {
                auth,
                insecure: req.insecure.unwrap_or(false),
                ..FetchOptions::default()
            },
            upload: None,
        })
    }

    /// An import of an uploaded archive of `format` at `path`.
    pub fn upload(format: &str, name: Option<String>, path: PathBuf) -> ServiceResult<Self> {
        let source = match format {
            "oci-archive" => Source::OciArchive {
                path: path.clone(),
                tag: None,
            },
            "docker-archive" => Source::DockerArchive {
                path: path.clone(),
                reference: None,
            },
            "rootfs" => Source::Rootfs(path.clone()),
            other => {
                let _ = std::fs::remove_file(&path);
                return Err(Invalid::Image(format!(
                    "format {}: expected oci-archive, docker-archive or rootfs",
                    validate::excerpt(other)
                ))
                .into());
            }
        };
        Ok(Self {
            name,
            source,
            source_text: format!("upload:{format}"),
            opts: FetchOptions::default(),
            upload: Some(path),
        })
    }

    /// The name to give the image when the request gives none.
    pub(super) fn default_name(&self) -> ServiceResult<String> {
        if let Source::Registry(r) = &self.source {
            let last = r.repository.rsplit('/').next().unwrap_or_default();
            if validate::name(last).is_ok() {
                return Ok(last.to_owned());
            }
        }
        Ok(format!("image-{}", &keys::new_id("")?[..8]))
    }
}
