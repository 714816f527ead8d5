//! The provider's call budget, per process: how many introspection calls may be in flight, how
//! many per second, and what the provider itself says is left (Okta's `X-Rate-Limit-*` headers).
//! A provider's rate limit is shared by every application of its tenant, so a spray of random
//! tokens must not be able to spend it: a cache miss that finds no budget waits a short, bounded
//! time, then fails closed (503 with `Retry-After`); cached tokens never come here.
//!
//! [`ClientShare`] is the per-address part: each client address's share of introspection-cache
//! misses, checked before the provider is asked, so one sprayer cannot starve other clients' new
//! tokens.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::ProviderError;
use crate::clock::Clock;
use crate::config::{BudgetSettings, Rate};
use crate::measure;

/// The budget of one provider's introspection calls.
pub struct Budget {
    inflight: Semaphore,
    rate: Option<DefaultDirectRateLimiter>,
    wait: Duration,
    low_water: u64,
    /// Set while the provider has asked us to stop (a 429, or too little left in its window).
    closed_until: Mutex<Option<Instant>>,
    clock: Arc<dyn Clock>,
    /// The provider's name: its metrics' `provider` label.
    provider: String,
}

/// Longest pause the provider's headers can impose: a wrong `X-Rate-Limit-Reset` (a clock far
/// off) must not stop validation for hours.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// The pause after a 429 that says nothing of when to come back.
const DEFAULT_PAUSE: Duration = Duration::from_secs(5);

impl Budget {
    pub fn new(settings: &BudgetSettings, clock: Arc<dyn Clock>) -> Self {
        Budget {
            inflight: Semaphore::new(settings.max_inflight),
            rate: settings
                .rate
                .map(|(rate, burst)| RateLimiter::direct(quota(rate).allow_burst(burst))),
            wait: settings.wait,
            low_water: settings.low_water,
            closed_until: Mutex::new(None),
            clock,
            provider: String::new(),
        }
    }

    /// The same budget, its metrics labelled with the provider's name.
    pub fn of_provider(self, name: &str) -> Self {
        Budget {
            provider: name.to_owned(),
            ..self
        }
    }

