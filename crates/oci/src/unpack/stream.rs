//! The bytes of a layer: the blob file read with progress, decompressed,
//! and hashed when its diff_id is checked.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, Read};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::error::ApplyError;
use crate::{Event, Progress};

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    Gzip,
    Zstd,
    /// Plain tar or unknown: look at the magic bytes.
    Sniff,
}

pub(super) fn compression(media_type: &str) -> Option<Compression> {
    let mt = media_type.trim().to_ascii_lowercase();
    if mt.ends_with("+gzip") || mt.ends_with(".gzip") {
        Some(Compression::Gzip)
    } else if mt.ends_with("+zstd") || mt.ends_with(".zstd") {
        Some(Compression::Zstd)
    } else if mt.contains('+') {
        None
    } else {
        Some(Compression::Sniff)
    }
}

pub(super) fn decompressed<'a, R: BufRead + 'a>(
    mut reader: R,
    compression: Compression,
) -> Result<Box<dyn Read + 'a>, ApplyError> {
    let corrupt = |source| ApplyError::Corrupt { source };
    let compression = match compression {
        Compression::Sniff => {
            let head = reader.fill_buf().map_err(corrupt)?;
            if head.starts_with(&[0x1f, 0x8b]) {
                Compression::Gzip
            } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                Compression::Zstd
            } else {
                return Ok(Box::new(reader));
            }
        }
        known => known,
    };
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        _ => Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(corrupt)?),
    })
}

/// `sha256:0123456789ab…` for errors.
pub(super) fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) if hex.len() > 12 && hex.is_char_boundary(12) => {
            format!("{algo}:{}…", &hex[..12])
        }
        _ => digest.to_owned(),
    }
}

/// The blob file, counting what is read for progress and remembering
/// whether reading it failed.
pub(super) struct Blob<'a> {
    pub(super) file: std::fs::File,
    pub(super) done: u64,
    pub(super) reported: u64,
    pub(super) total: u64,
    pub(super) what: &'a str,
    pub(super) progress: &'a Progress,
    pub(super) failed: Rc<Cell<bool>>,
}

impl Read for Blob<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.file.read(buf) {
            Ok(n) => {
                self.done += n as u64;
                if n == 0 || self.done - self.reported >= 1 << 20 {
                    self.reported = self.done;
                    (self.progress)(Event::Bytes {
                        what: self.what.to_owned(),
                        done: self.done,
                        total: self.total,
                    });
                }
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.failed.set(true);
                }
                Err(e)
            }
        }
    }
}

/// A reader that hashes what goes through it (a layer's diff_id: the
/// sha256 of its uncompressed tar stream, read to the end).
pub(super) struct Hashing<R> {
    pub(super) inner: R,
    pub(super) hasher: Rc<RefCell<Sha256>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::{Compression, compression, short_digest};

    #[test]
    fn media_types_choose_the_decoder() {
        let c = compression;
        assert_eq!(
            c("application/vnd.oci.image.layer.v1.tar+gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            c("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            c("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            c("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::Sniff)
        );
        assert_eq!(c(""), Some(Compression::Sniff));
        assert_eq!(c("application/vnd.oci.image.layer.v1.tar+encrypted"), None);
    }

    #[test]
    fn digests_are_shortened() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(short_digest(&d), "sha256:abababababab…");
        assert_eq!(short_digest("x"), "x");
    }
}
