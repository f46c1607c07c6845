//! Entry paths as the archive gives them, made relative to the image root.
//!
//! A name is a byte string (non-UTF-8 is fine). A leading `./` and empty or
//! `.` components are dropped; `..` removes the component before it, and a
//! `..` with nothing left to remove climbs above the root: an error, as is
//! an absolute name, except a name made only of `/`: that is the root
//! itself (umoci writes the root directory as `/`). Symlinks play no part here (that is the resolver's
//! job, see `fs.rs`); this is lexical, like containerd's `filepath.Clean`.

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    /// The name starts with `/`.
    Absolute,
    /// A `..` climbs above the root.
    LeavesRoot,
    /// The name holds a NUL byte.
    Nul,
}

/// A path relative to the image root: components joined by `/`, none of
/// them empty, `.` or `..`; empty for the root itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct RelPath(Vec<u8>);

impl RelPath {
    /// The root itself.
    pub(crate) fn root() -> Self {
        Self(Vec::new())
    }

    /// An archive name, checked and normalised.
    pub(crate) fn parse(raw: &[u8]) -> Result<Self, PathError> {
        if raw.contains(&0) {
            return Err(PathError::Nul);
        }
        if !raw.is_empty() && raw.iter().all(|&b| b == b'/') {
            return Ok(Self::root());
        }
        if raw.first() == Some(&b'/') {
            return Err(PathError::Absolute);
        }
        let mut out = Self::root();
        for comp in raw.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    if !out.pop() {
                        return Err(PathError::LeavesRoot);
                    }
                }
                _ => out.push(comp),
            }
        }
        Ok(out)
    }

    /// `self` joined with a symlink's target the way the kernel's
    /// `RESOLVE_IN_ROOT` reads it: an absolute target starts again from the
    /// root, and `..` at the root stays at the root.
    pub(crate) fn join_clamped(&self, target: &[u8]) -> Self {
        let mut out = if target.first() == Some(&b'/') {
            Self::root()
        } else {
            self.clone()
        };
        for comp in target.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    out.pop();
                }
                _ => out.push(comp),
            }
        }
        out
    }

    /// The path as bytes (`.` for the root, so it can go to a syscall).
    pub(crate) fn as_arg(&self) -> &[u8] {
        if self.0.is_empty() { b"." } else { &self.0 }
    }

    /// The path as bytes, empty for the root.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The parent and the last component; `None` for the root.
    pub(crate) fn split_last(&self) -> Option<(Self, &[u8])> {
        if self.0.is_empty() {
            return None;
        }
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => Some((Self(self.0[..i].to_vec()), &self.0[i + 1..])),
            None => Some((Self::root(), &self.0[..])),
        }
    }

    /// `self/name` (`name` is one component).
    pub(crate) fn join(&self, name: &[u8]) -> Self {
        let mut out = self.clone();
        out.push(name);
        out
    }

    /// Every proper ancestor, nearest first, the root excluded.
    pub(crate) fn ancestors(&self) -> impl Iterator<Item = &[u8]> {
        self.0
            .iter()
            .enumerate()
            .rev()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| &self.0[..i])
    }

    /// The components, first to last.
    pub(crate) fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    fn push(&mut self, comp: &[u8]) {
        if !self.0.is_empty() {
            self.0.push(b'/');
        }
        self.0.extend_from_slice(comp);
    }

    fn pop(&mut self) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let cut = self.0.iter().rposition(|&b| b == b'/').unwrap_or(0);
        self.0.truncate(cut);
        true
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        RelPath::parse(raw.as_bytes())
            .map(|p| p.to_string())
            .unwrap_or_else(|e| format!("{e:?}"))
    }

    #[test]
    fn names_are_normalised_or_refused() {
        assert_eq!(ok("./etc/passwd"), "etc/passwd");
        assert_eq!(ok("etc//./x/"), "etc/x");
        assert_eq!(ok("./"), "");
        assert_eq!(ok("a/b/../c"), "a/c");
        assert_eq!(ok("a/.."), "");
        assert_eq!(ok("../escape"), "LeavesRoot");
        assert_eq!(ok("a/../../escape"), "LeavesRoot");
        assert_eq!(ok("/abs/path"), "Absolute");
        assert_eq!(ok("/"), "");
        assert_eq!(ok("//"), "");
        assert_eq!(ok("/."), "Absolute");
        assert_eq!(ok("a\0b"), "Nul");
    }

    #[test]
    fn symlink_targets_are_clamped_at_the_root() {
        let base = RelPath::parse(b"a/b").expect("parse");
        assert_eq!(base.join_clamped(b"../../../../x").to_string(), "x");
        assert_eq!(base.join_clamped(b"/etc/../run").to_string(), "run");
        assert_eq!(base.join_clamped(b"c/./d").to_string(), "a/b/c/d");
    }

    #[test]
    fn split_and_ancestors() {
        let p = RelPath::parse(b"a/b/c").expect("parse");
        let (parent, name) = p.split_last().expect("split");
        assert_eq!((parent.to_string().as_str(), name), ("a/b", &b"c"[..]));
        let anc: Vec<_> = p.ancestors().collect();
        assert_eq!(anc, vec![&b"a/b"[..], &b"a"[..]]);
        assert!(RelPath::root().split_last().is_none());
        assert_eq!(RelPath::root().as_arg(), b".");
    }
}
