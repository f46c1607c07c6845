//! The `dev` tier (what bhatti v1's default image had): the `minimal` tier
//! plus zsh (lohar's shell), tmux, git, Node.js and npm (Debian's),
//! ripgrep, fd (`fd` → `fdfind`), python3 with pip and venv, curl, wget,
//! build-essential, pkg-config, jq, less, nano, vim-tiny, openssh-client,
//! unzip, xz-utils. Built by [`super::debian`]: docs and man pages are left
//! out. Large (about 1 GiB of files), so only `--tier dev` or `--tier all`
//! builds it.
//!
//! The bootstrapped tree is cached in `work/dev-base-<key>`, so a new
//! lohar only repacks the image.

use std::path::Path;

use anyhow::Result;

use super::debian::{self, Spec};
use super::minimal;
use crate::cache::Cache;

const EXTRA: &[&str] = &[
    "zsh",
    "tmux",
    "nodejs",
    "npm",
    "ripgrep",
    "fd-find",
    "python3-pip",
    "python3-venv",
    "wget",
    "build-essential",
    "pkg-config",
    "jq",
    "less",
    "nano",
    "vim-tiny",
    "openssh-client",
    "unzip",
    "xz-utils",
];

/// Keeps zsh from running its new-user wizard in lohar's first shell.
const ZSHRC: &str = "\
HISTFILE=~/.zsh_history
HISTSIZE=10000
SAVEHIST=10000
setopt share_history
bindkey -e
autoload -Uz compinit && compinit -u
PROMPT='%n@%m %~ %# '
";

pub const SPEC: Spec = Spec {
    name: "dev",
    recipe: "dev-tier-v1",
    include: minimal::PACKAGES,
    extra: EXTRA,
    shell: "/usr/bin/zsh",
    links: &[("usr/local/bin/fd", "/usr/bin/fdfind")],
    home_files: &[(".zshrc", ZSHRC)],
    skeleton: "minimal",
    files: &[],
    min_size: 4 << 30,
};

pub fn build(cache: &Cache, lohar: &Path, force: bool) -> Result<()> {
    debian::build(cache, lohar, force, &SPEC)
}
