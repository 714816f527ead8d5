//! [`CachedValidator`]: a bounded verdict cache in front of another validator.
//!
//! Keyed by the token's SHA-256, never the token. Active verdicts live until min(`exp` + leeway,
//! `max_ttl`), "expired" meaning what it means to the validators ([`Leeway`]); invalid ones for
//! `negative_ttl`; an active answer without `exp` is used once and not kept (as Anypoint does).
//! Concurrent misses for one token share one call to the inner validator (moka's `try_get_with`).
//! Provider failures are never cached; with `stale_if_error`, a token seen valid within that
//! window (and not expired) is still accepted while the provider fails, unless a verdict since
//! said otherwise: a verdict of invalid (revoked, say) replaces the stale copy with the refusal,
//! so an outage never brings a revoked token back; it keeps being refused with 401.
//!
//! In front of moka, each thread keeps its own copy of the verdicts it used lately ([`Recent`]),
//! never past moka's own expiry of them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use moka::Expiry;
use moka::future::Cache;
use thread_local::ThreadLocal;

use super::{
    BearerToken, Caller, InvalidReason, Leeway, Principal, TokenDigest, ValidateError, Validator,
};
use crate::clock::Clock;
use crate::config::CacheSettings;
use crate::measure;
use crate::provider::{ClientShare, ProviderError};

/// A cached verdict, how long it may be trusted, and so until when.
#[derive(Clone)]
struct Kept {
    verdict: Verdict,
    ttl: Duration,
    /// Taken before moka stamps the entry's creation, so never later than moka's expiry of it.
    until: Instant,
}

#[derive(Clone)]
enum Verdict {
    Active(Arc<Principal>),
    Invalid(InvalidReason),
}

impl Kept {
    fn new(verdict: Verdict, ttl: Duration) -> Self {
        Kept {
            verdict,
            ttl,
            // A lifetime past what an Instant can hold is kept by moka alone.
            until: Instant::now().checked_add(ttl).unwrap_or_else(Instant::now),
        }
    }

    /// A copy for one thread's [`Recent`], with a principal of its own: counting references to
    /// a shared one would write a cache line that every worker writes.
    fn for_thread(&self) -> Self {
        let verdict = match &self.verdict {
            Verdict::Active(p) => Verdict::Active(Arc::new(Principal::clone(p))),
            Verdict::Invalid(r) => Verdict::Invalid(*r),
        };
        Kept { verdict, ..*self }
    }
}

/// An answer shared by the waiters of one miss but not kept: an active token without `exp` (as
/// Anypoint does), a verdict that may change soon (an unknown key), or no verdict at all.
enum Uncached {
    Active(Arc<Principal>),
    Invalid(InvalidReason),
    Unavailable(ProviderError),
    Throttled(Duration),
}

/// Per-entry lifetime: each verdict carries its own.
struct VerdictExpiry;

impl Expiry<TokenDigest, Kept> for VerdictExpiry {
    fn expire_after_create(&self, _: &TokenDigest, value: &Kept, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The most verdicts of one cache that one thread keeps in its [`Recent`] (and no more than the
/// cache's `max_entries`).
const RECENT_PER_THREAD: u64 = 1024;

/// One thread's copy of the verdicts it found in moka lately. A hit served from it writes nothing
/// that another thread reads or writes. A hit in moka stamps its entry, logs the read for moka's
/// housekeeper and counts a reference to the principal; with the same token on both workers,
/// those cache lines crossed between the cores on every request.
///
/// Each entry ends at its [`Kept::until`], never later than moka's. An entry moka evicted early
/// to make room may still be used here until then: it is the verdict moka would have given.
/// When the table is full, expired entries go; if it is still full, it is emptied (the verdicts
/// are still in moka).
///
/// The table's hash is std's keyed one (SipHash with a random key per process), not the digest's
/// bytes as they are. A refused token's verdict is kept too, so a client chooses what goes in.
/// Finding tokens whose digests agree in the few bits that pick a table's slot takes only a
/// thousand or so tries each, offline. With a hash it cannot know, it cannot cluster its
/// entries and make every lookup on the thread walk them.
#[derive(Default)]
struct Recent {
    kept: HashMap<RecentKey, Kept>,
}

/// A digest as [`Recent`]'s key: its first eight bytes are hashed (the digest is uniform, so
/// they are as good as all 32), and all of it is compared.
#[derive(PartialEq, Eq)]
struct RecentKey(TokenDigest);

impl Hash for RecentKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.prefix());
    }
}

/// The last verdict on a token seen valid, for `stale_if_error`: what to say while the provider
/// fails, once the verdict itself has expired.
#[derive(Clone)]
enum Stale {
    Active(Arc<Principal>),
    /// Seen valid, then refused (revoked, say): it stays refused.
    Refused(InvalidReason),
}

struct StaleExpiry;

impl Expiry<TokenDigest, (Stale, Duration)> for StaleExpiry {
    fn expire_after_create(
        &self,
        _: &TokenDigest,
        value: &(Stale, Duration),
        _: Instant,
    ) -> Option<Duration> {
        Some(value.1)
    }
}

