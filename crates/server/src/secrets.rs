//! Secret values encrypted at rest with age (X25519).
//!
//! The identity lives in `<data_dir>/age.key`, created on first start with
//! mode 0600 (refused if it exists with looser permissions). Only
//! ciphertext reaches the store; plaintext exists in memory only while a
//! sandbox's environment is being built.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;

/// Why a secret operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} is readable by others (mode {mode:04o}); chmod 600 it")]
    KeyFileMode { path: PathBuf, mode: u32 },
    #[error("key file {path} does not hold an age identity")]
    KeyFileInvalid { path: PathBuf },
    #[error("encrypt: {0}")]
    Encrypt(String),
    #[error("decrypt: {0}")]
    Decrypt(String),
}

/// Encrypts and decrypts secret values with the daemon's identity.
pub struct SecretBox {
    identity: age::x25519::Identity,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<identity>)")
    }
}

impl SecretBox {
    /// Loads the identity at `path`, creating it (mode 0600) when missing.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let err = |source| SecretError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecretError::KeyFileMode {
                        path: path.to_owned(),
                        mode,
                    });
                }
                let mut text = String::new();
                fs::File::open(path)
                    .and_then(|mut f| f.read_to_string(&mut text))
                    .map_err(err)?;
                let line = text
                    .lines()
                    .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                    .unwrap_or_default();
                let identity = age::x25519::Identity::from_str(line.trim()).map_err(|_| {
                    SecretError::KeyFileInvalid {
                        path: path.to_owned(),
                    }
                })?;
                Ok(Self { identity })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = age::x25519::Identity::generate();
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(err)?;
                writeln!(
                    f,
                    "# bhatti secret encryption key; losing it loses every secret"
                )
                .and_then(|()| writeln!(f, "{}", identity.to_string().expose_secret()))
                .and_then(|()| f.sync_all())
                .map_err(err)?;
                Ok(Self { identity })
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Encrypts a value to this daemon's identity.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, SecretError> {
        let recipient = self.identity.to_public();
        age::encrypt(&recipient, plaintext).map_err(|e| SecretError::Encrypt(e.to_string()))
    }

    /// HMAC-SHA256 of `context`, a NUL, and `data`, keyed by a key derived
    /// from this daemon's identity: tokens the daemon can recompute and
    /// check without storing them (e.g. a sandbox's E2B access token).
    pub fn mac(&self, context: &str, data: &str) -> [u8; 32] {
        use hmac::Mac;
        use sha2::Digest;
        let key = sha2::Sha256::new()
            .chain_update(b"bhatti mac key\0")
            .chain_update(self.identity.to_string().expose_secret().as_bytes())
            .finalize();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(context.as_bytes());
        mac.update(b"\0");
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Decrypts a value encrypted by [`SecretBox::encrypt`].
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, SecretError> {
        age::decrypt(&self.identity, ciphertext).map_err(|e| SecretError::Decrypt(e.to_string()))
    }
}
