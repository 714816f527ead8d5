//! Metrics, in Prometheus' text format on the admin listener's `/metrics`: the names in one place
//! and the recorder installed once. Recording sites call the `metrics` macros with these names.
//!
//! - `tollgate_requests_total{api,decision,reason,status}`
//! - `tollgate_request_duration_seconds{api}`: whole requests, as the client sees them (head)
//! - `tollgate_own_duration_seconds{api}`: the same minus the upstream's time: tollgate's own share
//! - `tollgate_introspection_requests_total{outcome}`, `tollgate_introspection_duration_seconds`
//! - `tollgate_jwks_fetches_total{outcome}`
//! - `tollgate_cache_lookups_total{cache,result}` (`hit`, `miss`, `coalesced`), `tollgate_cache_entries{cache}`
//! - `tollgate_upstream_errors_total{api,kind}`
//! - `tollgate_upstream_requests_total{api,endpoint}`: requests sent to each upstream endpoint (a
//!   retry counts again); `tollgate_upstream_ejections_total{api,endpoint}`: times an endpoint
//!   that failed to connect was rested
//! - `tollgate_config_reloads_total{outcome}`
//! - `tollgate_connections_closed_total{reason}`: connections the gateway ended itself (a deadline
//!   passed, a cap was reached, or a connection that had not started gave its slot to a newer one)
//! - `tollgate_provider_rate_limit`, `tollgate_provider_rate_limit_remaining`: the provider's own
//!   rate-limit window as its last answer told it (Okta's `X-Rate-Limit-Limit` and `-Remaining`)
//! - `tollgate_provider_budget_refusals_total{reason}`: cache misses answered 503 without a call
//!   (`inflight`: `max_inflight` calls were under way; `rate`: `introspection_rate` was spent;
//!   `provider_limit`: the provider's window is spent until it resets)
//! - `tollgate_client_misses_refused_total`: cache misses answered 429 because the client address
//!   had used its `misses_per_client` share
//! - `tollgate_registry_index_age_seconds`: since the registry store last confirmed the contract
//!   index; `tollgate_registry_contracts`: approved contracts in it; `tollgate_registry_revision`:
//!   the store revision it was built from (gateways sharing a store converge on one value)
//! - `tollgate_tls_handshake_failures_total{reason}`: TLS handshakes on the gateway listener that
//!   failed (`incompatible`: e.g. TLS 1.1 only; `no_client_certificate`, `bad_client_certificate`,
//!   `unknown_server_name`, `eof`, ...); `tollgate_tls_reload_failures_total`: changed certificate,
//!   key or CA files that were not usable (the running ones stayed);
//!   `tollgate_tls_certificate_expiry_seconds{name}`: until each listener certificate's notAfter
//!   (`name`: its key path, `listen.tls` or `listen.tls.certificate[i]`)
//! - `tollgate_log_lines_dropped_total`: log lines dropped because standard output was not keeping
//!   up (read from the log writer when `/metrics` is scraped)

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rustc_hash::FxHashMap;

pub const REQUESTS: &str = "tollgate_requests_total";
pub const REQUEST_DURATION: &str = "tollgate_request_duration_seconds";
pub const OWN_DURATION: &str = "tollgate_own_duration_seconds";
pub const INTROSPECTIONS: &str = "tollgate_introspection_requests_total";
pub const INTROSPECTION_DURATION: &str = "tollgate_introspection_duration_seconds";
pub const JWKS_FETCHES: &str = "tollgate_jwks_fetches_total";
pub const CACHE_LOOKUPS: &str = "tollgate_cache_lookups_total";
pub const CACHE_ENTRIES: &str = "tollgate_cache_entries";
pub const UPSTREAM_ERRORS: &str = "tollgate_upstream_errors_total";
pub const UPSTREAM_REQUESTS: &str = "tollgate_upstream_requests_total";
pub const UPSTREAM_EJECTIONS: &str = "tollgate_upstream_ejections_total";
pub const CONFIG_RELOADS: &str = "tollgate_config_reloads_total";
pub const CONNECTIONS_CLOSED: &str = "tollgate_connections_closed_total";
pub const PROVIDER_RATE_LIMIT: &str = "tollgate_provider_rate_limit";
pub const PROVIDER_RATE_REMAINING: &str = "tollgate_provider_rate_limit_remaining";
pub const PROVIDER_BUDGET_REFUSALS: &str = "tollgate_provider_budget_refusals_total";
pub const CLIENT_MISSES_REFUSED: &str = "tollgate_client_misses_refused_total";
pub const LOG_LINES_DROPPED: &str = "tollgate_log_lines_dropped_total";
pub const REGISTRY_INDEX_AGE: &str = "tollgate_registry_index_age_seconds";
pub const REGISTRY_CONTRACTS: &str = "tollgate_registry_contracts";
pub const REGISTRY_REVISION: &str = "tollgate_registry_revision";
pub const TLS_HANDSHAKE_FAILURES: &str = "tollgate_tls_handshake_failures_total";
pub const TLS_RELOAD_FAILURES: &str = "tollgate_tls_reload_failures_total";
pub const TLS_CERT_EXPIRY: &str = "tollgate_tls_certificate_expiry_seconds";

