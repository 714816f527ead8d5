//! An API's upstream endpoints as the request path sees them: which one a request goes to, and
//! which ones are resting after failing to connect (passive health). Built once per API when the
//! config is compiled; its counters are atomics shared by every worker, so a failure one worker
//! sees steers the others away too.
//!
//! With one endpoint (the common case) picking is a field read: no clock, no counter.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::HeaderValue;
use http::uri::{Authority, Scheme};
use metrics::Counter;

use crate::config::UpstreamBalance;

/// The first rest of an endpoint that failed to connect; it doubles while the endpoint keeps
/// failing, up to [`MAX_EJECTION`].
const FIRST_EJECTION: Duration = Duration::from_secs(5);
const MAX_EJECTION: Duration = Duration::from_secs(60);

/// One upstream address of an API.
pub struct Endpoint {
    pub authority: Authority,
    /// `Host` for HTTP/1.1 requests to it, rendered once.
    pub host: HeaderValue,
    /// Which pooled connections may carry its requests: equal keys mean equal scheme, address,
    /// protocol and TLS settings, so no connection made for one trust setting serves another.
    pub(super) key: std::sync::Arc<str>,
    /// The name the upstream's certificate is verified against (and sent as SNI).
    pub(super) server_name: Option<rustls_pki_types::ServerName<'static>>,
    in_flight: AtomicUsize,
    /// Connect failures in a row.
    failures: AtomicU32,
    /// Milliseconds since [`epoch`] until which the endpoint rests; 0: it does not.
    ejected_until: AtomicU64,
    requests: OnceLock<Counter>,
    api: std::sync::Arc<str>,
}

/// How requests spread over the endpoints.
pub(super) struct Picker {
    balance: UpstreamBalance,
    next: AtomicUsize,
}

/// Counts a request as in flight at its endpoint until dropped (least-request balancing).
pub struct InFlight<'a>(Option<&'a Endpoint>);

// === impl Endpoint ===

impl Endpoint {
    pub(super) fn new(
        api: std::sync::Arc<str>,
        authority: Authority,
        host: HeaderValue,
        key: String,
        server_name: Option<rustls_pki_types::ServerName<'static>>,
    ) -> Self {
        Endpoint {
            authority,
            host,
            key: key.into(),
            server_name,
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            requests: OnceLock::new(),
            api,
        }
    }

    /// Made on first use: the metrics recorder is installed after the config is compiled.
    pub(super) fn count_request(&self) {
        self.requests
            .get_or_init(|| {
                metrics::counter!(crate::measure::UPSTREAM_REQUESTS, "api" => self.api.to_string(), "endpoint" => self.authority.to_string())
            })
            .increment(1);
    }

    fn resting(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ms
    }

    /// A connection was made: the endpoint is healthy again. A load first, so the common case
    /// writes nothing shared.
    pub(super) fn connected(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// A connect failure at `endpoints[failed]`: it rests for a while, unless it is the last one
/// not resting (then requests keep trying it: a resting pool of one helps nobody).
pub(super) fn connect_failed(endpoints: &[Endpoint], failed: usize, scheme: &Scheme) {
    let Some(endpoint) = endpoints.get(failed) else {
        return;
    };
    let failures = endpoint.failures.fetch_add(1, Ordering::Relaxed) + 1;
    let now = now_ms();
    let others_up = endpoints
        .iter()
        .enumerate()
        .any(|(i, e)| i != failed && !e.resting(now));
    if !others_up {
        return;
    }
    let rest = FIRST_EJECTION
        .saturating_mul(1u32 << (failures - 1).min(8))
        .min(MAX_EJECTION);
    endpoint
        .ejected_until
        .store(now + rest.as_millis() as u64, Ordering::Relaxed);
    metrics::counter!(crate::measure::UPSTREAM_EJECTIONS, "api" => endpoint.api.to_string(), "endpoint" => endpoint.authority.to_string()).increment(1);
    tracing::warn!(
        api = %endpoint.api,
        endpoint = %format_args!("{scheme}://{}", endpoint.authority),
        rest_seconds = rest.as_secs(),
        "upstream endpoint failed to connect; resting it"
    );
}

// === impl Picker ===

impl Picker {
    pub(super) fn new(balance: UpstreamBalance) -> Self {
        Picker {
            balance,
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoint for a request, never `avoid` (an endpoint that just failed it) when another
    /// exists. Resting endpoints are skipped unless all rest.
    pub(super) fn pick(&self, endpoints: &[Endpoint], avoid: Option<usize>) -> usize {
        if endpoints.len() == 1 {
            return 0;
        }
        let now = now_ms();
        let usable = |i: &usize| Some(*i) != avoid && !endpoints[*i].resting(now);
        let healthy = (0..endpoints.len()).filter(usable).count();
        let candidates: &dyn Fn(&usize) -> bool = if healthy > 0 {
            &usable
        } else {
            &|i: &usize| Some(*i) != avoid
        };
        let count = (0..endpoints.len()).filter(candidates).count().max(1);
        let nth = |n: usize| {
            (0..endpoints.len())
                .filter(candidates)
                .nth(n % count)
                .unwrap_or(0)
        };
        match self.balance {
            UpstreamBalance::RoundRobin => nth(self.next.fetch_add(1, Ordering::Relaxed)),
            // Power of two choices (Mitzenmacher): two at random, the one with fewer requests
            // in flight; as good as the least loaded of all, without a scan or a shared lock.
            UpstreamBalance::LeastRequest => {
                let (a, b) = (nth(random()), nth(random()));
                let load = |i: usize| endpoints[i].in_flight.load(Ordering::Relaxed);
                if load(b) < load(a) { b } else { a }
            }
        }
    }
}

// === impl InFlight ===

impl<'a> InFlight<'a> {
    /// Counts only when there is a choice to make.
    pub(super) fn new(endpoints: &'a [Endpoint], index: usize) -> Self {
        if endpoints.len() < 2 {
            return InFlight(None);
        }
        let endpoint = endpoints.get(index);
        if let Some(e) = endpoint {
            e.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        InFlight(endpoint)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.0 {
            e.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Milliseconds since the first call in this process (1: never 0, which means "not resting").
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// A per-thread xorshift: balancing needs spread, not secrecy.
fn random() -> usize {
    static SEED: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    thread_local! {
        // Each thread starts from its own point of one Weyl sequence: distinct, never zero.
        static STATE: Cell<u64> =
            Cell::new(SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as usize
    })
}
