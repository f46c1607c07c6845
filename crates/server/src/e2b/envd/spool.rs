//! Upload bodies of unknown length on the host's disk.
//!
//! The agent's write needs the size before the data, so a multipart part,
//! a chunked body or a gzip body (whose size is known only once it is
//! decompressed) is first copied to a file under
//! `<data dir>/e2b-uploads` (never held in memory) and written from
//! there. A spool is removed when dropped; each is at most
//! [`super::files::UPLOAD_LIMIT`] bytes (decompressed).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::connect::{Code, RpcError};
use super::files::UPLOAD_LIMIT;

/// Why spooling failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spooling the upload: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the upload: {0}")]
    Body(std::io::Error),
    #[error("the upload is not valid gzip: {0}")]
    Gzip(std::io::Error),
    #[error("upload of more than {UPLOAD_LIMIT} bytes is over the limit")]
    TooLarge,
}

impl From<SpoolError> for RpcError {
    fn from(e: SpoolError) -> Self {
        let code = match e {
            SpoolError::Io(_) => Code::Internal,
            SpoolError::Body(_) | SpoolError::Gzip(_) => Code::InvalidArgument,
            SpoolError::TooLarge => Code::ResourceExhausted,
        };
        RpcError::new(code, e.to_string())
    }
}

/// A spooled body.
#[derive(Debug)]
pub struct Spool {
    pub path: PathBuf,
    pub len: u64,
}

static SPOOLS: AtomicU64 = AtomicU64::new(0);

impl Spool {
    fn new(data_dir: &Path) -> Result<Self, SpoolError> {
        let dir = data_dir.join("e2b-uploads");
        std::fs::create_dir_all(&dir)?;
        let n = SPOOLS.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            path: dir.join(format!("{}-{n}", std::process::id())),
            len: 0,
        })
    }

    /// Copies `body` to a new spool.
    pub async fn fill<S>(data_dir: &Path, mut body: S) -> Result<Self, SpoolError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Unpin,
    {
        let mut spool = Self::new(data_dir)?;
        let mut f = tokio::fs::File::create(&spool.path).await?;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(SpoolError::Body)?;
            spool.len += chunk.len() as u64;
            if spool.len > UPLOAD_LIMIT {
                return Err(SpoolError::TooLarge);
            }
            f.write_all(&chunk).await?;
        }
        f.flush().await?;
        Ok(spool)
    }

    /// The gzip content of this spool, decompressed into a new one (on a
    /// blocking thread).
    pub async fn gunzip(self, data_dir: &Path) -> Result<Self, SpoolError> {
        let mut out = Self::new(data_dir)?;
        tokio::task::spawn_blocking(move || {
            let src = std::fs::File::open(&self.path)?;
            let mut dec = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(src));
            let mut dst = std::fs::File::create(&out.path)?;
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = dec.read(&mut buf).map_err(SpoolError::Gzip)?;
                if n == 0 {
                    break;
                }
                out.len += n as u64;
                if out.len > UPLOAD_LIMIT {
                    return Err(SpoolError::TooLarge);
                }
                dst.write_all(&buf[..n])?;
            }
            dst.flush()?;
            Ok(out)
        })
        .await
        .map_err(|e| SpoolError::Io(std::io::Error::other(e)))?
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gzip_bodies_are_spooled_decompressed_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&b"hello ".repeat(1000)).expect("gzip");
        let gz = enc.finish().expect("gzip");
        let body = futures_util::stream::iter(
            gz.chunks(100)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        let spool = Spool::fill(dir.path(), body).await.expect("fill");
        assert_eq!(spool.len, gz.len() as u64);
        let plain = spool.gunzip(dir.path()).await.expect("gunzip");
        assert_eq!(plain.len, 6000);
        let path = plain.path.clone();
        assert_eq!(std::fs::read(&path).expect("read"), b"hello ".repeat(1000));
        drop(plain);
        assert!(!path.exists());
        let bad = futures_util::stream::iter(vec![Ok(Bytes::from_static(b"not gzip"))]);
        let spool = Spool::fill(dir.path(), bad).await.expect("fill");
        assert!(matches!(
            spool.gunzip(dir.path()).await,
            Err(SpoolError::Gzip(_))
        ));
    }
}