    /// Waits (at most `budget_wait`) for room for one call; the permit is the call's slot.
    pub async fn admit(&self) -> Result<SemaphorePermit<'_>, ProviderError> {
        if let Some(left) = self.paused_for() {
            return Err(self.refused(
                "provider_limit",
                ProviderError::RateLimited {
                    retry_after: Some(left),
                },
            ));
        }
        let deadline = Instant::now() + self.wait;
        if let Some(rate) = &self.rate {
            // Rate before slot: a miss waiting for its turn must not hold a slot meanwhile.
            while let Err(not_until) = rate.check() {
                let turn = Instant::now() + not_until.wait_time_from(DefaultClock::default().now());
                if turn > deadline {
                    return Err(self.refused("rate", ProviderError::Exhausted));
                }
                tokio::time::sleep_until(turn).await;
            }
        }
        match tokio::time::timeout_at(deadline, self.inflight.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // Err(_) from `acquire` only if the semaphore were closed; it never is.
            Ok(Err(_)) | Err(_) => Err(self.refused("inflight", ProviderError::Exhausted)),
        }
    }

    /// Reads the provider's rate-limit headers (Okta: `X-Rate-Limit-Limit`, `-Remaining`, and
    /// `-Reset`, the Unix time its window resets) on any answer. On a 429, or when fewer than the
    /// low-water mark are left, calls stop until the reset. Returns the pause, if one began.
    pub fn observe(&self, status: u16, headers: &HeaderMap) -> Option<Duration> {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let limit = number("x-rate-limit-limit");
        let remaining = number("x-rate-limit-remaining");
        if let Some(limit) = limit {
            metrics::gauge!(measure::PROVIDER_RATE_LIMIT, "provider" => self.provider.clone())
                .set(limit as f64);
        }
        if let Some(remaining) = remaining {
            metrics::gauge!(measure::PROVIDER_RATE_REMAINING, "provider" => self.provider.clone())
                .set(remaining as f64);
        }
        let until_reset = number("x-rate-limit-reset")
            .map(|reset| Duration::from_secs(reset.saturating_sub(self.clock.now_unix())));
        let retry_after = number("retry-after").map(Duration::from_secs);
        // A small window (a limit of 10) must not leave us closed for good: the mark is at most
        // half of it.
        let low_water = limit.map_or(self.low_water, |l| self.low_water.min(l / 2));
        let pause = if status == 429 {
            Some(retry_after.or(until_reset).unwrap_or(DEFAULT_PAUSE))
        } else if remaining.is_some_and(|r| r < low_water) {
            until_reset
        } else {
            None
        }?;
        let pause = pause.clamp(Duration::from_secs(1), MAX_PAUSE);
        self.pause(pause);
        Some(pause)
    }

    fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut closed = lock(&self.closed_until);
        if closed.is_none_or(|c| c < until) {
            tracing::warn!(
                provider = %self.provider,
                pause_secs = pause.as_secs(),
                "the provider's rate limit is (nearly) spent: no introspection calls until its window resets"
            );
            *closed = Some(until);
        }
    }

    fn refused(&self, reason: &'static str, error: ProviderError) -> ProviderError {
        metrics::counter!(measure::PROVIDER_BUDGET_REFUSALS, "provider" => self.provider.clone(), "reason" => reason)
            .increment(1);
        error
    }

    /// How long calls are still paused for, if they are.
    fn paused_for(&self) -> Option<Duration> {
        let mut closed = lock(&self.closed_until);
        let left = (*closed)?.checked_duration_since(Instant::now());
        if left.is_none() {
            *closed = None;
        }
        left
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A GCRA quota of `rate`, one period's worth of burst unless told otherwise.
fn quota(rate: Rate) -> Quota {
    // `with_period` refuses a zero interval (over a billion a second, in whole nanoseconds); a
    // per-second quota of the same count is then the same rate.
    Quota::with_period(rate.interval())
        .unwrap_or_else(|| Quota::per_second(rate.count))
        .allow_burst(rate.count)
}

/// Each client address's share of introspection-cache misses. IPv6 clients are counted per /64:
/// one host usually holds a whole /64, so per-address counting would give it 2^64 shares.
pub struct ClientShare {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU32,
}

/// How often (in checks) the addresses back at a full share are forgotten, which bounds the map
/// by the addresses seen within about one period.
const FORGET_EVERY: u32 = 1024;

impl ClientShare {
    pub fn new(rate: Rate) -> Self {
        ClientShare {
            limiter: RateLimiter::keyed(quota(rate)),
            checks: AtomicU32::new(0),
        }
    }

    /// One miss for `client`: `Err` with the wait until its next one when its share is spent.
    pub fn admit(&self, client: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == 0 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&share_key(client))
            .map_err(|not_until| {
                metrics::counter!(measure::CLIENT_MISSES_REFUSED).increment(1);
                not_until.wait_time_from(DefaultClock::default().now())
            })
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

fn share_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::clock::SystemClock;

    fn settings(max_inflight: usize, rate: Option<&str>, burst: u32) -> BudgetSettings {
        BudgetSettings {
            max_inflight,
            rate: rate.map(|r| (r.parse().unwrap(), NonZeroU32::new(burst).unwrap())),
            misses_per_client: None,
            wait: Duration::from_millis(50),
            low_water: 10,
        }
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn slots_are_capped_and_a_waiter_gives_up_after_budget_wait() {
        let budget = Budget::new(&settings(2, None, 1), Arc::new(SystemClock));
        let a = budget.admit().await.unwrap();
        let _b = budget.admit().await.unwrap();
        assert_eq!(budget.admit().await.unwrap_err(), ProviderError::Exhausted);
        drop(a);
        assert!(budget.admit().await.is_ok(), "a freed slot is taken again");
    }

    #[tokio::test]
    async fn the_rate_allows_its_burst_then_waits_for_a_turn() {
        let budget = Budget::new(&settings(100, Some("1/h"), 3), Arc::new(SystemClock));
        for _ in 0..3 {
            assert!(budget.admit().await.is_ok());
        }
        assert_eq!(budget.admit().await.unwrap_err(), ProviderError::Exhausted);
        // 50/s: the next turn is 20 ms away, within the 50 ms wait.
        let budget = Budget::new(&settings(100, Some("50/s"), 1), Arc::new(SystemClock));
        assert!(budget.admit().await.is_ok());
        assert!(budget.admit().await.is_ok(), "waited for its turn");
    }

    #[tokio::test]
    async fn the_providers_headers_pause_calls_until_its_window_resets() {
        let clock = Arc::new(SystemClock);
        let budget = Budget::new(&settings(4, None, 1), clock.clone());
        let reset = clock.now_unix() + 30;
        let plenty = headers(&[
            ("x-rate-limit-limit", "600".into()),
            ("x-rate-limit-remaining", "400".into()),
            ("x-rate-limit-reset", reset.to_string()),
        ]);
        assert_eq!(budget.observe(200, &plenty), None);
        assert!(budget.admit().await.is_ok());
        let low = headers(&[
            ("x-rate-limit-limit", "600".into()),
            ("x-rate-limit-remaining", "9".into()),
            ("x-rate-limit-reset", reset.to_string()),
        ]);
        let pause = budget.observe(200, &low).unwrap();
        assert!(pause > Duration::from_secs(28) && pause <= Duration::from_secs(30));
        match budget.admit().await.unwrap_err() {
            ProviderError::RateLimited {
                retry_after: Some(left),
            } => assert!(left <= pause),
            other => panic!("{other:?}"),
        }
        // A 429 without headers pauses too; a far-off reset is capped.
        let fresh = Budget::new(&settings(4, None, 1), clock.clone());
        assert_eq!(fresh.observe(429, &HeaderMap::new()), Some(DEFAULT_PAUSE));
        let far = headers(&[(
            "x-rate-limit-reset",
            (clock.now_unix() + 86_400).to_string(),
        )]);
        assert_eq!(fresh.observe(429, &far), Some(MAX_PAUSE));
        // A window smaller than the mark does not close for good.
        let tiny = headers(&[
            ("x-rate-limit-limit", "10".into()),
            ("x-rate-limit-remaining", "6".into()),
            ("x-rate-limit-reset", reset.to_string()),
        ]);
        assert_eq!(
            Budget::new(&settings(4, None, 1), clock).observe(200, &tiny),
            None
        );
    }

    #[test]
    fn each_address_has_its_share_and_an_ipv6_host_has_one_for_its_64() {
        let share = ClientShare::new("2/h".parse().unwrap());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(share.admit(a).is_ok());
        assert!(share.admit(a).is_ok());
        let wait = share.admit(a).unwrap_err();
        assert!(wait > Duration::from_secs(1000), "{wait:?}");
        assert!(share.admit(b).is_ok(), "another address is not affected");
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(share.admit(v6("2001:db8::1")).is_ok());
        assert!(share.admit(v6("2001:db8::ffff:2")).is_ok());
        assert!(share.admit(v6("2001:db8::3")).is_err(), "same /64");
        assert!(share.admit(v6("2001:db8:0:1::1")).is_ok(), "next /64");
    }
}
