//! Secret configuration values, sealed before they are stored.
//!
//! With a key (`BERTH_SECRETS_KEY`: 32 bytes as 64 hex digits) every secret
//! is encrypted with XChaCha20-Poly1305 under a fresh random nonce, so a
//! plain read of the data directory (or a copy of its database) shows none
//! of them. Without a key they are stored as they are, marked `plain:`, and
//! the host says so at start. Secrets are never returned by the admin API
//! and never logged: [`SealedSecret`] prints as `<secret>`.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

const PLAIN: &str = "plain:";
const SEALED: &str = "xchacha20poly1305:";
const NONCE_BYTES: usize = 24;

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("BERTH_SECRETS_KEY must be 64 hexadecimal digits (32 bytes)")]
    BadKey,
    #[error("a secret is encrypted but the host has no BERTH_SECRETS_KEY")]
    NoKey,
    #[error("a secret cannot be decrypted: BERTH_SECRETS_KEY is not the key it was sealed with")]
    WrongKey,
    #[error("a stored secret is malformed")]
    Malformed,
    #[error("the system random source failed")]
    Random,
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
    pub fn seal(key: Option<&SecretsKey>, value: &str) -> Result<Self, SecretError> {
        let Some(key) = key else {
            return Ok(Self(format!("{PLAIN}{value}")));
        };
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| SecretError::Random)?;
        let sealed = key
            .0
            .encrypt(XNonce::from_slice(&nonce), value.as_bytes())
            .map_err(|_| SecretError::Malformed)?;
        Ok(Self(format!(
            "{SEALED}{}{}",
            hex::encode(nonce),
            hex::encode(sealed)
        )))
    }

    pub fn open(&self, key: Option<&SecretsKey>) -> Result<String, SecretError> {
        if let Some(plain) = self.0.strip_prefix(PLAIN) {
            return Ok(plain.to_string());
        }
        let hex_text = self.0.strip_prefix(SEALED).ok_or(SecretError::Malformed)?;
        let key = key.ok_or(SecretError::NoKey)?;
        let bytes = hex::decode(hex_text).map_err(|_| SecretError::Malformed)?;
        if bytes.len() < NONCE_BYTES {
            return Err(SecretError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plain = key
            .0
            .decrypt(XNonce::from_slice(nonce), sealed)
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SecretError::Malformed)
    }

    /// Whether the secret is encrypted at rest.
    pub fn is_encrypted(&self) -> bool {
        self.0.starts_with(SEALED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key() -> Result<(), SecretError> {
        let key = SecretsKey::from_hex(&"11".repeat(32))?;
        let other = SecretsKey::from_hex(&"22".repeat(32))?;
        let sealed = SealedSecret::seal(Some(&key), "hunter2")?;
        assert!(sealed.is_encrypted());
        assert!(!sealed.0.contains("hunter2"));
        assert_eq!(format!("{sealed:?}"), "<secret>");
        assert_eq!(sealed.open(Some(&key))?, "hunter2");
        assert!(matches!(
            sealed.open(Some(&other)),
            Err(SecretError::WrongKey)
        ));
        assert!(matches!(sealed.open(None), Err(SecretError::NoKey)));
        let plain = SealedSecret::seal(None, "hunter2")?;
        assert_eq!(plain.open(Some(&key))?, "hunter2");
        assert!(SecretsKey::from_hex("abcd").is_err());
        Ok(())
    }
}
