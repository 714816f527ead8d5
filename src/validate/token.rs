//! The bearer token as a secret type: no `Display`, a redacting `Debug`, and a digest to key caches
//! with, so the raw token is never stored or logged.

use std::fmt;

use sha2::{Digest, Sha256};

/// A bearer token as presented by a client.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

/// The SHA-256 of a token: what caches key on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl BearerToken {
    pub fn new(token: impl Into<String>) -> Self {
        BearerToken(token.into())
    }

    /// The token itself, for the one place that must send it: the provider client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl TokenDigest {
    /// The digest's first eight bytes: as uniform as all of it, so enough to feed a table's hash.
    /// Not a hash to use as it is: a client can grind tokens whose prefixes agree in a few bits
    /// (see `validate::cache::Recent`).
    pub fn prefix(&self) -> u64 {
        let mut first = [0; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(first)
    }

    #[cfg(test)]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        TokenDigest(bytes)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken(<{} bytes>)", self.0.len())
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A short prefix is enough to correlate log lines and reveals nothing usable.
        write!(f, "TokenDigest(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let t = BearerToken::new("s3cr3t-token");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert!(!format!("{:?}", t.digest()).contains("s3cr3t"));
        assert_eq!(t.digest(), BearerToken::new("s3cr3t-token").digest());
        assert_ne!(t.digest(), BearerToken::new("s3cr3t-tokem").digest());
    }
}
