//! The file-length rule: no `.rs` file under `crates/` or `xtask/` is over
//! [`MAX_LINES`] lines (STYLE.md: files small enough to read in one
//! sitting; long test modules move into a child `tests.rs`). This crate's
//! test runs [`too_long`] over the workspace on every `cargo xtask test`.

use std::path::{Path, PathBuf};

/// The most lines a `.rs` file may have.
pub const MAX_LINES: usize = 500;

/// The workspace root (this crate lives in `<root>/crates/testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file below `dirs` (relative to `root`) with more than
/// [`MAX_LINES`] lines, as (path relative to `root`, line count), sorted.
/// `target*` directories and unreadable entries are passed over.
pub fn too_long(root: &Path, dirs: &[&str]) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut todo: Vec<PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && !name.to_string_lossy().starts_with("target") {
                todo.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "rs") {
                let lines = std::fs::read_to_string(&path).map_or(0, |s| s.lines().count());
                if lines > MAX_LINES {
                    let rel = path.strip_prefix(root).unwrap_or(&path);
                    found.push((rel.display().to_string(), lines));
                }
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rust_file_is_over_the_limit() {
        let over: Vec<String> = too_long(&workspace_root(), &["crates", "xtask"])
            .into_iter()
            .map(|(p, n)| format!("{p}: {n} lines"))
            .collect();
        assert!(
            over.is_empty(),
            "over {MAX_LINES} lines (split them; long tests go to a child tests.rs):\n{}",
            over.join("\n")
        );
    }

    #[test]
    fn a_long_file_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        std::fs::write(dir.path().join("a/b/long.rs"), "x\n".repeat(MAX_LINES + 1)).expect("write");
        std::fs::write(dir.path().join("a/short.rs"), "x\n".repeat(MAX_LINES)).expect("write");
        std::fs::write(dir.path().join("a/long.txt"), "x\n".repeat(MAX_LINES + 1)).expect("write");
        let found = too_long(dir.path(), &["a"]);
        assert_eq!(found, vec![("a/b/long.rs".to_owned(), MAX_LINES + 1)]);
    }
}
