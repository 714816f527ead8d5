//! The provider's signing keys (RFC 7517 JWKS): fetched once the endpoints are known, refreshed on
//! an interval that honours `Cache-Control: max-age` within configured bounds, and refetched for an
//! unknown `kid`. Only public signature keys are kept: symmetric (`oct`) and encryption keys never
//! are.
//!
//! Request-driven fetches start at most once per `jwks_min_refresh`, so a flood of made-up kids
//! costs the provider one fetch per interval. A request with an unknown `kid` waits for the next
//! fetch that starts after it arrived (sharing it with every other waiter) rather than being
//! refused: a key the provider has just published is never answered with 401, whoever spent the
//! last fetch. The wait is bounded by the interval plus `request_timeout`, and the waiters by
//! [`MAX_KEY_WAITERS`]. A failed fetch is shared too: everyone waiting on it, and everyone who asks
//! within the interval after it, gets the failure (503) at once. A failed fetch keeps the last good
//! set, so known kids keep working through an outage.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use url::Url;

use super::{ProviderError, ProviderHttp};
use crate::config::JwtSettings;

/// Requests that may wait at once for a refetch on an unknown `kid`; past it they get 503 (`Busy`).
/// Each waiter is one parked request (a few hundred bytes), so the cap bounds memory, not the
/// provider's load (that is one fetch per interval whatever the number of waiters).
pub const MAX_KEY_WAITERS: usize = 1024;

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
    /// The provider's name: the metrics' `provider` label.
    provider: String,
    settings: JwtSettings,
    /// The provider call's own bound; with `jwks_min_refresh` it bounds a wait for a refetch.
    request_timeout: Duration,
    keys: RwLock<Arc<KeySet>>,
    attempts: Mutex<Attempts>,
    waiters: Waiters,
}

/// Who asks for a fetch: requests are throttled and fail fast after a failure; the periodic
/// refresh paces itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Request,
    Refresh,
}

/// The outcome of one fetch, awaited by any number of callers.
type Outcome = Shared<BoxFuture<'static, Result<(), ProviderError>>>;

/// One JWKS fetch, scheduled or under way.
#[derive(Clone)]
struct Attempt {
    id: u64,
    /// The fetch does not start before this.
    start_at: Instant,
    outcome: Outcome,
}

/// The fetch schedule; the lock is never held across an await.
#[derive(Default)]
struct Attempts {
    last_id: u64,
    pending: Option<Attempt>,
    /// When the last fetch started, or the last failed one ended: the throttle counts from here, so
    /// after a failure requests get it at once for a whole interval.
    throttle_from: Option<Instant>,
    /// The last finished fetch's failure (`None` after a success).
    last_failure: Option<ProviderError>,
}

/// Counts the requests waiting for a refetch, up to a cap.
struct Waiters {
    count: AtomicUsize,
    cap: usize,
}

/// One place among the waiters, given back on drop (also when the request is cancelled).
struct WaiterSlot<'a>(&'a AtomicUsize);

// === impl JwksCache ===

