//! What the dev provider remembers of every token it issued, so introspection (RFC 7662) can answer:
//! the claims and expiry, in memory only. A JWT is remembered by its `jti`; an opaque token by its
//! SHA-256, so the token itself is never a key (as in the gateway's caches). Expired entries are
//! dropped lazily: on lookup, and in one sweep whenever the map has doubled since the last.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use serde_json::{Value, json};

use super::reply::OAuthError;
use crate::validate::{BearerToken, TokenDigest};

/// Live tokens beyond this many are refused, so a runaway client cannot exhaust memory.
const MAX_LIVE_TOKENS: usize = 200_000;
/// The map size at which the first sweep of expired entries happens.
const FIRST_SWEEP: usize = 1024;

/// One issued token: everything both its JWT form and its introspection answer say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TokenRecord {
    pub issuer: String,
    pub audience: String,
    /// The client it was issued to; also its subject (client credentials have no user).
    pub client_id: String,
    pub scopes: Vec<String>,
    pub issued_at: u64,
    pub expires_at: u64,
    pub jti: String,
}

/// The claims of a JWT access token: RFC 9068 §2.2 (`client_id`, `scope` as a string) and Okta's
/// dialect (`cid`, `scp` as an array) side by side, so either reading works.
#[derive(Debug, Serialize)]
pub(super) struct JwtClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: &'a str,
    client_id: &'a str,
    cid: &'a str,
    scope: String,
    scp: &'a [String],
}

/// How an issued token is found again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum TokenKey {
    Jti(String),
    Opaque(TokenDigest),
}

/// Every token issued and not yet known to be expired.
#[derive(Default)]
pub(super) struct IssuedTokens {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<TokenKey, TokenRecord>,
    /// The size at which the next sweep happens: sweeping at doublings keeps `remember` O(1)
    /// amortised.
    sweep_at: usize,
}

// === impl TokenRecord ===

impl TokenRecord {
    /// `exp` is the first second it is no longer valid (RFC 7519 §4.1.4).
    pub fn is_active(&self, now: u64) -> bool {
        now < self.expires_at
    }

    pub fn jwt_claims(&self) -> JwtClaims<'_> {
        JwtClaims {
            iss: &self.issuer,
            sub: &self.client_id,
            aud: &self.audience,
            iat: self.issued_at,
            exp: self.expires_at,
            jti: &self.jti,
            client_id: &self.client_id,
            cid: &self.client_id,
            scope: self.scopes.join(" "),
            scp: &self.scopes,
        }
    }

    /// The RFC 7662 §2.2 answer for this token while it is active.
    pub fn introspection(&self) -> Value {
        json!({
            "active": true,
            "client_id": self.client_id,
            "scope": self.scopes.join(" "),
            "sub": self.client_id,
            "aud": self.audience,
            "iss": self.issuer,
            "exp": self.expires_at,
            "iat": self.issued_at,
            "token_type": "Bearer",
            "jti": self.jti,
        })
    }
}

// === impl TokenKey ===

impl TokenKey {
    pub fn opaque(token: &str) -> TokenKey {
        TokenKey::Opaque(BearerToken::new(token).digest())
    }
}

// === impl IssuedTokens ===

impl IssuedTokens {
    /// Remembers a token until it expires; refuses when too many are live at once.
    pub fn remember(&self, key: TokenKey, record: TokenRecord, now: u64) -> Result<(), OAuthError> {
        // A poisoned lock still holds a consistent map: entries are only inserted or removed whole.
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.by_key.len() >= entries.sweep_at {
            entries.by_key.retain(|_, r| r.is_active(now));
            entries.sweep_at = (entries.by_key.len() * 2).max(FIRST_SWEEP);
        }
        if entries.by_key.len() >= MAX_LIVE_TOKENS {
            return Err(OAuthError::Exhausted(
                "the dev provider holds as many live tokens as it will; wait for some to expire or shorten their lifetime",
            ));
        }
        entries.by_key.insert(key, record);
        Ok(())
    }

    /// The record of an issued, unexpired token; an expired one is forgotten on the way.
    pub fn find(&self, key: &TokenKey, now: u64) -> Option<TokenRecord> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let record = entries.by_key.get(key)?;
        if record.is_active(now) {
            return Some(record.clone());
        }
        entries.by_key.remove(key);
        None
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(jti: &str, expires_at: u64) -> TokenRecord {
        TokenRecord {
            issuer: "http://127.0.0.1:1/oauth2/default".to_owned(),
            audience: "api://default".to_owned(),
            client_id: "app".to_owned(),
            scopes: vec!["mulescope".to_owned(), "read".to_owned()],
            issued_at: expires_at - 60,
            expires_at,
            jti: jti.to_owned(),
        }
    }

    #[test]
    fn a_token_is_found_until_its_exp_then_forgotten() {
        let tokens = IssuedTokens::default();
        let key = TokenKey::Jti("j1".to_owned());
        tokens
            .remember(key.clone(), record("j1", 1000), 940)
            .unwrap();
        assert_eq!(tokens.find(&key, 999), Some(record("j1", 1000)));
        assert_eq!(tokens.find(&key, 1000), None, "exp itself is expired");
        assert_eq!(tokens.len(), 0, "the expired entry is dropped on lookup");
        assert_eq!(tokens.find(&TokenKey::Jti("other".to_owned()), 0), None);
    }

    #[test]
    fn opaque_tokens_are_keyed_by_digest() {
        let tokens = IssuedTokens::default();
        tokens
            .remember(TokenKey::opaque("opaque-1"), record("j", 1000), 0)
            .unwrap();
        assert!(tokens.find(&TokenKey::opaque("opaque-1"), 1).is_some());
        assert!(tokens.find(&TokenKey::opaque("opaque-2"), 1).is_none());
        assert!(!format!("{:?}", TokenKey::opaque("opaque-1")).contains("opaque-1"));
    }

    #[test]
    fn expired_entries_are_swept_as_the_map_grows() {
        let tokens = IssuedTokens::default();
        for i in 0..FIRST_SWEEP {
            let key = TokenKey::Jti(format!("old-{i}"));
            tokens.remember(key, record("old", 100), 50).unwrap();
        }
        tokens
            .remember(TokenKey::Jti("new".to_owned()), record("new", 500), 200)
            .unwrap();
        assert_eq!(tokens.len(), 1, "the sweep dropped every expired entry");
    }

    #[test]
    fn claims_speak_both_rfc_9068_and_okta() {
        let claims = serde_json::to_value(record("j1", 1000).jwt_claims()).unwrap();
        assert_eq!(claims["scope"], "mulescope read");
        assert_eq!(claims["scp"], json!(["mulescope", "read"]));
        assert_eq!(claims["client_id"], "app");
        assert_eq!(claims["cid"], "app");
        assert_eq!(claims["sub"], "app");
        assert_eq!(claims["exp"], 1000);
        let answer = record("j1", 1000).introspection();
        assert_eq!(answer["active"], true);
        assert_eq!(answer["scope"], "mulescope read");
        assert!(answer.get("cid").is_none());
    }
}
