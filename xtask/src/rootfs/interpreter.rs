//! The `interpreter` tier: the `minimal` tier plus a Jupyter kernel from
//! Debian's packages (python3-ipykernel, python3-jupyter-client) and
//! bhatti's code-interpreter server (`images/interpreter/interpreter.py`,
//! installed at [`SERVER`]), which serves E2B's code-interpreter execute
//! API on port 49999. E2B's template `code-interpreter-v1` maps to this
//! tier and starts the server as the sandbox's init
//! (`crates/server/src/e2b/control/template.rs`). Built by
//! [`super::debian`]; not built by default (`--tier interpreter`).

use std::path::Path;

use anyhow::Result;

use super::debian::{self, Spec};
use super::minimal;
use crate::cache::Cache;

/// Where the server is installed in the image.
pub const SERVER: &str = "usr/local/lib/bhatti/interpreter.py";

const EXTRA: &[&str] = &["python3-ipykernel", "python3-jupyter-client"];

pub const SPEC: Spec = Spec {
    name: "interpreter",
    recipe: "interpreter-tier-v1",
    include: minimal::PACKAGES,
    extra: EXTRA,
    shell: "/bin/bash",
    links: &[],
    home_files: &[],
    skeleton: "minimal",
    min_size: 2 << 30,
    files: &[(
        SERVER,
        include_str!("../../../images/interpreter/interpreter.py"),
        0o755,
    )],
};

pub fn build(cache: &Cache, lohar: &Path, force: bool) -> Result<()> {
    debian::build(cache, lohar, force, &SPEC)
}