impl JwksCache {
    pub fn new(
        http: ProviderHttp,
        url: Url,
        provider: &str,
        settings: JwtSettings,
        request_timeout: Duration,
    ) -> Self {
        JwksCache {
            http,
            url,
            provider: provider.to_owned(),
            settings,
            request_timeout,
            keys: RwLock::new(Arc::new(KeySet::default())),
            attempts: Mutex::new(Attempts::default()),
            waiters: Waiters::new(MAX_KEY_WAITERS),
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

    /// Loads the set if none is loaded yet: one fetch however many callers wait, and its failure
    /// is theirs too (as it is for anyone asking within `jwks_min_refresh` after it).
    pub async fn ensure_loaded(self: &Arc<Self>) -> Result<Arc<KeySet>, ProviderError> {
        let seen = self.current();
        if !seen.keys.is_empty() {
            return Ok(seen);
        }
        let attempt = self.next_attempt(Trigger::Request)?;
        self.settle(attempt).await?;
        Ok(self.current())
    }

    /// The key for `kid` and `alg`. An unknown `kid` waits (boundedly) for a fetch that started
    /// after this call, then answers from it: `Unknown` only once the provider has been asked.
    pub async fn key_for(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<KeyLookup, ProviderError> {
        let arrival = Instant::now();
        let set = self.ensure_loaded().await?;
        let found = set.lookup(kid, alg);
        if !matches!(found, KeyLookup::Unknown) {
            return Ok(found);
        }
        let _slot = self.waiters.enter().ok_or(ProviderError::Busy)?;
        // The next request-driven fetch starts within the interval and lasts at most the timeout.
        let bound = self
            .settings
            .jwks_min_refresh
            .saturating_add(self.request_timeout);
        let remaining = bound.saturating_sub(arrival.elapsed());
        tokio::time::timeout(remaining, self.wait_for_kid(arrival, kid, alg))
            .await
            .map_err(|_| ProviderError::Timeout)?
    }

    async fn wait_for_kid(
        self: &Arc<Self>,
        arrival: Instant,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<KeyLookup, ProviderError> {
        loop {
            let attempt = self.next_attempt(Trigger::Request)?;
            let fresh = attempt.start_at >= arrival;
            let outcome = self.settle(attempt).await;
            let found = self.current().lookup(kid, alg);
            if !matches!(found, KeyLookup::Unknown) {
                return Ok(found);
            }
            if fresh {
                return outcome.map(|()| KeyLookup::Unknown);
            }
            // That fetch started before this request arrived, so it may predate the key: the
            // next one decides (or, if it failed, the failure stands for the interval).
        }
    }

    /// The fetch to wait for: the one pending, else a new one. Requests start one no sooner than
    /// `jwks_min_refresh` after the last, and within that interval after a failure get the
    /// failure rather than a fetch.
    fn next_attempt(self: &Arc<Self>, trigger: Trigger) -> Result<Attempt, ProviderError> {
        let mut attempts = self.lock_attempts();
        if let Some(pending) = &attempts.pending {
            return Ok(pending.clone());
        }
        let now = Instant::now();
        if trigger == Trigger::Refresh {
            return Ok(self.schedule(&mut attempts, now));
        }
        // The config caps the interval at a minute, so the sum cannot overflow; if it did, no
        // throttle is better than a panic.
        let interval = self.settings.jwks_min_refresh;
        let opens = attempts
            .throttle_from
            .map_or(now, |start| start.checked_add(interval).unwrap_or(now));
        if let Some(failure) = attempts.last_failure.as_ref().filter(|_| now < opens) {
            return Err(failure.clone());
        }
        Ok(self.schedule(&mut attempts, opens.max(now)))
    }

    /// Spawns the fetch, so it runs to its end even if every waiter gives up (a cancelled request
    /// must not cancel the others' fetch, nor leave the schedule stuck).
    fn schedule(self: &Arc<Self>, attempts: &mut Attempts, start_at: Instant) -> Attempt {
        attempts.last_id += 1;
        let id = attempts.last_id;
        let this = self.clone();
        // On the provider's I/O runtime: no worker's exit can cut a fetch others wait for.
        let task = self.http.run(async move {
            tokio::time::sleep_until(start_at.into()).await;
            this.lock_attempts().throttle_from = Some(Instant::now());
            let outcome = this.fetch_and_install().await;
            this.finish(id, &outcome);
            outcome
        });
        let outcome = task
            .map(|joined| {
                joined.unwrap_or_else(|e| {
                    Err(ProviderError::Unreachable(format!(
                        "the JWKS fetch was cut off: {e}"
                    )))
                })
            })
            .boxed()
            .shared();
        let attempt = Attempt {
            id,
            start_at,
            outcome,
        };
        attempts.pending = Some(attempt.clone());
        attempt
    }

    /// Waits for `attempt` and makes sure the schedule knows it ended (the task does it itself
    /// unless its runtime cut it off).
    async fn settle(&self, attempt: Attempt) -> Result<(), ProviderError> {
        let outcome = attempt.outcome.await;
        self.finish(attempt.id, &outcome);
        outcome
    }

    fn finish(&self, id: u64, outcome: &Result<(), ProviderError>) {
        let mut attempts = self.lock_attempts();
        if attempts.pending.as_ref().is_some_and(|p| p.id == id) {
            attempts.pending = None;
            attempts.last_failure = outcome.as_ref().err().cloned();
            if attempts.last_failure.is_some() {
                attempts.throttle_from = Some(Instant::now());
            }
        }
    }

    fn lock_attempts(&self) -> MutexGuard<'_, Attempts> {
        match self.attempts.lock() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    async fn fetch_and_install(&self) -> Result<(), ProviderError> {
        let fetched = self.fetch().await;
        let outcome = match &fetched {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        metrics::counter!(crate::measure::JWKS_FETCHES, "provider" => self.provider.clone(), "outcome" => outcome)
            .increment(1);
        let (keys, max_age) = fetched?;
        let new = Arc::new(KeySet { keys, max_age });
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
            let refreshed = match self.next_attempt(Trigger::Refresh) {
                Ok(attempt) => self.settle(attempt).await,
                Err(e) => Err(e),
            };
            wait = match refreshed {
                Ok(()) => interval(&self.current()),
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "JWKS refresh failed; keeping the last good keys");
                    s.jwks_min_refresh.max(Duration::from_secs(1))
                }
            };
        }
    }
}

// === impl Waiters ===

impl Waiters {
    fn new(cap: usize) -> Self {
        Waiters {
            count: AtomicUsize::new(0),
            cap,
        }
    }

    /// A place among the waiters, or `None` when all `cap` are taken.
    fn enter(&self) -> Option<WaiterSlot<'_>> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .ok()
            .map(|_| WaiterSlot(&self.count))
    }
}

impl Drop for WaiterSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
    fn waiters_are_capped_and_places_come_back() {
        let waiters = Waiters::new(2);
        let a = waiters.enter();
        let b = waiters.enter();
        assert!(a.is_some() && b.is_some());
        assert!(
            waiters.enter().is_none(),
            "the third waiter is over the cap"
        );
        drop(a);
        assert!(
            waiters.enter().is_some(),
            "a place given back is usable again"
        );
    }

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
