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

/// What the tar reader may take between two entries that is no entry's
/// data: the tar crate reads GNU long names and PAX records whole into
/// memory, and a hostile one could be gigabytes.
pub(super) const MAX_HEADER_BYTES: u64 = 16 << 20;

/// What the tar reader took since the last entry or data chunk.
#[derive(Debug)]
pub(super) struct Gap {
    taken: Cell<u64>,
    limit: Cell<u64>,
}

impl Gap {
    pub(super) fn new() -> Self {
        Self {
            taken: Cell::new(0),
            limit: Cell::new(MAX_HEADER_BYTES),
        }
    }

    /// An entry or a chunk of its data arrived.
    pub(super) fn reset(&self) {
        self.taken.set(0);
    }

    /// The archive is over: what follows is only read to its end.
    pub(super) fn lift(&self) {
        self.limit.set(u64::MAX);
    }
}

/// The tar stream, refusing headers over [`MAX_HEADER_BYTES`].
pub(super) struct Guarded<R> {
    pub(super) inner: R,
    pub(super) gap: Rc<Gap>,
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let taken = self.gap.taken.get().saturating_add(n as u64);
        if taken > self.gap.limit.get() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an entry's headers (long names, PAX records) are over 16 MiB",
            ));
        }
        self.gap.taken.set(taken);
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