/// Latency buckets, in seconds: from tens of microseconds (a cached decision) to seconds.
const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The log writer's count of dropped lines, once logging runs in the background.
static LOG_DROPS: OnceLock<crate::log_writer::LogWriter> = OnceLock::new();

/// How often histogram samples are folded into their buckets. Until then each sample is held
/// (8 bytes a sample), so without this a process nobody scrapes would grow without bound.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder (once), with a thread that runs its upkeep; `None` if
/// another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".to_owned()), &BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            let upkeep = handle.clone();
            let started = std::thread::Builder::new()
                .name("tollgate-metrics".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread; /metrics scrapes will do it");
            }
            Some(handle)
        })
        .as_ref()
}

/// The labels of one `tollgate_requests_total` series.
#[derive(PartialEq, Eq, Hash)]
struct RequestKey {
    api: Option<Arc<str>>,
    decision: &'static str,
    reason: &'static str,
    status: u16,
}

/// The latency histograms of one API.
struct Latency {
    whole: Histogram,
    own: Histogram,
}

/// The request path's metric handles on one thread: found in the registry once, then reused, so a
/// request neither allocates label strings nor takes the registry's locks. The sets are small
/// (APIs × decisions × statuses seen), and their keys are ours, not a client's: hashed with Fx,
/// not SipHash (which was 2% of a request's instructions).
#[derive(Default)]
struct RequestMetrics {
    counters: FxHashMap<RequestKey, Counter>,
    latency: FxHashMap<Option<Arc<str>>, Latency>,
}

thread_local! {
    static REQUEST_METRICS: RefCell<RequestMetrics> = RefCell::default();
}

/// Records one finished request: its count by api/decision/reason/status, its latency and
/// tollgate's own share of it.
pub fn record_request(
    api: Option<&Arc<str>>,
    decision: &'static str,
    reason: &'static str,
    status: u16,
    total: Duration,
    own: Duration,
) {
    let label = || api.map_or_else(|| "-".to_owned(), |a| a.to_string());
    let key = RequestKey {
        api: api.cloned(),
        decision,
        reason,
        status,
    };
    REQUEST_METRICS.with_borrow_mut(|metrics| {
        metrics
            .counters
            .entry(key)
            .or_insert_with(|| {
                metrics::counter!(
                    REQUESTS,
                    "api" => label(),
                    "decision" => decision,
                    "reason" => reason,
                    "status" => status.to_string()
                )
            })
            .increment(1);
        let latency = metrics
            .latency
            .entry(api.cloned())
            .or_insert_with(|| Latency {
                whole: metrics::histogram!(REQUEST_DURATION, "api" => label()),
                own: metrics::histogram!(OWN_DURATION, "api" => label()),
            });
        latency.whole.record(total.as_secs_f64());
        latency.own.record(own.as_secs_f64());
    });
}

/// Exports the log writer's count of dropped lines as `tollgate_log_lines_dropped_total`.
pub fn count_log_drops(counter: crate::log_writer::LogWriter) {
    // The subscriber is installed once per process; so is its writer.
    let _ = LOG_DROPS.set(counter);
}

/// The current metrics in Prometheus' text exposition format.
pub fn render() -> String {
    // Copied at scrape time: the writer counts on its own, and dropping a line must cost the
    // request that logged it nothing more than an atomic increment.
    if let Some(drops) = LOG_DROPS.get() {
        metrics::counter!(LOG_LINES_DROPPED).absolute(drops.dropped());
    }
    install().map_or_else(String::new, PrometheusHandle::render)
}
