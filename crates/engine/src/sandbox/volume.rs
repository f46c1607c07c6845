//! Volumes: ext4 files under `<data_dir>/volumes/<name>.ext4`, made on
//! first use at the requested size, attached as block devices (lohar
//! mounts them), kept when the sandbox is destroyed. A volume is attached
//! to at most one sandbox at a time.
//!
//! # Threads, locks, I/O
//! The attachment table is a `std::sync::Mutex` held only for the check
//! and the update; `mkfs.ext4` runs on the blocking pool.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};

use super::blocking;
use crate::engine::{EngineError, EngineResult, SandboxId};

#[derive(Debug)]
pub(super) struct Volumes {
    dir: PathBuf,
    attached: Mutex<HashMap<String, SandboxId>>,
}

impl Volumes {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            attached: Mutex::new(HashMap::new()),
        }
    }

    /// Marks `name` attached to `by` and returns its file, creating an
    /// ext4 volume of `size_mb` if none exists.
    pub(super) async fn attach(
        &self,
        name: &str,
        size_mb: u64,
        by: &SandboxId,
    ) -> EngineResult<PathBuf> {
        {
            let mut map = self.attached.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(owner) = map.get(name)
                && owner != by
            {
                return Err(EngineError::VolumeBusy(name.to_owned()));
            }
            map.insert(name.to_owned(), by.clone());
        }
        let path = self.path(name);
        if !path.exists() {
            let p = path.clone();
            let made = blocking(move || make_ext4(&p, size_mb))
                .await
                .and_then(|r| r);
            if let Err(e) = made {
                self.release(name);
                return Err(e);
            }
        }
        Ok(path)
    }

    /// The file of volume `name` (made when a sandbox first mounts it).
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.ext4"))
    }

    /// Deletes volume `name`'s file (nothing to do if it was never made);
    /// `VolumeBusy` while a sandbox has it attached.
    pub(super) fn delete(&self, name: &str) -> EngineResult<()> {
        // Same rules as a sandbox id: a plain file name, never a path.
        name.parse::<SandboxId>()
            .map_err(|_| crate::engine::SpecError::VolumeName(name.to_owned()))?;
        let map = self.attached.lock().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(name) {
            return Err(EngineError::VolumeBusy(name.to_owned()));
        }
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(EngineError::Io { path, source }),
        }
    }

    /// Frees `name` for other sandboxes.
    pub(super) fn release(&self, name: &str) {
        self.attached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }
}

fn make_ext4(path: &std::path::Path, size_mb: u64) -> EngineResult<()> {
    let io = |source| EngineError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("ext4.tmp");
    let f = std::fs::File::create(&tmp).map_err(io)?;
    f.set_len(size_mb.saturating_mul(1 << 20)).map_err(io)?;
    drop(f);
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-E", "root_owner=0:0"])
        .arg(&tmp)
        .stdin(Stdio::null())
        .output()
        .map_err(io)?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(std::io::Error::other(format!(
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))));
    }
    std::fs::rename(&tmp, path).map_err(io)
}
