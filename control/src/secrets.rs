//! Secret configuration values, sealed before they are stored.
//!
//! Every secret is encrypted with XChaCha20-Poly1305 under a fresh random
//! nonce, with its tenant, service and key name as associated data: a plain
//! read of the data directory (or a copy of its database) shows none of
//! them, and a sealed value copied into another service's settings does not
//! open there. The key is `BERTH_SECRETS_KEY` (32 bytes as 64 hex digits);
//! a single host without it generates one into `DATA_DIR/secrets-key`
//! (owner-only). A fleet needs the same `BERTH_SECRETS_KEY` on every host;
//! without it, secrets are refused rather than stored in a form another
//! host cannot open. Secrets are never returned by the admin API and never
//! logged: [`SealedSecret`] prints as `<secret>`.
//!
//! Older stores hold `plain:` values and values sealed without associated
//! data; both still open, and [`SealedSecret::needs_resealing`] finds them
//! so that the host reseals them when it opens the store.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// An older Berth's form: stored as given.
const PLAIN: &str = "plain:";
/// An older Berth's form: sealed, bound to nothing.
const SEALED_UNBOUND: &str = "xchacha20poly1305:";
/// Sealed and bound to its tenant, service and key name.
const SEALED: &str = "xchacha20poly1305-bound:";
/// The file a single host keeps its generated key in.
pub const KEY_FILE: &str = "secrets-key";
const NONCE_BYTES: usize = 24;

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("BERTH_SECRETS_KEY must be 64 hexadecimal digits (32 bytes)")]
    BadKey,
    #[error(
        "this host has no key to seal secrets with: a fleet stores secrets only with \
         BERTH_SECRETS_KEY set, the same on every host"
    )]
    NoKey,
    #[error("a secret cannot be decrypted: BERTH_SECRETS_KEY is not the key it was sealed with")]
    WrongKey,
    #[error("a stored secret is malformed")]
    Malformed,
    #[error("the system random source failed")]
    Random,
    #[error("cannot read or write the key file {path}: {source}")]
    KeyFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Where a secret belongs: what it is bound to when sealed.
#[derive(Debug, Clone, Copy)]
pub struct SecretScope<'a> {
    pub tenant: &'a str,
    pub service: &'a str,
    pub key: &'a str,
}

impl SecretScope<'_> {
    fn associated_data(&self) -> Vec<u8> {
        format!(
            "berth-secret\0{}\0{}\0{}",
            self.tenant, self.service, self.key
        )
        .into_bytes()
    }
}

/// The operator's key for secrets.
#[derive(Clone)]
pub struct SecretsKey(XChaCha20Poly1305);

impl SecretsKey {
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let bytes = hex::decode(text.trim()).map_err(|_| SecretError::BadKey)?;
        let key = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SecretError::BadKey)?;
        Ok(Self(key))
    }

    /// The key in `dir`'s key file, made (random, owner-only) when there is
    /// none yet.
    pub fn load_or_create(dir: &std::path::Path) -> Result<Self, SecretError> {
        let path = dir.join(KEY_FILE);
        let file_error = |source| SecretError::KeyFile {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => return Self::from_hex(&text),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(file_error(e)),
            Err(_) => {}
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|_| SecretError::Random)?;
        write_private(&path, hex::encode(bytes).as_bytes()).map_err(file_error)?;
        Self::from_hex(&hex::encode(bytes))
    }
}

/// Writes a new file only its owner can read; an existing one is left.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(<secret>)")
    }
}

