//! The build cache outside the clone and its manifest.
//!
//! Layout under `$BHATTI_CACHE_DIR` (default `/var/cache/bhatti`):
//! - `images/` — `vmlinux`, `busybox.ext4`, `minimal.ext4`, `dev.ext4`,
//!   `manifest.json`
//! - `kernel/` — extracted kernel source and its out-of-tree build dir
//! - `work/` — rootfs staging dirs and the cached debootstrap bases
//!
//! `manifest.json` maps each artifact to the sha256 key of its inputs, its
//! size and when it was built; an artifact whose recorded key matches the
//! current inputs (and whose file exists) is not rebuilt.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Environment variable naming the cache root.
pub const CACHE_DIR_ENV: &str = "BHATTI_CACHE_DIR";
const DEFAULT_CACHE_DIR: &str = "/var/cache/bhatti";
const MANIFEST: &str = "manifest.json";

/// The cache directories.
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
    pub images: PathBuf,
    pub kernel: PathBuf,
    pub work: PathBuf,
}

/// One artifact's manifest entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub file: String,
    pub key: String,
    pub size: u64,
    pub disk_usage: u64,
    pub built_at_unix: u64,
    pub build_seconds: f64,
}

impl Cache {
    pub fn from_env() -> Result<Self> {
        let root = std::env::var_os(CACHE_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from);
        let c = Self {
            images: root.join("images"),
            kernel: root.join("kernel"),
            work: root.join("work"),
            root,
        };
        for d in [&c.images, &c.kernel, &c.work] {
            fs::create_dir_all(d).with_context(|| {
                format!(
                    "cannot create {} (set {CACHE_DIR_ENV} to a writable directory)",
                    d.display()
                )
            })?;
        }
        Ok(c)
    }

    fn read_manifest(&self) -> BTreeMap<String, Entry> {
        fs::read(self.images.join(MANIFEST))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Whether `name` is built from inputs with `key`.
    pub fn is_fresh(&self, name: &str, key: &str) -> bool {
        self.read_manifest()
            .get(name)
            .is_some_and(|e| e.key == key && self.images.join(&e.file).is_file())
    }

    /// Moves `built` into `images/<file>` and records it in the manifest.
    pub fn install(
        &self,
        name: &str,
        built: &Path,
        file: &str,
        key: &str,
        took: Duration,
    ) -> Result<()> {
        let dest = self.images.join(file);
        let tmp = self.images.join(format!(".{file}.tmp"));
        fs::copy(built, &tmp)
            .with_context(|| format!("cannot copy {} to {}", built.display(), tmp.display()))?;
        fs::rename(&tmp, &dest).with_context(|| format!("cannot install {}", dest.display()))?;
        self.record(name, file, key, took)
    }

    /// Records `images/<file>` (already in place) in the manifest.
    pub fn record(&self, name: &str, file: &str, key: &str, took: Duration) -> Result<()> {
        let md = fs::metadata(self.images.join(file))?;
        let mut m = self.read_manifest();
        m.insert(
            name.to_owned(),
            Entry {
                file: file.to_owned(),
                key: key.to_owned(),
                size: md.len(),
                disk_usage: md.blocks() * 512,
                built_at_unix: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                build_seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
            },
        );
        let path = self.images.join(MANIFEST);
        let tmp = self.images.join(format!(".{MANIFEST}.tmp"));
        fs::write(&tmp, serde_json::to_vec_pretty(&m)?)?;
        fs::rename(&tmp, &path)?;
        Ok(())
    }

    pub fn print_summary(&self) -> Result<()> {
        println!("images in {}:", self.images.display());
        for (name, e) in self.read_manifest() {
            println!(
                "  {name:8} {:24} {:>9} apparent, {:>9} on disk, built in {:.1}s, key {}",
                e.file,
                human(e.size),
                human(e.disk_usage),
                e.build_seconds,
                &e.key[..12.min(e.key.len())]
            );
        }
        Ok(())
    }
}

/// Builds a cache key: sha256 over labelled inputs.
#[derive(Debug, Default)]
pub struct Key(Sha256);

impl Key {
    pub fn new(recipe: &str) -> Self {
        let mut k = Self(Sha256::new());
        k.bytes("recipe", recipe.as_bytes());
        k
    }

    pub fn bytes(&mut self, label: &str, data: &[u8]) -> &mut Self {
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((data.len() as u64).to_le_bytes());
        self.0.update(data);
        self
    }

    pub fn file(&mut self, label: &str, path: &Path) -> Result<&mut Self> {
        let data = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(self.bytes(label, &data))
    }

    /// Every file under `dir` (path and content), in sorted order.
    pub fn tree(&mut self, dir: &Path) -> Result<&mut Self> {
        let mut files = Vec::new();
        walk(dir, &mut files)?;
        files.sort();
        for f in files {
            let rel = f
                .strip_prefix(dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned();
            self.file(&rel, &f)?;
        }
        Ok(self)
    }

    pub fn finish(&self) -> String {
        self.0
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// The workspace root (xtask lives in `<root>/xtask`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_owned()
}

pub fn human(bytes: u64) -> String {
    const MIB: f64 = (1 << 20) as f64;
    format!("{:.1} MiB", bytes as f64 / MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_labels_and_content() {
        let k = |pairs: &[(&str, &[u8])]| {
            let mut key = Key::new("r");
            for (l, d) in pairs {
                key.bytes(l, d);
            }
            key.finish()
        };
        assert_eq!(k(&[("a", b"x")]), k(&[("a", b"x")]));
        assert_ne!(k(&[("a", b"x")]), k(&[("a", b"y")]));
        assert_ne!(k(&[("ab", b"")]), k(&[("a", b"b")]));
        assert_ne!(Key::new("r1").finish(), Key::new("r2").finish());
        assert_eq!(k(&[]).len(), 64);
    }

    #[test]
    fn tree_key_follows_file_content() {
        let dir = std::env::temp_dir().join(format!("xtask-key-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("etc")).expect("mkdir");
        fs::write(dir.join("etc/passwd"), "root").expect("write");
        let a = Key::new("r").tree(&dir).expect("tree").finish();
        fs::write(dir.join("etc/passwd"), "root2").expect("write");
        let b = Key::new("r").tree(&dir).expect("tree").finish();
        fs::remove_dir_all(&dir).expect("cleanup");
        assert_ne!(a, b);
    }

    #[test]
    fn manifest_records_and_detects_freshness() {
        let root = std::env::temp_dir().join(format!("xtask-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let c = Cache {
            images: root.join("images"),
            kernel: root.join("kernel"),
            work: root.join("work"),
            root: root.clone(),
        };
        fs::create_dir_all(&c.images).expect("mkdir");
        assert!(!c.is_fresh("kernel", "k1"));
        fs::write(c.images.join("vmlinux"), b"elf").expect("write");
        c.record("kernel", "vmlinux", "k1", Duration::from_secs(3))
            .expect("record");
        assert!(c.is_fresh("kernel", "k1"));
        assert!(!c.is_fresh("kernel", "k2"));
        fs::remove_file(c.images.join("vmlinux")).expect("rm");
        assert!(!c.is_fresh("kernel", "k1"), "missing file is not fresh");
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
