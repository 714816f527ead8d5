//! The provider's signing keys (RFC 7517 JWKS): fetched once the endpoints are known, refreshed on
//! an interval that honours `Cache-Control: max-age` within configured bounds, and refetched for an
//! unknown `kid` at most once per `jwks_min_refresh`, so a flood of made-up kids cannot make
//! tollgate hammer the provider. Concurrent fetches are one fetch. A failed refresh keeps the last
//! good set. Only public signature keys are kept: symmetric (`oct`) and encryption keys never are.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use url::Url;

use super::{ProviderError, ProviderHttp};
use crate::config::JwtSettings;

/// One usable verification key.
pub struct VerificationKey {
    pub kid: Option<String>,
    /// The algorithms this key may verify: its JWK `alg` if it names one, else its type's family,
    /// always within the configured allow-list.
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

/// The key set in force.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Arc<VerificationKey>>,
    /// Bumped on every successful fetch; lets waiters see that someone else just fetched.
    generation: u64,
    /// The provider's `Cache-Control: max-age` for this set.
    max_age: Option<Duration>,
}

/// What a key lookup found.
pub enum KeyLookup {
    Found(Arc<VerificationKey>),
    /// No key with that `kid` (or, without one, no key for the algorithm).
    Unknown,
    /// No `kid` and more than one candidate key: RFC 7515 §4.1.4 leaves it ambiguous; refused.
    Ambiguous,
}

impl KeySet {
    pub fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup {
        let mut candidates = self.keys.iter().filter(|k| k.algorithms.contains(&alg));
        match kid {
            Some(kid) => candidates
                .find(|k| k.kid.as_deref() == Some(kid))
                .map_or(KeyLookup::Unknown, |k| KeyLookup::Found(k.clone())),
            None => match (candidates.next(), candidates.next()) {
                (Some(k), None) => KeyLookup::Found(k.clone()),
                (None, _) => KeyLookup::Unknown,
                (Some(_), Some(_)) => KeyLookup::Ambiguous,
            },
        }
    }
}

