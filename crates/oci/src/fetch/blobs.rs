//! The content-addressed blob directory: temp file, verify, rename.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::FetchError;
use crate::{Event, Progress};

/// Bytes between two progress events of one blob.
const PROGRESS_STEP: u64 = 1 << 20;

/// `BLOBS/sha256/<hex>`.
#[derive(Debug, Clone)]
pub(crate) struct BlobStore {
    dir: PathBuf,
}

/// A `sha256:<hex>` digest, checked for shape.
pub(crate) fn check_digest(digest: &str) -> Result<&str, FetchError> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(hex)
        }
        _ if digest.contains(':') && !digest.starts_with("sha256:") => Err(
            FetchError::Unsupported(format!("digest {digest}: only sha256 is supported")),
        ),
        _ => Err(FetchError::invalid(
            "digest",
            format!("{digest:?} is not sha256:<64 hex>"),
        )),
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// `sha256:<hex>` of everything `r` reads.
pub(crate) fn sha256_reader(mut r: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl BlobStore {
    pub(crate) fn open(blobs: &Path) -> Result<Self, FetchError> {
        let dir = blobs.join("sha256");
        std::fs::create_dir_all(&dir)
            .map_err(|e| FetchError::io(format_args!("cannot create {}", dir.display()), e))?;
        Ok(Self { dir })
    }

    pub(crate) fn path(&self, hex: &str) -> PathBuf {
        self.dir.join(hex)
    }

    /// The blob's path if it is already here with `size` (when known).
    /// A blob of another size is removed, to be fetched again.
    pub(crate) fn existing(&self, digest: &str, size: Option<u64>) -> Option<PathBuf> {
        let path = self.path(check_digest(digest).ok()?);
        let meta = std::fs::metadata(&path).ok()?;
        if !meta.is_file() {
            return None;
        }
        if size.is_some_and(|s| s != meta.len()) {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(path)
    }

    /// A temporary file for `digest`, removed on drop unless kept.
    pub(crate) fn temp(&self, digest: &str) -> Result<TempBlob, FetchError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let hex = check_digest(digest)?;
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join(format!(".tmp-{hex}-{}-{n}", std::process::id()));
        let file = std::fs::File::create(&path)
            .map_err(|e| FetchError::io(format_args!("cannot create {}", path.display()), e))?;
        Ok(TempBlob {
            path: Some(path),
            file: Some(file),
            final_path: self.path(hex),
        })
    }

    /// Copies `reader` into the store as `want`, verified; returns its
    /// path and size.
    pub(crate) fn copy_from(
        &self,
        mut reader: impl Read,
        mut want: Verifier,
        progress: &Progress,
    ) -> Result<(PathBuf, u64), FetchError> {
        if let Some(p) = self.existing(&want.digest, want.declared) {
            let size = want.declared.unwrap_or_default();
            progress(Event::Bytes {
                what: want.digest.clone(),
                done: size,
                total: size,
            });
            return Ok((p, size));
        }
        let mut tmp = self.temp(&want.digest)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FetchError::io(format_args!("reading {}", want.digest), e)),
            };
            let chunk = buf.get(..n).unwrap_or_default();
            want.update(chunk, progress)?;
            tmp.write(chunk)?;
        }
        let size = want.finish(progress)?;
        Ok((tmp.keep()?, size))
    }
}

/// A blob being written; removed on drop unless [`TempBlob::keep`]
/// renamed it into place.
#[derive(Debug)]
pub(crate) struct TempBlob {
    path: Option<PathBuf>,
    file: Option<std::fs::File>,
    final_path: PathBuf,
}

impl TempBlob {
    pub(crate) fn write(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        let (Some(file), Some(path)) = (self.file.as_mut(), self.path.as_ref()) else {
            return Ok(());
        };
        file.write_all(chunk)
            .map_err(|e| FetchError::io(format_args!("writing {}", path.display()), e))
    }

    /// Flushes the file and renames it to its digest.
    pub(crate) fn keep(mut self) -> Result<PathBuf, FetchError> {
        let (Some(file), Some(path)) = (self.file.take(), self.path.take()) else {
            return Ok(self.final_path.clone());
        };
        let done = file
            .sync_all()
            .and_then(|()| std::fs::rename(&path, &self.final_path));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&path);
            return Err(FetchError::io(
                format_args!("storing {}", self.final_path.display()),
                e,
            ));
        }
        Ok(self.final_path.clone())
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        drop(self.file.take());
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Checks a blob as it streams: its size against its descriptor and the
/// limit, its sha256 against its digest.
#[derive(Debug)]
pub(crate) struct Verifier {
    pub(crate) what: &'static str,
    pub(crate) digest: String,
    pub(crate) declared: Option<u64>,
    limit: u64,
    remote: bool,
    hasher: Sha256,
    done: u64,
    reported: u64,
}

impl Verifier {
    /// Checks the declared size against `limit` before anything is read.
    pub(crate) fn new(
        what: &'static str,
        digest: &str,
        declared: Option<u64>,
        limit: u64,
        remote: bool,
    ) -> Result<Self, FetchError> {
        check_digest(digest)?;
        if let Some(size) = declared.filter(|s| *s > limit) {
            return Err(FetchError::TooLarge {
                what,
                digest: digest.into(),
                size,
                limit,
            });
        }
        Ok(Self {
            what,
            digest: digest.into(),
            declared,
            limit,
            remote,
            hasher: Sha256::new(),
            done: 0,
            reported: 0,
        })
    }

    pub(crate) fn update(&mut self, chunk: &[u8], progress: &Progress) -> Result<(), FetchError> {
        self.done += chunk.len() as u64;
        if self.declared.is_some_and(|d| self.done > d) {
            return Err(FetchError::Oversized {
                what: self.what,
                digest: self.digest.clone(),
                expected: self.declared.unwrap_or_default(),
                remote: self.remote,
            });
        }
        if self.done > self.limit {
            return Err(FetchError::TooLarge {
                what: self.what,
                digest: self.digest.clone(),
                size: self.done,
                limit: self.limit,
            });
        }
        self.hasher.update(chunk);
        if self.done - self.reported >= PROGRESS_STEP {
            self.reported = self.done;
            progress(Event::Bytes {
                what: self.digest.clone(),
                done: self.done,
                total: self.declared.unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// The most bytes this blob may have.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// The digest of what was read so far.
    pub(crate) fn actual(&self) -> String {
        format!("sha256:{}", hex(&self.hasher.clone().finalize()))
    }

    /// Checks the whole blob; returns its size. Reports it done.
    pub(crate) fn finish(self, progress: &Progress) -> Result<u64, FetchError> {
        if let Some(expected) = self.declared.filter(|d| self.done < *d) {
            return Err(FetchError::Truncated {
                what: self.what,
                digest: self.digest,
                expected,
                got: self.done,
                remote: self.remote,
            });
        }
        let actual = self.actual();
        if actual != self.digest {
            return Err(FetchError::Corrupt {
                what: self.what,
                digest: self.digest,
                actual,
                remote: self.remote,
            });
        }
        progress(Event::Bytes {
            what: self.digest,
            done: self.done,
            total: self.done,
        });
        Ok(self.done)
    }
}

/// Reads a small blob (manifest, config) from the store.
pub(crate) fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, FetchError> {
    let file = std::fs::File::open(path).map_err(|e| FetchError::open(path, e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FetchError::io(format_args!("reading {}", path.display()), e))?;
    Ok(bytes)
}