/// A secret as it is stored: sealed, or marked plain when the host has no key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(String);

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl SealedSecret {
    pub fn seal(
        key: Option<&SecretsKey>,
        scope: SecretScope<'_>,
        value: &str,
    ) -> Result<Self, SecretError> {
        let key = key.ok_or(SecretError::NoKey)?;
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let aad = scope.associated_data();
        let sealed = key
            .0
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Malformed)?;
        Ok(Self(format!(
            "{SEALED}{}{}",
            hex::encode(nonce),
            hex::encode(sealed)
        )))
    }

    pub fn open(
        &self,
        key: Option<&SecretsKey>,
        scope: SecretScope<'_>,
    ) -> Result<String, SecretError> {
        if let Some(plain) = self.0.strip_prefix(PLAIN) {
            return Ok(plain.to_string());
        }
        let (hex_text, aad) = match self.0.strip_prefix(SEALED) {
            Some(hex_text) => (hex_text, scope.associated_data()),
            None => (
                self.0
                    .strip_prefix(SEALED_UNBOUND)
                    .ok_or(SecretError::Malformed)?,
                Vec::new(),
            ),
        };
        let key = key.ok_or(SecretError::NoKey)?;
        let bytes = hex::decode(hex_text).map_err(|_| SecretError::Malformed)?;
        if bytes.len() < NONCE_BYTES {
            return Err(SecretError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plain = key
            .0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SecretError::Malformed)
    }

    /// Whether the secret is encrypted at rest and bound to its place.
    pub fn is_encrypted(&self) -> bool {
        self.0.starts_with(SEALED)
    }

    /// Whether an older Berth stored it in plain text or unbound, so that
    /// it should be sealed again.
    pub fn needs_resealing(&self) -> bool {
        !self.is_encrypted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: SecretScope<'static> = SecretScope {
        tenant: "acme",
        service: "api",
        key: "token",
    };

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_in_their_place() -> Result<(), SecretError> {
        let key = SecretsKey::from_hex(&"11".repeat(32))?;
        let other = SecretsKey::from_hex(&"22".repeat(32))?;
        let sealed = SealedSecret::seal(Some(&key), HERE, "hunter2")?;
        assert!(sealed.is_encrypted() && !sealed.needs_resealing());
        assert!(!sealed.0.contains("hunter2"));
        assert_eq!(format!("{sealed:?}"), "<secret>");
        assert_eq!(sealed.open(Some(&key), HERE)?, "hunter2");
        assert!(matches!(
            sealed.open(Some(&other), HERE),
            Err(SecretError::WrongKey)
        ));
        assert!(matches!(sealed.open(None, HERE), Err(SecretError::NoKey)));
        // Copied into another tenant's, service's or key's place, it does
        // not open.
        for elsewhere in [
            SecretScope {
                tenant: "globex",
                ..HERE
            },
            SecretScope {
                service: "web",
                ..HERE
            },
            SecretScope {
                key: "other",
                ..HERE
            },
        ] {
            assert!(matches!(
                sealed.open(Some(&key), elsewhere),
                Err(SecretError::WrongKey)
            ));
        }
        // Without a key nothing is sealed, and nothing is stored plain.
        assert!(matches!(
            SealedSecret::seal(None, HERE, "hunter2"),
            Err(SecretError::NoKey)
        ));
        assert!(SecretsKey::from_hex("abcd").is_err());
        Ok(())
    }

    #[test]
    fn older_forms_still_open_and_ask_to_be_resealed() -> Result<(), SecretError> {
        let key = SecretsKey::from_hex(&"11".repeat(32))?;
        let plain = SealedSecret("plain:hunter2".into());
        assert!(plain.needs_resealing());
        assert_eq!(plain.open(Some(&key), HERE)?, "hunter2");
        let mut nonce = [7u8; NONCE_BYTES];
        nonce[0] = 1;
        let unbound = key
            .0
            .encrypt(XNonce::from_slice(&nonce), b"hunter2".as_slice())
            .map_err(|_| SecretError::Malformed)?;
        let unbound = SealedSecret(format!(
            "{SEALED_UNBOUND}{}{}",
            hex::encode(nonce),
            hex::encode(unbound)
        ));
        assert!(unbound.needs_resealing());
        assert_eq!(unbound.open(Some(&key), HERE)?, "hunter2");
        Ok(())
    }

    #[test]
    fn a_generated_key_is_kept_owner_only_and_reused() -> Result<(), SecretError> {
        let dir = tempfile::tempdir().map_err(|source| SecretError::KeyFile {
            path: ".".into(),
            source,
        })?;
        let first = SecretsKey::load_or_create(dir.path())?;
        let sealed = SealedSecret::seal(Some(&first), HERE, "hunter2")?;
        let again = SecretsKey::load_or_create(dir.path())?;
        assert_eq!(sealed.open(Some(&again), HERE)?, "hunter2");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600);
        }
        Ok(())
    }
}
