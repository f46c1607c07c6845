//! The generated OpenAPI document checked by a real validator: PyPI's
//! `openapi-spec-validator` (installed by `scripts/setup.sh` into
//! `$BHATTI_CACHE_DIR/venv`, or found on `PATH`). Without it the test fails
//! under CI (`CI=true`) and is skipped, saying why, elsewhere.

use std::path::PathBuf;
use std::process::Command;

use bhatti_server::daemon::DaemonEngine;
use bhatti_server::openapi::document;

const VALIDATOR: &str = "openapi-spec-validator";

/// The validator: the setup script's venv first, then `PATH`.
fn validator() -> Option<PathBuf> {
    let cache = std::env::var_os("BHATTI_CACHE_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/bhatti"), PathBuf::from);
    let venv = cache.join("venv/bin").join(VALIDATOR);
    if venv.is_file() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(VALIDATOR))
        .find(|p| p.is_file())
}

#[test]
fn document_passes_openapi_spec_validator() {
    let Some(validator) = validator() else {
        let msg = format!("{VALIDATOR} not found (scripts/setup.sh installs it)");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("skipped: {msg}");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    let doc = document::<DaemonEngine>();
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).expect("json")).expect("write");
    let out = Command::new(&validator)
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "{} rejected the document:\n{}{}",
        validator.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