/// Caches the verdicts of an inner validator.
pub struct CachedValidator<V> {
    /// The `cache` label of its metrics.
    name: &'static str,
    /// The `provider` label of its metrics: each provider has its own caches.
    provider: String,
    inner: Arc<V>,
    verdicts: Cache<TokenDigest, Kept>,
    /// Each thread's copy of its recent hits, in front of `verdicts`.
    recent: ThreadLocal<RefCell<Recent>>,
    /// How many entries each thread's copy holds at most.
    recent_max: usize,
    /// The last verdict on tokens recently valid, for `stale_if_error` only.
    stale: Option<Cache<TokenDigest, (Stale, Duration)>>,
    settings: CacheSettings,
    /// The validators' clock skew: an entry lives as long as they would call the token unexpired.
    leeway: Leeway,
    clock: Arc<dyn Clock>,
    /// Each client address's share of misses, where misses cost a provider call.
    share: Option<Arc<ClientShare>>,
    /// The hit counter, found in the registry at the first hit (after the recorder is installed),
    /// not at every hit.
    hits: OnceLock<metrics::Counter>,
}

impl<V: Validator> CachedValidator<V> {
    pub fn new(
        name: &'static str,
        inner: V,
        settings: CacheSettings,
        leeway: Leeway,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let verdicts = Cache::builder()
            .max_capacity(settings.max_entries)
            .expire_after(VerdictExpiry)
            .build();
        let stale = (!settings.stale_if_error.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(settings.max_entries)
                .expire_after(StaleExpiry)
                .build()
        });
        CachedValidator {
            name,
            provider: String::new(),
            inner: Arc::new(inner),
            verdicts,
            recent: ThreadLocal::new(),
            recent_max: settings.max_entries.min(RECENT_PER_THREAD) as usize,
            stale,
            settings,
            leeway,
            clock,
            share: None,
            hits: OnceLock::new(),
        }
    }

    /// Counts each client address's misses against `share`: past it, a miss is refused
    /// ([`ValidateError::Throttled`]) and the inner validator is not asked.
    pub fn with_share(mut self, share: Option<Arc<ClientShare>>) -> Self {
        self.share = share;
        self
    }

    /// Labels its metrics with the name of the provider whose verdicts it holds.
    pub fn of_provider(mut self, name: &str) -> Self {
        self.provider = name.to_owned();
        self
    }

    /// Entries held now (approximate, as moka counts them).
    pub fn entry_count(&self) -> u64 {
        self.verdicts.entry_count()
    }

    async fn lookup(
        &self,
        token: &BearerToken,
        caller: Caller,
    ) -> Result<Arc<Principal>, ValidateError> {
        let digest = token.digest();
        let verdict = if let Some(kept) = self.recent_hit(digest) {
            self.count_hit();
            Ok(kept.verdict)
        } else {
            match self.verdicts.get(&digest).await {
                Some(kept) => {
                    self.count_hit();
                    self.remember(digest, &kept);
                    Ok(kept.verdict)
                }
                None => {
                    if let Some(share) = &self.share {
                        share
                            .admit(caller.client)
                            .map_err(ValidateError::Throttled)?;
                    }
                    // The miss path's state (the inner validator's call) is large: boxed apart,
                    // so that a hit, the common case, moves and allocates only its own small
                    // future.
                    let filled = Box::pin(self.fill(token, caller, digest)).await;
                    if let Ok(kept) = &filled {
                        self.remember(digest, kept);
                    }
                    filled.map(|kept| kept.verdict)
                }
            }
        };
        let now = self.clock.now_unix();
        match verdict {
            // The entry never outlives `exp`, but moka's clock is coarse: check again.
            Ok(Verdict::Active(p)) if p.expires_at.is_some_and(|e| self.leeway.expired(e, now)) => {
                Err(ValidateError::Invalid(InvalidReason::Expired))
            }
            Ok(Verdict::Active(p)) => Ok(p),
            Ok(Verdict::Invalid(r)) => Err(ValidateError::Invalid(r)),
            Err(uncached) => match &*uncached {
                Uncached::Active(p) => Ok(p.clone()),
                Uncached::Invalid(r) => Err(ValidateError::Invalid(*r)),
                Uncached::Unavailable(e) => Box::pin(self.stale_or(digest, now, e)).await,
                Uncached::Throttled(wait) => Err(ValidateError::Throttled(*wait)),
            },
        }
    }

    fn count_hit(&self) {
        self.hits
            .get_or_init(|| {
                metrics::counter!(measure::CACHE_LOOKUPS, "cache" => self.name, "provider" => self.provider.clone(), "result" => "hit")
            })
            .increment(1);
    }

    /// This thread's unexpired copy of the verdict on `digest`, if it kept one.
    fn recent_hit(&self, digest: TokenDigest) -> Option<Kept> {
        let mut recent = self.recent.get()?.borrow_mut();
        let key = RecentKey(digest);
        let kept = recent.kept.get(&key)?;
        if kept.until > Instant::now() {
            return Some(kept.clone());
        }
        recent.kept.remove(&key);
        None
    }

    /// Keeps this thread's copy of a verdict moka holds.
    fn remember(&self, digest: TokenDigest, kept: &Kept) {
        if self.recent_max == 0 {
            return;
        }
        let mut recent = self.recent.get_or_default().borrow_mut();
        if recent.kept.len() >= self.recent_max {
            let now = Instant::now();
            recent.kept.retain(|_, k| k.until > now);
            if recent.kept.len() >= self.recent_max {
                recent.kept.clear();
            }
        }
        recent.kept.insert(RecentKey(digest), kept.for_thread());
    }

    /// A miss: the first waiter asks the inner validator; the others wait for its answer.
    async fn fill(
        &self,
        token: &BearerToken,
        caller: Caller,
        digest: TokenDigest,
    ) -> Result<Kept, Arc<Uncached>> {
        let asked = AtomicBool::new(false);
        let verdict = self
            .verdicts
            .try_get_with(digest, async {
                asked.store(true, Ordering::Relaxed);
                self.ask_inner(token, caller, digest).await
            })
            .await;
        let result = if asked.load(Ordering::Relaxed) {
            "miss"
        } else {
            "coalesced"
        };
        metrics::counter!(measure::CACHE_LOOKUPS, "cache" => self.name, "provider" => self.provider.clone(), "result" => result)
            .increment(1);
        metrics::gauge!(measure::CACHE_ENTRIES, "cache" => self.name, "provider" => self.provider.clone())
            .set(self.verdicts.entry_count() as f64);
        verdict
    }

    /// The miss path: one call per token however many requests wait on it. What must not be kept
    /// leaves as `Err`, which moka hands to every waiter without inserting it.
    async fn ask_inner(
        &self,
        token: &BearerToken,
        caller: Caller,
        digest: TokenDigest,
    ) -> Result<Kept, Uncached> {
        match self.inner.validate(token, caller).await {
            Ok(principal) => {
                let Some(exp) = principal.expires_at else {
                    return Err(Uncached::Active(principal));
                };
                let left = self.leeway.remaining(exp, self.clock.now_unix());
                let ttl = left.min(self.settings.max_ttl);
                if let Some(stale) = &self.stale {
                    let window = (ttl + self.settings.stale_if_error).min(left);
                    let entry = (Stale::Active(principal.clone()), window);
                    stale.insert(digest, entry).await;
                }
                Ok(Kept::new(Verdict::Active(principal), ttl))
            }
            Err(ValidateError::Invalid(reason)) => {
                self.forget_stale(digest, reason).await;
                if reason.cacheable() {
                    Ok(Kept::new(
                        Verdict::Invalid(reason),
                        self.settings.negative_ttl,
                    ))
                } else {
                    Err(Uncached::Invalid(reason))
                }
            }
            Err(ValidateError::Unavailable(e)) => Err(Uncached::Unavailable(e)),
            // An inner cache's refusal of another caller's miss is not this token's verdict.
            Err(ValidateError::Throttled(wait)) => Err(Uncached::Throttled(wait)),
        }
    }

    /// A verdict, unlike an outage, outranks what was seen before: the token may have been revoked
    /// since, and `stale_if_error` must not bring it back. A token seen valid keeps the refusal
    /// instead (only such tokens: garbage must not crowd out the valid ones); a refusal that may
    /// change soon (an unknown key) just drops the stale copy.
    async fn forget_stale(&self, digest: TokenDigest, reason: InvalidReason) {
        let Some(stale) = &self.stale else {
            return;
        };
        if !stale.contains_key(&digest) {
            return;
        }
        if reason.cacheable() {
            let window = self.settings.negative_ttl + self.settings.stale_if_error;
            stale.insert(digest, (Stale::Refused(reason), window)).await;
        } else {
            stale.invalidate(&digest).await;
        }
    }

    async fn stale_or(
        &self,
        digest: TokenDigest,
        now: u64,
        error: &ProviderError,
    ) -> Result<Arc<Principal>, ValidateError> {
        let recent = match &self.stale {
            Some(stale) => stale.get(&digest).await,
            None => None,
        };
        match recent {
            Some((Stale::Active(p), _))
                if p.expires_at.is_some_and(|e| !self.leeway.expired(e, now)) =>
            {
                tracing::warn!(error = %error, "provider failing: accepting a recently valid token (stale_if_error)");
                Ok(p)
            }
            Some((Stale::Refused(reason), _)) => Err(ValidateError::Invalid(reason)),
            Some((Stale::Active(_), _)) | None => Err(ValidateError::Unavailable(error.clone())),
        }
    }
}

impl<V: Validator> Validator for CachedValidator<V> {
    fn validate<'a>(
        &'a self,
        token: &'a BearerToken,
        caller: Caller,
    ) -> BoxFuture<'a, Result<Arc<Principal>, ValidateError>> {
        self.lookup(token, caller).boxed()
    }
}

#[cfg(test)]
mod tests;
