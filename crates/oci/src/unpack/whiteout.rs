//! Whiteouts (`.wh.NAME`) and opaque markers (`.wh..wh..opq`).
//!
//! Both hide what *lower* layers put in the tree, never what the same
//! layer writes (OCI image spec, "Whiteouts"): the applier records every
//! path its layer wrote (and their ancestors), and these leave those
//! alone, whichever comes first in the stream.

use rustix::io::Errno;

use std::os::fd::OwnedFd;

use super::apply::{Applier, fail, remember};
use super::error::ApplyError;
use super::fs;
use super::path::RelPath;

impl Applier<'_> {
    /// `DIR/.wh.NAME`: remove `DIR/NAME` (a directory with all it holds).
    /// Nothing there, or no `DIR`, is fine.
    pub(super) fn whiteout(
        &mut self,
        dir: &RelPath,
        leaf: &[u8],
        name: &str,
    ) -> Result<(), ApplyError> {
        self.stats.whiteouts += 1;
        if self.written.contains(dir.join(leaf).as_bytes()) {
            return Ok(());
        }
        let dfd = match self.root.open_dir(dir) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(fail(name, "find the whited-out file")(e)),
        };
        self.name_bytes += remember(&mut self.prior, dir, &dfd);
        fs::remove_any(&dfd, leaf).map_err(fail(name, "remove the whited-out file"))?;
        Ok(())
    }

    /// `DIR/.wh..wh..opq`: empty `DIR` of what lower layers put there.
    /// `DIR` itself stays (made if missing).
    pub(super) fn opaque(&mut self, dir: &RelPath, name: &str) -> Result<(), ApplyError> {
        self.stats.whiteouts += 1;
        self.mark(dir);
        let dfd = self.ensure_dir(dir, name)?;
        let (written, prior, bytes) = (&self.written, &mut self.prior, &mut self.name_bytes);
        let keep = |p: &RelPath| written.contains(p.as_bytes());
        let mut changing = |p: &RelPath, fd: &OwnedFd| *bytes += remember(prior, p, fd);
        fs::clear_dir(&dfd, dir, &keep, &mut changing, 0)
            .map_err(fail(name, "empty the opaque directory"))
    }
}
