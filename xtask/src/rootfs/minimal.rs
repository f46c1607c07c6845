//! The `minimal` tier (default for users): Debian bookworm minbase from
//! the apt mirror plus bash, coreutils, curl, git, python3, sudo, iproute2,
//! procps, ca-certificates; user lohar (1000) with passwordless sudo;
//! `/workspace`; lohar. Built by [`super::debian`].
//!
//! The debootstrap result is cached in `work/minimal-base-<key>` (keyed on
//! the package list and recipe), so a new lohar only repacks the image.

use std::path::Path;

use anyhow::Result;

use super::debian::{self, Spec};
use crate::cache::Cache;

/// The debootstrap `--include` list (the `dev` tier starts from it).
pub const PACKAGES: &str = "bash,coreutils,curl,git,python3,sudo,iproute2,procps,ca-certificates";

pub const SPEC: Spec = Spec {
    name: "minimal",
    recipe: "minimal-tier-v1",
    include: PACKAGES,
    extra: &[],
    shell: "/bin/bash",
    links: &[],
    home_files: &[],
    skeleton: "minimal",
    files: &[],
    min_size: 2 << 30,
};

pub fn build(cache: &Cache, lohar: &Path, force: bool) -> Result<()> {
    debian::build(cache, lohar, force, &SPEC)
}
