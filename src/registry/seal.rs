//! Sealing the provider credentials the registry must keep (RFC 7592 registration access tokens):
//! AES-256-GCM under a key derived from `[registry] encryption_key` by PBKDF2-HMAC-SHA256 with the
//! store's own random salt. A sealed value is `v1:` and the base64 of nonce, ciphertext and tag;
//! the application's name is the associated data, so a sealed token cannot be moved to another
//! application's row.

use std::num::NonZeroU32;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::pbkdf2;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::RegistryError;
use crate::config::Secret;

/// OWASP's figure for PBKDF2-HMAC-SHA256 (2023): slow enough against guessing, paid once per
/// process.
const ITERATIONS: u32 = 600_000;

/// Seals and opens with one derived key.
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    pub fn new(passphrase: &Secret, salt: &[u8]) -> Result<Sealer, RegistryError> {
        let mut key = [0u8; 32];
        let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            salt,
            passphrase.expose().as_bytes(),
            &mut key,
        );
        let unbound = UnboundKey::new(&AES_256_GCM, &key)
            .map_err(|_| RegistryError::Query("cannot make the sealing key".to_owned()))?;
        Ok(Sealer {
            key: LessSafeKey::new(unbound),
        })
    }

    /// A fresh random salt, base64.
    pub fn new_salt() -> Result<String, RegistryError> {
        let mut salt = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| RegistryError::Query("no randomness for the salt".to_owned()))?;
        Ok(STANDARD.encode(salt))
    }

    pub fn seal(&self, plaintext: &str, owner: &str) -> Result<String, RegistryError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| RegistryError::Query("no randomness for a nonce".to_owned()))?;
        let mut data = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut data,
            )
            .map_err(|_| RegistryError::Query("cannot seal".to_owned()))?;
        let mut out = nonce.to_vec();
        out.extend(data);
        Ok(format!("v1:{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str, owner: &str) -> Result<Secret, RegistryError> {
        let unreadable = || {
            RegistryError::Invalid(format!(
                "the provider credential kept for {owner:?} cannot be opened: [registry] encryption_key is not the one it was sealed with"
            ))
        };
        let bytes = sealed
            .strip_prefix("v1:")
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(unreadable)?;
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unreadable())?;
        let mut data = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut data)
            .map_err(|_| unreadable())?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| unreadable())?;
        Ok(Secret::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_for_its_owner() {
        let salt = b"0123456789abcdef";
        let sealer = Sealer::new(&Secret::new("x".repeat(32)), salt).unwrap();
        let sealed = sealer.seal("registration-token", "shop").unwrap();
        assert!(!sealed.contains("registration-token"));
        assert_eq!(
            sealer.open(&sealed, "shop").unwrap().expose(),
            "registration-token"
        );
        assert!(
            sealer.open(&sealed, "other").is_err(),
            "bound to its application"
        );
        let other = Sealer::new(&Secret::new("y".repeat(32)), salt).unwrap();
        assert!(other.open(&sealed, "shop").is_err(), "another passphrase");
        assert!(sealer.open("v1:AAAA", "shop").is_err());
        assert_ne!(
            sealer.seal("t", "shop").unwrap(),
            sealer.seal("t", "shop").unwrap(),
            "fresh nonce"
        );
    }
}