/// The cached JWKS of one provider.
pub struct JwksCache {
    http: ProviderHttp,
    url: Url,
    settings: JwtSettings,
    keys: RwLock<Arc<KeySet>>,
    /// Held while fetching: concurrent fetches wait for the one under way.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl JwksCache {
    pub fn new(http: ProviderHttp, url: Url, settings: JwtSettings) -> Self {
        JwksCache {
            http,
            url,
            settings,
            keys: RwLock::new(Arc::new(KeySet::default())),
            fetching: tokio::sync::Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// The key set in force now (possibly empty before the first fetch).
    pub fn current(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn is_loaded(&self) -> bool {
        !self.current().keys.is_empty()
    }

    /// Loads the set if none is loaded yet (one fetch however many callers wait).
    pub async fn ensure_loaded(&self) -> Result<Arc<KeySet>, ProviderError> {
        let seen = self.current();
        if !seen.keys.is_empty() {
            return Ok(seen);
        }
        self.fetch_after(seen.generation, Duration::ZERO)
            .await
            .map(|_| self.current())
    }

    /// For an unknown `kid`: refetch unless a fetch happened within `jwks_min_refresh` (or another
    /// caller's fetch completed while we waited). Returns the set to look in again.
    pub async fn refresh_for_unknown_kid(
        &self,
        seen_generation: u64,
    ) -> Result<Arc<KeySet>, ProviderError> {
        self.fetch_after(seen_generation, self.settings.jwks_min_refresh)
            .await?;
        Ok(self.current())
    }

    pub fn generation(set: &KeySet) -> u64 {
        set.generation
    }

    /// Fetches unless the set changed since `seen_generation` or the last fetch is younger than
    /// `min_interval`.
    async fn fetch_after(
        &self,
        seen_generation: u64,
        min_interval: Duration,
    ) -> Result<(), ProviderError> {
        let mut last = self.fetching.lock().await;
        if self.current().generation != seen_generation {
            return Ok(());
        }
        if last.is_some_and(|at| at.elapsed() < min_interval) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let fetched = self.fetch().await;
        let outcome = match &fetched {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        metrics::counter!(crate::measure::JWKS_FETCHES, "outcome" => outcome).increment(1);
        let (keys, max_age) = fetched?;
        let new = Arc::new(KeySet {
            keys,
            generation: seen_generation + 1,
            max_age,
        });
        match self.keys.write() {
            Ok(mut k) => *k = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
        Ok(())
    }

    async fn fetch(&self) -> Result<(Vec<Arc<VerificationKey>>, Option<Duration>), ProviderError> {
        let request = self
            .http
            .get(self.url.clone())
            .header(http::header::ACCEPT, "application/json");
        let answer = self.http.send(request).await?;
        if answer.status != reqwest::StatusCode::OK {
            return Err(ProviderError::Status(answer.status.as_u16()));
        }
        let max_age = answer
            .headers
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = answer.body?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Malformed("the JWKS is not JSON".to_owned()))?;
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err(ProviderError::Malformed(
                "the JWKS has no `keys` array".to_owned(),
            ));
        };
        let keys: Vec<_> = entries
            .iter()
            .filter_map(|entry| self.usable_key(entry))
            .map(Arc::new)
            .collect();
        if keys.is_empty() {
            return Err(ProviderError::Malformed(
                "the JWKS holds no signature key for the configured jwt_algorithms".to_owned(),
            ));
        }
        tracing::info!(url = %self.url, keys = keys.len(), "JWKS loaded");
        Ok((keys, max_age))
    }

    /// A JWKS entry as a verification key, if it is a public signature key we may use.
    fn usable_key(&self, entry: &Value) -> Option<VerificationKey> {
        let jwk: Jwk = serde_json::from_value(entry.clone())
            .map_err(|e| tracing::debug!(error = %e, "JWKS entry skipped"))
            .ok()?;
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return None;
        }
        let family: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                // P-521 has no JWS algorithm here; the rest are not ECDSA curves.
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
            // Symmetric keys would let anyone holding the JWKS mint tokens; unknown types we
            // cannot verify with.
            _ => return None,
        };
        // A key declared for anything else (HMAC, encryption) is not ours to verify with.
        let declared = match jwk.common.key_algorithm {
            None => None,
            Some(alg) => Some(key_algorithm(alg)?),
        };
        let algorithms: Vec<Algorithm> = family
            .into_iter()
            .filter(|a| declared.is_none_or(|d| d == *a))
            .filter(|a| self.settings.algorithms.contains(a))
            .collect();
        if algorithms.is_empty() {
            return None;
        }
        let key = DecodingKey::from_jwk(&jwk).ok()?;
        Some(VerificationKey {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        })
    }

    /// Keeps the set fresh: refetches on the interval the provider's `max-age` suggests (within
    /// bounds), sooner after a failure; the last good set stays in force meanwhile.
    pub async fn refresh_forever(self: Arc<Self>) {
        let s = self.settings.clone();
        let interval = |set: &KeySet| {
            set.max_age
                .unwrap_or(s.jwks_refresh)
                .clamp(s.jwks_refresh_min, s.jwks_refresh_max)
        };
        let mut wait = interval(&self.current());
        loop {
            tokio::time::sleep(wait).await;
            let generation = self.current().generation;
            wait = match self.fetch_after(generation, Duration::ZERO).await {
                Ok(()) => interval(&self.current()),
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "JWKS refresh failed; keeping the last good keys");
                    s.jwks_min_refresh.max(Duration::from_secs(1))
                }
            };
        }
    }
}

fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// `max-age=N` from a Cache-Control value (RFC 9111 §5.2.2.1).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (name, arg) = directive.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| arg.trim_matches('"').parse().ok().map(Duration::from_secs))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_max_age() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("Max-Age=\"5\""), Some(Duration::from_secs(5)));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=x"), None);
    }
}
